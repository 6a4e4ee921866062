/*
** test_attention.c: the tiled attention (engine/attention.c) on its own.
**
** The tiny models of ../shared/testdata give real shapes (GQA 8:2 llama,
** ALiBi bloom with 8 KV heads, chatglm 8:2, bert) and their buffers; the
** queries, keys and values are random. Each output row is checked against
** softmax(q.K / sqrt(hd) + ALiBi) V computed here in double from the same
** fp16-rounded inputs, on every instruction set this CPU runs, for
** sequences that cross several key blocks; and every row must come out bit
** for bit the same whatever batch it is computed in and however many
** threads compute it.
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

#include "engine/attention.h"
#include "engine/model_impl.h"
#include "tests/testutil.h"

#define SEQ 250 /* positions filled: three whole key blocks and a partial one */

/* Opens a shared model with a context of 256 on the given kernels. */
static KbModel *open_model(const char *rel, int threads, int isa)
{
    char *path = testutil_data_path(rel), err[256];
    KbModelParams p = {.n_ctx = 256, .n_threads = threads, .force_isa = isa + 1};
    KbModel *m = NULL;
    int rc = model_open(path, &p, &m, err, sizeof err);
    free(path);
    if (rc != KB_OK) fail_msg("%s: %s", rel, err);
    return m;
}

/* A value in [-a, a) from a 32-bit LCG (same sequence on every run). */
static float rnd(uint32_t *s, float a)
{
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / 16777216.0f * 2.0f - 1.0f) * a;
}

/* The value x rounded to fp16, as the cache holds it. */
static float f16(float x)
{
    return kb_half_to_float(kb_float_to_half(x));
}

/* Fills keys and values of positions [0, SEQ) of layer 0 with random
** values (stored in batches through model_store_kv); returns them,
** fp16-rounded, as (SEQ, kv_dim) arrays for the reference. */
static void fill_cache(KbModel *m, float *kr, float *vr, uint32_t seed)
{
    int64_t kv_dim = m->cfg.n_head_kv * m->cfg.head_dim;
    for (int64_t p0 = 0; p0 < SEQ; p0 += m->s.n_batch) {
        int64_t n = SEQ - p0 < m->s.n_batch ? SEQ - p0 : m->s.n_batch;
        for (int64_t i = 0; i < n * kv_dim; i++) {
            m->s.k[i] = rnd(&seed, 2.0f);
            m->s.v[i] = rnd(&seed, 1.0f);
            kr[p0 * kv_dim + i] = f16(m->s.k[i]);
            vr[p0 * kv_dim + i] = f16(m->s.v[i]);
        }
        model_store_kv(m, 0, p0, n);
    }
}

/* Random queries for n rows into s.q (and their fp16-rounded copy). */
static void fill_queries(KbModel *m, int64_t n, float *qr, uint32_t seed)
{
    int64_t q_dim = m->cfg.n_head * m->cfg.head_dim;
    for (int64_t i = 0; i < n * q_dim; i++) m->s.q[i] = rnd(&seed, 2.0f), qr[i] = f16(m->s.q[i]);
}

/* Row t's output for head h, in double: keys [0, end). */
static void reference_row(const KbModel *m, const float *q, const float *kr, const float *vr, int64_t end, int64_t pos,
                          int64_t h, double *out)
{
    const ModelConfig *c = &m->cfg;
    int64_t hd = c->head_dim, kv_dim = c->n_head_kv * hd, g = h / (c->n_head / c->n_head_kv);
    double *s = malloc((size_t)end * sizeof(double)), max = -INFINITY, sum = 0;
    double slope = m->w.alibi_slopes ? m->w.alibi_slopes[h] : 0.0;
    for (int64_t p = 0; p < end; p++) {
        double dot = 0;
        for (int64_t d = 0; d < hd; d++) dot += (double)q[d] * kr[p * kv_dim + g * hd + d];
        s[p] = dot / sqrt((double)hd) + slope * (double)(p - pos);
        max = s[p] > max ? s[p] : max;
    }
    for (int64_t d = 0; d < hd; d++) out[d] = 0;
    for (int64_t p = 0; p < end; p++) {
        double w = exp(s[p] - max);
        sum += w;
        for (int64_t d = 0; d < hd; d++) out[d] += w * vr[p * kv_dim + g * hd + d];
    }
    for (int64_t d = 0; d < hd; d++) out[d] /= sum;
    free(s);
}

/* Worst absolute difference of s.att's n rows (positions pos0..) from
** the reference. */
static double worst_error(const KbModel *m, const float *qr, const float *kr, const float *vr, int64_t pos0, int64_t n,
                          int64_t n_keys)
{
    const ModelConfig *c = &m->cfg;
    int64_t hd = c->head_dim, q_dim = c->n_head * hd;
    double ref[512], worst = 0;
    assert_true(hd <= 512);
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < c->n_head; h++) {
            int64_t pos = pos0 + t;
            reference_row(m, qr + t * q_dim + h * hd, kr, vr, n_keys ? n_keys : pos + 1, pos, h, ref);
            for (int64_t d = 0; d < hd; d++) {
                double e = fabs(ref[d] - m->s.att[t * q_dim + h * hd + d]);
                worst = e > worst ? e : worst;
            }
        }
    return worst;
}

static const char *const models[] = {"models/tiny-llama-Q4_0.gguf", "models/tiny-bloom-Q4_0.gguf",
                                     "models/tiny-chatglm-Q4_0.gguf"};

/* Causal rows deep in the sequence and at its start, and bidirectional
** rows over the whole cache, against the double reference, on every
** instruction set. */
static void test_attention_matches_double_reference(void **state)
{
    (void)state;
    for (int isa = 0; isa < KB_ISA_COUNT; isa++) {
        if (kb_kernels_for((KbIsa)isa) == NULL) continue; /* not this CPU */
        for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
            KbModel *m = open_model(models[k], 2, isa);
            int64_t kv = SEQ * m->cfg.n_head_kv * m->cfg.head_dim, q_dim = m->cfg.n_head * m->cfg.head_dim;
            float *kr = malloc((size_t)kv * sizeof(float)), *vr = malloc((size_t)kv * sizeof(float));
            float *qr = malloc((size_t)(m->s.n_batch * q_dim) * sizeof(float));
            fill_cache(m, kr, vr, 7u + (uint32_t)k);
            const int64_t starts[] = {0, 57, SEQ - 100};
            for (size_t i = 0; i < 3; i++) {
                fill_queries(m, 100, qr, 99u + (uint32_t)i);
                model_attention(m, 0, starts[i], 100);
                double e = worst_error(m, qr, kr, vr, starts[i], 100, 0);
                if (e > 2e-5) fail_msg("%s on %s: causal rows from %lld off by %g", models[k], kb_kernels_for((KbIsa)isa)->name,
                                       (long long)starts[i], e);
            }
            AttnArgs both = {.layer = 0, .q = m->s.q, .q_stride = q_dim, .out = m->s.att, .out_stride = q_dim, .n_tok = 100,
                             .pos0 = 0, .n_keys = SEQ};
            model_attend(m, &both);
            double e = worst_error(m, qr, kr, vr, 0, 100, SEQ);
            if (e > 2e-5) fail_msg("%s on %s: bidirectional rows off by %g", models[k], kb_kernels_for((KbIsa)isa)->name, e);
            free(kr), free(vr), free(qr);
            model_close(m);
        }
    }
}

/* Outputs of rows at positions [150, 250) computed in one batch, as
** 1 + 63 + 36 and as 17 x 5 + 15, with 1, 2 and 3 threads: all identical. */
static void test_rows_do_not_depend_on_batch_or_threads(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        float *ref = NULL;
        for (int threads = 1; threads <= 3; threads++) {
            KbModel *m = open_model(models[k], threads, (int)kb_kernels()->isa);
            int64_t kv = SEQ * m->cfg.n_head_kv * m->cfg.head_dim, q_dim = m->cfg.n_head * m->cfg.head_dim;
            float *kr = malloc((size_t)kv * sizeof(float)), *vr = malloc((size_t)kv * sizeof(float));
            float *qr = malloc((size_t)(m->s.n_batch * q_dim) * sizeof(float));
            float *whole = malloc((size_t)(100 * q_dim) * sizeof(float)), *part = malloc((size_t)(100 * q_dim) * sizeof(float));
            fill_cache(m, kr, vr, 11u);
            fill_queries(m, 100, qr, 5u);
            model_attention(m, 0, 150, 100);
            memcpy(whole, m->s.att, (size_t)(100 * q_dim) * sizeof(float));
            const int64_t cuts[2][8] = {{1, 63, 36}, {17, 17, 17, 17, 17, 15}};
            for (int c = 0; c < 2; c++) {
                int64_t t0 = 0;
                for (int i = 0; cuts[c][i]; i++) {
                    AttnArgs a = {.layer = 0, .q = m->s.q + t0 * q_dim, .q_stride = q_dim, .out = part + t0 * q_dim,
                                  .out_stride = q_dim, .n_tok = cuts[c][i], .pos0 = 150 + t0};
                    model_attend(m, &a);
                    t0 += cuts[c][i];
                }
                if (memcmp(whole, part, (size_t)(100 * q_dim) * sizeof(float)) != 0)
                    fail_msg("%s, %d threads: cutting the batch changed a row", models[k], threads);
            }
            if (ref && memcmp(ref, whole, (size_t)(100 * q_dim) * sizeof(float)) != 0)
                fail_msg("%s: %d threads changed a row", models[k], threads);
            free(ref);
            ref = whole;
            free(kr), free(vr), free(qr), free(part);
            model_close(m);
        }
        free(ref);
    }
}

/* A value row that holds infinities past a row's last key never reaches
** that row (its probability there is 0, but 0 x inf would be NaN). */
static void test_keys_past_a_row_are_never_read(void **state)
{
    (void)state;
    KbModel *m = open_model("models/tiny-llama-Q4_0.gguf", 2, (int)kb_kernels()->isa);
    int64_t kv_dim = m->cfg.n_head_kv * m->cfg.head_dim, q_dim = m->cfg.n_head * m->cfg.head_dim;
    uint32_t seed = 3;
    for (int64_t i = 0; i < 70 * kv_dim; i++) m->s.k[i] = rnd(&seed, 1.0f), m->s.v[i] = i >= 66 * kv_dim ? INFINITY : 1.0f;
    model_store_kv(m, 0, 0, 70);
    for (int64_t i = 0; i < 66 * q_dim; i++) m->s.q[i] = rnd(&seed, 1.0f);
    model_attention(m, 0, 0, 66);
    for (int64_t i = 0; i < 66 * q_dim; i++)
        if (fabsf(m->s.att[i] - 1.0f) > 1e-5f) fail_msg("value %lld is %g, expected 1", (long long)i, (double)m->s.att[i]);
    model_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_matches_double_reference),
        cmocka_unit_test(test_rows_do_not_depend_on_batch_or_threads),
        cmocka_unit_test(test_keys_past_a_row_are_never_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
