/*
** test_rag_chunker.c: chunk boundaries of the Chinese-aware recursive
** splitter (rag/chunker.h) on small inputs whose chunks are worked out by
** hand from the rules (Chatchat's ChineseRecursiveTextSplitter): separator
** order, separators kept with the sentence before them, merging up to the
** size, overlap of whole trailing pieces, pages, sections, character
** ranges, the token cap, and allocation failures.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>

#include "engine/engine.h"
#include "rag/chunker.h"
#include "tests/testutil.h"

/* Makes a one-page-less document holding text. */
static void make_doc(RagDoc *doc, const char *text)
{
    memset(doc, 0, sizeof *doc);
    assert_int_equal(doc_append(doc, text, strlen(text)), KB_OK);
}

/* Splits text with size/overlap and checks the chunk texts against the
** NULL-terminated list `want`. */
static void check_chunks(const char *text, int size, int overlap, const char *const *want)
{
    RagDoc doc;
    make_doc(&doc, text);
    ChunkOptions opt = {size, overlap, 0, NULL, NULL};
    Chunk *c;
    int n;
    assert_int_equal(chunker_split(&doc, &opt, &c, &n), KB_OK);
    int k = 0;
    while (want[k]) k++;
    for (int i = 0; i < n && i < k; i++) assert_string_equal(c[i].text, want[i]);
    assert_int_equal(n, k);
    chunker_free(c, n);
    doc_clear(&doc);
}

static void test_chunker_merges_chinese_sentences_up_to_size(void **state)
{
    (void)state;
    /* pieces 第一句话。(5) 第二句话！(5) 第三句？(4): 5+5 fits 10, +4 does not */
    const char *want[] = {"第一句话。第二句话！", "第三句？", NULL};
    check_chunks("第一句话。第二句话！第三句？", 10, 0, want);
}

static void test_chunker_overlap_is_whole_trailing_sentences(void **state)
{
    (void)state;
    /* pieces 甲乙丙。(4) 丁戊。(3) 己庚辛壬。(5); the second chunk starts
    ** with 丁戊。 (3 <= overlap 5), not with part of 甲乙丙。 */
    const char *want[] = {"甲乙丙。丁戊。", "丁戊。己庚辛壬。", NULL};
    check_chunks("甲乙丙。丁戊。己庚辛壬。", 10, 5, want);
}

static void test_chunker_english_sentence_keeps_its_stop(void **state)
{
    (void)state;
    /* ". " splits; "Three four! " is 12 = size, not smaller, so it is split
    ** further at the next separator found in it, the space */
    const char *want[] = {"One two.", "Three four!", "Five?", NULL};
    check_chunks("One two. Three four! Five?", 12, 0, want);
}

static void test_chunker_paragraphs_first_and_blank_lines_collapse(void **state)
{
    (void)state;
    const char *one[] = {"aaa\nbbb", NULL};
    check_chunks("aaa\n\nbbb", 100, 0, one);
    /* paragraphs that do not fit together: split at "\n\n" before "。" */
    const char *two[] = {"第一段。还是第一段。", "第二段。", NULL};
    check_chunks("第一段。还是第一段。\n\n第二段。", 12, 0, two);
}

static void test_chunker_lines_before_sentences(void **state)
{
    (void)state;
    /* "\n" occurs, so lines are the pieces even though "。" also occurs */
    const char *want[] = {"一二。三四", "五六。七八", NULL};
    check_chunks("一二。三四\n五六。七八", 7, 0, want);
}

static void test_chunker_semicolons_then_commas(void **state)
{
    (void)state;
    const char *semi[] = {"甲乙丙；", "丁戊己；", "庚辛", NULL};
    check_chunks("甲乙丙；丁戊己；庚辛", 5, 0, semi);
    const char *comma[] = {"一二三，", "四五六，", "七八九", NULL};
    check_chunks("一二三，四五六，七八九", 5, 0, comma);
    /* ", " in English; a comma without a space is no separator */
    const char *en[] = {"alpha,", "beta,gamma", NULL}; /* stripped */
    check_chunks("alpha, beta,gamma", 11, 0, en);
}

static void test_chunker_cuts_text_without_separators(void **state)
{
    (void)state;
    /* beyond Chatchat: characters as the last level, with overlap */
    const char *want[] = {"abcd", "defg", "ghij", NULL};
    check_chunks("abcdefghij", 4, 1, want);
}

static void test_chunker_drops_white_space_only_chunks(void **state)
{
    (void)state;
    const char *want[] = {"x", NULL};
    check_chunks("\n\n   \n\nx\n\n", 3, 0, want);
    const char *none[] = {NULL};
    check_chunks("", 3, 0, none);
}

/* Page, section and character range of each chunk. */
static void test_chunker_records_page_section_and_char_range(void **state)
{
    (void)state;
    RagDoc doc;
    make_doc(&doc, "");
    const char *p1 = "第一页的内容。", *p2 = "Second page text.", *p3 = "第三页。";
    doc.page_start = calloc(3, sizeof *doc.page_start);
    doc.n_pages = 3;
    assert_int_equal(doc_add_section(&doc, 0, "Intro", 5), KB_OK);
    doc_append(&doc, p1, strlen(p1));
    doc_append(&doc, "\n\n", 2);
    doc.page_start[1] = doc.len;
    doc_append(&doc, p2, strlen(p2));
    doc_append(&doc, "\n\n", 2);
    doc.page_start[2] = doc.len;
    assert_int_equal(doc_add_section(&doc, doc.len, "Part 3", 6), KB_OK);
    doc_append(&doc, p3, strlen(p3));
    ChunkOptions opt = {18, 0, 0, NULL, NULL};
    Chunk *c;
    int n;
    assert_int_equal(chunker_split(&doc, &opt, &c, &n), KB_OK);
    assert_int_equal(n, 3);
    assert_string_equal(c[0].text, p1);
    assert_int_equal(c[0].page, 1);
    assert_string_equal(c[0].section, "Intro");
    assert_int_equal(c[0].char_start, 0);
    assert_int_equal(c[0].char_end, 7);
    assert_string_equal(c[1].text, p2);
    assert_int_equal(c[1].page, 2);
    assert_string_equal(c[1].section, "Intro");
    assert_int_equal(c[1].char_start, 9); /* 7 characters and "\n\n" */
    assert_int_equal(c[1].char_end, 9 + 17);
    assert_string_equal(c[2].text, p3);
    assert_int_equal(c[2].page, 3);
    assert_string_equal(c[2].section, "Part 3");
    assert_int_equal(c[2].char_start, 9 + 17 + 2);
    chunker_free(c, n);
    doc_clear(&doc);
}

/* A counter that makes every character one token (dense Chinese). */
static int count_chars(const char *text, size_t len, void *user)
{
    (*(int *)user)++;
    return (int)g_utf8_strlen(text, (gssize)len);
}

static void test_chunker_token_cap_splits_further(void **state)
{
    (void)state;
    GString *s = g_string_new(NULL);
    for (int i = 0; i < 60; i++) g_string_append(s, "字");
    RagDoc doc;
    make_doc(&doc, s->str);
    int calls = 0;
    ChunkOptions opt = {100, 10, 20, count_chars, &calls};
    Chunk *c;
    int n;
    assert_int_equal(chunker_split(&doc, &opt, &c, &n), KB_OK);
    assert_true(n >= 3);
    assert_true(calls > n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        assert_true(g_utf8_strlen(c[i].text, (gssize)c[i].text_len) <= 20);
        if (i > 0) assert_true(c[i].char_start <= c[i - 1].char_end);
        total = c[i].char_end;
    }
    assert_int_equal(c[0].char_start, 0);
    assert_int_equal(total, 60);
    chunker_free(c, n);
    doc_clear(&doc);
    g_string_free(s, TRUE);
}

static void test_chunker_rejects_bad_sizes(void **state)
{
    (void)state;
    RagDoc doc;
    make_doc(&doc, "text");
    Chunk *c;
    int n;
    ChunkOptions bad[] = {{0, 0, 0, NULL, NULL}, {10, 10, 0, NULL, NULL}, {10, -1, 0, NULL, NULL}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(chunker_split(&doc, &bad[i], &c, &n), KB_EINVAL);
        assert_null(c);
    }
    doc_clear(&doc);
}

/* Every allocation in turn fails: the result is KB_ENOMEM and nothing
** leaks (ASan), until the split needs no more allocations. */
static void test_chunker_survives_every_allocation_failure(void **state)
{
    (void)state;
    RagDoc doc;
    make_doc(&doc, "第一句话。第二句话！\n\nOne two. Three four! Five?\n\n一二三，四五六，七八九abcdefghijklmnop");
    ChunkOptions opt = {8, 2, 0, NULL, NULL};
    int rc = KB_ENOMEM;
    for (long k = 1; rc == KB_ENOMEM && k < 10000; k++) {
        Chunk *c;
        int n;
        testutil_fail_alloc_after(k);
        rc = chunker_split(&doc, &opt, &c, &n);
        testutil_fail_alloc_after(0);
        assert_true(rc == KB_OK || rc == KB_ENOMEM);
        chunker_free(c, n);
    }
    assert_int_equal(rc, KB_OK);
    doc_clear(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunker_merges_chinese_sentences_up_to_size),
        cmocka_unit_test(test_chunker_overlap_is_whole_trailing_sentences),
        cmocka_unit_test(test_chunker_english_sentence_keeps_its_stop),
        cmocka_unit_test(test_chunker_paragraphs_first_and_blank_lines_collapse),
        cmocka_unit_test(test_chunker_lines_before_sentences),
        cmocka_unit_test(test_chunker_semicolons_then_commas),
        cmocka_unit_test(test_chunker_cuts_text_without_separators),
        cmocka_unit_test(test_chunker_drops_white_space_only_chunks),
        cmocka_unit_test(test_chunker_records_page_section_and_char_range),
        cmocka_unit_test(test_chunker_token_cap_splits_further),
        cmocka_unit_test(test_chunker_rejects_bad_sizes),
        cmocka_unit_test(test_chunker_survives_every_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
