/*
** cli.h: kbchat's command line: options, subcommands and their help.
** Used by main.c only.
*/
#ifndef KB_CLI_H
#define KB_CLI_H

/* Exit codes. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1  /* the command ran and failed (bad file, bad config) */
#define CLI_EXIT_USAGE 2 /* the command line itself is wrong */

/* Runs kbchat with the given arguments and returns the process exit code.
** Writes results to stdout and diagnostics to stderr. */
int cli_run(int argc, char **argv);

#endif /* KB_CLI_H */
