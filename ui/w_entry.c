/*
** w_entry.c: a one-line text entry for overlays (the F2 panel's name and
** path), and clipped UTF-8 painting shared by the widgets. Not a widget of
** its own: the overlay owning it hands it keys and calls entry_draw from
** its own draw.
*/
#include <stdlib.h>
#include <string.h>

#include "ui/widget.h"

/* Paints UTF-8 s from (y, x), whole characters within cols columns. */
void ui_put_text(WINDOW *win, int y, int x, const char *s, int cols)
{
    size_t n;
    wchar_t *ws = ui_decode_as(s, strlen(s), TERM_LINE, &n);
    int used = 0;
    wmove(win, y, x);
    for (size_t i = 0; ws && i < n; i++) {
        int cw = ui_wcwidth(ws[i]);
        if (used + cw > cols) break;
        waddnwstr(win, ws + i, 1);
        used += cw;
    }
    free(ws);
}

/* Replaces the entry's text, cut at a character boundary when too long. */
void entry_set(LineEntry *e, const char *text)
{
    size_t n = strlen(text);
    if (n >= sizeof e->text) n = sizeof e->text - 1;
    while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) n--; /* never half a character */
    memcpy(e->text, text, n);
    e->text[n] = '\0';
}

/* Appends c as UTF-8 when it fits. */
static void entry_put(LineEntry *e, wint_t c)
{
    char u[4];
    int n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (c < 0x80) u[0] = (char)c;
    else if (c < 0x800) u[0] = (char)(0xC0 | (c >> 6)), u[1] = (char)(0x80 | (c & 0x3F));
    else if (c < 0x10000)
        u[0] = (char)(0xE0 | (c >> 12)), u[1] = (char)(0x80 | ((c >> 6) & 0x3F)), u[2] = (char)(0x80 | (c & 0x3F));
    else
        u[0] = (char)(0xF0 | (c >> 18)), u[1] = (char)(0x80 | ((c >> 12) & 0x3F)), u[2] = (char)(0x80 | ((c >> 6) & 0x3F)),
        u[3] = (char)(0x80 | (c & 0x3F));
    size_t len = strlen(e->text);
    if (c > 0x10FFFF || len + (size_t)n >= sizeof e->text) return;
    memcpy(e->text + len, u, (size_t)n);
    e->text[len + (size_t)n] = '\0';
}

/* Applies an editing key to the entry; 0 when the key is not an edit. */
int entry_key(LineEntry *e, const UiKey *k)
{
    size_t len = strlen(e->text);
    int backspace = (k->is_key && k->ch == KEY_BACKSPACE) || (!k->is_key && (k->ch == 127 || k->ch == 8));
    if (backspace) {
        while (len > 0 && ((unsigned char)e->text[len - 1] & 0xC0) == 0x80) len--;
        if (len > 0) len--;
        e->text[len] = '\0';
        return 1;
    }
    if (!k->is_key && k->ch == UI_CTRL('u')) return e->text[0] = '\0', 1;
    if (!k->is_key && k->ch == UI_CTRL('w')) { /* the last word, or up to the last '/' of a path */
        while (len > 0 && (e->text[len - 1] == ' ' || e->text[len - 1] == '/')) len--;
        while (len > 0 && e->text[len - 1] != ' ' && e->text[len - 1] != '/') len--;
        e->text[len] = '\0';
        return 1;
    }
    if (k->is_key || k->alt || k->ch < 0x20 || k->ch == 127) return 0;
    entry_put(e, k->ch);
    return 1;
}

/* Paints prompt, the tail of the text that fits, and a cursor block;
** assumes cols >= 1 and the caller's attributes set. */
void entry_draw(const LineEntry *e, WINDOW *win, int y, int x, int cols, const char *prompt)
{
    size_t n;
    int pw = 0;
    wchar_t *p = ui_decode(prompt, strlen(prompt), &n);
    for (size_t i = 0; p && i < n; i++) pw += ui_wcwidth(p[i]);
    free(p);
    ui_put_text(win, y, x, prompt, cols);
    int room = cols - pw - 1; /* the cursor's cell */
    wchar_t *t = ui_decode(e->text, strlen(e->text), &n);
    size_t first = n;
    for (int used = 0; t && first > 0 && used + ui_wcwidth(t[first - 1]) <= room; first--) used += ui_wcwidth(t[first - 1]);
    wmove(win, y, x + pw);
    if (t && room > 0) waddnwstr(win, t + first, (int)(n - first));
    free(t);
    if (room >= 0) {
        attr_t a;
        short pair;
        wattr_get(win, &a, &pair, NULL);
        wattron(win, A_REVERSE);
        waddch(win, ' ');
        wattr_set(win, a, pair, NULL);
    }
}
