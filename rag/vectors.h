/*
** vectors.h: a knowledge base's chunk vectors as one matrix, and the
** nearest-neighbour search over it. Internal to rag/.
**
** Vector search is a matrix-vector product: the vectors are L2-normalised
** when they are made (embed.c), so the cosine similarity of every chunk to a
** question is one row of M q, computed by OpenBLAS (cblas_sgemv; cblas_sgemm
** for several questions at once), followed by a partial sort that keeps the
** k best in a heap. Nothing is indexed approximately: with 100k chunks of
** 384 dimensions the product reads 150 MB and takes a few milliseconds, and
** the answer is exact.
**
** The matrix is loaded once per knowledge base and kept in the Rag handle
** (rag->vec); kbs.vec_gen, which triggers bump whenever a vector of the
** knowledge base is added or deleted, tells when it is stale, so a search
** after a sync reloads it and every other search reuses it.
*/
#ifndef KB_RAG_VECTORS_H
#define KB_RAG_VECTORS_H

#include <stdint.h>

#include "rag/store.h"

typedef struct VecIndex {
    int64_t kb;        /* knowledge base id; 0 for a matrix built by vec_index_from */
    int64_t gen;       /* kbs.vec_gen when loaded */
    int dim;
    int64_t n;         /* rows */
    int64_t *ids;      /* chunk id of each row, ascending */
    float *mat;        /* n * dim, row-major, 64-byte aligned */
    float *scores;     /* n: scratch of vec_index_search */
} VecIndex;

/* One nearest neighbour. */
typedef struct VecHit {
    int64_t chunk_id;
    float score;       /* dot product = cosine for normalised vectors */
} VecHit;

/* Makes rag->vec hold the vectors of kb, reading them only when rag->vec
** holds another knowledge base or an older generation. The rows are read
** in one read transaction, so they match the generation recorded.
** Returns KB_OK; KB_EFORMAT (a stored vector whose size is not kb->embed.dim
** floats: the message names the chunk); KB_EIO; KB_ENOMEM. */
int vec_index_load(Rag *rag, const StoreKb *kb, VecIndex **out /* OUT: owned by rag */);

/* Builds an index over a copy of mat (n rows of dim floats) with row ids
** ids[0..n) in ascending order, for tests and benchmarks.
** Returns KB_OK; KB_EINVAL (dim < 1, n < 0); KB_ENOMEM. Free with vec_index_free. */
int vec_index_from(const int64_t *ids, const float *mat, int64_t n, int dim, VecIndex **out /* OUT */);

void vec_index_free(VecIndex *ix);

/* The k rows (at most n) most similar to q (dim floats), best first; ties go
** to the lower chunk id. hits has room for k. Returns the number found. */
int vec_index_search(VecIndex *ix, const float *q, int k, VecHit *hits /* OUT */);

/* vec_index_search for n_q queries at once (qs: n_q rows of dim), through
** one matrix-matrix product: hits[j * k ...] and n_hits[j] for query j.
** Returns KB_OK or KB_ENOMEM (the product's scratch). */
int vec_index_search_many(VecIndex *ix, const float *qs, int n_q, int k, VecHit *hits /* OUT */, int *n_hits /* OUT */);

/* The k best of scores[0..n) (stride apart) with row ids ids, best first,
** ties to the lower id. Returns the number written to out (min(k, n)). */
int vec_top_k(const float *scores, int64_t stride, const int64_t *ids, int64_t n, int k, VecHit *out /* OUT */);

#endif /* KB_RAG_VECTORS_H */
