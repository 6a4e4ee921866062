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
    return api->xCreateTokenizer(api, FTS_CJK_NAME, NULL, &t, NULL);
}
