/*
** gemm.c: the driver of the tiled matrix products (see gemm.h): picks the
** kernel set, owns the scratch, packs weight matrices, and splits a product
** over the thread pool.
**
** A product runs in two pool passes:
**   1. the token tiles (GEMM_TOKS tokens each) are quantized and packed,
**      tile i by worker i mod nth;
**   2. the row tiles (GEMM_ROWS rows each) are cut into nth contiguous
**      ranges; a worker multiplies GEMM_KC weights of a row tile (contiguous
**      in the packed matrix, so the hardware prefetchers follow it) with
**      every token tile, then goes on with the next GEMM_KC weights, adding
**      onto y[t][rows of the tile]. The packed activations of a run stay in
**      L2 and the run's weights in L1.
** Workers write disjoint parts of the packed activations and of y, and a
** tile's result does not depend on which worker computes it.
*/
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/gemm.h"

#if defined(__x86_64__)
extern const GemmIsa gemm_isa_avx2;     /* gemm_avx2.c */
extern const GemmIsa gemm_isa_avxvnni;  /* gemm_avxvnni.c */
extern const GemmIsa gemm_isa_avx512;   /* gemm_avx512.c */
#endif

#define GEMM_PAGE 4096

/* The kernel levels imply the CPU runs what each set needs (kernels.c
** checks AVX-VNNI for its level); only AVX512-VNNI is asked here, as the
** AVX-512 kernel level does not require it. */
const GemmIsa *gemm_select(const KbKernels *kern)
{
#if defined(__x86_64__)
    switch (kern ? kern->isa : KB_ISA_SCALAR) {
    case KB_ISA_AVX2: return &gemm_isa_avx2;
    case KB_ISA_AVXVNNI: return &gemm_isa_avxvnni;
    case KB_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512vnni") ? &gemm_isa_avx512 : &gemm_isa_avx2;
    default: return NULL;
    }
#else
    (void)kern;
    return NULL;
#endif
}

/* Rounds n up to a multiple of a. */
static size_t round_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

/* Row tiles of a matrix of n_out rows. */
static int64_t row_tiles(int64_t n_out)
{
    return (n_out + GEMM_ROWS - 1) / GEMM_ROWS;
}

/* Rows of row tile rt (GEMM_ROWS but for the last). */
static int tile_rows(int64_t n_out, int64_t rt)
{
    const int64_t left = n_out - rt * GEMM_ROWS;
    return (int)(left < GEMM_ROWS ? left : GEMM_ROWS);
}

/* Blocks of `lay` multiplied at a time (at least one). */
static int64_t run_blocks(const GemmLayout *lay)
{
    return GEMM_KC / lay->block > 0 ? GEMM_KC / lay->block : 1;
}

/* The scratch sizes are the largest any handled type needs: packed
** activations of max_tok tokens, and per worker GEMM_TOKS quantized tokens. */
int gemm_buffers_alloc(GemmBuffers *b, const KbKernels *kern, int64_t max_tok, int64_t max_in, int n_threads)
{
    memset(b, 0, sizeof *b);
    const GemmIsa *isa = gemm_select(kern);
    if (isa == NULL || max_tok < 1) return KB_OK;
    const size_t n_tt = (size_t)((max_tok + GEMM_TOKS - 1) / GEMM_TOKS);
    size_t act = 0, work = 0;
    for (int type = 0; type < KB_TYPE_COUNT; type++) {
        GemmLayout lay;
        if (!isa->layout(type, &lay) || max_in < lay.block) continue;
        const int64_t nb = max_in / lay.block;
        const KbTypeInfo *qi = kb_type_info(kern->type[type].vec_dot_type);
        const size_t quant = GEMM_TOKS * (size_t)(max_in / qi->block_size) * (size_t)qi->type_size;
        if (n_tt * (size_t)nb * lay.act_bytes > act) act = n_tt * (size_t)nb * lay.act_bytes;
        if (quant > work) work = quant;
    }
    if (act == 0) return KB_OK;
    b->work_stride = round_up(work, GEMM_PAGE);
    b->act = aligned_alloc(GEMM_PAGE, round_up(act, GEMM_PAGE));
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
    GemmLayout lay;
    return b->isa && p->packed && p->n_tok >= 1 && p->n_tok <= b->max_tok && p->n_in <= b->max_in &&
           b->isa->layout(p->type, &lay) && p->n_in % lay.block == 0;
}

typedef struct GemmJob {
    const GemmBuffers *b;
    KbFromFloat quantize;
    const GemmProduct *p;
    GemmLayout lay;
    int64_t nb;         /* blocks per row */
    int64_t n_tt;       /* token tiles */
} GemmJob;

/* Pass 1: worker ith packs token tiles ith, ith + nth, ... */
static void gemm_pack_worker(void *arg, int ith, int nth)
{
    const GemmJob *j = arg;
    const GemmProduct *p = j->p;
    uint8_t *tmp = j->b->work + (size_t)ith * j->b->work_stride;
    for (int64_t tt = ith; tt < j->n_tt; tt += nth) {
        const int64_t t0 = tt * GEMM_TOKS;
        const int nt = (int)(p->n_tok - t0 < GEMM_TOKS ? p->n_tok - t0 : GEMM_TOKS);
        j->b->isa->pack_acts(p->type, p->x + t0 * p->n_in, p->n_in, nt, j->quantize, tmp,
                             j->b->act + (size_t)(tt * j->nb) * j->lay.act_bytes);
    }
}

/* Pass 2: worker ith computes its contiguous range of row tiles in runs of
** GEMM_KC weights, each run against every token tile and added onto the
** last. */
static void gemm_rows_worker(void *arg, int ith, int nth)
{
    const GemmJob *j = arg;
    const GemmProduct *p = j->p;
    const int64_t nb = j->nb, kc_max = run_blocks(&j->lay);
    const int64_t n_rt = row_tiles(p->n_out);
    const int64_t rt0 = n_rt * ith / nth, rt1 = n_rt * (ith + 1) / nth;
    for (int64_t rt = rt0; rt < rt1; rt++) {
        const int64_t r0 = rt * GEMM_ROWS;
        const int nr = tile_rows(p->n_out, rt);
        for (int64_t l0 = 0; l0 < nb; l0 += kc_max) {
            const int64_t kc = nb - l0 < kc_max ? nb - l0 : kc_max;
            const uint8_t *wp = p->packed + (size_t)(rt * nb + l0) * j->lay.row_bytes;
            for (int64_t tt = 0; tt < j->n_tt; tt++) {
                const int64_t t0 = tt * GEMM_TOKS;
                const int nt = (int)(p->n_tok - t0 < GEMM_TOKS ? p->n_tok - t0 : GEMM_TOKS);
                j->b->isa->tile(p->type, wp, j->b->act + (size_t)(tt * nb + l0) * j->lay.act_bytes, kc,
                                p->y + t0 * p->n_out + r0, p->n_out, nr, nt, l0 > 0);
            }
        }
    }
}

void gemm_matmul(const GemmBuffers *b, Pool *pool, KbFromFloat quantize, const GemmProduct *p)
{
    GemmJob j = {b, quantize, p, {0}, 0, (p->n_tok + GEMM_TOKS - 1) / GEMM_TOKS};
    b->isa->layout(p->type, &j.lay);
    j.nb = p->n_in / j.lay.block;
    pool_run(pool, gemm_pack_worker, &j);
    pool_run(pool, gemm_rows_worker, &j);
}

size_t gemm_packed_size(const GemmIsa *isa, int type, int64_t n_in, int64_t n_out)
{
    GemmLayout lay;
    if (isa == NULL || !isa->layout(type, &lay) || n_in < lay.block || n_in % lay.block != 0 || n_out < 1) return 0;
    return (size_t)row_tiles(n_out) * (size_t)(n_in / lay.block) * lay.row_bytes;
}

typedef struct PackJob {
    const GemmIsa *isa;
    int type;
    const uint8_t *w;
    size_t row_bytes;
    int64_t n_out, nb;
    size_t tile_bytes;  /* one packed row tile */
    uint8_t *dst;
} PackJob;

/* Worker ith packs row tiles ith, ith + nth, ... whole. */
static void gemm_pack_matrix_worker(void *arg, int ith, int nth)
{
    const PackJob *j = arg;
    for (int64_t rt = ith; rt < row_tiles(j->n_out); rt += nth)
        j->isa->pack_rows(j->type, j->w + (size_t)(rt * GEMM_ROWS) * j->row_bytes, j->row_bytes, tile_rows(j->n_out, rt),
                          j->nb, j->dst + (size_t)rt * j->tile_bytes);
}

void gemm_pack_matrix(const GemmIsa *isa, Pool *pool, int type, const uint8_t *w, size_t row_bytes, int64_t n_in,
                      int64_t n_out, uint8_t *dst)
{
    GemmLayout lay;
    isa->layout(type, &lay);
    PackJob j = {isa, type, w, row_bytes, n_out, n_in / lay.block, (size_t)(n_in / lay.block) * lay.row_bytes, dst};
    pool_run(pool, gemm_pack_matrix_worker, &j);
}
