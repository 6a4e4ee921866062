/*
** tok_spm.c: SentencePiece BPE encoding (tokenizer.ggml.model = "llama").
**
** The algorithm of llama.cpp's llm_tokenizer_spm_session, which reproduces
** SentencePiece's BPE mode: start from single UTF-8 characters, repeatedly
** merge the adjacent pair whose concatenation is the vocabulary token with
** the highest score (ties: the leftmost pair), until no pair is a token.
** A final symbol that is not a token (a character outside the vocabulary)
** becomes its bytes' <0xNN> tokens, or the unknown token when the vocabulary
** has no byte tokens.
**
** Symbols live in one array as a doubly linked list; candidate pairs go into
** a binary heap and are checked for staleness when popped, so each merge
** costs O(log n).
*/
#include <stdlib.h>
#include <string.h>

#include "engine/tok_internal.h"

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's space */

/* A run of text that is (so far) one symbol; n == 0 once merged away. */
typedef struct SpmSymbol {
    int prev, next; /* neighbours in the list, -1 at the ends */
    const char *text;
    size_t n;
} SpmSymbol;

/* A candidate merge of symbols left and right into a token of `size` bytes. */
typedef struct SpmBigram {
    int left, right;
    float score;
    size_t size;
} SpmBigram;

typedef struct SpmHeap {
    SpmBigram *items;
    size_t n, cap;
} SpmHeap;

/* True when a must be merged before b: higher score, then leftmost. */
static int bigram_first(const SpmBigram *a, const SpmBigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(SpmHeap *h, SpmBigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        SpmBigram *items = realloc(h->items, cap * sizeof *items);
        if (items == NULL) return KB_ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && bigram_first(&b, &h->items[(i - 1) / 2])) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = b;
    return KB_OK;
}

static SpmBigram heap_pop(SpmHeap *h)
{
    SpmBigram top = h->items[0], last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bigram_first(&h->items[c + 1], &h->items[c])) c++;
        if (!bigram_first(&h->items[c], &last)) break;
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->n > 0) h->items[i] = last;
    return top;
}

/* Queues the merge of symbols left and right when their concatenation is a
** token. They are adjacent in the text, so the concatenation is contiguous. */
static int try_bigram(const Tokenizer *t, const SpmSymbol *sym, int left, int right, SpmHeap *h)
{
    if (left < 0 || right < 0) return KB_OK;
    size_t n = sym[left].n + sym[right].n;
    int32_t id = strmap_get(&t->text_to_id, sym[left].text, n);
    if (id < 0) return KB_OK;
    SpmBigram b = {left, right, t->tokens[id].score, n};
    return heap_push(h, b);
}

/* Emits one final symbol: its token, else its bytes. */
static int emit_symbol(const Tokenizer *t, const SpmSymbol *s, KbTokens *out)
{
    int32_t id = strmap_get(&t->text_to_id, s->text, s->n);
    if (id >= 0) return kb_tokens_push(out, id);
    int rc = KB_OK;
    for (size_t i = 0; i < s->n && rc == KB_OK; i++) {
        unsigned char c = (unsigned char)s->text[i];
        id = t->byte_token[c];
        if (id < 0) id = strmap_get(&t->text_to_id, s->text + i, 1);
        if (id < 0) id = t->unk;
        if (id >= 0) rc = kb_tokens_push(out, id);
    }
    return rc;
}

/* Splits text into UTF-8 characters (a stray byte is a character of its own,
** a sequence cut by the end of the text keeps what is there). */
static int split_chars(const char *text, size_t len, SpmSymbol *sym)
{
    static const unsigned char lead_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t l = lead_len[(unsigned char)text[off] >> 4];
        if (l > len - off) l = len - off;
        sym[n].text = text + off;
        sym[n].n = l;
        sym[n].prev = n - 1;
        off += l;
        sym[n].next = off == len ? -1 : n + 1;
    }
    return n;
}

/* Merges the best pairs until none is left. */
static int merge_all(const Tokenizer *t, SpmSymbol *sym, int n, SpmHeap *h)
{
    int rc = KB_OK;
    for (int i = 1; i < n && rc == KB_OK; i++) rc = try_bigram(t, sym, i - 1, i, h);
    while (rc == KB_OK && h->n > 0) {
        SpmBigram b = heap_pop(h);
        SpmSymbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        rc = try_bigram(t, sym, l->prev, b.left, h);
        if (rc == KB_OK) rc = try_bigram(t, sym, b.left, l->next, h);
    }
    return rc;
}

/* Encodes one segment with the symbol array and heap given (both large
** enough / growable). */
static int encode_segment(const Tokenizer *t, const char *text, size_t len, SpmSymbol *sym, SpmHeap *h,
                          KbTokens *out)
{
    h->n = 0;
    int n = split_chars(text, len, sym);
    int rc = merge_all(t, sym, n, h);
    for (int i = 0; i != -1 && rc == KB_OK; i = sym[i].next) rc = emit_symbol(t, &sym[i], out);
    return rc;
}

/* Returns where the segment starting at text[0] ends: before the next "▁"
** that follows another character. */
static size_t segment_end(const char *text, size_t len)
{
    size_t i = 0;
    while (i + 3 <= len && memcmp(text + i, SPM_SPACE, 3) == 0) i += 3; /* the segment's own spaces */
    while (i < len) {
        const char *p = memchr(text + i, SPM_SPACE[0], len - i);
        if (p == NULL) return len;
        i = (size_t)(p - text);
        if (len - i >= 3 && memcmp(p, SPM_SPACE, 3) == 0) return i;
        i++;
    }
    return len;
}

/* When no token holds a "▁" after another character (t->spm_word_split),
** no merge can cross the start of a word, so words are encoded one at a
** time: the same result as the whole text at once, with small heaps that
** stay in cache. */
int tok_spm_encode(const Tokenizer *t, const char *text, size_t len, KbTokens *out)
{
    if (len == 0) return KB_OK;
    SpmHeap h = {0};
    int rc = KB_OK;
    if (!t->spm_word_split) {
        SpmSymbol *sym = malloc(len * sizeof *sym);
        rc = sym ? encode_segment(t, text, len, sym, &h, out) : KB_ENOMEM;
        free(sym);
        free(h.items);
        return rc;
    }
    SpmSymbol *sym = NULL;
    size_t cap = 0;
    for (size_t start = 0; start < len && rc == KB_OK;) {
        size_t end = start + segment_end(text + start, len - start);
        if (end - start > cap) {
            free(sym);
            cap = end - start < 256 ? 256 : end - start;
            sym = malloc(cap * sizeof *sym);
            if (sym == NULL) rc = KB_ENOMEM;
        }
        if (rc == KB_OK) rc = encode_segment(t, text + start, end - start, sym, &h, out);
        start = end;
    }
    free(sym);
    free(h.items);
    return rc;
}
