#include "arch/x86/multiboot.h"

#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct mb_header {
	uint32_t magic, flags, checksum;
	uint32_t header_addr, load_addr, load_end_addr, bss_end_addr,
		entry_addr;
};

struct mb_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr;
	uint32_t config_table;
	uint32_t boot_loader_name;
	uint32_t apm_table;
	uint32_t vbe[6];
} __attribute__((packed));

struct mb_module {
	uint32_t mod_start, mod_end, string, reserved;
};

struct mb_mmap_entry {
	uint32_t size; /* of the rest of the entry: 20 */
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

/* Where the info block's pieces live; all inside the reserved low area. */
#define MB_INFO_GPA      X86_BOOT_INFO_GPA
#define MB_MMAP_GPA      (X86_BOOT_INFO_GPA + 0x200)
#define MB_MODS_GPA      (X86_BOOT_INFO_GPA + 0x400)
#define MB_LOADER_GPA    (X86_BOOT_INFO_GPA + 0x500)
#define MB_MODNAME_GPA   (X86_BOOT_INFO_GPA + 0x600) /* up to 0x7FFF */
#define MB_MODNAME_MAX   0x800
#define LOW_MEMORY_END   0x9FC00ULL /* start of the EBDA */
#define MB_ADDR_LIMIT    0x100000000ULL /* 32-bit addresses only */

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* The areas this loader writes after loading the image. */
static bool overlaps_boot_area(uint64_t gpa, uint64_t len)
{
	static const uint64_t areas[][2] = {
		{ X86_BOOT_GDT_GPA, 0x8000 },
		{ X86_BOOT_CMDLINE_GPA, X86_BOOT_CMDLINE_GPA + 0x10000 },
	};

	for (unsigned i = 0; i < 2; i++)
		if (gpa < areas[i][1] && gpa + len > areas[i][0])
			return true;
	return false;
}

/* The header's offset in |image|, or -1; |h| gets a copy of it.  Copied,
 * as the image may sit at any alignment; fields past the end of a short
 * image read as zero (the a.out ones are used only when present). */
static long find_header(const uint8_t *image, size_t size,
			struct mb_header *h)
{
	size_t limit = size < MULTIBOOT_SEARCH ? size : MULTIBOOT_SEARCH;

	for (size_t off = 0; off + 12 <= limit; off += 4) {
		struct mb_header c = { 0 };

		memcpy(&c, image + off, size - off < sizeof(c) ? size - off
							       : sizeof(c));
		if (c.magic == MULTIBOOT_HEADER_MAGIC &&
		    (uint32_t)(c.magic + c.flags + c.checksum) == 0) {
			if (h)
				*h = c;
			return (long)off;
		}
	}
	return -1;
}

bool multiboot_detect(const uint8_t *image, size_t size)
{
	return find_header(image, size, NULL) >= 0;
}

static int load_elf32(struct guest_memory *mem, const uint8_t *image,
		      size_t size, uint32_t *entry, uint64_t *end, char *err,
		      size_t errlen)
{
	Elf32_Ehdr ehdr;
	const Elf32_Ehdr *eh = &ehdr;

	if (size < sizeof(ehdr) || memcmp(image, ELFMAG, SELFMAG) != 0)
		return fail(err, errlen, -ENOEXEC,
			    "not an ELF file and no a.out kludge in the multiboot header");
	/* Copied out: the image may sit at any alignment. */
	memcpy(&ehdr, image, sizeof(ehdr));
	if (eh->e_ident[EI_CLASS] != ELFCLASS32 || eh->e_machine != EM_386)
		return fail(err, errlen, -ENOEXEC,
			    "multiboot ELF must be 32-bit x86 (ELFCLASS32, EM_386)");
	if (eh->e_phentsize != sizeof(Elf32_Phdr) ||
	    eh->e_phoff > size ||
	    (uint64_t)eh->e_phnum * sizeof(Elf32_Phdr) > size - eh->e_phoff)
		return fail(err, errlen, -ENOEXEC,
			    "ELF program headers lie outside the file");

	*end = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		/* Copied out: e_phoff comes from the file and may be
		 * misaligned for a direct Elf32_Phdr access. */
		Elf32_Phdr phdr;
		const Elf32_Phdr *ph = &phdr;
		uint64_t seg_end;
		void *dst;

		memcpy(&phdr, image + eh->e_phoff + i * sizeof(Elf32_Phdr),
		       sizeof(phdr));

		if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
			continue;
		if (ph->p_filesz > ph->p_memsz || ph->p_offset > size ||
		    ph->p_filesz > size - ph->p_offset)
			return fail(err, errlen, -ENOEXEC,
				    "ELF segment %u lies outside the file", i);
		/* The end in 64 bits: a segment running past 4 GiB must
		 * not wrap to a low address, nor be reported as one. */
		seg_end = (uint64_t)ph->p_paddr + ph->p_memsz;
		if (seg_end > MB_ADDR_LIMIT ||
		    guest_memory_translate(mem, ph->p_paddr, ph->p_memsz, &dst))
			return fail(err, errlen, -ERANGE,
				    "ELF segment %u (0x%x-0x%llx) is outside guest RAM",
				    i, ph->p_paddr, (unsigned long long)seg_end);
		if (overlaps_boot_area(ph->p_paddr, ph->p_memsz))
			return fail(err, errlen, -EINVAL,
				    "ELF segment %u (0x%x-0x%llx) overlaps the multiboot info kite builds (0x500-0x7fff, 0x20000-0x2ffff)",
				    i, ph->p_paddr, (unsigned long long)seg_end);
		memcpy(dst, image + ph->p_offset, ph->p_filesz);
		memset((uint8_t *)dst + ph->p_filesz, 0,
		       ph->p_memsz - ph->p_filesz);
		if (seg_end > *end)
			*end = seg_end;
	}
	if (*end == 0)
		return fail(err, errlen, -ENOEXEC, "ELF has no loadable segment");
	*entry = eh->e_entry;
	return 0;
}

/* The a.out kludge: the header says where the file goes (flag bit 16). */
static int load_aout(struct guest_memory *mem, const uint8_t *image,
		     size_t size, const struct mb_header *h, uint64_t hdr_off,
		     uint32_t *entry, uint64_t *end, char *err, size_t errlen)
{
	uint64_t file_off, load_len, bss_end;
	void *dst;

	if (h->load_addr > h->header_addr ||
	    h->header_addr - h->load_addr > hdr_off)
		return fail(err, errlen, -ENOEXEC,
			    "multiboot header: load_addr is after header_addr");
	file_off = hdr_off - (h->header_addr - h->load_addr);
	load_len = h->load_end_addr ? (uint64_t)h->load_end_addr - h->load_addr
				    : size - file_off;
	if (h->load_end_addr && h->load_end_addr < h->load_addr)
		return fail(err, errlen, -ENOEXEC,
			    "multiboot header: load_end_addr before load_addr");
	if (load_len > size - file_off)
		return fail(err, errlen, -ENOEXEC,
			    "multiboot header: image shorter than load_end_addr says");
	bss_end = h->bss_end_addr ? h->bss_end_addr : h->load_addr + load_len;
	if (bss_end < h->load_addr + load_len)
		return fail(err, errlen, -ENOEXEC,
			    "multiboot header: bss_end_addr before the end of the image");
	/* 64-bit sums of 32-bit fields: no wrap; a 32-bit kernel must end
	 * below 4 GiB. */
	if (bss_end > MB_ADDR_LIMIT ||
	    guest_memory_translate(mem, h->load_addr, bss_end - h->load_addr,
				   &dst))
		return fail(err, errlen, -ERANGE,
			    "image (0x%x-0x%llx) is outside guest RAM",
			    h->load_addr, (unsigned long long)bss_end);
	if (overlaps_boot_area(h->load_addr, bss_end - h->load_addr))
		return fail(err, errlen, -EINVAL,
			    "image (0x%x-0x%llx) overlaps the multiboot info kite builds (0x500-0x7fff, 0x20000-0x2ffff)",
			    h->load_addr, (unsigned long long)bss_end);
	memcpy(dst, image + file_off, load_len);
	memset((uint8_t *)dst + load_len, 0,
	       bss_end - h->load_addr - load_len);
	*entry = h->entry_addr;
	*end = bss_end;
	return 0;
}

static uint32_t build_mmap(struct guest_memory *mem)
{
	struct mb_mmap_entry e[GUEST_MEMORY_MAX_REGIONS + 2];
	unsigned n = 0;
	uint64_t low = mem->regions[0].size;

	e[n++] = (struct mb_mmap_entry){ 20, 0, LOW_MEMORY_END, 1 };
	e[n++] = (struct mb_mmap_entry){ 20, LOW_MEMORY_END,
					 0x100000 - LOW_MEMORY_END, 2 };
	if (low > 0x100000)
		e[n++] = (struct mb_mmap_entry){ 20, 0x100000, low - 0x100000, 1 };
	for (unsigned i = 1; i < mem->nr_regions; i++)
		e[n++] = (struct mb_mmap_entry){ 20, mem->regions[i].gpa,
						 mem->regions[i].size, 1 };
	guest_memory_write(mem, MB_MMAP_GPA, e, n * sizeof(e[0]));
	return (uint32_t)(n * sizeof(e[0]));
}

int multiboot_load(struct guest_memory *mem, const uint8_t *image,
		   size_t size, const uint8_t *module, size_t module_size,
		   const char *module_name, const char *cmdline,
		   struct x86_boot_entry *entry, char *err, size_t errlen)
{
	struct mb_header hdr;
	const struct mb_header *h = &hdr;
	long hdr_off = find_header(image, size, &hdr);
	struct mb_info info;
	uint64_t end = 0, low = mem->regions[0].size;
	uint32_t entry_addr = 0;
	size_t cmdlen = strlen(cmdline);
	static const char loader_name[] = "kite";
	int rc;

	if (hdr_off < 0)
		return fail(err, errlen, -ENOEXEC, "no multiboot header");
	if (low < 0x200000)
		return fail(err, errlen, -ERANGE,
			    "multiboot needs at least 2 MiB of RAM");
	if (h->flags & 0x0000FFF8U & ~MULTIBOOT_VIDEO_MODE)
		return fail(err, errlen, -ENOTSUP,
			    "multiboot header asks for unsupported features (flags 0x%x)",
			    h->flags);
	if ((h->flags & MULTIBOOT_AOUT_KLUDGE) &&
	    (size_t)hdr_off + sizeof(*h) <= size)
		rc = load_aout(mem, image, size, h, (uint64_t)hdr_off,
			       &entry_addr, &end, err, errlen);
	else
		rc = load_elf32(mem, image, size, &entry_addr, &end, err,
				errlen);
	if (rc)
		return rc;

	memset(&info, 0, sizeof(info));
	info.flags = MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE |
		     MULTIBOOT_INFO_MMAP | MULTIBOOT_INFO_LOADER;
	info.mem_lower = LOW_MEMORY_END / 1024;
	info.mem_upper = (uint32_t)((low - 0x100000) / 1024);

	if (cmdlen >= 0x10000)
		return fail(err, errlen, -E2BIG, "command line too long");
	guest_memory_write(mem, X86_BOOT_CMDLINE_GPA, cmdline, cmdlen + 1);
	info.cmdline = X86_BOOT_CMDLINE_GPA;
	guest_memory_write(mem, MB_LOADER_GPA, loader_name, sizeof(loader_name));
	info.boot_loader_name = MB_LOADER_GPA;
	info.mmap_length = build_mmap(mem);
	info.mmap_addr = MB_MMAP_GPA;

	if (module) {
		/* Page-aligned, right after the kernel image, but never below
		 * 1 MiB: a kernel loaded low would otherwise put its module
		 * on the command line, the info block or the EBDA/ROM area
		 * that the memory map reports as reserved. */
		uint64_t start = (end + 0xFFF) & ~0xFFFULL;
		struct mb_module m;
		size_t namelen = strlen(module_name);

		if (start < 0x100000)
			start = 0x100000;

		/* module_size may be anything a size_t holds: compare
		 * without adding. */
		if (start > low || module_size > low - start)
			return fail(err, errlen, -E2BIG,
				    "module of %zu bytes does not fit in guest RAM: it would go at 0x%llx, after the kernel, and RAM below 4 GiB ends at 0x%llx",
				    module_size, (unsigned long long)start,
				    (unsigned long long)low);
		if (namelen >= MB_MODNAME_MAX)
			namelen = MB_MODNAME_MAX - 1;
		guest_memory_write(mem, start, module, module_size);
		guest_memory_write(mem, MB_MODNAME_GPA, module_name, namelen);
		guest_memory_write(mem, MB_MODNAME_GPA + namelen, "", 1);
		m = (struct mb_module){ (uint32_t)start,
					(uint32_t)(start + module_size),
					MB_MODNAME_GPA, 0 };
		guest_memory_write(mem, MB_MODS_GPA, &m, sizeof(m));
		info.flags |= MULTIBOOT_INFO_MODS;
		info.mods_count = 1;
		info.mods_addr = MB_MODS_GPA;
	}
	guest_memory_write(mem, MB_INFO_GPA, &info, sizeof(info));

	/* A flat GDT: null, null, code 0x10, data 0x18. */
	{
		static const uint64_t gdt[4] = {
			0, 0, 0x00CF9B000000FFFFULL, 0x00CF93000000FFFFULL,
		};

		guest_memory_write(mem, X86_BOOT_GDT_GPA, gdt, sizeof(gdt));
	}
	memset(entry, 0, sizeof(*entry));
	entry->mode = X86_ENTRY_PROTECTED32;
	entry->rip = entry_addr;
	entry->rax = MULTIBOOT_BOOTLOADER_MAGIC;
	entry->rbx = MB_INFO_GPA;
	entry->gdt_base = X86_BOOT_GDT_GPA;
	entry->gdt_limit = 4 * 8 - 1;
	entry->code_sel = 0x10;
	entry->data_sel = 0x18;
	return 0;
}
