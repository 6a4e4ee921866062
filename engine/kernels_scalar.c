/*
** kernels_scalar.c: the portable kernels, the reference for the SIMD ones.
**
** Every function here is a port of the logic of ggml (llama.cpp, Feb 2025):
**   to_float    dequantize_row_* of ggml-quants.c, element for element; the
**               float expressions are kept as ggml writes them (e.g. Q4_K is
**               (d*sc)*q - dmin*m) so the results are bit-identical.
**   from_float  quantize_row_q8_0_ref / q8_1_ref / q8_K_ref: roundf() for
**               Q8_0 and Q8_1, ggml's nearest_int (round half to even) for
**               Q8_K. ggml's AVX2 Q8_0/Q8_1 quantizers differ from these refs
**               in rare ties (they scale by 127/amax and round half to even);
**               see tests/test_kernels.c.
**   vec_dot     the non-SIMD branches of ggml_vec_dot_*_q8_* in
**               ggml-cpu-quants.c: integer sums per block, then the scales in
**               float in ggml's order. F32, F16 and BF16 sum float products in
**               double, as ggml's ggml_vec_dot_f32/f16/bf16 do (ggml_float).
**
** Assumptions: n is a multiple of the type's block size (kernels.h), the
** floats handed to from_float are finite, and the machine is little-endian
** (GGUF is, and the packed bit fields are read byte by byte anyway). No
** pointer needs any alignment: blocks and elements are copied out with
** memcpy, which compilers turn into plain loads, so a row may start at any
** byte of a mapped file without undefined behaviour.
**
** The file is cut into sections: helpers, F32/F16/BF16, the 32-element
** formats, the K formats, the table.
*/
#include <math.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/kernels_impl.h"

/* Keep a*b - c as two roundings, as ggml's dequantizers compute it; a fused
** multiply-add would change the last bit and the SIMD sets are compared with
** these results exactly. (GCC in ISO C mode never contracts; clang does
** unless told.) */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* --- helpers --- */

/* Copies block i of a row of `size`-byte blocks into *dst. */
static void block_get(void *dst, const void *row, int64_t i, size_t size)
{
    memcpy(dst, (const uint8_t *)row + (size_t)i * size, size);
}

/* Copies *src into block i of a row of `size`-byte blocks. */
static void block_put(void *row, int64_t i, const void *src, size_t size)
{
    memcpy((uint8_t *)row + (size_t)i * size, src, size);
}

/* ggml's nearest_int: rounds to nearest, ties to even, for |f| < 2^22, by
** adding 1.5 * 2^23 so the float unit does the rounding. */
static int nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Reads the 32 high bits of a Q5_0/Q5_1 block (little-endian uint32). */
static uint32_t q5_high_bits(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* --- F32, F16, BF16: element by element, exact on the way out --- */

void kb_scalar_to_float_f32(const void *x, float *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void kb_scalar_to_float_f16(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        kb_half h;
        memcpy(&h, (const uint8_t *)x + 2 * i, sizeof h);
        y[i] = kb_half_to_float(h);
    }
}

void kb_scalar_to_float_bf16(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint16_t b;
        memcpy(&b, (const uint8_t *)x + 2 * i, sizeof b);
        y[i] = kb_bf16_to_float(b);
    }
}

void kb_scalar_from_float_f32(const float *x, void *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

/* Round to nearest even, as ggml's GGML_FP32_TO_FP16 (F16C) does. */
void kb_scalar_from_float_f16(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        kb_half h = kb_float_to_half(x[i]);
        memcpy((uint8_t *)y + 2 * i, &h, sizeof h);
    }
}

/* Round to nearest even, NaN kept quiet: ggml_compute_fp32_to_bf16. */
void kb_scalar_from_float_bf16(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint16_t b = kb_float_to_bf16(x[i]);
        memcpy((uint8_t *)y + 2 * i, &b, sizeof b);
    }
}

/* The three float dots sum float products in double, like ggml's ggml_float
** accumulators; products of two halves or two bfloats are exact in float. */
void kb_scalar_vec_dot_f32(int64_t n, float *s, const void *x, const void *y)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float a, b;
        memcpy(&a, (const uint8_t *)x + 4 * i, sizeof a);
        memcpy(&b, (const uint8_t *)y + 4 * i, sizeof b);
        sum += (double)(a * b);
    }
    *s = (float)sum;
}

void kb_scalar_vec_dot_f16(int64_t n, float *s, const void *x, const void *y)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        kb_half a, b;
        memcpy(&a, (const uint8_t *)x + 2 * i, sizeof a);
        memcpy(&b, (const uint8_t *)y + 2 * i, sizeof b);
        sum += (double)(kb_half_to_float(a) * kb_half_to_float(b));
    }
    *s = (float)sum;
}

void kb_scalar_vec_dot_bf16(int64_t n, float *s, const void *x, const void *y)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t a, b;
        memcpy(&a, (const uint8_t *)x + 2 * i, sizeof a);
        memcpy(&b, (const uint8_t *)y + 2 * i, sizeof b);
        sum += (double)(kb_bf16_to_float(a) * kb_bf16_to_float(b));
    }
    *s = (float)sum;
}

/* --- the 32-element formats: element j of a block sits in the low nibble of
** qs[j], element j + 16 in the high nibble; Q5 adds bit j of qh as bit 4 --- */

/* dequantize_row_q4_0: (q - 8) d. */
void kb_scalar_to_float_q4_0(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, y += KB_QK) {
        BlockQ4_0 b;
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d);
        for (int j = 0; j < KB_QK / 2; j++) {
            y[j] = ((b.qs[j] & 0x0F) - 8) * d;
            y[j + KB_QK / 2] = ((b.qs[j] >> 4) - 8) * d;
        }
    }
}

/* dequantize_row_q4_1: q d + m. */
void kb_scalar_to_float_q4_1(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, y += KB_QK) {
        BlockQ4_1 b;
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d);
        const float m = kb_half_to_float(b.m);
        for (int j = 0; j < KB_QK / 2; j++) {
            y[j] = (b.qs[j] & 0x0F) * d + m;
            y[j + KB_QK / 2] = (b.qs[j] >> 4) * d + m;
        }
    }
}

/* dequantize_row_q5_0: (q - 16) d, q five bits. */
void kb_scalar_to_float_q5_0(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, y += KB_QK) {
        BlockQ5_0 b;
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d);
        const uint32_t qh = q5_high_bits(b.qh);
        for (int j = 0; j < KB_QK / 2; j++) {
            const int h0 = ((qh >> j) & 1) << 4;
            const int h1 = ((qh >> (j + 16)) & 1) << 4;
            y[j] = (((b.qs[j] & 0x0F) | h0) - 16) * d;
            y[j + KB_QK / 2] = (((b.qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* dequantize_row_q5_1: q d + m, q five bits. */
void kb_scalar_to_float_q5_1(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, y += KB_QK) {
        BlockQ5_1 b;
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d);
        const float m = kb_half_to_float(b.m);
        const uint32_t qh = q5_high_bits(b.qh);
        for (int j = 0; j < KB_QK / 2; j++) {
            const int h0 = ((qh >> j) & 1) << 4;
            const int h1 = ((qh >> (j + 16)) & 1) << 4;
            y[j] = ((b.qs[j] & 0x0F) | h0) * d + m;
            y[j + KB_QK / 2] = ((b.qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* dequantize_row_q8_0: q d. */
void kb_scalar_to_float_q8_0(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, y += KB_QK) {
        BlockQ8_0 b;
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d);
        for (int j = 0; j < KB_QK; j++) y[j] = b.qs[j] * d;
    }
}

/* ggml has no dequantizer for Q8_1 (it is only ever an activation); this one
** ignores s, which is derived data. */
void kb_scalar_to_float_q8_1(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, y += KB_QK) {
        BlockQ8_1 b;
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d);
        for (int j = 0; j < KB_QK; j++) y[j] = b.qs[j] * d;
    }
}

/* Returns amax / 127 for a 32-element block: the Q8_0/Q8_1 scale. */
static float q8_block_scale(const float *x)
{
    float amax = 0.0f;
    for (int j = 0; j < KB_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    return amax / 127;
}

/* quantize_row_q8_0_ref: d = amax/127 stored as half, q = roundf(x / d)
** computed as x * (1/d) with the float d. An all-zero block gets d = 0 and
** zero quants. */
void kb_scalar_from_float_q8_0(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, x += KB_QK) {
        BlockQ8_0 b;
        const float d = q8_block_scale(x);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = kb_float_to_half(d);
        for (int j = 0; j < KB_QK; j++) b.qs[j] = (int8_t)roundf(x[j] * id);
        block_put(y, i, &b, sizeof b);
    }
}

/* quantize_row_q8_1_ref: as Q8_0, plus s = sum(q) * d (float d, then half),
** which the Q4_1/Q5_1 dots multiply by the weight block's minimum. */
void kb_scalar_from_float_q8_1(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, x += KB_QK) {
        BlockQ8_1 b;
        const float d = q8_block_scale(x);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        b.d = kb_float_to_half(d);
        for (int j = 0; j < KB_QK; j++) {
            b.qs[j] = (int8_t)roundf(x[j] * id);
            sum += b.qs[j];
        }
        b.s = kb_float_to_half(sum * d);
        block_put(y, i, &b, sizeof b);
    }
}

/* ggml_vec_dot_q4_0_q8_0: one integer sum per block, scaled by dx then dy. */
void kb_scalar_vec_dot_q4_0(int64_t n, float *s, const void *vx, const void *vy)
{
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        BlockQ4_0 x;
        BlockQ8_0 y;
        block_get(&x, vx, i, sizeof x);
        block_get(&y, vy, i, sizeof y);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < KB_QK / 2; j++) {
            sumi0 += ((x.qs[j] & 0x0F) - 8) * y.qs[j];
            sumi1 += ((x.qs[j] >> 4) - 8) * y.qs[j + KB_QK / 2];
        }
        const int sumi = sumi0 + sumi1;
        sumf += sumi * kb_half_to_float(x.d) * kb_half_to_float(y.d);
    }
    *s = sumf;
}

/* ggml_vec_dot_q4_1_q8_1: sum((d q + m) dy qy) = d dy sum(q qy) + m s, with
** s = dy sum(qy) precomputed by the Q8_1 quantizer. */
void kb_scalar_vec_dot_q4_1(int64_t n, float *s, const void *vx, const void *vy)
{
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        BlockQ4_1 x;
        BlockQ8_1 y;
        block_get(&x, vx, i, sizeof x);
        block_get(&y, vy, i, sizeof y);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < KB_QK / 2; j++) {
            sumi0 += (x.qs[j] & 0x0F) * y.qs[j];
            sumi1 += (x.qs[j] >> 4) * y.qs[j + KB_QK / 2];
        }
        const int sumi = sumi0 + sumi1;
        sumf += (kb_half_to_float(x.d) * kb_half_to_float(y.d)) * sumi +
                kb_half_to_float(x.m) * kb_half_to_float(y.s);
    }
    *s = sumf;
}

/* ggml_vec_dot_q5_0_q8_0: as Q4_0 with five-bit quants. */
void kb_scalar_vec_dot_q5_0(int64_t n, float *s, const void *vx, const void *vy)
{
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        BlockQ5_0 x;
        BlockQ8_0 y;
        block_get(&x, vx, i, sizeof x);
        block_get(&y, vy, i, sizeof y);
        const uint32_t qh = q5_high_bits(x.qh);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < KB_QK / 2; j++) {
            const int h0 = ((qh >> j) & 1) << 4;
            const int h1 = ((qh >> (j + 16)) & 1) << 4;
            sumi0 += (((x.qs[j] & 0x0F) | h0) - 16) * y.qs[j];
            sumi1 += (((x.qs[j] >> 4) | h1) - 16) * y.qs[j + KB_QK / 2];
        }
        const int sumi = sumi0 + sumi1;
        sumf += (kb_half_to_float(x.d) * kb_half_to_float(y.d)) * sumi;
    }
    *s = sumf;
}

/* ggml_vec_dot_q5_1_q8_1: as Q4_1 with five-bit quants. */
void kb_scalar_vec_dot_q5_1(int64_t n, float *s, const void *vx, const void *vy)
{
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        BlockQ5_1 x;
        BlockQ8_1 y;
        block_get(&x, vx, i, sizeof x);
        block_get(&y, vy, i, sizeof y);
        const uint32_t qh = q5_high_bits(x.qh);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < KB_QK / 2; j++) {
            const int h0 = ((qh >> j) & 1) << 4;
            const int h1 = ((qh >> (j + 16)) & 1) << 4;
            sumi0 += ((x.qs[j] & 0x0F) | h0) * y.qs[j];
            sumi1 += ((x.qs[j] >> 4) | h1) * y.qs[j + KB_QK / 2];
        }
        const int sumi = sumi0 + sumi1;
        sumf += (kb_half_to_float(x.d) * kb_half_to_float(y.d)) * sumi +
                kb_half_to_float(x.m) * kb_half_to_float(y.s);
    }
    *s = sumf;
}

/* ggml_vec_dot_q8_0_q8_0. */
void kb_scalar_vec_dot_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / KB_QK; i++) {
        BlockQ8_0 x, y;
        block_get(&x, vx, i, sizeof x);
        block_get(&y, vy, i, sizeof y);
        int sumi = 0;
        for (int j = 0; j < KB_QK; j++) sumi += x.qs[j] * y.qs[j];
        sumf += sumi * (kb_half_to_float(x.d) * kb_half_to_float(y.d));
    }
    *s = sumf;
}

/* --- the K formats: 256-element super-blocks of 16 sub-blocks (8 for Q4_K
** and Q5_K, whose 32-element sub-blocks are treated here as pairs of 16).
** Each format is unpacked into its integer quants q[256] in element order
** plus per-16 integer scales; dequantizing is then y = dl q - ml with
** dl = d * scale and ml = dmin * min per sub-block, and the dot products sum
** scale * q * q8 in integers before applying d. --- */

/* Unpacks Q3_K's 16 six-bit scales (12 bytes) and removes their bias of 32:
** low 4 bits in the nibbles of bytes 0..7, high 2 bits in bytes 8..11. */
static void q3k_scales(const uint8_t s[12], int sc[16])
{
    for (int j = 0; j < 16; j++) {
        const int low = j < 8 ? s[j] & 0x0F : s[j - 8] >> 4;
        const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (low | high << 4) - 32;
    }
}

/* ggml's get_scale_min_k4: scale and min of 32-element sub-block j (0..7) of
** a Q4_K/Q5_K block, six bits each, packed in 12 bytes. */
static void k4_scale_min(const uint8_t s[12], int j, int *sc /* OUT */, int *mn /* OUT */)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q2_K and Q3_K share the bit walk: each 128-element half reads 32 bytes of
** qs four times with shifts 0, 2, 4, 6; element 128h + 32g + l takes bits
** 2g..2g+1 of qs[32h + l]. */
static void q2k_quants(const uint8_t qs[64], int8_t q[256])
{
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) q[128 * h + 32 * g + l] = (int8_t)((qs[32 * h + l] >> (2 * g)) & 3);
}

/* Q3_K: the Q2_K walk, minus 4 where bit 4h + g of hmask[l] is clear. */
static void q3k_quants(const BlockQ3_K *b, int8_t q[256])
{
    q2k_quants(b->qs, q);
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                if (!(b->hmask[l] & (1u << (4 * h + g)))) q[128 * h + 32 * g + l] -= 4;
}

/* Q4_K and Q5_K: 64-element chunk c takes the low nibbles of qs[32c..32c+31]
** then their high nibbles; Q5_K adds 16 for bit 2c (low) or 2c+1 (high) of
** qh[l]. */
static void q4k_quants(const uint8_t qs[128], const uint8_t *qh /* NULL for Q4_K */, int8_t q[256])
{
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 0x0F, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo += (qh[l] >> (2 * c) & 1) << 4;
                hi += (qh[l] >> (2 * c + 1) & 1) << 4;
            }
            q[64 * c + l] = (int8_t)lo;
            q[64 * c + 32 + l] = (int8_t)hi;
        }
    }
}

/* Q6_K: per 128 elements (ql += 64, qh += 32), l < 32: element l takes the
** low nibble of ql[l] and bits 0-1 of qh[l]; l+32: low nibble of ql[l+32],
** bits 2-3; l+64: high nibble of ql[l], bits 4-5; l+96: high nibble of
** ql[l+32], bits 6-7. Minus 32. */
static void q6k_quants(const BlockQ6_K *b, int8_t q[256])
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
        }
    }
}

/* Writes y[k] = dl[k/16] * q[k] - ml[k/16] for one super-block. Formats
** without minimums pass zeros: subtracting 0 is exact, so the result is
** ggml's dl * q bit for bit. */
static void k_dequant(const int8_t q[256], const float dl[16], const float ml[16], float *y)
{
    for (int k = 0; k < KB_QK_K; k++) y[k] = dl[k / 16] * q[k] - ml[k / 16];
}

/* Integer part of the K dots: lane[l] = sum over k = l (mod 8) of
** sc[k/16] * q[k] * q8[k]. ggml's scalar K dots (Q3_K..Q6_K) accumulate in
** exactly these 8 lanes and then scale each lane in float, so the split fixes
** the float rounding that follows; the integer sums themselves are exact. */
static void k_lanes(const int8_t q[256], const int8_t q8[256], const int sc[16], int32_t lane[8])
{
    for (int l = 0; l < 8; l++) lane[l] = 0;
    for (int k = 0; k < KB_QK_K; k++) lane[k % 8] += sc[k / 16] * (q[k] * q8[k]);
}

/* Scales each lane by d into sums[8] (ggml's float sums[8] across blocks). */
static void k_lanes_accumulate(float sums[8], float d, const int32_t lane[8])
{
    for (int l = 0; l < 8; l++) sums[l] += d * lane[l];
}

/* dequantize_row_q2_K: (d sc) q - dmin mn, four-bit sc and mn per 16. */
void kb_scalar_to_float_q2_K(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK_K; i++, y += KB_QK_K) {
        BlockQ2_K b;
        int8_t q[KB_QK_K];
        float dl[16], ml[16];
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d), dmin = kb_half_to_float(b.dmin);
        for (int j = 0; j < 16; j++) {
            dl[j] = d * (b.scales[j] & 0x0F);
            ml[j] = dmin * (b.scales[j] >> 4);
        }
        q2k_quants(b.qs, q);
        k_dequant(q, dl, ml, y);
    }
}

/* dequantize_row_q3_K: (d sc) q, six-bit signed sc per 16, q in -4..3. */
void kb_scalar_to_float_q3_K(const void *x, float *y, int64_t n)
{
    static const float zero[16];
    for (int64_t i = 0; i < n / KB_QK_K; i++, y += KB_QK_K) {
        BlockQ3_K b;
        int8_t q[KB_QK_K];
        int sc[16];
        float dl[16];
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d);
        q3k_scales(b.scales, sc);
        for (int j = 0; j < 16; j++) dl[j] = d * sc[j];
        q3k_quants(&b, q);
        k_dequant(q, dl, zero, y);
    }
}

/* Reads block i of a Q4_K row (high = 0) or a Q5_K row (high = 1), which
** differ only in Q5_K's qh: d and dmin as floats, the packed sub-block
** scales and mins, and the unpacked quants. */
static void k4_block_get(const void *row, int64_t i, int high, float *d /* OUT */, float *dmin /* OUT */,
                         uint8_t scales[12] /* OUT */, int8_t q[256] /* OUT */)
{
    if (high) {
        BlockQ5_K b;
        block_get(&b, row, i, sizeof b);
        *d = kb_half_to_float(b.d);
        *dmin = kb_half_to_float(b.dmin);
        memcpy(scales, b.scales, sizeof b.scales);
        q4k_quants(b.qs, b.qh, q);
    } else {
        BlockQ4_K b;
        block_get(&b, row, i, sizeof b);
        *d = kb_half_to_float(b.d);
        *dmin = kb_half_to_float(b.dmin);
        memcpy(scales, b.scales, sizeof b.scales);
        q4k_quants(b.qs, NULL, q);
    }
}

/* dequantize_row_q4_K / _q5_K: y = (d sc) q - dmin mn per 32-element
** sub-block (each value serves two 16-element groups of k_dequant). */
static void k4_to_float(const void *x, float *y, int64_t n, int high)
{
    for (int64_t i = 0; i < n / KB_QK_K; i++, y += KB_QK_K) {
        int8_t q[KB_QK_K];
        uint8_t scales[12];
        float d, dmin, dl[16], ml[16];
        k4_block_get(x, i, high, &d, &dmin, scales, q);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            k4_scale_min(scales, j, &sc, &mn);
            dl[2 * j] = dl[2 * j + 1] = d * sc;
            ml[2 * j] = ml[2 * j + 1] = dmin * mn;
        }
        k_dequant(q, dl, ml, y);
    }
}

void kb_scalar_to_float_q4_K(const void *x, float *y, int64_t n)
{
    k4_to_float(x, y, n, 0);
}

void kb_scalar_to_float_q5_K(const void *x, float *y, int64_t n)
{
    k4_to_float(x, y, n, 1);
}

/* dequantize_row_q6_K: (d sc) q, int8 sc per 16, q in -32..31. */
void kb_scalar_to_float_q6_K(const void *x, float *y, int64_t n)
{
    static const float zero[16];
    for (int64_t i = 0; i < n / KB_QK_K; i++, y += KB_QK_K) {
        BlockQ6_K b;
        int8_t q[KB_QK_K];
        float dl[16];
        block_get(&b, x, i, sizeof b);
        const float d = kb_half_to_float(b.d);
        for (int j = 0; j < 16; j++) dl[j] = d * b.scales[j];
        q6k_quants(&b, q);
        k_dequant(q, dl, zero, y);
    }
}

/* dequantize_row_q8_K: d q with a float d. */
void kb_scalar_to_float_q8_K(const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK_K; i++, y += KB_QK_K) {
        BlockQ8_K b;
        block_get(&b, x, i, sizeof b);
        for (int j = 0; j < KB_QK_K; j++) y[j] = b.d * b.qs[j];
    }
}

/* quantize_row_q8_K_ref: scale by -127/max where max is the signed element
** of largest magnitude (so it maps to -127), round half to even, clamp at
** 127, d = 1/iscale in float; bsums[j] sums quants 16j..16j+15. An all-zero
** block gets d = 0 and zero quants; its bsums are zeroed too (ggml leaves
** them unset, harmless since d = 0). */
void kb_scalar_from_float_q8_K(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK_K; i++, x += KB_QK_K) {
        BlockQ8_K b;
        float max = 0.0f, amax = 0.0f;
        memset(&b, 0, sizeof b);
        for (int j = 0; j < KB_QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax != 0.0f) {
            const float iscale = -127.f / max;
            for (int j = 0; j < KB_QK_K; j++) {
                const int v = nearest_int(iscale * x[j]);
                b.qs[j] = (int8_t)(v < 127 ? v : 127);
            }
            for (int j = 0; j < KB_QK_K / 16; j++) {
                int sum = 0;
                for (int l = 0; l < 16; l++) sum += b.qs[16 * j + l];
                b.bsums[j] = (int16_t)sum;
            }
            b.d = 1 / iscale;
        }
        block_put(y, i, &b, sizeof b);
    }
}

/* ggml_vec_dot_q2_K_q8_K: the minimums go through Q8_K's bsums; the scaled
** quants are summed in one integer per block. */
void kb_scalar_vec_dot_q2_K(int64_t n, float *s, const void *vx, const void *vy)
{
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        BlockQ2_K x;
        BlockQ8_K y;
        int8_t q[KB_QK_K];
        block_get(&x, vx, i, sizeof x);
        block_get(&y, vy, i, sizeof y);
        q2k_quants(x.qs, q);
        int summs = 0, isum = 0;
        for (int j = 0; j < 16; j++) summs += y.bsums[j] * (x.scales[j] >> 4);
        for (int j = 0; j < 16; j++) {
            int isuml = 0;
            for (int l = 16 * j; l < 16 * j + 16; l++) isuml += y.qs[l] * q[l];
            isum += (x.scales[j] & 0x0F) * isuml;
        }
        const float dall = y.d * kb_half_to_float(x.d);
        const float dmin = y.d * kb_half_to_float(x.dmin);
        sumf += dall * isum - dmin * summs;
    }
    *s = sumf;
}

/* ggml_vec_dot_q3_K_q8_K: signed scales, no minimums. */
void kb_scalar_vec_dot_q3_K(int64_t n, float *s, const void *vx, const void *vy)
{
    float sums[8] = {0};
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        BlockQ3_K x;
        BlockQ8_K y;
        int8_t q[KB_QK_K];
        int sc[16];
        int32_t lane[8];
        block_get(&x, vx, i, sizeof x);
        block_get(&y, vy, i, sizeof y);
        q3k_scales(x.scales, sc);
        q3k_quants(&x, q);
        k_lanes(q, y.qs, sc, lane);
        k_lanes_accumulate(sums, kb_half_to_float(x.d) * y.d, lane);
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

/* ggml_vec_dot_q4_K_q8_K / _q5_K_q8_K: the quants times the scales in
** lanes, the minimums through bsums (sum over 16-groups of bsums[j] times
** the min of their 32-element sub-block), subtracted block by block. */
static void k4_dot(int64_t n, float *s, const void *vx, const void *vy, int high)
{
    float sums[8] = {0};
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        BlockQ8_K y;
        int8_t q[KB_QK_K];
        uint8_t scales[12];
        float d, dmin;
        int sc[16], mn[8];
        int32_t lane[8];
        k4_block_get(vx, i, high, &d, &dmin, scales, q);
        block_get(&y, vy, i, sizeof y);
        for (int j = 0; j < 8; j++) {
            k4_scale_min(scales, j, &sc[2 * j], &mn[j]);
            sc[2 * j + 1] = sc[2 * j];
        }
        int sumi = 0;
        for (int j = 0; j < 16; j++) sumi += y.bsums[j] * mn[j / 2];
        k_lanes(q, y.qs, sc, lane);
        k_lanes_accumulate(sums, d * y.d, lane);
        sumf -= dmin * y.d * sumi;
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

void kb_scalar_vec_dot_q4_K(int64_t n, float *s, const void *x, const void *y)
{
    k4_dot(n, s, x, y, 0);
}

void kb_scalar_vec_dot_q5_K(int64_t n, float *s, const void *x, const void *y)
{
    k4_dot(n, s, x, y, 1);
}

/* ggml_vec_dot_q6_K_q8_K: int8 scales, no minimums. */
void kb_scalar_vec_dot_q6_K(int64_t n, float *s, const void *vx, const void *vy)
{
    float sums[8] = {0};
    for (int64_t i = 0; i < n / KB_QK_K; i++) {
        BlockQ6_K x;
        BlockQ8_K y;
        int8_t q[KB_QK_K];
        int sc[16];
        int32_t lane[8];
        block_get(&x, vx, i, sizeof x);
        block_get(&y, vy, i, sizeof y);
        for (int j = 0; j < 16; j++) sc[j] = x.scales[j];
        q6k_quants(&x, q);
        k_lanes(q, y.qs, sc, lane);
        k_lanes_accumulate(sums, kb_half_to_float(x.d) * y.d, lane);
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

/* --- the table --- */

/* Types absent here (IQ*, TQ*, integer types) have no kernels: all NULL. */
const KbKernels kb_kernels_scalar = {
    .isa = KB_ISA_SCALAR,
    .name = "scalar",
    .type = {
        [KB_TYPE_F32] = {kb_scalar_to_float_f32, kb_scalar_from_float_f32, kb_scalar_vec_dot_f32, KB_TYPE_F32},
        [KB_TYPE_F16] = {kb_scalar_to_float_f16, kb_scalar_from_float_f16, kb_scalar_vec_dot_f16, KB_TYPE_F16},
        [KB_TYPE_BF16] = {kb_scalar_to_float_bf16, kb_scalar_from_float_bf16, kb_scalar_vec_dot_bf16,
                          KB_TYPE_BF16},
        [KB_TYPE_Q4_0] = {kb_scalar_to_float_q4_0, NULL, kb_scalar_vec_dot_q4_0, KB_TYPE_Q8_0},
        [KB_TYPE_Q4_1] = {kb_scalar_to_float_q4_1, NULL, kb_scalar_vec_dot_q4_1, KB_TYPE_Q8_1},
        [KB_TYPE_Q5_0] = {kb_scalar_to_float_q5_0, NULL, kb_scalar_vec_dot_q5_0, KB_TYPE_Q8_0},
        [KB_TYPE_Q5_1] = {kb_scalar_to_float_q5_1, NULL, kb_scalar_vec_dot_q5_1, KB_TYPE_Q8_1},
        [KB_TYPE_Q8_0] = {kb_scalar_to_float_q8_0, kb_scalar_from_float_q8_0, kb_scalar_vec_dot_q8_0,
                          KB_TYPE_Q8_0},
        [KB_TYPE_Q8_1] = {kb_scalar_to_float_q8_1, kb_scalar_from_float_q8_1, NULL, KB_TYPE_Q8_1},
        [KB_TYPE_Q2_K] = {kb_scalar_to_float_q2_K, NULL, kb_scalar_vec_dot_q2_K, KB_TYPE_Q8_K},
        [KB_TYPE_Q3_K] = {kb_scalar_to_float_q3_K, NULL, kb_scalar_vec_dot_q3_K, KB_TYPE_Q8_K},
        [KB_TYPE_Q4_K] = {kb_scalar_to_float_q4_K, NULL, kb_scalar_vec_dot_q4_K, KB_TYPE_Q8_K},
        [KB_TYPE_Q5_K] = {kb_scalar_to_float_q5_K, NULL, kb_scalar_vec_dot_q5_K, KB_TYPE_Q8_K},
        [KB_TYPE_Q6_K] = {kb_scalar_to_float_q6_K, NULL, kb_scalar_vec_dot_q6_K, KB_TYPE_Q8_K},
        [KB_TYPE_Q8_K] = {kb_scalar_to_float_q8_K, kb_scalar_from_float_q8_K, NULL, KB_TYPE_Q8_K},
    },
};
