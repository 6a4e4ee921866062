/*
** arch_bloom.c: BLOOM, BLOOMZ, BELLE-7B, Phoenix (GGUF arch "bloom").
**
** x = LayerNorm(embedding) with the embedding norm; per layer (LayerNorms
** with biases, no rotary positions: ALiBi biases the attention scores):
**   h = LN(x); [q | k | v] = W_qkv h + b; x += W_o Attention(q, K, V) + b_o
**   h = LN(x); x += W_down GELU(W_up h + b_up) + b_down
** then logits = W_out LN(x) (W_out is token_embd when tied).
** ALiBi slopes for any head count (powers of two or not): with
** n2 = 2^floor(log2 n_head), m0 = 2^(-8/n2), m1 = 2^(-4/n2): slope_h = m0^(h+1)
** for h < n2, else m1^(2(h - n2) + 1).
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/model_impl.h"

/* Fills the slopes as ggml_soft_max_ext computes them (max_bias 8). */
static void alibi_slopes(float *slopes, int64_t n_head)
{
    int64_t n2 = 1;
    while (n2 * 2 <= n_head) n2 *= 2;
    float m0 = powf(2.0f, -8.0f / (float)n2), m1 = powf(2.0f, -4.0f / (float)n2);
    for (int64_t h = 0; h < n_head; h++)
        slopes[h] = h < n2 ? powf(m0, (float)(h + 1)) : powf(m1, (float)(2 * (h - n2) + 1));
}

static int bloom_load_layer(KbModel *m, int64_t l, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    LayerWeights *L = &m->w.layers[l];
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim, d = c->n_embd;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)l), n)
    int rc = model_load_vec(m, &L->attn_norm, NAME("attn_norm.weight"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->attn_norm_b, NAME("attn_norm.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wqkv, NAME("attn_qkv.weight"), d, q_dim + 2 * kv_dim, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bqkv, NAME("attn_qkv.bias"), q_dim + 2 * kv_dim, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wo, NAME("attn_output.weight"), q_dim, d, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bo, NAME("attn_output.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->ffn_norm, NAME("ffn_norm.weight"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->ffn_norm_b, NAME("ffn_norm.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_up, NAME("ffn_up.weight"), d, c->n_ff, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->b_up, NAME("ffn_up.bias"), c->n_ff, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_down, NAME("ffn_down.weight"), c->n_ff, d, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->b_down, NAME("ffn_down.bias"), d, true, err, errlen);
#undef NAME
    return rc;
}

static int bloom_load(KbModel *m, char *err, size_t errlen)
{
    ModelConfig *c = &m->cfg;
    int64_t n_head = 0;
    /* room for the slopes, one per head (read before the pool is sized) */
    if (gguf_get_int(m->gguf, "bloom.attention.head_count", &n_head) != KB_OK || n_head <= 0 || n_head > 4096) n_head = 4096;
    int rc = model_load_common(m, "attention.layer_norm_epsilon", (size_t)n_head, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &m->w.token_embd, "token_embd.weight", c->n_embd, c->n_vocab, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.embd_norm, "token_embd_norm.weight", c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.embd_norm_b, "token_embd_norm.bias", c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.output_norm, "output_norm.weight", c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.output_norm_b, "output_norm.bias", c->n_embd, true, err, errlen);
    if (rc == KB_OK) {
        if (gguf_find_tensor(m->gguf, "output.weight"))
            rc = model_load_mat(m, &m->w.output, "output.weight", c->n_embd, c->n_vocab, err, errlen);
        else
            m->w.output = m->w.token_embd; /* tied */
    }
    for (int64_t l = 0; l < c->n_layer && rc == KB_OK; l++) rc = bloom_load_layer(m, l, err, errlen);
    if (rc == KB_OK) {
        m->w.alibi_slopes = m->vec_next;
        m->vec_next += c->n_head;
        alibi_slopes(m->w.alibi_slopes, c->n_head);
    }
    return rc;
}

static void bloom_layer(KbModel *m, int64_t l, int64_t n, int64_t pos0)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    ModelState *s = &m->s;
    int64_t d = c->n_embd, q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    for (int64_t t = 0; t < n; t++) model_layernorm(s->xb + t * d, s->x + t * d, L->attn_norm, L->attn_norm_b, d, c->norm_eps);
    model_matmul(m, &L->wqkv, s->xb, n, s->qkv);
    model_add_bias(s->qkv, L->bqkv, n, q_dim + 2 * kv_dim);
    model_split_qkv(m, s->qkv, n);
    model_store_kv(m, l, pos0, n);
    model_attention(m, l, pos0, n);
    model_matmul(m, &L->wo, s->att, n, s->xb2);
    model_add_bias(s->xb2, L->bo, n, d);
    for (int64_t i = 0; i < n * d; i++) s->x[i] += s->xb2[i];
    for (int64_t t = 0; t < n; t++) model_layernorm(s->xb + t * d, s->x + t * d, L->ffn_norm, L->ffn_norm_b, d, c->norm_eps);
    model_matmul(m, &L->w_up, s->xb, n, s->hb);
    model_add_bias(s->hb, L->b_up, n, c->n_ff);
    model_gelu(m, s->hb, n * c->n_ff);
    model_matmul(m, &L->w_down, s->hb, n, s->xb2);
    model_add_bias(s->xb2, L->b_down, n, d);
    for (int64_t i = 0; i < n * d; i++) s->x[i] += s->xb2[i];
}

static void bloom_forward(KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, float *logits, bool all_logits)
{
    const ModelConfig *c = &m->cfg;
    ModelState *s = &m->s;
    const Mat *e = &m->w.token_embd;
    int64_t d = c->n_embd;
    for (int64_t t = 0; t < n; t++) {
        m->kern->type[e->type].to_float(e->data + (size_t)tokens[t] * e->row_bytes, s->xb, d);
        model_layernorm(s->x + t * d, s->xb, m->w.embd_norm, m->w.embd_norm_b, d, c->norm_eps);
    }
    for (int64_t l = 0; l < c->n_layer; l++) {
        if (model_should_stop(m, false)) return;
        bloom_layer(m, l, n, pos0);
    }
    if (logits == NULL) return;
    int64_t first = all_logits ? 0 : n - 1;
    for (int64_t t = first; t < n; t++)
        model_layernorm(s->xb + (t - first) * d, s->x + t * d, m->w.output_norm, m->w.output_norm_b, d, c->norm_eps);
    model_matmul(m, &m->w.output, s->xb, n - first, logits);
}

const ArchOps arch_bloom = {"bloom", ARCH_BLOOM, bloom_load, bloom_forward};
