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

static const struct mb_header *find_header(const uint8_t *image, size_t size)
{
	size_t limit = size < MULTIBOOT_SEARCH ? size : MULTIBOOT_SEARCH;

	for (size_t off = 0; off + 12 <= limit; off += 4) {
		const struct mb_header *h = (const void *)(image + off);

		if (h->magic == MULTIBOOT_HEADER_MAGIC &&
		    (uint32_t)(h->magic + h->flags + h->checksum) == 0)
			return h;
	}
	return NULL;
}

bool multiboot_detect(const uint8_t *image, size_t size)
{
	return find_header(image, size) != NULL;
}

static int load_elf32(struct guest_memory *mem, const uint8_t *image,
		      size_t size, uint32_t *entry, uint64_t *end, char *err,
		      size_t errlen)
{
	const Elf32_Ehdr *eh = (const void *)image;

	if (size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return fail(err, errlen, -ENOEXEC,
			    "not an ELF file and no a.out kludge in the multiboot header");
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
		void *dst;

		memcpy(&phdr, image + eh->e_phoff + i * sizeof(Elf32_Phdr),
		       sizeof(phdr));

		if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
			continue;
		if (ph->p_filesz > ph->p_memsz || ph->p_offset > size ||
		    ph->p_filesz > size - ph->p_offset)
			return fail(err, errlen, -ENOEXEC,
				    "ELF segment %u lies outside the file", i);
		if (guest_memory_translate(mem, ph->p_paddr, ph->p_memsz, &dst))
			return fail(err, errlen, -ENOMEM,
				    "ELF segment %u (0x%x-0x%x) is outside guest RAM",
				    i, ph->p_paddr, ph->p_paddr + ph->p_memsz);
		if (overlaps_boot_area(ph->p_paddr, ph->p_memsz))
			return fail(err, errlen, -EINVAL,
				    "ELF segment %u (0x%x-0x%x) overlaps the multiboot info kite builds (0x500-0x7fff, 0x20000-0x2ffff)",
				    i, ph->p_paddr, ph->p_paddr + ph->p_memsz);
		memcpy(dst, image + ph->p_offset, ph->p_filesz);
		memset((uint8_t *)dst + ph->p_filesz, 0,
		       ph->p_memsz - ph->p_filesz);
		if ((uint64_t)ph->p_paddr + ph->p_memsz > *end)
			*end = (uint64_t)ph->p_paddr + ph->p_memsz;
	}
	if (*end == 0)
		return fail(err, errlen, -ENOEXEC, "ELF has no loadable segment");
	*entry = eh->e_entry;
	return 0;
}

/* The a.out kludge: the header says where the file goes (flag bit 16). */
static int load_aout(struct guest_memory *mem, const uint8_t *image,
		     size_t size, const struct mb_header *h, uint32_t *entry,
		     uint64_t *end, char *err, size_t errlen)
{
	uint64_t hdr_off = (uint64_t)((const uint8_t *)h - image);
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
	if (guest_memory_translate(mem, h->load_addr, bss_end - h->load_addr,
				   &dst))
		return fail(err, errlen, -ENOMEM,
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
	const struct mb_header *h = find_header(image, size);
	struct mb_info info;
	uint64_t end = 0, low = mem->regions[0].size;
	uint32_t entry_addr = 0;
	size_t cmdlen = strlen(cmdline);
	static const char loader_name[] = "kite";
	int rc;

	if (!h)
		return fail(err, errlen, -ENOEXEC, "no multiboot header");
	if (low < 0x200000)
		return fail(err, errlen, -ENOMEM,
			    "multiboot needs at least 2 MiB of RAM");
	if (h->flags & 0x0000FFF8U & ~MULTIBOOT_VIDEO_MODE)
		return fail(err, errlen, -ENOTSUP,
			    "multiboot header asks for unsupported features (flags 0x%x)",
			    h->flags);
	if ((h->flags & MULTIBOOT_AOUT_KLUDGE) &&
	    (size_t)((const uint8_t *)h - image) + sizeof(*h) <= size)
		rc = load_aout(mem, image, size, h, &entry_addr, &end, err,
			       errlen);
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

		if (start + module_size > low || start + module_size < start)
			return fail(err, errlen, -ENOMEM,
				    "module of %zu bytes does not fit in RAM below 3 GiB after the kernel",
				    module_size);
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
