/* The I/O bus: one instance for port I/O, one for MMIO.
 *
 * Devices register [base, base+len) ranges with read/write callbacks; vCPU
 * exits are dispatched through one lookup (binary search over a sorted
 * array under a read lock).  Ranges never overlap; registration of an
 * overlapping range fails with -EEXIST.  Ranges can move at run time (PCI
 * BAR reprogramming), which takes the write lock. */
#ifndef KITE_VMM_BUS_H
#define KITE_VMM_BUS_H

#include <pthread.h>
#include <stdint.h>

struct bus_ops {
	/* |offset| is relative to the range base; |size| is 1, 2, 4 or 8.
	 * A read fills *value (already zeroed); a write gets the value in the
	 * low |size| bytes. */
	void (*read)(void *opaque, uint64_t offset, unsigned size,
		     uint64_t *value);
	void (*write)(void *opaque, uint64_t offset, unsigned size,
		      uint64_t value);
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name;              /* "pio" or "mmio", for messages */
	pthread_rwlock_t lock;
	struct bus_range *ranges;      /* sorted by base */
	unsigned nr, cap;
};

int bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);

/* Register a range; -EINVAL for len 0 or wraparound, -EEXIST on overlap. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 const struct bus_ops *ops, void *opaque, const char *name);
/* Remove the range starting exactly at |base|; -ENOENT if none. */
int bus_unregister(struct bus *bus, uint64_t base);
/* Move the range at |old_base| to |new_base| atomically; -ENOENT, -EEXIST. */
int bus_move(struct bus *bus, uint64_t old_base, uint64_t new_base);

/* Dispatch an access.  Returns 0, or -ENOENT when no range covers the whole
 * access (reads then see all-ones, as on real hardware), or -EINVAL for a
 * bad size. */
int bus_read(struct bus *bus, uint64_t addr, unsigned size, uint64_t *value);
int bus_write(struct bus *bus, uint64_t addr, unsigned size, uint64_t value);

#endif
