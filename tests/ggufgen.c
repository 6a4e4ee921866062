/*
** ggufgen.c: an in-memory GGUF writer for tests. See ggufgen.h.
**
** The metadata is serialised as it is added (in the file's byte order); the
** header, tensor infos, padding and data are laid out by ggufgen_finish(),
** so offsets and counts can be overridden at any time before it.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "tests/ggufgen.h"

#define GEN_MAX_DIMS 8
/* The automatic data section never grows past this (a tensor whose offset or
** size is deliberately absurd simply gets no data). */
#define GEN_MAX_DATA ((uint64_t)64 << 20)

/* --- growable byte buffer --- */

typedef struct GenBuf {
    uint8_t *p;
    size_t n, cap;
} GenBuf;

static void *gen_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "ggufgen: out of memory\n");
        abort();
    }
    return q;
}

static void buf_add(GenBuf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = gen_xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* Appends the low `size` bytes of v in the requested byte order. */
static void buf_add_uint(GenBuf *b, uint64_t v, int size, bool big_endian)
{
    uint8_t bytes[8];
    for (int i = 0; i < size; i++) {
        int shift = 8 * (big_endian ? size - 1 - i : i);
        bytes[i] = (uint8_t)(v >> shift);
    }
    buf_add(b, bytes, (size_t)size);
}

/* --- the description --- */

typedef struct GenTensor {
    char *name;
    size_t name_len;
    bool has_name_len_field;
    uint64_t name_len_field;
    int n_dims;
    int64_t ne[GEN_MAX_DIMS];
    bool has_n_dims_field;
    uint32_t n_dims_field;
    int type;
    bool has_offset;
    uint64_t offset;       /* explicit, or assigned by finish */
    const void *data;      /* explicit contents (data_n bytes) or NULL */
    size_t data_n;
} GenTensor;

struct GgufGen {
    char magic[4];
    uint32_t version;
    bool big_endian;
    bool has_n_tensors, has_n_kv;
    uint64_t n_tensors_field, n_kv_field;
    uint64_t alignment;
    GgufGenPad pad;
    bool has_data_size;
    uint64_t data_size;

    GenBuf kv;             /* serialised metadata */
    uint64_t n_kv;

    GenTensor *t;
    int n_t, cap_t;

    /* layout of the last finish */
    uint64_t kv_end, info_end, data_off;
};

GgufGen *ggufgen_new(uint32_t version)
{
    GgufGen *gg = gen_xrealloc(NULL, sizeof *gg);
    memset(gg, 0, sizeof *gg);
    memcpy(gg->magic, "GGUF", 4);
    gg->version = version;
    gg->alignment = 32;
    gg->pad = GGUFGEN_PAD_AUTO;
    return gg;
}

void ggufgen_free(GgufGen *gg)
{
    if (!gg) return;
    for (int i = 0; i < gg->n_t; i++) free(gg->t[i].name);
    free(gg->t);
    free(gg->kv.p);
    free(gg);
}

void ggufgen_set_magic(GgufGen *gg, const char magic[4])
{
    memcpy(gg->magic, magic, 4);
}

void ggufgen_set_big_endian(GgufGen *gg, bool on)
{
    if (gg->kv.n != 0) {
        fprintf(stderr, "ggufgen: set the byte order before adding metadata\n");
        abort();
    }
    gg->big_endian = on;
}

void ggufgen_set_n_tensors(GgufGen *gg, uint64_t n)
{
    gg->has_n_tensors = true;
    gg->n_tensors_field = n;
}

void ggufgen_set_n_kv(GgufGen *gg, uint64_t n)
{
    gg->has_n_kv = true;
    gg->n_kv_field = n;
}

void ggufgen_set_alignment(GgufGen *gg, uint64_t alignment)
{
    gg->alignment = alignment;
}

void ggufgen_set_padding(GgufGen *gg, GgufGenPad mode)
{
    gg->pad = mode;
}

void ggufgen_set_data_size(GgufGen *gg, uint64_t n)
{
    gg->has_data_size = true;
    gg->data_size = n;
}

/* --- raw puts (metadata section) --- */

void ggufgen_put_u8(GgufGen *gg, uint8_t v) { buf_add_uint(&gg->kv, v, 1, gg->big_endian); }
void ggufgen_put_u16(GgufGen *gg, uint16_t v) { buf_add_uint(&gg->kv, v, 2, gg->big_endian); }
void ggufgen_put_u32(GgufGen *gg, uint32_t v) { buf_add_uint(&gg->kv, v, 4, gg->big_endian); }
void ggufgen_put_i32(GgufGen *gg, int32_t v) { buf_add_uint(&gg->kv, (uint32_t)v, 4, gg->big_endian); }
void ggufgen_put_u64(GgufGen *gg, uint64_t v) { buf_add_uint(&gg->kv, v, 8, gg->big_endian); }

void ggufgen_put_f32(GgufGen *gg, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    ggufgen_put_u32(gg, bits);
}

void ggufgen_put_f64(GgufGen *gg, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    ggufgen_put_u64(gg, bits);
}

void ggufgen_put_bytes(GgufGen *gg, const void *p, size_t n)
{
    buf_add(&gg->kv, p, n);
}

void ggufgen_put_strn(GgufGen *gg, const char *s, size_t n)
{
    ggufgen_put_u64(gg, n);
    ggufgen_put_bytes(gg, s, n);
}

void ggufgen_put_str(GgufGen *gg, const char *s)
{
    ggufgen_put_strn(gg, s, strlen(s));
}

void ggufgen_kv_raw(GgufGen *gg)
{
    gg->n_kv++;
}

void ggufgen_kv_begin(GgufGen *gg, const char *key, int32_t type)
{
    ggufgen_kv_raw(gg);
    ggufgen_put_str(gg, key);
    ggufgen_put_i32(gg, type);
}

/* --- typed key/values --- */

void ggufgen_kv_u8(GgufGen *gg, const char *key, uint8_t v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_UINT8);
    ggufgen_put_u8(gg, v);
}

void ggufgen_kv_i8(GgufGen *gg, const char *key, int8_t v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_INT8);
    ggufgen_put_u8(gg, (uint8_t)v);
}

void ggufgen_kv_u16(GgufGen *gg, const char *key, uint16_t v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_UINT16);
    ggufgen_put_u16(gg, v);
}

void ggufgen_kv_i16(GgufGen *gg, const char *key, int16_t v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_INT16);
    ggufgen_put_u16(gg, (uint16_t)v);
}

void ggufgen_kv_u32(GgufGen *gg, const char *key, uint32_t v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_UINT32);
    ggufgen_put_u32(gg, v);
}

void ggufgen_kv_i32(GgufGen *gg, const char *key, int32_t v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_INT32);
    ggufgen_put_i32(gg, v);
}

void ggufgen_kv_f32(GgufGen *gg, const char *key, float v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_FLOAT32);
    ggufgen_put_f32(gg, v);
}

void ggufgen_kv_bool(GgufGen *gg, const char *key, bool v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_BOOL);
    ggufgen_put_u8(gg, v ? 1 : 0);
}

void ggufgen_kv_u64(GgufGen *gg, const char *key, uint64_t v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_UINT64);
    ggufgen_put_u64(gg, v);
}

void ggufgen_kv_i64(GgufGen *gg, const char *key, int64_t v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_INT64);
    ggufgen_put_u64(gg, (uint64_t)v);
}

void ggufgen_kv_f64(GgufGen *gg, const char *key, double v)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_FLOAT64);
    ggufgen_put_f64(gg, v);
}

void ggufgen_kv_strn(GgufGen *gg, const char *key, const char *s, size_t n)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_STRING);
    ggufgen_put_strn(gg, s, n);
}

void ggufgen_kv_str(GgufGen *gg, const char *key, const char *s)
{
    ggufgen_kv_strn(gg, key, s, strlen(s));
}

void ggufgen_kv_arr(GgufGen *gg, const char *key, int elem_type, const void *elems, uint64_t n)
{
    int size = (int)gguf_value_type_size(elem_type);
    if (size == 0) {
        fprintf(stderr, "ggufgen_kv_arr: type %d is not numeric\n", elem_type);
        abort();
    }
    ggufgen_kv_begin(gg, key, GGUF_VT_ARRAY);
    ggufgen_put_i32(gg, elem_type);
    ggufgen_put_u64(gg, n);
    const uint8_t *p = elems;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t v = 0;
        switch (size) {
        case 1: v = p[j]; break;
        case 2: { uint16_t x; memcpy(&x, p + 2 * j, 2); v = x; break; }
        case 4: { uint32_t x; memcpy(&x, p + 4 * j, 4); v = x; break; }
        case 8: memcpy(&v, p + 8 * j, 8); break;
        }
        buf_add_uint(&gg->kv, v, size, gg->big_endian);
    }
}

void ggufgen_kv_arr_str(GgufGen *gg, const char *key, const char *const *strs, uint64_t n)
{
    ggufgen_kv_begin(gg, key, GGUF_VT_ARRAY);
    ggufgen_put_i32(gg, GGUF_VT_STRING);
    ggufgen_put_u64(gg, n);
    for (uint64_t j = 0; j < n; j++) ggufgen_put_str(gg, strs[j]);
}

/* --- tensor infos --- */

int ggufgen_tensor_n(GgufGen *gg, const char *name, size_t name_len, int n_dims, const int64_t *ne,
                     int type)
{
    if (n_dims < 0 || n_dims > GEN_MAX_DIMS) {
        fprintf(stderr, "ggufgen_tensor: n_dims %d outside 0..%d\n", n_dims, GEN_MAX_DIMS);
        abort();
    }
    if (gg->n_t == gg->cap_t) {
        gg->cap_t = gg->cap_t ? gg->cap_t * 2 : 8;
        gg->t = gen_xrealloc(gg->t, (size_t)gg->cap_t * sizeof *gg->t);
    }
    GenTensor *t = &gg->t[gg->n_t];
    memset(t, 0, sizeof *t);
    t->name = gen_xrealloc(NULL, name_len + 1);
    memcpy(t->name, name, name_len);
    t->name[name_len] = '\0';
    t->name_len = name_len;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->ne[d] = ne[d];
    t->type = type;
    return gg->n_t++;
}

int ggufgen_tensor(GgufGen *gg, const char *name, int n_dims, const int64_t *ne, int type)
{
    return ggufgen_tensor_n(gg, name, strlen(name), n_dims, ne, type);
}

void ggufgen_tensor_set_name_len(GgufGen *gg, int i, uint64_t len_field)
{
    gg->t[i].has_name_len_field = true;
    gg->t[i].name_len_field = len_field;
}

void ggufgen_tensor_set_n_dims(GgufGen *gg, int i, uint32_t n_dims_field)
{
    gg->t[i].has_n_dims_field = true;
    gg->t[i].n_dims_field = n_dims_field;
}

void ggufgen_tensor_set_offset(GgufGen *gg, int i, uint64_t offset)
{
    gg->t[i].has_offset = true;
    gg->t[i].offset = offset;
}

void ggufgen_tensor_data(GgufGen *gg, int i, const void *data, size_t n)
{
    gg->t[i].data = data;
    gg->t[i].data_n = n;
}

/* Returns the byte size of a tensor: whole blocks per row, 0 when the type
** is unknown, a dimension is not positive, or the size overflows. */
static uint64_t gen_nbytes(const GenTensor *t)
{
    const KbTypeInfo *ti = kb_type_info(t->type);
    if (!ti || t->n_dims == 0) return 0;
    uint64_t rows = 1;
    for (int d = 0; d < t->n_dims; d++) {
        if (t->ne[d] <= 0) return 0;
        if (d == 0) continue;
        if (rows > UINT64_MAX / (uint64_t)t->ne[d]) return 0;
        rows *= (uint64_t)t->ne[d];
    }
    uint64_t bs = (uint64_t)ti->block_size, ts = (uint64_t)ti->type_size;
    uint64_t blocks = ((uint64_t)t->ne[0] + bs - 1) / bs;
    if (blocks > UINT64_MAX / ts) return 0;
    uint64_t row_bytes = blocks * ts;
    if (rows > UINT64_MAX / row_bytes) return 0;
    return rows * row_bytes;
}

uint64_t ggufgen_tensor_nbytes(const GgufGen *gg, int i)
{
    return gen_nbytes(&gg->t[i]);
}

uint8_t ggufgen_pattern_byte(int i, uint64_t k)
{
    return (uint8_t)(0x5b + 37 * (unsigned)i + 13 * (unsigned)k + (unsigned)(k >> 7));
}

static uint64_t gen_align_up(uint64_t v, uint64_t a)
{
    if (a <= 1) return v;
    uint64_t r = v % a;
    return r ? v + (a - r) : v;
}

/* --- copies of real files --- */

/* Starts a copy of g (see ggufgen.h): key/values byte for byte through
** gguf_kv_get_raw, tensors with their shapes, types and data. */
GgufGen *ggufgen_copy(const GgufFile *g, const char *skip_key, const char *skip_tensor)
{
    GgufGen *gg = ggufgen_new(gguf_version(g));
    ggufgen_set_alignment(gg, gguf_alignment(g));
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const char *key = gguf_kv_key(g, i);
        const void *raw;
        uint64_t len;
        if (skip_key && strcmp(key, skip_key) == 0) continue;
        if (gguf_kv_get_raw(g, i, &raw, &len) != KB_OK) abort();
        ggufgen_kv_begin(gg, key, (int32_t)gguf_kv_type(g, i));
        ggufgen_put_bytes(gg, raw, (size_t)len);
    }
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const GgufTensor *t = gguf_tensor(g, i);
        if (skip_tensor && strcmp(t->name, skip_tensor) == 0) continue;
        int k = ggufgen_tensor(gg, t->name, t->n_dims, t->ne, t->type);
        ggufgen_tensor_data(gg, k, t->data, (size_t)t->n_bytes);
    }
    return gg;
}

/* --- output --- */

uint8_t *ggufgen_finish(GgufGen *gg, size_t *len)
{
    bool be = gg->big_endian;
    uint64_t align = gg->alignment ? gg->alignment : 1;
    GenBuf out = {0};

    /* header */
    buf_add(&out, gg->magic, 4);
    buf_add_uint(&out, gg->version, 4, be);
    buf_add_uint(&out, gg->has_n_tensors ? gg->n_tensors_field : (uint64_t)gg->n_t, 8, be);
    buf_add_uint(&out, gg->has_n_kv ? gg->n_kv_field : gg->n_kv, 8, be);

    /* metadata */
    buf_add(&out, gg->kv.p, gg->kv.n);
    gg->kv_end = out.n;

    /* automatic offsets, in the order the tensors were added */
    uint64_t next = 0;
    for (int i = 0; i < gg->n_t; i++) {
        GenTensor *t = &gg->t[i];
        uint64_t nb = gen_nbytes(t);
        if (!t->has_offset) t->offset = gen_align_up(next, align);
        if (t->offset <= UINT64_MAX - nb && t->offset + nb > next) next = t->offset + nb;
    }

    /* tensor infos */
    for (int i = 0; i < gg->n_t; i++) {
        const GenTensor *t = &gg->t[i];
        buf_add_uint(&out, t->has_name_len_field ? t->name_len_field : t->name_len, 8, be);
        buf_add(&out, t->name, t->name_len);
        buf_add_uint(&out, t->has_n_dims_field ? t->n_dims_field : (uint32_t)t->n_dims, 4, be);
        for (int d = 0; d < t->n_dims; d++) buf_add_uint(&out, (uint64_t)t->ne[d], 8, be);
        buf_add_uint(&out, (uint32_t)t->type, 4, be);
        buf_add_uint(&out, t->offset, 8, be);
    }
    gg->info_end = out.n;

    /* padding */
    bool pad = gg->pad == GGUFGEN_PAD_ALWAYS || (gg->pad == GGUFGEN_PAD_AUTO && gg->n_t > 0);
    gg->data_off = pad ? gen_align_up(gg->info_end, align) : gg->info_end;

    /* data section */
    uint64_t data_size = 0;
    for (int i = 0; i < gg->n_t; i++) {
        const GenTensor *t = &gg->t[i];
        uint64_t nb = gen_nbytes(t);
        if (t->offset > GEN_MAX_DATA || nb > GEN_MAX_DATA - t->offset) continue;
        if (t->offset + nb > data_size) data_size = t->offset + nb;
    }
    if (gg->has_data_size) data_size = gg->data_size;
    if (data_size > GEN_MAX_DATA) {
        fprintf(stderr, "ggufgen: data section of %llu bytes is too large\n",
                (unsigned long long)data_size);
        abort();
    }
    size_t total = (size_t)(gg->data_off + data_size);
    uint8_t *file = gen_xrealloc(out.p, total);
    memset(file + gg->info_end, 0, total - gg->info_end);
    uint8_t *data = file + gg->data_off;
    for (int i = 0; i < gg->n_t; i++) {
        const GenTensor *t = &gg->t[i];
        uint64_t nb = gen_nbytes(t);
        for (uint64_t k = 0; k < nb; k++) {
            if (t->offset > data_size || k >= data_size - t->offset) break;
            const uint8_t *given = t->data;
            data[t->offset + k] = given && k < t->data_n ? given[k] : ggufgen_pattern_byte(i, k);
        }
    }
    *len = total;
    return file;
}

int ggufgen_write(GgufGen *gg, const char *path)
{
    size_t len;
    uint8_t *buf = ggufgen_finish(gg, &len);
    FILE *f = fopen(path, "wb");
    int rc = -1;
    if (f) {
        size_t put = len ? fwrite(buf, 1, len, f) : 0;
        rc = fclose(f) == 0 && put == len ? 0 : -1;
    }
    free(buf);
    return rc;
}

uint64_t ggufgen_kv_end_offset(const GgufGen *gg) { return gg->kv_end; }
uint64_t ggufgen_info_end_offset(const GgufGen *gg) { return gg->info_end; }
uint64_t ggufgen_data_offset(const GgufGen *gg) { return gg->data_off; }
uint64_t ggufgen_tensor_offset(const GgufGen *gg, int i) { return gg->t[i].offset; }

/* --- checking an opened file --- */

/* Records the first problem; returns -1 so callers can `return fail(...)`. */
static int check_fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int check_fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) return check_fail(why, whylen, __VA_ARGS__);                                  \
    } while (0)

/* State shared by the per-value checks. */
typedef struct CheckCtx {
    uint64_t size;      /* file size */
    bool have_base;     /* mapping start known (derived from tensor 0) */
    uintptr_t base;
    unsigned sum;       /* bytes read, so the reads cannot be optimised away */
} CheckCtx;

static int check_string(CheckCtx *c, const char *s, size_t len, const char *key, char *why,
                        size_t whylen)
{
    CHECK(len <= c->size, "key '%s': string of %zu bytes in a file of %llu", key, len,
          (unsigned long long)c->size);
    CHECK(len == 0 || s != NULL, "key '%s': NULL string of %zu bytes", key, len);
    CHECK(len == 0 || memchr(s, 0, len) == NULL, "key '%s': a NUL inside a string value", key);
    if (c->have_base && len > 0) {
        uintptr_t p = (uintptr_t)s;
        CHECK(p >= c->base && p - c->base <= c->size && len <= c->size - (p - c->base),
              "key '%s': string outside the mapping", key);
    }
    for (size_t k = 0; k < len; k++) c->sum += (unsigned char)s[k];
    return 0;
}

/* The types get_int reads: integers, not bool (gguf.h). */
static bool vt_is_int(int vt)
{
    return vt == GGUF_VT_UINT8 || vt == GGUF_VT_INT8 || vt == GGUF_VT_UINT16 ||
           vt == GGUF_VT_INT16 || vt == GGUF_VT_UINT32 || vt == GGUF_VT_INT32 ||
           vt == GGUF_VT_UINT64 || vt == GGUF_VT_INT64;
}

static bool vt_is_float(int vt)
{
    return vt == GGUF_VT_FLOAT32 || vt == GGUF_VT_FLOAT64;
}

/* An element read one past the end: KB_ERANGE with the right getter; with
** the wrong one either complaint is fine (the order of checks is free). */
static bool past_end_ok(int rc, bool right_getter)
{
    return rc == KB_ERANGE || (!right_getter && rc == KB_ETYPE);
}

/* Checks key/value i. */
static int check_kv(const GgufFile *g, int64_t i, CheckCtx *c, char *why, size_t whylen)
{
    const char *key = gguf_kv_key(g, i);
    CHECK(key != NULL, "kv %lld: NULL key", (long long)i);
    size_t klen = strlen(key);
    CHECK(klen > 0 && klen <= c->size, "kv %lld: key length %zu", (long long)i, klen);
    CHECK(gguf_find_key(g, key) == i, "kv %lld: gguf_find_key('%s') = %lld", (long long)i, key,
          (long long)gguf_find_key(g, key));
    int vt = (int)gguf_kv_type(g, i);
    CHECK(vt >= 0 && vt < GGUF_VT_COUNT, "key '%s': value type %d", key, vt);
    CHECK(gguf_value_type_name(vt) != NULL, "key '%s': no name for type %d", key, vt);

    int64_t iv = 0;
    double fv = 0;
    bool bv = false;
    const char *s = NULL;
    size_t len = 0;
    GgufValueType et;
    uint64_t n = 0;
    int rc;

    rc = gguf_kv_get_int(g, i, &iv);
    if (vt == GGUF_VT_UINT64)
        CHECK(rc == KB_OK || rc == KB_ERANGE, "key '%s': get_int on uint64 returned %d", key, rc);
    else
        CHECK(rc == (vt_is_int(vt) ? KB_OK : KB_ETYPE), "key '%s' (type %d): get_int returned %d",
              key, vt, rc);
    rc = gguf_kv_get_float(g, i, &fv);
    CHECK(rc == (vt_is_float(vt) ? KB_OK : KB_ETYPE), "key '%s' (type %d): get_float returned %d",
          key, vt, rc);
    rc = gguf_kv_get_bool(g, i, &bv);
    CHECK(rc == (vt == GGUF_VT_BOOL ? KB_OK : KB_ETYPE), "key '%s' (type %d): get_bool returned %d",
          key, vt, rc);
    rc = gguf_kv_get_str(g, i, &s, &len);
    CHECK(rc == (vt == GGUF_VT_STRING ? KB_OK : KB_ETYPE),
          "key '%s' (type %d): get_str returned %d", key, vt, rc);
    if (rc == KB_OK && check_string(c, s, len, key, why, whylen) != 0) return -1;
    rc = gguf_kv_get_arr(g, i, &et, &n);
    CHECK(rc == (vt == GGUF_VT_ARRAY ? KB_OK : KB_ETYPE),
          "key '%s' (type %d): get_arr returned %d", key, vt, rc);
    if (vt != GGUF_VT_ARRAY) return 0;

    int e = (int)et;
    CHECK(e >= 0 && e < GGUF_VT_COUNT && e != GGUF_VT_ARRAY, "key '%s': array of type %d", key, e);
    CHECK(n <= c->size, "key '%s': array of %llu elements in a file of %llu bytes", key,
          (unsigned long long)n, (unsigned long long)c->size);
    for (uint64_t j = 0; j <= n; j++) {
        /* j == n is one past the end: every getter must say KB_ERANGE or,
        ** for the wrong getter, KB_ETYPE. */
        bool past = j == n;
        rc = gguf_arr_get_int(g, i, j, &iv);
        if (past)
            CHECK(past_end_ok(rc, vt_is_int(e)), "key '%s': arr_get_int(%llu) past the end returned %d",
                  key, (unsigned long long)j, rc);
        else if (e == GGUF_VT_UINT64)
            CHECK(rc == KB_OK || rc == KB_ERANGE, "key '%s'[%llu]: arr_get_int returned %d", key,
                  (unsigned long long)j, rc);
        else
            CHECK(rc == (vt_is_int(e) ? KB_OK : KB_ETYPE), "key '%s'[%llu]: arr_get_int returned %d",
                  key, (unsigned long long)j, rc);
        rc = gguf_arr_get_float(g, i, j, &fv);
        if (past)
            CHECK(past_end_ok(rc, vt_is_float(e)),
                  "key '%s': arr_get_float(%llu) past the end returned %d", key,
                  (unsigned long long)j, rc);
        else
            CHECK(rc == (vt_is_float(e) ? KB_OK : KB_ETYPE),
                  "key '%s'[%llu]: arr_get_float returned %d", key, (unsigned long long)j, rc);
        s = NULL;
        len = 0;
        rc = gguf_arr_get_str(g, i, j, &s, &len);
        if (past)
            CHECK(past_end_ok(rc, e == GGUF_VT_STRING),
                  "key '%s': arr_get_str(%llu) past the end returned %d", key,
                  (unsigned long long)j, rc);
        else
            CHECK(rc == (e == GGUF_VT_STRING ? KB_OK : KB_ETYPE),
                  "key '%s'[%llu]: arr_get_str returned %d", key, (unsigned long long)j, rc);
        if (!past && rc == KB_OK && check_string(c, s, len, key, why, whylen) != 0) return -1;
    }
    return 0;
}

/* Checks tensor i (overlaps are checked by the caller). */
static int check_tensor(const GgufFile *g, int64_t i, CheckCtx *c, char *why, size_t whylen)
{
    const GgufTensor *t = gguf_tensor(g, i);
    CHECK(t != NULL, "tensor %lld: NULL", (long long)i);
    CHECK(t->name != NULL && t->name[0] != '\0', "tensor %lld: empty name", (long long)i);
    CHECK(strlen(t->name) <= c->size, "tensor %lld: name longer than the file", (long long)i);
    const char *nm = t->name;
    CHECK(gguf_find_tensor(g, nm) == t, "tensor '%s': gguf_find_tensor returns another", nm);
    CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS, "tensor '%s': n_dims %d", nm, t->n_dims);
    uint64_t prod = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (d >= t->n_dims) {
            CHECK(t->ne[d] == 1, "tensor '%s': ne[%d] = %lld past n_dims", nm, d,
                  (long long)t->ne[d]);
            continue;
        }
        CHECK(t->ne[d] > 0, "tensor '%s': ne[%d] = %lld", nm, d, (long long)t->ne[d]);
        CHECK(prod <= UINT64_MAX / (uint64_t)t->ne[d], "tensor '%s': element count overflows", nm);
        prod *= (uint64_t)t->ne[d];
    }
    CHECK(t->n_elements == prod, "tensor '%s': n_elements %llu, product %llu", nm,
          (unsigned long long)t->n_elements, (unsigned long long)prod);
    const KbTypeInfo *ti = kb_type_info(t->type);
    CHECK(ti != NULL, "tensor '%s': unknown type %d", nm, t->type);
    CHECK(t->ne[0] % ti->block_size == 0, "tensor '%s': ne[0] %lld not a multiple of %d", nm,
          (long long)t->ne[0], ti->block_size);
    uint64_t blocks = prod / (uint64_t)ti->block_size;
    CHECK(blocks <= UINT64_MAX / (uint64_t)ti->type_size, "tensor '%s': byte size overflows", nm);
    CHECK(t->n_bytes == blocks * (uint64_t)ti->type_size, "tensor '%s': n_bytes %llu, expected %llu",
          nm, (unsigned long long)t->n_bytes, (unsigned long long)(blocks * ti->type_size));
    uint64_t align = gguf_alignment(g), doff = gguf_data_offset(g);
    CHECK(t->offset % align == 0, "tensor '%s': offset %llu not aligned to %llu", nm,
          (unsigned long long)t->offset, (unsigned long long)align);
    CHECK(doff <= c->size && t->offset <= c->size - doff &&
              t->n_bytes <= c->size - doff - t->offset,
          "tensor '%s': data [%llu + %llu, +%llu) past the end of a %llu-byte file", nm,
          (unsigned long long)doff, (unsigned long long)t->offset, (unsigned long long)t->n_bytes,
          (unsigned long long)c->size);
    CHECK(t->data != NULL, "tensor '%s': NULL data", nm);
    if (!c->have_base) {
        c->have_base = true;
        c->base = (uintptr_t)t->data - (uintptr_t)(doff + t->offset);
    }
    CHECK((uintptr_t)t->data == c->base + (uintptr_t)(doff + t->offset),
          "tensor '%s': data pointer is not mapping + data_offset + offset", nm);
    /* touch the first and last byte */
    const unsigned char *p = t->data;
    c->sum += p[0] + p[t->n_bytes - 1];
    return 0;
}

static volatile unsigned check_sink;
static const GgufFile *sort_g;
static int cmp_by_offset(const void *a, const void *b)
{
    uint64_t x = gguf_tensor(sort_g, *(const int64_t *)a)->offset;
    uint64_t y = gguf_tensor(sort_g, *(const int64_t *)b)->offset;
    return x < y ? -1 : x > y;
}

int ggufgen_check_file(const GgufFile *g, char *why, size_t whylen)
{
    if (why && whylen) why[0] = '\0';
    CHECK(g != NULL, "NULL handle");
    CheckCtx c = {0};
    c.size = gguf_file_size(g);
    uint32_t ver = gguf_version(g);
    CHECK(ver == 2 || ver == 3, "version %u", ver);
    uint64_t align = gguf_alignment(g);
    CHECK(align > 0 && (align & (align - 1)) == 0, "alignment %llu", (unsigned long long)align);
    uint64_t kv_end = gguf_kv_end_offset(g), doff = gguf_data_offset(g);
    CHECK(kv_end >= 24 && kv_end <= c.size, "kv_end_offset %llu in a %llu-byte file",
          (unsigned long long)kv_end, (unsigned long long)c.size);
    CHECK(doff >= kv_end && doff % align == 0, "data_offset %llu (kv end %llu, alignment %llu)",
          (unsigned long long)doff, (unsigned long long)kv_end, (unsigned long long)align);
    int64_t nt = gguf_n_tensors(g), nkv = gguf_n_kv(g);
    CHECK(nt >= 0 && nt <= GGUF_MAX_TENSORS, "n_tensors %lld", (long long)nt);
    CHECK(nkv >= 0 && nkv <= GGUF_MAX_KV, "n_kv %lld", (long long)nkv);

    /* tensors first: tensor 0 tells where the mapping starts */
    for (int64_t i = 0; i < nt; i++)
        if (check_tensor(g, i, &c, why, whylen) != 0) return -1;
    if (nt > 0) {
        int64_t *idx = gen_xrealloc(NULL, (size_t)nt * sizeof *idx);
        for (int64_t i = 0; i < nt; i++) idx[i] = i;
        sort_g = g;
        qsort(idx, (size_t)nt, sizeof *idx, cmp_by_offset);
        int bad = -1;
        for (int64_t k = 1; k < nt && bad < 0; k++) {
            const GgufTensor *a = gguf_tensor(g, idx[k - 1]), *b = gguf_tensor(g, idx[k]);
            if (a->offset + a->n_bytes > b->offset) bad = (int)k;
        }
        int rc = 0;
        if (bad >= 0)
            rc = check_fail(why, whylen, "tensors '%s' and '%s' overlap",
                            gguf_tensor(g, idx[bad - 1])->name, gguf_tensor(g, idx[bad])->name);
        free(idx);
        if (rc) return rc;
    }
    for (int64_t i = 0; i < nkv; i++)
        if (check_kv(g, i, &c, why, whylen) != 0) return -1;
    /* gguf_find_key / gguf_find_tensor of a name that cannot be there */
    CHECK(gguf_find_key(g, "ggufgen.no.such.key") == -1, "found a key that is not there");
    CHECK(gguf_find_tensor(g, "ggufgen.no.such.tensor") == NULL, "found a tensor that is not there");
    check_sink = c.sum; /* keeps the reads */
    return 0;
}

/* --- a model that says what it is told --- */

#define SCRIPT_EMBD 32

int ggufgen_write_scripted_llama(const char *path, const char *const *toks, const int32_t *types, int n,
                                 const int *next)
{
    static const struct { const char *name; int64_t ne0, ne1; } t[] = {
        {"token_embd.weight", SCRIPT_EMBD, -1}, {"output.weight", SCRIPT_EMBD, -1},
        {"output_norm.weight", SCRIPT_EMBD, 0}, {"blk.0.attn_norm.weight", SCRIPT_EMBD, 0},
        {"blk.0.attn_q.weight", SCRIPT_EMBD, SCRIPT_EMBD}, {"blk.0.attn_k.weight", SCRIPT_EMBD, SCRIPT_EMBD},
        {"blk.0.attn_v.weight", SCRIPT_EMBD, SCRIPT_EMBD}, {"blk.0.attn_output.weight", SCRIPT_EMBD, SCRIPT_EMBD},
        {"blk.0.ffn_norm.weight", SCRIPT_EMBD, 0}, {"blk.0.ffn_gate.weight", SCRIPT_EMBD, 64},
        {"blk.0.ffn_up.weight", SCRIPT_EMBD, 64}, {"blk.0.ffn_down.weight", 64, SCRIPT_EMBD},
    };
    enum { N_T = sizeof t / sizeof t[0] };
    float *data[N_T] = {0};
    if (n < 3 || n > SCRIPT_EMBD) return -1;
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    ggufgen_kv_u32(gg, "llama.context_length", 4096);
    ggufgen_kv_u32(gg, "llama.embedding_length", SCRIPT_EMBD);
    ggufgen_kv_u32(gg, "llama.block_count", 1);
    ggufgen_kv_u32(gg, "llama.feed_forward_length", 64);
    ggufgen_kv_u32(gg, "llama.attention.head_count", 2);
    ggufgen_kv_str(gg, "tokenizer.ggml.model", "llama");
    ggufgen_kv_arr_str(gg, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    ggufgen_kv_arr(gg, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, (uint64_t)n);
    for (int i = 0; i < N_T; i++) {
        int64_t ne[2] = {t[i].ne0, t[i].ne1 < 0 ? n : t[i].ne1};
        size_t count = (size_t)ne[0] * (size_t)(ne[1] ? ne[1] : 1);
        data[i] = gen_xrealloc(NULL, count * sizeof(float));
        memset(data[i], 0, count * sizeof(float));
        int k = ggufgen_tensor(gg, t[i].name, t[i].ne1 ? 2 : 1, ne, KB_TYPE_F32);
        ggufgen_tensor_data(gg, k, data[i], count * sizeof(float));
    }
    for (int i = 0; i < n; i++) {
        data[0][(size_t)i * SCRIPT_EMBD + (size_t)i] = 1.0f;          /* token i: one-hot at i */
        data[1][(size_t)next[i] * SCRIPT_EMBD + (size_t)i] = 1.0f;    /* hidden one-hot i -> next[i] */
    }
    for (int k = 0; k < SCRIPT_EMBD; k++) data[2][k] = 1.0f;          /* output_norm passes it on */
    int rc = ggufgen_write(gg, path);
    for (int i = 0; i < N_T; i++) free(data[i]);
    ggufgen_free(gg);
    return rc == 0 ? 0 : -1;
}

int ggufgen_write_hostile_llama(const char *path)
{
    /* 0..2 special; the chain 3 -> 4 -> ... -> 12 -> </s>; <unk>, <s> and
    ** every other token lead into it, so any prompt gets the whole answer */
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\x1b]0;pwned\x07", "\x1b]52;c;aGk=\x07",
                                       "<0x0B>", "<0x19>", "<0xE4>", "<0xB8>", "<0xAD>", "<0xFF>",
                                       ("\xc2\x9b" "31m"), "\xe2\x96\x81ok", "<0x0A>", "<0x20>"};
    static const int32_t types[] = {2, 3, 3, 1, 1, 6, 6, 6, 6, 6, 6, 1, 1, 6, 6};
    static const int next[] = {3, 3, 3, 4, 5, 6, 7, 8, 9, 11, 3, 12, 2, 3, 3}; /* 10 (<0xFF>) is not said */
    return ggufgen_write_scripted_llama(path, toks, types, (int)(sizeof toks / sizeof toks[0]), next);
}
