/*
** cmd_ask.c: `kbchat ask`: one question answered from a knowledge base,
** with the sources shown.
**
**   1. retrieve: hybrid search (rag_retrieve) with the configured embedding
**      model when the knowledge base was built with it, else keyword search
**      with a note on standard error saying why;
**   2. --retrieve-only stops here and prints the passages (no chat model is
**      loaded: retrieval is cheap, the chat model is not);
**   3. nothing passed the threshold: strict mode (the default) says so and
**      loads no model; --fallback model lets the model answer, labelled;
**   4. otherwise the chat model is loaded, the grounded prompt packed into
**      its context (rag_prompt_build), the answer streamed, and "Sources:"
**      printed with [n] file, page N and each passage's first line.
**
** The prompt is the grounded message as plain text after the model's BOS,
** ended by an answer cue ("[Answer]" / "【回答】") when the built-in template
** is used; document text is never parsed for control tokens, so a passage
** cannot inject "<|im_end|>" or the like.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "app/cli.h"
#include "app/stop.h"
#include "app/term_text.h"
#include "engine/engine.h"
#include "rag/rag.h"

#define FIRST_LINE_MAX 100 /* characters of a passage shown under Sources: */


/* Everything one `ask` holds. */
typedef struct Ask {
    const CliArgs *a;
    KbConfig cfg;
    Rag *rag;
    const char *kb;        /* the knowledge base searched */
    char *kb_owned;        /* its name when found by rag_kb_list */
    char *question;
    int top_k;
    int fallback_model;    /* --fallback model */
    KbModel *model;        /* the chat model, once loaded */
    RagEmbedder *emb;
    RagHit *hits;
    int n_hits;
    RagPrompt prompt;
    GString *answer;       /* --json: the answer is collected, not streamed */
    TermStream stream;     /* the streamed answer, escaped unless --raw */
} Ask;

/* --- options --- */

/* Parses option o as an integer in [min, max] into *v (unchanged when absent). */
static int opt_int(const CliArgs *a, CliOpt o, long long min, long long max, long long *v)
{
    if (!cli_has(a, o)) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(a->value[o], &end, 10);
    if (errno || end == a->value[o] || *end || x < min || x > max) {
        cli_print_errorf("%s: expected an integer %lld..%lld, got \"%s\"", cli_option_name(o), min, max, a->value[o]);
        return CLI_EXIT_USAGE;
    }
    *v = x;
    return 0;
}

/* Parses option o as a number in [min, max] into *v (unchanged when absent). */
static int opt_float(const CliArgs *a, CliOpt o, double min, double max, double *v)
{
    if (!cli_has(a, o)) return 0;
    char *end;
    errno = 0;
    double x = strtod(a->value[o], &end);
    if (errno || end == a->value[o] || *end || !isfinite(x) || x < min || x > max) {
        cli_print_errorf("%s: expected a number %g..%g, got \"%s\"", cli_option_name(o), min, max, a->value[o]);
        return CLI_EXIT_USAGE;
    }
    *v = x;
    return 0;
}

/* --fallback strict|model. Returns 0 or the usage exit code. */
/* --fallback, else the configuration's answer.fallback (validated there). */
static int parse_fallback(Ask *k)
{
    const char *f = k->a->value[CLI_OPT_FALLBACK] ? k->a->value[CLI_OPT_FALLBACK] : k->cfg.answer_fallback;
    if (f == NULL || strcmp(f, "strict") == 0) return 0;
    if (strcmp(f, "model") == 0) {
        k->fallback_model = 1;
        return 0;
    }
    cli_print_errorf("--fallback: expected strict or model, got '%s'", f);
    return CLI_EXIT_USAGE;
}

/* --- opening --- */

/* The knowledge base: --kb, or the only one there is. */
static int choose_kb(Ask *k)
{
    if (cli_has(k->a, CLI_OPT_KB)) {
        k->kb = k->a->value[CLI_OPT_KB];
        return CLI_EXIT_OK;
    }
    RagKbInfo *list = NULL;
    int n = 0, code = CLI_EXIT_OK;
    if (rag_kb_list(k->rag, &list, &n) != KB_OK) return cli_print_error(rag_errmsg(k->rag));
    if (n == 1 && (k->kb = k->kb_owned = strdup(list[0].name)) == NULL) code = CLI_EXIT_FAIL;
    if (n == 0) fputs("kbchat: ask: no knowledge bases yet: 'kbchat kb create NAME --folder DIR' makes one\n", stderr);
    if (n > 1) {
        fputs("kbchat: ask: there are several knowledge bases: name one with --kb (", stderr);
        for (int i = 0; i < n; i++) fputs(i ? ", " : "", stderr), term_fputs(stderr, list[i].name, TERM_LINE);
        fputs(")\n", stderr);
    }
    rag_kb_info_free_list(list, n);
    return n == 1 ? code : CLI_EXIT_USAGE;
}

/* Opens the chat model with -t and --ctx-size (or the configuration's). */
static int open_chat_model(Ask *k)
{
    long long threads = k->cfg.threads, ctx = 0;
    char err[1024];
    int code = opt_int(k->a, CLI_OPT_THREADS, 1, 1024, &threads);
    if (code == 0) code = opt_int(k->a, CLI_OPT_CTX_SIZE, 1, 1 << 24, &ctx);
    if (code != 0 || k->model) return code;
    if (k->cfg.model_path[0] == '\0') {
        fputs("kbchat: ask: no chat model: pass --model FILE or set model.path (--retrieve-only needs none)\n", stderr);
        return CLI_EXIT_USAGE;
    }
    KbModelParams p = {ctx, k->cfg.context_size, (int)threads, 0};
    if (model_open(k->cfg.model_path, &p, &k->model, err, sizeof err) != KB_OK) {
        return cli_print_errorf("%s: %s", k->cfg.model_path, err);
    }
    return 0;
}

/* The embedding model, when the knowledge base has vectors: "chat" shares
** the chat model unless only retrieving. */
static int open_embedder(Ask *k)
{
    RagKbInfo info;
    if (rag_kb_info(k->rag, k->kb, &info) != KB_OK) return cli_print_error(rag_errmsg(k->rag));
    int pinned = info.embed_id.file[0] != '\0', code = CLI_EXIT_OK;
    rag_kb_info_clear(&info);
    if (!pinned) return CLI_EXIT_OK; /* keyword only: rag_retrieve says so */
    if (strcmp(k->cfg.embedding_model, "chat") != 0 || cli_has(k->a, CLI_OPT_RETRIEVE_ONLY))
        return cli_open_embedder(&k->cfg, &k->emb);
    char err[1024];
    code = open_chat_model(k);
    if (code == 0 && rag_embedder_wrap(k->model, k->cfg.model_path, &k->emb, err, sizeof err) != KB_OK) {
        code = cli_print_errorf("embedding model: %s", err);
    }
    return code;
}

/* --- output --- */

/* Streams a piece of the answer, escaped unless --raw (or collects it for
** --json). */
static int on_piece(void *user, const char *piece, size_t len)
{
    Ask *k = user;
    if (k->answer) {
        g_string_append_len(k->answer, piece, (gssize)len);
    } else {
        term_stream_write(&k->stream, stdout, piece, len, 0);
        fflush(stdout);
    }
    return atomic_load(stop_sigint_flag());
}

/* Prints "[n] file, page N" and the passage's first line (at most
** FIRST_LINE_MAX characters), escaped for the terminal. */
static void print_source(const RagHit *h, int n)
{
    TermStrs t = {0};
    printf("[%d] %s", n, term_line(&t, h->file));
    if (h->page > 0) printf(", page %d", h->page);
    term_strs_clear(&t);
    const char *text = h->text, *end = text;
    for (int chars = 0; *end && *end != '\n' && chars < FIRST_LINE_MAX; chars++) end = g_utf8_find_next_char(end, NULL);
    GString *line = g_string_new("\n    ");
    term_escape_append(line, text, (size_t)(end - text), TERM_LINE);
    printf("%s%s\n", line->str, *end && *end != '\n' ? " ..." : "");
    g_string_free(line, TRUE);
}

/* --retrieve-only: the ranked passages, as JSON or as text. */
static void print_retrieved(const Ask *k)
{
    if (cli_has(k->a, CLI_OPT_JSON)) {
        cli_print_hits_json(stdout, k->hits, k->n_hits, 1);
        return;
    }
    if (k->n_hits == 0) printf("%s\n", rag_prompt_nothing_found(rag_text_lang(k->question)));
    for (int i = 0; i < k->n_hits; i++) {
        const RagHit *h = &k->hits[i];
        TermStrs t = {0};
        printf("[%d] %s", h->rank, term_line(&t, h->file));
        term_strs_clear(&t);
        if (h->page > 0) printf(", page %d", h->page);
        printf("  (score %.4g", h->score);
        if (h->bm25_rank) printf(", keyword #%d", h->bm25_rank);
        if (h->vector_rank) printf(", vector #%d", h->vector_rank);
        printf(", relevance %.2f)\n", h->relevance);
        cli_print_passage(stdout, h->text);
    }
}

/* --json: one object with the answer and the sources that were in the prompt. */
static void print_answer_json(const Ask *k, const char *answer, int grounded, int n_sources)
{
    fputc('{', stdout);
    json_put_member(stdout, "question", k->question);
    fputs(", ", stdout);
    json_put_member(stdout, "knowledge_base", k->kb);
    printf(", \"grounded\": %s, ", grounded ? "true" : "false");
    json_put_member(stdout, "answer", answer);
    fputs(", \"sources\": ", stdout);
    cli_print_hits_json(stdout, k->hits, n_sources, 1);
    fputs("}\n", stdout);
}

/* --- the answer --- */

/* RagTokenCountFn: the tokens the model will see, BOS included. */
static int count_tokens(const char *text, size_t len, void *user)
{
    KbTokens t = {0};
    int n = tokenizer_encode(model_tokenizer(user), text, len, KB_TOK_ADD_SPECIAL, &t) == KB_OK ? (int)t.n : -1;
    kb_tokens_free(&t);
    return n;
}

/* Sampler settings from the configuration and the options; *n_predict is
** the longest answer. */
static int sampler_params(const Ask *k, KbSamplerParams *p, long long *n_predict)
{
    const KbConfig *c = &k->cfg;
    double temp = c->temperature;
    long long seed = c->seed;
    *n_predict = c->max_tokens;
    int code = opt_float(k->a, CLI_OPT_TEMP, 0, 5, &temp);
    if (code == 0) code = opt_int(k->a, CLI_OPT_SEED, -1, 4294967295ll, &seed);
    if (code == 0) code = opt_int(k->a, CLI_OPT_N_PREDICT, 1, 1 << 24, n_predict);
    if (seed < 0) seed = (long long)time(NULL) ^ (long long)getpid();
    *p = (KbSamplerParams){(float)temp, (int32_t)c->top_k, (float)c->top_p, (float)c->min_p, (float)c->repeat_penalty,
                           0, 0, (int32_t)c->repeat_last_n, (uint64_t)seed};
    return code;
}

/* Generates the answer to prompt (streamed, or collected for --json). */
static int generate(Ask *k, const char *prompt, long long n_predict, const KbSamplerParams *sp)
{
    static const char *const stop[] = {"\n[Question]", "\n【问题】", NULL};
    KbTokens ids = {0};
    KbSampler *smp = NULL;
    KbGenerateStats st;
    int code = CLI_EXIT_OK;
    if (tokenizer_encode(model_tokenizer(k->model), prompt, strlen(prompt), KB_TOK_ADD_SPECIAL, &ids) != KB_OK ||
        sampler_new(sp, model_n_vocab(k->model), &smp) != KB_OK) {
        fputs("kbchat: out of memory\n", stderr);
        code = CLI_EXIT_FAIL;
    }
    long long room = model_n_ctx(k->model) - (long long)ids.n;
    KbGenerateParams gp = {n_predict < room ? n_predict : room, stop, false};
    if (code == CLI_EXIT_OK && gp.max_tokens < 1) {
        fprintf(stderr, "kbchat: ask: the prompt fills the context (%zu tokens): no room for an answer\n", ids.n);
        code = CLI_EXIT_FAIL;
    }
    if (code == CLI_EXIT_OK) {
        stop_watch(k->model, stop_sigint_flag());
        if (stop_catch_sigint() != 0) perror("kbchat: Ctrl-C will not stop the answer: sigaction");
        if (model_generate(k->model, smp, ids.ids, ids.n, &gp, on_piece, k, &st) != KB_OK) {
            fputc('\n', stderr);
            code = cli_print_error(model_errmsg(k->model));
        }
        if (k->answer == NULL) term_stream_write(&k->stream, stdout, "", 0, 1);
        stop_release_sigint();
    }
    if (code == CLI_EXIT_OK && st.stop_reason == KB_STOP_CANCEL) {
        fputs("\nkbchat: ask: stopped by Ctrl-C\n", stderr);
        code = CLI_EXIT_STOPPED;
    }
    sampler_free(smp);
    kb_tokens_free(&ids);
    return code;
}

/* Packs the grounded prompt into the model's context. */
static int build_prompt(Ask *k, long long n_predict)
{
    const char *tmpl = k->cfg.prompt_template;
    RagLang lang = rag_text_lang(k->question);
    char *prefix = k->cfg.system_prompt[0] ? g_strconcat(k->cfg.system_prompt, "\n\n", NULL) : g_strdup("");
    const char *suffix = tmpl[0] ? "" : lang == RAG_LANG_ZH ? "\n【回答】" : "\n[Answer] ";
    int64_t n_ctx = model_n_ctx(k->model), reserve = n_predict < n_ctx / 4 ? n_predict : n_ctx / 4;
    RagPromptOptions po = {tmpl, prefix, suffix, n_ctx, reserve, count_tokens, k->model};
    int rc = rag_prompt_build(k->question, k->hits, k->n_hits, &po, &k->prompt);
    g_free(prefix);
    if (rc == KB_ERANGE)
        fprintf(stderr, "kbchat: ask: a context of %lld tokens (%lld kept for the answer) cannot hold the prompt with "
                        "even one passage: raise model.context_size or --ctx-size, or lower retrieval.top_k\n",
                (long long)n_ctx, (long long)reserve);
    else if (rc != KB_OK) fprintf(stderr, "kbchat: ask: %s\n", kb_strerror(rc));
    return rc == KB_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* The grounded answer and its sources. */
static int answer_grounded(Ask *k)
{
    KbSamplerParams sp;
    long long n_predict;
    int code = sampler_params(k, &sp, &n_predict);
    if (code == 0) code = open_chat_model(k);
    if (code == 0) code = build_prompt(k, n_predict);
    if (code == 0 && cli_has(k->a, CLI_OPT_SHOW_PROMPT)) {
        TermStrs t = {0};
        fprintf(stderr, "--- prompt (%lld tokens, passages: %d) ---\n%s\n--- end of prompt ---\n",
                (long long)k->prompt.n_tokens, k->prompt.n_passages, term_text(&t, k->prompt.text));
        term_strs_clear(&t);
    }
    if (code == 0) code = generate(k, k->prompt.text, n_predict, &sp);
    if (code == 0 && k->answer) print_answer_json(k, k->answer->str, 1, k->prompt.n_passages);
    if (code == 0 && !k->answer) {
        fputs("\n\nSources:\n", stdout);
        for (int i = 0; i < k->prompt.n_passages; i++) print_source(&k->hits[i], i + 1);
    }
    return code;
}

/* Nothing passed the threshold: say so (strict), or let the model answer
** on its own, labelled. */
static int answer_unfounded(Ask *k)
{
    RagLang lang = rag_text_lang(k->question);
    if (!k->fallback_model) {
        if (k->answer) print_answer_json(k, rag_prompt_nothing_found(lang), 0, 0);
        else printf("%s\n", rag_prompt_nothing_found(lang));
        return CLI_EXIT_OK;
    }
    KbSamplerParams sp;
    long long n_predict;
    int code = sampler_params(k, &sp, &n_predict);
    if (code == 0) code = open_chat_model(k);
    if (code == 0 && !k->answer) printf("%s\n", rag_prompt_fallback_label(lang));
    if (code == 0) code = generate(k, k->question, n_predict, &sp);
    if (code == 0 && k->answer) {
        g_string_prepend(k->answer, "\n");
        g_string_prepend(k->answer, rag_prompt_fallback_label(lang));
        print_answer_json(k, k->answer->str, 0, 0);
    } else if (code == 0) {
        putchar('\n');
    }
    return code;
}

/* --- the command --- */

/* Searches the knowledge base; notes go to standard error. */
static int retrieve(Ask *k)
{
    RagQuery q = {k->question, RAG_MODE_HYBRID, k->top_k, k->cfg.score_threshold, 1, k->emb};
    RagSearchInfo info;
    if (rag_retrieve(k->rag, k->kb, &q, &k->hits, &k->n_hits, &info) != KB_OK) return cli_print_error(rag_errmsg(k->rag));
    if (info.note[0]) cli_print_note(info.note);
    return CLI_EXIT_OK;
}

/* Configuration, database, knowledge base, embedding model. */
static int ask_open(Ask *k, const char *const *args, int n_args)
{
    int code = cli_load_config(k->a, &k->cfg) != KB_OK ? CLI_EXIT_FAIL : 0;
    if (code == 0) code = parse_fallback(k);
    if (code == 0) code = cli_top_k(k->a, &k->cfg, &k->top_k);
    if (code == 0 && (k->question = cli_join_words(args, n_args)) == NULL) code = CLI_EXIT_FAIL;
    if (code == 0 && rag_open(&k->rag, k->cfg.data_dir) != KB_OK) code = cli_print_error(rag_errmsg(k->rag));
    if (code == 0) code = choose_kb(k);
    if (code == 0) code = open_embedder(k);
    return code;
}

/* Frees everything ask_open and the answer made; safe on a partial Ask. */
static void ask_close(Ask *k)
{
    rag_prompt_clear(&k->prompt);
    rag_hits_free(k->hits, k->n_hits);
    rag_embedder_close(k->emb);
    model_close(k->model);
    rag_close(k->rag);
    if (k->answer) g_string_free(k->answer, TRUE);
    free(k->kb_owned);
    free(k->question);
    config_free(&k->cfg);
}

/* `kbchat ask`: see the file comment. Returns the exit code. */
int cmd_ask(const CliArgs *a, const char *const *args, int n_args)
{
    Ask k;
    memset(&k, 0, sizeof k);
    k.a = a;
    k.stream.raw = cli_has(a, CLI_OPT_RAW);
    int retrieve_only = cli_has(a, CLI_OPT_RETRIEVE_ONLY);
    if (cli_has(a, CLI_OPT_JSON) && !retrieve_only) k.answer = g_string_new(NULL);
    int code = ask_open(&k, args, n_args);
    if (code == 0) code = retrieve(&k);
    if (code == 0 && retrieve_only) print_retrieved(&k);
    else if (code == 0 && k.n_hits == 0) code = answer_unfounded(&k);
    else if (code == 0) code = answer_grounded(&k);
    fflush(stdout);
    ask_close(&k);
    return code;
}
