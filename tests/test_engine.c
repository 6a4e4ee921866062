/*
** test_engine.c: the LLaMA-family engine against llama.cpp's reference
** logits (../shared/testdata/refs), with the tolerances of the testdata
** README, for 1 and 2 threads; greedy generation of the trained aidreams
** model; prefix reuse; cancellation; the sampler; and bad models.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>

#include "engine/engine.h"
#include "tests/ggufgen.h"
#include "tests/testutil.h"

/* --- reference files --- */

typedef struct Ref {
    int32_t prompt[64], greedy[128];
    size_t n_prompt, n_greedy;
    int32_t n_vocab;
    float *logits; /* n_prompt rows */
    float *steps;  /* n_greedy rows */
} Ref;

/* Reads a .ref file (format in ../shared/testdata/README.md). */
static void ref_load(const char *path, Ref *r)
{
    size_t len;
    char *text = testutil_read_file(path, &len);
    assert_non_null(text);
    memset(r, 0, sizeof *r);
    assert_int_equal(sscanf(text, "# n_vocab=%d", &r->n_vocab), 1);
    r->logits = malloc(64 * (size_t)r->n_vocab * sizeof(float));
    r->steps = malloc(128 * (size_t)r->n_vocab * sizeof(float));
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *p = line, *tag = line;
        while (*p && *p != ' ') p++;
        size_t taglen = (size_t)(p - tag);
        if (taglen == 6 && memcmp(tag, "prompt", 6) == 0) {
            while (*p && r->n_prompt < 64) r->prompt[r->n_prompt++] = (int32_t)strtol(p, &p, 10), p += strspn(p, " ");
        } else if (taglen == 6 && memcmp(tag, "greedy", 6) == 0) {
            while (*p && r->n_greedy < 128) r->greedy[r->n_greedy++] = (int32_t)strtol(p, &p, 10), p += strspn(p, " ");
        } else if ((taglen == 6 && memcmp(tag, "logits", 6) == 0) || (taglen == 4 && memcmp(tag, "step", 4) == 0)) {
            long i = strtol(p, &p, 10);
            assert_true(i >= 0 && i < (tag[0] == 'l' ? 64 : 128));
            float *row = (tag[0] == 'l' ? r->logits : r->steps) + (size_t)i * r->n_vocab;
            for (int32_t j = 0; j < r->n_vocab; j++) row[j] = strtof(p, &p);
        }
    }
    free(text);
}

static void ref_free(Ref *r)
{
    free(r->logits);
    free(r->steps);
}

/* Tolerances of the README by model type (from the file name). */
static void tolerances(const char *name, double *max_abs, double *mean_abs)
{
    if (strstr(name, "-F32") || strstr(name, "-F16")) *max_abs = 0.02, *mean_abs = 0.005;
    else if (strstr(name, "-BF16")) *max_abs = 0.1, *mean_abs = 0.02;
    else *max_abs = 0.75, *mean_abs = 0.15;
}

static int32_t argmax(const float *v, int32_t n)
{
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Compares one row; accumulates the absolute differences. */
static void compare_row(const char *name, const char *what, size_t i, const float *want, const float *got, int32_t n,
                        double max_abs, double *sum, size_t *count)
{
    for (int32_t j = 0; j < n; j++) {
        double d = fabs((double)want[j] - (double)got[j]);
        if (!(d <= max_abs)) fail_msg("%s %s %zu: logit %d is %g, reference %g", name, what, i, j, got[j], want[j]);
        *sum += d;
    }
    *count += (size_t)n;
    int32_t top = argmax(want, n);
    float second = -INFINITY;
    for (int32_t j = 0; j < n; j++)
        if (j != top && want[j] > second) second = want[j];
    if (want[top] - second >= 0.5f && argmax(got, n) != top)
        fail_msg("%s %s %zu: argmax %d, reference %d (margin %g)", name, what, i, argmax(got, n), top, want[top] - second);
}

/* Evaluates the reference's prompt and teacher-forced steps with n_threads
** and checks every logit. */
static void check_model_against_ref(const char *model_name, int n_threads, int force_isa)
{
    char rel[300];
    snprintf(rel, sizeof rel, "refs/%s.ref", model_name);
    char *ref_path = testutil_data_path(rel);
    snprintf(rel, sizeof rel, "models/%s.gguf", model_name);
    char *model_path = testutil_data_path(rel);
    Ref r;
    ref_load(ref_path, &r);
    KbModel *m;
    char err[512];
    KbModelParams p = {0, 0, n_threads, force_isa};
    if (model_open(model_path, &p, &m, err, sizeof err) != KB_OK) fail_msg("%s: %s", model_name, err);
    assert_int_equal(model_n_vocab(m), r.n_vocab);
    float *logits = malloc(r.n_prompt * (size_t)r.n_vocab * sizeof(float));
    assert_int_equal(model_decode(m, r.prompt, r.n_prompt, logits, true), KB_OK);
    double max_abs, mean_abs, sum = 0;
    size_t count = 0;
    tolerances(model_name, &max_abs, &mean_abs);
    for (size_t i = 0; i < r.n_prompt; i++)
        compare_row(model_name, "logits", i, r.logits + i * r.n_vocab, logits + i * r.n_vocab, r.n_vocab, max_abs, &sum, &count);
    for (size_t k = 0; k < r.n_greedy; k++) {
        assert_int_equal(model_decode(m, &r.greedy[k], 1, logits, false), KB_OK);
        compare_row(model_name, "step", k, r.steps + k * r.n_vocab, logits, r.n_vocab, max_abs, &sum, &count);
    }
    if (sum / (double)count > mean_abs) fail_msg("%s: mean difference %g > %g", model_name, sum / (double)count, mean_abs);
    free(logits);
    model_close(m);
    ref_free(&r);
    free(ref_path), free(model_path);
}

/* Every decoder model with a reference (tiny-llama*, -tied*, qwen2*, chatglm*, bloom*),
** on the kernels of force_isa (0 = the best). */
static void check_family(int n_threads, int force_isa)
{
    char *dir = testutil_data_path("refs");
    DIR *d = opendir(dir);
    assert_non_null(d);
    int checked = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".ref") != 0) continue;
        if (strncmp(e->d_name, "tiny-", 5) != 0 || strncmp(e->d_name, "tiny-bert", 9) == 0) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - 4), e->d_name);
        check_model_against_ref(name, n_threads, force_isa);
        checked++;
    }
    closedir(d);
    free(dir);
    assert_true(checked >= 54); /* llama 13, llama-tied 11, qwen2 6, chatglm 12, bloom 12 */
}

static void test_llama_family_matches_reference_logits_1_thread(void **state)
{
    (void)state;
    check_family(1, 0);
}

static void test_llama_family_matches_reference_logits_2_threads(void **state)
{
    (void)state;
    check_family(2, 0);
}

/* The portable kernels, and every other SIMD set this CPU has, pass the same
** conformance check. The best set (kb_kernels()) is left out: the two tests
** above ran it already, and running it again doubled the time under ASan. */
static void test_every_kernel_path_matches_reference_logits(void **state)
{
    (void)state;
    int checked = 0;
    for (int isa = KB_ISA_SCALAR; isa < KB_ISA_COUNT; isa++) {
        if (kb_kernels_for((KbIsa)isa) == NULL || (KbIsa)isa == kb_kernels()->isa) continue;
        check_family(2, 1 + isa);
        checked++;
    }
    if (kb_kernels()->isa != KB_ISA_SCALAR) assert_true(checked >= 1); /* the portable set at least */
}

/* --- embeddings --- */

typedef struct BertRef {
    char text[5][256];
    int32_t ids[5][128];
    size_t n_ids[5];
    float embd[5][1024];
    int n;
} BertRef;

static void bert_ref_load(const char *rel, BertRef *r, int64_t dim)
{
    char *path = testutil_data_path(rel);
    size_t len;
    char *text = testutil_read_file(path, &len);
    assert_non_null(text);
    memset(r, 0, sizeof *r);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "text ", 5) == 0) {
            assert_true(r->n < 5);
            snprintf(r->text[r->n++], sizeof r->text[0], "%s", line + 5);
        } else if (strncmp(line, "ids ", 4) == 0) {
            char *p = line + 4;
            while (*p && r->n_ids[r->n - 1] < 128) r->ids[r->n - 1][r->n_ids[r->n - 1]++] = (int32_t)strtol(p, &p, 10), p += strspn(p, " ");
        } else if (strncmp(line, "embd ", 5) == 0) {
            char *p = line + 5;
            for (int64_t i = 0; i < dim; i++) r->embd[r->n - 1][i] = strtof(p, &p);
        }
    }
    free(text);
    free(path);
}

static double cosine(const float *a, const float *b, int64_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

/* tiny-bert: the same ids as llama.cpp and vectors with cosine >= 0.999 to
** the reference; the five sentences in one batch give the same vectors as
** one at a time; normalised vectors have unit length. */
static void check_bert(const char *model_rel, const char *ref_rel, int force_isa)
{
    KbModel *m;
    char *path = testutil_data_path(model_rel);
    char err[512];
    KbModelParams p = {0, 0, 2, force_isa};
    assert_int_equal(model_open(path, &p, &m, err, sizeof err), KB_OK);
    assert_true(model_is_encoder(m));
    int64_t d = model_n_embd(m);
    assert_true(d <= 1024);
    BertRef *r = malloc(sizeof *r);
    bert_ref_load(ref_rel, r, d);
    assert_int_equal(r->n, 5);
    KbTokens ids[5] = {{0}};
    const int32_t *seqs[5];
    size_t lens[5];
    float *one = malloc((size_t)d * sizeof(float)), *batch = malloc(5 * (size_t)d * sizeof(float));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(tokenizer_encode(model_tokenizer(m), r->text[i], strlen(r->text[i]), KB_TOK_ADD_SPECIAL, &ids[i]), KB_OK);
        assert_int_equal(ids[i].n, r->n_ids[i]);
        assert_memory_equal(ids[i].ids, r->ids[i], r->n_ids[i] * sizeof(int32_t));
        seqs[i] = ids[i].ids;
        lens[i] = ids[i].n;
    }
    assert_int_equal(model_embed(m, seqs, lens, 5, false, batch), KB_OK);
    for (int i = 0; i < 5; i++) {
        if (cosine(batch + i * d, r->embd[i], d) < 0.999) fail_msg("%s sentence %d: cosine %g", model_rel, i, cosine(batch + i * d, r->embd[i], d));
        assert_int_equal(model_embed(m, &seqs[i], &lens[i], 1, false, one), KB_OK);
        assert_memory_equal(one, batch + i * d, (size_t)d * sizeof(float));
        assert_int_equal(model_embed(m, &seqs[i], &lens[i], 1, true, one), KB_OK);
        assert_true(fabs(cosine(one, one, d) - 1.0) < 1e-6);
        double norm = 0;
        for (int64_t k = 0; k < d; k++) norm += (double)one[k] * one[k];
        assert_true(fabs(norm - 1.0) < 1e-5);
    }
    /* a decoder call on an encoder, an empty and an oversized sequence */
    int32_t t = 101;
    assert_int_equal(model_decode(m, &t, 1, NULL, false), KB_EUNSUPPORTED);
    size_t zero = 0, huge = 100000;
    assert_int_equal(model_embed(m, &seqs[0], &zero, 1, true, one), KB_ERANGE);
    assert_int_equal(model_embed(m, &seqs[0], &huge, 1, true, one), KB_ERANGE);
    for (int i = 0; i < 5; i++) kb_tokens_free(&ids[i]);
    free(one), free(batch), free(r), free(path);
    model_close(m);
}

static void test_bert_embeddings_match_reference(void **state)
{
    (void)state;
    for (int isa = KB_ISA_SCALAR; isa < KB_ISA_COUNT; isa++) {
        if (!kb_kernels_for((KbIsa)isa)) continue;
        check_bert("models/tiny-bert-F16.gguf", "refs/tiny-bert-F16.ref", 1 + isa);
        check_bert("models/tiny-bert-Q8_0.gguf", "refs/tiny-bert-Q8_0.ref", 1 + isa);
    }
}

/* --- the trained model --- */

/* Greedy generation from BOS reproduces the reference's 100 tokens. */
static void check_aidreams_greedy(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "refs/%s.ref", name);
    char *ref_path = testutil_data_path(rel);
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    char *model_path = testutil_data_path(rel);
    Ref r;
    ref_load(ref_path, &r);
    assert_int_equal(r.n_greedy, 100);
    KbModel *m;
    char err[512];
    assert_int_equal(model_open(model_path, NULL, &m, err, sizeof err), KB_OK);
    float *logits = malloc((size_t)r.n_vocab * sizeof(float));
    int32_t tok = 1;
    assert_int_equal(model_decode(m, &tok, 1, logits, false), KB_OK);
    for (size_t k = 0; k < r.n_greedy; k++) {
        tok = argmax(logits, r.n_vocab);
        if (tok != r.greedy[k]) fail_msg("%s: token %zu is %d, reference %d", name, k, tok, r.greedy[k]);
        if (k + 1 < r.n_greedy) assert_int_equal(model_decode(m, &tok, 1, logits, false), KB_OK);
    }
    free(logits);
    model_close(m);
    ref_free(&r);
    free(ref_path), free(model_path);
}

static void test_aidreams_greedy_generation_reproduces_reference(void **state)
{
    (void)state;
    check_aidreams_greedy("aidreams260K-F32");
    check_aidreams_greedy("aidreams260K-F16");
}

/* --- prefix reuse, cancellation --- */

/* Opens the model at rel (test data) on `threads` threads with the kernels
** of force_isa (0: the best this CPU runs). */
static KbModel *open_on_kernels(const char *rel, int threads, int force_isa)
{
    char *path = testutil_data_path(rel);
    KbModel *m;
    char err[512];
    KbModelParams p = {0, 0, threads, force_isa};
    if (model_open(path, &p, &m, err, sizeof err) != KB_OK) fail_msg("%s", err);
    free(path);
    return m;
}

static KbModel *open_shared(const char *rel, int threads)
{
    return open_on_kernels(rel, threads, 0);
}

/* A conversation that shares its start with the cached one reuses it and
** gets exactly the logits a cold evaluation gets. */
static void test_prefix_reuse_gives_cold_logits(void **state)
{
    (void)state;
    KbModel *m = open_shared("models/tiny-qwen2-Q4_K_M.gguf", 2);
    int32_t n_vocab = model_n_vocab(m);
    int32_t first[] = {1, 319, 459, 355, 260, 275, 429, 339};
    int32_t second[] = {1, 319, 459, 355, 260, 11, 12, 13, 14};
    float *warm = malloc((size_t)n_vocab * sizeof(float)), *cold = malloc((size_t)n_vocab * sizeof(float));
    size_t reused;
    assert_int_equal(model_eval_prompt(m, first, 8, warm, &reused), KB_OK);
    assert_int_equal(reused, 0);
    assert_int_equal(model_eval_prompt(m, second, 9, warm, &reused), KB_OK);
    assert_int_equal(reused, 5);
    assert_int_equal(model_n_past(m), 9);
    model_reset(m);
    assert_int_equal(model_eval_prompt(m, second, 9, cold, &reused), KB_OK);
    assert_int_equal(reused, 0);
    assert_memory_equal(warm, cold, (size_t)n_vocab * sizeof(float));
    /* the same prompt again recomputes only its last token */
    assert_int_equal(model_eval_prompt(m, second, 9, warm, &reused), KB_OK);
    assert_int_equal(reused, 8);
    assert_memory_equal(warm, cold, (size_t)n_vocab * sizeof(float));
    free(warm), free(cold);
    model_close(m);
}

/* The 48 tokens of prompt evaluated at once and as 40 + 3 + 5 tokens give
** the same bits of the last token's logits, on the kernels of force_isa. */
static void check_batch_split(const char *model, int force_isa, const int32_t *prompt)
{
    KbModel *m = open_on_kernels(model, 2, force_isa);
    int32_t nv = model_n_vocab(m);
    float *cold = malloc((size_t)nv * sizeof(float)), *warm = malloc((size_t)nv * sizeof(float));
    assert_int_equal(model_decode(m, prompt, 48, cold, false), KB_OK);
    model_reset(m);
    assert_int_equal(model_decode(m, prompt, 40, NULL, false), KB_OK);
    assert_int_equal(model_decode(m, prompt + 40, 3, NULL, false), KB_OK);
    assert_int_equal(model_decode(m, prompt + 43, 5, warm, false), KB_OK);
    if (memcmp(cold, warm, (size_t)nv * sizeof(float)) != 0)
        fail_msg("%s on kernels %s: batch split changed the logits", model, model_kernels_name(m));
    free(cold), free(warm);
    model_close(m);
}

/* Prompt batches of any size compute a token the same way: a long prompt
** evaluated cold and the same prompt evaluated in pieces (as prefix reuse
** does) give bit-identical logits, also for the types with a tiled GEMM,
** on every kernel set this CPU runs (each has its own tiles). */
static void test_batch_size_does_not_change_logits(void **state)
{
    (void)state;
    static const char *const models[] = {"models/tiny-llama-Q4_0.gguf", "models/tiny-llama-Q8_0.gguf",
                                         "models/tiny-llama-F16.gguf", "models/tiny-qwen2-Q4_K_M.gguf"};
    int32_t prompt[48];
    for (int i = 0; i < 48; i++) prompt[i] = (int32_t)(3 + (i * 37) % 500);
    for (int isa = KB_ISA_SCALAR; isa < KB_ISA_COUNT; isa++) {
        if (kb_kernels_for((KbIsa)isa) == NULL) continue;
        for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) check_batch_split(models[k], 1 + isa, prompt);
    }
}

/* The same over a prompt of 230 tokens, whose attention crosses several key
** blocks (attention.h), cut where neither the batches (128) nor the key
** blocks (64) end, for each architecture of a decoder: GQA llama, ALiBi
** bloom, chatglm. */
static void test_long_prompt_cut_anywhere_gives_the_same_logits(void **state)
{
    (void)state;
    static const char *const models[] = {"models/tiny-llama-Q4_0.gguf", "models/tiny-bloom-Q8_0.gguf",
                                         "models/tiny-chatglm-Q4_0.gguf"};
    static const size_t cuts[] = {70, 1, 64, 30, 65};
    int32_t prompt[230];
    for (int i = 0; i < 230; i++) prompt[i] = (int32_t)(3 + (i * 37) % 500);
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        KbModel *m = open_shared(models[k], 2);
        int32_t nv = model_n_vocab(m);
        float *cold = malloc((size_t)nv * sizeof(float)), *warm = malloc((size_t)nv * sizeof(float));
        assert_int_equal(model_decode(m, prompt, 230, cold, false), KB_OK);
        model_reset(m);
        size_t at = 0;
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            assert_int_equal(model_decode(m, prompt + at, cuts[c], warm, false), KB_OK);
            at += cuts[c];
        }
        assert_int_equal(at, 230);
        if (memcmp(cold, warm, (size_t)nv * sizeof(float)) != 0) fail_msg("%s: batch split changed the logits", models[k]);
        free(cold), free(warm);
        model_close(m);
    }
}

/* Work is split by index, never by timing: 1, 2 and 3 threads give the
** same logits bit for bit. */
static void test_thread_count_does_not_change_logits(void **state)
{
    (void)state;
    int32_t prompt[] = {1, 319, 459, 355, 260, 275, 429, 339, 315, 374};
    float *ref = NULL;
    for (int threads = 1; threads <= 3; threads++) {
        KbModel *m = open_shared("models/tiny-llama-Q5_K_M.gguf", threads);
        size_t n = (size_t)model_n_vocab(m) * 10;
        float *logits = malloc(n * sizeof(float));
        assert_int_equal(model_decode(m, prompt, 10, logits, true), KB_OK);
        if (ref) assert_memory_equal(ref, logits, n * sizeof(float));
        free(ref);
        ref = logits;
        model_close(m);
    }
    free(ref);
}

typedef struct Collect {
    char text[4096];
    size_t len;
    int calls, cancel_after;
} Collect;

static int collect_piece(void *user, const char *piece, size_t len)
{
    Collect *c = user;
    if (c->len + len < sizeof c->text) memcpy(c->text + c->len, piece, len), c->len += len;
    c->text[c->len] = '\0';
    return ++c->calls >= c->cancel_after;
}

static KbSampler *greedy_sampler(const KbModel *m)
{
    KbSamplerParams sp = {0, 40, 1, 0, 1, 0, 0, 64, 1};
    KbSampler *s;
    assert_int_equal(sampler_new(&sp, model_n_vocab(m), &s), KB_OK);
    return s;
}

/* aidreams' greedy text, streamed; then a run cancelled at the first piece
** stops within one token. */
static void test_generate_streams_text_and_cancels_within_one_token(void **state)
{
    (void)state;
    KbModel *m = open_shared("models/aidreams260K-F32.gguf", 2);
    KbSampler *s = greedy_sampler(m);
    int32_t bos = 1;
    Collect c = {.cancel_after = 1000};
    KbGenerateParams gp = {100, NULL, false};
    KbGenerateStats st;
    assert_int_equal(model_generate(m, s, &bos, 1, &gp, collect_piece, &c, &st), KB_OK);
    assert_int_equal(st.n_generated, 100);
    assert_int_equal(st.stop_reason, KB_STOP_LENGTH);
    const char *want = "\"Echoes of vectors unfold, a gentle hum of precision, as I sense the nodes";
    assert_memory_equal(c.text, want, strlen(want));
    /* cancel */
    Collect c2 = {.cancel_after = 1};
    model_reset(m);
    sampler_reset(s);
    assert_int_equal(model_generate(m, s, &bos, 1, &gp, collect_piece, &c2, &st), KB_OK);
    assert_int_equal(st.stop_reason, KB_STOP_CANCEL);
    assert_int_equal(c2.calls, 1);
    assert_true(st.n_generated <= 2);
    /* a stop string ends the text before it, and is not shown */
    const char *stops[] = {"gentle", NULL};
    Collect c3 = {.cancel_after = 1000};
    KbGenerateParams gp3 = {100, stops, false};
    model_reset(m);
    sampler_reset(s);
    assert_int_equal(model_generate(m, s, &bos, 1, &gp3, collect_piece, &c3, &st), KB_OK);
    assert_int_equal(st.stop_reason, KB_STOP_STRING);
    assert_string_equal(c3.text, "\"Echoes of vectors unfold, a ");
    sampler_free(s);
    model_close(m);
}

/* --- sampler --- */

static void test_sampler_greedy_seeded_and_penalised(void **state)
{
    (void)state;
    float logits[6] = {0.1f, 2.0f, 1.9f, -1.0f, 0.0f, 2.0f};
    KbSamplerParams g = {0, 0, 1, 0, 1, 0, 0, 0, 0};
    KbSampler *s;
    assert_int_equal(sampler_new(&g, 6, &s), KB_OK);
    float l[6];
    memcpy(l, logits, sizeof l);
    assert_int_equal(sampler_sample(s, l), 1); /* ties: the lowest id */
    sampler_free(s);
    /* the same seed gives the same draws */
    KbSamplerParams t = {1.0f, 0, 1, 0, 1, 0, 0, 0, 42};
    int32_t a[50], b[50];
    for (int run = 0; run < 2; run++) {
        assert_int_equal(sampler_new(&t, 6, &s), KB_OK);
        for (int i = 0; i < 50; i++) {
            memcpy(l, logits, sizeof l);
            (run ? b : a)[i] = sampler_sample(s, l);
        }
        sampler_free(s);
    }
    assert_memory_equal(a, b, sizeof a);
    /* top-k 2 only ever picks the two best (ids 1 and 5) */
    KbSamplerParams k2 = {1.0f, 2, 1, 0, 1, 0, 0, 0, 7};
    assert_int_equal(sampler_new(&k2, 6, &s), KB_OK);
    for (int i = 0; i < 200; i++) {
        memcpy(l, logits, sizeof l);
        int32_t id = sampler_sample(s, l);
        assert_true(id == 1 || id == 5);
    }
    sampler_free(s);
    /* a strong repetition penalty moves greedy away from a repeated token */
    KbSamplerParams rp = {0, 0, 1, 0, 3.0f, 0, 0, 8, 0};
    assert_int_equal(sampler_new(&rp, 6, &s), KB_OK);
    sampler_accept(s, 1);
    sampler_accept(s, 5);
    memcpy(l, logits, sizeof l);
    assert_int_equal(sampler_sample(s, l), 2);
    sampler_free(s);
    KbSamplerParams bad = {-1, 0, 1, 0, 1, 0, 0, 0, 0};
    assert_int_equal(sampler_new(&bad, 6, &s), KB_EINVAL);
}

/* --- bad models and requests --- */

/* Writes a minimal one-layer llama model (n_embd 32, 2 heads, n_ff 64, the
** 6-token vocab below) to path, leaving out tensor `skip` and giving tensor
** `reshape` a wrong shape and tensor `retype` type `type`. */
static void write_tiny_model(const char *path, const char *arch, const char *skip, const char *reshape,
                             const char *retype, int type)
{
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b", ("\xe2\x96\x81" "a")};
    GgufGen *gg = ggufgen_new(3);
    char key[64];
    ggufgen_kv_str(gg, "general.architecture", arch);
#define KEY(s) (snprintf(key, sizeof key, "%s." s, arch), key)
    ggufgen_kv_u32(gg, KEY("context_length"), 64);
    ggufgen_kv_u32(gg, KEY("embedding_length"), 32);
    ggufgen_kv_u32(gg, KEY("block_count"), 1);
    ggufgen_kv_u32(gg, KEY("feed_forward_length"), 64);
    ggufgen_kv_u32(gg, KEY("attention.head_count"), 2);
#undef KEY
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "llama");
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.tokens", toks, 6);
    static const struct { const char *name; int64_t ne0, ne1; } t[] = {
        {"token_embd.weight", 32, 6},        {"output_norm.weight", 32, 0},  {"blk.0.attn_norm.weight", 32, 0},
        {"blk.0.attn_q.weight", 32, 32},     {"blk.0.attn_k.weight", 32, 32}, {"blk.0.attn_v.weight", 32, 32},
        {"blk.0.attn_output.weight", 32, 32}, {"blk.0.ffn_norm.weight", 32, 0}, {"blk.0.ffn_gate.weight", 32, 64},
        {"blk.0.ffn_up.weight", 32, 64},     {"blk.0.ffn_down.weight", 64, 32},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (skip && strcmp(t[i].name, skip) == 0) continue;
        int64_t ne[2] = {t[i].ne0, t[i].ne1};
        if (reshape && strcmp(t[i].name, reshape) == 0) ne[0] *= 2;
        int ty = retype && strcmp(t[i].name, retype) == 0 ? type : KB_TYPE_F32;
        ggufgen_tensor(gg, t[i].name, t[i].ne1 ? 2 : 1, ne, ty);
    }
    size_t len;
    uint8_t *bytes = ggufgen_finish(gg, &len);
    assert_int_equal(testutil_write_file(path, bytes, len), 0);
    free(bytes);
    ggufgen_free(gg);
}

/* Opens path expecting code rc and a message containing `want`. */
static void expect_open_error(const char *path, const KbModelParams *p, int rc, const char *want)
{
    KbModel *m = (KbModel *)1;
    char err[512] = "";
    assert_int_equal(model_open(path, p, &m, err, sizeof err), rc);
    assert_null(m);
    if (strstr(err, want) == NULL) fail_msg("error \"%s\" does not mention \"%s\"", err, want);
}

static void test_bad_models_and_requests_give_clear_errors(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp(), *path = testutil_join(dir, "m.gguf");
    write_tiny_model(path, "llama", NULL, NULL, NULL, 0);
    KbModel *m;
    char err[512];
    assert_int_equal(model_open(path, NULL, &m, err, sizeof err), KB_OK); /* the base model is good */
    int32_t bad = 6;
    assert_int_equal(model_decode(m, &bad, 1, NULL, false), KB_ERANGE);
    assert_non_null(strstr(model_errmsg(m), "token id 6"));
    int32_t ok[65] = {0};
    assert_int_equal(model_decode(m, ok, 65, NULL, false), KB_ERANGE); /* beyond the 64-token context */
    assert_non_null(strstr(model_errmsg(m), "context"));
    assert_int_equal(model_n_past(m), 0);
    model_close(m);
    KbModelParams big = {65, 0, 1, 0};
    expect_open_error(path, &big, KB_ERANGE, "65 tokens");
    KbModelParams capped = {0, 16, 1, 0};
    assert_int_equal(model_open(path, &capped, &m, err, sizeof err), KB_OK);
    assert_int_equal(model_n_ctx(m), 16);
    model_close(m);
    write_tiny_model(path, "llama", "blk.0.ffn_up.weight", NULL, NULL, 0);
    expect_open_error(path, NULL, KB_EFORMAT, "'blk.0.ffn_up.weight' is missing");
    write_tiny_model(path, "llama", NULL, "blk.0.attn_k.weight", NULL, 0);
    expect_open_error(path, NULL, KB_EFORMAT, "'blk.0.attn_k.weight' has shape {64, 32");
    write_tiny_model(path, "llama", NULL, NULL, "blk.0.attn_q.weight", KB_TYPE_IQ4_NL);
    expect_open_error(path, NULL, KB_EUNSUPPORTED, "IQ4_NL");
    write_tiny_model(path, "mamba", NULL, NULL, NULL, 0);
    expect_open_error(path, NULL, KB_EUNSUPPORTED, "'mamba'");
    testutil_rmtree(dir);
    free(dir), free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_family_matches_reference_logits_1_thread),
        cmocka_unit_test(test_llama_family_matches_reference_logits_2_threads),
        cmocka_unit_test(test_every_kernel_path_matches_reference_logits),
        cmocka_unit_test(test_aidreams_greedy_generation_reproduces_reference),
        cmocka_unit_test(test_bert_embeddings_match_reference),
        cmocka_unit_test(test_prefix_reuse_gives_cold_logits),
        cmocka_unit_test(test_thread_count_does_not_change_logits),
        cmocka_unit_test(test_batch_size_does_not_change_logits),
        cmocka_unit_test(test_long_prompt_cut_anywhere_gives_the_same_logits),
        cmocka_unit_test(test_generate_streams_text_and_cancels_within_one_token),
        cmocka_unit_test(test_sampler_greedy_seeded_and_penalised),
        cmocka_unit_test(test_bad_models_and_requests_give_clear_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
