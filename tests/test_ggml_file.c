/*
** test_ggml_file.c: chatglm.cpp GGML files (engine/ggml_file.c), the
** tokenizers they embed (engine/tok_glm.c) and opening them as models
** (engine/model_ggml.c, app/model_info.c).
**
** There are no real chatglm.cpp files in the shared data: every file and
** tokenizer here is written by the test (tests/ggmlgen.h). Expected token
** ids are derived by hand from the rules (comments at each case):
**   - ChatGLM-6B: \n -> <n>, \t -> <|tab|>, 2..80 spaces -> <|blank_N|>
**     (longer runs: 80 first), "▁" before the text and for each remaining
**     space, user-defined pieces kept whole, SentencePiece BPE (highest
**     score first) or unigram (best total score) between them, [gMASK]
**     <sop> appended;
**   - ChatGLM2/3: the SentencePiece pieces, then [MASK] [gMASK] [sMASK] sop
**     eop (ChatGLM3: <|system|> <|user|> <|assistant|> <|observation|>);
**   - GLM-4: tiktoken ranks as ids, lowest-rank merge first, then
**     <|endoftext|> [MASK] [gMASK] [sMASK] <sop> ...
** Hostile input: truncated, bit-flipped and hand-broken files and protobuf
** blobs fail with a clear code and message, and never crash (the ASan
** build checks every access).
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "app/app.h"
#include "engine/model_impl.h"
#include "engine/tok_internal.h"
#include "tests/ggmlgen.h"
#include "tests/ggufgen.h"
#include "tests/testutil.h"

#define SP "\xe2\x96\x81" /* "▁" */

/* --- small models --- */

/* A synthetic model: hidden 32, 4 heads (2 KV heads for ChatGLM2+), 2
** layers, ffn 64, vocabulary 32. */
enum { H = 32, HEADS = 4, KV = 2, LAYERS = 2, FFN = 64, VOCAB = 32 };

static float fill(size_t i)
{
    return (float)((int)((i * 2654435761u) % 97) - 48) / 256.0f;
}

/* Writes one tensor of PyTorch shape (d0[, d1]) of filler values. */
static void put(GgBuf *b, const char *name, int32_t d0, int32_t d1, int type)
{
    int32_t dims[2] = {d0, d1};
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = fill(i + strlen(name));
    gg_tensor(b, name, d1 ? 2 : 1, dims, d1 ? type : KB_TYPE_F32, x);
    free(x);
}

/* The tensors of a ChatGLM-6B model, in chatglm.cpp's order. */
static void put_glm1_tensors(GgBuf *b, int type)
{
    char n[128];
    put(b, "transformer.word_embeddings.weight", VOCAB, H, type);
    for (int l = 0; l < LAYERS; l++) {
#define T(s) (snprintf(n, sizeof n, "transformer.layers.%d." s, l), n)
        put(b, T("input_layernorm.weight"), H, 0, type);
        put(b, T("input_layernorm.bias"), H, 0, type);
        put(b, T("attention.query_key_value.weight"), 3 * H, H, type);
        put(b, T("attention.query_key_value.bias"), 3 * H, 0, type);
        put(b, T("attention.dense.weight"), H, H, type);
        put(b, T("attention.dense.bias"), H, 0, type);
        put(b, T("post_attention_layernorm.weight"), H, 0, type);
        put(b, T("post_attention_layernorm.bias"), H, 0, type);
        put(b, T("mlp.dense_h_to_4h.weight"), FFN, H, type);
        put(b, T("mlp.dense_h_to_4h.bias"), FFN, 0, type);
        put(b, T("mlp.dense_4h_to_h.weight"), H, FFN, type);
        put(b, T("mlp.dense_4h_to_h.bias"), H, 0, type);
#undef T
    }
    put(b, "transformer.final_layernorm.weight", H, 0, type);
    put(b, "transformer.final_layernorm.bias", H, 0, type);
}

/* The tensors of a ChatGLM2/3 or GLM-4 model, in chatglm.cpp's order. */
static void put_glm2_tensors(GgBuf *b, int type)
{
    char n[128];
    int32_t qkv = H + 2 * KV * (H / HEADS);
    put(b, "transformer.embedding.word_embeddings.weight", VOCAB, H, type);
    for (int l = 0; l < LAYERS; l++) {
#define T(s) (snprintf(n, sizeof n, "transformer.encoder.layers.%d." s, l), n)
        put(b, T("input_layernorm.weight"), H, 0, type);
        put(b, T("self_attention.query_key_value.weight"), qkv, H, type);
        put(b, T("self_attention.query_key_value.bias"), qkv, 0, type);
        put(b, T("self_attention.dense.weight"), H, H, type);
        put(b, T("post_attention_layernorm.weight"), H, 0, type);
        put(b, T("mlp.dense_h_to_4h.weight"), 2 * FFN, H, type);
        put(b, T("mlp.dense_4h_to_h.weight"), H, FFN, type);
#undef T
    }
    put(b, "transformer.encoder.final_layernorm.weight", H, 0, type);
    put(b, "transformer.output_layer.weight", VOCAB, H, type);
}

/* A small SentencePiece model (BPE): <unk> <s> </s> ▁ a b ab ▁ab. */
static void small_proto(GgBuf *sp)
{
    sp_piece(sp, "<unk>", 0.0f, KB_TOKTYPE_UNKNOWN);
    sp_piece(sp, "<s>", 0.0f, KB_TOKTYPE_CONTROL);
    sp_piece(sp, "</s>", 0.0f, KB_TOKTYPE_CONTROL);
    sp_piece(sp, SP, -1.0f, KB_TOKTYPE_NORMAL);
    sp_piece(sp, "a", -2.0f, KB_TOKTYPE_NORMAL);
    sp_piece(sp, "b", -2.0f, KB_TOKTYPE_NORMAL);
    sp_piece(sp, "ab", -3.0f, KB_TOKTYPE_NORMAL);
    sp_piece(sp, SP "ab", -4.0f, KB_TOKTYPE_NORMAL);
    sp_trainer(sp, 2, 0, 0, 1, 2);
    sp_normalizer(sp, 1, 0);
}

/* Writes a whole model file of model_type (1-4), config version and weight
** type into b. ChatGLM-6B's vocabulary gets [gMASK] and <sop>. */
static void model_file(GgBuf *b, int model_type, int version, int type)
{
    GgBuf tok = {0};
    GgConfig c = {type, VOCAB, H, HEADS, model_type == 1 ? HEADS : KV, LAYERS, FFN, 64, 1e-5f, 10000.0f};
    gg_header(b, model_type, version);
    gg_config(b, model_type, version, &c);
    if (model_type == 4) {
        const char *v = "YQ== 0\nYg== 1\nYWI= 2\nIA== 3\n"; /* a b ab " " */
        gg_tokenizer(b, v, strlen(v));
    } else {
        small_proto(&tok);
        if (model_type == 1) {
            sp_piece(&tok, "[gMASK]", 0.0f, KB_TOKTYPE_CONTROL);
            sp_piece(&tok, "<sop>", 0.0f, KB_TOKTYPE_CONTROL);
        }
        gg_tokenizer(b, tok.buf, tok.len);
    }
    if (model_type == 1) put_glm1_tensors(b, type);
    else put_glm2_tensors(b, type);
    free(tok.buf);
}

/* Writes buf to a fresh file in dir; returns its malloc'd path. */
static char *write_tmp(const char *dir, const char *name, const void *buf, size_t len)
{
    char *path = testutil_join(dir, name);
    assert_int_equal(testutil_write_file(path, buf, len), 0);
    return path;
}

/* --- the reader --- */

static void test_reader_presents_config_tokenizer_and_tensors(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    static const struct { int type, version; int64_t n_tensors; } kinds[] = {
        {1, 1, 3 + 12 * LAYERS}, {2, 1, 3 + 7 * LAYERS}, {3, 1, 3 + 7 * LAYERS}, {4, 2, 3 + 7 * LAYERS}, {1, 2, 3 + 12 * LAYERS},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        GgBuf b = {0};
        model_file(&b, kinds[k].type, kinds[k].version, KB_TYPE_Q8_0);
        char *path = write_tmp(dir, "m.bin", b.buf, b.len);
        GgmlFile *f = NULL;
        char err[256];
        assert_true(ggml_file_probe(path));
        assert_int_equal(ggml_file_open(path, &f, err, sizeof err), KB_OK);
        const GgmlConfig *c = ggml_file_config(f);
        assert_int_equal(c->model_type, kinds[k].type);
        assert_int_equal(c->version, kinds[k].version);
        assert_int_equal(c->dtype, KB_TYPE_Q8_0);
        assert_int_equal(c->n_vocab, VOCAB);
        assert_int_equal(c->n_embd, H);
        assert_int_equal(c->n_head, HEADS);
        assert_int_equal(c->n_head_kv, kinds[k].type == 1 ? HEADS : KV);
        assert_int_equal(c->n_layer, LAYERS);
        assert_int_equal(c->n_ff, FFN);
        assert_int_equal(c->n_ctx, 64);
        assert_true(c->norm_eps == 1e-5f && c->rope_theta == 10000.0f);
        assert_int_equal(ggml_file_n_tensors(f), kinds[k].n_tensors);
        size_t tl;
        const uint8_t *tok = ggml_file_tokenizer_data(f, &tl);
        assert_true(tl > 0 && tok != NULL);
        for (int64_t i = 0; i < ggml_file_n_tensors(f); i++) {
            const GgufTensor *t = ggml_file_tensor(f, i);
            assert_true(t->offset % GGML_FILE_ALIGN == 0);
            assert_true(t->offset + t->n_bytes <= ggml_file_size(f));
            assert_ptr_equal(ggml_file_find_tensor(f, t->name), t);
        }
        /* ne[0] innermost: the PyTorch [3H, H] (or [qkv, H]) weight is {H, rows}, quantized */
        const GgufTensor *w = ggml_file_find_tensor(f, kinds[k].type == 1 ? "transformer.layers.1.attention.query_key_value.weight"
                                                                           : "transformer.encoder.layers.1.self_attention.dense.weight");
        assert_non_null(w);
        assert_int_equal(w->n_dims, 2);
        assert_int_equal(w->ne[0], H);
        assert_int_equal(w->type, KB_TYPE_Q8_0);
        assert_int_equal(w->n_bytes, (uint64_t)w->ne[1] * H / 32 * 34);
        const GgufTensor *v = ggml_file_find_tensor(f, kinds[k].type == 1 ? "transformer.final_layernorm.bias"
                                                                           : "transformer.encoder.final_layernorm.weight");
        assert_non_null(v);
        assert_int_equal(v->type, KB_TYPE_F32);
        float x0;
        memcpy(&x0, v->data, 4);
        assert_true(x0 == fill(strlen(v->name)));
        assert_null(ggml_file_find_tensor(f, "output.weight"));
        ggml_file_close(f);
        free(path);
        free(b.buf);
    }
    ggml_file_close(NULL);
    testutil_rmtree(dir);
    free(dir);
}

/* The kind of file is its magic: a GGML file named .gguf opens as GGML
** and a GGUF named .bin as GGUF. */
static void test_model_open_detects_ggml_by_magic(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    char err[512];
    for (int type = 1; type <= 4; type++) {
        GgBuf b = {0};
        model_file(&b, type, type == 4 ? 2 : 1, KB_TYPE_F16);
        char *path = write_tmp(dir, "looks-like.gguf", b.buf, b.len);
        KbModelParams params = {.n_ctx = 16, .n_threads = 1};
        KbModel *m = NULL;
        int rc = model_open(path, &params, &m, err, sizeof err);
        if (rc != KB_OK) fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, KB_OK);
        assert_string_equal(model_arch_name(m), type == 1 ? "chatglm1" : "chatglm");
        assert_int_equal(model_n_vocab(m), VOCAB);
        assert_int_equal(model_n_ctx_train(m), 64);
        const int32_t prompt[] = {4, 5, 6, type == 1 ? 8 : 4, type == 1 ? 9 : 5};
        float logits[VOCAB];
        assert_int_equal(model_decode(m, prompt, 5, logits, false), KB_OK);
        for (int i = 0; i < VOCAB; i++) assert_true(isfinite(logits[i]));
        if (type >= 3) assert_true(m->eog_extra[0] >= 0 && m->eog_extra[1] >= 0); /* <|user|>, <|observation|> */
        else assert_true(m->eog_extra[0] < 0 && m->eog_extra[1] < 0);
        model_close(m);
        free(path);
        free(b.buf);
    }
    /* a GGUF file under a .bin name still opens through the GGUF reader */
    char *src = testutil_data_path("models/tiny-chatglm-F32.gguf");
    size_t len;
    char *gguf = testutil_read_file(src, &len);
    assert_non_null(gguf);
    char *path = write_tmp(dir, "chatglm-ggml.bin", gguf, len);
    KbModel *m = NULL;
    KbModelParams params = {.n_ctx = 16, .n_threads = 1};
    assert_int_equal(model_open(path, &params, &m, err, sizeof err), KB_OK);
    assert_null(m->ggml);
    model_close(m);
    free(path);
    free(gguf);
    free(src);
    testutil_rmtree(dir);
    free(dir);
}

/* `kbchat model info` describes a GGML file: format, model, shape,
** tokenizer and tensor types. */
static void test_model_info_reports_ggml_files(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    GgBuf b = {0};
    model_file(&b, 3, 1, KB_TYPE_Q4_0);
    char *path = write_tmp(dir, "chatglm3-ggml.bin", b.buf, b.len);
    char *out_path = testutil_join(dir, "info.txt");
    FILE *out = fopen(out_path, "w");
    char err[256];
    assert_non_null(out);
    assert_int_equal(model_info_print(path, true, out, err, sizeof err), KB_OK);
    fclose(out);
    size_t len;
    char *text = testutil_read_file(out_path, &len);
    assert_non_null(text);
    static const char *const want[] = {
        "format:          chatglm.cpp GGML, model type 3, config version 1, 17 tensors",
        "architecture:    chatglm\n", "name:            ChatGLM3-6B", "file type:       Q4_0",
        "context length:  64", "layers:          2", "heads:           4 (KV heads 2, head size 8)",
        "vocabulary:      32 tokens, tokenizer SentencePiece model (17 tokens in the file)",
        "chat template:   none in the file (the model type's: chatglm3)", "Q4_0", "F32",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (strstr(text, want[i]) == NULL) fprintf(stderr, "missing '%s' in:\n%s", want[i], text);
        assert_non_null(strstr(text, want[i]));
    }
    free(text);
    free(out_path);
    free(path);
    free(b.buf);
    testutil_rmtree(dir);
    free(dir);
}

/* --- hostile files --- */

/* Opens buf[0..len) as a file; returns the code and leaves the message in err. */
static int open_bytes(const char *dir, const void *buf, size_t len, char *err, size_t errlen)
{
    char *path = write_tmp(dir, "h.bin", buf, len);
    GgmlFile *f = NULL;
    int rc = ggml_file_open(path, &f, err, errlen);
    if (rc == KB_OK) {
        for (int64_t i = 0; i < ggml_file_n_tensors(f); i++) {
            const GgufTensor *t = ggml_file_tensor(f, i);
            assert_true(t->offset % GGML_FILE_ALIGN == 0 && t->offset + t->n_bytes <= ggml_file_size(f));
            assert_true(t->n_dims >= 1 && t->n_dims <= 4 && t->ne[0] % kb_type_info(t->type)->block_size == 0);
        }
        Tokenizer *tok = NULL;
        if (ggml_file_tokenizer(f, &tok, err, errlen) == KB_OK) tokenizer_free(tok);
    } else {
        assert_null(f);
        assert_true(err[0] != '\0');
    }
    ggml_file_close(f);
    free(path);
    return rc;
}

/* Cut at every length, a file is refused (the last tensor cannot end
** early; a cut between tensors leaves a valid shorter file). */
static void test_truncated_files_fail_cleanly(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    GgBuf b = {0};
    model_file(&b, 2, 1, KB_TYPE_Q8_0);
    char err[512];
    int ok = 0;
    for (size_t len = 0; len < b.len; len += len < 200 ? 1 : 7) {
        int rc = open_bytes(dir, b.buf, len, err, sizeof err);
        assert_true(rc == KB_OK || rc == KB_EFORMAT);
        ok += rc == KB_OK;
    }
    assert_true(ok < 20);
    assert_int_equal(open_bytes(dir, b.buf, b.len - 1, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "transformer.output_layer.weight"));
    assert_non_null(strstr(err, "truncated"));
    free(b.buf);
    testutil_rmtree(dir);
    free(dir);
}

/* Overwrites the int32 at byte off of a copy of b and opens it; checks the
** code and that the message holds `want`. */
static void expect_broken(const char *dir, const GgBuf *b, size_t off, int32_t v, int want_rc, const char *want)
{
    uint8_t *copy = malloc(b->len);
    char err[512] = "";
    assert_non_null(copy);
    memcpy(copy, b->buf, b->len);
    memcpy(copy + off, &v, 4);
    int rc = open_bytes(dir, copy, b->len, err, sizeof err);
    if (rc != want_rc || strstr(err, want) == NULL) fprintf(stderr, "byte %zu = %d: rc %d, '%s'\n", off, v, rc, err);
    assert_int_equal(rc, want_rc);
    assert_non_null(strstr(err, want));
    free(copy);
}

static void test_broken_headers_give_clear_errors(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    GgBuf b = {0};
    model_file(&b, 2, 1, KB_TYPE_F16);
    /* header: magic 0, type 4, version 8; config from 12: dtype vocab hidden heads layers ffn max bos eos pad sep kv */
    expect_broken(dir, &b, 0, 0x46554747, KB_EFORMAT, "expected 'ggml'");        /* "GGUF" */
    expect_broken(dir, &b, 0, 0x67676d6c, KB_EUNSUPPORTED, "old llama.cpp");      /* "lmgg" */
    expect_broken(dir, &b, 4, 1024, KB_EUNSUPPORTED, "Baichuan");
    expect_broken(dir, &b, 4, 7, KB_EUNSUPPORTED, "model type 7");
    expect_broken(dir, &b, 8, 3, KB_EUNSUPPORTED, "config version 3");
    expect_broken(dir, &b, 12, 99, KB_EFORMAT, "weight type is 99");
    expect_broken(dir, &b, 16, -5, KB_EFORMAT, "vocab_size is -5");
    expect_broken(dir, &b, 16, 1 << 23, KB_EFORMAT, "more weights than the file");
    expect_broken(dir, &b, 20, 30, KB_EFORMAT, "do not divide");
    expect_broken(dir, &b, 24, 0, KB_EFORMAT, "num_attention_heads is 0");
    expect_broken(dir, &b, 28, 100000, KB_EFORMAT, "num_hidden_layers is 100000");
    expect_broken(dir, &b, 32, -1, KB_EFORMAT, "intermediate_size is -1");
    expect_broken(dir, &b, 56, 3, KB_EFORMAT, "do not divide");                  /* kv heads */
    expect_broken(dir, &b, 60, -1, KB_EFORMAT, "the tokenizer at byte 64 has -1 bytes");
    expect_broken(dir, &b, 60, 1 << 30, KB_EFORMAT, "only");                     /* past the end */
    free(b.buf);
    /* GLM-4 needs version 2; ChatGLM-6B's version 2 record is 13 fields */
    b = (GgBuf){0};
    model_file(&b, 4, 2, KB_TYPE_F16);
    expect_broken(dir, &b, 8, 1, KB_EFORMAT, "GLM-4 file must have config version 2");
    expect_broken(dir, &b, 40, 0x7fc00000, KB_EFORMAT, "norm_eps");             /* NaN */
    expect_broken(dir, &b, 48, -1, KB_EFORMAT, "rope_theta");
    free(b.buf);
    testutil_rmtree(dir);
    free(dir);
}

/* Hand-broken tensor headers: each field of the first tensor. */
static void test_broken_tensors_give_clear_errors(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    GgBuf b = {0};
    model_file(&b, 2, 1, KB_TYPE_Q4_0);
    int32_t tok_len;
    memcpy(&tok_len, b.buf + 60, 4);
    size_t t0 = 64 + (size_t)tok_len; /* name_len, name (44 bytes), n_dims, dims[2], type */
    size_t name_len = strlen("transformer.embedding.word_embeddings.weight");
    size_t dims = t0 + 4 + name_len + 4, type = dims + 8;
    expect_broken(dir, &b, t0, 0, KB_EFORMAT, "name of 0 bytes");
    expect_broken(dir, &b, t0, 5000, KB_EFORMAT, "name of 5000 bytes");
    expect_broken(dir, &b, t0 + 4 + name_len, 5, KB_EFORMAT, "5 dimensions");
    expect_broken(dir, &b, t0 + 4 + name_len, 0, KB_EFORMAT, "0 dimensions");
    expect_broken(dir, &b, dims, 0, KB_EFORMAT, "dimension 0");
    expect_broken(dir, &b, dims, -7, KB_EFORMAT, "dimension -7");
    expect_broken(dir, &b, dims + 4, 33, KB_EFORMAT, "not whole blocks of 32");  /* row of 33 Q4_0 values */
    expect_broken(dir, &b, dims, 1 << 30, KB_EFORMAT, "past the end of the file");
    expect_broken(dir, &b, type, 4, KB_EFORMAT, "type 4");                        /* a removed ggml type */
    /* the same name twice */
    uint8_t *copy = malloc(b.len);
    memcpy(copy, b.buf, b.len);
    const char *second = "transformer.encoder.layers.0.input_layernorm.weight";
    uint8_t *at = memmem(copy, b.len, second, strlen(second));
    assert_non_null(at);
    memcpy(at + strlen("transformer.encoder.layers."), "1", 1); /* layer 0's name becomes layer 1's */
    char err[512];
    assert_int_equal(open_bytes(dir, copy, b.len, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "appears twice"));
    free(copy);
    free(b.buf);
    testutil_rmtree(dir);
    free(dir);
}

/* Bit flips anywhere: the file opens or is refused; when the reader and
** the model loader accept it, a decode runs (ASan checks every access). */
static void test_bit_flipped_files_never_crash(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    char err[512];
    uint32_t rng = 12345;
    for (int type = 1; type <= 4; type++) {
        GgBuf b = {0};
        model_file(&b, type, type == 4 ? 2 : 1, KB_TYPE_Q4_0);
        uint8_t *copy = malloc(b.len);
        int header = 0;
        for (int iter = 0; iter < 60; iter++) {
            memcpy(copy, b.buf, b.len);
            for (int k = 0; k < 3; k++) {
                rng = rng * 1103515245u + 12345u;
                /* half the flips in the header and tokenizer, where they matter */
                size_t span = iter % 2 ? b.len : 400 < b.len ? 400 : b.len;
                size_t off = (rng >> 8) % span;
                copy[off] ^= (uint8_t)(1u << ((rng >> 4) % 8));
                header += off < 400;
            }
            char *path = write_tmp(dir, "flip.bin", copy, b.len);
            KbModel *m = NULL;
            KbModelParams params = {.n_ctx = 8, .n_threads = 1};
            int rc = model_open(path, &params, &m, err, sizeof err);
            assert_true(rc == KB_OK || rc == KB_EFORMAT || rc == KB_EUNSUPPORTED || rc == KB_ERANGE);
            if (rc == KB_OK) {
                const int32_t prompt[] = {1, 2, 3};
                float logits[VOCAB];
                assert_int_equal(model_decode(m, prompt, 3, logits, false), KB_OK);
                model_close(m);
            }
            free(path);
        }
        assert_true(header > 0);
        free(copy);
        free(b.buf);
    }
    testutil_rmtree(dir);
    free(dir);
}

/* Model-level errors name the chatglm.cpp tensor and the expected shape. */
static void test_model_errors_name_ggml_tensors(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    char err[512];
    GgBuf b = {0};
    model_file(&b, 2, 1, KB_TYPE_F32);
    const char *dense = "transformer.encoder.layers.1.self_attention.dense.weight";
    uint8_t *at = memmem(b.buf, b.len, dense, strlen(dense));
    assert_non_null(at);
    at[strlen("transformer.encoder.layers.1.self_attention.")] = 'D';
    char *path = write_tmp(dir, "m.bin", b.buf, b.len);
    KbModel *m = NULL;
    KbModelParams params = {.n_ctx = 8, .n_threads = 1};
    assert_int_equal(model_open(path, &params, &m, err, sizeof err), KB_EFORMAT);
    assert_null(m);
    assert_non_null(strstr(err, "tensor 'transformer.encoder.layers.1.self_attention.dense.weight' is missing"));
    free(path);
    free(b.buf);
    /* a tokenizer with more tokens than the vocabulary */
    b = (GgBuf){0};
    model_file(&b, 2, 1, KB_TYPE_F32);
    int32_t small = 8; /* 8 pieces + 5 specials do not fit 8 rows */
    memcpy(b.buf + 16, &small, 4);
    path = write_tmp(dir, "m.bin", b.buf, b.len);
    assert_int_equal(model_open(path, &params, &m, err, sizeof err), KB_EFORMAT);
    assert_non_null(strstr(err, "the tokenizer has 13 tokens but the model's vocabulary only 8"));
    free(path);
    free(b.buf);
    /* a P-tuning v2 prefix */
    b = (GgBuf){0};
    model_file(&b, 4, 2, KB_TYPE_F32);
    int32_t virt = 4;
    memcpy(b.buf + 44, &virt, 4);
    path = write_tmp(dir, "m.bin", b.buf, b.len);
    assert_int_equal(model_open(path, &params, &m, err, sizeof err), KB_EUNSUPPORTED);
    assert_non_null(strstr(err, "P-tuning"));
    free(path);
    free(b.buf);
    testutil_rmtree(dir);
    free(dir);
}

/* --- ChatGLM-6B's tokenizer --- */

/* The synthetic ChatGLM-6B vocabulary: ids of its pieces. The whitespace
** pieces first, a little BPE vocabulary, filler up to 130000, then the
** special tokens at their real ids. */
enum {
    T_UNK = 0, T_NL = 1, T_TAB = 2, T_BLANK2 = 3, /* <|blank_N|> = N + 1, up to 81 */
    T_SP = 82, T_H, T_E, T_L, T_O, T_W, T_R, T_D, T_A, T_B,
    T_HE, T_LL, T_LLO, T_HELLO, T_SPHELLO, T_OR, T_LD, T_WOR, T_WORLD, T_SPWORLD,
    T_FILL,
    T_MASK = 130000, T_GMASK = 130001, T_SMASK = 130002, T_SOP = 130004, T_EOP = 130005,
    T_N = 130006, T_VOCAB = 130528
};
#define BLANK(n) ((n) + 1)

/* Builds the model's ModelProto: BPE unless unigram (scores then act as
** log probabilities). */
static void glm1_proto(GgBuf *sp, int model_type)
{
    static const struct { int id; const char *text; float score; } normal[] = {
        {T_SP, SP, -1}, {T_H, "h", -2}, {T_E, "e", -2}, {T_L, "l", -2}, {T_O, "o", -2}, {T_W, "w", -2}, {T_R, "r", -2},
        {T_D, "d", -2}, {T_A, "a", -2}, {T_B, "b", -2},
        /* BPE merges, highest score first: he, ll, llo, hello, ▁hello; or, ld, wor, world, ▁world */
        {T_HE, "he", -0.5f}, {T_LL, "ll", -0.6f}, {T_LLO, "llo", -0.7f}, {T_HELLO, "hello", -0.8f},
        {T_SPHELLO, SP "hello", -0.9f}, {T_OR, "or", -0.5f}, {T_LD, "ld", -0.55f}, {T_WOR, "wor", -0.6f},
        {T_WORLD, "world", -0.7f}, {T_SPWORLD, SP "world", -0.75f},
    };
    char text[32];
    sp_piece(sp, "<unk>", 0.0f, KB_TOKTYPE_UNKNOWN);
    sp_piece(sp, "<n>", 0.0f, KB_TOKTYPE_USER_DEFINED);
    sp_piece(sp, "<|tab|>", 0.0f, KB_TOKTYPE_USER_DEFINED);
    for (int n = 2; n <= 80; n++) {
        snprintf(text, sizeof text, "<|blank_%d|>", n);
        sp_piece(sp, text, 0.0f, KB_TOKTYPE_USER_DEFINED);
    }
    for (size_t i = 0; i < sizeof normal / sizeof normal[0]; i++) {
        assert_int_equal(normal[i].id, T_SP + (int)i);
        sp_piece(sp, normal[i].text, normal[i].score, KB_TOKTYPE_NORMAL);
    }
    for (int id = T_FILL; id < T_MASK; id++) {
        snprintf(text, sizeof text, "<f%d>", id);
        sp_piece(sp, text, 0.0f, KB_TOKTYPE_UNUSED);
    }
    static const char *const specials[] = {"[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>"};
    for (int i = 0; i < 6; i++) sp_piece(sp, specials[i], 0.0f, KB_TOKTYPE_CONTROL);
    sp_trainer(sp, model_type, 0, 0, -1, -1);
    sp_normalizer(sp, 1, 0);
}

/* Encodes text and compares with want[0..n). */
static void expect_ids(const Tokenizer *t, const char *text, size_t len, unsigned flags, const int32_t *want, size_t n)
{
    KbTokens ids = {0};
    assert_int_equal(tokenizer_encode(t, text, len, flags, &ids), KB_OK);
    if (ids.n != n || memcmp(ids.ids, want, n * sizeof *want) != 0) {
        fprintf(stderr, "'%.*s': got", (int)len, text);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.ids[i]);
        fputc('\n', stderr);
    }
    assert_int_equal(ids.n, n);
    assert_memory_equal(ids.ids, want, n * sizeof *want);
    kb_tokens_free(&ids);
}

/* Decodes ids (and streams them) and compares with want. */
static void expect_text(const Tokenizer *t, const int32_t *ids, size_t n, const char *want)
{
    char *text = NULL, out[512];
    size_t len, o = 0;
    assert_int_equal(tokenizer_decode(t, ids, n, 0, &text, &len), KB_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(text, want, len);
    free(text);
    TokStream s;
    tokstream_init(&s, t, 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(tokstream_room(&s, ids[i]) <= sizeof out - o);
        o += (size_t)tokstream_push(&s, ids[i], out + o, sizeof out - o);
    }
    o += tokstream_finish(&s, out + o, sizeof out - o);
    assert_int_equal(o, strlen(want));
    assert_memory_equal(out, want, o);
}

/* A case: the text, its ids (without the appended [gMASK] <sop>). */
typedef struct TokCase {
    const char *text;
    int32_t ids[8];
    size_t n;
} TokCase;

static void check_glm1_cases(const Tokenizer *t)
{
    static char run85[100], run81[100];
    snprintf(run85, sizeof run85, "hello%85sworld", "");
    snprintf(run81, sizeof run81, "hello%81sworld", "");
    const TokCase cases[] = {
        /* "▁hello▁world": BPE merges he, ll, llo, hello, ▁hello and or, ld, wor, world, ▁world */
        {"hello world", {T_SPHELLO, T_SPWORLD}, 2},
        /* "▁hello<n>world": the text after <n> has no "▁" */
        {"hello\nworld", {T_SPHELLO, T_NL, T_WORLD}, 3},
        /* "▁<|tab|>hello": the dummy prefix alone, then the tab piece */
        {"\thello", {T_SP, T_TAB, T_HELLO}, 3},
        /* "▁a<|blank_2|>b": no "▁a" piece */
        {"a  b", {T_SP, T_A, BLANK(2), T_B}, 4},
        /* 85 spaces: <|blank_80|><|blank_5|> */
        {run85, {T_SPHELLO, BLANK(80), BLANK(5), T_WORLD}, 4},
        /* 81 spaces: <|blank_80|> and a single space, "▁" */
        {run81, {T_SPHELLO, BLANK(80), T_SPWORLD}, 3},
        /* "\n\n  ": two <n> and a blank, after the lone dummy prefix */
        {"hello\n\n  ", {T_SPHELLO, T_NL, T_NL, BLANK(2)}, 4},
        /* a character outside the vocabulary: the unknown token */
        {"hex", {T_SP, T_HE, T_UNK}, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const TokCase *c = &cases[i];
        int32_t with[10];
        memcpy(with, c->ids, c->n * sizeof *with);
        with[c->n] = T_GMASK, with[c->n + 1] = T_SOP;
        expect_ids(t, c->text, strlen(c->text), 0, c->ids, c->n);
        expect_ids(t, c->text, strlen(c->text), KB_TOK_ADD_SPECIAL, with, c->n + 2);
        if (c->ids[c->n - 1] != T_UNK) {
            expect_text(t, c->ids, c->n, c->text);
            expect_text(t, with, c->n + 2, c->text); /* control tokens decode to nothing */
        }
    }
}

static void test_glm1_tokenizer_rules_on_a_synthetic_model(void **state)
{
    (void)state;
    GgBuf sp = {0};
    glm1_proto(&sp, 2);
    Tokenizer *t = NULL;
    char err[256];
    assert_int_equal(tok_sp_model_load(sp.buf, sp.len, 1, T_VOCAB, &t, err, sizeof err), KB_OK);
    assert_int_equal(tokenizer_n_vocab(t), T_VOCAB);
    assert_int_equal(tokenizer_find(t, "[gMASK]", 7), 130001);
    assert_int_equal(tokenizer_find(t, "<sop>", 5), 130004);
    assert_int_equal(tokenizer_bos(t), T_SOP);
    assert_int_equal(tokenizer_eos(t), T_EOP);
    check_glm1_cases(t);
    /* the template already wrote [gMASK]<sop>: not appended twice */
    const int32_t tail[] = {T_SPHELLO, T_GMASK, T_SOP};
    expect_ids(t, "hello[gMASK]<sop>", 17, KB_TOK_ADD_SPECIAL | KB_TOK_PARSE_SPECIAL, tail, 3);
    /* masked: "[gMASK]" typed by the user stays text (unknown characters) */
    const char *text = "[gMASK]hello[gMASK]<sop>";
    unsigned char mask[24];
    memset(mask, 0, 12);
    memset(mask + 12, 1, 12);
    KbTokens ids = {0};
    assert_int_equal(tokenizer_encode_masked(t, text, 24, mask, KB_TOK_ADD_SPECIAL, &ids), KB_OK);
    size_t n_gmask = 0;
    for (size_t i = 0; i < ids.n; i++) n_gmask += ids.ids[i] == T_GMASK;
    assert_int_equal(n_gmask, 1);
    assert_int_equal(ids.ids[ids.n - 2], T_GMASK);
    assert_int_equal(ids.ids[ids.n - 1], T_SOP);
    kb_tokens_free(&ids);
    /* generated text may start with a blank: all its spaces stay */
    const int32_t answer[] = {BLANK(4), T_HELLO};
    expect_text(t, answer, 2, "    hello");
    /* the user-defined pieces render as themselves with special rendering too */
    size_t len;
    const char *p = tokenizer_piece(t, BLANK(3), true, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(p, "   ", 3);
    tokenizer_free(t);
    free(sp.buf);
}

/* The same vocabulary read as a unigram model: the best total score wins,
** consecutive unknown characters are one unknown token. */
static void test_glm1_unigram_model_uses_best_scores(void **state)
{
    (void)state;
    GgBuf sp = {0};
    glm1_proto(&sp, 1);
    Tokenizer *t = NULL;
    char err[256];
    assert_int_equal(tok_sp_model_load(sp.buf, sp.len, 1, 0, &t, err, sizeof err), KB_OK);
    /* "▁hello": ▁hello -0.9 beats every split (▁ + hello = -1.8, ...) */
    const int32_t a[] = {T_SPHELLO};
    expect_ids(t, "hello", 5, 0, a, 1);
    /* "▁hexxo": ▁ -1 + he -0.5 + [xx unknown: one token] + o -2 */
    const int32_t b[] = {T_SP, T_HE, T_UNK, T_O};
    expect_ids(t, "hexxo", 5, 0, b, 4);
    /* "▁abba<n>": ▁ a b b a (no pairs), then <n> */
    const int32_t c[] = {T_SP, T_A, T_B, T_B, T_A, T_NL};
    expect_ids(t, "abba\n", 5, 0, c, 6);
    const int32_t d[] = {T_SPHELLO, T_NL, T_WORLD};
    expect_text(t, d, 3, "hello\nworld");
    tokenizer_free(t);
    free(sp.buf);
}

/* ChatGLM2 and ChatGLM3 append their special tokens after the pieces. */
static void test_glm2_glm3_tokenizers_append_special_tokens(void **state)
{
    (void)state;
    GgBuf sp = {0};
    small_proto(&sp); /* 8 pieces: <unk> <s> </s> ▁ a b ab ▁ab */
    Tokenizer *t = NULL;
    char err[256];
    assert_int_equal(tok_sp_model_load(sp.buf, sp.len, 2, 16, &t, err, sizeof err), KB_OK);
    assert_int_equal(tokenizer_n_vocab(t), 16);
    assert_int_equal(tokenizer_find(t, "[gMASK]", 7), 9);
    assert_int_equal(tokenizer_find(t, "sop", 3), 11);
    assert_int_equal(tokenizer_find(t, "<|user|>", 8), -1);
    assert_int_equal(tokenizer_eos(t), 2);
    assert_int_equal(tokenizer_type(t, 15), KB_TOKTYPE_UNUSED);
    /* "[gMASK]sop" + "▁ab▁a": the template's control tokens, then SentencePiece */
    const int32_t want[] = {9, 11, 7, 3, 4};
    expect_ids(t, "[gMASK]sopab a", 14, KB_TOK_PARSE_SPECIAL | KB_TOK_ADD_SPECIAL, want, 5);
    expect_text(t, want + 2, 3, "ab a");
    tokenizer_free(t);
    assert_int_equal(tok_sp_model_load(sp.buf, sp.len, 3, 0, &t, err, sizeof err), KB_OK);
    assert_int_equal(tokenizer_n_vocab(t), 17);
    assert_int_equal(tokenizer_find(t, "<|user|>", 8), 14);
    assert_int_equal(tokenizer_find(t, "<|observation|>", 15), 16);
    tokenizer_free(t);
    assert_int_equal(tok_sp_model_load(sp.buf, sp.len, 3, 16, &t, err, sizeof err), KB_EFORMAT);
    assert_null(t);
    free(sp.buf);
}

/* GLM-4: ranks are ids; merges follow the ranks. */
static void test_glm4_tiktoken_vocabulary(void **state)
{
    (void)state;
    /* a=0 b=1 c=2 " "=3 ab=4 abc=5 " a"=6 */
    const char *vocab = "YQ== 0\nYg== 1\nYw== 2\nIA== 3\nYWI= 4\nYWJj 5\nIGE= 6\n";
    Tokenizer *t = NULL;
    char err[256];
    assert_int_equal(tok_tiktoken_load(vocab, strlen(vocab), 32, &t, err, sizeof err), KB_OK);
    assert_int_equal(tokenizer_n_vocab(t), 32);
    assert_int_equal(tokenizer_find(t, "<|endoftext|>", 13), 7);
    assert_int_equal(tokenizer_find(t, "[gMASK]", 7), 9);
    assert_int_equal(tokenizer_find(t, "<sop>", 5), 11);
    assert_int_equal(tokenizer_find(t, "<|user|>", 8), 14);
    assert_int_equal(tokenizer_eos(t), 7);
    /* "abc" " ab": abc = a+b (4) then ab+c (5); " ab": a+b (4) before " "+a (6),
    ** and " ab" is no token: " " and ab */
    const int32_t want[] = {5, 3, 4};
    expect_ids(t, "abc ab", 6, 0, want, 3);
    expect_text(t, want, 3, "abc ab");
    /* " a" alone merges (6) */
    const int32_t want2[] = {0, 6};
    expect_ids(t, "a a", 3, 0, want2, 2);
    const int32_t want3[] = {9, 11, 0};
    expect_ids(t, "[gMASK]<sop>a", 13, KB_TOK_PARSE_SPECIAL, want3, 3);
    tokenizer_free(t);
    /* broken vocabularies */
    static const struct { const char *text, *why; } bad[] = {
        {"YQ== 0\nYg== 0\n", "repeated"},  {"YQ== 0\nYg== 5\n", "out of range"}, {"Y!== 0\n", "not base64"},
        {"YQ== x\n", "no rank"},            {"YQ==\n", "no rank"},              {"", "no tokens"},
        {"Y 0\n", "not base64"},            {"YQ== 99999999999\n", "no rank"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(tok_tiktoken_load(bad[i].text, strlen(bad[i].text), 0, &t, err, sizeof err), KB_EFORMAT);
        assert_null(t);
        if (strstr(err, bad[i].why) == NULL) fprintf(stderr, "'%s': %s\n", bad[i].text, err);
        assert_non_null(strstr(err, bad[i].why));
    }
}

/* --- hostile protobuf --- */

static void test_broken_protobuf_fails_cleanly(void **state)
{
    (void)state;
    char err[256];
    Tokenizer *t = NULL;
    static const struct { const char *bytes; size_t len; } bad[] = {
        {"\x0a\x06\x0a\x04<un", 7},                                /* piece cut short */
        {"\x0a\x80", 2},                                           /* length varint cut */
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12},  /* varint of 11 bytes */
        {"\x0b\x00", 2},                                           /* wire type 3 (group) */
        {"\x0a\x02\x18\x09", 4},                                   /* piece without text, type 9 */
        {"\x0a\x02\x08\x01", 4},                                   /* piece field 1 as a varint */
        {"\x0a\x07\x0a\x01" "a" "\x15\x00\x00", 9},                /* score cut short */
        {"\x12\x02\x18", 3},                                       /* trainer spec cut */
        {"", 0},                                                   /* no pieces */
        {"\x0a\x02\x0a\x00", 4},                                   /* empty piece */
        {"\x00\x01", 2},                                           /* field 0 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = tok_sp_model_load((const uint8_t *)bad[i].bytes, bad[i].len, 2, 0, &t, err, sizeof err);
        if (rc != KB_EFORMAT) fprintf(stderr, "case %zu: rc %d\n", i, rc);
        assert_int_equal(rc, KB_EFORMAT);
        assert_null(t);
        assert_non_null(strstr(err, "SentencePiece model"));
    }
    /* every truncation and many bit flips of a valid model: refused or
    ** accepted, never a crash; what is accepted encodes and decodes */
    GgBuf sp = {0};
    small_proto(&sp);
    sp_piece(&sp, "[gMASK]", 0.0f, KB_TOKTYPE_CONTROL);
    sp_piece(&sp, "<sop>", 0.0f, KB_TOKTYPE_CONTROL);
    sp_piece(&sp, "<n>", 0.0f, KB_TOKTYPE_USER_DEFINED);
    uint8_t *copy = malloc(sp.len);
    uint32_t rng = 7;
    for (size_t iter = 0; iter < sp.len + 3000; iter++) {
        size_t len = sp.len;
        memcpy(copy, sp.buf, sp.len);
        if (iter < sp.len) {
            len = iter;
        } else {
            for (int k = 0; k < 2; k++) {
                rng = rng * 1103515245u + 12345u;
                copy[(rng >> 8) % sp.len] ^= (uint8_t)(1u << ((rng >> 4) % 8));
            }
        }
        for (int glm = 1; glm <= 3; glm++) {
            int rc = tok_sp_model_load(copy, len, glm, 0, &t, err, sizeof err);
            assert_true(rc == KB_OK || rc == KB_EFORMAT);
            if (rc != KB_OK) continue;
            KbTokens ids = {0};
            assert_int_equal(tokenizer_encode(t, "ab a\n\t  b[gMASK]", 16, KB_TOK_ADD_SPECIAL | KB_TOK_PARSE_SPECIAL, &ids),
                             KB_OK);
            char *text;
            size_t tl;
            assert_int_equal(tokenizer_decode(t, ids.ids, ids.n, KB_DETOK_SPECIAL, &text, &tl), KB_OK);
            free(text);
            kb_tokens_free(&ids);
            tokenizer_free(t);
        }
    }
    free(copy);
    free(sp.buf);
    /* bit-flipped GLM-4 vocabularies */
    const char *vocab = "YQ== 0\nYg== 1\nYw== 2\nIA== 3\nYWI= 4\nYWJj 5\nIGE= 6\n";
    char vcopy[64];
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = strlen(vocab);
        memcpy(vcopy, vocab, n);
        rng = rng * 1103515245u + 12345u;
        vcopy[(rng >> 8) % n] ^= (char)(1u << ((rng >> 4) % 8));
        int rc = tok_tiktoken_load(vcopy, iter % 3 ? n : (rng >> 3) % n, 0, &t, err, sizeof err);
        assert_true(rc == KB_OK || rc == KB_EFORMAT);
        if (rc == KB_OK) {
            KbTokens ids = {0};
            assert_int_equal(tokenizer_encode(t, "abc ab\xff", 7, 0, &ids), KB_OK);
            kb_tokens_free(&ids);
            tokenizer_free(t);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_presents_config_tokenizer_and_tensors),
        cmocka_unit_test(test_model_open_detects_ggml_by_magic),
        cmocka_unit_test(test_model_info_reports_ggml_files),
        cmocka_unit_test(test_truncated_files_fail_cleanly),
        cmocka_unit_test(test_broken_headers_give_clear_errors),
        cmocka_unit_test(test_broken_tensors_give_clear_errors),
        cmocka_unit_test(test_bit_flipped_files_never_crash),
        cmocka_unit_test(test_model_errors_name_ggml_tensors),
        cmocka_unit_test(test_glm1_tokenizer_rules_on_a_synthetic_model),
        cmocka_unit_test(test_glm1_unigram_model_uses_best_scores),
        cmocka_unit_test(test_glm2_glm3_tokenizers_append_special_tokens),
        cmocka_unit_test(test_glm4_tiktoken_vocabulary),
        cmocka_unit_test(test_broken_protobuf_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
