/* Kite's BIOS in guest memory and the real-mode bzImage boot (bios.h).
 * Protocol facts cite Documentation/x86/boot.rst ("boot.rst"); the BIOS
 * data area layout is the IBM PC/AT one (bios/layout.h). */
#include "arch/x86/bios.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/linux.h"
#include "bios/layout.h"

/* bios/bios.S, built into a flat binary and linked in by bios_image.S. */
extern const uint8_t kite_bios_image[];
extern const uint8_t kite_bios_image_end[];

#define IVT_GPA            0x0ULL
#define IVT_VECTORS        256
#define BDA_GPA            ((uint64_t)BDA_SEGMENT << 4)
#define BDA_SIZE           0x100
#define MIB1               0x100000ULL
#define MIB16              0x1000000ULL
#define GIB4               0x100000000ULL
#define PAGE_4K            0x1000ULL
#define SECTOR             512
#define BASE_MEM_MAX       X86_EBDA_GPA  /* conventional memory ends at the EBDA */

/* boot.rst: heap_end_ptr is "the offset of the end of the setup
 * stack/heap, minus 0x0200". */
#define HEAP_END_PTR       (X86_BIOS_HEAP_END - 0x200)
/* boot.rst: vid_mode 0xFFFF means "normal" (80x25). */
#define VID_MODE_NORMAL    0xFFFF
/* boot.rst: type_of_loader 0xFF: undefined/other loader. */
#define LOADER_TYPE_OTHER  0xFF

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

/* RAM contiguous from |start| in |map|: the end of the RAM entry that
 * holds |start| (entries may touch), or |start| when none does. */
static uint64_t ram_end_from(const struct e820_entry *map, unsigned nr,
			     uint64_t start)
{
	uint64_t end = start;
	bool grew = true;

	while (grew) {
		grew = false;
		for (unsigned i = 0; i < nr; i++) {
			if (map[i].type != E820_TYPE_RAM)
				continue;
			if (map[i].addr <= end &&
			    map[i].addr + map[i].size > end) {
				end = map[i].addr + map[i].size;
				grew = true;
			}
		}
	}
	return end;
}

/* The BIOS data area: what a PC BIOS leaves there after POST, for a
 * machine with COM1, no disks and a colour text display in mode 3. */
static void fill_bda(uint8_t *bda, const struct e820_entry *map, unsigned nr)
{
	uint64_t base = ram_end_from(map, nr, 0);

	if (base > BASE_MEM_MAX)
		base = BASE_MEM_MAX;
	memset(bda, 0, BDA_SIZE);
	put16(bda + BDA_COM1, BIOS_COM1_PORT);
	put16(bda + BDA_EBDA_SEGMENT, (uint16_t)(X86_EBDA_GPA >> 4));
	/* Equipment word: FPU (bit 1), 80x25 colour (bits 4-5 = 10b), one
	 * serial port (bits 9-11). */
	put16(bda + BDA_EQUIPMENT, 0x0002 | 0x0020 | (1 << 9));
	put16(bda + BDA_BASE_MEM_KIB, (uint16_t)(base >> 10));
	/* Empty keyboard ring buffer at 0x41E-0x43D. */
	put16(bda + BDA_KBD_HEAD, 0x1E);
	put16(bda + BDA_KBD_TAIL, 0x1E);
	put16(bda + BDA_KBD_BUF_START, 0x1E);
	put16(bda + BDA_KBD_BUF_END, 0x3E);
	bda[BDA_VIDEO_MODE] = 3;
	put16(bda + BDA_VIDEO_COLS, 80);
	put16(bda + BDA_VIDEO_PAGE_SIZE, 0x1000);
	put16(bda + BDA_CURSOR_SHAPE, 0x0607);
	put16(bda + BDA_CRTC_PORT, 0x3D4);
	bda[BDA_VIDEO_ROWS_M1] = 24;
	put16(bda + BDA_VIDEO_CHAR_HEIGHT, 16);
	bda[BDA_NR_DISKS] = 0;
}

int x86_bios_install(struct guest_memory *mem, const struct e820_entry *map,
		     unsigned nr, char *err, size_t errlen)
{
	const uint8_t *img = kite_bios_image;
	size_t img_len = (size_t)(kite_bios_image_end - kite_bios_image);
	uint8_t ivt[IVT_VECTORS * 4], bda[BDA_SIZE];
	uint8_t data[BIOS_DATA_SIZE];
	uint16_t vectors, data_off, data_size;
	uint64_t high_end;
	int rc;

	/* The image is ours, but a broken build must not write out of
	 * place: check what the header claims. */
	if (img_len < BIOS_HDR_SIZE || img_len > BIOS_MAX_SIZE ||
	    memcmp(img + BIOS_HDR_MAGIC, "KITEBIOS", 8) != 0 ||
	    get16(img + BIOS_HDR_VERSION) != BIOS_HEADER_VERSION) {
		snprintf(err, errlen, "built-in BIOS image: bad header");
		return -ENOEXEC;
	}
	vectors = get16(img + BIOS_HDR_VECTORS);
	data_off = get16(img + BIOS_HDR_DATA);
	data_size = get16(img + BIOS_HDR_DATA_SIZE);
	if ((size_t)vectors + IVT_VECTORS * 2 > img_len ||
	    data_size != BIOS_DATA_SIZE || (size_t)data_off + data_size > img_len) {
		snprintf(err, errlen, "built-in BIOS image: tables outside the image");
		return -ENOEXEC;
	}
	if (nr > BIOS_E820_MAX) {
		snprintf(err, errlen, "BIOS: memory map has %u entries, at most %d fit",
			 nr, BIOS_E820_MAX);
		return -E2BIG;
	}

	rc = guest_memory_write(mem, X86_BIOS_GPA, img, img_len);
	if (rc) {
		snprintf(err, errlen, "BIOS: guest memory at 0x%llx is not RAM",
			 X86_BIOS_GPA);
		return rc;
	}

	/* INT 15h data: the map as given, E801h and 88h derived from the RAM
	 * that runs on from 1 MiB. */
	memset(data, 0, sizeof(data));
	put16(data + BIOS_DATA_E820_COUNT, (uint16_t)nr);
	for (unsigned i = 0; i < nr; i++) {
		uint8_t *e = data + BIOS_DATA_E820_TABLE + i * BIOS_E820_ENTRY_SIZE;

		put_le(e, map[i].addr, 8);
		put_le(e + 8, map[i].size, 8);
		put_le(e + 16, map[i].type, 4);
	}
	high_end = ram_end_from(map, nr, MIB1);
	if (high_end > GIB4)
		high_end = GIB4;
	put16(data + BIOS_DATA_E801_LOW_KIB,
	      (uint16_t)(((high_end < MIB16 ? high_end : MIB16) - MIB1) >> 10));
	put16(data + BIOS_DATA_E801_HIGH_64K,
	      (uint16_t)(high_end > MIB16 ? (high_end - MIB16) >> 16 : 0));
	/* AH=88h reports at most 63 MiB, as PC BIOSes do (a 16-bit KiB
	 * count that older callers add to 1 MiB). */
	put16(data + BIOS_DATA_EXT_KIB,
	      (uint16_t)((high_end - MIB1) >> 10 > 0xFC00 ? 0xFC00
						       : (high_end - MIB1) >> 10));
	rc = guest_memory_write(mem, X86_BIOS_GPA + data_off, data, sizeof(data));

	/* IVT: every vector at F000:handler. */
	for (unsigned v = 0; v < IVT_VECTORS && !rc; v++) {
		put16(ivt + 4 * v, get16(img + vectors + 2 * v));
		put16(ivt + 4 * v + 2, BIOS_SEGMENT);
	}
	if (!rc)
		rc = guest_memory_write(mem, IVT_GPA, ivt, sizeof(ivt));
	fill_bda(bda, map, nr);
	if (!rc)
		rc = guest_memory_write(mem, BDA_GPA, bda, sizeof(bda));
	if (rc)
		snprintf(err, errlen, "BIOS: low memory is not RAM");
	return rc;
}

int x86_bios_load_linux(struct guest_memory *mem,
			const struct x86_bios_linux_params *p,
			struct x86_boot_entry *entry,
			struct x86_bios_linux_info *info_out,
			char *err, size_t errlen)
{
	const char *kpath = p->kernel_path ? p->kernel_path : "(none)";
	const char *ipath = p->initrd_path ? p->initrd_path : "(initrd)";
	const char *cmdline = p->cmdline ? p->cmdline : "";
	size_t cmdline_len = strlen(cmdline);
	struct x86_bios_linux_info info_local;
	struct x86_bios_linux_info *info = info_out ? info_out : &info_local;
	struct e820_entry map[E820_MAX_FROM_MEMORY];
	struct x86_setup_header h;
	unsigned nr;
	size_t setup_size, hdr_len, kernel_size;
	uint64_t base, kernel_end, initrd_limit, cmdline_max;
	uint8_t zero[0x1000];
	char why[256];
	int rc;

	memset(info, 0, sizeof(*info));
	memset(entry, 0, sizeof(*entry));
	rc = x86_setup_header_parse(p->image, p->image_size, &h, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "kernel '%s': %s", kpath, why);
		return rc;
	}
	info->protocol_version = h.version;
	x86_setup_header_kernel_version(p->image, p->image_size, &h,
					info->kernel_version,
					sizeof(info->kernel_version));

	/* boot.rst: setup_sects 0 means 4; the boot sector comes first. */
	setup_size = ((size_t)(h.setup_sects ? h.setup_sects : 4) + 1) * SECTOR;
	if (setup_size >= p->image_size) {
		snprintf(err, errlen, "kernel '%s': truncated: the setup code "
			 "(%zu bytes) fills the whole file", kpath, setup_size);
		return -ENOEXEC;
	}
	if (setup_size > HEAP_END_PTR) {
		snprintf(err, errlen, "kernel '%s': setup code of %zu bytes does "
			 "not leave room for its heap below 0x%x", kpath,
			 setup_size, HEAP_END_PTR);
		return -ENOEXEC;
	}
	/* Every field written below exists from protocol 2.02 on (cmd_line_ptr
	 * is its last); the header in the file must reach that far. */
	hdr_len = 0x202 + (size_t)p->image[0x201] - X86_SETUP_HEADER_OFFSET;
	if (hdr_len > sizeof(h))
		hdr_len = sizeof(h);
	if (hdr_len < offsetof(struct x86_setup_header, initrd_addr_max)) {
		snprintf(err, errlen, "kernel '%s': setup header ends at 0x%zx, "
			 "before cmd_line_ptr", kpath,
			 hdr_len + X86_SETUP_HEADER_OFFSET);
		return -ENOEXEC;
	}
	kernel_size = p->image_size - setup_size;
	info->setup_size = (uint32_t)setup_size;
	info->kernel_size = (uint32_t)kernel_size;

	/* Room the kernel needs: its image at 1 MiB and, while it
	 * decompresses, init_size (2.10+) from where it will run — a
	 * relocatable kernel below pref_address moves itself up there. */
	base = X86_BIOS_KERNEL_GPA;
	if (h.version >= 0x20A && h.relocatable_kernel && h.pref_address > base &&
	    h.pref_address < GIB4)
		base = h.pref_address;
	kernel_end = X86_BIOS_KERNEL_GPA + kernel_size;
	if (h.version >= 0x20A && base + h.init_size > kernel_end)
		kernel_end = base + h.init_size;
	info->kernel_end = kernel_end;
	if (!guest_memory_is_ram(mem, X86_BIOS_KERNEL_GPA,
				 kernel_end - X86_BIOS_KERNEL_GPA)) {
		snprintf(err, errlen, "kernel '%s': needs RAM up to 0x%" PRIx64
			 " (%" PRIu64 " MiB) to decompress itself", kpath,
			 kernel_end, (kernel_end + (1 << 20) - 1) >> 20);
		return -ERANGE;
	}

	/* boot.rst cmdline_size (2.06+) excludes the NUL; older kernels take
	 * 255 bytes. */
	cmdline_max = h.version >= 0x206 ? h.cmdline_size : 255;
	if (cmdline_max > X86_BIOS_CMDLINE_MAX)
		cmdline_max = X86_BIOS_CMDLINE_MAX;
	if (cmdline_len > cmdline_max) {
		snprintf(err, errlen, "command line: %zu bytes, kernel '%s' "
			 "accepts at most %" PRIu64, cmdline_len, kpath,
			 cmdline_max);
		return -E2BIG;
	}

	rc = e820_from_guest_memory(mem, map, E820_MAX_FROM_MEMORY, &nr);
	if (rc) {
		snprintf(err, errlen, "e820 map: %s", strerror(-rc));
		return rc;
	}
	rc = x86_bios_install(mem, map, nr, err, errlen);
	if (rc)
		return rc;

	/* initrd: boot.rst initrd_addr_max (2.03+; 0x37FFFFFF before). */
	if (p->initrd && p->initrd_size) {
		initrd_limit = (h.version >= 0x203 ? (uint64_t)h.initrd_addr_max
						   : 0x37FFFFFFULL) + 1;
		if (initrd_limit > GIB4)
			initrd_limit = GIB4;
		rc = e820_place_high(map, nr, p->initrd_size,
				  (kernel_end + PAGE_4K - 1) & ~(PAGE_4K - 1),
				  initrd_limit, &info->initrd_start);
		if (rc) {
			snprintf(err, errlen, "initrd '%s': %zu bytes do not fit "
				 "in guest RAM between the kernel (ends 0x%" PRIx64
				 ") and 0x%" PRIx64, ipath, p->initrd_size,
				 kernel_end, initrd_limit);
			return rc;
		}
		info->initrd_size = p->initrd_size;
		rc = guest_memory_write(mem, info->initrd_start, p->initrd,
					p->initrd_size);
		if (rc) {
			snprintf(err, errlen, "initrd '%s': guest memory: %s",
				 ipath, strerror(-rc));
			return rc;
		}
	}

	/* The real-mode area from 0x90000 to the command line starts clean
	 * (setup's heap and stack live there), then gets the setup code. */
	memset(zero, 0, sizeof(zero));
	for (uint64_t a = X86_BIOS_SETUP_GPA; a < X86_BIOS_CMDLINE_GPA && !rc;
	     a += sizeof(zero))
		rc = guest_memory_write(mem, a, zero, sizeof(zero));
	if (!rc)
		rc = guest_memory_write(mem, X86_BIOS_SETUP_GPA, p->image,
					setup_size);
	if (!rc)
		rc = guest_memory_write(mem, X86_BIOS_CMDLINE_GPA, cmdline,
					cmdline_len + 1);
	if (!rc)
		rc = guest_memory_write(mem, X86_BIOS_KERNEL_GPA,
					p->image + setup_size, kernel_size);
	if (rc) {
		snprintf(err, errlen, "kernel '%s': boot area: %s", kpath,
			 strerror(-rc));
		return rc;
	}

	/* boot.rst "Details of header fields": what the loader writes. */
	h.type_of_loader = LOADER_TYPE_OTHER;
	h.loadflags |= X86_LOADED_HIGH | X86_CAN_USE_HEAP;
	h.loadflags &= (uint8_t)~X86_KEEP_SEGMENTS;
	h.heap_end_ptr = HEAP_END_PTR;
	h.cmd_line_ptr = (uint32_t)X86_BIOS_CMDLINE_GPA;
	h.ramdisk_image = (uint32_t)info->initrd_start;
	h.ramdisk_size = (uint32_t)info->initrd_size;
	h.vid_mode = VID_MODE_NORMAL;
	rc = guest_memory_write(mem, X86_BIOS_SETUP_GPA + X86_SETUP_HEADER_OFFSET,
				&h, hdr_len);
	if (rc) {
		snprintf(err, errlen, "kernel '%s': boot area: %s", kpath,
			 strerror(-rc));
		return rc;
	}

	/* boot.rst "Running the kernel": cs = base + 0x20, ip = 0, the other
	 * segments = base, sp at the end of the heap, interrupts off. */
	entry->mode = X86_ENTRY_REAL16;
	entry->real_cs = X86_BIOS_SETUP_SEG + 0x20;
	entry->real_ds = X86_BIOS_SETUP_SEG;
	entry->rip = 0;
	entry->rsp = X86_BIOS_HEAP_END;
	return 0;
}
