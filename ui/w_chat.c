/*
** w_chat.c: the chat pane: the conversation as wrapped lines, scrollable.
**
** Messages are kept as wide strings (decoded once as they arrive), so
** wrapping is a walk adding wcwidth()s: a line breaks at its last space, or
** before or after a double-width (CJK) character, and never splits one: a
** two-column character that would end in the last column moves to the next
** line whole. Wrapping is redone at each draw for the current width, which
** keeps resize trivial; it is linear in the text and cheap next to the
** terminal output. The view either follows the end (new text scrolls in) or
** stays at a fixed top line after PgUp/Home until End or PgDn past the end.
*/
#include <stdlib.h>
#include <string.h>

#include "ui/widget.h"

typedef struct ChatMsg {
    UiRole role;
    wchar_t *text; /* owned */
    size_t len, cap;
} ChatMsg;

/* One screen line: text[off..off+len) of message msg; msg < 0 for the blank
** line between messages. */
typedef struct VLine {
    int msg;
    size_t off, len;
} VLine;

struct ChatPane {
    Widget base; /* first: a ChatPane is its Widget */
    ChatMsg *msgs;
    int n_msgs, cap_msgs;
    VLine *lines; /* the last layout */
    size_t n_lines, cap_lines;
    int follow;   /* 1: show the end */
    long top;     /* first line shown when not following */
};

/* --- text helpers --- */

int ui_wcwidth(wchar_t c)
{
    int w = wcwidth(c);
    return w < 0 ? 1 : w;
}

wchar_t *ui_decode(const char *s, size_t len, size_t *n)
{
    wchar_t *out = malloc((len + 1) * sizeof *out);
    mbstate_t st;
    size_t k = 0;
    *n = 0;
    if (out == NULL) return NULL;
    memset(&st, 0, sizeof st);
    for (size_t i = 0; i < len;) {
        wchar_t c;
        size_t r = mbrtowc(&c, s + i, len - i, &st);
        if (r == (size_t)-1 || r == (size_t)-2 || r == 0) {
            memset(&st, 0, sizeof st);
            c = r == 0 ? L' ' : 0xFFFD;
            r = 1;
        }
        if (c == L'\t') c = L' ';
        else if (c != L'\n' && (c < 0x20 || c == 0x7f)) c = L' ';
        else if (c != L'\n' && wcwidth(c) < 0) c = L'?';
        out[k++] = c;
        i += r;
    }
    out[k] = 0;
    *n = k;
    return out;
}

/* --- messages --- */

ChatPane *chatpane_new(void)
{
    static const WidgetOps ops;
    ChatPane *p = calloc(1, sizeof *p);
    (void)ops;
    if (p) p->follow = 1;
    return p;
}

void chatpane_clear(ChatPane *p)
{
    for (int i = 0; i < p->n_msgs; i++) free(p->msgs[i].text);
    p->n_msgs = 0;
    p->follow = 1;
    p->base.needs_redraw = 1;
}

void chatpane_free(ChatPane *p)
{
    if (p == NULL) return;
    chatpane_clear(p);
    free(p->msgs);
    free(p->lines);
    widget_free_window(&p->base);
    free(p);
}

/* Appends wide text to message m. Returns 0 or -1. */
static int msg_append(ChatMsg *m, const wchar_t *w, size_t n)
{
    if (m->len + n + 1 > m->cap) {
        size_t cap = (m->len + n + 1) * 2;
        wchar_t *t = realloc(m->text, cap * sizeof *t);
        if (t == NULL) return -1;
        m->text = t;
        m->cap = cap;
    }
    memcpy(m->text + m->len, w, n * sizeof *w);
    m->len += n;
    m->text[m->len] = 0;
    return 0;
}

int chatpane_append(ChatPane *p, const char *text, size_t len)
{
    size_t n;
    wchar_t *w = ui_decode(text, len, &n);
    int rc = w && p->n_msgs > 0 ? msg_append(&p->msgs[p->n_msgs - 1], w, n) : -1;
    free(w);
    p->base.needs_redraw = 1;
    return rc;
}

int chatpane_add(ChatPane *p, UiRole role, const char *text)
{
    if (p->n_msgs == p->cap_msgs) {
        int cap = p->cap_msgs ? p->cap_msgs * 2 : 16;
        ChatMsg *m = realloc(p->msgs, (size_t)cap * sizeof *m);
        if (m == NULL) return -1;
        p->msgs = m;
        p->cap_msgs = cap;
    }
    ChatMsg *m = &p->msgs[p->n_msgs++];
    memset(m, 0, sizeof *m);
    m->role = role;
    return chatpane_append(p, text, strlen(text));
}

/* --- layout --- */

static int push_line(ChatPane *p, int msg, size_t off, size_t len)
{
    if (p->n_lines == p->cap_lines) {
        size_t cap = p->cap_lines ? p->cap_lines * 2 : 256;
        VLine *l = realloc(p->lines, cap * sizeof *l);
        if (l == NULL) return -1;
        p->lines = l;
        p->cap_lines = cap;
    }
    p->lines[p->n_lines++] = (VLine){msg, off, len};
    return 0;
}

/* Wraps s[a..b) (one line of message msg, no '\n') to width columns. A
** break goes at the last space (which is dropped), or between two
** characters when either is double-width; a word longer than the line is
** cut at the width. Returns 0 or -1 (ENOMEM). */
static int wrap_line(ChatPane *p, int msg, const wchar_t *s, size_t a, size_t b, int width)
{
    size_t i = a;
    do {
        size_t j = i, brk = 0, next = 0;
        int col = 0;
        while (j < b) {
            int cw = ui_wcwidth(s[j]);
            if (col + cw > width) break;
            if (s[j] == L' ') brk = j, next = j + 1;
            else if (j > i && (cw == 2 || ui_wcwidth(s[j - 1]) == 2)) brk = j, next = j;
            col += cw;
            j++;
        }
        if (j >= b) return push_line(p, msg, i, b - i);
        if (j == i) j++; /* a character wider than the pane: show it alone */
        if (brk > i) {
            if (push_line(p, msg, i, brk - i)) return -1;
            i = next;
        } else {
            if (push_line(p, msg, i, j - i)) return -1;
            i = j;
        }
        while (i < b && s[i] == L' ') i++;
    } while (i < b);
    return 0;
}

/* Lays every message out at width into p->lines. */
static void layout(ChatPane *p, int width)
{
    p->n_lines = 0;
    for (int m = 0; m < p->n_msgs; m++) {
        const ChatMsg *msg = &p->msgs[m];
        if (m > 0 && push_line(p, -1, 0, 0)) return;
        for (size_t a = 0; a <= msg->len;) {
            size_t b = a;
            while (b < msg->len && msg->text[b] != L'\n') b++;
            if (wrap_line(p, m, msg->text, a, b, width)) return;
            a = b + 1;
        }
    }
}

/* --- drawing --- */

/* Length of a citation "[12]" at s (0 when none). */
static size_t citation_len(const wchar_t *s, size_t n)
{
    size_t k = 1;
    if (n < 3 || s[0] != L'[') return 0;
    while (k < n && k < 5 && s[k] >= L'0' && s[k] <= L'9') k++;
    return k > 1 && k < n && s[k] == L']' ? k + 1 : 0;
}

/* Paints one line at row, citations highlighted in answers. */
static void draw_line(ChatPane *p, int row, const VLine *l)
{
    WINDOW *win = p->base.win;
    if (l->msg < 0) return;
    const ChatMsg *m = &p->msgs[l->msg];
    const wchar_t *s = m->text + l->off;
    attr_t base = term_attr(m->role);
    wmove(win, row, 0);
    for (size_t i = 0; i < l->len;) {
        size_t c = m->role == UI_C_ANSWER ? citation_len(s + i, l->len - i) : 0, k = i;
        if (c) {
            wattrset(win, term_attr(UI_C_CITATION));
            waddnwstr(win, s + i, (int)c);
            i += c;
            continue;
        }
        while (k < l->len && !(m->role == UI_C_ANSWER && citation_len(s + k, l->len - k))) k++;
        wattrset(win, base);
        waddnwstr(win, s + i, (int)(k - i));
        i = k;
    }
    wattrset(win, A_NORMAL);
}

/* The first line shown, given the layout and height. */
static long first_line(ChatPane *p, int h)
{
    long last_top = (long)p->n_lines > h ? (long)p->n_lines - h : 0;
    if (p->follow || p->top >= last_top) {
        p->follow = 1;
        return last_top;
    }
    return p->top < 0 ? 0 : p->top;
}

static void chat_draw(Widget *w)
{
    ChatPane *p = (ChatPane *)w;
    if (w->win == NULL) return;
    werase(w->win);
    layout(p, w->w);
    long top = first_line(p, w->h);
    for (int r = 0; r < w->h && top + r < (long)p->n_lines; r++) draw_line(p, r, &p->lines[top + r]);
    long below = (long)p->n_lines - (top + w->h);
    if (!p->follow && below > 0) {
        char more[64];
        int n = snprintf(more, sizeof more, " %ld more lines, End: latest ", below);
        wattrset(w->win, term_attr(UI_C_STATUS));
        mvwaddstr(w->win, w->h - 1, w->w - n > 0 ? w->w - n : 0, more);
        wattrset(w->win, A_NORMAL);
    }
    wnoutrefresh(w->win);
    w->needs_redraw = 0;
}

/* PgUp/PgDn/Home/End and the mouse wheel (KEY_UP/KEY_DOWN with alt = by 3). */
static int chat_on_key(Widget *w, const UiKey *k)
{
    ChatPane *p = (ChatPane *)w;
    long page = w->h > 2 ? w->h - 1 : 1, top = first_line(p, w->h);
    if (!k->is_key) return UI_IGNORED;
    switch (k->ch) {
    case KEY_PPAGE: top -= page; break;
    case KEY_NPAGE: top += page; break;
    case KEY_HOME: top = 0; break;
    case KEY_END: p->follow = 1; return UI_REDRAW;
    default: return UI_IGNORED;
    }
    p->follow = 0;
    p->top = top < 0 ? 0 : top;
    return UI_REDRAW;
}

/* Scrolls by n lines (negative: up), for the mouse wheel. */
void chatpane_scroll(ChatPane *p, int n);
void chatpane_scroll(ChatPane *p, int n)
{
    long top = first_line(p, p->base.h) + n;
    p->follow = 0;
    p->top = top < 0 ? 0 : top;
}

static const WidgetOps chat_ops = {chat_draw, chat_on_key, widget_place};

Widget *chatpane_widget(ChatPane *p)
{
    p->base.ops = &chat_ops;
    return &p->base;
}

/* --- shared widget plumbing --- */

void widget_free_window(Widget *w)
{
    if (w->win) delwin(w->win);
    w->win = NULL;
}

void widget_place(Widget *w, int y, int x, int h, int width)
{
    widget_free_window(w);
    w->y = y, w->x = x, w->h = h, w->w = width;
    if (h > 0 && width > 0) w->win = newwin(h, width, y, x);
    w->needs_redraw = 1;
}
