/*
** synth_model.c: writes GGUF models of real shapes with random weights, for
** benchmarks and tests (built as build/<variant>/tests/tools/synth-model).
**
**   synth-model SHAPE TYPE OUT.gguf [--seed N] [--threads N] [--dry-run]
**   synth-model --list
**
** SHAPE is one of the rows of `shapes` below (the real models' sizes and
** tensor layouts); TYPE any type `kbchat model quantize` accepts (Q4_0,
** Q4_K_M, F16, ...), applied with llama.cpp's per-tensor rules, so the file
** has the size and tensor types of the real model quantized by
** llama-quantize (TinyLlama in Q4_0: 607 MiB, output.weight in Q6_K).
**
** Weights are normal-ish (Irwin-Hall sum of four uniforms, rescaled) with
** standard deviation 0.02; norm weights are 1, norm biases 0, other biases
** random like the weights. Each row comes from its own generator seeded by
** (seed, tensor, row), so a file depends only on SHAPE, TYPE and --seed,
** never on the thread count. Rows are generated and quantized on all cores
** and written a chunk at a time: memory stays at a few megabytes whatever
** the model size.
**
** The vocabulary is SentencePiece-style ("llama" tokenizer) of the real
** size for every shape: <unk>, <s>, </s>, the 256 byte tokens <0x00> ..
** <0xFF>, then made-up pieces ("▁a", "b", ... "▁zz") with decreasing scores.
** Qwen2 and BLOOM really use byte-level BPE ("gpt2") vocabularies; an SPM one
** of the same size costs the same in the output layer and needs no merges,
** and kbchat runs either. The files load and run in kbchat (llama, qwen2)
** but the text they produce is noise.
**
** --dry-run prints the metadata summary and the tensor list with types and
** sizes without writing anything (tests check the real shapes this way).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"

#define WEIGHT_STD 0.02f

/* --- shapes --- */

typedef enum Layout { L_LLAMA, L_QWEN2, L_CHATGLM, L_BLOOM } Layout;

typedef struct Shape {
    const char *name;     /* as given on the command line */
    const char *title;    /* general.name */
    Layout layout;
    const char *arch;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    double rope_base;     /* 0: no rope keys (bloom) */
    float eps;
    bool tied;            /* no output.weight */
} Shape;

static const Shape shapes[] = {
    {"tinyllama-1.1b", "TinyLlama-1.1B (synthetic)", L_LLAMA, "llama", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0, 1e-5f, false},
    {"llama-7b", "LLaMA-2-7B (synthetic)", L_LLAMA, "llama", 4096, 32, 32, 32, 11008, 32000, 4096, 10000.0, 1e-5f, false},
    {"qwen2-0.5b", "Qwen2-0.5B (synthetic)", L_QWEN2, "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1000000.0, 1e-6f, true},
    {"chatglm3-6b", "ChatGLM3-6B (synthetic)", L_CHATGLM, "chatglm", 4096, 28, 32, 2, 13696, 65024, 8192, 10000.0, 1e-5f, false},
    {"bloomz-560m", "BLOOMZ-560M (synthetic)", L_BLOOM, "bloom", 1024, 24, 16, 16, 4096, 250880, 2048, 0.0, 1e-5f, false},
    /* for tests: the shape of ../shared/testdata's tiny-llama, written in well under a second */
    {"test-tiny", "test-tiny (synthetic)", L_LLAMA, "llama", 256, 2, 8, 2, 512, 512, 256, 10000.0, 1e-5f, false},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

/* What fills a tensor. */
typedef enum Fill { F_WEIGHT, F_ONES, F_ZEROS } Fill;

typedef struct SynthTensor {
    char name[64];
    int n_dims;
    int64_t ne[4];
    Fill fill;
} SynthTensor;

typedef struct Model {
    const Shape *s;
    SynthTensor *t;
    int64_t n, cap;
} Model;

/* Appends a tensor (1-D when ne1 is 0). Returns 0, or -1 out of memory. */
static int add(Model *m, const char *name, int64_t ne0, int64_t ne1, Fill fill)
{
    if (m->n == m->cap) {
        int64_t cap = m->cap ? 2 * m->cap : 64;
        SynthTensor *t = realloc(m->t, (size_t)cap * sizeof *t);
        if (t == NULL) return -1;
        m->t = t;
        m->cap = cap;
    }
    SynthTensor *t = &m->t[m->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = ne1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1 ? ne1 : 1;
    t->ne[2] = t->ne[3] = 1;
    t->fill = fill;
    return 0;
}

/* Adds "blk.L.<what>". */
static int add_blk(Model *m, int l, const char *what, int64_t ne0, int64_t ne1, Fill fill)
{
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s", l, what);
    return add(m, name, ne0, ne1, fill);
}

/* One layer of llama / qwen2: RMS norms, separate Q K V O, gated FFN. */
static int add_llama_layer(Model *m, int l)
{
    const Shape *s = m->s;
    const int64_t E = s->n_embd, hd = s->n_embd / s->n_head, kv = hd * s->n_head_kv, F = s->n_ff;
    int rc = add_blk(m, l, "attn_norm.weight", E, 0, F_ONES);
    rc |= add_blk(m, l, "attn_q.weight", E, E, F_WEIGHT);
    rc |= add_blk(m, l, "attn_k.weight", E, kv, F_WEIGHT);
    rc |= add_blk(m, l, "attn_v.weight", E, kv, F_WEIGHT);
    rc |= add_blk(m, l, "attn_output.weight", E, E, F_WEIGHT);
    if (s->layout == L_QWEN2) {
        rc |= add_blk(m, l, "attn_q.bias", E, 0, F_WEIGHT);
        rc |= add_blk(m, l, "attn_k.bias", kv, 0, F_WEIGHT);
        rc |= add_blk(m, l, "attn_v.bias", kv, 0, F_WEIGHT);
    }
    rc |= add_blk(m, l, "ffn_norm.weight", E, 0, F_ONES);
    rc |= add_blk(m, l, "ffn_gate.weight", E, F, F_WEIGHT);
    rc |= add_blk(m, l, "ffn_up.weight", E, F, F_WEIGHT);
    rc |= add_blk(m, l, "ffn_down.weight", F, E, F_WEIGHT);
    return rc;
}

/* One layer of chatglm (ChatGLM2/3): fused QKV with bias, fused gate+up. */
static int add_chatglm_layer(Model *m, int l)
{
    const Shape *s = m->s;
    const int64_t E = s->n_embd, kv = s->n_embd / s->n_head * s->n_head_kv, F = s->n_ff;
    int rc = add_blk(m, l, "attn_norm.weight", E, 0, F_ONES);
    rc |= add_blk(m, l, "attn_qkv.weight", E, E + 2 * kv, F_WEIGHT);
    rc |= add_blk(m, l, "attn_qkv.bias", E + 2 * kv, 0, F_WEIGHT);
    rc |= add_blk(m, l, "attn_output.weight", E, E, F_WEIGHT);
    rc |= add_blk(m, l, "ffn_norm.weight", E, 0, F_ONES);
    rc |= add_blk(m, l, "ffn_up.weight", E, 2 * F, F_WEIGHT);
    rc |= add_blk(m, l, "ffn_down.weight", F, E, F_WEIGHT);
    return rc;
}

/* One layer of bloom: LayerNorms and every linear with a bias. */
static int add_bloom_layer(Model *m, int l)
{
    const int64_t E = m->s->n_embd, F = m->s->n_ff;
    int rc = add_blk(m, l, "attn_norm.weight", E, 0, F_ONES);
    rc |= add_blk(m, l, "attn_norm.bias", E, 0, F_ZEROS);
    rc |= add_blk(m, l, "attn_qkv.weight", E, 3 * E, F_WEIGHT);
    rc |= add_blk(m, l, "attn_qkv.bias", 3 * E, 0, F_WEIGHT);
    rc |= add_blk(m, l, "attn_output.weight", E, E, F_WEIGHT);
    rc |= add_blk(m, l, "attn_output.bias", E, 0, F_WEIGHT);
    rc |= add_blk(m, l, "ffn_norm.weight", E, 0, F_ONES);
    rc |= add_blk(m, l, "ffn_norm.bias", E, 0, F_ZEROS);
    rc |= add_blk(m, l, "ffn_up.weight", E, F, F_WEIGHT);
    rc |= add_blk(m, l, "ffn_up.bias", F, 0, F_WEIGHT);
    rc |= add_blk(m, l, "ffn_down.weight", F, E, F_WEIGHT);
    rc |= add_blk(m, l, "ffn_down.bias", E, 0, F_WEIGHT);
    return rc;
}

/* Lists the tensors of shape s (any order: the plan sorts them as
** llama.cpp writes them). Returns 0, or -1 out of memory. */
static int build_tensors(Model *m)
{
    const Shape *s = m->s;
    int rc = add(m, "token_embd.weight", s->n_embd, s->n_vocab, F_WEIGHT);
    if (s->layout == L_BLOOM) {
        rc |= add(m, "token_embd_norm.weight", s->n_embd, 0, F_ONES);
        rc |= add(m, "token_embd_norm.bias", s->n_embd, 0, F_ZEROS);
        rc |= add(m, "output_norm.bias", s->n_embd, 0, F_ZEROS);
    }
    rc |= add(m, "output_norm.weight", s->n_embd, 0, F_ONES);
    if (!s->tied) rc |= add(m, "output.weight", s->n_embd, s->n_vocab, F_WEIGHT);
    for (int l = 0; l < s->n_layer && rc == 0; l++) {
        if (s->layout == L_CHATGLM) rc = add_chatglm_layer(m, l);
        else if (s->layout == L_BLOOM) rc = add_bloom_layer(m, l);
        else rc = add_llama_layer(m, l);
    }
    return rc;
}

/* --- random rows --- */

/* splitmix64: one step of a 64-bit state, well mixed output. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct RowGen {
    uint64_t seed;
    int64_t tensor;
    Fill fill;
} RowGen;

/* KbRowSource: row `row` of a tensor. A weight is the sum of the four
** 16-bit lanes of one random word (Irwin-Hall, variance 4/12 of the unit
** range), centred and scaled to WEIGHT_STD. */
static int gen_row(void *user, int64_t row, float *buf, int64_t n)
{
    const RowGen *g = user;
    if (g->fill != F_WEIGHT) {
        for (int64_t i = 0; i < n; i++) buf[i] = g->fill == F_ONES ? 1.0f : 0.0f;
        return KB_OK;
    }
    uint64_t state = g->seed * 0xD1B54A32D192ED03ull ^ (uint64_t)g->tensor << 40 ^ (uint64_t)row;
    splitmix64(&state);
    const float scale = WEIGHT_STD * 1.7320508f / 65536.0f; /* sqrt(3) / 2^16: unit variance, times std */
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = splitmix64(&state);
        int64_t sum = (int64_t)(r & 0xffff) + (int64_t)(r >> 16 & 0xffff) + (int64_t)(r >> 32 & 0xffff) + (int64_t)(r >> 48);
        buf[i] = (float)(sum - 2 * 65535) * scale;
    }
    return KB_OK;
}

/* --- metadata --- */

/* Piece k of the made-up vocabulary: a bijective base-26 word, every
** other one with SentencePiece's word-start mark. */
static void filler_piece(int64_t k, char *buf, size_t len)
{
    char word[16];
    int n = 0;
    for (int64_t v = k + 1; v > 0 && n < (int)sizeof word - 1; v = (v - 1) / 26) word[n++] = (char)('a' + (v - 1) % 26);
    size_t at = 0;
    if (k % 2 == 0) at = (size_t)snprintf(buf, len, "\xe2\x96\x81"); /* U+2581 */
    for (int i = n - 1; i >= 0 && at + 1 < len; i--) buf[at++] = word[i];
    buf[at] = '\0';
}

/* Writes the tokenizer keys. Returns a KB_* code. */
static int write_vocab(GgufWriter *w, int n_vocab)
{
    char **tok = calloc((size_t)n_vocab, sizeof *tok);
    float *score = malloc((size_t)n_vocab * sizeof *score);
    int32_t *type = malloc((size_t)n_vocab * sizeof *type);
    int rc = tok && score && type ? KB_OK : KB_ENOMEM;
    for (int i = 0; i < n_vocab && rc == KB_OK; i++) {
        char piece[32];
        if (i < 3) snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else filler_piece(i - 259, piece, sizeof piece);
        type[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1; /* unknown, control, byte, normal */
        score[i] = i < 259 ? 0.0f : (float)-(i - 259);
        if ((tok[i] = strdup(piece)) == NULL) rc = KB_ENOMEM;
    }
    if (rc == KB_OK) rc = gguf_writer_kv_str(w, "tokenizer.ggml.model", "llama", 5);
    if (rc == KB_OK) rc = gguf_writer_kv_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)n_vocab);
    if (rc == KB_OK) rc = gguf_writer_kv_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, score, (uint64_t)n_vocab);
    if (rc == KB_OK) rc = gguf_writer_kv_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, type, (uint64_t)n_vocab);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    for (int i = 0; tok && i < n_vocab; i++) free(tok[i]);
    free(tok);
    free(score);
    free(type);
    return rc;
}

/* Writes {arch}.<suffix> as a uint32. */
static int kv_arch_u32(GgufWriter *w, const Shape *s, const char *suffix, uint32_t v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", s->arch, suffix);
    return gguf_writer_kv_u32(w, key, v);
}

static int kv_arch_f32(GgufWriter *w, const Shape *s, const char *suffix, float v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", s->arch, suffix);
    return gguf_writer_kv_f32(w, key, v);
}

/* Writes the model keys as llama.cpp's converters name them, then the
** vocabulary and the quantization keys. */
static int write_metadata(GgufWriter *w, const Shape *s, KbFtype ftype)
{
    const int hd = s->n_embd / s->n_head;
    int rc = gguf_writer_kv_str(w, "general.architecture", s->arch, strlen(s->arch));
    if (rc == KB_OK) rc = gguf_writer_kv_str(w, "general.name", s->title, strlen(s->title));
    if (rc == KB_OK) rc = kv_arch_u32(w, s, "context_length", (uint32_t)s->n_ctx);
    if (rc == KB_OK) rc = kv_arch_u32(w, s, "embedding_length", (uint32_t)s->n_embd);
    if (rc == KB_OK) rc = kv_arch_u32(w, s, "block_count", (uint32_t)s->n_layer);
    if (rc == KB_OK) rc = kv_arch_u32(w, s, "feed_forward_length", (uint32_t)s->n_ff);
    if (rc == KB_OK) rc = kv_arch_u32(w, s, "attention.head_count", (uint32_t)s->n_head);
    if (rc == KB_OK) rc = kv_arch_u32(w, s, "attention.head_count_kv", (uint32_t)s->n_head_kv);
    if (rc == KB_OK && s->rope_base > 0) {
        /* chatglm rotates half of each head */
        rc = kv_arch_u32(w, s, "rope.dimension_count", (uint32_t)(s->layout == L_CHATGLM ? hd / 2 : hd));
        if (rc == KB_OK) rc = kv_arch_f32(w, s, "rope.freq_base", (float)s->rope_base);
    }
    if (rc == KB_OK)
        rc = kv_arch_f32(w, s, s->layout == L_BLOOM ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon", s->eps);
    if (rc == KB_OK) rc = write_vocab(w, s->n_vocab);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "general.quantization_version", 2);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(w, "general.file_type", (uint32_t)ftype);
    return rc;
}

/* --- the run --- */

typedef struct Options {
    const char *shape, *type, *out;
    uint64_t seed;
    int n_threads;
    bool dry_run;
} Options;

/* Plans the types of m's tensors for ftype, as llama-quantize would. */
static int plan(const Model *m, KbFtype ftype, KbQuantChoice *choice, int64_t *order)
{
    KbQuantTensor *qt = calloc((size_t)m->n, sizeof *qt);
    if (qt == NULL) return KB_ENOMEM;
    for (int64_t i = 0; i < m->n; i++) {
        qt[i].name = m->t[i].name;
        memcpy(qt[i].ne, m->t[i].ne, sizeof qt[i].ne);
        qt[i].type = KB_TYPE_F32;
    }
    KbQuantHparams hp = {m->s->arch, m->s->n_layer, m->s->n_head, m->s->n_head_kv, 0};
    char err[256];
    int rc = kb_quant_plan(&hp, ftype, qt, m->n, choice, order, err, sizeof err);
    if (rc != KB_OK) fprintf(stderr, "synth-model: %s\n", err);
    free(qt);
    return rc;
}

static uint64_t tensor_bytes(const SynthTensor *t, int type)
{
    return kb_row_size(type, t->ne[0]) * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
}

/* --dry-run: one line per tensor ("tensor NAME NE0xNE1 TYPE BYTES"), then
** the totals. */
static void print_plan(const Model *m, const KbQuantChoice *choice, const int64_t *order, KbFtype ftype)
{
    uint64_t total = 0, params = 0;
    printf("shape %s arch %s n_embd %d n_layer %d n_head %d n_head_kv %d n_ff %d n_vocab %d type %s\n", m->s->name,
           m->s->arch, m->s->n_embd, m->s->n_layer, m->s->n_head, m->s->n_head_kv, m->s->n_ff, m->s->n_vocab,
           kb_ftype_name(ftype));
    for (int64_t k = 0; k < m->n; k++) {
        const SynthTensor *t = &m->t[order[k]];
        const int type = choice[order[k]].type;
        printf("tensor %s %lld", t->name, (long long)t->ne[0]);
        if (t->n_dims > 1) printf("x%lld", (long long)t->ne[1]);
        printf(" %s %llu\n", kb_type_name(type), (unsigned long long)tensor_bytes(t, type));
        total += tensor_bytes(t, type);
        params += (uint64_t)(t->ne[0] * t->ne[1]);
    }
    printf("total %lld tensors %llu parameters %llu bytes (%.1f MiB)\n", (long long)m->n, (unsigned long long)params,
           (unsigned long long)total, total / 1048576.0);
}

/* Writes the file: metadata, tensor infos in plan order, then each
** tensor's rows generated and converted on the quantizer's threads. */
static int write_model(const Model *m, const Options *o, KbFtype ftype, const KbQuantChoice *choice, const int64_t *order)
{
    GgufWriter *w = NULL;
    KbQuantizer *q = NULL;
    char err[512];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = gguf_writer_open(o->out, &w, err, sizeof err);
    if (rc != KB_OK) {
        fprintf(stderr, "synth-model: %s\n", err);
        return rc;
    }
    rc = write_metadata(w, m->s, ftype);
    for (int64_t k = 0; k < m->n && rc == KB_OK; k++) {
        const SynthTensor *t = &m->t[order[k]];
        rc = gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, choice[order[k]].type);
    }
    if (rc == KB_OK) rc = gguf_writer_write_header(w);
    if (rc != KB_OK) fprintf(stderr, "synth-model: %s\n", gguf_writer_errmsg(w));
    if (rc == KB_OK && (rc = kb_quantizer_new(o->n_threads, &q)) != KB_OK)
        fprintf(stderr, "synth-model: cannot start threads: %s\n", kb_strerror(rc));
    for (int64_t k = 0; k < m->n && rc == KB_OK; k++) {
        const SynthTensor *t = &m->t[order[k]];
        RowGen g = {o->seed, order[k], t->fill};
        rc = kb_quantizer_write_tensor(q, w, choice[order[k]].type, gen_row, &g, t->ne[1] * t->ne[2] * t->ne[3],
                                       t->ne[0], NULL);
        if (rc != KB_OK) fprintf(stderr, "synth-model: %s: %s\n", t->name, kb_quantizer_errmsg(q));
    }
    if (rc == KB_OK && (rc = gguf_writer_finish(w)) != KB_OK) fprintf(stderr, "synth-model: %s\n", gguf_writer_errmsg(w));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == KB_OK)
        printf("wrote %s: %s %s, %lld tensors, %.1f MiB in %.1f s on %d threads\n", o->out, m->s->name,
               kb_ftype_name(ftype), (long long)m->n, gguf_writer_bytes_written(w) / 1048576.0,
               (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9, kb_quantizer_threads(q));
    kb_quantizer_free(q);
    gguf_writer_close(w);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: synth-model SHAPE TYPE OUT.gguf [--seed N] [--threads N] [--dry-run]\n"
               "       synth-model --list\n"
               "SHAPE: ");
    for (int i = 0; i < N_SHAPES; i++) fprintf(f, "%s%s", i ? ", " : "", shapes[i].name);
    fprintf(f, "\nTYPE: %s\n", kb_ftype_names());
}

/* Parses argv into o. Returns 0, 1 for --list, or -1 on a usage error. */
static int parse_args(int argc, char **argv, Options *o)
{
    const char *pos[3];
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--list") == 0) return 1;
        if (strcmp(a, "--dry-run") == 0) o->dry_run = true;
        else if ((strcmp(a, "--seed") == 0 || strcmp(a, "--threads") == 0) && i + 1 < argc) {
            char *end;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (*end != '\0') return -1;
            if (a[2] == 's') o->seed = v;
            else o->n_threads = v <= 1024 ? (int)v : -1;
        } else if (a[0] == '-' || n_pos == 3) {
            return -1;
        } else {
            pos[n_pos++] = a;
        }
    }
    if (n_pos != 3 || o->n_threads < 0) return -1;
    o->shape = pos[0];
    o->type = pos[1];
    o->out = pos[2];
    return 0;
}

int main(int argc, char **argv)
{
    Options o = {.seed = 42};
    int pr = parse_args(argc, argv, &o);
    if (pr != 0) {
        usage(pr > 0 ? stdout : stderr);
        return pr > 0 ? 0 : 2;
    }
    Model m = {0};
    for (int i = 0; i < N_SHAPES; i++)
        if (strcmp(o.shape, shapes[i].name) == 0) m.s = &shapes[i];
    KbFtype ftype;
    if (m.s == NULL || kb_ftype_parse(o.type, &ftype) != KB_OK) {
        fprintf(stderr, "synth-model: unknown %s '%s'\n", m.s ? "type" : "shape", m.s ? o.type : o.shape);
        usage(stderr);
        return 2;
    }
    int rc = build_tensors(&m) == 0 ? KB_OK : KB_ENOMEM;
    KbQuantChoice *choice = calloc((size_t)m.n, sizeof *choice);
    int64_t *order = calloc((size_t)m.n, sizeof *order);
    if (rc == KB_OK) rc = choice && order ? plan(&m, ftype, choice, order) : KB_ENOMEM;
    if (rc == KB_OK) {
        if (o.dry_run) print_plan(&m, choice, order, ftype);
        else rc = write_model(&m, &o, ftype, choice, order);
    } else if (rc == KB_ENOMEM) {
        fprintf(stderr, "synth-model: out of memory\n");
    }
    free(choice);
    free(order);
    free(m.t);
    return rc == KB_OK ? 0 : 1;
}
