/*
** bench_rag.c: knowledge-base indexing speed, one core.
**
**   1. extract + chunk + store /usr/share/R/doc/manual/fullrefman.pdf (Debian
**      package r-doc-pdf, 2415 pages; not a build dependency: the figure is
**      skipped when it is absent) through rag_sync, in pages/s. Goal: >= 150.
**   2. re-sync of an unchanged folder of 1000 text files, best of 3, in
**      seconds. Goal: < 1 s.
** Everything runs in a temporary directory removed at the end. `make bench`
** runs it; no test depends on these numbers.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "engine/engine.h"
#include "rag/rag.h"

#define REFMAN "/usr/share/R/doc/manual/fullrefman.pdf"
#define N_FILES 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(Rag *rag, const char *what)
{
    fprintf(stderr, "bench_rag: %s: %s\n", what, rag ? rag_errmsg(rag) : "failed");
    exit(1);
}

/* Opens a fresh database in dir/data with knowledge base `name` over src. */
static Rag *open_kb(const char *dir, const char *name, const char *src)
{
    char *data = g_build_filename(dir, "data", NULL);
    Rag *rag;
    if (rag_open(&rag, data) != KB_OK) die(rag, "rag_open");
    RagKbSettings s = {500, 80, "", NULL};
    if (rag_kb_create(rag, name, &s) != KB_OK) die(rag, "create");
    if (rag_kb_add(rag, name, src) != KB_OK) die(rag, "add");
    g_free(data);
    return rag;
}

static void bench_refman(const char *dir)
{
    if (!g_file_test(REFMAN, G_FILE_TEST_EXISTS)) {
        printf("rag: %s not found (apt-get install r-doc-pdf): PDF indexing speed skipped\n", REFMAN);
        return;
    }
    Rag *rag = open_kb(dir, "refman", REFMAN);
    RagSyncStats st;
    double t0 = now_s();
    if (rag_sync(rag, "refman", NULL, &st) != KB_OK) die(rag, "sync");
    double t = now_s() - t0;
    printf("rag: fullrefman.pdf: %lld pages, %lld chunks extracted, chunked and stored in %.2f s = %.0f pages/s "
           "(goal >= 150)\n",
           (long long)st.pages, (long long)st.chunks, t, (double)st.pages / t);
    rag_close(rag);
}

static void bench_resync(const char *dir)
{
    char *docs = g_build_filename(dir, "docs", NULL);
    for (int i = 0; i < N_FILES; i++) {
        char *sub = g_strdup_printf("%s/d%02d", docs, i / 50);
        g_mkdir_with_parents(sub, 0700);
        char *path = g_strdup_printf("%s/note%04d.txt", sub, i);
        GString *text = g_string_new(NULL);
        for (int k = 0; k < 20; k++)
            g_string_append_printf(text, "Note %d line %d: 知识库文件内容，用于测试同步速度。 words words.\n", i, k);
        g_file_set_contents(path, text->str, (gssize)text->len, NULL);
        g_string_free(text, TRUE);
        g_free(path);
        g_free(sub);
    }
    char *sub = g_build_filename(dir, "r", NULL);
    g_mkdir_with_parents(sub, 0700);
    Rag *rag = open_kb(sub, "notes", docs);
    RagSyncStats st;
    double t0 = now_s();
    if (rag_sync(rag, "notes", NULL, &st) != KB_OK) die(rag, "sync");
    double first = now_s() - t0, best = 1e9;
    for (int r = 0; r < 3; r++) {
        t0 = now_s();
        if (rag_sync(rag, "notes", NULL, &st) != KB_OK) die(rag, "re-sync");
        double t = now_s() - t0;
        if (t < best) best = t;
        if (st.unchanged != N_FILES) die(NULL, "re-sync found changes");
    }
    printf("rag: folder of %d text files: first sync %.2f s, unchanged re-sync %.3f s (goal < 1 s)\n", N_FILES, first,
           best);
    rag_close(rag);
    g_free(sub);
    g_free(docs);
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv;
    char *dir = g_dir_make_tmp("kbchat-bench-XXXXXX", NULL);
    if (dir == NULL) die(NULL, "temporary directory");
    bench_refman(dir);
    bench_resync(dir);
    char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_rag: could not remove %s\n", dir);
    g_free(cmd);
    g_free(dir);
    return 0;
}
