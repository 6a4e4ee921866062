/*
** gemm_ymm.h: the tile kernels of the tiled matrix products (gemm.h) on
** 256-bit registers, written once and compiled by two files, each under
** its own target pragma: gemm_avx2.c (GEMM_YMM_VNNI 0: AVX2's vpmaddubsw
** and vpmaddwd) and gemm_avxvnni.c (GEMM_YMM_VNNI 1: AVX-VNNI's vpdpbusd).
** Define GEMM_YMM_VNNI and include it once, after the target pragma and
** gemm_layout.h; it defines ymm_tile for the file's GemmIsa.
** Weights and activations come from the shared packers (gemm_layout.h).
**
** Types: Q4_0, Q8_0 and Q4_K (ymm_layout at the end says why Q5_K and Q6_K
** stay on vec_dot with these kernel sets).
**
** A 32-row tile is computed in passes over 8-row groups: with 16 registers
** (not AVX-512's 32) a pass holds RG groups x NT tokens of integer sums,
** RG = 4 (the whole tile) for one token, the generation case, and for more
** tokens 2 (Q4_0; Q8_0 on AVX-VNNI) or 1 (Q8_0 on AVX2, Q4_K), whichever
** was fastest. A pass reads its rows' dwords of every block of the run, so
** the later passes find the run's weights in L1. Per 4 quants of 8 rows
** (one register) and token (its 4 quants broadcast):
**   AVX-VNNI  vpdpbusd adds the 4 u8 x s8 products of every row into int32,
**             starting from the activations' offset correction, exactly as
**             the AVX-512 kernels do;
**   AVX2      vpmaddubsw multiplies u8 by s8 and sums pairs into int16,
**             which saturates beyond 32767: so
**             Q4_0  (weights 0..15, activations -128..127: a pair is at most
**                   3840) sums all 8 groups of a block in int16 (at most
**                   30720), then vpmaddwd by ones widens the pairs to int32
**                   and the offset correction is added (Q4_K the same per
**                   32-quant sub-block, see sub_flush);
**             Q8_0  (stored q + 128) takes q back, then |q| (0..128) times
**                   the activation with q's sign (|a| <= 127: the engine's
**                   Q8_0 quantizer rounds amax to 127), as llama.cpp does,
**                   so a pair is at most 32512, and widens every group;
** so every block's integer sum is exact on both, as in vec_dot, and the
** float steps are the AVX-512 kernels': per (row, token), blocks in order,
** acc = fma((float)sum, d_row x d_tok, acc). A token's result depends
** neither on the tile's token count nor on the pass its rows fall in.
*/

/* --- the integer sums of one block of one register of rows x one token --- */

#if GEMM_YMM_VNNI
/* The block sum's start: the offset correction of the activations. */
static inline __m256i blk_start(bool q8, int32_t corr)
{
    (void)q8;
    return _mm256_set1_epi32(corr);
}

/* The packed weight register as the block products want it. */
static inline __m256i blk_weights(bool q8, __m256i w)
{
    (void)q8;
    return w;
}

/* s + the products of the 4 quants of every row of w with a's. */
static inline __m256i blk_dot(bool q8, __m256i s, __m256i w, __m256i a)
{
    (void)q8;
    return _mm256_dpbusd_avx_epi32(s, w, a);
}

/* The block's int32 sums. */
static inline __m256i blk_total(bool q8, __m256i s, int32_t corr)
{
    (void)q8, (void)corr;
    return s;
}
#else
/* The block sum's start: 0 (Q4_0's correction is added by blk_total, once
** the int16 pairs are widened; Q8_0 needs none). */
static inline __m256i blk_start(bool q8, int32_t corr)
{
    (void)q8, (void)corr;
    return _mm256_setzero_si256();
}

/* Q8_0: the signed quants (stored + 128). */
static inline __m256i blk_weights(bool q8, __m256i w)
{
    return q8 ? _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)) : w;
}

/* v, which the compiler must hold in a register here: without it GCC
** reassociates a block's chains of integer additions into one tree over
** all its products, which needs far more than 16 registers and spilled
** every product to the stack (2.5 times slower). */
static inline __m256i blk_pin(__m256i v)
{
    __asm__("" : "+x"(v));
    return v;
}

/* Q8_0: int32 sums, |q| x (a with q's sign) widened per group; Q4_0: int16
** pair sums (see the top). */
static inline __m256i blk_dot(bool q8, __m256i s, __m256i w, __m256i a)
{
    if (q8) {
        const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
        return blk_pin(_mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(1))));
    }
    return blk_pin(_mm256_add_epi16(s, _mm256_maddubs_epi16(w, a)));
}

/* Q4_0: the int16 pairs widened, plus the offset correction. */
static inline __m256i blk_total(bool q8, __m256i s, int32_t corr)
{
    return q8 ? s : _mm256_add_epi32(_mm256_madd_epi16(s, _mm256_set1_epi16(1)), _mm256_set1_epi32(corr));
}
#endif

/* --- Q4_K's sub-blocks ---
** A 32-quant sub-block's integer sums (blk_start, blk_dot: AVX2's int16
** pairs reach at most 8 x 2 x 15 x 128 = 30720) are multiplied by the rows'
** six-bit sub-block scales and added to the super-block's int32 total:
** AVX-VNNI by vpmulld, as the AVX-512 kernels; AVX2 by vpmaddwd with the
** scales as int16 pairs, which widens and scales at once. */

/* isum[t][g] += s[t][g] x the rows' scales (sc32: int32 per row, sc16: the
** same as an int16 pair per row), and s[t][g] restarts at 0. */
static inline __attribute__((always_inline)) void sub_flush(const int NT, const int RG, __m256i isum[4][4],
                                                            __m256i s[4][4], const __m256i sc32[4],
                                                            const __m256i sc16[4])
{
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int g = 0; g < RG; g++) {
#if GEMM_YMM_VNNI
            (void)sc16;
            isum[t][g] = _mm256_add_epi32(isum[t][g], _mm256_mullo_epi32(s[t][g], sc32[g]));
#else
            (void)sc32;
            isum[t][g] = _mm256_add_epi32(isum[t][g], _mm256_madd_epi16(s[t][g], sc16[g]));
#endif
            s[t][g] = blk_start(false, 0);
        }
}

/* The unsigned sub-block scales at sc (8 bytes per group) as int32 (sc32)
** and int16 pairs (sc16) for RG groups. */
static inline __attribute__((always_inline)) void sub_scales(const int RG, const uint8_t *sc, __m256i sc32[4],
                                                             __m256i sc16[4])
{
#pragma GCC unroll 4
    for (int g = 0; g < RG; g++) {
        sc32[g] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(sc + 8 * g)));
        sc16[g] = _mm256_blend_epi16(sc32[g], _mm256_slli_epi32(sc32[g], 16), 0xAA);
    }
}

/* acc[t][g] = fma(isum, d x dy, acc) then fnma(m, dmin x dy, acc): one
** super-block's float steps, the fp16 d and dmin of group g at dh + 16 g
** and mh + 16 g. */
static inline __attribute__((always_inline)) void k_accumulate(const int NT, const int RG, __m256 acc[4][4],
                                                               __m256i isum[4][4], __m256i m[4][4], const uint8_t *dh,
                                                               const uint8_t *mh, const float *ad)
{
#pragma GCC unroll 4
    for (int g = 0; g < RG; g++) {
        const __m256 d = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(dh + 16 * g)));
        const __m256 dmin = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(mh + 16 * g)));
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m256 dy = _mm256_set1_ps(ad[t]);
            acc[t][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t][g]), _mm256_mul_ps(d, dy), acc[t][g]);
            acc[t][g] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m[t][g]), _mm256_mul_ps(dmin, dy), acc[t][g]);
        }
    }
}

/* --- tiles --- */

/* Rows of 8-row group g that exist in a tile of nr rows (0..8). */
static inline int ymm_live(int nr, int g)
{
    const int n = nr - 8 * g;
    return n < 0 ? 0 : n > 8 ? 8 : n;
}

/* A lane mask of the first n of 8 floats. */
static inline __m256i ymm_mask(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The float accumulators of groups g0..g0+RG-1 of tokens t < NT: 0 or
** (add) what y holds; rows past nr are not read. */
static inline __attribute__((always_inline)) void part_load(__m256 acc[4][4], const float *y, int64_t ldy, int nr,
                                                            int g0, const int RG, const int NT, bool add)
{
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int g = 0; g < RG; g++) {
            const int live = add ? ymm_live(nr, g0 + g) : 0;
            const float *p = y + t * ldy + 8 * (g0 + g);
            acc[t][g] = live == 8 ? _mm256_loadu_ps(p)
                        : live > 0 ? _mm256_maskload_ps(p, ymm_mask(live))
                                   : _mm256_setzero_ps();
        }
}

/* Stores the rows < nr of groups g0..g0+RG-1 of tokens t < NT. */
static inline __attribute__((always_inline)) void part_store(__m256 acc[4][4], float *y, int64_t ldy, int nr, int g0,
                                                             const int RG, const int NT)
{
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int g = 0; g < RG; g++) {
            const int live = ymm_live(nr, g0 + g);
            float *p = y + t * ldy + 8 * (g0 + g);
            if (live == 8) _mm256_storeu_ps(p, acc[t][g]);
            else if (live > 0) _mm256_maskstore_ps(p, ymm_mask(live), acc[t][g]);
        }
}

/* s[t][g] += w[g] . token t's quad aq[t] for the NT tokens and RG groups. */
static inline __attribute__((always_inline)) void dot_group(bool q8, const int NT, const int RG, __m256i s[4][4],
                                                            const __m256i w[4], const int32_t *aq)
{
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        const __m256i a = _mm256_set1_epi32(aq[t]);
#pragma GCC unroll 4
        for (int g = 0; g < RG; g++) s[t][g] = blk_dot(q8, s[t][g], w[g], a);
    }
}

/* acc[t][g] = fma(sum of s[t][g], d of the rows x token t's d, acc[t][g]):
** one block's float step, d (8 fp16 per group) at dh + 16 g. */
static inline __attribute__((always_inline)) void blk_accumulate(bool q8, const int NT, const int RG, __m256 acc[4][4],
                                                                 __m256i s[4][4], const uint8_t *dh, const float *ad,
                                                                 const int32_t *corr)
{
    __m256 d[4];
#pragma GCC unroll 4
    for (int g = 0; g < RG; g++) d[g] = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(dh + 16 * g)));
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        const __m256 dy = _mm256_set1_ps(ad[t]);
#pragma GCC unroll 4
        for (int g = 0; g < RG; g++)
            acc[t][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(blk_total(q8, s[t][g], corr[t])), _mm256_mul_ps(d[g], dy),
                                        acc[t][g]);
    }
}

/* Q4_0 / Q8_0 (q4: which), groups g0..g0+RG-1 of the tile for NT tokens
** (constants once inlined), blocks in order. */
static inline __attribute__((always_inline)) void part_q4_0_q8_0(bool q4, const int NT, const int RG, int g0,
                                                                 const uint8_t *wp, const uint8_t *ap, int64_t nb,
                                                                 float *y, int64_t ldy, int nr, bool add)
{
    const size_t wblock = q4 ? W40_BLOCK : W80_BLOCK, woff = q4 ? W40_D : W80_D;
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4][4];
    part_load(acc, y, ldy, nr, g0, RG, NT, add);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + (size_t)l * wblock, *ab = ap + l * A0_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        __m256i s[4][4], w[4];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
            for (int g = 0; g < RG; g++) s[t][g] = blk_start(!q4, ((const int32_t *)(const void *)(ab + A0_CORR))[t]);
        if (q4) {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) { /* byte quad k: low nibbles quad k, high nibbles quad k + 4 */
                __m256i r[4];
#pragma GCC unroll 4
                for (int g = 0; g < RG; g++) {
                    r[g] = _mm256_load_si256((const __m256i *)(const void *)(wb + 128 * k + 32 * (g0 + g)));
                    w[g] = _mm256_and_si256(r[g], lo4);
                }
                dot_group(false, NT, RG, s, w, aq + 4 * k);
#pragma GCC unroll 4
                for (int g = 0; g < RG; g++) w[g] = _mm256_and_si256(_mm256_srli_epi16(r[g], 4), lo4);
                dot_group(false, NT, RG, s, w, aq + 4 * (k + 4));
            }
        } else {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
#pragma GCC unroll 4
                for (int g = 0; g < RG; g++)
                    w[g] = blk_weights(true, _mm256_load_si256((const __m256i *)(const void *)(wb + 128 * k + 32 * (g0 + g))));
                dot_group(true, NT, RG, s, w, aq + 4 * k);
            }
        }
        blk_accumulate(!q4, NT, RG, acc, s, wb + woff + 16 * g0, (const float *)(const void *)(ab + A0_D),
                       (const int32_t *)(const void *)(ab + A0_CORR));
    }
    part_store(acc, y, ldy, nr, g0, RG, NT);
}

/* Q4_K, groups g0.. for NT tokens: per super-block
** d dy sum_j sc_j s_j - dmin dy sum_j min_j bsum_j. Weight 64G + 32i + 4c + e
** (sub-block j = 2G + i) is nibble i of byte e of quant dword 8G + c. */
static inline __attribute__((always_inline)) void part_q4_K(const int NT, const int RG, int g0, const uint8_t *wp,
                                                            const uint8_t *ap, int64_t nb, float *y, int64_t ldy,
                                                            int nr, bool add)
{
    const size_t wblock = WK4_BLOCK, scales = WK4_SC;
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4][4];
    part_load(acc, y, ldy, nr, g0, RG, NT, add);
    for (int64_t l = 0; l < nb; l++) {
        const uint8_t *wb = wp + (size_t)l * wblock, *ab = ap + l * AK4_BLOCK;
        const int32_t *aq = (const int32_t *)(const void *)ab;
        const int32_t *bsum = (const int32_t *)(const void *)(ab + AK_EXTRA);
        __m256i isum[4][4], s[4][4], w[4], sc32[4], sc16[4];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
            for (int g = 0; g < RG; g++) isum[t][g] = s[t][g] = _mm256_setzero_si256();
        for (int G = 0; G < 4; G++) {
#pragma GCC unroll 2
            for (int i = 0; i < 2; i++) {
                const int j = 2 * G + i;
                sub_scales(RG, wb + scales + 32 * j + 8 * g0, sc32, sc16);
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++) {
#pragma GCC unroll 4
                    for (int g = 0; g < RG; g++) {
                        const __m256i r = _mm256_load_si256((const __m256i *)(const void *)(wb + 128 * (8 * G + c) + 32 * (g0 + g)));
                        w[g] = _mm256_and_si256(i ? _mm256_srli_epi16(r, 4) : r, lo4);
                    }
                    dot_group(false, NT, RG, s, w, aq + 4 * (16 * G + 8 * i + c));
                }
                sub_flush(NT, RG, isum, s, sc32, sc16);
            }
        }
        /* the minimums: int16 pairs (min 2p, 2p + 1) x the token's bsum pair */
        __m256i m[4][4];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
            for (int g = 0; g < RG; g++) m[t][g] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++)
#pragma GCC unroll 4
            for (int g = 0; g < RG; g++) {
                const __m256i mins = _mm256_cvtepu8_epi16(
                    _mm_load_si128((const __m128i *)(const void *)(wb + scales + WK_MINS + 64 * p + 16 * (g0 + g))));
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++)
                    m[t][g] = _mm256_add_epi32(m[t][g], _mm256_madd_epi16(mins, _mm256_set1_epi32(bsum[4 * p + t])));
            }
        k_accumulate(NT, RG, acc, isum, m, wb + scales + WK_D + 16 * g0, wb + scales + WK_DMIN + 16 * g0,
                     (const float *)(const void *)(ab + AK_D));
    }
    part_store(acc, y, ldy, nr, g0, RG, NT);
}

/* A tile of NT tokens (a constant once inlined) of weights of `type`, in
** passes of RG groups (constants too, per type: the fastest measured,
** 2048 x 2048 x 128 tokens); groups past nr are skipped. */
static inline __attribute__((always_inline)) void tile_nt(int type, const int NT, const uint8_t *wp,
                                                          const uint8_t *ap, int64_t nb, float *y, int64_t ldy, int nr,
                                                          bool add)
{
    const int RQ = NT == 1 ? 4 : 2, R8 = NT == 1 ? 4 : GEMM_YMM_VNNI ? 2 : 1, RK = NT == 1 ? 4 : 1;
    switch (type) {
    case KB_TYPE_Q4_0:
        for (int g0 = 0; g0 < 4 && 8 * g0 < nr; g0 += RQ) part_q4_0_q8_0(true, NT, RQ, g0, wp, ap, nb, y, ldy, nr, add);
        break;
    case KB_TYPE_Q8_0:
        for (int g0 = 0; g0 < 4 && 8 * g0 < nr; g0 += R8) part_q4_0_q8_0(false, NT, R8, g0, wp, ap, nb, y, ldy, nr, add);
        break;
    default:
        for (int g0 = 0; g0 < 4 && 8 * g0 < nr; g0 += RK) part_q4_K(NT, RK, g0, wp, ap, nb, y, ldy, nr, add);
        break;
    }
}

/* GemmIsa.tile: one 32 x nt tile over nb blocks; each token count 1..4 runs
** its own specialised loop. */
static void ymm_tile(int type, const uint8_t *wp, const uint8_t *ap, int64_t nb, float *y, int64_t ldy, int nr, int nt,
                     bool add)
{
    switch (nt) {
    case 1: tile_nt(type, 1, wp, ap, nb, y, ldy, nr, add); break;
    case 2: tile_nt(type, 2, wp, ap, nb, y, ldy, nr, add); break;
    case 3: tile_nt(type, 3, wp, ap, nb, y, ldy, nr, add); break;
    default: tile_nt(type, 4, wp, ap, nb, y, ldy, nr, add); break;
    }
}

/* GemmIsa.layout: Q4_0, Q8_0 and Q4_K. Q5_K and Q6_K stay on vec_dot: their
** reads jump between the quant and high-bit areas of a packed super-block,
** and one token's product over a matrix beyond L3 ran at half the speed of
** vec_dot (AVX2 tiles 15-20 GMAC/s against 30-37, prefetching included). */
static bool ymm_layout(int type, GemmLayout *out)
{
    return (type == KB_TYPE_Q4_0 || type == KB_TYPE_Q8_0 || type == KB_TYPE_Q4_K) && gemm_x86_layout(type, out);
}
