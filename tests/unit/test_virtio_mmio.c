/* virtio-mmio transport (virtio 1.2 §4.2), version 2 and legacy version 1,
 * driven the way a guest driver does: register accesses through the
 * MMIO bus (vmm/bus.h), rings in fake guest RAM. */
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "tests/unit/virtio_test_driver.h"
#include "virtio/mmio.h"
#include "virtio/rng.h"
#include "vmm/bus.h"

#define BASE 0xd0000000ull
#define F_V1 VIRTIO_BIT(VIRTIO_F_VERSION_1)

static struct vtd drv;
static struct vtd_echo echo;
static struct virtio_rng rng;
static struct virtio_mmio mmio;
static struct bus bus;
static struct vtd_vq vq;
static int irq_level, irq_raises;
static bool have_rng, have_echo;

static void record_irq(void *opaque, int level)
{
	(void)opaque;
	__atomic_store_n(&irq_level, level, __ATOMIC_SEQ_CST);
	if (level)
		__atomic_fetch_add(&irq_raises, 1, __ATOMIC_SEQ_CST);
}

static uint32_t rd(uint64_t off)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_read(&bus, BASE + off, 4, &v), 0);
	return (uint32_t)v;
}

static void wr(uint64_t off, uint32_t v)
{
	ck_assert_int_eq(bus_write(&bus, BASE + off, 4, v), 0);
}

static void setup_with(bool echo_dev, bool legacy)
{
	struct virtio_device *dev;

	irq_level = irq_raises = 0;
	have_rng = have_echo = false;
	ck_assert_int_eq(vtd_init(&drv), 0);
	ck_assert_int_eq(bus_init(&bus, "mmio"), 0);
	if (echo_dev) {
		ck_assert_int_eq(vtd_echo_init(&echo, &drv, 2, 16), 0);
		dev = &echo.vdev;
		have_echo = true;
	} else {
		ck_assert_int_eq(virtio_rng_init(&rng, "rng0", &drv.mem), 0);
		dev = &rng.vdev;
		ck_assert_int_eq(virtio_device_start(dev), 0);
		have_rng = true;
	}
	ck_assert_int_eq(virtio_mmio_init(&mmio, dev, legacy, record_irq, NULL), 0);
	ck_assert_int_eq(bus_register(&bus, BASE, VIRTIO_MMIO_SIZE,
				      &virtio_mmio_bus_ops, &mmio, "virtio-mmio"),
			 0);
}

static void setup_rng(void) { setup_with(false, false); }
static void setup_echo(void) { setup_with(true, false); }
static void setup_legacy_rng(void) { setup_with(false, true); }

static void teardown(void)
{
	if (have_rng)
		virtio_rng_destroy(&rng);
	if (have_echo)
		vtd_echo_destroy(&echo);
	bus_destroy(&bus);
	vtd_vq_destroy(&vq);
	vtd_destroy(&drv);
}

static struct virtio_device *dev(void)
{
	return mmio.dev;
}

/* §3.1.1 + §4.2.3.1/§4.2.3.2 driver sequence, version 2. */
static void driver_init(uint64_t features, unsigned qidx, uint16_t size)
{
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 2);
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_FEATURES_OK);
	ck_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);

	ck_assert_int_eq(vtd_vq_init(&vq, &drv, size, false, false), 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, qidx);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	ck_assert_uint_ge(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), size);
	wr(VIRTIO_MMIO_QUEUE_NUM, size);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)vq.desc);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(vq.desc >> 32));
	wr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)vq.driver);
	wr(VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(vq.driver >> 32));
	wr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)vq.device);
	wr(VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(vq.device >> 32));
}

static void queue_ready_and_go(void)
{
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	wr(VIRTIO_MMIO_STATUS, rd(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK);
	virtio_device_sync(dev());
}

static void notify_and_wait(unsigned qidx)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, qidx);
	virtio_device_sync(dev());
}

static uint64_t add_writable(uint32_t len)
{
	uint64_t gpa = vtd_alloc(&drv, len, 8);
	struct vtd_sg sg = { gpa, len, true };

	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	return gpa;
}

/* ---- §4.2.2.1 Device Requirements: MMIO Device Register Layout ---- */

START_TEST(test_4_2_2_1_device_must_return_magic_value)
{
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
}
END_TEST

START_TEST(test_4_2_2_1_device_must_return_version_2)
{
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 2);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
}
END_TEST

START_TEST(test_4_2_2_1_device_must_present_events_until_acknowledged)
{
	uint32_t id, len;

	driver_init(F_V1, 0, 8);
	queue_ready_and_go();
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	add_writable(16);
	notify_and_wait(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	/* Used buffer event: bit 0, line asserted; nothing else set. */
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	ck_assert_int_eq(irq_level, 1);
	/* Acknowledging another bit leaves it pending. */
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	ck_assert_int_eq(irq_level, 1);
	/* Config event: bit 1 joins. */
	virtio_config_changed(dev());
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			  VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	ck_assert_int_eq(irq_level, 1);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	ck_assert_int_eq(irq_level, 0);
}
END_TEST

START_TEST(test_4_2_2_1_device_must_clear_interrupts_and_queue_ready_on_reset)
{
	driver_init(F_V1, 0, 8);
	queue_ready_and_go();
	add_writable(16);
	notify_and_wait(0);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	ck_assert_int_eq(irq_level, 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
}
END_TEST

START_TEST(test_4_2_2_1_device_must_change_config_generation)
{
	uint32_t g0 = rd(VIRTIO_MMIO_CONFIG_GENERATION);
	uint64_t b = 0;

	vtd_echo_change_config(&echo, 0x99);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_CONFIG_GENERATION), g0);
	ck_assert_int_eq(bus_read(&bus, BASE + VIRTIO_MMIO_CONFIG, 1, &b), 0);
	ck_assert_uint_eq(b, 0x99);
}
END_TEST

START_TEST(test_4_2_2_1_device_must_not_access_queue_when_queue_ready_is_0)
{
	uint32_t id, len;

	driver_init(F_V1, 0, 8);
	/* Queue registers written, QueueReady never set. */
	wr(VIRTIO_MMIO_STATUS, rd(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	add_writable(16);
	notify_and_wait(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 0);
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 0);
	/* And after QueueReady goes back to 0. */
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	notify_and_wait(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	add_writable(16);
	notify_and_wait(0);
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 1);
}
END_TEST

/* ---- §4.2.2 register behaviour ---- */

START_TEST(test_4_2_2_device_features_by_selector)
{
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES),
			  (uint32_t)dev()->device_features);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES) & 1, 1); /* VERSION_1 */
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
}
END_TEST

START_TEST(test_4_2_2_queue_num_max_is_0_for_missing_queue)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTIO_RNG_QUEUE_SIZE);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	/* Writes to a missing queue go nowhere. */
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
}
END_TEST

START_TEST(test_4_2_2_queue_registers_frozen_while_ready)
{
	driver_init(F_V1, 0, 8);
	queue_ready_and_go();
	wr(VIRTIO_MMIO_QUEUE_NUM, 4);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
	ck_assert_uint_eq(dev()->queues[0].size, 8);
	ck_assert_uint_eq(dev()->queues[0].desc_addr, vq.desc);
}
END_TEST

START_TEST(test_4_2_2_config_space_byte_and_word_access)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_read(&bus, BASE + VIRTIO_MMIO_CONFIG + 2, 1, &v), 0);
	ck_assert_uint_eq(v, 0xC2);
	ck_assert_int_eq(bus_read(&bus, BASE + VIRTIO_MMIO_CONFIG + 4, 2, &v), 0);
	ck_assert_uint_eq(v, 0xC5C4);
	ck_assert_int_eq(bus_read(&bus, BASE + VIRTIO_MMIO_CONFIG + 8, 8, &v), 0);
	ck_assert_uint_eq(v, 0xCFCECDCCCBCAC9C8ull);
	/* Beyond the device's 16 bytes: zeros, no crash. */
	ck_assert_int_eq(bus_read(&bus, BASE + VIRTIO_MMIO_CONFIG + 15, 4, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(bus_write(&bus, BASE + VIRTIO_MMIO_CONFIG + 8, 2, 0xbeef), 0);
	ck_assert_uint_eq(echo.config[8], 0xef);
	ck_assert_uint_eq(echo.config[9], 0xbe);
}
END_TEST

START_TEST(test_4_2_2_shared_memory_registers_report_no_region)
{
	wr(VIRTIO_MMIO_SHM_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffffu);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_LEN_HIGH), 0xffffffffu);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_BASE_LOW), 0xffffffffu);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_BASE_HIGH), 0xffffffffu);
}
END_TEST

START_TEST(test_4_2_2_2_narrow_or_misaligned_register_access_is_harmless)
{
	uint64_t v = 0x1234;

	ck_assert_int_eq(bus_read(&bus, BASE + VIRTIO_MMIO_MAGIC_VALUE, 2, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(bus_read(&bus, BASE + 1, 4, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(bus_write(&bus, BASE + VIRTIO_MMIO_STATUS, 1, 1), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	/* Writes to read-only registers are ignored. */
	wr(VIRTIO_MMIO_MAGIC_VALUE, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
}
END_TEST

START_TEST(test_4_2_3_rng_round_trip_version_2)
{
	uint64_t buf;
	uint32_t id, len;

	driver_init(F_V1, 0, 8);
	queue_ready_and_go();
	buf = add_writable(64);
	ck_assert(vtd_vq_should_kick(&vq));
	notify_and_wait(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 64);
	ck_assert_ptr_nonnull(vtd_ptr(&drv, buf, 64));
	ck_assert_int_eq(irq_raises, 1);
}
END_TEST

START_TEST(test_4_2_3_bad_queue_setup_sets_needs_reset)
{
	driver_init(F_V1, 0, 8);
	wr(VIRTIO_MMIO_QUEUE_NUM, 7); /* not a power of 2 */
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	ck_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}
END_TEST

/* ---- §4.2.4 Legacy interface ---- */

static void legacy_init(uint16_t size, uint32_t align)
{
	uint64_t base;

	ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 1);
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, rd(VIRTIO_MMIO_DEVICE_FEATURES) &
					 ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	wr(VIRTIO_MMIO_GUEST_PAGE_SIZE, 4096);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_PFN), 0);
	ck_assert_uint_ge(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), size);
	/* §2.7.2 legacy layout: one contiguous area, used ring aligned. */
	base = vtd_alloc(&drv, 3 * 4096, 4096);
	memset(&vq, 0, sizeof(vq));
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, size, false, false), 0);
	vq.desc = base;
	vq.driver = base + 16ull * size;
	vq.device = (vq.driver + 6 + 2ull * size + align - 1) & ~(uint64_t)(align - 1);
	wr(VIRTIO_MMIO_QUEUE_NUM, size);
	wr(VIRTIO_MMIO_QUEUE_ALIGN, align);
	wr(VIRTIO_MMIO_QUEUE_PFN, (uint32_t)(base / 4096));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_DRIVER_OK);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				  VIRTIO_STATUS_DRIVER_OK);
}

START_TEST(test_4_2_4_legacy_device_returns_version_1)
{
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 1);
	/* No VERSION_1 (or any bit above 31) on the legacy interface. */
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
}
END_TEST

START_TEST(test_4_2_4_legacy_rng_round_trip_with_queue_pfn)
{
	uint32_t id, len;

	legacy_init(16, 4096);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_PFN), vq.desc / 4096);
	add_writable(32);
	notify_and_wait(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 32);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
}
END_TEST

START_TEST(test_4_2_4_legacy_small_queue_align)
{
	uint32_t id, len;

	legacy_init(8, 64);
	add_writable(8);
	notify_and_wait(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
}
END_TEST

START_TEST(test_4_2_4_legacy_reset_sets_queue_pfn_to_0)
{
	legacy_init(16, 4096);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_QUEUE_PFN), 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_PFN), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
}
END_TEST

START_TEST(test_4_2_4_legacy_pfn_0_stops_the_queue)
{
	legacy_init(16, 4096);
	wr(VIRTIO_MMIO_QUEUE_PFN, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_PFN), 0);
	add_writable(8);
	notify_and_wait(0);
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 0);
}
END_TEST

START_TEST(test_4_2_4_legacy_pfn_outside_ram_needs_reset)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_GUEST_PAGE_SIZE, 4096);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, 16);
	wr(VIRTIO_MMIO_QUEUE_ALIGN, 4096);
	wr(VIRTIO_MMIO_QUEUE_PFN, 0xfffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_PFN), 0);
	ck_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}
END_TEST

/* ---- a driver that writes garbage everywhere (both versions) ---- */

static uint64_t rnd_value(unsigned *seed)
{
	switch (rand_r(seed) % 6) {
	case 0: return rand_r(seed) % 4;
	case 1: return 1u << (rand_r(seed) % 16);
	case 2: return (unsigned)rand_r(seed) % VTD_RAM_SIZE & ~0xFFFull;
	case 3: return VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		       (rand_r(seed) % 2 ? VIRTIO_STATUS_FEATURES_OK : 0) |
		       (rand_r(seed) % 2 ? VIRTIO_STATUS_DRIVER_OK : 0);
	case 4: return 0xFFFFFFFFu;
	default: return (uint32_t)rand_r(seed) * 2654435761u;
	}
}

/* Queue 0 set up correctly over garbage rings, then kicked. */
static void garbage_queue_up(unsigned *seed)
{
	uint64_t a[3];
	uint32_t f0 = rd(VIRTIO_MMIO_DEVICE_FEATURES);

	for (int k = 0; k < 3; k++)
		a[k] = ((unsigned)rand_r(seed) % (VTD_RAM_SIZE - 0x40000)) &
		       ~0xFFFull;
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, f0 & (uint32_t)rand_r(seed));
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, 1u << (rand_r(seed) % 7));
	if (mmio.legacy) {
		wr(VIRTIO_MMIO_GUEST_PAGE_SIZE, 4096);
		wr(VIRTIO_MMIO_QUEUE_ALIGN, 1u << (2 + rand_r(seed) % 11));
		wr(VIRTIO_MMIO_QUEUE_PFN, (uint32_t)(a[0] / 4096));
	} else {
		wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
		wr(VIRTIO_MMIO_DRIVER_FEATURES,
		   1 | (rand_r(seed) % 2 ? 1u << (VIRTIO_F_RING_PACKED - 32) : 0));
		wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE |
					       VIRTIO_STATUS_DRIVER |
					       VIRTIO_STATUS_FEATURES_OK);
		wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)a[0]);
		wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		wr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)a[1]);
		wr(VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
		wr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)a[2]);
		wr(VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wr(VIRTIO_MMIO_STATUS, rd(VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	notify_and_wait(0);
}

static void random_register_writes(void)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	unsigned seed = mmio.legacy ? 0x1e9ac7u : 0x3a11ceu;
	uint32_t *ram = vtd_ptr(&drv, 0, VTD_RAM_SIZE);
	uint32_t id, len;

	ck_assert_ptr_nonnull(ram);
	for (uint64_t w = 0; w < VTD_RAM_SIZE / 4; w++)
		ram[w] = (uint32_t)rand_r(&seed) * 2654435761u;
	for (int i = 0; i < 20000; i++) {
		uint64_t off, out;
		unsigned size = 4;

		if (rand_r(&seed) % 8) {
			off = 4 * (uint64_t)(rand_r(&seed) % 0x40);
		} else { /* anywhere in the window, any width */
			off = (uint64_t)rand_r(&seed) % VIRTIO_MMIO_SIZE;
			size = sizes[rand_r(&seed) % 4];
			if (off + size > VIRTIO_MMIO_SIZE)
				off = VIRTIO_MMIO_SIZE - size;
		}
		bus_write(&bus, BASE + off, size, rnd_value(&seed));
		bus_read(&bus, BASE + off, size, &out);
		if (i % 250 == 249) {
			virtio_device_sync(dev());
			if (rand_r(&seed) % 2)
				garbage_queue_up(&seed);
		}
	}
	virtio_device_sync(dev());
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	/* A reset brings it back for a well-behaved driver. */
	if (mmio.legacy) {
		legacy_init(8, 4096);
	} else {
		driver_init(F_V1, 0, 8);
		queue_ready_and_go();
	}
	add_writable(32);
	notify_and_wait(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 32);
}

START_TEST(test_malformed_random_register_writes)
{
	random_register_writes();
}
END_TEST

START_TEST(test_malformed_random_register_writes_legacy)
{
	random_register_writes();
}
END_TEST

START_TEST(test_3_1_2_legacy_device_must_support_use_before_driver_ok)
{
	uint64_t base;
	uint32_t id, len;

	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 0);
	wr(VIRTIO_MMIO_GUEST_PAGE_SIZE, 4096);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	base = vtd_alloc(&drv, 3 * 4096, 4096);
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 8, false, false), 0);
	vq.desc = base;
	vq.driver = base + 16 * 8;
	vq.device = base + 4096;
	wr(VIRTIO_MMIO_QUEUE_NUM, 8);
	wr(VIRTIO_MMIO_QUEUE_ALIGN, 4096);
	wr(VIRTIO_MMIO_QUEUE_PFN, (uint32_t)(base / 4096));
	/* No DRIVER_OK: the legacy driver already uses the queue. */
	add_writable(24);
	notify_and_wait(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 24);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & 1, 1);
	ck_assert(!(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK));
}
END_TEST

static Suite *virtio_mmio_suite(void)
{
	Suite *s = suite_create("virtio_mmio");
	TCase *tc = tcase_create("mmio-rng");
	TCase *te = tcase_create("mmio-echo");
	TCase *tl = tcase_create("mmio-legacy");

	tcase_add_checked_fixture(tc, setup_rng, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_4_2_2_1_device_must_return_magic_value);
	tcase_add_test(tc, test_4_2_2_1_device_must_return_version_2);
	tcase_add_test(tc, test_4_2_2_1_device_must_present_events_until_acknowledged);
	tcase_add_test(tc, test_4_2_2_1_device_must_clear_interrupts_and_queue_ready_on_reset);
	tcase_add_test(tc, test_4_2_2_1_device_must_not_access_queue_when_queue_ready_is_0);
	tcase_add_test(tc, test_4_2_2_device_features_by_selector);
	tcase_add_test(tc, test_4_2_2_queue_num_max_is_0_for_missing_queue);
	tcase_add_test(tc, test_4_2_2_queue_registers_frozen_while_ready);
	tcase_add_test(tc, test_4_2_2_shared_memory_registers_report_no_region);
	tcase_add_test(tc, test_4_2_2_2_narrow_or_misaligned_register_access_is_harmless);
	tcase_add_test(tc, test_4_2_3_rng_round_trip_version_2);
	tcase_add_test(tc, test_4_2_3_bad_queue_setup_sets_needs_reset);
	tcase_add_test(tc, test_malformed_random_register_writes);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(te, setup_echo, teardown);
	tcase_set_timeout(te, 30);
	tcase_add_test(te, test_4_2_2_1_device_must_change_config_generation);
	tcase_add_test(te, test_4_2_2_config_space_byte_and_word_access);
	suite_add_tcase(s, te);

	tcase_add_checked_fixture(tl, setup_legacy_rng, teardown);
	tcase_set_timeout(tl, 30);
	tcase_add_test(tl, test_4_2_4_legacy_device_returns_version_1);
	tcase_add_test(tl, test_4_2_4_legacy_rng_round_trip_with_queue_pfn);
	tcase_add_test(tl, test_4_2_4_legacy_small_queue_align);
	tcase_add_test(tl, test_4_2_4_legacy_reset_sets_queue_pfn_to_0);
	tcase_add_test(tl, test_4_2_4_legacy_pfn_0_stops_the_queue);
	tcase_add_test(tl, test_4_2_4_legacy_pfn_outside_ram_needs_reset);
	tcase_add_test(tl, test_malformed_random_register_writes_legacy);
	tcase_add_test(tl, test_3_1_2_legacy_device_must_support_use_before_driver_ok);
	suite_add_tcase(s, tl);
	return s;
}

UNIT_MAIN(virtio_mmio_suite)
