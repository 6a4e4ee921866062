/*
** template.h: chat templates: a conversation -> the prompt a model was
** trained on, as text and as token ids.
**
** Thirteen formats (../shared/docs/engine-reference.md, "Chat prompt
** formats"; exact strings in docs/conversations.md): chatml, llama2, llama3,
** vicuna, alpaca, belle, phoenix (also Chimera), chatglm (ChatGLM-6B),
** chatglm2, chatglm3, chatglm4 and raw (BLOOM/BLOOMZ: plain text).
**
** A rendered prompt remembers, byte by byte, which text came from the
** template and which from a message. Tokenizing it (template_tokenize)
** turns control-token text such as "<|im_start|>", "<|user|>", "[gMASK]" or
** "sop" into its single id where the template wrote it, and never where a
** user or a model wrote it: typing "<|im_start|>" cannot inject a turn.
**
** The template is chosen from the GGUF file (template_detect_gguf:
** tokenizer.chat_template, then the architecture, general.name and the
** vocabulary) unless the configuration names one (model.template).
*/
#ifndef KB_TEMPLATE_H
#define KB_TEMPLATE_H

#include <stddef.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

typedef enum KbTemplate {
    KB_TPL_NONE = 0,  /* unknown name; never a detection result */
    KB_TPL_CHATML,    /* Qwen and many fine-tunes */
    KB_TPL_LLAMA2,    /* Llama-2-chat: [INST] <<SYS>> ... [/INST] */
    KB_TPL_LLAMA3,    /* <|start_header_id|>role<|end_header_id|> */
    KB_TPL_VICUNA,    /* vicuna v1.1: USER: ... ASSISTANT: */
    KB_TPL_ALPACA,    /* ### Instruction: / ### Response: (Chinese-Alpaca too) */
    KB_TPL_BELLE,     /* Human: ... Assistant: */
    KB_TPL_PHOENIX,   /* Phoenix, Chimera: Human: <s>...</s>Assistant: <s> */
    KB_TPL_CHATGLM,   /* ChatGLM-6B: [Round i] 问：答：, then [gMASK]<sop> */
    KB_TPL_CHATGLM2,  /* [gMASK]sop [Round n] 问：答： */
    KB_TPL_CHATGLM3,  /* [gMASK]sop<|role|>\n content */
    KB_TPL_CHATGLM4,  /* [gMASK]<sop><|role|>\ncontent */
    KB_TPL_RAW,       /* plain text: messages joined by newlines */
    KB_TPL_COUNT
} KbTemplate;

typedef enum KbRole { KB_ROLE_SYSTEM = 0, KB_ROLE_USER, KB_ROLE_ASSISTANT } KbRole;

/* One message of a conversation. text is borrowed (NUL-terminated). */
typedef struct KbChatMsg {
    KbRole role;
    const char *text;
} KbChatMsg;

/* A rendered prompt: text[0..len) (NUL-terminated) and, per byte,
** special[i] = 1 where the template wrote the byte (control-token text may
** be matched there) and 0 where a message did. text[last_start..last_end)
** is the last message's text, so a caller can size what goes around it.
** Zero-initialise; free with template_text_free. */
typedef struct KbPromptText {
    char *text;
    unsigned char *special;
    size_t len, cap;
    size_t last_start, last_end;
} KbPromptText;

/* The template's name as model.template spells it ("chatml"); "none" for
** KB_TPL_NONE or an out-of-range value. */
const char *template_name(KbTemplate t);

/* The template named name (case-sensitive, as template_name gives), or
** KB_TPL_NONE ("auto" and unknown names). */
KbTemplate template_from_name(const char *name);

/* Picks the template of a model. chat_template (the GGUF's
** tokenizer.chat_template), arch and name (general.name) may be NULL; tok
** (may be NULL) lets the vocabulary decide between look-alikes (ChatGLM3 or
** GLM-4). Order: substrings of chat_template (<|im_start|> chatml, [INST]
** llama2, [gMASK]<sop> chatglm4, USER: + ASSISTANT: vicuna,
** <|start_header_id|> llama3, [gMASK]sop chatglm3, ### Instruction: alpaca),
** then the architecture (chatglm1 -> chatglm; chatglm -> chatglm2/3/4 by
** the name or the vocabulary; qwen2 -> chatml), words of the name, the
** vocabulary, bloom -> raw; chatml
** (llama.cpp's default) when nothing tells. *why (may be NULL) receives a
** static phrase saying what decided. Never returns KB_TPL_NONE. */
KbTemplate template_detect(const char *chat_template, const char *arch, const char *name, const Tokenizer *tok,
                           const char **why /* OUT */);

/* template_detect with the strings read from g. */
KbTemplate template_detect_gguf(const GgufFile *g, const Tokenizer *tok, const char **why /* OUT */);

/* The system prompt the format comes with (vicuna, alpaca, phoenix), or ""
** when it has none: used when the configuration gives none. */
const char *template_default_system(KbTemplate t);

/* Strings that end an answer in this format (end-of-turn control tokens
** such as "<|im_end|>" and "<|user|>", and plain markers such as "USER:"):
** a NULL-terminated static list for KbGenerateParams.stop. The model's
** end-of-sequence token always ends an answer too. Generation must render
** control tokens as text (KbGenerateParams.render_special) for the control
** tokens among them to be seen; they are never shown. */
const char *const *template_stop_strings(KbTemplate t);

/* Renders msgs[0..n) into out (its previous content is replaced): an
** optional system message first, then user and assistant messages
** alternating, starting with a user message. When the last message is a
** user message the format's generation prompt follows ("<|im_start|>assistant\n").
** Message texts are copied verbatim; the formats are in docs/conversations.md.
** Returns KB_OK; KB_EINVAL (bad template, n == 0, or roles out of order);
** KB_ENOMEM (out is then empty). */
int template_render(KbTemplate t, const KbChatMsg *msgs, size_t n, KbPromptText *out);

/* Tokenizes a rendered prompt with tok: the BOS the vocabulary asks for,
** control-token text matched only where p->special allows
** (tokenizer_encode_masked), appended to out.
** Returns KB_OK, or KB_ENOMEM with out as it was. */
int template_tokenize(const KbPromptText *p, const Tokenizer *tok, KbTokens *out);

/* Frees the buffers and zeroes p; NULL is a no-op. */
void template_text_free(KbPromptText *p);

#endif /* KB_TEMPLATE_H */
