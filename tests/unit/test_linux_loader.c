/* Unit tests for the Linux loader: arch/x86/linux.c (setup header,
 * boot_params, PVH start info, entry state), arch/x86/kernel_unpack.c
 * (payload formats, cache), arch/x86/elf.c and arch/x86/e820.c.
 *
 * Synthetic images are built here: a tiny ELF64 "vmlinux", compressed with
 * each supported format the way the kernel build does it (payload + le32
 * unpacked size), wrapped in a minimal bzImage.  The stock Debian kernels
 * under /boot are exercised too when installed; their unpack times are
 * printed as a benchmark figure (never asserted). */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "arch/x86/e820.h"
#include "arch/x86/elf.h"
#include "arch/x86/kernel_unpack.h"
#include "arch/x86/linux.h"
#include "arch/x86/loader.h"
#include "tests/unit/unit.h"
#include "vmm/memory.h"

#define GUEST_MEM    (64ULL << 20)
#define KERNEL_PADDR 0x1000000ULL
#define KERNEL_VADDR 0xffffffff81000000ULL
#define DATA_OFF     0x200000ULL /* second segment, 2 MiB above the first */
#define TEXT_SIZE    0x200
#define DATA_FILESZ  0x80
#define DATA_MEMSZ   0x2000
#define PVH_ENTRY    (KERNEL_PADDR + 0x40)

/* ---- building test images --------------------------------------------- */

struct buf {
	uint8_t *data;
	size_t len;
};

static void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static uint8_t text_byte(unsigned i)
{
	return (uint8_t)(i * 7 + 1);
}

struct elf_opts {
	uint64_t paddr;      /* load address of the first segment */
	bool virtual_entry;  /* e_entry virtual (+0x10) instead of physical */
	bool pvh_note;
};

/* A two-segment ELF64 like vmlinux: text at paddr (vaddr in the kernel
 * map), data + bss 2 MiB above, a PT_NOTE with Xen notes. */
static struct buf make_elf(struct elf_opts o)
{
	struct buf b = { calloc(1, 0x1400), 0x1400 };
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b.data;
	Elf64_Phdr ph[3];
	uint8_t *note = b.data + 0x800;
	size_t nlen = 0;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = o.virtual_entry ? KERNEL_VADDR + 0x10 : o.paddr;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 3;

	/* "Xen" note type 6 ("linux"), then optionally PHYS32_ENTRY. */
	{
		uint32_t hdr[3] = { 4, 6, 6 };

		memcpy(note + nlen, hdr, 12);
		memcpy(note + nlen + 12, "Xen", 4);
		memcpy(note + nlen + 16, "linux", 6);
		nlen += 16 + 8;
	}
	if (o.pvh_note) {
		uint32_t hdr[3] = { 4, 8, XEN_ELFNOTE_PHYS32_ENTRY };
		uint64_t addr = o.paddr + 0x40;

		memcpy(note + nlen, hdr, 12);
		memcpy(note + nlen + 12, "Xen", 4);
		memcpy(note + nlen + 16, &addr, 8);
		nlen += 16 + 8;
	}

	memset(ph, 0, sizeof(ph));
	ph[0] = (Elf64_Phdr){ PT_LOAD, PF_R | PF_X, 0x1000, KERNEL_VADDR,
			      o.paddr, TEXT_SIZE, TEXT_SIZE, 0x200000 };
	ph[1] = (Elf64_Phdr){ PT_LOAD, PF_R | PF_W, 0x1200,
			      KERNEL_VADDR + DATA_OFF, o.paddr + DATA_OFF,
			      DATA_FILESZ, DATA_MEMSZ, 0x200000 };
	ph[2] = (Elf64_Phdr){ PT_NOTE, PF_R, 0x800, 0, 0, nlen, nlen, 4 };
	memcpy(b.data + sizeof(*eh), ph, sizeof(ph));
	for (unsigned i = 0; i < TEXT_SIZE; i++)
		b.data[0x1000 + i] = text_byte(i);
	memset(b.data + 0x1200, 0x5A, DATA_FILESZ);
	return b;
}

enum test_format { F_GZIP, F_XZ, F_LZMA, F_ZSTD, F_LZ4, F_COUNT };
static const char *const format_names[F_COUNT] = { "gzip", "xz", "lzma",
						   "zstd", "lz4" };

/* Compress like the kernel build: the stream, then (except gzip, whose
 * trailer already holds it) the unpacked size as le32. */
static struct buf compress_as(enum test_format f, const uint8_t *in, size_t len)
{
	size_t cap = len * 2 + 4096;
	struct buf b = { malloc(cap), 0 };

	switch (f) {
	case F_GZIP: {
		z_stream zs;

		memset(&zs, 0, sizeof(zs));
		ck_assert_int_eq(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS,
					      8, Z_DEFAULT_STRATEGY), Z_OK);
		zs.next_in = (Bytef *)in;
		zs.avail_in = (uInt)len;
		zs.next_out = b.data;
		zs.avail_out = (uInt)cap;
		ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
		b.len = zs.total_out;
		deflateEnd(&zs);
		return b; /* gzip's ISIZE is the size word */
	}
	case F_XZ:
		ck_assert_int_eq(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL,
							 in, len, b.data, &b.len,
							 cap), LZMA_OK);
		break;
	case F_LZMA: {
		lzma_stream s = LZMA_STREAM_INIT;
		lzma_options_lzma opt;

		ck_assert(!lzma_lzma_preset(&opt, 6));
		ck_assert_int_eq(lzma_alone_encoder(&s, &opt), LZMA_OK);
		s.next_in = in;
		s.avail_in = len;
		s.next_out = b.data;
		s.avail_out = cap;
		ck_assert_int_eq(lzma_code(&s, LZMA_FINISH), LZMA_STREAM_END);
		b.len = s.total_out;
		lzma_end(&s);
		break;
	}
	case F_ZSTD:
		b.len = ZSTD_compress(b.data, cap, in, len, 19);
		ck_assert(!ZSTD_isError(b.len));
		break;
	case F_LZ4: {
		/* Legacy frame: magic, [le32 size][block]... */
		int n;

		put32(b.data, 0x184C2102U);
		n = LZ4_compress_default((const char *)in, (char *)b.data + 8,
					 (int)len, (int)cap - 16);
		ck_assert_int_gt(n, 0);
		put32(b.data + 4, (uint32_t)n);
		b.len = 8 + (size_t)n;
		break;
	}
	default:
		ck_abort();
	}
	put32(b.data + b.len, (uint32_t)len);
	b.len += 4;
	return b;
}

#define SETUP_SECTS 4
#define PM_OFF      ((SETUP_SECTS + 1) * 512)
#define PAYLOAD_OFF 0x200 /* after a fake decompressor stub */

/* A minimal bzImage (boot protocol 2.15) around |payload|. */
static struct buf make_bzimage(const uint8_t *payload, size_t plen)
{
	struct buf b;
	struct x86_setup_header h;

	b.len = PM_OFF + PAYLOAD_OFF + plen;
	b.data = calloc(1, b.len);
	memset(&h, 0, sizeof(h));
	h.setup_sects = SETUP_SECTS;
	h.boot_flag = 0xAA55;
	h.jump = 0x6AEB; /* jmp to 0x26C: the header is 0x7B bytes */
	h.header = 0x53726448;
	h.version = 0x020F;
	h.kernel_version = 0x300 - 0x200;
	h.loadflags = X86_LOADED_HIGH;
	h.code32_start = 0x100000;
	h.initrd_addr_max = 0x7FFFFFFF;
	h.kernel_alignment = 0x200000;
	h.relocatable_kernel = 1;
	h.min_alignment = 21;
	h.xloadflags = 0x7F;
	h.cmdline_size = 2047;
	h.payload_offset = PAYLOAD_OFF;
	h.payload_length = (uint32_t)plen;
	h.pref_address = KERNEL_PADDR;
	h.init_size = 0x400000;
	memcpy(b.data + 0x1F1, &h, sizeof(h));
	strcpy((char *)b.data + 0x300, "6.1.0-test (kite@test) #1 SMP");
	memset(b.data + PM_OFF, 0xCC, PAYLOAD_OFF); /* "decompressor" */
	memcpy(b.data + PM_OFF + PAYLOAD_OFF, payload, plen);
	return b;
}

static struct buf make_bzimage_of(enum test_format f, struct elf_opts o)
{
	struct buf elf = make_elf(o), z = compress_as(f, elf.data, elf.len);
	struct buf img = make_bzimage(z.data, z.len);

	buf_free(&elf);
	buf_free(&z);
	return img;
}

static const struct elf_opts default_elf = { KERNEL_PADDR, false, true };

/* Temporary files, removed in teardown. */
static char tmpdir[64];
static unsigned tmp_seq;

static void setup(void)
{
	strcpy(tmpdir, "/tmp/kite-test-linux-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static const char *write_tmp(const void *data, size_t len)
{
	static char paths[16][128];
	char *path = paths[tmp_seq % 16];
	int fd;

	snprintf(path, 128, "%s/f%u", tmpdir, tmp_seq++);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static struct guest_memory mem;

static void mem_setup(uint64_t size)
{
	void *p;

	ck_assert_int_eq(guest_memory_create(&mem, size, NULL), 0);
	/* Poison so that zero-filling (bss) is observable. */
	ck_assert_int_eq(guest_memory_translate(&mem, 0, mem.regions[0].size, &p), 0);
	memset(p, 0xEE, mem.regions[0].size);
}

static const uint8_t *gptr(uint64_t gpa, uint64_t len)
{
	void *p = NULL;

	ck_assert_int_eq(guest_memory_translate(&mem, gpa, len, &p), 0);
	return p;
}

static int load(const char *kernel, const char *initrd, const char *cmdline,
		enum x86_linux_boot boot, struct x86_boot_entry *e,
		struct x86_linux_info *info, char *err, size_t errlen)
{
	struct x86_linux_params p = {
		.kernel_path = kernel, .initrd_path = initrd,
		.cmdline = cmdline, .boot = boot, .cache_dir = "",
	};

	return x86_linux_load(&mem, &p, e, info, err, errlen);
}

/* What a call may cost: peak RSS (ru_maxrss) shows what it touched, peak
 * address space (VmPeak) what it allocated without touching, as a
 * decoder does with a dictionary its header asks for.  Both are peaks:
 * growth across the call bounds it whatever it freed since.  Each test
 * runs in a process of its own (Check forks). */
struct mem_peaks {
	long rss_kib, vm_kib;
};

#define RSS_GROWTH_MAX_KIB (200L << 10) /* 200 MiB */
#define VM_GROWTH_MAX_KIB  (512L << 10) /* above any cap kite sets */

static struct mem_peaks mem_peaks(void)
{
	struct mem_peaks m = { 0, -1 };
	struct rusage ru;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
	m.rss_kib = ru.ru_maxrss;
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPeak: %ld kB", &m.vm_kib) == 1)
			break;
	fclose(f);
	ck_assert_int_ge(m.vm_kib, 0);
	return m;
}

static void check_mem_growth(struct mem_peaks before, const char *what)
{
	struct mem_peaks now = mem_peaks();

	ck_assert_msg(now.rss_kib - before.rss_kib < RSS_GROWTH_MAX_KIB,
		      "%s: peak RSS grew by %ld MiB", what,
		      (now.rss_kib - before.rss_kib) >> 10);
	ck_assert_msg(now.vm_kib - before.vm_kib < VM_GROWTH_MAX_KIB,
		      "%s: peak address space grew by %ld MiB", what,
		      (now.vm_kib - before.vm_kib) >> 10);
}

/* ---- e820 ---------------------------------------------------------------- */

START_TEST(test_e820_low_memory_reserves_bios_window)
{
	struct e820_entry map[E820_MAX_FROM_MEMORY];
	unsigned nr = 0;

	ck_assert_int_eq(guest_memory_create(&mem, GUEST_MEM, NULL), 0);
	ck_assert_int_eq(e820_from_guest_memory(&mem, map, E820_MAX_FROM_MEMORY,
						&nr), 0);
	ck_assert_uint_eq(nr, 3);
	ck_assert_uint_eq(map[0].addr, 0);
	ck_assert_uint_eq(map[0].size, 0x9FC00);
	ck_assert_uint_eq(map[0].type, E820_TYPE_RAM);
	ck_assert_uint_eq(map[1].addr, 0x9FC00);
	ck_assert_uint_eq(map[1].size, 0x100000 - 0x9FC00);
	ck_assert_uint_eq(map[1].type, E820_TYPE_RESERVED);
	ck_assert_uint_eq(map[2].addr, 0x100000);
	ck_assert_uint_eq(map[2].size, GUEST_MEM - 0x100000);
	ck_assert_uint_eq(map[2].type, E820_TYPE_RAM);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_e820_ram_above_4g_follows_hole)
{
	struct e820_entry map[E820_MAX_FROM_MEMORY];
	unsigned nr = 0;

	ck_assert_int_eq(guest_memory_create(&mem, 4ULL << 30, NULL), 0);
	ck_assert_int_eq(e820_from_guest_memory(&mem, map, E820_MAX_FROM_MEMORY,
						&nr), 0);
	ck_assert_uint_eq(nr, 4);
	ck_assert_uint_eq(map[2].addr + map[2].size, GUEST_PCI_HOLE_START);
	ck_assert_uint_eq(map[3].addr, GUEST_PCI_HOLE_END);
	ck_assert_uint_eq(map[3].size, (4ULL << 30) - GUEST_PCI_HOLE_START);
	ck_assert_uint_eq(map[3].type, E820_TYPE_RAM);
	ck_assert_int_eq(e820_from_guest_memory(&mem, map, 3, &nr), -ENOSPC);
	guest_memory_destroy(&mem);
}
END_TEST

/* ---- kernel_unpack ------------------------------------------------------- */

START_TEST(test_unpack_detects_every_magic)
{
	static const struct { const char *magic; size_t len;
			      enum kernel_compression c; } cases[] = {
		{ "\x1f\x8b\x08", 3, KERNEL_COMP_GZIP },
		{ "BZh9", 4, KERNEL_COMP_BZIP2 },
		{ "\xfd" "7zXZ\0", 6, KERNEL_COMP_XZ },
		{ "\x5d\0\0\x80", 4, KERNEL_COMP_LZMA },
		{ "\x89LZO", 4, KERNEL_COMP_LZO },
		{ "\x02\x21\x4c\x18", 4, KERNEL_COMP_LZ4 },
		{ "\x28\xb5\x2f\xfd", 4, KERNEL_COMP_ZSTD },
		{ "\x7f" "ELF", 4, KERNEL_COMP_UNKNOWN },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_int_eq(kernel_compression_detect(
			(const uint8_t *)cases[i].magic, cases[i].len), cases[i].c);
	ck_assert_int_eq(kernel_compression_detect((const uint8_t *)"\x1f", 1),
			 KERNEL_COMP_UNKNOWN);
}
END_TEST

START_TEST(test_unpack_roundtrip_each_format)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = compress_as((enum test_format)_i, elf.data, elf.len);
	enum kernel_compression comp;
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256];

	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, &comp,
				       err, sizeof(err)), 0);
	ck_assert_str_eq(kernel_compression_name(comp), format_names[_i]);
	ck_assert_uint_eq(out_len, elf.len);
	ck_assert_mem_eq(out, elf.data, elf.len);
	free(out);
	buf_free(&elf);
	buf_free(&z);
}
END_TEST

START_TEST(test_unpack_truncated_stream_fails_each_format)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = compress_as((enum test_format)_i, elf.data, elf.len);
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256] = "";
	int rc;

	rc = kernel_unpack(z.data, z.len / 2, &out, &out_len, NULL, err,
			   sizeof(err));
	ck_assert_int_eq(rc, -ENOEXEC);
	ck_assert_msg(strstr(err, format_names[_i]) != NULL, "err: %s", err);
	buf_free(&elf);
	buf_free(&z);
}
END_TEST

START_TEST(test_unpack_corrupt_stream_fails)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = compress_as(F_XZ, elf.data, elf.len);
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256] = "";

	for (size_t i = 24; i < z.len - 16; i++)
		z.data[i] ^= 0x55;
	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				       sizeof(err)), -ENOEXEC);
	ck_assert_msg(strstr(err, "xz") != NULL, "err: %s", err);
	buf_free(&elf);
	buf_free(&z);
}
END_TEST

START_TEST(test_unpack_ignores_lying_size_word)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = compress_as(F_ZSTD, elf.data, elf.len);
	struct mem_peaks peaks;
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256];

	put32(z.data + z.len - 4, 16); /* far smaller than the truth */
	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				       sizeof(err)), 0);
	ck_assert_uint_eq(out_len, elf.len);
	ck_assert_mem_eq(out, elf.data, elf.len);
	free(out);
	/* Far larger: not believed up front either (no 1 GiB buffer for a
	 * payload of a few hundred bytes). */
	put32(z.data + z.len - 4, 0x3FF00000U);
	peaks = mem_peaks();
	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				       sizeof(err)), 0);
	check_mem_growth(peaks, "lying size word");
	ck_assert_uint_eq(out_len, elf.len);
	free(out);
	buf_free(&elf);
	buf_free(&z);
}
END_TEST

START_TEST(test_unpack_cache_hit_returns_same_bytes)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = compress_as(F_XZ, elf.data, elf.len);
	struct buf z4 = compress_as(F_LZ4, elf.data, elf.len);
	char dir[128], err[256];
	uint8_t *out = NULL;
	size_t out_len = 0;
	bool hit = true;
	glob_t g;

	snprintf(dir, sizeof(dir), "%s/cache/kite", tmpdir);
	ck_assert_int_eq(kernel_unpack_cached(z.data, z.len, GUEST_MEM, dir,
					      &out, &out_len, NULL, &hit, err,
					      sizeof(err)), 0);
	ck_assert(!hit);
	free(out);
	ck_assert_int_eq(kernel_unpack_cached(z.data, z.len, GUEST_MEM, dir,
					      &out, &out_len, NULL, &hit, err,
					      sizeof(err)), 0);
	ck_assert(hit);
	ck_assert_uint_eq(out_len, elf.len);
	ck_assert_mem_eq(out, elf.data, elf.len);
	free(out);
	/* lz4 unpacks faster than a cache read: never cached. */
	ck_assert_int_eq(kernel_unpack_cached(z4.data, z4.len, GUEST_MEM,
					      dir, &out, &out_len, NULL, &hit,
					      err, sizeof(err)), 0);
	free(out);
	ck_assert_int_eq(kernel_unpack_cached(z4.data, z4.len, GUEST_MEM,
					      dir, &out, &out_len, NULL, &hit,
					      err, sizeof(err)), 0);
	ck_assert(!hit);
	free(out);
	snprintf(err, sizeof(err), "%s/vmlinux-*", dir);
	ck_assert_int_eq(glob(err, 0, NULL, &g), 0);
	ck_assert_uint_eq(g.gl_pathc, 1);
	globfree(&g);
	buf_free(&elf);
	buf_free(&z);
	buf_free(&z4);
}
END_TEST

START_TEST(test_unpack_cache_replaces_damaged_entry)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = compress_as(F_GZIP, elf.data, elf.len);
	char dir[128], err[256];
	uint8_t *out = NULL;
	size_t out_len = 0;
	bool hit = true;
	glob_t g;

	snprintf(dir, sizeof(dir), "%s/c", tmpdir);
	ck_assert_int_eq(kernel_unpack_cached(z.data, z.len, GUEST_MEM, dir,
					      &out, &out_len, NULL, &hit, err,
					      sizeof(err)), 0);
	free(out);
	snprintf(err, sizeof(err), "%s/vmlinux-*", dir);
	ck_assert_int_eq(glob(err, 0, NULL, &g), 0);
	ck_assert_uint_eq(g.gl_pathc, 1);
	ck_assert_int_eq(truncate(g.gl_pathv[0], 100), 0); /* a torn write */
	ck_assert_int_eq(kernel_unpack_cached(z.data, z.len, GUEST_MEM, dir,
					      &out, &out_len, NULL, &hit, err,
					      sizeof(err)), 0);
	ck_assert(!hit);
	ck_assert_uint_eq(out_len, elf.len);
	ck_assert_mem_eq(out, elf.data, elf.len);
	free(out);
	ck_assert_int_eq(kernel_unpack_cached(z.data, z.len, GUEST_MEM, dir,
					      &out, &out_len, NULL, &hit, err,
					      sizeof(err)), 0);
	ck_assert(hit); /* rewritten whole */
	ck_assert_uint_eq(out_len, elf.len);
	free(out);
	globfree(&g);
	buf_free(&elf);
	buf_free(&z);
}
END_TEST

START_TEST(test_unpack_cache_keeps_a_bounded_number)
{
	char dir[128], pattern[160], err[256];
	glob_t g;

	snprintf(dir, sizeof(dir), "%s/cache", tmpdir);
	for (unsigned i = 0; i < KERNEL_CACHE_KEEP + 3; i++) {
		struct elf_opts o = default_elf;
		struct buf elf, z;
		uint8_t *out;
		size_t out_len;
		bool hit;

		o.paddr += (uint64_t)i << 21; /* a different kernel each time */
		elf = make_elf(o);
		z = compress_as(F_GZIP, elf.data, elf.len);
		ck_assert_int_eq(kernel_unpack_cached(z.data, z.len, GUEST_MEM,
						      dir, &out, &out_len, NULL,
						      &hit, err, sizeof(err)), 0);
		free(out);
		buf_free(&elf);
		buf_free(&z);
	}
	snprintf(pattern, sizeof(pattern), "%s/vmlinux-*", dir);
	ck_assert_int_eq(glob(pattern, 0, NULL, &g), 0);
	ck_assert_uint_eq(g.gl_pathc, KERNEL_CACHE_KEEP);
	globfree(&g);
}
END_TEST

START_TEST(test_unpack_default_cache_dir_follows_xdg)
{
	char buf[256];

	/* Runs in a forked child (Check's default): the environment change
	 * does not leak into other tests. */
	setenv("XDG_CACHE_HOME", "/x/cache", 1);
	ck_assert_str_eq(kernel_unpack_default_cache_dir(buf, sizeof(buf)),
			 "/x/cache/kite");
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/home/u", 1);
	ck_assert_str_eq(kernel_unpack_default_cache_dir(buf, sizeof(buf)),
			 "/home/u/.cache/kite");
	unsetenv("HOME");
	ck_assert_ptr_null(kernel_unpack_default_cache_dir(buf, sizeof(buf)));
}
END_TEST

/* ---- ELF ------------------------------------------------------------------- */

START_TEST(test_elf_entry_virtual_translates_to_physical)
{
	struct elf_opts o = default_elf;
	struct buf elf;
	struct elf64_image img;
	uint64_t pa = 0;
	char err[256];

	o.virtual_entry = true;
	elf = make_elf(o);
	ck_assert_int_eq(elf64_parse(elf.data, elf.len, &img, err, sizeof(err)), 0);
	ck_assert_uint_eq(img.nr_load, 2);
	ck_assert_uint_eq(img.paddr_start, KERNEL_PADDR);
	ck_assert_uint_eq(img.paddr_end, KERNEL_PADDR + DATA_OFF + DATA_MEMSZ);
	ck_assert_int_eq(elf64_entry_paddr(&img, &pa), 0);
	ck_assert_uint_eq(pa, KERNEL_PADDR + 0x10);
	buf_free(&elf);
}
END_TEST

START_TEST(test_elf_rejects_segment_past_file_end)
{
	struct buf elf = make_elf(default_elf);
	struct elf64_image img;
	char err[256] = "";

	ck_assert_int_eq(elf64_parse(elf.data, 0x1100, &img, err, sizeof(err)),
			 -ENOEXEC);
	ck_assert_msg(strstr(err, "past the end") != NULL, "err: %s", err);
	ck_assert_int_eq(elf64_parse(elf.data, 40, &img, err, sizeof(err)),
			 -ENOEXEC);
	buf_free(&elf);
}
END_TEST

START_TEST(test_elf_rejects_32bit_and_non_exec)
{
	struct buf elf = make_elf(default_elf);
	struct elf64_image img;
	char err[256];

	elf.data[EI_CLASS] = ELFCLASS32;
	ck_assert_int_eq(elf64_parse(elf.data, elf.len, &img, err, sizeof(err)),
			 -ENOEXEC);
	elf.data[EI_CLASS] = ELFCLASS64;
	((Elf64_Ehdr *)elf.data)->e_type = ET_DYN;
	ck_assert_int_eq(elf64_parse(elf.data, elf.len, &img, err, sizeof(err)),
			 -ENOEXEC);
	buf_free(&elf);
}
END_TEST

START_TEST(test_elf_note_lookup)
{
	struct buf elf = make_elf(default_elf);
	struct elf64_image img;
	const uint8_t *desc;
	size_t dlen;
	char err[256];

	ck_assert_int_eq(elf64_parse(elf.data, elf.len, &img, err, sizeof(err)), 0);
	ck_assert_int_eq(elf64_find_note(&img, "Xen", 6, &desc, &dlen), 0);
	ck_assert_uint_eq(dlen, 6);
	ck_assert_str_eq((const char *)desc, "linux");
	ck_assert_int_eq(elf64_find_note(&img, "Xen", XEN_ELFNOTE_PHYS32_ENTRY,
					 &desc, &dlen), 0);
	ck_assert_uint_eq(get64(desc), PVH_ENTRY);
	ck_assert_int_eq(elf64_find_note(&img, "GNU", 6, &desc, &dlen), -ENOENT);
	buf_free(&elf);
}
END_TEST

/* ---- full loads ------------------------------------------------------------ */

static void check_kernel_bytes(void)
{
	const uint8_t *t = gptr(KERNEL_PADDR, TEXT_SIZE);
	const uint8_t *d = gptr(KERNEL_PADDR + DATA_OFF, DATA_MEMSZ);

	for (unsigned i = 0; i < TEXT_SIZE; i++)
		ck_assert_uint_eq(t[i], text_byte(i));
	for (unsigned i = 0; i < DATA_FILESZ; i++)
		ck_assert_uint_eq(d[i], 0x5A);
	for (unsigned i = DATA_FILESZ; i < DATA_MEMSZ; i++)
		ck_assert_uint_eq(d[i], 0); /* bss zeroed */
}

static void check_long64_entry(const struct x86_boot_entry *e, uint64_t rip)
{
	const uint8_t *gdt = gptr(X86_BOOT_GDT_GPA, 32);
	const uint8_t *pml4 = gptr(X86_BOOT_PML4_GPA, 4096);
	const uint8_t *pdpt = gptr(0xA000, 4096);
	const uint8_t *pd3 = gptr(0xE000, 4096);

	ck_assert_int_eq(e->mode, X86_ENTRY_LONG64);
	ck_assert_uint_eq(e->rip, rip);
	ck_assert_uint_eq(e->rsi, X86_BOOT_INFO_GPA);
	ck_assert_uint_eq(e->cr3, X86_BOOT_PML4_GPA);
	ck_assert_uint_eq(e->gdt_base, X86_BOOT_GDT_GPA);
	ck_assert_uint_eq(e->gdt_limit, 31);
	ck_assert_uint_eq(e->code_sel, 0x10);
	ck_assert_uint_eq(e->data_sel, 0x18);
	/* __BOOT_CS: present 64-bit code (L=1, D=0); __BOOT_DS: data. */
	ck_assert_uint_eq(get64(gdt + 0x10), 0x00AF9A000000FFFFULL);
	ck_assert_uint_eq(get64(gdt + 0x18), 0x00CF92000000FFFFULL);
	/* Identity map of 4 GiB with 2 MiB pages. */
	ck_assert_uint_eq(get64(pml4), 0xA000 | 3);
	ck_assert_uint_eq(get64(pml4 + 8), 0);
	ck_assert_uint_eq(get64(pdpt + 3 * 8), 0xE000 | 3);
	ck_assert_uint_eq(get64(pdpt + 4 * 8), 0);
	ck_assert_uint_eq(get64(pd3 + 511 * 8), 0xFFE00000ULL | 0x83);
	ck_assert_uint_eq(get64(gptr(0xB000, 4096) + 8 * 8), (8ULL << 21) | 0x83);
}

START_TEST(test_load_bzimage_each_format)
{
	struct buf img = make_bzimage_of((enum test_format)_i, default_elf);
	uint8_t initrd_data[70000];
	const char *kpath, *ipath;
	struct x86_boot_entry e;
	struct x86_linux_info info;
	const uint8_t *bp;
	char err[512] = "";

	for (unsigned i = 0; i < sizeof(initrd_data); i++)
		initrd_data[i] = (uint8_t)(i ^ (i >> 8));
	kpath = write_tmp(img.data, img.len);
	ipath = write_tmp(initrd_data, sizeof(initrd_data));
	mem_setup(GUEST_MEM);
	ck_assert_msg(load(kpath, ipath, "console=ttyS0 quiet",
			   X86_LINUX_BOOT_AUTO, &e, &info, err, sizeof(err)) == 0,
		      "%s", err);

	ck_assert_str_eq(info.compression, format_names[_i]);
	ck_assert(info.is_bzimage);
	ck_assert_uint_eq(info.protocol_version, 0x20F);
	ck_assert_str_eq(info.kernel_version, "6.1.0-test (kite@test) #1 SMP");
	ck_assert_int_eq(info.boot, X86_LINUX_BOOT_64);
	ck_assert_uint_eq(info.kernel_start, KERNEL_PADDR);
	ck_assert(!info.relocated);
	check_kernel_bytes();
	check_long64_entry(&e, KERNEL_PADDR); /* vmlinux startup_64 */

	/* boot_params as the decompressor would hand it over. */
	bp = gptr(X86_BOOT_INFO_GPA, 4096);
	ck_assert_uint_eq(bp[0x1F1], SETUP_SECTS);           /* copied header */
	ck_assert_uint_eq(get32(bp + 0x202), 0x53726448);
	ck_assert_uint_eq(bp[0x210], 0xFF);                  /* type_of_loader */
	ck_assert_uint_eq(bp[0x211] & 0x83, 0x81);           /* HIGH|HEAP, !KASLR */
	ck_assert_uint_eq(get32(bp + 0x214), KERNEL_PADDR);  /* code32_start */
	ck_assert_uint_eq(get32(bp + 0x228), X86_BOOT_CMDLINE_GPA);
	ck_assert_str_eq((const char *)gptr(X86_BOOT_CMDLINE_GPA, 20),
			 "console=ttyS0 quiet");
	ck_assert_uint_eq(get32(bp + 0x21C), sizeof(initrd_data));
	ck_assert_uint_eq(get32(bp + 0x218), info.initrd_start);
	ck_assert_uint_eq(info.initrd_start & 0xFFF, 0);
	ck_assert_uint_ge(info.initrd_start, info.kernel_end);
	ck_assert_uint_le(info.initrd_start + sizeof(initrd_data), GUEST_MEM);
	ck_assert_mem_eq(gptr(info.initrd_start, sizeof(initrd_data)),
			 initrd_data, sizeof(initrd_data));
	ck_assert_uint_eq(get64(bp + 0x70), 0);              /* no RSDP given */
	ck_assert_uint_eq(bp[0x1EF], 0);                     /* sentinel */
	ck_assert_uint_eq(bp[0x1E8], 3);                     /* e820 entries */
	ck_assert_uint_eq(get64(bp + 0x2D0 + 20), 0x9FC00);
	ck_assert_uint_eq(get32(bp + 0x2D0 + 20 + 16), E820_TYPE_RESERVED);
	ck_assert_uint_eq(get64(bp + 0x2D0 + 40), 0x100000);
	ck_assert_uint_eq(get64(bp + 0x2D0 + 48), GUEST_MEM - 0x100000);
	ck_assert_uint_eq(get32(bp + 0x2D0 + 56), E820_TYPE_RAM);
	ck_assert_uint_eq(get32(bp + 0x1E0), (GUEST_MEM - 0x100000) >> 10);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_load_raw_vmlinux_elf)
{
	struct elf_opts o = default_elf;
	struct buf elf;
	struct x86_boot_entry e;
	struct x86_linux_info info;
	const uint8_t *bp;
	char err[512] = "";

	o.virtual_entry = true;
	elf = make_elf(o);
	mem_setup(GUEST_MEM);
	ck_assert_msg(load(write_tmp(elf.data, elf.len), NULL, NULL,
			   X86_LINUX_BOOT_AUTO, &e, &info, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert(!info.is_bzimage);
	ck_assert_str_eq(info.compression, "none");
	check_kernel_bytes();
	check_long64_entry(&e, KERNEL_PADDR + 0x10);
	bp = gptr(X86_BOOT_INFO_GPA, 4096);
	ck_assert_uint_eq(get32(bp + 0x202), 0x53726448);     /* synthesized */
	ck_assert_uint_eq(bp[0x206] | bp[0x207] << 8, 0x20F);
	ck_assert_uint_eq(get32(bp + 0x218), 0);             /* no initrd */
	ck_assert_uint_eq(*gptr(X86_BOOT_CMDLINE_GPA, 1), 0); /* empty line */
	buf_free(&elf);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_load_pvh_entry)
{
	struct buf img = make_bzimage_of(F_ZSTD, default_elf);
	struct x86_boot_entry e;
	struct x86_linux_info info;
	struct x86_linux_params p = { 0 };
	const uint8_t *si, *gdt;
	char err[512] = "";
	static const uint8_t initrd[5000] = { 1, 2, 3 };

	mem_setup(GUEST_MEM);
	p.kernel_path = write_tmp(img.data, img.len);
	p.initrd_path = write_tmp(initrd, sizeof(initrd));
	p.cmdline = "root=/dev/vda";
	p.rsdp_gpa = 0xE0000;
	p.boot = X86_LINUX_BOOT_PVH;
	p.cache_dir = "";
	ck_assert_msg(x86_linux_load(&mem, &p, &e, &info, err, sizeof(err)) == 0,
		      "%s", err);
	check_kernel_bytes();
	ck_assert_int_eq(e.mode, X86_ENTRY_PROTECTED32);
	ck_assert_uint_eq(e.rip, PVH_ENTRY);
	ck_assert_uint_eq(e.rbx, X86_BOOT_INFO_GPA);
	ck_assert_uint_eq(e.code_sel, 0x10);
	gdt = gptr(X86_BOOT_GDT_GPA, 32);
	ck_assert_uint_eq(get64(gdt + 0x10), 0x00CF9A000000FFFFULL); /* 32-bit */

	si = gptr(X86_BOOT_INFO_GPA, 56);
	ck_assert_uint_eq(get32(si), 0x336ec578);
	ck_assert_uint_eq(get32(si + 4), 1);               /* version */
	ck_assert_uint_eq(get32(si + 12), 1);              /* nr_modules */
	ck_assert_uint_eq(get64(si + 24), X86_BOOT_CMDLINE_GPA);
	ck_assert_uint_eq(get64(si + 32), 0xE0000);        /* rsdp */
	ck_assert_uint_eq(get32(si + 48), 3);              /* memmap entries */
	{
		const uint8_t *mod = gptr(get64(si + 16), 32);
		const uint8_t *mm = gptr(get64(si + 40), 3 * 24);

		ck_assert_uint_eq(get64(mod), info.initrd_start);
		ck_assert_uint_eq(get64(mod + 8), sizeof(initrd));
		ck_assert_mem_eq(gptr(info.initrd_start, 3), initrd, 3);
		ck_assert_uint_eq(get64(mm + 24), 0x9FC00);
		ck_assert_uint_eq(get32(mm + 24 + 16), E820_TYPE_RESERVED);
		ck_assert_uint_eq(get64(mm + 48 + 8), GUEST_MEM - 0x100000);
	}
	ck_assert_str_eq((const char *)gptr(X86_BOOT_CMDLINE_GPA, 14),
			 "root=/dev/vda");
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_load_pvh_without_note_is_unsupported)
{
	struct elf_opts o = default_elf;
	struct buf img;
	struct x86_boot_entry e;
	char err[512] = "";

	o.pvh_note = false;
	img = make_bzimage_of(F_GZIP, o);
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(write_tmp(img.data, img.len), NULL, NULL,
			      X86_LINUX_BOOT_PVH, &e, NULL, err, sizeof(err)),
			 -ENOTSUP);
	ck_assert_msg(strstr(err, "PHYS32_ENTRY") != NULL, "err: %s", err);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_load_bzimage_as_is_enters_at_0x200)
{
	struct buf img = make_bzimage_of(F_XZ, default_elf);
	struct x86_boot_entry e;
	struct x86_linux_info info;
	const uint8_t *bp;
	char err[512] = "";

	mem_setup(GUEST_MEM);
	ck_assert_msg(load(write_tmp(img.data, img.len), NULL, "x",
			   X86_LINUX_BOOT_BZIMAGE64, &e, &info, err,
			   sizeof(err)) == 0, "%s", err);
	/* Protected-mode code loaded at pref_address, entry startup_64. */
	ck_assert_mem_eq(gptr(KERNEL_PADDR, img.len - PM_OFF), img.data + PM_OFF,
			 img.len - PM_OFF);
	check_long64_entry(&e, KERNEL_PADDR + 0x200);
	ck_assert_uint_eq(info.kernel_end, KERNEL_PADDR + 0x400000); /* init_size */
	bp = gptr(X86_BOOT_INFO_GPA, 4096);
	ck_assert_uint_eq(get32(bp + 0x214), KERNEL_PADDR);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_load_passes_rsdp_and_caller_e820)
{
	struct buf img = make_bzimage_of(F_LZ4, default_elf);
	static const struct e820_entry map[] = {
		{ 0, 0x9F000, E820_TYPE_RAM },
		{ 0x9F000, 0x61000, E820_TYPE_RESERVED },
		{ 0x100000, GUEST_MEM - 0x200000, E820_TYPE_RAM },
		{ GUEST_MEM - 0x100000, 0x100000, E820_TYPE_ACPI },
	};
	struct x86_linux_params p = { 0 };
	struct x86_boot_entry e;
	struct x86_linux_info info;
	const uint8_t *bp;
	char err[512] = "";
	static const uint8_t initrd[4096];

	mem_setup(GUEST_MEM);
	p.kernel_path = write_tmp(img.data, img.len);
	p.initrd_path = write_tmp(initrd, sizeof(initrd));
	p.rsdp_gpa = 0xF0000;
	p.e820 = map;
	p.nr_e820 = 4;
	p.cache_dir = "";
	ck_assert_msg(x86_linux_load(&mem, &p, &e, &info, err, sizeof(err)) == 0,
		      "%s", err);
	bp = gptr(X86_BOOT_INFO_GPA, 4096);
	ck_assert_uint_eq(get64(bp + 0x70), 0xF0000);
	ck_assert_uint_eq(bp[0x1E8], 4);
	ck_assert_uint_eq(get32(bp + 0x2D0 + 3 * 20 + 16), E820_TYPE_ACPI);
	/* The initrd stays out of the ACPI area: top of the RAM entry. */
	ck_assert_uint_eq(info.initrd_start, GUEST_MEM - 0x100000 - 4096);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

/* ---- errors ------------------------------------------------------------------ */

START_TEST(test_error_missing_kernel)
{
	struct x86_boot_entry e;
	char err[512] = "", path[128];

	snprintf(path, sizeof(path), "%s/nope", tmpdir);
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(path, NULL, NULL, 0, &e, NULL, err, sizeof(err)),
			 -ENOENT);
	ck_assert_msg(strstr(err, "kernel '") == err && strstr(err, "nope'"),
		      "err: %s", err);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_error_bad_magic)
{
	static uint8_t junk[4096];
	struct x86_boot_entry e;
	char err[512] = "";

	memset(junk, 'A', sizeof(junk));
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(write_tmp(junk, sizeof(junk)), NULL, NULL, 0, &e,
			      NULL, err, sizeof(err)), -ENOEXEC);
	ck_assert_msg(strstr(err, "bad magic") != NULL, "err: %s", err);
	ck_assert_int_eq(load(write_tmp(junk, 100), NULL, NULL, 0, &e, NULL, err,
			      sizeof(err)), -ENOEXEC);
	ck_assert_msg(strstr(err, "too short") != NULL, "err: %s", err);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_error_truncated_file)
{
	struct buf img = make_bzimage_of(F_XZ, default_elf);
	struct x86_boot_entry e;
	char err[512] = "";

	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(write_tmp(img.data, img.len - 40), NULL, NULL, 0,
			      &e, NULL, err, sizeof(err)), -ENOEXEC);
	ck_assert_msg(strstr(err, "truncated") != NULL, "err: %s", err);
	ck_assert_int_eq(load(write_tmp(img.data, 0x220), NULL, NULL, 0, &e, NULL,
			      err, sizeof(err)), -ENOEXEC);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_error_unsupported_compression)
{
	/* _i = 0: bzip2, 1: lzo. */
	static const char *const magic[2] = { "BZh91AY&SY", "\x89LZO\0\r\n\x1a\n" };
	static const char *const name[2] = { "bzip2", "lzo" };
	uint8_t payload[256] = { 0 };
	struct buf img;
	struct x86_boot_entry e;
	char err[512] = "", want[256];
	const char *path;

	memcpy(payload, magic[_i], 10);
	img = make_bzimage(payload, sizeof(payload));
	path = write_tmp(img.data, img.len);
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(path, NULL, NULL, 0, &e, NULL, err, sizeof(err)),
			 -ENOTSUP);
	snprintf(want, sizeof(want), "kernel '%s': unsupported compression %s",
		 path, name[_i]);
	ck_assert_str_eq(err, want);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_error_unknown_compression_and_non_elf_payload)
{
	uint8_t payload[256];
	struct buf z, img;
	struct x86_boot_entry e;
	char err[512] = "";

	memset(payload, 0x42, sizeof(payload));
	img = make_bzimage(payload, sizeof(payload));
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(write_tmp(img.data, img.len), NULL, NULL, 0, &e,
			      NULL, err, sizeof(err)), -ENOEXEC);
	ck_assert_msg(strstr(err, "unknown compression") != NULL, "err: %s", err);
	buf_free(&img);

	z = compress_as(F_GZIP, payload, sizeof(payload)); /* not an ELF */
	img = make_bzimage(z.data, z.len);
	ck_assert_int_eq(load(write_tmp(img.data, img.len), NULL, NULL, 0, &e,
			      NULL, err, sizeof(err)), -ENOEXEC);
	ck_assert_msg(strstr(err, "unpacked payload") != NULL, "err: %s", err);
	buf_free(&z);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_error_segment_outside_guest_memory)
{
	struct elf_opts o = default_elf;
	struct buf img;
	struct x86_boot_entry e;
	char err[512] = "";

	o.paddr = 0x3F00000; /* data segment ends at 66 MiB > 64 MiB */
	img = make_bzimage_of(F_GZIP, o);
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(write_tmp(img.data, img.len), NULL, NULL, 0, &e,
			      NULL, err, sizeof(err)), -ERANGE);
	ck_assert_msg(strstr(err, "outside guest memory") != NULL, "err: %s", err);
	/* Nothing was written for a rejected image. */
	ck_assert_uint_eq(*gptr(0x3F00000, 1), 0xEE);
	buf_free(&img);

	o.paddr = 0x80000; /* would overwrite the boot structures */
	img = make_bzimage_of(F_GZIP, o);
	ck_assert_int_eq(load(write_tmp(img.data, img.len), NULL, NULL, 0, &e,
			      NULL, err, sizeof(err)), -ERANGE);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_error_initrd_too_big)
{
	struct buf img = make_bzimage_of(F_LZ4, default_elf);
	struct x86_boot_entry e;
	char err[512] = "", ipath[128];
	int fd;

	snprintf(ipath, sizeof(ipath), "%s/big-initrd", tmpdir);
	fd = open(ipath, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 48 << 20), 0); /* > RAM above kernel */
	close(fd);
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(write_tmp(img.data, img.len), ipath, NULL, 0, &e,
			      NULL, err, sizeof(err)), -E2BIG);
	ck_assert_msg(strstr(err, "initrd '") == err &&
		      strstr(err, "do not fit") != NULL, "err: %s", err);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

START_TEST(test_error_cmdline_too_long)
{
	struct buf img = make_bzimage_of(F_LZ4, default_elf);
	struct x86_boot_entry e;
	char err[512] = "", *line = malloc(3000);

	memset(line, 'x', 2999);
	line[2999] = '\0';
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(write_tmp(img.data, img.len), NULL, line, 0, &e,
			      NULL, err, sizeof(err)), -E2BIG);
	ck_assert_msg(strstr(err, "command line") != NULL, "err: %s", err);
	line[2047] = '\0'; /* exactly cmdline_size: accepted */
	ck_assert_msg(load(write_tmp(img.data, img.len), NULL, line, 0, &e, NULL,
			   err, sizeof(err)) == 0, "%s", err);
	free(line);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

/* ---- hostile inputs: special files, decoder memory, bombs --------------- */

/* An lzma-alone stream (with the size word) whose header asks for a
 * |dict|-byte dictionary; the data was made with a small one. */
static struct buf lzma_with_dict(uint32_t dict)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = compress_as(F_LZMA, elf.data, elf.len);

	put32(z.data + 1, dict); /* props byte, then le32 dict size */
	buf_free(&elf);
	return z;
}

static size_t skip_varint(const uint8_t *p, size_t pos)
{
	while (p[pos++] & 0x80)
		;
	return pos;
}

/* An xz stream (with the size word) whose LZMA2 filter asks for the
 * dictionary |code| stands for: (2 | (code & 1)) << (code / 2 + 11)
 * (xz file format §5.3.1); the block header's CRC32 made good again. */
static struct buf xz_with_dict_code(uint8_t code)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = compress_as(F_XZ, elf.data, elf.len);
	uint8_t *bh = z.data + 12; /* after the stream header */
	size_t bh_len = ((size_t)bh[0] + 1) * 4, pos = 2;
	unsigned nr_filters = (bh[1] & 3) + 1;
	uint32_t crc;

	if (bh[1] & 0x40)
		pos = skip_varint(bh, pos); /* compressed size */
	if (bh[1] & 0x80)
		pos = skip_varint(bh, pos); /* uncompressed size */
	for (unsigned i = 0; i < nr_filters; i++) {
		bool lzma2 = bh[pos] == 0x21;

		pos = skip_varint(bh, pos); /* filter ID */
		ck_assert_uint_eq(bh[pos], 1); /* properties size: LZMA2's */
		pos++;
		if (lzma2)
			bh[pos] = code;
		pos++;
	}
	crc = lzma_crc32(bh, bh_len - 4, 0);
	put32(bh + bh_len - 4, crc);
	buf_free(&elf);
	return z;
}

/* A zstd frame (with the size word) whose header asks for a 2^|log|
 * window: no content size, so a Window_Descriptor (RFC 8878 §3.1.1.1.2),
 * exponent log - 10, mantissa 0. */
static struct buf zstd_with_window_log(unsigned log)
{
	struct buf elf = make_elf(default_elf);
	struct buf z = { malloc(elf.len + 4096), 0 };
	ZSTD_CCtx *cctx = ZSTD_createCCtx();

	ck_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx,
					ZSTD_c_contentSizeFlag, 0)));
	z.len = ZSTD_compress2(cctx, z.data, elf.len + 4096, elf.data, elf.len);
	ck_assert(!ZSTD_isError(z.len));
	ck_assert_uint_eq(z.data[4] & 0x20, 0); /* not single-segment */
	z.data[5] = (uint8_t)((log - 10) << 3);
	put32(z.data + z.len, (uint32_t)elf.len);
	z.len += 4;
	ZSTD_freeCCtx(cctx);
	buf_free(&elf);
	return z;
}

/* zstd of |n| zero bytes, made without holding them: a few KiB that
 * unpack to |n|.  With a size word that lies small, as a bomb would. */
static struct buf zstd_zeros(uint64_t n)
{
	static const uint8_t zero[1 << 20];
	struct buf z = { malloc(1 << 20), 0 };
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_outBuffer out = { z.data, (1 << 20) - 4, 0 };

	ck_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx,
					ZSTD_c_compressionLevel, 1)));
	for (uint64_t done = 0; done < n; done += sizeof(zero)) {
		ZSTD_inBuffer in = { zero, sizeof(zero), 0 };

		while (in.pos < in.size)
			ck_assert(!ZSTD_isError(ZSTD_compressStream2(
				cctx, &out, &in, ZSTD_e_continue)));
	}
	for (;;) {
		ZSTD_inBuffer in = { zero, 0, 0 };
		size_t left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);

		ck_assert(!ZSTD_isError(left));
		if (left == 0)
			break;
		ck_assert_uint_lt(out.pos, out.size);
	}
	z.len = out.pos;
	put32(z.data + z.len, 4096);
	z.len += 4;
	ZSTD_freeCCtx(cctx);
	return z;
}

/* Every kind of input that is not a regular file with data in it is
 * refused by type, before any read: nothing blocks (a FIFO with no
 * writer would block a plain open() for ever: this test's timeout). */
START_TEST(test_input_special_files_refused)
{
	struct buf img = make_bzimage_of(F_LZ4, default_elf);
	const char *kernel = write_tmp(img.data, img.len);
	static const char *const sys_file =
		"/sys/kernel/mm/transparent_hugepage/enabled";
	char fifo[128], empty[128], sparse[128], want[512], err[512];
	struct x86_boot_entry e;
	uint8_t *data;
	size_t len;
	int fd;

	snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	snprintf(empty, sizeof(empty), "%s/empty", tmpdir);
	fd = open(empty, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	/* Says 1 TiB, as /proc/kcore says 128 TiB: refused unread. */
	snprintf(sparse, sizeof(sparse), "%s/sparse", tmpdir);
	fd = open(sparse, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 1LL << 40), 0);
	close(fd);
	mem_setup(GUEST_MEM);

	/* As the kernel. */
	ck_assert_int_eq(load(fifo, NULL, NULL, 0, &e, NULL, err, sizeof(err)),
			 -EINVAL);
	snprintf(want, sizeof(want), "kernel '%s': is a FIFO, not a regular file",
		 fifo);
	ck_assert_str_eq(err, want);
	ck_assert(x86_load_bad_input(-EINVAL));
	ck_assert_int_eq(load(tmpdir, NULL, NULL, 0, &e, NULL, err, sizeof(err)),
			 -EISDIR);
	snprintf(want, sizeof(want), "kernel '%s': is a directory, not a "
		 "regular file", tmpdir);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(load("/dev/null", NULL, NULL, 0, &e, NULL, err,
			      sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "kernel '/dev/null': is a character device, "
			 "not a regular file");
	ck_assert_int_eq(load(empty, NULL, NULL, 0, &e, NULL, err, sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, "': is empty") != NULL, "err: %s", err);
	ck_assert_int_eq(load("/proc/self/mem", NULL, NULL, 0, &e, NULL, err,
			      sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "kernel '/proc/self/mem': is empty (or a /proc "
			 "or /sys file, whose size is unknown)");
	ck_assert_int_eq(load(sparse, NULL, NULL, 0, &e, NULL, err, sizeof(err)),
			 -EFBIG);
	snprintf(want, sizeof(want), "kernel '%s': 1099511627776 bytes, more "
		 "than the most kite reads (512 MiB)", sparse);
	ck_assert_str_eq(err, want);

	/* As the initrd, with a good kernel. */
	ck_assert_int_eq(load(kernel, fifo, NULL, 0, &e, NULL, err, sizeof(err)),
			 -EINVAL);
	snprintf(want, sizeof(want), "initrd '%s': is a FIFO, not a regular file",
		 fifo);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(load(kernel, "/proc/self/mem", NULL, 0, &e, NULL, err,
			      sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "initrd '/proc/self/mem': is empty") == err,
		      "err: %s", err);
	ck_assert_int_eq(load(kernel, empty, NULL, 0, &e, NULL, err, sizeof(err)),
			 -EINVAL);
	ck_assert_int_eq(load(kernel, sparse, NULL, 0, &e, NULL, err,
			      sizeof(err)), -EFBIG);
	snprintf(want, sizeof(want), "initrd '%s': 1099511627776 bytes, more "
		 "than guest RAM (64 MiB)", sparse);
	ck_assert_str_eq(err, want);

	/* The shared reader (multiboot modules, --boot bios initrds). */
	ck_assert_int_eq(x86_read_input("initrd", fifo, GUEST_MEM, "guest RAM",
					&data, &len, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "is a FIFO, not a regular file"), "%s", err);
	/* A /sys file holds less than the page its size says. */
	if (access(sys_file, R_OK) == 0) {
		ck_assert_int_eq(x86_read_input("kernel", sys_file, GUEST_MEM,
						"guest RAM", &data, &len, err,
						sizeof(err)), -EIO);
		ck_assert_msg(strstr(err, "is shorter than its size says"),
			      "%s", err);
	}
	/* And a regular file still reads. */
	ck_assert_int_eq(x86_read_input("kernel", kernel, GUEST_MEM, "guest RAM",
					&data, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, img.len);
	ck_assert_mem_eq(data, img.data, len);
	free(data);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

/* An lzma header asking for a 3 GiB dictionary is refused before any
 * allocation; 64 MiB (lzma -9, as the kernel build uses) still works. */
START_TEST(test_unpack_lzma_dictionary_limit)
{
	struct buf z = lzma_with_dict(0xC0000000U);
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256] = "";
	struct mem_peaks peaks = mem_peaks();

	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				       sizeof(err)), -E2BIG);
	ck_assert_str_eq(err, "lzma data needs 3072 MiB of decoder memory "
			 "(limit 128 MiB)");
	ck_assert(x86_load_bad_input(-E2BIG));
	/* The same refusal inside an initramfs. */
	z.len -= 4;
	ck_assert_int_eq(initrd_unpack(z.data, z.len, &out, &out_len, err,
				       sizeof(err)), -E2BIG);
	ck_assert_str_eq(err, "lzma data needs 3072 MiB of decoder memory "
			 "(limit 128 MiB)");
	check_mem_growth(peaks, "lzma 3 GiB dictionary");
	buf_free(&z);

	z = lzma_with_dict(64U << 20);
	ck_assert_msg(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				    sizeof(err)) == 0, "%s", err);
	free(out);
	buf_free(&z);
}
END_TEST

START_TEST(test_unpack_xz_dictionary_limit)
{
	struct buf z = xz_with_dict_code(39); /* 3 << 30 */
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256] = "";
	struct mem_peaks peaks = mem_peaks();

	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				       sizeof(err)), -E2BIG);
	ck_assert_str_eq(err, "xz data needs 3072 MiB of decoder memory "
			 "(limit 128 MiB)");
	buf_free(&z);
	z = xz_with_dict_code(40); /* 4 GiB - 1, the largest */
	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				       sizeof(err)), -E2BIG);
	ck_assert_msg(strstr(err, "xz data needs 4096 MiB") == err, "%s", err);
	check_mem_growth(peaks, "xz 3 GiB dictionary");
	buf_free(&z);

	z = xz_with_dict_code(28); /* 64 MiB: xz -9 */
	ck_assert_msg(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				    sizeof(err)) == 0, "%s", err);
	free(out);
	buf_free(&z);
}
END_TEST

START_TEST(test_unpack_zstd_window_limit)
{
	struct buf z = zstd_with_window_log(30);
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256] = "";
	struct mem_peaks peaks = mem_peaks();

	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				       sizeof(err)), -E2BIG);
	ck_assert_str_eq(err, "zstd data needs 1024 MiB of decoder memory "
			 "(limit 128 MiB)");
	buf_free(&z);
	z = zstd_with_window_log(31);
	ck_assert_int_eq(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				       sizeof(err)), -E2BIG);
	ck_assert_str_eq(err, "zstd data needs 2048 MiB of decoder memory "
			 "(limit 128 MiB)");
	check_mem_growth(peaks, "zstd 2 GiB window");
	buf_free(&z);

	z = zstd_with_window_log(27); /* zstd -22 --ultra */
	ck_assert_msg(kernel_unpack(z.data, z.len, &out, &out_len, NULL, err,
				    sizeof(err)) == 0, "%s", err);
	free(out);
	buf_free(&z);
}
END_TEST

/* Each format's output stops at the cap, whatever the size word says. */
START_TEST(test_unpack_output_capped_each_format)
{
	const size_t n = 20 << 20, cap = 8 << 20;
	uint8_t *zeros = calloc(1, n), *out = NULL;
	struct buf z = { NULL, 0 };
	size_t out_len = 0;
	char err[256] = "", want[64];

	ck_assert_ptr_nonnull(zeros);
	if (_i == F_LZ4) {
		/* Legacy frame: blocks of at most 8 MiB. */
		int bound = LZ4_compressBound(8 << 20);

		z.data = malloc(4 + 3 * (4 + (size_t)bound) + 4);
		put32(z.data, 0x184C2102U);
		z.len = 4;
		for (int b = 0; b < 3; b++) {
			int c = LZ4_compress_default((const char *)zeros,
						     (char *)z.data + z.len + 4,
						     8 << 20, bound);

			ck_assert_int_gt(c, 0);
			put32(z.data + z.len, (uint32_t)c);
			z.len += 4 + (size_t)c;
		}
		put32(z.data + z.len, 24 << 20);
		z.len += 4;
	} else {
		z = compress_as((enum test_format)_i, zeros, n);
	}
	free(zeros);
	ck_assert_int_eq(kernel_unpack_max(z.data, z.len, cap, &out, &out_len,
					   NULL, err, sizeof(err)), -EFBIG);
	snprintf(want, sizeof(want), "%s: unpacks to more than 8 MiB",
		 format_names[_i]);
	ck_assert_str_eq(err, want);
	ck_assert(x86_load_bad_input(-EFBIG));
	/* And with room, the whole. */
	ck_assert_msg(kernel_unpack_max(z.data, z.len, 32 << 20, &out, &out_len,
					NULL, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(out_len, _i == F_LZ4 ? 24 << 20 : n);
	free(out);
	buf_free(&z);
}
END_TEST

/* The brief's case end to end: a bzImage of a few KiB whose xz header asks
 * for 3 GiB. */
START_TEST(test_error_kernel_decoder_memory)
{
	struct buf z = xz_with_dict_code(39), img = make_bzimage(z.data, z.len);
	const char *path = write_tmp(img.data, img.len);
	struct x86_boot_entry e;
	char err[512] = "", want[512];
	struct mem_peaks peaks;

	ck_assert_uint_lt(img.len, 8192);
	mem_setup(GUEST_MEM);
	/* After the guest RAM is touched: only the load counts. */
	peaks = mem_peaks();
	ck_assert_int_eq(load(path, NULL, NULL, 0, &e, NULL, err, sizeof(err)),
			 -E2BIG);
	snprintf(want, sizeof(want), "kernel '%s': xz data needs 3072 MiB of "
		 "decoder memory (limit 128 MiB)", path);
	ck_assert_str_eq(err, want);
	check_mem_growth(peaks, "bzImage with a 3 GiB xz dictionary");
	buf_free(&z);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

/* A zstd payload of a few KiB that unpacks to 300 MiB, against 64 MiB of
 * guest RAM: refused at the RAM size, the memory touched bounded. */
START_TEST(test_error_kernel_bomb_capped_at_guest_ram)
{
	struct buf z = zstd_zeros(300ULL << 20), img = make_bzimage(z.data, z.len);
	const char *path = write_tmp(img.data, img.len);
	struct x86_boot_entry e;
	char err[512] = "", want[512];
	struct mem_peaks peaks;

	ck_assert_uint_lt(z.len, 64 << 10);
	mem_setup(GUEST_MEM);
	peaks = mem_peaks();
	ck_assert_int_eq(load(path, NULL, NULL, 0, &e, NULL, err, sizeof(err)),
			 -EFBIG);
	snprintf(want, sizeof(want), "kernel '%s': zstd: unpacks to more than "
		 "64 MiB (guest RAM)", path);
	ck_assert_str_eq(err, want);
	check_mem_growth(peaks, "300 MiB zstd bomb");
	buf_free(&z);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

/* The same bomb as an initramfs that kite unpacks (the PVM profile). */
START_TEST(test_error_initrd_bomb_capped_at_guest_ram)
{
	struct buf img = make_bzimage_of(F_LZ4, default_elf);
	struct buf z = zstd_zeros(300ULL << 20);
	const char *kernel = write_tmp(img.data, img.len);
	const char *initrd = write_tmp(z.data, z.len - 4); /* no size word */
	struct x86_linux_params p = {
		.kernel_path = kernel, .initrd_path = initrd, .cmdline = "",
		.cache_dir = "", .unpack_initrd = true,
	};
	struct x86_linux_info info;
	struct x86_boot_entry e;
	char err[512] = "", want[512];
	struct mem_peaks peaks;

	mem_setup(GUEST_MEM);
	peaks = mem_peaks();
	ck_assert_int_eq(x86_linux_load(&mem, &p, &e, &info, err, sizeof(err)),
			 -EFBIG);
	snprintf(want, sizeof(want), "initrd '%s': zstd: unpacks to more than "
		 "64 MiB (guest RAM)", initrd);
	ck_assert_str_eq(err, want);
	check_mem_growth(peaks, "300 MiB zstd initrd bomb");
	/* Without unpacking, the few KiB go to the guest as they are. */
	p.unpack_initrd = false;
	ck_assert_msg(x86_linux_load(&mem, &p, &e, &info, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_uint_eq(info.initrd_size, z.len - 4);
	buf_free(&z);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

/* --boot bzimage64: pref_address from the file, rounded up to
 * kernel_alignment, must not wrap to 0 and load the kernel over the boot
 * structures. */
START_TEST(test_error_bzimage64_pref_address_wraps)
{
	struct buf img = make_bzimage_of(F_GZIP, default_elf);
	struct x86_setup_header h;
	struct x86_boot_entry e;
	char err[512] = "";

	memcpy(&h, img.data + 0x1F1, sizeof(h));
	h.pref_address = 0xFFFFFFFFFFE00001ULL; /* 2 MiB-aligned up: 2^64 */
	memcpy(img.data + 0x1F1, &h, sizeof(h));
	mem_setup(GUEST_MEM);
	ck_assert_int_eq(load(write_tmp(img.data, img.len), NULL, NULL,
			      X86_LINUX_BOOT_BZIMAGE64, &e, NULL, err,
			      sizeof(err)), -ERANGE);
	ck_assert_msg(strstr(err, "pref_address 0xffffffffffe00001 is outside "
			     "guest memory") != NULL, "err: %s", err);
	ck_assert_uint_eq(*gptr(0x200, 1), 0xEE); /* low memory untouched */
	/* Near the top without wrapping: the range printed is real. */
	h.pref_address = 0xFFFFFFFF00000000ULL;
	memcpy(img.data + 0x1F1, &h, sizeof(h));
	ck_assert_int_eq(load(write_tmp(img.data, img.len), NULL, NULL,
			      X86_LINUX_BOOT_BZIMAGE64, &e, NULL, err,
			      sizeof(err)), -ERANGE);
	ck_assert_msg(strstr(err, "kernel at 0xffffffff00000000-0xffffffff00400000 "
			     "is outside guest memory") != NULL, "err: %s", err);
	buf_free(&img);
	guest_memory_destroy(&mem);
}
END_TEST

/* ---- the stock kernels under /boot -------------------------------------------- */

/* ---- initramfs unpacking (PVM profile) ------------------------------------ */

/* A newc cpio archive with one file NAME holding TEXT, and the trailer. */
static struct buf make_cpio(const char *name, const char *text)
{
	struct buf b = { calloc(1, 4096), 0 };
	const char *names[2] = { name, "TRAILER!!!" };
	const char *data[2] = { text, "" };

	for (int i = 0; i < 2; i++) {
		size_t nl = strlen(names[i]) + 1, dl = strlen(data[i]);

		b.len += (size_t)sprintf((char *)b.data + b.len,
			"070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X",
			i + 1, i ? 0 : 0100644, 0, 0, 1, 0, dl, 0, 0, 0, 0, nl, 0);
		memcpy(b.data + b.len, names[i], nl);
		b.len = (b.len + nl + 3) & ~(size_t)3;
		memcpy(b.data + b.len, data[i], dl);
		b.len = (b.len + dl + 3) & ~(size_t)3;
	}
	return b;
}

/* A compressed stream as an initramfs tool writes it: no kernel-style
 * size word after it. */
static struct buf compress_stream(enum test_format f, const struct buf *in)
{
	struct buf c = compress_as(f, in->data, in->len);

	if (f != F_GZIP)
		c.len -= 4;
	return c;
}

static void cat(struct buf *dst, const void *p, size_t n)
{
	dst->data = realloc(dst->data, dst->len + n);
	ck_assert_ptr_nonnull(dst->data);
	memcpy(dst->data + dst->len, p, n);
	dst->len += n;
}

/* Debian's layout: an uncompressed archive, then a compressed one; and two
 * compressed ones with padding between.  The result is the plain archives
 * back to back. */
START_TEST(test_initrd_unpack_segments_each_format)
{
	enum test_format f = (enum test_format)_i;
	struct buf a = make_cpio("early/ucode.bin", "microcode"),
		   b = make_cpio("init", "#!/bin/sh\necho hello\n");
	struct buf cb = compress_stream(f, &b), ca = compress_stream(f, &a);
	struct buf in = { NULL, 0 }, want = { NULL, 0 };
	static const uint8_t pad[512];
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[160] = "";

	cat(&in, a.data, a.len);
	cat(&in, cb.data, cb.len);
	cat(&want, a.data, a.len);
	cat(&want, b.data, b.len);
	ck_assert_msg(initrd_unpack(in.data, in.len, &out, &out_len, err,
				    sizeof(err)) == 0, "%s: %s", format_names[f], err);
	ck_assert_uint_eq(out_len, want.len);
	ck_assert_mem_eq(out, want.data, want.len);
	free(out);

	in.len = 0;
	want.len = 0;
	cat(&in, cb.data, cb.len);
	cat(&in, pad, sizeof(pad));
	cat(&in, ca.data, ca.len);
	cat(&want, b.data, b.len);
	cat(&want, a.data, a.len);
	ck_assert_int_eq(initrd_unpack(in.data, in.len, &out, &out_len, err,
				       sizeof(err)), 0);
	ck_assert_uint_eq(out_len, want.len);
	ck_assert_mem_eq(out, want.data, want.len);
	free(out);
	buf_free(&a);
	buf_free(&b);
	buf_free(&ca);
	buf_free(&cb);
	buf_free(&in);
	buf_free(&want);
}
END_TEST

/* What initrd_unpack leaves to the guest, and what it calls broken. */
START_TEST(test_initrd_unpack_refusals)
{
	struct buf a = make_cpio("init", "x"), in = { NULL, 0 };
	struct buf gz = compress_stream(F_GZIP, &a), lz4 = compress_as(F_LZ4, a.data, a.len);
	uint8_t *out = NULL;
	size_t out_len;
	char err[160];

	/* Nothing compressed: use the file as it is. */
	ck_assert_int_eq(initrd_unpack(a.data, a.len, &out, &out_len, err,
				       sizeof(err)), -ENOENT);
	/* A format kite does not unpack for initrds. */
	ck_assert_int_eq(initrd_unpack(lz4.data, lz4.len, &out, &out_len, err,
				       sizeof(err)), -ENOTSUP);
	/* Trailing bytes that are neither archive, stream nor padding. */
	cat(&in, gz.data, gz.len);
	cat(&in, "junk", 4);
	ck_assert_int_eq(initrd_unpack(in.data, in.len, &out, &out_len, err,
				       sizeof(err)), -ENOTSUP);
	/* A truncated stream and a broken archive header. */
	ck_assert_int_eq(initrd_unpack(gz.data, gz.len - 9, &out, &out_len, err,
				       sizeof(err)), -ENOEXEC);
	a.data[100] = 'x'; /* inside the first c_namesize */
	ck_assert_int_eq(initrd_unpack(a.data, a.len, &out, &out_len, err,
				       sizeof(err)), -ENOEXEC);
	buf_free(&a);
	buf_free(&gz);
	buf_free(&lz4);
	buf_free(&in);
}
END_TEST

/* x86_linux_load with unpack_initrd: the guest gets the plain archive. */
START_TEST(test_load_unpacks_initrd_when_asked)
{
	struct buf img = make_bzimage_of(F_LZ4, default_elf);
	struct buf a = make_cpio("init", "#!/bin/sh\n"), gz = compress_stream(F_GZIP, &a);
	const char *kernel = write_tmp(img.data, img.len);
	const char *initrd = write_tmp(gz.data, gz.len);
	struct x86_linux_params p = {
		.kernel_path = kernel, .initrd_path = initrd, .cmdline = "",
		.cache_dir = "", .unpack_initrd = true,
	};
	struct x86_linux_info info;
	struct x86_boot_entry e;
	char err[256] = "";

	mem_setup(GUEST_MEM);
	ck_assert_msg(x86_linux_load(&mem, &p, &e, &info, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_uint_eq(info.initrd_file_size, gz.len);
	ck_assert_uint_eq(info.initrd_size, a.len);
	ck_assert_mem_eq(gptr(info.initrd_start, a.len), a.data, a.len);
	/* Without the flag the file goes in as it is. */
	p.unpack_initrd = false;
	ck_assert_int_eq(x86_linux_load(&mem, &p, &e, &info, err, sizeof(err)), 0);
	ck_assert_uint_eq(info.initrd_size, gz.len);
	ck_assert_mem_eq(gptr(info.initrd_start, gz.len), gz.data, gz.len);
	guest_memory_destroy(&mem);
	buf_free(&img);
	buf_free(&a);
	buf_free(&gz);
}
END_TEST

START_TEST(test_stock_kernels_load_and_report_unpack_time)
{
	glob_t g;
	size_t n_ok = 0;

	if (glob("/boot/vmlinuz-*", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
		printf("test_linux_loader: SKIP stock kernels: no /boot/vmlinuz-* "
		       "installed (apt-get install linux-image-amd64 "
		       "linux-image-cloud-amd64)\n");
		return;
	}
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *path = g.gl_pathv[i];
		struct x86_setup_header h;
		struct x86_boot_entry e;
		struct x86_linux_info info, info2;
		struct x86_linux_params p = { 0 };
		uint8_t head[4096];
		char err[512] = "", cache[160];
		int fd = open(path, O_RDONLY);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(read(fd, head, sizeof(head)), sizeof(head));
		close(fd);
		ck_assert_int_eq(x86_setup_header_parse(head, sizeof(head), &h, err,
							sizeof(err)), 0);
		ck_assert_uint_ge(h.version, 0x20C);
		ck_assert(h.xloadflags & X86_XLF_KERNEL_64);
		ck_assert(h.relocatable_kernel);
		ck_assert_uint_gt(h.payload_length, 0);

		mem_setup(256ULL << 20);
		snprintf(cache, sizeof(cache), "%s/cache%zu", tmpdir, i);
		p.kernel_path = path;
		p.cmdline = "console=ttyS0";
		p.cache_dir = cache;
		ck_assert_msg(x86_linux_load(&mem, &p, &e, &info, err,
					     sizeof(err)) == 0, "%s", err);
		ck_assert(strcmp(info.compression, "xz") == 0 ||
			  strcmp(info.compression, "lz4") == 0 ||
			  strcmp(info.compression, "gzip") == 0 ||
			  strcmp(info.compression, "zstd") == 0);
		/* Debian: CONFIG_PHYSICAL_START 16 MiB, entry startup_64 at
		 * the start of .text; the image is a vmlinux ELF. */
		ck_assert_uint_eq(info.kernel_start, h.pref_address);
		ck_assert_int_eq(e.mode, X86_ENTRY_LONG64);
		ck_assert_uint_eq(e.rip, info.kernel_start);
		ck_assert_uint_gt(info.unpacked_size, info.payload_size);
		ck_assert(info.kernel_version[0] != '\0');

		/* Second load: PVH through the cache (when xz/gzip). */
		p.boot = X86_LINUX_BOOT_PVH;
		ck_assert_msg(x86_linux_load(&mem, &p, &e, &info2, err,
					     sizeof(err)) == 0, "%s", err);
		ck_assert_int_eq(e.mode, X86_ENTRY_PROTECTED32);
		ck_assert_uint_gt(e.rip, info2.kernel_start);
		ck_assert_uint_lt(e.rip, info2.kernel_end);

		printf("test_linux_loader: bench: %s: %s %.1f MiB -> %.1f MiB "
		       "unpacked in %.3f s (cached copy read in %s%.3f s)\n",
		       path, info.compression, info.payload_size / 1048576.0,
		       info.unpacked_size / 1048576.0, info.unpack_seconds,
		       info2.cache_hit ? "" : "n/a, not cached: ",
		       info2.unpack_seconds);
		guest_memory_destroy(&mem);
		n_ok++;
	}
	globfree(&g);
	ck_assert_uint_gt(n_ok, 0);
}
END_TEST

static Suite *linux_loader_suite(void)
{
	Suite *s = suite_create("linux_loader");
	TCase *tc;

	tc = tcase_create("e820");
	tcase_add_test(tc, test_e820_low_memory_reserves_bios_window);
	tcase_add_test(tc, test_e820_ram_above_4g_follows_hole);
	suite_add_tcase(s, tc);

	tc = tcase_create("unpack");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_unpack_detects_every_magic);
	tcase_add_loop_test(tc, test_unpack_roundtrip_each_format, 0, F_COUNT);
	tcase_add_loop_test(tc, test_unpack_truncated_stream_fails_each_format,
			    0, F_COUNT);
	tcase_add_test(tc, test_unpack_corrupt_stream_fails);
	tcase_add_test(tc, test_unpack_ignores_lying_size_word);
	tcase_add_test(tc, test_unpack_cache_hit_returns_same_bytes);
	tcase_add_test(tc, test_unpack_cache_replaces_damaged_entry);
	tcase_add_test(tc, test_unpack_cache_keeps_a_bounded_number);
	tcase_add_test(tc, test_unpack_default_cache_dir_follows_xdg);
	tcase_add_loop_test(tc, test_initrd_unpack_segments_each_format, 0, F_LZ4);
	tcase_add_test(tc, test_initrd_unpack_refusals);
	tcase_add_test(tc, test_load_unpacks_initrd_when_asked);
	suite_add_tcase(s, tc);

	tc = tcase_create("elf");
	tcase_add_test(tc, test_elf_entry_virtual_translates_to_physical);
	tcase_add_test(tc, test_elf_rejects_segment_past_file_end);
	tcase_add_test(tc, test_elf_rejects_32bit_and_non_exec);
	tcase_add_test(tc, test_elf_note_lookup);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_load_bzimage_each_format, 0, F_COUNT);
	tcase_add_test(tc, test_load_raw_vmlinux_elf);
	tcase_add_test(tc, test_load_pvh_entry);
	tcase_add_test(tc, test_load_pvh_without_note_is_unsupported);
	tcase_add_test(tc, test_load_bzimage_as_is_enters_at_0x200);
	tcase_add_test(tc, test_load_passes_rsdp_and_caller_e820);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_error_missing_kernel);
	tcase_add_test(tc, test_error_bad_magic);
	tcase_add_test(tc, test_error_truncated_file);
	tcase_add_loop_test(tc, test_error_unsupported_compression, 0, 2);
	tcase_add_test(tc, test_error_unknown_compression_and_non_elf_payload);
	tcase_add_test(tc, test_error_segment_outside_guest_memory);
	tcase_add_test(tc, test_error_initrd_too_big);
	tcase_add_test(tc, test_error_cmdline_too_long);
	suite_add_tcase(s, tc);

	tc = tcase_create("input_files");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10); /* an open() that blocks fails here */
	tcase_add_test(tc, test_input_special_files_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("hostile_inputs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60); /* the bombs: ~1 s each with sanitizers */
	tcase_add_test(tc, test_unpack_lzma_dictionary_limit);
	tcase_add_test(tc, test_unpack_xz_dictionary_limit);
	tcase_add_test(tc, test_unpack_zstd_window_limit);
	tcase_add_loop_test(tc, test_unpack_output_capped_each_format, 0,
			    F_COUNT);
	tcase_add_test(tc, test_error_kernel_decoder_memory);
	tcase_add_test(tc, test_error_kernel_bomb_capped_at_guest_ram);
	tcase_add_test(tc, test_error_initrd_bomb_capped_at_guest_ram);
	tcase_add_test(tc, test_error_bzimage64_pref_address_wraps);
	suite_add_tcase(s, tc);

	tc = tcase_create("stock_kernels");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300); /* xz + sanitizers: seconds, not minutes */
	tcase_add_test(tc, test_stock_kernels_load_and_report_unpack_time);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(linux_loader_suite)
