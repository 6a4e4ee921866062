/*
** kernels_avx2.c: the numeric kernels for x86-64 CPUs with AVX2, FMA and F16C.
**
** This file is compiled for those instructions only (the pragma above), and
** kb_kernels() only hands its table out after checking the CPU has them, so
** the rest of the engine stays portable. The AVX-512 table reuses several of
** these functions where wider registers do not pay.
**
** The algorithms are llama.cpp's __AVX2__ paths (ggml-cpu-quants.c, Feb 2025)
** rewritten; where we deviate, the integer result is the same:
**   - the 32-element formats run four independent float accumulators,
**     because a single FMA chain caps the loop at one block per FMA latency;
**   - Q4_0, Q4_1, Q5_0 and Q5_1 put one block per 128-bit lane, two blocks
**     per register, convert eight fp16 scales at once, and subtract their
**     offset (8, 16) as offset * sum y instead of with vpsignb (see
**     dot_small_blocks): 21/20/17/17 GB/s against 15/15/15/15 in L2;
**   - small fixed loops carry "#pragma GCC unroll": GCC -O2 leaves them
**     rolled and then rebuilds shuffle constants every iteration;
**   - Q6_K and Q3_K subtract their constant offset (32, resp. 4) once per
**     block through the activation block sums (Q8_K bsums) instead of once
**     per 32 elements, which is exact integer algebra:
**       sum sc (q - 32) y = sum sc q y - 32 sum_k sc_k bsum_k.
**
** Numerics against the portable reference (kernels_scalar.c):
**   - to_float is bit-identical (same float operations in the same order:
**     products and differences, never fused);
**   - vec_dot differs by float summation order only (integer partial sums are
**     exact);
**   - from_float Q8_0/Q8_1 follows llama.cpp's AVX quantizer: it multiplies by
**     127/amax (the reference by 1/(amax/127)) and rounds half to even (the
**     reference: half away from zero), so a quant can differ by one where the
**     scaled value sits at or next to a .5 tie. Q8_K, F16 and BF16 are
**     bit-identical (the reference rounds those to nearest even too).
**
** Nothing here assumes alignment: rows come straight from mmap'd files, so
** blocks are addressed as bytes, vectors loaded with loadu, and fp16/f32
** fields read with memcpy.
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

#define STORE128(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))
#define STORE256(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))

/* Block field offsets: blocks are walked as bytes (see the file comment). */
#define Q4_0_SZ sizeof(BlockQ4_0)
#define Q4_1_SZ sizeof(BlockQ4_1)
#define Q5_0_SZ sizeof(BlockQ5_0)
#define Q5_1_SZ sizeof(BlockQ5_1)
#define Q8_0_SZ sizeof(BlockQ8_0)
#define Q8_1_SZ sizeof(BlockQ8_1)
#define Q8_K_SZ sizeof(BlockQ8_K)

static inline int hsum_epi32(__m256i v)
{
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
}

/* 16 bytes of packed nibbles -> 32 bytes 0..15 in element order: the low
** nibbles (elements 0..15) then the high nibbles (elements 16..31). */
static inline __m256i nibbles32(const uint8_t *p)
{
    const __m128i t = LOAD128(p);
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits (little-endian, bit j = element j) -> 32 bytes, 0xFF where set. */
static inline __m256i bits32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    /* every bit but bit j%8 set in byte j: the OR is all ones iff bit j is */
    const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    return _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
}

/* Signed bytes times signed bytes, summed by fours into 8 int32. maddubs
** wants an unsigned left side, so move x's sign onto y. Exact while no byte
** of y is -128 (our quantizers never produce it). */
static inline __m256i dot_i8(__m256i x, __m256i y)
{
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Shuffle control that repeats int16 number k of a 128-bit lane. */
static inline __m256i rep16(int k)
{
    return _mm256_set1_epi16((short)(0x0100 + 0x0202 * k));
}

/* Shuffle control that repeats int16 number a of the low 128-bit lane and
** number b of the high lane. */
static inline __m256i rep16x2(int a, int b)
{
    const long long ra = (long long)(0x0100010001000100ULL + 0x0202020202020202ULL * (uint64_t)a);
    const long long rb = (long long)(0x0100010001000100ULL + 0x0202020202020202ULL * (uint64_t)b);
    return _mm256_set_epi64x(rb, rb, ra, ra);
}

/* Shuffle control for a 128-bit vector: bytes a (8 times) then b (8 times). */
static inline __m128i rep8x2(int a, int b)
{
    return _mm_set_epi64x((long long)(0x0101010101010101ULL * (uint64_t)b),
                          (long long)(0x0101010101010101ULL * (uint64_t)a));
}

/* Stores 32 int8 as floats times d (products, as the reference computes). */
static inline void store_i8x32_scaled(float *y, __m256i q, __m256 d)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
}

/* Stores 32 unsigned bytes as q * d - m (two roundings, as the reference). */
static inline void store_u8x32_affine(float *y, __m256i q, __m256 d, __m256 m)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), d), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), d), m));
    _mm256_storeu_ps(y + 16, _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), d), m));
    _mm256_storeu_ps(y + 24, _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), d), m));
}

/* As store_u8x32_affine but q * d + m (Q4_1, Q5_1). */
static inline void store_u8x32_plus(float *y, __m256i q, __m256 d, __m256 m)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), d), m));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), d), m));
    _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), d), m));
    _mm256_storeu_ps(y + 24, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), d), m));
}

/* --- vec_dot: 32-element formats --- */

/* Q4_0, Q4_1, Q5_0 and Q5_1 share one loop (dot_small_blocks): eight
** blocks per step, two per register, one block per 128-bit lane. A PairQ
** holds the unsigned quants 0..15 of both blocks in `lo`, 16..31 in `hi`;
** each multiplies the matching 16 activations, so one conversion and one
** FMA serve two blocks. The offset of Q4_0 (8) and Q5_0 (16) is taken off
** as offset * sum y, which costs fewer multiplier-port operations than
** llama.cpp's two vpsignb per block. */
typedef struct PairQ {
    __m256i lo, hi;
} PairQ;

/* The packed nibbles (16 bytes) of blocks at p and p + stride. */
static inline PairQ pair_nibbles(const uint8_t *p, size_t stride)
{
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(LOAD128(p)), LOAD128(p + stride), 1);
    PairQ r = { _mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4) };
    return r;
}

/* Adds the fifth bits (qh, 32 bits per block, bit j = quant j) of blocks at
** p and p + stride to a PairQ as 16s. */
static inline PairQ pair_add_high_bits(PairQ q, const uint8_t *p, size_t stride)
{
    uint32_t h0, h1;
    memcpy(&h0, p, sizeof h0);
    memcpy(&h1, p + stride, sizeof h1);
    const __m256i v = _mm256_set1_epi64x((long long)((uint64_t)h1 << 32 | h0));
    /* byte j of lane L (block L) takes byte j/8 (lo) or 2 + j/8 (hi) of its
    ** 32 bits; OR-ing every bit but bit j%8 leaves all ones iff it is set */
    const __m256i spread_lo = _mm256_set_epi64x(0x0505050505050505, 0x0404040404040404, 0x0101010101010101, 0);
    const __m256i spread_hi = _mm256_set_epi64x(0x0707070707070707, 0x0606060606060606, 0x0303030303030303,
                                                0x0202020202020202);
    const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe), all = _mm256_set1_epi64x(-1);
    const __m256i m16 = _mm256_set1_epi8(0x10);
    const __m256i blo = _mm256_cmpeq_epi8(_mm256_or_si256(_mm256_shuffle_epi8(v, spread_lo), others), all);
    const __m256i bhi = _mm256_cmpeq_epi8(_mm256_or_si256(_mm256_shuffle_epi8(v, spread_hi), others), all);
    q.lo = _mm256_or_si256(q.lo, _mm256_and_si256(blo, m16));
    q.hi = _mm256_or_si256(q.hi, _mm256_and_si256(bhi, m16));
    return q;
}

/* sum q y over a pair of blocks as 8 int32 (4 per block); y are the quants
** of two Q8_0/Q8_1 blocks at p and p + stride. With off > 0, returns
** sum (q - off) y instead. q <= 31 keeps every int16 sum in range
** (|pair| <= 2 * 31 * 127, and two pairs plus the offset term fit). */
static inline __m256i pair_dot(PairQ q, const uint8_t *p, size_t stride, int off)
{
    const __m256i ylo = _mm256_inserti128_si256(_mm256_castsi128_si256(LOAD128(p)), LOAD128(p + stride), 1);
    const __m256i yhi = _mm256_inserti128_si256(_mm256_castsi128_si256(LOAD128(p + 16)), LOAD128(p + stride + 16), 1);
    __m256i xy = _mm256_add_epi16(_mm256_maddubs_epi16(q.lo, ylo), _mm256_maddubs_epi16(q.hi, yhi));
    if (off) {
        const __m256i o = _mm256_set1_epi8((char)off);
        xy = _mm256_sub_epi16(xy, _mm256_add_epi16(_mm256_maddubs_epi16(o, ylo), _mm256_maddubs_epi16(o, yhi)));
    }
    return _mm256_madd_epi16(xy, _mm256_set1_epi16(1));
}

/* Scale vector [s[2k] x 4, s[2k+1] x 4] for pair k of eight blocks. */
static inline __m256 pair_scale(__m256 s8, int k)
{
    return _mm256_permutevar8x32_ps(s8, _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1));
}

/* Row x of `type` (Q4_0, Q4_1, Q5_0, Q5_1) times row y of its vec_dot_type
** (Q8_0 or Q8_1); returns the dot product. Q4_1/Q5_1 add m_x s_y per block
** (s_y = d_y sum y, stored in Q8_1); Q4_0/Q5_0 subtract 8/16 from their
** quants. Always inlined so `type` folds to a constant. */
__attribute__((always_inline)) static inline float dot_small_blocks(int type, int64_t n, const uint8_t *x,
                                                                    const uint8_t *y)
{
    const size_t xs = type == KB_TYPE_Q4_0 ? Q4_0_SZ : type == KB_TYPE_Q4_1 ? Q4_1_SZ
                    : type == KB_TYPE_Q5_0 ? Q5_0_SZ : Q5_1_SZ;
    const int y81 = type == KB_TYPE_Q4_1 || type == KB_TYPE_Q5_1; /* Q8_1 activations */
    const size_t ys = y81 ? Q8_1_SZ : Q8_0_SZ;
    const size_t xqs = type == KB_TYPE_Q4_0 ? offsetof(BlockQ4_0, qs) : type == KB_TYPE_Q4_1 ? offsetof(BlockQ4_1, qs)
                     : type == KB_TYPE_Q5_0 ? offsetof(BlockQ5_0, qs) : offsetof(BlockQ5_1, qs);
    const size_t xqh = type == KB_TYPE_Q5_0 ? offsetof(BlockQ5_0, qh) : offsetof(BlockQ5_1, qh);
    const size_t yqs = y81 ? offsetof(BlockQ8_1, qs) : offsetof(BlockQ8_0, qs);
    const int has_min = y81, has_qh = type == KB_TYPE_Q5_0 || type == KB_TYPE_Q5_1;
    const int off = type == KB_TYPE_Q4_0 ? 8 : type == KB_TYPE_Q5_0 ? 16 : 0;
    const int64_t nb = n / KB_QK;
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    __m256 acc_m = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        const uint8_t *xb = x + i * xs, *yb = y + i * ys;
        const __m256 s8 = _mm256_mul_ps(halves8(xb, xs), halves8(yb, ys)); /* d fields come first */
        if (has_min) acc_m = _mm256_fmadd_ps(halves8(xb + 2, xs), halves8(yb + 2, ys), acc_m); /* m, s */
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            PairQ q = pair_nibbles(xb + 2 * k * xs + xqs, xs);
            if (has_qh) q = pair_add_high_bits(q, xb + 2 * k * xs + xqh, xs);
            const __m256 dot = _mm256_cvtepi32_ps(pair_dot(q, yb + 2 * k * ys + yqs, ys, off));
            acc[k] = _mm256_fmadd_ps(pair_scale(s8, k), dot, acc[k]);
        }
    }
    float tail = 0.0f;
    for (; i < nb; i++) { /* one block: stride 0 puts it in both lanes, hence 0.5 */
        const uint8_t *xb = x + i * xs, *yb = y + i * ys;
        PairQ q = pair_nibbles(xb + xqs, 0);
        if (has_qh) q = pair_add_high_bits(q, xb + xqh, 0);
        const __m256i d = pair_dot(q, yb + yqs, 0, off); /* both lanes the same block */
        tail += 0.5f * (float)hsum_epi32(d) * (half_at(xb) * half_at(yb));
        if (has_min) tail += half_at(xb + 2) * half_at(yb + 2);
    }
    const __m256 a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    return hsum256(a) + hsum256(acc_m) + tail;
}

/* Q4_0 row times Q8_0 row; n a multiple of 32. */
void kb_avx2_vec_dot_q4_0(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = dot_small_blocks(KB_TYPE_Q4_0, n, vx, vy);
}

/* One Q8_0 block times one Q8_0 block, accumulated into acc. */
static inline __m256 q8_0_block(const uint8_t *xb, const uint8_t *yb, __m256 acc)
{
    const __m256 d = _mm256_set1_ps(half_at(xb + offsetof(BlockQ8_0, d)) * half_at(yb + offsetof(BlockQ8_0, d)));
    const __m256i qx = LOAD256(xb + offsetof(BlockQ8_0, qs));
    const __m256i qy = LOAD256(yb + offsetof(BlockQ8_0, qs));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
}

/* Q8_0 row times Q8_0 row; n a multiple of 32. */
void kb_avx2_vec_dot_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        acc0 = q8_0_block(x + (i + 0) * Q8_0_SZ, y + (i + 0) * Q8_0_SZ, acc0);
        acc1 = q8_0_block(x + (i + 1) * Q8_0_SZ, y + (i + 1) * Q8_0_SZ, acc1);
        acc2 = q8_0_block(x + (i + 2) * Q8_0_SZ, y + (i + 2) * Q8_0_SZ, acc2);
        acc3 = q8_0_block(x + (i + 3) * Q8_0_SZ, y + (i + 3) * Q8_0_SZ, acc3);
    }
    for (; i < nb; i++) acc0 = q8_0_block(x + i * Q8_0_SZ, y + i * Q8_0_SZ, acc0);
    *s = hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

/* Q4_1 row times Q8_1 row: sum d_x d_y (q . y) + m_x s_y per block. */
void kb_avx2_vec_dot_q4_1(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = dot_small_blocks(KB_TYPE_Q4_1, n, vx, vy);
}

/* Q5_0 row times Q8_0 row: 5-bit quants (nibble + 16 qh bit) minus 16. */
void kb_avx2_vec_dot_q5_0(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = dot_small_blocks(KB_TYPE_Q5_0, n, vx, vy);
}

/* Q5_1 row times Q8_1 row: unsigned 5-bit quants plus the min term. */
void kb_avx2_vec_dot_q5_1(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = dot_small_blocks(KB_TYPE_Q5_1, n, vx, vy);
}

/* --- vec_dot: K formats (times Q8_K) --- */

/* Q2_K row times Q8_K row. Per 16 elements: d (sc & 15) q - dmin (sc >> 4);
** the min part is sum (sc >> 4) bsum over the block. */
void kb_avx2_vec_dot_q2_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ2_K), *yb = y + i * Q8_K_SZ;
        const float yd = f32_at(yb);
        const float d = yd * half_at(xb + offsetof(BlockQ2_K, d));
        const float dmin = -yd * half_at(xb + offsetof(BlockQ2_K, dmin));
        const __m128i sm = LOAD128(xb + offsetof(BlockQ2_K, scales));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        const __m256i prod = _mm256_madd_epi16(mins, LOAD256(yb + Q8K_BSUMS));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);

        /* scales as int16, each 128-bit half repeated in both lanes */
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
        const __m256i sc_h[2] = { _mm256_permute2x128_si256(sc16, sc16, 0x00),
                                  _mm256_permute2x128_si256(sc16, sc16, 0x11) };
        const uint8_t *q2 = xb + offsetof(BlockQ2_K, qs);
        const uint8_t *q8 = yb + Q8K_QS;
        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i bits = LOAD256(q2 + 32 * h);
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
                const __m256i p = _mm256_maddubs_epi16(q, LOAD256(q8 + 128 * h + 32 * k));
                /* elements 0..15 take scale 2k, 16..31 scale 2k+1 of this half */
                const __m256i sc = _mm256_shuffle_epi8(sc_h[h], rep16x2(2 * k, 2 * k + 1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum256(acc);
}

/* Q3_K row times Q8_K row. q3 = low 2 bits + 4 * hmask bit, value q3 - 4:
** sum sc (q3 - 4) y = sum sc q3 y - 4 sum_k sc_k bsum_k. */
void kb_avx2_vec_dot_q3_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ3_K), *yb = y + i * Q8_K_SZ;
        const float d = f32_at(yb) * half_at(xb + offsetof(BlockQ3_K, d));
        const __m256i sc16 = _mm256_cvtepi8_epi16(q3k_scales(xb + offsetof(BlockQ3_K, scales)));
        __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(sc16, LOAD256(yb + Q8K_BSUMS)), 2);
        sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);

        const __m256i sc_h[2] = { _mm256_permute2x128_si256(sc16, sc16, 0x00),
                                  _mm256_permute2x128_si256(sc16, sc16, 0x11) };
        const __m256i hbits = LOAD256(xb + offsetof(BlockQ3_K, hmask));
        const uint8_t *q3 = xb + offsetof(BlockQ3_K, qs);
        const uint8_t *q8 = yb + Q8K_QS;
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i bits = LOAD256(q3 + 32 * h);
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int b = 4 * h + k; /* hmask bit of this 32-element group */
                const __m256i hb = b <= 2 ? _mm256_slli_epi16(hbits, 2 - b) : _mm256_srli_epi16(hbits, b - 2);
                const __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3),
                                                  _mm256_and_si256(hb, m4));
                const __m256i p = _mm256_maddubs_epi16(q, LOAD256(q8 + 128 * h + 32 * k));
                const __m256i sc = _mm256_shuffle_epi8(sc_h[h], rep16x2(2 * k, 2 * k + 1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum256(acc);
}

/* Q4_K row times Q8_K row: sum d sc_j (q . y)_j - dmin min_j sum(y)_j over
** the 8 sub-blocks of 32 of each super-block. */
void kb_avx2_vec_dot_q4_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ4_K), *yb = y + i * Q8_K_SZ;
        const float yd = f32_at(yb);
        const float d = yd * half_at(xb + offsetof(BlockQ4_K, d));
        const float dmin = -yd * half_at(xb + offsetof(BlockQ4_K, dmin));
        const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(xb + offsetof(BlockQ4_K, scales)));
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_min_term(sm, yb)), acc_m);

        const __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);
        const uint8_t *q4 = xb + offsetof(BlockQ4_K, qs);
        const uint8_t *q8 = yb + Q8K_QS;
        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i bits = LOAD256(q4 + 32 * c);
            const __m256i lo = _mm256_and_si256(bits, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i pl = _mm256_maddubs_epi16(lo, LOAD256(q8 + 64 * c));
            const __m256i ph = _mm256_maddubs_epi16(hi, LOAD256(q8 + 64 * c + 32));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, rep16(2 * c)), pl));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, rep16(2 * c + 1)), ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum256(acc) + hsum128(acc_m);
}

/* Q5_K row times Q8_K row: as Q4_K with a fifth bit per quant from qh
** (bit 2c for the low nibbles of chunk c, bit 2c+1 for the high ones). */
void kb_avx2_vec_dot_q5_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF), m16 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ5_K), *yb = y + i * Q8_K_SZ;
        const float yd = f32_at(yb);
        const float d = yd * half_at(xb + offsetof(BlockQ5_K, d));
        const float dmin = -yd * half_at(xb + offsetof(BlockQ5_K, dmin));
        const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(xb + offsetof(BlockQ5_K, scales)));
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_min_term(sm, yb)), acc_m);

        const __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);
        const uint8_t *q5 = xb + offsetof(BlockQ5_K, qs);
        const uint8_t *q8 = yb + Q8K_QS;
        __m256i hbits = LOAD256(xb + offsetof(BlockQ5_K, qh));
        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i bits = LOAD256(q5 + 32 * c);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hbits, 4), m16));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hbits, 3), m16));
            hbits = _mm256_srli_epi16(hbits, 2);
            const __m256i pl = _mm256_maddubs_epi16(lo, LOAD256(q8 + 64 * c));
            const __m256i ph = _mm256_maddubs_epi16(hi, LOAD256(q8 + 64 * c + 32));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, rep16(2 * c)), pl));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, rep16(2 * c + 1)), ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum256(acc) + hsum128(acc_m);
}

/* Q6_K row times Q8_K row: 6-bit quants q (0..63) from ql nibbles and qh
** pairs, value sc (q - 32) per 16 elements; the -32 goes through bsums. */
void kb_avx2_vec_dot_q6_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    const int64_t nb = n / KB_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ6_K), *yb = y + i * Q8_K_SZ;
        const float d = f32_at(yb) * half_at(xb + offsetof(BlockQ6_K, d));
        const __m128i sc8 = LOAD128(xb + offsetof(BlockQ6_K, scales));
        const __m256i corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8), LOAD256(yb + Q8K_BSUMS));
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));

        const uint8_t *ql = xb + offsetof(BlockQ6_K, ql);
        const uint8_t *qh = xb + offsetof(BlockQ6_K, qh);
        const uint8_t *q8 = yb + Q8K_QS;
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i la = LOAD256(ql + 64 * h), lb = LOAD256(ql + 64 * h + 32);
            const __m256i hb = LOAD256(qh + 32 * h);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(la, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(lb, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4), _mm256_and_si256(hb, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int g = 4 * h + k; /* scales 2g, 2g+1 cover these 32 elements */
                const __m256i sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, rep8x2(2 * g, 2 * g + 1)));
                const __m256i p = _mm256_maddubs_epi16(q[k], LOAD256(q8 + 128 * h + 32 * k));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum256(acc);
}

/* --- vec_dot: float formats --- */

/* F32 row times F32 row, any n (four 8-wide FMA chains, scalar tail). */
void kb_avx2_vec_dot_f32(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

/* F16 row times F16 row, any n (F16C conversions, as ggml_vec_dot_f16). */
void kb_avx2_vec_dot_f16(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
#define F16X8(p, k) _mm256_cvtph_ps(LOAD128((p) + 2 * (k)))
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(F16X8(x, i), F16X8(y, i), a0);
        a1 = _mm256_fmadd_ps(F16X8(x, i + 8), F16X8(y, i + 8), a1);
        a2 = _mm256_fmadd_ps(F16X8(x, i + 16), F16X8(y, i + 16), a2);
        a3 = _mm256_fmadd_ps(F16X8(x, i + 24), F16X8(y, i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(F16X8(x, i), F16X8(y, i), a0);
#undef F16X8
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += half_at(x + 2 * i) * half_at(y + 2 * i);
    *s = sum;
}

/* 8 bf16 -> 8 floats (bf16 is the top half of a float). */
static inline __m256 bf16x8(const uint8_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(LOAD128(p)), 16));
}

static inline float bf16_at(const uint8_t *p)
{
    uint16_t b;
    memcpy(&b, p, sizeof b);
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* BF16 row times BF16 row, any n. */
void kb_avx2_vec_dot_bf16(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint8_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(bf16x8(x + 2 * i), bf16x8(y + 2 * i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(x + 2 * i + 16), bf16x8(y + 2 * i + 16), a1);
        a2 = _mm256_fmadd_ps(bf16x8(x + 2 * i + 32), bf16x8(y + 2 * i + 32), a2);
        a3 = _mm256_fmadd_ps(bf16x8(x + 2 * i + 48), bf16x8(y + 2 * i + 48), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(bf16x8(x + 2 * i), bf16x8(y + 2 * i), a0);
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += bf16_at(x + 2 * i) * bf16_at(y + 2 * i);
    *s = sum;
}

/* --- to_float --- */

/* F16 -> float, any n (F16C converts exactly, as the reference). */
void kb_avx2_to_float_f16(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(LOAD128(x + 2 * i)));
    for (; i < n; i++) y[i] = half_at(x + 2 * i);
}

/* BF16 -> float, any n. */
void kb_avx2_to_float_bf16(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, bf16x8(x + 2 * i));
    for (; i < n; i++) y[i] = bf16_at(x + 2 * i);
}

/* Q4_0 -> float: (q - 8) d. */
void kb_avx2_to_float_q4_0(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        const uint8_t *xb = x + i * Q4_0_SZ;
        const __m256 d = _mm256_set1_ps(half_at(xb + offsetof(BlockQ4_0, d)));
        const __m256i q = _mm256_sub_epi8(nibbles32(xb + offsetof(BlockQ4_0, qs)), _mm256_set1_epi8(8));
        store_i8x32_scaled(y + i * KB_QK, q, d);
    }
}

/* Q4_1 -> float: q d + m. */
void kb_avx2_to_float_q4_1(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        const uint8_t *xb = x + i * Q4_1_SZ;
        const __m256 d = _mm256_set1_ps(half_at(xb + offsetof(BlockQ4_1, d)));
        const __m256 m = _mm256_set1_ps(half_at(xb + offsetof(BlockQ4_1, m)));
        store_u8x32_plus(y + i * KB_QK, nibbles32(xb + offsetof(BlockQ4_1, qs)), d, m);
    }
}

/* Q5_0 -> float: (q - 16) d. */
void kb_avx2_to_float_q5_0(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        const uint8_t *xb = x + i * Q5_0_SZ;
        const __m256 d = _mm256_set1_ps(half_at(xb + offsetof(BlockQ5_0, d)));
        const __m256i hi = _mm256_andnot_si256(bits32(xb + offsetof(BlockQ5_0, qh)), _mm256_set1_epi8((char)0xF0));
        const __m256i q = _mm256_or_si256(nibbles32(xb + offsetof(BlockQ5_0, qs)), hi);
        store_i8x32_scaled(y + i * KB_QK, q, d);
    }
}

/* Q5_1 -> float: q d + m. */
void kb_avx2_to_float_q5_1(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        const uint8_t *xb = x + i * Q5_1_SZ;
        const __m256 d = _mm256_set1_ps(half_at(xb + offsetof(BlockQ5_1, d)));
        const __m256 m = _mm256_set1_ps(half_at(xb + offsetof(BlockQ5_1, m)));
        const __m256i hi = _mm256_and_si256(bits32(xb + offsetof(BlockQ5_1, qh)), _mm256_set1_epi8(0x10));
        const __m256i q = _mm256_or_si256(nibbles32(xb + offsetof(BlockQ5_1, qs)), hi);
        store_u8x32_plus(y + i * KB_QK, q, d, m);
    }
}

/* Q8_0 -> float: q d. */
void kb_avx2_to_float_q8_0(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        const uint8_t *xb = x + i * Q8_0_SZ;
        const __m256 d = _mm256_set1_ps(half_at(xb + offsetof(BlockQ8_0, d)));
        store_i8x32_scaled(y + i * KB_QK, LOAD256(xb + offsetof(BlockQ8_0, qs)), d);
    }
}

/* Q2_K -> float: per 16 elements d (sc & 15) q - dmin (sc >> 4). */
void kb_avx2_to_float_q2_K(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ2_K);
        const float d = half_at(xb + offsetof(BlockQ2_K, d));
        const float dmin = half_at(xb + offsetof(BlockQ2_K, dmin));
        const uint8_t *sc = xb + offsetof(BlockQ2_K, scales);
        const uint8_t *q2 = xb + offsetof(BlockQ2_K, qs);
        float *out = y + i * KB_QK_K;
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i bits = LOAD256(q2 + 32 * h);
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
                const int is = 8 * h + 2 * k;
                const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
                const __m256 d0 = _mm256_set1_ps(d * (float)(sc[is] & 0xF)), m0 = _mm256_set1_ps(dmin * (float)(sc[is] >> 4));
                const __m256 d1 = _mm256_set1_ps(d * (float)(sc[is + 1] & 0xF)), m1 = _mm256_set1_ps(dmin * (float)(sc[is + 1] >> 4));
                _mm256_storeu_ps(out + 0, _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), d0), m0));
                _mm256_storeu_ps(out + 8, _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), d0), m0));
                _mm256_storeu_ps(out + 16, _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), d1), m1));
                _mm256_storeu_ps(out + 24, _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), d1), m1));
                out += 32;
            }
        }
    }
}

/* Q3_K -> float: per 16 elements d (sc - 32) (q2 - (hmask bit ? 0 : 4)). */
void kb_avx2_to_float_q3_K(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ3_K);
        const float d = half_at(xb + offsetof(BlockQ3_K, d));
        int8_t sc[16];
        STORE128(sc, q3k_scales(xb + offsetof(BlockQ3_K, scales)));
        const __m256i hbits = LOAD256(xb + offsetof(BlockQ3_K, hmask));
        const uint8_t *q3 = xb + offsetof(BlockQ3_K, qs);
        float *out = y + i * KB_QK_K;
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i bits = LOAD256(q3 + 32 * h);
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int b = 4 * h + k;
                const __m256i hb = b <= 2 ? _mm256_slli_epi16(hbits, 2 - b) : _mm256_srli_epi16(hbits, b - 2);
                /* q2 + 4 h - 4 = q2 - (h ? 0 : 4) */
                const __m256i q = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3),
                                                                  _mm256_and_si256(hb, m4)), m4);
                const __m256 d0 = _mm256_set1_ps(d * (float)sc[2 * b]);
                const __m256 d1 = _mm256_set1_ps(d * (float)sc[2 * b + 1]);
                const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
                _mm256_storeu_ps(out + 0, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(out + 8, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(out + 16, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(out + 24, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
                out += 32;
            }
        }
    }
}

/* Q4_K -> float: per 32 elements (d sc) q - (dmin m). */
void kb_avx2_to_float_q4_K(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ4_K);
        const float d = half_at(xb + offsetof(BlockQ4_K, d));
        const float dmin = half_at(xb + offsetof(BlockQ4_K, dmin));
        uint8_t sm[16];
        STORE128(sm, k4_scales_mins(xb + offsetof(BlockQ4_K, scales)));
        const uint8_t *q4 = xb + offsetof(BlockQ4_K, qs);
        float *out = y + i * KB_QK_K;
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i bits = LOAD256(q4 + 32 * c);
            store_u8x32_affine(out + 64 * c, _mm256_and_si256(bits, m4),
                               _mm256_set1_ps(d * sm[2 * c]), _mm256_set1_ps(dmin * sm[8 + 2 * c]));
            store_u8x32_affine(out + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                               _mm256_set1_ps(d * sm[2 * c + 1]), _mm256_set1_ps(dmin * sm[8 + 2 * c + 1]));
        }
    }
}

/* Q5_K -> float: as Q4_K with the fifth bit from qh. */
void kb_avx2_to_float_q5_K(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0xF), m16 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ5_K);
        const float d = half_at(xb + offsetof(BlockQ5_K, d));
        const float dmin = half_at(xb + offsetof(BlockQ5_K, dmin));
        uint8_t sm[16];
        STORE128(sm, k4_scales_mins(xb + offsetof(BlockQ5_K, scales)));
        const uint8_t *q5 = xb + offsetof(BlockQ5_K, qs);
        __m256i hbits = LOAD256(xb + offsetof(BlockQ5_K, qh));
        float *out = y + i * KB_QK_K;
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i bits = LOAD256(q5 + 32 * c);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hbits, 4), m16));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hbits, 3), m16));
            hbits = _mm256_srli_epi16(hbits, 2);
            store_u8x32_affine(out + 64 * c, lo, _mm256_set1_ps(d * sm[2 * c]), _mm256_set1_ps(dmin * sm[8 + 2 * c]));
            store_u8x32_affine(out + 64 * c + 32, hi, _mm256_set1_ps(d * sm[2 * c + 1]),
                               _mm256_set1_ps(dmin * sm[8 + 2 * c + 1]));
        }
    }
}

/* Q6_K -> float: per 16 elements (d sc) (q - 32). */
void kb_avx2_to_float_q6_K(const void *vx, float *y, int64_t n)
{
    const uint8_t *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30), m32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        const uint8_t *xb = x + i * sizeof(BlockQ6_K);
        const float d = half_at(xb + offsetof(BlockQ6_K, d));
        const int8_t *sc = (const int8_t *)(xb + offsetof(BlockQ6_K, scales));
        const uint8_t *ql = xb + offsetof(BlockQ6_K, ql);
        const uint8_t *qh = xb + offsetof(BlockQ6_K, qh);
        float *out = y + i * KB_QK_K;
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i la = LOAD256(ql + 64 * h), lb = LOAD256(ql + 64 * h + 32);
            const __m256i hb = LOAD256(qh + 32 * h);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(la, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(lb, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4), _mm256_and_si256(hb, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int g = 8 * h + 2 * k;
                const __m256i v = _mm256_sub_epi8(q[k], m32);
                const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
                /* the reference multiplies (d * sc) * q */
                const __m256 d0 = _mm256_set1_ps(d * (float)sc[g]), d1 = _mm256_set1_ps(d * (float)sc[g + 1]);
                float *o = out + 128 * h + 32 * k;
                _mm256_storeu_ps(o + 0, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(o + 8, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(o + 16, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(o + 24, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
            }
        }
    }
}

/* --- from_float --- */

/* float -> F16 with round-to-nearest-even, any n. */
void kb_avx2_from_float_f16(const float *x, void *vy, int64_t n)
{
    uint8_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        STORE128(y + 2 * i, _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) {
        const uint16_t h = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
        memcpy(y + 2 * i, &h, sizeof h);
    }
}

/* float -> BF16, any n: round to nearest even, NaN kept (quiet), exactly as
** kb_float_to_bf16. */
void kb_avx2_from_float_bf16(const float *x, void *vy, int64_t n)
{
    uint8_t *y = vy;
    int64_t i = 0;
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i one = _mm256_set1_epi32(1), rnd = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(0x40);
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        #pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i + 8 * k));
            const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
            const __m256i top = _mm256_srli_epi32(u, 16);
            const __m256i rounded = _mm256_srli_epi32(
                _mm256_add_epi32(u, _mm256_add_epi32(rnd, _mm256_and_si256(top, one))), 16);
            r[k] = _mm256_blendv_epi8(rounded, _mm256_or_si256(top, quiet), nan);
        }
        /* packus works per 128-bit lane; put the quarters back in order */
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), _MM_SHUFFLE(3, 1, 2, 0));
        STORE256(y + 2 * i, p);
    }
    for (; i < n; i++) {
        const uint16_t b = kb_float_to_bf16(x[i]);
        memcpy(y + 2 * i, &b, sizeof b);
    }
}

/* Quantizes 32 floats to Q8_0 (llama.cpp's AVX2 quantizer): d = amax / 127,
** q = round-half-even(x * 127 / amax). Returns the sum of the quants (for
** Q8_1) and stores d in *d_out. */
static inline int q8_block(const float *x, int8_t *qs, float *d_out)
{
    __m256 v[4];
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    #pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float max = _mm_cvtss_f32(m4);
    *d_out = max / 127.f;
    const __m256 id = _mm256_set1_ps(max != 0.0f ? 127.f / max : 0.0f);
    __m256i q[4];
    #pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    /* the packs interleave 128-bit lanes; a dword permute restores the order */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    STORE256(qs, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return sum;
}

/* float -> Q8_0; n a multiple of 32. */
void kb_avx2_from_float_q8_0(const float *x, void *vy, int64_t n)
{
    uint8_t *y = vy;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        uint8_t *yb = y + i * Q8_0_SZ;
        float d;
        q8_block(x + i * KB_QK, (int8_t *)(void *)(yb + offsetof(BlockQ8_0, qs)), &d);
        const uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        memcpy(yb + offsetof(BlockQ8_0, d), &h, sizeof h);
    }
}

/* float -> Q8_1 (Q8_0 plus s = d * sum of the quants); n a multiple of 32. */
void kb_avx2_from_float_q8_1(const float *x, void *vy, int64_t n)
{
    uint8_t *y = vy;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        uint8_t *yb = y + i * Q8_1_SZ;
        float d;
        const int sum = q8_block(x + i * KB_QK, (int8_t *)(void *)(yb + offsetof(BlockQ8_1, qs)), &d);
        const uint16_t hd = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const uint16_t hs = _cvtss_sh(d * (float)sum, _MM_FROUND_TO_NEAREST_INT);
        memcpy(yb + offsetof(BlockQ8_1, d), &hd, sizeof hd);
        memcpy(yb + offsetof(BlockQ8_1, s), &hs, sizeof hs);
    }
}

/* float -> Q8_K; n a multiple of 256. Bit-identical to ggml's reference: the
** scale comes from the first element of largest magnitude, keeping its sign
** (iscale = -127 / max), q = min(127, round-half-even(iscale x)), d = 1 /
** iscale, and bsums hold the sums of each 16 quants. */
void kb_avx2_from_float_q8_K(const float *x, void *vy, int64_t n)
{
    uint8_t *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / KB_QK_K; i++, x += KB_QK_K) {
        uint8_t *yb = y + i * Q8_K_SZ;
        __m256 amax = _mm256_setzero_ps();
        #pragma GCC unroll 32
        for (int k = 0; k < 32; k++) amax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)), amax);
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float am = _mm_cvtss_f32(m4);
        if (am == 0.0f) {
            memset(yb, 0, Q8_K_SZ);
            continue;
        }
        float max = am;
        const __m256 vam = _mm256_set1_ps(am);
        #pragma GCC unroll 32
        for (int k = 0; k < 32; k++) {
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)), vam, _CMP_EQ_OQ));
            if (hit) {
                max = x[8 * k + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 vis = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        int8_t *qs = (int8_t *)(void *)(yb + Q8K_QS);
        #pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            __m256i q[4];
            #pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * k + 8 * j), vis);
                q[j] = _mm256_min_epi32(lim, _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
            }
            const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            STORE256(qs + 32 * k, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
            /* the two 16-element sums of these 32 quants */
            const int s0 = hsum_epi32(_mm256_add_epi32(q[0], q[1]));
            const int s1 = hsum_epi32(_mm256_add_epi32(q[2], q[3]));
            const int16_t b[2] = { (int16_t)s0, (int16_t)s1 };
            memcpy(yb + Q8K_BSUMS + 4 * k, b, sizeof b);
        }
        const float d = 1 / iscale;
        memcpy(yb, &d, sizeof d);
    }
}

/* --- the table --- */

#define ROW(id, tf, ff, vd, vt) [id] = { tf, ff, vd, vt }
/* The rows of both tables below. */
#define AVX2_ROWS                                                                                                         \
        ROW(KB_TYPE_F32, kb_scalar_to_float_f32, kb_scalar_from_float_f32, kb_avx2_vec_dot_f32, KB_TYPE_F32),         \
        ROW(KB_TYPE_F16, kb_avx2_to_float_f16, kb_avx2_from_float_f16, kb_avx2_vec_dot_f16, KB_TYPE_F16),             \
        ROW(KB_TYPE_BF16, kb_avx2_to_float_bf16, kb_avx2_from_float_bf16, kb_avx2_vec_dot_bf16, KB_TYPE_BF16),        \
        ROW(KB_TYPE_Q4_0, kb_avx2_to_float_q4_0, NULL, kb_avx2_vec_dot_q4_0, KB_TYPE_Q8_0),                           \
        ROW(KB_TYPE_Q4_1, kb_avx2_to_float_q4_1, NULL, kb_avx2_vec_dot_q4_1, KB_TYPE_Q8_1),                           \
        ROW(KB_TYPE_Q5_0, kb_avx2_to_float_q5_0, NULL, kb_avx2_vec_dot_q5_0, KB_TYPE_Q8_0),                           \
        ROW(KB_TYPE_Q5_1, kb_avx2_to_float_q5_1, NULL, kb_avx2_vec_dot_q5_1, KB_TYPE_Q8_1),                           \
        ROW(KB_TYPE_Q8_0, kb_avx2_to_float_q8_0, kb_avx2_from_float_q8_0, kb_avx2_vec_dot_q8_0, KB_TYPE_Q8_0),        \
        ROW(KB_TYPE_Q8_1, kb_scalar_to_float_q8_1, kb_avx2_from_float_q8_1, NULL, KB_TYPE_Q8_1),                      \
        ROW(KB_TYPE_Q2_K, kb_avx2_to_float_q2_K, NULL, kb_avx2_vec_dot_q2_K, KB_TYPE_Q8_K),                           \
        ROW(KB_TYPE_Q3_K, kb_avx2_to_float_q3_K, NULL, kb_avx2_vec_dot_q3_K, KB_TYPE_Q8_K),                           \
        ROW(KB_TYPE_Q4_K, kb_avx2_to_float_q4_K, NULL, kb_avx2_vec_dot_q4_K, KB_TYPE_Q8_K),                           \
        ROW(KB_TYPE_Q5_K, kb_avx2_to_float_q5_K, NULL, kb_avx2_vec_dot_q5_K, KB_TYPE_Q8_K),                           \
        ROW(KB_TYPE_Q6_K, kb_avx2_to_float_q6_K, NULL, kb_avx2_vec_dot_q6_K, KB_TYPE_Q8_K),                           \
        ROW(KB_TYPE_Q8_K, kb_scalar_to_float_q8_K, kb_avx2_from_float_q8_K, NULL, KB_TYPE_Q8_K),

const KbKernels kb_kernels_avx2 = {
    KB_ISA_AVX2,
    "AVX2",
    {AVX2_ROWS},
};

/* CPUs with AVX-VNNI run the same functions; only the tiled matrix
** products (gemm_select) differ, and those are chosen by the table's isa. */
const KbKernels kb_kernels_avxvnni = {
    KB_ISA_AVXVNNI,
    "AVX-VNNI",
    {AVX2_ROWS},
};
