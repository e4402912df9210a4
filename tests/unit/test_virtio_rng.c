/* virtio entropy device (virtio 1.2 §5.4), driven by the test driver. */
#include <string.h>

#include "tests/unit/unit.h"
#include "tests/unit/virtio_test_driver.h"
#include "virtio/rng.h"

static struct vtd drv;
static struct virtio_rng rng;
static struct vtd_vq vq;

#define DEV (&rng.vdev)
#define F_V1 VIRTIO_BIT(VIRTIO_F_VERSION_1)

static void setup(void)
{
	ck_assert_int_eq(vtd_init(&drv), 0);
	ck_assert_int_eq(virtio_rng_init(&rng, "rng0", &drv.mem), 0);
	vtd_attach(&drv, DEV);
	ck_assert_int_eq(virtio_device_start(DEV), 0);
}

static void teardown(void)
{
	virtio_rng_destroy(&rng);
	vtd_vq_destroy(&vq);
	vtd_destroy(&drv);
}

static void bring_up(bool packed)
{
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 16, packed, false), 0);
	ck_assert_int_eq(vtd_negotiate(&drv, F_V1 | (packed ?
				VIRTIO_BIT(VIRTIO_F_RING_PACKED) : 0)), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 0, &vq), 0);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
}

/* Count bytes that still hold the fill pattern. */
static size_t unchanged(const uint8_t *p, size_t len, uint8_t pattern)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += p[i] == pattern;
	return n;
}

START_TEST(test_5_4_identity_type_4_one_queue_no_config)
{
	ck_assert_uint_eq(DEV->device_id, 4);
	ck_assert_uint_eq(DEV->nr_queues, 1);
	ck_assert_uint_eq(DEV->config_size, 0);
	/* §5.4.3: no device-specific feature bits. */
	ck_assert_uint_eq(DEV->device_features & 0xffffff, 0);
}
END_TEST

static void check_fills(bool packed)
{
	uint64_t buf = vtd_alloc(&drv, 256, 8);
	struct vtd_sg sg = { buf, 256, true };
	uint32_t id, len;

	memset(vtd_ptr(&drv, buf, 256), 0x3c, 256);
	bring_up(packed);
	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	/* §5.4.6.2: one or more random bytes; this one fills it all. */
	ck_assert_uint_ge(len, 1);
	ck_assert_uint_le(len, 256);
	/* 256 random bytes all equal to the pattern: p = 2^-2048. */
	ck_assert_uint_lt(unchanged(vtd_ptr(&drv, buf, 256), len, 0x3c), len);
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 0), 1);
}

START_TEST(test_5_4_6_2_device_must_place_random_bytes_split)
{
	check_fills(false);
}
END_TEST

START_TEST(test_5_4_6_2_device_must_place_random_bytes_packed)
{
	check_fills(true);
}
END_TEST

START_TEST(test_5_4_6_2_device_may_use_less_than_a_huge_buffer)
{
	uint64_t buf = vtd_alloc(&drv, 1 << 20, 4096);
	struct vtd_sg sg = { buf, 1 << 20, true };
	uint32_t id, len;

	bring_up(false);
	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_ge(len, 1);
	ck_assert_uint_le(len, VIRTIO_RNG_MAX_PER_REQUEST);
}
END_TEST

START_TEST(test_5_4_6_2_scattered_buffer_filled_in_order)
{
	uint64_t a = vtd_alloc(&drv, 8, 8), b = vtd_alloc(&drv, 8, 8);
	struct vtd_sg sg[2] = { { a, 8, true }, { b, 8, true } };
	uint32_t id, len;

	memset(vtd_ptr(&drv, a, 8), 0, 8);
	memset(vtd_ptr(&drv, b, 8), 0, 8);
	bring_up(false);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 16);
	ck_assert_uint_lt(unchanged(vtd_ptr(&drv, b, 8), 8, 0), 8);
}
END_TEST

START_TEST(test_5_4_6_1_readable_buffer_from_driver_is_not_written)
{
	uint64_t ro = vtd_alloc(&drv, 32, 8);
	struct vtd_sg sg = { ro, 32, false };
	uint32_t id, len;

	memset(vtd_ptr(&drv, ro, 32), 0x77, 32);
	bring_up(false);
	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 0);
	ck_assert_uint_eq(unchanged(vtd_ptr(&drv, ro, 32), 32, 0x77), 32);
	ck_assert(!(virtio_get_status(DEV) & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
}
END_TEST

START_TEST(test_5_4_many_requests)
{
	uint64_t buf = vtd_alloc(&drv, 16 * 64, 8);
	uint32_t id, len;
	int i, got = 0;

	bring_up(false);
	for (i = 0; i < 16; i++) {
		struct vtd_sg sg = { buf + 64 * i, 64, true };

		ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	}
	vtd_kick(&drv, 0);
	while (vtd_vq_get_used(&vq, &id, &len) == 1) {
		ck_assert_uint_eq(len, 64);
		got++;
	}
	ck_assert_int_eq(got, 16);
	ck_assert_uint_eq(rng.bytes_served, 16 * 64);
}
END_TEST

static Suite *virtio_rng_suite(void)
{
	Suite *s = suite_create("virtio_rng");
	TCase *tc = tcase_create("rng");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_5_4_identity_type_4_one_queue_no_config);
	tcase_add_test(tc, test_5_4_6_2_device_must_place_random_bytes_split);
	tcase_add_test(tc, test_5_4_6_2_device_must_place_random_bytes_packed);
	tcase_add_test(tc, test_5_4_6_2_device_may_use_less_than_a_huge_buffer);
	tcase_add_test(tc, test_5_4_6_2_scattered_buffer_filled_in_order);
	tcase_add_test(tc, test_5_4_6_1_readable_buffer_from_driver_is_not_written);
	tcase_add_test(tc, test_5_4_many_requests);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(virtio_rng_suite)
