/*
** chat_app.h: the inside of a ChatApp, shared by the files that implement
** the ChatApp API (chat.c: the commands; kb_jobs.c: knowledge bases from a
** front end). Internal to app/: front ends see only app/chat.h (through app/app.h).
*/
#ifndef KB_APP_CHAT_APP_H
#define KB_APP_CHAT_APP_H

#include "app/app.h"

typedef struct KbSyncJob KbSyncJob; /* a background sync (kb_jobs.c) */

struct ChatApp {
    KbConfig *cfg;          /* borrowed; /set changes it */
    KbModel *model;
    char *model_path;
    Rag *rag;               /* NULL until needed */
    Conversation *conv;
    RagEmbedder *emb;       /* for the knowledge base in use when it has vectors */
    atomic_int *cancel;     /* chat_set_cancel's flag, given to every model, or NULL */
    RagSession *listed;     /* the last /sessions list: /open N and /delete N index it */
    int n_listed;
    KbSyncJob *sync;        /* the background sync, NULL when none; only the
                               front end's thread touches this pointer */
    char note[1200];        /* why vector search is off ("" when it is not) */
    char errmsg[1024];
};

/* Records the message of a failure (printf-style) and returns rc. */
int chat_fail(ChatApp *app, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Opens the database when it is not open yet. Returns KB_OK or rag_open's
** code (message in app->errmsg). */
int chat_rag(ChatApp *app);

#endif /* KB_APP_CHAT_APP_H */
