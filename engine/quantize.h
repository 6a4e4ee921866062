/*
** quantize.h: weight quantization, from floats to the GGUF block formats,
** and the llama.cpp rules that pick a block type per tensor.
**
** Three layers, each usable on its own:
**
**   1. Row quantizers (quantize.c): kb_quantize_row_<type> turns n floats
**      into blocks, porting the logic of ggml's reference quantizers
**      (quantize_row_*_ref in ggml-quants.c), which are what llama-quantize
**      runs when no importance matrix is given. Given the same floats they
**      produce the same blocks as llama.cpp, up to float rounding in rare
**      ties.
**
**   2. The type plan (quant_plan.c): a file type such as Q4_K_M names a
**      default block type plus llama.cpp's per-tensor exceptions
**      (llama_tensor_get_type in src/llama-quant.cpp): output.weight in Q6_K,
**      attn_v and ffn_down in Q6_K in some layers, fallbacks when a row
**      length is not a multiple of the block size, and so on.
**
**   3. Model files (quantize_model.c): a KbQuantizer (worker threads plus
**      per-thread scratch) quantizes rows produced by a callback, and
**      kb_model_quantize() turns one GGUF file into another, tensor by
**      tensor, through the streaming GGUF writer (gguf_write.h).
**
** Nothing here prints: progress goes to a callback, errors to a buffer.
*/
#ifndef KB_QUANTIZE_H
#define KB_QUANTIZE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf_write.h"
#include "engine/kernels.h"

/* --- 1. row quantizers --- */

/* Each converts n floats (n a multiple of the type's block size) into n /
** block_size blocks at y. The floats must be finite; y needs no alignment.
** Signature KbFromFloat (kernels.h). */
void kb_quantize_row_q4_0(const float *x, void *y, int64_t n);
void kb_quantize_row_q4_1(const float *x, void *y, int64_t n);
void kb_quantize_row_q5_0(const float *x, void *y, int64_t n);
void kb_quantize_row_q5_1(const float *x, void *y, int64_t n);
void kb_quantize_row_q8_0(const float *x, void *y, int64_t n);
void kb_quantize_row_q2_K(const float *x, void *y, int64_t n);
void kb_quantize_row_q3_K(const float *x, void *y, int64_t n);
void kb_quantize_row_q4_K(const float *x, void *y, int64_t n);
void kb_quantize_row_q5_K(const float *x, void *y, int64_t n);
void kb_quantize_row_q6_K(const float *x, void *y, int64_t n);

/* Returns the function that writes weights of `type` (the ten above, plus
** F32, F16 and BF16), or NULL when kbchat cannot produce that type. */
KbFromFloat kb_quantize_fn(int type);

/* Bytes of one row of n elements of `type` (n a multiple of its block
** size); 0 for an unknown type. */
uint64_t kb_row_size(int type, int64_t n);

/* Checks the fp16 scales of n elements of quantized data of `type` (as
** llama.cpp's ggml_validate_row_data does after quantizing): returns true
** when all are finite. Weights so large that a block scale overflows fp16
** would otherwise dequantize to inf or NaN. For F16 every element is
** checked (a float beyond 65504 becomes inf); F32 and BF16: always true. */
bool kb_quantized_row_ok(int type, const void *data, int64_t n);

/* --- 2. file types and the type plan --- */

/* llama.cpp's llama_ftype values, stored as general.file_type. */
typedef enum KbFtype {
    KB_FTYPE_ALL_F32 = 0,
    KB_FTYPE_MOSTLY_F16 = 1,
    KB_FTYPE_MOSTLY_Q4_0 = 2,
    KB_FTYPE_MOSTLY_Q4_1 = 3,
    KB_FTYPE_MOSTLY_Q8_0 = 7,
    KB_FTYPE_MOSTLY_Q5_0 = 8,
    KB_FTYPE_MOSTLY_Q5_1 = 9,
    KB_FTYPE_MOSTLY_Q2_K = 10,
    KB_FTYPE_MOSTLY_Q3_K_S = 11,
    KB_FTYPE_MOSTLY_Q3_K_M = 12,
    KB_FTYPE_MOSTLY_Q3_K_L = 13,
    KB_FTYPE_MOSTLY_Q4_K_S = 14,
    KB_FTYPE_MOSTLY_Q4_K_M = 15,
    KB_FTYPE_MOSTLY_Q5_K_S = 16,
    KB_FTYPE_MOSTLY_Q5_K_M = 17,
    KB_FTYPE_MOSTLY_Q6_K = 18,
    KB_FTYPE_MOSTLY_BF16 = 32,
} KbFtype;

/* Looks up a quantization type name as llama-quantize spells it ("Q4_K_M",
** case-insensitive). As in llama-quantize, "Q3_K", "Q4_K" and "Q5_K" are
** aliases of the _M mixes. Returns KB_OK, or KB_ENOTFOUND. */
int kb_ftype_parse(const char *name, KbFtype *out /* OUT */);

/* Returns the canonical name of a file type ("Q4_K_M"), or NULL. */
const char *kb_ftype_name(KbFtype ftype);

/* Returns the comma-separated list of names kb_ftype_parse accepts. */
const char *kb_ftype_names(void);

/* Returns the block type most tensors of ftype get (Q4_K for Q4_K_M), or -1
** for an unknown ftype. */
int kb_ftype_base_type(KbFtype ftype);

/* A tensor as the plan sees it. */
typedef struct KbQuantTensor {
    const char *name;
    int64_t ne[4];     /* dims past the tensor's own are 1 */
    int type;          /* its type now (KbType) */
} KbQuantTensor;

/* The model facts llama.cpp's rules look at, from the GGUF metadata. */
typedef struct KbQuantHparams {
    const char *arch;  /* general.architecture ("llama", "falcon", ...) */
    int n_layer;       /* {arch}.block_count */
    int n_head;        /* {arch}.attention.head_count (layer 0 if per layer) */
    int n_head_kv;     /* {arch}.attention.head_count_kv (default n_head) */
    int n_expert;      /* {arch}.expert_count (0 = not a mixture of experts) */
} KbQuantHparams;

/* What the plan decided for one tensor. */
enum {
    KB_QPLAN_QUANTIZE = 1, /* converted to .type (else copied as it is) */
    KB_QPLAN_FALLBACK = 2, /* .wanted did not fit ne[0]; .type is llama.cpp's fallback */
    KB_QPLAN_REQUANT = 4,  /* the input is already quantized in another type */
};
typedef struct KbQuantChoice {
    int type;          /* the type written */
    int wanted;        /* the type the rules chose before any fallback */
    unsigned flags;    /* KB_QPLAN_* */
} KbQuantChoice;

/* Decides the output type of every tensor t[0..n) for ftype, as llama.cpp's
** llama_model_quantize does without an importance matrix:
**   - quantized: names ending in "weight" with 2+ dims (trailing sizes of 1
**     do not count), except norms (*_norm.weight), MoE routers
**     (ffn_gate_inp), BERT position/type embeddings, and the small 2-D
**     tensors of Mamba, RWKV and T5; everything else is copied unchanged;
**   - the type: ftype's base type, then llama_tensor_get_type's exceptions
**     for the llama-family names (output, token_embd, attn_v, attn_k,
**     attn_q, attn_output, attn_qkv, ffn_down, ffn_gate, ffn_up), then the
**     fallback when ne[0] is not a multiple of the block size (Q4_K -> Q5_0,
**     Q5_K -> Q5_1, Q6_K -> Q8_0; Q2_K/Q3_K -> IQ4_NL in llama.cpp, which
**     kbchat cannot write, so Q4_0 here, the same size; F16 when even the
**     fallback does not fit);
**   - a tensor already in the chosen type is copied, not re-quantized.
** order[0..n) receives the order llama.cpp writes tensors in (by layer
** number, non-layer tensors first, then by name); the layer counters of the
** rules follow that order. Returns KB_OK, KB_EINVAL (unknown ftype), or
** KB_ENOMEM; the message goes to err. */
int kb_quant_plan(const KbQuantHparams *hp, KbFtype ftype, const KbQuantTensor *t, int64_t n,
                  KbQuantChoice *choice /* OUT: n entries */, int64_t *order /* OUT: n entries */,
                  char *err, size_t errlen);

/* --- 3. quantizing rows on threads, and whole files --- */

typedef struct KbQuantizer KbQuantizer;

/* Produces row `row` of a tensor: n floats into buf. Called concurrently
** from several threads (each with its own buf) for different rows, so it
** must not touch shared state. Returns KB_OK or a KB_* code to stop. */
typedef int (*KbRowSource)(void *user, int64_t row, float *buf, int64_t n);

/* Starts a quantizer with n_threads workers (0 = all online cores).
** Returns KB_OK, KB_ENOMEM, or KB_EIO when a thread cannot start. */
int kb_quantizer_new(int n_threads, KbQuantizer **out /* OUT */);
void kb_quantizer_free(KbQuantizer *q);          /* NULL is a no-op */
int kb_quantizer_threads(const KbQuantizer *q);
/* The message of the last failed kb_quantizer_rows. */
const char *kb_quantizer_errmsg(const KbQuantizer *q);

/* Writes rows row0 .. row0+nrows-1 of a tensor with n_per_row elements per
** row, in `type`, to dst (nrows * kb_row_size(type, n_per_row) bytes). Each
** row comes from src, is checked to be finite, converted, and its block
** scales checked. Rows are split among the workers by index, so the bytes
** never depend on the thread count.
** Returns KB_OK; KB_EINVAL (type not writable, n_per_row not a multiple of
** its block size); KB_ERANGE (a value is NaN or infinite, or too large for
** the format: the message names the row and column); or src's code. */
int kb_quantizer_rows(KbQuantizer *q, int type, KbRowSource src, void *user, int64_t row0, int64_t nrows,
                      int64_t n_per_row, void *dst);

/* Converts a whole tensor, rows 0 .. nrows-1 from src, into the writer's
** data stream, a chunk of rows (about 8 MB of output) at a time: memory
** stays small whatever the tensor's size. Checks *cancel (may be NULL)
** between chunks. Returns as kb_quantizer_rows; KB_EINVAL when cancelled;
** or the writer's code. The message is in kb_quantizer_errmsg. */
int kb_quantizer_write_tensor(KbQuantizer *q, GgufWriter *w, int type, KbRowSource src, void *user, int64_t nrows,
                              int64_t n_per_row, const volatile sig_atomic_t *cancel);

/* What kb_model_quantize reports as it goes: one KB_QEV_START before any
** tensor is converted, then one KB_QEV_TENSOR per tensor once written. */
enum { KB_QEV_START = 1, KB_QEV_TENSOR };
typedef struct KbQuantizeEvent {
    int kind;                   /* KB_QEV_* */
    int64_t n_tensors;
    int64_t n_requant;          /* START: tensors already quantized in another
                                   type (re-quantizing loses quality) */
    int n_threads;              /* START */
    int64_t index;              /* TENSOR: position in the output, 0-based */
    const char *name;
    int n_dims;
    int64_t ne[4];
    int from_type;
    KbQuantChoice choice;       /* .type is the type written */
    uint64_t bytes_in, bytes_out;
    double seconds;             /* spent on this tensor */
} KbQuantizeEvent;

/* Receives the events; the pointer is valid during the call only. */
typedef void (*KbQuantizeProgress)(void *user, const KbQuantizeEvent *ev);

typedef struct KbQuantizeParams {
    KbFtype ftype;
    int n_threads;                        /* 0 = all online cores */
    KbQuantizeProgress progress;          /* may be NULL */
    void *user;
    const volatile sig_atomic_t *cancel;  /* may be NULL; nonzero stops the run */
} KbQuantizeParams;

typedef struct KbQuantizeStats {
    int64_t n_tensors, n_quantized, n_fallback, n_requantized;
    uint64_t n_elements;                 /* weights in all tensors */
    uint64_t bytes_in, bytes_out;        /* tensor data only */
    uint64_t file_bytes_in, file_bytes_out;
    double seconds;
} KbQuantizeStats;

/* Writes `out`, a GGUF v3 file holding `in`'s metadata and tensors, with the
** tensors converted per kb_quant_plan(ftype) and in its order. Metadata:
** every key of `in` in its order except general.quantization_version,
** general.file_type and split.*, then general.quantization_version = 2 and
** general.file_type = ftype (uint32), as llama.cpp writes them. Input
** tensors may be F32, F16, BF16 or any type kbchat dequantizes.
** The file is written to a temporary name in out's directory and renamed
** over `out` only when complete, so on failure `out` is untouched.
** Memory: the input is mapped; one chunk of output (a few MB) and one row
** per thread are held, never a whole tensor.
** Returns KB_OK; KB_EIO (read, write, create or rename failed); KB_EFORMAT
** (malformed input); KB_EUNSUPPORTED (a tensor type kbchat cannot read);
** KB_ERANGE (a non-finite weight); KB_EINVAL (bad ftype, or cancelled);
** KB_ENOMEM. The message, naming the file and tensor, goes to err. */
int kb_model_quantize(const char *in, const char *out, const KbQuantizeParams *params,
                      KbQuantizeStats *stats /* OUT, may be NULL */, char *err, size_t errlen);

#endif /* KB_QUANTIZE_H */
