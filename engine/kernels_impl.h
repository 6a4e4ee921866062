/*
** kernels_impl.h: the portable kernels one by one (internal to engine/).
**
** kernels_scalar.c defines these and gathers them in kb_kernels_scalar. The
** SIMD tables (kernels_avx2.c, kernels_avx512.c) point at them for anything
** they do not implement themselves, so every table is complete.
**
** Names follow ggml's spelling of the types: kb_scalar_to_float_<type>,
** kb_scalar_from_float_<type>, and kb_scalar_vec_dot_<type> for a row of
** <type> (a weight) times a row of its vec_dot_type (see kernels.h).
** Signatures are KbToFloat, KbFromFloat and KbVecDot.
**
** None of them assumes any alignment of its pointers: block fields are read
** with memcpy, so rows may start anywhere in a mapped file.
*/
#ifndef KB_KERNELS_IMPL_H
#define KB_KERNELS_IMPL_H

#include <stdint.h>

/* --- to_float: dequantize n elements (n a multiple of the block size) --- */
void kb_scalar_to_float_f32(const void *x, float *y, int64_t n);
void kb_scalar_to_float_f16(const void *x, float *y, int64_t n);
void kb_scalar_to_float_bf16(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q4_0(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q4_1(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q5_0(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q5_1(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q8_0(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q8_1(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q2_K(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q3_K(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q4_K(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q5_K(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q6_K(const void *x, float *y, int64_t n);
void kb_scalar_to_float_q8_K(const void *x, float *y, int64_t n);

/* --- from_float: the activation types (ggml's reference quantizers) --- */
void kb_scalar_from_float_f32(const float *x, void *y, int64_t n);
void kb_scalar_from_float_f16(const float *x, void *y, int64_t n);
void kb_scalar_from_float_bf16(const float *x, void *y, int64_t n);
void kb_scalar_from_float_q8_0(const float *x, void *y, int64_t n);
void kb_scalar_from_float_q8_1(const float *x, void *y, int64_t n);
void kb_scalar_from_float_q8_K(const float *x, void *y, int64_t n);

/* --- vec_dot: weight row of <type> times activation row of its vec_dot_type --- */
void kb_scalar_vec_dot_f32(int64_t n, float *s, const void *x, const void *y);  /* x F32, y F32 */
void kb_scalar_vec_dot_f16(int64_t n, float *s, const void *x, const void *y);  /* x F16, y F16 */
void kb_scalar_vec_dot_bf16(int64_t n, float *s, const void *x, const void *y); /* x BF16, y BF16 */
void kb_scalar_vec_dot_q4_0(int64_t n, float *s, const void *x, const void *y); /* y Q8_0 */
void kb_scalar_vec_dot_q4_1(int64_t n, float *s, const void *x, const void *y); /* y Q8_1 */
void kb_scalar_vec_dot_q5_0(int64_t n, float *s, const void *x, const void *y); /* y Q8_0 */
void kb_scalar_vec_dot_q5_1(int64_t n, float *s, const void *x, const void *y); /* y Q8_1 */
void kb_scalar_vec_dot_q8_0(int64_t n, float *s, const void *x, const void *y); /* y Q8_0 */
void kb_scalar_vec_dot_q2_K(int64_t n, float *s, const void *x, const void *y); /* y Q8_K */
void kb_scalar_vec_dot_q3_K(int64_t n, float *s, const void *x, const void *y); /* y Q8_K */
void kb_scalar_vec_dot_q4_K(int64_t n, float *s, const void *x, const void *y); /* y Q8_K */
void kb_scalar_vec_dot_q5_K(int64_t n, float *s, const void *x, const void *y); /* y Q8_K */
void kb_scalar_vec_dot_q6_K(int64_t n, float *s, const void *x, const void *y); /* y Q8_K */

#endif /* KB_KERNELS_IMPL_H */
