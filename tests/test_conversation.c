/*
** test_conversation.c: the conversation manager (app/conversation.c) with
** real models from ../shared/testdata and real SQLite files.
**
** aidreams260K (a trained LLaMA with a 128-token context) gives meaningful
** greedy text and a small context for the budget; tiny-llama (random
** weights, the same 512-token vocabulary, 256 tokens of context) has room
** for a knowledge base's passages and a follow-up rewrite: its rewrites are
** nonsense, so those tests check the plumbing (which history the rewrite
** sees, which query is searched, the fallback), not the wording.
** Expected prompts are written by hand from docs/conversations.md.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "app/app.h"
#include "tests/testutil.h"

/* --- fixture --- */

typedef struct Fix {
    char *dir;        /* temporary: data/ and docs/ */
    KbConfig cfg;
    KbModel *model;
    char *model_path;
    Rag *rag;
    Conversation *conv;
} Fix;

static void set(Fix *f, const char *key, const char *value)
{
    if (config_set(&f->cfg, key, value, "test") != KB_OK) fail_msg("%s: %s", key, f->cfg.errmsg);
}

/* A conversation over model `rel` with the given context (0 = the model's). */
static Fix *fix_new(const char *rel, int64_t n_ctx)
{
    Fix *f = calloc(1, sizeof *f);
    char err[512];
    f->dir = testutil_mkdtemp();
    assert_int_equal(config_init(&f->cfg), KB_OK);
    char *data = testutil_join(f->dir, "data");
    set(f, "data_dir", data);
    set(f, "sampling.temperature", "0");
    set(f, "sampling.max_tokens", "12");
    set(f, "conversation.answer_reserve", "24");
    set(f, "model.threads", "2");
    free(data);
    f->model_path = testutil_data_path(rel);
    KbModelParams p = {n_ctx, 0, 2, 0};
    if (model_open(f->model_path, &p, &f->model, err, sizeof err) != KB_OK) fail_msg("%s", err);
    assert_int_equal(conv_new(&f->cfg, &f->conv), KB_OK);
    assert_int_equal(conv_set_model(f->conv, f->model, f->model_path), KB_OK);
    return f;
}

/* Opens the database (and tells the conversation). */
static void fix_open_store(Fix *f)
{
    if (rag_open(&f->rag, f->cfg.data_dir) != KB_OK) fail_msg("%s", rag_errmsg(f->rag));
    conv_set_store(f->conv, f->rag);
}

static void fix_free(Fix *f)
{
    conv_free(f->conv);
    model_close(f->model);
    rag_close(f->rag);
    config_free(&f->cfg);
    testutil_rmtree(f->dir);
    free(f->dir);
    free(f->model_path);
    free(f);
}

/* A knowledge base "animals" of two text files, indexed. */
static void fix_make_kb(Fix *f)
{
    char *docs = testutil_join(f->dir, "docs");
    char *g = testutil_join(docs, "giraffes.txt"), *p = testutil_join(docs, "penguins.txt");
    assert_int_equal(mkdir(docs, 0700), 0);
    const char *gt = "Giraffes have long necks. A giraffe sleeps two hours a day.\n";
    const char *pt = "Penguins live in Antarctica. Emperor penguins are the tallest.\n";
    assert_int_equal(testutil_write_file(g, gt, strlen(gt)), 0);
    assert_int_equal(testutil_write_file(p, pt, strlen(pt)), 0);
    if (f->rag == NULL) fix_open_store(f);
    RagKbSettings s = {.chunk_size = 500, .chunk_overlap = 80, .embed_model = ""};
    assert_int_equal(rag_kb_create(f->rag, "animals", &s), KB_OK);
    assert_int_equal(rag_kb_add(f->rag, "animals", docs), KB_OK);
    RagSyncStats st;
    assert_int_equal(rag_sync(f->rag, "animals", NULL, &st), KB_OK);
    assert_int_equal(st.indexed, 2);
    free(docs), free(g), free(p);
}

/* Adds a finished turn. */
static void push(Fix *f, const char *q, const char *a)
{
    RagTurn t = {.question = (char *)q, .answer = (char *)a};
    assert_int_equal(conv_push_turn(f->conv, &t), KB_OK);
}

/* Builds the prompt for question and returns its token count. */
static size_t build(Fix *f, const char *question, ConvStats *st)
{
    KbTokens t = {0};
    assert_int_equal(conv_build_prompt(f->conv, question, &t, st), KB_OK);
    size_t n = t.n;
    kb_tokens_free(&t);
    return n;
}

/* The file name of a source (the base name of its path). */
static const char *source_name(const RagTurn *t, int i)
{
    assert_true(i < t->n_sources);
    const char *s = strrchr(t->sources[i].file, '/');
    return s ? s + 1 : t->sources[i].file;
}

/* --- prompts --- */

static void test_conv_prompt_has_system_history_and_question_in_the_template(void **state)
{
    (void)state;
    Fix *f = fix_new("models/tiny-llama-Q8_0.gguf", 0);
    set(f, "prompt.system", "Be brief.");
    assert_int_equal(conv_template(f->conv), KB_TPL_CHATML); /* nothing in the file: llama.cpp's default */
    push(f, "Hi", "Hello.");
    build(f, "Bye?", NULL);
    assert_string_equal(conv_last_prompt(f->conv), "<|im_start|>system\nBe brief.<|im_end|>\n"
                                                   "<|im_start|>user\nHi<|im_end|>\n"
                                                   "<|im_start|>assistant\nHello.<|im_end|>\n"
                                                   "<|im_start|>user\nBye?<|im_end|>\n"
                                                   "<|im_start|>assistant\n");
    set(f, "model.template", "llama2");
    assert_int_equal(conv_set_model(f->conv, f->model, f->model_path), KB_OK);
    assert_int_equal(conv_template(f->conv), KB_TPL_LLAMA2);
    build(f, "Bye?", NULL);
    assert_string_equal(conv_last_prompt(f->conv), "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello.</s>"
                                                   "[INST] Bye? [/INST]");
    /* no system prompt configured: the format's own (vicuna has one) */
    set(f, "prompt.system", "");
    set(f, "model.template", "vicuna");
    assert_int_equal(conv_set_model(f->conv, f->model, f->model_path), KB_OK);
    build(f, "Bye?", NULL);
    assert_string_equal(conv_last_prompt(f->conv),
                        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                        "helpful, detailed, and polite answers to the user's questions. USER: Hi ASSISTANT: "
                        "Hello.</s>USER: Bye? ASSISTANT:");
    set(f, "model.template", "auto");
    assert_int_equal(conv_set_model(f->conv, f->model, f->model_path), KB_OK);
    assert_int_equal(conv_template(f->conv), KB_TPL_CHATML);
    fix_free(f);
}

/* --- budget --- */

/* With a 128-token context, a long history keeps only its newest whole
** turns, and every prompt leaves the reserve free. */
static void test_conv_budget_keeps_the_newest_whole_turns(void **state)
{
    (void)state;
    Fix *f = fix_new("models/aidreams260K-F32.gguf", 0);
    set(f, "model.template", "raw");
    set(f, "conversation.answer_reserve", "32");
    set(f, "sampling.max_tokens", "64"); /* the reserve is never more than an answer may be */
    assert_int_equal(conv_set_model(f->conv, f->model, f->model_path), KB_OK);
    char q[64], a[128];
    for (int i = 0; i < 14; i++) {
        snprintf(q, sizeof q, "question %d?", i);
        snprintf(a, sizeof a, "answer %d: the cat sat on the mat and looked at the sun.", i);
        push(f, q, a);
        ConvStats st;
        size_t n = build(f, "And then?", &st);
        assert_int_equal(st.n_ctx, 128);
        assert_int_equal(st.reserve, 32);
        /* the count, checked against the rendered prompt tokenized apart */
        const char *text = conv_last_prompt(f->conv);
        KbTokens apart = {0};
        assert_int_equal(tokenizer_encode(model_tokenizer(f->model), text, strlen(text), KB_TOK_ADD_SPECIAL, &apart), KB_OK);
        assert_int_equal(n, apart.n);
        assert_int_equal(st.prompt_tokens, apart.n);
        kb_tokens_free(&apart);
        assert_true(n + st.reserve <= st.n_ctx);
        assert_int_equal(st.turns_kept + st.turns_dropped, i + 1);
        const char *p = conv_last_prompt(f->conv);
        for (int k = 0; k <= i; k++) {
            snprintf(q, sizeof q, "question %d?\n", k);
            snprintf(a, sizeof a, "answer %d: the cat sat on the mat and looked at the sun.", k);
            int kept = k >= st.turns_dropped;
            /* a turn is in the prompt whole or not at all */
            assert_int_equal(strstr(p, q) != NULL, kept);
            assert_int_equal(strstr(p, a) != NULL, kept);
        }
        if (i == 13) assert_true(st.turns_dropped > 0 && st.turns_kept > 0);
    }
    fix_free(f);
}

static void test_conv_budget_refuses_a_question_that_cannot_fit(void **state)
{
    (void)state;
    Fix *f = fix_new("models/aidreams260K-F32.gguf", 0);
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    for (size_t i = 7; i < sizeof big - 1; i += 8) big[i] = ' ';
    big[sizeof big - 1] = '\0';
    KbTokens t = {0};
    ConvStats st;
    assert_int_equal(conv_build_prompt(f->conv, big, &t, &st), KB_ERANGE);
    assert_int_equal(t.n, 0);
    assert_non_null(strstr(conv_errmsg(f->conv), "context"));
    assert_int_equal(conv_ask(f->conv, big, NULL, NULL, &st), KB_ERANGE);
    assert_int_equal(conv_n_turns(f->conv), 0);
    assert_int_equal(conv_ask(f->conv, "  \n", NULL, NULL, &st), KB_EINVAL);
    Conversation *none;
    assert_int_equal(conv_new(&f->cfg, &none), KB_OK);
    assert_int_equal(conv_ask(none, "hi", NULL, NULL, &st), KB_EINVAL);
    assert_non_null(strstr(conv_errmsg(none), "no model"));
    conv_free(none);
    conv_free(NULL);
    fix_free(f);
}

/* --- prefix reuse --- */

/* Counts the pieces streamed. */
static int count_piece(void *user, const char *piece, size_t len)
{
    (void)piece, (void)len;
    (*(int *)user)++;
    return 0;
}

static void test_conv_follow_up_reuses_the_cached_prefix_with_identical_logits(void **state)
{
    (void)state;
    Fix *f = fix_new("models/aidreams260K-F32.gguf", 0);
    set(f, "model.template", "raw");
    assert_int_equal(conv_set_model(f->conv, f->model, f->model_path), KB_OK);
    ConvStats s1, s2;
    int pieces = 0;
    assert_int_equal(conv_ask(f->conv, "Once upon a time", count_piece, &pieces, &s1), KB_OK);
    assert_true(pieces > 0);
    assert_int_equal(s1.gen.n_reused, 0);
    assert_true(strlen(conv_turn(f->conv, 0)->answer) > 0);
    /* the prompt turn 2 will send, built before asking */
    KbTokens p2 = {0};
    ConvStats sb;
    assert_int_equal(conv_build_prompt(f->conv, "What happened next?", &p2, &sb), KB_OK);
    assert_int_equal(sb.turns_kept, 1);
    assert_int_equal(conv_ask(f->conv, "What happened next?", NULL, NULL, &s2), KB_OK);
    assert_int_equal(s2.gen.n_prompt, p2.n);
    assert_int_equal(s2.turns_kept, 1);
    /* the first turn's prompt is not computed again */
    assert_true(s2.gen.n_reused >= s1.prompt_tokens);
    assert_true(s2.gen.n_prompt - s2.gen.n_reused < s2.gen.n_prompt);
    /* logits of the reused cache equal a cold evaluation's */
    int32_t nv = model_n_vocab(f->model);
    float *warm = malloc((size_t)nv * sizeof *warm), *cold = malloc((size_t)nv * sizeof *cold);
    size_t reused;
    assert_int_equal(model_eval_prompt(f->model, p2.ids, p2.n, warm, &reused), KB_OK);
    assert_int_equal(reused, p2.n - 1);
    model_reset(f->model);
    assert_int_equal(model_eval_prompt(f->model, p2.ids, p2.n, cold, &reused), KB_OK);
    assert_int_equal(reused, 0);
    assert_memory_equal(warm, cold, (size_t)nv * sizeof *warm);
    free(warm), free(cold);
    kb_tokens_free(&p2);
    fix_free(f);
}

/* --- follow-up rewriting --- */

typedef struct Rewriter {
    int calls;
    int rc;
    const char *reply;  /* NULL: *out stays NULL */
    char *prompt;       /* the last prompt seen */
    char *question;
} Rewriter;

static int fake_rewrite(void *user, const char *prompt, const char *question, char **out)
{
    Rewriter *r = user;
    r->calls++;
    free(r->prompt), free(r->question);
    r->prompt = strdup(prompt);
    r->question = strdup(question);
    *out = r->reply ? strdup(r->reply) : NULL;
    return r->rc;
}

/* tiny-llama with the knowledge base and a short grounded template. */
static Fix *kb_fix(void)
{
    Fix *f = fix_new("models/tiny-llama-Q8_0.gguf", 0);
    set(f, "model.template", "raw");
    set(f, "prompt.template", "{context}\n{question}");
    set(f, "retrieval.top_k", "1");
    assert_int_equal(conv_set_model(f->conv, f->model, f->model_path), KB_OK);
    fix_make_kb(f);
    assert_int_equal(conv_set_kb(f->conv, "animals"), KB_OK);
    return f;
}

static void test_conv_rewrite_sees_the_history_and_its_output_is_searched(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    Rewriter r = {0, KB_OK, "  Where do penguins live?\nextra line", NULL, NULL};
    conv_set_rewriter(f->conv, fake_rewrite, &r);
    ConvStats st;
    assert_int_equal(conv_ask(f->conv, "How long do giraffes sleep?", NULL, NULL, &st), KB_OK);
    assert_int_equal(r.calls, 0); /* nothing to rewrite without history */
    assert_int_equal(st.rewrote, 0);
    const RagTurn *t1 = conv_turn(f->conv, 0);
    assert_string_equal(t1->query, t1->question);
    assert_int_equal(t1->n_sources, 1);
    assert_string_equal(source_name(t1, 0), "giraffes.txt");
    /* the grounded message holds the passage; the history keeps it as sent */
    assert_non_null(strstr(t1->prompt, "[1] giraffes.txt\nGiraffes have long necks."));
    assert_non_null(strstr(t1->prompt, "How long do giraffes sleep?"));

    assert_int_equal(conv_ask(f->conv, "And the birds in the cold?", NULL, NULL, &st), KB_OK);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.question, "And the birds in the cold?");
    /* the rewrite prompt: the history (first question with its passage, its
    ** answer), then the request with the new question */
    assert_non_null(strstr(r.prompt, t1->prompt));
    assert_non_null(strstr(r.prompt, conv_turn(f->conv, 0)->answer));
    assert_non_null(strstr(r.prompt, "standalone question"));
    assert_non_null(strstr(r.prompt, "Question: And the birds in the cold?"));
    assert_string_equal(r.prompt, conv_last_rewrite_prompt(f->conv));
    const RagTurn *t2 = conv_turn(f->conv, 1);
    assert_int_equal(st.rewrote, 1);
    assert_string_equal(t2->query, "Where do penguins live?");
    assert_string_equal(t2->question, "And the birds in the cold?");
    assert_int_equal(t2->n_sources, 1);
    assert_string_equal(source_name(t2, 0), "penguins.txt");
    /* the answer is asked with the original question */
    assert_non_null(strstr(conv_last_prompt(f->conv), "And the birds in the cold?"));
    free(r.prompt), free(r.question);
    fix_free(f);
}

static void test_conv_failed_or_empty_rewrite_searches_the_question(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    Rewriter r = {0, KB_OK, NULL, NULL, NULL};
    conv_set_rewriter(f->conv, fake_rewrite, &r);
    ConvStats st;
    assert_int_equal(conv_ask(f->conv, "Where do penguins live?", NULL, NULL, &st), KB_OK);
    static const struct { int rc; const char *reply; } cases[] = {
        {KB_EIO, "Where do penguins live?"}, /* a failure, whatever it says */
        {KB_OK, NULL},
        {KB_OK, ""},
        {KB_OK, " \n \n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r.rc = cases[i].rc;
        r.reply = cases[i].reply;
        assert_int_equal(conv_ask(f->conv, "How long does a giraffe sleep?", NULL, NULL, &st), KB_OK);
        const RagTurn *t = conv_turn(f->conv, conv_n_turns(f->conv) - 1);
        assert_int_equal(st.rewrote, 0);
        assert_string_equal(t->query, "How long does a giraffe sleep?");
        assert_int_equal(t->n_sources, 1);
        assert_string_equal(source_name(t, 0), "giraffes.txt");
    }
    assert_int_equal(r.calls, 4);
    free(r.prompt), free(r.question);
    fix_free(f);
}

/* The model itself rewrites (nonsense from random weights): its prompt
** holds the history and its first line, or the question, is searched. */
static void test_conv_model_rewrite_runs_after_the_history(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    ConvStats st;
    assert_int_equal(conv_ask(f->conv, "How long do giraffes sleep?", NULL, NULL, &st), KB_OK);
    assert_string_equal(conv_last_rewrite_prompt(f->conv), "");
    assert_int_equal(conv_ask(f->conv, "And penguins?", NULL, NULL, &st), KB_OK);
    const char *rp = conv_last_rewrite_prompt(f->conv);
    const RagTurn *t1 = conv_turn(f->conv, 0), *t2 = conv_turn(f->conv, 1);
    assert_non_null(strstr(rp, t1->prompt));
    assert_non_null(strstr(rp, "Question: And penguins?"));
    assert_true(strlen(t2->query) > 0);
    assert_null(strchr(t2->query, '\n'));
    if (!st.rewrote) assert_string_equal(t2->query, t2->question);
    /* the answer starts with the cached conversation; a nonsense query may
    ** find nothing, and then the answer says so without the model */
    if (t2->n_sources > 0) assert_true(st.gen.n_reused > 0);
    else assert_string_equal(t2->answer, "The knowledge base has nothing on this question.");
    fix_free(f);
}

static void test_conv_no_rewrite_without_a_knowledge_base(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    Rewriter r = {0, KB_OK, "penguins", NULL, NULL};
    conv_set_rewriter(f->conv, fake_rewrite, &r);
    assert_int_equal(conv_set_kb(f->conv, NULL), KB_OK);
    assert_string_equal(conv_kb(f->conv), "");
    assert_int_equal(conv_ask(f->conv, "Hello", NULL, NULL, NULL), KB_OK);
    assert_int_equal(conv_ask(f->conv, "And then?", NULL, NULL, NULL), KB_OK);
    assert_int_equal(r.calls, 0);
    const RagTurn *t = conv_turn(f->conv, 1);
    assert_string_equal(t->query, "");
    assert_int_equal(t->n_sources, 0);
    assert_string_equal(t->prompt, "And then?");
    assert_int_equal(conv_set_kb(f->conv, "no-such-kb"), KB_ENOTFOUND);
    free(r.prompt), free(r.question);
    fix_free(f);
}

/* Strict grounding: when the knowledge base has nothing, the answer says
** so (streamed like an answer, and kept) and the model is not asked. */
static void test_conv_nothing_found_is_said_not_guessed(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    int pieces = 0;
    ConvStats st;
    assert_int_equal(conv_ask(f->conv, "xylophone quartz zeppelin", count_piece, &pieces, &st), KB_OK);
    const RagTurn *t = conv_turn(f->conv, 0);
    assert_int_equal(t->n_sources, 0);
    assert_string_equal(t->query, "xylophone quartz zeppelin");
    assert_string_equal(t->answer, "The knowledge base has nothing on this question.");
    assert_int_equal(pieces, 1);
    assert_int_equal(st.gen.n_generated, 0);
    assert_int_equal(conv_ask(f->conv, "齐柏林飞艇的木琴", NULL, NULL, &st), KB_OK);
    assert_string_equal(conv_turn(f->conv, 1)->answer, "知识库中没有找到与这个问题相关的内容。");
    fix_free(f);
}

/* Passages that do not fit are dropped, the lowest ranked first. */
static void test_conv_passages_are_dropped_to_fit(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    set(f, "retrieval.top_k", "2");
    set(f, "conversation.answer_reserve", "100");
    set(f, "sampling.max_tokens", "100");
    /* 256 - 100 leaves room for the question and one passage, not two */
    ConvStats st;
    assert_int_equal(conv_ask(f->conv, "giraffes penguins necks Antarctica long tallest", NULL, NULL, &st), KB_OK);
    const RagTurn *t = conv_turn(f->conv, 0);
    assert_int_equal(st.reserve, 100);
    assert_true(st.prompt_tokens + st.reserve <= st.n_ctx);
    assert_int_equal(t->n_sources + st.passages_dropped, 2);
    fix_free(f);
}

/* --- sessions --- */

static void test_conv_sessions_survive_a_restart(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    ConvStats st;
    assert_int_equal(conv_ask(f->conv, "How long do giraffes sleep?", NULL, NULL, &st), KB_OK);
    assert_int_equal(st.save_rc, KB_OK);
    int64_t id = conv_session(f->conv);
    assert_true(id > 0);
    assert_string_equal(conv_title(f->conv), "How long do giraffes sleep?");
    assert_int_equal(conv_ask(f->conv, "Where do penguins live?", NULL, NULL, &st), KB_OK);
    assert_int_equal(st.save_rc, KB_OK);
    char *a1 = strdup(conv_turn(f->conv, 0)->answer), *a2 = strdup(conv_turn(f->conv, 1)->answer);
    char *q2 = strdup(conv_turn(f->conv, 1)->query);
    /* a retried answer replaces the last turn */
    assert_int_equal(conv_retry(f->conv, NULL, NULL, &st), KB_OK);
    assert_int_equal(conv_n_turns(f->conv), 2);
    free(a2);
    a2 = strdup(conv_turn(f->conv, 1)->answer);
    q2 = (free(q2), strdup(conv_turn(f->conv, 1)->query));
    assert_int_equal(conv_rename(f->conv, "Animals"), KB_OK);

    /* restart: everything closed, the database opened again */
    conv_free(f->conv);
    rag_close(f->rag);
    f->rag = NULL;
    assert_int_equal(conv_new(&f->cfg, &f->conv), KB_OK);
    assert_int_equal(conv_set_model(f->conv, f->model, f->model_path), KB_OK);
    fix_open_store(f);
    RagSession *list;
    int n;
    assert_int_equal(rag_session_list(f->rag, &list, &n), KB_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, id);
    assert_string_equal(list[0].title, "Animals");
    assert_string_equal(list[0].kb, "animals");
    assert_string_equal(list[0].template_name, "raw");
    assert_string_equal(list[0].model, f->model_path);
    assert_int_equal(list[0].n_turns, 2);
    rag_session_free_list(list, n);
    const char *note = "x";
    assert_int_equal(conv_open_session(f->conv, id, &note), KB_OK);
    assert_null(note);
    assert_int_equal(conv_n_turns(f->conv), 2);
    assert_string_equal(conv_kb(f->conv), "animals");
    assert_string_equal(conv_title(f->conv), "Animals");
    const RagTurn *t1 = conv_turn(f->conv, 0), *t2 = conv_turn(f->conv, 1);
    assert_string_equal(t1->question, "How long do giraffes sleep?");
    assert_string_equal(t1->answer, a1);
    assert_string_equal(t2->answer, a2);
    assert_string_equal(t2->query, q2);
    assert_int_equal(t1->n_sources, 1);
    assert_string_equal(source_name(t1, 0), "giraffes.txt");
    assert_int_equal(t1->sources[0].page, 0);
    assert_non_null(strstr(t1->sources[0].text, "A giraffe sleeps two hours a day."));
    /* the history goes on: a third question is stored in the same session */
    assert_int_equal(conv_ask(f->conv, "Are penguins tall?", NULL, NULL, &st), KB_OK);
    assert_int_equal(conv_session(f->conv), id);
    RagSession s;
    assert_int_equal(rag_session_get(f->rag, id, &s), KB_OK);
    assert_int_equal(s.n_turns, 3);
    rag_session_clear(&s);
    /* a deleted knowledge base turns off on resume, with a note */
    assert_int_equal(rag_kb_delete(f->rag, "animals"), KB_OK);
    assert_int_equal(conv_open_session(f->conv, id, &note), KB_OK);
    assert_non_null(note);
    assert_string_equal(conv_kb(f->conv), "");
    assert_int_equal(conv_open_session(f->conv, id + 100, &note), KB_ENOTFOUND);
    conv_reset(f->conv);
    assert_int_equal(conv_n_turns(f->conv), 0);
    assert_int_equal(conv_session(f->conv), 0);
    assert_int_equal(rag_session_delete(f->rag, id), KB_OK);
    assert_int_equal(rag_session_delete(f->rag, id), KB_ENOTFOUND);
    free(a1), free(a2), free(q2);
    fix_free(f);
}

static void test_conv_export_is_markdown_with_the_citations(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    Rewriter r = {0, KB_OK, "Where do penguins live?", NULL, NULL};
    conv_set_rewriter(f->conv, fake_rewrite, &r);
    assert_int_equal(conv_ask(f->conv, "How long do giraffes sleep?", NULL, NULL, NULL), KB_OK);
    assert_int_equal(conv_ask(f->conv, "And the birds?", NULL, NULL, NULL), KB_OK);
    char *path = testutil_join(f->dir, "chat.md");
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    assert_int_equal(conv_export_markdown(f->conv, out), KB_OK);
    fclose(out);
    size_t len;
    char *md = testutil_read_file(path, &len);
    char *g = testutil_join(f->dir, "docs/giraffes.txt"), *p = testutil_join(f->dir, "docs/penguins.txt");
    char want[1024];
    assert_int_equal(strncmp(md, "# How long do giraffes sleep?\n\n", 31), 0);
    assert_non_null(strstr(md, "- Knowledge base: animals\n"));
    assert_non_null(strstr(md, "\n## 1. How long do giraffes sleep?\n"));
    assert_non_null(strstr(md, "\n## 2. And the birds?\n"));
    snprintf(want, sizeof want, "**Sources**\n\n1. [1] %s\n   > Giraffes have long necks. A giraffe sleeps two hours a day.\n", g);
    assert_non_null(strstr(md, want));
    snprintf(want, sizeof want, "**Sources** (searched for: Where do penguins live?)\n\n1. [1] %s\n   > Penguins live", p);
    assert_non_null(strstr(md, want));
    assert_non_null(strstr(md, conv_turn(f->conv, 0)->answer));
    free(md), free(g), free(p), free(path);
    free(r.prompt), free(r.question);
    fix_free(f);
}

/* Allocations failing in turn while a session is resumed and a prompt is
** built: each call succeeds or says KB_ENOMEM, and the conversation stays
** usable (nothing leaks or dangles: ASan). */
static void test_conv_allocation_failures_leave_it_usable(void **state)
{
    (void)state;
    Fix *f = kb_fix();
    assert_int_equal(conv_ask(f->conv, "How long do giraffes sleep?", NULL, NULL, NULL), KB_OK);
    assert_int_equal(conv_ask(f->conv, "Where do penguins live?", NULL, NULL, NULL), KB_OK);
    int64_t id = conv_session(f->conv);
    int failed = 0;
    for (long n = 1; n < 300; n++) {
        KbTokens t = {0};
        testutil_fail_alloc_after(n);
        int ro = conv_open_session(f->conv, id, NULL);
        int rb = conv_build_prompt(f->conv, "And then?", &t, NULL);
        testutil_fail_alloc_after(0);
        assert_true(ro == KB_OK || ro == KB_ENOMEM);
        assert_true(rb == KB_OK || rb == KB_ENOMEM);
        failed |= ro != KB_OK || rb != KB_OK;
        kb_tokens_free(&t);
    }
    assert_true(failed);
    assert_int_equal(conv_open_session(f->conv, id, NULL), KB_OK);
    assert_int_equal(conv_n_turns(f->conv), 2);
    assert_int_equal(conv_ask(f->conv, "And then?", NULL, NULL, NULL), KB_OK);
    assert_int_equal(conv_n_turns(f->conv), 3);
    fix_free(f);
}

/* --- the ChatApp's events (app/chat.h) --- */

/* What a front end received from chat_line: the kinds in order, the
** answer's text, and after how many pieces it asks to stop (0: never). */
typedef struct EventLog {
    ChatEventKind kinds[64];
    int n;
    char answer[4096];
    int pieces, stop_after;
    FILE *out, *err; /* the line mode's rendering of the same events */
} EventLog;

/* ChatEventFn: records ev and renders it as the line mode does. */
static int log_event(void *user, const ChatEvent *ev)
{
    EventLog *l = user;
    if (l->n < 64) l->kinds[l->n++] = ev->kind;
    chat_event_print(ev, l->out, l->err);
    if (ev->kind != CHAT_EV_ANSWER_PIECE) return 0;
    size_t used = strlen(l->answer);
    snprintf(l->answer + used, sizeof l->answer - used, "%.*s", (int)ev->len, ev->text);
    return ++l->pieces == l->stop_after;
}

/* Stopping mid-answer is an event, STOPPED, between the pieces and
** ANSWER_DONE, not text in the answer; the line mode prints it as
** " [stopped]" after the answer, and the answer so far is the turn kept. */
static void test_chat_stop_mid_answer_is_a_stopped_event(void **state)
{
    (void)state;
    Fix *f = fix_new("models/aidreams260K-F32.gguf", 0);
    ChatApp *app = NULL;
    char *ob = NULL, *eb = NULL;
    size_t on = 0, en = 0;
    EventLog l = {.stop_after = 3, .out = open_memstream(&ob, &on), .err = open_memstream(&eb, &en)};
    assert_int_equal(chat_open(&f->cfg, &app), KB_OK);
    if (chat_load_model(app, f->model_path) != KB_OK) fail_msg("%s", chat_errmsg(app));
    ChatIO io = {.on_event = log_event, .user = &l, .raw = 0};
    assert_int_equal(chat_line(app, "Once upon a time", &io), CHAT_CONTINUE);
    fclose(l.out), fclose(l.err);
    assert_int_equal(l.pieces, 3);
    assert_true(l.n >= 5);
    for (int i = 0; i < 3; i++) assert_int_equal(l.kinds[i], CHAT_EV_ANSWER_PIECE);
    assert_int_equal(l.kinds[3], CHAT_EV_STOPPED);
    assert_int_equal(l.kinds[4], CHAT_EV_ANSWER_DONE);
    for (int i = 5; i < l.n; i++) assert_int_equal(l.kinds[i], CHAT_EV_SESSION_CHANGED); /* stored; no cut note */
    assert_null(strstr(l.answer, "stopped"));
    Conversation *c = chat_conversation(app);
    const char *kept = conv_turn(c, conv_n_turns(c) - 1)->answer; /* stored trimmed of surrounding space */
    assert_true(kept[0] != '\0');
    assert_non_null(strstr(l.answer, kept));
    char want[4200];
    snprintf(want, sizeof want, "%s [stopped]\n", l.answer);
    assert_string_equal(ob, want);
    assert_string_equal(eb, "");
    free(ob), free(eb);
    chat_close(app);
    fix_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_prompt_has_system_history_and_question_in_the_template),
        cmocka_unit_test(test_conv_budget_keeps_the_newest_whole_turns),
        cmocka_unit_test(test_conv_budget_refuses_a_question_that_cannot_fit),
        cmocka_unit_test(test_conv_follow_up_reuses_the_cached_prefix_with_identical_logits),
        cmocka_unit_test(test_conv_rewrite_sees_the_history_and_its_output_is_searched),
        cmocka_unit_test(test_conv_failed_or_empty_rewrite_searches_the_question),
        cmocka_unit_test(test_conv_model_rewrite_runs_after_the_history),
        cmocka_unit_test(test_conv_no_rewrite_without_a_knowledge_base),
        cmocka_unit_test(test_conv_nothing_found_is_said_not_guessed),
        cmocka_unit_test(test_conv_passages_are_dropped_to_fit),
        cmocka_unit_test(test_conv_sessions_survive_a_restart),
        cmocka_unit_test(test_conv_export_is_markdown_with_the_citations),
        cmocka_unit_test(test_conv_allocation_failures_leave_it_usable),
        cmocka_unit_test(test_chat_stop_mid_answer_is_a_stopped_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
