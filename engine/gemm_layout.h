/*
** gemm_layout.h: the packed layouts the x86 tile kernels share (internal to
** engine/), and the packers that write them (gemm_avx2.c: they need AVX2,
** FMA and F16C only, so the AVX2, AVX-VNNI and AVX-512 sets all use them).
**
** A row tile is GEMM_ROWS = 32 weight rows; a token tile GEMM_TOKS = 4
** tokens. "x32" below means rows 0..31 in order; a 512-bit register holds
** one dword of 16 rows, a 256-bit register one dword of 8 rows, so both
** widths load the same bytes.
**   Q8_0 activations, per (token tile, 32-weight block), 160 bytes:
**     int32 q[8][4]      4 quants (k-th group of 4) of token t at q[k][t]
**     float d[4]         the token's block scale
**     int32 corr[4]      -offset x sum of the token's 32 quants (offset 8
**                        for Q4_0 weights, 128 for Q8_0)
**   Q8_K activations, per (token tile, super-block), 1152 / 1344 bytes:
**     int32 q[64][4]     as above
**     float d[4]
**     Q4_K/Q5_K: int32 bsum[4][4]   pairs of int16 sub-block sums (2p, 2p+1)
**     Q6_K:      int32 corr[16][4]  -32 x sum of 16-quant sub-block j
**   Q4_0 weights, per (row tile, block), 576 bytes (32 stored blocks):
**     uint8 q[4][x32][4] the stored bytes (low nibbles: quads 0..3, high
**     nibbles: quads 4..7, split in the kernel); fp16 d[x32]
**   Q8_0 weights, per (row tile, block), 1088 bytes (32 stored blocks):
**     uint8 q[8][x32][4] quants + 128; fp16 d[x32]
**   Q4_K/Q5_K weights, per (row tile, super-block), 4736 / 5760 bytes (32
**   stored super-blocks plus 4 bytes a row: the six-bit scales unpacked):
**     uint8 qs[32][x32][4] the stored quant bytes as dwords; Q5_K: uint8
**     qh[8][x32][4] the stored high bits as dwords; uint8 sc[8][x32];
**     uint8 mins[4][x32][2] (mins 2p, 2p+1 of a row side by side, widened
**     to int16 pairs in the kernel); fp16 d[x32]; fp16 dmin[x32]
**   Q6_K weights, per (row tile, super-block), 6720 bytes (32 stored):
**     uint8 ql[32][x32][4], qh[16][x32][4] the stored bytes as dwords;
**     int8 sc[16][x32]; fp16 d[x32]
** Every area starts 32-byte aligned within a 64-byte aligned block.
*/
#ifndef KB_GEMM_LAYOUT_H
#define KB_GEMM_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/gemm.h"
#include "engine/quant.h"

/* Q4_0/Q8_0 */
#define A0_BLOCK 160
#define A0_D 128
#define A0_CORR 144
#define W40_D 512     /* Q4_0 weights: fp16 scales after the quants */
#define W40_BLOCK 576 /* = 32 x sizeof(BlockQ4_0): the packed matrix is the file's size */
#define W80_D 1024
#define W80_BLOCK 1088 /* = 32 x sizeof(BlockQ8_0) */
/* K types */
#define AK_D 1024
#define AK_EXTRA 1088 /* bsum pairs (Q4_K/Q5_K) or corr (Q6_K) */
#define AK4_BLOCK 1152
#define AK6_BLOCK 1344
/* Q4_K / Q5_K weights: stored quant dwords, (Q5_K) high-bit dwords, byte
** scales and mins, fp16 d and dmin */
#define WK_QH 4096
#define WK4_SC 4096
#define WK5_SC 5120
#define WK_MINS 256   /* after the scales */
#define WK_D 512      /* after the scales */
#define WK_DMIN 576   /* after the scales */
#define WK4_BLOCK 4736 /* 32 x 148: 4 bytes per row more than stored (scales unpacked) */
#define WK5_BLOCK 5760 /* 32 x 180 */
/* Q6_K weights: ql dwords, qh dwords, int8 scales, fp16 d */
#define WK6_QH 4096
#define WK6_SC 6144
#define WK6_D 6656
#define WK6_BLOCK 6720 /* = 32 x sizeof(BlockQ6_K) */

_Static_assert(GEMM_ROWS == 32 && GEMM_TOKS == 4, "the x86 kernels are written for 32 x 4 tiles");

/* The packed sizes of Q4_0, Q8_0, Q4_K, Q5_K and Q6_K (GemmIsa.layout). */
bool gemm_x86_layout(int type, GemmLayout *out /* OUT */);
/* GemmIsa.pack_acts for those types. */
void gemm_x86_pack_acts(int type, const float *x, int64_t n_in, int nt, KbFromFloat quantize, uint8_t *tmp,
                        uint8_t *dst /* OUT */);
/* GemmIsa.pack_rows for those types. */
void gemm_x86_pack_rows(int type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, uint8_t *dst /* OUT */);

#endif /* KB_GEMM_LAYOUT_H */
