/*
** test_rag_cli.c: the `kbchat kb` commands, run as a user runs them
** ($KBCHAT_BIN in a sandbox: HOME, the XDG folders and the working
** directory are a fresh temporary folder), and a sync killed with SIGKILL
** half-way, then finished, compared with a clean sync of the same files.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "rag/store.h"
#include "tests/ragfix.h"
#include "tests/testutil.h"

typedef TestSandbox Sandbox;

static int sandbox_setup(void **state)
{
    Sandbox *sb = calloc(1, sizeof *sb);
    *state = sb;
    return sb && testutil_sandbox_open(sb) == 0 && ragfix_have_font() ? 0 : -1;
}

static int sandbox_teardown(void **state)
{
    testutil_sandbox_close(*state);
    free(*state);
    return 0;
}

#define KB TESTUTIL_KB

/* The sandbox's documents: an English PDF with a header and footer, a
** Chinese PDF, a GBK text file, Markdown, and one encrypted PDF. */
static void make_documents(Sandbox *sb)
{
    static const RagFixPage en[] = {
        {"The centrifugal pump must be primed before the first start.", NULL, NULL},
        {"Clean the strainer every month to keep the flow steady.", NULL, NULL},
        {"The warranty covers two years of normal household use.", NULL, NULL},
    };
    static const RagFixPage zh[] = {
        {"本产品支持离线知识库问答，\n所有文档都保存在本地，\n不需要连接任何网络。", NULL, NULL},
        {"检索时先把问题切成二元组，\n再按相关度排序。", NULL, NULL},
    };
    char *p = testutil_join(sb->docs, "pump.pdf");
    RagFixPdf spec = {"Pump", NULL, "Pump Manual", "- %d -", en, 3};
    assert_int_equal(ragfix_write_pdf(p, &spec), 0);
    char *q = testutil_join(sb->docs, "中文/说明.pdf");
    char *dir = testutil_join(sb->docs, "中文");
    mkdir(dir, 0700);
    RagFixPdf zspec = {"说明", NULL, NULL, NULL, zh, 2};
    assert_int_equal(ragfix_write_pdf(q, &zspec), 0);
    char *gbk = testutil_join(sb->docs, "中文/笔记.txt");
    assert_int_equal(ragfix_write_encoded(gbk, "向量数据库与全文检索的比较。\n", "GBK", NULL, 0), 0);
    char *md = testutil_join(sb->docs, "readme.md");
    const char *mdtext = "# Setup\n\nRun the installer.\n\n## Troubleshooting\n\nIf the Impeller jams, call us.\n";
    assert_int_equal(testutil_write_file(md, mdtext, strlen(mdtext)), 0);
    char *enc = testutil_join(sb->docs, "locked.pdf");
    assert_int_equal(ragfix_encrypt_pdf(p, enc), 0);
    free(p), free(q), free(dir), free(gbk), free(md), free(enc);
}

static void test_kb_cli_create_sync_status_files_search(void **state)
{
    Sandbox *sb = *state;
    make_documents(sb);
    /* small chunks, so each page of the fixtures is a chunk of its own */
    char *cfg = testutil_join(sb->dir, "config.yaml");
    const char *yaml = "chunking:\n  size: 50\n  overlap: 10\n";
    assert_int_equal(testutil_write_file(cfg, yaml, strlen(yaml)), 0);
    free(cfg);
    TestRun r = KB(sb, "kb", "list");
    testutil_expect(&r, 0, "no knowledge bases yet", NULL);
    r = KB(sb, "kb", "create", "manuals", "--folder", "docs");
    testutil_expect(&r, 0, "created knowledge base 'manuals': chunks of 50 characters, overlap 10", NULL);
    r = KB(sb, "kb", "sync", "manuals");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "indexed "));
    assert_non_null(strstr(r.out, "pump.pdf (3 pages, "));
    assert_non_null(strstr(r.out, "failed "));
    assert_non_null(strstr(r.out, "locked.pdf: encrypted PDF"));
    assert_non_null(strstr(r.out, "manuals: 4 indexed, 0 updated, 0 moved, 0 removed, 1 failed, 0 unchanged"));
    testutil_run_free(&r);
    r = KB(sb, "kb", "sync", "manuals");
    testutil_expect(&r, 0, "manuals: 0 indexed, 0 updated, 0 moved, 0 removed, 0 failed, 5 unchanged; 0 pages, 0 chunks", NULL);
    r = KB(sb, "kb", "status", "manuals");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "documents:       5 (4 indexed, 1 failed)"));
    assert_non_null(strstr(r.out, "pages:           5\n"));
    assert_non_null(strstr(r.out, "embedding model: none"));
    assert_non_null(strstr(r.out, "locked.pdf: encrypted PDF: it needs a password"));
    assert_null(strstr(r.out, "last sync:       never"));
    testutil_run_free(&r);
    r = KB(sb, "kb", "files", "manuals");
    testutil_expect(&r, 0, "说明.pdf", NULL);
    r = KB(sb, "kb", "list");
    testutil_expect(&r, 0, "manuals", NULL);

    /* a Chinese word of 2, 3 and 4 characters, and English words */
    r = KB(sb, "kb", "search", "manuals", "二元", "--json");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"rank\": 1, \"score\": "));
    assert_non_null(strstr(r.out, "说明.pdf\", \"page\": 2, \"chunk_id\": "));
    assert_non_null(strstr(r.out, "\"text\": \"检索时先把问题切成二元组，再按相关度排序。\""));
    testutil_run_free(&r);
    r = KB(sb, "kb", "search", "manuals", "知识库", "--json");
    testutil_expect(&r, 0, "说明.pdf\", \"page\": 1,", NULL);
    r = KB(sb, "kb", "search", "manuals", "全文检索", "--json");
    testutil_expect(&r, 0, "笔记.txt\", \"page\": null,", NULL);
    r = KB(sb, "kb", "search", "manuals", "STRAINER", "--json", "--top-k", "1");
    testutil_expect(&r, 0, "pump.pdf\", \"page\": 2,", NULL);
    r = KB(sb, "kb", "search", "manuals", "impeller");
    testutil_expect(&r, 0, "[1] ", NULL);
    r = KB(sb, "kb", "search", "manuals", "impeller", "--json");
    testutil_expect(&r, 0, "\"section\": \"Troubleshooting\"", NULL);
    r = KB(sb, "kb", "search", "manuals", "zeppelin", "--json");
    testutil_expect(&r, 0, "[]\n", NULL);
    /* the page header was not indexed */
    r = KB(sb, "kb", "search", "manuals", "Manual", "--json");
    testutil_expect(&r, 0, "[]\n", NULL);

    /* remove a folder, then delete */
    r = KB(sb, "kb", "remove", "manuals", "docs/中文");
    testutil_expect(&r, 0, "(2 documents)", NULL);
    r = KB(sb, "kb", "search", "manuals", "知识库", "--json");
    testutil_expect(&r, 0, "[]\n", NULL);
    r = KB(sb, "kb", "delete", "manuals");
    testutil_expect(&r, 2, NULL, "pass --yes");
    r = KB(sb, "kb", "delete", "manuals", "--yes");
    testutil_expect(&r, 0, "deleted knowledge base 'manuals'", NULL);
    r = KB(sb, "kb", "status", "manuals");
    testutil_expect(&r, 1, NULL, "no knowledge base named 'manuals'");
}

/* Fails unless each hostile name is in s in the notation of docs/output.md,
** and s is safe for a terminal. */
static void expect_hostile_shown(const char *s, const char *what)
{
    testutil_expect_terminal_safe(s, what);
    for (int i = 0; i < RAGFIX_N_HOSTILE; i++)
        if (strstr(s, RAGFIX_HOSTILE_SHOWN[i]) == NULL) fail_msg("%s lacks %s:\n%s", what, RAGFIX_HOSTILE_SHOWN[i], s);
}

/* Runs kbchat and checks that both its streams are safe for a terminal;
** returns its stdout (malloc'd). */
static char *run_safe(Sandbox *sb, const char *const *args, const char *what)
{
    TestRun r = testutil_kbchat_in(sb->bin, sb->dir, sb->home, args);
    if (r.status != 0) fail_msg("%s: exit %d\n%s", what, r.status, r.err);
    testutil_expect_terminal_safe(r.err, what);
    char *out = r.out;
    r.out = NULL;
    testutil_run_free(&r);
    return out;
}

static int cmp_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks the --json output of a search (an array of hits) with python3: it
** parses, and each hostile name comes back exactly through file/file_hex. */
static void expect_json_names(Sandbox *sb, const char *json)
{
    testutil_expect_terminal_safe(json, "--json output");
    char *v = testutil_python_json(sb->dir, json,
                                   "sorted(bytes.fromhex(h['file_hex']) if 'file_hex' in h else h['file'].encode() for h in v)");
    GString *want = g_string_new("[");
    const char *sorted[RAGFIX_N_HOSTILE];
    memcpy(sorted, RAGFIX_HOSTILE_NAMES, sizeof sorted);
    qsort(sorted, RAGFIX_N_HOSTILE, sizeof *sorted, cmp_strings);
    for (int i = 0; i < RAGFIX_N_HOSTILE; i++) {
        g_string_append_printf(want, "%sb'%s/hostile/", i ? ", " : "", sb->dir);
        for (const unsigned char *p = (const unsigned char *)sorted[i]; *p; p++)
            g_string_append_printf(want, *p < 0x20 || *p >= 0x7f ? (*p == '\n' ? "\\n" : "\\x%02x") : "%c", *p);
        g_string_append(want, "'");
    }
    g_string_append(want, "]");
    assert_string_equal(v, want->str);
    g_string_free(want, TRUE);
    free(v);
}

/* File names that would set the terminal's title, write its clipboard,
** clear it, forge a line or are not UTF-8: every command that prints them
** shows them escaped, one line each, and --json stays valid JSON. */
static void test_kb_cli_escapes_names_hostile_to_the_terminal(void **state)
{
    Sandbox *sb = *state;
    char *dir = testutil_join(sb->dir, "hostile");
    assert_int_equal(ragfix_write_hostile_names(dir), 0);
    free(dir);
    TestRun r = KB(sb, "kb", "create", "odd", "--folder", "hostile");
    testutil_expect(&r, 0, "created knowledge base 'odd'", NULL);
    char *out = run_safe(sb, (const char *const[]){"kb", "sync", "odd", NULL}, "kb sync");
    expect_hostile_shown(out, "kb sync");
    assert_non_null(strstr(out, "odd: 5 indexed"));
    free(out);
    out = run_safe(sb, (const char *const[]){"kb", "files", "odd", NULL}, "kb files");
    expect_hostile_shown(out, "kb files");
    /* one row per document: the header and five */
    int rows = 0;
    for (const char *p = out; *p; p++) rows += *p == '\n';
    assert_int_equal(rows, 1 + RAGFIX_N_HOSTILE);
    free(out);
    /* a failed document's name in kb sync and kb status: a PDF that is not one */
    char *bad = g_build_filename(sb->dir, "hostile", RAGFIX_HOSTILE_NAMES[0], NULL);
    char *bad_pdf = g_strconcat(bad, ".pdf", NULL);
    assert_int_equal(ragfix_write(bad_pdf, "%PDF-1.4 but not really", 23), 0);
    out = run_safe(sb, (const char *const[]){"kb", "sync", "odd", NULL}, "kb sync (failed)");
    testutil_expect_terminal_safe(out, "kb sync (failed)");
    assert_non_null(strstr(out, "failed "));
    assert_non_null(strstr(out, "title\\x1b]0;pwned\\x07.txt.pdf: "));
    free(out);
    out = run_safe(sb, (const char *const[]){"kb", "status", "odd", NULL}, "kb status");
    testutil_expect_terminal_safe(out, "kb status");
    assert_non_null(strstr(out, "title\\x1b]0;pwned\\x07.txt.pdf: "));
    free(out);
    assert_int_equal(unlink(bad_pdf), 0);
    g_free(bad);
    g_free(bad_pdf);
    out = run_safe(sb, (const char *const[]){"kb", "sync", "odd", NULL}, "kb sync (again)");
    free(out);

    out = run_safe(sb, (const char *const[]){"kb", "search", "odd", "wombat", "--top-k", "10", NULL}, "kb search");
    expect_hostile_shown(out, "kb search");
    free(out);
    out = run_safe(sb, (const char *const[]){"kb", "search", "odd", "wombat", "--mode", "keyword", "--top-k", "10", NULL}, "kb search");
    expect_hostile_shown(out, "kb search --mode keyword");
    free(out);
    out = run_safe(sb, (const char *const[]){"ask", "--retrieve-only", "--top-k", "10", "wombat notes", NULL}, "ask --retrieve-only");
    expect_hostile_shown(out, "ask --retrieve-only");
    free(out);
    out = run_safe(sb, (const char *const[]){"kb", "search", "odd", "wombat", "--json", "--top-k", "10", NULL}, "kb search --json");
    expect_json_names(sb, out);
    free(out);
    out = run_safe(sb, (const char *const[]){"ask", "--retrieve-only", "--json", "--top-k", "10", "wombat notes", NULL}, "ask --json");
    expect_json_names(sb, out);
    free(out);
}

static void test_kb_cli_usage_errors(void **state)
{
    Sandbox *sb = *state;
    TestRun r = KB(sb, "kb", "sync");
    testutil_expect(&r, 2, NULL, "name one knowledge base or pass --all");
    r = KB(sb, "kb", "sync", "x", "--all");
    testutil_expect(&r, 2, NULL, "--all");
    r = KB(sb, "kb", "search", "x");
    testutil_expect(&r, 2, NULL, "usage:");
    r = KB(sb, "kb", "list", "--folder", "d");
    testutil_expect(&r, 2, NULL, "does not apply");
    r = KB(sb, "kb", "frob");
    testutil_expect(&r, 2, NULL, "unknown subcommand 'frob'");
    r = KB(sb, "kb", "create", "bad name");
    testutil_expect(&r, 1, NULL, "may hold only letters");
    r = KB(sb, "kb", "create", "k", "--folder", "missing-dir");
    testutil_expect(&r, 1, NULL, "missing-dir: No such file or directory");
    r = KB(sb, "kb", "list");
    testutil_expect(&r, 0, "no knowledge bases yet", NULL); /* the failed create left nothing */
    r = KB(sb, "kb", "create", "k");
    testutil_expect(&r, 0, NULL, NULL);
    r = KB(sb, "kb", "search", "k", "word", "--top-k", "0");
    testutil_expect(&r, 2, NULL, "--top-k: expected a number 1..1000");
    r = KB(sb, "kb", "add", "k", "docs", "nowhere");
    testutil_expect(&r, 1, "added docs", "nowhere: No such file or directory");
    r = KB(sb, "kb", "sync", "--all");
    testutil_expect(&r, 0, "k: 0 indexed", NULL);
    r = KB(sb, "kb", "search", "--help");
    testutil_expect(&r, 0, "--top-k K", NULL);
}

/* --- kill -9 in the middle of a sync --- */

#define KILL_FILES 30

/* Number of documents committed in the database at path (0 if unreadable). */
static int committed_documents(const char *db_path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int n = 0;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM documents", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

/* Starts `kbchat kb sync k` in the sandbox with the test hook that holds
** the sync once its fifth document is committed (rag.h: it then creates
** hold.held and waits for hold, which never comes). */
static pid_t start_sync(Sandbox *sb, const char *hold)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("HOME", sb->dir, 1);
        unsetenv("XDG_DATA_HOME");
        unsetenv("XDG_CONFIG_HOME");
        unsetenv("KBCHAT_CONFIG");
        setenv("KBCHAT_TEST_HOLD_SYNC", hold, 1);
        setenv("KBCHAT_TEST_HOLD_SYNC_AFTER", "5", 1);
        if (chdir(sb->dir) != 0) _exit(127);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(sb->bin, sb->bin, "kb", "sync", "k", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void test_kb_cli_sync_killed_with_sigkill_resumes_to_the_clean_result(void **state)
{
    Sandbox *sb = *state;
    for (int i = 0; i < KILL_FILES; i++) {
        char name[64], text[256];
        snprintf(name, sizeof name, "doc%02d.%s", i, i % 5 == 0 ? "pdf" : "txt");
        snprintf(text, sizeof text, "Document %d talks about topic%d. 第%d号文件讨论知识库。\n\nA second paragraph.", i, i, i);
        char *p = testutil_join(sb->docs, name);
        if (i % 5 == 0) {
            RagFixPage pg = {text, NULL, NULL};
            RagFixPdf spec = {NULL, NULL, NULL, NULL, &pg, 1};
            assert_int_equal(ragfix_write_pdf(p, &spec), 0);
        } else {
            assert_int_equal(testutil_write_file(p, text, strlen(text)), 0);
        }
        free(p);
    }
    TestRun r = KB(sb, "kb", "create", "k", "--folder", "docs");
    testutil_expect(&r, 0, NULL, NULL);
    char *db = testutil_join(sb->dir, ".local/share/kbchat/" RAG_DB_NAME);

    char *hold = testutil_join(sb->dir, "hold"), *held = testutil_join(sb->dir, "hold.held");
    pid_t pid = start_sync(sb, hold);
    assert_true(pid > 0);
    if (!testutil_wait_file(held, 60000)) fail_msg("the sync was not held after its fifth document within 60 s");
    assert_int_equal(kill(pid, SIGKILL), 0); /* with exactly five documents committed */
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    int committed = committed_documents(db);
    assert_int_equal(committed, 5);
    free(hold), free(held);

    /* the next sync carries on with what was not committed */
    r = KB(sb, "kb", "sync", "k");
    char want_line[128];
    snprintf(want_line, sizeof want_line, "k: %d indexed, 0 updated, 0 moved, 0 removed, 0 failed, %d unchanged",
             KILL_FILES - committed, committed);
    testutil_expect(&r, 0, want_line, NULL);
    Rag *rag;
    char *data = testutil_join(sb->dir, ".local/share/kbchat");
    assert_int_equal(rag_open(&rag, data), KB_OK);
    assert_int_equal(store_integrity_check(rag), KB_OK);
    rag_close(rag);

    /* a clean sync of the same folder into another data directory */
    char *resumed = ragfix_dump_db(db);
    char *clean_home = testutil_join(sb->dir, "clean");
    mkdir(clean_home, 0700);
    sb->home = clean_home;
    r = KB(sb, "kb", "create", "k", "--folder", "docs");
    testutil_expect(&r, 0, NULL, NULL);
    r = KB(sb, "kb", "sync", "k");
    testutil_expect(&r, 0, "k: 30 indexed", NULL);
    char *clean_db = testutil_join(clean_home, ".local/share/kbchat/" RAG_DB_NAME);
    char *clean = ragfix_dump_db(clean_db);
    assert_non_null(resumed);
    assert_non_null(clean);
    assert_true(strlen(clean) > 1000);
    assert_string_equal(resumed, clean);
    g_free(resumed), g_free(clean);
    free(db), free(data), free(clean_home), free(clean_db);
}

#define SANDBOX(t) cmocka_unit_test_setup_teardown(t, sandbox_setup, sandbox_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SANDBOX(test_kb_cli_create_sync_status_files_search),
        SANDBOX(test_kb_cli_escapes_names_hostile_to_the_terminal),
        SANDBOX(test_kb_cli_usage_errors),
        SANDBOX(test_kb_cli_sync_killed_with_sigkill_resumes_to_the_clean_result),
    };
    return cmocka_run_group_tests(tests, NULL, ragfix_cleanup);
}
