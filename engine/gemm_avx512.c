/*
** gemm_avx512.c: the tiled matrix-product kernels for CPUs with AVX-512 and
** AVX512-VNNI (vpdpbusd: unsigned bytes times signed bytes, summed by fours
** into int32 lanes; vpdpwssd: the same for int16 pairs). gemm_select hands
** them out only after checking both. Weight types: Q4_0 and Q8_0 (with Q8_0
** activations), Q4_K, Q5_K and Q6_K (with Q8_K activations).
**
** A tile is GEMM_ROWS = 32 weight rows x up to GEMM_TOKS = 4 tokens. Per
** 32 weights the micro-kernel makes 16 registers of quants from the packed
** weights (lane r of the two registers of group k holds quants 4k..4k+3 of
** rows r and 16 + r: Q8_0 loads them, the others take nibbles and high bits
** apart with a few and/shift/or) and, for each token, broadcasts that
** token's 4 quants from memory once for two vpdpbusd: 64 vpdpbusd give the
** 32 x 4 exact integer sums. The packed weights keep the stored bits (the
** quants' bytes as dwords, interleaved by row), so a packed matrix is as
** large as the stored one and generation, which reads every weight once
** per token, reads no more memory than vec_dot would. Then:
**   Q4_0, Q8_0  each 32-weight block's sums are converted to float and
**               added with one fused multiply-add by (row scale x token
**               scale): three instructions per 16 sums;
**   K types     each sub-block's sums are multiplied by the rows' integer
**               sub-block scales and added in int32 (vpmulld, vpaddd); per
**               256-weight super-block the total goes to float once, and
**               Q4_K/Q5_K's minimums (sum of min x the token's sub-block
**               sums, 4 vpdpwssd) are subtracted with the dmin scale.
** vpdpbusd is the bound: measured alone in L1 the Q4_0 loop does about 128
** multiply-adds per cycle, two vpdpbusd a cycle; 16 x 8 tiles (one
** broadcast per vpdpbusd) reached 87% of that.
**
** vpdpbusd wants one operand unsigned, so the weights are packed as
** unsigned bytes with an offset and the offset's contribution is taken back
** through the activations' sums, as the integer accumulator's starting
** value (so it costs nothing in the loop):
**   Q4_0  quants q in 0..15 stand for q - 8:   sum (q - 8) a = sum q a - 8 sum a
**   Q8_0  q in -128..127 is stored q + 128:    sum q a = sum (q + 128) a - 128 sum a
**   Q6_K  quants q in 0..63 stand for q - 32, per 16-weight sub-block
**   Q4_K, Q5_K  quants are unsigned already (0..15, 0..31)
** Every integer sum is exact in int32 (Q6_K's largest: 256 x 127 x 32 x
** 127 < 2^31).
**
** The packed layouts and their packers are shared with the 256-bit sets
** (gemm_layout.h, gemm_avx2.c).
*/
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/gemm_layout.h"

/* --- the micro-kernels --- */

/* The accumulators of a 32 x 4 tile: 0 or (add) what y holds. */
static inline void tile_load(__m512 acc[4][2], const float *y, int64_t ldy, __mmask16 live0, __mmask16 live1, int nt,
                             bool add)
{
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        const bool load = add && t < nt;
        acc[t][0] = load ? _mm512_maskz_loadu_ps(live0, y + t * ldy) : _mm512_setzero_ps();
        acc[t][1] = load ? _mm512_maskz_loadu_ps(live1, y + t * ldy + 16) : _mm512_setzero_ps();
    }
}

/* Stores rows live0/live1 of tokens < nt. */
static inline void tile_store(__m512 acc[4][2], float *y, int64_t ldy, __mmask16 live0, __mmask16 live1, int nt)
{
    for (int t = 0; t < nt; t++) {
        _mm512_mask_storeu_ps(y + t * ldy, live0, acc[t][0]);
        _mm512_mask_storeu_ps(y + t * ldy + 16, live1, acc[t][1]);
    }
}

/* Token t's integer sums s[t][h] += quads (w0: rows 0..15, w1: rows
** 16..31) . its quad k, for the NT tokens of the tile. */
#define DOT_QUAD_NT(s, w0, w1, aq, k, NT)                                                                         \
    do {                                                                                                         \
        _Pragma("GCC unroll 4") for (int t = 0; t < (NT); t++)                                                   \
        {                                                                                                        \
            const __m512i a = _mm512_set1_epi32((aq)[4 * (k) + t]);                                              \
            s[t][0] = _mm512_dpbusd_epi32(s[t][0], (w0), a);                                                     \
            s[t][1] = _mm512_dpbusd_epi32(s[t][1], (w1), a);                                                     \
        }                                                                                                        \
    } while (0)

/* Q4_0 / Q8_0 (q4: which) for NT tokens, a constant once inlined: one
** fused multiply-add per 32-weight block, blocks in order. Each (row,
** token) goes through the same instructions whatever NT, so a token's
** result does not depend on how many tokens share its tile. */
static inline __attribute__((always_inline)) void tile_q4_0_q8_0_nt(bool q4, const int NT, const uint8_t *wp,
                                                                     const uint8_t *ap, int64_t nb, float *y,
                                                                     int64_t ldy, __mmask16 live0, __mmask16 live1,
                                                                     bool add)
{
    const size_t wblock = q4 ? W40_BLOCK : W80_BLOCK, woff = q4 ? W40_D : W80_D;
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    __m512 acc[4][2];
    tile_load(acc, y, ldy, live0, live1, NT, add);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + (size_t)l * wblock, *ab = ap + l * A0_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        const int32_t *corr = (const int32_t *)(const void *)(ab + A0_CORR);
        const float *ad = (const float *)(const void *)(ab + A0_D);
        __m512i s[4][2];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) s[t][0] = s[t][1] = _mm512_set1_epi32(corr[t]);
        if (q4) {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) { /* byte quad k: low nibbles quad k, high nibbles quad k + 4 */
                const __m512i r0 = _mm512_load_si512(wb + 128 * k), r1 = _mm512_load_si512(wb + 128 * k + 64);
                DOT_QUAD_NT(s, _mm512_and_si512(r0, lo4), _mm512_and_si512(r1, lo4), aq, k, NT);
                DOT_QUAD_NT(s, _mm512_and_si512(_mm512_srli_epi16(r0, 4), lo4),
                            _mm512_and_si512(_mm512_srli_epi16(r1, 4), lo4), aq, k + 4, NT);
            }
        } else {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                DOT_QUAD_NT(s, _mm512_load_si512(wb + 128 * k), _mm512_load_si512(wb + 128 * k + 64), aq, k, NT);
        }
        const __m512 d0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(wb + woff)));
        const __m512 d1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(wb + woff + 32)));
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m512 dy = _mm512_set1_ps(ad[t]);
            acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t][0]), _mm512_mul_ps(d0, dy), acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t][1]), _mm512_mul_ps(d1, dy), acc[t][1]);
        }
    }
    tile_store(acc, y, ldy, live0, live1, NT);
}

/* isum[t][h] += s[t][h] x the rows' sub-block scales: 32 bytes at sc
** (rows 0..31), unsigned or (sgn) signed. */
static inline __attribute__((always_inline)) void add_scaled(const int NT, __m512i isum[4][2], __m512i s[4][2],
                                                             const uint8_t *sc, bool sgn)
{
    const __m128i b0 = _mm_load_si128((const __m128i *)(const void *)sc);
    const __m128i b1 = _mm_load_si128((const __m128i *)(const void *)(sc + 16));
    const __m512i sc0 = sgn ? _mm512_cvtepi8_epi32(b0) : _mm512_cvtepu8_epi32(b0);
    const __m512i sc1 = sgn ? _mm512_cvtepi8_epi32(b1) : _mm512_cvtepu8_epi32(b1);
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        isum[t][0] = _mm512_add_epi32(isum[t][0], _mm512_mullo_epi32(s[t][0], sc0));
        isum[t][1] = _mm512_add_epi32(isum[t][1], _mm512_mullo_epi32(s[t][1], sc1));
    }
}

/* Bit j of every byte of v moved to bit 4 (Q5_K's fifth bit of sub-block j). */
static inline __m512i bit_to_4(__m512i v, int j)
{
    const __m512i m = j <= 4 ? _mm512_slli_epi16(v, (unsigned)(4 - j)) : _mm512_srli_epi16(v, (unsigned)(j - 4));
    return _mm512_and_si512(m, _mm512_set1_epi8(0x10));
}

/* Q4_K / Q5_K (q5) for NT tokens: per super-block
** d dy sum_j sc_j s_j - dmin dy sum_j min_j bsum_j. Weight 64g + 32i + 4c + e
** (sub-block j = 2g + i) is nibble i of byte e of quant dword 8g + c, plus
** (Q5_K) bit j of byte e of high-bit dword c, as 16. */
static inline __attribute__((always_inline)) void tile_k4_nt(bool q5, const int NT, const uint8_t *wp,
                                                              const uint8_t *ap, int64_t nb, float *y, int64_t ldy,
                                                              __mmask16 live0, __mmask16 live1, bool add)
{
    const size_t wblock = q5 ? WK5_BLOCK : WK4_BLOCK, scales = q5 ? WK5_SC : WK4_SC;
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    __m512 acc[4][2];
    tile_load(acc, y, ldy, live0, live1, NT, add);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + (size_t)l * wblock, *ab = ap + l * AK4_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        const int32_t *bsum = (const int32_t *)(const void *)(ab + AK_EXTRA);
        const float *ad = (const float *)(const void *)(ab + AK_D);
        __m512i isum[4][2], s[4][2], s2[4][2];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) isum[t][0] = isum[t][1] = _mm512_setzero_si512();
        for (int g = 0; g < 4; g++) {
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) s[t][0] = s[t][1] = s2[t][0] = s2[t][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) {
                const __m512i r0 = _mm512_load_si512(wb + 128 * (8 * g + c));
                const __m512i r1 = _mm512_load_si512(wb + 128 * (8 * g + c) + 64);
                __m512i lo0 = _mm512_and_si512(r0, lo4), lo1 = _mm512_and_si512(r1, lo4);
                __m512i hi0 = _mm512_and_si512(_mm512_srli_epi16(r0, 4), lo4);
                __m512i hi1 = _mm512_and_si512(_mm512_srli_epi16(r1, 4), lo4);
                if (q5) {
                    const __m512i h0 = _mm512_load_si512(wb + WK_QH + 128 * c);
                    const __m512i h1 = _mm512_load_si512(wb + WK_QH + 128 * c + 64);
                    lo0 = _mm512_or_si512(lo0, bit_to_4(h0, 2 * g));
                    lo1 = _mm512_or_si512(lo1, bit_to_4(h1, 2 * g));
                    hi0 = _mm512_or_si512(hi0, bit_to_4(h0, 2 * g + 1));
                    hi1 = _mm512_or_si512(hi1, bit_to_4(h1, 2 * g + 1));
                }
                DOT_QUAD_NT(s, lo0, lo1, aq, 16 * g + c, NT);
                DOT_QUAD_NT(s2, hi0, hi1, aq, 16 * g + 8 + c, NT);
            }
            add_scaled(NT, isum, s, wb + scales + 32 * (2 * g), false);
            add_scaled(NT, isum, s2, wb + scales + 32 * (2 * g + 1), false);
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) s[t][0] = s[t][1] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const __m512i m0 = _mm512_cvtepu8_epi16(_mm256_load_si256((const __m256i *)(const void *)(wb + scales + WK_MINS + 64 * p)));
            const __m512i m1 =
                _mm512_cvtepu8_epi16(_mm256_load_si256((const __m256i *)(const void *)(wb + scales + WK_MINS + 64 * p + 32)));
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                const __m512i b = _mm512_set1_epi32(bsum[4 * p + t]);
                s[t][0] = _mm512_dpwssd_epi32(s[t][0], m0, b);
                s[t][1] = _mm512_dpwssd_epi32(s[t][1], m1, b);
            }
        }
        const __m512 d0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(wb + scales + WK_D)));
        const __m512 d1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(wb + scales + WK_D + 32)));
        const __m512 m0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(wb + scales + WK_DMIN)));
        const __m512 m1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(wb + scales + WK_DMIN + 32)));
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m512 dy = _mm512_set1_ps(ad[t]);
            acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t][0]), _mm512_mul_ps(d0, dy), acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t][1]), _mm512_mul_ps(d1, dy), acc[t][1]);
            acc[t][0] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(s[t][0]), _mm512_mul_ps(m0, dy), acc[t][0]);
            acc[t][1] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(s[t][1]), _mm512_mul_ps(m1, dy), acc[t][1]);
        }
    }
    tile_store(acc, y, ldy, live0, live1, NT);
}

/* Q6_K for NT tokens: per super-block d dy sum_j sc_j (s_j - 32 bsum_j) over
** 16 sub-blocks. Weight 128n + 32c + 4q + e (sub-block 8n + 2c + q / 4) has
** its low four bits in nibble c / 2 of byte e of ql dword 16n + 8 (c & 1) +
** q and its high two in bits 2c, 2c + 1 of byte e of qh dword 8n + q. */
static inline __attribute__((always_inline)) void tile_q6_K_nt(const int NT, const uint8_t *wp, const uint8_t *ap,
                                                                int64_t nb, float *y, int64_t ldy, __mmask16 live0,
                                                                __mmask16 live1, bool add)
{
    const __m512i lo4 = _mm512_set1_epi8(0x0f), hi2 = _mm512_set1_epi8(0x30);
    __m512 acc[4][2];
    tile_load(acc, y, ldy, live0, live1, NT, add);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + (size_t)l * WK6_BLOCK, *ab = ap + l * AK6_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        const int32_t *corr = (const int32_t *)(const void *)(ab + AK_EXTRA);
        const float *ad = (const float *)(const void *)(ab + AK_D);
        __m512i isum[4][2], s[4][2];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) isum[t][0] = isum[t][1] = _mm512_setzero_si512();
        for (int n = 0; n < 2; n++) {
            for (int c = 0; c < 4; c++) {
#pragma GCC unroll 2
                for (int half = 0; half < 2; half++) { /* sub-block 8n + 2c + half: quads q = 4 half .. 4 half + 3 */
                    const int j = 8 * n + 2 * c + half;
#pragma GCC unroll 4
                    for (int t = 0; t < NT; t++) s[t][0] = s[t][1] = _mm512_set1_epi32(corr[4 * j + t]);
#pragma GCC unroll 4
                    for (int q = 4 * half; q < 4 * half + 4; q++) {
                        const uint8_t *ql = wb + 128 * (16 * n + 8 * (c & 1) + q), *qh = wb + WK6_QH + 128 * (8 * n + q);
                        __m512i w[2];
#pragma GCC unroll 2
                        for (int h = 0; h < 2; h++) {
                            const __m512i l4 = _mm512_load_si512(ql + 64 * h), h2 = _mm512_load_si512(qh + 64 * h);
                            const __m512i low = c < 2 ? _mm512_and_si512(l4, lo4)
                                                      : _mm512_and_si512(_mm512_srli_epi16(l4, 4), lo4);
                            const __m512i high = 2 * c <= 4 ? _mm512_slli_epi16(h2, (unsigned)(4 - 2 * c))
                                                            : _mm512_srli_epi16(h2, (unsigned)(2 * c - 4));
                            w[h] = _mm512_or_si512(low, _mm512_and_si512(high, hi2));
                        }
                        DOT_QUAD_NT(s, w[0], w[1], aq, 32 * n + 8 * c + q, NT);
                    }
                    add_scaled(NT, isum, s, wb + WK6_SC + 32 * j, true);
                }
            }
        }
        const __m512 d0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(wb + WK6_D)));
        const __m512 d1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(wb + WK6_D + 32)));
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m512 dy = _mm512_set1_ps(ad[t]);
            acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t][0]), _mm512_mul_ps(d0, dy), acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t][1]), _mm512_mul_ps(d1, dy), acc[t][1]);
        }
    }
    tile_store(acc, y, ldy, live0, live1, NT);
}

/* A tile of NT tokens (a constant once inlined) of weights of `type`. */
static inline __attribute__((always_inline)) void tile_nt(int type, const int NT, const uint8_t *wp,
                                                           const uint8_t *ap, int64_t nb, float *y, int64_t ldy,
                                                           __mmask16 live0, __mmask16 live1, bool add)
{
    switch (type) {
    case KB_TYPE_Q4_0: tile_q4_0_q8_0_nt(true, NT, wp, ap, nb, y, ldy, live0, live1, add); break;
    case KB_TYPE_Q8_0: tile_q4_0_q8_0_nt(false, NT, wp, ap, nb, y, ldy, live0, live1, add); break;
    case KB_TYPE_Q4_K: tile_k4_nt(false, NT, wp, ap, nb, y, ldy, live0, live1, add); break;
    case KB_TYPE_Q5_K: tile_k4_nt(true, NT, wp, ap, nb, y, ldy, live0, live1, add); break;
    default: tile_q6_K_nt(NT, wp, ap, nb, y, ldy, live0, live1, add); break;
    }
}

/* One 32 x nt tile over nb blocks; stores rows < nr of tokens < nt. Each
** token count 1..4 runs its own specialised loop. */
static void gemm512_tile(int type, const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy, int nr,
                         int nt, bool add)
{
    const __mmask16 live0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
    const __mmask16 live1 = (__mmask16)(nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
    switch (nt) {
    case 1: tile_nt(type, 1, wp, ap, nb, y, ldy, live0, live1, add); break;
    case 2: tile_nt(type, 2, wp, ap, nb, y, ldy, live0, live1, add); break;
    case 3: tile_nt(type, 3, wp, ap, nb, y, ldy, live0, live1, add); break;
    default: tile_nt(type, 4, wp, ap, nb, y, ldy, live0, live1, add); break;
    }
}

const GemmIsa gemm_isa_avx512 = {
    "AVX512-VNNI", gemm_x86_layout, gemm_x86_pack_acts, gemm_x86_pack_rows, gemm512_tile,
};
