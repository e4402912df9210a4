/* The x86 memory map derived from guest RAM (see e820.h). */
#include "arch/x86/e820.h"

#include <errno.h>
#include <string.h>

static int e820_append(struct e820_entry *map, unsigned max, unsigned *nr,
		       uint64_t start, uint64_t end, uint32_t type)
{
	if (end <= start)
		return 0;
	if (*nr >= max)
		return -ENOSPC;
	map[*nr] = (struct e820_entry){ start, end - start, type };
	(*nr)++;
	return 0;
}

int e820_from_guest_memory(const struct guest_memory *mem,
			   struct e820_entry *map, unsigned max, unsigned *nr)
{
	bool window_listed = false;
	unsigned n = 0;
	int rc;

	if (mem->nr_regions == 0)
		return -EINVAL;
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t start = mem->regions[i].gpa;
		uint64_t end = start + mem->regions[i].size;

		if (end <= E820_LOW_RESERVED_START ||
		    start >= E820_LOW_RESERVED_END) {
			/* A region after the window still needs the window
			 * listed first, to keep the map sorted. */
			if (!window_listed && start >= E820_LOW_RESERVED_END) {
				rc = e820_append(map, max, &n,
						 E820_LOW_RESERVED_START,
						 E820_LOW_RESERVED_END,
						 E820_TYPE_RESERVED);
				if (rc)
					return rc;
				window_listed = true;
			}
			rc = e820_append(map, max, &n, start, end, E820_TYPE_RAM);
			if (rc)
				return rc;
			continue;
		}
		/* The region overlaps the window: RAM below, window, RAM above. */
		rc = e820_append(map, max, &n, start, E820_LOW_RESERVED_START,
				 E820_TYPE_RAM);
		if (!rc && !window_listed)
			rc = e820_append(map, max, &n, E820_LOW_RESERVED_START,
					 E820_LOW_RESERVED_END,
					 E820_TYPE_RESERVED);
		window_listed = true;
		if (!rc)
			rc = e820_append(map, max, &n, E820_LOW_RESERVED_END, end,
					 E820_TYPE_RAM);
		if (rc)
			return rc;
	}
	*nr = n;
	return 0;
}

int e820_insert_reserved(struct e820_entry *map, unsigned max, unsigned *nr,
			 uint64_t addr, uint64_t size)
{
	unsigned at = 0;

	if (size == 0 || addr + size < addr)
		return -EINVAL;
	for (unsigned i = 0; i < *nr; i++) {
		if (addr < map[i].addr + map[i].size &&
		    map[i].addr < addr + size)
			return -EINVAL;
		if (map[i].addr < addr)
			at = i + 1;
	}
	if (*nr >= max)
		return -ENOSPC;
	memmove(&map[at + 1], &map[at], (*nr - at) * sizeof(map[0]));
	map[at] = (struct e820_entry){ addr, size, E820_TYPE_RESERVED };
	(*nr)++;
	return 0;
}

int e820_place_high(const struct e820_entry *map, unsigned nr, uint64_t size,
		    uint64_t low, uint64_t limit, uint64_t *gpa)
{
	uint64_t best = 0;
	bool found = false;

	for (unsigned i = 0; i < nr; i++) {
		uint64_t a = map[i].addr, b = map[i].addr + map[i].size, start;

		if (map[i].type != E820_TYPE_RAM)
			continue;
		if (b > limit)
			b = limit;
		if (a < low)
			a = low;
		if (b <= a || b - a < size)
			continue;
		start = (b - size) & ~(uint64_t)(4096 - 1) /* page aligned */;
		if (start < a)
			continue;
		if (!found || start > best) {
			best = start;
			found = true;
		}
	}
	if (!found)
		return -E2BIG;
	*gpa = best;
	return 0;
}
