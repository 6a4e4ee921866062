/*
** gemm.c: the driver of the tiled matrix products (see gemm.h): picks the
** kernel set, owns the scratch, and splits a product over the thread pool.
**
** A product runs in two pool passes:
**   1. the token tiles (GEMM_TOKS tokens each) are quantized and packed,
**      tile i by worker i mod nth;
**   2. the row tiles (GEMM_ROWS rows each) are cut into nth contiguous
**      ranges; a worker packs each of its row tiles into its own scratch and
**      multiplies it with every token tile, writing y[t][rows of the tile].
** Workers write disjoint parts of the packed activations and of y, and a
** tile's result does not depend on which worker computes it.
*/
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
extern const GemmIsa gemm_isa_avx512; /* gemm_avx512.c */
#endif

#define GEMM_PAGE 4096

const GemmIsa *gemm_select(const KbKernels *kern)
{
#if defined(__x86_64__) || defined(__i386__)
    if (kern && kern->isa == KB_ISA_AVX512) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512vnni")) return &gemm_isa_avx512;
    }
#else
    (void)kern;
#endif
    return NULL;
}

/* Rounds n up to a multiple of a. */
static size_t round_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

int gemm_buffers_alloc(GemmBuffers *b, const KbKernels *kern, int64_t max_tok, int64_t max_in, int n_threads)
{
    memset(b, 0, sizeof *b);
    const GemmIsa *isa = gemm_select(kern);
    if (isa == NULL || max_tok < GEMM_MIN_TOKENS || max_in < KB_QK) return KB_OK;
    const size_t nb = (size_t)(max_in / KB_QK), n_tt = (size_t)((max_tok + GEMM_TOKS - 1) / GEMM_TOKS);
    /* a worker's area holds one packed row tile, or GEMM_TOKS Q8_0 rows */
    size_t work = nb * isa->row_block_bytes;
    if (work < GEMM_TOKS * nb * sizeof(BlockQ8_0)) work = GEMM_TOKS * nb * sizeof(BlockQ8_0);
    b->work_stride = round_up(work, GEMM_PAGE);
    b->act = aligned_alloc(GEMM_PAGE, round_up(n_tt * nb * isa->act_block_bytes, GEMM_PAGE));
    b->work = aligned_alloc(GEMM_PAGE, b->work_stride * (size_t)n_threads);
    if (b->act == NULL || b->work == NULL) return KB_ENOMEM;
    b->isa = isa;
    b->max_tok = max_tok;
    b->max_in = max_in;
    return KB_OK;
}

void gemm_buffers_free(GemmBuffers *b)
{
    free(b->act);
    free(b->work);
    memset(b, 0, sizeof *b);
}

bool gemm_applies(const GemmBuffers *b, const GemmProduct *p)
{
    return b->isa && p->n_tok >= GEMM_MIN_TOKENS && p->n_tok <= b->max_tok && p->n_in <= b->max_in &&
           p->n_in % KB_QK == 0 && b->isa->handles(p->type);
}

typedef struct GemmJob {
    const GemmBuffers *b;
    KbFromFloat quantize;
    const GemmProduct *p;
} GemmJob;

/* Pass 1: worker ith packs token tiles ith, ith + nth, ... */
static void gemm_pack_worker(void *arg, int ith, int nth)
{
    const GemmJob *j = arg;
    const GemmProduct *p = j->p;
    const GemmIsa *isa = j->b->isa;
    const int64_t nb = p->n_in / KB_QK, n_tt = (p->n_tok + GEMM_TOKS - 1) / GEMM_TOKS;
    uint8_t *tmp = j->b->work + (size_t)ith * j->b->work_stride;
    for (int64_t tt = ith; tt < n_tt; tt += nth) {
        const int64_t t0 = tt * GEMM_TOKS;
        const int nt = (int)(p->n_tok - t0 < GEMM_TOKS ? p->n_tok - t0 : GEMM_TOKS);
        isa->pack_acts(p->type, p->x + t0 * p->n_in, p->n_in, nt, j->quantize, tmp,
                       j->b->act + (size_t)(tt * nb) * isa->act_block_bytes);
    }
}

/* Pass 2: worker ith computes its contiguous range of row tiles against
** every token tile. */
static void gemm_rows_worker(void *arg, int ith, int nth)
{
    const GemmJob *j = arg;
    const GemmProduct *p = j->p;
    const GemmIsa *isa = j->b->isa;
    const int64_t nb = p->n_in / KB_QK, n_tt = (p->n_tok + GEMM_TOKS - 1) / GEMM_TOKS;
    const int64_t n_rt = (p->n_out + GEMM_ROWS - 1) / GEMM_ROWS;
    const int64_t rt0 = n_rt * ith / nth, rt1 = n_rt * (ith + 1) / nth;
    uint8_t *wp = j->b->work + (size_t)ith * j->b->work_stride;
    for (int64_t rt = rt0; rt < rt1; rt++) {
        const int64_t r0 = rt * GEMM_ROWS;
        const int nr = (int)(p->n_out - r0 < GEMM_ROWS ? p->n_out - r0 : GEMM_ROWS);
        isa->pack_rows(p->type, p->w + (size_t)r0 * p->row_bytes, p->row_bytes, nr, nb, wp);
        for (int64_t tt = 0; tt < n_tt; tt++) {
            const int64_t t0 = tt * GEMM_TOKS;
            const int nt = (int)(p->n_tok - t0 < GEMM_TOKS ? p->n_tok - t0 : GEMM_TOKS);
            isa->tile(wp, j->b->act + (size_t)(tt * nb) * isa->act_block_bytes, nb, p->y + t0 * p->n_out + r0,
                      p->n_out, nr, nt);
        }
    }
}

void gemm_matmul(const GemmBuffers *b, Pool *pool, KbFromFloat quantize, const GemmProduct *p)
{
    GemmJob j = {b, quantize, p};
    pool_run(pool, gemm_pack_worker, &j);
    pool_run(pool, gemm_rows_worker, &j);
}
