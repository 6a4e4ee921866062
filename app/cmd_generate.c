/*
** cmd_generate.c: `kbchat logits` (the engine's conformance check against
** the reference files) and `kbchat generate` (streamed text generation).
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/stop.h"
#include "app/term_text.h"
#include "engine/engine.h"

/* --- option values --- */

/* Parses option o as an integer in [min, max] into *v (unchanged when the
** option is absent). Returns 0, or prints a usage error and returns its code. */
static int opt_int(const CliArgs *a, CliOpt o, long long min, long long max, long long *v)
{
    const char *s = a->value[o];
    if (!cli_has(a, o)) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < min || x > max) {
        cli_print_errorf("%s: expected an integer %lld..%lld, got \"%s\"", cli_option_name(o), min, max, s);
        return CLI_EXIT_USAGE;
    }
    *v = x;
    return 0;
}

/* Parses option o as a number in [min, max] into *v. */
static int opt_float(const CliArgs *a, CliOpt o, double min, double max, double *v)
{
    const char *s = a->value[o];
    if (!cli_has(a, o)) return 0;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(x) || x < min || x > max) {
        cli_print_errorf("%s: expected a number %g..%g, got \"%s\"", cli_option_name(o), min, max, s);
        return CLI_EXIT_USAGE;
    }
    *v = x;
    return 0;
}

/* Parses "1,2,3" into a malloc'd id list. Returns 0, or prints an error. */
static int parse_ids(const char *s, const char *opt, int32_t **ids, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    *ids = malloc(cap * sizeof **ids);
    *n = 0;
    if (*ids == NULL) return CLI_EXIT_FAIL;
    for (const char *p = s;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            cli_print_errorf("%s: expected comma-separated token ids, got \"%s\"", opt, s);
            free(*ids);
            *ids = NULL;
            return CLI_EXIT_USAGE;
        }
        (*ids)[(*n)++] = (int32_t)v;
        if (*end == '\0') return 0;
        p = end + 1;
    }
}

/* --- opening the model --- */

/* Opens the model of --model / model.path with threads and context from
** the options or the configuration. Returns an exit code (0 = opened). */
int cli_open_model(const CliArgs *a, KbConfig *cfg, KbModel **m)
{
    long long threads = 0, ctx = 0;
    char err[1024];
    *m = NULL;
    if (cli_load_config(a, cfg) != KB_OK) return CLI_EXIT_FAIL;
    threads = cfg->threads;
    int code = opt_int(a, CLI_OPT_THREADS, 1, 1024, &threads);
    if (code == 0) code = opt_int(a, CLI_OPT_CTX_SIZE, 1, 1 << 24, &ctx);
    if (code != 0) return code;
    if (cfg->model_path[0] == '\0') {
        fputs("kbchat: no model given: pass --model FILE or set model.path in the configuration\n", stderr);
        return CLI_EXIT_USAGE;
    }
    KbModelParams p = {ctx, cfg->context_size, (int)threads, 0};
    if (model_open(cfg->model_path, &p, m, err, sizeof err) != KB_OK) {
        cli_print_errorf("%s: %s", cfg->model_path, err);
        return CLI_EXIT_FAIL;
    }
    return 0;
}

/* --- logits --- */

static void print_row(const char *tag, size_t i, const float *v, int32_t n)
{
    printf("%s %zu", tag, i);
    for (int32_t j = 0; j < n; j++) printf(" %.6g", v[j]);
    putchar('\n');
}

static int32_t argmax(const float *v, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Feeds n_steps tokens after the prompt: the argmax of the previous logits
** (gen) or follow[k]. Fills fed[] and steps (n_steps rows of n_vocab). */
static int run_steps(KbModel *m, const float *last, const int32_t *follow, size_t n_steps, int32_t *fed, float *steps)
{
    int32_t nv = model_n_vocab(m);
    for (size_t k = 0; k < n_steps; k++) {
        fed[k] = follow ? follow[k] : argmax(k ? steps + (k - 1) * nv : last, nv);
        if (model_decode(m, &fed[k], 1, steps + k * nv, false) != KB_OK) {
            cli_print_error(model_errmsg(m));
            return CLI_EXIT_FAIL;
        }
    }
    return 0;
}

int cmd_logits(const CliArgs *a, const char *const *args, int n_args)
{
    (void)args, (void)n_args;
    if (!cli_has(a, CLI_OPT_TOKENS)) {
        fputs("kbchat: logits: --tokens IDS is required\nusage: kbchat logits --tokens IDS [--gen N | --follow IDS] [-t N]\n", stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_has(a, CLI_OPT_GEN) && cli_has(a, CLI_OPT_FOLLOW)) {
        fputs("kbchat: logits: give --gen or --follow, not both\n", stderr);
        return CLI_EXIT_USAGE;
    }
    int32_t *prompt = NULL, *follow = NULL;
    size_t n_prompt = 0, n_steps = 0;
    long long gen = 0;
    int code = parse_ids(a->value[CLI_OPT_TOKENS], "--tokens", &prompt, &n_prompt);
    if (code == 0 && cli_has(a, CLI_OPT_FOLLOW)) code = parse_ids(a->value[CLI_OPT_FOLLOW], "--follow", &follow, &n_steps);
    if (code == 0) code = opt_int(a, CLI_OPT_GEN, 0, 1 << 20, &gen);
    if (!follow) n_steps = (size_t)gen;
    KbConfig cfg = {0};
    KbModel *m = NULL;
    if (code == 0) code = cli_open_model(a, &cfg, &m);
    int32_t nv = m ? model_n_vocab(m) : 0;
    float *logits = m ? malloc(n_prompt * (size_t)nv * sizeof *logits) : NULL;
    float *steps = m ? malloc((n_steps + 1) * (size_t)nv * sizeof *steps) : NULL;
    int32_t *fed = m ? malloc((n_steps + 1) * sizeof *fed) : NULL;
    if (code == 0 && (!logits || !steps || !fed)) code = CLI_EXIT_FAIL;
    if (code == 0 && model_decode(m, prompt, n_prompt, logits, true) != KB_OK) {
        cli_print_error(model_errmsg(m));
        code = CLI_EXIT_FAIL;
    }
    if (code == 0) code = run_steps(m, logits + (n_prompt - 1) * nv, follow, n_steps, fed, steps);
    if (code == 0) {
        printf("# n_vocab=%d prompt=%zu\nprompt", nv, n_prompt);
        for (size_t i = 0; i < n_prompt; i++) printf(" %d", prompt[i]);
        putchar('\n');
        for (size_t i = 0; i < n_prompt; i++) print_row("logits", i, logits + i * nv, nv);
        if (n_steps) {
            printf("greedy");
            for (size_t k = 0; k < n_steps; k++) printf(" %d", fed[k]);
            putchar('\n');
        }
        for (size_t k = 0; k < n_steps; k++) print_row("step", k, steps + k * nv, nv);
    }
    free(logits), free(steps), free(fed), free(prompt), free(follow);
    config_free(&cfg);
    model_close(m);
    return code;
}

/* --- generate --- */

/* Streams a piece to stdout through the TermStream user (escaped unless
** --raw); stops when Ctrl-C was pressed. */
static int print_piece(void *user, const char *piece, size_t len)
{
    term_stream_write(user, stdout, piece, len, 0);
    fflush(stdout);
    return atomic_load(stop_sigint_flag());
}

/* Sampler settings: the configuration, overridden by the options. */
static int sampler_params(const CliArgs *a, const KbConfig *cfg, KbSamplerParams *p, long long *n_predict)
{
    double temp = cfg->temperature, top_p = cfg->top_p, min_p = cfg->min_p, rep = cfg->repeat_penalty;
    long long top_k = cfg->top_k, seed = cfg->seed;
    *n_predict = cfg->max_tokens;
    int code = opt_float(a, CLI_OPT_TEMP, 0, 5, &temp);
    if (code == 0) code = opt_float(a, CLI_OPT_TOP_P, 0, 1, &top_p);
    if (code == 0) code = opt_float(a, CLI_OPT_MIN_P, 0, 1, &min_p);
    if (code == 0) code = opt_float(a, CLI_OPT_REPEAT_PENALTY, 0.5, 5, &rep);
    if (code == 0) code = opt_int(a, CLI_OPT_TOP_K, 0, 1000, &top_k);
    if (code == 0) code = opt_int(a, CLI_OPT_SEED, -1, 4294967295ll, &seed);
    if (code == 0) code = opt_int(a, CLI_OPT_N_PREDICT, 0, 1 << 24, n_predict);
    if (seed < 0) seed = (long long)time(NULL) ^ (long long)getpid();
    *p = (KbSamplerParams){(float)temp, (int32_t)top_k, (float)top_p, (float)min_p, (float)rep, 0, 0,
                           (int32_t)cfg->repeat_last_n, (uint64_t)seed};
    return code;
}

int cmd_generate(const CliArgs *a, const char *const *args, int n_args)
{
    (void)args, (void)n_args;
    KbConfig cfg = {0};
    KbModel *m = NULL;
    KbSampler *smp = NULL;
    KbTokens prompt = {0};
    KbSamplerParams sp;
    long long n_predict;
    int code = cli_open_model(a, &cfg, &m);
    if (code == 0) code = sampler_params(a, &cfg, &sp, &n_predict);
    if (code == 0 && sampler_new(&sp, model_n_vocab(m), &smp) != KB_OK) code = CLI_EXIT_FAIL;
    const char *text = a->value[CLI_OPT_PROMPT] ? a->value[CLI_OPT_PROMPT] : "";
    if (code == 0 && tokenizer_encode(model_tokenizer(m), text, strlen(text), KB_TOK_ADD_SPECIAL | KB_TOK_PARSE_SPECIAL,
                                      &prompt) != KB_OK)
        code = CLI_EXIT_FAIL;
    if (code == 0 && prompt.n == 0) {
        fputs("kbchat: generate: the prompt is empty and the model adds no BOS token: give -p PROMPT\n", stderr);
        code = CLI_EXIT_USAGE;
    }
    KbGenerateStats st;
    TermStream out = {.raw = cli_has(a, CLI_OPT_RAW)};
    if (code == 0) {
        KbGenerateParams gp = {n_predict, NULL, cli_has(a, CLI_OPT_SPECIAL)};
        stop_watch(m, stop_sigint_flag());
        if (stop_catch_sigint() != 0) perror("kbchat: Ctrl-C will not stop the text: sigaction");
        if (model_generate(m, smp, prompt.ids, prompt.n, &gp, print_piece, &out, &st) != KB_OK) {
            fputc('\n', stderr);
            code = cli_print_error(model_errmsg(m));
        }
        term_stream_write(&out, stdout, "", 0, 1);
        stop_release_sigint();
    }
    if (code == 0 && st.stop_reason == KB_STOP_CANCEL) {
        fputs("\nkbchat: generate: stopped by Ctrl-C\n", stderr);
        code = CLI_EXIT_STOPPED;
    }
    if (code == 0) {
        putchar('\n');
        fflush(stdout);
        fprintf(stderr, "prompt: %zu tokens, %.2f tokens/s; generated: %zu tokens, %.2f tokens/s (%d threads, %s)\n",
                st.n_prompt, st.prompt_seconds > 0 ? (double)(st.n_prompt - st.n_reused) / st.prompt_seconds : 0.0,
                st.n_generated, st.generate_seconds > 0 ? (double)st.n_generated / st.generate_seconds : 0.0,
                model_n_threads(m), model_kernels_name(m));
    }
    kb_tokens_free(&prompt);
    sampler_free(smp);
    config_free(&cfg);
    model_close(m);
    return code;
}
