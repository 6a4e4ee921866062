/*
** load_pdf.c: PDF text per page through poppler-glib.
**
** Poppler is handed the bytes already read for hashing (no second read of
** the file). Before poppler sees them, two cheap checks turn the commonest
** bad files into reasons a user understands: a file that does not start
** like a PDF is named by what it really is (a JPEG renamed .pdf), and a file
** without the closing "%%EOF" in its last megabyte is called truncated (an
** interrupted download), because poppler would otherwise rebuild whatever
** it can and index half a document without a word. Section titles come from the PDF's outline.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <poppler.h>

#include "engine/engine.h"
#include "rag/doc.h"

#define OUTLINE_DEPTH 3 /* outline levels used as section titles */
/* Where "%%EOF" is looked for: the last megabyte. Writers put a few bytes
** after it, but mail gateways, download managers and signing tools append
** kilobytes (3 KB of garbage made a valid PDF "truncated" when only the last
** 2 KB were searched); a real truncation cuts the file far before its end. */
#define PDF_EOF_SEARCH_BYTES ((size_t)1 << 20)

/* --- what a file that is not a PDF is --- */

/* Names common file types by their first bytes, for the failure reason. */
static const char *describe_magic(const unsigned char *d, size_t n)
{
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return "a JPEG image";
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return "a PNG image";
    if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) return "a GIF image";
    if (n >= 4 && memcmp(d, "PK\x03\x04", 4) == 0) return "a ZIP archive (a .docx or .epub?)";
    if (n >= 8 && memcmp(d, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8) == 0) return "an old Microsoft Office file";
    if (n >= 5 && (g_ascii_strncasecmp((const char *)d, "<html", 5) == 0 || memcmp(d, "<!DOC", 5) == 0))
        return "an HTML page";
    if (n >= 2 && d[0] == 0x1F && d[1] == 0x8B) return "gzip data";
    return "no %PDF header";
}

/* Finds needle in the byte range d[0..n) (memchr for its first byte, so
** a megabyte is scanned at memory speed). */
static int has_bytes(const unsigned char *d, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (const unsigned char *p = d; n >= k && (size_t)(p - d) <= n - k;) {
        p = memchr(p, needle[0], n - k + 1 - (size_t)(p - d));
        if (p == NULL) return 0;
        if (memcmp(p, needle, k) == 0) return 1;
        p++;
    }
    return 0;
}

/* Checks the header and the end marker. Returns KB_OK or KB_EFORMAT with
** the reason in doc->errmsg. */
static int check_envelope(RagDoc *doc, const unsigned char *data, size_t len)
{
    if (len == 0) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "empty file");
        return KB_EFORMAT;
    }
    size_t head = len < 1024 ? len : 1024;
    if (!has_bytes(data, head, "%PDF-")) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "not a PDF: %s", describe_magic(data, len));
        return KB_EFORMAT;
    }
    size_t tail = len < PDF_EOF_SEARCH_BYTES ? len : PDF_EOF_SEARCH_BYTES;
    if (!has_bytes(data + len - tail, tail, "%%EOF")) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "truncated PDF: the file ends before its end-of-file marker "
                                                  "(an interrupted download or copy?)");
        return KB_EFORMAT;
    }
    return KB_OK;
}

/* --- outline --- */

typedef struct OutlineEntry {
    int page;  /* 1-based */
    int order; /* position in the outline, to keep a stable order */
    char *title;
} OutlineEntry;

typedef struct Outline {
    OutlineEntry *e;
    int n, cap;
} Outline;

/* The 1-based page an outline action points at, or 0. */
static int action_page(PopplerDocument *pd, const PopplerAction *a)
{
    if (a == NULL || a->type != POPPLER_ACTION_GOTO_DEST || a->goto_dest.dest == NULL) return 0;
    const PopplerDest *d = a->goto_dest.dest;
    if (d->type != POPPLER_DEST_NAMED) return d->page_num;
    PopplerDest *nd = poppler_document_find_dest(pd, d->named_dest);
    int page = nd ? nd->page_num : 0;
    if (nd) poppler_dest_free(nd);
    return page;
}

/* Collects the outline's entries down to OUTLINE_DEPTH levels.
** Returns KB_OK or KB_ENOMEM. */
static int walk_outline(PopplerDocument *pd, PopplerIndexIter *it, int depth, Outline *o)
{
    int rc = KB_OK;
    do {
        PopplerAction *a = poppler_index_iter_get_action(it);
        int page = action_page(pd, a);
        if (page > 0 && a->any.title && a->any.title[0]) {
            if (o->n == o->cap) {
                int cap = o->cap ? o->cap * 2 : 64;
                OutlineEntry *e = realloc(o->e, (size_t)cap * sizeof *e);
                if (e == NULL) rc = KB_ENOMEM;
                else o->e = e, o->cap = cap;
            }
            char *t = rc == KB_OK ? strdup(a->any.title) : NULL;
            if (t == NULL) rc = KB_ENOMEM;
            else o->e[o->n] = (OutlineEntry){page, o->n, t}, o->n++;
        }
        if (a) poppler_action_free(a);
        PopplerIndexIter *child = depth < OUTLINE_DEPTH && rc == KB_OK ? poppler_index_iter_get_child(it) : NULL;
        if (child) {
            rc = walk_outline(pd, child, depth + 1, o);
            poppler_index_iter_free(child);
        }
    } while (rc == KB_OK && poppler_index_iter_next(it));
    return rc;
}

static int cmp_section(const void *a, const void *b)
{
    const RagSection *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places each outline title in the text: where its words appear on its
** page, else at the top of the page. Returns KB_OK or KB_ENOMEM. */
static int add_outline_sections(RagDoc *doc, PopplerDocument *pd)
{
    Outline o = {0};
    int rc = KB_OK;
    PopplerIndexIter *it = poppler_index_iter_new(pd);
    if (it) {
        rc = walk_outline(pd, it, 1, &o);
        poppler_index_iter_free(it);
    }
    for (int i = 0; i < o.n && rc == KB_OK; i++) {
        if (o.e[i].page > doc->n_pages) continue;
        size_t ps = doc->page_start[o.e[i].page - 1];
        size_t pe = o.e[i].page < doc->n_pages ? doc->page_start[o.e[i].page] : doc->len;
        size_t tlen = clean_line(o.e[i].title, strlen(o.e[i].title));
        o.e[i].title[tlen] = '\0';
        if (tlen == 0) continue;
        const char *at = pe > ps ? g_strstr_len(doc->text + ps, (gssize)(pe - ps), o.e[i].title) : NULL;
        rc = doc_add_section(doc, at ? (size_t)(at - doc->text) : ps, o.e[i].title, tlen);
    }
    if (rc == KB_OK && doc->n_sections > 1) qsort(doc->sections, (size_t)doc->n_sections, sizeof *doc->sections, cmp_section);
    for (int i = 0; i < o.n; i++) free(o.e[i].title);
    free(o.e);
    return rc;
}

/* --- the document --- */

/* Copies a metadata string, cleaned like a line of text; NULL stays NULL. */
static int copy_meta(char **out, gchar *s)
{
    *out = NULL;
    if (s == NULL) return KB_OK;
    size_t n = clean_line(s, strlen(s));
    s[n] = '\0';
    if (n) *out = strdup(s);
    int rc = (n && *out == NULL) ? KB_ENOMEM : KB_OK;
    g_free(s);
    return rc;
}

/* Opens the bytes with poppler, naming what is wrong when it refuses. */
static PopplerDocument *open_pdf(RagDoc *doc, const unsigned char *data, size_t len, int *rc)
{
    GError *err = NULL;
    GBytes *bytes = g_bytes_new_static(data, len);
    PopplerDocument *pd = poppler_document_new_from_bytes(bytes, NULL, &err);
    g_bytes_unref(bytes);
    *rc = KB_OK;
    if (pd == NULL) {
        if (err && err->domain == POPPLER_ERROR && err->code == POPPLER_ERROR_ENCRYPTED) {
            snprintf(doc->errmsg, sizeof doc->errmsg, "encrypted PDF: it needs a password to open");
            *rc = KB_EUNSUPPORTED;
        } else {
            snprintf(doc->errmsg, sizeof doc->errmsg, "damaged PDF: %s", err ? err->message : "poppler cannot read it");
            *rc = KB_EFORMAT;
        }
    }
    if (err) g_error_free(err);
    return pd;
}

/* Extracts every page's text into pages[] (g_malloc'd). Returns the number
** of pages that have any text. */
static int extract_pages(PopplerDocument *pd, char **pages, int n, RagPageFn page_fn, void *user)
{
    int with_text = 0;
    for (int i = 0; i < n; i++) {
        PopplerPage *page = poppler_document_get_page(pd, i);
        pages[i] = page ? poppler_page_get_text(page) : NULL;
        if (pages[i] == NULL) pages[i] = g_strdup("");
        if (page) g_object_unref(page);
        for (const char *p = pages[i]; *p; p++)
            if (!g_ascii_isspace(*p)) {
                with_text++;
                break;
            }
        if (page_fn) page_fn(i + 1, n, user);
    }
    return with_text;
}

int load_pdf(RagDoc *doc, const unsigned char *data, size_t len, RagPageFn page_fn, void *user)
{
    memset(doc, 0, sizeof *doc);
    int rc = check_envelope(doc, data, len);
    PopplerDocument *pd = rc == KB_OK ? open_pdf(doc, data, len, &rc) : NULL;
    int n = pd ? poppler_document_get_n_pages(pd) : 0;
    if (rc == KB_OK && n <= 0) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "the PDF has no pages");
        rc = KB_EFORMAT;
    }
    char **pages = rc == KB_OK ? calloc((size_t)n, sizeof *pages) : NULL;
    if (rc == KB_OK && pages == NULL) rc = KB_ENOMEM;
    if (rc == KB_OK && extract_pages(pd, pages, n, page_fn, user) == 0) {
        snprintf(doc->errmsg, sizeof doc->errmsg,
                 "no text in any of its %d page%s: scanned images? (kbchat does not do OCR)", n, n == 1 ? "" : "s");
        rc = KB_EFORMAT;
    }
    if (rc == KB_OK) rc = clean_pages(doc, pages, n);
    if (rc == KB_OK) rc = copy_meta(&doc->title, poppler_document_get_title(pd));
    if (rc == KB_OK) rc = copy_meta(&doc->author, poppler_document_get_author(pd));
    if (rc == KB_OK) rc = add_outline_sections(doc, pd);
    for (int i = 0; pages && i < n; i++) g_free(pages[i]);
    free(pages);
    if (pd) g_object_unref(pd);
    if (rc == KB_ENOMEM) snprintf(doc->errmsg, sizeof doc->errmsg, "out of memory");
    return rc;
}
