/*
** term_text.c: escaping of text from outside for the terminal and for
** JSON (the notation and the modes are in term_text.h).
**
** Both escapers walk the bytes with utf8_next, which classifies what starts
** at a position: an ASCII byte, a valid multi-byte character, a byte that
** cannot start one (invalid), or the start of a character cut by the end
** of the buffer (incomplete: a stream holds it for the next piece).
*/
#include <string.h>

#include "app/term_text.h"

/* What starts at a position of a UTF-8 buffer. */
typedef enum Utf8Kind { U8_CHAR, U8_INVALID, U8_INCOMPLETE } Utf8Kind;

/* Classifies the bytes at s[0..avail) (avail >= 1): *len gets the length
** of the character (1 for an invalid byte), *c its code point. Overlong
** forms, surrogates and values above U+10FFFF are invalid (glib's check). */
static Utf8Kind utf8_next(const unsigned char *s, size_t avail, size_t *len, gunichar *c)
{
    *len = 1;
    *c = s[0];
    if (s[0] < 0x80) return U8_CHAR;
    size_t need = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    gunichar u = g_utf8_get_char_validated((const char *)s, (gssize)avail);
    if (u == (gunichar)-2 && avail < need) return U8_INCOMPLETE;
    if (u == (gunichar)-1 || u == (gunichar)-2) return U8_INVALID; /* -2 with room: a NUL inside */
    *len = need;
    *c = u;
    return U8_CHAR;
}

/* True for a code point that must not reach a terminal as it is. */
static int is_control(gunichar c)
{
    return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F);
}

/* Appends the visible form of control c (see term_text.h). */
static void put_control(GString *out, gunichar c)
{
    if (c == '\n') g_string_append(out, "\\n");
    else if (c == '\t') g_string_append(out, "\\t");
    else if (c == '\r') g_string_append(out, "\\r");
    else if (c < 0x80) g_string_append_printf(out, "\\x%02x", (unsigned)c);
    else g_string_append_printf(out, "\\u%04x", (unsigned)c);
}

/* Escapes s[0..len) into out; stops before an incomplete character at the
** end when hold, escaping it byte by byte otherwise. Returns the bytes
** consumed (len unless something was held). */
static size_t escape_some(GString *out, const unsigned char *s, size_t len, TermMode mode, int hold)
{
    size_t i = 0;
    while (i < len) {
        size_t n;
        gunichar c;
        Utf8Kind k = utf8_next(s + i, len - i, &n, &c);
        if (k == U8_INCOMPLETE && hold) break;
        if (k != U8_CHAR) g_string_append_printf(out, "\\x%02x", s[i]);
        else if (mode == TERM_TEXT && (c == '\n' || c == '\t')) g_string_append_c(out, (char)c);
        else if (is_control(c)) put_control(out, c);
        else g_string_append_len(out, (const char *)s + i, (gssize)n);
        i += n;
    }
    return i;
}

void term_escape_append(GString *out, const char *s, size_t len, TermMode mode)
{
    escape_some(out, (const unsigned char *)s, len, mode, 0);
}

void term_fputs(FILE *f, const char *s, TermMode mode)
{
    if (s == NULL) s = "";
    GString *g = g_string_new(NULL);
    term_escape_append(g, s, strlen(s), mode);
    fwrite(g->str, 1, g->len, f);
    g_string_free(g, TRUE);
}

/* --- copies for printf --- */

/* True when s needs no escaping in mode. */
static int is_clean(const char *s, TermMode mode)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t n;
        gunichar c;
        if (utf8_next((const unsigned char *)s + i, len - i, &n, &c) != U8_CHAR) return 0;
        if (is_control(c) && !(mode == TERM_TEXT && (c == '\n' || c == '\t'))) return 0;
        i += n;
    }
    return 1;
}

/* s escaped for mode, kept by t when it is a copy. */
static const char *term_keep(TermStrs *t, const char *s, TermMode mode)
{
    if (s == NULL) return "";
    if (is_clean(s, mode)) return s;
    if (t->owned == NULL) t->owned = g_ptr_array_new_with_free_func(g_free);
    GString *g = g_string_new(NULL);
    term_escape_append(g, s, strlen(s), mode);
    char *copy = g_string_free(g, FALSE);
    g_ptr_array_add(t->owned, copy);
    return copy;
}

const char *term_line(TermStrs *t, const char *s)
{
    return term_keep(t, s, TERM_LINE);
}

const char *term_text(TermStrs *t, const char *s)
{
    return term_keep(t, s, TERM_TEXT);
}

void term_strs_clear(TermStrs *t)
{
    if (t->owned) g_ptr_array_free(t->owned, TRUE);
    t->owned = NULL;
}

/* --- streams --- */

/* Completes the held start of a character with the first bytes of piece
** and escapes it. Returns the bytes of piece used (all of them when the
** character is still incomplete, which stays held). */
static size_t stream_finish_held(TermStream *s, const unsigned char *piece, size_t len, GString *out)
{
    unsigned char tmp[8];
    size_t k = len < 4 ? len : 4, n = (size_t)s->n_held + k;
    memcpy(tmp, s->held, (size_t)s->n_held);
    memcpy(tmp + s->n_held, piece, k);
    size_t used = escape_some(out, tmp, n, TERM_TEXT, 1);
    if (used < (size_t)s->n_held) { /* still the start of one character: k was all of piece */
        memcpy(s->held, tmp, n);
        s->n_held = (int)n;
        return len;
    }
    used -= (size_t)s->n_held;
    s->n_held = 0;
    return used;
}

void term_stream_put(TermStream *s, const char *piece, size_t len, GString *out)
{
    const unsigned char *p = (const unsigned char *)piece;
    if (s->raw) {
        g_string_append_len(out, piece, (gssize)len);
        return;
    }
    size_t i = s->n_held ? stream_finish_held(s, p, len, out) : 0;
    if (s->n_held) return;
    i += escape_some(out, p + i, len - i, TERM_TEXT, 1);
    s->n_held = (int)(len - i); /* at most 3: an incomplete character */
    memcpy(s->held, p + i, len - i);
}

void term_stream_end(TermStream *s, GString *out)
{
    if (s->raw) g_string_append_len(out, (const char *)s->held, s->n_held);
    else escape_some(out, s->held, (size_t)s->n_held, TERM_TEXT, 0);
    s->n_held = 0;
}

int term_stream_write(TermStream *s, FILE *f, const char *piece, size_t len, int end)
{
    GString *g = g_string_sized_new(len + 8);
    term_stream_put(s, piece, len, g);
    if (end) term_stream_end(s, g);
    int rc = fwrite(g->str, 1, g->len, f) == g->len ? 0 : EOF;
    g_string_free(g, TRUE);
    return rc;
}

/* --- JSON --- */

int json_put_string(FILE *f, const char *s)
{
    if (s == NULL) s = "";
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    int lossy = 0;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        size_t n;
        gunichar c;
        Utf8Kind k = utf8_next(p + i, len - i, &n, &c);
        if (k != U8_CHAR) fputs("\xEF\xBF\xBD", f), lossy = 1; /* U+FFFD */
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", (char)c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (is_control(c)) fprintf(f, "\\u%04x", (unsigned)c);
        else fwrite(p + i, 1, n, f);
        i += n;
    }
    fputc('"', f);
    return lossy;
}

void json_put_member(FILE *f, const char *key, const char *s)
{
    fprintf(f, "\"%s\": ", key);
    if (json_put_string(f, s) == 0) return;
    fprintf(f, ", \"%s_hex\": \"", key);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) fprintf(f, "%02x", *p);
    fputc('"', f);
}
