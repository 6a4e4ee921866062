/*
** template.c: chat templates (see template.h; exact formats in
** docs/conversations.md).
**
** Every format is one row of a table: text before and after each role's
** message, the generation prompt, and what comes once before or after
** everything. Round-based ChatGLM formats number their user messages
** ("[Round %d]"), and ChatGLM-6B sends a lone question as it is; those are
** flags of the row, so one renderer serves all thirteen formats.
**
** The renderer appends template text with special = 1 and message text with
** special = 0; template_tokenize hands both to tokenizer_encode_masked.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/engine.h"

/* --- the formats --- */

/* One chat format. NULL strings are empty. */
typedef struct TplSpec {
    const char *name;
    const char *prefix;          /* once, before everything */
    const char *sys_pre, *sys_post;
    const char *user_pre;        /* may hold one %d: the round number */
    const char *sys_user_pre;    /* user_pre right after the system message (llama2); NULL = user_pre */
    const char *user_post;
    const char *asst_pre, *asst_post;
    const char *gen;             /* after a final user message */
    const char *suffix;          /* once, after everything (ChatGLM-6B's [gMASK]<sop>) */
    int round_base;              /* number of the first round in user_pre */
    int lone_question_raw;       /* one user message and nothing else: its text alone */
    const char *default_system;
    const char *const *stops;
} TplSpec;

#define VICUNA_SYSTEM                                                                                             \
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "     \
    "detailed, and polite answers to the user's questions."
#define PHOENIX_SYSTEM                                                                                            \
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "    \
    "detailed, and polite answers to the human's questions."
#define ALPACA_SYSTEM                                                                                             \
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."

static const char *const stops_chatml[] = {"<|im_end|>", "<|im_start|>", "<|endoftext|>", NULL};
static const char *const stops_llama2[] = {"</s>", "[INST]", NULL};
static const char *const stops_llama3[] = {"<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>", NULL};
static const char *const stops_vicuna[] = {"</s>", "USER:", NULL};
static const char *const stops_alpaca[] = {"</s>", "### Instruction:", NULL};
static const char *const stops_human[] = {"</s>", "Human:", NULL};
static const char *const stops_rounds[] = {"[Round", "问：", NULL};
static const char *const stops_glm3[] = {"<|user|>", "<|observation|>", "<|system|>", NULL};
static const char *const stops_glm4[] = {"<|user|>", "<|observation|>", "<|endoftext|>", NULL};
static const char *const stops_none[] = {NULL};

/* Indexed by KbTemplate. */
static const TplSpec tpl_specs[KB_TPL_COUNT] = {
    [KB_TPL_CHATML] = {.name = "chatml",
                       .sys_pre = "<|im_start|>system\n", .sys_post = "<|im_end|>\n",
                       .user_pre = "<|im_start|>user\n", .user_post = "<|im_end|>\n",
                       .asst_pre = "<|im_start|>assistant\n", .asst_post = "<|im_end|>\n",
                       .gen = "<|im_start|>assistant\n", .stops = stops_chatml},
    [KB_TPL_LLAMA2] = {.name = "llama2",
                       .sys_pre = "[INST] <<SYS>>\n", .sys_post = "\n<</SYS>>\n\n",
                       .user_pre = "[INST] ", .sys_user_pre = "", .user_post = " [/INST]",
                       .asst_post = "</s>", .stops = stops_llama2},
    [KB_TPL_LLAMA3] = {.name = "llama3",
                       .sys_pre = "<|start_header_id|>system<|end_header_id|>\n\n", .sys_post = "<|eot_id|>",
                       .user_pre = "<|start_header_id|>user<|end_header_id|>\n\n", .user_post = "<|eot_id|>",
                       .asst_pre = "<|start_header_id|>assistant<|end_header_id|>\n\n", .asst_post = "<|eot_id|>",
                       .gen = "<|start_header_id|>assistant<|end_header_id|>\n\n", .stops = stops_llama3},
    [KB_TPL_VICUNA] = {.name = "vicuna", .sys_post = " ",
                       .user_pre = "USER: ", .user_post = " ", .asst_pre = "ASSISTANT: ", .asst_post = "</s>",
                       .gen = "ASSISTANT:", .default_system = VICUNA_SYSTEM, .stops = stops_vicuna},
    [KB_TPL_ALPACA] = {.name = "alpaca", .sys_post = "\n\n",
                       .user_pre = "### Instruction:\n", .user_post = "\n\n",
                       .asst_pre = "### Response:\n", .asst_post = "\n\n",
                       .gen = "### Response:", .default_system = ALPACA_SYSTEM, .stops = stops_alpaca},
    [KB_TPL_BELLE] = {.name = "belle", .sys_post = "\n\n",
                      .user_pre = "Human: ", .user_post = "\n\n", .asst_pre = "Assistant: ", .asst_post = "\n\n",
                      .gen = "Assistant:", .stops = stops_human},
    [KB_TPL_PHOENIX] = {.name = "phoenix", .sys_post = "\n\n",
                        .user_pre = "Human: <s>", .user_post = "</s>", .asst_pre = "Assistant: <s>", .asst_post = "</s>",
                        .gen = "Assistant: <s>", .default_system = PHOENIX_SYSTEM, .stops = stops_human},
    [KB_TPL_CHATGLM] = {.name = "chatglm", .sys_post = "\n",
                        .user_pre = "[Round %d]\n问：", .user_post = "\n", .asst_pre = "答：", .asst_post = "\n",
                        .gen = "答：", .suffix = "[gMASK]<sop>", .round_base = 0, .lone_question_raw = 1,
                        .stops = stops_rounds},
    [KB_TPL_CHATGLM2] = {.name = "chatglm2", .prefix = "[gMASK]sop", .sys_post = "\n\n",
                         .user_pre = "[Round %d]\n\n问：", .user_post = "\n\n", .asst_pre = "答：", .asst_post = "\n\n",
                         .gen = "答：", .round_base = 1, .stops = stops_rounds},
    [KB_TPL_CHATGLM3] = {.name = "chatglm3", .prefix = "[gMASK]sop",
                         .sys_pre = "<|system|>\n ", .user_pre = "<|user|>\n ", .asst_pre = "<|assistant|>\n ",
                         .gen = "<|assistant|>", .stops = stops_glm3},
    [KB_TPL_CHATGLM4] = {.name = "chatglm4", .prefix = "[gMASK]<sop>",
                         .sys_pre = "<|system|>\n", .user_pre = "<|user|>\n", .asst_pre = "<|assistant|>\n",
                         .gen = "<|assistant|>", .stops = stops_glm4},
    [KB_TPL_RAW] = {.name = "raw", .sys_post = "\n", .asst_pre = "\n", .asst_post = "\n", .stops = stops_none},
};

static const TplSpec *spec_of(KbTemplate t)
{
    return t > KB_TPL_NONE && t < KB_TPL_COUNT ? &tpl_specs[t] : NULL;
}

const char *template_name(KbTemplate t)
{
    const TplSpec *s = spec_of(t);
    return s ? s->name : "none";
}

KbTemplate template_from_name(const char *name)
{
    for (int t = KB_TPL_NONE + 1; name && t < KB_TPL_COUNT; t++)
        if (strcmp(tpl_specs[t].name, name) == 0) return (KbTemplate)t;
    return KB_TPL_NONE;
}

const char *template_default_system(KbTemplate t)
{
    const TplSpec *s = spec_of(t);
    return s && s->default_system ? s->default_system : "";
}

const char *const *template_stop_strings(KbTemplate t)
{
    const TplSpec *s = spec_of(t);
    return s ? s->stops : stops_none;
}

/* --- detection --- */

/* True when hay holds needle, ignoring ASCII case. */
static int has_word(const char *hay, const char *needle)
{
    if (hay == NULL) return 0;
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0) return 1;
    return 0;
}

/* True when the vocabulary has a token spelled text. */
static int has_token(const Tokenizer *tok, const char *text)
{
    return tok && tokenizer_find(tok, text, strlen(text)) >= 0;
}

/* tokenizer.chat_template substrings, in llama.cpp's order of tests. */
static KbTemplate detect_jinja(const char *j, const char **why)
{
    static const struct { const char *a, *b; KbTemplate t; const char *why; } rules[] = {
        {"<|im_start|>", NULL, KB_TPL_CHATML, "tokenizer.chat_template uses <|im_start|>"},
        {"[INST]", NULL, KB_TPL_LLAMA2, "tokenizer.chat_template uses [INST]"},
        {"[gMASK]<sop>", NULL, KB_TPL_CHATGLM4, "tokenizer.chat_template starts with [gMASK]<sop>"},
        {"USER: ", "ASSISTANT: ", KB_TPL_VICUNA, "tokenizer.chat_template uses USER: and ASSISTANT:"},
        {"<|start_header_id|>", NULL, KB_TPL_LLAMA3, "tokenizer.chat_template uses <|start_header_id|>"},
        {"[gMASK]sop", NULL, KB_TPL_CHATGLM3, "tokenizer.chat_template starts with [gMASK]sop"},
        {"### Instruction:", NULL, KB_TPL_ALPACA, "tokenizer.chat_template uses ### Instruction:"},
    };
    for (size_t i = 0; j && i < sizeof rules / sizeof rules[0]; i++) {
        if (strstr(j, rules[i].a) && (rules[i].b == NULL || strstr(j, rules[i].b))) {
            *why = rules[i].why;
            return rules[i].t;
        }
    }
    return KB_TPL_NONE;
}

/* ChatGLM2/3 and GLM-4 share the architecture: the name, then the
** vocabulary's prompt tokens tell them apart. */
static KbTemplate detect_glm(const char *name, const Tokenizer *tok, const char **why)
{
    *why = "architecture chatglm and general.name";
    if (has_word(name, "glm-4") || has_word(name, "glm4")) return KB_TPL_CHATGLM4;
    if (has_word(name, "chatglm3")) return KB_TPL_CHATGLM3;
    if (has_word(name, "chatglm2")) return KB_TPL_CHATGLM2;
    *why = "architecture chatglm and its vocabulary";
    if (has_token(tok, "<sop>") && has_token(tok, "<|user|>")) return KB_TPL_CHATGLM4;
    if (has_token(tok, "<|user|>")) return KB_TPL_CHATGLM3;
    *why = "architecture chatglm (no ChatGLM3/GLM-4 tokens)";
    return KB_TPL_CHATGLM2;
}

/* Fine-tunes named after their format, in any architecture. */
static KbTemplate detect_name(const char *name, const char **why)
{
    static const struct { const char *word; KbTemplate t; } rules[] = {
        {"vicuna", KB_TPL_VICUNA}, {"alpaca", KB_TPL_ALPACA},   {"phoenix", KB_TPL_PHOENIX},
        {"chimera", KB_TPL_PHOENIX}, {"belle", KB_TPL_BELLE},   {"llama-3", KB_TPL_LLAMA3},
        {"llama3", KB_TPL_LLAMA3}, {"llama-2", KB_TPL_LLAMA2},  {"llama2", KB_TPL_LLAMA2},
        {"qwen", KB_TPL_CHATML},   {"bloomz", KB_TPL_RAW},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (has_word(name, rules[i].word)) {
            *why = "general.name";
            return rules[i].t;
        }
    }
    return KB_TPL_NONE;
}

KbTemplate template_detect(const char *chat_template, const char *arch, const char *name, const Tokenizer *tok,
                           const char **why)
{
    const char *reason = "";
    KbTemplate t = detect_jinja(chat_template, &reason);
    if (t == KB_TPL_NONE && arch && strcmp(arch, "chatglm1") == 0)
        t = KB_TPL_CHATGLM, reason = "architecture chatglm1 (ChatGLM-6B)";
    if (t == KB_TPL_NONE && arch && strcmp(arch, "chatglm") == 0) t = detect_glm(name, tok, &reason);
    if (t == KB_TPL_NONE && arch && strcmp(arch, "qwen2") == 0) t = KB_TPL_CHATML, reason = "architecture qwen2";
    if (t == KB_TPL_NONE) t = detect_name(name, &reason);
    if (t == KB_TPL_NONE && has_token(tok, "<|im_start|>")) t = KB_TPL_CHATML, reason = "the vocabulary has <|im_start|>";
    if (t == KB_TPL_NONE && has_token(tok, "<|start_header_id|>"))
        t = KB_TPL_LLAMA3, reason = "the vocabulary has <|start_header_id|>";
    if (t == KB_TPL_NONE && arch && strcmp(arch, "bloom") == 0) t = KB_TPL_RAW, reason = "architecture bloom";
    if (t == KB_TPL_NONE) t = KB_TPL_CHATML, reason = "nothing in the file names a format: chatml, llama.cpp's default";
    if (why) *why = reason;
    return t;
}

/* Returns a copy of string key k of g (NULL when absent or out of memory). */
static char *gguf_dup_str(const GgufFile *g, const char *k)
{
    const char *s;
    size_t len;
    if (gguf_get_str(g, k, &s, &len) != KB_OK) return NULL;
    char *c = malloc(len + 1);
    if (c) memcpy(c, s, len), c[len] = '\0';
    return c;
}

KbTemplate template_detect_gguf(const GgufFile *g, const Tokenizer *tok, const char **why)
{
    char *jinja = gguf_dup_str(g, "tokenizer.chat_template");
    char *arch = gguf_dup_str(g, "general.architecture");
    char *name = gguf_dup_str(g, "general.name");
    KbTemplate t = template_detect(jinja, arch, name, tok, why);
    free(jinja), free(arch), free(name);
    return t;
}

/* --- rendering --- */

void template_text_free(KbPromptText *p)
{
    if (p == NULL) return;
    free(p->text);
    free(p->special);
    memset(p, 0, sizeof *p);
}

/* Appends s[0..n) with the given special flag. Returns KB_OK or KB_ENOMEM. */
static int text_add(KbPromptText *p, const char *s, size_t n, unsigned char special)
{
    if (p->len + n + 1 > p->cap) {
        size_t cap = (p->len + n + 1) * 2;
        char *t = realloc(p->text, cap);
        if (t) p->text = t;
        unsigned char *m = t ? realloc(p->special, cap) : NULL;
        if (m == NULL) return KB_ENOMEM;
        p->special = m;
        p->cap = cap;
    }
    memcpy(p->text + p->len, s, n);
    memset(p->special + p->len, special, n);
    p->len += n;
    p->text[p->len] = '\0';
    return KB_OK;
}

/* Appends template text (NULL = nothing); a %d in it becomes round. */
static int text_tpl(KbPromptText *p, const char *s, int round)
{
    if (s == NULL) return KB_OK;
    if (strstr(s, "%d") == NULL) return text_add(p, s, strlen(s), 1);
    char buf[128];
    int n = snprintf(buf, sizeof buf, s, round);
    return n < 0 || (size_t)n >= sizeof buf ? KB_EINVAL : text_add(p, buf, (size_t)n, 1);
}

/* Checks the order of roles: [system] user (assistant user)* [assistant]. */
static int check_roles(const KbChatMsg *msgs, size_t n)
{
    size_t first = n > 0 && msgs[0].role == KB_ROLE_SYSTEM;
    if (n == 0 || first == n) return KB_EINVAL;
    for (size_t i = first; i < n; i++) {
        KbRole want = (i - first) % 2 == 0 ? KB_ROLE_USER : KB_ROLE_ASSISTANT;
        if (msgs[i].role != want || msgs[i].text == NULL) return KB_EINVAL;
    }
    return msgs[0].text ? KB_OK : KB_EINVAL;
}

/* Renders one message; round counts the user messages before it. */
static int render_msg(const TplSpec *s, const KbChatMsg *m, const KbChatMsg *prev, int round, KbPromptText *out)
{
    const char *pre = s->asst_pre, *post = s->asst_post;
    if (m->role == KB_ROLE_SYSTEM) {
        pre = s->sys_pre, post = s->sys_post;
    } else if (m->role == KB_ROLE_USER) {
        pre = prev && prev->role == KB_ROLE_SYSTEM && s->sys_user_pre ? s->sys_user_pre : s->user_pre;
        post = s->user_post;
    }
    int rc = text_tpl(out, pre, s->round_base + round);
    out->last_start = out->len;
    if (rc == KB_OK) rc = text_add(out, m->text, strlen(m->text), 0);
    out->last_end = out->len;
    if (rc == KB_OK) rc = text_tpl(out, post, 0);
    return rc;
}

int template_render(KbTemplate t, const KbChatMsg *msgs, size_t n, KbPromptText *out)
{
    const TplSpec *s = spec_of(t);
    out->len = out->last_start = out->last_end = 0;
    if (out->text) out->text[0] = '\0';
    if (s == NULL || check_roles(msgs, n) != KB_OK) return KB_EINVAL;
    size_t first = msgs[0].role == KB_ROLE_SYSTEM;
    int rc = text_tpl(out, s->prefix, 0);
    if (s->lone_question_raw && n - first == 1) {
        /* ChatGLM-6B: a first question goes alone, after any system text */
        if (rc == KB_OK && first) rc = render_msg(s, &msgs[0], NULL, 0, out);
        out->last_start = out->len;
        if (rc == KB_OK) rc = text_add(out, msgs[first].text, strlen(msgs[first].text), 0);
        out->last_end = out->len;
    } else {
        int round = 0;
        for (size_t i = 0; i < n && rc == KB_OK; i++) {
            rc = render_msg(s, &msgs[i], i ? &msgs[i - 1] : NULL, round, out);
            round += msgs[i].role == KB_ROLE_USER;
        }
        if (rc == KB_OK && msgs[n - 1].role == KB_ROLE_USER) rc = text_tpl(out, s->gen, 0);
    }
    if (rc == KB_OK) rc = text_tpl(out, s->suffix, 0);
    if (rc != KB_OK) template_text_free(out);
    return rc;
}

int template_tokenize(const KbPromptText *p, const Tokenizer *tok, KbTokens *out)
{
    return tokenizer_encode_masked(tok, p->text ? p->text : "", p->len, p->special, KB_TOK_ADD_SPECIAL, out);
}
