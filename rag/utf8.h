/*
** utf8.h: the few UTF-8 steps rag/ needs in its hot loops (cleanup, chunker,
** FTS5 tokenizer), inline because they run once per character of every
** document. Internal to rag/.
*/
#ifndef KB_RAG_UTF8_H
#define KB_RAG_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the code point at s[0..n) (n >= 1) and stores its byte length in
** *adv. Malformed or truncated sequences decode as U+FFFD of length 1, so a
** caller always makes progress. */
static inline uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *adv)
{
    uint32_t c = s[0];
    if (c < 0x80) {
        *adv = 1;
        return c;
    }
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (need == 0 || need > n || c > 0xF4) {
        *adv = 1;
        return 0xFFFD;
    }
    uint32_t cp = c & (0x7F >> need);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *adv = 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *adv = need;
    return cp;
}

/* Writes code point c as UTF-8 into out (room for 4) and returns its length. */
static inline size_t utf8_encode(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Number of code points in s[0..n): every byte that is not a continuation. */
static inline size_t utf8_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* The code point that ends at s[n-1] (n >= 1), or 0 when s is empty. */
static inline uint32_t utf8_last(const char *s, size_t n)
{
    if (n == 0) return 0;
    size_t i = n - 1;
    while (i > 0 && n - i < 4 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    size_t adv;
    return utf8_decode((const unsigned char *)s + i, n - i, &adv);
}

#endif /* KB_RAG_UTF8_H */
