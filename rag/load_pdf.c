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
**
** Reading is cut in two so that it can run in another process: pdf_read
** hands what poppler gives (the page texts, title, author, outline entries)
** to a PdfSink, and pdf_assemble builds the RagDoc from those parts. In this
** process the sink is a PdfParts collector; extract.c runs pdf_read in a
** child process whose sink writes frames to a pipe, and feeds the frames to
** the same collector. The collector enforces the per-document budget
** (DocBudget) after each page, so both ways stop at the same limits.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <poppler.h>

#include "engine/engine.h"
#include "rag/doc.h"

#define OUTLINE_DEPTH 3 /* outline levels used as section titles */
/* Longest title, author or outline entry passed on, in bytes: a section
** title is cut to DOC_TITLE_MAX_CHARS anyway, and this bounds a frame. */
#define PDF_META_MAX_BYTES ((size_t)64 << 10)
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
** the reason in err[0..n). */
static int check_envelope(char *err, size_t n, const unsigned char *data, size_t len)
{
    if (len == 0) {
        snprintf(err, n, "empty file");
        return KB_EFORMAT;
    }
    size_t head = len < 1024 ? len : 1024;
    if (!has_bytes(data, head, "%PDF-")) {
        snprintf(err, n, "not a PDF: %s", describe_magic(data, len));
        return KB_EFORMAT;
    }
    size_t tail = len < PDF_EOF_SEARCH_BYTES ? len : PDF_EOF_SEARCH_BYTES;
    if (!has_bytes(data + len - tail, tail, "%%EOF")) {
        snprintf(err, n, "truncated PDF: the file ends before its end-of-file marker "
                         "(an interrupted download or copy?)");
        return KB_EFORMAT;
    }
    return KB_OK;
}

/* --- the budget --- */

double doc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int doc_budget_check(const DocBudget *b, double t0, size_t text_bytes, char *err, size_t n)
{
    if (b == NULL) return KB_OK;
    if (b->cancel && atomic_load(b->cancel)) {
        snprintf(err, n, "stopped");
        return KB_ECANCELLED;
    }
    if (b->seconds > 0 && doc_now() - t0 > b->seconds) {
        snprintf(err, n, "over the per-document budget: extracting its text took more than %g s "
                         "(kb.document_time_limit)", b->seconds);
        return KB_ERANGE;
    }
    if (b->text_bytes > 0 && text_bytes > b->text_bytes) {
        snprintf(err, n, "over the per-document budget: more than %zu bytes of text (kb.document_text_limit)",
                 b->text_bytes);
        return KB_ERANGE;
    }
    return KB_OK;
}

/* --- reading with poppler --- */

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

static size_t meta_len(const char *s)
{
    size_t n = strlen(s);
    return n < PDF_META_MAX_BYTES ? n : PDF_META_MAX_BYTES;
}

/* Hands the outline's entries, down to OUTLINE_DEPTH levels, to the sink.
** Returns KB_OK or the sink's code. */
static int walk_outline(PopplerDocument *pd, PopplerIndexIter *it, int depth, const PdfSink *sink)
{
    int rc = KB_OK;
    do {
        PopplerAction *a = poppler_index_iter_get_action(it);
        int page = action_page(pd, a);
        if (page > 0 && a->any.title && a->any.title[0])
            rc = sink->outline(sink->user, page, a->any.title, meta_len(a->any.title));
        if (a) poppler_action_free(a);
        PopplerIndexIter *child = depth < OUTLINE_DEPTH && rc == KB_OK ? poppler_index_iter_get_child(it) : NULL;
        if (child) {
            rc = walk_outline(pd, child, depth + 1, sink);
            poppler_index_iter_free(child);
        }
    } while (rc == KB_OK && poppler_index_iter_next(it));
    return rc;
}

/* Opens the bytes with poppler, naming what is wrong when it refuses. */
static PopplerDocument *open_pdf(char *err, size_t n, const unsigned char *data, size_t len, int *rc)
{
    GError *gerr = NULL;
    GBytes *bytes = g_bytes_new_static(data, len);
    PopplerDocument *pd = poppler_document_new_from_bytes(bytes, NULL, &gerr);
    g_bytes_unref(bytes);
    *rc = KB_OK;
    if (pd == NULL) {
        if (gerr && gerr->domain == POPPLER_ERROR && gerr->code == POPPLER_ERROR_ENCRYPTED) {
            snprintf(err, n, "encrypted PDF: it needs a password to open");
            *rc = KB_EUNSUPPORTED;
        } else {
            snprintf(err, n, "damaged PDF: %s", gerr ? gerr->message : "poppler cannot read it");
            *rc = KB_EFORMAT;
        }
    }
    if (gerr) g_error_free(gerr);
    return pd;
}

/* Hands every page's text to the sink, in order, stopping at the first
** code the sink returns. */
static int read_pages(PopplerDocument *pd, int n, const PdfSink *sink)
{
    int rc = KB_OK;
    for (int i = 0; i < n && rc == KB_OK; i++) {
        PopplerPage *page = poppler_document_get_page(pd, i);
        char *text = page ? poppler_page_get_text(page) : NULL;
        if (page) g_object_unref(page);
        rc = sink->page(sink->user, text ? text : "", text ? strlen(text) : 0);
        g_free(text);
    }
    return rc;
}

/* Hands a metadata string (title 'T', author 'A'; NULL: nothing) to the
** sink and frees it. */
static int read_meta(const PdfSink *sink, char kind, gchar *s)
{
    int rc = s ? sink->meta(sink->user, kind, s, meta_len(s)) : KB_OK;
    g_free(s);
    return rc;
}

int pdf_read(const unsigned char *data, size_t len, const PdfSink *sink, char *err, size_t errlen)
{
    int rc = check_envelope(err, errlen, data, len);
    PopplerDocument *pd = rc == KB_OK ? open_pdf(err, errlen, data, len, &rc) : NULL;
    int n = pd ? poppler_document_get_n_pages(pd) : 0;
    if (rc == KB_OK && n <= 0) {
        snprintf(err, errlen, "the PDF has no pages");
        rc = KB_EFORMAT;
    }
    if (rc == KB_OK) rc = sink->begin(sink->user, n);
    if (rc == KB_OK) rc = read_pages(pd, n, sink);
    if (rc == KB_OK) rc = read_meta(sink, 'T', poppler_document_get_title(pd));
    if (rc == KB_OK) rc = read_meta(sink, 'A', poppler_document_get_author(pd));
    PopplerIndexIter *it = rc == KB_OK ? poppler_index_iter_new(pd) : NULL;
    if (it) {
        rc = walk_outline(pd, it, 1, sink);
        poppler_index_iter_free(it);
    }
    if (pd) g_object_unref(pd);
    return rc;
}

/* --- the collector: the parts of one PDF, within its budget --- */

typedef struct OutlineEntry {
    int page;  /* 1-based */
    char *title;
} OutlineEntry;

/* What pdf_read handed over for one document, and the budget it is held to. */
typedef struct PdfParts {
    char **pages;          /* n_pages texts, malloc'd; the first n_done are filled */
    int n_pages, n_done;
    size_t text_bytes;     /* of the pages so far */
    char *title, *author;  /* malloc'd, or NULL */
    OutlineEntry *outline;
    int n_outline, cap_outline;
    RagDoc *doc;           /* errmsg receives the reason of a failure */
    const DocBudget *budget;
    double t0;
    RagPageFn page_fn;
    void *user;
} PdfParts;

/* Copies s[0..len) into a malloc'd NUL-terminated string. */
static char *copy_bytes(const char *s, size_t len)
{
    char *t = malloc(len + 1);
    if (t == NULL) return NULL;
    memcpy(t, s, len);
    t[len] = '\0';
    return t;
}

/* PdfSink.begin: the page count is known. Refuses counts beyond what an
** array of pointers may hold. */
static int parts_begin(void *user, int n_pages)
{
    PdfParts *p = user;
    if (p->pages || n_pages <= 0 || (size_t)n_pages > ((size_t)-1) / sizeof *p->pages) return KB_EFORMAT;
    p->pages = calloc((size_t)n_pages, sizeof *p->pages);
    if (p->pages == NULL) return KB_ENOMEM;
    p->n_pages = n_pages;
    return KB_OK;
}

/* PdfSink.page: keeps the next page's text, then checks the budget (time,
** bytes, cancel) with it counted. */
static int parts_page(void *user, const char *text, size_t len)
{
    PdfParts *p = user;
    if (p->n_done >= p->n_pages) return KB_EFORMAT;
    if ((p->pages[p->n_done] = copy_bytes(text, len)) == NULL) return KB_ENOMEM;
    p->n_done++;
    p->text_bytes += len;
    if (p->page_fn) p->page_fn(p->n_done, p->n_pages, p->user);
    return doc_budget_check(p->budget, p->t0, p->text_bytes, p->doc->errmsg, sizeof p->doc->errmsg);
}

/* PdfSink.meta: the title ('T') or author ('A'). */
static int parts_meta(void *user, char kind, const char *s, size_t len)
{
    PdfParts *p = user;
    char **slot = kind == 'T' ? &p->title : kind == 'A' ? &p->author : NULL;
    if (slot == NULL || *slot) return KB_EFORMAT;
    return (*slot = copy_bytes(s, len)) ? KB_OK : KB_ENOMEM;
}

/* PdfSink.outline: one entry, placed by parts_add_sections later. */
static int parts_outline(void *user, int page, const char *title, size_t len)
{
    PdfParts *p = user;
    if (p->n_outline == p->cap_outline) {
        int cap = p->cap_outline ? p->cap_outline * 2 : 64;
        OutlineEntry *e = realloc(p->outline, (size_t)cap * sizeof *e);
        if (e == NULL) return KB_ENOMEM;
        p->outline = e, p->cap_outline = cap;
    }
    char *t = copy_bytes(title, len);
    if (t == NULL) return KB_ENOMEM;
    p->outline[p->n_outline++] = (OutlineEntry){page, t};
    return KB_OK;
}

static void parts_clear(PdfParts *p)
{
    for (int i = 0; i < p->n_done; i++) free(p->pages[i]);
    free(p->pages);
    free(p->title);
    free(p->author);
    for (int i = 0; i < p->n_outline; i++) free(p->outline[i].title);
    free(p->outline);
}

/* --- the document --- */

static int cmp_section(const void *a, const void *b)
{
    const RagSection *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places each outline title in the text: where its words appear on its
** page, else at the top of the page. Returns KB_OK or KB_ENOMEM. */
static int parts_add_sections(RagDoc *doc, PdfParts *p)
{
    int rc = KB_OK;
    for (int i = 0; i < p->n_outline && rc == KB_OK; i++) {
        OutlineEntry *o = &p->outline[i];
        if (o->page > doc->n_pages) continue;
        size_t ps = doc->page_start[o->page - 1];
        size_t pe = o->page < doc->n_pages ? doc->page_start[o->page] : doc->len;
        size_t tlen = clean_line(o->title, strlen(o->title));
        o->title[tlen] = '\0';
        if (tlen == 0) continue;
        const char *at = pe > ps ? g_strstr_len(doc->text + ps, (gssize)(pe - ps), o->title) : NULL;
        rc = doc_add_section(doc, at ? (size_t)(at - doc->text) : ps, o->title, tlen);
    }
    if (rc == KB_OK && doc->n_sections > 1) qsort(doc->sections, (size_t)doc->n_sections, sizeof *doc->sections, cmp_section);
    return rc;
}

/* Moves a metadata string into *out, cleaned like a line of text; NULL or
** nothing left after cleaning stays NULL. */
static void take_meta(char **out, char **s)
{
    if (*s) {
        size_t n = clean_line(*s, strlen(*s));
        (*s)[n] = '\0';
        if (n) *out = *s, *s = NULL;
    }
}

/* True when some page holds a character other than white space. */
static int parts_have_text(const PdfParts *p)
{
    for (int i = 0; i < p->n_done; i++)
        for (const char *c = p->pages[i]; *c; c++)
            if (!g_ascii_isspace(*c)) return 1;
    return 0;
}

/* Builds doc from every page's text, the metadata and the outline.
** Returns KB_OK; KB_EFORMAT (no text at all, or fewer pages than
** announced); KB_ENOMEM. */
static int parts_assemble(RagDoc *doc, PdfParts *p)
{
    int n = p->n_pages;
    if (p->pages == NULL || p->n_done != n) {
        snprintf(doc->errmsg, sizeof doc->errmsg, "damaged PDF: its text ended before its last page");
        return KB_EFORMAT;
    }
    if (!parts_have_text(p)) {
        snprintf(doc->errmsg, sizeof doc->errmsg,
                 "no text in any of its %d page%s: scanned images? (kbchat does not do OCR)", n, n == 1 ? "" : "s");
        return KB_EFORMAT;
    }
    int rc = clean_pages(doc, p->pages, n);
    if (rc == KB_OK) {
        take_meta(&doc->title, &p->title);
        take_meta(&doc->author, &p->author);
        rc = parts_add_sections(doc, p);
    }
    return rc;
}

int load_pdf(RagDoc *doc, const unsigned char *data, size_t len, const DocBudget *budget, RagPageFn page_fn,
             void *user)
{
    memset(doc, 0, sizeof *doc);
    PdfParts p = {.doc = doc, .budget = budget, .t0 = doc_now(), .page_fn = page_fn, .user = user};
    PdfSink sink = {parts_begin, parts_page, parts_meta, parts_outline, &p};
    int rc = budget && budget->extractor
                 ? extract_pdf_child(budget, p.t0, data, len, &sink, doc->errmsg, sizeof doc->errmsg)
                 : pdf_read(data, len, &sink, doc->errmsg, sizeof doc->errmsg);
    if (rc == KB_OK) rc = parts_assemble(doc, &p);
    parts_clear(&p);
    if (rc == KB_ENOMEM) snprintf(doc->errmsg, sizeof doc->errmsg, "out of memory");
    return rc;
}
