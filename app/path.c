/*
** path.c: paths as the user types them in a front end (app.h): "~" for
** the home folder, and Tab completion of the last name the way a shell
** does it (the longest common prefix; the candidates when it is
** ambiguous). Relative paths are relative to the current directory.
*/
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/app.h"

/* path with a leading ~ made $HOME (malloc'd); other paths copied. */
char *path_expand_home(const char *path)
{
    const char *home = getenv("HOME");
    if (path[0] != '~' || (path[1] != '\0' && path[1] != '/') || home == NULL || home[0] == '\0') return strdup(path);
    size_t n = strlen(home) + strlen(path);
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s%s", home, path + 1);
    return out;
}

/* The file name part of path (app.h). */
const char *path_base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* One name that fits. */
typedef struct PathCand {
    char *name;
    int is_dir;
} PathCand;

/* qsort order of candidates: by name, bytewise. */
static int path_cmp_cand(const void *a, const void *b)
{
    return strcmp(((const PathCand *)a)->name, ((const PathCand *)b)->name);
}

/* Reads the names of folder dir (typed as written; "" = the current one)
** that start with base into *cands, sorted. Returns their number (0 when
** the folder cannot be read) or -1 when out of memory. */
static int path_candidates(const char *dir, const char *base, PathCand **cands)
{
    char *real = path_expand_home(dir[0] ? dir : ".");
    DIR *d = real ? opendir(real) : NULL;
    int n = 0, cap = 0, rc = real ? 0 : -1;
    size_t blen = strlen(base);
    *cands = NULL;
    for (struct dirent *e; d && rc == 0 && (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if ((e->d_name[0] == '.' && base[0] != '.') || strncmp(e->d_name, base, blen) != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            PathCand *c = realloc(*cands, (size_t)cap * sizeof *c);
            if (c == NULL) rc = -1;
            else *cands = c;
        }
        size_t len = strlen(real) + strlen(e->d_name) + 2;
        char *full = rc == 0 ? malloc(len) : NULL;
        struct stat sb;
        if (full) snprintf(full, len, "%s/%s", real, e->d_name);
        if (rc == 0 && (full == NULL || ((*cands)[n].name = strdup(e->d_name)) == NULL)) rc = -1;
        if (rc == 0) (*cands)[n++].is_dir = stat(full, &sb) == 0 && S_ISDIR(sb.st_mode);
        free(full);
    }
    if (d) closedir(d);
    free(real);
    if (n > 1) qsort(*cands, (size_t)n, sizeof **cands, path_cmp_cand);
    if (rc != 0) {
        for (int i = 0; i < n; i++) free((*cands)[i].name);
        free(*cands);
        *cands = NULL;
        return -1;
    }
    return n;
}

/* Writes the candidates into list, two spaces apart, ending in "…" when
** they do not all fit. */
static void path_list(const PathCand *c, int n, char *list, size_t listlen)
{
    size_t used = 0;
    if (listlen == 0) return;
    list[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t need = strlen(c[i].name) + (size_t)c[i].is_dir + (i ? 2 : 0);
        if (used + need + 4 >= listlen) {
            snprintf(list + used, listlen - used, "%s…", i ? "  " : "");
            return;
        }
        used += (size_t)snprintf(list + used, listlen - used, "%s%s%s", i ? "  " : "", c[i].name, c[i].is_dir ? "/" : "");
    }
}

/* Tab for a typed path (app.h): the longest common prefix of the names
** that fit, '/' after a sole folder, the list when several fit. */
int path_complete(const char *typed, char **out, char *list, size_t listlen)
{
    const char *slash = strrchr(typed, '/');
    size_t dlen = slash ? (size_t)(slash - typed) + 1 : 0;
    if (listlen) list[0] = '\0';
    *out = NULL;
    if (strcmp(typed, "~") == 0) { /* the home folder itself */
        *out = strdup("~/");
        return *out ? 1 : -1;
    }
    char *dir = strndup(typed, dlen);
    PathCand *c = NULL;
    int n = dir ? path_candidates(dir, typed + dlen, &c) : -1;
    size_t common = n > 0 ? strlen(c[0].name) : 0;
    for (int i = 1; i < n; i++) {
        size_t k = 0;
        while (k < common && c[i].name[k] == c[0].name[k]) k++;
        common = k;
    }
    size_t blen = strlen(typed + dlen);
    while (common > blen && ((unsigned char)c[0].name[common] & 0xC0) == 0x80) common--; /* whole characters */
    if (n > 0) {
        size_t len = dlen + common + 2;
        *out = malloc(len);
        if (*out) snprintf(*out, len, "%s%.*s%s", dir, (int)common, c[0].name, n == 1 && c[0].is_dir ? "/" : "");
    } else if (n == 0) {
        *out = strdup(typed);
    }
    if (n > 1) path_list(c, n, list, listlen);
    for (int i = 0; i < n; i++) free(c[i].name);
    free(c);
    free(dir);
    return *out ? n : -1;
}

/* --- private files --- */

/* Creates "<dir of path>/.<base>.XXXXXX" (mode 0600) in tmp. Returns its
** descriptor, or -1 with errno. */
static int path_temp_beside(const char *path, char *tmp, size_t n)
{
    const char *base = path_base_name(path);
    int len = snprintf(tmp, n, "%.*s.%s.XXXXXX", (int)(base - path), path, base);
    if (len < 0 || (size_t)len >= n) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return mkstemp(tmp);
}

/* Gives tmp the name path: rename when overwriting; else link, which fails
** when path exists, so a file made meanwhile is never replaced either. */
static int path_publish(const char *tmp, const char *path, int overwrite)
{
    if (overwrite) return rename(tmp, path);
    if (link(tmp, path) != 0) return -1;
    unlink(tmp);
    return 0;
}

int path_write_private(const char *path, int overwrite, int (*write)(FILE *f, void *user), void *user, char *err,
                       size_t errlen)
{
    char tmp[4096];
    struct stat sb;
    if (!overwrite && lstat(path, &sb) == 0) {
        snprintf(err, errlen, "%s already exists", path);
        return KB_EINVAL;
    }
    int fd = path_temp_beside(path, tmp, sizeof tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return KB_EIO;
    }
    FILE *f = fdopen(fd, "w");
    int rc = f ? write(f, user) : KB_ENOMEM;
    int ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (f ? fclose(f) == 0 : close(fd) == 0) && ok;
    int e = errno;
    if (rc == KB_OK && ok && path_publish(tmp, path, overwrite) == 0) return KB_OK;
    if (rc == KB_OK && ok) e = errno;
    unlink(tmp);
    if (rc == KB_OK && e == EEXIST) {
        snprintf(err, errlen, "%s already exists", path);
        return KB_EINVAL;
    }
    snprintf(err, errlen, "writing %s failed: %s", path, strerror(e));
    return rc == KB_OK ? KB_EIO : rc;
}
