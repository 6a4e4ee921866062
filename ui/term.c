/*
** term.c: the terminal's state: curses setup, colour themes, and the signal
** handlers that give the terminal back on every way out.
**
** This file holds the only mutable globals of ui/ (style habit 8): the
** saved terminal modes and the escape strings needed to restore them from a
** signal handler, where endwin() is not safe. Normal exits go through
** term_close() (endwin). SIGTERM and SIGHUP only set a flag: the loop in
** screen.c sees it, cancels any answer and leaves the normal way. Fatal
** signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGQUIT) restore the
** saved modes with tcsetattr and write(2) of the saved escapes, then die
** with the default action so the exit status still tells what happened.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "ui/widget.h"

/* --- the terminal state (the only globals of ui/) --- */

static struct termios term_saved;       /* modes before initscr */
static int term_have_saved;
static int term_active;                 /* between term_open and term_close */
static SCREEN *term_screen;             /* newterm's */
static char term_restore_seq[256];      /* rmcup + cnorm + sgr0, for handlers */
static size_t term_restore_len;
static int term_theme;                  /* row of term_themes */
static volatile sig_atomic_t term_quit_flag;

/* --- themes: [theme][role] = foreground, background, style --- */

enum { THEME_DARK, THEME_LIGHT, THEME_MONO, THEME_COUNT };

typedef struct ThemeCell {
    short fg, bg; /* -1 = the terminal's default */
    attr_t style;
} ThemeCell;

static const ThemeCell term_themes[THEME_COUNT][UI_C_COUNT] = {
    [THEME_DARK] = {
        [UI_C_NORMAL] = {-1, -1, A_NORMAL},
        [UI_C_USER] = {COLOR_CYAN, -1, A_BOLD},
        [UI_C_ANSWER] = {-1, -1, A_NORMAL},
        [UI_C_NOTE] = {COLOR_YELLOW, -1, A_NORMAL},
        [UI_C_ERROR] = {COLOR_RED, -1, A_BOLD},
        [UI_C_CITATION] = {COLOR_GREEN, -1, A_BOLD},
        [UI_C_STATUS] = {COLOR_BLACK, COLOR_CYAN, A_NORMAL},
        [UI_C_BORDER] = {COLOR_BLUE, -1, A_BOLD},
        [UI_C_TITLE] = {COLOR_MAGENTA, -1, A_BOLD},
        [UI_C_CODE] = {COLOR_GREEN, -1, A_NORMAL},
    },
    [THEME_LIGHT] = {
        [UI_C_NORMAL] = {-1, -1, A_NORMAL},
        [UI_C_USER] = {COLOR_BLUE, -1, A_BOLD},
        [UI_C_ANSWER] = {-1, -1, A_NORMAL},
        [UI_C_NOTE] = {COLOR_MAGENTA, -1, A_NORMAL},
        [UI_C_ERROR] = {COLOR_RED, -1, A_BOLD},
        [UI_C_CITATION] = {COLOR_GREEN, -1, A_BOLD},
        [UI_C_STATUS] = {COLOR_WHITE, COLOR_BLUE, A_NORMAL},
        [UI_C_BORDER] = {COLOR_BLUE, -1, A_NORMAL},
        [UI_C_TITLE] = {COLOR_BLUE, -1, A_BOLD},
        [UI_C_CODE] = {COLOR_RED, -1, A_NORMAL},
    },
    [THEME_MONO] = {
        [UI_C_NORMAL] = {-1, -1, A_NORMAL},
        [UI_C_USER] = {-1, -1, A_BOLD},
        [UI_C_ANSWER] = {-1, -1, A_NORMAL},
        [UI_C_NOTE] = {-1, -1, A_DIM},
        [UI_C_ERROR] = {-1, -1, A_BOLD | A_UNDERLINE},
        [UI_C_CITATION] = {-1, -1, A_UNDERLINE},
        [UI_C_STATUS] = {-1, -1, A_REVERSE},
        [UI_C_BORDER] = {-1, -1, A_NORMAL},
        [UI_C_TITLE] = {-1, -1, A_BOLD},
        [UI_C_CODE] = {-1, -1, A_DIM},
    },
};

/* The theme row for ui.theme, NO_COLOR and what the terminal can do. */
static int term_pick_theme(const char *theme)
{
    const char *nc = getenv("NO_COLOR");
    if ((nc && nc[0]) || !has_colors() || (theme && strcmp(theme, "mono") == 0)) return THEME_MONO;
    return theme && strcmp(theme, "light") == 0 ? THEME_LIGHT : THEME_DARK;
}

attr_t term_attr(UiRole role)
{
    const ThemeCell *c = &term_themes[term_theme][role];
    attr_t a = c->style;
    if (term_theme != THEME_MONO) a |= COLOR_PAIR(role + 1);
    return a;
}

/* Makes a colour pair per role (pair role+1). */
static void term_init_colours(void)
{
    if (term_theme == THEME_MONO) return;
    start_color();
    use_default_colors();
    for (int r = 0; r < UI_C_COUNT; r++) init_pair((short)(r + 1), term_themes[term_theme][r].fg, term_themes[term_theme][r].bg);
}

/* --- signals --- */

/* SIGTERM's, SIGHUP's and SIGINT's handler: records which one came. */
static void term_on_quit(int sig)
{
    term_quit_flag = sig;
}

/* Restores the terminal from a fatal signal, then dies of it. */
static void term_on_fatal(int sig)
{
    if (term_have_saved) tcsetattr(STDIN_FILENO, TCSAFLUSH, &term_saved);
    if (term_restore_len) {
        ssize_t n = write(STDOUT_FILENO, term_restore_seq, term_restore_len);
        (void)n;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int term_quit_requested(void)
{
    return term_quit_flag != 0;
}

int ui_quit_signal(void)
{
    return term_quit_flag;
}

/* Appends capability cap (when the terminal has it) to the restore string. */
static void term_add_restore(const char *cap)
{
    char *s = tigetstr(cap);
    if (s == NULL || s == (char *)-1) return;
    size_t n = strlen(s);
    if (term_restore_len + n >= sizeof term_restore_seq) return;
    memcpy(term_restore_seq + term_restore_len, s, n);
    term_restore_len += n;
}

static void term_add_restore_raw(const char *seq)
{
    size_t n = strlen(seq);
    if (term_restore_len + n >= sizeof term_restore_seq) return;
    memcpy(term_restore_seq + term_restore_len, seq, n);
    term_restore_len += n;
}

static void term_install_signals(void)
{
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGQUIT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = term_on_quit;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGINT, &sa, NULL); /* a kill -INT from outside; the key Ctrl-C is read as a key */
    sa.sa_flags = SA_RESETHAND;
    sa.sa_handler = term_on_fatal;
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) sigaction(fatal[i], &sa, NULL);
}

static void term_reset_signals(void)
{
    static const int all[] = {SIGTERM, SIGHUP, SIGINT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGQUIT};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) signal(all[i], SIG_DFL);
}

/* --- setup --- */

int term_open(const char *theme, char *err, size_t errlen)
{
    term_have_saved = tcgetattr(STDIN_FILENO, &term_saved) == 0;
    term_quit_flag = 0;
    if (getenv("ESCDELAY") == NULL) set_escdelay(25);
    term_screen = newterm(NULL, stdout, stdin);
    if (term_screen == NULL) {
        snprintf(err, errlen, "cannot set up the terminal (TERM=%s)", getenv("TERM") ? getenv("TERM") : "");
        return -1;
    }
    term_active = 1;
    term_restore_len = 0;
    term_add_restore_raw("\033[?2004l"); /* bracketed paste off */
    term_add_restore("rmcup");
    term_add_restore("cnorm");
    term_add_restore("sgr0");
    raw();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    /* bracketed paste: a pasted Enter is text, not "send" (screen.c) */
    define_key("\033[200~", UI_KEY_PASTE_BEGIN);
    define_key("\033[201~", UI_KEY_PASTE_END);
    fputs("\033[?2004h", stdout);
    fflush(stdout);
    term_theme = term_pick_theme(theme);
    term_init_colours();
    term_install_signals();
    return 0;
}

void term_close(void)
{
    if (!term_active) return;
    term_active = 0;
    curs_set(1);
    fputs("\033[?2004l", stdout);
    fflush(stdout);
    endwin();
    delscreen(term_screen);
    term_screen = NULL;
    term_reset_signals();
    if (term_have_saved) tcsetattr(STDIN_FILENO, TCSADRAIN, &term_saved);
}
