/*
** model.c: opening a model, its buffers and KV cache, the operations every
** architecture shares (matrix products on the thread pool, RMSNorm, RoPE,
** attention's cache and kernels are in attention.c), and the sequence
** bookkeeping (decode, prefix reuse).
**
** Numerics follow llama.cpp's CPU backend so logits agree closely:
** activations are converted to each weight's vec_dot_type (8-bit blocks for
** quantized weights, fp16 for F16) once per matrix product; the KV cache is
** fp16, and the query is rounded to fp16 before its product with the keys.
*/
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <cblas.h>

#include "engine/attention.h"
#include "engine/model_impl.h"

#define BLAS_TILE 64       /* weight rows converted to float per sgemm */
#define BLAS_MIN_TOKENS 8  /* below this, one dot product per row is faster */

/* --- errors --- */

/* --- matrix products --- */

typedef struct MatmulJob {
    const KbKernels *kern;
    const Mat *w;
    const float *x;
    uint8_t *xq;        /* activations in the vec_dot type */
    size_t xq_row;      /* bytes per converted row */
    int64_t n_tok;
    float *y;
} MatmulJob;

/* Converts the activation rows assigned to worker ith. */
static void convert_rows(void *arg, int ith, int nth)
{
    MatmulJob *j = arg;
    int vt = j->kern->type[j->w->type].vec_dot_type;
    for (int64_t t = ith; t < j->n_tok; t += nth)
        j->kern->type[vt].from_float(j->x + t * j->w->n_in, j->xq + t * j->xq_row, j->w->n_in);
}

/* Computes the output rows of worker ith (a contiguous range), every token
** for each row so the weight row is read once. */
static void dot_rows(void *arg, int ith, int nth)
{
    MatmulJob *j = arg;
    const Mat *w = j->w;
    KbVecDot dot = j->kern->type[w->type].vec_dot;
    int64_t r0 = w->n_out * ith / nth, r1 = w->n_out * (ith + 1) / nth;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_bytes;
        for (int64_t t = 0; t < j->n_tok; t++) dot(w->n_in, &j->y[t * w->n_out + r], row, j->xq + t * j->xq_row);
    }
}

/* Bytes of one row of n values of type `type`. */
static size_t row_size(int type, int64_t n)
{
    const KbTypeInfo *ti = kb_type_info(type);
    return (size_t)(n / ti->block_size) * (size_t)ti->type_size;
}

/* Batches of a type the tiled kernels handle go to them (gemm.h); the rest,
** and single tokens, take one vec_dot per (row, token). */
/* --- float weights through BLAS --- */

typedef struct BlasJob {
    const KbKernels *kern;
    const Mat *w;
    const float *x;
    int64_t n_tok;
    float *y;
    float *scratch;      /* per worker: BLAS_TILE rows of n_in floats */
} BlasJob;

/* Worker ith converts tiles of BLAS_TILE weight rows to float and multiplies
** them with every token by one sgemm each. Tiles start at multiples of
** BLAS_TILE and are dealt out by index, so each output element comes from
** the same sgemm call whatever the number of threads. */
static void blas_rows(void *arg, int ith, int nth)
{
    BlasJob *j = arg;
    const Mat *w = j->w;
    float *tile = j->scratch + (size_t)ith * BLAS_TILE * (size_t)w->n_in;
    int64_t n_tiles = (w->n_out + BLAS_TILE - 1) / BLAS_TILE;
    for (int64_t ti = ith; ti < n_tiles; ti += nth) {
        int64_t r0 = ti * BLAS_TILE, rows = w->n_out - r0 < BLAS_TILE ? w->n_out - r0 : BLAS_TILE;
        j->kern->type[w->type].to_float(w->data + (size_t)r0 * w->row_bytes, tile, rows * w->n_in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n_tok, (int)rows, (int)w->n_in, 1.0f, j->x,
                    (int)w->n_in, tile, (int)w->n_in, 0.0f, j->y + r0, (int)w->n_out);
    }
}

/* Float weights (F32, F16) of encoders: OpenBLAS sgemm on float tiles
** beats one dot product per row and token by an order of magnitude (BERT
** embedding of document chunks is made of exactly these). Not decoders:
** their prompt is split into batches of any size when a cached prefix is
** reused, and the same token must get the same logits either way, which
** one code path for every batch size guarantees. */
static bool blas_applies(const KbModel *m, const Mat *w, int64_t n_tok)
{
    if (!m->cfg.encoder) return false;
    /* not BF16: llama.cpp rounds activations to bf16 for it, and so do we */
    bool float_type = w->type == KB_TYPE_F32 || w->type == KB_TYPE_F16;
    return float_type && n_tok >= BLAS_MIN_TOKENS && m->s.blas_tile && w->n_in <= m->s.blas_max_in;
}

void model_matmul(KbModel *m, const Mat *w, const float *x, int64_t n_tok, float *y)
{
    int vt = m->kern->type[w->type].vec_dot_type;
    const GemmProduct g = {w->packed, w->type, w->n_in, w->n_out, x, n_tok, y};
    /* A token's logits must not depend on the batch it was evaluated in
    ** (prefix reuse cuts prompts anywhere), so a weight matrix always goes
    ** through one kernel: packed ones through the tiles at any batch size,
    ** the rest through vec_dot (or, in encoders, BLAS). */
    if (gemm_applies(&m->s.gemm, &g)) {
        gemm_matmul(&m->s.gemm, m->pool, m->kern->type[vt].from_float, &g);
        return;
    }
    if (blas_applies(m, w, n_tok)) {
        BlasJob b = {m->kern, w, x, n_tok, y, m->s.blas_tile};
        pool_run(m->pool, blas_rows, &b);
        return;
    }
    MatmulJob j = {m->kern, w, x, m->s.act_q, row_size(vt, w->n_in), n_tok, y};
    pool_run(m->pool, convert_rows, &j);
    pool_run(m->pool, dot_rows, &j);
}

/* --- normalisation and rotation --- */

void model_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps)
{
    double sum = 0; /* ggml sums squares in double */
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

/* Mean and variance summed in double, as ggml_norm does. */
void model_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps)
{
    double sum = 0, var = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    float mean = (float)(sum / (double)n);
    for (int64_t i = 0; i < n; i++) var += (double)((x[i] - mean) * (x[i] - mean));
    float scale = 1.0f / sqrtf((float)(var / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] - mean) * scale * w[i] + (b ? b[i] : 0.0f);
}

/* GELU (tanh form) of a value already rounded to fp16, rounded to fp16. */
static float gelu_f16(float h)
{
    float g = 0.5f * h * (1.0f + tanhf(0.7978845608f * h * (1.0f + 0.044715f * h * h)));
    return kb_half_to_float(kb_float_to_half(g));
}

/* ggml looks GELU up in a table indexed by the fp16 input and holding fp16
** results; the same table keeps our activations where llama.cpp's are, and
** is far faster than tanhf per value. Built on first use, once per model. */
static int gelu_table_init(KbModel *m)
{
    if (m->gelu_table) return KB_OK;
    m->gelu_table = malloc(65536 * sizeof(float));
    if (m->gelu_table == NULL) return KB_ENOMEM;
    for (uint32_t b = 0; b < 65536; b++) m->gelu_table[b] = gelu_f16(kb_half_to_float((kb_half)b));
    return KB_OK;
}

void model_gelu(KbModel *m, float *x, int64_t n)
{
    kb_half h[256];
    KbFromFloat to_half = m->kern->type[KB_TYPE_F16].from_float;
    bool table = gelu_table_init(m) == KB_OK;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t k = n - i0 < 256 ? n - i0 : 256;
        to_half(x + i0, h, k);
        for (int64_t i = 0; i < k; i++) {
            float v = x[i0 + i];
            if (v <= -10.0f) x[i0 + i] = 0.0f;
            else if (v < 10.0f) x[i0 + i] = table ? m->gelu_table[h[i]] : gelu_f16(kb_half_to_float(h[i]));
        }
    }
}

void model_add_bias(float *x, const float *b, int64_t n_tok, int64_t dim)
{
    if (b == NULL) return;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < dim; i++) x[t * dim + i] += b[i];
}

void model_lookup_tokens(KbModel *m, const int32_t *tokens, int64_t n)
{
    const Mat *e = &m->w.token_embd;
    int64_t d = m->cfg.n_embd;
    for (int64_t t = 0; t < n; t++)
        m->kern->type[e->type].to_float(e->data + (size_t)tokens[t] * e->row_bytes, m->s.x + t * d, d);
}

void model_rms_logits(KbModel *m, int64_t n, float *logits, bool all_logits)
{
    const ModelConfig *c = &m->cfg;
    if (logits == NULL) return;
    int64_t first = all_logits ? 0 : n - 1;
    for (int64_t t = first; t < n; t++)
        model_rmsnorm(m->s.xb + (t - first) * c->n_embd, m->s.x + t * c->n_embd, m->w.output_norm, c->n_embd, c->norm_eps);
    model_matmul(m, &m->w.output, m->s.xb, n - first, logits);
}

void model_split_qkv(KbModel *m, const float *qkv, int64_t n_tok)
{
    const ModelConfig *c = &m->cfg;
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim, row = q_dim + 2 * kv_dim;
    for (int64_t t = 0; t < n_tok; t++) {
        memcpy(m->s.q + t * q_dim, qkv + t * row, (size_t)q_dim * sizeof(float));
        memcpy(m->s.k + t * kv_dim, qkv + t * row + q_dim, (size_t)kv_dim * sizeof(float));
        memcpy(m->s.v + t * kv_dim, qkv + t * row + q_dim + kv_dim, (size_t)kv_dim * sizeof(float));
    }
}

/* The angles are built by repeated multiplication in float, as ggml's rope
** cache does, so positions far into the context round the same way. */
void model_rope(const ModelConfig *c, float *vec, int64_t n_heads, int64_t pos)
{
    float theta_scale = powf(c->rope_base, -2.0f / (float)c->n_rot);
    float cs[2 * 512];
    float theta = (float)pos;
    for (int64_t i0 = 0; i0 < c->n_rot; i0 += 2) {
        float a = c->rope_freq_scale * theta;
        cs[i0] = cosf(a);
        cs[i0 + 1] = sinf(a);
        theta *= theta_scale;
    }
    for (int64_t h = 0; h < n_heads; h++) {
        float *v = vec + h * c->head_dim;
        for (int64_t i0 = 0; i0 < c->n_rot; i0 += 2) {
            int64_t a = c->rope_neox ? i0 / 2 : i0, b = c->rope_neox ? i0 / 2 + c->n_rot / 2 : i0 + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs[i0] - x1 * cs[i0 + 1];
            v[b] = x0 * cs[i0 + 1] + x1 * cs[i0];
        }
    }
}

/* --- loading helpers --- */

int model_key_int(KbModel *m, const char *suffix, int64_t *v, bool required, char *err, size_t errlen)
{
    char key[128];
    int64_t x;
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    double d = 0;
    int rc = m->ggml ? model_ggml_key(m, suffix, &d) : gguf_get_int(m->gguf, key, &x); /* zeroes x when absent: keep *v's default */
    if (m->ggml) x = (int64_t)d;
    if (rc == KB_ENOTFOUND && !required) return KB_OK;
    if (rc == KB_ENOTFOUND) return kb_error(err, errlen, KB_EFORMAT, "%s is missing", key);
    if (rc == KB_ETYPE) {
        /* a bool or float is refused, not converted, as llama.cpp's get_key does */
        const char *type = gguf_value_type_name(gguf_kv_type(m->gguf, gguf_find_key(m->gguf, key)));
        return kb_error(err, errlen, KB_EFORMAT, "%s has type %s, expected an integer (uint32)", key, type);
    }
    if (rc != KB_OK) return kb_error(err, errlen, KB_EFORMAT, "%s is above %lld", key, (long long)INT64_MAX);
    if (x <= 0 || x > (1 << 24))
        return kb_error(err, errlen, KB_EFORMAT, "%s is %lld, expected 1..%d", key, (long long)x, 1 << 24);
    *v = x;
    return KB_OK;
}

int model_key_float(KbModel *m, const char *suffix, float *v, char *err, size_t errlen)
{
    char key[128];
    double d;
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    int rc = m->ggml ? model_ggml_key(m, suffix, &d) : gguf_get_float(m->gguf, key, &d);
    if (rc == KB_ENOTFOUND) return KB_OK;
    if (rc != KB_OK || !(d > 0) || !isfinite(d)) return kb_error(err, errlen, KB_EFORMAT, "%s must be a positive number", key);
    *v = (float)d;
    return KB_OK;
}

/* True when the kernel set multiplies by weights of type `type`. */
static bool computable(const KbKernels *kern, int type)
{
    const KbTypeKernels *k = &kern->type[type];
    return k->vec_dot != NULL && k->to_float != NULL;
}

/* Writes the names of the weight types kern computes with ("F32, F16, ...")
** into buf and returns it. */
static const char *computable_list(const KbKernels *kern, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int ty = 0; ty < KB_TYPE_COUNT && n < cap; ty++) {
        if (kb_type_info(ty) == NULL || !computable(kern, ty)) continue;
        int w = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", kb_type_name(ty));
        n += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

int model_load_mat(KbModel *m, Mat *w, const char *name, int64_t n_in, int64_t n_out, char *err, size_t errlen)
{
    char fname[MODEL_MAX_NAME];
    const GgufTensor *t = model_find_tensor(m, &name, fname, sizeof fname);
    if (t == NULL) return kb_error(err, errlen, KB_EFORMAT, "tensor '%s' is missing", name);
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out) {
        return kb_error(err, errlen, KB_EFORMAT, "tensor '%s' has shape {%lld, %lld, %lld, %lld}, expected {%lld, %lld}",
                          name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                          (long long)n_in, (long long)n_out);
    }
    if (!computable(m->kern, t->type)) {
        char list[256];
        return kb_error(err, errlen, KB_EUNSUPPORTED, "type %s of tensor '%s' is not supported (supported: %s)",
                          kb_type_name(t->type), name, computable_list(m->kern, list, sizeof list));
    }
    *w = (Mat){t->data, t->type, n_in, n_out, (size_t)t->n_bytes / (size_t)n_out, t->name, NULL};
    return KB_OK;
}

int model_load_vec(KbModel *m, float **dst, const char *name, int64_t n, bool required, char *err, size_t errlen)
{
    char fname[MODEL_MAX_NAME];
    const GgufTensor *t = model_find_tensor(m, &name, fname, sizeof fname);
    *dst = NULL;
    if (t == NULL) return required ? kb_error(err, errlen, KB_EFORMAT, "tensor '%s' is missing", name) : KB_OK;
    if ((int64_t)t->n_elements != n || t->ne[0] != (t->n_dims == 1 ? n : t->ne[0])) {
        return kb_error(err, errlen, KB_EFORMAT, "tensor '%s' has %llu values, expected %lld", name,
                          (unsigned long long)t->n_elements, (long long)n);
    }
    if (t->type != KB_TYPE_F32 && t->type != KB_TYPE_F16) {
        return kb_error(err, errlen, KB_EUNSUPPORTED, "tensor '%s' has type %s, expected F32 or F16", name,
                          kb_type_name(t->type));
    }
    if (m->vec_end - m->vec_next < n) return kb_error(err, errlen, KB_EFORMAT, "tensor '%s' does not fit", name);
    m->kern->type[t->type].to_float(t->data, m->vec_next, n);
    *dst = m->vec_next;
    m->vec_next += n;
    return KB_OK;
}

/* Floats in every tensor that is not a weight matrix of the layers: an
** upper bound for the vector pool. */
static size_t small_tensor_floats(const KbModel *m)
{
    size_t total = 0;
    int64_t n = m->ggml ? ggml_file_n_tensors(m->ggml) : gguf_n_tensors(m->gguf);
    for (int64_t i = 0; i < n; i++) {
        const GgufTensor *t = m->ggml ? ggml_file_tensor(m->ggml, i) : gguf_tensor(m->gguf, i);
        if (t->n_dims == 1 || strcmp(t->name, "position_embd.weight") == 0 || strcmp(t->name, "token_types.weight") == 0)
            total += (size_t)t->n_elements;
    }
    return total;
}

int model_load_common(KbModel *m, const char *eps_key, size_t extra_floats, char *err, size_t errlen)
{
    ModelConfig *c = &m->cfg;
    c->rope_base = 10000.0f;
    c->rope_freq_scale = 1.0f;
    c->norm_eps = 1e-5f;
    int rc = model_key_int(m, "embedding_length", &c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_key_int(m, "block_count", &c->n_layer, true, err, errlen);
    if (rc == KB_OK) rc = model_key_int(m, "attention.head_count", &c->n_head, true, err, errlen);
    if (rc == KB_OK) c->n_head_kv = c->n_head;
    if (rc == KB_OK) rc = model_key_int(m, "attention.head_count_kv", &c->n_head_kv, false, err, errlen);
    if (rc == KB_OK) rc = model_key_int(m, "feed_forward_length", &c->n_ff, true, err, errlen);
    if (rc == KB_OK) rc = model_key_int(m, "context_length", &c->n_ctx_train, true, err, errlen);
    if (rc == KB_OK) rc = model_key_float(m, eps_key, &c->norm_eps, err, errlen);
    if (rc != KB_OK) return rc;
    if (c->n_embd % c->n_head != 0 || c->n_head % c->n_head_kv != 0) {
        return kb_error(err, errlen, KB_EFORMAT,
                          "%s: embedding_length %lld, head_count %lld and head_count_kv %lld do not divide evenly",
                          m->arch_name, (long long)c->n_embd, (long long)c->n_head, (long long)c->n_head_kv);
    }
    c->head_dim = c->n_embd / c->n_head;
    c->n_rot = c->head_dim;
    c->n_vocab = tokenizer_n_vocab(m->tok);
    size_t n = small_tensor_floats(m) + extra_floats;
    m->w.layers = calloc((size_t)c->n_layer, sizeof *m->w.layers);
    m->vectors = malloc((n ? n : 1) * sizeof(float));
    if (!m->w.layers || !m->vectors) return kb_error(err, errlen, KB_ENOMEM, "out of memory");
    m->vec_next = m->vectors;
    m->vec_end = m->vectors + n;
    return KB_OK;
}

/* --- buffers --- */

/* Allocates every buffer of the forward pass and the KV cache, once. */
static int alloc_state(KbModel *m, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    ModelState *s = &m->s;
    /* an encoder sees a whole sequence at once; a decoder takes the prompt in batches */
    int64_t nb = c->encoder ? m->n_ctx : MODEL_MAX_BATCH < m->n_ctx ? MODEL_MAX_BATCH : m->n_ctx;
    int64_t cache_pos = c->encoder ? 0 : model_cache_positions(m->n_ctx);
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim, nt = pool_size(m->pool);
    int64_t widest = c->n_embd > c->n_ff ? c->n_embd : c->n_ff;
    if (q_dim > widest) widest = q_dim;
    s->n_batch = nb;
    s->x = malloc((size_t)(nb * c->n_embd) * sizeof(float));
    s->xb = malloc((size_t)(nb * c->n_embd) * sizeof(float));
    s->xb2 = malloc((size_t)(nb * c->n_embd) * sizeof(float));
    s->q = malloc((size_t)(nb * q_dim) * sizeof(float));
    s->k = malloc((size_t)(nb * kv_dim) * sizeof(float));
    s->v = malloc((size_t)(nb * kv_dim) * sizeof(float));
    s->att = malloc((size_t)(nb * q_dim) * sizeof(float));
    s->qkv = malloc((size_t)(nb * (q_dim + 2 * kv_dim)) * sizeof(float));
    s->hb = malloc((size_t)(nb * 2 * c->n_ff) * sizeof(float)); /* chatglm's gate|up rows are 2 n_ff wide */
    s->hb2 = malloc((size_t)(nb * c->n_ff) * sizeof(float));
    s->act_q = malloc((size_t)(nb * widest) * sizeof(float) + 1024);
    s->attn_scratch_floats = attn_scratch_floats(c->head_dim, c->n_head / c->n_head_kv);
    s->attn_scratch = aligned_alloc(64, (size_t)(nt * s->attn_scratch_floats) * sizeof(float));
    s->key16 = malloc((size_t)c->head_dim * sizeof(kb_half));
    /* zeroed: a key block's lanes past the sequence are read (and masked), never garbage */
    s->key_cache = calloc((size_t)(c->n_layer * cache_pos * kv_dim) + 1, sizeof(kb_half));
    s->value_cache = calloc((size_t)(c->n_layer * cache_pos * kv_dim) + 1, sizeof(kb_half));
    m->cache_tokens = malloc((size_t)m->n_ctx * sizeof *m->cache_tokens);
    if (c->prefix_lm) { /* chatglm1: the whole prompt prefix, evaluated layer by layer (arch_glm1.c) */
        s->ctx_x = malloc((size_t)(m->n_ctx * c->n_embd) * sizeof(float));
        s->ctx_q = malloc((size_t)(m->n_ctx * q_dim) * sizeof(float));
        if (!s->ctx_x || !s->ctx_q) return kb_error(err, errlen, KB_ENOMEM, "out of memory for a context of %lld tokens", (long long)m->n_ctx);
    }
    s->blas_tile = malloc((size_t)(nt * BLAS_TILE * widest) * sizeof(float));
    s->blas_max_in = s->blas_tile ? widest : 0;
    if (gemm_buffers_alloc(&s->gemm, m->kern, nb, widest, (int)nt) != KB_OK)
        return kb_error(err, errlen, KB_ENOMEM, "out of memory for the prompt batch buffers");
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->att || !s->qkv || !s->hb || !s->hb2 ||
        !s->act_q || !s->attn_scratch || !s->key16 || !s->key_cache || !s->value_cache || !m->cache_tokens)
        return kb_error(err, errlen, KB_ENOMEM, "out of memory for a context of %lld tokens", (long long)m->n_ctx);
    return KB_OK;
}

static void free_state(ModelState *s)
{
    free(s->x), free(s->xb), free(s->xb2), free(s->q), free(s->k), free(s->v), free(s->att), free(s->qkv);
    free(s->hb), free(s->hb2), free(s->act_q), free(s->attn_scratch), free(s->key16);
    free(s->key_cache), free(s->value_cache), free(s->blas_tile);
    free(s->ctx_x), free(s->ctx_q);
    gemm_buffers_free(&s->gemm);
}

/* --- weights packed once --- */

/* True for the types whose 1-token tile reads a matrix larger than the
** caches at about half vec_dot's speed (Q5_K, Q6_K: measured on AVX-512 and
** AVX2, docs/performance.md). The output matrix is multiplied by one row
** per generated token (the logits of a prompt's last token, too), so such
** an output matrix stays on vec_dot, which is as fast as the tiles there. */
static bool one_token_prefers_vec_dot(int type)
{
    return type == KB_TYPE_Q5_K || type == KB_TYPE_Q6_K;
}

/* The weight matrices a forward pass multiplies by, into mats (room for
** 8 per layer + 1); returns how many. Not the token embedding: its rows
** are looked up, and a tied model's output matrix is the same data, so
** that one is left out too. */
static int weight_mats(KbModel *m, Mat **mats)
{
    int n = 0;
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        LayerWeights *L = &m->w.layers[l];
        Mat *each[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof each / sizeof each[0]; i++)
            if (each[i]->data) mats[n++] = each[i];
    }
    const Mat *out = &m->w.output;
    if (out->data && out->data != m->w.token_embd.data && !one_token_prefers_vec_dot(out->type)) mats[n++] = &m->w.output;
    return n;
}

/* Tells the kernel it may drop the pages of the file mapping wholly inside
** [p, p + n): once a matrix is packed, its stored form is never read again,
** and without this both copies would count against the process. */
static void release_file_pages(const uint8_t *p, size_t n)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) / page * page, b = ((uintptr_t)p + n) / page * page;
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Bytes of w packed for the tiles, or 0 when it stays on vec_dot: a type
** they do not handle, or rows wider than the tiles' scratch holds (packed
** weights must always be able to take the tiled path). */
static size_t packed_size(const KbModel *m, const Mat *w)
{
    if (w->n_in > m->s.gemm.max_in) return 0;
    return gemm_packed_size(m->s.gemm.isa, w->type, w->n_in, w->n_out);
}

/* Bytes of memory the kernel says it can give without swapping
** (MemAvailable: free memory plus the page cache it can drop), or
** UINT64_MAX when it does not say. */
static uint64_t memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL) return UINT64_MAX;
    char line[256];
    unsigned long long kb = 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
    fclose(f);
    return found ? (uint64_t)kb * 1024 : UINT64_MAX;
}

/* Packs every weight matrix of a type the tiled kernels handle (gemm.h:
** Q4_0, Q8_0, Q4_K, Q5_K, Q6_K) on this CPU into one allocation, matrix by matrix,
** releasing each one's file pages after it. Nothing to do without the tiled
** kernels (the portable kernel set: other CPUs, KBCHAT_ISA=scalar). */
static int pack_weights(KbModel *m, char *err, size_t errlen)
{
    const GemmIsa *isa = m->s.gemm.isa;
    if (isa == NULL) return KB_OK;
    Mat **mats = malloc((size_t)(8 * m->cfg.n_layer + 1) * sizeof *mats);
    if (mats == NULL) return kb_error(err, errlen, KB_ENOMEM, "out of memory");
    const int n = weight_mats(m, mats);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += packed_size(m, mats[i]);
    /* The packed copy is anonymous memory, which (without swap) cannot be
    ** dropped the way the mapped file's pages can; when it would not fit,
    ** every product stays on vec_dot over the mapping, slower but safe. The
    ** file's pages being packed count as available (they are page cache), so
    ** this refuses only when the machine really lacks the room. */
    if ((uint64_t)total > memory_available()) total = 0;
    if (total > 0) {
        void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            free(mats);
            return kb_error(err, errlen, KB_ENOMEM, "out of memory for %zu MiB of packed weights", total >> 20);
        }
        /* No MADV_HUGEPAGE: it gained 3-5% in generation but made the time to
        ** open swing from 0.13 to 1.3 s with the kernel's search for free 2 MiB
        ** pages (docs/performance.md); 4 KiB pages open in a steady 0.2-0.3 s. */
        m->packed = p;
        m->packed_size = total;
    }
    size_t off = 0;
    for (int i = 0; total > 0 && i < n; i++) {
        Mat *w = mats[i];
        const size_t size = packed_size(m, w);
        if (size == 0) continue;
        gemm_pack_matrix(isa, m->pool, w->type, w->data, w->row_bytes, w->n_in, w->n_out, m->packed + off);
        w->packed = m->packed + off;
        release_file_pages(w->data, w->row_bytes * (size_t)w->n_out);
        off += size;
    }
    free(mats);
    return KB_OK;
}

/* --- open / close --- */

/* Picks the context size: exactly `want`, or the model's own capped at
** `cap`; never more than the model's own. */
static int choose_ctx(KbModel *m, int64_t want, int64_t cap, char *err, size_t errlen)
{
    int64_t train = m->cfg.n_ctx_train;
    if (want < 0) return kb_error(err, errlen, KB_ERANGE, "context size %lld is negative", (long long)want);
    if (want == 0 && cap > 0 && cap < train) want = cap;
    if (want > train) {
        return kb_error(err, errlen, KB_ERANGE,
                          "a context of %lld tokens was asked for, but the model was trained for %lld "
                          "(set model.context_size to %lld or less)",
                          (long long)want, (long long)train, (long long)train);
    }
    m->n_ctx = want ? want : train;
    return KB_OK;
}

/* Finds the architecture of general.architecture. */
static int choose_arch(KbModel *m, char *err, size_t errlen)
{
    static const ArchOps *const archs[] = {&arch_llama, &arch_qwen2, &arch_chatglm, &arch_bloom, &arch_bert};
    const char *name;
    size_t len;
    if (gguf_get_str(m->gguf, "general.architecture", &name, &len) != KB_OK)
        return kb_error(err, errlen, KB_EFORMAT, "general.architecture is missing");
    if (len >= sizeof m->arch_name) len = sizeof m->arch_name - 1;
    memcpy(m->arch_name, name, len);
    m->arch_name[len] = '\0';
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        if (strcmp(archs[i]->name, m->arch_name) == 0) {
            m->ops = archs[i];
            m->cfg.arch = archs[i]->arch;
            return KB_OK;
        }
    }
    return kb_error(err, errlen, KB_EUNSUPPORTED,
                      "architecture '%s' is not supported (llama, qwen2, chatglm, bloom, bert)", m->arch_name);
}

/* Resolves the thread count: 0 = all online cores. */
static int thread_count(int want)
{
    if (want > 0) return want;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The layer a tensor name "blk.N.<rest>" belongs to: N, or -1 for other
** names (and for N too large to be a layer). */
static int64_t tensor_layer(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0) return -1;
    int64_t n = 0;
    const char *p = name + 4;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > (1 << 24)) return -1;
    }
    return *p == '.' ? n : -1;
}

/* Refuses a tensor of a layer past block_count. llama.cpp creates the
** tensors of layers 0..block_count-1 and then fails with "wrong number of
** tensors; expected X, got Y": a file whose block_count was cut (or whose
** layers were not all written) is not the model it claims to be. */
static int check_layer_tensors(const KbModel *m, char *err, size_t errlen)
{
    for (int64_t i = 0; m->gguf && i < gguf_n_tensors(m->gguf); i++) {
        const char *name = gguf_tensor(m->gguf, i)->name;
        int64_t l = tensor_layer(name);
        if (l >= m->cfg.n_layer) {
            return kb_error(err, errlen, KB_EFORMAT,
                              "tensor '%s' belongs to layer %lld, but %s.block_count is %lld (layers 0..%lld): "
                              "wrong number of tensors",
                              name, (long long)l, m->arch_name, (long long)m->cfg.n_layer,
                              (long long)m->cfg.n_layer - 1);
        }
    }
    return KB_OK;
}

/* The steps of opening shared by model_open and model_check: the kernel set,
** the file, the tokenizer, the architecture and its weights (pointers into
** the mapping, norms and biases converted), and the layer count against the
** tensors. Allocates nothing per context. */
static int open_weights(KbModel *m, const char *path, const KbModelParams *params, char *err, size_t errlen)
{
    m->kern = params && params->force_isa ? kb_kernels_for((KbIsa)(params->force_isa - 1)) : kb_kernels();
    m->eog_extra[0] = m->eog_extra[1] = -1;
    bool ggml = m->kern && ggml_file_probe(path); /* chatglm.cpp files, known by their magic */
    int rc = !m->kern ? kb_error(err, errlen, KB_EUNSUPPORTED, "this CPU cannot run the requested kernels")
             : ggml   ? model_ggml_open(m, path, err, errlen)
                      : gguf_open(path, &m->gguf, err, errlen);
    if (rc == KB_OK && !ggml) {
        rc = tokenizer_load(m->gguf, &m->tok, err, errlen);
        if (rc != KB_OK) rc = rc == KB_ENOMEM ? rc : KB_EFORMAT;
    }
    if (rc == KB_OK && !ggml) rc = choose_arch(m, err, errlen);
    if (rc == KB_OK) rc = m->ops->load(m, err, errlen);
    if (rc == KB_OK) rc = check_layer_tensors(m, err, errlen);
    return rc;
}

int model_check(const char *path, char *err, size_t errlen)
{
    KbModel *m = calloc(1, sizeof *m);
    if (m == NULL) return kb_error(err, errlen, KB_ENOMEM, "out of memory");
    int rc = open_weights(m, path, NULL, err, errlen);
    model_close(m);
    return rc;
}

int model_open(const char *path, const KbModelParams *params, KbModel **out, char *err, size_t errlen)
{
    *out = NULL;
    KbModel *m = calloc(1, sizeof *m);
    if (m == NULL) return kb_error(err, errlen, KB_ENOMEM, "out of memory");
    /* our own pool runs the sgemm calls in parallel: OpenBLAS must not
    ** start threads of its own inside them */
    openblas_set_num_threads(1);
    int rc = open_weights(m, path, params, err, errlen);
    if (rc == KB_OK) rc = choose_ctx(m, params ? params->n_ctx : 0, params ? params->n_ctx_cap : 0, err, errlen);
    if (rc == KB_OK && pool_new(thread_count(params ? params->n_threads : 0), &m->pool) != KB_OK)
        rc = kb_error(err, errlen, KB_ENOMEM, "cannot start the worker threads");
    if (rc == KB_OK) rc = alloc_state(m, err, errlen);
    if (rc == KB_OK) rc = pack_weights(m, err, errlen);
    if (rc != KB_OK) {
        model_close(m);
        return rc;
    }
    *out = m;
    return KB_OK;
}

void model_close(KbModel *m)
{
    if (m == NULL) return;
    pool_free(m->pool);
    free_state(&m->s);
    free(m->cache_tokens);
    free(m->w.layers);
    free(m->vectors);
    free(m->gelu_table);
    if (m->packed) munmap(m->packed, m->packed_size);
    tokenizer_free(m->tok);
    gguf_close(m->gguf);
    ggml_file_close(m->ggml);
    free(m);
}

/* --- accessors --- */

const Tokenizer *model_tokenizer(const KbModel *m) { return m->tok; }
const char *model_arch_name(const KbModel *m) { return m->ops->name; }
int64_t model_n_embd(const KbModel *m) { return m->cfg.n_embd; }
bool model_is_encoder(const KbModel *m) { return m->cfg.encoder; }
int32_t model_n_vocab(const KbModel *m) { return (int32_t)m->cfg.n_vocab; }
int64_t model_n_ctx(const KbModel *m) { return m->n_ctx; }
int64_t model_n_ctx_train(const KbModel *m) { return m->cfg.n_ctx_train; }
int model_n_threads(const KbModel *m) { return pool_size(m->pool); }
const char *model_kernels_name(const KbModel *m) { return m->kern->name; }
uint64_t model_packed_bytes(const KbModel *m) { return m->packed_size; }
int64_t model_n_past(const KbModel *m) { return m->n_past; }

static uint64_t mat_bytes(const Mat *w)
{
    return (uint64_t)w->row_bytes * (uint64_t)w->n_out;
}

uint64_t model_weight_bytes_per_token(const KbModel *m)
{
    uint64_t total = mat_bytes(&m->w.output);
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        const LayerWeights *L = &m->w.layers[l];
        total += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wqkv) + mat_bytes(&L->wo);
        total += mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) + mat_bytes(&L->w_down);
    }
    return total;
}
const char *model_errmsg(const KbModel *m) { return m->errmsg; }
void model_reset(KbModel *m) { m->n_past = 0; }

/* --- cancellation --- */

void model_set_cancel(KbModel *m, const atomic_int *flag) { m->cancel = flag; }

void model_set_check_hook(KbModel *m, KbCheckFn fn, void *user)
{
    m->check_fn = fn;
    m->check_user = user;
}

bool model_should_stop(KbModel *m, bool batch_done)
{
    if (m->check_fn) m->check_fn(m->check_user, batch_done);
    if (m->cancel && atomic_load(m->cancel)) m->cancelled = true;
    return m->cancelled;
}

/* Records the message of a cancelled evaluation and returns KB_ECANCELLED. */
static int fail_cancelled(KbModel *m)
{
    return kb_error(m->errmsg, sizeof m->errmsg, KB_ECANCELLED, "cancelled with %lld tokens in the cache",
                      (long long)m->n_past);
}

/* --- evaluation --- */

int model_decode(KbModel *m, const int32_t *tokens, size_t n, float *logits, bool all_logits)
{
    int64_t n_vocab = m->cfg.n_vocab;
    if (m->cfg.encoder)
        return kb_error(m->errmsg, sizeof m->errmsg, KB_EUNSUPPORTED, "%s is an embedding model: use model_embed",
                          m->arch_name);
    if (n == 0) return kb_error(m->errmsg, sizeof m->errmsg, KB_EINVAL, "no tokens to evaluate");
    if ((int64_t)n > m->n_ctx - m->n_past) {
        return kb_error(m->errmsg, sizeof m->errmsg, KB_ERANGE,
                          "the context is full: %lld tokens cached + %zu new > %lld", (long long)m->n_past, n,
                          (long long)m->n_ctx);
    }
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return kb_error(m->errmsg, sizeof m->errmsg, KB_ERANGE, "token id %d is out of range (0..%lld)",
                              tokens[i], (long long)(n_vocab - 1));
    }
    m->cancelled = false;
    for (size_t done = 0; done < n;) {
        int64_t nb = (int64_t)(n - done) < m->s.n_batch ? (int64_t)(n - done) : m->s.n_batch;
        bool last_batch = done + (size_t)nb == n;
        float *out = logits == NULL ? NULL : all_logits ? logits + done * n_vocab : last_batch ? logits : NULL;
        m->ops->forward(m, tokens + done, nb, m->n_past, out, all_logits);
        if (m->cancelled) return fail_cancelled(m); /* cut between layers: the batch is not kept */
        memcpy(m->cache_tokens + m->n_past, tokens + done, (size_t)nb * sizeof *tokens);
        m->n_past += nb;
        done += (size_t)nb;
        if (model_should_stop(m, true)) return fail_cancelled(m);
    }
    return KB_OK;
}

/* Pools the hidden states of n tokens in s.x into out (mean or CLS). */
static void pool_hidden(const KbModel *m, int64_t n, bool normalize, float *out)
{
    int64_t d = m->cfg.n_embd;
    if (m->cfg.pooling == 2) {
        memcpy(out, m->s.x, (size_t)d * sizeof(float));
    } else {
        memset(out, 0, (size_t)d * sizeof(float));
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < d; i++) out[i] += m->s.x[t * d + i];
        for (int64_t i = 0; i < d; i++) out[i] /= (float)n;
    }
    if (!normalize) return;
    double sum = 0;
    for (int64_t i = 0; i < d; i++) sum += (double)out[i] * out[i];
    float inv = sum > 0 ? (float)(1.0 / sqrt(sum)) : 0.0f;
    for (int64_t i = 0; i < d; i++) out[i] *= inv;
}

/* Decoders ("chat" embeddings): runs seq from position 0 in batches, the
** cache holding the earlier batches, and writes the mean of the final hidden
** states after the output norm (what the output layer would read) to out.
** The cached sequence is forgotten afterwards: it is not a conversation.
** A cancel (m->cancelled) ends it early, out then incomplete. */
static void embed_decoder(KbModel *m, const int32_t *seq, int64_t n, float *out)
{
    int64_t d = m->cfg.n_embd;
    float *h = m->s.xb; /* free once forward returns without logits */
    memset(out, 0, (size_t)d * sizeof(float));
    for (int64_t done = 0; done < n;) {
        int64_t nb = n - done < m->s.n_batch ? n - done : m->s.n_batch;
        m->ops->forward(m, seq + done, nb, done, NULL, false);
        if (m->cancelled) break;
        for (int64_t t = 0; t < nb; t++) {
            if (m->w.output_norm_b) model_layernorm(h, m->s.x + t * d, m->w.output_norm, m->w.output_norm_b, d, m->cfg.norm_eps);
            else model_rmsnorm(h, m->s.x + t * d, m->w.output_norm, d, m->cfg.norm_eps);
            for (int64_t i = 0; i < d; i++) out[i] += h[i];
        }
        done += nb;
    }
    for (int64_t i = 0; i < d; i++) out[i] /= (float)n;
    m->n_past = 0;
}

/* L2-normalises v (n floats); a zero vector stays zero. */
static void normalize_vec(float *v, int64_t n)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)v[i] * v[i];
    float inv = sum > 0 ? (float)(1.0 / sqrt(sum)) : 0.0f;
    for (int64_t i = 0; i < n; i++) v[i] *= inv;
}

int model_embed(KbModel *m, const int32_t *const *seqs, const size_t *lens, size_t n_seqs, bool normalize, float *out)
{
    /* ChatGLM-6B evaluates its bidirectional prefix as a unit, so per-batch
    ** hidden states of a decoder pass do not exist for it */
    if (m->cfg.prefix_lm)
        return kb_error(m->errmsg, sizeof m->errmsg, KB_EUNSUPPORTED, "%s cannot serve as an embedding model",
                          m->arch_name);
    for (size_t i = 0; i < n_seqs; i++) {
        if (lens[i] == 0 || (int64_t)lens[i] > m->n_ctx)
            return kb_error(m->errmsg, sizeof m->errmsg, KB_ERANGE, "sequence %zu has %zu tokens, expected 1..%lld", i,
                              lens[i], (long long)m->n_ctx);
        for (size_t j = 0; j < lens[i]; j++)
            if (seqs[i][j] < 0 || seqs[i][j] >= m->cfg.n_vocab)
                return kb_error(m->errmsg, sizeof m->errmsg, KB_ERANGE, "token id %d is out of range", seqs[i][j]);
    }
    m->cancelled = false;
    for (size_t i = 0; i < n_seqs; i++) {
        float *v = out + i * m->cfg.n_embd;
        if (!m->cfg.encoder) {
            embed_decoder(m, seqs[i], (int64_t)lens[i], v);
            if (m->cancelled) return fail_cancelled(m);
            if (normalize) normalize_vec(v, m->cfg.n_embd);
            continue;
        }
        m->ops->forward(m, seqs[i], (int64_t)lens[i], 0, NULL, false);
        if (m->cancelled) return fail_cancelled(m);
        pool_hidden(m, (int64_t)lens[i], normalize, v);
    }
    return KB_OK;
}

int model_eval_prompt(KbModel *m, const int32_t *tokens, size_t n, float *last_logits, size_t *n_reused)
{
    size_t keep = 0;
    if (n_reused) *n_reused = 0;
    if (n == 0) return kb_error(m->errmsg, sizeof m->errmsg, KB_EINVAL, "no tokens to evaluate");
    while (keep < (size_t)m->n_past && keep + 1 < n && m->cache_tokens[keep] == tokens[keep]) keep++;
    int64_t old_past = m->n_past;
    m->n_past = (int64_t)keep;
    int rc = model_decode(m, tokens + keep, n - keep, last_logits, false);
    if (rc != KB_OK && rc != KB_ECANCELLED) m->n_past = old_past < (int64_t)keep ? old_past : (int64_t)keep;
    else if (n_reused) *n_reused = keep; /* cancelled: the prefix and the completed batches stay */
    return rc;
}
