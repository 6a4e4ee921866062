/*
** model_impl.h: the inside of a KbModel, shared by model.c (loading, the
** cache, batching) and the architecture files (arch_llama.c: the forward
** pass). Not part of the engine's public API.
*/
#ifndef KB_MODEL_IMPL_H
#define KB_MODEL_IMPL_H

#include "engine/engine.h"
#include "engine/gemm.h"
#include "engine/kernels.h"
#include "engine/pool.h"

#define MODEL_MAX_BATCH 128 /* prompt tokens evaluated per forward pass */

typedef enum ModelArch { ARCH_LLAMA = 1, ARCH_QWEN2, ARCH_CHATGLM, ARCH_BLOOM, ARCH_BERT, ARCH_CHATGLM1 } ModelArch;

/* A weight matrix in the file mapping: n_out rows of n_in values, each row
** row_bytes long in its stored type (GGUF ne = {n_in, n_out}). */
typedef struct Mat {
    const uint8_t *data;
    int type;
    int64_t n_in, n_out;
    size_t row_bytes;
    const char *name;
    const uint8_t *packed;     /* packed once for the tiled kernels (gemm.h), or NULL */
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
    bool encoder;          /* bert: bidirectional, no cache, pooled output */
    int pooling;           /* bert.pooling_type: 1 mean, 2 CLS */
    bool prefix_lm;        /* chatglm1: the prompt before <sop> attends both ways (arch_glm1.c) */
    int32_t glm_sop, glm_gmask, glm_mask; /* chatglm1: the ids that place the 2D positions (-1 = none) */
} ModelConfig;

/* One transformer block's weights. Vectors (norms, biases) are converted to
** float at load; bias pointers are NULL when the model has none. */
typedef struct LayerWeights {
    float *attn_norm, *attn_norm_b;    /* (n_embd); bias: bloom */
    Mat wq, wk, wv, wo;                /* {n_embd, n_head*hd}, {n_embd, n_kv*hd} x2, {n_head*hd, n_embd} */
    float *bq, *bk, *bv, *bo;          /* qwen2 (q, k, v), bert (all four), bloom (o) */
    Mat wqkv;                          /* chatglm, bloom: {n_embd, q_dim + 2 kv_dim}, rows Q | K | V */
    float *bqkv;                       /* its bias */
    float *ffn_norm, *ffn_norm_b;      /* (n_embd) */
    Mat w_gate, w_up, w_down;          /* {n_embd, n_ff} x2, {n_ff, n_embd}; chatglm: up is {n_embd, 2 n_ff} */
    float *b_up, *b_down;              /* bloom, bert */
    float *attn_out_norm, *attn_out_norm_b;   /* bert: post-attention LayerNorm */
    float *layer_out_norm, *layer_out_norm_b; /* bert: post-FFN LayerNorm */
} LayerWeights;

typedef struct ModelWeights {
    Mat token_embd;                    /* {n_embd, n_vocab} */
    float *embd_norm, *embd_norm_b;    /* bloom, bert: LayerNorm of the embeddings */
    float *token_types;                /* bert: type 0 row (n_embd) */
    float *position_embd;              /* bert: (n_ctx_train, n_embd) */
    LayerWeights *layers;              /* n_layer */
    float *output_norm, *output_norm_b; /* (n_embd); bias: bloom */
    Mat output;                        /* {n_embd, n_vocab}; token_embd when tied */
    float *alibi_slopes;               /* bloom: (n_head) */
} ModelWeights;

/* Buffers for one forward pass of up to MODEL_MAX_BATCH tokens. */
typedef struct ModelState {
    int64_t n_batch;
    float *x, *xb, *xb2;       /* (n_batch, n_embd) residual stream and scratch */
    float *q, *k, *v;          /* (n_batch, q_dim / kv_dim) */
    float *att;                /* (n_batch, q_dim) attention output */
    float *qkv;                /* (n_batch, q_dim + 2 kv_dim) fused projections */
    float *blas_tile;          /* (n_threads, 64, widest) float weight tiles for sgemm */
    int64_t blas_max_in;       /* the widest row blas_tile holds (0: no BLAS path) */
    float *hb, *hb2;           /* (n_batch, 2 n_ff), (n_batch, n_ff) */
    uint8_t *act_q;            /* activations converted for vec_dot: n_batch rows of the widest */
    GemmBuffers gemm;          /* scratch of the tiled products of prompt batches (gemm.h) */
    float *attn_scratch;       /* (n_threads, attn_scratch_floats) tiled attention's blocks (attention.h) */
    int64_t attn_scratch_floats;
    kb_half *key16;            /* (head_dim) a key row in fp16 on its way into the cache */
    kb_half *key_cache;        /* (n_layer, n_head_kv, cache positions / ATT_KEYS, head_dim, ATT_KEYS) */
    kb_half *value_cache;      /* (n_layer, n_head_kv, cache positions, head_dim) */
    float *ctx_x, *ctx_q;      /* prefix_lm: (n_ctx, n_embd) residual stream and (n_ctx, q_dim) queries of the prompt before <sop> */
    int64_t ctx_done;          /* prefix_lm: tokens of that prefix whose keys and values are in the cache */
} ModelState;

struct KbModel {
    GgufFile *gguf;
    struct GgmlFile *ggml;     /* instead of gguf: a chatglm.cpp file (model_ggml.c) */
    int32_t eog_extra[2];      /* GGML ChatGLM3/GLM-4: <|user|> and <|observation|> also end a turn (-1 = none) */
    Tokenizer *tok;
    ModelConfig cfg;
    ModelWeights w;
    ModelState s;
    const KbKernels *kern;
    Pool *pool;
    int64_t n_ctx;
    int32_t *cache_tokens;     /* (n_ctx) the cached sequence */
    int64_t n_past;
    float *vectors;            /* one allocation for every norm, bias and small table */
    float *gelu_table;         /* GELU of every fp16 value (bloom, bert), built on first use */
    uint8_t *packed;           /* the packed weight matrices (Mat.packed point into it) */
    size_t packed_size;
    float *vec_next, *vec_end; /* the unused part of it, while loading */
    char arch_name[32];
    const struct ArchOps *ops; /* the architecture's loader and forward pass */
    const atomic_int *cancel;  /* model_set_cancel's flag, or NULL */
    KbCheckFn check_fn;        /* model_set_check_hook's hook, or NULL */
    void *check_user;
    bool cancelled;            /* the flag was seen set during this evaluation */
    char errmsg[512];
};

/* An architecture: how to load it and run it. */
typedef struct ArchOps {
    const char *name;   /* general.architecture */
    ModelArch arch;
    int (*load)(KbModel *m, char *err, size_t errlen);
    void (*forward)(KbModel *m, const int32_t *tokens, int64_t n, int64_t pos0, float *logits, bool all_logits);
} ArchOps;

/* --- shared operations (model.c) --- */

/* True when the evaluation must stop: calls the check hook, then reads the
** cancel flag; once set, m->cancelled stays true until the next evaluation
** starts. Forward passes call it before each layer (batch_done false) and
** return at once when it is true: model_decode then drops the batch. */
bool model_should_stop(KbModel *m, bool batch_done);

/* y[t * n_out + r] = W row r . x[t * n_in] for t < n_tok, on the pool. */
void model_matmul(KbModel *m, const Mat *w, const float *x, int64_t n_tok, float *y);
/* out = x / rms(x) * weight over n values (llama.cpp's order of operations). */
void model_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps);
/* Rotates the n_heads heads of one token's q or k at position pos. */
void model_rope(const ModelConfig *c, float *vec, int64_t n_heads, int64_t pos);
/* Causal attention of tokens [pos0, pos0 + n_tok) over layer l's cache
** (with ALiBi when the weights have slopes): s.q -> s.att. */
void model_attention(KbModel *m, int64_t layer, int64_t pos0, int64_t n_tok);

/* One call of the tiled attention (attention.c). */
typedef struct AttnArgs {
    int64_t layer;                /* whose cache holds the keys and values */
    const float *q;               /* n_tok rows q_stride apart, head h at h * head_dim */
    int64_t q_stride;
    float *out;                   /* the same shape, out_stride apart */
    int64_t out_stride;
    int64_t n_tok, pos0;          /* rows and the position of the first */
    int64_t n_keys;               /* 0: causal (row t sees keys [0, pos0 + t]); else every row sees [0, n_keys) */
    const float *k_rows, *v_rows; /* non-NULL: float keys and values (kv_stride apart) instead of the cache */
    int64_t kv_stride;
} AttnArgs;
/* softmax(Q K^T / sqrt(head_dim) [+ ALiBi]) V for every head of every row,
** on the pool (attention.h). */
void model_attend(KbModel *m, const AttnArgs *a);
/* Positions the cache holds for a context of n_ctx: whole key blocks. */
int64_t model_cache_positions(int64_t n_ctx);
/* out = (x - mean) / sqrt(var + eps) * w + b over n values (b may be NULL). */
void model_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps);
/* GELU (tanh form) in place, rounded through fp16 as ggml's table does
** (the table is built in m on first use). */
void model_gelu(KbModel *m, float *x, int64_t n);
/* x[t*dim + i] += b[i] for each of n_tok rows (b NULL: nothing). */
void model_add_bias(float *x, const float *b, int64_t n_tok, int64_t dim);
/* Copies the embedding rows of tokens[0..n) into s.x. */
void model_lookup_tokens(KbModel *m, const int32_t *tokens, int64_t n);
/* RMS-normalises the last row of s.x (all n rows when all_logits) with
** output_norm into s.xb and computes the logits from them; nothing when
** logits is NULL. */
void model_rms_logits(KbModel *m, int64_t n, float *logits, bool all_logits);
/* Writes the batch's keys and values (s.k, s.v) into layer l's cache. */
void model_store_kv(KbModel *m, int64_t layer, int64_t pos0, int64_t n);
/* Splits fused QKV rows (n_tok rows of q_dim + 2 kv_dim) into s.q, s.k, s.v. */
void model_split_qkv(KbModel *m, const float *qkv, int64_t n_tok);

/* --- loading helpers (model.c) --- */

#define MODEL_MAX_NAME 160 /* tensor names, as model_find_tensor writes them */


/* Reads integer "<arch>.<suffix>" into *v (kept when absent and not required). */
int model_key_int(KbModel *m, const char *suffix, int64_t *v, bool required, char *err, size_t errlen);
/* Reads float "<arch>.<suffix>" into *v when present. */
int model_key_float(KbModel *m, const char *suffix, float *v, char *err, size_t errlen);
/* Points *w at tensor name of shape {n_in, n_out} with a computable type. */
int model_load_mat(KbModel *m, Mat *w, const char *name, int64_t n_in, int64_t n_out, char *err, size_t errlen);
/* Converts the 1-D (or 2-D {n, rows}) float tensor `name` of n values into the
** vector pool; optional tensors that are absent give NULL. */
int model_load_vec(KbModel *m, float **dst, const char *name, int64_t n, bool required, char *err, size_t errlen);
/* Reads the common hyperparameters (embedding, layers, heads, ff, context,
** eps under eps_key) and sizes the vector pool for extra_floats more. */
int model_load_common(KbModel *m, const char *eps_key, size_t extra_floats, char *err, size_t errlen);

/* --- GGML files (model_ggml.c) --- */

/* Opens the chatglm.cpp file at path into m: m->ggml, the tokenizer built
** from the embedded SentencePiece model or GLM-4 vocabulary, m->ops (chatglm1
** for ChatGLM-6B, chatglm for ChatGLM2/3 and GLM-4), m->arch_name and the
** extra end-of-turn tokens. Returns the codes of ggml_file_open and
** ggml_file_tokenizer, or KB_EUNSUPPORTED (a P-tuning prefix); err says why. */
int model_ggml_open(KbModel *m, const char *path, char *err, size_t errlen);
/* Answers "<arch>.<suffix>" keys (embedding_length, block_count, ...) from
** a GGML file's config record: KB_OK, or KB_ENOTFOUND for keys it lacks. */
int model_ggml_key(const KbModel *m, const char *suffix, double *v /* OUT */);
/* Finds the tensor an architecture names in GGUF's words ("blk.3.attn_qkv.weight")
** in m's file; for a GGML file the name is translated to chatglm.cpp's and
** *name pointed at buf (cap >= MODEL_MAX_NAME) holding it, so messages show
** the file's own name. Returns NULL when absent. */
const GgufTensor *model_find_tensor(const KbModel *m, const char **name, char *buf, size_t cap);

/* --- architectures ---
** Each load reads the hyperparameters and points the weights into the
** mapping; err names the key or tensor at fault. Each forward runs
** tokens[0..n) at positions pos0.. through the network, writing the K/V
** cache, and writes into logits the last token's n_vocab logits (or n rows
** when all_logits); logits NULL skips the output layer. bert's forward
** leaves the final hidden states in s.x instead (logits unused). chatglm's
** and chatglm1's forward leave the final hidden states (after the output
** norm) of the rows they compute logits for in s.xb, in the order of the
** logits: tests compare them with the models' reference implementations.
** Each forward asks model_should_stop before every layer and returns when
** it says so, leaving the batch incomplete (m->cancelled tells). */
extern const ArchOps arch_llama, arch_qwen2, arch_chatglm, arch_bloom, arch_bert, arch_chatglm1;

#endif /* KB_MODEL_IMPL_H */
