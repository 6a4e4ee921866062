/*
** test_kernels.c: the numeric kernels (engine/kernels.h).
**
** Expected values come from outside our code:
**   1. to_float of every quantized tensor of the reference models is compared
**      with the same tensor of the model's F32 file (F16 where there is no
**      F32): llama.cpp quantized those files from the same weights, so a
**      correct block layout lands within the format's own quantization error
**      and a wrong one (swapped nibbles, scales, bits) misses by far.
**   2. vec_dot must equal the sum of the products of the dequantized rows.
**   3. from_float (the activation quantizers) must round-trip within half a
**      step and fill Q8_1's s and Q8_K's bsums as the formats define them.
**   4. kb_kernels() picks the best set this CPU runs; KBCHAT_ISA lowers it.
**   5. every SIMD set this CPU runs agrees with the portable one.
**
** Rows come from the shared models; activations are pseudo-random floats from
** a fixed seed. Buffers handed to the kernels are heap copies of exactly the
** row's size, so ASan catches any read or write past the row.
*/
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "engine/engine.h"
#include "engine/kernels.h"
#include "tests/testutil.h"

/* The weight types and the activation types the contract lists. */
static const int weight_types[] = {
    KB_TYPE_F32,  KB_TYPE_F16,  KB_TYPE_BF16, KB_TYPE_Q4_0, KB_TYPE_Q4_1, KB_TYPE_Q5_0, KB_TYPE_Q5_1,
    KB_TYPE_Q8_0, KB_TYPE_Q2_K, KB_TYPE_Q3_K, KB_TYPE_Q4_K, KB_TYPE_Q5_K, KB_TYPE_Q6_K,
};
static const int activation_types[] = {
    KB_TYPE_F32, KB_TYPE_F16, KB_TYPE_BF16, KB_TYPE_Q8_0, KB_TYPE_Q8_1, KB_TYPE_Q8_K,
};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])
#define N_ACTIVATION_TYPES (sizeof activation_types / sizeof activation_types[0])

/* --- helpers: random numbers, files, rows --- */

typedef struct Rng {
    uint64_t s;
} Rng;

/* Returns 31 random bits (a 64-bit LCG, high bits). */
static uint32_t rng_bits(Rng *r)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(r->s >> 33);
}

/* Returns a uniform float in (0, 1). */
static double rng_uniform(Rng *r)
{
    return (rng_bits(r) + 0.5) / 2147483648.0;
}

/* Returns a roughly normal number (Box-Muller). */
static float rng_normal(Rng *r)
{
    return (float)(sqrt(-2.0 * log(rng_uniform(r))) * cos(6.283185307179586 * rng_uniform(r)));
}

/* Fills x with activation-like values: normal, with a scale that changes
** every 32 elements over six orders of magnitude and a rare outlier, so the
** quantizers see small, large and lopsided blocks. */
static void fill_activations(Rng *r, float *x, int64_t n)
{
    float scale = 1.0f;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) scale = (float)pow(10.0, 6.0 * rng_uniform(r) - 3.0);
        x[i] = scale * rng_normal(r);
        if (rng_bits(r) % 97 == 0) x[i] *= 20.0f;
    }
}

/* Returns the malloc'd path of models/<file> in the test data. */
static char *model_path(const char *file)
{
    char rel[300];
    snprintf(rel, sizeof rel, "models/%.256s", file);
    return testutil_data_path(rel);
}

/* Opens models/<file>; fails the test when it cannot. */
static GgufFile *open_model(const char *file)
{
    char *path = model_path(file);
    GgufFile *g = NULL;
    char err[512] = "";
    int rc = gguf_open(path, &g, err, sizeof err);
    free(path);
    if (rc != KB_OK) fail_msg("cannot open %s: %s", file, err);
    return g;
}

static int file_exists(const char *file)
{
    char *path = model_path(file);
    int ok = access(path, R_OK) == 0;
    free(path);
    return ok;
}

/* Bytes of n elements of `type` (n a multiple of the block size). */
static size_t row_bytes(int type, int64_t n)
{
    const KbTypeInfo *ti = kb_type_info(type);
    return (size_t)(n / ti->block_size) * (size_t)ti->type_size;
}

/* Returns a malloc'd copy of `bytes` bytes at p, so ASan guards its ends. */
static void *copy_bytes(const void *p, size_t bytes)
{
    void *c = malloc(bytes ? bytes : 1);
    assert_non_null(c);
    memcpy(c, p, bytes);
    return c;
}

static float *new_floats(int64_t n)
{
    float *f = malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_non_null(f);
    return f;
}

/* Files the weight rows are taken from; together they hold every weight type. */
static const char *const row_files[] = {
    "tiny-llama-F32.gguf",  "tiny-llama-F16.gguf",    "tiny-llama-BF16.gguf",   "tiny-llama-Q4_0.gguf",
    "tiny-llama-Q4_1.gguf", "tiny-llama-Q5_0.gguf",   "tiny-llama-Q5_1.gguf",   "tiny-llama-Q8_0.gguf",
    "tiny-llama-Q2_K.gguf", "tiny-llama-Q3_K_M.gguf", "tiny-llama-Q4_K_M.gguf", "tiny-llama-Q5_K_M.gguf",
    "tiny-llama-Q6_K.gguf",
};

/* A 2-D tensor of one type from one of row_files; the caller closes g. */
typedef struct WeightRows {
    GgufFile *g;
    const GgufTensor *t;
} WeightRows;

/* Finds, in the first of row_files that has one, the 2-D tensor of `type`
** with the longest rows (several K blocks per row test the accumulation
** across blocks). Fails when no file has one. */
static WeightRows find_weight_rows(int type)
{
    WeightRows w = {NULL, NULL};
    for (size_t f = 0; f < sizeof row_files / sizeof row_files[0]; f++) {
        w.g = open_model(row_files[f]);
        for (int64_t i = 0; i < gguf_n_tensors(w.g); i++) {
            const GgufTensor *t = gguf_tensor(w.g, i);
            if (t->n_dims == 2 && t->type == type && (w.t == NULL || t->ne[0] > w.t->ne[0])) w.t = t;
        }
        if (w.t != NULL) return w;
        gguf_close(w.g);
    }
    fail_msg("no 2-D %s tensor in the reference models", kb_type_name(type));
    return w;
}

/* Returns row r of tensor t (in the mapping). */
static const void *tensor_row(const GgufTensor *t, int64_t r)
{
    return (const uint8_t *)t->data + (size_t)r * row_bytes(t->type, t->ne[0]);
}

/* Row lengths to test for a row of `ne0` elements of a type with blocks of
** `bs`: the whole row, one block, three blocks (odd block counts catch SIMD
** loops that assume pairs) and, for the float types, lengths that are not a
** multiple of any vector width. Returns how many it wrote (at most 6). */
static int test_lengths(int64_t ne0, int bs, int64_t len[6])
{
    int k = 0;
    len[k++] = ne0;
    if (bs < ne0) len[k++] = bs;
    if (3 * bs < ne0) len[k++] = 3 * bs;
    if (bs == 1) {
        static const int64_t odd[] = {7, 37, 133};
        for (int i = 0; i < 3; i++)
            if (odd[i] < ne0) len[k++] = odd[i];
    }
    return k;
}

/* --- 1. to_float against the unquantized models --- */

/* Largest relative RMS error (per tensor, against the unquantized file) a
** correct layout may show for each type: the worst tensor measured over all
** the test models, with margin, yet at least 3x (Q2_K: 2x) below what the
** nearest wrong layout gives. Measured (KBCHAT_TEST_VERBOSE=1 prints it):
**   type   worst measured   nearest mistake (what was broken)        bound
**   F16    0.00021          (byte-level mistakes give > 1)           0.001
**   BF16   0.00168                                                   0.005
**   Q8_0   0.0054           0.240 (scale of the neighbouring block)   0.01
**   Q6_K   0.0179           0.678 (qh bits of element l from >>2)     0.03
**   Q5_0   0.0429           1.405 (nibble halves swapped)             0.06
**   Q5_1   0.0382           1.406 (nibble halves swapped)             0.06
**   Q5_K   0.0364           0.313 (min high bits from s[j-4])         0.06
**   Q4_0   0.0864           1.316 (scale of the neighbouring block)   0.12
**   Q4_1   0.0789           1.408 (nibble halves swapped)             0.12
**   Q4_K   0.0719           0.325 (min high bits from s[j-4])         0.10
**   Q3_K   0.1519           0.880 (2-bit fields walked interleaved)   0.25
**   Q2_K   0.2978           0.722 (scale of the neighbouring 16)      0.36 */
static double layout_bound(int type)
{
    switch (type) {
    case KB_TYPE_F16: return 0.001;
    case KB_TYPE_BF16: return 0.005;
    case KB_TYPE_Q8_0: return 0.01;
    case KB_TYPE_Q6_K: return 0.03;
    case KB_TYPE_Q5_0: case KB_TYPE_Q5_1: case KB_TYPE_Q5_K: return 0.06;
    case KB_TYPE_Q4_0: case KB_TYPE_Q4_1: return 0.12;
    case KB_TYPE_Q4_K: return 0.10;
    case KB_TYPE_Q3_K: return 0.25;
    case KB_TYPE_Q2_K: return 0.36;
    default: return 0.0;
    }
}

/* Converts a reference tensor (F32 or F16) to floats without our kernels. */
static void reference_floats(const GgufTensor *t, float *out)
{
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < t->n_elements; i++) {
        if (t->type == KB_TYPE_F32) {
            memcpy(&out[i], p + 4 * i, 4);
        } else {
            kb_half h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = kb_half_to_float(h);
        }
    }
}

/* Error statistics of one type over all files. */
typedef struct TypeError {
    int tensors;
    double worst, sum_err2, sum_ref2;
} TypeError;

/* Compares every 2-D non-F32 tensor of `file` with the same tensor of `ref`,
** checking each against its type's bound and adding to stats[type]. */
static void check_model_against_reference(const char *file, const char *ref, TypeError stats[KB_TYPE_COUNT])
{
    GgufFile *gq = open_model(file), *gr = open_model(ref);
    for (int64_t i = 0; i < gguf_n_tensors(gq); i++) {
        const GgufTensor *tq = gguf_tensor(gq, i);
        if (tq->n_dims != 2 || tq->type == KB_TYPE_F32) continue;
        const GgufTensor *tr = gguf_find_tensor(gr, tq->name);
        assert_non_null(tr);
        assert_true(tr->type == KB_TYPE_F32 || tr->type == KB_TYPE_F16);
        assert_int_equal(tr->n_elements, tq->n_elements);
        assert_int_equal(tr->ne[0], tq->ne[0]);
        KbToFloat to_float = kb_kernels_scalar.type[tq->type].to_float;
        if (to_float == NULL) fail_msg("%s: %s has type %s, which has no to_float", file, tq->name, kb_type_name(tq->type));
        const int64_t n = (int64_t)tq->n_elements;
        float *a = new_floats(n), *b = new_floats(n);
        to_float(tq->data, a, n);
        reference_floats(tr, b);
        double e2 = 0.0, r2 = 0.0;
        for (int64_t j = 0; j < n; j++) {
            const double d = (double)a[j] - b[j];
            e2 += d * d;
            r2 += (double)b[j] * b[j];
        }
        free(a);
        free(b);
        const double rel = sqrt(e2 / r2);
        TypeError *s = &stats[tq->type];
        s->tensors++;
        s->sum_err2 += e2;
        s->sum_ref2 += r2;
        if (rel > s->worst) s->worst = rel;
        if (!(rel < layout_bound(tq->type)))
            fail_msg("%s: %s (%s) differs from %s by relative RMS %.5f, bound %.3f", file, tq->name,
                     kb_type_name(tq->type), ref, rel, layout_bound(tq->type));
    }
    gguf_close(gq);
    gguf_close(gr);
}

/* Every quantized (and F16/BF16) model file of the test data against its F32
** file, or its F16 file when there is no F32 (tiny-llama-tied, tiny-bert).
** Every weight type except F32 must have been seen. Set KBCHAT_TEST_VERBOSE
** to print the per-type figures. */
static void test_to_float_matches_unquantized_models(void **state)
{
    (void)state;
    TypeError stats[KB_TYPE_COUNT];
    memset(stats, 0, sizeof stats);
    char *dir_path = testutil_data_path("models");
    DIR *dir = opendir(dir_path);
    assert_non_null(dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(dir)) != NULL) {
        const char *name = e->d_name, *dash = strrchr(name, '-');
        const size_t len = strlen(name);
        if (dash == NULL || len < 5 || strcmp(name + len - 5, ".gguf") != 0) continue;
        if (strcmp(dash, "-F32.gguf") == 0) continue;
        char f32[256], f16[256];
        snprintf(f32, sizeof f32, "%.*s-F32.gguf", (int)(dash - name), name);
        snprintf(f16, sizeof f16, "%.*s-F16.gguf", (int)(dash - name), name);
        const char *ref = file_exists(f32) ? f32 : strcmp(dash, "-F16.gguf") != 0 && file_exists(f16) ? f16 : NULL;
        if (ref == NULL) continue;
        check_model_against_reference(name, ref, stats);
        files++;
    }
    closedir(dir);
    free(dir_path);
    assert_true(files >= 40);
    for (size_t i = 0; i < N_WEIGHT_TYPES; i++) {
        const int t = weight_types[i];
        if (t == KB_TYPE_F32) continue;
        if (stats[t].tensors == 0) fail_msg("no %s tensor was checked", kb_type_name(t));
        if (getenv("KBCHAT_TEST_VERBOSE"))
            print_message("%-5s %4d tensors  worst %.5f  pooled %.5f  bound %.3f\n", kb_type_name(t), stats[t].tensors,
                          stats[t].worst, sqrt(stats[t].sum_err2 / stats[t].sum_ref2), layout_bound(t));
    }
}

/* --- 2. vec_dot against the products of the dequantized rows --- */

/* Computes, in double, the dot product of weight row x (type `type`, n
** elements) with activation row yq (its vec_dot_type) from their
** dequantized values; returns the sum of |products| for tolerances.
** With Q8_1 activations the exact answer differs from the dequantized
** product by m * (s - d sum(q)) per block, because the weight's minimum m
** is multiplied by the stored half-precision s; that is added back. */
static double reference_dot(int type, const void *x, const void *yq, int64_t n, double *dot /* OUT */)
{
    const KbTypeKernels *kx = &kb_kernels_scalar.type[type];
    const int yt = kx->vec_dot_type;
    float *xf = new_floats(n), *yf = new_floats(n);
    kx->to_float(x, xf, n);
    kb_kernels_scalar.type[yt].to_float(yq, yf, n);
    double sum = 0.0, sum_abs = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += (double)xf[i] * yf[i];
        sum_abs += fabs((double)xf[i] * yf[i]);
    }
    if (yt == KB_TYPE_Q8_1) {
        for (int64_t b = 0; b < n / KB_QK; b++) {
            BlockQ8_1 yb;
            kb_half m; /* Q4_1 and Q5_1 blocks both start with d, m */
            memcpy(&yb, (const uint8_t *)yq + (size_t)b * sizeof yb, sizeof yb);
            memcpy(&m, (const uint8_t *)x + (size_t)b * kb_type_info(type)->type_size + sizeof(kb_half), sizeof m);
            int q = 0;
            for (int j = 0; j < KB_QK; j++) q += yb.qs[j];
            const double fm = kb_half_to_float(m);
            sum += fm * (kb_half_to_float(yb.s) - (double)kb_half_to_float(yb.d) * q);
            sum_abs += fabs(fm * kb_half_to_float(yb.s));
        }
    }
    free(xf);
    free(yf);
    *dot = sum;
    return sum_abs;
}

/* Quantizes n random activations into a malloc'd row of `type`. */
static void *random_activation_row(const KbKernels *k, int type, Rng *r, int64_t n)
{
    float *xf = new_floats(n);
    fill_activations(r, xf, n);
    void *q = malloc(row_bytes(type, n));
    assert_non_null(q);
    k->type[type].from_float(xf, q, n);
    free(xf);
    return q;
}

/* For four rows of every weight type and several row lengths: vec_dot with
** fresh random activations equals the dequantized product to 1e-5 of the
** sum of |products| (float rounding of the block sums is far below that). */
static void test_vec_dot_matches_dequantized_product(void **state)
{
    (void)state;
    Rng r = {20250214};
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const int type = weight_types[ti];
        const KbTypeKernels *kx = &kb_kernels_scalar.type[type];
        WeightRows w = find_weight_rows(type);
        int64_t len[6];
        const int nlen = test_lengths(w.t->ne[0], kb_type_info(type)->block_size, len);
        for (int row = 0; row < 4; row++) {
            const int64_t ri = rng_bits(&r) % w.t->ne[1];
            for (int li = 0; li < nlen; li++) {
                const int64_t n = len[li];
                void *x = copy_bytes(tensor_row(w.t, ri), row_bytes(type, n));
                void *yq = random_activation_row(&kb_kernels_scalar, kx->vec_dot_type, &r, n);
                double want;
                const double tol = 1e-5 * reference_dot(type, x, yq, n, &want);
                float got = NAN;
                kx->vec_dot(n, &got, x, yq);
                if (!(fabs(got - want) <= tol))
                    fail_msg("%s row %lld n %lld: vec_dot %.9g, dequantized product %.9g (tolerance %.3g)",
                             kb_type_name(type), (long long)ri, (long long)n, got, want, tol);
                free(x);
                free(yq);
            }
        }
        gguf_close(w.g);
    }
}

/* to_float and vec_dot read their rows with memcpy, so a row may start at
** any byte: results at an odd address equal those at an aligned one. */
static void test_scalar_kernels_accept_unaligned_rows(void **state)
{
    (void)state;
    Rng r = {7};
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const int type = weight_types[ti];
        const KbTypeKernels *kx = &kb_kernels_scalar.type[type];
        WeightRows w = find_weight_rows(type);
        const int64_t n = w.t->ne[0];
        const size_t xb = row_bytes(type, n), yb = row_bytes(kx->vec_dot_type, n);
        uint8_t *x = malloc(xb + 1), *y = malloc(yb + 1);
        assert_non_null(x);
        assert_non_null(y);
        void *yq = random_activation_row(&kb_kernels_scalar, kx->vec_dot_type, &r, n);
        memcpy(x + 1, tensor_row(w.t, 0), xb);
        memcpy(y + 1, yq, yb);
        float *f0 = new_floats(n), *f1 = new_floats(n), d0 = 0, d1 = 1;
        kx->to_float(tensor_row(w.t, 0), f0, n);
        kx->to_float(x + 1, f1, n);
        assert_memory_equal(f0, f1, (size_t)n * sizeof(float));
        kx->vec_dot(n, &d0, tensor_row(w.t, 0), yq);
        kx->vec_dot(n, &d1, x + 1, y + 1);
        assert_true(d0 == d1);
        free(x);
        free(y);
        free(yq);
        free(f0);
        free(f1);
        gguf_close(w.g);
    }
}

/* --- 3. the activation quantizers --- */

/* Q8_0 and Q8_1: d = amax/127 stored as half; each quant is x/d rounded, so
** within half a step (plus float rounding of x * (1/d)); the largest element
** maps to +-127; Q8_1's s is sum(q) * d rounded to half. */
static void check_q8_32_block(int type, const float *x, const void *blk)
{
    float amax = 0.0f;
    for (int j = 0; j < KB_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127;
    BlockQ8_1 b1;
    BlockQ8_0 b0;
    const int8_t *qs;
    kb_half dh;
    if (type == KB_TYPE_Q8_1) {
        memcpy(&b1, blk, sizeof b1);
        qs = b1.qs;
        dh = b1.d;
    } else {
        memcpy(&b0, blk, sizeof b0);
        qs = b0.qs;
        dh = b0.d;
    }
    assert_int_equal(dh, kb_float_to_half(d));
    int sum = 0, at_max = 0;
    for (int j = 0; j < KB_QK; j++) {
        if (d > 0) assert_true(fabs(qs[j] - (double)x[j] / d) <= 0.5 + 1e-4);
        else assert_int_equal(qs[j], 0);
        if (abs(qs[j]) == 127) at_max++;
        sum += qs[j];
    }
    if (d > 0) assert_true(at_max >= 1);
    if (type == KB_TYPE_Q8_1) {
        const double s = kb_half_to_float(b1.s), want = (double)sum * d;
        assert_true(fabs(s - want) <= fabs(want) * 0x1p-11 + 0x1p-25);
    }
}

/* Q8_K: d = -max/127 for the signed element of largest magnitude (a float),
** quants within half a step of x/d and in [-127, 127] (-128 never appears),
** bsums[j] = the sum of quants 16j..16j+15. */
static void check_q8_K_block(const float *x, const void *blk)
{
    BlockQ8_K b;
    memcpy(&b, blk, sizeof b);
    float amax = 0.0f;
    for (int j = 0; j < KB_QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
    assert_true(fabs(fabs(b.d) - amax / 127.0) <= 1e-6 * amax / 127.0);
    for (int j = 0; j < KB_QK_K; j++) {
        assert_true(b.qs[j] >= -127);
        if (b.d != 0) assert_true(fabs(b.qs[j] - (double)x[j] / b.d) <= 0.5 + 1e-4);
        else assert_int_equal(b.qs[j], 0);
    }
    for (int j = 0; j < KB_QK_K / 16; j++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) sum += b.qs[16 * j + l];
        assert_int_equal(b.bsums[j], sum);
    }
}

/* Checks every block of a from_float output row of `type` against x. */
static void check_q8_row(int type, const float *x, const void *q, int64_t n)
{
    const int bs = kb_type_info(type)->block_size, ts = kb_type_info(type)->type_size;
    for (int64_t b = 0; b < n / bs; b++) {
        const void *blk = (const uint8_t *)q + (size_t)b * (size_t)ts;
        if (type == KB_TYPE_Q8_K) check_q8_K_block(x + b * bs, blk);
        else check_q8_32_block(type, x + b * bs, blk);
    }
}

static void test_q8_quantizers_round_trip_within_half_a_step(void **state)
{
    (void)state;
    Rng r = {42};
    const int64_t n = 2048;
    float *x = new_floats(n), *back = new_floats(n);
    const int types[] = {KB_TYPE_Q8_0, KB_TYPE_Q8_1, KB_TYPE_Q8_K};
    for (int round = 0; round < 4; round++) {
        fill_activations(&r, x, n);
        for (int i = 0; i < 3; i++) {
            void *q = malloc(row_bytes(types[i], n));
            assert_non_null(q);
            kb_kernels_scalar.type[types[i]].from_float(x, q, n);
            check_q8_row(types[i], x, q, n);
            kb_kernels_scalar.type[types[i]].to_float(q, back, n);
            for (int64_t j = 0; j < n; j++) assert_true(isfinite(back[j]));
            free(q);
        }
    }
    free(x);
    free(back);
}

/* All-zero blocks (one leading, one between others, -0.0 included) give
** d = 0, zero quants, s = 0 and zero bsums; nothing turns into NaN, and a dot
** with them is finite. */
static void test_q8_quantizers_handle_zero_blocks(void **state)
{
    (void)state;
    Rng r = {3};
    const int64_t n = 3 * KB_QK_K;
    float *x = new_floats(n), *back = new_floats(n);
    fill_activations(&r, x, n);
    for (int64_t j = 0; j < KB_QK_K; j++) x[j] = 0.0f;
    for (int64_t j = 2 * KB_QK_K; j < 2 * KB_QK_K + KB_QK; j++) x[j] = (j % 2) ? -0.0f : 0.0f;
    const int types[] = {KB_TYPE_Q8_0, KB_TYPE_Q8_1, KB_TYPE_Q8_K};
    for (int i = 0; i < 3; i++) {
        const int t = types[i];
        uint8_t *q = malloc(row_bytes(t, n));
        assert_non_null(q);
        kb_kernels_scalar.type[t].from_float(x, q, n);
        check_q8_row(t, x, q, n);
        if (t == KB_TYPE_Q8_K) {
            BlockQ8_K b;
            memcpy(&b, q, sizeof b);
            assert_true(b.d == 0.0f);
            for (int j = 0; j < KB_QK_K / 16; j++) assert_int_equal(b.bsums[j], 0);
        } else {
            BlockQ8_1 b; /* d first in both Q8_0 and Q8_1 */
            memcpy(&b, q, sizeof b);
            assert_int_equal(b.d, 0);
            if (t == KB_TYPE_Q8_1) assert_int_equal(b.s, 0);
        }
        kb_kernels_scalar.type[t].to_float(q, back, n);
        for (int64_t j = 0; j < n; j++) {
            assert_true(isfinite(back[j]));
            if (j < KB_QK_K) assert_true(back[j] == 0.0f);
        }
        free(q);
    }
    /* a K-quant dot with an all-zero activation block is exactly 0 */
    WeightRows w = find_weight_rows(KB_TYPE_Q4_K);
    uint8_t *yq = malloc(row_bytes(KB_TYPE_Q8_K, KB_QK_K));
    assert_non_null(yq);
    kb_kernels_scalar.type[KB_TYPE_Q8_K].from_float(x, yq, KB_QK_K);
    float s = NAN;
    kb_kernels_scalar.type[KB_TYPE_Q4_K].vec_dot(KB_QK_K, &s, tensor_row(w.t, 0), yq);
    assert_true(s == 0.0f);
    free(yq);
    gguf_close(w.g);
    free(x);
    free(back);
}

/* The reference quantizers' rounding, as ggml defines it: quantize_row_q8_0_ref
** and _q8_1_ref use roundf (ties away from zero), quantize_row_q8_K_ref uses
** nearest_int (ties to even). A block with amax = 127 has d = 1, so the
** inputs land exactly on the ties. */
static void test_q8_quantizers_round_ties_like_ggml_refs(void **state)
{
    (void)state;
    float x[KB_QK_K];
    for (int j = 0; j < KB_QK_K; j++) x[j] = 0.0f;
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.5f;
    x[4] = 3.5f;
    BlockQ8_0 b0;
    kb_kernels_scalar.type[KB_TYPE_Q8_0].from_float(x, &b0, KB_QK);
    assert_int_equal(b0.qs[0], 127);
    assert_int_equal(b0.qs[1], 3);
    assert_int_equal(b0.qs[2], -3);
    assert_int_equal(b0.qs[3], 1);
    assert_int_equal(b0.qs[4], 4);
    BlockQ8_1 b1;
    kb_kernels_scalar.type[KB_TYPE_Q8_1].from_float(x, &b1, KB_QK);
    assert_int_equal(b1.qs[1], 3);
    assert_int_equal(b1.qs[2], -3);
    assert_true(kb_half_to_float(b1.s) == 127 + 3 - 3 + 1 + 4);
    /* Q8_K maps the signed maximum to -127: use -127 so iscale is exactly 1 */
    x[0] = -127.0f;
    BlockQ8_K bk;
    kb_kernels_scalar.type[KB_TYPE_Q8_K].from_float(x, &bk, KB_QK_K);
    assert_true(bk.d == 1.0f);
    assert_int_equal(bk.qs[0], -127);
    assert_int_equal(bk.qs[1], 2);
    assert_int_equal(bk.qs[2], -2);
    assert_int_equal(bk.qs[3], 0);
    assert_int_equal(bk.qs[4], 4);
    assert_int_equal(bk.bsums[0], -127 + 2 - 2 + 0 + 4);
}

/* F32 is copied; F16 and BF16 convert each element with quant.h's
** round-to-nearest-even converters, and to_float inverts them exactly. */
static void test_float_types_convert_each_element(void **state)
{
    (void)state;
    Rng r = {11};
    const int64_t n = 301;
    float *x = new_floats(n), *back = new_floats(n);
    uint16_t *h = malloc((size_t)n * 2);
    assert_non_null(h);
    fill_activations(&r, x, n);
    kb_kernels_scalar.type[KB_TYPE_F32].from_float(x, back, n);
    assert_memory_equal(x, back, (size_t)n * sizeof(float));
    kb_kernels_scalar.type[KB_TYPE_F16].from_float(x, h, n);
    kb_kernels_scalar.type[KB_TYPE_F16].to_float(h, back, n);
    for (int64_t i = 0; i < n; i++) {
        assert_int_equal(h[i], kb_float_to_half(x[i]));
        assert_true(back[i] == kb_half_to_float(h[i]));
    }
    kb_kernels_scalar.type[KB_TYPE_BF16].from_float(x, h, n);
    kb_kernels_scalar.type[KB_TYPE_BF16].to_float(h, back, n);
    for (int64_t i = 0; i < n; i++) {
        assert_int_equal(h[i], kb_float_to_bf16(x[i]));
        assert_true(back[i] == kb_bf16_to_float(h[i]));
    }
    free(x);
    free(back);
    free(h);
}

/* --- 4. the table and the choice of instruction set --- */

/* vec_dot_type as kernels.h states it; every weight type has all three
** functions it needs, in every table this CPU can run. */
static void test_tables_are_complete_and_pair_types_as_llama_cpp(void **state)
{
    (void)state;
    static const struct { int type, vdt; } pairs[] = {
        {KB_TYPE_F32, KB_TYPE_F32},   {KB_TYPE_F16, KB_TYPE_F16},   {KB_TYPE_BF16, KB_TYPE_BF16},
        {KB_TYPE_Q4_0, KB_TYPE_Q8_0}, {KB_TYPE_Q4_1, KB_TYPE_Q8_1}, {KB_TYPE_Q5_0, KB_TYPE_Q8_0},
        {KB_TYPE_Q5_1, KB_TYPE_Q8_1}, {KB_TYPE_Q8_0, KB_TYPE_Q8_0}, {KB_TYPE_Q2_K, KB_TYPE_Q8_K},
        {KB_TYPE_Q3_K, KB_TYPE_Q8_K}, {KB_TYPE_Q4_K, KB_TYPE_Q8_K}, {KB_TYPE_Q5_K, KB_TYPE_Q8_K},
        {KB_TYPE_Q6_K, KB_TYPE_Q8_K},
    };
    for (int isa = 0; isa < KB_ISA_COUNT; isa++) {
        const KbKernels *k = kb_kernels_for((KbIsa)isa);
        if (k == NULL) continue;
        assert_int_equal(k->isa, isa);
        assert_non_null(k->name);
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            const KbTypeKernels *tk = &k->type[pairs[i].type];
            assert_non_null(tk->to_float);
            assert_non_null(tk->vec_dot);
            assert_int_equal(tk->vec_dot_type, pairs[i].vdt);
            assert_non_null(k->type[tk->vec_dot_type].from_float);
            assert_non_null(k->type[tk->vec_dot_type].to_float);
        }
        for (size_t i = 0; i < N_ACTIVATION_TYPES; i++) assert_non_null(k->type[activation_types[i]].from_float);
        assert_null(k->type[KB_TYPE_IQ2_XXS].to_float);
        assert_null(k->type[KB_TYPE_IQ2_XXS].vec_dot);
    }
}

/* Returns the best set kb_kernels_for offers at or below `ceiling`. */
static KbIsa best_available_isa(KbIsa ceiling)
{
    KbIsa best = KB_ISA_SCALAR;
    for (int isa = 0; isa <= (int)ceiling && isa < KB_ISA_COUNT; isa++)
        if (kb_kernels_for((KbIsa)isa) != NULL) best = (KbIsa)isa;
    return best;
}

static void test_kernels_for_offers_scalar_and_rejects_bad_ids(void **state)
{
    (void)state;
    assert_ptr_equal(kb_kernels_for(KB_ISA_SCALAR), &kb_kernels_scalar);
    assert_string_equal(kb_kernels_scalar.name, "scalar");
    assert_null(kb_kernels_for(KB_ISA_COUNT));
    assert_null(kb_kernels_for((KbIsa)-1));
    /* AVX-512 and AVX-VNNI each imply AVX2 (but not each other) */
    if (kb_kernels_for(KB_ISA_AVX512) != NULL) assert_non_null(kb_kernels_for(KB_ISA_AVX2));
    if (kb_kernels_for(KB_ISA_AVXVNNI) != NULL) assert_non_null(kb_kernels_for(KB_ISA_AVX2));
#if defined(__x86_64__)
    unsigned a, b, c, d; /* AVX-VNNI: CPUID leaf 7 subleaf 1, EAX bit 4 */
    if (kb_kernels_for(KB_ISA_AVX2) != NULL && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & 16))
        assert_ptr_equal(kb_kernels_for(KB_ISA_AVXVNNI), &kb_kernels_avxvnni);
#endif
}

/* Runs this test program as `--print-isa` with KBCHAT_ISA set to `value`
** (NULL: unset) and returns the isa its kb_kernels() chose. */
static int child_isa(const char *value)
{
    char self[4096], env[64];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = '\0';
    snprintf(env, sizeof env, "KBCHAT_ISA=%s", value ? value : "");
    const char *const argv[] = {self, "--print-isa", NULL};
    const char *const envv[] = {env, NULL};
    char *out = NULL, *err = NULL;
    int status = -1, isa = -1;
    assert_int_equal(testutil_run(argv, envv, NULL, 30, &out, &err, &status), 0);
    if (status != 0) fail_msg("child exited %d: %s", status, err ? err : "");
    assert_int_equal(sscanf(out, "%d", &isa), 1);
    free(out);
    free(err);
    return isa;
}

/* kb_kernels() caches its choice, so each setting runs in a child process. */
static void test_kbchat_isa_lowers_the_choice_but_never_raises_it(void **state)
{
    (void)state;
    const int best = best_available_isa(KB_ISA_AVX512);
    if (getenv("KBCHAT_ISA") == NULL) assert_int_equal(kb_kernels()->isa, best);
    assert_int_equal(child_isa(NULL), best);
    assert_int_equal(child_isa("scalar"), KB_ISA_SCALAR);
    assert_int_equal(child_isa("avx2"), best_available_isa(KB_ISA_AVX2));
    assert_int_equal(child_isa("avxvnni"), best_available_isa(KB_ISA_AVXVNNI));
    assert_int_equal(child_isa("avx512"), best);
    assert_int_equal(child_isa("neon"), best);
}

/* --- 5. every SIMD set against the portable one --- */

/* to_float identical, vec_dot within 1e-4 of the sum of |products| (only the
** float summation order may differ), for rows of every weight type. */
static void compare_weight_kernels(const KbKernels *simd, Rng *r)
{
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const int type = weight_types[ti];
        const KbTypeKernels *ks = &kb_kernels_scalar.type[type], *kv = &simd->type[type];
        WeightRows w = find_weight_rows(type);
        int64_t len[6];
        const int nlen = test_lengths(w.t->ne[0], kb_type_info(type)->block_size, len);
        for (int row = 0; row < 3; row++) {
            const int64_t ri = rng_bits(r) % w.t->ne[1];
            for (int li = 0; li < nlen; li++) {
                const int64_t n = len[li];
                void *x = copy_bytes(tensor_row(w.t, ri), row_bytes(type, n));
                float *fs = new_floats(n), *fv = new_floats(n);
                ks->to_float(x, fs, n);
                kv->to_float(x, fv, n);
                for (int64_t i = 0; i < n; i++)
                    if (!(fs[i] == fv[i]))
                        fail_msg("%s %s to_float n %lld: element %lld is %.9g, scalar %.9g", simd->name,
                                 kb_type_name(type), (long long)n, (long long)i, fv[i], fs[i]);
                void *yq = random_activation_row(&kb_kernels_scalar, ks->vec_dot_type, r, n);
                double want;
                const double tol = 1e-4 * reference_dot(type, x, yq, n, &want);
                float ds = NAN, dv = NAN;
                ks->vec_dot(n, &ds, x, yq);
                kv->vec_dot(n, &dv, x, yq);
                if (!(fabs((double)dv - ds) <= tol))
                    fail_msg("%s %s vec_dot n %lld: %.9g, scalar %.9g (tolerance %.3g)", simd->name,
                             kb_type_name(type), (long long)n, dv, ds, tol);
                free(x);
                free(yq);
                free(fs);
                free(fv);
            }
        }
        gguf_close(w.g);
    }
}

/* Compares one activation row quantized by the scalar and a SIMD set.
** F32/F16/BF16 must be identical. For the Q8 types ggml's own SIMD
** quantizers may differ from the reference in ties: its AVX2 Q8_0/Q8_1 code
** multiplies by 127/amax instead of 1/d and rounds half to even where the
** reference uses roundf; so d must be identical and each quant may be off by
** one, in at most 1/16 of the quants; s and bsums must match the set's own
** quants. (ggml quantizes Q8_K with the reference code on x86.) */
static void compare_activation_row(const KbKernels *simd, int type, const float *x, int64_t n)
{
    const size_t bytes = row_bytes(type, n);
    uint8_t *qs = malloc(bytes), *qv = malloc(bytes);
    assert_non_null(qs);
    assert_non_null(qv);
    kb_kernels_scalar.type[type].from_float(x, qs, n);
    simd->type[type].from_float(x, qv, n);
    if (type == KB_TYPE_F32 || type == KB_TYPE_F16 || type == KB_TYPE_BF16) {
        if (memcmp(qs, qv, bytes) != 0) fail_msg("%s %s from_float differs from scalar", simd->name, kb_type_name(type));
    } else {
        const int bs = kb_type_info(type)->block_size, ts = kb_type_info(type)->type_size;
        const size_t qoff = type == KB_TYPE_Q8_K ? offsetof(BlockQ8_K, qs)
                            : type == KB_TYPE_Q8_1 ? offsetof(BlockQ8_1, qs) : offsetof(BlockQ8_0, qs);
        const size_t doff = type == KB_TYPE_Q8_K ? sizeof(float) : sizeof(kb_half);
        int64_t off_by_one = 0;
        for (int64_t b = 0; b < n / bs; b++) {
            const uint8_t *bsv = qs + b * ts, *bvv = qv + b * ts;
            assert_memory_equal(bsv, bvv, doff); /* d */
            for (int j = 0; j < bs; j++) {
                const int d = (int8_t)bsv[qoff + j] - (int8_t)bvv[qoff + j];
                assert_true(abs(d) <= 1);
                off_by_one += d != 0;
            }
        }
        assert_true(off_by_one <= n / 16);
        check_q8_row(type, x, qv, n); /* s, bsums and half-a-step for the SIMD output */
    }
    free(qs);
    free(qv);
}

/* Rows of random activations plus, for the 32-blocks, a block of exact ties. */
static void compare_activation_kernels(const KbKernels *simd, Rng *r)
{
    const int64_t n = 1024;
    float *x = new_floats(n);
    for (int round = 0; round < 3; round++) {
        fill_activations(r, x, n);
        if (round == 2) {
            for (int j = 0; j < KB_QK; j++) x[j] = (float)(j - 16) + 0.5f;
            x[0] = -127.0f;
        }
        for (size_t i = 0; i < N_ACTIVATION_TYPES; i++) compare_activation_row(simd, activation_types[i], x, n);
        for (int64_t m = 1; m < 40; m += 6) /* float types at lengths off the vector width */
            for (size_t i = 0; i < 3; i++) compare_activation_row(simd, activation_types[i], x, m);
    }
    free(x);
}

static void test_simd_kernels_agree_with_scalar(void **state)
{
    (void)state;
    Rng r = {1234};
    for (int isa = KB_ISA_SCALAR + 1; isa < KB_ISA_COUNT; isa++) {
        const KbKernels *k = kb_kernels_for((KbIsa)isa);
        if (k == NULL) {
            print_message("(this CPU cannot run instruction set %d: not compared)\n", isa);
            continue;
        }
        compare_weight_kernels(k, &r);
        compare_activation_kernels(k, &r);
    }
}

int main(int argc, char **argv)
{
    /* Helper mode for test_kbchat_isa_...: report kb_kernels()'s choice. */
    if (argc == 2 && strcmp(argv[1], "--print-isa") == 0) {
        printf("%d %s\n", (int)kb_kernels()->isa, kb_kernels()->name);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_to_float_matches_unquantized_models),
        cmocka_unit_test(test_vec_dot_matches_dequantized_product),
        cmocka_unit_test(test_scalar_kernels_accept_unaligned_rows),
        cmocka_unit_test(test_q8_quantizers_round_trip_within_half_a_step),
        cmocka_unit_test(test_q8_quantizers_handle_zero_blocks),
        cmocka_unit_test(test_q8_quantizers_round_ties_like_ggml_refs),
        cmocka_unit_test(test_float_types_convert_each_element),
        cmocka_unit_test(test_tables_are_complete_and_pair_types_as_llama_cpp),
        cmocka_unit_test(test_kernels_for_offers_scalar_and_rejects_bad_ids),
        cmocka_unit_test(test_kbchat_isa_lowers_the_choice_but_never_raises_it),
        cmocka_unit_test(test_simd_kernels_agree_with_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
