/* arch/x86/e820: inserting reserved windows (the PCI ECAM window) into the
 * memory map derived from guest RAM. */
#include <errno.h>
#include <stdint.h>

#include "arch/x86/e820.h"
#include "tests/unit/unit.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static const struct e820_entry base[] = {
	{ 0, 0x9FC00, E820_TYPE_RAM },
	{ 0x9FC00, 0x100000 - 0x9FC00, E820_TYPE_RESERVED },
	{ 0x100000, 2 * GiB - 0x100000, E820_TYPE_RAM },
	{ 4 * GiB, 1 * GiB, E820_TYPE_RAM },
};

static void load(struct e820_entry *map, unsigned *nr)
{
	for (unsigned i = 0; i < 4; i++)
		map[i] = base[i];
	*nr = 4;
}

START_TEST(reserved_window_goes_in_address_order)
{
	struct e820_entry map[8];
	unsigned nr;

	load(map, &nr);
	ck_assert_int_eq(e820_insert_reserved(map, 8, &nr, 0xE0000000ULL,
					      256 * MiB), 0);
	ck_assert_uint_eq(nr, 5);
	ck_assert_uint_eq(map[3].addr, 0xE0000000ULL);
	ck_assert_uint_eq(map[3].size, 256 * MiB);
	ck_assert_uint_eq(map[3].type, E820_TYPE_RESERVED);
	/* The RAM above 4 GiB moved one slot up, unchanged. */
	ck_assert_uint_eq(map[4].addr, 4 * GiB);
	ck_assert_uint_eq(map[4].type, E820_TYPE_RAM);
	for (unsigned i = 1; i < nr; i++)
		ck_assert_uint_ge(map[i].addr, map[i - 1].addr + map[i - 1].size);
}
END_TEST

START_TEST(reserved_window_at_the_end)
{
	struct e820_entry map[8];
	unsigned nr;

	load(map, &nr);
	ck_assert_int_eq(e820_insert_reserved(map, 8, &nr, 8 * GiB, 4096), 0);
	ck_assert_uint_eq(nr, 5);
	ck_assert_uint_eq(map[4].addr, 8 * GiB);
}
END_TEST

START_TEST(reserved_window_over_ram_is_refused)
{
	struct e820_entry map[8];
	unsigned nr;

	load(map, &nr);
	ck_assert_int_eq(e820_insert_reserved(map, 8, &nr, GiB, 4096), -EINVAL);
	ck_assert_int_eq(e820_insert_reserved(map, 8, &nr, 4 * GiB - 4096,
					      8192), -EINVAL);
	ck_assert_uint_eq(nr, 4);
	ck_assert_uint_eq(map[3].addr, 4 * GiB);
}
END_TEST

START_TEST(reserved_window_empty_wrapping_or_no_room)
{
	struct e820_entry map[4];
	unsigned nr;

	load(map, &nr);
	ck_assert_int_eq(e820_insert_reserved(map, 4, &nr, 0xE0000000ULL, 0),
			 -EINVAL);
	ck_assert_int_eq(e820_insert_reserved(map, 4, &nr, UINT64_MAX - 10,
					      4096), -EINVAL);
	ck_assert_int_eq(e820_insert_reserved(map, 4, &nr, 0xE0000000ULL,
					      4096), -ENOSPC);
	ck_assert_uint_eq(nr, 4);
}
END_TEST

START_TEST(place_high_takes_the_highest_page_in_ram_below_the_limit)
{
	uint64_t gpa = 0;

	/* Below 4 GiB the top of the first big RAM entry, page aligned. */
	ck_assert_int_eq(e820_place_high(base, 4, 10000, MiB, 4 * GiB, &gpa), 0);
	ck_assert_uint_eq(gpa, (2 * GiB - 10000) & ~0xfffULL);
	/* The limit cuts an entry; RAM above it is not used. */
	ck_assert_int_eq(e820_place_high(base, 4, 4096, MiB, 1 * GiB, &gpa), 0);
	ck_assert_uint_eq(gpa, 1 * GiB - 4096);
	/* Without a limit the highest entry wins. */
	ck_assert_int_eq(e820_place_high(base, 4, 4096, 0, UINT64_MAX, &gpa),
			 0);
	ck_assert_uint_eq(gpa, 5 * GiB - 4096);
	/* Reserved entries and the part below |low| are never used. */
	ck_assert_int_eq(e820_place_high(base, 2, 4096, 0x9F000, MiB, &gpa),
			 -E2BIG);
	ck_assert_int_eq(e820_place_high(base, 4, 3 * GiB, 0, 4 * GiB, &gpa),
			 -E2BIG);
}
END_TEST

static Suite *e820_suite(void)
{
	Suite *s = suite_create("e820");
	TCase *tc = tcase_create("reserved");

	tcase_add_test(tc, reserved_window_goes_in_address_order);
	tcase_add_test(tc, reserved_window_at_the_end);
	tcase_add_test(tc, reserved_window_over_ram_is_refused);
	tcase_add_test(tc, reserved_window_empty_wrapping_or_no_room);
	tcase_add_test(tc, place_high_takes_the_highest_page_in_ram_below_the_limit);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(e820_suite)
