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
#include <stdio.h>
#include <string.h>

#include "engine/model_impl.h"

/* --- loading --- */

/* Reads llama/qwen2 hyperparameters with llama.cpp's defaults. */
static int load_config(KbModel *m, char *err, size_t errlen)
{
    ModelConfig *c = &m->cfg;
    int rc = model_load_common(m, "attention.layer_norm_rms_epsilon", 0, err, errlen);
    c->rope_neox = c->arch == ARCH_QWEN2;
    if (rc == KB_OK) rc = model_key_float(m, "rope.freq_base", &c->rope_base, err, errlen);
    float factor = 1.0f;
    if (rc == KB_OK) rc = model_key_float(m, "rope.scaling.factor", &factor, err, errlen);
    c->rope_freq_scale = 1.0f / factor;
    if (rc == KB_OK) rc = model_key_int(m, "rope.dimension_count", &c->n_rot, false, err, errlen);
    if (rc == KB_OK && (c->n_rot > c->head_dim || c->n_rot % 2 || c->n_rot > 1024))
        return kb_error(err, errlen, KB_EFORMAT, "%s.rope.dimension_count is %lld, expected an even number up to %lld",
                          m->arch_name, (long long)c->n_rot, (long long)c->head_dim);
    return rc;
}

/* Points one layer's weights into the mapping. */
static int load_layer(KbModel *m, int64_t l, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    LayerWeights *L = &m->w.layers[l];
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    bool biases = c->arch == ARCH_QWEN2;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)l), n)
    int rc = model_load_vec(m, &L->attn_norm, NAME("attn_norm.weight"), c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wq, NAME("attn_q.weight"), c->n_embd, q_dim, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wk, NAME("attn_k.weight"), c->n_embd, kv_dim, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wv, NAME("attn_v.weight"), c->n_embd, kv_dim, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wo, NAME("attn_output.weight"), q_dim, c->n_embd, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bq, NAME("attn_q.bias"), q_dim, biases, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bk, NAME("attn_k.bias"), kv_dim, biases, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bv, NAME("attn_v.bias"), kv_dim, biases, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->ffn_norm, NAME("ffn_norm.weight"), c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_gate, NAME("ffn_gate.weight"), c->n_embd, c->n_ff, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_up, NAME("ffn_up.weight"), c->n_embd, c->n_ff, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_down, NAME("ffn_down.weight"), c->n_ff, c->n_embd, err, errlen);
#undef NAME
    return rc;
}

static int llama_load(KbModel *m, char *err, size_t errlen)
{
    int rc = load_config(m, err, errlen);
    const ModelConfig *c = &m->cfg;
    if (rc == KB_OK) rc = model_load_mat(m, &m->w.token_embd, "token_embd.weight", c->n_embd, c->n_vocab, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.output_norm, "output_norm.weight", c->n_embd, true, err, errlen);
    if (rc == KB_OK) {
        if (gguf_find_tensor(m->gguf, "output.weight"))
            rc = model_load_mat(m, &m->w.output, "output.weight", c->n_embd, c->n_vocab, err, errlen);
        else
            m->w.output = m->w.token_embd; /* tied */
    }
    for (int64_t l = 0; l < c->n_layer && rc == KB_OK; l++) rc = load_layer(m, l, err, errlen);
    return rc;
}

/* --- forward --- */

static void add_into(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
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
    model_add_bias(s->q, L->bq, n, q_dim);
    model_add_bias(s->k, L->bk, n, kv_dim);
    model_add_bias(s->v, L->bv, n, kv_dim);
    for (int64_t t = 0; t < n; t++) {
        model_rope(c, s->q + t * q_dim, c->n_head, pos0 + t);
        model_rope(c, s->k + t * kv_dim, c->n_head_kv, pos0 + t);
    }
    model_store_kv(m, l, pos0, n);
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

static void llama_forward(KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, float *logits, bool all_logits)
{
    model_lookup_tokens(m, tokens, n);
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        if (model_should_stop(m, false)) return;
        attention_block(m, l, n, pos0);
        ffn_block(m, l, n);
    }
    model_rms_logits(m, n, logits, all_logits);
}

const ArchOps arch_llama = {"llama", ARCH_LLAMA, llama_load, llama_forward};
const ArchOps arch_qwen2 = {"qwen2", ARCH_QWEN2, llama_load, llama_forward};
