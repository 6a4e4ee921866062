/*
** sampler.h: choosing the next token from the logits.
**
** The chain of llama.cpp's common sampler, in its order: repetition,
** frequency and presence penalties over the last repeat_last_n tokens, then
** top-k, top-p (nucleus), min-p, temperature, and a draw from the remaining
** distribution with the sampler's own random generator (seeded, so a seed
** reproduces a run). Temperature 0 is greedy: the highest logit, lowest id on
** ties. Allocates once, at sampler_new.
*/
#ifndef KB_SAMPLER_H
#define KB_SAMPLER_H

#include <stdint.h>

typedef struct KbSamplerParams {
    float temperature;      /* 0 = greedy */
    int32_t top_k;          /* 0 = off */
    float top_p;            /* 1 = off */
    float min_p;            /* 0 = off */
    float repeat_penalty;   /* 1 = off */
    float frequency_penalty;/* 0 = off */
    float presence_penalty; /* 0 = off */
    int32_t repeat_last_n;  /* tokens the penalties look back over */
    uint64_t seed;
} KbSamplerParams;

typedef struct KbSampler KbSampler;

/* Returns KB_OK, KB_EINVAL (n_vocab < 1 or a parameter out of range), KB_ENOMEM. */
int sampler_new(const KbSamplerParams *p, int32_t n_vocab, KbSampler **out /* OUT */);
void sampler_free(KbSampler *s);
/* Picks a token from logits (n_vocab values; modified in place by the
** penalties). Does not record it: call sampler_accept with the token used. */
int32_t sampler_sample(KbSampler *s, float *logits);
/* Records a token of the sequence (prompt or generated) for the penalties. */
void sampler_accept(KbSampler *s, int32_t token);
/* Forgets the recorded tokens. */
void sampler_reset(KbSampler *s);

#endif /* KB_SAMPLER_H */
