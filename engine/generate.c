/*
** generate.c: the generation loop: prompt, then sample, stream, repeat.
**
** Text reaches the caller through a TokStream, so a character split across
** tokens is held back until complete, and through a stop-string filter
** that holds back any tail that could still become a stop string, so a stop
** string is never shown even partly.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/model_impl.h"

/* Text produced but not yet passed on, waiting to rule out a stop string. */
typedef struct Pending {
    char *buf;
    size_t len, cap;
    const char *const *stop;
} Pending;

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int pending_add(Pending *p, const char *s, size_t n)
{
    if (p->len + n + 1 > p->cap) {
        size_t cap = (p->len + n + 1) * 2;
        char *b = realloc(p->buf, cap);
        if (b == NULL) return KB_ENOMEM;
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
    return KB_OK;
}

/* Returns where the earliest stop string starts in the pending text, or -1. */
static long find_stop(const Pending *p)
{
    long best = -1;
    for (size_t i = 0; p->stop && p->stop[i]; i++) {
        size_t n = strlen(p->stop[i]);
        if (n == 0) continue;
        const char *hit = memmem(p->buf, p->len, p->stop[i], n);
        if (hit && (best < 0 || hit - p->buf < best)) best = hit - p->buf;
    }
    return best;
}

/* How many bytes at the end of the pending text could still grow into a
** stop string (they must be held back). */
static size_t held_tail(const Pending *p)
{
    size_t hold = 0;
    for (size_t i = 0; p->stop && p->stop[i]; i++) {
        size_t n = strlen(p->stop[i]);
        for (size_t k = n > 0 ? n - 1 : 0; k > hold; k--)
            if (k <= p->len && memcmp(p->buf + p->len - k, p->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    /* never split a UTF-8 character: move the cut back to a lead byte */
    while (hold < p->len && ((unsigned char)p->buf[p->len - hold] & 0xC0) == 0x80) hold++;
    return hold;
}

/* Passes on what can no longer be part of a stop string. Returns nonzero
** when the caller cancelled; *stopped is set when a stop string appeared. */
static int flush_pending(Pending *p, KbPieceFn fn, void *user, bool *stopped, bool final)
{
    long stop = find_stop(p);
    size_t emit = stop >= 0 ? (size_t)stop : p->len - (final ? 0 : held_tail(p));
    int cancel = 0;
    if (emit > 0 && fn) {
        char keep = p->buf[emit];
        p->buf[emit] = '\0';
        cancel = fn(user, p->buf, emit);
        p->buf[emit] = keep;
    }
    if (p->len > 0) memmove(p->buf, p->buf + emit, p->len - emit + 1); /* buf is NULL until text came */
    p->len -= emit;
    *stopped = stop >= 0;
    return cancel;
}

/* True for the tokens that end a turn: EOS, and EOT when the file names one
** (a GGML file: ChatGLM3's and GLM-4's <|user|> and <|observation|>). */
static bool is_end_token(const KbModel *m, int32_t id)
{
    int64_t eot;
    if (id == tokenizer_eos(m->tok)) return true;
    if (m->ggml) return id >= 0 && (id == m->eog_extra[0] || id == m->eog_extra[1]);
    return gguf_get_int(m->gguf, "tokenizer.ggml.eot_token_id", &eot) == KB_OK && eot == id;
}

/* Samples, streams and decodes until a stop condition; see model.h. */
static int generate_tokens(KbModel *m, KbSampler *smp, const KbGenerateParams *gp, KbPieceFn fn, void *user,
                           KbGenerateStats *st, float *logits, Pending *pend)
{
    TokStream ts;
    tokstream_init(&ts, m->tok, gp->render_special ? KB_DETOK_SPECIAL : 0);
    char piece[1024];
    int rc = KB_OK;
    bool stopped = false;
    while (rc == KB_OK && !st->stop_reason) {
        int32_t id = sampler_sample(smp, logits);
        if (is_end_token(m, id)) {
            st->stop_reason = KB_STOP_EOS;
            break;
        }
        st->n_generated++;
        sampler_accept(smp, id);
        long n = tokstream_room(&ts, id) <= sizeof piece ? tokstream_push(&ts, id, piece, sizeof piece) : 0;
        if (n > 0) rc = pending_add(pend, piece, (size_t)n);
        if (rc == KB_OK && flush_pending(pend, fn, user, &stopped, false)) st->stop_reason = KB_STOP_CANCEL;
        else if (stopped) st->stop_reason = KB_STOP_STRING;
        else if ((int64_t)st->n_generated >= gp->max_tokens) st->stop_reason = KB_STOP_LENGTH;
        else if (m->n_past >= m->n_ctx) st->stop_reason = KB_STOP_CONTEXT;
        else if (rc == KB_OK) rc = model_decode(m, &id, 1, logits, false);
        if (rc == KB_ECANCELLED) rc = KB_OK, st->stop_reason = KB_STOP_CANCEL; /* the cancel flag */
    }
    if (rc == KB_OK && st->stop_reason != KB_STOP_STRING && st->stop_reason != KB_STOP_CANCEL) {
        size_t n = tokstream_finish(&ts, piece, sizeof piece);
        if (n > 0) rc = pending_add(pend, piece, n);
        if (rc == KB_OK) flush_pending(pend, fn, user, &stopped, true);
    }
    return rc;
}

int model_generate(KbModel *m, KbSampler *smp, const int32_t *prompt, size_t n, const KbGenerateParams *gp,
                   KbPieceFn fn, void *user, KbGenerateStats *st)
{
    memset(st, 0, sizeof *st);
    st->n_prompt = n;
    float *logits = malloc((size_t)m->cfg.n_vocab * sizeof *logits);
    Pending pend = {.stop = gp->stop};
    if (logits == NULL) return KB_ENOMEM;
    for (size_t i = 0; i < n; i++) sampler_accept(smp, prompt[i]);
    double t0 = seconds_now();
    int rc = model_eval_prompt(m, prompt, n, logits, &st->n_reused);
    double t1 = seconds_now();
    st->prompt_seconds = t1 - t0;
    if (rc == KB_ECANCELLED) rc = KB_OK, st->stop_reason = KB_STOP_CANCEL; /* stopped during the prompt */
    if (rc == KB_OK && !st->stop_reason) {
        if (gp->max_tokens <= 0) st->stop_reason = KB_STOP_LENGTH;
        else rc = generate_tokens(m, smp, gp, fn, user, st, logits, &pend);
    }
    st->generate_seconds = seconds_now() - t1;
    free(pend.buf);
    free(logits);
    return rc;
}
