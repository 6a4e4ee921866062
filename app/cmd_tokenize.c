/*
** cmd_tokenize.c: `kbchat tokenize` and `kbchat detokenize`, the command-line
** view of a model's tokenizer (and how the tokenizers are checked against
** llama.cpp's test vectors).
*/
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "engine/engine.h"

#define VOCAB_TEST_SEP "\n__ggml_vocab_test__\n"

/* The model file and its tokenizer. */
typedef struct TokModel {
    GgufFile *g;      /* a GGUF model, or */
    GgmlFile *ggml;   /* a chatglm.cpp GGML model */
    Tokenizer *tok;
} TokModel;

static void tok_model_close(TokModel *m)
{
    tokenizer_free(m->tok);
    gguf_close(m->g);
    ggml_file_close(m->ggml);
}

/* Builds the tokenizer of the model file at path, GGUF or (detected by its
** magic) chatglm.cpp GGML. Returns the KB_* code with the message in err. */
static int tok_model_load(const char *path, TokModel *m, char *err, size_t errlen)
{
    if (ggml_file_probe(path)) {
        int rc = ggml_file_open(path, &m->ggml, err, errlen);
        return rc == KB_OK ? ggml_file_tokenizer(m->ggml, &m->tok, err, errlen) : rc;
    }
    int rc = gguf_open(path, &m->g, err, errlen);
    return rc == KB_OK ? tokenizer_load(m->g, &m->tok, err, errlen) : rc;
}

/* Opens the model named by --model or model.path and builds its tokenizer,
** printing any error. Returns an exit code (0 = opened). */
static int tok_model_open(const CliArgs *a, TokModel *m)
{
    KbConfig cfg;
    char err[1024];
    memset(m, 0, sizeof *m);
    int code = CLI_EXIT_OK;
    if (cli_load_config(a, &cfg) != KB_OK) {
        code = CLI_EXIT_FAIL;
    } else if (cfg.model_path[0] == '\0') {
        fputs("kbchat: no model given: pass --model FILE or set model.path in the configuration\n", stderr);
        code = CLI_EXIT_USAGE;
    } else if (tok_model_load(cfg.model_path, m, err, sizeof err) != KB_OK) {
        cli_print_errorf("%s%s%s", strstr(err, cfg.model_path) ? "" : cfg.model_path,
                         strstr(err, cfg.model_path) ? "" : ": ", err);
        code = CLI_EXIT_FAIL;
    } else if (tokenizer_warning(m->tok)) {
        cli_print_errorf("warning: %s: %s", cfg.model_path, tokenizer_warning(m->tok));
    }
    config_free(&cfg);
    if (code != CLI_EXIT_OK) tok_model_close(m);
    return code;
}

/* Reads all of standard input into a malloc'd buffer. */
static char *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

/* Tokenizes text and prints the ids on one line. Returns an exit code. */
static int print_ids(const Tokenizer *tok, const char *text, size_t len, unsigned flags)
{
    KbTokens ids = {0};
    if (tokenizer_encode(tok, text, len, flags, &ids) != KB_OK) {
        fputs("kbchat: out of memory while tokenizing\n", stderr);
        kb_tokens_free(&ids);
        return CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.ids[i]);
    putchar('\n');
    kb_tokens_free(&ids);
    return CLI_EXIT_OK;
}

/* --file: one line of ids per piece between separators; the (empty)
** remainder after the last separator is not a piece. */
static int tokenize_pieces(const Tokenizer *tok, const char *text, size_t len)
{
    const size_t sep_len = strlen(VOCAB_TEST_SEP);
    int code = CLI_EXIT_OK;
    for (size_t start = 0; start < len && code == CLI_EXIT_OK;) {
        const char *sep = memmem(text + start, len - start, VOCAB_TEST_SEP, sep_len);
        size_t end = sep ? (size_t)(sep - text) : len;
        code = print_ids(tok, text + start, end - start, 0);
        start = sep ? end + sep_len : len;
    }
    return code;
}

int cmd_tokenize(const CliArgs *a, const char *const *args, int n_args)
{
    if (a->value[CLI_OPT_FILE] && n_args > 0) {
        fputs("kbchat: tokenize: give TEXT or --file FILE, not both\n", stderr);
        return CLI_EXIT_USAGE;
    }
    TokModel m;
    int code = tok_model_open(a, &m);
    if (code != CLI_EXIT_OK) return code;
    char *text = NULL;
    size_t len = 0;
    GError *gerr = NULL;
    if (a->value[CLI_OPT_FILE]) {
        if (!g_file_get_contents(a->value[CLI_OPT_FILE], &text, &len, &gerr)) {
            cli_print_error(gerr->message);
            g_error_free(gerr);
            code = CLI_EXIT_FAIL;
        } else {
            code = tokenize_pieces(m.tok, text, len);
        }
        g_free(text);
    } else if (n_args == 1) {
        unsigned flags = (cli_has(a, CLI_OPT_BOS) ? KB_TOK_ADD_SPECIAL : 0) |
                         (cli_has(a, CLI_OPT_SPECIAL) ? KB_TOK_PARSE_SPECIAL : 0);
        code = print_ids(m.tok, args[0], strlen(args[0]), flags);
    } else {
        unsigned flags = (cli_has(a, CLI_OPT_BOS) ? KB_TOK_ADD_SPECIAL : 0) |
                         (cli_has(a, CLI_OPT_SPECIAL) ? KB_TOK_PARSE_SPECIAL : 0);
        text = read_stdin(&len);
        code = text ? print_ids(m.tok, text, len, flags) : CLI_EXIT_FAIL;
        free(text);
    }
    tok_model_close(&m);
    return code;
}

/* Parses token id s; returns 0 on success. */
static int parse_id(const char *s, int32_t n_vocab, int32_t *id)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 0 || v >= n_vocab) return -1;
    *id = (int32_t)v;
    return 0;
}

int cmd_detokenize(const CliArgs *a, const char *const *args, int n_args)
{
    TokModel m;
    int code = tok_model_open(a, &m);
    if (code != CLI_EXIT_OK) return code;
    int32_t *ids = malloc((size_t)n_args * sizeof *ids);
    for (int i = 0; ids && i < n_args && code == CLI_EXIT_OK; i++) {
        if (parse_id(args[i], tokenizer_n_vocab(m.tok), &ids[i]) != 0) {
            cli_print_errorf("detokenize: '%s' is not a token id (0..%d)", args[i], tokenizer_n_vocab(m.tok) - 1);
            code = CLI_EXIT_USAGE;
        }
    }
    char *text = NULL;
    size_t len = 0;
    if (ids == NULL || (code == CLI_EXIT_OK &&
                        tokenizer_decode(m.tok, ids, (size_t)n_args,
                                         cli_has(a, CLI_OPT_SPECIAL) ? KB_DETOK_SPECIAL : 0, &text, &len) != KB_OK)) {
        fputs("kbchat: out of memory\n", stderr);
        code = CLI_EXIT_FAIL;
    }
    if (code == CLI_EXIT_OK) {
        TermStream out = {.raw = cli_has(a, CLI_OPT_RAW)};
        term_stream_write(&out, stdout, text, len, 1);
        putchar('\n');
    }
    free(text);
    free(ids);
    tok_model_close(&m);
    return code;
}
