/*
** stop.h: stopping an answer at once, also while its prompt is evaluated.
**
** The front ends give the model a cancel flag (model_set_cancel) through
** stop_watch; the full-screen chat sets its flag on Esc or Ctrl-C, the
** line-mode commands (chat, ask, generate) through SIGINT: stop_catch_sigint
** installs a handler that sets one atomic flag, the only global state.
**
** Test hook (tests only): with KBCHAT_TEST_HOLD_PROMPT=FILE in the
** environment, an evaluation watched by stop_watch waits after each batch it
** completes, reading the cancel flag every 10 ms, until FILE exists; when it
** starts waiting it creates FILE.held. A test can thus press Esc or send
** SIGINT while the prompt is certainly being evaluated, then create FILE to
** let later evaluations run.
*/
#ifndef KB_APP_STOP_H
#define KB_APP_STOP_H

#include <stdatomic.h>

#include "engine/engine.h"

/* Makes model m (may be NULL: nothing) stop its evaluations when *flag is
** set, and installs the KBCHAT_TEST_HOLD_PROMPT hook when that is set.
** flag (NULL: none) is borrowed and must outlive m's use of it. */
void stop_watch(KbModel *m, atomic_int *flag);

/* The flag SIGINT sets while stop_catch_sigint is in force (to the
** signal's number). */
atomic_int *stop_sigint_flag(void);
/* Clears the flag and makes SIGINT set it. The handler is reset by its first
** delivery (SA_RESETHAND), so a second Ctrl-C has the default action and
** ends kbchat. Returns 0, or -1 when sigaction fails (errno). */
int stop_catch_sigint(void);
/* Gives SIGINT its default action again (Ctrl-C ends kbchat). */
void stop_release_sigint(void);

/* Like stop_catch_sigint for SIGINT, SIGTERM and SIGHUP (a long command
** such as `kb sync` that must stop cleanly when killed or when its ssh
** session drops): the flag receives the number of the signal. Each handler
** is reset by its first delivery; a signal ignored at the call (nohup) is
** left ignored. Returns 0, or -1 when sigaction fails. */
int stop_catch_quit(void);
/* Gives the signals stop_catch_quit caught their default actions again. */
void stop_release_quit(void);

#endif /* KB_APP_STOP_H */
