/*
** quant.h: tensor element types (ggml type ids) and quantized block layouts.
**
** A quantized tensor row is a sequence of blocks; each block holds block_size
** elements in type_size bytes. The block structs below are the on-disk layout
** (little-endian, packed by construction); _Static_assert pins their sizes to
** the GGUF format so a wrong field can never slip through.
*/
#ifndef KB_QUANT_H
#define KB_QUANT_H

#include <stdbool.h>
#include <stdint.h>

/* ggml type ids as stored in GGUF tensor infos. Gaps are ids that ggml
** removed (4, 5, 31-33, 36-38); they are rejected as unknown. */
typedef enum KbType {
    KB_TYPE_F32 = 0,
    KB_TYPE_F16 = 1,
    KB_TYPE_Q4_0 = 2,
    KB_TYPE_Q4_1 = 3,
    KB_TYPE_Q5_0 = 6,
    KB_TYPE_Q5_1 = 7,
    KB_TYPE_Q8_0 = 8,
    KB_TYPE_Q8_1 = 9,
    KB_TYPE_Q2_K = 10,
    KB_TYPE_Q3_K = 11,
    KB_TYPE_Q4_K = 12,
    KB_TYPE_Q5_K = 13,
    KB_TYPE_Q6_K = 14,
    KB_TYPE_Q8_K = 15,
    KB_TYPE_IQ2_XXS = 16,
    KB_TYPE_IQ2_XS = 17,
    KB_TYPE_IQ3_XXS = 18,
    KB_TYPE_IQ1_S = 19,
    KB_TYPE_IQ4_NL = 20,
    KB_TYPE_IQ3_S = 21,
    KB_TYPE_IQ2_S = 22,
    KB_TYPE_IQ4_XS = 23,
    KB_TYPE_I8 = 24,
    KB_TYPE_I16 = 25,
    KB_TYPE_I32 = 26,
    KB_TYPE_I64 = 27,
    KB_TYPE_F64 = 28,
    KB_TYPE_IQ1_M = 29,
    KB_TYPE_BF16 = 30,
    KB_TYPE_TQ1_0 = 34,
    KB_TYPE_TQ2_0 = 35,
    KB_TYPE_COUNT = 39
} KbType;

#define KB_QK 32   /* elements per block of the 32-element formats */
#define KB_QK_K 256 /* elements per super-block of the K formats */

typedef uint16_t kb_half; /* IEEE binary16 bits */

/* One row of the type table. */
typedef struct KbTypeInfo {
    const char *name;  /* "Q4_K", as ggml spells it */
    int block_size;    /* elements per block */
    int type_size;     /* bytes per block */
    bool supported;    /* kbchat can compute with it (IQ/TQ/integer types: no) */
} KbTypeInfo;

/* Returns the table row for ggml type id `type`, or NULL when the id is
** unknown (out of range or a removed id). The row is static. */
const KbTypeInfo *kb_type_info(int type);

/* Returns the name of a type id, or "?" for an unknown id. */
const char *kb_type_name(int type);

/* Returns why an unknown type id is unknown when ggml once used it (removed
** formats such as Q4_0_4_4), else NULL. */
const char *kb_type_removed_name(int type);

/* Half and bfloat16 conversions (exact, round-to-nearest-even on the way in). */
float kb_half_to_float(kb_half h);
kb_half kb_float_to_half(float f);
float kb_bf16_to_float(uint16_t b);
uint16_t kb_float_to_bf16(float f);

/* --- block layouts (see ../shared/docs/engine-reference.md) --- */

typedef struct { kb_half d; uint8_t qs[KB_QK / 2]; } BlockQ4_0;
typedef struct { kb_half d, m; uint8_t qs[KB_QK / 2]; } BlockQ4_1;
typedef struct { kb_half d; uint8_t qh[4]; uint8_t qs[KB_QK / 2]; } BlockQ5_0;
typedef struct { kb_half d, m; uint8_t qh[4]; uint8_t qs[KB_QK / 2]; } BlockQ5_1;
typedef struct { kb_half d; int8_t qs[KB_QK]; } BlockQ8_0;
typedef struct { kb_half d, s; int8_t qs[KB_QK]; } BlockQ8_1;
typedef struct {
    uint8_t scales[KB_QK_K / 16]; /* low 4 bits scale, high 4 bits min */
    uint8_t qs[KB_QK_K / 4];      /* 2-bit quants */
    kb_half d, dmin;
} BlockQ2_K;
typedef struct {
    uint8_t hmask[KB_QK_K / 8];   /* high bit of each quant */
    uint8_t qs[KB_QK_K / 4];      /* low 2 bits */
    uint8_t scales[12];           /* 16 six-bit scales */
    kb_half d;
} BlockQ3_K;
typedef struct {
    kb_half d, dmin;
    uint8_t scales[12];           /* 8 six-bit scales and mins */
    uint8_t qs[KB_QK_K / 2];
} BlockQ4_K;
typedef struct {
    kb_half d, dmin;
    uint8_t scales[12];
    uint8_t qh[KB_QK_K / 8];
    uint8_t qs[KB_QK_K / 2];
} BlockQ5_K;
typedef struct {
    uint8_t ql[KB_QK_K / 2];      /* low 4 bits */
    uint8_t qh[KB_QK_K / 4];      /* high 2 bits */
    int8_t scales[KB_QK_K / 16];
    kb_half d;
} BlockQ6_K;
typedef struct {
    float d;
    int8_t qs[KB_QK_K];
    int16_t bsums[KB_QK_K / 16];
} BlockQ8_K;

_Static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 block is 36 bytes");
_Static_assert(sizeof(BlockQ2_K) == 84, "Q2_K block is 84 bytes");
_Static_assert(sizeof(BlockQ3_K) == 110, "Q3_K block is 110 bytes");
_Static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block is 210 bytes");
_Static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block is 292 bytes");

#endif /* KB_QUANT_H */
