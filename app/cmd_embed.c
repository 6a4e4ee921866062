/*
** cmd_embed.c: `kbchat embed`: embedding vectors from a BERT-family model.
*/
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "engine/engine.h"

/* Tokenizes text with [CLS]/[SEP] and embeds it into out (n_embd floats). */
static int embed_text(KbModel *m, const char *text, size_t len, bool normalize, KbTokens *ids, float *out)
{
    ids->n = 0;
    if (tokenizer_encode(model_tokenizer(m), text, len, KB_TOK_ADD_SPECIAL, ids) != KB_OK) return CLI_EXIT_FAIL;
    const int32_t *seq = ids->ids;
    if (model_embed(m, &seq, &ids->n, 1, normalize, out) != KB_OK) {
        cli_print_errorf("embed: %s", model_errmsg(m));
        return CLI_EXIT_FAIL;
    }
    return 0;
}

static void print_vector(const char *tag, const float *v, int64_t n)
{
    if (tag) printf("%s", tag);
    for (int64_t i = 0; i < n; i++) printf(i || tag ? " %.7g" : "%.7g", v[i]);
    putchar('\n');
}

/* --file: text, ids and the pooled vector for every line. */
static int embed_lines(KbModel *m, const char *text, size_t len, KbTokens *ids, float *vec)
{
    int code = 0;
    for (size_t start = 0; start < len && code == 0;) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        code = embed_text(m, text + start, end - start, false, ids, vec);
        if (code == 0) {
            printf("text %.*s\nids", (int)(end - start), text + start);
            for (size_t i = 0; i < ids->n; i++) printf(" %d", ids->ids[i]);
            putchar('\n');
            print_vector("embd", vec, model_n_embd(m));
        }
        start = end + 1;
    }
    return code;
}

int cmd_embed(const CliArgs *a, const char *const *args, int n_args)
{
    const char *file = a->value[CLI_OPT_FILE];
    if ((file != NULL) == (n_args == 1)) {
        fputs("kbchat: embed: give TEXT or --file FILE (one of them)\nusage: kbchat embed [--file LINES.txt] [TEXT]\n", stderr);
        return CLI_EXIT_USAGE;
    }
    KbConfig cfg = {0};
    KbModel *m = NULL;
    int code = cli_open_model(a, &cfg, &m);
    if (code == 0 && !model_is_encoder(m)) {
        cli_print_errorf("embed: %s is a %s model, not an embedding model", cfg.model_path, model_arch_name(m));
        code = CLI_EXIT_FAIL;
    }
    float *vec = m ? malloc((size_t)model_n_embd(m) * sizeof *vec) : NULL;
    KbTokens ids = {0};
    if (code == 0 && vec == NULL) code = CLI_EXIT_FAIL;
    if (code == 0 && file) {
        char *text = NULL;
        size_t len = 0;
        GError *gerr = NULL;
        if (!g_file_get_contents(file, &text, &len, &gerr)) {
            cli_print_error(gerr->message);
            g_error_free(gerr);
            code = CLI_EXIT_FAIL;
        } else {
            code = embed_lines(m, text, len, &ids, vec);
        }
        g_free(text);
    } else if (code == 0) {
        code = embed_text(m, args[0], strlen(args[0]), true, &ids, vec);
        if (code == 0) print_vector(NULL, vec, model_n_embd(m));
    }
    kb_tokens_free(&ids);
    free(vec);
    model_close(m);
    config_free(&cfg);
    return code;
}
