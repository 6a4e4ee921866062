/*
** test_tui.c: the full-screen chat (ui/) driven through tmux, as a person at
** a terminal drives it: keys sent with `tmux send-keys`, the screen read
** with `tmux capture-pane -p`, at the fixed sizes 100x30 and 60x15 with
** LANG=C.UTF-8.
**
** Each test starts its own tmux server on a private socket (tmux -L
** kbtui-PID-N) in a fresh sandbox (HOME and the data directory are a new
** temporary folder, the aidreams model from ../shared/testdata) and kills
** it at the end. Every wait is bounded. The pane runs
**   stty -a > before; kbchat ...; echo $? > status; stty -a > after
** so a test can check that kbchat gave the terminal back unchanged.
** KBCHAT_TUI_PIECE_DELAY_MS slows the streaming so that an answer of the
** tiny model lasts long enough to see it stream; KBCHAT_TEST_HOLD_PROMPT
** (app/stop.h) and KBCHAT_TEST_HOLD_SYNC (rag/rag.h) hold an answer or a
** sync at a known point, for a key, a resize or a signal to land there.
** Without tmux the program fails (it does not skip).
*/
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wchar.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "rag/rag.h"
#include "rag/store.h"
#include "tests/ggufgen.h"
#include "ui/screen.h"
#include "tests/ragfix.h"
#include "tests/testutil.h"

typedef struct Tui {
    char *dir, *bin, *model;
    char sock[64];
    int started;
} Tui;

/* Greedy answers of up to 40 tokens: the model's context is 128 tokens. */
static const char CONFIG[] = "model:\n"
                             "  template: raw\n"
                             "  threads: 2\n"
                             "sampling:\n"
                             "  temperature: 0\n"
                             "  max_tokens: 40\n"
                             "retrieval:\n"
                             "  top_k: 1\n"
                             "prompt:\n"
                             "  template: \"{context}\\n{question}\"\n"
                             "conversation:\n"
                             "  answer_reserve: 48\n"
                             "data_dir: data\n";

static int have_tmux(void)
{
    const char *argv[] = {"tmux", "-V", NULL};
    char *out = NULL, *err = NULL;
    int status = -1, rc = testutil_run(argv, NULL, NULL, 5, &out, &err, &status);
    free(out), free(err);
    return rc == 0 && status == 0;
}

static int tui_setup(void **state)
{
    static int n;
    Tui *t = calloc(1, sizeof *t);
    t->dir = testutil_mkdtemp();
    t->bin = realpath(testutil_kbchat_bin(), NULL);
    t->model = testutil_data_path("models/aidreams260K-F32.gguf");
    snprintf(t->sock, sizeof t->sock, "kbtui-%d-%d", (int)getpid(), ++n);
    char *cfg = testutil_join(t->dir, "tui.yaml");
    int rc = testutil_write_file(cfg, CONFIG, strlen(CONFIG));
    free(cfg);
    *state = t;
    return t->dir && t->bin && rc == 0 ? 0 : -1;
}

/* Runs tmux -L sock ARGS...; returns its stdout (malloc'd). */
static char *tmux(Tui *t, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5)
{
    const char *argv[10] = {"tmux", "-L", t->sock, "-f", "/dev/null", a1, a2, a3, a4, a5};
    const char *full[11];
    memcpy(full, argv, sizeof argv);
    full[10] = NULL;
    char *out = NULL, *err = NULL;
    int status = -1;
    testutil_run(full, NULL, t->dir, 10, &out, &err, &status);
    free(err);
    return out;
}

static int tui_teardown(void **state)
{
    Tui *t = *state;
    if (t->started) free(tmux(t, "kill-server", NULL, NULL, NULL, NULL));
    testutil_rmtree(t->dir);
    free(t->dir), free(t->bin), free(t->model);
    free(t);
    return 0;
}

/* Starts kbchat (with extra arguments args and environment env, like
** "NO_COLOR=1") in a cols x rows pane. */
static void tui_start(Tui *t, int cols, int rows, const char *env, const char *args)
{
    char cmd[4096], x[16], y[16];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && stty -a > before; env HOME='%s' XDG_DATA_HOME= XDG_CONFIG_HOME= KBCHAT_CONFIG= LANG=C.UTF-8 "
             "LC_ALL=C.UTF-8 %s sh -c 'echo $$ > pid; exec \"$@\"' sh '%s' --config tui.yaml %s; echo $? > status; "
             "stty -a > after; sleep 60",
             t->dir, t->dir, env ? env : "", t->bin, args ? args : "");
    snprintf(x, sizeof x, "%d", cols);
    snprintf(y, sizeof y, "%d", rows);
    /* forked here, closing every descriptor but 0-2: the tmux server must
    ** not keep a test's pipes (testutil_run's) open */
    const char *argv[] = {"tmux", "-L", t->sock, "-f", "/dev/null", "new-session", "-d", "-x", x, "-y", y, "-s", "k", cmd, NULL};
    int ws = 0;
    for (int attempt = 0; attempt < 3; attempt++, testutil_nap_ms(200)) { /* tmux can fail to start a server at once */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0), dup2(null, 1), dup2(null, 2);
            for (int fd = 3; fd < 1024; fd++) close(fd);
            execvp("tmux", (char *const *)argv);
            _exit(127);
        }
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
        }
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) break;
    }
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) fail_msg("tmux new-session failed (status %d)", ws);
    t->started = 1;
}

static char *screen(Tui *t)
{
    return tmux(t, "capture-pane", "-p", "-t", "k", NULL);
}

static void keys(Tui *t, const char *literal)
{
    free(tmux(t, "send-keys", "-t", "k", "-l", literal));
}

static void key(Tui *t, const char *name)
{
    free(tmux(t, "send-keys", "-t", "k", name, NULL));
}

/* Sends a mouse wheel step up (X10 encoding, button 64, at column and row
** 5), as a terminal does when ncurses has asked for mouse reports. */
static void wheel_up(Tui *t)
{
    const char *argv[] = {"tmux", "-L", t->sock, "send-keys", "-t", "k", "-H", "1b", "5b", "4d", "60", "25", "25", NULL};
    char *out = NULL, *err = NULL;
    int status;
    testutil_run(argv, NULL, t->dir, 10, &out, &err, &status);
    free(out), free(err);
}

static void resize(Tui *t, int cols, int rows)
{
    char x[16], y[16];
    snprintf(x, sizeof x, "%d", cols);
    snprintf(y, sizeof y, "%d", rows);
    const char *argv[] = {"tmux", "-L", t->sock, "resize-window", "-t", "k", "-x", x, "-y", y, NULL};
    char *out = NULL, *err = NULL;
    int status;
    testutil_run(argv, NULL, t->dir, 10, &out, &err, &status);
    free(out), free(err);
}

/* Polls the screen until text is on it (present) or off it (!present),
** for up to timeout_ms; returns that screen (malloc'd), or fails showing
** the last one. */
static char *wait_screen(Tui *t, const char *text, int present, long timeout_ms)
{
    for (long waited = 0;; waited += 50) {
        char *s = screen(t);
        if (s && (strstr(s, text) != NULL) == present) return s;
        if (waited >= timeout_ms)
            fail_msg("\"%s\" %s within %ld ms; the screen:\n%s", text, present ? "did not appear" : "did not go away",
                     timeout_ms, s ? s : "");
        free(s);
        testutil_nap_ms(50);
    }
}

/* Waits up to timeout_ms for text on the screen; fails showing the screen. */
static char *wait_for(Tui *t, const char *text, long timeout_ms)
{
    return wait_screen(t, text, 1, timeout_ms);
}

/* Waits up to timeout_ms for text to leave the screen. */
static void wait_gone(Tui *t, const char *text, long timeout_ms)
{
    free(wait_screen(t, text, 0, timeout_ms));
}

/* Waits for the answer in progress to end (the idle hint is back). */
static char *wait_idle(Tui *t)
{
    return wait_for(t, "Ctrl-C×2: quit", 20000);
}

/* Reads the sandbox file name, waiting up to 10 s for it. */
static char *wait_file(Tui *t, const char *name)
{
    char *path = testutil_join(t->dir, name);
    for (int i = 0; i < 200; i++) {
        size_t len;
        char *s = testutil_read_file(path, &len);
        if (s && len > 0) {
            free(path);
            return s;
        }
        free(s);
        testutil_nap_ms(50);
    }
    fail_msg("%s was not written", name);
    return NULL;
}

/* Waits for kbchat to end; checks its exit status (want_status, e.g.
** "143\n") and that the terminal's modes are what they were before it
** started. */
static void expect_exit_restoring_terminal(Tui *t, const char *want_status)
{
    char *status = wait_file(t, "status"), *before = wait_file(t, "before"), *after = wait_file(t, "after");
    assert_string_equal(status, want_status);
    assert_string_equal(before, after);
    free(status), free(before), free(after);
}

/* Quits with Ctrl-C twice; checks the exit status and that the terminal's
** modes are what they were before kbchat started. */
static void quit_and_check_terminal(Tui *t)
{
    key(t, "C-c");
    free(wait_for(t, "Press Ctrl-C again to quit", 5000));
    key(t, "C-c");
    expect_exit_restoring_terminal(t, "0\n");
}

/* Waits for the answer just asked for to be held by the test hook
** KBCHAT_TEST_HOLD_PROMPT=go (app/stop.h): go.held exists, go does not, so
** the answer is certainly still being computed; the screen says so. */
static void expect_answer_held(Tui *t)
{
    char *held = testutil_join(t->dir, "go.held"), *go = testutil_join(t->dir, "go");
    if (!testutil_wait_file(held, 10000)) fail_msg("the answer's evaluation was not held");
    assert_int_equal(access(go, F_OK), -1);
    free(wait_for(t, "thinking…", 5000));
    free(held), free(go);
}

/* SIGTERM leaves the normal way (status 128+15, as a shell reports it);
** SIGQUIT, a fatal signal, kills kbchat (status 128+3) after its handler
** restored the terminal; each arrives while an answer is being computed
** (held there by the test hook KBCHAT_TEST_HOLD_PROMPT). */
static void test_tui_signals_restore_terminal(void **state)
{
    static const int sigs[] = {SIGTERM, SIGQUIT};
    for (int i = 0; i < 2; i++) {
        Tui *t = *state;
        char args[1024], want[16];
        if (i == 1) {
            tui_teardown(state);
            tui_setup(state);
            t = *state;
        }
        snprintf(args, sizeof args, "--model '%s'", t->model);
        tui_start(t, 100, 30, "KBCHAT_TEST_HOLD_PROMPT=go", args);
        free(wait_for(t, "Ready:", 10000));
        keys(t, "Once upon a time");
        key(t, "Enter");
        expect_answer_held(t); /* mid-answer: the prompt's evaluation waits for go, never written */
        char *pid = wait_file(t, "pid");
        assert_int_equal(kill((pid_t)atol(pid), sigs[i]), 0);
        free(pid);
        snprintf(want, sizeof want, "%d\n", 128 + sigs[i]);
        expect_exit_restoring_terminal(t, want);
    }
}

/* Runs kbchat --config tui.yaml ARGS (up to five, NULL-ended) in the
** sandbox, without a terminal; expects exit status 0. Returns its standard
** output (caller frees). */
static char *kbchat_cli_out(Tui *t, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5)
{
    const char *argv[] = {t->bin, "--config", "tui.yaml", a1, a2, a3, a4, a5, NULL};
    char home[600], *out = NULL, *err = NULL;
    int status = -1;
    snprintf(home, sizeof home, "HOME=%s", t->dir);
    const char *env[] = {home, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "KBCHAT_CONFIG=", NULL};
    assert_int_equal(testutil_run(argv, env, t->dir, 60, &out, &err, &status), 0);
    if (status != 0) fail_msg("kbchat %s %s: exit %d\n%s", a1, a2, status, err);
    free(err);
    return out;
}

/* kbchat_cli_out without the output. */
static void kbchat_cli(Tui *t, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5)
{
    free(kbchat_cli_out(t, a1, a2, a3, a4, a5));
}

/* F2 lists the knowledge bases and Enter searches one; the answer is then
** followed by its sources; F3 lists them with file and score, Enter shows
** the passage, Esc goes back. */
static void test_tui_sources_pane_and_viewer(void **state)
{
    Tui *t = *state;
    char *docs = testutil_join(t->dir, "docs"), *g = testutil_join(docs, "giraffes.txt");
    assert_int_equal(mkdir(docs, 0700), 0);
    const char *text = "Giraffes have long necks. A giraffe sleeps two hours a day.\n";
    assert_int_equal(testutil_write_file(g, text, strlen(text)), 0);
    kbchat_cli(t, "kb", "create", "animals", "--folder", "docs");
    kbchat_cli(t, "kb", "sync", "animals", NULL, NULL);
    free(docs), free(g);
    char args[1024];
    snprintf(args, sizeof args, "--model '%s'", t->model);
    tui_start(t, 100, 30, NULL, args);
    free(wait_for(t, "Ready:", 10000));
    key(t, "F3");
    free(wait_for(t, "Sources: no answer yet", 3000));
    key(t, "Escape");
    testutil_nap_ms(100); /* Esc then a key at once would read as Alt-key */
    key(t, "F2"); /* the knowledge bases; Enter searches the one selected */
    char *s = wait_for(t, "Enter: search it", 3000);
    assert_non_null(strstr(s, "Knowledge bases"));
    assert_non_null(strstr(s, "  animals "));
    assert_non_null(strstr(s, "1 docs"));
    free(s);
    key(t, "Enter");
    free(wait_for(t, "kb: animals", 5000));
    keys(t, "giraffe sleeps");
    key(t, "Enter");
    free(wait_for(t, "Sources:", 10000));
    free(wait_idle(t));
    key(t, "F3");
    s = wait_for(t, "Sources for \"giraffe sleeps\"", 3000);
    assert_non_null(strstr(s, "[1] giraffes.txt · score "));
    assert_non_null(strstr(s, "keyword #1"));
    free(s);
    key(t, "Enter");
    s = wait_for(t, "Passage (", 3000);
    assert_non_null(strstr(s, "Giraffes have long necks. A giraffe sleeps two hours a day."));
    free(s);
    key(t, "Escape");
    free(wait_for(t, "(Enter: view, Esc: close)", 3000));
    key(t, "Escape");
    wait_gone(t, "(Enter: view, Esc: close)", 2000);
    quit_and_check_terminal(t);
}

/* F4 lists the stored conversations; Enter opens one (its turns shown), d
** deletes after a confirmation, r puts /rename into the editor. */
static void test_tui_sessions_panel(void **state)
{
    Tui *t = *state;
    char args[1024];
    snprintf(args, sizeof args, "--model '%s'", t->model);
    tui_start(t, 100, 30, NULL, args);
    free(wait_for(t, "Ready:", 10000));
    keys(t, "Once upon a time");
    key(t, "Enter");
    free(wait_for(t, "> Once upon a time", 5000));
    free(wait_idle(t));
    keys(t, "/new");
    key(t, "Enter");
    free(wait_for(t, "New conversation.", 5000));
    keys(t, "The little dog");
    key(t, "Enter");
    free(wait_for(t, "> The little dog", 5000));
    free(wait_idle(t));
    key(t, "F4");
    char *s = wait_for(t, "Conversations (", 3000);
    assert_non_null(strstr(s, "*  1. The little dog  (1 turn, "));
    assert_non_null(strstr(s, "   2. Once upon a time  (1 turn, "));
    free(s);
    key(t, "Down");
    key(t, "Enter");
    s = wait_for(t, "Opened \"Once upon a time\" (1 turn)", 5000);
    assert_null(strstr(s, "> The little dog")); /* the pane shows the opened conversation only */
    assert_non_null(strstr(s, "> Once upon a time"));
    free(s);
    key(t, "F4");
    free(wait_for(t, "*  2. Once upon a time", 3000));
    keys(t, "d");
    free(wait_for(t, "Delete this conversation? y/n", 3000));
    keys(t, "y");
    free(wait_for(t, "Deleted \"The little dog\"", 5000));
    key(t, "F4");
    s = wait_for(t, "*  1. Once upon a time", 3000);
    assert_null(strstr(s, "The little dog"));
    free(s);
    keys(t, "r");
    free(wait_for(t, "> /rename\n", 3000));
    free(wait_idle(t)); /* the /open it ran first */
    keys(t, "Tales");
    key(t, "Enter");
    free(wait_for(t, "Renamed to \"Tales\".", 5000));
    quit_and_check_terminal(t);
}

/* Display width of each line of s is at most cols. */
static void assert_lines_fit(const char *s, int cols)
{
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, "\n");
        wchar_t w[1024];
        char line[4096];
        snprintf(line, sizeof line, "%.*s", (int)n, p);
        size_t k = mbstowcs(w, line, 1023);
        assert_true(k != (size_t)-1);
        int width = wcswidth(w, k);
        if (width > cols) fail_msg("a line of %d columns in a %d-column pane: \"%s\"", width, cols, line);
        p += n + (p[n] == '\n');
    }
}

/* The screen's text without line ends and spaces (to find wrapped text
** that has no spaces). */
static char *unwrapped(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    for (; *s; s++)
        if (*s != '\n' && *s != ' ') *o++ = *s;
    *o = '\0';
    return out;
}

/* --- the scenarios --- */

/* An English question at 100x30: the answer streams (tokens/s shown while
** it does), the status bar shows model, template and context used; after
** quitting, a restart shows the conversation again. */
static void test_tui_english_question_streams_answer(void **state)
{
    Tui *t = *state;
    char args[1024];
    snprintf(args, sizeof args, "--model '%s'", t->model);
    tui_start(t, 100, 30, "KBCHAT_TUI_PIECE_DELAY_MS=20", args);
    free(wait_for(t, "Ready: aidreams260K-F32.gguf", 10000));
    char *s = screen(t);
    assert_non_null(strstr(s, "aidreams260K-F32.gguf (llama, raw)"));
    assert_non_null(strstr(s, "kb: none"));
    assert_non_null(strstr(s, "ctx 0/128"));
    free(s);
    keys(t, "Once upon a time");
    key(t, "Enter");
    free(wait_for(t, "tok/s", 5000));
    s = wait_idle(t);
    assert_non_null(strstr(s, "> Once upon a time"));
    const char *after_q = strstr(s, "> Once upon a time\n\n");
    assert_non_null(after_q);
    assert_true(after_q[strlen("> Once upon a time\n\n")] != '\n'); /* an answer follows */
    assert_null(strstr(s, "ctx 0/128"));
    assert_lines_fit(s, 100);
    free(s);
    quit_and_check_terminal(t);
    /* a restart resumes the conversation */
    free(tmux(t, "kill-server", NULL, NULL, NULL, NULL));
    strcat(t->sock, "-again"); /* a new server: the old one's socket may linger a moment */
    static const char *const files[] = {"status", "before", "after", "pid"};
    for (int i = 0; i < 4; i++) {
        char *path = testutil_join(t->dir, files[i]);
        unlink(path);
        free(path);
    }
    tui_start(t, 100, 30, NULL, args);
    s = wait_for(t, "Resumed \"Once upon a time\" (1 turn)", 10000);
    assert_non_null(strstr(s, "> Once upon a time\n"));
    free(s);
    quit_and_check_terminal(t);
}

/* Chinese at 60x15: a short question is answered; a long one wraps at the
** pane's width by display columns and no character is lost or cut. */
static void test_tui_chinese_question_wraps_by_width(void **state)
{
    static const char long_q[] = "这是一个很长的中文问题，用来测试换行是否正确处理双宽字符而不会在右边缘出现半个字符";
    Tui *t = *state;
    char args[1024];
    snprintf(args, sizeof args, "--model '%s'", t->model);
    tui_start(t, 60, 15, NULL, args);
    free(wait_for(t, "Ready:", 10000));
    keys(t, "你好吗？");
    key(t, "Enter");
    free(wait_for(t, "> 你好吗？", 5000));
    free(wait_idle(t));
    keys(t, long_q);
    char *s = wait_for(t, "半个字符", 5000);
    assert_lines_fit(s, 60);
    char *flat = unwrapped(s);
    assert_non_null(strstr(flat, long_q)); /* wrapped in the editor without a gap */
    free(flat), free(s);
    key(t, "Enter");
    s = wait_idle(t);
    assert_lines_fit(s, 60);
    flat = unwrapped(s);
    assert_non_null(strstr(flat, long_q)); /* and in the chat pane */
    free(flat), free(s);
    quit_and_check_terminal(t);
}

/* Esc and Ctrl-C stop an answer (each pressed while the answer is held by
** KBCHAT_TEST_HOLD_PROMPT, so certainly before it ends); the chat goes on. */
static void test_tui_cancel_answer(void **state)
{
    Tui *t = *state;
    char args[1024];
    snprintf(args, sizeof args, "--model '%s'", t->model);
    tui_start(t, 100, 30, "KBCHAT_TEST_HOLD_PROMPT=go", args);
    free(wait_for(t, "Ready:", 10000));
    keys(t, "Once upon a time");
    key(t, "Enter");
    expect_answer_held(t);
    key(t, "Escape");
    char *s = wait_for(t, "[stopped]", 3000);
    free(s);
    free(wait_idle(t));
    char *held = testutil_join(t->dir, "go.held");
    assert_int_equal(unlink(held), 0); /* the next hold writes it again */
    free(held);
    keys(t, "The little dog");
    key(t, "Enter");
    expect_answer_held(t);
    key(t, "C-c");
    free(wait_idle(t));
    s = screen(t);
    const char *second = strstr(s, "> The little dog");
    assert_non_null(second);
    assert_non_null(strstr(second, "[stopped]"));
    assert_null(strstr(s, "Press Ctrl-C again")); /* a Ctrl-C that stops an answer does not arm quitting */
    free(s);
    quit_and_check_terminal(t);
}

/* Whether the sandbox file name exists, waiting up to timeout_ms for it. */
static int file_appears(Tui *t, const char *name, long timeout_ms)
{
    char *path = testutil_join(t->dir, name);
    int found = testutil_wait_file(path, timeout_ms);
    free(path);
    return found;
}

/* Esc while a long prompt (2 batches of the tiny llama, context 256) is
** evaluated: KBCHAT_TEST_HOLD_PROMPT=go holds the evaluation after its first
** batch (it writes go.held) until the file go exists, reading the cancel
** flag, so the Esc certainly lands in the prompt's evaluation. The turn is
** shown stopped at once, the completed batch stays in the cache, and the
** next question is answered. */
static void test_tui_esc_stops_prompt_evaluation(void **state)
{
    Tui *t = *state;
    char args[1024], *model = testutil_data_path("models/tiny-llama-Q4_0.gguf"), question[400] = "";
    snprintf(args, sizeof args, "--model '%s'", model);
    free(model);
    for (int i = 0; i < 6; i++) strcat(question, "the little dog ran to the big red house and ");
    tui_start(t, 100, 30, "KBCHAT_TEST_HOLD_PROMPT=go", args);
    free(wait_for(t, "Ready:", 10000));
    keys(t, question);
    key(t, "Enter");
    if (!file_appears(t, "go.held", 10000)) fail_msg("the prompt's evaluation was not held");
    free(wait_for(t, "thinking…", 5000));
    key(t, "Escape");
    char *s = wait_for(t, "[stopped]", 5000); /* held evaluations read the flag every 10 ms */
    free(s);
    s = wait_idle(t);
    assert_non_null(strstr(s, "red house and\n\n[stopped]"));
    assert_non_null(strstr(s, "ctx 128/256")); /* the completed batch stays cached */
    free(s);
    char *go = testutil_join(t->dir, "go");
    assert_int_equal(testutil_write_file(go, "", 0), 0);
    free(go);
    keys(t, "Once upon a time");
    key(t, "Enter");
    s = wait_idle(t);
    const char *after_q = strstr(s, "> Once upon a time\n\n");
    assert_non_null(after_q);
    after_q += strlen("> Once upon a time\n\n");
    assert_true(after_q[0] != '\n' && strncmp(after_q, "[stopped]", 9) != 0); /* answered */
    free(s);
    quit_and_check_terminal(t);
}

/* Resizing mid-answer (the answer held by the test hook
** KBCHAT_TEST_HOLD_PROMPT until the file go exists) relayouts at once; below
** 60x15 a message says so; let go, the answer completes. */
static void test_tui_resize_mid_answer(void **state)
{
    Tui *t = *state;
    char args[1024];
    snprintf(args, sizeof args, "--model '%s'", t->model);
    tui_start(t, 100, 30, "KBCHAT_TEST_HOLD_PROMPT=go", args);
    free(wait_for(t, "Ready:", 10000));
    keys(t, "Once upon a time");
    key(t, "Enter");
    expect_answer_held(t);
    resize(t, 60, 15);
    char *s = wait_for(t, "> Once upon a time", 3000);
    assert_lines_fit(s, 60);
    free(s);
    resize(t, 50, 12);
    free(wait_for(t, "kbchat needs 60x15", 3000));
    resize(t, 100, 30);
    wait_gone(t, "kbchat needs 60x15", 3000);
    char *go = testutil_join(t->dir, "go");
    assert_int_equal(access(go, F_OK), -1); /* all the while, the answer was held */
    assert_int_equal(testutil_write_file(go, "", 0), 0);
    free(go);
    s = wait_idle(t);
    assert_null(strstr(s, "kbchat needs 60x15"));
    assert_non_null(strstr(s, "ctx "));
    assert_lines_fit(s, 100);
    const char *after_q = strstr(s, "> Once upon a time\n\n");
    assert_non_null(after_q);
    after_q += strlen("> Once upon a time\n\n");
    assert_true(after_q[0] != '\n' && strncmp(after_q, "[stopped]", 9) != 0); /* answered */
    free(s);
    quit_and_check_terminal(t);
}

/* Without a model the first screen says how to get one; NO_COLOR works. */
static void test_tui_welcome_without_model(void **state)
{
    Tui *t = *state;
    tui_start(t, 100, 30, "NO_COLOR=1", NULL);
    char *s = wait_for(t, "No model is configured yet", 5000);
    assert_non_null(strstr(s, "Qwen2.5-1.5B-Instruct"));
    assert_non_null(strstr(s, "kbchat --model FILE"));
    assert_non_null(strstr(s, "no model"));
    free(s);
    /* the editor: multi-line input, history, line editing */
    keys(t, "first line");
    key(t, "C-j");
    keys(t, "second");
    s = wait_for(t, "second", 2000);
    assert_non_null(strstr(s, "> first line\n  second"));
    free(s);
    key(t, "C-u"), key(t, "C-u"), key(t, "C-u");
    keys(t, "/kb");
    key(t, "Enter");
    free(wait_for(t, "Knowledge base: none", 5000));
    key(t, "Up");
    s = wait_for(t, "> /kb\n", 2000); /* the history */
    free(s);
    key(t, "C-u");
    keys(t, "/se"); /* Tab completes a command */
    key(t, "Tab");
    free(wait_for(t, " /sessions /set", 2000));
    keys(t, "s");
    key(t, "Tab");
    free(wait_for(t, "> /sessions\n", 2000)); /* (capture-pane drops the trailing space) */
    key(t, "C-u");
    /* a bracketed paste: its line ends are new lines, not "send" */
    char *path = testutil_join(t->dir, "paste.txt");
    assert_int_equal(testutil_write_file(path, "pasted one\npasted two", 21), 0);
    free(tmux(t, "load-buffer", path, NULL, NULL, NULL));
    free(tmux(t, "paste-buffer", "-p", "-t", "k", NULL));
    free(wait_for(t, "> pasted one\n  pasted two", 2000));
    free(path);
    key(t, "C-u"), key(t, "C-u"), key(t, "C-u"); /* "pasted two", the line break, "pasted one" */
    /* line editing, by characters (UTF-8) and words */
    keys(t, "hello world");
    key(t, "C-a"), keys(t, "X");
    free(wait_for(t, "> Xhello world\n", 2000));
    key(t, "C-e"), keys(t, "Y");
    free(wait_for(t, "> Xhello worldY\n", 2000));
    key(t, "C-w");
    keys(t, "中文字");
    key(t, "Left"), key(t, "BSpace");
    free(wait_for(t, "> Xhello 中字\n", 2000));
    key(t, "C-a"), key(t, "Right"), key(t, "C-k");
    free(wait_for(t, "> X\n", 2000));
    key(t, "C-u");
    /* scrollback: PgUp/Home show what scrolled away, End follows again */
    for (int i = 0; i < 3; i++) {
        keys(t, "/help");
        key(t, "Enter");
        testutil_nap_ms(300);
    }
    s = wait_for(t, "> /help", 5000);
    assert_null(strstr(s, "Knowledge base: none"));
    free(s);
    key(t, "Home");
    free(wait_for(t, "Knowledge base: none", 2000));
    key(t, "End");
    wait_gone(t, "Knowledge base: none", 2000);
    key(t, "PPage"), key(t, "PPage"), key(t, "PPage");
    free(wait_for(t, "Knowledge base: none", 2000));
    key(t, "End");
    key(t, "F1"); /* the help overlay */
    free(wait_for(t, "Keys (any key closes)", 2000));
    key(t, "x");
    wait_gone(t, "Keys (any key closes)", 2000);
    quit_and_check_terminal(t);
}

/* --- the knowledge-base panel (F2) --- */

/* Writes folder name in the sandbox with n small notes (.txt, the last .md)
** and x.pdf, which is random bytes: a file that fails with a reason. */
static void write_docs(Tui *t, const char *name, int n)
{
    char *dir = testutil_join(t->dir, name);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 1; i <= n; i++) {
        char file[32], text[200];
        snprintf(file, sizeof file, "note%02d.%s", i, i == n ? "md" : "txt");
        int len = snprintf(text, sizeof text, "Note %d. Giraffes sleep %d hours a day. Foxes run at night.\n", i, i);
        char *path = testutil_join(dir, file);
        assert_int_equal(testutil_write_file(path, text, (size_t)len), 0);
        free(path);
    }
    unsigned char junk[2048];
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) x = x * 1103515245u + 12345u, junk[i] = (unsigned char)(x >> 16);
    char *pdf = testutil_join(dir, "x.pdf");
    assert_int_equal(testutil_write_file(pdf, (const char *)junk, sizeof junk), 0);
    free(pdf), free(dir);
}

/* Types k, waits for the y/n question, answers y and waits for the
** outcome; returns the screen then (caller frees). */
static char *confirm_yes(Tui *t, const char *k, const char *question, const char *outcome)
{
    keys(t, k);
    free(wait_for(t, question, 3000));
    keys(t, "y");
    return wait_for(t, outcome, 3000);
}

/* At 100x30: F2 creates a base, adds a folder typed with Tab completion and
** syncs it in the background (slowed by the test hook); the panel shows a
** progress bar; closed, the status bar shows the indexing while a question
** is answered; the end of the sync is a note in the chat; the panel then
** shows the counts and, in the files view, the failed file with its
** reason; d removes a file and D deletes the base, each after y. */
static void test_tui_kb_panel_creates_and_syncs_while_chatting(void **state)
{
    Tui *t = *state;
    char args[1024];
    write_docs(t, "fixtures", 10);
    snprintf(args, sizeof args, "--model '%s'", t->model);
    char env[1200];
    snprintf(env, sizeof env, "KBCHAT_TEST_HOLD_SYNC='%s/go'", t->dir); /* holds after one document (rag.h) */
    tui_start(t, 100, 30, env, args);
    free(wait_for(t, "Ready:", 10000));
    key(t, "F2");
    free(wait_for(t, "No knowledge bases yet: n creates one.", 3000));
    keys(t, "n");
    free(wait_for(t, "New knowledge base:", 3000));
    keys(t, "notes");
    key(t, "Enter");
    free(wait_for(t, "Created knowledge base notes.", 3000));
    keys(t, "a");
    free(wait_for(t, "Add to notes:", 3000));
    keys(t, "fixt");
    key(t, "Tab"); /* completes the folder's name */
    free(wait_for(t, "Add to notes: fixtures/", 3000));
    key(t, "Enter");
    char *s = wait_for(t, " chunks  syncing ", 3000); /* the list, the bar, the status bar */
    free(s);
    s = wait_for(t, " files, ", 3000);
    assert_non_null(strstr(s, "Added fixtures/; syncing notes."));
    assert_non_null(strstr(s, "] "));
    assert_non_null(strstr(s, "indexing notes "));
    free(s);
    key(t, "Escape");
    testutil_nap_ms(100);
    keys(t, "Once upon a time"); /* the chat goes on while the sync runs (held after one document) */
    key(t, "Enter");
    /* answered in full (the greedy answer runs to max_tokens); the status
    ** bar shows the sync, not the idle hint, while it runs */
    s = wait_for(t, "the answer was cut at sampling.max_tokens", 20000);
    assert_non_null(strstr(s, "> Once upon a time\n\n"));
    assert_non_null(strstr(s, "indexing notes ")); /* in the status bar, with the panel closed */
    assert_null(strstr(s, "kb notes:"));
    free(s);
    char *go = testutil_join(t->dir, "go");
    assert_int_equal(testutil_write_file(go, "", 0), 0); /* the sync goes on */
    free(go);
    free(wait_for(t, "kb notes: 10 files indexed, 1 failed (F2 for details)", 30000));
    s = screen(t);
    assert_null(strstr(s, "indexing notes"));
    free(s);
    key(t, "F2");
    s = wait_for(t, "Knowledge bases", 3000);
    assert_non_null(strstr(s, "notes    11 docs (some failed)      10 chunks  synced "));
    assert_non_null(strstr(s, "  keyword"));
    free(s);
    keys(t, "f");
    s = wait_for(t, "Files of notes", 3000);
    assert_non_null(strstr(s, "source  "));
    assert_non_null(strstr(s, "ok      note10.md  (1 chunk)"));
    assert_non_null(strstr(s, "FAILED  x.pdf: not a PDF"));
    free(s);
    key(t, "Down"); /* from the source to the first file */
    s = confirm_yes(t, "d", "Remove note01.txt from notes? y/n", "Removed note01.txt from notes (1 document).");
    assert_null(strstr(s, "ok      note01.txt"));
    free(s);
    key(t, "Escape");
    testutil_nap_ms(100);
    s = wait_for(t, "Knowledge bases", 3000);
    assert_non_null(strstr(s, "10 docs (some failed)"));
    free(s);
    s = confirm_yes(t, "D", "Delete knowledge base notes and its index? y/n",
                    "Deleted knowledge base notes (your files are untouched).");
    assert_null(strstr(s, " docs "));
    free(s);
    key(t, "Escape");
    testutil_nap_ms(100);
    quit_and_check_terminal(t);
}

/* Quitting while a sync runs stops it between two documents: kbchat ends
** at once with status 0 (under ASan: nothing leaked, the thread joined),
** the documents committed stay, the base is not marked synced, and the
** next `kbchat kb sync` finishes the job. */
static void test_tui_quit_stops_background_sync(void **state)
{
    Tui *t = *state;
    write_docs(t, "fixtures", 10);
    kbchat_cli(t, "kb", "create", "notes", "--folder", "fixtures");
    char env[1200];
    snprintf(env, sizeof env, "KBCHAT_TEST_HOLD_SYNC='%s/go'", t->dir); /* holds after one document (rag.h) */
    tui_start(t, 100, 30, env, NULL);
    free(wait_for(t, "Ctrl-C×2: quit", 5000)); /* the start is done */
    key(t, "F2");
    free(wait_for(t, "never synced", 3000));
    keys(t, "s");
    free(wait_for(t, " chunks  syncing ", 3000));
    char *held = testutil_join(t->dir, "go.held");
    if (!testutil_wait_file(held, 10000)) fail_msg("the sync was not held after its first document");
    free(held);
    free(wait_for(t, "indexing notes 1/11 files", 5000));
    key(t, "Escape");
    testutil_nap_ms(100);
    quit_and_check_terminal(t); /* go never written: the quit itself ended the held sync */
    char *out = kbchat_cli_out(t, "kb", "status", "notes", NULL, NULL);
    assert_non_null(strstr(out, "last sync:       never"));
    assert_non_null(strstr(out, "documents:       1 (1 indexed, 0 failed)"));
    free(out);
    out = kbchat_cli_out(t, "kb", "sync", "notes", NULL, NULL);
    assert_non_null(strstr(out, "/fixtures/x.pdf: not a PDF"));
    free(out);
    out = kbchat_cli_out(t, "kb", "status", "notes", NULL, NULL);
    assert_non_null(strstr(out, "documents:       11 (10 indexed, 1 failed)"));
    free(out);
}

/* Quitting, with Ctrl-C twice and then with SIGTERM, while the background
** sync is inside a PDF (its extractor held there by the test hook
** KBCHAT_TEST_HOLD_EXTRACT): kbchat ends with status 0 and 128+15, the
** terminal restored; the extractor process is gone; the database passes
** its integrity check with nothing of the PDF stored; the next
** `kbchat kb sync` indexes it. */
static void test_tui_quit_inside_a_pdf_being_read(void **state)
{
    for (int i = 0; i < 2; i++) {
        if (i == 1) tui_teardown(state), tui_setup(state);
        Tui *t = *state;
        char *dir = testutil_join(t->dir, "fixtures"), *pdf = testutil_join(dir, "shared.pdf");
        char *txt = testutil_join(dir, "a.txt"), env[1200];
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(testutil_write_file(txt, "The pump must be primed.\n", 25), 0);
        assert_int_equal(ragfix_write_shared_stream_pdf(pdf, 4, 5, "shared stream words"), 0);
        kbchat_cli(t, "kb", "create", "notes", "--folder", "fixtures");
        snprintf(env, sizeof env, "KBCHAT_TEST_HOLD_EXTRACT='%s/go'", t->dir);
        tui_start(t, 100, 30, env, NULL);
        free(wait_for(t, "Ctrl-C×2: quit", 5000));
        key(t, "F2");
        free(wait_for(t, "never synced", 3000));
        keys(t, "s");
        char *held = wait_file(t, "go.held"); /* the extractor's pid: inside shared.pdf */
        key(t, "Escape");
        testutil_nap_ms(100);
        if (i == 0) {
            quit_and_check_terminal(t);
        } else {
            char *pid = wait_file(t, "pid");
            assert_int_equal(kill((pid_t)atol(pid), SIGTERM), 0);
            expect_exit_restoring_terminal(t, "143\n");
            free(pid);
        }
        assert_int_equal(kill((pid_t)atol(held), 0), -1); /* killed and reaped: not even a zombie */
        assert_int_equal(errno, ESRCH);
        Rag *rag;
        char *data = testutil_join(t->dir, "data");
        assert_int_equal(rag_open(&rag, data), KB_OK);
        assert_int_equal(store_integrity_check(rag), KB_OK);
        rag_close(rag);
        char *out = kbchat_cli_out(t, "kb", "status", "notes", NULL, NULL);
        assert_non_null(strstr(out, "last sync:       never"));
        assert_non_null(strstr(out, "documents:       1 (1 indexed, 0 failed)")); /* a.txt only */
        free(out);
        out = kbchat_cli_out(t, "kb", "sync", "notes", NULL, NULL);
        assert_non_null(strstr(out, "shared.pdf (4 pages"));
        free(out);
        free(held), free(data), free(dir), free(pdf), free(txt);
    }
}

/* At 60x15: the panel, its keys, its entry and its messages fit; a bad
** name and a missing folder each get one clear message; Tab lists the
** candidates when they differ and expands ~; the editor's Alt-Enter is a
** new line; the mouse wheel scrolls the conversation. */
static void test_tui_kb_panel_fits_at_60x15(void **state)
{
    Tui *t = *state;
    write_docs(t, "docs1", 1);
    write_docs(t, "docs2", 1);
    tui_start(t, 60, 15, NULL, NULL);
    free(wait_for(t, "No model is configured yet", 5000));
    free(wait_for(t, "Ctrl-C×2: quit", 5000)); /* the start is done */
    key(t, "F2");
    char *s = wait_for(t, "Esc: close", 3000);
    assert_non_null(strstr(s, "Knowledge bases"));
    assert_lines_fit(s, 60);
    free(s);
    keys(t, "n");
    keys(t, "bad/name");
    key(t, "Enter");
    s = wait_for(t, "may hold only letters", 3000);
    assert_non_null(strstr(s, "New knowledge base: bad/name"));
    assert_lines_fit(s, 60);
    free(s);
    key(t, "C-u");
    keys(t, "small");
    key(t, "Enter");
    free(wait_for(t, "Created knowledge base small.", 3000));
    keys(t, "a");
    keys(t, "nowhere/x");
    key(t, "Enter");
    s = wait_for(t, "nowhere/x: No such file or directory", 3000);
    assert_lines_fit(s, 60);
    free(s);
    key(t, "C-u");
    keys(t, "~/do");
    key(t, "Tab");
    s = wait_for(t, "docs1/  docs2/", 3000);
    assert_non_null(strstr(s, "Add to small: ~/docs"));
    free(s);
    keys(t, "1");
    key(t, "Tab");
    free(wait_for(t, "Add to small: ~/docs1/", 3000));
    key(t, "Enter");
    free(wait_for(t, " 2 docs (some failed)", 10000)); /* the list is read again when the sync ends */
    key(t, "Escape");
    testutil_nap_ms(100); /* Esc then a key at once would read as Alt-key */
    s = wait_for(t, "kb small: 1 file indexed, 1 failed (F2 for details)", 3000);
    assert_lines_fit(s, 60);
    free(s);
    keys(t, "one");
    key(t, "M-Enter"); /* Alt-Enter: a new line, nothing sent */
    keys(t, "two");
    free(wait_for(t, "> one\n  two", 3000));
    key(t, "C-c"); /* clears the editor (and would quit if pressed again at once) */
    free(wait_for(t, "Press Ctrl-C again to quit", 3000));
    keys(t, "/help"); /* the mouse wheel scrolls the conversation up */
    key(t, "Enter");
    s = wait_for(t, "/exit", 3000);
    char top[200];
    snprintf(top, sizeof top, "%.*s", (int)strcspn(s, "\n"), s);
    free(s);
    assert_true(top[0] != '\0');
    wheel_up(t);
    for (int i = 0;; i++) { /* three lines down from the top after one step */
        s = screen(t);
        const char *l4 = s;
        for (int k = 0; k < 3 && strchr(l4, '\n'); k++) l4 = strchr(l4, '\n') + 1;
        if (strncmp(l4, top, strlen(top)) == 0 && l4[strlen(top)] == '\n') break;
        if (i == 60) fail_msg("the wheel did not scroll \"%s\" down by 3 lines:\n%s", top, s);
        free(s);
        testutil_nap_ms(50);
    }
    free(s);
    key(t, "End");
    quit_and_check_terminal(t);
}

/* What capture-pane -e showed at one character: bold and the foreground
** colour (-1 = the default). */
typedef struct Cell {
    char ch;
    int bold, fg;
} Cell;

/* Applies the SGR parameters p (between "ESC[" and "m") to *bold and *fg. */
static void sgr_apply(const char *p, size_t n, int *bold, int *fg)
{
    int v[16], k = 0, cur = 0, any = 0;
    for (size_t i = 0; i <= n && k < 16; i++) {
        if (i == n || p[i] == ';') {
            v[k++] = any ? cur : 0;
            cur = any = 0;
        } else if (p[i] >= '0' && p[i] <= '9') {
            cur = cur * 10 + (p[i] - '0'), any = 1;
        }
    }
    for (int i = 0; i < k; i++) {
        if (v[i] == 0) *bold = 0, *fg = -1;
        else if (v[i] == 1) *bold = 1;
        else if (v[i] == 22) *bold = 0;
        else if (v[i] >= 30 && v[i] <= 37) *fg = v[i] - 30;
        else if (v[i] >= 90 && v[i] <= 97) *fg = v[i] - 90;
        else if (v[i] == 39) *fg = -1;
        else if (v[i] == 38 && i + 2 < k && v[i + 1] == 5) *fg = v[i + 2], i += 2;
    }
}

/* The screen with its attributes (capture-pane -e): the printable bytes in
** order, each with the SGR state in force; *n receives how many. */
static Cell *screen_cells(Tui *t, size_t *n)
{
    char *raw = tmux(t, "capture-pane", "-p", "-e", "-t", "k");
    assert_non_null(raw);
    Cell *c = calloc(strlen(raw) + 1, sizeof *c);
    assert_non_null(c);
    int bold = 0, fg = -1;
    *n = 0;
    for (const char *p = raw; *p; p++) {
        if (p[0] == '\033' && p[1] == '[') {
            const char *e = p + 2;
            while (*e && *e != 'm' && (size_t)(e - p) < 64) e++;
            if (*e == 'm') sgr_apply(p + 2, (size_t)(e - p - 2), &bold, &fg);
            p = *e ? e : e - 1;
            continue;
        }
        c[(*n)++] = (Cell){*p, bold, fg};
    }
    free(raw);
    return c;
}

/* The cell where text first starts on the screen; fails when it is absent. */
static Cell cell_of(const Cell *c, size_t n, const char *text)
{
    const size_t len = strlen(text);
    for (size_t i = 0; i + len <= n; i++) {
        size_t j = 0;
        while (j < len && c[i + j].ch == text[j]) j++;
        if (j == len) return c[i];
    }
    fail_msg("\"%s\" is not on the screen", text);
    return c[0];
}

/* Answers get light Markdown: a stored answer with a heading, bold, inline
** code, a citation, a list and a fenced block, shown when kbchat resumes its
** session, is drawn with each one's attributes (dark theme: headings bold
** magenta, bold text bold, code green, citations bold green, bullets bold
** blue; plain text plain), read from capture-pane -e. */
static void test_tui_answers_render_markdown(void **state)
{
    Tui *t = *state;
    char *data = testutil_join(t->dir, "data");
    Rag *rag = NULL;
    assert_int_equal(rag_open(&rag, data), KB_OK);
    const RagSession sess = {0, "markdown", t->model, "raw", "", 0, 0, 0};
    int64_t id;
    assert_int_equal(rag_session_create(rag, &sess, &id), KB_OK);
    RagTurn turn = {"show me", "", "show me",
                    "# Title line\nplain **strong words** and `inline code` here [1]\n- bullet item\n```\nfenced code\n```",
                    NULL, 0, 0};
    assert_int_equal(rag_session_add_turn(rag, id, &turn), KB_OK);
    rag_close(rag);
    free(data);
    char args[1024];
    snprintf(args, sizeof args, "--model '%s'", t->model);
    tui_start(t, 100, 30, NULL, args);
    free(wait_for(t, "fenced code", 10000));
    size_t n;
    Cell *c = screen_cells(t, &n);
    Cell h = cell_of(c, n, "Title line"), plain = cell_of(c, n, "plain"), strong = cell_of(c, n, "strong words");
    Cell code = cell_of(c, n, "inline code"), cite = cell_of(c, n, "[1]"), fenced = cell_of(c, n, "fenced code");
    Cell bullet = cell_of(c, n, "- bullet"), item = cell_of(c, n, "bullet item");
    assert_true(h.bold && h.fg == 5);
    assert_true(!plain.bold && plain.fg == -1);
    assert_true(strong.bold && strong.fg == -1);
    assert_true(!code.bold && code.fg == 2);
    assert_true(cite.bold && cite.fg == 2);
    assert_true(!fenced.bold && fenced.fg == 2);
    assert_true(bullet.bold && bullet.fg == 4);
    assert_true(!item.bold && item.fg == -1);
    free(c);
    quit_and_check_terminal(t);
}

/* --- text hostile to the terminal (docs/output.md) --- */

/* Fails unless every hostile name is on screen s on one row, in the
** notation of docs/output.md, followed by after (e.g. "  (1 chunk)"). */
static void expect_names_on_rows(const char *s, const char *after)
{
    for (int i = 0; i < RAGFIX_N_HOSTILE; i++) {
        char *row = g_strdup_printf("%s%s", RAGFIX_HOSTILE_SHOWN[i], after);
        if (strstr(s, row) == NULL) fail_msg("\"%s\" is not on one row; the screen:\n%s", row, s);
        g_free(row);
    }
}

/* The hostile model (tests/ggufgen.h) answers over files with hostile
** names (tests/ragfix.h): the answer, the Sources note, F3's list and F2's
** files view show them escaped, each name on one row, and the terminal's
** title stays untouched. */
static void test_tui_escapes_hostile_answers_and_names(void **state)
{
    Tui *t = *state;
    char *model = testutil_join(t->dir, "hostile.gguf"), *dir = testutil_join(t->dir, "hostile");
    assert_int_equal(ggufgen_write_hostile_llama(model), 0);
    assert_int_equal(ragfix_write_hostile_names(dir), 0);
    kbchat_cli(t, "kb", "create", "odd", "--folder", "hostile");
    kbchat_cli(t, "kb", "sync", "odd", NULL, NULL);
    char args[1024];
    snprintf(args, sizeof args, "--model '%s' --kb odd", model);
    tui_start(t, 100, 30, NULL, args);
    free(wait_for(t, "Ready:", 10000));
    keys(t, "/set passages 10");
    key(t, "Enter");
    free(wait_for(t, "retrieval.top_k = 10", 3000));
    keys(t, "wombat notes");
    key(t, "Enter");
    free(wait_for(t, "Sources:", 10000));
    char *s = wait_idle(t);
    if (strstr(s, GGUFGEN_HOSTILE_SHOWN) == NULL) fail_msg("the answer is not shown escaped:\n%s", s);
    expect_names_on_rows(s, "\n");
    free(s);
    char *title = tmux(t, "display-message", "-p", "-t", "k", "#{pane_title}");
    assert_null(strstr(title, "pwned"));
    free(title);
    key(t, "F3");
    s = wait_for(t, "Sources for \"wombat notes\"", 3000);
    expect_names_on_rows(s, " · score ");
    free(s);
    key(t, "Escape");
    testutil_nap_ms(100);
    key(t, "F2");
    free(wait_for(t, "Knowledge bases", 3000));
    keys(t, "f");
    s = wait_for(t, "Files of odd", 3000);
    expect_names_on_rows(s, "  (1 chunk)");
    free(s);
    key(t, "Escape");
    testutil_nap_ms(100);
    key(t, "Escape");
    testutil_nap_ms(100);
    free(model), free(dir);
    quit_and_check_terminal(t);
}

/* --- events and the state machine (ui/screen.c) --- */

/* A note followed by an error in one job (the start: the data directory is
** a file, so the last conversation cannot be restored, a note; then --kb
** cannot be searched, an error) shows as two messages in that order, each
** in its own colour (dark theme, ui/term.c: notes yellow, errors bold red):
** the error is not coloured as the note because a note came first. */
static void test_tui_note_then_error_keep_their_colours(void **state)
{
    Tui *t = *state;
    char *data = testutil_join(t->dir, "data"), args[1024];
    assert_int_equal(testutil_write_file(data, "not a folder\n", 13), 0);
    free(data);
    snprintf(args, sizeof args, "--model '%s' --kb animals", t->model);
    tui_start(t, 100, 30, NULL, args);
    char *s = wait_for(t, "kbchat: cannot create", 10000);
    const char *note = strstr(s, "note: the last conversation was not restored"), *err = strstr(s, "kbchat: cannot create");
    assert_non_null(note);
    assert_true(note < err);
    free(s);
    size_t n;
    Cell *c = screen_cells(t, &n);
    Cell nc = cell_of(c, n, "note: the last conversation"), ec = cell_of(c, n, "kbchat: cannot create");
    assert_true(!nc.bold && nc.fg == 3);
    assert_true(ec.bold && ec.fg == 1);
    free(c);
    quit_and_check_terminal(t);
}

/* Runs ui_state_step(from, to) in a child process; returns whether the
** child was killed by SIGABRT (the assert). */
static int step_aborts(UiState from, UiState to)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2); /* the assert's message */
        ui_state_step(from, to);
        _exit(0);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    return WIFSIGNALED(ws) && WTERMSIG(ws) == SIGABRT;
}

/* The screen's states move only along the diagram in screen.c's header
** (copied here by hand from it): every move of it is allowed, every other
** one is refused, and ui_state_step refuses one with assert(). */
static void test_tui_state_machine_refuses_moves_outside_the_diagram(void **state)
{
    (void)state;
    static const UiState moves[][2] = {
        {UI_STARTING, UI_IDLE},     {UI_STARTING, UI_STOPPING}, {UI_IDLE, UI_ARMED},         {UI_IDLE, UI_WORKING},
        {UI_IDLE, UI_THINKING},     {UI_ARMED, UI_IDLE},        {UI_ARMED, UI_WORKING},      {UI_ARMED, UI_THINKING},
        {UI_WORKING, UI_IDLE},      {UI_WORKING, UI_ANSWERING}, {UI_WORKING, UI_STOPPING},   {UI_THINKING, UI_IDLE},
        {UI_THINKING, UI_ANSWERING}, {UI_THINKING, UI_STOPPING}, {UI_ANSWERING, UI_IDLE},    {UI_ANSWERING, UI_STOPPING},
        {UI_STOPPING, UI_IDLE},
    };
    const int n_moves = (int)(sizeof moves / sizeof moves[0]);
    int allowed = 0;
    for (int f = 0; f < UI_N_STATES; f++)
        for (int to = 0; to < UI_N_STATES; to++) {
            int in_diagram = 0;
            for (int i = 0; i < n_moves; i++) in_diagram |= moves[i][0] == (UiState)f && moves[i][1] == (UiState)to;
            if (ui_state_can((UiState)f, (UiState)to) != in_diagram)
                fail_msg("%s -> %s: %s", ui_state_name((UiState)f), ui_state_name((UiState)to),
                         in_diagram ? "refused" : "allowed");
            allowed += in_diagram;
        }
    assert_int_equal(allowed, n_moves);
    assert_int_equal(ui_state_step(UI_THINKING, UI_ANSWERING), UI_ANSWERING);
    assert_true(step_aborts(UI_IDLE, UI_ANSWERING));   /* an answer without a question */
    assert_true(step_aborts(UI_STOPPING, UI_ANSWERING)); /* a stopped answer going on */
    assert_true(step_aborts(UI_STARTING, UI_THINKING)); /* a question before the start ended */
    assert_false(step_aborts(UI_ANSWERING, UI_STOPPING));
}

int main(void)
{
    setlocale(LC_ALL, "C.UTF-8");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tui_english_question_streams_answer, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_chinese_question_wraps_by_width, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_cancel_answer, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_esc_stops_prompt_evaluation, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_resize_mid_answer, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_welcome_without_model, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_signals_restore_terminal, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_sources_pane_and_viewer, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_sessions_panel, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_kb_panel_creates_and_syncs_while_chatting, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_kb_panel_fits_at_60x15, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_quit_stops_background_sync, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_quit_inside_a_pdf_being_read, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_answers_render_markdown, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_escapes_hostile_answers_and_names, tui_setup, tui_teardown),
        cmocka_unit_test_setup_teardown(test_tui_note_then_error_keep_their_colours, tui_setup, tui_teardown),
        cmocka_unit_test(test_tui_state_machine_refuses_moves_outside_the_diagram),
    };
    if (!have_tmux()) { /* a missing tool fails the run: it would hide every test here */
        fprintf(stderr, "test_tui: tmux is not installed or does not run; `make test-deps` installs it "
                        "(scripts/packages)\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
