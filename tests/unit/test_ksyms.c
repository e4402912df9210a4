/* Guest kernel symbols from a System.map. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/ksyms.h"
#include "tests/unit/unit.h"

static char dir[] = "/tmp/kite-ksyms-XXXXXX";

static void write_map(const char *name)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	/* Unsorted on purpose; data symbols must be ignored. */
	fputs("ffffffff81000100 T second\n"
	      "ffffffff82000000 D some_data\n"
	      "ffffffff81000000 T _stext\n"
	      "ffffffff81000200 t local_fn\n"
	      "garbage line\n", f);
	fclose(f);
}

static void setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	strcpy(dir, "/tmp/kite-ksyms-XXXXXX");
}

START_TEST(test_describe)
{
	struct ksyms k;
	char path[256], buf[128];

	write_map("System.map");
	snprintf(path, sizeof(path), "%s/System.map", dir);
	ck_assert_int_eq(ksyms_load(&k, path), 0);
	ck_assert_uint_eq(k.nr, 3);
	ck_assert_str_eq(ksyms_describe(&k, 0xffffffff81000000ULL, buf, sizeof(buf)), "_stext+0x0");
	ck_assert_str_eq(ksyms_describe(&k, 0xffffffff81000139ULL, buf, sizeof(buf)), "second+0x39");
	ck_assert_str_eq(ksyms_describe(&k, 0xffffffff81000210ULL, buf, sizeof(buf)), "local_fn+0x10");
	ck_assert_ptr_null(ksyms_describe(&k, 0x1000, buf, sizeof(buf)));
	ksyms_free(&k);
}
END_TEST

START_TEST(test_found_next_to_kernel)
{
	struct ksyms k;
	char kernel[256];

	write_map("System.map-6.1.0-56-cloud-amd64");
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz-6.1.0-56-cloud-amd64", dir);
	ck_assert_int_eq(ksyms_load_for_kernel(&k, kernel,
		"6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP"), 0);
	ck_assert_uint_eq(k.nr, 3);
	ksyms_free(&k);
	ck_assert_int_lt(ksyms_load_for_kernel(&k, kernel, "6.1.0-99-amd64 #1"), 0);
	ck_assert_int_lt(ksyms_load_for_kernel(&k, kernel, ""), 0);
	ck_assert_uint_eq(k.nr, 0);
}
END_TEST

static Suite *ksyms_suite(void)
{
	Suite *s = suite_create("ksyms");
	TCase *tc = tcase_create("system_map");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_describe);
	tcase_add_test(tc, test_found_next_to_kernel);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(ksyms_suite)
