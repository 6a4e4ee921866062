/*
** ui.h: the public API of kbchat's terminal interface (ncursesw).
**
** ui/ draws the full-screen chat. It calls app/ only, never SQLite or the
** engine directly; it owns the terminal state and restores it on every exit.
*/
#ifndef KB_UI_H
#define KB_UI_H

/* Returns the curses library's version string ("ncurses 6.4.20221231"). */
const char *ui_library_version(void);

#endif /* KB_UI_H */
