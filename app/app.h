/*
** app.h: the public API of kbchat's application layer.
**
** app/ ties the modules together: it reads the configuration, parses the
** command line, and (in later versions) keeps conversations. ui/ calls only
** this header. Only app/main.c prints to the terminal's streams on its own
** behalf or exits; the functions here write to the FILE they are given.
*/
#ifndef KB_APP_H
#define KB_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "app/config.h"
#include "app/conversation.h"
#include "app/term_text.h"

#define KB_VERSION "0.1.0"

/* Prints a summary of the GGUF model at path to out: architecture, name,
** context length, layer/head/embedding sizes, vocabulary and tokenizer, chat
** template (first line), parameter count, size on disk and a table of tensor
** types. Reads only the file's header region. Then checks that the model
** loads, with the engine's own check (model_check): every tensor present
** with its shape and a type the kernels run, consistent hyperparameters, a
** tokenizer that loads. With vocab_only_ok, a file without any tensor (a
** vocabulary for `kbchat tokenize`) passes when its tokenizer loads.
** Returns KB_OK; the gguf_open code when nothing could be read; the
** model_check code after the summary when the model cannot be loaded. The
** message in err names the file and what is wrong. */
int model_info_print(const char *path, bool vocab_only_ok, FILE *out, char *err, size_t errlen);

/* --- knowledge bases from a front end (kb_jobs.c, kb_sync.c) ---
**
** What the full-screen chat's F2 panel does: the steps of `kbchat kb
** create|add|remove|delete|files` (shared with cmd_kb.c through kb_ops.c)
** on the chat's own database connection, so, like chat_status, they are
** called only while no chat_line job runs. A failure's message is in
** chat_errmsg.
**
** The sync is the exception: chat_sync_start runs rag_sync on a thread of
** its own with its own connection to the same database (WAL: the chat
** reads and stores turns meanwhile; a writer waits for the other's one
** short transaction at most). Its progress goes to a mutex-guarded record
** that chat_sync_state copies; chat_sync_* touch only that and may be
** called while a chat_line job runs, from the front end's thread. One sync
** at a time; chat_close stops a running one (between documents). */

/* Creates knowledge base name with the configuration's chunking and
** embedding model, as `kbchat kb create` does. Returns KB_OK; KB_EINVAL (a
** bad or taken name: the message says which); the database's or the
** embedding model's code. */
int chat_kb_create(ChatApp *app, const char *name);
/* Adds folder or file path (a leading ~ is $HOME; relative to the current
** directory) to knowledge base name. Returns as rag_kb_add. */
int chat_kb_add(ChatApp *app, const char *name, const char *path);
/* Removes path (a source, or a file or folder inside one) from knowledge
** base name; *n_docs (may be NULL) gets the documents dropped. Returns as
** rag_kb_remove; KB_EINVAL while that base is being synced. */
int chat_kb_remove(ChatApp *app, const char *name, const char *path, int64_t *n_docs /* OUT */);
/* Deletes knowledge base name and its index (searching stops when it was
** the one in use). Returns as rag_kb_delete; KB_EINVAL while it is being
** synced. */
int chat_kb_delete(ChatApp *app, const char *name);
/* The documents of knowledge base name, sorted by path, failed ones with
** their error (free with chat_free_files). Returns as rag_kb_files. */
int chat_kb_files(ChatApp *app, const char *name, RagFile **out /* OUT */, int *n /* OUT */);
void chat_free_files(RagFile *files, int n);

/* A copy of the background sync's progress (chat_sync_state). */
typedef struct ChatSyncState {
    int active;               /* a sync exists (running, or done and not collected) */
    int running;              /* it has not finished */
    char kb[72];              /* the knowledge base being synced */
    int planned;              /* the walk is done: files_total is known */
    long long files_done, files_total; /* documents read / to read */
    long long pages, chunks;  /* extracted so far */
    long long failed;         /* documents that could not be indexed */
    long long vectors_done, vectors_total; /* while embedding */
    int embedding;            /* the last report was about vectors */
    int percent;              /* 0..100, by documents */
    char current[256];        /* base name of the document being read, "" none */
    char last_problem[512];   /* the last failure or warning, "" none */
} ChatSyncState;

/* Starts syncing knowledge base name in the background (test hook:
** KBCHAT_TEST_SYNC_DELAY_MS pauses after each document). Returns KB_OK;
** KB_EINVAL (a sync already runs or waits to be collected); KB_ENOMEM;
** KB_EIO (no thread). */
int chat_sync_start(ChatApp *app, const char *name);
/* Fills *st (OUT) with the sync's progress; st->active is 0 when none. */
void chat_sync_state(ChatApp *app, ChatSyncState *st /* OUT */);
/* When the sync has finished: joins its thread, writes the one-line note
** for the chat into note ("kb docs: 40 files indexed, 2 failed (F2 for
** details)"), sets *failed when the sync itself failed, forgets the sync and
** returns 1. Returns 0 when no sync has finished. */
int chat_sync_collect(ChatApp *app, char *note, size_t n, int *failed /* OUT */);
/* Stops a running sync between two documents (what is committed stays) and
** waits for its thread; nothing when there is none. */
void chat_sync_stop(ChatApp *app);

/* --- paths typed by the user (path.c) --- */

/* path with a leading "~" or "~/" replaced by $HOME (malloc'd, caller
** frees; NULL when out of memory). */
char *path_expand_home(const char *path);
/* The file name part of path (after its last '/'; path itself when it has
** none), pointing into path. */
const char *path_base_name(const char *path);
/* Completes the last name of typed, a path relative to the current
** directory (a leading ~ is $HOME), as a shell's Tab does: *out (malloc'd,
** caller frees) is typed extended by the longest common prefix of the
** names that fit, plus '/' when the one that fits is a folder; list gets
** the candidates (folders ending in '/') separated by two spaces, cut to
** listlen. Hidden names count only when the typed name starts with '.'.
** Returns the number of candidates (0: none, or the folder is unreadable;
** *out is then a copy of typed), or -1 when out of memory. */
int path_complete(const char *typed, char **out /* OUT */, char *list, size_t listlen);

/* Writes a private file (an export of a conversation) safely: write(f,
** user) fills a temporary file (mode 0600) in path's folder, which then
** takes path's name in one step (rename), so a failure never leaves half a
** file and a reader never sees one. An existing path is kept unless
** overwrite. On failure err gets the reason, naming path.
** Returns KB_OK; KB_EINVAL (path exists and overwrite is 0: err says so);
** KB_EIO; write's code. */
int path_write_private(const char *path, int overwrite, int (*write)(FILE *f, void *user), void *user, char *err,
                       size_t errlen);

#endif /* KB_APP_H */
