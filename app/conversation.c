/*
** conversation.c: the conversation manager (see conversation.h; the prompt
** budget and prefix reuse are described in docs/conversations.md).
**
** A question goes through five steps, each a function below:
**   1. rewrite   with history and a knowledge base, the model makes the
**                question standalone (a short greedy generation after the
**                same history, so it reuses the cached conversation too);
**                any failure or an empty result keeps the question;
**   2. retrieve  the standalone query against the knowledge base;
**   3. ground    passages + question -> the user message;
**   4. budget    system + user message + reserve must fit (passages are
**                dropped from the lowest ranked until they do); then the
**                most recent whole turns are added while they fit;
**   5. answer    model_generate streams the answer (it reuses the longest
**                prefix of the cached tokens), and the turn is kept and
**                stored with its sources.
**
** History turns are rendered with the user message exactly as it was sent
** (passages included), so each prompt begins with the previous one and the
** KV cache makes a follow-up cost only its new tokens.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "app/app.h"

#define REWRITE_MAX_TOKENS 48  /* a standalone question is short */
#define TITLE_CHARS 60         /* a session title: the first question's first line, cut */

struct Conversation {
    const KbConfig *cfg;
    KbModel *model;         /* borrowed */
    char *model_path;
    KbTemplate tpl;
    const char *tpl_why;
    Rag *rag;               /* borrowed */
    char *kb;               /* "" = none */
    RagTurn *turns;
    int n_turns, cap_turns;
    int64_t session;        /* 0 until stored */
    char *title;
    ConvRewriteFn rewrite;
    void *rewrite_user;
    uint64_t seed;          /* for sampling.seed -1: chosen once, advanced per answer */
    unsigned n_answers;
    char *last_prompt, *last_rewrite;
    RagEmbedder *embedder;  /* borrowed; NULL = keyword search */
    char errmsg[1024];
};

/* --- small helpers --- */

/* Records a message and returns rc. */
static int conv_fail(Conversation *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
__attribute__((format(printf, 3, 4))) static int conv_fail(Conversation *c, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    return rc;
}

/* A malloc'd copy of s[0..n) without the white space around it. */
static char *dup_trim_n(const char *s, size_t n)
{
    while (n > 0 && g_ascii_isspace(*s)) s++, n--;
    while (n > 0 && g_ascii_isspace(s[n - 1])) n--;
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n), d[n] = '\0';
    return d;
}

static char *dup_trim(const char *s)
{
    return dup_trim_n(s, strlen(s));
}

/* Replaces *slot by a copy of s (NULL stays NULL). Returns KB_OK or KB_ENOMEM. */
static int set_str(char **slot, const char *s)
{
    char *d = s ? strdup(s) : NULL;
    if (s && d == NULL) return KB_ENOMEM;
    free(*slot);
    *slot = d;
    return KB_OK;
}

/* A deep copy of hits[0..n) (NULL for n == 0 or no memory). */
static RagHit *copy_hits(const RagHit *hits, int n)
{
    RagHit *h = n > 0 ? calloc((size_t)n, sizeof *h) : NULL;
    for (int i = 0; h && i < n; i++) {
        h[i] = hits[i];
        h[i].file = strdup(hits[i].file ? hits[i].file : "");
        h[i].section = strdup(hits[i].section ? hits[i].section : "");
        h[i].text = strdup(hits[i].text ? hits[i].text : "");
        if (!h[i].file || !h[i].section || !h[i].text) {
            rag_hits_free(h, i + 1);
            return NULL;
        }
    }
    return h;
}

/* --- lifetime and settings --- */

int conv_new(const KbConfig *cfg, Conversation **out)
{
    Conversation *c = calloc(1, sizeof *c);
    *out = NULL;
    if (c == NULL) return KB_ENOMEM;
    c->cfg = cfg;
    c->kb = strdup("");
    c->title = strdup("");
    c->last_prompt = strdup("");
    c->last_rewrite = strdup("");
    if (!c->kb || !c->title || !c->last_prompt || !c->last_rewrite) {
        conv_free(c);
        return KB_ENOMEM;
    }
    c->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    c->tpl = KB_TPL_CHATML;
    c->tpl_why = "no model";
    *out = c;
    return KB_OK;
}

/* Frees the turns and empties the list. */
static void drop_turns(Conversation *c)
{
    rag_turns_free(c->turns, c->n_turns);
    c->turns = NULL;
    c->n_turns = c->cap_turns = 0;
}

void conv_free(Conversation *c)
{
    if (c == NULL) return;
    drop_turns(c);
    free(c->model_path);
    free(c->kb);
    free(c->title);
    free(c->last_prompt);
    free(c->last_rewrite);
    free(c);
}

const char *conv_errmsg(const Conversation *c)
{
    return c ? c->errmsg : "out of memory";
}

KbTemplate conv_template(const Conversation *c) { return c->tpl; }
const char *conv_template_why(const Conversation *c) { return c->tpl_why; }
const char *conv_kb(const Conversation *c) { return c->kb; }
int conv_n_turns(const Conversation *c) { return c->n_turns; }
int64_t conv_session(const Conversation *c) { return c->session; }
const char *conv_title(const Conversation *c) { return c->title; }
const char *conv_last_prompt(const Conversation *c) { return c->last_prompt; }
const char *conv_last_rewrite_prompt(const Conversation *c) { return c->last_rewrite; }
void conv_set_store(Conversation *c, Rag *rag) { c->rag = rag; }
void conv_set_embedder(Conversation *c, RagEmbedder *e) { c->embedder = e; }

const RagTurn *conv_turn(const Conversation *c, int i)
{
    return i >= 0 && i < c->n_turns ? &c->turns[i] : NULL;
}

void conv_set_rewriter(Conversation *c, ConvRewriteFn fn, void *user)
{
    c->rewrite = fn;
    c->rewrite_user = user;
}

/* Writes the session row again after its title, model, template or
** knowledge base changed (nothing before the session exists). */
static int update_session_row(Conversation *c)
{
    if (c->rag == NULL || c->session == 0) return KB_OK;
    RagSession s = {.id = c->session, .title = c->title, .model = c->model_path, .template_name = (char *)template_name(c->tpl), .kb = c->kb};
    int rc = rag_session_update(c->rag, &s);
    return rc == KB_OK ? KB_OK : conv_fail(c, rc, "%s", rag_errmsg(c->rag));
}

/* The template of model m: model.template, else what its file says. */
static int pick_template(Conversation *c, KbModel *m, const char *path)
{
    const char *name = c->cfg->model_template;
    if (name && strcmp(name, "auto") != 0) {
        c->tpl = template_from_name(name);
        c->tpl_why = "model.template";
        return c->tpl != KB_TPL_NONE ? KB_OK : conv_fail(c, KB_EINVAL, "unknown chat template '%s'", name);
    }
    GgufFile *g = NULL;
    char err[256];
    if (path && gguf_open(path, &g, err, sizeof err) == KB_OK) {
        c->tpl = template_detect_gguf(g, model_tokenizer(m), &c->tpl_why);
        gguf_close(g);
    } else {
        c->tpl = template_detect(NULL, model_arch_name(m), NULL, model_tokenizer(m), &c->tpl_why);
    }
    return KB_OK;
}

int conv_set_model(Conversation *c, KbModel *m, const char *path)
{
    c->model = m;
    int rc = set_str(&c->model_path, m ? path : NULL);
    if (rc != KB_OK) return conv_fail(c, rc, "out of memory");
    if (m == NULL) {
        c->tpl_why = "no model";
        return KB_OK;
    }
    rc = pick_template(c, m, path);
    if (rc == KB_OK) update_session_row(c);
    return rc;
}

int conv_set_kb(Conversation *c, const char *name)
{
    RagKbInfo info;
    if (name && name[0]) {
        if (c->rag == NULL) return conv_fail(c, KB_EINVAL, "no database to search");
        int rc = rag_kb_info(c->rag, name, &info);
        if (rc != KB_OK) return conv_fail(c, rc, "%s", rag_errmsg(c->rag));
        rag_kb_info_clear(&info);
    }
    if (set_str(&c->kb, name ? name : "") != KB_OK) return conv_fail(c, KB_ENOMEM, "out of memory");
    update_session_row(c);
    return KB_OK;
}

/* --- turns --- */

/* Appends a deep copy of t. */
int conv_push_turn(Conversation *c, const RagTurn *t)
{
    if (c->n_turns == c->cap_turns) {
        int cap = c->cap_turns ? 2 * c->cap_turns : 8;
        RagTurn *n = realloc(c->turns, (size_t)cap * sizeof *n);
        if (n == NULL) return conv_fail(c, KB_ENOMEM, "out of memory");
        c->turns = n;
        c->cap_turns = cap;
    }
    RagTurn *d = &c->turns[c->n_turns];
    memset(d, 0, sizeof *d);
    d->question = strdup(t->question ? t->question : "");
    d->query = strdup(t->query ? t->query : "");
    d->prompt = strdup(t->prompt ? t->prompt : (t->question ? t->question : ""));
    d->answer = strdup(t->answer ? t->answer : "");
    d->sources = copy_hits(t->sources, t->n_sources);
    d->n_sources = d->sources ? t->n_sources : 0;
    d->created = t->created ? t->created : (int64_t)time(NULL);
    if (!d->question || !d->query || !d->prompt || !d->answer || (t->n_sources > 0 && !d->sources)) {
        rag_turn_clear(d);
        return conv_fail(c, KB_ENOMEM, "out of memory");
    }
    c->n_turns++;
    return KB_OK;
}

/* --- the prompt budget --- */

/* The system prompt: prompt.system, else the template's own ("" = none). */
static const char *system_prompt(const Conversation *c)
{
    const char *s = c->cfg->system_prompt;
    return s && s[0] ? s : template_default_system(c->tpl);
}

/* Tokens kept free for the answer: conversation.answer_reserve, no more
** than an answer may have (sampling.max_tokens) nor half the context. */
static size_t answer_reserve(const Conversation *c)
{
    size_t n_ctx = (size_t)model_n_ctx(c->model), r = (size_t)c->cfg->answer_reserve;
    if ((size_t)c->cfg->max_tokens < r) r = (size_t)c->cfg->max_tokens;
    return r < n_ctx / 2 ? r : n_ctx / 2;
}

/* Renders the system prompt, turns[first..n_turns) and user_msg, and
** tokenizes it into out (replaced). */
static int render_window(Conversation *c, int first, const char *user_msg, KbPromptText *p, KbTokens *out)
{
    size_t n = 0, cap = 2 + 2 * (size_t)(c->n_turns - first);
    KbChatMsg *msgs = malloc(cap * sizeof *msgs);
    if (msgs == NULL) return KB_ENOMEM;
    const char *sys = system_prompt(c);
    if (sys[0]) msgs[n++] = (KbChatMsg){KB_ROLE_SYSTEM, sys};
    for (int i = first; i < c->n_turns; i++) {
        msgs[n++] = (KbChatMsg){KB_ROLE_USER, c->turns[i].prompt};
        msgs[n++] = (KbChatMsg){KB_ROLE_ASSISTANT, c->turns[i].answer};
    }
    msgs[n++] = (KbChatMsg){KB_ROLE_USER, user_msg};
    out->n = 0;
    int rc = template_render(c->tpl, msgs, n, p);
    if (rc == KB_OK) rc = template_tokenize(p, model_tokenizer(c->model), out);
    free(msgs);
    return rc;
}

/* Fits the prompt for user_msg with `reserve` tokens to spare: without
** history first (KB_ERANGE when even that is too long), then with as many
** of the most recent turns as fit. On success out and p hold the prompt and
** *first the first turn in it. */
static int fit_window(Conversation *c, const char *user_msg, size_t reserve, KbPromptText *p, KbTokens *out, int *first)
{
    size_t n_ctx = (size_t)model_n_ctx(c->model), room = n_ctx > reserve ? n_ctx - reserve : 0;
    KbPromptText tp = {0};
    KbTokens tt = {0};
    int rc = render_window(c, c->n_turns, user_msg, p, out);
    if (rc == KB_OK && out->n > room) rc = KB_ERANGE;
    *first = c->n_turns;
    while (rc == KB_OK && *first > 0) {
        int r2 = render_window(c, *first - 1, user_msg, &tp, &tt);
        if (r2 == KB_ENOMEM) rc = r2;
        if (r2 != KB_OK || tt.n > room) break;
        KbPromptText sp = *p;
        KbTokens st = *out;
        *p = tp, *out = tt, tp = sp, tt = st; /* keep the longer prompt */
        (*first)--;
    }
    template_text_free(&tp);
    kb_tokens_free(&tt);
    return rc;
}

int conv_build_prompt(Conversation *c, const char *user_msg, KbTokens *out, ConvStats *st)
{
    ConvStats dummy;
    if (st == NULL) st = &dummy;
    if (c->model == NULL) return conv_fail(c, KB_EINVAL, "no model is loaded");
    KbPromptText p = {0};
    KbTokens t = {0};
    int first = 0;
    st->n_ctx = (size_t)model_n_ctx(c->model);
    st->reserve = answer_reserve(c);
    int rc = fit_window(c, user_msg, st->reserve, &p, &t, &first);
    if (rc == KB_OK) {
        for (size_t i = 0; i < t.n && rc == KB_OK; i++) rc = kb_tokens_push(out, t.ids[i]);
        st->prompt_tokens = t.n;
        st->turns_kept = c->n_turns - first;
        st->turns_dropped = first;
        if (rc == KB_OK) rc = set_str(&c->last_prompt, p.text);
    }
    template_text_free(&p);
    kb_tokens_free(&t);
    if (rc == KB_ERANGE)
        return conv_fail(c, rc, "the question does not fit the model's context of %zu tokens (%zu kept for the answer)",
                         st->n_ctx, st->reserve);
    return rc == KB_OK ? KB_OK : conv_fail(c, rc, "out of memory");
}

/* --- generation --- */

/* Collects the generated text while passing it on. */
typedef struct Collect {
    GString *text;
    KbPieceFn fn;
    void *user;
} Collect;

static int collect_piece(void *user, const char *piece, size_t len)
{
    Collect *k = user;
    g_string_append_len(k->text, piece, (gssize)len);
    return k->fn ? k->fn(k->user, piece, len) : 0;
}

/* Generates after prompt with sampler parameters sp until the template's
** stops, collecting the text in *text (g_malloc'd). */
static int run_model(Conversation *c, const KbTokens *prompt, const KbSamplerParams *sp, int64_t max_tokens,
                     KbPieceFn fn, void *user, char **text, KbGenerateStats *gs)
{
    KbSampler *smp = NULL;
    Collect k = {g_string_new(NULL), fn, user};
    int rc = sampler_new(sp, model_n_vocab(c->model), &smp);
    /* control tokens are rendered so the stops see end-of-turn tokens; they are never shown */
    KbGenerateParams gp = {max_tokens, template_stop_strings(c->tpl), true};
    if (rc == KB_OK) rc = model_generate(c->model, smp, prompt->ids, prompt->n, &gp, collect_piece, &k, gs);
    if (rc != KB_OK) conv_fail(c, rc, "%s", rc == KB_ENOMEM ? "out of memory" : model_errmsg(c->model));
    sampler_free(smp);
    *text = g_string_free(k.text, FALSE);
    return rc;
}

/* Tokens an answer may have: sampling.max_tokens, and what the context has left. */
static int64_t answer_room(const Conversation *c, size_t n_prompt)
{
    int64_t left = model_n_ctx(c->model) - (int64_t)n_prompt;
    return c->cfg->max_tokens < left ? c->cfg->max_tokens : (left > 0 ? left : 1);
}

/* The configured sampler, its seed advanced per answer so /retry differs. */
static KbSamplerParams answer_sampler(Conversation *c)
{
    const KbConfig *f = c->cfg;
    uint64_t seed = (f->seed >= 0 ? (uint64_t)f->seed : c->seed) + c->n_answers++;
    return (KbSamplerParams){(float)f->temperature, (int32_t)f->top_k, (float)f->top_p, (float)f->min_p,
                             (float)f->repeat_penalty, 0, 0, (int32_t)f->repeat_last_n, seed};
}

/* --- 1. rewrite --- */

/* The request that follows the history in the rewrite prompt. */
static char *rewrite_request(const char *question)
{
    if (rag_text_lang(question) == RAG_LANG_ZH)
        return g_strdup_printf("把我接下来的问题改写成一个不看上面的对话也能看懂的完整问题，只回复改写后的问题。\n"
                               "问题：%s", question);
    return g_strdup_printf("Rewrite my next question as one standalone question that can be understood without "
                           "the conversation above. Reply with the question only.\nQuestion: %s", question);
}

/* Tokens a rewrite may have: REWRITE_MAX_TOKENS, less in a tiny context. */
static size_t rewrite_room(const Conversation *c)
{
    size_t quarter = (size_t)model_n_ctx(c->model) / 4;
    return quarter < REWRITE_MAX_TOKENS ? quarter : REWRITE_MAX_TOKENS;
}

/* The model's (or the hook's) standalone question. */
static int rewrite_run(Conversation *c, const KbTokens *prompt, const char *question, char **out)
{
    if (c->rewrite) return c->rewrite(c->rewrite_user, c->last_rewrite, question, out);
    KbSamplerParams greedy = {0, 0, 1, 0, 1, 0, 0, 0, 0};
    KbGenerateStats gs;
    char *text = NULL;
    int rc = run_model(c, prompt, &greedy, (int64_t)rewrite_room(c), NULL, NULL, &text, &gs);
    *out = text && rc == KB_OK ? strdup(text) : NULL;
    g_free(text);
    return rc;
}

/* The question in a rewrite's output: its first non-empty line, without
** an echoed "Question:" label; NULL when there is none (or no memory). */
static char *rewrite_answer(const char *out)
{
    static const char *const labels[] = {"Standalone question:", "Question:", "问题：", "问题:"};
    while (g_ascii_isspace(*out)) out++;
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
        if (strncmp(out, labels[i], strlen(labels[i])) == 0) out += strlen(labels[i]);
    char *q = dup_trim_n(out, strcspn(out, "\n"));
    if (q && q[0] == '\0') free(q), q = NULL;
    return q;
}

/* Makes question standalone using the history; *query receives the
** standalone question, or a copy of question when the rewrite fails or
** says nothing. Returns KB_OK or KB_ENOMEM. */
static int rewrite_question(Conversation *c, const char *question, char **query, ConvStats *st)
{
    char *request = rewrite_request(question), *out = NULL;
    KbPromptText p = {0};
    KbTokens t = {0};
    int first, rc = fit_window(c, request, rewrite_room(c), &p, &t, &first);
    if (rc == KB_OK) rc = set_str(&c->last_rewrite, p.text);
    if (rc == KB_OK && rewrite_run(c, &t, question, &out) == KB_OK && out) *query = rewrite_answer(out);
    st->rewrote = *query != NULL;
    if (*query == NULL) *query = strdup(question);
    free(out);
    g_free(request);
    template_text_free(&p);
    kb_tokens_free(&t);
    return *query ? KB_OK : conv_fail(c, KB_ENOMEM, "out of memory");
}

/* --- 2. retrieve --- */

/* The passages of the knowledge base for query, best first: hybrid search
** (keyword only without an embedding model; the ChatApp's note, shown when
** the knowledge base is chosen, says why). The one place that knows the
** search API. */
static int retrieve(Conversation *c, const char *query, RagHit **hits, int *n)
{
    RagQuery q = {.text = query, .mode = RAG_MODE_HYBRID, .top_k = (int)c->cfg->retrieval_top_k,
                  .threshold = c->cfg->score_threshold, .expand = 1, .embedder = c->embedder};
    int rc = rag_retrieve(c->rag, c->kb, &q, hits, n, NULL);
    if (rc != KB_OK) return conv_fail(c, rc, "%s", rag_errmsg(c->rag));
    return KB_OK;
}

/* --- 3. ground, 4. budget with passages --- */

/* What counting a grounded prompt needs: the frame around the message. */
typedef struct Frame {
    Conversation *c;
    const KbPromptText *p; /* rendered with an empty message */
} Frame;

/* RagTokenCountFn: tokens of frame prefix + message + frame suffix as the
** model gets them (control tokens only in the frame). */
static int count_framed(const char *text, size_t len, void *user)
{
    const Frame *f = user;
    size_t pre = f->p->last_start, post = f->p->len - f->p->last_end;
    unsigned char *mask = len >= pre + post ? calloc(len + 1, 1) : NULL;
    KbTokens t = {0};
    if (mask == NULL) return -1;
    memcpy(mask, f->p->special, pre);
    memcpy(mask + len - post, f->p->special + f->p->last_end, post);
    int rc = tokenizer_encode_masked(model_tokenizer(f->c->model), text, len, mask, KB_TOK_ADD_SPECIAL, &t);
    int n = rc == KB_OK ? (int)t.n : -1;
    free(mask);
    kb_tokens_free(&t);
    return n;
}

/* The user message for question: with passages, the grounded prompt of
** rag_prompt_build holding as many of the best passages as fit (without
** history) with the reserve kept; *n_used tells how many. */
static int ground_to_fit(Conversation *c, const char *question, const RagHit *hits, int n_hits, size_t reserve,
                         char **msg, int *n_used)
{
    KbPromptText frame = {0};
    KbTokens t = {0};
    RagPrompt rp = {0};
    *msg = NULL;
    *n_used = 0;
    if (n_hits == 0) return (*msg = strdup(question)) ? KB_OK : KB_ENOMEM;
    int rc = render_window(c, c->n_turns, "", &frame, &t);
    if (rc == KB_OK) {
        char *prefix = strndup(frame.text, frame.last_start);
        Frame f = {c, &frame};
        RagPromptOptions po = {c->cfg->prompt_template, prefix, frame.text + frame.last_end, model_n_ctx(c->model),
                               (int64_t)reserve, count_framed, &f};
        rc = prefix ? rag_prompt_build(question, hits, n_hits, &po, &rp) : KB_ENOMEM;
        size_t len = rc == KB_OK ? strlen(rp.text) - frame.last_start - (frame.len - frame.last_end) : 0;
        if (rc == KB_OK) *msg = strndup(rp.text + frame.last_start, len);
        if (rc == KB_OK && *msg == NULL) rc = KB_ENOMEM;
        *n_used = rp.n_passages;
        free(prefix);
    }
    rag_prompt_clear(&rp);
    template_text_free(&frame);
    kb_tokens_free(&t);
    return rc;
}

/* --- 5. answer and store --- */

/* A session title: the first line of question, at most TITLE_CHARS characters. */
static char *make_title(const char *question)
{
    size_t line = strcspn(question, "\n");
    const char *end = question;
    for (int i = 0; i < TITLE_CHARS && (size_t)(end - question) < line; i++) end = g_utf8_next_char(end);
    char *t = dup_trim_n(question, (size_t)(end - question) < line ? (size_t)(end - question) : line);
    if (t && (size_t)(end - question) < line) {
        char *l = g_strconcat(t, "…", NULL);
        free(t);
        t = l ? strdup(l) : NULL;
        g_free(l);
    }
    return t;
}

/* Stores turn t, creating the session on the first answer. */
static int store_turn(Conversation *c, const RagTurn *t)
{
    if (c->rag == NULL) return KB_OK;
    int rc = KB_OK;
    if (c->session == 0) {
        char *title = c->title[0] ? strdup(c->title) : make_title(t->question);
        if (title == NULL) return conv_fail(c, KB_ENOMEM, "out of memory");
        free(c->title);
        c->title = title;
        RagSession s = {.title = c->title, .model = c->model_path, .template_name = (char *)template_name(c->tpl), .kb = c->kb};
        rc = rag_session_create(c->rag, &s, &c->session);
    }
    if (rc == KB_OK) rc = rag_session_add_turn(c->rag, c->session, t);
    return rc == KB_OK ? KB_OK : conv_fail(c, rc, "the turn was not saved: %s", rag_errmsg(c->rag));
}

/* The retrieval half of a question: rewrite, search, ground within the
** budget. Fills turn's query and sources and *msg (the user message); when
** the knowledge base has nothing on it, turn->answer says so instead
** (strict grounding: the model is not asked to guess). */
static int prepare(Conversation *c, RagTurn *turn, char **msg, ConvStats *st)
{
    RagHit *hits = NULL;
    int n_hits = 0, n_used = 0, rc = KB_OK;
    size_t reserve = answer_reserve(c);
    if (c->kb[0] && c->rag) {
        if (c->n_turns > 0) rc = rewrite_question(c, turn->question, &turn->query, st);
        else if ((turn->query = strdup(turn->question)) == NULL) rc = KB_ENOMEM;
        if (rc == KB_OK) rc = retrieve(c, turn->query, &hits, &n_hits);
        if (rc == KB_OK && n_hits == 0 &&
            (turn->answer = strdup(rag_prompt_nothing_found(rag_text_lang(turn->question)))) == NULL)
            rc = KB_ENOMEM;
    }
    if (rc == KB_OK) rc = ground_to_fit(c, turn->question, hits, n_hits, reserve, msg, &n_used);
    if (rc == KB_ERANGE) conv_fail(c, rc, "the question does not fit the model's context of %lld tokens",
                                   (long long)model_n_ctx(c->model));
    st->passages_dropped = n_hits - n_used;
    turn->sources = copy_hits(hits, n_used);
    turn->n_sources = turn->sources ? n_used : 0;
    rag_hits_free(hits, n_hits);
    if (rc == KB_OK && turn->query == NULL) turn->query = strdup("");
    if (rc == KB_OK && (turn->query == NULL || (n_used > 0 && turn->sources == NULL))) rc = KB_ENOMEM;
    return rc == KB_ENOMEM ? conv_fail(c, rc, "out of memory") : rc;
}

int conv_ask(Conversation *c, const char *question, KbPieceFn on_piece, void *user, ConvStats *stats)
{
    ConvStats dummy;
    ConvStats *st = stats ? stats : &dummy;
    memset(st, 0, sizeof *st);
    c->errmsg[0] = '\0';
    if (set_str(&c->last_rewrite, "") != KB_OK) return conv_fail(c, KB_ENOMEM, "out of memory");
    if (c->model == NULL) return conv_fail(c, KB_EINVAL, "no model is loaded (/model FILE)");
    RagTurn turn = {0};
    turn.question = dup_trim(question);
    if (turn.question == NULL) return conv_fail(c, KB_ENOMEM, "out of memory");
    char *msg = NULL, *answer = NULL;
    KbTokens prompt = {0};
    int rc = turn.question[0] ? prepare(c, &turn, &msg, st) : conv_fail(c, KB_EINVAL, "the question is empty");
    if (rc == KB_OK) rc = conv_build_prompt(c, msg, &prompt, st);
    if (rc == KB_OK && turn.answer) {
        if (on_piece) on_piece(user, turn.answer, strlen(turn.answer)); /* nothing found: said, not generated */
    } else if (rc == KB_OK) {
        KbSamplerParams sp = answer_sampler(c);
        rc = run_model(c, &prompt, &sp, answer_room(c, prompt.n), on_piece, user, &answer, &st->gen);
        if (rc == KB_OK && (turn.answer = dup_trim(answer)) == NULL) rc = conv_fail(c, KB_ENOMEM, "out of memory");
    }
    if (rc == KB_OK) {
        turn.prompt = msg, msg = NULL;
        turn.created = (int64_t)time(NULL);
        rc = conv_push_turn(c, &turn);
    }
    if (rc == KB_OK) st->save_rc = store_turn(c, &turn);
    g_free(answer);
    free(msg);
    kb_tokens_free(&prompt);
    rag_turn_clear(&turn);
    return rc;
}

int conv_retry(Conversation *c, KbPieceFn on_piece, void *user, ConvStats *stats)
{
    if (c->n_turns == 0) return conv_fail(c, KB_ENOTFOUND, "there is no answer to retry");
    char *question = strdup(c->turns[c->n_turns - 1].question);
    if (question == NULL) return conv_fail(c, KB_ENOMEM, "out of memory");
    if (c->rag && c->session) {
        int rc = rag_session_drop_last_turn(c->rag, c->session);
        if (rc != KB_OK) {
            free(question);
            return conv_fail(c, rc, "%s", rag_errmsg(c->rag));
        }
    }
    rag_turn_clear(&c->turns[--c->n_turns]);
    int rc = conv_ask(c, question, on_piece, user, stats);
    free(question);
    return rc;
}

/* --- sessions --- */

void conv_reset(Conversation *c)
{
    drop_turns(c);
    c->session = 0;
    set_str(&c->title, ""); /* a 1-byte copy: on failure the old title stays, harmlessly */
}

/* Whether knowledge base name still exists: *gone is set when it does not.
** Returns KB_OK, or the code of a failed lookup. */
static int kb_still_there(Conversation *c, const char *name, int *gone)
{
    RagKbInfo info;
    *gone = 0;
    if (name[0] == '\0') return KB_OK;
    int rc = rag_kb_info(c->rag, name, &info);
    if (rc == KB_OK) rag_kb_info_clear(&info);
    if (rc == KB_ENOTFOUND) *gone = 1, rc = KB_OK;
    return rc;
}

int conv_open_session(Conversation *c, int64_t id, const char **note)
{
    RagSession s;
    RagTurn *turns = NULL;
    int n = 0, gone = 0;
    char *kb = NULL;
    if (note) *note = NULL;
    if (c->rag == NULL) return conv_fail(c, KB_EINVAL, "no database");
    int rc = rag_session_get(c->rag, id, &s);
    if (rc == KB_OK) rc = rag_session_turns(c->rag, id, &turns, &n);
    if (rc == KB_OK) rc = kb_still_there(c, s.kb, &gone);
    if (rc == KB_OK && (kb = strdup(gone ? "" : s.kb)) == NULL) rc = KB_ENOMEM;
    if (rc != KB_OK) {
        conv_fail(c, rc, "%s", rc == KB_ENOMEM ? "out of memory" : rag_errmsg(c->rag));
        rag_turns_free(turns, n);
        rag_session_clear(&s);
        return rc;
    }
    /* everything read: only now is the conversation replaced */
    drop_turns(c);
    c->turns = turns, c->n_turns = c->cap_turns = n;
    c->session = id;
    free(c->title);
    c->title = s.title, s.title = NULL;
    free(c->kb);
    c->kb = kb;
    rag_session_clear(&s);
    if (gone && note) *note = "its knowledge base no longer exists: searching none";
    if (gone) update_session_row(c);
    return KB_OK;
}

int conv_rename(Conversation *c, const char *title)
{
    char *t = dup_trim(title);
    if (t == NULL) return conv_fail(c, KB_ENOMEM, "out of memory");
    if (t[0] == '\0') {
        free(t);
        return conv_fail(c, KB_EINVAL, "the title is empty");
    }
    free(c->title);
    c->title = t;
    return update_session_row(c);
}

/* Writes the sources of t as a Markdown list with the passages quoted. */
static void export_sources(const RagTurn *t, FILE *out)
{
    if (t->query[0] && t->n_sources == 0) fprintf(out, "*No passage found for: %s*\n\n", t->query);
    if (t->n_sources == 0) return;
    fprintf(out, "**Sources**");
    if (strcmp(t->query, t->question) != 0) fprintf(out, " (searched for: %s)", t->query);
    fputs("\n\n", out);
    for (int i = 0; i < t->n_sources; i++) {
        const RagHit *h = &t->sources[i];
        fprintf(out, "%d. [%d] %s", i + 1, i + 1, h->file);
        if (h->page > 0) fprintf(out, ", page %d", h->page);
        if (h->section[0]) fprintf(out, ", %s", h->section);
        fputs("\n", out);
        for (const char *p = h->text; *p;) {
            size_t n = strcspn(p, "\n");
            fprintf(out, "   > %.*s\n", (int)n, p);
            p += n + (p[n] == '\n');
        }
    }
    fputs("\n", out);
}

int conv_export_markdown(const Conversation *c, FILE *out)
{
    fprintf(out, "# %s\n\n", c->title[0] ? c->title : "Conversation");
    if (c->model_path) fprintf(out, "- Model: %s (template %s)\n", c->model_path, template_name(c->tpl));
    fprintf(out, "- Knowledge base: %s\n\n", c->kb[0] ? c->kb : "none");
    for (int i = 0; i < c->n_turns; i++) {
        const RagTurn *t = &c->turns[i];
        char when[32] = "";
        time_t tt = (time_t)t->created;
        struct tm tm;
        if (localtime_r(&tt, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        fprintf(out, "## %d. %.*s\n\n", i + 1, (int)strcspn(t->question, "\n"), t->question);
        if (strchr(t->question, '\n')) fprintf(out, "%s\n\n", t->question);
        fprintf(out, "*%s*\n\n%s\n\n", when, t->answer);
        export_sources(t, out);
    }
    return fflush(out) == 0 && !ferror(out) ? KB_OK : KB_EIO;
}
