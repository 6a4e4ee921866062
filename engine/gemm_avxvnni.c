/*
** gemm_avxvnni.c: the tile kernels of the tiled matrix products for CPUs
** with AVX-VNNI (vpdpbusd on 256-bit registers, without AVX-512): the
** kernels of gemm_ymm.h compiled with vpdpbusd, over the shared packings
** (gemm_layout.h, packed by gemm_avx2.c). gemm_select hands them out for
** the AVX-VNNI kernel level, which kb_kernels offers only after checking the
** CPU has it.
*/
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gemm_layout.h"

#define GEMM_YMM_VNNI 1
#include "engine/gemm_ymm.h"

const GemmIsa gemm_isa_avxvnni = {
    "AVX-VNNI", ymm_layout, gemm_x86_pack_acts, gemm_x86_pack_rows, ymm_tile,
};
