/*
** test_tokenizer.c: the tokenizer against llama.cpp's own test vectors, for
** every vocabulary in ../shared/testdata/vocab and the aidreams model, plus
** what all kinds share: special tokens, BOS/EOS, decoding, the streaming
** decoder, hostile input and broken vocabularies.
**
** Expected ids come from the shared .out files (computed with llama.cpp);
** kind-specific behaviour is tested in test_tok_bpe.c and test_tok_wpm.c.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>

#include "engine/engine.h"
#include "tests/ggufgen.h"
#include "tests/testutil.h"

#define SEP "\n__ggml_vocab_test__\n"

/* --- helpers --- */

/* Opens a GGUF from the shared data and loads its tokenizer. */
static Tokenizer *load_vocab(const char *rel, GgufFile **g)
{
    char *path = testutil_data_path(rel);
    char err[512];
    Tokenizer *t = NULL;
    assert_int_equal(gguf_open(path, g, err, sizeof err), KB_OK);
    int rc = tokenizer_load(*g, &t, err, sizeof err);
    if (rc != KB_OK) fail_msg("%s: %s", rel, err);
    free(path);
    return t;
}

/* Tokenizes s[0..n) with flags into a fresh list. */
static KbTokens encode(const Tokenizer *t, const char *s, size_t n, unsigned flags)
{
    KbTokens ids = {0};
    assert_int_equal(tokenizer_encode(t, s, n, flags, &ids), KB_OK);
    return ids;
}

/* Compares ids with one line of space-separated expected ids. */
static void assert_ids_line(const KbTokens *ids, const char *line, size_t line_len, const char *what, size_t case_no)
{
    size_t k = 0;
    const char *p = line, *end = line + line_len;
    while (p < end) {
        while (p < end && *p == ' ') p++;
        if (p == end) break;
        long want = strtol(p, (char **)&p, 10);
        if (k >= ids->n || ids->ids[k] != want)
            fail_msg("%s case %zu: token %zu is %d, expected %ld", what, case_no, k, k < ids->n ? ids->ids[k] : -1,
                     want);
        k++;
    }
    if (k != ids->n) fail_msg("%s case %zu: %zu tokens, expected %zu", what, case_no, ids->n, k);
}

/* Runs every piece of input file `inp` through t and checks it against the
** matching line of `out`; also checks decode(encode(s)) == s when asked.
** Returns the number of cases. */
static size_t check_vocab_file(const Tokenizer *t, const char *inp, const char *out, int round_trip)
{
    char *ip = testutil_data_path(inp), *op = testutil_data_path(out);
    size_t ilen, olen;
    char *in = testutil_read_file(ip, &ilen), *exp = testutil_read_file(op, &olen);
    assert_non_null(in);
    assert_non_null(exp);
    size_t cases = 0, start = 0;
    const char *line = exp;
    while (start < ilen) {
        const char *sep = memmem(in + start, ilen - start, SEP, strlen(SEP));
        size_t end = sep ? (size_t)(sep - in) : ilen;
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        KbTokens ids = encode(t, in + start, end - start, 0);
        assert_ids_line(&ids, line, (size_t)(nl - line), out, cases);
        if (round_trip) {
            char *text;
            size_t tlen;
            assert_int_equal(tokenizer_decode(t, ids.ids, ids.n, 0, &text, &tlen), KB_OK);
            if (tlen != end - start || memcmp(text, in + start, tlen) != 0)
                fail_msg("%s case %zu: decode(encode(s)) = \"%s\"", inp, cases, text);
            free(text);
        }
        kb_tokens_free(&ids);
        line = nl + 1;
        cases++;
        start = sep ? end + strlen(SEP) : ilen;
    }
    assert_int_equal(*line, '\0'); /* no expected line left over */
    free(in), free(exp), free(ip), free(op);
    return cases;
}

/* --- conformance with llama.cpp --- */

static void test_spm_llama_vocab_matches_llama_cpp(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = load_vocab("vocab/ggml-vocab-llama-spm.gguf", &g);
    assert_int_equal(tokenizer_kind(t), KB_TOK_SPM);
    assert_true(check_vocab_file(t, "vocab/ggml-vocab-llama-spm.gguf.inp", "vocab/ggml-vocab-llama-spm.gguf.out", 1) > 30);
    assert_true(check_vocab_file(t, "vocab/zh.inp", "vocab/ggml-vocab-llama-spm.gguf.zh.out", 1) > 10);
    tokenizer_free(t);
    gguf_close(g);
}

/* aidreams has only 512 tokens: most characters go through byte fallback. */
static void test_spm_aidreams_vocab_matches_llama_cpp(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = load_vocab("models/aidreams260K-F32.gguf", &g);
    check_vocab_file(t, "vocab/ggml-vocab-llama-spm.gguf.inp", "vocab/aidreams260K.inp.out", 1);
    check_vocab_file(t, "vocab/zh.inp", "vocab/aidreams260K.zh.out", 1);
    tokenizer_free(t);
    gguf_close(g);
}

static void test_bpe_gpt2_vocab_matches_llama_cpp(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = load_vocab("vocab/ggml-vocab-gpt-2.gguf", &g);
    assert_int_equal(tokenizer_kind(t), KB_TOK_BPE);
    check_vocab_file(t, "vocab/ggml-vocab-gpt-2.gguf.inp", "vocab/ggml-vocab-gpt-2.gguf.out", 1);
    check_vocab_file(t, "vocab/zh.inp", "vocab/ggml-vocab-gpt-2.gguf.zh.out", 1);
    tokenizer_free(t);
    gguf_close(g);
}

/* WordPiece is lossy (lower-casing, spaces): ids only. */
static void test_wpm_bert_vocab_matches_llama_cpp(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = load_vocab("vocab/ggml-vocab-bert-bge.gguf", &g);
    assert_int_equal(tokenizer_kind(t), KB_TOK_WPM);
    check_vocab_file(t, "vocab/ggml-vocab-bert-bge.gguf.inp", "vocab/ggml-vocab-bert-bge.gguf.out", 0);
    check_vocab_file(t, "vocab/zh.inp", "vocab/ggml-vocab-bert-bge.gguf.zh.out", 0);
    tokenizer_free(t);
    gguf_close(g);
}

/* --- special tokens and BOS/EOS --- */

static void test_spm_adds_bos_only_when_asked(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = load_vocab("vocab/ggml-vocab-llama-spm.gguf", &g);
    KbTokens plain = encode(t, "Hello", 5, 0), with = encode(t, "Hello", 5, KB_TOK_ADD_SPECIAL);
    assert_int_equal(with.n, plain.n + 1); /* add_bos_token true, add_eos_token false */
    assert_int_equal(with.ids[0], 1);
    assert_int_equal(tokenizer_bos(t), 1);
    assert_int_equal(tokenizer_eos(t), 2);
    kb_tokens_free(&plain), kb_tokens_free(&with);
    /* empty text: nothing, or just BOS (SentencePiece's own behaviour) */
    KbTokens e = encode(t, "", 0, 0), eb = encode(t, "", 0, KB_TOK_ADD_SPECIAL);
    assert_int_equal(e.n, 0);
    assert_int_equal(eb.n, 1);
    kb_tokens_free(&e), kb_tokens_free(&eb);
    tokenizer_free(t);
    gguf_close(g);
}

/* Control-token text becomes one id only with KB_TOK_PARSE_SPECIAL; the
** text after it starts a new word (SentencePiece space prefix). */
static void test_special_token_text_is_parsed_only_when_asked(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = load_vocab("vocab/ggml-vocab-llama-spm.gguf", &g);
    const char *s = "<s>Hello</s>";
    KbTokens parsed = encode(t, s, strlen(s), KB_TOK_PARSE_SPECIAL);
    KbTokens hello = encode(t, "Hello", 5, 0);
    assert_int_equal(parsed.n, hello.n + 2);
    assert_int_equal(parsed.ids[0], 1);
    assert_memory_equal(parsed.ids + 1, hello.ids, hello.n * sizeof *hello.ids);
    assert_int_equal(parsed.ids[parsed.n - 1], 2);
    KbTokens raw = encode(t, s, strlen(s), 0);
    for (size_t i = 0; i < raw.n; i++) {
        assert_int_not_equal(raw.ids[i], 1);
        assert_int_not_equal(raw.ids[i], 2);
    }
    char *text;
    size_t len;
    assert_int_equal(tokenizer_decode(t, raw.ids, raw.n, 0, &text, &len), KB_OK);
    assert_string_equal(text, s);
    free(text);
    /* control tokens vanish from decoded text unless rendered */
    assert_int_equal(tokenizer_decode(t, parsed.ids, parsed.n, 0, &text, &len), KB_OK);
    assert_string_equal(text, " Hello"); /* the space the first word got is kept after <s> */
    free(text);
    assert_int_equal(tokenizer_decode(t, parsed.ids, parsed.n, KB_DETOK_SPECIAL, &text, &len), KB_OK);
    assert_string_equal(text, "<s> Hello</s>");
    free(text);
    kb_tokens_free(&parsed), kb_tokens_free(&hello), kb_tokens_free(&raw);
    tokenizer_free(t);
    gguf_close(g);
}

static void test_decode_rejects_ids_out_of_range(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = load_vocab("models/aidreams260K-F16.gguf", &g);
    int32_t bad[] = {5, 512};
    char *text = (char *)1;
    size_t len = 1;
    assert_int_equal(tokenizer_decode(t, bad, 2, 0, &text, &len), KB_ERANGE);
    assert_null(text);
    int32_t neg[] = {-1};
    assert_int_equal(tokenizer_decode(t, neg, 1, 0, &text, &len), KB_ERANGE);
    assert_null(tokenizer_piece(t, 512, false, &len));
    tokenizer_free(t);
    gguf_close(g);
}

/* --- streaming --- */

/* Feeds ids one by one; every chunk must be valid UTF-8 on its own and the
** concatenation must equal the full decode. */
static void stream_and_check(const Tokenizer *t, const KbTokens *ids, const char *want)
{
    TokStream s;
    tokstream_init(&s, t, 0);
    char *all = calloc(1, strlen(want) * 4 + 16);
    size_t n = 0;
    for (size_t i = 0; i < ids->n; i++) {
        size_t room = tokstream_room(&s, ids->ids[i]);
        char *chunk = malloc(room);
        long got = tokstream_push(&s, ids->ids[i], chunk, room);
        assert_true(got >= 0);
        assert_true(g_utf8_validate(chunk, got, NULL));
        memcpy(all + n, chunk, (size_t)got);
        n += (size_t)got;
        free(chunk);
    }
    char tail[8];
    assert_int_equal(tokstream_finish(&s, tail, sizeof tail), 0); /* nothing left half-done */
    all[n] = '\0';
    assert_string_equal(all, want);
    free(all);
}

/* aidreams spells Chinese and emoji as <0xNN> byte tokens, so characters
** arrive split across tokens. */
static void test_stream_holds_back_split_characters(void **state)
{
    (void)state;
    GgufFile *g;
    Tokenizer *t = load_vocab("models/aidreams260K-F32.gguf", &g);
    const char *s = "知识库 😀 ok 中文";
    KbTokens ids = encode(t, s, strlen(s), 0);
    assert_true(ids.n > 10); /* byte fallback really happened */
    stream_and_check(t, &ids, s);
    kb_tokens_free(&ids);
    /* a character cut off at the end becomes U+FFFD at finish */
    TokStream st;
    tokstream_init(&st, t, 0);
    char out[64];
    int32_t lead = tokenizer_find(t, "<0xE4>", 6);
    assert_true(lead >= 0);
    assert_int_equal(tokstream_push(&st, lead, out, sizeof out), 0);
    assert_int_equal(tokstream_finish(&st, out, sizeof out), 3);
    assert_string_equal(out, "\xef\xbf\xbd");
    /* a lone continuation byte is replaced at once */
    int32_t cont = tokenizer_find(t, "<0x80>", 6);
    tokstream_init(&st, t, 0);
    assert_int_equal(tokstream_push(&st, cont, out, sizeof out), 3);
    tokenizer_free(t);
    gguf_close(g);
}

/* --- hostile input --- */

static void check_ids_in_range(const Tokenizer *t, const KbTokens *ids)
{
    for (size_t i = 0; i < ids->n; i++) {
        assert_true(ids->ids[i] >= 0);
        assert_true(ids->ids[i] < tokenizer_n_vocab(t));
    }
}

/* Random bytes, invalid UTF-8 and long runs through every kind. */
static void test_every_kind_survives_hostile_text(void **state)
{
    (void)state;
    static const char *const vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                                         "vocab/ggml-vocab-bert-bge.gguf", "models/aidreams260K-F16.gguf"};
    size_t big = 1 << 20;
    char *buf = malloc(big * 3);
    srand(1234);
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        GgufFile *g;
        Tokenizer *t = load_vocab(vocabs[v], &g);
        for (int round = 0; round < 50; round++) {
            size_t n = (size_t)(rand() % 400);
            for (size_t i = 0; i < n; i++) buf[i] = (char)(rand() & 0xff);
            KbTokens ids = encode(t, buf, n, round & 1 ? KB_TOK_PARSE_SPECIAL | KB_TOK_ADD_SPECIAL : 0);
            check_ids_in_range(t, &ids);
            char *text;
            size_t len;
            assert_int_equal(tokenizer_decode(t, ids.ids, ids.n, KB_DETOK_SPECIAL, &text, &len), KB_OK);
            free(text);
            kb_tokens_free(&ids);
        }
        static const char *const bad[] = {"\xff\xfe", "\xc3", "a\xe4\xb8", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            KbTokens ids = encode(t, bad[i], strlen(bad[i]), 0);
            check_ids_in_range(t, &ids);
            kb_tokens_free(&ids);
        }
        memset(buf, 'a', big); /* 1 MB of one letter: one huge word */
        KbTokens ids = encode(t, buf, big, 0);
        assert_true(ids.n > 0);
        check_ids_in_range(t, &ids);
        kb_tokens_free(&ids);
        for (size_t i = 0; i < big; i += 3) memcpy(buf + i, "\xe4\xb8\xad", 3); /* 中 x 349525 */
        ids = encode(t, buf, big - big % 3, 0);
        assert_true(ids.n > 0);
        check_ids_in_range(t, &ids);
        kb_tokens_free(&ids);
        tokenizer_free(t);
        gguf_close(g);
    }
    free(buf);
}

/* --- broken vocabularies --- */

/* Writes gg to a file, opens it and tries to load its tokenizer; returns the
** code, with the message in err. */
static int load_crafted(GgufGen *gg, char *err, size_t errlen)
{
    char *dir = testutil_mkdtemp();
    char *path = testutil_join(dir, "v.gguf");
    size_t len;
    uint8_t *bytes = ggufgen_finish(gg, &len);
    assert_int_equal(testutil_write_file(path, bytes, len), 0);
    GgufFile *g;
    char gerr[256];
    assert_int_equal(gguf_open(path, &g, gerr, sizeof gerr), KB_OK);
    Tokenizer *t = (Tokenizer *)1;
    int rc = tokenizer_load(g, &t, err, errlen);
    if (rc == KB_OK) tokenizer_free(t);
    else assert_null(t);
    gguf_close(g);
    free(bytes);
    testutil_rmtree(dir);
    free(dir), free(path);
    ggufgen_free(gg);
    return rc;
}

static const char *const tiny_tokens[] = {"<unk>", "<s>", "</s>", "a", "b", ("\xe2\x96\x81" "a")};

static GgufGen *tiny_vocab(const char *model)
{
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "tokenizer.ggml.model", model);
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.tokens", tiny_tokens, 6);
    return gg;
}

static void test_broken_vocabularies_give_clear_errors(void **state)
{
    (void)state;
    char err[512];
    /* no tokenizer at all */
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_ENOTFOUND);
    assert_non_null(strstr(err, "tokenizer.ggml.model"));
    /* unknown kind */
    assert_int_equal(load_crafted(tiny_vocab("rwkv"), err, sizeof err), KB_EUNSUPPORTED);
    assert_non_null(strstr(err, "rwkv"));
    /* tokens missing */
    gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "llama");
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.tokens"));
    /* tokens of the wrong type */
    gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "llama");
    ggufgen_kv_str(gg, "tokenizer.ggml.tokens", "abc");
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.tokens"));
    /* scores shorter than tokens */
    gg = tiny_vocab("llama");
    float scores[5] = {0};
    ggufgen_kv_arr(gg, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, 5);
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.scores has 5 entries"));
    /* token types of the wrong element type */
    gg = tiny_vocab("llama");
    float types[6] = {1, 1, 1, 1, 1, 1};
    ggufgen_kv_arr(gg, "tokenizer.ggml.token_type", GGUF_VT_FLOAT32, types, 6);
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.token_type"));
    /* a token type outside 0..6 */
    gg = tiny_vocab("llama");
    int32_t t7[6] = {2, 3, 3, 1, 1, 9};
    ggufgen_kv_arr(gg, "tokenizer.ggml.token_type", GGUF_VT_INT32, t7, 6);
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "token_type[5]"));
    /* a special id beyond the vocabulary */
    gg = tiny_vocab("llama");
    ggufgen_kv_u32(gg, "tokenizer.ggml.eos_token_id", 70000);
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.eos_token_id is 70000"));
    /* a special id of the wrong type */
    gg = tiny_vocab("llama");
    ggufgen_kv_str(gg, "tokenizer.ggml.bos_token_id", "one");
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_EFORMAT);
    /* "none" written as 0xFFFFFFFF is fine */
    gg = tiny_vocab("llama");
    ggufgen_kv_u32(gg, "tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
    assert_int_equal(load_crafted(gg, err, sizeof err), KB_OK);
    /* byte-level BPE without merges */
    assert_int_equal(load_crafted(tiny_vocab("gpt2"), err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "tokenizer.ggml.merges"));
}

/* A crafted vocabulary written to a temporary file and loaded. */
typedef struct Crafted {
    char *dir, *path;
    GgufFile *g;
    Tokenizer *t;
} Crafted;

/* Writes gg's file, opens it and loads its tokenizer (both must work). */
static void crafted_open(GgufGen *gg, Crafted *c)
{
    char err[256];
    size_t len;
    uint8_t *bytes = ggufgen_finish(gg, &len);
    c->dir = testutil_mkdtemp();
    c->path = testutil_join(c->dir, "v.gguf");
    assert_int_equal(testutil_write_file(c->path, bytes, len), 0);
    free(bytes);
    ggufgen_free(gg);
    assert_int_equal(gguf_open(c->path, &c->g, err, sizeof err), KB_OK);
    assert_int_equal(tokenizer_load(c->g, &c->t, err, sizeof err), KB_OK);
}

static void crafted_close(Crafted *c)
{
    tokenizer_free(c->t);
    gguf_close(c->g);
    testutil_rmtree(c->dir);
    free(c->dir), free(c->path);
}

/* A tiny vocabulary with no byte tokens: unknown characters become <unk>. */
static void test_spm_without_byte_tokens_falls_back_to_unk(void **state)
{
    (void)state;
    Crafted c;
    crafted_open(tiny_vocab("llama"), &c);
    KbTokens ids = encode(c.t, "ab\xe4\xb8\xad", 5, 0);
    /* "▁a" then "b" then three unknown bytes */
    int32_t want[] = {5, 4, 0, 0, 0};
    assert_int_equal(ids.n, 5);
    assert_memory_equal(ids.ids, want, sizeof want);
    kb_tokens_free(&ids);
    crafted_close(&c);
}

/* A vocabulary with a token that holds "▁" inside ("a▁b") lets merges cross
** word starts, so the text must be merged as a whole: " a b" becomes
** [▁][a▁b], not [▁a][▁b]. */
static void test_spm_merges_across_words_when_the_vocab_allows(void **state)
{
    (void)state;
    static const char *const toks[] = {"<unk>", "\xe2\x96\x81", "a", "b", "a\xe2\x96\x81", "a\xe2\x96\x81" "b",
                                       "\xe2\x96\x81" "a", "\xe2\x96\x81" "b"};
    float scores[] = {0, -1, -1, -1, -2, -3, -5, -5};
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "llama");
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.tokens", toks, 8);
    ggufgen_kv_arr(gg, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, 8);
    Crafted c;
    crafted_open(gg, &c);
    KbTokens ids = encode(c.t, "a b", 3, 0);
    int32_t want[] = {1, 5};
    assert_int_equal(ids.n, 2);
    assert_memory_equal(ids.ids, want, sizeof want);
    kb_tokens_free(&ids);
    crafted_close(&c);
}

/* Loading survives every allocation failure without leaks. */
static void test_load_survives_allocation_failures(void **state)
{
    (void)state;
    char *path = testutil_data_path("vocab/ggml-vocab-gpt-2.gguf");
    GgufFile *g;
    char err[256];
    assert_int_equal(gguf_open(path, &g, err, sizeof err), KB_OK);
    for (long n = 1;; n++) {
        Tokenizer *t = NULL;
        testutil_fail_alloc_after(n);
        int rc = tokenizer_load(g, &t, err, sizeof err);
        testutil_fail_alloc_after(0);
        if (rc == KB_OK) {
            KbTokens ids = {0};
            testutil_fail_alloc_after(1);
            assert_int_equal(tokenizer_encode(t, "Hello world", 11, 0, &ids), KB_ENOMEM);
            testutil_fail_alloc_after(0);
            kb_tokens_free(&ids);
            tokenizer_free(t);
            break;
        }
        assert_int_equal(rc, KB_ENOMEM);
        assert_null(t);
    }
    gguf_close(g);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_llama_vocab_matches_llama_cpp),
        cmocka_unit_test(test_spm_aidreams_vocab_matches_llama_cpp),
        cmocka_unit_test(test_bpe_gpt2_vocab_matches_llama_cpp),
        cmocka_unit_test(test_wpm_bert_vocab_matches_llama_cpp),
        cmocka_unit_test(test_spm_adds_bos_only_when_asked),
        cmocka_unit_test(test_special_token_text_is_parsed_only_when_asked),
        cmocka_unit_test(test_decode_rejects_ids_out_of_range),
        cmocka_unit_test(test_stream_holds_back_split_characters),
        cmocka_unit_test(test_every_kind_survives_hostile_text),
        cmocka_unit_test(test_broken_vocabularies_give_clear_errors),
        cmocka_unit_test(test_spm_without_byte_tokens_falls_back_to_unk),
        cmocka_unit_test(test_spm_merges_across_words_when_the_vocab_allows),
        cmocka_unit_test(test_load_survives_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
