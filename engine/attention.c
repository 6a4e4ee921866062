/*
** attention.c: the tiled attention of every architecture (see attention.h
** for the algorithm and its invariants), the layout of the KV cache it
** reads, and the portable reference kernels.
**
** Numerics: the query is rounded to fp16 when the keys are the fp16 cache
** (ggml converts it to the cache's type before the product), scores and
** probabilities stay in float, and the softmax is normalised once at the
** end instead of per probability.
*/
#include <math.h>
#include <string.h>

#include "engine/attention.h"
#include "engine/model_impl.h"

/* --- the cache layout --- */

int64_t model_cache_positions(int64_t n_ctx)
{
    return (n_ctx + ATT_KEYS - 1) / ATT_KEYS * ATT_KEYS;
}

/* The first key of block b of KV head g in layer l: head_dim rows of
** ATT_KEYS fp16 values (row d holds dimension d of the block's keys). */
static kb_half *key_block(const KbModel *m, int64_t l, int64_t g, int64_t b)
{
    const ModelConfig *c = &m->cfg;
    int64_t n_pos = model_cache_positions(m->n_ctx);
    return m->s.key_cache + ((size_t)(l * c->n_head_kv + g) * (size_t)n_pos + (size_t)(b * ATT_KEYS)) * (size_t)c->head_dim;
}

/* The value row of position p of KV head g in layer l (head_dim fp16). */
static kb_half *value_row(const KbModel *m, int64_t l, int64_t g, int64_t p)
{
    const ModelConfig *c = &m->cfg;
    int64_t n_pos = model_cache_positions(m->n_ctx);
    return m->s.value_cache + ((size_t)(l * c->n_head_kv + g) * (size_t)n_pos + (size_t)p) * (size_t)c->head_dim;
}

/* Converts each head's key and value rows of the batch to fp16 and writes
** them where attend_task reads them: keys transposed into their block. */
void model_store_kv(KbModel *m, int64_t l, int64_t pos0, int64_t n)
{
    const ModelConfig *c = &m->cfg;
    int64_t hd = c->head_dim, kv_dim = c->n_head_kv * hd;
    const KbTypeKernels *f16 = &m->kern->type[KB_TYPE_F16];
    kb_half *tmp = m->s.key16; /* head_dim halves; this runs on the calling thread only */
    for (int64_t t = 0; t < n; t++) {
        int64_t p = pos0 + t;
        for (int64_t g = 0; g < c->n_head_kv; g++) {
            f16->from_float(m->s.k + t * kv_dim + g * hd, tmp, hd);
            kb_half *kb = key_block(m, l, g, p / ATT_KEYS) + p % ATT_KEYS;
            for (int64_t d = 0; d < hd; d++) kb[d * ATT_KEYS] = tmp[d];
            f16->from_float(m->s.v + t * kv_dim + g * hd, value_row(m, l, g, p), hd);
        }
    }
}

/* --- the driver --- */

/* A task's view of its scratch (attn_scratch_floats lays it out). */
typedef struct AttnScratch {
    float *Q, *O, *S, *KT, *V, *M, *L, *slope;
    int32_t *lim;
    int64_t *rel, *end;
} AttnScratch;

/* Rows of one task: every head of a GQA group for `rows / n_rep` tokens. */
static int64_t task_rows(int64_t n_rep)
{
    return n_rep > ATT_ROWS ? n_rep : ATT_ROWS / n_rep * n_rep;
}

int64_t attn_scratch_floats(int64_t hd, int64_t n_rep)
{
    int64_t hdp = ATT_PAD(hd), r = task_rows(n_rep), rl = (r + 15) / 16 * 16;
    /* Q, O; S; KT, V; M, L, slope; lim (int32), rel and end (int64) as 1 + 2 + 2 floats; a
    ** multiple of 16 floats, so every worker's part starts 64-byte aligned like the first */
    return 2 * r * hdp + r * ATT_KEYS + 2 * ATT_KEYS * hdp + 3 * rl + 5 * rl;
}

static AttnScratch scratch_view(float *f, int64_t hd, int64_t n_rep)
{
    int64_t hdp = ATT_PAD(hd), r = task_rows(n_rep), rl = (r + 15) / 16 * 16; /* rl keeps the int64 arrays aligned */
    AttnScratch s;
    s.Q = f, f += r * hdp;
    s.O = f, f += r * hdp;
    s.S = f, f += r * ATT_KEYS;
    s.KT = f, f += ATT_KEYS * hdp;
    s.V = f, f += ATT_KEYS * hdp;
    s.M = f, f += rl;
    s.L = f, f += rl;
    s.slope = f, f += rl;
    s.rel = (int64_t *)(void *)f, f += 2 * rl;
    s.end = (int64_t *)(void *)f, f += 2 * rl;
    s.lim = (int32_t *)(void *)f;
    return s;
}

typedef struct AttnJob {
    KbModel *m;
    const AttnArgs *a;
    const AttnKernels *k;
    int64_t n_rep, tok_per_task, n_tasks;
} AttnJob;

/* Fills the task's rows of Q (rounded to fp16 when the keys are), their
** key ends (exclusive) and ALiBi slopes, and clears O, M and L. */
static void load_queries(const AttnJob *j, const AttnScratch *s, int64_t g, int64_t t0, int64_t n_rows)
{
    const KbModel *m = j->m;
    const AttnArgs *a = j->a;
    int64_t hd = m->cfg.head_dim, hdp = ATT_PAD(hd);
    const KbTypeKernels *f16 = &m->kern->type[KB_TYPE_F16];
    memset(s->Q, 0, (size_t)(n_rows * hdp) * sizeof(float));
    memset(s->O, 0, (size_t)(n_rows * hdp) * sizeof(float));
    for (int64_t i = 0; i < n_rows; i++) {
        int64_t t = t0 + i / j->n_rep, h = g * j->n_rep + i % j->n_rep;
        const float *q = a->q + t * a->q_stride + h * hd;
        if (a->k_rows) memcpy(s->Q + i * hdp, q, (size_t)hd * sizeof(float));
        else {
            kb_half *q16 = (kb_half *)(void *)s->V; /* V is free until the first block */
            f16->from_float(q, q16, hd);
            f16->to_float(q16, s->Q + i * hdp, hd);
        }
        s->end[i] = a->n_keys ? a->n_keys : a->pos0 + t + 1;
        s->slope[i] = m->w.alibi_slopes ? m->w.alibi_slopes[h] : 0.0f;
        s->M[i] = -INFINITY;
        s->L[i] = 0.0f;
    }
}

/* Converts keys [k0, k0 + kn) of KV head g into KT (hd rows of ATT_KEYS,
** zero past kn) and their values into V (kn rows of hdp, zero padded). */
static void load_block(const AttnJob *j, const AttnScratch *s, int64_t g, int64_t k0, int64_t kn)
{
    const KbModel *m = j->m;
    const AttnArgs *a = j->a;
    int64_t hd = m->cfg.head_dim, hdp = ATT_PAD(hd);
    const KbTypeKernels *f16 = &m->kern->type[KB_TYPE_F16];
    if (a->k_rows) {
        memset(s->KT, 0, (size_t)(hd * ATT_KEYS) * sizeof(float));
        for (int64_t p = 0; p < kn; p++) {
            const float *k = a->k_rows + (k0 + p) * a->kv_stride + g * hd;
            for (int64_t d = 0; d < hd; d++) s->KT[d * ATT_KEYS + p] = k[d];
            memcpy(s->V + p * hdp, a->v_rows + (k0 + p) * a->kv_stride + g * hd, (size_t)hd * sizeof(float));
        }
        return;
    }
    f16->to_float(key_block(m, a->layer, g, k0 / ATT_KEYS), s->KT, hd * ATT_KEYS);
    if (hdp == hd) f16->to_float(value_row(m, a->layer, g, k0), s->V, kn * hd);
    else
        for (int64_t p = 0; p < kn; p++) f16->to_float(value_row(m, a->layer, g, k0 + p), s->V + p * hdp, hd);
}

/* Task (g, token block): the GQA group g's heads for tokens [t0, t0 + nt). */
static void attend_task(const AttnJob *j, const AttnScratch *s, int64_t g, int64_t t0, int64_t nt)
{
    const KbModel *m = j->m;
    const AttnArgs *a = j->a;
    int64_t hd = m->cfg.head_dim, hdp = ATT_PAD(hd), n_rows = nt * j->n_rep;
    float scale = 1.0f / sqrtf((float)hd);
    load_queries(j, s, g, t0, n_rows);
    memset(s->V, 0, (size_t)(ATT_KEYS * hdp) * sizeof(float)); /* the padding lanes stay zero */
    int64_t end_max = s->end[n_rows - 1], r0 = 0; /* rows are in order of their end */
    for (int64_t k0 = 0; k0 < end_max; k0 += ATT_KEYS) {
        while (s->end[r0] <= k0) r0++; /* rows whose keys all lie before this block are done */
        int64_t kn = end_max - k0 < ATT_KEYS ? end_max - k0 : ATT_KEYS;
        load_block(j, s, g, k0, kn);
        for (int64_t i = r0; i < n_rows; i++) {
            int64_t left = s->end[i] - k0;
            s->lim[i] = (int32_t)(left < ATT_KEYS ? left : ATT_KEYS);
            s->rel[i] = k0 - (s->end[i] - 1);
        }
        int64_t nr = n_rows - r0;
        j->k->scores(nr, hd, hdp, s->Q + r0 * hdp, s->KT, s->S + r0 * ATT_KEYS);
        j->k->softmax(nr, hdp, s->S + r0 * ATT_KEYS, s->lim + r0, s->slope + r0, s->rel + r0, scale, s->M + r0, s->L + r0,
                      s->O + r0 * hdp);
        j->k->accumulate(nr, hdp, s->S + r0 * ATT_KEYS, s->lim + r0, s->V, s->O + r0 * hdp);
    }
    for (int64_t i = 0; i < n_rows; i++) {
        int64_t t = t0 + i / j->n_rep, h = g * j->n_rep + i % j->n_rep;
        float *out = a->out + t * a->out_stride + h * hd, inv = 1.0f / s->L[i];
        for (int64_t d = 0; d < hd; d++) out[d] = s->O[i * hdp + d] * inv;
    }
}

/* Worker ith takes every nth task; tasks run over (token block, group). */
static void attention_worker(void *arg, int ith, int nth)
{
    const AttnJob *j = arg;
    const KbModel *m = j->m;
    int64_t n_groups = m->cfg.n_head_kv;
    AttnScratch s = scratch_view(m->s.attn_scratch + (size_t)ith * (size_t)m->s.attn_scratch_floats, m->cfg.head_dim, j->n_rep);
    for (int64_t task = ith; task < j->n_tasks; task += nth) {
        int64_t tb = task / n_groups, g = task % n_groups, t0 = tb * j->tok_per_task;
        int64_t nt = j->a->n_tok - t0 < j->tok_per_task ? j->a->n_tok - t0 : j->tok_per_task;
        attend_task(j, &s, g, t0, nt);
    }
}

void model_attend(KbModel *m, const AttnArgs *a)
{
    const ModelConfig *c = &m->cfg;
    int64_t n_rep = c->n_head / c->n_head_kv, per = task_rows(n_rep) / n_rep;
    int64_t n_blocks = (a->n_tok + per - 1) / per;
    AttnJob j = {m, a, attn_kernels(m->kern->isa), n_rep, per, n_blocks * c->n_head_kv};
    pool_run(m->pool, attention_worker, &j);
}

void model_attention(KbModel *m, int64_t layer, int64_t pos0, int64_t n_tok)
{
    int64_t q_dim = m->cfg.n_head * m->cfg.head_dim;
    AttnArgs a = {.layer = layer, .q = m->s.q, .q_stride = q_dim, .out = m->s.att, .out_stride = q_dim,
                  .n_tok = n_tok, .pos0 = pos0};
    model_attend(m, &a);
}

/* --- the portable kernels: the reference the SIMD sets follow --- */

static void scores_scalar(int64_t n_rows, int64_t hd, int64_t hdp, const float *Q, const float *KT, float *S)
{
    for (int64_t i = 0; i < n_rows; i++)
        for (int64_t j = 0; j < ATT_KEYS; j++) {
            float acc = 0.0f;
            for (int64_t d = 0; d < hd; d++) acc = fmaf(Q[i * hdp + d], KT[d * ATT_KEYS + j], acc);
            S[i * ATT_KEYS + j] = acc;
        }
}

static void softmax_scalar(int64_t n_rows, int64_t hdp, float *S, const int32_t *lim, const float *slope,
                           const int64_t *rel, float scale, float *M, float *L, float *O)
{
    for (int64_t i = 0; i < n_rows; i++) {
        float *s = S + i * ATT_KEYS, max = M[i], sum = 0.0f;
        for (int32_t k = 0; k < lim[i]; k++) {
            s[k] = s[k] * scale + slope[i] * (float)(rel[i] + k);
            max = s[k] > max ? s[k] : max;
        }
        for (int32_t k = 0; k < ATT_KEYS; k++) {
            s[k] = k < lim[i] ? expf(s[k] - max) : 0.0f;
            sum += s[k];
        }
        float alpha = expf(M[i] - max);
        L[i] = L[i] * alpha + sum;
        M[i] = max;
        for (int64_t d = 0; d < hdp; d++) O[i * hdp + d] *= alpha;
    }
}

static void accumulate_scalar(int64_t n_rows, int64_t hdp, const float *P, const int32_t *lim, const float *V, float *O)
{
    for (int64_t i = 0; i < n_rows; i++)
        for (int32_t k = 0; k < lim[i]; k++)
            for (int64_t d = 0; d < hdp; d++) O[i * hdp + d] = fmaf(P[i * ATT_KEYS + k], V[k * hdp + d], O[i * hdp + d]);
}

const AttnKernels attn_kernels_scalar = {scores_scalar, softmax_scalar, accumulate_scalar};

const AttnKernels *attn_kernels(KbIsa isa)
{
#if defined(__x86_64__)
    if (isa >= KB_ISA_AVX512) return &attn_kernels_avx512;
    if (isa >= KB_ISA_AVX2) return &attn_kernels_avx2;
#endif
    (void)isa;
    return &attn_kernels_scalar;
}
