/* The x86 memory map ("e820") handed to a guest kernel.
 *
 * Both boot protocols that describe memory to the guest use it: Linux
 * boot_params.e820_table (and PVH's hvm_memmap_table) and the multiboot
 * memory map.  The map is derived from struct guest_memory so that it can
 * never promise RAM that is not backed. */
#ifndef KITE_ARCH_X86_E820_H
#define KITE_ARCH_X86_E820_H

#include <stdint.h>

#include "vmm/memory.h"

#define E820_TYPE_RAM      1
#define E820_TYPE_RESERVED 2
#define E820_TYPE_ACPI     3
#define E820_TYPE_NVS      4

/* The legacy EBDA + VGA + option-ROM + BIOS window below 1 MiB: never RAM
 * for the guest, whatever backs it. */
#define E820_LOW_RESERVED_START 0x0009FC00ULL
#define E820_LOW_RESERVED_END   0x00100000ULL

/* Most entries e820_from_guest_memory() can produce: per RAM region up to
 * two RAM pieces, plus the one reserved window. */
#define E820_MAX_FROM_MEMORY (2 * GUEST_MEMORY_MAX_REGIONS + 1)

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/* Fill |map| (room for |max| entries) with the guest's RAM regions, type
 * E820_TYPE_RAM, minus [E820_LOW_RESERVED_START, E820_LOW_RESERVED_END),
 * which is listed as E820_TYPE_RESERVED.  Entries are sorted by address and
 * do not overlap.  Returns 0 and sets *nr, or -ENOSPC if |max| is too
 * small, or -EINVAL for a memory without RAM. */
int e820_from_guest_memory(const struct guest_memory *mem,
			   struct e820_entry *map, unsigned max, unsigned *nr);

/* Insert [addr, addr + size) as E820_TYPE_RESERVED into the sorted |map|
 * of *nr entries (room for |max|), keeping it sorted.  Used for MMIO
 * windows the guest must see as reserved, such as the PCI ECAM window:
 * Linux only uses MMCONFIG when the e820 map reserves it.  Returns 0,
 * -ENOSPC when the map is full, or -EINVAL for an empty range or one that
 * overlaps an entry already in the map. */
int e820_insert_reserved(struct e820_entry *map, unsigned max, unsigned *nr,
			 uint64_t addr, uint64_t size);

/* The highest page-aligned start of |size| bytes inside one RAM entry of
 * |map|, within [low, limit) (e.g. where a boot loader puts the initrd).
 * Returns 0 with *gpa set, or -E2BIG when no RAM entry has the room. */
int e820_place_high(const struct e820_entry *map, unsigned nr, uint64_t size,
		    uint64_t low, uint64_t limit, uint64_t *gpa);

#endif
