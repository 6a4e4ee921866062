/*
** load_text.c: .txt and .md files.
**
** Chinese text files are as often GB18030/GBK (Windows Notepad's "ANSI" on a
** Chinese system) or UTF-16 (its "Unicode") as UTF-8, and nothing in the
** file says which. The detection order is: a byte-order mark; the NUL
** pattern of UTF-16 without one; valid UTF-8; GB18030 (a superset of GBK and
** GB2312) through GLib's iconv. GB18030 is tried last because it accepts
** most byte sequences, so valid UTF-8 must win first.
**
** Lines are kept as they are (rule 1 of doc.h only); runs of blank lines
** become one paragraph break. In Markdown, ATX ("## Title") and setext
** (a line underlined with === or ---) headings outside fenced code blocks
** become section titles and paragraphs of their own, without the markup.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/utf8.h"

#define TEXT_MAX_BYTES ((size_t)512 << 20) /* a larger "text file" is refused */
#define TEXT_MAX_INVALID_PERCENT_DIV 100  /* UTF-8 with up to 1/100 bad bytes is repaired */

/* --- encoding --- */

/* Guesses UTF-16 without a byte-order mark from where the NULs are in the
** first 4 KB: ASCII-range text in UTF-16LE has a NUL in every odd byte.
** Returns "UTF-16LE", "UTF-16BE" or NULL. */
static const char *guess_utf16(const unsigned char *d, size_t n)
{
    size_t pairs = (n < 4096 ? n : 4096) / 2, odd = 0, even = 0;
    for (size_t i = 0; i < pairs; i++) {
        even += d[2 * i] == 0;
        odd += d[2 * i + 1] == 0;
    }
    if (pairs == 0) return NULL;
    if (odd * 10 >= pairs * 3 && even * 10 < pairs) return "UTF-16LE";
    if (even * 10 >= pairs * 3 && odd * 10 < pairs) return "UTF-16BE";
    return NULL;
}

/* Converts data[0..len) from `from` to a g_malloc'd UTF-8 string. */
static char *convert(const unsigned char *data, size_t len, const char *from, size_t *out_len)
{
    gsize written = 0;
    char *s = g_convert((const gchar *)data, (gssize)len, "UTF-8", from, NULL, &written, NULL);
    if (s && (memchr(s, '\0', written) || !g_utf8_validate(s, (gssize)written, NULL))) {
        g_free(s);
        s = NULL;
    }
    *out_len = written;
    return s;
}

/* Counts the bytes of d[0..n) that start no valid UTF-8 character and the
** valid characters of more than one byte. */
static void utf8_census(const unsigned char *d, size_t n, size_t *invalid /* OUT */, size_t *multi /* OUT */)
{
    *invalid = *multi = 0;
    for (size_t i = 0, adv; i < n; i += adv) {
        utf8_decode((const char *)d + i, n - i, &adv);
        if (adv > 1) (*multi)++;
        else if (d[i] >= 0x80) (*invalid)++;
    }
}

/* Copies d[0..n) (no NUL) to a g_malloc'd string with every byte that
** starts no valid UTF-8 character replaced by U+FFFD. Returns NULL when the
** result is still not valid UTF-8 (a form GLib rejects as a whole). */
static char *utf8_repair(const unsigned char *d, size_t n, size_t *out_len)
{
    GString *s = g_string_sized_new(n + 16);
    for (size_t i = 0, adv; i < n; i += adv) {
        utf8_decode((const char *)d + i, n - i, &adv);
        if (adv == 1 && d[i] >= 0x80) g_string_append(s, "\xEF\xBF\xBD");
        else g_string_append_len(s, (const char *)d + i, (gssize)adv);
    }
    *out_len = s->len;
    if (!g_utf8_validate(s->str, (gssize)s->len, NULL)) {
        g_string_free(s, TRUE);
        return NULL;
    }
    return g_string_free(s, FALSE);
}

/* Decodes d[0..n), which is not valid UTF-8 and has no byte-order mark:
** as UTF-8 with U+FFFD for the bad bytes when they are under 1% and the
** text has multi-byte UTF-8 characters (a damaged UTF-8 file); else as
** GB18030, and failing that as repaired UTF-8 when the bad bytes are few
** (an ASCII file with a stray byte). GB18030 accepts most byte pairs, so a
** damaged UTF-8 Chinese text must not reach it first. Returns a
** g_malloc'd string or NULL with the reason in doc->errmsg. */
static char *decode_unmarked(RagDoc *doc, const unsigned char *d, size_t n, size_t *out_len)
{
    size_t invalid, multi;
    utf8_census(d, n, &invalid, &multi);
    int few = invalid <= n / TEXT_MAX_INVALID_PERCENT_DIV; /* at most 1% */
    int repaired = few && multi > invalid;
    char *s = repaired ? utf8_repair(d, n, out_len) : NULL;
    if (s == NULL) repaired = 0, s = convert(d, n, "GB18030", out_len);
    if (s == NULL && few) repaired = 1, s = utf8_repair(d, n, out_len);
    if (s && repaired)
        snprintf(doc->note, sizeof doc->note, "%zu invalid UTF-8 byte%s skipped (decoded as U+FFFD, which cleanup drops)",
                 invalid, invalid == 1 ? "" : "s");
    if (s == NULL)
        snprintf(doc->errmsg, sizeof doc->errmsg, "not text in UTF-8, UTF-16 or GB18030/GBK (%zu of %zu bytes are "
                 "not UTF-8; up to 1%% can be repaired)", invalid, n);
    return s;
}

/* Produces the file's text as UTF-8 (g_malloc'd) or NULL with the reason
** in doc->errmsg. */
static char *decode(RagDoc *doc, const unsigned char *d, size_t n, size_t *out_len)
{
    const char *enc = NULL;
    size_t skip = 0;
    if (n >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF) enc = "UTF-8", skip = 3;
    else if (n >= 2 && d[0] == 0xFF && d[1] == 0xFE) enc = "UTF-16LE", skip = 2;
    else if (n >= 2 && d[0] == 0xFE && d[1] == 0xFF) enc = "UTF-16BE", skip = 2;
    else enc = guess_utf16(d, n);
    if (enc == NULL && memchr(d, '\0', n)) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "binary data, not text");
        return NULL;
    }
    if ((enc == NULL || strcmp(enc, "UTF-8") == 0) && g_utf8_validate((const gchar *)d + skip, (gssize)(n - skip), NULL)) {
        *out_len = n - skip;
        return g_strndup((const gchar *)d + skip, n - skip);
    }
    if (enc == NULL) return decode_unmarked(doc, d, n, out_len);
    char *s = strcmp(enc, "UTF-8") == 0 ? decode_unmarked(doc, d + skip, n - skip, out_len)
                                        : convert(d + skip, n - skip, enc, out_len);
    if (s == NULL && strcmp(enc, "UTF-8") != 0) snprintf(doc->errmsg, sizeof doc->errmsg, "invalid %s", enc);
    return s;
}

/* --- lines and headings --- */

typedef struct TextState {
    int in_para;   /* a paragraph is open: the next line joins it with "\n" */
    int in_fence;  /* inside a ``` or ~~~ code block */
    size_t para_start;  /* offset of the open paragraph's first line */
    int para_lines;     /* lines in the open paragraph */
} TextState;

/* Appends a line: to the open paragraph, or as a new one. */
static int put_line(RagDoc *doc, TextState *st, const char *s, size_t n)
{
    int rc = KB_OK;
    if (doc->len > 0) rc = doc_append(doc, st->in_para ? "\n" : "\n\n", st->in_para ? 1 : 2);
    if (!st->in_para) st->para_start = doc->len, st->para_lines = 0;
    if (rc == KB_OK) rc = doc_append(doc, s, n);
    st->in_para = 1;
    st->para_lines++;
    return rc;
}

/* An ATX heading: 1-6 '#', a space, the title; returns the title's
** length (trailing '#'s dropped) and its start in *title, or 0. */
static size_t atx_heading(const char *s, size_t n, const char **title)
{
    size_t h = 0;
    while (h < n && s[h] == '#') h++;
    if (h == 0 || h > 6 || h >= n || s[h] != ' ') return 0;
    const char *t = s + h + 1;
    size_t k = n - h - 1;
    while (k > 0 && t[k - 1] == '#') k--;
    while (k > 0 && t[k - 1] == ' ') k--;
    *title = t;
    return k;
}

/* A setext underline: only '=' or only '-', three at least. */
static int setext_underline(const char *s, size_t n)
{
    if (n < 3 || (s[0] != '=' && s[0] != '-')) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != s[0]) return 0;
    return 1;
}

/* Handles one cleaned line of a Markdown file. */
static int markdown_line(RagDoc *doc, TextState *st, const char *s, size_t n)
{
    if (n >= 3 && (memcmp(s, "```", 3) == 0 || memcmp(s, "~~~", 3) == 0)) st->in_fence = !st->in_fence;
    if (st->in_fence) return put_line(doc, st, s, n);
    const char *title;
    size_t tn = atx_heading(s, n, &title);
    if (tn > 0) {
        st->in_para = 0;
        int rc = doc_add_section(doc, doc->len + (doc->len ? 2 : 0), title, tn);
        if (rc == KB_OK) rc = put_line(doc, st, title, tn);
        st->in_para = 0;
        return rc;
    }
    if (st->in_para && st->para_lines == 1 && setext_underline(s, n)) {
        st->in_para = 0;
        return doc_add_section(doc, st->para_start, doc->text + st->para_start, doc->len - st->para_start);
    }
    return put_line(doc, st, s, n);
}

/* Splits text into lines (\n, \r\n or \r), cleans each and appends it. */
static int put_text(RagDoc *doc, char *text, size_t len, RagKind kind)
{
    TextState st = {0};
    int rc = KB_OK;
    for (size_t i = 0; i < len && rc == KB_OK;) {
        size_t j = i;
        while (j < len && text[j] != '\n' && text[j] != '\r') j++;
        size_t next = j < len && text[j] == '\r' && j + 1 < len && text[j + 1] == '\n' ? j + 2 : j + 1;
        size_t n = clean_line(text + i, j - i);
        if (n == 0 && !st.in_fence) st.in_para = 0;
        else if (kind == RAG_KIND_MARKDOWN) rc = markdown_line(doc, &st, text + i, n);
        else rc = put_line(doc, &st, text + i, n);
        i = next;
    }
    if (rc == KB_OK && doc->text == NULL) rc = doc_append(doc, "", 0);
    return rc;
}

int load_text(RagDoc *doc, const unsigned char *data, size_t len, RagKind kind)
{
    memset(doc, 0, sizeof *doc);
    if (len == 0) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "empty file");
        return KB_EFORMAT;
    }
    if (len > TEXT_MAX_BYTES) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "too large for a text file: %zu bytes (at most %zu)", len,
                 TEXT_MAX_BYTES);
        return KB_EFORMAT;
    }
    size_t n = 0;
    char *text = decode(doc, data, len, &n);
    if (text == NULL) return KB_EFORMAT;
    /* cleaned lines are never longer and separators never more than the
    ** file's ("# T" + "\n" gives "T" + "\n\n"), so n + 2 bytes hold the text */
    int rc = doc_reserve(doc, n + 2);
    if (rc == KB_OK) rc = put_text(doc, text, n, kind);
    g_free(text);
    if (rc == KB_OK && doc->len == 0) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "no text: the file holds only white space");
        rc = KB_EFORMAT;
    }
    if (rc == KB_ENOMEM) snprintf(doc->errmsg, sizeof doc->errmsg, "out of memory");
    return rc;
}
