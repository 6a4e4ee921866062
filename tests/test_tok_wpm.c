/*
** test_tok_wpm.c: the WordPiece tokenizer (engine/tok_wpm.c, "bert"
** vocabularies) through the public API, tokenizer_load + tokenizer_encode.
**
**   1. llama.cpp's test strings for the bge vocabulary and the Chinese/mixed
**      strings of zh.inp give exactly the shared expected ids (no [CLS]/[SEP]);
**   2. the tiny-bert reference models' sentences give the reference ids with
**      [CLS]/[SEP] added;
**   3. the normalisation rules on hand-made inputs, each expected answer
**      derived from the rules and the vocabulary (tokenizer_find), never from
**      the encoder's own output: case folding, accents, CJK characters one per
**      token, punctuation split, whitespace variants, dropped characters,
**      [UNK] for a word with an unmatched piece, greedy longest match;
**   4. hostile input: random bytes, invalid and overlong UTF-8, a 1 MB word,
**      1 MB of one ideograph, empty input, every allocation failing in turn.
**
** The quirks in 3 (an accent vanishes, "≠" becomes "=", invalid bytes join
** the letters around them) are llama.cpp's, and were checked against its
** tokenizer (release b4753, Feb 2025) when tok_wpm.c was written.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "tests/testutil.h"

#define SEP "\n__ggml_vocab_test__\n"
#define BGE_VOCAB "vocab/ggml-vocab-bert-bge.gguf"
#define ID_UNK 100
#define ID_CLS 101
#define ID_SEP 102

/* --- helpers --- */

static Tokenizer *bge; /* the bge vocabulary, loaded once for the group */

/* Loads the tokenizer of the shared GGUF file rel; fails the test with the
** loader's message when it refuses. The GGUF handle is closed again: the
** Tokenizer keeps copies. */
static Tokenizer *load_tokenizer(const char *rel)
{
    char *path = testutil_data_path(rel);
    char err[512] = "";
    GgufFile *g = NULL;
    Tokenizer *t = NULL;
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc != KB_OK) fail_msg("gguf_open(%s): %s", path, err);
    rc = tokenizer_load(g, &t, err, sizeof err);
    if (rc != KB_OK) fail_msg("tokenizer_load(%s): %s", path, err);
    gguf_close(g);
    free(path);
    assert_int_equal(tokenizer_kind(t), KB_TOK_WPM);
    return t;
}

static int group_setup(void **state)
{
    (void)state;
    bge = load_tokenizer(BGE_VOCAB);
    return bge ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tokenizer_free(bge);
    bge = NULL;
    return 0;
}

/* Encodes s[0..n) with flags into a fresh list, which the caller frees. */
static KbTokens enc_n(const Tokenizer *t, const char *s, size_t n, unsigned flags)
{
    KbTokens ids = {0};
    assert_int_equal(tokenizer_encode(t, s, n, flags, &ids), KB_OK);
    return ids;
}

static KbTokens enc(const char *s)
{
    return enc_n(bge, s, strlen(s), 0);
}

/* Returns the id of vocabulary entry text, failing when it is absent. */
static int32_t id_of(const char *text)
{
    int32_t id = tokenizer_find(bge, text, strlen(text));
    if (id < 0) fail_msg("\"%s\" is not in the bge vocabulary", text);
    return id;
}

/* Asserts that ids holds exactly want[0..n); `what` names the case. */
static void assert_ids(const KbTokens *ids, const int32_t *want, size_t n, const char *what)
{
    for (size_t k = 0; k < n && k < ids->n; k++) {
        if (ids->ids[k] != want[k]) fail_msg("%s: token %zu is %d, expected %d", what, k, ids->ids[k], want[k]);
    }
    if (ids->n != n) fail_msg("%s: %zu tokens, expected %zu", what, ids->n, n);
}

/* Asserts that s encodes to the ids of the vocabulary entries listed after
** it (NULL-terminated). */
static void assert_pieces(const char *s, ...)
{
    int32_t want[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, s);
    for (const char *p; (p = va_arg(ap, const char *)) != NULL;) {
        assert_true(n < 64);
        want[n++] = strcmp(p, "[UNK]") == 0 ? ID_UNK : id_of(p);
    }
    va_end(ap);
    KbTokens ids = enc(s);
    assert_ids(&ids, want, n, s);
    kb_tokens_free(&ids);
}

/* Asserts that a[0..an) and b[0..bn) encode to the same ids, and to at least
** one id. */
static void assert_same_n(const char *a, size_t an, const char *b, size_t bn)
{
    KbTokens x = enc_n(bge, a, an, 0), y = enc_n(bge, b, bn, 0);
    assert_true(y.n > 0);
    assert_ids(&x, y.ids, y.n, a);
    kb_tokens_free(&x);
    kb_tokens_free(&y);
}

static void assert_same(const char *a, const char *b)
{
    assert_same_n(a, strlen(a), b, strlen(b));
}

/* Asserts every id is a valid index into the vocabulary. */
static void assert_ids_in_range(const Tokenizer *t, const KbTokens *ids)
{
    int32_t n_vocab = tokenizer_n_vocab(t);
    for (size_t k = 0; k < ids->n; k++) {
        if (ids->ids[k] < 0 || ids->ids[k] >= n_vocab) fail_msg("token %zu is %d, out of range", k, ids->ids[k]);
    }
}

/* Compares ids with a line of space-separated numbers (extra spaces at
** either end ignored). */
static void assert_ids_line(const KbTokens *ids, const char *line, size_t len, const char *what, size_t case_no)
{
    size_t k = 0;
    const char *p = line, *end = line + len;
    for (;;) {
        while (p < end && *p == ' ') p++;
        if (p == end) break;
        char *next;
        long want = strtol(p, &next, 10);
        if (next == p) fail_msg("%s line %zu: not a number at \"%.20s\"", what, case_no + 1, p);
        if (k >= ids->n || ids->ids[k] != want) {
            fail_msg("%s case %zu: token %zu is %d, expected %ld", what, case_no + 1, k,
                     k < ids->n ? ids->ids[k] : -1, want);
        }
        k++;
        p = next;
    }
    if (k != ids->n) fail_msg("%s case %zu: %zu tokens, expected %zu", what, case_no + 1, ids->n, k);
}

/*
** Encodes every test string of the shared file inp_rel (strings separated by
** SEP, the file ending with it) with flags 0 and compares with the matching
** line of out_rel.
*/
static void check_vocab_file(const char *inp_rel, const char *out_rel)
{
    char *ip = testutil_data_path(inp_rel), *op = testutil_data_path(out_rel);
    size_t ilen, olen;
    char *inp = testutil_read_file(ip, &ilen), *out = testutil_read_file(op, &olen);
    assert_non_null(inp);
    assert_non_null(out);

    const char *p = inp, *end = inp + ilen, *line = out, *oend = out + olen;
    size_t n_cases = 0;
    while (p < end) {
        const char *sep = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
        assert_non_null(sep); /* the file ends with the separator */
        const char *nl = memchr(line, '\n', (size_t)(oend - line));
        size_t llen = nl ? (size_t)(nl - line) : (size_t)(oend - line);
        if (line >= oend) fail_msg("%s: fewer lines than test strings", out_rel);

        KbTokens ids = enc_n(bge, p, (size_t)(sep - p), 0);
        assert_ids_line(&ids, line, llen, inp_rel, n_cases);
        kb_tokens_free(&ids);

        n_cases++;
        p = sep + strlen(SEP);
        line = nl ? nl + 1 : oend;
    }
    assert_true(n_cases > 10);
    free(inp);
    free(out);
    free(ip);
    free(op);
}

/* --- 1. llama.cpp's test vectors --- */

static void test_wpm_bge_test_strings_match_llama_cpp(void **state)
{
    (void)state;
    check_vocab_file("vocab/ggml-vocab-bert-bge.gguf.inp", "vocab/ggml-vocab-bert-bge.gguf.out");
}

static void test_wpm_chinese_and_mixed_strings_match_llama_cpp(void **state)
{
    (void)state;
    check_vocab_file("vocab/zh.inp", "vocab/ggml-vocab-bert-bge.gguf.zh.out");
}

/* --- 2. the tiny-bert reference ids, [CLS] and [SEP] added --- */

/* Checks every `text`/`ids` pair of refs/<name>.ref against models/<name>.gguf. */
static void check_bert_ref(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    Tokenizer *t = load_tokenizer(rel);
    snprintf(rel, sizeof rel, "refs/%s.ref", name);
    char *path = testutil_data_path(rel);
    size_t len;
    char *ref = testutil_read_file(path, &len);
    assert_non_null(ref);

    size_t n_pairs = 0;
    const char *text = NULL;
    size_t text_len = 0;
    for (char *p = ref, *end = ref + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t llen = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (llen >= 5 && memcmp(p, "text ", 5) == 0) {
            text = p + 5;
            text_len = llen - 5;
        } else if (llen >= 4 && memcmp(p, "ids ", 4) == 0) {
            assert_non_null(text);
            KbTokens ids = enc_n(t, text, text_len, KB_TOK_ADD_SPECIAL);
            assert_true(ids.n >= 2);
            assert_int_equal(ids.ids[0], ID_CLS);
            assert_int_equal(ids.ids[ids.n - 1], ID_SEP);
            assert_ids_line(&ids, p + 4, llen - 4, rel, n_pairs);
            kb_tokens_free(&ids);
            n_pairs++;
            text = NULL;
        }
        p = nl ? nl + 1 : end;
    }
    assert_int_equal(n_pairs, 5); /* one per line of refs/tiny-bert.sentences.txt */
    free(ref);
    free(path);
    tokenizer_free(t);
}

static void test_wpm_tiny_bert_ids_match_reference(void **state)
{
    (void)state;
    check_bert_ref("tiny-bert-F16");
    check_bert_ref("tiny-bert-Q8_0");
}

static void test_wpm_empty_text_is_cls_sep_or_nothing(void **state)
{
    (void)state;
    KbTokens ids = enc_n(bge, "", 0, 0);
    assert_int_equal(ids.n, 0);
    kb_tokens_free(&ids);
    ids = enc_n(bge, " \t\n\xE3\x80\x80", 6, KB_TOK_ADD_SPECIAL); /* only whitespace */
    int32_t want[] = {ID_CLS, ID_SEP};
    assert_ids(&ids, want, 2, "whitespace only, with [CLS]/[SEP]");
    kb_tokens_free(&ids);
}

/* --- 3. normalisation, derived from the rules and the vocabulary --- */

static void test_wpm_lowercases_before_matching(void **state)
{
    (void)state;
    assert_pieces("hello", "▁hello", NULL);
    assert_same("HELLO", "hello");
    assert_same("HeLLo WoRLD", "hello world");
    /* Greek and Cyrillic capitals fold too */
    assert_same("ΑΘΗΝΑ", "αθηνα");
    assert_same("МОСКВА", "москва");
}

static void test_wpm_accents_of_precomposed_letters_vanish(void **state)
{
    (void)state;
    /* Each code point maps to the first code point of its canonical
    ** decomposition: "é" (U+00E9) -> "e", "É" -> "E" -> "e". */
    assert_pieces("Café", "▁cafe", NULL);
    assert_same("CAFÉ naïve", "cafe naive");
    /* A combining mark written separately stays in its word: neither
    ** "\xCC\x81" (U+0301) nor "▁e\xCC\x81" is in the vocabulary, so after
    ** "▁e" nothing matches and the word is [UNK]. */
    assert_int_equal(tokenizer_find(bge, "\xCC\x81", 2), -1);
    assert_int_equal(tokenizer_find(bge, "▁e\xCC\x81", 6), -1);
    assert_pieces("e\xCC\x81", "[UNK]", NULL); /* e + U+0301 */
    /* "≠" (U+2260) decomposes to "=" + U+0338, and "=" is an ASCII symbol,
    ** so it stands alone */
    assert_pieces("a≠b", "▁a", "▁=", "▁b", NULL);
}

static void test_wpm_cjk_characters_are_one_token_each(void **state)
{
    (void)state;
    assert_pieces("中文", "▁中", "▁文", NULL);
    assert_pieces("我abc中国人", "▁我", "▁abc", "▁中", "▁国", "▁人", NULL);
    /* an ideograph missing from the vocabulary is a word of its own, so only
    ** it becomes [UNK] */
    assert_int_equal(tokenizer_find(bge, "▁是", strlen("▁是")), -1);
    assert_pieces("我是中", "▁我", "[UNK]", "▁中", NULL);
    /* CJK punctuation is \p{P}: split as well */
    assert_pieces("我，中国。", "▁我", "▁，", "▁中", "▁国", "▁。", NULL);
}

static void test_wpm_punctuation_and_ascii_symbols_split_words(void **state)
{
    (void)state;
    assert_pieces("hello,world", "▁hello", "▁,", "▁world", NULL);
    assert_pieces("a+b=c", "▁a", "▁+", "▁b", "▁=", "▁c", NULL);
    assert_pieces("(x)", "▁(", "▁x", "▁)", NULL);
    assert_pieces("$5", "▁$", "▁5", NULL);
}

static void test_wpm_greedy_longest_match_from_each_position(void **state)
{
    (void)state;
    /* "▁unaffable": the longest entry at the start is "▁una" (the vocabulary
    ** has none of "▁unaf" ... "▁unaffable"), then "ffa" (no "ffab",
    ** "ffabl", "ffable"), then "ble". */
    const char *longer[] = {"▁unaf", "▁unaff", "▁unaffa", "▁unaffab", "▁unaffabl", "▁unaffable",
                            "ffab", "ffabl", "ffable"};
    for (size_t i = 0; i < sizeof longer / sizeof *longer; i++) {
        assert_int_equal(tokenizer_find(bge, longer[i], strlen(longer[i])), -1);
    }
    assert_pieces("unaffable", "▁una", "ffa", "ble", NULL);
}

static void test_wpm_unknown_word_becomes_unk(void **state)
{
    (void)state;
    /* "☃" (U+2603, a symbol above ASCII) joins its word; the vocabulary has
    ** neither "☃" nor "▁☃", so "x☃y" has a position that starts no entry and
    ** the whole word is [UNK], its "▁x" discarded. */
    assert_int_equal(tokenizer_find(bge, "☃", 3), -1);
    assert_int_equal(tokenizer_find(bge, "▁☃", 6), -1);
    assert_pieces("hello x☃y world", "▁hello", "[UNK]", "▁world", NULL);
    assert_pieces("☃", "[UNK]", NULL);
}

static void test_wpm_whitespace_variants_separate_words(void **state)
{
    (void)state;
    const char *variants[] = {
        "hello world",  "  hello   world  ", "hello\tworld", "hello\nworld",  "hello\r\nworld",
        "hello\vworld", "hello\fworld",      "hello\xC2\x85world",  /* U+0085 NEL */
        "hello\xC2\xA0world",                /* U+00A0 no-break space */
        "hello\xE3\x80\x80world",            /* U+3000 ideographic space */
        "hello\xE2\x80\x83world",            /* U+2003 em space */
        "hello\xE2\x80\xA8world",            /* U+2028 line separator */
        "hello\xE1\x9A\x80world",            /* U+1680 ogham space mark */
    };
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        assert_pieces(variants[i], "▁hello", "▁world", NULL);
    }
}

static void test_wpm_controls_and_invalid_bytes_vanish_inside_words(void **state)
{
    (void)state;
    /* dropped without ending the word: C0 controls that are not White_Space,
    ** DEL, format characters (U+200B zero width space, U+00AD soft hyphen),
    ** U+FFFD, and bytes that are not UTF-8 (each reads as U+FFFD) */
    assert_same_n("hel\x01lo", 6, "hello", 5);
    assert_same_n("hel\x00lo", 6, "hello", 5);
    assert_same("hel\x1flo", "hello");
    assert_same("hel\x7flo", "hello");
    assert_same("hel\xE2\x80\x8Blo", "hello");
    assert_same("hel\xC2\xADlo", "hello");
    assert_same("hel\xEF\xBF\xBDlo", "hello");
    assert_same("hel\xFFlo", "hello");
    assert_same("hel\xE2\x80lo", "hello"); /* truncated 3-byte sequence */
    assert_same("hel\x80\x80lo", "hello"); /* lone continuation bytes */
    /* llama.cpp's reader is lax: an overlong "A" (C1 81) is "A" */
    assert_same("\xC1\x81pple", "apple");
}

/* --- 4. hostile input --- */

static void test_wpm_survives_random_bytes(void **state)
{
    (void)state;
    uint64_t x = 0x9E3779B97F4A7C15u;
    char buf[512];
    for (int round = 0; round < 3000; round++) {
        size_t n = (size_t)(round % 257);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* a mix of ASCII, UTF-8 lead and continuation bytes */
            buf[i] = (char)((x >> 32) % 5 == 0 ? ' ' : (x >> 40));
        }
        KbTokens ids = enc_n(bge, buf, n, round & 1 ? KB_TOK_ADD_SPECIAL : 0);
        assert_ids_in_range(bge, &ids);
        kb_tokens_free(&ids);
    }
}

static void test_wpm_survives_invalid_utf8(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "\xC0", "\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80x", /* overlong NUL, surrogate */
        "\xF4\x90\x80\x80", "\xF7\xBF\xBF\xBF", "\xF8\x88\x80\x80\x80", "\xFE\xFF",
        "a\xF0\x9F", "a\xF0\x9F\x98", "\xF0\x9F\x98\x80\xF0", "\xE4\xB8", "\xE4\xB8\xAD\xE4",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        KbTokens ids = enc(cases[i]);
        assert_ids_in_range(bge, &ids);
        kb_tokens_free(&ids);
    }
    /* values above U+10FFFF (llama.cpp aborts on them) are dropped */
    assert_same("x\xF4\x90\x80\x80y", "xy");
}

/* A word of one megabyte (no space to split at) becomes valid pieces. No
** wall-clock bound is asserted (it would depend on the machine's load); a
** quadratic match would not end within the suite at all. */
static void test_wpm_one_megabyte_word_gives_pieces(void **state)
{
    (void)state;
    const size_t n = 1 << 20;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, 'a', n);
    KbTokens ids = enc_n(bge, s, n, 0);
    /* one word of pieces, no [UNK]: "▁a" and "a" are both in the vocabulary */
    assert_true(ids.n > 1 && ids.n <= n);
    assert_ids_in_range(bge, &ids);
    for (size_t k = 0; k < ids.n; k++) assert_int_not_equal(ids.ids[k], ID_UNK);
    kb_tokens_free(&ids);
    free(s);
}

static void test_wpm_one_megabyte_of_one_ideograph(void **state)
{
    (void)state;
    const size_t count = (1 << 20) / 3; /* "中" is 3 bytes */
    char *s = malloc(count * 3);
    assert_non_null(s);
    for (size_t i = 0; i < count; i++) memcpy(s + 3 * i, "中", 3);
    KbTokens ids = enc_n(bge, s, count * 3, 0);
    assert_int_equal(ids.n, count);
    int32_t zhong = id_of("▁中");
    for (size_t k = 0; k < ids.n; k++) assert_int_equal(ids.ids[k], zhong);
    kb_tokens_free(&ids);
    free(s);
}

static void test_wpm_reports_allocation_failures(void **state)
{
    (void)state;
    /* long enough that the word leaves the stack buffer and the id list
    ** grows several times */
    char s[4000];
    for (size_t i = 0; i < sizeof s; i++) s[i] = i % 700 == 699 ? ' ' : "abcdefghij"[i % 10];
    KbTokens want = enc_n(bge, s, sizeof s, 0);
    for (long n = 1; n < 100; n++) {
        KbTokens ids = {0};
        testutil_fail_alloc_after(n);
        int rc = tokenizer_encode(bge, s, sizeof s, 0, &ids);
        testutil_fail_alloc_after(0);
        if (rc == KB_OK) {
            assert_ids(&ids, want.ids, want.n, "after allocation failures");
            kb_tokens_free(&ids);
            break;
        }
        assert_int_equal(rc, KB_ENOMEM);
        kb_tokens_free(&ids);
    }
    kb_tokens_free(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wpm_bge_test_strings_match_llama_cpp),
        cmocka_unit_test(test_wpm_chinese_and_mixed_strings_match_llama_cpp),
        cmocka_unit_test(test_wpm_tiny_bert_ids_match_reference),
        cmocka_unit_test(test_wpm_empty_text_is_cls_sep_or_nothing),
        cmocka_unit_test(test_wpm_lowercases_before_matching),
        cmocka_unit_test(test_wpm_accents_of_precomposed_letters_vanish),
        cmocka_unit_test(test_wpm_cjk_characters_are_one_token_each),
        cmocka_unit_test(test_wpm_punctuation_and_ascii_symbols_split_words),
        cmocka_unit_test(test_wpm_greedy_longest_match_from_each_position),
        cmocka_unit_test(test_wpm_unknown_word_becomes_unk),
        cmocka_unit_test(test_wpm_whitespace_variants_separate_words),
        cmocka_unit_test(test_wpm_controls_and_invalid_bytes_vanish_inside_words),
        cmocka_unit_test(test_wpm_survives_random_bytes),
        cmocka_unit_test(test_wpm_survives_invalid_utf8),
        cmocka_unit_test(test_wpm_one_megabyte_word_gives_pieces),
        cmocka_unit_test(test_wpm_one_megabyte_of_one_ideograph),
        cmocka_unit_test(test_wpm_reports_allocation_failures),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
