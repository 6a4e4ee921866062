/*
** ggml_file.c: the validating reader of chatglm.cpp's GGML files (layout and
** guarantees in ggml_file.h).
**
** The file is mapped read-only and parsed in file order, each field checked
** before it is used, as chatglm.cpp's ModelLoader reads it but without
** trusting anything:
**
**   header      magic "ggml" (old llama.cpp "lmgg"/"fmgg"/"tjgg" files are
**               named and refused); model type 1..4; config version 1 or 2
**               (GLM-4: 2); the whole record inside the file
**   config      every size positive and bounded (vocabulary 2^24, hidden
**               2^16, layers 2^12, ffn 2^20, context 2^24); hidden a
**               multiple of the heads with an even head size; heads a
**               multiple of the KV heads; norm_eps in (0, 1); rope_theta
**               positive; weight type one ggml knows; the embedding and
**               one hidden x hidden matrix per layer fit in the file at a
**               bit per weight (so a hostile size cannot size allocations)
**   tokenizer   its length not negative and inside the file
**   tensors     until the end of the file: name 1..255 bytes without NUL,
**               unique; 1..4 dims each > 0; element count and byte size
**               overflow-checked by division; a known type with ne[0] a
**               multiple of its block size; data at the next 16-byte offset
**               and wholly inside the file; no stray bytes at the end
**
** Nothing in the tensor data is read.
*/
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/file_map.h"
#include "engine/ggml_file.h"

#define GGML_MAGIC "ggml"

struct GgmlFile {
    const uint8_t *map;
    uint64_t size;
    GgmlConfig cfg;
    uint64_t tok_off, tok_len;  /* the embedded tokenizer */
    int64_t n_tensors, cap;
    GgufTensor *tensors;
    GgufTensor **sorted;        /* by name, for lookup */
    char **names;               /* per tensor, malloc'd NUL-terminated copies */
};

/* Parsing state: a cursor over the mapping (with where errors go) and the
** handle being filled. */
typedef struct GgmlReader {
    FileCursor c;
    GgmlFile *f;
} GgmlReader;

/* --- cursor reads --- */

/* Reads the int32 at the cursor into *out (0 when cut short) and advances;
** what names the field for the truncation message. */
static int gr_read4(GgmlReader *r, int32_t *out, const char *what)
{
    *out = 0;
    return fc_read(&r->c, out, 4, what);
}

/* --- header and config --- */

const char *ggml_file_model_name(int model_type)
{
    switch (model_type) {
    case GGML_MODEL_CHATGLM: return "ChatGLM-6B";
    case GGML_MODEL_CHATGLM2: return "ChatGLM2-6B";
    case GGML_MODEL_CHATGLM3: return "ChatGLM3-6B";
    case GGML_MODEL_GLM4: return "GLM-4";
    default: return "unknown";
    }
}

/* Checks the magic, naming the old llama.cpp formats that share the word
** (they wrote it as a little-endian uint32, so its bytes come reversed). */
static int gr_magic(GgmlReader *r)
{
    char q[64];
    if (r->f->size < 4) return fc_fail(&r->c, KB_EFORMAT, "not a GGML file (%llu bytes, too short)", (unsigned long long)r->f->size);
    const uint8_t *m = r->f->map;
    r->c.pos = 4;
    if (memcmp(m, GGML_MAGIC, 4) == 0) return KB_OK;
    if (memcmp(m, "lmgg", 4) == 0 || memcmp(m, "fmgg", 4) == 0 || memcmp(m, "tjgg", 4) == 0) {
        return fc_fail(&r->c, KB_EUNSUPPORTED,
                       "an old llama.cpp GGML/GGMF/GGJT file: convert it to GGUF with a current llama.cpp");
    }
    return fc_fail(&r->c, KB_EFORMAT, "not a chatglm.cpp GGML file: magic is %s, expected 'ggml'", fc_quote(q, sizeof q, m, 4));
}

/* Reads n int32 fields of the config record into v. */
static int gr_fields(GgmlReader *r, int32_t *v, int n)
{
    int rc = KB_OK;
    for (int i = 0; i < n && rc == KB_OK; i++) rc = gr_read4(r, &v[i], "the config record");
    return rc;
}

/* Fills cfg from a version 1 record (11 fields, 12 with the KV heads). */
static void gr_config_v1(GgmlConfig *c, const int32_t *v, bool gqa)
{
    c->dtype = v[0];
    c->n_vocab = v[1], c->n_embd = v[2], c->n_head = v[3], c->n_layer = v[4], c->n_ff = v[5], c->n_ctx = v[6];
    c->bos = v[7], c->eos = v[8], c->pad = v[9], c->sep = v[10];
    c->n_head_kv = gqa ? v[11] : v[3];
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
}

/* Fills cfg from a version 2 record (13 fields, two of them floats). */
static void gr_config_v2(GgmlConfig *c, const int32_t *v)
{
    c->dtype = v[0];
    c->n_vocab = v[1], c->n_embd = v[2], c->n_head = v[3], c->n_head_kv = v[4], c->n_layer = v[5], c->n_ff = v[6];
    memcpy(&c->norm_eps, &v[7], 4);
    c->n_virtual_tokens = v[8];
    memcpy(&c->rope_theta, &v[9], 4);
    c->n_ctx = v[10], c->eos = v[11], c->pad = v[12];
    c->bos = c->sep = -1;
}

/* One bounded field: value in [lo, hi], else a message naming it. */
static int gr_range(GgmlReader *r, const char *name, int64_t v, int64_t lo, int64_t hi)
{
    if (v >= lo && v <= hi) return KB_OK;
    return fc_fail(&r->c, KB_EFORMAT, "config %s is %lld, expected %lld..%lld", name, (long long)v, (long long)lo, (long long)hi);
}

/* Checks every hyperparameter before anything is sized from it. */
static int gr_check_config(GgmlReader *r, const GgmlConfig *c)
{
    const KbTypeInfo *ti = kb_type_info(c->dtype);
    int rc = ti ? KB_OK : fc_fail(&r->c, KB_EFORMAT, "config weight type is %d, which ggml does not know", c->dtype);
    if (rc == KB_OK) rc = gr_range(r, "vocab_size", c->n_vocab, 1, 1 << 24);
    if (rc == KB_OK) rc = gr_range(r, "hidden_size", c->n_embd, 1, 1 << 16);
    if (rc == KB_OK) rc = gr_range(r, "num_attention_heads", c->n_head, 1, c->n_embd);
    if (rc == KB_OK) rc = gr_range(r, "num_kv_heads", c->n_head_kv, 1, c->n_head);
    if (rc == KB_OK) rc = gr_range(r, "num_hidden_layers", c->n_layer, 1, 1 << 12);
    if (rc == KB_OK) rc = gr_range(r, "intermediate_size", c->n_ff, 1, 1 << 20);
    if (rc == KB_OK) rc = gr_range(r, "max_length", c->n_ctx, 1, 1 << 24);
    if (rc == KB_OK) rc = gr_range(r, "num_virtual_tokens", c->n_virtual_tokens, 0, c->n_ctx);
    if (rc == KB_OK && (c->n_embd % c->n_head != 0 || (c->n_embd / c->n_head) % 2 != 0 || c->n_head % c->n_head_kv != 0)) {
        return fc_fail(&r->c, KB_EFORMAT,
                       "config hidden_size %lld, num_attention_heads %lld and num_kv_heads %lld do not divide into "
                       "heads of an even size", (long long)c->n_embd, (long long)c->n_head, (long long)c->n_head_kv);
    }
    /* at a bit per weight at least, the embedding and every layer's output
    ** projection must fit in the file: a hostile size never sizes anything */
    double size_bits = 8.0 * (double)r->f->size, embd = (double)c->n_embd;
    if (rc == KB_OK && ((double)c->n_vocab * embd > size_bits || (double)c->n_layer * embd * embd > size_bits)) {
        return fc_fail(&r->c, KB_EFORMAT,
                       "config vocab_size %lld, hidden_size %lld and %lld layers describe more weights than the file's "
                       "%llu bytes can hold", (long long)c->n_vocab, (long long)c->n_embd, (long long)c->n_layer,
                       (unsigned long long)r->f->size);
    }
    if (rc == KB_OK && !(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return fc_fail(&r->c, KB_EFORMAT, "config norm_eps is %g, expected a number in (0, 1)", (double)c->norm_eps);
    if (rc == KB_OK && !(c->rope_theta > 0.0f && isfinite(c->rope_theta)))
        return fc_fail(&r->c, KB_EFORMAT, "config rope_theta is %g, expected a positive number", (double)c->rope_theta);
    return rc;
}

/* Reads model type, version and the config record. */
static int gr_header(GgmlReader *r)
{
    GgmlConfig *c = &r->f->cfg;
    int32_t type, version, v[13];
    int rc = gr_magic(r);
    if (rc == KB_OK) rc = gr_read4(r, &type, "the model type");
    if (rc == KB_OK) rc = gr_read4(r, &version, "the version");
    if (rc != KB_OK) return rc;
    if (type == 1024 || type == 1025 || type == 1280) {
        return fc_fail(&r->c, KB_EUNSUPPORTED, "a chatglm.cpp %s model: kbchat runs ChatGLM files only",
                       type == 1280 ? "InternLM" : "Baichuan");
    }
    if (type < GGML_MODEL_CHATGLM || type > GGML_MODEL_GLM4)
        return fc_fail(&r->c, KB_EUNSUPPORTED, "model type %d is not ChatGLM (1), ChatGLM2 (2), ChatGLM3 (3) or GLM-4 (4)", type);
    if (version != 1 && version != 2)
        return fc_fail(&r->c, KB_EUNSUPPORTED, "config version %d is not supported (expected 1 or 2)", version);
    if (type == GGML_MODEL_GLM4 && version != 2)
        return fc_fail(&r->c, KB_EFORMAT, "a GLM-4 file must have config version 2, not %d", version);
    c->model_type = type;
    c->version = version;
    bool gqa = type != GGML_MODEL_CHATGLM;
    rc = gr_fields(r, v, version == 2 ? 13 : gqa ? 12 : 11);
    if (rc != KB_OK) return rc;
    if (version == 2) gr_config_v2(c, v);
    else gr_config_v1(c, v, gqa);
    return gr_check_config(r, c);
}

/* Reads the tokenizer's length and checks its bytes lie inside the file. */
static int gr_tokenizer(GgmlReader *r)
{
    int32_t len;
    int rc = gr_read4(r, &len, "the tokenizer size");
    if (rc != KB_OK) return rc;
    if (len < 0 || (uint64_t)len > r->f->size - r->c.pos) {
        return fc_fail(&r->c, KB_EFORMAT, "the tokenizer at byte %llu has %d bytes but only %llu remain in the file",
                       (unsigned long long)r->c.pos, len, (unsigned long long)(r->f->size - r->c.pos));
    }
    r->f->tok_off = r->c.pos;
    r->f->tok_len = (uint64_t)len;
    r->c.pos += (uint64_t)len;
    return KB_OK;
}

/* --- tensors --- */

/* Grows the tensor arrays by one slot. */
static int gr_grow(GgmlReader *r)
{
    GgmlFile *f = r->f;
    if (f->n_tensors < f->cap) return KB_OK;
    if (f->cap >= GGUF_MAX_TENSORS) return fc_fail(&r->c, KB_EFORMAT, "more than %d tensors", GGUF_MAX_TENSORS);
    int64_t cap = f->cap ? 2 * f->cap : 64;
    GgufTensor *t = realloc(f->tensors, (size_t)cap * sizeof *t);
    if (t != NULL) f->tensors = t;
    char **names = t ? realloc(f->names, (size_t)cap * sizeof *names) : NULL;
    if (names == NULL) return fc_fail(&r->c, KB_ENOMEM, "out of memory reading tensor %lld", (long long)f->n_tensors);
    f->names = names;
    f->cap = cap;
    return KB_OK;
}

/* Reads the name of tensor i (length, bytes) into a malloc'd copy. */
static int gr_tensor_name(GgmlReader *r, int64_t i)
{
    GgmlFile *f = r->f;
    int32_t len;
    char q[320];
    int rc = gr_read4(r, &len, "a tensor name length");
    if (rc != KB_OK) return rc;
    if (len < 1 || len >= GGML_FILE_MAX_NAME) {
        return fc_fail(&r->c, KB_EFORMAT, "tensor %lld at byte %llu has a name of %d bytes, expected 1..%d", (long long)i,
                       (unsigned long long)(r->c.pos - 4), len, GGML_FILE_MAX_NAME - 1);
    }
    if ((uint64_t)len > f->size - r->c.pos)
        return fc_fail(&r->c, KB_EFORMAT, "file ends inside the name of tensor %lld (truncated download?)", (long long)i);
    const uint8_t *s = f->map + r->c.pos;
    if (memchr(s, 0, (size_t)len) != NULL)
        return fc_fail(&r->c, KB_EFORMAT, "tensor name %s contains a NUL byte", fc_quote(q, sizeof q, s, (uint64_t)len));
    char *name = malloc((size_t)len + 1);
    if (name == NULL) return fc_fail(&r->c, KB_ENOMEM, "out of memory");
    memcpy(name, s, (size_t)len);
    name[len] = '\0';
    f->names[i] = name;
    f->tensors[i].name = name;
    r->c.pos += (uint64_t)len;
    return KB_OK;
}

/* Reads the dims (outermost first) and type of tensor t, checking the
** element count and byte size by division. */
static int gr_tensor_shape(GgmlReader *r, GgufTensor *t)
{
    int32_t n_dims, type, d;
    int rc = gr_read4(r, &n_dims, "a tensor's dimension count");
    if (rc != KB_OK) return rc;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return fc_fail(&r->c, KB_EFORMAT, "tensor '%s' has %d dimensions, expected 1..%d", t->name, n_dims, GGUF_MAX_DIMS);
    t->n_dims = n_dims;
    for (int j = 0; j < GGUF_MAX_DIMS; j++) t->ne[j] = 1;
    uint64_t n = 1;
    for (int j = n_dims - 1; j >= 0 && rc == KB_OK; j--) {
        rc = gr_read4(r, &d, "a tensor dimension");
        if (rc == KB_OK && d < 1) return fc_fail(&r->c, KB_EFORMAT, "tensor '%s' has dimension %d, expected > 0", t->name, d);
        if (rc == KB_OK && (uint64_t)d > (uint64_t)INT64_MAX / n)
            return fc_fail(&r->c, KB_EFORMAT, "tensor '%s' has more elements than fit in 64 bits", t->name);
        t->ne[j] = d;
        n *= (uint64_t)(rc == KB_OK ? d : 1);
    }
    if (rc == KB_OK) rc = gr_read4(r, &type, "a tensor type");
    if (rc != KB_OK) return rc;
    const KbTypeInfo *ti = kb_type_info(type);
    if (ti == NULL) return fc_fail(&r->c, KB_EFORMAT, "tensor '%s' has type %d, which ggml does not know", t->name, type);
    if (t->ne[0] % ti->block_size != 0) {
        return fc_fail(&r->c, KB_EFORMAT, "tensor '%s' rows of %lld %s values are not whole blocks of %d", t->name,
                       (long long)t->ne[0], ti->name, ti->block_size);
    }
    uint64_t blocks = n / (uint64_t)ti->block_size;
    if (blocks > UINT64_MAX / (uint64_t)ti->type_size)
        return fc_fail(&r->c, KB_EFORMAT, "tensor '%s' has a byte size that does not fit in 64 bits", t->name);
    t->type = type;
    t->n_elements = n;
    t->n_bytes = blocks * (uint64_t)ti->type_size;
    return KB_OK;
}

/* Reads tensor i's header and places its data at the next aligned offset. */
static int gr_tensor(GgmlReader *r, int64_t i)
{
    GgmlFile *f = r->f;
    int rc = gr_grow(r);
    if (rc != KB_OK) return rc;
    GgufTensor *t = &f->tensors[i];
    memset(t, 0, sizeof *t);
    f->names[i] = NULL;
    f->n_tensors = i + 1; /* so close frees a partial name */
    rc = gr_tensor_name(r, i);
    if (rc == KB_OK) rc = gr_tensor_shape(r, t);
    if (rc != KB_OK) return rc;
    uint64_t off = (r->c.pos + GGML_FILE_ALIGN - 1) / GGML_FILE_ALIGN * GGML_FILE_ALIGN;
    if (off > f->size || t->n_bytes > f->size - off) {
        return fc_fail(&r->c, KB_EFORMAT,
                       "tensor '%s' data (%llu bytes from byte %llu) ends past the end of the file at byte %llu "
                       "(truncated download?)",
                       t->name, (unsigned long long)t->n_bytes, (unsigned long long)off, (unsigned long long)f->size);
    }
    t->offset = off;
    t->data = f->map + off;
    r->c.pos = off + t->n_bytes;
    return KB_OK;
}

static int gr_cmp_name(const void *a, const void *b)
{
    return strcmp((*(GgufTensor *const *)a)->name, (*(GgufTensor *const *)b)->name);
}

/* Sorts the tensors by name for lookup and refuses duplicates. */
static int gr_index(GgmlReader *r)
{
    GgmlFile *f = r->f;
    f->sorted = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *f->sorted);
    if (f->sorted == NULL) return fc_fail(&r->c, KB_ENOMEM, "out of memory");
    for (int64_t i = 0; i < f->n_tensors; i++) f->sorted[i] = &f->tensors[i];
    qsort(f->sorted, (size_t)f->n_tensors, sizeof *f->sorted, gr_cmp_name);
    for (int64_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->sorted[i - 1]->name, f->sorted[i]->name) == 0)
            return fc_fail(&r->c, KB_EFORMAT, "tensor '%s' appears twice", f->sorted[i]->name);
    return KB_OK;
}

/* Reads tensors until the end of the file. */
static int gr_tensors(GgmlReader *r)
{
    int rc = KB_OK;
    for (int64_t i = 0; r->c.pos < r->f->size && rc == KB_OK; i++) rc = gr_tensor(r, i);
    if (rc == KB_OK) rc = gr_index(r);
    return rc;
}

/* --- open / close --- */

bool ggml_file_probe(const char *path)
{
    char magic[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return false;
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && read(fd, magic, 4) == 4 && memcmp(magic, GGML_MAGIC, 4) == 0;
    close(fd);
    return ok;
}

int ggml_file_open(const char *path, GgmlFile **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    GgmlFile *f = calloc(1, sizeof *f);
    GgmlReader r = {{NULL, 0, 0, path, err, errlen}, f};
    if (f == NULL) {
        if (err && errlen) snprintf(err, errlen, "%s: out of memory", path);
        return KB_ENOMEM;
    }
    int rc = fc_map(&r.c, "GGML");
    f->map = r.c.map;
    f->size = r.c.size;
    if (rc == KB_OK) rc = gr_header(&r);
    if (rc == KB_OK) rc = gr_tokenizer(&r);
    if (rc == KB_OK) rc = gr_tensors(&r);
    if (rc != KB_OK) {
        ggml_file_close(f);
        return rc;
    }
    *out = f;
    return KB_OK;
}

void ggml_file_close(GgmlFile *f)
{
    if (f == NULL) return;
    fc_unmap(f->map, f->size);
    for (int64_t i = 0; f->names && i < f->n_tensors; i++) free(f->names[i]);
    free(f->names);
    free(f->tensors);
    free(f->sorted);
    free(f);
}

/* --- accessors --- */

uint64_t ggml_file_size(const GgmlFile *f) { return f->size; }
const GgmlConfig *ggml_file_config(const GgmlFile *f) { return &f->cfg; }
int64_t ggml_file_n_tensors(const GgmlFile *f) { return f->n_tensors; }

const uint8_t *ggml_file_tokenizer_data(const GgmlFile *f, size_t *len)
{
    *len = (size_t)f->tok_len;
    return f->map + f->tok_off;
}

const GgufTensor *ggml_file_tensor(const GgmlFile *f, int64_t i)
{
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const GgufTensor *ggml_file_find_tensor(const GgmlFile *f, const char *name)
{
    int64_t lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->sorted[mid]->name, name);
        if (c == 0) return f->sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}
