/* ELF64 executables (an x86-64 vmlinux) loaded into guest memory by
 * physical address.
 *
 * elf64_parse() validates an image held in host memory without touching the
 * guest; elf64_load() then copies each PT_LOAD segment to its p_paddr,
 * zero-filling p_memsz beyond p_filesz, after checking that every segment
 * is guest RAM.  The image bytes must stay alive while the struct is used. */
#ifndef KITE_ARCH_X86_ELF_H
#define KITE_ARCH_X86_ELF_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

#define ELF64_MAX_LOAD 16
#define ELF64_MAX_NOTE 8

struct elf64_segment {
	uint64_t offset;   /* in the file */
	uint64_t paddr;
	uint64_t vaddr;
	uint64_t filesz;
	uint64_t memsz;
};

struct elf64_image {
	const uint8_t *data;
	size_t len;
	uint64_t entry;              /* e_entry as written (may be virtual) */
	unsigned nr_load;
	struct elf64_segment load[ELF64_MAX_LOAD];
	unsigned nr_note;
	struct elf64_segment note[ELF64_MAX_NOTE]; /* PT_NOTE file ranges */
	uint64_t paddr_start;        /* lowest p_paddr of a PT_LOAD */
	uint64_t paddr_end;          /* highest p_paddr + p_memsz */
};

/* True when |data| starts with the ELF magic. */
int elf64_is_elf(const uint8_t *data, size_t len);

/* Validate an x86-64 ELF64 executable: header, program headers, segment
 * file ranges and address arithmetic.  Returns 0, or -ENOEXEC with a
 * reason in |err|. */
int elf64_parse(const uint8_t *data, size_t len, struct elf64_image *img,
		char *err, size_t errlen);

/* Copy every PT_LOAD segment to guest memory at its p_paddr.  Segments
 * must lie wholly in guest RAM at or above |min_paddr| (the loader keeps
 * its boot structures below): -ERANGE otherwise, nothing written. */
int elf64_load(const struct elf64_image *img, const struct guest_memory *mem,
	       uint64_t min_paddr, char *err, size_t errlen);

/* The physical entry point: e_entry itself when it lies in a segment's
 * physical range, else e_entry translated from the virtual range of the
 * PT_LOAD containing it (vmlinux links at 0xffffffff81000000 and loads at
 * 16 MiB).  -ENOEXEC when it lies in no segment. */
int elf64_entry_paddr(const struct elf64_image *img, uint64_t *paddr);

/* Find the first note named |name| with type |type| in the PT_NOTE
 * segments; points *desc at its descriptor and sets *desclen.  -ENOENT
 * if absent. */
int elf64_find_note(const struct elf64_image *img, const char *name,
		    uint32_t type, const uint8_t **desc, size_t *desclen);

#endif
