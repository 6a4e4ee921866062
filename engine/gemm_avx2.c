/*
** gemm_avx2.c: the packers of the x86 tiled matrix products (layouts in
** gemm_layout.h), which every x86 kernel set uses, and the tile kernels for
** CPUs with AVX2, FMA and F16C but no VNNI (gemm_ymm.h compiled with
** vpmaddubsw). gemm_select hands the set out for the AVX2 kernels, and for
** the AVX-512 ones on a CPU without AVX512-VNNI.
**
** The packers work on 8 rows at a time: 16-byte loads of rows i and i + 4
** into the two lanes of a register, then a 4 x 4 dword transpose in every
** lane. A 256-bit register then holds one dword of 8 rows, a quarter of the
** row tile's 128-byte group, so the packed bytes are the same whatever
** register width reads them.
*/
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/gemm_layout.h"

#define Q4_0_SZ sizeof(BlockQ4_0)
#define Q8_0_SZ sizeof(BlockQ8_0)
#define Q8_K_SZ sizeof(BlockQ8_K)

/* The packed sizes of each type the packers handle (layouts in
** gemm_layout.h). */
bool gemm_x86_layout(int type, GemmLayout *out)
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
** sums of those quants (exact: vpmaddubsw by ones gives pairs of at most
** 2 x 128 in int16). */
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
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const __m256i pairs = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(ones8, u0), _mm256_maddubs_epi16(ones8, u1)),
                                           _mm256_add_epi16(_mm256_maddubs_epi16(ones8, u2), _mm256_maddubs_epi16(ones8, u3)));
    const __m256i sum = _mm256_madd_epi16(pairs, ones16);
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

/* Q8_0 activations for Q4_0 / Q8_0 weights (layout in gemm_layout.h). */
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

/* Q8_K activations for the K types (layout in gemm_layout.h): the quants
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
void gemm_x86_pack_acts(int type, const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp,
                        uint8_t *dst)
{
    if (type == KB_TYPE_Q4_0 || type == KB_TYPE_Q8_0) pack_acts_q8_0(type, x, n_in, nt, quantize, tmp, dst);
    else pack_acts_q8_K(type, x, n_in, nt, quantize, tmp, dst);
}

/* --- weights --- */

/* Rows of 8-row group q (rows 8q..8q+7) that exist in a tile of nr rows. */
static inline int group_rows(int nr, int q)
{
    const int n = nr - 8 * q;
    return n < 0 ? 0 : n > 8 ? 8 : n;
}

/* Four registers k = 0..3 holding dword k of the 16 bytes at w + r *
** row_bytes + off for the 8 rows r (rows past nr read as zero). */
static inline void rows8_dwords(const uint8_t *w, size_t row_bytes, int nr, size_t off, __m256i out[4])
{
    __m256i z[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m128i lo = i < nr ? _mm_loadu_si128((const __m128i *)(const void *)(w + (size_t)i * row_bytes + off))
                                  : _mm_setzero_si128();
        const __m128i hi = i + 4 < nr
                               ? _mm_loadu_si128((const __m128i *)(const void *)(w + (size_t)(i + 4) * row_bytes + off))
                               : _mm_setzero_si128();
        z[i] = _mm256_set_m128i(hi, lo);
    }
    const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]), t1 = _mm256_unpackhi_epi32(z[0], z[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]), t3 = _mm256_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm256_unpacklo_epi64(t0, t2);
    out[1] = _mm256_unpackhi_epi64(t0, t2);
    out[2] = _mm256_unpacklo_epi64(t1, t3);
    out[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* The fp16 value at w + r * row_bytes, 0 past nr. */
static inline uint64_t row_half(const uint8_t *w, size_t row_bytes, int nr, int r)
{
    uint16_t h = 0;
    if (r < nr) memcpy(&h, w + (size_t)r * row_bytes, sizeof h);
    return h;
}

/* The fp16 values at w + r * row_bytes of 8 rows (rows past nr: 0), in one
** register, assembled in general registers (writing them to memory one by
** one and loading them as a vector stalls on store forwarding). */
static inline __m128i rows8_half_bits(const uint8_t *w, size_t row_bytes, int nr)
{
    long long q[2];
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        q[i] = (long long)(row_half(w, row_bytes, nr, 4 * i) | row_half(w, row_bytes, nr, 4 * i + 1) << 16 |
                           row_half(w, row_bytes, nr, 4 * i + 2) << 32 | row_half(w, row_bytes, nr, 4 * i + 3) << 48);
    return _mm_set_epi64x(q[1], q[0]);
}

/* Stores the nbytes (a multiple of 16) at off of the 8 rows of group q as
** dwords, each xor'ed with bias: dword e of the rows at o + 128 e + 32 q. */
static inline void store_row_dwords(const uint8_t *b, size_t row_bytes, int nr, size_t off, size_t nbytes, int q,
                                    __m256i bias, uint8_t *o)
{
    __m256i v[4];
    for (size_t c = 0; c < nbytes / 16; c++) {
        rows8_dwords(b, row_bytes, nr, off + 16 * c, v);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            _mm256_store_si256((__m256i *)(void *)(o + 128 * (4 * c + (size_t)k) + 32 * q), _mm256_xor_si256(v[k], bias));
    }
}

/* Stores the fp16 fields at b + r * row_bytes of the 8 rows of group q at o + 16 q. */
static inline void store_row_halves(const uint8_t *b, size_t row_bytes, int nr, int q, uint8_t *o)
{
    _mm_store_si128((__m128i *)(void *)(o + 16 * q), rows8_half_bits(b, row_bytes, nr));
}

/* Q4_0 / Q8_0, block by block. Q4_0 keeps its nibbles packed, so either
** packed matrix is exactly as large as the stored one. */
static void pack_rows_q4_0_q8_0(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    const bool q4 = type == KB_TYPE_Q4_0;
    const size_t bsz = q4 ? Q4_0_SZ : Q8_0_SZ, wblock = q4 ? W40_BLOCK : W80_BLOCK, doff = q4 ? W40_D : W80_D;
    const __m256i bias = q4 ? _mm256_setzero_si256() : _mm256_set1_epi8((char)0x80);
    for (int64_t l = 0; l < nb; l++) {
        uint8_t *o = dst + (size_t)l * wblock;
        for (int q = 0; q < 4; q++) {
            const uint8_t *b = w + (size_t)l * bsz + 8 * row_bytes * (size_t)q;
            const int n = group_rows(nr, q);
            store_row_dwords(b, row_bytes, n, offsetof(BlockQ4_0, qs), q4 ? 16 : 32, q, bias, o);
            store_row_halves(b, row_bytes, n, q, o + doff);
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

/* Q4_K / Q5_K: the stored quant (and Q5_K high-bit) bytes as dwords, the
** six-bit scales and mins unpacked to bytes, d and dmin. */
static void pack_rows_k4(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    const bool q5 = type == KB_TYPE_Q5_K;
    const size_t bsz = q5 ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K), wblock = q5 ? WK5_BLOCK : WK4_BLOCK;
    const size_t sc_off = offsetof(BlockQ4_K, scales), scales = q5 ? WK5_SC : WK4_SC;
    _Static_assert(offsetof(BlockQ4_K, scales) == offsetof(BlockQ5_K, scales), "Q4_K and Q5_K share the head");
    const __m256i none = _mm256_setzero_si256();
    for (int64_t l = 0; l < nb; l++) {
        uint8_t *o = dst + (size_t)l * wblock;
        for (int q = 0; q < 4; q++) {
            const uint8_t *b = w + (size_t)l * bsz + 8 * row_bytes * (size_t)q;
            const int n = group_rows(nr, q);
            store_row_dwords(b, row_bytes, n, q5 ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs), 128, q, none, o);
            if (q5) store_row_dwords(b, row_bytes, n, offsetof(BlockQ5_K, qh), 32, q, none, o + WK_QH);
            store_row_halves(b, row_bytes, n, q, o + scales + WK_D);
            store_row_halves(b + 2, row_bytes, n, q, o + scales + WK_DMIN);
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
    const __m256i none = _mm256_setzero_si256();
    for (int64_t l = 0; l < nb; l++) {
        uint8_t *o = dst + (size_t)l * WK6_BLOCK;
        for (int q = 0; q < 4; q++) {
            const uint8_t *b = w + (size_t)l * sizeof(BlockQ6_K) + 8 * row_bytes * (size_t)q;
            const int n = group_rows(nr, q);
            store_row_dwords(b, row_bytes, n, offsetof(BlockQ6_K, ql), 128, q, none, o);
            store_row_dwords(b, row_bytes, n, offsetof(BlockQ6_K, qh), 64, q, none, o + WK6_QH);
            store_row_halves(b + offsetof(BlockQ6_K, d), row_bytes, n, q, o + WK6_D);
        }
        for (int r = 0; r < GEMM_ROWS; r++) {
            int8_t sc[16] = {0};
            if (r < nr) memcpy(sc, w + (size_t)r * row_bytes + (size_t)l * sizeof(BlockQ6_K) + offsetof(BlockQ6_K, scales), 16);
            for (int j = 0; j < 16; j++) o[WK6_SC + 32 * j + r] = (uint8_t)sc[j];
        }
    }
}

/* Weight rows of any handled type. */
void gemm_x86_pack_rows(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst)
{
    switch (type) {
    case KB_TYPE_Q4_0:
    case KB_TYPE_Q8_0: pack_rows_q4_0_q8_0(type, w, row_bytes, nr, nb, dst); break;
    case KB_TYPE_Q4_K:
    case KB_TYPE_Q5_K: pack_rows_k4(type, w, row_bytes, nr, nb, dst); break;
    default: pack_rows_q6_K(w, row_bytes, nr, nb, dst); break;
    }
}

/* --- the AVX2 tiles --- */

#define GEMM_YMM_VNNI 0
#include "engine/gemm_ymm.h"

const GemmIsa gemm_isa_avx2 = {
    "AVX2", ymm_layout, gemm_x86_pack_acts, gemm_x86_pack_rows, ymm_tile,
};
