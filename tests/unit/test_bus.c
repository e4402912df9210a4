/* vmm/bus: range registration and access dispatch. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "vmm/bus.h"

/* A device that records its last access and answers reads with a value
 * derived from the offset, so a test can tell which device and offset an
 * access reached. */
struct recorder {
	unsigned id;
	unsigned reads, writes;
	uint64_t offset;
	unsigned size;
	uint64_t value;
};

static void rec_read(void *opaque, uint64_t offset, unsigned size,
		     uint64_t *value)
{
	struct recorder *r = opaque;

	ck_assert_uint_eq(*value, 0); /* the bus zeroes it first */
	r->reads++;
	r->offset = offset;
	r->size = size;
	*value = ((uint64_t)r->id << 16) | offset;
}

static void rec_write(void *opaque, uint64_t offset, unsigned size,
		      uint64_t value)
{
	struct recorder *r = opaque;

	r->writes++;
	r->offset = offset;
	r->size = size;
	r->value = value;
}

static const struct bus_ops rec_ops = { .read = rec_read, .write = rec_write };
static const struct bus_ops write_only_ops = { .write = rec_write };

static struct bus bus;
static struct recorder dev_a, dev_b, dev_c;

static void setup(void)
{
	ck_assert_int_eq(bus_init(&bus, "test"), 0);
	memset(&dev_a, 0, sizeof(dev_a));
	memset(&dev_b, 0, sizeof(dev_b));
	memset(&dev_c, 0, sizeof(dev_c));
	dev_a.id = 1;
	dev_b.id = 2;
	dev_c.id = 3;
}

static void teardown(void)
{
	bus_destroy(&bus);
}

static int reg(uint64_t base, uint64_t len, struct recorder *dev)
{
	return bus_register(&bus, base, len, &rec_ops, dev, "dev");
}

/* A read at |addr| reaches |dev| at |offset|. */
static void expect_read(uint64_t addr, unsigned size, struct recorder *dev,
			uint64_t offset)
{
	uint64_t v = 0x5555;

	ck_assert_int_eq(bus_read(&bus, addr, size, &v), 0);
	ck_assert_uint_eq(v, ((uint64_t)dev->id << 16) | offset);
	ck_assert_uint_eq(dev->offset, offset);
	ck_assert_uint_eq(dev->size, size);
}

/* Nothing covers the whole access: all-ones of the access size. */
static void expect_unmapped(uint64_t addr, unsigned size)
{
	uint64_t v = 0;
	uint64_t ones = size == 8 ? UINT64_MAX : (1ULL << (size * 8)) - 1;
	unsigned before = dev_a.reads + dev_b.reads + dev_c.reads;

	ck_assert_int_eq(bus_read(&bus, addr, size, &v), -ENOENT);
	ck_assert_uint_eq(v, ones);
	ck_assert_int_eq(bus_write(&bus, addr, size, 0x12), -ENOENT);
	ck_assert_uint_eq(dev_a.reads + dev_b.reads + dev_c.reads, before);
}

START_TEST(dispatch_with_offsets)
{
	ck_assert_int_eq(reg(0x3F8, 8, &dev_a), 0);
	ck_assert_int_eq(reg(0x2F8, 8, &dev_b), 0);
	expect_read(0x3F8, 1, &dev_a, 0);
	expect_read(0x3FD, 1, &dev_a, 5);
	expect_read(0x3FC, 4, &dev_a, 4);
	expect_read(0x2FF, 1, &dev_b, 7);
	expect_read(0x2F8, 8, &dev_b, 0);

	ck_assert_int_eq(bus_write(&bus, 0x3F9, 1, 0xAB), 0);
	ck_assert_uint_eq(dev_a.writes, 1);
	ck_assert_uint_eq(dev_a.offset, 1);
	ck_assert_uint_eq(dev_a.size, 1);
	ck_assert_uint_eq(dev_a.value, 0xAB);
	ck_assert_uint_eq(dev_b.writes, 0);
}
END_TEST

START_TEST(write_value_truncated_to_size)
{
	ck_assert_int_eq(reg(0x1000, 0x100, &dev_a), 0);
	ck_assert_int_eq(bus_write(&bus, 0x1000, 1, 0x11223344AABBCCDDULL), 0);
	ck_assert_uint_eq(dev_a.value, 0xDD);
	ck_assert_int_eq(bus_write(&bus, 0x1000, 2, 0x11223344AABBCCDDULL), 0);
	ck_assert_uint_eq(dev_a.value, 0xCCDD);
	ck_assert_int_eq(bus_write(&bus, 0x1000, 4, 0x11223344AABBCCDDULL), 0);
	ck_assert_uint_eq(dev_a.value, 0xAABBCCDD);
	ck_assert_int_eq(bus_write(&bus, 0x1000, 8, 0x11223344AABBCCDDULL), 0);
	ck_assert_uint_eq(dev_a.value, 0x11223344AABBCCDDULL);
}
END_TEST

START_TEST(many_ranges_sorted_lookup)
{
	static struct recorder devs[40];

	/* Registered out of order, more than the initial capacity. */
	for (unsigned i = 0; i < 40; i++) {
		unsigned slot = (i * 17) % 40;

		devs[slot].id = 100 + slot;
		ck_assert_int_eq(reg(0x10000 + slot * 0x100, 0x10, &devs[slot]),
				 0);
	}
	ck_assert_uint_eq(bus.nr, 40);
	for (unsigned i = 1; i < bus.nr; i++)
		ck_assert_uint_lt(bus.ranges[i - 1].base, bus.ranges[i].base);
	for (unsigned slot = 0; slot < 40; slot++) {
		expect_read(0x10000 + slot * 0x100 + 3, 1, &devs[slot], 3);
		expect_unmapped(0x10000 + slot * 0x100 + 0x10, 1);
	}
}
END_TEST

START_TEST(overlap_refused)
{
	ck_assert_int_eq(reg(0x100, 0x10, &dev_a), 0);
	/* Identical, partial at either end, enclosed, enclosing. */
	ck_assert_int_eq(reg(0x100, 0x10, &dev_b), -EEXIST);
	ck_assert_int_eq(reg(0xF8, 0x10, &dev_b), -EEXIST);
	ck_assert_int_eq(reg(0x10F, 0x10, &dev_b), -EEXIST);
	ck_assert_int_eq(reg(0x104, 0x4, &dev_b), -EEXIST);
	ck_assert_int_eq(reg(0x0, 0x1000, &dev_b), -EEXIST);
	ck_assert_int_eq(reg(0xFF, 2, &dev_b), -EEXIST);
	ck_assert_int_eq(reg(0x10F, 1, &dev_b), -EEXIST);
	ck_assert_uint_eq(bus.nr, 1);
	/* The original still answers. */
	expect_read(0x10F, 1, &dev_a, 0xF);
}
END_TEST

START_TEST(overlap_refused_between_neighbours)
{
	ck_assert_int_eq(reg(0x100, 0x10, &dev_a), 0);
	ck_assert_int_eq(reg(0x200, 0x10, &dev_b), 0);
	/* Spans the gap and touches only the second range. */
	ck_assert_int_eq(reg(0x110, 0xF1, &dev_c), -EEXIST);
	/* Encloses both. */
	ck_assert_int_eq(reg(0x80, 0x1000, &dev_c), -EEXIST);
	/* Fits the gap exactly. */
	ck_assert_int_eq(reg(0x110, 0xF0, &dev_c), 0);
	expect_read(0x110, 1, &dev_c, 0);
	expect_read(0x1FF, 1, &dev_c, 0xEF);
}
END_TEST

START_TEST(adjacent_ranges_fine)
{
	ck_assert_int_eq(reg(0x100, 0x10, &dev_a), 0);
	ck_assert_int_eq(reg(0x110, 0x10, &dev_b), 0);
	ck_assert_int_eq(reg(0xF0, 0x10, &dev_c), 0);
	expect_read(0xFF, 1, &dev_c, 0xF);
	expect_read(0x100, 1, &dev_a, 0);
	expect_read(0x10F, 1, &dev_a, 0xF);
	expect_read(0x110, 1, &dev_b, 0);
}
END_TEST

START_TEST(unmapped_reads_all_ones)
{
	ck_assert_int_eq(reg(0x100, 0x10, &dev_a), 0);
	expect_unmapped(0x0, 1);
	expect_unmapped(0xFF, 1);
	expect_unmapped(0x110, 2);
	expect_unmapped(0x110, 4);
	expect_unmapped(0x110, 8);
	expect_unmapped(UINT64_MAX, 1);
}
END_TEST

START_TEST(empty_bus_unmapped)
{
	expect_unmapped(0, 1);
	expect_unmapped(0x80, 4);
}
END_TEST

START_TEST(access_straddling_ranges_refused)
{
	ck_assert_int_eq(reg(0x100, 0x10, &dev_a), 0);
	ck_assert_int_eq(reg(0x110, 0x10, &dev_b), 0);
	/* Two adjacent ranges: an access across the seam reaches neither. */
	expect_unmapped(0x10E, 4);
	expect_unmapped(0x10F, 2);
	expect_unmapped(0x10C, 8);
	/* Running off the end into nothing, or starting before the range. */
	expect_unmapped(0x11E, 4);
	expect_unmapped(0xFF, 2);
	ck_assert_uint_eq(dev_a.writes + dev_b.writes, 0);
	/* Exactly at the end is fine. */
	expect_read(0x10C, 4, &dev_a, 0xC);
	expect_read(0x118, 8, &dev_b, 8);
}
END_TEST

START_TEST(access_at_top_of_address_space)
{
	ck_assert_int_eq(reg(UINT64_MAX - 0xF, 0x10, &dev_a), 0);
	expect_read(UINT64_MAX - 7, 8, &dev_a, 8);
	expect_read(UINT64_MAX, 1, &dev_a, 0xF);
	/* addr + size wraps past the top. */
	expect_unmapped(UINT64_MAX, 2);
	expect_unmapped(UINT64_MAX - 2, 8);
}
END_TEST

START_TEST(bad_sizes_refused)
{
	uint64_t v = 7;

	ck_assert_int_eq(reg(0x100, 0x10, &dev_a), 0);
	for (unsigned size = 0; size <= 16; size++) {
		if (size == 1 || size == 2 || size == 4 || size == 8)
			continue;
		ck_assert_int_eq(bus_read(&bus, 0x100, size, &v), -EINVAL);
		ck_assert_int_eq(bus_write(&bus, 0x100, size, 1), -EINVAL);
	}
	ck_assert_int_eq(bus_read(&bus, 0x100, 64, &v), -EINVAL);
	ck_assert_int_eq(bus_read(&bus, 0x100, UINT32_MAX, &v), -EINVAL);
	ck_assert_uint_eq(dev_a.reads + dev_a.writes, 0);
}
END_TEST

START_TEST(register_bad_ranges_refused)
{
	ck_assert_int_eq(reg(0x100, 0, &dev_a), -EINVAL);
	ck_assert_int_eq(reg(UINT64_MAX, 2, &dev_a), -EINVAL);
	ck_assert_int_eq(reg(UINT64_MAX - 0xF, 0x11, &dev_a), -EINVAL);
	ck_assert_int_eq(reg(2, UINT64_MAX, &dev_a), -EINVAL);
	ck_assert_int_eq(bus_register(&bus, 0x100, 1, NULL, &dev_a, "x"),
			 -EINVAL);
	ck_assert_uint_eq(bus.nr, 0);
	/* The largest ranges that do not wrap are fine. */
	ck_assert_int_eq(reg(0, UINT64_MAX, &dev_a), 0);
	ck_assert_int_eq(reg(UINT64_MAX, 1, &dev_b), 0);
	expect_read(UINT64_MAX - 1, 1, &dev_a, UINT64_MAX - 1);
	expect_read(UINT64_MAX, 1, &dev_b, 0);
}
END_TEST

START_TEST(missing_callbacks)
{
	uint64_t v = 0x77;

	ck_assert_int_eq(bus_register(&bus, 0x80, 1, &write_only_ops, &dev_a,
				      "post"), 0);
	/* A covered range without a read callback reads 0, not all-ones. */
	ck_assert_int_eq(bus_read(&bus, 0x80, 1, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(bus_write(&bus, 0x80, 1, 0x42), 0);
	ck_assert_uint_eq(dev_a.value, 0x42);
}
END_TEST

START_TEST(unregister)
{
	ck_assert_int_eq(reg(0x100, 0x10, &dev_a), 0);
	ck_assert_int_eq(reg(0x200, 0x10, &dev_b), 0);
	/* Only the exact base identifies a range. */
	ck_assert_int_eq(bus_unregister(&bus, 0x104), -ENOENT);
	ck_assert_int_eq(bus_unregister(&bus, 0x300), -ENOENT);
	ck_assert_int_eq(bus_unregister(&bus, 0x100), 0);
	expect_unmapped(0x100, 1);
	expect_read(0x200, 1, &dev_b, 0);
	ck_assert_int_eq(bus_unregister(&bus, 0x100), -ENOENT);
	/* The space is free again. */
	ck_assert_int_eq(reg(0x108, 0x10, &dev_c), 0);
	expect_read(0x110, 1, &dev_c, 8);
	ck_assert_int_eq(bus_unregister(&bus, 0x200), 0);
	ck_assert_int_eq(bus_unregister(&bus, 0x108), 0);
	ck_assert_uint_eq(bus.nr, 0);
	expect_unmapped(0x110, 1);
}
END_TEST

START_TEST(move)
{
	ck_assert_int_eq(reg(0xE0000000, 0x1000, &dev_a), 0);
	ck_assert_int_eq(reg(0xD0000000, 0x1000, &dev_b), 0);
	ck_assert_int_eq(bus_move(&bus, 0xE0000000, 0xF0000000), 0);
	expect_unmapped(0xE0000000, 4);
	expect_read(0xF0000010, 4, &dev_a, 0x10);
	/* Moved below its neighbour: the sort order follows. */
	ck_assert_int_eq(bus_move(&bus, 0xF0000000, 0xC0000000), 0);
	expect_read(0xC0000FFC, 4, &dev_a, 0xFFC);
	expect_read(0xD0000000, 4, &dev_b, 0);
	ck_assert_uint_lt(bus.ranges[0].base, bus.ranges[1].base);
	/* Moving onto itself shifted by less than its length is allowed. */
	ck_assert_int_eq(bus_move(&bus, 0xC0000000, 0xC0000800), 0);
	expect_read(0xC0000800, 1, &dev_a, 0);
	expect_unmapped(0xC0000000, 1);
	ck_assert_int_eq(bus_move(&bus, 0xC0000800, 0xC0000800), 0);
}
END_TEST

START_TEST(move_onto_overlap_refused)
{
	ck_assert_int_eq(reg(0x1000, 0x100, &dev_a), 0);
	ck_assert_int_eq(reg(0x2000, 0x100, &dev_b), 0);
	ck_assert_int_eq(bus_move(&bus, 0x1000, 0x2000), -EEXIST);
	ck_assert_int_eq(bus_move(&bus, 0x1000, 0x1F01), -EEXIST);
	ck_assert_int_eq(bus_move(&bus, 0x1000, 0x20FF), -EEXIST);
	/* Nothing moved. */
	expect_read(0x1000, 1, &dev_a, 0);
	expect_read(0x2000, 1, &dev_b, 0);
	/* Just touching is fine. */
	ck_assert_int_eq(bus_move(&bus, 0x1000, 0x1F00), 0);
	expect_read(0x1FFF, 1, &dev_a, 0xFF);
	expect_read(0x2000, 1, &dev_b, 0);
}
END_TEST

START_TEST(move_errors)
{
	ck_assert_int_eq(reg(0x1000, 0x100, &dev_a), 0);
	ck_assert_int_eq(bus_move(&bus, 0x1004, 0x5000), -ENOENT);
	ck_assert_int_eq(bus_move(&bus, 0x9000, 0x5000), -ENOENT);
	/* The new place would wrap around the top. */
	ck_assert_int_eq(bus_move(&bus, 0x1000, UINT64_MAX - 0x10), -EINVAL);
	expect_read(0x1000, 1, &dev_a, 0);
	ck_assert_int_eq(bus_move(&bus, 0x1000, UINT64_MAX - 0xFF), 0);
	expect_read(UINT64_MAX, 1, &dev_a, 0xFF);
}
END_TEST

static Suite *bus_suite(void)
{
	Suite *s = suite_create("bus");
	TCase *tc = tcase_create("ranges");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, dispatch_with_offsets);
	tcase_add_test(tc, write_value_truncated_to_size);
	tcase_add_test(tc, many_ranges_sorted_lookup);
	tcase_add_test(tc, overlap_refused);
	tcase_add_test(tc, overlap_refused_between_neighbours);
	tcase_add_test(tc, adjacent_ranges_fine);
	tcase_add_test(tc, unmapped_reads_all_ones);
	tcase_add_test(tc, empty_bus_unmapped);
	tcase_add_test(tc, access_straddling_ranges_refused);
	tcase_add_test(tc, access_at_top_of_address_space);
	tcase_add_test(tc, bad_sizes_refused);
	tcase_add_test(tc, register_bad_ranges_refused);
	tcase_add_test(tc, missing_callbacks);
	tcase_add_test(tc, unregister);
	tcase_add_test(tc, move);
	tcase_add_test(tc, move_onto_overlap_refused);
	tcase_add_test(tc, move_errors);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(bus_suite)
