/*
** sync.c: rag_sync, which brings a knowledge base in line with its folders.
**
** The algorithm (docs/knowledge-bases.md has the long version):
**   1. walk: every source folder recursively, in name order, following
**      symlinks but entering each directory (device, inode) once, so a link
**      loop ends; hidden entries and excluded paths are skipped; a file
**      reached twice is taken once. A source folder that is missing, or a
**      folder that cannot be read, is reported and its documents are kept
**      (an unmounted disk must not empty the index).
**   2. compare with the committed documents, both sorted by path: same size
**      and mtime = unchanged, no work at all; otherwise changed; paths only
**      on disk are new; documents only in the database are gone.
**   3. moves: a new file whose content hash equals a gone document's is that
**      document renamed: its row gets the new path, nothing is re-extracted.
**   4. the remaining gone documents are deleted.
**   5. each changed or new file is read once, hashed, and (unless the hash
**      says only its mtime changed) extracted, chunked and written with its
**      chunks in one transaction; a file that cannot be indexed is written as
**      a failed document with the reason, so it is not retried until it
**      changes. With the embedding model the knowledge base is pinned to,
**      the document's chunks are then embedded, 64 per committed
**      transaction: a 2000-page manual takes many minutes to embed, and
**      neither its keyword index nor the vectors done should wait for (or be
**      lost with) the rest.
**   6. chunks still without a vector (a sync or rebuild interrupted while
**      embedding, documents indexed while no model was configured) are
**      embedded.
** Every write is its own transaction and the plan is recomputed from the
** committed rows each time, so a sync killed anywhere is finished by the
** next one, which reaches the same database a clean sync would. The same
** holds for a sync stopped through RagSyncOptions.cancel, which is read
** before each removal, each document and each batch of vectors, and while
** a PDF is extracted (its text is then dropped unwritten).
**
** Per-document budget (RagSyncOptions.doc_seconds, doc_text_bytes): a PDF
** whose extraction passes either limit is a failed document like a damaged
** one, with the limit named in its reason. With RagSyncOptions.extractor
** the extraction runs in a child process (extract.c) that is killed at the
** limit or on cancel, whatever page poppler is on.
**
** One sync or rebuild of a knowledge base runs at a time (store_kb_lock:
** an flock beside the database, which the system releases if the holder
** dies); another waits for it, after a warning.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/chunker.h"
#include "rag/doc.h"
#include "rag/embed.h"
#include "rag/store.h"

#define FILE_MAX_BYTES ((int64_t)1 << 30) /* larger files are recorded as failed */

/* --- the walk --- */

typedef struct Found {
    char *path;
    int64_t size, mtime_ns;
} Found;

typedef struct Walk {
    Found *f;
    int n, cap;
    char **excluded;       /* sorted exclusion paths */
    int n_excluded;
    char **kept;           /* folders not walked: documents under them stay */
    int n_kept, cap_kept;
    GHashTable *seen;      /* "dev:ino" of directories and files visited */
} Walk;

/* Everything the sync of one knowledge base needs. */
typedef struct Sync {
    Rag *rag;
    const char *kb_name;
    int64_t kb;
    StoreKb row;           /* the knowledge base's settings and pinned model */
    RagEmbedder *emb;      /* the pinned model, or NULL: no vectors this sync */
    ChunkOptions chunk;
    const RagSyncOptions *opt;
    RagSyncStats *stats;
    RagProgress p;         /* the running progress report */
    double t0;
    int64_t pages_before;  /* pages_done before the current document */
    int64_t cur_size;      /* bytes of the document being extracted */
    double cur_part;       /* the share of it extracted so far, 0..1 */
    int docs_ended;        /* documents ended so far (the KBCHAT_TEST_HOLD_SYNC hook) */
} Sync;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleeps ms milliseconds (whole, despite signals). */
static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Sends the progress report with the timing fields brought up to date. */
static void report(Sync *s, RagEvent ev)
{
    RagProgress *p = &s->p;
    p->event = ev;
    p->elapsed = now_s() - s->t0;
    p->pages_per_s = p->elapsed > 0 && p->pages_done > 0 ? (double)p->pages_done / p->elapsed : 0;
    /* bytes stand for work; a PDF being extracted counts by its pages done */
    double done = (double)p->bytes_done + s->cur_part * (double)s->cur_size;
    p->eta = done > 0 && (double)p->bytes_total >= done ? p->elapsed * ((double)p->bytes_total - done) / done : -1;
    if (s->opt && s->opt->progress) s->opt->progress(p, s->opt->user);
}

static void warn(Sync *s, const char *path, const char *msg)
{
    s->stats->warnings++;
    s->p.path = path;
    s->p.message = msg;
    report(s, RAG_EV_WARNING);
    s->p.message = NULL;
}

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

/* True the first time (dev, ino) is seen. */
static int first_visit(Walk *w, const struct stat *sb)
{
    char key[64];
    snprintf(key, sizeof key, "%llu:%llu", (unsigned long long)sb->st_dev, (unsigned long long)sb->st_ino);
    if (g_hash_table_contains(w->seen, key)) return 0;
    g_hash_table_add(w->seen, g_strdup(key));
    return 1;
}

/* True when path is an excluded path or inside one. */
static int is_excluded(const Walk *w, const char *path)
{
    for (int i = 0; i < w->n_excluded; i++) {
        size_t n = strlen(w->excluded[i]);
        if (strncmp(path, w->excluded[i], n) == 0 && (path[n] == '\0' || path[n] == '/')) return 1;
    }
    return 0;
}

static int add_found(Walk *w, const char *path, const struct stat *sb)
{
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 256;
        Found *f = realloc(w->f, (size_t)cap * sizeof *f);
        if (f == NULL) return KB_ENOMEM;
        w->f = f;
        w->cap = cap;
    }
    char *p = strdup(path);
    if (p == NULL) return KB_ENOMEM;
    w->f[w->n++] = (Found){p, (int64_t)sb->st_size, mtime_ns(sb)};
    return KB_OK;
}

static int add_kept(Walk *w, const char *path)
{
    if (w->n_kept == w->cap_kept) {
        int cap = w->cap_kept ? w->cap_kept * 2 : 8;
        char **k = realloc(w->kept, (size_t)cap * sizeof *k);
        if (k == NULL) return KB_ENOMEM;
        w->kept = k;
        w->cap_kept = cap;
    }
    if ((w->kept[w->n_kept] = strdup(path)) == NULL) return KB_ENOMEM;
    w->n_kept++;
    return KB_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk_path(Sync *s, Walk *w, const char *path);

/* Reads a directory's visible entry names, sorted. Returns NULL with errno
** set when it cannot be read. */
static char **read_dir_sorted(const char *path, int *n_out)
{
    DIR *d = opendir(path);
    if (d == NULL) return NULL;
    char **names = NULL;
    int n = 0, cap = 0, ok = 1;
    for (struct dirent *e; ok && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue; /* ".", "..", and hidden files (.git, editor backups) */
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **t = realloc(names, (size_t)cap * sizeof *t);
            if (t == NULL) ok = 0;
            else names = t;
        }
        if (ok && (names[n] = strdup(e->d_name)) == NULL) ok = 0;
        if (ok) n++;
    }
    closedir(d);
    if (!ok) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        errno = ENOMEM;
        return NULL;
    }
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *n_out = n;
    return names ? names : calloc(1, sizeof *names);
}

static int walk_dir(Sync *s, Walk *w, const char *path)
{
    int n = 0, rc = KB_OK;
    char **names = read_dir_sorted(path, &n);
    if (names == NULL) {
        if (errno == ENOMEM) return KB_ENOMEM;
        char msg[600];
        snprintf(msg, sizeof msg, "cannot read folder: %s (its documents are kept)", strerror(errno));
        warn(s, path, msg);
        return add_kept(w, path);
    }
    size_t plen = strlen(path);
    for (int i = 0; i < n && rc == KB_OK; i++) {
        size_t len = plen + strlen(names[i]) + 2;
        char *child = malloc(len);
        if (child == NULL) rc = KB_ENOMEM;
        else snprintf(child, len, "%s/%s", strcmp(path, "/") == 0 ? "" : path, names[i]);
        if (rc == KB_OK) rc = walk_path(s, w, child);
        free(child);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

/* Visits path: a folder is walked, a supported regular file recorded. */
static int walk_path(Sync *s, Walk *w, const char *path)
{
    struct stat sb;
    if (is_excluded(w, path) || stat(path, &sb) != 0) return KB_OK; /* a dangling link is no document */
    if (S_ISDIR(sb.st_mode)) return first_visit(w, &sb) ? walk_dir(s, w, path) : KB_OK;
    if (!S_ISREG(sb.st_mode) || doc_kind_of(path) == RAG_KIND_NONE || !first_visit(w, &sb)) return KB_OK;
    return add_found(w, path, &sb);
}

/* Walks every source of the knowledge base. */
static int walk_sources(Sync *s, Walk *w)
{
    char **paths;
    int *exclude, n;
    int rc = store_load_sources(s->rag, s->kb, &paths, &exclude, &n);
    if (rc != KB_OK) return rc;
    w->excluded = calloc((size_t)n + 1, sizeof *w->excluded);
    if (w->excluded == NULL) rc = KB_ENOMEM;
    for (int i = 0; i < n && rc == KB_OK; i++)
        if (exclude[i]) w->excluded[w->n_excluded++] = paths[i];
    for (int i = 0; i < n && rc == KB_OK; i++) {
        struct stat sb;
        if (exclude[i]) continue;
        if (stat(paths[i], &sb) != 0) {
            char msg[600];
            snprintf(msg, sizeof msg, "source not found: %s (documents found under it before are kept)",
                     strerror(errno));
            warn(s, paths[i], msg);
            rc = add_kept(w, paths[i]);
        } else {
            rc = walk_path(s, w, paths[i]);
        }
    }
    for (int i = 0; i < n; i++)
        if (!exclude[i]) free(paths[i]);
    free(paths);
    free(exclude);
    return rc;
}

static void walk_free(Walk *w)
{
    for (int i = 0; i < w->n; i++) free(w->f[i].path);
    free(w->f);
    for (int i = 0; i < w->n_excluded; i++) free(w->excluded[i]);
    free(w->excluded);
    for (int i = 0; i < w->n_kept; i++) free(w->kept[i]);
    free(w->kept);
    if (w->seen) g_hash_table_destroy(w->seen);
}

static int cmp_found(const void *a, const void *b)
{
    return strcmp(((const Found *)a)->path, ((const Found *)b)->path);
}

/* True when a document at path lies strictly inside a folder not walked. */
static int is_kept(const Walk *w, const char *path)
{
    for (int i = 0; i < w->n_kept; i++) {
        size_t n = strlen(w->kept[i]);
        if (strncmp(path, w->kept[i], n) == 0 && path[n] == '/') return 1;
    }
    return 0;
}

/* --- reading and hashing --- */

/* A file read into memory with the size and mtime of what was read. */
typedef struct FileData {
    unsigned char *data;
    size_t len;
    int64_t mtime_ns;
    char hash[65];
} FileData;

/* The kind of a file that is not a regular file, for the failure reason. */
static const char *file_type_name(mode_t mode)
{
    if (S_ISFIFO(mode)) return "a named pipe (FIFO)";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISDIR(mode)) return "a folder";
    return "not a regular file";
}

/* Opens path for reading and checks, on the open descriptor, that it is
** still a regular file of at most FILE_MAX_BYTES: the walk saw a regular
** file, but it may have been replaced since (a FIFO would block a plain
** open() and read() forever, a device would never end). O_NONBLOCK makes
** the open of a FIFO return at once; it changes nothing for a regular file.
** Symlinks are followed (the walk follows them too), so no O_NOFOLLOW; the
** fstat of what was opened is what counts. Returns the descriptor, or -1
** with the reason in msg. */
static int open_regular(const char *path, struct stat *sb /* OUT */, char *msg, size_t msglen)
{
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f < 0 || fstat(f, sb) != 0) {
        snprintf(msg, msglen, "cannot read: %s", strerror(errno));
        if (f >= 0) close(f);
        return -1;
    }
    if (!S_ISREG(sb->st_mode)) {
        snprintf(msg, msglen, "skipped: %s, not a regular file (it changed after the folder was listed?)",
                 file_type_name(sb->st_mode));
        close(f);
        return -1;
    }
    if ((int64_t)sb->st_size > FILE_MAX_BYTES) {
        snprintf(msg, msglen, "too large: %lld bytes (kbchat indexes files up to %lld)", (long long)sb->st_size,
                 (long long)FILE_MAX_BYTES);
        close(f);
        return -1;
    }
    return f;
}

/* Reads path whole and hashes it (SHA-256, GLib's GChecksum); the file
** must be a regular file when opened (open_regular). A file that grows
** meanwhile is read up to its size at open. Returns KB_OK; KB_EIO with the
** reason in msg; KB_ENOMEM. */
static int read_file(const char *path, FileData *fd, char *msg, size_t msglen)
{
    memset(fd, 0, sizeof *fd);
    struct stat sb;
    int f = open_regular(path, &sb, msg, msglen);
    if (f < 0) return KB_EIO;
    fd->mtime_ns = mtime_ns(&sb);
    fd->data = malloc((size_t)sb.st_size + 1);
    int rc = fd->data ? KB_OK : KB_ENOMEM;
    while (rc == KB_OK && fd->len < (size_t)sb.st_size) {
        ssize_t k = read(f, fd->data + fd->len, (size_t)sb.st_size - fd->len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            snprintf(msg, msglen, "cannot read: %s", strerror(errno));
            rc = KB_EIO;
        }
        if (k <= 0) break;
        fd->len += (size_t)k;
    }
    close(f);
    if (rc == KB_OK) {
        GChecksum *ck = g_checksum_new(G_CHECKSUM_SHA256);
        g_checksum_update(ck, fd->data, fd->len);
        snprintf(fd->hash, sizeof fd->hash, "%s", g_checksum_get_string(ck));
        g_checksum_free(ck);
    }
    return rc;
}

static void file_free(FileData *fd)
{
    free(fd->data);
    fd->data = NULL;
}

/* --- indexing one document --- */

static void on_page(int pages, int n_pages, void *user)
{
    Sync *s = user;
    s->cur_part = n_pages > 0 ? (double)pages / n_pages : 0;
    s->p.doc_pages = pages;
    s->p.pages_done = s->pages_before + pages;
    report(s, RAG_EV_PAGE);
}

/* Loads and chunks fd's content, a PDF within the per-document budget. The
** file's bytes are freed once loaded (the hash is taken): the chunks are
** made with only the document's text in memory, not the file as well.
** Returns KB_OK; KB_EFORMAT/KB_EUNSUPPORTED/KB_ERANGE (over budget)/KB_EIO
** (no extractor process) with the reason in doc->errmsg; KB_ECANCELLED;
** KB_ENOMEM. */
static int extract(Sync *s, const char *path, FileData *fd, RagDoc *doc, Chunk **chunks, int *n_chunks)
{
    RagKind kind = doc_kind_of(path);
    const RagSyncOptions *o = s->opt;
    DocBudget b = {o ? o->doc_seconds : 0, o ? o->doc_text_bytes : 0, o ? o->cancel : NULL, o ? o->extractor : NULL};
    int rc = kind == RAG_KIND_PDF ? load_pdf(doc, fd->data, fd->len, &b, on_page, s)
                                  : load_text(doc, fd->data, fd->len, kind);
    file_free(fd);
    if (rc == KB_OK) rc = chunker_split(doc, &s->chunk, chunks, n_chunks);
    return rc;
}

/* Reports the end of one document; a document that was read counts as
** done (files_done, bytes_done) from this report on. */
static void done(Sync *s, RagAction act, const char *path, const char *old_path, const char *msg)
{
    if (act != RAG_ACT_MOVED && act != RAG_ACT_REMOVED) {
        s->p.files_done++;
        s->p.bytes_done += s->cur_size;
        s->cur_size = 0;
        s->cur_part = 0;
    }
    s->p.action = act;
    s->p.path = path;
    s->p.old_path = old_path;
    s->p.message = msg;
    report(s, RAG_EV_DOC_DONE);
    s->p.old_path = s->p.message = NULL;
}

/* The KBCHAT_TEST_HOLD_SYNC hook (rag.h): after the N-th document ended,
** creates FILE.held and waits until FILE exists or the sync is cancelled. */
static void hold_for_tests(Sync *s)
{
    const char *file = getenv("KBCHAT_TEST_HOLD_SYNC"), *after = getenv("KBCHAT_TEST_HOLD_SYNC_AFTER");
    char held[PATH_MAX];
    s->docs_ended++;
    if (file == NULL || file[0] == '\0' || s->docs_ended != (after && after[0] ? atoi(after) : 1)) return;
    if (snprintf(held, sizeof held, "%s.held", file) >= (int)sizeof held) return;
    int fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    while (access(file, F_OK) != 0 && !embed_cancelled(s->opt)) sleep_ms(10);
}

/* Test hooks after a document was committed: RagSyncOptions.delay_ms's
** pause and the KBCHAT_TEST_HOLD_SYNC hold. */
static void pause_for_tests(Sync *s)
{
    if (s->opt && s->opt->delay_ms > 0) sleep_ms(s->opt->delay_ms);
    hold_for_tests(s);
}

/* Embeds the chunks of the document just written at path (nothing when
** this sync makes no vectors), in committed batches. */
static int embed_document(Sync *s, const char *path)
{
    int64_t doc, n = 0;
    if (s->emb == NULL) return KB_OK;
    int rc = store_doc_id(s->rag, s->kb, path, &doc);
    if (rc == KB_OK) rc = embed_fill_missing(s->rag, &s->row, doc, s->emb, s->opt, &s->p, s->t0, &n);
    s->stats->vectors += n;
    return rc;
}

/* Frees what index_file made of a document and returns rc. */
static int index_stop(Sync *s, int rc, Chunk *chunks, int n_chunks, RagDoc *doc)
{
    chunker_free(chunks, n_chunks);
    doc_clear(doc);
    pause_for_tests(s);
    return rc;
}

/* Indexes (or records the failure of) one new or changed file. old is its
** committed row, or NULL when new. Returns KB_OK unless the database,
** memory or the embedding model failed. */
static int index_file(Sync *s, const Found *f, const StoreDoc *old)
{
    char msg[600] = "";
    FileData fd;
    RagDoc doc = {0};
    Chunk *chunks = NULL;
    int n_chunks = 0;
    s->p.path = f->path;
    s->p.doc_pages = 0;
    s->p.doc_chunks = 0;
    s->pages_before = s->p.pages_done;
    s->cur_size = f->size;
    s->cur_part = 0;
    report(s, RAG_EV_DOC_START);
    int rc = read_file(f->path, &fd, msg, sizeof msg);
    StoreDocInfo info = {f->path, f->size, fd.mtime_ns ? fd.mtime_ns : f->mtime_ns, fd.hash, 0, NULL, NULL, NULL};
    if (rc == KB_OK && old && strcmp(old->hash, fd.hash) == 0) {
        rc = store_touch_document(s->rag, old->id, (int64_t)fd.len, fd.mtime_ns);
        if (rc == KB_OK) s->stats->touched++, done(s, RAG_ACT_TOUCHED, f->path, NULL, NULL);
        file_free(&fd);
        return rc;
    }
    if (rc == KB_OK) {
        info.size = (int64_t)fd.len;
        rc = extract(s, f->path, &fd, &doc, &chunks, &n_chunks);
        if (rc == KB_EIO) /* no extractor process (no descriptors or processes left): the system's fault,
                             not the file's, so the sync stops and the file is not marked failed */
            return index_stop(s, store_fail(s->rag, rc, "%s: %s", f->path, doc.errmsg), chunks, n_chunks, &doc);
        if (rc == KB_EFORMAT || rc == KB_EUNSUPPORTED || rc == KB_ERANGE) snprintf(msg, sizeof msg, "%s", doc.errmsg);
    }
    if (rc == KB_ECANCELLED) rc = KB_OK; /* nothing of it written: the next sync reads it again */
    else if (rc == KB_OK || rc == KB_EFORMAT || rc == KB_EUNSUPPORTED || rc == KB_ERANGE || rc == KB_EIO) {
        int failed = rc != KB_OK;
        info.error = failed ? msg : NULL;
        info.pages = failed ? 0 : doc.n_pages;
        info.title = doc.title;
        info.author = doc.author;
        rc = store_put_document(s->rag, s->kb, &info, failed ? NULL : chunks, failed ? 0 : n_chunks);
        if (rc == KB_OK && !failed && n_chunks > 0) rc = embed_document(s, f->path);
        if (rc == KB_OK && !failed && doc.note[0]) warn(s, f->path, doc.note); /* indexed, but repaired */
        if (rc == KB_OK) {
            RagAction act = failed ? RAG_ACT_FAILED : old ? RAG_ACT_UPDATED : RAG_ACT_INDEXED;
            if (failed) s->stats->failed++;
            else if (old) s->stats->updated++;
            else s->stats->indexed++;
            if (!failed) {
                s->stats->pages += doc.n_pages;
                s->stats->chunks += n_chunks;
                s->p.chunks_done += n_chunks;
            }
            s->p.pages_done = s->pages_before + (failed ? 0 : doc.n_pages);
            s->p.doc_pages = failed ? 0 : doc.n_pages;
            s->p.doc_chunks = failed ? 0 : n_chunks;
            done(s, act, f->path, NULL, failed ? msg : NULL);
        }
    }
    if (rc == KB_ENOMEM) store_fail(s->rag, KB_ENOMEM, "%s: out of memory", f->path);
    file_free(&fd);
    return index_stop(s, rc, chunks, n_chunks, &doc);
}

/* --- the plan --- */

/* Work found by comparing the walk with the committed documents. */
typedef struct Plan {
    const Found **todo;    /* new or changed files, by path */
    const StoreDoc **old;  /* todo[i]'s committed row, or NULL when new */
    int n_todo;
    const StoreDoc **gone; /* documents whose file is gone */
    int n_gone;
} Plan;

static int make_plan(Sync *s, const Walk *w, const StoreDoc *docs, int n_docs, Plan *pl)
{
    memset(pl, 0, sizeof *pl);
    pl->todo = calloc((size_t)w->n + 1, sizeof *pl->todo);
    pl->old = calloc((size_t)w->n + 1, sizeof *pl->old);
    pl->gone = calloc((size_t)n_docs + 1, sizeof *pl->gone);
    if (!pl->todo || !pl->old || !pl->gone) return KB_ENOMEM;
    int i = 0, j = 0;
    while (i < w->n || j < n_docs) {
        int c = i == w->n ? 1 : j == n_docs ? -1 : strcmp(w->f[i].path, docs[j].path);
        if (c == 0) {
            if (w->f[i].size == docs[j].size && w->f[i].mtime_ns == docs[j].mtime_ns) {
                s->stats->unchanged++;
            } else {
                pl->old[pl->n_todo] = &docs[j];
                pl->todo[pl->n_todo++] = &w->f[i];
            }
            i++, j++;
        } else if (c < 0) {
            pl->todo[pl->n_todo++] = &w->f[i++];
        } else {
            if (!is_kept(w, docs[j].path)) pl->gone[pl->n_gone++] = &docs[j];
            j++;
        }
    }
    return KB_OK;
}

static void plan_free(Plan *pl)
{
    free(pl->todo);
    free(pl->old);
    free(pl->gone);
}

/* Step 3: new files whose content is a gone document's become moves. Only
** files of a gone document's size are read to compare hashes. */
static int find_moves(Sync *s, Plan *pl)
{
    if (pl->n_gone == 0) return KB_OK;
    GHashTable *by_hash = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTable *sizes = g_hash_table_new(g_int64_hash, g_int64_equal);
    for (int g = 0; g < pl->n_gone; g++) {
        if (pl->gone[g]->hash[0] == '\0') continue;
        g_hash_table_insert(by_hash, (gpointer)pl->gone[g]->hash, (gpointer)&pl->gone[g]);
        g_hash_table_add(sizes, (gpointer)&pl->gone[g]->size);
    }
    int rc = KB_OK;
    for (int t = 0; t < pl->n_todo && rc == KB_OK; t++) {
        const Found *f = pl->todo[t];
        if (pl->old[t] || !g_hash_table_contains(sizes, &f->size)) continue;
        char msg[600];
        FileData fd;
        if (read_file(f->path, &fd, msg, sizeof msg) == KB_OK) {
            const StoreDoc **slot = g_hash_table_lookup(by_hash, fd.hash);
            if (slot && *slot) {
                const StoreDoc *d = *slot;
                rc = store_move_document(s->rag, d->id, f->path, (int64_t)fd.len, fd.mtime_ns);
                if (rc == KB_OK) {
                    s->stats->moved++;
                    done(s, RAG_ACT_MOVED, f->path, d->path, NULL);
                    g_hash_table_remove(by_hash, fd.hash);
                    *slot = NULL; /* no longer gone */
                    pl->todo[t] = NULL;
                }
            }
        }
        file_free(&fd);
    }
    g_hash_table_destroy(by_hash);
    g_hash_table_destroy(sizes);
    return rc;
}

/* Steps 4 and 5. */
static int apply_plan(Sync *s, Plan *pl)
{
    int rc = KB_OK;
    for (int g = 0; g < pl->n_gone && rc == KB_OK && !embed_cancelled(s->opt); g++) {
        if (pl->gone[g] == NULL) continue;
        rc = store_delete_document(s->rag, pl->gone[g]->id);
        if (rc == KB_OK) s->stats->removed++, done(s, RAG_ACT_REMOVED, pl->gone[g]->path, NULL, NULL);
    }
    for (int t = 0; t < pl->n_todo; t++)
        if (pl->todo[t]) s->p.files_total++, s->p.bytes_total += pl->todo[t]->size;
    s->p.path = NULL;
    report(s, RAG_EV_PLAN);
    for (int t = 0; t < pl->n_todo && rc == KB_OK && !embed_cancelled(s->opt); t++) {
        if (pl->todo[t] == NULL) continue;
        rc = index_file(s, pl->todo[t], pl->old[t]);
    }
    return rc;
}

/* Decides whether this sync makes vectors: only with the model the
** knowledge base is pinned to. Otherwise a warning says why, unless the
** knowledge base is keyword-only and no model was given. */
static void choose_embedder(Sync *s)
{
    RagEmbedder *e = s->opt ? s->opt->embedder : NULL;
    if (e == NULL && s->row.embed.file[0] == '\0') return;
    if (embed_check(s->rag, s->kb_name, &s->row, e) == KB_OK) {
        s->emb = e;
        return;
    }
    char msg[sizeof s->rag->errmsg + 64];
    snprintf(msg, sizeof msg, "no vectors made: %s", s->rag->errmsg);
    s->rag->errmsg[0] = '\0';
    warn(s, NULL, msg);
}

/* Reads the knowledge base's id, chunking settings and pinned model. */
static int load_kb(Sync *s)
{
    int rc = store_load_kb(s->rag, s->kb_name, &s->row);
    if (rc != KB_OK) return rc;
    s->kb = s->row.id;
    s->chunk.size = s->row.chunk_size;
    s->chunk.overlap = s->row.chunk_overlap;
    choose_embedder(s);
    if (s->opt) {
        s->chunk.max_tokens = s->opt->max_tokens;
        s->chunk.count_tokens = s->opt->count_tokens;
        s->chunk.user = s->opt->count_user;
    }
    if (s->emb && s->chunk.count_tokens == NULL) { /* chunks must fit the model */
        s->chunk.max_tokens = rag_embedder_max_tokens(s->emb);
        s->chunk.count_tokens = rag_embedder_count_tokens;
        s->chunk.user = s->emb;
    }
    return KB_OK;
}

/* --- one sync of a knowledge base at a time --- */

/* store_kb_lock's wait callback: the warning that another sync runs. */
static void on_lock_wait(void *user)
{
    Sync *s = user;
    char msg[300];
    snprintf(msg, sizeof msg, "another sync or rebuild of '%s' is running: waiting for it to finish", s->kb_name);
    warn(s, NULL, msg);
}

/* Step 6: the chunks that still have no vector. */
static int fill_vectors(Sync *s)
{
    int64_t n = 0;
    if (s->emb == NULL) return KB_OK;
    int rc = embed_fill_missing(s->rag, &s->row, 0, s->emb, s->opt, &s->p, s->t0, &n);
    s->stats->vectors += n;
    return rc;
}

/* Steps 1 to 6, with the sync lock held. w, docs and pl are the caller's
** to free. */
static int sync_run(Sync *s, Walk *w, StoreDoc **docs, int *n_docs, Plan *pl)
{
    w->seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    int rc = walk_sources(s, w);
    if (rc == KB_OK && w->n > 1) qsort(w->f, (size_t)w->n, sizeof *w->f, cmp_found);
    s->stats->found = w->n;
    if (rc == KB_OK) rc = store_load_docs(s->rag, s->kb, docs, n_docs);
    if (rc == KB_OK) rc = make_plan(s, w, *docs, *n_docs, pl);
    if (rc == KB_OK) rc = find_moves(s, pl);
    if (rc == KB_OK) rc = apply_plan(s, pl);
    if (rc == KB_OK) rc = fill_vectors(s);
    return rc;
}

int rag_sync(Rag *rag, const char *name, const RagSyncOptions *opt, RagSyncStats *stats)
{
    RagSyncStats local;
    Sync s = {.rag = rag, .kb_name = name, .opt = opt, .stats = stats ? stats : &local, .t0 = now_s()};
    memset(s.stats, 0, sizeof *s.stats);
    s.p.kb = name;
    rag->errmsg[0] = '\0';
    Walk w = {0};
    StoreDoc *docs = NULL;
    int n_docs = 0, lock = -1;
    Plan pl = {0};
    int rc = load_kb(&s);
    if (rc == KB_OK) rc = store_kb_lock(rag, s.kb, opt, on_lock_wait, &s, &lock); /* < 0: cancelled waiting */
    if (rc == KB_OK && lock >= 0) rc = sync_run(&s, &w, &docs, &n_docs, &pl);
    s.stats->cancelled = embed_cancelled(opt); /* then the sync is not finished: last_sync stays */
    if (rc == KB_OK && !s.stats->cancelled) rc = store_mark_synced(rag, s.kb);
    if (rc == KB_ENOMEM && rag->errmsg[0] == '\0') store_fail(rag, KB_ENOMEM, "out of memory");
    store_kb_unlock(lock);
    plan_free(&pl);
    store_docs_free(docs, n_docs);
    walk_free(&w);
    s.stats->seconds = now_s() - s.t0;
    return rc;
}
