/*
** test_kernels_simd.c: the AVX2 and AVX-512 kernel tables against the
** portable reference (kb_kernels_scalar), for every instruction set this CPU
** runs (kb_kernels_for(isa) != NULL; the others are skipped with a note).
**
** What "the same" means (kernels.h):
**   to_float    bit-identical to the reference;
**   vec_dot     within 1e-4 of sum |x_i y_i| of the reference (float
**               summation order differs; the integer parts are exact);
**   from_float  F16, BF16, Q8_K bit-identical; Q8_0/Q8_1 follow llama.cpp's
**               AVX quantizer (x * 127/amax, ties to even) where the
**               reference computes x * (1/d) and rounds ties away from zero,
**               so a quant may differ by one, only next to a .5 tie.
**
** Weight rows come from the real quantized models under
** ../shared/testdata/models (each tiny-llama-<TYPE>.gguf holds 2-D weights of
** that type; the _K_M files mix Q3_K..Q6_K); activations are pseudo-random
** with a fixed seed, converted once by the reference from_float so both
** tables see the same activation row.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "engine/kernels.h"
#include "tests/testutil.h"

/* Per tensor, how much of it the checks cover: keeps the suite well under a
** second even under ASan while still crossing many blocks and rows. */
#define MAX_ROWS_SINGLE 3   /* rows checked one by one */
#define MAX_ELEMS_LONG 8192 /* consecutive rows checked as one long row */

static const KbIsa simd_isas[] = { KB_ISA_AVX2, KB_ISA_AVXVNNI, KB_ISA_AVX512 };
#define N_SIMD ((int)(sizeof simd_isas / sizeof simd_isas[0]))

/* --- helpers --- */

/* xorshift64*: a fixed, portable sequence (no global state). */
static uint64_t rng_next(uint64_t *st)
{
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    return *st * 2685821657736338717ULL;
}

/* Uniform in [-1, 1). */
static float rng_unit(uint64_t *st)
{
    return (float)((double)(rng_next(st) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Activation-like values: roughly normal, a per-32 magnitude that varies over
** three decades, and an occasional outlier (as real hidden states have). */
static void fill_activations(float *x, int64_t n, uint64_t seed)
{
    uint64_t st = seed * 0x9E3779B97F4A7C15ULL + 1;
    float scale = 1.0f;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) scale = powf(10.0f, 1.5f * rng_unit(&st));
        float v = (rng_unit(&st) + rng_unit(&st) + rng_unit(&st)) * scale;
        if (rng_next(&st) % 97 == 0) v *= 20.0f;
        x[i] = v;
    }
}

static size_t row_bytes(int type, int64_t n)
{
    const KbTypeInfo *ti = kb_type_info(type);
    return (size_t)(n / ti->block_size) * (size_t)ti->type_size;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* The SIMD tables this CPU runs; *n gets their count. */
static int available_tables(const KbKernels *out[N_SIMD])
{
    int n = 0;
    for (int i = 0; i < N_SIMD; i++) {
        const KbKernels *k = kb_kernels_for(simd_isas[i]);
        if (k) out[n++] = k;
        else print_message("  (ISA %d not available on this CPU: skipped)\n", (int)simd_isas[i]);
    }
    return n;
}

/* Checks k's to_float of `type` against the reference, bit for bit. */
static void check_to_float(const KbKernels *k, int type, const void *x, int64_t n)
{
    const KbKernels *ref = &kb_kernels_scalar;
    float *a = xmalloc((size_t)n * sizeof(float)), *b = xmalloc((size_t)n * sizeof(float));
    ref->type[type].to_float(x, a, n);
    memset(b, 0xA5, (size_t)n * sizeof(float));
    k->type[type].to_float(x, b, n);
    if (memcmp(a, b, (size_t)n * sizeof(float)) != 0) {
        for (int64_t i = 0; i < n; i++) {
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
                print_error("%s to_float %s: element %lld of %lld: ref %.9g, got %.9g\n", k->name,
                            kb_type_name(type), (long long)i, (long long)n, a[i], b[i]);
                break;
            }
        }
        fail();
    }
    free(a);
    free(b);
}

/* Checks k's vec_dot of weight row x (type, n elements) with activations act
** (converted by the reference) against the reference dot product; the
** tolerance is 1e-4 of sum |x_i y_i| over the dequantized rows. Returns the
** reference value. */
static float check_vec_dot(const KbKernels *k, int type, const void *x, int64_t n, const float *act)
{
    const KbKernels *ref = &kb_kernels_scalar;
    const int vt = ref->type[type].vec_dot_type;
    assert_int_equal(k->type[type].vec_dot_type, vt);
    void *yq = xmalloc(row_bytes(vt, n));
    ref->type[vt].from_float(act, yq, n);
    float s_ref = NAN, s_simd = NAN;
    ref->type[type].vec_dot(n, &s_ref, x, yq);
    k->type[type].vec_dot(n, &s_simd, x, yq);

    float *xf = xmalloc((size_t)n * sizeof(float)), *yf = xmalloc((size_t)n * sizeof(float));
    ref->type[type].to_float(x, xf, n);
    ref->type[vt].to_float(yq, yf, n);
    double mag = 0.0;
    for (int64_t i = 0; i < n; i++) mag += fabs((double)xf[i] * (double)yf[i]);
    const double err = fabs((double)s_ref - (double)s_simd);
    if (!(err <= 1e-4 * mag) && !(s_ref == s_simd)) {
        print_error("%s vec_dot %s n=%lld: ref %.9g, got %.9g (|diff| %.3g, sum|xy| %.3g)\n", k->name,
                    kb_type_name(type), (long long)n, s_ref, s_simd, err, mag);
        fail();
    }
    free(xf);
    free(yf);
    free(yq);
    return s_ref;
}

/* Runs the to_float and vec_dot checks on a weight tensor: a few rows one
** by one, then several consecutive rows as one long row. */
static void check_tensor(const KbKernels *k, const GgufTensor *t, uint64_t seed)
{
    const int64_t ne0 = t->ne[0];
    const int64_t rows = (int64_t)(t->n_elements / (uint64_t)ne0);
    const size_t rb = row_bytes(t->type, ne0);
    int64_t long_rows = MAX_ELEMS_LONG / ne0;
    if (long_rows < 1) long_rows = 1;
    if (long_rows > rows) long_rows = rows;
    const int64_t nmax = long_rows * ne0 > ne0 ? long_rows * ne0 : ne0;
    float *act = xmalloc((size_t)nmax * sizeof(float));
    fill_activations(act, nmax, seed);
    const uint8_t *data = t->data;
    for (int64_t r = 0; r < rows && r < MAX_ROWS_SINGLE; r++) {
        check_to_float(k, t->type, data + (size_t)r * rb, ne0);
        check_vec_dot(k, t->type, data + (size_t)r * rb, ne0, act);
    }
    check_to_float(k, t->type, data, long_rows * ne0);
    check_vec_dot(k, t->type, data, long_rows * ne0, act);
    /* the smallest legal row: one block */
    const int bs = kb_type_info(t->type)->block_size;
    const int64_t n1 = bs == 1 ? 1 : bs;
    check_to_float(k, t->type, data, n1);
    check_vec_dot(k, t->type, data, n1, act);
    free(act);
}

/* Opens testdata model `name`, runs check_tensor on every 2-D weight of a
** supported type, and returns a bit mask of the types it saw. */
static uint64_t check_model(const KbKernels *k, const char *name)
{
    char rel[256], err[512];
    snprintf(rel, sizeof rel, "models/%s", name);
    char *path = testutil_data_path(rel);
    GgufFile *g = NULL;
    const int rc = gguf_open(path, &g, err, sizeof err);
    if (rc != KB_OK) print_error("%s\n", err);
    assert_int_equal(rc, KB_OK);
    uint64_t seen = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const GgufTensor *t = gguf_tensor(g, i);
        if (t->n_dims != 2 || !kb_type_info(t->type)->supported) continue;
        assert_non_null(k->type[t->type].vec_dot);
        check_tensor(k, t, (uint64_t)i + 1);
        seen |= 1ULL << t->type;
    }
    gguf_close(g);
    free(path);
    return seen;
}

/* --- tests --- */

/* Every table fills the same slots as the reference, with the same
** activation types, and names its instruction set. */
static void test_simd_tables_are_complete(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    const KbKernels *ref = &kb_kernels_scalar;
    for (int t = 0; t < nt; t++) {
        static const char *const names[KB_ISA_COUNT] = {"scalar", "AVX2", "AVX-VNNI", "AVX-512"};
        assert_true(tabs[t]->isa == KB_ISA_AVX2 || tabs[t]->isa == KB_ISA_AVXVNNI || tabs[t]->isa == KB_ISA_AVX512);
        assert_string_equal(tabs[t]->name, names[tabs[t]->isa]);
        for (int ty = 0; ty < KB_TYPE_COUNT; ty++) {
            assert_int_equal(tabs[t]->type[ty].to_float != NULL, ref->type[ty].to_float != NULL);
            assert_int_equal(tabs[t]->type[ty].from_float != NULL, ref->type[ty].from_float != NULL);
            assert_int_equal(tabs[t]->type[ty].vec_dot != NULL, ref->type[ty].vec_dot != NULL);
            assert_int_equal(tabs[t]->type[ty].vec_dot_type, ref->type[ty].vec_dot_type);
        }
    }
}

/* Rows of every weight type from the real model files. */
static void test_simd_kernels_match_reference_on_model_weights(void **state)
{
    (void)state;
    static const char *const models[] = {
        "tiny-llama-F32.gguf",  "tiny-llama-F16.gguf",  "tiny-llama-BF16.gguf",   "tiny-llama-Q8_0.gguf",
        "tiny-llama-Q4_0.gguf", "tiny-llama-Q4_1.gguf", "tiny-llama-Q5_0.gguf",   "tiny-llama-Q5_1.gguf",
        "tiny-llama-Q2_K.gguf", "tiny-llama-Q3_K_M.gguf", "tiny-llama-Q4_K_M.gguf", "tiny-llama-Q5_K_M.gguf",
        "tiny-llama-Q6_K.gguf",
    };
    static const int want[] = { KB_TYPE_F32,  KB_TYPE_F16,  KB_TYPE_BF16, KB_TYPE_Q8_0, KB_TYPE_Q4_0,
                                KB_TYPE_Q4_1, KB_TYPE_Q5_0, KB_TYPE_Q5_1, KB_TYPE_Q2_K, KB_TYPE_Q3_K,
                                KB_TYPE_Q4_K, KB_TYPE_Q5_K, KB_TYPE_Q6_K };
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    for (int t = 0; t < nt; t++) {
        uint64_t seen = 0;
        for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) seen |= check_model(tabs[t], models[m]);
        for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
            if (!(seen & (1ULL << want[w]))) print_error("no %s weights found\n", kb_type_name(want[w]));
            assert_true(seen & (1ULL << want[w]));
        }
    }
}

/* Builds `nb` blocks of `type` with random quant bytes and every fp16 scale
** field set to `scale_bits` (a finite half). Returns a malloc'd row. */
static void *synthetic_row(int type, int64_t n, uint16_t scale_bits, uint64_t seed)
{
    const size_t bytes = row_bytes(type, n);
    uint8_t *row = xmalloc(bytes);
    uint64_t st = seed | 1;
    for (size_t i = 0; i < bytes; i++) row[i] = (uint8_t)rng_next(&st);
    const KbTypeInfo *ti = kb_type_info(type);
    for (int64_t b = 0; b < n / ti->block_size; b++) {
        uint8_t *blk = row + (size_t)b * (size_t)ti->type_size;
        size_t off[2] = { 0, 0 };
        int nf = 0;
        switch (type) {
        case KB_TYPE_Q4_0: case KB_TYPE_Q5_0: case KB_TYPE_Q8_0:
            off[nf++] = 0; break;
        case KB_TYPE_Q4_1: case KB_TYPE_Q5_1:
            off[nf++] = 0; off[nf++] = 2; break;
        case KB_TYPE_Q2_K: off[nf++] = offsetof(BlockQ2_K, d); off[nf++] = offsetof(BlockQ2_K, dmin); break;
        case KB_TYPE_Q3_K: off[nf++] = offsetof(BlockQ3_K, d); break;
        case KB_TYPE_Q4_K: off[nf++] = offsetof(BlockQ4_K, d); off[nf++] = offsetof(BlockQ4_K, dmin); break;
        case KB_TYPE_Q5_K: off[nf++] = offsetof(BlockQ5_K, d); off[nf++] = offsetof(BlockQ5_K, dmin); break;
        case KB_TYPE_Q6_K: off[nf++] = offsetof(BlockQ6_K, d); break;
        default: break;
        }
        for (int f = 0; f < nf; f++) memcpy(blk + off[f], &scale_bits, 2);
        if (type == KB_TYPE_Q8_0) /* file weights never hold -128 (see dot_i8) */
            for (int j = 0; j < 32; j++) if (blk[2 + j] == 0x80) blk[2 + j] = 0x81;
    }
    return row;
}

static const int quant_types[] = { KB_TYPE_Q4_0, KB_TYPE_Q4_1, KB_TYPE_Q5_0, KB_TYPE_Q5_1, KB_TYPE_Q8_0,
                                   KB_TYPE_Q2_K, KB_TYPE_Q3_K, KB_TYPE_Q4_K, KB_TYPE_Q5_K, KB_TYPE_Q6_K };
#define N_QUANT ((int)(sizeof quant_types / sizeof quant_types[0]))

/* Scales at the ends of the half range (+-65504) and activations large
** enough that the Q8_0 activation scale is 65504 too: nothing overflows and
** the kernels still agree. Also n = 1 block and n = many blocks. */
static void test_simd_kernels_handle_extreme_half_scales(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    static const uint16_t scales[] = { 0x7BFF, 0xFBFF, 0x0001 /* smallest subnormal */, 0x3C00 };
    const int64_t n = 256 * 12;
    float *act = xmalloc((size_t)n * sizeof(float));
    for (int t = 0; t < nt; t++) {
        for (int q = 0; q < N_QUANT; q++) {
            for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
                void *row = synthetic_row(quant_types[q], n, scales[s], 77 + (uint64_t)q);
                fill_activations(act, n, 5 + s);
                act[3] = 65504.0f * 127.0f; /* first block's amax: d = 65504 */
                const int bs = kb_type_info(quant_types[q])->block_size;
                check_to_float(tabs[t], quant_types[q], row, n);
                check_vec_dot(tabs[t], quant_types[q], row, n, act);
                check_to_float(tabs[t], quant_types[q], row, bs);
                check_vec_dot(tabs[t], quant_types[q], row, bs, act);
                free(row);
            }
        }
    }
    free(act);
}

/* Every block count from 1 to 19: the SIMD loops take 2, 4 or 8 blocks per
** step and finish the rest one by one. */
static void test_simd_kernels_handle_every_block_count(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    float *act = xmalloc((size_t)256 * 19 * sizeof(float));
    fill_activations(act, 256 * 19, 13);
    for (int t = 0; t < nt; t++) {
        for (int q = 0; q < N_QUANT; q++) {
            const int bs = kb_type_info(quant_types[q])->block_size;
            void *row = synthetic_row(quant_types[q], (int64_t)bs * 19, 0x2E66 /* 0.1 */, 3 + (uint64_t)q);
            for (int64_t k = 1; k <= 19; k++) {
                check_to_float(tabs[t], quant_types[q], row, bs * k);
                check_vec_dot(tabs[t], quant_types[q], row, bs * k, act);
            }
            free(row);
        }
    }
    free(act);
}

/* All-zero weight blocks (d = 0) and all-zero activations give exactly 0. */
static void test_simd_kernels_zero_blocks_give_zero(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    const int64_t n = 512;
    float *zeros = calloc((size_t)n, sizeof(float));
    float *act = xmalloc((size_t)n * sizeof(float));
    fill_activations(act, n, 3);
    assert_non_null(zeros);
    for (int t = 0; t < nt; t++) {
        for (int ty = 0; ty < KB_TYPE_COUNT; ty++) {
            if (!tabs[t]->type[ty].vec_dot) continue;
            const int vt = tabs[t]->type[ty].vec_dot_type;
            void *w = calloc(1, row_bytes(ty, n) + row_bytes(vt, n));
            void *y = xmalloc(row_bytes(vt, n));
            assert_non_null(w);
            float s = NAN;
            tabs[t]->type[vt].from_float(act, y, n); /* zero weights, real activations */
            tabs[t]->type[ty].vec_dot(n, &s, w, y);
            assert_true(s == 0.0f);
            tabs[t]->type[vt].from_float(zeros, y, n); /* zero activations quantize to zero */
            assert_memory_equal(y, (char *)w + row_bytes(ty, n), row_bytes(vt, n));
            memset(w, 0x11, row_bytes(ty, n)); /* nonzero weights (small finite scales) */
            s = NAN;
            tabs[t]->type[ty].vec_dot(n, &s, w, y);
            assert_true(s == 0.0f);
            free(w);
            free(y);
        }
    }
    free(zeros);
    free(act);
}

/* F32/F16/BF16 rows of any length (the vector loops leave tails) and at
** every offset from a 64-byte boundary (the AVX-512 loops align first). */
static void test_simd_float_kernels_handle_every_tail_length(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    static const int types[] = { KB_TYPE_F32, KB_TYPE_F16, KB_TYPE_BF16 };
    static const size_t offsets[] = { 0, 2, 4, 6, 16, 30, 44, 60 };
    const int64_t nmax = 200;
    float *x = xmalloc((size_t)(nmax + 3) * sizeof(float));
    fill_activations(x, nmax + 3, 11);
    uint8_t *buf = xmalloc((size_t)nmax * sizeof(float) + 128);
    for (int t = 0; t < nt; t++) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            const size_t bytes = row_bytes(types[i], nmax);
            for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
                if (offsets[o] % (types[i] == KB_TYPE_F32 ? 4 : 2) != 0) continue;
                uint8_t *w = buf + ((64 - (uintptr_t)buf % 64) % 64) + offsets[o];
                assert_true(w + bytes <= buf + (size_t)nmax * sizeof(float) + 128);
                kb_kernels_scalar.type[types[i]].from_float(x, w, nmax);
                for (int64_t n = 1; n <= nmax; n += (n < 70 ? 1 : 13)) {
                    check_to_float(tabs[t], types[i], w, n);
                    check_vec_dot(tabs[t], types[i], w, n, x + 3);
                }
            }
        }
    }
    free(buf);
    free(x);
}

/* A row that starts at an odd address gives the same results as an aligned
** copy (mmap'd rows carry no alignment guarantee). */
static void test_simd_kernels_accept_unaligned_rows(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    const int64_t n = 1024;
    float *act = xmalloc((size_t)n * sizeof(float));
    float *a = xmalloc((size_t)n * sizeof(float)), *b = xmalloc((size_t)n * sizeof(float));
    fill_activations(act, n, 21);
    for (int t = 0; t < nt; t++) {
        for (int ty = 0; ty < KB_TYPE_COUNT; ty++) {
            if (!tabs[t]->type[ty].vec_dot) continue;
            const int vt = tabs[t]->type[ty].vec_dot_type;
            const size_t wb = row_bytes(ty, n), yb = row_bytes(vt, n);
            uint8_t *w = xmalloc(wb + 1), *y = xmalloc(yb + 1);
            void *src = (ty == KB_TYPE_F32 || ty == KB_TYPE_F16 || ty == KB_TYPE_BF16)
                            ? NULL : synthetic_row(ty, n, 0x2E66 /* 0.1 */, 9);
            if (src) memcpy(w, src, wb);
            else tabs[t]->type[ty].from_float(act, w, n);
            tabs[t]->type[vt].from_float(act, y, n);
            float s0 = NAN, s1 = NAN;
            tabs[t]->type[ty].vec_dot(n, &s0, w, y);
            tabs[t]->type[ty].to_float(w, a, n);
            memmove(w + 1, w, wb);
            memmove(y + 1, y, yb);
            tabs[t]->type[ty].vec_dot(n, &s1, w + 1, y + 1);
            tabs[t]->type[ty].to_float(w + 1, b, n);
            if (ty == KB_TYPE_F32) {
                /* the F32 kernel peels to a 64-byte boundary first, so the
                ** summation order (not the value) depends on the address */
                assert_true(fabsf(s0 - s1) <= 1e-6f * fmaxf(1.0f, fabsf(s0)));
            } else {
                assert_memory_equal(&s0, &s1, sizeof s0);
            }
            assert_memory_equal(a, b, (size_t)n * sizeof(float));
            /* from_float into an odd address as well */
            if (tabs[t]->type[vt].from_float) {
                uint8_t *y2 = xmalloc(yb + 1);
                tabs[t]->type[vt].from_float(act, y2 + 1, n);
                assert_memory_equal(y + 1, y2 + 1, yb);
                free(y2);
            }
            free(src);
            free(w);
            free(y);
        }
    }
    free(act);
    free(a);
    free(b);
}

/* F16, BF16 and Q8_K activation conversions are bit-identical to the
** reference (all three round to nearest even there too). */
static void test_simd_from_float_exact_types_match_reference(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    static const int types[] = { KB_TYPE_F32, KB_TYPE_F16, KB_TYPE_BF16, KB_TYPE_Q8_K };
    const int64_t n = 256 * 40 + 0;
    float *x = xmalloc((size_t)n * sizeof(float));
    fill_activations(x, n, 31);
    /* ties and specials: bf16/f16 halfway cases, a huge value, a block whose
    ** largest magnitude appears twice with both signs (the first one wins) */
    x[0] = 1.0f + 0x1p-8f;   /* bf16 tie, even below */
    x[1] = 1.0f + 0x3p-8f;   /* bf16 tie, even above */
    x[2] = 1.0f + 0x1p-11f;  /* f16 tie */
    x[3] = 70000.0f;         /* f16 overflow to inf */
    x[4] = -3.0e-8f;         /* f16 subnormal */
    for (int j = 0; j < 256; j++) x[256 + j] = (float)((j % 7) - 3) * 0.25f;
    x[256 + 10] = -5.0f;
    x[256 + 200] = 5.0f;
    for (int t = 0; t < nt; t++) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            const size_t bytes = row_bytes(types[i], n);
            uint8_t *a = xmalloc(bytes), *b = xmalloc(bytes);
            kb_kernels_scalar.type[types[i]].from_float(x, a, n);
            tabs[t]->type[types[i]].from_float(x, b, n);
            if (memcmp(a, b, bytes) != 0) {
                size_t j = 0;
                while (a[j] == b[j]) j++;
                print_error("%s from_float %s differs at byte %zu\n", tabs[t]->name, kb_type_name(types[i]), j);
                fail();
            }
            free(a);
            free(b);
        }
    }
    free(x);
}

/* Q8_0/Q8_1: same scale; quants equal except next to a .5 tie, by one. */
static void test_simd_from_float_q8_0_q8_1_differ_only_at_ties(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    const int64_t n = 32 * 2048;
    float *x = xmalloc((size_t)n * sizeof(float));
    fill_activations(x, n, 41);
    for (int t = 0; t < nt; t++) {
        for (int q = 0; q < 2; q++) {
            const int type = q ? KB_TYPE_Q8_1 : KB_TYPE_Q8_0;
            const size_t bsz = q ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
            const size_t qoff = q ? offsetof(BlockQ8_1, qs) : offsetof(BlockQ8_0, qs);
            const size_t bytes = row_bytes(type, n);
            uint8_t *a = xmalloc(bytes), *b = xmalloc(bytes);
            kb_kernels_scalar.type[type].from_float(x, a, n);
            tabs[t]->type[type].from_float(x, b, n);
            int64_t ndiff = 0;
            for (int64_t blk = 0; blk < n / 32; blk++) {
                const uint8_t *ba = a + blk * bsz, *bb = b + blk * bsz;
                assert_memory_equal(ba, bb, 2); /* d */
                float amax = 0.0f;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[blk * 32 + j]));
                int sum = 0;
                for (int j = 0; j < 32; j++) {
                    const int qa = (int8_t)ba[qoff + j], qb = (int8_t)bb[qoff + j];
                    sum += qb;
                    if (qa == qb) continue;
                    ndiff++;
                    const double v = (double)x[blk * 32 + j] * 127.0 / (double)amax;
                    const double frac = fabs(v - trunc(v));
                    if (abs(qa - qb) != 1 || fabs(frac - 0.5) > 1e-4) {
                        print_error("%s %s block %lld elem %d: ref %d simd %d (scaled %.9g)\n", tabs[t]->name,
                                    kb_type_name(type), (long long)blk, j, qa, qb, v);
                        fail();
                    }
                }
                if (q) { /* s = fp16(d * sum of its own quants), d before rounding */
                    uint16_t hs;
                    memcpy(&hs, bb + offsetof(BlockQ8_1, s), 2);
                    assert_int_equal(hs, kb_float_to_half(amax / 127.0f * (float)sum));
                }
            }
            assert_true(ndiff <= n / 1000);
            print_message("  %s %s: %lld of %lld quants differ by one (ties)\n", tabs[t]->name, kb_type_name(type),
                          (long long)ndiff, (long long)n);
            free(a);
            free(b);
        }
    }
    free(x);
}

/* The SIMD Q8_0 quantizer rounds exact ties to even, as llama.cpp's AVX
** code does (_mm256_round_ps, nearest): with amax = 127 the scale is 1 and
** 2.5 -> 2, 3.5 -> 4, -2.5 -> -2, -0.5 -> 0 (the portable one, roundf, gives
** 3, 4, -3, -1). */
static void test_simd_q8_0_quantizer_rounds_ties_to_even(void **state)
{
    (void)state;
    const KbKernels *tabs[N_SIMD];
    const int nt = available_tables(tabs);
    float x[32] = { 127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.5f, -126.5f };
    static const int8_t want[8] = { 127, 2, 4, -2, 0, 0, 2, -126 };
    for (int t = 0; t < nt; t++) {
        uint8_t blk[sizeof(BlockQ8_0)];
        tabs[t]->type[KB_TYPE_Q8_0].from_float(x, blk, 32);
        uint16_t d;
        memcpy(&d, blk, 2);
        assert_int_equal(d, 0x3C00); /* 1.0 */
        for (int j = 0; j < 8; j++) assert_int_equal((int8_t)blk[2 + j], want[j]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simd_tables_are_complete),
        cmocka_unit_test(test_simd_kernels_match_reference_on_model_weights),
        cmocka_unit_test(test_simd_kernels_handle_extreme_half_scales),
        cmocka_unit_test(test_simd_kernels_handle_every_block_count),
        cmocka_unit_test(test_simd_kernels_zero_blocks_give_zero),
        cmocka_unit_test(test_simd_float_kernels_handle_every_tail_length),
        cmocka_unit_test(test_simd_kernels_accept_unaligned_rows),
        cmocka_unit_test(test_simd_from_float_exact_types_match_reference),
        cmocka_unit_test(test_simd_from_float_q8_0_q8_1_differ_only_at_ties),
        cmocka_unit_test(test_simd_q8_0_quantizer_rounds_ties_to_even),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
