/*
** w_chat.c: the chat pane: the conversation as wrapped lines, scrollable.
**
** Messages are kept as wide strings (decoded once as they arrive), so
** wrapping is a walk adding wcwidth()s: a line breaks at its last space, or
** before or after a double-width (CJK) character, and never splits one: a
** two-column character that would end in the last column moves to the next
** line whole. The layout (the screen lines) is kept between draws: at a
** new width everything is wrapped again, but while an answer streams only
** its last line is, with the text that came since (greedy wrapping decides
** a line by the text on it, so every earlier line is final); the Markdown
** styles are likewise computed from the answer's last line on. A streamed
** piece thus costs what it adds, not the length of the conversation. The
** view either follows the end (new text scrolls in) or stays at a fixed top
** line after PgUp/Home until End or PgDn past the end.
*/
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ui/widget.h"

typedef struct ChatMsg {
    UiRole role;
    wchar_t *text; /* owned */
    size_t len, cap;
    unsigned char *style; /* answers: a MdStyle per character (md_style), owned */
    size_t styled;        /* characters the style array was computed for */
    size_t style_line;    /* where the last line that may still grow starts: styles before it are final */
    int style_fenced;     /* inside a ``` block at style_line */
} ChatMsg;

/* Light Markdown in answers: what each character is drawn as. The marks
** stay visible (so wrapping is the plain text's); they are only coloured. */
typedef enum MdStyle { MD_TEXT, MD_HEADING, MD_BOLD, MD_CODE, MD_CITATION, MD_BULLET } MdStyle;

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
    int laid_width; /* the layout's width (-1: none) */
    int laid_msgs;  /* messages in the layout; the last of them may have grown since */
    int follow;   /* 1: show the end */
    long top;     /* first line shown when not following */
};

/* --- text helpers --- */

int ui_wcwidth(wchar_t c)
{
    int w = wcwidth(c);
    return w < 0 ? 1 : w;
}

wchar_t *ui_decode_as(const char *raw, size_t raw_len, TermMode mode, size_t *n)
{
    GString *esc = g_string_sized_new(raw_len + 1);
    term_escape_append(esc, raw, raw_len, mode);
    const char *s = esc->str;
    size_t len = esc->len;
    wchar_t *out = malloc((len + 1) * sizeof *out);
    mbstate_t st;
    size_t k = 0;
    *n = 0;
    if (out == NULL) return g_string_free(esc, TRUE), NULL;
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
    g_string_free(esc, TRUE);
    return out;
}

wchar_t *ui_decode(const char *s, size_t len, size_t *n)
{
    return ui_decode_as(s, len, TERM_TEXT, n);
}

/* --- messages --- */

ChatPane *chatpane_new(void)
{
    ChatPane *p = calloc(1, sizeof *p);
    if (p) p->follow = 1, p->laid_width = -1;
    return p;
}

void chatpane_clear(ChatPane *p)
{
    for (int i = 0; i < p->n_msgs; i++) free(p->msgs[i].text), free(p->msgs[i].style);
    p->n_msgs = 0;
    p->follow = 1;
    p->n_lines = 0, p->laid_msgs = 0, p->laid_width = -1;
    p->base.needs_redraw = 1;
}

int chatpane_last_role(const ChatPane *p)
{
    return p->n_msgs > 0 ? (int)p->msgs[p->n_msgs - 1].role : -1;
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

int ui_wrap(const wchar_t *s, size_t a, size_t b, int width, int (*emit)(void *u, size_t off, size_t len), void *u)
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
        if (j >= b) return emit(u, i, b - i);
        if (j == i) j++; /* a character wider than the pane: show it alone */
        if (brk > i) {
            if (emit(u, i, brk - i)) return -1;
            i = next;
        } else {
            if (emit(u, i, j - i)) return -1;
            i = j;
        }
        while (i < b && s[i] == L' ') i++;
    } while (i < b);
    return 0;
}

/* ui_wrap's emit for the chat pane: a line of message msg. */
typedef struct WrapCtx {
    ChatPane *p;
    int msg;
} WrapCtx;

static int emit_line(void *u, size_t off, size_t len)
{
    WrapCtx *c = u;
    return push_line(c->p, c->msg, off, len);
}

static int wrap_line(ChatPane *p, int msg, const wchar_t *s, size_t a, size_t b, int width)
{
    WrapCtx c = {p, msg};
    return ui_wrap(s, a, b, width, emit_line, &c);
}

/* Wraps message m from offset a0 (the start of one of its screen lines)
** to its end into p->lines. Returns 0 or -1 (ENOMEM). */
static int wrap_msg(ChatPane *p, int m, size_t a0, int width)
{
    const ChatMsg *msg = &p->msgs[m];
    for (size_t a = a0; a <= msg->len;) {
        size_t b = a;
        while (b < msg->len && msg->text[b] != L'\n') b++;
        if (wrap_line(p, m, msg->text, a, b, width)) return -1;
        a = b + 1;
    }
    return 0;
}

/* Brings p->lines up to date for width: everything again at a new width;
** else only from the last laid message's last line on (the only text that
** can have changed: messages are only added, and only the last one grows). */
static void layout(ChatPane *p, int width)
{
    int m = 0, resume = width == p->laid_width && p->laid_msgs > 0 && p->n_lines > 0;
    size_t from = 0;
    if (resume) {
        m = p->laid_msgs - 1;
        from = p->lines[--p->n_lines].off;
        assert(p->lines[p->n_lines].msg == m);
    } else {
        p->n_lines = 0;
    }
    p->laid_width = width;
    for (; m < p->n_msgs; m++, resume = 0) {
        if (!resume && m > 0 && push_line(p, -1, 0, 0)) break;
        if (wrap_msg(p, m, resume ? from : 0, width)) break;
    }
    p->laid_msgs = m;
    if (m < p->n_msgs) p->laid_width = -1; /* out of memory: start afresh next time */
}

/* --- light Markdown --- */

static size_t citation_len(const wchar_t *s, size_t n);

/* Styles line s[a..b) of an answer outside a fenced block: a heading, a
** list bullet, `code`, **bold**, and citations [n]. */
static void md_line(const wchar_t *s, size_t a, size_t b, unsigned char *st)
{
    size_t i = a;
    while (i < b && s[i] == L' ') i++;
    if (i < b && s[i] == L'#') {
        memset(st + a, MD_HEADING, b - a);
        return;
    }
    if (i + 1 < b && (s[i] == L'-' || s[i] == L'*' || s[i] == L'+') && s[i + 1] == L' ') st[i] = MD_BULLET;
    for (size_t j = i; j < b; j++) {
        size_t c = citation_len(s + j, b - j), k;
        if (c) {
            memset(st + j, MD_CITATION, c);
            j += c - 1;
        } else if (s[j] == L'`') {
            for (k = j + 1; k < b && s[k] != L'`'; k++) {
            }
            if (k == b) continue;
            memset(st + j, MD_CODE, k - j + 1);
            j = k;
        } else if (s[j] == L'*' && j + 1 < b && s[j + 1] == L'*') {
            for (k = j + 2; k + 1 < b && !(s[k] == L'*' && s[k + 1] == L'*'); k++) {
            }
            if (k + 1 >= b) continue;
            memset(st + j, MD_BOLD, k + 2 - j);
            j = k + 1;
        }
    }
}

/* Brings the styles of answer m up to date: fenced blocks (``` lines) are
** code. Lines ended by '\n' keep their styles; the last one, which may
** still grow, is styled again next time. */
static void md_style(ChatMsg *m)
{
    unsigned char *st = realloc(m->style, m->len + 1);
    if (st == NULL) return;
    m->style = st;
    memset(st + m->style_line, MD_TEXT, m->len + 1 - m->style_line);
    int fenced = m->style_fenced;
    for (size_t a = m->style_line; a < m->len;) {
        size_t b = a;
        while (b < m->len && m->text[b] != L'\n') b++;
        int fence = b - a >= 3 && wcsncmp(m->text + a, L"```", 3) == 0;
        if (fence || fenced) memset(st + a, MD_CODE, b - a);
        else md_line(m->text, a, b, st);
        if (fence) fenced = !fenced;
        if (b < m->len) m->style_line = b + 1, m->style_fenced = fenced; /* a finished line */
        a = b + 1;
    }
    m->styled = m->len;
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

/* The attribute of style st in a message drawn with base. */
static attr_t md_attr(int st, attr_t base)
{
    switch (st) {
    case MD_HEADING: return term_attr(UI_C_TITLE);
    case MD_BOLD: return base | A_BOLD;
    case MD_CODE: return term_attr(UI_C_CODE);
    case MD_CITATION: return term_attr(UI_C_CITATION);
    case MD_BULLET: return term_attr(UI_C_BORDER);
    default: return base;
    }
}

/* Paints one line at row; answers in their Markdown styles. */
static void draw_line(ChatPane *p, int row, const VLine *l)
{
    WINDOW *win = p->base.win;
    if (l->msg < 0) return;
    ChatMsg *m = &p->msgs[l->msg];
    const wchar_t *s = m->text + l->off;
    attr_t base = term_attr(m->role);
    if (m->role == UI_C_ANSWER && m->styled != m->len) md_style(m);
    const unsigned char *st = m->role == UI_C_ANSWER && m->style ? m->style + l->off : NULL;
    wmove(win, row, 0);
    for (size_t i = 0; i < l->len;) {
        size_t k = i + 1;
        while (st && k < l->len && st[k] == st[i]) k++;
        if (st == NULL) k = l->len;
        wattrset(win, md_attr(st ? st[i] : MD_TEXT, base));
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
    case KEY_END: p->follow = 1, w->needs_redraw = 1; return UI_REDRAW;
    default: return UI_IGNORED;
    }
    p->follow = 0;
    p->top = top < 0 ? 0 : top;
    w->needs_redraw = 1;
    return UI_REDRAW;
}

void chatpane_scroll(ChatPane *p, int n)
{
    long top = first_line(p, p->base.h) + n;
    p->follow = 0;
    p->top = top < 0 ? 0 : top;
    p->base.needs_redraw = 1;
}

void chatpane_follow(ChatPane *p)
{
    p->follow = 1;
    p->base.needs_redraw = 1;
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

void widget_place_centred(Widget *w, int y, int x, int h, int width, int bh, int bw)
{
    widget_place(w, y + (h - bh) / 2, x + (width - bw) / 2, bh, bw);
}

void widget_place_box(Widget *w, int y, int x, int h, int width)
{
    widget_place_centred(w, y, x, h, width, h > 4 ? h - 2 : h, width > 8 ? width - 4 : width);
}
