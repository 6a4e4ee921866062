#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
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
**   Q4_K/Q5_K weights, per (row tile, super-block), 4736 / 5760 bytes (32
**   stored super-blocks plus 4 bytes a row: the six-bit scales unpacked):
**     uint8 qs[32][x32][4] the stored quant bytes as dwords; Q5_K: uint8
**     qh[8][x32][4] the stored high bits as dwords; uint8 sc[8][x32];
**     uint8 mins[4][x32][2] (mins 2p, 2p+1 of a row side by side, widened
**     to int16 pairs for vpdpwssd); fp16 d[x32]; fp16 dmin[x32]
**   Q6_K weights, per (row tile, super-block), 6720 bytes (32 stored):
**     uint8 ql[32][x32][4], qh[16][x32][4] the stored bytes as dwords;
**     int8 sc[16][x32]; fp16 d[x32]
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
/* Q4_K / Q5_K weights: stored quant dwords, (Q5_K) high-bit dwords, byte
** scales and mins, fp16 d and dmin */
#define WK_QH 4096
#define WK4_SC 4096
#define WK5_SC 5120
#define WK_MINS 256   /* after the scales */
#define WK_D 512      /* after the scales */
#define WK_DMIN 576   /* after the scales */
#define WK4_BLOCK 4736 /* 32 x 148: 4 bytes per row more than stored (scales unpacked) */
#define WK5_BLOCK 5760 /* 32 x 180 */
/* Q6_K weights: ql dwords, qh dwords, int8 scales, fp16 d */
#define WK6_QH 4096
#define WK6_SC 6144
#define WK6_D 6656
#define WK6_BLOCK 6720 /* = 32 x sizeof(BlockQ6_K) */

#define Q4_0_SZ sizeof(BlockQ4_0)
#define Q8_0_SZ sizeof(BlockQ8_0)
#define Q8_K_SZ sizeof(BlockQ8_K)

_Static_assert(GEMM_ROWS == 32 && GEMM_TOKS == 4, "the kernels below are written for 32 x 4 tiles");

/* The packed sizes of each handled type (layouts at the top). */
static bool gemm512_layout(int type, GemmLayout *out)
{
    switch (type) {
    case KB_TYPE_Q4_0: *out = (GemmLayout){KB_QK, A0_BLOCK, W40_BLOCK}; return true;
    case KB_TYPE_Q8_0: *out = (GemmLayout){KB_QK, A0_BLOCK, W80_BLOCK}; return true;
    case KB_TYPE_Q4_K: *out = (GemmLayout){KB_QK_K, AK4_BLOCK, WK4_BLOCK}; return true;
    case KB_TYPE_Q5_K: *out = (GemmLayout){KB_QK_K, AK4_BLOCK, WK5_BLOCK}; return true;
    case KB_TYPE_Q6_K: *out = (GemmLayout){KB_QK_K, AK6_BLOCK, WK6_BLOCK}; return true;
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
static inline void k4_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
        *mn = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* Stores the nbytes (a multiple of 16) at off of 16 rows as dwords: dword e
** of the rows (16h..16h+15) at o + 128 e + 64 h. */
static inline void store_row_dwords(const uint8_t *b, size_t row_bytes, int nr, size_t off, size_t nbytes, int h,
                                    uint8_t *o)
{
    __m512i q[4];
    for (size_t c = 0; c < nbytes / 16; c++) {
        rows16_dwords(b, row_bytes, nr, off + 16 * c, q);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) store_quads(o, (int)(4 * c) + k, h, q[k]);
    }
}

/* Q4_K / Q5_K: the stored quant (and Q5_K high-bit) bytes as dwords, the
** six-bit scales and mins unpacked to bytes, d and dmin. */
static void pack_rows_k4(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    const bool q5 = type == KB_TYPE_Q5_K;
    const size_t bsz = q5 ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K), wblock = q5 ? WK5_BLOCK : WK4_BLOCK;
    const size_t sc_off = offsetof(BlockQ4_K, scales), scales = q5 ? WK5_SC : WK4_SC;
    _Static_assert(offsetof(BlockQ4_K, scales) == offsetof(BlockQ5_K, scales), "Q4_K and Q5_K share the head");
    const int nr1 = nr > 16 ? nr - 16 : 0, nrh[2] = {nr - nr1, nr1};
    for (int64_t l = 0; l < nb; l++) {
        uint8_t *o = dst + (size_t)l * wblock;
        for (int h = 0; h < 2; h++) {
            const uint8_t *b = w + (size_t)l * bsz + 16 * row_bytes * (size_t)h;
            store_row_dwords(b, row_bytes, nrh[h], q5 ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs), 128, h, o);
            if (q5) store_row_dwords(b, row_bytes, nrh[h], offsetof(BlockQ5_K, qh), 32, h, o + WK_QH);
            _mm256_store_si256((__m256i *)(void *)(o + scales + WK_D + 32 * h), rows16_half_bits(b, row_bytes, nrh[h]));
            _mm256_store_si256((__m256i *)(void *)(o + scales + WK_DMIN + 32 * h),
                               rows16_half_bits(b + 2, row_bytes, nrh[h]));
        }
        for (int r = 0; r < GEMM_ROWS; r++) {
            uint8_t sc[8] = {0}, mn[8] = {0};
            if (r < nr)
                for (int j = 0; j < 8; j++) k4_scale_min(w + (size_t)r * row_bytes + (size_t)l * bsz + sc_off, j, &sc[j], &mn[j]);
            for (int j = 0; j < 8; j++) o[scales + 32 * j + r] = sc[j];
            for (int p = 0; p < 4; p++) {
                o[scales + WK_MINS + 64 * p + 2 * r] = mn[2 * p];
                o[scales + WK_MINS + 64 * p + 2 * r + 1] = mn[2 * p + 1];
            }
        }
    }
}

/* Q6_K: the stored ql and qh bytes as dwords, the int8 scales by
** sub-block, d. */
static void pack_rows_q6_K(const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    const int nr1 = nr > 16 ? nr - 16 : 0, nrh[2] = {nr - nr1, nr1};
    for (int64_t l = 0; l < nb; l++) {
        uint8_t *o = dst + (size_t)l * WK6_BLOCK;
        for (int h = 0; h < 2; h++) {
            const uint8_t *b = w + (size_t)l * sizeof(BlockQ6_K) + 16 * row_bytes * (size_t)h;
            store_row_dwords(b, row_bytes, nrh[h], offsetof(BlockQ6_K, ql), 128, h, o);
            store_row_dwords(b, row_bytes, nrh[h], offsetof(BlockQ6_K, qh), 64, h, o + WK6_QH);
            _mm256_store_si256((__m256i *)(void *)(o + WK6_D + 32 * h),
                               rows16_half_bits(b + offsetof(BlockQ6_K, d), row_bytes, nrh[h]));
        }
        for (int r = 0; r < GEMM_ROWS; r++) {
            int8_t sc[16] = {0};
            if (r < nr) memcpy(sc, w + (size_t)r * row_bytes + (size_t)l * sizeof(BlockQ6_K) + offsetof(BlockQ6_K, scales), 16);
            for (int j = 0; j < 16; j++) o[WK6_SC + 32 * j + r] = (uint8_t)sc[j];
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
    "AVX512-VNNI", gemm512_layout, gemm512_pack_acts, gemm512_pack_rows, gemm512_tile,
};
