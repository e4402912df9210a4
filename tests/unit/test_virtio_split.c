/* Split virtqueues (virtio 1.2 §2.7), device side: one test per device
 * requirement, plus malformed-driver tests (every one must end in
 * DEVICE_NEEDS_RESET, never a crash or a hang).  Driven through the core
 * by the test driver, on the loopback device. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "tests/unit/virtio_test_driver.h"

static struct vtd drv;
static struct vtd_echo echo;
static struct vtd_vq vq;

#define DEV (&echo.vdev)
#define F_V1 VIRTIO_BIT(VIRTIO_F_VERSION_1)
#define F_INDIRECT VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)
#define F_EVENT_IDX VIRTIO_BIT(VIRTIO_F_EVENT_IDX)
#define QSIZE 8

static void setup(void)
{
	ck_assert_int_eq(vtd_init(&drv), 0);
	ck_assert_int_eq(vtd_echo_init(&echo, &drv, 1, QSIZE), 0);
}

static void teardown(void)
{
	vtd_echo_destroy(&echo);
	vtd_vq_destroy(&vq);
	vtd_destroy(&drv);
}

static void bring_up(uint64_t features)
{
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, QSIZE, false,
				     features & F_EVENT_IDX),
			 0);
	ck_assert_int_eq(vtd_negotiate(&drv, F_V1 | features), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 0, &vq), 0);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
	virtio_device_sync(DEV);
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

/* ---- §2.7.4.1 Device Requirements: Message Framing ---- */

START_TEST(test_2_7_4_1_device_must_not_assume_descriptor_arrangement)
{
	const char *msg = "hello, framing";
	uint64_t whole = fill(msg), a = fill("hello"), b = fill(", fra"),
		 c = fill("ming");
	uint64_t out1 = vtd_alloc(&drv, 14, 8), out2 = vtd_alloc(&drv, 14, 8),
		 out3a = vtd_alloc(&drv, 3, 1), out3b = vtd_alloc(&drv, 11, 1);
	struct vtd_sg one[2] = { { whole, 14, false }, { out1, 14, true } };
	struct vtd_sg many[5] = { { a, 5, false }, { b, 5, false },
				  { c, 4, false }, { out3a, 3, true },
				  { out3b, 11, true } };
	struct vtd_sg ind[2] = { { whole, 14, false }, { out2, 14, true } };
	uint32_t id, len;
	char got[15] = { 0 };

	bring_up(F_INDIRECT);
	ck_assert_int_ge(vtd_vq_add(&vq, one, 2, false), 0);
	ck_assert_int_ge(vtd_vq_add(&vq, many, 5, false), 0);
	ck_assert_int_ge(vtd_vq_add(&vq, ind, 2, true), 0);
	vtd_kick(&drv, 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
		ck_assert_uint_eq(len, 14);
	}
	ck_assert_mem_eq(vtd_ptr(&drv, out1, 14), msg, 14);
	memcpy(got, vtd_ptr(&drv, out3a, 3), 3);
	memcpy(got + 3, vtd_ptr(&drv, out3b, 11), 11);
	ck_assert_str_eq(got, msg);
	ck_assert_mem_eq(vtd_ptr(&drv, out2, 14), msg, 14);
}
END_TEST

/* ---- §2.7.5.1 Device Requirements: The Virtqueue Descriptor Table ---- */

START_TEST(test_2_7_5_1_device_must_not_write_to_device_readable_buffer)
{
	uint64_t ro = vtd_alloc(&drv, 64, 8), wr = vtd_alloc(&drv, 64, 8);
	struct vtd_sg sg[1] = { { ro, 64, false } };
	struct vtd_sg sg2[2] = { { ro, 16, false }, { wr, 64, true } };
	uint8_t canary[64];
	uint32_t id, len;

	memset(vtd_ptr(&drv, ro, 64), 0xA5, 64);
	memcpy(canary, vtd_ptr(&drv, ro, 64), 64);
	bring_up(0);
	/* A buffer that is only readable: the loopback device has nowhere to
	 * write, and must not use the readable part. */
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 1, false), 0);
	ck_assert_int_ge(vtd_vq_add(&vq, sg2, 2, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 16);
	ck_assert_mem_eq(vtd_ptr(&drv, ro, 64), canary, 64);
}
END_TEST

START_TEST(test_2_7_5_1_device_should_not_read_device_writable_buffer)
{
	static struct virtq_elem elem;
	uint64_t ro = fill("ab"), wr = fill("SECRET");
	struct vtd_sg sg[2] = { { ro, 2, false }, { wr, 6, true } };
	char got[16] = { 0 };

	bring_up(0);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, false), 0);
	/* What the device reads of a chain stops at its readable part. */
	ck_assert_int_eq(virtq_pop(&DEV->queues[0], &elem), 1);
	ck_assert_uint_eq(virtq_elem_read(&elem, 0, got, sizeof(got)), 2);
	ck_assert_str_eq(got, "ab");
	ck_assert_uint_eq(virtq_elem_read(&elem, 2, got, sizeof(got)), 0);
	ck_assert_uint_eq(elem.nreadable, 1);
	ck_assert_uint_eq(elem.writable_len, 6);
}
END_TEST

/* ---- §2.7.5.3.2 Device Requirements: Indirect Descriptors ---- */

START_TEST(test_2_7_5_3_2_device_must_ignore_write_flag_of_indirect_descriptor)
{
	uint64_t msg = fill("indirect"), out = vtd_alloc(&drv, 8, 8);
	struct vtd_sg sg[2] = { { msg, 8, false }, { out, 8, true } };
	uint32_t id, len;
	int head;

	bring_up(F_INDIRECT);
	head = vtd_vq_add(&vq, sg, 2, true);
	ck_assert_int_ge(head, 0);
	/* Mark the descriptor that points at the table device-writable: the
	 * device must not care. */
	vtd_split_desc(&vq, (uint16_t)head)->flags |= VIRTQ_DESC_F_WRITE;
	vtd_kick(&drv, 0);
	ck_assert(!needs_reset());
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(id, (uint32_t)head);
	ck_assert_uint_eq(len, 8);
	ck_assert_mem_eq(vtd_ptr(&drv, out, 8), "indirect", 8);
}
END_TEST

START_TEST(test_2_7_5_3_2_device_must_handle_direct_chain_then_indirect)
{
	uint64_t a = fill("head-"), b = fill("tail"), out = vtd_alloc(&drv, 9, 8);
	struct vtd_sg tsg[2] = { { b, 4, false }, { out, 9, true } };
	uint64_t table = vtd_alloc(&drv, 32, 16);
	struct virtq_desc *t = vtd_ptr(&drv, table, 32);
	struct virtq_desc *d0, *d1;
	uint32_t id, len;

	bring_up(F_INDIRECT);
	/* desc 0: direct readable "head-" → desc 1: indirect table with
	 * "tail" (readable) and the output (writable). */
	t[0] = (struct virtq_desc){ tsg[0].gpa, tsg[0].len, VIRTQ_DESC_F_NEXT, 1 };
	t[1] = (struct virtq_desc){ tsg[1].gpa, tsg[1].len, VIRTQ_DESC_F_WRITE, 0 };
	d0 = vtd_split_desc(&vq, 0);
	d1 = vtd_split_desc(&vq, 1);
	*d0 = (struct virtq_desc){ a, 5, VIRTQ_DESC_F_NEXT, 1 };
	*d1 = (struct virtq_desc){ table, 32, VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	virtio_queue_kick(DEV, 0);
	virtio_device_sync(DEV);
	ck_assert(!needs_reset());
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 1);
	vq.chain_len[0] = 2;
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(id, 0);
	ck_assert_uint_eq(len, 9);
	ck_assert_mem_eq(vtd_ptr(&drv, out, 9), "head-tail", 9);
}
END_TEST

/* ---- §2.7.7.2 Device Requirements: Used Buffer Notification Suppression */

static void one_round(void)
{
	uint64_t out = vtd_alloc(&drv, 4, 4);
	struct vtd_sg sg = { out, 4, true };
	uint32_t id, len;

	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
}

START_TEST(test_2_7_7_2_device_must_notify_when_flags_is_0)
{
	bring_up(0);
	one_round();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 1);
	one_round();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 2);
}
END_TEST

START_TEST(test_2_7_7_2_device_should_not_notify_when_flags_is_1)
{
	bring_up(0);
	vtd_vq_suppress_interrupts(&vq, true);
	one_round();
	one_round();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 0);
	vtd_vq_suppress_interrupts(&vq, false);
	one_round();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 1);
}
END_TEST

START_TEST(test_2_7_7_2_device_must_ignore_used_event_without_event_idx)
{
	bring_up(0);
	vtd_vq_set_used_event(&vq, 100); /* would suppress with EVENT_IDX */
	one_round();
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 1);
}
END_TEST

START_TEST(test_2_7_7_2_device_must_ignore_flags_lower_bit_with_event_idx)
{
	uint64_t out = vtd_alloc(&drv, 4, 4);
	struct vtd_sg sg = { out, 4, true };

	bring_up(F_EVENT_IDX);
	vtd_vq_suppress_interrupts(&vq, true); /* flags = 1: to be ignored */
	vtd_vq_set_used_event(&vq, 0);
	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 1);
}
END_TEST

START_TEST(test_2_7_7_2_device_must_notify_when_used_idx_reaches_used_event)
{
	uint64_t out = vtd_alloc(&drv, 4, 4);
	struct vtd_sg sg = { out, 4, true };
	int i;

	bring_up(F_EVENT_IDX);
	/* "Notify me once the entry with index 2 is written" (used idx
	 * goes from 2 to 3). */
	vtd_vq_set_used_event(&vq, 2);
	for (i = 0; i < 4; i++) {
		ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
		vtd_kick(&drv, 0);
		ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), i >= 2 ? 1 : 0);
	}
}
END_TEST

/* ---- §2.7.8.2 Device Requirements: The Virtqueue Used Ring ---- */

START_TEST(test_2_7_8_2_device_must_set_len_and_write_data_before_used_idx)
{
	uint64_t msg = fill("0123456789"), out = vtd_alloc(&drv, 32, 8);
	struct vtd_sg sg[2] = { { msg, 10, false }, { out, 32, true } };
	uint32_t id, len;

	bring_up(0);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, false), 0);
	vtd_kick(&drv, 0);
	/* Once idx says the entry is there, len and the data are too. */
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 1);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 10);
	ck_assert_mem_eq(vtd_ptr(&drv, out, 10), "0123456789", 10);
}
END_TEST

START_TEST(test_2_7_8_2_used_len_never_exceeds_writable_length)
{
	uint64_t msg = fill("0123456789"), out = vtd_alloc(&drv, 4, 4);
	struct vtd_sg sg[2] = { { msg, 10, false }, { out, 4, true } };
	uint32_t id, len;

	bring_up(0);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 4);
}
END_TEST

/* ---- §2.7.10 Available Buffer Notification Suppression (device side) */

START_TEST(test_2_7_10_device_must_set_flags_0_or_1_without_event_idx)
{
	bring_up(0);
	one_round();
	ck_assert_uint_le(vtd_split_used_flags(&vq), 1);
	virtq_set_notification(&DEV->queues[0], false);
	ck_assert_uint_eq(vtd_split_used_flags(&vq), 1);
	virtq_set_notification(&DEV->queues[0], true);
	ck_assert_uint_eq(vtd_split_used_flags(&vq), 0);
}
END_TEST

START_TEST(test_2_7_10_device_must_set_flags_0_with_event_idx)
{
	bring_up(F_EVENT_IDX);
	one_round();
	ck_assert_uint_eq(vtd_split_used_flags(&vq), 0);
	/* avail_event tracks where the device will look next, so the
	 * driver's next buffer would get a kick. */
	ck_assert_uint_eq(vtd_split_avail_event(&vq), 1);
	/* Disabled, flags stay 0 and avail_event falls behind the index
	 * the driver publishes from (§2.7.10: the driver notifies only when
	 * its new index passes avail_event), so no kick. */
	ck_assert(!virtq_set_notification(&DEV->queues[0], false));
	ck_assert_uint_eq(vtd_split_used_flags(&vq), 0);
	ck_assert_uint_eq(vtd_split_avail_event(&vq), 0);
	vtd_vq_mark_kicked(&vq); /* one_round kicked */
	{
		uint64_t out = vtd_alloc(&drv, 4, 4);
		struct vtd_sg sg = { out, 4, true };

		ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
		ck_assert(!vtd_vq_should_kick(&vq));
	}
	/* Enabled again: avail_event is the next index to read, and the
	 * buffer that came meanwhile is reported for the caller to take. */
	ck_assert(virtq_set_notification(&DEV->queues[0], true));
	ck_assert_uint_eq(vtd_split_avail_event(&vq), 1);
	ck_assert_uint_eq(vtd_split_used_flags(&vq), 0);
}
END_TEST

START_TEST(test_2_7_10_device_must_handle_spurious_notifications)
{
	bring_up(0);
	vtd_kick(&drv, 0);
	vtd_kick(&drv, 0);
	ck_assert(!needs_reset());
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 0);
	one_round();
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 1);
	ck_assert(!needs_reset());
}
END_TEST

/* The driver adds buffers while the queue thread drains them; kicks are
 * sent only when the device asks for them (§2.7.10).  A lost
 * notification would leave a buffer unused forever: the test would hang
 * and hit the Check timeout. */
static void concurrent_rounds(void)
{
	uint64_t out = vtd_alloc(&drv, 4, 4);
	unsigned added = 0, done = 0, kicks = 0;
	const unsigned total = 5000;

	while (done < total) {
		uint32_t id, len;

		while (added < total && vq.num_free > 0) {
			struct vtd_sg sg = { out, 4, true };

			ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
			added++;
			if (vtd_vq_should_kick(&vq)) {
				virtio_queue_kick(DEV, 0);
				kicks++;
			}
		}
		while (vtd_vq_get_used(&vq, &id, &len) == 1)
			done++;
		sched_yield();
	}
	ck_assert(!needs_reset());
	ck_assert_uint_ge(kicks, 1);
}

START_TEST(test_2_7_10_no_lost_notifications_with_event_idx)
{
	bring_up(F_EVENT_IDX);
	concurrent_rounds();
}
END_TEST

START_TEST(test_2_7_10_no_lost_notifications_with_flags)
{
	bring_up(0);
	concurrent_rounds();
}
END_TEST

/* ---- ring mechanics ---- */

START_TEST(test_2_7_ring_wraps_past_65535)
{
	int i;

	bring_up(F_EVENT_IDX);
	for (i = 0; i < 70000; i++) {
		uint64_t out = 0x8000;
		struct vtd_sg sg = { out, 4, true };
		uint32_t id, len;

		ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
		if (i % 1000 == 0 || i > 69990) {
			vtd_kick(&drv, 0);
			ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
			continue;
		}
		/* Exercise the ring without the thread: pop/push directly. */
		ck_assert_int_eq(virtq_pop(&DEV->queues[0], &echo.elem), 1);
		ck_assert_int_eq(virtq_push(&DEV->queues[0], &echo.elem, 4), 0);
		ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
		ck_assert_uint_eq(len, 4);
	}
	ck_assert(!needs_reset());
	ck_assert_uint_eq(vtd_split_used_idx(&vq), (uint16_t)70000);
}
END_TEST

START_TEST(test_2_7_queue_size_must_be_power_of_2)
{
	struct virtq q = { .max_size = 8, .size = 6 };

	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 8, false, false), 0);
	q.desc_addr = vq.desc;
	q.driver_addr = vq.driver;
	q.device_addr = vq.device;
	ck_assert_int_eq(virtq_enable(&q, &drv.mem, false, false, false), -EINVAL);
	q.size = 4;
	ck_assert_int_eq(virtq_enable(&q, &drv.mem, false, false, false), 0);
	virtq_reset(&q);
}
END_TEST

/* ---- chains in flight (§2.7.13): at most one per head, so at most
 * the queue size; issue 14 ---- */

/* A driver that keeps every descriptor in flight and gets them back out
 * of order, reusing each at once: never taken for a broken one. */
START_TEST(test_2_7_queue_size_chains_in_flight_returned_out_of_order)
{
	unsigned seed = 4242, round, i, k;
	uint64_t out = vtd_alloc(&drv, 64, 8);
	struct vtd_sg sg[2] = { { out, 32, true }, { out + 32, 32, true } };
	int heads[QSIZE];
	uint32_t id, len;

	bring_up(F_INDIRECT);
	__atomic_store_n(&echo.defer, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < QSIZE; i++) {
		heads[i] = vtd_vq_add(&vq, sg, 1 + i % 2, i % 2);
		ck_assert_int_ge(heads[i], 0);
	}
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), QSIZE);
	/* The last one taken comes back first. */
	ck_assert_int_eq(vtd_echo_complete(&echo, QSIZE - 1), heads[QSIZE - 1]);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(id, (uint32_t)heads[QSIZE - 1]);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 1, false), 0);
	vtd_kick(&drv, 0);
	for (round = 0; round < 3000; round++) {
		unsigned n = 1 + (unsigned)rand_r(&seed) % QSIZE;

		ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), QSIZE);
		for (k = 0; k < n; k++)
			ck_assert_int_ge(vtd_echo_complete(&echo,
				(unsigned)rand_r(&seed) %
					vtd_echo_nr_deferred(&echo)), 0);
		for (k = 0; k < n; k++) {
			ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
			ck_assert_int_ge(vtd_vq_add(&vq, sg, 1 + k % 2, k % 2),
					 0);
		}
		vtd_kick(&drv, 0);
		ck_assert(!needs_reset());
	}
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), QSIZE);
	ck_assert_uint_eq(DEV->queues[0].nr_inflight, QSIZE);
	ck_assert_uint_eq(DEV->queues[0].inflight_peak, QSIZE);
	ck_assert_uint_eq(echo.deferred_peak, QSIZE);
}
END_TEST

/* Returning a chain that is not in flight is a device bug: refused, and
 * the used ring stays as it was. */
START_TEST(test_2_7_push_of_chain_not_in_flight_leaves_ring_alone)
{
	static struct virtq_elem elem;
	struct virtq *q = &DEV->queues[0];
	uint64_t out = vtd_alloc(&drv, 4, 4);
	struct vtd_sg sg = { out, 4, true };
	uint8_t used[6 + 8 * QSIZE];

	bring_up(0);
	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	ck_assert_int_eq(virtq_pop(q, &elem), 1);
	ck_assert_uint_eq(q->nr_inflight, 1);
	ck_assert_int_eq(virtq_push(q, &elem, 4), 0);
	ck_assert_uint_eq(q->nr_inflight, 0);
	memcpy(used, vtd_ptr(&drv, vq.device, sizeof(used)), sizeof(used));
	/* Twice, and one never taken. */
	ck_assert_int_eq(virtq_push(q, &elem, 4), -EINVAL);
	elem.id = 5;
	ck_assert_int_eq(virtq_push(q, &elem, 4), -EINVAL);
	ck_assert_mem_eq(vtd_ptr(&drv, vq.device, sizeof(used)), used,
			 sizeof(used));
	ck_assert_uint_eq(q->nr_inflight, 0);
	ck_assert_uint_eq(q->nr_used, 1);
	/* Through the core it also stops the device. */
	ck_assert_int_eq(virtio_queue_push(DEV, 0, &elem, 4), -EINVAL);
	ck_assert(needs_reset());
	ck_assert_mem_eq(vtd_ptr(&drv, vq.device, sizeof(used)), used,
			 sizeof(used));
}
END_TEST

/* §2.4: a reset (and a queue set up again) forgets what was in flight:
 * the driver may make the same head available again. */
START_TEST(test_2_7_reset_forgets_chains_in_flight)
{
	uint64_t out = vtd_alloc(&drv, 4, 4);
	struct vtd_sg sg = { out, 4, true };
	int head;

	bring_up(0);
	__atomic_store_n(&echo.defer, 1, __ATOMIC_SEQ_CST);
	head = vtd_vq_add(&vq, &sg, 1, false);
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(DEV->queues[0].nr_inflight, 1);
	virtio_reset(DEV);
	ck_assert_uint_eq(DEV->queues[0].nr_inflight, 0);
	ck_assert_ptr_null(DEV->queues[0].inflight);
	vtd_vq_destroy(&vq);
	bring_up(0);
	ck_assert_int_eq(vtd_vq_add(&vq, &sg, 1, false), head);
	vtd_kick(&drv, 0);
	ck_assert(!needs_reset());
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), 1);
	/* The queue disabled and set up again on the same rings: the device
	 * starts over at avail entry 0, the same head, now free. */
	virtio_queue_disable(DEV, 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 0, &vq), 0);
	ck_assert_uint_eq(DEV->queues[0].nr_inflight, 0);
	vtd_kick(&drv, 0);
	ck_assert(!needs_reset());
	ck_assert_uint_eq(DEV->queues[0].nr_inflight, 1);
}
END_TEST

/* ---- malformed drivers: DEVICE_NEEDS_RESET, never a crash ---- */

static void expect_broken(void)
{
	virtio_queue_kick(DEV, 0);
	virtio_device_sync(DEV);
	ck_assert(needs_reset());
	ck_assert_int_lt(echo.last_pop, 0);
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 0);
	/* And it stays broken until reset: further kicks do nothing. */
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 0);
}

START_TEST(test_malformed_descriptor_loop)
{
	uint64_t buf = vtd_alloc(&drv, 16, 8);

	bring_up(0);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ buf, 16, VIRTQ_DESC_F_NEXT, 1 };
	*vtd_split_desc(&vq, 1) = (struct virtq_desc){ buf, 16, VIRTQ_DESC_F_NEXT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
	ck_assert_int_eq(echo.last_pop, -ELOOP);
}
END_TEST

START_TEST(test_malformed_self_loop)
{
	bring_up(0);
	*vtd_split_desc(&vq, 3) = (struct virtq_desc){ 0x8000, 1, VIRTQ_DESC_F_NEXT, 3 };
	vtd_split_publish(&vq, 3);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_head_out_of_range)
{
	bring_up(0);
	vtd_split_publish(&vq, QSIZE);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_next_beyond_queue_size)
{
	bring_up(0);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ 0x8000, 16, VIRTQ_DESC_F_NEXT, 0xffff };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_address_outside_ram)
{
	bring_up(0);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ VTD_RAM_SIZE - 8, 16, VIRTQ_DESC_F_WRITE, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_address_wraps_around)
{
	bring_up(0);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ UINT64_MAX - 4, 16, 0, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_huge_total_length)
{
	uint64_t table = vtd_alloc(&drv, 16 * 4, 16);
	struct virtq_desc *t = vtd_ptr(&drv, table, 64);
	int i;

	/* Four 0xffffffff-byte descriptors (all at gpa 0, which is RAM-sized
	 * only if the translation is skipped: the total check fires first). */
	for (i = 0; i < 4; i++)
		t[i] = (struct virtq_desc){ 0, 0xffffffffu,
					    (uint16_t)(i < 3 ? VIRTQ_DESC_F_NEXT : 0),
					    (uint16_t)(i + 1) };
	bring_up(F_INDIRECT);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ table, 64, VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_readable_after_writable)
{
	uint64_t buf = vtd_alloc(&drv, 32, 8);

	bring_up(0);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ buf, 16,
		VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1 };
	*vtd_split_desc(&vq, 1) = (struct virtq_desc){ buf + 16, 16, 0, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_indirect_without_feature)
{
	uint64_t table = vtd_alloc(&drv, 16, 16);

	*(struct virtq_desc *)vtd_ptr(&drv, table, 16) =
		(struct virtq_desc){ 0x8000, 4, VIRTQ_DESC_F_WRITE, 0 };
	bring_up(0);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ table, 16, VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_indirect_table_wrong_size)
{
	uint64_t table = vtd_alloc(&drv, 32, 16);

	bring_up(F_INDIRECT);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ table, 24, VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_indirect_table_empty)
{
	bring_up(F_INDIRECT);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ 0x8000, 0, VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_indirect_table_too_big)
{
	bring_up(F_INDIRECT);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ 0x10000, 16 * (VIRTQ_MAX_BUFS + 1),
						       VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_nested_indirect)
{
	uint64_t t1 = vtd_alloc(&drv, 16, 16), t2 = vtd_alloc(&drv, 16, 16);

	*(struct virtq_desc *)vtd_ptr(&drv, t2, 16) =
		(struct virtq_desc){ 0x8000, 4, VIRTQ_DESC_F_WRITE, 0 };
	*(struct virtq_desc *)vtd_ptr(&drv, t1, 16) =
		(struct virtq_desc){ t2, 16, VIRTQ_DESC_F_INDIRECT, 0 };
	bring_up(F_INDIRECT);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ t1, 16, VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_indirect_with_next)
{
	uint64_t t = vtd_alloc(&drv, 16, 16);

	*(struct virtq_desc *)vtd_ptr(&drv, t, 16) =
		(struct virtq_desc){ 0x8000, 4, VIRTQ_DESC_F_WRITE, 0 };
	bring_up(F_INDIRECT);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ t, 16,
		VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1 };
	*vtd_split_desc(&vq, 1) = (struct virtq_desc){ 0x8000, 4, VIRTQ_DESC_F_WRITE, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_indirect_loop)
{
	uint64_t t = vtd_alloc(&drv, 32, 16);
	struct virtq_desc *d = vtd_ptr(&drv, t, 32);

	d[0] = (struct virtq_desc){ 0x8000, 4, VIRTQ_DESC_F_NEXT, 1 };
	d[1] = (struct virtq_desc){ 0x8000, 4, VIRTQ_DESC_F_NEXT, 0 };
	bring_up(F_INDIRECT);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ t, 32, VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_indirect_next_out_of_table)
{
	uint64_t t = vtd_alloc(&drv, 32, 16);
	struct virtq_desc *d = vtd_ptr(&drv, t, 32);

	d[0] = (struct virtq_desc){ 0x8000, 4, VIRTQ_DESC_F_NEXT, 2 };
	bring_up(F_INDIRECT);
	*vtd_split_desc(&vq, 0) = (struct virtq_desc){ t, 32, VIRTQ_DESC_F_INDIRECT, 0 };
	vtd_split_publish(&vq, 0);
	expect_broken();
}
END_TEST

START_TEST(test_malformed_avail_idx_runs_ahead)
{
	uint8_t *avail;

	bring_up(0);
	avail = vtd_ptr(&drv, vq.driver, 6 + 2 * QSIZE);
	/* 100 buffers claimed in an 8-entry ring. */
	__atomic_store_n((uint16_t *)(avail + 2), 100, __ATOMIC_RELEASE);
	expect_broken();
}
END_TEST

/* §2.7.13: a driver places buffers in free descriptors only, so a head
 * the device still holds cannot come again: one chain made available
 * over and over would stand for any number of requests (issue 14). */
START_TEST(test_malformed_head_made_available_while_in_flight)
{
	uint64_t out = vtd_alloc(&drv, 4, 4);
	struct vtd_sg sg = { out, 4, true };
	unsigned cfg;
	int head;

	bring_up(0);
	__atomic_store_n(&echo.defer, 1, __ATOMIC_SEQ_CST);
	head = vtd_vq_add(&vq, &sg, 1, false);
	ck_assert_int_ge(head, 0);
	vtd_split_publish(&vq, (uint16_t)head);
	cfg = vtd_config_irqs(&drv);
	vtd_kick(&drv, 0);
	ck_assert(needs_reset());
	ck_assert_int_eq(echo.last_pop, -EBUSY);
	/* The first was taken, the second was not. */
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), 1);
	ck_assert_uint_eq(DEV->queues[0].nr_inflight, 1);
	/* §2.1.2: DRIVER_OK is set, so a configuration change notification. */
	ck_assert_uint_eq(vtd_config_irqs(&drv), cfg + 1);
	/* And it stays broken: more of the same is not looked at. */
	vtd_split_publish(&vq, (uint16_t)head);
	vtd_kick(&drv, 0);
	ck_assert_uint_eq(vtd_echo_nr_deferred(&echo), 1);
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 0);
}
END_TEST

START_TEST(test_malformed_then_reset_recovers)
{
	uint32_t id, len;

	bring_up(0);
	vtd_split_publish(&vq, QSIZE + 1);
	virtio_queue_kick(DEV, 0);
	virtio_device_sync(DEV);
	ck_assert(needs_reset());
	vtd_vq_destroy(&vq);
	bring_up(0);
	ck_assert(!needs_reset());
	{
		uint64_t out = vtd_alloc(&drv, 4, 4);
		struct vtd_sg sg = { out, 4, true };

		ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	}
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
}
END_TEST

/* Random garbage in every ring field, many times over: the device may
 * accept a chain or call the driver broken, but every buffer it hands
 * out lies inside guest RAM, and it never crashes or spins. */
static uint64_t random_addr(unsigned *seed)
{
	switch (rand_r(seed) % 4) {
	case 0:
		return (uint64_t)rand_r(seed) << 33 | (unsigned)rand_r(seed);
	case 1:
		return VTD_RAM_SIZE - (unsigned)(rand_r(seed) % 64);
	default:
		return (unsigned)rand_r(seed) % VTD_RAM_SIZE;
	}
}

START_TEST(test_malformed_random_split_rings)
{
	static struct virtq_elem elem;
	unsigned total = 0, broken = 0;
	unsigned seed = 12345, round, i;
	struct virtq q = { 0 };
	uint64_t table = vtd_alloc(&drv, 16 * 64, 16);
	uint8_t *base = drv.mem.base;

	ck_assert_int_eq(vtd_vq_init(&vq, &drv, QSIZE, false, false), 0);
	for (round = 0; round < 3000; round++) {
		struct virtq_desc *d = vtd_split_desc(&vq, 0);
		uint16_t *avail = vtd_ptr(&drv, vq.driver, 6 + 2 * QSIZE);
		struct virtq_desc *t = vtd_ptr(&drv, table, 16 * 64);
		int ret, pops = 0;

		virtq_reset(&q);
		q.max_size = q.size = QSIZE;
		q.desc_addr = vq.desc;
		q.driver_addr = vq.driver;
		q.device_addr = vq.device;
		ck_assert_int_eq(virtq_enable(&q, &drv.mem, false, round & 1,
					      true), 0);
		for (i = 0; i < QSIZE; i++) {
			d[i].addr = random_addr(&seed);
			d[i].len = rand_r(&seed) % 3 ? (unsigned)rand_r(&seed) % 4096
						    : (unsigned)rand_r(&seed);
			d[i].flags = (uint16_t)rand_r(&seed) & 7;
			d[i].next = (uint16_t)(rand_r(&seed) % (QSIZE + 2));
			if (d[i].flags & VIRTQ_DESC_F_INDIRECT && rand_r(&seed) % 2) {
				d[i].addr = table;
				d[i].len = 16 * (1 + (unsigned)rand_r(&seed) % 64);
			}
			avail[2 + i] = (uint16_t)(rand_r(&seed) % (QSIZE + 1));
		}
		for (i = 0; i < 64; i++) {
			t[i].addr = random_addr(&seed);
			t[i].len = (unsigned)rand_r(&seed) % 8192;
			t[i].flags = (uint16_t)rand_r(&seed) & 7;
			t[i].next = (uint16_t)(rand_r(&seed) % 70);
		}
		avail[1] = (uint16_t)(rand_r(&seed) % 8 ? rand_r(&seed) % (QSIZE + 1)
						      : rand_r(&seed));
		while ((ret = virtq_pop(&q, &elem)) == 1) {
			for (i = 0; i < elem.nbufs; i++) {
				uint8_t *p = elem.bufs[i].addr;

				ck_assert(p >= base &&
					  p + elem.bufs[i].len <= base + VTD_RAM_SIZE);
			}
			ck_assert_int_eq(virtq_push(&q, &elem, 0), 0);
			total++;
			ck_assert_int_le(++pops, QSIZE);
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

static Suite *virtio_split_suite(void)
{
	Suite *s = suite_create("virtio_split");
	TCase *tc = tcase_create("split");
	TCase *bad = tcase_create("malformed");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_2_7_4_1_device_must_not_assume_descriptor_arrangement);
	tcase_add_test(tc, test_2_7_5_1_device_must_not_write_to_device_readable_buffer);
	tcase_add_test(tc, test_2_7_5_1_device_should_not_read_device_writable_buffer);
	tcase_add_test(tc, test_2_7_5_3_2_device_must_ignore_write_flag_of_indirect_descriptor);
	tcase_add_test(tc, test_2_7_5_3_2_device_must_handle_direct_chain_then_indirect);
	tcase_add_test(tc, test_2_7_7_2_device_must_notify_when_flags_is_0);
	tcase_add_test(tc, test_2_7_7_2_device_should_not_notify_when_flags_is_1);
	tcase_add_test(tc, test_2_7_7_2_device_must_ignore_used_event_without_event_idx);
	tcase_add_test(tc, test_2_7_7_2_device_must_ignore_flags_lower_bit_with_event_idx);
	tcase_add_test(tc, test_2_7_7_2_device_must_notify_when_used_idx_reaches_used_event);
	tcase_add_test(tc, test_2_7_8_2_device_must_set_len_and_write_data_before_used_idx);
	tcase_add_test(tc, test_2_7_8_2_used_len_never_exceeds_writable_length);
	tcase_add_test(tc, test_2_7_10_device_must_set_flags_0_or_1_without_event_idx);
	tcase_add_test(tc, test_2_7_10_device_must_set_flags_0_with_event_idx);
	tcase_add_test(tc, test_2_7_10_device_must_handle_spurious_notifications);
	tcase_add_test(tc, test_2_7_10_no_lost_notifications_with_event_idx);
	tcase_add_test(tc, test_2_7_10_no_lost_notifications_with_flags);
	tcase_add_test(tc, test_2_7_ring_wraps_past_65535);
	tcase_add_test(tc, test_2_7_queue_size_must_be_power_of_2);
	tcase_add_test(tc, test_2_7_queue_size_chains_in_flight_returned_out_of_order);
	tcase_add_test(tc, test_2_7_push_of_chain_not_in_flight_leaves_ring_alone);
	tcase_add_test(tc, test_2_7_reset_forgets_chains_in_flight);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_set_timeout(bad, 30);
	tcase_add_test(bad, test_malformed_descriptor_loop);
	tcase_add_test(bad, test_malformed_self_loop);
	tcase_add_test(bad, test_malformed_head_out_of_range);
	tcase_add_test(bad, test_malformed_next_beyond_queue_size);
	tcase_add_test(bad, test_malformed_address_outside_ram);
	tcase_add_test(bad, test_malformed_address_wraps_around);
	tcase_add_test(bad, test_malformed_huge_total_length);
	tcase_add_test(bad, test_malformed_readable_after_writable);
	tcase_add_test(bad, test_malformed_indirect_without_feature);
	tcase_add_test(bad, test_malformed_indirect_table_wrong_size);
	tcase_add_test(bad, test_malformed_indirect_table_empty);
	tcase_add_test(bad, test_malformed_indirect_table_too_big);
	tcase_add_test(bad, test_malformed_nested_indirect);
	tcase_add_test(bad, test_malformed_indirect_with_next);
	tcase_add_test(bad, test_malformed_indirect_loop);
	tcase_add_test(bad, test_malformed_indirect_next_out_of_table);
	tcase_add_test(bad, test_malformed_avail_idx_runs_ahead);
	tcase_add_test(bad, test_malformed_head_made_available_while_in_flight);
	tcase_add_test(bad, test_malformed_then_reset_recovers);
	tcase_add_test(bad, test_malformed_random_split_rings);
	suite_add_tcase(s, bad);
	return s;
}

UNIT_MAIN(virtio_split_suite)
