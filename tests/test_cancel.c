/*
** test_cancel.c: stopping an evaluation with the cancel flag
** (model_set_cancel). The flag is set from inside the evaluation by the
** check hook (model_set_check_hook) at a chosen check, so every stop lands
** at a known layer or batch boundary: no timing is involved.
**
** Each decoder is 2 layers deep, so a prompt batch asks 3 times: before
** layer 0, before layer 1, after the batch. A stop must drop the batch it
** cuts, keep the batches completed before it, and leave a cache from which
** the same prompt gives bit-identical logits to an uninterrupted run.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "tests/testutil.h"

#define PROMPT_LEN 200 /* two batches: 128 + 72 (the tiny models hold 256) */
#define BATCH 128      /* MODEL_MAX_BATCH */

/* The hook's state: sets *flag at check number stop_at (1 = the first). */
typedef struct StopAt {
    atomic_int flag;
    int checks, stop_at;
    int batch_checks;  /* of them, after a completed batch */
} StopAt;

/* The check hook: counts the checks and sets the flag at the chosen one. */
static void stop_at_check(void *user, bool batch_done)
{
    StopAt *s = user;
    s->checks++;
    s->batch_checks += batch_done;
    if (s->checks == s->stop_at) atomic_store(&s->flag, 1);
}

/* Opens a model of the shared test data with 2 threads. */
static KbModel *open_model(const char *rel)
{
    char *path = testutil_data_path(rel);
    KbModel *m;
    char err[512];
    KbModelParams p = {0, 0, 2, 0};
    if (model_open(path, &p, &m, err, sizeof err) != KB_OK) fail_msg("%s", err);
    free(path);
    return m;
}

/* A prompt of PROMPT_LEN ids within the tiny models' 512-token vocabulary. */
static void fill_prompt(int32_t *prompt)
{
    prompt[0] = 1;
    for (int i = 1; i < PROMPT_LEN; i++) prompt[i] = (int32_t)(3 + (i * 37) % 500);
}

/* Tokens in the cache after a stop at check k of a decode of PROMPT_LEN
** tokens by a model of n_layer layers: the batches completed before it. */
static int64_t kept_after_stop(int k, int n_layer)
{
    int64_t done = (int64_t)(k / (n_layer + 1)) * BATCH;
    return done < PROMPT_LEN ? done : PROMPT_LEN;
}

/* For every check k of a 2-batch prompt: stopping there returns
** KB_ECANCELLED with exactly the completed batches cached, and evaluating the
** prompt again (reusing them) gives the logits of an uninterrupted run. */
static void check_stops_of(const char *rel)
{
    KbModel *m = open_model(rel);
    int32_t prompt[PROMPT_LEN];
    fill_prompt(prompt);
    size_t nv = (size_t)model_n_vocab(m), reused;
    float *cold = malloc(nv * sizeof(float)), *warm = malloc(nv * sizeof(float));
    assert_int_equal(model_eval_prompt(m, prompt, PROMPT_LEN, cold, NULL), KB_OK);
    int n_layer = 2, checks_per_run = 2 * (n_layer + 1);
    for (int k = 1; k <= checks_per_run; k++) {
        StopAt s = {.stop_at = k};
        model_reset(m);
        model_set_cancel(m, &s.flag);
        model_set_check_hook(m, stop_at_check, &s);
        int rc = model_eval_prompt(m, prompt, PROMPT_LEN, warm, &reused);
        if (rc != KB_ECANCELLED) fail_msg("%s, stop at check %d: %s", rel, k, kb_strerror(rc));
        assert_int_equal(s.checks, k); /* it stopped at the first check that saw the flag */
        assert_int_equal(model_n_past(m), kept_after_stop(k, n_layer));
        assert_non_null(strstr(model_errmsg(m), "cancelled"));
        /* with the flag still set nothing more is computed (the last token
        ** is always evaluated again, so a complete prompt loses it) */
        int64_t kept = kept_after_stop(k, n_layer), reusable = kept < PROMPT_LEN ? kept : PROMPT_LEN - 1;
        assert_int_equal(model_eval_prompt(m, prompt, PROMPT_LEN, warm, &reused), KB_ECANCELLED);
        assert_int_equal(model_n_past(m), reusable);
        atomic_store(&s.flag, 0);
        s.stop_at = 0;
        assert_int_equal(model_eval_prompt(m, prompt, PROMPT_LEN, warm, &reused), KB_OK);
        assert_int_equal(reused, reusable);
        if (memcmp(cold, warm, nv * sizeof(float)) != 0) fail_msg("%s, stop at check %d: logits differ", rel, k);
    }
    model_set_check_hook(m, NULL, NULL);
    model_set_cancel(m, NULL);
    free(cold), free(warm);
    model_close(m);
}

static void test_llama_stops_between_layers_and_keeps_complete_batches(void **state)
{
    (void)state;
    check_stops_of("models/tiny-llama-Q4_0.gguf");
    check_stops_of("models/tiny-qwen2-Q4_K_M.gguf");
}

static void test_chatglm_and_bloom_stop_between_layers(void **state)
{
    (void)state;
    check_stops_of("models/tiny-chatglm-Q8_0.gguf");
    check_stops_of("models/tiny-bloom-Q4_0.gguf");
}

/* A flag already set stops a decode before its first layer: nothing cached. */
static void test_flag_set_before_decode_computes_nothing(void **state)
{
    (void)state;
    KbModel *m = open_model("models/tiny-llama-Q8_0.gguf");
    atomic_int flag = 1;
    int32_t prompt[PROMPT_LEN];
    fill_prompt(prompt);
    model_set_cancel(m, &flag);
    assert_int_equal(model_decode(m, prompt, 10, NULL, false), KB_ECANCELLED);
    assert_int_equal(model_n_past(m), 0);
    atomic_store(&flag, 0);
    assert_int_equal(model_decode(m, prompt, 10, NULL, false), KB_OK);
    assert_int_equal(model_n_past(m), 10);
    model_close(m);
}

/* Counts the pieces model_generate streams. */
static int count_piece(void *user, const char *piece, size_t len)
{
    (void)piece, (void)len;
    ++*(int *)user;
    return 0;
}

/* model_generate stopped during the prompt: KB_OK, KB_STOP_CANCEL, no
** token sampled, the first batch cached; stopped while generating (after
** the 3rd token's first layer): KB_STOP_CANCEL too. */
static void test_generate_reports_a_stop_during_the_prompt_as_cancel(void **state)
{
    (void)state;
    KbModel *m = open_model("models/tiny-llama-Q4_0.gguf");
    KbSamplerParams sp = {0, 40, 1, 0, 1, 0, 0, 64, 1};
    KbSampler *smp;
    assert_int_equal(sampler_new(&sp, model_n_vocab(m), &smp), KB_OK);
    int32_t prompt[PROMPT_LEN];
    fill_prompt(prompt);
    StopAt s = {.stop_at = 4}; /* before layer 0 of the second batch */
    model_set_cancel(m, &s.flag);
    model_set_check_hook(m, stop_at_check, &s);
    KbGenerateParams gp = {20, NULL, false};
    KbGenerateStats st;
    int pieces = 0;
    assert_int_equal(model_generate(m, smp, prompt, PROMPT_LEN, &gp, count_piece, &pieces, &st), KB_OK);
    assert_int_equal(st.stop_reason, KB_STOP_CANCEL);
    assert_int_equal(st.n_generated, 0);
    assert_int_equal(pieces, 0);
    assert_int_equal(model_n_past(m), BATCH);
    /* now in the generation: the prompt takes 2 + 1 checks (72 new tokens),
    ** each generated token 3 more */
    StopAt g = {.stop_at = 3 + 3 * 2 + 1};
    model_set_cancel(m, &g.flag);
    model_set_check_hook(m, stop_at_check, &g);
    sampler_reset(smp);
    assert_int_equal(model_generate(m, smp, prompt, PROMPT_LEN, &gp, count_piece, &pieces, &st), KB_OK);
    assert_int_equal(st.stop_reason, KB_STOP_CANCEL);
    assert_int_equal(st.n_reused, BATCH);
    assert_int_equal(st.n_generated, 3);
    assert_int_equal(model_n_past(m), PROMPT_LEN + 2); /* the 3rd token's batch was cut */
    sampler_free(smp);
    model_close(m);
}

/* An embedding model stops too: KB_ECANCELLED, then the same vectors as
** before once the flag is cleared. */
static void test_bert_embedding_stops(void **state)
{
    (void)state;
    KbModel *m = open_model("models/tiny-bert-Q8_0.gguf");
    int32_t ids[] = {101, 7592, 2088, 102};
    const int32_t *seqs[] = {ids};
    size_t lens[] = {4}, d = (size_t)model_n_embd(m);
    float *before = malloc(d * sizeof(float)), *after = malloc(d * sizeof(float));
    assert_int_equal(model_embed(m, seqs, lens, 1, true, before), KB_OK);
    StopAt s = {.stop_at = 2};
    model_set_cancel(m, &s.flag);
    model_set_check_hook(m, stop_at_check, &s);
    assert_int_equal(model_embed(m, seqs, lens, 1, true, after), KB_ECANCELLED);
    assert_int_equal(s.checks, 2);
    atomic_store(&s.flag, 0);
    assert_int_equal(model_embed(m, seqs, lens, 1, true, after), KB_OK);
    assert_memory_equal(before, after, d * sizeof(float));
    free(before), free(after);
    model_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_stops_between_layers_and_keeps_complete_batches),
        cmocka_unit_test(test_chatglm_and_bloom_stop_between_layers),
        cmocka_unit_test(test_flag_set_before_decode_computes_nothing),
        cmocka_unit_test(test_generate_reports_a_stop_during_the_prompt_as_cancel),
        cmocka_unit_test(test_bert_embedding_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
