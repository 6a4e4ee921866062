/*
** testutil.c: see testutil.h.
*/
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glib.h>

#include "tests/testutil.h"

/* --- allocation failure injection --- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);

static long fail_after; /* 0: off; else the countdown to the failing call */
static long alloc_count;

void testutil_fail_alloc_after(long n)
{
    fail_after = n;
    alloc_count = 0;
}

long testutil_alloc_count(void)
{
    return alloc_count;
}

/* Returns 1 when this allocation must fail. */
static int alloc_should_fail(void)
{
    alloc_count++;
    return fail_after > 0 && alloc_count >= fail_after;
}

void *__wrap_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return alloc_should_fail() ? NULL : __real_strdup(s);
}

/* --- paths and files --- */

const char *testutil_testdata(void)
{
    const char *d = getenv("KBCHAT_TESTDATA");
    return d && *d ? d : "../shared/testdata";
}

char *testutil_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = __real_malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The path is made absolute so tests can hand it to programs that run in
** another working directory. */
char *testutil_data_path(const char *rel)
{
    char *root = realpath(testutil_testdata(), NULL);
    char *p = testutil_join(root ? root : testutil_testdata(), rel);
    free(root);
    return p;
}

const char *testutil_kbchat_bin(void)
{
    const char *b = getenv("KBCHAT_BIN");
    return b && *b ? b : "./kbchat";
}

char *testutil_mkdtemp(void)
{
    const char *tmp = getenv("TMPDIR");
    char *tmpl = testutil_join(tmp && *tmp ? tmp : "/tmp", "kbchat-test-XXXXXX");
    if (tmpl && mkdtemp(tmpl) == NULL) {
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void testutil_rmtree(const char *path)
{
    if (path) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *testutil_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = __real_malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
        if (cap - n - 1 == 0) {
            char *nb = __real_realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

int testutil_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = fwrite(data, 1, len, f);
    int rc = fclose(f);
    return put == len && rc == 0 ? 0 : -1;
}

/* --- running programs --- */

/* Appends what is readable on fd to *buf; returns 0 at EOF, 1 otherwise. */
static int drain(int fd, char **buf, size_t *len, size_t *cap)
{
    char chunk[4096];
    ssize_t got = read(fd, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) return 1;
    if (got <= 0) return 0;
    if (*len + (size_t)got + 1 > *cap) {
        size_t ncap = (*cap + (size_t)got + 1) * 2;
        char *nb = __real_realloc(*buf, ncap);
        if (!nb) return 0;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, chunk, (size_t)got);
    *len += (size_t)got;
    (*buf)[*len] = '\0';
    return 1;
}

static void child_exec(const char *const argv[], const char *const env[], const char *cwd,
                       int out_fd, int err_fd)
{
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    for (int i = 0; env && env[i]; i++) {
        const char *eq = strchr(env[i], '=');
        if (!eq) continue;
        char name[256];
        size_t n = (size_t)(eq - env[i]);
        if (n >= sizeof name) continue;
        memcpy(name, env[i], n);
        name[n] = '\0';
        if (eq[1] == '\0') unsetenv(name);
        else setenv(name, eq + 1, 1);
    }
    if (cwd && chdir(cwd) != 0) _exit(126);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

int testutil_run(const char *const argv[], const char *const env[], const char *cwd,
                 int timeout_s, char **out, char **err, int *status)
{
    return testutil_run_signal(argv, env, cwd, timeout_s, NULL, 0, out, err, status);
}

int testutil_run_signal(const char *const argv[], const char *const env[], const char *cwd, int timeout_s,
                        const char *when_exists, int sig, char **out, char **err, int *status)
{
    int po[2], pe[2];
    *out = *err = NULL;
    *status = -1;
    if (pipe(po) != 0) return -1;
    if (pipe(pe) != 0) {
        close(po[0]), close(po[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return -1;
    }
    if (pid == 0) {
        close(po[0]), close(pe[0]);
        child_exec(argv, env, cwd, po[1], pe[1]);
    }
    close(po[1]), close(pe[1]);
    size_t olen = 0, ocap = 1, elen = 0, ecap = 1;
    *out = __real_calloc(1, 1);
    *err = __real_calloc(1, 1);
    int open_o = 1, open_e = 1, killed = 0, signalled = when_exists == NULL;
    time_t deadline = time(NULL) + timeout_s;
    while (open_o || open_e) {
        struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        if (!open_o) fds[0].fd = -1;
        if (!open_e) fds[1].fd = -1;
        int r = poll(fds, 2, signalled ? 200 : 10);
        if (!signalled && access(when_exists, F_OK) == 0) signalled = kill(pid, sig) == 0;
        if (r > 0) {
            if (open_o && (fds[0].revents & (POLLIN | POLLHUP))) open_o = drain(po[0], out, &olen, &ocap);
            if (open_e && (fds[1].revents & (POLLIN | POLLHUP))) open_e = drain(pe[0], err, &elen, &ecap);
        }
        if (time(NULL) > deadline) {
            kill(pid, SIGKILL);
            killed = 1;
            break;
        }
    }
    close(po[0]), close(pe[0]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (killed) *status = -1;
    else if (WIFEXITED(ws)) *status = WEXITSTATUS(ws);
    else if (WIFSIGNALED(ws)) *status = 128 + WTERMSIG(ws);
    return 0;
}

TestRun testutil_kbchat_in(const char *bin, const char *cwd, const char *home, const char *const *args)
{
    const char *argv[24] = {bin};
    for (int i = 0; args[i] && i < 22; i++) argv[i + 1] = args[i];
    char env_home[4200];
    snprintf(env_home, sizeof env_home, "HOME=%s", home);
    const char *env[] = {env_home, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "KBCHAT_CONFIG=", NULL};
    TestRun r = {NULL, NULL, -1};
    if (testutil_run(argv, env, cwd, 120, &r.out, &r.err, &r.status) != 0) fail_msg("cannot run %s", bin);
    return r;
}

void testutil_run_free(TestRun *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

void testutil_expect(TestRun *r, int status, const char *in_out, const char *in_err)
{
    char why[512] = "";
    if (r->status != status) snprintf(why, sizeof why, "exit %d, wanted %d", r->status, status);
    else if (in_out && !strstr(r->out, in_out)) snprintf(why, sizeof why, "stdout lacks \"%s\"", in_out);
    else if (in_err && !strstr(r->err, in_err)) snprintf(why, sizeof why, "stderr lacks \"%s\"", in_err);
    if (why[0]) {
        fail_msg("%s; stdout: %s; stderr: %s", why, r->out, r->err); /* (fail_msg does not return) */
    }
    testutil_run_free(r);
}

void testutil_expect_terminal_safe(const char *s, const char *what)
{
    const char *bad = NULL;
    if (!g_utf8_validate(s, -1, &bad))
        fail_msg("%s holds invalid UTF-8 at byte %ld:\n%s", what, (long)(bad - s), s);
    for (const char *p = s; *p; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);
        if ((c < 0x20 && c != '\n' && c != '\t') || (c >= 0x7f && c <= 0x9f))
            fail_msg("%s holds the raw control U+%04X at byte %ld:\n%s", what, (unsigned)c, (long)(p - s), s);
    }
}

char *testutil_python_json(const char *dir, const char *json, const char *expr)
{
    char *path = testutil_join(dir, "check.json");
    assert_int_equal(testutil_write_file(path, json, strlen(json)), 0);
    char *prog = g_strdup_printf("import json,sys\n"
                                 "v=json.load(open(sys.argv[1],encoding='utf-8',errors='strict'))\n"
                                 "sys.stdout.write(ascii(%s))\n", expr);
    char *out = NULL, *err = NULL;
    int status = -1;
    assert_int_equal(testutil_run((const char *const[]){"python3", "-c", prog, path, NULL}, NULL, NULL, 60, &out, &err,
                                  &status), 0);
    if (status != 0) fail_msg("python3 rejected the JSON (%s):\n%s\n%s", err, json, out);
    free(err);
    g_free(prog);
    free(path);
    return out;
}

void testutil_nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int testutil_wait_file(const char *path, long timeout_ms)
{
    for (long waited = 0; access(path, F_OK) != 0; waited += 10) {
        if (waited >= timeout_ms) return 0;
        testutil_nap_ms(10);
    }
    return 1;
}

/* The scratch folder of the running group (testutil_scratch_setup): the test
** program's own state, like the allocation countdown. */
static char *scratch_dir;

int testutil_scratch_setup(void **state)
{
    (void)state;
    scratch_dir = testutil_mkdtemp();
    return scratch_dir ? 0 : -1;
}

int testutil_scratch_teardown(void **state)
{
    (void)state;
    if (scratch_dir) testutil_rmtree(scratch_dir);
    free(scratch_dir);
    scratch_dir = NULL;
    return 0;
}

const char *testutil_scratch(void)
{
    return scratch_dir;
}

int testutil_sandbox_open(TestSandbox *sb)
{
    memset(sb, 0, sizeof *sb);
    sb->dir = testutil_mkdtemp();
    if (sb->dir == NULL) return -1;
    sb->home = sb->dir;
    sb->docs = testutil_join(sb->dir, "docs");
    sb->bin = realpath(testutil_kbchat_bin(), NULL);
    return sb->docs && sb->bin && mkdir(sb->docs, 0700) == 0 ? 0 : -1;
}

void testutil_sandbox_close(TestSandbox *sb)
{
    if (sb->dir) testutil_rmtree(sb->dir);
    free(sb->dir), free(sb->docs), free(sb->bin);
    memset(sb, 0, sizeof *sb);
}
