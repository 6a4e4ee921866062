/*
** kernels_simd.h: the AVX2 kernels one by one (internal to engine/).
**
** kernels_avx2.c defines these and gathers them in kb_kernels_avx2; the
** AVX-512 table (kernels_avx512.c) points at them where 512-bit registers do
** not pay. Only call them on a CPU with AVX2, FMA and F16C (kb_kernels_for
** checks). Signatures are KbToFloat, KbFromFloat and KbVecDot (kernels.h);
** no pointer needs any alignment.
*/
#ifndef KB_KERNELS_SIMD_H
#define KB_KERNELS_SIMD_H

#include <stdint.h>

void kb_avx2_to_float_f16(const void *x, float *y, int64_t n);
void kb_avx2_to_float_bf16(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q4_0(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q4_1(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q5_0(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q5_1(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q8_0(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q2_K(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q3_K(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q4_K(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q5_K(const void *x, float *y, int64_t n);
void kb_avx2_to_float_q6_K(const void *x, float *y, int64_t n);

void kb_avx2_from_float_f16(const float *x, void *y, int64_t n);
void kb_avx2_from_float_bf16(const float *x, void *y, int64_t n);
void kb_avx2_from_float_q8_0(const float *x, void *y, int64_t n);
void kb_avx2_from_float_q8_1(const float *x, void *y, int64_t n);
void kb_avx2_from_float_q8_K(const float *x, void *y, int64_t n);

void kb_avx2_vec_dot_f32(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_f16(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_bf16(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q4_0(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q4_1(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q5_0(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q5_1(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q8_0(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q2_K(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q3_K(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q4_K(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q5_K(int64_t n, float *s, const void *x, const void *y);
void kb_avx2_vec_dot_q6_K(int64_t n, float *s, const void *x, const void *y);

#endif /* KB_KERNELS_SIMD_H */
