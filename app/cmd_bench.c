/*
** cmd_bench.c: `kbchat bench`, the speed measurement the engine's goals are
** stated in (prompt processing and generation tokens/s, as llama-bench
** reports them: pp = a prompt of -p tokens evaluated as one batch from an
** empty cache; tg = -n tokens decoded one at a time from an empty cache).
**
** Every figure printed is measured: wall-clock time around the engine calls,
** getrusage for peak memory, and the model's own count of weight bytes per
** token for the bandwidth.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "app/cli.h"
#include "engine/engine.h"

typedef struct BenchArgs {
    long long n_prompt, n_gen, threads, reps;
} BenchArgs;

typedef struct Stat {
    double mean, sd;
} Stat;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Mean and sample standard deviation of v[0..n). */
static Stat stat_of(const double *v, long long n)
{
    Stat s = {0, 0};
    for (long long i = 0; i < n; i++) s.mean += v[i];
    s.mean /= (double)n;
    for (long long i = 0; i < n && n > 1; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (double)(n - 1)) : 0;
    return s;
}

/* Parses the integer option o within [min, max] into *v (kept when absent). */
static int bench_opt(const CliArgs *a, CliOpt o, long long min, long long max, long long *v)
{
    if (!cli_has(a, o)) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(a->value[o], &end, 10);
    if (errno || end == a->value[o] || *end || x < min || x > max) {
        fprintf(stderr, "kbchat: bench: %s: expected an integer %lld..%lld, got \"%s\"\n", cli_option_name(o), min, max,
                a->value[o]);
        return CLI_EXIT_USAGE;
    }
    *v = x;
    return 0;
}

/* Times one prompt of n tokens; returns tokens/s or -1 on failure. */
static double time_prompt(KbModel *m, const int32_t *tokens, long long n, float *logits)
{
    model_reset(m);
    double t0 = now_seconds();
    if (model_decode(m, tokens, (size_t)n, logits, false) != KB_OK) return -1;
    return (double)n / (now_seconds() - t0);
}

/* Times n single-token decodes from an empty cache; tokens/s or -1. */
static double time_generation(KbModel *m, const int32_t *tokens, long long n, float *logits)
{
    model_reset(m);
    double t0 = now_seconds();
    for (long long i = 0; i < n; i++)
        if (model_decode(m, &tokens[i], 1, logits, false) != KB_OK) return -1;
    return (double)n / (now_seconds() - t0);
}

/* Runs the warm-up and the repetitions; fills pp and tg (reps values each). */
static int run_bench(KbModel *m, const BenchArgs *b, double *pp, double *tg)
{
    int32_t n_vocab = model_n_vocab(m);
    long long n_tok = b->n_prompt > b->n_gen ? b->n_prompt : b->n_gen;
    int32_t *tokens = malloc((size_t)(n_tok ? n_tok : 1) * sizeof *tokens);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    int rc = tokens && logits ? 0 : CLI_EXIT_FAIL;
    srand(1234);
    for (long long i = 0; i < n_tok && rc == 0; i++) tokens[i] = rand() % n_vocab;
    if (rc == 0 && b->n_prompt) rc = time_prompt(m, tokens, b->n_prompt < 8 ? b->n_prompt : 8, logits) < 0; /* warm-up */
    for (long long r = 0; r < b->reps && rc == 0; r++) {
        pp[r] = b->n_prompt ? time_prompt(m, tokens, b->n_prompt, logits) : 0;
        tg[r] = b->n_gen ? time_generation(m, tokens, b->n_gen, logits) : 0;
        if (pp[r] < 0 || tg[r] < 0) rc = CLI_EXIT_FAIL;
    }
    if (rc != 0) fprintf(stderr, "kbchat: bench: %s\n", model_errmsg(m));
    free(tokens);
    free(logits);
    return rc;
}

/* Prints the results as a table or as one JSON object. */
static void print_results(const CliArgs *a, const char *path, KbModel *m, const BenchArgs *b, Stat pp, Stat tg,
                          double load_ms, double first_ms)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = (double)ru.ru_maxrss / 1024.0;
    double gbs = tg.mean * (double)model_weight_bytes_per_token(m) / 1e9;
    double tiled_mb = (double)model_packed_bytes(m) / 1e6;
    if (cli_has(a, CLI_OPT_JSON)) {
        printf("{\"model\": \"%s\", \"arch\": \"%s\", \"threads\": %d, \"kernels\": \"%s\", \"tiled_mb\": %.1f, "
               "\"reps\": %lld, \"pp_tokens\": %lld, \"pp_tok_s\": %.2f, \"pp_tok_s_sd\": %.2f, "
               "\"tg_tokens\": %lld, \"tg_tok_s\": %.2f, \"tg_tok_s_sd\": %.2f, \"tg_bandwidth_gb_s\": %.2f, "
               "\"load_ms\": %.1f, \"first_token_ms\": %.1f, \"peak_rss_mb\": %.1f}\n",
               path, model_arch_name(m), model_n_threads(m), model_kernels_name(m), tiled_mb, b->reps, b->n_prompt, pp.mean,
               pp.sd, b->n_gen, tg.mean, tg.sd, gbs, load_ms, first_ms, rss_mb);
        return;
    }
    printf("model:    %s (%s), %d threads, kernels %s, %lld repetitions\n", path, model_arch_name(m),
           model_n_threads(m), model_kernels_name(m), b->reps);
    if (tiled_mb > 0) printf("tiles:    %.1f MB of weights packed for the VNNI tiles (docs/performance.md)\n", tiled_mb);
    printf("  %-8s %8s %20s\n", "test", "tokens", "tokens/s");
    if (b->n_prompt) printf("  pp%-6lld %8lld %12.2f ± %-6.2f\n", b->n_prompt, b->n_prompt, pp.mean, pp.sd);
    if (b->n_gen)
        printf("  tg%-6lld %8lld %12.2f ± %-6.2f  (%.1f GB/s of weights)\n", b->n_gen, b->n_gen, tg.mean, tg.sd, gbs);
    printf("load:     %.1f ms; first token %.1f ms after start\n", load_ms, first_ms);
    printf("memory:   peak resident %.1f MB\n", rss_mb);
}

int cmd_bench(const CliArgs *a, const char *const *args, int n_args)
{
    (void)args, (void)n_args;
    BenchArgs b = {128, 32, 0, 5};
    KbConfig cfg = {0};
    KbModel *m = NULL;
    char err[1024];
    int code = bench_opt(a, CLI_OPT_PROMPT, 0, 1 << 16, &b.n_prompt);
    if (code == 0) code = bench_opt(a, CLI_OPT_N_PREDICT, 0, 1 << 16, &b.n_gen);
    if (code == 0) code = bench_opt(a, CLI_OPT_REPS, 1, 1000, &b.reps);
    if (code == 0 && cli_load_config(a, &cfg) != KB_OK) code = CLI_EXIT_FAIL;
    b.threads = cfg.threads;
    if (code == 0) code = bench_opt(a, CLI_OPT_THREADS, 1, 1024, &b.threads);
    if (code == 0 && cfg.model_path[0] == '\0') {
        fputs("kbchat: bench: no model given: pass --model FILE or set model.path\n", stderr);
        code = CLI_EXIT_USAGE;
    }
    double t0 = now_seconds(), load_ms = 0, first_ms = 0;
    if (code == 0) {
        KbModelParams p = {0, b.n_prompt + b.n_gen + 1, (int)b.threads, 0};
        if (model_open(cfg.model_path, &p, &m, err, sizeof err) != KB_OK) {
            fprintf(stderr, "kbchat: %s: %s\n", cfg.model_path, err);
            code = CLI_EXIT_FAIL;
        } else if (model_n_ctx(m) < b.n_prompt + b.n_gen) {
            fprintf(stderr, "kbchat: bench: the model's context (%lld) is shorter than -p + -n\n", (long long)model_n_ctx(m));
            code = CLI_EXIT_USAGE;
        }
    }
    if (code == 0) {
        load_ms = (now_seconds() - t0) * 1000;
        int32_t tok[2] = {tokenizer_bos(model_tokenizer(m)) >= 0 ? tokenizer_bos(model_tokenizer(m)) : 0, 0};
        if (model_decode(m, tok, 1, NULL, false) != KB_OK || model_decode(m, tok + 1, 1, NULL, false) != KB_OK)
            code = CLI_EXIT_FAIL;
        first_ms = (now_seconds() - t0) * 1000;
    }
    double *pp = calloc((size_t)b.reps, sizeof *pp), *tg = calloc((size_t)b.reps, sizeof *tg);
    if (code == 0 && (!pp || !tg)) code = CLI_EXIT_FAIL;
    if (code == 0) code = run_bench(m, &b, pp, tg);
    if (code == 0) print_results(a, cfg.model_path, m, &b, stat_of(pp, b.reps), stat_of(tg, b.reps), load_ms, first_ms);
    free(pp);
    free(tg);
    model_close(m);
    config_free(&cfg);
    return code;
}
