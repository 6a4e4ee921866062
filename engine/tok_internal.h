/*
** tok_internal.h: what the tokenizer's files share (tokenizer.c holds the
** vocabulary, special tokens and decoding; tok_spm.c, tok_bpe.c and tok_wpm.c
** each encode raw text for one kind). Not part of the engine's public API.
*/
#ifndef KB_TOK_INTERNAL_H
#define KB_TOK_INTERNAL_H

#include "engine/engine.h"

/* --- a string -> int32 hash map over (pointer, length) keys --- */

/* Keys are not copied: they must outlive the map (they point into the
** tokenizer's arena). */
typedef struct StrMapSlot {
    const char *key; /* NULL = empty slot */
    uint32_t len;
    uint32_t hash;
    int32_t value;
} StrMapSlot;

typedef struct StrMap {
    StrMapSlot *slots;
    size_t mask; /* capacity - 1, capacity a power of two */
} StrMap;

/* Sizes the map for n keys. Returns KB_OK or KB_ENOMEM. */
int strmap_init(StrMap *m, size_t n);
void strmap_free(StrMap *m);
/* Sets key -> value; a key already present gets the new value (so the last
** of several equal tokens wins, as in llama.cpp). The map must not be full:
** strmap_init sized it. */
void strmap_put(StrMap *m, const char *key, size_t len, int32_t value);
/* Returns the value of key, or -1. */
int32_t strmap_get(const StrMap *m, const char *key, size_t len);

/* --- the vocabulary --- */

typedef struct TokenData {
    const char *text;  /* as stored in the GGUF file, in the arena */
    uint32_t len;
    const char *piece; /* the bytes it decodes to (see tokenizer_piece) */
    uint32_t piece_len;
    float score;       /* SentencePiece merge priority */
    int32_t type;      /* KB_TOKTYPE_* */
} TokenData;

/* Pre-tokenizer rules of byte-level BPE: one per regex list of llama.cpp's
** llm_tokenizer_bpe (tok_bpe.c maps the tokenizer.ggml.pre names to them). */
typedef enum BpePre {
    BPE_PRE_GPT2 = 0,   /* "gpt-2", "mpt", "olmo", "jais", ... */
    BPE_PRE_LLAMA3,     /* "llama-bpe", "llama3", "dbrx", ... */
    BPE_PRE_QWEN2,      /* "qwen2", "stablelm2", "grok-2", ... */
    BPE_PRE_DEEPSEEK_LLM, /* "deepseek-llm" */
    BPE_PRE_CHATGLM4,   /* "chatglm-bpe", "glm4": LLaMA 3's regex */
    BPE_PRE_BLOOM,      /* "bloom", "poro-chat", "gpt3-finnish" */
    BPE_PRE_DEFAULT,    /* "default" and no pre at all: llama.cpp's fallback chain */
    BPE_PRE_JAIS2,
    BPE_PRE_DEEPSEEK3,  /* "deepseek-v3", "hunyuan-dense", "hy_v4", "joyai-llm" */
    BPE_PRE_SPARK2_5,
    BPE_PRE_YOUTU,
    BPE_PRE_DEEPSEEK_CODER,
    BPE_PRE_FALCON,
    BPE_PRE_STARCODER,  /* "starcoder", "refact", "command-r", "smollm", ... */
    BPE_PRE_QWEN35,
    BPE_PRE_VIKING,
    BPE_PRE_TEKKEN,
    BPE_PRE_CHAMELEON,
    BPE_PRE_GPT4O,      /* "gpt-4o", "llama4", "minimax-m2", ... */
    BPE_PRE_GRANITE_EMB_MULTI,
    BPE_PRE_TINY_AYA,
    BPE_PRE_KIMI_K2,
    BPE_PRE_SUPERBPE,
    BPE_PRE_BAILINGMOE,
    BPE_PRE_SEED_CODER,
    BPE_PRE_UFAKZEKA,
    BPE_PRE_AFMOE,
    BPE_PRE_LAGUNA,
    BPE_PRE_EXAONE_MOE,
    BPE_PRE_MINICPM5,
    BPE_PRE_COUNT
} BpePre;

#define BPE_MAX_STAGES 6 /* the longest regex list (chameleon's) */

struct pcre2_real_code_8; /* PCRE2's compiled regex (tok_bpe.c) */

struct Tokenizer {
    KbTokKind kind;
    int32_t n_vocab;
    TokenData *tokens;
    char *arena;            /* every token text and piece */
    StrMap text_to_id;
    uint32_t max_token_len; /* bytes of the longest token text */

    /* special tokens (-1 = none) */
    int32_t bos, eos, unk, sep, pad, cls, mask;
    bool add_bos, add_eos;
    bool add_space_prefix;  /* SentencePiece: "▁" before the first word */
    /* ids of tokens matched as whole strings before tokenizing: CONTROL,
    ** USER_DEFINED and UNKNOWN, longest text first */
    int32_t *specials;
    size_t n_specials;
    bool special_lead[256]; /* bytes that start some special token's text */

    /* SentencePiece: id of <0xNN> for each byte, -1 when absent */
    int32_t byte_token[256];
    /* SentencePiece: no token has "▁" after another character, so no merge
    ** crosses a word start and words can be encoded one by one */
    bool spm_word_split;

    /* byte-level BPE */
    BpePre pre;
    struct pcre2_real_code_8 *bpe_regex[BPE_MAX_STAGES]; /* the rule's regexes as compiled; NULL for hand-written stages */
    bool ignore_merges;     /* LLaMA 3: a whole pre-token found in the vocab is one token */
    StrMap merges;          /* "left right" -> rank */
    char *merge_arena;

    /* ChatGLM-6B's SentencePiece rules (tok_glm.c): \n, \t and space runs
    ** become <n>, <|tab|>, <|blank_N|>; [gMASK] <sop> appended */
    bool glm1;
    bool spm_unigram;       /* glm1: the model is a unigram one (Viterbi), not BPE */
    bool spm_squeeze;       /* glm1: the normalizer strips leading and trailing spaces */
    bool spm_byte_fallback; /* glm1 unigram: unknown characters as <0xNN> tokens */
    float spm_unk_score;    /* glm1 unigram: an unknown character's score (lowest - 10) */
    int32_t glm_gmask, glm_sop;

    char warning[256];
};

/* Encoders of raw text (no special-token handling: tokenizer.c does that).
** Each appends to out and returns KB_OK or KB_ENOMEM. tok_spm_encode gets
** its text already escaped by tokenizer.c: the leading space added and every
** space written as "▁". */
int tok_spm_encode(const Tokenizer *t, const char *text, size_t len, KbTokens *out);
int tok_bpe_encode(const Tokenizer *t, const char *text, size_t len, KbTokens *out);
int tok_wpm_encode(const Tokenizer *t, const char *text, size_t len, KbTokens *out);

/* Byte-level BPE setup: reads tokenizer.ggml.merges and .pre into t.
** Returns KB_OK, KB_EFORMAT (missing or malformed merges), KB_ENOMEM; err
** names the key. */
int tok_bpe_load(Tokenizer *t, const GgufFile *g, char *err, size_t errlen);

/* Sets t's pre-tokenizer rule and compiles its regexes (freeing any of a
** former rule). Returns KB_OK or KB_EFORMAT (a regex GLib refuses). */
int tok_bpe_set_rule(Tokenizer *t, BpePre pre, char *err, size_t errlen);
/* Frees the compiled regexes of t's rule; tokenizer_free calls it. */
void tok_bpe_free(Tokenizer *t);

/* --- tokenizers built from other sources than GGUF keys --- */

/* Finishes a Tokenizer whose kind, n_vocab, tokens (text, len, score, type,
** piece room of at least len + 1 bytes) and special ids the caller filled:
** indexes the texts, lists the special tokens and computes every piece, as
** tokenizer_load does after reading the keys (tokenizer.c). Returns KB_OK or
** KB_ENOMEM (err says so). */
int tok_index_vocab(Tokenizer *t, char *err, size_t errlen);

/* ChatGLM-6B's encoding of text[0..len) (tok_glm.c; tokenizer_encode and
** tokenizer_encode_masked hand glm1 vocabularies to it): mask as
** tokenizer_encode_masked's, NULL = everywhere. Returns KB_OK or KB_ENOMEM
** with out as it was. */
int tok_glm1_encode(const Tokenizer *t, const char *text, size_t len, const unsigned char *mask, unsigned flags,
                    KbTokens *out);

/* A tokenizer from a serialized SentencePiece ModelProto (tok_glm.c), for
** chatglm.cpp model type glm (1: ChatGLM-6B's rules; 2, 3: ChatGLM2/3's
** appended special tokens), padded with unused tokens to n_vocab (0: no
** padding). Returns KB_OK, KB_EFORMAT (malformed protobuf, bad piece, more
** tokens than n_vocab: err says which byte or piece), KB_ENOMEM. */
int tok_sp_model_load(const uint8_t *proto, size_t len, int glm, int32_t n_vocab, Tokenizer **out /* OUT */,
                      char *err, size_t errlen);

/* A GLM-4 tokenizer from tiktoken vocabulary text (a base64 token and its
** rank per line) plus GLM-4's special tokens, padded to n_vocab (0: none).
** Returns KB_OK, KB_EFORMAT (bad base64, a rank missing or repeated), KB_ENOMEM. */
int tok_tiktoken_load(const char *text, size_t len, int32_t n_vocab, Tokenizer **out /* OUT */, char *err,
                      size_t errlen);
/* Writes the bytes that byte-level text[0..len) stands for into out (at most
** len bytes) and returns how many. Characters outside the byte alphabet are
** copied as they are. */
size_t tok_bpe_unmap(const char *text, size_t len, char *out);

#endif /* KB_TOK_INTERNAL_H */
