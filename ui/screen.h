/*
** screen.h: the full-screen chat's loop, its state machine and its
** background worker (internal to ui/; the entry point is ui_run in ui.h).
*/
#ifndef KB_UI_SCREEN_H
#define KB_UI_SCREEN_H

#include <pthread.h>
#include <stdatomic.h>

#include "ui/ui.h"
#include "ui/widget.h"

/* The smallest terminal the layout works in; below it a message says so. */
#define UI_MIN_COLS 60
#define UI_MIN_ROWS 15

/* --- the state of the screen (screen.c; the diagram is in its header) --- */

typedef enum UiState {
    UI_STARTING = 0, /* the start job runs: loading the model, resuming the last session */
    UI_IDLE,         /* no job: the editor takes keys */
    UI_ARMED,        /* idle after one Ctrl-C: a second one quits */
    UI_WORKING,      /* a /command job runs */
    UI_THINKING,     /* a question was sent; no piece of its answer yet */
    UI_ANSWERING,    /* the answer streams (a question, or /retry) */
    UI_STOPPING,     /* Esc or Ctrl-C asked the job to stop; it has not ended yet */
    UI_N_STATES
} UiState;

/* The state after moving from from to to; assert()s that the move is one
** of the diagram's (a move outside it is a bug of screen.c, never input). */
UiState ui_state_step(UiState from, UiState to);
/* Whether the diagram has the move from -> to. */
int ui_state_can(UiState from, UiState to);
/* The state's name, for messages ("IDLE"). */
const char *ui_state_name(UiState st);

/* --- the worker (worker.c) --- */

/* One queued event: text is w->text[off..off+len). */
typedef struct WorkerEvent {
    ChatEventKind kind;
    size_t off, len;
} WorkerEvent;

typedef struct Worker {
    pthread_t thread;
    int running;             /* a thread to join */
    pthread_mutex_t mu;      /* guards the fields below it */
    WorkerEvent *evs;        /* events not yet shown, in order */
    int n_evs, cap_evs;
    char *text;              /* their texts */
    size_t tlen, tcap;
    long n_pieces;           /* answer pieces of this job */
    int done;                /* the job has finished */
    int result;              /* chat_line's CHAT_* */
    atomic_int cancel;       /* set by the UI, read by worker_event and the model */
    ChatApp *app;
    char *line;              /* the job: a line for chat_line, or the start: */
    int start;               /* load load_path (NULL: none), resume the last session, use kb */
    char *load_path, *kb;
    long delay_ms;           /* the test hook KBCHAT_TUI_PIECE_DELAY_MS */
} Worker;

/* Starts a job: line for chat_line, or (line NULL) the start with
** load_path and kb (each may be NULL); all taken over. No job may run.
** Returns 0 or -1 (no thread). */
int worker_start(Worker *w, char *line, char *load_path, char *kb);
/* Shows one queued event on the UI thread (done: the job has ended).
** Returns 0, or nonzero to stop there and keep it and the rest queued. */
typedef int (*WorkerShowFn)(void *u, ChatEventKind kind, const char *text, size_t len, int done);
/* Hands the queued events to show in order and copies the piece count into
** *n_pieces (OUT). Returns 1 when the job has ended and every event was
** shown (then worker_join), else 0. */
int worker_take(Worker *w, WorkerShowFn show, void *u, long *n_pieces /* OUT */);
/* Waits for the job's thread and frees the job. */
void worker_join(Worker *w);
/* worker_join, then frees the queue. */
void worker_free(Worker *w);

#endif /* KB_UI_SCREEN_H */
