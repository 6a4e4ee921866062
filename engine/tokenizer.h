/*
** tokenizer.h: text <-> token ids, from the vocabulary stored in a GGUF file.
**
** Three kinds, chosen by tokenizer.ggml.model, each matching llama.cpp id for id:
**   "llama"  SentencePiece BPE over token scores, "▁" for spaces, <0xNN> byte
**            fallback (LLaMA, Alpaca, Vicuna, Chinese-LLaMA, Baichuan, ChatGLM3)
**   "gpt2"   byte-level BPE with ranked merges after a pre-tokenizer regex
**            chosen by tokenizer.ggml.pre (GPT-2, LLaMA 3, Qwen2, DeepSeek,
**            GLM-4, BLOOM)
**   "bert"   WordPiece after BERT's basic tokenization (embedding models)
**
** A Tokenizer copies what it needs from the GGUF handle, which may be closed
** afterwards. It is read-only once loaded, so one Tokenizer can serve several
** threads at once.
*/
#ifndef KB_TOKENIZER_H
#define KB_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

typedef enum KbTokKind { KB_TOK_SPM = 1, KB_TOK_BPE = 2, KB_TOK_WPM = 3 } KbTokKind;

/* Token types, as tokenizer.ggml.token_type stores them. */
enum {
    KB_TOKTYPE_NORMAL = 1,
    KB_TOKTYPE_UNKNOWN = 2,
    KB_TOKTYPE_CONTROL = 3,
    KB_TOKTYPE_USER_DEFINED = 4,
    KB_TOKTYPE_UNUSED = 5,
    KB_TOKTYPE_BYTE = 6
};

/* Flags of tokenizer_encode. */
enum {
    KB_TOK_ADD_SPECIAL = 1,   /* BOS/EOS (BERT: [CLS]/[SEP]) as the vocabulary asks */
    KB_TOK_PARSE_SPECIAL = 2  /* control-token text ("<|im_start|>", "[gMASK]") becomes its id */
};

/* Flags of tokenizer_decode and the streaming decoder. */
enum {
    KB_DETOK_SPECIAL = 1      /* render control tokens as their text (else they vanish) */
};

/* A growable list of token ids. Zero-initialise; free with kb_tokens_free. */
typedef struct KbTokens {
    int32_t *ids;
    size_t n, cap;
} KbTokens;

/* Appends id; returns KB_OK or KB_ENOMEM (the list is unchanged then). */
int kb_tokens_push(KbTokens *t, int32_t id);
/* Frees the ids and zeroes the list. */
void kb_tokens_free(KbTokens *t);

typedef struct Tokenizer Tokenizer;

/* Builds the tokenizer described by g's tokenizer.ggml.* keys.
** Returns KB_OK; KB_ENOTFOUND when the file has no tokenizer; KB_EUNSUPPORTED
** for an unknown tokenizer.ggml.model; KB_EFORMAT when the vocabulary is
** inconsistent (array lengths that disagree, a special token id out of range,
** a malformed merge); KB_ENOMEM. On failure *out is NULL and err says which
** key is wrong and how. */
int tokenizer_load(const GgufFile *g, Tokenizer **out /* OUT */, char *err, size_t errlen);

/* Frees t; tokenizer_free(NULL) is a no-op. */
void tokenizer_free(Tokenizer *t);

KbTokKind tokenizer_kind(const Tokenizer *t);
int32_t tokenizer_n_vocab(const Tokenizer *t);
/* Special ids, -1 when the vocabulary has none. */
int32_t tokenizer_bos(const Tokenizer *t);
int32_t tokenizer_eos(const Tokenizer *t);
/* A warning from loading (a chatglm.cpp unigram SentencePiece model encoded
** with the BPE algorithm, tok_glm.c), or NULL. */
const char *tokenizer_warning(const Tokenizer *t);

/* Returns the id whose text is exactly text[0..len), or -1. */
int32_t tokenizer_find(const Tokenizer *t, const char *text, size_t len);
/* Returns the stored text of token id (SentencePiece "▁" and byte-level
** characters as stored) and its length, or NULL for an id out of range. */
const char *tokenizer_text(const Tokenizer *t, int32_t id, size_t *len /* OUT */);
/* Returns the type of token id (KB_TOKTYPE_*), 0 when out of range. */
int tokenizer_type(const Tokenizer *t, int32_t id);

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is handled as the kind's
** reference implementation does) and appends the ids to out.
** Returns KB_OK, or KB_ENOMEM with out as it was before the call. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, unsigned flags, KbTokens *out);

/* tokenizer_encode of a whole chat prompt, matching control-token text only
** where the caller allows it: special[i] (one byte per byte of text) is
** nonzero where the bytes come from the chat template and 0 where they come
** from the user or the model, so "<|im_start|>" typed by a user stays text.
** A control token is matched only when all its bytes are allowed;
** user-defined tokens are matched everywhere, as tokenizer_encode does.
** KB_TOK_PARSE_SPECIAL is implied; KB_TOK_ADD_SPECIAL works as there. Where
** the user's text holds no control-token text, the ids equal llama.cpp's
** tokenization of the whole formatted prompt with special parsing.
** Returns KB_OK, or KB_ENOMEM with out as it was before the call. */
int tokenizer_encode_masked(const Tokenizer *t, const char *text, size_t len, const unsigned char *special,
                            unsigned flags, KbTokens *out);

/* Returns the bytes token id stands for ("▁" as a space, <0xNN> as the byte,
** byte-level characters as their bytes). Control tokens give "" unless
** `special`. NULL (and *len 0) for an id out of range. */
const char *tokenizer_piece(const Tokenizer *t, int32_t id, bool special, size_t *len /* OUT */);

/* Decodes ids into a malloc'd NUL-terminated string (*len bytes, excluding
** the NUL). For SentencePiece the space added before the first word at
** encoding is removed again, so decode(encode(s)) == s.
** Returns KB_OK, KB_ERANGE (an id out of range; nothing is returned), KB_ENOMEM. */
int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **text /* OUT */,
                     size_t *len /* OUT */);

/* Streaming decoder: turns ids into text piece by piece for display, holding
** back a UTF-8 character split across tokens until it is complete, so the
** output never ends in half a character. Bytes that can never form valid
** UTF-8 are replaced by U+FFFD. */
typedef struct TokStream {
    const Tokenizer *t;
    unsigned flags;
    bool started;          /* a piece has been emitted (SentencePiece first-space rule) */
    unsigned char held[4]; /* the start of an incomplete character */
    size_t n_held;
} TokStream;

void tokstream_init(TokStream *s, const Tokenizer *t, unsigned flags);
/* Appends the text completed by token id to out, NUL-terminated. out must
** have room for tokstream_room(s, id) bytes. Returns the number of bytes written (0 is normal: the piece
** may be empty or only the start of a character), or -1 for an id out of range. */
long tokstream_push(TokStream *s, int32_t id, char *out, size_t cap);
/* Room needed in `out` for tokstream_push(s, id, ...). */
size_t tokstream_room(const TokStream *s, int32_t id);
/* Ends the stream: an incomplete character still held becomes U+FFFD.
** Writes at most 4 bytes plus a NUL; returns the number written. */
size_t tokstream_finish(TokStream *s, char *out, size_t cap);

#endif /* KB_TOKENIZER_H */
