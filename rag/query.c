/*
** query.c: a question's keyword terms, their weights and the FTS5 query.
**
** A question is not a keyword list: "How often should the strainer be
** cleaned?" shares "strainer" and "clean" with its answer, and 离线知识库问答
** 需要联网吗 has no spaces at all. So the question goes through the same
** kbcjk tokenizer as the documents (Chinese into character bigrams,
** English into lower-cased words); English stop words and Chinese bigrams
** made of function characters (的, 吗, 怎, 么 ...) are dropped; English words
** of four letters or more are cut to a stem matched as a prefix (clean*
** finds clean, cleaned, cleaning; damag* damage and damaged: the index does
** no stemming). Bigrams that
** straddle two words (知识库问答 gives 库问) match nothing and are dropped
** once their document frequency turns out to be 0. The terms are OR-ed and
** BM25 ranks the chunks, so rare terms weigh most and a chunk need not hold
** every term.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/search.h"
#include "rag/utf8.h"

#define QUERY_COMMON_MIN 1000 /* chunks: below this a term's doclist is cheap whatever its share */

/* --- stop words --- */

static const char *const en_stop[] = {
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been",
    "before", "being", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "done", "each",
    "else", "for", "from", "get", "got", "had", "has", "have", "having", "he", "her", "here", "him", "his", "how",
    "i", "if", "in", "into", "is", "it", "its", "just", "let", "may", "me", "might", "more", "most", "must", "my",
    "no", "not", "now", "of", "on", "one", "only", "or", "other", "our", "out", "over", "please", "shall", "she",
    "should", "so", "some", "such", "tell", "than", "that", "the", "their", "them", "then", "there", "these", "they",
    "this", "those", "to", "too", "under", "up", "us", "very", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "whom", "whose", "why", "will", "with", "would", "you", "your",
};

/* Characters that make a bigram a function-word fragment, not a term. */
static const char *const zh_function_chars[] = {"的", "了", "吗", "呢", "吧", "啊", "么", "哪", "怎", "谁",
                                                "是", "和", "与", "及", "请", "我", "你", "他", "她", "它"};

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_en_stop(const char *w)
{
    return bsearch(&w, en_stop, sizeof en_stop / sizeof en_stop[0], sizeof en_stop[0], cmp_cstr) != NULL;
}

static int has_function_char(const char *t, size_t n)
{
    for (size_t i = 0; i < sizeof zh_function_chars / sizeof zh_function_chars[0]; i++) {
        size_t k = strlen(zh_function_chars[i]);
        for (size_t j = 0; j + k <= n; j++)
            if (memcmp(t + j, zh_function_chars[i], k) == 0) return 1;
    }
    return 0;
}

/* --- terms --- */

void query_free(QTerms *t)
{
    free(t->t);
    memset(t, 0, sizeof *t);
}

/* Appends a term unless it is there already. Returns KB_OK or KB_ENOMEM. */
static int add_term(QTerms *t, const char *text, size_t n, int prefix)
{
    if (n == 0 || n > QTERM_MAX) return KB_OK;
    for (int i = 0; i < t->n; i++)
        if (t->t[i].prefix == prefix && strlen(t->t[i].text) == n && memcmp(t->t[i].text, text, n) == 0) return KB_OK;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        QTerm *x = realloc(t->t, (size_t)cap * sizeof *x);
        if (x == NULL) return KB_ENOMEM;
        t->t = x;
        t->cap = cap;
    }
    QTerm *q = &t->t[t->n++];
    memset(q, 0, sizeof *q);
    memcpy(q->text, text, n);
    q->prefix = prefix;
    return KB_OK;
}

/* The stem of an English word: the commonest inflection endings cut, so
** that a prefix query finds the other forms. Returns the stem's length. */
static size_t en_stem(const char *w, size_t n)
{
    static const struct { const char *end; size_t min; } rules[] = {
        {"ies", 5}, {"ing", 6}, {"ed", 5}, {"es", 5}, {"ly", 6}, {"s", 4}, {"e", 5},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        size_t k = strlen(rules[i].end);
        if (n >= rules[i].min && memcmp(w + n - k, rules[i].end, k) == 0) {
            if (k == 1 && w[n - 2] == 's') return n; /* "class", "process" */
            return n - k;
        }
    }
    return n;
}

/* fts_cjk_tokenize callback: classifies one token of the question. */
static int on_token(void *ctx, int flags, const char *tok, int n, int start, int end)
{
    (void)flags, (void)start, (void)end;
    QTerms *t = ctx;
    size_t adv, len = (size_t)n;
    uint32_t c = utf8_decode(tok, len, &adv);
    if (clean_is_cjk(c)) {
        if (adv == len) return add_term(t, tok, len, 1) == KB_OK ? SQLITE_OK : SQLITE_NOMEM; /* a lone character */
        if (has_function_char(tok, len)) return SQLITE_OK;
        return add_term(t, tok, len, 0) == KB_OK ? SQLITE_OK : SQLITE_NOMEM;
    }
    char w[QTERM_MAX + 1];
    if (len > QTERM_MAX) return SQLITE_OK;
    memcpy(w, tok, len);
    w[len] = '\0';
    if (is_en_stop(w)) return SQLITE_OK;
    if (len < 4) return add_term(t, w, len, 0) == KB_OK ? SQLITE_OK : SQLITE_NOMEM;
    return add_term(t, w, en_stem(w, len), 1) == KB_OK ? SQLITE_OK : SQLITE_NOMEM;
}

int query_terms(const char *q, QTerms *out)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(q);
    if (n > (1u << 20)) n = 1u << 20; /* a question, not a book */
    int s = fts_cjk_tokenize(q, (int)n, 1, out, on_token);
    if (s != SQLITE_OK) {
        query_free(out);
        return KB_ENOMEM;
    }
    return KB_OK;
}

/* --- weights --- */

/* Appends term as a quoted FTS5 phrase, a prefix query when it is one. */
static void append_term(char *buf, const QTerm *t)
{
    strcat(buf, "\"");
    strcat(buf, t->text); /* tokenizer output: letters, digits, CJK; no quote */
    strcat(buf, t->prefix ? "\"*" : "\"");
}

/* Runs a single-integer query with a text parameter ?1 and knowledge base ?2. */
static int count_query(Rag *rag, const char *sql, const char *param, int64_t kb, int64_t *v)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, sql, &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, kb);
    if (sqlite3_step(st) == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
    else rc = store_sql_fail(rag, "cannot count chunks");
    sqlite3_finalize(st);
    return rc;
}

/* PRAGMA data_version: changes when another connection commits. */
static int data_version(Rag *rag, int64_t *v /* OUT */)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "PRAGMA data_version", &st);
    if (rc != KB_OK) return rc;
    if (sqlite3_step(st) == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
    else rc = store_sql_fail(rag, "cannot read the data version");
    sqlite3_finalize(st);
    return rc;
}

/* Counts the chunks of knowledge base kb and their tokens (one look at
** each chunk's size record: linear in the knowledge base, about 1.5 us a
** chunk, so 0.3 s for 200,000 chunks), or takes them from rag->kb_size when
** nothing changed since (a conversation asks many questions). The sum is
** made here: inside an aggregate SQLite no longer hands kb_tokens to FTS5.
** Returns KB_OK or the store_sql_fail code. */
static int kb_size(Rag *rag, int64_t kb, int64_t *n_chunks /* OUT */, double *tokens /* OUT */)
{
    StoreKbSize *c = &rag->kb_size;
    int64_t version = 0, changes = sqlite3_total_changes64(rag->db);
    *n_chunks = 0;
    *tokens = 0;
    int rc = data_version(rag, &version);
    if (rc == KB_OK && c->valid && c->kb == kb && c->data_version == version && c->changes == changes) {
        *n_chunks = c->n_chunks;
        *tokens = c->tokens;
        return KB_OK;
    }
    sqlite3_stmt *st = NULL;
    if (rc == KB_OK)
        rc = store_prepare(rag, "SELECT kb_tokens(chunks_fts) FROM documents d JOIN chunks c ON c.doc_id = d.id "
                                "JOIN chunks_fts ON chunks_fts.rowid = c.id WHERE d.kb_id = ?1", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, kb);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        (*n_chunks)++;
        *tokens += sqlite3_column_double(st, 0);
    }
    if (s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot count the chunks");
    sqlite3_finalize(st);
    if (rc == KB_OK) *c = (StoreKbSize){1, kb, version, changes, *n_chunks, *tokens};
    return rc;
}

/* The chunks of the knowledge base that match ?1. */
#define KB_DF_SQL                                                                                                      \
    "SELECT count(*) FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.doc_id " \
    "WHERE chunks_fts MATCH ?1 AND d.kb_id = ?2"

/* BM25's weight as FTS5 computes it, ln((N - df + 0.5) / (df + 0.5)),
** kept positive (at least 1e-6) for terms in more than half the chunks. */
static double rank_idf(double n, double df)
{
    double w = log((n - df + 0.5) / (df + 0.5));
    return w < 1e-6 ? 1e-6 : w;
}

int query_phrase_weights(Rag *rag, int64_t kb, const char *const *phrases, int n, double *weights, double *avgdl)
{
    int64_t n_docs = 0;
    double tokens = 0;
    int rc = kb_size(rag, kb, &n_docs, &tokens);
    *avgdl = n_docs > 0 ? tokens / (double)n_docs : 0;
    for (int i = 0; i < n && rc == KB_OK; i++) {
        int64_t df = 0;
        rc = count_query(rag, KB_DF_SQL, phrases[i], kb, &df);
        weights[i] = rank_idf((double)(n_docs > df ? n_docs : df), (double)df);
    }
    return rc;
}

int query_weigh(Rag *rag, int64_t kb, QTerms *t)
{
    double tokens = 0;
    int rc = kb_size(rag, kb, &t->n_docs, &tokens);
    t->avgdl = t->n_docs > 0 ? tokens / (double)t->n_docs : 0;
    int keep = 0;
    for (int i = 0; i < t->n && rc == KB_OK && t->n_docs > 0; i++) {
        char match[QTERM_MAX + 16] = "";
        append_term(match, &t->t[i]);
        rc = count_query(rag, KB_DF_SQL, match, kb, &t->t[i].df);
        if (rc != KB_OK || t->t[i].df == 0) continue;
        double n = (double)(t->n_docs > t->t[i].df ? t->n_docs : t->t[i].df), df = (double)t->t[i].df;
        t->t[i].idf = log(1.0 + (n - df + 0.5) / (df + 0.5));
        t->t[i].rank_idf = rank_idf(n, df);
        t->t[keep++] = t->t[i];
    }
    if (rc == KB_OK) t->n = keep;
    return rc;
}

/* True for a term whose doclist is long (more than QUERY_COMMON_MIN chunks)
** and whose weight is low (more than a tenth of all chunks): BM25 would
** score a large part of the database for it and rank little by it. */
static int is_common(const QTerms *t, const QTerm *q)
{
    return q->df > QUERY_COMMON_MIN && q->df * 10 > t->n_docs;
}

/* The number of terms that are not common. */
static int count_rare(const QTerms *t)
{
    int rare = 0;
    for (int i = 0; i < t->n; i++) rare += !is_common(t, &t->t[i]);
    return rare;
}

/* True when term i is in query_match's expression: every term when all
** are common (rare == 0), else the rare ones. */
static int in_match(const QTerms *t, int i, int rare)
{
    return !(rare && is_common(t, &t->t[i]));
}

char *query_match(const QTerms *t)
{
    char *m = malloc((size_t)t->n * (QTERM_MAX + 8) + 1);
    if (m == NULL) return NULL;
    m[0] = '\0';
    int rare = count_rare(t);
    for (int i = 0; i < t->n; i++) {
        if (!in_match(t, i, rare)) continue;
        if (m[0]) strcat(m, " OR ");
        append_term(m, &t->t[i]);
    }
    return m;
}

double *query_rank_weights(const QTerms *t, int *n)
{
    *n = 0;
    if (t->n == 0) return NULL;
    double *w = malloc((size_t)t->n * sizeof *w);
    if (w == NULL) {
        *n = -1;
        return NULL;
    }
    int rare = count_rare(t);
    for (int i = 0; i < t->n; i++)
        if (in_match(t, i, rare)) w[(*n)++] = t->t[i].rank_idf;
    return w;
}

/* --- coverage --- */

typedef struct Cover {
    const QTerms *t;
    unsigned char *hit; /* per term */
} Cover;

/* fts_cjk_tokenize callback: marks the terms a token of the text matches
** (a prefix term any token that starts with it, else the equal token). */
static int on_text_token(void *ctx, int flags, const char *tok, int n, int start, int end)
{
    (void)flags, (void)start, (void)end;
    Cover *c = ctx;
    for (int i = 0; i < c->t->n; i++) {
        const QTerm *q = &c->t->t[i];
        size_t k = strlen(q->text);
        if (c->hit[i] || (size_t)n < k || memcmp(tok, q->text, k) != 0) continue;
        if (q->prefix || (size_t)n == k) c->hit[i] = 1;
    }
    return SQLITE_OK;
}

double query_coverage(const QTerms *t, const char *text)
{
    unsigned char stack[64];
    if (t->n == 0) return 0;
    unsigned char *hit = t->n <= (int)sizeof stack ? stack : calloc((size_t)t->n, 1);
    if (hit == NULL) return 0;
    memset(hit, 0, (size_t)t->n);
    Cover c = {t, hit};
    size_t n = strlen(text);
    fts_cjk_tokenize(text, n > (1u << 24) ? 1 << 24 : (int)n, 0, &c, on_text_token);
    double got = 0, all = 0;
    for (int i = 0; i < t->n; i++) {
        all += t->t[i].idf;
        if (hit[i]) got += t->t[i].idf;
    }
    if (hit != stack) free(hit);
    return all > 0 ? got / all : 0;
}
