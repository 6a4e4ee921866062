/*
** test_quant.c: the tensor type table, half/bfloat16 conversions and status
** names. Expected sizes come from ../shared/docs/engine-reference.md and the
** IEEE 754 binary16 definition, not from our code.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"

/* Block sizes and bytes per block, as the engine reference lists them. */
static void test_type_table_matches_reference_block_layouts(void **state)
{
    (void)state;
    static const struct { int id; const char *name; int elems, bytes; } ref[] = {
        {0, "F32", 1, 4},      {1, "F16", 1, 2},      {2, "Q4_0", 32, 18},  {3, "Q4_1", 32, 20},
        {6, "Q5_0", 32, 22},   {7, "Q5_1", 32, 24},   {8, "Q8_0", 32, 34},  {10, "Q2_K", 256, 84},
        {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210},
        {15, "Q8_K", 256, 292}, {30, "BF16", 1, 2},
    };
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        const KbTypeInfo *ti = kb_type_info(ref[i].id);
        assert_non_null(ti);
        assert_string_equal(ti->name, ref[i].name);
        assert_int_equal(ti->block_size, ref[i].elems);
        assert_int_equal(ti->type_size, ref[i].bytes);
    }
}

static void test_type_table_rejects_unknown_and_removed_ids(void **state)
{
    (void)state;
    int unknown[] = {-1, 4, 5, 31, 32, 33, 36, 37, 38, 39, 1000};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_null(kb_type_info(unknown[i]));
        assert_string_equal(kb_type_name(unknown[i]), "?");
    }
    assert_string_equal(kb_type_removed_name(31), "Q4_0_4_4");
    assert_null(kb_type_removed_name(2));
}

static void test_types_kbchat_computes_with_are_marked_supported(void **state)
{
    (void)state;
    int yes[] = {0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 30};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) assert_true(kb_type_info(yes[i])->supported);
    int no[] = {16, 17, 18, 19, 20, 21, 22, 23, 29};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) assert_false(kb_type_info(no[i])->supported);
}

static void test_half_to_float_known_values(void **state)
{
    (void)state;
    assert_true(kb_half_to_float(0x3c00) == 1.0f);
    assert_true(kb_half_to_float(0xc000) == -2.0f);
    assert_true(kb_half_to_float(0x7bff) == 65504.0f);
    assert_true(kb_half_to_float(0x0400) == ldexpf(1.0f, -14)); /* smallest normal */
    assert_true(kb_half_to_float(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(kb_half_to_float(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(kb_half_to_float(0x8000) == 0.0f && signbit(kb_half_to_float(0x8000)));
    assert_true(isinf(kb_half_to_float(0x7c00)) && kb_half_to_float(0x7c00) > 0);
    assert_true(isnan(kb_half_to_float(0x7e00)));
}

/* Every finite half survives half -> float -> half. */
static void test_half_round_trips_every_value(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN payloads */
        assert_int_equal(kb_float_to_half(kb_half_to_float((kb_half)h)), h);
    }
}

static void test_float_to_half_rounds_to_nearest_even(void **state)
{
    (void)state;
    assert_int_equal(kb_float_to_half(1.0f + ldexpf(1.0f, -11)), 0x3c00);     /* tie, even stays */
    assert_int_equal(kb_float_to_half(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02); /* tie, odd rounds up */
    assert_int_equal(kb_float_to_half(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3c01);
    assert_int_equal(kb_float_to_half(65520.0f), 0x7c00); /* rounds past max: infinity */
    assert_int_equal(kb_float_to_half(ldexpf(1.0f, -25)), 0x0000); /* tie to even zero */
    assert_int_equal(kb_float_to_half(ldexpf(3.0f, -26)), 0x0001);
    assert_int_equal(kb_float_to_half(-0.0f), 0x8000);
}

static void test_bf16_conversions(void **state)
{
    (void)state;
    assert_true(kb_bf16_to_float(0x3f80) == 1.0f);
    assert_true(kb_bf16_to_float(0xc040) == -3.0f);
    assert_int_equal(kb_float_to_bf16(1.0f), 0x3f80);
    assert_int_equal(kb_float_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);     /* tie to even */
    assert_int_equal(kb_float_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82); /* tie, odd rounds up */
    assert_true(isnan(kb_bf16_to_float(kb_float_to_bf16(NAN))));
}

static void test_every_status_code_has_a_name(void **state)
{
    (void)state;
    assert_string_equal(kb_strerror(KB_OK), "ok");
    for (int rc = 1; rc < KB_STATUS_COUNT; rc++) {
        assert_non_null(kb_strerror(rc));
        assert_string_not_equal(kb_strerror(rc), "unknown error");
    }
    assert_string_equal(kb_strerror(KB_STATUS_COUNT), "unknown error");
    assert_string_equal(kb_strerror(-5), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table_matches_reference_block_layouts),
        cmocka_unit_test(test_type_table_rejects_unknown_and_removed_ids),
        cmocka_unit_test(test_types_kbchat_computes_with_are_marked_supported),
        cmocka_unit_test(test_half_to_float_known_values),
        cmocka_unit_test(test_half_round_trips_every_value),
        cmocka_unit_test(test_float_to_half_rounds_to_nearest_even),
        cmocka_unit_test(test_bf16_conversions),
        cmocka_unit_test(test_every_status_code_has_a_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
