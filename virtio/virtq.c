/* Split (virtio 1.2 §2.7) and packed (§2.8) virtqueues, device side.
 * See virtq.h for the contract.  Every descriptor is copied out of guest
 * memory once before it is checked and used, so a driver rewriting the
 * ring under our feet cannot make us act on unchecked values. */
#include "virtio/virtq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Guest memory is shared with vCPUs running on other host CPUs: ring
 * fields the driver publishes are read with acquire ordering, the ones we
 * publish are written with release ordering (§2.7.13, §2.8.21). */
static inline uint16_t load_acquire16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static inline uint16_t load16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

static inline void store_release16(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}

static inline void store16(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}

static inline void full_barrier(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- split ring layout helpers (§2.7) ---- */
#define AVAIL_FLAGS(q) ((uint8_t *)(q)->driver + 0)
#define AVAIL_IDX(q) ((uint8_t *)(q)->driver + 2)
#define AVAIL_RING(q, i) ((uint8_t *)(q)->driver + 4 + 2 * (size_t)(i))
#define USED_EVENT(q) AVAIL_RING(q, (q)->size)
#define USED_FLAGS(q) ((uint8_t *)(q)->device + 0)
#define USED_IDX(q) ((uint8_t *)(q)->device + 2)
#define USED_RING(q, i) ((uint8_t *)(q)->device + 4 + 8 * (size_t)(i))
#define AVAIL_EVENT(q) USED_RING(q, (q)->size)

uint64_t virtq_desc_area_size(uint16_t size, bool packed)
{
	(void)packed;
	return 16ull * size;
}

uint64_t virtq_driver_area_size(uint16_t size, bool packed)
{
	return packed ? 4 : 6 + 2ull * size;
}

uint64_t virtq_device_area_size(uint16_t size, bool packed)
{
	return packed ? 4 : 6 + 8ull * size;
}

void virtq_reset(struct virtq *q)
{
	uint16_t max = q->max_size, vector = q->vector;

	free(q->inflight);
	memset(q, 0, sizeof(*q));
	q->max_size = max;
	q->size = max;
	q->vector = vector;
	q->avail_wrap = true;
	q->used_wrap = true;
}

/* ---- chains in flight ----
 * One bit per head (split) or Buffer ID (packed), set by pop and cleared
 * by push: O(1) both ways, nothing allocated after virtq_enable(). */

static int inflight_init(struct virtq *q, bool packed)
{
	/* Split: heads are below the queue size.  Packed: the driver picks
	 * Buffer IDs, any 16-bit value (§2.8.13), so all of them: 8 KiB. */
	uint32_t words = packed ? 65536 / 64 : ((uint32_t)q->size + 63) / 64;

	if (q->inflight_words < words) {
		uint64_t *map = calloc(words, sizeof(*map));

		if (!map)
			return -ENOMEM;
		free(q->inflight);
		q->inflight = map;
		q->inflight_words = words;
	} else {
		memset(q->inflight, 0, q->inflight_words * sizeof(*q->inflight));
	}
	q->nr_inflight = 0;
	q->inflight_peak = 0;
	return 0;
}

static inline bool inflight_test(const struct virtq *q, uint16_t id)
{
	return id / 64u < q->inflight_words &&
	       (q->inflight[id / 64] >> (id % 64) & 1);
}

static inline void inflight_add(struct virtq *q, uint16_t id)
{
	q->inflight[id / 64] |= 1ull << (id % 64);
	if (++q->nr_inflight > q->inflight_peak)
		q->inflight_peak = q->nr_inflight;
}

static inline void inflight_del(struct virtq *q, uint16_t id)
{
	q->inflight[id / 64] &= ~(1ull << (id % 64));
	q->nr_inflight--;
}

static int map_area(const struct guest_memory *mem, uint64_t gpa,
		    uint64_t len, uint64_t align, void **hva)
{
	if (gpa & (align - 1))
		return -EINVAL;
	return guest_memory_translate(mem, gpa, len, hva);
}

int virtq_enable(struct virtq *q, const struct guest_memory *mem,
		 bool packed, bool event_idx, bool indirect)
{
	int err;

	if (q->size == 0 || q->size > q->max_size || q->size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	/* §2.7: "Queue Size value is always a power of 2" for split rings;
	 * §2.8.10.1: packed rings need not be. */
	if (!packed && (q->size & (q->size - 1)))
		return -EINVAL;

	/* §2.7 / §2.8.10.1 alignment table. */
	err = map_area(mem, q->desc_addr, virtq_desc_area_size(q->size, packed),
		       16, &q->desc);
	if (!err)
		err = map_area(mem, q->driver_addr,
			       virtq_driver_area_size(q->size, packed),
			       packed ? 4 : 2, &q->driver);
	if (!err)
		err = map_area(mem, q->device_addr,
			       virtq_device_area_size(q->size, packed), 4,
			       &q->device);
	if (!err)
		err = inflight_init(q, packed);
	if (err) {
		q->desc = q->driver = q->device = NULL;
		return err;
	}

	q->mem = mem;
	q->packed = packed;
	q->event_idx = event_idx;
	q->indirect = indirect;
	q->broken = false;
	q->last_avail = 0;
	q->used_idx = 0;
	q->avail_wrap = true; /* §2.8.1: wrap counters start at 1 */
	q->used_wrap = true;
	q->signalled_used = 0;
	q->used_since_check = 0;
	q->ready = true;

	/* Ask for notifications from the start (§2.7.10.2: flags 0;
	 * §2.8.10: RING_EVENT_FLAGS_ENABLE). */
	if (packed) {
		struct pvirtq_event_suppress *dev = q->device;
		store16(&dev->flags, RING_EVENT_FLAGS_ENABLE);
	} else {
		store16(USED_FLAGS(q), 0);
		if (event_idx)
			store16(AVAIL_EVENT(q), 0);
	}
	return 0;
}

static int fail(struct virtq *q, int err)
{
	q->broken = true;
	return err;
}

static void elem_init(struct virtq_elem *elem)
{
	elem->id = 0;
	elem->ndescs = 0;
	elem->nbufs = 0;
	elem->nreadable = 0;
	elem->readable_len = 0;
	elem->writable_len = 0;
	elem->seen_writable = false;
}

/* Add one element; enforces §2.7.4.2 / §2.8.17 "device-writable elements
 * after device-readable ones", the 2^32 total (§2.7.5.2) and our chain
 * limit. */
static int elem_add(const struct virtq *q, struct virtq_elem *elem,
		    uint64_t gpa, uint32_t len, bool writable)
{
	void *hva = NULL;
	int err;

	if (!writable && elem->seen_writable)
		return -EINVAL;
	if (writable)
		elem->seen_writable = true;
	if (elem->readable_len + elem->writable_len + len > UINT32_MAX)
		return -E2BIG;
	if (len == 0)
		return 0; /* nothing to transfer; not an error */
	if (elem->nbufs >= VIRTQ_MAX_BUFS)
		return -E2BIG;
	err = guest_memory_translate(q->mem, gpa, len, &hva);
	if (err)
		return err;
	elem->bufs[elem->nbufs].addr = hva;
	elem->bufs[elem->nbufs].len = len;
	elem->bufs[elem->nbufs].writable = writable;
	elem->nbufs++;
	if (writable) {
		elem->writable_len += len;
	} else {
		elem->nreadable++;
		elem->readable_len += len;
	}
	return 0;
}

/* Map an indirect table: non-empty, a whole number of 16-byte
 * descriptors, within our chain limit, inside RAM (§2.7.5.3, §2.8.7). */
static int map_indirect(const struct virtq *q, uint64_t gpa, uint32_t len,
			void **table, unsigned *n)
{
	if (len == 0 || len % 16)
		return -EINVAL;
	if (len / 16 > VIRTQ_MAX_BUFS)
		return -E2BIG;
	*n = len / 16;
	return guest_memory_translate(q->mem, gpa, len, table);
}

/* ---- split ring (§2.7) ---- */

static int split_walk(struct virtq *q, uint16_t head, struct virtq_elem *elem)
{
	const struct virtq_desc *table = q->desc;
	unsigned table_n = q->size, seen = 0, idx = head;
	bool in_indirect = false;
	int err;

	for (;;) {
		struct virtq_desc d;

		/* More descriptors than the table holds can only be a loop
		 * (§2.7.5.2: loops are forbidden). */
		if (++seen > table_n)
			return -ELOOP;
		memcpy(&d, &table[idx], sizeof(d));

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			void *t;
			unsigned n;

			/* §2.7.5.3.1: only when negotiated, never nested,
			 * never together with NEXT. */
			if (!q->indirect || in_indirect ||
			    (d.flags & VIRTQ_DESC_F_NEXT))
				return -EINVAL;
			err = map_indirect(q, d.addr, d.len, &t, &n);
			if (err)
				return err;
			/* §2.7.5.3.2: the WRITE flag of this descriptor is
			 * ignored; the chain continues at entry 0. */
			table = t;
			table_n = n;
			idx = 0;
			seen = 0;
			in_indirect = true;
			continue;
		}

		err = elem_add(q, elem, d.addr, d.len,
			       d.flags & VIRTQ_DESC_F_WRITE);
		if (err)
			return err;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= table_n)
			return -EINVAL;
		idx = d.next;
	}
}

static int split_pop(struct virtq *q, struct virtq_elem *elem)
{
	uint16_t avail_idx, head;
	int err;

	avail_idx = load_acquire16(AVAIL_IDX(q));
	if (avail_idx == q->last_avail) {
		/* Notifications off: avail_event stays behind, so the
		 * driver does not kick (the device is polling). */
		if (!q->event_idx || q->notify_off)
			return 0;
		/* Publish where we stopped, then look again: the driver may
		 * have added a buffer after reading the old avail_event and
		 * skipped the notification (§2.7.10). */
		store16(AVAIL_EVENT(q), q->last_avail);
		full_barrier();
		avail_idx = load_acquire16(AVAIL_IDX(q));
		if (avail_idx == q->last_avail)
			return 0;
	}
	/* §2.7.6: the driver cannot expose more than size chains at once. */
	if ((uint16_t)(avail_idx - q->last_avail) > q->size)
		return -EINVAL;
	/* Nor have more in flight (the head check below implies it; this
	 * keeps the bound explicit). */
	if (q->nr_inflight >= q->size)
		return -EOVERFLOW;

	head = load16(AVAIL_RING(q, q->last_avail % q->size));
	if (head >= q->size)
		return -EINVAL;
	/* §2.7.13: the driver places a buffer in *free* descriptors; a head
	 * the device has not used yet is not free.  Taking it again would
	 * let one chain stand for any number of requests. */
	if (inflight_test(q, head))
		return -EBUSY;

	elem_init(elem);
	err = split_walk(q, head, elem);
	if (err)
		return err;
	elem->id = head;
	elem->ndescs = 1;
	inflight_add(q, head);
	q->last_avail++;
	if (q->event_idx && !q->notify_off)
		store16(AVAIL_EVENT(q), q->last_avail);
	return 1;
}

static int split_push(struct virtq *q, const struct virtq_elem *elem,
		      uint32_t written)
{
	struct virtq_used_elem u = { .id = elem->id, .len = written };

	if (elem->id >= q->size)
		return -EINVAL;
	/* §2.7.8.2: len (and the data) before the used idx update. */
	memcpy(USED_RING(q, q->used_idx % q->size), &u, sizeof(u));
	q->used_idx++;
	store_release16(USED_IDX(q), q->used_idx);
	return 0;
}

static bool split_should_notify(struct virtq *q)
{
	uint16_t old = q->signalled_used, new_idx = q->used_idx;

	/* Our used idx store must be visible before we read the driver's
	 * suppression fields, or we could miss a wanted notification. */
	full_barrier();
	q->signalled_used = new_idx;
	if (old == new_idx)
		return false;
	if (q->event_idx) /* §2.7.7.2: ignore flags, honour used_event */
		return virtq_need_event(load16(USED_EVENT(q)), new_idx, old);
	/* §2.7.7.2: flags 0 → MUST notify; 1 → SHOULD NOT. */
	return !(load16(AVAIL_FLAGS(q)) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

/* ---- packed ring (§2.8) ---- */

static bool packed_desc_is_avail(uint16_t flags, bool wrap)
{
	bool avail = flags & VIRTQ_DESC_F_AVAIL, used = flags & VIRTQ_DESC_F_USED;

	/* §2.8.1: available when AVAIL matches the driver's wrap counter
	 * and USED does not. */
	return avail == wrap && used != wrap;
}

static int packed_pop(struct virtq *q, struct virtq_elem *elem)
{
	struct pvirtq_desc *ring = q->desc;
	unsigned slot = q->last_avail, count = 0;
	bool wrap = q->avail_wrap;
	uint16_t flags, id;
	int err;

	/* §2.8.15: use a descriptor only once its AVAIL bit changed. */
	flags = load_acquire16(&ring[slot].flags);
	if (!packed_desc_is_avail(flags, wrap))
		return 0;
	/* §2.8: with the ring full of its buffers the driver waits for used
	 * ones, so never more than size are in flight. */
	if (q->nr_inflight >= q->size)
		return -EOVERFLOW;

	elem_init(elem);
	for (;;) {
		struct pvirtq_desc d;

		/* §2.8.17: a list is never longer than the queue. */
		if (count >= q->size)
			return -ELOOP;
		memcpy(&d, &ring[slot], sizeof(d));
		if (count == 0)
			d.flags = flags;
		else if (!packed_desc_is_avail(d.flags, wrap))
			return -EINVAL; /* §2.8.6: all of a list is available */
		count++;
		if (++slot == q->size) {
			slot = 0;
			wrap = !wrap;
		}

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			struct pvirtq_desc *t;
			unsigned n, i;

			/* §2.8.19: only when negotiated, not inside a list
			 * linked by NEXT. */
			if (!q->indirect || (d.flags & VIRTQ_DESC_F_NEXT) ||
			    count > 1)
				return -EINVAL;
			err = map_indirect(q, d.addr, d.len, (void **)&t, &n);
			if (err)
				return err;
			/* §2.8.7: entries follow each other; WRITE is the only
			 * valid flag, ids and other flags are ignored. */
			for (i = 0; i < n; i++) {
				struct pvirtq_desc e;

				memcpy(&e, &t[i], sizeof(e));
				err = elem_add(q, elem, e.addr, e.len,
					       e.flags & VIRTQ_DESC_F_WRITE);
				if (err)
					return err;
			}
			id = d.id;
			break;
		}

		err = elem_add(q, elem, d.addr, d.len,
			       d.flags & VIRTQ_DESC_F_WRITE);
		if (err)
			return err;
		if (!(d.flags & VIRTQ_DESC_F_NEXT)) {
			id = d.id; /* §2.8.6: Buffer ID is in the last one */
			break;
		}
	}

	/* §2.8.21.1: each buffer gets a *free* Buffer ID; one still in
	 * flight is not. */
	if (inflight_test(q, id))
		return -EBUSY;
	elem->id = id;
	elem->ndescs = count;
	inflight_add(q, id);
	q->last_avail = slot;
	q->avail_wrap = wrap;
	return 1;
}

static int packed_push(struct virtq *q, const struct virtq_elem *elem,
		       uint32_t written)
{
	struct pvirtq_desc *d = &((struct pvirtq_desc *)q->desc)[q->used_idx];
	uint16_t flags = 0;
	unsigned next;

	if (elem->ndescs == 0 || elem->ndescs > q->size)
		return -EINVAL;
	if (written)
		flags |= VIRTQ_DESC_F_WRITE; /* §2.8.3 */
	if (q->used_wrap)
		flags |= VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
	d->id = elem->id;
	d->len = written;
	/* Publishing USED last hands the descriptor back; we never touch it
	 * again (§2.8.15). */
	store_release16(&d->flags, flags);

	next = q->used_idx + elem->ndescs;
	if (next >= q->size) {
		next -= q->size;
		q->used_wrap = !q->used_wrap;
	}
	q->used_idx = next;
	q->used_since_check += elem->ndescs;
	return 0;
}

static bool packed_should_notify(struct virtq *q)
{
	struct pvirtq_event_suppress *drv = q->driver;
	uint32_t used = q->used_since_check;
	uint16_t flags, off_wrap, event, old;

	full_barrier();
	q->used_since_check = 0;
	if (used == 0)
		return false;
	flags = load16(&drv->flags) & 3;
	if (flags == RING_EVENT_FLAGS_DISABLE)
		return false;
	if (flags != RING_EVENT_FLAGS_DESC || !q->event_idx)
		return true; /* ENABLE; reserved values treated the same */
	if (used >= q->size)
		return true; /* the whole ring went by: the event did too */

	/* §2.8.10: notify when the descriptor at (off, wrap) was used in
	 * this batch.  Positions of the previous lap count as -size. */
	off_wrap = load16(&drv->off_wrap);
	event = off_wrap & 0x7fff;
	if ((bool)(off_wrap >> 15) != q->used_wrap)
		event -= q->size;
	old = (uint16_t)(q->used_idx - used);
	return virtq_need_event(event, q->used_idx, old);
}

/* ---- common entry points ---- */

int virtq_pop(struct virtq *q, struct virtq_elem *elem)
{
	int ret;

	if (!q->ready)
		return 0;
	if (q->broken)
		return -EIO;
	ret = q->packed ? packed_pop(q, elem) : split_pop(q, elem);
	return ret < 0 ? fail(q, ret) : ret;
}

int virtq_push(struct virtq *q, const struct virtq_elem *elem,
	       uint32_t written)
{
	int ret;

	if (!q->ready)
		return -EINVAL;
	/* Only a chain in flight goes back: returning one twice (a device
	 * bug) would hand the driver a head it may already have reused. */
	if (!inflight_test(q, elem->id))
		return -EINVAL;
	if (written > elem->writable_len)
		written = (uint32_t)elem->writable_len;
	ret = q->packed ? packed_push(q, elem, written)
			: split_push(q, elem, written);
	if (ret == 0) {
		inflight_del(q, elem->id);
		q->nr_used++;
	}
	return ret;
}

bool virtq_should_notify(struct virtq *q)
{
	if (!q->ready)
		return false;
	return q->packed ? packed_should_notify(q) : split_should_notify(q);
}

bool virtq_has_avail(struct virtq *q)
{
	if (!q->ready || q->broken)
		return false;
	if (q->packed) {
		struct pvirtq_desc *ring = q->desc;
		return packed_desc_is_avail(
			load_acquire16(&ring[q->last_avail].flags),
			q->avail_wrap);
	}
	return load_acquire16(AVAIL_IDX(q)) != q->last_avail;
}

bool virtq_set_notification(struct virtq *q, bool enable)
{
	if (!q->ready)
		return false;
	q->notify_off = !enable;
	if (q->packed) {
		struct pvirtq_event_suppress *dev = q->device;
		store16(&dev->flags, enable ? RING_EVENT_FLAGS_ENABLE
					    : RING_EVENT_FLAGS_DISABLE);
	} else if (q->event_idx) {
		/* §2.7.10.2: with EVENT_IDX flags stay 0.  The driver
		 * notifies when its new avail idx passes avail_event
		 * (§2.7.10.1), so one just behind where we read makes every
		 * buffer it adds now silent. */
		store16(AVAIL_EVENT(q), enable ? q->last_avail
					       : (uint16_t)(q->last_avail - 1));
	} else {
		store16(USED_FLAGS(q), enable ? 0 : VIRTQ_USED_F_NO_NOTIFY);
	}
	full_barrier();
	return enable && virtq_has_avail(q);
}

size_t virtq_elem_read(const struct virtq_elem *elem, size_t offset,
		       void *dst, size_t len)
{
	size_t done = 0;
	unsigned i;

	for (i = 0; i < elem->nreadable && done < len; i++) {
		const struct virtq_buf *b = &elem->bufs[i];
		size_t n;

		if (offset >= b->len) {
			offset -= b->len;
			continue;
		}
		n = b->len - offset;
		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)dst + done, (uint8_t *)b->addr + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}

size_t virtq_elem_write(const struct virtq_elem *elem, size_t offset,
			const void *src, size_t len)
{
	size_t done = 0;
	unsigned i;

	for (i = elem->nreadable; i < elem->nbufs && done < len; i++) {
		const struct virtq_buf *b = &elem->bufs[i];
		size_t n;

		if (offset >= b->len) {
			offset -= b->len;
			continue;
		}
		n = b->len - offset;
		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)b->addr + offset, (const uint8_t *)src + done,
		       n);
		done += n;
		offset = 0;
	}
	return done;
}
