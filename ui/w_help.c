/*
** w_help.c: the help overlay (F1): every key, in a box over the chat.
** Any key closes it (screen.c routes keys here while it is open).
*/
#include <stdlib.h>
#include <string.h>

#include "ui/widget.h"

static const char *const help_lines[][2] = {
    {"Enter", "send the question or /command"},
    {"Alt-Enter, Ctrl-J", "new line"},
    {"Left/Right, Ctrl-B/F", "move by a character"},
    {"Ctrl-A / Ctrl-E", "start / end of the line"},
    {"Ctrl-K / Ctrl-U", "delete to end / start of line"},
    {"Ctrl-W", "delete the word before the cursor"},
    {"Up / Down", "lines, then the history of sent lines"},
    {"Tab", "complete a /command"},
    {"PgUp / PgDn, wheel", "scroll the conversation"},
    {"Home / End", "top / latest of the conversation"},
    {"Esc", "stop the answer"},
    {"Ctrl-C", "stop; on an idle prompt, twice: quit"},
    {"Ctrl-D", "quit (empty editor)"},
    {"Ctrl-L", "repaint"},
    {"F2", "knowledge bases; Enter searches one"},
    {"", "n new, a add folder, s sync, f files"},
    {"", "D delete; in files: d removes one"},
    {"F3", "sources of the last answer; Enter views one"},
    {"F4", "conversations: open, rename, export, delete"},
    {"F1", "this help; /help lists the commands"},
};
#define HELP_N (int)(sizeof help_lines / sizeof help_lines[0])

typedef struct HelpBox {
    Widget base;
} HelpBox;

static void help_draw(Widget *w)
{
    if (w->win == NULL) return;
    werase(w->win);
    wattrset(w->win, term_attr(UI_C_BORDER));
    box(w->win, 0, 0);
    wattrset(w->win, term_attr(UI_C_TITLE));
    mvwaddstr(w->win, 0, 2, " Keys (any key closes) ");
    for (int i = 0; i < HELP_N && i + 1 < w->h - 1; i++) {
        wattrset(w->win, term_attr(UI_C_USER));
        mvwaddnstr(w->win, i + 1, 2, help_lines[i][0], w->w - 4);
        wattrset(w->win, A_NORMAL);
        if (w->w > 26) mvwaddnstr(w->win, i + 1, 24, help_lines[i][1], w->w - 26);
    }
    wattrset(w->win, A_NORMAL);
    wnoutrefresh(w->win);
    w->needs_redraw = 0;
}

/* Any key closes the overlay (UI_QUIT to screen.c) but the mouse: a wheel
** step is not a key the user pressed to leave. */
static int help_on_key(Widget *w, const UiKey *k)
{
    (void)w;
    return k->is_key && k->ch == KEY_MOUSE ? 0 : UI_QUIT;
}

/* Centres the box in the h x width area at (y, x). */
static void help_resize(Widget *w, int y, int x, int h, int width)
{
    widget_place_centred(w, y, x, h, width, HELP_N + 2 < h ? HELP_N + 2 : h, width > 64 ? 64 : width);
}

static const WidgetOps help_ops = {help_draw, help_on_key, help_resize};

Widget *help_new(void)
{
    HelpBox *b = calloc(1, sizeof *b);
    if (b) b->base.ops = &help_ops;
    return b ? &b->base : NULL;
}

void help_free(Widget *w)
{
    if (w == NULL) return;
    widget_free_window(w);
    free(w);
}
