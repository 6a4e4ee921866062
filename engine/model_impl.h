/*
** model_impl.h: the inside of a KbModel, shared by model.c (loading, the
** cache, batching) and the architecture files (arch_llama.c: the forward
** pass). Not part of the engine's public API.
*/
#ifndef KB_MODEL_IMPL_H
#define KB_MODEL_IMPL_H

#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/pool.h"

#define MODEL_MAX_BATCH 128 /* prompt tokens evaluated per forward pass */

typedef enum ModelArch { ARCH_LLAMA = 1, ARCH_QWEN2 } ModelArch;

/* A weight matrix in the file mapping: n_out rows of n_in values, each row
** row_bytes long in its stored type (GGUF ne = {n_in, n_out}). */
typedef struct Mat {
    const uint8_t *data;
    int type;
    int64_t n_in, n_out;
    size_t row_bytes;
    const char *name;
} Mat;

/* Hyperparameters, from the GGUF keys. */
typedef struct ModelConfig {
    ModelArch arch;
    int64_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    int64_t n_ctx_train;
    int64_t n_rot;         /* dimensions of each head that RoPE rotates */
    float rope_base, rope_freq_scale;
    bool rope_neox;        /* pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
    float norm_eps;
} ModelConfig;

/* One transformer block's weights. Vectors (norms, biases) are converted to
** float at load; bias pointers are NULL when the model has none. */
typedef struct LayerWeights {
    float *attn_norm;                  /* (n_embd) */
    Mat wq, wk, wv, wo;                /* {n_embd, n_head*hd}, {n_embd, n_kv*hd} x2, {n_head*hd, n_embd} */
    float *bq, *bk, *bv;               /* qwen2 */
    float *ffn_norm;                   /* (n_embd) */
    Mat w_gate, w_up, w_down;          /* {n_embd, n_ff} x2, {n_ff, n_embd} */
} LayerWeights;

typedef struct ModelWeights {
    Mat token_embd;                    /* {n_embd, n_vocab} */
    LayerWeights *layers;              /* n_layer */
    float *output_norm;                /* (n_embd) */
    Mat output;                        /* {n_embd, n_vocab}; token_embd when tied */
} ModelWeights;

/* Buffers for one forward pass of up to MODEL_MAX_BATCH tokens. */
typedef struct ModelState {
    int64_t n_batch;
    float *x, *xb, *xb2;       /* (n_batch, n_embd) residual stream and scratch */
    float *q, *k, *v;          /* (n_batch, q_dim / kv_dim) */
    float *att;                /* (n_batch, q_dim) attention output */
    float *hb, *hb2;           /* (n_batch, n_ff) */
    uint8_t *act_q;            /* activations converted for vec_dot: n_batch rows of the widest */
    float *scores;             /* (n_threads, n_ctx) attention scores */
    kb_half *q16;              /* (n_threads, head_dim) a query row in fp16 */
    kb_half *key_cache;        /* (n_layer, n_ctx, kv_dim) */
    kb_half *value_cache;      /* (n_layer, n_ctx, kv_dim) */
} ModelState;

struct KbModel {
    GgufFile *gguf;
    Tokenizer *tok;
    ModelConfig cfg;
    ModelWeights w;
    ModelState s;
    const KbKernels *kern;
    Pool *pool;
    int64_t n_ctx;
    int32_t *cache_tokens;     /* (n_ctx) the cached sequence */
    int64_t n_past;
    float *vectors;            /* one allocation for every norm and bias */
    char errmsg[512];
};

/* --- shared operations (model.c) --- */

/* y[t * n_out + r] = W row r . x[t * n_in] for t < n_tok, on the pool. */
void model_matmul(KbModel *m, const Mat *w, const float *x, int64_t n_tok, float *y);
/* out = x / rms(x) * weight over n values (llama.cpp's order of operations). */
void model_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps);
/* Rotates the n_heads heads of one token's q or k at position pos. */
void model_rope(const ModelConfig *c, float *vec, int64_t n_heads, int64_t pos);
/* Causal attention of tokens [pos0, pos0 + n_tok) over layer l's cache. */
void model_attention(KbModel *m, int64_t layer, int64_t pos0, int64_t n_tok);

/* --- architectures --- */

/* Reads hyperparameters and points the weights into the mapping for the
** llama family (llama, qwen2); err names the key or tensor at fault. */
int llama_load(KbModel *m, char *err, size_t errlen);
/* Runs tokens[0..n) at positions pos0.. through the network, writing the
** K/V cache, and writes into logits the last token's n_vocab logits (or n
** rows, one per token, when all_logits); logits NULL skips the output layer. */
void llama_forward(KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, float *logits, bool all_logits);

#endif /* KB_MODEL_IMPL_H */
