/*
** search.c: rag_search, keyword search for words a user types, and
** rag_retrieve, the search behind a question: keyword (the question's terms,
** query.c), vector (vectors.c) or both fused by reciprocal rank, with
** neighbouring chunks merged into passages (passage.c).
**
** rag_search:
** The user's words are never handed to FTS5 as query syntax (a stray '"',
** '-' or "NOT" would be an error or change the meaning): each
** white-space-separated word becomes a quoted phrase, which the kbcjk
** tokenizer turns into its tokens, so a Chinese word is the phrase of its
** bigrams. A word of one CJK character becomes a prefix query, which finds
** the character anywhere (fts_cjk.c explains why). All words must match;
** when that finds nothing, any word may. Ranking is BM25 with the knowledge
** base's own figures (kb_bm25, query_phrase_weights), negated so that a
** higher score is better everywhere in kbchat.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/embed.h"
#include "rag/search.h"
#include "rag/store.h"
#include "rag/utf8.h"
#include "rag/vectors.h"

/* What a query word holds: CJK characters and other letters or digits. */
static void count_word(const char *w, size_t n, int *cjk, int *other)
{
    *cjk = *other = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t c = utf8_decode(w + i, n - i, &adv);
        if (clean_is_cjk(c)) (*cjk)++;
        else if (g_unichar_isalnum(c)) (*other)++;
        i += adv;
    }
}

/* Appends word w[0..n) to q as an FTS5 phrase ('"' doubled), and a copy
** of the phrase alone to `phrases`. */
static void add_phrase(GString *q, GPtrArray *phrases, const char *w, size_t n, const char *joiner, int prefix)
{
    GString *one = g_string_new("\"");
    for (size_t i = 0; i < n; i++) {
        if (w[i] == '"') g_string_append_c(one, '"');
        g_string_append_c(one, w[i]);
    }
    g_string_append_c(one, '"');
    if (prefix) g_string_append_c(one, '*');
    if (q->len) g_string_append(q, joiner);
    g_string_append_len(q, one->str, (gssize)one->len);
    g_ptr_array_add(phrases, g_string_free(one, FALSE));
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
** OR; `phrases` receives each word's phrase, in order. Returns a g_malloc'd
** string, "" when the query has no word. */
static char *build_match(const char *q, int all, GPtrArray *phrases)
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
        if (cjk + other > 0) add_phrase(m, phrases, q + i, j - i, all ? " AND " : " OR ", cjk == 1 && other == 0);
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

/* Runs one MATCH expression made of `phrases`; appends up to top_k hits
** to *hits, ranked by kb_bm25 with the knowledge base's own figures. */
static int run_match(Rag *rag, int64_t kb, const char *match, GPtrArray *phrases, int top_k, RagHit *hits, int *n)
{
    sqlite3_stmt *st;
    double avgdl = 0, *w = malloc((phrases->len + 1) * sizeof *w);
    if (w == NULL) return store_fail(rag, KB_ENOMEM, "out of memory");
    int rc = query_phrase_weights(rag, kb, (const char *const *)phrases->pdata, (int)phrases->len, w, &avgdl);
    if (rc == KB_OK)
        rc = store_prepare(rag,
                           "SELECT c.id, d.path, c.page, c.section, c.text, kb_bm25(chunks_fts, ?4, ?5) AS r "
                           "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                           "JOIN documents d ON d.id = c.doc_id "
                           "WHERE chunks_fts MATCH ?1 AND d.kb_id = ?2 ORDER BY r LIMIT ?3",
                           &st);
    if (rc != KB_OK) {
        free(w);
        return rc;
    }
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, kb);
    sqlite3_bind_int(st, 3, top_k);
    sqlite3_bind_double(st, 4, avgdl);
    sqlite3_bind_blob(st, 5, w, (int)(phrases->len * sizeof *w), SQLITE_STATIC);
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
    free(w);
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
        GPtrArray *phrases = g_ptr_array_new_with_free_func(g_free);
        char *match = build_match(query, all, phrases);
        if (match[0] == '\0') all = 0; /* no word to look for */
        else rc = run_match(rag, kb, match, phrases, top_k, hits, &n);
        if (all && strstr(match, " AND ") == NULL) all = 0; /* one word: OR would be the same */
        g_free(match);
        g_ptr_array_free(phrases, TRUE);
    }
    if (rc != KB_OK || n == 0) {
        rag_hits_free(hits, n);
        return rc;
    }
    *out = hits;
    *n_out = n;
    return KB_OK;
}

/* --- rag_retrieve: keyword, vector and hybrid search --- */

#define CAND_MIN 50 /* candidates each retriever contributes, at least */
#define RRF_K 60    /* reciprocal rank fusion: 1 / (RRF_K + rank), as GPT4All and aichat */
#define VEC_MIN_Z 2.0 /* hybrid: a vector hit stands this many standard deviations above
                         the question's mean similarity to the knowledge base */

/* One rag_retrieve call. */
typedef struct Retrieval {
    Rag *rag;
    const char *name;
    const RagQuery *q;
    StoreKb kb;
    RagMode mode;          /* what runs */
    QTerms terms;
    Cand *c;               /* candidates, both retrievers' */
    int n, cap;
    int n_cand;            /* asked of each retriever */
    RagSearchInfo *info;
} Retrieval;

static const char *const mode_names[] = {"words", "keyword", "vector", "hybrid"};

int rag_mode_parse(const char *s, RagMode *mode)
{
    for (int i = 0; i < (int)(sizeof mode_names / sizeof mode_names[0]); i++) {
        if (strcmp(s, mode_names[i]) == 0) {
            *mode = (RagMode)i;
            return 0;
        }
    }
    return -1;
}

const char *rag_mode_name(RagMode mode)
{
    return mode >= 0 && mode <= RAG_MODE_HYBRID ? mode_names[mode] : "?";
}

/* The candidate of chunk id, or NULL. */
static Cand *find_cand(Retrieval *r, int64_t id)
{
    for (int i = 0; i < r->n; i++)
        if (r->c[i].id == id) return &r->c[i];
    return NULL;
}

/* Appends a candidate from a row (id, path, page, section, text, doc_id,
** seq) starting at column 0. Returns it, or NULL when out of memory. */
static Cand *add_cand(Retrieval *r, sqlite3_stmt *st)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        Cand *c = realloc(r->c, (size_t)cap * sizeof *c);
        if (c == NULL) return NULL;
        r->c = c;
        r->cap = cap;
    }
    Cand *c = &r->c[r->n];
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    c->file = strdup((const char *)sqlite3_column_text(st, 1));
    c->page = sqlite3_column_int(st, 2);
    c->section = strdup((const char *)sqlite3_column_text(st, 3));
    c->text = strdup((const char *)sqlite3_column_text(st, 4));
    c->doc_id = sqlite3_column_int64(st, 5);
    c->seq_first = c->seq_last = sqlite3_column_int(st, 6);
    r->n++; /* counted before the check, so cand_clear frees what was copied */
    return c->file && c->section && c->text ? c : NULL;
}

#define CAND_COLUMNS "c.id, d.path, c.page, c.section, c.text, c.doc_id, c.seq"

/* Takes the rows of the ranked FTS5 output `fts` (rowid, bm25) that belong
** to the knowledge base, as candidates with their keyword rank, until
** r->n_cand of them; `row` looks a chunk up in it. *rows counts the rows
** read. */
static int take_keyword_rows(Retrieval *r, sqlite3_stmt *fts, sqlite3_stmt *row, int *rank, int *rows)
{
    int rc = KB_OK, s = SQLITE_DONE;
    while (rc == KB_OK && *rank < r->n_cand && (s = sqlite3_step(fts)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(fts, 0);
        double b = sqlite3_column_double(fts, 1);
        (*rows)++;
        if (find_cand(r, id)) continue; /* taken by the previous, shorter pass */
        sqlite3_bind_int64(row, 1, id);
        int t = sqlite3_step(row);
        Cand *c = t == SQLITE_ROW ? add_cand(r, row) : NULL;
        if (t == SQLITE_ROW && c == NULL) rc = store_fail(r->rag, KB_ENOMEM, "out of memory");
        else if (t == SQLITE_ROW) c->bm25_rank = ++*rank, c->bm25 = -b;
        else if (t != SQLITE_DONE) rc = store_sql_fail(r->rag, "cannot read a chunk");
        sqlite3_reset(row);
    }
    if (rc == KB_OK && *rank < r->n_cand && s != SQLITE_DONE) rc = store_sql_fail(r->rag, "keyword search failed");
    return rc;
}

/* The keyword retriever: the question's terms OR-ed, best BM25 first,
** scored by kb_bm25 with the knowledge base's own figures (query_weigh). The
** FTS5 query runs on the index alone: joining every matching row to its
** document to test the knowledge base costs more than ranking it. When
** other knowledge bases take places in the output, it runs again asking for
** four times as many rows (the rows already taken keep their ranks). */
static int keyword_candidates(Retrieval *r)
{
    int rc = query_terms(r->q->text, &r->terms), n_weights = 0;
    if (rc == KB_OK) rc = query_weigh(r->rag, r->kb.id, &r->terms);
    char *match = rc == KB_OK ? query_match(&r->terms) : NULL;
    double *weights = rc == KB_OK ? query_rank_weights(&r->terms, &n_weights) : NULL;
    if (rc == KB_OK && (match == NULL || n_weights < 0)) rc = store_fail(r->rag, KB_ENOMEM, "out of memory");
    sqlite3_stmt *fts = NULL, *row = NULL;
    if (rc == KB_OK && match[0])
        rc = store_prepare(r->rag, "SELECT rowid, kb_bm25(chunks_fts, ?3, ?4) AS b FROM chunks_fts "
                                   "WHERE chunks_fts MATCH ?1 ORDER BY b LIMIT ?2", &fts);
    if (fts)
        rc = store_prepare(r->rag, "SELECT " CAND_COLUMNS " FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                   "WHERE c.id = ?1 AND d.kb_id = ?2", &row);
    int rank = 0;
    for (int64_t limit = r->n_cand; rc == KB_OK && row; limit *= 4) {
        int rows = 0;
        sqlite3_reset(fts);
        sqlite3_bind_text(fts, 1, match, -1, SQLITE_STATIC);
        sqlite3_bind_int64(fts, 2, limit);
        sqlite3_bind_double(fts, 3, r->terms.avgdl);
        sqlite3_bind_blob(fts, 4, weights, n_weights * (int)sizeof *weights, SQLITE_STATIC);
        sqlite3_bind_int64(row, 2, r->kb.id);
        rank = 0;
        for (int i = 0; i < r->n; i++) rank += r->c[i].bm25_rank > 0;
        rc = take_keyword_rows(r, fts, row, &rank, &rows);
        if (rank >= r->n_cand || rows < limit) break; /* enough, or no more rows */
    }
    if (r->info) r->info->n_keyword = rank;
    sqlite3_finalize(fts);
    sqlite3_finalize(row);
    free(match);
    free(weights);
    return rc;
}

/* Adds (or marks) the candidate of a vector hit. */
static int vector_cand(Retrieval *r, sqlite3_stmt *st, const VecHit *h, int rank)
{
    Cand *c = find_cand(r, h->chunk_id);
    if (c == NULL) {
        sqlite3_bind_int64(st, 1, h->chunk_id);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW && (c = add_cand(r, st)) == NULL) return store_fail(r->rag, KB_ENOMEM, "out of memory");
        sqlite3_reset(st);
        if (s != SQLITE_ROW && s != SQLITE_DONE) return store_sql_fail(r->rag, "cannot read a chunk");
        if (c == NULL) return KB_OK; /* deleted since the vectors were loaded */
    }
    c->vec_rank = rank;
    c->cosine = h->score;
    return KB_OK;
}

/* Hybrid search keeps only the vector hits that stand out from the
** question's similarity to the whole knowledge base (all n scores are at
** hand after the product): at least VEC_MIN_Z standard deviations above
** the mean. A vector list always has a first hit, even for a question the
** documents know nothing of, and an embedding model that finds everything
** about equally similar (a weak model, or random weights) would otherwise
** push keyword hits out of the fused top k with noise; gated, it adds
** nothing instead. Returns how many of hits[0..n) (best first) stay. */
static int outstanding(const VecIndex *ix, const VecHit *hits, int n)
{
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < ix->n; i++) sum += ix->scores[i], sq += (double)ix->scores[i] * ix->scores[i];
    double mean = sum / (double)ix->n, var = sq / (double)ix->n - mean * mean, sd = var > 0 ? sqrt(var) : 0;
    int keep = 0;
    while (keep < n && hits[keep].score - mean >= VEC_MIN_Z * sd) keep++;
    return keep;
}

/* The vector retriever: the question's vector against the matrix. */
static int vector_candidates(Retrieval *r)
{
    RagEmbedder *e = r->q->embedder;
    const int dim = r->kb.embed.dim;
    size_t len = strlen(r->q->text);
    float *qv = malloc((size_t)dim * sizeof *qv);
    VecHit *hits = malloc((size_t)r->n_cand * sizeof *hits);
    VecIndex *ix = NULL;
    sqlite3_stmt *st = NULL;
    int rc = qv && hits ? KB_OK : store_fail(r->rag, KB_ENOMEM, "out of memory"), n = 0;
    if (rc == KB_OK && (rc = rag_embed_texts(e, &r->q->text, &len, 1, qv)) != KB_OK)
        store_fail(r->rag, rc, "%s", rag_embedder_errmsg(e));
    if (rc == KB_OK) rc = vec_index_load(r->rag, &r->kb, &ix);
    if (rc == KB_OK) n = vec_index_search(ix, qv, r->n_cand, hits);
    if (rc == KB_OK && r->mode == RAG_MODE_HYBRID) n = outstanding(ix, hits, n);
    if (rc == KB_OK) rc = store_prepare(r->rag, "SELECT " CAND_COLUMNS " FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                                "WHERE c.id = ?1", &st);
    for (int i = 0; i < n && rc == KB_OK; i++) rc = vector_cand(r, st, &hits[i], i + 1);
    if (r->info) r->info->n_vector = n;
    sqlite3_finalize(st);
    free(qv);
    free(hits);
    return rc;
}

/* Relevance, the threshold, and the score each mode ranks by. Candidates
** below the threshold are cleared and removed. */
static void score_candidates(Retrieval *r)
{
    int keep = 0;
    for (int i = 0; i < r->n; i++) {
        Cand *c = &r->c[i];
        double cover = r->terms.n ? query_coverage(&r->terms, c->text) : 0;
        c->relevance = c->vec_rank && c->cosine > cover ? c->cosine : cover;
        if (c->relevance < r->q->threshold) {
            cand_clear(c);
            continue;
        }
        if (r->mode == RAG_MODE_KEYWORD) c->score = c->bm25;
        else if (r->mode == RAG_MODE_VECTOR) c->score = c->cosine;
        else c->score = (c->bm25_rank ? 1.0 / (RRF_K + c->bm25_rank) : 0) + (c->vec_rank ? 1.0 / (RRF_K + c->vec_rank) : 0);
        r->c[keep++] = *c;
    }
    r->n = keep;
}

/* Best first: score, then the better rank in either list, then a keyword
** match, then the chunk id, so the order never depends on chance. */
static int cmp_cand(const void *pa, const void *pb)
{
    const Cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    int ra = a->bm25_rank && (!a->vec_rank || a->bm25_rank < a->vec_rank) ? a->bm25_rank : a->vec_rank;
    int rb = b->bm25_rank && (!b->vec_rank || b->bm25_rank < b->vec_rank) ? b->bm25_rank : b->vec_rank;
    if (ra != rb) return ra < rb ? -1 : 1;
    if ((a->bm25_rank != 0) != (b->bm25_rank != 0)) return a->bm25_rank ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Folds the sorted candidates into at most top_k passages at the front of
** r->c: a neighbour of a passage joins it, an identical text is dropped. */
static int make_passages(Retrieval *r)
{
    int kept = 0;
    for (int i = 0; i < r->n && kept < r->q->top_k; i++) {
        Cand *c = &r->c[i];
        int merged = 0;
        for (int j = 0; j < kept && !merged; j++) {
            merged = passage_merge(&r->c[j], c);
            if (merged < 0) return store_fail(r->rag, KB_ENOMEM, "out of memory");
            if (!merged && strcmp(r->c[j].text, c->text) == 0) merged = 1;
        }
        if (merged) {
            cand_clear(c);
        } else if (i != kept) {
            r->c[kept] = *c;
            memset(c, 0, sizeof *c);
        }
        kept += !merged;
    }
    for (int i = kept; i < r->n; i++) cand_clear(&r->c[i]);
    r->n = kept;
    return KB_OK;
}

/* Completes passages that stop mid-sentence from their next chunk. */
static int expand_passages(Retrieval *r)
{
    sqlite3_stmt *st;
    int rc = store_prepare(r->rag, "SELECT text FROM chunks WHERE doc_id = ?1 AND seq = ?2", &st);
    for (int i = 0; i < r->n && rc == KB_OK; i++) {
        sqlite3_bind_int64(st, 1, r->c[i].doc_id);
        sqlite3_bind_int(st, 2, r->c[i].seq_last + 1);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW) rc = passage_expand(&r->c[i], (const char *)sqlite3_column_text(st, 0));
        else if (s != SQLITE_DONE) rc = store_sql_fail(r->rag, "cannot read a chunk");
        if (rc == KB_ENOMEM) store_fail(r->rag, rc, "out of memory");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Hands the passages over as hits (the strings move). */
static int to_hits(Retrieval *r, RagHit **out, int *n_out)
{
    if (r->n == 0) return KB_OK;
    RagHit *h = calloc((size_t)r->n, sizeof *h);
    if (h == NULL) return store_fail(r->rag, KB_ENOMEM, "out of memory");
    for (int i = 0; i < r->n; i++) {
        Cand *c = &r->c[i];
        h[i] = (RagHit){i + 1, c->score, c->id, c->file, c->page, c->section, c->text, c->bm25_rank, c->vec_rank,
                        c->relevance, c->doc_id, c->seq_first, c->seq_last};
        c->file = c->section = c->text = NULL;
    }
    *out = h;
    *n_out = r->n;
    return KB_OK;
}

/* Decides what runs: vector and hybrid need the model the knowledge base is
** pinned to; hybrid without it is keyword search, with a note saying why. */
static int choose_mode(Retrieval *r)
{
    r->mode = r->q->mode;
    if (r->mode == RAG_MODE_KEYWORD) return KB_OK;
    int rc = embed_check(r->rag, r->name, &r->kb, r->q->embedder);
    if (rc == KB_OK || r->mode == RAG_MODE_VECTOR) return rc;
    if (r->info) snprintf(r->info->note, sizeof r->info->note, "%s", r->rag->errmsg);
    r->rag->errmsg[0] = '\0';
    r->mode = RAG_MODE_KEYWORD;
    return KB_OK;
}

int rag_retrieve(Rag *rag, const char *name, const RagQuery *q, RagHit **out, int *n_out, RagSearchInfo *info)
{
    *out = NULL;
    *n_out = 0;
    RagSearchInfo local;
    Retrieval r = {.rag = rag, .name = name, .q = q, .info = info ? info : &local};
    memset(r.info, 0, sizeof *r.info);
    if (q->top_k < 1) return store_fail(rag, KB_EINVAL, "top-k must be at least 1, got %d", q->top_k);
    if (q->mode == RAG_MODE_WORDS || q->mode > RAG_MODE_HYBRID)
        return store_fail(rag, KB_EINVAL, "rag_retrieve: mode %s is rag_search's", rag_mode_name(q->mode));
    r.n_cand = q->top_k * 4 > CAND_MIN ? q->top_k * 4 : CAND_MIN;
    int rc = store_load_kb(rag, name, &r.kb);
    if (rc == KB_OK) rc = choose_mode(&r);
    r.info->mode = r.mode;
    if (rc == KB_OK && r.mode != RAG_MODE_VECTOR) rc = keyword_candidates(&r);
    if (rc == KB_OK && r.mode != RAG_MODE_KEYWORD) rc = vector_candidates(&r);
    if (rc == KB_OK) {
        score_candidates(&r);
        if (r.n > 1) qsort(r.c, (size_t)r.n, sizeof *r.c, cmp_cand);
        rc = make_passages(&r);
    }
    if (rc == KB_OK && q->expand) rc = expand_passages(&r);
    if (rc == KB_OK) rc = to_hits(&r, out, n_out);
    for (int i = 0; i < r.n; i++) cand_clear(&r.c[i]);
    free(r.c);
    query_free(&r.terms);
    return rc;
}
