/*
** tokenizer.c: the vocabulary, special tokens and decoding, shared by the
** three tokenizer kinds (tok_spm.c, tok_bpe.c, tok_wpm.c encode raw text).
**
** Loading copies every token text into one arena and precomputes the bytes
** each token decodes to, so encoding and decoding never touch the GGUF file
** again and allocate nothing per token. Everything read from the file is
** checked first: array types and lengths, special ids against the
** vocabulary size.
**
** Encoding (tokenizer_encode) follows llama.cpp's llama_tokenize_impl:
**   1. split the text at special-token strings (control tokens only when the
**      caller asks for it; user-defined tokens always), longest first;
**   2. encode each raw fragment with the kind's encoder (SentencePiece gets
**      a space before the first word and after each special token, and its
**      spaces as "▁");
**   3. add BOS/EOS ([CLS]/[SEP] for BERT) when asked and the vocabulary wants
**      them.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/tok_internal.h"

#define SPM_SPACE "\xe2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's space */

/* --- token lists --- */

int kb_tokens_push(KbTokens *t, int32_t id)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        int32_t *ids = realloc(t->ids, cap * sizeof *ids);
        if (ids == NULL) return KB_ENOMEM;
        t->ids = ids;
        t->cap = cap;
    }
    t->ids[t->n++] = id;
    return KB_OK;
}

void kb_tokens_free(KbTokens *t)
{
    free(t->ids);
    memset(t, 0, sizeof *t);
}

/* --- StrMap: open addressing with linear probing, FNV-1a hashes --- */

static uint32_t strmap_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Capacity is at least twice n, so probes stay short and a slot is always free. */
int strmap_init(StrMap *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->mask = cap - 1;
    return m->slots ? KB_OK : KB_ENOMEM;
}

void strmap_free(StrMap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->mask = 0;
}

void strmap_put(StrMap *m, const char *key, size_t len, int32_t value)
{
    uint32_t h = strmap_hash(key, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        StrMapSlot *s = &m->slots[i];
        if (s->key == NULL || (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)) {
            s->key = key;
            s->len = (uint32_t)len;
            s->hash = h;
            s->value = value;
            return;
        }
    }
}

int32_t strmap_get(const StrMap *m, const char *key, size_t len)
{
    if (m->slots == NULL) return -1;
    uint32_t h = strmap_hash(key, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const StrMapSlot *s = &m->slots[i];
        if (s->key == NULL) return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return s->value;
    }
}

/* --- loading --- */

/* Finds array key `key` and checks its element type and length (n_expect,
** or any when 0). Returns its index, -1 when absent; on a wrong type or
** length sets *rc to KB_EFORMAT with a message. */
static int64_t find_array(const GgufFile *g, const char *key, GgufValueType want, uint64_t n_expect, int *rc,
                          char *err, size_t errlen)
{
    GgufValueType et;
    uint64_t n;
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return -1;
    if (gguf_kv_get_arr(g, i, &et, &n) != KB_OK || et != want) {
        *rc = kb_error(err, errlen, KB_EFORMAT, "%s must be an array of %s", key, gguf_value_type_name(want));
        return -1;
    }
    if (n_expect && n != n_expect) {
        *rc = kb_error(err, errlen, KB_EFORMAT,
                       "%s has %llu entries but tokenizer.ggml.tokens has %llu: the vocabulary is inconsistent",
                       key, (unsigned long long)n, (unsigned long long)n_expect);
        return -1;
    }
    return i;
}

/* Copies the token texts into the arena (room is left for the pieces, which
** are never longer than the texts), with scores and types. */
static int load_tokens(Tokenizer *t, const GgufFile *g, char *err, size_t errlen)
{
    int rc = KB_OK;
    uint64_t n;
    GgufValueType et;
    int64_t ti = find_array(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, 0, &rc, err, errlen);
    if (rc != KB_OK) return rc;
    if (ti < 0) return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.tokens is missing: the file has no vocabulary");
    gguf_kv_get_arr(g, ti, &et, &n);
    if (n == 0 || n > INT32_MAX / 2) {
        return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.tokens has %llu entries, expected 1..%d",
                        (unsigned long long)n, INT32_MAX / 2);
    }
    int64_t si = find_array(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, n, &rc, err, errlen);
    int64_t yi = rc == KB_OK ? find_array(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, n, &rc, err, errlen) : -1;
    if (rc != KB_OK) return rc;
    t->n_vocab = (int32_t)n;
    size_t total = 0;
    for (uint64_t j = 0; j < n; j++) {
        const char *s;
        size_t len;
        gguf_arr_get_str(g, ti, j, &s, &len);
        total += 2 * len + 2;
    }
    t->tokens = calloc(n, sizeof *t->tokens);
    t->arena = malloc(total ? total : 1);
    if (!t->tokens || !t->arena) return kb_error(err, errlen, KB_ENOMEM, "out of memory loading the vocabulary");
    char *p = t->arena;
    for (uint64_t j = 0; j < n; j++) {
        TokenData *td = &t->tokens[j];
        const char *s;
        size_t len;
        int64_t type = KB_TOKTYPE_NORMAL;
        double score = 0;
        gguf_arr_get_str(g, ti, j, &s, &len);
        if (si >= 0) gguf_arr_get_float(g, si, j, &score);
        if (yi >= 0) gguf_arr_get_int(g, yi, j, &type);
        if (type < 0 || type > KB_TOKTYPE_BYTE) {
            return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.token_type[%llu] is %lld, expected 0..6",
                            (unsigned long long)j, (long long)type);
        }
        memcpy(p, s, len);
        p[len] = '\0';
        td->text = p;
        td->len = (uint32_t)len;
        td->score = (float)score;
        td->type = type == 0 ? KB_TOKTYPE_NORMAL : (int32_t)type;
        p += len + 1;
        td->piece = p; /* filled by make_pieces */
        p += len + 1;
        if (len > t->max_token_len) t->max_token_len = (uint32_t)len;
    }
    return KB_OK;
}

/* Reads a special token id key: absent keeps *id (the kind's default, checked
** against the vocabulary size), 0xFFFFFFFF or -1 means none. */
static int load_special(const Tokenizer *t, const GgufFile *g, const char *key, int32_t *id, char *err,
                        size_t errlen)
{
    int64_t v;
    int rc = gguf_get_int(g, key, &v);
    if (rc == KB_ENOTFOUND) {
        if (*id >= t->n_vocab) *id = -1;
        return KB_OK;
    }
    if (rc != KB_OK) return kb_error(err, errlen, KB_EFORMAT, "%s must be an integer", key);
    if (v == -1 || v == 0xFFFFFFFFll) {
        *id = -1;
        return KB_OK;
    }
    if (v < 0 || v >= t->n_vocab) {
        return kb_error(err, errlen, KB_EFORMAT, "%s is %lld but the vocabulary has %d tokens", key, (long long)v,
                        t->n_vocab);
    }
    *id = (int32_t)v;
    return KB_OK;
}

/* Reads a boolean key, keeping *v when absent. */
static int load_flag(const GgufFile *g, const char *key, bool *v, char *err, size_t errlen)
{
    bool b;
    int rc = gguf_get_bool(g, key, &b);
    if (rc == KB_ENOTFOUND) return KB_OK;
    if (rc != KB_OK) return kb_error(err, errlen, KB_EFORMAT, "%s must be a bool", key);
    *v = b;
    return KB_OK;
}

/* Special token ids and flags, with llama.cpp's defaults for each kind. */
static int load_specials(Tokenizer *t, const GgufFile *g, char *err, size_t errlen)
{
    t->bos = t->eos = t->unk = t->sep = t->pad = t->cls = t->mask = -1;
    if (t->kind == KB_TOK_SPM) {
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (t->kind == KB_TOK_BPE) {
        /* llama.cpp: LLaMA 3 style vocabularies want BOS unless the file says otherwise */
        t->add_bos = t->pre == BPE_PRE_LLAMA3;
    } else if (t->kind == KB_TOK_WPM) {
        t->unk = 100, t->sep = 102, t->pad = 0, t->cls = 101, t->mask = 103;
        t->bos = 101, t->eos = 102;
        t->add_bos = true;
    }
    static const struct { const char *key; size_t off; } keys[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(Tokenizer, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(Tokenizer, eos)},
        {"tokenizer.ggml.unknown_token_id", offsetof(Tokenizer, unk)},
        {"tokenizer.ggml.seperator_token_id", offsetof(Tokenizer, sep)},
        {"tokenizer.ggml.padding_token_id", offsetof(Tokenizer, pad)},
        {"tokenizer.ggml.cls_token_id", offsetof(Tokenizer, cls)},
        {"tokenizer.ggml.mask_token_id", offsetof(Tokenizer, mask)},
    };
    int rc = KB_OK;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && rc == KB_OK; i++)
        rc = load_special(t, g, keys[i].key, (int32_t *)((char *)t + keys[i].off), err, errlen);
    if (rc == KB_OK) rc = load_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err, errlen);
    if (rc == KB_OK) rc = load_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err, errlen);
    if (rc == KB_OK) rc = load_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err, errlen);
    return rc;
}

/* Parses "<0xNN>" into its byte; returns -1 for any other text. */
static int parse_byte_token(const char *s, size_t len)
{
    unsigned v;
    char tail;
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    if (sscanf(s + 3, "%2x%c", &v, &tail) != 2 || tail != '>') return -1;
    return (int)v;
}

/* Writes the bytes token td decodes to (for non-control use) into td->piece. */
static void make_piece(const Tokenizer *t, TokenData *td)
{
    char *out = (char *)td->piece;
    size_t n = 0;
    if (td->type == KB_TOKTYPE_BYTE && t->kind == KB_TOK_SPM && parse_byte_token(td->text, td->len) >= 0) {
        out[n++] = (char)parse_byte_token(td->text, td->len);
    } else if (td->type == KB_TOKTYPE_USER_DEFINED) {
        memcpy(out, td->text, td->len);
        n = td->len;
    } else if (td->type == KB_TOKTYPE_NORMAL && t->kind == KB_TOK_BPE) {
        n = tok_bpe_unmap(td->text, td->len, out);
    } else if (td->type == KB_TOKTYPE_NORMAL) {
        /* SentencePiece and WordPiece: "▁" stands for a space */
        for (size_t i = 0; i < td->len;) {
            if (td->len - i >= 3 && memcmp(td->text + i, SPM_SPACE, 3) == 0) {
                out[n++] = ' ';
                i += 3;
            } else {
                out[n++] = td->text[i++];
            }
        }
    }
    out[n] = '\0';
    td->piece_len = (uint32_t)n;
}

/* True when text holds "▁" after a character other than "▁". */
static bool space_inside(const char *text, size_t len)
{
    size_t i = 0;
    while (i + 3 <= len && memcmp(text + i, SPM_SPACE, 3) == 0) i += 3;
    for (; i + 3 <= len; i++)
        if (memcmp(text + i, SPM_SPACE, 3) == 0) return true;
    return false;
}

/* A special token while sorting: its text length and id. */
typedef struct SpecialKey {
    uint32_t len;
    int32_t id;
} SpecialKey;

/* Longer special texts first, then lower ids, so matching is longest-first. */
static int cmp_special(const void *a, const void *b)
{
    const SpecialKey *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Fills t->specials with the CONTROL, USER_DEFINED and UNKNOWN tokens that
** have text, longest first. */
static int list_specials(Tokenizer *t)
{
    SpecialKey *keys = malloc((size_t)t->n_vocab * sizeof *keys);
    t->specials = malloc((size_t)t->n_vocab * sizeof *t->specials);
    if (keys == NULL || t->specials == NULL) {
        free(keys);
        return KB_ENOMEM;
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const TokenData *td = &t->tokens[id];
        bool special = td->type == KB_TOKTYPE_CONTROL || td->type == KB_TOKTYPE_USER_DEFINED ||
                       td->type == KB_TOKTYPE_UNKNOWN;
        if (special && td->len > 0) {
            keys[t->n_specials++] = (SpecialKey){td->len, id};
            t->special_lead[(unsigned char)td->text[0]] = true;
        }
    }
    qsort(keys, t->n_specials, sizeof *keys, cmp_special);
    for (size_t i = 0; i < t->n_specials; i++) t->specials[i] = keys[i].id;
    free(keys);
    return KB_OK;
}

/* Lists the specials, indexes texts, computes pieces and byte tokens. */
static int index_vocab(Tokenizer *t, char *err, size_t errlen)
{
    if (strmap_init(&t->text_to_id, (size_t)t->n_vocab) != KB_OK || list_specials(t) != KB_OK)
        return kb_error(err, errlen, KB_ENOMEM, "out of memory indexing the vocabulary");
    for (int i = 0; i < 256; i++) t->byte_token[i] = -1;
    t->spm_word_split = t->kind == KB_TOK_SPM;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        TokenData *td = &t->tokens[id];
        if (t->spm_word_split && space_inside(td->text, td->len)) t->spm_word_split = false;
        strmap_put(&t->text_to_id, td->text, td->len, id);
        make_piece(t, td);
        int b = td->type == KB_TOKTYPE_BYTE ? parse_byte_token(td->text, td->len) : -1;
        if (b >= 0) t->byte_token[b] = id;
    }
    return KB_OK;
}

int tok_index_vocab(Tokenizer *t, char *err, size_t errlen)
{
    return index_vocab(t, err, errlen);
}

/* Maps tokenizer.ggml.model to a kind; 0 when unknown. */
static KbTokKind kind_of(const char *model, size_t len)
{
    if (len == 5 && memcmp(model, "llama", 5) == 0) return KB_TOK_SPM;
    if (len == 4 && memcmp(model, "gpt2", 4) == 0) return KB_TOK_BPE;
    if (len == 4 && memcmp(model, "bert", 4) == 0) return KB_TOK_WPM;
    return 0;
}

int tokenizer_load(const GgufFile *g, Tokenizer **out, char *err, size_t errlen)
{
    const char *model;
    size_t len;
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (gguf_get_str(g, "tokenizer.ggml.model", &model, &len) != KB_OK)
        return kb_error(err, errlen, KB_ENOTFOUND, "the file has no tokenizer (tokenizer.ggml.model is missing)");
    KbTokKind kind = kind_of(model, len);
    if (kind == 0) {
        return kb_error(err, errlen, KB_EUNSUPPORTED,
                        "tokenizer.ggml.model '%.*s' is not supported (expected llama, gpt2 or bert)",
                        (int)(len > 40 ? 40 : len), model);
    }
    Tokenizer *t = calloc(1, sizeof *t);
    if (t == NULL) return kb_error(err, errlen, KB_ENOMEM, "out of memory");
    t->kind = kind;
    int rc = load_tokens(t, g, err, errlen);
    if (rc == KB_OK && kind == KB_TOK_BPE) rc = tok_bpe_load(t, g, err, errlen); /* pre type first: it sets defaults */
    if (rc == KB_OK) rc = load_specials(t, g, err, errlen);
    if (rc == KB_OK) rc = index_vocab(t, err, errlen);
    if (rc != KB_OK) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return KB_OK;
}

void tokenizer_free(Tokenizer *t)
{
    if (t == NULL) return;
    strmap_free(&t->text_to_id);
    strmap_free(&t->merges);
    tok_bpe_free(t);
    free(t->merge_arena);
    free(t->specials);
    free(t->tokens);
    free(t->arena);
    free(t);
}

/* --- accessors --- */

KbTokKind tokenizer_kind(const Tokenizer *t) { return t->kind; }
int32_t tokenizer_n_vocab(const Tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos(const Tokenizer *t) { return t->kind == KB_TOK_WPM && t->cls >= 0 ? t->cls : t->bos; }
int32_t tokenizer_eos(const Tokenizer *t) { return t->kind == KB_TOK_WPM && t->sep >= 0 ? t->sep : t->eos; }
const char *tokenizer_warning(const Tokenizer *t) { return t->warning[0] ? t->warning : NULL; }

int32_t tokenizer_find(const Tokenizer *t, const char *text, size_t len)
{
    return strmap_get(&t->text_to_id, text, len);
}

const char *tokenizer_text(const Tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    *len = t->tokens[id].len;
    return t->tokens[id].text;
}

int tokenizer_type(const Tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? t->tokens[id].type : 0;
}

/* --- encoding --- */

/* Encodes one SentencePiece fragment: a space before it when it starts the
** text or follows a special token, then every space as "▁". */
static int encode_spm_fragment(const Tokenizer *t, const char *text, size_t len, bool prefix, KbTokens *out)
{
    size_t spaces = prefix;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    char *buf = malloc(len + 2 * spaces + 1);
    if (buf == NULL) return KB_ENOMEM;
    size_t n = 0;
    if (prefix) memcpy(buf, SPM_SPACE, 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(buf + n, SPM_SPACE, 3), n += 3;
        else buf[n++] = text[i];
    }
    int rc = tok_spm_encode(t, buf, n, out);
    free(buf);
    return rc;
}

/* Encodes a fragment of raw text with the kind's encoder. Fragments follow
** the start of the text or a special token, so SentencePiece always gets its
** leading space (as llama.cpp's is_prev_special rule gives). */
static int encode_raw(const Tokenizer *t, const char *text, size_t len, KbTokens *out)
{
    switch (t->kind) {
    case KB_TOK_SPM: return encode_spm_fragment(t, text, len, t->add_space_prefix, out);
    case KB_TOK_BPE: return tok_bpe_encode(t, text, len, out);
    case KB_TOK_WPM: return tok_wpm_encode(t, text, len, out);
    }
    return KB_EINVAL;
}

/* Returns the id of the longest special token that starts at text[0..len),
** or -1. Control and unknown tokens count only with parse_special, and when
** mask is not NULL only if every byte of their text has a nonzero mask byte
** (mask is aligned with text). User-defined tokens always count. */
static int32_t match_special(const Tokenizer *t, const char *text, size_t len, bool parse_special,
                             const unsigned char *mask)
{
    for (size_t i = 0; i < t->n_specials; i++) {
        const TokenData *td = &t->tokens[t->specials[i]];
        if (td->len > len || td->text[0] != text[0]) continue;
        if (!parse_special && td->type != KB_TOKTYPE_USER_DEFINED) continue;
        if (mask && td->type != KB_TOKTYPE_USER_DEFINED && memchr(mask, 0, td->len)) continue;
        if (memcmp(td->text, text, td->len) == 0) return t->specials[i];
    }
    return -1;
}

/* Splits text at special tokens and encodes the pieces between them
** (mask: see match_special; NULL = everywhere). */
static int encode_fragments(const Tokenizer *t, const char *text, size_t len, bool parse_special,
                            const unsigned char *mask, KbTokens *out)
{
    int rc = KB_OK;
    size_t start = 0;
    for (size_t pos = 0; pos < len && rc == KB_OK && t->n_specials > 0;) {
        int32_t id = t->special_lead[(unsigned char)text[pos]]
                         ? match_special(t, text + pos, len - pos, parse_special, mask ? mask + pos : NULL)
                         : -1;
        if (id < 0) {
            pos++;
            continue;
        }
        if (pos > start) rc = encode_raw(t, text + start, pos - start, out);
        if (rc == KB_OK) rc = kb_tokens_push(out, id);
        pos += t->tokens[id].len;
        start = pos;
    }
    if (rc == KB_OK && len > start) rc = encode_raw(t, text + start, len - start, out);
    return rc;
}

/* tokenizer_encode and tokenizer_encode_masked: BOS, fragments, EOS. */
static int encode_all(const Tokenizer *t, const char *text, size_t len, const unsigned char *mask, unsigned flags,
                      KbTokens *out)
{
    if (t->glm1) return tok_glm1_encode(t, text, len, mask, flags, out); /* ChatGLM-6B's own rules (tok_glm.c) */
    bool add = (flags & KB_TOK_ADD_SPECIAL) != 0;
    int32_t first = tokenizer_bos(t), last = tokenizer_eos(t);
    size_t n_before = out->n;
    int rc = KB_OK;
    if (add && t->add_bos && first >= 0) rc = kb_tokens_push(out, first);
    if (rc == KB_OK) rc = encode_fragments(t, text, len, (flags & KB_TOK_PARSE_SPECIAL) != 0, mask, out);
    if (rc == KB_OK && add && (t->add_eos || t->kind == KB_TOK_WPM) && last >= 0) rc = kb_tokens_push(out, last);
    if (rc != KB_OK) out->n = n_before; /* all or nothing */
    return rc;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, unsigned flags, KbTokens *out)
{
    return encode_all(t, text, len, NULL, flags, out);
}

int tokenizer_encode_masked(const Tokenizer *t, const char *text, size_t len, const unsigned char *special,
                            unsigned flags, KbTokens *out)
{
    return encode_all(t, text, len, special, flags | KB_TOK_PARSE_SPECIAL, out);
}

/* --- decoding --- */

const char *tokenizer_piece(const Tokenizer *t, int32_t id, bool special, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    const TokenData *td = &t->tokens[id];
    if (special && (td->type == KB_TOKTYPE_CONTROL || td->type == KB_TOKTYPE_UNKNOWN)) {
        *len = td->len;
        return td->text;
    }
    *len = td->piece_len;
    return td->piece;
}

/* Returns the piece of ids[i] with SentencePiece's first space removed. */
static const char *decode_piece(const Tokenizer *t, int32_t id, bool special, bool first, size_t *len)
{
    const char *p = tokenizer_piece(t, id, special, len);
    bool glm_blank = t->glm1 && t->tokens[id].type == KB_TOKTYPE_USER_DEFINED; /* <|blank_N|>: spaces of its own */
    if (first && t->add_space_prefix && *len > 0 && p[0] == ' ' && !glm_blank) {
        p++;
        (*len)--;
    }
    return p;
}

int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **text, size_t *len)
{
    bool special = (flags & KB_DETOK_SPECIAL) != 0;
    size_t total = 0, plen;
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) return KB_ERANGE;
        total += t->tokens[ids[i]].len + t->tokens[ids[i]].piece_len;
    }
    char *buf = malloc(total + 1);
    if (buf == NULL) return KB_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = decode_piece(t, ids[i], special, i == 0, &plen);
        memcpy(buf + o, p, plen);
        o += plen;
    }
    buf[o] = '\0';
    *text = buf;
    *len = o;
    return KB_OK;
}

/* --- streaming --- */

void tokstream_init(TokStream *s, const Tokenizer *t, unsigned flags)
{
    memset(s, 0, sizeof *s);
    s->t = t;
    s->flags = flags;
}

size_t tokstream_room(const TokStream *s, int32_t id)
{
    size_t len;
    tokenizer_piece(s->t, id, (s->flags & KB_DETOK_SPECIAL) != 0, &len);
    /* held bytes, the piece, and at worst 3 bytes of U+FFFD per byte */
    return 3 * (len + s->n_held) + 1;
}

/* Length of the UTF-8 sequence a lead byte starts; 0 for a byte that cannot
** start one (a continuation byte or 0xF8..0xFF). */
static size_t utf8_seq_len(unsigned char c)
{
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    if (c < 0xF5) return 4;
    return 0;
}

/* Feeds bytes through the character assembler, writing complete characters
** (or U+FFFD for bytes that cannot belong to one) to out. */
static size_t stream_bytes(TokStream *s, const unsigned char *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (s->n_held > 0 && (c & 0xC0) != 0x80) {
            memcpy(out + o, "\xef\xbf\xbd", 3); /* a character cut short */
            o += 3;
            s->n_held = 0;
        }
        if (s->n_held == 0 && utf8_seq_len(c) == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            continue;
        }
        s->held[s->n_held++] = c;
        size_t need = utf8_seq_len(s->held[0]);
        if (s->n_held < need) continue;
        if (g_utf8_get_char_validated((const char *)s->held, (gssize)need) < 0x110000) {
            memcpy(out + o, s->held, need);
            o += need;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
        }
        s->n_held = 0;
    }
    return o;
}

long tokstream_push(TokStream *s, int32_t id, char *out, size_t cap)
{
    size_t len;
    if (id < 0 || id >= s->t->n_vocab) return -1;
    if (cap < tokstream_room(s, id)) return -1;
    const char *p = decode_piece(s->t, id, (s->flags & KB_DETOK_SPECIAL) != 0, !s->started, &len);
    if (len > 0) s->started = true;
    size_t o = stream_bytes(s, (const unsigned char *)p, len, out);
    out[o] = '\0';
    return (long)o;
}

size_t tokstream_finish(TokStream *s, char *out, size_t cap)
{
    size_t o = 0;
    if (s->n_held > 0 && cap >= 4) {
        memcpy(out, "\xef\xbf\xbd", 3);
        o = 3;
    }
    s->n_held = 0;
    if (cap > o) out[o] = '\0';
    return o;
}
