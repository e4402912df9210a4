/* Unit tests for arch/x86/bios.c: the BIOS image, IVT, BIOS data area and
 * INT 15h data it installs, and the classic real-mode load of a bzImage
 * (Documentation/x86/boot.rst) on a synthetic image in fake guest memory.
 * The BIOS code itself runs in tests/guest/bios-services.S. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/bios.h"
#include "arch/x86/boot.h"
#include "arch/x86/e820.h"
#include "arch/x86/linux.h"
#include "bios/layout.h"
#include "tests/unit/unit.h"
#include "vmm/memory.h"

#define GUEST_MEM   (64ULL << 20)
#define SETUP_SECTS 2
#define SETUP_SIZE  ((SETUP_SECTS + 1) * 512)
#define PM_SIZE     0x3000

static struct guest_memory mem;
static char err[512];

static void setup(void)
{
	ck_assert_int_eq(guest_memory_create(&mem, GUEST_MEM, NULL), 0);
	err[0] = '\0';
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
}

static uint8_t *gpa(uint64_t a)
{
	void *p;

	ck_assert_int_eq(guest_memory_translate(&mem, a, 1, &p), 0);
	return p;
}

static uint16_t rd16(uint64_t a)
{
	uint16_t v;

	ck_assert_int_eq(guest_memory_read(&mem, a, &v, 2), 0);
	return v;
}

static uint32_t rd32(uint64_t a)
{
	uint32_t v;

	ck_assert_int_eq(guest_memory_read(&mem, a, &v, 4), 0);
	return v;
}

static uint64_t rd64(uint64_t a)
{
	uint64_t v;

	ck_assert_int_eq(guest_memory_read(&mem, a, &v, 8), 0);
	return v;
}

/* A bzImage of protocol |version|: setup sectors filled with 0x5A except
 * the header, protected-mode part filled with its offset's low byte. */
static uint8_t *make_bzimage(uint16_t version, size_t *len)
{
	size_t n = SETUP_SIZE + PM_SIZE;
	uint8_t *img = calloc(1, n);
	struct x86_setup_header h;

	ck_assert_ptr_nonnull(img);
	memset(img, 0x5A, SETUP_SIZE);
	memset(&h, 0, sizeof(h));
	h.setup_sects = SETUP_SECTS;
	h.syssize = PM_SIZE / 16;
	h.boot_flag = X86_SETUP_BOOT_FLAG;
	h.jump = 0x66EB;                /* to 0x26A: header ends at 0x26C */
	h.header = X86_SETUP_HDRS_MAGIC;
	h.version = version;
	h.kernel_version = 0x400 - 0x200;
	h.loadflags = X86_LOADED_HIGH | X86_KEEP_SEGMENTS;
	h.code32_start = 0x100000;
	h.initrd_addr_max = 0x2FFFFFF;  /* 48 MiB - 1 */
	h.kernel_alignment = 0x200000;
	h.relocatable_kernel = 1;
	h.cmdline_size = 2047;
	h.pref_address = 0x1000000;
	h.init_size = 0x800000;         /* 16 + 8 MiB */
	memcpy(img + X86_SETUP_HEADER_OFFSET, &h, sizeof(h));
	strcpy((char *)img + 0x400, "6.99-test (kite)");
	for (size_t i = 0; i < PM_SIZE; i++)
		img[SETUP_SIZE + i] = (uint8_t)i;
	*len = n;
	return img;
}

static int load(const uint8_t *img, size_t len, const char *cmdline,
		const uint8_t *initrd, size_t initrd_size,
		struct x86_boot_entry *e, struct x86_bios_linux_info *info)
{
	struct x86_bios_linux_params p = {
		.kernel_path = "test-bzImage",
		.image = img,
		.image_size = len,
		.initrd = initrd,
		.initrd_size = initrd_size,
		.initrd_path = "test-initrd",
		.cmdline = cmdline,
	};

	return x86_bios_load_linux(&mem, &p, e, info, err, sizeof(err));
}

/* ---- the BIOS itself ------------------------------------------------------ */

START_TEST(test_install_copies_image_with_header)
{
	struct e820_entry map[E820_MAX_FROM_MEMORY];
	unsigned nr;

	ck_assert_int_eq(e820_from_guest_memory(&mem, map, E820_MAX_FROM_MEMORY,
						&nr), 0);
	ck_assert_int_eq(x86_bios_install(&mem, map, nr, err, sizeof(err)), 0);
	ck_assert_mem_eq(gpa(X86_BIOS_GPA), "KITEBIOS", 8);
	ck_assert_uint_eq(rd16(X86_BIOS_GPA + BIOS_HDR_VERSION),
			  BIOS_HEADER_VERSION);
	ck_assert_uint_eq(rd16(X86_BIOS_GPA + BIOS_HDR_DATA_SIZE), BIOS_DATA_SIZE);
}
END_TEST

START_TEST(test_install_leaves_acpi_area_alone)
{
	struct e820_entry map[E820_MAX_FROM_MEMORY];
	unsigned nr;

	/* The ACPI/MP tables at 0xE0000-0xEFFFF are written before the BIOS. */
	memset(gpa(0xE0000), 0xA5, 0x10000);
	ck_assert_int_eq(e820_from_guest_memory(&mem, map, E820_MAX_FROM_MEMORY,
						&nr), 0);
	ck_assert_int_eq(x86_bios_install(&mem, map, nr, err, sizeof(err)), 0);
	for (uint64_t a = 0xE0000; a < 0xF0000; a++)
		ck_assert_uint_eq(*gpa(a), 0xA5);
}
END_TEST

START_TEST(test_ivt_points_every_vector_into_the_bios)
{
	struct e820_entry map[E820_MAX_FROM_MEMORY];
	unsigned nr;
	uint16_t table;

	ck_assert_int_eq(e820_from_guest_memory(&mem, map, E820_MAX_FROM_MEMORY,
						&nr), 0);
	ck_assert_int_eq(x86_bios_install(&mem, map, nr, err, sizeof(err)), 0);
	table = rd16(X86_BIOS_GPA + BIOS_HDR_VECTORS);
	for (unsigned v = 0; v < 256; v++) {
		uint16_t off = rd16(4 * v), seg = rd16(4 * v + 2);

		ck_assert_uint_eq(seg, BIOS_SEGMENT);
		ck_assert_uint_eq(off, rd16(X86_BIOS_GPA + table + 2 * v));
		ck_assert_uint_lt(off, X86_BIOS_SIZE);
		ck_assert_uint_gt(off, BIOS_HDR_SIZE); /* code, not the header */
	}
	/* INT 15h, 10h and 13h have their own handlers, unlike the spare
	 * vectors, which share an iret. */
	ck_assert_uint_ne(rd16(4 * 0x15), rd16(4 * 0x60));
	ck_assert_uint_ne(rd16(4 * 0x10), rd16(4 * 0x60));
	ck_assert_uint_ne(rd16(4 * 0x13), rd16(4 * 0x60));
	ck_assert_uint_eq(*gpa(X86_BIOS_GPA + rd16(4 * 0x60)), 0xCF); /* iret */
}
END_TEST

START_TEST(test_bda_describes_the_machine)
{
	struct e820_entry map[E820_MAX_FROM_MEMORY];
	unsigned nr;

	ck_assert_int_eq(e820_from_guest_memory(&mem, map, E820_MAX_FROM_MEMORY,
						&nr), 0);
	ck_assert_int_eq(x86_bios_install(&mem, map, nr, err, sizeof(err)), 0);
	ck_assert_uint_eq(rd16(0x400 + BDA_COM1), 0x3F8);
	ck_assert_uint_eq(rd16(0x400 + BDA_EBDA_SEGMENT), X86_EBDA_GPA >> 4);
	ck_assert_uint_eq(rd16(0x400 + BDA_BASE_MEM_KIB), 639);
	ck_assert_uint_eq(*gpa(0x400 + BDA_VIDEO_MODE), 3);
	ck_assert_uint_eq(rd16(0x400 + BDA_VIDEO_COLS), 80);
	ck_assert_uint_eq(*gpa(0x400 + BDA_VIDEO_ROWS_M1), 24);
	ck_assert_uint_eq(rd16(0x400 + BDA_VIDEO_CHAR_HEIGHT), 16);
	ck_assert_uint_eq(*gpa(0x400 + BDA_NR_DISKS), 0);
}
END_TEST

START_TEST(test_int15_data_matches_the_e820_map)
{
	struct e820_entry map[E820_MAX_FROM_MEMORY];
	unsigned nr;
	uint64_t data;

	ck_assert_int_eq(e820_from_guest_memory(&mem, map, E820_MAX_FROM_MEMORY,
						&nr), 0);
	ck_assert_int_eq(x86_bios_install(&mem, map, nr, err, sizeof(err)), 0);
	data = X86_BIOS_GPA + rd16(X86_BIOS_GPA + BIOS_HDR_DATA);
	ck_assert_uint_eq(rd16(data + BIOS_DATA_E820_COUNT), nr);
	for (unsigned i = 0; i < nr; i++) {
		uint64_t e = data + BIOS_DATA_E820_TABLE + i * BIOS_E820_ENTRY_SIZE;

		ck_assert_uint_eq(rd64(e), map[i].addr);
		ck_assert_uint_eq(rd64(e + 8), map[i].size);
		ck_assert_uint_eq(rd32(e + 16), map[i].type);
	}
	/* 64 MiB: 15 MiB between 1 and 16 MiB, 48 MiB = 768 x 64 KiB above,
	 * AH=88h capped at 63 MiB. */
	ck_assert_uint_eq(rd16(data + BIOS_DATA_E801_LOW_KIB), 15 * 1024);
	ck_assert_uint_eq(rd16(data + BIOS_DATA_E801_HIGH_64K), 768);
	ck_assert_uint_eq(rd16(data + BIOS_DATA_EXT_KIB), 63 * 1024);
}
END_TEST

START_TEST(test_install_rejects_oversized_map)
{
	struct e820_entry map[BIOS_E820_MAX + 1];

	for (unsigned i = 0; i <= BIOS_E820_MAX; i++)
		map[i] = (struct e820_entry){ 0x100000ULL * i, 0x1000,
					      E820_TYPE_RAM };
	ck_assert_int_eq(x86_bios_install(&mem, map, BIOS_E820_MAX + 1, err,
					  sizeof(err)), -E2BIG);
	ck_assert_ptr_nonnull(strstr(err, "memory map"));
}
END_TEST

/* ---- loading a bzImage ------------------------------------------------------ */

START_TEST(test_load_places_setup_kernel_and_cmdline)
{
	struct x86_boot_entry e;
	struct x86_bios_linux_info info;
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);

	ck_assert_int_eq(load(img, len, "console=ttyS0 quiet", NULL, 0, &e,
			      &info), 0);
	/* Boot sector and setup code at 0x90000, byte for byte outside the
	 * header. */
	ck_assert_mem_eq(gpa(X86_BIOS_SETUP_GPA), img, X86_SETUP_HEADER_OFFSET);
	ck_assert_mem_eq(gpa(X86_BIOS_SETUP_GPA + 0x26C), img + 0x26C,
			 SETUP_SIZE - 0x26C);
	/* Protected-mode part at 1 MiB. */
	ck_assert_mem_eq(gpa(X86_BIOS_KERNEL_GPA), img + SETUP_SIZE, PM_SIZE);
	ck_assert_str_eq((char *)gpa(X86_BIOS_CMDLINE_GPA), "console=ttyS0 quiet");
	ck_assert_uint_eq(info.protocol_version, 0x020F);
	ck_assert_str_eq(info.kernel_version, "6.99-test (kite)");
	ck_assert_uint_eq(info.setup_size, SETUP_SIZE);
	ck_assert_uint_eq(info.kernel_size, PM_SIZE);
	/* Relocatable: room from pref_address for init_size. */
	ck_assert_uint_eq(info.kernel_end, 0x1000000 + 0x800000);
	ck_assert_mem_eq(gpa(X86_BIOS_GPA), "KITEBIOS", 8);
	free(img);
}
END_TEST

START_TEST(test_load_writes_loader_header_fields)
{
	struct x86_boot_entry e;
	uint64_t h = X86_BIOS_SETUP_GPA;
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);

	ck_assert_int_eq(load(img, len, "x", NULL, 0, &e, NULL), 0);
	ck_assert_uint_eq(*gpa(h + 0x210), 0xFF);          /* type_of_loader */
	/* loadflags: LOADED_HIGH | CAN_USE_HEAP, KEEP_SEGMENTS cleared */
	ck_assert_uint_eq(*gpa(h + 0x211), X86_LOADED_HIGH | X86_CAN_USE_HEAP);
	ck_assert_uint_eq(rd16(h + 0x224), 0xDE00);        /* heap_end_ptr */
	ck_assert_uint_eq(rd32(h + 0x228), 0x9E000);       /* cmd_line_ptr */
	ck_assert_uint_eq(rd16(h + 0x1FA), 0xFFFF);        /* vid_mode */
	ck_assert_uint_eq(rd32(h + 0x218), 0);             /* ramdisk_image */
	ck_assert_uint_eq(rd32(h + 0x21C), 0);             /* ramdisk_size */
	/* What the image says stays. */
	ck_assert_uint_eq(rd16(h + 0x206), 0x020F);
	ck_assert_uint_eq(rd32(h + 0x202), X86_SETUP_HDRS_MAGIC);
	ck_assert_uint_eq(rd32(h + 0x214), 0x100000);      /* code32_start */
	ck_assert_uint_eq(rd64(h + 0x258), 0x1000000);     /* pref_address */
	free(img);
}
END_TEST

START_TEST(test_entry_is_real_mode_at_9020_0)
{
	struct x86_boot_entry e;
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);

	ck_assert_int_eq(load(img, len, "", NULL, 0, &e, NULL), 0);
	ck_assert_int_eq(e.mode, X86_ENTRY_REAL16);
	ck_assert_uint_eq(e.real_cs, 0x9020);
	ck_assert_uint_eq(e.rip, 0);
	ck_assert_uint_eq(e.real_ds, 0x9000);
	ck_assert_uint_eq(e.rsp, 0xE000);
	free(img);
}
END_TEST

START_TEST(test_load_initrd_high_below_initrd_addr_max)
{
	struct x86_boot_entry e;
	struct x86_bios_linux_info info;
	uint8_t initrd[5000];
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);

	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i * 7);
	ck_assert_int_eq(load(img, len, "", initrd, sizeof(initrd), &e, &info), 0);
	/* initrd_addr_max 48 MiB - 1: the last page-aligned spot below. */
	ck_assert_uint_eq(info.initrd_start,
			  (0x3000000 - sizeof(initrd)) & ~0xFFFULL);
	ck_assert_uint_eq(info.initrd_size, sizeof(initrd));
	ck_assert_uint_ge(info.initrd_start, info.kernel_end);
	ck_assert_mem_eq(gpa(info.initrd_start), initrd, sizeof(initrd));
	ck_assert_uint_eq(rd32(X86_BIOS_SETUP_GPA + 0x218), info.initrd_start);
	ck_assert_uint_eq(rd32(X86_BIOS_SETUP_GPA + 0x21C), sizeof(initrd));
	free(img);
}
END_TEST

START_TEST(test_setup_sects_zero_means_four)
{
	struct x86_boot_entry e;
	struct x86_bios_linux_info info;
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);

	img[X86_SETUP_HEADER_OFFSET] = 0;
	ck_assert_int_eq(load(img, len, "", NULL, 0, &e, &info), 0);
	ck_assert_uint_eq(info.setup_size, 5 * 512);
	ck_assert_mem_eq(gpa(X86_BIOS_KERNEL_GPA), img + 5 * 512, len - 5 * 512);
	free(img);
}
END_TEST

/* ---- errors --------------------------------------------------------------- */

START_TEST(test_error_not_a_bzimage)
{
	struct x86_boot_entry e;
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);

	memcpy(img + 0x202, "Hdrs", 4);
	ck_assert_int_eq(load(img, len, "", NULL, 0, &e, NULL), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err, "kernel 'test-bzImage'"));
	free(img);
}
END_TEST

START_TEST(test_error_old_protocol)
{
	struct x86_boot_entry e;
	size_t len;
	uint8_t *img = make_bzimage(0x0201, &len);

	ck_assert_int_eq(load(img, len, "", NULL, 0, &e, NULL), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err, "too old"));
	free(img);
}
END_TEST

START_TEST(test_error_setup_fills_file)
{
	struct x86_boot_entry e;
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);

	ck_assert_int_eq(load(img, SETUP_SIZE, "", NULL, 0, &e, NULL), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err, "truncated"));
	free(img);
}
END_TEST

START_TEST(test_error_setup_too_big)
{
	struct x86_boot_entry e;
	size_t len = 0x20000;
	uint8_t *img = calloc(1, len);
	size_t small;
	uint8_t *hdr = make_bzimage(0x020F, &small);

	memcpy(img, hdr, 0x400);
	img[X86_SETUP_HEADER_OFFSET] = 200; /* 100 KiB of "setup" */
	ck_assert_int_eq(load(img, len, "", NULL, 0, &e, NULL), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(err, "heap"));
	free(hdr);
	free(img);
}
END_TEST

START_TEST(test_error_cmdline_too_long)
{
	struct x86_boot_entry e;
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);
	char cmd[2049];

	memset(cmd, 'a', 2048);
	cmd[2048] = '\0';
	ck_assert_int_eq(load(img, len, cmd, NULL, 0, &e, NULL), -E2BIG);
	ck_assert_ptr_nonnull(strstr(err, "command line"));
	/* 2047 (cmdline_size) is fine. */
	cmd[2047] = '\0';
	ck_assert_int_eq(load(img, len, cmd, NULL, 0, &e, NULL), 0);
	free(img);
}
END_TEST

START_TEST(test_error_kernel_needs_more_ram)
{
	struct x86_boot_entry e;
	size_t len;
	uint8_t *img = make_bzimage(0x020F, &len);
	uint32_t init_size = 0x4000000; /* 64 MiB from 16 MiB */

	memcpy(img + 0x260, &init_size, 4);
	ck_assert_int_eq(load(img, len, "", NULL, 0, &e, NULL), -ERANGE);
	ck_assert_ptr_nonnull(strstr(err, "needs RAM"));
	free(img);
}
END_TEST

START_TEST(test_error_initrd_does_not_fit)
{
	struct x86_boot_entry e;
	size_t len, big = 30 << 20; /* 24..48 MiB is all there is */
	uint8_t *img = make_bzimage(0x020F, &len);
	uint8_t *initrd = calloc(1, big);

	ck_assert_int_eq(load(img, len, "", initrd, big, &e, NULL), -E2BIG);
	ck_assert_ptr_nonnull(strstr(err, "initrd 'test-initrd'"));
	free(initrd);
	free(img);
}
END_TEST

static Suite *bios_suite(void)
{
	Suite *s = suite_create("bios");
	TCase *tc = tcase_create("install");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_install_copies_image_with_header);
	tcase_add_test(tc, test_install_leaves_acpi_area_alone);
	tcase_add_test(tc, test_ivt_points_every_vector_into_the_bios);
	tcase_add_test(tc, test_bda_describes_the_machine);
	tcase_add_test(tc, test_int15_data_matches_the_e820_map);
	tcase_add_test(tc, test_install_rejects_oversized_map);
	suite_add_tcase(s, tc);

	tc = tcase_create("load_linux");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_load_places_setup_kernel_and_cmdline);
	tcase_add_test(tc, test_load_writes_loader_header_fields);
	tcase_add_test(tc, test_entry_is_real_mode_at_9020_0);
	tcase_add_test(tc, test_load_initrd_high_below_initrd_addr_max);
	tcase_add_test(tc, test_setup_sects_zero_means_four);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_error_not_a_bzimage);
	tcase_add_test(tc, test_error_old_protocol);
	tcase_add_test(tc, test_error_setup_fills_file);
	tcase_add_test(tc, test_error_setup_too_big);
	tcase_add_test(tc, test_error_cmdline_too_long);
	tcase_add_test(tc, test_error_kernel_needs_more_ram);
	tcase_add_test(tc, test_error_initrd_does_not_fit);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(bios_suite)
