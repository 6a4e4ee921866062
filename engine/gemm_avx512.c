#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
/*
** gemm_avx512.c: the tiled matrix-product kernels for CPUs with AVX-512 and
** AVX512-VNNI (vpdpbusd: unsigned bytes times signed bytes, summed by fours
** into int32 lanes; vpdpwssd: the same for int16 pairs). gemm_select hands
** them out only after checking both. Weight types: Q4_0 and Q8_0 (with Q8_0
** activations), Q4_K, Q5_K and Q6_K (with Q8_K activations).
**
** A tile is GEMM_ROWS = 32 weight rows x GEMM_TOKS = 4 tokens. Per 32
** weights the micro-kernel loads 16 registers of packed weights (lane r of
** the two registers of group k holds quants 4k..4k+3 of rows r and 16 + r)
** and, for each token, broadcasts that token's 4 quants from memory once
** for two vpdpbusd: 64 vpdpbusd give the 32 x 4 exact integer sums. Then:
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
** Packed layouts (64-byte aligned areas; "x32" = rows 0..15 then 16..31):
**   Q8_0 activations, per (token tile, 32-weight block), 160 bytes:
**     int32 q[8][4]      4 quants (k-th group of 4) of token t at q[k][t]
**     float d[4]         the token's block scale
**     int32 corr[4]      -offset x sum of the token's 32 quants
**   Q8_K activations, per (token tile, super-block), 1152 / 1344 bytes:
**     int32 q[64][4]     as above
**     float d[4]
**     Q4_K/Q5_K: int32 bsum[4][4]   pairs of int16 sub-block sums (2p, 2p+1)
**     Q6_K:      int32 corr[16][4]  -32 x sum of 16-quant sub-block j
**   Q4_0 weights, per (row tile, block), 576 bytes (32 stored blocks):
**     uint8 q[4][x32][4] the stored bytes (low nibbles: quads 0..3, high
**     nibbles: quads 4..7, split in the kernel); fp16 d[x32]
**   Q8_0 weights, per (row tile, block), 1088 bytes (32 stored blocks):
**     uint8 q[8][x32][4] quants + 128; fp16 d[x32]
**   Q4_0 and Q8_0 are packed once when the model opens (GemmLayout.compact:
**   the packed matrix has the file's size); the K types, whose packing
**   unpacks nibbles and scales to twice that, per run (encoders only).
**   Q4_K/Q5_K weights, per (row tile, super-block), 9984 bytes:
**     uint8 q[64][x32][4]; int32 sc[8][x32]; int32 mins[4][x32] (pairs of
**     int16 mins 2p, 2p+1); float d[x32]; float dmin[x32]
**   Q6_K weights, per (row tile, super-block), 10368 bytes:
**     uint8 q[64][x32][4] (0..63); int32 sc[16][x32]; float d[x32]
*/
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/gemm.h"

/* Q4_0/Q8_0 */
#define A0_BLOCK 160
#define A0_D 128
#define A0_CORR 144
#define W40_D 512     /* Q4_0 weights: fp16 scales after the quants */
#define W40_BLOCK 576 /* = 32 x sizeof(BlockQ4_0): the packed matrix is the file's size */
#define W80_D 1024
#define W80_BLOCK 1088 /* = 32 x sizeof(BlockQ8_0) */
/* K types */
#define AK_D 1024
#define AK_EXTRA 1088 /* bsum pairs (Q4_K/Q5_K) or corr (Q6_K) */
#define AK4_BLOCK 1152
#define AK6_BLOCK 1344
#define WK_SC 8192
#define WK4_MINS 9216
#define WK4_D 9728
#define WK4_DMIN 9856
#define WK4_BLOCK 9984
#define WK6_D 10240
#define WK6_BLOCK 10368

#define Q4_0_SZ sizeof(BlockQ4_0)
#define Q8_0_SZ sizeof(BlockQ8_0)
#define Q8_K_SZ sizeof(BlockQ8_K)

_Static_assert(GEMM_ROWS == 32 && GEMM_TOKS == 4, "the kernels below are written for 32 x 4 tiles");

/* The packed sizes of each handled type (layouts at the top). */
static bool gemm512_layout(int type, GemmLayout *out)
{
    switch (type) {
    case KB_TYPE_Q4_0: *out = (GemmLayout){KB_QK, A0_BLOCK, W40_BLOCK, true}; return true;
    case KB_TYPE_Q8_0: *out = (GemmLayout){KB_QK, A0_BLOCK, W80_BLOCK, true}; return true;
    case KB_TYPE_Q4_K:
    case KB_TYPE_Q5_K: *out = (GemmLayout){KB_QK_K, AK4_BLOCK, WK4_BLOCK, false}; return true;
    case KB_TYPE_Q6_K: *out = (GemmLayout){KB_QK_K, AK6_BLOCK, WK6_BLOCK, false}; return true;
    default: return false;
    }
}

/* --- activations --- */

/* Interleaves 32 quants of each of 4 tokens (at p, p + stride, ...) into
** o[k][t] (128 bytes, a 4 x 8 dword transpose) and returns the 4 tokens'
** sums of those quants. */
static inline __m128i act_quads4(const uint8_t *p, size_t stride, uint8_t *o)
{
    __m256i r[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) r[t] = _mm256_loadu_si256((const __m256i *)(const void *)(p + t * stride));
    /* u[i] holds dwords i (low half) and i + 4 (high half) of tokens 0..3 */
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    _mm256_store_si256((__m256i *)(void *)(o + 0), _mm256_permute2x128_si256(u0, u1, 0x20));
    _mm256_store_si256((__m256i *)(void *)(o + 32), _mm256_permute2x128_si256(u2, u3, 0x20));
    _mm256_store_si256((__m256i *)(void *)(o + 64), _mm256_permute2x128_si256(u0, u1, 0x31));
    _mm256_store_si256((__m256i *)(void *)(o + 96), _mm256_permute2x128_si256(u2, u3, 0x31));
    const __m256i ones = _mm256_set1_epi8(1);
    __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, u0);
    sum = _mm256_dpbusd_epi32(sum, ones, u1);
    sum = _mm256_dpbusd_epi32(sum, ones, u2);
    sum = _mm256_dpbusd_epi32(sum, ones, u3);
    return _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
}

/* Quantizes tokens x[0..nt) with quantize into GEMM_TOKS rows of row bytes
** in tmp; the rows past nt are zero (zero scales: they add nothing). */
static void quantize_tokens(const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp, size_t row)
{
    for (int t = 0; t < GEMM_TOKS; t++) {
        if (t < nt) quantize(x + t * n_in, tmp + t * row, n_in);
        else memset(tmp + t * row, 0, row);
    }
}

/* Q8_0 activations for Q4_0 / Q8_0 weights (layout at the top). */
static void pack_acts_q8_0(int type, const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp,
                           uint8_t *dst)
{
    const int64_t nb = n_in / KB_QK;
    const size_t row = (size_t)nb * Q8_0_SZ;
    quantize_tokens(x, n_in, nt, quantize, tmp, row);
    const __m128i neg_off = _mm_set1_epi32(type == KB_TYPE_Q4_0 ? -8 : -128);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *b = tmp + l * Q8_0_SZ;
        uint8_t *o = dst + l * A0_BLOCK;
        const __m128i sum = act_quads4(b + offsetof(BlockQ8_0, qs), row, o);
        uint16_t h[8] = {0};
        for (int t = 0; t < 4; t++) memcpy(&h[t], b + t * row, sizeof h[t]);
        _mm_store_ps((float *)(void *)(o + A0_D), _mm_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h)));
        _mm_store_si128((__m128i *)(void *)(o + A0_CORR), _mm_mullo_epi32(sum, neg_off));
    }
}

/* Q8_K activations for the K types (layout at the top): the quants
** interleaved, the scale, and what the weight type needs of the 16-quant
** sums (bsums): Q4_K/Q5_K the 32-quant sums in int16 pairs, Q6_K -32 x each. */
static void pack_acts_q8_K(int type, const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp,
                           uint8_t *dst)
{
    const int64_t nb = n_in / KB_QK_K;
    const size_t row = (size_t)nb * Q8_K_SZ;
    const size_t act = type == KB_TYPE_Q6_K ? AK6_BLOCK : AK4_BLOCK;
    quantize_tokens(x, n_in, nt, quantize, tmp, row);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *b = tmp + l * Q8_K_SZ;
        uint8_t *o = dst + l * act;
        for (int c = 0; c < 8; c++) (void)act_quads4(b + offsetof(BlockQ8_K, qs) + 32 * c, row, o + 128 * c);
        for (int t = 0; t < 4; t++) {
            int16_t bs[16];
            memcpy(o + AK_D + 4 * t, b + t * row + offsetof(BlockQ8_K, d), sizeof(float));
            memcpy(bs, b + t * row + offsetof(BlockQ8_K, bsums), sizeof bs);
            if (type == KB_TYPE_Q6_K) {
                for (int j = 0; j < 16; j++) {
                    const int32_t corr = -32 * bs[j];
                    memcpy(o + AK_EXTRA + 16 * j + 4 * t, &corr, sizeof corr);
                }
            } else {
                for (int p = 0; p < 4; p++) {
                    const uint32_t lo = (uint16_t)(bs[4 * p] + bs[4 * p + 1]);
                    const uint32_t hi = (uint16_t)(bs[4 * p + 2] + bs[4 * p + 3]);
                    const uint32_t pair = lo | hi << 16;
                    memcpy(o + AK_EXTRA + 16 * p + 4 * t, &pair, sizeof pair);
                }
            }
        }
    }
}

/* Activations for weights of `type`: Q8_0 for Q4_0/Q8_0, Q8_K for the rest. */
static void gemm512_pack_acts(int type, const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp,
                              uint8_t *dst)
{
    if (type == KB_TYPE_Q4_0 || type == KB_TYPE_Q8_0) pack_acts_q8_0(type, x, n_in, nt, quantize, tmp, dst);
    else pack_acts_q8_K(type, x, n_in, nt, quantize, tmp, dst);
}

/* --- weights --- */

/* Four registers k = 0..3 holding dword k of the 16 bytes at w + r *
** row_bytes + off for the 16 rows r: rows i, i + 4, i + 8, i + 12 go to the
** 128-bit lanes of z[i], then a 4 x 4 dword transpose inside every lane puts
** dword k of rows 4j..4j+3 into lane j of register k. Rows past nr read as
** zero. */
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

/* The fp16 value at w + r * row_bytes, 0 past nr. */
static inline uint64_t row_half(const uint8_t *w, size_t row_bytes, int nr, int r)
{
    uint16_t h = 0;
    if (r < nr) memcpy(&h, w + (size_t)r * row_bytes, sizeof h);
    return h;
}

/* The fp16 values at w + r * row_bytes of 16 rows (rows past nr: 0), in
** one register. The halves are assembled in general registers: writing them
** to memory one by one and loading them as a vector stalls on store
** forwarding. */
static inline __m256i rows16_half_bits(const uint8_t *w, size_t row_bytes, int nr)
{
    long long q[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        q[i] = (long long)(row_half(w, row_bytes, nr, 4 * i) | row_half(w, row_bytes, nr, 4 * i + 1) << 16 |
                           row_half(w, row_bytes, nr, 4 * i + 2) << 32 | row_half(w, row_bytes, nr, 4 * i + 3) << 48);
    return _mm256_set_epi64x(q[3], q[2], q[1], q[0]);
}

/* The same 16 values as floats. */
static inline __m512 rows16_halves(const uint8_t *w, size_t row_bytes, int nr)
{
    return _mm512_cvtph_ps(rows16_half_bits(w, row_bytes, nr));
}

/* Stores 16 rows' quants group k (register of rows 16h..16h+15). */
static inline void store_quads(uint8_t *o, int k, int h, __m512i v)
{
    _mm512_store_si512(o + 128 * k + 64 * h, v);
}

/* Q4_0 / Q8_0, block by block: 16-byte loads of each row transposed in
** registers, 16 rows at a time. Q4_0 keeps its nibbles packed, so either
** packed matrix is exactly as large as the stored one. */
static void pack_rows_q4_0_q8_0(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    __m512i q[4];
    const int nr1 = nr > 16 ? nr - 16 : 0, nrh[2] = {nr - nr1, nr1};
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int64_t l = 0; l < nb; l++) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            if (type == KB_TYPE_Q4_0) {
                uint8_t *o = dst + l * W40_BLOCK;
                const uint8_t *b = w + l * Q4_0_SZ + 16 * row_bytes * (size_t)h;
                rows16_dwords(b, row_bytes, nrh[h], offsetof(BlockQ4_0, qs), q);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) store_quads(o, k, h, q[k]);
                _mm256_store_si256((__m256i *)(void *)(o + W40_D + 32 * h), rows16_half_bits(b, row_bytes, nrh[h]));
            } else {
                uint8_t *o = dst + l * W80_BLOCK;
                const uint8_t *b = w + l * Q8_0_SZ + 16 * row_bytes * (size_t)h;
#pragma GCC unroll 2
                for (int g = 0; g < 2; g++) {
                    rows16_dwords(b, row_bytes, nrh[h], offsetof(BlockQ8_0, qs) + 16 * (size_t)g, q);
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) store_quads(o, 4 * g + k, h, _mm512_xor_si512(q[k], bias));
                }
                _mm256_store_si256((__m256i *)(void *)(o + W80_D + 32 * h), rows16_half_bits(b, row_bytes, nrh[h]));
            }
        }
    }
}

/* ggml's get_scale_min_k4: scale and min of 32-weight sub-block j of a
** Q4_K/Q5_K super-block (six bits each, packed in 12 bytes). */
static inline void k4_scale_min(const uint8_t *s, int j, int32_t *sc, int32_t *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K quants of 16 rows at b (super-block starts) into q groups of
** half h. Weight 64g + 32i + m (i: low/high nibble) is nibble i of qs[32g +
** m], plus (Q5_K) bit 2g + i of qh[m] as 16. */
static void pack_quants_k4(int type, const uint8_t *b, size_t row_bytes, int nr, int h, uint8_t *o)
{
    const size_t qs_off = type == KB_TYPE_Q5_K ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs);
    const __m512i lo4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
    __m512i q[4], qh[2][4];
    if (type == KB_TYPE_Q5_K) {
        rows16_dwords(b, row_bytes, nr, offsetof(BlockQ5_K, qh), qh[0]);
        rows16_dwords(b, row_bytes, nr, offsetof(BlockQ5_K, qh) + 16, qh[1]);
    }
    for (int g = 0; g < 4; g++) {
#pragma GCC unroll 2
        for (int m = 0; m < 2; m++) { /* bytes 16m..16m+15 of the group's 32 */
            rows16_dwords(b, row_bytes, nr, qs_off + 32 * (size_t)g + 16 * (size_t)m, q);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                __m512i lo = _mm512_and_si512(q[i], lo4), hi = _mm512_and_si512(_mm512_srli_epi16(q[i], 4), lo4);
                if (type == KB_TYPE_Q5_K) { /* bit s of each byte to bit 4 (s = 2g, 2g + 1) */
                    const __m512i v = qh[m][i];
                    const __m512i blo = 2 * g <= 4 ? _mm512_slli_epi16(v, (unsigned)(4 - 2 * g))
                                                   : _mm512_srli_epi16(v, (unsigned)(2 * g - 4));
                    const __m512i bhi = 2 * g + 1 <= 4 ? _mm512_slli_epi16(v, (unsigned)(3 - 2 * g))
                                                       : _mm512_srli_epi16(v, (unsigned)(2 * g - 3));
                    lo = _mm512_or_si512(lo, _mm512_and_si512(blo, bit4));
                    hi = _mm512_or_si512(hi, _mm512_and_si512(bhi, bit4));
                }
                store_quads(o, 16 * g + 4 * m + i, h, lo);
                store_quads(o, 16 * g + 8 + 4 * m + i, h, hi);
            }
        }
    }
}

/* Q4_K / Q5_K: quants, integer sub-block scales and mins, d and dmin. */
static void pack_rows_k4(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    const size_t bsz = type == KB_TYPE_Q5_K ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
    const size_t sc_off = offsetof(BlockQ4_K, scales);
    _Static_assert(offsetof(BlockQ4_K, scales) == offsetof(BlockQ5_K, scales), "Q4_K and Q5_K share the head");
    const int nr1 = nr > 16 ? nr - 16 : 0, nrh[2] = {nr - nr1, nr1};
    for (int64_t l = 0; l < nb; l++) {
        uint8_t *o = dst + l * WK4_BLOCK;
        int32_t *sc = (int32_t *)(void *)(o + WK_SC), *mins = (int32_t *)(void *)(o + WK4_MINS);
        for (int h = 0; h < 2; h++) {
            const uint8_t *b = w + l * bsz + 16 * row_bytes * (size_t)h;
            pack_quants_k4(type, b, row_bytes, nrh[h], h, o);
            _mm512_store_ps(o + WK4_D + 64 * h, rows16_halves(b, row_bytes, nrh[h]));
            _mm512_store_ps(o + WK4_DMIN + 64 * h, rows16_halves(b + 2, row_bytes, nrh[h]));
        }
        for (int r = 0; r < GEMM_ROWS; r++) {
            int32_t s[8] = {0}, m[8] = {0};
            if (r < nr)
                for (int j = 0; j < 8; j++) k4_scale_min(w + (size_t)r * row_bytes + l * bsz + sc_off, j, &s[j], &m[j]);
            for (int j = 0; j < 8; j++) sc[32 * j + r] = s[j];
            for (int p = 0; p < 4; p++) mins[32 * p + r] = m[2 * p] | m[2 * p + 1] << 16;
        }
    }
}

/* Q6_K: quants (0..63), signed sub-block scales, d. Weight 128n + 32c + m
** of a super-block (n: half, c: 0..3) takes its low four bits from ql[64n +
** 32(c & 1) + m] (low nibble for c < 2, high nibble otherwise) and its high
** two from bits 2c, 2c + 1 of qh[32n + m]. */
static void pack_rows_q6_K(const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    const int nr1 = nr > 16 ? nr - 16 : 0, nrh[2] = {nr - nr1, nr1};
    const __m512i lo4 = _mm512_set1_epi8(0x0f), hi2 = _mm512_set1_epi8(0x30);
    __m512i ql0[4], ql1[4], qh[4];
    for (int64_t l = 0; l < nb; l++) {
        uint8_t *o = dst + l * WK6_BLOCK;
        int32_t *sc = (int32_t *)(void *)(o + WK_SC);
        for (int h = 0; h < 2; h++) {
            const uint8_t *b = w + l * sizeof(BlockQ6_K) + 16 * row_bytes * (size_t)h;
            for (int n = 0; n < 2; n++) {
                for (int m = 0; m < 2; m++) { /* bytes 16m..16m+15 of the 32 */
                    rows16_dwords(b, row_bytes, nrh[h], offsetof(BlockQ6_K, ql) + 64 * (size_t)n + 16 * (size_t)m, ql0);
                    rows16_dwords(b, row_bytes, nrh[h], offsetof(BlockQ6_K, ql) + 64 * (size_t)n + 32 + 16 * (size_t)m,
                                  ql1);
                    rows16_dwords(b, row_bytes, nrh[h], offsetof(BlockQ6_K, qh) + 32 * (size_t)n + 16 * (size_t)m, qh);
#pragma GCC unroll 4
                    for (int i = 0; i < 4; i++) {
                        const __m512i c0 = _mm512_or_si512(_mm512_and_si512(ql0[i], lo4),
                                                           _mm512_and_si512(_mm512_slli_epi16(qh[i], 4), hi2));
                        const __m512i c1 = _mm512_or_si512(_mm512_and_si512(ql1[i], lo4),
                                                           _mm512_and_si512(_mm512_slli_epi16(qh[i], 2), hi2));
                        const __m512i c2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql0[i], 4), lo4),
                                                           _mm512_and_si512(qh[i], hi2));
                        const __m512i c3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql1[i], 4), lo4),
                                                           _mm512_and_si512(_mm512_srli_epi16(qh[i], 2), hi2));
                        const int k = 32 * n + 4 * m + i; /* quad of weight 128n + 16m + 4i */
                        store_quads(o, k, h, c0);
                        store_quads(o, k + 8, h, c1);
                        store_quads(o, k + 16, h, c2);
                        store_quads(o, k + 24, h, c3);
                    }
                }
            }
            _mm512_store_ps(o + WK6_D + 64 * h, rows16_halves(b + offsetof(BlockQ6_K, d), row_bytes, nrh[h]));
        }
        for (int r = 0; r < GEMM_ROWS; r++) {
            int8_t s[16] = {0};
            if (r < nr) memcpy(s, w + (size_t)r * row_bytes + l * sizeof(BlockQ6_K) + offsetof(BlockQ6_K, scales), 16);
            for (int j = 0; j < 16; j++) sc[32 * j + r] = s[j];
        }
    }
}

/* Weight rows of any handled type. */
static void gemm512_pack_rows(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    switch (type) {
    case KB_TYPE_Q4_0:
    case KB_TYPE_Q8_0: pack_rows_q4_0_q8_0(type, w, row_bytes, nr, nb, dst); break;
    case KB_TYPE_Q4_K:
    case KB_TYPE_Q5_K: pack_rows_k4(type, w, row_bytes, nr, nb, dst); break;
    default: pack_rows_q6_K(w, row_bytes, nr, nb, dst); break;
    }
}

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

/* s[t][h] += packed weights of quads k0..k0+n (rows 16h..) . token t's quads. */
#define DOT_QUADS(s, wb, aq, k0, n)                                                                               \
    do {                                                                                                         \
        _Pragma("GCC unroll 8") for (int k = (k0); k < (k0) + (n); k++)                                          \
        {                                                                                                        \
            const __m512i w0 = _mm512_load_si512((wb) + 128 * k), w1 = _mm512_load_si512((wb) + 128 * k + 64);   \
            _Pragma("GCC unroll 4") for (int t = 0; t < 4; t++)                                                  \
            {                                                                                                    \
                const __m512i a = _mm512_set1_epi32((aq)[4 * k + t]);                                            \
                s[t][0] = _mm512_dpbusd_epi32(s[t][0], w0, a);                                                   \
                s[t][1] = _mm512_dpbusd_epi32(s[t][1], w1, a);                                                   \
            }                                                                                                    \
        }                                                                                                        \
    } while (0)

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

/* Q4_0 / Q8_0 tiles of 1 to 4 tokens, each its own specialised loop. */
static void tile_q4_0_q8_0(int type, const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy,
                           __mmask16 live0, __mmask16 live1, int nt, bool add)
{
    const bool q4 = type == KB_TYPE_Q4_0;
    switch (nt) {
    case 1:
        if (q4) tile_q4_0_q8_0_nt(true, 1, wp, ap, nb, y, ldy, live0, live1, add);
        else tile_q4_0_q8_0_nt(false, 1, wp, ap, nb, y, ldy, live0, live1, add);
        break;
    case 2:
        if (q4) tile_q4_0_q8_0_nt(true, 2, wp, ap, nb, y, ldy, live0, live1, add);
        else tile_q4_0_q8_0_nt(false, 2, wp, ap, nb, y, ldy, live0, live1, add);
        break;
    case 3:
        if (q4) tile_q4_0_q8_0_nt(true, 3, wp, ap, nb, y, ldy, live0, live1, add);
        else tile_q4_0_q8_0_nt(false, 3, wp, ap, nb, y, ldy, live0, live1, add);
        break;
    default:
        if (q4) tile_q4_0_q8_0_nt(true, 4, wp, ap, nb, y, ldy, live0, live1, add);
        else tile_q4_0_q8_0_nt(false, 4, wp, ap, nb, y, ldy, live0, live1, add);
        break;
    }
}

/* isum[t][h] += s[t][h] x the rows' integer scales at sc (rows 0..31). */
static inline void add_scaled(__m512i isum[4][2], __m512i s[4][2], const uint8_t *sc)
{
    const __m512i sc0 = _mm512_load_si512(sc), sc1 = _mm512_load_si512(sc + 64);
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        isum[t][0] = _mm512_add_epi32(isum[t][0], _mm512_mullo_epi32(s[t][0], sc0));
        isum[t][1] = _mm512_add_epi32(isum[t][1], _mm512_mullo_epi32(s[t][1], sc1));
    }
}

/* Q4_K / Q5_K: per super-block d dy sum_j sc_j s_j - dmin dy sum_j min_j bsum_j. */
static void tile_k4(const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy, __mmask16 live0,
                    __mmask16 live1, int nt, bool add)
{
    __m512 acc[4][2];
    tile_load(acc, y, ldy, live0, live1, nt, add);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + l * WK4_BLOCK, *ab = ap + l * AK4_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        const int32_t *bsum = (const int32_t *)(const void *)(ab + AK_EXTRA);
        const float *ad = (const float *)(const void *)(ab + AK_D);
        __m512i isum[4][2], s[4][2];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) isum[t][0] = isum[t][1] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) s[t][0] = s[t][1] = _mm512_setzero_si512();
            DOT_QUADS(s, wb, aq, 8 * j, 8);
            add_scaled(isum, s, wb + WK_SC + 128 * j);
        }
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) s[t][0] = s[t][1] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const __m512i m0 = _mm512_load_si512(wb + WK4_MINS + 128 * p);
            const __m512i m1 = _mm512_load_si512(wb + WK4_MINS + 128 * p + 64);
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                const __m512i b = _mm512_set1_epi32(bsum[4 * p + t]);
                s[t][0] = _mm512_dpwssd_epi32(s[t][0], m0, b);
                s[t][1] = _mm512_dpwssd_epi32(s[t][1], m1, b);
            }
        }
        const __m512 d0 = _mm512_load_ps(wb + WK4_D), d1 = _mm512_load_ps(wb + WK4_D + 64);
        const __m512 m0 = _mm512_load_ps(wb + WK4_DMIN), m1 = _mm512_load_ps(wb + WK4_DMIN + 64);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const __m512 dy = _mm512_set1_ps(ad[t]);
            acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t][0]), _mm512_mul_ps(d0, dy), acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t][1]), _mm512_mul_ps(d1, dy), acc[t][1]);
            acc[t][0] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(s[t][0]), _mm512_mul_ps(m0, dy), acc[t][0]);
            acc[t][1] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(s[t][1]), _mm512_mul_ps(m1, dy), acc[t][1]);
        }
    }
    tile_store(acc, y, ldy, live0, live1, nt);
}

/* Q6_K: per super-block d dy sum_j sc_j (s_j - 32 bsum_j), 16 sub-blocks. */
static void tile_q6_K(const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy, __mmask16 live0,
                      __mmask16 live1, int nt, bool add)
{
    __m512 acc[4][2];
    tile_load(acc, y, ldy, live0, live1, nt, add);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + l * WK6_BLOCK, *ab = ap + l * AK6_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        const int32_t *corr = (const int32_t *)(const void *)(ab + AK_EXTRA);
        const float *ad = (const float *)(const void *)(ab + AK_D);
        __m512i isum[4][2], s[4][2];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) isum[t][0] = isum[t][1] = _mm512_setzero_si512();
        for (int j = 0; j < 16; j++) {
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) s[t][0] = s[t][1] = _mm512_set1_epi32(corr[4 * j + t]);
            DOT_QUADS(s, wb, aq, 4 * j, 4);
            add_scaled(isum, s, wb + WK_SC + 128 * j);
        }
        const __m512 d0 = _mm512_load_ps(wb + WK6_D), d1 = _mm512_load_ps(wb + WK6_D + 64);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const __m512 dy = _mm512_set1_ps(ad[t]);
            acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t][0]), _mm512_mul_ps(d0, dy), acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t][1]), _mm512_mul_ps(d1, dy), acc[t][1]);
        }
    }
    tile_store(acc, y, ldy, live0, live1, nt);
}

/* One 32 x 4 tile over nb blocks; stores rows < nr of tokens < nt. */
static void gemm512_tile(int type, const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy, int nr,
                         int nt, bool add)
{
    const __mmask16 live0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
    const __mmask16 live1 = (__mmask16)(nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
    switch (type) {
    case KB_TYPE_Q4_0:
    case KB_TYPE_Q8_0: tile_q4_0_q8_0(type, wp, ap, nb, y, ldy, live0, live1, nt, add); break;
    case KB_TYPE_Q4_K:
    case KB_TYPE_Q5_K: tile_k4(wp, ap, nb, y, ldy, live0, live1, nt, add); break;
    default: tile_q6_K(wp, ap, nb, y, ldy, live0, live1, nt, add); break;
    }
}

const GemmIsa gemm_isa_avx512 = {
    "AVX512-VNNI", gemm512_layout, gemm512_pack_acts, gemm512_pack_rows, gemm512_tile,
};
