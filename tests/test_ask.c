/*
** test_ask.c: `kbchat ask` and the vector side of `kbchat kb`, run as a
** user runs them ($KBCHAT_BIN in a sandbox whose HOME and working directory
** are a fresh folder, with ./config.yaml), over the question fixture
** (tests/ragqa.h):
**   - ask with the aidreams chat model: the prompt holds the numbered
**     passages, the answer streams, then "Sources:";
**   - strict mode when nothing matches (no model is even opened), the
**     --fallback model label, --retrieve-only --json without a chat model,
**     --json answers, usage errors, a context too small;
**   - a knowledge base pinned to tiny-bert: kb status, kb search --mode
**     vector/hybrid, another configured model refused with the remedy,
**     kb rebuild, and embedding.model "chat".
*/
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "tests/ggufgen.h"
#include "tests/ragfix.h"
#include "tests/ragqa.h"
#include "tests/testutil.h"

typedef struct Sandbox {
    TestSandbox box;
    char *aidreams, *f16, *q8;
} Sandbox;

static int sandbox_setup(void **state)
{
    Sandbox *sb = calloc(1, sizeof *sb);
    *state = sb;
    if (sb == NULL || testutil_sandbox_open(&sb->box) != 0 || !ragfix_have_font()) return -1;
    sb->aidreams = testutil_data_path("models/aidreams260K-F32.gguf");
    sb->f16 = testutil_data_path("models/tiny-bert-F16.gguf");
    sb->q8 = testutil_data_path("models/tiny-bert-Q8_0.gguf");
    return ragqa_write_documents(sb->box.docs) == 0 ? 0 : -1;
}

static int sandbox_teardown(void **state)
{
    Sandbox *sb = *state;
    testutil_sandbox_close(&sb->box);
    free(sb->aidreams), free(sb->f16), free(sb->q8);
    free(sb);
    return 0;
}

#define KB(sb, ...) TESTUTIL_KB(&(sb)->box, __VA_ARGS__)

/* Writes ./config.yaml: small chunks, the aidreams chat model with a
** template short enough for its 128-token context, greedy answers. */
static void write_config(Sandbox *sb, const char *embedding)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n  path: \"%s\"\n  threads: 1\n"
             "embedding:\n  model: \"%s\"\n"
             "chunking:\n  size: 100\n  overlap: 20\n"
             "sampling:\n  temperature: 0\n  max_tokens: 16\n"
             "prompt:\n  template: \"{context}\\nQ: {question}\\nA:\"\n",
             sb->aidreams, embedding);
    char *p = testutil_join(sb->box.dir, "config.yaml");
    assert_int_equal(testutil_write_file(p, yaml, strlen(yaml)), 0);
    free(p);
}

static void make_kb(Sandbox *sb, const char *name)
{
    TestRun r = KB(sb, "kb", "create", name, "--folder", "docs");
    testutil_expect(&r, 0, "created knowledge base", NULL);
    r = KB(sb, "kb", "sync", name);
    testutil_expect(&r, 0, "7 indexed", NULL);
}

/* --- ask with a keyword-only knowledge base --- */

static void test_ask_answers_with_numbered_passages_and_sources(void **state)
{
    Sandbox *sb = *state;
    write_config(sb, "none");
    make_kb(sb, "qa");
    TestRun r = KB(sb, "ask", "--show-prompt", "How often should the strainer be cleaned?");
    if (r.status != 0) fail_msg("ask: %s", r.err);
    /* the prompt: numbered passages with file and page, then the question */
    assert_non_null(strstr(r.err, "--- prompt ("));
    assert_non_null(strstr(r.err, "[1] pump.pdf, page "));
    assert_non_null(strstr(r.err, "Clean the strainer every month"));
    assert_non_null(strstr(r.err, "\nQ: How often should the strainer be cleaned?\nA:"));
    assert_non_null(strstr(r.err, "keyword search only")); /* the note: no vectors */
    /* the answer, then the sources */
    char *src = strstr(r.out, "\n\nSources:\n[1] ");
    assert_non_null(src);
    assert_true(src > r.out); /* something was generated before */
    assert_non_null(strstr(src, "/docs/pump.pdf, page "));
    assert_non_null(strstr(src, "\n    "));
    testutil_run_free(&r);
    /* --json: one object, grounded, with the sources */
    r = KB(sb, "ask", "--json", "--kb", "qa", "Where is the serial number printed?");
    testutil_expect(&r, 0, "\"grounded\": true, \"answer\": \"", NULL);
    r = KB(sb, "ask", "--json", "Where is the serial number printed?");
    testutil_expect(&r, 0, "\"sources\": [\n  {\"rank\": 1, ", NULL);
    /* a Chinese passage is some 300 tokens in this model's 512-token vocabulary: no room */
    r = KB(sb, "ask", "离线使用时需要联网吗？");
    testutil_expect(&r, 1, NULL, "cannot hold the prompt with even one passage");
}

/* Ctrl-C (SIGINT) while the grounded prompt is evaluated: KBCHAT_TEST_HOLD_PROMPT
** holds the evaluation after its batch (writing go.held) and SIGINT is sent
** then. ask stops at once: exit 130 with a message (death by the signal
** would also be 130, without it), no sources. */
static void test_ask_ctrl_c_during_the_prompt_stops_it(void **state)
{
    Sandbox *sb = *state;
    write_config(sb, "none");
    make_kb(sb, "qa");
    char env_home[700], hold[700];
    snprintf(env_home, sizeof env_home, "HOME=%s", sb->box.home);
    snprintf(hold, sizeof hold, "KBCHAT_TEST_HOLD_PROMPT=%s/go", sb->box.dir);
    char *held = testutil_join(sb->box.dir, "go.held");
    const char *argv[] = {sb->box.bin, "ask", "How often should the strainer be cleaned?", NULL};
    const char *env[] = {env_home, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "KBCHAT_CONFIG=", hold, NULL};
    TestRun r;
    assert_int_equal(testutil_run_signal(argv, env, sb->box.dir, 60, held, SIGINT, &r.out, &r.err, &r.status), 0);
    free(held);
    assert_null(strstr(r.out, "Sources:"));
    testutil_expect(&r, 130, NULL, "kbchat: ask: stopped by Ctrl-C\n");
}

static void test_ask_strict_mode_and_fallback(void **state)
{
    Sandbox *sb = *state;
    write_config(sb, "none");
    make_kb(sb, "qa");
    /* nothing matches: said so, and no model is opened (this one does not exist) */
    TestRun r = KB(sb, "--model", "/nonexistent/model.gguf", "ask", "zeppelin airship");
    testutil_expect(&r, 0, "The knowledge base has nothing on this question.\n", NULL);
    r = KB(sb, "--model", "/nonexistent/model.gguf", "ask", "飞艇在哪里起飞？");
    testutil_expect(&r, 0, "知识库中没有找到与这个问题相关的内容。", NULL);
    r = KB(sb, "--model", "/nonexistent/model.gguf", "ask", "--json", "zeppelin");
    testutil_expect(&r, 0, "\"grounded\": false, \"answer\": \"The knowledge base has nothing on this question.\"", NULL);
    /* --fallback model: the model answers, labelled */
    r = KB(sb, "ask", "--fallback", "model", "zeppelin airship");
    testutil_expect(&r, 0, "(Nothing in the knowledge base matched: this answer is the model's own, not from your documents.)\n",
           NULL);
    r = KB(sb, "ask", "--fallback", "maybe", "x");
    testutil_expect(&r, 2, NULL, "--fallback: expected strict or model");
}

static void test_ask_retrieve_only_json_loads_no_chat_model(void **state)
{
    Sandbox *sb = *state;
    write_config(sb, "none");
    make_kb(sb, "qa");
    TestRun r = KB(sb, "--model", "/nonexistent/model.gguf", "ask", "--retrieve-only", "--json", "--top-k", "2",
               "Where is the serial number printed?");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "[\n  {\"rank\": 1, \"score\": "));
    assert_non_null(strstr(r.out, "readme.md\", \"page\": null, \"chunk_id\": "));
    assert_non_null(strstr(r.out, "\"bm25_rank\": 1, \"vector_rank\": null, \"relevance\": "));
    assert_non_null(strstr(r.out, "label under the lid"));
    assert_null(strstr(r.out, "\"rank\": 3"));
    testutil_run_free(&r);
    r = KB(sb, "--model", "/nonexistent/model.gguf", "ask", "--retrieve-only", "检索时问题是怎么处理的？");
    testutil_expect(&r, 0, "说明.pdf, page 1  (score ", NULL);
}

static void test_ask_usage_errors_and_small_context(void **state)
{
    Sandbox *sb = *state;
    write_config(sb, "none");
    TestRun r = KB(sb, "ask", "anything");
    testutil_expect(&r, 2, NULL, "no knowledge bases yet");
    make_kb(sb, "one");
    r = KB(sb, "kb", "create", "two");
    testutil_expect(&r, 0, NULL, NULL);
    r = KB(sb, "ask", "How long is the warranty?");
    testutil_expect(&r, 2, NULL, "several knowledge bases: name one with --kb (one, two)");
    r = KB(sb, "ask", "--kb", "three", "x");
    testutil_expect(&r, 1, NULL, "no knowledge base named 'three'");
    r = KB(sb, "ask", "--kb", "one", "--ctx-size", "24", "How long is the warranty?");
    testutil_expect(&r, 1, NULL, "cannot hold the prompt");
    r = KB(sb, "ask", "--mode", "hybrid", "x");
    testutil_expect(&r, 2, NULL, "does not apply");
    r = KB(sb, "ask", "--help");
    testutil_expect(&r, 0, "--retrieve-only", NULL);
}

/* --- vectors through the command line --- */

static void test_kb_vectors_pinning_and_rebuild_from_the_command_line(void **state)
{
    Sandbox *sb = *state;
    write_config(sb, sb->f16);
    TestRun r = KB(sb, "kb", "create", "vec", "--folder", "docs");
    testutil_expect(&r, 0, "embedding model tiny-bert-F16.gguf (128 dims)", NULL);
    r = KB(sb, "kb", "sync", "vec");
    testutil_expect(&r, 0, "chunks embedded", NULL);
    r = KB(sb, "kb", "status", "vec");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "embedding model: tiny-bert-F16.gguf (128 dims)"));
    assert_non_null(strstr(r.out, "vectors:         48 of 48 chunks"));
    testutil_run_free(&r);
    r = KB(sb, "kb", "search", "vec", "--mode", "vector", "--json", "Clean the strainer every month to keep the flow steady.");
    testutil_expect(&r, 0, "\"vector_rank\": 1", NULL);
    r = KB(sb, "kb", "search", "vec", "--mode", "hybrid", "strainer");
    testutil_expect(&r, 0, "keyword #1", NULL);
    r = KB(sb, "--model", "/nonexistent/model.gguf", "ask", "--retrieve-only", "--json", "strainer");
    testutil_expect(&r, 0, "\"bm25_rank\": 1", NULL);
    /* another embedding model configured: vector search refused, keyword still works */
    write_config(sb, sb->q8);
    r = KB(sb, "kb", "search", "vec", "--mode", "vector", "strainer");
    testutil_expect(&r, 1, NULL, "run 'kbchat kb rebuild vec' to re-embed it with tiny-bert-Q8_0.gguf");
    r = KB(sb, "kb", "search", "vec", "--mode", "hybrid", "strainer");
    testutil_expect(&r, 0, "keyword #1", "kbchat: note: knowledge base 'vec' was built with tiny-bert-F16.gguf (128 dims)");
    r = KB(sb, "kb", "sync", "vec");
    testutil_expect(&r, 0, NULL, NULL);
    r = KB(sb, "kb", "rebuild", "vec");
    testutil_expect(&r, 0, "vec: pinned to tiny-bert-Q8_0.gguf (128 dims); 48 chunks embedded", NULL);
    r = KB(sb, "kb", "search", "vec", "--mode", "vector", "strainer");
    testutil_expect(&r, 0, "vector #1", NULL);
    r = KB(sb, "kb", "search", "vec", "--mode", "fuzzy", "strainer");
    testutil_expect(&r, 2, NULL, "--mode: expected words, keyword, vector or hybrid");
    /* no model: rebuild makes it keyword-only */
    write_config(sb, "none");
    r = KB(sb, "kb", "rebuild", "vec");
    testutil_expect(&r, 0, "vec: vectors dropped", NULL);
    r = KB(sb, "kb", "search", "vec", "--mode", "vector", "strainer");
    testutil_expect(&r, 1, NULL, "has no vectors");
}

static void test_kb_chat_embedding_uses_the_chat_model(void **state)
{
    Sandbox *sb = *state;
    write_config(sb, "chat");
    TestRun r = KB(sb, "kb", "create", "chatkb", "--folder", "docs");
    testutil_expect(&r, 0, "embedding model aidreams260K-F32.gguf (64 dims)", NULL);
    r = KB(sb, "kb", "sync", "chatkb");
    testutil_expect(&r, 0, "chunks embedded", NULL);
    r = KB(sb, "ask", "--show-prompt", "Where is the serial number printed?");
    testutil_expect(&r, 0, "Sources:\n[1] ", "label under the lid");
}

/* --- a model and file names hostile to the terminal --- */

/* Writes the hostile model (tests/ggufgen.h) and folder hostile/ of files
** with hostile names (tests/ragfix.h), a configuration using that model,
** and knowledge base "odd" over the folder. Returns the model's path. */
static char *make_hostile_setup(Sandbox *sb)
{
    char *model = testutil_join(sb->box.dir, "hostile.gguf"), *dir = testutil_join(sb->box.dir, "hostile");
    assert_int_equal(ggufgen_write_hostile_llama(model), 0);
    assert_int_equal(ragfix_write_hostile_names(dir), 0);
    char *yaml = g_strdup_printf("model:\n  path: \"%s\"\n  threads: 1\nembedding:\n  model: none\n"
                                 "sampling:\n  temperature: 0\n  max_tokens: 32\nretrieval:\n  top_k: 10\n", model);
    char *cfg = testutil_join(sb->box.dir, "config.yaml");
    assert_int_equal(testutil_write_file(cfg, yaml, strlen(yaml)), 0);
    TestRun r = KB(sb, "kb", "create", "odd", "--folder", "hostile");
    testutil_expect(&r, 0, "created knowledge base", NULL);
    r = KB(sb, "kb", "sync", "odd");
    testutil_expect(&r, 0, "5 indexed", NULL);
    g_free(yaml);
    free(cfg), free(dir);
    return model;
}

/* The model's answer holds OSC title and clipboard sequences, raw controls
** and a C1 CSI: generate, detokenize and ask show them in the notation of
** docs/output.md, as the Sources' file names; --raw writes the exact bytes;
** --json stays valid JSON with the exact answer. */
static void test_ask_and_generate_escape_a_hostile_model(void **state)
{
    Sandbox *sb = *state;
    char *model = make_hostile_setup(sb);
    TestRun r = KB(sb, "generate", "-p", "hello", "-n", "30");
    if (r.status != 0) fail_msg("generate: %s", r.err);
    assert_string_equal(r.out, GGUFGEN_HOSTILE_SHOWN "\n");
    testutil_run_free(&r);
    r = KB(sb, "generate", "-p", "hello", "-n", "30", "--raw");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, GGUFGEN_HOSTILE_RAW "\n");
    testutil_run_free(&r);

    /* detokenize: the same tokens by id */
    r = KB(sb, "detokenize", "3", "4", "5", "6", "7", "8", "9", "11");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "\\x1b]0;pwned\\x07\\x1b]52;c;aGk=\\x07\\x0b\\x19\xe4\xb8\xad\\u009b31m\n");
    testutil_run_free(&r);
    r = KB(sb, "detokenize", "--raw", "3", "4", "5", "6", "7", "8", "9", "11");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "\x1b]0;pwned\x07\x1b]52;c;aGk=\x07\x0b\x19\xe4\xb8\xad\xc2\x9b" "31m\n");
    testutil_run_free(&r);

    r = KB(sb, "ask", "--show-prompt", "wombat notes");
    if (r.status != 0) fail_msg("ask: %s", r.err);
    testutil_expect_terminal_safe(r.out, "ask's stdout");
    testutil_expect_terminal_safe(r.err, "ask's stderr (--show-prompt)");
    assert_true(strncmp(r.out, GGUFGEN_HOSTILE_SHOWN "\n\nSources:\n[1] ", strlen(GGUFGEN_HOSTILE_SHOWN) + 15) == 0);
    for (int i = 0; i < RAGFIX_N_HOSTILE; i++) {
        char *line = g_strdup_printf("/hostile/%s\n    Wombat ", RAGFIX_HOSTILE_SHOWN[i]);
        if (strstr(r.out, line) == NULL) fail_msg("no source line %s in\n%s", line, r.out);
        g_free(line);
    }
    testutil_run_free(&r);
    r = KB(sb, "ask", "--raw", "wombat notes");
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, GGUFGEN_HOSTILE_RAW "\n\nSources:\n", strlen(GGUFGEN_HOSTILE_RAW) + 11) == 0);
    testutil_expect_terminal_safe(r.out + strlen(GGUFGEN_HOSTILE_RAW), "the sources after a --raw answer");
    testutil_run_free(&r);
    r = KB(sb, "ask", "--json", "wombat notes");
    assert_int_equal(r.status, 0);
    testutil_expect_terminal_safe(r.out, "ask --json");
    char *v = testutil_python_json(sb->box.dir, r.out, "[v['answer'], v['grounded'], len(v['sources'])]");
    assert_string_equal(v, "['\\x1b]0;pwned\\x07\\x1b]52;c;aGk=\\x07\\x0b\\x19\\u4e2d\\x9b31m ok', True, 5]");
    free(v);
    testutil_run_free(&r);
    free(model);
}

#define SANDBOX(t) cmocka_unit_test_setup_teardown(t, sandbox_setup, sandbox_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SANDBOX(test_ask_answers_with_numbered_passages_and_sources),
        SANDBOX(test_ask_and_generate_escape_a_hostile_model),
        SANDBOX(test_ask_ctrl_c_during_the_prompt_stops_it),
        SANDBOX(test_ask_strict_mode_and_fallback),
        SANDBOX(test_ask_retrieve_only_json_loads_no_chat_model),
        SANDBOX(test_ask_usage_errors_and_small_context),
        SANDBOX(test_kb_vectors_pinning_and_rebuild_from_the_command_line),
        SANDBOX(test_kb_chat_embedding_uses_the_chat_model),
    };
    return cmocka_run_group_tests(tests, NULL, ragfix_cleanup);
}
