/*
** term_text.h: text from outside made safe to print (terminal and JSON).
**
** Every string kbchat did not write itself (file names and paths, passages,
** knowledge-base names, session titles, messages quoting input, model
** output) goes through here at the point of output, so that no byte of it
** can drive the terminal (set the title, write the clipboard with OSC 52,
** clear the screen) or forge a line of output. The notation, the same in
** every command and in the full-screen chat (docs/output.md):
**
**   \n \t \r           newline, tab, carriage return, where they are escaped
**   \xNN               any other C0 control (ESC is \x1b), DEL (\x7f), and
**                      each byte that is not part of valid UTF-8 (\xff)
**   \uNNNN             a C1 control, U+0080..U+009F (\u009b)
**
** A backslash is shown as itself: the notation is for reading, --json is the
** exact channel. Valid UTF-8 text (CJK included) passes unchanged.
**
** Two modes: TERM_LINE for a one-line field (a name, a path, a message),
** where even newline and tab are escaped so a name always keeps to its row;
** TERM_TEXT for running text (passages, answers), where newline and tab pass.
** Model output arrives in pieces that may split a UTF-8 character: a
** TermStream holds the incomplete end of a piece until the next one.
**
** JSON (RFC 8259, UTF-8): json_put_string writes a string with '"', '\\',
** controls (C0, DEL, C1) escaped as \u00XX (\n, \t as themselves) and
** each invalid byte as U+FFFD; json_put_member adds, after a member whose
** value is not valid UTF-8, a member KEY_hex with the exact bytes in hex, so
** nothing is lost.
*/
#ifndef KB_APP_TERM_TEXT_H
#define KB_APP_TERM_TEXT_H

#include <stddef.h>
#include <stdio.h>

#include <glib.h>

typedef enum TermMode {
    TERM_LINE, /* one-line field: newline and tab escaped too */
    TERM_TEXT  /* running text: newline and tab pass */
} TermMode;

/* Appends s[0..len) to out escaped for mode (see the notation above). An
** incomplete UTF-8 sequence at the end is escaped byte by byte. */
void term_escape_append(GString *out, const char *s, size_t len, TermMode mode);

/* Writes NUL-terminated s (NULL: nothing) to f escaped for mode. */
void term_fputs(FILE *f, const char *s, TermMode mode);

/* Escaped copies of strings for one printf: each is kept until
** term_strs_clear. Start from TermStrs x = {0}. */
typedef struct TermStrs {
    GPtrArray *owned; /* escaped copies (NULL until the first) */
} TermStrs;
/* s (may be NULL: "") escaped as TERM_LINE: s itself when it needs nothing,
** else a copy owned by t. Never NULL. */
const char *term_line(TermStrs *t, const char *s);
/* The same for running text (TERM_TEXT). */
const char *term_text(TermStrs *t, const char *s);
/* Frees the copies; t can be used again. */
void term_strs_clear(TermStrs *t);

/* A stream of pieces (model output) escaped as TERM_TEXT, or passed as they
** are when raw. Start from TermStream s = {.raw = ...}. */
typedef struct TermStream {
    int raw;                /* --raw: bytes unchanged */
    unsigned char held[4];  /* the start of a UTF-8 character cut by the piece's end */
    int n_held;
} TermStream;
/* Appends piece[0..len) to out, escaped; holds an incomplete UTF-8 sequence
** at its end for the next piece. */
void term_stream_put(TermStream *s, const char *piece, size_t len, GString *out);
/* At the end of the stream: appends what is held (escaped byte by byte, or
** raw) to out. */
void term_stream_end(TermStream *s, GString *out);
/* term_stream_put / term_stream_end writing to f (len 0 with end: the end).
** Returns 0, or EOF when writing failed. */
int term_stream_write(TermStream *s, FILE *f, const char *piece, size_t len, int end);

/* Writes s (NULL: "") as a JSON string (see above). Returns 1 when s was
** not valid UTF-8 (bytes replaced by U+FFFD), else 0. */
int json_put_string(FILE *f, const char *s);
/* Writes `"key": STRING` and, when s is not valid UTF-8, `, "key_hex":
** "HEX"` with its exact bytes. key is ours (plain ASCII). */
void json_put_member(FILE *f, const char *key, const char *s);

#endif /* KB_APP_TERM_TEXT_H */
