/*
** kb.c: knowledge bases as the user manages them: create, add and remove
** sources, delete, and the summaries behind `kb list`, `kb status` and
** `kb files` (rag.h).
**
** Sources are stored as absolute paths with symlinks resolved, so the same
** folder reached two ways is one source, and a document's path always
** starts with the path of the source it was found under. Removing a path
** inside a source folder stores it as an exclusion (sources.exclude = 1)
** rather than forgetting it, or the next sync would bring it back.
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/store.h"

#define KB_NAME_MAX 64

/* --- helpers --- */

/* A copy of column i's text ("" for NULL); NULL when out of memory. */
static char *dup_col(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return strdup(s ? s : "");
}

/* Checks a knowledge-base name: it becomes part of commands and messages,
** so it is kept to characters that need no quoting in a shell. */
static int check_name(Rag *rag, const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > KB_NAME_MAX)
        return store_fail(rag, KB_EINVAL, "knowledge base name must be 1..%d characters, got %zu", KB_NAME_MAX, n);
    if (name[0] == '.' || name[0] == '-')
        return store_fail(rag, KB_EINVAL, "knowledge base name '%s' must not start with '%c'", name, name[0]);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') && c != '-' && c != '_' &&
            c != '.')
            return store_fail(rag, KB_EINVAL,
                              "knowledge base name '%s' may hold only letters, digits, '-', '_' and '.'", name);
    }
    return KB_OK;
}

/* Makes path absolute without touching the file system: the working
** directory is prepended, "." and ".." and repeated or trailing '/' are
** resolved textually. Returns a malloc'd string or NULL. */
static char *absolute_path(const char *path)
{
    char cwd[PATH_MAX];
    if (path[0] != '/' && getcwd(cwd, sizeof cwd) == NULL) return NULL;
    size_t n = strlen(path) + (path[0] == '/' ? 0 : strlen(cwd)) + 3;
    char *joined = malloc(n), *out = malloc(n);
    if (joined == NULL || out == NULL) {
        free(joined);
        free(out);
        return NULL;
    }
    snprintf(joined, n, "%s/%s", path[0] == '/' ? "" : cwd, path);
    size_t w = 0;
    char *save = NULL;
    for (char *seg = strtok_r(joined, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0) continue;
        if (strcmp(seg, "..") == 0) {
            while (w > 0 && out[--w] != '/') {}
            continue;
        }
        out[w++] = '/';
        size_t k = strlen(seg);
        memcpy(out + w, seg, k);
        w += k;
    }
    if (w == 0) out[w++] = '/';
    out[w] = '\0';
    free(joined);
    return out;
}

/* --- create, add, remove, delete --- */

int rag_kb_create(Rag *rag, const char *name, const RagKbSettings *s)
{
    int rc = check_name(rag, name);
    if (rc != KB_OK) return rc;
    if (s->chunk_size < 1 || s->chunk_size > 1000000 || s->chunk_overlap < 0 || s->chunk_overlap >= s->chunk_size)
        return store_fail(rag, KB_EINVAL, "chunk size %d, overlap %d: the size must be 1..1000000 and the overlap "
                          "0..size-1", s->chunk_size, s->chunk_overlap);
    sqlite3_stmt *st;
    rc = store_prepare(rag,
                       "INSERT INTO kbs(name, chunk_size, chunk_overlap, embed_model, created, embed_file, embed_size, "
                       "embed_hash, embed_dim) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                       &st);
    if (rc != KB_OK) return rc;
    const RagEmbedId none = {{0}, 0, {0}, 0}, *id = s->embed_id ? s->embed_id : &none;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, s->chunk_size);
    sqlite3_bind_int(st, 3, s->chunk_overlap);
    sqlite3_bind_text(st, 4, s->embed_model ? s->embed_model : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)time(NULL));
    sqlite3_bind_text(st, 6, id->file, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, id->size);
    sqlite3_bind_text(st, 8, id->hash, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 9, id->dim);
    int step = sqlite3_step(st);
    if (step == SQLITE_CONSTRAINT) rc = store_fail(rag, KB_EINVAL, "a knowledge base named '%s' already exists", name);
    else if (step != SQLITE_DONE) rc = store_sql_fail(rag, "cannot create the knowledge base");
    sqlite3_finalize(st);
    return rc;
}

/* Resolves a path to add and checks it is a folder or a supported file.
** Returns a malloc'd real path in *real. */
static int resolve_source(Rag *rag, const char *path, char **real)
{
    struct stat sb;
    *real = realpath(path, NULL);
    if (*real == NULL) return store_fail(rag, errno == ENOMEM ? KB_ENOMEM : KB_ENOTFOUND, "%s: %s", path, strerror(errno));
    if (stat(*real, &sb) != 0) return store_fail(rag, KB_ENOTFOUND, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return KB_OK;
    if (S_ISREG(sb.st_mode) && doc_kind_of(*real) != RAG_KIND_NONE) return KB_OK;
    if (S_ISREG(sb.st_mode))
        return store_fail(rag, KB_EUNSUPPORTED, "%s: kbchat indexes .pdf, .txt, .md and .markdown files", path);
    return store_fail(rag, KB_EUNSUPPORTED, "%s: neither a folder nor a regular file", path);
}

int rag_kb_add(Rag *rag, const char *name, const char *path)
{
    int64_t kb;
    char *real = NULL;
    int rc = store_kb_id(rag, name, &kb);
    if (rc == KB_OK) rc = resolve_source(rag, path, &real);
    sqlite3_stmt *st = NULL;
    if (rc == KB_OK)
        rc = store_prepare(rag,
                           "INSERT INTO sources(kb_id, path, exclude) VALUES (?1, ?2, 0) "
                           "ON CONFLICT(kb_id, path) DO UPDATE SET exclude = 0",
                           &st);
    if (rc == KB_OK) {
        sqlite3_bind_int64(st, 1, kb);
        sqlite3_bind_text(st, 2, real, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = store_sql_fail(rag, "cannot add the source");
    }
    sqlite3_finalize(st);
    free(real);
    return rc;
}

/* Counts sources of kb (exclude = 0) that are path itself (exact) or hold
** it (inside). */
static int covering_sources(Rag *rag, int64_t kb, const char *path, int64_t *exact, int64_t *inside)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           "SELECT coalesce(sum(path = ?2), 0), "
                           "coalesce(sum(path <> ?2 AND (path = '/' OR substr(?2, 1, length(path) + 1) = path || '/')), 0) "
                           "FROM sources WHERE kb_id = ?1 AND exclude = 0",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, kb);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *exact = sqlite3_column_int64(st, 0);
        *inside = sqlite3_column_int64(st, 1);
    } else {
        rc = store_sql_fail(rag, "cannot read sources");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs one statement binding (kb, path); *changes gets the rows changed. */
static int exec_kb_path(Rag *rag, const char *sql, int64_t kb, const char *path, int64_t *changes)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, sql, &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, kb);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? KB_OK : store_sql_fail(rag, "cannot update sources");
    if (changes) *changes = sqlite3_changes(rag->db);
    sqlite3_finalize(st);
    return rc;
}

/* The body of rag_kb_remove, inside its transaction. */
static int remove_in_tx(Rag *rag, int64_t kb, const char *name, const char *p, int64_t *n_docs)
{
    int64_t exact = 0, inside = 0;
    int rc = covering_sources(rag, kb, p, &exact, &inside);
    if (rc == KB_OK && exact == 0 && inside == 0)
        return store_fail(rag, KB_ENOTFOUND, "%s is not in knowledge base '%s'", p, name);
    if (rc == KB_OK && exact)
        rc = exec_kb_path(rag, "DELETE FROM sources WHERE kb_id = ?1 AND path = ?2", kb, p, NULL);
    if (rc == KB_OK && inside)
        rc = exec_kb_path(rag,
                          "INSERT INTO sources(kb_id, path, exclude) VALUES (?1, ?2, 1) "
                          "ON CONFLICT(kb_id, path) DO UPDATE SET exclude = 1",
                          kb, p, NULL);
    if (rc == KB_OK)
        rc = exec_kb_path(rag,
                          "DELETE FROM documents WHERE kb_id = ?1 AND (path = ?2 OR "
                          "substr(path, 1, length(?2) + 1) = rtrim(?2, '/') || '/')",
                          kb, p, n_docs);
    return rc;
}

int rag_kb_remove(Rag *rag, const char *name, const char *path, int64_t *n_docs)
{
    int64_t kb, n = 0;
    int rc = store_kb_id(rag, name, &kb);
    char *p = NULL;
    if (rc == KB_OK) {
        p = realpath(path, NULL);
        if (p == NULL) p = absolute_path(path);
        if (p == NULL) rc = store_fail(rag, KB_ENOMEM, "out of memory");
    }
    if (rc == KB_OK) rc = store_begin(rag);
    if (rc == KB_OK) {
        rc = remove_in_tx(rag, kb, name, p, &n);
        if (rc == KB_OK) rc = store_commit(rag);
        if (rc != KB_OK) store_rollback(rag);
    }
    if (n_docs) *n_docs = rc == KB_OK ? n : 0;
    free(p);
    return rc;
}

int rag_kb_delete(Rag *rag, const char *name)
{
    int64_t kb;
    int rc = store_kb_id(rag, name, &kb);
    sqlite3_stmt *st = NULL;
    if (rc == KB_OK) rc = store_prepare(rag, "DELETE FROM kbs WHERE id = ?1", &st);
    if (rc == KB_OK) {
        sqlite3_bind_int64(st, 1, kb);
        if (sqlite3_step(st) != SQLITE_DONE) rc = store_sql_fail(rag, "cannot delete the knowledge base");
    }
    sqlite3_finalize(st);
    return rc;
}

/* --- summaries --- */

void rag_kb_info_clear(RagKbInfo *info)
{
    if (info == NULL) return;
    free(info->name);
    free(info->embed_model);
    for (int i = 0; i < info->n_sources; i++) free(info->sources[i]);
    for (int i = 0; i < info->n_excluded; i++) free(info->excluded[i]);
    free(info->sources);
    free(info->excluded);
    memset(info, 0, sizeof *info);
}

void rag_kb_info_free_list(RagKbInfo *list, int n)
{
    for (int i = 0; list && i < n; i++) rag_kb_info_clear(&list[i]);
    free(list);
}

#define INFO_SQL                                                                                                    \
    "SELECT k.id, k.name, k.chunk_size, k.chunk_overlap, k.embed_model, k.created, k.last_sync,"                   \
    " (SELECT count(*) FROM documents d WHERE d.kb_id = k.id),"                                                    \
    " (SELECT count(*) FROM documents d WHERE d.kb_id = k.id AND d.failed),"                                       \
    " (SELECT coalesce(sum(d.pages), 0) FROM documents d WHERE d.kb_id = k.id AND NOT d.failed),"                 \
    " (SELECT count(*) FROM chunks c JOIN documents d ON c.doc_id = d.id WHERE d.kb_id = k.id),"              \
    " k.embed_file, k.embed_size, k.embed_hash, k.embed_dim,"                                                      \
    " (SELECT count(*) FROM vectors v WHERE v.kb_id = k.id) FROM kbs k "

/* Splits kb's sources into info->sources and info->excluded. */
static int fill_sources(Rag *rag, int64_t kb, RagKbInfo *info)
{
    char **paths;
    int *exclude, n;
    int rc = store_load_sources(rag, kb, &paths, &exclude, &n);
    if (rc != KB_OK) return rc;
    info->sources = calloc((size_t)n + 1, sizeof *info->sources);
    info->excluded = calloc((size_t)n + 1, sizeof *info->excluded);
    if (info->sources == NULL || info->excluded == NULL) rc = store_fail(rag, KB_ENOMEM, "out of memory");
    for (int i = 0; i < n && rc == KB_OK; i++) {
        if (exclude[i]) info->excluded[info->n_excluded++] = paths[i];
        else info->sources[info->n_sources++] = paths[i];
        paths[i] = NULL; /* now owned by info */
    }
    store_sources_free(paths, exclude, n);
    return rc;
}

/* Fills info from a row of INFO_SQL. */
static int fill_info(Rag *rag, sqlite3_stmt *st, RagKbInfo *info)
{
    memset(info, 0, sizeof *info);
    info->name = dup_col(st, 1);
    info->chunk_size = sqlite3_column_int(st, 2);
    info->chunk_overlap = sqlite3_column_int(st, 3);
    info->embed_model = dup_col(st, 4);
    info->created = sqlite3_column_int64(st, 5);
    info->last_sync = sqlite3_column_int64(st, 6);
    info->n_documents = sqlite3_column_int64(st, 7);
    info->n_failed = sqlite3_column_int64(st, 8);
    info->n_pages = sqlite3_column_int64(st, 9);
    info->n_chunks = sqlite3_column_int64(st, 10);
    snprintf(info->embed_id.file, sizeof info->embed_id.file, "%s", (const char *)sqlite3_column_text(st, 11));
    info->embed_id.size = sqlite3_column_int64(st, 12);
    snprintf(info->embed_id.hash, sizeof info->embed_id.hash, "%s", (const char *)sqlite3_column_text(st, 13));
    info->embed_id.dim = sqlite3_column_int(st, 14);
    info->n_vectors = sqlite3_column_int64(st, 15);
    if (info->name == NULL || info->embed_model == NULL) return store_fail(rag, KB_ENOMEM, "out of memory");
    return fill_sources(rag, sqlite3_column_int64(st, 0), info);
}

int rag_kb_info(Rag *rag, const char *name, RagKbInfo *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    int rc = store_prepare(rag, INFO_SQL "WHERE k.name = ?1", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) rc = fill_info(rag, st, out);
    else if (s == SQLITE_DONE) rc = store_fail(rag, KB_ENOTFOUND, "no knowledge base named '%s'", name);
    else rc = store_sql_fail(rag, "cannot read knowledge bases");
    sqlite3_finalize(st);
    if (rc != KB_OK) rag_kb_info_clear(out);
    return rc;
}

int rag_kb_list(Rag *rag, RagKbInfo **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    sqlite3_stmt *st;
    int rc = store_prepare(rag, INFO_SQL "ORDER BY k.name", &st);
    RagKbInfo *list = NULL;
    int n = 0, s = SQLITE_DONE;
    while (rc == KB_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        RagKbInfo *t = realloc(list, (size_t)(n + 1) * sizeof *t);
        if (t == NULL) {
            rc = store_fail(rag, KB_ENOMEM, "out of memory");
            break;
        }
        list = t;
        rc = fill_info(rag, st, &list[n++]);
    }
    if (rc == KB_OK && s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot read knowledge bases");
    sqlite3_finalize(st);
    if (rc != KB_OK) {
        rag_kb_info_free_list(list, n);
        return rc;
    }
    *out = list;
    *n_out = n;
    return KB_OK;
}

void rag_files_free(RagFile *files, int n)
{
    for (int i = 0; files && i < n; i++) {
        free(files[i].path);
        free(files[i].hash);
        free(files[i].title);
        free(files[i].author);
        free(files[i].error);
    }
    free(files);
}

static int fill_file(Rag *rag, sqlite3_stmt *st, RagFile *f)
{
    memset(f, 0, sizeof *f);
    f->path = dup_col(st, 0);
    f->size = sqlite3_column_int64(st, 1);
    f->mtime_ns = sqlite3_column_int64(st, 2);
    f->hash = dup_col(st, 3);
    f->pages = sqlite3_column_int(st, 4);
    f->chunks = sqlite3_column_int64(st, 5);
    f->title = dup_col(st, 6);
    f->author = dup_col(st, 7);
    f->failed = sqlite3_column_int(st, 8);
    f->error = dup_col(st, 9);
    f->indexed = sqlite3_column_int64(st, 10);
    if (!f->path || !f->hash || !f->title || !f->author || !f->error) return store_fail(rag, KB_ENOMEM, "out of memory");
    return KB_OK;
}

int rag_kb_files(Rag *rag, const char *name, int failed_only, RagFile **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    int64_t kb;
    int rc = store_kb_id(rag, name, &kb);
    sqlite3_stmt *st = NULL;
    if (rc == KB_OK)
        rc = store_prepare(rag,
                           "SELECT path, size, mtime_ns, hash, pages, (SELECT count(*) FROM chunks c WHERE "
                           "c.doc_id = d.id), title, author, failed, error, indexed FROM documents d "
                           "WHERE kb_id = ?1 AND (failed OR NOT ?2) ORDER BY path",
                           &st);
    RagFile *files = NULL;
    int n = 0, s = SQLITE_DONE;
    if (rc == KB_OK) {
        sqlite3_bind_int64(st, 1, kb);
        sqlite3_bind_int(st, 2, failed_only);
    }
    while (rc == KB_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        RagFile *t = realloc(files, (size_t)(n + 1) * sizeof *t);
        if (t == NULL) {
            rc = store_fail(rag, KB_ENOMEM, "out of memory");
            break;
        }
        files = t;
        rc = fill_file(rag, st, &files[n++]);
    }
    if (rc == KB_OK && s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot read documents");
    sqlite3_finalize(st);
    if (rc != KB_OK) {
        rag_files_free(files, n);
        return rc;
    }
    *out = files;
    *n_out = n;
    return KB_OK;
}
