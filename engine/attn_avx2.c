/*
** attn_avx2.c: the tiled attention's kernels (attention.h) for AVX2 + FMA.
**
** The AVX-512 set's tiles (attn_avx512.c) narrowed to 16 registers of 8
** floats: scores in tiles of 4 query rows x 16 keys (8 accumulators), value
** sums in tiles of 4 rows x 16 output values. Each (row, lane) takes its
** fused multiply-adds in the reference's order, so scores equal the
** portable ones bit for bit; the softmax uses a polynomial exp.
*/
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "engine/attention.h"

#define TILE_ROWS 4

#define INLINE static inline __attribute__((always_inline))

/* S[r][col .. col + 16) for rows [0, NR) of a tile; NR is a constant. */
INLINE void scores_tile(const int NR, int64_t hd, int64_t hdp, int64_t col, const float *Q, const float *KT, float *S)
{
    __m256 acc[TILE_ROWS][2];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const float *kt = KT + d * ATT_KEYS + col;
        __m256 k0 = _mm256_loadu_ps(kt), k1 = _mm256_loadu_ps(kt + 8);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m256 q = _mm256_broadcast_ss(Q + r * hdp + d);
            acc[r][0] = _mm256_fmadd_ps(q, k0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(q, k1, acc[r][1]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        _mm256_storeu_ps(S + r * ATT_KEYS + col, acc[r][0]);
        _mm256_storeu_ps(S + r * ATT_KEYS + col + 8, acc[r][1]);
    }
}

/* All 64 keys for a tile of NR rows. */
INLINE void scores_rows(const int NR, int64_t hd, int64_t hdp, const float *Q, const float *KT, float *S)
{
    for (int64_t col = 0; col < ATT_KEYS; col += 16) scores_tile(NR, hd, hdp, col, Q, KT, S);
}

static void scores_avx2(int64_t n_rows, int64_t hd, int64_t hdp, const float *Q, const float *KT, float *S)
{
    int64_t i = 0;
    for (; i + TILE_ROWS <= n_rows; i += TILE_ROWS) scores_rows(TILE_ROWS, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS);
    switch (n_rows - i) {
    case 3: scores_rows(3, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS); break;
    case 2: scores_rows(2, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS); break;
    case 1: scores_rows(1, hd, hdp, Q + i * hdp, KT, S + i * ATT_KEYS); break;
    default: break;
    }
}

/* e^x for 8 floats, as exp_ps of attn_avx512.c, 2^n built in the exponent
** bits (n >= -127 after the clamp, so the result may be a tiny normal). */
INLINE __m256 exp_ps(__m256 x)
{
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.3365447505531f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n as a float: n + 127 in the exponent field; n = 128 (x near 88.4) done as 2 * 2^127 */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i big = _mm256_cmpgt_epi32(ni, _mm256_set1_epi32(127));
    ni = _mm256_sub_epi32(ni, _mm256_and_si256(big, _mm256_set1_epi32(1)));
    __m256 pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
    p = _mm256_mul_ps(p, pow2);
    return _mm256_blendv_ps(p, _mm256_add_ps(p, p), _mm256_castsi256_ps(big));
}

/* Largest and sum of the 8 floats of v. */
static inline float hmax256(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void softmax_avx2(int64_t n_rows, int64_t hdp, float *S, const int32_t *lim, const float *slope, const int64_t *rel,
                         float scale, float *M, float *L, float *O)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 vscale = _mm256_set1_ps(scale), neg_inf = _mm256_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n_rows; i++) {
        float *s = S + i * ATT_KEYS;
        __m256 v[8], keep[8], vmax = _mm256_set1_ps(M[i]);
        const __m256 vslope = _mm256_set1_ps(slope[i]);
        const __m256i vlim = _mm256_set1_epi32(lim[i]), vrel = _mm256_set1_epi32((int32_t)rel[i]);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i k = _mm256_add_epi32(iota, _mm256_set1_epi32(8 * c));
            keep[c] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(vlim, k));
            __m256 bias = _mm256_mul_ps(vslope, _mm256_cvtepi32_ps(_mm256_add_epi32(k, vrel)));
            v[c] = _mm256_blendv_ps(neg_inf, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(s + 8 * c), vscale), bias), keep[c]);
            vmax = _mm256_max_ps(vmax, v[c]);
        }
        float max = hmax256(vmax);
        __m256 sum = _mm256_setzero_ps(), vm = _mm256_set1_ps(max);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256 p = _mm256_and_ps(keep[c], exp_ps(_mm256_sub_ps(v[c], vm)));
            _mm256_storeu_ps(s + 8 * c, p);
            sum = _mm256_add_ps(sum, p);
        }
        float alpha = M[i] == -INFINITY ? 0.0f : expf(M[i] - max);
        L[i] = L[i] * alpha + hsum256(sum);
        M[i] = max;
        if (alpha != 1.0f) {
            const __m256 va = _mm256_set1_ps(alpha);
            for (int64_t d = 0; d < hdp; d += 8)
                _mm256_storeu_ps(O + i * hdp + d, _mm256_mul_ps(_mm256_loadu_ps(O + i * hdp + d), va));
        }
    }
}

/* O[r][col .. col + 16) for rows [0, NR) of a tile: keys below the first
** row's limit for all rows, then each row up to its own. */
INLINE void sum_tile(const int NR, int64_t hdp, int64_t col, const float *P, const int32_t *lim, const float *V, float *O)
{
    __m256 acc[TILE_ROWS][2];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        acc[r][0] = _mm256_loadu_ps(O + r * hdp + col);
        acc[r][1] = _mm256_loadu_ps(O + r * hdp + col + 8);
    }
    int32_t common = lim[0], most = lim[NR - 1]; /* limits never decrease along the rows */
    for (int32_t k = 0; k < common; k++) {
        __m256 v0 = _mm256_loadu_ps(V + k * hdp + col), v1 = _mm256_loadu_ps(V + k * hdp + col + 8);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m256 p = _mm256_broadcast_ss(P + r * ATT_KEYS + k);
            acc[r][0] = _mm256_fmadd_ps(p, v0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(p, v1, acc[r][1]);
        }
    }
    for (int32_t k = common; k < most; k++) {
#pragma GCC unroll 4
        for (int r = 1; r < NR; r++) {
            if (k >= lim[r]) continue;
            __m256 p = _mm256_broadcast_ss(P + r * ATT_KEYS + k);
            acc[r][0] = _mm256_fmadd_ps(p, _mm256_loadu_ps(V + k * hdp + col), acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(p, _mm256_loadu_ps(V + k * hdp + col + 8), acc[r][1]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        _mm256_storeu_ps(O + r * hdp + col, acc[r][0]);
        _mm256_storeu_ps(O + r * hdp + col + 8, acc[r][1]);
    }
}

INLINE void sum_rows(const int NR, int64_t hdp, const float *P, const int32_t *lim, const float *V, float *O)
{
    for (int64_t col = 0; col < hdp; col += 16) sum_tile(NR, hdp, col, P, lim, V, O);
}

static void accumulate_avx2(int64_t n_rows, int64_t hdp, const float *P, const int32_t *lim, const float *V, float *O)
{
    int64_t i = 0;
    for (; i + TILE_ROWS <= n_rows; i += TILE_ROWS) sum_rows(TILE_ROWS, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp);
    switch (n_rows - i) {
    case 3: sum_rows(3, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp); break;
    case 2: sum_rows(2, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp); break;
    case 1: sum_rows(1, hdp, P + i * ATT_KEYS, lim + i, V, O + i * hdp); break;
    default: break;
    }
}

const AttnKernels attn_kernels_avx2 = {scores_avx2, softmax_avx2, accumulate_avx2};
