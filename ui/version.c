/*
** version.c: the curses library the interface is built on, for
** `kbchat --version` (wide-character behaviour differs between releases).
*/
#define NCURSES_WIDECHAR 1
#include <curses.h>

#include "ui/ui.h"

const char *ui_library_version(void)
{
    return curses_version();
}
