/*
** test_rag_prompt.c: the grounded prompt (rag/prompt.c): the built-in
** templates in the question's language, passages numbered with file and
** page, and the token budget, counted with a real tokenizer (LLaMA's 32000
** SentencePiece vocabulary, ../shared/testdata/vocab/ggml-vocab-llama-spm.gguf,
** BOS included): with a 256-token context the prompt never exceeds the budget,
** the passages kept are always the best-ranked ones, none is cut
** mid-sentence, and when not even the best fits whole only its leading
** sentences are used.
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
#include "rag/rag.h"
#include "tests/testutil.h"

static Tokenizer *tok;

static int group_setup(void **state)
{
    (void)state;
    char *path = testutil_data_path("vocab/ggml-vocab-llama-spm.gguf"), err[256];
    GgufFile *g = NULL;
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc == KB_OK) rc = tokenizer_load(g, &tok, err, sizeof err);
    gguf_close(g);
    free(path);
    return rc == KB_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tokenizer_free(tok);
    return 0;
}

/* RagTokenCountFn: the tokens the model sees, BOS included. */
static int count(const char *text, size_t len, void *user)
{
    (void)user;
    KbTokens t = {0};
    int n = tokenizer_encode(tok, text, len, KB_TOK_ADD_SPECIAL, &t) == KB_OK ? (int)t.n : -1;
    kb_tokens_free(&t);
    return n;
}

static RagHit hit(int rank, const char *file, int page, const char *text)
{
    RagHit h = {0};
    h.rank = rank;
    h.file = (char *)file;
    h.page = page;
    h.section = (char *)"";
    h.text = (char *)text;
    return h;
}

static void test_prompt_language_and_built_in_templates(void **state)
{
    (void)state;
    assert_int_equal(rag_text_lang("离线使用需要联网吗？"), RAG_LANG_ZH);
    assert_int_equal(rag_text_lang("GPU 支持吗"), RAG_LANG_ZH);
    assert_int_equal(rag_text_lang("Does kbchat support 中文?"), RAG_LANG_EN);
    assert_int_equal(rag_text_lang(""), RAG_LANG_EN);
    RagHit h[2] = {hit(1, "/docs/中文/说明.pdf", 2, "检索时先把问题切成二元组，再按相关度排序。"),
                   hit(2, "/docs/notes.txt", 0, "Plain text has no pages.")};
    RagPromptOptions o = {NULL, NULL, NULL, 4096, 512, count, NULL};
    RagPrompt p;
    assert_int_equal(rag_prompt_build("检索是怎么做的？", h, 2, &o, &p), KB_OK);
    assert_int_equal(p.lang, RAG_LANG_ZH);
    assert_int_equal(p.n_passages, 2);
    assert_int_equal(p.cut, 0);
    assert_non_null(strstr(p.text, "【指令】根据已知信息，简洁和专业的来回答问题。"));
    assert_non_null(strstr(p.text, "【已知信息】\n[1] 说明.pdf，第 2 页\n检索时先把问题切成二元组，再按相关度排序。\n\n"
                                   "[2] notes.txt\nPlain text has no pages."));
    assert_non_null(strstr(p.text, "【问题】检索是怎么做的？"));
    assert_int_equal(p.n_tokens, count(p.text, strlen(p.text), NULL));
    rag_prompt_clear(&p);
    assert_int_equal(rag_prompt_build("How does retrieval work?", h, 1, &o, &p), KB_OK);
    assert_int_equal(p.lang, RAG_LANG_EN);
    assert_non_null(strstr(p.text, "[Known information]\n[1] 说明.pdf, page 2\n"));
    assert_non_null(strstr(p.text, "[Question] How does retrieval work?"));
    assert_null(strstr(p.text, "[2]"));
    rag_prompt_clear(&p);
    assert_string_equal(rag_prompt_nothing_found(RAG_LANG_EN), "The knowledge base has nothing on this question.");
    assert_non_null(strstr(rag_prompt_nothing_found(RAG_LANG_ZH), "知识库中没有找到"));
    assert_non_null(strstr(rag_prompt_fallback_label(RAG_LANG_EN), "not from your documents"));
}

static void test_prompt_custom_template_prefix_and_braces(void **state)
{
    (void)state;
    RagHit h[1] = {hit(1, "a.md", 0, "Keep {question} and {context} literal in documents.")};
    RagPromptOptions o = {"Q: {question}\nC: {context}\nA:", "SYSTEM\n", "\nEND", 4096, 100, count, NULL};
    RagPrompt p;
    assert_int_equal(rag_prompt_build("why {context}?", h, 1, &o, &p), KB_OK);
    assert_string_equal(p.text, "SYSTEM\nQ: why {context}?\nC: [1] a.md\nKeep {question} and {context} literal in "
                                "documents.\nA:\nEND");
    rag_prompt_clear(&p);
    o.template_text = "no placeholders";
    assert_int_equal(rag_prompt_build("q", h, 1, &o, &p), KB_EINVAL);
    assert_null(p.text);
    o.template_text = NULL;
    o.n_ctx = 40; /* the template alone does not fit */
    assert_int_equal(rag_prompt_build("q", h, 1, &o, &p), KB_ERANGE);
    assert_null(p.text);
    rag_prompt_clear(&p); /* twice is fine */
}

/* A passage of `sentences` numbered sentences. */
static char *passage(int id, int sentences)
{
    GString *s = g_string_new(NULL);
    for (int i = 0; i < sentences; i++)
        g_string_append_printf(s, "%sPassage %d sentence %d tells something about pumps and valves.", i ? " " : "", id, i);
    return g_string_free(s, FALSE);
}

static void test_prompt_fits_a_256_token_context_dropping_the_lowest_first(void **state)
{
    (void)state;
    enum { N = 8 };
    char *texts[N];
    RagHit h[N];
    for (int i = 0; i < N; i++) {
        texts[i] = passage(i + 1, 1 + i % 3);
        h[i] = hit(i + 1, "/kb/manual.pdf", i + 1, texts[i]);
    }
    for (int64_t reserve = 16; reserve <= 96; reserve += 16) {
        RagPromptOptions o = {NULL, NULL, NULL, 256, reserve, count, NULL};
        RagPrompt p;
        assert_int_equal(rag_prompt_build("Which valve should be opened first?", h, N, &o, &p), KB_OK);
        assert_true(p.n_tokens <= 256 - reserve);
        assert_int_equal(count(p.text, strlen(p.text), NULL), p.n_tokens);
        assert_true(p.n_passages >= 1 && p.n_passages < N);
        /* the best n, whole, in order; nothing of the others */
        for (int i = 0; i < N; i++) {
            char tag[48]; /* room for two ints: no truncation warning at -O1 */
            snprintf(tag, sizeof tag, "[%d] manual.pdf, page %d\n", i + 1, i + 1);
            if (i < p.n_passages) {
                assert_non_null(strstr(p.text, tag));
                assert_non_null(strstr(p.text, texts[i]));
            } else {
                assert_null(strstr(p.text, tag));
                char own[32];
                snprintf(own, sizeof own, "Passage %d ", i + 1);
                assert_null(strstr(p.text, own));
            }
        }
        /* one more passage would not have fitted: the prompt of the best
        ** n + 1, rendered where room is plenty, counted here with the test's
        ** own tokenizer, is over the budget 256 - reserve */
        RagPromptOptions roomy = o;
        roomy.n_ctx = 1 << 20;
        RagPrompt q;
        assert_int_equal(rag_prompt_build("Which valve should be opened first?", h, p.n_passages + 1, &roomy, &q), KB_OK);
        assert_int_equal(q.n_passages, p.n_passages + 1);
        assert_int_equal(q.cut, 0);
        assert_non_null(strstr(q.text, texts[p.n_passages]));
        int with_one_more = count(q.text, strlen(q.text), NULL);
        if (with_one_more <= 256 - reserve)
            fail_msg("reserve %d: %d passages kept, but %d fit (%d tokens)", (int)reserve, p.n_passages,
                     p.n_passages + 1, with_one_more);
        rag_prompt_clear(&q);
        rag_prompt_clear(&p);
    }
    for (int i = 0; i < N; i++) g_free(texts[i]);
}

static void test_prompt_shortens_a_lone_passage_to_whole_sentences(void **state)
{
    (void)state;
    char *big = passage(1, 30);
    RagHit h[2] = {hit(1, "big.pdf", 3, big), hit(2, "small.pdf", 1, "Short.")};
    RagPromptOptions o = {NULL, NULL, NULL, 256, 64, count, NULL};
    RagPrompt p;
    assert_int_equal(rag_prompt_build("What about pumps?", h, 2, &o, &p), KB_OK);
    assert_int_equal(p.n_passages, 1);
    assert_int_equal(p.cut, 1);
    assert_true(p.n_tokens <= 192);
    const char *start = strstr(p.text, "[1] big.pdf, page 3\n");
    assert_non_null(start);
    const char *end = strstr(start, "\n\n[Question]");
    assert_non_null(end);
    assert_true(end[-1] == '.'); /* a whole sentence */
    assert_null(strstr(p.text, "Short.")); /* lower-ranked: left out, not squeezed in */
    assert_int_equal(strncmp(start + strlen("[1] big.pdf, page 3\n"), big, (size_t)(end - start) - strlen("[1] big.pdf, page 3\n")), 0);
    rag_prompt_clear(&p);
    /* a question that leaves no room for even one sentence */
    o.reserve = 200;
    assert_int_equal(rag_prompt_build("What about pumps?", h, 2, &o, &p), KB_ERANGE);
    g_free(big);
}

/* Property: random passages and budgets never overflow, keep a prefix of
** the ranking, and never end a passage mid-sentence. */
static void test_prompt_random_budgets_never_overflow(void **state)
{
    (void)state;
    uint32_t x = 12345;
    for (int round = 0; round < 40; round++) {
        int n = 1 + (int)((x = x * 1664525u + 1013904223u) >> 28);
        char *texts[16];
        RagHit h[16];
        for (int i = 0; i < n; i++) {
            texts[i] = passage(i + 1, 1 + (int)((x = x * 1664525u + 1013904223u) >> 29));
            h[i] = hit(i + 1, "f.txt", 0, texts[i]);
        }
        int64_t ctx = 128 + (int64_t)((x = x * 1664525u + 1013904223u) >> 24) % 400;
        RagPromptOptions o = {NULL, "sys\n", "\n[Answer]", ctx, ctx / 4, count, NULL};
        RagPrompt p;
        int rc = rag_prompt_build("Tell me about valves.", h, n, &o, &p);
        assert_true(rc == KB_OK || rc == KB_ERANGE);
        if (rc == KB_OK) {
            assert_true(p.n_tokens <= ctx - ctx / 4);
            for (int i = 0; i < p.n_passages - (p.cut ? 1 : 0); i++) assert_non_null(strstr(p.text, texts[i]));
            if (p.n_passages < n) {
                char tag[32];
                snprintf(tag, sizeof tag, "[%d] f.txt", p.n_passages + 1);
                assert_null(strstr(p.text, tag));
            }
            rag_prompt_clear(&p);
        }
        for (int i = 0; i < n; i++) g_free(texts[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_language_and_built_in_templates),
        cmocka_unit_test(test_prompt_custom_template_prefix_and_braces),
        cmocka_unit_test(test_prompt_fits_a_256_token_context_dropping_the_lowest_first),
        cmocka_unit_test(test_prompt_shortens_a_lone_passage_to_whole_sentences),
        cmocka_unit_test(test_prompt_random_budgets_never_overflow),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
