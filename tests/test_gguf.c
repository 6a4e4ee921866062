/*
** test_gguf.c: tests of the GGUF reader (engine/gguf.h).
**
** Expected values come from the GGUF format (../shared/docs/engine-reference.md)
** and from ../shared/testdata/README.md, never from the reader's own output:
**
**   1. every reference model opens, and its metadata and tensor shapes are
**      the documented ones (architecture, hyperparameters, vocabulary size,
**      tensor types by file name);
**   2. the F32, F16 and BF16 files of one model hold the same weights, so
**      comparing them through the reader proves the data pointers;
**   3. the vocab-only files open;
**   4. typed lookups, on a crafted file holding every value type;
**   5. crafted malformed files, one test per defect, each refused with the
**      right code, no handle and a message naming the path and the field;
**   6. crafted valid edge cases open;
**   7. every allocation failure during an open is reported as KB_ENOMEM.
**
** Crafted files are made with tests/ggufgen.[ch] in a private temp directory.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine.h"
#include "tests/ggufgen.h"
#include "tests/testutil.h"

/* --- helpers --- */

/* Opens path, failing the test with the reader's message when it refuses. */
static GgufFile *open_ok(const char *path)
{
    char err[512] = "";
    GgufFile *g = NULL;
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc != KB_OK) print_error("gguf_open(%s) = %d (%s): %s\n", path, rc, kb_strerror(rc), err);
    assert_int_equal(rc, KB_OK);
    assert_non_null(g);
    return g;
}

static GgufFile *open_data(const char *rel)
{
    char *path = testutil_data_path(rel);
    GgufFile *g = open_ok(path);
    free(path);
    return g;
}

/* Writes a crafted file to the scratch folder (testutil_scratch), frees the generator and returns
** the malloc'd path. */
static char *gen_write(GgufGen *gg, const char *name)
{
    char *path = testutil_join(testutil_scratch(), name);
    assert_non_null(path);
    assert_int_equal(ggufgen_write(gg, path), 0);
    ggufgen_free(gg);
    return path;
}

/* Returns true when msg contains one of the '|'-separated alternatives
** (case-insensitive). */
static bool mentions_any(const char *msg, const char *alternatives)
{
    char buf[256];
    const char *p = alternatives;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n < sizeof buf) {
            memcpy(buf, p, n);
            buf[n] = '\0';
            if (n > 0 && strcasestr(msg, buf)) return true;
        }
        p += n;
        if (*p == '|') p++;
    }
    return false;
}

/* Opens path expecting failure code `code`: *out must be NULL and the message
** one non-empty line naming the path and, for each entry of `mentions`
** (NULL-terminated), one of its '|'-separated alternatives. The path is
** blanked out of the message before the mentions are looked for, so digits
** in the temp directory's name cannot satisfy them. */
static void expect_open_fails_v(const char *path, int code, const char *const *mentions)
{
    char err[1024];
    memset(err, 0, sizeof err);
    GgufFile *g = (GgufFile *)&err; /* must be overwritten with NULL */
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc != code)
        print_error("gguf_open(%s) = %d (%s), expected %d (%s); message: %s\n", path, rc,
                    kb_strerror(rc), code, kb_strerror(code), err);
    if (rc == KB_OK) gguf_close(g);
    assert_int_equal(rc, code);
    assert_null(g);
    assert_true(strlen(err) > 0);
    if (!strstr(err, path)) print_error("message does not name the path %s: %s\n", path, err);
    assert_non_null(strstr(err, path));
    assert_null(strchr(err, '\n'));
    char *blank = strdup(err);
    assert_non_null(blank);
    for (char *p = strstr(blank, path); p; p = strstr(p, path)) memset(p, ' ', strlen(path));
    for (int i = 0; mentions && mentions[i]; i++) {
        if (!mentions_any(blank, mentions[i]))
            print_error("message does not mention \"%s\": %s\n", mentions[i], err);
        assert_true(mentions_any(blank, mentions[i]));
    }
    free(blank);
}

#define expect_open_fails(path, code, ...)                                                         \
    expect_open_fails_v((path), (code), (const char *const[]){__VA_ARGS__, NULL})

/* Writes gg to the scratch folder (testutil_scratch) and expects gguf_open to fail with code. */
#define expect_gen_fails(gg, name, code, ...)                                                      \
    do {                                                                                           \
        char *path_ = gen_write((gg), (name));                                                     \
        expect_open_fails(path_, (code), __VA_ARGS__);                                             \
        free(path_);                                                                               \
    } while (0)

/* Asserts the invariants of engine/gguf.h on an open handle. */
static void assert_consistent(const GgufFile *g, const char *what)
{
    char why[512];
    int rc = ggufgen_check_file(g, why, sizeof why);
    if (rc != 0) print_error("%s: %s\n", what, why);
    assert_int_equal(rc, 0);
}

/* A small valid file: an architecture and two tensors. Tests add to it. */
static GgufGen *gen_base(void)
{
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    ggufgen_kv_u32(gg, "llama.block_count", 1);
    int64_t ne_a[2] = {64, 2};
    int64_t ne_b[1] = {16};
    ggufgen_tensor(gg, "first.weight", 2, ne_a, KB_TYPE_Q4_0);
    ggufgen_tensor(gg, "second.weight", 1, ne_b, KB_TYPE_F32);
    return gg;
}

/* --- 1. the reference models --- */

/* Failures in the model survey are collected (with the file name) so one run
** shows every problem; the test fails at the end when there was any. */
static int survey_failures;
static const char *survey_file;

static void survey_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((format(printf, 1, 2))) static void survey_fail(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_error("%s: %s\n", survey_file, msg);
    survey_failures++;
}

#define SURVEY(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) survey_fail(__VA_ARGS__);                                                     \
    } while (0)

/* Reads an integer key "<arch>.<suffix>" (or the full key when arch is NULL);
** returns -1 (after recording a failure when required) when absent. */
static int64_t meta_int(const GgufFile *g, const char *arch, const char *suffix, bool required)
{
    char key[128];
    if (arch) snprintf(key, sizeof key, "%s.%s", arch, suffix);
    else snprintf(key, sizeof key, "%s", suffix);
    int64_t v = -1;
    int rc = gguf_get_int(g, key, &v);
    if (rc != KB_OK) {
        if (required) survey_fail("integer key %s: %s", key, kb_strerror(rc));
        return -1;
    }
    return v;
}

/* Number of tensors the shape checks looked at (compared with the file's
** count at the end, so a model has no tensor the README does not explain). */
static int64_t shapes_checked;

/* Checks that tensor `name` exists with the given dims (ne1 < 0: 1-D). */
static void expect_shape(const GgufFile *g, const char *name, int64_t ne0, int64_t ne1)
{
    const GgufTensor *t = gguf_find_tensor(g, name);
    if (!t) {
        survey_fail("tensor %s is missing", name);
        return;
    }
    shapes_checked++;
    int n_dims = ne1 < 0 ? 1 : 2;
    SURVEY(t->n_dims == n_dims && t->ne[0] == ne0 && (ne1 < 0 || t->ne[1] == ne1),
           "tensor %s is %dD {%lld, %lld}, expected {%lld, %lld}", name, t->n_dims,
           (long long)t->ne[0], (long long)t->ne[1], (long long)ne0, (long long)ne1);
}

static void expect_layer_shape(const GgufFile *g, int layer, const char *suffix, int64_t ne0,
                               int64_t ne1)
{
    char name[128];
    snprintf(name, sizeof name, "blk.%d.%s", layer, suffix);
    expect_shape(g, name, ne0, ne1);
}

/* The hyperparameters every architecture has. */
typedef struct Hparams {
    int64_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx, n_vocab;
} Hparams;

static Hparams read_hparams(const GgufFile *g, const char *arch)
{
    Hparams hp;
    hp.n_layer = meta_int(g, arch, "block_count", true);
    hp.n_embd = meta_int(g, arch, "embedding_length", true);
    hp.n_head = meta_int(g, arch, "attention.head_count", true);
    hp.n_head_kv = meta_int(g, arch, "attention.head_count_kv", false);
    if (hp.n_head_kv < 0) hp.n_head_kv = hp.n_head; /* the documented default */
    hp.n_ff = meta_int(g, arch, "feed_forward_length", true);
    hp.n_ctx = meta_int(g, arch, "context_length", true);
    hp.n_vocab = -1;
    GgufValueType et;
    uint64_t n = 0;
    int64_t i = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (i < 0) survey_fail("no tokenizer.ggml.tokens");
    else if (gguf_kv_get_arr(g, i, &et, &n) != KB_OK || et != GGUF_VT_STRING)
        survey_fail("tokenizer.ggml.tokens is not an array of strings");
    else hp.n_vocab = (int64_t)n;
    return hp;
}

/* llama, qwen2 (with Q/K/V biases) and aidreams. */
static void check_llama_shapes(const GgufFile *g, const Hparams *hp, bool qkv_bias, bool tied)
{
    int64_t E = hp->n_embd, hd = hp->n_embd / hp->n_head, F = hp->n_ff;
    int64_t Eq = hp->n_head * hd, Ekv = hp->n_head_kv * hd;
    expect_shape(g, "token_embd.weight", E, hp->n_vocab);
    expect_shape(g, "output_norm.weight", E, -1);
    if (tied) SURVEY(gguf_find_tensor(g, "output.weight") == NULL, "has output.weight (tied?)");
    else expect_shape(g, "output.weight", E, hp->n_vocab);
    for (int l = 0; l < hp->n_layer; l++) {
        expect_layer_shape(g, l, "attn_norm.weight", E, -1);
        expect_layer_shape(g, l, "attn_q.weight", E, Eq);
        expect_layer_shape(g, l, "attn_k.weight", E, Ekv);
        expect_layer_shape(g, l, "attn_v.weight", E, Ekv);
        expect_layer_shape(g, l, "attn_output.weight", Eq, E);
        expect_layer_shape(g, l, "ffn_norm.weight", E, -1);
        expect_layer_shape(g, l, "ffn_gate.weight", E, F);
        expect_layer_shape(g, l, "ffn_up.weight", E, F);
        expect_layer_shape(g, l, "ffn_down.weight", F, E);
        if (qkv_bias) {
            expect_layer_shape(g, l, "attn_q.bias", Eq, -1);
            expect_layer_shape(g, l, "attn_k.bias", Ekv, -1);
            expect_layer_shape(g, l, "attn_v.bias", Ekv, -1);
        }
    }
}

static void check_chatglm_shapes(const GgufFile *g, const Hparams *hp)
{
    int64_t E = hp->n_embd, hd = hp->n_embd / hp->n_head, F = hp->n_ff;
    int64_t Ekv = hp->n_head_kv * hd;
    expect_shape(g, "token_embd.weight", E, hp->n_vocab);
    expect_shape(g, "output_norm.weight", E, -1);
    expect_shape(g, "output.weight", E, hp->n_vocab);
    for (int l = 0; l < hp->n_layer; l++) {
        expect_layer_shape(g, l, "attn_norm.weight", E, -1);
        expect_layer_shape(g, l, "attn_qkv.weight", E, E + 2 * Ekv);
        expect_layer_shape(g, l, "attn_qkv.bias", E + 2 * Ekv, -1);
        expect_layer_shape(g, l, "attn_output.weight", E, E);
        expect_layer_shape(g, l, "ffn_norm.weight", E, -1);
        expect_layer_shape(g, l, "ffn_up.weight", E, 2 * F); /* gate and up, fused */
        expect_layer_shape(g, l, "ffn_down.weight", F, E);
    }
    /* rope on half the head dim */
    SURVEY(meta_int(g, "chatglm", "rope.dimension_count", true) == hd / 2,
           "chatglm.rope.dimension_count is not head_dim/2 = %lld", (long long)(hd / 2));
}

static void check_bloom_shapes(const GgufFile *g, const Hparams *hp)
{
    int64_t E = hp->n_embd, F = hp->n_ff;
    expect_shape(g, "token_embd.weight", E, hp->n_vocab);
    expect_shape(g, "token_embd_norm.weight", E, -1);
    expect_shape(g, "token_embd_norm.bias", E, -1);
    expect_shape(g, "output_norm.weight", E, -1);
    expect_shape(g, "output_norm.bias", E, -1);
    expect_shape(g, "output.weight", E, hp->n_vocab);
    for (int l = 0; l < hp->n_layer; l++) {
        expect_layer_shape(g, l, "attn_norm.weight", E, -1);
        expect_layer_shape(g, l, "attn_norm.bias", E, -1);
        expect_layer_shape(g, l, "attn_qkv.weight", E, 3 * E);
        expect_layer_shape(g, l, "attn_qkv.bias", 3 * E, -1);
        expect_layer_shape(g, l, "attn_output.weight", E, E);
        expect_layer_shape(g, l, "attn_output.bias", E, -1);
        expect_layer_shape(g, l, "ffn_norm.weight", E, -1);
        expect_layer_shape(g, l, "ffn_norm.bias", E, -1);
        expect_layer_shape(g, l, "ffn_up.weight", E, F);
        expect_layer_shape(g, l, "ffn_up.bias", F, -1);
        expect_layer_shape(g, l, "ffn_down.weight", F, E);
        expect_layer_shape(g, l, "ffn_down.bias", E, -1);
    }
}

static void check_bert_shapes(const GgufFile *g, const Hparams *hp)
{
    int64_t E = hp->n_embd, F = hp->n_ff;
    int64_t n_types = meta_int(g, NULL, "tokenizer.ggml.token_type_count", false);
    if (n_types < 0) n_types = 2;
    expect_shape(g, "token_embd.weight", E, hp->n_vocab);
    expect_shape(g, "token_types.weight", E, n_types);
    expect_shape(g, "position_embd.weight", E, hp->n_ctx);
    expect_shape(g, "token_embd_norm.weight", E, -1);
    expect_shape(g, "token_embd_norm.bias", E, -1);
    static const char *const sq[] = {"attn_q", "attn_k", "attn_v", "attn_output"};
    static const char *const norms[] = {"attn_output_norm", "layer_output_norm"};
    char name[64];
    for (int l = 0; l < hp->n_layer; l++) {
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "%s.weight", sq[k]);
            expect_layer_shape(g, l, name, E, E);
            snprintf(name, sizeof name, "%s.bias", sq[k]);
            expect_layer_shape(g, l, name, E, -1);
        }
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%s.weight", norms[k]);
            expect_layer_shape(g, l, name, E, -1);
            snprintf(name, sizeof name, "%s.bias", norms[k]);
            expect_layer_shape(g, l, name, E, -1);
        }
        expect_layer_shape(g, l, "ffn_up.weight", E, F);
        expect_layer_shape(g, l, "ffn_up.bias", F, -1);
        expect_layer_shape(g, l, "ffn_down.weight", F, E);
        expect_layer_shape(g, l, "ffn_down.bias", E, -1);
    }
    SURVEY(meta_int(g, "bert", "pooling_type", true) == 1, "bert.pooling_type is not 1 (mean)");
}

/* File-name type tags. `type` is the type of the 2-D layer weights; K-quant
** mixes (`mix`) store each layer weight in a K type from `type` up to Q6_K,
** with ffn_up (never promoted by llama.cpp's mix rules) in `type` itself.
** `ftype` is llama.cpp's general.file_type for the tag (checked when the key
** is present; -1: no value). */
typedef struct TypeTag {
    const char *tag;
    int type;
    bool mix;
    int ftype;
} TypeTag;

static const TypeTag type_tags[] = {
    {"F32", KB_TYPE_F32, false, 0},      {"F16", KB_TYPE_F16, false, 1},
    {"BF16", KB_TYPE_BF16, false, 32},   {"Q4_0", KB_TYPE_Q4_0, false, 2},
    {"Q4_1", KB_TYPE_Q4_1, false, 3},    {"Q5_0", KB_TYPE_Q5_0, false, 8},
    {"Q5_1", KB_TYPE_Q5_1, false, 9},    {"Q8_0", KB_TYPE_Q8_0, false, 7},
    {"Q6_K", KB_TYPE_Q6_K, false, 18},   {"Q2_K", KB_TYPE_Q2_K, true, 10},
    {"Q3_K_M", KB_TYPE_Q3_K, true, 12},  {"Q4_K_M", KB_TYPE_Q4_K, true, 15},
    {"Q5_K_M", KB_TYPE_Q5_K, true, 17},
};

/* The tensor type rule (stated in the report):
**   - 1-D tensors (norms, biases) are F32;
**   - 2-D `blk.*` weights have the tag's type; in a K mix, a K type from the
**     tag's base type up to Q6_K, and blk.*.ffn_up.weight the base type;
**   - other 2-D tensors (token_embd, output, bert's position/type tables)
**     have a type the tag allows for layers, or Q6_K (llama.cpp keeps the
**     output matrix, and token_embd when it doubles as output, at Q6_K),
**     or F32 (bert's small position and token-type tables). */
static void check_types(const GgufFile *g, const TypeTag *tt)
{
    bool ffn_up_seen = false;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const GgufTensor *t = gguf_tensor(g, i);
        bool layer_ok = tt->mix ? t->type >= tt->type && t->type <= KB_TYPE_Q6_K
                                : t->type == tt->type;
        if (t->n_dims == 1) {
            SURVEY(t->type == KB_TYPE_F32, "1-D tensor %s is %s, expected F32", t->name,
                   kb_type_name(t->type));
        } else if (strncmp(t->name, "blk.", 4) == 0) {
            SURVEY(layer_ok, "layer weight %s is %s, tag %s", t->name, kb_type_name(t->type),
                   tt->tag);
            if (strstr(t->name, ".ffn_up.weight")) {
                ffn_up_seen = true;
                SURVEY(t->type == tt->type, "%s is %s, expected %s", t->name,
                       kb_type_name(t->type), kb_type_name(tt->type));
            }
        } else {
            SURVEY(layer_ok || t->type == KB_TYPE_Q6_K || t->type == KB_TYPE_F32,
                   "%s is %s, tag %s", t->name, kb_type_name(t->type), tt->tag);
        }
    }
    SURVEY(ffn_up_seen, "no ffn_up weight");
    int64_t ftype = meta_int(g, NULL, "general.file_type", false);
    SURVEY(ftype < 0 || ftype == tt->ftype, "general.file_type %lld, expected %d for %s",
           (long long)ftype, tt->ftype, tt->tag);
}

/* Returns n_vocab from the first line of refs/<model>.ref, or -1 when the
** file is absent or has no such line (bert refs). */
static int64_t ref_n_vocab(const char *model)
{
    char rel[300];
    snprintf(rel, sizeof rel, "refs/%s.ref", model);
    char *path = testutil_data_path(rel);
    FILE *f = fopen(path, "r");
    free(path);
    if (!f) return -1;
    char line[256] = "";
    long n = -1;
    if (fgets(line, sizeof line, f) && sscanf(line, "# n_vocab=%ld", &n) != 1) n = -1;
    fclose(f);
    return n;
}

/* Returns the number of values on the first `embd` line of a bert ref. */
static int64_t ref_embd_dim(const char *model)
{
    char rel[300];
    snprintf(rel, sizeof rel, "refs/%s.ref", model);
    char *path = testutil_data_path(rel);
    size_t len = 0;
    char *text = testutil_read_file(path, &len);
    free(path);
    if (!text) return -1;
    int64_t n = -1;
    char *p = strstr(text, "\nembd ");
    if (p) {
        n = 0;
        char *end = strchr(p + 1, '\n');
        if (end) *end = '\0';
        for (char *tok = strtok(p + 6, " "); tok; tok = strtok(NULL, " ")) n++;
    }
    free(text);
    return n;
}

/* Checks one model file; `name` is its file name. */
static void survey_model(const char *dir, const char *name)
{
    survey_file = name;
    char base[256];
    snprintf(base, sizeof base, "%s", name);
    base[strlen(base) - strlen(".gguf")] = '\0';
    char *dash = strrchr(base, '-');
    if (!dash) {
        survey_fail("file name has no type tag");
        return;
    }
    *dash = '\0';
    const char *family = base, *tag = dash + 1;

    char *path = testutil_join(dir, name);
    char err[512] = "";
    GgufFile *g = NULL;
    int rc = gguf_open(path, &g, err, sizeof err);
    free(path);
    if (rc != KB_OK) {
        survey_fail("gguf_open = %d: %s", rc, err);
        return;
    }
    char why[512];
    if (ggufgen_check_file(g, why, sizeof why) != 0) survey_fail("inconsistent: %s", why);

    /* architecture from the file name */
    const char *arch = NULL;
    if (strncmp(family, "tiny-llama", 10) == 0 || strncmp(family, "aidreams", 8) == 0)
        arch = "llama";
    else if (strcmp(family, "tiny-qwen2") == 0) arch = "qwen2";
    else if (strcmp(family, "tiny-chatglm") == 0) arch = "chatglm";
    else if (strcmp(family, "tiny-bloom") == 0) arch = "bloom";
    else if (strcmp(family, "tiny-bert") == 0) arch = "bert";
    if (!arch) {
        survey_fail("unknown model family '%s': add it to the test", family);
        gguf_close(g);
        return;
    }
    const char *s = NULL;
    size_t len = 0;
    rc = gguf_get_str(g, "general.architecture", &s, &len);
    SURVEY(rc == KB_OK && len == strlen(arch) && memcmp(s, arch, len) == 0,
           "general.architecture is not '%s'", arch);

    Hparams hp = read_hparams(g, arch);
    if (hp.n_layer < 0 || hp.n_embd <= 0 || hp.n_head <= 0 || hp.n_ff < 0 || hp.n_vocab < 0) {
        gguf_close(g);
        return;
    }

    /* the README's numbers */
    bool tiny_llama = strcmp(family, "tiny-llama") == 0, tied = strcmp(family, "tiny-llama-tied") == 0;
    if (tiny_llama || strcmp(family, "tiny-qwen2") == 0) { /* qwen2: "like llama" */
        SURVEY(hp.n_layer == 2 && hp.n_embd == 256 && hp.n_head == 8 && hp.n_head_kv == 2 &&
                   hp.n_ff == 512,
               "hparams layers %lld embd %lld heads %lld/%lld ff %lld, README: 2 256 8/2 512",
               (long long)hp.n_layer, (long long)hp.n_embd, (long long)hp.n_head,
               (long long)hp.n_head_kv, (long long)hp.n_ff);
    }
    if (tied)
        SURVEY(hp.n_head == 4 && hp.n_head_kv == 4, "heads %lld/%lld, README: 4/4",
               (long long)hp.n_head, (long long)hp.n_head_kv);
    if (strcmp(arch, "bert") == 0)
        SURVEY(hp.n_vocab == 30522, "bert vocab %lld, README: 30522", (long long)hp.n_vocab);
    else
        SURVEY(hp.n_vocab == 512, "vocab %lld, README: 512 (aidreams SentencePiece)",
               (long long)hp.n_vocab);
    if (strcmp(arch, "qwen2") == 0) {
        double base_freq = 0;
        SURVEY(gguf_get_float(g, "qwen2.rope.freq_base", &base_freq) == KB_OK && base_freq == 1e6,
               "qwen2.rope.freq_base %g, README: 1e6", base_freq);
    }

    /* shapes, and no tensor left unexplained */
    shapes_checked = 0;
    if (strcmp(arch, "llama") == 0) check_llama_shapes(g, &hp, false, tied);
    else if (strcmp(arch, "qwen2") == 0) check_llama_shapes(g, &hp, true, true);
    else if (strcmp(arch, "chatglm") == 0) check_chatglm_shapes(g, &hp);
    else if (strcmp(arch, "bloom") == 0) check_bloom_shapes(g, &hp);
    else check_bert_shapes(g, &hp);
    SURVEY(shapes_checked == gguf_n_tensors(g), "%lld tensors, %lld explained by the layout",
           (long long)gguf_n_tensors(g), (long long)shapes_checked);

    if (strcmp(family, "aidreams260K") == 0) {
        uint64_t params = 0;
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) params += gguf_tensor(g, i)->n_elements;
        SURVEY(params >= 247000 && params <= 273000, "%llu parameters, README: 260K",
               (unsigned long long)params);
    }

    /* vocabulary: tokens == token_embd rows == scores == token_type == ref */
    const GgufTensor *te = gguf_find_tensor(g, "token_embd.weight");
    SURVEY(te && te->ne[1] == hp.n_vocab, "token_embd rows != %lld tokens", (long long)hp.n_vocab);
    static const char *const per_token[] = {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    for (int k = 0; k < 2; k++) {
        int64_t i = gguf_find_key(g, per_token[k]);
        GgufValueType et;
        uint64_t n = 0;
        if (i >= 0)
            SURVEY(gguf_kv_get_arr(g, i, &et, &n) == KB_OK && (int64_t)n == hp.n_vocab,
                   "%s has %llu entries, %lld tokens", per_token[k], (unsigned long long)n,
                   (long long)hp.n_vocab);
    }
    char model[256];
    snprintf(model, sizeof model, "%.120s-%.120s", family, tag);
    int64_t ref_vocab = ref_n_vocab(model);
    if (ref_vocab >= 0)
        SURVEY(ref_vocab == hp.n_vocab, "refs/%s.ref says n_vocab=%lld, file has %lld", model,
               (long long)ref_vocab, (long long)hp.n_vocab);
    if (strcmp(arch, "bert") == 0) {
        int64_t dim = ref_embd_dim(model);
        if (dim >= 0)
            SURVEY(dim == hp.n_embd, "refs/%s.ref embeddings have %lld values, n_embd %lld", model,
                   (long long)dim, (long long)hp.n_embd);
    }

    /* tensor types from the file name */
    const TypeTag *tt = NULL;
    for (size_t k = 0; k < sizeof type_tags / sizeof type_tags[0]; k++)
        if (strcmp(type_tags[k].tag, tag) == 0) tt = &type_tags[k];
    if (!tt) survey_fail("unknown type tag '%s': add it to the test", tag);
    else check_types(g, tt);

    gguf_close(g);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_gguf_opens_every_model_with_documented_metadata(void **state)
{
    (void)state;
    char *dir = testutil_data_path("models");
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[1024];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 1024) {
        size_t len = strlen(de->d_name);
        if (len > 5 && strcmp(de->d_name + len - 5, ".gguf") == 0) names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    survey_failures = 0;
    for (int i = 0; i < n; i++) {
        survey_model(dir, names[i]);
        free(names[i]);
    }
    free(dir);
    print_message("%d model files checked, %d problems\n", n, survey_failures);
    assert_true(n >= 50);
    assert_int_equal(survey_failures, 0);
}

/* Spot checks of tiny-llama's documented shapes (the survey covers them for
** every file; this names them for the reader). */
static void test_gguf_tiny_llama_has_gqa_shapes(void **state)
{
    (void)state;
    GgufFile *g = open_data("models/tiny-llama-Q4_K_M.gguf");
    int64_t v;
    assert_int_equal(gguf_get_int(g, "llama.block_count", &v), KB_OK);
    assert_int_equal(v, 2);
    assert_int_equal(gguf_get_int(g, "llama.embedding_length", &v), KB_OK);
    assert_int_equal(v, 256);
    assert_int_equal(gguf_get_int(g, "llama.attention.head_count", &v), KB_OK);
    assert_int_equal(v, 8);
    assert_int_equal(gguf_get_int(g, "llama.attention.head_count_kv", &v), KB_OK);
    assert_int_equal(v, 2);
    assert_int_equal(gguf_get_int(g, "llama.feed_forward_length", &v), KB_OK);
    assert_int_equal(v, 512);
    const GgufTensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 256);
    assert_int_equal(t->ne[1], 256);
    t = gguf_find_tensor(g, "blk.1.attn_k.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 256);
    assert_int_equal(t->ne[1], 64); /* 2 KV heads x head dim 32 */
    t = gguf_find_tensor(g, "blk.0.ffn_up.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 256);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->type, KB_TYPE_Q4_K);
    assert_int_equal(t->n_bytes, 256 * 512 / 256 * 144);
    assert_non_null(gguf_find_tensor(g, "output.weight"));
    t = gguf_find_tensor(g, "output_norm.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 1);
    assert_int_equal(t->type, KB_TYPE_F32);
    assert_null(gguf_find_tensor(g, "blk.2.attn_q.weight"));
    gguf_close(g);

    g = open_data("models/tiny-llama-tied-Q8_0.gguf");
    assert_null(gguf_find_tensor(g, "output.weight"));
    assert_int_equal(gguf_get_int(g, "llama.attention.head_count", &v), KB_OK);
    assert_int_equal(v, 4);
    assert_int_equal(gguf_get_int(g, "llama.attention.head_count_kv", &v), KB_OK);
    assert_int_equal(v, 4);
    gguf_close(g);
}

/* --- 2. data pointers: the same weights at several precisions --- */

/* Returns element k of a tensor as float (F32, F16, BF16 only). */
static float elem(const GgufTensor *t, uint64_t k)
{
    const uint8_t *p = t->data;
    if (t->type == KB_TYPE_F32) {
        float f;
        memcpy(&f, p + 4 * k, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * k, 2);
    return t->type == KB_TYPE_F16 ? kb_half_to_float(h) : kb_bf16_to_float(h);
}

/* Compares every tensor of the F32 file with the same-named tensor of the
** other file: the other precision's rounding (relative rel) is the only
** difference allowed. */
static void compare_precisions(const char *f32_rel, const char *other_rel, double rel)
{
    GgufFile *a = open_data(f32_rel), *b = open_data(other_rel);
    assert_int_equal(gguf_n_tensors(a), gguf_n_tensors(b));
    int64_t compared = 0;
    for (int64_t i = 0; i < gguf_n_tensors(a); i++) {
        const GgufTensor *ta = gguf_tensor(a, i);
        const GgufTensor *tb = gguf_find_tensor(b, ta->name);
        if (!tb) print_error("%s: no tensor %s\n", other_rel, ta->name);
        assert_non_null(tb);
        assert_int_equal(ta->type, KB_TYPE_F32);
        assert_true(tb->type == KB_TYPE_F32 || tb->type == KB_TYPE_F16 || tb->type == KB_TYPE_BF16);
        assert_int_equal(ta->n_elements, tb->n_elements);
        for (int d = 0; d < GGUF_MAX_DIMS; d++) assert_int_equal(ta->ne[d], tb->ne[d]);
        for (uint64_t k = 0; k < ta->n_elements; k++) {
            double x = elem(ta, k), y = elem(tb, k);
            if (!(fabs(x - y) <= rel * fabs(x) + 1e-6)) {
                print_error("%s vs %s: %s[%llu] = %.9g vs %.9g\n", f32_rel, other_rel, ta->name,
                            (unsigned long long)k, x, y);
                fail();
            }
        }
        compared++;
    }
    assert_true(compared > 0);
    gguf_close(a);
    gguf_close(b);
}

/* Half precision keeps 11 significant bits: rounding is within 2^-11 < 1e-3
** relative; bfloat16 keeps 8: within 2^-8 < 4e-3. */
static void test_gguf_f16_and_bf16_files_hold_the_f32_weights(void **state)
{
    (void)state;
    compare_precisions("models/tiny-llama-F32.gguf", "models/tiny-llama-F16.gguf", 1e-3);
    compare_precisions("models/tiny-llama-F32.gguf", "models/tiny-llama-BF16.gguf", 4e-3);
    compare_precisions("models/aidreams260K-F32.gguf", "models/aidreams260K-F16.gguf", 1e-3);
    compare_precisions("models/tiny-qwen2-F32.gguf", "models/tiny-qwen2-F16.gguf", 1e-3);
    compare_precisions("models/tiny-chatglm-F32.gguf", "models/tiny-chatglm-F16.gguf", 1e-3);
    compare_precisions("models/tiny-bloom-F32.gguf", "models/tiny-bloom-F16.gguf", 1e-3);
}

/* bert has no F32 file: its Q8_0 file, dequantized by the documented block
** layout (d, int8 qs[32]: value q d), must match the F16 weights within half
** a quantization step (plus the rounding of d and of the F16 value). */
static void test_gguf_q8_0_file_holds_the_f16_weights(void **state)
{
    (void)state;
    GgufFile *a = open_data("models/tiny-bert-F16.gguf"), *b = open_data("models/tiny-bert-Q8_0.gguf");
    int64_t compared = 0;
    for (int64_t i = 0; i < gguf_n_tensors(b); i++) {
        const GgufTensor *tb = gguf_tensor(b, i);
        const GgufTensor *ta = gguf_find_tensor(a, tb->name);
        assert_non_null(ta);
        assert_int_equal(ta->n_elements, tb->n_elements);
        if (tb->type != KB_TYPE_Q8_0) continue;
        assert_int_equal(tb->n_bytes, tb->n_elements / 32 * sizeof(BlockQ8_0));
        const BlockQ8_0 *blk = tb->data;
        for (uint64_t k = 0; k < tb->n_elements; k++) {
            BlockQ8_0 q;
            memcpy(&q, &blk[k / 32], sizeof q);
            double d = kb_half_to_float(q.d);
            double x = elem(ta, k), y = q.qs[k % 32] * d;
            if (!(fabs(x - y) <= 0.7 * d + 1e-6)) {
                print_error("%s[%llu]: F16 %.9g vs Q8_0 %.9g (d %.9g)\n", tb->name,
                            (unsigned long long)k, x, y, d);
                fail();
            }
        }
        compared++;
    }
    assert_true(compared >= 12);
    gguf_close(a);
    gguf_close(b);
}

/* The tensor data pointers are the file's bytes at data_offset + offset, the
** data section is aligned and starts after the metadata, and the last tensor
** of a reference model ends exactly at the end of the file. */
static void test_gguf_tensor_data_is_the_file_bytes(void **state)
{
    (void)state;
    char *path = testutil_data_path("models/aidreams260K-F16.gguf");
    size_t len = 0;
    char *bytes = testutil_read_file(path, &len);
    assert_non_null(bytes);
    GgufFile *g = open_ok(path);
    assert_int_equal(gguf_file_size(g), len);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), GGUF_DEFAULT_ALIGNMENT); /* no general.alignment key */
    assert_int_equal(gguf_find_key(g, "general.alignment"), -1);
    uint64_t doff = gguf_data_offset(g);
    assert_int_equal(doff % 32, 0);
    assert_true(gguf_kv_end_offset(g) > 24);
    assert_true(gguf_kv_end_offset(g) < doff);
    assert_true(doff - gguf_kv_end_offset(g) >= (uint64_t)gguf_n_tensors(g) * (8 + 1 + 4 + 8 + 4 + 8));
    uint64_t max_end = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const GgufTensor *t = gguf_tensor(g, i);
        assert_true(doff + t->offset + t->n_bytes <= len);
        assert_memory_equal(t->data, bytes + doff + t->offset, t->n_bytes);
        if (doff + t->offset + t->n_bytes > max_end) max_end = doff + t->offset + t->n_bytes;
    }
    assert_int_equal(max_end, len);
    /* the first tensor info follows the metadata: its name is there */
    const GgufTensor *t0 = gguf_tensor(g, 0);
    uint64_t name_len;
    memcpy(&name_len, bytes + gguf_kv_end_offset(g), 8);
    assert_int_equal(name_len, strlen(t0->name));
    assert_memory_equal(bytes + gguf_kv_end_offset(g) + 8, t0->name, name_len);
    gguf_close(g);
    free(bytes);
    free(path);
}

/* --- 3. vocab-only files --- */

/* Returns array entry `key`'s length, asserting it is an array of et. */
static uint64_t arr_len(const GgufFile *g, const char *key, GgufValueType et)
{
    int64_t i = gguf_find_key(g, key);
    if (i < 0) print_error("no key %s\n", key);
    assert_true(i >= 0);
    GgufValueType got;
    uint64_t n = 0;
    assert_int_equal(gguf_kv_get_arr(g, i, &got, &n), KB_OK);
    assert_int_equal(got, et);
    return n;
}

static void assert_token(const GgufFile *g, uint64_t id, const char *text)
{
    int64_t i = gguf_find_key(g, "tokenizer.ggml.tokens");
    const char *s = NULL;
    size_t len = 0;
    assert_int_equal(gguf_arr_get_str(g, i, id, &s, &len), KB_OK);
    if (len != strlen(text) || memcmp(s, text, len) != 0)
        print_error("token %llu is '%.*s', expected '%s'\n", (unsigned long long)id, (int)len, s,
                    text);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(s, text, len);
}

static void assert_str_key(const GgufFile *g, const char *key, const char *expected)
{
    const char *s = NULL;
    size_t len = 0;
    assert_int_equal(gguf_get_str(g, key, &s, &len), KB_OK);
    if (len != strlen(expected) || memcmp(s, expected, len) != 0)
        print_error("%s is '%.*s', expected '%s'\n", key, (int)len, s, expected);
    assert_int_equal(len, strlen(expected));
    assert_memory_equal(s, expected, len);
}

static void test_gguf_opens_vocab_files(void **state)
{
    (void)state;
    static const struct {
        const char *file, *model;
        uint64_t n_tokens; /* of the real model's tokenizer */
        bool scores;
    } vocabs[] = {
        {"vocab/ggml-vocab-llama-spm.gguf", "llama", 32000, true},
        {"vocab/ggml-vocab-gpt-2.gguf", "gpt2", 50257, false},
        {"vocab/ggml-vocab-bert-bge.gguf", "bert", 30522, false},
    };
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        GgufFile *g = open_data(vocabs[v].file);
        assert_consistent(g, vocabs[v].file);
        assert_int_equal(gguf_n_tensors(g), 0);
        assert_str_key(g, "tokenizer.ggml.model", vocabs[v].model);
        uint64_t n = arr_len(g, "tokenizer.ggml.tokens", GGUF_VT_STRING);
        assert_int_equal(n, vocabs[v].n_tokens);
        assert_int_equal(arr_len(g, "tokenizer.ggml.token_type", GGUF_VT_INT32), n);
        if (vocabs[v].scores) assert_int_equal(arr_len(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32), n);
        else assert_int_equal(gguf_find_key(g, "tokenizer.ggml.scores"), -1);
        if (v == 0) {
            int64_t vs;
            assert_int_equal(gguf_get_int(g, "llama.vocab_size", &vs), KB_OK);
            assert_int_equal(vs, n);
            assert_token(g, 0, "<unk>");
            assert_token(g, 1, "<s>");
            assert_token(g, 2, "</s>");
            assert_token(g, 3, "<0x00>");
        } else if (v == 1) {
            assert_int_equal(arr_len(g, "tokenizer.ggml.merges", GGUF_VT_STRING), 50000);
            assert_token(g, 0, "!");
            assert_token(g, 50256, "<|endoftext|>");
        } else {
            assert_token(g, 0, "[PAD]");
            assert_token(g, 100, "[UNK]");
            assert_token(g, 101, "[CLS]");
            assert_token(g, 102, "[SEP]");
            assert_token(g, 103, "[MASK]");
        }
        gguf_close(g);
    }
}

/* --- 4. typed lookups --- */

/* A file with one key of every value type, arrays included. */
static char *write_typed_file(void)
{
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_u8(gg, "t.u8", 200);
    ggufgen_kv_i8(gg, "t.i8", -5);
    ggufgen_kv_u16(gg, "t.u16", 60000);
    ggufgen_kv_i16(gg, "t.i16", -30000);
    ggufgen_kv_u32(gg, "t.u32", 4000000000u);
    ggufgen_kv_i32(gg, "t.i32", -2000000000);
    ggufgen_kv_f32(gg, "t.f32", 0.5f);
    ggufgen_kv_bool(gg, "t.bool", true);
    ggufgen_kv_bool(gg, "t.false", false);
    ggufgen_kv_str(gg, "t.str", "hello world");
    ggufgen_kv_u64(gg, "t.u64", 1234567890123ull);
    ggufgen_kv_u64(gg, "t.u64max", (uint64_t)INT64_MAX);
    ggufgen_kv_u64(gg, "t.u64big", (uint64_t)INT64_MAX + 1);
    ggufgen_kv_i64(gg, "t.i64", INT64_MIN);
    ggufgen_kv_f64(gg, "t.f64", -2.25);
    const char *strs[] = {"zero", "", "two\nlines", "three"};
    ggufgen_kv_arr_str(gg, "t.arr.str", strs, 4);
    int32_t i32s[] = {7, -8, 9};
    ggufgen_kv_arr(gg, "t.arr.i32", GGUF_VT_INT32, i32s, 3);
    float f32s[] = {1.5f, -0.25f};
    ggufgen_kv_arr(gg, "t.arr.f32", GGUF_VT_FLOAT32, f32s, 2);
    uint64_t u64s[] = {1, (uint64_t)INT64_MAX + 5};
    ggufgen_kv_arr(gg, "t.arr.u64", GGUF_VT_UINT64, u64s, 2);
    uint8_t bools[] = {1, 0, 1};
    ggufgen_kv_arr(gg, "t.arr.bool", GGUF_VT_BOOL, bools, 3);
    double f64s[] = {3.0};
    ggufgen_kv_arr(gg, "t.arr.f64", GGUF_VT_FLOAT64, f64s, 1);
    int64_t ne[1] = {4};
    ggufgen_tensor(gg, "only.tensor", 1, ne, KB_TYPE_F32);
    return gen_write(gg, "typed.gguf");
}

static void test_gguf_reads_every_value_type(void **state)
{
    (void)state;
    char *path = write_typed_file();
    GgufFile *g = open_ok(path);
    assert_consistent(g, path);
    assert_int_equal(gguf_n_kv(g), 21);
    static const struct {
        const char *key;
        int64_t v;
    } ints[] = {
        {"t.u8", 200}, {"t.i8", -5}, {"t.u16", 60000}, {"t.i16", -30000}, {"t.u32", 4000000000ll},
        {"t.i32", -2000000000}, {"t.u64", 1234567890123ll},
        {"t.u64max", INT64_MAX}, {"t.i64", INT64_MIN},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        int64_t v = 42;
        int rc = gguf_get_int(g, ints[k].key, &v);
        if (rc != KB_OK || v != ints[k].v)
            print_error("%s: rc %d value %lld\n", ints[k].key, rc, (long long)v);
        assert_int_equal(rc, KB_OK);
        assert_true(v == ints[k].v);
    }
    double f = 0;
    assert_int_equal(gguf_get_float(g, "t.f32", &f), KB_OK);
    assert_true(f == 0.5);
    assert_int_equal(gguf_get_float(g, "t.f64", &f), KB_OK);
    assert_true(f == -2.25);
    bool b = false;
    assert_int_equal(gguf_get_bool(g, "t.bool", &b), KB_OK);
    assert_true(b);
    assert_int_equal(gguf_get_bool(g, "t.false", &b), KB_OK);
    assert_false(b);
    assert_str_key(g, "t.str", "hello world");

    int64_t i = gguf_find_key(g, "t.u32");
    assert_true(i >= 0);
    assert_string_equal(gguf_kv_key(g, i), "t.u32");
    assert_int_equal(gguf_kv_type(g, i), GGUF_VT_UINT32);
    assert_int_equal(gguf_kv_type(g, gguf_find_key(g, "t.arr.str")), GGUF_VT_ARRAY);
    assert_string_equal(gguf_value_type_name(GGUF_VT_UINT32), "uint32");
    assert_string_equal(gguf_value_type_name(GGUF_VT_ARRAY), "array");
    gguf_close(g);
    free(path);
}

static void test_gguf_typed_getters_refuse_other_types(void **state)
{
    (void)state;
    char *path = write_typed_file();
    GgufFile *g = open_ok(path);
    int64_t v = 42;
    double f = 42;
    bool b = true;
    const char *s = "x";
    size_t len = 42;
    /* wrong kind: KB_ETYPE and the output zeroed */
    assert_int_equal(gguf_get_int(g, "t.str", &v), KB_ETYPE);
    assert_int_equal(v, 0);
    assert_int_equal(gguf_get_int(g, "t.f32", &v), KB_ETYPE);
    assert_int_equal(gguf_get_int(g, "t.arr.i32", &v), KB_ETYPE);
    v = 42; /* a bool is not a number, as llama.cpp's get_key says */
    assert_int_equal(gguf_get_int(g, "t.bool", &v), KB_ETYPE);
    assert_int_equal(v, 0);
    assert_int_equal(gguf_arr_get_int(g, gguf_find_key(g, "t.arr.bool"), 0, &v), KB_ETYPE);
    f = 42;
    assert_int_equal(gguf_get_float(g, "t.u32", &f), KB_ETYPE); /* integers are not converted */
    assert_true(f == 0);
    assert_int_equal(gguf_get_float(g, "t.str", &f), KB_ETYPE);
    b = true;
    assert_int_equal(gguf_get_bool(g, "t.u8", &b), KB_ETYPE);
    assert_false(b);
    assert_int_equal(gguf_get_str(g, "t.u32", &s, &len), KB_ETYPE);
    assert_null(s);
    assert_int_equal(len, 0);
    assert_int_equal(gguf_get_str(g, "t.arr.str", &s, &len), KB_ETYPE);
    /* uint64 above INT64_MAX does not fit */
    assert_int_equal(gguf_get_int(g, "t.u64big", &v), KB_ERANGE);
    /* missing keys */
    assert_int_equal(gguf_find_key(g, "no.such.key"), -1);
    assert_int_equal(gguf_get_int(g, "no.such.key", &v), KB_ENOTFOUND);
    assert_int_equal(gguf_get_float(g, "no.such.key", &f), KB_ENOTFOUND);
    assert_int_equal(gguf_get_bool(g, "no.such.key", &b), KB_ENOTFOUND);
    assert_int_equal(gguf_get_str(g, "no.such.key", &s, &len), KB_ENOTFOUND);
    assert_int_equal(gguf_get_int(g, "t.u8.", &v), KB_ENOTFOUND); /* no prefix matching */
    assert_int_equal(gguf_get_int(g, "t.u", &v), KB_ENOTFOUND);
    assert_int_equal(gguf_get_int(g, "", &v), KB_ENOTFOUND);
    /* by index */
    GgufValueType et;
    uint64_t n = 7;
    assert_int_equal(gguf_kv_get_arr(g, gguf_find_key(g, "t.u32"), &et, &n), KB_ETYPE);
    assert_int_equal(gguf_kv_get_int(g, gguf_find_key(g, "t.str"), &v), KB_ETYPE);
    assert_int_equal(gguf_kv_get_str(g, gguf_find_key(g, "t.str"), &s, &len), KB_OK);
    assert_int_equal(len, 11);
    gguf_close(g);
    free(path);
}

static void test_gguf_reads_array_elements(void **state)
{
    (void)state;
    char *path = write_typed_file();
    GgufFile *g = open_ok(path);
    GgufValueType et;
    uint64_t n = 0;
    int64_t v = 0;
    double f = 0;
    const char *s = NULL;
    size_t len = 0;

    int64_t a = gguf_find_key(g, "t.arr.str");
    assert_int_equal(gguf_kv_get_arr(g, a, &et, &n), KB_OK);
    assert_int_equal(et, GGUF_VT_STRING);
    assert_int_equal(n, 4);
    static const char *const want[] = {"zero", "", "two\nlines", "three"};
    for (uint64_t j = 3; j < 4; j--) { /* backwards: random access, not a cursor */
        assert_int_equal(gguf_arr_get_str(g, a, j, &s, &len), KB_OK);
        assert_int_equal(len, strlen(want[j]));
        assert_memory_equal(s, want[j], len);
    }
    assert_int_equal(gguf_arr_get_str(g, a, 4, &s, &len), KB_ERANGE);
    assert_int_equal(gguf_arr_get_str(g, a, UINT64_MAX, &s, &len), KB_ERANGE);
    assert_int_equal(gguf_arr_get_int(g, a, 0, &v), KB_ETYPE);

    a = gguf_find_key(g, "t.arr.i32");
    assert_int_equal(gguf_kv_get_arr(g, a, &et, &n), KB_OK);
    assert_int_equal(et, GGUF_VT_INT32);
    assert_int_equal(n, 3);
    assert_int_equal(gguf_arr_get_int(g, a, 1, &v), KB_OK);
    assert_int_equal(v, -8);
    assert_int_equal(gguf_arr_get_int(g, a, 2, &v), KB_OK);
    assert_int_equal(v, 9);
    assert_int_equal(gguf_arr_get_int(g, a, 3, &v), KB_ERANGE);
    assert_int_equal(gguf_arr_get_float(g, a, 0, &f), KB_ETYPE);
    assert_int_equal(gguf_arr_get_str(g, a, 0, &s, &len), KB_ETYPE);

    a = gguf_find_key(g, "t.arr.f32");
    assert_int_equal(gguf_arr_get_float(g, a, 1, &f), KB_OK);
    assert_true(f == -0.25);
    assert_int_equal(gguf_arr_get_float(g, a, 2, &f), KB_ERANGE);
    a = gguf_find_key(g, "t.arr.f64");
    assert_int_equal(gguf_arr_get_float(g, a, 0, &f), KB_OK);
    assert_true(f == 3.0);

    a = gguf_find_key(g, "t.arr.u64");
    assert_int_equal(gguf_arr_get_int(g, a, 0, &v), KB_OK);
    assert_int_equal(v, 1);
    assert_int_equal(gguf_arr_get_int(g, a, 1, &v), KB_ERANGE); /* > INT64_MAX */

    a = gguf_find_key(g, "t.arr.bool");
    assert_int_equal(gguf_kv_get_arr(g, a, &et, &n), KB_OK);
    assert_int_equal(et, GGUF_VT_BOOL);
    assert_int_equal(n, 3);
    assert_int_equal(gguf_arr_get_int(g, a, 2, &v), KB_ETYPE); /* bools are not numbers */

    /* element reads of a scalar */
    a = gguf_find_key(g, "t.u32");
    assert_int_equal(gguf_arr_get_int(g, a, 0, &v), KB_ETYPE);
    assert_int_equal(gguf_arr_get_str(g, gguf_find_key(g, "t.str"), 0, &s, &len), KB_ETYPE);
    gguf_close(g);
    free(path);
}

static void test_gguf_find_tensor_and_close_null(void **state)
{
    (void)state;
    char *path = write_typed_file();
    GgufFile *g = open_ok(path);
    assert_int_equal(gguf_n_tensors(g), 1);
    const GgufTensor *t = gguf_find_tensor(g, "only.tensor");
    assert_non_null(t);
    assert_ptr_equal(t, gguf_tensor(g, 0));
    assert_null(gguf_find_tensor(g, "missing.tensor"));
    assert_null(gguf_find_tensor(g, "only.tenso"));
    assert_null(gguf_find_tensor(g, ""));
    gguf_close(g);
    gguf_close(NULL);
    free(path);
}

/* The message is cut to errlen bytes (NUL included) and never overruns. */
static void test_gguf_error_message_respects_errlen(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    ggufgen_set_magic(gg, "GGML");
    char *path = gen_write(gg, "errlen.gguf");
    char err[32];
    memset(err, 'Z', sizeof err);
    GgufFile *g = NULL;
    assert_int_equal(gguf_open(path, &g, err, 8), KB_EFORMAT);
    assert_null(g);
    assert_true(strlen(err) <= 7);
    for (size_t k = 8; k < sizeof err; k++) assert_int_equal(err[k], 'Z');
    assert_int_equal(gguf_open(path, &g, NULL, 0), KB_EFORMAT);
    assert_null(g);
    err[0] = 'Z';
    assert_int_equal(gguf_open(path, &g, err, 1), KB_EFORMAT);
    assert_int_equal(err[0], '\0');
    free(path);
}

/* --- 5. malformed files --- */

static void test_gguf_rejects_bad_magic(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    ggufgen_set_magic(gg, "GGML");
    expect_gen_fails(gg, "magic.gguf", KB_EFORMAT, "magic|GGML");
}

static void test_gguf_rejects_version_1(void **state)
{
    (void)state;
    GgufGen *gg = ggufgen_new(1);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    expect_gen_fails(gg, "v1.gguf", KB_EUNSUPPORTED, "version");
}

static void test_gguf_rejects_version_4(void **state)
{
    (void)state;
    GgufGen *gg = ggufgen_new(4);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    expect_gen_fails(gg, "v4.gguf", KB_EUNSUPPORTED, "version");
}

/* A big-endian file (every number byte-swapped: the version reads as
** 0x03000000) is refused as such, not as a garbled file. */
static void test_gguf_rejects_big_endian_file(void **state)
{
    (void)state;
    GgufGen *gg = ggufgen_new(3);
    ggufgen_set_big_endian(gg, true);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    int64_t ne[1] = {8};
    ggufgen_tensor(gg, "w", 1, ne, KB_TYPE_F32);
    expect_gen_fails(gg, "be.gguf", KB_EUNSUPPORTED, "endian");
}

static void test_gguf_rejects_huge_tensor_count(void **state)
{
    (void)state;
    uint64_t counts[] = {(uint64_t)1 << 62, (uint64_t)GGUF_MAX_TENSORS + 1, UINT64_MAX, 3};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        GgufGen *gg = gen_base();
        ggufgen_set_n_tensors(gg, counts[k]); /* the file holds 2 */
        expect_gen_fails(gg, "ntensors.gguf", KB_EFORMAT, "tensor");
    }
}

static void test_gguf_rejects_huge_kv_count(void **state)
{
    (void)state;
    uint64_t counts[] = {(uint64_t)1 << 62, (uint64_t)GGUF_MAX_KV + 1, UINT64_MAX};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        GgufGen *gg = gen_base();
        ggufgen_set_n_kv(gg, counts[k]);
        expect_gen_fails(gg, "nkv.gguf", KB_EFORMAT, "kv|key|metadata");
    }
}

static void test_gguf_rejects_key_length_past_end(void **state)
{
    (void)state;
    uint64_t lens[] = {1000, (uint64_t)1 << 40, UINT64_MAX, UINT64_MAX - 7};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        GgufGen *gg = ggufgen_new(3);
        ggufgen_kv_str(gg, "general.architecture", "llama");
        ggufgen_kv_raw(gg);
        ggufgen_put_u64(gg, lens[k]);
        ggufgen_put_bytes(gg, "general.name", 12);
        ggufgen_put_i32(gg, GGUF_VT_UINT32);
        ggufgen_put_u32(gg, 1);
        expect_gen_fails(gg, "keylen.gguf", KB_EFORMAT, "key");
    }
}

static void test_gguf_rejects_string_length_past_end(void **state)
{
    (void)state;
    uint64_t lens[] = {100, (uint64_t)1 << 40, (uint64_t)1 << 63, UINT64_MAX};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        GgufGen *gg = ggufgen_new(3);
        ggufgen_kv_str(gg, "general.architecture", "llama");
        ggufgen_kv_begin(gg, "general.name", GGUF_VT_STRING);
        ggufgen_put_u64(gg, lens[k]);
        ggufgen_put_bytes(gg, "tiny", 4);
        expect_gen_fails(gg, "strlen.gguf", KB_EFORMAT, "general.name");
    }
    /* a string inside an array */
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_begin(gg, "tokenizer.ggml.tokens", GGUF_VT_ARRAY);
    ggufgen_put_i32(gg, GGUF_VT_STRING);
    ggufgen_put_u64(gg, 2);
    ggufgen_put_str(gg, "ok");
    ggufgen_put_u64(gg, UINT64_MAX - 2);
    ggufgen_put_bytes(gg, "bad", 3);
    expect_gen_fails(gg, "arrstrlen.gguf", KB_EFORMAT, "tokenizer.ggml.tokens");
}

static void test_gguf_rejects_unknown_value_type(void **state)
{
    (void)state;
    static const struct {
        int32_t type;
        const char *mention;
    } types[] = {{13, "13"}, {255, "255"}, {-1, "-1|4294967295"}};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        GgufGen *gg = ggufgen_new(3);
        ggufgen_kv_str(gg, "general.architecture", "llama");
        ggufgen_kv_begin(gg, "my.strange.key", types[k].type);
        ggufgen_put_u32(gg, 0);
        ggufgen_put_u32(gg, 0);
        expect_gen_fails(gg, "vtype.gguf", KB_EFORMAT, "my.strange.key", types[k].mention);
    }
    /* an unknown element type of an array */
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_begin(gg, "my.array", GGUF_VT_ARRAY);
    ggufgen_put_i32(gg, 13);
    ggufgen_put_u64(gg, 1);
    ggufgen_put_u64(gg, 0);
    expect_gen_fails(gg, "vtype-arr.gguf", KB_EFORMAT, "my.array");
}

static void test_gguf_rejects_nested_array(void **state)
{
    (void)state;
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    ggufgen_kv_begin(gg, "my.nested", GGUF_VT_ARRAY);
    ggufgen_put_i32(gg, GGUF_VT_ARRAY); /* array of arrays */
    ggufgen_put_u64(gg, 1);
    ggufgen_put_i32(gg, GGUF_VT_UINT32);
    ggufgen_put_u64(gg, 2);
    ggufgen_put_u32(gg, 1);
    ggufgen_put_u32(gg, 2);
    expect_gen_fails(gg, "nested.gguf", KB_EFORMAT, "my.nested");
}

/* count * element size wraps around 2^64 to a small number: the check must
** not multiply blindly. */
static void test_gguf_rejects_array_size_overflow(void **state)
{
    (void)state;
    static const struct {
        int32_t et;
        uint64_t n;
    } cases[] = {
        {GGUF_VT_UINT64, (uint64_t)1 << 61},   /* 2^61 * 8 = 2^64 -> 0 */
        {GGUF_VT_UINT32, ((uint64_t)1 << 62) + 1}, /* * 4 = 2^64 + 4 -> 4 */
        {GGUF_VT_UINT8, UINT64_MAX},
        {GGUF_VT_STRING, (uint64_t)1 << 61},   /* each string is >= 8 bytes */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        GgufGen *gg = ggufgen_new(3);
        ggufgen_kv_begin(gg, "my.big.array", GGUF_VT_ARRAY);
        ggufgen_put_i32(gg, cases[k].et);
        ggufgen_put_u64(gg, cases[k].n);
        ggufgen_put_u64(gg, 0); /* a few bytes of "elements" */
        ggufgen_put_u32(gg, 0);
        ggufgen_kv_str(gg, "general.architecture", "llama");
        expect_gen_fails(gg, "arrover.gguf", KB_EFORMAT, "my.big.array");
    }
}

static void test_gguf_rejects_duplicate_key(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    ggufgen_kv_str(gg, "general.name", "one");
    ggufgen_kv_u32(gg, "general.name", 2);
    expect_gen_fails(gg, "dupkey.gguf", KB_EFORMAT, "general.name");
}

static void test_gguf_rejects_empty_or_nul_key(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    ggufgen_kv_u32(gg, "", 1);
    expect_gen_fails(gg, "emptykey.gguf", KB_EFORMAT, "key");
    gg = gen_base();
    ggufgen_kv_raw(gg);
    ggufgen_put_strn(gg, "general.na\0me", 13);
    ggufgen_put_i32(gg, GGUF_VT_UINT32);
    ggufgen_put_u32(gg, 1);
    expect_gen_fails(gg, "nulkey.gguf", KB_EFORMAT, "key");
}

/* llama.cpp reads string values and tokens through c_str(): whatever
** follows a NUL is lost ("llama\0x" would pass as llama; a token cut short
** duplicates another). They are refused at open, naming the key and where. */
static void test_gguf_rejects_nul_in_string_value_or_token(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    ggufgen_kv_strn(gg, "general.name", "tiny\0evil", 9);
    expect_gen_fails(gg, "nulvalue.gguf", KB_EFORMAT, "general.name", "NUL byte at byte 4 of 9");
    gg = gen_base();
    ggufgen_kv_begin(gg, "tokenizer.ggml.tokens", GGUF_VT_ARRAY);
    ggufgen_put_u32(gg, GGUF_VT_STRING);
    ggufgen_put_u64(gg, 3);
    ggufgen_put_str(gg, "<s>");
    ggufgen_put_strn(gg, "a\0b", 3);
    ggufgen_put_str(gg, "c");
    expect_gen_fails(gg, "nultoken.gguf", KB_EFORMAT, "string 1 of", "tokenizer.ggml.tokens", "NUL");
}

static void test_gguf_rejects_duplicate_tensor_name(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    int64_t ne[1] = {16};
    ggufgen_tensor(gg, "second.weight", 1, ne, KB_TYPE_F32);
    expect_gen_fails(gg, "duptensor.gguf", KB_EFORMAT, "second.weight");
}

static void test_gguf_rejects_empty_or_nul_tensor_name(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    int64_t ne[1] = {16};
    ggufgen_tensor(gg, "", 1, ne, KB_TYPE_F32);
    expect_gen_fails(gg, "emptyname.gguf", KB_EFORMAT, "name");
    gg = gen_base();
    ggufgen_tensor_n(gg, "bad\0name", 8, 1, ne, KB_TYPE_F32);
    expect_gen_fails(gg, "nulname.gguf", KB_EFORMAT, "name");
}

static void test_gguf_rejects_tensor_name_length_past_end(void **state)
{
    (void)state;
    uint64_t lens[] = {5000, UINT64_MAX};
    for (size_t k = 0; k < 2; k++) {
        GgufGen *gg = gen_base();
        ggufgen_tensor_set_name_len(gg, 1, lens[k]);
        expect_gen_fails(gg, "namelen.gguf", KB_EFORMAT, "name|tensor");
    }
}

static void test_gguf_rejects_bad_n_dims(void **state)
{
    (void)state;
    /* (tensor names without "dim" in them: the message must say it) */
    int64_t ne5[5] = {16, 1, 1, 1, 1};
    GgufGen *gg = gen_base();
    ggufgen_tensor(gg, "five.weight", 5, ne5, KB_TYPE_F32);
    expect_gen_fails(gg, "ndims5.gguf", KB_EFORMAT, "five.weight", "dim");
    gg = gen_base();
    ggufgen_tensor(gg, "zero.weight", 0, NULL, KB_TYPE_F32);
    expect_gen_fails(gg, "ndims0.gguf", KB_EFORMAT, "zero.weight", "dim");
    gg = gen_base();
    int64_t ne1[1] = {16};
    int t = ggufgen_tensor(gg, "many.weight", 1, ne1, KB_TYPE_F32);
    ggufgen_tensor_set_n_dims(gg, t, 0xFFFFFFFFu);
    expect_gen_fails(gg, "ndimsmax.gguf", KB_EFORMAT, "many.weight", "dim");
}

static void test_gguf_rejects_non_positive_dims(void **state)
{
    (void)state;
    int64_t cases[][2] = {{0, 4}, {16, 0}, {-32, 4}, {16, -1}, {INT64_MIN, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        GgufGen *gg = gen_base();
        ggufgen_tensor(gg, "bad.dims", 2, cases[k], KB_TYPE_F32);
        expect_gen_fails(gg, "nedims.gguf", KB_EFORMAT, "bad.dims");
    }
}

static void test_gguf_rejects_element_count_overflow(void **state)
{
    (void)state;
    int64_t big2[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    int64_t big4[4] = {(int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 31};
    int64_t bytes[1] = {(int64_t)1 << 62}; /* elements fit, 4-byte size does not */
    int64_t max2[2] = {INT64_MAX, 2};
    struct {
        int n_dims;
        int64_t *ne;
    } cases[] = {{2, big2}, {4, big4}, {1, bytes}, {2, max2}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        GgufGen *gg = gen_base();
        ggufgen_tensor(gg, "huge.tensor", cases[k].n_dims, cases[k].ne, KB_TYPE_F32);
        expect_gen_fails(gg, "overflow.gguf", KB_EFORMAT, "huge.tensor");
    }
}

static void test_gguf_rejects_unknown_tensor_type(void **state)
{
    (void)state;
    int64_t ne[1] = {256};
    GgufGen *gg = gen_base();
    ggufgen_tensor(gg, "odd.weight", 1, ne, 99);
    expect_gen_fails(gg, "type99.gguf", KB_EFORMAT, "odd.weight", "99");
    gg = gen_base();
    ggufgen_tensor(gg, "odd.weight", 1, ne, KB_TYPE_COUNT);
    expect_gen_fails(gg, "type39.gguf", KB_EFORMAT, "odd.weight");
    gg = gen_base();
    ggufgen_tensor(gg, "odd.weight", 1, ne, -1);
    expect_gen_fails(gg, "typeneg.gguf", KB_EFORMAT, "odd.weight");
}

/* Ids ggml removed: such a file was valid GGUF when it was written, so it is
** "well-formed but not something kbchat can use" (engine.h's definition of
** KB_EUNSUPPORTED), and the message says which format the id was. */
static void test_gguf_rejects_removed_tensor_type_by_name(void **state)
{
    (void)state;
    int64_t ne[1] = {256};
    GgufGen *gg = gen_base();
    ggufgen_tensor(gg, "old.weight", 1, ne, 31);
    expect_gen_fails(gg, "type31.gguf", KB_EUNSUPPORTED, "old.weight", "Q4_0_4_4");
    gg = gen_base();
    ggufgen_tensor(gg, "old.weight", 1, ne, 4);
    expect_gen_fails(gg, "type4.gguf", KB_EUNSUPPORTED, "old.weight", "Q4_2");
}

static void test_gguf_rejects_row_not_multiple_of_block(void **state)
{
    (void)state;
    int64_t ne[2] = {48, 2}; /* Q4_0 blocks hold 32 */
    GgufGen *gg = gen_base();
    ggufgen_tensor(gg, "ragged.weight", 2, ne, KB_TYPE_Q4_0);
    expect_gen_fails(gg, "block.gguf", KB_EFORMAT, "ragged.weight", "48");
    int64_t nek[2] = {128, 2}; /* Q4_K blocks hold 256 */
    gg = gen_base();
    ggufgen_tensor(gg, "ragged.weight", 2, nek, KB_TYPE_Q4_K);
    expect_gen_fails(gg, "blockk.gguf", KB_EFORMAT, "ragged.weight", "128");
}

static void test_gguf_rejects_misaligned_offset(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    ggufgen_tensor_set_offset(gg, 1, 16 * 32 + 4); /* past tensor 0, not a multiple of 32 */
    expect_gen_fails(gg, "misaligned.gguf", KB_EFORMAT, "second.weight");
    /* aligned to 32 but not to general.alignment 64 */
    gg = gen_base();
    ggufgen_kv_u32(gg, "general.alignment", 64);
    ggufgen_set_alignment(gg, 64);
    ggufgen_tensor_set_offset(gg, 1, 96);
    expect_gen_fails(gg, "misaligned64.gguf", KB_EFORMAT, "second.weight");
}

static void test_gguf_rejects_bad_alignment(void **state)
{
    (void)state;
    uint32_t bad[] = {0, 3, 48, 0x80000001u};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        GgufGen *gg = gen_base();
        ggufgen_kv_u32(gg, "general.alignment", bad[k]);
        ggufgen_set_alignment(gg, bad[k] == 3 || bad[k] == 48 ? bad[k] : 32);
        expect_gen_fails(gg, "align.gguf", KB_EFORMAT, "alignment");
    }
    /* right value, wrong type: the spec says uint32 */
    GgufGen *gg = gen_base();
    ggufgen_kv_u64(gg, "general.alignment", 32);
    expect_gen_fails(gg, "align64.gguf", KB_EFORMAT, "alignment");
    gg = gen_base();
    ggufgen_kv_i32(gg, "general.alignment", 32);
    expect_gen_fails(gg, "aligni32.gguf", KB_EFORMAT, "alignment");
    gg = gen_base();
    ggufgen_kv_str(gg, "general.alignment", "32");
    expect_gen_fails(gg, "alignstr.gguf", KB_EFORMAT, "alignment");
}

/* A truncated download: the last tensor's data runs past the end. */
static void test_gguf_rejects_tensor_data_past_end(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    uint64_t end = ggufgen_tensor_nbytes(gg, 0); /* 2 * 2 * 18 = 72 */
    uint64_t second = (end + 31) / 32 * 32;      /* 96 */
    ggufgen_set_data_size(gg, second + 16 * 4 - 1);
    expect_gen_fails(gg, "truncated.gguf", KB_EFORMAT, "second.weight");
    /* an offset far past the end, and one whose end overflows */
    gg = gen_base();
    ggufgen_tensor_set_offset(gg, 1, (uint64_t)1 << 40);
    expect_gen_fails(gg, "faroffset.gguf", KB_EFORMAT, "second.weight");
    gg = gen_base();
    ggufgen_tensor_set_offset(gg, 1, UINT64_MAX - 31);
    expect_gen_fails(gg, "wrapoffset.gguf", KB_EFORMAT, "second.weight");
    /* data section missing entirely (cut right after the tensor infos): the
    ** message may name the data section rather than a tensor */
    gg = gen_base();
    ggufgen_set_data_size(gg, 0);
    ggufgen_set_padding(gg, GGUFGEN_PAD_NEVER);
    expect_gen_fails(gg, "nodata.gguf", KB_EFORMAT, "first.weight|second.weight|data");
}

static void test_gguf_rejects_overlapping_tensors(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    ggufgen_tensor_set_offset(gg, 1, 0); /* both at 0 */
    expect_gen_fails(gg, "overlap.gguf", KB_EFORMAT, "first.weight|second.weight");
    /* partial overlap, listed in the other order */
    gg = ggufgen_new(3);
    int64_t ne[1] = {64};
    ggufgen_tensor(gg, "late.weight", 1, ne, KB_TYPE_F32);  /* 256 bytes */
    ggufgen_tensor(gg, "early.weight", 1, ne, KB_TYPE_F32); /* 256 bytes */
    ggufgen_tensor_set_offset(gg, 0, 224);
    ggufgen_tensor_set_offset(gg, 1, 0);
    expect_gen_fails(gg, "overlap2.gguf", KB_EFORMAT, "late.weight|early.weight");
    /* by a single byte, at alignment 1 */
    gg = ggufgen_new(3);
    ggufgen_kv_u32(gg, "general.alignment", 1);
    ggufgen_set_alignment(gg, 1);
    int64_t ne3[1] = {3};
    ggufgen_tensor(gg, "one.weight", 1, ne3, KB_TYPE_F32); /* bytes 0..11 */
    ggufgen_tensor(gg, "two.weight", 1, ne3, KB_TYPE_F32);
    ggufgen_tensor_set_offset(gg, 1, 11);
    expect_gen_fails(gg, "overlap1.gguf", KB_EFORMAT, "one.weight|two.weight");
}

static void test_gguf_rejects_short_and_empty_files(void **state)
{
    (void)state;
    char *path = testutil_join(testutil_scratch(), "empty.gguf");
    assert_int_equal(testutil_write_file(path, "", 0), 0);
    expect_open_fails(path, KB_EFORMAT, NULL);
    /* a header cut short */
    static const uint8_t head[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(testutil_write_file(path, head, sizeof head), 0);
    expect_open_fails(path, KB_EFORMAT, NULL);
    free(path);
}

static void test_gguf_rejects_directory_and_missing_path(void **state)
{
    (void)state;
    expect_open_fails(testutil_scratch(), KB_EIO, NULL);
    char *path = testutil_join(testutil_scratch(), "no-such-file.gguf");
    expect_open_fails(path, KB_EIO, NULL);
    free(path);
}

/* A named pipe is not a model file: the open must fail at once (KB_EIO)
** rather than wait for a writer. It runs in a child process that an alarm
** kills if gguf_open blocks. */
static void test_gguf_rejects_fifo_without_blocking(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/pipe.gguf", testutil_scratch());
    assert_int_equal(mkfifo(path, 0600), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL);
        alarm(2);
        char err[512] = "";
        GgufFile *g = NULL;
        int rc = gguf_open(path, &g, err, sizeof err);
        _exit(rc == KB_EIO && g == NULL && strstr(err, path) ? 0 : 100 + rc);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(ws))
        print_error("gguf_open(%s) on a FIFO blocked until killed by signal %d\n", path,
                    WTERMSIG(ws));
    else if (WEXITSTATUS(ws) != 0)
        print_error("gguf_open on a FIFO returned %d, expected KB_EIO with the path in the "
                    "message\n", WEXITSTATUS(ws) - 100);
    unlink(path);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
}

/* --- 6. valid edge cases --- */

/* Opens a crafted file, checks the invariants and that every tensor's data
** pointer holds the generator's pattern (so the data offset is right). */
static GgufFile *open_gen(GgufGen *gg, const char *name)
{
    size_t len;
    uint8_t *bytes = ggufgen_finish(gg, &len);
    uint64_t doff = ggufgen_data_offset(gg), kv_end = ggufgen_kv_end_offset(gg);
    char *path = testutil_join(testutil_scratch(), name);
    assert_int_equal(testutil_write_file(path, bytes, len), 0);
    GgufFile *g = open_ok(path);
    assert_consistent(g, name);
    assert_int_equal(gguf_file_size(g), len);
    assert_int_equal(gguf_kv_end_offset(g), kv_end);
    if (gguf_n_tensors(g) > 0) assert_int_equal(gguf_data_offset(g), doff);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const GgufTensor *t = gguf_tensor(g, i);
        assert_int_equal(t->offset, ggufgen_tensor_offset(gg, (int)i));
        assert_int_equal(t->n_bytes, ggufgen_tensor_nbytes(gg, (int)i));
        assert_memory_equal(t->data, bytes + doff + t->offset, t->n_bytes);
    }
    free(bytes);
    free(path);
    ggufgen_free(gg);
    return g;
}

static void test_gguf_opens_version_2(void **state)
{
    (void)state;
    GgufGen *gg = ggufgen_new(2);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    int64_t ne[2] = {32, 3};
    ggufgen_tensor(gg, "w", 2, ne, KB_TYPE_Q8_0);
    GgufFile *g = open_gen(gg, "v2.gguf");
    assert_int_equal(gguf_version(g), 2);
    gguf_close(g);
}

static void test_gguf_opens_alignment_64_and_1(void **state)
{
    (void)state;
    uint32_t aligns[] = {64, 1, 4096};
    for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
        GgufGen *gg = gen_base();
        ggufgen_kv_u32(gg, "general.alignment", aligns[k]);
        ggufgen_set_alignment(gg, aligns[k]);
        int64_t ne[1] = {3}; /* 12 bytes: the next offset is unaligned at alignment 1 */
        ggufgen_tensor(gg, "third.weight", 1, ne, KB_TYPE_F32);
        ggufgen_tensor(gg, "fourth.weight", 1, ne, KB_TYPE_F16);
        GgufFile *g = open_gen(gg, "align.gguf");
        assert_int_equal(gguf_alignment(g), aligns[k]);
        assert_int_equal(gguf_data_offset(g) % aligns[k], 0);
        gguf_close(g);
    }
}

/* No tensors: with padding, and without (the vocab files end right after
** the metadata, so the aligned data offset lies past the end). */
static void test_gguf_opens_zero_tensors(void **state)
{
    (void)state;
    GgufGenPad pads[] = {GGUFGEN_PAD_NEVER, GGUFGEN_PAD_ALWAYS};
    for (size_t k = 0; k < 2; k++) {
        GgufGen *gg = ggufgen_new(3);
        ggufgen_kv_str(gg, "general.architecture", "llama");
        ggufgen_kv_str(gg, "x", "abc"); /* ends at an unaligned offset */
        ggufgen_set_padding(gg, pads[k]);
        GgufFile *g = open_gen(gg, "notensors.gguf");
        assert_int_equal(gguf_n_tensors(g), 0);
        assert_int_equal(gguf_n_kv(g), 2);
        gguf_close(g);
    }
}

static void test_gguf_opens_zero_kv(void **state)
{
    (void)state;
    GgufGen *gg = ggufgen_new(3);
    int64_t ne[1] = {8};
    ggufgen_tensor(gg, "w", 1, ne, KB_TYPE_F32);
    GgufFile *g = open_gen(gg, "nokv.gguf");
    assert_int_equal(gguf_n_kv(g), 0);
    assert_int_equal(gguf_alignment(g), GGUF_DEFAULT_ALIGNMENT);
    assert_int_equal(gguf_data_offset(g), 64); /* 24 + 1+8 + 4+8 + 4+8 = 57 -> 64 */
    int64_t v;
    assert_int_equal(gguf_get_int(g, "general.alignment", &v), KB_ENOTFOUND);
    gguf_close(g);
    /* nothing at all: just the header */
    gg = ggufgen_new(3);
    g = open_gen(gg, "header-only.gguf");
    assert_int_equal(gguf_n_kv(g), 0);
    assert_int_equal(gguf_n_tensors(g), 0);
    assert_int_equal(gguf_kv_end_offset(g), 24);
    gguf_close(g);
}

static void test_gguf_opens_empty_string_and_empty_arrays(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    ggufgen_kv_str(gg, "empty.str", "");
    ggufgen_kv_arr(gg, "empty.u32", GGUF_VT_UINT32, NULL, 0);
    ggufgen_kv_arr_str(gg, "empty.strs", NULL, 0);
    GgufFile *g = open_gen(gg, "empties.gguf");
    const char *s = NULL;
    size_t len = 99;
    assert_int_equal(gguf_get_str(g, "empty.str", &s, &len), KB_OK);
    assert_int_equal(len, 0);
    GgufValueType et;
    uint64_t n = 99;
    int64_t i = gguf_find_key(g, "empty.u32");
    assert_int_equal(gguf_kv_get_arr(g, i, &et, &n), KB_OK);
    assert_int_equal(et, GGUF_VT_UINT32);
    assert_int_equal(n, 0);
    int64_t v;
    assert_int_equal(gguf_arr_get_int(g, i, 0, &v), KB_ERANGE);
    i = gguf_find_key(g, "empty.strs");
    assert_int_equal(gguf_kv_get_arr(g, i, &et, &n), KB_OK);
    assert_int_equal(et, GGUF_VT_STRING);
    assert_int_equal(n, 0);
    assert_int_equal(gguf_arr_get_str(g, i, 0, &s, &len), KB_ERANGE);
    gguf_close(g);
}

/* The last tensor ending exactly at EOF is fine (the generator's default),
** and so are trailing bytes after it. */
static void test_gguf_opens_last_tensor_ending_at_eof(void **state)
{
    (void)state;
    GgufGen *gg = gen_base();
    uint64_t end = 96 + 16 * 4; /* second.weight: offset 96, 64 bytes */
    GgufFile *g = open_gen(gg, "exact.gguf");
    assert_int_equal(gguf_file_size(g), gguf_data_offset(g) + end);
    gguf_close(g);
    gg = gen_base();
    ggufgen_set_data_size(gg, end + 100);
    g = open_gen(gg, "trailing.gguf");
    assert_int_equal(gguf_file_size(g), gguf_data_offset(g) + end + 100);
    gguf_close(g);
}

/* Every known type opens, including those kbchat cannot compute with (IQ,
** integer types): refusing them is the model loader's job. 4-D shapes,
** gaps between tensors and infos out of data order are fine too. */
/* Long names: a 63-byte tensor name (the longest ggml allows) and a 300-byte
** key (keys have no limit) open. */
static void test_gguf_opens_long_names(void **state)
{
    (void)state;
    char name[64], key[301];
    memset(name, 'n', 63);
    name[63] = '\0';
    memset(key, 'k', 300);
    key[300] = '\0';
    GgufGen *gg = gen_base();
    ggufgen_kv_u32(gg, key, 7);
    int64_t ne[1] = {4};
    ggufgen_tensor(gg, name, 1, ne, KB_TYPE_F32);
    GgufFile *g = open_gen(gg, "longnames.gguf");
    assert_non_null(gguf_find_tensor(g, name));
    int64_t v;
    assert_int_equal(gguf_get_int(g, key, &v), KB_OK);
    assert_int_equal(v, 7);
    gguf_close(g);
}

static void test_gguf_opens_every_known_type_and_shape(void **state)
{
    (void)state;
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    int n = 0;
    char name[32];
    for (int type = 0; type < KB_TYPE_COUNT; type++) {
        const KbTypeInfo *ti = kb_type_info(type);
        if (!ti) continue;
        int64_t ne[4] = {ti->block_size * 2, 3, 2, 1};
        snprintf(name, sizeof name, "t%d.%s", type, ti->name);
        ggufgen_tensor(gg, name, 4, ne, type);
        n++;
    }
    int64_t ne1[1] = {32};
    int last = ggufgen_tensor(gg, "first.in.data", 1, ne1, KB_TYPE_F32);
    ggufgen_tensor_set_offset(gg, last, 0); /* listed last, first in the data */
    /* lay the others out by hand after it, with a gap of 64 bytes or more each */
    uint64_t off = 256;
    for (int i = 0; i < last; i++) {
        ggufgen_tensor_set_offset(gg, i, off);
        off += (ggufgen_tensor_nbytes(gg, i) + 64 + 31) / 32 * 32;
    }
    GgufFile *g = open_gen(gg, "alltypes.gguf");
    assert_int_equal(gguf_n_tensors(g), n + 1);
    const GgufTensor *t = gguf_find_tensor(g, "t16.IQ2_XXS");
    assert_non_null(t);
    assert_int_equal(t->type, KB_TYPE_IQ2_XXS);
    assert_int_equal(t->n_dims, 4);
    assert_int_equal(t->ne[2], 2);
    assert_int_equal(t->ne[3], 1);
    assert_int_equal(t->n_elements, 512 * 3 * 2);
    t = gguf_find_tensor(g, "first.in.data");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 1);
    assert_int_equal(t->ne[1], 1);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->ne[3], 1);
    gguf_close(g);
}

/* --- 7. allocation failures --- */

static void test_gguf_open_reports_every_allocation_failure(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/models/aidreams260K-F16.gguf", testutil_testdata());
    char err[512];
    long n, unnamed = 0;
    for (n = 1; n < 100000; n++) {
        GgufFile *g = (GgufFile *)&err;
        err[0] = '\0';
        testutil_fail_alloc_after(n);
        int rc = gguf_open(path, &g, err, sizeof err);
        long used = testutil_alloc_count();
        testutil_fail_alloc_after(0);
        if (rc == KB_OK) {
            assert_true(used < n); /* it succeeded because no allocation failed */
            assert_consistent(g, "after the failures");
            gguf_close(g);
            break;
        }
        if (rc != KB_ENOMEM)
            print_error("allocation %ld failing: rc %d (%s): %s\n", n, rc, kb_strerror(rc), err);
        assert_int_equal(rc, KB_ENOMEM);
        assert_null(g);
        assert_true(strlen(err) > 0);
        /* the message names the path like every other (counted, so every
        ** failure point is still checked for its code and handle) */
        if (!strstr(err, path)) {
            print_error("allocation %ld failing: message does not name the path: %s\n", n, err);
            unnamed++;
        }
    }
    print_message("%ld allocation failure points checked\n", n - 1);
    assert_true(n > 1 && n < 100000);
    assert_int_equal(unnamed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_opens_every_model_with_documented_metadata),
        cmocka_unit_test(test_gguf_tiny_llama_has_gqa_shapes),
        cmocka_unit_test(test_gguf_f16_and_bf16_files_hold_the_f32_weights),
        cmocka_unit_test(test_gguf_q8_0_file_holds_the_f16_weights),
        cmocka_unit_test(test_gguf_tensor_data_is_the_file_bytes),
        cmocka_unit_test(test_gguf_opens_vocab_files),
        cmocka_unit_test(test_gguf_reads_every_value_type),
        cmocka_unit_test(test_gguf_typed_getters_refuse_other_types),
        cmocka_unit_test(test_gguf_reads_array_elements),
        cmocka_unit_test(test_gguf_find_tensor_and_close_null),
        cmocka_unit_test(test_gguf_error_message_respects_errlen),
        cmocka_unit_test(test_gguf_rejects_bad_magic),
        cmocka_unit_test(test_gguf_rejects_version_1),
        cmocka_unit_test(test_gguf_rejects_version_4),
        cmocka_unit_test(test_gguf_rejects_big_endian_file),
        cmocka_unit_test(test_gguf_rejects_huge_tensor_count),
        cmocka_unit_test(test_gguf_rejects_huge_kv_count),
        cmocka_unit_test(test_gguf_rejects_key_length_past_end),
        cmocka_unit_test(test_gguf_rejects_string_length_past_end),
        cmocka_unit_test(test_gguf_rejects_unknown_value_type),
        cmocka_unit_test(test_gguf_rejects_nested_array),
        cmocka_unit_test(test_gguf_rejects_array_size_overflow),
        cmocka_unit_test(test_gguf_rejects_duplicate_key),
        cmocka_unit_test(test_gguf_rejects_empty_or_nul_key),
        cmocka_unit_test(test_gguf_rejects_nul_in_string_value_or_token),
        cmocka_unit_test(test_gguf_rejects_duplicate_tensor_name),
        cmocka_unit_test(test_gguf_rejects_empty_or_nul_tensor_name),
        cmocka_unit_test(test_gguf_rejects_tensor_name_length_past_end),
        cmocka_unit_test(test_gguf_rejects_bad_n_dims),
        cmocka_unit_test(test_gguf_rejects_non_positive_dims),
        cmocka_unit_test(test_gguf_rejects_element_count_overflow),
        cmocka_unit_test(test_gguf_rejects_unknown_tensor_type),
        cmocka_unit_test(test_gguf_rejects_removed_tensor_type_by_name),
        cmocka_unit_test(test_gguf_rejects_row_not_multiple_of_block),
        cmocka_unit_test(test_gguf_rejects_misaligned_offset),
        cmocka_unit_test(test_gguf_rejects_bad_alignment),
        cmocka_unit_test(test_gguf_rejects_tensor_data_past_end),
        cmocka_unit_test(test_gguf_rejects_overlapping_tensors),
        cmocka_unit_test(test_gguf_rejects_short_and_empty_files),
        cmocka_unit_test(test_gguf_rejects_directory_and_missing_path),
        cmocka_unit_test(test_gguf_rejects_fifo_without_blocking),
        cmocka_unit_test(test_gguf_opens_version_2),
        cmocka_unit_test(test_gguf_opens_alignment_64_and_1),
        cmocka_unit_test(test_gguf_opens_zero_tensors),
        cmocka_unit_test(test_gguf_opens_zero_kv),
        cmocka_unit_test(test_gguf_opens_empty_string_and_empty_arrays),
        cmocka_unit_test(test_gguf_opens_last_tensor_ending_at_eof),
        cmocka_unit_test(test_gguf_opens_long_names),
        cmocka_unit_test(test_gguf_opens_every_known_type_and_shape),
        cmocka_unit_test(test_gguf_open_reports_every_allocation_failure),
    };
    return cmocka_run_group_tests(tests, testutil_scratch_setup, testutil_scratch_teardown);
}
