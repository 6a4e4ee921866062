/*
** model.h: a loaded language model and its evaluation.
**
** model_open maps a GGUF file, checks every tensor the architecture needs
** (name, shape, type), builds the tokenizer, allocates the KV cache for the
** requested context and the work buffers once, and starts the thread pool.
** Nothing is allocated per token afterwards. The weights stay in the file
** mapping in their stored format.
**
** The model keeps one sequence: the tokens whose keys and values are in the
** cache. model_decode appends tokens to it; model_eval_prompt replaces it by
** a new token list, reusing the longest common prefix so a chat follow-up
** only computes its new tokens.
**
** An evaluation can be stopped from another thread or a signal handler
** through a cancel flag (model_set_cancel), read between the layers of every
** forward pass and between batches: it then returns KB_ECANCELLED within one
** layer's time, and the cache keeps exactly the batches that were complete.
*/
#ifndef KB_MODEL_H
#define KB_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/tokenizer.h"

typedef struct KbModel KbModel;

typedef struct KbModelParams {
    int64_t n_ctx;      /* context in tokens, exactly; more than the model's
                           own length is an error. 0 = see n_ctx_cap */
    int64_t n_ctx_cap;  /* with n_ctx 0: the model's own length, capped at
                           this when > 0 (the configuration's context_size) */
    int n_threads;      /* 0 = all online cores */
    int force_isa;      /* 0: the best kernels this CPU runs (kb_kernels());
                           1 + KbIsa: exactly those (KB_EUNSUPPORTED if the CPU
                           cannot run them) - for tests and comparisons */
} KbModelParams;

/* Opens the model at path. Returns KB_OK; KB_EIO/KB_EFORMAT from the GGUF
** reader; KB_EUNSUPPORTED (architecture or tensor type kbchat cannot run);
** KB_EFORMAT (a tensor missing or of the wrong shape: err names it and the
** expected shape); KB_ERANGE (n_ctx beyond the model's context length);
** KB_ENOMEM. On failure *out is NULL. */
int model_open(const char *path, const KbModelParams *params, KbModel **out /* OUT */, char *err, size_t errlen);
/* Frees everything; model_close(NULL) is a no-op. */
void model_close(KbModel *m);

/* Runs every check model_open makes before it allocates anything for
** inference, with the same code: the file parses, the tokenizer loads, the
** architecture is known, its hyperparameters are consistent (head counts
** divide, sizes match the tensors), every tensor it needs is present with
** its shape and a type the kernels run, and no tensor belongs to a layer
** past block_count. The weights stay untouched in the mapping (only norms
** and biases are read); no KV cache, threads or packed copies are made, so
** this costs milliseconds for any model size. Returns KB_OK or model_open's
** code with err saying what is wrong, e.g. "tensor 'blk.3.attn_q.weight'
** is missing". */
int model_check(const char *path, char *err, size_t errlen);

const Tokenizer *model_tokenizer(const KbModel *m);
const char *model_arch_name(const KbModel *m);   /* "llama", "qwen2", ... */
int64_t model_n_embd(const KbModel *m);
/* True for embedding models (bert): model_embed, not model_decode. */
bool model_is_encoder(const KbModel *m);
int32_t model_n_vocab(const KbModel *m);
int64_t model_n_ctx(const KbModel *m);            /* the context allocated */
int64_t model_n_ctx_train(const KbModel *m);      /* the model's own limit */
int model_n_threads(const KbModel *m);
const char *model_kernels_name(const KbModel *m); /* "AVX-512", "AVX-VNNI", "AVX2", "scalar" */
/* Bytes of weight matrices packed for the tiled kernels (0: none, all
** products on the vec_dot kernels). */
uint64_t model_packed_bytes(const KbModel *m);
/* Bytes of weights read to compute one token: every matrix of every layer
** and the output matrix (the embedding row itself is negligible). */
uint64_t model_weight_bytes_per_token(const KbModel *m);
/* Tokens now in the cache. */
int64_t model_n_past(const KbModel *m);
/* The message of the last failed call. */
const char *model_errmsg(const KbModel *m);

/* Makes evaluations stop when *flag becomes nonzero (NULL: never). The flag
** is borrowed (it must outlive its use) and only read: the caller clears it.
** It is read between two layers of a forward pass and after each batch of
** MODEL_MAX_BATCH tokens, so an evaluation stops within one layer's time of
** a batch. Setting it is async-signal-safe (atomic_int is lock-free). */
void model_set_cancel(KbModel *m, const atomic_int *flag);

/* Called at every point where an evaluation reads the cancel flag, just
** before it does: between two layers of a forward pass (batch_done false),
** and after model_decode has completed a batch (batch_done true; its tokens
** are then counted in model_n_past). It may set the flag or wait. */
typedef void (*KbCheckFn)(void *user, bool batch_done);
/* Installs fn (NULL: none) as that hook. For tests and test hooks only: it
** makes a stop land at a chosen layer or batch without a timing window. */
void model_set_check_hook(KbModel *m, KbCheckFn fn, void *user);

/* Evaluates tokens[0..n) after the cached sequence and appends them to it.
** logits receives n_vocab floats per token when all_logits, else the last
** token's n_vocab floats (logits may be NULL when not needed).
** Returns KB_OK; KB_ERANGE (a token id out of range, or the context would
** overflow: nothing is evaluated then); KB_EINVAL (n == 0); KB_ECANCELLED
** (the cancel flag was set: the batches completed before it stay appended,
** a batch cut between its layers is dropped, logits are undefined). */
int model_decode(KbModel *m, const int32_t *tokens, size_t n, float *logits, bool all_logits);

/* Makes the cached sequence exactly tokens[0..n), n >= 1: keeps the longest
** prefix shared with the cache (at most n - 1 tokens, so the last token is
** always evaluated) and evaluates the rest. Writes the last token's logits.
** *n_reused (may be NULL) tells how many tokens were not recomputed.
** Returns as model_decode; when cancelled the cache holds the reused prefix
** and the batches completed after it, so evaluating the same tokens again
** computes only the rest. */
int model_eval_prompt(KbModel *m, const int32_t *tokens, size_t n, float *last_logits, size_t *n_reused);

/* Forgets the cached sequence. */
void model_reset(KbModel *m);

/* Embedding models: computes one vector of model_n_embd floats per sequence
** (seqs[i] holds lens[i] ids, normally [CLS] ... [SEP] as tokenizer_encode
** with KB_TOK_ADD_SPECIAL gives), pooled as the model says (mean or CLS) and
** L2-normalised when `normalize`. Sequences of different lengths go in one
** call; each is computed on its own, so no padding can change a result.
** Chat models (decoders) give the mean of their final hidden states after
** the output norm (the "chat" embedding of rag/); this uses the KV cache,
** so the cached sequence is forgotten (as model_reset).
** Returns KB_OK; KB_ERANGE (a sequence empty or longer than the model's
** context, or an id out of range: model_errmsg says which); KB_EUNSUPPORTED
** for ChatGLM-6B, whose prefix is evaluated as a whole; KB_ECANCELLED (the
** cancel flag was set: out is incomplete). */
int model_embed(KbModel *m, const int32_t *const *seqs, const size_t *lens, size_t n_seqs, bool normalize,
                float *out /* OUT: n_seqs * n_embd */);

/* --- generation --- */

struct KbSampler;

/* Receives each piece of generated text (complete UTF-8 characters only,
** NUL-terminated) as it is produced; returning nonzero cancels the
** generation before the next token is computed. */
typedef int (*KbPieceFn)(void *user, const char *piece, size_t len);

typedef struct KbGenerateParams {
    int64_t max_tokens;           /* stop after this many tokens (> 0) */
    const char *const *stop;      /* stop strings (NULL-terminated list, may be NULL):
                                     generation ends before the first one, which is not emitted */
    bool render_special;          /* print control tokens' text */
} KbGenerateParams;

typedef struct KbGenerateStats {
    size_t n_prompt, n_reused;    /* prompt tokens, of which reused from the cache */
    size_t n_generated;           /* tokens sampled */
    double prompt_seconds, generate_seconds;
    int stop_reason;              /* KB_STOP_* */
} KbGenerateStats;

enum { KB_STOP_EOS = 1, KB_STOP_STRING, KB_STOP_LENGTH, KB_STOP_CONTEXT, KB_STOP_CANCEL };

/* Evaluates prompt[0..n) (reusing the cached prefix), then samples tokens
** one at a time with sampler, streaming their text to on_piece, until an
** end-of-sequence token, a stop string, max_tokens, a full context, or
** cancellation (on_piece returning nonzero, or the cancel flag, also while
** the prompt is evaluated: KB_STOP_CANCEL). The prompt tokens are recorded in the sampler's penalty
** history first. Returns KB_OK (stats->stop_reason says why it ended),
** or the code of a failed evaluation (message in model_errmsg). */
int model_generate(KbModel *m, struct KbSampler *sampler, const int32_t *prompt, size_t n,
                   const KbGenerateParams *params, KbPieceFn on_piece, void *user, KbGenerateStats *stats /* OUT */);

#endif /* KB_MODEL_H */
