/*
** cmd_quantize.c: `kbchat model quantize IN.gguf OUT.gguf TYPE`, the
** command-line face of kb_model_quantize (engine/quantize.h).
**
** It prints one line per tensor as it is written (to stdout), then a
** summary; warnings and errors go to stderr. Ctrl-C stops the run between
** chunks and the engine removes its temporary file, so OUT is either the
** complete new file or whatever it was before.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "engine/engine.h"

static volatile sig_atomic_t quantize_cancel;

static void on_interrupt(int sig)
{
    (void)sig;
    quantize_cancel = 1;
}

/* Formats a tensor shape as "2048 x 32000". */
static void format_shape(char *buf, size_t len, int n_dims, const int64_t *ne)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int d = 0; d < n_dims && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, d ? " x %lld" : "%lld", (long long)ne[d]);
}

static double mib(uint64_t bytes)
{
    return bytes / (1024.0 * 1024.0);
}

/* Prints the START warning or one tensor's line. */
static void print_progress(void *user, const KbQuantizeEvent *ev)
{
    const char *in = user;
    if (ev->kind == KB_QEV_START) {
        if (ev->n_requant > 0)
            fprintf(stderr, "kbchat: warning: %s: %lld tensor(s) are already quantized; "
                            "re-quantizing an already quantized model loses quality\n",
                    in, (long long)ev->n_requant);
        printf("quantizing %lld tensors with %d thread%s\n", (long long)ev->n_tensors, ev->n_threads,
               ev->n_threads == 1 ? "" : "s");
        fflush(stdout);
        return;
    }
    char shape[96], conv[64];
    format_shape(shape, sizeof shape, ev->n_dims, ev->ne);
    if (ev->choice.flags & KB_QPLAN_QUANTIZE)
        snprintf(conv, sizeof conv, "%s -> %s", kb_type_name(ev->from_type), kb_type_name(ev->choice.type));
    else
        snprintf(conv, sizeof conv, "%s (kept)", kb_type_name(ev->from_type));
    printf("[%*lld/%lld] %-28s %-14s %-14s %9.2f MiB -> %8.2f MiB\n", ev->n_tensors >= 100 ? 3 : 2,
           (long long)ev->index + 1, (long long)ev->n_tensors, ev->name, shape, conv, mib(ev->bytes_in),
           mib(ev->bytes_out));
    if ((ev->choice.flags & KB_QPLAN_FALLBACK) && ev->choice.type == KB_TYPE_F16)
        printf("        fallback: %lld columns do not split into %s blocks of %d, nor into the fallback's: F16\n",
               (long long)ev->ne[0], kb_type_name(ev->choice.wanted), kb_type_info(ev->choice.wanted)->block_size);
    else if (ev->choice.flags & KB_QPLAN_FALLBACK)
        printf("        fallback: %lld columns are not a multiple of %s's block of %d, so %s (llama.cpp's choice)\n",
               (long long)ev->ne[0], kb_type_name(ev->choice.wanted), kb_type_info(ev->choice.wanted)->block_size,
               kb_type_name(ev->choice.type));
    fflush(stdout);
}

static void print_summary(const char *out, const KbQuantizeStats *st, KbFtype ftype)
{
    const double n = st->n_elements > 0 ? (double)st->n_elements : 1.0;
    printf("wrote %s: %s (general.file_type %d), %lld tensors, %lld converted", out, kb_ftype_name(ftype),
           (int)ftype, (long long)st->n_tensors, (long long)st->n_quantized);
    if (st->n_fallback > 0) printf(", %lld with a fallback type", (long long)st->n_fallback);
    printf("\nsize: %.2f MiB -> %.2f MiB of weights (%.2f bits per weight -> %.2f); file %.2f MiB -> %.2f MiB; %.1f s\n",
           mib(st->bytes_in), mib(st->bytes_out), st->bytes_in * 8 / n, st->bytes_out * 8 / n, mib(st->file_bytes_in),
           mib(st->file_bytes_out),
           st->seconds);
}

/* Parses -t N; returns 0 (all cores) when absent, -1 when malformed. */
static int thread_option(const CliArgs *a)
{
    if (!cli_has(a, CLI_OPT_THREADS)) return 0;
    char *end;
    long n = strtol(a->value[CLI_OPT_THREADS], &end, 10);
    return *end == '\0' && n >= 1 && n <= 1024 ? (int)n : -1;
}

int cmd_model_quantize(const CliArgs *a, const char *const *args, int n_args)
{
    (void)n_args;
    const char *in = args[0], *out = args[1];
    KbQuantizeParams p = {.progress = print_progress, .user = (void *)in, .cancel = &quantize_cancel};
    if (kb_ftype_parse(args[2], &p.ftype) != KB_OK) {
        cli_print_errorf("model quantize: unknown type '%s' (expected one of %s)", args[2], kb_ftype_names());
        return CLI_EXIT_USAGE;
    }
    if ((p.n_threads = thread_option(a)) < 0) {
        cli_print_errorf("model quantize: --threads needs a number from 1 to 1024, got '%s'",
                a->value[CLI_OPT_THREADS]);
        return CLI_EXIT_USAGE;
    }
    struct sigaction sa = {.sa_handler = on_interrupt}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    quantize_cancel = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    KbQuantizeStats st;
    char err[1024];
    int rc = kb_model_quantize(in, out, &p, &st, err, sizeof err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc != KB_OK) {
        cli_print_errorf("model quantize: %s", err);
        return CLI_EXIT_FAIL;
    }
    print_summary(out, &st, p.ftype);
    return CLI_EXIT_OK;
}
