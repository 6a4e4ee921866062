/*
** attention.h: tiled attention (internal to engine/), in the spirit of
** flash attention.
**
** One task is a block of query rows that share their keys: every head of one
** GQA group (n_head / n_head_kv heads) for up to ATT_ROWS / group tokens.
** It walks the keys in blocks of ATT_KEYS, each block converted from the
** fp16 cache to float once and used by every row of the task (so a K/V row
** is read once per group, not once per head and token), and keeps per row a
** running maximum M, a running sum L and an unnormalised output O (online
** softmax): for each block,
**     S   = Q K_blk^T * scale (+ ALiBi bias), keys past the row's end masked
**     M'  = max(M, max S);  P = exp(S - M');  a = exp(M - M')
**     L   = L a + sum P;    O = O a + P V_blk;  M = M'
** and at the end out = O / L.
**
** The K cache is stored so a block is one contiguous array: per (layer, KV
** head), blocks of ATT_KEYS positions, each block head_dim rows of ATT_KEYS
** fp16 keys (transposed), which is what the score kernel multiplies by. The
** V cache is per (layer, KV head) position-major, so a block of values is
** ATT_KEYS contiguous rows of head_dim.
**
** Batch invariance: a row's blocks start at fixed key positions (0,
** ATT_KEYS, ...), every row takes the same operations in the same order
** whatever the other rows of its task, and the value sum of a row stops at
** its own last key (not the task's), so a token's output never depends on
** the batch it was evaluated in, nor on the number of threads.
*/
#ifndef KB_ATTENTION_H
#define KB_ATTENTION_H

#include <stdint.h>

#include "engine/kernels.h"

#define ATT_KEYS 64  /* keys per block (four 512-bit registers of scores) */
#define ATT_ROWS 64  /* query rows per task, unless one GQA group has more heads */

/* Rounds a head dimension up to whole 16-float vectors: rows of Q, O and V
** in the scratch are this long, padded with zeros. */
#define ATT_PAD(hd) (((hd) + 15) / 16 * 16)

/* One instruction set's attention kernels. Arrays are row-major floats; a
** row of Q, O or V is hdp = ATT_PAD(hd) long, a row of S ATT_KEYS long. */
typedef struct AttnKernels {
    /* S[i][j] = sum over d < hd, in order, of Q[i][d] * KT[d][j], for
    ** i < n_rows and every j < ATT_KEYS (KT: hd rows of ATT_KEYS). */
    void (*scores)(int64_t n_rows, int64_t hd, int64_t hdp, const float *Q, const float *KT, float *S);
    /* The softmax step of one block for each row i < n_rows: s = S[i][j] *
    ** scale + slope[i] * (rel[i] + j) for j < lim[i] (other keys masked);
    ** M' = max(M[i], max s); P[i][j] = exp(s - M') (0 when masked), stored
    ** in S; L[i] = L[i] exp(M[i] - M') + sum P; O[i] *= exp(M[i] - M'). */
    void (*softmax)(int64_t n_rows, int64_t hdp, float *S, const int32_t *lim, const float *slope, const int64_t *rel,
                    float scale, float *M, float *L, float *O);
    /* O[i] += sum over j < lim[i], in order, of P[i][j] * V[j], rows of hdp. */
    void (*accumulate)(int64_t n_rows, int64_t hdp, const float *P, const int32_t *lim, const float *V, float *O);
} AttnKernels;

/* The attention kernels of instruction set isa (AVX-512, AVX2 and the
** portable reference; other sets use the nearest one below them). */
const AttnKernels *attn_kernels(KbIsa isa);

extern const AttnKernels attn_kernels_scalar, attn_kernels_avx2, attn_kernels_avx512;

/* Floats of per-thread scratch one task needs for a head dimension hd and
** n_rep query heads per KV head. */
int64_t attn_scratch_floats(int64_t hd, int64_t n_rep);

#endif /* KB_ATTENTION_H */
