#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
/*
** gemm_avx512.c: the tiled matrix-product kernels for CPUs with AVX-512 and
** AVX512-VNNI (vpdpbusd: unsigned bytes times signed bytes, summed by fours
** into int32 lanes). gemm_select hands them out only after checking both.
**
** A tile is GEMM_ROWS = 32 weight rows x GEMM_TOKS = 4 tokens. Per block of
** 32 weights the micro-kernel loads 16 registers of packed weights (lane r
** of registers 2k, 2k+1 holds quants 4k..4k+3 of rows r, 16 + r) and, for
** each token, broadcasts that token's 4 quants from memory once for two
** vpdpbusd: 64 vpdpbusd give the 32 x 4 exact integer block sums, which are
** then scaled and added to 8 float accumulators (three instructions per 16
** sums). vpdpbusd is the bound: measured alone in L1 this loop does about
** 128 multiply-adds per cycle, two vpdpbusd a cycle; 16 x 8 tiles (one
** broadcast per vpdpbusd) reached 87% of that.
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
**   activations, per (token tile, block), 160 bytes:
**     int32 q[8][4]   4 quants (k-th group of 4) of token t at q[k][t]
**     float d[4]      the token's block scale
**     int32 corr[4]   -offset x sum of the token's 32 quants
**   weights, per (row tile, block), 1152 bytes:
**     uint8 q[8][32][4]  quants 4k..4k+3 of row r at q[k][r], offset applied
**     float d[32]        the row's block scale
*/
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/gemm.h"

#define ACT_BLOCK 160
#define ROW_BLOCK 1152
#define ACT_D 128    /* offset of d[] in an activation block */
#define ACT_CORR 144 /* offset of corr[] */
#define ROW_D 1024   /* offset of d[] in a weight block */
#define Q4_0_SZ sizeof(BlockQ4_0)
#define Q8_0_SZ sizeof(BlockQ8_0)

_Static_assert(GEMM_ROWS == 32 && GEMM_TOKS == 4, "the kernels below are written for 32 x 4 tiles");

static bool gemm512_handles(int type)
{
    return type == KB_TYPE_Q4_0 || type == KB_TYPE_Q8_0;
}

/* --- activations --- */

/* Quantizes up to 4 tokens to Q8_0 rows in tmp (zero rows past nt), then
** interleaves them block by block into dst (layout at the top): a 4 x 8
** dword transpose per block. The offset of the weight type sets corr. */
static void gemm512_pack_acts(int type, const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp,
                              uint8_t *dst)
{
    const int64_t nb = n_in / KB_QK;
    const size_t row = (size_t)nb * Q8_0_SZ;
    for (int t = 0; t < GEMM_TOKS; t++) {
        if (t < nt) quantize(x + t * n_in, tmp + t * row, n_in);
        else memset(tmp + t * row, 0, row);
    }
    const __m128i neg_off = _mm_set1_epi32(type == KB_TYPE_Q4_0 ? -8 : -128);
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *b = tmp + l * Q8_0_SZ;
        uint8_t *o = dst + l * ACT_BLOCK;
        __m256i r[4];
        uint16_t h[8] = {0};
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            r[t] = _mm256_loadu_si256((const __m256i *)(const void *)(b + t * row + offsetof(BlockQ8_0, qs)));
            memcpy(&h[t], b + t * row, sizeof h[t]);
        }
        /* u[i] holds dwords i (low half) and i + 4 (high half) of tokens 0..3 */
        const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
        const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
        _mm256_store_si256((__m256i *)(void *)(o + 0), _mm256_permute2x128_si256(u0, u1, 0x20));
        _mm256_store_si256((__m256i *)(void *)(o + 32), _mm256_permute2x128_si256(u2, u3, 0x20));
        _mm256_store_si256((__m256i *)(void *)(o + 64), _mm256_permute2x128_si256(u0, u1, 0x31));
        _mm256_store_si256((__m256i *)(void *)(o + 96), _mm256_permute2x128_si256(u2, u3, 0x31));
        __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, u0);
        sum = _mm256_dpbusd_epi32(sum, ones, u1);
        sum = _mm256_dpbusd_epi32(sum, ones, u2);
        sum = _mm256_dpbusd_epi32(sum, ones, u3);
        const __m128i sum4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        _mm_store_ps((float *)(void *)(o + ACT_D), _mm_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h)));
        _mm_store_si128((__m128i *)(void *)(o + ACT_CORR), _mm_mullo_epi32(sum4, neg_off));
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

/* The fp16 scale of row r at w + r * row_bytes, 0 past nr. */
static inline uint64_t row_scale(const uint8_t *w, size_t row_bytes, int nr, int r)
{
    uint16_t h = 0;
    if (r < nr) memcpy(&h, w + (size_t)r * row_bytes, sizeof h);
    return h;
}

/* The fp16 scales of 16 rows (rows past nr: 0) as 16 floats. The halves
** are assembled in general registers: writing them to memory one by one and
** loading them as a vector stalls on store forwarding. */
static inline __m512 rows16_scales(const uint8_t *w, size_t row_bytes, int nr)
{
    long long q[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        q[i] = (long long)(row_scale(w, row_bytes, nr, 4 * i) | row_scale(w, row_bytes, nr, 4 * i + 1) << 16 |
                           row_scale(w, row_bytes, nr, 4 * i + 2) << 32 | row_scale(w, row_bytes, nr, 4 * i + 3) << 48);
    return _mm512_cvtph_ps(_mm256_set_epi64x(q[3], q[2], q[1], q[0]));
}

/* Packs up to 32 rows of Q4_0 or Q8_0 (rows past nr are zero), block by
** block: 16-byte loads of each row transposed in registers, 16 rows at a
** time (register 2k + h holds rows 16h..16h+15). */
static void gemm512_pack_rows(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    __m512i q[4];
    const size_t half = 16 * row_bytes;
    const int nr1 = nr > 16 ? nr - 16 : 0, nr0 = nr - nr1;
    if (type == KB_TYPE_Q4_0) {
        const __m512i lo4 = _mm512_set1_epi8(0x0f);
        for (int64_t l = 0; l < nb; l++) {
            const uint8_t *b = w + l * Q4_0_SZ;
            uint8_t *o = dst + l * ROW_BLOCK;
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                rows16_dwords(b + h * half, row_bytes, h ? nr1 : nr0, offsetof(BlockQ4_0, qs), q);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    _mm512_store_si512(o + 64 * (2 * k + h), _mm512_and_si512(q[k], lo4));
                    _mm512_store_si512(o + 64 * (2 * (k + 4) + h), _mm512_and_si512(_mm512_srli_epi16(q[k], 4), lo4));
                }
                _mm512_store_ps(o + ROW_D + 64 * h, rows16_scales(b + h * half, row_bytes, h ? nr1 : nr0));
            }
        }
    } else {
        const __m512i bias = _mm512_set1_epi8((char)0x80);
        for (int64_t l = 0; l < nb; l++) {
            const uint8_t *b = w + l * Q8_0_SZ;
            uint8_t *o = dst + l * ROW_BLOCK;
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
#pragma GCC unroll 2
                for (int g = 0; g < 2; g++) {
                    rows16_dwords(b + h * half, row_bytes, h ? nr1 : nr0, offsetof(BlockQ8_0, qs) + 16 * (size_t)g, q);
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++)
                        _mm512_store_si512(o + 64 * (2 * (4 * g + k) + h), _mm512_xor_si512(q[k], bias));
                }
                _mm512_store_ps(o + ROW_D + 64 * h, rows16_scales(b + h * half, row_bytes, h ? nr1 : nr0));
            }
        }
    }
}

/* --- the micro-kernel --- */

/* One 32 x 4 tile over nb blocks (see the top of the file); stores rows < nr
** of tokens < nt. Blocks are added in order, one fused multiply-add each,
** to zero or (add) to what y holds. */
static void gemm512_tile(const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy, int nr, int nt,
                         bool add)
{
    const __mmask16 live0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
    const __mmask16 live1 = (__mmask16)(nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
    __m512 acc[4][2];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        const bool load = add && t < nt;
        acc[t][0] = load ? _mm512_maskz_loadu_ps(live0, y + t * ldy) : _mm512_setzero_ps();
        acc[t][1] = load ? _mm512_maskz_loadu_ps(live1, y + t * ldy + 16) : _mm512_setzero_ps();
    }
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + l * ROW_BLOCK, *ab = ap + l * ACT_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        const int32_t *corr = (const int32_t *)(const void *)(ab + ACT_CORR);
        const float *ad = (const float *)(const void *)(ab + ACT_D);
        __m512i s[4][2];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) s[t][0] = s[t][1] = _mm512_set1_epi32(corr[t]);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m512i w0 = _mm512_load_si512(wb + 128 * k), w1 = _mm512_load_si512(wb + 128 * k + 64);
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                const __m512i a = _mm512_set1_epi32(aq[4 * k + t]);
                s[t][0] = _mm512_dpbusd_epi32(s[t][0], w0, a);
                s[t][1] = _mm512_dpbusd_epi32(s[t][1], w1, a);
            }
        }
        const __m512 d0 = _mm512_load_ps(wb + ROW_D), d1 = _mm512_load_ps(wb + ROW_D + 64);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const __m512 dy = _mm512_set1_ps(ad[t]);
            acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t][0]), _mm512_mul_ps(d0, dy), acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t][1]), _mm512_mul_ps(d1, dy), acc[t][1]);
        }
    }
    for (int t = 0; t < nt; t++) {
        _mm512_mask_storeu_ps(y + t * ldy, live0, acc[t][0]);
        _mm512_mask_storeu_ps(y + t * ldy + 16, live1, acc[t][1]);
    }
}

const GemmIsa gemm_isa_avx512 = {
    "AVX512-VNNI", ACT_BLOCK, ROW_BLOCK, gemm512_handles, gemm512_pack_acts, gemm512_pack_rows, gemm512_tile,
};
