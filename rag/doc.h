/*
** doc.h: a document's cleaned text, and the loaders and cleanup that make it.
** Internal to rag/.
**
** A loader turns a file's bytes into a RagDoc: one UTF-8 text in which
** paragraphs are separated by a blank line ("\n\n"), the byte offset where
** each page starts (PDF) and the byte offset of each section title. The
** chunker reads only this. Loaders never print: a file that cannot be
** indexed yields KB_EFORMAT/KB_EUNSUPPORTED with a reason a user can act on
** in doc->errmsg ("encrypted: needs a password", "not a PDF: JPEG image").
**
** Cleanup (clean.c) rules, in order, for each page of a PDF:
**   1. per line: control characters dropped (tab = space), full-width and
**      no-break spaces made plain spaces, ligatures (U+FB00..U+FB06) spelled
**      out, runs of spaces collapsed, spaces between two CJK characters and
**      at both ends removed;
**   2. page headers and footers: a line among the first or last three of a
**      page whose shape (digits read as '#', case ignored) recurs on more
**      than half of the pages (3 pages at least) is dropped, once per page;
**   3. lines are joined into paragraphs: a line shorter than 3/4 of the
**      page's longest line, a blank line, or a bullet ends a paragraph;
**      "exam-" + "ple" becomes "example"; no space is put between two lines
**      when either side is CJK. A page whose last line looks complete (ends
**      with . ! ? 。 ！ ？ or similar) ends its paragraph; otherwise the next
**      page continues it.
** Text files keep their lines (rule 1 only, blank-line runs collapsed).
*/
#ifndef KB_RAG_DOC_H
#define KB_RAG_DOC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A section title and where it starts in the text. */
typedef struct RagSection {
    size_t offset; /* byte offset in RagDoc.text */
    char *title;
} RagSection;

/* The kinds of file a knowledge base indexes. */
typedef enum RagKind { RAG_KIND_NONE = 0, RAG_KIND_PDF, RAG_KIND_TEXT, RAG_KIND_MARKDOWN } RagKind;

/* Page callback: called after each extracted page (PDF) with the pages
** done so far and the document's page count. */
typedef void (*RagPageFn)(int pages_done, int n_pages, void *user);

typedef struct RagDoc {
    char *text;            /* cleaned UTF-8 text, NUL-terminated */
    size_t len, cap;
    size_t *page_start;    /* n_pages offsets, ascending; NULL for text files */
    int n_pages;
    RagSection *sections;  /* ascending offsets */
    int n_sections, cap_sections;
    char *title, *author;  /* malloc'd, or NULL */
    char errmsg[512];      /* why loading failed */
    char note[256];        /* what was repaired in a document that loaded
                              ("3 invalid UTF-8 bytes skipped ..."); "" = nothing */
} RagDoc;

/* The kind of file path names, from its extension (case ignored):
** .pdf; .txt; .md and .markdown. RAG_KIND_NONE for anything else. */
RagKind doc_kind_of(const char *path);

/* Frees everything doc holds and zeroes it; safe on a zeroed doc. */
void doc_clear(RagDoc *doc);

/* Makes room for a text of `len` bytes (and its NUL) at once, so a loader
** that knows the size of its output does not leave up to half of a doubled
** buffer unused. Returns KB_OK or KB_ENOMEM. */
int doc_reserve(RagDoc *doc, size_t len);

/* Appends len bytes to doc->text. Returns KB_OK or KB_ENOMEM. */
int doc_append(RagDoc *doc, const char *s, size_t len);

/* The longest section title kept, in characters. Every chunk stores the
** title of its section, so an unbounded heading (a 2 MB Markdown line, a
** 200 KB outline entry) would be copied into each chunk of the document and
** the database would grow with the square of its length; capped, a chunk
** row holds at most DOC_TITLE_MAX_CHARS * 4 + 3 bytes of title. */
#define DOC_TITLE_MAX_CHARS 200

/* Records a section title (title[0..len), any bytes) starting at byte
** `offset` of the text; callers add sections in ascending offset order. A
** title longer than DOC_TITLE_MAX_CHARS characters is cut after that many
** (at a character boundary) and ends with "…".
** Returns KB_OK or KB_ENOMEM. */
int doc_add_section(RagDoc *doc, size_t offset, const char *title, size_t len);

/* --- PDF (load_pdf.c, extract.c) --- */

/* What extracting one document may cost, and the flag that stops it: a
** PDF of a few hundred kilobytes can hold millions of text operators
** (every page drawing one shared content stream) and take poppler minutes,
** or yield gigabytes of text. */
typedef struct DocBudget {
    double seconds;           /* wall-clock time of the extraction; <= 0 = no limit */
    size_t text_bytes;        /* extracted text, as poppler gives it; 0 = no limit */
    const atomic_int *cancel; /* stops the extraction when nonzero; NULL = never */
    const char *extractor;    /* NULL = poppler in this process, the budget and
                                 cancel checked after each page; else the kbchat
                                 executable that extract.c runs as a child process
                                 ("EXTRACTOR __extract-pdf"), checked while
                                 waiting for it, at least every 100 ms */
} DocBudget;

/* Where pdf_read hands what poppler gives, in this order: begin (page
** count), page (each page's text in order), meta ('T' title, 'A' author,
** each at most once, when present), outline (entries whose target page is
** known, outline order). Strings are any bytes, valid only during the call;
** a callback returns KB_OK or the code that stops the reading. */
typedef struct PdfSink {
    int (*begin)(void *user, int n_pages);
    int (*page)(void *user, const char *text, size_t len);
    int (*meta)(void *user, char kind, const char *s, size_t len);
    int (*outline)(void *user, int page, const char *title, size_t len);
    void *user;
} PdfSink;

/* Reads the PDF in data[0..len) with poppler and hands its parts to sink.
** Returns KB_OK; KB_EFORMAT (damaged, truncated, not a PDF, no pages) or
** KB_EUNSUPPORTED (encrypted) with the reason in err[0..errlen); a code
** the sink returned. */
int pdf_read(const unsigned char *data, size_t len, const PdfSink *sink, char *err, size_t errlen);

/* Loads a PDF from data[0..len) (the whole file) into doc (zeroed first),
** within budget (NULL: no limits, in this process). page_fn (may be NULL)
** is called after each page.
** Returns KB_OK; KB_EFORMAT (damaged, truncated, not a PDF, no text at all,
** the extraction process crashed: the reason in doc->errmsg);
** KB_EUNSUPPORTED (encrypted); KB_ERANGE (over budget, said in
** doc->errmsg); KB_ECANCELLED (budget->cancel was set); KB_EIO (the
** extraction process could not be started); KB_ENOMEM. */
int load_pdf(RagDoc *doc /* OUT */, const unsigned char *data, size_t len, const DocBudget *budget,
             RagPageFn page_fn, void *user);

/* Seconds of a monotonic clock. */
double doc_now(void);

/* Checks an extraction begun at t0 (doc_now) that has produced text_bytes
** bytes against budget b (NULL: no limits). Returns KB_OK; KB_ECANCELLED;
** KB_ERANGE with the limit passed named in err[0..n). */
int doc_budget_check(const DocBudget *b, double t0, size_t text_bytes, char *err, size_t n);

/* Runs pdf_read on data[0..len) in a child process (b->extractor, see
** extract.c) and feeds what it sends to sink, enforcing b's time limit and
** cancel flag while it waits (t0: when the extraction began) and refusing
** a page larger than b->text_bytes before reading it. The child is always
** killed and reaped before this returns. Returns the codes of load_pdf,
** with the reason in err[0..errlen). */
int extract_pdf_child(const DocBudget *b, double t0, const unsigned char *data, size_t len, const PdfSink *sink,
                      char *err, size_t errlen);

/* Loads a text file (markdown when kind is RAG_KIND_MARKDOWN: headings become
** section titles) from data[0..len), detecting UTF-8, UTF-16 (BOM or NUL
** pattern) and GB18030/GBK. A UTF-8 text with a few invalid bytes (under
** 1% of the file) has each decoded as U+FFFD (which rule 1 drops), said in
** doc->note. Returns KB_OK; KB_EFORMAT (empty, binary or in
** no known encoding, reason in doc->errmsg); KB_ENOMEM. */
int load_text(RagDoc *doc /* OUT */, const unsigned char *data, size_t len, RagKind kind);

/* --- cleanup (clean.c) --- */

/* Cleans one line in place (rule 1 above) and returns its new length. The
** line may hold any bytes; the result is valid UTF-8 without NUL. */
size_t clean_line(char *s, size_t len);

/* Builds doc->text and doc->page_start from raw page texts (rules 1-3).
** pages[i] is page i+1's text as poppler gives it, lines separated by '\n';
** the strings are modified. Returns KB_OK or KB_ENOMEM. */
int clean_pages(RagDoc *doc, char **pages, int n_pages);

/* True when code point c is a CJK character (Han, kana, Hangul, bopomofo). */
int clean_is_cjk(uint32_t c);

/* True when c is CJK or full-width punctuation (。，、「」…): no space is
** ever wanted beside it when lines are joined. */
int clean_is_wide(uint32_t c);

#endif /* KB_RAG_DOC_H */
