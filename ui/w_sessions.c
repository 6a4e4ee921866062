/*
** w_sessions.c: the sessions overlay (F4): the stored conversations, the
** most recent first. Enter opens one, r renames, e exports, d deletes
** (after a y/n confirmation). The overlay only chooses: its choice is a
** SessionsAction (what, and the session's number in the list
** chat_list_sessions just made in app/), which screen.c carries out.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "ui/widget.h"

typedef struct SessionsView {
    Widget base;
    char **labels;
    int n, sel;
    int confirm;       /* asking whether to delete sel */
    SessionsAction action; /* what the overlay asks screen.c to do (sessions_action) */
    char msg[256];     /* "" or why the list is empty */
} SessionsView;

static void sessions_clear(SessionsView *v)
{
    for (int i = 0; i < v->n; i++) free(v->labels[i]);
    free(v->labels);
    v->labels = NULL;
    v->n = v->sel = v->confirm = 0;
    v->action = (SessionsAction){SESSIONS_NONE, 0};
    v->msg[0] = '\0';
}

int sessions_load(Widget *w, ChatApp *app)
{
    SessionsView *v = (SessionsView *)w;
    const RagSession *list = NULL;
    int n = 0;
    sessions_clear(v);
    if (chat_list_sessions(app, &list, &n) != KB_OK) {
        snprintf(v->msg, sizeof v->msg, "%s", chat_errmsg(app));
        return 0;
    }
    if (n == 0) snprintf(v->msg, sizeof v->msg, "No saved conversations yet.");
    v->labels = calloc((size_t)n + 1, sizeof *v->labels);
    if (v->labels == NULL) return -1;
    for (int i = 0; i < n; i++, v->n++) {
        char when[32] = "", label[600];
        time_t t = (time_t)list[i].updated;
        struct tm tm;
        if (localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        snprintf(label, sizeof label, "%c %2d. %s  (%d turn%s, %s%s%s)", list[i].id == conv_session(chat_conversation(app)) ? '*' : ' ',
                 i + 1, list[i].title[0] ? list[i].title : "(untitled)", list[i].n_turns, list[i].n_turns == 1 ? "" : "s",
                 when, list[i].kb[0] ? ", kb " : "", list[i].kb);
        v->labels[i] = strdup(label);
        if (v->labels[i] == NULL) return -1;
    }
    w->needs_redraw = 1;
    return 0;
}

SessionsAction sessions_action(Widget *w)
{
    return ((SessionsView *)w)->action;
}

static void sessions_draw(Widget *w)
{
    SessionsView *v = (SessionsView *)w;
    if (w->win == NULL) return;
    werase(w->win);
    wattrset(w->win, term_attr(UI_C_BORDER));
    box(w->win, 0, 0);
    wattrset(w->win, term_attr(UI_C_TITLE));
    mvwaddnstr(w->win, 0, 2, " Conversations (Enter: open, r: rename, e: export, d: delete, Esc: close) ", w->w - 4);
    wattrset(w->win, term_attr(UI_C_NOTE));
    if (v->msg[0]) ui_put_text(w->win, 1, 2, v->msg, w->w - 4);
    int rows = w->h - 3, top = v->sel >= rows ? v->sel - rows + 1 : 0;
    for (int i = top; i < v->n && i - top < rows; i++) {
        wattrset(w->win, i == v->sel ? term_attr(UI_C_STATUS) : A_NORMAL);
        ui_put_text(w->win, 1 + i - top, 2, v->labels[i], w->w - 4);
    }
    if (v->confirm) {
        wattrset(w->win, term_attr(UI_C_ERROR));
        mvwaddnstr(w->win, w->h - 2, 2, "Delete this conversation? y/n", w->w - 4);
    }
    wattrset(w->win, A_NORMAL);
    wnoutrefresh(w->win);
    w->needs_redraw = 0;
}

/* Closes the overlay (UI_QUIT) choosing kind for the selected session. */
static int sessions_choose(SessionsView *v, SessionsActionKind kind)
{
    v->action = (SessionsAction){kind, v->sel + 1};
    return UI_QUIT;
}

/* Keys; UI_QUIT closes the overlay, with sessions_action saying what to do. */
static int sessions_on_key(Widget *w, const UiKey *k)
{
    SessionsView *v = (SessionsView *)w;
    int c = k->is_key ? 0 : (int)k->ch;
    v->action = (SessionsAction){SESSIONS_NONE, 0};
    if (v->confirm) {
        v->confirm = 0;
        if (c == 'y' || c == 'Y') return sessions_choose(v, SESSIONS_DELETE);
        return UI_REDRAW;
    }
    if ((k->is_key && k->ch == KEY_F(4)) || c == 27 || c == 'q') return UI_QUIT;
    if (k->is_key && k->ch == KEY_UP && v->sel > 0) v->sel--;
    else if (k->is_key && k->ch == KEY_DOWN && v->sel + 1 < v->n) v->sel++;
    else if (v->n == 0) return 0;
    else if (c == '\r' || (k->is_key && k->ch == KEY_ENTER)) return sessions_choose(v, SESSIONS_OPEN);
    else if (c == 'd' || (k->is_key && k->ch == KEY_DC)) v->confirm = 1;
    else if (c == 'r') return sessions_choose(v, SESSIONS_RENAME);
    else if (c == 'e') return sessions_choose(v, SESSIONS_EXPORT);
    else return 0;
    return UI_REDRAW;
}

static const WidgetOps sessions_ops = {sessions_draw, sessions_on_key, widget_place_box};

Widget *sessions_new(void)
{
    SessionsView *v = calloc(1, sizeof *v);
    if (v) v->base.ops = &sessions_ops;
    return v ? &v->base : NULL;
}

void sessions_free(Widget *w)
{
    if (w == NULL) return;
    sessions_clear((SessionsView *)w);
    widget_free_window(w);
    free(w);
}
