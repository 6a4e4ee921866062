/*
** ggmlgen.h: writes chatglm.cpp GGML model files and SentencePiece
** ModelProto blobs in memory, for tests (there are no real chatglm.cpp
** files in the shared data, so the tests make their own).
**
** The GGML layout follows ../shared/docs/engine-reference.md and
** engine/ggml_file.h: "ggml", int32 model type, int32 version, the config
** record, int32 tokenizer size + bytes, then per tensor int32 name length,
** name, int32 n_dims, int32 dims outermost first, int32 ggml type, zero
** padding to a 16-byte file offset, data. The protobuf writer emits the
** wire format of sentencepiece_model.proto: ModelProto.pieces (field 1:
** piece 1, score 2 as fixed32, type 3), trainer_spec (2: model_type 3,
** byte_fallback 35, unk/bos/eos ids 40-42), normalizer_spec (3:
** add_dummy_prefix 3, remove_extra_whitespaces 4).
**
** Nothing is checked, so tests can write malformed files on purpose.
** Header-only (static functions) so each test program includes what it uses
** without another object in the Makefile's test link line. Allocation
** failures abort (tests only).
*/
#ifndef KB_TESTS_GGMLGEN_H
#define KB_TESTS_GGMLGEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

#define GGMLGEN_UNUSED __attribute__((unused))

/* A growing byte buffer. Zero-initialise; free buf. */
typedef struct GgBuf {
    uint8_t *buf;
    size_t len, cap;
} GgBuf;

static GGMLGEN_UNUSED void gg_put(GgBuf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->buf = realloc(b->buf, cap);
        if (b->buf == NULL) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static GGMLGEN_UNUSED void gg_i32(GgBuf *b, int32_t v) { gg_put(b, &v, 4); }
static GGMLGEN_UNUSED void gg_f32(GgBuf *b, float v) { gg_put(b, &v, 4); }

/* --- protobuf --- */

static GGMLGEN_UNUSED void pb_varint(GgBuf *b, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) c |= 0x80;
        gg_put(b, &c, 1);
    } while (v);
}

static GGMLGEN_UNUSED void pb_key(GgBuf *b, uint32_t field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }

/* A length-delimited field. */
static GGMLGEN_UNUSED void pb_bytes(GgBuf *b, uint32_t field, const void *p, size_t n)
{
    pb_key(b, field, 2);
    pb_varint(b, n);
    gg_put(b, p, n);
}

/* An int32 varint field (negative values as 10-byte varints, as protobuf does). */
static GGMLGEN_UNUSED void pb_int(GgBuf *b, uint32_t field, int64_t v)
{
    pb_key(b, field, 0);
    pb_varint(b, (uint64_t)v);
}

/* Appends ModelProto.pieces entry (piece, score, type). */
static GGMLGEN_UNUSED void sp_piece(GgBuf *model, const char *piece, float score, int type)
{
    GgBuf m = {0};
    pb_bytes(&m, 1, piece, strlen(piece));
    pb_key(&m, 2, 5);
    gg_put(&m, &score, 4);
    pb_int(&m, 3, type);
    pb_bytes(model, 1, m.buf, m.len);
    free(m.buf);
}

/* Appends trainer_spec: model_type (1 unigram, 2 BPE), byte_fallback, unk/bos/eos ids. */
static GGMLGEN_UNUSED void sp_trainer(GgBuf *model, int model_type, int byte_fallback, int unk, int bos, int eos)
{
    GgBuf m = {0};
    pb_bytes(&m, 1, "corpus.txt", 10); /* an input file name, as real models carry (skipped) */
    pb_int(&m, 3, model_type);
    pb_int(&m, 35, byte_fallback);
    pb_int(&m, 40, unk);
    pb_int(&m, 41, bos);
    pb_int(&m, 42, eos);
    pb_bytes(model, 2, m.buf, m.len);
    free(m.buf);
}

/* Appends normalizer_spec: name, add_dummy_prefix, remove_extra_whitespaces. */
static GGMLGEN_UNUSED void sp_normalizer(GgBuf *model, int add_dummy_prefix, int remove_extra_ws)
{
    GgBuf m = {0};
    pb_bytes(&m, 1, "identity", 8);
    pb_int(&m, 3, add_dummy_prefix);
    pb_int(&m, 4, remove_extra_ws);
    pb_bytes(model, 3, m.buf, m.len);
    free(m.buf);
}

/* --- GGML files --- */

/* "ggml", model type, version. */
static GGMLGEN_UNUSED void gg_header(GgBuf *b, int32_t model_type, int32_t version)
{
    gg_put(b, "ggml", 4);
    gg_i32(b, model_type);
    gg_i32(b, version);
}

/* The config fields every record version shares the meaning of. */
typedef struct GgConfig {
    int32_t dtype, vocab, hidden, heads, kv_heads, layers, ffn, max_length;
    float norm_eps, rope_theta;
} GgConfig;

/* Writes the config record of (model_type, version): version 1 is 11
** fields for ChatGLM-6B and 12 for ChatGLM2/3, version 2 is 13. */
static GGMLGEN_UNUSED void gg_config(GgBuf *b, int model_type, int version, const GgConfig *c)
{
    if (version == 2) {
        int32_t v[] = {c->dtype, c->vocab, c->hidden, c->heads, c->kv_heads, c->layers, c->ffn};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) gg_i32(b, v[i]);
        gg_f32(b, c->norm_eps);
        gg_i32(b, 0); /* num_virtual_tokens */
        gg_f32(b, c->rope_theta);
        gg_i32(b, c->max_length);
        gg_i32(b, 2);  /* eos */
        gg_i32(b, 0);  /* pad */
        return;
    }
    int32_t v[] = {c->dtype, c->vocab, c->hidden, c->heads, c->layers, c->ffn, c->max_length, -1, -1, -1, -1};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) gg_i32(b, v[i]);
    if (model_type != 1) gg_i32(b, c->kv_heads);
}

/* The tokenizer: int32 size, then the bytes. */
static GGMLGEN_UNUSED void gg_tokenizer(GgBuf *b, const void *p, size_t n)
{
    gg_i32(b, (int32_t)n);
    gg_put(b, p, n);
}

/* Writes a tensor header (dims outermost first) and pads to 16 bytes. */
static GGMLGEN_UNUSED void gg_tensor_header(GgBuf *b, const char *name, int n_dims, const int32_t *dims, int type)
{
    static const uint8_t zeros[16] = {0};
    gg_i32(b, (int32_t)strlen(name));
    gg_put(b, name, strlen(name));
    gg_i32(b, n_dims);
    for (int i = 0; i < n_dims; i++) gg_i32(b, dims[i]);
    gg_i32(b, type);
    gg_put(b, zeros, (16 - b->len % 16) % 16);
}

/* Writes a tensor of n_dims dims (outermost first) from floats, converted
** to type (F32, F16, or a quantized type with whole blocks per row). */
static GGMLGEN_UNUSED void gg_tensor(GgBuf *b, const char *name, int n_dims, const int32_t *dims, int type, const float *x)
{
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= dims[i];
    gg_tensor_header(b, name, n_dims, dims, type);
    uint64_t bytes = kb_row_size(type, n);
    uint8_t *out = malloc(bytes ? bytes : 1);
    if (out == NULL) abort();
    kb_quantize_fn(type)(x, out, n);
    gg_put(b, out, bytes);
    free(out);
}

/* Writes b to path; returns 0 on success. */
static GGMLGEN_UNUSED int gg_write(const GgBuf *b, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    int rc = fwrite(b->buf, 1, b->len, f) == b->len ? 0 : -1;
    return fclose(f) == 0 ? rc : -1;
}

#endif /* KB_TESTS_GGMLGEN_H */
