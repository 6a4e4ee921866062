/*
** w_kb.c: the knowledge-base overlay (F2): every knowledge base with its
** documents, failed documents, chunks, vectors and last sync; Enter
** searches the selected one (/kb NAME), o turns searching off (/kb off).
** Like the sessions overlay it only chooses: the action is a slash command
** screen.c runs on the worker. Creating, adding folders and syncing are
** `kbchat kb ...` commands for now (docs/ui.md).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "ui/widget.h"

typedef struct KbView {
    Widget base;
    char **labels, **names;
    int n, sel;
    char action[300];
    char msg[256];
} KbView;

static void kbview_clear(KbView *v)
{
    for (int i = 0; i < v->n; i++) free(v->labels[i]), free(v->names[i]);
    free(v->labels), free(v->names);
    v->labels = v->names = NULL;
    v->n = v->sel = 0;
    v->action[0] = v->msg[0] = '\0';
}

/* One line about knowledge base k; cur marks the one in use. */
static char *kb_label(const RagKbInfo *k, int cur)
{
    char when[32] = "never", label[600];
    time_t t = (time_t)k->last_sync;
    struct tm tm;
    if (k->last_sync && localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
    snprintf(label, sizeof label, "%c %-20s %5lld docs%s  %6lld chunks  %s  synced %s", cur ? '*' : ' ', k->name,
             (long long)k->n_documents, k->n_failed ? " (some failed)" : "", (long long)k->n_chunks,
             k->embed_id.file[0] ? "keyword+vector" : "keyword", when);
    return strdup(label);
}

int kbview_load(Widget *w, ChatApp *app)
{
    KbView *v = (KbView *)w;
    RagKbInfo *list = NULL;
    int n = 0;
    kbview_clear(v);
    w->needs_redraw = 1;
    if (chat_list_kbs(app, &list, &n) != KB_OK) {
        snprintf(v->msg, sizeof v->msg, "%s", chat_errmsg(app));
        return 0;
    }
    if (n == 0) snprintf(v->msg, sizeof v->msg, "No knowledge bases yet: kbchat kb create NAME --folder DIR, then kbchat kb sync NAME");
    v->labels = calloc((size_t)n + 1, sizeof *v->labels);
    v->names = calloc((size_t)n + 1, sizeof *v->names);
    int rc = v->labels && v->names ? 0 : -1;
    const char *cur = conv_kb(chat_conversation(app));
    for (int i = 0; rc == 0 && i < n; i++, v->n++) {
        v->labels[i] = kb_label(&list[i], strcmp(list[i].name, cur) == 0);
        v->names[i] = strdup(list[i].name);
        if (!v->labels[i] || !v->names[i]) rc = -1;
    }
    chat_free_kbs(list, n);
    return rc;
}

const char *kbview_action(Widget *w)
{
    return ((KbView *)w)->action;
}

static void kbview_draw(Widget *w)
{
    KbView *v = (KbView *)w;
    if (w->win == NULL) return;
    werase(w->win);
    wattrset(w->win, term_attr(UI_C_BORDER));
    box(w->win, 0, 0);
    wattrset(w->win, term_attr(UI_C_TITLE));
    mvwaddnstr(w->win, 0, 2, " Knowledge bases (Enter: search it, o: none, Esc: close) ", w->w - 4);
    wattrset(w->win, term_attr(UI_C_NOTE));
    if (v->msg[0]) mvwaddnstr(w->win, 1, 2, v->msg, w->w - 4);
    int rows = w->h - 2, top = v->sel >= rows ? v->sel - rows + 1 : 0;
    for (int i = top; i < v->n && i - top < rows; i++) {
        wattrset(w->win, i == v->sel ? term_attr(UI_C_STATUS) : A_NORMAL);
        mvwaddnstr(w->win, 1 + i - top, 2, v->labels[i], w->w - 4);
    }
    wattrset(w->win, A_NORMAL);
    wnoutrefresh(w->win);
    w->needs_redraw = 0;
}

/* Keys; UI_QUIT closes, kbview_action then holds the command to run ("" none). */
static int kbview_on_key(Widget *w, const UiKey *k)
{
    KbView *v = (KbView *)w;
    int c = k->is_key ? 0 : (int)k->ch;
    v->action[0] = '\0';
    if ((k->is_key && k->ch == KEY_F(2)) || c == 27 || c == 'q') return UI_QUIT;
    if (c == 'o') return snprintf(v->action, sizeof v->action, "/kb off"), UI_QUIT;
    if (k->is_key && k->ch == KEY_UP && v->sel > 0) v->sel--;
    else if (k->is_key && k->ch == KEY_DOWN && v->sel + 1 < v->n) v->sel++;
    else if ((c == '\r' || (k->is_key && k->ch == KEY_ENTER)) && v->n > 0)
        return snprintf(v->action, sizeof v->action, "/kb %s", v->names[v->sel]), UI_QUIT;
    else return 0;
    return UI_REDRAW;
}

static void kbview_resize(Widget *w, int y, int x, int h, int width)
{
    int bh = h > 4 ? h - 2 : h, bw = width > 8 ? width - 4 : width;
    widget_place(w, y + (h - bh) / 2, x + (width - bw) / 2, bh, bw);
}

static const WidgetOps kbview_ops = {kbview_draw, kbview_on_key, kbview_resize};

Widget *kbview_new(void)
{
    KbView *v = calloc(1, sizeof *v);
    if (v) v->base.ops = &kbview_ops;
    return v ? &v->base : NULL;
}

void kbview_free(Widget *w)
{
    if (w == NULL) return;
    kbview_clear((KbView *)w);
    widget_free_window(w);
    free(w);
}
