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
** Retrieval (docs/knowledge-bases.md, "Search"): chunks are embedded with
** the knowledge base's embedding model (embed.c; a knowledge base is pinned
** to the model that built it) and found by keyword (FTS5 BM25), by vector
** (cosine over one matrix, OpenBLAS) or both fused by reciprocal rank
** (search.c); prompt.c packs the passages into a grounded prompt that fits
** the chat model's context.
**
** Lifetimes: rag_open/rag_close; every list or struct a function fills is
** freed by the matching *_free function, which accepts NULL.
*/
#ifndef KB_RAG_H
#define KB_RAG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Writes the versions of the libraries rag/ is built on (SQLite, poppler)
** into buf as one line, e.g. "SQLite 3.40.1, poppler 22.12.0". Returns buf. */
char *rag_library_versions(char *buf, unsigned long size);

/* The hidden subcommand "kbchat __extract-pdf [MAX_MEMORY]" (rag/extract.c):
** reads a PDF from standard input (a regular file or memfd), writes its text
** as frames to standard output for the kbchat process that started it, and
** limits its own address space to MAX_MEMORY bytes. Returns the exit status. */
int rag_extract_pdf_main(int argc, char **argv);

/* --- the database --- */

#define RAG_DB_NAME "knowledge.db" /* file name inside data_dir */

typedef struct Rag Rag; /* an open knowledge-base database */

/* Opens <data_dir>/knowledge.db, creating data_dir (mode 0700) and the file
** (mode 0600; an existing one of ours is tightened to 0600) when absent and
** migrating an older schema forward. When kbchat may not write the folder
** or the file it is opened read-only: reads work, writes fail with a
** message naming the folder and the reason (rag_is_read_only). A file that
** changed since kbchat last closed it cleanly is checked (PRAGMA
** quick_check) first; an empty file where kbchat left a non-empty one is
** refused rather than started over. *out is set whenever memory allowed (NULL only
** with KB_ENOMEM); after a failure it holds only the message: read
** rag_errmsg(*out), then rag_close it.
** Returns KB_OK; KB_EIO (directory or file cannot be created or opened, or
** SQLite fails); KB_EUNSUPPORTED (written by a newer kbchat); KB_EFORMAT
** (not a kbchat database, or damaged: the message says what and that
** 'kbchat kb check' repairs it); KB_ENOMEM. */
int rag_open(Rag **out /* OUT */, const char *data_dir);

#define RAG_OPEN_DAMAGED 1 /* open a database that quick_check finds damaged (rag_check) */

/* rag_open with flags (RAG_OPEN_*). */
int rag_open_mode(Rag **out /* OUT */, const char *data_dir, int flags);

/* True when rag was opened read-only (see rag_open). */
int rag_is_read_only(const Rag *rag);

/* Closes the database; rag_close(NULL) does nothing. */
void rag_close(Rag *rag);

/* The message of the last failed call on rag ("" when none). */
const char *rag_errmsg(const Rag *rag);

/* The database file's path (owned by rag). */
const char *rag_db_path(const Rag *rag);

/* --- embedding models (embed.c) --- */

/* The identity of an embedding model, to which a knowledge base's vectors
** are pinned: a file replaced by another model, or the same model quantized
** differently, differs in size or in the hash of its header. */
typedef struct RagEmbedId {
    char file[256];  /* base name of the GGUF file; "" = none (keyword only) */
    int64_t size;    /* bytes */
    char hash[65];   /* SHA-256, hex, of the header: metadata and tensor infos */
    int dim;         /* vector length (the model's embedding size) */
} RagEmbedId;

/* Reads the identity of the GGUF model at path (its header only; nothing
** is loaded). Returns KB_OK; the gguf_open codes with the message in err. */
int rag_embed_identify(const char *path, RagEmbedId *id /* OUT */, char *err, size_t errlen);

/* True when a and b name the same model (every field equal). */
int rag_embed_id_equal(const RagEmbedId *a, const RagEmbedId *b);

/* Writes "name.gguf (384 dims)", or "none" for an empty identity, into buf. */
const char *rag_embed_id_describe(const RagEmbedId *id, char *buf, size_t size);

typedef struct RagEmbedder RagEmbedder; /* a model that turns text into vectors */
struct KbModel;

/* Opens the model at path for embedding: a BERT-family model (bge, m3e,
** text2vec: pooled as its metadata says) or a chat model (the mean of its
** final hidden states: embedding.model "chat"), on n_threads threads (0 =
** all cores). Vectors are L2-normalised, so a dot product is the cosine.
** Returns KB_OK; the model_open codes with the message in err. */
int rag_embedder_open(const char *path, int n_threads, RagEmbedder **out /* OUT */, char *err, size_t errlen);

/* Uses an already open model (the chat model, for "chat"); model stays the
** caller's and must outlive the embedder. path is its file (identity).
** Returns KB_OK; rag_embed_identify's codes; KB_ENOMEM. */
int rag_embedder_wrap(struct KbModel *model, const char *path, RagEmbedder **out /* OUT */, char *err, size_t errlen);

/* Frees the embedder (and its model unless wrapped); NULL is a no-op. */
void rag_embedder_close(RagEmbedder *e);

const RagEmbedId *rag_embedder_id(const RagEmbedder *e);
const char *rag_embedder_errmsg(const RagEmbedder *e);

/* Tokens of text a chunk may have: the model's context less its special
** tokens. Longer texts are cut to it when embedded. */
int rag_embedder_max_tokens(const RagEmbedder *e);

/* RagTokenCountFn for the chunker's token cap; user is the RagEmbedder.
** Returns -1 when out of memory. */
int rag_embedder_count_tokens(const char *text, size_t len, void *user);

/* Embeds n texts (texts[i] of lens[i] bytes) into out (n * dim floats, each
** row L2-normalised), in batches. Returns KB_OK; KB_ENOMEM; the model's
** error code with the message in rag_embedder_errmsg. */
int rag_embed_texts(RagEmbedder *e, const char *const *texts, const size_t *lens, int n, float *out /* OUT */);

/* --- knowledge bases --- */

/* Settings fixed when a knowledge base is created (chunking.size/overlap and
** embedding.model of the configuration then in force). */
typedef struct RagKbSettings {
    int chunk_size;          /* characters, 50..20000 */
    int chunk_overlap;       /* characters, 0..chunk_size-1 */
    const char *embed_model; /* embedding.model as configured: path, "chat"; "" = none */
    const RagEmbedId *embed_id; /* the model the vectors are pinned to; NULL = none */
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

/* Checks that embedder (may be NULL) is the model knowledge base `name` is
** pinned to, so it may search and extend its vectors.
** Returns KB_OK; KB_EUNSUPPORTED with the reason and the remedy in
** rag_errmsg (keyword-only knowledge base, another model, no model given
** for one that has vectors); KB_ENOTFOUND; KB_EIO. */
int rag_kb_check_model(Rag *rag, const char *name, const RagEmbedder *embedder);

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
    RagEmbedId embed_id;     /* the pinned model; file "" = keyword only */
    int64_t n_vectors;       /* chunks that have a vector */
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
    RAG_EV_WARNING,    /* message concerns path but changes nothing (a folder
                          that is missing or unreadable: its documents are kept;
                          vectors not made: path is NULL then) */
    RAG_EV_EMBED       /* more chunks without a vector were embedded:
                          vectors_done of vectors_total */
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
    int64_t vectors_done, vectors_total; /* RAG_EV_EMBED */
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
    ** test can kill the process in the middle of a sync. 0 = never.
    ** A second test hook, from the environment (tests only): with
    ** KBCHAT_TEST_HOLD_SYNC=FILE, a sync, once its N-th document
    ** (KBCHAT_TEST_HOLD_SYNC_AFTER=N, default 1) is committed, creates
    ** FILE.held and waits until FILE exists or the sync is cancelled; a test
    ** thus kills, stops or quits with exactly N documents committed. */
    int delay_ms;
    /* The embedding model; NULL = no vectors. Used only when it is the
    ** model the knowledge base is pinned to (rag_kb_check_model), else a
    ** RAG_EV_WARNING says why no vectors were made. */
    RagEmbedder *embedder;
    /* Stops the sync early when *cancel becomes nonzero (another thread or
    ** a signal handler sets it: a front end syncing in the background,
    ** quitting, SIGTERM). It is read between documents, between batches of
    ** vectors and while a PDF is extracted (after each page; with an
    ** extractor at least every 100 ms): the document being extracted is
    ** dropped, what was committed stays, the sync returns KB_OK with
    ** stats->cancelled set and last_sync unchanged, and the next sync
    ** carries on from there. NULL = never. */
    const atomic_int *cancel;
    /* The per-document budget: a PDF whose text extraction takes longer
    ** than doc_seconds, or yields more than doc_text_bytes bytes of text, is
    ** recorded as failed with the reason (retried when it changes), and the
    ** sync goes on. 0 = no limit. */
    double doc_seconds;
    size_t doc_text_bytes;
    /* The kbchat executable ("/proc/self/exe" from kbchat itself) that
    ** extracts each PDF in a child process (rag_extract_pdf_main), so the
    ** time limit and cancel act within 100 ms even inside one page, and a
    ** PDF that crashes poppler or eats memory fails alone. NULL = in this
    ** process, the budget and cancel checked after each page. */
    const char *extractor;
} RagSyncOptions;

/* What a sync did. */
typedef struct RagSyncStats {
    int64_t found;      /* supported files found by the walk */
    int64_t unchanged;  /* skipped: same size and mtime */
    int64_t indexed, updated, moved, removed, failed, touched;
    int64_t pages, chunks; /* extracted by this sync */
    int64_t warnings;
    int64_t vectors;    /* chunks embedded */
    double seconds;
    int cancelled;      /* 1 when RagSyncOptions.cancel stopped it early */
} RagSyncStats;

/* Brings knowledge base `name` in line with its sources (algorithm in
** docs/knowledge-bases.md). A bad file is recorded as failed with its reason
** and never stops the sync. opt may be NULL; opt->cancel stops it, also
** inside a document (stats->cancelled). While another sync or rebuild of the same
** knowledge base runs (in any process) it waits, after a RAG_EV_WARNING.
** Returns KB_OK (also when some files failed or it was cancelled: see
** *stats); KB_ENOTFOUND (no
** such knowledge base); KB_EIO (the database failed, or opt->extractor
** could not be started: the documents committed so far stay); KB_ENOMEM. */
int rag_sync(Rag *rag, const char *name, const RagSyncOptions *opt, RagSyncStats *stats /* OUT, may be NULL */);

/* Pins knowledge base `name` to opt->embedder's model and embeds every chunk
** with it; with no embedder the vectors are dropped and the knowledge base
** becomes keyword-only. When it is already pinned to that model only the
** chunks without a vector are embedded, so a rebuild that was interrupted
** goes on where it stopped. Vectors are committed a batch at a time;
** keyword search works throughout. Progress: RAG_EV_EMBED. opt->cancel
** stops it between batches (stats->cancelled). It waits for a running sync
** or rebuild of the same knowledge base, after a RAG_EV_WARNING.
** Returns KB_OK; KB_ENOTFOUND; KB_EIO; KB_ENOMEM; the model's code. */
int rag_kb_rebuild(Rag *rag, const char *name, const RagSyncOptions *opt, RagSyncStats *stats /* OUT, may be NULL */);

/* --- checking and repairing the database (check.c) --- */

/* A document whose chunks were damaged: its rows were dropped and it waits
** to be re-indexed from its file (rag_sync does it). */
typedef struct RagCheckDoc {
    char *kb;
    char *path;
} RagCheckDoc;

/* What rag_check found and did. */
typedef struct RagCheckReport {
    char **problems;      /* findings in words: integrity_check lines, the
                             keyword index, chunks missing from documents */
    int n_problems;
    RagCheckDoc *docs;    /* documents to re-index */
    int n_docs;
    int64_t skipped;      /* stretches of unreadable rows skipped while copying */
    int64_t orphans;      /* rows without their parent row, dropped */
    int rebuilt;          /* the database was rebuilt from its readable rows */
    char *kept;           /* where the damaged file was kept ("" when not rebuilt) */
} RagCheckReport;

/* Checks the whole database: PRAGMA integrity_check, FTS5's integrity
** check of the keyword index, foreign keys, and each document's chunks
** against the count written with it. When anything is wrong it rebuilds
** the database: every row that can still be read is copied, table by
** table, into a new file (skipping unreadable stretches; the keyword index
** is rebuilt as the chunks go in); the chunks of a document that lost any
** are dropped and the document is marked (hash "") so the next rag_sync
** re-indexes it from its file; the new file replaces knowledge.db and the
** damaged one is kept beside it as knowledge.db.damaged-<time>. *rag is
** then a new handle on the new file. No other kbchat may use the database
** meanwhile. Free out with rag_check_report_clear.
** Returns KB_OK (healthy now: out says what was found and done); KB_EIO
** (read-only, or the rebuild failed: the original file is untouched, or
** already replaced and reopened); KB_EFORMAT (still damaged after it);
** KB_ENOMEM. */
int rag_check(Rag **rag, RagCheckReport *out /* OUT */);
void rag_check_report_clear(RagCheckReport *r);

/* --- search --- */

/* One passage found by rag_search or rag_retrieve. */
typedef struct RagHit {
    int rank;         /* 1 = best */
    double score;     /* higher = better: BM25 with the knowledge base's own
                         counts (keyword), negated FTS5 bm25 (words),
                         cosine (vector), reciprocal-rank fusion (hybrid) */
    int64_t chunk_id; /* the chunk (of a merged passage: the best ranked) */
    char *file;       /* the document's path */
    int page;         /* first page of the chunk; 0 for text files */
    char *section;    /* "" when none */
    char *text;       /* the chunk, or merged neighbours (rag_retrieve) */
    /* rag_retrieve only: */
    int bm25_rank;    /* rank among the keyword candidates, 0 = not found by it */
    int vector_rank;  /* rank among the vector candidates, 0 = not found by it */
    double relevance; /* 0..1, compared with the threshold: cosine, or the
                         share of the question's terms (weighted by rarity)
                         the passage contains; the larger of the two */
    int64_t doc_id;
    int seq_first, seq_last; /* chunks of the document the text covers */
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

/* How rag_retrieve searches. */
typedef enum RagMode {
    RAG_MODE_WORDS = 0, /* rag_search's rule: every word of the query */
    RAG_MODE_KEYWORD,   /* the question's terms, ranked by BM25 */
    RAG_MODE_VECTOR,    /* cosine similarity to the question's vector */
    RAG_MODE_HYBRID     /* keyword and vector fused by reciprocal rank (k = 60) */
} RagMode;

/* Parses "words", "keyword", "vector" or "hybrid". Returns 0 or -1. */
int rag_mode_parse(const char *s, RagMode *mode /* OUT */);
const char *rag_mode_name(RagMode mode);

typedef struct RagQuery {
    const char *text;      /* the question */
    RagMode mode;
    int top_k;             /* passages wanted, >= 1 */
    double threshold;      /* 0..1: passages of lower relevance are dropped */
    int expand;            /* complete a passage cut mid-sentence from the next chunk */
    RagEmbedder *embedder; /* vector and hybrid; NULL: hybrid is keyword only */
} RagQuery;

/* What rag_retrieve did. */
typedef struct RagSearchInfo {
    RagMode mode;          /* what ran: hybrid without usable vectors is keyword */
    char note[1024];       /* why vectors were not used ("" when they were or
                              were not asked for) */
    int n_keyword, n_vector; /* candidates each retriever found */
} RagSearchInfo;

/* Finds the passages of knowledge base `name` that answer q->text:
**   keyword: the question's terms (English words without stop words, light
**     stemming as prefix queries; Chinese as character bigrams), any of
**     which may match, ranked by BM25;
**   vector: the knowledge base's vectors (loaded once into one matrix, again
**     after a sync changed them) against the question's, by cosine;
**   hybrid: both lists fused by reciprocal rank, 1/(60 + rank) summed.
** Candidates below q->threshold are dropped, adjacent chunks of a document
** (their overlap) and identical texts are merged into one passage, and the
** best q->top_k are returned with each retriever's rank. Free with
** rag_hits_free. info may be NULL.
** Returns KB_OK (possibly 0 hits); KB_EUNSUPPORTED (vector mode without a
** usable model: rag_errmsg says why); KB_EINVAL (top_k < 1, mode words);
** KB_ENOTFOUND; KB_EIO; KB_ENOMEM; the embedding model's code. */
int rag_retrieve(Rag *rag, const char *name, const RagQuery *q, RagHit **out /* OUT */, int *n_out /* OUT */,
                 RagSearchInfo *info /* OUT, may be NULL */);

/* --- prompts (prompt.c) --- */

typedef enum RagLang { RAG_LANG_EN = 0, RAG_LANG_ZH } RagLang;

/* The language of text: Chinese when at least a fifth of its letters are
** CJK characters, else English. */
RagLang rag_text_lang(const char *text);

/* How a grounded prompt is packed. */
typedef struct RagPromptOptions {
    const char *template_text; /* NULL/"" = built-in, in the question's language;
                                  else holds {context} and {question} */
    const char *prefix, *suffix; /* text around the message in the final prompt
                                  (system prompt, history, chat template); NULL = "" */
    int64_t n_ctx;             /* the model's context in tokens */
    int64_t reserve;           /* tokens kept free for the answer */
    RagTokenCountFn count_tokens; /* counts prefix + message + suffix as the model will */
    void *count_user;
} RagPromptOptions;

/* A grounded prompt. */
typedef struct RagPrompt {
    char *text;        /* prefix + message + suffix */
    int64_t n_tokens;  /* its tokens */
    int n_passages;    /* hits[0..n_passages) are in it, numbered [1]..[n] */
    int cut;           /* 1 when the last passage was shortened (whole sentences) */
    RagLang lang;
} RagPrompt;

/* Builds the grounded prompt for question from hits (best first): passages
** numbered [1]..[k] with file name and page, as many as fit in n_ctx -
** reserve tokens with the question and the prefix/suffix; passages are
** dropped from the lowest ranked up and never cut mid-sentence (when not
** even the best fits whole, its leading sentences that fit are used).
** Free with rag_prompt_clear.
** Returns KB_OK; KB_ERANGE (the template and question alone do not fit, or
** not one sentence of a passage: *out->text is NULL); KB_EINVAL (a template
** without {context} or {question}); KB_ENOMEM. */
int rag_prompt_build(const char *question, const RagHit *hits, int n_hits, const RagPromptOptions *opt,
                     RagPrompt *out /* OUT */);
void rag_prompt_clear(RagPrompt *p);

/* The strict-mode answer when nothing passed the threshold, and the label
** put before an answer that is the model's own (answer fallback "model"),
** in lang. Static strings. */
const char *rag_prompt_nothing_found(RagLang lang);
const char *rag_prompt_fallback_label(RagLang lang);

/* --- chat sessions (session.c) --- */

/* A stored conversation, as /sessions lists it. */
typedef struct RagSession {
    int64_t id;
    char *title;          /* from the first question; "" before it */
    char *model;          /* the chat model's path */
    char *template_name;  /* the chat template the turns were made with */
    char *kb;             /* the knowledge base in use; "" = none */
    int64_t created, updated; /* Unix times; updated = the last turn */
    int n_turns;
} RagSession;

/* One question and its answer. */
typedef struct RagTurn {
    char *question;   /* as the user typed it */
    char *query;      /* what was searched: the question made standalone; "" = no search */
    char *prompt;     /* the user message the model got: the question with its passages */
    char *answer;
    RagHit *sources;  /* the passages of the prompt, numbered as cited: [1] = sources[0] */
    int n_sources;
    int64_t created;  /* Unix time; 0 = now, when stored */
} RagTurn;

/* Creates a session with s's title, model, template_name and kb (NULL =
** ""); *id receives its id. Returns KB_OK; KB_EIO; KB_ENOMEM. */
int rag_session_create(Rag *rag, const RagSession *s, int64_t *id /* OUT */);

/* Rewrites title, model, template_name and kb of session s->id.
** Returns KB_OK; KB_ENOTFOUND; KB_EIO. */
int rag_session_update(Rag *rag, const RagSession *s);

/* Deletes a session with its turns and sources. Returns KB_OK; KB_ENOTFOUND; KB_EIO. */
int rag_session_delete(Rag *rag, int64_t id);

/* Reads one session (n_turns counted). Free with rag_session_clear.
** Returns KB_OK; KB_ENOTFOUND; KB_EIO; KB_ENOMEM. */
int rag_session_get(Rag *rag, int64_t id, RagSession *out /* OUT */);

/* Every session, the most recently used first. Free with
** rag_session_free_list. Returns KB_OK; KB_EIO; KB_ENOMEM. */
int rag_session_list(Rag *rag, RagSession **out /* OUT */, int *n_out /* OUT */);

void rag_session_clear(RagSession *s);
void rag_session_free_list(RagSession *list, int n);

/* Appends turn t (with its sources, in one transaction) after the last turn
** of session and marks the session used now. Returns KB_OK; KB_ENOTFOUND
** (no such session); KB_EIO; KB_ENOMEM. */
int rag_session_add_turn(Rag *rag, int64_t session, const RagTurn *t);

/* Deletes the last turn of session (to ask it again). Returns KB_OK;
** KB_ENOTFOUND (no session, or no turn); KB_EIO. */
int rag_session_drop_last_turn(Rag *rag, int64_t session);

/* The turns of session in order, with their sources. Free with
** rag_turns_free. Returns KB_OK (0 turns for an unknown session); KB_EIO;
** KB_ENOMEM. */
int rag_session_turns(Rag *rag, int64_t session, RagTurn **out /* OUT */, int *n_out /* OUT */);

void rag_turn_clear(RagTurn *t);
void rag_turns_free(RagTurn *turns, int n);

#endif /* KB_RAG_H */
