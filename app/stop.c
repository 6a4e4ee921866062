/*
** stop.c: the cancel flag of an answer, from SIGINT or a front end, and the
** KBCHAT_TEST_HOLD_PROMPT test hook (see stop.h).
*/
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "app/stop.h"

/* A signal handler may only store to a lock-free atomic. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free for the SIGINT handler");

static atomic_int sigint_flag; /* set by on_sigint: the one piece of global state */

/* The handler of SIGINT (and of SIGTERM and SIGHUP under stop_catch_quit):
** stores the signal's number, nonzero, in the flag (async-signal-safe: a
** lock-free store). */
static void on_sigint(int sig)
{
    atomic_store(&sigint_flag, sig);
}

atomic_int *stop_sigint_flag(void) { return &sigint_flag; }

int stop_catch_sigint(void)
{
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    atomic_store(&sigint_flag, 0);
    return sigaction(SIGINT, &sa, NULL);
}

static const int quit_signals[] = {SIGINT, SIGTERM, SIGHUP};

/* A signal ignored when kbchat started (`nohup kbchat kb sync` ignores
** SIGHUP) stays ignored: the user asked the sync to survive it. */
int stop_catch_quit(void)
{
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESETHAND}, old;
    sigemptyset(&sa.sa_mask);
    atomic_store(&sigint_flag, 0);
    for (size_t i = 0; i < sizeof quit_signals / sizeof quit_signals[0]; i++) {
        if (sigaction(quit_signals[i], NULL, &old) != 0) return -1;
        if (old.sa_handler != SIG_IGN && sigaction(quit_signals[i], &sa, NULL) != 0) return -1;
    }
    return 0;
}

/* Only the handlers stop_catch_quit installed are reset; ignored signals
** stay ignored. */
void stop_release_quit(void)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL}, cur;
    sigemptyset(&dfl.sa_mask);
    for (size_t i = 0; i < sizeof quit_signals / sizeof quit_signals[0]; i++)
        if (sigaction(quit_signals[i], NULL, &cur) == 0 && cur.sa_handler == on_sigint)
            sigaction(quit_signals[i], &dfl, NULL);
}

void stop_release_sigint(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* cannot fail for SIGINT and SIG_DFL */
}

/* Creates the empty file path (the hold hook's sign that it waits). */
static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
}

/* The KBCHAT_TEST_HOLD_PROMPT hook: after a completed batch, creates
** FILE.held and waits until FILE exists or the cancel flag (user) is set. */
static void hold_after_batch(void *user, bool batch_done)
{
    const atomic_int *flag = user;
    const char *file = getenv("KBCHAT_TEST_HOLD_PROMPT");
    char held[PATH_MAX];
    if (!batch_done || file == NULL || access(file, F_OK) == 0 || atomic_load(flag)) return;
    if (snprintf(held, sizeof held, "%s.held", file) < (int)sizeof held) touch(held);
    while (!atomic_load(flag) && access(file, F_OK) != 0) nanosleep(&(struct timespec){0, 10000000L}, NULL);
}

void stop_watch(KbModel *m, atomic_int *flag)
{
    if (m == NULL) return;
    model_set_cancel(m, flag);
    bool hold = flag && getenv("KBCHAT_TEST_HOLD_PROMPT") && getenv("KBCHAT_TEST_HOLD_PROMPT")[0];
    model_set_check_hook(m, hold ? hold_after_batch : NULL, hold ? flag : NULL);
}
