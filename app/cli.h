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
#define CLI_EXIT_STOPPED 130 /* Ctrl-C stopped the answer (128 + SIGINT, as a shell reports it) */

/* This very kbchat, whatever path started it: the PDF extractor a sync
** runs as a child process ("kbchat __extract-pdf", rag_extract_pdf_main). */
#define CLI_SELF_EXE "/proc/self/exe"

#include "app/app.h"
#include "engine/engine.h"
#include "rag/rag.h"

/* Command-specific options, one bit each. The table of names and whether
** each takes a value is in cli.c (cli_options); a command lists the bits it
** accepts. A value given twice keeps the last, except repeatable options
** (CLI_OPT_FOLDER), whose values are all kept in order. */
typedef enum CliOpt {
    CLI_OPT_SPECIAL = 0, /* --special */
    CLI_OPT_BOS,         /* --bos */
    CLI_OPT_FILE,        /* --file FILE */
    CLI_OPT_TOKENS,      /* --tokens 1,2,3 */
    CLI_OPT_GEN,         /* --gen N */
    CLI_OPT_FOLLOW,      /* --follow 4,5,6 */
    CLI_OPT_THREADS,     /* -t, --threads N */
    CLI_OPT_PROMPT,      /* -p, --prompt TEXT */
    CLI_OPT_N_PREDICT,   /* -n, --n-predict N */
    CLI_OPT_TEMP,        /* --temp T */
    CLI_OPT_TOP_K,       /* --top-k K */
    CLI_OPT_TOP_P,       /* --top-p P */
    CLI_OPT_MIN_P,       /* --min-p P */
    CLI_OPT_REPEAT_PENALTY, /* --repeat-penalty R */
    CLI_OPT_SEED,        /* --seed S */
    CLI_OPT_CTX_SIZE,    /* --ctx-size N */
    CLI_OPT_FOLDER,      /* --folder DIR (repeatable) */
    CLI_OPT_ALL,         /* --all */
    CLI_OPT_YES,         /* --yes */
    CLI_OPT_JSON,        /* --json */
    CLI_OPT_REPS,        /* -r, --reps N */
    CLI_OPT_KB,          /* --kb NAME */
    CLI_OPT_MODE,        /* --mode words|keyword|vector|hybrid */
    CLI_OPT_RETRIEVE_ONLY, /* --retrieve-only */
    CLI_OPT_SHOW_PROMPT, /* --show-prompt */
    CLI_OPT_FALLBACK,    /* --fallback strict|model */
    CLI_OPT_DEPTH,       /* -d, --n-depth N */
    CLI_OPT_RAW,         /* --raw: model output unescaped */
    CLI_OPT_COUNT
} CliOpt;
#define CLI_BIT(o) (1u << (o))

/* The full-screen chat (ui/ui.h), handed to cli_run by main: app/ sits
** below ui/ and must not call it by name. See ui/ui.h for each function. */
typedef struct CliFullScreen {
    int (*run)(ChatApp *app, const char *model_path, const char *kb, const char *cfg_file, const char *theme,
               char *err, size_t errlen);
    int (*quit_signal)(void);
    const char *(*library_version)(void);
} CliFullScreen;

/* What the command line asked for. */
typedef struct CliArgs {
    const CliFullScreen *ui;             /* the full-screen chat (cli_run's) */
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

/* Returns the long name of option o ("--top-k"). */
const char *cli_option_name(CliOpt o);

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
int cmd_kb_create(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_add(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_list(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_status(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_files(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_sync(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_remove(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_delete(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_search(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_check(const CliArgs *a, const char *const *args, int n_args);
int cmd_logits(const CliArgs *a, const char *const *args, int n_args);
int cmd_generate(const CliArgs *a, const char *const *args, int n_args);
int cmd_model_quantize(const CliArgs *a, const char *const *args, int n_args);
int cmd_bench(const CliArgs *a, const char *const *args, int n_args);
int cmd_embed(const CliArgs *a, const char *const *args, int n_args);
int cmd_chat(const CliArgs *a, const char *const *args, int n_args);
int cmd_kb_rebuild(const CliArgs *a, const char *const *args, int n_args);
int cmd_ask(const CliArgs *a, const char *const *args, int n_args);

/* Shared by the knowledge-base commands (cmd_kb.c, cmd_ask.c): the
** configured embedding model (embedding.model; *e NULL when none), --top-k
** or retrieval.top_k, the words of a query joined, hits as JSON (with each
** retriever's rank when `ranks`), a passage indented by four spaces and
** escaped for the terminal (app/term_text.h), "kbchat: MSG" and "kbchat:
** note: NOTE" on stderr with the message escaped (cli_print_error and
** cli_print_errorf, which formats it first, return CLI_EXIT_FAIL). The int functions return an exit code, printing any
** error. */
int cli_open_embedder(const KbConfig *cfg, RagEmbedder **e);
int cli_top_k(const CliArgs *a, const KbConfig *cfg, int *k);
char *cli_join_words(const char *const *w, int n);
void cli_print_hits_json(FILE *out, const RagHit *h, int n, int ranks);
void cli_print_passage(FILE *out, const char *text);
int cli_print_error(const char *msg);
int cli_print_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_print_note(const char *note);

/* Loads the configuration and opens the model of --model / model.path with
** -t and --ctx-size (or the configuration's values), printing any error.
** Returns an exit code (0 = opened); free with model_close and config_free. */
int cli_open_model(const CliArgs *a, KbConfig *cfg, KbModel **m);

/* Runs kbchat with the given arguments and returns the process exit code.
** Writes results to stdout and diagnostics to stderr; ui is the full-screen
** chat that a bare `kbchat` on a terminal starts. */
int cli_run(int argc, char **argv, const CliFullScreen *ui);

#endif /* KB_CLI_H */
