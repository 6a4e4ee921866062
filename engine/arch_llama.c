/*
** arch_llama.c: the LLaMA family: llama (LLaMA 1/2, Alpaca, Vicuna,
** Chinese-LLaMA, Chimera, Mistral-style GQA, tied or separate output) and
** qwen2 (Q/K/V biases, NEOX rotation, usually tied output).
**
** Per layer, for a batch of tokens (names as in the LLaMA paper):
**   h = RMSNorm(x) * attn_norm
**   q, k, v = Wq h (+bq), Wk h (+bk), Wv h (+bv); RoPE on q and k
**   x += Wo Attention(q, K, V)            (K, V: the fp16 cache)
**   h = RMSNorm(x) * ffn_norm
**   x += W_down (SiLU(W_gate h) * W_up h)
** then logits = W_out (RMSNorm(x) * output_norm).
*/
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "engine/model_impl.h"

static int load_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* --- hyperparameters --- */

/* Reads integer key "<arch>.<suffix>" into *v; required keys must exist and
** be positive. */
static int arch_int(const GgufFile *g, const char *arch, const char *suffix, int64_t *v, bool required,
                    char *err, size_t errlen)
{
    char key[128];
    int64_t x;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_int(g, key, &x); /* zeroes x when absent: keep *v's default */
    if (rc == KB_ENOTFOUND && !required) return KB_OK;
    if (rc != KB_OK) return load_fail(err, errlen, KB_EFORMAT, "%s is %s", key, rc == KB_ENOTFOUND ? "missing" : "not an integer");
    if (x <= 0 || x > (1 << 24)) return load_fail(err, errlen, KB_EFORMAT, "%s is %lld, expected 1..%d", key, (long long)x, 1 << 24);
    *v = x;
    return KB_OK;
}

/* Reads float key "<arch>.<suffix>" into *v when present. */
static int arch_float(const GgufFile *g, const char *arch, const char *suffix, float *v, char *err, size_t errlen)
{
    char key[128];
    double d;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_float(g, key, &d);
    if (rc == KB_ENOTFOUND) return KB_OK;
    if (rc != KB_OK || !(d > 0) || !isfinite(d)) return load_fail(err, errlen, KB_EFORMAT, "%s must be a positive number", key);
    *v = (float)d;
    return KB_OK;
}

/* Fills m->cfg from the GGUF keys, with llama.cpp's defaults. */
static int load_config(KbModel *m, const char *arch, char *err, size_t errlen)
{
    ModelConfig *c = &m->cfg;
    const GgufFile *g = m->gguf;
    c->rope_base = 10000.0f;
    c->rope_freq_scale = 1.0f;
    c->norm_eps = 1e-5f;
    c->rope_neox = c->arch == ARCH_QWEN2;
    int rc = arch_int(g, arch, "embedding_length", &c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = arch_int(g, arch, "block_count", &c->n_layer, true, err, errlen);
    if (rc == KB_OK) rc = arch_int(g, arch, "attention.head_count", &c->n_head, true, err, errlen);
    if (rc == KB_OK) c->n_head_kv = c->n_head;
    if (rc == KB_OK) rc = arch_int(g, arch, "attention.head_count_kv", &c->n_head_kv, false, err, errlen);
    if (rc == KB_OK) rc = arch_int(g, arch, "feed_forward_length", &c->n_ff, true, err, errlen);
    if (rc == KB_OK) rc = arch_int(g, arch, "context_length", &c->n_ctx_train, true, err, errlen);
    if (rc == KB_OK) rc = arch_float(g, arch, "rope.freq_base", &c->rope_base, err, errlen);
    if (rc == KB_OK) rc = arch_float(g, arch, "attention.layer_norm_rms_epsilon", &c->norm_eps, err, errlen);
    float factor = 1.0f;
    if (rc == KB_OK) rc = arch_float(g, arch, "rope.scaling.factor", &factor, err, errlen);
    c->rope_freq_scale = 1.0f / factor;
    if (rc != KB_OK) return rc;
    if (c->n_embd % c->n_head != 0 || c->n_head % c->n_head_kv != 0) {
        return load_fail(err, errlen, KB_EFORMAT,
                         "%s: embedding_length %lld, head_count %lld and head_count_kv %lld do not divide evenly",
                         arch, (long long)c->n_embd, (long long)c->n_head, (long long)c->n_head_kv);
    }
    c->head_dim = c->n_embd / c->n_head;
    c->n_rot = c->head_dim;
    rc = arch_int(g, arch, "rope.dimension_count", &c->n_rot, false, err, errlen);
    if (rc == KB_OK && (c->n_rot > c->head_dim || c->n_rot % 2 || c->n_rot > 1024))
        return load_fail(err, errlen, KB_EFORMAT, "%s.rope.dimension_count is %lld, expected an even number up to %lld",
                         arch, (long long)c->n_rot, (long long)c->head_dim);
    c->n_vocab = tokenizer_n_vocab(m->tok);
    return rc;
}

/* --- tensors --- */

/* Points *w at tensor `name`, which must have shape {n_in, n_out} and a type
** the kernels can multiply with. */
static int load_mat(KbModel *m, Mat *w, const char *name, int64_t n_in, int64_t n_out, char *err, size_t errlen)
{
    const GgufTensor *t = gguf_find_tensor(m->gguf, name);
    if (t == NULL) return load_fail(err, errlen, KB_EFORMAT, "tensor '%s' is missing", name);
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out) {
        return load_fail(err, errlen, KB_EFORMAT, "tensor '%s' has shape {%lld, %lld, %lld, %lld}, expected {%lld, %lld}",
                         name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                         (long long)n_in, (long long)n_out);
    }
    const KbTypeKernels *k = &m->kern->type[t->type];
    if (k->vec_dot == NULL || k->to_float == NULL) {
        return load_fail(err, errlen, KB_EUNSUPPORTED, "tensor '%s' has type %s, which kbchat cannot compute with",
                         name, kb_type_name(t->type));
    }
    w->data = t->data;
    w->type = t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = (size_t)t->n_bytes / (size_t)n_out;
    w->name = t->name;
    return KB_OK;
}

/* Converts 1-D tensor `name` of n values (F32 or F16) into *dst, taken from
** the model's vector pool at *next; absent optional tensors give NULL. */
static int load_vec(KbModel *m, float **dst, float **next, const char *name, int64_t n, bool required, char *err,
                    size_t errlen)
{
    const GgufTensor *t = gguf_find_tensor(m->gguf, name);
    *dst = NULL;
    if (t == NULL) return required ? load_fail(err, errlen, KB_EFORMAT, "tensor '%s' is missing", name) : KB_OK;
    if (t->n_dims != 1 || t->ne[0] != n) {
        return load_fail(err, errlen, KB_EFORMAT, "tensor '%s' has %lld values in %d dimensions, expected {%lld}", name,
                         (long long)t->ne[0], t->n_dims, (long long)n);
    }
    if (t->type != KB_TYPE_F32 && t->type != KB_TYPE_F16) {
        return load_fail(err, errlen, KB_EUNSUPPORTED, "tensor '%s' has type %s, expected F32 or F16", name,
                         kb_type_name(t->type));
    }
    m->kern->type[t->type].to_float(t->data, *next, n);
    *dst = *next;
    *next += n;
    return KB_OK;
}

/* Points one layer's weights into the mapping. */
static int load_layer(KbModel *m, int64_t l, float **next, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    LayerWeights *L = &m->w.layers[l];
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)l), n)
    int rc = load_vec(m, &L->attn_norm, next, NAME("attn_norm.weight"), c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = load_mat(m, &L->wq, NAME("attn_q.weight"), c->n_embd, q_dim, err, errlen);
    if (rc == KB_OK) rc = load_mat(m, &L->wk, NAME("attn_k.weight"), c->n_embd, kv_dim, err, errlen);
    if (rc == KB_OK) rc = load_mat(m, &L->wv, NAME("attn_v.weight"), c->n_embd, kv_dim, err, errlen);
    if (rc == KB_OK) rc = load_mat(m, &L->wo, NAME("attn_output.weight"), q_dim, c->n_embd, err, errlen);
    bool biases = c->arch == ARCH_QWEN2;
    if (rc == KB_OK) rc = load_vec(m, &L->bq, next, NAME("attn_q.bias"), q_dim, biases, err, errlen);
    if (rc == KB_OK) rc = load_vec(m, &L->bk, next, NAME("attn_k.bias"), kv_dim, biases, err, errlen);
    if (rc == KB_OK) rc = load_vec(m, &L->bv, next, NAME("attn_v.bias"), kv_dim, biases, err, errlen);
    if (rc == KB_OK) rc = load_vec(m, &L->ffn_norm, next, NAME("ffn_norm.weight"), c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = load_mat(m, &L->w_gate, NAME("ffn_gate.weight"), c->n_embd, c->n_ff, err, errlen);
    if (rc == KB_OK) rc = load_mat(m, &L->w_up, NAME("ffn_up.weight"), c->n_embd, c->n_ff, err, errlen);
    if (rc == KB_OK) rc = load_mat(m, &L->w_down, NAME("ffn_down.weight"), c->n_ff, c->n_embd, err, errlen);
#undef NAME
    return rc;
}

/* Floats needed for all norms and biases (an upper bound: biases counted
** whether present or not). */
static size_t vector_floats(const ModelConfig *c)
{
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    return (size_t)(c->n_embd + c->n_layer * (2 * c->n_embd + q_dim + 2 * kv_dim));
}

int llama_load(KbModel *m, char *err, size_t errlen)
{
    const char *arch;
    size_t len;
    if (gguf_get_str(m->gguf, "general.architecture", &arch, &len) != KB_OK)
        return load_fail(err, errlen, KB_EFORMAT, "general.architecture is missing");
    char name[32];
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, arch, len);
    name[len] = '\0';
    if (strcmp(name, "llama") == 0) m->cfg.arch = ARCH_LLAMA;
    else if (strcmp(name, "qwen2") == 0) m->cfg.arch = ARCH_QWEN2;
    else return load_fail(err, errlen, KB_EUNSUPPORTED, "architecture '%s' is not supported yet (llama, qwen2)", name);
    int rc = load_config(m, name, err, errlen);
    if (rc != KB_OK) return rc;
    const ModelConfig *c = &m->cfg;
    m->w.layers = calloc((size_t)c->n_layer, sizeof *m->w.layers);
    m->vectors = malloc(vector_floats(c) * sizeof(float));
    if (!m->w.layers || !m->vectors) return load_fail(err, errlen, KB_ENOMEM, "out of memory");
    float *next = m->vectors;
    rc = load_mat(m, &m->w.token_embd, "token_embd.weight", c->n_embd, c->n_vocab, err, errlen);
    if (rc == KB_OK) rc = load_vec(m, &m->w.output_norm, &next, "output_norm.weight", c->n_embd, true, err, errlen);
    if (rc == KB_OK) {
        if (gguf_find_tensor(m->gguf, "output.weight")) rc = load_mat(m, &m->w.output, "output.weight", c->n_embd, c->n_vocab, err, errlen);
        else m->w.output = m->w.token_embd; /* tied */
    }
    for (int64_t l = 0; l < c->n_layer && rc == KB_OK; l++) rc = load_layer(m, l, &next, err, errlen);
    return rc;
}

/* --- forward --- */

static void add_bias(float *x, const float *b, int64_t n_tok, int64_t dim)
{
    if (b == NULL) return;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < dim; i++) x[t * dim + i] += b[i];
}

static void add_into(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* Writes the batch's keys and values into layer l's fp16 cache. */
static void store_kv(KbModel *m, int64_t l, int64_t pos0, int64_t n)
{
    int64_t kv_dim = m->cfg.n_head_kv * m->cfg.head_dim;
    const KbTypeKernels *f16 = &m->kern->type[KB_TYPE_F16];
    for (int64_t t = 0; t < n; t++) {
        size_t off = ((size_t)l * m->n_ctx + pos0 + t) * kv_dim;
        f16->from_float(m->s.k + t * kv_dim, m->s.key_cache + off, kv_dim);
        f16->from_float(m->s.v + t * kv_dim, m->s.value_cache + off, kv_dim);
    }
}

/* The attention half of layer l. */
static void attention_block(KbModel *m, int64_t l, int64_t n, int64_t pos0)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    ModelState *s = &m->s;
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    for (int64_t t = 0; t < n; t++) model_rmsnorm(s->xb + t * c->n_embd, s->x + t * c->n_embd, L->attn_norm, c->n_embd, c->norm_eps);
    model_matmul(m, &L->wq, s->xb, n, s->q);
    model_matmul(m, &L->wk, s->xb, n, s->k);
    model_matmul(m, &L->wv, s->xb, n, s->v);
    add_bias(s->q, L->bq, n, q_dim);
    add_bias(s->k, L->bk, n, kv_dim);
    add_bias(s->v, L->bv, n, kv_dim);
    for (int64_t t = 0; t < n; t++) {
        model_rope(c, s->q + t * q_dim, c->n_head, pos0 + t);
        model_rope(c, s->k + t * kv_dim, c->n_head_kv, pos0 + t);
    }
    store_kv(m, l, pos0, n);
    model_attention(m, l, pos0, n);
    model_matmul(m, &L->wo, s->att, n, s->xb2);
    add_into(s->x, s->xb2, n * c->n_embd);
}

/* The feed-forward half of layer l. */
static void ffn_block(KbModel *m, int64_t l, int64_t n)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    ModelState *s = &m->s;
    for (int64_t t = 0; t < n; t++) model_rmsnorm(s->xb + t * c->n_embd, s->x + t * c->n_embd, L->ffn_norm, c->n_embd, c->norm_eps);
    model_matmul(m, &L->w_gate, s->xb, n, s->hb);
    model_matmul(m, &L->w_up, s->xb, n, s->hb2);
    for (int64_t i = 0; i < n * c->n_ff; i++) {
        float g = s->hb[i];
        s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i];
    }
    model_matmul(m, &L->w_down, s->hb, n, s->xb2);
    add_into(s->x, s->xb2, n * c->n_embd);
}

void llama_forward(KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, float *logits, bool all_logits)
{
    const ModelConfig *c = &m->cfg;
    ModelState *s = &m->s;
    const Mat *e = &m->w.token_embd;
    for (int64_t t = 0; t < n; t++)
        m->kern->type[e->type].to_float(e->data + (size_t)tokens[t] * e->row_bytes, s->x + t * c->n_embd, c->n_embd);
    for (int64_t l = 0; l < c->n_layer; l++) {
        attention_block(m, l, n, pos0);
        ffn_block(m, l, n);
    }
    if (logits == NULL) return;
    int64_t first = all_logits ? 0 : n - 1;
    for (int64_t t = first; t < n; t++)
        model_rmsnorm(s->xb + (t - first) * c->n_embd, s->x + t * c->n_embd, m->w.output_norm, c->n_embd, c->norm_eps);
    model_matmul(m, &m->w.output, s->xb, n - first, logits);
}
