/*
** quant.c: the tensor type table and scalar conversions.
**
** The table is the single source of block sizes: the GGUF reader validates
** shapes and byte counts with it, `model info` names types with it, and the
** kernels (later) hang their dequant/dot functions off the same ids.
*/
#include <string.h>

#include "engine/engine.h"

/* Types kbchat cannot compute with still have sizes here, so a file holding
** them opens and `model info` can say which tensors are the problem. */
static const KbTypeInfo type_table[KB_TYPE_COUNT] = {
    [KB_TYPE_F32] = {"F32", 1, 4, true},
    [KB_TYPE_F16] = {"F16", 1, 2, true},
    [KB_TYPE_Q4_0] = {"Q4_0", KB_QK, sizeof(BlockQ4_0), true},
    [KB_TYPE_Q4_1] = {"Q4_1", KB_QK, sizeof(BlockQ4_1), true},
    [KB_TYPE_Q5_0] = {"Q5_0", KB_QK, sizeof(BlockQ5_0), true},
    [KB_TYPE_Q5_1] = {"Q5_1", KB_QK, sizeof(BlockQ5_1), true},
    [KB_TYPE_Q8_0] = {"Q8_0", KB_QK, sizeof(BlockQ8_0), true},
    [KB_TYPE_Q8_1] = {"Q8_1", KB_QK, sizeof(BlockQ8_1), false},
    [KB_TYPE_Q2_K] = {"Q2_K", KB_QK_K, sizeof(BlockQ2_K), true},
    [KB_TYPE_Q3_K] = {"Q3_K", KB_QK_K, sizeof(BlockQ3_K), true},
    [KB_TYPE_Q4_K] = {"Q4_K", KB_QK_K, sizeof(BlockQ4_K), true},
    [KB_TYPE_Q5_K] = {"Q5_K", KB_QK_K, sizeof(BlockQ5_K), true},
    [KB_TYPE_Q6_K] = {"Q6_K", KB_QK_K, sizeof(BlockQ6_K), true},
    [KB_TYPE_Q8_K] = {"Q8_K", KB_QK_K, sizeof(BlockQ8_K), false},
    [KB_TYPE_IQ2_XXS] = {"IQ2_XXS", KB_QK_K, 66, false},
    [KB_TYPE_IQ2_XS] = {"IQ2_XS", KB_QK_K, 74, false},
    [KB_TYPE_IQ3_XXS] = {"IQ3_XXS", KB_QK_K, 98, false},
    [KB_TYPE_IQ1_S] = {"IQ1_S", KB_QK_K, 50, false},
    [KB_TYPE_IQ4_NL] = {"IQ4_NL", KB_QK, 18, false},
    [KB_TYPE_IQ3_S] = {"IQ3_S", KB_QK_K, 110, false},
    [KB_TYPE_IQ2_S] = {"IQ2_S", KB_QK_K, 82, false},
    [KB_TYPE_IQ4_XS] = {"IQ4_XS", KB_QK_K, 136, false},
    [KB_TYPE_I8] = {"I8", 1, 1, false},
    [KB_TYPE_I16] = {"I16", 1, 2, false},
    [KB_TYPE_I32] = {"I32", 1, 4, false},
    [KB_TYPE_I64] = {"I64", 1, 8, false},
    [KB_TYPE_F64] = {"F64", 1, 8, false},
    [KB_TYPE_IQ1_M] = {"IQ1_M", KB_QK_K, 56, false},
    [KB_TYPE_BF16] = {"BF16", 1, 2, true},
    [KB_TYPE_TQ1_0] = {"TQ1_0", KB_QK_K, 54, false},
    [KB_TYPE_TQ2_0] = {"TQ2_0", KB_QK_K, 66, false},
};

/* Returns the row for `type`, or NULL for ids outside the table or ids ggml
** removed (their rows are left zero). */
const KbTypeInfo *kb_type_info(int type)
{
    if (type < 0 || type >= KB_TYPE_COUNT) return NULL;
    if (type_table[type].name == NULL) return NULL;
    return &type_table[type];
}

/* Returns the type's name, "?" when unknown. */
const char *kb_type_name(int type)
{
    const KbTypeInfo *ti = kb_type_info(type);
    return ti ? ti->name : "?";
}

/* Names of formats ggml once stored under ids it later removed, so an old or
** experimental file gets an error that says what it is. */
const char *kb_type_removed_name(int type)
{
    switch (type) {
    case 4: return "Q4_2";
    case 5: return "Q4_3";
    case 31: return "Q4_0_4_4";
    case 32: return "Q4_0_4_8";
    case 33: return "Q4_0_8_8";
    case 36: return "IQ4_NL_4_4";
    case 37: return "IQ4_NL_4_8";
    case 38: return "IQ4_NL_8_8";
    default: return NULL;
    }
}

/* --- half precision --- */

/* Converts binary16 to float exactly, subnormals and NaN payloads included. */
float kb_half_to_float(kb_half h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            /* subnormal: normalise the mantissa */
            int e = -1;
            do {
                mant <<= 1;
                e++;
            } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Converts float to binary16 with round-to-nearest-even; overflow gives
** infinity, NaN stays NaN. */
kb_half kb_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t mant = x & 0x7fffff;
    if (exp == 0xff) return (kb_half)(sign | 0x7c00 | (mant ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (kb_half)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return (kb_half)sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t half = mant >> shift;
        uint32_t rest = mant & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half & 1))) half++;
        return (kb_half)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
    return (kb_half)(sign | half);
}

/* bfloat16 is the top half of a float. */
float kb_bf16_to_float(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Rounds to nearest even; NaN is kept quiet rather than rounded to infinity. */
uint16_t kb_float_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
