/*
** fts_cjk.c: the FTS5 tokenizer "kbcjk", which makes keyword search work for
** Chinese, Japanese and Korean as well as for English.
**
** Chinese has no spaces, and SQLite's unicode61 tokenizer makes a whole
** sentence one token; the built-in trigram tokenizer cannot match words of
** one or two characters, the commonest length of Chinese words. So:
**
**   - a run of CJK characters c0 c1 ... cn-1 becomes the overlapping bigrams
**     c0c1, c1c2, ... at consecutive positions; a query for a word of two to
**     n characters is then the phrase of its bigrams, which matches exactly
**     where the word occurs. The run's last character is also indexed alone,
**     colocated with the last bigram (FTS5_TOKEN_COLOCATED), so that every
**     character starts some token and a one-character query "c*" (a prefix
**     query, which rag/search.c builds) finds it anywhere. Queries do not get
**     that extra token, or a two-character word would demand it.
**     A run of one character is that character.
**   - other letters and digits make words, lower-cased (so matching ignores
**     case), full-width ASCII (ＡＢＣ１２３) folded to ASCII; no stemming.
**   - everything else (spaces, punctuation, symbols) separates tokens.
**
** Two auxiliary functions rank within one knowledge base (all share the
** one FTS5 table, and FTS5's own bm25() takes its row count, document
** frequencies and average length from the whole table, so scores drifted
** with other knowledge bases and with deleted history):
**   kb_bm25(chunks_fts, avgdl, idf)  BM25 (k1 = 1.2, b = 0.75, as FTS5's)
**       with the caller's average row length in tokens and per-phrase idf
**       (a blob of doubles, native order, one per phrase of the MATCH);
**       negated like bm25(), so ORDER BY ascending puts the best first;
**   kb_tokens(chunks_fts)  the row's length in tokens, to compute avgdl.
**
** Registered per connection by fts_cjk_register(); a database using it
** cannot be searched by a SQLite shell that lacks it (reading the ordinary
** tables still works).
*/
#include <string.h>

#include <glib.h>
#include <sqlite3.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/store.h"
#include "rag/utf8.h"

#define WORD_MAX 128 /* bytes of a word token kept; longer words are cut (but still match by prefix) */

typedef int (*TokenFn)(void *, int, const char *, int, int, int);

/* FTS5 wants a tokenizer object; this one has no state. */
static int cjk_create(void *ctx, const char **args, int n_args, Fts5Tokenizer **out)
{
    (void)ctx, (void)args, (void)n_args;
    static const char stateless = 0; /* FTS5 wants a non-NULL object; never written */
    *out = (Fts5Tokenizer *)(uintptr_t)&stateless;
    return SQLITE_OK;
}

static void cjk_delete(Fts5Tokenizer *t)
{
    (void)t;
}

/* Full-width ASCII variants (U+FF01..U+FF5E) as their ASCII selves. */
static uint32_t fold_width(uint32_t c)
{
    return c >= 0xFF01 && c <= 0xFF5E ? c - 0xFEE0 : c;
}

static int is_word_cp(uint32_t c)
{
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    return !clean_is_cjk(c) && (g_unichar_isalnum(c) || g_unichar_ismark(c));
}

/* Emits the word starting at t[i]; returns the index after it. */
static int emit_word(const char *t, int n, int i, void *ctx, TokenFn token, int *rc)
{
    char buf[WORD_MAX + 4];
    int start = i, len = 0;
    while (i < n) {
        size_t adv;
        uint32_t c = fold_width(utf8_decode(t + i, (size_t)(n - i), &adv));
        if (!is_word_cp(c)) break;
        if (len < WORD_MAX) {
            if (c < 0x80) buf[len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            else len += g_unichar_to_utf8(g_unichar_tolower(c), buf + len); /* a valid code point: 4 bytes at most */
        }
        i += (int)adv;
    }
    *rc = token(ctx, 0, buf, len, start, i);
    return i;
}

/* Emits the bigrams of the CJK run starting at t[i] (see the file comment);
** returns the index after the run. */
static int emit_cjk_run(const char *t, int n, int i, int query, void *ctx, TokenFn token, int *rc)
{
    int prev = -1, prev_len = 0, count = 0;
    *rc = SQLITE_OK;
    while (i < n && *rc == SQLITE_OK) {
        size_t adv;
        uint32_t c = utf8_decode(t + i, (size_t)(n - i), &adv);
        if (!clean_is_cjk(c)) break;
        if (prev >= 0) *rc = token(ctx, 0, t + prev, i + (int)adv - prev, prev, i + (int)adv);
        prev = i;
        prev_len = (int)adv;
        count++;
        i += (int)adv;
    }
    if (*rc == SQLITE_OK && prev >= 0 && (count == 1 || !query))
        *rc = token(ctx, count == 1 ? 0 : FTS5_TOKEN_COLOCATED, t + prev, prev_len, prev, prev + prev_len);
    return i;
}

static int cjk_tokenize(Fts5Tokenizer *tok, void *ctx, int flags, const char *text, int n, TokenFn token)
{
    (void)tok;
    int query = (flags & FTS5_TOKENIZE_QUERY) != 0, rc = SQLITE_OK;
    for (int i = 0; i < n && rc == SQLITE_OK;) {
        size_t adv;
        uint32_t c = utf8_decode(text + i, (size_t)(n - i), &adv);
        if (clean_is_cjk(c)) i = emit_cjk_run(text, n, i, query, ctx, token, &rc);
        else if (is_word_cp(fold_width(c))) i = emit_word(text, n, i, ctx, token, &rc);
        else i += (int)adv;
    }
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int fts_cjk_tokenize(const char *text, int n, int query, void *ctx, int (*token)(void *, int, const char *, int, int, int))
{
    return cjk_tokenize(NULL, ctx, query ? FTS5_TOKENIZE_QUERY : FTS5_TOKENIZE_DOCUMENT, text, n, token);
}

/* --- ranking within a knowledge base --- */

#define BM25_K1 1.2
#define BM25_B 0.75

/* kb_tokens(chunks_fts): the current row's token count. */
static void aux_tokens(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int n_val,
                       sqlite3_value **val)
{
    (void)val;
    int n = 0;
    int rc = n_val == 0 ? api->xColumnSize(fts, 0, &n) : SQLITE_ERROR;
    if (rc == SQLITE_OK) sqlite3_result_int(ctx, n);
    else sqlite3_result_error(ctx, "kb_tokens(chunks_fts) takes no other argument", -1);
}

/* kb_bm25(chunks_fts, avgdl, idf): the current row's BM25 score, negated.
** A phrase without an idf in the blob weighs 0. Assumes one column. */
static void aux_bm25(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int n_val,
                     sqlite3_value **val)
{
    if (n_val != 2) {
        sqlite3_result_error(ctx, "kb_bm25(chunks_fts, avgdl, idf) takes two arguments", -1);
        return;
    }
    double avgdl = sqlite3_value_double(val[0]);
    const unsigned char *idf = sqlite3_value_blob(val[1]);
    int n_idf = sqlite3_value_bytes(val[1]) / (int)sizeof(double);
    int n_phrase = api->xPhraseCount(fts), n_inst = 0, dl = 0;
    int rc = api->xInstCount(fts, &n_inst);
    if (rc == SQLITE_OK) rc = api->xColumnSize(fts, 0, &dl);
    int *tf = rc == SQLITE_OK ? sqlite3_malloc64((sqlite3_uint64)(n_phrase + 1) * sizeof *tf) : NULL;
    if (rc == SQLITE_OK && tf == NULL) rc = SQLITE_NOMEM;
    if (tf) memset(tf, 0, (size_t)(n_phrase + 1) * sizeof *tf);
    for (int i = 0; i < n_inst && rc == SQLITE_OK; i++) {
        int phrase, col, off;
        rc = api->xInst(fts, i, &phrase, &col, &off);
        if (rc == SQLITE_OK && phrase >= 0 && phrase < n_phrase) tf[phrase]++;
    }
    double score = 0, norm = BM25_K1 * (1 - BM25_B + BM25_B * (avgdl > 0 ? dl / avgdl : 1));
    for (int p = 0; p < n_phrase && p < n_idf && rc == SQLITE_OK; p++) {
        double w;
        memcpy(&w, idf + (size_t)p * sizeof w, sizeof w); /* the blob need not be aligned */
        score += w * tf[p] * (BM25_K1 + 1) / (tf[p] + norm);
    }
    sqlite3_free(tf);
    if (rc == SQLITE_OK) sqlite3_result_double(ctx, -score);
    else sqlite3_result_error_code(ctx, rc);
}

int fts_cjk_register(sqlite3 *db)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (api == NULL) return SQLITE_ERROR;
    fts5_tokenizer t = {cjk_create, cjk_delete, cjk_tokenize};
    rc = api->xCreateTokenizer(api, FTS_CJK_NAME, NULL, &t, NULL);
    if (rc == SQLITE_OK) rc = api->xCreateFunction(api, "kb_bm25", NULL, aux_bm25, NULL);
    if (rc == SQLITE_OK) rc = api->xCreateFunction(api, "kb_tokens", NULL, aux_tokens, NULL);
    return rc;
}
