/* vmm/size: sizes and counts from the command line. */
#include <errno.h>
#include <stdint.h>

#include "tests/unit/unit.h"
#include "vmm/size.h"

#define MiB (1ULL << 20)

/* Parse |text| with |unit| as the default and expect success with |want|. */
static void expect_size(const char *text, uint64_t unit, uint64_t want)
{
	uint64_t v = 0xDEADBEEF;

	ck_assert_msg(parse_size(text, unit, &v) == 0, "'%s' refused", text);
	ck_assert_msg(v == want, "'%s' gave %llu, want %llu", text,
		      (unsigned long long)v, (unsigned long long)want);
}

/* Expect failure with |err| and the output left untouched. */
static void expect_size_error(const char *text, int err)
{
	uint64_t v = 12345;
	int rc = parse_size(text, MiB, &v);

	ck_assert_msg(rc == err, "'%s' gave %d, want %d", text, rc, err);
	ck_assert_uint_eq(v, 12345);
}

START_TEST(size_suffixes_are_binary_multiples)
{
	expect_size("1K", MiB, 1ULL << 10);
	expect_size("512K", MiB, 512ULL << 10);
	expect_size("64M", MiB, 64ULL << 20);
	expect_size("2G", MiB, 2ULL << 30);
	expect_size("1T", MiB, 1ULL << 40);
	expect_size("3B", MiB, 3);
}
END_TEST

START_TEST(size_suffixes_accept_lower_case)
{
	expect_size("4k", MiB, 4ULL << 10);
	expect_size("4m", MiB, 4ULL << 20);
	expect_size("4g", MiB, 4ULL << 30);
	expect_size("4t", MiB, 4ULL << 40);
	expect_size("7b", MiB, 7);
}
END_TEST

START_TEST(size_accepts_kib_and_mb_forms)
{
	expect_size("64MiB", MiB, 64ULL << 20);
	expect_size("64MB", MiB, 64ULL << 20);
	expect_size("8KiB", MiB, 8ULL << 10);
	expect_size("8KB", MiB, 8ULL << 10);
	expect_size("2GiB", MiB, 2ULL << 30);
	expect_size("1TB", MiB, 1ULL << 40);
	expect_size("16mib", MiB, 16ULL << 20);
	expect_size("16mb", MiB, 16ULL << 20);
}
END_TEST

START_TEST(size_bare_number_uses_default_unit)
{
	expect_size("512", MiB, 512ULL << 20);
	expect_size("512", 1, 512);
	expect_size("0", MiB, 0);
	expect_size("0007", MiB, 7ULL << 20);
}
END_TEST

START_TEST(size_largest_values_fit)
{
	expect_size("18446744073709551615", 1, UINT64_MAX);
	expect_size("16777215T", MiB, 16777215ULL << 40);
}
END_TEST

START_TEST(size_overflow_is_erange)
{
	/* 2^64 as digits, and values that overflow only after the unit. */
	expect_size_error("18446744073709551616", -ERANGE);
	expect_size_error("99999999999999999999999", -ERANGE);
	expect_size_error("16777216T", -ERANGE);
	expect_size_error("17179869184G", -ERANGE);
	/* A bare number overflows through the default unit too. */
	expect_size_error("18446744073709551615", -ERANGE);
}
END_TEST

START_TEST(size_junk_is_einval)
{
	expect_size_error("", -EINVAL);
	expect_size_error("M", -EINVAL);
	expect_size_error("-1", -EINVAL);
	expect_size_error("+1", -EINVAL);
	expect_size_error(" 1", -EINVAL);
	expect_size_error("1 ", -EINVAL);
	expect_size_error("1X", -EINVAL);
	expect_size_error("1MX", -EINVAL);
	expect_size_error("1MiBB", -EINVAL);
	expect_size_error("1Mi", -EINVAL);
	expect_size_error("1.5G", -EINVAL);
	expect_size_error("0x10", -EINVAL);
	expect_size_error("1BB", -EINVAL);
	expect_size_error("1BiB", -EINVAL);
	expect_size_error(NULL, -EINVAL);
}
END_TEST

START_TEST(uint_in_range)
{
	unsigned v = 99;

	ck_assert_int_eq(parse_uint("1", 1, 64, &v), 0);
	ck_assert_uint_eq(v, 1);
	ck_assert_int_eq(parse_uint("64", 1, 64, &v), 0);
	ck_assert_uint_eq(v, 64);
	ck_assert_int_eq(parse_uint("0", 0, 0, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(parse_uint("4294967295", 0, UINT32_MAX, &v), 0);
	ck_assert_uint_eq(v, UINT32_MAX);
}
END_TEST

START_TEST(uint_out_of_range_is_erange)
{
	unsigned v = 99;

	ck_assert_int_eq(parse_uint("0", 1, 64, &v), -ERANGE);
	ck_assert_int_eq(parse_uint("65", 1, 64, &v), -ERANGE);
	ck_assert_int_eq(parse_uint("4294967296", 0, UINT32_MAX, &v), -ERANGE);
	ck_assert_int_eq(parse_uint("99999999999999999999999", 0, UINT32_MAX,
				    &v), -ERANGE);
	ck_assert_uint_eq(v, 99);
}
END_TEST

START_TEST(uint_junk_is_einval)
{
	unsigned v = 99;

	ck_assert_int_eq(parse_uint("", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(parse_uint("-1", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(parse_uint("4K", 0, 10000, &v), -EINVAL);
	ck_assert_int_eq(parse_uint("2 ", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(parse_uint("two", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(parse_uint(NULL, 0, 10, &v), -EINVAL);
	ck_assert_uint_eq(v, 99);
}
END_TEST

static Suite *size_suite(void)
{
	Suite *s = suite_create("size");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, size_suffixes_are_binary_multiples);
	tcase_add_test(tc, size_suffixes_accept_lower_case);
	tcase_add_test(tc, size_accepts_kib_and_mb_forms);
	tcase_add_test(tc, size_bare_number_uses_default_unit);
	tcase_add_test(tc, size_largest_values_fit);
	tcase_add_test(tc, size_overflow_is_erange);
	tcase_add_test(tc, size_junk_is_einval);
	tcase_add_test(tc, uint_in_range);
	tcase_add_test(tc, uint_out_of_range_is_erange);
	tcase_add_test(tc, uint_junk_is_einval);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(size_suite)
