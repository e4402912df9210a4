/* Packed virtqueues (virtio 1.2 §2.8), device side: one test per device
 * requirement, ring mechanics (laps, odd sizes, event suppression) and
 * malformed-driver tests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "tests/unit/virtio_test_driver.h"

static struct vtd drv;
static struct vtd_echo echo;
static struct vtd_vq vq;

#define DEV (&echo.vdev)
#define F_V1 VIRTIO_BIT(VIRTIO_F_VERSION_1)
#define F_PACKED VIRTIO_BIT(VIRTIO_F_RING_PACKED)
#define F_INDIRECT VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)
#define F_EVENT_IDX VIRTIO_BIT(VIRTIO_F_EVENT_IDX)
#define QMAX 8

static void setup(void)
{
	ck_assert_int_eq(vtd_init(&drv), 0);
	ck_assert_int_eq(vtd_echo_init(&echo, &drv, 1, QMAX), 0);
}

static void teardown(void)
{
	vtd_echo_destroy(&echo);
	vtd_vq_destroy(&vq);
	vtd_destroy(&drv);
}

static void bring_up_size(uint64_t features, uint16_t size)
{
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, size, true,
				     features & F_EVENT_IDX),
			 0);
	ck_assert_int_eq(vtd_negotiate(&drv, F_V1 | F_PACKED | features), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 0, &vq), 0);
	ck_assert(DEV->queues[0].packed);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
	virtio_device_sync(DEV);
}

static void bring_up(uint64_t features)
{
	bring_up_size(features, QMAX);
}

static uint64_t fill(const char *s)
{
	uint64_t gpa = vtd_alloc(&drv, strlen(s) + 1, 8);

	memcpy(vtd_ptr(&drv, gpa, strlen(s)), s, strlen(s));
	return gpa;
}

static bool needs_reset(void)
{
	return virtio_get_status(DEV) & VIRTIO_STATUS_DEVICE_NEEDS_RESET;
}

static int add_echo(const char *msg, uint64_t *out)
{
	uint64_t in = fill(msg);
	struct vtd_sg sg[2] = { { in, (uint32_t)strlen(msg), false },
				{ 0, 32, true } };

	*out = vtd_alloc(&drv, 32, 8);
	sg[1].gpa = *out;
	return vtd_vq_add(&vq, sg, 2, false);
}

/* ---- §2.8.12 Device Requirements: Virtqueues ---- */

START_TEST(test_2_8_12_device_must_start_processing_in_ring_order)
{
	uint64_t out[3];
	int ids[3], i;
	uint32_t id, len;

	bring_up(0);
	ids[0] = add_echo("first", &out[0]);
	ids[1] = add_echo("second", &out[1]);
	ids[2] = add_echo("third", &out[2]);
	vtd_kick(&drv, 0);
	/* The loopback completes in the order it starts, so the used
	 * descriptors come back in ring order. */
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
		ck_assert_uint_eq(id, (uint32_t)ids[i]);
	}
	ck_assert_mem_eq(vtd_ptr(&drv, out[1], 6), "second", 6);
}
END_TEST

START_TEST(test_2_8_12_device_must_write_used_descriptors_in_completion_order)
{
	static struct virtq_elem a, b;
	struct virtq *q = &DEV->queues[0];
	uint64_t out_a, out_b;
	int id_a, id_b;
	uint32_t id, len;

	bring_up(0);
	id_a = add_echo("aaaa", &out_a);
	id_b = add_echo("bb", &out_b);
	/* Drive the ring directly: start A then B, complete B first. */
	ck_assert_int_eq(virtq_pop(q, &a), 1);
	ck_assert_int_eq(virtq_pop(q, &b), 1);
	ck_assert_int_eq(virtq_push(q, &b, 2), 0);
	ck_assert_int_eq(virtq_push(q, &a, 4), 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(id, (uint32_t)id_b);
	ck_assert_uint_eq(len, 2);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(id, (uint32_t)id_a);
	ck_assert_uint_eq(len, 4);
}
END_TEST

/* ---- §2.8.15 Device Requirements: The Virtqueue Descriptor Table ---- */

START_TEST(test_2_8_15_device_must_not_write_to_device_readable_buffer)
{
	uint64_t ro = vtd_alloc(&drv, 32, 8);
	struct vtd_sg sg = { ro, 32, false };
	uint32_t id, len;
	uint8_t canary[32];

	memset(vtd_ptr(&drv, ro, 32), 0x5A, 32);
	memcpy(canary, vtd_ptr(&drv, ro, 32), 32);
	bring_up(0);
	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 0);
	ck_assert_mem_eq(vtd_ptr(&drv, ro, 32), canary, 32);
	/* §2.8.3: nothing written, so the used descriptor has no WRITE. */
	ck_assert(!(vtd_packed_desc(&vq, 0)->flags & VIRTQ_DESC_F_WRITE));
}
END_TEST

START_TEST(test_2_8_15_device_should_not_read_device_writable_buffer)
{
	static struct virtq_elem elem;
	uint64_t ro = fill("xy"), wr = fill("SECRET");
	struct vtd_sg sg[2] = { { ro, 2, false }, { wr, 6, true } };
	char got[16] = { 0 };

	bring_up(0);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, false), 0);
	ck_assert_int_eq(virtq_pop(&DEV->queues[0], &elem), 1);
	ck_assert_uint_eq(virtq_elem_read(&elem, 0, got, sizeof(got)), 2);
	ck_assert_str_eq(got, "xy");
	ck_assert_uint_eq(elem.writable_len, 6);
}
END_TEST

START_TEST(test_2_8_15_device_must_not_use_descriptor_before_avail_changes)
{
	struct pvirtq_desc *d;
	uint64_t out = vtd_alloc(&drv, 8, 8);

	bring_up(0);
	d = vtd_packed_desc(&vq, 0);
	/* Fully formed, but the flags still hold the initial zero. */
	*d = (struct pvirtq_desc){ out, 8, 0, VIRTQ_DESC_F_WRITE };
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(echo.handled, 0);
	/* AVAIL == USED == wrap counter: that is a *used* descriptor. */
	d->flags = VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(echo.handled, 0);
	ck_assert(!needs_reset());
	/* Now flip AVAIL the right way. */
	d->flags = VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_AVAIL;
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(echo.handled, 1);
}
END_TEST

START_TEST(test_2_8_15_device_must_not_change_descriptor_after_marking_used)
{
	uint64_t out;
	struct pvirtq_desc snap;
	uint32_t id, len;

	bring_up(0);
	add_echo("one", &out);
	vtd_kick(&drv, 0);
	memcpy(&snap, vtd_packed_desc(&vq, 0), sizeof(snap));
	ck_assert(snap.flags & VIRTQ_DESC_F_USED);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	add_echo("two", &out);
	add_echo("three", &out);
	vtd_kick(&drv, 0);
	ck_assert_mem_eq(vtd_packed_desc(&vq, 0), &snap, sizeof(snap));
}
END_TEST

/* ---- §2.8.18 Device Requirements: Scatter-Gather Support ---- */

START_TEST(test_2_8_18_device_must_use_chained_descriptors_in_order)
{
	uint64_t a = fill("ab"), b = fill("cd"), c = fill("ef");
	uint64_t o1 = vtd_alloc(&drv, 4, 4), o2 = vtd_alloc(&drv, 2, 2);
	struct vtd_sg sg[5] = { { a, 2, false }, { b, 2, false }, { c, 2, false },
				{ o1, 4, true }, { o2, 2, true } };
	uint32_t id, len;
	int got;

	bring_up(0);
	got = vtd_vq_add(&vq, sg, 5, false);
	ck_assert_int_ge(got, 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(id, (uint32_t)got);
	ck_assert_uint_eq(len, 6);
	ck_assert_mem_eq(vtd_ptr(&drv, o1, 4), "abcd", 4);
	ck_assert_mem_eq(vtd_ptr(&drv, o2, 2), "ef", 2);
	/* One used descriptor for the whole list, written at its start. */
	ck_assert(vtd_packed_desc(&vq, 0)->flags & VIRTQ_DESC_F_USED);
}
END_TEST

/* ---- §2.8.7 Indirect descriptors ---- */

START_TEST(test_2_8_7_device_handles_indirect_and_ignores_its_write_flag)
{
	uint64_t in = fill("packed-indirect"), out = vtd_alloc(&drv, 15, 1);
	struct vtd_sg sg[2] = { { in, 15, false }, { out, 15, true } };
	uint32_t id, len;

	bring_up(F_INDIRECT);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, true), 0);
	vtd_packed_desc(&vq, 0)->flags |= VIRTQ_DESC_F_WRITE;
	vtd_kick(&drv, 0);
	ck_assert(!needs_reset());
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 15);
	ck_assert_mem_eq(vtd_ptr(&drv, out, 15), "packed-indirect", 15);
}
END_TEST

/* ---- ring mechanics ---- */

START_TEST(test_2_8_ring_laps_with_non_power_of_2_size)
{
	int i;

	bring_up_size(0, 5);
	/* Two-descriptor lists in a five-slot ring cross the end of the
	 * ring on every other lap. */
	for (i = 0; i < 200; i++) {
		char msg[8];
		uint64_t out;
		uint32_t id, len;
		int got;

		snprintf(msg, sizeof(msg), "m%05d", i);
		got = add_echo(msg, &out);
		ck_assert_int_ge(got, 0);
		vtd_kick(&drv, 0);
		ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
		ck_assert_uint_eq(id, (uint32_t)got);
		ck_assert_uint_eq(len, 6);
		ck_assert_mem_eq(vtd_ptr(&drv, out, 6), msg, 6);
	}
	ck_assert(!needs_reset());
}
END_TEST

START_TEST(test_2_8_queue_size_any_value_up_to_max)
{
	struct virtq q = { .max_size = 8, .size = 3 };

	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 8, true, false), 0);
	q.desc_addr = vq.desc;
	q.driver_addr = vq.driver;
	q.device_addr = vq.device;
	ck_assert_int_eq(virtq_enable(&q, &drv.mem, true, false, false), 0);
	q.size = 9;
	ck_assert_int_eq(virtq_enable(&q, &drv.mem, true, false, false), -EINVAL);
	q.size = 0;
	ck_assert_int_eq(virtq_enable(&q, &drv.mem, true, false, false), -EINVAL);
	virtq_reset(&q);
}
END_TEST

/* ---- buffers in flight (§2.8, §2.8.21.1): one per Buffer ID, never
 * more than the queue size; issue 14 ---- */

/* A driver with every slot in flight, getting buffers back out of order
 * and reusing their ids and slots at once, is never taken for a broken
 * one: ring sizes 8 and 5, direct and indirect buffers. */
static void in_flight_out_of_order(uint16_t size)
{
	unsigned seed = 99, round, i, k;
	uint64_t out = vtd_alloc(&drv, 64, 8);
	struct vtd_sg sg[2] = { { out, 32, true }, { out + 32, 32, true } };
	uint32_t id, len;
	int first, last = -1;

	bring_up_size(F_INDIRECT, size);
	__atomic_store_n(&echo.defer, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < size; i++) {
		last = vtd_vq_add(&vq, sg, 1 + i % 2, i % 2);
		ck_assert_int_ge(last, 0);
	}
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), size);
	/* The last one taken comes back first. */
	first = vtd_echo_complete(&echo, size - 1u);
	ck_assert_int_eq(first, last);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(id, (uint32_t)last);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 1, false), 0);
	vtd_kick(&drv, 0);
	for (round = 0; round < 2000; round++) {
		unsigned n = 1 + (unsigned)rand_r(&seed) % size;

		ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), size);
		for (k = 0; k < n; k++)
			ck_assert_int_ge(vtd_echo_complete(&echo,
				(unsigned)rand_r(&seed) %
					vtd_echo_nr_deferred(&echo)), 0);
		for (k = 0; k < n; k++) {
			ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
			/* One slot each, so the ring stays exactly full. */
			ck_assert_int_ge(vtd_vq_add(&vq, sg, 1 + k % 2, k % 2),
					 0);
		}
		vtd_kick(&drv, 0);
		ck_assert(!needs_reset());
	}
	ck_assert_uint_eq(DEV->queues[0].nr_inflight, size);
	ck_assert_uint_eq(DEV->queues[0].inflight_peak, size);
	ck_assert_uint_eq(echo.deferred_peak, size);
}

START_TEST(test_2_8_queue_size_buffers_in_flight_returned_out_of_order)
{
	in_flight_out_of_order(QMAX);
}
END_TEST

START_TEST(test_2_8_queue_size_buffers_in_flight_out_of_order_odd_size)
{
	in_flight_out_of_order(5);
}
END_TEST

/* Returning a buffer that is not in flight is a device bug: refused,
 * and the ring stays as it was. */
START_TEST(test_2_8_push_of_id_not_in_flight_leaves_ring_alone)
{
	static struct virtq_elem elem;
	struct virtq *q = &DEV->queues[0];
	uint8_t ring[16 * QMAX];
	uint64_t out;

	bring_up(0);
	ck_assert_int_ge(add_echo("one", &out), 0);
	ck_assert_int_eq(virtq_pop(q, &elem), 1);
	ck_assert_uint_eq(q->nr_inflight, 1);
	ck_assert_int_eq(virtq_push(q, &elem, 0), 0);
	ck_assert_uint_eq(q->nr_inflight, 0);
	memcpy(ring, vtd_ptr(&drv, vq.desc, sizeof(ring)), sizeof(ring));
	ck_assert_int_eq(virtq_push(q, &elem, 0), -EINVAL);
	elem.id = 1000;
	ck_assert_int_eq(virtq_push(q, &elem, 0), -EINVAL);
	ck_assert_mem_eq(vtd_ptr(&drv, vq.desc, sizeof(ring)), ring,
			 sizeof(ring));
	ck_assert_uint_eq(q->nr_used, 1);
	ck_assert_int_eq(virtio_queue_push(DEV, 0, &elem, 0), -EINVAL);
	ck_assert(needs_reset());
}
END_TEST

/* ---- §2.8.10 Driver and Device Event Suppression ---- */

static void round_trip(void)
{
	uint64_t out;
	uint32_t id, len;

	ck_assert_int_ge(add_echo("x", &out), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
}

START_TEST(test_2_8_10_device_notifies_when_events_enabled)
{
	bring_up(0);
	round_trip();
	round_trip();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 2);
}
END_TEST

START_TEST(test_2_8_10_device_does_not_notify_when_events_disabled)
{
	bring_up(0);
	vtd_vq_suppress_interrupts(&vq, true);
	round_trip();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 0);
	vtd_vq_suppress_interrupts(&vq, false);
	round_trip();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 1);
}
END_TEST

START_TEST(test_2_8_10_device_notifies_at_event_descriptor)
{
	int i;

	bring_up_size(F_EVENT_IDX, 4);
	/* Each echo list uses 2 slots: used descriptors land at slots 0, 2,
	 * 0 (lap 2), 2 ...  Ask for an event at slot 2 of the first lap. */
	vtd_vq_set_packed_event(&vq, 2, true);
	for (i = 0; i < 4; i++) {
		round_trip();
		ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), i >= 1 ? 1 : 0);
	}
	/* Slot 0 of the next-but-one lap (wrap counter 1 again). */
	vtd_vq_set_packed_event(&vq, 0, true);
	round_trip();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 2);
}
END_TEST

START_TEST(test_2_8_10_device_event_flags_are_valid_values)
{
	struct virtq *q;

	bring_up(0);
	q = &DEV->queues[0];
	ck_assert_uint_eq(vtd_packed_device_event_flags(&vq), RING_EVENT_FLAGS_ENABLE);
	virtq_set_notification(q, false);
	ck_assert_uint_eq(vtd_packed_device_event_flags(&vq), RING_EVENT_FLAGS_DISABLE);
	virtq_set_notification(q, true);
	ck_assert_uint_eq(vtd_packed_device_event_flags(&vq), RING_EVENT_FLAGS_ENABLE);
}
END_TEST

/* ---- malformed drivers ---- */

static void expect_broken(void)
{
	vtd_kick(&drv, 0);
	ck_assert(needs_reset());
	ck_assert_int_lt(echo.last_pop, 0);
	ck_assert_uint_eq(echo.handled, 0);
}

static void put(uint16_t slot, uint64_t addr, uint32_t len, uint16_t flags)
{
	struct pvirtq_desc *d = vtd_packed_desc(&vq, slot);

	d->addr = addr;
	d->len = len;
	d->id = 0;
	__atomic_store_n(&d->flags,
			 (uint16_t)(flags | VIRTQ_DESC_F_AVAIL), __ATOMIC_RELEASE);
}

/* §2.8.21.1: each buffer gets a free Buffer ID; one the device still
 * holds is not free.  The second buffer with id 0 is not taken. */
START_TEST(test_malformed_packed_id_made_available_while_in_flight)
{
	uint64_t out = vtd_alloc(&drv, 8, 8);
	unsigned cfg;

	bring_up(0);
	__atomic_store_n(&echo.defer, 1, __ATOMIC_SEQ_CST);
	put(1, out + 4, 4, VIRTQ_DESC_F_WRITE);
	put(0, out, 4, VIRTQ_DESC_F_WRITE);
	cfg = vtd_config_irqs(&drv);
	vtd_kick(&drv, 0);
	ck_assert(needs_reset());
	ck_assert_int_eq(echo.last_pop, -EBUSY);
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), 1);
	ck_assert_uint_eq(DEV->queues[0].nr_inflight, 1);
	ck_assert_uint_eq(vtd_config_irqs(&drv), cfg + 1);
}
END_TEST

/* §2.8: with the ring full of its buffers the driver waits for used
 * ones.  One that writes over slots in flight, with fresh ids, would
 * have the device hold any number of requests: the (size+1)th is not
 * taken. */
START_TEST(test_malformed_packed_more_buffers_in_flight_than_queue_size)
{
	uint64_t out = vtd_alloc(&drv, 8, 8);
	struct vtd_sg sg = { out, 8, true };
	struct pvirtq_desc *d;
	unsigned i;

	bring_up_size(0, 4);
	__atomic_store_n(&echo.defer, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < 4; i++)
		ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert(!needs_reset());
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), 4);
	/* Slot 0 again, second lap, id 100: never used before. */
	d = vtd_packed_desc(&vq, 0);
	d->addr = out;
	d->len = 8;
	d->id = 100;
	__atomic_store_n(&d->flags,
			 (uint16_t)(vtd_packed_avail_flags(&vq) |
				    VIRTQ_DESC_F_WRITE), __ATOMIC_RELEASE);
	vtd_kick(&drv, 0);
	ck_assert(needs_reset());
	ck_assert_int_eq(echo.last_pop, -EOVERFLOW);
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), 4);
	ck_assert_uint_eq(DEV->queues[0].inflight_peak, 4);
}
END_TEST

START_TEST(test_malformed_packed_list_longer_than_ring)
{
	int i;

	bring_up_size(0, 4);
	for (i = 0; i < 4; i++)
		put((uint16_t)i, 0x8000, 4, VIRTQ_DESC_F_NEXT);
	expect_broken();
	ck_assert_int_eq(echo.last_pop, -ELOOP);
}
END_TEST

START_TEST(test_malformed_packed_partial_list)
{
	bring_up(0);
	/* The first descriptor says NEXT, the next one is not available. */
	put(0, 0x8000, 4, VIRTQ_DESC_F_NEXT);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_packed_indirect_inside_list)
{
	uint64_t t = vtd_alloc(&drv, 16, 16);

	bring_up(F_INDIRECT);
	put(1, t, 16, VIRTQ_DESC_F_INDIRECT);
	put(0, 0x8000, 4, VIRTQ_DESC_F_NEXT);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_packed_indirect_without_feature)
{
	uint64_t t = vtd_alloc(&drv, 16, 16);

	bring_up(0);
	put(0, t, 16, VIRTQ_DESC_F_INDIRECT);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_packed_indirect_wrong_size)
{
	uint64_t t = vtd_alloc(&drv, 32, 16);

	bring_up(F_INDIRECT);
	put(0, t, 20, VIRTQ_DESC_F_INDIRECT);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_packed_indirect_with_next)
{
	uint64_t t = vtd_alloc(&drv, 16, 16);

	bring_up(F_INDIRECT);
	put(1, 0x8000, 4, 0);
	put(0, t, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_packed_indirect_entry_outside_ram)
{
	uint64_t t = vtd_alloc(&drv, 16, 16);
	struct pvirtq_desc *e = vtd_ptr(&drv, t, 16);

	*e = (struct pvirtq_desc){ VTD_RAM_SIZE, 1, 0, VIRTQ_DESC_F_WRITE };
	bring_up(F_INDIRECT);
	put(0, t, 16, VIRTQ_DESC_F_INDIRECT);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_packed_address_outside_ram)
{
	bring_up(0);
	put(0, 1ull << 40, 16, VIRTQ_DESC_F_WRITE);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_packed_readable_after_writable)
{
	bring_up(0);
	put(1, 0x8000, 4, 0);
	put(0, 0x8010, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT);
	expect_broken();
}
END_TEST

/* Random garbage in the packed ring: buffers handed out are always in
 * guest RAM; no crash, no endless loop. */
START_TEST(test_malformed_random_packed_rings)
{
	static struct virtq_elem elem;
	unsigned total = 0, broken = 0;
	unsigned seed = 777, round, i;
	struct virtq q = { 0 };
	uint64_t table = vtd_alloc(&drv, 16 * 64, 16);
	uint8_t *base = drv.mem.base;
	const uint16_t size = 7;

	ck_assert_int_eq(vtd_vq_init(&vq, &drv, size, true, false), 0);
	for (round = 0; round < 3000; round++) {
		struct pvirtq_desc *t = vtd_ptr(&drv, table, 16 * 64);
		int ret, pops = 0;

		virtq_reset(&q);
		q.max_size = q.size = size;
		q.desc_addr = vq.desc;
		q.driver_addr = vq.driver;
		q.device_addr = vq.device;
		ck_assert_int_eq(virtq_enable(&q, &drv.mem, true, round & 1, true), 0);
		for (i = 0; i < size; i++) {
			struct pvirtq_desc *d = vtd_packed_desc(&vq, (uint16_t)i);

			d->addr = rand_r(&seed) % 4 ? (unsigned)rand_r(&seed) % VTD_RAM_SIZE
						    : (uint64_t)rand_r(&seed) << 31;
			d->len = (unsigned)rand_r(&seed) % 4096;
			d->id = (uint16_t)rand_r(&seed);
			d->flags = (uint16_t)(rand_r(&seed) & 7) |
				   (rand_r(&seed) % 4 ? VIRTQ_DESC_F_AVAIL : 0) |
				   (rand_r(&seed) % 4 ? 0 : VIRTQ_DESC_F_USED);
			if ((d->flags & VIRTQ_DESC_F_INDIRECT) && rand_r(&seed) % 2) {
				d->addr = table;
				d->len = 16 * (1 + (unsigned)rand_r(&seed) % 64);
			}
		}
		for (i = 0; i < 64; i++) {
			t[i].addr = (unsigned)rand_r(&seed) % (VTD_RAM_SIZE + 4096);
			t[i].len = (unsigned)rand_r(&seed) % 8192;
			t[i].flags = (uint16_t)rand_r(&seed);
		}
		while ((ret = virtq_pop(&q, &elem)) == 1) {
			for (i = 0; i < elem.nbufs; i++) {
				uint8_t *p = elem.bufs[i].addr;

				ck_assert(p >= base &&
					  p + elem.bufs[i].len <= base + VTD_RAM_SIZE);
			}
			ck_assert_int_eq(virtq_push(&q, &elem, 0), 0);
			/* Pushing marks slots used, so the device cannot go
			 * round forever. */
			total++;
			ck_assert_int_le(++pops, size);
		}
		ck_assert_int_le(ret, 0);
		broken += ret < 0;
	}
	virtq_reset(&q);
	/* Both outcomes were exercised. */
	ck_assert_uint_gt(total, 100);
	ck_assert_uint_gt(broken, 100);
}
END_TEST

static Suite *virtio_packed_suite(void)
{
	Suite *s = suite_create("virtio_packed");
	TCase *tc = tcase_create("packed");
	TCase *bad = tcase_create("malformed");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_2_8_12_device_must_start_processing_in_ring_order);
	tcase_add_test(tc, test_2_8_12_device_must_write_used_descriptors_in_completion_order);
	tcase_add_test(tc, test_2_8_15_device_must_not_write_to_device_readable_buffer);
	tcase_add_test(tc, test_2_8_15_device_should_not_read_device_writable_buffer);
	tcase_add_test(tc, test_2_8_15_device_must_not_use_descriptor_before_avail_changes);
	tcase_add_test(tc, test_2_8_15_device_must_not_change_descriptor_after_marking_used);
	tcase_add_test(tc, test_2_8_18_device_must_use_chained_descriptors_in_order);
	tcase_add_test(tc, test_2_8_7_device_handles_indirect_and_ignores_its_write_flag);
	tcase_add_test(tc, test_2_8_ring_laps_with_non_power_of_2_size);
	tcase_add_test(tc, test_2_8_queue_size_any_value_up_to_max);
	tcase_add_test(tc, test_2_8_queue_size_buffers_in_flight_returned_out_of_order);
	tcase_add_test(tc, test_2_8_queue_size_buffers_in_flight_out_of_order_odd_size);
	tcase_add_test(tc, test_2_8_push_of_id_not_in_flight_leaves_ring_alone);
	tcase_add_test(tc, test_2_8_10_device_notifies_when_events_enabled);
	tcase_add_test(tc, test_2_8_10_device_does_not_notify_when_events_disabled);
	tcase_add_test(tc, test_2_8_10_device_notifies_at_event_descriptor);
	tcase_add_test(tc, test_2_8_10_device_event_flags_are_valid_values);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_set_timeout(bad, 30);
	tcase_add_test(bad, test_malformed_packed_id_made_available_while_in_flight);
	tcase_add_test(bad, test_malformed_packed_more_buffers_in_flight_than_queue_size);
	tcase_add_test(bad, test_malformed_packed_list_longer_than_ring);
	tcase_add_test(bad, test_malformed_packed_partial_list);
	tcase_add_test(bad, test_malformed_packed_indirect_inside_list);
	tcase_add_test(bad, test_malformed_packed_indirect_without_feature);
	tcase_add_test(bad, test_malformed_packed_indirect_wrong_size);
	tcase_add_test(bad, test_malformed_packed_indirect_with_next);
	tcase_add_test(bad, test_malformed_packed_indirect_entry_outside_ram);
	tcase_add_test(bad, test_malformed_packed_address_outside_ram);
	tcase_add_test(bad, test_malformed_packed_readable_after_writable);
	tcase_add_test(bad, test_malformed_random_packed_rings);
	suite_add_tcase(s, bad);
	return s;
}

UNIT_MAIN(virtio_packed_suite)
