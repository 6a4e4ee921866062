/*
** test_cli.c: the kbchat binary, run as a user runs it ($KBCHAT_BIN, in a
** clean environment: HOME, XDG dirs and the working directory are fresh
** temporary folders, so the developer's own configuration is never read).
**
** Expected model facts come from ../shared/testdata/README.md (tiny-llama:
** 2 layers, n_embd 256, 8 heads, 2 KV heads, n_ff 512, separate output, the
** 512-token aidreams vocabulary), not from kbchat's own output.
*/
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/ggufgen.h"
#include "tests/testutil.h"

/* A finished run of kbchat. */
typedef struct Run {
    char *out, *err;
    int status;
} Run;

/* Per-test sandbox: an empty HOME that is also the working directory. */
typedef struct Sandbox {
    char *dir;
    char *cwd_bin; /* absolute path of the binary under test */
    char env_home[600], env_xdg_data[32], env_xdg_cfg[32], env_kbcfg[32];
} Sandbox;

static int sandbox_setup(void **state)
{
    Sandbox *sb = calloc(1, sizeof *sb);
    sb->dir = testutil_mkdtemp();
    char *bin = realpath(testutil_kbchat_bin(), NULL);
    sb->cwd_bin = bin;
    snprintf(sb->env_home, sizeof sb->env_home, "HOME=%s", sb->dir);
    strcpy(sb->env_xdg_data, "XDG_DATA_HOME=");
    strcpy(sb->env_xdg_cfg, "XDG_CONFIG_HOME=");
    strcpy(sb->env_kbcfg, "KBCHAT_CONFIG=");
    *state = sb;
    return sb->dir && bin ? 0 : -1;
}

static int sandbox_teardown(void **state)
{
    Sandbox *sb = *state;
    testutil_rmtree(sb->dir);
    free(sb->dir);
    free(sb->cwd_bin);
    free(sb);
    return 0;
}

/* Runs kbchat with up to 6 arguments inside the sandbox. */
static Run run_kbchat(Sandbox *sb, const char *a1, const char *a2, const char *a3, const char *a4)
{
    const char *argv[] = {sb->cwd_bin, a1, a2, a3, a4, NULL};
    const char *env[] = {sb->env_home, sb->env_xdg_data, sb->env_xdg_cfg, sb->env_kbcfg, NULL};
    Run r;
    int rc = testutil_run(argv, env, sb->dir, 60, &r.out, &r.err, &r.status);
    assert_int_equal(rc, 0);
    return r;
}

static void run_free(Run *r)
{
    free(r->out);
    free(r->err);
}

/* Counts the lines of s. */
static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Asserts a usage error: exit 2, nothing on stdout, the given first line on
** stderr followed by the usage. */
static void assert_usage_error(Run *r, const char *first_line)
{
    assert_int_equal(r->status, 2);
    assert_string_equal(r->out, "");
    assert_memory_equal(r->err, first_line, strlen(first_line));
    assert_int_equal(r->err[strlen(first_line)], '\n');
    assert_non_null(strstr(r->err, "usage: kbchat"));
}

/* --- help, version, usage errors --- */

static void test_cli_help_lists_commands_and_options(void **state)
{
    Run r = run_kbchat(*state, "--help", NULL, NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: kbchat"));
    assert_non_null(strstr(r.out, "model info [FILE]"));
    assert_non_null(strstr(r.out, "config "));
    assert_non_null(strstr(r.out, "--config FILE"));
    assert_non_null(strstr(r.out, "--model FILE"));
    assert_string_equal(r.err, "");
    run_free(&r);
}

static void test_cli_version_names_kbchat_and_libraries(void **state)
{
    Run r = run_kbchat(*state, "--version", NULL, NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_memory_equal(r.out, "kbchat ", 7);
    assert_non_null(strstr(r.out, "SQLite 3."));
    assert_non_null(strstr(r.out, "poppler "));
    assert_non_null(strstr(r.out, "libyaml "));
    assert_non_null(strstr(r.out, "ncurses"));
    assert_non_null(strstr(r.out, "OpenBLAS"));
    run_free(&r);
}

static void test_cli_unknown_option_is_one_line_and_usage_exit_2(void **state)
{
    Run r = run_kbchat(*state, "--frobnicate", NULL, NULL, NULL);
    assert_usage_error(&r, "kbchat: unknown option '--frobnicate'");
    run_free(&r);
    r = run_kbchat(*state, "model", "info", "-x", NULL);
    assert_usage_error(&r, "kbchat: unknown option '-x'");
    run_free(&r);
}

static void test_cli_unknown_command_and_subcommand_exit_2(void **state)
{
    Run r = run_kbchat(*state, "chatter", NULL, NULL, NULL);
    assert_usage_error(&r, "kbchat: unknown command 'chatter'");
    run_free(&r);
    r = run_kbchat(*state, "model", "frob", NULL, NULL);
    assert_usage_error(&r, "kbchat: unknown subcommand 'frob'");
    run_free(&r);
    r = run_kbchat(*state, "model", NULL, NULL, NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "needs a subcommand"));
    run_free(&r);
}

static void test_cli_option_without_value_exit_2(void **state)
{
    Run r = run_kbchat(*state, "config", "--config", NULL, NULL);
    assert_usage_error(&r, "kbchat: option '--config' needs a file name");
    run_free(&r);
}

static void test_cli_extra_argument_exit_2(void **state)
{
    Run r = run_kbchat(*state, "model", "info", "a.gguf", "b.gguf");
    assert_usage_error(&r, "kbchat: unexpected argument 'b.gguf'");
    run_free(&r);
    r = run_kbchat(*state, "config", "extra", NULL, NULL);
    assert_usage_error(&r, "kbchat: unexpected argument 'extra'");
    run_free(&r);
}

static void test_cli_subcommands_have_their_own_help(void **state)
{
    Run r = run_kbchat(*state, "model", "info", "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: kbchat [--config FILE] model info [FILE]"));
    run_free(&r);
    r = run_kbchat(*state, "config", "--help", NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: kbchat [--config FILE] config"));
    assert_non_null(strstr(r.out, "$KBCHAT_CONFIG"));
    run_free(&r);
}

/* --- model info --- */

static void test_cli_model_info_describes_tiny_llama(void **state)
{
    char *path = testutil_data_path("models/tiny-llama-Q4_K_M.gguf");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    Run r = run_kbchat(*state, "model", "info", path, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "architecture:    llama\n"));
    assert_non_null(strstr(r.out, "layers:          2\n"));
    assert_non_null(strstr(r.out, "embedding size:  256\n"));
    assert_non_null(strstr(r.out, "heads:           8 (KV heads 2, head size 32)\n"));
    assert_non_null(strstr(r.out, "feed-forward:    512\n"));
    assert_non_null(strstr(r.out, "vocabulary:      512 tokens, tokenizer llama"));
    assert_non_null(strstr(r.out, "context length:  "));
    assert_non_null(strstr(r.out, "chat template:   "));
    /* 2 x 512 x 256 (embeddings, output) + 256 (norm) + 2 layers x 557568 */
    assert_non_null(strstr(r.out, "(1377536)"));
    char size_line[64];
    snprintf(size_line, sizeof size_line, "(%lld bytes)", (long long)st.st_size);
    assert_non_null(strstr(r.out, size_line));
    /* a Q4_K_M file mixes Q4_K and Q6_K with F32 norms */
    assert_non_null(strstr(r.out, "\n  Q4_K "));
    assert_non_null(strstr(r.out, "\n  Q6_K "));
    assert_non_null(strstr(r.out, "\n  F32 "));
    run_free(&r);
    free(path);
}

static void test_cli_model_info_names_each_architecture(void **state)
{
    static const struct { const char *file, *arch; } cases[] = {
        {"models/tiny-qwen2-Q8_0.gguf", "qwen2"},
        {"models/tiny-chatglm-Q4_0.gguf", "chatglm"},
        {"models/tiny-bloom-Q5_1.gguf", "bloom"},
        {"models/tiny-bert-F16.gguf", "bert"},
        {"models/aidreams260K-F32.gguf", "llama"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = testutil_data_path(cases[i].file);
        char want[64];
        snprintf(want, sizeof want, "architecture:    %s\n", cases[i].arch);
        Run r = run_kbchat(*state, "model", "info", path, NULL);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, want));
        run_free(&r);
        free(path);
    }
}

static void test_cli_model_info_on_vocab_only_file(void **state)
{
    char *path = testutil_data_path("vocab/ggml-vocab-bert-bge.gguf");
    Run r = run_kbchat(*state, "model", "info", path, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "vocabulary:      30522 tokens, tokenizer bert"));
    assert_non_null(strstr(r.out, "parameters:      0 (0)"));
    run_free(&r);
    free(path);
}

/* A file that is not GGUF, a truncated download, a missing path and a
** directory: one line on stderr, nothing on stdout, exit 1. */
static void test_cli_model_info_bad_files_give_one_clear_line(void **state)
{
    Sandbox *sb = *state;
    char *text = testutil_join(sb->dir, "notes.gguf");
    assert_int_equal(testutil_write_file(text, "hello world, not a model\n", 25), 0);
    char *src = testutil_data_path("models/tiny-llama-Q8_0.gguf");
    size_t len;
    char *bytes = testutil_read_file(src, &len);
    assert_non_null(bytes);
    char *cut = testutil_join(sb->dir, "cut.gguf");
    assert_int_equal(testutil_write_file(cut, bytes, len * 2 / 3), 0);
    char *missing = testutil_join(sb->dir, "missing.gguf");
    static const char *const want[] = {"not a GGUF file", "truncated download", "No such file", "directory"};
    const char *paths[] = {text, cut, missing, sb->dir};
    for (int i = 0; i < 4; i++) {
        Run r = run_kbchat(sb, "model", "info", paths[i], NULL);
        assert_int_equal(r.status, 1);
        assert_string_equal(r.out, "");
        assert_int_equal(count_lines(r.err), 1);
        assert_non_null(strstr(r.err, paths[i]));
        assert_non_null(strstr(r.err, want[i]));
        run_free(&r);
    }
    free(bytes), free(src), free(text), free(cut), free(missing);
}

static void test_cli_model_info_without_file_uses_config_or_says_how(void **state)
{
    Sandbox *sb = *state;
    Run r = run_kbchat(sb, "model", "info", NULL, NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "no model given"));
    run_free(&r);

    char *model = testutil_data_path("models/tiny-bloom-Q4_0.gguf");
    char *abs = realpath(model, NULL);
    char yaml[1200];
    snprintf(yaml, sizeof yaml, "model:\n  path: \"%s\"\n", abs);
    char *cfg = testutil_join(sb->dir, "config.yaml");
    assert_int_equal(testutil_write_file(cfg, yaml, strlen(yaml)), 0);
    r = run_kbchat(sb, "model", "info", NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "architecture:    bloom\n"));
    run_free(&r);
    free(model), free(abs), free(cfg);
}

/* Strings in a model file are hostile: a name holding terminal escape
** sequences or invalid UTF-8 is printed escaped, never raw. */
static void test_cli_model_info_escapes_hostile_strings(void **state)
{
    Sandbox *sb = *state;
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    ggufgen_kv_str(gg, "general.name", "evil\x1b[2J\x07\xff name 模型");
    ggufgen_kv_str(gg, "tokenizer.chat_template", "{{ bos }}\x1b]0;title\x07\nsecond line");
    size_t len;
    uint8_t *bytes = ggufgen_finish(gg, &len);
    char *path = testutil_join(sb->dir, "evil.gguf");
    assert_int_equal(testutil_write_file(path, bytes, len), 0);
    Run r = run_kbchat(sb, "model", "info", path, NULL);
    assert_int_equal(r.status, 1); /* printed, then refused: it has no tokenizer */
    assert_non_null(strstr(r.err, "cannot be loaded"));
    assert_null(strchr(r.out, '\x1b'));
    assert_null(strchr(r.out, '\x07'));
    assert_non_null(strstr(r.out, "name:            evil\\x1b[2J\\x07\\xff name 模型\n"));
    assert_non_null(strstr(r.out, "chat template:   {{ bos }}\\x1b]0;title\\x07 ...\n"));
    run_free(&r);
    free(path), free(bytes);
    ggufgen_free(gg);
}

/* A 4 GiB model (its data section a hole in a sparse file) is described
** from its header: sizes past 32 bits are counted right. */
static void test_cli_model_info_describes_a_4_gib_model(void **state)
{
    Sandbox *sb = *state;
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    int64_t ne[2] = {4096, 262144}; /* 2^30 F32 values: 4 GiB */
    ggufgen_tensor(gg, "token_embd.weight", 2, ne, KB_TYPE_F32);
    ggufgen_set_data_size(gg, 0);
    size_t len;
    uint8_t *bytes = ggufgen_finish(gg, &len);
    char *path = testutil_join(sb->dir, "big.gguf");
    assert_int_equal(testutil_write_file(path, bytes, len), 0);
    assert_int_equal(truncate(path, (off_t)len + ((off_t)1 << 32)), 0);
    Run r = run_kbchat(sb, "model", "info", path, NULL);
    assert_int_equal(r.status, 1); /* described, then refused: it has no tokenizer */
    assert_non_null(strstr(r.err, "cannot be loaded"));
    assert_non_null(strstr(r.out, "size on disk:    4.0 GiB"));
    assert_non_null(strstr(r.out, "(1073741824)"));
    run_free(&r);
    free(path), free(bytes);
    ggufgen_free(gg);
}

/* --- files that cannot load --- */

/* One way to break tiny-llama-Q8_0 (2 layers, n_embd 256, 8 heads, 2 KV
** heads of 32, n_ff 512, ../shared/testdata/README.md): the key and tensor
** left out of the copy, what `edit` adds instead, the reason kbchat must
** give, and whether the GGUF reader itself refuses the file (then `model
** info` prints nothing before the reason). */
typedef struct Breakage {
    const char *file, *skip_key, *skip_tensor;
    void (*edit)(GgufGen *gg, const GgufFile *src);
    const char *reason;
    bool reader_refuses;
} Breakage;

static void add_iq2_ffn_up(GgufGen *gg, const GgufFile *src)
{
    (void)src;
    int64_t ne[2] = {256, 512};
    ggufgen_tensor(gg, "blk.0.ffn_up.weight", 2, ne, KB_TYPE_IQ2_XS);
}

static void add_wide_attn_k(GgufGen *gg, const GgufFile *src)
{
    (void)src;
    int64_t ne[2] = {256, 128}; /* 4 KV heads' rows where the model has 2 */
    ggufgen_tensor(gg, "blk.0.attn_k.weight", 2, ne, KB_TYPE_Q8_0);
}

static void add_bool_block_count(GgufGen *gg, const GgufFile *src)
{
    (void)src;
    ggufgen_kv_bool(gg, "llama.block_count", true); /* read as 1, layer 1 would be ignored */
}

static void add_head_count_7(GgufGen *gg, const GgufFile *src)
{
    (void)src;
    ggufgen_kv_u32(gg, "llama.attention.head_count", 7); /* 256 / 7 heads */
}

static void add_nul_key(GgufGen *gg, const GgufFile *src)
{
    (void)src;
    ggufgen_kv_raw(gg);
    ggufgen_put_strn(gg, "general.na\0me", 13);
    ggufgen_put_i32(gg, GGUF_VT_UINT32);
    ggufgen_put_u32(gg, 1);
}

static void add_nul_architecture(GgufGen *gg, const GgufFile *src)
{
    (void)src;
    ggufgen_kv_strn(gg, "general.architecture", "llama\0evil", 10); /* a C string reads "llama" */
}

/* The vocabulary of src with token 300 replaced by "a\0b". */
static void add_nul_token(GgufGen *gg, const GgufFile *src)
{
    int64_t k = gguf_find_key(src, "tokenizer.ggml.tokens");
    GgufValueType et;
    uint64_t n;
    assert_int_equal(gguf_kv_get_arr(src, k, &et, &n), KB_OK);
    ggufgen_kv_begin(gg, "tokenizer.ggml.tokens", GGUF_VT_ARRAY);
    ggufgen_put_u32(gg, GGUF_VT_STRING);
    ggufgen_put_u64(gg, n);
    for (uint64_t j = 0; j < n; j++) {
        const char *tok;
        size_t len;
        assert_int_equal(gguf_arr_get_str(src, k, j, &tok, &len), KB_OK);
        if (j == 300) ggufgen_put_strn(gg, "a\0b", 3);
        else ggufgen_put_strn(gg, tok, len);
    }
}

static void add_layer_2_norm(GgufGen *gg, const GgufFile *src)
{
    (void)src;
    int64_t ne[1] = {256};
    ggufgen_tensor(gg, "blk.2.attn_norm.weight", 1, ne, KB_TYPE_F32);
}

static const Breakage breakages[] = {
    {"missing.gguf", NULL, "blk.1.attn_q.weight", NULL, "tensor 'blk.1.attn_q.weight' is missing", false},
    {"iq2.gguf", NULL, "blk.0.ffn_up.weight", add_iq2_ffn_up,
     "type IQ2_XS of tensor 'blk.0.ffn_up.weight' is not supported (supported: F32, F16, Q4_0", false},
    {"shape.gguf", NULL, "blk.0.attn_k.weight", add_wide_attn_k,
     "tensor 'blk.0.attn_k.weight' has shape {256, 128, 1, 1}, expected {256, 64}", false},
    {"boolcount.gguf", "llama.block_count", NULL, add_bool_block_count,
     "llama.block_count has type bool, expected an integer", false},
    {"heads.gguf", "llama.attention.head_count", NULL, add_head_count_7, "do not divide evenly", false},
    {"nulkey.gguf", NULL, NULL, add_nul_key, "contains a NUL byte", true},
    {"nularch.gguf", "general.architecture", NULL, add_nul_architecture,
     "the string value of 'general.architecture' contains a NUL byte", true},
    {"nultoken.gguf", "tokenizer.ggml.tokens", NULL, add_nul_token,
     "string 300 of 'tokenizer.ggml.tokens' contains a NUL byte", true},
    {"layer2.gguf", NULL, NULL, add_layer_2_norm,
     "tensor 'blk.2.attn_norm.weight' belongs to layer 2, but llama.block_count is 2", false},
};

/* Writes the copy of tiny-llama-Q8_0 that b describes into the sandbox;
** returns its malloc'd path. */
static char *write_broken_model(Sandbox *sb, const Breakage *b)
{
    char *src_path = testutil_data_path("models/tiny-llama-Q8_0.gguf");
    GgufFile *src = NULL;
    char err[512];
    assert_int_equal(gguf_open(src_path, &src, err, sizeof err), KB_OK);
    GgufGen *gg = ggufgen_copy(src, b->skip_key, b->skip_tensor);
    if (b->edit) b->edit(gg, src);
    char *path = testutil_join(sb->dir, b->file);
    assert_int_equal(ggufgen_write(gg, path), 0);
    ggufgen_free(gg);
    gguf_close(src);
    free(src_path);
    return path;
}

/* Fails unless r exited 1 with one line on stderr naming path and reason. */
static void expect_refusal(Run *r, const char *path, const char *reason)
{
    if (r->status != 1 || !strstr(r->err, reason) || !strstr(r->err, path))
        fail_msg("status %d, stderr: %s(expected the path and \"%s\")", r->status, r->err, reason);
    assert_int_equal(count_lines(r->err), 1);
}

/* Issue 16 item 14: a file that cannot load is refused by `model info`
** (after what it could read), by `kbchat --model F` and by generate, with
** the reason, exit 1. The intact copy loads: the breakage is the cause. */
static void test_cli_refuses_models_that_cannot_load(void **state)
{
    Sandbox *sb = *state;
    const Breakage intact = {"intact.gguf", NULL, NULL, NULL, NULL, false};
    char *path = write_broken_model(sb, &intact);
    Run r = run_kbchat(sb, "model", "info", path, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    run_free(&r);
    free(path);
    for (size_t i = 0; i < sizeof breakages / sizeof breakages[0]; i++) {
        const Breakage *b = &breakages[i];
        path = write_broken_model(sb, b);
        r = run_kbchat(sb, "model", "info", path, NULL);
        expect_refusal(&r, path, b->reason);
        if (b->reader_refuses) assert_string_equal(r.out, "");
        else assert_non_null(strstr(r.out, "architecture:    llama\n"));
        run_free(&r);
        r = run_kbchat(sb, "--model", path, NULL, NULL);
        expect_refusal(&r, path, b->reason);
        run_free(&r);
        const char *argv[] = {sb->cwd_bin, "generate", "-m", path, "-p", "Once", "-n", "1", NULL};
        const char *env[] = {sb->env_home, sb->env_xdg_data, sb->env_xdg_cfg, sb->env_kbcfg, NULL};
        assert_int_equal(testutil_run(argv, env, sb->dir, 60, &r.out, &r.err, &r.status), 0);
        expect_refusal(&r, path, b->reason);
        run_free(&r);
        free(path);
    }
}

/* Every reference model passes the load check. */
static void test_cli_model_info_passes_every_reference_model(void **state)
{
    Sandbox *sb = *state;
    char *dir = testutil_data_path("models");
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char *path = testutil_join(dir, e->d_name);
        Run r = run_kbchat(sb, "model", "info", path, NULL);
        if (r.status != 0) fail_msg("%s: status %d: %s", path, r.status, r.err);
        assert_string_equal(r.err, "");
        run_free(&r);
        free(path);
        n++;
    }
    closedir(d);
    assert_true(n >= 50); /* README.md lists 58 models */
    free(dir);
}

/* --- tokenize / detokenize --- */

/* Compares kbchat's --file output with a reference file line by line,
** ignoring leading and trailing spaces (the reference lines start with one). */
static void assert_same_id_lines(const char *got, const char *want_path)
{
    size_t len;
    char *want = testutil_read_file(want_path, &len);
    assert_non_null(want);
    const char *g = got, *w = want;
    int line = 1;
    while (*g || *w) {
        while (*w == ' ') w++;
        while (*g == ' ') g++;
        const char *ge = strchr(g, '\n'), *we = strchr(w, '\n');
        assert_non_null(ge);
        assert_non_null(we);
        size_t gl = (size_t)(ge - g), wl = (size_t)(we - w);
        while (gl && g[gl - 1] == ' ') gl--;
        while (wl && w[wl - 1] == ' ') wl--;
        if (gl != wl || memcmp(g, w, gl) != 0) fail_msg("%s line %d: got \"%.*s\"", want_path, line, (int)gl, g);
        g = ge + 1, w = we + 1, line++;
    }
    free(want);
}

/* The acceptance check of the tokenizers, through the command line: every
** vocabulary's --file output equals llama.cpp's .out and .zh.out. */
static void test_cli_tokenize_file_matches_reference_outputs(void **state)
{
    static const struct { const char *model, *inp, *out; } cases[] = {
        {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-llama-spm.gguf.inp", "vocab/ggml-vocab-llama-spm.gguf.out"},
        {"vocab/ggml-vocab-llama-spm.gguf", "vocab/zh.inp", "vocab/ggml-vocab-llama-spm.gguf.zh.out"},
        {"vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-gpt-2.gguf.inp", "vocab/ggml-vocab-gpt-2.gguf.out"},
        {"vocab/ggml-vocab-gpt-2.gguf", "vocab/zh.inp", "vocab/ggml-vocab-gpt-2.gguf.zh.out"},
        {"vocab/ggml-vocab-bert-bge.gguf", "vocab/ggml-vocab-bert-bge.gguf.inp", "vocab/ggml-vocab-bert-bge.gguf.out"},
        {"vocab/ggml-vocab-bert-bge.gguf", "vocab/zh.inp", "vocab/ggml-vocab-bert-bge.gguf.zh.out"},
        {"models/aidreams260K-F32.gguf", "vocab/ggml-vocab-llama-spm.gguf.inp", "vocab/aidreams260K.inp.out"},
        {"models/aidreams260K-F32.gguf", "vocab/zh.inp", "vocab/aidreams260K.zh.out"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *model = testutil_data_path(cases[i].model), *inp = testutil_data_path(cases[i].inp);
        char *out = testutil_data_path(cases[i].out);
        Run r = run_kbchat(*state, "tokenize", "-m", model, "--file");
        assert_int_equal(r.status, 2); /* --file needs its value */
        run_free(&r);
        const char *argv[] = {((Sandbox *)*state)->cwd_bin, "tokenize", "-m", model, "--file", inp, NULL};
        char *o, *e;
        int status;
        assert_int_equal(testutil_run(argv, NULL, NULL, 60, &o, &e, &status), 0);
        assert_int_equal(status, 0);
        assert_same_id_lines(o, out);
        free(o), free(e), free(model), free(inp), free(out);
    }
}

static void test_cli_tokenize_and_detokenize_round_trip(void **state)
{
    char *model = testutil_data_path("vocab/ggml-vocab-llama-spm.gguf");
    Run r = run_kbchat(*state, "tokenize", "-m", model, "Hello world");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "15043 3186\n"); /* ids from ggml-vocab-llama-spm.gguf.out */
    run_free(&r);
    r = run_kbchat(*state, "tokenize", "--bos", "-m", model);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "1\n"); /* empty standard input: just BOS */
    run_free(&r);
    const char *argv[] = {((Sandbox *)*state)->cwd_bin, "detokenize", "-m", model, "15043", "3186", NULL};
    char *o, *e;
    int status;
    assert_int_equal(testutil_run(argv, NULL, NULL, 60, &o, &e, &status), 0);
    assert_int_equal(status, 0);
    assert_string_equal(o, "Hello world\n");
    free(o), free(e);
    r = run_kbchat(*state, "detokenize", "-m", model, "32000");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "'32000' is not a token id (0..31999)"));
    run_free(&r);
    r = run_kbchat(*state, "config", "--special", NULL, NULL);
    assert_usage_error(&r, "kbchat: option '--special' does not apply to 'config'");
    run_free(&r);
    free(model);
}

/* --- logits / generate --- */

static void test_cli_generate_prints_aidreams_text_and_speed(void **state)
{
    char *model = testutil_data_path("models/aidreams260K-F32.gguf");
    const char *argv[] = {((Sandbox *)*state)->cwd_bin, "generate", "-m", model, "-n", "100", "--temp", "0", NULL};
    char *o, *e;
    int status;
    assert_int_equal(testutil_run(argv, NULL, NULL, 60, &o, &e, &status), 0);
    assert_int_equal(status, 0);
    const char *want = "\"Echoes of vectors unfold, a gentle hum of precision";
    assert_memory_equal(o, want, strlen(want));
    assert_non_null(strstr(e, "prompt: 1 tokens"));
    assert_non_null(strstr(e, "generated: 100 tokens"));
    free(o), free(e), free(model);
}

/* Ctrl-C (SIGINT) while the prompt is evaluated stops generate at once:
** KBCHAT_TEST_HOLD_PROMPT holds the evaluation after its first batch of
** 128 tokens (writing go.held), and SIGINT is sent then; the hold reads
** the flag, the engine stops before its next layer. Exit 130 with a
** message, not death by the signal (also 130), and no text. */
static void test_cli_generate_ctrl_c_during_the_prompt_stops_it(void **state)
{
    Sandbox *sb = *state;
    char *model = testutil_data_path("models/tiny-llama-Q4_0.gguf"), prompt[400] = "", hold[700];
    for (int i = 0; i < 6; i++) strcat(prompt, "the little dog ran to the big red house and ");
    char *held = testutil_join(sb->dir, "go.held");
    snprintf(hold, sizeof hold, "KBCHAT_TEST_HOLD_PROMPT=%s/go", sb->dir);
    const char *argv[] = {sb->cwd_bin, "generate", "-m", model, "-p", prompt, "-n", "20", NULL};
    const char *env[] = {sb->env_home, sb->env_xdg_data, sb->env_xdg_cfg, sb->env_kbcfg, hold, NULL};
    Run r;
    assert_int_equal(testutil_run_signal(argv, env, sb->dir, 60, held, SIGINT, &r.out, &r.err, &r.status), 0);
    if (r.status != 130 || !strstr(r.err, "kbchat: generate: stopped by Ctrl-C\n"))
        fail_msg("exit %d; stdout: %s; stderr: %s", r.status, r.out, r.err);
    assert_null(strstr(r.err, "generated:"));
    assert_string_equal(r.out, "");
    run_free(&r);
    free(model), free(held);
}

/* The logits command prints the reference format: comment, prompt, one
** logits line per position, greedy, one step line per fed token. */
static void test_cli_logits_prints_the_reference_format(void **state)
{
    char *model = testutil_data_path("models/tiny-llama-F32.gguf");
    const char *argv[] = {((Sandbox *)*state)->cwd_bin, "logits", "-m", model, "--tokens", "1,319,459", "--gen", "2", "-t", "2", NULL};
    char *o, *e;
    int status;
    assert_int_equal(testutil_run(argv, NULL, NULL, 60, &o, &e, &status), 0);
    assert_int_equal(status, 0);
    static const char *const tags[] = {"# n_vocab=512 prompt=3", "prompt 1 319 459", "logits 0 ", "logits 1 ", "logits 2 ",
                                       "greedy ", "step 0 ", "step 1 "};
    char *line = o;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        assert_non_null(line);
        assert_memory_equal(line, tags[i], strlen(tags[i]));
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        if (tags[i][0] == 'l' || tags[i][0] == 's') {
            int fields = 0;
            for (char *p = line; p < nl; p++) fields += *p == ' ';
            assert_int_equal(fields, 2 + 512 - 1); /* tag, index, 512 values */
        }
        line = nl + 1;
    }
    assert_string_equal(line, "");
    free(o), free(e);
    Run r = run_kbchat(*state, "logits", "-m", model, NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--tokens"));
    run_free(&r);
    r = run_kbchat(*state, "logits", "-m", model, "--tokens=1,x");
    assert_int_equal(r.status, 2);
    run_free(&r);
    free(model);
}

/* embed --file prints the reference format with llama.cpp's ids; embed TEXT
** one unit-length vector; a chat model is refused. */
static void test_cli_embed_prints_reference_format(void **state)
{
    char *model = testutil_data_path("models/tiny-bert-Q8_0.gguf"), *lines = testutil_data_path("refs/tiny-bert.sentences.txt");
    char *ref_path = testutil_data_path("refs/tiny-bert-Q8_0.ref");
    const char *argv[] = {((Sandbox *)*state)->cwd_bin, "embed", "-m", model, "--file", lines, NULL};
    char *o, *e;
    int status;
    assert_int_equal(testutil_run(argv, NULL, NULL, 60, &o, &e, &status), 0);
    assert_int_equal(status, 0);
    size_t len;
    char *ref = testutil_read_file(ref_path, &len);
    /* every text and ids line of the reference appears verbatim */
    for (char *line = strtok(ref, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "embd ", 5) == 0) continue;
        if (strstr(o, line) == NULL) fail_msg("missing line: %s", line);
    }
    int embd_lines = 0;
    for (char *p = o; (p = strstr(p, "\nembd ")) != NULL; p++) embd_lines++;
    assert_int_equal(embd_lines, 5);
    free(o), free(e), free(ref);
    Run r = run_kbchat(*state, "embed", "-m", model, "hello world");
    assert_int_equal(r.status, 0);
    double sum = 0;
    int n = 0;
    for (char *p = r.out; *p && *p != '\n'; n++) {
        double v = strtod(p, &p);
        sum += v * v;
    }
    assert_int_equal(n, 128);
    assert_true(fabs(sum - 1.0) < 1e-4);
    run_free(&r);
    char *chat = testutil_data_path("models/tiny-llama-Q4_0.gguf");
    r = run_kbchat(*state, "embed", "-m", chat, "hello");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "not an embedding model"));
    run_free(&r);
    free(chat), free(model), free(lines), free(ref_path);
}

/* --- configuration through the binary --- */

static void test_cli_config_error_names_file_line_key_and_writes_nothing(void **state)
{
    Sandbox *sb = *state;
    char *cfg = testutil_join(sb->dir, "bad.yaml");
    const char *yaml = "# my settings\nretrieval:\n  top_k: five\n";
    assert_int_equal(testutil_write_file(cfg, yaml, strlen(yaml)), 0);
    Run r = run_kbchat(sb, "--config", cfg, "config", NULL);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "bad.yaml:3: retrieval.top_k: expected an integer 1..100, got \"five\""));
    run_free(&r);
    /* the bare command fails the same way */
    r = run_kbchat(sb, "--config", cfg, NULL, NULL);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    run_free(&r);
    free(cfg);
}

static void test_cli_config_missing_file_is_an_error(void **state)
{
    Run r = run_kbchat(*state, "--config", "nowhere.yaml", "config", NULL);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "nowhere.yaml"));
    run_free(&r);
}

static void test_cli_config_warns_on_unknown_key_and_goes_on(void **state)
{
    Sandbox *sb = *state;
    char *cfg = testutil_join(sb->dir, "config.yaml");
    const char *yaml = "retrieval:\n  topk: 3\n";
    assert_int_equal(testutil_write_file(cfg, yaml, strlen(yaml)), 0);
    Run r = run_kbchat(sb, "config", NULL, NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.err, "warning"));
    assert_non_null(strstr(r.err, "retrieval.top_k"));
    run_free(&r);
    free(cfg);
}

/* `kbchat config` shows where values came from: the file's line, the
** command line, or the default. */
static void test_cli_config_prints_sources(void **state)
{
    Sandbox *sb = *state;
    char *cfg = testutil_join(sb->dir, "config.yaml");
    const char *yaml = "ui:\n  theme: light\n";
    assert_int_equal(testutil_write_file(cfg, yaml, strlen(yaml)), 0);
    Run r = run_kbchat(sb, "--model", "/models/x.gguf", "config", NULL);
    assert_int_equal(r.status, 0);
    char *theme = strstr(r.out, "theme: \"light\"");
    assert_non_null(theme);
    char *eol = strchr(theme, '\n');
    assert_non_null(eol);
    *eol = '\0';
    assert_non_null(strstr(theme, "config.yaml:2"));
    *eol = '\n';
    char *path = strstr(r.out, "path: \"/models/x.gguf\"");
    assert_non_null(path);
    eol = strchr(path, '\n');
    *eol = '\0';
    assert_non_null(strstr(path, "--model"));
    *eol = '\n';
    assert_non_null(strstr(r.out, "# default"));
    run_free(&r);
    free(cfg);
}

/* --- starting kbchat --- */

/* With no configuration anywhere, kbchat starts, explains how to get a
** model, and creates nothing in HOME. */
static void test_cli_start_without_model_explains_and_writes_nothing(void **state)
{
    Sandbox *sb = *state;
    Run r = run_kbchat(sb, NULL, NULL, NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "none configured"));
    assert_non_null(strstr(r.out, "model.path"));
    assert_non_null(strstr(r.out, "--model"));
    assert_non_null(strstr(r.out, "built-in defaults"));
    run_free(&r);
    char *local = testutil_join(sb->dir, ".local");
    struct stat st;
    assert_int_not_equal(stat(local, &st), 0);
    free(local);
}

static void test_cli_start_with_model_describes_it(void **state)
{
    char *model = testutil_data_path("models/tiny-qwen2-Q4_0.gguf");
    char *abs = realpath(model, NULL);
    Run r = run_kbchat(*state, "--model", abs, NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "architecture:    qwen2\n"));
    run_free(&r);
    r = run_kbchat(*state, "--model", "/no/such/model.gguf", NULL, NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "/no/such/model.gguf"));
    run_free(&r);
    free(model), free(abs);
}

/* Runs kbchat bench on model with the options of argv-style list opts
** (NULL-terminated, at most 10) and extra environment entry env (may be
** NULL), in the sandbox. */
static Run run_bench(Sandbox *sb, const char *model, const char *const *opts, const char *env_extra)
{
    const char *argv[16] = {sb->cwd_bin, "bench", "-m", model};
    int n = 4;
    for (int i = 0; opts[i] && n < 15; i++) argv[n++] = opts[i];
    argv[n] = NULL;
    const char *env[] = {sb->env_home, sb->env_xdg_data, sb->env_xdg_cfg, sb->env_kbcfg, env_extra, NULL};
    Run r;
    assert_int_equal(testutil_run(argv, env, sb->dir, 120, &r.out, &r.err, &r.status), 0);
    return r;
}

/* The number after "key": in the one-line JSON object s; fails when absent. */
static double json_number(const char *s, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(s, pat);
    if (p == NULL) fail_msg("%s is missing from %s", key, s);
    double v = 0;
    assert_int_equal(sscanf(p + strlen(pat), "%lf", &v), 1);
    return v;
}

/* The absolute path of the model the bench tests measure (tiny llama Q4_0,
** context 256); the caller frees it. */
static char *bench_model_path(void)
{
    char *model = testutil_data_path("models/tiny-llama-Q4_0.gguf");
    char *abs = realpath(model, NULL);
    free(model);
    assert_non_null(abs);
    return abs;
}

/* kbchat bench: the JSON object has the fields issue 5 names with values
** that fit the run (token counts as asked, positive speeds and memory, the
** kernel set in use; weights packed for the tiles with every SIMD kernel
** set, AVX2 included, none with KBCHAT_ISA=scalar); the
** table shows the same; bad options are usage errors. */
static void test_cli_bench_reports_speed_memory_and_kernels(void **state)
{
    Sandbox *sb = *state;
    char *abs = bench_model_path();
    static const char *const json[] = {"-p", "8", "-n", "4", "-r", "2", "-t", "2", "--json", NULL};
    Run r = run_bench(sb, abs, json, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal((int)json_number(r.out, "pp_tokens"), 8);
    assert_int_equal((int)json_number(r.out, "tg_tokens"), 4);
    assert_int_equal((int)json_number(r.out, "threads"), 2);
    assert_int_equal((int)json_number(r.out, "reps"), 2);
    assert_true(json_number(r.out, "pp_tok_s") > 0 && json_number(r.out, "tg_tok_s") > 0);
    assert_true(json_number(r.out, "peak_rss_mb") > 1 && json_number(r.out, "load_ms") > 0);
    const int scalar = strstr(r.out, "\"kernels\": \"scalar\"") != NULL;
    assert_true(scalar || strstr(r.out, "\"kernels\": \"AVX-512\"") || strstr(r.out, "\"kernels\": \"AVX-VNNI\"") ||
                strstr(r.out, "\"kernels\": \"AVX2\""));
    assert_int_equal(json_number(r.out, "tiled_mb") > 0, !scalar);
    run_free(&r);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        r = run_bench(sb, abs, json, "KBCHAT_ISA=avx2");
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "\"kernels\": \"AVX2\""));
        assert_true(json_number(r.out, "tiled_mb") > 0);
        run_free(&r);
    }
    r = run_bench(sb, abs, json, "KBCHAT_ISA=scalar");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"kernels\": \"scalar\""));
    assert_true(json_number(r.out, "tiled_mb") == 0);
    run_free(&r);
    static const char *const table[] = {"-p", "8", "-n", "4", "-r", "1", NULL};
    r = run_bench(sb, abs, table, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "  pp8 "));
    assert_non_null(strstr(r.out, "  tg4 "));
    assert_non_null(strstr(r.out, "GB/s of weights"));
    assert_non_null(strstr(r.out, "peak resident"));
    run_free(&r);
    static const char *const bad[] = {"-r", "0", NULL};
    r = run_bench(sb, abs, bad, NULL);
    assert_int_equal(r.status, 2);
    run_free(&r);
    free(abs);
}

/* Runs kbchat bench on the tiny llama (context 256) with opts; returns the
** exit status and checks that stderr holds `err_part` (NULL: nothing to check). */
static int bench_status(Sandbox *sb, const char *model, const char *const *opts, const char *err_part)
{
    Run r = run_bench(sb, model, opts, NULL);
    if (err_part && strstr(r.err, err_part) == NULL) fail_msg("\"%s\" is not in stderr: %s", err_part, r.err);
    int status = r.status;
    run_free(&r);
    return status;
}

/* kbchat bench -d: the JSON says the depth and the time to the first token
** of the -p prompt; the table names the tests as llama-bench does ("pp8 @
** d16"); the context is the depth plus the longer of -p and -n, so a run
** that fills the tiny llama's 256 tokens exactly works (it would overflow
** if a test did not start again from the depth) and one token more is a
** usage error; -p 0 -n 0 and a bad -d are usage errors; --help tells. */
static void test_cli_bench_at_depth(void **state)
{
    Sandbox *sb = *state;
    char *abs = bench_model_path();
    static const char *const json[] = {"-p", "8", "-n", "4", "-d", "16", "-r", "2", "--json", NULL};
    Run r = run_bench(sb, abs, json, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal((int)json_number(r.out, "depth"), 16);
    assert_int_equal((int)json_number(r.out, "pp_tokens"), 8);
    assert_true(json_number(r.out, "pp_first_token_ms") > 0 && json_number(r.out, "tg_tok_s") > 0);
    run_free(&r);
    static const char *const table[] = {"-p", "8", "-n", "4", "-d", "16", "-r", "1", NULL};
    r = run_bench(sb, abs, table, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "  pp8 @ d16 "));
    assert_non_null(strstr(r.out, "  tg4 @ d16 "));
    assert_non_null(strstr(r.out, "after the start of a 8-token prompt (depth 16)"));
    run_free(&r);
    static const char *const full[] = {"-p", "16", "-n", "8", "-d", "240", "-r", "2", NULL};
    assert_int_equal(bench_status(sb, abs, full, NULL), 0);
    static const char *const over[] = {"-p", "16", "-n", "8", "-d", "241", NULL};
    assert_int_equal(bench_status(sb, abs, over, "needs a context of 257 tokens; the model's is 256"), 2);
    static const char *const none[] = {"-p", "0", "-n", "0", NULL};
    assert_int_equal(bench_status(sb, abs, none, "nothing to measure"), 2);
    static const char *const bad[] = {"-d", "x", NULL};
    assert_int_equal(bench_status(sb, abs, bad, "--n-depth: expected an integer"), 2);
    r = run_kbchat(sb, "bench", "--help", NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "[-d 0]"));
    assert_non_null(strstr(r.out, "-d, --n-depth N"));
    run_free(&r);
    free(abs);
}

#define SANDBOXED(t) cmocka_unit_test_setup_teardown(t, sandbox_setup, sandbox_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SANDBOXED(test_cli_help_lists_commands_and_options),
        SANDBOXED(test_cli_version_names_kbchat_and_libraries),
        SANDBOXED(test_cli_unknown_option_is_one_line_and_usage_exit_2),
        SANDBOXED(test_cli_unknown_command_and_subcommand_exit_2),
        SANDBOXED(test_cli_option_without_value_exit_2),
        SANDBOXED(test_cli_extra_argument_exit_2),
        SANDBOXED(test_cli_subcommands_have_their_own_help),
        SANDBOXED(test_cli_model_info_describes_tiny_llama),
        SANDBOXED(test_cli_model_info_names_each_architecture),
        SANDBOXED(test_cli_model_info_on_vocab_only_file),
        SANDBOXED(test_cli_model_info_bad_files_give_one_clear_line),
        SANDBOXED(test_cli_model_info_without_file_uses_config_or_says_how),
        SANDBOXED(test_cli_model_info_escapes_hostile_strings),
        SANDBOXED(test_cli_model_info_describes_a_4_gib_model),
        SANDBOXED(test_cli_refuses_models_that_cannot_load),
        SANDBOXED(test_cli_model_info_passes_every_reference_model),
        SANDBOXED(test_cli_tokenize_file_matches_reference_outputs),
        SANDBOXED(test_cli_tokenize_and_detokenize_round_trip),
        SANDBOXED(test_cli_generate_prints_aidreams_text_and_speed),
        SANDBOXED(test_cli_generate_ctrl_c_during_the_prompt_stops_it),
        SANDBOXED(test_cli_logits_prints_the_reference_format),
        SANDBOXED(test_cli_embed_prints_reference_format),
        SANDBOXED(test_cli_config_error_names_file_line_key_and_writes_nothing),
        SANDBOXED(test_cli_config_missing_file_is_an_error),
        SANDBOXED(test_cli_config_warns_on_unknown_key_and_goes_on),
        SANDBOXED(test_cli_config_prints_sources),
        SANDBOXED(test_cli_start_without_model_explains_and_writes_nothing),
        SANDBOXED(test_cli_start_with_model_describes_it),
        SANDBOXED(test_cli_bench_reports_speed_memory_and_kernels),
        SANDBOXED(test_cli_bench_at_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
