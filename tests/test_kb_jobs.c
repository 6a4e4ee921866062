/*
** test_kb_jobs.c: knowledge bases managed from a chat front end (app.h:
** app/kb_jobs.c, app/kb_sync.c, app/path.c), without a terminal: Tab
** completion of typed paths; creating, adding, listing files, removing and
** deleting through a ChatApp; a background sync on its own thread and
** connection while the chat's connection reads, its note, and stopping it.
** No model is needed: keyword-only bases (embedding.model "").
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

#include "app/app.h"
#include "tests/testutil.h"

typedef struct Fix {
    char *dir;     /* the sandbox: data/, docs/ */
    char *docs;
    KbConfig cfg;
    ChatApp *app;
} Fix;

static int fix_setup(void **state)
{
    Fix *f = calloc(1, sizeof *f);
    *state = f;
    f->dir = testutil_mkdtemp();
    f->docs = testutil_join(f->dir, "docs");
    if (f->dir == NULL || mkdir(f->docs, 0700) != 0 || config_init(&f->cfg) != KB_OK) return -1;
    char *data = testutil_join(f->dir, "data");
    int rc = config_set(&f->cfg, "data_dir", data, "test");
    free(data);
    if (rc == KB_OK) rc = config_set(&f->cfg, "chunking.size", "200", "test");
    if (rc == KB_OK) rc = config_set(&f->cfg, "chunking.overlap", "20", "test");
    if (rc == KB_OK) rc = chat_open(&f->cfg, &f->app);
    return rc == KB_OK ? 0 : -1;
}

static int fix_teardown(void **state)
{
    Fix *f = *state;
    chat_close(f->app);
    config_free(&f->cfg);
    testutil_rmtree(f->dir);
    free(f->docs), free(f->dir), free(f);
    unsetenv("KBCHAT_TEST_HOLD_SYNC");
    unsetenv("KBCHAT_TEST_HOLD_SYNC_AFTER");
    return 0;
}

/* Writes dir/name with text. */
static void put(const char *dir, const char *name, const char *text)
{
    char *p = testutil_join(dir, name);
    assert_int_equal(testutil_write_file(p, text, strlen(text)), 0);
    free(p);
}

/* --- paths --- */

/* Tab completes to the longest common prefix (whole UTF-8 characters),
** adds '/' to a sole folder, lists candidates, shows hidden names only for
** a typed '.', expands ~, and leaves what matches nothing as typed. */
static void test_path_complete_like_a_shell(void **state)
{
    Fix *f = *state;
    char *alpha = testutil_join(f->docs, "alpha");
    assert_int_equal(mkdir(alpha, 0700), 0);
    put(f->docs, "alps.txt", "x");
    put(f->docs, ".hidden", "x");
    char *cjk = testutil_join(f->docs, "cjk");
    assert_int_equal(mkdir(cjk, 0700), 0);
    put(cjk, "中a.md", "x"); /* 中 and 丰 share their first two bytes */
    put(cjk, "丰b.md", "x");
    char *typed = testutil_join(f->docs, "al"), *out = NULL, list[256], *alp = testutil_join(f->docs, "alp");
    assert_int_equal(path_complete(typed, &out, list, sizeof list), 2);
    assert_string_equal(out, alp); /* the longest common prefix */
    assert_string_equal(list, "alpha/  alps.txt");
    free(out), free(typed), free(alp);

    typed = testutil_join(f->docs, "alph");
    char *want = malloc(strlen(alpha) + 2);
    sprintf(want, "%s/", alpha);
    assert_int_equal(path_complete(typed, &out, list, sizeof list), 1);
    assert_string_equal(out, want);
    assert_string_equal(list, "");
    free(out), free(typed), free(want);

    char *slash = malloc(strlen(f->docs) + 2);
    sprintf(slash, "%s/", f->docs);
    assert_int_equal(path_complete(slash, &out, list, sizeof list), 3); /* not .hidden */
    assert_string_equal(out, slash);
    assert_string_equal(list, "alpha/  alps.txt  cjk/");
    free(out), free(slash);
    typed = testutil_join(f->docs, ".");
    assert_int_equal(path_complete(typed, &out, list, sizeof list), 1);
    assert_non_null(strstr(out, "/.hidden"));
    free(out), free(typed);

    typed = malloc(strlen(cjk) + 2);
    sprintf(typed, "%s/", cjk);
    assert_int_equal(path_complete(typed, &out, list, sizeof list), 2);
    assert_string_equal(out, typed); /* not the shared half of 中 and 丰 */
    assert_string_equal(list, "中a.md  丰b.md");
    free(out), free(typed), free(cjk);

    setenv("HOME", f->dir, 1);
    assert_int_equal(path_complete("~/do", &out, list, sizeof list), 1);
    assert_string_equal(out, "~/docs/");
    free(out);
    assert_int_equal(path_complete("~", &out, list, sizeof list), 1);
    assert_string_equal(out, "~/");
    free(out);
    char *home = path_expand_home("~/docs");
    assert_string_equal(home, f->docs);
    free(home);

    assert_int_equal(path_complete("no-such-folder/x", &out, list, sizeof list), 0);
    assert_string_equal(out, "no-such-folder/x");
    free(out);
    free(alpha);
}

/* --- managing and syncing --- */

/* Waits (at most 30 s) for the background sync to finish, then collects
** its note into note. */
static void wait_collect(Fix *f, char *note, size_t n)
{
    int failed = 1;
    for (int i = 0; i < 600 && !chat_sync_collect(f->app, note, n, &failed); i++) testutil_nap_ms(50);
    assert_int_equal(failed, 0);
}

/* Bad input gets a message and changes nothing; a folder is synced on the
** sync's own connection while the chat's reads; one sync at a time; the
** base being synced cannot be deleted meanwhile; the note counts files and
** failures; the failed file is listed with its reason; a file is removed,
** then the base deleted. */
static void test_chat_kb_manage_and_sync_beside_the_chat(void **state)
{
    Fix *f = *state;
    put(f->docs, "a.txt", "Apples grow on trees.");
    put(f->docs, "b.md", "# Bananas\n\nBananas are yellow.");
    put(f->docs, "c.txt", "Cherries are red.");
    put(f->docs, "x.pdf", "this is no PDF at all");
    assert_int_equal(chat_kb_create(f->app, "bad name"), KB_EINVAL);
    assert_non_null(strstr(chat_errmsg(f->app), "may hold only letters"));
    assert_int_equal(chat_kb_create(f->app, "fruit"), KB_OK);
    assert_int_equal(chat_kb_create(f->app, "fruit"), KB_EINVAL);
    assert_non_null(strstr(chat_errmsg(f->app), "already exists"));
    assert_int_equal(chat_kb_add(f->app, "fruit", "/no/such/folder"), KB_ENOTFOUND);
    assert_non_null(strstr(chat_errmsg(f->app), "/no/such/folder"));
    assert_int_equal(chat_kb_add(f->app, "fruit", f->docs), KB_OK);

    /* the sync held (KBCHAT_TEST_HOLD_SYNC, rag.h) after its first document */
    char *hold = testutil_join(f->dir, "hold"), *held = testutil_join(f->dir, "hold.held");
    setenv("KBCHAT_TEST_HOLD_SYNC", hold, 1);
    assert_int_equal(chat_sync_start(f->app, "fruit"), KB_OK);
    if (!testutil_wait_file(held, 30000)) fail_msg("the sync was not held after its first document");
    assert_int_equal(chat_sync_start(f->app, "fruit"), KB_EINVAL);
    ChatSyncState st;
    chat_sync_state(f->app, &st);
    assert_true(st.active && st.running);
    assert_string_equal(st.kb, "fruit");
    assert_int_equal(chat_kb_delete(f->app, "fruit"), KB_EINVAL); /* wait for the sync */
    RagKbInfo *list = NULL;
    int n = 0;
    assert_int_equal(chat_list_kbs(f->app, &list, &n), KB_OK); /* the chat reads while the sync writes */
    assert_int_equal(n, 1);
    assert_int_equal(list[0].n_documents, 1);
    chat_free_kbs(list, n);
    assert_int_equal(testutil_write_file(hold, "", 0), 0); /* let it go on */
    unsetenv("KBCHAT_TEST_HOLD_SYNC");
    free(hold), free(held);
    char note[600];
    wait_collect(f, note, sizeof note);
    assert_string_equal(note, "kb fruit: 3 files indexed, 1 failed (F2 for details)");
    chat_sync_state(f->app, &st);
    assert_false(st.active);

    RagFile *files = NULL;
    assert_int_equal(chat_kb_files(f->app, "fruit", &files, &n), KB_OK);
    assert_int_equal(n, 4);
    assert_true(files[3].failed);
    assert_non_null(strstr(files[3].error, "not a PDF"));
    char *a = strdup(files[0].path);
    chat_free_files(files, n);
    int64_t removed = 0;
    assert_int_equal(chat_kb_remove(f->app, "fruit", a, &removed), KB_OK);
    assert_int_equal(removed, 1);
    free(a);
    assert_int_equal(chat_kb_files(f->app, "fruit", &files, &n), KB_OK);
    assert_int_equal(n, 3);
    chat_free_files(files, n);

    assert_int_equal(chat_sync_start(f->app, "fruit"), KB_OK); /* nothing changed: the excluded file stays out */
    wait_collect(f, note, sizeof note);
    assert_string_equal(note, "kb fruit: up to date, 3 files unchanged"); /* the failed file is not retried either */
    assert_int_equal(chat_use_kb(f->app, "fruit"), KB_OK);
    assert_int_equal(chat_kb_delete(f->app, "fruit"), KB_OK);
    assert_string_equal(conv_kb(chat_conversation(f->app)), ""); /* no longer searched */
    assert_int_equal(chat_list_kbs(f->app, &list, &n), KB_OK);
    assert_int_equal(n, 0);
}

/* chat_sync_stop ends a sync between documents: what was committed stays,
** the base is not marked synced, and the next sync does the rest. The test
** hook KBCHAT_TEST_HOLD_SYNC (rag.h) holds the sync once its third document
** is committed, so the stop lands with exactly three committed. */
static void test_chat_sync_stop_keeps_what_was_committed(void **state)
{
    Fix *f = *state;
    for (int i = 0; i < 8; i++) {
        char name[24], text[64];
        snprintf(name, sizeof name, "n%d.txt", i);
        snprintf(text, sizeof text, "Note number %d.", i);
        put(f->docs, name, text);
    }
    assert_int_equal(chat_kb_create(f->app, "notes"), KB_OK);
    assert_int_equal(chat_kb_add(f->app, "notes", f->docs), KB_OK);
    char *hold = testutil_join(f->dir, "hold"), *held = testutil_join(f->dir, "hold.held");
    setenv("KBCHAT_TEST_HOLD_SYNC", hold, 1);
    setenv("KBCHAT_TEST_HOLD_SYNC_AFTER", "3", 1);
    assert_int_equal(chat_sync_start(f->app, "notes"), KB_OK);
    if (!testutil_wait_file(held, 30000)) fail_msg("the sync was not held after its third document");
    ChatSyncState st;
    chat_sync_state(f->app, &st);
    assert_true(st.active);
    assert_int_equal(st.files_done, 3);
    assert_int_equal(st.files_total, 8);
    chat_sync_stop(f->app); /* the cancel ends the hold */
    chat_sync_state(f->app, &st);
    assert_false(st.active);
    RagKbInfo *list = NULL;
    int n = 0;
    assert_int_equal(chat_list_kbs(f->app, &list, &n), KB_OK);
    assert_int_equal(list[0].n_documents, 3);
    assert_int_equal(list[0].last_sync, 0);
    chat_free_kbs(list, n);
    unsetenv("KBCHAT_TEST_HOLD_SYNC");
    unsetenv("KBCHAT_TEST_HOLD_SYNC_AFTER");
    char note[600];
    assert_int_equal(chat_sync_start(f->app, "notes"), KB_OK);
    wait_collect(f, note, sizeof note);
    assert_int_equal(chat_list_kbs(f->app, &list, &n), KB_OK);
    assert_int_equal(list[0].n_documents, 8);
    assert_true(list[0].last_sync > 0);
    chat_free_kbs(list, n);
    free(hold), free(held);
}

#define FIX(t) cmocka_unit_test_setup_teardown(t, fix_setup, fix_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIX(test_path_complete_like_a_shell),
        FIX(test_chat_kb_manage_and_sync_beside_the_chat),
        FIX(test_chat_sync_stop_keeps_what_was_committed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
