/*
** search.c: keyword search over a knowledge base's FTS5 index.
**
** The user's words are never handed to FTS5 as query syntax (a stray '"',
** '-' or "NOT" would be an error or change the meaning): each
** white-space-separated word becomes a quoted phrase, which the kbcjk
** tokenizer turns into its tokens, so a Chinese word is the phrase of its
** bigrams. A word of one CJK character becomes a prefix query, which finds
** the character anywhere (fts_cjk.c explains why). All words must match;
** when that finds nothing, any word may. Ranking is FTS5's bm25, negated so
** that a higher score is better everywhere in kbchat.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/store.h"
#include "rag/utf8.h"

/* What a query word holds: CJK characters and other letters or digits. */
static void count_word(const char *w, size_t n, int *cjk, int *other)
{
    *cjk = *other = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t c = utf8_decode((const unsigned char *)w + i, n - i, &adv);
        if (clean_is_cjk(c)) (*cjk)++;
        else if (g_unichar_isalnum(c)) (*other)++;
        i += adv;
    }
}

/* Appends word w[0..n) to q as an FTS5 phrase ('"' doubled). */
static void add_phrase(GString *q, const char *w, size_t n, const char *joiner, int prefix)
{
    if (q->len) g_string_append(q, joiner);
    g_string_append_c(q, '"');
    for (size_t i = 0; i < n; i++) {
        if (w[i] == '"') g_string_append_c(q, '"');
        g_string_append_c(q, w[i]);
    }
    g_string_append_c(q, '"');
    if (prefix) g_string_append_c(q, '*');
}

/* Length of the white space at q[i] (ASCII or the full-width space), or 0.
** Query words are split here, not by clean_line, which would glue two
** Chinese words typed with a space between them into one. */
static size_t space_at(const char *q, size_t i)
{
    if (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r') return 1;
    const unsigned char *u = (const unsigned char *)q + i; /* NUL-terminated: no read past the end */
    return u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80 ? 3 : 0;
}

/* Builds the FTS5 expression for query: its words joined by AND (all) or
** OR. Returns a g_malloc'd string, "" when the query has no word. */
static char *build_match(const char *q, int all)
{
    size_t len = strlen(q);
    GString *m = g_string_new(NULL);
    for (size_t i = 0; i < len;) {
        size_t sp;
        while (i < len && (sp = space_at(q, i)) > 0) i += sp;
        size_t j = i;
        while (j < len && space_at(q, j) == 0) j++;
        int cjk, other;
        count_word(q + i, j - i, &cjk, &other);
        if (cjk + other > 0) add_phrase(m, q + i, j - i, all ? " AND " : " OR ", cjk == 1 && other == 0);
        i = j;
    }
    return g_string_free(m, FALSE);
}

void rag_hits_free(RagHit *hits, int n)
{
    for (int i = 0; hits && i < n; i++) {
        free(hits[i].file);
        free(hits[i].section);
        free(hits[i].text);
    }
    free(hits);
}

/* Runs one MATCH expression; appends up to top_k hits to *hits. */
static int run_match(Rag *rag, int64_t kb, const char *match, int top_k, RagHit *hits, int *n)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag,
                           "SELECT c.id, d.path, c.page, c.section, c.text, bm25(chunks_fts) AS r "
                           "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                           "JOIN documents d ON d.id = c.doc_id "
                           "WHERE chunks_fts MATCH ?1 AND d.kb_id = ?2 ORDER BY r LIMIT ?3",
                           &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, kb);
    sqlite3_bind_int(st, 3, top_k);
    int s = SQLITE_DONE;
    while (rc == KB_OK && *n < top_k && (s = sqlite3_step(st)) == SQLITE_ROW) {
        RagHit *h = &hits[*n];
        memset(h, 0, sizeof *h);
        h->rank = *n + 1;
        h->chunk_id = sqlite3_column_int64(st, 0);
        h->file = strdup((const char *)sqlite3_column_text(st, 1));
        h->page = sqlite3_column_int(st, 2);
        h->section = strdup((const char *)sqlite3_column_text(st, 3));
        h->text = strdup((const char *)sqlite3_column_text(st, 4));
        h->score = -sqlite3_column_double(st, 5);
        (*n)++;
        if (!h->file || !h->section || !h->text) rc = store_fail(rag, KB_ENOMEM, "out of memory");
    }
    if (rc == KB_OK && *n < top_k && s != SQLITE_DONE) rc = store_sql_fail(rag, "search failed");
    sqlite3_finalize(st);
    return rc;
}

int rag_search(Rag *rag, const char *name, const char *query, int top_k, RagHit **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (top_k < 1) return store_fail(rag, KB_EINVAL, "top-k must be at least 1, got %d", top_k);
    int64_t kb;
    int rc = store_kb_id(rag, name, &kb);
    if (rc != KB_OK) return rc;
    RagHit *hits = calloc((size_t)top_k, sizeof *hits);
    if (hits == NULL) return store_fail(rag, KB_ENOMEM, "out of memory");
    int n = 0;
    for (int all = 1; all >= 0 && rc == KB_OK && n == 0; all--) {
        char *match = build_match(query, all);
        if (match[0] == '\0') all = 0; /* no word to look for */
        else rc = run_match(rag, kb, match, top_k, hits, &n);
        if (all && strstr(match, " AND ") == NULL) all = 0; /* one word: OR would be the same */
        g_free(match);
    }
    if (rc != KB_OK || n == 0) {
        rag_hits_free(hits, n);
        return rc;
    }
    *out = hits;
    *n_out = n;
    return KB_OK;
}
