/*
** kernels_avx512.c: the numeric kernels for x86-64 CPUs with AVX-512
** (F, BW, VL, DQ) on top of what the AVX2 set needs.
**
** kb_kernels() hands this table out only after checking those extensions.
** AVX512-VNNI (vpdpbusd) is not used: on this project's AVX-512 machine (AMD
** EPYC) it gained nothing for Q4_0 with the layout below and 4% for Q8_0 in
** L2 (which DRAM bounds anyway), and it would need a run-time check the
** dispatcher does not make.
**
** llama.cpp (Feb 2025) has no 512-bit paths for these dot products; the ones
** here widen its AVX2 logic to 64 quants per register:
**   Q4_0        eight blocks per step, one block per 128-bit lane, the fp16
**               scales cut out of full-width loads by word permutes;
**   Q8_0        two blocks per register; the fp16 scales of eight blocks
**               packed in general registers and converted with one
**               vcvtph2ps, instead of two conversions, a multiply and a
**               broadcast per block;
**   K formats   64 consecutive quants per register, the per-16/32 scales
**               spread over int16 lanes with one byte shuffle;
**   F16/BF16/F32 16 floats per register, masked loads for the tail.
** Small fixed loops carry "#pragma GCC unroll": GCC -O2 does not unroll them
** by itself, and then keeps accumulator arrays on the stack and rebuilds
** shuffle constants every iteration (that alone cost a third of the speed).
** Everything else points at the AVX2 functions (kernels_simd.h): activation
** quantizers run once per matrix product, and Q4_1/Q5_x are rare.
**
** The numerics are those of kernels_avx2.c (see its comment): to_float is
** bit-identical to the reference, vec_dot equal up to float summation order,
** integer partial sums exact. Nothing assumes alignment: loads are loadu or
** masked (a masked load never touches bytes past the row, so a row at the
** very end of a mapping is safe).
*/
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/kernels_impl.h"
#include "engine/kernels_simd.h"
#include "engine/kernels_x86.h"

/* --- helpers --- */

#define LOAD512(p) _mm512_loadu_si512((const void *)(p))

#define Q4_0_SZ sizeof(BlockQ4_0)
#define Q8_0_SZ sizeof(BlockQ8_0)
#define Q8_K_SZ sizeof(BlockQ8_K)

static inline float hsum512(__m512 v)
{
    return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

/* Permutation index giving [s[2k] x 8, s[2k+1] x 8] from 8 block scales. */
static inline __m512i pair_index(int k)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * k)), _mm256_set1_epi32(2 * k + 1), 1);
}

/* Byte-shuffle control that, applied to a register whose four 128-bit lanes
** each hold the same 8 int16, repeats int16 a in lane 0, b in lane 1, c in
** lane 2 and d in lane 3. */
static inline __m512i rep16x4(int a, int b, int c, int d)
{
    const long long ra = (long long)(0x0100010001000100ULL + 0x0202020202020202ULL * (uint64_t)a);
    const long long rb = (long long)(0x0100010001000100ULL + 0x0202020202020202ULL * (uint64_t)b);
    const long long rc = (long long)(0x0100010001000100ULL + 0x0202020202020202ULL * (uint64_t)c);
    const long long rd = (long long)(0x0100010001000100ULL + 0x0202020202020202ULL * (uint64_t)d);
    return _mm512_set_epi64(rd, rd, rc, rc, rb, rb, ra, ra);
}

/* 32 bytes -> 64 bytes: [v, v >> s] per byte-of-16-bit-word shift (the caller
** masks away the bits that cross bytes). */
static inline __m512i with_shifted(__m256i v, int s)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, s), 1);
}

/* --- vec_dot: Q4_0 and Q8_0 --- */

/* Word-permute tables that cut the fp16 scales of eight Q4_0 / Q8_0 blocks
** out of full-width loads (see vec_dot_q4_0). Words count from the start of
** the register pair a permute reads. */
static const int16_t q4_0_x_d[32] = { 0, 9, 18, 27, 36, 45, 54, 63 };   /* blocks 0..7 from x bytes 0..127 */
static const int16_t q8_0_y_d_lo[32] = { 0, 17, 34, 51 };              /* blocks 0..3 from y bytes 0..127 */
static const int16_t q8_0_y_d_hi[32] = { 0, 0, 0, 0, 0, 17, 34, 51 };   /* blocks 4..7 (bytes 136..263) to words 4..7 */

/* The qs of four Q4_0 blocks from xb on, one block per 128-bit lane. */
static inline __m512i q4_0_quad(const uint8_t *xb)
{
    const uint8_t *q = xb + offsetof(BlockQ4_0, qs);
    __m512i r = _mm512_castsi128_si512(LOAD128(q));
    r = _mm512_inserti32x4(r, LOAD128(q + Q4_0_SZ), 1);
    r = _mm512_inserti32x4(r, LOAD128(q + 2 * Q4_0_SZ), 2);
    return _mm512_inserti32x4(r, LOAD128(q + 3 * Q4_0_SZ), 3);
}

/* The 64 quants of two consecutive Q8_0 blocks. */
static inline __m512i q8_0_pair(const uint8_t *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(LOAD256(b + offsetof(BlockQ8_0, qs))),
                              LOAD256(b + Q8_0_SZ + offsetof(BlockQ8_0, qs)), 1);
}

/* Q4_0 row times Q8_0 row; n a multiple of 32.
** Eight blocks per step, laid out one block per 128-bit lane: register a
** holds the low nibbles (quants 0..15) of four blocks, b the high ones
** (16..31), against the matching halves of four activation blocks (two
** pair loads regrouped by 128-bit lane shuffles), so one conversion and one
** FMA serve four blocks. The eight fp16 scales of each side are cut out of
** full-width loads by word permutes and converted at once. With x
** unsigned, sum (x - 8) y = sum x y - 8 sum y; maddubs cannot saturate
** (|pair| <= 2 * 15 * 127), nor the int16 sums of four such pairs.
** Measured on the project's machine (one core, 4096-wide rows): 33 GB/s of
** weights in L2 and 27 streamed from DRAM, against 20/20 for two blocks per
** register with per-pair scale gathering. Cutting the quants out with word
** permutes as well was as fast in L2 but streamed at only 10 GB/s, and
** VNNI gained nothing. */
static void vec_dot_q4_0(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK;
    const __m512i ixd = LOAD512(q4_0_x_d), iydlo = LOAD512(q8_0_y_d_lo), iydhi = LOAD512(q8_0_y_d_hi);
    const __m512i m4 = _mm512_set1_epi8(0xF), e8 = _mm512_set1_epi8(8), ones = _mm512_set1_epi16(1);
    const __m512i lanes_lo = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i lanes_hi = _mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        const uint8_t *xb = x + i * Q4_0_SZ, *yb = y + i * Q8_0_SZ; /* 144 and 272 bytes */
        const __m512i dxw = _mm512_permutex2var_epi16(LOAD512(xb), ixd, LOAD512(xb + 64));
        const __m512i dyw = _mm512_mask_mov_epi16(_mm512_permutex2var_epi16(LOAD512(yb), iydlo, LOAD512(yb + 64)), 0xF0,
                                                  _mm512_permutex2var_epi16(LOAD512(yb + 136), iydhi, LOAD512(yb + 200)));
        const __m512 s8 = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtph_ps(_mm512_castsi512_si128(dxw)),
                                                               _mm256_cvtph_ps(_mm512_castsi512_si128(dyw))));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i q = q4_0_quad(xb + 4 * Q4_0_SZ * h);
            const __m512i a = _mm512_and_si512(q, m4), b = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            const __m512i y01 = q8_0_pair(yb + 4 * Q8_0_SZ * h), y23 = q8_0_pair(yb + 4 * Q8_0_SZ * h + 2 * Q8_0_SZ);
            const __m512i ya = _mm512_shuffle_i64x2(y01, y23, _MM_SHUFFLE(2, 0, 2, 0)); /* quants 0..15 */
            const __m512i yz = _mm512_shuffle_i64x2(y01, y23, _MM_SHUFFLE(3, 1, 3, 1)); /* 16..31 */
            const __m512i xy = _mm512_add_epi16(_mm512_maddubs_epi16(a, ya), _mm512_maddubs_epi16(b, yz));
            const __m512i y8 = _mm512_add_epi16(_mm512_maddubs_epi16(e8, ya), _mm512_maddubs_epi16(e8, yz));
            const __m512 dot = _mm512_cvtepi32_ps(_mm512_madd_epi16(_mm512_sub_epi16(xy, y8), ones));
            const __m512 sc = _mm512_permutexvar_ps(h ? lanes_hi : lanes_lo, s8);
            if (h) acc1 = _mm512_fmadd_ps(sc, dot, acc1);
            else acc0 = _mm512_fmadd_ps(sc, dot, acc0);
        }
    }
    float tail = 0.0f; /* fewer than 8 blocks left */
    if (i < nb) kb_avx2_vec_dot_q4_0((nb - i) * KB_QK, &tail, x + i * Q4_0_SZ, y + i * Q8_0_SZ);
    *s = hsum512(_mm512_add_ps(acc0, acc1)) + tail;
}

/* Signed x signed bytes summed by fours: AVX-512 has no vpsignb, so take |x|
** and negate y where x < 0 under a mask. Exact unless y holds -128. */
static inline __m512i q8_0_pair_dot(__m512i x, __m512i y)
{
    const __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x), _mm512_setzero_si512(), y);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(x), sy), _mm512_set1_epi16(1));
}

/* Q8_0 row times Q8_0 row; n a multiple of 32. Two blocks per register,
** eight per step, four accumulators; the scales of eight blocks are packed
** in general registers and converted at once. This loop is bound by its
** loads (about 50 GB/s in L2, above what DRAM delivers). */
static void vec_dot_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK;
    __m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        const uint8_t *xb = x + i * Q8_0_SZ, *yb = y + i * Q8_0_SZ;
        const __m512 s8 = _mm512_castps256_ps512(_mm256_mul_ps(halves8(xb, Q8_0_SZ), halves8(yb, Q8_0_SZ)));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512i dot = q8_0_pair_dot(q8_0_pair(xb + 2 * k * Q8_0_SZ), q8_0_pair(yb + 2 * k * Q8_0_SZ));
            acc[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(pair_index(k), s8), _mm512_cvtepi32_ps(dot), acc[k]);
        }
    }
    float tail = 0.0f; /* fewer than 8 blocks left */
    if (i < nb) kb_avx2_vec_dot_q8_0((nb - i) * KB_QK, &tail, x + i * Q8_0_SZ, y + i * Q8_0_SZ);
    *s = hsum512(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))) + tail;
}

/* --- vec_dot: K formats --- */

/* Q4_K row times Q8_K row: per 64 quants one register [q & 15, q >> 4] of a
** 32-byte chunk, against 64 consecutive activations; the scale of each
** 32-quant half spread over its 16 int16 lanes by one byte shuffle. */
static void vec_dot_q4_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF);
    __m512 acc = _mm512_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ4_K), *yb = y + i * Q8_K_SZ;
        const float yd = f32_at(yb);
        const float d = yd * half_at(xb + offsetof(BlockQ4_K, d));
        const float dmin = -yd * half_at(xb + offsetof(BlockQ4_K, dmin));
        const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(xb + offsetof(BlockQ4_K, scales)));
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_min_term(sm, yb)), acc_m);

        const __m512i sc = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));
        const uint8_t *q4 = xb + offsetof(BlockQ4_K, qs);
        const uint8_t *q8 = yb + Q8K_QS;
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m512i q = _mm512_and_si512(with_shifted(LOAD256(q4 + 32 * c), 4), m4);
            const __m512i p = _mm512_maddubs_epi16(q, LOAD512(q8 + 64 * c));
            const __m512i scv = _mm512_shuffle_epi8(sc, rep16x4(2 * c, 2 * c, 2 * c + 1, 2 * c + 1));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(scv, p));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = hsum512(acc) + hsum128(acc_m);
}

/* Q5_K row times Q8_K row: Q4_K plus the fifth bit from qh. Register
** [hb, hb >> 1] holds the bits of the low and high nibbles of chunk 0 at bit
** 0; chunk c finds them at bit 2c. */
static void vec_dot_q5_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF), m16 = _mm512_set1_epi8(0x10);
    __m512 acc = _mm512_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ5_K), *yb = y + i * Q8_K_SZ;
        const float yd = f32_at(yb);
        const float d = yd * half_at(xb + offsetof(BlockQ5_K, d));
        const float dmin = -yd * half_at(xb + offsetof(BlockQ5_K, dmin));
        const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(xb + offsetof(BlockQ5_K, scales)));
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_min_term(sm, yb)), acc_m);

        const __m512i sc = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));
        const uint8_t *q5 = xb + offsetof(BlockQ5_K, qs);
        const uint8_t *q8 = yb + Q8K_QS;
        const __m512i hb = with_shifted(LOAD256(xb + offsetof(BlockQ5_K, qh)), 1);
        __m512i sumi = _mm512_setzero_si512();
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            /* move bit 2c to bit 4 */
            const __m512i h = c < 2 ? _mm512_slli_epi16(hb, 4 - 2 * c) : _mm512_srli_epi16(hb, 2 * c - 4);
            const __m512i q = _mm512_or_si512(_mm512_and_si512(with_shifted(LOAD256(q5 + 32 * c), 4), m4),
                                              _mm512_and_si512(h, m16));
            const __m512i p = _mm512_maddubs_epi16(q, LOAD512(q8 + 64 * c));
            const __m512i scv = _mm512_shuffle_epi8(sc, rep16x4(2 * c, 2 * c, 2 * c + 1, 2 * c + 1));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(scv, p));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = hsum512(acc) + hsum128(acc_m);
}

/* Q6_K row times Q8_K row. Per 128 quants: register A = ql low nibbles
** (quants 0..63) with qh bits 0-1 / 2-3, B = ql high nibbles (64..127) with
** qh bits 4-5 / 6-7; the -32 offset goes through bsums once per block. */
static void vec_dot_q6_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF), m3 = _mm512_set1_epi8(3), m30 = _mm512_set1_epi8(0x30);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ6_K), *yb = y + i * Q8_K_SZ;
        const float d = f32_at(yb) * half_at(xb + offsetof(BlockQ6_K, d));
        const __m256i sc16 = _mm256_cvtepi8_epi16(LOAD128(xb + offsetof(BlockQ6_K, scales)));
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, LOAD256(yb + Q8K_BSUMS)), 5);
        __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(corr));

        const uint8_t *ql = xb + offsetof(BlockQ6_K, ql);
        const uint8_t *qh = xb + offsetof(BlockQ6_K, qh);
        const uint8_t *q8 = yb + Q8K_QS;
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i l = LOAD512(ql + 64 * h);
            const __m512i hh = with_shifted(LOAD256(qh + 32 * h), 2);
            const __m512i a = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(_mm512_and_si512(hh, m3), 4));
            const __m512i b = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(hh, m30));
            const __m512i sc = _mm512_broadcast_i32x4(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const __m512i pa = _mm512_maddubs_epi16(a, LOAD512(q8 + 128 * h));
            const __m512i pb = _mm512_maddubs_epi16(b, LOAD512(q8 + 128 * h + 64));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_shuffle_epi8(sc, rep16x4(0, 1, 2, 3)), pa));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_shuffle_epi8(sc, rep16x4(4, 5, 6, 7)), pb));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = hsum512(acc);
}

/* Q3_K row times Q8_K row. Per 128 quants the 2-bit fields of a 32-byte
** chunk at shifts 0,2 (quants 0..63) and 4,6 (64..127), each with its hmask
** bit moved to bit 2; value q3 - 4 with the -4 through bsums. */
static void vec_dot_q3_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ3_K), *yb = y + i * Q8_K_SZ;
        const float d = f32_at(yb) * half_at(xb + offsetof(BlockQ3_K, d));
        const __m256i sc16 = _mm256_cvtepi8_epi16(q3k_scales(xb + offsetof(BlockQ3_K, scales)));
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, LOAD256(yb + Q8K_BSUMS)), 2);
        __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(corr));

        /* [hm, hm >> 1]: the bit of group b (32 quants) sits at bit b of the
        ** first half for even b and of the second half, shifted down, for odd
        ** b, which is where the registers below put those groups */
        const __m512i hm = with_shifted(LOAD256(xb + offsetof(BlockQ3_K, hmask)), 1);
        const uint8_t *q3 = xb + offsetof(BlockQ3_K, qs);
        const uint8_t *q8 = yb + Q8K_QS;
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i bits = with_shifted(LOAD256(q3 + 32 * h), 2);
            /* groups 4h, 4h+1 find their bits at bit 4h, groups 4h+2, 4h+3 at
            ** bit 4h+2; move them to bit 2 */
            const __m512i h01 = h == 0 ? _mm512_slli_epi16(hm, 2) : _mm512_srli_epi16(hm, 2);
            const __m512i h23 = h == 0 ? hm : _mm512_srli_epi16(hm, 4);
            const __m512i a = _mm512_or_si512(_mm512_and_si512(bits, m3), _mm512_and_si512(h01, m4));
            const __m512i b = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(bits, 4), m3), _mm512_and_si512(h23, m4));
            const __m512i sc = _mm512_broadcast_i32x4(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const __m512i pa = _mm512_maddubs_epi16(a, LOAD512(q8 + 128 * h));
            const __m512i pb = _mm512_maddubs_epi16(b, LOAD512(q8 + 128 * h + 64));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_shuffle_epi8(sc, rep16x4(0, 1, 2, 3)), pa));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_shuffle_epi8(sc, rep16x4(4, 5, 6, 7)), pb));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = hsum512(acc);
}

/* Q2_K row times Q8_K row: as Q3_K without hmask, scales (sc & 15), and
** the min term dmin sum (sc >> 4) bsum. */
static void vec_dot_q2_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0xF);
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_m = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ2_K), *yb = y + i * Q8_K_SZ;
        const float yd = f32_at(yb);
        const float d = yd * half_at(xb + offsetof(BlockQ2_K, d));
        const float dmin = -yd * half_at(xb + offsetof(BlockQ2_K, dmin));
        const __m128i sm = LOAD128(xb + offsetof(BlockQ2_K, scales));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        acc_m = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, LOAD256(yb + Q8K_BSUMS))), acc_m);

        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
        const uint8_t *q2 = xb + offsetof(BlockQ2_K, qs);
        const uint8_t *q8 = yb + Q8K_QS;
        __m512i sumi = _mm512_setzero_si512();
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i bits = with_shifted(LOAD256(q2 + 32 * h), 2);
            const __m512i a = _mm512_and_si512(bits, m3);
            const __m512i b = _mm512_and_si512(_mm512_srli_epi16(bits, 4), m3);
            const __m512i sc = _mm512_broadcast_i32x4(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const __m512i pa = _mm512_maddubs_epi16(a, LOAD512(q8 + 128 * h));
            const __m512i pb = _mm512_maddubs_epi16(b, LOAD512(q8 + 128 * h + 64));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_shuffle_epi8(sc, rep16x4(0, 1, 2, 3)), pa));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_shuffle_epi8(sc, rep16x4(4, 5, 6, 7)), pb));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = hsum512(acc) + hsum256(acc_m);
}

/* --- vec_dot: float formats --- */

/* Mask of the first r (< 16) lanes. */
static inline __mmask16 head16(int64_t r)
{
    return (__mmask16)((1u << r) - 1u);
}

/* Streamed from DRAM, the F32 loop's 64-byte loads ran at 31 GB/s on the
** project's machine when they straddled cache lines, 37 when aligned (the
** quantized kernels, whose blocks never align, did not care). Returns the
** number of leading elements to take with a masked load so that the weight
** row x continues at a 64-byte boundary; 0 when x is already there or is
** not even element-aligned. */
static inline int64_t head_to_line(const void *x, size_t elem, int64_t n)
{
    const uintptr_t mis = (uintptr_t)x & 63;
    if (mis == 0 || mis % elem != 0) return 0;
    const int64_t head = (int64_t)((64 - mis) / elem);
    return head < n ? head : n;
}

/* F32 row times F32 row, any n: four 16-wide FMA chains, masked head and
** tail. */
static void vec_dot_f32(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t i = head_to_line(x, sizeof(float), n);
    if (i > 0) {
        const __mmask16 m = head16(i);
        a3 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x), _mm512_maskz_loadu_ps(m, y));
    }
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    if (i < n) {
        const __mmask16 m = head16(n - i);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a1);
    }
    *s = hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

#define F16X16(p, k) _mm512_cvtph_ps(LOAD256((p) + 2 * (k)))

/* F16 row times F16 row, any n. */
static void vec_dot_f16(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(F16X16(x, i), F16X16(y, i), a0);
        a1 = _mm512_fmadd_ps(F16X16(x, i + 16), F16X16(y, i + 16), a1);
        a2 = _mm512_fmadd_ps(F16X16(x, i + 32), F16X16(y, i + 32), a2);
        a3 = _mm512_fmadd_ps(F16X16(x, i + 48), F16X16(y, i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(F16X16(x, i), F16X16(y, i), a0);
    if (i < n) {
        const __mmask16 m = head16(n - i);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + 2 * i)),
                             _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, y + 2 * i)), a1);
    }
    *s = hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* 16 bf16 -> 16 floats. */
static inline __m512 bf16x16(const uint8_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(LOAD256(p)), 16));
}

/* BF16 row times BF16 row, any n: 32-byte loads widened to floats. (Splitting
** 64-byte loads into even and odd elements measured slower: 64 against 80
** GB/s in L2, and 22 against 34 streamed from DRAM for unaligned rows.) */
static void vec_dot_bf16(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(bf16x16(x + 2 * i), bf16x16(y + 2 * i), a0);
        a1 = _mm512_fmadd_ps(bf16x16(x + 2 * i + 32), bf16x16(y + 2 * i + 32), a1);
        a2 = _mm512_fmadd_ps(bf16x16(x + 2 * i + 64), bf16x16(y + 2 * i + 64), a2);
        a3 = _mm512_fmadd_ps(bf16x16(x + 2 * i + 96), bf16x16(y + 2 * i + 96), a3);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : head16(n - i);
        const __m512i xv = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + 2 * i));
        const __m512i yv = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, y + 2 * i));
        a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(xv, 16)), _mm512_castsi512_ps(_mm512_slli_epi32(yv, 16)), a0);
    }
    *s = hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* --- to_float --- */

/* F16 -> float, any n. */
static void to_float_f16(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, F16X16(x, i));
    if (i < n) {
        const __mmask16 m = head16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + 2 * i)));
    }
}

/* BF16 -> float, any n. */
static void to_float_bf16(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(LOAD256(x + 2 * i)), 16)));
    if (i < n) {
        const __mmask16 m = head16(n - i);
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + 2 * i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
}

/* Stores 16 signed bytes as floats times d. */
static inline void store_i8x16_scaled(float *y, __m128i q, __m512 d)
{
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d));
}

/* Q8_0 -> float: q d. */
static void to_float_q8_0(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        const uint8_t *xb = x + i * Q8_0_SZ;
        const __m512 d = _mm512_set1_ps(half_at(xb));
        store_i8x16_scaled(y + 32 * i, LOAD128(xb + offsetof(BlockQ8_0, qs)), d);
        store_i8x16_scaled(y + 32 * i + 16, LOAD128(xb + offsetof(BlockQ8_0, qs) + 16), d);
    }
}

/* Q4_0 -> float: (q - 8) d. */
static void to_float_q4_0(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    const __m128i m4 = _mm_set1_epi8(0xF), off = _mm_set1_epi8(8);
    for (int64_t i = 0; i < n / KB_QK; i++) {
        const uint8_t *xb = x + i * Q4_0_SZ;
        const __m512 d = _mm512_set1_ps(half_at(xb));
        const __m128i q = LOAD128(xb + offsetof(BlockQ4_0, qs));
        store_i8x16_scaled(y + 32 * i, _mm_sub_epi8(_mm_and_si128(q, m4), off), d);
        store_i8x16_scaled(y + 32 * i + 16, _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), off), d);
    }
}

/* Stores 16 unsigned bytes as (q d) - m. */
static inline void store_u8x16_affine(float *y, __m128i q, __m512 d, __m512 m)
{
    _mm512_storeu_ps(y, _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)), d), m));
}

/* Q4_K -> float: per 32 quants (d sc) q - (dmin m), as the reference. */
static void to_float_q4_K(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    const __m128i m4 = _mm_set1_epi8(0xF);
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ4_K);
        const float d = half_at(xb + offsetof(BlockQ4_K, d));
        const float dmin = half_at(xb + offsetof(BlockQ4_K, dmin));
        uint8_t sm[16];
        _mm_storeu_si128((__m128i *)(void *)sm, k4_scales_mins(xb + offsetof(BlockQ4_K, scales)));
        const uint8_t *q4 = xb + offsetof(BlockQ4_K, qs);
        float *out = y + i * KB_QK_K;
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m512 d0 = _mm512_set1_ps(d * sm[2 * c]), m0 = _mm512_set1_ps(dmin * sm[8 + 2 * c]);
            const __m512 d1 = _mm512_set1_ps(d * sm[2 * c + 1]), m1 = _mm512_set1_ps(dmin * sm[9 + 2 * c]);
            #pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                const __m128i q = LOAD128(q4 + 32 * c + 16 * k);
                store_u8x16_affine(out + 64 * c + 16 * k, _mm_and_si128(q, m4), d0, m0);
                store_u8x16_affine(out + 64 * c + 32 + 16 * k, _mm_and_si128(_mm_srli_epi16(q, 4), m4), d1, m1);
            }
        }
    }
}

/* Q6_K -> float: per 16 quants (d sc) (q - 32), as the reference. */
static void to_float_q6_K(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    const __m512i m4 = _mm512_set1_epi8(0xF), m3 = _mm512_set1_epi8(3), m30 = _mm512_set1_epi8(0x30);
    const __m512i m32 = _mm512_set1_epi8(32);
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ6_K);
        const float d = half_at(xb + offsetof(BlockQ6_K, d));
        const int8_t *sc = (const int8_t *)(xb + offsetof(BlockQ6_K, scales));
        const uint8_t *ql = xb + offsetof(BlockQ6_K, ql);
        const uint8_t *qh = xb + offsetof(BlockQ6_K, qh);
        float *out = y + i * KB_QK_K;
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i l = LOAD512(ql + 64 * h);
            const __m512i hh = with_shifted(LOAD256(qh + 32 * h), 2);
            __m512i q[2];
            q[0] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(_mm512_and_si512(hh, m3), 4));
            q[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(hh, m30));
            #pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                /* quants 128h + 64k + 16j, j = 0..3, in 128-bit lane j */
                const __m512i v = _mm512_sub_epi8(q[k], m32);
                #pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    const int g = 8 * h + 4 * k + j;
                    const __m128i lane = j == 0 ? _mm512_castsi512_si128(v)
                                       : j == 1 ? _mm512_extracti32x4_epi32(v, 1)
                                       : j == 2 ? _mm512_extracti32x4_epi32(v, 2)
                                                : _mm512_extracti32x4_epi32(v, 3);
                    store_i8x16_scaled(out + 16 * g, lane, _mm512_set1_ps(d * (float)sc[g]));
                }
            }
        }
    }
}

/* --- the table --- */

#define ROW(id, tf, ff, vd, vt) [id] = { tf, ff, vd, vt }
const KbKernels kb_kernels_avx512 = {
    KB_ISA_AVX512,
    "AVX-512",
    {
        ROW(KB_TYPE_F32, kb_scalar_to_float_f32, kb_scalar_from_float_f32, vec_dot_f32, KB_TYPE_F32),
        ROW(KB_TYPE_F16, to_float_f16, kb_avx2_from_float_f16, vec_dot_f16, KB_TYPE_F16),
        ROW(KB_TYPE_BF16, to_float_bf16, kb_avx2_from_float_bf16, vec_dot_bf16, KB_TYPE_BF16),
        ROW(KB_TYPE_Q4_0, to_float_q4_0, NULL, vec_dot_q4_0, KB_TYPE_Q8_0),
        ROW(KB_TYPE_Q4_1, kb_avx2_to_float_q4_1, NULL, kb_avx2_vec_dot_q4_1, KB_TYPE_Q8_1),
        ROW(KB_TYPE_Q5_0, kb_avx2_to_float_q5_0, NULL, kb_avx2_vec_dot_q5_0, KB_TYPE_Q8_0),
        ROW(KB_TYPE_Q5_1, kb_avx2_to_float_q5_1, NULL, kb_avx2_vec_dot_q5_1, KB_TYPE_Q8_1),
        ROW(KB_TYPE_Q8_0, to_float_q8_0, kb_avx2_from_float_q8_0, vec_dot_q8_0, KB_TYPE_Q8_0),
        ROW(KB_TYPE_Q8_1, kb_scalar_to_float_q8_1, kb_avx2_from_float_q8_1, NULL, KB_TYPE_Q8_1),
        ROW(KB_TYPE_Q2_K, kb_avx2_to_float_q2_K, NULL, vec_dot_q2_K, KB_TYPE_Q8_K),
        ROW(KB_TYPE_Q3_K, kb_avx2_to_float_q3_K, NULL, vec_dot_q3_K, KB_TYPE_Q8_K),
        ROW(KB_TYPE_Q4_K, to_float_q4_K, NULL, vec_dot_q4_K, KB_TYPE_Q8_K),
        ROW(KB_TYPE_Q5_K, kb_avx2_to_float_q5_K, NULL, vec_dot_q5_K, KB_TYPE_Q8_K),
        ROW(KB_TYPE_Q6_K, to_float_q6_K, NULL, vec_dot_q6_K, KB_TYPE_Q8_K),
        ROW(KB_TYPE_Q8_K, kb_scalar_to_float_q8_K, kb_avx2_from_float_q8_K, NULL, KB_TYPE_Q8_K),
    },
};
