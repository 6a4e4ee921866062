/*
** ragfix.h: fixture documents for the rag tests and benchmark, made on the
** spot: PDFs drawn with cairo's PDF surface (the same library poppler
** renders with), a GBK text file through GLib's iconv, an encrypted PDF
** through qpdf, and the broken files a knowledge base meets in the wild.
**
** Header-only (static functions) so each test program includes what it
** uses without another object in the Makefile's test link line.
**
** Text is drawn with WenQuanYi Micro Hei (Debian fonts-wqy-microhei, which
** scripts/deps.sh installs): it has both Latin and CJK glyphs, so one font
** serves every fixture and cairo embeds the ToUnicode map poppler reads
** the text back through.
*/
#ifndef KB_TESTS_RAGFIX_H
#define KB_TESTS_RAGFIX_H

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cairo-pdf.h>
#include <cairo.h>
#include <glib.h>
#include <sqlite3.h>

#define RAGFIX_FONT "WenQuanYi Micro Hei"
#define RAGFIX_FONT_FILE "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
#define RAGFIX_UNUSED __attribute__((unused))

/* One page: lines separated by '\n'. With `right`, the page has two columns
** drawn side by side on the same baselines: `text` left (from x = 50),
** `right` right (from x = 320), so column lines must stay under about 40
** characters to leave a gutter. */
typedef struct RagFixPage {
    const char *text;
    const char *right;
    const char *outline; /* a top-level outline entry pointing here, or NULL */
} RagFixPage;

typedef struct RagFixPdf {
    const char *title, *author; /* document metadata, or NULL */
    const char *header;         /* printf format with one %d (page number), or NULL */
    const char *footer;         /* same */
    const RagFixPage *pages;
    int n_pages;
} RagFixPdf;

/* True when the CJK font the fixtures need is installed. */
static RAGFIX_UNUSED int ragfix_have_font(void)
{
    struct stat sb;
    return stat(RAGFIX_FONT_FILE, &sb) == 0;
}

/* Draws lines of text (separated by '\n') from (x, y) down. */
static RAGFIX_UNUSED void ragfix_lines(cairo_t *cr, const char *text, double x, double y)
{
    char *copy = g_strdup(text);
    char *save = NULL;
    int i = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
        if (line[0] == '\0') continue;
        cairo_move_to(cr, x, y + 15.0 * i);
        cairo_show_text(cr, line);
    }
    g_free(copy);
}

/* Writes an A4 PDF as spec describes. A blank line in the text is drawn as
** a gap (strtok skips it, so a paragraph break is a larger gap only through
** the line lengths, as in real PDFs). Returns 0 on success. */
static RAGFIX_UNUSED int ragfix_write_pdf(const char *path, const RagFixPdf *spec)
{
    cairo_surface_t *s = cairo_pdf_surface_create(path, 595, 842);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return -1;
    if (spec->title) cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_TITLE, spec->title);
    if (spec->author) cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_AUTHOR, spec->author);
    cairo_t *cr = cairo_create(s);
    cairo_select_font_face(cr, RAGFIX_FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11);
    for (int p = 0; p < spec->n_pages; p++) {
        char buf[256];
        const RagFixPage *pg = &spec->pages[p];
        if (pg->outline) {
            snprintf(buf, sizeof buf, "page=%d pos=[50 90]", p + 1);
            cairo_pdf_surface_add_outline(s, CAIRO_PDF_OUTLINE_ROOT, pg->outline, buf, 0);
        }
        if (spec->header) {
            snprintf(buf, sizeof buf, spec->header, p + 1);
            cairo_move_to(cr, 50, 40);
            cairo_show_text(cr, buf);
        }
        if (pg->text) ragfix_lines(cr, pg->text, 50, 100);
        if (pg->right) ragfix_lines(cr, pg->right, 320, 100);
        if (spec->footer) {
            snprintf(buf, sizeof buf, spec->footer, p + 1);
            cairo_move_to(cr, 270, 810);
            cairo_show_text(cr, buf);
        }
        cairo_show_page(cr);
    }
    cairo_destroy(cr);
    cairo_surface_finish(s);
    int rc = cairo_surface_status(s) == CAIRO_STATUS_SUCCESS ? 0 : -1;
    cairo_surface_destroy(s);
    return rc;
}

/* Writes a one-page PDF whose only content is a filled rectangle: what a
** scanned page without a text layer looks like to a text extractor. */
static RAGFIX_UNUSED int ragfix_write_image_pdf(const char *path)
{
    cairo_surface_t *s = cairo_pdf_surface_create(path, 595, 842);
    cairo_t *cr = cairo_create(s);
    cairo_rectangle(cr, 50, 50, 400, 600);
    cairo_fill(cr);
    cairo_show_page(cr);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    int rc = cairo_surface_status(s) == CAIRO_STATUS_SUCCESS ? 0 : -1;
    cairo_surface_destroy(s);
    return rc;
}

/* Writes bytes to path. Returns 0 on success. */
static RAGFIX_UNUSED int ragfix_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

/* Writes the shape of PDF that stalled a sync for minutes (issue 16): n_pages
** pages that all draw one shared content stream of n_ops text operators,
** each showing `word` (ASCII, no parentheses or backslashes) on a line of
** its own in Helvetica (a standard font: nothing embedded). Written byte by
** byte with a correct cross-reference table, so the file is small while its
** text is n_pages * n_ops lines. Returns 0 on success. */
static RAGFIX_UNUSED int ragfix_write_shared_stream_pdf(const char *path, int n_pages, int n_ops, const char *word)
{
    GString *ops = g_string_new("BT /F1 10 Tf 12 TL 40 800 Td\n");
    for (int i = 0; i < n_ops; i++) g_string_append_printf(ops, "(%s) Tj T*\n", word);
    g_string_append(ops, "ET\n");
    GString *pdf = g_string_new("%PDF-1.4\n");
    long *off = calloc((size_t)n_pages + 5, sizeof *off); /* objects 1..n_pages+4 */
    int kids = 5;                                       /* pages are objects 5.. */
    off[1] = (long)pdf->len;
    g_string_append(pdf, "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n");
    off[2] = (long)pdf->len;
    g_string_append(pdf, "2 0 obj << /Type /Pages /Kids [");
    for (int i = 0; i < n_pages; i++) g_string_append_printf(pdf, " %d 0 R", kids + i);
    g_string_append_printf(pdf, " ] /Count %d >> endobj\n", n_pages);
    off[3] = (long)pdf->len;
    g_string_append(pdf, "3 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj\n");
    off[4] = (long)pdf->len;
    g_string_append_printf(pdf, "4 0 obj << /Length %zu >> stream\n%sendstream endobj\n", ops->len, ops->str);
    for (int i = 0; i < n_pages; i++) {
        off[kids + i] = (long)pdf->len;
        g_string_append_printf(pdf, "%d 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                                    "/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >> endobj\n", kids + i);
    }
    long xref = (long)pdf->len;
    int n_obj = n_pages + 5;
    g_string_append_printf(pdf, "xref\n0 %d\n0000000000 65535 f \n", n_obj);
    for (int i = 1; i < n_obj; i++) g_string_append_printf(pdf, "%010ld 00000 n \n", off[i]);
    g_string_append_printf(pdf, "trailer << /Size %d /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", n_obj, xref);
    int rc = ragfix_write(path, pdf->str, pdf->len);
    free(off);
    g_string_free(ops, TRUE);
    g_string_free(pdf, TRUE);
    return rc;
}

/* Writes utf8 converted to `encoding` ("GBK", "UTF-16LE", ...), with the
** given byte-order mark bytes first (NULL = none). Returns 0 on success. */
static RAGFIX_UNUSED int ragfix_write_encoded(const char *path, const char *utf8, const char *encoding, const char *bom,
                                              size_t bom_len)
{
    gsize n = 0;
    gchar *conv = g_convert(utf8, -1, encoding, "UTF-8", NULL, &n, NULL);
    if (conv == NULL) return -1;
    GString *s = g_string_new_len(bom ? bom : "", bom ? (gssize)bom_len : 0);
    g_string_append_len(s, conv, (gssize)n);
    int rc = ragfix_write(path, s->str, s->len);
    g_string_free(s, TRUE);
    g_free(conv);
    return rc;
}

/* Copies the first `keep` bytes of src to dst (a truncated download). */
static RAGFIX_UNUSED int ragfix_truncate_copy(const char *src, const char *dst, double fraction)
{
    gchar *data;
    gsize len;
    if (!g_file_get_contents(src, &data, &len, NULL)) return -1;
    int rc = ragfix_write(dst, data, (size_t)((double)len * fraction));
    g_free(data);
    return rc;
}

/* Writes the start of a real JPEG (JFIF header, a comment, end marker): a
** photo someone named .pdf. */
static RAGFIX_UNUSED int ragfix_write_jpeg(const char *path)
{
    static const unsigned char jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F',  'I',  'F',  0x00, 0x01,
                                         0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xFE, 0x00, 0x08,
                                         'p',  'h',  'o',  't',  'o',  0x00, 0xFF, 0xD9};
    return ragfix_write(path, jpeg, sizeof jpeg);
}

/* Encrypts src into dst with a user password, through qpdf (Debian's qpdf
** package, installed by scripts/deps.sh for the tests). Returns 0 on
** success. */
static RAGFIX_UNUSED int ragfix_encrypt_pdf(const char *src, const char *dst)
{
    const char *argv[] = {"qpdf", "--encrypt", "secret-user", "secret-owner", "256", "--", src, dst, NULL};
    gint status = -1;
    gboolean ok = g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
                               G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, &status, NULL);
    return ok && g_spawn_check_wait_status(status, NULL) ? 0 : -1;
}

/* Dumps the documents and chunks of a knowledge-base database as text,
** one line per row in path order, leaving out what legitimately differs
** between two syncs of the same files (row ids, the time of indexing).
** Returns a g_malloc'd string, or NULL when the file cannot be read. */
static RAGFIX_UNUSED char *ragfix_dump_db(const char *db_path)
{
    sqlite3 *db;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    static const char *const sql[] = {
        "SELECT k.name, d.path, d.size, d.mtime_ns, d.hash, d.pages, d.title, d.author, d.failed, d.error "
        "FROM documents d JOIN kbs k ON k.id = d.kb_id ORDER BY k.name, d.path",
        "SELECT k.name, d.path, c.seq, c.page, c.char_start, c.char_end, c.section, c.text FROM chunks c "
        "JOIN documents d ON d.id = c.doc_id JOIN kbs k ON k.id = d.kb_id ORDER BY k.name, d.path, c.seq",
    };
    GString *out = g_string_new(NULL);
    for (int q = 0; q < 2; q++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql[q], -1, &st, NULL) != SQLITE_OK) {
            g_string_free(out, TRUE);
            sqlite3_close(db);
            return NULL;
        }
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int i = 0; i < sqlite3_column_count(st); i++) {
                const char *v = (const char *)sqlite3_column_text(st, i);
                g_string_append_printf(out, "%s%s", i ? "|" : "", v ? v : "NULL");
            }
            g_string_append_c(out, '\n');
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return g_string_free(out, FALSE);
}

/* Releases cairo's and fontconfig's caches (a group teardown), so
** LeakSanitizer sees only our own leaks. */
static RAGFIX_UNUSED int ragfix_cleanup(void **state)
{
    (void)state;
    cairo_debug_reset_static_data();
    /* fontconfig is loaded with cairo but not linked by name: find it */
    void (*fc_fini)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "FcFini");
    if (fc_fini) fc_fini();
    return 0;
}

/* --- names hostile to a terminal (docs/output.md) --- */

/* Files whose names would drive a terminal printed raw: an OSC title, an
** OSC 52 clipboard write, a clear-screen CSI, a newline that forges a line,
** bytes that are not UTF-8. Each holds "Wombat NAME notes." with a word of
** its own; RAGFIX_HOSTILE_SHOWN[i] is its name as kbchat must show it. */
static const char *const RAGFIX_HOSTILE_NAMES[] = {
    "title\x1b]0;pwned\x07.txt", "clip\x1b]52;c;aGk=\x07.txt", "clear\x1b[2J.txt", "two\nlines.txt",
    "bad\xff\xfe.txt",
};
static const char *const RAGFIX_HOSTILE_SHOWN[] = {
    "title\\x1b]0;pwned\\x07.txt", "clip\\x1b]52;c;aGk=\\x07.txt", "clear\\x1b[2J.txt", "two\\nlines.txt",
    "bad\\xff\\xfe.txt",
};
#define RAGFIX_N_HOSTILE 5

/* Writes the hostile files into folder dir (made when missing). Returns 0
** or -1. */
static RAGFIX_UNUSED int ragfix_write_hostile_names(const char *dir)
{
    static const char *const words[] = {"alpha", "bravo", "charlie", "delta", "echo"};
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return -1;
    for (int i = 0; i < RAGFIX_N_HOSTILE; i++) {
        char *path = g_build_filename(dir, RAGFIX_HOSTILE_NAMES[i], NULL);
        char *text = g_strdup_printf("Wombat %s notes.\n", words[i]);
        int rc = ragfix_write(path, text, strlen(text));
        g_free(path);
        g_free(text);
        if (rc != 0) return -1;
    }
    return 0;
}

#endif /* KB_TESTS_RAGFIX_H */
