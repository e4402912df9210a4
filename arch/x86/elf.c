/* ELF64 vmlinux loader (see elf.h).  Only the fields a kernel load needs
 * are read; everything is bounds-checked because images come from disk. */
#include "arch/x86/elf.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int elf64_is_elf(const uint8_t *data, size_t len)
{
	return len >= SELFMAG && memcmp(data, ELFMAG, SELFMAG) == 0;
}

/* [off, off+size) within [0, len), without overflow. */
static int range_in_file(uint64_t off, uint64_t size, size_t len)
{
	return off <= len && size <= len - off;
}

int elf64_parse(const uint8_t *data, size_t len, struct elf64_image *img,
		char *err, size_t errlen)
{
	Elf64_Ehdr eh;

	memset(img, 0, sizeof(*img));
	img->data = data;
	img->len = len;
	if (len < sizeof(eh) || !elf64_is_elf(data, len)) {
		snprintf(err, errlen, "not an ELF file");
		return -ENOEXEC;
	}
	memcpy(&eh, data, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64) {
		snprintf(err, errlen, "ELF is not x86-64 little-endian ELF64");
		return -ENOEXEC;
	}
	if (eh.e_type != ET_EXEC) {
		snprintf(err, errlen, "ELF type %u is not an executable",
			 eh.e_type);
		return -ENOEXEC;
	}
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
	    !range_in_file(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr),
			   len)) {
		snprintf(err, errlen, "ELF program headers are missing or truncated");
		return -ENOEXEC;
	}
	img->entry = eh.e_entry;
	img->paddr_start = UINT64_MAX;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		struct elf64_segment seg;

		memcpy(&ph, data + eh.e_phoff + (uint64_t)i * sizeof(ph),
		       sizeof(ph));
		if (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE)
			continue;
		seg = (struct elf64_segment){ ph.p_offset, ph.p_paddr,
					      ph.p_vaddr, ph.p_filesz,
					      ph.p_memsz };
		if (!range_in_file(ph.p_offset, ph.p_filesz, len)) {
			snprintf(err, errlen,
				 "ELF segment %u (offset 0x%" PRIx64 ", 0x%" PRIx64
				 " bytes) runs past the end of the file (%zu bytes)",
				 i, ph.p_offset, ph.p_filesz, len);
			return -ENOEXEC;
		}
		if (ph.p_type == PT_NOTE) {
			if (img->nr_note < ELF64_MAX_NOTE)
				img->note[img->nr_note++] = seg;
			continue;
		}
		if (ph.p_memsz == 0)
			continue;
		if (ph.p_filesz > ph.p_memsz ||
		    ph.p_paddr + ph.p_memsz < ph.p_paddr ||
		    ph.p_vaddr + ph.p_memsz < ph.p_vaddr) {
			snprintf(err, errlen,
				 "ELF segment %u has inconsistent sizes or wraps",
				 i);
			return -ENOEXEC;
		}
		if (img->nr_load == ELF64_MAX_LOAD) {
			snprintf(err, errlen, "ELF has more than %d PT_LOAD segments",
				 ELF64_MAX_LOAD);
			return -ENOEXEC;
		}
		img->load[img->nr_load++] = seg;
		if (ph.p_paddr < img->paddr_start)
			img->paddr_start = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > img->paddr_end)
			img->paddr_end = ph.p_paddr + ph.p_memsz;
	}
	if (img->nr_load == 0) {
		snprintf(err, errlen, "ELF has no loadable segment");
		return -ENOEXEC;
	}
	return 0;
}

int elf64_load(const struct elf64_image *img, const struct guest_memory *mem,
	       uint64_t min_paddr, char *err, size_t errlen)
{
	/* Check all first so that a bad image leaves guest memory alone. */
	for (unsigned i = 0; i < img->nr_load; i++) {
		const struct elf64_segment *s = &img->load[i];

		if (s->paddr < min_paddr ||
		    !guest_memory_is_ram(mem, s->paddr, s->memsz)) {
			snprintf(err, errlen,
				 "segment at 0x%" PRIx64 "-0x%" PRIx64
				 " is outside guest memory (usable from 0x%" PRIx64 ")",
				 s->paddr, s->paddr + s->memsz, min_paddr);
			return -ERANGE;
		}
	}
	for (unsigned i = 0; i < img->nr_load; i++) {
		const struct elf64_segment *s = &img->load[i];
		void *hva;
		int rc = guest_memory_translate(mem, s->paddr, s->memsz, &hva);

		if (rc) {
			snprintf(err, errlen, "segment at 0x%" PRIx64 ": %s",
				 s->paddr, strerror(-rc));
			return rc;
		}
		memcpy(hva, img->data + s->offset, s->filesz);
		memset((uint8_t *)hva + s->filesz, 0, s->memsz - s->filesz);
	}
	return 0;
}

int elf64_entry_paddr(const struct elf64_image *img, uint64_t *paddr)
{
	for (unsigned i = 0; i < img->nr_load; i++) {
		const struct elf64_segment *s = &img->load[i];

		if (img->entry >= s->paddr && img->entry - s->paddr < s->memsz) {
			*paddr = img->entry;
			return 0;
		}
	}
	for (unsigned i = 0; i < img->nr_load; i++) {
		const struct elf64_segment *s = &img->load[i];

		if (img->entry >= s->vaddr && img->entry - s->vaddr < s->memsz) {
			*paddr = s->paddr + (img->entry - s->vaddr);
			return 0;
		}
	}
	return -ENOEXEC;
}

static uint64_t align4(uint64_t v)
{
	return (v + 3) & ~3ULL;
}

int elf64_find_note(const struct elf64_image *img, const char *name,
		    uint32_t type, const uint8_t **desc, size_t *desclen)
{
	size_t name_len = strlen(name) + 1; /* n_namesz counts the NUL */

	for (unsigned i = 0; i < img->nr_note; i++) {
		const uint8_t *p = img->data + img->note[i].offset;
		uint64_t left = img->note[i].filesz;

		while (left >= sizeof(Elf64_Nhdr)) {
			Elf64_Nhdr nh;
			uint64_t nsz, dsz;

			memcpy(&nh, p, sizeof(nh));
			nsz = align4(nh.n_namesz);
			dsz = align4(nh.n_descsz);
			p += sizeof(nh);
			left -= sizeof(nh);
			if (nsz > left || dsz > left - nsz)
				break; /* malformed: stop at this segment */
			if (nh.n_type == type && nh.n_namesz == name_len &&
			    memcmp(p, name, name_len) == 0) {
				*desc = p + nsz;
				*desclen = nh.n_descsz;
				return 0;
			}
			p += nsz + dsz;
			left -= nsz + dsz;
		}
	}
	return -ENOENT;
}
