/*
** gguf_write.c: the streaming GGUF v3 writer (see gguf_write.h).
**
** States, in order; each function checks it is called in the right one:
**
**   META     after gguf_writer_open: key/values and tensor infos are added
**            to memory (the metadata as serialized bytes, the infos as an
**            array); nothing but the empty temporary file is on disk
**   DATA     after gguf_writer_write_header: the header is on disk; tensor
**            bytes stream through a stdio buffer, `cur` is the tensor being
**            written and `cur_done` its bytes so far
**   DONE     after gguf_writer_finish: the file has its final name
**   FAILED   after any error: only gguf_writer_close is accepted
**
** gguf_writer_close removes the temporary file in every state but DONE.
** Numbers are written little-endian by construction (byte by byte), so the
** output is right on any host.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"

#define GGUF_WRITE_VERSION 3
#define GGUF_NAME_MAX 63     /* ggml's GGML_MAX_NAME - 1 */
#define GGUF_KEY_MAX 65535   /* keys longer than this are surely mistakes */

enum { W_META, W_DATA, W_DONE, W_FAILED };

typedef struct WTensor {
    char name[GGUF_NAME_MAX + 1];
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    int type;
    uint64_t offset, size;
} WTensor;

struct GgufWriter {
    int state;
    char *path, *tmp_path;
    int keep_mode;           /* permissions of the file being replaced, or -1 */
    FILE *f;
    uint8_t *meta;           /* serialized key/values */
    size_t meta_len, meta_cap;
    int64_t n_kv;
    char **keys;             /* for the duplicate check */
    int64_t keys_cap;
    WTensor *t;
    int64_t n_t, t_cap;
    uint64_t alignment;
    bool align_seen;         /* a general.alignment key was added ... */
    int align_type;          /* ... with this value type */
    uint64_t align_value;    /* ... and, for integers, this value */
    uint64_t data_size;      /* of all tensors, padding included */
    int64_t cur;             /* DATA: the tensor being written */
    uint64_t cur_done;
    uint64_t written;
    char errmsg[512];
};

/* --- errors --- */

/* Records "path: message", enters FAILED, and returns rc. */
__attribute__((format(printf, 3, 4))) static int wfail(GgufWriter *w, int rc, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(w->errmsg, sizeof w->errmsg, "%s: %s", w->path, msg);
    w->state = W_FAILED;
    return rc;
}

/* Checks the writer is in state `want`; returns KB_OK or a KB_EINVAL that
** names what was attempted. */
static int check_state(GgufWriter *w, int want, const char *what)
{
    if (w->state == want) return KB_OK;
    if (w->state == W_FAILED) return KB_EINVAL; /* keep the first message */
    return wfail(w, KB_EINVAL, "%s: not allowed %s", what,
                 w->state == W_META ? "before the header is written" : "after the header is written");
}

const char *gguf_writer_errmsg(const GgufWriter *w)
{
    return w->errmsg;
}

/* --- open and close --- */

/* Builds "<dir>/.<base>.tmp-<pid>-<n>" for path. Returns NULL when out of
** memory. */
static char *temp_name(const char *path, unsigned n)
{
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path + 1) : 0;
    size_t cap = strlen(path) + 64;
    char *s = malloc(cap);
    if (s) snprintf(s, cap, "%.*s.%s.tmp-%ld-%u", (int)dir_len, path, path + dir_len, (long)getpid(), n);
    return s;
}

/* Creates a fresh temporary file next to the target (O_EXCL: never reuses a
** stranger's file), with the permissions a normal create would give. */
static int create_temp(GgufWriter *w)
{
    static atomic_uint counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        free(w->tmp_path);
        w->tmp_path = temp_name(w->path, atomic_fetch_add(&counter, 1));
        if (w->tmp_path == NULL) return wfail(w, KB_ENOMEM, "out of memory");
        int fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) {
            int e = errno;
            free(w->tmp_path);
            w->tmp_path = NULL;
            return wfail(w, KB_EIO, "cannot create a file in its directory: %s", strerror(e));
        }
        if (w->keep_mode >= 0) (void)fchmod(fd, (mode_t)w->keep_mode); /* best effort, as cp does */
        w->f = fdopen(fd, "wb");
        if (w->f == NULL) {
            close(fd);
            return wfail(w, KB_ENOMEM, "out of memory");
        }
        setvbuf(w->f, NULL, _IOFBF, 1 << 20);
        return KB_OK;
    }
    return wfail(w, KB_EIO, "cannot find a free temporary file name");
}

/* Decides the name to rename onto: the target itself, or for a symbolic
** link the file it points to (so the link keeps working). Refuses anything
** but a regular file or a new name: renaming over /dev/null or a FIFO would
** replace the device node, not write into it. */
static int resolve_target(GgufWriter *w)
{
    struct stat st;
    if (lstat(w->path, &st) != 0) return KB_OK; /* new file; a bad directory shows at create */
    if (S_ISLNK(st.st_mode)) {
        char *real = realpath(w->path, NULL);
        if (real == NULL) return wfail(w, KB_EIO, "cannot follow the symbolic link: %s", strerror(errno));
        free(w->path);
        w->path = real;
        if (stat(w->path, &st) != 0) return wfail(w, KB_EIO, "cannot stat: %s", strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return wfail(w, KB_EINVAL, "exists and is not a regular file: refusing to replace it");
    w->keep_mode = (int)(st.st_mode & 07777); /* the new file gets the old one's permissions */
    return KB_OK;
}

int gguf_writer_open(const char *path, GgufWriter **out, char *err, size_t errlen)
{
    *out = NULL;
    if (errlen > 0) err[0] = '\0';
    GgufWriter *w = calloc(1, sizeof *w);
    if (w == NULL || (w->path = strdup(path)) == NULL) {
        free(w);
        snprintf(err, errlen, "%s: out of memory", path);
        return KB_ENOMEM;
    }
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    w->keep_mode = -1;
    int rc = resolve_target(w);
    if (rc == KB_OK) rc = create_temp(w);
    if (rc != KB_OK) {
        snprintf(err, errlen, "%s", w->errmsg);
        gguf_writer_close(w);
        return rc;
    }
    *out = w;
    return KB_OK;
}

void gguf_writer_close(GgufWriter *w)
{
    if (w == NULL) return;
    if (w->f) fclose(w->f);
    if (w->tmp_path && w->state != W_DONE) unlink(w->tmp_path);
    for (int64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    free(w->meta);
    free(w->t);
    free(w->tmp_path);
    free(w->path);
    free(w);
}

/* --- metadata --- */

/* Makes room for n more metadata bytes. */
static int meta_reserve(GgufWriter *w, size_t n)
{
    if (n <= w->meta_cap - w->meta_len) return KB_OK;
    if (n > SIZE_MAX / 2 - w->meta_len) return wfail(w, KB_ERANGE, "metadata too large");
    size_t cap = w->meta_cap ? w->meta_cap : 4096;
    while (cap - w->meta_len < n) cap *= 2;
    uint8_t *p = realloc(w->meta, cap);
    if (p == NULL) return wfail(w, KB_ENOMEM, "out of memory for %zu bytes of metadata", cap);
    w->meta = p;
    w->meta_cap = cap;
    return KB_OK;
}

static int meta_put(GgufWriter *w, const void *p, size_t n)
{
    int rc = meta_reserve(w, n);
    if (rc == KB_OK && n > 0) {
        memcpy(w->meta + w->meta_len, p, n);
        w->meta_len += n;
    }
    return rc;
}

/* Appends v as `size` little-endian bytes. */
static int meta_put_le(GgufWriter *w, uint64_t v, int size)
{
    uint8_t b[8];
    for (int i = 0; i < size; i++) b[i] = (uint8_t)(v >> (8 * i));
    return meta_put(w, b, (size_t)size);
}

/* Appends a GGUF string: uint64 length, bytes. */
static int meta_put_str(GgufWriter *w, const char *s, size_t len)
{
    int rc = meta_put_le(w, len, 8);
    return rc == KB_OK ? meta_put(w, s, len) : rc;
}

/* Checks the key and starts an entry: key string and uint32 type. */
static int kv_begin(GgufWriter *w, const char *key, GgufValueType type)
{
    int rc = check_state(w, W_META, "adding metadata");
    if (rc != KB_OK) return rc;
    size_t len = strlen(key);
    if (len == 0 || len > GGUF_KEY_MAX) return wfail(w, KB_EINVAL, "metadata key of %zu bytes (expected 1..%d)", len, GGUF_KEY_MAX);
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return wfail(w, KB_EINVAL, "metadata key '%s' added twice", key);
    if (w->n_kv == w->keys_cap) {
        int64_t cap = w->keys_cap ? 2 * w->keys_cap : 64;
        char **k = realloc(w->keys, (size_t)cap * sizeof *k);
        if (k == NULL) return wfail(w, KB_ENOMEM, "out of memory");
        w->keys = k;
        w->keys_cap = cap;
    }
    if ((w->keys[w->n_kv] = strdup(key)) == NULL) return wfail(w, KB_ENOMEM, "out of memory");
    w->n_kv++;
    if (strcmp(key, "general.alignment") == 0) {
        w->align_seen = true;
        w->align_type = type;
    }
    rc = meta_put_str(w, key, len);
    return rc == KB_OK ? meta_put_le(w, (uint64_t)type, 4) : rc;
}

/* A fixed-size scalar given as its bits. */
static int kv_scalar(GgufWriter *w, const char *key, GgufValueType type, uint64_t bits)
{
    int rc = kv_begin(w, key, type);
    if (strcmp(key, "general.alignment") == 0) w->align_value = bits;
    return rc == KB_OK ? meta_put_le(w, bits, (int)gguf_value_type_size(type)) : rc;
}

int gguf_writer_kv_u8(GgufWriter *w, const char *key, uint8_t v) { return kv_scalar(w, key, GGUF_VT_UINT8, v); }
int gguf_writer_kv_i8(GgufWriter *w, const char *key, int8_t v) { return kv_scalar(w, key, GGUF_VT_INT8, (uint8_t)v); }
int gguf_writer_kv_u16(GgufWriter *w, const char *key, uint16_t v) { return kv_scalar(w, key, GGUF_VT_UINT16, v); }
int gguf_writer_kv_i16(GgufWriter *w, const char *key, int16_t v) { return kv_scalar(w, key, GGUF_VT_INT16, (uint16_t)v); }
int gguf_writer_kv_u32(GgufWriter *w, const char *key, uint32_t v) { return kv_scalar(w, key, GGUF_VT_UINT32, v); }
int gguf_writer_kv_i32(GgufWriter *w, const char *key, int32_t v) { return kv_scalar(w, key, GGUF_VT_INT32, (uint32_t)v); }
int gguf_writer_kv_u64(GgufWriter *w, const char *key, uint64_t v) { return kv_scalar(w, key, GGUF_VT_UINT64, v); }
int gguf_writer_kv_i64(GgufWriter *w, const char *key, int64_t v) { return kv_scalar(w, key, GGUF_VT_INT64, (uint64_t)v); }
int gguf_writer_kv_bool(GgufWriter *w, const char *key, bool v) { return kv_scalar(w, key, GGUF_VT_BOOL, v ? 1 : 0); }

int gguf_writer_kv_f32(GgufWriter *w, const char *key, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return kv_scalar(w, key, GGUF_VT_FLOAT32, bits);
}

int gguf_writer_kv_f64(GgufWriter *w, const char *key, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return kv_scalar(w, key, GGUF_VT_FLOAT64, bits);
}

int gguf_writer_kv_str(GgufWriter *w, const char *key, const char *s, size_t len)
{
    int rc = kv_begin(w, key, GGUF_VT_STRING);
    /* gguf_open refuses a NUL inside a string (llama.cpp would cut it there);
    ** the failed writer leaves no file */
    if (rc == KB_OK && len > 0 && memchr(s, 0, len) != NULL)
        return wfail(w, KB_EINVAL, "%s: the string holds a NUL byte", key);
    return rc == KB_OK ? meta_put_str(w, s, len) : rc;
}

int gguf_writer_kv_arr(GgufWriter *w, const char *key, GgufValueType elem_type, const void *data, uint64_t n)
{
    uint64_t sz = gguf_value_type_size(elem_type);
    if (sz == 0) return wfail(w, KB_EINVAL, "%s: array element type %d is not a fixed-size type", key, (int)elem_type);
    if (n > SIZE_MAX / sz) return wfail(w, KB_ERANGE, "%s: array of %llu values is too large", key, (unsigned long long)n);
    int rc = kv_begin(w, key, GGUF_VT_ARRAY);
    if (rc == KB_OK) rc = meta_put_le(w, (uint64_t)elem_type, 4);
    if (rc == KB_OK) rc = meta_put_le(w, n, 8);
    if (rc == KB_OK) rc = meta_put(w, data, (size_t)(n * sz));
    return rc;
}

int gguf_writer_kv_arr_str(GgufWriter *w, const char *key, const char *const *s, uint64_t n)
{
    int rc = kv_begin(w, key, GGUF_VT_ARRAY);
    if (rc == KB_OK) rc = meta_put_le(w, GGUF_VT_STRING, 4);
    if (rc == KB_OK) rc = meta_put_le(w, n, 8);
    for (uint64_t j = 0; j < n && rc == KB_OK; j++) rc = meta_put_str(w, s[j], strlen(s[j]));
    return rc;
}

int gguf_writer_copy_kv(GgufWriter *w, const GgufFile *g, int64_t i)
{
    const void *raw;
    uint64_t len;
    const char *key = gguf_kv_key(g, i);
    if (key == NULL || gguf_kv_get_raw(g, i, &raw, &len) != KB_OK)
        return wfail(w, KB_EINVAL, "metadata entry %lld does not exist", (long long)i);
    int rc = kv_begin(w, key, gguf_kv_type(g, i));
    int64_t v;
    if (strcmp(key, "general.alignment") == 0 && gguf_kv_get_int(g, i, &v) == KB_OK) w->align_value = (uint64_t)v;
    return rc == KB_OK ? meta_put(w, raw, (size_t)len) : rc;
}

int64_t gguf_writer_n_kv(const GgufWriter *w)
{
    return w->n_kv;
}

/* --- tensors --- */

/* Checks name, dims and type of a new tensor; fills t's shape fields and
** its byte size. */
static int tensor_check(GgufWriter *w, WTensor *t, const char *name, int n_dims, const int64_t *ne, int type)
{
    size_t len = strlen(name);
    if (len == 0 || len > GGUF_NAME_MAX) return wfail(w, KB_EINVAL, "tensor name '%s' has %zu bytes (expected 1..%d)", name, len, GGUF_NAME_MAX);
    memcpy(t->name, name, len + 1);
    const KbTypeInfo *ti = kb_type_info(type);
    if (ti == NULL) return wfail(w, KB_EINVAL, "tensor '%s': unknown type id %d", name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return wfail(w, KB_EINVAL, "tensor '%s': %d dims (expected 1..4)", name, n_dims);
    uint64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        if (t->ne[d] <= 0) return wfail(w, KB_EINVAL, "tensor '%s': ne[%d] = %lld (expected > 0)", name, d, (long long)t->ne[d]);
        if ((uint64_t)t->ne[d] > (uint64_t)INT64_MAX / n) return wfail(w, KB_ERANGE, "tensor '%s': element count overflows", name);
        n *= (uint64_t)t->ne[d];
    }
    if (t->ne[0] % ti->block_size != 0)
        return wfail(w, KB_EINVAL, "tensor '%s': ne[0] = %lld is not a multiple of %s's block size %d", name,
                     (long long)t->ne[0], ti->name, ti->block_size);
    t->n_dims = n_dims;
    t->type = type;
    t->size = n / (uint64_t)ti->block_size * (uint64_t)ti->type_size;
    return KB_OK;
}

int gguf_writer_add_tensor(GgufWriter *w, const char *name, int n_dims, const int64_t *ne, int type)
{
    int rc = check_state(w, W_META, "adding a tensor");
    if (rc != KB_OK) return rc;
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return wfail(w, KB_EINVAL, "tensor '%s' added twice", name);
    if (w->n_t == w->t_cap) {
        int64_t cap = w->t_cap ? 2 * w->t_cap : 256;
        WTensor *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (p == NULL) return wfail(w, KB_ENOMEM, "out of memory");
        w->t = p;
        w->t_cap = cap;
    }
    WTensor *t = &w->t[w->n_t];
    if ((rc = tensor_check(w, t, name, n_dims, ne, type)) != KB_OK) return rc;
    w->n_t++;
    return KB_OK;
}

uint64_t gguf_writer_tensor_size(const GgufWriter *w, int64_t i)
{
    return i >= 0 && i < w->n_t ? w->t[i].size : 0;
}

/* --- writing --- */

static int file_write(GgufWriter *w, const void *p, size_t n)
{
    if (n > 0 && fwrite(p, 1, n, w->f) != n) return wfail(w, KB_EIO, "write failed: %s", strerror(errno));
    w->written += n;
    return KB_OK;
}

static int file_zeros(GgufWriter *w, uint64_t n)
{
    static const uint8_t zeros[256];
    int rc = KB_OK;
    while (n > 0 && rc == KB_OK) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        rc = file_write(w, zeros, k);
        n -= k;
    }
    return rc;
}

/* Appends v as `size` little-endian bytes to the file. */
static int file_le(GgufWriter *w, uint64_t v, int size)
{
    uint8_t b[8];
    for (int i = 0; i < size; i++) b[i] = (uint8_t)(v >> (8 * i));
    return file_write(w, b, (size_t)size);
}

static uint64_t pad_to(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

/* Takes the alignment from a general.alignment key, when one was added:
** it must be a uint32 power of two, as readers require. */
static int find_alignment(GgufWriter *w)
{
    if (!w->align_seen) return KB_OK;
    uint64_t a = w->align_value;
    if (w->align_type != GGUF_VT_UINT32 || a == 0 || (a & (a - 1)) != 0)
        return wfail(w, KB_EINVAL, "general.alignment must be a uint32 power of two");
    w->alignment = a;
    return KB_OK;
}

/* Assigns aligned offsets in order; fails when the total overflows. */
static int assign_offsets(GgufWriter *w)
{
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        uint64_t padded = pad_to(w->t[i].size, w->alignment);
        if (padded < w->t[i].size || off > UINT64_MAX - padded) return wfail(w, KB_ERANGE, "tensor data exceeds 2^64 bytes");
        off += padded;
    }
    w->data_size = off;
    return KB_OK;
}

static int write_tensor_info(GgufWriter *w, const WTensor *t)
{
    size_t len = strlen(t->name);
    int rc = file_le(w, len, 8);
    if (rc == KB_OK) rc = file_write(w, t->name, len);
    if (rc == KB_OK) rc = file_le(w, (uint64_t)t->n_dims, 4);
    for (int d = 0; d < t->n_dims && rc == KB_OK; d++) rc = file_le(w, (uint64_t)t->ne[d], 8);
    if (rc == KB_OK) rc = file_le(w, (uint64_t)t->type, 4);
    if (rc == KB_OK) rc = file_le(w, t->offset, 8);
    return rc;
}

int gguf_writer_write_header(GgufWriter *w)
{
    int rc = check_state(w, W_META, "writing the header");
    if (rc == KB_OK) rc = find_alignment(w);
    if (rc == KB_OK) rc = assign_offsets(w);
    if (rc == KB_OK) rc = file_write(w, "GGUF", 4);
    if (rc == KB_OK) rc = file_le(w, GGUF_WRITE_VERSION, 4);
    if (rc == KB_OK) rc = file_le(w, (uint64_t)w->n_t, 8);
    if (rc == KB_OK) rc = file_le(w, (uint64_t)w->n_kv, 8);
    if (rc == KB_OK) rc = file_write(w, w->meta, w->meta_len);
    for (int64_t i = 0; i < w->n_t && rc == KB_OK; i++) rc = write_tensor_info(w, &w->t[i]);
    if (rc == KB_OK) rc = file_zeros(w, pad_to(w->written, w->alignment) - w->written);
    if (rc != KB_OK) return rc;
    free(w->meta); /* not needed any more: a big vocabulary can be megabytes */
    w->meta = NULL;
    w->meta_len = w->meta_cap = 0;
    w->state = W_DATA;
    w->cur = 0;
    w->cur_done = 0;
    return KB_OK;
}

/* Moves past tensors whose data is complete, writing their padding. */
static int advance_tensors(GgufWriter *w)
{
    int rc = KB_OK;
    while (rc == KB_OK && w->cur < w->n_t && w->cur_done == w->t[w->cur].size) {
        rc = file_zeros(w, pad_to(w->t[w->cur].size, w->alignment) - w->t[w->cur].size);
        w->cur++;
        w->cur_done = 0;
    }
    return rc;
}

int gguf_writer_write_data(GgufWriter *w, const void *data, size_t len)
{
    int rc = check_state(w, W_DATA, "writing tensor data");
    const uint8_t *p = data;
    if (rc == KB_OK) rc = advance_tensors(w);
    while (rc == KB_OK && len > 0) {
        if (w->cur >= w->n_t) return wfail(w, KB_EINVAL, "%zu bytes of tensor data past the last tensor", len);
        uint64_t room = w->t[w->cur].size - w->cur_done;
        size_t k = len < room ? len : (size_t)room;
        rc = file_write(w, p, k);
        p += k;
        len -= k;
        w->cur_done += k;
        if (rc == KB_OK) rc = advance_tensors(w);
    }
    return rc;
}

int gguf_writer_finish(GgufWriter *w)
{
    int rc = check_state(w, W_DATA, "finishing");
    if (rc == KB_OK) rc = advance_tensors(w);
    if (rc != KB_OK) return rc;
    if (w->cur < w->n_t)
        return wfail(w, KB_EINVAL, "tensor '%s' has %llu of its %llu bytes", w->t[w->cur].name,
                     (unsigned long long)w->cur_done, (unsigned long long)w->t[w->cur].size);
    /* No fsync: the rename only has to keep a half file from ever carrying
    ** the target's name, not to survive a power cut; syncing gigabytes would
    ** double the time of a quantization. */
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) return wfail(w, KB_EIO, "write failed: %s", strerror(errno));
    if (rename(w->tmp_path, w->path) != 0) return wfail(w, KB_EIO, "cannot rename %s into place: %s", w->tmp_path, strerror(errno));
    w->state = W_DONE;
    return KB_OK;
}

uint64_t gguf_writer_bytes_written(const GgufWriter *w)
{
    return w->written;
}
