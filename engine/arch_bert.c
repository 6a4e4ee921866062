/*
** arch_bert.c: BERT-family embedding models (bge, m3e, text2vec: GGUF arch
** "bert"), for retrieval.
**
** A bidirectional encoder with post-LayerNorm blocks:
**   x = LN(token + token_type[0] + position)
**   per layer: x = LN(x + W_o Attention(W_q x + b_q, W_k x + b_k, W_v x + b_v) + b_o)
**              x = LN(x + W_down GELU(W_up x + b_up) + b_down)
** Attention sees the whole sequence (no mask, no cache: the tiled attention
** over the float keys and values of the batch). The final hidden
** states stay in s.x; model_embed pools them (mean or CLS).
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/model_impl.h"

static int bert_load_layer(KbModel *m, int64_t l, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    LayerWeights *L = &m->w.layers[l];
    int64_t d = c->n_embd;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)l), n)
    int rc = model_load_mat(m, &L->wq, NAME("attn_q.weight"), d, d, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bq, NAME("attn_q.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wk, NAME("attn_k.weight"), d, d, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bk, NAME("attn_k.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wv, NAME("attn_v.weight"), d, d, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bv, NAME("attn_v.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->wo, NAME("attn_output.weight"), d, d, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->bo, NAME("attn_output.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->attn_out_norm, NAME("attn_output_norm.weight"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->attn_out_norm_b, NAME("attn_output_norm.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_up, NAME("ffn_up.weight"), d, c->n_ff, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->b_up, NAME("ffn_up.bias"), c->n_ff, true, err, errlen);
    if (rc == KB_OK) rc = model_load_mat(m, &L->w_down, NAME("ffn_down.weight"), c->n_ff, d, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->b_down, NAME("ffn_down.bias"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->layer_out_norm, NAME("layer_output_norm.weight"), d, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &L->layer_out_norm_b, NAME("layer_output_norm.bias"), d, true, err, errlen);
#undef NAME
    return rc;
}

static int bert_load(KbModel *m, char *err, size_t errlen)
{
    ModelConfig *c = &m->cfg;
    int64_t pooling = 1;
    int rc = model_load_common(m, "attention.layer_norm_epsilon", 0, err, errlen);
    c->encoder = true;
    if (rc == KB_OK) rc = model_key_int(m, "pooling_type", &pooling, false, err, errlen);
    if (rc == KB_OK && pooling != 1 && pooling != 2)
        return kb_error(err, errlen, KB_EUNSUPPORTED, "bert.pooling_type %lld is not supported (1 mean, 2 CLS)", (long long)pooling);
    c->pooling = (int)pooling;
    const GgufTensor *types = gguf_find_tensor(m->gguf, "token_types.weight");
    int64_t n_types = types && types->n_dims == 2 && types->ne[0] == c->n_embd ? types->ne[1] : 1;
    if (rc == KB_OK) rc = model_load_mat(m, &m->w.token_embd, "token_embd.weight", c->n_embd, c->n_vocab, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.token_types, "token_types.weight", c->n_embd * n_types, true, err, errlen);
    if (rc == KB_OK)
        rc = model_load_vec(m, &m->w.position_embd, "position_embd.weight", c->n_embd * c->n_ctx_train, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.embd_norm, "token_embd_norm.weight", c->n_embd, true, err, errlen);
    if (rc == KB_OK) rc = model_load_vec(m, &m->w.embd_norm_b, "token_embd_norm.bias", c->n_embd, true, err, errlen);
    for (int64_t l = 0; l < c->n_layer && rc == KB_OK; l++) rc = bert_load_layer(m, l, err, errlen);
    return rc;
}

/* x = LN(x + y) row by row. */
static void add_and_norm(float *x, const float *y, const float *w, const float *b, int64_t n, int64_t d, float eps)
{
    for (int64_t t = 0; t < n; t++) {
        for (int64_t i = 0; i < d; i++) x[t * d + i] += y[t * d + i];
        model_layernorm(x + t * d, x + t * d, w, b, d, eps);
    }
}

static void bert_layer(KbModel *m, int64_t l, int64_t n)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    ModelState *s = &m->s;
    int64_t d = c->n_embd;
    model_matmul(m, &L->wq, s->x, n, s->q);
    model_matmul(m, &L->wk, s->x, n, s->k);
    model_matmul(m, &L->wv, s->x, n, s->v);
    model_add_bias(s->q, L->bq, n, d);
    model_add_bias(s->k, L->bk, n, d);
    model_add_bias(s->v, L->bv, n, d);
    /* bidirectional over the sequence's own float keys and values (an encoder keeps no cache) */
    AttnArgs a = {.q = s->q, .q_stride = d, .out = s->att, .out_stride = d, .n_tok = n, .n_keys = n,
                  .k_rows = s->k, .v_rows = s->v, .kv_stride = d};
    model_attend(m, &a);
    model_matmul(m, &L->wo, s->att, n, s->xb2);
    model_add_bias(s->xb2, L->bo, n, d);
    add_and_norm(s->x, s->xb2, L->attn_out_norm, L->attn_out_norm_b, n, d, c->norm_eps);
    model_matmul(m, &L->w_up, s->x, n, s->hb);
    model_add_bias(s->hb, L->b_up, n, c->n_ff);
    model_gelu(m, s->hb, n * c->n_ff);
    model_matmul(m, &L->w_down, s->hb, n, s->xb2);
    model_add_bias(s->xb2, L->b_down, n, d);
    add_and_norm(s->x, s->xb2, L->layer_out_norm, L->layer_out_norm_b, n, d, c->norm_eps);
}

/* Positions start at 0 for every sequence; pos0 and logits are unused. */
static void bert_forward(KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, float *logits, bool all_logits)
{
    (void)pos0, (void)logits, (void)all_logits;
    const ModelConfig *c = &m->cfg;
    ModelState *s = &m->s;
    const Mat *e = &m->w.token_embd;
    int64_t d = c->n_embd;
    for (int64_t t = 0; t < n; t++) {
        float *x = s->xb + t * d;
        m->kern->type[e->type].to_float(e->data + (size_t)tokens[t] * e->row_bytes, x, d);
        for (int64_t i = 0; i < d; i++) x[i] += m->w.token_types[i] + m->w.position_embd[t * d + i];
        model_layernorm(s->x + t * d, x, m->w.embd_norm, m->w.embd_norm_b, d, c->norm_eps);
    }
    for (int64_t l = 0; l < c->n_layer; l++) {
        if (model_should_stop(m, false)) return;
        bert_layer(m, l, n);
    }
}

const ArchOps arch_bert = {"bert", ARCH_BERT, bert_load, bert_forward};
