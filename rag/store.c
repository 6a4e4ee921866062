/*
** store.c: opening the knowledge-base database, its schema and migrations,
** and the document writes that sync makes (schema in store.h).
**
** Crash safety rests on three things: WAL mode (a commit is one append to
** the log; a killed process leaves the log's committed prefix), one
** transaction per document (store_put_document writes the row, deletes the
** old chunks and inserts the new ones, or nothing), and sync deciding from
** the committed rows alone what is left to do. synchronous=NORMAL keeps
** every commit across a crash of kbchat; only a power cut may lose the last
** few, which the next sync then redoes.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "engine/engine.h"
#include "rag/store.h"
#include "rag/vectors.h"

#define BUSY_TIMEOUT_MS 10000 /* wait this long for another kbchat's write */

/* --- messages and SQL helpers --- */

int store_fail(Rag *rag, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rag->errmsg, sizeof rag->errmsg, fmt, ap);
    va_end(ap);
    return rc;
}

/* Corruption and a write refused on a read-only database get words that
** say what to do; corruption also marks the session, so rag_close drops
** the recorded file state and the next open checks the file. */
int store_sql_fail(Rag *rag, const char *what)
{
    int code = sqlite3_errcode(rag->db);
    if (code == SQLITE_READONLY && rag->read_only) return store_read_only_fail(rag);
    if (code == SQLITE_CORRUPT) {
        rag->damaged = 1;
        return store_fail(rag, KB_EIO, "%s: %s: %s: the database is damaged; run 'kbchat kb check' to find and repair it",
                          rag->path, what, sqlite3_errmsg(rag->db));
    }
    store_fail(rag, KB_EIO, "%s: %s: %s", rag->path ? rag->path : "database", what, sqlite3_errmsg(rag->db));
    if (code == SQLITE_NOMEM) return KB_ENOMEM;
    if (code == SQLITE_NOTADB) return KB_EFORMAT;
    return KB_EIO;
}

int store_exec(Rag *rag, const char *sql)
{
    return sqlite3_exec(rag->db, sql, NULL, NULL, NULL) == SQLITE_OK ? KB_OK : store_sql_fail(rag, "SQL failed");
}

int store_prepare(Rag *rag, const char *sql, sqlite3_stmt **st)
{
    *st = NULL;
    return sqlite3_prepare_v2(rag->db, sql, -1, st, NULL) == SQLITE_OK ? KB_OK : store_sql_fail(rag, "cannot prepare");
}

int store_begin(Rag *rag)
{
    return store_exec(rag, "BEGIN IMMEDIATE");
}

int store_commit(Rag *rag)
{
    return store_exec(rag, "COMMIT");
}

void store_rollback(Rag *rag)
{
    if (!sqlite3_get_autocommit(rag->db)) sqlite3_exec(rag->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Reads one integer from a single-row query (a PRAGMA). */
static int query_int(Rag *rag, const char *sql, int64_t *v)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, sql, &st);
    *v = 0;
    if (rc == KB_OK) {
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
        else if (s != SQLITE_DONE) rc = store_sql_fail(rag, sql);
    }
    sqlite3_finalize(st);
    return rc;
}

/* --- schema --- */

/* migrations[v] takes the schema from version v-1 to v. Never edit a
** shipped entry: add the next one. */
static const char *const migrations[] = {
    NULL,
    /* 1: the first schema */
    "PRAGMA application_id = 1801610088;" /* STORE_APPLICATION_ID */
    "CREATE TABLE kbs("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  chunk_size INTEGER NOT NULL,"
    "  chunk_overlap INTEGER NOT NULL,"
    "  embed_model TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL,"
    "  last_sync INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE sources("
    "  id INTEGER PRIMARY KEY,"
    "  kb_id INTEGER NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,"
    "  path TEXT NOT NULL,"
    "  exclude INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE(kb_id, path));"
    "CREATE TABLE documents("
    "  id INTEGER PRIMARY KEY,"
    "  kb_id INTEGER NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,"
    "  path TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL,"
    "  hash TEXT NOT NULL,"
    "  pages INTEGER NOT NULL DEFAULT 0,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  author TEXT NOT NULL DEFAULT '',"
    "  failed INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT NOT NULL DEFAULT '',"
    "  indexed INTEGER NOT NULL,"
    "  UNIQUE(kb_id, path));"
    "CREATE INDEX documents_hash ON documents(kb_id, hash);"
    "CREATE TABLE chunks("
    "  id INTEGER PRIMARY KEY,"
    "  doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  page INTEGER NOT NULL,"
    "  char_start INTEGER NOT NULL,"
    "  char_end INTEGER NOT NULL,"
    "  section TEXT NOT NULL DEFAULT '',"
    "  text TEXT NOT NULL,"
    "  UNIQUE(doc_id, seq));"
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id',"
    "  tokenize='" FTS_CJK_NAME "');"
    "CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN"
    "  INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);"
    "END;"
    "CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN"
    "  INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    "END;"
    "CREATE TRIGGER chunks_au AFTER UPDATE OF text ON chunks BEGIN"
    "  INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    "  INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);"
    "END;",
    /* 2: vectors, and the embedding model a knowledge base is pinned to */
    "ALTER TABLE kbs ADD COLUMN embed_file TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE kbs ADD COLUMN embed_size INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE kbs ADD COLUMN embed_hash TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE kbs ADD COLUMN embed_dim INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE kbs ADD COLUMN vec_gen INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE vectors("
    "  chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,"
    "  kb_id INTEGER NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,"
    "  vec BLOB NOT NULL);"
    "CREATE INDEX vectors_kb ON vectors(kb_id);"
    "CREATE TRIGGER vectors_ai AFTER INSERT ON vectors BEGIN"
    "  UPDATE kbs SET vec_gen = vec_gen + 1 WHERE id = new.kb_id;"
    "END;"
    "CREATE TRIGGER vectors_ad AFTER DELETE ON vectors BEGIN"
    "  UPDATE kbs SET vec_gen = vec_gen + 1 WHERE id = old.kb_id;"
    "END;",
    /* 3: chat sessions (session.c); sources are copies, so no reference to chunks */
    "CREATE TABLE sessions("
    "  id INTEGER PRIMARY KEY,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  model TEXT NOT NULL DEFAULT '',"
    "  template TEXT NOT NULL DEFAULT '',"
    "  kb TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE INDEX sessions_updated ON sessions(updated);"
    "CREATE TABLE turns("
    "  id INTEGER PRIMARY KEY,"
    "  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  question TEXT NOT NULL,"
    "  query TEXT NOT NULL DEFAULT '',"
    "  prompt TEXT NOT NULL DEFAULT '',"
    "  answer TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(session_id, seq));"
    "CREATE TABLE turn_sources("
    "  turn_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,"
    "  rank INTEGER NOT NULL,"
    "  file TEXT NOT NULL,"
    "  page INTEGER NOT NULL DEFAULT 0,"
    "  section TEXT NOT NULL DEFAULT '',"
    "  score REAL NOT NULL DEFAULT 0,"
    "  chunk_id INTEGER NOT NULL DEFAULT 0,"
    "  text TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY(turn_id, rank));",
    /* 4: the chunk count of each document, for kb check (check.c) */
    "ALTER TABLE documents ADD COLUMN n_chunks INTEGER NOT NULL DEFAULT 0;"
    "UPDATE documents SET n_chunks = (SELECT count(*) FROM chunks WHERE doc_id = documents.id);",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])
_Static_assert(N_MIGRATIONS == STORE_SCHEMA_VERSION + 1, "one migration per schema version");
_Static_assert(STORE_APPLICATION_ID == 1801610088, "the application id in migration 1");

/* Refuses a file that is some other program's SQLite database. */
static int check_ours(Rag *rag, int64_t version)
{
    int64_t app_id, n_tables;
    int rc = query_int(rag, "PRAGMA application_id", &app_id);
    if (rc == KB_OK && app_id != 0 && app_id != STORE_APPLICATION_ID)
        return store_fail(rag, KB_EFORMAT, "%s: not a kbchat database (application_id %lld)", rag->path,
                          (long long)app_id);
    if (rc == KB_OK && version == 0) {
        rc = query_int(rag, "SELECT count(*) FROM sqlite_schema", &n_tables);
        if (rc == KB_OK && n_tables > 0)
            return store_fail(rag, KB_EFORMAT, "%s: not a kbchat database (it has tables of another program)",
                              rag->path);
    }
    return rc;
}

/* Brings the schema to STORE_SCHEMA_VERSION, one migration per transaction.
** The version is read again under the write lock, so two kbchats opening a
** new database at once migrate it once. */
static int migrate(Rag *rag)
{
    int64_t version;
    int rc = query_int(rag, "PRAGMA user_version", &version);
    if (rc == KB_OK && rag->read_only && version < STORE_SCHEMA_VERSION && version > 0)
        return store_fail(rag, KB_EIO, "%s needs an upgrade of its schema (version %lld to %d), which a read-only "
                          "database cannot take: open it once with write access",
                          rag->path, (long long)version, STORE_SCHEMA_VERSION);
    if (rc == KB_OK && version > STORE_SCHEMA_VERSION)
        return store_fail(rag, KB_EUNSUPPORTED,
                          "%s: written by a newer kbchat (schema version %lld; this one knows up to %d)", rag->path,
                          (long long)version, STORE_SCHEMA_VERSION);
    if (rc == KB_OK) rc = check_ours(rag, version);
    for (int v = (int)version + 1; rc == KB_OK && v <= STORE_SCHEMA_VERSION; v++) {
        rc = store_begin(rag);
        int64_t now = 0;
        if (rc == KB_OK) rc = query_int(rag, "PRAGMA user_version", &now);
        if (rc == KB_OK && now < v) {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
            rc = store_exec(rag, migrations[v]);
            if (rc == KB_OK) rc = store_exec(rag, sql);
        }
        if (rc == KB_OK) rc = store_commit(rag);
        if (rc != KB_OK) store_rollback(rag);
    }
    return rc;
}

/* --- open and close --- */

/* Creates dir and its missing parents with mode 0700. */
static int make_dirs(Rag *rag, const char *dir)
{
    char *p = strdup(dir);
    if (p == NULL) return store_fail(rag, KB_ENOMEM, "out of memory");
    int rc = KB_OK;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = store_fail(rag, KB_EIO, "cannot create the data directory %s: %s", p, strerror(errno));
            break;
        }
        *s = c;
        if (c == '\0') break;
    }
    free(p);
    return rc;
}

static int configure(Rag *rag)
{
    int rc = fts_cjk_register(rag->db) == SQLITE_OK ? KB_OK : store_sql_fail(rag, "cannot register the tokenizer");
    sqlite3_busy_timeout(rag->db, BUSY_TIMEOUT_MS);
    if (rc == KB_OK && !rag->read_only) rc = store_exec(rag, "PRAGMA journal_mode = WAL");
    if (rc == KB_OK && !rag->read_only) rc = store_exec(rag, "PRAGMA synchronous = NORMAL");
    if (rc == KB_OK) rc = store_exec(rag, "PRAGMA foreign_keys = ON");
    return rc;
}

/* Writes "file:<path>?mode=ro[&immutable=1]" into buf, with the characters
** a URI reserves percent-encoded. Returns 0, or -1 when it does not fit. */
static int read_only_uri(const char *path, int immutable, char *buf, size_t n)
{
    size_t o = 0;
    o += (size_t)snprintf(buf, n, "file:");
    for (const char *p = path; *p && o + 4 < n; p++) {
        if (*p == '%' || *p == '?' || *p == '#') o += (size_t)snprintf(buf + o, n - o, "%%%02X", (unsigned char)*p);
        else buf[o++] = *p;
    }
    int len = snprintf(buf + o, n - o, "?mode=ro%s", immutable ? "&immutable=1" : "");
    return len < 0 || o + (size_t)len >= n ? -1 : 0;
}

/* Opens the SQLite connection: read-write, or read-only when kbchat cannot
** write the directory or the file. A WAL database needs its -shm to be
** read; when the directory is read-only and no -shm is there (a clean
** close removes it), nobody can be writing it either, so it is opened
** immutable (SQLite then needs no -shm). */
static int open_connection(Rag *rag, int exists)
{
    int err, s;
    const char *problem = store_file_access_problem(rag->dir, rag->path, exists, &err);
    if (problem && !exists)
        return store_fail(rag, KB_EIO, "cannot create %s: %s: %s; make it writable, or set data_dir to a writable folder",
                          rag->path, rag->dir, problem);
    if (problem == NULL) {
        int rc = exists ? KB_OK : store_file_create(rag);
        if (rc != KB_OK) return rc;
        store_file_tighten(rag->path);
        s = sqlite3_open_v2(rag->path, &rag->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
        return s == SQLITE_OK ? KB_OK : store_sql_fail(rag, "cannot open");
    }
    rag->read_only = 1;
    snprintf(rag->ro_reason, sizeof rag->ro_reason, "%s", problem);
    char shm[4200], uri[8600];
    snprintf(shm, sizeof shm, "%s-shm", rag->path);
    int immutable = access(rag->dir, W_OK) != 0 && access(shm, F_OK) != 0;
    if (read_only_uri(rag->path, immutable, uri, sizeof uri) != 0)
        return store_fail(rag, KB_EIO, "%s: path too long", rag->path);
    s = sqlite3_open_v2(uri, &rag->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    return s == SQLITE_OK ? KB_OK : store_sql_fail(rag, "cannot open read-only");
}

/* Runs PRAGMA quick_check. Returns KB_OK when it says ok, else KB_EFORMAT
** with its first finding and the remedy; KB_EIO when it cannot run. */
static int quick_check(Rag *rag)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "PRAGMA quick_check(1)", &st);
    int s = rc == KB_OK ? sqlite3_step(st) : SQLITE_ERROR;
    const char *r = s == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (rc == KB_OK && s == SQLITE_ROW && r && strncmp(r, "*** in database main ***\n", 25) == 0) r += 25;
    if (rc == KB_OK && s == SQLITE_ROW && r && strcmp(r, "ok") != 0)
        rc = store_fail(rag, KB_EFORMAT, "%s is damaged (quick_check: %s); run 'kbchat kb check' to find and repair the damage", rag->path, r);
    else if (rc == KB_OK && s != SQLITE_ROW) rc = store_sql_fail(rag, "quick_check");
    sqlite3_finalize(st);
    if (rc != KB_OK) rag->damaged = 1;
    return rc;
}

/* Refuses an empty database file where kbchat last closed a non-empty one:
** SQLite would take it for a new database and silently start over. (A
** file that is only shorter is opened: it may be another file now, and
** quick_check finds the pages a truncation lost.) */
static int check_not_emptied(Rag *rag, const StoreFileState *now, const StoreFileState *last)
{
    if (!now->valid || !last->valid || now->size != 0 || last->size == 0) return KB_OK;
    return store_fail(rag, KB_EFORMAT,
                      "%s is 0 bytes, but it held %lld bytes when kbchat last closed it: it was truncated or "
                      "emptied. Restore it from a backup; or, to start over, delete it and %s-state and sync "
                      "every knowledge base again",
                      rag->path, (long long)last->size, rag->path);
}

int rag_open_mode(Rag **out, const char *data_dir, int flags)
{
    Rag *rag = calloc(1, sizeof *rag);
    *out = rag;
    if (rag == NULL) return KB_ENOMEM;
    rag->use_fd = -1;
    size_t n = strlen(data_dir) + sizeof RAG_DB_NAME + 1;
    rag->path = malloc(n);
    rag->dir = strdup(data_dir);
    if (rag->path == NULL || rag->dir == NULL) return store_fail(rag, KB_ENOMEM, "out of memory");
    snprintf(rag->path, n, "%s/%s", data_dir, RAG_DB_NAME);
    StoreFileState now, last;
    int rc = make_dirs(rag, data_dir);
    if (rc == KB_OK) rc = store_use_lock(rag);
    int exists = rc == KB_OK && store_file_stat(rag->path, &now) == KB_OK;
    store_state_read(rag->path, &last);
    if (rc == KB_OK && exists) rc = check_not_emptied(rag, &now, &last);
    if (rc == KB_OK) rc = open_connection(rag, exists);
    if (rc == KB_OK) rc = configure(rag);
    if (rc == KB_OK) rc = migrate(rag);
    /* a file changed since the last clean close is checked before use */
    if (rc == KB_OK && exists && !store_file_same(&now, &last)) {
        rc = quick_check(rag);
        if (rc == KB_EFORMAT && (flags & RAG_OPEN_DAMAGED)) rc = KB_OK;
    }
    if (rc == KB_OK) rag->healthy = !rag->damaged;
    if (rc == KB_OK && !rag->damaged) rag->errmsg[0] = '\0';
    return rc;
}

int store_create_file(Rag *rag)
{
    int rc = open_connection(rag, 0);
    if (rc == KB_OK) rc = configure(rag);
    if (rc == KB_OK) rc = migrate(rag);
    return rc;
}

int rag_open(Rag **out, const char *data_dir)
{
    return rag_open_mode(out, data_dir, 0);
}

/* A clean close of a sound database records its state, so the next open
** skips the check; after corruption was met the record is dropped, so the
** next open checks. */
void rag_close(Rag *rag)
{
    if (rag == NULL) return;
    vec_index_free(rag->vec);
    int closed = sqlite3_close_v2(rag->db) == SQLITE_OK;
    if (rag->damaged && !rag->read_only) store_state_forget(rag->path);
    else if (closed && rag->healthy && !rag->read_only) store_state_write(rag->path);
    if (rag->use_fd >= 0) close(rag->use_fd); /* drops the flock */
    free(rag->path);
    free(rag->dir);
    free(rag);
}

int rag_is_read_only(const Rag *rag)
{
    return rag->read_only;
}

const char *rag_errmsg(const Rag *rag)
{
    return rag ? rag->errmsg : "out of memory";
}

const char *rag_db_path(const Rag *rag)
{
    return rag->path;
}

int store_kb_id(Rag *rag, const char *name, int64_t *id)
{
    sqlite3_stmt *st;
    *id = 0;
    int rc = store_prepare(rag, "SELECT id FROM kbs WHERE name = ?1", &st);
    if (rc == KB_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
        else if (s == SQLITE_DONE) rc = store_fail(rag, KB_ENOTFOUND, "no knowledge base named '%s'", name);
        else rc = store_sql_fail(rag, "cannot read knowledge bases");
    }
    sqlite3_finalize(st);
    return rc;
}

int store_load_kb(Rag *rag, const char *name, StoreKb *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           "SELECT id, chunk_size, chunk_overlap, embed_file, embed_size, embed_hash, embed_dim, "
                           "vec_gen FROM kbs WHERE name = ?1",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        out->id = sqlite3_column_int64(st, 0);
        out->chunk_size = sqlite3_column_int(st, 1);
        out->chunk_overlap = sqlite3_column_int(st, 2);
        snprintf(out->embed.file, sizeof out->embed.file, "%s", (const char *)sqlite3_column_text(st, 3));
        out->embed.size = sqlite3_column_int64(st, 4);
        snprintf(out->embed.hash, sizeof out->embed.hash, "%s", (const char *)sqlite3_column_text(st, 5));
        out->embed.dim = sqlite3_column_int(st, 6);
        out->vec_gen = sqlite3_column_int64(st, 7);
    } else if (s == SQLITE_DONE) {
        rc = store_fail(rag, KB_ENOTFOUND, "no knowledge base named '%s'", name);
    } else {
        rc = store_sql_fail(rag, "cannot read knowledge bases");
    }
    sqlite3_finalize(st);
    return rc;
}

int store_integrity_check(Rag *rag)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "PRAGMA integrity_check", &st);
    if (rc == KB_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (r == NULL || strcmp(r, "ok") != 0) rc = store_fail(rag, KB_EFORMAT, "integrity_check: %s", r ? r : "?");
    } else if (rc == KB_OK) {
        rc = store_sql_fail(rag, "integrity_check");
    }
    sqlite3_finalize(st);
    if (rc == KB_OK && sqlite3_exec(rag->db, "INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')", NULL,
                                    NULL, NULL) != SQLITE_OK)
        rc = store_fail(rag, KB_EFORMAT, "keyword index: %s", sqlite3_errmsg(rag->db));
    return rc;
}

/* --- documents --- */

void store_docs_free(StoreDoc *docs, int n)
{
    for (int i = 0; docs && i < n; i++) free(docs[i].path);
    free(docs);
}

int store_load_docs(Rag *rag, int64_t kb, StoreDoc **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           "SELECT id, path, size, mtime_ns, hash, failed FROM documents WHERE kb_id = ?1 "
                           "ORDER BY path",
                           &st);
    int n = 0, cap = 0, s = SQLITE_DONE;
    StoreDoc *d = NULL;
    if (rc == KB_OK) sqlite3_bind_int64(st, 1, kb);
    while (rc == KB_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            StoreDoc *t = realloc(d, (size_t)cap * sizeof *t);
            if (t == NULL) {
                rc = store_fail(rag, KB_ENOMEM, "out of memory");
                break;
            }
            d = t;
        }
        StoreDoc *x = &d[n];
        memset(x, 0, sizeof *x);
        x->id = sqlite3_column_int64(st, 0);
        x->path = strdup((const char *)sqlite3_column_text(st, 1));
        if (x->path == NULL) {
            rc = store_fail(rag, KB_ENOMEM, "out of memory");
            break;
        }
        n++;
        x->size = sqlite3_column_int64(st, 2);
        x->mtime_ns = sqlite3_column_int64(st, 3);
        snprintf(x->hash, sizeof x->hash, "%s", (const char *)sqlite3_column_text(st, 4));
        x->failed = sqlite3_column_int(st, 5);
    }
    if (rc == KB_OK && s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot read documents");
    sqlite3_finalize(st);
    if (rc != KB_OK) {
        store_docs_free(d, n);
        return rc;
    }
    *out = d;
    *n_out = n;
    return KB_OK;
}

/* Runs a prepared write to completion and finalizes it. */
static int step_done(Rag *rag, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? KB_OK : store_sql_fail(rag, what);
    sqlite3_finalize(st);
    return rc;
}

/* Creates or replaces the row of info->path (with n_chunks, the chunks
** about to be written) and deletes its old chunks. Returns the row id in *id. */
static int upsert_document(Rag *rag, int64_t kb, const StoreDocInfo *info, int n_chunks, int64_t *id)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           "INSERT INTO documents(kb_id, path, size, mtime_ns, hash, pages, title, author, failed, "
                           "error, indexed, n_chunks) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
                           "ON CONFLICT(kb_id, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                           "hash = excluded.hash, pages = excluded.pages, title = excluded.title, "
                           "author = excluded.author, failed = excluded.failed, error = excluded.error, "
                           "indexed = excluded.indexed, n_chunks = excluded.n_chunks RETURNING id",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, kb);
    sqlite3_bind_text(st, 2, info->path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, info->size);
    sqlite3_bind_int64(st, 4, info->mtime_ns);
    sqlite3_bind_text(st, 5, info->hash ? info->hash : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, info->pages);
    sqlite3_bind_text(st, 7, info->title ? info->title : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, info->author ? info->author : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 9, info->error != NULL);
    sqlite3_bind_text(st, 10, info->error ? info->error : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, (int64_t)time(NULL));
    sqlite3_bind_int(st, 12, n_chunks);
    if (sqlite3_step(st) == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    else rc = store_sql_fail(rag, "cannot write a document");
    sqlite3_finalize(st);
    if (rc == KB_OK) rc = store_prepare(rag, "DELETE FROM chunks WHERE doc_id = ?1", &st);
    if (rc == KB_OK) {
        sqlite3_bind_int64(st, 1, *id);
        rc = step_done(rag, st, "cannot delete old chunks");
    }
    return rc;
}

/* Inserts one vector of dim floats for chunk id. vst is a prepared
** "INSERT ... INTO vectors" (reset here). */
static int insert_vector(Rag *rag, sqlite3_stmt *vst, int64_t kb, int64_t id, const float *v, int dim)
{
    sqlite3_bind_int64(vst, 1, id);
    sqlite3_bind_int64(vst, 2, kb);
    sqlite3_bind_blob(vst, 3, v, dim * (int)sizeof(float), SQLITE_STATIC);
    int rc = sqlite3_step(vst) == SQLITE_DONE ? KB_OK : store_sql_fail(rag, "cannot write a vector");
    sqlite3_reset(vst);
    return rc;
}

#define INSERT_VECTOR_SQL "INSERT OR REPLACE INTO vectors(chunk_id, kb_id, vec) VALUES (?1, ?2, ?3)"

static int insert_chunks(Rag *rag, int64_t kb, int64_t doc, const Chunk *c, int n, const float *vecs, int dim)
{
    sqlite3_stmt *st, *vst = NULL;
    int rc = store_prepare(rag,
                           "INSERT INTO chunks(doc_id, seq, page, char_start, char_end, section, text) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           &st);
    if (rc == KB_OK && vecs) rc = store_prepare(rag, INSERT_VECTOR_SQL, &vst);
    for (int i = 0; i < n && rc == KB_OK; i++) {
        sqlite3_bind_int64(st, 1, doc);
        sqlite3_bind_int(st, 2, i);
        sqlite3_bind_int(st, 3, c[i].page);
        sqlite3_bind_int64(st, 4, (int64_t)c[i].char_start);
        sqlite3_bind_int64(st, 5, (int64_t)c[i].char_end);
        sqlite3_bind_text(st, 6, c[i].section ? c[i].section : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, c[i].text, (int)c[i].text_len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = store_sql_fail(rag, "cannot write a chunk");
        sqlite3_reset(st);
        if (rc == KB_OK && vst)
            rc = insert_vector(rag, vst, kb, sqlite3_last_insert_rowid(rag->db), vecs + (size_t)i * (size_t)dim, dim);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(vst);
    return rc;
}

int store_put_document(Rag *rag, int64_t kb, const StoreDocInfo *info, const Chunk *chunks, int n_chunks)
{
    return store_put_document_vecs(rag, kb, info, chunks, n_chunks, NULL, 0);
}

int store_put_document_vecs(Rag *rag, int64_t kb, const StoreDocInfo *info, const Chunk *chunks, int n_chunks,
                            const float *vecs, int dim)
{
    int64_t id = 0;
    int rc = store_begin(rag);
    if (rc == KB_OK) rc = upsert_document(rag, kb, info, n_chunks, &id);
    if (rc == KB_OK) rc = insert_chunks(rag, kb, id, chunks, n_chunks, vecs, dim);
    if (rc == KB_OK) rc = store_commit(rag);
    if (rc != KB_OK) store_rollback(rag);
    return rc;
}

/* Runs an UPDATE/DELETE of one document row by id in its own statement
** (autocommit: one statement is one transaction). */
static int write_doc_row(Rag *rag, const char *sql, int64_t id, const char *path, int64_t size, int64_t mtime_ns)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, sql, &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, id);
    if (path) sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, size);
    sqlite3_bind_int64(st, 4, mtime_ns);
    return step_done(rag, st, "cannot update a document");
}

int store_move_document(Rag *rag, int64_t id, const char *path, int64_t size, int64_t mtime_ns)
{
    return write_doc_row(rag, "UPDATE documents SET path = ?2, size = ?3, mtime_ns = ?4 WHERE id = ?1", id, path,
                         size, mtime_ns);
}

int store_touch_document(Rag *rag, int64_t id, int64_t size, int64_t mtime_ns)
{
    return write_doc_row(rag, "UPDATE documents SET size = ?3, mtime_ns = ?4 WHERE id = ?1", id, NULL, size,
                         mtime_ns);
}

/* The chunks go by cascade, and their FTS entries with them by trigger; the
** whole statement is one transaction. */
int store_delete_document(Rag *rag, int64_t id)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "DELETE FROM documents WHERE id = ?1", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, id);
    return step_done(rag, st, "cannot delete a document");
}

void store_sources_free(char **paths, int *exclude, int n)
{
    for (int i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
    free(exclude);
}

int store_load_sources(Rag *rag, int64_t kb, char ***paths, int **exclude, int *n_out)
{
    *paths = NULL;
    *exclude = NULL;
    *n_out = 0;
    int64_t count;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM sources WHERE kb_id = %lld", (long long)kb);
    int rc = query_int(rag, sql, &count);
    sqlite3_stmt *st = NULL;
    if (rc == KB_OK) rc = store_prepare(rag, "SELECT path, exclude FROM sources WHERE kb_id = ?1 ORDER BY path", &st);
    char **p = rc == KB_OK ? calloc((size_t)count + 1, sizeof *p) : NULL;
    int *x = rc == KB_OK ? calloc((size_t)count + 1, sizeof *x) : NULL;
    if (rc == KB_OK && (p == NULL || x == NULL)) rc = store_fail(rag, KB_ENOMEM, "out of memory");
    int n = 0, s = SQLITE_DONE;
    if (rc == KB_OK) sqlite3_bind_int64(st, 1, kb);
    while (rc == KB_OK && n < count && (s = sqlite3_step(st)) == SQLITE_ROW) {
        p[n] = strdup((const char *)sqlite3_column_text(st, 0));
        x[n] = sqlite3_column_int(st, 1);
        if (p[n] == NULL) rc = store_fail(rag, KB_ENOMEM, "out of memory");
        else n++;
    }
    /* a read that failed (a damaged page) must not pass for fewer sources */
    if (rc == KB_OK && s != SQLITE_DONE && s != SQLITE_ROW) rc = store_sql_fail(rag, "cannot read sources");
    sqlite3_finalize(st);
    if (rc != KB_OK) {
        store_sources_free(p, x, n);
        return rc;
    }
    *paths = p;
    *exclude = x;
    *n_out = n;
    return KB_OK;
}

int store_mark_synced(Rag *rag, int64_t kb)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "UPDATE kbs SET last_sync = ?2 WHERE id = ?1", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, kb);
    sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
    return step_done(rag, st, "cannot record the sync");
}

/* --- vectors --- */

int store_repin(Rag *rag, int64_t kb, const char *spec, const RagEmbedId *id)
{
    sqlite3_stmt *st = NULL;
    int rc = store_begin(rag);
    if (rc == KB_OK)
        rc = store_prepare(rag,
                           "UPDATE kbs SET embed_model = ?2, embed_file = ?3, embed_size = ?4, embed_hash = ?5, "
                           "embed_dim = ?6 WHERE id = ?1",
                           &st);
    if (rc == KB_OK) {
        sqlite3_bind_int64(st, 1, kb);
        sqlite3_bind_text(st, 2, spec, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, id->file, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, id->size);
        sqlite3_bind_text(st, 5, id->hash, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, id->dim);
        rc = step_done(rag, st, "cannot pin the embedding model");
    }
    if (rc == KB_OK) rc = store_prepare(rag, "DELETE FROM vectors WHERE kb_id = ?1", &st);
    if (rc == KB_OK) {
        sqlite3_bind_int64(st, 1, kb);
        rc = step_done(rag, st, "cannot delete vectors");
    }
    if (rc == KB_OK) rc = store_commit(rag);
    if (rc != KB_OK) store_rollback(rag);
    return rc;
}

int store_put_vectors(Rag *rag, int64_t kb, const int64_t *ids, const float *vecs, int n, int dim)
{
    sqlite3_stmt *vst = NULL;
    int rc = store_begin(rag);
    /* the chunk must still exist: a sync may have replaced its document */
    if (rc == KB_OK)
        rc = store_prepare(rag,
                           "INSERT OR REPLACE INTO vectors(chunk_id, kb_id, vec) SELECT ?1, ?2, ?3 "
                           "WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?1)",
                           &vst);
    for (int i = 0; i < n && rc == KB_OK; i++) rc = insert_vector(rag, vst, kb, ids[i], vecs + (size_t)i * (size_t)dim, dim);
    sqlite3_finalize(vst);
    if (rc == KB_OK) rc = store_commit(rag);
    if (rc != KB_OK) store_rollback(rag);
    return rc;
}

void store_texts_free(int64_t *ids, char **texts, int n)
{
    for (int i = 0; texts && i < n; i++) free(texts[i]);
    free(texts);
    free(ids);
}

#define MISSING_WHERE "c.id > ?3 AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.chunk_id = c.id) "

int store_chunks_without_vectors(Rag *rag, int64_t kb, int64_t doc, int64_t after, int limit, int64_t **ids,
                                 char ***texts, int *n_out)
{
    *ids = NULL;
    *texts = NULL;
    *n_out = 0;
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           doc ? "SELECT c.id, c.text FROM chunks c WHERE c.doc_id = ?1 AND " MISSING_WHERE
                                 "ORDER BY c.id LIMIT ?2"
                               : "SELECT c.id, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                 "WHERE d.kb_id = ?1 AND " MISSING_WHERE "ORDER BY c.id LIMIT ?2",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 3, after);
    int64_t *id = malloc((size_t)limit * sizeof *id);
    char **tx = calloc((size_t)limit, sizeof *tx);
    int n = 0, s = SQLITE_DONE;
    if (id == NULL || tx == NULL) rc = store_fail(rag, KB_ENOMEM, "out of memory");
    sqlite3_bind_int64(st, 1, doc ? doc : kb);
    sqlite3_bind_int(st, 2, limit);
    while (rc == KB_OK && n < limit && (s = sqlite3_step(st)) == SQLITE_ROW) {
        id[n] = sqlite3_column_int64(st, 0);
        if ((tx[n] = strdup((const char *)sqlite3_column_text(st, 1))) == NULL) rc = store_fail(rag, KB_ENOMEM, "out of memory");
        else n++;
    }
    if (rc == KB_OK && n < limit && s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot read chunks");
    sqlite3_finalize(st);
    if (rc != KB_OK) {
        store_texts_free(id, tx, n);
        return rc;
    }
    *ids = id;
    *texts = tx;
    *n_out = n;
    return KB_OK;
}

int store_count_missing(Rag *rag, int64_t kb, int64_t doc, int64_t *n_chunks, int64_t *n_missing)
{
    sqlite3_stmt *st;
    *n_chunks = *n_missing = 0;
    int rc = store_prepare(rag,
                           doc ? "SELECT count(*), coalesce(sum(NOT EXISTS (SELECT 1 FROM vectors v WHERE "
                                 "v.chunk_id = c.id)), 0) FROM chunks c WHERE c.doc_id = ?1"
                               : "SELECT count(*), coalesce(sum(NOT EXISTS (SELECT 1 FROM vectors v WHERE "
                                 "v.chunk_id = c.id)), 0) FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                 "WHERE d.kb_id = ?1",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, doc ? doc : kb);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *n_chunks = sqlite3_column_int64(st, 0);
        *n_missing = sqlite3_column_int64(st, 1);
    } else {
        rc = store_sql_fail(rag, "cannot count vectors");
    }
    sqlite3_finalize(st);
    return rc;
}

int store_doc_id(Rag *rag, int64_t kb, const char *path, int64_t *id)
{
    sqlite3_stmt *st;
    *id = 0;
    int rc = store_prepare(rag, "SELECT id FROM documents WHERE kb_id = ?1 AND path = ?2", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, kb);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    else if (s == SQLITE_DONE) rc = store_fail(rag, KB_ENOTFOUND, "%s: not in the knowledge base", path);
    else rc = store_sql_fail(rag, "cannot read documents");
    sqlite3_finalize(st);
    return rc;
}

/* --- one writer of a knowledge base's documents at a time --- */

#define LOCK_POLL_MS 50 /* how often a waiting sync tries the lock again */

int store_kb_lock(Rag *rag, int64_t kb, const RagSyncOptions *opt, StoreWaitFn waiting, void *user, int *fd)
{
    *fd = -1;
    if (rag->read_only) return store_read_only_fail(rag);
    char path[4096];
    int n = snprintf(path, sizeof path, "%s-sync-%lld.lock", rag->path, (long long)kb);
    if (n < 0 || (size_t)n >= sizeof path) return store_fail(rag, KB_EIO, "%s: path too long for the sync lock", rag->path);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    int rc = f < 0 ? store_fail(rag, KB_EIO, "%s: cannot open the sync lock: %s", path, strerror(errno)) : KB_OK;
    int waited = 0, cancelled = 0;
    while (rc == KB_OK && flock(f, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            rc = store_fail(rag, KB_EIO, "%s: cannot lock: %s", path, strerror(errno));
            break;
        }
        if (!waited++ && waiting) waiting(user);
        if ((cancelled = opt && opt->cancel && atomic_load(opt->cancel) != 0)) break;
        struct timespec ts = {0, LOCK_POLL_MS * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    if (rc == KB_OK && !cancelled) *fd = f;
    else if (f >= 0) close(f);
    return rc;
}

void store_kb_unlock(int fd)
{
    if (fd >= 0) close(fd); /* closing the only descriptor drops the flock */
}
