/*
** chunker.c: see chunker.h for the algorithm.
**
** Everything works on byte ranges of the document text, never on copies:
** a piece is [s, e) plus its length in characters, and a chunk is the range
** from its first piece's start to its last piece's end (pieces are
** contiguous because separators stay attached). Only the final chunk text
** is copied, once, and pieces are never collected: each goes through a
** merging window of at most `size` pieces as it is cut (split_range), so
** splitting takes memory for the chunks made, not for the pieces (a line of
** 50 MB without a separator is 50 million one-character pieces). The text
** is valid UTF-8 (cleanup makes it so, doc.h),
** and characters are counted with g_utf8_pointer_to_offset.
*/
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/chunker.h"
#include "rag/utf8.h"

enum {
    LEVEL_PARA = 0, /* "\n\n" */
    LEVEL_LINE,     /* "\n" */
    LEVEL_CJK_STOP, /* 。！？ */
    LEVEL_STOP,     /* [.!?] + white space */
    LEVEL_SEMI,     /* ； or ; + white space */
    LEVEL_COMMA,    /* ， or , + white space */
    LEVEL_SPACE,    /* " " (beyond Chatchat's list) */
    LEVEL_CHAR,     /* every character (last resort) */
    LEVEL_COUNT
};

#define MIN_CAPPED_SIZE 8 /* the token cap never splits below this many characters */

typedef struct Piece {
    size_t s, e;
    size_t chars;
} Piece;

typedef struct Range {
    size_t s, e;
} Range;

/* Chunks being collected, as ranges. */
typedef struct RangeList {
    Range *r;
    int n, cap;
} RangeList;

typedef struct Splitter {
    const char *t;
    size_t size, overlap; /* characters */
    RangeList out;
} Splitter;

/* --- separators --- */

static int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Length of the level's separator starting at t[i] (i < e), or 0. */
static size_t sep_at(int level, const char *t, size_t i, size_t e)
{
    const unsigned char *u = (const unsigned char *)t + i;
    size_t left = e - i;
    switch (level) {
    case LEVEL_PARA:
        return left >= 2 && u[0] == '\n' && u[1] == '\n' ? 2 : 0;
    case LEVEL_LINE:
        return u[0] == '\n';
    case LEVEL_CJK_STOP: /* 。 E3 80 82, ！ EF BC 81, ？ EF BC 9F */
        if (left < 3) return 0;
        if (u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x82) return 3;
        return u[0] == 0xEF && u[1] == 0xBC && (u[2] == 0x81 || u[2] == 0x9F) ? 3 : 0;
    case LEVEL_STOP:
        return left >= 2 && (u[0] == '.' || u[0] == '!' || u[0] == '?') && is_ws((char)u[1]) ? 2 : 0;
    case LEVEL_SEMI: /* ； EF BC 9B */
        if (left >= 3 && u[0] == 0xEF && u[1] == 0xBC && u[2] == 0x9B) return 3;
        return left >= 2 && u[0] == ';' && is_ws((char)u[1]) ? 2 : 0;
    case LEVEL_COMMA: /* ， EF BC 8C */
        if (left >= 3 && u[0] == 0xEF && u[1] == 0xBC && u[2] == 0x8C) return 3;
        return left >= 2 && u[0] == ',' && is_ws((char)u[1]) ? 2 : 0;
    case LEVEL_SPACE:
        return u[0] == ' ';
    default: {
        size_t adv;
        utf8_decode(t + i, left, &adv);
        return adv;
    }
    }
}

/* True when the level's separator occurs in t[s..e). */
static int sep_occurs(int level, const char *t, size_t s, size_t e)
{
    if (level == LEVEL_LINE) return memchr(t + s, '\n', e - s) != NULL;
    for (size_t i = s; i < e; i++)
        if (sep_at(level, t, i, e)) return 1;
    return 0;
}

/* --- merging --- */

static int add_range(RangeList *l, size_t s, size_t e)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        Range *r = realloc(l->r, (size_t)cap * sizeof *r);
        if (r == NULL) return KB_ENOMEM;
        l->r = r;
        l->cap = cap;
    }
    l->r[l->n++] = (Range){s, e};
    return KB_OK;
}

/* The run of small pieces being merged: p[first..n) are the pieces of the
** chunk being filled, `total` their characters. Pieces before `first` are
** dropped (compacted away once they are half the array), so the window
** never holds more than `size` + 1 pieces whatever the range's length: a
** 50 MB line cut into single characters costs `size` pieces, not 50
** million. */
typedef struct Window {
    Piece *p;
    size_t first, n, cap;
    size_t total;
} Window;

/* Appends piece pc (fewer than sp->size characters) to the run, first
** closing the chunk being filled when pc does not fit in it: the chunk is
** emitted and its leading pieces dropped until what is left fits in
** `overlap` and leaves room for pc (LangChain's _merge_splits with an empty
** joiner). Returns KB_OK or KB_ENOMEM. */
static int window_push(Splitter *sp, Window *w, Piece pc)
{
    int rc = KB_OK;
    if (w->total + pc.chars > sp->size && w->n > w->first) {
        rc = add_range(&sp->out, w->p[w->first].s, w->p[w->n - 1].e);
        while (w->first < w->n && (w->total > sp->overlap || w->total + pc.chars > sp->size))
            w->total -= w->p[w->first++].chars;
    }
    if (w->first > 0 && w->first >= w->n / 2) {
        memmove(w->p, w->p + w->first, (w->n - w->first) * sizeof *w->p);
        w->n -= w->first;
        w->first = 0;
    }
    if (rc == KB_OK && w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        Piece *p = realloc(w->p, cap * sizeof *p);
        if (p == NULL) return KB_ENOMEM;
        w->p = p;
        w->cap = cap;
    }
    if (rc == KB_OK) {
        w->p[w->n++] = pc;
        w->total += pc.chars;
    }
    return rc;
}

/* Emits the chunk being filled (if any) and empties the run. */
static int window_flush(Splitter *sp, Window *w)
{
    int rc = w->n > w->first ? add_range(&sp->out, w->p[w->first].s, w->p[w->n - 1].e) : KB_OK;
    w->first = w->n = 0;
    w->total = 0;
    return rc;
}

/* Splits t[s..e) from separator level `level` on (chunker.h). The range is
** cut after each separator of the first level that occurs in it, one piece
** at a time: small pieces go through the merging window, a piece of `size`
** characters or more ends the run and is split from the next level on (at
** the last level, single characters, no piece is that large unless size is
** 1). Memory is the window, whatever the range's length. */
static int split_range(Splitter *sp, size_t s, size_t e, int level)
{
    while (level < LEVEL_CHAR && !sep_occurs(level, sp->t, s, e)) level++;
    Window w = {0};
    int rc = KB_OK;
    size_t last = s;
    for (size_t i = s; i < e && rc == KB_OK;) {
        size_t m = sep_at(level, sp->t, i, e);
        i += m ? m : 1;
        if ((m == 0 && i < e) || i <= last) continue;
        Piece pc = {last, i, (size_t)g_utf8_pointer_to_offset(sp->t + last, sp->t + i)};
        last = i;
        if (pc.chars < sp->size) {
            rc = window_push(sp, &w, pc);
            continue;
        }
        rc = window_flush(sp, &w);
        if (rc == KB_OK) rc = level + 1 < LEVEL_COUNT ? split_range(sp, pc.s, pc.e, level + 1)
                                                      : add_range(&sp->out, pc.s, pc.e);
    }
    if (rc == KB_OK) rc = window_flush(sp, &w);
    free(w.p);
    return rc;
}

/* --- chunks --- */

/* Tracks a byte offset's character offset as chunks are visited in order
** (overlaps step back a little, so the walk is linear overall). */
typedef struct CharCursor {
    size_t byte, chars;
} CharCursor;

static size_t char_offset(const char *t, CharCursor *c, size_t byte)
{
    c->chars += (size_t)g_utf8_pointer_to_offset(t + c->byte, t + byte); /* negative when stepping back */
    c->byte = byte;
    return c->chars;
}

/* The 1-based page holding byte offset pos (0 when there are no pages). */
static int page_of(const RagDoc *doc, size_t pos)
{
    int lo = 0, hi = doc->n_pages - 1, page = 0;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (doc->page_start[mid] <= pos) page = mid + 1, lo = mid + 1;
        else hi = mid - 1;
    }
    return doc->n_pages ? (page ? page : 1) : 0;
}

/* The title of the last section starting at or before pos, or NULL. */
static const char *section_of(const RagDoc *doc, size_t pos)
{
    int lo = 0, hi = doc->n_sections - 1;
    const char *title = NULL;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (doc->sections[mid].offset <= pos) title = doc->sections[mid].title, lo = mid + 1;
        else hi = mid - 1;
    }
    return title;
}

/* Fills chunk c for t[s..e): strips white space, copies the text with
** newline runs made one. Returns KB_OK, KB_ENOMEM, or KB_ENOTFOUND when
** nothing but white space is left. */
static int make_chunk(const RagDoc *doc, size_t s, size_t e, Chunk *c)
{
    const char *t = doc->text;
    while (s < e && is_ws(t[s])) s++;
    while (e > s && is_ws(t[e - 1])) e--;
    if (s == e) return KB_ENOTFOUND;
    memset(c, 0, sizeof *c);
    c->text = malloc(e - s + 1);
    if (c->text == NULL) return KB_ENOMEM;
    size_t n = 0;
    for (size_t i = s; i < e; i++) {
        if (t[i] == '\n' && n > 0 && c->text[n - 1] == '\n') continue;
        c->text[n++] = t[i];
    }
    c->text[n] = '\0';
    c->text_len = n;
    c->start = s;
    c->end = e;
    c->page = page_of(doc, s);
    c->section = section_of(doc, s);
    return KB_OK;
}

/* The chunks being built. */
typedef struct ChunkList {
    Chunk *c;
    int n, cap;
} ChunkList;

static int add_chunk(const RagDoc *doc, ChunkList *l, size_t s, size_t e)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        Chunk *c = realloc(l->c, (size_t)cap * sizeof *c);
        if (c == NULL) return KB_ENOMEM;
        l->c = c;
        l->cap = cap;
    }
    int rc = make_chunk(doc, s, e, &l->c[l->n]);
    if (rc == KB_OK) l->n++;
    return rc == KB_ENOTFOUND ? KB_OK : rc;
}

/* Splits doc->text[s..e) with the given sizes and appends the chunks, each
** split again while it has more tokens than the cap allows. */
static int split_into(const RagDoc *doc, const ChunkOptions *opt, size_t size, size_t overlap, size_t s, size_t e,
                      ChunkList *l)
{
    Splitter sp = {doc->text, size, overlap, {0}};
    int rc = split_range(&sp, s, e, LEVEL_PARA);
    for (int i = 0; i < sp.out.n && rc == KB_OK; i++) {
        int before = l->n;
        rc = add_chunk(doc, l, sp.out.r[i].s, sp.out.r[i].e);
        if (rc != KB_OK || l->n == before || opt->count_tokens == NULL || opt->max_tokens <= 0) continue;
        Chunk *c = &l->c[l->n - 1];
        int tokens = opt->count_tokens(c->text, c->text_len, opt->user);
        size_t chars = (size_t)g_utf8_pointer_to_offset(c->text, c->text + c->text_len);
        if (tokens <= opt->max_tokens || chars <= MIN_CAPPED_SIZE) continue;
        size_t cs = c->start, ce = c->end;
        size_t smaller = (size_t)((double)chars * opt->max_tokens / tokens * 0.9);
        if (smaller < MIN_CAPPED_SIZE) smaller = MIN_CAPPED_SIZE;
        if (smaller >= chars) smaller = chars - 1;
        free(c->text);
        l->n--;
        rc = split_into(doc, opt, smaller, overlap * smaller / size, cs, ce, l);
    }
    free(sp.out.r);
    return rc;
}

void chunker_free(Chunk *chunks, int n)
{
    for (int i = 0; chunks && i < n; i++) free(chunks[i].text);
    free(chunks);
}

int chunker_split(const RagDoc *doc, const ChunkOptions *opt, Chunk **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (opt->size < 1 || opt->overlap < 0 || opt->overlap >= opt->size) return KB_EINVAL;
    ChunkList l = {0};
    int rc = doc->len ? split_into(doc, opt, (size_t)opt->size, (size_t)opt->overlap, 0, doc->len, &l) : KB_OK;
    if (rc != KB_OK) {
        chunker_free(l.c, l.n);
        return rc;
    }
    CharCursor cur = {0, 0};
    for (int i = 0; i < l.n; i++) {
        l.c[i].char_start = char_offset(doc->text, &cur, l.c[i].start);
        l.c[i].char_end = char_offset(doc->text, &cur, l.c[i].end);
    }
    *out = l.c;
    *n_out = l.n;
    return KB_OK;
}
