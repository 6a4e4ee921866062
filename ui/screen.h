/*
** screen.h: the full-screen chat's loop and its background worker
** (internal to ui/; the entry point is ui_run in ui.h).
*/
#ifndef KB_UI_SCREEN_H
#define KB_UI_SCREEN_H

#include "ui/ui.h"
#include "ui/widget.h"

/* The smallest terminal the layout works in; below it a message says so. */
#define UI_MIN_COLS 60
#define UI_MIN_ROWS 15

#endif /* KB_UI_SCREEN_H */
