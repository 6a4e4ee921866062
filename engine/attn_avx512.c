/*
** attn_avx512.c: the tiled attention's kernels (attention.h) for AVX-512.
**
** Scores: a tile of up to 6 query rows x the block's 64 keys lives in 24
** registers; per dimension d the four key vectors of row d of the transposed
** block are loaded once and every query row's value is broadcast into them.
** Value sums: a tile of up to 6 rows x 64 output values, per key one load of
** the value row per 16 values and one broadcast probability per row.
** Each (row, lane) takes its fused multiply-adds in the reference's order
** (attention.c), so scores equal the portable ones bit for bit; the softmax
** uses a polynomial exp (a few ulp from expf) and a tree sum.
*/
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "engine/attention.h"

#define SCORE_ROWS 6
#define SUM_ROWS 6

#define INLINE static inline __attribute__((always_inline))

/* S rows [0, NR) of a tile; NR is a constant at every call. */
INLINE void scores_tile(const int NR, int64_t hd, int64_t hdp, const float *Q, const float *KT, float *S)
{
    __m512 acc[SCORE_ROWS][4];
#pragma GCC unroll 6
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const float *kt = KT + d * ATT_KEYS;
        __m512 k0 = _mm512_loadu_ps(kt), k1 = _mm512_loadu_ps(kt + 16), k2 = _mm512_loadu_ps(kt + 32),
               k3 = _mm512_loadu_ps(kt + 48);
#pragma GCC unroll 6
        for (int r = 0; r < NR; r++) {
            __m512 q = _mm512_set1_ps(Q[r * hdp + d]);
            acc[r][0] = _mm512_fmadd_ps(q, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(q, k1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(q, k2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(q, k3, acc[r][3]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(S + r * ATT_KEYS + 16 * c, acc[r][c]);
}

static void scores_avx512(int64_t n_rows, int64_t hd, int64_t hdp, const float *Q, const float *KT, float *S)
{
    int64_t i = 0;
    for (; i + SCORE_ROWS <= n_rows; i += SCORE_ROWS) scores_tile(SCORE_ROWS, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS);
    switch (n_rows - i) {
    case 5: scores_tile(5, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS); break;
    case 4: scores_tile(4, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS); break;
    case 3: scores_tile(3, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS); break;
    case 2: scores_tile(2, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS); break;
    case 1: scores_tile(1, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS); break;
    default: break;
    }
}

/* e^x for 16 floats: x = n ln2 + r with |r| <= ln2/2, Cephes' degree-6
** polynomial for e^r, scaled by 2^n (inputs clamped to float's range). */
INLINE __m512 exp_ps(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)), _mm512_set1_ps(-88.3762626647949f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static void softmax_avx512(int64_t n_rows, int64_t hdp, float *S, const int32_t *lim, const float *slope, const int64_t *rel,
                           float scale, float *M, float *L, float *O)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 vscale = _mm512_set1_ps(scale), neg_inf = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n_rows; i++) {
        float *s = S + i * ATT_KEYS;
        __m512 v[4], vmax = _mm512_set1_ps(M[i]);
        __mmask16 keep[4];
        const __m512 vslope = _mm512_set1_ps(slope[i]);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i k = _mm512_add_epi32(iota, _mm512_set1_epi32(16 * c));
            keep[c] = _mm512_cmplt_epi32_mask(k, _mm512_set1_epi32(lim[i]));
            __m512 bias = _mm512_mul_ps(vslope, _mm512_cvtepi32_ps(_mm512_add_epi32(k, _mm512_set1_epi32((int32_t)rel[i]))));
            v[c] = _mm512_mask_blend_ps(keep[c], neg_inf, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(s + 16 * c), vscale), bias));
            vmax = _mm512_max_ps(vmax, v[c]);
        }
        float max = _mm512_reduce_max_ps(vmax);
        __m512 sum = _mm512_setzero_ps(), vm = _mm512_set1_ps(max);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512 p = _mm512_maskz_mov_ps(keep[c], exp_ps(_mm512_sub_ps(v[c], vm)));
            _mm512_storeu_ps(s + 16 * c, p);
            sum = _mm512_add_ps(sum, p);
        }
        float alpha = M[i] == -INFINITY ? 0.0f : expf(M[i] - max);
        L[i] = L[i] * alpha + _mm512_reduce_add_ps(sum);
        M[i] = max;
        if (alpha != 1.0f) {
            const __m512 va = _mm512_set1_ps(alpha);
            for (int64_t d = 0; d < hdp; d += 16)
                _mm512_storeu_ps(O + i * hdp + d, _mm512_mul_ps(_mm512_loadu_ps(O + i * hdp + d), va));
        }
    }
}

/* O rows [0, NR) of a tile, NC vectors of 16 values from column `col`: keys
** below the first row's limit for all rows, then each row up to its own. */
INLINE void sum_tile(const int NR, const int NC, int64_t hdp, int64_t col, const float *P, const int32_t *lim, const float *V,
                     float *O)
{
    __m512 acc[SUM_ROWS][4];
#pragma GCC unroll 6
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[r][c] = _mm512_loadu_ps(O + r * hdp + col + 16 * c);
    int32_t common = lim[0], most = lim[NR - 1]; /* limits never decrease along the rows */
    for (int32_t k = 0; k < common; k++) {
        __m512 v[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) v[c] = _mm512_loadu_ps(V + k * hdp + col + 16 * c);
#pragma GCC unroll 6
        for (int r = 0; r < NR; r++) {
            __m512 p = _mm512_set1_ps(P[r * ATT_KEYS + k]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(p, v[c], acc[r][c]);
        }
    }
    for (int32_t k = common; k < most; k++) {
#pragma GCC unroll 6
        for (int r = 1; r < NR; r++) {
            if (k >= lim[r]) continue;
            __m512 p = _mm512_set1_ps(P[r * ATT_KEYS + k]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(V + k * hdp + col + 16 * c), acc[r][c]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) _mm512_storeu_ps(O + r * hdp + col + 16 * c, acc[r][c]);
}

/* Every column of a tile of NR rows: 64 values at a time, then 16. */
INLINE void sum_rows(const int NR, int64_t hdp, const float *P, const int32_t *lim, const float *V, float *O)
{
    int64_t col = 0;
    for (; col + 64 <= hdp; col += 64) sum_tile(NR, 4, hdp, col, P, lim, V, O);
    for (; col < hdp; col += 16) sum_tile(NR, 1, hdp, col, P, lim, V, O);
}

static void accumulate_avx512(int64_t n_rows, int64_t hdp, const float *P, const int32_t *lim, const float *V, float *O)
{
    int64_t i = 0;
    for (; i + SUM_ROWS <= n_rows; i += SUM_ROWS) sum_rows(SUM_ROWS, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp);
    switch (n_rows - i) {
    case 5: sum_rows(5, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp); break;
    case 4: sum_rows(4, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp); break;
    case 3: sum_rows(3, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp); break;
    case 2: sum_rows(2, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp); break;
    case 1: sum_rows(1, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp); break;
    default: break;
    }
}

const AttnKernels attn_kernels_avx512 = {scores_avx512, softmax_avx512, accumulate_avx512};
