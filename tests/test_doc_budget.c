/*
** test_doc_budget.c: the per-document budget of a sync and stopping inside
** one document (issue 16, item 5; rag/extract.c, rag/load_pdf.c,
** app/cmd_kb.c).
**
** The hostile input is the shape of the PDF that stalled a sync: many pages
** drawing one shared content stream of many text operators, written byte by
** byte (tests/ragfix.h), only as large as the tiny budgets need. Stopping
** "inside a document" is made certain, not likely, by the test hook
** KBCHAT_TEST_HOLD_EXTRACT (rag/extract.c): the extractor process holds
** after sending its first page and writes its process id to FILE.held; the
** tests cancel, send a signal or let the time limit pass while it holds, so
** no outcome depends on how fast this machine is. After each stop: the
** document is not stored half, the database passes its integrity check,
** the held process is gone (reaped, not a zombie), no descriptor is left
** open and the next sync indexes the document. Extractors that cannot
** start, crash, exit early or send a frame of 2 GiB each give a reason.
*/
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/rag.h"
#include "rag/store.h"
#include "tests/ragfix.h"
#include "tests/testutil.h"

#define HOLD_ENV "KBCHAT_TEST_HOLD_EXTRACT"
#define WORD "shared stream words" /* each text operator's line */

typedef struct Fix {
    char *dir;   /* data directory, documents and hook files live under here */
    char *docs;  /* the knowledge base's folder */
    char *data;  /* data_dir */
    char *bin;   /* the kbchat under test, absolute: the extractor */
    char *hold;  /* the hook's FILE; FILE.held is written by the held extractor */
    Rag *rag;
} Fix;

static int fix_setup(void **state)
{
    Fix *f = calloc(1, sizeof *f);
    *state = f;
    f->dir = testutil_mkdtemp();
    if (f->dir == NULL) return -1;
    f->docs = testutil_join(f->dir, "docs");
    f->data = testutil_join(f->dir, "data");
    f->hold = testutil_join(f->dir, "go");
    f->bin = realpath(testutil_kbchat_bin(), NULL);
    if (!f->bin || mkdir(f->docs, 0700) != 0 || !ragfix_have_font()) return -1;
    int rc = rag_open(&f->rag, f->data);
    if (rc == KB_OK) rc = rag_kb_create(f->rag, "kb", &(RagKbSettings){.chunk_size = 200, .chunk_overlap = 40, .embed_model = ""});
    if (rc == KB_OK) rc = rag_kb_add(f->rag, "kb", f->docs);
    return rc == KB_OK ? 0 : -1;
}

static int fix_teardown(void **state)
{
    Fix *f = *state;
    unsetenv(HOLD_ENV);
    rag_close(f->rag);
    testutil_rmtree(f->dir);
    free(f->docs), free(f->data), free(f->hold), free(f->bin), free(f->dir);
    free(f);
    return 0;
}

/* Writes docs/<name> with text. */
static void put_text(Fix *f, const char *name, const char *text)
{
    char *p = testutil_join(f->docs, name);
    assert_int_equal(testutil_write_file(p, text, strlen(text)), 0);
    free(p);
}

/* Writes docs/<name>: n_pages pages sharing one stream of n_ops lines. */
static void put_hostile(Fix *f, const char *name, int n_pages, int n_ops)
{
    char *p = testutil_join(f->docs, name);
    assert_int_equal(ragfix_write_shared_stream_pdf(p, n_pages, n_ops, WORD), 0);
    free(p);
}

/* Finds the stored row of docs/<name>: returns 1 with out's pages, failed,
** chunks and error (a malloc'd copy the caller frees) filled, or 0 when the
** knowledge base has no such document. */
static int find_file(Fix *f, const char *name, RagFile *out)
{
    RagFile *files;
    int n, found = 0;
    char *path = testutil_join(f->docs, name);
    assert_int_equal(rag_kb_files(f->rag, "kb", 0, &files, &n), KB_OK);
    for (int i = 0; i < n; i++)
        if (strcmp(files[i].path, path) == 0) {
            found = 1;
            out->pages = files[i].pages, out->failed = files[i].failed, out->chunks = files[i].chunks;
            out->error = strdup(files[i].error);
        }
    rag_files_free(files, n);
    free(path);
    return found;
}

/* Fails unless the process whose id is in held_path no longer exists:
** killed and reaped (a zombie would still answer kill(pid, 0)). */
static void assert_extractor_gone(const char *held_path)
{
    size_t len;
    char *s = testutil_read_file(held_path, &len);
    assert_non_null(s);
    long pid = atol(s);
    free(s);
    assert_true(pid > 1);
    assert_int_equal(kill((pid_t)pid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

/* The number of descriptors this process has open. */
static int open_fds(void)
{
    int n = 0;
    GDir *d = g_dir_open("/proc/self/fd", 0, NULL);
    assert_non_null(d);
    while (g_dir_read_name(d)) n++;
    g_dir_close(d);
    return n;
}

static char *held_path(const Fix *f)
{
    char *p = malloc(strlen(f->hold) + 6);
    sprintf(p, "%s.held", f->hold);
    return p;
}

/* --- the budget --- */

/* A document over the text budget is a failed document with the limit in
** its reason, the other files are indexed, it is not read again while it is
** unchanged, and read again once it changes. */
static void test_text_budget_fails_the_document_and_the_sync_goes_on(void **state)
{
    Fix *f = *state;
    put_text(f, "a.txt", "The pump must be primed before the first start.");
    put_hostile(f, "h.pdf", 20, 50); /* 20 pages of 50 lines of 20 bytes: 20 KB */
    put_text(f, "z.txt", "Clean the strainer every month.");
    RagSyncOptions opt = {.doc_text_bytes = 4096};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.indexed, 2);
    RagFile h = {0};
    assert_true(find_file(f, "h.pdf", &h));
    assert_true(h.failed);
    assert_non_null(strstr(h.error, "more than 4096 bytes of text"));
    assert_non_null(strstr(h.error, "kb.document_text_limit"));
    free(h.error);

    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK); /* unchanged: not tried again */
    assert_int_equal(st.failed + st.indexed + st.updated, 0);
    assert_int_equal(st.unchanged, 3);

    put_hostile(f, "h.pdf", 2, 10); /* 400 bytes of text: within the budget */
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(st.updated, 1);
    assert_int_equal(st.failed, 0);
    assert_true(find_file(f, "h.pdf", &h));
    assert_false(h.failed);
    assert_int_equal(h.pages, 2);
    free(h.error);
}

/* The same budget through the extractor process gives the same failure. */
static void test_text_budget_holds_in_the_extractor_process(void **state)
{
    Fix *f = *state;
    put_hostile(f, "h.pdf", 20, 50);
    RagSyncOptions opt = {.doc_text_bytes = 4096, .extractor = f->bin};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(st.failed, 1);
    RagFile h = {0};
    assert_true(find_file(f, "h.pdf", &h));
    assert_non_null(strstr(h.error, "more than 4096 bytes of text"));
    free(h.error);
}

/* The extractor process hands over exactly what poppler gives in this
** process: text, page offsets, sections from the outline, title, author. */
static void test_extractor_gives_what_the_in_process_reader_gives(void **state)
{
    Fix *f = *state;
    static const RagFixPage pages[] = {
        {"Priming the pump\nFill the casing with water before the first start.", NULL, "Priming"},
        {"Cleaning\nClean the strainer every month to keep the flow steady.", NULL, "Cleaning"},
        {"The warranty covers two years of normal household use.", NULL, NULL},
    };
    char *p = testutil_join(f->docs, "m.pdf");
    RagFixPdf spec = {"Pump Manual", "Ada Writer", NULL, "- %d -", pages, 3};
    assert_int_equal(ragfix_write_pdf(p, &spec), 0);
    size_t len;
    unsigned char *data = (unsigned char *)testutil_read_file(p, &len);
    RagDoc a, b;
    DocBudget child = {.extractor = f->bin};
    assert_int_equal(load_pdf(&a, data, len, NULL, NULL, NULL), KB_OK);
    assert_int_equal(load_pdf(&b, data, len, &child, NULL, NULL), KB_OK);
    assert_non_null(strstr(a.text, "Clean the strainer every month"));
    assert_string_equal(a.text, b.text);
    assert_int_equal(a.n_pages, 3);
    assert_int_equal(b.n_pages, 3);
    assert_memory_equal(a.page_start, b.page_start, 3 * sizeof *a.page_start);
    assert_int_equal(a.n_sections, 2);
    assert_int_equal(b.n_sections, 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(a.sections[i].title, b.sections[i].title);
        assert_int_equal(a.sections[i].offset, b.sections[i].offset);
    }
    assert_string_equal(b.title, "Pump Manual");
    assert_string_equal(b.author, "Ada Writer");
    doc_clear(&a), doc_clear(&b);
    free(data), free(p);
}

/* The extractor process says why a file is not a PDF, as the in-process
** reader does. */
static void test_extractor_reports_a_bad_file_like_the_in_process_reader(void **state)
{
    Fix *f = *state;
    static const unsigned char jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'};
    RagDoc a, b;
    DocBudget child = {.extractor = f->bin};
    assert_int_equal(load_pdf(&a, jpeg, sizeof jpeg, NULL, NULL, NULL), KB_EFORMAT);
    assert_int_equal(load_pdf(&b, jpeg, sizeof jpeg, &child, NULL, NULL), KB_EFORMAT);
    assert_string_equal(b.errmsg, "not a PDF: a JPEG image");
    assert_string_equal(a.errmsg, b.errmsg);
    doc_clear(&a), doc_clear(&b);
}

/* Writes an executable shell script <dir>/<name> with body; returns its
** path (malloc'd): an extractor that misbehaves. */
static char *put_script(Fix *f, const char *name, const char *body)
{
    char *p = testutil_join(f->dir, name);
    char text[512];
    int n = snprintf(text, sizeof text, "#!/bin/sh\n%s\n", body);
    assert_int_equal(testutil_write_file(p, text, (size_t)n), 0);
    assert_int_equal(chmod(p, 0755), 0);
    return p;
}

/* An extractor that cannot start, dies, or sends a frame longer than any
** page may be gives a reason and never a crash, a hang or an allocation of
** the announced size. */
static void test_a_broken_extractor_fails_the_document_with_a_reason(void **state)
{
    Fix *f = *state;
    char *pdf = testutil_join(f->docs, "h.pdf");
    put_hostile(f, "h.pdf", 2, 3);
    size_t len;
    unsigned char *data = (unsigned char *)testutil_read_file(pdf, &len);
    char *missing = testutil_join(f->dir, "no-such-kbchat");
    char *dies = put_script(f, "dies.sh", "kill -SEGV $$");
    char *fails = put_script(f, "fails.sh", "exit 3");
    char *huge = put_script(f, "huge.sh", "printf 'N\\004\\0\\0\\0\\002\\0\\0\\0P\\377\\377\\377\\177'; exec sleep 600");
    const struct {
        const char *exe;
        size_t text_limit;
        int rc;
        const char *why;
    } cases[] = {
        {missing, 0, KB_EIO, "cannot start the PDF extractor"},
        {dies, 0, KB_EFORMAT, "the PDF reader crashed on it (signal 11"},
        {fails, 0, KB_EFORMAT, "the PDF reader stopped early (exit status 3)"},
        {huge, 4096, KB_ERANGE, "more than 4096 bytes of text"},
        {huge, 0, KB_EFORMAT, "the PDF reader sent malformed output"}, /* 2 GiB > any page: refused, killed */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RagDoc doc;
        DocBudget b = {.text_bytes = cases[i].text_limit, .extractor = cases[i].exe};
        int rc = load_pdf(&doc, data, len, &b, NULL, NULL);
        if (rc != cases[i].rc || strstr(doc.errmsg, cases[i].why) == NULL)
            fail_msg("%s: code %d, reason \"%s\"", cases[i].exe, rc, doc.errmsg);
        doc_clear(&doc);
    }
    free(data), free(pdf), free(missing), free(dies), free(fails), free(huge);
}

/* A sync whose extractor cannot start stops with the reason, and the PDF
** is not recorded as failed: the fault is not the file's, and the next sync
** with a working extractor indexes it. */
static void test_a_sync_without_its_extractor_stops_and_marks_nothing(void **state)
{
    Fix *f = *state;
    put_text(f, "a.txt", "The pump must be primed before the first start.");
    put_hostile(f, "h.pdf", 2, 3);
    char *missing = testutil_join(f->dir, "no-such-kbchat");
    RagSyncOptions opt = {.extractor = missing};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_EIO);
    assert_non_null(strstr(rag_errmsg(f->rag), "h.pdf: cannot start the PDF extractor"));
    RagFile h = {0};
    assert_false(find_file(f, "h.pdf", &h));
    opt.extractor = f->bin;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(st.indexed, 1);
    assert_true(find_file(f, "h.pdf", &h));
    assert_false(h.failed);
    free(h.error), free(missing);
}

/* An extraction still running at the time limit (held by the hook, so it
** would never end) fails the document with the limit in its reason; the
** sync goes on with the next file. */
static void test_time_budget_fails_a_document_that_never_ends(void **state)
{
    Fix *f = *state;
    put_hostile(f, "h.pdf", 3, 5);
    put_text(f, "z.txt", "Clean the strainer every month.");
    setenv(HOLD_ENV, f->hold, 1); /* never created: the extractor holds until killed */
    RagSyncOptions opt = {.doc_seconds = 1, .extractor = f->bin};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    unsetenv(HOLD_ENV);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.indexed, 1);
    assert_false(st.cancelled);
    RagFile h = {0};
    assert_true(find_file(f, "h.pdf", &h));
    assert_true(h.failed);
    assert_non_null(strstr(h.error, "took more than 1 s"));
    assert_non_null(strstr(h.error, "kb.document_time_limit"));
    free(h.error);
}

/* --- cancel inside a document --- */

/* rag_sync's progress callback that sets the cancel flag (user) at the
** first extracted page: the in-process reader stops after that page. */
static void cancel_at_first_page(const RagProgress *p, void *user)
{
    if (p->event == RAG_EV_PAGE) atomic_store((atomic_int *)user, 1);
}

/* After a sync stopped inside h.pdf: nothing of it stored, a.txt (before
** it) indexed, the database sound, last_sync unchanged; the next sync
** indexes h.pdf whole. */
static void check_stopped_inside_h_pdf(Fix *f, const RagSyncStats *st, int h_pages)
{
    RagFile h = {0};
    RagKbInfo info;
    assert_true(st->cancelled);
    assert_true(find_file(f, "a.txt", &h));
    free(h.error);
    assert_false(find_file(f, "h.pdf", &h));
    assert_int_equal(store_integrity_check(f->rag), KB_OK);
    assert_int_equal(rag_kb_info(f->rag, "kb", &info), KB_OK);
    assert_int_equal(info.last_sync, 0);
    rag_kb_info_clear(&info);
    RagSyncStats again;
    assert_int_equal(rag_sync(f->rag, "kb", NULL, &again), KB_OK);
    assert_int_equal(again.indexed, 1);
    assert_true(find_file(f, "h.pdf", &h));
    assert_false(h.failed);
    assert_int_equal(h.pages, h_pages);
    free(h.error);
}

/* In this process the cancel flag is read after each page. */
static void test_cancel_after_a_page_in_process(void **state)
{
    Fix *f = *state;
    put_text(f, "a.txt", "The pump must be primed before the first start.");
    put_hostile(f, "h.pdf", 5, 5);
    atomic_int cancel = 0;
    RagSyncOptions opt = {.progress = cancel_at_first_page, .user = &cancel, .cancel = &cancel};
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    check_stopped_inside_h_pdf(f, &st, 5);
}

/* A thread that waits for the held extractor, then sets the cancel flag. */
typedef struct Canceller {
    const char *held;
    atomic_int *cancel;
} Canceller;

static void *cancel_when_held(void *arg)
{
    Canceller *c = arg;
    testutil_wait_file(c->held, 60000);
    atomic_store(c->cancel, 1);
    return NULL;
}

/* With the extractor process, cancel acts while poppler is inside a page
** (held by the hook): the process is killed and reaped. */
static void test_cancel_inside_a_page_kills_the_extractor(void **state)
{
    Fix *f = *state;
    put_text(f, "a.txt", "The pump must be primed before the first start.");
    put_hostile(f, "h.pdf", 4, 5);
    char *held = held_path(f);
    atomic_int cancel = 0;
    Canceller c = {held, &cancel};
    pthread_t th;
    setenv(HOLD_ENV, f->hold, 1);
    assert_int_equal(pthread_create(&th, NULL, cancel_when_held, &c), 0);
    RagSyncOptions opt = {.cancel = &cancel, .extractor = f->bin};
    RagSyncStats st;
    int fds = open_fds();
    assert_int_equal(rag_sync(f->rag, "kb", &opt, &st), KB_OK);
    pthread_join(th, NULL);
    assert_int_equal(open_fds(), fds); /* the pipe and the memfd closed */
    unsetenv(HOLD_ENV);
    assert_extractor_gone(held);
    check_stopped_inside_h_pdf(f, &st, 4);
    free(held);
}

/* --- kbchat kb sync --- */

/* Runs kbchat ARGS... in the fixture's folder with HOME there and the
** data directory f->data (no configuration file but cfg, may be NULL). */
static TestRun run_kbchat(Fix *f, const char *cfg, const char *const *args)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = f->bin;
    if (cfg) argv[n++] = "--config", argv[n++] = cfg;
    while (*args && n < 15) argv[n++] = *args++;
    argv[n] = NULL;
    char home[1024], data[1024];
    snprintf(home, sizeof home, "HOME=%s", f->dir);
    snprintf(data, sizeof data, "XDG_DATA_HOME=%s", f->dir); /* data_dir = <dir>/kbchat */
    const char *env[] = {home, data, "XDG_CONFIG_HOME=", "KBCHAT_CONFIG=", HOLD_ENV "=", NULL};
    TestRun r = {0};
    assert_int_equal(testutil_run(argv, env, f->dir, 120, &r.out, &r.err, &r.status), 0);
    return r;
}

/* Writes <dir>/<name> with the YAML text; returns its path (malloc'd). */
static char *put_config(Fix *f, const char *name, const char *yaml)
{
    char *p = testutil_join(f->dir, name);
    assert_int_equal(testutil_write_file(p, yaml, strlen(yaml)), 0);
    return p;
}

/* `kb sync` shows the budget failure and goes on; `kb status` and
** `kb files` show the reason. */
static void test_kb_sync_shows_the_budget_failure(void **state)
{
    Fix *f = *state;
    put_text(f, "a.txt", "The pump must be primed before the first start.");
    put_hostile(f, "h.pdf", 20, 50);
    char *cfg = put_config(f, "budget.yaml", "kb:\n  document_text_limit: 4096\n");
    char *h = testutil_join(f->docs, "h.pdf");
    testutil_expect((TestRun[]){run_kbchat(f, cfg, (const char *[]){"kb", "create", "d", "--folder", f->docs, NULL})}, 0,
                    NULL, NULL);
    TestRun r = run_kbchat(f, cfg, (const char *[]){"kb", "sync", "d", NULL});
    char want[2048];
    snprintf(want, sizeof want, "failed %s: over the per-document budget: more than 4096 bytes of text", h);
    assert_non_null(strstr(r.out, want));
    testutil_expect(&r, 0, "1 indexed, 0 updated, 0 moved, 0 removed, 1 failed", NULL);
    r = run_kbchat(f, cfg, (const char *[]){"kb", "status", "d", NULL});
    snprintf(want, sizeof want, "  %s: over the per-document budget: more than 4096 bytes", h);
    assert_non_null(strstr(r.out, want));
    testutil_expect(&r, 0, "documents:       2 (1 indexed, 1 failed)", NULL);
    free(cfg), free(h);
}

/* Budget values out of range are refused with the key, the range and the
** value; nothing runs. */
static void test_kb_sync_refuses_hostile_budget_values(void **state)
{
    Fix *f = *state;
    static const char *const bad[][2] = {
        {"kb:\n  document_time_limit: 0\n", "kb.document_time_limit: expected an integer 1..86400, got 0"},
        {"kb:\n  document_time_limit: -5\n", "kb.document_time_limit: expected an integer 1..86400, got -5"},
        {"kb:\n  document_time_limit: 1e300\n", "kb.document_time_limit: expected an integer 1..86400"},
        {"kb:\n  document_time_limit: soon\n", "kb.document_time_limit: expected an integer 1..86400, got \"soon\""},
        {"kb:\n  document_text_limit: 100\n", "kb.document_text_limit: expected an integer 4096..1073741824, got 100"},
        {"kb:\n  document_text_limit: 99999999999999999999\n", "kb.document_text_limit: expected an integer 4096..1073741824"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *cfg = put_config(f, "bad.yaml", bad[i][0]);
        TestRun r = run_kbchat(f, cfg, (const char *[]){"kb", "list", NULL});
        if (r.status == 0 || strstr(r.err, bad[i][1]) == NULL)
            fail_msg("config %s: status %d, stderr: %s", bad[i][0], r.status, r.err);
        testutil_run_free(&r);
        free(cfg);
    }
}

/* SIGTERM and SIGHUP (an ssh session dropping) while `kb sync` is inside a
** PDF: exit status 128 + the signal, the extractor gone, the database
** sound with nothing of the document stored (the first time) or its
** previous version intact (the second), and the next sync indexes it. */
static void test_kb_sync_ends_cleanly_on_sigterm_and_sighup_inside_a_document(void **state)
{
    Fix *f = *state;
    static const int sigs[] = {SIGTERM, SIGHUP};
    put_text(f, "a.txt", "The pump must be primed before the first start.");
    put_hostile(f, "h.pdf", 4, 5);
    testutil_expect((TestRun[]){run_kbchat(f, NULL, (const char *[]){"kb", "create", "d", "--folder", f->docs, NULL})},
                    0, NULL, NULL);
    char *held = held_path(f), *h = testutil_join(f->docs, "h.pdf");
    for (int i = 0; i < 2; i++) {
        if (i == 1) put_hostile(f, "h.pdf", 6, 5); /* changed: the sync re-reads it */
        unlink(held);
        char home[1024], data[1024], hold[1024], want[256];
        snprintf(home, sizeof home, "HOME=%s", f->dir);
        snprintf(data, sizeof data, "XDG_DATA_HOME=%s", f->dir);
        snprintf(hold, sizeof hold, HOLD_ENV "=%s", f->hold);
        const char *env[] = {home, data, "XDG_CONFIG_HOME=", "KBCHAT_CONFIG=", hold, NULL};
        const char *argv[] = {f->bin, "kb", "sync", "d", NULL};
        TestRun r = {0};
        assert_int_equal(testutil_run_signal(argv, env, f->dir, 120, held, sigs[i], &r.out, &r.err, &r.status), 0);
        snprintf(want, sizeof want, "stopped by signal %d", sigs[i]);
        testutil_expect(&r, 128 + sigs[i], NULL, want);
        assert_extractor_gone(held);
        Rag *rag;
        char *dbdir = testutil_join(f->dir, "kbchat");
        assert_int_equal(rag_open(&rag, dbdir), KB_OK);
        assert_int_equal(store_integrity_check(rag), KB_OK);
        RagKbInfo info;
        assert_int_equal(rag_kb_info(rag, "d", &info), KB_OK);
        assert_int_equal(info.n_documents, i == 0 ? 1 : 2); /* h.pdf: absent, then its 4-page version */
        assert_int_equal(info.n_pages, i == 0 ? 0 : 4);
        rag_kb_info_clear(&info);
        rag_close(rag);
        free(dbdir);
        r = run_kbchat(f, NULL, (const char *[]){"kb", "sync", "d", NULL});
        snprintf(want, sizeof want, "%s %s (%d pages", i == 0 ? "indexed" : "updated", h, i == 0 ? 4 : 6);
        testutil_expect(&r, 0, want, NULL);
    }
    free(held), free(h);
}

#define FIX(t) cmocka_unit_test_setup_teardown(t, fix_setup, fix_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIX(test_text_budget_fails_the_document_and_the_sync_goes_on),
        FIX(test_text_budget_holds_in_the_extractor_process),
        FIX(test_extractor_gives_what_the_in_process_reader_gives),
        FIX(test_extractor_reports_a_bad_file_like_the_in_process_reader),
        FIX(test_a_broken_extractor_fails_the_document_with_a_reason),
        FIX(test_a_sync_without_its_extractor_stops_and_marks_nothing),
        FIX(test_time_budget_fails_a_document_that_never_ends),
        FIX(test_cancel_after_a_page_in_process),
        FIX(test_cancel_inside_a_page_kills_the_extractor),
        FIX(test_kb_sync_shows_the_budget_failure),
        FIX(test_kb_sync_refuses_hostile_budget_values),
        FIX(test_kb_sync_ends_cleanly_on_sigterm_and_sighup_inside_a_document),
    };
    return cmocka_run_group_tests(tests, NULL, ragfix_cleanup);
}
