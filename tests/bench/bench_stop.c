/*
** bench_stop.c: how fast a prompt's evaluation stops once its cancel flag is
** set (model_set_cancel). Release build.
**
** A prompt of 1536 tokens is decoded from an empty cache (12 batches of
** 128); another thread sleeps a chosen time, notes the clock and sets the
** flag, as the UI thread does on Esc or a SIGINT handler on Ctrl-C. The
** latency is the time from that store to model_decode's return. The delays
** spread the stop over the whole prompt (early batches attend over a short
** cache, late ones over up to 1536 tokens), and one layer of a 128-token
** batch is the bound the engine promises.
**
** Usage: bench_stop MODEL.gguf [THREADS] [TRIALS]  (defaults: 2, 12), e.g.
**   make build/bench/tinyllama-1.1b-Q4_0.gguf build/release/tests/bench/bench_stop
**   build/release/tests/bench/bench_stop build/bench/tinyllama-1.1b-Q4_0.gguf
** Not run by `make bench`; no test depends on it.
*/
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/engine.h"

#define PROMPT_LEN 1536

/* One trial's stop: the flag, the delay before it is set, when it was. */
typedef struct Stopper {
    atomic_int flag;
    double delay_s, set_at;
} Stopper;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The stopping thread: sleeps delay_s, notes the time, sets the flag. */
static void *stop_later(void *arg)
{
    Stopper *s = arg;
    long ns = (long)(s->delay_s * 1e9);
    nanosleep(&(struct timespec){ns / 1000000000L, ns % 1000000000L}, NULL);
    s->set_at = now_seconds();
    atomic_store(&s->flag, 1);
    return NULL;
}

/* Decodes the prompt from an empty cache until stopped after delay_s;
** prints and returns the latency in seconds (negative: it finished first). */
static double trial(KbModel *m, const int32_t *prompt, double delay_s)
{
    Stopper s = {.delay_s = delay_s};
    pthread_t th;
    model_reset(m);
    model_set_cancel(m, &s.flag);
    if (pthread_create(&th, NULL, stop_later, &s) != 0) return -1;
    int rc = model_decode(m, prompt, PROMPT_LEN, NULL, false);
    double done = now_seconds();
    pthread_join(th, NULL);
    model_set_cancel(m, NULL);
    if (rc != KB_ECANCELLED) {
        printf("  stop after %.2f s: decode ended first (%s)\n", delay_s, kb_strerror(rc));
        return -1;
    }
    printf("  stop after %.2f s: %4lld tokens kept, stopped in %.1f ms\n", delay_s, (long long)model_n_past(m),
           (done - s.set_at) * 1e3);
    return done - s.set_at;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_stop MODEL.gguf [THREADS] [TRIALS]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2, trials = argc > 3 ? atoi(argv[3]) : 12;
    KbModelParams p = {PROMPT_LEN, 0, threads, 0};
    KbModel *m;
    char err[512];
    if (model_open(argv[1], &p, &m, err, sizeof err) != KB_OK) {
        fprintf(stderr, "bench_stop: %s\n", err);
        return 1;
    }
    int32_t *prompt = malloc(PROMPT_LEN * sizeof *prompt);
    for (int i = 0; i < PROMPT_LEN; i++) prompt[i] = (int32_t)(3 + (i * 37) % (model_n_vocab(m) - 3));
    double t0 = now_seconds();
    model_decode(m, prompt, 128, NULL, false); /* one batch, uninterrupted: the scale of a layer */
    double batch_s = now_seconds() - t0, full_s = batch_s * PROMPT_LEN / 128;
    printf("%s, %d threads: one 128-token batch %.0f ms (first batch), the prompt about %.1f s or more\n", argv[1],
           threads, batch_s * 1e3, full_s);
    double worst = 0, sum = 0;
    int n = 0;
    for (int i = 0; i < trials; i++) {
        double lat = trial(m, prompt, full_s * (i + 0.5) / trials);
        if (lat < 0) continue;
        sum += lat, n++;
        if (lat > worst) worst = lat;
    }
    if (n > 0) printf("stop latency over %d trials: mean %.1f ms, worst %.1f ms\n", n, sum / n * 1e3, worst * 1e3);
    free(prompt);
    model_close(m);
    return 0;
}
