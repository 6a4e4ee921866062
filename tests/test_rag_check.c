/*
** test_rag_check.c: knowledge.db as a file (issue 16, items 8-10), with the
** real kbchat binary on real databases made by a real `kb sync`:
**   - every file kbchat makes in data_dir is 0600 under umask 022, and an
**     older database open to others is tightened;
**   - a page of the chunks table overwritten with garbage is reported by
**     the next command (exit 1), and `kb check` reports it, rebuilds the
**     database, re-indexes the damaged documents (their chunks come back,
**     as the test's own SQLite connection read them before the damage) and
**     `kb search` finds their text again;
**   - an emptied knowledge.db after a clean close is reported, not replaced;
**   - a read-only data directory: read commands work, sync fails and says
**     why (chmod as a normal user; as root, whom chmod does not stop, a
**     read-only bind mount in a private mount namespace: `unshare -m`).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "engine/engine.h"
#include "rag/rag.h"
#include "tests/testutil.h"

#define N_DOCS 40

typedef struct Sandbox {
    char *dir, *docs, *data, *db, *cfg, *bin;
} Sandbox;

/* Document i: 60 sentences, each naming it ("wombat<i>") and numbered, so
** each of its chunks is its own and a search for wombat<i> finds only it. */
static void write_doc(const Sandbox *sb, int i)
{
    char name[64], *text = malloc(64 * 80), *p = text;
    for (int s = 0; s < 60; s++) p += sprintf(p, "Sentence %d of wombat%d tells about item%d%d. ", s, i, i, s);
    snprintf(name, sizeof name, "doc%02d.txt", i);
    char *path = testutil_join(sb->docs, name);
    assert_int_equal(testutil_write_file(path, text, strlen(text)), 0);
    free(path);
    free(text);
}

static int sandbox_setup(void **state)
{
    Sandbox *sb = calloc(1, sizeof *sb);
    umask(022); /* the usual umask: kbchat must not rely on a stricter one */
    sb->dir = testutil_mkdtemp();
    sb->docs = testutil_join(sb->dir, "docs");
    sb->data = testutil_join(sb->dir, "data");
    sb->db = testutil_join(sb->data, "knowledge.db");
    sb->cfg = testutil_join(sb->dir, "kbchat.yaml");
    sb->bin = realpath(testutil_kbchat_bin(), NULL);
    *state = sb;
    if (sb->dir == NULL || sb->bin == NULL || mkdir(sb->docs, 0755) != 0) return -1;
    char cfg[4200];
    int n = snprintf(cfg, sizeof cfg, "data_dir: %s\nembedding:\n  model: none\n", sb->data);
    for (int i = 0; i < N_DOCS; i++) write_doc(sb, i);
    return testutil_write_file(sb->cfg, cfg, (size_t)n);
}

static int sandbox_teardown(void **state)
{
    Sandbox *sb = *state;
    chmod(sb->data, 0700);
    testutil_rmtree(sb->dir);
    free(sb->dir), free(sb->docs), free(sb->data), free(sb->db), free(sb->cfg), free(sb->bin);
    free(sb);
    return 0;
}

#define KB(sb, ...) testutil_kbchat_in((sb)->bin, (sb)->dir, (sb)->dir, (const char *const[]){"--config", (sb)->cfg, __VA_ARGS__, NULL})

/* Creates knowledge base "k" over the documents and syncs it. */
static void make_kb(Sandbox *sb)
{
    TestRun r = KB(sb, "kb", "create", "k", "--folder", sb->docs);
    testutil_expect(&r, 0, "created knowledge base 'k'", NULL);
    r = KB(sb, "kb", "sync", "k");
    testutil_expect(&r, 0, "40 indexed", NULL);
}

static void assert_private(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) fail_msg("%s is missing", path);
    if ((sb.st_mode & 0777) != 0600) fail_msg("%s has mode %03o, wanted 0600", path, (unsigned)(sb.st_mode & 0777));
}

/* --- permissions --- */

static void test_files_in_data_dir_are_0600_under_umask_022(void **state)
{
    Sandbox *sb = *state;
    make_kb(sb);
    char path[4300];
    assert_private(sb->db);
    snprintf(path, sizeof path, "%s-state", sb->db);
    assert_private(path);
    snprintf(path, sizeof path, "%s-sync-1.lock", sb->db);
    assert_private(path);
    /* SQLite gives -wal and -shm the database's mode: hold a connection open to see them */
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(sb->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM kbs", NULL, NULL, NULL), SQLITE_OK);
    snprintf(path, sizeof path, "%s-wal", sb->db);
    assert_private(path);
    snprintf(path, sizeof path, "%s-shm", sb->db);
    assert_private(path);
    sqlite3_close(db);
}

static void test_a_database_open_to_others_is_tightened(void **state)
{
    Sandbox *sb = *state;
    make_kb(sb);
    assert_int_equal(chmod(sb->db, 0644), 0);
    TestRun r = KB(sb, "kb", "list");
    testutil_expect(&r, 0, "k ", NULL);
    assert_private(sb->db);
}

/* --- damage --- */

/* Opens the database at path read-only with sql prepared on it. */
static void open_query(const char *path, const char *sql, sqlite3 **db, sqlite3_stmt **st)
{
    assert_int_equal(sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(*db, sql, -1, st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(*db));
}

/* Reads each document's chunk texts in order, joined, from db: the truth
** before the damage. texts[i] is document i's (malloc'd); NULL when it
** cannot be read. */
static void read_doc_texts(const char *path, char *texts[N_DOCS])
{
    sqlite3 *db;
    sqlite3_stmt *st;
    open_query(path,
               "SELECT group_concat(text, '|') FROM (SELECT c.text FROM chunks c JOIN documents d ON d.id = c.doc_id "
               "WHERE d.path LIKE '%/doc' || printf('%02d', ?1) || '.txt' ORDER BY c.seq)",
               &db, &st);
    for (int i = 0; i < N_DOCS; i++) {
        sqlite3_bind_int(st, 1, i);
        const char *t = sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        texts[i] = t ? strdup(t) : NULL;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A leaf page of the chunks table in the middle of it (dbstat), and the
** page size. */
static void find_chunk_page(const char *path, int64_t *page, int64_t *page_size)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    open_query(path,
               "SELECT pageno, (SELECT page_size FROM pragma_page_size) FROM dbstat WHERE name = 'chunks' AND "
               "pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET "
               "(SELECT count(*) / 2 FROM dbstat WHERE name = 'chunks' AND pagetype = 'leaf')",
               &db, &st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    *page = sqlite3_column_int64(st, 0);
    *page_size = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Overwrites page `page` (1-based) of the file with garbage. */
static void smash_page(const char *path, int64_t page, int64_t page_size)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    char *junk = malloc((size_t)page_size);
    memset(junk, 0xA5, (size_t)page_size);
    assert_int_equal(fseek(f, (long)((page - 1) * page_size), SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, (size_t)page_size, f), (size_t)page_size);
    assert_int_equal(fclose(f), 0);
    free(junk);
}

static void test_damaged_chunks_are_reported_and_kb_check_repairs_them(void **state)
{
    Sandbox *sb = *state;
    char *before[N_DOCS], *after[N_DOCS];
    int64_t page, page_size;
    make_kb(sb);
    read_doc_texts(sb->db, before);
    find_chunk_page(sb->db, &page, &page_size);
    smash_page(sb->db, page, page_size);

    /* which documents lost chunks, as SQLite itself sees it */
    read_doc_texts(sb->db, after);
    int damaged = -1, n_damaged = 0;
    for (int i = 0; i < N_DOCS; i++) {
        assert_non_null(before[i]);
        if (after[i] == NULL || strcmp(after[i], before[i]) != 0) damaged = i, n_damaged++;
        free(after[i]);
    }
    assert_true(n_damaged > 0);

    TestRun r = KB(sb, "kb", "list");
    testutil_expect(&r, 1, NULL, "is damaged");
    r = KB(sb, "kb", "search", "k", "wombat1");
    testutil_expect(&r, 1, NULL, "kbchat kb check");

    char word[32], doc[32];
    snprintf(word, sizeof word, "wombat%d", damaged);
    snprintf(doc, sizeof doc, "doc%02d.txt", damaged);
    /* while another kbchat (this process) has the database open, the repair
    ** that replaces the file is refused and the file left as it is */
    Rag *other = NULL;
    assert_int_equal(rag_open_mode(&other, sb->data, RAG_OPEN_DAMAGED), KB_OK);
    struct stat st_before, st_after;
    assert_int_equal(stat(sb->db, &st_before), 0);
    r = KB(sb, "kb", "check");
    testutil_expect(&r, 1, NULL, "another kbchat has");
    assert_int_equal(stat(sb->db, &st_after), 0);
    assert_true(st_after.st_ino == st_before.st_ino && st_after.st_size == st_before.st_size);
    rag_close(other);
    r = KB(sb, "kb", "check");
    if (r.status != 0 || !strstr(r.out, "not a valid database page") || !strstr(r.out, doc) ||
        !strstr(r.out, "to be indexed again"))
        fail_msg("kb check: exit %d\n%s\n%s", r.status, r.out, r.err);
    testutil_run_free(&r);

    read_doc_texts(sb->db, after);
    for (int i = 0; i < N_DOCS; i++) {
        if (after[i] == NULL || strcmp(after[i], before[i]) != 0) fail_msg("document %d differs after kb check", i);
        free(after[i]);
        free(before[i]);
    }
    r = KB(sb, "kb", "search", "k", word);
    testutil_expect(&r, 0, doc, NULL);
    r = KB(sb, "kb", "check");
    testutil_expect(&r, 0, "knowledge.db: ok", NULL);
}

static void test_an_emptied_database_is_reported_not_replaced(void **state)
{
    Sandbox *sb = *state;
    make_kb(sb);
    assert_int_equal(truncate(sb->db, 0), 0);
    TestRun r = KB(sb, "kb", "list");
    testutil_expect(&r, 1, NULL, "is 0 bytes, but it held");
    struct stat st;
    assert_int_equal(stat(sb->db, &st), 0);
    assert_int_equal(st.st_size, 0);
}

/* --- a read-only data directory --- */

/* Runs kbchat ARGS with data_dir read-only: chmod for a normal user; for
** root a read-only bind mount of it in a private mount namespace. */
static TestRun run_read_only(Sandbox *sb, const char *const *args)
{
    if (geteuid() != 0) return testutil_kbchat_in(sb->bin, sb->dir, sb->dir, args);
    const char *argv[40] = {"unshare", "-m", "/bin/sh", "-c",
                            "mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && exec \"$@\"", sb->data,
                            sb->bin};
    int n = 7;
    for (int i = 0; args[i] && n < 38; i++) argv[n++] = args[i];
    char env_home[4200];
    snprintf(env_home, sizeof env_home, "HOME=%s", sb->dir);
    const char *env[] = {env_home, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "KBCHAT_CONFIG=", NULL};
    TestRun r = {NULL, NULL, -1};
    if (testutil_run(argv, env, sb->dir, 120, &r.out, &r.err, &r.status) != 0) fail_msg("cannot run unshare");
    if (strstr(r.err, "unshare:") || strstr(r.err, "mount:"))
        fail_msg("running as root, and a read-only mount cannot be made: %s", r.err);
    return r;
}

#define RO(sb, ...) run_read_only((sb), (const char *const[]){"--config", (sb)->cfg, __VA_ARGS__, NULL})

static void test_a_read_only_data_dir_serves_reads_and_refuses_sync(void **state)
{
    Sandbox *sb = *state;
    make_kb(sb);
    const char *why = geteuid() == 0 ? "read-only file system" : "permission denied";
    if (geteuid() != 0) {
        assert_int_equal(chmod(sb->db, 0444), 0);
        assert_int_equal(chmod(sb->data, 0555), 0);
    }
    TestRun r = RO(sb, "kb", "list");
    testutil_expect(&r, 0, "k ", NULL);
    r = RO(sb, "kb", "files", "k");
    testutil_expect(&r, 0, "doc07.txt", NULL);
    r = RO(sb, "kb", "status", "k");
    testutil_expect(&r, 0, "documents:       40", NULL);
    r = RO(sb, "kb", "search", "k", "wombat7");
    testutil_expect(&r, 0, "doc07.txt", NULL);
    r = RO(sb, "ask", "--kb", "k", "--retrieve-only", "wombat7 item73");
    testutil_expect(&r, 0, "doc07.txt", NULL);
    r = RO(sb, "kb", "sync", "k");
    testutil_expect(&r, 1, NULL, why);
    r = RO(sb, "kb", "create", "k2");
    testutil_expect(&r, 1, NULL, why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_files_in_data_dir_are_0600_under_umask_022, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_a_database_open_to_others_is_tightened, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_damaged_chunks_are_reported_and_kb_check_repairs_them, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_an_emptied_database_is_reported_not_replaced, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_a_read_only_data_dir_serves_reads_and_refuses_sync, sandbox_setup,
                                        sandbox_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
