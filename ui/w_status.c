/*
** w_status.c: the status bar, one line at the bottom: what is loaded on
** the left (model, template, knowledge base, context use), what is
** happening on the right (tokens/s while an answer streams, key hints).
** screen.c composes the texts; the bar only paints them, cut to the width
** by display columns.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ui/widget.h"

struct StatusBar {
    Widget base; /* first */
    char left[512], right[256];
};

/* Display width of UTF-8 s as ui_put_text paints it. */
static int text_width(const char *s)
{
    size_t n;
    int w = 0;
    wchar_t *ws = ui_decode_as(s, strlen(s), TERM_LINE, &n);
    for (size_t i = 0; ws && i < n; i++) w += ui_wcwidth(ws[i]);
    free(ws);
    return w;
}

static void status_draw(Widget *w)
{
    StatusBar *s = (StatusBar *)w;
    if (w->win == NULL) return;
    wbkgdset(w->win, ' ' | term_attr(UI_C_STATUS));
    werase(w->win);
    wattrset(w->win, term_attr(UI_C_STATUS));
    int rw = text_width(s->right), room = w->w - 1;
    if (rw > room - 12) rw = room - 12; /* the right part (what is happening) wins */
    ui_put_text(w->win, 0, 1, s->left, room - rw - 2);
    ui_put_text(w->win, 0, w->w - rw - 1, s->right, rw);
    wattrset(w->win, A_NORMAL);
    wnoutrefresh(w->win);
    w->needs_redraw = 0;
}

static int status_on_key(Widget *w, const UiKey *k)
{
    (void)w, (void)k;
    return UI_IGNORED;
}

static const WidgetOps status_ops = {status_draw, status_on_key, widget_place};

StatusBar *status_new(void)
{
    StatusBar *s = calloc(1, sizeof *s);
    if (s) s->base.ops = &status_ops;
    return s;
}

void status_free(StatusBar *s)
{
    if (s == NULL) return;
    widget_free_window(&s->base);
    free(s);
}

Widget *status_widget(StatusBar *s) { return &s->base; }

/* Marks the bar for painting only when the text changed: the loop sets it
** at every tick. */
void status_set(StatusBar *s, const char *left, const char *right)
{
    char l[sizeof s->left], r[sizeof s->right];
    snprintf(l, sizeof l, "%s", left);
    snprintf(r, sizeof r, "%s", right);
    if (strcmp(l, s->left) == 0 && strcmp(r, s->right) == 0) return;
    memcpy(s->left, l, sizeof l);
    memcpy(s->right, r, sizeof r);
    s->base.needs_redraw = 1;
}
