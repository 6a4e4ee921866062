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

#include "app/app.h" /* TermMode (app/term_text.h) */

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
    UI_C_CODE,      /* `code` and fenced blocks in answers */
    UI_C_COUNT
} UiRole;

/* A key as wget_wch gave it: is_key for KEY_* codes. */
typedef struct UiKey {
    int is_key;
    wint_t ch;
    int alt; /* pressed with Alt (Esc prefix) */
} UiKey;

#define UI_CTRL(c) ((c) & 0x1f)

/* Key codes of our own (define_key): the bracketed paste markers. */
#define UI_KEY_PASTE_BEGIN (KEY_MAX + 1)
#define UI_KEY_PASTE_END (KEY_MAX + 2)

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

/* Shared resize: keeps the place, (re)creates the window, marks w for
** painting. */
void widget_place(Widget *w, int y, int x, int h, int width);
/* The overlays' resize: a bh x bw box centred in the h x width area at
** (y, x). */
void widget_place_centred(Widget *w, int y, int x, int h, int width, int bh, int bw);
/* The large overlays' resize (sources, sessions, knowledge bases): most of
** the area, centred, a margin of one row and two columns each side. */
void widget_place_box(Widget *w, int y, int x, int h, int width);
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
/* Decodes UTF-8 s[0..len) into a malloc'd wide string after escaping it as
** the command line does (app/term_text.h: ESC as \x1b, an invalid byte as
** \xff, a C1 control as \u009b; in TERM_LINE mode '\n' as \n), so nothing
** from outside reaches the terminal as a control and a name keeps to its
** row; a tab becomes a space. *n gets its length. NULL on ENOMEM. */
wchar_t *ui_decode_as(const char *s, size_t len, TermMode mode, size_t *n /* OUT */);
/* ui_decode_as for running text (TERM_TEXT: '\n' stays a line break). */
wchar_t *ui_decode(const char *s, size_t len, size_t *n /* OUT */);
/* Wraps s[a..b) (one line, no '\n') to width columns, calling emit with
** each screen line's offset and length: a break goes at the last space
** (dropped), or between two characters when either is double-width; a
** word longer than the line is cut at the width; a double-width character
** never straddles the edge. Returns 0, or the first nonzero emit result. */
int ui_wrap(const wchar_t *s, size_t a, size_t b, int width, int (*emit)(void *u, size_t off, size_t len), void *u);
/* Display width of c: 0..2 (unprintable: 1, shown as '?'). */
int ui_wcwidth(wchar_t c);

/* --- painting and a one-line entry (w_entry.c) --- */
/* Paints UTF-8 s at (y, x) of win using at most cols display columns, on
** that row only (escaped as TERM_LINE: a '\n' in a name is shown as \n). */
void ui_put_text(WINDOW *win, int y, int x, const char *s, int cols);

/* A line of text being typed in an overlay (a name, a path): UTF-8. */
typedef struct LineEntry {
    char text[1024];
} LineEntry;
/* Replaces the text (copied, cut to whole characters that fit). */
void entry_set(LineEntry *e, const char *text);
/* Edits with k: a printable character is appended; Backspace deletes the
** last character, Ctrl-W the last word or path name, Ctrl-U all. Returns 1
** when k was an edit, 0 when it is the caller's (Enter, Tab, Esc, ...). */
int entry_key(LineEntry *e, const UiKey *k);
/* Paints prompt and the end of the text that fits, then a cursor block,
** on row y of win from column x, in cols columns. */
void entry_draw(const LineEntry *e, WINDOW *win, int y, int x, int cols, const char *prompt);

/* --- the widgets --- */
typedef struct ChatPane ChatPane;
ChatPane *chatpane_new(void);
void chatpane_free(ChatPane *p);
Widget *chatpane_widget(ChatPane *p);
/* Adds a message of role (text copied); returns 0 or -1 (ENOMEM). */
int chatpane_add(ChatPane *p, UiRole role, const char *text);
/* Appends len bytes to the last message (which must exist). */
int chatpane_append(ChatPane *p, const char *text, size_t len);
/* Scrolls by n lines (negative: up), for the mouse wheel. */
void chatpane_scroll(ChatPane *p, int n);
/* Shows the end of the conversation from now on. */
void chatpane_follow(ChatPane *p);
/* Removes every message. */
void chatpane_clear(ChatPane *p);
/* The role (UiRole) of the last message, -1 when there is none. */
int chatpane_last_role(const ChatPane *p);

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
/* The text being edited (owned by b) and a replacement for it (copied,
** cursor at the end). */
const char *input_text(const InputBox *b);
void input_replace(InputBox *b, const char *text);
/* The hint shown on the rule above the editor (copied). */
void input_set_hint(InputBox *b, const char *hint);

typedef struct StatusBar StatusBar;
StatusBar *status_new(void);
void status_free(StatusBar *s);
Widget *status_widget(StatusBar *s);
/* Replaces the text of the bar's left and right parts (copied). */
void status_set(StatusBar *s, const char *left, const char *right);

/* The help overlay (w_help.c): resize centres it in the area given; its
** on_key returns UI_QUIT, meaning "close me". */
Widget *help_new(void);
void help_free(Widget *w);

/* The sources overlay (w_sources.c): resize takes most of the area given;
** on_key returns UI_QUIT to close. sources_load copies turn t's sources
** (NULL: none yet); returns 0 or -1 (ENOMEM). */
struct RagTurn;
Widget *sources_new(void);
void sources_free(Widget *w);
int sources_load(Widget *w, const struct RagTurn *t);

/* The sessions overlay (w_sessions.c). sessions_load lists app's stored
** conversations (idle only); returns 0 or -1 (ENOMEM). After on_key returns
** UI_QUIT, sessions_action says what the user chose. */
typedef enum SessionsActionKind {
    SESSIONS_NONE = 0, /* closed without a choice */
    SESSIONS_OPEN,     /* open session n */
    SESSIONS_DELETE,   /* delete session n (confirmed) */
    SESSIONS_RENAME,   /* open session n, then let the user type its new title */
    SESSIONS_EXPORT,   /* open session n, then let the user confirm the export's file name */
} SessionsActionKind;
typedef struct SessionsAction {
    SessionsActionKind kind;
    int n; /* the session's number in the list, from 1 (as /open N takes it) */
} SessionsAction;
typedef struct ChatApp ChatApp;
Widget *sessions_new(void);
void sessions_free(Widget *w);
int sessions_load(Widget *w, ChatApp *app);
SessionsAction sessions_action(Widget *w);

/* The knowledge-base overlay (w_kb.c): lists app's knowledge bases and
** manages them (create, add a folder, sync, files, remove, delete) through
** app's chat_kb_* and chat_sync_* functions. kbview_load (idle only: no
** chat_line job may run while the overlay is open) reads the list afresh
** and shows it; kbview_refresh reads it again keeping the selection and
** view (after a sync ended); kbview_set_sync gives it the background sync's
** progress (copied) to show. After on_key returns UI_QUIT, kbview_action
** says what the user chose. 0 or -1 ENOMEM. */
typedef enum KbViewActionKind {
    KBVIEW_NONE = 0, /* closed without a choice */
    KBVIEW_USE,      /* search knowledge base name from now on */
    KBVIEW_OFF,      /* search none */
} KbViewActionKind;
typedef struct KbViewAction {
    KbViewActionKind kind;
    char name[300]; /* KBVIEW_USE: the knowledge base */
} KbViewAction;
Widget *kbview_new(void);
void kbview_free(Widget *w);
int kbview_load(Widget *w, ChatApp *app);
int kbview_refresh(Widget *w);
struct ChatSyncState;
void kbview_set_sync(Widget *w, const struct ChatSyncState *st);
KbViewAction kbview_action(Widget *w);

#endif /* KB_UI_WIDGET_H */
