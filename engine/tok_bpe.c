/*
** tok_bpe.c: byte-level BPE (tokenizer.ggml.model "gpt2"), as llama.cpp
** (src/llama-vocab.cpp and src/unicode.cpp, February 2025) does it, id for id.
**
** Encoding a raw text fragment goes through four steps:
**
**   1. decode   UTF-8 to code points the way unicode_cpts_from_utf8 does:
**               overlong forms and surrogates are accepted (and re-encoded
**               in their shortest form later); a byte that starts no valid
**               sequence becomes U+FFFD and decoding resumes at the next
**               byte. Each code point is stored with its character class
**               (letter, number, white space, other).
**   2. split    the code points into pre-tokens with the rule of
**               tokenizer.ggml.pre. A rule is a pipeline of stages; each
**               stage splits every piece the previous one produced, as
**               unicode_regex_split applies its list of regexes. The GPT-2
**               and LLaMA 3 stages port llama.cpp's hand-written splitters;
**               the others implement what std::regex does with llama.cpp's
**               regex strings (see "pre-tokenizer rules" below).
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
** threads. Buffers are sized once per pre-token at most (grown, never per
** character), and the whole pipeline is linear in the input except the
** merge loop (n log n per pre-token).
**
** Unicode classes: letters are GLib's Lu Ll Lt Lm Lo, numbers Nd Nl No, and
** white space the 25 code points of Unicode's White_Space property, which is
** what llama.cpp's tables (scripts/gen-unicode-data.py) hold. Everything
** else, unassigned code points included, is "other" (llama.cpp files them
** under \p{C}).
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/tok_internal.h"

/* --- character classes --- */

enum {
    BPE_C_DEF = 1,    /* any code point: llama.cpp's flags are never 0 inside a piece */
    BPE_C_LETTER = 2, /* \p{L} */
    BPE_C_NUMBER = 4, /* \p{N} */
    BPE_C_SPACE = 8,  /* \s: White_Space */
    BPE_C_PUNCT = 16  /* \p{P} */
};

#define BPE_CPT_MASK 0xFFFFFFu
#define BPE_CLASS_SHIFT 24
#define BPE_OUT_OF_RANGE 0xFFFFFFFFu /* llama.cpp's OUT_OF_RANGE: "no code point here" */

/* Classes of the ASCII code points: letters, digits, \t \n \v \f \r and
** space as white space, the printable characters but $+<=>^`|~ as
** punctuation; the rest is "other". */
static unsigned bpe_ascii_class(uint32_t c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) return BPE_C_DEF | BPE_C_LETTER;
    if (c >= '0' && c <= '9') return BPE_C_DEF | BPE_C_NUMBER;
    if ((c >= 0x09 && c <= 0x0D) || c == 0x20) return BPE_C_DEF | BPE_C_SPACE;
    if (c >= 0x21 && c <= 0x7E && !memchr("$+<=>^`|~", (int)c, 9)) return BPE_C_DEF | BPE_C_PUNCT;
    return BPE_C_DEF;
}

/* True for the non-ASCII White_Space code points. GLib's g_unichar_isspace
** differs (it has no U+0085 and counts other separators), hence the list. */
static bool bpe_is_wide_space(uint32_t c)
{
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Returns the BPE_C_* class bits of code point c. */
static unsigned bpe_class(uint32_t c)
{
    if (c < 0x80) return bpe_ascii_class(c);
    if (bpe_is_wide_space(c)) return BPE_C_DEF | BPE_C_SPACE;
    switch (g_unichar_type(c)) {
    case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER: return BPE_C_DEF | BPE_C_LETTER;
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER: return BPE_C_DEF | BPE_C_NUMBER;
    case G_UNICODE_CONNECT_PUNCTUATION:
    case G_UNICODE_DASH_PUNCTUATION:
    case G_UNICODE_OPEN_PUNCTUATION:
    case G_UNICODE_CLOSE_PUNCTUATION:
    case G_UNICODE_INITIAL_PUNCTUATION:
    case G_UNICODE_FINAL_PUNCTUATION:
    case G_UNICODE_OTHER_PUNCTUATION: return BPE_C_DEF | BPE_C_PUNCT;
    default: return BPE_C_DEF;
    }
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

struct BpeSession {
    const Tokenizer *t;
    KbTokens *out;
    uint32_t *cp;           /* code point | class << BPE_CLASS_SHIFT, for the whole text */
    const BpeStage *stages; /* the pre-tokenizer rule */
    unsigned n_stages;
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
    if (stage + 1 < s->n_stages) return s->stages[stage + 1](s, a, b, stage + 1);
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

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
** A line-by-line port of unicode_regex_split_custom_gpt2. */
static int bpe_split_gpt2(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    BpeCut cut = {s, stage, ini, KB_OK};
    const unsigned word = BPE_C_SPACE | BPE_C_LETTER | BPE_C_NUMBER;
    size_t pos = ini;
    while (pos < end && cut.rc == KB_OK) {
        uint32_t c = bpe_cpt(s, pos, end);
        unsigned f = bpe_cls(s, pos, end);
        if (c == '\'' && pos + 1 < end) { /* 's|'t|'re|'ve|'m|'ll|'d */
            uint32_t n1 = bpe_cpt(s, pos + 1, end);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += bpe_cut(&cut, pos + 2);
                continue;
            }
            if (pos + 2 < end) {
                uint32_t n2 = bpe_cpt(s, pos + 2, end);
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    pos += bpe_cut(&cut, pos + 3);
                    continue;
                }
            }
        }
        unsigned f2 = c == ' ' ? bpe_cls(s, pos + 1, end) : f;
        if (f2 & BPE_C_LETTER) { /* <space>?\p{L}+ */
            pos += c == ' ';
            while (f2 & BPE_C_LETTER) f2 = bpe_cls(s, ++pos, end);
            bpe_cut(&cut, pos);
            continue;
        }
        if (f2 & BPE_C_NUMBER) { /* <space>?\p{N}+ */
            pos += c == ' ';
            while (f2 & BPE_C_NUMBER) f2 = bpe_cls(s, ++pos, end);
            bpe_cut(&cut, pos);
            continue;
        }
        if (!(f2 & word) && f2) { /* <space>?[^\s\p{L}\p{N}]+ */
            pos += c == ' ';
            while (!(f2 & word) && f2) f2 = bpe_cls(s, ++pos, end);
            bpe_cut(&cut, pos);
            continue;
        }
        size_t nws = 0;
        while (bpe_cls(s, pos + nws, end) & BPE_C_SPACE) nws++;
        if (nws > 1 && pos + nws < end) { /* \s+(?!\S) */
            pos += nws - 1;
            bpe_cut(&cut, pos);
            continue;
        }
        if (nws > 0) { /* \s+ */
            pos += nws;
            bpe_cut(&cut, pos);
            continue;
        }
        bpe_cut(&cut, ++pos); /* no match */
    }
    return cut.rc;
}

/* ASCII lower case; llama.cpp's unicode_tolower maps no other code point to
** one of the letters the contractions test. */
static uint32_t bpe_lower(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* LLaMA 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
**          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
** A line-by-line port of unicode_regex_split_custom_llama3, with digit runs
** cut every max_digits code points (3 for LLaMA 3; Qwen2's \p{N} is 1).
** That Qwen2 goes through std::regex in llama.cpp changes nothing: with
** every code point classed, the regex and this code agree case by case. */
static int bpe_split_llama3_like(BpeSession *s, size_t ini, size_t end, unsigned stage, size_t max_digits)
{
    BpeCut cut = {s, stage, ini, KB_OK};
    const unsigned word = BPE_C_SPACE | BPE_C_LETTER | BPE_C_NUMBER;
    size_t pos = ini;
    while (pos < end && cut.rc == KB_OK) {
        uint32_t c = bpe_cpt(s, pos, end);
        unsigned f = bpe_cls(s, pos, end);
        if (c == '\'' && pos + 1 < end) { /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
            uint32_t n1 = bpe_lower(bpe_cpt(s, pos + 1, end));
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += bpe_cut(&cut, pos + 2);
                continue;
            }
            if (pos + 2 < end) {
                uint32_t n2 = bpe_lower(bpe_cpt(s, pos + 2, end));
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    pos += bpe_cut(&cut, pos + 3);
                    continue;
                }
            }
        }
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (!(c == '\r' || c == '\n' || (f & BPE_C_NUMBER)) &&
            ((f & BPE_C_LETTER) || (bpe_cls(s, pos + 1, end) & BPE_C_LETTER))) {
            pos++;
            while (bpe_cls(s, pos, end) & BPE_C_LETTER) pos++;
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
            pos += c == ' ';
            while (!(f2 & word) && f2) f2 = bpe_cls(s, ++pos, end);
            uint32_t c2 = bpe_cpt(s, pos, end);
            while (c2 == '\r' || c2 == '\n') c2 = bpe_cpt(s, ++pos, end);
            bpe_cut(&cut, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (bpe_cls(s, pos + nws, end) & BPE_C_SPACE) {
            uint32_t c2 = bpe_cpt(s, pos + nws, end);
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { /* \s*[\r\n]+ */
            pos = last_rn;
            bpe_cut(&cut, pos);
            continue;
        }
        if (nws > 1 && pos + nws < end) { /* \s+(?!\S) */
            pos += nws - 1;
            bpe_cut(&cut, pos);
            continue;
        }
        if (nws > 0) { /* \s+ */
            pos += nws;
            bpe_cut(&cut, pos);
            continue;
        }
        bpe_cut(&cut, ++pos); /* no match */
    }
    return cut.rc;
}

static int bpe_split_llama3(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_llama3_like(s, ini, end, stage, 3);
}

static int bpe_split_qwen2(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_llama3_like(s, ini, end, stage, 1);
}

/* --- pre-tokenizer rules: what std::regex does with llama.cpp's regexes ---
**
** llama.cpp runs these with std::wregex over the code points (non-ASCII
** white space replaced by U+000B, so \s is exactly White_Space and such a
** character matches no other class) or, for \p{N}, with std::regex over a
** text where every non-ASCII code point is collapsed to a byte naming its
** class. Matches are searched leftmost-first (ECMAScript); the text between
** two matches becomes a piece of its own, like each match. None of these
** patterns can match the empty string, and each fails at a position after
** looking at one or two code points, so the search is linear. */

/* Returns the end of the match that starts at i, or i when none does. */
typedef size_t (*BpeMatcher)(const BpeSession *s, size_t i, size_t end);

/* Splits [ini, end) into matches of m and the gaps between them. */
static int bpe_split_matches(BpeSession *s, size_t ini, size_t end, unsigned stage, BpeMatcher m)
{
    size_t gap = ini, i = ini;
    int rc = KB_OK;
    while (i < end && rc == KB_OK) {
        size_t j = m(s, i, end);
        if (j == i) {
            i++;
            continue;
        }
        if (gap < i) rc = bpe_emit(s, stage, gap, i);
        if (rc == KB_OK) rc = bpe_emit(s, stage, i, j);
        i = gap = j;
    }
    if (rc == KB_OK && gap < end) rc = bpe_emit(s, stage, gap, end);
    return rc;
}

/* An inclusive range of code points. */
typedef struct BpeRange {
    uint32_t lo, hi;
} BpeRange;

/* True when c lies in one of the n sorted, disjoint ranges r. */
static bool bpe_in_ranges(uint32_t c, const BpeRange *r, size_t n)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo) hi = mid;
        else if (c > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

/* True when the code point at p (inside the piece) is not white space and
** lies in ranges r: a bracket expression of the wregex path. */
static bool bpe_at_class(const BpeSession *s, size_t p, size_t end, const BpeRange *r, size_t n)
{
    return p < end && !(bpe_cls(s, p, end) & BPE_C_SPACE) && bpe_in_ranges(bpe_cpt(s, p, end), r, n);
}

/* Matches \s?[r]+ at i. \s? is greedy but gives its character back when
** no class character follows; a white space character is never in r. */
static size_t bpe_match_space_run(const BpeSession *s, size_t i, size_t end, const BpeRange *r, size_t n)
{
    size_t j = i;
    if ((bpe_cls(s, i, end) & BPE_C_SPACE) && bpe_at_class(s, i + 1, end, r, n)) j = i + 1;
    else if (!bpe_at_class(s, i, end, r, n)) return i;
    while (bpe_at_class(s, j, end, r, n)) j++;
    return j;
}

/* DeepSeek LLM, regex 1: [\r\n] */
static size_t bpe_match_crlf(const BpeSession *s, size_t i, size_t end)
{
    uint32_t c = bpe_cpt(s, i, end);
    return c == '\r' || c == '\n' ? i + 1 : i;
}

/* The bracket expression of DeepSeek LLM's regex 2, as code points (the
** cased letters of Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee,
** Glagolitic, Coptic, Deseret, Osage, Old Hungarian, Warang Citi, Adlam and
** the letterlike and fullwidth forms). */
static const BpeRange bpe_ds_latin[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D},
    {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5},
    {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A},
    {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57},
    {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4},
    {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102},
    {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124},
    {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139},
    {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B},
    {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06},
    {0xFB13, 0xFB17}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3},
    {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

/* DeepSeek LLM, regex 2: \s?[A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃]+ */
static size_t bpe_match_ds_latin(const BpeSession *s, size_t i, size_t end)
{
    return bpe_match_space_run(s, i, end, bpe_ds_latin, sizeof bpe_ds_latin / sizeof bpe_ds_latin[0]);
}

/* DeepSeek LLM, regex 3: \s?[!-/:-~！-／：-～‘-‟　-。]+ (U+3000 is white
** space, so only its \s side can match). */
static const BpeRange bpe_ds_punct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0x2018, 0x201F}, {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};

static size_t bpe_match_ds_punct(const BpeSession *s, size_t i, size_t end)
{
    return bpe_match_space_run(s, i, end, bpe_ds_punct, sizeof bpe_ds_punct / sizeof bpe_ds_punct[0]);
}

/* DeepSeek LLM, regex 4: \s+$ matches the white space ending the piece ($ is
** the end of the piece: each piece is its own target sequence). Computed
** from the end, which is what the leftmost search finds. */
static int bpe_split_trailing_space(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    size_t q = end;
    while (q > ini && (bpe_cls(s, q - 1, end) & BPE_C_SPACE)) q--;
    int rc = bpe_emit(s, stage, ini, q);
    if (rc == KB_OK) rc = bpe_emit(s, stage, q, end);
    return rc;
}

/* DeepSeek LLM, regex 5: [一-龥ࠀ-一가-퟿]+ */
static const BpeRange bpe_ds_cjk[] = {{0x800, 0x9FA5}, {0xAC00, 0xD7FF}};

static size_t bpe_match_ds_cjk(const BpeSession *s, size_t i, size_t end)
{
    size_t j = i;
    while (bpe_at_class(s, j, end, bpe_ds_cjk, 2)) j++;
    return j;
}

/* \p{N}+ (DeepSeek LLM, regex 6) */
static size_t bpe_match_numbers(const BpeSession *s, size_t i, size_t end)
{
    size_t j = i;
    while (bpe_cls(s, j, end) & BPE_C_NUMBER) j++;
    return j;
}

static int bpe_split_crlf(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_matches(s, ini, end, stage, bpe_match_crlf);
}

static int bpe_split_ds_latin(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_matches(s, ini, end, stage, bpe_match_ds_latin);
}

static int bpe_split_ds_punct(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_matches(s, ini, end, stage, bpe_match_ds_punct);
}

static int bpe_split_ds_cjk(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_matches(s, ini, end, stage, bpe_match_ds_cjk);
}

static int bpe_split_numbers(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_matches(s, ini, end, stage, bpe_match_numbers);
}

/* The characters BLOOM's [^(\s|.,!?…。，、।۔،)] excludes, white space aside:
** ( ) | . , ! ? … 。 ， 、 । ۔ ، */
static const BpeRange bpe_bloom_stop[] = {
    {0x21, 0x21}, {0x28, 0x29}, {0x2C, 0x2C}, {0x2E, 0x2E}, {0x3F, 0x3F}, {0x7C, 0x7C},
    {0x60C, 0x60C}, {0x6D4, 0x6D4}, {0x964, 0x964}, {0x2026, 0x2026}, {0x3001, 0x3002}, {0xFF0C, 0xFF0C},
};

/* True when the code point at p is inside the piece and BLOOM's negated
** class takes it. */
static bool bpe_bloom_takes(const BpeSession *s, size_t p, size_t end)
{
    return p < end && !(bpe_cls(s, p, end) & BPE_C_SPACE) &&
           !bpe_in_ranges(bpe_cpt(s, p, end), bpe_bloom_stop, sizeof bpe_bloom_stop / sizeof bpe_bloom_stop[0]);
}

/* BLOOM:  ?[^(\s|.,!?…。，、।۔،)]+ */
static size_t bpe_match_bloom(const BpeSession *s, size_t i, size_t end)
{
    size_t j = i;
    if (bpe_cpt(s, i, end) == ' ' && bpe_bloom_takes(s, i + 1, end)) j = i + 1;
    else if (!bpe_bloom_takes(s, i, end)) return i;
    while (bpe_bloom_takes(s, j, end)) j++;
    return j;
}

static int bpe_split_bloom(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_matches(s, ini, end, stage, bpe_match_bloom);
}

/* llama.cpp's default rule, regex 1: [\p{P}\$\+<=>\^~\|]+ (ASCII punctuation
** and symbols but '`', and non-ASCII punctuation: \p{P} runs on the
** collapsed text, where other non-ASCII symbols are not \p{P}) */
static size_t bpe_match_default_punct(const BpeSession *s, size_t i, size_t end)
{
    size_t j = i;
    for (;; j++) {
        uint32_t c = bpe_cpt(s, j, end);
        bool sym = c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '|' || c == '~';
        if (c == BPE_OUT_OF_RANGE || !(sym || (bpe_cls(s, j, end) & BPE_C_PUNCT))) return j;
    }
}

/* llama.cpp's default rule, regex 4: [0-9][0-9][0-9] */
static size_t bpe_match_three_digits(const BpeSession *s, size_t i, size_t end)
{
    for (size_t k = 0; k < 3; k++) {
        uint32_t c = bpe_cpt(s, i + k, end);
        if (c < '0' || c > '9') return i;
    }
    return i + 3;
}

static int bpe_split_default_punct(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_matches(s, ini, end, stage, bpe_match_default_punct);
}

static int bpe_split_three_digits(BpeSession *s, size_t ini, size_t end, unsigned stage)
{
    return bpe_split_matches(s, ini, end, stage, bpe_match_three_digits);
}

/* The stages of each rule, in llama.cpp's regex order
** (llm_tokenizer_bpe's constructor). */
static const BpeStage bpe_rule_gpt2[] = {bpe_split_gpt2};
static const BpeStage bpe_rule_llama3[] = {bpe_split_llama3};
static const BpeStage bpe_rule_qwen2[] = {bpe_split_qwen2};
static const BpeStage bpe_rule_deepseek_llm[] = {bpe_split_crlf,           bpe_split_ds_latin, bpe_split_ds_punct,
                                                 bpe_split_trailing_space, bpe_split_ds_cjk,   bpe_split_numbers};
static const BpeStage bpe_rule_bloom[] = {bpe_split_bloom};
static const BpeStage bpe_rule_default[] = {bpe_split_default_punct, bpe_split_gpt2, bpe_split_numbers,
                                            bpe_split_three_digits};

/* Points *stages at the pipeline of rule pre and returns its length.
** GLM-4's regex is LLaMA 3's, character for character. */
static unsigned bpe_rule(BpePre pre, const BpeStage **stages)
{
#define BPE_RULE(r) (*stages = (r), (unsigned)(sizeof(r) / sizeof(r)[0]))
    switch (pre) {
    case BPE_PRE_LLAMA3:
    case BPE_PRE_CHATGLM4: return BPE_RULE(bpe_rule_llama3);
    case BPE_PRE_QWEN2: return BPE_RULE(bpe_rule_qwen2);
    case BPE_PRE_DEEPSEEK_LLM: return BPE_RULE(bpe_rule_deepseek_llm);
    case BPE_PRE_BLOOM: return BPE_RULE(bpe_rule_bloom);
    case BPE_PRE_DEFAULT: return BPE_RULE(bpe_rule_default);
    case BPE_PRE_GPT2: break;
    }
    return BPE_RULE(bpe_rule_gpt2);
#undef BPE_RULE
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

/* See tok_internal.h. Allocates 4 bytes per input byte for the code points,
** plus buffers for the longest pre-token, all freed before returning; a
** failure part-way leaves the ids appended so far in out. */
int tok_bpe_encode(const Tokenizer *t, const char *text, size_t len, KbTokens *out)
{
    if (len == 0) return KB_OK;
    if (len > SIZE_MAX / sizeof(uint32_t)) return KB_ENOMEM;
    BpeSession s = {.t = t, .out = out};
    s.n_stages = bpe_rule(t->pre, &s.stages);
    s.cp = malloc(len * sizeof *s.cp);
    int rc = s.cp ? KB_OK : KB_ENOMEM;
    if (rc == KB_OK) {
        size_t n = bpe_decode(&s, text, len);
        rc = s.stages[0](&s, 0, n, 0);
    }
    free(s.cp);
    free(s.word);
    free(s.key);
    free(s.sym);
    free(s.heap);
    return rc;
}

/* --- loading --- */

/* tokenizer.ggml.pre values and their rules: llama.cpp's names for the
** regexes implemented here, and whether the rule skips merging for a
** pre-token that is a token (llama_vocab::impl::load sets ignore_merges for
** the LLaMA 3 names only; DBRX and Smaug share the regex but merge). */
static const struct {
    const char *name;
    BpePre pre;
    bool ignore_merges;
} bpe_pre_names[] = {
    {"default", BPE_PRE_DEFAULT, false},   {"gpt-2", BPE_PRE_GPT2, false},
    {"phi-2", BPE_PRE_GPT2, false},        {"jina-es", BPE_PRE_GPT2, false},
    {"jina-de", BPE_PRE_GPT2, false},      {"gigachat", BPE_PRE_GPT2, false},
    {"jina-v1-en", BPE_PRE_GPT2, false},   {"jina-v2-es", BPE_PRE_GPT2, false},
    {"jina-v2-de", BPE_PRE_GPT2, false},   {"jina-v2-code", BPE_PRE_GPT2, false},
    {"roberta-bpe", BPE_PRE_GPT2, false},  {"mpt", BPE_PRE_GPT2, false},
    {"olmo", BPE_PRE_GPT2, false},         {"jais", BPE_PRE_GPT2, false},
    {"llama3", BPE_PRE_LLAMA3, true},      {"llama-v3", BPE_PRE_LLAMA3, true},
    {"llama-bpe", BPE_PRE_LLAMA3, true},   {"falcon3", BPE_PRE_LLAMA3, true},
    {"dbrx", BPE_PRE_LLAMA3, false},       {"smaug-bpe", BPE_PRE_LLAMA3, false},
    {"qwen2", BPE_PRE_QWEN2, false},       {"stablelm2", BPE_PRE_QWEN2, false},
    {"megrez", BPE_PRE_QWEN2, false},      {"deepseek-llm", BPE_PRE_DEEPSEEK_LLM, false},
    {"chatglm-bpe", BPE_PRE_CHATGLM4, false}, {"bloom", BPE_PRE_BLOOM, false},
    {"poro-chat", BPE_PRE_BLOOM, false},   {"gpt3-finnish", BPE_PRE_BLOOM, false},
};

/* Formats a message into err (when there is room) and returns rc. */
static int bpe_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Copies at most 40 bytes of name into buf for a message, control
** characters shown as '?'. */
static void bpe_printable(const char *name, size_t len, char *buf, size_t cap)
{
    size_t n = len < 40 ? len : 40;
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)name[i] < 0x20 || name[i] == 0x7F ? '?' : name[i];
    buf[n] = '\0';
}

/* Sets t->pre and t->ignore_merges from tokenizer.ggml.pre (a string when
** present). A missing key means llama.cpp's default rule; an unknown name
** GPT-2's rule, with a warning in t->warning. Returns KB_OK or KB_EFORMAT. */
static int bpe_load_pre(Tokenizer *t, const GgufFile *g, char *err, size_t errlen)
{
    const char *name;
    size_t len;
    t->pre = BPE_PRE_DEFAULT;
    t->ignore_merges = false;
    int rc = gguf_get_str(g, "tokenizer.ggml.pre", &name, &len);
    if (rc == KB_ENOTFOUND) return KB_OK;
    if (rc != KB_OK) return bpe_fail(err, errlen, KB_EFORMAT, "tokenizer.ggml.pre must be a string");
    for (size_t i = 0; i < sizeof bpe_pre_names / sizeof bpe_pre_names[0]; i++) {
        if (strlen(bpe_pre_names[i].name) == len && memcmp(bpe_pre_names[i].name, name, len) == 0) {
            t->pre = bpe_pre_names[i].pre;
            t->ignore_merges = bpe_pre_names[i].ignore_merges;
            return KB_OK;
        }
    }
    char shown[48];
    t->pre = BPE_PRE_GPT2;
    bpe_printable(name, len, shown, sizeof shown);
    snprintf(t->warning, sizeof t->warning, "unknown pre-tokenizer '%s': using the GPT-2 rule", shown);
    return KB_OK;
}

/* Finds tokenizer.ggml.merges, checks that it is an array of strings each
** holding a space after its first byte, and sets *n and *bytes (the sum of
** their lengths plus one per merge). Returns KB_OK or KB_EFORMAT. */
static int bpe_check_merges(const GgufFile *g, int64_t *key, uint64_t *n, size_t *bytes, char *err, size_t errlen)
{
    GgufValueType type;
    *key = gguf_find_key(g, "tokenizer.ggml.merges");
    if (*key < 0)
        return bpe_fail(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges is missing (a gpt2 tokenizer needs it)");
    if (gguf_kv_get_arr(g, *key, &type, n) != KB_OK || type != GGUF_VT_STRING)
        return bpe_fail(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges must be an array of strings");
    if (*n > INT32_MAX) {
        return bpe_fail(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges has %llu merges (at most %d)",
                        (unsigned long long)*n, INT32_MAX);
    }
    *bytes = 0;
    for (uint64_t i = 0; i < *n; i++) {
        const char *m;
        size_t len;
        if (gguf_arr_get_str(g, *key, i, &m, &len) != KB_OK) {
            return bpe_fail(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges[%llu] cannot be read",
                            (unsigned long long)i);
        }
        if (len < 2 || memchr(m + 1, ' ', len - 1) == NULL) { /* llama.cpp: word.find(' ', 1) */
            char shown[48];
            bpe_printable(m, len, shown, sizeof shown);
            return bpe_fail(err, errlen, KB_EFORMAT,
                            "tokenizer.ggml.merges[%llu] '%s' has no space between its two parts",
                            (unsigned long long)i, shown);
        }
        if (len > SIZE_MAX - 1 - *bytes) return bpe_fail(err, errlen, KB_EFORMAT, "tokenizer.ggml.merges is too large");
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
        return bpe_fail(err, errlen, KB_ENOMEM, "out of memory reading tokenizer.ggml.merges (%llu merges)",
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
