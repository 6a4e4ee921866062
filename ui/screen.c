/*
** screen.c: the loop of the full-screen chat, its state machine, and the
** overlays over the chat.
**
** The loop (style habit 14; htop's ScreenManager_run) is the only place
** that reads keys and the only caller of doupdate():
**
**   relayout when asked (KEY_RESIZE, the editor grew, an overlay opened)
**   -> paint the widgets whose needs_redraw is set (all after a relayout)
**   -> wget_wch with a timeout (short while a job runs)
**   -> show the worker's events -> dispatch the key
**
** Every line the user sends (a question or a /command) runs as a job on the
** worker thread (worker.c) through chat_line, so the UI never waits for
** retrieval or generation. The job's results arrive as events (app/chat.h):
** answer pieces are appended to the answer, notes and errors become
** messages in their colours, in the order they happened; a replaced
** conversation (/new, /open, deleting the open one) is shown again from the
** ChatApp once the job has ended (only then may the UI read the ChatApp).
**
** The state (UiState, screen.h). Every job state (STARTING, WORKING,
** THINKING, ANSWERING, STOPPING) ends in IDLE when its job ends, and all
** but STOPPING go to STOPPING on Esc or Ctrl-C:
**
**      ui_run
**        |
**        v
**    STARTING --------------------------------------------+
**        |                                                |
**        v                                                v
**      IDLE <-----> ARMED                              STOPPING
**        |            |                                   |
**        +-----+------+                                   v
**              |                                        IDLE
**              +--> THINKING ----> ANSWERING --------------+ (Esc)
**              |                      ^                   |
**              +--> WORKING ----------+ (/retry)          |
**                                                         v
**                                                      STOPPING
**
** and the function behind each move:
**
**   STARTING -> IDLE                 screen_finish_job (model loaded, session resumed)
**   IDLE -> ARMED                    screen_ctrl_c (Ctrl-C on the idle prompt)
**   ARMED -> IDLE                    screen_dispatch (any other key; a second Ctrl-C quits)
**   IDLE, ARMED -> THINKING          screen_run_line (a question)
**   IDLE, ARMED -> WORKING           screen_run_line (a /command; from ARMED: an overlay's choice)
**   THINKING, WORKING -> ANSWERING   screen_piece (the first piece; WORKING: /retry)
**   STARTING, WORKING, THINKING,
**     ANSWERING -> STOPPING          screen_stop (Esc, Ctrl-C)
**   WORKING, THINKING, ANSWERING,
**     STOPPING -> IDLE               screen_finish_job (the job has ended)
**
** Every move goes through screen_enter, which assert()s it is one of these
** (ui_state_can; tests/test_tui.c checks the table against this list). Besides
** the state, the screen has the overlay stack (below), the geometry
** (too_small) and the editor's input mode (pasting): independent of the
** jobs, so not states of this machine.
**
** Overlays (help F1, knowledge bases F2, sources F3, conversations F4) are
** one stack, htop's ScreenManager panels: each is a Widget (draw, on_key,
** resize) with an OverlayOps (open: load what it shows; closed: carry out
** the user's choice; after_key). Layout, keys and drawing iterate the
** stack: the top overlay takes the keys, all of them are painted over the
** chat, bottom first.
**
** Painting honours needs_redraw (widget.h): a widget marks itself when its
** content changes (a piece appended, a new status text, a key in the
** editor), and the loop paints only those, so a streamed piece repaints the
** chat pane and the status bar, not the editor; when something under an
** overlay is painted the overlay is painted again over it.
**
** A knowledge base syncing in the background (started from the F2 panel)
** is app's own thread (app/kb_sync.c): each tick the loop copies its
** progress into the status bar and the panel, and when it has ended puts
** its note into the chat. Quitting stops it between two documents.
**
** Test hooks: KBCHAT_TUI_PIECE_DELAY_MS=N (worker.c). KBCHAT_TEST_UI_CPU=FILE
** writes, when kbchat leaves, the CPU time the UI thread spent while jobs
** ran after the start (clock_gettime(CLOCK_THREAD_CPUTIME_ID)) and the
** answer pieces they streamed: "ui_cpu_ms 123.4 pieces 500" (docs/ui.md).
*/
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ui/screen.h"

/* --- the state machine --- */

/* The moves of the diagram in the header: bit t of ui_moves[f] is f -> t. */
#define MOVE(t) (1u << (t))
static const unsigned ui_moves[UI_N_STATES] = {
    [UI_STARTING] = MOVE(UI_IDLE) | MOVE(UI_STOPPING),
    [UI_IDLE] = MOVE(UI_ARMED) | MOVE(UI_WORKING) | MOVE(UI_THINKING),
    [UI_ARMED] = MOVE(UI_IDLE) | MOVE(UI_WORKING) | MOVE(UI_THINKING),
    [UI_WORKING] = MOVE(UI_IDLE) | MOVE(UI_ANSWERING) | MOVE(UI_STOPPING),
    [UI_THINKING] = MOVE(UI_IDLE) | MOVE(UI_ANSWERING) | MOVE(UI_STOPPING),
    [UI_ANSWERING] = MOVE(UI_IDLE) | MOVE(UI_STOPPING),
    [UI_STOPPING] = MOVE(UI_IDLE),
};

int ui_state_can(UiState from, UiState to)
{
    return from >= 0 && from < UI_N_STATES && to >= 0 && to < UI_N_STATES && (ui_moves[from] & MOVE(to)) != 0;
}

const char *ui_state_name(UiState st)
{
    static const char *const names[UI_N_STATES] = {"STARTING", "IDLE", "ARMED", "WORKING", "THINKING", "ANSWERING", "STOPPING"};
    return st >= 0 && st < UI_N_STATES ? names[st] : "?";
}

UiState ui_state_step(UiState from, UiState to)
{
    assert(ui_state_can(from, to));
    return to;
}

/* --- the screen --- */

typedef struct Screen Screen;

/* What makes a widget an overlay (see the header). */
typedef struct OverlayOps {
    int (*open)(Screen *s, Widget *w);      /* loads what it shows; 0, or -1: it stays closed */
    int (*closed)(Screen *s, Widget *w);    /* after its on_key said UI_QUIT: the user's choice; UI_* */
    int (*after_key)(Screen *s, Widget *w); /* after each key it took (NULL: none); UI_* */
} OverlayOps;

typedef struct Overlay {
    Widget *w;
    const OverlayOps *ops;
    int fkey;              /* the function key that opens it */
    const char *busy_hint; /* NULL: opens while a job runs; else the hint why it does not */
} Overlay;

enum { OV_HELP, OV_KBS, OV_SOURCES, OV_SESSIONS, OV_COUNT };

struct Screen {
    ChatApp *app;
    ChatPane *chat;
    InputBox *input;
    StatusBar *status;
    Overlay overlays[OV_COUNT]; /* every overlay, open or not */
    Overlay *stack[OV_COUNT];   /* the open ones, bottom first */
    int depth;
    Worker wk;
    UiState state;
    double hint_until;     /* the editor's hint says something (Tab's list, busy): keep it until then */
    int pasting;           /* between the bracketed paste markers */
    int too_small;
    double t_start;        /* of the job, for tokens/s */
    long n_pieces;         /* of the answer so far (copied from the worker under its lock) */
    char left[512];        /* the status bar's left part, refreshed when idle */
    ChatSyncState sync;    /* the background sync's progress, read each tick */
    const char *cpu_file;  /* KBCHAT_TEST_UI_CPU, or NULL */
    double cpu_mark;       /* the UI thread's CPU seconds when the job began */
    double cpu_total;      /* over the jobs since the start */
    long cpu_pieces;
};

/* Moves to state to (assert()s the move is in the diagram). */
static void screen_enter(Screen *s, UiState to)
{
    s->state = ui_state_step(s->state, to);
}

/* A job runs (its thread exists and has not been joined). */
static int screen_busy(const Screen *s)
{
    return s->state != UI_IDLE && s->state != UI_ARMED;
}

/* CPU seconds the calling thread has used. */
static double thread_cpu_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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

/* Overlay o is open. */
static int screen_is_open(const Screen *s, const Overlay *o)
{
    for (int i = 0; i < s->depth; i++)
        if (s->stack[i] == o) return 1;
    return 0;
}

/* Shows hint on the editor's rule for three seconds. */
static void screen_hint(Screen *s, const char *hint)
{
    input_set_hint(s->input, hint);
    s->hint_until = now_seconds() + 3;
}

/* Sets the status bar and the editor's hint for the current state (each
** marks itself for painting only when its text changed). */
static void screen_update_status(Screen *s)
{
    char right[128];
    double dt = now_seconds() - s->t_start;
    switch (s->state) {
    case UI_ANSWERING:
    case UI_THINKING:
        if (s->n_pieces > 0 && dt > 0) snprintf(right, sizeof right, "%.1f tok/s  Esc: stop", (double)s->n_pieces / dt);
        else snprintf(right, sizeof right, "thinking…  Esc: stop");
        break;
    case UI_STOPPING: snprintf(right, sizeof right, "stopping…"); break;
    case UI_STARTING:
    case UI_WORKING: snprintf(right, sizeof right, "working…"); break;
    default: snprintf(right, sizeof right, COLS >= 90 ? "F1 keys  /help  Ctrl-C×2: quit" : "F1 keys  Ctrl-C×2: quit");
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
        snprintf(both, sizeof both, "%s  %s", prog, screen_busy(s) ? right : "F1 keys");
        shown = both;
    }
    status_set(s->status, s->left, shown);
    if (now_seconds() < s->hint_until) return;
    input_set_hint(s->input, s->state == UI_ARMED ? " Press Ctrl-C again to quit " :
                             " Enter: send  Alt-Enter/Ctrl-J: new line ");
}

/* --- the job's events --- */

/* Adds text[0..len) (trimmed of surrounding newlines and spaces) as a
** message of role, after prefix. */
static void add_message(Screen *s, UiRole role, const char *prefix, const char *text, size_t len)
{
    while (len > 0 && (*text == '\n' || *text == ' ')) text++, len--;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ')) len--;
    if (len == 0) return;
    char *msg = malloc(strlen(prefix) + len + 1);
    if (msg == NULL) return;
    sprintf(msg, "%s%.*s", prefix, (int)len, text);
    chatpane_add(s->chat, role, msg);
    free(msg);
}

/* Shows the turns of the conversation (resumed at the start, or opened),
** then a note beginning with verb. */
static void screen_show_turns(Screen *s, const char *verb)
{
    Conversation *c = chat_conversation(s->app);
    char note[600];
    for (int i = 0; i < conv_n_turns(c); i++) {
        const RagTurn *t = conv_turn(c, i);
        add_message(s, UI_C_USER, "> ", t->question, strlen(t->question));
        chatpane_add(s->chat, UI_C_ANSWER, t->answer ? t->answer : "");
    }
    TermStrs ts = {0};
    snprintf(note, sizeof note, "%s \"%s\" (%d turn%s); /new starts a new conversation.", verb,
             term_line(&ts, conv_title(c)), conv_n_turns(c), conv_n_turns(c) == 1 ? "" : "s");
    term_strs_clear(&ts);
    chatpane_add(s->chat, UI_C_NOTE, note);
}

/* The conversation was replaced: the pane shows the new one (the start's
** resume keeps the welcome above it). */
static void screen_replaced(Screen *s)
{
    int resumed = s->wk.start; /* the start job, even when Esc made it STOPPING */
    if (!resumed) chatpane_clear(s->chat);
    if (conv_n_turns(chat_conversation(s->app)) > 0) screen_show_turns(s, resumed ? "Resumed" : "Opened");
}

/* A piece of the answer: the first one opens the answer's message. */
static void screen_piece(Screen *s, const char *text, size_t len)
{
    if (chatpane_last_role(s->chat) != UI_C_ANSWER) chatpane_add(s->chat, UI_C_ANSWER, "");
    chatpane_append(s->chat, text, len);
    if (s->state == UI_THINKING || s->state == UI_WORKING) screen_enter(s, UI_ANSWERING);
}

/* WorkerShowFn: shows one event of the job. A replaced conversation waits
** until the job has ended (returns 1 to hold it): only then may the UI
** read the ChatApp. So does everything the start says: "Ready" appears
** with the status bar filled and the editor taking Enter. */
static int screen_show(void *u, ChatEventKind kind, const char *text, size_t len, int done)
{
    Screen *s = u;
    if (!done && (s->wk.start || kind == CHAT_EV_CONVERSATION_REPLACED)) return 1;
    switch (kind) {
    case CHAT_EV_ANSWER_PIECE: screen_piece(s, text, len); break;
    case CHAT_EV_STOPPED:
        if (chatpane_last_role(s->chat) == UI_C_ANSWER) chatpane_append(s->chat, " [stopped]", 10);
        else chatpane_add(s->chat, UI_C_ANSWER, "[stopped]"); /* stopped before the answer began */
        break;
    case CHAT_EV_OUTPUT:
    case CHAT_EV_SOURCES: add_message(s, UI_C_NOTE, "", text, len); break;
    case CHAT_EV_NOTE: add_message(s, UI_C_NOTE, "kbchat: note: ", text, len); break;
    case CHAT_EV_ERROR: add_message(s, UI_C_ERROR, "kbchat: ", text, len); break;
    case CHAT_EV_CONVERSATION_REPLACED: screen_replaced(s); break;
    default: break; /* ANSWER_DONE, SESSION_CHANGED: the status is read again when the job ends */
    }
    return 0;
}

/* Ends the finished job: back to IDLE, the status read again. Returns
** UI_QUIT when the job was /quit. */
static int screen_finish_job(Screen *s)
{
    int quit = s->wk.result == CHAT_QUIT, start = s->state == UI_STARTING;
    worker_join(&s->wk);
    if (!start && s->cpu_file) s->cpu_total += thread_cpu_seconds() - s->cpu_mark, s->cpu_pieces += s->n_pieces;
    screen_enter(s, UI_IDLE);
    screen_snapshot(s);
    return quit ? UI_QUIT : 0;
}

/* Shows what the worker has queued; ends a finished job. */
static int screen_drain(Screen *s)
{
    if (!screen_busy(s)) return 0;
    return worker_take(&s->wk, screen_show, s, &s->n_pieces) ? screen_finish_job(s) : 0;
}

/* The background sync (app/kb_sync.c): reads its progress for the status
** bar and the F2 panel each tick; once it has finished and no job is
** writing into the chat pane (pieces go to its last message), puts its
** note in the chat and refreshes the panel. */
static int screen_poll_sync(Screen *s)
{
    char note[1600];
    int failed, kbs_open = screen_is_open(s, &s->overlays[OV_KBS]);
    Widget *kbs = s->overlays[OV_KBS].w;
    if (!screen_busy(s) && chat_sync_collect(s->app, note, sizeof note, &failed)) {
        chatpane_add(s->chat, failed ? UI_C_ERROR : UI_C_NOTE, note);
        memset(&s->sync, 0, sizeof s->sync);
        if (kbs_open) kbview_set_sync(kbs, &s->sync), kbview_refresh(kbs);
        return 0;
    }
    ChatSyncState st;
    chat_sync_state(s->app, &st);
    if (memcmp(&st, &s->sync, sizeof st) == 0) return 0;
    int more_files = st.files_done != s->sync.files_done;
    s->sync = st;
    if (kbs_open) kbview_set_sync(kbs, &s->sync);
    if (kbs_open && more_files) kbview_refresh(kbs); /* the counts as the sync commits (F2 open: no job runs) */
    return 0;
}

/* --- jobs --- */

/* Shows line (taken over), then hands it to the worker. */
static int screen_run_line(Screen *s, char *line)
{
    const char *t = line + strspn(line, " \t\n");
    int command = t[0] == '/' && t[1] != '/'; /* what the user typed, as chat_line reads it */
    add_message(s, UI_C_USER, "> ", line, strlen(line));
    s->t_start = now_seconds();
    if (s->cpu_file) s->cpu_mark = thread_cpu_seconds();
    if (worker_start(&s->wk, line, NULL, NULL) != 0) {
        chatpane_add(s->chat, UI_C_ERROR, "kbchat: cannot start a thread");
        return 0;
    }
    screen_enter(s, command ? UI_WORKING : UI_THINKING);
    chatpane_follow(s->chat);
    return UI_RELAYOUT;
}

/* Sends the editor's text. */
static int screen_submit(Screen *s)
{
    char *line = input_take(s->input);
    return line ? screen_run_line(s, line) : 0;
}

/* Asks the job to stop (Esc, Ctrl-C): the answer ends at the next piece
** or layer. */
static void screen_stop(Screen *s)
{
    atomic_store(&s->wk.cancel, 1);
    if (s->state != UI_STOPPING) screen_enter(s, UI_STOPPING);
}

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
    return 0;
}

/* Ctrl-C: stops a job; on an idle prompt clears it and arms, and a second
** one quits. */
static int screen_ctrl_c(Screen *s)
{
    if (screen_busy(s)) {
        screen_stop(s);
        return 0;
    }
    if (s->state == UI_ARMED) return UI_QUIT;
    input_clear(s->input);
    screen_enter(s, UI_ARMED);
    s->hint_until = 0;
    return UI_RELAYOUT;
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
    if (n > 1) screen_hint(s, list);
    return 0;
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

/* --- overlays --- */

/* Opens overlay o over the others (F1..F4). */
static int screen_open_overlay(Screen *s, Overlay *o)
{
    if (screen_is_open(s, o)) return 0;
    if (o->busy_hint && screen_busy(s)) { /* its content may change under the job */
        screen_hint(s, o->busy_hint);
        return 0;
    }
    if (o->ops->open && o->ops->open(s, o->w) != 0) return 0;
    assert(s->depth < OV_COUNT);
    s->stack[s->depth++] = o;
    return UI_RELAYOUT;
}

/* Closes the top overlay. */
static void screen_pop(Screen *s)
{
    assert(s->depth > 0);
    s->depth--;
}

/* Keys while an overlay is open go to the top one: Ctrl-C closes it; when
** its on_key says UI_QUIT it closes and its choice is carried out. */
static int screen_overlay_key(Screen *s, const UiKey *k)
{
    Overlay *o = s->stack[s->depth - 1];
    if (!k->is_key && !k->alt && k->ch == UI_CTRL('c')) return screen_pop(s), UI_RELAYOUT;
    int f = o->w->ops->on_key(o->w, k);
    if (f & UI_REDRAW) o->w->needs_redraw = 1;
    if (o->ops->after_key) f |= o->ops->after_key(s, o->w);
    if (!(f & UI_QUIT)) return f;
    screen_pop(s);
    return (o->ops->closed ? o->ops->closed(s, o->w) : 0) | UI_RELAYOUT;
}

/* F3: the sources of the last answer. */
static int sources_open(Screen *s, Widget *w)
{
    Conversation *c = chat_conversation(s->app);
    return sources_load(w, conv_turn(c, conv_n_turns(c) - 1));
}

/* F4: the stored conversations. */
static int sessions_open(Screen *s, Widget *w)
{
    return sessions_load(w, s->app);
}

/* Carries out the choice made in the conversations overlay: /open or
** /delete the session, or open it and leave /rename or /export in the
** editor for the user to finish. */
static int sessions_closed(Screen *s, Widget *w)
{
    SessionsAction a = sessions_action(w);
    char line[64];
    if (a.kind == SESSIONS_NONE) return 0;
    snprintf(line, sizeof line, "/%s %d", a.kind == SESSIONS_DELETE ? "delete" : "open", a.n);
    if (a.kind == SESSIONS_RENAME) input_replace(s->input, "/rename ");
    if (a.kind == SESSIONS_EXPORT) {
        char typed[64];
        snprintf(typed, sizeof typed, "/export conversation-%d.md", a.n);
        input_replace(s->input, typed);
    }
    char *copy = strdup(line);
    return copy ? screen_run_line(s, copy) : 0;
}

/* F2: the knowledge bases. */
static int kbs_open(Screen *s, Widget *w)
{
    if (kbview_load(w, s->app) != 0) return -1;
    kbview_set_sync(w, &s->sync);
    return 0;
}

/* After a key in the F2 panel: it may have deleted the knowledge base in
** use or started a sync (no job runs: F2 is open). */
static int kbs_after_key(Screen *s, Widget *w)
{
    (void)w;
    screen_snapshot(s);
    return screen_poll_sync(s);
}

/* Carries out the F2 panel's choice: /kb NAME or /kb off, run like a
** typed line (so the chat says what it searches now). */
static int kbs_closed(Screen *s, Widget *w)
{
    KbViewAction a = kbview_action(w);
    if (a.kind == KBVIEW_NONE) return 0;
    char line[sizeof a.name + 8];
    snprintf(line, sizeof line, "/kb %s", a.kind == KBVIEW_USE ? a.name : "off");
    char *copy = strdup(line);
    return copy ? screen_run_line(s, copy) : 0;
}

static const OverlayOps help_overlay = {NULL, NULL, NULL};
static const OverlayOps kbs_overlay = {kbs_open, kbs_closed, kbs_after_key};
static const OverlayOps sources_overlay = {sources_open, NULL, NULL};
static const OverlayOps sessions_overlay = {sessions_open, sessions_closed, NULL};

/* --- keys --- */

/* Hands a key to the screen: an overlay when one is open, else the chat
** pane first (scrolling), then the editor. */
static int screen_dispatch(Screen *s, const UiKey *k)
{
    int is_ctrl_c = !k->is_key && !k->alt && k->ch == UI_CTRL('c');
    if (k->is_key && k->ch == KEY_RESIZE) return UI_RELAYOUT;
    if (s->pasting || (k->is_key && k->ch == UI_KEY_PASTE_BEGIN)) {
        if (!s->pasting) return s->pasting = 1, 0;
        int f = screen_paste_key(s, k);
        return (f & UI_RELAYOUT) && input_rows(s->input, COLS, LINES / 3) + 1 == input_widget(s->input)->h ? f & ~UI_RELAYOUT : f;
    }
    if (s->depth > 0) return screen_overlay_key(s, k);
    if (k->is_key && k->ch == KEY_MOUSE) return screen_mouse(s);
    for (int i = 0; i < OV_COUNT; i++)
        if (k->is_key && k->ch == (wint_t)s->overlays[i].fkey) return screen_open_overlay(s, &s->overlays[i]);
    if (is_ctrl_c) return screen_ctrl_c(s);
    if (s->state == UI_ARMED) screen_enter(s, UI_IDLE);
    if (!k->is_key && k->ch == 27 && !k->alt) {
        if (screen_busy(s)) screen_stop(s);
        return 0;
    }
    if (!k->is_key && k->ch == UI_CTRL('l')) return clearok(curscr, TRUE), UI_RELAYOUT;
    if (!k->is_key && k->ch == UI_CTRL('d') && input_is_empty(s->input) && !screen_busy(s)) return UI_QUIT;
    if (s->too_small) return 0;
    if (!k->is_key && !k->alt && k->ch == '\t') return screen_complete(s);
    s->hint_until = 0; /* a typed key ends a passing hint (Tab's list, busy) */
    Widget *chat = chatpane_widget(s->chat), *in = input_widget(s->input);
    int f = chat->ops->on_key(chat, k);
    if (!(f & UI_IGNORED)) return f;
    f = in->ops->on_key(in, k);
    if ((f & UI_SUBMIT) && screen_busy(s)) {
        screen_hint(s, " Busy: Enter sends when the answer is done (Esc stops it) ");
        return 0;
    }
    if (f & UI_SUBMIT) return screen_submit(s);
    if (f & UI_IGNORED) return 0;
    if ((f & UI_RELAYOUT) && input_rows(s->input, COLS, LINES / 3) + 1 == in->h) f &= ~UI_RELAYOUT;
    return f;
}

/* --- layout and drawing --- */

/* Places the widgets for the terminal's current size (each is marked for
** painting); closed overlays lose their windows. */
static void screen_layout(Screen *s)
{
    int rows = LINES, cols = COLS;
    Widget *chat = chatpane_widget(s->chat), *in = input_widget(s->input), *st = status_widget(s->status);
    s->too_small = cols < UI_MIN_COLS || rows < UI_MIN_ROWS;
    werase(stdscr);
    wnoutrefresh(stdscr);
    for (int i = 0; i < OV_COUNT; i++) widget_place(s->overlays[i].w, 0, 0, 0, 0);
    if (s->too_small) {
        widget_place(chat, 0, 0, 0, 0), widget_place(in, 0, 0, 0, 0), widget_place(st, 0, 0, 0, 0);
        return;
    }
    int ih = input_rows(s->input, cols, rows / 3) + 1;
    widget_place(st, rows - 1, 0, 1, cols);
    widget_place(in, rows - 1 - ih, 0, ih, cols);
    widget_place(chat, 0, 0, rows - 1 - ih, cols);
    for (int i = 0; i < s->depth; i++) s->stack[i]->w->ops->resize(s->stack[i]->w, 0, 0, rows - 1 - ih, cols);
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

/* Paints w when it is marked; returns whether it did. */
static int paint(Widget *w)
{
    if (!w->needs_redraw || w->win == NULL) return 0;
    w->ops->draw(w);
    return 1;
}

/* Paints what changed (relayout: everything was placed anew), then one
** doupdate(). */
static void screen_draw(Screen *s, int relayout)
{
    if (s->too_small) {
        if (relayout) screen_draw_too_small(), doupdate();
        return;
    }
    screen_update_status(s);
    Widget *in = input_widget(s->input);
    int painted = paint(chatpane_widget(s->chat));
    painted |= paint(status_widget(s->status));
    painted |= paint(in);
    for (int i = 0; i < s->depth; i++) { /* over what was painted under it */
        if (painted) s->stack[i]->w->needs_redraw = 1;
        painted |= paint(s->stack[i]->w);
    }
    int cursor = !screen_busy(s) && s->depth == 0;
    curs_set(cursor);
    if (!painted) return;
    if (cursor && in->win) wnoutrefresh(in->win); /* the cursor is the editor's, whatever was painted last */
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
    int flags = UI_RELAYOUT;
    while (!(flags & UI_QUIT) && !term_quit_requested()) {
        UiKey k;
        if (flags & UI_RELAYOUT) screen_layout(s);
        screen_draw(s, flags & UI_RELAYOUT);
        wtimeout(stdscr, screen_busy(s) ? 40 : 250);
        int r = screen_read_key(&k);
        flags = screen_drain(s);
        flags |= screen_poll_sync(s);
        if (r == OK) flags |= screen_dispatch(s, &k);
    }
    if (screen_busy(s)) atomic_store(&s->wk.cancel, 1);
    if (s->sync.running && !s->too_small) { /* it stops within 100 ms, inside a PDF too */
        status_set(s->status, s->left, "stopping the sync…");
        paint(status_widget(s->status));
        doupdate();
    }
    chat_sync_stop(s->app);
    worker_join(&s->wk);
}

/* Writes the KBCHAT_TEST_UI_CPU figure (see the header). */
static void screen_write_cpu(const Screen *s)
{
    FILE *f = s->cpu_file ? fopen(s->cpu_file, "w") : NULL;
    if (f == NULL) return;
    fprintf(f, "ui_cpu_ms %.1f pieces %ld\n", s->cpu_total * 1000.0, s->cpu_pieces);
    fclose(f);
}

/* Makes the widgets and the overlay table. Returns KB_OK or KB_ENOMEM. */
static int screen_new(Screen *s)
{
    s->chat = chatpane_new(), s->input = input_new(), s->status = status_new();
    s->overlays[OV_HELP] = (Overlay){help_new(), &help_overlay, KEY_F(1), NULL};
    s->overlays[OV_KBS] = (Overlay){kbview_new(), &kbs_overlay, KEY_F(2), " F2: the knowledge bases show when the answer is done "};
    s->overlays[OV_SOURCES] = (Overlay){sources_new(), &sources_overlay, KEY_F(3), " F3: the sources show when the answer is done "};
    s->overlays[OV_SESSIONS] = (Overlay){sessions_new(), &sessions_overlay, KEY_F(4), " F4: the conversations show when the answer is done "};
    int ok = s->chat && s->input && s->status;
    for (int i = 0; i < OV_COUNT; i++) ok = ok && s->overlays[i].w;
    return ok ? KB_OK : KB_ENOMEM;
}

/* Frees the widgets' windows (before delscreen frees them with the screen). */
static void screen_free_windows(Screen *s)
{
    widget_free_window(chatpane_widget(s->chat));
    widget_free_window(input_widget(s->input));
    widget_free_window(status_widget(s->status));
    for (int i = 0; i < OV_COUNT; i++) widget_free_window(s->overlays[i].w);
}

/* Frees the widgets (any may be NULL). */
static void screen_free(Screen *s)
{
    chatpane_free(s->chat), input_free(s->input), status_free(s->status);
    help_free(s->overlays[OV_HELP].w), kbview_free(s->overlays[OV_KBS].w);
    sources_free(s->overlays[OV_SOURCES].w), sessions_free(s->overlays[OV_SESSIONS].w);
}

int ui_run(ChatApp *app, const char *model_path, const char *kb, const char *cfg_file, const char *theme, char *err,
           size_t errlen)
{
    Screen s;
    memset(&s, 0, sizeof s);
    s.app = app;
    s.wk.app = app;
    s.state = UI_STARTING;
    const char *delay = getenv("KBCHAT_TUI_PIECE_DELAY_MS");
    s.wk.delay_ms = delay ? atol(delay) : 0;
    s.cpu_file = getenv("KBCHAT_TEST_UI_CPU");
    pthread_mutex_init(&s.wk.mu, NULL);
    chat_set_cancel(app, &s.wk.cancel); /* Esc stops the prompt's evaluation too */
    int rc = screen_new(&s);
    if (rc != KB_OK) snprintf(err, errlen, "out of memory");
    if (rc == KB_OK && term_open(theme, err, errlen) != 0) rc = KB_EIO;
    if (rc == KB_OK) {
        mousemask(BUTTON4_PRESSED | BUTTON5_PRESSED, NULL);
        screen_welcome(&s, model_path, cfg_file);
        screen_snapshot(&s);
        char *path = model_path && model_path[0] ? strdup(model_path) : NULL, *kb_copy = kb ? strdup(kb) : NULL;
        if (worker_start(&s.wk, NULL, path, kb_copy) != 0) screen_enter(&s, UI_IDLE);
        screen_loop(&s);
        screen_free_windows(&s);
        term_close();
        screen_write_cpu(&s);
    }
    screen_free(&s);
    worker_free(&s.wk);
    chat_set_cancel(app, NULL); /* the flag lives in this frame */
    pthread_mutex_destroy(&s.wk.mu);
    return rc;
}
