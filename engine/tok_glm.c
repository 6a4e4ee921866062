/*
** tok_glm.c: the tokenizers embedded in chatglm.cpp's GGML files, built as
** chatglm.cpp builds them, into the engine's Tokenizer.
**
**   ChatGLM-6B, ChatGLM2-6B, ChatGLM3-6B   a serialized SentencePiece
**       ModelProto, read here from the protobuf wire format (the pieces with
**       their scores and types, the trainer's model type and special ids,
**       the normalizer's flags). ChatGLM2/3 append their own special tokens
**       after the pieces ([MASK] [gMASK] [sMASK] sop eop, ChatGLM3 also
**       <|system|> <|user|> <|assistant|> <|observation|>) and encode like
**       any SentencePiece vocabulary (tok_spm.c).
**   ChatGLM-6B's rules (tokenization_chatglm.py, chatglm.cpp's preprocess):
**       before encoding, \n becomes <n>, \t <|tab|> and each run of 2..80
**       spaces <|blank_N|> (a longer run: blanks of 80 from the left, as the
**       regex [ ]{2,80} matches); those user-defined pieces are never split
**       or merged; KB_TOK_ADD_SPECIAL appends [gMASK] <sop> (130001 and
**       130004 in the real vocabulary; found by piece text, as chatglm.cpp's
**       PieceToId does) unless the text already ends with them; decoding
**       turns the pieces back into newlines, tabs and spaces.
**   GLM-4   tiktoken vocabulary text: a base64 token and its rank per line,
**       the rank being the id; then GLM-4's 14 special tokens. It becomes a
**       byte-level BPE vocabulary: each token's bytes written in GPT-2's
**       byte alphabet, and its merge derived from the ranks the way the
**       Hugging Face conversion does (the token's bytes merged with lower
**       ranks only, leaving its two halves), so encoding (tok_bpe.c, GLM-4's
**       pre-tokenizer) gives what llama.cpp gives on converted GLM-4 files.
**
** Every vocabulary is padded with unused, empty tokens up to the model's
** vocabulary size. Everything read is hostile: protobuf varints, lengths and
** field types, base64 and ranks are checked before use.
*/
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok_internal.h"

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's space */
#define GLM_MAX_BLANK 80         /* ChatGLM-6B's longest <|blank_N|> */
#define TOK_MAX_PIECES (1 << 24)

/* --- protobuf wire format --- */

/* A cursor over one message's bytes; base is the start of the whole blob,
** for the byte offsets in messages. */
typedef struct Pb {
    const uint8_t *base, *p, *end;
} Pb;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

/* Reads a varint of at most 10 bytes. Returns KB_OK or KB_EFORMAT (cut
** short, or more than 64 bits). */
static int pb_varint(Pb *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return KB_EFORMAT;
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1) return KB_EFORMAT;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return KB_OK;
        }
    }
    return KB_EFORMAT;
}

/* Reads a field key: field number (1 .. 2^29 - 1) and wire type. */
static int pb_key(Pb *r, uint32_t *field, int *wire)
{
    uint64_t k;
    if (pb_varint(r, &k) != KB_OK || (k >> 3) == 0 || (k >> 3) > 0x1fffffff) return KB_EFORMAT;
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    return KB_OK;
}

/* Reads a length-delimited value into sub, checking it lies in the message. */
static int pb_sub(Pb *r, Pb *sub)
{
    uint64_t n;
    if (pb_varint(r, &n) != KB_OK || n > (uint64_t)(r->end - r->p)) return KB_EFORMAT;
    *sub = (Pb){r->base, r->p, r->p + n};
    r->p += n;
    return KB_OK;
}

/* Skips a value of wire type `wire`; groups (3, 4) and the unused 6, 7 are
** malformed in a SentencePiece model. */
static int pb_skip(Pb *r, int wire)
{
    uint64_t v;
    Pb sub;
    switch (wire) {
    case PB_VARINT: return pb_varint(r, &v);
    case PB_LEN: return pb_sub(r, &sub);
    case PB_I64:
    case PB_I32: {
        size_t n = wire == PB_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n) return KB_EFORMAT;
        r->p += n;
        return KB_OK;
    }
    default: return KB_EFORMAT;
    }
}

/* --- SentencePiece ModelProto --- */

/* One piece: text inside the blob, score, SentencePiece type (= KB_TOKTYPE_*). */
typedef struct SpPiece {
    const uint8_t *text;
    uint32_t len;
    float score;
    int type;
} SpPiece;

/* What kbchat uses of a ModelProto, with proto2's defaults. */
typedef struct SpModel {
    SpPiece *pieces;
    int64_t n;
    int model_type;          /* TrainerSpec.model_type: 1 unigram (default), 2 BPE, 3 word, 4 char */
    bool byte_fallback;
    int64_t unk_id, bos_id, eos_id;
    bool add_dummy_prefix, remove_extra_ws;
} SpModel;

/* Parses one SentencePiece message (piece 1, score 2, type 3) into *sp. */
static int sp_piece(Pb *r, SpPiece *sp)
{
    uint32_t field;
    int wire;
    uint64_t v;
    Pb sub;
    *sp = (SpPiece){NULL, 0, 0.0f, KB_TOKTYPE_NORMAL};
    while (r->p < r->end) {
        if (pb_key(r, &field, &wire) != KB_OK) return KB_EFORMAT;
        if (field == 1 && wire == PB_LEN) {
            if (pb_sub(r, &sub) != KB_OK) return KB_EFORMAT;
            sp->text = sub.p;
            sp->len = (uint32_t)(sub.end - sub.p);
        } else if (field == 2 && wire == PB_I32) {
            if (r->end - r->p < 4) return KB_EFORMAT;
            memcpy(&sp->score, r->p, 4);
            r->p += 4;
        } else if (field == 3 && wire == PB_VARINT) {
            if (pb_varint(r, &v) != KB_OK) return KB_EFORMAT;
            sp->type = v >= 1 && v <= KB_TOKTYPE_BYTE ? (int)v : -1;
        } else if (field <= 3 || pb_skip(r, wire) != KB_OK) {
            return KB_EFORMAT; /* a known field of the wrong wire type, or a bad unknown one */
        }
    }
    return KB_OK;
}

/* Reads TrainerSpec fields: model_type 3, byte_fallback 35, unk/bos/eos ids 40-42. */
static int sp_trainer(Pb *r, SpModel *m)
{
    uint32_t field;
    int wire;
    uint64_t v;
    while (r->p < r->end) {
        if (pb_key(r, &field, &wire) != KB_OK) return KB_EFORMAT;
        bool wanted = field == 3 || field == 35 || (field >= 40 && field <= 42);
        if (!wanted || wire != PB_VARINT) {
            if (pb_skip(r, wire) != KB_OK) return KB_EFORMAT;
            continue;
        }
        if (pb_varint(r, &v) != KB_OK) return KB_EFORMAT;
        int64_t iv = (int32_t)(uint32_t)v; /* int32 fields: -1 is sent as a 10-byte varint */
        if (field == 3) m->model_type = (int)iv;
        else if (field == 35) m->byte_fallback = v != 0;
        else if (field == 40) m->unk_id = iv;
        else if (field == 41) m->bos_id = iv;
        else m->eos_id = iv;
    }
    return KB_OK;
}

/* Reads NormalizerSpec fields: add_dummy_prefix 3, remove_extra_whitespaces 4. */
static int sp_normalizer(Pb *r, SpModel *m)
{
    uint32_t field;
    int wire;
    uint64_t v;
    while (r->p < r->end) {
        if (pb_key(r, &field, &wire) != KB_OK) return KB_EFORMAT;
        if ((field == 3 || field == 4) && wire == PB_VARINT) {
            if (pb_varint(r, &v) != KB_OK) return KB_EFORMAT;
            if (field == 3) m->add_dummy_prefix = v != 0;
            else m->remove_extra_ws = v != 0;
        } else if (pb_skip(r, wire) != KB_OK) {
            return KB_EFORMAT;
        }
    }
    return KB_OK;
}

/* Walks the ModelProto's top level: pieces 1 (stored when m->pieces is set,
** else only counted), trainer_spec 2, normalizer_spec 3. Returns KB_OK or
** KB_EFORMAT with a message naming the byte or piece. */
static int sp_walk(const uint8_t *blob, size_t len, SpModel *m, char *err, size_t errlen)
{
    Pb r = {blob, blob, blob + len}, sub;
    uint32_t field;
    int wire;
    int64_t n = 0;
    while (r.p < r.end) {
        size_t at = (size_t)(r.p - blob);
        if (pb_key(&r, &field, &wire) != KB_OK)
            return kb_error(err, errlen, KB_EFORMAT, "SentencePiece model: bad field key at byte %zu", at);
        if (field > 3 || wire != PB_LEN) {
            if (pb_skip(&r, wire) != KB_OK)
                return kb_error(err, errlen, KB_EFORMAT, "SentencePiece model: field %u at byte %zu is malformed", field, at);
            continue;
        }
        if (pb_sub(&r, &sub) != KB_OK) {
            return kb_error(err, errlen, KB_EFORMAT, "SentencePiece model: field %u at byte %zu runs past the end (%zu bytes)",
                            field, at, len);
        }
        int rc = KB_OK;
        if (field == 1) {
            SpPiece sp;
            if (n >= TOK_MAX_PIECES) return kb_error(err, errlen, KB_EFORMAT, "SentencePiece model: more than %d pieces", TOK_MAX_PIECES);
            rc = sp_piece(&sub, &sp);
            if (rc == KB_OK && (sp.len == 0 || sp.type < 0)) {
                return kb_error(err, errlen, KB_EFORMAT, "SentencePiece model: piece %lld at byte %zu has %s", (long long)n, at,
                                sp.len == 0 ? "no text" : "an unknown type");
            }
            if (rc == KB_OK && m->pieces) m->pieces[n] = sp;
            n++;
        } else {
            rc = field == 2 ? sp_trainer(&sub, m) : sp_normalizer(&sub, m);
        }
        if (rc != KB_OK) return kb_error(err, errlen, KB_EFORMAT, "SentencePiece model: message at byte %zu is malformed", at);
    }
    if (n == 0) return kb_error(err, errlen, KB_EFORMAT, "SentencePiece model: no pieces (%zu bytes)", len);
    m->n = n;
    return KB_OK;
}

/* Parses blob into m (pieces point into blob; free m->pieces). */
static int sp_parse(const uint8_t *blob, size_t len, SpModel *m, char *err, size_t errlen)
{
    *m = (SpModel){NULL, 0, 1, false, 0, 1, 2, true, true};
    int rc = sp_walk(blob, len, m, err, errlen); /* validate and count */
    if (rc != KB_OK) return rc;
    m->pieces = malloc((size_t)m->n * sizeof *m->pieces);
    if (m->pieces == NULL) return kb_error(err, errlen, KB_ENOMEM, "out of memory for %lld pieces", (long long)m->n);
    return sp_walk(blob, len, m, err, errlen);
}

/* --- building a Tokenizer --- */

/* Allocates a tokenizer of n tokens (all unused and empty until set) with an
** arena of `bytes` bytes. */
static Tokenizer *tb_new(KbTokKind kind, int32_t n, size_t bytes)
{
    Tokenizer *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    t->kind = kind;
    t->n_vocab = n;
    t->tokens = calloc((size_t)n, sizeof *t->tokens);
    t->arena = malloc(bytes ? bytes : 1);
    if (t->tokens == NULL || t->arena == NULL) {
        tokenizer_free(t);
        return NULL;
    }
    t->bos = t->eos = t->unk = t->sep = t->pad = t->cls = t->mask = -1;
    t->glm_gmask = t->glm_sop = -1;
    return t;
}

/* Sets token id at the arena cursor: its text, then `room` bytes for the
** piece (room >= len + 1). */
static void tb_set(Tokenizer *t, char **cur, int32_t id, const void *text, size_t len, float score, int type, size_t room)
{
    TokenData *td = &t->tokens[id];
    char *p = *cur;
    memmove(p, text, len); /* GLM-4 texts are written at the cursor first */
    p[len] = '\0';
    td->text = p;
    td->len = (uint32_t)len;
    td->piece = p + len + 1;
    td->score = score;
    td->type = type;
    *cur = p + len + 1 + room;
    if (len > t->max_token_len) t->max_token_len = (uint32_t)len;
}

/* Fills ids [from, t->n_vocab) with unused empty tokens (the padding rows of
** the embedding: never produced, decoded as nothing). */
static void tb_pad(Tokenizer *t, char **cur, int32_t from)
{
    for (int32_t id = from; id < t->n_vocab; id++) tb_set(t, cur, id, "", 0, 0.0f, KB_TOKTYPE_UNUSED, 1);
}

/* The special tokens ChatGLM2 (5) and ChatGLM3 (all 9) append after the
** SentencePiece pieces, in chatglm.cpp's order. */
static const char *const glm23_specials[] = {"[MASK]",     "[gMASK]",  "[sMASK]",       "sop",           "eop",
                                             "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"};

/* Piece room of a SentencePiece token: ChatGLM-6B's user-defined tokens
** decode to up to 80 spaces. */
static size_t sp_room(int glm, const SpPiece *p)
{
    return p->len + 1 + (glm == 1 && p->type == KB_TOKTYPE_USER_DEFINED ? GLM_MAX_BLANK + 1 : 0);
}

/* Turns ChatGLM-6B's whitespace pieces into the text they stand for. */
static void glm1_pieces(Tokenizer *t)
{
    for (int32_t id = 0; id < t->n_vocab; id++) {
        TokenData *td = &t->tokens[id];
        char *p = (char *)td->piece, tail;
        int n = 0;
        if (td->type != KB_TOKTYPE_USER_DEFINED) continue;
        if (strcmp(td->text, "<n>") == 0) strcpy(p, "\n");
        else if (strcmp(td->text, "<|tab|>") == 0) strcpy(p, "\t");
        else if (sscanf(td->text, "<|blank_%d|%c", &n, &tail) == 2 && tail == '>' && n >= 2 && n <= GLM_MAX_BLANK &&
                 td->len == strlen("<|blank_|>") + (n < 10 ? 1 : 2)) {
            memset(p, ' ', (size_t)n);
            p[n] = '\0';
        } else {
            continue;
        }
        td->piece_len = (uint32_t)strlen(p);
    }
}

/* The special ids and flags of a SentencePiece vocabulary, once indexed. */
static void sp_specials(Tokenizer *t, const SpModel *sp, int glm)
{
    int64_t n = sp->n;
    t->unk = sp->unk_id >= 0 && sp->unk_id < n ? (int32_t)sp->unk_id : -1;
    t->add_space_prefix = sp->add_dummy_prefix;
    t->add_bos = t->add_eos = false; /* chatglm.cpp adds no <s> </s>; the [gMASK] tokens: see the file comment */
    if (glm != 1) {
        t->bos = sp->bos_id >= 0 && sp->bos_id < n ? (int32_t)sp->bos_id : -1;
        t->eos = sp->eos_id >= 0 && sp->eos_id < n ? (int32_t)sp->eos_id : -1;
        t->mask = tokenizer_find(t, "[MASK]", 6);
        return;
    }
    t->glm1 = true;
    t->spm_unigram = sp->model_type == 1;
    t->spm_squeeze = sp->remove_extra_ws;
    t->spm_byte_fallback = sp->byte_fallback;
    t->glm_gmask = tokenizer_find(t, "[gMASK]", 7);
    t->glm_sop = t->bos = tokenizer_find(t, "<sop>", 5);
    t->eos = tokenizer_find(t, "<eop>", 5);
    t->mask = tokenizer_find(t, "[MASK]", 6);
    t->pad = tokenizer_find(t, "<pad>", 5);
    float lowest = 0.0f;
    for (int64_t i = 0; i < n; i++)
        if (sp->pieces[i].type == KB_TOKTYPE_NORMAL && sp->pieces[i].score < lowest) lowest = sp->pieces[i].score;
    t->spm_unk_score = lowest - 10.0f; /* SentencePiece's kUnkPenalty */
    glm1_pieces(t);
}

/* Builds the Tokenizer of a parsed model; see tok_sp_model_load. */
static int sp_build(const SpModel *sp, int glm, int32_t n_vocab, Tokenizer **out, char *err, size_t errlen)
{
    int n_extra = glm == 2 ? 5 : glm == 3 ? 9 : 0;
    int64_t total = sp->n + n_extra;
    if (n_vocab > 0 && total > n_vocab) {
        return kb_error(err, errlen, KB_EFORMAT,
                        "the tokenizer has %lld tokens but the model's vocabulary only %d (a mismatched tokenizer?)",
                        (long long)total, n_vocab);
    }
    int32_t size = n_vocab > total ? n_vocab : (int32_t)total;
    size_t bytes = 2 * (size_t)size;
    for (int64_t i = 0; i < sp->n; i++) bytes += sp->pieces[i].len + 1 + sp_room(glm, &sp->pieces[i]);
    for (int i = 0; i < n_extra; i++) bytes += 2 * strlen(glm23_specials[i]) + 2;
    Tokenizer *t = tb_new(KB_TOK_SPM, size, bytes);
    if (t == NULL) return kb_error(err, errlen, KB_ENOMEM, "out of memory for %d tokens", size);
    char *cur = t->arena;
    for (int64_t i = 0; i < sp->n; i++) {
        const SpPiece *p = &sp->pieces[i];
        tb_set(t, &cur, (int32_t)i, p->text, p->len, p->score, p->type, sp_room(glm, p));
    }
    for (int i = 0; i < n_extra; i++) {
        const char *s = glm23_specials[i];
        tb_set(t, &cur, (int32_t)(sp->n + i), s, strlen(s), 0.0f, KB_TOKTYPE_CONTROL, strlen(s) + 1);
    }
    tb_pad(t, &cur, (int32_t)total);
    int rc = tok_index_vocab(t, err, errlen);
    if (rc != KB_OK) {
        tokenizer_free(t);
        return rc;
    }
    sp_specials(t, sp, glm);
    if (glm != 1 && sp->model_type == 1) {
        snprintf(t->warning, sizeof t->warning,
                 "a unigram SentencePiece model encoded with the BPE algorithm: ids may differ from SentencePiece's");
    }
    *out = t;
    return KB_OK;
}

/* See tok_internal.h. */
int tok_sp_model_load(const uint8_t *proto, size_t len, int glm, int32_t n_vocab, Tokenizer **out, char *err, size_t errlen)
{
    SpModel sp;
    *out = NULL;
    if (glm < 1 || glm > 3) return kb_error(err, errlen, KB_EINVAL, "model type %d has no SentencePiece tokenizer", glm);
    int rc = sp_parse(proto, len, &sp, err, errlen);
    if (rc == KB_OK) rc = sp_build(&sp, glm, n_vocab, out, err, errlen);
    free(sp.pieces);
    return rc;
}

/* --- ChatGLM-6B's rules --- */

/* Writes ChatGLM-6B's substitutions of s[0..len) into out (room for 7 * len
** bytes): \n -> <n>, \t -> <|tab|>, each run of 2..80 spaces -> <|blank_N|>,
** longer runs as blanks of 80 from the left, a single space as it is.
** Returns the length written. */
static size_t glm1_substitute(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] == '\n' || s[i] == '\t') {
            const char *rep = s[i] == '\n' ? "<n>" : "<|tab|>";
            memcpy(out + o, rep, strlen(rep));
            o += strlen(rep);
            i++;
        } else if (s[i] == ' ') {
            size_t run = 0;
            while (i + run < len && s[i + run] == ' ') run++;
            i += run;
            for (; run >= 2; run -= run < GLM_MAX_BLANK ? run : GLM_MAX_BLANK) {
                char tok[16];
                int k = snprintf(tok, sizeof tok, "<|blank_%zu|>", run < GLM_MAX_BLANK ? run : (size_t)GLM_MAX_BLANK);
                memcpy(out + o, tok, (size_t)k);
                o += (size_t)k;
            }
            if (run == 1) out[o++] = ' ';
        } else {
            out[o++] = s[i++];
        }
    }
    return o;
}

/* SentencePiece's normalizer on substituted text s[0..n): with
** remove_extra_whitespaces the spaces at both ends go (runs cannot remain),
** then "▁" before the text (add_dummy_prefix, at the start of the whole
** text only) and every space written as "▁". out needs 3 * n + 3 bytes.
** Returns the length written. */
static size_t glm1_normalize(const Tokenizer *t, const char *s, size_t n, bool at_start, char *out)
{
    size_t o = 0;
    if (t->spm_squeeze) {
        while (n > 0 && s[0] == ' ') s++, n--;
        while (n > 0 && s[n - 1] == ' ') n--;
    }
    if (n > 0 && at_start && t->add_space_prefix) memcpy(out, SPM_SPACE, 3), o = 3;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') memcpy(out + o, SPM_SPACE, 3), o += 3;
        else out[o++] = s[i];
    }
    return o;
}

/* Pushes the tokens of an unknown character s[0..n): its bytes' <0xNN>
** tokens with byte fallback, else one unknown token for a whole run
** (SentencePiece merges consecutive unknown pieces). */
static int unigram_unknown(const Tokenizer *t, const char *s, size_t n, bool *prev_unk, KbTokens *out)
{
    int rc = KB_OK;
    if (t->spm_byte_fallback) {
        for (size_t i = 0; i < n && rc == KB_OK; i++) {
            int32_t id = t->byte_token[(unsigned char)s[i]];
            rc = kb_tokens_push(out, id >= 0 ? id : t->unk);
        }
        return rc;
    }
    if (!*prev_unk && t->unk >= 0) rc = kb_tokens_push(out, t->unk);
    *prev_unk = true;
    return rc;
}

/* Length of the UTF-8 character at s[0] (1 for a stray byte), at most n. */
static size_t utf8_len(const char *s, size_t n)
{
    static const unsigned char lead[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t l = lead[(unsigned char)s[0] >> 4];
    return l < n ? l : n;
}

/* SentencePiece's unigram encoding of s[0..n) (already normalized): the
** Viterbi path of highest total score over the normal pieces, starting
** positions in order and shorter pieces first, a later candidate winning
** only when strictly better; a character no piece starts alone is an
** unknown piece scored spm_unk_score. */
static int unigram_encode(const Tokenizer *t, const char *s, size_t n, KbTokens *out)
{
    double *best = malloc((n + 1) * sizeof *best);
    size_t *from = malloc((n + 1) * sizeof *from);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    int rc = best && from && ids ? KB_OK : KB_ENOMEM;
    for (size_t i = 0; rc == KB_OK && i <= n; i++) best[i] = -INFINITY, from[i] = SIZE_MAX; /* SIZE_MAX: not reached */
    if (rc == KB_OK) best[0] = 0, from[0] = 0;
    for (size_t i = 0; rc == KB_OK && i < n; i++) {
        if (from[i] == SIZE_MAX) continue; /* inside a character */
        size_t cl = utf8_len(s + i, n - i), max = n - i < t->max_token_len ? n - i : t->max_token_len;
        bool single = false;
        for (size_t l = 1; l <= max; l++) {
            int32_t id = strmap_get(&t->text_to_id, s + i, l);
            if (id < 0 || t->tokens[id].type != KB_TOKTYPE_NORMAL) continue;
            single |= l == cl;
            double sc = best[i] + t->tokens[id].score;
            if (sc > best[i + l] || from[i + l] == SIZE_MAX) best[i + l] = sc, from[i + l] = i, ids[i + l] = id;
        }
        /* also when no piece reached the next character (scores of -inf or
        ** NaN in a hostile model): every character stays reachable */
        if ((!single && best[i] + t->spm_unk_score > best[i + cl]) || from[i + cl] == SIZE_MAX)
            best[i + cl] = best[i] + t->spm_unk_score, from[i + cl] = i, ids[i + cl] = -1;
    }
    /* walk back, then emit in order (ends reuse `best` as a scratch list) */
    size_t k = 0;
    for (size_t j = n; rc == KB_OK && j > 0; j = from[j]) best[k++] = (double)j;
    bool prev_unk = false;
    while (rc == KB_OK && k-- > 0) {
        size_t j = (size_t)best[k], i = from[j];
        if (ids[j] >= 0) rc = kb_tokens_push(out, ids[j]), prev_unk = false;
        else rc = unigram_unknown(t, s + i, j - i, &prev_unk, out);
    }
    free(best);
    free(from);
    free(ids);
    return rc;
}

/* Returns the user-defined token (the never-split pieces, <n> and the
** blanks among them) whose text starts s[0..n), longest first, or -1. */
static int32_t match_user_defined(const Tokenizer *t, const char *s, size_t n)
{
    for (size_t i = 0; i < t->n_specials; i++) {
        const TokenData *td = &t->tokens[t->specials[i]];
        if (td->type == KB_TOKTYPE_USER_DEFINED && td->len <= n && memcmp(td->text, s, td->len) == 0) return t->specials[i];
    }
    return -1;
}

/* Encodes normalized text: user-defined pieces as themselves, the text
** between them with the model's algorithm. */
static int glm1_encode_normalized(const Tokenizer *t, const char *s, size_t n, KbTokens *out)
{
    int rc = KB_OK;
    size_t start = 0;
    for (size_t pos = 0; pos < n && rc == KB_OK;) {
        int32_t id = t->special_lead[(unsigned char)s[pos]] ? match_user_defined(t, s + pos, n - pos) : -1;
        if (id < 0) {
            pos++;
            continue;
        }
        if (pos > start) rc = t->spm_unigram ? unigram_encode(t, s + start, pos - start, out)
                                            : tok_spm_encode(t, s + start, pos - start, out);
        if (rc == KB_OK) rc = kb_tokens_push(out, id);
        pos += t->tokens[id].len;
        start = pos;
    }
    if (rc == KB_OK && n > start)
        rc = t->spm_unigram ? unigram_encode(t, s + start, n - start, out) : tok_spm_encode(t, s + start, n - start, out);
    return rc;
}

/* Encodes one fragment of raw text (between control tokens): substitute,
** normalize, encode. */
static int glm1_fragment(const Tokenizer *t, const char *s, size_t len, bool at_start, KbTokens *out)
{
    if (len > (SIZE_MAX - 16) / 21) return KB_ENOMEM;
    char *sub = malloc(7 * len + 1), *norm = malloc(21 * len + 4);
    int rc = sub && norm ? KB_OK : KB_ENOMEM;
    if (rc == KB_OK) {
        size_t n = glm1_substitute(s, len, sub);
        n = glm1_normalize(t, sub, n, at_start, norm);
        rc = glm1_encode_normalized(t, norm, n, out);
    }
    free(sub);
    free(norm);
    return rc;
}

/* Returns the control (or unknown) token whose text starts s[0..n) where
** mask allows it (see tokenizer_encode_masked), longest first, or -1. */
static int32_t match_control(const Tokenizer *t, const char *s, size_t n, const unsigned char *mask)
{
    for (size_t i = 0; i < t->n_specials; i++) {
        const TokenData *td = &t->tokens[t->specials[i]];
        if (td->type == KB_TOKTYPE_USER_DEFINED || td->len > n || td->text[0] != s[0]) continue;
        if (mask && memchr(mask, 0, td->len)) continue;
        if (memcmp(td->text, s, td->len) == 0) return t->specials[i];
    }
    return -1;
}

/* See tok_internal.h. */
int tok_glm1_encode(const Tokenizer *t, const char *text, size_t len, const unsigned char *mask, unsigned flags,
                    KbTokens *out)
{
    size_t n_before = out->n, start = 0;
    bool parse = (flags & KB_TOK_PARSE_SPECIAL) != 0;
    int rc = KB_OK;
    for (size_t pos = 0; pos < len && rc == KB_OK && parse;) {
        int32_t id = t->special_lead[(unsigned char)text[pos]] ? match_control(t, text + pos, len - pos, mask ? mask + pos : NULL) : -1;
        if (id < 0) {
            pos++;
            continue;
        }
        if (pos > start) rc = glm1_fragment(t, text + start, pos - start, start == 0, out);
        if (rc == KB_OK) rc = kb_tokens_push(out, id);
        pos += t->tokens[id].len;
        start = pos;
    }
    if (rc == KB_OK && len > start) rc = glm1_fragment(t, text + start, len - start, start == 0, out);
    size_t n = out->n - n_before;
    bool has_tail = n >= 2 && out->ids[out->n - 2] == t->glm_gmask && out->ids[out->n - 1] == t->glm_sop;
    if (rc == KB_OK && (flags & KB_TOK_ADD_SPECIAL) && !has_tail && t->glm_gmask >= 0 && t->glm_sop >= 0) {
        rc = kb_tokens_push(out, t->glm_gmask);
        if (rc == KB_OK) rc = kb_tokens_push(out, t->glm_sop);
    }
    if (rc != KB_OK) out->n = n_before;
    return rc;
}

/* --- GLM-4: tiktoken vocabulary --- */

/* The special tokens GLM-4 appends after the ranks, in chatglm.cpp's order. */
static const char *const glm4_specials[] = {
    "<|endoftext|>", "[MASK]",          "[gMASK]",            "[sMASK]",          "<sop>",
    "<eop>",         "<|system|>",      "<|user|>",           "<|assistant|>",    "<|observation|>",
    "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>",
};
#define GLM4_N_SPECIALS 14
#define TT_MAX_TOKEN 256 /* bytes of a token; merges are derived in O(len^2) */

/* Value of a base64 character, -1 for any other byte. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes standard base64 s[0..n) (with or without '=' padding) into out
** (room for n bytes; NULL only counts). Returns the byte count, or -1 for a
** bad character, bad padding or a length no encoding has. */
static long b64_decode(const char *s, size_t n, uint8_t *out)
{
    while (n > 0 && s[n - 1] == '=') n--;
    if (n % 4 == 1) return -1;
    uint32_t acc = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            if (out) out[o] = (uint8_t)(acc >> 16), out[o + 1] = (uint8_t)(acc >> 8), out[o + 2] = (uint8_t)acc;
            o += 3;
            acc = 0;
        }
    }
    size_t rest = n % 4; /* 2 -> 1 byte, 3 -> 2 bytes */
    if (rest == 2 && out) out[o] = (uint8_t)(acc >> 4);
    if (rest == 3 && out) out[o] = (uint8_t)(acc >> 10), out[o + 1] = (uint8_t)(acc >> 2);
    return o + (rest ? (long)rest - 1 : 0);
}

/* The next whitespace-separated word of text at *pos, or NULL at the end. */
static const char *tt_word(const char *text, size_t len, size_t *pos, size_t *n)
{
    while (*pos < len && (text[*pos] == ' ' || text[*pos] == '\n' || text[*pos] == '\r' || text[*pos] == '\t')) (*pos)++;
    if (*pos == len) return NULL;
    size_t s = *pos;
    while (*pos < len && text[*pos] != ' ' && text[*pos] != '\n' && text[*pos] != '\r' && text[*pos] != '\t') (*pos)++;
    *n = *pos - s;
    return text + s;
}

/* The tiktoken entries: raw bytes of the token of each rank. */
typedef struct TtVocab {
    int64_t n;
    uint8_t *raw;        /* all tokens' bytes */
    size_t *off, *len;   /* per rank */
} TtVocab;

/* Reads "base64 rank" pairs: a first pass (raw NULL) counts entries and
** bytes and checks everything; the second stores each token at its rank. */
static int tt_scan(const char *text, size_t len, TtVocab *v, size_t *bytes, char *err, size_t errlen)
{
    size_t pos = 0, n_tok, n_rank, total = 0;
    int64_t n = 0;
    const char *tok;
    while ((tok = tt_word(text, len, &pos, &n_tok)) != NULL) {
        const char *rank = tt_word(text, len, &pos, &n_rank);
        long bl = b64_decode(tok, n_tok, NULL);
        if (bl <= 0 || bl > TT_MAX_TOKEN) {
            return kb_error(err, errlen, KB_EFORMAT, "GLM-4 vocabulary: entry %lld is not base64 of 1..%d bytes", (long long)n,
                            TT_MAX_TOKEN);
        }
        long long r = rank && n_rank >= 1 && n_rank <= 9 ? 0 : -1; /* the text is not NUL-terminated: no strtoll */
        for (size_t i = 0; r >= 0 && i < n_rank; i++) r = rank[i] >= '0' && rank[i] <= '9' ? 10 * r + (rank[i] - '0') : -1;
        if (r < 0) return kb_error(err, errlen, KB_EFORMAT, "GLM-4 vocabulary: entry %lld has no rank", (long long)n);
        if (v->raw) {
            if (r >= v->n || v->len[r] != 0)
                return kb_error(err, errlen, KB_EFORMAT, "GLM-4 vocabulary: rank %lld is out of range or repeated", r);
            v->off[r] = total;
            v->len[r] = (size_t)b64_decode(tok, n_tok, v->raw + total);
        }
        total += (size_t)bl;
        if (++n > TOK_MAX_PIECES) return kb_error(err, errlen, KB_EFORMAT, "GLM-4 vocabulary: more than %d tokens", TOK_MAX_PIECES);
    }
    if (n == 0) return kb_error(err, errlen, KB_EFORMAT, "GLM-4 vocabulary: no tokens (%zu bytes)", len);
    v->n = n;
    *bytes = total;
    return KB_OK;
}

/* Returns the code point GPT-2's byte-level alphabet uses for byte b. */
static uint32_t tt_byte_cpt(unsigned b)
{
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x121 + (b - 0x7F);
    if (b == 0xAD) return 0x143;
    return b;
}

/* Writes raw bytes s[0..n) in the byte-level alphabet (at most 2n bytes). */
static size_t tt_byte_level(const uint8_t *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = tt_byte_cpt(s[i]);
        if (c < 0x80) {
            out[o++] = (char)c;
        } else {
            out[o++] = (char)(0xC0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return o;
}

/* Splits the token of rank r as tiktoken builds it: from single bytes,
** repeatedly merge the adjacent pair of lowest rank below r. Returns where
** the two remaining parts meet, or 0 when not exactly two remain. b is
** scratch of len + 1 entries. */
static size_t tt_split(const StrMap *ranks, const uint8_t *s, size_t len, int32_t r, size_t *b)
{
    size_t k = len; /* parts: [b[i], b[i+1]) */
    for (size_t i = 0; i <= len; i++) b[i] = i;
    while (k > 2) {
        int32_t best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < k; i++) {
            int32_t q = strmap_get(ranks, (const char *)s + b[i], b[i + 2] - b[i]);
            if (q >= 0 && q < r && (best < 0 || q < best)) best = q, at = i;
        }
        if (best < 0) break;
        memmove(&b[at + 1], &b[at + 2], (k - at - 1) * sizeof *b);
        k--;
    }
    return k == 2 ? b[1] : 0;
}

/* Derives the merges ("left right" in byte-level text -> rank) into t. */
static int tt_merges(Tokenizer *t, const TtVocab *v, char *err, size_t errlen)
{
    StrMap ranks = {0};
    size_t maxlen = 0, bytes = 0;
    for (int64_t r = 0; r < v->n; r++) {
        maxlen = v->len[r] > maxlen ? v->len[r] : maxlen;
        bytes += 2 * v->len[r] + 2;
    }
    size_t *b = malloc((maxlen + 1) * sizeof *b);
    t->merge_arena = malloc(bytes);
    int rc = b && t->merge_arena && strmap_init(&ranks, (size_t)v->n) == KB_OK && strmap_init(&t->merges, (size_t)v->n) == KB_OK
                 ? KB_OK
                 : kb_error(err, errlen, KB_ENOMEM, "out of memory for the GLM-4 merges");
    for (int64_t r = 0; r < v->n && rc == KB_OK; r++) strmap_put(&ranks, (const char *)v->raw + v->off[r], v->len[r], (int32_t)r);
    char *p = t->merge_arena;
    for (int64_t r = 0; r < v->n && rc == KB_OK; r++) {
        const uint8_t *s = v->raw + v->off[r];
        size_t cut = v->len[r] >= 2 ? tt_split(&ranks, s, v->len[r], (int32_t)r, b) : 0;
        if (cut == 0) continue;
        size_t l = tt_byte_level(s, cut, p);
        p[l++] = ' ';
        l += tt_byte_level(s + cut, v->len[r] - cut, p + l);
        if (strmap_get(&t->merges, p, l) < 0) strmap_put(&t->merges, p, l, (int32_t)r);
        p += l;
    }
    strmap_free(&ranks);
    free(b);
    return rc;
}

/* Builds the vocabulary of v plus GLM-4's specials, padded to n_vocab. */
static int tt_build(const TtVocab *v, int32_t n_vocab, Tokenizer **out, char *err, size_t errlen)
{
    int64_t total = v->n + GLM4_N_SPECIALS;
    if (n_vocab > 0 && total > n_vocab) {
        return kb_error(err, errlen, KB_EFORMAT, "the tokenizer has %lld tokens but the model's vocabulary only %d",
                        (long long)total, n_vocab);
    }
    int32_t size = n_vocab > total ? n_vocab : (int32_t)total;
    size_t bytes = 2 * (size_t)size;
    for (int64_t r = 0; r < v->n; r++) bytes += 4 * v->len[r] + 2;
    for (int i = 0; i < GLM4_N_SPECIALS; i++) bytes += 2 * strlen(glm4_specials[i]) + 2;
    Tokenizer *t = tb_new(KB_TOK_BPE, size, bytes);
    if (t == NULL) return kb_error(err, errlen, KB_ENOMEM, "out of memory for %d tokens", size);
    char *cur = t->arena;
    for (int64_t r = 0; r < v->n; r++) {
        /* the byte-level text is written in place at the cursor */
        size_t l = tt_byte_level(v->raw + v->off[r], v->len[r], cur);
        char *at = cur;
        tb_set(t, &cur, (int32_t)r, at, l, 0.0f, KB_TOKTYPE_NORMAL, l + 1);
    }
    for (int i = 0; i < GLM4_N_SPECIALS; i++) {
        const char *s = glm4_specials[i];
        tb_set(t, &cur, (int32_t)(v->n + i), s, strlen(s), 0.0f, KB_TOKTYPE_CONTROL, strlen(s) + 1);
    }
    tb_pad(t, &cur, (int32_t)total);
    int rc = tok_bpe_set_rule(t, BPE_PRE_CHATGLM4, err, errlen);
    if (rc == KB_OK) rc = tt_merges(t, v, err, errlen);
    if (rc == KB_OK) rc = tok_index_vocab(t, err, errlen);
    if (rc != KB_OK) {
        tokenizer_free(t);
        return rc;
    }
    t->eos = tokenizer_find(t, "<|endoftext|>", 13);
    t->mask = tokenizer_find(t, "[MASK]", 6);
    *out = t;
    return KB_OK;
}

/* See tok_internal.h. */
int tok_tiktoken_load(const char *text, size_t len, int32_t n_vocab, Tokenizer **out, char *err, size_t errlen)
{
    TtVocab v = {0};
    size_t bytes = 0;
    *out = NULL;
    int rc = tt_scan(text, len, &v, &bytes, err, errlen);
    if (rc == KB_OK) {
        v.raw = malloc(bytes ? bytes : 1);
        v.off = malloc((size_t)v.n * sizeof *v.off);
        v.len = calloc((size_t)v.n, sizeof *v.len);
        if (!v.raw || !v.off || !v.len) rc = kb_error(err, errlen, KB_ENOMEM, "out of memory for %lld tokens", (long long)v.n);
    }
    if (rc == KB_OK) rc = tt_scan(text, len, &v, &bytes, err, errlen);
    if (rc == KB_OK) rc = tt_build(&v, n_vocab, out, err, errlen);
    free(v.raw);
    free(v.off);
    free(v.len);
    return rc;
}

/* --- the file's tokenizer --- */

/* See ggml_file.h: the model type picks the kind. */
int ggml_file_tokenizer(const GgmlFile *f, Tokenizer **out, char *err, size_t errlen)
{
    const GgmlConfig *c = ggml_file_config(f);
    size_t len;
    const uint8_t *data = ggml_file_tokenizer_data(f, &len);
    if (c->model_type == GGML_MODEL_GLM4) return tok_tiktoken_load((const char *)data, len, (int32_t)c->n_vocab, out, err, errlen);
    return tok_sp_model_load(data, len, c->model_type, (int32_t)c->n_vocab, out, err, errlen);
}
