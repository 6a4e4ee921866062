/*
** ui.h: the public API of kbchat's terminal interface (ncursesw).
**
** ui/ draws the full-screen chat. It calls app/ only, never SQLite or the
** engine directly; it owns the terminal state and restores it on every exit
** (normal return, SIGTERM/SIGHUP, and fatal signals). See docs/ui.md.
*/
#ifndef KB_UI_H
#define KB_UI_H

#include "app/app.h"

/* Returns the curses library's version string ("ncurses 6.4.20221231"). */
const char *ui_library_version(void);

/* Runs the full-screen chat on the terminal until the user quits.
** app is the chat to drive (borrowed; no model loaded yet); model_path is
** the model to load in the background ("" or NULL: none, and the welcome
** screen explains how to get one); the last stored conversation is resumed;
** kb (NULL: none) is the knowledge base to search; cfg_file names the
** configuration file for
** that text (may be NULL); theme is ui.theme ("dark", "light", "mono").
** NO_COLOR in the environment forces the monochrome theme.
** Returns KB_OK, or KB_EIO when the terminal could not be set up (message
** in err). */
int ui_run(ChatApp *app, const char *model_path, const char *kb, const char *cfg_file, const char *theme, char *err,
           size_t errlen);

/* The signal (SIGTERM, SIGHUP, SIGINT from outside) that ended the last
** ui_run, or 0 when the user quit. The caller exits with 128 + it, as a
** shell reports a process that such a signal ended. */
int ui_quit_signal(void);

#endif /* KB_UI_H */
