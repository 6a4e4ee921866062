/*
** test_rag_load.c: the loaders and cleanup (rag/load_pdf.c, load_text.c,
** clean.c) on fixture files the tests write themselves (tests/ragfix.h):
** English and Chinese PDFs with running headers and footers, a two-column
** page and an outline; GBK, UTF-16 and Markdown text; and the bad files a
** knowledge base meets: encrypted, truncated, empty, a JPEG named .pdf,
** a scan without text, binary data named .txt; and hostile ones: a 300 KB
** heading, a 20000-character outline title, stray invalid UTF-8 bytes,
** 3 KB of garbage after %%EOF.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "rag/doc.h"
#include "tests/ragfix.h"
#include "tests/testutil.h"

typedef struct Fix {
    char *dir;
} Fix;

static int fix_setup(void **state)
{
    Fix *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    *state = f;
    return f->dir && ragfix_have_font() ? 0 : -1;
}

static int fix_teardown(void **state)
{
    Fix *f = *state;
    testutil_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Loads path with the loader its extension calls for. */
static int load_file(const char *path, RagDoc *doc)
{
    size_t len;
    char *data = testutil_read_file(path, &len);
    assert_non_null(data);
    RagKind kind = doc_kind_of(path);
    int rc = kind == RAG_KIND_PDF ? load_pdf(doc, (unsigned char *)data, len, NULL, NULL, NULL)
                                  : load_text(doc, (unsigned char *)data, len, kind);
    free(data);
    return rc;
}

/* The 1-based page of the first occurrence of needle in doc, or 0. */
static int page_of(const RagDoc *doc, const char *needle)
{
    const char *at = strstr(doc->text, needle);
    if (at == NULL) return 0;
    size_t off = (size_t)(at - doc->text);
    int page = 0;
    for (int i = 0; i < doc->n_pages; i++)
        if (doc->page_start[i] <= off) page = i + 1;
    return page;
}

/* --- the English manual: 5 pages, header, footer, hyphenation, two columns --- */

static const RagFixPage manual_pages[] = {
    {"Installing the pump takes about twenty minutes and needs\n"
     "two people. First remove the cover and check that the hyphen-\n"
     "ated word is joined again after extraction by the loader.\n"
     "Then turn it on.\n"
     "\n"
     "Safety comes first: unplug the unit before you open it.",
     NULL, "Installation"},
    {"Maintenance means cleaning the filter every month with warm\n"
     "water and a soft brush, never with solvents or detergents.",
     NULL, "Maintenance"},
    {"Left column line one is about apples\n"
     "and oranges, which are fruits grown in\n"
     "orchards. This is the end of the left.",
     "Right column text talks about the\n"
     "bananas, which grow in the tropics and\n"
     "ripen after they are picked.", NULL},
    {"Troubleshooting: if the pump hums but does not turn, the\n"
     "impeller is blocked by debris or limescale.",
     NULL, "Troubleshooting"},
    {"Warranty: two years from the date of purchase.", NULL, NULL},
};

static char *write_manual(Fix *f)
{
    char *path = testutil_join(f->dir, "manual.pdf");
    RagFixPdf spec = {"Pump Manual", "ACME Docs", "ACME Pump Manual - Edition 2", "Page %d of 5", manual_pages, 5};
    assert_int_equal(ragfix_write_pdf(path, &spec), 0);
    return path;
}

static void test_load_pdf_keeps_pages_title_and_author(void **state)
{
    char *path = write_manual(*state);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_int_equal(doc.n_pages, 5);
    assert_string_equal(doc.title, "Pump Manual");
    assert_string_equal(doc.author, "ACME Docs");
    assert_int_equal(page_of(&doc, "Installing the pump"), 1);
    assert_int_equal(page_of(&doc, "Maintenance means"), 2);
    assert_int_equal(page_of(&doc, "bananas"), 3);
    assert_int_equal(page_of(&doc, "impeller"), 4);
    assert_int_equal(page_of(&doc, "Warranty"), 5);
    doc_clear(&doc);
    free(path);
}

static void test_load_pdf_drops_repeated_headers_and_footers(void **state)
{
    char *path = write_manual(*state);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_null(strstr(doc.text, "ACME Pump Manual"));
    assert_null(strstr(doc.text, "Page 3 of 5"));
    assert_null(strstr(doc.text, "of 5"));
    doc_clear(&doc);
    free(path);
}

static void test_load_pdf_joins_lines_and_hyphenated_words(void **state)
{
    char *path = write_manual(*state);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_non_null(strstr(doc.text, "takes about twenty minutes and needs two people."));
    assert_non_null(strstr(doc.text, "check that the hyphenated word is joined"));
    /* a short line ends its paragraph */
    assert_non_null(strstr(doc.text, "Then turn it on.\n\nSafety comes first"));
    doc_clear(&doc);
    free(path);
}

/* Poppler reads the left column before the right one, and the footer it
** finds between them is still recognised as the footer. */
static void test_load_pdf_reads_two_columns_in_order(void **state)
{
    char *path = write_manual(*state);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    const char *left = strstr(doc.text, "Left column line one is about apples and oranges, which are fruits grown in "
                                         "orchards. This is the end of the left.");
    const char *right = strstr(doc.text, "Right column text talks about the bananas, which grow in the tropics and "
                                          "ripen after they are picked.");
    assert_non_null(left);
    assert_non_null(right);
    assert_true(left < right);
    doc_clear(&doc);
    free(path);
}

static void test_load_pdf_outline_gives_sections(void **state)
{
    char *path = write_manual(*state);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_int_equal(doc.n_sections, 3);
    assert_string_equal(doc.sections[0].title, "Installation");
    assert_string_equal(doc.sections[1].title, "Maintenance");
    assert_string_equal(doc.sections[2].title, "Troubleshooting");
    assert_int_equal(doc.sections[1].offset, doc.page_start[1]);
    assert_true(doc.sections[2].offset >= doc.page_start[3]);
    doc_clear(&doc);
    free(path);
}

/* --- Chinese --- */

static void test_load_pdf_joins_chinese_lines_without_spaces(void **state)
{
    Fix *f = *state;
    static const RagFixPage pages[] = {
        {"知识库是把文档切成小段并建立索引的系统，用户可以\n"
         "用自然语言提问，系统检索最相关的段落交给模型回答。\n"
         "这一行很短。\n"
         "\n"
         "第二段讲的是中文分词：中文没有空格，所以检索时需要\n"
         "按照字的二元组建立索引。",
         NULL, "第一章"},
    };
    char *path = testutil_join(f->dir, "zh.pdf");
    RagFixPdf spec = {"中文手册", "作者", NULL, NULL, pages, 1};
    assert_int_equal(ragfix_write_pdf(path, &spec), 0);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_string_equal(doc.title, "中文手册");
    assert_non_null(strstr(doc.text, "用户可以用自然语言提问，系统检索最相关的段落交给模型回答。这一行很短。"));
    assert_non_null(strstr(doc.text, "所以检索时需要按照字的二元组建立索引。"));
    assert_null(strstr(doc.text, "可以 用"));
    assert_int_equal(doc.n_sections, 1);
    assert_string_equal(doc.sections[0].title, "第一章");
    doc_clear(&doc);
    free(path);
}

/* --- text files --- */

static void test_load_text_detects_gbk(void **state)
{
    Fix *f = *state;
    char *path = testutil_join(f->dir, "gbk.txt");
    const char *utf8 = "　　第一段：中文文本使用GBK编码保存。\n第二行。\n";
    assert_int_equal(ragfix_write_encoded(path, utf8, "GBK", NULL, 0), 0);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    /* the full-width indent is gone, lines are kept */
    assert_string_equal(doc.text, "第一段：中文文本使用GBK编码保存。\n第二行。");
    assert_int_equal(doc.n_pages, 0);
    doc_clear(&doc);
    free(path);
}

static void test_load_text_detects_utf16_with_and_without_bom(void **state)
{
    Fix *f = *state;
    char *a = testutil_join(f->dir, "bom.txt"), *b = testutil_join(f->dir, "nobom.txt");
    assert_int_equal(ragfix_write_encoded(a, "Unicode 文本 with a BOM\n", "UTF-16LE", "\xFF\xFE", 2), 0);
    assert_int_equal(ragfix_write_encoded(b, "Plain ASCII words in UTF-16BE\n", "UTF-16BE", NULL, 0), 0);
    RagDoc doc;
    assert_int_equal(load_file(a, &doc), KB_OK);
    assert_string_equal(doc.text, "Unicode 文本 with a BOM");
    doc_clear(&doc);
    assert_int_equal(load_file(b, &doc), KB_OK);
    assert_string_equal(doc.text, "Plain ASCII words in UTF-16BE");
    doc_clear(&doc);
    free(a), free(b);
}

static void test_load_markdown_headings_become_sections(void **state)
{
    Fix *f = *state;
    char *path = testutil_join(f->dir, "notes.md");
    const char *md = "# 安装指南\n\n先下载软件。\n\n## Configuration ##\n\nEdit the file.\n\n```\n# not a heading\n```\n\n"
                     "Setext title\n============\n\nLast words.\n";
    assert_int_equal(testutil_write_file(path, md, strlen(md)), 0);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_int_equal(doc.n_sections, 3);
    assert_string_equal(doc.sections[0].title, "安装指南");
    assert_string_equal(doc.sections[1].title, "Configuration");
    assert_string_equal(doc.sections[2].title, "Setext title");
    assert_memory_equal(doc.text + doc.sections[1].offset, "Configuration\n\nEdit the file.", 29);
    assert_memory_equal(doc.text + doc.sections[2].offset, "Setext title\n\nLast words.", 25);
    assert_non_null(strstr(doc.text, "```\n# not a heading\n```"));
    assert_null(strstr(doc.text, "===="));
    doc_clear(&doc);
    free(path);
}

/* --- bad files --- */

/* Loads path, expecting rc and a reason containing `reason`. */
static void expect_failure(const char *path, int rc, const char *reason)
{
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), rc);
    if (strstr(doc.errmsg, reason) == NULL) fail_msg("reason \"%s\" lacks \"%s\"", doc.errmsg, reason);
    doc_clear(&doc);
}

static void test_load_bad_files_give_reasons(void **state)
{
    Fix *f = *state;
    char *manual = write_manual(f);
    char *enc = testutil_join(f->dir, "encrypted.pdf"), *cut = testutil_join(f->dir, "cut.pdf"),
         *empty = testutil_join(f->dir, "empty.pdf"), *jpeg = testutil_join(f->dir, "photo.pdf"),
         *scan = testutil_join(f->dir, "scan.pdf"), *bin = testutil_join(f->dir, "binary.txt"),
         *empty_txt = testutil_join(f->dir, "blank.txt");
    assert_int_equal(ragfix_encrypt_pdf(manual, enc), 0);
    assert_int_equal(ragfix_truncate_copy(manual, cut, 0.6), 0);
    assert_int_equal(testutil_write_file(empty, "", 0), 0);
    assert_int_equal(ragfix_write_jpeg(jpeg), 0);
    assert_int_equal(ragfix_write_image_pdf(scan), 0);
    assert_int_equal(testutil_write_file(bin, "\x01\x02\x00\x00\xff\xfe\x00", 7), 0);
    assert_int_equal(testutil_write_file(empty_txt, " \n\t\n", 4), 0);
    expect_failure(enc, KB_EUNSUPPORTED, "encrypted");
    expect_failure(cut, KB_EFORMAT, "truncated");
    expect_failure(empty, KB_EFORMAT, "empty file");
    expect_failure(jpeg, KB_EFORMAT, "not a PDF: a JPEG image");
    expect_failure(scan, KB_EFORMAT, "no text");
    expect_failure(bin, KB_EFORMAT, "binary");
    expect_failure(empty_txt, KB_EFORMAT, "no text");
    free(manual), free(enc), free(cut), free(empty), free(jpeg), free(scan), free(bin), free(empty_txt);
}

/* --- hostile input: long titles, stray bytes, trailing garbage --- */

/* Checks that title is the first DOC_TITLE_MAX_CHARS characters of full
** (valid UTF-8) followed by "…". */
static void expect_capped_title(const char *title, const char *full)
{
    assert_true(g_utf8_validate(title, -1, NULL));
    assert_int_equal(g_utf8_strlen(title, -1), DOC_TITLE_MAX_CHARS + 1);
    const char *cut = g_utf8_offset_to_pointer(full, DOC_TITLE_MAX_CHARS);
    assert_memory_equal(title, full, (size_t)(cut - full));
    assert_string_equal(title + (cut - full), "\xE2\x80\xA6");
}

/* A 300 KB heading of 3-byte characters after one ASCII letter (so a byte
** cut would split a character) is kept as 200 characters and an ellipsis;
** a short heading is untouched. */
static void test_load_markdown_caps_long_headings(void **state)
{
    Fix *f = *state;
    char *path = testutil_join(f->dir, "long.md");
    GString *md = g_string_new("# x");
    for (int i = 0; i < 100000; i++) g_string_append(md, "标");
    const char *full = md->str + 2;
    char *title = g_strdup(full);
    g_string_append(md, "\n\nBody text.\n\n# Short\n\nMore.\n");
    assert_int_equal(testutil_write_file(path, md->str, md->len), 0);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_int_equal(doc.n_sections, 2);
    expect_capped_title(doc.sections[0].title, title);
    assert_string_equal(doc.sections[1].title, "Short");
    doc_clear(&doc);
    g_string_free(md, TRUE);
    g_free(title);
    free(path);
}

/* An outline entry of 20000 characters (a hostile PDF) is capped too. */
static void test_load_pdf_caps_long_outline_titles(void **state)
{
    Fix *f = *state;
    GString *t = g_string_new(NULL);
    for (int i = 0; i < 20000; i++) g_string_append_c(t, (char)('a' + i % 26));
    RagFixPage page = {"Some text on the page.", NULL, t->str};
    RagFixPdf spec = {NULL, NULL, NULL, NULL, &page, 1};
    char *path = testutil_join(f->dir, "outline.pdf");
    assert_int_equal(ragfix_write_pdf(path, &spec), 0);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_int_equal(doc.n_sections, 1);
    expect_capped_title(doc.sections[0].title, t->str);
    doc_clear(&doc);
    g_string_free(t, TRUE);
    free(path);
}

/* A UTF-8 text with a few invalid bytes (well under 1%) is read with each
** bad byte as U+FFFD, which cleanup drops, and a note saying so; one that is mostly invalid
** bytes (and no GB18030 either) still fails with its reason. */
static void test_load_text_replaces_a_few_invalid_bytes(void **state)
{
    Fix *f = *state;
    char *good = testutil_join(f->dir, "almost.txt"), *bad = testutil_join(f->dir, "garbage.txt");
    GString *s = g_string_new(NULL);
    for (int i = 0; i < 200; i++) g_string_append(s, "Plain words and 中文 in a line.\n");
    g_string_append(s, "Broken \xFF byte and a cut \xE4\xB8 sequence.\n");
    assert_int_equal(testutil_write_file(good, s->str, s->len), 0);
    unsigned char junk[4000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i % 2 ? 0xFF : 0x80 + i % 64);
    assert_int_equal(testutil_write_file(bad, junk, sizeof junk), 0);
    RagDoc doc;
    assert_int_equal(load_file(good, &doc), KB_OK);
    assert_non_null(strstr(doc.text, "Plain words and 中文 in a line.\nBroken byte and a cut sequence."));
    assert_non_null(strstr(doc.note, "3 invalid UTF-8 bytes"));
    assert_true(g_utf8_validate(doc.text, (gssize)doc.len, NULL));
    doc_clear(&doc);
    expect_failure(bad, KB_EFORMAT, "not text");
    g_string_free(s, TRUE);
    free(good), free(bad);
}

/* A valid PDF followed by 3 KB of garbage (a mail gateway's signature, a
** download padded with zeros) is indexed: %%EOF is searched in the last
** megabyte, not the last 2 KB. */
static void test_load_pdf_accepts_trailing_garbage(void **state)
{
    Fix *f = *state;
    char *path = write_manual(f);
    size_t len;
    char *data = testutil_read_file(path, &len);
    assert_non_null(data);
    char *padded = malloc(len + 3072);
    memcpy(padded, data, len);
    for (int i = 0; i < 3072; i++) padded[len + i] = (char)(i % 7 ? 'G' : '\n');
    assert_int_equal(testutil_write_file(path, padded, len + 3072), 0);
    RagDoc doc;
    assert_int_equal(load_file(path, &doc), KB_OK);
    assert_int_equal(doc.n_pages, 5);
    assert_non_null(strstr(doc.text, "Warranty"));
    doc_clear(&doc);
    free(padded), free(data), free(path);
}

/* --- cleanup of one line --- */

static void test_clean_line_normalises_spaces_controls_and_ligatures(void **state)
{
    (void)state;
    char s[128];
    strcpy(s, "\xE3\x80\x80\xE3\x80\x80Indent\tand\x01 \xC2\xA0 spaces\xE2\x80\x8B ");
    s[clean_line(s, strlen(s))] = '\0';
    assert_string_equal(s, "Indent and spaces");
    strcpy(s, "\xEF\xAC\x81le \xEF\xAC\x84ow"); /* ﬁle ﬄow */
    s[clean_line(s, strlen(s))] = '\0';
    assert_string_equal(s, "file fflow");
    strcpy(s, "中 文 ， 句子 text 中");
    s[clean_line(s, strlen(s))] = '\0';
    assert_string_equal(s, "中文，句子 text 中");
    strcpy(s, "exam\xC2\xAD");
    s[clean_line(s, strlen(s))] = '\0';
    assert_string_equal(s, "exam-");
}

/* Hostile bytes (stray continuations, overlong forms, surrogates, code
** points past U+10FFFF, NUL, a sequence cut by the end) are dropped one byte
** at a time; valid characters of every length survive; the line is valid
** UTF-8 afterwards. */
static void test_clean_line_drops_malformed_utf8(void **state)
{
    (void)state;
    static const char in[] = "\x80x\xFFy\xC0\xAFz\xE0\x80\x80w \xED\xA0\x80s\xF4\x90\x80\x80t\xF8\x88\x80\x80\x80u"
                             "a\0b \xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80 \xE4\xB8";
    char s[sizeof in];
    memcpy(s, in, sizeof in);
    size_t n = clean_line(s, sizeof in - 1);
    assert_true(g_utf8_validate(s, (gssize)n, NULL));
    s[n] = '\0';
    assert_string_equal(s, "xyzw stuab \xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80");
}

#define FIX(t) cmocka_unit_test_setup_teardown(t, fix_setup, fix_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIX(test_load_pdf_keeps_pages_title_and_author),
        FIX(test_load_pdf_drops_repeated_headers_and_footers),
        FIX(test_load_pdf_joins_lines_and_hyphenated_words),
        FIX(test_load_pdf_reads_two_columns_in_order),
        FIX(test_load_pdf_outline_gives_sections),
        FIX(test_load_pdf_joins_chinese_lines_without_spaces),
        FIX(test_load_text_detects_gbk),
        FIX(test_load_text_detects_utf16_with_and_without_bom),
        FIX(test_load_markdown_headings_become_sections),
        FIX(test_load_bad_files_give_reasons),
        FIX(test_load_markdown_caps_long_headings),
        FIX(test_load_pdf_caps_long_outline_titles),
        FIX(test_load_text_replaces_a_few_invalid_bytes),
        FIX(test_load_pdf_accepts_trailing_garbage),
        cmocka_unit_test(test_clean_line_normalises_spaces_controls_and_ligatures),
        cmocka_unit_test(test_clean_line_drops_malformed_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, ragfix_cleanup);
}
