/*
** widget.h: the pieces of the screen (internal to ui/).
**
** A widget has draw, on_key and resize (htop's Panel): resize only stores
** the new place and sets needs_redraw; only draw paints (into the widget's
** own WINDOW, ending with wnoutrefresh); on_key returns UI_* flags telling
** the loop in screen.c what to do next. Colours are roles (UI_C_*), turned
** into attributes by term.c's [theme][role] table.
*/
#ifndef KB_UI_WIDGET_H
#define KB_UI_WIDGET_H

#define NCURSES_WIDECHAR 1
#include <curses.h>
#include <stddef.h>
#include <wchar.h>

/* What on_key asks of the loop (or-ed). */
enum {
    UI_REDRAW = 1,   /* paint again */
    UI_RELAYOUT = 2, /* sizes changed: resize every widget, then paint */
    UI_QUIT = 4,     /* leave the loop */
    UI_SUBMIT = 8,   /* the input holds a line to send (w_input) */
    UI_IGNORED = 16, /* the key is not this widget's */
};

/* Colour roles. */
typedef enum UiRole {
    UI_C_NORMAL = 0,
    UI_C_USER,      /* the user's questions */
    UI_C_ANSWER,    /* the model's answers */
    UI_C_NOTE,      /* command output, sources, notices */
    UI_C_ERROR,     /* problems */
    UI_C_CITATION,  /* [n] in answers */
    UI_C_STATUS,    /* the status bar */
    UI_C_BORDER,    /* the input's top rule and hints */
    UI_C_TITLE,     /* headings (welcome screen) */
    UI_C_COUNT
} UiRole;

/* A key as wget_wch gave it: is_key for KEY_* codes. */
typedef struct UiKey {
    int is_key;
    wint_t ch;
    int alt; /* pressed with Alt (Esc prefix) */
} UiKey;

#define UI_CTRL(c) ((c) & 0x1f)

typedef struct Widget Widget;
typedef struct WidgetOps {
    void (*draw)(Widget *w);
    int (*on_key)(Widget *w, const UiKey *k);
    void (*resize)(Widget *w, int y, int x, int h, int width);
} WidgetOps;

struct Widget {
    const WidgetOps *ops;
    WINDOW *win;  /* owned; NULL before the first resize */
    int y, x, h, w;
    int needs_redraw;
};

/* Shared resize: keeps the place, (re)creates the window. */
void widget_place(Widget *w, int y, int x, int h, int width);
void widget_free_window(Widget *w);

/* --- term.c --- */
/* Sets up curses (raw keys, no echo, keypad, colours of theme); installs the
** signal handlers that restore the terminal. Returns 0, or -1 (message in err). */
int term_open(const char *theme, char *err, size_t errlen);
/* Restores the terminal; safe to call twice. */
void term_close(void);
/* The attribute (colour pair and style) of role in the current theme. */
attr_t term_attr(UiRole role);
/* Nonzero once SIGTERM or SIGHUP asked us to leave. */
int term_quit_requested(void);

/* --- text helpers (w_chat.c) --- */
/* Decodes UTF-8 s[0..len) into a malloc'd wide string (invalid bytes become
** U+FFFD, controls but '\n' become spaces); *n gets its length. NULL on ENOMEM. */
wchar_t *ui_decode(const char *s, size_t len, size_t *n /* OUT */);
/* Display width of c: 0..2 (unprintable: 1, shown as '?'). */
int ui_wcwidth(wchar_t c);

/* --- the widgets --- */
typedef struct ChatPane ChatPane;
ChatPane *chatpane_new(void);
void chatpane_free(ChatPane *p);
Widget *chatpane_widget(ChatPane *p);
/* Adds a message of role (text copied); returns 0 or -1 (ENOMEM). */
int chatpane_add(ChatPane *p, UiRole role, const char *text);
/* Appends len bytes to the last message (which must exist). */
int chatpane_append(ChatPane *p, const char *text, size_t len);
/* Removes every message. */
void chatpane_clear(ChatPane *p);

typedef struct InputBox InputBox;
InputBox *input_new(void);
void input_free(InputBox *b);
Widget *input_widget(InputBox *b);
/* Rows the editor wants at width (1..max_rows). */
int input_rows(InputBox *b, int width, int max_rows);
/* Takes the text to send (malloc'd, caller frees; NULL when empty), keeps it
** in the history and empties the editor. */
char *input_take(InputBox *b);
int input_is_empty(const InputBox *b);
void input_clear(InputBox *b);
/* The hint shown on the rule above the editor (copied). */
void input_set_hint(InputBox *b, const char *hint);

typedef struct StatusBar StatusBar;
StatusBar *status_new(void);
void status_free(StatusBar *s);
Widget *status_widget(StatusBar *s);
/* Replaces the text of the bar's left and right parts (copied). */
void status_set(StatusBar *s, const char *left, const char *right);

#endif /* KB_UI_WIDGET_H */
