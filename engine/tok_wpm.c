/*
** tok_wpm.c: WordPiece encoding ("bert" vocabularies: BERT, bge, MiniLM),
** a port of llama.cpp's llm_tokenizer_wpm_session (src/llama-vocab.cpp and
** src/unicode.cpp, Feb 2025) that gives the same ids for the same bytes.
**
** Two passes over each word, as llama.cpp does:
**
**   preprocess   bytes -> code points (a lax UTF-8 reader, below) -> the
**                first code point of each one's canonical decomposition
**                (llama.cpp's "NFD" table keeps only that one: "é" becomes
**                "e" and the accent is gone, while a separate combining mark
**                in the input stays) -> per code point:
**                  White_Space            ends the current word
**                  NUL, U+FFFD, \p{C}     dropped (controls, format
**                                         characters, surrogates, private
**                                         use; unassigned ones are kept)
**                  \p{P}, ASCII \p{S},    a word of its own
**                  CJK ideographs
**                  anything else          lower-cased onto the current word
**   match        "▁" + word, then greedy longest match from each byte
**                position against the vocabulary (continuation pieces carry
**                no "##" in GGUF vocabularies). When some position matches
**                nothing the word's ids are taken back and [UNK] stands for
**                the whole word.
**
** Unicode properties come from GLib. llama.cpp uses its own tables, made
** from Unicode 15 with Python; GLib 2.74 carries Unicode 15.0. They agree on
** every code point for what is used here, but for one thing: Python
** lower-cases the Roman numerals and circled letters, GLib does not
** (wpm_tolower adds them). This was checked for all 0x110000 code points,
** alone and inside words, against llama.cpp's tokenizer (release b4753) with
** a vocabulary holding every character, so the mapping is exact whatever
** the vocabulary.
**
** Invalid UTF-8 never fails: each byte that does not start a well-formed
** sequence reads as U+FFFD, which preprocessing drops (llama.cpp does the same
** since February 2025; before that it threw). llama.cpp's reader is lax and
** this one copies it: overlong forms and surrogates decode to their value
** ("\xC1\x81" is "A"), and lead bytes F0-F7 give values up to 0x1FFFFF.
** Values above 0x10FFFF make llama.cpp abort; here they are dropped like
** U+FFFD.
**
** Speed: one pass, no allocation per character. The current word is built in
** a buffer that starts on the stack and moves to the heap only for words over
** a few hundred bytes; ids go straight to `out`. Matching tries at most
** max_token_len bytes from each position, so a word of n bytes costs
** O(n * max_token_len) hash probes however long it is.
*/
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "engine/tok_internal.h"

/* U+2581 "▁", which starts every word-initial piece of the vocabulary. */
#define WPM_PREFIX "\xE2\x96\x81"
#define WPM_PREFIX_LEN 3

/* Bytes of word held on the stack before the buffer moves to the heap. */
#define WPM_STACK_WORD 512

/* What preprocessing does with one code point. */
typedef enum WpmClass {
    WPM_APPEND = 0, /* lower-cased onto the current word */
    WPM_SPACE,      /* ends the current word */
    WPM_DROP,       /* removed without ending the word */
    WPM_SINGLE      /* ends the current word and forms a word of its own */
} WpmClass;

/* Class of each ASCII code point: 'd' drop, 's' space, 'p' word of its own
** (all 32 ASCII punctuation and symbol characters), '.' append. */
#define WPM_ASCII_CLASSES                                                      \
    "ddddddddd"                   /* 0x00-0x08 controls (and NUL) */           \
    "sssss"                       /* 0x09-0x0D \t \n \v \f \r */               \
    "dddddddddddddddddd"          /* 0x0E-0x1F controls, not White_Space */    \
    "s"                           /* 0x20 space */                             \
    "ppppppppppppppp"             /* 0x21-0x2F ! " # $ % & ' ( ) * + , - . / */ \
    ".........."                  /* 0x30-0x39 digits */                       \
    "ppppppp"                     /* 0x3A-0x40 : ; < = > ? @ */                \
    ".........................."  /* 0x41-0x5A A-Z */                          \
    "pppppp"                      /* 0x5B-0x60 [ \ ] ^ _ ` */                  \
    ".........................."  /* 0x61-0x7A a-z */                          \
    "pppp"                        /* 0x7B-0x7E { | } ~ */                      \
    "d"                           /* 0x7F DEL */
_Static_assert(sizeof(WPM_ASCII_CLASSES) == 128 + 1, "one class per ASCII code point");
static const char wpm_ascii_class[128] = WPM_ASCII_CLASSES;

/* The current word: WPM_PREFIX followed by the word's bytes. */
typedef struct WpmWord {
    char *buf;     /* stack or heap */
    size_t n, cap; /* n >= WPM_PREFIX_LEN; n == WPM_PREFIX_LEN: empty word */
    char *heap;    /* == buf once on the heap (freed by the caller), else NULL */
} WpmWord;

/* --- reading code points --- */

/*
** Decodes the code point at s[*pos] (*pos < len) exactly as llama.cpp's
** unicode_cpt_from_utf8 + unicode_cpts_from_utf8 do: the lead byte's high
** bits give the length, the continuation bytes must be 10xxxxxx and present;
** no check for overlong forms, surrogates or values above 0x10FFFF. A byte
** that starts no such sequence gives U+FFFD and advances by one byte.
** Advances *pos past what was read; returns the value (at most 0x1FFFFF).
*/
static uint32_t wpm_next_cpt(const unsigned char *s, size_t len, size_t *pos /* IN/OUT */)
{
    size_t i = *pos;
    unsigned b = s[i];
    size_t need = 0;
    uint32_t c = 0;

    if (b < 0x80) {
        *pos = i + 1;
        return b;
    }
    /* 10xxxxxx (a lone continuation byte) and 11111xxx keep need == 0 */
    if ((b & 0xE0) == 0xC0) {
        need = 1, c = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
        need = 2, c = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
        need = 3, c = b & 0x07;
    }
    if (need == 0 || len - i <= need) {
        *pos = i + 1;
        return 0xFFFD;
    }
    for (size_t k = 1; k <= need; k++) {
        if ((s[i + k] & 0xC0) != 0x80) {
            *pos = i + 1;
            return 0xFFFD;
        }
        c = (c << 6) | (s[i + k] & 0x3F);
    }
    *pos = i + 1 + need;
    return c;
}

/* --- classifying code points --- */

/* True for Unicode White_Space above ASCII, the set llama.cpp's
** unicode_set_whitespace holds (U+0085 counts although it is a control). */
static bool wpm_is_space(uint32_t c)
{
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* llama.cpp's is_chinese_char, gaps included: 0x2B820-0x2B91F is left out
** (as in Hugging Face's Rust tokenizer), and CJK punctuation and full-width
** forms are not here (they are \p{P} or letters). */
static bool wpm_is_chinese(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Returns the first code point of c's full canonical decomposition, or c
** when it has none: what llama.cpp's unicode_cpts_normalize_nfd maps c to. */
static uint32_t wpm_nfd_first(uint32_t c)
{
    gunichar first = c;
    g_unichar_fully_decompose(c, FALSE, &first, 1); /* stores at most one */
    return first;
}

/* Returns the lower-case form of c (not ASCII) as llama.cpp's table gives
** it. That table holds the first character of Python's str.lower(), which
** also maps the Roman numerals (Nl) and circled letters (So);
** g_unichar_tolower maps only letters (Lu, Lt), so those two ranges are
** added here. Checked against llama.cpp for every code point. */
static uint32_t wpm_tolower(uint32_t c)
{
    if (c >= 0x2160 && c <= 0x216F) return c + 0x10; /* Ⅰ..Ⅿ -> ⅰ..ⅿ */
    if (c >= 0x24B6 && c <= 0x24CF) return c + 0x1A; /* Ⓐ..Ⓩ -> ⓐ..ⓩ */
    return g_unichar_tolower(c);
}

/*
** Classifies code point c (at most 0x1FFFFF) as llama.cpp's WPM preprocess
** does and stores in *out the code point to put into the word (c after
** decomposition and lower-casing) for WPM_APPEND and WPM_SINGLE.
*/
static WpmClass wpm_classify(uint32_t c, uint32_t *out /* OUT */)
{
    if (c >= 0x80) {
        /* the common ideographs: no decomposition, no case, not \p{P} */
        if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF)) {
            *out = c;
            return WPM_SINGLE;
        }
        if (c > 0x10FFFF || c == 0xFFFD) return WPM_DROP;
        /* may give ASCII: U+2260 "≠" becomes "=", a word of its own */
        c = wpm_nfd_first(c);
    }
    *out = c;
    if (c < 0x80) {
        switch (wpm_ascii_class[c]) {
        case 's': return WPM_SPACE;
        case 'd': return WPM_DROP;
        case 'p': return WPM_SINGLE;
        default:
            if (c >= 'A' && c <= 'Z') *out = c + ('a' - 'A');
            return WPM_APPEND;
        }
    }
    if (wpm_is_space(c)) return WPM_SPACE;
    switch (g_unichar_type(c)) {
    case G_UNICODE_CONTROL:
    case G_UNICODE_FORMAT:
    case G_UNICODE_SURROGATE:
    case G_UNICODE_PRIVATE_USE:
        return WPM_DROP;
    case G_UNICODE_CONNECT_PUNCTUATION:
    case G_UNICODE_DASH_PUNCTUATION:
    case G_UNICODE_CLOSE_PUNCTUATION:
    case G_UNICODE_FINAL_PUNCTUATION:
    case G_UNICODE_INITIAL_PUNCTUATION:
    case G_UNICODE_OTHER_PUNCTUATION:
    case G_UNICODE_OPEN_PUNCTUATION:
        return WPM_SINGLE; /* no punctuation has case */
    default:
        *out = wpm_tolower(c);
        return wpm_is_chinese(c) ? WPM_SINGLE : WPM_APPEND;
    }
}

/* --- the current word --- */

/*
** Makes room for `extra` more bytes in w, moving it from the stack to the
** heap (or to a bigger heap block) when needed. Returns KB_OK or KB_ENOMEM
** (w unchanged).
*/
static int wpm_word_reserve(WpmWord *w, size_t extra)
{
    if (w->cap - w->n >= extra) return KB_OK;
    size_t cap = w->cap;
    while (cap - w->n < extra) {
        if (cap > SIZE_MAX / 2) return KB_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(w->heap, cap);
    if (!p) return KB_ENOMEM;
    if (!w->heap) memcpy(p, w->buf, w->n);
    w->buf = w->heap = p;
    w->cap = cap;
    return KB_OK;
}

/* Appends code point c (at most 0x10FFFF) to w as UTF-8. Returns KB_OK or
** KB_ENOMEM. */
static int wpm_word_add(WpmWord *w, uint32_t c)
{
    int rc = wpm_word_reserve(w, 4);
    if (rc != KB_OK) return rc;
    char *p = w->buf + w->n;
    if (c < 0x80) {
        p[0] = (char)c;
        w->n += 1;
    } else if (c < 0x800) {
        p[0] = (char)(0xC0 | (c >> 6));
        p[1] = (char)(0x80 | (c & 0x3F));
        w->n += 2;
    } else if (c < 0x10000) {
        p[0] = (char)(0xE0 | (c >> 12));
        p[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        p[2] = (char)(0x80 | (c & 0x3F));
        w->n += 3;
    } else {
        p[0] = (char)(0xF0 | (c >> 18));
        p[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        p[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        p[3] = (char)(0x80 | (c & 0x3F));
        w->n += 4;
    }
    return KB_OK;
}

/* --- matching --- */

/*
** Appends to out the ids of word[0..n) ("▁" included) by greedy longest
** match: from each position, the longest vocabulary entry of at most
** t->max_token_len bytes starting there. When a position starts no entry,
** the ids added so far are taken back and t->unk is appended instead (or
** nothing, for a vocabulary without an unknown token, where llama.cpp would
** emit the invalid id -1). Returns KB_OK or KB_ENOMEM (out unchanged then).
*/
static int wpm_match_word(const Tokenizer *t, const char *word, size_t n, KbTokens *out)
{
    const size_t start = out->n;
    const size_t max_len = t->max_token_len;
    size_t i = 0;

    while (i < n) {
        size_t len = n - i < max_len ? n - i : max_len;
        int32_t id = -1;
        for (; len > 0; len--) {
            id = strmap_get(&t->text_to_id, word + i, len);
            if (id >= 0) break;
        }
        if (id < 0) {
            out->n = start; /* discard the word's pieces */
            break;
        }
        if (kb_tokens_push(out, id) != KB_OK) {
            out->n = start;
            return KB_ENOMEM;
        }
        i += len;
    }
    if (out->n == start && t->unk >= 0) return kb_tokens_push(out, t->unk);
    return KB_OK;
}

/* Encodes the current word of w, if any, and empties it. Returns KB_OK or
** KB_ENOMEM. */
static int wpm_word_flush(const Tokenizer *t, WpmWord *w, KbTokens *out)
{
    if (w->n == WPM_PREFIX_LEN) return KB_OK;
    int rc = wpm_match_word(t, w->buf, w->n, out);
    w->n = WPM_PREFIX_LEN;
    return rc;
}

/* --- the encoder --- */

/*
** Appends the WordPiece ids of text[0..len) (any bytes) to out; see the top
** of the file for the rules. Special tokens are not looked for here and
** [CLS]/[SEP] are not added: tokenizer.c does both. Returns KB_OK or
** KB_ENOMEM; on failure out holds what it held before the call.
*/
int tok_wpm_encode(const Tokenizer *t, const char *text, size_t len, KbTokens *out)
{
    char stack[WPM_STACK_WORD];
    WpmWord w = { stack, WPM_PREFIX_LEN, sizeof stack, NULL };
    const unsigned char *s = (const unsigned char *)text;
    const size_t start = out->n;
    size_t pos = 0;
    int rc = KB_OK;

    memcpy(stack, WPM_PREFIX, WPM_PREFIX_LEN);
    while (rc == KB_OK && pos < len) {
        uint32_t c;
        switch (wpm_classify(wpm_next_cpt(s, len, &pos), &c)) {
        case WPM_SPACE:
            rc = wpm_word_flush(t, &w, out);
            break;
        case WPM_DROP:
            break;
        case WPM_SINGLE:
            rc = wpm_word_flush(t, &w, out);
            if (rc == KB_OK) rc = wpm_word_add(&w, c);
            if (rc == KB_OK) rc = wpm_word_flush(t, &w, out);
            break;
        case WPM_APPEND:
            rc = wpm_word_add(&w, c);
            break;
        }
    }
    if (rc == KB_OK) rc = wpm_word_flush(t, &w, out);
    free(w.heap);
    if (rc != KB_OK) out->n = start;
    return rc;
}
