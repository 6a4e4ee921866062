/*
** store.h: the SQLite database behind every knowledge base. Internal to
** rag/; the public side is rag.h.
**
** One file, <data_dir>/knowledge.db, in WAL mode (readers never block the
** sync, and a killed writer leaves the last committed state), foreign keys
** on, schema versioned by PRAGMA user_version with forward migrations, and
** marked as ours by PRAGMA application_id. Schema (version 4):
**
**   kbs(id, name UNIQUE, chunk_size, chunk_overlap, embed_model, created, last_sync,
**       embed_file, embed_size, embed_hash, embed_dim, vec_gen)
**       embed_*: the model the vectors are pinned to (RagEmbedId);
**       vec_gen: bumped by triggers whenever a vector of the kb is added or
**       deleted, so a loaded vector matrix knows when it is stale
**   sources(id, kb_id -> kbs, path, exclude)   folders/files; exclude=1: skipped
**   documents(id, kb_id -> kbs, path, size, mtime_ns, hash, pages, title,
**             author, failed, error, indexed, n_chunks)  UNIQUE(kb_id, path)
**             n_chunks: the chunks written with it, so `kb check` sees
**             chunks that a damaged page lost
**   chunks(id, doc_id -> documents, seq, page, char_start, char_end,
**          section, text)                            UNIQUE(doc_id, seq)
**   chunks_fts  FTS5 over chunks.text (external content, kept in step by
**               triggers), tokenizer "kbcjk" (fts_cjk.c)
**   vectors(chunk_id -> chunks, kb_id -> kbs, vec)   vec: embed_dim floats,
**               native byte order (little-endian where kbchat runs)
**   sessions(id, title, model, template, kb, created, updated)   chat sessions
**   turns(id, session_id -> sessions, seq, question, query, prompt, answer,
**         created)                                   UNIQUE(session_id, seq)
**   turn_sources(turn_id -> turns, rank, file, page, section, score,
**                chunk_id, text)   copies of the passages an answer cites
**
** Deleting a knowledge base or document cascades to its rows, and the
** triggers take the chunks out of the FTS index.
*/
#ifndef KB_RAG_STORE_H
#define KB_RAG_STORE_H

#include <stdint.h>

#include <sqlite3.h>

#include "rag/chunker.h"
#include "rag/rag.h"

#define STORE_SCHEMA_VERSION 4
#define STORE_APPLICATION_ID 0x6B626368 /* "kbch" */
#define FTS_CJK_NAME "kbcjk"

struct VecIndex;

/* The size of the knowledge base searched last, for BM25 (query.c): valid
** while the database is as it was (PRAGMA data_version for other
** connections' commits, sqlite3_total_changes64 for this one's). */
typedef struct StoreKbSize {
    int valid;
    int64_t kb, data_version, changes;
    int64_t n_chunks;
    double tokens;
} StoreKbSize;

struct Rag {
    sqlite3 *db;
    char *path;          /* the database file */
    char *dir;           /* the data directory holding it */
    int read_only;       /* opened read-only: ro_reason says why */
    char ro_reason[64];  /* "read-only file system", "permission denied", ... */
    int healthy;         /* opened and found sound: a clean close records the file's state */
    int damaged;         /* SQLite reported corruption during this session */
    int use_fd;          /* <db>-use.lock, flock'd shared while open (-1: none, read-only) */
    struct VecIndex *vec; /* the vectors of the knowledge base searched last (vectors.c) */
    StoreKbSize kb_size; /* query.c */
    char errmsg[1024];
};

/* A knowledge base's row, as sync, rebuild and search need it. */
typedef struct StoreKb {
    int64_t id;
    int chunk_size, chunk_overlap;
    RagEmbedId embed;    /* the pinned model; file "" = keyword only */
    int64_t vec_gen;
} StoreKb;

/* --- the file (store_file.c) --- */

/* Every open Rag holds a shared flock on <db>-use.lock; kb check's repair,
** which replaces the file, needs it exclusively, so it never swaps the file
** under another kbchat (whose writes would go to the old file). */
/* Takes the shared lock into rag->use_fd. A directory kbchat cannot write
** gives no lock file and no lock (nobody can write the database either).
** Returns KB_OK, or KB_EIO while a repair holds the lock, with the message. */
int store_use_lock(Rag *rag);
/* Turns rag's shared lock into the exclusive one, failing at once (KB_EIO,
** with the message) while another kbchat has the database open. */
int store_use_exclusive(Rag *rag);

/* What identifies the database file's state: a file rewritten, replaced
** or damaged since differs in at least one field. valid 0 = unknown. */
typedef struct StoreFileState {
    int valid;
    int64_t size, mtime_ns;
    uint64_t ino;
    uint32_t counter; /* SQLite's file change counter (header offset 24) */
} StoreFileState;

/* Fills *out from the file at path. Returns KB_OK; KB_ENOTFOUND (no
** such file); KB_EIO. */
int store_file_stat(const char *path, StoreFileState *out /* OUT */);

/* True when both are valid and equal in every field. */
int store_file_same(const StoreFileState *a, const StoreFileState *b);

/* Reads the state recorded at the last clean close of database db from
** its sidecar <db>-state; out->valid 0 when there is none or it is not
** one kbchat wrote. */
void store_state_read(const char *db, StoreFileState *out /* OUT */);

/* Records db's present state in <db>-state (0600, written to a temporary
** name and renamed). Returns KB_OK; KB_EIO. */
int store_state_write(const char *db);

/* Deletes <db>-state, so the next open checks the file. */
void store_state_forget(const char *db);

/* Tightens db and its -wal, -shm, -journal and -state files to 0600 when
** they are ours and readable by others. */
void store_file_tighten(const char *db);

/* Creates rag->path empty with mode 0600 (before SQLite, which would use
** 0644 under the umask); an existing file is left alone. Returns KB_OK;
** KB_EIO. */
int store_file_create(Rag *rag);

/* Why kbchat cannot write in dir or (when it exists) db: "read-only file
** system" (EROFS), "permission denied" (EACCES), or another errno's
** words, with the errno in *err; NULL when it can. */
const char *store_file_access_problem(const char *dir, const char *db, int exists, int *err /* OUT */);

/* Records the message for a write refused on a read-only database (which
** directory, why, how to fix it) and returns KB_EIO. */
int store_read_only_fail(Rag *rag);

/* Creates a new database at rag->path (in rag->dir; both set by the
** caller, the file absent) with the present schema. rag_close it.
** Returns KB_OK; KB_EIO; KB_ENOMEM. */
int store_create_file(Rag *rag);

/* Reads knowledge base `name`. Returns KB_OK; KB_ENOTFOUND; KB_EIO. */
int store_load_kb(Rag *rag, const char *name, StoreKb *out /* OUT */);

/* Registers the "kbcjk" FTS5 tokenizer and the auxiliary functions kb_bm25
** and kb_tokens (fts_cjk.c) on db. Returns a SQLite code. */
int fts_cjk_register(sqlite3 *db);

/* Runs the kbcjk tokenizer over text[0..n) outside SQLite, calling
** token(ctx, flags, tok, len, start, end) for each token as FTS5 would; with
** `query` as for a query (no extra single-character token after a run of
** CJK bigrams). A nonzero return from token stops it (SQLITE_DONE counts as
** a normal stop). Returns a SQLite code. */
int fts_cjk_tokenize(const char *text, int n, int query, void *ctx, int (*token)(void *, int, const char *, int, int, int));

/* Records a message in rag (printf-style) and returns rc. */
int store_fail(Rag *rag, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records "<what>: <SQLite's message>" and returns KB_EIO (KB_ENOMEM when
** SQLite ran out of memory). */
int store_sql_fail(Rag *rag, const char *what);

/* Runs SQL without results. Returns KB_OK or the store_sql_fail code. */
int store_exec(Rag *rag, const char *sql);

/* Transactions: BEGIN IMMEDIATE (the write lock at once, so a concurrent
** writer waits on busy_timeout instead of failing mid-way), COMMIT,
** ROLLBACK (never fails: an error leaves the transaction to SQLite). */
int store_begin(Rag *rag);
int store_commit(Rag *rag);
void store_rollback(Rag *rag);

/* Prepares sql, recording SQLite's message on failure. */
int store_prepare(Rag *rag, const char *sql, sqlite3_stmt **st /* OUT */);

/* The id of knowledge base `name`. Returns KB_OK; KB_ENOTFOUND with the
** message "no knowledge base named 'x'"; KB_EIO. */
int store_kb_id(Rag *rag, const char *name, int64_t *id /* OUT */);

/* Runs PRAGMA integrity_check and FTS5's own integrity check on the keyword
** index. Returns KB_OK when both say ok, else KB_EFORMAT with the first
** problem in rag_errmsg; KB_EIO when they cannot run. */
int store_integrity_check(Rag *rag);

/* --- one writer of a knowledge base's documents at a time --- */

/* Called once when store_kb_lock has to wait for another holder. */
typedef void (*StoreWaitFn)(void *user);

/* Takes the exclusive lock of knowledge base kb that sync and rebuild hold
** while they run: flock(LOCK_EX) on <database>-sync-<kb id>.lock. Two
** syncs would both read and index every new file; the second one waits
** instead (waiting(user) is called once, to say so) and then finds the
** work done. flock belongs to the open file, so two holders in one process
** exclude each other too, and the system drops it when its process dies: a
** killed sync never blocks the next. While waiting, opt->cancel (opt may be
** NULL) is read every 50 ms; a cancelled wait returns KB_OK with *fd = -1.
** Returns KB_OK with the lock's descriptor in *fd (store_kb_unlock it);
** KB_EIO (the lock file cannot be opened or locked). */
int store_kb_lock(Rag *rag, int64_t kb, const RagSyncOptions *opt, StoreWaitFn waiting, void *user,
                  int *fd /* OUT */);

/* Releases a lock store_kb_lock took; fd < 0 does nothing. */
void store_kb_unlock(int fd);

/* --- documents, for sync --- */

/* A document row as sync sees it. */
typedef struct StoreDoc {
    int64_t id;
    char *path;
    int64_t size, mtime_ns;
    char hash[65];      /* hex SHA-256; "" when the file could not be read */
    int failed;
} StoreDoc;

/* Every document of kb, sorted by path (byte order). Free with
** store_docs_free. Returns KB_OK; KB_EIO; KB_ENOMEM. */
int store_load_docs(Rag *rag, int64_t kb, StoreDoc **out /* OUT */, int *n_out /* OUT */);
void store_docs_free(StoreDoc *docs, int n);

/* What is written for one (re)indexed document. */
typedef struct StoreDocInfo {
    const char *path;
    int64_t size, mtime_ns;
    const char *hash;
    int pages;
    const char *title, *author; /* NULL = unknown */
    const char *error;          /* NULL = indexed; else why it failed */
} StoreDocInfo;

/* Writes one document and its chunks in one transaction: the row at
** (kb, path) is created or replaced, its old chunks (and their FTS entries)
** deleted, the new ones inserted. All or nothing.
** Returns KB_OK; KB_EIO (rolled back); KB_ENOMEM. */
int store_put_document(Rag *rag, int64_t kb, const StoreDocInfo *info, const Chunk *chunks, int n_chunks);

/* store_put_document with each chunk's vector (vecs: n_chunks * dim
** floats) written in the same transaction; vecs NULL = none. */
int store_put_document_vecs(Rag *rag, int64_t kb, const StoreDocInfo *info, const Chunk *chunks, int n_chunks,
                            const float *vecs, int dim);

/* --- vectors --- */

/* Pins kb to model id (embedding.model spec `spec`) and deletes its vectors,
** in one transaction. Returns KB_OK; KB_EIO. */
int store_repin(Rag *rag, int64_t kb, const char *spec, const RagEmbedId *id);

/* Writes n vectors (chunk ids[i] -> vecs[i * dim ...]) in one transaction;
** a chunk deleted meanwhile is skipped. Returns KB_OK; KB_EIO. */
int store_put_vectors(Rag *rag, int64_t kb, const int64_t *ids, const float *vecs, int n, int dim);

/* Up to `limit` chunks without a vector and with an id above `after`, by
** id: of document doc, or of every document of kb when doc is 0. *ids and
** *texts are malloc'd arrays of *n_out; free with store_texts_free. Paging
** by id keeps a pass over a large knowledge base linear.
** Returns KB_OK; KB_EIO; KB_ENOMEM. */
int store_chunks_without_vectors(Rag *rag, int64_t kb, int64_t doc, int64_t after, int limit, int64_t **ids /* OUT */,
                                 char ***texts /* OUT */, int *n_out /* OUT */);
void store_texts_free(int64_t *ids, char **texts, int n);

/* Counts the chunks of document doc (of kb when doc is 0), and those
** without a vector. Returns KB_OK; KB_EIO. */
int store_count_missing(Rag *rag, int64_t kb, int64_t doc, int64_t *n_chunks /* OUT */, int64_t *n_missing /* OUT */);

/* The id of kb's document at path. Returns KB_OK; KB_ENOTFOUND; KB_EIO. */
int store_doc_id(Rag *rag, int64_t kb, const char *path, int64_t *id /* OUT */);

/* Renames document id to path with the new size and mtime (a move found by
** hash). Returns KB_OK; KB_EIO. */
int store_move_document(Rag *rag, int64_t id, const char *path, int64_t size, int64_t mtime_ns);

/* Updates only size and mtime (same content). Returns KB_OK; KB_EIO. */
int store_touch_document(Rag *rag, int64_t id, int64_t size, int64_t mtime_ns);

/* Deletes document id with its chunks. Returns KB_OK; KB_EIO. */
int store_delete_document(Rag *rag, int64_t id);

/* Sources of kb: paths[i] with exclude[i] (malloc'd arrays of *n).
** Returns KB_OK; KB_EIO; KB_ENOMEM. */
int store_load_sources(Rag *rag, int64_t kb, char ***paths /* OUT */, int **exclude /* OUT */, int *n /* OUT */);
void store_sources_free(char **paths, int *exclude, int n);

/* Sets kb's last_sync to now. Returns KB_OK; KB_EIO. */
int store_mark_synced(Rag *rag, int64_t kb);

#endif /* KB_RAG_STORE_H */
