/*
** test_config.c: app/config.c, on real files in a private temporary folder.
**
** Every test runs in a sandbox: HOME is an empty temporary folder, the XDG
** variables and $KBCHAT_CONFIG are unset, and the working directory is
** another empty folder, so neither the developer's configuration nor the
** repository's config.yaml is read by accident. Files are written as
** "config.yaml" in the working directory so messages start "config.yaml:".
**
** Expected values and messages come from the specification (the brief of
** app/config.h and the documented defaults), never from config.c's output.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/config.h"
#include "engine/engine.h"
#include "tests/testutil.h"

/* --- sandbox --- */

static const char *const sandbox_vars[] = {"HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "KBCHAT_CONFIG"};
#define N_VARS (sizeof sandbox_vars / sizeof sandbox_vars[0])

typedef struct Sandbox {
    char *dir;             /* the temporary root */
    char *home;            /* dir/home: $HOME */
    char *work;            /* dir/work: the working directory */
    char repo[PATH_MAX];   /* the working directory before: the repository root */
    char *saved[N_VARS];   /* the environment before, NULL = unset */
} Sandbox;

static int sandbox_setup(void **state)
{
    Sandbox *sb = calloc(1, sizeof *sb);
    if (!sb || !getcwd(sb->repo, sizeof sb->repo)) return -1;
    sb->dir = testutil_mkdtemp();
    if (!sb->dir) return -1;
    sb->home = testutil_join(sb->dir, "home");
    sb->work = testutil_join(sb->dir, "work");
    if (mkdir(sb->home, 0700) != 0 || mkdir(sb->work, 0700) != 0) return -1;
    for (size_t i = 0; i < N_VARS; i++) {
        const char *v = getenv(sandbox_vars[i]);
        sb->saved[i] = v ? strdup(v) : NULL;
        unsetenv(sandbox_vars[i]);
    }
    setenv("HOME", sb->home, 1);
    *state = sb;
    return chdir(sb->work);
}

static int sandbox_teardown(void **state)
{
    Sandbox *sb = *state;
    testutil_fail_alloc_after(0);
    if (chdir(sb->repo) != 0) return -1;
    for (size_t i = 0; i < N_VARS; i++) {
        if (sb->saved[i]) setenv(sandbox_vars[i], sb->saved[i], 1);
        else unsetenv(sandbox_vars[i]);
        free(sb->saved[i]);
    }
    testutil_rmtree(sb->dir);
    free(sb->dir), free(sb->home), free(sb->work), free(sb);
    return 0;
}

/* --- helpers --- */

/* Writes text to path (relative to the working directory). */
static void write_text(const char *path, const char *text)
{
    assert_int_equal(testutil_write_file(path, text, strlen(text)), 0);
}

/* Makes directories dir/a/b... like mkdir -p for a relative tail. */
static char *make_dirs(const char *base, const char *tail)
{
    char *path = testutil_join(base, tail);
    for (char *p = path + strlen(base) + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            mkdir(path, 0700);
            *p = c;
            if (c == '\0') break;
        }
    }
    return path;
}

/* Writes text as ./config.yaml and reads it on top of the defaults.
** Returns config_load_file's code; the caller frees cfg. */
static int load_text(KbConfig *cfg, const char *text)
{
    write_text("config.yaml", text);
    assert_int_equal(config_init(cfg), KB_OK);
    return config_load_file(cfg, "config.yaml");
}

/* Loads text and expects an error with code rc and exactly message msg. */
static void expect_error(const char *text, int rc, const char *msg)
{
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, text), rc);
    assert_string_equal(cfg.errmsg, msg);
    config_free(&cfg);
}

/* Loads text and expects KB_EFORMAT with a message starting with prefix. */
static void expect_error_prefix(const char *text, const char *prefix)
{
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, text), KB_EFORMAT);
    if (strncmp(cfg.errmsg, prefix, strlen(prefix)) != 0) fail_msg("message \"%s\" lacks \"%s\"", cfg.errmsg, prefix);
    config_free(&cfg);
}

/* Fails unless s has no control bytes: hostile values must come out escaped. */
static void assert_printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7F) fail_msg("control byte 0x%02X in \"%s\"", *p, s);
}

/* Returns the number of online cores as the specification resolves 0. */
static int64_t all_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : n;
}

/* Checks every field against the documented defaults; data_dir is given. */
static void assert_defaults(const KbConfig *cfg, const char *data_dir)
{
    assert_string_equal(cfg->model_path, "");
    assert_string_equal(cfg->model_template, "auto");
    assert_int_equal(cfg->context_size, 4096);
    assert_int_equal(cfg->threads, all_cores());
    assert_string_equal(cfg->embedding_model, "");
    assert_true(cfg->temperature == 0.7);
    assert_int_equal(cfg->top_k, 40);
    assert_true(cfg->top_p == 0.9);
    assert_true(cfg->min_p == 0.05);
    assert_true(cfg->repeat_penalty == 1.1);
    assert_int_equal(cfg->repeat_last_n, 64);
    assert_int_equal(cfg->seed, -1);
    assert_int_equal(cfg->max_tokens, 1024);
    assert_string_equal(cfg->data_dir, data_dir);
    assert_int_equal(cfg->chunk_size, 500);
    assert_int_equal(cfg->chunk_overlap, 80);
    assert_int_equal(cfg->retrieval_top_k, 4);
    assert_true(cfg->score_threshold == 0.0);
    assert_string_equal(cfg->system_prompt, "");
    assert_string_equal(cfg->prompt_template, "");
    assert_string_equal(cfg->answer_fallback, "strict");
    assert_int_equal(cfg->answer_reserve, 512);
    assert_string_equal(cfg->theme, "dark");
}

/* Checks that two configurations hold the same values. */
static void assert_same_values(const KbConfig *a, const KbConfig *b)
{
    assert_string_equal(a->model_path, b->model_path);
    assert_string_equal(a->model_template, b->model_template);
    assert_int_equal(a->context_size, b->context_size);
    assert_int_equal(a->threads, b->threads);
    assert_string_equal(a->embedding_model, b->embedding_model);
    assert_true(a->temperature == b->temperature);
    assert_int_equal(a->top_k, b->top_k);
    assert_true(a->top_p == b->top_p);
    assert_true(a->min_p == b->min_p);
    assert_true(a->repeat_penalty == b->repeat_penalty);
    assert_int_equal(a->repeat_last_n, b->repeat_last_n);
    assert_int_equal(a->seed, b->seed);
    assert_int_equal(a->max_tokens, b->max_tokens);
    assert_string_equal(a->data_dir, b->data_dir);
    assert_int_equal(a->chunk_size, b->chunk_size);
    assert_int_equal(a->chunk_overlap, b->chunk_overlap);
    assert_int_equal(a->retrieval_top_k, b->retrieval_top_k);
    assert_true(a->score_threshold == b->score_threshold);
    assert_string_equal(a->system_prompt, b->system_prompt);
    assert_string_equal(a->prompt_template, b->prompt_template);
    assert_string_equal(a->theme, b->theme);
}

static char *home_data_dir(const Sandbox *sb)
{
    return testutil_join(sb->home, ".local/share/kbchat");
}

/* --- defaults and the key table --- */

static void test_config_defaults_are_as_documented_when_no_file_exists(void **state)
{
    Sandbox *sb = *state;
    KbConfig cfg;
    char *data = home_data_dir(sb);
    assert_int_equal(config_load(&cfg, NULL), KB_OK);
    assert_null(cfg.file);
    assert_null(cfg.file_origin);
    assert_int_equal(cfg.n_warnings, 0);
    assert_defaults(&cfg, data);
    for (int i = 0; i < config_key_count(); i++) assert_string_equal(cfg.sources[i], "default");
    config_free(&cfg);
    /* config code creates nothing on disk */
    char *local = testutil_join(sb->home, ".local");
    struct stat st;
    assert_int_not_equal(stat(local, &st), 0);
    free(local), free(data);
}

static void test_config_key_table_lists_every_key_in_order(void **state)
{
    (void)state;
    static const char *const names[] = {
        "model.path", "model.template", "model.context_size", "model.threads", "embedding.model",
        "sampling.temperature", "sampling.top_k", "sampling.top_p", "sampling.min_p", "sampling.repeat_penalty",
        "sampling.repeat_last_n", "sampling.seed", "sampling.max_tokens", "data_dir", "chunking.size",
        "chunking.overlap", "kb.document_time_limit", "kb.document_text_limit", "retrieval.top_k", "retrieval.score_threshold", "prompt.system", "prompt.template",
        "answer.fallback", "conversation.answer_reserve", "ui.theme"};
    int n = (int)(sizeof names / sizeof names[0]);
    assert_int_equal(config_key_count(), n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(config_key_name(i), names[i]);
        assert_int_equal(config_key_index(names[i]), i);
    }
    assert_null(config_key_name(-1));
    assert_null(config_key_name(n));
    assert_int_equal(config_key_index("retrieval.topk"), -1);
    assert_int_equal(config_key_index("model"), -1);
    assert_int_equal(config_key_index(NULL), -1);
}

static void test_config_repository_file_loads_to_the_defaults_without_warnings(void **state)
{
    Sandbox *sb = *state;
    char *path = testutil_join(sb->repo, "config.yaml");
    char *data = home_data_dir(sb);
    KbConfig cfg;
    assert_int_equal(config_init(&cfg), KB_OK);
    assert_int_equal(config_load_file(&cfg, path), KB_OK);
    assert_int_equal(cfg.n_warnings, 0);
    assert_defaults(&cfg, data);
    /* the file documents every key: each value comes from it */
    for (int i = 0; i < config_key_count(); i++) {
        assert_int_equal(strncmp(cfg.sources[i], path, strlen(path)), 0);
        assert_int_equal(cfg.sources[i][strlen(path)], ':');
    }
    config_free(&cfg);
    free(path), free(data);
}

static void test_config_free_is_safe_on_zeroed_and_freed_structs(void **state)
{
    (void)state;
    KbConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    config_free(&cfg);
    config_free(NULL);
    assert_int_equal(config_init(&cfg), KB_OK);
    config_free(&cfg);
    config_free(&cfg);
    assert_null(cfg.sources);
}

/* --- values --- */

static void test_config_reads_every_kind_of_value(void **state)
{
    Sandbox *sb = *state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg,
                               "model:\n"
                               "  path: \"~/models/qwen.gguf\"\n"
                               "  template: chatglm3\n"
                               "  context_size: 0\n"
                               "  threads: 3\n"
                               "embedding:\n"
                               "  model: chat\n"
                               "sampling:\n"
                               "  temperature: 0\n"
                               "  top_k: '7'\n"          /* quoted numbers are numbers */
                               "  top_p: \" 0.5 \"\n"    /* surrounding space is not part of it */
                               "  min_p: 1\n"
                               "  repeat_penalty: 0.5\n"
                               "  repeat_last_n: 65536\n"
                               "  seed: 4294967295\n"
                               "  max_tokens: 1\n"
                               "data_dir: /srv/kb\n"
                               "chunking:\n"
                               "  size: 50\n"
                               "  overlap: 49\n"
                               "retrieval:\n"
                               "  top_k: 100\n"
                               "  score_threshold: 0.25\n"
                               "prompt:\n"
                               "  system: 'You are terse.'\n"
                               "  template: |\n"
                               "    Context: {context}\n"
                               "    Q: {question}\n"
                               "ui:\n"
                               "  theme: mono\n"),
                     KB_OK);
    char *model = testutil_join(sb->home, "models/qwen.gguf");
    assert_string_equal(cfg.model_path, model);
    assert_string_equal(cfg.model_template, "chatglm3");
    assert_int_equal(cfg.context_size, 0);
    assert_int_equal(cfg.threads, 3);
    assert_string_equal(cfg.embedding_model, "chat");
    assert_true(cfg.temperature == 0.0);
    assert_int_equal(cfg.top_k, 7);
    assert_true(cfg.top_p == 0.5);
    assert_true(cfg.min_p == 1.0);
    assert_true(cfg.repeat_penalty == 0.5);
    assert_int_equal(cfg.repeat_last_n, 65536);
    assert_int_equal(cfg.seed, 4294967295LL);
    assert_int_equal(cfg.max_tokens, 1);
    assert_string_equal(cfg.data_dir, "/srv/kb");
    assert_int_equal(cfg.chunk_size, 50);
    assert_int_equal(cfg.chunk_overlap, 49);
    assert_int_equal(cfg.retrieval_top_k, 100);
    assert_true(cfg.score_threshold == 0.25);
    assert_string_equal(cfg.system_prompt, "You are terse.");
    assert_string_equal(cfg.prompt_template, "Context: {context}\nQ: {question}");
    assert_string_equal(cfg.theme, "mono");
    assert_string_equal(cfg.sources[config_key_index("model.path")], "config.yaml:2");
    assert_string_equal(cfg.sources[config_key_index("ui.theme")], "config.yaml:30");
    assert_string_equal(cfg.sources[config_key_index("data_dir")], "config.yaml:17");
    assert_int_equal(cfg.n_warnings, 0);
    config_free(&cfg);
    free(model);
}

static void test_config_threads_zero_resolves_to_all_cores(void **state)
{
    (void)state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "model:\n  threads: 0\n"), KB_OK);
    assert_int_equal(cfg.threads, all_cores());
    assert_string_equal(cfg.sources[config_key_index("model.threads")], "config.yaml:2");
    config_free(&cfg);
}

static void test_config_reports_line_and_key_for_bad_integer(void **state)
{
    (void)state;
    expect_error("# my settings\n\nretrieval:\n  top_k: five\n", KB_EFORMAT,
                 "config.yaml:4: retrieval.top_k: expected an integer 1..100, got \"five\"");
    expect_error("model:\n  threads: 2.5\n", KB_EFORMAT,
                 "config.yaml:2: model.threads: expected an integer 0..1024, got 2.5");
    expect_error("retrieval:\n  top_k: 0\n", KB_EFORMAT,
                 "config.yaml:2: retrieval.top_k: expected an integer 1..100, got 0");
    expect_error("retrieval:\n  top_k: 101\n", KB_EFORMAT,
                 "config.yaml:2: retrieval.top_k: expected an integer 1..100, got 101");
    expect_error("sampling:\n  seed: -2\n", KB_EFORMAT,
                 "config.yaml:2: sampling.seed: expected an integer -1..4294967295, got -2");
    expect_error("sampling:\n  seed: 4294967296\n", KB_EFORMAT,
                 "config.yaml:2: sampling.seed: expected an integer -1..4294967295, got 4294967296");
    expect_error("sampling:\n  max_tokens: 99999999999999999999999\n", KB_EFORMAT,
                 "config.yaml:2: sampling.max_tokens: expected an integer 1..1048576, "
                 "got 99999999999999999999999");
    expect_error("chunking:\n  size: 0x100\n", KB_EFORMAT,
                 "config.yaml:2: chunking.size: expected an integer 50..20000, got \"0x100\"");
}

static void test_config_context_size_allows_zero_or_16_and_more(void **state)
{
    (void)state;
    expect_error("model:\n  context_size: 15\n", KB_EFORMAT,
                 "config.yaml:2: model.context_size: expected an integer 0 or 16..1048576, got 15");
    expect_error("model:\n  context_size: 1048577\n", KB_EFORMAT,
                 "config.yaml:2: model.context_size: expected an integer 0 or 16..1048576, got 1048577");
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "model:\n  context_size: 16\n"), KB_OK);
    assert_int_equal(cfg.context_size, 16);
    config_free(&cfg);
}

static void test_config_reports_line_and_key_for_bad_number(void **state)
{
    (void)state;
    expect_error("# sampling\nsampling:\n  top_p: 1.5\n", KB_EFORMAT,
                 "config.yaml:3: sampling.top_p: expected a number 0..1, got 1.5");
    expect_error("sampling:\n  temperature: warm\n", KB_EFORMAT,
                 "config.yaml:2: sampling.temperature: expected a number 0..5, got \"warm\"");
    expect_error("sampling:\n  repeat_penalty: 0.4\n", KB_EFORMAT,
                 "config.yaml:2: sampling.repeat_penalty: expected a number 0.5..5, got 0.4");
    expect_error("retrieval:\n  score_threshold: -0.1\n", KB_EFORMAT,
                 "config.yaml:2: retrieval.score_threshold: expected a number 0..1, got -0.1");
    expect_error("sampling:\n  top_p: 0.5x\n", KB_EFORMAT,
                 "config.yaml:2: sampling.top_p: expected a number 0..1, got \"0.5x\"");
    /* not finite, whatever the spelling */
    expect_error_prefix("sampling:\n  temperature: nan\n", "config.yaml:2: sampling.temperature: expected a number 0..5, got ");
    expect_error_prefix("sampling:\n  temperature: inf\n", "config.yaml:2: sampling.temperature: expected a number 0..5, got ");
    expect_error_prefix("sampling:\n  temperature: .inf\n", "config.yaml:2: sampling.temperature: expected a number 0..5, got ");
    expect_error_prefix("sampling:\n  min_p: -nan\n", "config.yaml:2: sampling.min_p: expected a number 0..1, got ");
}

static void test_config_refuses_empty_and_null_numbers(void **state)
{
    (void)state;
    expect_error_prefix("sampling:\n  temperature:\n", "config.yaml:2: sampling.temperature: expected a number 0..5, got ");
    expect_error_prefix("sampling:\n  temperature: ~\n", "config.yaml:2: sampling.temperature: expected a number 0..5, got ");
    expect_error_prefix("retrieval:\n  top_k: null\n", "config.yaml:2: retrieval.top_k: expected an integer 1..100, got ");
    expect_error("retrieval:\n  top_k: \"\"\n", KB_EFORMAT,
                 "config.yaml:2: retrieval.top_k: expected an integer 1..100, got \"\"");
}

static void test_config_reports_words_allowed_for_enum(void **state)
{
    (void)state;
    expect_error("ui:\n  theme: blue\n", KB_EFORMAT,
                 "config.yaml:2: ui.theme: expected one of dark, light, mono, got \"blue\"");
    expect_error("ui:\n  theme: Dark\n", KB_EFORMAT,
                 "config.yaml:2: ui.theme: expected one of dark, light, mono, got \"Dark\"");
    expect_error("model:\n  template: gpt\n", KB_EFORMAT,
                 "config.yaml:2: model.template: expected one of auto, chatml, llama2, llama3, vicuna, alpaca, "
                 "belle, phoenix, chatglm, chatglm2, chatglm3, chatglm4, raw, got \"gpt\"");
}

static void test_config_refuses_collections_where_a_value_is_expected(void **state)
{
    (void)state;
    expect_error("model:\n  path:\n    a: b\n", KB_EFORMAT, "config.yaml:2: model.path: expected a string, got a mapping");
    expect_error("retrieval:\n  top_k: [1, 2]\n", KB_EFORMAT,
                 "config.yaml:2: retrieval.top_k: expected an integer 1..100, got a sequence");
    expect_error("data_dir: {a: 1}\n", KB_EFORMAT, "config.yaml:1: data_dir: expected a string, got a mapping");
}

static void test_config_refuses_a_value_where_a_section_is_expected(void **state)
{
    (void)state;
    expect_error_prefix("model: x\n", "config.yaml:1: model: expected a mapping of model.* keys (path, template");
    expect_error_prefix("ui:\n- dark\n", "config.yaml:1: ui: expected a mapping of ui.* keys (theme)");
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "model: x\n"), KB_EFORMAT);
    assert_non_null(strstr(cfg.errmsg, ", got \"x\""));
    config_free(&cfg);
}

static void test_config_refuses_a_top_level_that_is_not_a_mapping(void **state)
{
    (void)state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "- model\n- ui\n"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:1: expected a mapping", 33), 0);
    assert_non_null(strstr(cfg.errmsg, "got a sequence"));
    config_free(&cfg);
    assert_int_equal(load_text(&cfg, "hello\n"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:1: expected a mapping", 33), 0);
    assert_non_null(strstr(cfg.errmsg, "got \"hello\""));
    config_free(&cfg);
}

static void test_config_accepts_empty_sections_and_null_strings(void **state)
{
    (void)state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "model:\nui:\nprompt:\n  system:\n  template: ~\n"), KB_OK);
    assert_string_equal(cfg.model_path, "");
    assert_string_equal(cfg.system_prompt, "");
    assert_string_equal(cfg.prompt_template, "");
    assert_string_equal(cfg.theme, "dark");
    assert_int_equal(cfg.n_warnings, 0);
    config_free(&cfg);
}

static void test_config_prompt_template_needs_both_placeholders(void **state)
{
    (void)state;
    expect_error_prefix("prompt:\n  template: \"Answer {question}\"\n",
                        "config.yaml:2: prompt.template: expected a template containing {context} and {question}, "
                        "got \"Answer {question}\"");
    expect_error_prefix("prompt:\n  template: \"Read {context}\"\n",
                        "config.yaml:2: prompt.template: expected a template containing {context} and {question}");
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "prompt:\n  template: \"{question} in {context}\"\n"), KB_OK);
    assert_string_equal(cfg.prompt_template, "{question} in {context}");
    config_free(&cfg);
}

static void test_config_escapes_and_truncates_hostile_values_in_messages(void **state)
{
    (void)state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "retrieval:\n  top_k: \"\\x01\\e[31mred\\x7f\"\n"), KB_EFORMAT);
    assert_printable(cfg.errmsg);
    assert_non_null(strstr(cfg.errmsg, "\\x01"));
    assert_non_null(strstr(cfg.errmsg, "\\x1B"));
    config_free(&cfg);

    char text[400] = "ui:\n  theme: ";
    size_t n = strlen(text);
    memset(text + n, 'a', 300);
    strcpy(text + n + 300, "\n");
    assert_int_equal(load_text(&cfg, text), KB_EFORMAT);
    assert_true(strlen(cfg.errmsg) < 150);
    assert_non_null(strstr(cfg.errmsg, "..."));
    config_free(&cfg);

    /* a NUL byte written as an escape cannot hide the rest of a string */
    assert_int_equal(load_text(&cfg, "prompt:\n  system: \"a\\0b\"\n"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:2: prompt.system: expected ", 39), 0);
    assert_non_null(strstr(cfg.errmsg, "\\x00"));
    config_free(&cfg);

    /* unknown keys are shown escaped too */
    assert_int_equal(load_text(&cfg, "\"\\e]0;pwned\\a\": 1\n"), KB_OK);
    assert_int_equal(cfg.n_warnings, 1);
    assert_printable(cfg.warnings[0]);
    config_free(&cfg);
}

static void test_config_checks_overlap_below_size_after_the_whole_file(void **state)
{
    (void)state;
    KbConfig cfg;
    /* overlap first, size after: the check waits for the whole file */
    assert_int_equal(load_text(&cfg, "chunking:\n  overlap: 700\n  size: 1000\n"), KB_OK);
    assert_int_equal(cfg.chunk_overlap, 700);
    config_free(&cfg);

    assert_int_equal(load_text(&cfg, "chunking:\n  size: 100\n  overlap: 100\n"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:3: chunking.overlap: expected an integer 0..99", 58), 0);
    assert_non_null(strstr(cfg.errmsg, "chunking.size 100"));
    config_free(&cfg);

    /* a small size against the default overlap (80) */
    assert_int_equal(load_text(&cfg, "chunking:\n  size: 60\n"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:2: chunking.overlap: expected an integer 0..59", 58), 0);
    config_free(&cfg);
}

/* --- malformed files --- */

static void test_config_reports_malformed_yaml_with_line(void **state)
{
    (void)state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "# one\n# two\nui:\n  theme: dark: x\n"), KB_EFORMAT);
    const char *want = "config.yaml:4: malformed YAML: mapping values are not allowed in this context";
    assert_int_equal(strncmp(cfg.errmsg, want, strlen(want)), 0);
    config_free(&cfg);
    /* unclosed quote, bad indentation, a tab */
    expect_error_prefix("model:\n  path: \"abc\n", "config.yaml:");
    assert_int_equal(load_text(&cfg, "model:\n  path: \"abc\n"), KB_EFORMAT);
    assert_non_null(strstr(cfg.errmsg, ": malformed YAML: "));
    config_free(&cfg);
    expect_error_prefix("model:\n  path: a\n template: b\n", "config.yaml:3: malformed YAML: ");
    expect_error_prefix("model:\n\tpath: a\n", "config.yaml:2: malformed YAML: ");
}

static void test_config_refuses_aliases_and_anchors(void **state)
{
    (void)state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, "sampling:\n  top_k: &k 5\nretrieval:\n  top_k: *k\n"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:2: ", 15), 0);
    assert_non_null(strstr(cfg.errmsg, "aliases are not supported"));
    config_free(&cfg);
    assert_int_equal(load_text(&cfg, "retrieval:\n  top_k: *k\n"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:2: ", 15), 0);
    assert_non_null(strstr(cfg.errmsg, "aliases are not supported"));
    config_free(&cfg);
}

static void test_config_refuses_duplicate_keys(void **state)
{
    (void)state;
    expect_error("retrieval:\n  top_k: 3\n  top_k: 5\n", KB_EFORMAT,
                 "config.yaml:3: retrieval.top_k: duplicate key, first set on line 2");
    expect_error("ui:\n  theme: dark\nui:\n  theme: mono\n", KB_EFORMAT,
                 "config.yaml:3: ui: duplicate key, first set on line 1");
    expect_error("data_dir: /a\ndata_dir: /b\n", KB_EFORMAT, "config.yaml:2: data_dir: duplicate key, first set on line 1");
}

static void test_config_refuses_a_second_document(void **state)
{
    (void)state;
    expect_error_prefix("ui:\n  theme: dark\n---\nui:\n  theme: mono\n", "config.yaml:3: ");
}

static void test_config_refuses_files_larger_than_the_limit(void **state)
{
    (void)state;
    size_t n = KB_CONFIG_MAX_BYTES;
    char *text = malloc(n + 2);
    assert_non_null(text);
    for (size_t i = 0; i < n + 1; i++) text[i] = i % 64 == 63 ? '\n' : '#';
    assert_int_equal(testutil_write_file("config.yaml", text, n + 1), 0);
    KbConfig cfg;
    assert_int_equal(config_init(&cfg), KB_OK);
    assert_int_equal(config_load_file(&cfg, "config.yaml"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml: ", 13), 0);
    assert_non_null(strstr(cfg.errmsg, "too large"));
    config_free(&cfg);
    /* exactly at the limit is fine */
    assert_int_equal(testutil_write_file("config.yaml", text, n), 0);
    assert_int_equal(config_init(&cfg), KB_OK);
    assert_int_equal(config_load_file(&cfg, "config.yaml"), KB_OK);
    config_free(&cfg);
    free(text);
}

static void test_config_empty_or_comment_only_file_gives_defaults(void **state)
{
    Sandbox *sb = *state;
    static const char *const texts[] = {"", "# nothing here\n\n# at all\n", "---\n", "\n\n\n"};
    char *data = home_data_dir(sb);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        KbConfig cfg;
        assert_int_equal(load_text(&cfg, texts[i]), KB_OK);
        assert_int_equal(cfg.n_warnings, 0);
        assert_defaults(&cfg, data);
        assert_string_equal(cfg.file, "config.yaml");
        config_free(&cfg);
    }
    free(data);
}

static void test_config_refuses_binary_junk_nul_and_bad_utf8(void **state)
{
    (void)state;
    unsigned char junk[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char)(x >> 16);
    }
    assert_int_equal(testutil_write_file("config.yaml", junk, sizeof junk), 0);
    KbConfig cfg;
    assert_int_equal(config_init(&cfg), KB_OK);
    assert_int_equal(config_load_file(&cfg, "config.yaml"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:", 12), 0);
    assert_printable(cfg.errmsg);
    config_free(&cfg);

    assert_int_equal(testutil_write_file("config.yaml", "ui:\n  theme: dark\0\n", 19), 0);
    assert_int_equal(config_init(&cfg), KB_OK);
    assert_int_equal(config_load_file(&cfg, "config.yaml"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:2: malformed YAML: ", 31), 0);
    config_free(&cfg);

    expect_error_prefix("ui:\n  theme: d\xff" "ark\n", "config.yaml:2: malformed YAML: ");
}

static void test_config_refuses_nesting_deeper_than_64(void **state)
{
    (void)state;
    char text[300] = "extra: ";
    size_t n = strlen(text);
    for (int i = 0; i < 70; i++) text[n++] = '[';
    for (int i = 0; i < 70; i++) text[n++] = ']';
    strcpy(text + n, "\n");
    KbConfig cfg;
    assert_int_equal(load_text(&cfg, text), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "config.yaml:1: ", 15), 0);
    assert_non_null(strstr(cfg.errmsg, "64"));
    config_free(&cfg);
    /* moderately nested unknown values are skipped */
    assert_int_equal(load_text(&cfg, "extra: [[[[{a: [1, {b: 2}]}]]]]\nretrieval:\n  top_k: 9\n"), KB_OK);
    assert_int_equal(cfg.retrieval_top_k, 9);
    config_free(&cfg);
}

/* --- unreadable files --- */

static void test_config_missing_named_file_is_an_error_naming_path_and_origin(void **state)
{
    (void)state;
    KbConfig cfg;
    char want[256];
    snprintf(want, sizeof want, "nowhere/c.yaml: cannot read configuration file (named by --config): %s",
             strerror(ENOENT));
    assert_int_equal(config_load(&cfg, "nowhere/c.yaml"), KB_EIO);
    assert_string_equal(cfg.errmsg, want);
    config_free(&cfg);

    setenv("KBCHAT_CONFIG", "/no/such/kb.yaml", 1);
    snprintf(want, sizeof want, "/no/such/kb.yaml: cannot read configuration file (named by $KBCHAT_CONFIG): %s",
             strerror(ENOENT));
    assert_int_equal(config_load(&cfg, NULL), KB_EIO);
    assert_string_equal(cfg.errmsg, want);
    config_free(&cfg);
}

static void test_config_directory_as_config_is_an_error(void **state)
{
    Sandbox *sb = *state;
    KbConfig cfg;
    char want[PATH_MAX + 128];
    assert_int_equal(mkdir("cfgdir", 0700), 0);
    snprintf(want, sizeof want, "cfgdir: cannot read configuration file (named by --config): %s", strerror(EISDIR));
    assert_int_equal(config_load(&cfg, "cfgdir"), KB_EIO);
    assert_string_equal(cfg.errmsg, want);
    config_free(&cfg);

    /* a found (not named) candidate that is present but unreadable is an error too */
    char *dir = make_dirs(sb->home, ".config/kbchat/config.yaml");
    snprintf(want, sizeof want, "%s: cannot read configuration file (found via ~/.config): %s", dir, strerror(EISDIR));
    assert_int_equal(config_load(&cfg, NULL), KB_EIO);
    assert_string_equal(cfg.errmsg, want);
    config_free(&cfg);
    free(dir);
}

static void test_config_unreadable_file_is_an_error(void **state)
{
    (void)state;
    write_text("secret.yaml", "ui:\n  theme: mono\n");
    assert_int_equal(chmod("secret.yaml", 0), 0);
    KbConfig cfg;
    int rc = config_load(&cfg, "secret.yaml");
    if (geteuid() != 0) {
        /* root reads regardless of permissions, so only others can check this */
        char want[256];
        snprintf(want, sizeof want, "secret.yaml: cannot read configuration file (named by --config): %s",
                 strerror(EACCES));
        assert_int_equal(rc, KB_EIO);
        assert_string_equal(cfg.errmsg, want);
    } else {
        assert_int_equal(rc, KB_OK);
    }
    config_free(&cfg);
}

/* --- unknown keys --- */

static void test_config_warns_on_unknown_key_with_suggestion(void **state)
{
    (void)state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg,
                               "retrieval:\n"
                               "  topk: 3\n"
                               "top_k: 2\n"
                               "modle:\n"
                               "  path: /x.gguf\n"
                               "zebra_crossing_count: 1\n"
                               "ui:\n"
                               "  them: mono\n"),
                     KB_OK);
    assert_int_equal(cfg.n_warnings, 5);
    assert_string_equal(cfg.warnings[0], "config.yaml:2: unknown key \"retrieval.topk\" (did you mean retrieval.top_k?)");
    assert_string_equal(cfg.warnings[1],
                        "config.yaml:3: unknown key \"top_k\" (did you mean retrieval.top_k or sampling.top_k?)");
    assert_string_equal(cfg.warnings[2], "config.yaml:4: unknown key \"modle\" (did you mean model?)");
    assert_string_equal(cfg.warnings[3], "config.yaml:6: unknown key \"zebra_crossing_count\"");
    assert_string_equal(cfg.warnings[4], "config.yaml:8: unknown key \"ui.them\" (did you mean ui.theme?)");
    /* unknown values are skipped, whatever their shape */
    assert_int_equal(cfg.retrieval_top_k, 4);
    assert_string_equal(cfg.model_path, "");
    assert_string_equal(cfg.theme, "dark");
    config_free(&cfg);
}

static void test_config_skips_unknown_values_of_any_shape(void **state)
{
    (void)state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg,
                               "retrieval:\n"
                               "  extra:\n"
                               "    a: [1, {b: 2}]\n"
                               "    c:\n"
                               "      - d\n"
                               "      - {e: [f]}\n"
                               "  top_k: 7\n"
                               "plugins: [x, y]\n"),
                     KB_OK);
    assert_int_equal(cfg.retrieval_top_k, 7);
    assert_int_equal(cfg.n_warnings, 2);
    assert_int_equal(strncmp(cfg.warnings[0], "config.yaml:2: unknown key \"retrieval.extra\"", 44), 0);
    assert_int_equal(strncmp(cfg.warnings[1], "config.yaml:8: unknown key \"plugins\"", 36), 0);
    config_free(&cfg);
}

/* --- lookup order --- */

/* Writes "retrieval:\n  top_k: N\n" at path. */
static void write_top_k(const char *path, int n)
{
    char text[64];
    snprintf(text, sizeof text, "retrieval:\n  top_k: %d\n", n);
    write_text(path, text);
}

/* config_load(cli) and checks top_k, origin and the file name. */
static void expect_winner(const char *cli, int top_k, const char *origin, const char *file)
{
    KbConfig cfg;
    assert_int_equal(config_load(&cfg, cli), KB_OK);
    assert_int_equal(cfg.retrieval_top_k, top_k);
    if (origin) {
        assert_string_equal(cfg.file_origin, origin);
        assert_string_equal(cfg.file, file);
    } else {
        assert_null(cfg.file_origin);
        assert_null(cfg.file);
    }
    config_free(&cfg);
}

static void test_config_lookup_order_takes_the_first_file_found(void **state)
{
    Sandbox *sb = *state;
    char *cli = testutil_join(sb->dir, "cli.yaml");
    char *env = testutil_join(sb->dir, "env.yaml");
    char *xdg = testutil_join(sb->dir, "xdg");
    char *xdg_dir = make_dirs(sb->dir, "xdg/kbchat");
    char *xdg_file = testutil_join(xdg_dir, "config.yaml");
    char *home_dir = make_dirs(sb->home, ".config/kbchat");
    char *home_file = testutil_join(home_dir, "config.yaml");
    write_top_k(cli, 11);
    write_top_k(env, 12);
    write_top_k(xdg_file, 13);
    write_top_k(home_file, 14);
    write_top_k("config.yaml", 15);
    setenv("KBCHAT_CONFIG", env, 1);
    setenv("XDG_CONFIG_HOME", xdg, 1);

    expect_winner(cli, 11, "--config", cli);
    expect_winner(NULL, 12, "$KBCHAT_CONFIG", env);
    setenv("KBCHAT_CONFIG", "", 1); /* empty counts as unset */
    expect_winner(NULL, 13, "$XDG_CONFIG_HOME", xdg_file);
    unsetenv("XDG_CONFIG_HOME");
    expect_winner(NULL, 14, "~/.config", home_file);
    assert_int_equal(unlink(home_file), 0);
    expect_winner(NULL, 15, "./config.yaml", "./config.yaml");
    assert_int_equal(unlink("config.yaml"), 0);
    expect_winner(NULL, 4, NULL, NULL);
    free(cli), free(env), free(xdg), free(xdg_dir), free(xdg_file), free(home_dir), free(home_file);
}

static void test_config_xdg_config_home_hides_the_home_config(void **state)
{
    Sandbox *sb = *state;
    char *xdg = make_dirs(sb->dir, "emptyxdg");
    char *home_dir = make_dirs(sb->home, ".config/kbchat");
    char *home_file = testutil_join(home_dir, "config.yaml");
    write_top_k(home_file, 14);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    expect_winner(NULL, 4, NULL, NULL);
    write_top_k("config.yaml", 15);
    expect_winner(NULL, 15, "./config.yaml", "./config.yaml");
    /* empty XDG_CONFIG_HOME counts as unset */
    setenv("XDG_CONFIG_HOME", "", 1);
    expect_winner(NULL, 14, "~/.config", home_file);
    free(xdg), free(home_dir), free(home_file);
}

static void test_config_reads_only_one_file(void **state)
{
    Sandbox *sb = *state;
    char *home_dir = make_dirs(sb->home, ".config/kbchat");
    char *home_file = testutil_join(home_dir, "config.yaml");
    write_text(home_file, "ui:\n  theme: mono\n");
    write_text("config.yaml", "retrieval:\n  top_k: 15\n");
    KbConfig cfg;
    assert_int_equal(config_load(&cfg, NULL), KB_OK);
    assert_string_equal(cfg.theme, "mono");
    assert_int_equal(cfg.retrieval_top_k, 4); /* ./config.yaml is not merged */
    config_free(&cfg);
    free(home_dir), free(home_file);
}

/* --- paths --- */

static void test_config_data_dir_follows_xdg_data_home(void **state)
{
    Sandbox *sb = *state;
    char *xdg = testutil_join(sb->dir, "share");
    char *want = testutil_join(xdg, "kbchat");
    char *home_default = home_data_dir(sb);
    KbConfig cfg;

    setenv("XDG_DATA_HOME", xdg, 1);
    assert_int_equal(config_load(&cfg, NULL), KB_OK);
    assert_string_equal(cfg.data_dir, want);
    config_free(&cfg);

    setenv("XDG_DATA_HOME", "relative/share", 1); /* not absolute: ignored */
    assert_int_equal(config_load(&cfg, NULL), KB_OK);
    assert_string_equal(cfg.data_dir, home_default);
    config_free(&cfg);

    setenv("XDG_DATA_HOME", "", 1);
    assert_int_equal(config_load(&cfg, NULL), KB_OK);
    assert_string_equal(cfg.data_dir, home_default);
    config_free(&cfg);

    /* "" in a file resolves the same way; nothing is created */
    setenv("XDG_DATA_HOME", xdg, 1);
    assert_int_equal(load_text(&cfg, "data_dir: \"\"\n"), KB_OK);
    assert_string_equal(cfg.data_dir, want);
    config_free(&cfg);
    struct stat st;
    assert_int_not_equal(stat(xdg, &st), 0);
    free(xdg), free(want), free(home_default);
}

static void test_config_expands_tilde_in_paths(void **state)
{
    Sandbox *sb = *state;
    KbConfig cfg;
    assert_int_equal(load_text(&cfg,
                               "model:\n  path: ~/m.gguf\n"
                               "embedding:\n  model: \"~/e.gguf\"\n"
                               "data_dir: ~/kb\n"),
                     KB_OK);
    char *m = testutil_join(sb->home, "m.gguf");
    char *e = testutil_join(sb->home, "e.gguf");
    char *kb = testutil_join(sb->home, "kb");
    assert_string_equal(cfg.model_path, m);
    assert_string_equal(cfg.embedding_model, e);
    assert_string_equal(cfg.data_dir, kb);
    config_free(&cfg);
    /* only a leading "~/" is special; "chat" and "none" are kept as words */
    assert_int_equal(load_text(&cfg, "model:\n  path: a/~/b\nembedding:\n  model: none\n"), KB_OK);
    assert_string_equal(cfg.model_path, "a/~/b");
    assert_string_equal(cfg.embedding_model, "none");
    config_free(&cfg);
    free(m), free(e), free(kb);
}

/* --- config_set --- */

static void test_config_set_validates_and_records_source(void **state)
{
    Sandbox *sb = *state;
    KbConfig cfg;
    int threads = config_key_index("model.threads");
    assert_int_equal(config_init(&cfg), KB_OK);
    assert_int_equal(config_set(&cfg, "model.threads", "3", "--threads"), KB_OK);
    assert_int_equal(cfg.threads, 3);
    assert_string_equal(cfg.sources[threads], "--threads");

    assert_int_equal(config_set(&cfg, "model.threads", "x", "--threads"), KB_EFORMAT);
    assert_string_equal(cfg.errmsg, "--threads: model.threads: expected an integer 0..1024, got \"x\"");
    assert_int_equal(cfg.threads, 3);
    assert_string_equal(cfg.sources[threads], "--threads");

    assert_int_equal(config_set(&cfg, "ui.theme", "light", "--theme"), KB_OK);
    assert_string_equal(cfg.theme, "light");
    assert_int_equal(config_set(&cfg, "ui.theme", "blue", "--theme"), KB_EFORMAT);
    assert_string_equal(cfg.errmsg, "--theme: ui.theme: expected one of dark, light, mono, got \"blue\"");
    assert_string_equal(cfg.theme, "light");

    assert_int_equal(config_set(&cfg, "model.path", "~/q.gguf", "--model"), KB_OK);
    char *q = testutil_join(sb->home, "q.gguf");
    assert_string_equal(cfg.model_path, q);
    free(q);

    assert_int_equal(config_set(&cfg, "sampling.top_p", "1.5", "--top-p"), KB_EFORMAT);
    assert_string_equal(cfg.errmsg, "--top-p: sampling.top_p: expected a number 0..1, got 1.5");

    assert_int_equal(config_set(&cfg, "retrieval.topk", "3", "--set"), KB_ENOTFOUND);
    assert_int_equal(strncmp(cfg.errmsg, "--set: ", 7), 0);
    assert_non_null(strstr(cfg.errmsg, "\"retrieval.topk\""));
    assert_non_null(strstr(cfg.errmsg, "retrieval.top_k?"));

    assert_int_equal(config_set(&cfg, "chunking.overlap", "500", "--overlap"), KB_EFORMAT);
    assert_int_equal(strncmp(cfg.errmsg, "--overlap: chunking.overlap: expected an integer 0..499", 55), 0);
    config_free(&cfg);
}

/* --- printing --- */

/* Prints cfg to path. */
static void print_to(const KbConfig *cfg, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    config_print(cfg, f);
    assert_int_equal(fclose(f), 0);
}

/* Returns the line of text starting (after indentation) with `start`, as a
** malloc'd string, or fails. */
static char *line_with(const char *text, const char *start)
{
    const char *p = strstr(text, start);
    if (!p) fail_msg("no line with \"%s\" in:\n%s", start, text);
    const char *bol = p, *eol = strchr(p, '\n');
    while (bol > text && bol[-1] != '\n') bol--;
    size_t n = (size_t)((eol ? eol : p + strlen(p)) - bol);
    char *line = malloc(n + 1);
    memcpy(line, bol, n);
    line[n] = '\0';
    return line;
}

static void test_config_print_round_trips_and_names_sources(void **state)
{
    (void)state;
    KbConfig cfg, back;
    assert_int_equal(load_text(&cfg,
                               "model:\n"
                               "  template: llama3\n"
                               "  context_size: 8192\n"
                               "sampling:\n"
                               "  temperature: 0.30000000000000004\n"
                               "  top_p: 0.95\n"
                               "  seed: 4294967295\n"
                               "prompt:\n"
                               "  system: \"Say \\\"hi\\\"\\\\ then\\n\\ttab \\u00e9\\u4e2d \\x01 \\u2028 \\x85\"\n"
                               "  template: |\n"
                               "    {context}\n"
                               "    # not a comment: {question}\n"
                               "retrieval:\n"
                               "  score_threshold: 1e-3\n"
                               "unknown_thing: 1\n"),
                     KB_OK);
    assert_int_equal(config_set(&cfg, "model.path", "/models/qwen.gguf", "--model"), KB_OK);
    print_to(&cfg, "printed.yaml");

    assert_int_equal(config_init(&back), KB_OK);
    assert_int_equal(config_load_file(&back, "printed.yaml"), KB_OK);
    assert_int_equal(back.n_warnings, 0);
    assert_same_values(&cfg, &back);
    config_free(&back);

    char *text = testutil_read_file("printed.yaml", NULL);
    assert_non_null(text);
    char *line = line_with(text, "  path: ");
    assert_string_equal(line, "  path: \"/models/qwen.gguf\"      # --model");
    free(line);
    line = line_with(text, "  template: \"llama3\"");
    assert_non_null(strstr(line, "# config.yaml:2"));
    free(line);
    line = line_with(text, "  threads: ");
    assert_non_null(strstr(line, "# default (all cores)"));
    free(line);
    line = line_with(text, "data_dir: ");
    assert_non_null(strstr(line, "# default (~/.local/share/kbchat)"));
    free(line);
    line = line_with(text, "  top_k: 40");
    assert_string_equal(line, "  top_k: 40                      # default");
    free(line);
    assert_non_null(strstr(text, "config.yaml"));
    free(text);
    config_free(&cfg);
}

static void test_config_print_without_file_says_defaults_and_lookup_order(void **state)
{
    Sandbox *sb = *state;
    KbConfig cfg, back;
    char *xdg = testutil_join(sb->dir, "share");
    setenv("XDG_DATA_HOME", xdg, 1);
    assert_int_equal(config_load(&cfg, NULL), KB_OK);
    print_to(&cfg, "printed.yaml");
    char *text = testutil_read_file("printed.yaml", NULL);
    assert_non_null(strstr(text, "no configuration file found; built-in defaults"));
    assert_non_null(strstr(text, "--config"));
    assert_non_null(strstr(text, "$KBCHAT_CONFIG"));
    char *line = line_with(text, "data_dir: ");
    assert_non_null(strstr(line, "# default ($XDG_DATA_HOME/kbchat)"));
    free(line);
    assert_int_equal(config_init(&back), KB_OK);
    assert_int_equal(config_load_file(&back, "printed.yaml"), KB_OK);
    assert_same_values(&cfg, &back);
    config_free(&back);
    config_free(&cfg);
    free(text), free(xdg);
}

/* Builds the de_DE.UTF-8 locale (decimal comma) into dir with localedef from
** the Debian `locales` package, which scripts/deps.sh installs, and points
** glibc at it. Returns 1 when setlocale then accepts it. */
static int use_comma_locale(const char *dir)
{
    char *out = NULL, *err = NULL, *locale_dir = testutil_join(dir, "de_DE.UTF-8");
    const char *argv[] = {"localedef", "-i", "de_DE", "-f", "UTF-8", locale_dir, NULL};
    int status = -1;
    testutil_run(argv, NULL, NULL, 120, &out, &err, &status);
    free(out), free(err), free(locale_dir);
    setenv("LOCPATH", dir, 1);
    int ok = setlocale(LC_NUMERIC, "de_DE.UTF-8") != NULL;
    unsetenv("LOCPATH");
    return ok && strcmp(localeconv()->decimal_point, ",") == 0;
}

static void test_config_numbers_ignore_a_comma_decimal_locale(void **state)
{
    Sandbox *sb = *state;
    assert_true(use_comma_locale(sb->dir));
    KbConfig cfg, back;
    int rc = load_text(&cfg, "sampling:\n  temperature: 0.25\n");
    if (rc == KB_OK) print_to(&cfg, "printed.yaml");
    int rc_back = config_init(&back);
    if (rc_back == KB_OK) rc_back = config_load_file(&back, "printed.yaml");
    setlocale(LC_NUMERIC, "C");
    assert_int_equal(rc, KB_OK);
    assert_true(cfg.temperature == 0.25);
    assert_int_equal(rc_back, KB_OK);
    assert_true(back.temperature == 0.25);
    config_free(&cfg);
    config_free(&back);
}

/* --- allocation failures --- */

static const char *const rich_yaml =
    "model:\n  path: ~/m.gguf\n  template: chatml\n  threads: 0\n"
    "embedding:\n  model: chat\n"
    "sampling:\n  temperature: 0.2\n  topk: 3\n"
    "data_dir: \"\"\n"
    "prompt:\n  system: hello\n  template: \"{context} {question}\"\n"
    "extra: {a: [1, 2]}\nmodle: 1\n"
    "ui:\n  theme: light\n";

/* Makes the n-th allocation fail for n = 1, 2, ... until load succeeds;
** every run must fail cleanly with KB_ENOMEM (or `other`) or succeed. */
static void run_alloc_failures(const char *text, int other)
{
    write_text("config.yaml", text);
    int failures = 0;
    for (long n = 1; n < 100000; n++) {
        KbConfig cfg;
        testutil_fail_alloc_after(n);
        int rc = config_load(&cfg, "config.yaml");
        if (rc == KB_OK) rc = config_set(&cfg, "model.path", "~/other.gguf", "--model");
        if (rc == KB_OK) rc = config_set(&cfg, "nonexistent", "1", "--set");
        testutil_fail_alloc_after(0);
        if (rc == KB_ENOMEM) {
            failures++;
            assert_non_null(strstr(cfg.errmsg, "out of memory"));
            config_free(&cfg);
            continue;
        }
        assert_int_equal(rc, other);
        config_free(&cfg);
        break;
    }
    assert_true(failures > 20);
}

static void test_config_survives_every_allocation_failure(void **state)
{
    (void)state;
    run_alloc_failures(rich_yaml, KB_ENOTFOUND);
}

static void test_config_survives_allocation_failure_on_error_paths(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof text, "%sretrieval:\n  top_k: five\n", rich_yaml);
    run_alloc_failures(text, KB_EFORMAT);
}

#define SANDBOXED(t) cmocka_unit_test_setup_teardown(t, sandbox_setup, sandbox_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SANDBOXED(test_config_defaults_are_as_documented_when_no_file_exists),
        SANDBOXED(test_config_key_table_lists_every_key_in_order),
        SANDBOXED(test_config_repository_file_loads_to_the_defaults_without_warnings),
        SANDBOXED(test_config_free_is_safe_on_zeroed_and_freed_structs),
        SANDBOXED(test_config_reads_every_kind_of_value),
        SANDBOXED(test_config_threads_zero_resolves_to_all_cores),
        SANDBOXED(test_config_reports_line_and_key_for_bad_integer),
        SANDBOXED(test_config_context_size_allows_zero_or_16_and_more),
        SANDBOXED(test_config_reports_line_and_key_for_bad_number),
        SANDBOXED(test_config_refuses_empty_and_null_numbers),
        SANDBOXED(test_config_reports_words_allowed_for_enum),
        SANDBOXED(test_config_refuses_collections_where_a_value_is_expected),
        SANDBOXED(test_config_refuses_a_value_where_a_section_is_expected),
        SANDBOXED(test_config_refuses_a_top_level_that_is_not_a_mapping),
        SANDBOXED(test_config_accepts_empty_sections_and_null_strings),
        SANDBOXED(test_config_prompt_template_needs_both_placeholders),
        SANDBOXED(test_config_escapes_and_truncates_hostile_values_in_messages),
        SANDBOXED(test_config_checks_overlap_below_size_after_the_whole_file),
        SANDBOXED(test_config_reports_malformed_yaml_with_line),
        SANDBOXED(test_config_refuses_aliases_and_anchors),
        SANDBOXED(test_config_refuses_duplicate_keys),
        SANDBOXED(test_config_refuses_a_second_document),
        SANDBOXED(test_config_refuses_files_larger_than_the_limit),
        SANDBOXED(test_config_empty_or_comment_only_file_gives_defaults),
        SANDBOXED(test_config_refuses_binary_junk_nul_and_bad_utf8),
        SANDBOXED(test_config_refuses_nesting_deeper_than_64),
        SANDBOXED(test_config_missing_named_file_is_an_error_naming_path_and_origin),
        SANDBOXED(test_config_directory_as_config_is_an_error),
        SANDBOXED(test_config_unreadable_file_is_an_error),
        SANDBOXED(test_config_warns_on_unknown_key_with_suggestion),
        SANDBOXED(test_config_skips_unknown_values_of_any_shape),
        SANDBOXED(test_config_lookup_order_takes_the_first_file_found),
        SANDBOXED(test_config_xdg_config_home_hides_the_home_config),
        SANDBOXED(test_config_reads_only_one_file),
        SANDBOXED(test_config_data_dir_follows_xdg_data_home),
        SANDBOXED(test_config_expands_tilde_in_paths),
        SANDBOXED(test_config_set_validates_and_records_source),
        SANDBOXED(test_config_print_round_trips_and_names_sources),
        SANDBOXED(test_config_print_without_file_says_defaults_and_lookup_order),
        SANDBOXED(test_config_numbers_ignore_a_comma_decimal_locale),
        SANDBOXED(test_config_survives_every_allocation_failure),
        SANDBOXED(test_config_survives_allocation_failure_on_error_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
