#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
/*
** gemm_avx512.c: the tiled matrix-product kernels for CPUs with AVX-512 and
** AVX512-VNNI (vpdpbusd: unsigned bytes times signed bytes, summed by fours
** into int32 lanes). gemm_select hands them out only after checking both.
**
** A tile is GEMM_ROWS = 16 weight rows x GEMM_TOKS = 8 tokens. Per block of
** 32 weights the micro-kernel loads 8 registers of packed weights (lane r of
** register k holds quants 4k..4k+3 of row r) and, for each token, does 8
** vpdpbusd with that token's 4 quants broadcast from memory: 64 vpdpbusd
** give the 16 x 8 exact integer block sums, which are then scaled and added
** to 8 float accumulators of 16 rows each (three instructions per token).
**
** vpdpbusd wants one operand unsigned, so the weights are packed as
** unsigned bytes with an offset and the offset's contribution is taken back
** through the activations' block sums:
**   Q4_0  quants q in 0..15 stand for q - 8:   sum (q - 8) a = sum q a - 8 sum a
**   Q8_0  quants q in -128..127 are stored q + 128: sum q a = sum (q + 128) a - 128 sum a
** The correction -offset x sum a is the integer accumulator's starting value,
** so it costs nothing in the loop. All of it is exact in int32.
**
** Packed layouts (64-byte aligned areas; sizes per block of 32 weights):
**   activations, per (token tile, block), 320 bytes:
**     int32 q[8][8]   4 quants (k-th group of 4) of token t at q[k][t]
**     float d[8]      the token's block scale
**     int32 corr[8]   -offset x sum of the token's 32 quants
**   weights, per (row tile, block), 576 bytes:
**     uint8 q[8][16][4]  quants 4k..4k+3 of row r at q[k][r], offset applied
**     float d[16]        the row's block scale
*/
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/gemm.h"

#define ACT_BLOCK 320
#define ROW_BLOCK 576
#define ACT_D 256    /* offset of d[] in an activation block */
#define ACT_CORR 288 /* offset of corr[] */
#define ROW_D 512    /* offset of d[] in a weight block */
#define Q4_0_SZ sizeof(BlockQ4_0)
#define Q8_0_SZ sizeof(BlockQ8_0)

_Static_assert(GEMM_ROWS == 16 && GEMM_TOKS == 8, "the kernels below are written for 16 x 8 tiles");

static bool gemm512_handles(int type)
{
    return type == KB_TYPE_Q4_0 || type == KB_TYPE_Q8_0;
}

/* --- activations --- */

/* Transposes an 8 x 8 matrix of int32, one row per register. */
static inline void transpose8x8(__m256i r[8])
{
    __m256i t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x20);
        r[i + 4] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x31);
    }
}

/* Quantizes up to 8 tokens to Q8_0 rows in tmp (zero rows past nt), then
** interleaves them block by block into dst (layout at the top). The offset
** of the weight type sets corr. */
static void gemm512_pack_acts(int type, const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp,
                              uint8_t *dst)
{
    const int64_t nb = n_in / KB_QK;
    const size_t row = (size_t)nb * Q8_0_SZ;
    for (int t = 0; t < GEMM_TOKS; t++) {
        if (t < nt) quantize(x + t * n_in, tmp + t * row, n_in);
        else memset(tmp + t * row, 0, row);
    }
    const __m256i neg_off = _mm256_set1_epi32(type == KB_TYPE_Q4_0 ? -8 : -128);
    const __m256i ones = _mm256_set1_epi8(1);
    const __m256i rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)row));
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *b = tmp + l * Q8_0_SZ;
        uint8_t *o = dst + l * ACT_BLOCK;
        __m256i r[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) r[t] = _mm256_loadu_si256((const __m256i *)(const void *)(b + t * row + 2));
        transpose8x8(r);
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            sum = _mm256_dpbusd_epi32(sum, ones, r[k]);
            _mm256_store_si256((__m256i *)(void *)(o + 32 * k), r[k]);
        }
        /* each gathered dword starts with the token's fp16 scale */
        const __m256i dw = _mm256_i32gather_epi32((const int *)(const void *)b, rows, 1);
        _mm256_store_ps((float *)(void *)(o + ACT_D), _mm256_cvtph_ps(_mm256_cvtepi32_epi16(dw)));
        _mm256_store_si256((__m256i *)(void *)(o + ACT_CORR), _mm256_mullo_epi32(sum, neg_off));
    }
}

/* --- weights --- */

/* Four registers k = 0..3 holding dword k of the 16 bytes at p[r] + off for
** the 16 rows r: rows i, i + 4, i + 8, i + 12 go to the 128-bit lanes of
** z[i], then a 4 x 4 dword transpose inside every lane puts dword k of rows
** 4j..4j+3 into lane j of register k. Rows past nr read as zero. */
static inline void rows16_dwords(const uint8_t *w, size_t row_bytes, int nr, size_t off, __m512i out[4])
{
    __m512i z[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m128i lane[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const int r = i + 4 * j;
            lane[j] = r < nr ? _mm_loadu_si128((const __m128i *)(const void *)(w + (size_t)r * row_bytes + off))
                             : _mm_setzero_si128();
        }
        z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(lane[1], lane[0])),
                                  _mm256_set_m128i(lane[3], lane[2]), 1);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(t0, t2);
    out[1] = _mm512_unpackhi_epi64(t0, t2);
    out[2] = _mm512_unpacklo_epi64(t1, t3);
    out[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* The fp16 scales at p[r] (rows past nr: 0) as 16 floats. */
static inline __m512 rows16_scales(const uint8_t *w, size_t row_bytes, int nr)
{
    uint16_t h[16];
    for (int r = 0; r < 16; r++) {
        h[r] = 0;
        if (r < nr) memcpy(&h[r], w + (size_t)r * row_bytes, sizeof h[r]);
    }
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)h));
}

/* Packs up to 16 rows of Q4_0 or Q8_0 (rows past nr are zero), block by
** block: 16-byte loads of each row transposed in registers. */
static void gemm512_pack_rows(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    __m512i q[4];
    if (type == KB_TYPE_Q4_0) {
        const __m512i lo4 = _mm512_set1_epi8(0x0f);
        for (int64_t l = 0; l < nb; l++) {
            const uint8_t *b = w + l * Q4_0_SZ;
            uint8_t *o = dst + l * ROW_BLOCK;
            rows16_dwords(b, row_bytes, nr, offsetof(BlockQ4_0, qs), q);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                _mm512_store_si512(o + 64 * k, _mm512_and_si512(q[k], lo4));
                _mm512_store_si512(o + 64 * (k + 4), _mm512_and_si512(_mm512_srli_epi16(q[k], 4), lo4));
            }
            _mm512_store_ps(o + ROW_D, rows16_scales(b, row_bytes, nr));
        }
    } else {
        const __m512i bias = _mm512_set1_epi8((char)0x80);
        for (int64_t l = 0; l < nb; l++) {
            const uint8_t *b = w + l * Q8_0_SZ;
            uint8_t *o = dst + l * ROW_BLOCK;
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                rows16_dwords(b, row_bytes, nr, offsetof(BlockQ8_0, qs) + 16 * (size_t)h, q);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) _mm512_store_si512(o + 64 * (4 * h + k), _mm512_xor_si512(q[k], bias));
            }
            _mm512_store_ps(o + ROW_D, rows16_scales(b, row_bytes, nr));
        }
    }
}

/* --- the micro-kernel --- */

/* One 16 x 8 tile over nb blocks (see the top of the file); stores rows < nr
** of tokens < nt. Blocks are added in order, one fused multiply-add each. */
static void gemm512_tile(const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy, int nr, int nt)
{
    __m512 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < 8; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + l * ROW_BLOCK, *ab = ap + l * ACT_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        const int32_t *corr = (const int32_t *)(const void *)(ab + ACT_CORR);
        const float *ad = (const float *)(const void *)(ab + ACT_D);
        __m512i s[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) s[t] = _mm512_set1_epi32(corr[t]);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m512i wk = _mm512_load_si512(wb + 64 * k);
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++) s[t] = _mm512_dpbusd_epi32(s[t], wk, _mm512_set1_epi32(aq[8 * k + t]));
        }
        const __m512 dw = _mm512_load_ps(wb + ROW_D);
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(dw, _mm512_set1_ps(ad[t])), acc[t]);
    }
    const __mmask16 live = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + t * ldy, live, acc[t]);
}

const GemmIsa gemm_isa_avx512 = {
    "AVX512-VNNI", ACT_BLOCK, ROW_BLOCK, gemm512_handles, gemm512_pack_acts, gemm512_pack_rows, gemm512_tile,
};
