/*
** config.h: kbchat's configuration, read from config.yaml with libyaml.
**
** The configuration is one typed struct, KbConfig, filled in three layers:
** built-in defaults, then one YAML file (the first found of: --config FILE,
** $KBCHAT_CONFIG, $XDG_CONFIG_HOME/kbchat/config.yaml or
** ~/.config/kbchat/config.yaml, ./config.yaml), then command-line overrides
** (config_set). Every value remembers where it came from, for `kbchat config`.
**
** The file is hostile input: it is limited in size, must be one YAML mapping
** of known sections, and each value is checked against its type and range.
** The first error stops loading and leaves one message in cfg->errmsg of the
** form  "<file>:<line>: <key>: expected <what>, got <value>". Unknown keys are
** warnings (cfg->warnings) that suggest the nearest known key.
*/
#ifndef KB_CONFIG_H
#define KB_CONFIG_H

#include <stdio.h>
#include <stdint.h>

#define KB_CONFIG_MAX_BYTES (1 << 20) /* a larger config.yaml is refused */

typedef struct KbConfig {
    /* model: the chat model */
    char *model_path;         /* model.path: GGUF file; "" = none configured */
    char *model_template;     /* model.template: "auto" or a chat template name */
    int64_t context_size;     /* model.context_size: tokens; 0 = the model's own */
    int64_t threads;          /* model.threads: resolved; 0 in the file = all cores */

    /* embedding */
    char *embedding_model;    /* embedding.model: GGUF path, "chat", or "none" */

    /* sampling */
    double temperature;       /* sampling.temperature 0..5; 0 = greedy */
    int64_t top_k;            /* sampling.top_k 0..1000; 0 = off */
    double top_p;             /* sampling.top_p 0..1; 1 = off */
    double min_p;             /* sampling.min_p 0..1; 0 = off */
    double repeat_penalty;    /* sampling.repeat_penalty 0.5..5; 1 = off */
    int64_t repeat_last_n;    /* sampling.repeat_last_n 0..65536 */
    int64_t seed;             /* sampling.seed -1 (random) .. 4294967295 */
    int64_t max_tokens;       /* sampling.max_tokens 1..1048576 */

    /* storage */
    char *data_dir;           /* data_dir: resolved absolute path */

    /* chunking */
    int64_t chunk_size;       /* chunking.size 50..20000 characters */
    int64_t chunk_overlap;    /* chunking.overlap 0..size-1 characters */

    /* kb: the per-document budget of a sync */
    int64_t document_time_limit; /* kb.document_time_limit 1..86400 seconds */
    int64_t document_text_limit; /* kb.document_text_limit 4096..1073741824 bytes */
    /* not a key: the program a sync runs to extract PDFs in a child
    ** process (RagSyncOptions.extractor), set by cli_load_config to kbchat
    ** itself; NULL (config_init) = in this process, as in the test programs,
    ** whose own executable is no extractor */
    const char *pdf_extractor;

    /* retrieval */
    int64_t retrieval_top_k;  /* retrieval.top_k 1..100 */
    double score_threshold;   /* retrieval.score_threshold 0..1 */

    /* prompt */
    char *system_prompt;      /* prompt.system: "" = the template's default */
    char *prompt_template;    /* prompt.template: "" = built-in; else must hold
                                 {context} and {question} */

    /* conversation */
    char *answer_fallback;    /* answer.fallback: "strict" or "model" */
    int64_t answer_reserve;   /* conversation.answer_reserve 16..1048576 tokens */

    /* ui */
    char *theme;              /* ui.theme: "dark", "light" or "mono" */

    /* where things came from */
    char *file;               /* the YAML file read, NULL when none */
    const char *file_origin;  /* how it was found: "--config", "$KBCHAT_CONFIG",
                                 "$XDG_CONFIG_HOME", "~/.config", "./config.yaml" */
    char **sources;           /* per key (config_key_count()), e.g. "default",
                                 "config.yaml:12", "--model" */
    char **warnings;          /* n_warnings messages, one line each */
    int n_warnings;
    char errmsg[1024];        /* the error of the last failed call */
} KbConfig;

/* Fills cfg with the built-in defaults (threads resolved to the number of
** online cores, data_dir resolved from $XDG_DATA_HOME or $HOME).
** Returns KB_OK or KB_ENOMEM. Free with config_free() in either case. */
int config_init(KbConfig *cfg /* OUT */);

/* config_init, then reads the first configuration file found in the lookup
** order (cli_path is --config's argument or NULL). A file named by --config
** or $KBCHAT_CONFIG must exist; the others are skipped when absent.
** Returns KB_OK; KB_EIO when a named or found file cannot be read;
** KB_EFORMAT for malformed YAML or a bad value; KB_ENOMEM.
** On failure cfg->errmsg says what and where; free with config_free(). */
int config_load(KbConfig *cfg /* OUT */, const char *cli_path);

/* Reads one YAML file on top of the values already in cfg (used by
** config_load, and by tests). Same return codes as config_load. */
int config_load_file(KbConfig *cfg, const char *path);

/* Sets one key from text, as if it had been read from YAML, validating it;
** `source` is recorded for `kbchat config` (e.g. "--model").
** Returns KB_OK, KB_ENOTFOUND (unknown key), KB_EFORMAT (bad value), KB_ENOMEM. */
int config_set(KbConfig *cfg, const char *key, const char *value, const char *source);

/* Writes the effective configuration as YAML, each value commented with its
** source, to out. */
void config_print(const KbConfig *cfg, FILE *out);

/* Number of keys, and the dotted name of key i ("retrieval.top_k"). */
int config_key_count(void);
const char *config_key_name(int i);
/* Index of a dotted key, or -1. */
int config_key_index(const char *key);

/* Frees everything config_init/config_load allocated; the struct is left
** zeroed. Safe on a zeroed or partially initialised struct. */
void config_free(KbConfig *cfg);

#endif /* KB_CONFIG_H */
