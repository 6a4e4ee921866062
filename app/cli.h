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

#include "app/app.h"

/* Command-specific options, one bit each. The table of names and whether
** each takes a value is in cli.c (cli_options); a command lists the bits it
** accepts. A value given twice keeps the last, except repeatable options
** (CLI_OPT_FOLDER), whose values are all kept in order. */
typedef enum CliOpt {
    CLI_OPT_SPECIAL = 0, /* --special */
    CLI_OPT_BOS,         /* --bos */
    CLI_OPT_FILE,        /* --file FILE */
    CLI_OPT_COUNT
} CliOpt;
#define CLI_BIT(o) (1u << (o))

/* What the command line asked for. */
typedef struct CliArgs {
    const char *config_path;             /* --config */
    const char *model_path;              /* --model */
    unsigned options;                    /* CLI_BIT(o) for each option given */
    const char *value[CLI_OPT_COUNT];    /* the value of each option that takes one */
    const char **repeated;               /* values of repeatable options, in order */
    int n_repeated;
    int help;                            /* --help */
    int version;                         /* --version */
    const char **words;                  /* command, subcommand and arguments, in order */
    int n_words;
} CliArgs;

/* True when option o was given. */
static inline int cli_has(const CliArgs *a, CliOpt o)
{
    return (a->options & CLI_BIT(o)) != 0;
}

/* Loads the configuration with the command line's overrides, printing
** warnings and any error to stderr. Returns the KB_* code. */
int cli_load_config(const CliArgs *a, KbConfig *cfg);

/* Commands in their own files (cmd_*.c): each returns an exit code. */
int cmd_tokenize(const CliArgs *a, const char *const *args, int n_args);
int cmd_detokenize(const CliArgs *a, const char *const *args, int n_args);

/* Runs kbchat with the given arguments and returns the process exit code.
** Writes results to stdout and diagnostics to stderr. */
int cli_run(int argc, char **argv);

#endif /* KB_CLI_H */
