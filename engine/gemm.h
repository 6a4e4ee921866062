/*
** gemm.h: tiled matrix products over weights packed once (internal to
** engine/).
**
** model_matmul computes y = W x for n_tok tokens. One token at a time,
** vec_dot once per (weight row, token) reads each weight block once per
** product; with a batch, a product is compute bound instead, and the tiled
** kernels here reuse every loaded block: a micro-kernel holds GEMM_ROWS
** weight rows x GEMM_TOKS tokens of integer sums in registers, so a weight
** block is loaded once per GEMM_TOKS tokens and an activation block once
** per GEMM_ROWS rows.
**
** The weights are packed when the model opens (gemm_pack_matrix):
** interleaved so that one vector load gives four quants of each of
** GEMM_ROWS rows, row tile after row tile, each tile's blocks in order. The
** packed matrix is as large as the stored one (Q4_0, Q8_0, Q6_K) or a few
** percent larger (Q4_K, Q5_K: their six-bit scales unpacked to bytes), and
** the model releases the stored copy. The activations are quantized with
** the same from_float as the vec_dot path (Q8_0, or Q8_K for the K types)
** and packed per product, interleaved by token tile. The packings belong to
** one kernel set (GemmIsa); gemm_select picks the one this CPU runs, or none.
**
** Numerics: the integer dot product of each block (or sub-block) is exact,
** as in vec_dot; the block's sum is converted to float and accumulated with
** a fused multiply-add by (weight scale x activation scale), blocks in
** order. A tile of 1, 2, 3 or 4 tokens runs its own loop, but each (row,
** token) goes through the same instructions in every one, and a worker's
** share of rows never changes what is computed for a row: so a token's
** result depends neither on the size of the batch it came in (prefix reuse
** relies on that) nor on the thread count. It equals vec_dot's up to float
** summation order.
*/
#ifndef KB_GEMM_H
#define KB_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kernels.h"
#include "engine/pool.h"

#define GEMM_ROWS 32       /* weight rows per tile (two 512-bit or four 256-bit registers of int32 sums) */
#define GEMM_TOKS 4        /* tokens per tile */
#define GEMM_KC 1024       /* weights of a row multiplied against every token tile at a time */

/* How one weight type is packed: a block is the unit of its scales (32
** weights for Q4_0/Q8_0, a 256-weight super-block for the K types). */
typedef struct GemmLayout {
    int64_t block;          /* weights per block */
    size_t act_bytes;       /* packed activations per (token tile, block) */
    size_t row_bytes;       /* packed weights per (row tile, block) */
} GemmLayout;

/* One instruction set's packings and micro-kernels (gemm_avx512.c,
** gemm_avxvnni.c, gemm_avx2.c). */
typedef struct GemmIsa {
    const char *name;
    /* Fills *out and returns true when the set handles weights of ggml
    ** type `type`; false otherwise. */
    bool (*layout)(int type, GemmLayout *out /* OUT */);
    /* Quantizes tokens x[0..nt) (nt <= GEMM_TOKS, rows of n_in floats)
    ** with quantize (the from_float of the type's vec_dot_type: Q8_0 or
    ** Q8_K) into tmp, and packs them for weights of `type` into dst; tokens
    ** past nt are zero. tmp holds GEMM_TOKS rows of the quantized type. */
    void (*pack_acts)(int type, const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp,
                      uint8_t *dst /* OUT */);
    /* Packs rows w[0..nr) (nr <= GEMM_ROWS, row_bytes apart, nb blocks each)
    ** of `type` into dst (64-byte aligned); rows past nr are zero. */
    void (*pack_rows)(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst /* OUT */);
    /* y[t * ldy + r] = packed row r . packed token t over nb blocks, for
    ** r < nr, t < nt, added to the value y holds when add; nothing else of
    ** y is touched. Blocks are accumulated in order onto that value, so a
    ** product cut into runs of blocks gives the same bits as one run. */
    void (*tile)(int type, const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy, int nr, int nt,
                 bool add);
} GemmIsa;

/* Scratch of the tiled products, allocated once with the model's state. */
typedef struct GemmBuffers {
    const GemmIsa *isa;  /* NULL: the tiled path is off (other kernels, or no CPU support) */
    int64_t max_tok;     /* capacity: tokens per product */
    int64_t max_in;      /* capacity: weights per row */
    uint8_t *act;        /* packed activations, token tiles one after the other */
    uint8_t *work;       /* per worker: GEMM_TOKS quantized tokens */
    size_t work_stride;  /* bytes between two workers' work areas (whole pages) */
} GemmBuffers;

/* A product y[t * n_out + r] = W row r . x[t * n_in] for t < n_tok. */
typedef struct GemmProduct {
    const uint8_t *packed; /* W: n_out rows of n_in weights of `type`, packed by gemm_pack_matrix */
    int type;
    int64_t n_in, n_out;
    const float *x;        /* (n_tok, n_in) */
    int64_t n_tok;
    float *y;              /* (n_tok, n_out) */
} GemmProduct;

/* Returns the tiled kernels that go with `kern` on this CPU, or NULL: the
** AVX-512 ones when the AVX-512 kernels run on a CPU with AVX512-VNNI, the
** AVX-VNNI ones with the AVX-VNNI kernels, the AVX2 ones with the AVX2
** kernels (and the AVX-512 kernels without AVX512-VNNI); the portable set
** keeps the vec_dot path. */
const GemmIsa *gemm_select(const KbKernels *kern);

/* Bytes of an n_out x n_in matrix of `type` packed whole for isa (row
** tiles one after the other, the last padded with zero rows), or 0 when
** isa does not handle the type or n_in is not whole blocks. */
size_t gemm_packed_size(const GemmIsa *isa, int type, int64_t n_in, int64_t n_out);

/* Packs the n_out rows (row_bytes apart) of `type` at w whole into dst
** (gemm_packed_size bytes, 64-byte aligned), on the pool. */
void gemm_pack_matrix(const GemmIsa *isa, Pool *pool, int type, const uint8_t *w, size_t row_bytes, int64_t n_in,
                      int64_t n_out, uint8_t *dst /* OUT */);

/* Allocates b's scratch for products of up to max_tok tokens and rows of up
** to max_in weights on n_threads workers, and sets b->isa from kern (with
** isa NULL nothing is allocated). b is zeroed first. Returns KB_OK or
** KB_ENOMEM; gemm_buffers_free releases b either way. */
int gemm_buffers_alloc(GemmBuffers *b /* OUT */, const KbKernels *kern, int64_t max_tok, int64_t max_in, int n_threads);
void gemm_buffers_free(GemmBuffers *b);

/* Whether gemm_matmul takes product p with buffers b: packed weights of a
** type the kernels handle, 1..max_tok tokens, rows of at most max_in. */
bool gemm_applies(const GemmBuffers *b, const GemmProduct *p);

/* Computes product p on the pool; only when gemm_applies(b, p). quantize is
** the engine's from_float of the weight type's vec_dot_type (the one the
** vec_dot path uses, so the activations are quantized identically). */
void gemm_matmul(const GemmBuffers *b, Pool *pool, KbFromFloat quantize, const GemmProduct *p);

#endif /* KB_GEMM_H */
