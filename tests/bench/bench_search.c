/*
** bench_search.c: retrieval speed (issue 8's closing note). Release build.
**
**   1. vector search over 100k chunks x 384 dimensions (random unit
**      vectors) on one core (openblas_set_num_threads(1)): cblas_sgemv and
**      the top-10 heap per question, median and best of 50 questions; and
**      cblas_sgemm for 16 questions at once, per question. Goal: < 20 ms.
**   2. a bge-small-shaped synthetic embedding model (BERT, 384 dims, 12
**      layers, 12 heads, n_ff 1536, vocab 21128, CLS pooling, random
**      weights, matrices in F16 and in Q8_0; its WordPiece list is the first 21128 entries of the shared
**      bge vocabulary, ../shared/testdata/vocab/ggml-vocab-bert-bge.gguf,
**      the vocabulary size of bge-small-zh) written to a temporary file:
**      embedding throughput on 2 threads in chunks/s, over chunks of up to
**      500 characters of English, code and Chinese.
**   3. query latency on a knowledge base of 100k synthetic chunks (text in
**      the FTS5 index, 384-dimension vectors): the question embedded by the
**      Q8_0 model (1 thread) plus hybrid search (rag_retrieve), median of 20
**      questions after the first, which also loads the matrix (reported on
**      its own).
**   4. with KBCHAT_BENCH_REFMAN=1: `kb sync` of fullrefman.pdf (Debian
**      r-doc-pdf, 2415 pages) with the Q8_0 model on 2 threads, in pages/s and
**      chunks/s (several minutes: every chunk goes through 12 layers).
** Usage: bench_search [TESTDATA]. No test depends on these numbers.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "engine/engine.h"
#include "rag/store.h"
#include "rag/vectors.h"

#define N_CHUNKS 100000
#define DIM 384
#define REFMAN "/usr/share/R/doc/manual/fullrefman.pdf"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_search: %s: %s\n", what, msg);
    exit(1);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* A random unit vector of DIM floats. */
static void unit_vector(float *v)
{
    double norm = 0;
    for (int d = 0; d < DIM; d++) {
        v[d] = (float)((double)(next_u64() >> 11) / 9007199254740992.0 - 0.5);
        norm += (double)v[d] * v[d];
    }
    for (int d = 0; d < DIM; d++) v[d] = (float)(v[d] / sqrt(norm));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* --- 1. vector search --- */

static void bench_vectors(void)
{
    float *m = malloc((size_t)N_CHUNKS * DIM * sizeof *m), q[16 * DIM];
    int64_t *ids = malloc(N_CHUNKS * sizeof *ids);
    for (int i = 0; i < N_CHUNKS; i++) unit_vector(m + (size_t)i * DIM), ids[i] = i + 1;
    VecIndex *ix;
    if (vec_index_from(ids, m, N_CHUNKS, DIM, &ix) != KB_OK) die("vectors", "out of memory");
    free(m);
    free(ids);
    VecHit hits[16 * 10];
    int n_hits[16];
    double t[50];
    for (int r = 0; r < 50; r++) {
        unit_vector(q);
        double t0 = now_s();
        vec_index_search(ix, q, 10, hits);
        t[r] = (now_s() - t0) * 1e3;
    }
    qsort(t, 50, sizeof t[0], cmp_double);
    for (int j = 0; j < 16; j++) unit_vector(q + j * DIM);
    double best_many = 1e9;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        vec_index_search_many(ix, q, 16, 10, hits, n_hits);
        double dt = (now_s() - t0) * 1e3 / 16;
        if (dt < best_many) best_many = dt;
    }
    printf("search: vector search, %d chunks x %d dims, 1 core: sgemv + top-10 median %.2f ms, best %.2f ms "
           "(goal < 20 ms); sgemm, 16 questions at once: %.2f ms per question\n",
           N_CHUNKS, DIM, t[25], t[0], best_many);
    vec_index_free(ix);
}

/* --- 2. the bge-small-shaped model --- */

#define BGE_VOCAB 21128
#define BGE_LAYERS 12
#define BGE_FF 1536

typedef struct RowGen {
    uint64_t seed;
    int fill; /* 0 random, 1 ones, 2 zeros */
} RowGen;

/* KbRowSource: weights uniform with standard deviation 0.02. */
static int gen_row(void *user, int64_t row, float *buf, int64_t n)
{
    const RowGen *g = user;
    uint64_t s = g->seed * 0x9E3779B97F4A7C15ull + (uint64_t)row * 0xBF58476D1CE4E5B9ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        buf[i] = g->fill == 1 ? 1.0f : g->fill == 2 ? 0.0f : (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.0693f;
    }
    return KB_OK;
}

typedef struct BgeTensor {
    char name[64];
    int64_t ne0, ne1; /* ne1 0: 1-D */
    int fill;
} BgeTensor;

/* The tensors of arch_bert.c's layout, in bge-small's shape. */
static int bge_tensors(BgeTensor *t)
{
    int n = 0;
#define T(nm, a, b, f) (snprintf(t[n].name, sizeof t[n].name, "%s", nm), t[n].ne0 = a, t[n].ne1 = b, t[n++].fill = f)
    T("token_embd.weight", DIM, BGE_VOCAB, 0);
    T("token_types.weight", DIM, 2, 0);
    T("position_embd.weight", DIM, 512, 0);
    T("token_embd_norm.weight", DIM, 0, 1);
    T("token_embd_norm.bias", DIM, 0, 2);
    for (int l = 0; l < BGE_LAYERS; l++) {
        static const struct { const char *what; int rows_ff, cols_ff, fill; } parts[] = {
            {"attn_q.weight", 0, 0, 0}, {"attn_q.bias", -1, 0, 2}, {"attn_k.weight", 0, 0, 0}, {"attn_k.bias", -1, 0, 2},
            {"attn_v.weight", 0, 0, 0}, {"attn_v.bias", -1, 0, 2}, {"attn_output.weight", 0, 0, 0},
            {"attn_output.bias", -1, 0, 2}, {"attn_output_norm.weight", -1, 0, 1}, {"attn_output_norm.bias", -1, 0, 2},
            {"ffn_up.weight", 1, 0, 0}, {"ffn_up.bias", -1, 1, 2}, {"ffn_down.weight", 0, 1, 0},
            {"ffn_down.bias", -1, 0, 2}, {"layer_output_norm.weight", -1, 0, 1}, {"layer_output_norm.bias", -1, 0, 2},
        };
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, parts[p].what);
            int64_t ne0 = parts[p].cols_ff ? BGE_FF : DIM;
            int64_t ne1 = parts[p].rows_ff < 0 ? 0 : parts[p].rows_ff ? BGE_FF : DIM;
            T(name, ne0, ne1, parts[p].fill);
        }
    }
#undef T
    return n;
}

/* Copies the tokenizer keys of the bge vocabulary, the token lists cut to
** BGE_VOCAB entries. */
static int copy_vocab(GgufWriter *w, const GgufFile *v)
{
    int rc = KB_OK;
    for (int64_t i = 0; i < gguf_n_kv(v) && rc == KB_OK; i++) {
        const char *key = gguf_kv_key(v, i);
        if (strncmp(key, "tokenizer.", 10) != 0) continue;
        if (strcmp(key, "tokenizer.ggml.tokens") == 0) {
            const char **tok = malloc(BGE_VOCAB * sizeof *tok);
            char **own = calloc(BGE_VOCAB, sizeof *own);
            for (int j = 0; j < BGE_VOCAB; j++) {
                const char *s;
                size_t len;
                gguf_arr_get_str(v, i, (uint64_t)j, &s, &len);
                tok[j] = own[j] = g_strndup(s, len);
            }
            rc = gguf_writer_kv_arr_str(w, key, tok, BGE_VOCAB);
            for (int j = 0; j < BGE_VOCAB; j++) g_free(own[j]);
            free(tok), free(own);
        } else if (strcmp(key, "tokenizer.ggml.token_type") == 0) {
            int32_t *type = malloc(BGE_VOCAB * sizeof *type);
            for (int j = 0; j < BGE_VOCAB; j++) {
                int64_t x = 1;
                gguf_arr_get_int(v, i, (uint64_t)j, &x);
                type[j] = (int32_t)x;
            }
            rc = gguf_writer_kv_arr(w, key, GGUF_VT_INT32, type, BGE_VOCAB);
            free(type);
        } else {
            rc = gguf_writer_copy_kv(w, v, i);
        }
    }
    return rc;
}

static int bge_metadata(GgufWriter *w, const GgufFile *v)
{
    int rc = gguf_writer_kv_str(w, "general.architecture", "bert", 4);
    if (rc == KB_OK) rc = gguf_writer_kv_str(w, "general.name", "bge-small (synthetic)", 21);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "bert.context_length", 512);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "bert.embedding_length", DIM);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "bert.block_count", BGE_LAYERS);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "bert.feed_forward_length", BGE_FF);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "bert.attention.head_count", 12);
    if (rc == KB_OK) rc = gguf_writer_kv_f32(w, "bert.attention.layer_norm_epsilon", 1e-12f);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "bert.pooling_type", 2);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "general.file_type", 1);
    if (rc == KB_OK) rc = copy_vocab(w, v);
    return rc;
}

/* The type a tensor is stored in: vectors F32; matrices `type`, except the
** position and token-type tables, which llama-quantize leaves alone. */
static int tensor_type(const BgeTensor *t, int type)
{
    if (t->ne1 == 0) return KB_TYPE_F32;
    return strncmp(t->name, "position_embd", 13) == 0 || strncmp(t->name, "token_types", 11) == 0 ? KB_TYPE_F16 : type;
}

/* Writes the synthetic bge-small model to path, its matrices in `type`
** (F16 or Q8_0, the two forms bge GGUF files come in). */
static void write_bge_small(const char *testdata, const char *path, int type)
{
    char err[512], *vpath = g_build_filename(testdata, "vocab", "ggml-vocab-bert-bge.gguf", NULL);
    GgufFile *v;
    GgufWriter *w;
    KbQuantizer *q;
    if (gguf_open(vpath, &v, err, sizeof err) != KB_OK) die("vocabulary", err);
    if (gguf_writer_open(path, &w, err, sizeof err) != KB_OK) die("model", err);
    BgeTensor *t = calloc(8 + 16 * BGE_LAYERS, sizeof *t);
    int n = bge_tensors(t), rc = bge_metadata(w, v);
    for (int i = 0; i < n && rc == KB_OK; i++) {
        int64_t ne[2] = {t[i].ne0, t[i].ne1};
        rc = gguf_writer_add_tensor(w, t[i].name, t[i].ne1 ? 2 : 1, ne, tensor_type(&t[i], type));
    }
    if (rc == KB_OK) rc = gguf_writer_write_header(w);
    if (rc == KB_OK) rc = kb_quantizer_new(2, &q);
    for (int i = 0; i < n && rc == KB_OK; i++) {
        RowGen g = {(uint64_t)i + 1, t[i].fill};
        rc = kb_quantizer_write_tensor(q, w, tensor_type(&t[i], type), gen_row, &g, t[i].ne1 ? t[i].ne1 : 1,
                                       t[i].ne0, NULL);
    }
    if (rc == KB_OK) rc = gguf_writer_finish(w);
    if (rc != KB_OK) die("model", gguf_writer_errmsg(w));
    kb_quantizer_free(q);
    gguf_writer_close(w);
    gguf_close(v);
    free(t);
    g_free(vpath);
}

/* Up to n chunks of at most 500 characters cut from the shared tokenizer
** test inputs (English, code, Chinese, mixed scripts). */
static int sample_chunks(const char *testdata, char **chunks, int n)
{
    static const char *const files[] = {"ggml-vocab-llama-spm.gguf.inp", "zh.inp"};
    GString *all = g_string_new(NULL);
    for (int f = 0; f < 2; f++) {
        char *p = g_build_filename(testdata, "vocab", files[f], NULL), *text;
        if (g_file_get_contents(p, &text, NULL, NULL)) g_string_append(all, text), g_free(text);
        g_free(p);
    }
    int k = 0;
    for (const char *s = all->str; *s && k < n;) {
        const char *e = s;
        for (int c = 0; *e && c < 500; c++) e = g_utf8_next_char(e);
        chunks[k++] = g_strndup(s, (gsize)(e - s));
        s = *e ? e : all->str; /* wrap around for more */
    }
    g_string_free(all, TRUE);
    return k;
}

static void bench_embedding(const char *testdata, const char *model, const char *type)
{
    enum { N = 96 };
    char *chunks[N], err[512];
    size_t lens[N];
    int n = sample_chunks(testdata, chunks, N);
    RagEmbedder *e;
    if (rag_embedder_open(model, 2, &e, err, sizeof err) != KB_OK) die("embedder", err);
    long tokens = 0;
    for (int i = 0; i < n; i++) lens[i] = strlen(chunks[i]), tokens += rag_embedder_count_tokens(chunks[i], lens[i], e) + 2;
    float *out = malloc((size_t)n * DIM * sizeof *out);
    rag_embed_texts(e, (const char *const *)chunks, lens, 8, out); /* warm-up */
    double t0 = now_s();
    if (rag_embed_texts(e, (const char *const *)chunks, lens, n, out) != KB_OK) die("embed", rag_embedder_errmsg(e));
    double t = now_s() - t0;
    printf("search: embedding, bge-small shape (384 dims, 12 layers, 12 heads, n_ff 1536, vocab %d, %s), 2 threads: "
           "%.1f chunks/s (%d chunks of <= 500 characters, %.0f tokens each on average, %.0f tokens/s)\n",
           BGE_VOCAB, type, n / t, n, (double)tokens / n, tokens / t);
    free(out);
    rag_embedder_close(e);
    for (int i = 0; i < n; i++) g_free(chunks[i]);
}

/* --- 3. query latency on 100k chunks --- */

/* A made-up word from a Zipf-like draw over 20000 words, or a Chinese bigram. */
static void add_word(GString *s)
{
    uint64_t r = next_u64();
    if (r % 5 == 0) {
        gunichar a = 0x4E00 + (gunichar)((r >> 8) % 3000), b = 0x4E00 + (gunichar)((r >> 20) % 3000);
        g_string_append_unichar(s, a);
        g_string_append_unichar(s, b);
        return;
    }
    double u = (double)(r >> 11) / 9007199254740992.0;
    unsigned w = (unsigned)(exp(u * log(20000.0)) - 1); /* log-uniform: few common words, many rare */
    static const char cons[] = "bcdfghklmnprstvz", vow[] = "aeiou";
    if (s->len) g_string_append_c(s, ' ');
    for (unsigned k = w + 1; k; k /= 80) g_string_append_c(s, cons[k % 16]), g_string_append_c(s, vow[(k / 16) % 5]);
}

/* Fills a knowledge base with N_CHUNKS chunks of about 40 words, each with
** a random vector, in documents of 100 chunks. */
static void build_kb(Rag *rag, const char *name, const RagEmbedId *id)
{
    enum { PER_DOC = 100 };
    RagKbSettings set = {500, 80, "synthetic", id};
    if (rag_kb_create(rag, name, &set) != KB_OK) die("create", rag_errmsg(rag));
    StoreKb kb;
    store_load_kb(rag, name, &kb);
    Chunk *c = calloc(PER_DOC, sizeof *c);
    float *vecs = malloc(PER_DOC * DIM * sizeof *vecs);
    for (int d = 0; d < N_CHUNKS / PER_DOC; d++) {
        for (int i = 0; i < PER_DOC; i++) {
            GString *s = g_string_new(NULL);
            for (int w = 0; w < 40; w++) add_word(s);
            c[i].text_len = s->len;
            c[i].text = g_string_free(s, FALSE);
            c[i].page = 1 + i / 3;
            unit_vector(vecs + i * DIM);
        }
        char path[64];
        snprintf(path, sizeof path, "/synthetic/doc%04d.txt", d);
        StoreDocInfo info = {path, 1, 1, "0", 0, NULL, NULL, NULL};
        if (store_put_document_vecs(rag, kb.id, &info, c, PER_DOC, vecs, DIM) != KB_OK) die("write", rag_errmsg(rag));
        for (int i = 0; i < PER_DOC; i++) g_free(c[i].text);
    }
    free(c);
    free(vecs);
}

static void bench_queries(const char *dir, const char *model)
{
    char *data = g_build_filename(dir, "data", NULL), err[512];
    Rag *rag;
    RagEmbedder *e;
    if (rag_open(&rag, data) != KB_OK) die("rag_open", rag_errmsg(rag));
    if (rag_embedder_open(model, 1, &e, err, sizeof err) != KB_OK) die("embedder", err);
    double t0 = now_s();
    build_kb(rag, "big", rag_embedder_id(e)); /* random vectors, pinned to the model: embedding 100k chunks
                                                 would take the better part of an hour */
    double t_build = now_s() - t0;
    double t[20], first = 0, embed = 0;
    for (int r = 0; r <= 20; r++) {
        GString *qs = g_string_new(NULL);
        for (int w = 0; w < 8; w++) add_word(qs);
        RagQuery q = {qs->str, RAG_MODE_HYBRID, 4, 0, 1, e};
        RagHit *h;
        int nh;
        float v[DIM];
        size_t len = qs->len;
        double a = now_s();
        rag_embed_texts(e, (const char *const *)&qs->str, &len, 1, v);
        double b = now_s();
        if (rag_retrieve(rag, "big", &q, &h, &nh, NULL) != KB_OK) die("retrieve", rag_errmsg(rag));
        double dt = (now_s() - b) * 1e3; /* rag_retrieve embeds the question itself */
        if (r == 0) first = dt;
        else t[r - 1] = dt, embed += (b - a) * 1e3;
        rag_hits_free(h, nh);
        g_string_free(qs, TRUE);
    }
    qsort(t, 20, sizeof t[0], cmp_double);
    printf("search: hybrid query on %d chunks x %d dims (built in %.0f s), 1 thread: median %.1f ms, best %.1f ms, "
           "of which embedding the question %.1f ms; the first query, which also loads the matrix: %.0f ms\n",
           N_CHUNKS, DIM, t_build, t[10], t[0], embed / 20, first);
    rag_embedder_close(e);
    rag_close(rag);
    g_free(data);
}

/* --- 4. fullrefman.pdf with the model --- */

static void bench_refman(const char *dir, const char *model)
{
    if (!getenv("KBCHAT_BENCH_REFMAN")) {
        printf("search: indexing fullrefman.pdf with the model: skipped (KBCHAT_BENCH_REFMAN=1 runs it; minutes)\n");
        return;
    }
    if (!g_file_test(REFMAN, G_FILE_TEST_EXISTS)) {
        printf("search: %s not found (apt-get install r-doc-pdf)\n", REFMAN);
        return;
    }
    char *data = g_build_filename(dir, "refman", NULL), err[512];
    Rag *rag;
    RagEmbedder *e;
    if (rag_open(&rag, data) != KB_OK) die("rag_open", rag_errmsg(rag));
    if (rag_embedder_open(model, 2, &e, err, sizeof err) != KB_OK) die("embedder", err);
    RagKbSettings s = {500, 80, model, rag_embedder_id(e)};
    rag_kb_create(rag, "refman", &s);
    rag_kb_add(rag, "refman", REFMAN);
    RagSyncOptions opt = {.embedder = e};
    RagSyncStats st;
    if (rag_sync(rag, "refman", &opt, &st) != KB_OK) die("sync", rag_errmsg(rag));
    printf("search: fullrefman.pdf with the bge-small-shaped model on 2 threads: %lld pages, %lld chunks embedded in "
           "%.0f s = %.2f pages/s, %.1f chunks/s\n",
           (long long)st.pages, (long long)st.vectors, st.seconds, st.pages / st.seconds, st.vectors / st.seconds);
    rag_embedder_close(e);
    rag_close(rag);
    g_free(data);
}

int main(int argc, char **argv)
{
    const char *testdata = argc > 1 ? argv[1] : "../shared/testdata";
    openblas_set_num_threads(1);
    char *dir = g_dir_make_tmp("kbchat-bench-search-XXXXXX", NULL);
    char *model = g_build_filename(dir, "bge-small-synthetic-Q8_0.gguf", NULL);
    char *f16 = g_build_filename(dir, "bge-small-synthetic-F16.gguf", NULL);
    bench_vectors();
    write_bge_small(testdata, f16, KB_TYPE_F16);
    write_bge_small(testdata, model, KB_TYPE_Q8_0);
    bench_embedding(testdata, f16, "F16");
    bench_embedding(testdata, model, "Q8_0");
    bench_queries(dir, model);
    bench_refman(dir, model);
    g_free(f16);
    char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    if (getenv("KBCHAT_BENCH_KEEP")) printf("search: kept %s\n", dir); /* for profiling by hand */
    else if (system(cmd) != 0) fprintf(stderr, "bench_search: could not remove %s\n", dir);
    g_free(cmd), g_free(model), g_free(dir);
    return 0;
}
