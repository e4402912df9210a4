/* Virtqueues: the split ring (virtio 1.2 §2.7) and the packed ring (§2.8),
 * seen from the device side.
 *
 * A struct virtq holds what the transport configured (size, the three
 * area addresses, ready) and the device's private ring state.  The
 * functions here read descriptors the driver made available, turn each
 * chain into a list of host buffers, and write used elements back.
 *
 * Everything the driver writes is untrusted: every index, length, flag
 * and address is checked, and a rule the driver broke comes back as a
 * negative errno (never a crash, never an access outside guest RAM, never
 * an endless loop).  The queue then stays "broken" until it is reset; the
 * virtio core turns that into DEVICE_NEEDS_RESET (§2.1.2).
 *
 * Chains in flight (popped, not yet pushed) are tracked by head (split)
 * or Buffer ID (packed): a driver that makes one available again before
 * it was used, or more than the queue size of them at once, broke the
 * ring (§2.7.13, §2.8.21.1), so a device holds at most |size| requests
 * per queue whatever the driver does.  The bitmap behind it is allocated
 * by virtq_enable() and freed by virtq_reset(); pop and push stay O(1).
 *
 * Threading: a virtq is driven by one thread at a time (the device's
 * queue thread, see virtio.h).  Nothing here takes a lock.
 *
 * Rings are little-endian (§2.7, §2.8); legacy big-endian guests are not
 * supported (Kite's guests are x86). */
#ifndef KITE_VIRTIO_VIRTQ_H
#define KITE_VIRTIO_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

/* §2.7: the maximum queue size, for both ring formats. */
#define VIRTQ_MAX_SIZE 32768

/* A device MAY limit the number of descriptors in a chain (§2.7.4.1); Kite's
 * limit, counting the descriptors of an indirect table too. */
#define VIRTQ_MAX_BUFS 1024

/* Descriptor flags (§2.7.5, §2.8.6, §2.8.7, §2.8.1). */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_DESC_F_AVAIL    (1u << 7)
#define VIRTQ_DESC_F_USED     (1u << 15)

/* Split ring flags (§2.7.7, §2.7.10). */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

/* Packed ring event suppression (§2.8.10). */
#define RING_EVENT_FLAGS_ENABLE  0x0
#define RING_EVENT_FLAGS_DISABLE 0x1
#define RING_EVENT_FLAGS_DESC    0x2

/* Guest-visible layouts (all little-endian). */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct pvirtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t id;
	uint16_t flags;
};

struct pvirtq_event_suppress {
	uint16_t off_wrap; /* desc_event_off:15, desc_event_wrap:1 */
	uint16_t flags;    /* desc_event_flags:2 */
};

/* One guest buffer element, already translated to a host pointer. */
struct virtq_buf {
	void *addr;
	uint32_t len;
	bool writable;
};

/* One popped descriptor chain ("buffer" in the spec). */
struct virtq_elem {
	uint16_t id;          /* split: head index; packed: Buffer ID */
	uint16_t ndescs;      /* ring slots the chain used (packed skip count) */
	unsigned nbufs;       /* entries in bufs[]; readable ones come first */
	unsigned nreadable;
	uint64_t readable_len; /* total bytes of the device-readable part */
	uint64_t writable_len; /* total bytes of the device-writable part */
	bool seen_writable;    /* a writable descriptor came (even 0 bytes) */
	struct virtq_buf bufs[VIRTQ_MAX_BUFS];
};

struct virtq {
	/* ---- configured by the transport while !ready ---- */
	uint16_t max_size;     /* what the device offers (QueueNumMax) */
	uint16_t size;         /* what the driver chose */
	uint64_t desc_addr;    /* Descriptor Area */
	uint64_t driver_addr;  /* Driver Area: avail ring / driver event suppr. */
	uint64_t device_addr;  /* Device Area: used ring / device event suppr. */
	uint16_t vector;       /* interrupt vector (PCI MSI-X); transport-owned */

	/* ---- set by virtq_enable() ---- */
	bool ready;
	bool packed;           /* VIRTIO_F_RING_PACKED negotiated */
	bool event_idx;        /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;         /* VIRTIO_F_INDIRECT_DESC negotiated */
	bool broken;           /* the driver broke a ring rule; see above */
	const struct guest_memory *mem;

	/* Host views of the ring areas (valid while ready). */
	void *desc;
	void *driver;
	void *device;

	/* ---- device ring state ---- */
	uint16_t last_avail;      /* split: next avail idx; packed: next slot */
	uint16_t used_idx;        /* split: used->idx shadow; packed: next slot */
	bool avail_wrap;          /* packed: Driver Ring Wrap Counter we expect */
	bool used_wrap;           /* packed: Device Ring Wrap Counter */
	uint16_t signalled_used;  /* split: used idx at the last notify check */
	uint32_t used_since_check;/* packed: slots used since the last check */
	bool signalled_valid;
	bool notify_off;          /* virtq_set_notification(q, false) */
	uint64_t nr_used;         /* chains returned (virtq_push) since the
				   * last reset: the device's loop watches it */

	/* ---- chains in flight (see above) ---- */
	uint64_t *inflight;       /* bit per head / Buffer ID: popped, not
				   * pushed; allocated by virtq_enable() */
	uint32_t inflight_words;  /* capacity of |inflight| in 64-bit words */
	uint32_t nr_inflight;     /* chains in flight now (<= size) */
	uint32_t inflight_peak;   /* most at once since virtq_enable(), for
				   * tests and statistics */
};

/* Reset the device-side state and forget the configuration (size becomes
 * max_size, addresses 0, not ready, nothing in flight; frees what
 * virtq_enable() allocated).  max_size and vector survive.  A struct
 * virtq must be zeroed (or reset) before its first use. */
void virtq_reset(struct virtq *q);

/* Validate the configuration and start using the rings, with nothing in
 * flight: -EINVAL for a bad size (§2.7: power of 2 for split; §2.8: any
 * size up to max for packed) or a misaligned area, -EFAULT when an area
 * is not guest RAM, -ENOMEM when the in-flight bitmap cannot be had
 * (split: size bits; packed: 2^16, one per Buffer ID).  The feature flags
 * come from the negotiated features. */
int virtq_enable(struct virtq *q, const struct guest_memory *mem,
		 bool packed, bool event_idx, bool indirect);

/* Pop the next available chain into *elem.  Returns 1 when one was
 * popped, 0 when the ring is empty, or a negative errno when the driver
 * broke a rule (the queue is then broken: every later call fails too):
 *   -EFAULT  address/length outside guest RAM
 *   -EINVAL  bad index, flag combination, indirect table size, readable
 *            after writable, avail idx ran ahead by more than the size
 *   -ELOOP   chain longer than the queue (a loop)
 *   -E2BIG   more than VIRTQ_MAX_BUFS elements, or more than 2^32-1 bytes
 *   -EBUSY   the head (Buffer ID) is already in flight
 *   -EOVERFLOW  a chain is available while |size| chains are in flight
 *   -EIO     the queue is already broken */
int virtq_pop(struct virtq *q, struct virtq_elem *elem);

/* Return a chain to the driver with |written| bytes written into its
 * device-writable part.  The length is clamped to what the chain could
 * hold.  Used ring entries are published with release ordering.
 * -EINVAL, the ring untouched, when the chain is not in flight (a device
 * bug: pushed twice, or popped before a reset) or the queue not ready. */
int virtq_push(struct virtq *q, const struct virtq_elem *elem,
	       uint32_t written);

/* After one or more virtq_push(): must the driver be notified?  Applies
 * the split ring flags/used_event rules (§2.7.7) or the packed ring
 * driver event suppression (§2.8.10).  Resets the "since last check"
 * state, so call it once per batch. */
bool virtq_should_notify(struct virtq *q);

/* Ask the driver for (enable) or not for (disable) available buffer
 * notifications (§2.7.10, §2.8.10).  With EVENT_IDX on a split ring,
 * enabling sets avail_event to the next index we will read, and while
 * disabled virtq_pop() leaves avail_event where it was (so the driver,
 * whose new buffers are past it, does not notify).  Returns true when
 * buffers became available meanwhile (re-check after enabling). */
bool virtq_set_notification(struct virtq *q, bool enable);

/* True when at least one chain is available (no validation). */
bool virtq_has_avail(struct virtq *q);

/* Copy helpers over an element's buffers.  Return bytes copied. */
size_t virtq_elem_read(const struct virtq_elem *elem, size_t offset,
		       void *dst, size_t len);
size_t virtq_elem_write(const struct virtq_elem *elem, size_t offset,
			const void *src, size_t len);

/* Ring area sizes in bytes (§2.7, §2.8.10.1), for drivers and transports. */
uint64_t virtq_desc_area_size(uint16_t size, bool packed);
uint64_t virtq_driver_area_size(uint16_t size, bool packed);
uint64_t virtq_device_area_size(uint16_t size, bool packed);

/* §2.7.7.2 / §2.7.10: the EVENT_IDX test, in 16-bit free-running indexes:
 * did [old, new) step over event? */
static inline bool virtq_need_event(uint16_t event, uint16_t new_idx,
				    uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

#endif
