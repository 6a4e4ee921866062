/*
** test_rag_embed.c: chunk vectors (rag/embed.c, the vector parts of sync.c
** and store.c) with the shared tiny-bert models: identities, normalised
** and batch-independent vectors, vectors stored by sync equal to a fresh
** embedding and to `kbchat embed`, a knowledge base pinned to its model
** (another model refused with a message, `rebuild` re-embeds, keyword
** search meanwhile), keyword-only knowledge bases, an interrupted rebuild
** resumed, the chunker's token cap, "chat" embeddings from a decoder, and
** the schema migration from version 1.
*/
#include <math.h>
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
#include "tests/ragfix.h"
#include "tests/testutil.h"

typedef struct Fix {
    char *dir, *docs, *data;
    char *f16, *q8;  /* model paths */
    Rag *rag;
    RagEmbedder *e16, *e8;
} Fix;

static int fix_setup(void **state)
{
    Fix *f = calloc(1, sizeof *f);
    char err[512];
    *state = f;
    f->dir = testutil_mkdtemp();
    f->docs = testutil_join(f->dir, "docs");
    f->data = testutil_join(f->dir, "data");
    f->f16 = testutil_data_path("models/tiny-bert-F16.gguf");
    f->q8 = testutil_data_path("models/tiny-bert-Q8_0.gguf");
    int rc = mkdir(f->docs, 0700) == 0 ? KB_OK : KB_EIO;
    if (rc == KB_OK) rc = rag_embedder_open(f->f16, 2, &f->e16, err, sizeof err);
    if (rc == KB_OK) rc = rag_embedder_open(f->q8, 2, &f->e8, err, sizeof err);
    if (rc == KB_OK) rc = rag_open(&f->rag, f->data);
    return rc == KB_OK ? 0 : -1;
}

static int fix_teardown(void **state)
{
    Fix *f = *state;
    rag_close(f->rag);
    rag_embedder_close(f->e16);
    rag_embedder_close(f->e8);
    testutil_rmtree(f->dir);
    free(f->dir), free(f->docs), free(f->data), free(f->f16), free(f->q8);
    free(f);
    return 0;
}

static void put(Fix *f, const char *name, const char *text)
{
    char *p = testutil_join(f->docs, name);
    assert_int_equal(testutil_write_file(p, text, strlen(text)), 0);
    free(p);
}

/* Some documents: a few chunks of 100 characters each. */
static void put_docs(Fix *f)
{
    put(f, "pump.txt", "The centrifugal pump must be primed before the first start. Fill the casing with water. "
                       "Clean the strainer every month to keep the flow steady. The warranty covers two years.");
    put(f, "说明.md", "# 离线\n\n本产品支持离线知识库问答，所有文档都保存在本地，不需要连接任何网络。检索时先把问题切成二元组，再按相关度排序。");
}

/* Creates knowledge base name over f->docs pinned to e (NULL: none). */
static void create_kb(Fix *f, const char *name, RagEmbedder *e)
{
    RagKbSettings s = {100, 20, e ? "model" : "", e ? rag_embedder_id(e) : NULL};
    assert_int_equal(rag_kb_create(f->rag, name, &s), KB_OK);
    assert_int_equal(rag_kb_add(f->rag, name, f->docs), KB_OK);
}

static int64_t raw_count(Fix *f, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(f->rag->db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void sync_with(Fix *f, const char *name, RagEmbedder *e, RagSyncStats *st)
{
    RagSyncOptions opt = {.embedder = e};
    int rc = rag_sync(f->rag, name, &opt, st);
    if (rc != KB_OK) fail_msg("sync: %s", rag_errmsg(f->rag));
}

/* --- identity and vectors --- */

static void test_embed_identity_tells_models_apart(void **state)
{
    Fix *f = *state;
    RagEmbedId a, b, c;
    char err[256], buf[320];
    assert_int_equal(rag_embed_identify(f->f16, &a, err, sizeof err), KB_OK);
    assert_int_equal(rag_embed_identify(f->f16, &b, err, sizeof err), KB_OK);
    assert_int_equal(rag_embed_identify(f->q8, &c, err, sizeof err), KB_OK);
    assert_true(rag_embed_id_equal(&a, &b));
    assert_false(rag_embed_id_equal(&a, &c));
    assert_string_equal(a.file, "tiny-bert-F16.gguf");
    assert_int_equal(a.dim, 128);
    assert_int_equal(a.size, 9507296);
    assert_int_equal(strlen(a.hash), 64);
    assert_string_not_equal(a.hash, c.hash);
    assert_string_equal(rag_embed_id_describe(&a, buf, sizeof buf), "tiny-bert-F16.gguf (128 dims)");
    assert_true(rag_embed_id_equal(&a, rag_embedder_id(f->e16)));
    assert_int_equal(rag_embedder_max_tokens(f->e16), 510); /* 512 less [CLS] and [SEP] */
    char *missing = testutil_join(f->dir, "missing.gguf");
    assert_int_not_equal(rag_embed_identify(missing, &a, err, sizeof err), KB_OK);
    assert_non_null(strstr(err, "missing.gguf"));
    free(missing);
}

static void test_embed_vectors_are_normalised_and_batch_independent(void **state)
{
    Fix *f = *state;
    enum { N = 20 }; /* more than one batch */
    const char *texts[N];
    size_t lens[N];
    char buf[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(buf[i], sizeof buf[i], "sentence number %d about pumps 第%d句", i, i);
        texts[i] = buf[i];
        lens[i] = strlen(buf[i]);
    }
    texts[7] = texts[3], lens[7] = lens[3];
    float *all = malloc(N * 128 * sizeof *all), one[128];
    assert_int_equal(rag_embed_texts(f->e16, texts, lens, N, all), KB_OK);
    for (int i = 0; i < N; i++) {
        double norm = 0;
        for (int d = 0; d < 128; d++) norm += (double)all[i * 128 + d] * all[i * 128 + d];
        assert_true(fabs(norm - 1.0) < 1e-5);
        assert_int_equal(rag_embed_texts(f->e16, &texts[i], &lens[i], 1, one), KB_OK);
        assert_memory_equal(one, all + i * 128, sizeof one);
    }
    assert_memory_equal(all + 3 * 128, all + 7 * 128, 128 * sizeof(float));
    assert_memory_not_equal(all + 3 * 128, all + 4 * 128, 128 * sizeof(float));
    free(all);
}

/* --- sync stores vectors --- */

static void test_embed_sync_stores_vectors_equal_to_a_fresh_embedding(void **state)
{
    Fix *f = *state;
    put_docs(f);
    create_kb(f, "kb", f->e16);
    RagSyncStats st;
    sync_with(f, "kb", f->e16, &st);
    assert_true(st.chunks >= 3);
    assert_int_equal(st.vectors, st.chunks);
    RagKbInfo info;
    assert_int_equal(rag_kb_info(f->rag, "kb", &info), KB_OK);
    assert_int_equal(info.n_vectors, info.n_chunks);
    assert_string_equal(info.embed_id.file, "tiny-bert-F16.gguf");
    rag_kb_info_clear(&info);
    /* every stored vector, read back, is what embedding its text gives now */
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(f->rag->db, "SELECT c.text, v.vec FROM chunks c JOIN vectors v ON v.chunk_id = c.id",
                                        -1, &s, NULL), SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(s, 0);
        size_t len = strlen(text);
        float fresh[128];
        assert_int_equal(sqlite3_column_bytes(s, 1), (int)sizeof fresh);
        assert_int_equal(rag_embed_texts(f->e16, &text, &len, 1, fresh), KB_OK);
        assert_memory_equal(sqlite3_column_blob(s, 1), fresh, sizeof fresh);
        rows++;
    }
    sqlite3_finalize(s);
    assert_int_equal(rows, st.chunks);
    /* an unchanged re-sync embeds nothing */
    sync_with(f, "kb", f->e16, &st);
    assert_int_equal(st.vectors, 0);
}

/* Parses the floats `kbchat embed` printed. */
static int parse_floats(const char *s, float *v, int max)
{
    int n = 0;
    char *end;
    for (double x = strtod(s, &end); end != s && n < max; x = strtod(s, &end)) {
        v[n++] = (float)x;
        s = end;
    }
    return n;
}

static void test_embed_stored_vectors_equal_kbchat_embed(void **state)
{
    Fix *f = *state;
    put_docs(f);
    create_kb(f, "kb", f->e16);
    sync_with(f, "kb", f->e16, NULL);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(f->rag->db, "SELECT c.text, v.vec FROM chunks c JOIN vectors v ON v.chunk_id = c.id "
                                        "ORDER BY c.id LIMIT 2", -1, &s, NULL), SQLITE_OK);
    for (int row = 0; sqlite3_step(s) == SQLITE_ROW; row++) {
        const char *argv[] = {testutil_kbchat_bin(), "embed", "-m", f->f16, (const char *)sqlite3_column_text(s, 0), NULL};
        const char *env[] = {"KBCHAT_CONFIG=", NULL};
        char *out, *err;
        int status;
        assert_int_equal(testutil_run(argv, env, NULL, 60, &out, &err, &status), 0);
        if (status != 0) fail_msg("kbchat embed: %s", err);
        float printed[130];
        assert_int_equal(parse_floats(out, printed, 130), 128);
        const float *stored = sqlite3_column_blob(s, 1);
        for (int d = 0; d < 128; d++) assert_true(fabsf(printed[d] - stored[d]) <= 1e-6f + 1e-6f * fabsf(stored[d]));
        free(out), free(err);
    }
    sqlite3_finalize(s);
}

/* --- pinning --- */

static void test_embed_knowledge_base_is_pinned_and_rebuild_re_embeds(void **state)
{
    Fix *f = *state;
    put_docs(f);
    create_kb(f, "kb", f->e16);
    sync_with(f, "kb", f->e16, NULL);
    assert_int_equal(rag_kb_check_model(f->rag, "kb", f->e16), KB_OK);
    /* another model: refused, with what to do */
    assert_int_equal(rag_kb_check_model(f->rag, "kb", f->e8), KB_EUNSUPPORTED);
    const char *msg = rag_errmsg(f->rag);
    assert_non_null(strstr(msg, "tiny-bert-F16.gguf (128 dims)"));
    assert_non_null(strstr(msg, "tiny-bert-Q8_0.gguf (128 dims)"));
    assert_non_null(strstr(msg, "kbchat kb rebuild kb"));
    RagQuery q = {"离线知识库", RAG_MODE_VECTOR, 3, 0, 0, f->e8};
    RagHit *h;
    int n;
    RagSearchInfo info;
    assert_int_equal(rag_retrieve(f->rag, "kb", &q, &h, &n, &info), KB_EUNSUPPORTED);
    q.mode = RAG_MODE_HYBRID; /* keyword search keeps working */
    assert_int_equal(rag_retrieve(f->rag, "kb", &q, &h, &n, &info), KB_OK);
    assert_int_equal(info.mode, RAG_MODE_KEYWORD);
    assert_non_null(strstr(info.note, "kb rebuild"));
    assert_true(n >= 1);
    assert_int_equal(h[0].vector_rank, 0);
    rag_hits_free(h, n);
    /* a sync with the other model indexes a new file but makes no vectors, and says so */
    put(f, "new.txt", "A new note about the drain plug.");
    sync_with(f, "kb", f->e8, NULL);
    assert_true(raw_count(f, "SELECT count(*) FROM chunks") > raw_count(f, "SELECT count(*) FROM vectors"));
    /* rebuild: pinned to Q8_0, every chunk embedded with it */
    RagSyncOptions opt = {.embedder = f->e8};
    RagSyncStats st;
    assert_int_equal(rag_kb_rebuild(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(st.vectors, raw_count(f, "SELECT count(*) FROM chunks"));
    assert_int_equal(raw_count(f, "SELECT count(*) FROM vectors"), raw_count(f, "SELECT count(*) FROM chunks"));
    assert_int_equal(rag_kb_check_model(f->rag, "kb", f->e8), KB_OK);
    assert_int_equal(rag_kb_check_model(f->rag, "kb", f->e16), KB_EUNSUPPORTED);
    q.mode = RAG_MODE_VECTOR;
    assert_int_equal(rag_retrieve(f->rag, "kb", &q, &h, &n, &info), KB_OK);
    assert_int_equal(n, 3);
    rag_hits_free(h, n);
    /* rebuild with no model: keyword only */
    opt.embedder = NULL;
    assert_int_equal(rag_kb_rebuild(f->rag, "kb", &opt, &st), KB_OK);
    assert_int_equal(raw_count(f, "SELECT count(*) FROM vectors"), 0);
    assert_int_equal(rag_kb_check_model(f->rag, "kb", NULL), KB_EUNSUPPORTED);
    assert_non_null(strstr(rag_errmsg(f->rag), "has no vectors"));
}

/* Collects warnings. */
static void on_warning(const RagProgress *p, void *user)
{
    if (p->event == RAG_EV_WARNING) g_string_append_printf(user, "%s\n", p->message);
}

static void test_embed_keyword_only_knowledge_base(void **state)
{
    Fix *f = *state;
    put_docs(f);
    create_kb(f, "kw", NULL);
    GString *warnings = g_string_new(NULL);
    RagSyncOptions opt = {.progress = on_warning, .user = warnings};
    assert_int_equal(rag_sync(f->rag, "kw", &opt, NULL), KB_OK);
    assert_string_equal(warnings->str, ""); /* keyword-only and no model: nothing to say */
    opt.embedder = f->e16;
    put(f, "more.txt", "More text.");
    assert_int_equal(rag_sync(f->rag, "kw", &opt, NULL), KB_OK);
    assert_non_null(strstr(warnings->str, "no vectors made"));
    g_string_free(warnings, TRUE);
    assert_int_equal(raw_count(f, "SELECT count(*) FROM vectors"), 0);
    RagQuery q = {"离线使用需要联网吗", RAG_MODE_HYBRID, 3, 0, 1, f->e16};
    RagHit *h;
    int n;
    RagSearchInfo info;
    assert_int_equal(rag_retrieve(f->rag, "kw", &q, &h, &n, &info), KB_OK);
    assert_int_equal(info.mode, RAG_MODE_KEYWORD);
    assert_non_null(strstr(info.note, "built without an embedding model"));
    assert_true(n >= 1);
    assert_non_null(strstr(h[0].text, "离线"));
    rag_hits_free(h, n);
}

static void test_embed_interrupted_rebuild_resumes(void **state)
{
    Fix *f = *state;
    for (int i = 0; i < 60; i++) {
        char name[32], text[512];
        snprintf(name, sizeof name, "n%02d.txt", i);
        snprintf(text, sizeof text, "Note %d. The first paragraph talks about topic %d in some detail, long enough.\n\n"
                 "The second paragraph of note %d adds more words. 第%d号笔记的第二段。\n\nAnd a third one.", i, i, i, i);
        put(f, name, text);
    }
    create_kb(f, "big", f->e16);
    sync_with(f, "big", NULL, NULL); /* keyword index only: the vectors come from rebuild */
    int64_t chunks = raw_count(f, "SELECT count(*) FROM chunks");
    assert_true(chunks > 64); /* more than one committed batch */
    RagSyncOptions opt = {.embedder = f->e8};
    RagSyncStats st;
    testutil_fail_alloc_after(0);
    assert_int_equal(rag_kb_rebuild(f->rag, "big", &opt, &st), KB_OK);
    long allocs = testutil_alloc_count();
    opt.embedder = f->e16; /* back: starts over */
    testutil_fail_alloc_after(allocs * 3 / 4);
    int rc = rag_kb_rebuild(f->rag, "big", &opt, &st);
    testutil_fail_alloc_after(0);
    assert_int_equal(rc, KB_ENOMEM);
    int64_t done = raw_count(f, "SELECT count(*) FROM vectors");
    assert_true(done > 0 && done < chunks);
    assert_int_equal(rag_kb_rebuild(f->rag, "big", &opt, &st), KB_OK);
    assert_int_equal(st.vectors, chunks - done); /* only what was missing */
    assert_int_equal(raw_count(f, "SELECT count(*) FROM vectors"), chunks);
    assert_int_equal(store_integrity_check(f->rag), KB_OK);
}

/* A long document's vectors are committed in batches after it: an
** interrupted sync keeps the document and the batches done, and the next
** sync (to which the document is unchanged) embeds the rest. */
static void test_embed_interrupted_sync_completes_the_vectors(void **state)
{
    Fix *f = *state;
    GString *t = g_string_new(NULL);
    for (int i = 0; i < 200; i++) g_string_append_printf(t, "Sentence %d of a long manual about valves and pumps. ", i);
    put(f, "long.txt", t->str);
    g_string_free(t, TRUE);
    create_kb(f, "probe", f->e16);
    testutil_fail_alloc_after(0);
    sync_with(f, "probe", f->e16, NULL);
    long allocs = testutil_alloc_count();
    int64_t chunks = raw_count(f, "SELECT count(*) FROM vectors");
    assert_true(chunks > 2 * 64);
    assert_int_equal(rag_kb_delete(f->rag, "probe"), KB_OK);
    create_kb(f, "kb", f->e16);
    testutil_fail_alloc_after(allocs * 7 / 10);
    RagSyncOptions opt = {.embedder = f->e16};
    int rc = rag_sync(f->rag, "kb", &opt, NULL);
    testutil_fail_alloc_after(0);
    assert_int_equal(rc, KB_ENOMEM);
    assert_int_equal(raw_count(f, "SELECT count(*) FROM documents"), 1); /* committed before its vectors */
    int64_t done = raw_count(f, "SELECT count(*) FROM vectors");
    assert_true(done > 0 && done < chunks);
    RagSyncStats st;
    sync_with(f, "kb", f->e16, &st);
    assert_int_equal(st.unchanged, 1);
    assert_int_equal(st.vectors, chunks - done);
    assert_int_equal(raw_count(f, "SELECT count(*) FROM vectors"), chunks);
}

static void test_embed_chunks_fit_the_model(void **state)
{
    Fix *f = *state;
    GString *t = g_string_new(NULL);
    for (int i = 0; i < 400; i++) g_string_append(t, "知识库检索问答，");
    put(f, "long.txt", t->str);
    g_string_free(t, TRUE);
    RagKbSettings s = {20000, 0, "model", rag_embedder_id(f->e16)};
    assert_int_equal(rag_kb_create(f->rag, "long", &s), KB_OK);
    assert_int_equal(rag_kb_add(f->rag, "long", f->docs), KB_OK);
    sync_with(f, "long", f->e16, NULL);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(f->rag->db, "SELECT text FROM chunks", -1, &st, NULL), SQLITE_OK);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *x = (const char *)sqlite3_column_text(st, 0);
        assert_true(rag_embedder_count_tokens(x, strlen(x), f->e16) <= 510);
        n++;
    }
    sqlite3_finalize(st);
    assert_true(n >= 7); /* 3200 characters of one token each */
}

/* --- "chat": a decoder's hidden states --- */

static void test_embed_chat_model_vectors_and_cache(void **state)
{
    (void)state;
    char *path = testutil_data_path("models/aidreams260K-F32.gguf"), err[512];
    KbModelParams p = {0, 0, 1, 0};
    KbModel *m;
    RagEmbedder *e;
    assert_int_equal(model_open(path, &p, &m, err, sizeof err), KB_OK);
    assert_int_equal(rag_embedder_wrap(m, path, &e, err, sizeof err), KB_OK);
    assert_int_equal(rag_embedder_id(e)->dim, 64);
    assert_int_equal(rag_embedder_max_tokens(e), 127); /* 128 less BOS */
    const char *texts[] = {"Once upon a time", "Once upon a time", "vectors unfold"};
    size_t lens[] = {16, 16, 14};
    float v[3 * 64];
    assert_int_equal(rag_embed_texts(e, texts, lens, 3, v), KB_OK);
    double norm = 0;
    for (int d = 0; d < 64; d++) norm += (double)v[d] * v[d];
    assert_true(fabs(norm - 1) < 1e-5);
    assert_memory_equal(v, v + 64, 64 * sizeof(float));
    assert_memory_not_equal(v, v + 128, 64 * sizeof(float));
    assert_int_equal(model_n_past(m), 0); /* the cache holds no conversation */
    /* generation after embedding is what a fresh model generates */
    int32_t bos = 1, out1[8], out2[8];
    for (int run = 0; run < 2; run++) {
        int32_t *out = run ? out2 : out1, t = bos;
        float *logits = malloc(512 * sizeof *logits);
        model_reset(m);
        for (int i = 0; i < 8; i++) {
            assert_int_equal(model_decode(m, &t, 1, logits, false), KB_OK);
            int32_t best = 0;
            for (int j = 1; j < 512; j++)
                if (logits[j] > logits[best]) best = j;
            out[i] = t = best;
        }
        free(logits);
        if (run == 0) assert_int_equal(rag_embed_texts(e, texts, lens, 1, v), KB_OK);
    }
    assert_memory_equal(out1, out2, sizeof out1);
    rag_embedder_close(e);
    model_close(m);
    /* rag_embedder_open of a chat model owns it */
    assert_int_equal(rag_embedder_open(path, 1, &e, err, sizeof err), KB_OK);
    assert_int_equal(rag_embed_texts(e, texts, lens, 1, v + 64), KB_OK);
    assert_memory_equal(v, v + 64, 64 * sizeof(float));
    rag_embedder_close(e);
    free(path);
}

/* --- schema --- */

static void test_embed_schema_migrates_from_version_1(void **state)
{
    Fix *f = *state;
    char *dir = testutil_join(f->dir, "old"), *path = testutil_join(dir, RAG_DB_NAME);
    mkdir(dir, 0700);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(fts_cjk_register(db), SQLITE_OK);
    /* the shipped version 1 (rag/store.c, migrations[1]), abridged to what a row needs */
    const char *v1 =
        "PRAGMA application_id = 1801610088;"
        "CREATE TABLE kbs(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, chunk_size INTEGER NOT NULL,"
        " chunk_overlap INTEGER NOT NULL, embed_model TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL,"
        " last_sync INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE sources(id INTEGER PRIMARY KEY, kb_id INTEGER NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,"
        " path TEXT NOT NULL, exclude INTEGER NOT NULL DEFAULT 0, UNIQUE(kb_id, path));"
        "CREATE TABLE documents(id INTEGER PRIMARY KEY, kb_id INTEGER NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,"
        " path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL,"
        " pages INTEGER NOT NULL DEFAULT 0, title TEXT NOT NULL DEFAULT '', author TEXT NOT NULL DEFAULT '',"
        " failed INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', indexed INTEGER NOT NULL,"
        " UNIQUE(kb_id, path));"
        "CREATE TABLE chunks(id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
        " seq INTEGER NOT NULL, page INTEGER NOT NULL, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,"
        " section TEXT NOT NULL DEFAULT '', text TEXT NOT NULL, UNIQUE(doc_id, seq));"
        "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', tokenize='kbcjk');"
        "CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;"
        "INSERT INTO kbs(name, chunk_size, chunk_overlap, created) VALUES ('old', 500, 80, 1);"
        "PRAGMA user_version = 1;";
    assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    Rag *rag;
    assert_int_equal(rag_open(&rag, dir), KB_OK);
    RagKbInfo info;
    assert_int_equal(rag_kb_info(rag, "old", &info), KB_OK);
    assert_string_equal(info.embed_id.file, "");
    assert_int_equal(info.n_vectors, 0);
    rag_kb_info_clear(&info);
    rag_close(rag);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), STORE_SCHEMA_VERSION);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(dir), free(path);
}

#define FIX(t) cmocka_unit_test_setup_teardown(t, fix_setup, fix_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIX(test_embed_identity_tells_models_apart),
        FIX(test_embed_vectors_are_normalised_and_batch_independent),
        FIX(test_embed_sync_stores_vectors_equal_to_a_fresh_embedding),
        FIX(test_embed_stored_vectors_equal_kbchat_embed),
        FIX(test_embed_knowledge_base_is_pinned_and_rebuild_re_embeds),
        FIX(test_embed_keyword_only_knowledge_base),
        FIX(test_embed_interrupted_rebuild_resumes),
        FIX(test_embed_interrupted_sync_completes_the_vectors),
        FIX(test_embed_chunks_fit_the_model),
        FIX(test_embed_chat_model_vectors_and_cache),
        FIX(test_embed_schema_migrates_from_version_1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
