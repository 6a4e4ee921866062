/*
** model_info.c: `kbchat model info`: a human-readable summary of a GGUF file
** (or of a chatglm.cpp GGML file: its config record, embedded tokenizer and
** tensors).
**
** Only the header, metadata and tensor infos are read (the tensors' data is
** never touched), so the summary of a multi-gigabyte model takes
** milliseconds. Every string printed comes from the file and is hostile:
** it goes through print_text(), which escapes control characters and invalid
** UTF-8 so a crafted model cannot send escape sequences to the terminal.
*/
#include <glib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "app/app.h"
#include "engine/engine.h"

/* --- printing hostile text --- */

/* Prints at most max_chars characters of s[0..len) to out, escaped for the
** terminal as a one-line field (app/term_text.h: controls and invalid UTF-8
** as \xNN, \uNNNN) and ending with "..." when cut. Stops at the first
** newline when first_line is set. */
static void print_text(FILE *out, const char *s, size_t len, size_t max_chars, int first_line)
{
    const char *p = s, *end = s + len;
    size_t chars = 0;
    GString *shown = g_string_new(NULL);
    while (p < end) {
        if (chars == max_chars) {
            g_string_append(shown, "...");
            break;
        }
        gunichar c = g_utf8_get_char_validated(p, end - p);
        const char *next = c == (gunichar)-1 || c == (gunichar)-2 ? p + 1 : g_utf8_next_char(p);
        if (c == '\n' && first_line) {
            if (next < end) g_string_append(shown, " ...");
            break;
        }
        term_escape_append(shown, p, (size_t)(next - p), TERM_LINE);
        p = next;
        chars++;
    }
    fwrite(shown->str, 1, shown->len, out);
    g_string_free(shown, TRUE);
}

/* Prints the string value of key, or `missing` when absent or not a string. */
static void print_str_key(FILE *out, const GgufFile *g, const char *key, const char *missing)
{
    const char *s;
    size_t len;
    if (gguf_get_str(g, key, &s, &len) == KB_OK) print_text(out, s, len, 100, 1);
    else fputs(missing, out);
    fputc('\n', out);
}

/* Reads the integer `<arch>.<suffix>`; returns -1 when absent or not an integer. */
static int64_t arch_int(const GgufFile *g, const char *arch, const char *suffix)
{
    char key[256];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_get_int(g, key, &v) == KB_OK ? v : -1;
}

/* Formats a byte count as "1.5 GiB". */
static const char *human_bytes(char *buf, size_t size, uint64_t n)
{
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0) snprintf(buf, size, "%llu bytes", (unsigned long long)n);
    else snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

/* Formats a parameter count as "1.10 B", "260.1 K". */
static const char *human_count(char *buf, size_t size, uint64_t n)
{
    if (n >= 1000000000ull) snprintf(buf, size, "%.2f B", n / 1e9);
    else if (n >= 1000000ull) snprintf(buf, size, "%.2f M", n / 1e6);
    else if (n >= 1000ull) snprintf(buf, size, "%.1f K", n / 1e3);
    else snprintf(buf, size, "%llu", (unsigned long long)n);
    return buf;
}

/* Names llama.cpp's general.file_type values (enum llama_ftype). */
static const char *file_type_name(int64_t ft)
{
    static const struct { int id; const char *name; } names[] = {
        {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {7, "Q8_0"}, {8, "Q5_0"},
        {9, "Q5_1"}, {10, "Q2_K"}, {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"},
        {14, "Q4_K_S"}, {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},
        {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"}, {23, "IQ3_XXS"},
        {24, "IQ1_S"}, {25, "IQ4_NL"}, {26, "IQ3_S"}, {27, "IQ3_M"}, {28, "IQ2_S"},
        {29, "IQ2_M"}, {30, "IQ4_XS"}, {31, "IQ1_M"}, {32, "BF16"}, {36, "TQ1_0"}, {37, "TQ2_0"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].id == ft) return names[i].name;
    return "unknown";
}

/* --- sections --- */

/* Architecture and shape lines. */
static void print_shape(FILE *out, const GgufFile *g, const char *arch)
{
    int64_t n_ctx = arch_int(g, arch, "context_length");
    int64_t n_layer = arch_int(g, arch, "block_count");
    int64_t n_embd = arch_int(g, arch, "embedding_length");
    int64_t n_head = arch_int(g, arch, "attention.head_count");
    int64_t n_head_kv = arch_int(g, arch, "attention.head_count_kv");
    int64_t n_ff = arch_int(g, arch, "feed_forward_length");
    if (n_ctx >= 0) fprintf(out, "context length:  %lld\n", (long long)n_ctx);
    else fprintf(out, "context length:  unknown (no %s.context_length)\n", arch);
    if (n_layer >= 0) fprintf(out, "layers:          %lld\n", (long long)n_layer);
    if (n_embd >= 0) fprintf(out, "embedding size:  %lld\n", (long long)n_embd);
    if (n_head > 0) {
        fprintf(out, "heads:           %lld", (long long)n_head);
        if (n_head_kv < 0) n_head_kv = n_head;
        fprintf(out, " (KV heads %lld", (long long)n_head_kv);
        if (n_embd > 0 && n_embd % n_head == 0) fprintf(out, ", head size %lld", (long long)(n_embd / n_head));
        fputs(")\n", out);
    }
    if (n_ff >= 0) fprintf(out, "feed-forward:    %lld\n", (long long)n_ff);
}

/* Vocabulary size, tokenizer kind and chat template. */
static void print_tokenizer(FILE *out, const GgufFile *g, const char *arch)
{
    GgufValueType et;
    uint64_t n_vocab = 0;
    int64_t i = gguf_find_key(g, "tokenizer.ggml.tokens");
    int have_vocab = i >= 0 && gguf_kv_get_arr(g, i, &et, &n_vocab) == KB_OK;
    if (!have_vocab) {
        int64_t v = arch_int(g, arch, "vocab_size");
        have_vocab = v >= 0;
        n_vocab = have_vocab ? (uint64_t)v : 0;
    }
    const char *kind;
    size_t kind_len;
    fputs("vocabulary:      ", out);
    if (have_vocab) fprintf(out, "%llu tokens", (unsigned long long)n_vocab);
    else fputs("unknown size", out);
    if (gguf_get_str(g, "tokenizer.ggml.model", &kind, &kind_len) == KB_OK) {
        fputs(", tokenizer ", out);
        print_text(out, kind, kind_len, 40, 1);
        if (kind_len == 5 && memcmp(kind, "llama", 5) == 0) fputs(" (SentencePiece)", out);
        else if (kind_len == 4 && memcmp(kind, "gpt2", 4) == 0) fputs(" (byte-level BPE)", out);
        else if (kind_len == 4 && memcmp(kind, "bert", 4) == 0) fputs(" (WordPiece)", out);
    } else {
        fputs(", no tokenizer", out);
    }
    fputc('\n', out);
    fputs("chat template:   ", out);
    print_str_key(out, g, "tokenizer.chat_template", "none");
}

/* Counts and bytes per tensor type, and the total parameter count, of a
** GGUF or a GGML file's tensors. */
typedef struct TypeTally {
    uint64_t count[KB_TYPE_COUNT], bytes[KB_TYPE_COUNT], params, total;
} TypeTally;

static void tally_add(TypeTally *y, const GgufTensor *t)
{
    y->count[t->type]++;
    y->bytes[t->type] += t->n_bytes;
    y->params += t->n_elements;
    y->total += t->n_bytes;
}

/* Prints the parameter count and the table of tensor types. */
static void print_tally(FILE *out, const TypeTally *y)
{
    const uint64_t *count = y->count, *bytes = y->bytes, params = y->params, total = y->total;
    char b1[32], b2[32];
    fprintf(out, "parameters:      %s (%llu)\n", human_count(b1, sizeof b1, params), (unsigned long long)params);
    fprintf(out, "tensor types:\n  %-8s %8s %14s %7s\n", "type", "tensors", "bytes", "share");
    int unsupported = 0;
    for (int ty = 0; ty < KB_TYPE_COUNT; ty++) {
        if (count[ty] == 0) continue;
        const KbTypeInfo *ti = kb_type_info(ty);
        fprintf(out, "  %-8s %8llu %14s %6.1f%%%s\n", ti->name, (unsigned long long)count[ty],
                human_bytes(b2, sizeof b2, bytes[ty]), total ? 100.0 * (double)bytes[ty] / (double)total : 0.0,
                ti->supported ? "" : "  (not supported by kbchat)");
        unsupported += !ti->supported;
    }
    if (unsupported) fputs("note: kbchat cannot run tensors of the types marked above\n", out);
}

static void print_tensor_types(FILE *out, const GgufFile *g)
{
    TypeTally y = {0};
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) tally_add(&y, gguf_tensor(g, i));
    print_tally(out, &y);
}

/* --- chatglm.cpp GGML files --- */

/* The tokenizer line of a GGML file: built from the embedded model, so a
** broken one is reported here too. */
static void print_ggml_tokenizer(FILE *out, const GgmlFile *f)
{
    Tokenizer *tok = NULL;
    char err[256];
    const GgmlConfig *c = ggml_file_config(f);
    fprintf(out, "vocabulary:      %lld tokens", (long long)c->n_vocab);
    if (ggml_file_tokenizer(f, &tok, err, sizeof err) != KB_OK) {
        fputs(", tokenizer broken: ", out);
        print_text(out, err, strlen(err), 200, 1);
        fputc('\n', out);
        return;
    }
    int32_t used = 0;
    for (int32_t id = 0; id < tokenizer_n_vocab(tok); id++) {
        size_t len;
        tokenizer_text(tok, id, &len);
        used += len > 0; /* the rest pads the vocabulary to the embedding's rows */
    }
    fprintf(out, ", tokenizer %s (%d tokens in the file)\n",
            tokenizer_kind(tok) == KB_TOK_BPE ? "tiktoken vocabulary (byte-level BPE)" : "SentencePiece model", used);
    static const char *const templates[] = {"", "chatglm", "chatglm2", "chatglm3", "chatglm4"};
    fprintf(out, "chat template:   none in the file (the model type's: %s)\n", templates[c->model_type]);
    tokenizer_free(tok);
}

/* Prints the summary of a chatglm.cpp GGML file. */
static int print_ggml(const char *path, FILE *out, char *err, size_t errlen)
{
    GgmlFile *f = NULL;
    int rc = ggml_file_open(path, &f, err, errlen);
    if (rc != KB_OK) return rc;
    const GgmlConfig *c = ggml_file_config(f);
    char b[32];
    fputs("file:            ", out);
    print_text(out, path, strlen(path), 400, 0);
    fprintf(out, "\nsize on disk:    %s (%llu bytes)\n", human_bytes(b, sizeof b, ggml_file_size(f)),
            (unsigned long long)ggml_file_size(f));
    fprintf(out, "format:          chatglm.cpp GGML, model type %d, config version %d, %lld tensors\n", c->model_type,
            c->version, (long long)ggml_file_n_tensors(f));
    fprintf(out, "architecture:    %s\n", c->model_type == GGML_MODEL_CHATGLM ? "chatglm1" : "chatglm");
    fprintf(out, "name:            %s\n", ggml_file_model_name(c->model_type));
    const KbTypeInfo *ti = kb_type_info(c->dtype);
    fprintf(out, "file type:       %s (the converter's weight type)\n", ti ? ti->name : "unknown");
    fprintf(out, "context length:  %lld\nlayers:          %lld\nembedding size:  %lld\n", (long long)c->n_ctx,
            (long long)c->n_layer, (long long)c->n_embd);
    fprintf(out, "heads:           %lld (KV heads %lld, head size %lld)\nfeed-forward:    %lld\n", (long long)c->n_head,
            (long long)c->n_head_kv, (long long)(c->n_embd / c->n_head), (long long)c->n_ff);
    print_ggml_tokenizer(out, f);
    TypeTally y = {0};
    for (int64_t i = 0; i < ggml_file_n_tensors(f); i++) tally_add(&y, ggml_file_tensor(f, i));
    print_tally(out, &y);
    ggml_file_close(f);
    return KB_OK;
}

/* --- the load check --- */

/* A vocabulary-only file (llama.cpp's vocab_only: no tensors at all) is
** checked by loading its tokenizer, which is all `kbchat tokenize` uses. */
static int check_vocab_only(const char *path, char *err, size_t errlen)
{
    GgufFile *g = NULL;
    Tokenizer *tok = NULL;
    char why[768];
    int rc = gguf_open(path, &g, err, errlen);
    if (rc == KB_OK) rc = tokenizer_load(g, &tok, why, sizeof why);
    if (rc != KB_OK && g) snprintf(err, errlen, "%s: cannot be loaded: %s", path, why);
    tokenizer_free(tok);
    gguf_close(g);
    return rc;
}

/* Runs the engine's own load check (model_check: the same code as
** model_open) on the file at path, after its summary was printed. */
static int check_loads(const char *path, bool vocab_only_ok, int64_t n_tensors, char *err, size_t errlen)
{
    if (vocab_only_ok && n_tensors == 0) return check_vocab_only(path, err, errlen);
    char why[768];
    int rc = model_check(path, why, sizeof why);
    if (rc != KB_OK) snprintf(err, errlen, "%s: cannot be loaded: %s", path, why);
    return rc;
}

/* Prints the summary of the GGUF (or chatglm.cpp GGML) file at path, then
** checks that it loads; see app.h. */
int model_info_print(const char *path, bool vocab_only_ok, FILE *out, char *err, size_t errlen)
{
    if (ggml_file_probe(path)) { /* by magic, not name */
        int rc = print_ggml(path, out, err, errlen);
        fflush(out);
        return rc == KB_OK ? check_loads(path, false, -1, err, errlen) : rc;
    }
    GgufFile *g = NULL;
    int rc = gguf_open(path, &g, err, errlen);
    if (rc != KB_OK) return rc;
    char b[32];
    const char *arch_s;
    size_t arch_len;
    char arch[128] = "";
    if (gguf_get_str(g, "general.architecture", &arch_s, &arch_len) == KB_OK && arch_len < sizeof arch &&
        memchr(arch_s, 0, arch_len) == NULL) {
        memcpy(arch, arch_s, arch_len);
        arch[arch_len] = '\0';
    }
    int64_t ft;
    fputs("file:            ", out);
    print_text(out, path, strlen(path), 400, 0);
    fprintf(out, "\nsize on disk:    %s (%llu bytes)\n", human_bytes(b, sizeof b, gguf_file_size(g)),
            (unsigned long long)gguf_file_size(g));
    fprintf(out, "format:          GGUF v%u, %lld metadata keys, %lld tensors, alignment %llu\n", gguf_version(g),
            (long long)gguf_n_kv(g), (long long)gguf_n_tensors(g), (unsigned long long)gguf_alignment(g));
    fputs("architecture:    ", out);
    print_str_key(out, g, "general.architecture", "unknown (no general.architecture)");
    fputs("name:            ", out);
    print_str_key(out, g, "general.name", "none");
    if (gguf_get_int(g, "general.file_type", &ft) == KB_OK)
        fprintf(out, "file type:       %s (general.file_type %lld)\n", file_type_name(ft), (long long)ft);
    if (arch[0]) print_shape(out, g, arch);
    print_tokenizer(out, g, arch);
    print_tensor_types(out, g);
    int64_t n_tensors = gguf_n_tensors(g);
    gguf_close(g);
    fflush(out); /* what could be read comes before the failure on stderr */
    return check_loads(path, vocab_only_ok, n_tensors, err, errlen);
}
