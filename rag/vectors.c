/*
** vectors.c: the chunk-vector matrix of a knowledge base and exact
** nearest-neighbour search over it with OpenBLAS (see vectors.h).
*/
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "engine/engine.h"
#include "rag/vectors.h"

/* --- the matrix --- */

void vec_index_free(VecIndex *ix)
{
    if (ix == NULL) return;
    free(ix->ids);
    free(ix->mat);
    free(ix->scores);
    free(ix);
}

/* Allocates an index of n rows of dim floats (contents undefined). The
** matrix is 64-byte aligned so OpenBLAS reads whole cache lines. */
static VecIndex *vec_alloc(int64_t n, int dim)
{
    VecIndex *ix = calloc(1, sizeof *ix);
    if (ix == NULL) return NULL;
    size_t rows = n > 0 ? (size_t)n : 1;
    size_t bytes = rows * (size_t)dim * sizeof(float);
    ix->dim = dim;
    ix->n = n;
    ix->ids = malloc(rows * sizeof *ix->ids);
    ix->mat = aligned_alloc(64, (bytes + 63) / 64 * 64);
    ix->scores = malloc(rows * sizeof *ix->scores);
    if (ix->ids == NULL || ix->mat == NULL || ix->scores == NULL) {
        vec_index_free(ix);
        return NULL;
    }
    return ix;
}

int vec_index_from(const int64_t *ids, const float *mat, int64_t n, int dim, VecIndex **out)
{
    *out = NULL;
    if (dim < 1 || n < 0) return KB_EINVAL;
    if (n > 0 && (uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)dim) return KB_ENOMEM;
    VecIndex *ix = vec_alloc(n, dim);
    if (ix == NULL) return KB_ENOMEM;
    if (n > 0) {
        memcpy(ix->ids, ids, (size_t)n * sizeof *ids);
        memcpy(ix->mat, mat, (size_t)n * (size_t)dim * sizeof *mat);
    }
    *out = ix;
    return KB_OK;
}

/* Counts kb's vectors (inside the caller's read transaction). */
static int count_vectors(Rag *rag, int64_t kb, int64_t *gen, int64_t *n)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "SELECT vec_gen, (SELECT count(*) FROM vectors WHERE kb_id = ?1) FROM kbs WHERE id = ?1", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, kb);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *gen = sqlite3_column_int64(st, 0);
        *n = sqlite3_column_int64(st, 1);
    } else {
        rc = store_sql_fail(rag, "cannot count vectors");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Reads the rows of kb into ix (n rows counted in the same transaction). */
static int read_rows(Rag *rag, int64_t kb, VecIndex *ix)
{
    sqlite3_stmt *st;
    int rc = store_prepare(rag, "SELECT chunk_id, vec FROM vectors WHERE kb_id = ?1 ORDER BY chunk_id", &st);
    if (rc != KB_OK) return rc;
    sqlite3_bind_int64(st, 1, kb);
    int64_t i = 0;
    int s = SQLITE_DONE;
    const int bytes = ix->dim * (int)sizeof(float);
    while (rc == KB_OK && i < ix->n && (s = sqlite3_step(st)) == SQLITE_ROW) {
        ix->ids[i] = sqlite3_column_int64(st, 0);
        const void *blob = sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        if (len != bytes || blob == NULL)
            rc = store_fail(rag, KB_EFORMAT, "%s: the vector of chunk %lld has %d bytes, expected %d (%d dimensions)",
                            rag->path, (long long)ix->ids[i], len, bytes, ix->dim);
        else memcpy(ix->mat + (size_t)i * (size_t)ix->dim, blob, (size_t)bytes);
        i++;
    }
    if (rc == KB_OK && s != SQLITE_ROW && s != SQLITE_DONE) rc = store_sql_fail(rag, "cannot read vectors");
    ix->n = i;
    sqlite3_finalize(st);
    return rc;
}

int vec_index_load(Rag *rag, const StoreKb *kb, VecIndex **out)
{
    *out = NULL;
    int64_t gen = 0, n = 0;
    int rc = store_exec(rag, "BEGIN"); /* one snapshot for the count and the rows */
    if (rc == KB_OK) rc = count_vectors(rag, kb->id, &gen, &n);
    VecIndex *cur = rag->vec;
    if (rc == KB_OK && cur && cur->kb == kb->id && cur->gen == gen && cur->dim == kb->embed.dim) {
        rc = store_exec(rag, "COMMIT");
        if (rc != KB_OK) store_rollback(rag);
        else *out = cur;
        return rc;
    }
    VecIndex *ix = NULL;
    if (rc == KB_OK && kb->embed.dim < 1) rc = store_fail(rag, KB_EINVAL, "the knowledge base has no vector dimension");
    if (rc == KB_OK && (ix = vec_alloc(n, kb->embed.dim)) == NULL) rc = store_fail(rag, KB_ENOMEM, "out of memory for %lld vectors", (long long)n);
    if (rc == KB_OK) rc = read_rows(rag, kb->id, ix);
    if (rc == KB_OK) rc = store_exec(rag, "COMMIT");
    else store_rollback(rag);
    if (rc != KB_OK) {
        vec_index_free(ix);
        return rc;
    }
    ix->kb = kb->id;
    ix->gen = gen;
    vec_index_free(rag->vec);
    rag->vec = ix;
    *out = ix;
    return KB_OK;
}

/* --- top k --- */

/* True when a ranks below b: lower score, or the same score and a higher
** chunk id (so results do not depend on the order of equal scores). */
static int worse(const VecHit *a, const VecHit *b)
{
    return a->score < b->score || (a->score == b->score && a->chunk_id > b->chunk_id);
}

/* Restores the heap (worst at the root) below position i. */
static void sift_down(VecHit *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(&h[l], &h[w])) w = l;
        if (r < n && worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        VecHit t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Restores the heap above position i (a new entry at the end). */
static void sift_up(VecHit *h, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(&h[i], &h[p])) return;
        VecHit t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* A min-heap of the k best so far: each score costs one comparison with the
** root unless it enters, so a pass over n scores is O(n + k log k log n). */
int vec_top_k(const float *scores, int64_t stride, const int64_t *ids, int64_t n, int k, VecHit *out)
{
    int size = 0;
    if (k < 1) return 0;
    for (int64_t i = 0; i < n; i++) {
        VecHit h = {ids[i], scores[i * stride]};
        if (size < k) {
            out[size] = h;
            sift_up(out, size++);
        } else if (worse(&out[0], &h)) {
            out[0] = h;
            sift_down(out, size, 0);
        }
    }
    /* heap sort: repeatedly move the worst to the end, so out ends best first */
    for (int end = size - 1; end > 0; end--) {
        VecHit t = out[0];
        out[0] = out[end];
        out[end] = t;
        sift_down(out, end, 0);
    }
    return size;
}

/* --- search --- */

int vec_index_search(VecIndex *ix, const float *q, int k, VecHit *hits)
{
    if (ix->n == 0 || k < 1) return 0;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)ix->n, ix->dim, 1.0f, ix->mat, ix->dim, q, 1, 0.0f, ix->scores, 1);
    return vec_top_k(ix->scores, 1, ix->ids, ix->n, k, hits);
}

int vec_index_search_many(VecIndex *ix, const float *qs, int n_q, int k, VecHit *hits, int *n_hits)
{
    if (n_q < 1) return KB_OK;
    if (ix->n == 0 || k < 1) {
        for (int j = 0; j < n_q; j++) n_hits[j] = 0;
        return KB_OK;
    }
    float *c = malloc((size_t)ix->n * (size_t)n_q * sizeof *c);
    if (c == NULL) return KB_ENOMEM;
    /* C (n x n_q) = M (n x dim) * Qt (dim x n_q) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ix->n, n_q, ix->dim, 1.0f, ix->mat, ix->dim, qs, ix->dim,
                0.0f, c, n_q);
    for (int j = 0; j < n_q; j++) n_hits[j] = vec_top_k(c + j, n_q, ix->ids, ix->n, k, hits + (size_t)j * (size_t)k);
    free(c);
    return KB_OK;
}
