/*
** arch_glm.c: ChatGLM2-6B, ChatGLM3-6B and GLM-4-9B (GGUF arch "chatglm").
**
** Per layer (RMSNorm everywhere, untied output):
**   h = RMSNorm(x) * attn_norm
**   [q | k | v] = W_qkv h + b_qkv            (one fused projection, MQA/GQA)
**   RoPE (adjacent pairs) on the first n_rot = head_dim/2 dims of each head
**   x += W_o Attention(q, K, V)
**   h = RMSNorm(x) * ffn_norm
**   [g | u] = W_up h                          (one matrix, 2 n_ff wide)
**   x += W_down (SiLU(g) * u)
** The [gMASK] sop prefix belongs to the chat template, not to the graph.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/model_impl.h"

static int glm_load_layer(KbModel *m, int64_t l, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    LayerWeights *L = &m->w.layers[l];
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)l), n)
    int rc = model_load_vec(m, &L->attn_norm, NAME("attn_norm.weight"), c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wqkv, NAME("attn_qkv.weight"), c->n_embd, q_dim + 2 * kv_dim, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bqkv, NAME("attn_qkv.bias"), q_dim + 2 * kv_dim, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wo, NAME("attn_output.weight"), q_dim, c->n_embd, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->ffn_norm, NAME("ffn_norm.weight"), c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_up, NAME("ffn_up.weight"), c->n_embd, 2 * c->n_ff, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_down, NAME("ffn_down.weight"), c->n_ff, c->n_embd, err, errlen);
#undef NAME
    return rc;
}

static int glm_load(KbModel *m, char *err, size_t errlen)
{
    ModelConfig *c = &m->cfg;
    int rc = model_load_common(m, "attention.layer_norm_rms_epsilon", 0, err, errlen);
    if (rc == KB_OK) rc = model_key_float(m, "rope.freq_base", &c->rope_base, err, errlen);
    if (rc == KB_OK) c->n_rot = c->head_dim / 2;
    if (rc == KB_OK) rc = model_key_int(m, "rope.dimension_count", &c->n_rot, false, err, errlen);
    if (rc == KB_OK && (c->n_rot > c->head_dim || c->n_rot % 2 || c->n_rot > 1024))
        return kb_error(err, errlen, KB_EFORMAT, "chatglm.rope.dimension_count is %lld, expected an even number up to %lld",
                          (long long)c->n_rot, (long long)c->head_dim);
    if (rc == KB_OK) rc = model_load_mat(m, &m->w.token_embd, "token_embd.weight", c->n_embd, c->n_vocab, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.output_norm, "output_norm.weight", c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &m->w.output, "output.weight", c->n_embd, c->n_vocab, err, errlen);
    for (int64_t l = 0; l < c->n_layer && rc == KB_OK; l++) rc = glm_load_layer(m, l, err, errlen);
    return rc;
}

static void glm_attention(KbModel *m, int64_t l, int64_t n, int64_t pos0)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    ModelState *s = &m->s;
    int64_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    for (int64_t t = 0; t < n; t++)
        model_rmsnorm(s->xb + t * c->n_embd, s->x + t * c->n_embd, L->attn_norm, c->n_embd, c->norm_eps);
    model_matmul(m, &L->wqkv, s->xb, n, s->qkv);
    model_add_bias(s->qkv, L->bqkv, n, q_dim + 2 * kv_dim);
    model_split_qkv(m, s->qkv, n);
    for (int64_t t = 0; t < n; t++) {
        model_rope(c, s->q + t * q_dim, c->n_head, pos0 + t);
        model_rope(c, s->k + t * kv_dim, c->n_head_kv, pos0 + t);
    }
    model_store_kv(m, l, pos0, n);
    model_attention(m, l, pos0, n);
    model_matmul(m, &L->wo, s->att, n, s->xb2);
    for (int64_t i = 0; i < n * c->n_embd; i++) s->x[i] += s->xb2[i];
}

static void glm_ffn(KbModel *m, int64_t l, int64_t n)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    ModelState *s = &m->s;
    for (int64_t t = 0; t < n; t++)
        model_rmsnorm(s->xb + t * c->n_embd, s->x + t * c->n_embd, L->ffn_norm, c->n_embd, c->norm_eps);
    model_matmul(m, &L->w_up, s->xb, n, s->hb);
    for (int64_t t = 0; t < n; t++) {
        const float *gu = s->hb + t * 2 * c->n_ff;
        float *a = s->hb2 + t * c->n_ff;
        for (int64_t i = 0; i < c->n_ff; i++) a[i] = gu[i] / (1.0f + expf(-gu[i])) * gu[c->n_ff + i];
    }
    model_matmul(m, &L->w_down, s->hb2, n, s->xb2);
    for (int64_t i = 0; i < n * c->n_embd; i++) s->x[i] += s->xb2[i];
}

static void glm_forward(KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, float *logits, bool all_logits)
{
    model_lookup_tokens(m, tokens, n);
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        if (model_should_stop(m, false)) return;
        glm_attention(m, l, n, pos0);
        glm_ffn(m, l, n);
    }
    model_rms_logits(m, n, logits, all_logits);
}

const ArchOps arch_chatglm = {"chatglm", ARCH_CHATGLM, glm_load, glm_forward};
