/*
** quantize.c: weight quantizers, floats -> GGUF blocks.
**
** Each kb_quantize_row_<type> ports the logic of ggml's reference quantizer
** quantize_row_<type>_ref (ggml-quants.c, llama.cpp Feb 2025): that is the
** code llama-quantize runs for every tensor when no importance matrix is
** given, so the files we write hold the blocks llama.cpp would write. The
** float expressions keep ggml's order of operations; GCC in ISO C mode never
** fuses a*b+c, so the only differences left are rare ties where llama.cpp's
** own build happened to use fused multiply-adds.
**
** The schemes, in short:
**   Q4_0, Q5_0   d = max / -8 (-16), where max is the element of largest
**                magnitude with its sign, so it maps exactly to the most
**                negative level and the other side gets one level more
**   Q4_1, Q5_1   d = (max - min) / 15 (31), m = min
**   Q8_0         d = amax / 127, q = round(x / d)
**   Q2_K, Q4_K,  per 16- or 32-element sub-block a scale and a minimum
**   Q5_K         fitted by weighted least squares over a small grid of
**                candidate scales (make_qkx2_quants), then the scales and
**                minimums themselves quantized to 4 or 6 bits against the
**                super-block's d and dmin, then the elements re-quantized
**                with the scales as stored
**   Q3_K, Q6_K   symmetric: per 16 elements a signed scale fitted by
**                (weighted) least squares (make_q3_quants, make_qx_quants),
**                quantized to 6 or 8 bits against d
** Sub-blocks whose values are all (nearly) zero get zero scales.
**
** Two changes of form, not of result: the K formats fit four sub-blocks at
** a time, one per lane of a 4-float vector (make_qkx2_quants_x4,
** make_qx_quants_x4), each lane doing ggml's operations in ggml's order
** (2 to 2.5 times faster, same bits); Q8_0 rounds with an exact inline
** equivalent of roundf (3.5 times faster). The tests check every type
** against llama.cpp's files byte for byte.
**
** Assumptions: the input is finite (kb_quantizer_rows checks), n is a
** multiple of the block size. Blocks are built in a local struct and copied
** out, so y needs no alignment.
*/
#include <float.h>
#include <math.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/kernels_impl.h"

/* Keep a*b+c as two roundings, like the reference build we compare with. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define GROUP_MAX_EPS 1e-15f /* ggml: below this a group counts as all zero */

/* --- helpers --- */

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* ggml's nearest_int: round to nearest, ties to even, for |f| < 2^22, by
** letting the float unit round f + 1.5 * 2^23. Larger |f| give garbage that
** the callers clamp, never undefined behaviour. */
static inline int nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Copies block b (size bytes) to position i of the output row. */
static inline void put_block(void *y, int64_t i, const void *b, size_t size)
{
    memcpy((uint8_t *)y + (size_t)i * size, b, size);
}

/* Returns the element of largest magnitude of x[0..n), with its sign, and
** its magnitude in *amax (the first one on ties, as ggml scans). */
static float signed_absmax(const float *x, int n, float *amax)
{
    float max = 0.0f, a = 0.0f;
    for (int j = 0; j < n; j++) {
        if (a < fabsf(x[j])) {
            a = fabsf(x[j]);
            max = x[j];
        }
    }
    *amax = a;
    return max;
}

/* --- the 32-element formats --- */

/* quantize_row_q4_0_ref: q = x / d + 8.5 truncated, at most 15. */
void kb_quantize_row_q4_0(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, x += KB_QK) {
        BlockQ4_0 b;
        float amax;
        const float d = signed_absmax(x, KB_QK, &amax) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = kb_float_to_half(d);
        for (int j = 0; j < KB_QK / 2; j++) {
            const uint8_t q0 = (uint8_t)imin(15, (int8_t)(x[j] * id + 8.5f));
            const uint8_t q1 = (uint8_t)imin(15, (int8_t)(x[KB_QK / 2 + j] * id + 8.5f));
            b.qs[j] = (uint8_t)(q0 | q1 << 4);
        }
        put_block(y, i, &b, sizeof b);
    }
}

/* Returns the minimum and maximum of a 32-element block. */
static void block_min_max(const float *x, float *min, float *max)
{
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < KB_QK; j++) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

/* quantize_row_q4_1_ref: q = (x - min) / d + 0.5 truncated, at most 15. */
void kb_quantize_row_q4_1(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, x += KB_QK) {
        BlockQ4_1 b;
        float min, max;
        block_min_max(x, &min, &max);
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = kb_float_to_half(d);
        b.m = kb_float_to_half(min);
        for (int j = 0; j < KB_QK / 2; j++) {
            const uint8_t q0 = (uint8_t)imin(15, (int8_t)((x[j] - min) * id + 0.5f));
            const uint8_t q1 = (uint8_t)imin(15, (int8_t)((x[KB_QK / 2 + j] - min) * id + 0.5f));
            b.qs[j] = (uint8_t)(q0 | q1 << 4);
        }
        put_block(y, i, &b, sizeof b);
    }
}

/* Packs 32 five-bit quants as Q5 blocks store them: low nibbles in qs
** (element j low, j + 16 high), bit 4 of element j in bit j of qh. */
static void pack_q5(const uint8_t q[KB_QK], uint8_t qs[KB_QK / 2], uint8_t qh_out[4])
{
    uint32_t qh = 0;
    for (int j = 0; j < KB_QK / 2; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | (q[j + KB_QK / 2] & 0x0F) << 4);
        qh |= (uint32_t)((q[j] & 0x10u) >> 4) << j;
        qh |= (uint32_t)((q[j + KB_QK / 2] & 0x10u) >> 4) << (j + KB_QK / 2);
    }
    for (int k = 0; k < 4; k++) qh_out[k] = (uint8_t)(qh >> (8 * k)); /* little-endian */
}

/* quantize_row_q5_0_ref: q = x / d + 16.5 truncated, at most 31. */
void kb_quantize_row_q5_0(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, x += KB_QK) {
        BlockQ5_0 b;
        uint8_t q[KB_QK];
        float amax;
        const float d = signed_absmax(x, KB_QK, &amax) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = kb_float_to_half(d);
        for (int j = 0; j < KB_QK; j++) q[j] = (uint8_t)imin(31, (int8_t)(x[j] * id + 16.5f));
        pack_q5(q, b.qs, b.qh);
        put_block(y, i, &b, sizeof b);
    }
}

/* quantize_row_q5_1_ref: q = (x - min) / d + 0.5 truncated (at most 31 by
** construction). */
void kb_quantize_row_q5_1(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, x += KB_QK) {
        BlockQ5_1 b;
        uint8_t q[KB_QK];
        float min, max;
        block_min_max(x, &min, &max);
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = kb_float_to_half(d);
        b.m = kb_float_to_half(min);
        for (int j = 0; j < KB_QK; j++) q[j] = (uint8_t)((x[j] - min) * id + 0.5f);
        pack_q5(q, b.qs, b.qh);
        put_block(y, i, &b, sizeof b);
    }
}

/* roundf (halves away from zero) for |v| < 2^23, without the library call
** that dominated Q8_0's time: v - trunc(v) is exact in that range, so
** comparing it with 0.5 decides exactly as roundf does. */
static inline int round_half_away(float v)
{
    int i = (int)v;
    const float frac = v - (float)i;
    return i + (frac >= 0.5f) - (frac <= -0.5f);
}

/* quantize_row_q8_0_ref: d = amax / 127, q = roundf(x * (1 / d)). */
void kb_quantize_row_q8_0(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK; i++, x += KB_QK) {
        BlockQ8_0 b;
        float amax = 0.0f;
        for (int j = 0; j < KB_QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = kb_float_to_half(d);
        for (int j = 0; j < KB_QK; j++) b.qs[j] = (int8_t)round_half_away(x[j] * id);
        put_block(y, i, &b, sizeof b);
    }
}

/* --- fitting helpers of the K formats --- */

/* make_q3_quants with do_rmse: symmetric levels -nmax .. nmax-1 (stored +
** nmax), then up to 5 passes that move single elements to the level that
** best improves the x^2-weighted least-squares fit. Returns the scale. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L)
{
    float amax;
    const float max = signed_absmax(x, n, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* --- make_qkx2_quants, four groups at a time --- */

/* GCC/Clang vector extensions: four floats or ints, one group per lane.
** Every lane performs exactly the scalar code's IEEE operations in the same
** order, so the results are bit-identical to make_qkx2_quants; the vectors
** only do four groups' work per instruction (SSE2 on any x86-64). */
typedef float V4f __attribute__((vector_size(16)));
typedef int32_t V4i __attribute__((vector_size(16)));

/* m ? a : b per lane (m all ones or all zeros per lane). */
static inline V4f vsel(V4i m, V4f a, V4f b)
{
    return (V4f)((m & (V4i)a) | (~m & (V4i)b));
}

/* nearest_int per lane. */
static inline V4i vnearest(V4f f)
{
    const V4f magic = {12582912.f, 12582912.f, 12582912.f, 12582912.f};
    return ((V4i)(f + magic) & 0x007fffff) - 0x00400000;
}

/* The levels 0 .. nmax of x at inverse scale iscale and offset min. */
static inline V4i vlevel(V4f x, V4f iscale, V4f min, int nmax)
{
    V4i l = vnearest(iscale * (x - min));
    const V4i zero = {0, 0, 0, 0}, top = zero + nmax;
    l &= l >= zero;                             /* MAX(0, l) */
    return ((l > top) & top) | ((l <= top) & l); /* MIN(nmax, l) */
}

/* Weighted error per lane: sum of w (scale l + min - x)^2, or w |...|. */
static inline V4f verror(int n, const V4f *xt, const V4f *wt, const V4i *lt, V4f scale, V4f min, bool use_mad)
{
    V4f err = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        V4f diff = scale * __builtin_convertvector(lt[i], V4f) + min - xt[i];
        diff = use_mad ? (V4f)((V4i)diff & 0x7fffffff) : diff * diff;
        err += wt[i] * diff;
    }
    return err;
}

/* make_qx_quants with rmse_type 1 and no importance weights, on four
** consecutive groups of n <= 32 values (x[g n + i], levels to L likewise,
** scale[g] per group): symmetric levels -nmax .. nmax-1, stored + nmax.
** Starts from the scale that maps the element of largest magnitude to
** -nmax, then tries 18 nearby scales and keeps the one whose x^2-weighted
** least-squares fit is best, returning that fit's scale; an all-zero group
** gets scale 0. The levels are computed once, from the inverse scale
** finally chosen: the levels ggml recomputes at each improvement. */
static void make_qx_quants_x4(int n, int nmax, const float *x, int8_t *L, float *scale_out)
{
    V4f xt[32], max;
    V4i zero_group;
    for (int i = 0; i < n; i++)
        for (int g = 0; g < 4; g++) xt[i][g] = x[g * n + i];
    for (int g = 0; g < 4; g++) {
        float amax;
        max[g] = signed_absmax(x + g * n, n, &amax);
        zero_group[g] = amax < GROUP_MAX_EPS ? -1 : 0;
    }
    const V4f zero = {0, 0, 0, 0};
    const V4i lo = (V4i){0, 0, 0, 0} - nmax, hi = (V4i){0, 0, 0, 0} + (nmax - 1);
    V4f chosen = (zero - (float)nmax) / max, scale = zero, best = zero;
    for (int is = -10; is <= 9; is++) { /* -10 stands for the starting scale */
        if (is == 0) continue;
        const V4f iscale = is == -10 ? chosen : (zero - (nmax + 0.1f * is)) / max;
        V4f sumlx = zero, suml2 = zero;
        for (int i = 0; i < n; i++) {
            V4i l = vnearest(iscale * xt[i]);
            l = ((l < lo) & lo) | ((l >= lo) & l);
            l = ((l > hi) & hi) | ((l <= hi) & l);
            const V4f lf = __builtin_convertvector(l, V4f), w = xt[i] * xt[i];
            sumlx += w * xt[i] * lf;
            suml2 += w * lf * lf;
        }
        if (is == -10) {
            scale = vsel(suml2 != zero, sumlx / suml2, zero);
            best = scale * sumlx;
            continue;
        }
        const V4i better = (suml2 > zero) & (sumlx * sumlx > best * suml2);
        chosen = vsel(better, iscale, chosen);
        scale = vsel(better, sumlx / suml2, scale);
        best = vsel(better, scale * sumlx, best);
    }
    for (int g = 0; g < 4; g++) {
        scale_out[g] = zero_group[g] ? 0.0f : scale[g];
        for (int i = 0; i < n; i++)
            L[g * n + i] = zero_group[g] ? 0 : (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(chosen[g] * x[g * n + i]))));
    }
}

/* make_qkx2_quants on four consecutive groups of n <= 32 values (x[g n +
** i], weights likewise, levels to L likewise, scale[g] and the_min[g] per
** group): asymmetric quantization x ~ scale * L - min with L in
** 0 .. nmax and min >= 0 (the range always includes zero). Starts from the
** min/max mapping, then for nstep + 1 candidate scales (rmin + rdelta * is
** + nmax) / (max - min) solves the weighted least-squares scale and offset
** for the resulting levels, keeping the candidate with the least weighted
** error (absolute when use_mad, else squared). A group whose values are all
** equal gets scale 0. */
static void make_qkx2_quants_x4(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *scale_out,
                                float *the_min, float rmin, float rdelta, int nstep, bool use_mad)
{
    V4f xt[32], wt[32];
    V4i lt[32], laux[32];
    for (int i = 0; i < n; i++)
        for (int g = 0; g < 4; g++) xt[i][g] = x[g * n + i], wt[i][g] = weights[g * n + i];
    V4f min = xt[0], max = xt[0], sum_w = wt[0], sum_x = sum_w * xt[0];
    for (int i = 1; i < n; i++) {
        min = vsel(xt[i] < min, xt[i], min);
        max = vsel(xt[i] > max, xt[i], max);
        sum_w += wt[i];
        sum_x += wt[i] * xt[i];
    }
    const V4f zero = {0, 0, 0, 0};
    min = vsel(min > zero, zero, min);
    const V4i flat = max == min;
    const V4f min0 = min;
    V4f iscale = (zero + (float)nmax) / (max - min);
    V4f scale = 1 / iscale;
    for (int i = 0; i < n; i++) lt[i] = vlevel(xt[i], iscale, min, nmax);
    V4f best_error = verror(n, xt, wt, lt, scale, min, use_mad);
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        iscale = (zero + (rmin + rdelta * is + nmax)) / (max - min);
        V4f sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; i++) {
            laux[i] = vlevel(xt[i], iscale, min, nmax);
            const V4f l = __builtin_convertvector(laux[i], V4f);
            sum_l += wt[i] * l;
            sum_l2 += wt[i] * l * l;
            sum_xl += wt[i] * l * xt[i];
        }
        const V4f D = sum_w * sum_l2 - sum_l * sum_l;
        V4f this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        V4f this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        const V4i pos = this_min > zero;
        this_min = vsel(pos, zero, this_min);
        this_scale = vsel(pos, sum_xl / sum_l2, this_scale);
        const V4f cur_error = verror(n, xt, wt, laux, this_scale, this_min, use_mad);
        const V4i better = (D > zero) & (cur_error < best_error);
        if (!(better[0] | better[1] | better[2] | better[3])) continue;
        for (int i = 0; i < n; i++) lt[i] = (better & laux[i]) | (~better & lt[i]);
        best_error = vsel(better, cur_error, best_error);
        scale = vsel(better, this_scale, scale);
        min = vsel(better, this_min, min);
    }
    for (int g = 0; g < 4; g++) {
        scale_out[g] = flat[g] ? 0.0f : scale[g];
        the_min[g] = -(flat[g] ? min0[g] : min[g]);
        for (int i = 0; i < n; i++) L[g * n + i] = flat[g] ? 0 : (uint8_t)lt[i][g];
    }
}

/* get_scale_min_k4: the 6-bit scale and min of sub-block j of a Q4_K/Q5_K
** scales array. */
static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Packs 2-bit quants L[0..256) the Q2_K/Q3_K way: per 128 elements, byte l
** holds elements l, l+32, l+64, l+96 at shifts 0, 2, 4, 6. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < KB_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

/* --- Q2_K --- */

/* quantize_row_q2_K_ref: 16 sub-blocks of 16 with 2-bit quants, each with a
** 4-bit scale and 4-bit min against the fp16 d and dmin; fitted with
** |x|-weighted absolute error. */
void kb_quantize_row_q2_K(const float *x, void *y, int64_t n)
{
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / KB_QK_K; i++, x += KB_QK_K) {
        BlockQ2_K b;
        uint8_t L[KB_QK_K];
        float weights[KB_QK_K], mins[KB_QK_K / 16], scales[KB_QK_K / 16];
        float max_scale = 0, max_min = 0;
        for (int l = 0; l < KB_QK_K; l++) weights[l] = fabsf(x[l]);
        for (int j = 0; j < KB_QK_K / 16; j += 4)
            make_qkx2_quants_x4(16, 3, x + 16 * j, weights + 16 * j, L + 16 * j, scales + j, mins + j, -0.5f, 0.1f, 15, true);
        for (int j = 0; j < KB_QK_K / 16; j++) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < KB_QK_K / 16; j++) b.scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            b.d = kb_float_to_half(max_scale / q4scale);
        } else {
            memset(b.scales, 0, sizeof b.scales);
            b.d = kb_float_to_half(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < KB_QK_K / 16; j++) b.scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            b.dmin = kb_float_to_half(max_min / q4scale);
        } else {
            b.dmin = kb_float_to_half(0.f);
        }
        for (int j = 0; j < KB_QK_K / 16; j++) {
            const float d = kb_half_to_float(b.d) * (b.scales[j] & 0xF);
            if (!d) continue;
            const float dm = kb_half_to_float(b.dmin) * (b.scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, nearest_int((x[16 * j + ii] + dm) / d)));
        }
        pack_2bit(L, b.qs);
        put_block(y, i, &b, sizeof b);
    }
}

/* --- Q3_K --- */

/* Stores the 6-bit value l (0..63) as scale j of a Q3_K scales array: low
** nibble in byte j (j < 8) or the high nibble of byte j - 8, the top two
** bits in byte 8 + j % 4 at shift 2 (j / 4). */
static void q3_put_scale(uint8_t *scales, int j, int l)
{
    if (j < 8) scales[j] = (uint8_t)(l & 0xF);
    else scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
    scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
}

/* The signed scale j of a Q3_K scales array (-32 .. 31). */
static int q3_get_scale(const uint8_t *scales, int j)
{
    int sc = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    return (sc | ((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

/* quantize_row_q3_K_ref: 16 sub-blocks of 16 with 3-bit signed quants (two
** low bits in qs, the high bit in hmask) and signed 6-bit scales. */
void kb_quantize_row_q3_K(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK_K; i++, x += KB_QK_K) {
        BlockQ3_K b;
        int8_t L[KB_QK_K];
        float scales[KB_QK_K / 16];
        float max_scale = 0, amax = 0;
        for (int j = 0; j < KB_QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(b.scales, 0, sizeof b.scales);
        if (max_scale != 0.0f) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < KB_QK_K / 16; j++) {
                /* ggml keeps the rounded value in an int8_t before clamping */
                int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                q3_put_scale(b.scales, j, imax(-32, imin(31, l)) + 32);
            }
            b.d = kb_float_to_half(1 / iscale);
        } else {
            b.d = kb_float_to_half(0.f);
        }
        for (int j = 0; j < KB_QK_K / 16; j++) {
            const float d = kb_half_to_float(b.d) * q3_get_scale(b.scales, j);
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, nearest_int(x[16 * j + ii] / d))) + 4);
        }
        /* the high bit of element j goes to bit j / 32 of hmask[j % 32] */
        memset(b.hmask, 0, sizeof b.hmask);
        for (int j = 0; j < KB_QK_K; j++) {
            if (L[j] > 3) {
                b.hmask[j % (KB_QK_K / 8)] |= (uint8_t)(1 << (j / (KB_QK_K / 8)));
                L[j] -= 4;
            }
        }
        pack_2bit((const uint8_t *)L, b.qs);
        put_block(y, i, &b, sizeof b);
    }
}

/* --- Q4_K and Q5_K --- */

/* The sub-block fit both formats share: for each 32-element sub-block,
** weights av_x + |x| (av_x the sub-block's RMS), make_qkx2_quants with
** nmax levels; then 6-bit scales and mins against d = max_scale / 63 and
** dmin = max_min / 63, and the elements re-quantized to 0 .. nmax with the
** stored scales. Fills scales[12], *d, *dmin and L[256]. */
static void fit_k_superblock(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t scales_out[12],
                             kb_half *d_out, kb_half *dmin_out, uint8_t L[KB_QK_K])
{
    float weights[KB_QK_K], mins[KB_QK_K / 32], scales[KB_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < KB_QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[32 * j + l] = av_x + fabsf(x[32 * j + l]);
    }
    for (int j = 0; j < KB_QK_K / 32; j += 4)
        make_qkx2_quants_x4(32, nmax, x + 32 * j, weights + 32 * j, L + 32 * j, scales + j, mins + j, rmin, rdelta, nstep, false);
    for (int j = 0; j < KB_QK_K / 32; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < KB_QK_K / 32; j++) {
        /* ggml stores the rounded values in uint8_t before clamping */
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = (uint8_t)imin(63, ls);
        lm = (uint8_t)imin(63, lm);
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = kb_float_to_half(max_scale / 63.f);
    *dmin_out = kb_float_to_half(max_min / 63.f);
    for (int j = 0; j < KB_QK_K / 32; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales_out, &sc, &m);
        const float d = kb_half_to_float(*d_out) * sc;
        if (!d) continue;
        const float dm = kb_half_to_float(*dmin_out) * m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + ii] + dm) / d)));
    }
}

/* quantize_row_q4_K_ref: 8 sub-blocks of 32 with 4-bit quants; per 64
** elements, byte l holds element l (low nibble) and l + 32 (high). */
void kb_quantize_row_q4_K(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK_K; i++, x += KB_QK_K) {
        BlockQ4_K b;
        uint8_t L[KB_QK_K];
        fit_k_superblock(x, 15, -1.f, 0.1f, 20, b.scales, &b.d, &b.dmin, L);
        for (int j = 0; j < KB_QK_K; j += 64)
            for (int l = 0; l < 32; l++) b.qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
        put_block(y, i, &b, sizeof b);
    }
}

/* quantize_row_q5_K_ref: as Q4_K with 5-bit quants; the fifth bit of
** element l of 64-element chunk c sits in qh[l % 32] at bit 2c (l < 32) or
** 2c + 1. */
void kb_quantize_row_q5_K(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK_K; i++, x += KB_QK_K) {
        BlockQ5_K b;
        uint8_t L[KB_QK_K];
        fit_k_superblock(x, 31, -0.5f, 0.1f, 15, b.scales, &b.d, &b.dmin, L);
        memset(b.qh, 0, sizeof b.qh);
        uint8_t m1 = 1, m2 = 2;
        for (int c = 0; c < KB_QK_K; c += 64, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[c + j], l2 = L[c + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    b.qh[j] |= m1;
                }
                if (l2 > 15) {
                    l2 -= 16;
                    b.qh[j] |= m2;
                }
                b.qs[c / 2 + j] = (uint8_t)(l1 | l2 << 4);
            }
        }
        put_block(y, i, &b, sizeof b);
    }
}

/* --- Q6_K --- */

/* Packs 6-bit quants L[0..256) (0..63) into ql/qh: per 128 elements, ql[l]
** holds the low nibbles of l and l + 64, ql[l + 32] those of l + 32 and
** l + 96, qh[l] the high two bits of l, l + 32, l + 64, l + 96. */
static void pack_q6(const int8_t *L, uint8_t *ql, uint8_t *qh)
{
    for (int j = 0; j < KB_QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
            const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
            ql[l] = (uint8_t)(q1 | q3 << 4);
            ql[l + 32] = (uint8_t)(q2 | q4 << 4);
            qh[l] = (uint8_t)((L[j + l] >> 4) | (L[j + l + 32] >> 4) << 2 | (L[j + l + 64] >> 4) << 4 |
                              (L[j + l + 96] >> 4) << 6);
        }
    }
}

/* quantize_row_q6_K_ref: 16 sub-blocks of 16 with 6-bit signed quants and
** 8-bit signed scales against d = max_scale / -128. */
void kb_quantize_row_q6_K(const float *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n / KB_QK_K; i++, x += KB_QK_K) {
        BlockQ6_K b;
        int8_t L[KB_QK_K];
        float scales[KB_QK_K / 16];
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < KB_QK_K / 16; ib += 4) make_qx_quants_x4(16, 32, x + 16 * ib, L + 16 * ib, scales + ib);
        for (int ib = 0; ib < KB_QK_K / 16; ib++) {
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&b, 0, sizeof b);
            put_block(y, i, &b, sizeof b);
            continue;
        }
        const float iscale = -128.f / max_scale;
        b.d = kb_float_to_half(1 / iscale);
        for (int ib = 0; ib < KB_QK_K / 16; ib++) b.scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < KB_QK_K / 16; j++) {
            const float d = kb_half_to_float(b.d) * b.scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + ii] / d))) + 32);
        }
        pack_q6(L, b.ql, b.qh);
        put_block(y, i, &b, sizeof b);
    }
}

/* --- the table --- */

/* Returns the weight writer for type, or NULL. */
KbFromFloat kb_quantize_fn(int type)
{
    switch (type) {
    case KB_TYPE_F32: return kb_scalar_from_float_f32;
    case KB_TYPE_F16: return kb_scalar_from_float_f16;
    case KB_TYPE_BF16: return kb_scalar_from_float_bf16;
    case KB_TYPE_Q4_0: return kb_quantize_row_q4_0;
    case KB_TYPE_Q4_1: return kb_quantize_row_q4_1;
    case KB_TYPE_Q5_0: return kb_quantize_row_q5_0;
    case KB_TYPE_Q5_1: return kb_quantize_row_q5_1;
    case KB_TYPE_Q8_0: return kb_quantize_row_q8_0;
    case KB_TYPE_Q2_K: return kb_quantize_row_q2_K;
    case KB_TYPE_Q3_K: return kb_quantize_row_q3_K;
    case KB_TYPE_Q4_K: return kb_quantize_row_q4_K;
    case KB_TYPE_Q5_K: return kb_quantize_row_q5_K;
    case KB_TYPE_Q6_K: return kb_quantize_row_q6_K;
    default: return NULL;
    }
}

uint64_t kb_row_size(int type, int64_t n)
{
    const KbTypeInfo *ti = kb_type_info(type);
    if (ti == NULL || n < 0) return 0;
    return (uint64_t)(n / ti->block_size) * (uint64_t)ti->type_size;
}

/* Byte offsets of the fp16 scale fields in a block of each type (-1 ends
** the list); the positions follow from the structs in quant.h. */
static const int *half_fields(int type)
{
    static const int q4_0[] = {offsetof(BlockQ4_0, d), -1};
    static const int q4_1[] = {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m), -1};
    static const int q5_0[] = {offsetof(BlockQ5_0, d), -1};
    static const int q5_1[] = {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m), -1};
    static const int q8_0[] = {offsetof(BlockQ8_0, d), -1};
    static const int q2_k[] = {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin), -1};
    static const int q3_k[] = {offsetof(BlockQ3_K, d), -1};
    static const int q4_k[] = {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin), -1};
    static const int q5_k[] = {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin), -1};
    static const int q6_k[] = {offsetof(BlockQ6_K, d), -1};
    switch (type) {
    case KB_TYPE_Q4_0: return q4_0;
    case KB_TYPE_Q4_1: return q4_1;
    case KB_TYPE_Q5_0: return q5_0;
    case KB_TYPE_Q5_1: return q5_1;
    case KB_TYPE_Q8_0: return q8_0;
    case KB_TYPE_Q2_K: return q2_k;
    case KB_TYPE_Q3_K: return q3_k;
    case KB_TYPE_Q4_K: return q4_k;
    case KB_TYPE_Q5_K: return q5_k;
    case KB_TYPE_Q6_K: return q6_k;
    default: return NULL;
    }
}

/* True when every fp16 value that scales the blocks is finite (exponent
** not all ones); for F16 data, every element. F32 and BF16: always true. */
bool kb_quantized_row_ok(int type, const void *data, int64_t n)
{
    static const int f16_field[] = {0, -1};
    const int *f = type == KB_TYPE_F16 ? f16_field : half_fields(type);
    if (f == NULL) return true;
    const KbTypeInfo *ti = kb_type_info(type);
    const uint8_t *p = data;
    for (int64_t i = 0; i < n / ti->block_size; i++, p += ti->type_size) {
        for (int k = 0; f[k] >= 0; k++) {
            kb_half h;
            memcpy(&h, p + f[k], sizeof h);
            if ((h & 0x7c00) == 0x7c00) return false;
        }
    }
    return true;
}
