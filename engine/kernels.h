/*
** kernels.h: the numeric kernels of the engine.
**
** For every tensor type kbchat computes with there are three row functions,
** modelled on ggml's type traits:
**   to_float    dequantizes a row of the type into floats
**   from_float  converts a row of floats into the type (used for the
**               activation types: F32, F16, BF16, Q8_0, Q8_1, Q8_K)
**   vec_dot     dot product of a row of the type (a weight row) with a row
**               of its vec_dot_type (the activations, converted once per
**               matrix product), as llama.cpp does: Q4_0, Q5_0 and Q8_0 pair
**               with Q8_0; Q4_1 and Q5_1 with Q8_1; the K types with Q8_K;
**               F16 with F16; BF16 with BF16; F32 with F32.
** Row lengths are multiples of the type's block size.
**
** Three implementations exist: portable C (kernels_scalar.c, the reference,
** always correct), AVX2 (kernels_avx2.c) and AVX-512 (kernels_avx512.c).
** A fourth level, AVX-VNNI, runs the AVX2 functions: it exists so that the
** tiled matrix products (gemm.h) can use 256-bit vpdpbusd.
** kb_kernels() picks the best one this CPU runs, once; the SIMD versions
** compute the same values as the portable one up to float summation order.
*/
#ifndef KB_KERNELS_H
#define KB_KERNELS_H

#include <stdint.h>

#include "engine/quant.h"

typedef void (*KbToFloat)(const void *x, float *y, int64_t n);
typedef void (*KbFromFloat)(const float *x, void *y, int64_t n);
/* *s = sum over the row of x[i] * y[i]; x of the weight type, y of its vec_dot_type. */
typedef void (*KbVecDot)(int64_t n, float *s, const void *x, const void *y);

typedef struct KbTypeKernels {
    KbToFloat to_float;     /* NULL for types kbchat does not compute with */
    KbFromFloat from_float; /* NULL for types that are never produced */
    KbVecDot vec_dot;       /* NULL for types that are never a weight */
    int vec_dot_type;       /* the type the activations must be in for vec_dot */
} KbTypeKernels;

/* In order of preference; a CPU may run a level without the one below it
** (AVX-512 without AVX-VNNI), so kb_kernels_for asks about each. */
typedef enum KbIsa { KB_ISA_SCALAR = 0, KB_ISA_AVX2 = 1, KB_ISA_AVXVNNI = 2, KB_ISA_AVX512 = 3, KB_ISA_COUNT } KbIsa;

typedef struct KbKernels {
    KbIsa isa;
    const char *name;                    /* "scalar", "AVX2", "AVX-VNNI", "AVX-512" */
    KbTypeKernels type[KB_TYPE_COUNT];
} KbKernels;

/* Returns the best kernels this CPU can run. Detected once (thread-safe);
** the environment variable KBCHAT_ISA=scalar|avx2|avxvnni|avx512 can lower the
** choice, for tests and for comparing speeds. Never NULL. */
const KbKernels *kb_kernels(void);

/* Returns the kernels of one instruction set, or NULL when this CPU cannot
** run them (tests compare every available set with the portable one). */
const KbKernels *kb_kernels_for(KbIsa isa);

/* The tables, one per file; the SIMD tables fall back to the portable
** functions for anything they do not implement. */
extern const KbKernels kb_kernels_scalar;
extern const KbKernels kb_kernels_avx2;
extern const KbKernels kb_kernels_avxvnni;
extern const KbKernels kb_kernels_avx512;

#endif /* KB_KERNELS_H */
