/*
** test_rag_sync.c: rag_sync on real folders (rag/sync.c): first index,
** re-sync of an unchanged folder doing no work, changed, touched, renamed
** and deleted files, bad files recorded with reasons and not retried,
** symlink loops, hidden files, a missing source folder, exclusions, the
** progress reports, stopping through the cancel flag, and allocation failures in the middle of a sync that
** the next sync recovers from. Hostile input: a file that becomes a FIFO
** after the walk, a stray invalid byte, a 256 KB heading (database size), a
** 32 MB line without separators (peak RSS in a child); and two syncs of
** one knowledge base in two processes (the sync lock, a killed holder).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/store.h"
#include "tests/ragfix.h"
#include "tests/testutil.h"

typedef struct Fix {
    char *dir;   /* data directory and documents live under here */
    char *docs;  /* the knowledge base's folder */
    Rag *rag;
} Fix;

static int fix_setup(void **state)
{
    Fix *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    f->docs = testutil_join(f->dir, "docs");
    *state = f;
    if (!f->dir || mkdir(f->docs, 0700) != 0 || !ragfix_have_font()) return -1;
    char *data = testutil_join(f->dir, "data");
    int rc = rag_open(&f->rag, data);
    free(data);
    if (rc == KB_OK) {
        RagKbSettings s = {200, 40, "", NULL};
        rc = rag_kb_create(f->rag, "kb", &s);
    }
    if (rc == KB_OK) rc = rag_kb_add(f->rag, "kb", f->docs);
    return rc == KB_OK ? 0 : -1;
}

static int fix_teardown(void **state)
{
    Fix *f = *state;
    rag_close(f->rag);
    testutil_rmtree(f->dir);
    free(f->docs);
    free(f->dir);
    free(f);
    return 0;
}

/* Writes docs/<name> with text. */
static void put(Fix *f, const char *name, const char *text)
{
    char *p = testutil_join(f->docs, name);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    g_mkdir_with_parents(p, 0700);
    *slash = '/';
    assert_int_equal(testutil_write_file(p, text, strlen(text)), 0);
    free(p);
}

/* Writes docs/<name> as a PDF whose one page holds text. */
static void put_pdf(Fix *f, const char *name, const char *text)
{
    char *p = testutil_join(f->docs, name);
    RagFixPage page = {text, NULL, NULL};
    RagFixPdf spec = {NULL, NULL, NULL, NULL, &page, 1};
    assert_int_equal(ragfix_write_pdf(p, &spec), 0);
    free(p);
}

static RagSyncStats sync_kb(Fix *f)
{
    RagSyncStats st;
    int rc = rag_sync(f->rag, "kb", NULL, &st);
    if (rc != KB_OK) fail_msg("rag_sync: %s", rag_errmsg(f->rag));
    return st;
}

static int hits(Fix *f, const char *q)
{
    RagHit *h;
    int n;
    assert_int_equal(rag_search(f->rag, "kb", q, 10, &h, &n), KB_OK);
    rag_hits_free(h, n);
    return n;
}

/* Sets a file's mtime to t seconds (same content). */
static void set_mtime(Fix *f, const char *name, time_t t)
{
    char *p = testutil_join(f->docs, name);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    free(p);
}

/* Checks that the knowledge base has exactly n failed documents and that
** the i-th (by path) gives a reason containing reasons[i]. */
static void expect_failed(Fix *f, const char *const *reasons, int n)
{
    RagFile *bad;
    int n_bad;
    assert_int_equal(rag_kb_files(f->rag, "kb", 1, &bad, &n_bad), KB_OK);
    assert_int_equal(n_bad, n);
    for (int i = 0; i < n; i++) {
        assert_true(bad[i].failed);
        if (strstr(bad[i].error, reasons[i]) == NULL) fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].path, bad[i].error, reasons[i]);
    }
    rag_files_free(bad, n_bad);
}

static void test_sync_add_change_touch_rename_delete(void **state)
{
    Fix *f = *state;
    put(f, "a.txt", "apple orchard notes");
    put(f, "b.md", "# Bananas\n\nbanana bread recipe");
    char *sub = testutil_join(f->docs, "sub");
    mkdir(sub, 0700);
    put_pdf(f, "sub/c.pdf", "cherry blossom report");
    RagSyncStats s = sync_kb(f);
    assert_int_equal(s.found, 3);
    assert_int_equal(s.indexed, 3);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.pages, 1);
    assert_int_equal(hits(f, "cherry"), 1);

    /* unchanged: no work at all */
    s = sync_kb(f);
    assert_int_equal(s.unchanged, 3);
    assert_int_equal(s.indexed + s.updated + s.moved + s.removed + s.failed + s.touched + s.pages + s.chunks, 0);

    /* changed content */
    put(f, "a.txt", "apricot jam notes, longer now");
    s = sync_kb(f);
    assert_int_equal(s.updated, 1);
    assert_int_equal(s.unchanged, 2);
    assert_int_equal(hits(f, "apple"), 0);
    assert_int_equal(hits(f, "apricot"), 1);

    /* only the time changed: hashed, not re-extracted */
    set_mtime(f, "b.md", 1000000000);
    s = sync_kb(f);
    assert_int_equal(s.touched, 1);
    assert_int_equal(s.chunks, 0);
    s = sync_kb(f);
    assert_int_equal(s.unchanged, 3);

    /* renamed and moved: recognised by hash, nothing extracted */
    char *from = testutil_join(f->docs, "sub/c.pdf"), *to = testutil_join(f->docs, "moved-c.pdf");
    assert_int_equal(rename(from, to), 0);
    s = sync_kb(f);
    assert_int_equal(s.moved, 1);
    assert_int_equal(s.indexed + s.removed + s.pages + s.chunks, 0);
    RagHit *h;
    int n;
    assert_int_equal(rag_search(f->rag, "kb", "blossom", 3, &h, &n), KB_OK);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].file, to);
    assert_int_equal(h[0].page, 1);
    rag_hits_free(h, n);

    /* deleted */
    char *a = testutil_join(f->docs, "a.txt");
    assert_int_equal(unlink(a), 0);
    s = sync_kb(f);
    assert_int_equal(s.removed, 1);
    assert_int_equal(hits(f, "apricot"), 0);
    assert_int_equal(store_integrity_check(f->rag), KB_OK);
    RagKbInfo info;
    assert_int_equal(rag_kb_info(f->rag, "kb", &info), KB_OK);
    assert_int_equal(info.n_documents, 2);
    assert_true(info.last_sync > 0);
    rag_kb_info_clear(&info);
    free(from), free(to), free(a), free(sub);
}

static void test_sync_records_bad_files_and_does_not_retry_them(void **state)
{
    Fix *f = *state;
    put(f, "good.txt", "the one good file");
    char *manual = testutil_join(f->dir, "manual.pdf");
    RagFixPage page = {"A perfectly fine page of text.", NULL, NULL};
    RagFixPdf spec = {NULL, NULL, NULL, NULL, &page, 1};
    assert_int_equal(ragfix_write_pdf(manual, &spec), 0);
    char *enc = testutil_join(f->docs, "encrypted.pdf"), *cut = testutil_join(f->docs, "cut.pdf"),
         *jpeg = testutil_join(f->docs, "photo.pdf"), *scan = testutil_join(f->docs, "scan.pdf");
    assert_int_equal(ragfix_encrypt_pdf(manual, enc), 0);
    assert_int_equal(ragfix_truncate_copy(manual, cut, 0.5), 0);
    assert_int_equal(ragfix_write_jpeg(jpeg), 0);
    assert_int_equal(ragfix_write_image_pdf(scan), 0);
    put(f, "empty.pdf", "");
    RagSyncStats s = sync_kb(f);
    assert_int_equal(s.indexed, 1);
    assert_int_equal(s.failed, 5);
    static const char *const reasons[] = {"truncated", "empty file", "encrypted", "JPEG", "no text"}; /* by path */
    expect_failed(f, reasons, 5);
    s = sync_kb(f);
    assert_int_equal(s.unchanged, 6);
    assert_int_equal(s.failed, 0);
    /* the truncated file is completed: indexed now */
    g_usleep(10000);
    char *data;
    gsize len;
    assert_true(g_file_get_contents(manual, &data, &len, NULL));
    assert_int_equal(testutil_write_file(cut, data, len), 0);
    g_free(data);
    s = sync_kb(f);
    assert_int_equal(s.updated, 1);
    assert_int_equal(s.failed, 0);
    assert_int_equal(hits(f, "perfectly"), 1);
    free(manual), free(enc), free(cut), free(jpeg), free(scan);
}

static void test_sync_survives_symlink_loops_and_skips_hidden_files(void **state)
{
    Fix *f = *state;
    put(f, "a.txt", "unique walnut text");
    put(f, ".hidden/secret.txt", "hidden walnut");
    put(f, "notes.docx", "not indexed");
    char *loop = testutil_join(f->docs, "loop"), *link = testutil_join(f->docs, "z-link.txt"),
         *dangling = testutil_join(f->docs, "dangling.txt");
    assert_int_equal(symlink(f->docs, loop), 0);
    assert_int_equal(symlink("a.txt", link), 0);
    assert_int_equal(symlink("/nonexistent/file.txt", dangling), 0);
    RagSyncStats s = sync_kb(f);
    assert_int_equal(s.found, 1);
    assert_int_equal(s.indexed, 1);
    assert_int_equal(hits(f, "walnut"), 1);
    free(loop), free(link), free(dangling);
}

static void test_sync_keeps_documents_of_a_missing_folder(void **state)
{
    Fix *f = *state;
    put(f, "disk/a.txt", "external disk file");
    char *disk = testutil_join(f->docs, "disk"), *gone = testutil_join(f->dir, "disk-unmounted");
    assert_int_equal(rag_kb_add(f->rag, "kb", disk), KB_OK);
    RagSyncStats s = sync_kb(f);
    assert_int_equal(s.indexed, 1);
    assert_int_equal(rename(disk, gone), 0);
    /* the file vanished from docs/ too (disk was inside it), but docs/disk
    ** is a source of its own that is missing: its documents stay */
    s = sync_kb(f);
    assert_int_equal(s.warnings, 1);
    assert_int_equal(s.removed, 0);
    assert_int_equal(hits(f, "external"), 1);
    free(disk), free(gone);
}

static void test_sync_excluded_folder_leaves_and_stays_out(void **state)
{
    Fix *f = *state;
    put(f, "keep/a.txt", "kept lemon");
    put(f, "drafts/b.txt", "draft lemon");
    assert_int_equal(sync_kb(f).indexed, 2);
    char *drafts = testutil_join(f->docs, "drafts");
    int64_t n;
    assert_int_equal(rag_kb_remove(f->rag, "kb", drafts, &n), KB_OK);
    assert_int_equal(n, 1);
    RagSyncStats s = sync_kb(f);
    assert_int_equal(s.found, 1);
    assert_int_equal(s.indexed + s.removed, 0);
    assert_int_equal(hits(f, "lemon"), 1);
    free(drafts);
}

/* --- progress --- */

typedef struct Seen {
    int plan, start, page, done, warning;
    int plan_before_start;
    int64_t files_total;
    double last_elapsed;     /* the elapsed field of the last report */
    int elapsed_backwards;   /* reports whose elapsed was less than the one before */
    double start_elapsed[8]; /* elapsed at each DOC_START */
} Seen;

static void on_progress(const RagProgress *p, void *user)
{
    Seen *s = user;
    switch (p->event) {
    case RAG_EV_PLAN:
        s->plan++;
        s->files_total = p->files_total;
        s->plan_before_start = s->start == 0;
        break;
    case RAG_EV_DOC_START:
        if (s->start < 8) s->start_elapsed[s->start] = p->elapsed;
        s->start++;
        break;
    case RAG_EV_PAGE: s->page++; break;
    case RAG_EV_DOC_DONE: s->done++; break;
    case RAG_EV_WARNING: s->warning++; break;
    case RAG_EV_EMBED: break;
    }
    assert_string_equal(p->kb, "kb");
    s->elapsed_backwards += p->elapsed < s->last_elapsed;
    s->last_elapsed = p->elapsed;
}

static void test_sync_reports_progress(void **state)
{
    Fix *f = *state;
    put(f, "a.txt", "one");
    put(f, "b.txt", "two");
    char *p = testutil_join(f->docs, "c.pdf");
    RagFixPage pages[3] = {{"page one.", NULL, NULL}, {"page two.", NULL, NULL}, {"page three.", NULL, NULL}};
    RagFixPdf spec = {NULL, NULL, NULL, NULL, pages, 3};
    assert_int_equal(ragfix_write_pdf(p, &spec), 0);
    Seen seen = {0};
    /* a pause of 50 ms after each document (the delay_ms hook) gives the
    ** elapsed time a floor that needs no clock of the test's own */
    RagSyncOptions opt = {.progress = on_progress, .user = &seen, .delay_ms = 50};
    RagSyncStats st;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* elapsed: never backwards, at least the pauses before each document,
    ** at most the time rag_sync took */
    assert_int_equal(seen.elapsed_backwards, 0);
    for (int k = 0; k < 3; k++)
        if (seen.start_elapsed[k] < 0.05 * k) fail_msg("document %d started at %.3f s, after %d pauses of 50 ms", k + 1,
                                                      seen.start_elapsed[k], k);
    assert_true(seen.last_elapsed <= (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    assert_int_equal(seen.plan, 1);
    assert_true(seen.plan_before_start);
    assert_int_equal(seen.files_total, 3);
    assert_int_equal(seen.start, 3);
    assert_int_equal(seen.done, 3);
    assert_int_equal(seen.page, 3);
    free(p);
}

/* --- hostile files --- */

/* What the FIFO test's progress callback does and saw. */
typedef struct Swap {
    char *victim;      /* the file made a FIFO when its DOC_START comes */
    int swapped;
    int warnings;
    char warning[600]; /* the last warning's message */
} Swap;

/* Replaces Swap.victim by a FIFO of the same name as the sync is about to
** read it: the walk saw a regular file, the read meets a FIFO (no writer
** ever opens it, so a blocking open would wait forever). */
static void swap_to_fifo(const RagProgress *p, void *user)
{
    Swap *sw = user;
    if (p->event == RAG_EV_DOC_START && strcmp(p->path, sw->victim) == 0) {
        assert_int_equal(unlink(sw->victim), 0);
        assert_int_equal(mkfifo(sw->victim, 0600), 0);
        sw->swapped = 1;
    }
    if (p->event == RAG_EV_WARNING) {
        sw->warnings++;
        snprintf(sw->warning, sizeof sw->warning, "%s", p->message);
    }
}

/* A file that becomes a FIFO between the walk and the read is skipped with
** a reason (recorded as failed); the sync ends and indexes the others. */
static void test_sync_skips_a_file_that_became_a_fifo(void **state)
{
    Fix *f = *state;
    put(f, "a.txt", "first file");
    put(f, "b.txt", "second file, soon a pipe");
    put(f, "c.txt", "third file");
    Swap sw = {testutil_join(f->docs, "b.txt"), 0, 0, ""};
    RagSyncOptions opt = {.progress = swap_to_fifo, .user = &sw};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    assert_true(sw.swapped);
    assert_int_equal(st.indexed, 2);
    assert_int_equal(st.failed, 1);
    static const char *const reasons[] = {"FIFO"};
    expect_failed(f, reasons, 1);
    free(sw.victim);
}

/* A text file with one invalid byte is indexed, with a warning naming it. */
static void test_sync_indexes_text_with_a_stray_byte_and_says_so(void **state)
{
    Fix *f = *state;
    GString *t = g_string_new(NULL);
    for (int i = 0; i < 50; i++) g_string_append(t, "Ordinary words about the strainer, and 中文 too.\n");
    g_string_append(t, "A stray \x80 byte.\n");
    put(f, "stray.txt", t->str);
    Swap sw = {"", 0, 0, ""};
    RagSyncOptions opt = {.progress = swap_to_fifo, .user = &sw};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(st.indexed, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(sw.warnings, 1);
    assert_non_null(strstr(sw.warning, "1 invalid UTF-8 byte skipped"));
    assert_true(hits(f, "strainer") > 0);
    g_string_free(t, TRUE);
}

/* A 256 KB Markdown heading over a long section: every chunk stores the
** capped title (201 characters), so the database stays a small multiple
** of the file instead of chunks x heading (about 330 MB here). */
static void test_sync_long_heading_keeps_the_database_linear(void **state)
{
    Fix *f = *state;
    GString *md = g_string_new("# ");
    for (int i = 0; i < 256 * 1024 / 8; i++) g_string_append(md, "Heading ");
    g_string_append(md, "\n\n");
    for (int i = 0; i < 2000; i++) g_string_append(md, "A sentence of the long section below the heading. ");
    put(f, "long.md", md->str);
    RagSyncStats st = sync_kb(f);
    assert_int_equal(st.indexed, 1);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(rag_db_path(f->rag), &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT max(length(section)), count(*) FROM chunks", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), DOC_TITLE_MAX_CHARS + 1);
    assert_true(sqlite3_column_int(q, 1) > 1000);
    sqlite3_finalize(q);
    sqlite3_close(db);
    char *wal = g_strconcat(rag_db_path(f->rag), "-wal", NULL);
    struct stat a, b;
    assert_int_equal(stat(rag_db_path(f->rag), &a), 0);
    int64_t bytes = (int64_t)a.st_size + (stat(wal, &b) == 0 ? (int64_t)b.st_size : 0);
    if (bytes > 16 * (int64_t)md->len) fail_msg("database %lld bytes for a %zu-byte file", (long long)bytes, md->len);
    g_free(wal);
    g_string_free(md, TRUE);
}

/* Peak memory of indexing: RagSyncStats of a sync run in a child process,
** whose peak resident size (getrusage through wait4, in KB) is *max_rss_kb.
** The child opens its own handle on the data directory (a SQLite connection
** must not cross fork). Returns the child's exit status. */
static int sync_in_child(Fix *f, long *max_rss_kb)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *data = testutil_join(f->dir, "data");
        Rag *rag = NULL;
        int rc = rag_open(&rag, data);
        RagSyncStats st;
        if (rc == KB_OK) rc = rag_sync(rag, "kb", NULL, &st);
        if (rc == KB_OK && (st.indexed != 1 || st.failed != 0)) rc = KB_EFORMAT;
        rag_close(rag);
        free(data);
        _exit(rc);
    }
    int status = 0;
    struct rusage ru;
    assert_int_equal(wait4(pid, &status, 0, &ru), pid);
    *max_rss_kb = ru.ru_maxrss;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A 32 MB single line without a separator is indexed in bounded memory:
** the chunker cuts it at the chunk size without making a piece per
** character (which took 24 bytes per character: 770 MB here, 1.29 GB for
** 50 MB). The bound is docs/knowledge-bases.md's: 3 x the file + the
** chunks (1.25 x the text at chunk size 200, overlap 40, plus about 100
** bytes each) + 64 MB for the program: about 220 MB here. ASan's shadow memory
** and quarantine make its figure meaningless, so there only the sync is
** checked. */
static void test_sync_indexes_a_line_without_separators_in_bounded_memory(void **state)
{
    Fix *f = *state;
    size_t len = (size_t)32 << 20;
    char *line = malloc(len + 1);
    assert_non_null(line);
    for (size_t i = 0; i < len; i++) line[i] = (char)('a' + (i * 7 + i / 26) % 26);
    line[len] = '\0';
    put(f, "line.txt", line);
    free(line);
    long max_rss_kb = 0;
    assert_int_equal(sync_in_child(f, &max_rss_kb), KB_OK);
    print_message("peak RSS indexing a %zu-byte line: %ld MB\n", len, max_rss_kb / 1024);
#ifndef __SANITIZE_ADDRESS__
    long bound_mb = (long)(3 * (len >> 20) + (len >> 20) * 5 / 4 + (len / 160) * 100 / (1 << 20) + 64);
    if (max_rss_kb / 1024 > bound_mb) fail_msg("peak RSS %ld MB > %ld MB", max_rss_kb / 1024, bound_mb);
#endif
    assert_true(hits(f, "abcdefghij") >= 0);
}

/* --- two syncs of one knowledge base --- */

/* The lock test's pipes: `held` says the child holds the sync lock,
** `release` lets it go on. */
typedef struct LockPipes {
    int held[2], release[2];
    int die;         /* the child kills itself while holding the lock */
    int waits;       /* the parent's "another sync" warnings */
} LockPipes;

/* Child's progress callback: at the plan (the lock is held, nothing
** indexed yet) it says so, then waits for the parent's word (60 s at most,
** only so that a broken lock cannot hang the test) or dies. */
static void hold_lock(const RagProgress *p, void *user)
{
    LockPipes *lp = user;
    if (p->event != RAG_EV_PLAN) return;
    char c = 'h';
    assert_int_equal(write(lp->held[1], &c, 1), 1);
    if (lp->die) raise(SIGKILL);
    struct pollfd pfd = {lp->release[0], POLLIN, 0};
    if (poll(&pfd, 1, 60000) == 1) assert_int_equal(read(lp->release[0], &c, 1), 1);
}

/* Parent's progress callback: the warning that another sync runs is the
** moment to let the child finish. */
static void release_holder(const RagProgress *p, void *user)
{
    LockPipes *lp = user;
    if (p->event != RAG_EV_WARNING || strstr(p->message, "another sync or rebuild of 'kb' is running") == NULL) return;
    lp->waits++;
    char c = 'r';
    assert_int_equal(write(lp->release[1], &c, 1), 1);
}

/* Writes two files and starts a child that syncs them through its own
** handle and holds the sync lock at its plan (hold_lock), dying there when
** `die`; returns once it holds the lock. */
static pid_t start_holder(Fix *f, LockPipes *lp, int die)
{
    put(f, "a.txt", "first file");
    put(f, "b.txt", "second file");
    *lp = (LockPipes){{-1, -1}, {-1, -1}, die, 0};
    assert_int_equal(pipe(lp->held), 0);
    assert_int_equal(pipe(lp->release), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *data = testutil_join(f->dir, "data");
        Rag *rag = NULL;
        RagSyncOptions opt = {.progress = hold_lock, .user = lp};
        RagSyncStats st;
        int rc = rag_open(&rag, data);
        if (rc == KB_OK) rc = rag_sync(rag, "kb", &opt, &st);
        if (rc == KB_OK && st.indexed != 2) rc = KB_EFORMAT;
        rag_close(rag);
        _exit(rc);
    }
    char c;
    assert_int_equal(read(lp->held[0], &c, 1), 1);
    return pid;
}

/* Closes both pipes of the lock test. */
static void close_pipes(LockPipes *lp)
{
    close(lp->held[0]), close(lp->held[1]), close(lp->release[0]), close(lp->release[1]);
}

/* Runs a sync (rebuild = 0) or a rebuild of the knowledge base while a
** child holds its lock: the run must wait for the child, which is let go
** by the run's warning and indexes both files. Returns the run's stats. */
static RagSyncStats run_while_held(Fix *f, int rebuild)
{
    LockPipes lp;
    pid_t pid = start_holder(f, &lp, 0);
    RagSyncOptions opt = {.progress = release_holder, .user = &lp};
    RagSyncStats st;
    assert_int_equal(rebuild ? rag_kb_rebuild(f->rag, "kb", &opt, &st) : rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), KB_OK); /* the child indexed both */
    assert_int_equal(lp.waits, 1);
    close_pipes(&lp);
    return st;
}

/* A second sync while one runs waits for it (after a warning) instead of
** indexing the same files again: it then finds them unchanged. */
static void test_sync_waits_for_a_running_sync_of_the_same_kb(void **state)
{
    RagSyncStats st = run_while_held(*state, 0);
    assert_int_equal(st.warnings, 1);
    assert_int_equal(st.indexed, 0);
    assert_int_equal(st.unchanged, 2);
}

/* A rebuild waits for a running sync of its knowledge base in the same way. */
static void test_rebuild_waits_for_a_running_sync(void **state)
{
    RagSyncStats st = run_while_held(*state, 1);
    assert_int_equal(st.warnings, 1);
}

/* A sync that dies holding the lock does not block the next one. */
static void test_sync_lock_of_a_killed_sync_is_released(void **state)
{
    Fix *f = *state;
    LockPipes lp;
    pid_t pid = start_holder(f, &lp, 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    RagSyncOptions opt = {.progress = release_holder, .user = &lp};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(lp.waits, 0);
    assert_int_equal(st.indexed, 2);
    close_pipes(&lp);
}

/* --- stopping a sync --- */

/* Sets the cancel flag once two documents are done. */
static void cancel_after_two(const RagProgress *p, void *user)
{
    atomic_int *cancel = user;
    if (p->event == RAG_EV_DOC_DONE && p->files_done == 2) atomic_store(cancel, 1);
}

/* RagSyncOptions.cancel stops the sync between documents: the two done
** stay, last_sync is not set; the next sync indexes only the other three
** and reaches the database a clean sync makes. */
static void test_sync_stops_between_documents_when_cancelled(void **state)
{
    Fix *f = *state;
    static const char *const names[] = {"a.txt", "b.txt", "c.md", "d.txt", "e.txt"};
    for (int i = 0; i < 5; i++) put(f, names[i], names[i]);
    atomic_int cancel = 0;
    RagSyncOptions opt = {.progress = cancel_after_two, .user = &cancel, .cancel = &cancel};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.indexed, 2);
    RagKbInfo info;
    assert_int_equal(rag_kb_info(f->rag, "kb", &info), KB_OK);
    assert_int_equal(info.n_documents, 2);
    assert_int_equal(info.last_sync, 0);
    rag_kb_info_clear(&info);
    st = sync_kb(f);
    assert_int_equal(st.cancelled, 0);
    assert_int_equal(st.indexed, 3);
    assert_int_equal(st.unchanged, 2);
    assert_int_equal(rag_kb_info(f->rag, "kb", &info), KB_OK);
    assert_int_equal(info.n_documents, 5);
    assert_true(info.last_sync > 0);
    rag_kb_info_clear(&info);
    assert_int_equal(store_integrity_check(f->rag), KB_OK);
}

/* --- allocation failures --- */

/* Each of our allocations in turn fails in the middle of a sync: the sync
** returns KB_ENOMEM, and a sync after it reaches the database a clean sync
** makes. */
static void test_sync_recovers_from_allocation_failure_anywhere(void **state)
{
    Fix *f = *state;
    put(f, "a.txt", "first file with some words. And a second sentence here.");
    put(f, "sub/b.md", "# Title\n\nsecond file");
    put_pdf(f, "c.pdf", "third file in a PDF");
    RagSyncStats s = sync_kb(f);
    char *want = ragfix_dump_db(rag_db_path(f->rag));
    assert_non_null(want);
    int failures = 0;
    for (long k = 1; k < 2000; k += 3) {
        /* start over: a changed file forces re-indexing */
        assert_int_equal(rag_kb_delete(f->rag, "kb"), KB_OK);
        RagKbSettings set = {200, 40, "", NULL};
        assert_int_equal(rag_kb_create(f->rag, "kb", &set), KB_OK);
        assert_int_equal(rag_kb_add(f->rag, "kb", f->docs), KB_OK);
        testutil_fail_alloc_after(k);
        int rc = rag_sync(f->rag, "kb", NULL, &s);
        testutil_fail_alloc_after(0);
        assert_true(rc == KB_OK || rc == KB_ENOMEM);
        s = sync_kb(f);
        char *got = ragfix_dump_db(rag_db_path(f->rag));
        assert_string_equal(got, want);
        g_free(got);
        assert_int_equal(store_integrity_check(f->rag), KB_OK);
        if (rc == KB_OK) break;
        failures++;
    }
    assert_true(failures > 10);
    g_free(want);
}

#define FIX(t) cmocka_unit_test_setup_teardown(t, fix_setup, fix_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIX(test_sync_add_change_touch_rename_delete),
        FIX(test_sync_records_bad_files_and_does_not_retry_them),
        FIX(test_sync_survives_symlink_loops_and_skips_hidden_files),
        FIX(test_sync_keeps_documents_of_a_missing_folder),
        FIX(test_sync_excluded_folder_leaves_and_stays_out),
        FIX(test_sync_reports_progress),
        FIX(test_sync_stops_between_documents_when_cancelled),
        FIX(test_sync_recovers_from_allocation_failure_anywhere),
        FIX(test_sync_skips_a_file_that_became_a_fifo),
        FIX(test_sync_indexes_text_with_a_stray_byte_and_says_so),
        FIX(test_sync_long_heading_keeps_the_database_linear),
        FIX(test_sync_indexes_a_line_without_separators_in_bounded_memory),
        FIX(test_sync_waits_for_a_running_sync_of_the_same_kb),
        FIX(test_sync_lock_of_a_killed_sync_is_released),
        FIX(test_rebuild_waits_for_a_running_sync),
    };
    return cmocka_run_group_tests(tests, NULL, ragfix_cleanup);
}
