/*
** prompt.c: the grounded prompt: retrieved passages, numbered, packed into
** the chat model's context with the question.
**
** The built-in template is Langchain-Chatchat's (the one Chinese users know,
** ../shared/docs/rag-reference.md) with a request to cite passages by
** number, and an English equivalent; the question's language picks one.
** Each passage is "[n] file, page p" then its text.
**
** Packing: the budget is the context less the tokens kept for the answer;
** the prompt (prefix, message with the question, suffix) is counted whole
** with the model's own tokenizer, so it never exceeds the budget by a
** token. Passages go in by rank, and the first that does not fit ends the
** list: the lower-ranked ones are dropped first, and none is cut. Only when
** not even the best passage fits whole is it shortened, to the whole
** sentences that fit.
*/
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/rag.h"
#include "rag/search.h"
#include "rag/utf8.h"

static const char zh_template[] =
    "【指令】根据已知信息，简洁和专业的来回答问题。如果无法从中得到答案，请说 “根据已知信息无法回答该问题”，"
    "不允许在答案中添加编造成分，答案请使用中文。引用已知信息时请标注编号，如 [1]。\n\n"
    "【已知信息】\n{context}\n\n"
    "【问题】{question}";

static const char en_template[] =
    "[Instruction] Answer the question concisely and professionally from the known information. If it does not "
    "contain the answer, say \"The known information does not answer this question.\" Do not add anything made up. "
    "Cite the passages you use by their numbers, like [1].\n\n"
    "[Known information]\n{context}\n\n"
    "[Question] {question}";

RagLang rag_text_lang(const char *text)
{
    size_t n = strlen(text), cjk = 0, letters = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t c = utf8_decode(text + i, n - i, &adv);
        if (clean_is_cjk(c)) cjk++, letters++;
        else if (g_unichar_isalpha(c)) letters++;
        i += adv;
    }
    return cjk > 0 && cjk * 5 >= letters ? RAG_LANG_ZH : RAG_LANG_EN;
}

const char *rag_prompt_nothing_found(RagLang lang)
{
    return lang == RAG_LANG_ZH ? "知识库中没有找到与这个问题相关的内容。"
                               : "The knowledge base has nothing on this question.";
}

const char *rag_prompt_fallback_label(RagLang lang)
{
    return lang == RAG_LANG_ZH ? "（未找到相关文档，以下回答来自模型自身，并非出自文档。）"
                               : "(Nothing in the knowledge base matched: this answer is the model's own, not from "
                                 "your documents.)";
}

void rag_prompt_clear(RagPrompt *p)
{
    if (p == NULL) return;
    g_free(p->text);
    memset(p, 0, sizeof *p);
}

/* --- rendering --- */

/* The packing in progress. */
typedef struct Packer {
    const char *question;
    const RagHit *hits;
    const RagPromptOptions *opt;
    const char *tmpl;
    RagLang lang;
    int64_t budget;        /* n_ctx - reserve */
} Packer;

/* Appends passage i ("[n] file, page p\n" and its first `len` bytes). */
static void add_passage(const Packer *pk, GString *ctx, int i, size_t len)
{
    const RagHit *h = &pk->hits[i];
    const char *base = strrchr(h->file, '/');
    base = base ? base + 1 : h->file;
    if (ctx->len) g_string_append(ctx, "\n\n");
    g_string_append_printf(ctx, "[%d] %s", i + 1, base);
    if (h->page > 0) g_string_append_printf(ctx, pk->lang == RAG_LANG_ZH ? "，第 %d 页" : ", page %d", h->page);
    g_string_append_c(ctx, '\n');
    g_string_append_len(ctx, h->text, (gssize)len);
}

/* Appends the template with {context} and {question} filled in, in one
** pass, so braces inside a document or the question stay as they are. */
static void fill_template(GString *out, const char *tmpl, const char *context, const char *question)
{
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{context}", 9) == 0) g_string_append(out, context), p += 9;
        else if (strncmp(p, "{question}", 10) == 0) g_string_append(out, question), p += 10;
        else g_string_append_c(out, *p++);
    }
}

/* The whole prompt with passages 0..n-1, the last cut to `cut` bytes when
** cut > 0. Returns a g_malloc'd string. */
static char *render(const Packer *pk, int n, size_t cut)
{
    GString *ctx = g_string_new(NULL);
    for (int i = 0; i < n; i++) add_passage(pk, ctx, i, i == n - 1 && cut ? cut : strlen(pk->hits[i].text));
    GString *msg = g_string_new(pk->opt->prefix ? pk->opt->prefix : "");
    fill_template(msg, pk->tmpl, ctx->str, pk->question);
    g_string_append(msg, pk->opt->suffix ? pk->opt->suffix : "");
    g_string_free(ctx, TRUE);
    return g_string_free(msg, FALSE);
}

/* Renders and counts; *fits tells whether it is within the budget. Returns
** the text (kept in *text when it fits, else freed) or KB_ENOMEM. */
static int try_render(const Packer *pk, int n, size_t cut, char **text, int64_t *tokens, int *fits)
{
    char *t = render(pk, n, cut);
    int k = pk->opt->count_tokens(t, strlen(t), pk->opt->count_user);
    *fits = k >= 0 && k <= pk->budget;
    if (k < 0) {
        g_free(t);
        return KB_ENOMEM;
    }
    if (*fits) {
        g_free(*text);
        *text = t;
        *tokens = k;
    } else {
        g_free(t);
    }
    return KB_OK;
}

/* --- packing --- */

/* The byte offsets where sentences of text end (for cutting the only
** passage); *n_out of them, ascending. Returns a malloc'd array or NULL. */
static size_t *sentence_ends(const char *text, int *n_out)
{
    size_t n = strlen(text), pos = 0;
    size_t *ends = malloc((n + 1) * sizeof *ends);
    *n_out = 0;
    if (ends == NULL) return NULL;
    while (pos < n) {
        while (text[pos] == ' ' || text[pos] == '\n') pos++;
        size_t k = passage_sentence_end(text + pos, INT_MAX);
        if (k == 0) break;
        pos += k;
        ends[(*n_out)++] = pos;
    }
    return ends;
}

/* Not even the best passage fits whole: its longest run of leading
** sentences that fits, found by bisection (more sentences, more tokens). */
static int pack_cut(const Packer *pk, RagPrompt *out)
{
    int n_ends, rc = KB_OK;
    size_t *ends = sentence_ends(pk->hits[0].text, &n_ends);
    if (ends == NULL) return KB_ENOMEM;
    int lo = 0, hi = n_ends - 1, best = -1;
    while (lo <= hi && rc == KB_OK) {
        int mid = (lo + hi) / 2, fits;
        rc = try_render(pk, 1, ends[mid], &out->text, &out->n_tokens, &fits);
        if (fits) best = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    free(ends);
    if (rc == KB_OK && best >= 0) {
        out->n_passages = 1;
        out->cut = 1;
    }
    return rc;
}

int rag_prompt_build(const char *question, const RagHit *hits, int n_hits, const RagPromptOptions *opt, RagPrompt *out)
{
    memset(out, 0, sizeof *out);
    Packer pk = {question, hits, opt, NULL, rag_text_lang(question), opt->n_ctx - opt->reserve};
    out->lang = pk.lang;
    const char *t = opt->template_text;
    if (t && t[0] && (!strstr(t, "{context}") || !strstr(t, "{question}"))) return KB_EINVAL;
    pk.tmpl = t && t[0] ? t : pk.lang == RAG_LANG_ZH ? zh_template : en_template;
    int fits = 0, rc = try_render(&pk, 0, 0, &out->text, &out->n_tokens, &fits);
    if (rc == KB_OK && !fits) rc = KB_ERANGE; /* the question alone is too long */
    for (int n = 1; rc == KB_OK && n <= n_hits; n++) {
        rc = try_render(&pk, n, 0, &out->text, &out->n_tokens, &fits);
        if (!fits) break;
        out->n_passages = n;
    }
    if (rc == KB_OK && out->n_passages == 0 && n_hits > 0) {
        rc = pack_cut(&pk, out);
        if (rc == KB_OK && out->n_passages == 0) rc = KB_ERANGE;
    }
    if (rc != KB_OK) rag_prompt_clear(out);
    out->lang = pk.lang;
    return rc;
}
