/*
** clean.c: text cleanup between extraction and chunking (rules in doc.h).
**
** PDF text arrives as poppler lays it out: one line per printed line, the
** running header and page number at the top, words cut by hyphens at line
** ends, Chinese lines that must be glued back without spaces. Everything
** here is one linear pass per page plus a small table of line shapes for the
** header/footer vote, so cleanup costs little next to extraction.
*/
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/utf8.h"

#define EDGE_LINES 3      /* lines at the top and bottom that may be headers/footers */
#define SHAPE_MAX 120     /* longer lines are never headers or footers */

/* --- character classes --- */

int clean_is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x3040 && c <= 0x30FF) ||
           (c >= 0xAC00 && c <= 0xD7AF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x3134F) ||
           (c >= 0x3100 && c <= 0x318F) || (c >= 0x31A0 && c <= 0x31FF) || (c >= 0x2E80 && c <= 0x2FDF) ||
           (c >= 0x1100 && c <= 0x11FF) || (c >= 0xA960 && c <= 0xA97F);
}

int clean_is_wide(uint32_t c)
{
    return clean_is_cjk(c) || (c >= 0x3000 && c <= 0x303F) || (c >= 0xFF00 && c <= 0xFF60) ||
           (c >= 0xFFE0 && c <= 0xFFE6) || (c >= 0xFE30 && c <= 0xFE4F);
}

/* Spaces of every width become one plain space. */
static int is_space_cp(uint32_t c)
{
    return c == ' ' || c == '\t' || c == 0xA0 || c == 0x3000 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F ||
           c == 0x205F;
}

/* Invisible characters that only break words apart in the index. */
static int is_dropped_cp(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0xFEFF || (c >= 0x200B && c <= 0x200D) || c == 0x2060 ||
           c == 0xFFFD;
}

/* --- rule 1: one line --- */

/* Spells out the Latin ligatures poppler passes through from fonts that
** have them, so "ﬁle" is found by "file"; any other character c (a valid
** code point, so at most 4 bytes) is written by g_unichar_to_utf8. Returns
** bytes written. */
static size_t put_cp(uint32_t c, char *out)
{
    static const char *const lig[] = {"ff", "fi", "fl", "ffi", "ffl", "st", "st"};
    if (c >= 0xFB00 && c <= 0xFB06) {
        size_t n = strlen(lig[c - 0xFB00]);
        memcpy(out, lig[c - 0xFB00], n);
        return n;
    }
    return (size_t)g_unichar_to_utf8(c, out);
}

/* Rewrites s[0..len) (any bytes) in place; the result is never longer (a
** ligature's spelling is no longer than its 3-byte encoding, a wide space
** becomes one byte) and is valid UTF-8 without NUL: malformed bytes read as
** U+FFFD, which is dropped, and GLib refuses overlong forms and surrogates.
** A soft hyphen survives only at the end of the line, as '-', where it marks
** a word cut in two. */
size_t clean_line(char *s, size_t len)
{
    size_t r = 0, w = 0;
    uint32_t last = 0;
    int space = 0;
    while (r < len) {
        size_t adv;
        uint32_t c = utf8_decode(s + r, len - r, &adv);
        r += adv;
        if (c == 0xAD) {
            if (r < len) continue;
            c = '-';
        }
        if (is_space_cp(c)) {
            space = w > 0;
            continue;
        }
        if (is_dropped_cp(c)) continue;
        if (space && !(clean_is_wide(last) && clean_is_wide(c))) s[w++] = ' ';
        space = 0;
        if (c < 0x80) s[w++] = (char)c;
        else w += put_cp(c, s + w);
        last = c;
    }
    return w;
}

/* --- pages as lines --- */

typedef struct Line {
    char *s;
    size_t len;
    int width;   /* display columns: CJK and full-width count two */
    int dropped; /* a header or footer */
} Line;

typedef struct PageLines {
    Line *lines;
    int n;
} PageLines;

/* Display columns of s[0..len), a line clean_line made valid UTF-8. */
static int display_width(const char *s, size_t len)
{
    int w = 0;
    for (const char *p = s; p < s + len; p = g_utf8_next_char(p)) w += clean_is_wide(g_utf8_get_char(p)) ? 2 : 1;
    return w;
}

/* Splits page text at '\n' into cleaned lines (pointing into the text).
** Returns KB_OK or KB_ENOMEM. */
static int split_lines(char *text, PageLines *pl)
{
    int cap = 1;
    for (const char *p = text; *p; p++) cap += *p == '\n';
    pl->lines = calloc((size_t)cap, sizeof *pl->lines);
    if (pl->lines == NULL) return KB_ENOMEM;
    pl->n = 0;
    for (char *p = text;;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        Line *l = &pl->lines[pl->n++];
        l->s = p;
        l->len = clean_line(p, n);
        l->width = display_width(p, l->len);
        if (nl == NULL) break;
        p = nl + 1;
    }
    return KB_OK;
}

/* --- rule 2: headers and footers --- */

/* The shape of a line for the vote: lower case, each digit run one '#', so
** "Page 3 of 12" and "Page 4 of 12" agree. Returns 0 when the line is
** empty or too long to be a running header. */
static size_t line_shape(const Line *l, char *out)
{
    if (l->len == 0 || l->len > SHAPE_MAX) return 0;
    size_t n = 0;
    for (size_t i = 0; i < l->len; i++) {
        unsigned char c = (unsigned char)l->s[i];
        if (isdigit(c)) {
            if (n == 0 || out[n - 1] != '#') out[n++] = '#';
        } else {
            out[n++] = (char)tolower(c);
        }
    }
    out[n] = '\0';
    return n;
}

/* Stores in idx the indexes of page pl's edge lines, the first and last
** EDGE_LINES non-empty ones, each once, and returns how many. */
static int edge_lines(const PageLines *pl, int *idx)
{
    int n = 0;
    for (int i = 0, k = 0; i < pl->n && k < EDGE_LINES; i++)
        if (pl->lines[i].len) idx[n++] = i, k++;
    int first_n = n;
    for (int i = pl->n - 1, k = 0; i >= 0 && k < EDGE_LINES; i--) {
        if (pl->lines[i].len == 0) continue;
        int seen = 0;
        for (int j = 0; j < first_n; j++) seen |= idx[j] == i;
        if (!seen) idx[n++] = i;
        k++;
    }
    return n;
}

/* Drops, on one page, a line of the given shape: an edge line when there is
** one, else (two-column pages, where poppler puts the footer between the
** columns) any line, unless the shape is a bare page number. */
static void drop_shape(PageLines *pl, const char *shape)
{
    char buf[SHAPE_MAX + 1];
    int idx[2 * EDGE_LINES];
    int n = edge_lines(pl, idx);
    for (int j = 0; j < n; j++) {
        Line *l = &pl->lines[idx[j]];
        if (!l->dropped && line_shape(l, buf) && strcmp(buf, shape) == 0) {
            l->dropped = 1;
            return;
        }
    }
    if (strspn(shape, "#-. ") == strlen(shape)) return;
    for (int i = 0; i < pl->n; i++) {
        Line *l = &pl->lines[i];
        if (!l->dropped && line_shape(l, buf) && strcmp(buf, shape) == 0) {
            l->dropped = 1;
            return;
        }
    }
}

/* Counts on how many pages each edge-line shape occurs and drops the shapes
** found on more than half of them (and on 3 pages at least).
** Returns KB_OK or KB_ENOMEM. */
typedef struct ShapeVote {
    int pages;     /* pages the shape was seen on */
    int last_page; /* the last of them, so a page counts once */
} ShapeVote;

static int drop_headers_footers(PageLines *pages, int n_pages)
{
    if (n_pages < 3) return KB_OK;
    GHashTable *votes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    char buf[SHAPE_MAX + 1];
    int idx[2 * EDGE_LINES];
    for (int p = 0; p < n_pages; p++) {
        int n = edge_lines(&pages[p], idx);
        for (int j = 0; j < n; j++) {
            if (line_shape(&pages[p].lines[idx[j]], buf) == 0) continue;
            ShapeVote *v = g_hash_table_lookup(votes, buf);
            if (v == NULL) {
                v = g_new0(ShapeVote, 1);
                v->last_page = -1;
                g_hash_table_insert(votes, g_strdup(buf), v);
            }
            if (v->last_page != p) v->pages++, v->last_page = p;
        }
    }
    GHashTableIter it;
    gpointer key, val;
    g_hash_table_iter_init(&it, votes);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        const ShapeVote *v = val;
        if (v->pages * 2 <= n_pages || v->pages < 3) continue;
        for (int p = 0; p < n_pages; p++) drop_shape(&pages[p], key);
    }
    g_hash_table_destroy(votes);
    return KB_OK;
}

/* --- rule 3: paragraphs --- */

/* A line that ends a sentence (used at the end of a page). */
static int ends_sentence(const Line *l)
{
    uint32_t c = utf8_last(l->s, l->len);
    return c == '.' || c == '!' || c == '?' || c == ':' || c == '"' || c == 0x3002 || c == 0xFF01 || c == 0xFF1F ||
           c == 0xFF1A || c == 0x2026 || c == 0x201D || c == 0x300D || c == 0x300F;
}

/* A line that starts a list item, which never continues the line above. */
static int starts_item(const Line *l)
{
    static const char *const bullets[] = {"\xE2\x80\xA2", "\xE2\x97\x8F", "\xE2\x96\xAA", "\xE2\x97\xA6",
                                          "\xC2\xB7", "- ", "* ", "\xE2\x80\x93 "};
    for (size_t i = 0; i < sizeof bullets / sizeof bullets[0]; i++) {
        size_t n = strlen(bullets[i]);
        if (l->len >= n && memcmp(l->s, bullets[i], n) == 0) return 1;
    }
    return 0;
}

/* Appends line l to the paragraph that ends the text: "exam-" + "ple" loses
** the hyphen, CJK on either side joins without a space, else one space. */
static int join_line(RagDoc *doc, const Line *l)
{
    const char *t = doc->text;
    size_t n = doc->len;
    uint32_t first = g_utf8_get_char(l->s); /* a cleaned, non-empty line: valid UTF-8 */
    if (n >= 2 && t[n - 1] == '-' && islower((unsigned char)t[n - 2]) && islower((unsigned char)l->s[0])) {
        doc->len--;
        return doc_append(doc, l->s, l->len);
    }
    if (!clean_is_wide(utf8_last(t, n)) && !clean_is_wide(first)) {
        int rc = doc_append(doc, " ", 1);
        if (rc != KB_OK) return rc;
    }
    return doc_append(doc, l->s, l->len);
}

/* Appends the kept lines of one page. *open says whether the paragraph
** ending the text may continue (in: from the previous page; out: for the
** next page). Returns KB_OK or KB_ENOMEM. */
static int append_page(RagDoc *doc, const PageLines *pl, int *open)
{
    int maxw = 0, rc = KB_OK;
    for (int i = 0; i < pl->n; i++)
        if (!pl->lines[i].dropped && pl->lines[i].width > maxw) maxw = pl->lines[i].width;
    const Line *prev = NULL;
    for (int i = 0; i < pl->n && rc == KB_OK; i++) {
        const Line *l = &pl->lines[i];
        if (l->dropped) continue;
        if (l->len == 0) {
            *open = 0;
            continue;
        }
        if (doc->len == 0) rc = doc_append(doc, l->s, l->len);
        else if (*open && !starts_item(l)) rc = join_line(doc, l);
        else if ((rc = doc_append(doc, "\n\n", 2)) == KB_OK) rc = doc_append(doc, l->s, l->len);
        *open = 4 * l->width >= 3 * maxw;
        prev = l;
    }
    if (prev && ends_sentence(prev)) *open = 0;
    return rc;
}

int clean_pages(RagDoc *doc, char **pages, int n_pages)
{
    int rc = KB_OK;
    PageLines *pl = calloc((size_t)(n_pages > 0 ? n_pages : 1), sizeof *pl);
    doc->page_start = calloc((size_t)(n_pages > 0 ? n_pages : 1), sizeof *doc->page_start);
    if (pl == NULL || doc->page_start == NULL) rc = KB_ENOMEM;
    for (int p = 0; p < n_pages && rc == KB_OK; p++) rc = split_lines(pages[p], &pl[p]);
    if (rc == KB_OK) rc = drop_headers_footers(pl, n_pages);
    int open = 0;
    for (int p = 0; p < n_pages && rc == KB_OK; p++) {
        size_t before = doc->len;
        rc = append_page(doc, &pl[p], &open);
        /* the page starts at its first character, after any paragraph break */
        size_t start = before;
        while (start < doc->len && (doc->text[start] == '\n' || doc->text[start] == ' ')) start++;
        doc->page_start[p] = start;
    }
    doc->n_pages = n_pages;
    if (rc == KB_OK && doc->text == NULL) rc = doc_append(doc, "", 0);
    for (int p = 0; pl && p < n_pages; p++) free(pl[p].lines);
    free(pl);
    return rc;
}
