/* An in-process virtio *driver* for unit tests: it plays the guest on fake
 * guest RAM (a real struct guest_memory, no KVM), so the device model and
 * the transports can be driven exactly as a guest would.
 *
 *   struct vtd      fake RAM + a bump allocator + an interrupt recorder
 *                   that can stand in for a transport (vtd_attach()).
 *   struct vtd_vq   the driver side of one split or packed ring: add
 *                   buffers, decide whether to kick, collect used buffers.
 *
 * It has no Check dependency (it is built into the library with the
 * device model) and reports failures as negative errno / false. */
#ifndef KITE_TESTS_UNIT_VIRTIO_TEST_DRIVER_H
#define KITE_TESTS_UNIT_VIRTIO_TEST_DRIVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtio.h"
#include "vmm/memory.h"

#define VTD_RAM_SIZE (16ull << 20)
#define VTD_MAX_QUEUES 8

struct vtd {
	struct guest_memory mem;
	uint64_t next_free;             /* bump allocator (gpa) */
	struct virtio_device *dev;      /* when attached as the transport */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned queue_irqs[VIRTIO_MAX_QUEUES];
	uint16_t last_vector;
	unsigned config_irqs;
};

struct vtd_sg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct vtd_vq {
	struct vtd *drv;
	bool packed, event_idx;
	uint16_t size;
	uint64_t desc, driver, device;  /* area gpas */

	/* split */
	uint16_t avail_idx;             /* next avail idx the driver writes */
	uint16_t kicked_avail;          /* avail idx at the last kick check */
	uint16_t last_used;
	uint16_t *free_next;            /* host-side free list of descs */
	uint16_t free_head, num_free;
	uint16_t *chain_len;            /* per head / id: descs used */

	/* packed */
	uint16_t next_avail, next_used;
	bool avail_wrap, used_wrap;
	uint16_t kicked_next_avail;
	bool kicked_wrap;
	bool *id_busy;
};

/* Fake RAM of VTD_RAM_SIZE bytes; allocations start at 64 KiB. */
int vtd_init(struct vtd *drv);
void vtd_destroy(struct vtd *drv);
/* Zeroed guest memory; returns its gpa (0 when out of memory). */
uint64_t vtd_alloc(struct vtd *drv, uint64_t size, uint64_t align);
/* Host pointer for [gpa, gpa+len); NULL when not RAM. */
void *vtd_ptr(struct vtd *drv, uint64_t gpa, uint64_t len);

/* ---- standing in for a transport ("direct" transport) ---- */

/* Become dev's transport: interrupts are counted in drv. */
void vtd_attach(struct vtd *drv, struct virtio_device *dev);
/* Reset, ACKNOWLEDGE, DRIVER, write |features|, FEATURES_OK; returns 0
 * or -EINVAL when the device refused FEATURES_OK. */
int vtd_negotiate(struct vtd *drv, uint64_t features);
/* Give queue |qidx| the rings of |vq| and enable it. */
int vtd_setup_queue(struct vtd *drv, unsigned qidx, struct vtd_vq *vq);
int vtd_driver_ok(struct vtd *drv);
/* Kick queue |qidx| and wait until the queue thread handled it. */
void vtd_kick(struct vtd *drv, unsigned qidx);
unsigned vtd_queue_irqs(struct vtd *drv, unsigned qidx);
unsigned vtd_config_irqs(struct vtd *drv);
/* The transport callbacks, for transports-under-test that forward. */
extern const struct virtio_transport_ops vtd_transport_ops;

/* ---- rings ---- */

/* Allocate and zero the rings of a queue of |size| entries. */
int vtd_vq_init(struct vtd_vq *vq, struct vtd *drv, uint16_t size,
		bool packed, bool event_idx);
void vtd_vq_destroy(struct vtd_vq *vq);
/* Make one buffer of |n| elements available.  |indirect|: put the
 * elements in an indirect table.  Returns the id (split: head index;
 * packed: buffer id) or a negative errno (-ENOSPC when full). */
int vtd_vq_add(struct vtd_vq *vq, const struct vtd_sg *sg, unsigned n,
	       bool indirect);
/* After adds: does the device want a notification (§2.7.10, §2.8.10)?
 * Counts the buffers added since the previous check or mark. */
bool vtd_vq_should_kick(struct vtd_vq *vq);
/* The driver notified without asking (vtd_kick): the next
 * vtd_vq_should_kick() counts from here. */
void vtd_vq_mark_kicked(struct vtd_vq *vq);
/* Collect one used buffer: 1 (filling id and len), 0 when none. */
int vtd_vq_get_used(struct vtd_vq *vq, uint32_t *id, uint32_t *len);
/* Driver-side notification suppression: split flags / used_event, packed
 * driver event suppression. */
void vtd_vq_suppress_interrupts(struct vtd_vq *vq, bool suppress);
void vtd_vq_set_used_event(struct vtd_vq *vq, uint16_t used_event);
void vtd_vq_set_packed_event(struct vtd_vq *vq, uint16_t off, bool wrap);

/* Raw access for malformed-driver tests. */
struct virtq_desc *vtd_split_desc(struct vtd_vq *vq, uint16_t i);
/* Put |head| in the avail ring and bump idx (no validation). */
void vtd_split_publish(struct vtd_vq *vq, uint16_t head);
uint16_t vtd_split_used_idx(struct vtd_vq *vq);
uint16_t vtd_split_used_flags(struct vtd_vq *vq);
uint16_t vtd_split_avail_event(struct vtd_vq *vq);
struct pvirtq_desc *vtd_packed_desc(struct vtd_vq *vq, uint16_t i);
/* Flags value marking a packed descriptor available in the current lap. */
uint16_t vtd_packed_avail_flags(struct vtd_vq *vq);
uint16_t vtd_packed_device_event_flags(struct vtd_vq *vq);

/* ---- a loopback device to drive the core and transports ----
 * Copies each buffer's readable bytes into its writable part (or fills
 * the writable part with 0xEE when there is nothing to read) and returns
 * it.  Device feature bit 1 requires bit 0 (validate hook refuses bit 1
 * alone).  16 bytes of config: bytes 0-7 read-only, 8-15 writable. */
#define VTD_ECHO_F_BASE  0
#define VTD_ECHO_F_NEEDS 1
#define VTD_ECHO_CONFIG_SIZE 16
#define VTD_ECHO_MAX_DEFERRED 256

struct vtd_echo {
	struct virtio_device vdev;
	struct virtq_elem elem;
	uint8_t config[VTD_ECHO_CONFIG_SIZE];
	unsigned notifies, resets, activations, handled;
	int last_pop;                  /* last virtio_queue_pop() result */
	/* While set, queue_notify blocks until cleared (reset tests). */
	volatile int hold;
	volatile int in_notify;
	/* While |defer| is set, queue_notify keeps what it pops in flight
	 * (a device whose backend is slow), up to VTD_ECHO_MAX_DEFERRED
	 * buffers; vtd_echo_complete() returns them, in any order.  A reset
	 * drops them unreturned (§2.4). */
	volatile int defer;
	unsigned nr_deferred;          /* held now: deferred[0..nr) */
	unsigned deferred_peak;        /* most held at once */
	unsigned deferred_q[VTD_ECHO_MAX_DEFERRED];
	struct virtq_elem *deferred[VTD_ECHO_MAX_DEFERRED]; /* and spares */
};

int vtd_echo_init(struct vtd_echo *e, struct vtd *drv, unsigned nr_queues,
		  uint16_t queue_size);
void vtd_echo_destroy(struct vtd_echo *e);
/* Change config byte 0 the way a device would (bumps the generation). */
void vtd_echo_change_config(struct vtd_echo *e, uint8_t value);
/* Deferred mode: return held buffer |i| (< nr_deferred; 0 bytes
 * written) and notify the driver, under the device's lock.  Held buffers
 * are renumbered: the last one takes |i|'s place.  Returns the buffer's
 * id, or a negative errno (-ENOENT: no such buffer; a failed push). */
int vtd_echo_complete(struct vtd_echo *e, unsigned i);
/* Held buffers now, read under the device's lock. */
unsigned vtd_echo_nr_deferred(struct vtd_echo *e);

#endif
