/*
** cmd_bench.c: `kbchat bench`, the speed measurement the engine's goals are
** stated in (prompt processing and generation tokens/s, as llama-bench
** reports them: pp = a prompt of -p tokens evaluated as one batch; tg = -n
** tokens decoded one at a time; both after -d tokens already in the cache,
** 0 by default, so from an empty cache).
**
** The -d depth tokens are put in the cache untimed before each test; the
** engine keeps the longest common prefix (model_eval_prompt), so after the
** first time only the last depth token is evaluated again.
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
#include "app/term_text.h"
#include "engine/engine.h"

/* The options: -p, -n, -d, -t, -r. */
typedef struct BenchArgs {
    long long n_prompt, n_gen, n_depth, threads, reps;
} BenchArgs;

/* What the repetitions measured, one value per repetition. */
typedef struct BenchRuns {
    double *pp, *tg;     /* tokens/s */
    double *first_ms;    /* -p prompt started -> its first token chosen */
} BenchRuns;

typedef struct Stat {
    double mean, sd;
} Stat;

/* Monotonic wall-clock time in seconds. */
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
        cli_print_errorf("bench: %s: expected an integer %lld..%lld, got \"%s\"", cli_option_name(o), min, max,
                a->value[o]);
        return CLI_EXIT_USAGE;
    }
    *v = x;
    return 0;
}

/* The id of the largest of the n logits: the token a greedy answer starts with. */
static int32_t argmax_token(const float *logits, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* Makes the cache hold exactly depth[0..n_depth), untimed: model_eval_prompt
** reuses what is already cached, so only the last depth token is computed
** again after the first call. Returns the KB_* code. */
static int fill_depth(KbModel *m, const int32_t *depth, long long n_depth)
{
    if (n_depth == 0) {
        model_reset(m);
        return KB_OK;
    }
    return model_eval_prompt(m, depth, (size_t)n_depth, NULL, NULL);
}

/* Times one prompt of n tokens after the depth tokens, as one batch; stores
** the time until its first answer token is chosen in *first_ms. Returns
** tokens/s or -1 on failure. */
static double time_prompt(KbModel *m, const int32_t *depth, long long n_depth, const int32_t *tokens, long long n,
                          float *logits, double *first_ms)
{
    if (fill_depth(m, depth, n_depth) != KB_OK) return -1;
    double t0 = now_seconds();
    if (model_decode(m, tokens, (size_t)n, logits, false) != KB_OK) return -1;
    double t_prompt = now_seconds() - t0;
    volatile int32_t first = argmax_token(logits, model_n_vocab(m)); /* volatile: kept, and timed */
    (void)first;
    *first_ms = (now_seconds() - t0) * 1000;
    return (double)n / t_prompt;
}

/* Times n single-token decodes after the depth tokens; tokens/s or -1. */
static double time_generation(KbModel *m, const int32_t *depth, long long n_depth, const int32_t *tokens, long long n,
                              float *logits)
{
    if (fill_depth(m, depth, n_depth) != KB_OK) return -1;
    double t0 = now_seconds();
    for (long long i = 0; i < n; i++)
        if (model_decode(m, &tokens[i], 1, logits, false) != KB_OK) return -1;
    return (double)n / (now_seconds() - t0);
}

/* Runs the warm-up and the repetitions; fills runs (reps values each).
** Random ids: the first n_depth are the depth, the rest the prompt and the
** generated tokens. */
static int run_bench(KbModel *m, const BenchArgs *b, BenchRuns *runs)
{
    int32_t n_vocab = model_n_vocab(m);
    long long n_new = b->n_prompt > b->n_gen ? b->n_prompt : b->n_gen;
    long long n_tok = b->n_depth + n_new;
    int32_t *tokens = malloc((size_t)(n_tok ? n_tok : 1) * sizeof *tokens);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    int rc = tokens && logits ? 0 : CLI_EXIT_FAIL;
    srand(1234);
    for (long long i = 0; i < n_tok && rc == 0; i++) tokens[i] = rand() % n_vocab;
    const int32_t *depth = tokens, *fresh = tokens + b->n_depth;
    double warm_ms;
    if (rc == 0 && b->n_prompt) /* warm-up */
        rc = time_prompt(m, depth, b->n_depth, fresh, b->n_prompt < 8 ? b->n_prompt : 8, logits, &warm_ms) < 0;
    for (long long r = 0; r < b->reps && rc == 0; r++) {
        runs->first_ms[r] = 0;
        runs->pp[r] = b->n_prompt ? time_prompt(m, depth, b->n_depth, fresh, b->n_prompt, logits, &runs->first_ms[r]) : 0;
        runs->tg[r] = b->n_gen ? time_generation(m, depth, b->n_depth, fresh, b->n_gen, logits) : 0;
        if (runs->pp[r] < 0 || runs->tg[r] < 0) rc = CLI_EXIT_FAIL;
    }
    if (rc != 0) cli_print_errorf("bench: %s", model_errmsg(m));
    free(tokens);
    free(logits);
    return rc;
}

/* The name of a test as llama-bench prints it: "pp512", "tg128 @ d1536". */
static const char *test_name(char *buf, size_t len, const char *kind, long long n, long long n_depth)
{
    if (n_depth > 0) snprintf(buf, len, "%s%lld @ d%lld", kind, n, n_depth);
    else snprintf(buf, len, "%s%lld", kind, n);
    return buf;
}

/* Prints the results as a table or as one JSON object. */
static void print_results(const CliArgs *a, const char *path, KbModel *m, const BenchArgs *b, const BenchRuns *runs,
                          double load_ms, double start_ms)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = (double)ru.ru_maxrss / 1024.0;
    Stat pp = stat_of(runs->pp, b->reps), tg = stat_of(runs->tg, b->reps), first = stat_of(runs->first_ms, b->reps);
    double gbs = tg.mean * (double)model_weight_bytes_per_token(m) / 1e9;
    double tiled_mb = (double)model_packed_bytes(m) / 1e6;
    if (cli_has(a, CLI_OPT_JSON)) {
        fputc('{', stdout);
        json_put_member(stdout, "model", path);
        printf(", \"arch\": \"%s\", \"threads\": %d, \"kernels\": \"%s\", \"tiled_mb\": %.1f, "
               "\"reps\": %lld, \"depth\": %lld, \"pp_tokens\": %lld, \"pp_tok_s\": %.2f, \"pp_tok_s_sd\": %.2f, "
               "\"pp_first_token_ms\": %.1f, \"pp_first_token_ms_sd\": %.1f, "
               "\"tg_tokens\": %lld, \"tg_tok_s\": %.2f, \"tg_tok_s_sd\": %.2f, \"tg_bandwidth_gb_s\": %.2f, "
               "\"load_ms\": %.1f, \"first_token_ms\": %.1f, \"peak_rss_mb\": %.1f}\n",
               model_arch_name(m), model_n_threads(m), model_kernels_name(m), tiled_mb, b->reps, b->n_depth,
               b->n_prompt, pp.mean, pp.sd, first.mean, first.sd, b->n_gen, tg.mean, tg.sd, gbs, load_ms, start_ms,
               rss_mb);
        return;
    }
    char name[64];
    fputs("model:    ", stdout);
    term_fputs(stdout, path, TERM_LINE);
    printf(" (%s), %d threads, kernels %s, %lld repetitions\n", model_arch_name(m),
           model_n_threads(m), model_kernels_name(m), b->reps);
    if (tiled_mb > 0) printf("tiles:    %.1f MB of weights packed for the tiled kernels (docs/performance.md)\n", tiled_mb);
    printf("  %-16s %8s %20s\n", "test", "tokens", "tokens/s");
    if (b->n_prompt)
        printf("  %-16s %8lld %12.2f ± %-6.2f\n", test_name(name, sizeof name, "pp", b->n_prompt, b->n_depth),
               b->n_prompt, pp.mean, pp.sd);
    if (b->n_gen)
        printf("  %-16s %8lld %12.2f ± %-6.2f  (%.1f GB/s of weights)\n",
               test_name(name, sizeof name, "tg", b->n_gen, b->n_depth), b->n_gen, tg.mean, tg.sd, gbs);
    if (b->n_prompt)
        printf("answer:   first token %.1f ± %.1f ms after the start of a %lld-token prompt (depth %lld)\n", first.mean,
               first.sd, b->n_prompt, b->n_depth);
    printf("load:     %.1f ms; first token %.1f ms after start (load + 2 one-token decodes)\n", load_ms, start_ms);
    printf("memory:   peak resident %.1f MB\n", rss_mb);
}

/* Reads the options into *b (the configuration gives model.threads).
** Returns 0 or the exit code of a usage error, already reported. */
static int parse_bench_args(const CliArgs *a, const KbConfig *cfg, BenchArgs *b)
{
    int code = bench_opt(a, CLI_OPT_PROMPT, 0, 1 << 16, &b->n_prompt);
    if (code == 0) code = bench_opt(a, CLI_OPT_N_PREDICT, 0, 1 << 16, &b->n_gen);
    if (code == 0) code = bench_opt(a, CLI_OPT_DEPTH, 0, 1 << 20, &b->n_depth);
    if (code == 0) code = bench_opt(a, CLI_OPT_REPS, 1, 1000, &b->reps);
    b->threads = cfg->threads;
    if (code == 0) code = bench_opt(a, CLI_OPT_THREADS, 1, 1024, &b->threads);
    if (code == 0 && b->n_prompt == 0 && b->n_gen == 0) {
        fputs("kbchat: bench: nothing to measure: -p and -n are both 0\n", stderr);
        code = CLI_EXIT_USAGE;
    }
    if (code == 0 && cfg->model_path[0] == '\0') {
        fputs("kbchat: bench: no model given: pass --model FILE or set model.path\n", stderr);
        code = CLI_EXIT_USAGE;
    }
    return code;
}

/* The context the tests need: the depth plus the longer of the prompt and
** the generation (each test starts again from the depth), and at least the
** 2 tokens of the start-up decode. */
static long long context_needed(const BenchArgs *b)
{
    long long n = b->n_depth + (b->n_prompt > b->n_gen ? b->n_prompt : b->n_gen);
    return n > 2 ? n : 2;
}

/* Opens the model with exactly the context the tests need (less when the
** model's own is shorter: a usage error). Returns 0 or the exit code. */
static int open_bench_model(const char *path, const BenchArgs *b, KbModel **m)
{
    char err[1024];
    KbModelParams p = {0, context_needed(b), (int)b->threads, 0};
    if (model_open(path, &p, m, err, sizeof err) != KB_OK) {
        cli_print_errorf("%s: %s", path, err);
        return CLI_EXIT_FAIL;
    }
    if (model_n_ctx(*m) < context_needed(b)) {
        fprintf(stderr,
                "kbchat: bench: -d %lld plus the longer of -p %lld and -n %lld needs a context of %lld tokens; "
                "the model's is %lld\n",
                b->n_depth, b->n_prompt, b->n_gen, context_needed(b), (long long)model_n_ctx(*m));
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* Decodes BOS then one more token, one at a time, into the fresh model: the
** first token a user waits for after start. Returns the KB_* code. */
static int decode_first_token(KbModel *m)
{
    int32_t bos = tokenizer_bos(model_tokenizer(m));
    int32_t tok[2] = {bos >= 0 ? bos : 0, 0};
    int rc = model_decode(m, tok, 1, NULL, false);
    return rc == KB_OK ? model_decode(m, tok + 1, 1, NULL, false) : rc;
}

/* `kbchat bench`: opens the model with the context the tests need, times
** the start-up, runs the tests and prints them. Returns the exit code. */
int cmd_bench(const CliArgs *a, const char *const *args, int n_args)
{
    (void)args, (void)n_args;
    BenchArgs b = {128, 32, 0, 0, 5};
    KbConfig cfg = {0};
    KbModel *m = NULL;
    int code = cli_load_config(a, &cfg) == KB_OK ? 0 : CLI_EXIT_FAIL;
    if (code == 0) code = parse_bench_args(a, &cfg, &b);
    double t0 = now_seconds(), load_ms = 0, start_ms = 0;
    if (code == 0) code = open_bench_model(cfg.model_path, &b, &m);
    if (code == 0) {
        load_ms = (now_seconds() - t0) * 1000;
        if (decode_first_token(m) != KB_OK) {
            cli_print_errorf("bench: %s", model_errmsg(m));
            code = CLI_EXIT_FAIL;
        }
        start_ms = (now_seconds() - t0) * 1000;
    }
    BenchRuns runs = {calloc((size_t)b.reps, sizeof(double)), calloc((size_t)b.reps, sizeof(double)),
                      calloc((size_t)b.reps, sizeof(double))};
    if (code == 0 && (!runs.pp || !runs.tg || !runs.first_ms)) code = CLI_EXIT_FAIL;
    if (code == 0) code = run_bench(m, &b, &runs);
    if (code == 0) print_results(a, cfg.model_path, m, &b, &runs, load_ms, start_ms);
    free(runs.pp);
    free(runs.tg);
    free(runs.first_ms);
    model_close(m);
    config_free(&cfg);
    return code;
}
