/*
** rag.h: the public API of kbchat's retrieval module.
**
** rag/ turns folders of PDF and text files into knowledge bases: it extracts
** text with poppler, splits it into Chinese-aware chunks, stores chunks,
** vectors and a keyword index in SQLite, and finds the passages that answer a
** question. It uses engine/ for embeddings and never touches the terminal.
** Like the engine, it never prints or exits: functions return KB_* codes
** (engine/engine.h) and leave a message in the handle (rag_errmsg).
**
** Every knowledge base lives in one SQLite file, <data_dir>/knowledge.db
** (schema and sync algorithm: docs/knowledge-bases.md). A knowledge base has
** a name, sources (folders or files, stored as absolute paths), the chunking
** settings it was created with and the identity of its embedding model.
** rag_sync brings the index in line with the files on disk; it may be killed
** at any moment: each document is written in its own transaction, and the
** next sync carries on from what was committed.
**
** Lifetimes: rag_open/rag_close; every list or struct a function fills is
** freed by the matching *_free function, which accepts NULL.
*/
#ifndef KB_RAG_H
#define KB_RAG_H

#include <stddef.h>
#include <stdint.h>

/* Writes the versions of the libraries rag/ is built on (SQLite, poppler)
** into buf as one line, e.g. "SQLite 3.40.1, poppler 22.12.0". Returns buf. */
char *rag_library_versions(char *buf, unsigned long size);

/* --- the database --- */

#define RAG_DB_NAME "knowledge.db" /* file name inside data_dir */

typedef struct Rag Rag; /* an open knowledge-base database */

/* Opens <data_dir>/knowledge.db, creating data_dir (mode 0700) and the file
** when absent and migrating an older schema forward. *out is set whenever
** memory allowed (NULL only with KB_ENOMEM); after a failure it holds only
** the message: read rag_errmsg(*out), then rag_close it.
** Returns KB_OK; KB_EIO (directory or file cannot be created or opened, or
** SQLite fails); KB_EUNSUPPORTED (written by a newer kbchat); KB_EFORMAT
** (not a kbchat database); KB_ENOMEM. */
int rag_open(Rag **out /* OUT */, const char *data_dir);

/* Closes the database; rag_close(NULL) does nothing. */
void rag_close(Rag *rag);

/* The message of the last failed call on rag ("" when none). */
const char *rag_errmsg(const Rag *rag);

/* The database file's path (owned by rag). */
const char *rag_db_path(const Rag *rag);

/* --- knowledge bases --- */

/* Settings fixed when a knowledge base is created (chunking.size/overlap and
** embedding.model of the configuration then in force). */
typedef struct RagKbSettings {
    int chunk_size;          /* characters, 50..20000 */
    int chunk_overlap;       /* characters, 0..chunk_size-1 */
    const char *embed_model; /* identity of the embedding model; "" = none */
} RagKbSettings;

/* Creates an empty knowledge base. A name is 1..64 characters of letters,
** digits, '-', '_' and '.', not starting with '.' or '-'.
** Returns KB_OK; KB_EINVAL (bad name or settings, or the name is taken:
** the message says which); KB_EIO. */
int rag_kb_create(Rag *rag, const char *name, const RagKbSettings *settings);

/* Adds a source to knowledge base `name`: a folder (walked recursively by
** rag_sync) or a file (.pdf, .txt, .md, .markdown). The path is stored
** resolved to an absolute path without symlinks. Adding a path that was
** excluded by rag_kb_remove lifts the exclusion; adding a source twice is
** not an error. Nothing is indexed until rag_sync.
** Returns KB_OK; KB_ENOTFOUND (no such knowledge base or path);
** KB_EUNSUPPORTED (a file of another type); KB_EIO. */
int rag_kb_add(Rag *rag, const char *name, const char *path);

/* Removes `path` from knowledge base `name`: a source is dropped, a path
** inside a source folder is excluded from future syncs; either way the
** documents at or under path leave the index at once. path need not exist
** any more (it is then made absolute without resolving symlinks).
** *n_docs (may be NULL) receives the number of documents removed.
** Returns KB_OK; KB_ENOTFOUND (no such knowledge base, or path is neither a
** source nor inside one); KB_EIO. */
int rag_kb_remove(Rag *rag, const char *name, const char *path, int64_t *n_docs /* OUT */);

/* Deletes knowledge base `name` with its sources, documents and chunks.
** Returns KB_OK; KB_ENOTFOUND; KB_EIO. */
int rag_kb_delete(Rag *rag, const char *name);

/* What `kb list` and `kb status` show about one knowledge base. */
typedef struct RagKbInfo {
    char *name;
    char **sources;          /* absolute paths of folders and files, sorted */
    int n_sources;
    char **excluded;         /* paths excluded by rag_kb_remove, sorted */
    int n_excluded;
    int chunk_size, chunk_overlap;
    char *embed_model;       /* "" = none */
    int64_t created;         /* Unix time */
    int64_t last_sync;       /* Unix time of the last finished sync; 0 = never */
    int64_t n_documents;     /* all documents, including failed ones */
    int64_t n_failed;        /* documents recorded with an error */
    int64_t n_pages;         /* pages of the indexed PDF documents */
    int64_t n_chunks;
} RagKbInfo;

/* Fills *out with knowledge base `name`. Free with rag_kb_info_clear.
** Returns KB_OK; KB_ENOTFOUND; KB_EIO; KB_ENOMEM. */
int rag_kb_info(Rag *rag, const char *name, RagKbInfo *out /* OUT */);

/* Every knowledge base, sorted by name: *out is an array of *n_out (NULL
** when there are none). Free with rag_kb_info_free_list.
** Returns KB_OK; KB_EIO; KB_ENOMEM. */
int rag_kb_list(Rag *rag, RagKbInfo **out /* OUT */, int *n_out /* OUT */);

void rag_kb_info_clear(RagKbInfo *info);
void rag_kb_info_free_list(RagKbInfo *list, int n);

/* One document of a knowledge base. */
typedef struct RagFile {
    char *path;
    int64_t size;
    int64_t mtime_ns;
    char *hash;              /* SHA-256 of the content, hex; "" when unreadable */
    int pages;               /* PDF pages; 0 for text files */
    int64_t chunks;
    char *title, *author;    /* "" when unknown */
    int failed;              /* 1 when the document could not be indexed */
    char *error;             /* why (failed documents), else "" */
    int64_t indexed;         /* Unix time it was last (re)indexed */
} RagFile;

/* The documents of knowledge base `name` sorted by path; only failed ones
** when failed_only. Free with rag_files_free.
** Returns KB_OK; KB_ENOTFOUND; KB_EIO; KB_ENOMEM. */
int rag_kb_files(Rag *rag, const char *name, int failed_only, RagFile **out /* OUT */, int *n_out /* OUT */);
void rag_files_free(RagFile *files, int n);

/* --- sync --- */

/* Counts the tokens the embedding model would make of text[0..len); a
** chunk must not exceed the model's limit (RagSyncOptions.max_tokens). */
typedef int (*RagTokenCountFn)(const char *text, size_t len, void *user);

/* What a progress report is about. */
typedef enum RagEvent {
    RAG_EV_PLAN = 0,   /* the walk is done: files_total and bytes_total are known */
    RAG_EV_DOC_START,  /* path is about to be read and indexed */
    RAG_EV_PAGE,       /* one more page of path was extracted (PDF) */
    RAG_EV_DOC_DONE,   /* path was handled: see action */
    RAG_EV_WARNING     /* message concerns path but changes nothing (a folder
                          that is missing or unreadable: its documents are kept) */
} RagEvent;

/* What happened to a document (RAG_EV_DOC_DONE). */
typedef enum RagAction {
    RAG_ACT_INDEXED = 0, /* new document indexed */
    RAG_ACT_UPDATED,     /* changed content re-indexed */
    RAG_ACT_MOVED,       /* renamed or moved: old_path -> path, nothing re-extracted */
    RAG_ACT_REMOVED,     /* the file is gone; its chunks were dropped */
    RAG_ACT_FAILED,      /* recorded with the reason in message, then skipped */
    RAG_ACT_TOUCHED      /* only the modification time changed (same hash) */
} RagAction;

/* A progress report. Strings are valid only during the callback. */
typedef struct RagProgress {
    RagEvent event;
    RagAction action;
    const char *kb;          /* knowledge base name */
    const char *path;
    const char *old_path;    /* RAG_ACT_MOVED: where it was */
    const char *message;     /* RAG_ACT_FAILED and RAG_EV_WARNING: why */
    int doc_pages;           /* pages of this document (so far, for RAG_EV_PAGE) */
    int64_t doc_chunks;
    int64_t files_done, files_total;  /* documents to read (new or changed); done
                                         counts the current one from its DOC_DONE */
    int64_t pages_done, chunks_done;  /* over the whole sync */
    int64_t bytes_done, bytes_total;  /* of the files to read */
    double elapsed;          /* seconds since the sync started */
    double pages_per_s;      /* 0 until known */
    double eta;              /* seconds left, estimated from bytes; < 0 unknown */
} RagProgress;

typedef void (*RagProgressFn)(const RagProgress *p, void *user);

typedef struct RagSyncOptions {
    RagProgressFn progress;  /* may be NULL */
    void *user;
    /* The embedding model's limit: a chunk of more tokens than max_tokens
    ** (counted by count_tokens) is split further. 0/NULL = no limit. */
    int max_tokens;
    RagTokenCountFn count_tokens;
    void *count_user;
    /* Test-only: sleep this long after each document is committed, so a
    ** test can kill the process in the middle of a sync. 0 = never. */
    int delay_ms;
} RagSyncOptions;

/* What a sync did. */
typedef struct RagSyncStats {
    int64_t found;      /* supported files found by the walk */
    int64_t unchanged;  /* skipped: same size and mtime */
    int64_t indexed, updated, moved, removed, failed, touched;
    int64_t pages, chunks; /* extracted by this sync */
    int64_t warnings;
    double seconds;
} RagSyncStats;

/* Brings knowledge base `name` in line with its sources (algorithm in
** docs/knowledge-bases.md). A bad file is recorded as failed with its reason
** and never stops the sync. opt may be NULL.
** Returns KB_OK (also when some files failed: see *stats); KB_ENOTFOUND (no
** such knowledge base); KB_EIO (the database failed: the documents
** committed so far stay); KB_ENOMEM. */
int rag_sync(Rag *rag, const char *name, const RagSyncOptions *opt, RagSyncStats *stats /* OUT, may be NULL */);

/* --- search --- */

/* One passage found by rag_search. */
typedef struct RagHit {
    int rank;         /* 1 = best */
    double score;     /* higher = better (negated FTS5 bm25) */
    int64_t chunk_id;
    char *file;       /* the document's path */
    int page;         /* first page of the chunk; 0 for text files */
    char *section;    /* "" when none */
    char *text;       /* the chunk */
} RagHit;

/* Keyword search of knowledge base `name`: every word of query must occur
** (Chinese matched as character bigrams, so 2-character words work; English
** case-insensitively); when that finds nothing, any word may. At most top_k
** hits, best first. Free with rag_hits_free.
** Returns KB_OK (possibly 0 hits); KB_ENOTFOUND (no such knowledge base);
** KB_EINVAL (top_k < 1); KB_EIO; KB_ENOMEM. */
int rag_search(Rag *rag, const char *name, const char *query, int top_k, RagHit **out /* OUT */,
               int *n_out /* OUT */);
void rag_hits_free(RagHit *hits, int n);

#endif /* KB_RAG_H */
