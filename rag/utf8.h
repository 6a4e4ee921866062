/*
** utf8.h: reading one character of text that may not be valid UTF-8, on top
** of GLib's UTF-8 functions. GLib answers "not a character" for malformed
** input; rag/ needs every byte to read as something so that loops over
** hostile files always make progress, hence this thin layer. Everything
** else (encoding, counting, stepping) is GLib's, called where it is used.
** Internal to rag/.
*/
#ifndef KB_RAG_UTF8_H
#define KB_RAG_UTF8_H

#include <stddef.h>

#include <glib.h>

/* Decodes the character at s[0..n) (n >= 1, any bytes) and stores its byte
** length in *adv. Malformed or truncated sequences, which
** g_utf8_get_char_validated answers with (gunichar)-1 or -2, read as U+FFFD
** of length 1, so a caller always makes progress. ASCII (NUL included) is
** answered inline: it is most of the text and needs no call into GLib. */
static inline gunichar utf8_decode(const char *s, size_t n, size_t *adv)
{
    *adv = 1;
    if ((unsigned char)s[0] < 0x80) return (unsigned char)s[0];
    gunichar c = g_utf8_get_char_validated(s, (gssize)n);
    if (c >= (gunichar)-2) return 0xFFFD;
    *adv = (size_t)(g_utf8_next_char(s) - s);
    return c;
}

/* The character that ends s[0..n) (any bytes), or 0 when s is empty:
** g_utf8_find_prev_char finds where the last sequence starts, utf8_decode
** reads it. Bytes that do not end a whole character read as U+FFFD. */
static inline gunichar utf8_last(const char *s, size_t n)
{
    const char *p = g_utf8_find_prev_char(s, s + n);
    if (p == NULL) return n ? 0xFFFD : 0;
    size_t adv;
    gunichar c = utf8_decode(p, (size_t)(s + n - p), &adv);
    return p + adv == s + n ? c : 0xFFFD;
}

#endif /* KB_RAG_UTF8_H */
