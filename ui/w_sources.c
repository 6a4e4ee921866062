/*
** w_sources.c: the sources overlay (F3): the passages behind the last
** answer, numbered as cited, with file, page, section, score and which
** retriever found them (keyword rank, vector rank); Enter opens a viewer of
** the whole passage with the searched terms highlighted.
**
** The overlay copies what it shows when it opens (sources_load), so it
** never reads the conversation while a worker thread may change it.
** Highlighting: the query's words of two or more letters (ASCII, matched
** case-insensitively) and each pair of adjacent CJK characters in it (the
** way the keyword search matches Chinese) are marked in the passage.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "app/app.h"
#include "ui/widget.h"

typedef struct SourceItem {
    char *label;      /* "[1] file.pdf, page 3 · score 0.031 · keyword #1, vector #2" */
    wchar_t *text;    /* the passage */
    size_t len;
    unsigned char *hl;/* 1 per highlighted character of text */
} SourceItem;

typedef struct SourcesView {
    Widget base;
    SourceItem *items;
    int n, sel;
    char title[512];
    int viewing;      /* 1: the viewer of items[sel] */
    long top;         /* the viewer's first line */
    size_t *lines;    /* the viewer's layout: offset, length pairs */
    size_t n_lines, cap_lines;
} SourcesView;

/* --- loading --- */

static void sources_clear(SourcesView *v)
{
    for (int i = 0; i < v->n; i++) free(v->items[i].label), free(v->items[i].text), free(v->items[i].hl);
    free(v->items);
    v->items = NULL;
    v->n = v->sel = v->viewing = 0;
    v->top = 0;
}

static int is_cjk(wchar_t c)
{
    return (c >= 0x3400 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x2FFFF);
}

/* Marks in text every occurrence of q[a..b) (case-insensitive). */
static void mark_term(SourceItem *it, const wchar_t *q, size_t a, size_t b)
{
    size_t n = b - a;
    for (size_t i = 0; n > 0 && i + n <= it->len; i++) {
        size_t k = 0;
        while (k < n && towlower((wint_t)it->text[i + k]) == towlower((wint_t)q[a + k])) k++;
        if (k == n) memset(it->hl + i, 1, n);
    }
}

/* Marks the query's terms in the passage. */
static void mark_query(SourceItem *it, const wchar_t *q, size_t qn)
{
    for (size_t i = 0; i < qn;) {
        size_t j = i;
        if (is_cjk(q[i])) {
            while (j < qn && is_cjk(q[j])) j++;
            for (size_t k = i; k + 1 < j; k++) mark_term(it, q, k, k + 2);
            if (j - i == 1) mark_term(it, q, i, j);
        } else if (iswalnum((wint_t)q[i])) {
            while (j < qn && iswalnum((wint_t)q[j]) && !is_cjk(q[j])) j++;
            if (j - i >= 2) mark_term(it, q, i, j);
        } else {
            j++;
        }
        i = j;
    }
}

/* Copies the sources of turn t (NULL: none). Returns 0 or -1 (ENOMEM). */
static int sources_fill(SourcesView *v, const RagTurn *t)
{
    size_t qn = 0;
    wchar_t *q = NULL;
    if (t == NULL || t->n_sources == 0) return 0;
    v->items = calloc((size_t)t->n_sources, sizeof *v->items);
    q = ui_decode(t->query ? t->query : "", t->query ? strlen(t->query) : 0, &qn);
    if (v->items == NULL || q == NULL) return free(q), -1;
    for (int i = 0; i < t->n_sources; i++, v->n++) {
        const RagHit *h = &t->sources[i];
        SourceItem *it = &v->items[i];
        char label[1024], page[32] = "", found[64] = "";
        if (h->page > 0) snprintf(page, sizeof page, ", page %d", h->page);
        if (h->bm25_rank && h->vector_rank) snprintf(found, sizeof found, "keyword #%d, vector #%d", h->bm25_rank, h->vector_rank);
        else if (h->vector_rank) snprintf(found, sizeof found, "vector #%d", h->vector_rank);
        else snprintf(found, sizeof found, "keyword #%d", h->bm25_rank ? h->bm25_rank : h->rank);
        snprintf(label, sizeof label, "[%d] %s%s%s%s · score %.4f · %s", i + 1, path_base_name(h->file), page,
                 h->section && h->section[0] ? ", " : "", h->section ? h->section : "", h->score, found);
        it->label = strdup(label);
        it->text = ui_decode(h->text, strlen(h->text), &it->len);
        it->hl = calloc(it->len + 1, 1);
        if (!it->label || !it->text || !it->hl) return free(q), v->n++, -1;
        mark_query(it, q, qn);
    }
    free(q);
    return 0;
}

int sources_load(Widget *w, const RagTurn *t)
{
    SourcesView *v = (SourcesView *)w;
    sources_clear(v);
    if (t == NULL) snprintf(v->title, sizeof v->title, " Sources: no answer yet ");
    else if (!t->query || !t->query[0]) snprintf(v->title, sizeof v->title, " Sources: the last answer used no knowledge base ");
    else if (t->n_sources == 0) snprintf(v->title, sizeof v->title, " Sources: nothing found for \"%s\" ", t->query);
    else snprintf(v->title, sizeof v->title, " Sources for \"%s\" (Enter: view, Esc: close) ", t->query);
    int rc = sources_fill(v, t);
    if (rc != 0) sources_clear(v);
    w->needs_redraw = 1;
    return rc;
}

/* --- drawing --- */

static int emit_pair(void *u, size_t off, size_t len)
{
    SourcesView *v = u;
    if (v->n_lines + 2 > v->cap_lines) {
        size_t cap = v->cap_lines ? v->cap_lines * 2 : 128;
        size_t *l = realloc(v->lines, cap * sizeof *l);
        if (l == NULL) return -1;
        v->lines = l, v->cap_lines = cap;
    }
    v->lines[v->n_lines++] = off;
    v->lines[v->n_lines++] = len;
    return 0;
}

/* Lays the viewed passage out at width. */
static void viewer_layout(SourcesView *v, int width)
{
    const SourceItem *it = &v->items[v->sel];
    v->n_lines = 0;
    for (size_t a = 0; a <= it->len;) {
        size_t b = a;
        while (b < it->len && it->text[b] != L'\n') b++;
        if (ui_wrap(it->text, a, b, width, emit_pair, v)) return;
        a = b + 1;
    }
}

static void viewer_draw(SourcesView *v, WINDOW *win, int h, int w)
{
    const SourceItem *it = &v->items[v->sel];
    viewer_layout(v, w - 4);
    long n = (long)v->n_lines / 2, rows = h - 3;
    if (v->top > n - rows) v->top = n - rows;
    if (v->top < 0) v->top = 0;
    wattrset(win, term_attr(UI_C_NOTE));
    ui_put_text(win, 1, 2, it->label, w - 4);
    for (long r = 0; r < rows && v->top + r < n; r++) {
        size_t off = v->lines[2 * (v->top + r)], len = v->lines[2 * (v->top + r) + 1];
        wmove(win, 2 + (int)r, 2);
        for (size_t i = 0; i < len; i++) {
            wattrset(win, it->hl[off + i] ? term_attr(UI_C_CITATION) | A_REVERSE : A_NORMAL);
            waddnwstr(win, it->text + off + i, 1);
        }
    }
    wattrset(win, A_NORMAL);
}

static void list_draw(SourcesView *v, WINDOW *win, int h, int w)
{
    for (int i = 0; i < v->n && i < h - 2; i++) {
        wattrset(win, i == v->sel ? term_attr(UI_C_STATUS) : A_NORMAL);
        ui_put_text(win, 1 + i, 2, v->items[i].label, w - 4);
    }
    wattrset(win, A_NORMAL);
}

static void sources_draw(Widget *w)
{
    SourcesView *v = (SourcesView *)w;
    if (w->win == NULL) return;
    werase(w->win);
    wattrset(w->win, term_attr(UI_C_BORDER));
    box(w->win, 0, 0);
    wattrset(w->win, term_attr(UI_C_TITLE));
    ui_put_text(w->win, 0, 2, v->viewing ? " Passage (Up/Down/PgUp/PgDn: scroll, Esc: back) " : v->title, w->w - 4);
    if (v->viewing) viewer_draw(v, w->win, w->h, w->w);
    else list_draw(v, w->win, w->h, w->w);
    wnoutrefresh(w->win);
    w->needs_redraw = 0;
}

/* --- keys: UI_QUIT closes the overlay --- */

static int sources_on_key(Widget *w, const UiKey *k)
{
    SourcesView *v = (SourcesView *)w;
    int esc = !k->is_key && k->ch == 27, enter = (!k->is_key && k->ch == '\r') || (k->is_key && k->ch == KEY_ENTER);
    long page = w->h > 4 ? w->h - 4 : 1;
    if (k->is_key && k->ch == KEY_F(3)) return UI_QUIT;
    if (v->viewing) {
        if (esc || (!k->is_key && k->ch == 'q')) v->viewing = 0;
        else if (k->is_key && k->ch == KEY_UP) v->top--;
        else if (k->is_key && k->ch == KEY_DOWN) v->top++;
        else if (k->is_key && k->ch == KEY_PPAGE) v->top -= page;
        else if (k->is_key && k->ch == KEY_NPAGE) v->top += page;
        else return 0;
        return UI_REDRAW;
    }
    if (esc || (!k->is_key && k->ch == 'q')) return UI_QUIT;
    if (k->is_key && k->ch == KEY_UP && v->sel > 0) v->sel--;
    else if (k->is_key && k->ch == KEY_DOWN && v->sel + 1 < v->n) v->sel++;
    else if (enter && v->n > 0) v->viewing = 1, v->top = 0;
    else return 0;
    return UI_REDRAW;
}

static const WidgetOps sources_ops = {sources_draw, sources_on_key, widget_place_box};

Widget *sources_new(void)
{
    SourcesView *v = calloc(1, sizeof *v);
    if (v) v->base.ops = &sources_ops;
    return v ? &v->base : NULL;
}

void sources_free(Widget *w)
{
    SourcesView *v = (SourcesView *)w;
    if (v == NULL) return;
    sources_clear(v);
    free(v->lines);
    widget_free_window(w);
    free(v);
}
