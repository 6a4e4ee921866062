/*
** test_term_text.c: the escaping of text from outside (app/term_text.h):
** the notation of docs/output.md for each kind of byte, both modes, a
** stream cut in every place, and JSON strings checked by python3's parser.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "app/term_text.h"
#include "tests/testutil.h"

/* s escaped in mode, as a malloc'd string. */
static char *esc(const char *s, size_t len, TermMode mode)
{
    GString *g = g_string_new(NULL);
    term_escape_append(g, s, len, mode);
    char *r = strdup(g->str);
    g_string_free(g, TRUE);
    return r;
}

#define EXPECT_ESC(in, mode, want)                                                                                    \
    do {                                                                                                              \
        char *got_ = esc(in, sizeof(in) - 1, mode);                                                                   \
        assert_string_equal(got_, want);                                                                              \
        free(got_);                                                                                                   \
    } while (0)

static void test_term_controls_are_shown_in_backslash_notation(void **state)
{
    (void)state;
    EXPECT_ESC("e\x1b]0;pwned\x07.txt", TERM_LINE, "e\\x1b]0;pwned\\x07.txt");
    EXPECT_ESC("\x1b[2J", TERM_TEXT, "\\x1b[2J");
    EXPECT_ESC("a\x7f" "b", TERM_LINE, "a\\x7fb");
    EXPECT_ESC("\x0b\x19", TERM_TEXT, "\\x0b\\x19");
    EXPECT_ESC("cr\rlf", TERM_TEXT, "cr\\rlf");
    EXPECT_ESC("nul\0x", TERM_LINE, "nul\\x00x");
    /* C1 controls (valid UTF-8, U+0080..U+009F): CSI U+009B and NEL U+0085 */
    EXPECT_ESC("\xc2\x9b" "31m\xc2\x85", TERM_LINE, "\\u009b31m\\u0085");
}

static void test_term_newline_and_tab_pass_only_in_running_text(void **state)
{
    (void)state;
    EXPECT_ESC("a\nb\tc", TERM_TEXT, "a\nb\tc");
    EXPECT_ESC("a\nb\tc", TERM_LINE, "a\\nb\\tc");
}

static void test_term_invalid_utf8_bytes_are_shown_as_hex(void **state)
{
    (void)state;
    EXPECT_ESC("bad\xff\xfe.txt", TERM_LINE, "bad\\xff\\xfe.txt");
    EXPECT_ESC("\xc0\xaf", TERM_LINE, "\\xc0\\xaf");          /* overlong '/' */
    EXPECT_ESC("\xed\xa0\x80", TERM_LINE, "\\xed\\xa0\\x80"); /* a surrogate */
    EXPECT_ESC("\xf4\x90\x80\x80", TERM_LINE, "\\xf4\\x90\\x80\\x80"); /* above U+10FFFF */
    EXPECT_ESC("cut\xe4\xb8", TERM_TEXT, "cut\\xe4\\xb8");    /* incomplete at the end */
    EXPECT_ESC("\xe4" "A", TERM_TEXT, "\\xe4" "A");
}

static void test_term_valid_text_passes_unchanged(void **state)
{
    (void)state;
    const char *s = "知识库 manual – naïve 🙂 \\x1b stays";
    EXPECT_ESC("知识库 manual – naïve 🙂 \\x1b stays", TERM_LINE, s);
    TermStrs t = {0};
    assert_ptr_equal(term_line(&t, s), s); /* nothing to escape: no copy */
    assert_string_equal(term_line(&t, "a\nb"), "a\\nb");
    assert_string_equal(term_text(&t, "a\nb"), "a\nb");
    assert_string_equal(term_line(&t, NULL), "");
    term_strs_clear(&t);
}

/* Feeds in as pieces cut at every pair of places and checks the whole. */
static void test_term_stream_holds_a_character_cut_between_pieces(void **state)
{
    (void)state;
    static const char in[] = "知\x1b]52;c;SGVsbG8=\x07\xc2\x9b\xff🙂\n\tend\xe4\xb8";
    const char *want = "知\\x1b]52;c;SGVsbG8=\\x07\\u009b\\xff🙂\n\tend\\xe4\\xb8";
    size_t n = sizeof in - 1;
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            TermStream s = {.raw = 0};
            GString *g = g_string_new(NULL);
            term_stream_put(&s, in, a, g);
            term_stream_put(&s, in + a, b - a, g);
            term_stream_put(&s, in + b, n - b, g);
            term_stream_end(&s, g);
            assert_string_equal(g->str, want);
            g_string_free(g, TRUE);
        }
    }
}

static void test_term_raw_stream_keeps_the_bytes(void **state)
{
    (void)state;
    static const char in[] = "\x1b]0;t\x07\xe4\xb8";
    TermStream s = {.raw = 1};
    GString *g = g_string_new(NULL);
    term_stream_put(&s, in, 5, g);
    term_stream_put(&s, in + 5, sizeof in - 1 - 5, g);
    term_stream_end(&s, g);
    assert_int_equal(g->len, sizeof in - 1);
    assert_memory_equal(g->str, in, sizeof in - 1);
    g_string_free(g, TRUE);
}

static void test_json_strings_parse_and_keep_invalid_bytes_in_hex(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp(), *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputc('{', f);
    json_put_member(f, "file", "e\x1b]0;p\x07\n\"q\"\\\xc2\x85\x7f" "知");
    fputs(", ", f);
    json_put_member(f, "name", "bad\xff.txt");
    fputc('}', f);
    fclose(f);
    char *v = testutil_python_json(dir, buf, "[v['file'], v['name'], bytes.fromhex(v['name_hex']), 'file_hex' in v]");
    assert_string_equal(v, "['e\\x1b]0;p\\x07\\n\"q\"\\\\\\x85\\x7f\\u77e5', 'bad\\ufffd.txt', b'bad\\xff.txt', False]");
    /* and the raw bytes hold no control or invalid UTF-8 */
    assert_true(g_utf8_validate(buf, (gssize)len, NULL));
    for (size_t i = 0; i < len; i++) assert_true((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f);
    assert_null(strstr(buf, "\xc2\x85"));
    free(v);
    free(buf);
    testutil_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_term_controls_are_shown_in_backslash_notation),
        cmocka_unit_test(test_term_newline_and_tab_pass_only_in_running_text),
        cmocka_unit_test(test_term_invalid_utf8_bytes_are_shown_as_hex),
        cmocka_unit_test(test_term_valid_text_passes_unchanged),
        cmocka_unit_test(test_term_stream_holds_a_character_cut_between_pieces),
        cmocka_unit_test(test_term_raw_stream_keeps_the_bytes),
        cmocka_unit_test(test_json_strings_parse_and_keep_invalid_bytes_in_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
