/* Linux loader: bzImage/vmlinux to guest memory and entry state (see
 * linux.h).  Protocol facts cite Documentation/x86/boot.rst ("boot.rst")
 * and Xen's public hvm/start_info.h. */
#include "arch/x86/linux.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arch/x86/elf.h"
#include "arch/x86/kernel_unpack.h"
#include "arch/x86/loader.h"

_Static_assert(sizeof(struct x86_setup_header) == 0x26C - 0x1F1,
	       "setup header ends at 0x26C (boot protocol 2.15)");
_Static_assert(sizeof(struct x86_hvm_start_info) == 56,
	       "hvm_start_info version 1 is 56 bytes");

#define BOOT_AREA_END     0x100000ULL     /* boot structures live below */
#define GIB4              0x100000000ULL
#define PAGE_SIZE_4K      0x1000ULL
#define HUGE_2M           0x200000ULL
#define CMDLINE_AREA_MAX  0x10000ULL      /* boot.h: up to 64 KiB */

/* hvm_start_info, module list and memory map share the boot-info page. */
#define PVH_MODLIST_GPA   (X86_BOOT_INFO_GPA + 0x40)
#define PVH_MEMMAP_GPA    (X86_BOOT_INFO_GPA + 0x80)
#define PVH_MEMMAP_MAX \
	((0x1000 - 0x80) / sizeof(struct x86_hvm_memmap_entry))

/* Flat 4 GiB descriptors (Intel SDM vol. 3 §3.4.5): access 0x9A code
 * execute/read, 0x92 data read/write; flags 0xA = G + L (64-bit code),
 * 0xC = G + D/B (32-bit). */
#define GDT_CODE64 0x00AF9A000000FFFFULL
#define GDT_CODE32 0x00CF9A000000FFFFULL
#define GDT_DATA   0x00CF92000000FFFFULL
/* boot.rst "64-bit boot protocol": __BOOT_CS 0x10, __BOOT_DS 0x18. */
#define BOOT_CS 0x10
#define BOOT_DS 0x18

/* "%u.%02u" arguments for a boot protocol version. */
#define PROTOCOL_ARGS(v) (unsigned)((v) >> 8), (unsigned)((v) & 0xFF)

/* Page-table entry bits. */
#define PTE_P  0x001ULL
#define PTE_RW 0x002ULL
#define PTE_PS 0x080ULL

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int x86_setup_header_parse(const uint8_t *img, size_t len,
			   struct x86_setup_header *hdr,
			   char *err, size_t errlen)
{
	size_t end, n;

	memset(hdr, 0, sizeof(*hdr));
	if (len < 0x206) {
		snprintf(err, errlen, "too short for a bzImage (%zu bytes)", len);
		return -ENOEXEC;
	}
	/* boot.rst: the header ends at 0x202 + the byte at 0x201. */
	end = 0x202 + (size_t)img[0x201];
	n = end - X86_SETUP_HEADER_OFFSET;
	if (n > sizeof(*hdr))
		n = sizeof(*hdr);
	if (n > len - X86_SETUP_HEADER_OFFSET)
		n = len - X86_SETUP_HEADER_OFFSET;
	memcpy(hdr, img + X86_SETUP_HEADER_OFFSET, n);
	if (hdr->boot_flag != X86_SETUP_BOOT_FLAG ||
	    hdr->header != X86_SETUP_HDRS_MAGIC) {
		snprintf(err, errlen, "bad magic: not a bzImage or ELF vmlinux");
		return -ENOEXEC;
	}
	if (hdr->version < 0x202) {
		snprintf(err, errlen, "boot protocol %u.%02u is too old",
			 PROTOCOL_ARGS(hdr->version));
		return -ENOEXEC;
	}
	return 0;
}

/* A setup header for a bare vmlinux, as a 2.15 bzImage would carry. */
static void synthesize_setup_header(struct x86_setup_header *hdr)
{
	memset(hdr, 0, sizeof(*hdr));
	hdr->boot_flag = X86_SETUP_BOOT_FLAG;
	hdr->header = X86_SETUP_HDRS_MAGIC;
	hdr->version = 0x020F;
	hdr->jump = 0x66EB; /* jmp to 0x26A: marks the header end */
	hdr->vid_mode = 0xFFFF; /* "normal" */
	hdr->initrd_addr_max = 0x7FFFFFFF;
	hdr->kernel_alignment = HUGE_2M;
	hdr->relocatable_kernel = 1;
	hdr->xloadflags = X86_XLF_KERNEL_64;
	hdr->cmdline_size = 2047; /* x86 COMMAND_LINE_SIZE - 1 */
}

void x86_setup_header_kernel_version(const uint8_t *img, size_t len,
				     const struct x86_setup_header *hdr,
				     char *out, size_t outlen)
{
	size_t off = (size_t)hdr->kernel_version + 0x200, i = 0;

	out[0] = '\0';
	if (!hdr->kernel_version || off >= len)
		return;
	for (; i + 1 < outlen && off + i < len; i++) {
		uint8_t c = img[off + i];

		if (c < 0x20 || c > 0x7E)
			break;
		out[i] = (char)c;
	}
	out[i] = '\0';
}

/* The kernel holds the image bytes; the vmlinux may point into them or
 * into an unpacked buffer. */
struct kernel_image {
	uint8_t *file;
	size_t file_len;
	uint8_t *unpacked;          /* malloc'd, or NULL */
	struct x86_setup_header hdr;
	size_t hdr_len;             /* bytes of header present in the file */
};

static size_t setup_header_len(const uint8_t *img, size_t len)
{
	size_t n = 0x202 + (size_t)img[0x201] - X86_SETUP_HEADER_OFFSET;

	if (n > sizeof(struct x86_setup_header))
		n = sizeof(struct x86_setup_header);
	if (n > len - X86_SETUP_HEADER_OFFSET)
		n = len - X86_SETUP_HEADER_OFFSET;
	return n;
}

static int write_gdt(const struct guest_memory *mem, bool long_mode)
{
	uint64_t gdt[4] = { 0, 0, long_mode ? GDT_CODE64 : GDT_CODE32,
			    GDT_DATA };

	return guest_memory_write(mem, X86_BOOT_GDT_GPA, gdt, sizeof(gdt));
}

/* PML4 -> one PDPT -> four PDs of 2 MiB pages: identity map of 4 GiB,
 * which covers the kernel, boot_params and the command line as the 64-bit
 * boot protocol requires. */
static int write_identity_page_tables(const struct guest_memory *mem)
{
	const uint64_t pdpt = X86_BOOT_PML4_GPA + 0x1000;
	const uint64_t pd = X86_BOOT_PML4_GPA + 0x2000;
	uint64_t table[512];
	int rc;

	memset(table, 0, sizeof(table));
	table[0] = pdpt | PTE_P | PTE_RW;
	rc = guest_memory_write(mem, X86_BOOT_PML4_GPA, table, sizeof(table));
	if (rc)
		return rc;
	memset(table, 0, sizeof(table));
	for (unsigned i = 0; i < 4; i++)
		table[i] = (pd + i * 0x1000ULL) | PTE_P | PTE_RW;
	rc = guest_memory_write(mem, pdpt, table, sizeof(table));
	if (rc)
		return rc;
	for (unsigned i = 0; i < 4; i++) {
		for (unsigned j = 0; j < 512; j++)
			table[j] = ((uint64_t)i << 30) + ((uint64_t)j << 21) +
				   (PTE_P | PTE_RW | PTE_PS);
		rc = guest_memory_write(mem, pd + i * 0x1000ULL, table,
					sizeof(table));
		if (rc)
			return rc;
	}
	return 0;
}

/* Load the initrd file, placed as e820_place_high() says.  With |unpack|
 * (the PVM profile), compressed archives are decompressed here first
 * (initrd_unpack()), so that a guest whose kernel code is emulated only
 * copies them; *file_size is the file's size either way.  Neither the file
 * nor what it unpacks to is held in memory beyond the guest's RAM: it
 * could not fit there anyway. */
static int load_initrd(const struct guest_memory *mem, const char *path,
		       bool unpack, const struct e820_entry *map, unsigned nr,
		       uint64_t kernel_end, uint64_t limit, uint64_t *gpa,
		       uint64_t *size, uint64_t *file_size, char *err,
		       size_t errlen)
{
	uint64_t low = (kernel_end + PAGE_SIZE_4K - 1) & ~(PAGE_SIZE_4K - 1);
	uint8_t *data = NULL, *unpacked = NULL, *hva;
	size_t len, unpacked_len;
	char why[256];
	int rc;

	rc = x86_read_input("initrd", path, mem->total, "guest RAM", &data,
			    &len, err, errlen);
	if (rc)
		return rc;
	*file_size = len;
	/* Anything initrd_unpack() cannot take goes to the guest as it is;
	 * the guest kernel then reports what it finds.  But what would
	 * not fit in guest RAM unpacked, or needs more decoder memory than
	 * kite grants, would fail in the guest too: say so here. */
	if (unpack) {
		rc = initrd_unpack_max(data, len, mem->total, &unpacked,
				       &unpacked_len, why, sizeof(why));
		if (rc == 0) {
			free(data);
			data = unpacked;
			len = unpacked_len;
		} else if (rc == -EFBIG || rc == -E2BIG) {
			snprintf(err, errlen, "initrd '%s': %s%s", path, why,
				 rc == -EFBIG && mem->total <
				 KERNEL_UNPACK_MAX_SIZE ? " (guest RAM)" : "");
			free(data);
			return rc;
		}
	}
	rc = e820_place_high(map, nr, (uint64_t)len, low, limit, gpa);
	if (rc == 0)
		rc = guest_memory_translate(mem, *gpa, (uint64_t)len,
					    (void **)&hva);
	if (rc) {
		snprintf(err, errlen,
			 "initrd '%s': %zu bytes do not fit in guest RAM "
			 "between the kernel (ends 0x%" PRIx64 ") and 0x%" PRIx64,
			 path, len, low, limit);
		free(data);
		return -E2BIG;
	}
	memcpy(hva, data, len);
	free(data);
	*size = len;
	return 0;
}

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

struct boot_layout {
	uint64_t kernel_start;
	uint64_t initrd_gpa, initrd_size;
	uint64_t rsdp_gpa;
	const struct e820_entry *e820;
	unsigned nr_e820;
};

/* boot.rst "The zero page": what the decompressor would hand to the
 * kernel proper — the bzImage's setup header with the loader's fields
 * filled in, plus the memory map. */
static int write_boot_params(const struct guest_memory *mem,
			     const struct kernel_image *k,
			     const struct boot_layout *l)
{
	uint8_t bp[X86_BP_SIZE];
	struct x86_setup_header h = k->hdr;
	uint64_t high_kib = 0;

	memset(bp, 0, sizeof(bp));
	/* Keep what the image's header says (version, xloadflags,
	 * cmdline_size, kernel_alignment, ...). */
	h.type_of_loader = 0xFF; /* boot.rst: undefined/other loader */
	h.loadflags |= X86_LOADED_HIGH | X86_CAN_USE_HEAP;
	h.loadflags &= (uint8_t)~(X86_KASLR_FLAG | X86_KEEP_SEGMENTS);
	h.heap_end_ptr = 0xE000 - 0x200; /* boot.rst's recommended value */
	h.cmd_line_ptr = (uint32_t)X86_BOOT_CMDLINE_GPA;
	h.ramdisk_image = (uint32_t)l->initrd_gpa;
	h.ramdisk_size = (uint32_t)l->initrd_size;
	h.code32_start = (uint32_t)l->kernel_start;
	h.hardware_subarch = 0; /* X86_SUBARCH_PC */
	h.hardware_subarch_data = 0;
	h.setup_data = 0;
	memcpy(bp + X86_SETUP_HEADER_OFFSET, &h, sizeof(h));

	put_le(bp + X86_BP_EXT_RAMDISK_IMG, l->initrd_gpa >> 32, 4);
	put_le(bp + X86_BP_EXT_RAMDISK_SZ, l->initrd_size >> 32, 4);
	put_le(bp + X86_BP_EXT_CMD_LINE, X86_BOOT_CMDLINE_GPA >> 32, 4);
	put_le(bp + X86_BP_ACPI_RSDP_ADDR, l->rsdp_gpa, 8);

	if (l->nr_e820 > X86_BP_E820_MAX)
		return -E2BIG;
	for (unsigned i = 0; i < l->nr_e820; i++) {
		uint8_t *e = bp + X86_BP_E820_TABLE + 20 * i; /* packed */

		put_le(e, l->e820[i].addr, 8);
		put_le(e + 8, l->e820[i].size, 8);
		put_le(e + 16, l->e820[i].type, 4);
		/* alt_mem_k: KiB of RAM contiguous from 1 MiB. */
		if (l->e820[i].type == E820_TYPE_RAM &&
		    l->e820[i].addr <= BOOT_AREA_END &&
		    l->e820[i].addr + l->e820[i].size > BOOT_AREA_END)
			high_kib = (l->e820[i].addr + l->e820[i].size -
				    BOOT_AREA_END) >> 10;
	}
	bp[X86_BP_E820_ENTRIES] = (uint8_t)l->nr_e820;
	put_le(bp + X86_BP_ALT_MEM_K, high_kib > UINT32_MAX ? UINT32_MAX : high_kib,
	       4);
	bp[X86_BP_SENTINEL] = 0; /* a set sentinel makes Linux wipe fields */
	return guest_memory_write(mem, X86_BOOT_INFO_GPA, bp, sizeof(bp));
}

/* Xen public hvm/start_info.h, version 1: what a PVH kernel reads. */
static int write_hvm_start_info(const struct guest_memory *mem,
				const struct boot_layout *l)
{
	struct x86_hvm_start_info si = {
		.magic = X86_HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = X86_BOOT_CMDLINE_GPA,
		.rsdp_paddr = l->rsdp_gpa,
		.memmap_paddr = PVH_MEMMAP_GPA,
		.memmap_entries = l->nr_e820,
	};
	struct x86_hvm_memmap_entry mm[PVH_MEMMAP_MAX];
	int rc;

	if (l->nr_e820 > PVH_MEMMAP_MAX)
		return -E2BIG;
	memset(mm, 0, sizeof(mm));
	for (unsigned i = 0; i < l->nr_e820; i++)
		mm[i] = (struct x86_hvm_memmap_entry){
			l->e820[i].addr, l->e820[i].size, l->e820[i].type, 0 };
	if (l->initrd_size) {
		struct x86_hvm_modlist_entry mod = {
			.paddr = l->initrd_gpa, .size = l->initrd_size };

		si.nr_modules = 1;
		si.modlist_paddr = PVH_MODLIST_GPA;
		rc = guest_memory_write(mem, PVH_MODLIST_GPA, &mod, sizeof(mod));
		if (rc)
			return rc;
	}
	rc = guest_memory_write(mem, PVH_MEMMAP_GPA, mm,
				l->nr_e820 * sizeof(mm[0]));
	if (rc)
		return rc;
	return guest_memory_write(mem, X86_BOOT_INFO_GPA, &si, sizeof(si));
}

/* boot.rst "64-bit boot protocol" load of the bzImage as is: the
 * protected-mode part goes to an aligned address (pref_address for a
 * relocatable kernel) with init_size bytes of room for the in-guest
 * decompression. */
static int load_bzimage_as_is(const struct guest_memory *mem,
			      const struct kernel_image *k,
			      uint64_t *start, uint64_t *end, uint64_t *rip,
			      char *err, size_t errlen)
{
	const struct x86_setup_header *h = &k->hdr;
	size_t pm_off = ((size_t)(h->setup_sects ? h->setup_sects : 4) + 1) * 512;
	uint64_t load = 0x100000, need;

	if (h->version < 0x20C || !(h->xloadflags & X86_XLF_KERNEL_64)) {
		snprintf(err, errlen, "bzImage has no 64-bit entry point "
			 "(protocol %u.%02u, xloadflags 0x%x)",
			 PROTOCOL_ARGS(h->version), h->xloadflags);
		return -ENOTSUP;
	}
	if (pm_off >= k->file_len) {
		snprintf(err, errlen, "truncated: setup code (%zu bytes) "
			 "fills the whole file", pm_off);
		return -ENOEXEC;
	}
	if (h->relocatable_kernel && h->pref_address >= BOOT_AREA_END) {
		uint64_t align = h->kernel_alignment ? h->kernel_alignment : HUGE_2M;

		if (align & (align - 1))
			align = HUGE_2M;
		/* pref_address comes from the file: rounding it up must
		 * not wrap to a low address. */
		if (h->pref_address > UINT64_MAX - (align - 1)) {
			snprintf(err, errlen, "pref_address 0x%" PRIx64
				 " is outside guest memory", h->pref_address);
			return -ERANGE;
		}
		load = (h->pref_address + align - 1) & ~(align - 1);
	}
	need = k->file_len - pm_off;
	if (h->init_size > need)
		need = h->init_size;
	if (!guest_memory_is_ram(mem, load, need)) {
		if (need > UINT64_MAX - load)
			snprintf(err, errlen, "kernel at 0x%" PRIx64 " (0x%" PRIx64
				 " bytes) is outside guest memory", load, need);
		else
			snprintf(err, errlen, "kernel at 0x%" PRIx64 "-0x%" PRIx64
				 " is outside guest memory", load, load + need);
		return -ERANGE;
	}
	guest_memory_write(mem, load, k->file + pm_off, k->file_len - pm_off);
	*start = load;
	*end = load + need;
	*rip = load + 0x200; /* boot.rst: 64-bit entry = startup_32 + 0x200 */
	return 0;
}

int x86_linux_load(struct guest_memory *mem, const struct x86_linux_params *p,
		   struct x86_boot_entry *entry, struct x86_linux_info *info_out,
		   char *err, size_t errlen)
{
	const char *kpath = p->kernel_path ? p->kernel_path : "(none)";
	const char *cmdline = p->cmdline ? p->cmdline : "";
	struct x86_linux_info info_local = { 0 };
	struct x86_linux_info *info = info_out ? info_out : &info_local;
	struct kernel_image k = { 0 };
	struct e820_entry derived[E820_MAX_FROM_MEMORY + 1];
	struct boot_layout l = { 0 };
	struct elf64_image elf;
	enum x86_linux_boot boot = p->boot == X86_LINUX_BOOT_AUTO ?
				   X86_LINUX_BOOT_64 : p->boot;
	uint64_t kernel_end = 0, rip = 0, initrd_limit, cmdline_max;
	char why[384];
	size_t cmdline_len = strlen(cmdline);
	int rc;

	memset(info, 0, sizeof(*info));
	memset(entry, 0, sizeof(*entry));
	info->compression = "none";
	why[0] = '\0';

	if (!p->kernel_path) {
		snprintf(err, errlen, "no kernel given");
		return -EINVAL;
	}
	rc = x86_read_input("kernel", kpath, X86_KERNEL_FILE_MAX,
			    "the most kite reads", &k.file, &k.file_len, err,
			    errlen);
	if (rc)
		return rc;

	/* Either a bare vmlinux ELF or a bzImage. */
	if (elf64_is_elf(k.file, k.file_len)) {
		if (boot == X86_LINUX_BOOT_BZIMAGE64) {
			snprintf(why, sizeof(why), "is an ELF vmlinux, not a bzImage");
			rc = -EINVAL;
			goto fail;
		}
		synthesize_setup_header(&k.hdr);
		rc = elf64_parse(k.file, k.file_len, &elf, why, sizeof(why));
		if (rc)
			goto fail;
	} else {
		rc = x86_setup_header_parse(k.file, k.file_len, &k.hdr, why,
					    sizeof(why));
		if (rc)
			goto fail;
		k.hdr_len = setup_header_len(k.file, k.file_len);
		info->is_bzimage = true;
		info->protocol_version = k.hdr.version;
		if (k.hdr.version >= 0x20A)
			info->pref_address = k.hdr.pref_address;
		x86_setup_header_kernel_version(k.file, k.file_len, &k.hdr,
						info->kernel_version,
						sizeof(info->kernel_version));
	}

	if (info->is_bzimage && boot == X86_LINUX_BOOT_BZIMAGE64) {
		rc = load_bzimage_as_is(mem, &k, &l.kernel_start, &kernel_end,
					&rip, why, sizeof(why));
		if (rc)
			goto fail;
	} else {
		if (info->is_bzimage) {
			/* boot.rst 2.08+: payload_offset is relative to the
			 * protected-mode code, which follows setup_sects+1
			 * sectors. */
			size_t pm_off = ((size_t)(k.hdr.setup_sects ?
						  k.hdr.setup_sects : 4) + 1) * 512;
			uint64_t off = (uint64_t)pm_off + k.hdr.payload_offset;
			char uerr[256];
			uint8_t *out;
			size_t out_len;
			char cache_buf[4096];
			const char *cache = p->cache_dir;
			enum kernel_compression comp;
			double t0;

			if (k.hdr.version < 0x208 || k.hdr.payload_length == 0) {
				snprintf(why, sizeof(why), "boot protocol %u.%02u "
					 "has no payload location (2.08+ needed)",
					 PROTOCOL_ARGS(k.hdr.version));
				rc = -ENOEXEC;
				goto fail;
			}
			if (off > k.file_len ||
			    k.hdr.payload_length > k.file_len - off) {
				snprintf(why, sizeof(why), "truncated: payload "
					 "0x%" PRIx64 "+0x%x runs past the end of "
					 "the file (%zu bytes)", off,
					 k.hdr.payload_length, k.file_len);
				rc = -ENOEXEC;
				goto fail;
			}
			if (!cache)
				cache = kernel_unpack_default_cache_dir(cache_buf,
									sizeof(cache_buf));
			t0 = now_seconds();
			/* The unpacked vmlinux goes to guest RAM: no
			 * larger output can be right. */
			rc = kernel_unpack_cached(k.file + off,
						  k.hdr.payload_length,
						  mem->total, cache,
						  &out, &out_len, &comp,
						  &info->cache_hit, uerr,
						  sizeof(uerr));
			info->unpack_seconds = now_seconds() - t0;
			info->compression = kernel_compression_name(comp);
			info->payload_size = k.hdr.payload_length;
			if (rc) {
				snprintf(why, sizeof(why), "%s%s", uerr,
					 rc == -EFBIG && mem->total <
					 KERNEL_UNPACK_MAX_SIZE ?
					 " (guest RAM)" : "");
				goto fail;
			}
			k.unpacked = out;
			info->unpacked_size = out_len;
			rc = elf64_parse(out, out_len, &elf, uerr, sizeof(uerr));
			if (rc) {
				snprintf(why, sizeof(why), "unpacked payload: %s",
					 uerr);
				goto fail;
			}
		}
		rc = elf64_load(&elf, mem, BOOT_AREA_END, why, sizeof(why));
		if (rc)
			goto fail;
		l.kernel_start = elf.paddr_start;
		kernel_end = elf.paddr_end;
		if (boot == X86_LINUX_BOOT_PVH) {
			const uint8_t *desc;
			size_t dlen;

			/* Linux emits the note as a pointer-sized value:
			 * 8 bytes on x86-64, 4 on 32-bit builds. */
			if (elf64_find_note(&elf, "Xen", XEN_ELFNOTE_PHYS32_ENTRY,
					    &desc, &dlen) ||
			    (dlen != 4 && dlen != 8)) {
				snprintf(why, sizeof(why), "no PVH entry point "
					 "(XEN_ELFNOTE_PHYS32_ENTRY note)");
				rc = -ENOTSUP;
				goto fail;
			}
			rip = 0;
			for (size_t i = 0; i < dlen; i++)
				rip |= (uint64_t)desc[i] << (8 * i);
		} else {
			if (elf64_entry_paddr(&elf, &rip)) {
				snprintf(why, sizeof(why), "entry point 0x%" PRIx64
					 " lies in no loadable segment", elf.entry);
				rc = -ENOEXEC;
				goto fail;
			}
		}
		if (rip >= GIB4 && boot == X86_LINUX_BOOT_PVH) {
			snprintf(why, sizeof(why), "PVH entry 0x%" PRIx64
				 " is above 4 GiB", rip);
			rc = -ENOEXEC;
			goto fail;
		}
	}
	info->boot = boot;
	info->kernel_start = l.kernel_start;
	info->kernel_end = kernel_end;
	info->entry = rip;
	info->relocated = info->is_bzimage && info->pref_address &&
			  l.kernel_start != info->pref_address;
	if (rip >= GIB4) { /* our page tables map only the first 4 GiB */
		snprintf(why, sizeof(why), "entry 0x%" PRIx64 " is above 4 GiB",
			 rip);
		rc = -ERANGE;
		goto fail;
	}

	/* Command line: boot.rst cmdline_size (2.06+) excludes the NUL. */
	cmdline_max = k.hdr.version >= 0x206 ? k.hdr.cmdline_size : 255;
	if (cmdline_max > CMDLINE_AREA_MAX - 1)
		cmdline_max = CMDLINE_AREA_MAX - 1;
	if (cmdline_len > cmdline_max) {
		snprintf(err, errlen, "command line: %zu bytes, kernel '%s' "
			 "accepts at most %" PRIu64, cmdline_len, kpath,
			 cmdline_max);
		rc = -E2BIG;
		goto out;
	}
	rc = guest_memory_write(mem, X86_BOOT_CMDLINE_GPA, cmdline,
				cmdline_len + 1);
	if (rc) {
		snprintf(err, errlen, "command line: guest memory at 0x%llx: %s",
			 X86_BOOT_CMDLINE_GPA, strerror(-rc));
		goto out;
	}

	/* Memory map. */
	if (p->e820) {
		l.e820 = p->e820;
		l.nr_e820 = p->nr_e820;
	} else {
		rc = e820_from_guest_memory(mem, derived,
					    E820_MAX_FROM_MEMORY, &l.nr_e820);
		if (!rc && p->reserved_size)
			rc = e820_insert_reserved(derived,
						  E820_MAX_FROM_MEMORY + 1,
						  &l.nr_e820, p->reserved_base,
						  p->reserved_size);
		if (rc) {
			snprintf(err, errlen, "e820 map: %s", strerror(-rc));
			goto out;
		}
		l.e820 = derived;
	}
	if (l.nr_e820 > X86_BP_E820_MAX) {
		snprintf(err, errlen, "e820 map: %u entries, at most %d fit",
			 l.nr_e820, X86_BP_E820_MAX);
		rc = -E2BIG;
		goto out;
	}

	/* initrd: boot.rst initrd_addr_max (2.03+; 0x37FFFFFF before). */
	initrd_limit = (k.hdr.version >= 0x203 ? (uint64_t)k.hdr.initrd_addr_max
					       : 0x37FFFFFFULL) + 1;
	if (initrd_limit > GIB4)
		initrd_limit = GIB4;
	if (p->initrd_path) {
		rc = load_initrd(mem, p->initrd_path, p->unpack_initrd,
				 l.e820, l.nr_e820, kernel_end, initrd_limit,
				 &l.initrd_gpa, &l.initrd_size,
				 &info->initrd_file_size, err, errlen);
		if (rc)
			goto out;
		info->initrd_start = l.initrd_gpa;
		info->initrd_size = l.initrd_size;
	}
	l.rsdp_gpa = p->rsdp_gpa;

	rc = boot == X86_LINUX_BOOT_PVH ? write_hvm_start_info(mem, &l)
					: write_boot_params(mem, &k, &l);
	if (!rc)
		rc = write_gdt(mem, boot != X86_LINUX_BOOT_PVH);
	if (!rc && boot != X86_LINUX_BOOT_PVH)
		rc = write_identity_page_tables(mem);
	if (rc) {
		snprintf(err, errlen, "boot structures below 1 MiB: %s",
			 strerror(-rc));
		goto out;
	}

	entry->rip = rip;
	entry->rsp = X86_BOOT_STACK_TOP;
	entry->gdt_base = X86_BOOT_GDT_GPA;
	entry->gdt_limit = 4 * 8 - 1;
	entry->code_sel = BOOT_CS;
	entry->data_sel = BOOT_DS;
	if (boot == X86_LINUX_BOOT_PVH) {
		/* PVH ABI: 32-bit flat protected mode, paging off, ebx =
		 * hvm_start_info. */
		entry->mode = X86_ENTRY_PROTECTED32;
		entry->rbx = X86_BOOT_INFO_GPA;
	} else {
		/* boot.rst 64-bit protocol: rsi = boot_params. */
		entry->mode = X86_ENTRY_LONG64;
		entry->cr3 = X86_BOOT_PML4_GPA;
		entry->rsi = X86_BOOT_INFO_GPA;
	}
	rc = 0;
	goto out;

fail:
	snprintf(err, errlen, "kernel '%s': %s", kpath, why);
out:
	free(k.unpacked);
	free(k.file);
	return rc;
}
