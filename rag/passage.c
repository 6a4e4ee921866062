/*
** passage.c: turning retrieved chunks into passages a reader can use.
**
** Neighbouring chunks of a document share an overlap (whole sentences of
** up to chunking.overlap characters), so two hits that are neighbours say
** the same thing twice at the seam; they become one passage with the
** shared text once. A chunk may also end mid-sentence (the splitter's last
** resort is a comma); the sentence is then completed from the next chunk,
** up to PASSAGE_EXPAND_MAX characters, so a prompt never quotes half a
** sentence.
*/
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/search.h"
#include "rag/utf8.h"

#define MIN_OVERLAP 4 /* bytes: a shorter common edge is a coincidence, not an overlap */

void cand_clear(Cand *c)
{
    free(c->file);
    free(c->section);
    free(c->text);
    memset(c, 0, sizeof *c);
}

static int is_cont(unsigned char b)
{
    return (b & 0xC0) == 0x80;
}

size_t passage_overlap(const char *a, size_t na, const char *b, size_t nb)
{
    for (size_t k = na < nb ? na : nb; k >= MIN_OVERLAP; k--) {
        if (is_cont((unsigned char)a[na - k]) || (k < nb && is_cont((unsigned char)b[k]))) continue;
        if (memcmp(a + na - k, b, k) == 0) return k;
    }
    return 0;
}

/* Closing quotes and brackets that may follow a sentence's final mark. */
static int is_closer(uint32_t c)
{
    return c == '"' || c == '\'' || c == ')' || c == ']' || c == 0x201D || c == 0x2019 || c == 0xFF09 ||
           c == 0x300D || c == 0x300F || c == 0x3011;
}

static int is_final_mark(uint32_t c)
{
    return c == '.' || c == '!' || c == '?' || c == 0x3002 || c == 0xFF01 || c == 0xFF1F || c == 0x2026;
}

int passage_ends_sentence(const char *text)
{
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\n')) n--;
    for (;;) {
        uint32_t c = utf8_last(text, n);
        if (c == 0) return 0;
        if (!is_closer(c)) return is_final_mark(c);
        while (n > 0 && is_cont((unsigned char)text[n - 1])) n--;
        if (n == 0) return 0;
        n--;
    }
}

/* What goes between two texts joined without overlap: a newline after a
** finished sentence, nothing between CJK, else a space. */
static const char *joiner(const char *a, size_t na, const char *b)
{
    size_t adv;
    if (na == 0 || b[0] == '\0') return "";
    if (passage_ends_sentence(a)) return "\n";
    uint32_t last = utf8_last(a, na), first = utf8_decode(b, strlen(b), &adv);
    return clean_is_wide(last) || clean_is_wide(first) ? "" : " ";
}

/* Returns a + b with their overlap once (malloc'd), or NULL. */
static char *join_texts(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), k = passage_overlap(a, na, b, nb);
    const char *j = k ? "" : joiner(a, na, b);
    size_t nj = strlen(j);
    char *out = malloc(na + nj + nb - k + 1);
    if (out == NULL) return NULL;
    memcpy(out, a, na);
    memcpy(out + na, j, nj);
    memcpy(out + na + nj, b + k, nb - k + 1);
    return out;
}

static int min_rank(int a, int b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

int passage_merge(Cand *p, const Cand *c)
{
    if (p->doc_id != c->doc_id) return 0;
    int after = c->seq_first == p->seq_last + 1, before = c->seq_last == p->seq_first - 1;
    int inside = c->seq_first >= p->seq_first && c->seq_last <= p->seq_last;
    if (!after && !before && !inside) return 0;
    if (!inside) {
        char *t = after ? join_texts(p->text, c->text) : join_texts(c->text, p->text);
        if (t == NULL) return -1;
        free(p->text);
        p->text = t;
        if (before) {
            p->seq_first = c->seq_first;
            p->page = c->page;
        } else {
            p->seq_last = c->seq_last;
        }
    }
    p->bm25_rank = min_rank(p->bm25_rank, c->bm25_rank);
    p->vec_rank = min_rank(p->vec_rank, c->vec_rank);
    if (c->relevance > p->relevance) p->relevance = c->relevance;
    return 1;
}

size_t passage_sentence_end(const char *rest, int max_chars)
{
    size_t n = strlen(rest), i = 0;
    for (int chars = 0; i < n && chars < max_chars; chars++) {
        size_t adv;
        uint32_t c = utf8_decode(rest + i, n - i, &adv);
        if (c == '\n') return i;
        i += adv;
        if (!is_final_mark(c)) continue;
        if (c < 0x80 && i < n && rest[i] != ' ' && rest[i] != '\n' && !is_closer((unsigned char)rest[i])) continue; /* 3.5, e.g. */
        while (i < n && is_closer(utf8_decode(rest + i, n - i, &adv))) i += adv;
        return i;
    }
    return 0;
}

int passage_expand(Cand *p, const char *next_text)
{
    if (next_text == NULL || passage_ends_sentence(p->text)) return KB_OK;
    size_t np = strlen(p->text), nn = strlen(next_text);
    const char *rest = next_text + passage_overlap(p->text, np, next_text, nn);
    size_t take = passage_sentence_end(rest, PASSAGE_EXPAND_MAX);
    if (take == 0) return KB_OK;
    const char *j = rest == next_text ? joiner(p->text, np, rest) : "";
    size_t nj = strlen(j);
    char *t = malloc(np + nj + take + 1);
    if (t == NULL) return KB_ENOMEM;
    memcpy(t, p->text, np);
    memcpy(t + np, j, nj);
    memcpy(t + np + nj, rest, take);
    t[np + nj + take] = '\0';
    free(p->text);
    p->text = t;
    p->seq_last++;
    return KB_OK;
}
