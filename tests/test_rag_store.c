/*
** test_rag_store.c: the knowledge-base database (rag/store.c, kb.c,
** search.c, fts_cjk.c) through real SQLite files: schema version and
** migrations, refusing foreign or newer files, knowledge-base management,
** and keyword search that finds Chinese words of 1 to 4 characters and
** English words whatever their case.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "rag/store.h"
#include "tests/testutil.h"

typedef struct Fix {
    char *dir;
    Rag *rag;
} Fix;

static int fix_setup(void **state)
{
    Fix *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    *state = f;
    return f->dir ? 0 : -1;
}

static int fix_teardown(void **state)
{
    Fix *f = *state;
    rag_close(f->rag);
    testutil_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static Rag *open_rag(Fix *f)
{
    int rc = rag_open(&f->rag, f->dir);
    if (rc != KB_OK) fail_msg("rag_open: %s", rag_errmsg(f->rag));
    return f->rag;
}

/* Reads one integer with a separate plain SQLite connection. */
static int64_t raw_int(const char *db_path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_exec(const char *db_path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static const RagKbSettings default_settings = {500, 80, "", NULL};

/* --- the file --- */

static void test_store_creates_versioned_wal_database(void **state)
{
    Fix *f = *state;
    char *sub = testutil_join(f->dir, "a/b/c");
    Rag *rag;
    assert_int_equal(rag_open(&rag, sub), KB_OK);
    char *path = testutil_join(sub, RAG_DB_NAME);
    assert_string_equal(rag_db_path(rag), path);
    rag_close(rag);
    assert_int_equal(raw_int(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(path, "PRAGMA application_id"), STORE_APPLICATION_ID);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE name IN ('kbs','sources','documents',"
                                   "'chunks','chunks_fts')"),
                     5);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* opening again migrates nothing and keeps the data */
    assert_int_equal(rag_open(&rag, sub), KB_OK);
    assert_int_equal(rag_kb_create(rag, "kb1", &default_settings), KB_OK);
    rag_close(rag);
    assert_int_equal(rag_open(&rag, sub), KB_OK);
    RagKbInfo info;
    assert_int_equal(rag_kb_info(rag, "kb1", &info), KB_OK);
    rag_kb_info_clear(&info);
    rag_close(rag);
    free(path);
    free(sub);
}

static void test_store_refuses_newer_and_foreign_databases(void **state)
{
    Fix *f = *state;
    Rag *rag = open_rag(f);
    char *path = strdup(rag_db_path(rag));
    rag_close(rag);
    f->rag = NULL;
    raw_exec(path, "PRAGMA user_version = 99");
    assert_int_equal(rag_open(&f->rag, f->dir), KB_EUNSUPPORTED);
    assert_non_null(strstr(rag_errmsg(f->rag), "newer kbchat"));
    rag_close(f->rag);
    f->rag = NULL;
    remove(path);
    raw_exec(path, "CREATE TABLE photos(id INTEGER)");
    assert_int_equal(rag_open(&f->rag, f->dir), KB_EFORMAT);
    assert_non_null(strstr(rag_errmsg(f->rag), "not a kbchat database"));
    rag_close(f->rag);
    f->rag = NULL;
    remove(path);
    assert_int_equal(testutil_write_file(path, "this is not SQLite at all, just text........", 44), 0);
    assert_int_not_equal(rag_open(&f->rag, f->dir), KB_OK);
    assert_true(strlen(rag_errmsg(f->rag)) > 0);
    free(path);
}

/* --- knowledge bases --- */

static void test_store_kb_names_are_checked_and_unique(void **state)
{
    Rag *rag = open_rag(*state);
    assert_int_equal(rag_kb_create(rag, "manuals-2024_v1.0", &default_settings), KB_OK);
    assert_int_equal(rag_kb_create(rag, "manuals-2024_v1.0", &default_settings), KB_EINVAL);
    assert_non_null(strstr(rag_errmsg(rag), "already exists"));
    const char *bad[] = {"", "-x", ".hidden", "has space", "a/b", "中文"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_int_equal(rag_kb_create(rag, bad[i], &default_settings), KB_EINVAL);
    RagKbSettings s = {100, 100, "", NULL};
    assert_int_equal(rag_kb_create(rag, "ok", &s), KB_EINVAL);
    assert_int_equal(rag_kb_delete(rag, "nope"), KB_ENOTFOUND);
    assert_string_equal(rag_errmsg(rag), "no knowledge base named 'nope'");
}

static void test_store_sources_add_remove_and_exclude(void **state)
{
    Fix *f = *state;
    Rag *rag = open_rag(f);
    char *docs = testutil_join(f->dir, "docs"), *sub = testutil_join(f->dir, "docs/sub");
    char *txt = testutil_join(f->dir, "docs/a.txt"), *img = testutil_join(f->dir, "docs/a.png");
    assert_int_equal(mkdir(docs, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    testutil_write_file(txt, "x", 1);
    testutil_write_file(img, "x", 1);
    assert_int_equal(rag_kb_create(rag, "k", &default_settings), KB_OK);
    assert_int_equal(rag_kb_add(rag, "k", docs), KB_OK);
    assert_int_equal(rag_kb_add(rag, "k", docs), KB_OK); /* twice is fine */
    assert_int_equal(rag_kb_add(rag, "k", img), KB_EUNSUPPORTED);
    assert_int_equal(rag_kb_add(rag, "k", "/no/such/dir"), KB_ENOTFOUND);
    assert_int_equal(rag_kb_add(rag, "none", docs), KB_ENOTFOUND);
    int64_t n = -1;
    assert_int_equal(rag_kb_remove(rag, "k", sub, &n), KB_OK); /* inside a source: excluded */
    assert_int_equal(n, 0);
    RagKbInfo info;
    assert_int_equal(rag_kb_info(rag, "k", &info), KB_OK);
    assert_int_equal(info.n_sources, 1);
    assert_string_equal(info.sources[0], docs);
    assert_int_equal(info.n_excluded, 1);
    assert_string_equal(info.excluded[0], sub);
    assert_int_equal(info.chunk_size, 500);
    assert_int_equal(info.chunk_overlap, 80);
    rag_kb_info_clear(&info);
    assert_int_equal(rag_kb_add(rag, "k", sub), KB_OK); /* lifts the exclusion */
    assert_int_equal(rag_kb_info(rag, "k", &info), KB_OK);
    assert_int_equal(info.n_excluded, 0);
    assert_int_equal(info.n_sources, 2);
    rag_kb_info_clear(&info);
    assert_int_equal(rag_kb_remove(rag, "k", "/elsewhere", &n), KB_ENOTFOUND);
    assert_int_equal(rag_kb_remove(rag, "k", docs, &n), KB_OK);
    RagKbInfo *list;
    int nl;
    assert_int_equal(rag_kb_list(rag, &list, &nl), KB_OK);
    assert_int_equal(nl, 1);
    assert_string_equal(list[0].name, "k");
    rag_kb_info_free_list(list, nl);
    free(docs), free(sub), free(txt), free(img);
}

/* --- documents and search --- */

/* Stores one document with the given chunk texts (page i+1 each). */
static void put_doc(Rag *rag, const char *kb_name, const char *path, const char *const *texts, int n)
{
    int64_t kb;
    assert_int_equal(store_kb_id(rag, kb_name, &kb), KB_OK);
    Chunk *c = calloc((size_t)n, sizeof *c);
    for (int i = 0; i < n; i++) {
        c[i].text = (char *)texts[i];
        c[i].text_len = strlen(texts[i]);
        c[i].page = i + 1;
        c[i].section = "S";
    }
    StoreDocInfo info = {path, 10, 20, "abc", n, "T", "A", NULL};
    assert_int_equal(store_put_document(rag, kb, &info, c, n), KB_OK);
    free(c);
}

/* Searches and returns the number of hits; *page gets the first hit's page. */
static int search(Rag *rag, const char *kb, const char *q, int *page)
{
    RagHit *h;
    int n;
    assert_int_equal(rag_search(rag, kb, q, 10, &h, &n), KB_OK);
    *page = n ? h[0].page : 0;
    for (int i = 0; i < n; i++) assert_int_equal(h[i].rank, i + 1);
    for (int i = 1; i < n; i++) assert_true(h[i - 1].score >= h[i].score);
    rag_hits_free(h, n);
    return n;
}

static void test_store_search_finds_chinese_words_of_one_to_four_characters(void **state)
{
    Rag *rag = open_rag(*state);
    assert_int_equal(rag_kb_create(rag, "zh", &default_settings), KB_OK);
    const char *texts[] = {"本手册介绍水泵的安装和日常维护。", "知识库检索需要中文分词，我们使用二元组。",
                           "保修期为两年，自购买之日起计算。"};
    put_doc(rag, "zh", "/x/zh.pdf", texts, 3);
    int page;
    assert_int_equal(search(rag, "zh", "水泵", &page), 1);
    assert_int_equal(page, 1);
    assert_int_equal(search(rag, "zh", "检索", &page), 1);
    assert_int_equal(page, 2);
    assert_int_equal(search(rag, "zh", "知识库", &page), 1);
    assert_int_equal(page, 2);
    assert_int_equal(search(rag, "zh", "中文分词", &page), 1);
    assert_int_equal(page, 2);
    assert_int_equal(search(rag, "zh", "保修期", &page), 1);
    assert_int_equal(page, 3);
    /* one character, also at the end of a run */
    assert_int_equal(search(rag, "zh", "组", &page), 1);
    assert_int_equal(page, 2);
    /* the characters in another order are not the word */
    assert_int_equal(search(rag, "zh", "泵水", &page), 0);
    assert_int_equal(search(rag, "zh", "库识", &page), 0);
    /* two words, both required; a missing one falls back to either */
    assert_int_equal(search(rag, "zh", "安装 维护", &page), 1);
    assert_int_equal(search(rag, "zh", "保修期 火箭", &page), 1);
    assert_int_equal(page, 3);
}

static void test_store_search_english_ignores_case_and_query_syntax(void **state)
{
    Rag *rag = open_rag(*state);
    assert_int_equal(rag_kb_create(rag, "en", &default_settings), KB_OK);
    assert_int_equal(rag_kb_create(rag, "other", &default_settings), KB_OK);
    const char *texts[] = {"The SQLite database stores every chunk.", "Impeller blocked by Limescale deposits.",
                           "ＦＵＬＬ width letters and 中文Mixed text."};
    put_doc(rag, "en", "/x/en.pdf", texts, 3);
    const char *other[] = {"limescale in another knowledge base"};
    put_doc(rag, "other", "/y/o.txt", other, 1);
    int page;
    assert_int_equal(search(rag, "en", "sqlite", &page), 1);
    assert_int_equal(page, 1);
    assert_int_equal(search(rag, "en", "LIMESCALE", &page), 1);
    assert_int_equal(page, 2);
    assert_int_equal(search(rag, "en", "full", &page), 1);
    assert_int_equal(search(rag, "en", "中文mixed", &page), 1);
    assert_int_equal(search(rag, "en", "\"NOR\" -zz (", &page), 0);
    assert_int_equal(search(rag, "en", "\"SQLite\" -database(", &page), 1);
    assert_int_equal(search(rag, "en", "，。", &page), 0);
    RagHit *h;
    int n;
    assert_int_equal(rag_search(rag, "en", "x", 0, &h, &n), KB_EINVAL);
    assert_int_equal(rag_search(rag, "missing", "x", 3, &h, &n), KB_ENOTFOUND);
}

/* Replacing and deleting documents keeps the FTS index in step. */
static void test_store_replace_and_delete_keep_index_consistent(void **state)
{
    Rag *rag = open_rag(*state);
    assert_int_equal(rag_kb_create(rag, "k", &default_settings), KB_OK);
    const char *v1[] = {"old apple text", "more apple"};
    const char *v2[] = {"new banana text"};
    put_doc(rag, "k", "/d/a.txt", v1, 2);
    put_doc(rag, "k", "/d/a.txt", v2, 1);
    int page;
    assert_int_equal(search(rag, "k", "apple", &page), 0);
    assert_int_equal(search(rag, "k", "banana", &page), 1);
    assert_int_equal(store_integrity_check(rag), KB_OK);
    RagFile *files;
    int n;
    assert_int_equal(rag_kb_files(rag, "k", 0, &files, &n), KB_OK);
    assert_int_equal(n, 1);
    assert_int_equal(files[0].chunks, 1);
    assert_string_equal(files[0].title, "T");
    rag_files_free(files, n);
    assert_int_equal(rag_kb_delete(rag, "k"), KB_OK);
    assert_int_equal(store_integrity_check(rag), KB_OK);
    assert_int_equal(raw_int(rag_db_path(rag), "SELECT count(*) FROM chunks"), 0);
}

#define FIX(t) cmocka_unit_test_setup_teardown(t, fix_setup, fix_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIX(test_store_creates_versioned_wal_database),
        FIX(test_store_refuses_newer_and_foreign_databases),
        FIX(test_store_kb_names_are_checked_and_unique),
        FIX(test_store_sources_add_remove_and_exclude),
        FIX(test_store_search_finds_chinese_words_of_one_to_four_characters),
        FIX(test_store_search_english_ignores_case_and_query_syntax),
        FIX(test_store_replace_and_delete_keep_index_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
