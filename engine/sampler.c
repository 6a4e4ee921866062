/*
** sampler.c: see sampler.h.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

typedef struct Candidate {
    int32_t id;
    float logit;
    float p;
} Candidate;

struct KbSampler {
    KbSamplerParams p;
    int32_t n_vocab;
    Candidate *cand;   /* (n_vocab) */
    int32_t *recent;   /* ring of the last repeat_last_n tokens */
    int32_t n_recent, next_recent;
    int32_t *counts;   /* (n_vocab) occurrences within recent, rebuilt per sample */
    uint64_t rng;
};

int sampler_new(const KbSamplerParams *p, int32_t n_vocab, KbSampler **out)
{
    *out = NULL;
    if (n_vocab < 1 || p->temperature < 0 || p->top_k < 0 || p->top_p < 0 || p->top_p > 1 || p->min_p < 0 ||
        p->min_p > 1 || p->repeat_penalty <= 0 || p->repeat_last_n < 0)
        return KB_EINVAL;
    KbSampler *s = calloc(1, sizeof *s);
    if (s == NULL) return KB_ENOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->recent = malloc((size_t)(p->repeat_last_n ? p->repeat_last_n : 1) * sizeof *s->recent);
    s->rng = p->seed ^ 0x9E3779B97F4A7C15ull;
    if (!s->cand || !s->counts || !s->recent) {
        sampler_free(s);
        return KB_ENOMEM;
    }
    *out = s;
    return KB_OK;
}

void sampler_free(KbSampler *s)
{
    if (s == NULL) return;
    free(s->cand);
    free(s->counts);
    free(s->recent);
    free(s);
}

void sampler_accept(KbSampler *s, int32_t token)
{
    if (s->p.repeat_last_n == 0) return;
    s->recent[s->next_recent] = token;
    s->next_recent = (s->next_recent + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

void sampler_reset(KbSampler *s)
{
    s->n_recent = s->next_recent = 0;
}

/* splitmix64: a small, well-mixed generator; returns a float in [0, 1). */
static float next_uniform(KbSampler *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) / (float)(1ull << 24);
}

/* Repetition (divide positive, multiply negative logits), frequency and
** presence penalties, as llama.cpp's penalties sampler applies them. */
static void apply_penalties(KbSampler *s, float *logits)
{
    const KbSamplerParams *p = &s->p;
    if (s->n_recent == 0 || (p->repeat_penalty == 1.0f && p->frequency_penalty == 0 && p->presence_penalty == 0)) return;
    for (int32_t i = 0; i < s->n_recent; i++)
        if (s->recent[i] >= 0 && s->recent[i] < s->n_vocab) s->counts[s->recent[i]]++;
    for (int32_t i = 0; i < s->n_recent; i++) {
        int32_t id = s->recent[i];
        if (id < 0 || id >= s->n_vocab || s->counts[id] == 0) continue;
        float *l = &logits[id];
        *l = *l <= 0 ? *l * p->repeat_penalty : *l / p->repeat_penalty;
        *l -= (float)s->counts[id] * p->frequency_penalty + p->presence_penalty;
        s->counts[id] = 0; /* each distinct token once */
    }
}

static int32_t argmax(const float *logits, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static int by_logit_desc(const void *a, const void *b)
{
    const Candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Sorts the candidates by logit; with top-k, only the best k are kept (a
** quickselect-free approach: a full sort is fast enough for 150k entries
** once per token, and top-k then truncates). */
static int32_t sort_and_cut(KbSampler *s, int32_t n)
{
    qsort(s->cand, (size_t)n, sizeof *s->cand, by_logit_desc);
    if (s->p.top_k > 0 && s->p.top_k < n) n = s->p.top_k;
    return n;
}

/* Softmax of the first n candidates' logits / temp into p. */
static void softmax(Candidate *c, int32_t n, float temp)
{
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - c[0].logit) / temp);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
}

int32_t sampler_sample(KbSampler *s, float *logits)
{
    apply_penalties(s, logits);
    if (s->p.temperature <= 0) return argmax(logits, s->n_vocab);
    for (int32_t i = 0; i < s->n_vocab; i++) s->cand[i] = (Candidate){i, logits[i], 0};
    int32_t n = sort_and_cut(s, s->n_vocab);
    softmax(s->cand, n, 1.0f);
    if (s->p.top_p < 1.0f) {
        double cum = 0;
        for (int32_t i = 0; i < n; i++) {
            cum += s->cand[i].p;
            if (cum >= s->p.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0) {
        float floor = s->cand[0].p * s->p.min_p;
        int32_t keep = 1;
        while (keep < n && s->cand[keep].p >= floor) keep++;
        n = keep;
    }
    softmax(s->cand, n, s->p.temperature);
    float r = next_uniform(s), cum = 0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->cand[i].p;
        if (r < cum) return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}
