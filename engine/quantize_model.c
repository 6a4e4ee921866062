/*
** quantize_model.c: quantizing rows on worker threads, and whole GGUF files.
**
** KbQuantizer owns a thread pool and one row of floats per thread. A call to
** kb_quantizer_rows splits its rows among the workers by index; each worker
** asks the row source for a row, checks it is finite, converts it into the
** destination and checks the block scales. Errors are collected per thread
** and the one at the lowest row is reported, so the message does not depend
** on scheduling.
**
** kb_model_quantize streams: tensors are converted a chunk of rows at a
** time (QUANT_CHUNK bytes of output) and the chunk written before the next
** is made, so memory stays at a few megabytes whatever the model size; the
** input is read through its mapping.
*/
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/pool.h"

#define QUANT_CHUNK (8u << 20) /* output bytes per chunk */

/* --- the threaded row quantizer --- */

enum { ROW_OK, ROW_SOURCE, ROW_NONFINITE, ROW_SCALE };

/* What went wrong on one thread (the first failure of its rows). */
typedef struct RowError {
    int kind;       /* ROW_* */
    int rc;
    int64_t row, col;
    float value;
} RowError;

struct KbQuantizer {
    Pool *pool;
    int n_threads;
    float **buf;          /* one row per thread */
    int64_t buf_len;
    RowError *errs;       /* one per thread */
    /* the current job */
    int type;
    KbFromFloat fn;
    KbRowSource src;
    void *user;
    int64_t row0, nrows, n_per_row;
    uint64_t row_size;
    uint8_t *dst;
    uint8_t *chunk;       /* kb_quantizer_write_tensor's output buffer */
    size_t chunk_cap;
    char errmsg[512];
};

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 && n <= 1024 ? (int)n : 1;
}

int kb_quantizer_new(int n_threads, KbQuantizer **out)
{
    *out = NULL;
    KbQuantizer *q = calloc(1, sizeof *q);
    if (q == NULL) return KB_ENOMEM;
    q->n_threads = n_threads > 0 ? n_threads : online_cores();
    q->buf = calloc((size_t)q->n_threads, sizeof *q->buf);
    q->errs = calloc((size_t)q->n_threads, sizeof *q->errs);
    int rc = q->buf && q->errs ? pool_new(q->n_threads, &q->pool) : KB_ENOMEM;
    if (rc != KB_OK) {
        kb_quantizer_free(q);
        return rc;
    }
    *out = q;
    return KB_OK;
}

void kb_quantizer_free(KbQuantizer *q)
{
    if (q == NULL) return;
    pool_free(q->pool);
    for (int i = 0; q->buf && i < q->n_threads; i++) free(q->buf[i]);
    free(q->buf);
    free(q->errs);
    free(q->chunk);
    free(q);
}

int kb_quantizer_threads(const KbQuantizer *q)
{
    return q->n_threads;
}

const char *kb_quantizer_errmsg(const KbQuantizer *q)
{
    return q->errmsg;
}

/* Gives every thread a row buffer of at least n floats. */
static int ensure_buffers(KbQuantizer *q, int64_t n)
{
    if (n <= q->buf_len) return KB_OK;
    for (int i = 0; i < q->n_threads; i++) {
        free(q->buf[i]);
        q->buf[i] = malloc((size_t)n * sizeof(float));
        if (q->buf[i] == NULL) {
            q->buf_len = 0;
            return KB_ENOMEM;
        }
    }
    q->buf_len = n;
    return KB_OK;
}

/* Returns the index of the first non-finite value of x[0..n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* One row: source, check, convert, check. Returns ROW_OK or the failure,
** filled into *e. */
static int quantize_one_row(KbQuantizer *q, float *buf, int64_t r, RowError *e)
{
    const int64_t row = q->row0 + r;
    int rc = q->src(q->user, row, buf, q->n_per_row);
    e->row = row;
    e->rc = rc;
    if (rc != KB_OK) return e->kind = ROW_SOURCE;
    int64_t bad = first_nonfinite(buf, q->n_per_row);
    if (bad >= 0) {
        e->col = bad;
        e->value = buf[bad];
        e->rc = KB_ERANGE;
        return e->kind = ROW_NONFINITE;
    }
    uint8_t *y = q->dst + (uint64_t)r * q->row_size;
    q->fn(buf, y, q->n_per_row);
    if (!kb_quantized_row_ok(q->type, y, q->n_per_row)) {
        e->rc = KB_ERANGE;
        return e->kind = ROW_SCALE;
    }
    return ROW_OK;
}

/* Pool worker: a contiguous share of the rows. */
static void quantize_worker(void *arg, int ith, int nth)
{
    KbQuantizer *q = arg;
    RowError *e = &q->errs[ith];
    const int64_t r0 = q->nrows * ith / nth, r1 = q->nrows * (ith + 1) / nth;
    e->kind = ROW_OK;
    for (int64_t r = r0; r < r1; r++)
        if (quantize_one_row(q, q->buf[ith], r, e) != ROW_OK) return;
}

/* Turns the failure at the lowest row into the message; returns its code. */
static int report_row_error(KbQuantizer *q)
{
    const RowError *e = NULL;
    for (int i = 0; i < q->n_threads; i++)
        if (q->errs[i].kind != ROW_OK && (e == NULL || q->errs[i].row < e->row)) e = &q->errs[i];
    if (e == NULL) return KB_OK;
    if (e->kind == ROW_SOURCE)
        snprintf(q->errmsg, sizeof q->errmsg, "row %lld could not be read: %s", (long long)e->row, kb_strerror(e->rc));
    else if (e->kind == ROW_NONFINITE)
        snprintf(q->errmsg, sizeof q->errmsg, "row %lld, column %lld holds %s: a model with such a weight is broken",
                 (long long)e->row, (long long)e->col, isnan(e->value) ? "NaN" : "an infinity");
    else
        snprintf(q->errmsg, sizeof q->errmsg,
                 "row %lld has weights too large for %s: a block scale overflows 16-bit floats", (long long)e->row,
                 kb_type_name(q->type));
    return e->rc;
}

int kb_quantizer_rows(KbQuantizer *q, int type, KbRowSource src, void *user, int64_t row0, int64_t nrows,
                      int64_t n_per_row, void *dst)
{
    q->errmsg[0] = '\0';
    const KbTypeInfo *ti = kb_type_info(type);
    KbFromFloat fn = kb_quantize_fn(type);
    if (ti == NULL || fn == NULL) {
        snprintf(q->errmsg, sizeof q->errmsg, "kbchat cannot write type %s", kb_type_name(type));
        return KB_EINVAL;
    }
    if (n_per_row <= 0 || n_per_row % ti->block_size != 0) {
        snprintf(q->errmsg, sizeof q->errmsg, "rows of %lld elements do not split into %s blocks of %d",
                 (long long)n_per_row, ti->name, ti->block_size);
        return KB_EINVAL;
    }
    if (ensure_buffers(q, n_per_row) != KB_OK) {
        snprintf(q->errmsg, sizeof q->errmsg, "out of memory for rows of %lld floats", (long long)n_per_row);
        return KB_ENOMEM;
    }
    q->type = type;
    q->fn = fn;
    q->src = src;
    q->user = user;
    q->row0 = row0;
    q->nrows = nrows;
    q->n_per_row = n_per_row;
    q->row_size = kb_row_size(type, n_per_row);
    q->dst = dst;
    pool_run(q->pool, quantize_worker, q);
    return report_row_error(q);
}

/* Makes the chunk buffer hold at least n bytes. */
static int ensure_chunk(KbQuantizer *q, size_t n)
{
    if (n <= q->chunk_cap) return KB_OK;
    free(q->chunk);
    q->chunk_cap = 0;
    if ((q->chunk = malloc(n)) == NULL) {
        snprintf(q->errmsg, sizeof q->errmsg, "out of memory for %zu bytes", n);
        return KB_ENOMEM;
    }
    q->chunk_cap = n;
    return KB_OK;
}

int kb_quantizer_write_tensor(KbQuantizer *q, GgufWriter *w, int type, KbRowSource src, void *user, int64_t nrows,
                              int64_t n_per_row, const volatile sig_atomic_t *cancel)
{
    q->errmsg[0] = '\0';
    const uint64_t row_out = kb_row_size(type, n_per_row);
    int64_t rows_per_chunk = row_out == 0 || row_out >= QUANT_CHUNK ? 1 : (int64_t)(QUANT_CHUNK / row_out);
    if (rows_per_chunk > nrows) rows_per_chunk = nrows;
    int rc = ensure_chunk(q, (size_t)((uint64_t)rows_per_chunk * row_out));
    for (int64_t r = 0; r < nrows && rc == KB_OK; r += rows_per_chunk) {
        if (cancel && *cancel) {
            snprintf(q->errmsg, sizeof q->errmsg, "cancelled");
            return KB_EINVAL;
        }
        const int64_t n = nrows - r < rows_per_chunk ? nrows - r : rows_per_chunk;
        rc = kb_quantizer_rows(q, type, src, user, r, n, n_per_row, q->chunk);
        if (rc == KB_OK && (rc = gguf_writer_write_data(w, q->chunk, (size_t)((uint64_t)n * row_out))) != KB_OK)
            snprintf(q->errmsg, sizeof q->errmsg, "%s", gguf_writer_errmsg(w));
    }
    return rc;
}

/* --- whole files --- */

/* Everything one run holds; freed by job_free. */
typedef struct Job {
    const char *in, *out;
    const KbQuantizeParams *p;
    GgufFile *g;
    int64_t n;              /* tensors */
    KbQuantTensor *t;
    KbQuantChoice *choice;
    int64_t *order;
    KbQuantizer *q;
    GgufWriter *w;
    char arch[64];
    KbQuantizeStats st;
    char *err;
    size_t errlen;
} Job;

/* Formats the job's error message and returns rc. */
static int job_fail(Job *j, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
__attribute__((format(printf, 3, 4))) static int job_fail(Job *j, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, j->errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads {arch}.<suffix> as an integer; a per-layer array gives its first
** element. Returns def when absent or unreadable. */
static int64_t arch_int(const GgufFile *g, const char *arch, const char *suffix, int64_t def)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t i = gguf_find_key(g, key), v;
    if (i < 0) return def;
    if (gguf_kv_get_int(g, i, &v) == KB_OK) return v;
    if (gguf_arr_get_int(g, i, 0, &v) == KB_OK) return v;
    return def;
}

/* The facts the type rules need, from the metadata. */
static void read_hparams(Job *j, KbQuantHparams *hp)
{
    const char *s;
    size_t len;
    if (gguf_get_str(j->g, "general.architecture", &s, &len) == KB_OK)
        snprintf(j->arch, sizeof j->arch, "%.*s", (int)(len < sizeof j->arch ? len : sizeof j->arch - 1), s);
    hp->arch = j->arch;
    hp->n_layer = (int)arch_int(j->g, j->arch, "block_count", 0);
    hp->n_head = (int)arch_int(j->g, j->arch, "attention.head_count", 0);
    hp->n_head_kv = (int)arch_int(j->g, j->arch, "attention.head_count_kv", hp->n_head);
    hp->n_expert = (int)arch_int(j->g, j->arch, "expert_count", 0);
}

/* Opens the input, makes the plan, and checks every tensor to convert can
** be read. */
static int job_plan(Job *j)
{
    int rc = gguf_open(j->in, &j->g, j->err, j->errlen);
    if (rc != KB_OK) return rc;
    j->n = gguf_n_tensors(j->g);
    j->t = calloc((size_t)j->n + 1, sizeof *j->t);
    j->choice = calloc((size_t)j->n + 1, sizeof *j->choice);
    j->order = calloc((size_t)j->n + 1, sizeof *j->order);
    if (!j->t || !j->choice || !j->order) return job_fail(j, KB_ENOMEM, "%s: out of memory", j->in);
    for (int64_t i = 0; i < j->n; i++) {
        const GgufTensor *gt = gguf_tensor(j->g, i);
        j->t[i].name = gt->name;
        memcpy(j->t[i].ne, gt->ne, sizeof j->t[i].ne);
        j->t[i].type = gt->type;
    }
    KbQuantHparams hp;
    read_hparams(j, &hp);
    char perr[256];
    rc = kb_quant_plan(&hp, j->p->ftype, j->t, j->n, j->choice, j->order, perr, sizeof perr);
    if (rc != KB_OK) return job_fail(j, rc, "%s", perr);
    for (int64_t i = 0; i < j->n; i++) {
        if (!(j->choice[i].flags & KB_QPLAN_QUANTIZE)) continue;
        if (kb_kernels()->type[j->t[i].type].to_float == NULL)
            return job_fail(j, KB_EUNSUPPORTED, "%s: tensor '%s' is %s, which kbchat cannot read to re-quantize", j->in,
                            j->t[i].name, kb_type_name(j->t[i].type));
        if (j->choice[i].flags & KB_QPLAN_REQUANT) j->st.n_requantized++;
    }
    return KB_OK;
}

/* Keys llama.cpp drops or rewrites when it quantizes. */
static bool key_is_replaced(const char *key)
{
    return strcmp(key, "general.quantization_version") == 0 || strcmp(key, "general.file_type") == 0 ||
           strncmp(key, "split.", 6) == 0;
}

/* Starts the output: metadata, tensor infos, header. */
static int job_header(Job *j)
{
    char werr[512];
    int rc = gguf_writer_open(j->out, &j->w, werr, sizeof werr);
    if (rc != KB_OK) return job_fail(j, rc, "%s", werr);
    for (int64_t i = 0; i < gguf_n_kv(j->g) && rc == KB_OK; i++)
        if (!key_is_replaced(gguf_kv_key(j->g, i))) rc = gguf_writer_copy_kv(j->w, j->g, i);
    if (rc == KB_OK) rc = gguf_writer_kv_u32(j->w, "general.quantization_version", 2); /* GGML_QNT_VERSION */
    if (rc == KB_OK) rc = gguf_writer_kv_u32(j->w, "general.file_type", (uint32_t)j->p->ftype);
    for (int64_t k = 0; k < j->n && rc == KB_OK; k++) {
        const GgufTensor *gt = gguf_tensor(j->g, j->order[k]);
        rc = gguf_writer_add_tensor(j->w, gt->name, gt->n_dims, gt->ne, j->choice[j->order[k]].type);
    }
    if (rc == KB_OK) rc = gguf_writer_write_header(j->w);
    if (rc != KB_OK) return job_fail(j, rc, "%s", gguf_writer_errmsg(j->w));
    return KB_OK;
}

/* Row source over a mapped tensor of any readable type. */
typedef struct MappedRows {
    const uint8_t *data;
    uint64_t row_size;
    KbToFloat to_float;
} MappedRows;

static int mapped_row(void *user, int64_t row, float *buf, int64_t n)
{
    const MappedRows *m = user;
    m->to_float(m->data + (uint64_t)row * m->row_size, buf, n);
    return KB_OK;
}

/* Converts a tensor into the writer, reading its rows from the mapping. */
static int convert_tensor(Job *j, const GgufTensor *gt, int type)
{
    const int64_t n_per_row = gt->ne[0], nrows = (int64_t)(gt->n_elements / (uint64_t)n_per_row);
    MappedRows src = {gt->data, kb_row_size(gt->type, n_per_row), kb_kernels()->type[gt->type].to_float};
    int rc = kb_quantizer_write_tensor(j->q, j->w, type, mapped_row, &src, nrows, n_per_row, j->p->cancel);
    if (rc != KB_OK) return job_fail(j, rc, "%s: tensor '%s': %s", j->in, gt->name, kb_quantizer_errmsg(j->q));
    return KB_OK;
}

/* Writes tensor k of the output order, converted or copied, and reports. */
static int job_tensor(Job *j, int64_t k)
{
    const double t0 = now_seconds();
    const int64_t i = j->order[k];
    if (j->p->cancel && *j->p->cancel) return job_fail(j, KB_EINVAL, "%s: cancelled", j->out);
    const GgufTensor *gt = gguf_tensor(j->g, i);
    const KbQuantChoice *c = &j->choice[i];
    int rc;
    if (c->flags & KB_QPLAN_QUANTIZE) {
        rc = convert_tensor(j, gt, c->type);
    } else if ((rc = gguf_writer_write_data(j->w, gt->data, (size_t)gt->n_bytes)) != KB_OK) {
        rc = job_fail(j, rc, "%s", gguf_writer_errmsg(j->w));
    }
    if (rc != KB_OK) return rc;
    const uint64_t bytes_out = gguf_writer_tensor_size(j->w, k);
    j->st.n_elements += gt->n_elements;
    j->st.bytes_in += gt->n_bytes;
    j->st.bytes_out += bytes_out;
    if (c->flags & KB_QPLAN_QUANTIZE) j->st.n_quantized++;
    if (c->flags & KB_QPLAN_FALLBACK) j->st.n_fallback++;
    if (j->p->progress) {
        KbQuantizeEvent ev = {.kind = KB_QEV_TENSOR, .n_tensors = j->n, .index = k, .name = gt->name,
                              .n_dims = gt->n_dims, .from_type = gt->type, .choice = *c,
                              .bytes_in = gt->n_bytes, .bytes_out = bytes_out, .seconds = now_seconds() - t0};
        memcpy(ev.ne, gt->ne, sizeof ev.ne);
        j->p->progress(j->p->user, &ev);
    }
    return KB_OK;
}

static void job_free(Job *j)
{
    gguf_writer_close(j->w); /* removes the temporary file unless finished */
    kb_quantizer_free(j->q);
    gguf_close(j->g);
    free(j->t);
    free(j->choice);
    free(j->order);
}

int kb_model_quantize(const char *in, const char *out, const KbQuantizeParams *params, KbQuantizeStats *stats,
                      char *err, size_t errlen)
{
    Job j = {.in = in, .out = out, .p = params, .err = err, .errlen = errlen};
    const double t0 = now_seconds();
    if (stats) memset(stats, 0, sizeof *stats);
    if (errlen > 0) err[0] = '\0';
    int rc = job_plan(&j);
    if (rc == KB_OK && (rc = kb_quantizer_new(params->n_threads, &j.q)) != KB_OK)
        job_fail(&j, rc, "cannot start %d quantization threads: %s", params->n_threads, kb_strerror(rc));
    if (rc == KB_OK) rc = job_header(&j);
    if (rc == KB_OK && params->progress) {
        KbQuantizeEvent ev = {.kind = KB_QEV_START, .n_tensors = j.n, .n_requant = j.st.n_requantized,
                              .n_threads = kb_quantizer_threads(j.q)};
        params->progress(params->user, &ev);
    }
    for (int64_t k = 0; k < j.n && rc == KB_OK; k++) rc = job_tensor(&j, k);
    if (rc == KB_OK && (rc = gguf_writer_finish(j.w)) != KB_OK) job_fail(&j, rc, "%s", gguf_writer_errmsg(j.w));
    if (rc == KB_OK) {
        j.st.n_tensors = j.n;
        j.st.file_bytes_in = gguf_file_size(j.g);
        j.st.file_bytes_out = gguf_writer_bytes_written(j.w);
        j.st.seconds = now_seconds() - t0;
        if (stats) *stats = j.st;
    }
    job_free(&j);
    return rc;
}
