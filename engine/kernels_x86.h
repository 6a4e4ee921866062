/*
** kernels_x86.h: small inline helpers the AVX2 and AVX-512 kernel files
** (kernels_avx2.c, kernels_avx512.c) share: unaligned loads, fp16 fields,
** horizontal sums, and the K types' packed scales. Internal to engine/;
** include it only in files the Makefile compiles with -mavx2 (the helpers use AVX2,
** FMA and F16C instructions).
*/
#ifndef KB_KERNELS_X86_H
#define KB_KERNELS_X86_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/quant.h"

#define LOAD128(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define LOAD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define Q8K_QS offsetof(BlockQ8_K, qs)
#define Q8K_BSUMS offsetof(BlockQ8_K, bsums)

/* The uint16 at p (any alignment). */
static inline uint32_t u16_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return h;
}

/* The fp16 value at p as a float. */
static inline float half_at(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)u16_at(p));
}

/* The float at p (any alignment). */
static inline float f32_at(const uint8_t *p)
{
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* Sum of the 4 floats of r. */
static inline float hsum128(__m128 r)
{
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* Sum of the 8 floats of v. */
static inline float hsum256(__m256 v)
{
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

/* The fp16 fields at p, p + stride, ..., p + 7 stride as 8 floats: packed
** in general registers (idle in these loops), converted at once. */
static inline __m256 halves8(const uint8_t *p, size_t stride)
{
    const uint64_t lo = (uint64_t)u16_at(p) | (uint64_t)u16_at(p + stride) << 16 |
                        (uint64_t)u16_at(p + 2 * stride) << 32 | (uint64_t)u16_at(p + 3 * stride) << 48;
    const uint64_t hi = (uint64_t)u16_at(p + 4 * stride) | (uint64_t)u16_at(p + 5 * stride) << 16 |
                        (uint64_t)u16_at(p + 6 * stride) << 32 | (uint64_t)u16_at(p + 7 * stride) << 48;
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* Q4_K/Q5_K six-bit scales and mins (12 bytes) -> 16 bytes: the 8 scales,
** then the 8 mins, as llama.cpp unpacks them. */
static inline __m128i k4_scales_mins(const uint8_t *s12)
{
    uint32_t u[4];
    memcpy(u, s12, 12);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    u[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);   /* mins 4..7 */
    const uint32_t mins03 = u[1] & m6;
    u[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);           /* scales 4..7 */
    u[2] = mins03;
    u[0] &= m6;                                               /* scales 0..3 */
    return _mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]);
}

/* Q3_K's 16 six-bit scales (12 bytes) -> 16 signed bytes, offset 32 removed. */
static inline __m128i q3k_scales(const uint8_t *s12)
{
    uint32_t a[3];
    memcpy(a, s12, 12);
    const uint32_t m4 = 0x0f0f0f0f, m2 = 0x03030303;
    const __m128i s = _mm_set_epi32((int)(((a[1] >> 4) & m4) | (((a[2] >> 6) & m2) << 4)),
                                    (int)(((a[0] >> 4) & m4) | (((a[2] >> 4) & m2) << 4)),
                                    (int)((a[1] & m4) | (((a[2] >> 2) & m2) << 4)),
                                    (int)((a[0] & m4) | ((a[2] & m2) << 4)));
    return _mm_sub_epi8(s, _mm_set1_epi8(32));
}

/* The min term of Q4_K/Q5_K: returns 4 int32 whose sum is
** sum_j min_j * (sum of the 32 activations of sub-block j); scales_mins is
** k4_scales_mins widened to int16. */
static inline __m128i k4_min_term(__m256i scales_mins, const uint8_t *yb)
{
    const __m256i bs = LOAD256(yb + Q8K_BSUMS);
    const __m128i bs32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    return _mm_madd_epi16(_mm256_extracti128_si256(scales_mins, 1), bs32);
}

#endif /* KB_KERNELS_X86_H */
