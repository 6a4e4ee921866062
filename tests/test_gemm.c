/*
** test_gemm.c: the tiled matrix products over weights packed once
** (engine/gemm.h), for batches of any size.
**
** Every test runs on each kernel set with tiles the CPU can run (AVX2,
** AVX-VNNI, AVX-512 with VNNI), for every type its tiles compute (all five
** for AVX-512; Q4_0, Q8_0, Q4_K for the 256-bit sets: set_tiles).
** Expected values do not come from the code under test: each output is
** checked against a sum computed here in double precision from the same
** quantized rows (activations quantized by the engine's from_float, as both
** the tiled and the vec_dot path do): for Q4_0/Q8_0 the exact block sums
** from the stored quants, for the K types the portable to_float's weights
** times the activations; and against the engine's vec_dot. Only float summation order may differ,
** so the tolerance is a few float roundings of the sum of absolute terms.
** Shapes cut tiles at every edge (rows and tokens that do not fill a tile,
** one block per row, a matrix of one row, rows longer than one run of
** GEMM_KC blocks, batches of 1 to 5 tokens). Buffers are heap blocks of
** exactly their size and the weights start at an odd address, so ASan
** catches any access past them and nothing may assume alignment.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "engine/gemm.h"
#include "engine/kernels.h"
#include "engine/pool.h"
#include "tests/testutil.h"

typedef struct Rng {
    uint64_t s;
} Rng;

static uint32_t rng_next(Rng *r)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(r->s >> 33);
}

/* Uniform in [lo, hi). */
static float rng_float(Rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)rng_next(r) / 4294967296.0f;
}

/* A matrix of random valid blocks: n_out rows of n_in weights of `type`,
** stored one byte past a malloc'd block (odd address). */
typedef struct TestMat {
    uint8_t *alloc, *data;
    int type;
    int64_t n_in, n_out;
    size_t row_bytes;
} TestMat;

/* Where a block of `type` keeps its fp16 scale d. */
static size_t scale_offset(int type)
{
    return type == KB_TYPE_Q6_K ? offsetof(BlockQ6_K, d) : 0;
}

static TestMat mat_random(Rng *r, int type, int64_t n_in, int64_t n_out)
{
    TestMat m = {NULL, NULL, type, n_in, n_out, 0};
    const KbTypeInfo *ti = kb_type_info(type);
    m.row_bytes = (size_t)(n_in / ti->block_size) * (size_t)ti->type_size;
    m.alloc = malloc(m.row_bytes * (size_t)n_out + 1);
    assert_non_null(m.alloc);
    m.data = m.alloc + 1;
    /* random bytes everywhere (Q8_0 quants include -128), then finite scales */
    for (size_t b = 0; b < m.row_bytes * (size_t)n_out; b++) m.data[b] = (uint8_t)rng_next(r);
    for (size_t b = 0; b < m.row_bytes * (size_t)n_out; b += (size_t)ti->type_size) {
        kb_half d = kb_float_to_half(rng_float(r, 0.001f, 0.02f) * (rng_next(r) & 1 ? 1.0f : -1.0f));
        kb_half dmin = kb_float_to_half(rng_float(r, 0.001f, 0.02f));
        memcpy(m.data + b + scale_offset(type), &d, sizeof d);
        if (type == KB_TYPE_Q4_K || type == KB_TYPE_Q5_K) memcpy(m.data + b + 2, &dmin, sizeof dmin);
    }
    return m;
}

/* Weight i (0..31) of block blk as its integer quant (Q4_0: nibble - 8). */
static int weight_quant(const TestMat *m, const uint8_t *blk, int i)
{
    if (m->type == KB_TYPE_Q8_0) return (int8_t)blk[2 + i];
    const uint8_t b = blk[2 + (i & 15)];
    return (i < 16 ? b & 15 : b >> 4) - 8;
}

/* Q4_0 / Q8_0: the exact sum over blocks of dx dy sum(qx qy) in double, and
** the sum of the absolute values of its terms (*mag). */
static double exact_dot(const TestMat *m, int64_t row, const BlockQ8_0 *y, double *mag /* OUT */)
{
    const int sz = kb_type_info(m->type)->type_size;
    double s = 0;
    *mag = 0;
    for (int64_t l = 0; l < m->n_in / KB_QK; l++) {
        const uint8_t *blk = m->data + (size_t)row * m->row_bytes + (size_t)(l * sz);
        kb_half dh;
        memcpy(&dh, blk, sizeof dh);
        long sumi = 0;
        for (int i = 0; i < KB_QK; i++) sumi += (long)weight_quant(m, blk, i) * y[l].qs[i];
        const double term = (double)kb_half_to_float(dh) * (double)kb_half_to_float(y[l].d) * (double)sumi;
        s += term;
        *mag += fabs(term);
    }
    return s;
}

/* The K types: sum of the weights as the portable to_float dequantizes
** them times the dequantized Q8_K activations, in double. The dequantized
** weight d sc q - dmin m is rounded once in float, so *mag bounds its
** error through the largest magnitude either term can take per block. */
static double dequant_dot(const TestMat *m, int64_t row, const BlockQ8_K *y, double *mag /* OUT */)
{
    const KbKernels *scalar = kb_kernels_for(KB_ISA_SCALAR);
    const int sz = kb_type_info(m->type)->type_size;
    float *w = malloc((size_t)m->n_in * sizeof(float));
    assert_non_null(w);
    scalar->type[m->type].to_float(m->data + (size_t)row * m->row_bytes, w, m->n_in);
    double s = 0;
    *mag = 0;
    for (int64_t i = 0; i < m->n_in; i++) {
        const BlockQ8_K *yb = &y[i / KB_QK_K];
        const uint8_t *blk = m->data + (size_t)row * m->row_bytes + (size_t)(i / KB_QK_K * sz);
        kb_half dh, mh = 0;
        memcpy(&dh, blk + scale_offset(m->type), sizeof dh);
        if (m->type != KB_TYPE_Q6_K) memcpy(&mh, blk + 2, sizeof mh);
        const double d = fabs(kb_half_to_float(dh)), dmin = fabs(kb_half_to_float(mh));
        const double bound = m->type == KB_TYPE_Q6_K ? d * 128 * 32 : d * 63 * 31 + dmin * 63;
        const double a = (double)yb->d * yb->qs[i % KB_QK_K];
        s += (double)w[i] * a;
        *mag += bound * fabs(a);
    }
    free(w);
    return s;
}

/* y = W x with the tiled kernels on a pool of n_threads; y is malloc'd.
** The matrix is first packed whole (as a model does when it opens) into a
** buffer of exactly gemm_packed_size bytes. */
static float *run_gemm(const KbKernels *k, const TestMat *m, const float *x, int64_t n_tok, int n_threads)
{
    Pool *pool;
    GemmBuffers b;
    assert_int_equal(pool_new(n_threads, &pool), KB_OK);
    assert_int_equal(gemm_buffers_alloc(&b, k, n_tok, m->n_in, n_threads), KB_OK);
    assert_non_null(b.isa);
    float *y = malloc((size_t)(n_tok * m->n_out) * sizeof(float));
    assert_non_null(y);
    const size_t size = gemm_packed_size(b.isa, m->type, m->n_in, m->n_out);
    assert_true(size > 0);
    uint8_t *pk = aligned_alloc(64, size);
    assert_non_null(pk);
    gemm_pack_matrix(b.isa, pool, m->type, m->data, m->row_bytes, m->n_in, m->n_out, pk);
    const GemmProduct p = {pk, m->type, m->n_in, m->n_out, x, n_tok, y};
    assert_true(gemm_applies(&b, &p));
    gemm_matmul(&b, pool, k->type[k->type[m->type].vec_dot_type].from_float, &p);
    free(pk);
    gemm_buffers_free(&b);
    pool_free(pool);
    return y;
}


/* Checks one shape of one type against the reference sums and vec_dot. */
static void check_shape(const KbKernels *k, Rng *r, int type, int64_t n_in, int64_t n_out, int64_t n_tok)
{
    TestMat m = mat_random(r, type, n_in, n_out);
    const int qt = k->type[type].vec_dot_type;
    const KbTypeInfo *qi = kb_type_info(qt);
    const size_t qrow = (size_t)(n_in / qi->block_size) * (size_t)qi->type_size;
    float *x = malloc((size_t)(n_tok * n_in) * sizeof(float));
    uint8_t *xq = malloc((size_t)n_tok * qrow);
    assert_non_null(x);
    assert_non_null(xq);
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = rng_float(r, -2.0f, 2.0f);
    for (int64_t t = 0; t < n_tok; t++) k->type[qt].from_float(x + t * n_in, xq + (size_t)t * qrow, n_in);
    float *y = run_gemm(k, &m, x, n_tok, 2);
    for (int64_t t = 0; t < n_tok; t++) {
        for (int64_t row = 0; row < n_out; row++) {
            double mag;
            const void *yq = xq + (size_t)t * qrow;
            const double want = qt == KB_TYPE_Q8_0 ? exact_dot(&m, row, yq, &mag) : dequant_dot(&m, row, yq, &mag);
            const double tol = 1e-5 * mag + 1e-30;
            const float got = y[t * n_out + row];
            float dot;
            k->type[type].vec_dot(n_in, &dot, m.data + (size_t)row * m.row_bytes, yq);
            if (!(fabs(got - want) <= tol) || !(fabs((double)got - (double)dot) <= 2 * tol))
                fail_msg("%s %lldx%lld, %lld tokens: row %lld token %lld is %.9g, reference %.9g, vec_dot %.9g",
                         kb_type_name(type), (long long)n_out, (long long)n_in, (long long)n_tok, (long long)row,
                         (long long)t, (double)got, want, (double)dot);
        }
    }
    free(y), free(x), free(xq), free(m.alloc);
}

/* The kernel sets with tiled products, in order: AVX2, AVX-VNNI, AVX-512.
** Fills out with those this CPU runs and returns how many; a set is left
** out only when the CPU cannot run it, and every set it runs has tiles. */
static int tiled_sets(const KbKernels *out[3] /* OUT */)
{
    static const KbIsa isas[] = {KB_ISA_AVX2, KB_ISA_AVXVNNI, KB_ISA_AVX512};
    int n = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        const KbKernels *k = kb_kernels_for(isas[i]);
        if (k == NULL) {
            print_message("(this CPU cannot run kernel set %d: its tiles are not tested)\n", (int)isas[i]);
            continue;
        }
        assert_non_null(gemm_select(k));
        out[n++] = k;
    }
    return n;
}

/* The types some set's tiles compute. */
static const int tiled_types[] = {KB_TYPE_Q4_0, KB_TYPE_Q8_0, KB_TYPE_Q4_K, KB_TYPE_Q5_K, KB_TYPE_Q6_K};
#define N_TILED_TYPES (sizeof tiled_types / sizeof tiled_types[0])

/* Whether the tiles of set k compute `type`: the AVX-512 tiles all five
** types, the 256-bit ones (AVX2, AVX-VNNI) Q4_0, Q8_0 and Q4_K. */
static bool set_tiles(const KbKernels *k, int type)
{
    return type == KB_TYPE_Q4_0 || type == KB_TYPE_Q8_0 || type == KB_TYPE_Q4_K ||
           strcmp(gemm_select(k)->name, "AVX512-VNNI") == 0;
}

static void test_tiled_product_equals_exact_block_sums(void **state)
{
    (void)state;
    const KbKernels *sets[3];
    const int n_sets = tiled_sets(sets);
    static const int64_t shapes[][3] = {
        /* n_in, n_out, n_tok */
        {96, 37, 21}, {256, 48, 16}, {32, 1, 17}, {2048, 20, 40}, {64, 16, 128}, {160, 33, 25},
        {1056, 45, 19}, {2080, 64, 18}, /* runs of GEMM_KC blocks and a shorter last run */
        {64, 40, 1}, {2080, 33, 2}, {96, 70, 3}, {128, 32, 5}, /* batches of any size once packed */
    };
    Rng r = {42};
    for (int k = 0; k < n_sets; k++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            check_shape(sets[k], &r, KB_TYPE_Q4_0, shapes[i][0], shapes[i][1], shapes[i][2]);
            check_shape(sets[k], &r, KB_TYPE_Q8_0, shapes[i][0], shapes[i][1], shapes[i][2]);
        }
}

/* The K types with their 256-weight super-blocks. */
static void test_tiled_k_products_equal_dequantized_sums(void **state)
{
    (void)state;
    const KbKernels *sets[3];
    const int n_sets = tiled_sets(sets);
    static const int64_t shapes[][3] = {
        /* n_in, n_out, n_tok */
        {256, 37, 21}, {512, 64, 16}, {256, 1, 17}, {1280, 33, 19}, /* 5 super-blocks: runs of 4 and 1 */
        {256, 40, 1}, {1280, 33, 2}, {512, 70, 3}, {256, 32, 5},   /* batches of any size */
    };
    static const int types[] = {KB_TYPE_Q4_K, KB_TYPE_Q5_K, KB_TYPE_Q6_K};
    Rng r = {43};
    for (int k = 0; k < n_sets; k++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (size_t j = 0; j < sizeof types / sizeof types[0]; j++)
                if (set_tiles(sets[k], types[j])) check_shape(sets[k], &r, types[j], shapes[i][0], shapes[i][1], shapes[i][2]);
}

/* n_tok tokens of n_in activations in [-1, 1), malloc'd. */
static float *random_tokens(Rng *r, int64_t n_tok, int64_t n_in)
{
    float *x = malloc((size_t)(n_tok * n_in) * sizeof(float));
    assert_non_null(x);
    for (int64_t j = 0; j < n_tok * n_in; j++) x[j] = rng_float(r, -1.0f, 1.0f);
    return x;
}

/* Work is split by index: 1, 2 and 3 workers give the same bits. And as
** every set makes the same exact integer sums and the same float steps,
** the sets give the same bits as each other. */
static void test_tiled_product_does_not_depend_on_thread_count(void **state)
{
    (void)state;
    const KbKernels *sets[3];
    const int n_sets = tiled_sets(sets);
    Rng r = {7};
    for (size_t i = 0; i < N_TILED_TYPES; i++) {
        const int type = tiled_types[i];
        const int64_t n_in = type == KB_TYPE_Q4_0 || type == KB_TYPE_Q8_0 ? 2400 : 1536, n_out = 83, n_tok = 29;
        TestMat m = mat_random(&r, type, n_in, n_out);
        float *x = random_tokens(&r, n_tok, n_in);
        float *first = NULL;
        for (int k = 0; k < n_sets; k++) {
            if (!set_tiles(sets[k], type)) continue;
            float *y1 = run_gemm(sets[k], &m, x, n_tok, 1);
            for (int threads = 2; threads <= 3; threads++) {
                float *y = run_gemm(sets[k], &m, x, n_tok, threads);
                assert_memory_equal(y1, y, (size_t)(n_tok * n_out) * sizeof(float));
                free(y);
            }
            if (first) assert_memory_equal(first, y1, (size_t)(n_tok * n_out) * sizeof(float)), free(y1);
            else first = y1;
        }
        free(first), free(x), free(m.alloc);
    }
}

/* Packed weights: a token's result is the same bits whether it comes alone
** or with others, at any place in a batch of any size (prefix reuse
** evaluates the same prompt in batches cut anywhere). */
static void test_packed_product_does_not_depend_on_batch(void **state)
{
    (void)state;
    const KbKernels *sets[3];
    const int n_sets = tiled_sets(sets);
    Rng r = {11};
    for (int k = 0; k < n_sets; k++)
        for (size_t i = 0; i < N_TILED_TYPES; i++) {
            const int type = tiled_types[i];
            if (!set_tiles(sets[k], type)) continue;
            const int64_t n_in = type == KB_TYPE_Q4_0 || type == KB_TYPE_Q8_0 ? 2112 : 1280, n_out = 70, n_tok = 23;
            TestMat m = mat_random(&r, type, n_in, n_out);
            float *x = random_tokens(&r, n_tok, n_in);
            float *all = run_gemm(sets[k], &m, x, n_tok, 2);
            /* the batch cut as 1 + 2 + 3 + 17 tokens */
            static const int64_t cuts[] = {0, 1, 3, 6, 23};
            for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++) {
                const int64_t t0 = cuts[c], nt = cuts[c + 1] - cuts[c];
                float *part = run_gemm(sets[k], &m, x + t0 * n_in, nt, 2);
                assert_memory_equal(part, all + t0 * n_out, (size_t)(nt * n_out) * sizeof(float));
                free(part);
            }
            free(all), free(x), free(m.alloc);
        }
}

/* Products set k's tiles take, and packed sizes. */
static void check_what_tiles_take(const KbKernels *k)
{
    GemmBuffers b;
    assert_int_equal(gemm_buffers_alloc(&b, k, 64, 256, 2), KB_OK);
    float x[1], y[1];
    GemmProduct p = {(const uint8_t *)x, KB_TYPE_Q4_0, 256, 16, x, 1, y};
    assert_true(gemm_applies(&b, &p));
    p.n_tok = 64;
    assert_true(gemm_applies(&b, &p));
    p.n_tok = 65;
    assert_false(gemm_applies(&b, &p));
    p.n_tok = 0;
    assert_false(gemm_applies(&b, &p));
    p.n_tok = 32;
    p.packed = NULL;
    assert_false(gemm_applies(&b, &p));
    p.packed = (const uint8_t *)x;
    p.n_in = 288;
    assert_false(gemm_applies(&b, &p));
    p.n_in = 256;
    p.type = KB_TYPE_Q4_1;
    assert_false(gemm_applies(&b, &p));
    p.type = KB_TYPE_Q4_K;
    assert_true(gemm_applies(&b, &p));
    p.n_in = 224; /* not whole super-blocks */
    assert_false(gemm_applies(&b, &p));
    assert_int_equal(gemm_packed_size(b.isa, KB_TYPE_Q4_0, 256, 33), 2 * 8 * 32 * sizeof(BlockQ4_0));
    assert_int_equal(gemm_packed_size(b.isa, KB_TYPE_Q8_0, 64, 32), 2 * 32 * sizeof(BlockQ8_0));
    assert_int_equal(gemm_packed_size(b.isa, KB_TYPE_Q4_K, 256, 32), 32 * (sizeof(BlockQ4_K) + 4));
    const bool k56 = set_tiles(k, KB_TYPE_Q5_K);
    assert_int_equal(set_tiles(k, KB_TYPE_Q6_K), k56);
    assert_int_equal(gemm_packed_size(b.isa, KB_TYPE_Q6_K, 512, 32), k56 ? 2 * 32 * sizeof(BlockQ6_K) : 0);
    assert_int_equal(gemm_packed_size(b.isa, KB_TYPE_Q5_K, 256, 64), k56 ? 2 * 32 * (sizeof(BlockQ5_K) + 4) : 0);
    p.type = KB_TYPE_Q6_K;
    p.n_in = 256;
    assert_int_equal(gemm_applies(&b, &p), k56);
    assert_int_equal(gemm_packed_size(b.isa, KB_TYPE_Q4_1, 256, 32), 0);
    assert_int_equal(gemm_packed_size(b.isa, KB_TYPE_Q4_0, 48, 32), 0);
    assert_int_equal(gemm_packed_size(NULL, KB_TYPE_Q4_0, 256, 32), 0);
    gemm_buffers_free(&b);
}

/* Other types, other kernel sets, weights not packed and oversized
** products stay on the vec_dot path; packed sizes are the stored ones (a
** few percent more for Q4_K/Q5_K). */
static void test_tiled_path_takes_only_what_it_handles(void **state)
{
    (void)state;
    assert_null(gemm_select(kb_kernels_for(KB_ISA_SCALAR)));
    const KbKernels *sets[3];
    const int n_sets = tiled_sets(sets);
    for (int k = 0; k < n_sets; k++) check_what_tiles_take(sets[k]);
    GemmBuffers b;
    float x[1], y[1];
    GemmProduct p = {(const uint8_t *)x, KB_TYPE_Q4_0, 256, 16, x, 1, y};
    assert_int_equal(gemm_buffers_alloc(&b, kb_kernels_for(KB_ISA_SCALAR), 64, 256, 2), KB_OK);
    assert_false(gemm_applies(&b, &p));
    gemm_buffers_free(&b);
}

/* Each kernel level gets the tiles of its own instruction set. */
static void test_each_kernel_level_gets_its_own_tiles(void **state)
{
    (void)state;
    const KbKernels *k = kb_kernels_for(KB_ISA_AVX2);
    if (k != NULL) assert_string_equal(gemm_select(k)->name, "AVX2");
    k = kb_kernels_for(KB_ISA_AVXVNNI);
    if (k != NULL) assert_string_equal(gemm_select(k)->name, "AVX-VNNI");
    k = kb_kernels_for(KB_ISA_AVX512);
    __builtin_cpu_init();
    if (k != NULL) assert_string_equal(gemm_select(k)->name, __builtin_cpu_supports("avx512vnni") ? "AVX512-VNNI" : "AVX2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiled_product_equals_exact_block_sums),
        cmocka_unit_test(test_tiled_k_products_equal_dequantized_sums),
        cmocka_unit_test(test_tiled_product_does_not_depend_on_thread_count),
        cmocka_unit_test(test_packed_product_does_not_depend_on_batch),
        cmocka_unit_test(test_tiled_path_takes_only_what_it_handles),
        cmocka_unit_test(test_each_kernel_level_gets_its_own_tiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
