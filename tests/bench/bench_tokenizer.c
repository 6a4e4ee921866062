/*
** bench_tokenizer.c: tokenizer throughput, one core, for each kind.
**
** The text is the shared test inputs (English, code, Chinese, mixed scripts,
** whitespace) repeated to about 8 MB and joined with paragraph breaks, a
** stand-in for the text of a PDF. For each vocabulary it reports the best
** of three runs in MB/s of input. `make bench` runs it; the goal is at least
** 5 MB/s for each kind. No test depends on these numbers.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"

#define TARGET_BYTES (8u << 20)

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0', *len = (size_t)n;
    return buf;
}

/* Builds the benchmark text from the test inputs, separators removed. */
static char *make_text(const char *dir, size_t *len)
{
    static const char *const files[] = {"ggml-vocab-llama-spm.gguf.inp", "zh.inp"};
    char *text = malloc(TARGET_BYTES + 8192), *parts[2];
    size_t plen[2], n = 0;
    for (int i = 0; i < 2; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, files[i]) >= (int)sizeof path) {
            fprintf(stderr, "bench_tokenizer: path too long: %s\n", dir);
            exit(1);
        }
        parts[i] = read_all(path, &plen[i]);
        if (!parts[i]) {
            fprintf(stderr, "bench_tokenizer: cannot read %s\n", path);
            exit(1);
        }
    }
    while (n < TARGET_BYTES) {
        for (int i = 0; i < 2; i++) {
            const char *sep = "\n__ggml_vocab_test__\n", *p = parts[i], *end = parts[i] + plen[i];
            while (p < end && n < TARGET_BYTES) {
                const char *s = strstr(p, sep);
                size_t k = s ? (size_t)(s - p) : (size_t)(end - p);
                if (k > 4096) k = 4096;
                memcpy(text + n, p, k);
                n += k;
                memcpy(text + n, "\n\n", 2);
                n += 2;
                p = s ? s + strlen(sep) : end;
            }
        }
    }
    free(parts[0]), free(parts[1]);
    *len = n;
    return text;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *data = argc > 1 ? argv[1] : "../shared/testdata";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/vocab", data);
    size_t len;
    char *text = make_text(dir, &len);
    static const char *const vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                                         "vocab/ggml-vocab-bert-bge.gguf"};
    printf("tokenizer throughput, one thread, %.1f MB of mixed Chinese/English text\n", len / 1e6);
    int slow = 0;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        char path[4096], err[512];
        snprintf(path, sizeof path, "%s/%s", data, vocabs[v]);
        GgufFile *g;
        Tokenizer *t;
        if (gguf_open(path, &g, err, sizeof err) != KB_OK || tokenizer_load(g, &t, err, sizeof err) != KB_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", err);
            return 1;
        }
        double best = 1e9;
        size_t n_tokens = 0;
        for (int run = 0; run < 3; run++) {
            KbTokens ids = {0};
            double t0 = now();
            tokenizer_encode(t, text, len, 0, &ids);
            double dt = now() - t0;
            if (dt < best) best = dt;
            n_tokens = ids.n;
            kb_tokens_free(&ids);
        }
        double mbs = len / 1e6 / best;
        printf("  %-34s %8.2f MB/s  %9zu tokens  %.3f s\n", vocabs[v], mbs, n_tokens, best);
        slow += mbs < 5.0;
        tokenizer_free(t);
        gguf_close(g);
    }
    free(text);
    if (slow) printf("below the 5 MB/s goal: %d\n", slow);
    return 0;
}
