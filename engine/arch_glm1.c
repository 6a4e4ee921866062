/*
** arch_glm1.c: ChatGLM-6B, the first generation ("chatglm1": chatglm.cpp
** GGML files of model type 1; the tensors in GGUF's words, model_ggml.c
** translates them).
**
** Per layer, DeepNorm post-LN with LayerNorms that have biases:
**   a = LN1(x)
**   [q|k|v] per head = W_qkv a + b_qkv
**   2D rotary: NEOX rotation of each head's first half by the position id,
**   of its second half by the block position id
**   h = a * alpha + (W_o Attention(q, K, V) + b_o)
**   m = LN2(h)
**   x = m * alpha + (W_down GELU(W_up m + b_up) + b_down)
** then LN(output_norm) and the tied output (the embedding matrix).
** alpha = sqrt(2 * 28): the official code fixes the layer count at 28 in
** the block whatever the model has (see ../shared/testdata/peer).
**
** Positions. The prompt ends with [gMASK] <sop>; with c the index of the
** first <sop> and g that of the first [gMASK] (else [MASK], else c - 1):
**   position id       p for p < c, g from c on
**   block position    0 for p < c, then 1, 2, 3 ... from c on
**   attention         tokens before c see each other both ways (the
**                     context); from c on attention is causal
** as the reference get_position_ids / get_masks compute. With no <sop> yet,
** every token so far is context.
**
** The context is one unit: a token's keys and values depend on the tokens
** after it. So it is evaluated layer by layer over all its tokens at once
** (s.ctx_x holds their residual stream, s.ctx_q their queries), in batches
** for the matrix products, when the first token after it arrives or logits
** are wanted; a batch of context alone is only noted (model_decode's later
** batches bring the rest). When the cache is cut inside the context, or the
** context grows (no <sop> yet), it is evaluated again from the start.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/model_impl.h"

#define GLM1_ALPHA 7.48331477354788f /* sqrt(2 * 28) */

/* Where the context ends and the 2D positions of the current sequence. */
typedef struct Glm1Seq {
    int64_t c;       /* index of the first <sop>, -1 when none yet */
    int64_t g;       /* the position id of every token from c on */
    int64_t ctx_end; /* tokens before c (all of them without a <sop>) */
} Glm1Seq;

/* --- loading --- */

/* Points layer l's weights into the file (shapes in GGUF order, biases
** everywhere); err names the tensor at fault. */
static int glm1_load_layer(KbModel *m, int64_t l, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    LayerWeights *L = &m->w.layers[l];
    int64_t d = c->n_embd, qkv = 3 * c->n_head * c->head_dim;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)l), n)
    int rc = model_load_vec(m, &L->attn_norm, NAME("attn_norm.weight"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->attn_norm_b, NAME("attn_norm.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wqkv, NAME("attn_qkv.weight"), d, qkv, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bqkv, NAME("attn_qkv.bias"), qkv, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wo, NAME("attn_output.weight"), d, d, err, errlen);
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

/* Reads the hyperparameters (LayerNorm eps, heads that halve into even
** rotary parts, as many KV heads as heads), finds the ids of <sop>, [gMASK]
** and [MASK], and points the weights into the file; the output is the
** embedding matrix. Returns KB_OK or the code of the first failure. */
static int glm1_load(KbModel *m, char *err, size_t errlen)
{
    ModelConfig *c = &m->cfg;
    int rc = model_load_common(m, "attention.layer_norm_epsilon", 0, err, errlen);
    if (rc != KB_OK) return rc;
    if (c->n_head_kv != c->n_head || c->head_dim % 4 != 0 || c->head_dim / 2 > 1024) {
        return kb_error(err, errlen, KB_EFORMAT,
                          "chatglm1: %lld heads of %lld with %lld KV heads; expected as many KV heads and a head size "
                          "that halves into even parts", (long long)c->n_head, (long long)c->head_dim, (long long)c->n_head_kv);
    }
    c->n_rot = c->head_dim / 2; /* each half of a head is rotated on its own */
    c->rope_neox = true;
    c->rope_base = 10000.0f;    /* fixed in the reference code and in chatglm.cpp */
    c->prefix_lm = true;
    c->glm_sop = tokenizer_find(m->tok, "<sop>", 5);
    c->glm_gmask = tokenizer_find(m->tok, "[gMASK]", 7);
    c->glm_mask = tokenizer_find(m->tok, "[MASK]", 6);
    rc = model_load_mat(m, &m->w.token_embd, "token_embd.weight", c->n_embd, c->n_vocab, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.output_norm, "output_norm.weight", c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.output_norm_b, "output_norm.bias", c->n_embd, true, err, errlen);
    if (rc == KB_OK) m->w.output = m->w.token_embd; /* tied */
    for (int64_t l = 0; l < c->n_layer && rc == KB_OK; l++) rc = glm1_load_layer(m, l, err, errlen);
    return rc;
}

/* --- positions --- */

/* Token i of the sequence: the cache before pos0, this batch after. */
static int32_t glm1_token(const KbModel *m, const int32_t *tokens, int64_t pos0, int64_t i)
{
    return i < pos0 ? m->cache_tokens[i] : tokens[i - pos0];
}

/* Finds <sop> and the mask token in the sequence [0, pos0 + n). */
static void glm1_scan(const KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, Glm1Seq *sq)
{
    const ModelConfig *c = &m->cfg;
    int64_t end = pos0 + n, gmask = -1, mask = -1;
    sq->c = -1;
    for (int64_t i = 0; i < end && sq->c < 0; i++) {
        int32_t id = glm1_token(m, tokens, pos0, i);
        if (id == c->glm_sop) sq->c = i;
        else if (id == c->glm_gmask && gmask < 0) gmask = i;
        else if (id == c->glm_mask && mask < 0) mask = i;
    }
    sq->ctx_end = sq->c >= 0 ? sq->c : end;
    sq->g = gmask >= 0 ? gmask : mask >= 0 ? mask : sq->c > 0 ? sq->c - 1 : 0;
}

/* Rotates one token's q or k row: the first half of each head by the
** position id, the second half by the block position id. */
static void glm1_rope(const ModelConfig *c, float *row, const Glm1Seq *sq, int64_t p)
{
    bool ctx = p < sq->ctx_end;
    model_rope(c, row, c->n_head, ctx ? p : sq->g);
    model_rope(c, row + c->head_dim / 2, c->n_head, ctx ? 0 : p - sq->c + 1);
}

/* --- one block --- */

/* GELU (tanh form) in float, as the reference gelu_impl computes it. Not
** ggml's fp16 table (model_gelu): on the peer model the table alone puts
** the outputs 2e-4 from the official ones, four times the rest together. */
static void glm1_gelu(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * v * (1.0f + 0.044715f * v * v)));
    }
}

/* The first half of layer l for n rows x (positions p0..): LN1, the fused
** projection split per head into q (to q_out), k and v (s.k, s.v), the 2D
** rotation, and the keys and values into the cache. */
static void glm1_qkv(KbModel *m, int64_t l, const float *x, int64_t n, int64_t p0, const Glm1Seq *sq, float *q_out)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    ModelState *s = &m->s;
    int64_t d = c->n_embd, hd = c->head_dim, q_dim = c->n_head * hd;
    for (int64_t t = 0; t < n; t++) model_layernorm(s->xb + t * d, x + t * d, L->attn_norm, L->attn_norm_b, d, c->norm_eps);
    model_matmul(m, &L->wqkv, s->xb, n, s->qkv);
    model_add_bias(s->qkv, L->bqkv, n, 3 * q_dim);
    for (int64_t t = 0; t < n; t++) {
        const float *row = s->qkv + t * 3 * q_dim;
        for (int64_t h = 0; h < c->n_head; h++) {
            memcpy(q_out + t * q_dim + h * hd, row + 3 * h * hd, (size_t)hd * sizeof(float));
            memcpy(s->k + t * q_dim + h * hd, row + 3 * h * hd + hd, (size_t)hd * sizeof(float));
            memcpy(s->v + t * q_dim + h * hd, row + 3 * h * hd + 2 * hd, (size_t)hd * sizeof(float));
        }
        glm1_rope(c, q_out + t * q_dim, sq, p0 + t);
        glm1_rope(c, s->k + t * q_dim, sq, p0 + t);
    }
    model_store_kv(m, l, p0, n);
}

/* The rest of layer l for n rows x whose attention output is in s.att:
** output projection, the DeepNorm residuals and the MLP, x updated. */
static void glm1_finish(KbModel *m, int64_t l, float *x, int64_t n)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    ModelState *s = &m->s;
    int64_t d = c->n_embd;
    model_matmul(m, &L->wo, s->att, n, s->xb2);
    model_add_bias(s->xb2, L->bo, n, d);
    for (int64_t t = 0; t < n; t++) {
        float *xt = x + t * d, *a = s->xb + t * d;
        model_layernorm(a, xt, L->attn_norm, L->attn_norm_b, d, c->norm_eps); /* again: s.xb was reused */
        for (int64_t i = 0; i < d; i++) xt[i] = a[i] * GLM1_ALPHA + s->xb2[t * d + i];
        model_layernorm(a, xt, L->ffn_norm, L->ffn_norm_b, d, c->norm_eps);
    }
    model_matmul(m, &L->w_up, s->xb, n, s->hb);
    model_add_bias(s->hb, L->b_up, n, c->n_ff);
    glm1_gelu(s->hb, n * c->n_ff);
    model_matmul(m, &L->w_down, s->hb, n, s->xb2);
    model_add_bias(s->xb2, L->b_down, n, d);
    for (int64_t i = 0; i < n * d; i++) x[i] = s->xb[i] * GLM1_ALPHA + s->xb2[i];
}

/* Evaluates the whole context [0, ctx_end) layer by layer: every batch's
** keys and values first, then every batch's attention and MLP. */
static void glm1_eval_context(KbModel *m, const int32_t *tokens, int64_t pos0, const Glm1Seq *sq)
{
    const ModelConfig *c = &m->cfg;
    ModelState *s = &m->s;
    const Mat *e = &m->w.token_embd;
    int64_t d = c->n_embd, q_dim = c->n_head * c->head_dim, nb = s->n_batch, n = sq->ctx_end;
    for (int64_t i = 0; i < n; i++)
        m->kern->type[e->type].to_float(e->data + (size_t)glm1_token(m, tokens, pos0, i) * e->row_bytes, s->ctx_x + i * d, d);
    s->ctx_done = 0; /* until every layer is done: a cancel leaves it to be recomputed */
    for (int64_t l = 0; l < c->n_layer; l++) {
        if (model_should_stop(m, false)) return;
        for (int64_t a = 0; a < n; a += nb) {
            int64_t k = n - a < nb ? n - a : nb;
            glm1_qkv(m, l, s->ctx_x + a * d, k, a, sq, s->ctx_q + a * q_dim);
        }
        for (int64_t a = 0; a < n; a += nb) { /* the context attends both ways: every row sees [0, n) */
            AttnArgs at = {.layer = l, .q = s->ctx_q + a * q_dim, .q_stride = q_dim, .out = s->att, .out_stride = q_dim,
                           .n_tok = n - a < nb ? n - a : nb, .pos0 = a, .n_keys = n};
            model_attend(m, &at);
            glm1_finish(m, l, s->ctx_x + a * d, at.n_tok);
        }
    }
    s->ctx_done = n;
}

/* --- the forward pass --- */

/* The tokens of the batch after the context: causal attention over the
** cache, in s.x. */
static void glm1_eval_rest(KbModel *m, const int32_t *tokens, int64_t pos0, int64_t r0, int64_t n, const Glm1Seq *sq)
{
    const ModelConfig *c = &m->cfg;
    ModelState *s = &m->s;
    const Mat *e = &m->w.token_embd;
    int64_t d = c->n_embd;
    for (int64_t t = 0; t < n; t++)
        m->kern->type[e->type].to_float(e->data + (size_t)tokens[r0 - pos0 + t] * e->row_bytes, s->x + t * d, d);
    for (int64_t l = 0; l < c->n_layer; l++) {
        if (model_should_stop(m, false)) return;
        glm1_qkv(m, l, s->x, n, r0, sq, s->q);
        model_attention(m, l, r0, n);
        glm1_finish(m, l, s->x, n);
    }
}

/* See model_impl.h: the context first (when it is complete or logits are
** wanted), then the batch's later tokens, then the logits of the rows asked
** for, whose final hidden states stay in s.xb. */
static void glm1_forward(KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, float *logits, bool all_logits)
{
    const ModelConfig *c = &m->cfg;
    ModelState *s = &m->s;
    int64_t d = c->n_embd;
    Glm1Seq sq;
    glm1_scan(m, tokens, n, pos0, &sq);
    if (pos0 < s->ctx_done) s->ctx_done = 0; /* the cache was cut inside the context: all of it changes */
    int64_t r0 = pos0 > sq.ctx_end ? pos0 : sq.ctx_end;
    if (s->ctx_done != sq.ctx_end) {
        if (r0 == pos0 + n && logits == NULL) return; /* context only: wait for the rest of it */
        glm1_eval_context(m, tokens, pos0, &sq);
        if (m->cancelled) return;
    }
    if (pos0 + n > r0) glm1_eval_rest(m, tokens, pos0, r0, pos0 + n - r0, &sq);
    if (logits == NULL || m->cancelled) return;
    int64_t first = all_logits ? pos0 : pos0 + n - 1;
    for (int64_t p = first; p < pos0 + n; p++) {
        const float *h = p < sq.ctx_end ? s->ctx_x + p * d : s->x + (p - r0) * d;
        model_layernorm(s->xb + (p - first) * d, h, m->w.output_norm, m->w.output_norm_b, d, c->norm_eps);
    }
    model_matmul(m, &m->w.output, s->xb, pos0 + n - first, logits);
}

const ArchOps arch_chatglm1 = {"chatglm1", ARCH_CHATGLM1, glm1_load, glm1_forward};
