/*
** kb_sync.c: a knowledge base synced in the background while the chat goes
** on (the chat_sync_* functions of app.h).
**
** The job runs rag_sync on a thread of its own with its own Rag connection
** to the same database: SQLite in WAL mode lets the chat's connection read
** (retrieval, the F2 list) while the sync writes, and both connections wait
** on the busy timeout (rag/store.c) for the other's write, which is one
** document or one batch of vectors long. The embedding model, when the base
** has vectors, is opened on the sync thread the way `kbchat kb sync` opens
** it (kb_ops.c), never shared with the chat.
**
** Threads: the front end's thread starts, reads, collects and stops the
** job; the sync thread writes the progress record under the job's mutex
** from rag_sync's progress callback. The job copies every setting it needs
** at the start, so /set on the chat's worker cannot race with it. Stopping
** sets the atomic cancel flag (RagSyncOptions.cancel) and joins the
** thread: rag_sync reads it between documents and, as PDFs are extracted
** by a child process it kills on cancel, every 100 ms inside one.
*/
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/chat_app.h"
#include "app/kb_ops.h"

struct KbSyncJob {
    pthread_t thread;
    atomic_int cancel;        /* set by chat_sync_stop, read by rag_sync */
    char *kb, *data_dir;      /* copies taken at the start */
    char *embed_spec, *chat_model;
    int threads, delay_ms;
    RagSyncOptions budget;    /* the per-document budget (kbops_sync_budget) */
    pthread_mutex_t mu;       /* guards the fields below */
    ChatSyncState st;         /* the progress record */
    int done;                 /* the thread has finished its work */
    int rc;                   /* rag_sync's code (or the opening's) */
    RagSyncStats stats;
    char errmsg[1200];        /* why it failed */
    char warning[512];        /* the last warning (a missing folder, no vectors made) */
};

/* rag_sync's progress callback, on the sync thread: copies what the front
** end shows into the record. */
static void sync_on_progress(const RagProgress *p, void *user)
{
    KbSyncJob *j = user;
    ChatSyncState *st = &j->st;
    pthread_mutex_lock(&j->mu);
    st->planned |= p->event == RAG_EV_PLAN;
    st->files_done = p->files_done;
    st->files_total = p->files_total;
    st->pages = p->pages_done;
    st->chunks = p->chunks_done;
    st->embedding = p->event == RAG_EV_EMBED;
    if (p->event == RAG_EV_EMBED) st->vectors_done = p->vectors_done, st->vectors_total = p->vectors_total;
    if (p->event == RAG_EV_DOC_START) snprintf(st->current, sizeof st->current, "%s", path_base_name(p->path));
    if (p->event == RAG_EV_DOC_DONE && p->action == RAG_ACT_FAILED) st->failed++;
    if ((p->event == RAG_EV_DOC_DONE && p->action == RAG_ACT_FAILED) || p->event == RAG_EV_WARNING)
        snprintf(st->last_problem, sizeof st->last_problem, "%s%s%s", p->path ? path_base_name(p->path) : "",
                 p->path ? ": " : "", p->message ? p->message : "");
    if (p->event == RAG_EV_WARNING) snprintf(j->warning, sizeof j->warning, "%s", st->last_problem);
    st->percent = st->files_total > 0 ? (int)(st->files_done * 100 / st->files_total) : 0;
    pthread_mutex_unlock(&j->mu);
}

/* The sync thread: opens its own connection and, when the base has
** vectors, the embedding model; syncs; records the outcome. */
static void *sync_main(void *arg)
{
    KbSyncJob *j = arg;
    Rag *rag = NULL;
    RagEmbedder *e = NULL;
    RagSyncStats stats;
    char err[sizeof j->errmsg] = "";
    memset(&stats, 0, sizeof stats);
    int rc = rag_open(&rag, j->data_dir);
    if (rc != KB_OK) snprintf(err, sizeof err, "%s", rag ? rag_errmsg(rag) : kb_strerror(rc));
    if (rc == KB_OK) rc = kbops_embedder_for(rag, j->kb, j->embed_spec, j->chat_model, j->threads, &e, err, sizeof err);
    if (rc == KB_OK) {
        RagSyncOptions opt = {.progress = sync_on_progress, .user = j, .delay_ms = j->delay_ms, .embedder = e,
                              .cancel = &j->cancel, .doc_seconds = j->budget.doc_seconds,
                              .doc_text_bytes = j->budget.doc_text_bytes, .extractor = j->budget.extractor};
        rc = rag_sync(rag, j->kb, &opt, &stats);
        if (rc != KB_OK) snprintf(err, sizeof err, "%s", rag_errmsg(rag));
    }
    rag_embedder_close(e);
    rag_close(rag);
    pthread_mutex_lock(&j->mu);
    j->done = 1, j->rc = rc, j->stats = stats;
    j->st.running = 0;
    j->st.current[0] = '\0';
    snprintf(j->errmsg, sizeof j->errmsg, "%s", err);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* Frees a job whose thread has been joined (or never started). */
static void sync_free(KbSyncJob *j)
{
    if (j == NULL) return;
    free(j->kb), free(j->data_dir), free(j->embed_spec), free(j->chat_model);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* Starts the sync of base name on its own thread, copying every setting
** it needs; refuses a second one. Front end's thread only. */
int chat_sync_start(ChatApp *app, const char *name)
{
    if (app->sync)
        return chat_fail(app, KB_EINVAL, "%s is being synced already: one sync at a time", app->sync->kb);
    KbSyncJob *j = calloc(1, sizeof *j);
    if (j == NULL) return chat_fail(app, KB_ENOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    const char *chat_model = app->model_path ? app->model_path : app->cfg->model_path;
    j->kb = strdup(name), j->data_dir = strdup(app->cfg->data_dir);
    j->embed_spec = strdup(app->cfg->embedding_model), j->chat_model = strdup(chat_model ? chat_model : "");
    j->threads = (int)app->cfg->threads;
    j->delay_ms = kbops_test_delay_ms();
    kbops_sync_budget(app->cfg, &j->budget);
    if (!j->kb || !j->data_dir || !j->embed_spec || !j->chat_model) {
        sync_free(j);
        return chat_fail(app, KB_ENOMEM, "out of memory");
    }
    j->st.active = j->st.running = 1;
    snprintf(j->st.kb, sizeof j->st.kb, "%s", name);
    if (pthread_create(&j->thread, NULL, sync_main, j) != 0) {
        sync_free(j);
        return chat_fail(app, KB_EIO, "cannot start a thread for the sync");
    }
    app->sync = j;
    return KB_OK;
}

/* Copies the progress record under the job's mutex (zeros when none). */
void chat_sync_state(ChatApp *app, ChatSyncState *st)
{
    memset(st, 0, sizeof *st);
    if (app->sync == NULL) return;
    pthread_mutex_lock(&app->sync->mu);
    *st = app->sync->st;
    pthread_mutex_unlock(&app->sync->mu);
}

/* Writes the chat's one-line note about a finished sync into note. */
static void sync_note(const KbSyncJob *j, char *note, size_t n)
{
    const RagSyncStats *s = &j->stats;
    long long read = s->indexed + s->updated, same = s->unchanged + s->touched;
    size_t k = 0;
    if (j->rc != KB_OK) {
        snprintf(note, n, "kb %s: the sync failed: %s", j->kb, j->errmsg);
        return;
    }
    if (!s->cancelled && read + s->failed + s->moved + s->removed + s->warnings == 0) {
        snprintf(note, n, "kb %s: up to date, %lld file%s unchanged", j->kb, same, same == 1 ? "" : "s");
        return;
    }
    if (s->cancelled)
        k = (size_t)snprintf(note, n, "kb %s: sync stopped after %lld of %lld files", j->kb, read + s->failed,
                             (long long)j->st.files_total);
    else
        k = (size_t)snprintf(note, n, "kb %s: %lld file%s indexed", j->kb, read, read == 1 ? "" : "s");
    if (k < n && (s->moved || s->removed))
        k += (size_t)snprintf(note + k, n - k, ", %lld moved, %lld removed", (long long)s->moved, (long long)s->removed);
    if (k < n && same) k += (size_t)snprintf(note + k, n - k, ", %lld unchanged", same);
    if (k < n && s->failed) k += (size_t)snprintf(note + k, n - k, ", %lld failed (F2 for details)", (long long)s->failed);
    if (k < n && s->warnings) snprintf(note + k, n - k, "; warning: %s", j->warning);
}

/* Joins a finished sync and writes its note; 0 while none has finished. */
int chat_sync_collect(ChatApp *app, char *note, size_t n, int *failed)
{
    KbSyncJob *j = app->sync;
    *failed = 0;
    if (j == NULL) return 0;
    pthread_mutex_lock(&j->mu);
    int done = j->done;
    pthread_mutex_unlock(&j->mu);
    if (!done) return 0;
    pthread_join(j->thread, NULL);
    sync_note(j, note, n);
    *failed = j->rc != KB_OK;
    sync_free(j);
    app->sync = NULL;
    return 1;
}

/* Asks the sync to stop (within 100 ms, also inside a document) and waits
** for its thread. */
void chat_sync_stop(ChatApp *app)
{
    KbSyncJob *j = app->sync;
    if (j == NULL) return;
    atomic_store(&j->cancel, 1);
    pthread_join(j->thread, NULL);
    sync_free(j);
    app->sync = NULL;
}
