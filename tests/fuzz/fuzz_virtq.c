/* libFuzzer target: the split and packed ring walk (virtio/virtq.c) on
 * fake guest memory, driven by a hostile driver.
 *
 * Input: a 3-byte header { u8 features; u16 size } (little-endian);
 * with F_AREAS, three u32 guest addresses for the descriptor, driver and
 * device areas (else fixed, sized for the largest ring); then
 * operations (see the op_kind comments): a driver model that adds chains
 * the way a driver would (descriptors, then the avail ring or the packed
 * AVAIL/USED flags), raw writes of descriptors, indices and any guest
 * memory (indirect tables, rings rewritten under the device's feet), and
 * the device's side: pop, push, notification checks, reset.
 *
 * Invariants (a break is __builtin_trap() with a message):
 * - an enabled ring's areas are guest RAM;
 * - every buffer of a popped chain lies inside guest RAM;
 * - a chain has at most VIRTQ_MAX_BUFS buffers and 2^32-1 bytes, the
 *   readable ones first, lengths adding up, ndescs within the ring;
 * - a split ring's head is below the queue size;
 * - the walk terminates (libFuzzer's -timeout) and a queue that failed
 *   stays failed;
 * - a head (Buffer ID) is not handed out again while it is in flight,
 *   and no more than the queue size of chains are in flight.  Those are
 *   virtq.c's to enforce (issue 14, finding 4): a probe at start-up tells
 *   whether virtq_pop refuses a head in flight; if it does not, a repeat
 *   is reported once on stderr and not trapped. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/virtq.h"
#include "vmm/memory.h"

#define GUEST_RAM   (4ull << 20)
/* Ring areas sized for VIRTQ_MAX_SIZE, data above them. */
#define DESC_GPA    0x010000ull   /* 16 * 32768 = 512 KiB */
#define DRIVER_GPA  0x090000ull   /* split: 6 + 2 * 32768 */
#define DEVICE_GPA  0x0b0000ull   /* split: 6 + 8 * 32768 */
#define DATA_GPA    0x100000ull
#define POPS_MAX    4096          /* per input */

/* Header byte 0. */
#define F_PACKED    0x01
#define F_EVENT_IDX 0x02
#define F_INDIRECT  0x04
#define F_AREAS     0x08  /* ring areas where the input says */

enum op_kind {
	OP_ADD,       /* u8 n; n x { u32 addr; u32 len; u8 flags; u16 aux }:
		       * a chain as a driver adds it (split: aux is next
		       * with flag 0x80, else the following slot; packed:
		       * aux is the Buffer ID) */
	OP_DESC,      /* u16 index; 16 raw bytes of descriptor */
	OP_IDX,       /* u16: split avail idx := v; packed: driver slot and
		       * wrap counter := v % size, bit 15 */
	OP_POKE,      /* u32 gpa; u8 n; n bytes anywhere in guest RAM */
	OP_POP,
	OP_POP_ALL,
	OP_PUSH,      /* u16 written: return the oldest chain in flight */
	OP_PUSH_ALL,  /* u16 written */
	OP_NOTIFY,    /* u8: notifications on/off, then should_notify */
	OP_RESET,     /* reset and enable again: nothing in flight */
	OP_KINDS,
};

struct inflight {
	uint16_t id, ndescs;
	uint64_t writable_len;
};

static struct guest_memory mem;
static uint8_t *ram;
static struct virtq q;
static struct virtq_elem elem;
static struct inflight fifo[POPS_MAX];
static unsigned fifo_head, fifo_tail;
static uint8_t busy[65536 / 8];
static bool packed, event_idx, indirect;
static uint16_t size;
static uint64_t desc_gpa, driver_gpa, device_gpa;
/* The driver model's cursor: split, next free descriptor and avail idx;
 * packed, next slot and its wrap counter. */
static uint16_t drv_desc, drv_avail, drv_slot;
static bool drv_wrap;
static bool inflight_checked;  /* virtq.c refuses a head in flight */
static bool inflight_reported;

static void __attribute__((noreturn, format(printf, 1, 2)))
violation(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_virtq: invariant broken: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	__builtin_trap();
}

static void put16(uint64_t gpa, uint16_t v)
{
	memcpy(ram + gpa, &v, 2);
}

static int enable(void)
{
	virtq_reset(&q);
	q.size = size;
	q.desc_addr = desc_gpa;
	q.driver_addr = driver_gpa;
	q.device_addr = device_gpa;
	fifo_head = fifo_tail = 0;
	memset(busy, 0, sizeof(busy));
	drv_desc = drv_avail = drv_slot = 0;
	drv_wrap = true;
	return virtq_enable(&q, &mem, packed, event_idx, indirect);
}

static bool in_ram(const void *hva, uint64_t len)
{
	const uint8_t *p = hva;

	return p >= ram && p <= ram + GUEST_RAM &&
	       len <= (uint64_t)(ram + GUEST_RAM - p);
}

/* An enabled ring's three areas are guest RAM, whole. */
static void check_areas(void)
{
	if (!in_ram(q.desc, virtq_desc_area_size(size, packed)) ||
	    !in_ram(q.driver, virtq_driver_area_size(size, packed)) ||
	    !in_ram(q.device, virtq_device_area_size(size, packed)))
		violation("ring areas 0x%llx 0x%llx 0x%llx (size %u) "
			  "enabled outside guest RAM",
			  (unsigned long long)desc_gpa,
			  (unsigned long long)driver_gpa,
			  (unsigned long long)device_gpa, size);
}

static bool buf_in_ram(const struct virtq_buf *b)
{
	return in_ram(b->addr, b->len);
}

static void check_elem(void)
{
	uint64_t rd = 0, wr = 0;

	if (elem.nbufs > VIRTQ_MAX_BUFS || elem.nreadable > elem.nbufs)
		violation("chain of %u buffers (%u readable)", elem.nbufs,
			  elem.nreadable);
	for (unsigned i = 0; i < elem.nbufs; i++) {
		const struct virtq_buf *b = &elem.bufs[i];

		if (!buf_in_ram(b))
			violation("buffer %u (%p, %u bytes) outside guest RAM",
				  i, b->addr, b->len);
		if (b->writable != (i >= elem.nreadable))
			violation("buffer %u: readable after writable", i);
		if (b->writable)
			wr += b->len;
		else
			rd += b->len;
	}
	if (rd != elem.readable_len || wr != elem.writable_len)
		violation("chain lengths %llu/%llu, buffers add to %llu/%llu",
			  (unsigned long long)elem.readable_len,
			  (unsigned long long)elem.writable_len,
			  (unsigned long long)rd, (unsigned long long)wr);
	if (rd + wr > UINT32_MAX)
		violation("chain of %llu bytes", (unsigned long long)(rd + wr));
	if (elem.ndescs == 0 || elem.ndescs > size)
		violation("chain of %u ring slots in a ring of %u",
			  elem.ndescs, size);
	if (!packed && elem.id >= size)
		violation("head %u in a ring of %u", elem.id, size);
}

/* One pop; returns virtq_pop's result. */
static int pop(void)
{
	bool was_broken = q.broken;
	int rc = virtq_pop(&q, &elem);

	if (rc < 0) {
		if (!q.broken)
			violation("virtq_pop failed (%d), queue not broken",
				  rc);
		return rc;
	}
	if (was_broken)
		violation("a broken queue popped (%d)", rc);
	if (rc == 0)
		return 0;
	if (rc != 1)
		violation("virtq_pop returned %d", rc);
	check_elem();
	if (busy[elem.id / 8] & (1u << (elem.id % 8))) {
		if (inflight_checked)
			violation("head %u popped again while in flight",
				  elem.id);
		if (!inflight_reported)
			fprintf(stderr, "fuzz_virtq: note: virtq_pop gave "
				"head %u again while in flight (virtq.c has "
				"no in-flight check yet; not trapped)\n",
				elem.id);
		inflight_reported = true;
	}
	busy[elem.id / 8] |= 1u << (elem.id % 8);
	if (inflight_checked && fifo_tail - fifo_head >= size)
		violation("%u chains in flight on a ring of %u",
			  fifo_tail - fifo_head + 1, size);
	if (fifo_tail < POPS_MAX)
		fifo[fifo_tail++] = (struct inflight){
			elem.id, elem.ndescs, elem.writable_len };
	return 1;
}

static void push(uint16_t written)
{
	struct inflight *f;
	struct virtq_elem *e = &elem;

	if (fifo_head == fifo_tail)
		return;
	f = &fifo[fifo_head++];
	/* virtq_push reads only these (a copy of the popped element). */
	e->id = f->id;
	e->ndescs = f->ndescs;
	e->writable_len = f->writable_len;
	e->nbufs = 0;
	e->nreadable = 0;
	virtq_push(&q, e, written);
	busy[f->id / 8] &= ~(1u << (f->id % 8));
}

/* The driver model: write |n| descriptors and make the chain available. */
static void add_chain(const uint8_t *p, unsigned n)
{
	uint16_t head = drv_desc;

	for (unsigned i = 0; i < n; i++, p += 11) {
		uint32_t addr, len;
		uint16_t aux, flags = p[8] & 0x07;

		memcpy(&addr, p, 4);
		memcpy(&len, p + 4, 4);
		memcpy(&aux, p + 9, 2);
		if (i + 1 < n)
			flags |= VIRTQ_DESC_F_NEXT;
		if (!packed) {
			uint16_t next = (p[8] & 0x80) ? aux
					: (uint16_t)((drv_desc + 1) % size);
			struct virtq_desc d = { addr, len, flags, next };

			memcpy(ram + desc_gpa + 16ull * drv_desc, &d, 16);
			drv_desc = (drv_desc + 1) % size;
		} else {
			struct pvirtq_desc d = { addr, len, aux, flags };

			/* §2.8.1: available = AVAIL equal to the driver's
			 * wrap counter, USED not.  The first descriptor's
			 * flags go last, as a driver publishes them. */
			d.flags |= drv_wrap ? VIRTQ_DESC_F_AVAIL
					    : VIRTQ_DESC_F_USED;
			if (i == 0)
				head = drv_slot;
			memcpy(ram + desc_gpa + 16ull * drv_slot, &d, 16);
			if (++drv_slot == size) {
				drv_slot = 0;
				drv_wrap = !drv_wrap;
			}
		}
	}
	if (!packed) {
		put16(driver_gpa + 4 + 2ull * (drv_avail % size), head);
		drv_avail++;
		put16(driver_gpa + 2, drv_avail);
	}
}

/* Does virtq_pop refuse a head that is already in flight?  Publish head
 * 0 twice on a small split ring and pop twice. */
static void probe_inflight_check(void)
{
	struct virtq_desc d = { DATA_GPA, 64, 0, 0 };

	packed = event_idx = indirect = false;
	size = 4;
	desc_gpa = DESC_GPA;
	driver_gpa = DRIVER_GPA;
	device_gpa = DEVICE_GPA;
	if (enable())
		abort();
	memcpy(ram + DESC_GPA, &d, 16);
	put16(DRIVER_GPA + 4, 0);
	put16(DRIVER_GPA + 6, 0);
	put16(DRIVER_GPA + 2, 2);
	if (virtq_pop(&q, &elem) != 1)
		abort();
	inflight_checked = virtq_pop(&q, &elem) != 1;
	if (!inflight_checked)
		fprintf(stderr, "fuzz_virtq: note: virtq_pop does not refuse "
			"a head in flight yet; repeats are reported, not "
			"trapped\n");
}

static void setup(void)
{
	void *p;

	if (guest_memory_create(&mem, GUEST_RAM, NULL) ||
	    guest_memory_translate(&mem, 0, GUEST_RAM, &p)) {
		perror("fuzz_virtq: guest memory");
		abort();
	}
	ram = p;
	q.max_size = VIRTQ_MAX_SIZE;
	probe_inflight_check();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const uint8_t *end = data + len;
	unsigned pops = 0;
	uint8_t features;

	if (!ram)
		setup();
	if (len < 3)
		return 0;
	features = data[0];
	packed = features & F_PACKED;
	event_idx = features & F_EVENT_IDX;
	indirect = features & F_INDIRECT;
	memcpy(&size, data + 1, 2);
	if (!packed)
		size = 1u << (size % 16);
	else
		size = size % VIRTQ_MAX_SIZE + 1;
	desc_gpa = DESC_GPA;
	driver_gpa = DRIVER_GPA;
	device_gpa = DEVICE_GPA;
	if (features & F_AREAS) {
		uint32_t a[3];

		/* Anywhere, RAM's end and a little beyond included:
		 * virtq_enable must refuse what is not RAM. */
		if (len < 15)
			return 0;
		memcpy(a, data + 3, 12);
		desc_gpa = a[0] % (GUEST_RAM + 4096);
		driver_gpa = a[1] % (GUEST_RAM + 4096);
		device_gpa = a[2] % (GUEST_RAM + 4096);
		data += 12;
	}
	data += 3;
	/* A clean slate: rings and data from an earlier input would make
	 * this one's outcome depend on it. */
	memset(ram, 0, GUEST_RAM);
	if (enable()) {
		if (!(features & F_AREAS))
			violation("virtq_enable refused a valid ring of %u",
				  size);
		return 0;
	}
	check_areas();

	while (data < end) {
		enum op_kind kind = (enum op_kind)(*data++ % OP_KINDS);
		size_t left = (size_t)(end - data);
		uint16_t v = 0;
		uint32_t gpa;

		switch (kind) {
		case OP_ADD: {
			unsigned n;

			if (left < 1)
				return 0;
			n = data[0] % 8 + 1;
			if (left < 1 + 11ull * n)
				return 0;
			add_chain(data + 1, n);
			data += 1 + 11 * n;
			break;
		}
		case OP_DESC:
			if (left < 18)
				return 0;
			memcpy(&v, data, 2);
			memcpy(ram + desc_gpa + 16ull * (v % size), data + 2,
			       16);
			data += 18;
			break;
		case OP_IDX:
			if (left < 2)
				return 0;
			memcpy(&v, data, 2);
			data += 2;
			if (!packed) {
				drv_avail = v;
				put16(driver_gpa + 2, v);
			} else {
				drv_slot = (v & 0x7fff) % size;
				drv_wrap = v >> 15;
			}
			break;
		case OP_POKE: {
			unsigned n;

			if (left < 5)
				return 0;
			memcpy(&gpa, data, 4);
			n = data[4];
			if (left < 5ull + n)
				return 0;
			gpa %= GUEST_RAM - n + 1;
			memcpy(ram + gpa, data + 5, n);
			data += 5 + n;
			break;
		}
		case OP_POP:
			if (pops++ < POPS_MAX)
				pop();
			break;
		case OP_POP_ALL:
			/* A ring holds at most size chains; twice that
			 * (and a packed ring's second lap) is a loop. */
			for (unsigned i = 0; ; i++) {
				if (i > 2u * size + 2)
					violation("popped %u chains from a "
						  "ring of %u without a push",
						  i, size);
				if (pops++ >= POPS_MAX || pop() != 1)
					break;
			}
			break;
		case OP_PUSH:
		case OP_PUSH_ALL:
			if (left < 2)
				return 0;
			memcpy(&v, data, 2);
			data += 2;
			do
				push(v);
			while (kind == OP_PUSH_ALL && fifo_head != fifo_tail);
			break;
		case OP_NOTIFY:
			if (left < 1)
				return 0;
			virtq_set_notification(&q, data[0] & 1);
			virtq_should_notify(&q);
			virtq_has_avail(&q);
			data++;
			break;
		case OP_RESET:
			/* The same configuration enabled before. */
			if (enable())
				violation("virtq_enable refused the ring it "
					  "took before");
			break;
		case OP_KINDS:
			break;
		}
	}
	return 0;
}
