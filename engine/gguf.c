/*
** gguf.c: the validating GGUF reader (see gguf.h for the guarantees).
**
** The file is mapped read-only and parsed in file order, as llama.cpp's
** gguf.cpp does, checking each field before it is used:
**
**   header        magic "GGUF"; version 2 or 3 (byte-swapped = big-endian,
**                 refused); n_tensors and n_kv bounded by GGUF_MAX_* and by
**                 the bytes left in the file (a count can never make us
**                 allocate more than the file could describe)
**   key/values    key length inside the file, non-empty, no NUL; value type
**                 0..12; arrays of any non-array type with count * size
**                 checked by division; every string length inside the file
**                 and no NUL in any string (llama.cpp reads strings through
**                 c_str(): a NUL would silently cut a token or a name);
**                 no duplicate keys
**   alignment     general.alignment, when present, a uint32 power of two
**   tensor infos  name 1..63 bytes, unique; 1..4 dims each > 0; element count
**                 overflow-checked; known type; ne[0] a multiple of the block
**                 size; offset aligned
**   data          every tensor's bytes inside the file, no two overlapping
**
** Nothing in the data section is read, so opening a 4 GB model touches only
** its first pages.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/file_map.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_NAME 64 /* ggml's GGML_MAX_NAME: names are at most 63 bytes */

/* One metadata entry. Offsets are into the mapping. */
typedef struct GgufKv {
    const char *key;          /* NUL-terminated, in the handle's name arena */
    uint64_t key_off, key_len;
    GgufValueType type;
    GgufValueType elem_type;  /* arrays only */
    uint64_t n;               /* arrays only: element count */
    uint64_t val_off;         /* scalar value, string length field, or first array element */
    uint64_t *str_off;        /* arrays of strings: offset of each element's length field */
} GgufKv;

struct GgufFile {
    const uint8_t *map;
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t kv_end;          /* where tensor infos start */
    uint64_t data_offset;
    int64_t n_kv;
    GgufKv *kv;
    GgufKv **kv_sorted;       /* by key, for lookup */
    int64_t n_tensors;
    GgufTensor *tensors;
    uint64_t *tensor_name_off; /* per tensor: name offset in the mapping */
    GgufTensor **tensors_sorted; /* by name */
    char *key_names;          /* arena of NUL-terminated keys */
    char *tensor_names;       /* arena of NUL-terminated tensor names */
};

/* Parsing state: a cursor over the mapping (with where errors go) and the
** handle being filled. */
typedef struct Reader {
    FileCursor c;
    GgufFile *g;
} Reader;

/* --- cursor reads: each checks the bytes exist first --- */

static int read_u32(Reader *r, uint32_t *v, const char *what)
{
    return fc_read(&r->c, v, 4, what);
}

static int read_u64(Reader *r, uint64_t *v, const char *what)
{
    return fc_read(&r->c, v, 8, what);
}

/* Reads a GGUF string header (uint64 length) and checks its bytes lie inside
** the file; on success *off is where the bytes start and the cursor is past
** them. */
static int read_string(Reader *r, uint64_t *off, uint64_t *len, const char *what)
{
    int rc = read_u64(r, len, what);
    if (rc != KB_OK) return rc;
    if (*len > r->g->size - r->c.pos) {
        return fc_fail(&r->c, KB_EFORMAT,
                    "%s at byte %llu has length %llu but only %llu bytes remain in the file",
                    what, (unsigned long long)(r->c.pos - 8), (unsigned long long)*len,
                    (unsigned long long)(r->g->size - r->c.pos));
    }
    *off = r->c.pos;
    r->c.pos += *len;
    return KB_OK;
}

/* Reads a string value (read_string) and refuses a NUL byte inside it;
** `what` names the value in messages. */
static int read_string_value(Reader *r, const char *what)
{
    uint64_t off, len;
    int rc = read_string(r, &off, &len, what);
    if (rc != KB_OK) return rc;
    const uint8_t *nul = memchr(r->g->map + off, 0, (size_t)len);
    if (nul != NULL) {
        return fc_fail(&r->c, KB_EFORMAT,
                    "%s contains a NUL byte at byte %llu of %llu (llama.cpp would cut the string there)", what,
                    (unsigned long long)(nul - (r->g->map + off)), (unsigned long long)len);
    }
    return KB_OK;
}

/* Size in bytes of a fixed-size value type, 0 for string/array/invalid. */
uint64_t gguf_value_type_size(int vt)
{
    switch (vt) {
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_UINT16: case GGUF_VT_INT16: return 2;
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_FLOAT32: return 4;
    case GGUF_VT_UINT64: case GGUF_VT_INT64: case GGUF_VT_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_value_type_name(int vt)
{
    static const char *const names[GGUF_VT_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return vt >= 0 && vt < GGUF_VT_COUNT ? names[vt] : "invalid";
}

/* --- header --- */

/* Checks magic and version and reads the two counts, bounding each by what
** the remaining bytes could hold (min_kv / min_tensor bytes per entry). */
static int parse_header(Reader *r, uint64_t *n_tensors, uint64_t *n_kv)
{
    char magic[4];
    uint32_t version;
    int rc = fc_read(&r->c, magic, 4, "the magic number");
    if (rc != KB_OK) return fc_fail(&r->c, KB_EFORMAT, "not a GGUF file (%llu bytes, too short)",
                                 (unsigned long long)r->g->size);
    if (memcmp(magic, GGUF_MAGIC, 4) != 0) {
        char q[64];
        return fc_fail(&r->c, KB_EFORMAT, "not a GGUF file: magic is %s, expected 'GGUF'",
                    fc_quote(q, sizeof q, (const uint8_t *)magic, 4));
    }
    if ((rc = read_u32(r, &version, "the version")) != KB_OK) return rc;
    if (version != 0 && (version & 0xffff) == 0) {
        return fc_fail(&r->c, KB_EUNSUPPORTED,
                    "big-endian GGUF file (version field 0x%08x): kbchat reads little-endian files only",
                    version);
    }
    if (version == 1) {
        return fc_fail(&r->c, KB_EUNSUPPORTED,
                    "GGUF version 1 is obsolete: re-convert the model with a current tool");
    }
    if (version < 2 || version > 3) {
        return fc_fail(&r->c, KB_EUNSUPPORTED, "GGUF version %u is not supported (expected 2 or 3)", version);
    }
    r->g->version = version;
    if ((rc = read_u64(r, n_tensors, "the tensor count")) != KB_OK) return rc;
    if ((rc = read_u64(r, n_kv, "the metadata count")) != KB_OK) return rc;

    uint64_t left = r->g->size - r->c.pos;
    const uint64_t min_kv = 8 + 1 + 4 + 1;          /* key len, 1-byte key, type, 1-byte value */
    const uint64_t min_tensor = 8 + 1 + 4 + 8 + 4 + 8; /* name, n_dims, one dim, type, offset */
    if (*n_tensors > GGUF_MAX_TENSORS) {
        return fc_fail(&r->c, KB_EFORMAT, "n_tensors is %llu, more than the limit of %d",
                    (unsigned long long)*n_tensors, GGUF_MAX_TENSORS);
    }
    if (*n_kv > GGUF_MAX_KV) {
        return fc_fail(&r->c, KB_EFORMAT, "n_kv is %llu, more than the limit of %d",
                    (unsigned long long)*n_kv, GGUF_MAX_KV);
    }
    if (*n_kv > left / min_kv || *n_tensors > (left - *n_kv * min_kv) / min_tensor) {
        return fc_fail(&r->c, KB_EFORMAT,
                    "header claims %llu tensors and %llu metadata entries, more than the "
                    "remaining %llu bytes can hold (truncated download?)",
                    (unsigned long long)*n_tensors, (unsigned long long)*n_kv,
                    (unsigned long long)left);
    }
    return KB_OK;
}

/* --- metadata --- */

/* Reads one value of type vt into kv at the cursor (arrays included). */
static int parse_value(Reader *r, GgufKv *kv, const char *key_q)
{
    char what[256];
    uint64_t sz;
    int rc = KB_OK;
    kv->val_off = r->c.pos;
    if (kv->type == GGUF_VT_STRING) {
        snprintf(what, sizeof what, "the string value of %s", key_q);
        return read_string_value(r, what);
    }
    if (kv->type != GGUF_VT_ARRAY) {
        sz = gguf_value_type_size(kv->type);
        if (sz > r->g->size - r->c.pos) {
            snprintf(what, sizeof what, "the value of %s", key_q);
            return fc_fail(&r->c, KB_EFORMAT, "file ends at byte %llu while reading %s (truncated download?)",
                        (unsigned long long)r->g->size, what);
        }
        r->c.pos += sz;
        return KB_OK;
    }

    uint32_t et;
    snprintf(what, sizeof what, "the array header of %s", key_q);
    if ((rc = read_u32(r, &et, what)) != KB_OK) return rc;
    if ((rc = read_u64(r, &kv->n, what)) != KB_OK) return rc;
    if (et == GGUF_VT_ARRAY) return fc_fail(&r->c, KB_EFORMAT, "%s: nested arrays are not supported", key_q);
    if (et >= GGUF_VT_COUNT) {
        return fc_fail(&r->c, KB_EFORMAT, "%s: array element type %u is invalid (expected 0..12)", key_q, et);
    }
    kv->elem_type = (GgufValueType)et;
    kv->val_off = r->c.pos;
    uint64_t left = r->g->size - r->c.pos;
    if (et != GGUF_VT_STRING) {
        sz = gguf_value_type_size((int)et);
        if (kv->n > left / sz) {
            return fc_fail(&r->c, KB_EFORMAT,
                        "%s: array of %llu %s values needs more than the %llu bytes left (truncated download?)",
                        key_q, (unsigned long long)kv->n, gguf_value_type_name((int)et),
                        (unsigned long long)left);
        }
        r->c.pos += kv->n * sz;
        return KB_OK;
    }
    if (kv->n > left / 8) {
        return fc_fail(&r->c, KB_EFORMAT,
                    "%s: array of %llu strings needs more than the %llu bytes left (truncated download?)",
                    key_q, (unsigned long long)kv->n, (unsigned long long)left);
    }
    if (kv->n > 0) {
        kv->str_off = malloc(kv->n * sizeof *kv->str_off);
        if (kv->str_off == NULL) return fc_fail(&r->c, KB_ENOMEM, "out of memory reading %s", key_q);
    }
    for (uint64_t j = 0; j < kv->n && rc == KB_OK; j++) {
        kv->str_off[j] = r->c.pos;
        snprintf(what, sizeof what, "string %llu of %s", (unsigned long long)j, key_q);
        rc = read_string_value(r, what);
    }
    return rc;
}

/* Reads entry i: key, type, value. */
static int parse_kv(Reader *r, GgufKv *kv, uint64_t i)
{
    char what[64], key_q[160];
    uint32_t type;
    snprintf(what, sizeof what, "the key of metadata entry %llu", (unsigned long long)i);
    int rc = read_string(r, &kv->key_off, &kv->key_len, what);
    if (rc != KB_OK) return rc;
    const uint8_t *key = r->g->map + kv->key_off;
    fc_quote(key_q, sizeof key_q, key, kv->key_len);
    if (kv->key_len == 0) {
        return fc_fail(&r->c, KB_EFORMAT, "metadata entry %llu has an empty key", (unsigned long long)i);
    }
    if (memchr(key, 0, (size_t)kv->key_len) != NULL) {
        return fc_fail(&r->c, KB_EFORMAT, "metadata key %s contains a NUL byte", key_q);
    }
    snprintf(what, sizeof what, "the type of metadata entry %llu", (unsigned long long)i);
    if ((rc = read_u32(r, &type, what)) != KB_OK) return rc;
    if (type >= GGUF_VT_COUNT) {
        return fc_fail(&r->c, KB_EFORMAT, "metadata key %s has invalid value type %u (expected 0..12)", key_q, type);
    }
    kv->type = (GgufValueType)type;
    return parse_value(r, kv, key_q);
}

/* Reads general.alignment when present: it must be a uint32 power of two. */
static int check_alignment(Reader *r)
{
    GgufFile *g = r->g;
    int64_t i = gguf_find_key(g, "general.alignment");
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (i < 0) return KB_OK;
    if (g->kv[i].type != GGUF_VT_UINT32) {
        return fc_fail(&r->c, KB_EFORMAT, "general.alignment is a %s, expected uint32",
                    gguf_value_type_name(g->kv[i].type));
    }
    uint32_t a;
    memcpy(&a, g->map + g->kv[i].val_off, 4);
    if (a == 0 || (a & (a - 1)) != 0) {
        return fc_fail(&r->c, KB_EFORMAT, "general.alignment is %u, expected a power of two", a);
    }
    g->alignment = a;
    return KB_OK;
}

/* --- tensor infos --- */

/* Reads the dims of tensor t and checks each and their product. */
static int parse_dims(Reader *r, GgufTensor *t, const char *name_q)
{
    uint32_t n_dims;
    int rc = read_u32(r, &n_dims, "a tensor's dimension count");
    if (rc != KB_OK) return rc;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
        return fc_fail(&r->c, KB_EFORMAT, "tensor %s has %u dimensions, expected 1..%d", name_q, n_dims, GGUF_MAX_DIMS);
    }
    t->n_dims = (int)n_dims;
    uint64_t count = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        int64_t ne = 1;
        if (d < t->n_dims) {
            if ((rc = fc_read(&r->c, &ne, 8, "a tensor dimension")) != KB_OK) return rc;
            if (ne <= 0) {
                return fc_fail(&r->c, KB_EFORMAT, "tensor %s has ne[%d] = %lld, expected a positive size",
                            name_q, d, (long long)ne);
            }
        }
        if ((uint64_t)ne > (uint64_t)INT64_MAX / count) {
            return fc_fail(&r->c, KB_EFORMAT, "tensor %s has too many elements (dimension product overflows)", name_q);
        }
        count *= (uint64_t)ne;
        t->ne[d] = ne;
    }
    t->n_elements = count;
    return KB_OK;
}

/* Reads the type and offset of tensor t and derives its byte size. */
static int parse_type_offset(Reader *r, GgufTensor *t, const char *name_q)
{
    uint32_t type;
    int rc = read_u32(r, &type, "a tensor type");
    if (rc == KB_OK) rc = read_u64(r, &t->offset, "a tensor offset");
    if (rc != KB_OK) return rc;
    const KbTypeInfo *ti = kb_type_info((int)type);
    if (ti == NULL) {
        const char *old = kb_type_removed_name((int)type);
        if (old) {
            return fc_fail(&r->c, KB_EUNSUPPORTED,
                        "tensor %s has type %u (%s), a format ggml removed: re-convert the model",
                        name_q, type, old);
        }
        return fc_fail(&r->c, KB_EFORMAT, "tensor %s has unknown type id %u", name_q, type);
    }
    t->type = (int)type;
    if (t->ne[0] % ti->block_size != 0) {
        return fc_fail(&r->c, KB_EFORMAT, "tensor %s has ne[0] = %lld, not a multiple of %s's block size %d",
                    name_q, (long long)t->ne[0], ti->name, ti->block_size);
    }
    uint64_t blocks = t->n_elements / (uint64_t)ti->block_size;
    if (blocks > UINT64_MAX / (uint64_t)ti->type_size) {
        return fc_fail(&r->c, KB_EFORMAT, "tensor %s is too large (byte size overflows)", name_q);
    }
    t->n_bytes = blocks * (uint64_t)ti->type_size;
    if (t->offset % r->g->alignment != 0) {
        return fc_fail(&r->c, KB_EFORMAT, "tensor %s has offset %llu, not a multiple of the alignment %llu",
                    name_q, (unsigned long long)t->offset, (unsigned long long)r->g->alignment);
    }
    return KB_OK;
}

/* Reads tensor info i. */
static int parse_tensor_info(Reader *r, int64_t i)
{
    GgufFile *g = r->g;
    GgufTensor *t = &g->tensors[i];
    char what[64], name_q[160];
    uint64_t len;
    snprintf(what, sizeof what, "the name of tensor %lld", (long long)i);
    int rc = read_string(r, &g->tensor_name_off[i], &len, what);
    if (rc != KB_OK) return rc;
    const uint8_t *name = g->map + g->tensor_name_off[i];
    fc_quote(name_q, sizeof name_q, name, len);
    if (len == 0) return fc_fail(&r->c, KB_EFORMAT, "tensor %lld has an empty name", (long long)i);
    if (len >= GGUF_MAX_NAME) {
        return fc_fail(&r->c, KB_EFORMAT, "tensor %s has a %llu-byte name, longer than %d", name_q,
                    (unsigned long long)len, GGUF_MAX_NAME - 1);
    }
    if (memchr(name, 0, (size_t)len) != NULL) {
        return fc_fail(&r->c, KB_EFORMAT, "tensor name %s contains a NUL byte", name_q);
    }
    rc = parse_dims(r, t, name_q);
    if (rc == KB_OK) rc = parse_type_offset(r, t, name_q);
    return rc;
}

/* --- names, sorting and lookups --- */

static int cmp_kv_key(const void *a, const void *b)
{
    return strcmp((*(GgufKv *const *)a)->key, (*(GgufKv *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(GgufTensor *const *)a)->name, (*(GgufTensor *const *)b)->name);
}

/* Copies every key into one arena as C strings (lengths validated by
** parse_kv) and points each entry at its copy. */
static int build_key_names(Reader *r)
{
    GgufFile *g = r->g;
    uint64_t total = 1;
    for (int64_t i = 0; i < g->n_kv; i++) total += g->kv[i].key_len + 1;
    g->key_names = malloc(total);
    if (g->key_names == NULL) return fc_fail(&r->c, KB_ENOMEM, "out of memory for %llu bytes of keys", (unsigned long long)total);
    char *p = g->key_names;
    for (int64_t i = 0; i < g->n_kv; i++) {
        memcpy(p, g->map + g->kv[i].key_off, g->kv[i].key_len);
        p[g->kv[i].key_len] = '\0';
        g->kv[i].key = p;
        p += g->kv[i].key_len + 1;
    }
    return KB_OK;
}

/* The same for tensor names; each name's length field sits just before it. */
static int build_tensor_names(Reader *r)
{
    GgufFile *g = r->g;
    uint64_t total = 1, len;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        memcpy(&len, g->map + g->tensor_name_off[i] - 8, 8);
        total += len + 1;
    }
    g->tensor_names = malloc(total);
    if (g->tensor_names == NULL) return fc_fail(&r->c, KB_ENOMEM, "out of memory for %llu bytes of names", (unsigned long long)total);
    char *p = g->tensor_names;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        memcpy(&len, g->map + g->tensor_name_off[i] - 8, 8);
        memcpy(p, g->map + g->tensor_name_off[i], len);
        p[len] = '\0';
        g->tensors[i].name = p;
        p += len + 1;
    }
    return KB_OK;
}

/* Sorts the keys for lookup and rejects duplicates. */
static int index_keys(Reader *r)
{
    GgufFile *g = r->g;
    g->kv_sorted = malloc((g->n_kv ? (size_t)g->n_kv : 1) * sizeof *g->kv_sorted);
    if (g->kv_sorted == NULL) return fc_fail(&r->c, KB_ENOMEM, "out of memory indexing metadata");
    for (int64_t i = 0; i < g->n_kv; i++) g->kv_sorted[i] = &g->kv[i];
    qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, cmp_kv_key);
    for (int64_t i = 1; i < g->n_kv; i++) {
        if (strcmp(g->kv_sorted[i - 1]->key, g->kv_sorted[i]->key) == 0) {
            char q[160];
            const char *k = g->kv_sorted[i]->key;
            return fc_fail(&r->c, KB_EFORMAT, "duplicate metadata key %s",
                        fc_quote(q, sizeof q, (const uint8_t *)k, strlen(k)));
        }
    }
    return KB_OK;
}

/* Sorts the tensors by name for lookup and rejects duplicate names. */
static int index_tensors(Reader *r)
{
    GgufFile *g = r->g;
    g->tensors_sorted = malloc((g->n_tensors ? (size_t)g->n_tensors : 1) * sizeof *g->tensors_sorted);
    if (g->tensors_sorted == NULL) return fc_fail(&r->c, KB_ENOMEM, "out of memory indexing tensors");
    for (int64_t i = 0; i < g->n_tensors; i++) g->tensors_sorted[i] = &g->tensors[i];
    qsort(g->tensors_sorted, (size_t)g->n_tensors, sizeof *g->tensors_sorted, cmp_tensor_name);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        if (strcmp(g->tensors_sorted[i - 1]->name, g->tensors_sorted[i]->name) == 0) {
            char q[160];
            const char *n = g->tensors_sorted[i]->name;
            return fc_fail(&r->c, KB_EFORMAT, "duplicate tensor name %s",
                        fc_quote(q, sizeof q, (const uint8_t *)n, strlen(n)));
        }
    }
    return KB_OK;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    uint64_t x = (*(GgufTensor *const *)a)->offset, y = (*(GgufTensor *const *)b)->offset;
    return x < y ? -1 : x > y;
}

/* Places the data section and checks that each tensor's bytes lie inside the
** file and that no two tensors overlap. */
static int check_tensor_data(Reader *r)
{
    GgufFile *g = r->g;
    uint64_t pad = (g->alignment - r->c.pos % g->alignment) % g->alignment;
    g->data_offset = r->c.pos + pad;
    if (g->n_tensors == 0) return KB_OK;
    if (pad > g->size - r->c.pos) {
        return fc_fail(&r->c, KB_EFORMAT, "file ends at byte %llu, before its data section at byte %llu (truncated download?)",
                    (unsigned long long)g->size, (unsigned long long)g->data_offset);
    }
    uint64_t room = g->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        if (t->offset > room || t->n_bytes > room - t->offset) {
            char q[160];
            return fc_fail(&r->c, KB_EFORMAT,
                        "tensor %s needs %llu bytes at offset %llu of the data section (byte %llu), "
                        "past the end of the file at byte %llu (truncated download?)",
                        fc_quote(q, sizeof q, (const uint8_t *)t->name, strlen(t->name)),
                        (unsigned long long)t->n_bytes, (unsigned long long)t->offset,
                        (unsigned long long)g->data_offset, (unsigned long long)g->size);
        }
        t->data = g->map + g->data_offset + t->offset;
    }
    /* Overlap check on offset order; tensors_sorted is reused as scratch and
    ** re-sorted by name afterwards. */
    GgufTensor **by_off = g->tensors_sorted;
    qsort(by_off, (size_t)g->n_tensors, sizeof *by_off, cmp_tensor_offset);
    int rc = KB_OK;
    for (int64_t i = 1; i < g->n_tensors && rc == KB_OK; i++) {
        if (by_off[i]->offset < by_off[i - 1]->offset + by_off[i - 1]->n_bytes) {
            char q1[160], q2[160];
            rc = fc_fail(&r->c, KB_EFORMAT, "tensors %s and %s overlap in the data section",
                      fc_quote(q1, sizeof q1, (const uint8_t *)by_off[i - 1]->name, strlen(by_off[i - 1]->name)),
                      fc_quote(q2, sizeof q2, (const uint8_t *)by_off[i]->name, strlen(by_off[i]->name)));
        }
    }
    qsort(g->tensors_sorted, (size_t)g->n_tensors, sizeof *g->tensors_sorted, cmp_tensor_name);
    return rc;
}

/* --- open / close --- */

/* Parses everything after the mapping exists; see the file comment. */
static int parse_file(Reader *r)
{
    GgufFile *g = r->g;
    uint64_t n_tensors, n_kv;
    int rc = parse_header(r, &n_tensors, &n_kv);
    if (rc != KB_OK) return rc;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    g->tensor_name_off = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensor_name_off);
    if (!g->kv || !g->tensors || !g->tensor_name_off) return fc_fail(&r->c, KB_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n_kv && rc == KB_OK; i++) {
        rc = parse_kv(r, &g->kv[i], i);
        g->n_kv = (int64_t)i + 1; /* so close frees the arrays of a partial entry */
    }
    g->kv_end = r->c.pos;
    if (rc == KB_OK) rc = build_key_names(r);
    if (rc == KB_OK) rc = index_keys(r);
    if (rc == KB_OK) rc = check_alignment(r);
    for (uint64_t i = 0; i < n_tensors && rc == KB_OK; i++) rc = parse_tensor_info(r, (int64_t)i);
    if (rc != KB_OK) return rc;
    g->n_tensors = (int64_t)n_tensors;
    rc = build_tensor_names(r);
    if (rc == KB_OK) rc = index_tensors(r);
    if (rc == KB_OK) rc = check_tensor_data(r);
    return rc;
}

int gguf_open(const char *path, GgufFile **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    GgufFile *g = calloc(1, sizeof *g);
    Reader r = {{NULL, 0, 0, path, err, errlen}, g};
    if (g == NULL) {
        if (err && errlen) snprintf(err, errlen, "%s: out of memory", path);
        return KB_ENOMEM;
    }
    int rc = fc_map(&r.c, "GGUF");
    g->map = r.c.map;
    g->size = r.c.size;
    if (rc == KB_OK) rc = parse_file(&r);
    if (rc != KB_OK) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return KB_OK;
}

void gguf_close(GgufFile *g)
{
    if (g == NULL) return;
    fc_unmap(g->map, g->size);
    for (int64_t i = 0; g->kv && i < g->n_kv; i++) free(g->kv[i].str_off);
    free(g->kv);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->tensors_sorted);
    free(g->tensor_name_off);
    free(g->key_names);
    free(g->tensor_names);
    free(g);
}

/* --- file level --- */

uint32_t gguf_version(const GgufFile *g) { return g->version; }
uint64_t gguf_file_size(const GgufFile *g) { return g->size; }
uint64_t gguf_alignment(const GgufFile *g) { return g->alignment; }
uint64_t gguf_data_offset(const GgufFile *g) { return g->data_offset; }
uint64_t gguf_kv_end_offset(const GgufFile *g) { return g->kv_end; }

/* --- metadata --- */

int64_t gguf_n_kv(const GgufFile *g) { return g->n_kv; }

const char *gguf_kv_key(const GgufFile *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

GgufValueType gguf_kv_type(const GgufFile *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? g->kv[i].type : GGUF_VT_COUNT;
}

int64_t gguf_find_key(const GgufFile *g, const char *key)
{
    GgufKv probe = {.key = key};
    GgufKv *pp = &probe;
    if (g->kv_sorted == NULL) return -1;
    GgufKv **hit = bsearch(&pp, g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, cmp_kv_key);
    return hit ? *hit - g->kv : -1;
}

/* Reads a fixed-size integer value of type vt at byte off as int64. A bool
** is KB_ETYPE: llama.cpp's get_key refuses a key whose type is not the one
** it expects ("key ... has wrong type bool but expected type uint32"), and
** a bool block_count read as 1 would load one layer of a deeper model. */
static int read_int_at(const GgufFile *g, int vt, uint64_t off, int64_t *v)
{
    const uint8_t *p = g->map + off;
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; } x;
    memcpy(&x, p, (size_t)gguf_value_type_size(vt));
    switch (vt) {
    case GGUF_VT_UINT8: *v = x.u8; return KB_OK;
    case GGUF_VT_INT8: *v = x.i8; return KB_OK;
    case GGUF_VT_UINT16: *v = x.u16; return KB_OK;
    case GGUF_VT_INT16: *v = x.i16; return KB_OK;
    case GGUF_VT_UINT32: *v = x.u32; return KB_OK;
    case GGUF_VT_INT32: *v = x.i32; return KB_OK;
    case GGUF_VT_INT64: *v = x.i64; return KB_OK;
    case GGUF_VT_UINT64:
        if (x.u64 > (uint64_t)INT64_MAX) return KB_ERANGE;
        *v = (int64_t)x.u64;
        return KB_OK;
    default: return KB_ETYPE;
    }
}

/* Reads a FLOAT32/FLOAT64 value at byte off. */
static int read_float_at(const GgufFile *g, int vt, uint64_t off, double *v)
{
    if (vt == GGUF_VT_FLOAT32) {
        float f;
        memcpy(&f, g->map + off, 4);
        *v = f;
        return KB_OK;
    }
    if (vt == GGUF_VT_FLOAT64) {
        memcpy(v, g->map + off, 8);
        return KB_OK;
    }
    return KB_ETYPE;
}

/* Reads the string whose length field is at byte off (validated at open). */
static void read_str_at(const GgufFile *g, uint64_t off, const char **s, size_t *len)
{
    uint64_t n;
    memcpy(&n, g->map + off, 8);
    *s = (const char *)g->map + off + 8;
    *len = (size_t)n;
}

int gguf_kv_get_int(const GgufFile *g, int64_t i, int64_t *v)
{
    *v = 0;
    if (i < 0 || i >= g->n_kv) return KB_ENOTFOUND;
    if (gguf_value_type_size(g->kv[i].type) == 0 || g->kv[i].type == GGUF_VT_FLOAT32 ||
        g->kv[i].type == GGUF_VT_FLOAT64)
        return KB_ETYPE;
    return read_int_at(g, g->kv[i].type, g->kv[i].val_off, v);
}

int gguf_kv_get_float(const GgufFile *g, int64_t i, double *v)
{
    *v = 0;
    if (i < 0 || i >= g->n_kv) return KB_ENOTFOUND;
    return read_float_at(g, g->kv[i].type, g->kv[i].val_off, v);
}

int gguf_kv_get_bool(const GgufFile *g, int64_t i, bool *v)
{
    *v = false;
    if (i < 0 || i >= g->n_kv) return KB_ENOTFOUND;
    if (g->kv[i].type != GGUF_VT_BOOL) return KB_ETYPE;
    *v = g->map[g->kv[i].val_off] != 0;
    return KB_OK;
}

int gguf_kv_get_str(const GgufFile *g, int64_t i, const char **s, size_t *len)
{
    *s = NULL;
    *len = 0;
    if (i < 0 || i >= g->n_kv) return KB_ENOTFOUND;
    if (g->kv[i].type != GGUF_VT_STRING) return KB_ETYPE;
    read_str_at(g, g->kv[i].val_off, s, len);
    return KB_OK;
}

int gguf_kv_get_arr(const GgufFile *g, int64_t i, GgufValueType *elem_type, uint64_t *n)
{
    *elem_type = GGUF_VT_COUNT;
    *n = 0;
    if (i < 0 || i >= g->n_kv) return KB_ENOTFOUND;
    if (g->kv[i].type != GGUF_VT_ARRAY) return KB_ETYPE;
    *elem_type = g->kv[i].elem_type;
    *n = g->kv[i].n;
    return KB_OK;
}

/* Checks entry i is an array holding element j; returns KB_OK or the code. */
static int check_elem(const GgufFile *g, int64_t i, uint64_t j)
{
    if (i < 0 || i >= g->n_kv) return KB_ENOTFOUND;
    if (g->kv[i].type != GGUF_VT_ARRAY) return KB_ETYPE;
    if (j >= g->kv[i].n) return KB_ERANGE;
    return KB_OK;
}

int gguf_arr_get_int(const GgufFile *g, int64_t i, uint64_t j, int64_t *v)
{
    *v = 0;
    int rc = check_elem(g, i, j);
    if (rc != KB_OK) return rc;
    int et = g->kv[i].elem_type;
    if (gguf_value_type_size(et) == 0 || et == GGUF_VT_FLOAT32 || et == GGUF_VT_FLOAT64) return KB_ETYPE;
    return read_int_at(g, et, g->kv[i].val_off + j * gguf_value_type_size(et), v);
}

int gguf_arr_get_float(const GgufFile *g, int64_t i, uint64_t j, double *v)
{
    *v = 0;
    int rc = check_elem(g, i, j);
    if (rc != KB_OK) return rc;
    int et = g->kv[i].elem_type;
    if (et != GGUF_VT_FLOAT32 && et != GGUF_VT_FLOAT64) return KB_ETYPE;
    return read_float_at(g, et, g->kv[i].val_off + j * gguf_value_type_size(et), v);
}

int gguf_arr_get_str(const GgufFile *g, int64_t i, uint64_t j, const char **s, size_t *len)
{
    *s = NULL;
    *len = 0;
    int rc = check_elem(g, i, j);
    if (rc != KB_OK) return rc;
    if (g->kv[i].elem_type != GGUF_VT_STRING) return KB_ETYPE;
    read_str_at(g, g->kv[i].str_off[j], s, len);
    return KB_OK;
}

int gguf_kv_get_raw(const GgufFile *g, int64_t i, const void **data, uint64_t *len)
{
    *data = NULL;
    *len = 0;
    if (i < 0 || i >= g->n_kv) return KB_ENOTFOUND;
    const GgufKv *kv = &g->kv[i];
    uint64_t start = kv->val_off, end;
    if (kv->type == GGUF_VT_STRING) {
        const char *s;
        size_t n;
        read_str_at(g, kv->val_off, &s, &n);
        end = kv->val_off + 8 + n;
    } else if (kv->type != GGUF_VT_ARRAY) {
        end = kv->val_off + gguf_value_type_size(kv->type);
    } else {
        start = kv->val_off - 12; /* uint32 element type, uint64 count */
        end = kv->val_off + kv->n * gguf_value_type_size(kv->elem_type);
        if (kv->elem_type == GGUF_VT_STRING && kv->n > 0) {
            const char *s;
            size_t n;
            read_str_at(g, kv->str_off[kv->n - 1], &s, &n);
            end = kv->str_off[kv->n - 1] + 8 + n;
        }
    }
    *data = g->map + start;
    *len = end - start;
    return KB_OK;
}

/* --- lookups by key --- */

int gguf_get_int(const GgufFile *g, const char *key, int64_t *v)
{
    *v = 0;
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? KB_ENOTFOUND : gguf_kv_get_int(g, i, v);
}

int gguf_get_float(const GgufFile *g, const char *key, double *v)
{
    *v = 0;
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? KB_ENOTFOUND : gguf_kv_get_float(g, i, v);
}

int gguf_get_bool(const GgufFile *g, const char *key, bool *v)
{
    *v = false;
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? KB_ENOTFOUND : gguf_kv_get_bool(g, i, v);
}

int gguf_get_str(const GgufFile *g, const char *key, const char **s, size_t *len)
{
    *s = NULL;
    *len = 0;
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? KB_ENOTFOUND : gguf_kv_get_str(g, i, s, len);
}

/* --- tensors --- */

int64_t gguf_n_tensors(const GgufFile *g) { return g->n_tensors; }

const GgufTensor *gguf_tensor(const GgufFile *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const GgufTensor *gguf_find_tensor(const GgufFile *g, const char *name)
{
    GgufTensor probe = {.name = name};
    GgufTensor *pp = &probe;
    if (g->tensors_sorted == NULL) return NULL;
    GgufTensor **hit = bsearch(&pp, g->tensors_sorted, (size_t)g->n_tensors, sizeof *g->tensors_sorted,
                               cmp_tensor_name);
    return hit ? *hit : NULL;
}
