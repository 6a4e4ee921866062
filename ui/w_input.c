/*
** w_input.c: the multi-line editor where questions are typed.
**
** The text is UTF-8 bytes with the cursor a byte offset that always sits
** on a character boundary: every movement and deletion steps over whole
** characters (utf8_prev/utf8_next). Enter sends (UI_SUBMIT); Alt-Enter and
** Ctrl-J insert a newline. Ctrl-A/E go to the start/end of the line,
** Ctrl-K/U delete to its end/start, Ctrl-W the word before the cursor.
** Up/Down move between lines, and on the first/last line walk the history
** of sent questions (the text being typed is kept and comes back).
** Drawing wraps by display width like the chat pane, with a rule above
** showing a hint, and scrolls to keep the cursor in view.
*/
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ui/widget.h"

#define INPUT_HISTORY 200

struct InputBox {
    Widget base; /* first */
    char *text;  /* NUL-terminated */
    size_t len, cap, cur;
    char *hist[INPUT_HISTORY]; /* oldest first */
    int n_hist, hist_pos;      /* hist_pos == n_hist: not browsing */
    char *draft;               /* the text typed before browsing */
    char hint[256];
};

/* --- text --- */

static size_t utf8_prev(const char *s, size_t i)
{
    if (i == 0) return 0;
    i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

static size_t utf8_next(const char *s, size_t len, size_t i)
{
    if (i >= len) return len;
    i++;
    while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    return i;
}

/* Replaces the text with s (NULL = empty), cursor at the end. */
static int input_set(InputBox *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n + 1 > b->cap) {
        char *t = realloc(b->text, n + 64);
        if (t == NULL) return -1;
        b->text = t;
        b->cap = n + 64;
    }
    memcpy(b->text, s ? s : "", n + 1);
    b->len = b->cur = n;
    b->base.needs_redraw = 1;
    return 0;
}

/* Inserts n bytes at the cursor. */
static int input_insert(InputBox *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *t = realloc(b->text, cap);
        if (t == NULL) return -1;
        b->text = t;
        b->cap = cap;
    }
    memmove(b->text + b->cur + n, b->text + b->cur, b->len - b->cur + 1);
    memcpy(b->text + b->cur, s, n);
    b->len += n;
    b->cur += n;
    return 0;
}

/* Deletes bytes [a, z). */
static void input_delete(InputBox *b, size_t a, size_t z)
{
    if (z <= a) return;
    memmove(b->text + a, b->text + z, b->len - z + 1);
    b->len -= z - a;
    if (b->cur > z) b->cur -= z - a;
    else if (b->cur > a) b->cur = a;
}

static size_t line_start(const InputBox *b, size_t i)
{
    while (i > 0 && b->text[i - 1] != '\n') i--;
    return i;
}

static size_t line_end(const InputBox *b, size_t i)
{
    while (i < b->len && b->text[i] != '\n') i++;
    return i;
}

/* Characters between a and z. */
static size_t count_chars(const InputBox *b, size_t a, size_t z)
{
    size_t n = 0;
    for (size_t i = a; i < z; i = utf8_next(b->text, b->len, i)) n++;
    return n;
}

/* Byte offset of the n-th character after line start a (or the line's end). */
static size_t char_at(const InputBox *b, size_t a, size_t n)
{
    size_t e = line_end(b, a);
    while (n-- > 0 && a < e) a = utf8_next(b->text, b->len, a);
    return a;
}

/* --- history --- */

static void hist_show(InputBox *b, int pos)
{
    if (b->hist_pos == b->n_hist) {
        free(b->draft);
        b->draft = strdup(b->text);
    }
    b->hist_pos = pos;
    input_set(b, pos == b->n_hist ? b->draft : b->hist[pos]);
}

static void hist_push(InputBox *b, const char *s)
{
    if (b->n_hist > 0 && strcmp(b->hist[b->n_hist - 1], s) == 0) return;
    char *copy = strdup(s);
    if (copy == NULL) return;
    if (b->n_hist == INPUT_HISTORY) {
        free(b->hist[0]);
        memmove(b->hist, b->hist + 1, (INPUT_HISTORY - 1) * sizeof b->hist[0]);
        b->n_hist--;
    }
    b->hist[b->n_hist++] = copy;
}

/* Up (dir -1) or Down (+1): to the neighbouring line, or through history. */
static void input_vertical(InputBox *b, int dir)
{
    size_t a = line_start(b, b->cur), col = count_chars(b, a, b->cur);
    if (dir < 0 && a > 0) {
        b->cur = char_at(b, line_start(b, a - 1), col);
    } else if (dir > 0 && line_end(b, b->cur) < b->len) {
        b->cur = char_at(b, line_end(b, b->cur) + 1, col);
    } else if (dir < 0 && b->hist_pos > 0) {
        hist_show(b, b->hist_pos - 1);
    } else if (dir > 0 && b->hist_pos < b->n_hist) {
        hist_show(b, b->hist_pos + 1);
    }
}

/* --- keys --- */

/* Ctrl-W: deletes the spaces then the word before the cursor. */
static void delete_word(InputBox *b)
{
    size_t i = b->cur;
    while (i > 0 && (b->text[i - 1] == ' ' || b->text[i - 1] == '\n')) i--;
    while (i > 0 && b->text[i - 1] != ' ' && b->text[i - 1] != '\n') i--;
    input_delete(b, i, b->cur);
}

/* Keys that edit or move; returns UI_IGNORED for others. */
static int input_edit_key(InputBox *b, const UiKey *k)
{
    size_t c = b->cur;
    switch (k->ch) {
    case UI_CTRL('a'): b->cur = line_start(b, c); break;
    case UI_CTRL('e'): b->cur = line_end(b, c); break;
    case UI_CTRL('b'): b->cur = utf8_prev(b->text, c); break;
    case UI_CTRL('f'): b->cur = utf8_next(b->text, b->len, c); break;
    case UI_CTRL('k'): input_delete(b, c, line_end(b, c) == c && c < b->len ? c + 1 : line_end(b, c)); break;
    case UI_CTRL('u'): input_delete(b, line_start(b, c) == c && c > 0 ? c - 1 : line_start(b, c), c); break;
    case UI_CTRL('w'): delete_word(b); break;
    case UI_CTRL('h'): case 0x7f: input_delete(b, utf8_prev(b->text, c), c); break;
    case UI_CTRL('j'): input_insert(b, "\n", 1); break;
    default: return UI_IGNORED;
    }
    return UI_REDRAW;
}

/* KEY_* codes. */
static int input_special_key(InputBox *b, const UiKey *k)
{
    size_t c = b->cur;
    switch (k->ch) {
    case KEY_LEFT: b->cur = utf8_prev(b->text, c); break;
    case KEY_RIGHT: b->cur = utf8_next(b->text, b->len, c); break;
    case KEY_UP: input_vertical(b, -1); break;
    case KEY_DOWN: input_vertical(b, +1); break;
    case KEY_BACKSPACE: input_delete(b, utf8_prev(b->text, c), c); break;
    case KEY_DC: input_delete(b, c, utf8_next(b->text, b->len, c)); break;
    case KEY_ENTER: return UI_SUBMIT;
    default: return UI_IGNORED;
    }
    return UI_REDRAW;
}

/* Edits with k; every key it takes may change the text or the cursor, so
** it marks the editor for painting (input_on_key). */
static int input_key(Widget *w, const UiKey *k)
{
    InputBox *b = (InputBox *)w;
    if (k->is_key) return input_special_key(b, k) | UI_RELAYOUT;
    if (k->ch == '\r' && k->alt) return input_insert(b, "\n", 1), UI_RELAYOUT | UI_REDRAW;
    if (k->ch == '\r') return UI_SUBMIT;
    if (k->alt) return UI_IGNORED;
    if (k->ch < 0x20 || k->ch == 0x7f) {
        int r = input_edit_key(b, k);
        return r == UI_IGNORED ? r : r | UI_RELAYOUT;
    }
    char buf[MB_LEN_MAX];
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t n = wcrtomb(buf, (wchar_t)k->ch, &st);
    if (n != (size_t)-1) input_insert(b, buf, n);
    return UI_REDRAW | UI_RELAYOUT;
}

static int input_on_key(Widget *w, const UiKey *k)
{
    int f = input_key(w, k);
    if (!(f & UI_IGNORED)) w->needs_redraw = 1;
    return f;
}

/* --- layout and drawing --- */

/* Walks the text at avail columns (after a 2-column prefix) and, when win is
** given, paints rows [top, top+rows) of it from window row 1. Stores the
** cursor's row and column. Returns the number of rows. */
static int input_walk(InputBox *b, int avail, WINDOW *win, int top, int rows, int *cur_row, int *cur_col)
{
    int row = 0, col = 0;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    *cur_row = 0, *cur_col = 0;
    for (size_t i = 0;; ) {
        if (i == b->cur) {
            if (col >= avail) row++, col = 0;
            *cur_row = row, *cur_col = col;
        }
        if (i >= b->len) break;
        wchar_t c;
        size_t r = mbrtowc(&c, b->text + i, b->len - i, &st);
        if (r == (size_t)-1 || r == (size_t)-2 || r == 0) c = 0xFFFD, r = 1, memset(&st, 0, sizeof st);
        i += r;
        if (c == L'\n') {
            row++, col = 0;
            continue;
        }
        int cw = ui_wcwidth(c);
        if (col + cw > avail) row++, col = 0;
        if (win && row >= top && row < top + rows) {
            if (cw == 0 || wcwidth(c) < 0) c = L'?', cw = 1;
            mvwaddnwstr(win, 1 + row - top, 2 + col, &c, 1);
        }
        col += cw;
    }
    return row + 1;
}

int input_rows(InputBox *b, int width, int max_rows)
{
    int r, c, n = input_walk(b, width - 3, NULL, 0, 0, &r, &c);
    if (r + 1 > n) n = r + 1;
    return n < 1 ? 1 : n > max_rows ? max_rows : n;
}

static void input_draw(Widget *w)
{
    InputBox *b = (InputBox *)w;
    WINDOW *win = w->win;
    int rows = w->h - 1, cr, cc;
    if (win == NULL || rows < 1) return;
    werase(win);
    wattrset(win, term_attr(UI_C_BORDER));
    mvwhline(win, 0, 0, ACS_HLINE, w->w);
    if (b->hint[0]) ui_put_text(win, 0, 2, b->hint, w->w - 4);
    wattrset(win, term_attr(UI_C_USER));
    mvwaddstr(win, 1, 0, ">");
    wattrset(win, A_NORMAL);
    input_walk(b, w->w - 3, NULL, 0, 0, &cr, &cc);
    int top = cr >= rows ? cr - rows + 1 : 0;
    input_walk(b, w->w - 3, win, top, rows, &cr, &cc);
    wmove(win, 1 + cr - top, 2 + cc);
    wnoutrefresh(win);
    w->needs_redraw = 0;
}

/* --- the public side --- */

static const WidgetOps input_ops = {input_draw, input_on_key, widget_place};

InputBox *input_new(void)
{
    InputBox *b = calloc(1, sizeof *b);
    if (b == NULL) return NULL;
    b->base.ops = &input_ops;
    if (input_set(b, "") != 0) {
        free(b);
        return NULL;
    }
    return b;
}

void input_free(InputBox *b)
{
    if (b == NULL) return;
    for (int i = 0; i < b->n_hist; i++) free(b->hist[i]);
    free(b->draft);
    free(b->text);
    widget_free_window(&b->base);
    free(b);
}

Widget *input_widget(InputBox *b) { return &b->base; }
int input_is_empty(const InputBox *b) { return b->len == 0; }

void input_clear(InputBox *b)
{
    input_set(b, "");
    b->hist_pos = b->n_hist;
}

char *input_take(InputBox *b)
{
    if (b->len == 0) return NULL;
    char *s = strdup(b->text);
    if (s) hist_push(b, s);
    input_clear(b);
    return s;
}

const char *input_text(const InputBox *b) { return b->text; }

void input_replace(InputBox *b, const char *text)
{
    input_set(b, text);
}

void input_set_hint(InputBox *b, const char *hint)
{
    if (strncmp(b->hint, hint, sizeof b->hint - 1) == 0) return; /* the loop sets it each tick */
    snprintf(b->hint, sizeof b->hint, "%s", hint);
    b->base.needs_redraw = 1;
}
