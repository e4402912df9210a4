/* vmm/memory: guest RAM layout and checked translation (no KVM needed). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "vmm/memory.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define SMALL (256 * MiB)
/* More than 3 GiB, so RAM is split around the PCI hole; MAP_NORESERVE
 * keeps it cheap. */
#define BIG (3 * GiB + 512 * MiB)
#define HIGH_SIZE (BIG - GUEST_PCI_HOLE_START)

static struct guest_memory mem;

static void setup_small(void)
{
	ck_assert_int_eq(guest_memory_create(&mem, SMALL, NULL), 0);
}

static void setup_big(void)
{
	ck_assert_int_eq(guest_memory_create(&mem, BIG, NULL), 0);
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
}

/* translate() succeeds and returns the host address base + |host_off|. */
static void expect_at(uint64_t gpa, uint64_t len, uint64_t host_off)
{
	void *hva = NULL;
	int rc = guest_memory_translate(&mem, gpa, len, &hva);

	ck_assert_msg(rc == 0, "gpa 0x%llx len 0x%llx refused (%d)",
		      (unsigned long long)gpa, (unsigned long long)len, rc);
	ck_assert_ptr_eq(hva, mem.base + host_off);
	ck_assert(guest_memory_is_ram(&mem, gpa, len));
}

/* translate() refuses with -EFAULT and leaves *hva alone. */
static void expect_fault(uint64_t gpa, uint64_t len)
{
	void *hva = (void *)&mem;
	int rc = guest_memory_translate(&mem, gpa, len, &hva);

	ck_assert_msg(rc == -EFAULT, "gpa 0x%llx len 0x%llx gave %d",
		      (unsigned long long)gpa, (unsigned long long)len, rc);
	ck_assert_ptr_eq(hva, &mem);
	ck_assert(!guest_memory_is_ram(&mem, gpa, len));
}

START_TEST(small_layout_is_one_region)
{
	ck_assert_uint_eq(mem.total, SMALL);
	ck_assert_uint_eq(mem.nr_regions, 1);
	ck_assert_uint_eq(mem.regions[0].gpa, 0);
	ck_assert_uint_eq(mem.regions[0].size, SMALL);
	ck_assert_ptr_eq(mem.regions[0].hva, mem.base);
	ck_assert_int_ge(mem.fd, 0);
}
END_TEST

START_TEST(inside_region)
{
	expect_at(0, 1, 0);
	expect_at(0x1000, 0x1000, 0x1000);
	expect_at(0, SMALL, 0);
	expect_at(SMALL - 8, 8, SMALL - 8);
}
END_TEST

START_TEST(exact_end_and_one_past)
{
	expect_at(SMALL - 1, 1, SMALL - 1);
	expect_fault(SMALL - 1, 2);
	expect_fault(SMALL, 1);
	expect_fault(SMALL + 1, 1);
	expect_fault(0, SMALL + 1);
	expect_fault(8 * GiB, 4);
}
END_TEST

START_TEST(zero_length)
{
	expect_at(0, 0, 0);
	expect_at(0x1234, 0, 0x1234);
	/* At the very end of a region: valid, as documented. */
	expect_at(SMALL, 0, SMALL);
	expect_fault(SMALL + 1, 0);
	expect_fault(UINT64_MAX, 0);
}
END_TEST

START_TEST(wraparound_refused)
{
	expect_fault(UINT64_MAX, 1);
	expect_fault(UINT64_MAX, 2);
	expect_fault(UINT64_MAX - 0xF, 0x20);
	expect_fault(UINT64_MAX - SMALL + 2, SMALL);
	/* gpa + len wraps to a small number inside RAM. */
	expect_fault(UINT64_MAX - 0xFFF, 0x2000);
}
END_TEST

START_TEST(length_overflow_refused)
{
	expect_fault(0, UINT64_MAX);
	expect_fault(1, UINT64_MAX);
	expect_fault(0x1000, UINT64_MAX - 0xFFF);
	expect_fault(SMALL - 1, UINT64_MAX);
	expect_fault(0x1000, (uint64_t)1 << 63);
}
END_TEST

START_TEST(translate_without_hva)
{
	ck_assert_int_eq(guest_memory_translate(&mem, 0x100, 0x100, NULL), 0);
	ck_assert_int_eq(guest_memory_translate(&mem, SMALL, 1, NULL), -EFAULT);
}
END_TEST

START_TEST(big_layout_splits_around_hole)
{
	ck_assert_uint_eq(mem.total, BIG);
	ck_assert_uint_eq(mem.nr_regions, 2);
	ck_assert_uint_eq(mem.regions[0].gpa, 0);
	ck_assert_uint_eq(mem.regions[0].size, GUEST_PCI_HOLE_START);
	ck_assert_ptr_eq(mem.regions[0].hva, mem.base);
	ck_assert_uint_eq(mem.regions[1].gpa, GUEST_PCI_HOLE_END);
	ck_assert_uint_eq(mem.regions[1].size, HIGH_SIZE);
	ck_assert_ptr_eq(mem.regions[1].hva, mem.base + GUEST_PCI_HOLE_START);
}
END_TEST

START_TEST(pci_hole_is_not_ram)
{
	expect_at(GUEST_PCI_HOLE_START - 0x1000, 0x1000,
		  GUEST_PCI_HOLE_START - 0x1000);
	expect_fault(GUEST_PCI_HOLE_START, 1);
	expect_fault(GUEST_PCI_HOLE_START + 0x1000, 0x1000);
	expect_fault(0xFEC00000, 4);   /* IOAPIC */
	expect_fault(0xFEE00000, 4);   /* local APIC */
	expect_fault(0xFFFFFFF0, 16);  /* reset vector */
	expect_fault(GUEST_PCI_HOLE_END - 1, 1);
}
END_TEST

START_TEST(crossing_into_hole_refused)
{
	/* From RAM below the hole into it. */
	expect_fault(GUEST_PCI_HOLE_START - 1, 2);
	expect_fault(GUEST_PCI_HOLE_START - 0x1000, 0x1001);
	expect_fault(0, GUEST_PCI_HOLE_START + 1);
	/* From the hole into RAM above 4 GiB. */
	expect_fault(GUEST_PCI_HOLE_END - 1, 2);
	expect_fault(GUEST_PCI_HOLE_END - 0x1000, 0x2000);
	/* Across the whole hole, low RAM to high RAM. */
	expect_fault(GUEST_PCI_HOLE_START - 0x10, GUEST_PCI_HOLE_END -
		     GUEST_PCI_HOLE_START + 0x20);
	expect_fault(0, BIG);
	/* Zero-length at the hole start is the end of the low region. */
	expect_at(GUEST_PCI_HOLE_START, 0, GUEST_PCI_HOLE_START);
}
END_TEST

START_TEST(high_region_at_4g)
{
	uint64_t high_end = GUEST_PCI_HOLE_END + HIGH_SIZE;

	expect_at(GUEST_PCI_HOLE_END, 1, GUEST_PCI_HOLE_START);
	expect_at(GUEST_PCI_HOLE_END, 0, GUEST_PCI_HOLE_START);
	expect_at(GUEST_PCI_HOLE_END, HIGH_SIZE, GUEST_PCI_HOLE_START);
	expect_at(high_end - 4, 4, BIG - 4);
	expect_at(high_end, 0, BIG);
	expect_fault(high_end - 4, 5);
	expect_fault(high_end, 1);
	expect_fault(GUEST_PCI_HOLE_END, HIGH_SIZE + 1);
	expect_fault(GUEST_PCI_HOLE_END + 0x1000, UINT64_MAX);
	expect_fault(UINT64_MAX - 0x10, 0x20);
}
END_TEST

START_TEST(high_region_backs_the_right_bytes)
{
	static const char msg[] = "above 4 GiB";
	char back[sizeof(msg)];

	ck_assert_int_eq(guest_memory_write(&mem, GUEST_PCI_HOLE_END + 0x10,
					    msg, sizeof(msg)), 0);
	ck_assert_mem_eq(mem.base + GUEST_PCI_HOLE_START + 0x10, msg,
			 sizeof(msg));
	ck_assert_int_eq(guest_memory_read(&mem, GUEST_PCI_HOLE_END + 0x10,
					   back, sizeof(back)), 0);
	ck_assert_mem_eq(back, msg, sizeof(msg));
	/* The last low byte and the first high byte are distinct. */
	ck_assert_int_eq(guest_memory_write(&mem, GUEST_PCI_HOLE_START - 1,
					    "L", 1), 0);
	ck_assert_int_eq(guest_memory_write(&mem, GUEST_PCI_HOLE_END, "H", 1),
			 0);
	ck_assert_int_eq(mem.base[GUEST_PCI_HOLE_START - 1], 'L');
	ck_assert_int_eq(mem.base[GUEST_PCI_HOLE_START], 'H');
}
END_TEST

START_TEST(read_write_round_trip)
{
	uint8_t out[300], in[300];

	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + 1);
	ck_assert_int_eq(guest_memory_write(&mem, 0x12345, out, sizeof(out)), 0);
	ck_assert_mem_eq(mem.base + 0x12345, out, sizeof(out));
	memset(in, 0, sizeof(in));
	ck_assert_int_eq(guest_memory_read(&mem, 0x12345, in, sizeof(in)), 0);
	ck_assert_mem_eq(in, out, sizeof(out));
	/* Last bytes of RAM. */
	ck_assert_int_eq(guest_memory_write(&mem, SMALL - 4, "tail", 4), 0);
	ck_assert_int_eq(guest_memory_read(&mem, SMALL - 4, in, 4), 0);
	ck_assert_mem_eq(in, "tail", 4);
	/* Fresh RAM reads as zero. */
	ck_assert_int_eq(guest_memory_read(&mem, 0x200000, in, sizeof(in)), 0);
	for (size_t i = 0; i < sizeof(in); i++)
		ck_assert_uint_eq(in[i], 0);
}
END_TEST

START_TEST(read_write_refuse_bad_ranges)
{
	uint8_t buf[16];

	memset(buf, 0xAA, sizeof(buf));
	memset(mem.base + SMALL - 8, 0x55, 8);
	ck_assert_int_eq(guest_memory_write(&mem, SMALL - 8, buf, 16), -EFAULT);
	/* Nothing was written, not even the part inside RAM. */
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(mem.base[SMALL - 8 + i], 0x55);
	ck_assert_int_eq(guest_memory_read(&mem, SMALL - 8, buf, 16), -EFAULT);
	for (size_t i = 0; i < sizeof(buf); i++)
		ck_assert_uint_eq(buf[i], 0xAA);
	ck_assert_int_eq(guest_memory_write(&mem, SMALL, buf, 1), -EFAULT);
	ck_assert_int_eq(guest_memory_read(&mem, UINT64_MAX, buf, 2), -EFAULT);
	ck_assert_int_eq(guest_memory_read(&mem, 0x1000, buf, UINT64_MAX),
			 -EFAULT);
	ck_assert_int_eq(guest_memory_write(&mem, UINT64_MAX - 7, buf, 16),
			 -EFAULT);
}
END_TEST

START_TEST(read_write_refuse_hole)
{
	uint8_t buf[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	ck_assert_int_eq(guest_memory_write(&mem, GUEST_PCI_HOLE_START, buf, 8),
			 -EFAULT);
	ck_assert_int_eq(guest_memory_write(&mem, GUEST_PCI_HOLE_START - 4, buf,
					    8), -EFAULT);
	ck_assert_int_eq(guest_memory_read(&mem, GUEST_PCI_HOLE_END - 4, buf, 8),
			 -EFAULT);
	ck_assert_uint_eq(buf[0], 1);
}
END_TEST

START_TEST(exactly_3g_has_no_high_region)
{
	struct guest_memory m;

	ck_assert_int_eq(guest_memory_create(&m, GUEST_PCI_HOLE_START, NULL), 0);
	ck_assert_uint_eq(m.nr_regions, 1);
	ck_assert_uint_eq(m.regions[0].size, GUEST_PCI_HOLE_START);
	ck_assert_int_eq(guest_memory_translate(&m, GUEST_PCI_HOLE_END, 1, NULL),
			 -EFAULT);
	guest_memory_destroy(&m);
	ck_assert_int_eq(m.fd, -1);
	ck_assert_ptr_null(m.base);
	ck_assert_uint_eq(m.nr_regions, 0);
}
END_TEST

START_TEST(create_refuses_bad_sizes)
{
	struct guest_memory m;

	ck_assert_int_eq(guest_memory_create(&m, 0, NULL), -EINVAL);
	ck_assert_int_eq(m.fd, -1);
	ck_assert_ptr_null(m.base);
	ck_assert_int_eq(guest_memory_create(&m, (1ULL << 46) + 4096, NULL),
			 -EINVAL);
	ck_assert_int_eq(guest_memory_create(&m, UINT64_MAX, NULL), -EINVAL);
	/* Destroying a never-created memory is harmless. */
	guest_memory_destroy(&m);
}
END_TEST

START_TEST(create_in_directory)
{
	struct guest_memory m;
	char dir[PATH_MAX];
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/kite-test-mem-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(guest_memory_create(&m, 4 * MiB, dir), 0);
	ck_assert_int_eq(guest_memory_write(&m, 0x1000, "ok", 2), 0);
	ck_assert_mem_eq(m.base + 0x1000, "ok", 2);
	guest_memory_destroy(&m);
	/* The backing file was unlinked at once: the directory is empty. */
	ck_assert_int_eq(rmdir(dir), 0);

	ck_assert_int_lt(guest_memory_create(&m, 4 * MiB,
					     "/nonexistent/kite-test"), 0);
	ck_assert_int_eq(m.fd, -1);
	ck_assert_ptr_null(m.base);
}
END_TEST

static Suite *memory_suite(void)
{
	Suite *s = suite_create("memory");
	TCase *small = tcase_create("small");
	TCase *big = tcase_create("big");
	TCase *create = tcase_create("create");

	tcase_add_checked_fixture(small, setup_small, teardown);
	tcase_add_test(small, small_layout_is_one_region);
	tcase_add_test(small, inside_region);
	tcase_add_test(small, exact_end_and_one_past);
	tcase_add_test(small, zero_length);
	tcase_add_test(small, wraparound_refused);
	tcase_add_test(small, length_overflow_refused);
	tcase_add_test(small, translate_without_hva);
	tcase_add_test(small, read_write_round_trip);
	tcase_add_test(small, read_write_refuse_bad_ranges);
	suite_add_tcase(s, small);

	tcase_add_checked_fixture(big, setup_big, teardown);
	tcase_add_test(big, big_layout_splits_around_hole);
	tcase_add_test(big, pci_hole_is_not_ram);
	tcase_add_test(big, crossing_into_hole_refused);
	tcase_add_test(big, high_region_at_4g);
	tcase_add_test(big, high_region_backs_the_right_bytes);
	tcase_add_test(big, read_write_refuse_hole);
	suite_add_tcase(s, big);

	tcase_add_test(create, exactly_3g_has_no_high_region);
	tcase_add_test(create, create_refuses_bad_sizes);
	tcase_add_test(create, create_in_directory);
	suite_add_tcase(s, create);
	return s;
}

UNIT_MAIN(memory_suite)
