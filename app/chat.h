/*
** chat.h: the ChatApp API, what every chat front end drives (declared
** through app/app.h).
**
** A ChatApp holds the configuration, the model, the database, one
** Conversation (app/conversation.h), the slash commands (/kb, /new,
** /sessions, /open, /rename, /delete, /export, /set, /model, /sources,
** /retry, /help, /quit) and the knowledge-base jobs of the F2 panel. kbchat
** chat (cmd_chat.c) is its line-mode front end, ui/ the full-screen one.
** Results reach a front end as events (ChatEvent), never as text to parse.
**
** Lifetimes: chat_open/chat_close; a ChatApp owns its model and database.
*/
#ifndef KB_APP_CHAT_H
#define KB_APP_CHAT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "app/config.h"
#include "app/conversation.h"

typedef struct ChatApp ChatApp;

/* --- events: what a command or an answer produces, for the front end ---
**
** chat_line never prints: everything it has to say reaches the front end
** as a ChatEvent through ChatIO.on_event, in the order it happened, so a
** front end renders each kind its own way (the line mode as text on stdout
** and stderr, chat_event_print; the full-screen chat into its widgets) and
** never searches printed text for what happened. Text from outside
** (answers, names, passages, titles) arrives escaped for the terminal
** (app/term_text.h); with raw, the answers' bytes arrive unchanged.
**
** One question gives: ANSWER_PIECE*, then STOPPED when the user stopped it
** (before or while it streamed), ANSWER_DONE, NOTE (cut by max_tokens or
** the context), SOURCES, SESSION_CHANGED (the turn was stored); a failure
** gives ERROR instead of what would follow. */
typedef enum ChatEventKind {
    CHAT_EV_ANSWER_PIECE = 0,      /* text: the next piece of the answer */
    CHAT_EV_ANSWER_DONE,           /* the answer has ended (no text) */
    CHAT_EV_STOPPED,               /* the user stopped the answer (no text) */
    CHAT_EV_OUTPUT,                /* text: whole lines, a command's result */
    CHAT_EV_NOTE,                  /* text: one notice, no prefix, no '\n' */
    CHAT_EV_ERROR,                 /* text: one problem, no prefix, no '\n' */
    CHAT_EV_SOURCES,               /* text: whole lines, the sources of the answer just given */
    CHAT_EV_CONVERSATION_REPLACED, /* /new, /open, or the open one deleted: the turns are others */
    CHAT_EV_SESSION_CHANGED,       /* the stored sessions changed (a turn stored, a rename, a delete) */
    CHAT_EV_COUNT
} ChatEventKind;

/* One event; text[0..len) is valid only during the callback ("" when the
** kind has none). */
typedef struct ChatEvent {
    ChatEventKind kind;
    const char *text;
    size_t len;
} ChatEvent;

/* Receives ev on the thread running chat_line. For ANSWER_PIECE a nonzero
** return stops the answer; the return is ignored otherwise. */
typedef int (*ChatEventFn)(void *user, const ChatEvent *ev);

typedef struct ChatIO {
    ChatEventFn on_event;
    void *user;
    int raw; /* --raw: answers unescaped */
} ChatIO;

/* Writes ev as the line-mode chat shows it: answers, results and sources on
** out; " [stopped]" after a stopped answer; a line break after an answer;
** "kbchat: note: TEXT" and "kbchat: TEXT" lines on err. */
void chat_event_print(const ChatEvent *ev, FILE *out, FILE *err);

/* What chat_line asks of the front end. */
enum { CHAT_CONTINUE = 0, CHAT_QUIT = 1 };

/* Makes a chat over cfg (borrowed, changed by /set) with no model yet.
** Returns KB_OK or KB_ENOMEM. */
int chat_open(KbConfig *cfg, ChatApp **out /* OUT */);
void chat_close(ChatApp *app);
/* Opens the model at path (replacing any) with the configuration's threads
** and context. Returns KB_OK or model_open's code, message in chat_errmsg. */
int chat_load_model(ChatApp *app, const char *path);
/* Stops the answer (also its prompt's evaluation, within a fraction of a
** second) whenever *flag is set, for this model and those loaded later
** (app/stop.h). flag is borrowed (NULL: none); the front end clears it
** before each line. */
void chat_set_cancel(ChatApp *app, atomic_int *flag);
/* Lists the knowledge bases, sorted by name, into *list (OUT, free with
** chat_free_kbs). Returns KB_OK, or the database's code (message in
** chat_errmsg). */
int chat_list_kbs(ChatApp *app, RagKbInfo **list /* OUT */, int *n /* OUT */);
void chat_free_kbs(RagKbInfo *list, int n);
/* Lists the stored sessions, the most recent first, into *list (OUT,
** owned by app: valid until the next listing; /open N and /delete N
** number this list from 1). Returns KB_OK, or the database's code (message
** in chat_errmsg). */
int chat_list_sessions(ChatApp *app, const RagSession **list /* OUT */, int *n /* OUT */);
/* Opens the most recently updated stored session (a front end resuming
** where the user left). Returns KB_OK; KB_ENOTFOUND (none stored); the
** database's or conv_open_session's code (message in chat_errmsg). */
int chat_resume_last(ChatApp *app);
/* Uses knowledge base name (NULL = none). Returns as conv_set_kb. */
int chat_use_kb(ChatApp *app, const char *name);
const char *chat_errmsg(const ChatApp *app);
/* Why vector search is off for the knowledge base in use ("" when it is
** on or not needed), after chat_use_kb or chat_load_model. */
const char *chat_note(const ChatApp *app);
Conversation *chat_conversation(ChatApp *app);
KbModel *chat_model(ChatApp *app);

/* What a status bar shows (chat_status): pointers stay owned by the app and
** valid until the next command that changes them. */
typedef struct ChatStatus {
    const char *model;        /* the model's file path, "" when none */
    const char *arch;         /* "llama", ... ("" when no model) */
    const char *template_name;/* the chat template in use ("" when no model) */
    const char *kb;           /* the knowledge base in use, "" when none */
    long long n_ctx;          /* the context allocated (0 when no model) */
    long long n_past;         /* tokens of it in use */
    int n_turns;              /* turns of the conversation */
} ChatStatus;
/* Fills *st (OUT) from app. Not thread-safe against a running chat_line. */
void chat_status(ChatApp *app, ChatStatus *st /* OUT */);

/* The name (without '/') of slash command i, 0-based; NULL past the last
** (for completion in front ends). */
const char *chat_command_name(int i);
/* Handles one line of input: a /command, or a question to answer (followed
** by its sources). Returns CHAT_CONTINUE or CHAT_QUIT. */
int chat_line(ChatApp *app, const char *line, const ChatIO *io);


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

#endif /* KB_APP_CHAT_H */
