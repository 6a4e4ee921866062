/*
** extract.c: PDF text extraction in a child process that can be killed.
**
** poppler_page_get_text has no way to be interrupted, and one page of a
** hostile PDF (a content stream of millions of text operators) takes it
** seconds to minutes. So a sync with a DocBudget.extractor runs pdf_read
** in a child process, the kbchat executable started as
** "kbchat __extract-pdf" with posix_spawn (an exec, never a bare fork of a
** process that has threads and GLib state), and the parent only reads what
** the child sends. The parent kills it (SIGKILL) when the time limit
** passes, the cancel flag is set or the text grows past the limit, and
** always reaps it before returning: no zombie, no descriptor left open.
**
** The PDF reaches the child as its standard input, a memfd holding the
** bytes the parent already read and hashed (not the path: the file may have
** changed since). The child writes frames to its standard output, a pipe:
**
**     frame   = kind (1 byte) + length (4 bytes, little-endian) + payload
**     'N'  payload 4 bytes: the page count            (PdfSink.begin)
**     'P'  the text of the next page                  (PdfSink.page)
**     'T', 'A'  the title, the author                 (PdfSink.meta)
**     'O'  4 bytes page + the entry's title           (PdfSink.outline)
**     'E'  4 bytes code + the reason                  pdf_read failed
**     'Z'  empty                                      the end
**
** Its standard error goes to /dev/null (poppler's warnings would tear the
** full-screen chat). It limits its own address space (RLIMIT_AS), so a PDF
** that makes poppler allocate without bound kills only the child; the
** parent records the file as failed. It dies with its parent
** (PR_SET_PDEATHSIG), so a kbchat killed with SIGKILL leaves no extractor.
**
** Test hook (tests only): with KBCHAT_TEST_HOLD_EXTRACT=FILE in the
** environment, the child, after sending its first page, writes its process
** id to FILE.held and waits until FILE exists. A test can thus cancel, send
** SIGTERM or let the time limit pass while a document is certainly being
** extracted, and check afterwards that the child is gone.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/rag.h"

extern char **environ;

#define FRAME_HEADER 5                          /* kind + 32-bit length */
#define FRAME_META_MAX ((uint32_t)1 << 20)      /* title, author, outline, reason */
#define FRAME_PAGE_MAX ((uint32_t)1 << 30)      /* a page, when no text limit is set */
#define EXTRACT_POLL_MS 100                     /* how often cancel and time are read */
/* The child's address space: poppler's own needs (a few hundred MB for a
** large book) plus room for the file and its text. */
#define EXTRACT_MEMORY_BASE ((uint64_t)2 << 30)

/* --- the child --- */

/* Writes all of buf[0..n) to fd. Returns 0, or -1 (the parent is gone). */
static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Writes one frame: kind, then the 4-byte number head (when has_head),
** then body[0..len). Returns KB_OK, or KB_EIO when the pipe is closed. */
static int frame_write(int fd, char kind, int has_head, uint32_t head, const char *body, size_t len)
{
    unsigned char h[FRAME_HEADER + 4];
    size_t hl = FRAME_HEADER + (has_head ? 4 : 0);
    if (len > FRAME_PAGE_MAX - 4) return KB_ERANGE;
    h[0] = (unsigned char)kind;
    put_u32(h + 1, (uint32_t)len + (has_head ? 4 : 0));
    if (has_head) put_u32(h + FRAME_HEADER, head);
    if (write_all(fd, h, hl) != 0 || write_all(fd, body, len) != 0) return KB_EIO;
    return KB_OK;
}

/* The child's sink: frames on a descriptor, and the hold hook. */
typedef struct FrameOut {
    int fd;
    int pages_sent;
} FrameOut;

/* The KBCHAT_TEST_HOLD_EXTRACT hook: writes the process id to FILE.held
** (through a rename, so FILE.held never exists without it), then waits
** until FILE exists. A failure to write leaves FILE.held absent, and the
** test waiting for it fails. */
static void hold_for_tests(void)
{
    const char *file = getenv("KBCHAT_TEST_HOLD_EXTRACT");
    char held[PATH_MAX], tmp[PATH_MAX], pid[32];
    if (file == NULL || file[0] == '\0' || access(file, F_OK) == 0) return;
    if (snprintf(held, sizeof held, "%s.held", file) >= (int)sizeof held ||
        snprintf(tmp, sizeof tmp, "%s.held.tmp", file) >= (int)sizeof tmp)
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        int ok = write_all(fd, pid, (size_t)n) == 0;
        if (close(fd) == 0 && ok) rename(tmp, held);
    }
    while (access(file, F_OK) != 0) nanosleep(&(struct timespec){0, 10000000L}, NULL);
}

static int out_begin(void *user, int n_pages)
{
    FrameOut *o = user;
    return frame_write(o->fd, 'N', 1, (uint32_t)n_pages, "", 0);
}

static int out_page(void *user, const char *text, size_t len)
{
    FrameOut *o = user;
    int rc = frame_write(o->fd, 'P', 0, 0, text, len);
    if (rc == KB_OK && o->pages_sent++ == 0) hold_for_tests();
    return rc;
}

static int out_meta(void *user, char kind, const char *s, size_t len)
{
    FrameOut *o = user;
    return frame_write(o->fd, kind, 0, 0, s, len);
}

static int out_outline(void *user, int page, const char *title, size_t len)
{
    FrameOut *o = user;
    return frame_write(o->fd, 'O', 1, (uint32_t)page, title, len);
}

/* Caps the child's address space at limit bytes. Not under
** AddressSanitizer, whose shadow memory reserves terabytes of it. */
static void limit_memory(uint64_t limit)
{
#if defined(__SANITIZE_ADDRESS__)
    (void)limit;
#else
    struct rlimit rl = {(rlim_t)limit, (rlim_t)limit};
    if (limit > 0) setrlimit(RLIMIT_AS, &rl); /* failing leaves the limit unset, nothing worse */
#endif
}

int rag_extract_pdf_main(int argc, char **argv)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) return 1; /* the parent died before the line above */
    limit_memory(argc > 2 ? strtoull(argv[2], NULL, 10) : 0);
    struct stat sb;
    if (fstat(STDIN_FILENO, &sb) != 0 || sb.st_size < 0) return 1;
    size_t len = (size_t)sb.st_size;
    void *data = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, STDIN_FILENO, 0) : NULL;
    if (len && data == MAP_FAILED) return 1;
    FrameOut o = {STDOUT_FILENO, 0};
    PdfSink sink = {out_begin, out_page, out_meta, out_outline, &o};
    char err[512] = "";
    int rc = pdf_read(data ? data : "", len, &sink, err, sizeof err);
    if (rc != KB_OK && rc != KB_EIO) rc = frame_write(o.fd, 'E', 1, (uint32_t)rc, err, strlen(err));
    else if (rc == KB_OK) rc = frame_write(o.fd, 'Z', 0, 0, "", 0);
    if (data) munmap(data, len);
    return rc == KB_OK ? 0 : 1;
}

/* --- the parent --- */

/* A running extraction as the parent sees it. */
typedef struct Child {
    pid_t pid;
    int out;               /* read end of the child's standard output */
    const DocBudget *b;
    double t0;
    char *err;
    size_t errlen;
} Child;

/* Puts the PDF's bytes in an anonymous file for the child's standard
** input. Returns the descriptor, or -1 with errno set. */
static int pdf_memfd(const unsigned char *data, size_t len)
{
    int fd = memfd_create("kbchat-pdf", MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (write_all(fd, data, len) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
        int e = errno;
        close(fd);
        errno = e ? e : EIO;
        return -1;
    }
    return fd;
}

/* Runs exe with argv, in (a descriptor) as its standard input, out as its
** standard output and /dev/null as its standard error; every other
** descriptor of ours is closed in it, its signals are unblocked with their
** default actions, and it gets a process group of its own (a Ctrl-C on the
** terminal is ours to handle: we stop it). Returns posix_spawn's 0 or
** error number. */
static int spawn_child(const char *exe, char *const argv[], int in, int out, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    int e = posix_spawn(pid, exe, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return e;
}

/* Starts the extractor on data[0..len) with its output on a pipe (c->out).
** Returns KB_OK; KB_EIO with the reason in c->err. */
static int child_start(Child *c, const unsigned char *data, size_t len)
{
    int pipefd[2] = {-1, -1}, in = pdf_memfd(data, len);
    if (in < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(c->err, c->errlen, "cannot start the PDF extractor: %s", strerror(errno));
        if (in >= 0) close(in);
        return KB_EIO;
    }
    char mem[32];
    snprintf(mem, sizeof mem, "%llu", (unsigned long long)(EXTRACT_MEMORY_BASE + (uint64_t)len * 4 + c->b->text_bytes * 2));
    char *argv[] = {"kbchat", "__extract-pdf", mem, NULL};
    int e = spawn_child(c->b->extractor, argv, in, pipefd[1], &c->pid);
    close(in);
    close(pipefd[1]);
    c->out = pipefd[0];
    if (e == 0) return KB_OK;
    snprintf(c->err, c->errlen, "cannot start the PDF extractor %s: %s", c->b->extractor, strerror(e));
    close(c->out);
    c->out = -1;
    return KB_EIO;
}

/* Kills the child (harmless when it has finished), closes the pipe and
** reaps it. Returns its wait status. */
static int child_end(Child *c)
{
    int status = 0;
    kill(c->pid, SIGKILL);
    close(c->out);
    while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

/* Reads n bytes from the child, waking at least every EXTRACT_POLL_MS to
** read the cancel flag and the clock. Returns KB_OK; KB_ECANCELLED;
** KB_ERANGE (time limit, reason in c->err); KB_EIO when the child's
** output ended (it exited or died). */
static int child_read(Child *c, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        int rc = doc_budget_check(&(DocBudget){c->b->seconds, 0, c->b->cancel, NULL}, c->t0, 0, c->err, c->errlen);
        if (rc != KB_OK) return rc;
        struct pollfd p = {c->out, POLLIN, 0};
        int r = poll(&p, 1, EXTRACT_POLL_MS);
        if (r < 0 && errno != EINTR) return KB_EIO;
        if (r <= 0) continue;
        ssize_t k = read(c->out, (char *)buf + got, n - got);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return KB_EIO;
        got += (size_t)k;
    }
    return KB_OK;
}

/* Hands one frame's payload to the sink, checking its shape. *end is set
** by 'Z' and 'E'. Returns KB_OK, the sink's code, the child's code ('E',
** reason in c->err) or KB_EFORMAT for a frame the child cannot have sent. */
static int frame_dispatch(Child *c, const PdfSink *sink, char kind, const char *body, uint32_t len, int *end)
{
    uint32_t head = len >= 4 ? get_u32((const unsigned char *)body) : 0;
    switch (kind) {
    case 'N': return len == 4 && head <= INT_MAX ? sink->begin(sink->user, (int)head) : KB_EFORMAT;
    case 'P': return sink->page(sink->user, body, len);
    case 'T':
    case 'A': return sink->meta(sink->user, kind, body, len);
    case 'O': return len >= 4 && head <= INT_MAX ? sink->outline(sink->user, (int)head, body + 4, len - 4) : KB_EFORMAT;
    case 'Z': *end = 1; return len == 0 ? KB_OK : KB_EFORMAT;
    case 'E':
        *end = 1;
        snprintf(c->err, c->errlen, "%.*s", (int)(len >= 4 ? len - 4 : 0), body + 4);
        return len < 4 ? KB_EFORMAT : head == KB_EUNSUPPORTED ? KB_EUNSUPPORTED : head == KB_ENOMEM ? KB_ENOMEM : KB_EFORMAT;
    }
    return KB_EFORMAT;
}

/* Reads frames until 'Z' or 'E', a budget limit, the end of the child's
** output or a malformed frame. A page longer than the text limit is
** refused from its header, before anything is allocated for it. */
static int child_frames(Child *c, const PdfSink *sink)
{
    int rc = KB_OK, end = 0;
    while (rc == KB_OK && !end) {
        unsigned char h[FRAME_HEADER];
        if ((rc = child_read(c, h, sizeof h)) != KB_OK) break;
        uint32_t len = get_u32(h + 1);
        uint32_t max = h[0] != 'P' ? FRAME_META_MAX
                       : c->b->text_bytes > 0 && c->b->text_bytes < FRAME_PAGE_MAX ? (uint32_t)c->b->text_bytes
                                                                                    : FRAME_PAGE_MAX;
        if (len > max) {
            rc = h[0] == 'P' ? doc_budget_check(c->b, c->t0, (size_t)len, c->err, c->errlen) : KB_OK;
            return rc == KB_OK ? KB_EFORMAT : rc;
        }
        char *body = malloc((size_t)len + 1);
        rc = body ? child_read(c, body, len) : KB_ENOMEM;
        if (rc == KB_OK) rc = frame_dispatch(c, sink, (char)h[0], body, len, &end);
        free(body);
    }
    return rc;
}

/* The failure reason for an extractor whose output ended early. */
static void describe_death(Child *c, int status)
{
    if (WIFSIGNALED(status))
        snprintf(c->err, c->errlen, "the PDF reader crashed on it (signal %d: %s); a damaged or hostile PDF?",
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(c->err, c->errlen, "the PDF reader stopped early (exit status %d): out of memory, or a damaged PDF?",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int extract_pdf_child(const DocBudget *b, double t0, const unsigned char *data, size_t len, const PdfSink *sink,
                      char *err, size_t errlen)
{
    Child c = {.pid = -1, .out = -1, .b = b, .t0 = t0, .err = err, .errlen = errlen};
    int rc = child_start(&c, data, len);
    if (rc != KB_OK) return rc;
    rc = child_frames(&c, sink);
    int status = child_end(&c);
    if (rc == KB_EIO && b->cancel && atomic_load(b->cancel)) rc = KB_ECANCELLED; /* a Ctrl-C reached it too */
    if (rc == KB_EIO) {
        describe_death(&c, status);
        rc = KB_EFORMAT;
    }
    if (rc == KB_EFORMAT && err[0] == '\0') snprintf(err, errlen, "the PDF reader sent malformed output");
    return rc;
}
