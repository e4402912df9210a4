/* Guest physical memory: owned here, reached only through checked translation.
 *
 * The guest's RAM is one memfd mapping (MAP_NORESERVE, optionally on
 * hugetlbfs) split into regions around the PCI hole below 4 GiB.  Every
 * access from a device or loader goes through guest_memory_translate(),
 * which checks that [gpa, gpa+len) lies wholly inside one RAM region. */
#ifndef KITE_VMM_MEMORY_H
#define KITE_VMM_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* x86 layout: RAM below the 32-bit PCI/APIC hole, the rest above 4 GiB. */
#define GUEST_PCI_HOLE_START 0xC0000000ULL /* 3 GiB: start of MMIO hole */
#define GUEST_PCI_HOLE_END   0x100000000ULL

#define GUEST_MEMORY_MAX_REGIONS 4

struct guest_memory_region {
	uint64_t gpa;    /* guest-physical start */
	uint64_t size;   /* bytes */
	uint8_t *hva;    /* host mapping of the region */
};

struct guest_memory {
	int fd;                 /* memfd (or hugetlbfs file) backing all RAM */
	uint8_t *base;          /* host mapping of the whole backing file */
	uint64_t total;         /* bytes of RAM */
	unsigned nr_regions;
	struct guest_memory_region regions[GUEST_MEMORY_MAX_REGIONS];
};

/* Create RAM of |size| bytes laid out around the PCI hole.  |hugetlb_dir|
 * may be NULL; otherwise the backing file is created there.  Returns 0 or a
 * negative errno. */
int guest_memory_create(struct guest_memory *mem, uint64_t size,
			const char *hugetlb_dir);
void guest_memory_destroy(struct guest_memory *mem);

/* Translate [gpa, gpa+len) to a host pointer.  Fails with -EFAULT when the
 * range wraps, has len 0 beyond a region, crosses a region boundary or
 * touches a hole.  A zero-length range is valid when gpa is inside RAM or
 * at the end of a region. */
int guest_memory_translate(const struct guest_memory *mem, uint64_t gpa,
			   uint64_t len, void **hva);

/* Copy helpers built on translate; return 0 or -EFAULT. */
int guest_memory_read(const struct guest_memory *mem, uint64_t gpa,
		      void *buf, uint64_t len);
int guest_memory_write(const struct guest_memory *mem, uint64_t gpa,
		       const void *buf, uint64_t len);

/* True when the whole range is guest RAM. */
bool guest_memory_is_ram(const struct guest_memory *mem, uint64_t gpa,
			 uint64_t len);

#endif
