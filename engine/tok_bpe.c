/*
** tok_bpe.c: byte-level BPE (tokenizer.ggml.model "gpt2"), as llama.cpp
** (src/llama-vocab.cpp and src/unicode.cpp of the version the bench anchor,
** node-llama-cpp 3.22.1, ships) does it, id for id.
**
** Encoding a raw text fragment goes through four steps:
**
**   1. decode   UTF-8 to code points the way unicode_cpts_from_utf8 does:
**               overlong forms and surrogates are accepted (and re-encoded
**               in their shortest form later); a byte that starts no valid
**               sequence becomes U+FFFD and decoding resumes at the next
**               byte. Each code point is stored with its character class
**               (letter, number, white space, punctuation, mark, symbol).
**   2. split    the code points into pre-tokens with the rule of
**               tokenizer.ggml.pre: llama.cpp's list of regexes for it.
**               Each regex splits every piece the previous one produced, as
**               unicode_regex_split applies them. The regexes llama.cpp
**               recognizes by their text and splits with hand-written code
**               (GPT-2, LLaMA 3, Qwen2, Qwen3.5, Kimi K2, AFMoE digits, line
**               feeds) are ported as code; the others run through PCRE2 the
**               way llama.cpp runs them through std::regex (see "llama.cpp's
**               regexes through PCRE2" below).
**   3. encode   each pre-token as UTF-8, then each byte as its GPT-2
**               byte-level character (bytes_to_unicode).
**   4. merge    the characters of each pre-token with the ranked merges,
**               lowest rank first, ties to the leftmost pair, exactly as
**               llm_tokenizer_bpe_session::tokenize; a final symbol missing
**               from the vocabulary becomes the tokens of its single bytes
**               (those that exist).
**
** Nothing is kept between calls: every buffer belongs to one BpeSession that
** lives for one call to tok_bpe_encode, so a Tokenizer can serve several
** threads (the compiled regexes are read-only). Buffers are sized once per
** pre-token at most (grown, never per character); the hand-written splitters
** are linear in the input, the regexes as PCRE2 makes them, and the merge
** loop n log n per pre-token.
**
** Unicode classes, from GLib's general categories: letters are Lu Ll Lt Lm
** Lo, numbers Nd Nl No, punctuation Pc Pd Ps Pe Pi Pf Po, marks Mn Mc Me,
** symbols Sm Sc Sk So (ASCII $+<=>^`|~ included), and white space the 25
** code points of Unicode's White_Space property, which is what llama.cpp's
** tables (scripts/gen-unicode-data.py) hold. Everything else, unassigned
** code points included, is "other" (llama.cpp's \p{C} and undefined).
*/
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/tok_internal.h"

/* --- character classes --- */

enum {
    BPE_C_DEF = 1,     /* any code point: llama.cpp's flags are never 0 inside a piece */
    BPE_C_LETTER = 2,  /* \p{L} */
    BPE_C_NUMBER = 4,  /* \p{N} */
    BPE_C_SPACE = 8,   /* \s: White_Space */
    BPE_C_PUNCT = 16,  /* \p{P} */
    BPE_C_MARK = 32,   /* \p{M} */
    BPE_C_SYMBOL = 64, /* \p{S} */
    BPE_C_HAN = 128    /* unicode_cpt_is_han: CJK ideographs (Kimi K2) */
};

#define BPE_CPT_MASK 0xFFFFFFu
#define BPE_CLASS_SHIFT 24
#define BPE_OUT_OF_RANGE 0xFFFFFFFFu /* llama.cpp's OUT_OF_RANGE: "no code point here" */

/* Classes of the ASCII code points: letters, digits, \t \n \v \f \r and
** space as white space, $+<=>^`|~ as symbols, the other printable
** characters as punctuation; the rest is "other". */
static unsigned bpe_ascii_class(uint32_t c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) return BPE_C_DEF | BPE_C_LETTER;
    if (c >= '0' && c <= '9') return BPE_C_DEF | BPE_C_NUMBER;
    if ((c >= 0x09 && c <= 0x0D) || c == 0x20) return BPE_C_DEF | BPE_C_SPACE;
    if (c >= 0x21 && c <= 0x7E) return BPE_C_DEF | (memchr("$+<=>^`|~", (int)c, 9) ? BPE_C_SYMBOL : BPE_C_PUNCT);
    return BPE_C_DEF;
}

/* True for the non-ASCII White_Space code points. GLib's g_unichar_isspace
** differs (it has no U+0085 and counts other separators), hence the list. */
static bool bpe_is_wide_space(uint32_t c)
{
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* True for the ranges llama.cpp's unicode_cpt_is_han lists. */
static bool bpe_is_han(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2EBEF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Returns the BPE_C_* class of a non-ASCII, non-space code point from its
** general category. */
static unsigned bpe_category_class(uint32_t c)
{
    switch (g_unichar_type(c)) {
    case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER: return BPE_C_LETTER;
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER: return BPE_C_NUMBER;
    case G_UNICODE_CONNECT_PUNCTUATION:
    case G_UNICODE_DASH_PUNCTUATION:
    case G_UNICODE_OPEN_PUNCTUATION:
    case G_UNICODE_CLOSE_PUNCTUATION:
    case G_UNICODE_INITIAL_PUNCTUATION:
    case G_UNICODE_FINAL_PUNCTUATION:
    case G_UNICODE_OTHER_PUNCTUATION: return BPE_C_PUNCT;
    case G_UNICODE_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK:
    case G_UNICODE_NON_SPACING_MARK: return BPE_C_MARK;
    case G_UNICODE_MATH_SYMBOL:
    case G_UNICODE_CURRENCY_SYMBOL:
    case G_UNICODE_MODIFIER_SYMBOL:
    case G_UNICODE_OTHER_SYMBOL: return BPE_C_SYMBOL;
    default: return 0;
    }
}

/* Returns the BPE_C_* class bits of code point c. */
static unsigned bpe_class(uint32_t c)
{
    if (c < 0x80) return bpe_ascii_class(c);
    if (bpe_is_wide_space(c)) return BPE_C_DEF | BPE_C_SPACE;
    return BPE_C_DEF | bpe_category_class(c) | (bpe_is_han(c) ? BPE_C_HAN : 0);
}

/* --- UTF-8 --- */

/* Decodes the code point at text[*pos] (pos < len) like llama.cpp's
** unicode_cpt_from_utf8 and advances *pos. A lead byte whose sequence is cut
** short, lacks continuation bytes or is 0x80-0xBF or 0xF8-0xFF gives U+FFFD
** and advances one byte, as unicode_cpts_from_utf8 does. Overlong forms and
** surrogates decode to their value, as in llama.cpp. One deliberate
** difference: F4 90.. to F7 decode to values above U+10FFFF, which llama.cpp
** cannot re-encode (it throws out of llama_tokenize); here such a lead byte
** is invalid too. */
static uint32_t bpe_utf8_next(const unsigned char *s, size_t len, size_t *pos)
{
    size_t i = *pos;
    unsigned b = s[i];
    size_t need = b < 0x80 ? 0 : b < 0xC0 ? 9 : b < 0xE0 ? 1 : b < 0xF0 ? 2 : b < 0xF8 ? 3 : 9;
    if (need == 0) {
        *pos = i + 1;
        return b;
    }
    if (need == 9 || len - i <= need) goto invalid;
    uint32_t c = b & (0x3F >> need);
    for (size_t k = 1; k <= need; k++) {
        if ((s[i + k] & 0xC0) != 0x80) goto invalid;
        c = (c << 6) | (s[i + k] & 0x3F);
    }
    if (c > 0x10FFFF) goto invalid;
    *pos = i + need + 1;
    return c;
invalid:
    *pos = i + 1;
    return 0xFFFD;
}

/* Writes the shortest UTF-8 form of c (at most 0x10FFFF) into out and
** returns its length, 1 to 4, like unicode_cpt_to_utf8. */
static size_t bpe_utf8_put(uint32_t c, unsigned char *out)
{
    if (c < 0x80) {
        out[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (unsigned char)(0xC0 | (c >> 6));
        out[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (c >> 12));
        out[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (c >> 18));
    out[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* Length of the UTF-8 form of c. */
static size_t bpe_utf8_len(uint32_t c)
{
    return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
}

/* --- GPT-2 byte-level alphabet (bytes_to_unicode) --- */

/* Returns the code point that stands for byte b: printable Latin-1 bytes
** ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes
** get U+0100.. in byte order: 0x00-0x20 -> U+0100-U+0120, 0x7F-0xA0 ->
** U+0121-U+0142, 0xAD -> U+0143. */
static uint32_t bpe_byte_cpt(unsigned b)
{
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x121 + (b - 0x7F);
    if (b == 0xAD) return 0x143;
    return b;
}

/* Inverse of bpe_byte_cpt: the byte code point c stands for, or -1. */
static int bpe_cpt_byte(uint32_t c)
{
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) return (int)c;
    if (c >= 0x100 && c <= 0x120) return (int)(c - 0x100);
    if (c >= 0x121 && c <= 0x142) return (int)(0x7F + c - 0x121);
    if (c == 0x143) return 0xAD;
    return -1;
}

/* Decodes one strictly valid UTF-8 character at s[0..len) into *c and
** returns its length, or 0 when s does not start with one. */
static size_t bpe_utf8_strict(const unsigned char *s, size_t len, uint32_t *c)
{
    gunichar u = g_utf8_get_char_validated((const gchar *)s, (gssize)(len < 4 ? len : 4));
    if (u == (gunichar)-1 || u == (gunichar)-2) return 0;
    *c = u;
    return bpe_utf8_len(u);
}

/* See tok_internal.h. A NUL, a character outside the 256-character alphabet
** and a byte that starts no valid character are all copied as they are
** (llama.cpp's llama_decode_text writes "[UNK_BYTE_0x..]" for the first two
** instead; real vocabularies have neither). */
size_t tok_bpe_unmap(const char *text, size_t len, char *out)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t k = s[i] == 0 ? 0 : bpe_utf8_strict(s + i, len - i, &c);
        int b = k > 0 ? bpe_cpt_byte(c) : -1;
        if (b >= 0) {
            out[n++] = (char)b;
            i += k;
        } else if (k > 0) {
            memcpy(out + n, s + i, k); /* outside the alphabet: as it is */
            n += k;
            i += k;
        } else {
            out[n++] = (char)s[i++];
        }
    }
    return n;
}

/* --- one call's state --- */

typedef struct BpeSession BpeSession;

/* A pipeline stage: splits piece [ini, end) of the code points and hands
** each part to the next stage (bpe_emit). Returns KB_OK or KB_ENOMEM. */
typedef int (*BpeStage)(BpeSession *s, size_t ini, size_t end, unsigned stage);

/* A symbol of the word being merged: bytes word[off..off+n), n == 0 once
** merged into its left neighbour. */
typedef struct BpeSym {
    int32_t prev, next; /* neighbours, -1 at the ends */
    uint32_t off, n;
} BpeSym;

/* A candidate merge of symbols left and right, whose texts then made
** `size` bytes together (so a changed symbol shows as a changed size). */
typedef struct BpeBigram {
    int32_t rank;
    int32_t left, right;
    uint32_t size;
} BpeBigram;

/* A stage of the rule: a hand-written splitter, or bpe_split_regex with
** the regex compiled at load and the text it runs on. */
typedef struct BpeStep {
    BpeStage split;
    const pcre2_code *re;
    bool collapsed;
} BpeStep;

struct BpeSession {
    const Tokenizer *t;
    KbTokens *out;
    uint32_t *cp;           /* code point | class << BPE_CLASS_SHIFT, for the whole text */
    BpeStep steps[BPE_MAX_STAGES]; /* the pre-tokenizer rule */
    unsigned n_stages;
    char *collapsed;        /* one byte per code point, when a stage runs on collapsed text */
    char *utf8;             /* the text for code point regexes, when a stage has one */
    size_t *utf8_at;        /* offset in utf8 of each code point, and of the end */
    pcre2_match_data *match; /* the regex stages' match, one for the whole call */
    char *word;             /* byte-level text of the pre-token being merged */
    BpeSym *sym;
    size_t word_cap;        /* bytes of word; sym has word_cap / 2 entries */
    char *key;              /* "left right" for merge lookups, word_cap + 1 bytes */
    BpeBigram *heap;        /* min-heap on (rank, left) */
    size_t heap_n, heap_cap;
};

static uint32_t bpe_cpt(const BpeSession *s, size_t p, size_t end)
{
    return p < end ? s->cp[p] & BPE_CPT_MASK : BPE_OUT_OF_RANGE;
}

/* Class bits of the code point at p; 0 past the end of the piece, as
** llama.cpp's _get_flags gives empty flags there. */
static unsigned bpe_cls(const BpeSession *s, size_t p, size_t end)
{
    return p < end ? s->cp[p] >> BPE_CLASS_SHIFT : 0;
}

static int bpe_word(BpeSession *s, size_t a, size_t b);

/* Passes part [a, b) of a piece split by stage `stage` to the next stage, or
** to the merger after the last one. Empty parts are dropped. */
static int bpe_emit(BpeSession *s, unsigned stage, size_t a, size_t b)
{
    if (a == b) return KB_OK;
    if (stage + 1 < s->n_stages) return s->steps[stage + 1].split(s, a, b, stage + 1);
    return bpe_word(s, a, b);
}

/* The cutting point of a hand-written splitter, after llama.cpp's
** _add_token: the part since the previous cut goes on, and its length is
** returned. After a failure nothing more is emitted and rc keeps the code. */
typedef struct BpeCut {
    BpeSession *s;
    unsigned stage;
    size_t prev;
    int rc;
} BpeCut;

static size_t bpe_cut(BpeCut *c, size_t end)
{
    size_t len = end - c->prev;
    if (len > 0 && c->rc == KB_OK) c->rc = bpe_emit(c->s, c->stage, c->prev, end);
    c->prev = end;
    return len;
}

/* --- pre-tokenizer rules: llama.cpp's hand-written splitters --- */

/* The white space alternatives that end llama.cpp's splitters, at pos:
** \s*[\r\n]+ (when crlf: up to the last \r or \n of the run), \s+(?!\S)
** (the run but its last character, when more than one and not at the end of
** the piece) and \s+. Returns where the match ends; pos when there is no
** white space at pos. */
static size_t bpe_space_run(const BpeSession *s, size_t pos, size_t end, bool crlf)
{
    size_t nws = 0, last_rn = 0;
    while (bpe_cls(s, pos + nws, end) & BPE_C_SPACE) {
        uint32_t c = bpe_cpt(s, pos + nws, end);
        if (crlf && (c == '\r' || c == '\n')) last_rn = pos + nws + 1;
        nws++;
    }
    if (last_rn > 0) return last_rn;
    if (nws > 1 && pos + nws < end) return pos + nws - 1;
    return pos + nws;
}

/* The punctuation alternative of the LLaMA 3 family,  ?[^\s\p{L}\p{N}]+[\r\n]*,
** at pos once its test passed (word: the classes the run stops at). Returns
** where the match ends. */
static size_t bpe_punct_run(const BpeSession *s, size_t pos, size_t end, unsigned word)
{
    pos += bpe_cpt(s, pos, end) == ' ';
    unsigned f2 = bpe_cls(s, pos, end);
    while (!(f2 & word) && f2) f2 = bpe_cls(s, ++pos, end);
    uint32_t c2 = bpe_cpt(s, pos, end);
    while (c2 == '\r' || c2 == '\n') c2 = bpe_cpt(s, ++pos, end);
    return pos;
}

/* Length of the contraction at pos, after llama.cpp's hand-written test:
** 's 't 'm 'd (2) or 're 've 'll (3), letters in either case when fold is
** set; 0 when there is none. llama.cpp's unicode_tolower maps no non-ASCII
** code point to one of these letters, so ASCII folding is the same. */
static size_t bpe_contraction(const BpeSession *s, size_t pos, size_t end, bool fold)
{
    if (bpe_cpt(s, pos, end) != '\'' || pos + 1 >= end) return 0;
    uint32_t n1 = bpe_cpt(s, pos + 1, end);
    if (fold && n1 >= 'A' && n1 <= 'Z') n1 += 32;
    if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
    if (pos + 2 >= end) return 0;
    uint32_t n2 = bpe_cpt(s, pos + 2, end);
    if (fold && n2 >= 'A' && n2 <= 'Z') n2 += 32;
    return (n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l') ? 3 : 0;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
** A line-by-line port of unicode_regex_split_custom_gpt2, which also serves
** the second regex of the falcon, starcoder, chameleon and default rules. */
static int bpe_split_gpt2(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    BpeCut cut = {s, stage, ini, KB_OK};
    const unsigned word = BPE_C_SPACE | BPE_C_LETTER | BPE_C_NUMBER;
    size_t pos = ini;
    while (pos < end && cut.rc == KB_OK) {
        uint32_t c = bpe_cpt(s, pos, end);
        size_t k = bpe_contraction(s, pos, end, false);
        if (k > 0) {
            pos += bpe_cut(&cut, pos + k);
            continue;
        }
        unsigned f2 = c == ' ' ? bpe_cls(s, pos + 1, end) : bpe_cls(s, pos, end);
        if (f2 & BPE_C_LETTER) { /* <space>?\p{L}+ */
            pos += c == ' ';
            while (f2 & BPE_C_LETTER) f2 = bpe_cls(s, ++pos, end);
        } else if (f2 & BPE_C_NUMBER) { /* <space>?\p{N}+ */
            pos += c == ' ';
            while (f2 & BPE_C_NUMBER) f2 = bpe_cls(s, ++pos, end);
        } else if (!(f2 & word) && f2) { /* <space>?[^\s\p{L}\p{N}]+ */
            pos += c == ' ';
            while (!(f2 & word) && f2) f2 = bpe_cls(s, ++pos, end);
        } else {
            size_t next = bpe_space_run(s, pos, end, false); /* \s+(?!\S) and the trailing \s+ */
            pos = next > pos ? next : pos + 1;                /* no match: one code point alone */
        }
        bpe_cut(&cut, pos);
    }
    return cut.rc;
}

/* LLaMA 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
**          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
** A line-by-line port of unicode_regex_split_custom_llama3, which serves
** unicode_regex_split_custom_qwen2 too (max_digits 1: \p{N}) and
** unicode_regex_split_custom_qwen35 (letters = BPE_C_LETTER | BPE_C_MARK:
** [\p{L}\p{M}]+ for \p{L}+ and [^\s\p{L}\p{M}\p{N}] for punctuation). */
static int bpe_split_llama3_like(BpeSession *s, size_t ini, size_t end, unsigned stage, size_t max_digits,
                                 unsigned letters)
{
    BpeCut cut = {s, stage, ini, KB_OK};
    const unsigned word = BPE_C_SPACE | letters | BPE_C_NUMBER;
    size_t pos = ini;
    while (pos < end && cut.rc == KB_OK) {
        uint32_t c = bpe_cpt(s, pos, end);
        unsigned f = bpe_cls(s, pos, end);
        size_t k = bpe_contraction(s, pos, end, true);
        if (k > 0) {
            pos += bpe_cut(&cut, pos + k);
            continue;
        }
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (!(c == '\r' || c == '\n' || (f & BPE_C_NUMBER)) && ((f & letters) || (bpe_cls(s, pos + 1, end) & letters))) {
            pos++;
            while (bpe_cls(s, pos, end) & letters) pos++;
            bpe_cut(&cut, pos);
            continue;
        }
        if (f & BPE_C_NUMBER) { /* \p{N}{1,max_digits} */
            size_t run = pos;
            while (bpe_cls(s, pos, end) & BPE_C_NUMBER) {
                if (++pos - run >= max_digits) {
                    bpe_cut(&cut, pos);
                    run = pos;
                }
            }
            bpe_cut(&cut, pos);
            continue;
        }
        /* <space>?[^\s\p{L}\p{N}]+[\r\n]*; llama.cpp tests f, not f2, for
        ** "defined": a space before the end of the piece is cut alone here */
        unsigned f2 = c == ' ' ? bpe_cls(s, pos + 1, end) : f;
        if (!(f2 & word) && f) {
            pos = bpe_punct_run(s, pos, end, word);
            bpe_cut(&cut, pos);
            continue;
        }
        size_t next = bpe_space_run(s, pos, end, true);
        bpe_cut(&cut, next > pos ? next : pos + 1);
        pos = next > pos ? next : pos + 1;
    }
    return cut.rc;
}

static int bpe_split_llama3(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_llama3_like(s, ini, end, stage, 3, BPE_C_LETTER);
}

static int bpe_split_qwen2(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_llama3_like(s, ini, end, stage, 1, BPE_C_LETTER);
}

static int bpe_split_qwen35(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_llama3_like(s, ini, end, stage, 1, BPE_C_LETTER | BPE_C_MARK);
}

/* True when the code point at p is a letter but not a Han ideograph. */
static bool bpe_plain_letter(const BpeSession *s, size_t p, size_t end)
{
    return (bpe_cls(s, p, end) & (BPE_C_LETTER | BPE_C_HAN)) == BPE_C_LETTER;
}

/* Kimi K2: [\p{Han}]+|[^\r\n\p{L}\p{N}]?[letters but Han]+('s|'t|...)?|
**          \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
** A port of unicode_regex_split_custom_kimi_k2 (llama.cpp's only rule for
** "\p{Han}+"). Its letter branch consumes at least one letter whenever it
** is taken, so its fallback paths never run and are left out. Unlike the
** LLaMA 3 splitter, the punctuation test asks f2 for "defined". */
static int bpe_split_kimi_k2(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    BpeCut cut = {s, stage, ini, KB_OK};
    const unsigned word = BPE_C_SPACE | BPE_C_LETTER | BPE_C_NUMBER;
    size_t pos = ini;
    while (pos < end && cut.rc == KB_OK) {
        uint32_t c = bpe_cpt(s, pos, end);
        unsigned f = bpe_cls(s, pos, end);
        bool lead = !(c == '\r' || c == '\n' || (f & (BPE_C_LETTER | BPE_C_NUMBER)));
        if (f & BPE_C_HAN) {
            while (bpe_cls(s, pos, end) & BPE_C_HAN) pos++;
        } else if (bpe_plain_letter(s, pos, end) || (lead && bpe_plain_letter(s, pos + 1, end))) {
            pos += lead;
            while (bpe_plain_letter(s, pos, end)) pos++;
            pos += bpe_contraction(s, pos, end, true);
        } else if (f & BPE_C_NUMBER) { /* \p{N}{1,3} */
            size_t run = pos;
            while ((bpe_cls(s, pos, end) & BPE_C_NUMBER) && pos - run < 3) pos++;
        } else {
            unsigned f2 = c == ' ' ? bpe_cls(s, pos + 1, end) : f;
            if (!(f2 & word) && f2) {
                pos = bpe_punct_run(s, pos, end, word);
            } else {
                size_t next = bpe_space_run(s, pos, end, true);
                pos = next > pos ? next : pos + 1;
            }
        }
        bpe_cut(&cut, pos);
    }
    return cut.rc;
}

/* AFMoE's "\p{AFMoE_digits}" and Tiny Aya's \d{1,3}(?=(?:\d{3})*\b), both
** unicode_regex_split_custom_afmoe: a run of n \p{N} code points is cut
** after its first n % 3 and then every 3. As in llama.cpp, the text before
** a run is not cut from it (it joins the run's first group) and only the
** text after the last run is a piece of its own. */
static int bpe_split_afmoe_digits(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    BpeCut cut = {s, stage, ini, KB_OK};
    size_t pos = ini;
    while (pos < end && cut.rc == KB_OK) {
        if (!(bpe_cls(s, pos, end) & BPE_C_NUMBER)) {
            pos++;
            continue;
        }
        size_t run = pos;
        while (bpe_cls(s, pos, end) & BPE_C_NUMBER) pos++;
        size_t at = run + (pos - run) % 3;
        if (at > run) bpe_cut(&cut, at);
        for (; at < pos; at += 3) bpe_cut(&cut, at + 3);
    }
    bpe_cut(&cut, end);
    return cut.rc;
}

/* [^\n]+|[\n]+ (Laguna's first regex): runs of line feeds and runs of
** anything else (unicode_regex_split_custom_newlines). */
static int bpe_split_newlines(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    BpeCut cut = {s, stage, ini, KB_OK};
    size_t pos = ini;
    while (pos < end && cut.rc == KB_OK) {
        bool newline = bpe_cpt(s, pos, end) == '\n';
        while (pos < end && (bpe_cpt(s, pos, end) == '\n') == newline) pos++;
        bpe_cut(&cut, pos);
    }
    return cut.rc;
}

/* --- pre-tokenizer rules: llama.cpp's regexes through PCRE2 ---
**
** llama.cpp runs every other regex with std::regex (ECMAScript, leftmost
** match, alternatives tried in order, greedy quantifiers backtracking), in
** one of two ways that are reproduced here with PCRE2, whose matching agrees
** with ECMAScript's for these patterns:
**
**   collapsed  when the regex names a category (\p{N} \p{L} \p{P} \p{M} \p{S}
**              \p{Lu} ...): each code point of the text becomes one byte:
**              ASCII stays, other White_Space becomes \v, the others the
**              byte of their category (0xD1 N, 0xD2 L, 0xD3 P, 0xD4 M, 0xD5 S,
**              0xD0 anything else), and each \p{X} in the regex becomes that
**              byte plus the ASCII members of X. So \p{N} is Nd, Nl and No
**              alike (½ ² Ⅻ ٣ are all "numbers"), [^a-z] takes every
**              non-ASCII letter, and case only exists in ASCII. Run on bytes.
**   code point otherwise, std::wregex over the code points, other White_Space
**              replaced by \v. Run as UTF-8 (PCRE2_UTF), where \d \s \b stay
**              ASCII as in std::wregex's "C" locale (no PCRE2_UCP).
**              Surrogates (which only the lenient decoder makes) are matched
**              as U+FFFD: no regex names either.
**
** $ matches only at the end of the piece (PCRE2_DOLLAR_ENDONLY), as in
** ECMAScript. Each piece is matched on its own: the regex sees nothing of
** its neighbours, as llama.cpp's regex_iterator over the piece does not.
** Matches and the text between them become pieces; after an empty match
** the search goes on as regex_iterator's does (a non-empty match at the same
** place, else from the next code point); empty pieces vanish (they make no
** tokens in llama.cpp either). Should PCRE2 give up on a piece (its match
** limit, on megabytes of backtracking where std::regex would overflow the
** stack), the rest of the piece stays one piece; running out of memory is
** KB_ENOMEM. */

/* The byte a code point of the given class stands for in collapsed text. */
static char bpe_collapse(uint32_t c, unsigned cls)
{
    if (c < 0x80) return (char)c;
    if (cls & BPE_C_SPACE) return 0x0B;
    if (cls & BPE_C_NUMBER) return (char)0xD1;
    if (cls & BPE_C_LETTER) return (char)0xD2;
    if (cls & BPE_C_PUNCT) return (char)0xD3;
    if (cls & BPE_C_MARK) return (char)0xD4;
    if (cls & BPE_C_SYMBOL) return (char)0xD5;
    return (char)0xD0;
}

/* The categories llama.cpp collapses (k_ucat_enum), with their byte and
** ASCII members (k_ucat_map), as bracket-expression text. */
static const struct {
    const char *name;
    const char *members;
} bpe_categories[] = {
    {"\\p{N}", "\xD1" "0-9"},
    {"\\p{L}", "\xD2" "A-Za-z"},
    {"\\p{P}", "\xD3" "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"},
    {"\\p{M}", "\xD4"},
    {"\\p{S}", "\xD5" "\\$\\+<->^`\\|\\~"},
    {"\\p{Lu}", "\xD2" "A-Za-z"},
    {"\\p{Ll}", "\xD2" "A-Za-z"},
    {"\\p{Lt}", "\xD2" "A-Za-z"},
    {"\\p{Lm}", "\xD2" "A-Za-z"},
    {"\\p{Lo}", "\xD2" "A-Za-z"},
};

#define BPE_N_CATEGORIES (sizeof bpe_categories / sizeof bpe_categories[0])

/* True when llama.cpp runs regex re on collapsed text. */
static bool bpe_regex_collapsed(const char *re)
{
    for (size_t i = 0; i < BPE_N_CATEGORIES; i++)
        if (strstr(re, bpe_categories[i].name)) return true;
    return false;
}

/* Writes into out (8 bytes per byte of re, plus 1) the pattern PCRE2 runs
** for llama.cpp's regex re: in collapsed mode each \p{X} becomes its
** members (in brackets when outside any), as llama.cpp's loop in
** unicode_regex_split does; otherwise re as it is. */
static void bpe_regex_translate(const char *re, bool collapsed, char *out)
{
    bool inside = false;
    size_t n = 0;
    for (size_t i = 0; re[i] != '\0'; i++) {
        if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) inside = true;
        else if (inside && re[i] == ']' && re[i - 1] != '\\') inside = false;
        const char *members = NULL;
        size_t skip = 0;
        for (size_t k = 0; collapsed && k < BPE_N_CATEGORIES && members == NULL; k++) {
            size_t len = strlen(bpe_categories[k].name);
            if (strncmp(re + i, bpe_categories[k].name, len) == 0) members = bpe_categories[k].members, skip = len;
        }
        if (members == NULL) {
            out[n++] = re[i];
            if (re[i] == '\\' && re[i + 1] != '\0') out[n++] = re[++i]; /* an escape stays whole */
            continue;
        }
        n += (size_t)sprintf(out + n, inside ? "%s" : "[%s]", members);
        i += skip - 1;
    }
    out[n] = '\0';
}

/* Returns the index of the code point whose match-text offset is off,
** inside piece [ini, end): bytes are code points in collapsed text; in
** UTF-8 the offsets of s->utf8_at are searched. */
static size_t bpe_match_cpt(const BpeSession *s, bool collapsed, size_t ini, size_t end, size_t off)
{
    if (collapsed) return ini + off;
    size_t lo = ini, hi = end, want = s->utf8_at[ini] + off;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->utf8_at[mid] < want) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Length of the code point that starts text[0..len) (len > 0): 1 in
** collapsed text, its UTF-8 length otherwise. */
static size_t bpe_match_step(const char *text, bool collapsed)
{
    unsigned char b = (unsigned char)text[0];
    return collapsed || b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

/* Splits piece [ini, end) into the matches of the stage's compiled regex
** and the text between them, searching as std::regex_iterator does. */
static int bpe_split_regex(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    const BpeStep *st = &s->steps[stage];
    PCRE2_SPTR text = (PCRE2_SPTR)(st->collapsed ? s->collapsed + ini : s->utf8 + s->utf8_at[ini]);
    size_t len = st->collapsed ? end - ini : s->utf8_at[end] - s->utf8_at[ini], pos = 0, gap = ini;
    uint32_t again = 0; /* after an empty match: a non-empty one right there */
    int rc = KB_OK;
    while (rc == KB_OK) {
        int m = pcre2_match(st->re, text, len, pos, PCRE2_NO_UTF_CHECK | again, s->match, NULL);
        if (m == PCRE2_ERROR_JIT_STACKLIMIT) /* same semantics, the interpreter has room */
            m = pcre2_match(st->re, text, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT | again, s->match, NULL);
        if (m == PCRE2_ERROR_NOMATCH && again != 0 && pos < len) {
            pos += bpe_match_step((const char *)text + pos, st->collapsed);
            again = 0;
            continue;
        }
        if (m == PCRE2_ERROR_NOMEMORY) return KB_ENOMEM;
        if (m < 0) break; /* no more matches, or PCRE2 gave up: the rest is one piece */
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->match); /* the next stages reuse s->match */
        size_t ca = bpe_match_cpt(s, st->collapsed, ini, end, ov[0]);
        size_t cb = bpe_match_cpt(s, st->collapsed, ini, end, ov[1]);
        again = ov[0] == ov[1] ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
        pos = ov[1];
        rc = bpe_emit(s, stage, gap, ca);
        if (rc == KB_OK) rc = bpe_emit(s, stage, ca, cb);
        gap = cb;
    }
    if (rc == KB_OK) rc = bpe_emit(s, stage, gap, end);
    return rc;
}

/* --- the rules: llama.cpp's regex lists (llm_tokenizer_bpe's constructor) --- */

/* The regexes llama.cpp's unicode_regex_split_custom recognizes by their
** text, and the splitters that port its code for them. */
#define BPE_RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define BPE_RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define BPE_RE_LLAMA3                                                                                                  \
    BPE_RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define BPE_RE_QWEN2                                                                                                   \
    BPE_RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define BPE_RE_QWEN35                                                                                                  \
    BPE_RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"     \
                        "\\s+(?!\\S)|\\s+"
#define BPE_RE_NEWLINES "[^\\n]+|[\\n]+"
/* DeepSeek V3 and AFMoE's main pattern: ASCII punctuation before ASCII
** letters, letters with their marks, symbol runs, then white space */
#define BPE_RE_DS3_TAIL                                                                                                \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+"
/* Tekken and GPT-4o: a word is upper case then lower case letters, or
** upper case letters (camelCase splits before the C); on collapsed text
** ((?=[\p{L}])([^a-z])) is "a letter but a-z" */
#define BPE_RE_UPPER_LOWER "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"
#define BPE_RE_UPPER "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"

static const struct {
    const char *regex;
    BpeStage split;
} bpe_custom[] = {
    {BPE_RE_GPT2, bpe_split_gpt2},
    {BPE_RE_LLAMA3, bpe_split_llama3},
    {BPE_RE_QWEN2, bpe_split_qwen2},
    {BPE_RE_QWEN35, bpe_split_qwen35},
    {"\\p{Han}+", bpe_split_kimi_k2},
    {"\\p{AFMoE_digits}", bpe_split_afmoe_digits},
    {"\\d{1,3}(?=(?:\\d{3})*\\b)", bpe_split_afmoe_digits},
    {BPE_RE_NEWLINES, bpe_split_newlines},
};

/* The regex list of each rule, in llama.cpp's order. */
static const char *const bpe_rules[BPE_PRE_COUNT][BPE_MAX_STAGES] = {
    [BPE_PRE_DEFAULT] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", BPE_RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
    [BPE_PRE_GPT2] = {BPE_RE_GPT2},
    [BPE_PRE_LLAMA3] = {BPE_RE_LLAMA3},
    [BPE_PRE_CHATGLM4] = {BPE_RE_LLAMA3},
    [BPE_PRE_JAIS2] = {BPE_RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                           "\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|"
                                           "\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"},
    [BPE_PRE_DEEPSEEK_LLM] =
        {"[\r\n]",
         "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
         "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
    [BPE_PRE_DEEPSEEK3] = {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", BPE_RE_DS3_TAIL "[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_SPARK2_5] = {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", BPE_RE_DS3_TAIL "|[\r\n]|\\s+(?!\\S)|\\s+", "\\p{N}"},
    [BPE_PRE_YOUTU] = {"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
                       "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
                       "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?"
                       "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
                       "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
                       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_DEEPSEEK_CODER] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
    [BPE_PRE_FALCON] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", BPE_RE_GPT2, "[0-9][0-9][0-9]"},
    [BPE_PRE_STARCODER] = {"\\p{N}", BPE_RE_GPT2},
    [BPE_PRE_QWEN2] = {BPE_RE_QWEN2},
    [BPE_PRE_QWEN35] = {BPE_RE_QWEN35},
    [BPE_PRE_BLOOM] = {" ?[^(\\s|.,!?…。，、।۔،)]+"},
    [BPE_PRE_VIKING] = {" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"},
    [BPE_PRE_TEKKEN] = {BPE_RE_UPPER_LOWER "|" BPE_RE_UPPER "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_CHAMELEON] = {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
                           "[\\p{P}!-/:-@\\[-`{-~]", BPE_RE_GPT2},
    [BPE_PRE_GPT4O] = {BPE_RE_UPPER_LOWER BPE_RE_CONTRACTIONS "?|" BPE_RE_UPPER BPE_RE_CONTRACTIONS
                       "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_GRANITE_EMB_MULTI] = {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+" BPE_RE_CONTRACTIONS
                                   "?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*" BPE_RE_CONTRACTIONS
                                   "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_TINY_AYA] = {"\\d{1,3}(?=(?:\\d{3})*\\b)",
                          "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" BPE_RE_CONTRACTIONS
                          "?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" BPE_RE_CONTRACTIONS
                          "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_KIMI_K2] = {"\\p{Han}+"},
    [BPE_PRE_SUPERBPE] = {"\\p{N}+", "(?=(\\d{3})+(?!\\d))"},
    [BPE_PRE_BAILINGMOE] = {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                            "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_SEED_CODER] = {BPE_RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|"
                                                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_UFAKZEKA] = {"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_AFMOE] = {"\\p{AFMoE_digits}", "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+",
                       BPE_RE_DS3_TAIL "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_LAGUNA] = {BPE_RE_NEWLINES, BPE_RE_QWEN2},
    [BPE_PRE_EXAONE_MOE] = {BPE_RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| "
                                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
    [BPE_PRE_MINICPM5] = {"\\p{N}{1,3}", BPE_RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                                             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

/* Returns llama.cpp's hand-written splitter for regex re, or NULL. */
static BpeStage bpe_custom_split(const char *re)
{
    for (size_t i = 0; i < sizeof bpe_custom / sizeof bpe_custom[0]; i++)
        if (strcmp(bpe_custom[i].regex, re) == 0) return bpe_custom[i].split;
    return NULL;
}

/* --- merging one pre-token --- */

/* Makes room for a pre-token of `bytes` UTF-8 bytes: its byte-level text
** (at most 2 bytes per byte), one symbol per byte and the lookup key (the
** heap grows as it is filled). Returns KB_OK or KB_ENOMEM (the old buffers
** stay valid). */
static int bpe_reserve(BpeSession *s, size_t bytes)
{
    if (bytes >= INT32_MAX / 2) return KB_ENOMEM; /* symbol indexes are int32_t */
    size_t need = 2 * bytes;
    if (need > s->word_cap) {
        size_t cap = s->word_cap ? s->word_cap : 256;
        while (cap < need) cap *= 2;
        char *word = realloc(s->word, cap);
        if (word != NULL) s->word = word;
        char *key = word ? realloc(s->key, cap + 1) : NULL;
        if (key != NULL) s->key = key;
        BpeSym *sym = key ? realloc(s->sym, cap / 2 * sizeof *sym) : NULL;
        if (sym == NULL) return KB_ENOMEM;
        s->sym = sym;
        s->word_cap = cap;
    }
    return KB_OK;
}

/* True when bigram a comes out of the queue before b: lower rank, then the
** leftmost, as llm_bigram_bpe::comparator orders them. */
static bool bpe_before(const BpeBigram *a, const BpeBigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int bpe_heap_push(BpeSession *s, BpeBigram g)
{
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
        if (cap > SIZE_MAX / sizeof *s->heap) return KB_ENOMEM;
        BpeBigram *h = realloc(s->heap, cap * sizeof *h);
        if (h == NULL) return KB_ENOMEM;
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0 && bpe_before(&g, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = g;
    return KB_OK;
}

/* Removes the first bigram of the non-empty heap into *g. */
static void bpe_heap_pop(BpeSession *s, BpeBigram *g)
{
    *g = s->heap[0];
    BpeBigram last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bpe_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bpe_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
}

/* Queues the merge of symbols left and right when "left right" is a merge
** (llm_tokenizer_bpe_session::add_new_bigram). Either index may be -1. */
static int bpe_add_bigram(BpeSession *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return KB_OK;
    const BpeSym *l = &s->sym[left], *r = &s->sym[right];
    memcpy(s->key, s->word + l->off, l->n);
    s->key[l->n] = ' ';
    memcpy(s->key + l->n + 1, s->word + r->off, r->n);
    int32_t rank = strmap_get(&s->t->merges, s->key, l->n + 1 + r->n);
    if (rank < 0) return KB_OK;
    return bpe_heap_push(s, (BpeBigram){rank, left, right, l->n + r->n});
}

/* Writes the byte-level text of code points [a, b) into s->word with one
** symbol per UTF-8 byte, chained; returns the number of symbols. Assumes
** bpe_reserve made room. */
static size_t bpe_build_word(BpeSession *s, size_t a, size_t b)
{
    size_t n = 0, w = 0;
    for (size_t p = a; p < b; p++) {
        unsigned char u[4];
        size_t k = bpe_utf8_put(s->cp[p] & BPE_CPT_MASK, u);
        for (size_t j = 0; j < k; j++, n++) {
            size_t len = bpe_utf8_put(bpe_byte_cpt(u[j]), (unsigned char *)s->word + w);
            s->sym[n] = (BpeSym){(int32_t)n - 1, (int32_t)n + 1, (uint32_t)w, (uint32_t)len};
            w += len;
        }
    }
    s->sym[n - 1].next = -1;
    return n;
}

/* Appends the id of text word[off..off+n), or, when the vocabulary lacks it,
** the ids of those of its single bytes that are tokens (llama.cpp's last
** resort, which drops the other bytes). */
static int bpe_push_symbol(BpeSession *s, uint32_t off, uint32_t n)
{
    const StrMap *vocab = &s->t->text_to_id;
    int32_t id = strmap_get(vocab, s->word + off, n);
    if (id >= 0) return kb_tokens_push(s->out, id);
    for (uint32_t j = 0; j < n; j++) {
        id = strmap_get(vocab, s->word + off + j, 1);
        if (id >= 0 && kb_tokens_push(s->out, id) != KB_OK) return KB_ENOMEM;
    }
    return KB_OK;
}

/* Merges symbols by rank until no queued merge applies. A bigram is stale
** when one side was merged away or changed size since it was queued. */
static int bpe_merge(BpeSession *s, size_t n_sym)
{
    int rc = KB_OK;
    s->heap_n = 0;
    for (size_t i = 1; i < n_sym && rc == KB_OK; i++) rc = bpe_add_bigram(s, (int32_t)i - 1, (int32_t)i);
    while (s->heap_n > 0 && rc == KB_OK) {
        BpeBigram g;
        bpe_heap_pop(s, &g);
        BpeSym *l = &s->sym[g.left], *r = &s->sym[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = g.left;
        rc = bpe_add_bigram(s, l->prev, g.left);
        if (rc == KB_OK) rc = bpe_add_bigram(s, g.left, l->next);
    }
    return rc;
}

/* Tokenizes pre-token [a, b) of the code points and appends its ids. With
** ignore_merges, a pre-token that is a token as a whole is that token. */
static int bpe_word(BpeSession *s, size_t a, size_t b)
{
    size_t bytes = 0;
    for (size_t p = a; p < b; p++) bytes += bpe_utf8_len(s->cp[p] & BPE_CPT_MASK);
    int rc = bpe_reserve(s, bytes);
    if (rc != KB_OK) return rc;
    size_t n_sym = bpe_build_word(s, a, b);
    const BpeSym *last = &s->sym[n_sym - 1];
    if (s->t->ignore_merges) {
        int32_t id = strmap_get(&s->t->text_to_id, s->word, last->off + last->n);
        if (id >= 0) return kb_tokens_push(s->out, id);
    }
    rc = bpe_merge(s, n_sym);
    for (int32_t i = 0; i >= 0 && rc == KB_OK; i = s->sym[i].next) rc = bpe_push_symbol(s, s->sym[i].off, s->sym[i].n);
    return rc;
}

/* --- entry points --- */

/* Decodes text into s->cp (code point and class each). Returns the count. */
static size_t bpe_decode(BpeSession *s, const char *text, size_t len)
{
    const unsigned char *u = (const unsigned char *)text;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c = u[i] < 0x80 ? u[i++] : bpe_utf8_next(u, len, &i);
        s->cp[n++] = c | (uint32_t)bpe_class(c) << BPE_CLASS_SHIFT;
    }
    return n;
}

/* Fills s->steps from the tokenizer's rule: each regex either one of
** llama.cpp's hand-written splitters or the one compiled at load. */
static void bpe_steps(BpeSession *s)
{
    const char *const *rule = bpe_rules[s->t->pre];
    for (s->n_stages = 0; s->n_stages < BPE_MAX_STAGES && rule[s->n_stages]; s->n_stages++) {
        BpeStep *st = &s->steps[s->n_stages];
        st->split = bpe_custom_split(rule[s->n_stages]);
        if (st->split != NULL) continue;
        st->split = bpe_split_regex;
        st->re = s->t->bpe_regex[s->n_stages];
        st->collapsed = bpe_regex_collapsed(rule[s->n_stages]);
        assert(st->re != NULL); /* tok_bpe_set_rule compiled it */
    }
}

/* Makes the match texts the regex stages need for the n code points of
** s->cp: the collapsed bytes, or the UTF-8 text (other White_Space as \v,
** surrogates as U+FFFD) with the offset of each code point. Returns KB_OK or
** KB_ENOMEM. */
static int bpe_match_texts(BpeSession *s, size_t n)
{
    bool need_collapsed = false, need_utf8 = false;
    for (unsigned k = 0; k < s->n_stages; k++) {
        if (s->steps[k].re != NULL && s->steps[k].collapsed) need_collapsed = true;
        if (s->steps[k].re != NULL && !s->steps[k].collapsed) need_utf8 = true;
    }
    if ((need_collapsed || need_utf8) && (s->match = pcre2_match_data_create(1, NULL)) == NULL) return KB_ENOMEM;
    if (need_collapsed) {
        if ((s->collapsed = malloc(n)) == NULL) return KB_ENOMEM;
        for (size_t p = 0; p < n; p++) s->collapsed[p] = bpe_collapse(s->cp[p] & BPE_CPT_MASK, s->cp[p] >> BPE_CLASS_SHIFT);
    }
    if (!need_utf8) return KB_OK;
    if (n >= SIZE_MAX / 4 / sizeof *s->utf8_at) return KB_ENOMEM;
    s->utf8 = malloc(4 * n);
    s->utf8_at = malloc((n + 1) * sizeof *s->utf8_at);
    if (s->utf8 == NULL || s->utf8_at == NULL) return KB_ENOMEM;
    size_t w = 0;
    for (size_t p = 0; p < n; p++) {
        uint32_t c = s->cp[p] & BPE_CPT_MASK;
        if (c > 0x7F && (s->cp[p] >> BPE_CLASS_SHIFT & BPE_C_SPACE)) c = 0x0B;
        if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;
        s->utf8_at[p] = w;
        w += bpe_utf8_put(c, (unsigned char *)s->utf8 + w);
    }
    s->utf8_at[n] = w;
    return KB_OK;
}

/* See tok_internal.h. Allocates 4 bytes per input byte for the code points
** (up to 4 + 8 more per code point for the regex texts), plus buffers for
** the longest pre-token, all freed before returning; a failure part-way
** leaves the ids appended so far in out. */
int tok_bpe_encode(const Tokenizer *t, const char *text, size_t len, KbTokens *out)
{
    if (len == 0) return KB_OK;
    if (len > SIZE_MAX / sizeof(uint32_t)) return KB_ENOMEM;
    BpeSession s = {.t = t, .out = out};
    bpe_steps(&s);
    s.cp = malloc(len * sizeof *s.cp);
    int rc = s.cp ? KB_OK : KB_ENOMEM;
    size_t n = 0;
    if (rc == KB_OK) {
        n = bpe_decode(&s, text, len);
        rc = bpe_match_texts(&s, n);
    }
    if (rc == KB_OK) rc = s.steps[0].split(&s, 0, n, 0);
    free(s.cp);
    free(s.collapsed);
    free(s.utf8);
    free(s.utf8_at);
    pcre2_match_data_free(s.match);
    free(s.word);
    free(s.key);
    free(s.sym);
    free(s.heap);
    return rc;
}

/* --- loading --- */

/* tokenizer.ggml.pre values, as llama_vocab::impl::load maps them to
** LLAMA_VOCAB_PRE_TYPE_* (names whose types share a regex list share a
** rule here), and whether llama.cpp skips merging for a pre-token that is a
** token (ignore_merges). */
static const struct {
    const char *name;
    BpePre pre;
    bool ignore_merges;
} bpe_pre_names[] = {
    {"default", BPE_PRE_DEFAULT, false},
    {"minicpm5", BPE_PRE_MINICPM5, true},
    {"llama3", BPE_PRE_LLAMA3, true},
    {"llama-v3", BPE_PRE_LLAMA3, true},
    {"llama-bpe", BPE_PRE_LLAMA3, true},
    {"falcon3", BPE_PRE_LLAMA3, true},
    {"falcon-h1", BPE_PRE_LLAMA3, true},
    {"pixtral", BPE_PRE_LLAMA3, true},
    {"midm-2.0", BPE_PRE_LLAMA3, true},
    {"lfm2", BPE_PRE_LLAMA3, true},
    {"jina-v5-nano", BPE_PRE_LLAMA3, true},
    {"deepseek-llm", BPE_PRE_DEEPSEEK_LLM, false},
    {"deepseek-coder", BPE_PRE_DEEPSEEK_CODER, false},
    {"deepseek-v3", BPE_PRE_DEEPSEEK3, false},
    {"spark2_5", BPE_PRE_SPARK2_5, false},
    {"youtu", BPE_PRE_YOUTU, true},
    {"falcon", BPE_PRE_FALCON, false},
    {"mpt", BPE_PRE_GPT2, false},
    {"starcoder", BPE_PRE_STARCODER, false},
    {"gpt-2", BPE_PRE_GPT2, false},
    {"phi-2", BPE_PRE_GPT2, false},
    {"jina-es", BPE_PRE_GPT2, false},
    {"jina-de", BPE_PRE_GPT2, false},
    {"gigachat", BPE_PRE_GPT2, false},
    {"jina-v2-es", BPE_PRE_GPT2, false},
    {"jina-v2-de", BPE_PRE_GPT2, false},
    {"a.x-4.0", BPE_PRE_GPT2, false},
    {"mellum", BPE_PRE_GPT2, false},
    {"modern-bert", BPE_PRE_GPT2, false},
    {"jais-2", BPE_PRE_JAIS2, false},
    {"jina-v1-en", BPE_PRE_GPT2, false},
    {"jina-v2-code", BPE_PRE_GPT2, false},
    {"roberta-bpe", BPE_PRE_GPT2, false},
    {"refact", BPE_PRE_STARCODER, false},
    {"command-r", BPE_PRE_STARCODER, false},
    {"qwen2", BPE_PRE_QWEN2, false},
    {"deepseek-r1-qwen", BPE_PRE_QWEN2, false},
    {"kormo", BPE_PRE_QWEN2, false},
    {"f2llmv2", BPE_PRE_QWEN2, false},
    {"qwen35", BPE_PRE_QWEN35, false},
    {"stablelm2", BPE_PRE_QWEN2, false},
    {"olmo", BPE_PRE_GPT2, false},
    {"dbrx", BPE_PRE_LLAMA3, false},
    {"smaug-bpe", BPE_PRE_LLAMA3, false},
    {"poro-chat", BPE_PRE_BLOOM, false},
    {"glm4", BPE_PRE_CHATGLM4, false},
    {"chatglm-bpe", BPE_PRE_CHATGLM4, false},
    {"viking", BPE_PRE_VIKING, false},
    {"jais", BPE_PRE_GPT2, false},
    {"tekken", BPE_PRE_TEKKEN, true},
    {"smollm", BPE_PRE_STARCODER, false},
    {"codeshell", BPE_PRE_STARCODER, false},
    {"bloom", BPE_PRE_BLOOM, false},
    {"gpt3-finnish", BPE_PRE_BLOOM, false},
    {"exaone", BPE_PRE_STARCODER, false},
    {"exaone4", BPE_PRE_GPT2, false},
    {"exaone-moe", BPE_PRE_EXAONE_MOE, false},
    {"chameleon", BPE_PRE_CHAMELEON, false},
    {"minerva-7b", BPE_PRE_STARCODER, false},
    {"megrez", BPE_PRE_QWEN2, false},
    {"gpt-4o", BPE_PRE_GPT4O, false},
    {"llama4", BPE_PRE_GPT4O, false},
    {"kanana2", BPE_PRE_GPT4O, false},
    {"talkie", BPE_PRE_GPT4O, false},
    {"granite-embed-multi-97m", BPE_PRE_GRANITE_EMB_MULTI, true},
    {"tiny_aya", BPE_PRE_TINY_AYA, false},
    {"cohere2moe", BPE_PRE_TINY_AYA, false},
    {"superbpe", BPE_PRE_SUPERBPE, false},
    {"trillion", BPE_PRE_GPT2, false},
    {"granite-docling", BPE_PRE_GPT2, false},
    {"bailingmoe", BPE_PRE_BAILINGMOE, false},
    {"bailingmoe2", BPE_PRE_BAILINGMOE, false},
    {"llada-moe", BPE_PRE_BAILINGMOE, false},
    {"seed-coder", BPE_PRE_SEED_CODER, false},
    {"hunyuan", BPE_PRE_QWEN2, false},
    {"hunyuan-dense", BPE_PRE_DEEPSEEK3, false},
    {"hy_v4", BPE_PRE_DEEPSEEK3, false},
    {"joyai-llm", BPE_PRE_DEEPSEEK3, false},
    {"kimi-k2", BPE_PRE_KIMI_K2, false},
    {"ufakzeka", BPE_PRE_UFAKZEKA, false},
    {"grok-2", BPE_PRE_QWEN2, false},
    {"afmoe", BPE_PRE_AFMOE, false},
    {"laguna", BPE_PRE_LAGUNA, false},
    {"minimax-m2", BPE_PRE_GPT4O, false},
    {"solar-open", BPE_PRE_QWEN2, false},
    {"mellum2", BPE_PRE_STARCODER, false},
};

/* Names llama.cpp knows for SentencePiece-style BPE over raw UTF-8 (its
** byte_encode = false), which kbchat does not implement. */
static const char *const bpe_raw_utf8_names[] = {"gemma4", "granite-embed-multi-311m", "sarvam-moe", "whitespace"};

/* Copies at most 40 bytes of name into buf for a message, control
** characters shown as '?'. */
static void bpe_printable(const char *name, size_t len, char *buf, size_t cap)
{
    size_t n = len < 40 ? len : 40;
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)name[i] < 0x20 || name[i] == 0x7F ? '?' : name[i];
    buf[n] = '\0';
}

/* See tok_internal.h. A regex PCRE2 refuses is our bug, not the file's:
** the message says so. */
int tok_bpe_set_rule(Tokenizer *t, BpePre pre, char *err, size_t errlen)
{
    tok_bpe_free(t);
    t->pre = pre;
    for (unsigned k = 0; k < BPE_MAX_STAGES && bpe_rules[pre][k]; k++) {
        const char *re = bpe_rules[pre][k];
        if (bpe_custom_split(re) != NULL) continue;
        bool collapsed = bpe_regex_collapsed(re);
        char *pattern = malloc(8 * strlen(re) + 1);
        if (pattern == NULL) return kb_error(err, errlen, KB_ENOMEM, "out of memory compiling the pre-tokenizer");
        bpe_regex_translate(re, collapsed, pattern);
        int code = 0;
        PCRE2_SIZE at = 0;
        uint32_t options = PCRE2_DOLLAR_ENDONLY | PCRE2_NO_AUTO_CAPTURE | (collapsed ? 0 : PCRE2_UTF);
        t->bpe_regex[k] = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &at, NULL);
        free(pattern);
        if (t->bpe_regex[k] != NULL) pcre2_jit_compile(t->bpe_regex[k], PCRE2_JIT_COMPLETE); /* else interpreted */
        if (t->bpe_regex[k] == NULL) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(code, msg, sizeof msg);
            tok_bpe_free(t);
            return kb_error(err, errlen, KB_EFORMAT, "pre-tokenizer regex %u of rule %d does not compile (a bug): %s", k,
                            (int)pre, (const char *)msg);
        }
    }
    return KB_OK;
}

/* See tok_internal.h. */
void tok_bpe_free(Tokenizer *t)
{
    for (unsigned k = 0; k < BPE_MAX_STAGES; k++) {
        pcre2_code_free(t->bpe_regex[k]);
        t->bpe_regex[k] = NULL;
    }
}

/* Sets t's rule and ignore_merges from tokenizer.ggml.pre (a string when
** present). A missing key means llama.cpp's default rule. A name llama.cpp
** does not know is refused, as llama.cpp refuses it ("unknown pre-tokenizer
** type"), and so are its raw UTF-8 BPE names. Returns KB_OK or KB_EFORMAT
** (err says which name and why). */
static int bpe_load_pre(Tokenizer *t, const GgufFile *g, char *err, size_t errlen)
{
    const char *name;
    size_t len;
    char shown[48];
    t->ignore_merges = false;
    int rc = gguf_get_str(g, "tokenizer.ggml.pre", &name, &len);
    if (rc == KB_ENOTFOUND) return tok_bpe_set_rule(t, BPE_PRE_DEFAULT, err, errlen);
    if (rc != KB_OK) return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.pre must be a string");
    for (size_t i = 0; i < sizeof bpe_pre_names / sizeof bpe_pre_names[0]; i++) {
        if (strlen(bpe_pre_names[i].name) == len && memcmp(bpe_pre_names[i].name, name, len) == 0) {
            t->ignore_merges = bpe_pre_names[i].ignore_merges;
            return tok_bpe_set_rule(t, bpe_pre_names[i].pre, err, errlen);
        }
    }
    bpe_printable(name, len, shown, sizeof shown);
    for (size_t i = 0; i < sizeof bpe_raw_utf8_names / sizeof bpe_raw_utf8_names[0]; i++) {
        if (strlen(bpe_raw_utf8_names[i]) == len && memcmp(bpe_raw_utf8_names[i], name, len) == 0) {
            return kb_error(err, errlen, KB_EFORMAT,
                            "tokenizer.ggml.pre '%s' is BPE over raw UTF-8, which kbchat does not support", shown);
        }
    }
    return kb_error(err, errlen, KB_EFORMAT,
                    "unknown pre-tokenizer '%s' in tokenizer.ggml.pre (llama.cpp refuses it too): "
                    "convert the model again with a current llama.cpp",
                    shown);
}

/* Finds tokenizer.ggml.merges, checks that it is an array of strings each
** holding a space after its first byte, and sets *n and *bytes (the sum of
** their lengths plus one per merge). Returns KB_OK or KB_EFORMAT. */
static int bpe_check_merges(const GgufFile *g, int64_t *key, uint64_t *n, size_t *bytes, char *err, size_t errlen)
{
    GgufValueType type;
    *key = gguf_find_key(g, "tokenizer.ggml.merges");
    if (*key < 0)
        return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges is missing (a gpt2 tokenizer needs it)");
    if (gguf_kv_get_arr(g, *key, &type, n) != KB_OK || type != GGUF_VT_STRING)
        return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges must be an array of strings");
    if (*n > INT32_MAX) {
        return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges has %llu merges (at most %d)",
                        (unsigned long long)*n, INT32_MAX);
    }
    *bytes = 0;
    for (uint64_t i = 0; i < *n; i++) {
        const char *m;
        size_t len;
        if (gguf_arr_get_str(g, *key, i, &m, &len) != KB_OK) {
            return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges[%llu] cannot be read",
                            (unsigned long long)i);
        }
        if (len < 2 || memchr(m + 1, ' ', len - 1) == NULL) { /* llama.cpp: word.find(' ', 1) */
            char shown[48];
            bpe_printable(m, len, shown, sizeof shown);
            return kb_error(err, errlen, KB_EFORMAT,
                            "tokenizer.ggml.merges[%llu] '%s' has no space between its two parts",
                            (unsigned long long)i, shown);
        }
        if (len > SIZE_MAX - 1 - *bytes) return kb_error(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges is too large");
        *bytes += len + 1;
    }
    return KB_OK;
}

/* See tok_internal.h. Everything is checked before anything is allocated;
** t->merge_arena and t->merges are left for tokenizer_free on success and
** freed (or never allocated) on failure. */
int tok_bpe_load(Tokenizer *t, const GgufFile *g, char *err, size_t errlen)
{
    int64_t key = -1;
    uint64_t n = 0;
    size_t bytes = 0;
    int rc = bpe_check_merges(g, &key, &n, &bytes, err, errlen);
    if (rc == KB_OK) rc = bpe_load_pre(t, g, err, errlen);
    if (rc != KB_OK) return rc;
    t->merge_arena = malloc(bytes ? bytes : 1);
    if (t->merge_arena == NULL || strmap_init(&t->merges, (size_t)n) != KB_OK) {
        free(t->merge_arena);
        t->merge_arena = NULL;
        return kb_error(err, errlen, KB_ENOMEM, "out of memory reading tokenizer.ggml.merges (%llu merges)",
                        (unsigned long long)n);
    }
    /* Keys are the merge strings as stored, "left right": the pair llama.cpp
    ** splits at the first space after byte 0 joins back to the same text, and
    ** pre-token symbols never hold a space, so lookups agree. A repeated
    ** merge keeps its first rank, as std::map::emplace does. */
    char *p = t->merge_arena;
    for (uint64_t i = 0; i < n; i++) {
        const char *m;
        size_t len;
        gguf_arr_get_str(g, key, i, &m, &len);
        memcpy(p, m, len);
        p[len] = '\0';
        if (strmap_get(&t->merges, p, len) < 0) strmap_put(&t->merges, p, len, (int32_t)i);
        p += len + 1;
    }
    return KB_OK;
}
