/* arch/x86/multiboot: header detection and loading of tiny ELF32 images
 * (built here, in memory) into guest memory. */
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/loader.h"
#include "arch/x86/multiboot.h"
#include "tests/unit/unit.h"
#include "vmm/memory.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* Multiboot 0.6.96 §3.3: offsets in the boot information structure. */
#define INFO_FLAGS        0
#define INFO_MEM_LOWER    4
#define INFO_MEM_UPPER    8
#define INFO_CMDLINE      16
#define INFO_MODS_COUNT   20
#define INFO_MODS_ADDR    24
#define INFO_MMAP_LENGTH  44
#define INFO_MMAP_ADDR    48
#define INFO_LOADER_NAME  64

/* Where the test image keeps its pieces. */
#define PHDR_OFF   sizeof(Elf32_Ehdr)
#define MBH_OFF    0x200
#define DATA_OFF   0x1000
#define IMAGE_MAX  0x6000

#define KERNEL_GPA 0x100000U
#define ENTRY_GPA  0x100010U

struct segment {
	uint32_t type, paddr, offset, filesz, memsz;
};

static struct guest_memory mem;
static uint8_t image[IMAGE_MAX] __attribute__((aligned(8)));
static size_t image_size;
static struct x86_boot_entry entry;
static char err[256];

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* A multiboot header at |off| with |flags|; checksum made valid. */
static void put_header(size_t off, uint32_t flags)
{
	put32(image + off, MULTIBOOT_HEADER_MAGIC);
	put32(image + off + 4, flags);
	put32(image + off + 8, 0U - MULTIBOOT_HEADER_MAGIC - flags);
}

/* An ELF32 i386 executable with the given segments; the file bytes of
 * each segment are a pattern derived from the file offset. */
static void build_elf(const struct segment *segs, unsigned n, size_t size)
{
	Elf32_Ehdr eh;

	memset(image, 0, sizeof(image));
	memset(&eh, 0, sizeof(eh));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS32;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_386;
	eh.e_version = EV_CURRENT;
	eh.e_entry = ENTRY_GPA;
	eh.e_phoff = PHDR_OFF;
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf32_Phdr);
	eh.e_phnum = (Elf32_Half)n;
	memcpy(image, &eh, sizeof(eh));
	for (unsigned i = 0; i < n; i++) {
		Elf32_Phdr ph;

		memset(&ph, 0, sizeof(ph));
		ph.p_type = segs[i].type;
		ph.p_offset = segs[i].offset;
		ph.p_vaddr = segs[i].paddr | 0xC0000000U; /* like a kernel */
		ph.p_paddr = segs[i].paddr;
		ph.p_filesz = segs[i].filesz;
		ph.p_memsz = segs[i].memsz;
		ph.p_flags = PF_R | PF_X;
		ph.p_align = 0x1000;
		memcpy(image + PHDR_OFF + i * sizeof(ph), &ph, sizeof(ph));
	}
	for (size_t off = DATA_OFF; off < sizeof(image); off++)
		image[off] = (uint8_t)(off * 13 + 7);
	put_header(MBH_OFF, MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO);
	image_size = size;
}

/* The default kernel: 0x300 bytes of code/data and 0x500 of bss at 1 MiB. */
static void build_default(void)
{
	const struct segment seg = { PT_LOAD, KERNEL_GPA, DATA_OFF, 0x300,
				     0x800 };

	build_elf(&seg, 1, DATA_OFF + 0x300);
}

static Elf32_Ehdr *ehdr(void)
{
	return (Elf32_Ehdr *)image;
}

static Elf32_Phdr *phdr(unsigned i)
{
	return (Elf32_Phdr *)(image + PHDR_OFF + i * sizeof(Elf32_Phdr));
}

static uint32_t guest32(uint64_t gpa)
{
	uint32_t v;

	ck_assert_int_eq(guest_memory_read(&mem, gpa, &v, 4), 0);
	return v;
}

static uint64_t guest64(uint64_t gpa)
{
	uint64_t v;

	ck_assert_int_eq(guest_memory_read(&mem, gpa, &v, 8), 0);
	return v;
}

/* Compare a NUL-terminated string in guest memory. */
static void expect_guest_string(uint64_t gpa, const char *want)
{
	size_t n = strlen(want) + 1;
	char buf[256];

	ck_assert_uint_le(n, sizeof(buf));
	ck_assert_int_eq(guest_memory_read(&mem, gpa, buf, n), 0);
	ck_assert_str_eq(buf, want);
}

static int load(const uint8_t *module, size_t module_size, const char *name,
		const char *cmdline)
{
	memset(err, 0, sizeof(err));
	return multiboot_load(&mem, image, image_size, module, module_size,
			      name, cmdline, &entry, err, sizeof(err));
}

static int load_plain(void)
{
	return load(NULL, 0, NULL, "");
}

#define ck_assert_load_error(rc, want, needle)                             \
	do {                                                               \
		ck_assert_int_eq((rc), (want));                            \
		ck_assert_msg(strstr(err, (needle)) != NULL,               \
			      "message '%s' lacks '%s'", err, (needle));   \
	} while (0)

static void setup(void)
{
	ck_assert_int_eq(guest_memory_create(&mem, 64 * MiB, NULL), 0);
	/* Poison RAM so that zeroing and untouched bytes are visible. */
	memset(mem.base, 0xCC, 4 * MiB);
	build_default();
	memset(&entry, 0xEE, sizeof(entry));
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
}

/* ---- header detection ---------------------------------------------------- */

START_TEST(detect_valid_header)
{
	ck_assert(multiboot_detect(image, image_size));
}
END_TEST

START_TEST(detect_bad_magic)
{
	put32(image + MBH_OFF, MULTIBOOT_HEADER_MAGIC ^ 1);
	ck_assert(!multiboot_detect(image, image_size));
}
END_TEST

START_TEST(detect_bad_checksum)
{
	put32(image + MBH_OFF + 8, 0U - MULTIBOOT_HEADER_MAGIC);
	ck_assert(!multiboot_detect(image, image_size));
	ck_assert_load_error(load_plain(), -ENOEXEC, "multiboot header");
}
END_TEST

START_TEST(detect_requires_alignment)
{
	memset(image + MBH_OFF, 0, 12);
	put_header(MBH_OFF + 2, 0);
	ck_assert(!multiboot_detect(image, image_size));
	memset(image + MBH_OFF + 2, 0, 12);
	put_header(MBH_OFF + 4, 0);
	ck_assert(multiboot_detect(image, image_size));
}
END_TEST

START_TEST(detect_within_first_8k)
{
	memset(image + MBH_OFF, 0, 12);
	image_size = IMAGE_MAX;
	/* Ends exactly at 8 KiB: found. */
	put_header(MULTIBOOT_SEARCH - 12, 0);
	ck_assert(multiboot_detect(image, image_size));
	memset(image + MULTIBOOT_SEARCH - 12, 0, 12);
	/* Straddles 8 KiB, or lies wholly beyond: not found. */
	put_header(MULTIBOOT_SEARCH - 8, 0);
	ck_assert(!multiboot_detect(image, image_size));
	memset(image + MULTIBOOT_SEARCH - 8, 0, 12);
	put_header(MULTIBOOT_SEARCH, 0);
	ck_assert(!multiboot_detect(image, image_size));
	put_header(MULTIBOOT_SEARCH + 0x100, 0);
	ck_assert(!multiboot_detect(image, image_size));
}
END_TEST

START_TEST(detect_short_images)
{
	/* The header cut off by the end of the file. */
	ck_assert(!multiboot_detect(image, MBH_OFF + 11));
	ck_assert(multiboot_detect(image, MBH_OFF + 12));
	ck_assert(!multiboot_detect(image, 0));
	put_header(0, 0);
	ck_assert(multiboot_detect(image, 12));
	ck_assert(!multiboot_detect(image, 11));
}
END_TEST

/* ---- loading ------------------------------------------------------------- */

START_TEST(load_segment_to_paddr)
{
	uint8_t got[0x300];

	ck_assert_int_eq(load_plain(), 0);
	ck_assert_int_eq(guest_memory_read(&mem, KERNEL_GPA, got, sizeof(got)),
			 0);
	ck_assert_mem_eq(got, image + DATA_OFF, sizeof(got));
	/* bss zeroed, and nothing past memsz touched. */
	for (uint32_t a = KERNEL_GPA + 0x300; a < KERNEL_GPA + 0x800; a++)
		ck_assert_uint_eq(mem.base[a], 0);
	ck_assert_uint_eq(mem.base[KERNEL_GPA + 0x800], 0xCC);
	ck_assert_uint_eq(mem.base[KERNEL_GPA - 1], 0xCC);
}
END_TEST

START_TEST(load_several_segments)
{
	const struct segment segs[] = {
		{ PT_LOAD, 0x100000, 0x1000, 0x400, 0x400 },
		{ PT_NOTE, 0xFFFFFFF0, 0x1400, 0x10, 0x10 }, /* not loaded */
		{ PT_LOAD, 0x200000, 0x2000, 0x100, 0x1000 },
		{ PT_LOAD, 0x300000, 0x2100, 0, 0 },          /* empty */
		{ PT_LOAD, 0x280000, 0x3000, 0, 0x80 },       /* bss only */
	};
	uint8_t got[0x400];

	build_elf(segs, 5, 0x3000);
	ck_assert_int_eq(load_plain(), 0);
	ck_assert_int_eq(guest_memory_read(&mem, 0x100000, got, 0x400), 0);
	ck_assert_mem_eq(got, image + 0x1000, 0x400);
	ck_assert_int_eq(guest_memory_read(&mem, 0x200000, got, 0x100), 0);
	ck_assert_mem_eq(got, image + 0x2000, 0x100);
	for (uint32_t a = 0x200100; a < 0x201000; a++)
		ck_assert_uint_eq(mem.base[a], 0);
	for (uint32_t a = 0x280000; a < 0x280080; a++)
		ck_assert_uint_eq(mem.base[a], 0);
	ck_assert_uint_eq(mem.base[0x280080], 0xCC);
	ck_assert_uint_eq(mem.base[0x300000], 0xCC);
}
END_TEST

START_TEST(load_unaligned_program_headers)
{
	/* e_phoff is file data: nothing promises it is aligned. */
	Elf32_Phdr ph;

	memcpy(&ph, image + PHDR_OFF, sizeof(ph));
	memset(image + PHDR_OFF, 0, sizeof(ph));
	memcpy(image + 0x101, &ph, sizeof(ph));
	ehdr()->e_phoff = 0x101;
	ck_assert_int_eq(load_plain(), 0);
	ck_assert_mem_eq(mem.base + KERNEL_GPA, image + DATA_OFF, 0x300);
}
END_TEST

START_TEST(entry_state)
{
	ck_assert_int_eq(load_plain(), 0);
	ck_assert_int_eq(entry.mode, X86_ENTRY_PROTECTED32);
	ck_assert_uint_eq(entry.rip, ENTRY_GPA);
	ck_assert_uint_eq(entry.rax, MULTIBOOT_BOOTLOADER_MAGIC);
	ck_assert_uint_eq(entry.rbx, X86_BOOT_INFO_GPA);
	ck_assert_uint_eq(entry.gdt_base, X86_BOOT_GDT_GPA);
	ck_assert_uint_eq(entry.gdt_limit, 4 * 8 - 1);
	ck_assert_uint_eq(entry.code_sel, 0x10);
	ck_assert_uint_eq(entry.data_sel, 0x18);
	/* Multiboot §3.2: flat 4 GiB segments; code execute/read, data
	 * read/write, both 32-bit with 4 KiB granularity. */
	ck_assert_uint_eq(guest64(entry.gdt_base + entry.code_sel),
			  0x00CF9B000000FFFFULL);
	ck_assert_uint_eq(guest64(entry.gdt_base + entry.data_sel),
			  0x00CF93000000FFFFULL);
	ck_assert_uint_eq(guest64(entry.gdt_base), 0);
}
END_TEST

START_TEST(info_block_without_module)
{
	uint32_t info;

	ck_assert_int_eq(load(NULL, 0, NULL, "console=ttyS0 verbose"), 0);
	info = (uint32_t)entry.rbx;
	ck_assert_uint_eq(guest32(info + INFO_FLAGS),
			  MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE |
			  MULTIBOOT_INFO_MMAP | MULTIBOOT_INFO_LOADER);
	/* 639 KiB below the EBDA; RAM from 1 MiB to 64 MiB. */
	ck_assert_uint_eq(guest32(info + INFO_MEM_LOWER), 639);
	ck_assert_uint_eq(guest32(info + INFO_MEM_UPPER), 63 * 1024);
	expect_guest_string(guest32(info + INFO_CMDLINE),
			    "console=ttyS0 verbose");
	expect_guest_string(guest32(info + INFO_LOADER_NAME), "kite");
	ck_assert_uint_eq(guest32(info + INFO_MODS_COUNT), 0);
}
END_TEST

START_TEST(empty_cmdline_is_empty_string)
{
	ck_assert_int_eq(load_plain(), 0);
	expect_guest_string(guest32(entry.rbx + INFO_CMDLINE), "");
}
END_TEST

/* Walk the memory map as a kernel would (size field, then the entry). */
static unsigned read_mmap(uint64_t out[][3], unsigned max)
{
	uint32_t info = (uint32_t)entry.rbx;
	uint32_t addr = guest32(info + INFO_MMAP_ADDR);
	uint32_t len = guest32(info + INFO_MMAP_LENGTH);
	unsigned n = 0;

	for (uint32_t off = 0; off < len; n++) {
		uint32_t size = guest32(addr + off);

		ck_assert_uint_lt(n, max);
		ck_assert_uint_eq(size, 20);
		out[n][0] = guest64(addr + off + 4);
		out[n][1] = guest64(addr + off + 12);
		out[n][2] = guest32(addr + off + 20);
		off += size + 4;
		ck_assert_uint_le(off, len);
	}
	return n;
}

START_TEST(mmap_entries)
{
	uint64_t map[8][3];

	ck_assert_int_eq(load_plain(), 0);
	ck_assert_uint_eq(read_mmap(map, 8), 3);
	/* Conventional memory, the EBDA/ROM area, RAM from 1 MiB. */
	ck_assert_uint_eq(map[0][0], 0);
	ck_assert_uint_eq(map[0][1], 0x9FC00);
	ck_assert_uint_eq(map[0][2], 1);
	ck_assert_uint_eq(map[1][0], 0x9FC00);
	ck_assert_uint_eq(map[1][1], 0x100000 - 0x9FC00);
	ck_assert_uint_eq(map[1][2], 2);
	ck_assert_uint_eq(map[2][0], 0x100000);
	ck_assert_uint_eq(map[2][1], 63 * MiB);
	ck_assert_uint_eq(map[2][2], 1);
}
END_TEST

START_TEST(mmap_with_ram_above_4g)
{
	uint64_t map[8][3];

	guest_memory_destroy(&mem);
	ck_assert_int_eq(guest_memory_create(&mem, 3 * GiB + 512 * MiB, NULL),
			 0);
	ck_assert_int_eq(load_plain(), 0);
	ck_assert_uint_eq(read_mmap(map, 8), 4);
	ck_assert_uint_eq(map[2][0], 0x100000);
	ck_assert_uint_eq(map[2][1], 3 * GiB - MiB);
	ck_assert_uint_eq(map[3][0], 4 * GiB);
	ck_assert_uint_eq(map[3][1], 512 * MiB);
	ck_assert_uint_eq(map[3][2], 1);
	/* mem_upper stops at the first hole (the PCI hole at 3 GiB). */
	ck_assert_uint_eq(guest32(entry.rbx + INFO_MEM_UPPER),
			  (3 * GiB - MiB) / 1024);
}
END_TEST

START_TEST(module_fields)
{
	static const uint8_t initrd[5000] = { 1, 2, 3, [4999] = 0x99 };
	uint32_t info, mods, start, end;

	ck_assert_int_eq(load(initrd, sizeof(initrd), "/boot/initrd.img",
			      "x"), 0);
	info = (uint32_t)entry.rbx;
	ck_assert_uint_eq(guest32(info + INFO_FLAGS) & MULTIBOOT_INFO_MODS,
			  MULTIBOOT_INFO_MODS);
	ck_assert_uint_eq(guest32(info + INFO_MODS_COUNT), 1);
	mods = guest32(info + INFO_MODS_ADDR);
	start = guest32(mods);
	end = guest32(mods + 4);
	/* Page aligned, after the kernel's bss. */
	ck_assert_uint_eq(start & 0xFFF, 0);
	ck_assert_uint_ge(start, KERNEL_GPA + 0x800);
	ck_assert_uint_eq(end - start, sizeof(initrd));
	ck_assert_mem_eq(mem.base + start, initrd, sizeof(initrd));
	expect_guest_string(guest32(mods + 8), "/boot/initrd.img");
	ck_assert_uint_eq(guest32(mods + 12), 0);
	/* The module does not overlap the kernel image. */
	ck_assert_mem_eq(mem.base + KERNEL_GPA, image + DATA_OFF, 0x300);
}
END_TEST

START_TEST(module_stays_clear_of_boot_area)
{
	/* A kernel loaded low: its module must not land on the command line
	 * or the info block kite writes below 1 MiB. */
	const struct segment seg = { PT_LOAD, 0x10000, DATA_OFF, 0x100, 0x100 };
	static uint8_t initrd[0x30000];
	uint32_t info, start, end;

	build_elf(&seg, 1, DATA_OFF + 0x100);
	ehdr()->e_entry = 0x10000;
	memset(initrd, 0x5A, sizeof(initrd));
	ck_assert_int_eq(load(initrd, sizeof(initrd), "mod", "the cmdline"), 0);
	info = (uint32_t)entry.rbx;
	start = guest32(guest32(info + INFO_MODS_ADDR));
	end = guest32(guest32(info + INFO_MODS_ADDR) + 4);
	ck_assert_uint_ge(start, 0x10100);
	ck_assert_uint_eq(end - start, sizeof(initrd));
	ck_assert_mem_eq(mem.base + start, initrd, sizeof(initrd));
	expect_guest_string(guest32(info + INFO_CMDLINE), "the cmdline");
	expect_guest_string(guest32(guest32(info + INFO_MODS_ADDR) + 8), "mod");
	ck_assert_mem_eq(mem.base + 0x10000, image + DATA_OFF, 0x100);
}
END_TEST

START_TEST(module_too_big)
{
	static const uint8_t initrd[16] = { 0 };

	guest_memory_destroy(&mem);
	ck_assert_int_eq(guest_memory_create(&mem, 2 * MiB, NULL), 0);
	/* Fits: the kernel ends at 1 MiB + 2 KiB. */
	ck_assert_int_eq(load(initrd, 16, "m", ""), 0);
	/* Cannot fit below the end of RAM: bad input (exit status 2), and
	 * the addresses are the real ones. */
	ck_assert_load_error(load(initrd, MiB, "m", ""), -E2BIG,
			     "module of 1048576 bytes does not fit in guest RAM: it would go at 0x101000, after the kernel, and RAM below 4 GiB ends at 0x200000");
	ck_assert(x86_load_bad_input(-E2BIG));
	/* A size whose end would wrap past 2^64. */
	ck_assert_load_error(load(initrd, SIZE_MAX, "m", ""), -E2BIG,
			     "module of 18446744073709551615 bytes does not fit in guest RAM: it would go at 0x101000");
	ck_assert_load_error(load(initrd, SIZE_MAX - 0x100FFF, "m", ""),
			     -E2BIG, "does not fit");
}
END_TEST

/* Bigger than all of RAM, with the kernel's end near the top of it. */
START_TEST(module_bigger_than_ram)
{
	static const uint8_t initrd[16] = { 0 };

	phdr(0)->p_paddr = 64 * MiB - 0x800; /* ends exactly at the top */
	ck_assert_int_eq(load_plain(), 0);
	ck_assert_load_error(load(initrd, 65 * MiB, "m", ""), -E2BIG,
			     "it would go at 0x4000000, after the kernel, and RAM below 4 GiB ends at 0x4000000");
	ck_assert_load_error(load(initrd, 1, "m", ""), -E2BIG, "does not fit");
	ck_assert(x86_load_bad_input(-E2BIG));
}
END_TEST

START_TEST(aout_kludge)
{
	/* No ELF at all: the header's address fields say where it goes. */
	const uint32_t base = 0x200000, hdr = 0x40;
	const uint32_t flags = MULTIBOOT_PAGE_ALIGN | MULTIBOOT_AOUT_KLUDGE;

	memset(image, 0, sizeof(image));
	for (size_t i = 0; i < 0x800; i++)
		image[i] = (uint8_t)(i ^ 0x3C);
	put_header(hdr, flags);
	put32(image + hdr + 12, base + hdr);     /* header_addr */
	put32(image + hdr + 16, base);           /* load_addr */
	put32(image + hdr + 20, base + 0x600);   /* load_end_addr */
	put32(image + hdr + 24, base + 0x1000);  /* bss_end_addr */
	put32(image + hdr + 28, base + 0x100);   /* entry_addr */
	image_size = 0x800;
	ck_assert(multiboot_detect(image, image_size));
	ck_assert_int_eq(load_plain(), 0);
	ck_assert_uint_eq(entry.rip, base + 0x100);
	ck_assert_mem_eq(mem.base + base, image, 0x600);
	for (uint32_t a = base + 0x600; a < base + 0x1000; a++)
		ck_assert_uint_eq(mem.base[a], 0);
	ck_assert_uint_eq(mem.base[base + 0x1000], 0xCC);
	/* load_end_addr beyond the file. */
	put32(image + hdr + 20, base + 0x900);
	ck_assert_load_error(load_plain(), -ENOEXEC, "load_end_addr");
	/* load_addr after header_addr. */
	put32(image + hdr + 20, base + 0x600);
	put32(image + hdr + 16, base + hdr + 4);
	ck_assert_int_eq(load_plain(), -ENOEXEC);
	/* Placed outside RAM. */
	put32(image + hdr + 12, 0x7000000 + hdr);
	put32(image + hdr + 16, 0x7000000);
	put32(image + hdr + 20, 0);
	put32(image + hdr + 24, 0);
	ck_assert_load_error(load_plain(), -ERANGE,
			     "image (0x7000000-0x7000800) is outside guest RAM");
	/* load_addr + the file's length runs past 4 GiB: the real end. */
	put32(image + hdr + 12, 0xFFFFF800 + hdr);
	put32(image + hdr + 16, 0xFFFFF800);
	ck_assert_load_error(load_plain(), -ERANGE,
			     "image (0xfffff800-0x100000000) is outside guest RAM");
	put32(image + hdr + 12, 0xFFFFFC00 + hdr);
	put32(image + hdr + 16, 0xFFFFFC00);
	ck_assert_load_error(load_plain(), -ERANGE,
			     "image (0xfffffc00-0x100000400) is outside guest RAM");
	/* Placed on the info block kite writes afterwards. */
	put32(image + hdr + 12, 0x7000 + hdr);
	put32(image + hdr + 16, 0x7000);
	ck_assert_load_error(load_plain(), -EINVAL, "overlaps");
	put32(image + hdr + 12, 0x1FC00 + hdr);
	put32(image + hdr + 16, 0x1FC00);
	ck_assert_load_error(load_plain(), -EINVAL, "overlaps");
}
END_TEST

/* ---- errors -------------------------------------------------------------- */

START_TEST(segment_outside_ram)
{
	/* Wholly above RAM, then straddling its end: bad input (exit
	 * status 2), never -ENOMEM (the host's, status 4). */
	phdr(0)->p_paddr = 0x8000000;
	ck_assert_load_error(load_plain(), -ERANGE,
			     "ELF segment 0 (0x8000000-0x8000800) is outside guest RAM");
	ck_assert(x86_load_bad_input(-ERANGE));
	phdr(0)->p_paddr = 64 * MiB - 0x400;
	ck_assert_load_error(load_plain(), -ERANGE, "outside guest RAM");
	/* In the 32-bit PCI hole, and wrapping at 4 GiB. */
	phdr(0)->p_paddr = 0xFEE00000;
	ck_assert_load_error(load_plain(), -ERANGE, "outside guest RAM");
	phdr(0)->p_paddr = 0xFFFFFC00;
	ck_assert_load_error(load_plain(), -ERANGE,
			     "ELF segment 0 (0xfffffc00-0x100000400) is outside guest RAM");
}
END_TEST

/* A segment whose end passes 2^32: the address printed is the real end,
 * not what a 32-bit sum wraps to; the second segment is the one named. */
START_TEST(segment_end_wraps_past_4g)
{
	const struct segment segs[2] = {
		{ PT_LOAD, KERNEL_GPA, DATA_OFF, 0x300, 0x800 },
		{ PT_LOAD, 0x200000, DATA_OFF, 0x300, 0xFFFFFFFFU },
	};

	build_elf(segs, 2, DATA_OFF + 0x300);
	ck_assert_load_error(load_plain(), -ERANGE,
			     "ELF segment 1 (0x200000-0x1001fffff) is outside guest RAM");
	phdr(1)->p_paddr = 0xFFFFFFFFU;
	phdr(1)->p_filesz = 0;
	phdr(1)->p_memsz = 2;
	ck_assert_load_error(load_plain(), -ERANGE,
			     "ELF segment 1 (0xffffffff-0x100000001) is outside guest RAM");
	/* RAM above 4 GiB does not make it loadable: 32-bit addresses. */
	guest_memory_destroy(&mem);
	ck_assert_int_eq(guest_memory_create(&mem, 5 * GiB, NULL), 0);
	phdr(1)->p_paddr = 0xFFFFF000U;
	phdr(1)->p_memsz = 0x2000;
	ck_assert_load_error(load_plain(), -ERANGE,
			     "ELF segment 1 (0xfffff000-0x100001000) is outside guest RAM");
}
END_TEST

START_TEST(segment_overlapping_boot_area)
{
	static const uint32_t bad[] = {
		0x500, 0x0, 0x7000, 0x7F00, 0x1FC00, 0x20000, 0x2FF00,
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		phdr(0)->p_paddr = bad[i];
		ck_assert_load_error(load_plain(), -EINVAL, "overlaps");
	}
	/* Just clear of both areas. */
	phdr(0)->p_paddr = 0x8000;
	ck_assert_int_eq(load_plain(), 0);
	phdr(0)->p_paddr = 0x30000;
	ck_assert_int_eq(load_plain(), 0);
}
END_TEST

START_TEST(truncated_program_headers)
{
	ehdr()->e_phnum = 200; /* 200 * 32 bytes run past the file */
	ck_assert_load_error(load_plain(), -ENOEXEC, "program headers");
	ehdr()->e_phnum = 1;
	ehdr()->e_phoff = (Elf32_Off)image_size - 16;
	ck_assert_load_error(load_plain(), -ENOEXEC, "program headers");
	ehdr()->e_phoff = 0xFFFFFFF0;
	ck_assert_load_error(load_plain(), -ENOEXEC, "program headers");
	ehdr()->e_phoff = PHDR_OFF;
	ehdr()->e_phentsize = 40;
	ck_assert_load_error(load_plain(), -ENOEXEC, "program headers");
}
END_TEST

START_TEST(segment_data_outside_file)
{
	phdr(0)->p_filesz = 0x400; /* the file ends at DATA_OFF + 0x300 */
	ck_assert_load_error(load_plain(), -ENOEXEC, "outside the file");
	phdr(0)->p_filesz = 0x300;
	phdr(0)->p_offset = 0xFFFFFF00;
	ck_assert_load_error(load_plain(), -ENOEXEC, "outside the file");
	/* filesz larger than memsz. */
	phdr(0)->p_offset = DATA_OFF;
	phdr(0)->p_memsz = 0x200;
	ck_assert_load_error(load_plain(), -ENOEXEC, "outside the file");
}
END_TEST

START_TEST(elf64_refused)
{
	image[EI_CLASS] = ELFCLASS64;
	ck_assert_load_error(load_plain(), -ENOEXEC, "32-bit");
	image[EI_CLASS] = ELFCLASS32;
	ehdr()->e_machine = EM_X86_64;
	ck_assert_load_error(load_plain(), -ENOEXEC, "32-bit");
}
END_TEST

START_TEST(not_elf_without_kludge)
{
	image[0] = 0;
	ck_assert_load_error(load_plain(), -ENOEXEC, "not an ELF");
	/* Shorter than an ELF header, header still found. */
	build_default();
	memset(image, 0, sizeof(Elf32_Ehdr));
	put_header(0, 0);
	image_size = 12;
	ck_assert_load_error(load_plain(), -ENOEXEC, "not an ELF");
}
END_TEST

START_TEST(no_loadable_segment)
{
	phdr(0)->p_type = PT_NOTE;
	ck_assert_load_error(load_plain(), -ENOEXEC, "no loadable segment");
	ehdr()->e_phnum = 0;
	ck_assert_load_error(load_plain(), -ENOEXEC, "no loadable segment");
}
END_TEST

START_TEST(unsupported_header_flags)
{
	static const uint32_t bad[] = { 1U << 3, 1U << 8, 1U << 15 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put_header(MBH_OFF, MULTIBOOT_PAGE_ALIGN | bad[i]);
		ck_assert_load_error(load_plain(), -ENOTSUP, "unsupported");
	}
	/* Optional bits (16-31) other than the a.out kludge are ignored. */
	put_header(MBH_OFF, MULTIBOOT_PAGE_ALIGN | (1U << 20));
	ck_assert_int_eq(load_plain(), 0);
}
END_TEST

START_TEST(missing_header)
{
	memset(image + MBH_OFF, 0, 12);
	ck_assert_load_error(load_plain(), -ENOEXEC, "no multiboot header");
}
END_TEST

START_TEST(too_little_ram)
{
	guest_memory_destroy(&mem);
	ck_assert_int_eq(guest_memory_create(&mem, MiB, NULL), 0);
	ck_assert_load_error(load_plain(), -ERANGE, "2 MiB");
}
END_TEST

START_TEST(cmdline_too_long)
{
	static char cmd[0x10001];

	memset(cmd, 'c', 0x10000);
	ck_assert_load_error(load(NULL, 0, NULL, cmd), -E2BIG, "command line");
	cmd[0xFFFF] = '\0';
	ck_assert_int_eq(load(NULL, 0, NULL, cmd), 0);
	ck_assert_uint_eq(mem.base[0x20000 + 0xFFFE], 'c');
	ck_assert_uint_eq(mem.base[0x20000 + 0xFFFF], 0);
}
END_TEST

static Suite *multiboot_suite(void)
{
	Suite *s = suite_create("multiboot");
	TCase *detect = tcase_create("detect");
	TCase *loading = tcase_create("load");
	TCase *errors = tcase_create("errors");

	tcase_add_checked_fixture(detect, setup, teardown);
	tcase_add_test(detect, detect_valid_header);
	tcase_add_test(detect, detect_bad_magic);
	tcase_add_test(detect, detect_bad_checksum);
	tcase_add_test(detect, detect_requires_alignment);
	tcase_add_test(detect, detect_within_first_8k);
	tcase_add_test(detect, detect_short_images);
	suite_add_tcase(s, detect);

	tcase_add_checked_fixture(loading, setup, teardown);
	tcase_add_test(loading, load_segment_to_paddr);
	tcase_add_test(loading, load_several_segments);
	tcase_add_test(loading, load_unaligned_program_headers);
	tcase_add_test(loading, entry_state);
	tcase_add_test(loading, info_block_without_module);
	tcase_add_test(loading, empty_cmdline_is_empty_string);
	tcase_add_test(loading, mmap_entries);
	tcase_add_test(loading, mmap_with_ram_above_4g);
	tcase_add_test(loading, module_fields);
	tcase_add_test(loading, module_stays_clear_of_boot_area);
	tcase_add_test(loading, module_too_big);
	tcase_add_test(loading, module_bigger_than_ram);
	tcase_add_test(loading, aout_kludge);
	suite_add_tcase(s, loading);

	tcase_add_checked_fixture(errors, setup, teardown);
	tcase_add_test(errors, segment_outside_ram);
	tcase_add_test(errors, segment_end_wraps_past_4g);
	tcase_add_test(errors, segment_overlapping_boot_area);
	tcase_add_test(errors, truncated_program_headers);
	tcase_add_test(errors, segment_data_outside_file);
	tcase_add_test(errors, elf64_refused);
	tcase_add_test(errors, not_elf_without_kludge);
	tcase_add_test(errors, no_loadable_segment);
	tcase_add_test(errors, unsupported_header_flags);
	tcase_add_test(errors, missing_header);
	tcase_add_test(errors, too_little_ram);
	tcase_add_test(errors, cmdline_too_long);
	suite_add_tcase(s, errors);
	return s;
}

UNIT_MAIN(multiboot_suite)
