/*
** testutil.h: helpers shared by the cmocka test programs.
**
** Paths: tests run from the repository root; the shared reference data is at
** $KBCHAT_TESTDATA, default "../shared/testdata". The kbchat binary under test
** is $KBCHAT_BIN, default "./kbchat" (tests/run.sh sets both).
**
** Allocation failure injection: test programs are linked with
** -Wl,--wrap=malloc,calloc,realloc,strdup, so every allocation made by our own
** code (not by shared libraries) passes through a countdown.
*/
#ifndef KB_TESTUTIL_H
#define KB_TESTUTIL_H

#include <stddef.h>

/* Makes the n-th allocation from now (n >= 1) and every later one fail, until
** testutil_fail_alloc_after(0) turns the injection off. */
void testutil_fail_alloc_after(long n);
/* Number of allocations (successful or failed) since the last call to
** testutil_fail_alloc_after. */
long testutil_alloc_count(void);

/* Returns $KBCHAT_TESTDATA or "../shared/testdata" (static string). */
const char *testutil_testdata(void);
/* Returns a malloc'd absolute path "<testdata>/<rel>". */
char *testutil_data_path(const char *rel);
/* Returns $KBCHAT_BIN or "./kbchat" (static string). */
const char *testutil_kbchat_bin(void);

/* Creates a fresh private directory under $TMPDIR (or /tmp); returns its
** malloc'd path. testutil_rmtree removes it and everything in it. */
char *testutil_mkdtemp(void);
void testutil_rmtree(const char *path);

/* Sleeps ms milliseconds: a polling step, never a wait for a state (use a
** test hook's file and testutil_wait_file for that). */
void testutil_nap_ms(long ms);
/* Waits up to timeout_ms for path to exist (a test hook's FILE.held),
** looking every 10 ms. Returns 1 when it exists, 0 when the time ran out. */
int testutil_wait_file(const char *path, long timeout_ms);

/* cmocka group fixtures of a program whose tests write scratch files: the
** setup creates a fresh private folder (testutil_mkdtemp), the teardown
** removes it with everything in it. testutil_scratch() is its path
** (NULL outside the group). */
int testutil_scratch_setup(void **state);
int testutil_scratch_teardown(void **state);
const char *testutil_scratch(void);

/* Reads a whole file into a malloc'd buffer (NUL-terminated; *len excludes
** the NUL). Returns NULL on failure. */
char *testutil_read_file(const char *path, size_t *len);
/* Writes len bytes to path (created or truncated). Returns 0 on success. */
int testutil_write_file(const char *path, const void *data, size_t len);
/* Returns a malloc'd "<dir>/<name>". */
char *testutil_join(const char *dir, const char *name);

/* Runs argv[0] (searched in PATH when it has no '/') with the given extra
** environment assignments ("NAME=value", NULL-terminated list, may be NULL;
** "NAME=" with nothing after '=' unsets NAME), in directory cwd (NULL = ours),
** with stdin from /dev/null. Captures stdout and stderr (malloc'd,
** NUL-terminated) and the exit status (128 + signal number when killed).
** Kills the child after timeout_s seconds and reports exit status -1.
** Returns 0 when the child ran, -1 when it could not be started. */
int testutil_run(const char *const argv[], const char *const env[], const char *cwd,
                 int timeout_s, char **out, char **err, int *status);

/* As testutil_run, and once the file when_exists (NULL: never) exists,
** sends signal sig to the child (once): for a test that interrupts kbchat
** at a point it marks with a file (KBCHAT_TEST_HOLD_PROMPT, app/stop.h). */
int testutil_run_signal(const char *const argv[], const char *const env[], const char *cwd, int timeout_s,
                        const char *when_exists, int sig, char **out, char **err, int *status);

/* A sandbox for running kbchat: a fresh private folder (HOME and working
** directory of the runs) with an empty docs/ in it, and the binary under
** test. */
typedef struct TestSandbox {
    char *dir;        /* HOME and working directory */
    char *docs;       /* dir/docs: documents for knowledge bases */
    char *bin;        /* absolute path of the kbchat under test */
    const char *home; /* HOME of the runs: dir unless a test says otherwise */
} TestSandbox;
/* Fills *sb (OUT). Returns 0, or -1 when the folder cannot be made or the
** binary is missing; testutil_sandbox_close frees what was made either way
** and removes the folder. */
int testutil_sandbox_open(TestSandbox *sb);
void testutil_sandbox_close(TestSandbox *sb);

/* A finished run of kbchat: its output (malloc'd) and exit status. */
typedef struct TestRun {
    char *out, *err;
    int status;
} TestRun;

/* Runs the kbchat binary bin with the NULL-terminated arguments args (at
** most 22) in directory cwd with HOME=home and no XDG folders or
** KBCHAT_CONFIG from the developer's environment; allows 120 s. Fails the
** test when kbchat cannot be started. Free with testutil_run_free. */
TestRun testutil_kbchat_in(const char *bin, const char *cwd, const char *home, const char *const *args);
/* testutil_kbchat_in in sandbox sb with the arguments that follow. */
#define TESTUTIL_KB(sb, ...) testutil_kbchat_in((sb)->bin, (sb)->dir, (sb)->home, (const char *const[]){__VA_ARGS__, NULL})
void testutil_run_free(TestRun *r);

/* Fails the test unless r exited with status and its stdout and stderr
** contain in_out and in_err (NULL: anything); frees r either way. */
void testutil_expect(TestRun *r, int status, const char *in_out, const char *in_err);

/* Fails the test unless s (what kbchat wrote to `what`) is valid UTF-8
** (glib's check) holding no control character but '\n' and '\t': no ESC,
** no DEL, no C1 control (docs/output.md). */
void testutil_expect_terminal_safe(const char *s, const char *what);

/* Parses json (text) with python3's json module (RFC 8259; input must be
** UTF-8) in directory dir and returns, malloc'd, what python prints as
** ascii() of the expression expr of the parsed value v. Fails the test when
** python3 rejects the text. */
char *testutil_python_json(const char *dir, const char *json, const char *expr);

#endif
