/*
** test_gguf_robust.c: the GGUF reader against damaged copies of real models.
**
**   (a) truncation: a reference model cut at 200 points (every region, denser
**       in the header, metadata and tensor infos) must be refused, always
**       with KB_EFORMAT and a message. The reference models' last tensor
**       ends exactly at the end of the file (checked first), so no cut copy
**       can be valid.
**   (b) corruption: thousands of byte mutations (xor with random non-zero
**       values, single bytes and short runs, and some "interesting" 64-bit
**       values) in the header, metadata and tensor infos: each copy is either
**       refused with a message, or opens and satisfies every invariant of
**       engine/gguf.h (ggufgen_check_file walks and reads everything, so
**       ASan/UBSan see any bad pointer). Mutations in the data section must
**       still open: tensor data is not validated.
**   (c) the same, aimed: each field of each tensor info (name length,
**       n_dims, every ne, type, offset) set to boundary and hostile values;
**       values that make the file invalid whatever the reader does (an
**       offset onto another tensor, an unknown type, a zero dim ...) must be
**       refused.
**   (d) a NUL byte written into each key, string value and token of real
**       models must be refused, with a message that says so.
**
** The damaged copy is one temp file changed in place (ftruncate, pwrite and
** restore), so an iteration costs an open, not a file write. Seeds are fixed;
** a failure prints the mutation so it can be replayed. Each test arms
** alarm(120) with the default action: a hang kills the process.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "tests/ggufgen.h"
#include "tests/testutil.h"

/* --- helpers --- */

static void arm_alarm(void)
{
    signal(SIGALRM, SIG_DFL);
    alarm(120);
}

/* xorshift64*: a small fixed-seed generator (the tests must replay). */
static uint64_t rng_state;
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_below(uint64_t n)
{
    return n ? rng_next() % n : 0;
}

/* A reference model loaded for damaging: its bytes, and where its regions
** are according to the reader's open of the intact file. */
typedef struct Victim {
    char *bytes;
    size_t size;
    uint64_t kv_end, data_offset, last_end; /* last_end: max tensor end */
    char *path; /* the damaged copy */
    int fd;
} Victim;

static void victim_load(Victim *v, const char *rel)
{
    char *src = testutil_data_path(rel);
    v->bytes = testutil_read_file(src, &v->size);
    assert_non_null(v->bytes);
    char err[512] = "";
    GgufFile *g = NULL;
    int rc = gguf_open(src, &g, err, sizeof err);
    if (rc != KB_OK) print_error("%s: %s\n", src, err);
    assert_int_equal(rc, KB_OK);
    v->kv_end = gguf_kv_end_offset(g);
    v->data_offset = gguf_data_offset(g);
    v->last_end = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const GgufTensor *t = gguf_tensor(g, i);
        uint64_t end = v->data_offset + t->offset + t->n_bytes;
        if (end > v->last_end) v->last_end = end;
    }
    gguf_close(g);
    free(src);
    assert_true(v->kv_end > 24 && v->kv_end < v->data_offset && v->data_offset < v->size);

    const char *slash = strrchr(rel, '/');
    v->path = testutil_join(testutil_scratch(), slash ? slash + 1 : rel);
    assert_int_equal(testutil_write_file(v->path, v->bytes, v->size), 0);
    v->fd = open(v->path, O_RDWR);
    assert_true(v->fd >= 0);
}

static void victim_free(Victim *v)
{
    close(v->fd);
    unlink(v->path);
    free(v->path);
    free(v->bytes);
}

static void pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    assert_int_equal(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
}

/* --- (a) truncation --- */

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

#define N_CUTS 200

static void check_truncations(const char *rel, uint64_t seed)
{
    arm_alarm();
    Victim v;
    victim_load(&v, rel);
    /* The premise: the last tensor ends exactly at EOF, so every cut loses
    ** tensor data (or more) and no cut copy can be valid. */
    assert_int_equal(v.last_end, v.size);

    uint64_t cuts[N_CUTS];
    int n = 0;
    const uint64_t fixed[] = {0, 1, 3, 4, 8, 12, 16, 20, 23, 24, 25, v.kv_end - 1, v.kv_end,
                              v.kv_end + 1, v.data_offset - 1, v.data_offset, v.data_offset + 1,
                              v.size - 1};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) cuts[n++] = fixed[k];
    rng_state = seed;
    /* 100 spread over the header and metadata, 40 over the tensor infos,
    ** the rest over the data section */
    while (n < N_CUTS) {
        uint64_t c;
        if (n < 118) c = v.kv_end * (uint64_t)(n - 18) / 100 + rng_below(v.kv_end / 100 + 1);
        else if (n < 158) c = v.kv_end + rng_below(v.data_offset - v.kv_end);
        else c = v.data_offset + rng_below(v.size - v.data_offset);
        if (c >= v.size) c = v.size - 1;
        bool dup = false;
        for (int k = 0; k < n && !dup; k++) dup = cuts[k] == c;
        if (!dup) cuts[n++] = c;
        else if (n >= 158) cuts[n++] = v.data_offset + rng_below(v.size - v.data_offset); /* rarely dup */
    }
    qsort(cuts, N_CUTS, sizeof cuts[0], cmp_desc);

    int refused = 0;
    for (int k = 0; k < N_CUTS; k++) {
        if (k > 0 && cuts[k] == cuts[k - 1]) continue;
        assert_int_equal(ftruncate(v.fd, (off_t)cuts[k]), 0);
        char err[512];
        err[0] = '\0';
        GgufFile *g = (GgufFile *)&err;
        int rc = gguf_open(v.path, &g, err, sizeof err);
        if (rc != KB_EFORMAT || g != NULL || err[0] == '\0') {
            print_error("%s cut to %llu of %zu bytes: rc %d (%s), handle %p, message '%s'\n", rel,
                        (unsigned long long)cuts[k], v.size, rc, kb_strerror(rc), (void *)g, err);
            if (rc == KB_OK) gguf_close(g);
            fail();
        }
        refused++;
    }
    assert_true(refused >= N_CUTS - 5);
    victim_free(&v);
}

static void test_gguf_refuses_truncated_llama_q4_k_m(void **state)
{
    (void)state;
    check_truncations("models/tiny-llama-Q4_K_M.gguf", 0x1234567ull);
}

static void test_gguf_refuses_truncated_aidreams_f16(void **state)
{
    (void)state;
    check_truncations("models/aidreams260K-F16.gguf", 0x7654321ull);
}

/* --- (b) corruption --- */

/* Counts of what the mutations led to, for the log. */
typedef struct Outcome {
    int refused, opened;
} Outcome;

/* Opens the damaged copy: refused with a message, or consistent. `must_open`
** for mutations confined to the data section. */
static void check_damaged(const Victim *v, const char *what, bool must_open, Outcome *o)
{
    char err[512];
    err[0] = '\0';
    GgufFile *g = (GgufFile *)&err;
    int rc = gguf_open(v->path, &g, err, sizeof err);
    if (rc == KB_OK) {
        char why[512];
        if (ggufgen_check_file(g, why, sizeof why) != 0) {
            print_error("%s: opened but inconsistent: %s\n", what, why);
            gguf_close(g);
            fail();
        }
        gguf_close(g);
        o->opened++;
        return;
    }
    if (must_open || g != NULL || err[0] == '\0' || (rc != KB_EFORMAT && rc != KB_EUNSUPPORTED)) {
        print_error("%s: rc %d (%s), handle %p, message '%s'%s\n", what, rc, kb_strerror(rc),
                    (void *)g, err, must_open ? " (data-only damage must open)" : "");
        fail();
    }
    o->refused++;
}

/* Values that stress length and count checks when written over a field. */
static uint64_t interesting_u64(const Victim *v)
{
    const uint64_t vals[] = {0, 1, 2, 3, 4, 5, 31, 32, 33, 255, 256, 0x7FFFFFFFull, 0x80000000ull,
                             0xFFFFFFFFull, 0x100000000ull, (uint64_t)1 << 62, (uint64_t)INT64_MAX,
                             (uint64_t)1 << 63, UINT64_MAX, UINT64_MAX - 1, v->size, v->size - 1,
                             v->size + 1, v->size - v->kv_end, v->size - v->data_offset,
                             v->data_offset, GGUF_MAX_TENSORS, GGUF_MAX_KV + 1};
    return vals[rng_below(sizeof vals / sizeof vals[0])];
}

#define MAX_RUN 8

static void check_mutations(const char *rel, uint64_t seed, int n_meta, int n_data)
{
    arm_alarm();
    Victim v;
    victim_load(&v, rel);
    rng_state = seed;
    Outcome o = {0, 0};
    char what[256];
    for (int i = 0; i < n_meta + n_data; i++) {
        bool in_data = i >= n_meta;
        uint64_t pos, run = 1;
        uint8_t patch[MAX_RUN];
        uint64_t r = rng_below(100);
        if (!in_data && r < 10) {
            /* an interesting 64-bit value over a field-sized run */
            run = 8;
            uint64_t u = interesting_u64(&v);
            for (int k = 0; k < 8; k++) patch[k] = (uint8_t)(u >> (8 * k));
            pos = rng_below(2) ? rng_below(v.data_offset - 8)
                               : v.kv_end + rng_below(v.data_offset - v.kv_end - 8);
            if (rng_below(4) == 0) pos = rng_below(32); /* the header */
            for (uint64_t k = 0; k < run; k++) patch[k] ^= (uint8_t)v.bytes[pos + k];
        } else {
            if (r >= 70) run = 2 + rng_below(MAX_RUN - 1);
            uint64_t region = rng_below(4);
            if (in_data) pos = v.data_offset + rng_below(v.size - v.data_offset - run);
            else if (region == 0) pos = rng_below(64);                     /* header, first key */
            else if (region == 1) pos = v.kv_end + rng_below(v.data_offset - v.kv_end); /* infos */
            else pos = rng_below(v.data_offset);                           /* anywhere before data */
            for (uint64_t k = 0; k < run; k++) patch[k] = (uint8_t)(1 + rng_below(255));
        }
        if (pos + run > v.size) run = v.size - pos;
        uint8_t damaged[MAX_RUN];
        for (uint64_t k = 0; k < run; k++) damaged[k] = (uint8_t)v.bytes[pos + k] ^ patch[k];
        pwrite_all(v.fd, damaged, run, pos);
        int len = snprintf(what, sizeof what, "%s mutation %d: at %llu xor", rel, i,
                           (unsigned long long)pos);
        for (uint64_t k = 0; k < run && len < (int)sizeof what - 4; k++)
            len += snprintf(what + len, sizeof what - (size_t)len, " %02x", patch[k]);
        check_damaged(&v, what, in_data, &o);
        pwrite_all(v.fd, v.bytes + pos, run, pos);
    }
    print_message("%s: %d mutations refused, %d opened consistently\n", rel, o.refused, o.opened);
    assert_true(o.refused > 0);
    assert_true(o.opened >= n_data);
    victim_free(&v);
}

static void test_gguf_survives_corrupted_llama_q4_k_m(void **state)
{
    (void)state;
    check_mutations("models/tiny-llama-Q4_K_M.gguf", 0xC0FFEEull, 6000, 200);
}

static void test_gguf_survives_corrupted_aidreams_f16(void **state)
{
    (void)state;
    check_mutations("models/aidreams260K-F16.gguf", 0xBADC0DEull, 6000, 200);
}

/* --- (c) field-targeted corruption of the tensor infos --- */

/* Where one tensor info's fields are in the file. */
typedef struct InfoPos {
    uint64_t name_len, n_dims, ne, type, offset; /* byte positions */
    uint32_t dims;
} InfoPos;

/* Writes `size` bytes of v (little-endian) at pos, opens, checks, restores.
** must_fail: the damage makes the file invalid whatever the reader does. */
static void poke(const Victim *v, uint64_t pos, int size, uint64_t val, bool must_fail,
                 const char *field, Outcome *o)
{
    uint8_t b[8];
    for (int k = 0; k < size; k++) b[k] = (uint8_t)(val >> (8 * k));
    if (memcmp(b, v->bytes + pos, (size_t)size) == 0) return; /* no change */
    pwrite_all(v->fd, b, (size_t)size, pos);
    char what[256];
    snprintf(what, sizeof what, "%s: %s at byte %llu set to %llu (0x%llx)", v->path, field,
             (unsigned long long)pos, (unsigned long long)val, (unsigned long long)val);
    int before = o->opened;
    check_damaged(v, what, false, o);
    if (must_fail && o->opened != before) {
        print_error("%s: opened, but the damage makes the file invalid\n", what);
        fail();
    }
    pwrite_all(v->fd, v->bytes + pos, (size_t)size, pos);
}

static void check_info_fields(const char *rel)
{
    arm_alarm();
    Victim v;
    victim_load(&v, rel);
    char *src = testutil_data_path(rel);
    GgufFile *g = NULL;
    assert_int_equal(gguf_open(src, &g, NULL, 0), KB_OK);
    free(src);
    int64_t nt = gguf_n_tensors(g);
    assert_true(nt > 1);
    InfoPos *ip = calloc((size_t)nt, sizeof *ip);
    uint64_t *offs = calloc((size_t)nt, sizeof *offs);
    assert_non_null(ip);
    assert_non_null(offs);
    /* Locate each field by walking the infos as the format lays them out,
    ** checking the walk against the bytes (names) as it goes. */
    uint64_t pos = v.kv_end;
    for (int64_t i = 0; i < nt; i++) {
        const GgufTensor *t = gguf_tensor(g, i);
        uint64_t len;
        memcpy(&len, v.bytes + pos, 8);
        assert_int_equal(len, strlen(t->name));
        assert_memory_equal(v.bytes + pos + 8, t->name, len);
        ip[i].name_len = pos;
        pos += 8 + len;
        ip[i].n_dims = pos;
        ip[i].dims = (uint32_t)t->n_dims;
        pos += 4;
        ip[i].ne = pos;
        pos += 8 * (uint64_t)t->n_dims;
        ip[i].type = pos;
        pos += 4;
        ip[i].offset = pos;
        pos += 8;
        offs[i] = t->offset;
    }
    uint64_t align = gguf_alignment(g);
    assert_int_equal((pos + align - 1) / align * align, v.data_offset);
    uint64_t room = v.size - v.data_offset;
    gguf_close(g);

    Outcome o = {0, 0};
    for (int64_t i = 0; i < nt; i++) {
        uint64_t len;
        memcpy(&len, v.bytes + ip[i].name_len, 8);
        const uint64_t name_lens[] = {0, len - 1, len + 1, 63, 64, 255, v.size, room,
                                      (uint64_t)1 << 63, UINT64_MAX, UINT64_MAX - 7};
        for (size_t k = 0; k < sizeof name_lens / sizeof name_lens[0]; k++)
            poke(&v, ip[i].name_len, 8, name_lens[k], name_lens[k] == 0 || name_lens[k] >= v.size,
                 "name length", &o);
        for (uint64_t d = 0; d <= 6; d++)
            poke(&v, ip[i].n_dims, 4, d, d == 0 || d > 4, "n_dims", &o);
        poke(&v, ip[i].n_dims, 4, 0xFFFFFFFFull, true, "n_dims", &o);
        for (uint32_t d = 0; d < ip[i].dims; d++) {
            int64_t ne;
            memcpy(&ne, v.bytes + ip[i].ne + 8 * d, 8);
            const int64_t nes[] = {0, -1, INT64_MIN, 1, ne - 1, ne + 1, ne / 2, ne * 2, 31, 33,
                                   255, 257, (int64_t)1 << 40, INT64_MAX};
            for (size_t k = 0; k < sizeof nes / sizeof nes[0]; k++)
                poke(&v, ip[i].ne + 8 * d, 8, (uint64_t)nes[k], nes[k] <= 0, "ne", &o);
        }
        for (uint64_t type = 0; type <= 40; type++)
            poke(&v, ip[i].type, 4, type, kb_type_info((int)type) == NULL, "type", &o);
        poke(&v, ip[i].type, 4, 99, true, "type", &o);
        poke(&v, ip[i].type, 4, 0xFFFFFFFFull, true, "type", &o);
        const uint64_t extra[] = {offs[i] + 1, offs[i] + align, offs[i] - align, room, room + align,
                                  room - align / 2, (uint64_t)1 << 63, UINT64_MAX,
                                  UINT64_MAX - align + 1, 0};
        for (size_t k = 0; k < sizeof extra / sizeof extra[0]; k++) {
            uint64_t off = extra[k];
            bool invalid = off % align != 0 || off >= room;
            poke(&v, ip[i].offset, 8, off, invalid, "offset", &o);
        }
        /* onto another tensor's data: always an overlap */
        for (int64_t j = 0; j < nt; j++)
            if (j != i && (j % 5 == 0 || j == i + 1 || j == i - 1))
                poke(&v, ip[i].offset, 8, offs[j], true, "offset", &o);
    }
    print_message("%s: %d field changes refused, %d opened consistently\n", rel, o.refused,
                  o.opened);
    assert_true(o.refused > 0 && o.opened > 0);
    free(ip);
    free(offs);
    victim_free(&v);
}

static void test_gguf_survives_corrupted_tensor_info_fields(void **state)
{
    (void)state;
    check_info_fields("models/tiny-llama-Q4_K_M.gguf");
    check_info_fields("models/aidreams260K-F16.gguf");
}

/* --- (d) a NUL inside a string --- */

/* Byte positions of the bytes of every string in the metadata of v (keys,
** string values, elements of string arrays), walked as the format lays
** them out from the header (24 bytes); returns how many, at most cap. */
static int metadata_strings(const Victim *v, uint64_t *pos, uint64_t *len, int cap)
{
    uint64_t p = 16, n_kv;
    memcpy(&n_kv, v->bytes + p, 8);
    p = 24;
    int n = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t l;
        uint32_t type, et = 0;
        uint64_t count = 1;
        memcpy(&l, v->bytes + p, 8);
        if (n < cap) pos[n] = p + 8, len[n++] = l; /* the key */
        p += 8 + l;
        memcpy(&type, v->bytes + p, 4);
        p += 4;
        if (type == GGUF_VT_ARRAY) {
            memcpy(&et, v->bytes + p, 4);
            memcpy(&count, v->bytes + p + 4, 8);
            p += 12;
        } else {
            et = type;
        }
        for (uint64_t j = 0; j < count; j++) {
            if (et != GGUF_VT_STRING) {
                p += gguf_value_type_size((int)et);
                continue;
            }
            memcpy(&l, v->bytes + p, 8);
            if (n < cap && l > 0) pos[n] = p + 8, len[n++] = l;
            p += 8 + l;
        }
    }
    assert_int_equal(p, v->kv_end); /* the walk agrees with the reader */
    return n;
}

/* A NUL written into any key, string value or token of a real model (its
** first, middle or last byte) is refused with a message that says so:
** llama.cpp would read the string cut at the NUL. */
static void check_nul_in_strings(const char *rel)
{
    arm_alarm();
    Victim v;
    victim_load(&v, rel);
    enum { CAP = 4096 };
    uint64_t *pos = calloc(CAP, sizeof *pos), *len = calloc(CAP, sizeof *len);
    assert_non_null(pos);
    assert_non_null(len);
    int n = metadata_strings(&v, pos, len, CAP);
    assert_true(n > 500); /* keys, values and a 512-token vocabulary */
    const uint8_t zero = 0;
    for (int i = 0; i < n; i++) {
        const uint64_t at[] = {0, len[i] / 2, len[i] - 1};
        for (size_t k = 0; k < 3; k++) {
            pwrite_all(v.fd, &zero, 1, pos[i] + at[k]);
            char err[512] = "";
            GgufFile *g = NULL;
            int rc = gguf_open(v.path, &g, err, sizeof err);
            if (rc != KB_EFORMAT || strstr(err, "NUL") == NULL) {
                print_error("%s: NUL at byte %llu (string %d): rc %d, message '%s'\n", rel,
                            (unsigned long long)(pos[i] + at[k]), i, rc, err);
                gguf_close(g);
                fail();
            }
            pwrite_all(v.fd, v.bytes + pos[i] + at[k], 1, pos[i] + at[k]);
        }
    }
    print_message("%s: a NUL in each of %d strings refused\n", rel, n);
    free(pos);
    free(len);
    victim_free(&v);
}

static void test_gguf_refuses_nul_in_every_string_of_a_model(void **state)
{
    (void)state;
    check_nul_in_strings("models/tiny-llama-Q4_K_M.gguf");
    check_nul_in_strings("models/tiny-qwen2-Q8_0.gguf");
}

/* Corruption of a crafted file holding every value type (arrays of each
** numeric type, of strings, empty ones), where a mutation lands on the
** rarer value types far more often than in a real model. */
static void test_gguf_survives_corrupted_crafted_file(void **state)
{
    (void)state;
    arm_alarm();
    GgufGen *gg = ggufgen_new(3);
    ggufgen_kv_str(gg, "general.architecture", "llama");
    ggufgen_kv_u32(gg, "general.alignment", 64);
    ggufgen_set_alignment(gg, 64);
    ggufgen_kv_u8(gg, "a.u8", 1);
    ggufgen_kv_i8(gg, "a.i8", -1);
    ggufgen_kv_u16(gg, "a.u16", 2);
    ggufgen_kv_i16(gg, "a.i16", -2);
    ggufgen_kv_i32(gg, "a.i32", -3);
    ggufgen_kv_f32(gg, "a.f32", 1.0f);
    ggufgen_kv_bool(gg, "a.bool", true);
    ggufgen_kv_u64(gg, "a.u64", 4);
    ggufgen_kv_i64(gg, "a.i64", -4);
    ggufgen_kv_f64(gg, "a.f64", 2.0);
    ggufgen_kv_str(gg, "a.empty", "");
    const char *strs[] = {"x", "", "yz", "longer string"};
    ggufgen_kv_arr_str(gg, "a.strs", strs, 4);
    uint64_t u64s[] = {1, 2, 3};
    ggufgen_kv_arr(gg, "a.u64s", GGUF_VT_UINT64, u64s, 3);
    uint16_t u16s[] = {1, 2, 3, 4, 5};
    ggufgen_kv_arr(gg, "a.u16s", GGUF_VT_UINT16, u16s, 5);
    uint8_t bools[] = {0, 1};
    ggufgen_kv_arr(gg, "a.bools", GGUF_VT_BOOL, bools, 2);
    ggufgen_kv_arr(gg, "a.none", GGUF_VT_INT32, NULL, 0);
    int64_t ne2[2] = {32, 2}, ne4[4] = {256, 1, 2, 1}, ne1[1] = {5};
    ggufgen_tensor(gg, "q.weight", 2, ne2, KB_TYPE_Q8_0);
    ggufgen_tensor(gg, "k.weight", 4, ne4, KB_TYPE_Q6_K);
    ggufgen_tensor(gg, "n.weight", 1, ne1, KB_TYPE_F32);
    size_t len;
    uint8_t *bytes = ggufgen_finish(gg, &len);
    Victim v = {0};
    v.bytes = (char *)bytes;
    v.size = len;
    v.kv_end = ggufgen_kv_end_offset(gg);
    v.data_offset = ggufgen_data_offset(gg);
    ggufgen_free(gg);
    v.path = testutil_join(testutil_scratch(), "crafted.gguf");
    assert_int_equal(testutil_write_file(v.path, v.bytes, v.size), 0);
    v.fd = open(v.path, O_RDWR);
    assert_true(v.fd >= 0);
    Outcome o = {0, 0};
    check_damaged(&v, "crafted, intact", true, &o);
    rng_state = 0xFEEDull;
    char what[128];
    for (int i = 0; i < 4000; i++) {
        uint64_t pos = rng_below(v.data_offset);
        uint8_t x = (uint8_t)(1 + rng_below(255)), b = (uint8_t)v.bytes[pos] ^ x;
        pwrite_all(v.fd, &b, 1, pos);
        snprintf(what, sizeof what, "crafted mutation %d: at %llu xor %02x", i,
                 (unsigned long long)pos, x);
        check_damaged(&v, what, false, &o);
        pwrite_all(v.fd, v.bytes + pos, 1, pos);
    }
    print_message("crafted: %d mutations refused, %d opened consistently\n", o.refused, o.opened);
    assert_true(o.refused > 0);
    close(v.fd);
    unlink(v.path);
    free(v.path);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_refuses_truncated_llama_q4_k_m),
        cmocka_unit_test(test_gguf_refuses_truncated_aidreams_f16),
        cmocka_unit_test(test_gguf_survives_corrupted_llama_q4_k_m),
        cmocka_unit_test(test_gguf_survives_corrupted_aidreams_f16),
        cmocka_unit_test(test_gguf_survives_corrupted_tensor_info_fields),
        cmocka_unit_test(test_gguf_refuses_nul_in_every_string_of_a_model),
        cmocka_unit_test(test_gguf_survives_corrupted_crafted_file),
    };
    return cmocka_run_group_tests(tests, testutil_scratch_setup, testutil_scratch_teardown);
}
