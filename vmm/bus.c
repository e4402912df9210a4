/* The I/O bus: sorted, non-overlapping ranges; lookup by binary search. */
#include "vmm/bus.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	return -pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
	bus->ranges = NULL;
	bus->nr = bus->cap = 0;
}

/* Last byte of a range; ranges never wrap (checked at registration). */
static uint64_t range_last(const struct bus_range *r)
{
	return r->base + (r->len - 1);
}

/* Index of the first range whose last byte is >= addr (nr if none). */
static unsigned lower_bound(const struct bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->nr;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (range_last(&bus->ranges[mid]) < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool overlaps(const struct bus *bus, uint64_t base, uint64_t len,
		     unsigned skip)
{
	uint64_t last = base + (len - 1);

	for (unsigned i = lower_bound(bus, base); i < bus->nr; i++) {
		if (i == skip)
			continue;
		if (bus->ranges[i].base > last)
			return false;
		return true;
	}
	return false;
}

static void insert_sorted(struct bus *bus, struct bus_range r)
{
	unsigned i = lower_bound(bus, r.base);

	memmove(&bus->ranges[i + 1], &bus->ranges[i],
		(bus->nr - i) * sizeof(*bus->ranges));
	bus->ranges[i] = r;
	bus->nr++;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 const struct bus_ops *ops, void *opaque, const char *name)
{
	int rc = 0;

	if (len == 0 || base + (len - 1) < base || !ops)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	if (overlaps(bus, base, len, (unsigned)-1)) {
		rc = -EEXIST;
		goto out;
	}
	if (bus->nr == bus->cap) {
		unsigned cap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *n = realloc(bus->ranges, cap * sizeof(*n));

		if (!n) {
			rc = -ENOMEM;
			goto out;
		}
		bus->ranges = n;
		bus->cap = cap;
	}
	insert_sorted(bus, (struct bus_range){ base, len, ops, opaque, name });
out:
	pthread_rwlock_unlock(&bus->lock);
	return rc;
}

static int find_exact(const struct bus *bus, uint64_t base)
{
	unsigned i = lower_bound(bus, base);

	if (i < bus->nr && bus->ranges[i].base == base)
		return (int)i;
	return -1;
}

static void remove_at(struct bus *bus, unsigned i)
{
	memmove(&bus->ranges[i], &bus->ranges[i + 1],
		(bus->nr - i - 1) * sizeof(*bus->ranges));
	bus->nr--;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	int i, rc = 0;

	pthread_rwlock_wrlock(&bus->lock);
	i = find_exact(bus, base);
	if (i < 0)
		rc = -ENOENT;
	else
		remove_at(bus, (unsigned)i);
	pthread_rwlock_unlock(&bus->lock);
	return rc;
}

int bus_move(struct bus *bus, uint64_t old_base, uint64_t new_base)
{
	struct bus_range r;
	int i, rc = 0;

	pthread_rwlock_wrlock(&bus->lock);
	i = find_exact(bus, old_base);
	if (i < 0) {
		rc = -ENOENT;
		goto out;
	}
	r = bus->ranges[i];
	if (new_base + (r.len - 1) < new_base) {
		rc = -EINVAL;
		goto out;
	}
	if (overlaps(bus, new_base, r.len, (unsigned)i)) {
		rc = -EEXIST;
		goto out;
	}
	remove_at(bus, (unsigned)i);
	r.base = new_base;
	insert_sorted(bus, r);
out:
	pthread_rwlock_unlock(&bus->lock);
	return rc;
}

/* Find the range holding the whole access; caller holds the read lock. */
static const struct bus_range *lookup(const struct bus *bus, uint64_t addr,
				      unsigned size)
{
	unsigned i = lower_bound(bus, addr);
	const struct bus_range *r;

	if (i >= bus->nr)
		return NULL;
	r = &bus->ranges[i];
	if (addr < r->base || addr + (size - 1) < addr ||
	    addr + (size - 1) > range_last(r))
		return NULL;
	return r;
}

static bool valid_size(unsigned size)
{
	return size == 1 || size == 2 || size == 4 || size == 8;
}

int bus_read(struct bus *bus, uint64_t addr, unsigned size, uint64_t *value)
{
	const struct bus_range *r;
	int rc = 0;

	if (!valid_size(size))
		return -EINVAL;
	*value = 0;
	pthread_rwlock_rdlock(&bus->lock);
	r = lookup(bus, addr, size);
	if (r && r->ops->read)
		r->ops->read(r->opaque, addr - r->base, size, value);
	else if (!r) {
		*value = size == 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
		rc = -ENOENT;
	}
	pthread_rwlock_unlock(&bus->lock);
	return rc;
}

int bus_write(struct bus *bus, uint64_t addr, unsigned size, uint64_t value)
{
	const struct bus_range *r;
	int rc = 0;

	if (!valid_size(size))
		return -EINVAL;
	if (size < 8)
		value &= (1ULL << (size * 8)) - 1;
	pthread_rwlock_rdlock(&bus->lock);
	r = lookup(bus, addr, size);
	if (r && r->ops->write)
		r->ops->write(r->opaque, addr - r->base, size, value);
	else if (!r)
		rc = -ENOENT;
	pthread_rwlock_unlock(&bus->lock);
	return rc;
}
