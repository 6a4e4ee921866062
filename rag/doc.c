/*
** doc.c: the RagDoc buffer that loaders fill and the chunker reads.
*/
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "rag/utf8.h"

RagKind doc_kind_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot == NULL || (slash && dot < slash)) return RAG_KIND_NONE;
    if (strcasecmp(dot, ".pdf") == 0) return RAG_KIND_PDF;
    if (strcasecmp(dot, ".txt") == 0) return RAG_KIND_TEXT;
    if (strcasecmp(dot, ".md") == 0 || strcasecmp(dot, ".markdown") == 0) return RAG_KIND_MARKDOWN;
    return RAG_KIND_NONE;
}

void doc_clear(RagDoc *doc)
{
    free(doc->text);
    free(doc->page_start);
    for (int i = 0; i < doc->n_sections; i++) free(doc->sections[i].title);
    free(doc->sections);
    free(doc->title);
    free(doc->author);
    memset(doc, 0, sizeof *doc);
}

int doc_reserve(RagDoc *doc, size_t len)
{
    if (len >= ((size_t)-1) / 2) return KB_ENOMEM;
    if (len + 1 <= doc->cap) return KB_OK;
    char *t = realloc(doc->text, len + 1);
    if (t == NULL) return KB_ENOMEM;
    doc->text = t;
    doc->cap = len + 1;
    doc->text[doc->len] = '\0';
    return KB_OK;
}

/* Grows the text buffer geometrically so appending a whole book of short
** lines stays linear; the text is kept NUL-terminated. */
int doc_append(RagDoc *doc, const char *s, size_t len)
{
    if (len >= ((size_t)-1) / 2 - doc->len) return KB_ENOMEM;
    if (doc->len + len + 1 > doc->cap) {
        size_t cap = doc->cap ? doc->cap : 4096;
        while (cap < doc->len + len + 1) cap *= 2;
        char *t = realloc(doc->text, cap);
        if (t == NULL) return KB_ENOMEM;
        doc->text = t;
        doc->cap = cap;
    }
    memcpy(doc->text + doc->len, s, len);
    doc->len += len;
    doc->text[doc->len] = '\0';
    return KB_OK;
}

/* The byte length of the first DOC_TITLE_MAX_CHARS characters of
** title[0..len) (any bytes; a malformed byte counts as one character), or
** len when the title is no longer than that. */
static size_t title_cut(const char *title, size_t len)
{
    size_t at = 0;
    for (int chars = 0; at < len && chars < DOC_TITLE_MAX_CHARS; chars++) {
        size_t adv;
        utf8_decode(title + at, len - at, &adv);
        at += adv;
    }
    return at;
}

int doc_add_section(RagDoc *doc, size_t offset, const char *title, size_t len)
{
    static const char ellipsis[] = "\xE2\x80\xA6"; /* … */
    size_t keep = title_cut(title, len);
    size_t extra = keep < len ? sizeof ellipsis - 1 : 0;
    if (doc->n_sections == doc->cap_sections) {
        int cap = doc->cap_sections ? doc->cap_sections * 2 : 16;
        RagSection *s = realloc(doc->sections, (size_t)cap * sizeof *s);
        if (s == NULL) return KB_ENOMEM;
        doc->sections = s;
        doc->cap_sections = cap;
    }
    char *t = malloc(keep + extra + 1);
    if (t == NULL) return KB_ENOMEM;
    memcpy(t, title, keep);
    memcpy(t + keep, ellipsis, extra);
    t[keep + extra] = '\0';
    doc->sections[doc->n_sections].offset = offset;
    doc->sections[doc->n_sections].title = t;
    doc->n_sections++;
    return KB_OK;
}
