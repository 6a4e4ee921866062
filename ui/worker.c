/*
** worker.c: the thread that runs the full-screen chat's jobs off the UI
** thread, and the queue of events it fills (see screen.h).
**
** A job is one line for chat_line (a question or a /command), or the start
** (load the model, resume the last session, use the --kb knowledge base).
** Whatever the job produces arrives as ChatEvents (app/chat.h) on the
** worker's thread; worker_event copies each into the queue under the mutex
** (consecutive answer pieces into one entry) and answers the cancel flag
** the UI sets on Esc or Ctrl-C (the model reads the same flag between its
** layers: chat_set_cancel). The UI thread drains the queue in order
** (worker_take) and shows each event; nothing is ever printed to be parsed.
**
** Test hook: KBCHAT_TUI_PIECE_DELAY_MS=N (read by ui_run) makes the worker
** sleep N ms per piece, so tests with a tiny, fast model can cancel and
** resize mid-answer.
*/
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ui/screen.h"

/* Appends an event of kind with text[0..len) to the queue; a piece right
** after a piece extends it. Caller holds w->mu. Returns 0, or -1 when out
** of memory (the event is dropped: the turn is stored whole all the same). */
static int worker_push_locked(Worker *w, ChatEventKind kind, const char *text, size_t len)
{
    if (w->tlen + len + 1 > w->tcap) {
        size_t cap = (w->tlen + len + 1) * 2;
        char *t = realloc(w->text, cap);
        if (t == NULL) return -1;
        w->text = t, w->tcap = cap;
    }
    WorkerEvent *last = w->n_evs > 0 ? &w->evs[w->n_evs - 1] : NULL;
    if (!(kind == CHAT_EV_ANSWER_PIECE && last && last->kind == kind && last->off + last->len == w->tlen)) {
        if (w->n_evs == w->cap_evs) {
            int cap = w->cap_evs ? w->cap_evs * 2 : 16;
            WorkerEvent *e = realloc(w->evs, (size_t)cap * sizeof *e);
            if (e == NULL) return -1;
            w->evs = e, w->cap_evs = cap;
        }
        last = &w->evs[w->n_evs++];
        *last = (WorkerEvent){kind, w->tlen, 0};
    }
    memcpy(w->text + w->tlen, text, len);
    w->tlen += len;
    w->text[w->tlen] = '\0';
    last->len += len;
    return 0;
}

/* ChatEventFn, on the worker thread: queues ev for the UI; for a piece,
** counts it, applies the test delay and returns the cancel flag. */
static int worker_event(void *user, const ChatEvent *ev)
{
    Worker *w = user;
    pthread_mutex_lock(&w->mu);
    worker_push_locked(w, ev->kind, ev->text, ev->len);
    if (ev->kind == CHAT_EV_ANSWER_PIECE) w->n_pieces++;
    pthread_mutex_unlock(&w->mu);
    if (ev->kind != CHAT_EV_ANSWER_PIECE) return 0;
    if (w->delay_ms > 0) nanosleep(&(struct timespec){w->delay_ms / 1000, (w->delay_ms % 1000) * 1000000L}, NULL);
    return atomic_load(&w->cancel);
}

/* Queues an event of kind whose text is printf-style (the start's messages). */
static void worker_say(Worker *w, ChatEventKind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
__attribute__((format(printf, 3, 4))) static void worker_say(Worker *w, ChatEventKind kind, const char *fmt, ...)
{
    char text[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    worker_event(w, &(ChatEvent){kind, text, strlen(text)});
}

/* The first job: loads the model, resumes the last session, and turns
** on the knowledge base asked for on the command line. "Ready" follows the
** resumed turns, so it is the last line before the editor. */
static void worker_start_chat(Worker *w)
{
    int loaded = 0;
    if (w->load_path && chat_load_model(w->app, w->load_path) != KB_OK) worker_say(w, CHAT_EV_ERROR, "%s", chat_errmsg(w->app));
    else loaded = w->load_path != NULL;
    int rc = chat_resume_last(w->app);
    if (rc == KB_OK) worker_say(w, CHAT_EV_CONVERSATION_REPLACED, "%s", "");
    else if (rc != KB_ENOTFOUND) worker_say(w, CHAT_EV_NOTE, "the last conversation was not restored: %s", chat_errmsg(w->app));
    if (loaded) {
        ChatStatus st;
        chat_status(w->app, &st);
        worker_say(w, CHAT_EV_OUTPUT, "Ready: %s (%s, template %s, context %lld). Type a question; /help lists the commands.\n",
                   path_base_name(st.model), st.arch, st.template_name, st.n_ctx);
    }
    if (w->kb && chat_use_kb(w->app, w->kb) != KB_OK) worker_say(w, CHAT_EV_ERROR, "%s", chat_errmsg(w->app));
    else if (w->kb) worker_say(w, CHAT_EV_OUTPUT, "Searching knowledge base %s.\n", w->kb);
    if (chat_note(w->app)[0]) worker_say(w, CHAT_EV_NOTE, "%s", chat_note(w->app));
}

/* Runs one job: the start, or a line for chat_line. */
static void *worker_main(void *arg)
{
    Worker *w = arg;
    int result = CHAT_CONTINUE;
    if (w->start) {
        worker_start_chat(w);
    } else {
        ChatIO io = {.on_event = worker_event, .user = w, .raw = 0};
        result = chat_line(w->app, w->line, &io);
    }
    pthread_mutex_lock(&w->mu);
    w->result = result, w->done = 1;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int worker_start(Worker *w, char *line, char *load_path, char *kb)
{
    assert(!w->running);
    w->line = line, w->load_path = load_path, w->kb = kb;
    w->start = line == NULL;
    w->done = 0, w->n_evs = 0, w->tlen = 0, w->n_pieces = 0;
    atomic_store(&w->cancel, 0);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        free(line), free(load_path), free(kb);
        w->line = w->load_path = w->kb = NULL;
        return -1;
    }
    w->running = 1;
    return 0;
}

int worker_take(Worker *w, WorkerShowFn show, void *u, long *n_pieces)
{
    pthread_mutex_lock(&w->mu);
    int done = w->done, i = 0;
    for (; i < w->n_evs; i++) {
        const WorkerEvent *e = &w->evs[i];
        if (show(u, e->kind, w->text + e->off, e->len, done) != 0) break;
    }
    if (i == w->n_evs) w->n_evs = 0, w->tlen = 0; /* all shown: the buffers are reused */
    else memmove(w->evs, w->evs + i, (size_t)(w->n_evs - i) * sizeof *w->evs), w->n_evs -= i;
    *n_pieces = w->n_pieces;
    pthread_mutex_unlock(&w->mu);
    return done && w->n_evs == 0;
}

void worker_join(Worker *w)
{
    if (!w->running) return;
    pthread_join(w->thread, NULL);
    w->running = 0;
    free(w->line), free(w->load_path), free(w->kb);
    w->line = w->load_path = w->kb = NULL;
}

void worker_free(Worker *w)
{
    worker_join(w);
    free(w->evs), free(w->text);
    w->evs = NULL, w->text = NULL;
    w->n_evs = w->cap_evs = 0, w->tlen = w->tcap = 0;
}
