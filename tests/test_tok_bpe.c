/*
** test_tok_bpe.c: byte-level BPE (engine/tok_bpe.c) through the public API.
**
**   1. the GPT-2 vocabulary gives llama.cpp's ids for every string of the
**      shared test files, and decoding gives the strings back;
**   2. each pre-tokenizer rule splits hand-made text where its regex says.
**      The splits below were derived by hand from llama.cpp's regex strings
**      (src/llama-vocab.cpp), not from our output. They are observed with a
**      crafted vocabulary: the 256 byte-level characters, plus every expected
**      pre-token built up by a chain of merges ("a b", "ab c", ...), plus, at
**      the highest priority, a merge of the two characters on each side of
**      every expected cut. A correct split gives exactly one token per
**      expected pre-token; a missing cut lets a cross merge fire and an
**      extra cut breaks a chain, and either changes the ids;
**   3. llama.cpp's merge rules: ranks, the first of repeated merges,
**      ignore_merges (LLaMA 3 only), the fallback to single-byte tokens,
**      and invalid UTF-8 read as U+FFFD;
**   4. hostile input on the real vocabulary under every rule: random bytes,
**      broken UTF-8, 1 MB runs of one character, empty text; every id in
**      range, and valid UTF-8 always decodes back to itself;
**   5. broken vocabularies: missing or malformed merges, a pre that is not
**      a string; an unknown pre is refused, as llama.cpp refuses it;
**      allocation failures;
**   6. every tokenizer.ggml.pre name llama.cpp knows gives llama.cpp's ids
**      (tests/tokrefs, computed by llama.cpp) on the GPT-2 vocabulary.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/engine.h"
#include "tests/ggufgen.h"
#include "tests/testutil.h"

#define SEP "\n__ggml_vocab_test__\n"

/* --- helpers --- */

/* A growable list of distinct NUL-terminated strings. */
typedef struct StrList {
    char **s;
    size_t n, cap;
} StrList;

static void list_add(StrList *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->s[i], s) == 0) return;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->s = realloc(l->s, l->cap * sizeof *l->s);
        assert_non_null(l->s);
    }
    l->s[l->n] = strdup(s);
    assert_non_null(l->s[l->n]);
    l->n++;
}

static void list_free(StrList *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

/* GPT-2's bytes_to_unicode, written out independently of tok_bpe.c: the
** printable bytes stand for themselves, the others get U+0100 onwards in
** byte order. Writes the UTF-8 of byte b's character into out (NUL-ended). */
static void byte_char(unsigned b, char out[3])
{
    unsigned cp = b, n = 0;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))) {
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) n++;
        cp = 0x100 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = '\0';
    }
}

/* Returns the byte-level text of raw bytes s[0..n) (malloc'd). */
static char *byte_level(const char *s, size_t n)
{
    char *out = malloc(2 * n + 1), c[3];
    assert_non_null(out);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        byte_char((unsigned char)s[i], c);
        strcat(out, c);
    }
    return out;
}

/* Writes a vocabulary-only GGUF: model "gpt2", the given tokens and merges,
** tokenizer.ggml.pre unless NULL. Returns its malloc'd path. */
static char *write_vocab(const char *name, const StrList *tokens, const StrList *merges, const char *pre)
{
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "gpt2");
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "gpt2");
    if (pre) ggufgen_kv_str(gg, "tokenizer.ggml.pre", pre);
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.tokens", (const char *const *)tokens->s, tokens->n);
    if (merges) ggufgen_kv_arr_str(gg, "tokenizer.ggml.merges", (const char *const *)merges->s, merges->n);
    char *path = testutil_join(testutil_scratch(), name);
    assert_int_equal(ggufgen_write(gg, path), 0);
    ggufgen_free(gg);
    return path;
}

/* Opens path and loads its tokenizer, failing the test with the message. */
static Tokenizer *load_path(const char *path, GgufFile **g)
{
    char err[512];
    Tokenizer *t = NULL;
    if (gguf_open(path, g, err, sizeof err) != KB_OK) fail_msg("%s", err);
    if (tokenizer_load(*g, &t, err, sizeof err) != KB_OK) fail_msg("%s", err);
    return t;
}

/* Loads the tokenizer of path; returns its status and message in err. */
static int load_status(const char *path, char *err, size_t errlen)
{
    GgufFile *g;
    Tokenizer *t = NULL;
    assert_int_equal(gguf_open(path, &g, err, errlen), KB_OK);
    int rc = tokenizer_load(g, &t, err, errlen);
    if (rc == KB_OK) tokenizer_free(t);
    else assert_null(t);
    gguf_close(g);
    return rc;
}

static KbTokens encode(const Tokenizer *t, const char *s, size_t n)
{
    KbTokens ids = {0};
    assert_int_equal(tokenizer_encode(t, s, n, 0, &ids), KB_OK);
    return ids;
}

/* The 256 byte-level characters, in byte order (ids 0..255). */
static void add_byte_tokens(StrList *tokens)
{
    for (unsigned b = 0; b < 256; b++) {
        char c[3];
        byte_char(b, c);
        list_add(tokens, c);
    }
}

/* Fills sym with the byte-level characters of the raw bytes of s (one
** malloc'd string each, one BPE symbol each) and returns their count. */
static size_t symbols_of(const char *s, char **sym, size_t cap)
{
    size_t n = strlen(s);
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        sym[i] = malloc(3);
        assert_non_null(sym[i]);
        byte_char((unsigned char)s[i], sym[i]);
    }
    return n;
}

/* Rank of merge "l r" in merges, or -1. */
static long merge_rank(const StrList *merges, const char *l, const char *r)
{
    size_t ll = strlen(l), rl = strlen(r);
    for (size_t i = 0; i < merges->n; i++) {
        const char *m = merges->s[i];
        if (strlen(m) == ll + 1 + rl && memcmp(m, l, ll) == 0 && m[ll] == ' ' && strcmp(m + ll + 1, r) == 0)
            return (long)i;
    }
    return -1;
}

/* Textbook BPE on sym[0..*n): merge the lowest-ranked adjacent pair, the
** leftmost of equals, until none is a merge. Only used to plan the test
** vocabulary (which merges make each piece one token). */
static void plain_bpe(char **sym, size_t *n, const StrList *merges)
{
    for (;;) {
        long best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < *n; i++) {
            long r = merge_rank(merges, sym[i], sym[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r, at = i;
        }
        if (best < 0) return;
        char *j = malloc(strlen(sym[at]) + strlen(sym[at + 1]) + 1);
        assert_non_null(j);
        strcat(strcpy(j, sym[at]), sym[at + 1]);
        free(sym[at]), free(sym[at + 1]);
        sym[at] = j;
        memmove(sym + at + 1, sym + at + 2, (*n - at - 2) * sizeof *sym);
        (*n)--;
    }
}

/* Checks that rule `pre` splits the concatenation of pieces[0..n) exactly
** into those pieces (see the file comment for how). Each piece's merges are
** planned after the earlier ones exist: whatever they already merge in it,
** merges of its first two remaining symbols are added until it is one
** symbol, so every piece becomes its own token and no later merge can touch
** an earlier piece (it is one symbol before their ranks come up). */
static void check_split(const char *pre, const char *const *pieces, size_t n)
{
    StrList tokens = {0}, merges = {0};
    char text[1024] = "", *a[256], *b[256];
    add_byte_tokens(&tokens);
    for (size_t i = 0; i + 1 < n; i++) { /* cross merges first: lowest ranks */
        size_t na = symbols_of(pieces[i], a, 256), nb = symbols_of(pieces[i + 1], b, 256);
        char cross[16];
        snprintf(cross, sizeof cross, "%s %s", a[na - 1], b[0]);
        list_add(&merges, cross);
        for (size_t k = 0; k < na; k++) free(a[k]);
        for (size_t k = 0; k < nb; k++) free(b[k]);
    }
    for (size_t i = 0; i < n; i++) { /* then what makes each piece one token */
        size_t ns = symbols_of(pieces[i], a, 256);
        for (plain_bpe(a, &ns, &merges); ns > 1; plain_bpe(a, &ns, &merges)) {
            char m[1200];
            snprintf(m, sizeof m, "%s %s", a[0], a[1]);
            list_add(&merges, m);
            snprintf(m, sizeof m, "%s%s", a[0], a[1]);
            list_add(&tokens, m);
        }
        free(a[0]);
        strcat(text, pieces[i]);
    }
    char *path = write_vocab("split.gguf", &tokens, &merges, pre);
    GgufFile *g;
    Tokenizer *t = load_path(path, &g);
    KbTokens ids = encode(t, text, strlen(text));
    int ok = ids.n == n;
    for (size_t i = 0; ok && i < n; i++) {
        char *bl = byte_level(pieces[i], strlen(pieces[i]));
        ok = ids.ids[i] == tokenizer_find(t, bl, strlen(bl));
        free(bl);
    }
    if (!ok) {
        char got[2048] = "";
        for (size_t i = 0; i < ids.n && strlen(got) < sizeof got - 64; i++) {
            size_t len;
            const char *tx = tokenizer_text(t, ids.ids[i], &len);
            snprintf(got + strlen(got), sizeof got - strlen(got), "[%.*s]", (int)len, tx);
        }
        fail_msg("pre '%s', text \"%s\": %zu pieces expected, got tokens %s", pre, text, n, got);
    }
    kb_tokens_free(&ids);
    tokenizer_free(t);
    gguf_close(g);
    free(path);
    list_free(&tokens);
    list_free(&merges);
}

#define SPLIT(pre, ...)                                                                                             \
    do {                                                                                                            \
        static const char *const pieces_[] = {__VA_ARGS__};                                                         \
        check_split(pre, pieces_, sizeof pieces_ / sizeof pieces_[0]);                                              \
    } while (0)

/* Writes a copy of the shared GPT-2 vocabulary with tokenizer.ggml.pre set
** to pre; returns its path (malloc'd). */
static char *gpt2_vocab_with_pre(const char *pre)
{
    char *src = testutil_data_path("vocab/ggml-vocab-gpt-2.gguf"), err[512];
    GgufFile *g;
    assert_int_equal(gguf_open(src, &g, err, sizeof err), KB_OK);
    const char *keys[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"};
    StrList lists[2] = {{0}, {0}};
    for (int k = 0; k < 2; k++) {
        int64_t i = gguf_find_key(g, keys[k]);
        GgufValueType et;
        uint64_t n;
        assert_true(i >= 0);
        assert_int_equal(gguf_kv_get_arr(g, i, &et, &n), KB_OK);
        lists[k].s = malloc(n * sizeof(char *));
        assert_non_null(lists[k].s);
        lists[k].cap = n;
        for (uint64_t j = 0; j < n; j++) { /* duplicates kept: no list_add */
            const char *s;
            size_t len;
            assert_int_equal(gguf_arr_get_str(g, i, j, &s, &len), KB_OK);
            lists[k].s[lists[k].n++] = strndup(s, len);
        }
    }
    int64_t ti = gguf_find_key(g, "tokenizer.ggml.token_type");
    GgufValueType et;
    uint64_t nt;
    assert_int_equal(gguf_kv_get_arr(g, ti, &et, &nt), KB_OK);
    int32_t *types = malloc(nt * sizeof *types);
    assert_non_null(types);
    for (uint64_t j = 0; j < nt; j++) {
        int64_t v;
        assert_int_equal(gguf_arr_get_int(g, ti, j, &v), KB_OK);
        types[j] = (int32_t)v;
    }
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "gpt2");
    ggufgen_kv_str(gg, "tokenizer.ggml.pre", pre);
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.tokens", (const char *const *)lists[0].s, lists[0].n);
    ggufgen_kv_arr(gg, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, nt);
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.merges", (const char *const *)lists[1].s, lists[1].n);
    char name[64];
    snprintf(name, sizeof name, "gpt2-%s.gguf", pre);
    char *path = testutil_join(testutil_scratch(), name);
    assert_int_equal(ggufgen_write(gg, path), 0);
    ggufgen_free(gg);
    free(types);
    list_free(&lists[0]);
    list_free(&lists[1]);
    gguf_close(g);
    free(src);
    return path;
}

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Tokenizes s and checks every id is in range and, when round_trip, that
** decoding gives s back. */
static void check_hostile(const Tokenizer *t, const char *s, size_t n, int round_trip, const char *what)
{
    KbTokens ids = encode(t, s, n);
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0 || ids.ids[i] >= tokenizer_n_vocab(t)) fail_msg("%s: id %d out of range", what, ids.ids[i]);
    if (n > 0) assert_true(ids.n > 0);
    if (round_trip) {
        char *text;
        size_t len;
        assert_int_equal(tokenizer_decode(t, ids.ids, ids.n, 0, &text, &len), KB_OK);
        if (len != n || memcmp(text, s, n) != 0) fail_msg("%s: decode(encode(s)) != s", what);
        free(text);
    }
    kb_tokens_free(&ids);
}

/* --- 1. conformance with llama.cpp --- */

/* Checks each string of in[0..ilen) (strings separated by SEP, as in the
** shared .inp files) against the matching line of ids in exp (one line of
** space-separated ids per string) and that decoding gives the string back;
** label names the case in messages. Returns the number of cases. */
static size_t check_ids(const Tokenizer *t, const char *label, const char *in, size_t ilen, const char *exp)
{
    size_t cases = 0, start = 0;
    const char *line = exp;
    while (start < ilen) {
        const char *sep = memmem(in + start, ilen - start, SEP, strlen(SEP));
        size_t end = sep ? (size_t)(sep - in) : ilen, k = 0;
        const char *nl = strchr(line, '\n');
        if (nl == NULL) fail_msg("%s: no ids for case %zu", label, cases);
        KbTokens ids = encode(t, in + start, end - start);
        for (const char *p = line; p < nl;) {
            while (p < nl && *p == ' ') p++;
            if (p == nl) break;
            long want = strtol(p, (char **)&p, 10);
            if (k >= ids.n || ids.ids[k] != want)
                fail_msg("%s case %zu: token %zu is %d, expected %ld", label, cases, k, k < ids.n ? ids.ids[k] : -1,
                         want);
            k++;
        }
        if (k != ids.n) fail_msg("%s case %zu: %zu tokens, expected %zu", label, cases, ids.n, k);
        char *text;
        size_t tlen;
        assert_int_equal(tokenizer_decode(t, ids.ids, ids.n, 0, &text, &tlen), KB_OK);
        if (tlen != end - start || memcmp(text, in + start, tlen) != 0)
            fail_msg("%s case %zu: decode(encode(s)) = \"%s\"", label, cases, text);
        free(text);
        kb_tokens_free(&ids);
        line = nl + 1;
        cases++;
        start = sep ? end + strlen(SEP) : ilen;
    }
    assert_int_equal(*line, '\0');
    return cases;
}

/* check_ids on input file inp and reference file out of the shared data. */
static size_t check_reference(const Tokenizer *t, const char *inp, const char *out)
{
    char *ip = testutil_data_path(inp), *op = testutil_data_path(out);
    size_t ilen, olen;
    char *in = testutil_read_file(ip, &ilen), *exp = testutil_read_file(op, &olen);
    assert_non_null(in);
    assert_non_null(exp);
    size_t cases = check_ids(t, inp, in, ilen, exp);
    free(in), free(exp), free(ip), free(op);
    return cases;
}

static void test_bpe_gpt2_matches_llama_cpp_and_round_trips(void **state)
{
    (void)state;
    char *path = testutil_data_path("vocab/ggml-vocab-gpt-2.gguf");
    GgufFile *g;
    Tokenizer *t = load_path(path, &g);
    assert_int_equal(tokenizer_kind(t), KB_TOK_BPE);
    assert_int_equal(tokenizer_n_vocab(t), 50257);
    assert_null(tokenizer_warning(t));
    assert_true(check_reference(t, "vocab/ggml-vocab-gpt-2.gguf.inp", "vocab/ggml-vocab-gpt-2.gguf.out") > 40);
    assert_true(check_reference(t, "vocab/zh.inp", "vocab/ggml-vocab-gpt-2.gguf.zh.out") > 10);
    tokenizer_free(t);
    gguf_close(g);
    free(path);
}

/* --- 2. pre-tokenizer rules, split by hand from the regexes --- */

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void test_bpe_gpt2_rule_splits(void **state)
{
    (void)state;
    SPLIT("gpt-2", "Hello", " world");
    SPLIT("gpt-2", "I", "'m", " don", "'t", " we", "'ll", " they", "'re");
    SPLIT("gpt-2", "'", "S");                 /* case-sensitive contractions */
    SPLIT("gpt-2", "12345", " abc", " 67");   /* digits in one run */
    SPLIT("gpt-2", "a", " ", " b");           /* \s+(?!\S) leaves one space to the word */
    SPLIT("gpt-2", "x", "!!", " ", " ?");
    SPLIT("gpt-2", "end", "  ");              /* trailing white space: one piece */
    SPLIT("gpt-2", "\n", "\n", "x");          /* only a space joins the next word */
    SPLIT("gpt-2", "中文abc", "，", "é");       /* letters of any script run together */
    SPLIT("gpt-2", "x", "\xc2\xa0", "y");     /* U+00A0 is \s */
    SPLIT("gpt-2", "a", "\xe3\x80\x80", "b"); /* U+3000 too */
}

/* llama.cpp's default (also for a missing pre): [\p{P}\$\+<=>\^~\|]+, then
** GPT-2's regex, then \p{N}+, then [0-9][0-9][0-9] */
static void test_bpe_default_rule_splits(void **state)
{
    (void)state;
    SPLIT("default", "123", "45", " ", "(");
    SPLIT(NULL, "Hello", " ", "(", "12");
    SPLIT("default", "a", "+=", " b", "`", "123", "456", "7", " ", "...", "x");
    SPLIT("default", "\xe4\xbd\xa0", "\xef\xbc\x8c", "\xe2\x82\xac", "x"); /* ，is \p{P}, € is not */
}

/* LLaMA 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
**           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void test_bpe_llama3_rule_splits(void **state)
{
    (void)state;
    SPLIT("llama-bpe", "123", "45");
    SPLIT("llama-bpe", "123", "456", "7", " ", "89");
    SPLIT("llama-bpe", "I", "'M", " You", "'RE", " it", "'s"); /* case-insensitive */
    SPLIT("llama-bpe", "hello", "\n\n", "world");
    SPLIT("llama-bpe", " ?!\n\n", "x");        /* punctuation takes the newlines after it */
    SPLIT("llama-bpe", "a", "1");
    SPLIT("llama-bpe", "\tword", "(x");        /* any non-letter, non-digit prefix */
    SPLIT("llama-bpe", "中文", "，你好");        /* ，is such a prefix */
    SPLIT("llama-bpe", " ", " x");
    SPLIT("llama-bpe", "x", "  \n", " y");     /* \s*[\r\n]+ ends at the last newline */
    SPLIT("llama-bpe", "x", " ");              /* a space ending the text stands alone */
    SPLIT("llama3", "123", "4");               /* other names of the same rule */
    SPLIT("dbrx", "123", "4");
    SPLIT("chatglm-bpe", "123", "45", " ab", "'ll"); /* GLM-4 has LLaMA 3's regex */
}

/* Qwen2: LLaMA 3's regex with \p{N} instead of \p{N}{1,3} */
static void test_bpe_qwen2_rule_splits(void **state)
{
    (void)state;
    SPLIT("qwen2", "1", "2", "3", "4", "5");
    SPLIT("qwen2", "abc", "1", "2", " ", "\xd9\xa3"); /* any \p{N} (here U+0663), one at a time */
    SPLIT("qwen2", "I", "'VE", " x", "\r\n");
    SPLIT("qwen2", "你好", "！\n", "世界"); /* punctuation takes the newline after it */
}

/* DeepSeek LLM: [\r\n], \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+, \s?[!-/:-~！-／：-～‘-‟　-。]+,
** \s+$, [一-龥ࠀ-一가-퟿]+, \p{N}+, each splitting the previous one's pieces */
static void test_bpe_deepseek_llm_rule_splits(void **state)
{
    (void)state;
    SPLIT("deepseek-llm", "Hello", ",", " ", "世界", "123", "\n");
    SPLIT("deepseek-llm", "a", " ", " b");
    SPLIT("deepseek-llm", "x", "  ", "\n", "\n");
    SPLIT("deepseek-llm", "abc", "12345");
    SPLIT("deepseek-llm", "a", "ƻ", "b");           /* U+01BB is outside the letter class */
    SPLIT("deepseek-llm", "你好", "！？");          /* fullwidth punctuation... */
    SPLIT("deepseek-llm", "你好", "！", "‘");       /* ...but U+2018 is also in ࠀ-一 (regex 5) */
    SPLIT("deepseek-llm", "a", "\xe3\x80\x80" "b"); /* U+3000 is only \s */
    /* U+2126 OHM and U+212A KELVIN: letters for regex 2 (" Kelvin"), not
    ** punctuation for regex 3, which has every ASCII letter (":-~": " K",
    ** "elvin"), and inside regex 5's ࠀ-一 (" ", "K") */
    SPLIT("deepseek-llm", "\xe2\x84\xa6", " ", "\xe2\x84\xaa", "elvin");
    SPLIT("deepseek-llm", "한국어", " ", "12");
}

/* BLOOM:  ?[^(\s|.,!?…。，、।۔،)]+ */
static void test_bpe_bloom_rule_splits(void **state)
{
    (void)state;
    SPLIT("bloom", "Hello", ",", " world", ".");
    SPLIT("bloom", "a", " ", " b");
    SPLIT("bloom", "你好", "。", "世界");
    SPLIT("bloom", "12", ",", "345");
    SPLIT("bloom", "x", "\t", "y");            /* only a literal space joins a word */
    SPLIT("bloom", "(", "a", "|", "b", ")…");  /* the excluded characters form gaps */
}

/* --- 3. merging --- */

/* Builds a vocabulary from NULL-terminated lists of extra tokens and merges
** (after the 256 byte characters) and loads it with rule pre. */
static Tokenizer *small_vocab(const char *pre, const char *const *extra, const char *const *merges, GgufFile **g)
{
    StrList tl = {0}, ml = {0};
    add_byte_tokens(&tl);
    for (; extra && *extra; extra++) list_add(&tl, *extra);
    for (; merges && *merges; merges++) { /* keeps duplicates: rank order matters */
        if (ml.n == ml.cap) {
            ml.cap = ml.cap ? 2 * ml.cap : 16;
            ml.s = realloc(ml.s, ml.cap * sizeof *ml.s);
        }
        ml.s[ml.n++] = strdup(*merges);
    }
    char *path = write_vocab("small.gguf", &tl, &ml, pre);
    Tokenizer *t = load_path(path, g);
    free(path);
    list_free(&tl);
    list_free(&ml);
    return t;
}

/* Asserts that encoding s gives the tokens whose texts are listed. */
static void assert_token_texts(const Tokenizer *t, const char *s, size_t n, const char *const *want, size_t nwant)
{
    KbTokens ids = encode(t, s, n);
    if (ids.n != nwant) fail_msg("\"%s\": %zu tokens, expected %zu", s, ids.n, nwant);
    for (size_t i = 0; i < nwant; i++) assert_int_equal(ids.ids[i], tokenizer_find(t, want[i], strlen(want[i])));
    kb_tokens_free(&ids);
}

#define TEXTS(...) ((const char *const[]){__VA_ARGS__}), (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))

/* Lower rank first; a repeated merge keeps its first rank, as
** std::map::emplace does in llama.cpp. */
static void test_bpe_merges_by_rank_first_duplicate_wins(void **state)
{
    (void)state;
    GgufFile *g;
    const char *extra[] = {"ab", "bc", NULL};
    Tokenizer *t = small_vocab("gpt-2", extra, (const char *[]){"b c", "a b", "b c", NULL}, &g);
    assert_token_texts(t, "abc", 3, TEXTS("a", "bc"));
    tokenizer_free(t);
    gguf_close(g);
    t = small_vocab("gpt-2", extra, (const char *[]){"a b", "b c", NULL}, &g);
    assert_token_texts(t, "abc", 3, TEXTS("ab", "c"));
    tokenizer_free(t);
    gguf_close(g);
    /* equal ranks cannot happen; equal pairs go leftmost first */
    t = small_vocab("gpt-2", (const char *[]){"aa", NULL}, (const char *[]){"a a", NULL}, &g);
    assert_token_texts(t, "aaa", 3, TEXTS("aa", "a"));
    tokenizer_free(t);
    gguf_close(g);
}

/* ignore_merges: under LLaMA 3 (only) a pre-token that is a token is taken
** whole, merges or not. */
static void test_bpe_llama3_ignores_merges_for_whole_words(void **state)
{
    (void)state;
    const char *extra[] = {"hello", "\xc4\xa0world", NULL};
    const char *pres[] = {"llama-bpe", "gpt-2", "dbrx", "chatglm-bpe", "qwen2"};
    for (size_t i = 0; i < 5; i++) {
        GgufFile *g;
        Tokenizer *t = small_vocab(pres[i], extra, NULL, &g);
        KbTokens ids = encode(t, "hello world", 11);
        assert_int_equal(ids.n, i == 0 ? 2 : 11);
        if (i == 0) {
            assert_int_equal(ids.ids[0], tokenizer_find(t, "hello", 5));
            assert_int_equal(ids.ids[1], tokenizer_find(t, "\xc4\xa0world", 7));
        }
        kb_tokens_free(&ids);
        tokenizer_free(t);
        gguf_close(g);
    }
}

/* A merged symbol missing from the vocabulary becomes the tokens of its
** single bytes, and bytes without a token vanish, as in llama.cpp. */
static void test_bpe_unknown_symbol_falls_back_to_byte_tokens(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = small_vocab("gpt-2", (const char *[]){NULL}, (const char *[]){"a b", NULL}, &g);
    assert_token_texts(t, "ab", 2, TEXTS("a", "b")); /* "ab" is not a token */
    tokenizer_free(t);
    gguf_close(g);
    /* "Ġ" and "x" merge into "Ġx", not a token; "Ġ" is two bytes that are
    ** not tokens on their own, so the space is lost */
    t = small_vocab("gpt-2", (const char *[]){NULL}, (const char *[]){"\xc4\xa0 x", NULL}, &g);
    assert_token_texts(t, " x", 2, TEXTS("x"));
    tokenizer_free(t);
    gguf_close(g);
}

/* Invalid UTF-8 is read as llama.cpp reads it: a bad byte is U+FFFD (whose
** three bytes are then encoded), an overlong form is its value. */
static void test_bpe_invalid_utf8_reads_as_replacement_character(void **state)
{
    (void)state;
    GgufFile *g;
    const char *fffd = "\xc3\xaf\xc2\xbf\xc2\xbd"; /* byte-level "ï¿½" = EF BF BD */
    Tokenizer *t = small_vocab("gpt-2", (const char *[]){"\xc3\xaf\xc2\xbf", "\xc3\xaf\xc2\xbf\xc2\xbd", NULL},
                               (const char *[]){"\xc3\xaf \xc2\xbf", "\xc3\xaf\xc2\xbf \xc2\xbd", NULL}, &g);
    assert_token_texts(t, "\xff", 1, TEXTS(fffd));
    assert_token_texts(t, "a\x80", 2, TEXTS("a", fffd));        /* a stray continuation byte */
    assert_token_texts(t, "\xe4\xb8", 2, TEXTS(fffd, fffd));    /* a cut sequence: each byte */
    assert_token_texts(t, "\xc0\x80", 2, TEXTS("\xc4\x80"));   /* overlong NUL: byte 0, "Ā" */
    assert_token_texts(t, "\xf4\x90\x80\x80", 4, TEXTS(fffd, fffd, fffd, fffd)); /* above U+10FFFF */
    KbTokens ids = encode(t, "\xff", 1);
    char *text;
    size_t len;
    assert_int_equal(tokenizer_decode(t, ids.ids, ids.n, 0, &text, &len), KB_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(text, "\xef\xbf\xbd", 3);
    free(text);
    kb_tokens_free(&ids);
    tokenizer_free(t);
    gguf_close(g);
}

/* Each byte-level character decodes to its byte (GPT-2's bytes_to_unicode,
** inverted); a character outside that alphabet is kept as it is. */
static void test_bpe_byte_characters_decode_to_their_bytes(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = small_vocab("gpt-2", (const char *[]){"\xe4\xb8\xad", "\xc4\xa0\xe4\xb8\xad", NULL}, NULL, &g);
    for (int b = 0; b < 256; b++) {
        size_t len;
        const char *piece = tokenizer_piece(t, b, false, &len);
        assert_non_null(piece);
        assert_int_equal(len, 1);
        assert_int_equal((unsigned char)piece[0], b);
    }
    size_t len;
    const char *piece = tokenizer_piece(t, tokenizer_find(t, "\xe4\xb8\xad", 3), false, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(piece, "\xe4\xb8\xad", 3);
    piece = tokenizer_piece(t, tokenizer_find(t, "\xc4\xa0\xe4\xb8\xad", 5), false, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(piece, " \xe4\xb8\xad", 4);
    tokenizer_free(t);
    gguf_close(g);
}

/* --- 4. hostile input on the real vocabulary, every rule --- */

static const char *const all_pres[] = {"gpt-2",     "llama-bpe", "qwen2",     "deepseek-llm", "chatglm-bpe",
                                       "bloom",     "default",   "falcon",    "starcoder",    "deepseek-coder",
                                       "deepseek-v3", "tekken",  "gpt-4o",    "chameleon",    "kimi-k2",
                                       "afmoe",     "superbpe",  "exaone-moe", "qwen35",      "youtu"};

/* The first three names run the splitters written as code; the others
** run llama.cpp's regexes through PCRE2, whose long single pieces cost more
** (seconds per megabyte, minutes under the sanitizers): they get 128 KB
** pieces, the code splitters 1 MB. */
#define N_CODE_SPLITTERS 3

static void test_bpe_survives_hostile_input_under_every_rule(void **state)
{
    (void)state;
    char *buf = malloc(3 << 20);
    assert_non_null(buf);
    for (size_t r = 0; r < sizeof all_pres / sizeof all_pres[0]; r++) {
        size_t big = r < N_CODE_SPLITTERS ? 1 << 20 : 128 << 10;
        char *path = gpt2_vocab_with_pre(all_pres[r]);
        GgufFile *g;
        Tokenizer *t = load_path(path, &g);
        assert_null(tokenizer_warning(t));
        check_hostile(t, "", 0, 1, "empty");
        uint64_t seed = 0x9E3779B97F4A7C15ull + r;
        for (size_t i = 0; i < 64 * 1024; i++) buf[i] = (char)rng_next(&seed);
        check_hostile(t, buf, 64 * 1024, 0, "random bytes");
        static const char *const broken[] = {"\x80", "\xbf\xbf", "\xc3", "\xe4\xb8", "\xf0\x9f\x98", "\xff\xfe",
                                             "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf7\xbf\xbf\xbf",
                                             "a\xe4\xb8 b\n\xff'\xc3s", "'", " ", "\r\n"};
        for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++)
            check_hostile(t, broken[i], strlen(broken[i]), 0, "broken UTF-8");
        memset(buf, 'a', big);
        check_hostile(t, buf, big, 1, "a long run of 'a'");
        for (size_t i = 0; i < big; i++) memcpy(buf + 3 * i, "\xe4\xb8\xad", 3);
        check_hostile(t, buf, 3 * big, 1, "a long run of '中'");
        tokenizer_free(t);
        gguf_close(g);
        free(path);
    }
    free(buf);
}

/* Appends the UTF-8 of code point c to s at *n. */
static void put_utf8(char *s, size_t *n, uint32_t c)
{
    if (c < 0x80) {
        s[(*n)++] = (char)c;
    } else if (c < 0x800) {
        s[(*n)++] = (char)(0xC0 | (c >> 6)), s[(*n)++] = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        s[(*n)++] = (char)(0xE0 | (c >> 12)), s[(*n)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        s[(*n)++] = (char)(0x80 | (c & 0x3F));
    } else {
        s[(*n)++] = (char)(0xF0 | (c >> 18)), s[(*n)++] = (char)(0x80 | ((c >> 12) & 0x3F));
        s[(*n)++] = (char)(0x80 | ((c >> 6) & 0x3F)), s[(*n)++] = (char)(0x80 | (c & 0x3F));
    }
}

/* Byte-level BPE loses nothing: any valid UTF-8 decodes back to itself
** when every byte has a token, whatever the rule. */
static void test_bpe_valid_utf8_round_trips_under_every_rule(void **state)
{
    (void)state;
    static const uint32_t pool[] = {'a', 'Z', ' ', ' ', '\n', '\r', '\t', '\'', 's', 'L', '1', '9', '.', ',', '!',
                                    '(', 0xA0, 0x85, 0x3000, 0x2028, 0x4E2D, 0x6587, 0x3002, 0xFF0C, 0xAC00,
                                    0x0661, 0x00B2, 0x00E9, 0x0301, 0x03A9, 0x2126, 0x212A, 0x1F999, 0x200D,
                                    0xFE0F, 0xE000, 0x0378, 0x10FFFF, 0x0964, 0x2026, 0};
    size_t npool = sizeof pool / sizeof pool[0];
    char s[512];
    for (size_t r = 0; r < sizeof all_pres / sizeof all_pres[0]; r++) {
        char *path = gpt2_vocab_with_pre(all_pres[r]);
        GgufFile *g;
        Tokenizer *t = load_path(path, &g);
        uint64_t seed = 12345 + r;
        for (int k = 0; k < 300; k++) {
            size_t n = 0, len = rng_next(&seed) % 60;
            for (size_t i = 0; i < len; i++) put_utf8(s, &n, pool[rng_next(&seed) % npool]);
            check_hostile(t, s, n, 1, all_pres[r]);
        }
        tokenizer_free(t);
        gguf_close(g);
        free(path);
    }
}

/* --- 5. broken vocabularies --- */

static void test_bpe_rejects_missing_or_malformed_merges(void **state)
{
    (void)state;
    StrList tokens = {0}, merges = {0};
    add_byte_tokens(&tokens);
    char err[512];
    char *path = write_vocab("nomerges.gguf", &tokens, NULL, "gpt-2");
    assert_int_equal(load_status(path, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.merges"));
    free(path);

    list_add(&merges, "a b");
    list_add(&merges, "ab");
    path = write_vocab("nospace.gguf", &tokens, &merges, "gpt-2");
    assert_int_equal(load_status(path, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.merges[1]"));
    free(path);
    list_free(&merges);

    list_add(&merges, " a"); /* the space must come after the first byte */
    path = write_vocab("leading.gguf", &tokens, &merges, "gpt-2");
    assert_int_equal(load_status(path, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.merges[0]"));
    free(path);
    list_free(&merges);

    list_add(&merges, " a b"); /* a left part starting with a space is fine */
    path = write_vocab("leading2.gguf", &tokens, &merges, "gpt-2");
    assert_int_equal(load_status(path, err, sizeof err), KB_OK);
    free(path);

    /* merges that are not strings; a pre that is not a string */
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "gpt2");
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.tokens", (const char *const *)tokens.s, tokens.n);
    int32_t nums[2] = {1, 2};
    ggufgen_kv_arr(gg, "tokenizer.ggml.merges", GGUF_VT_INT32, nums, 2);
    path = testutil_join(testutil_scratch(), "intmerges.gguf");
    assert_int_equal(ggufgen_write(gg, path), 0);
    ggufgen_free(gg);
    assert_int_equal(load_status(path, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.merges"));
    free(path);

    gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "gpt2");
    ggufgen_kv_u32(gg, "tokenizer.ggml.pre", 7);
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.tokens", (const char *const *)tokens.s, tokens.n);
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.merges", (const char *const *)merges.s, merges.n);
    path = testutil_join(testutil_scratch(), "intpre.gguf");
    assert_int_equal(ggufgen_write(gg, path), 0);
    ggufgen_free(gg);
    assert_int_equal(load_status(path, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.pre"));
    free(path);
    list_free(&merges);
    list_free(&tokens);
}

/* llama.cpp throws "unknown pre-tokenizer type" for a name it does not
** know; its raw UTF-8 BPE names are known but not implemented here. */
static void test_bpe_refuses_unknown_and_raw_utf8_pre(void **state)
{
    (void)state;
    static const char *const refused[][2] = {{"no-such-rule", "unknown pre-tokenizer 'no-such-rule'"},
                                             {"gemma4", "'gemma4' is BPE over raw UTF-8"},
                                             {"whitespace", "'whitespace' is BPE over raw UTF-8"},
                                             {"GPT-2", "unknown pre-tokenizer 'GPT-2'"}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *path = gpt2_vocab_with_pre(refused[i][0]), err[512];
        assert_int_equal(load_status(path, err, sizeof err), KB_EFORMAT);
        if (strstr(err, refused[i][1]) == NULL) fail_msg("pre '%s': message \"%s\"", refused[i][0], err);
        free(path);
    }
}

/* --- 6. every pre-tokenizer name against llama.cpp --- */

/* tests/tokrefs holds llama.cpp's ids (tests/tokrefs/generate.mjs, `make
** tokenizer-refs`) for strings.inp under every tokenizer.ggml.pre name it
** knows, on the shared GPT-2 vocabulary with that name: one file per group
** of names with equal ids, headed "# pre: NAME ...". Each name is loaded
** and must give those ids exactly. */
static void test_bpe_every_pre_name_matches_llama_cpp(void **state)
{
    (void)state;
    size_t ilen, names = 0;
    char *in = testutil_read_file("tests/tokrefs/strings.inp", &ilen);
    assert_non_null(in);
    GDir *dir = g_dir_open("tests/tokrefs", 0, NULL);
    assert_non_null(dir);
    for (const char *f; (f = g_dir_read_name(dir)) != NULL;) {
        if (!g_str_has_suffix(f, ".ids")) continue;
        char *path = testutil_join("tests/tokrefs", f);
        size_t len;
        char *refs = testutil_read_file(path, &len);
        assert_non_null(refs);
        char *body = strchr(refs, '\n');
        assert_true(strncmp(refs, "# pre: ", 7) == 0 && body != NULL);
        *body++ = '\0';
        for (char *save = NULL, *name = strtok_r(refs + 7, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
            char *vocab = gpt2_vocab_with_pre(name), label[96];
            GgufFile *g;
            Tokenizer *t = load_path(vocab, &g);
            assert_null(tokenizer_warning(t));
            snprintf(label, sizeof label, "pre '%s'", name);
            assert_true(check_ids(t, label, in, ilen, body) > 700);
            tokenizer_free(t);
            gguf_close(g);
            remove(vocab);
            free(vocab);
            names++;
        }
        free(refs);
        free(path);
    }
    g_dir_close(dir);
    free(in);
    assert_true(names >= 86); /* every name of llama.cpp's list but the 4 raw UTF-8 ones */
}

/* Every allocation failure while loading merges or encoding is KB_ENOMEM,
** with nothing leaked (ASan checks) and nothing half-done. */
static void test_bpe_reports_allocation_failures(void **state)
{
    (void)state;
    char *path = gpt2_vocab_with_pre("deepseek-llm");
    char err[512];
    GgufFile *g;
    assert_int_equal(gguf_open(path, &g, err, sizeof err), KB_OK);
    Tokenizer *t = NULL;
    int rc = KB_ENOMEM;
    for (long n = 1; rc == KB_ENOMEM; n++) {
        testutil_fail_alloc_after(n);
        rc = tokenizer_load(g, &t, err, sizeof err);
        testutil_fail_alloc_after(0);
        if (rc != KB_OK) assert_null(t);
        assert_true(rc == KB_OK || rc == KB_ENOMEM);
    }
    const char *s = "Hello, 世界! It's 12345 \xff\n\n  done";
    KbTokens want = encode(t, s, strlen(s));
    rc = KB_ENOMEM;
    for (long n = 1; rc == KB_ENOMEM; n++) {
        KbTokens ids = {0};
        testutil_fail_alloc_after(n);
        rc = tokenizer_encode(t, s, strlen(s), 0, &ids);
        testutil_fail_alloc_after(0);
        assert_true(rc == KB_OK || rc == KB_ENOMEM);
        if (rc == KB_OK) {
            assert_int_equal(ids.n, want.n);
            assert_memory_equal(ids.ids, want.ids, want.n * sizeof *want.ids);
        }
        kb_tokens_free(&ids);
    }
    kb_tokens_free(&want);
    tokenizer_free(t);
    gguf_close(g);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bpe_gpt2_matches_llama_cpp_and_round_trips),
        cmocka_unit_test(test_bpe_gpt2_rule_splits),
        cmocka_unit_test(test_bpe_default_rule_splits),
        cmocka_unit_test(test_bpe_llama3_rule_splits),
        cmocka_unit_test(test_bpe_qwen2_rule_splits),
        cmocka_unit_test(test_bpe_deepseek_llm_rule_splits),
        cmocka_unit_test(test_bpe_bloom_rule_splits),
        cmocka_unit_test(test_bpe_merges_by_rank_first_duplicate_wins),
        cmocka_unit_test(test_bpe_llama3_ignores_merges_for_whole_words),
        cmocka_unit_test(test_bpe_unknown_symbol_falls_back_to_byte_tokens),
        cmocka_unit_test(test_bpe_invalid_utf8_reads_as_replacement_character),
        cmocka_unit_test(test_bpe_byte_characters_decode_to_their_bytes),
        cmocka_unit_test(test_bpe_survives_hostile_input_under_every_rule),
        cmocka_unit_test(test_bpe_valid_utf8_round_trips_under_every_rule),
        cmocka_unit_test(test_bpe_rejects_missing_or_malformed_merges),
        cmocka_unit_test(test_bpe_refuses_unknown_and_raw_utf8_pre),
        cmocka_unit_test(test_bpe_every_pre_name_matches_llama_cpp),
        cmocka_unit_test(test_bpe_reports_allocation_failures),
    };
    return cmocka_run_group_tests(tests, testutil_scratch_setup, testutil_scratch_teardown);
}
