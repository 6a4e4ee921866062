/*
** test_chat_cli.c: `kbchat chat` driven through a pipe, as a script or a
** screen reader drives it: questions and /commands on standard input,
** answers and results on standard output, notices on standard error, exit
** status 0 at the end of input or /quit.
**
** Each test runs $KBCHAT_BIN in a fresh sandbox (HOME, working directory and
** data directory are a new temporary folder) with a configuration written
** there, and the aidreams model from ../shared/testdata.
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
#include <unistd.h>
#include <cmocka.h>

#include <glib.h>

#include "tests/ggufgen.h"
#include "tests/ragfix.h"
#include "tests/testutil.h"

typedef struct Sandbox {
    char *dir;
    char *bin;
    char *model;
    char env_home[600], env_bin[600];
} Sandbox;

typedef struct Run {
    char *out, *err;
    int status;
} Run;

/* Greedy, short answers and a small reserve: the model has 128 tokens. */
static const char CONFIG[] = "model:\n"
                             "  template: raw\n"
                             "  threads: 2\n"
                             "sampling:\n"
                             "  temperature: 0\n"
                             "  max_tokens: 12\n"
                             "retrieval:\n"
                             "  top_k: 1\n"
                             "prompt:\n"
                             "  template: \"{context}\\n{question}\"\n"
                             "conversation:\n"
                             "  answer_reserve: 24\n"
                             "data_dir: data\n";

static int sandbox_setup(void **state)
{
    Sandbox *sb = calloc(1, sizeof *sb);
    umask(022); /* the usual umask: exports must not rely on a stricter one */
    sb->dir = testutil_mkdtemp();
    sb->bin = realpath(testutil_kbchat_bin(), NULL);
    sb->model = testutil_data_path("models/aidreams260K-F32.gguf");
    snprintf(sb->env_home, sizeof sb->env_home, "HOME=%s", sb->dir);
    snprintf(sb->env_bin, sizeof sb->env_bin, "KB=%s", sb->bin ? sb->bin : "");
    char *cfg = testutil_join(sb->dir, "chat.yaml");
    int rc = testutil_write_file(cfg, CONFIG, strlen(CONFIG));
    free(cfg);
    *state = sb;
    return sb->dir && sb->bin && rc == 0 ? 0 : -1;
}

static int sandbox_teardown(void **state)
{
    Sandbox *sb = *state;
    testutil_rmtree(sb->dir);
    free(sb->dir), free(sb->bin), free(sb->model);
    free(sb);
    return 0;
}

/* Runs `kbchat --config chat.yaml ARGS` in the sandbox with input on its
** standard input (a file, so it is a pipe-like non-terminal). */
static Run chat_run(Sandbox *sb, const char *args, const char *input)
{
    char *in = testutil_join(sb->dir, "input.txt");
    assert_int_equal(testutil_write_file(in, input, strlen(input)), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec \"$KB\" --config chat.yaml %s < input.txt", args);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    const char *env[] = {sb->env_home, sb->env_bin, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "KBCHAT_CONFIG=", NULL};
    Run r;
    assert_int_equal(testutil_run(argv, env, sb->dir, 120, &r.out, &r.err, &r.status), 0);
    free(in);
    return r;
}

static void run_free(Run *r)
{
    free(r->out);
    free(r->err);
}

static void expect(const Run *r, const char *where, const char *text)
{
    const char *s = strcmp(where, "out") == 0 ? r->out : r->err;
    if (strstr(s, text) == NULL) fail_msg("%s lacks \"%s\"\n--- stdout:\n%s\n--- stderr:\n%s", where, text, r->out, r->err);
}

/* The export at path is 0600 under umask 022; a second
** /export to it is refused and changes nothing; --force replaces it. */
static void expect_export_is_private_and_kept(Sandbox *sb, const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(truncate(path, 10), 0); /* so a rewrite would show */
    Run r = chat_run(sb, "chat", "/sessions\n/open 1\n/export talk.md\n");
    assert_int_equal(r.status, 0);
    expect(&r, "err", "talk.md already exists: not overwritten; '/export --force talk.md' replaces it");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 10);
    run_free(&r);
    r = chat_run(sb, "chat", "/sessions\n/open 1\n/export --force talk.md\n");
    expect(&r, "out", "Exported 2 turns to talk.md.");
    size_t len;
    char *again = testutil_read_file(path, &len);
    assert_non_null(again);
    /* the whole file again (its header names the model, which this run has not loaded) */
    assert_non_null(strstr(again, "## 2. The little dog\n"));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(again);
    run_free(&r);
}

/* Two turns, a command between them and /quit; then a second run resumes
** the saved session and exports it. */
static void test_chat_two_turns_a_command_and_quit(void **state)
{
    Sandbox *sb = *state;
    char args[1024];
    snprintf(args, sizeof args, "chat --model '%s'", sb->model);
    Run r = chat_run(sb, args, "Once upon a time\n/sessions\nThe little dog\n/quit\nnever read\n");
    if (r.status != 0) fail_msg("exit %d\n%s", r.status, r.err);
    expect(&r, "err", "template raw: model.template");
    /* the answers were streamed: the output has more than the command's line */
    expect(&r, "out", "*  1. Once upon a time  (1 turn, "); /* '*': the session in use */
    assert_null(strstr(r.out, "never read"));
    assert_null(strstr(r.out, "> ")); /* no prompt on a pipe */
    assert_true(strlen(r.out) > strlen("   1. Once upon a time  (1 turn, 2025-01-01 00:00)\n") + 4);
    run_free(&r);

    r = chat_run(sb, args, "/sessions\n/open 1\n/export talk.md\n");
    assert_int_equal(r.status, 0);
    expect(&r, "out", "   1. Once upon a time  (2 turns, ");
    expect(&r, "out", "Opened \"Once upon a time\": 2 turns.");
    expect(&r, "out", "Exported 2 turns to talk.md.");
    char *path = testutil_join(sb->dir, "talk.md");
    size_t len;
    char *md = testutil_read_file(path, &len);
    assert_non_null(md);
    assert_non_null(strstr(md, "# Once upon a time\n"));
    assert_non_null(strstr(md, "## 1. Once upon a time\n"));
    assert_non_null(strstr(md, "## 2. The little dog\n"));
    run_free(&r);
    expect_export_is_private_and_kept(sb, path);
    free(md), free(path);
}

/* Ctrl-C while a question's prompt is evaluated stops that answer and the
** chat goes on: KBCHAT_TEST_HOLD_PROMPT holds the evaluation after its
** batch (writing go.held), SIGINT is sent then; the turn ends "[stopped]",
** is kept, and the next lines are read (exit 0 at /quit). */
static void test_chat_ctrl_c_during_the_prompt_stops_the_answer(void **state)
{
    Sandbox *sb = *state;
    char args[1024], hold[700], cmd[2048];
    snprintf(args, sizeof args, "chat --model '%s'", sb->model);
    snprintf(hold, sizeof hold, "KBCHAT_TEST_HOLD_PROMPT=%s/go", sb->dir);
    char *in = testutil_join(sb->dir, "input.txt"), *held = testutil_join(sb->dir, "go.held");
    static const char input[] = "Once upon a time there was a little dog\n/sessions\n/quit\n";
    assert_int_equal(testutil_write_file(in, input, strlen(input)), 0);
    snprintf(cmd, sizeof cmd, "exec \"$KB\" --config chat.yaml %s < input.txt", args);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    const char *env[] = {sb->env_home, sb->env_bin, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "KBCHAT_CONFIG=", hold, NULL};
    Run r;
    assert_int_equal(testutil_run_signal(argv, env, sb->dir, 60, held, SIGINT, &r.out, &r.err, &r.status), 0);
    if (r.status != 0) fail_msg("exit %d\n%s", r.status, r.err);
    assert_true(strncmp(r.out, " [stopped]\n", 11) == 0); /* stopped before any text */
    expect(&r, "out", "Once upon a time there was a little dog  (1 turn, ");
    run_free(&r);
    free(in), free(held);
}

/* With a knowledge base, each answer is followed by its sources. */
static void test_chat_shows_sources_of_the_knowledge_base(void **state)
{
    Sandbox *sb = *state;
    char *docs = testutil_join(sb->dir, "docs"), *g = testutil_join(docs, "giraffes.txt");
    assert_int_equal(mkdir(docs, 0700), 0);
    const char *text = "Giraffes have long necks. A giraffe sleeps two hours a day.\n";
    assert_int_equal(testutil_write_file(g, text, strlen(text)), 0);
    Run r = chat_run(sb, "kb create animals --folder docs", "");
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = chat_run(sb, "kb sync animals", "");
    assert_int_equal(r.status, 0);
    run_free(&r);
    char args[1024];
    snprintf(args, sizeof args, "chat --model '%s' --kb animals", sb->model);
    r = chat_run(sb, args, "giraffe sleeps\n/sources\n/kb off\nhello\n");
    if (r.status != 0) fail_msg("exit %d\n%s", r.status, r.err);
    expect(&r, "err", "knowledge base: animals");
    expect(&r, "out", "Sources:\n  [1] giraffes.txt\n");
    expect(&r, "out", "Sources:\n  [1] ");
    expect(&r, "out", "      Giraffes have long necks. A giraffe sleeps two hours a day.\n");
    expect(&r, "out", "Knowledge base off");
    run_free(&r);
    r = chat_run(sb, "chat --kb nothing-here", "");
    assert_int_equal(r.status, 1);
    expect(&r, "err", "nothing-here");
    run_free(&r);
    free(docs), free(g);
}

/* Commands shared with the full-screen UI: help, settings, suggestions. */
static void test_chat_commands_help_set_and_suggestions(void **state)
{
    Sandbox *sb = *state;
    Run r = chat_run(sb, "chat", "/help\n/set temperature 0.5\n/set top_k 5000\n/set threads 3\n/sesions\n/frobnicate\n"
                                 "Is anyone there?\n");
    assert_int_equal(r.status, 0); /* the end of input ends the session */
    expect(&r, "err", "no model");
    static const char *const cmds[] = {"/kb", "/new", "/sessions", "/open", "/rename", "/export", "/set", "/model",
                                       "/sources", "/retry", "/help", "/quit"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) expect(&r, "out", cmds[i]);
    expect(&r, "out", "sampling.temperature = 0.5");
    expect(&r, "err", "sampling.top_k: expected an integer 0..1000");
    expect(&r, "err", "'threads' cannot be changed in a chat");
    expect(&r, "err", "unknown command /sesions; did you mean /sessions?");
    expect(&r, "err", "unknown command /frobnicate (/help lists the commands)");
    expect(&r, "err", "no model is loaded");
    run_free(&r);
}

/* The hostile model (tests/ggufgen.h) over files with hostile names
** (tests/ragfix.h), asked a question holding an OSC sequence: the answer,
** the sources, /sources, /sessions (the title is the question) and /kb are
** shown in the notation of docs/output.md; --raw writes the answer's bytes. */
static void test_chat_escapes_a_hostile_model_names_and_titles(void **state)
{
    Sandbox *sb = *state;
    char *model = testutil_join(sb->dir, "hostile.gguf"), *dir = testutil_join(sb->dir, "hostile");
    assert_int_equal(ggufgen_write_hostile_llama(model), 0);
    assert_int_equal(ragfix_write_hostile_names(dir), 0);
    Run r = chat_run(sb, "kb create odd --folder hostile", "");
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = chat_run(sb, "kb sync odd", "");
    assert_int_equal(r.status, 0);
    run_free(&r);
    char args[1024];
    snprintf(args, sizeof args, "chat --model '%s' --kb odd", model);
    r = chat_run(sb, args, "/set passages 10\nwombat \x1b]0;title\x07 notes\n/sources\n/sessions\n/kb\n");
    if (r.status != 0) fail_msg("exit %d\n%s", r.status, r.err);
    testutil_expect_terminal_safe(r.out, "chat's stdout");
    testutil_expect_terminal_safe(r.err, "chat's stderr");
    expect(&r, "out", GGUFGEN_HOSTILE_SHOWN "\nSources:\n  [");
    for (int i = 0; i < RAGFIX_N_HOSTILE; i++) {
        char *line = g_strdup_printf("] %s\n", RAGFIX_HOSTILE_SHOWN[i]);      /* the Sources after the answer */
        char *full = g_strdup_printf("/hostile/%s\n      Wombat ", RAGFIX_HOSTILE_SHOWN[i]); /* /sources */
        expect(&r, "out", line);
        expect(&r, "out", full);
        g_free(line), g_free(full);
    }
    expect(&r, "out", "1. wombat \\x1b]0;title\\x07 notes  (1 turn, ");
    expect(&r, "out", "* odd (5 documents)");
    run_free(&r);
    snprintf(args, sizeof args, "chat --model '%s' --raw", model);
    r = chat_run(sb, args, "wombat\n");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, GGUFGEN_HOSTILE_RAW "\n");
    run_free(&r);
    free(model), free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chat_two_turns_a_command_and_quit, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_chat_ctrl_c_during_the_prompt_stops_the_answer, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_chat_shows_sources_of_the_knowledge_base, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_chat_commands_help_set_and_suggestions, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_chat_escapes_a_hostile_model_names_and_titles, sandbox_setup, sandbox_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
