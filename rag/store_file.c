/*
** store_file.c: the database file as the operating system sees it: its
** permissions, whether kbchat may write it, and what it looked like when
** kbchat last closed it (store.h, "the file").
**
** knowledge.db holds the text of private documents and chat sessions, so
** kbchat creates it 0600 (SQLite gives its -wal, -shm and -journal files
** the mode of the database) and tightens an existing one it owns to 0600.
**
** "Changed since kbchat last closed it": a clean close writes the file's
** size, mtime (ns), inode and SQLite's header change counter to the
** sidecar <database>-state (0600, replaced by rename). The next open
** compares them with the file; only when they differ (a crash, another
** program, a restored backup, damage) does it pay for PRAGMA quick_check.
** The sidecar is a hint, never trusted for more: a missing or unreadable
** one only means "check".
*/
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "rag/store.h"

#define STATE_SUFFIX "-state"
#define STATE_MAGIC "kbchat-db-state 1"

/* Writes "<db><suffix>" into buf. Returns 0, or -1 when it does not fit. */
static int sidecar_path(const char *db, const char *suffix, char *buf, size_t n)
{
    int len = snprintf(buf, n, "%s%s", db, suffix);
    return len < 0 || (size_t)len >= n ? -1 : 0;
}

/* Reads SQLite's file change counter (header bytes 24..27, big-endian);
** 0 when the file is shorter than a header or unreadable. */
static uint32_t read_change_counter(const char *path)
{
    unsigned char h[28];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return 0;
    ssize_t got = pread(fd, h, sizeof h, 0);
    close(fd);
    if (got != (ssize_t)sizeof h) return 0;
    return (uint32_t)h[24] << 24 | (uint32_t)h[25] << 16 | (uint32_t)h[26] << 8 | (uint32_t)h[27];
}

int store_file_stat(const char *path, StoreFileState *out)
{
    struct stat sb;
    memset(out, 0, sizeof *out);
    if (stat(path, &sb) != 0) return errno == ENOENT ? KB_ENOTFOUND : KB_EIO;
    out->valid = 1;
    out->size = (int64_t)sb.st_size;
    out->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    out->ino = (uint64_t)sb.st_ino;
    out->counter = read_change_counter(path);
    return KB_OK;
}

int store_file_same(const StoreFileState *a, const StoreFileState *b)
{
    return a->valid && b->valid && a->size == b->size && a->mtime_ns == b->mtime_ns && a->ino == b->ino &&
           a->counter == b->counter;
}

void store_state_read(const char *db, StoreFileState *out)
{
    char path[PATH_MAX + 16], line[256];
    memset(out, 0, sizeof *out);
    if (sidecar_path(db, STATE_SUFFIX, path, sizeof path) != 0) return;
    FILE *f = fopen(path, "re");
    if (f == NULL) return;
    long long size, mtime;
    unsigned long long ino;
    unsigned counter;
    /* anything else than exactly what store_state_write wrote is "unknown" */
    if (fgets(line, sizeof line, f) && strncmp(line, STATE_MAGIC " ", sizeof STATE_MAGIC) == 0 &&
        sscanf(line + sizeof STATE_MAGIC, "size=%lld mtime_ns=%lld ino=%llu counter=%u", &size, &mtime, &ino,
               &counter) == 4 &&
        size >= 0)
        *out = (StoreFileState){1, size, mtime, ino, counter};
    fclose(f);
}

int store_state_write(const char *db)
{
    StoreFileState st;
    char path[PATH_MAX + 16], tmp[PATH_MAX + 16];
    if (store_file_stat(db, &st) != KB_OK) return KB_EIO;
    if (sidecar_path(db, STATE_SUFFIX, path, sizeof path) != 0 ||
        sidecar_path(db, STATE_SUFFIX ".XXXXXX", tmp, sizeof tmp) != 0)
        return KB_EIO;
    int fd = mkstemp(tmp); /* 0600; a unique name, so two closing kbchats never share it */
    if (fd < 0) return KB_EIO;
    char line[256];
    int n = snprintf(line, sizeof line, STATE_MAGIC " size=%lld mtime_ns=%lld ino=%llu counter=%u\n",
                     (long long)st.size, (long long)st.mtime_ns, (unsigned long long)st.ino, (unsigned)st.counter);
    int ok = n > 0 && write(fd, line, (size_t)n) == n;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) == 0) return KB_OK;
    unlink(tmp);
    return KB_EIO;
}

void store_state_forget(const char *db)
{
    char path[PATH_MAX + 16];
    if (sidecar_path(db, STATE_SUFFIX, path, sizeof path) == 0) unlink(path);
}

/* --- permissions and writability --- */

/* Tightens path to 0600 when it exists, is ours and is open to others
** (a database made by an older kbchat under umask 022). */
static void tighten(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == geteuid() && (sb.st_mode & 077))
        chmod(path, sb.st_mode & 0700);
}

void store_file_tighten(const char *db)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", STATE_SUFFIX};
    char path[PATH_MAX + 16];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (sidecar_path(db, suffixes[i], path, sizeof path) == 0) tighten(path);
}

int store_file_create(Rag *rag)
{
    int fd = open(rag->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) return close(fd) == 0 ? KB_OK : store_fail(rag, KB_EIO, "%s: %s", rag->path, strerror(errno));
    if (errno == EEXIST) return KB_OK; /* another kbchat made it first */
    return store_fail(rag, KB_EIO, "cannot create %s: %s", rag->path, strerror(errno));
}

const char *store_file_access_problem(const char *dir, const char *db, int exists, int *err)
{
    *err = 0;
    if (access(dir, W_OK) != 0) *err = errno;
    else if (exists && access(db, W_OK) != 0) *err = errno;
    if (*err == 0) return NULL;
    return *err == EROFS ? "read-only file system" : *err == EACCES || *err == EPERM ? "permission denied" : strerror(*err);
}

int store_read_only_fail(Rag *rag)
{
    return store_fail(rag, KB_EIO,
                      "%s: %s: kbchat can read the knowledge bases there but not change them; %s, or set "
                      "data_dir in the configuration to a writable folder",
                      rag->dir, rag->ro_reason,
                      strcmp(rag->ro_reason, "read-only file system") == 0
                          ? "remount that file system read-write"
                          : "give your user write permission on the folder and on knowledge.db (chmod u+w)");
}

/* --- who has the database open --- */

#define USE_LOCK_SUFFIX "-use.lock"

int store_use_lock(Rag *rag)
{
    char path[4200];
    rag->use_fd = -1;
    if (sidecar_path(rag->path, USE_LOCK_SUFFIX, path, sizeof path) != 0)
        return store_fail(rag, KB_EIO, "%s: path too long for its lock file", rag->path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW); /* a read-only directory: lock if it is there */
    if (fd < 0) return KB_OK;
    while (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return store_fail(rag, KB_EIO, "%s is being repaired by 'kbchat kb check'; try again when it has finished",
                              rag->path);
        return store_fail(rag, KB_EIO, "%s: cannot lock: %s", path, strerror(e));
    }
    rag->use_fd = fd;
    return KB_OK;
}

int store_use_exclusive(Rag *rag)
{
    if (rag->use_fd < 0) return store_fail(rag, KB_EIO, "%s: no lock file beside it: cannot repair it safely", rag->path);
    while (flock(rag->use_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK)
            return store_fail(rag, KB_EIO, "another kbchat has %s open (a chat, a sync, a search): close it, then run "
                              "'kbchat kb check' again", rag->path);
        return store_fail(rag, KB_EIO, "%s: cannot lock it for the repair: %s", rag->path, strerror(errno));
    }
    return KB_OK;
}
