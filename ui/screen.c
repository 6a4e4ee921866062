/*
** screen.c: the loop of the full-screen chat, and the worker thread that
** answers off the UI thread.
**
** The loop (style habit 14; htop's ScreenManager_run) is the only place
** that reads keys and the only caller of doupdate():
**
**   relayout when asked (KEY_RESIZE, the editor grew) -> draw what changed
**   -> wget_wch with a timeout (short while an answer streams)
**   -> drain the worker's queue into the chat pane -> dispatch the key
**
** Every line the user sends (a question or a /command) runs as a job on a
** worker thread through chat_line (app/chat.c), so the UI never waits for
** retrieval or generation. The worker's on_piece callback appends each
** piece to a queue under a mutex and returns the cancel flag the UI sets on
** Esc or Ctrl-C (the model reads the same flag between its layers, so the
** prompt's evaluation stops too: chat_set_cancel); the command output and errors chat_line writes go to
** memory streams shown when the job ends. Only one job runs at a time, and
** the UI touches the ChatApp (chat_status) only while no job runs.
**
** A knowledge base syncing in the background (started from the F2 panel)
** is app's own thread (app/kb_sync.c): each tick the loop copies its
** progress into the status bar and the panel, and when it has ended puts
** its note into the chat. Quitting stops it between two documents.
**
** Test hook: KBCHAT_TUI_PIECE_DELAY_MS=N makes the worker sleep N ms per
** piece, so tests with a tiny, fast model can cancel and resize mid-answer.
*/
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ui/screen.h"

/* --- the worker --- */


typedef struct Worker {
    pthread_t thread;
    int running;             /* a thread to join */
    pthread_mutex_t mu;      /* guards the fields below it */
    char *queue;             /* pieces not yet shown */
    size_t qlen, qcap;
    long n_pieces;           /* of this job */
    int done;                /* the job has finished */
    char *out, *err;         /* what chat_line wrote (malloc'd) */
    int result;              /* chat_line's CHAT_* */
    atomic_int cancel;       /* set by the UI, read by on_piece and the model */
    ChatApp *app;
    char *line;              /* the job: a line for chat_line, or the start: */
    int start;               /* load load_path (NULL: none), resume the last session, use kb */
    char *load_path, *kb;
    int resumed;             /* the start resumed a session */
    long delay_ms;           /* the test hook */
} Worker;

/* Receives a piece of the answer on the worker thread. */
static int worker_piece(void *user, const char *piece, size_t len)
{
    Worker *w = user;
    pthread_mutex_lock(&w->mu);
    if (w->qlen + len + 1 > w->qcap) {
        size_t cap = (w->qlen + len + 1) * 2;
        char *q = realloc(w->queue, cap);
        if (q) w->queue = q, w->qcap = cap;
    }
    if (w->qlen + len + 1 <= w->qcap) {
        memcpy(w->queue + w->qlen, piece, len);
        w->qlen += len;
        w->n_pieces++;
    }
    pthread_mutex_unlock(&w->mu);
    if (w->delay_ms > 0) nanosleep(&(struct timespec){w->delay_ms / 1000, (w->delay_ms % 1000) * 1000000L}, NULL);
    return atomic_load(&w->cancel);
}

/* The first job: loads the model, resumes the last session, and turns
** on the knowledge base asked for on the command line. */
static void worker_start_chat(Worker *w, FILE *out, FILE *err)
{
    if (w->load_path && chat_load_model(w->app, w->load_path) != KB_OK) {
        fprintf(err, "kbchat: %s\n", chat_errmsg(w->app));
    } else if (w->load_path) {
        ChatStatus st;
        chat_status(w->app, &st);
        fprintf(out, "Ready: %s (%s, template %s, context %lld). Type a question; /help lists the commands.\n",
                path_base_name(st.model), st.arch, st.template_name, st.n_ctx);
    }
    int rc = chat_resume_last(w->app);
    if (rc == KB_OK) w->resumed = 1;
    else if (rc != KB_ENOTFOUND) fprintf(err, "kbchat: note: the last conversation was not restored: %s\n", chat_errmsg(w->app));
    if (w->kb && chat_use_kb(w->app, w->kb) != KB_OK) fprintf(err, "kbchat: %s\n", chat_errmsg(w->app));
    else if (w->kb) fprintf(out, "Searching knowledge base %s.\n", w->kb);
    if (chat_note(w->app)[0]) fprintf(err, "kbchat: note: %s\n", chat_note(w->app));
}

/* Runs one job: the start, or a line for chat_line. */
static void *worker_main(void *arg)
{
    Worker *w = arg;
    char *ob = NULL, *eb = NULL;
    size_t on = 0, en = 0;
    FILE *out = open_memstream(&ob, &on), *err = open_memstream(&eb, &en);
    int result = CHAT_CONTINUE;
    if (out && err && w->start) {
        worker_start_chat(w, out, err);
    } else if (out && err) {
        ChatIO io = {.out = out, .err = err, .on_piece = worker_piece, .user = w, .raw = 0};
        result = chat_line(w->app, w->line, &io);
    }
    if (out) fclose(out);
    if (err) fclose(err);
    pthread_mutex_lock(&w->mu);
    w->out = ob, w->err = eb, w->result = result, w->done = 1;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Starts a job: line for chat_line, or (line NULL) the start with
** load_path and kb (each may be NULL); all taken over. Returns 0 or -1. */
static int worker_start(Worker *w, char *line, char *load_path, char *kb)
{
    w->line = line, w->load_path = load_path, w->kb = kb;
    w->start = line == NULL;
    w->done = 0, w->qlen = 0, w->n_pieces = 0, w->resumed = 0;
    atomic_store(&w->cancel, 0);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        free(line), free(load_path), free(kb);
        w->line = w->load_path = w->kb = NULL;
        return -1;
    }
    w->running = 1;
    return 0;
}

/* Waits for the job's thread and frees the job. */
static void worker_join(Worker *w)
{
    if (!w->running) return;
    pthread_join(w->thread, NULL);
    w->running = 0;
    free(w->line), free(w->load_path), free(w->kb), free(w->out), free(w->err);
    w->line = w->load_path = w->kb = w->out = w->err = NULL;
}

/* --- the screen's state --- */

typedef struct Screen {
    ChatApp *app;
    ChatPane *chat;
    InputBox *input;
    StatusBar *status;
    Widget *help;          /* the F1 overlay */
    Widget *sources;       /* the F3 overlay */
    int sources_open;
    Widget *sessions;      /* the F4 overlay */
    int sessions_open;
    Widget *kbs;           /* the F2 overlay */
    int kbs_open;
    int reload_on_done;    /* the job was /open or /delete: show the conversation again */
    Worker wk;
    int help_open;
    double hint_until;     /* the editor's hint says something (Tab's list, busy): keep it until then */
    int pasting;           /* between the bracketed paste markers */
    int busy;              /* a job runs */
    int answering;         /* the job is a question */
    int answer_started;    /* its answer message exists */
    int clear_on_done;     /* the job was /new */
    int ctrl_c_armed;      /* Ctrl-C on an idle prompt: once more quits */
    int too_small;
    double t_start;        /* of the answer, for tokens/s */
    long n_pieces;         /* of the answer so far (copied from the worker under its lock) */
    char left[512];        /* the status bar's left part, refreshed when idle */
    ChatSyncState sync;    /* the background sync's progress, read each tick */
} Screen;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads the ChatApp's state into the status bar's left part (idle only). */
static void screen_snapshot(Screen *s)
{
    ChatStatus st;
    chat_status(s->app, &st);
    int n = 0;
    if (st.model[0]) n = snprintf(s->left, sizeof s->left, "%s (%s, %s)", path_base_name(st.model), st.arch, st.template_name);
    else n = snprintf(s->left, sizeof s->left, "no model");
    if (n < 0 || (size_t)n >= sizeof s->left) return;
    n += snprintf(s->left + n, sizeof s->left - (size_t)n, " │ kb: %s", st.kb[0] ? st.kb : "none");
    if (st.n_ctx > 0 && (size_t)n < sizeof s->left)
        snprintf(s->left + n, sizeof s->left - (size_t)n, " │ ctx %lld/%lld", st.n_past, st.n_ctx);
}

/* Sets the status bar and the editor's hint for the current state. */
static void screen_update_status(Screen *s)
{
    char right[128];
    if (s->busy && s->answering) {
        double dt = now_seconds() - s->t_start;
        long n = s->n_pieces;
        if (n > 0 && dt > 0) snprintf(right, sizeof right, "%.1f tok/s  Esc: stop", (double)n / dt);
        else snprintf(right, sizeof right, "thinking…  Esc: stop");
    } else if (s->busy) {
        snprintf(right, sizeof right, "working…");
    } else {
        snprintf(right, sizeof right, COLS >= 90 ? "F1 keys  /help  Ctrl-C×2: quit" : "F1 keys  Ctrl-C×2: quit");
    }
    char prog[200], both[sizeof prog + sizeof right + 4];
    const char *shown = right;
    if (s->sync.active) { /* the background sync goes first, even with the F2 panel closed */
        if (!s->sync.planned) snprintf(prog, sizeof prog, "indexing %s…", s->sync.kb);
        else if (s->sync.embedding)
            snprintf(prog, sizeof prog, "embedding %s %lld/%lld chunks", s->sync.kb, s->sync.vectors_done, s->sync.vectors_total);
        else
            snprintf(prog, sizeof prog, "indexing %s %lld/%lld files %d%%", s->sync.kb, s->sync.files_done,
                     s->sync.files_total, s->sync.percent);
        snprintf(both, sizeof both, "%s  %s", prog, s->busy ? right : "F1 keys");
        shown = both;
    }
    status_set(s->status, s->left, shown);
    if (now_seconds() < s->hint_until) return;
    input_set_hint(s->input, s->ctrl_c_armed ? " Press Ctrl-C again to quit " :
                             " Enter: send  Alt-Enter/Ctrl-J: new line ");
}

/* --- jobs --- */

/* Adds text (trimmed of surrounding newlines) as a message of role. */
static void add_trimmed(Screen *s, UiRole role, const char *text)
{
    if (text == NULL) return;
    while (*text == '\n' || *text == ' ') text++;
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) n--;
    if (n == 0) return;
    char *copy = strndup(text, n);
    if (copy) chatpane_add(s->chat, role, copy);
    free(copy);
}

/* Shows the turns of the conversation (resumed at the start, or opened),
** then a note beginning with verb. */
static void screen_show_turns(Screen *s, const char *verb)
{
    Conversation *c = chat_conversation(s->app);
    char note[600];
    for (int i = 0; i < conv_n_turns(c); i++) {
        const RagTurn *t = conv_turn(c, i);
        char *q = malloc(strlen(t->question) + 3);
        if (q) sprintf(q, "> %s", t->question), chatpane_add(s->chat, UI_C_USER, q);
        free(q);
        chatpane_add(s->chat, UI_C_ANSWER, t->answer ? t->answer : "");
    }
    TermStrs ts = {0};
    snprintf(note, sizeof note, "%s \"%s\" (%d turn%s); /new starts a new conversation.", verb,
             term_line(&ts, conv_title(c)), conv_n_turns(c), conv_n_turns(c) == 1 ? "" : "s");
    term_strs_clear(&ts);
    chatpane_add(s->chat, UI_C_NOTE, note);
}

/* Shows what a finished job wrote and refreshes the state. Returns UI_QUIT
** when the job was /quit. */
static int screen_finish_job(Screen *s)
{
    Worker *w = &s->wk;
    const char *out = w->out ? w->out : "";
    int quit = w->result == CHAT_QUIT;
    if (s->answering && strncmp(out, " [stopped]", 10) == 0) { /* stopped while thinking: an empty answer */
        if (s->answer_started) chatpane_append(s->chat, " [stopped]", 10);
        else chatpane_add(s->chat, UI_C_ANSWER, "[stopped]");
        out += 10;
    }
    if (s->clear_on_done) chatpane_clear(s->chat);
    if (w->resumed) screen_show_turns(s, "Resumed");
    if (s->reload_on_done) {
        Conversation *c = chat_conversation(s->app);
        chatpane_clear(s->chat);
        if (conv_n_turns(c) > 0) screen_show_turns(s, "Opened");
    }
    add_trimmed(s, UI_C_NOTE, out);
    add_trimmed(s, w->err && strncmp(w->err, "kbchat: note:", 13) == 0 ? UI_C_NOTE : UI_C_ERROR, w->err);
    worker_join(w);
    s->busy = s->answering = s->answer_started = s->clear_on_done = s->reload_on_done = 0;
    screen_snapshot(s);
    return quit ? UI_QUIT : UI_REDRAW;
}

/* Moves the worker's pieces into the chat pane; finishes a done job. */
static int screen_drain(Screen *s)
{
    Worker *w = &s->wk;
    int flags = 0, done;
    if (!s->busy) return 0;
    pthread_mutex_lock(&w->mu);
    if (w->qlen > 0) {
        if (!s->answer_started) chatpane_add(s->chat, UI_C_ANSWER, ""), s->answer_started = 1;
        chatpane_append(s->chat, w->queue, w->qlen);
        w->qlen = 0;
        flags = UI_REDRAW;
    }
    s->n_pieces = w->n_pieces;
    done = w->done;
    pthread_mutex_unlock(&w->mu);
    if (done) flags |= screen_finish_job(s);
    else if (s->answering) flags |= UI_REDRAW; /* the tokens/s figure */
    return flags;
}

/* The background sync (app/kb_sync.c): reads its progress for the status
** bar and the F2 panel each tick; once it has finished and no job is
** writing into the chat pane (pieces go to its last message), puts its
** note in the chat and refreshes the panel. */
static int screen_poll_sync(Screen *s)
{
    char note[1600];
    int failed;
    if (!s->busy && chat_sync_collect(s->app, note, sizeof note, &failed)) {
        chatpane_add(s->chat, failed ? UI_C_ERROR : UI_C_NOTE, note);
        memset(&s->sync, 0, sizeof s->sync);
        if (s->kbs_open) kbview_set_sync(s->kbs, &s->sync), kbview_refresh(s->kbs);
        return UI_REDRAW;
    }
    ChatSyncState st;
    chat_sync_state(s->app, &st);
    if (memcmp(&st, &s->sync, sizeof st) == 0) return 0;
    int more_files = st.files_done != s->sync.files_done;
    s->sync = st;
    if (s->kbs_open) kbview_set_sync(s->kbs, &s->sync);
    if (s->kbs_open && more_files) kbview_refresh(s->kbs); /* the counts as the sync commits (F2 open: no job runs) */
    return UI_REDRAW;
}

/* True when line t is the command name (then a space or the end). */
static int is_command(const char *t, const char *name)
{
    size_t n = strlen(name);
    return strncmp(t, name, n) == 0 && (t[n] == '\0' || t[n] == ' ' || t[n] == '\n');
}

/* Shows line (taken over), then hands it to the worker. */
static int screen_run_line(Screen *s, char *line)
{
    const char *t = line + strspn(line, " \t\n");
    int command = t[0] == '/' && t[1] != '/';
    size_t lead = strlen("> ");
    char *shown = malloc(strlen(line) + lead + 1);
    if (shown) {
        sprintf(shown, "> %s", line);
        chatpane_add(s->chat, UI_C_USER, shown);
        free(shown);
    }
    s->clear_on_done = command && is_command(t, "/new");
    s->reload_on_done = command && (is_command(t, "/open") || is_command(t, "/delete"));
    s->answering = !command;
    s->answer_started = 0;
    s->t_start = now_seconds();
    if (worker_start(&s->wk, line, NULL, NULL) != 0) {
        chatpane_add(s->chat, UI_C_ERROR, "kbchat: cannot start a thread");
        return UI_REDRAW;
    }
    s->busy = 1;
    chatpane_follow(s->chat);
    return UI_REDRAW | UI_RELAYOUT;
}

/* Sends the editor's text. */
static int screen_submit(Screen *s)
{
    char *line = input_take(s->input);
    return line ? screen_run_line(s, line) : UI_REDRAW;
}

/* --- keys --- */

/* Reads a key (ERR after the timeout). Esc followed at once by another key
** is that key with Alt. */
static int screen_read_key(UiKey *k)
{
    wint_t ch;
    int r = wget_wch(stdscr, &ch);
    memset(k, 0, sizeof *k);
    if (r == ERR) return ERR;
    k->is_key = r == KEY_CODE_YES;
    k->ch = ch;
    if (!k->is_key && ch == 27) {
        wtimeout(stdscr, 15);
        if (wget_wch(stdscr, &ch) == OK) k->alt = 1, k->ch = ch;
    }
    return OK;
}

/* The mouse wheel scrolls the chat. */
static int screen_mouse(Screen *s)
{
    MEVENT ev;
    if (getmouse(&ev) != OK) return 0;
    if (ev.bstate & BUTTON4_PRESSED) chatpane_scroll(s->chat, -3);
    else if (ev.bstate & BUTTON5_PRESSED) chatpane_scroll(s->chat, 3);
    else return 0;
    return UI_REDRAW;
}

/* Ctrl-C: stops an answer; on an idle prompt clears it and arms, and a
** second one quits. */
static int screen_ctrl_c(Screen *s)
{
    if (s->busy) {
        atomic_store(&s->wk.cancel, 1);
        return UI_REDRAW;
    }
    if (s->ctrl_c_armed) return UI_QUIT;
    input_clear(s->input);
    s->ctrl_c_armed = 1;
    s->hint_until = 0;
    return UI_REDRAW | UI_RELAYOUT;
}

/* Tab: completes the /command being typed (to the longest common prefix
** of the names that fit; the hint lists them when several do). */
static int screen_complete(Screen *s)
{
    const char *t = input_text(s->input);
    char common[64] = "", list[200] = "";
    int n = 0;
    if (t[0] != '/' || strpbrk(t, " \n")) return 0;
    size_t len = strlen(t + 1);
    for (int i = 0; chat_command_name(i); i++) {
        const char *name = chat_command_name(i);
        if (strncmp(name, t + 1, len) != 0) continue;
        if (n++ == 0) snprintf(common, sizeof common, "%s", name);
        else
            for (size_t k = 0; common[k]; k++)
                if (common[k] != name[k]) {
                    common[k] = '\0';
                    break;
                }
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, " /%s", name);
    }
    if (n == 0) return 0;
    char line[80];
    snprintf(line, sizeof line, "/%s%s", common, n == 1 ? " " : "");
    input_replace(s->input, line);
    if (n > 1) input_set_hint(s->input, list), s->hint_until = now_seconds() + 3;
    return UI_REDRAW;
}

/* Keys while the help overlay is open: any key but a resize closes it. */
static int screen_help_key(Screen *s, const UiKey *k)
{
    if (k->is_key && (k->ch == KEY_RESIZE || k->ch == KEY_MOUSE)) return k->ch == KEY_RESIZE ? UI_RELAYOUT | UI_REDRAW : 0;
    s->help_open = 0;
    return UI_RELAYOUT | UI_REDRAW;
}

/* F3: the sources of the last answer (not while a job may change them). */
static int screen_open_sources(Screen *s)
{
    Conversation *c = chat_conversation(s->app);
    if (s->busy) {
        input_set_hint(s->input, " F3: the sources show when the answer is done ");
        s->hint_until = now_seconds() + 3;
        return UI_REDRAW;
    }
    if (sources_load(s->sources, conv_turn(c, conv_n_turns(c) - 1)) != 0) return UI_REDRAW;
    s->sources_open = 1;
    return UI_RELAYOUT | UI_REDRAW;
}

/* F4: the stored conversations (not while a job runs). */
static int screen_open_sessions(Screen *s)
{
    if (s->busy) {
        input_set_hint(s->input, " F4: the conversations show when the answer is done ");
        s->hint_until = now_seconds() + 3;
        return UI_REDRAW;
    }
    if (sessions_load(s->sessions, s->app) != 0) return UI_REDRAW;
    s->sessions_open = 1;
    return UI_RELAYOUT | UI_REDRAW;
}

/* Keys while the sessions overlay is open; its action runs when it closes. */
static int screen_sessions_key(Screen *s, const UiKey *k)
{
    if (k->is_key && k->ch == KEY_RESIZE) return UI_RELAYOUT | UI_REDRAW;
    if (!k->is_key && k->ch == UI_CTRL('c')) return s->sessions_open = 0, UI_RELAYOUT | UI_REDRAW;
    int f = s->sessions->ops->on_key(s->sessions, k);
    if (!(f & UI_QUIT)) return f;
    s->sessions_open = 0;
    const char *action = sessions_action(s->sessions), *tab = strchr(action, '\t');
    if (action[0] == '\0') return UI_RELAYOUT | UI_REDRAW;
    char *line = tab ? strndup(action, (size_t)(tab - action)) : strdup(action);
    if (line == NULL) return UI_RELAYOUT | UI_REDRAW;
    if (tab) input_replace(s->input, tab + 1);
    return screen_run_line(s, line) | UI_RELAYOUT | UI_REDRAW;
}

/* F2: the knowledge bases (not while a job runs). */
static int screen_open_kbs(Screen *s)
{
    if (s->busy) {
        input_set_hint(s->input, " F2: the knowledge bases show when the answer is done ");
        s->hint_until = now_seconds() + 3;
        return UI_REDRAW;
    }
    if (kbview_load(s->kbs, s->app) != 0) return UI_REDRAW;
    kbview_set_sync(s->kbs, &s->sync);
    s->kbs_open = 1;
    return UI_RELAYOUT | UI_REDRAW;
}

/* Keys while the knowledge-base overlay is open; its command runs when it closes. */
static int screen_kbs_key(Screen *s, const UiKey *k)
{
    if (k->is_key && k->ch == KEY_RESIZE) return UI_RELAYOUT | UI_REDRAW;
    if (!k->is_key && k->ch == UI_CTRL('c')) return s->kbs_open = 0, UI_RELAYOUT | UI_REDRAW;
    int f = s->kbs->ops->on_key(s->kbs, k);
    screen_snapshot(s); /* the key may have deleted the knowledge base in use (no job runs: F2 is open) */
    if (!(f & UI_QUIT)) return f | screen_poll_sync(s);
    s->kbs_open = 0;
    char *line = kbview_action(s->kbs)[0] ? strdup(kbview_action(s->kbs)) : NULL;
    return (line ? screen_run_line(s, line) : 0) | UI_RELAYOUT | UI_REDRAW;
}

/* Keys while the sources overlay is open. */
static int screen_sources_key(Screen *s, const UiKey *k)
{
    if (k->is_key && k->ch == KEY_RESIZE) return UI_RELAYOUT | UI_REDRAW;
    if (!k->is_key && k->ch == UI_CTRL('c')) return s->sources_open = 0, UI_RELAYOUT | UI_REDRAW;
    int f = s->sources->ops->on_key(s->sources, k);
    if (f & UI_QUIT) return s->sources_open = 0, UI_RELAYOUT | UI_REDRAW;
    return f;
}

/* Inside a bracketed paste: text goes in as typed, Enter as a new line. */
static int screen_paste_key(Screen *s, const UiKey *k)
{
    Widget *in = input_widget(s->input);
    UiKey c = *k;
    if (k->is_key && k->ch == UI_KEY_PASTE_END) {
        s->pasting = 0;
        return UI_REDRAW;
    }
    if (!k->is_key && (k->ch == '\r' || k->ch == '\n')) c.ch = UI_CTRL('j');
    else if (!k->is_key && k->ch == '\t') c.ch = ' ';
    c.alt = 0;
    return in->ops->on_key(in, &c) & ~(UI_SUBMIT | UI_IGNORED);
}

/* Hands a key to the widgets: the chat pane first (scrolling), then the editor. */
static int screen_dispatch(Screen *s, const UiKey *k)
{
    int is_ctrl_c = !k->is_key && !k->alt && k->ch == UI_CTRL('c');
    if (k->is_key && k->ch == KEY_RESIZE) return UI_RELAYOUT | UI_REDRAW;
    if (k->is_key && k->ch == KEY_MOUSE) return screen_mouse(s);
    if (s->pasting || (k->is_key && k->ch == UI_KEY_PASTE_BEGIN)) {
        if (!s->pasting) return s->pasting = 1, 0;
        int f = screen_paste_key(s, k);
        return (f & UI_RELAYOUT) && input_rows(s->input, COLS, LINES / 3) + 1 == input_widget(s->input)->h ? f & ~UI_RELAYOUT : f;
    }
    if (s->help_open) return screen_help_key(s, k);
    if (s->sources_open) return screen_sources_key(s, k);
    if (s->sessions_open) return screen_sessions_key(s, k);
    if (s->kbs_open) return screen_kbs_key(s, k);
    if (k->is_key && k->ch == KEY_F(2)) return screen_open_kbs(s);
    if (k->is_key && k->ch == KEY_F(4)) return screen_open_sessions(s);
    if (k->is_key && k->ch == KEY_F(3)) return screen_open_sources(s);
    if (k->is_key && k->ch == KEY_F(1)) return s->help_open = 1, UI_RELAYOUT | UI_REDRAW;
    if (is_ctrl_c) return screen_ctrl_c(s);
    s->ctrl_c_armed = 0;
    if (!k->is_key && k->ch == 27 && !k->alt) {
        if (s->busy) atomic_store(&s->wk.cancel, 1);
        return UI_REDRAW;
    }
    if (!k->is_key && k->ch == UI_CTRL('l')) return clearok(curscr, TRUE), UI_RELAYOUT | UI_REDRAW;
    if (!k->is_key && k->ch == UI_CTRL('d') && input_is_empty(s->input) && !s->busy) return UI_QUIT;
    if (s->too_small) return UI_REDRAW;
    if (!k->is_key && !k->alt && k->ch == '\t') return screen_complete(s);
    s->hint_until = 0; /* a typed key ends a passing hint (Tab's list, busy) */
    Widget *chat = chatpane_widget(s->chat), *in = input_widget(s->input);
    int f = chat->ops->on_key(chat, k);
    if (!(f & UI_IGNORED)) return f;
    f = in->ops->on_key(in, k);
    if ((f & UI_SUBMIT) && s->busy) {
        input_set_hint(s->input, " Busy: Enter sends when the answer is done (Esc stops it) ");
        s->hint_until = now_seconds() + 3;
        return UI_REDRAW;
    }
    if (f & UI_SUBMIT) return screen_submit(s);
    if (f & UI_IGNORED) return 0;
    if ((f & UI_RELAYOUT) && input_rows(s->input, COLS, LINES / 3) + 1 == in->h) f &= ~UI_RELAYOUT;
    return f | UI_REDRAW;
}

/* --- layout and drawing --- */

/* Places the widgets for the terminal's current size. */
static void screen_layout(Screen *s)
{
    int rows = LINES, cols = COLS;
    Widget *chat = chatpane_widget(s->chat), *in = input_widget(s->input), *st = status_widget(s->status);
    s->too_small = cols < UI_MIN_COLS || rows < UI_MIN_ROWS;
    werase(stdscr);
    wnoutrefresh(stdscr);
    if (s->too_small) {
        widget_place(chat, 0, 0, 0, 0), widget_place(in, 0, 0, 0, 0), widget_place(st, 0, 0, 0, 0);
        widget_place(s->help, 0, 0, 0, 0), widget_place(s->sources, 0, 0, 0, 0), widget_place(s->sessions, 0, 0, 0, 0);
        widget_place(s->kbs, 0, 0, 0, 0);
        return;
    }
    int ih = input_rows(s->input, cols, rows / 3) + 1;
    widget_place(st, rows - 1, 0, 1, cols);
    widget_place(in, rows - 1 - ih, 0, ih, cols);
    widget_place(chat, 0, 0, rows - 1 - ih, cols);
    if (s->help_open) s->help->ops->resize(s->help, 0, 0, rows - 1 - ih, cols);
    else widget_place(s->help, 0, 0, 0, 0);
    if (s->sources_open) s->sources->ops->resize(s->sources, 0, 0, rows - 1 - ih, cols);
    else widget_place(s->sources, 0, 0, 0, 0);
    if (s->sessions_open) s->sessions->ops->resize(s->sessions, 0, 0, rows - 1 - ih, cols);
    else widget_place(s->sessions, 0, 0, 0, 0);
    if (s->kbs_open) s->kbs->ops->resize(s->kbs, 0, 0, rows - 1 - ih, cols);
    else widget_place(s->kbs, 0, 0, 0, 0);
}

/* Below the minimum size: one centred message, cut to the width. */
static void screen_draw_too_small(void)
{
    char line1[80], line2[80];
    snprintf(line1, sizeof line1, "Terminal too small: %dx%d", COLS, LINES);
    snprintf(line2, sizeof line2, "kbchat needs %dx%d", UI_MIN_COLS, UI_MIN_ROWS);
    const char *lines[3] = {line1, line2, "Ctrl-C twice: quit"};
    werase(stdscr);
    for (int i = 0; i < 3; i++) {
        int n = (int)strlen(lines[i]), y = LINES / 2 - 1 + i, x = (COLS - n) / 2;
        if (y < 0 || y >= LINES) continue;
        mvwaddnstr(stdscr, y, x < 0 ? 0 : x, lines[i], COLS);
    }
    wnoutrefresh(stdscr);
}

static void screen_draw(Screen *s)
{
    if (s->too_small) {
        screen_draw_too_small();
    } else {
        screen_update_status(s);
        Widget *ws[3] = {chatpane_widget(s->chat), status_widget(s->status), input_widget(s->input)};
        for (int i = 0; i < 3; i++) ws[i]->ops->draw(ws[i]); /* the editor last: it places the cursor */
        if (s->sources_open) s->sources->ops->draw(s->sources);
        if (s->sessions_open) s->sessions->ops->draw(s->sessions);
        if (s->kbs_open) s->kbs->ops->draw(s->kbs);
        if (s->help_open) s->help->ops->draw(s->help);
        curs_set(s->busy || s->help_open || s->sources_open || s->sessions_open || s->kbs_open ? 0 : 1);
    }
    doupdate();
}

/* --- the loop --- */

/* The first screen: how to get a model when none is configured. */
static void screen_welcome(Screen *s, const char *model_path, const char *cfg_file)
{
    char text[1024];
    chatpane_add(s->chat, UI_C_TITLE, "Welcome to kbchat " KB_VERSION);
    if (model_path && model_path[0]) {
        snprintf(text, sizeof text, "Loading %s…", model_path);
        chatpane_add(s->chat, UI_C_NOTE, text);
        return;
    }
    snprintf(text, sizeof text,
             "No model is configured yet. To chat, get a GGUF chat model, for example\n"
             "  Qwen2.5-1.5B-Instruct Q4_K_M, ChatGLM3-6B Q4_0 or Llama-2-7B-chat Q4_0,\n"
             "then set model.path in %s, or start with: kbchat --model FILE\n"
             "You can also load one here: /model FILE\n"
             "Knowledge bases: /kb lists them, /kb NAME searches one. /help lists every command.",
             cfg_file ? cfg_file : "~/.config/kbchat/config.yaml");
    chatpane_add(s->chat, UI_C_NOTE, text);
}

static void screen_loop(Screen *s)
{
    int flags = UI_RELAYOUT | UI_REDRAW;
    while (!(flags & UI_QUIT) && !term_quit_requested()) {
        UiKey k;
        if (flags & UI_RELAYOUT) screen_layout(s);
        if (flags & (UI_REDRAW | UI_RELAYOUT)) screen_draw(s);
        wtimeout(stdscr, s->busy ? 40 : 250);
        int r = screen_read_key(&k);
        flags = screen_drain(s);
        flags |= screen_poll_sync(s);
        if (r == OK) flags |= screen_dispatch(s, &k);
    }
    if (s->busy) atomic_store(&s->wk.cancel, 1);
    if (s->sync.running && !s->too_small) { /* it stops within 100 ms, inside a PDF too */
        status_set(s->status, s->left, "stopping the sync…");
        Widget *st = status_widget(s->status);
        st->ops->draw(st);
        doupdate();
    }
    chat_sync_stop(s->app);
    worker_join(&s->wk);
}

int ui_run(ChatApp *app, const char *model_path, const char *kb, const char *cfg_file, const char *theme, char *err,
           size_t errlen)
{
    Screen s;
    memset(&s, 0, sizeof s);
    s.app = app;
    s.wk.app = app;
    const char *delay = getenv("KBCHAT_TUI_PIECE_DELAY_MS");
    s.wk.delay_ms = delay ? atol(delay) : 0;
    pthread_mutex_init(&s.wk.mu, NULL);
    chat_set_cancel(app, &s.wk.cancel); /* Esc stops the prompt's evaluation too */
    s.chat = chatpane_new(), s.input = input_new(), s.status = status_new(), s.help = help_new();
    s.sources = sources_new(), s.sessions = sessions_new(), s.kbs = kbview_new();
    int rc = s.chat && s.input && s.status && s.help && s.sources && s.sessions && s.kbs ? KB_OK : KB_ENOMEM;
    if (rc != KB_OK) snprintf(err, errlen, "out of memory");
    if (rc == KB_OK && term_open(theme, err, errlen) != 0) rc = KB_EIO;
    if (rc == KB_OK) {
        mousemask(BUTTON4_PRESSED | BUTTON5_PRESSED, NULL);
        screen_welcome(&s, model_path, cfg_file);
        screen_snapshot(&s);
        char *path = model_path && model_path[0] ? strdup(model_path) : NULL, *kb_copy = kb ? strdup(kb) : NULL;
        if (worker_start(&s.wk, NULL, path, kb_copy) == 0) s.busy = 1;
        screen_loop(&s);
        widget_free_window(chatpane_widget(s.chat)); /* before delscreen frees them */
        widget_free_window(input_widget(s.input));
        widget_free_window(status_widget(s.status));
        widget_free_window(s.help);
        widget_free_window(s.sources);
        widget_free_window(s.sessions);
        widget_free_window(s.kbs);
        term_close();
    }
    chatpane_free(s.chat), input_free(s.input), status_free(s.status), help_free(s.help), sources_free(s.sources), sessions_free(s.sessions), kbview_free(s.kbs);
    free(s.wk.queue);
    chat_set_cancel(app, NULL); /* the flag lives in this frame */
    pthread_mutex_destroy(&s.wk.mu);
    return rc;
}
