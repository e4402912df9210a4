/* virtio over PCI (virtio 1.2 §4.1): modern, transitional and legacy,
 * driven the way a guest driver does -- configuration space through
 * ECAM, the BARs through the MMIO and PIO buses at the addresses the PCI
 * host assigned -- with rings in fake guest RAM and a fake platform that
 * records MSI-X messages, INTx and ioeventfds.  One test per device-side
 * requirement, named after its section. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/fake_pci_platform.h"
#include "tests/unit/unit.h"
#include "tests/unit/virtio_test_driver.h"
#include "virtio/pci.h"
#include "virtio/rng.h"
#include "vmm/bus.h"
#include "vmm/pci.h"

#define ECAM    0xE0000000ull
#define SLOT    1
#define F_V1    VIRTIO_BIT(VIRTIO_F_VERSION_1)

/* ---- fixture ---- */

static struct vtd drv;
static struct vtd_echo echo;
static struct virtio_rng rng;
static struct virtio_pci vp;
static struct pci_host host;
static struct bus pio, mmio;
static struct vtd_vq vq;
static bool have_rng, have_echo;

static void setup_with(bool echo_dev, enum virtio_pci_mode mode)
{
	struct virtio_device *dev;

	fake_pci_reset();
	memset(&vq, 0, sizeof(vq));
	have_rng = have_echo = false;
	ck_assert_int_eq(vtd_init(&drv), 0);
	ck_assert_int_eq(bus_init(&pio, "pio"), 0);
	ck_assert_int_eq(bus_init(&mmio, "mmio"), 0);
	ck_assert_int_eq(pci_host_init(&host, &pio, &mmio,
				       &(struct pci_host_config){
					       .ecam_base = ECAM, .ecam_buses = 1,
					       .mmio_base = 0xC0000000ull,
					       .mmio_size = 0x10000000ull,
					       .io_base = 0x1000 },
				       &fake_pci_ops, NULL),
			 0);
	if (echo_dev) {
		ck_assert_int_eq(vtd_echo_init(&echo, &drv, 2, 16), 0);
		/* Pose as a console so the legacy interface exists; the
		 * echo's behaviour is what the tests look at. */
		echo.vdev.device_id = VIRTIO_ID_CONSOLE;
		dev = &echo.vdev;
		have_echo = true;
	} else {
		ck_assert_int_eq(virtio_rng_init(&rng, "rng0", &drv.mem), 0);
		dev = &rng.vdev;
		ck_assert_int_eq(virtio_device_start(dev), 0);
		have_rng = true;
	}
	ck_assert_int_eq(virtio_pci_init(&vp, dev, mode), 0);
	ck_assert_int_eq(virtio_pci_plug(&vp, &host, SLOT, 16), 0);
	ck_assert_int_eq(pci_host_assign_bars(&host), 0);
}

static void setup_rng(void) { setup_with(false, VIRTIO_PCI_MODERN); }
static void setup_echo(void) { setup_with(true, VIRTIO_PCI_MODERN); }
static void setup_trans_rng(void) { setup_with(false, VIRTIO_PCI_TRANSITIONAL); }
static void setup_trans_echo(void) { setup_with(true, VIRTIO_PCI_TRANSITIONAL); }
static void setup_legacy_rng(void) { setup_with(false, VIRTIO_PCI_LEGACY); }

static void teardown(void)
{
	if (have_rng)
		virtio_rng_destroy(&rng);
	if (have_echo)
		vtd_echo_destroy(&echo);
	pci_host_destroy(&host);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	vtd_vq_destroy(&vq);
	vtd_destroy(&drv);
}

static struct virtio_device *dev(void)
{
	return vp.dev;
}

/* ---- config space ---- */

static uint32_t cfg_r(unsigned off, unsigned size)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_read(&mmio, ECAM + (SLOT << 15) + off, size, &v), 0);
	return (uint32_t)v;
}

static void cfg_w(unsigned off, unsigned size, uint32_t v)
{
	ck_assert_int_eq(bus_write(&mmio, ECAM + (SLOT << 15) + off, size, v), 0);
}

/* The |n|th (0-based) vendor capability of |type|; 0 when none. */
static unsigned find_cap(uint8_t type)
{
	unsigned guard = 0;

	for (unsigned c = cfg_r(PCI_CAPABILITY_LIST, 1); c && guard < 48;
	     c = cfg_r(c + 1, 1), guard++)
		if (cfg_r(c, 1) == PCI_CAP_ID_VNDR && cfg_r(c + 3, 1) == type)
			return c;
	return 0;
}

static unsigned find_msix_cap(void)
{
	for (unsigned c = cfg_r(PCI_CAPABILITY_LIST, 1); c; c = cfg_r(c + 1, 1))
		if (cfg_r(c, 1) == PCI_CAP_ID_MSIX)
			return c;
	return 0;
}

static uint64_t bar_base(unsigned bar)
{
	uint32_t lo = cfg_r(PCI_BAR0 + 4 * bar, 4);

	if (lo & PCI_BAR_IO)
		return lo & ~3u;
	if (lo & PCI_BAR_MEM_TYPE_64)
		return (lo & ~0xFull) |
		       (uint64_t)cfg_r(PCI_BAR0 + 4 * bar + 4, 4) << 32;
	return lo & ~0xFull;
}

/* Address of the structure a virtio capability points at. */
static uint64_t cap_addr(uint8_t type)
{
	unsigned c = find_cap(type);

	ck_assert_uint_ne(c, 0);
	return bar_base(cfg_r(c + VIRTIO_PCI_CAP_BAR_OFF, 1)) +
	       cfg_r(c + VIRTIO_PCI_CAP_OFFSET_OFF, 4);
}

/* ---- register access ---- */

static uint64_t mem_r(uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_read(&mmio, addr, size, &v), 0);
	return v;
}

static void mem_w(uint64_t addr, unsigned size, uint64_t v)
{
	ck_assert_int_eq(bus_write(&mmio, addr, size, v), 0);
}

static uint64_t cc_r(unsigned off, unsigned size)
{
	return mem_r(cap_addr(VIRTIO_PCI_CAP_COMMON_CFG) + off, size);
}

static void cc_w(unsigned off, unsigned size, uint64_t v)
{
	mem_w(cap_addr(VIRTIO_PCI_CAP_COMMON_CFG) + off, size, v);
}

static uint64_t leg_r(unsigned off, unsigned size)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_read(&pio, bar_base(0) + off, size, &v), 0);
	return v;
}

static void leg_w(unsigned off, unsigned size, uint64_t v)
{
	ck_assert_int_eq(bus_write(&pio, bar_base(0) + off, size, v), 0);
}

static uint8_t isr_read(void)
{
	return (uint8_t)mem_r(cap_addr(VIRTIO_PCI_CAP_ISR_CFG), 1);
}

/* ---- a modern driver ---- */

static void modern_negotiate(uint64_t features)
{
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_STATUS, 1), 0);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1,
	     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_w(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	cc_w(VIRTIO_PCI_COMMON_GF, 4, (uint32_t)features);
	cc_w(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	cc_w(VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(features >> 32));
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1,
	     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		     VIRTIO_STATUS_FEATURES_OK);
	ck_assert(cc_r(VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK);
}

static void modern_queue(unsigned qidx, uint16_t size, uint16_t vector)
{
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, size, false, false), 0);
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, qidx);
	ck_assert_uint_ge(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), size);
	cc_w(VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
	cc_w(VIRTIO_PCI_COMMON_Q_MSIX, 2, vector);
	cc_w(VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)vq.desc);
	cc_w(VIRTIO_PCI_COMMON_Q_DESCHI, 4, (uint32_t)(vq.desc >> 32));
	cc_w(VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)vq.driver);
	cc_w(VIRTIO_PCI_COMMON_Q_AVAILHI, 4, (uint32_t)(vq.driver >> 32));
	cc_w(VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)vq.device);
	cc_w(VIRTIO_PCI_COMMON_Q_USEDHI, 4, (uint32_t)(vq.device >> 32));
	cc_w(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
}

static void driver_ok(void)
{
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1,
	     cc_r(VIRTIO_PCI_COMMON_STATUS, 1) | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(cc_r(VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_DRIVER_OK);
	virtio_device_sync(dev());
}

static void modern_kick(unsigned qidx)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_NOTIFY_CFG);
	uint32_t mult = cfg_r(c + 16, 4);
	uint16_t noff;

	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, qidx);
	noff = (uint16_t)cc_r(VIRTIO_PCI_COMMON_Q_NOFF, 2);
	mem_w(cap_addr(VIRTIO_PCI_CAP_NOTIFY_CFG) + (uint64_t)noff * mult, 2,
	      qidx);
	virtio_device_sync(dev());
}

static uint64_t add_writable(uint32_t len)
{
	uint64_t gpa = vtd_alloc(&drv, len, 8);
	struct vtd_sg sg = { gpa, len, true };

	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	return gpa;
}

static void msix_enable(unsigned nr_vectors)
{
	unsigned cap = find_msix_cap();
	uint64_t table = bar_base(VIRTIO_PCI_MSIX_BAR);

	cfg_w(PCI_COMMAND, 2,
	      cfg_r(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	cfg_w(cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
	for (unsigned v = 0; v < nr_vectors; v++) {
		mem_w(table + 16 * v, 4, 0xFEE00000u);
		mem_w(table + 16 * v + 4, 4, 0);
		mem_w(table + 16 * v + 8, 4, 0x40 + v);
		mem_w(table + 16 * v + 12, 4, 0); /* unmask */
	}
}

/* ---- §4.1.2 PCI Device Discovery ---- */

START_TEST(test_4_1_2_2_device_must_have_vendor_id_0x1af4)
{
	ck_assert_uint_eq(cfg_r(PCI_VENDOR_ID, 2), 0x1AF4);
}
END_TEST

START_TEST(test_4_1_2_2_device_must_have_device_id_0x1040_plus_type)
{
	ck_assert_uint_eq(cfg_r(PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_RNG);
	/* SHOULDs for non-transitional devices: revision >= 1, subsystem
	 * device ID >= 0x40. */
	ck_assert_uint_ge(cfg_r(PCI_REVISION_ID, 1), 1);
	ck_assert_uint_ge(cfg_r(PCI_SUBSYSTEM_ID, 2), 0x40);
}
END_TEST

START_TEST(test_4_1_2_3_transitional_device_must_have_revision_0_and_legacy_ids)
{
	ck_assert_uint_eq(cfg_r(PCI_VENDOR_ID, 2), 0x1AF4);
	ck_assert_uint_eq(cfg_r(PCI_DEVICE_ID, 2), 0x1005); /* entropy */
	ck_assert_uint_eq(cfg_r(PCI_REVISION_ID, 1), 0);
	ck_assert_uint_eq(cfg_r(PCI_SUBSYSTEM_ID, 2), VIRTIO_ID_RNG);
	ck_assert_uint_eq(virtio_pci_transitional_id(VIRTIO_ID_NET), 0x1000);
	ck_assert_uint_eq(virtio_pci_transitional_id(VIRTIO_ID_BLOCK), 0x1001);
	ck_assert_uint_eq(virtio_pci_transitional_id(VIRTIO_ID_CONSOLE), 0x1003);
	ck_assert_uint_eq(virtio_pci_transitional_id(0x7e57), 0);
}
END_TEST

/* ---- §4.1.3 PCI Device Layout ---- */

START_TEST(test_4_1_3_1_device_must_allow_independent_access_to_64bit_halves)
{
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x11223340);
	cc_w(VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0x00000001);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0x11223340);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_DESCHI, 4), 1);
	cc_w(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x55667780);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_DESCHI, 4), 1);
	ck_assert_uint_eq(dev()->queues[0].desc_addr, 0x155667780ull);
	cc_w(VIRTIO_PCI_COMMON_Q_USEDHI, 4, 2);
	cc_w(VIRTIO_PCI_COMMON_Q_USEDLO, 4, 0x1000);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_USEDLO, 8), 0x200001000ull);
}
END_TEST

/* ---- §4.1.4 Virtio Structure PCI Capabilities ---- */

START_TEST(test_4_1_4_1_device_must_include_extra_data_in_cap_len)
{
	unsigned c;

	c = find_cap(VIRTIO_PCI_CAP_COMMON_CFG);
	ck_assert_uint_eq(cfg_r(c + 2, 1), VIRTIO_PCI_CAP_SIZE);
	c = find_cap(VIRTIO_PCI_CAP_NOTIFY_CFG);
	ck_assert_uint_eq(cfg_r(c + 2, 1), 20); /* + notify_off_multiplier */
	c = find_cap(VIRTIO_PCI_CAP_PCI_CFG);
	ck_assert_uint_eq(cfg_r(c + 2, 1), 20); /* + pci_cfg_data */
	/* Every capability lies within config space and the next one
	 * starts after it ends. */
	for (c = cfg_r(PCI_CAPABILITY_LIST, 1); c; c = cfg_r(c + 1, 1)) {
		unsigned next = cfg_r(c + 1, 1);

		if (cfg_r(c, 1) == PCI_CAP_ID_VNDR && next)
			ck_assert_uint_ge(next, c + cfg_r(c + 2, 1));
	}
}
END_TEST

START_TEST(test_4_1_4_3_1_device_must_present_common_cfg_capability)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_COMMON_CFG);

	ck_assert_uint_ne(c, 0);
	/* offset MUST be 4-byte aligned; the structure fits the BAR. */
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CAP_OFFSET_OFF, 4) % 4, 0);
	ck_assert_uint_ge(cfg_r(c + VIRTIO_PCI_CAP_LENGTH_OFF, 4), 0x38);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CAP_BAR_OFF, 1),
			  VIRTIO_PCI_MODERN_BAR);
	/* The first common capability is the one a driver uses. */
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_NUMQ, 2), 1);
}
END_TEST

START_TEST(test_4_1_4_3_1_device_must_present_offered_features_by_select)
{
	cc_w(VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_DF, 4),
			  (uint32_t)dev()->device_features);
	cc_w(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_DF, 4),
			  (uint32_t)(dev()->device_features >> 32));
	ck_assert(cc_r(VIRTIO_PCI_COMMON_DF, 4) & 1); /* VERSION_1 */
	for (uint32_t sel = 2; sel < 6; sel++) {
		cc_w(VIRTIO_PCI_COMMON_DFSELECT, 4, sel);
		ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_DF, 4), 0);
	}
	cc_w(VIRTIO_PCI_COMMON_DFSELECT, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_DF, 4), 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_DFSELECT, 4), 0xFFFFFFFFu);
}
END_TEST

START_TEST(test_4_1_4_3_1_device_must_present_valid_driver_features)
{
	uint64_t want = F_V1 | VIRTIO_BIT(VIRTIO_F_EVENT_IDX);

	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1,
	     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_w(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	cc_w(VIRTIO_PCI_COMMON_GF, 4, (uint32_t)want);
	cc_w(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	cc_w(VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(want >> 32));
	cc_w(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_GF, 4), (uint32_t)want);
	cc_w(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_GF, 4), (uint32_t)(want >> 32));
	cc_w(VIRTIO_PCI_COMMON_GFSELECT, 4, 5);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_GF, 4), 0);
}
END_TEST

START_TEST(test_4_1_4_3_1_device_must_present_changed_config_generation)
{
	uint64_t devcfg = cap_addr(VIRTIO_PCI_CAP_DEVICE_CFG);
	uint8_t g0 = (uint8_t)cc_r(VIRTIO_PCI_COMMON_CFGGENERATION, 1);

	ck_assert_uint_eq(mem_r(devcfg, 1), 0xC0);
	vtd_echo_change_config(&echo, 0x99);
	/* The driver reads the changed value, then the generation. */
	ck_assert_uint_eq(mem_r(devcfg, 1), 0x99);
	ck_assert_uint_ne(cc_r(VIRTIO_PCI_COMMON_CFGGENERATION, 1), g0);
	/* 256 changes between two reads must not alias to the old value. */
	g0 = (uint8_t)cc_r(VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	for (int i = 0; i < 256; i++)
		vtd_echo_change_config(&echo, (uint8_t)i);
	ck_assert_uint_eq(mem_r(devcfg, 1), 0xFF);
	ck_assert_uint_ne(cc_r(VIRTIO_PCI_COMMON_CFGGENERATION, 1), g0);
	/* No change: stable. */
	g0 = (uint8_t)cc_r(VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_CFGGENERATION, 1), g0);
}
END_TEST

START_TEST(test_4_1_4_3_1_device_must_reset_when_0_written_to_status)
{
	uint32_t id, len;

	modern_negotiate(F_V1);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	driver_ok();
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_STATUS, 1), 0);
	ck_assert_uint_eq(dev()->driver_features, 0);
	/* The reset device does not touch the old queue. */
	add_writable(16);
	modern_kick(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 0);
}
END_TEST

START_TEST(test_4_1_4_3_1_device_must_present_0_in_queue_enable_on_reset)
{
	modern_negotiate(F_V1);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	/* queue_size back to the maximum. */
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
	/* Writing 0 to queue_enable (forbidden to drivers) changes
	 * nothing. */
	modern_negotiate(F_V1);
	vtd_vq_destroy(&vq);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	cc_w(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
}
END_TEST

START_TEST(test_4_1_4_3_1_device_must_present_0_queue_size_for_unavailable_queue)
{
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	cc_w(VIRTIO_PCI_COMMON_Q_SIZE, 2, 8);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	cc_w(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0xFFFF);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_NO_VECTOR);
}
END_TEST

START_TEST(test_4_1_4_3_1_device_must_present_power_of_2_queue_size)
{
	modern_negotiate(F_V1);
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
	cc_w(VIRTIO_PCI_COMMON_Q_SIZE, 2, 100);       /* not a power of 2 */
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
	cc_w(VIRTIO_PCI_COMMON_Q_SIZE, 2, 1024);      /* above the maximum */
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
	cc_w(VIRTIO_PCI_COMMON_Q_SIZE, 2, 64);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
}
END_TEST

START_TEST(test_4_1_4_4_1_device_must_present_notify_capability)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_NOTIFY_CFG);
	uint32_t mult, length, offset;

	ck_assert_uint_ne(c, 0);
	offset = cfg_r(c + VIRTIO_PCI_CAP_OFFSET_OFF, 4);
	length = cfg_r(c + VIRTIO_PCI_CAP_LENGTH_OFF, 4);
	mult = cfg_r(c + 16, 4);
	ck_assert_uint_eq(offset % 2, 0);
	/* An even power of 2, or 0. */
	ck_assert(mult == 0 || ((mult & (mult - 1)) == 0 && mult % 2 == 0));
	ck_assert_uint_ge(length, 2);
	for (unsigned q = 0; q < dev()->nr_queues; q++) {
		cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		ck_assert_uint_ge(length,
				  cc_r(VIRTIO_PCI_COMMON_Q_NOFF, 2) * mult + 2);
	}
}
END_TEST

START_TEST(test_4_1_4_4_notify_ioeventfd_per_queue_follows_bar)
{
	uint64_t notify = cap_addr(VIRTIO_PCI_CAP_NOTIFY_CFG);
	unsigned found = 0;

	for (int i = 0; i < 16; i++)
		if (fake_pci.evfds[i].assigned && !fake_pci.evfds[i].pio &&
		    fake_pci.evfds[i].fd == virtio_queue_kick_fd(dev(), 0) &&
		    fake_pci.evfds[i].addr == notify)
			found++;
	ck_assert_uint_eq(found, 1);
	/* Move BAR4: the ioeventfd moves with it. */
	cfg_w(PCI_BAR0 + 4 * VIRTIO_PCI_MODERN_BAR, 4, 0xC8000000u);
	notify = cap_addr(VIRTIO_PCI_CAP_NOTIFY_CFG);
	ck_assert_uint_eq(notify, 0xC8000000u + VIRTIO_PCI_NOTIFY_OFFSET);
	found = 0;
	for (int i = 0; i < 16; i++)
		if (fake_pci.evfds[i].assigned && !fake_pci.evfds[i].pio &&
		    fake_pci.evfds[i].fd == virtio_queue_kick_fd(dev(), 0))
			found += fake_pci.evfds[i].addr == notify ? 1 : 100;
	ck_assert_uint_eq(found, 1);
}
END_TEST

START_TEST(test_4_1_4_5_1_device_must_present_isr_capability)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_ISR_CFG);

	ck_assert_uint_ne(c, 0);
	ck_assert_uint_ge(cfg_r(c + VIRTIO_PCI_CAP_LENGTH_OFF, 4), 1);
	ck_assert_uint_eq(isr_read(), 0);
}
END_TEST

START_TEST(test_4_1_4_5_1_device_must_set_config_bit_before_config_notification)
{
	modern_negotiate(F_V1);
	driver_ok();
	vtd_echo_change_config(&echo, 0x42);
	ck_assert_int_eq(fake_pci.intx_level, 1);
	ck_assert_uint_eq(isr_read(), VIRTIO_PCI_ISR_CONFIG);
	ck_assert_int_eq(fake_pci.intx_level, 0);
	/* With MSI-X too: the bit is set, the message goes to the config
	 * vector. */
	msix_enable(3);
	cc_w(VIRTIO_PCI_COMMON_MSIX, 2, 2);
	vtd_echo_change_config(&echo, 0x43);
	ck_assert_int_eq(fake_pci.msis[2].signals, 1);
	ck_assert_uint_eq(isr_read(), VIRTIO_PCI_ISR_CONFIG);
	ck_assert_int_eq(fake_pci.intx_level, 0);
}
END_TEST

START_TEST(test_4_1_4_5_1_device_must_set_queue_bit_without_msix)
{
	uint32_t id, len;

	modern_negotiate(F_V1);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	driver_ok();
	add_writable(32);
	modern_kick(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 32);
	ck_assert_int_eq(fake_pci.intx_level, 1);
	ck_assert_uint_eq(isr_read(), VIRTIO_PCI_ISR_QUEUE);
}
END_TEST

START_TEST(test_4_1_4_5_1_pci_status_interrupt_must_follow_isr)
{
	modern_negotiate(F_V1);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	driver_ok();
	ck_assert(!(cfg_r(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
	add_writable(8);
	modern_kick(0);
	ck_assert(cfg_r(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* Masked by INTX_DISABLE: the line drops, the status bit stays. */
	cfg_w(PCI_COMMAND, 2, cfg_r(PCI_COMMAND, 2) | PCI_COMMAND_INTX_DISABLE);
	ck_assert_int_eq(fake_pci.intx_level, 0);
	ck_assert(cfg_r(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	isr_read();
	ck_assert(!(cfg_r(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
}
END_TEST

START_TEST(test_4_1_4_5_1_device_must_reset_isr_on_read)
{
	modern_negotiate(F_V1);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	driver_ok();
	add_writable(8);
	modern_kick(0);
	ck_assert_uint_eq(isr_read(), VIRTIO_PCI_ISR_QUEUE);
	ck_assert_uint_eq(isr_read(), 0);
	ck_assert_int_eq(fake_pci.intx_level, 0);
}
END_TEST

START_TEST(test_4_1_4_6_device_must_present_device_cfg_capability)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_DEVICE_CFG);
	uint64_t devcfg;

	ck_assert_uint_ne(c, 0);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CAP_OFFSET_OFF, 4) % 4, 0);
	ck_assert_uint_ge(cfg_r(c + VIRTIO_PCI_CAP_LENGTH_OFF, 4),
			  VTD_ECHO_CONFIG_SIZE);
	devcfg = cap_addr(VIRTIO_PCI_CAP_DEVICE_CFG);
	ck_assert_uint_eq(mem_r(devcfg + 4, 4), 0xC7C6C5C4u);
	mem_w(devcfg + 8, 2, 0xBEEF);
	ck_assert_uint_eq(echo.config[8], 0xEF);
	ck_assert_uint_eq(echo.config[9], 0xBE);
	/* Beyond the device's config: zeros, no crash. */
	ck_assert_uint_eq(mem_r(devcfg + 0x100, 4), 0);
}
END_TEST

START_TEST(test_4_1_4_6_no_device_cfg_capability_without_config)
{
	/* The entropy device has no config: no capability for it. */
	ck_assert_uint_eq(find_cap(VIRTIO_PCI_CAP_DEVICE_CFG), 0);
}
END_TEST

/* ---- §4.1.4.9 PCI configuration access capability ---- */

static void cfg_window(unsigned bar, uint32_t offset, uint32_t len)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_PCI_CFG);

	cfg_w(c + VIRTIO_PCI_CAP_BAR_OFF, 1, bar);
	cfg_w(c + VIRTIO_PCI_CAP_OFFSET_OFF, 4, offset);
	cfg_w(c + VIRTIO_PCI_CAP_LENGTH_OFF, 4, len);
}

START_TEST(test_4_1_4_9_1_device_must_present_pci_cfg_capability)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_PCI_CFG);

	ck_assert_uint_ne(c, 0);
	/* bar, offset, length and data are writable; type is not. */
	cfg_window(VIRTIO_PCI_MODERN_BAR, 0x14, 1);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CAP_BAR_OFF, 1),
			  VIRTIO_PCI_MODERN_BAR);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CAP_OFFSET_OFF, 4), 0x14);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CAP_LENGTH_OFF, 4), 1);
	cfg_w(c + 3, 1, 1);
	ck_assert_uint_eq(cfg_r(c + 3, 1), VIRTIO_PCI_CAP_PCI_CFG);
}
END_TEST

START_TEST(test_4_1_4_9_1_device_must_execute_write_through_pci_cfg_data)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_PCI_CFG);

	/* device_status = ACKNOWLEDGE through the window (1 byte of the
	 * 4 written). */
	cfg_window(VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_COMMON_STATUS, 1);
	cfg_w(c + VIRTIO_PCI_CFG_DATA_OFF, 4, 0xFFFFFF01u);
	ck_assert_uint_eq(virtio_get_status(dev()), VIRTIO_STATUS_ACKNOWLEDGE);
	/* A 2-byte write: queue_select. */
	cfg_window(VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_COMMON_Q_SELECT, 2);
	cfg_w(c + VIRTIO_PCI_CFG_DATA_OFF, 4, 0x0000ABCD);
	ck_assert_uint_eq(vp.queue_select, 0xABCD);
	/* A 4-byte write into the device config. */
	cfg_window(VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_DEVICE_OFFSET + 8, 4);
	cfg_w(c + VIRTIO_PCI_CFG_DATA_OFF, 4, 0x44332211);
	ck_assert_uint_eq(echo.config[8], 0x11);
	ck_assert_uint_eq(echo.config[11], 0x44);
	/* A window outside the BAR does nothing and does not crash. */
	cfg_window(VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_MODERN_BAR_SIZE - 2, 4);
	cfg_w(c + VIRTIO_PCI_CFG_DATA_OFF, 4, 0);
	cfg_window(7, 0, 4);
	cfg_w(c + VIRTIO_PCI_CFG_DATA_OFF, 4, 0);
	cfg_window(VIRTIO_PCI_MODERN_BAR, 0, 3);
	cfg_w(c + VIRTIO_PCI_CFG_DATA_OFF, 4, 0);
}
END_TEST

START_TEST(test_4_1_4_9_1_device_must_execute_read_through_pci_cfg_data)
{
	unsigned c = find_cap(VIRTIO_PCI_CAP_PCI_CFG);

	cfg_window(VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_COMMON_NUMQ, 2);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CFG_DATA_OFF, 4) & 0xFFFF, 2);
	cfg_window(VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_DEVICE_OFFSET + 4, 4);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CFG_DATA_OFF, 4), 0xC7C6C5C4u);
	cfg_window(VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_DEVICE_OFFSET + 2, 1);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CFG_DATA_OFF + 0, 1), 0xC2);
	/* Reading ISR through the window clears it, like a BAR read. */
	modern_negotiate(F_V1);
	driver_ok();
	vtd_echo_change_config(&echo, 1);
	cfg_window(VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_ISR_OFFSET, 1);
	ck_assert_uint_eq(cfg_r(c + VIRTIO_PCI_CFG_DATA_OFF, 4) & 0xFF,
			  VIRTIO_PCI_ISR_CONFIG);
	ck_assert_uint_eq(isr_read(), 0);
}
END_TEST

/* ---- §4.1.5.1.2 MSI-X Vector Configuration ---- */

START_TEST(test_4_1_5_1_2_1_device_must_report_table_size)
{
	unsigned cap = find_msix_cap();

	ck_assert_uint_ne(cap, 0);
	/* nr_queues + 1 vectors, at least 2, at most 0x800. */
	ck_assert_uint_eq((cfg_r(cap + 2, 2) & PCI_MSIX_FLAGS_QSIZE) + 1,
			  dev()->nr_queues + 1);
	ck_assert_uint_ge((cfg_r(cap + 2, 2) & PCI_MSIX_FLAGS_QSIZE) + 1, 2);
}
END_TEST

START_TEST(test_4_1_5_1_2_1_device_must_support_mapping_any_event_to_any_vector)
{
	unsigned nvec = (cfg_r(find_msix_cap() + 2, 2) & PCI_MSIX_FLAGS_QSIZE) + 1;

	msix_enable(nvec);
	for (unsigned v = 0; v < nvec; v++) {
		cc_w(VIRTIO_PCI_COMMON_MSIX, 2, v);
		ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_MSIX, 2), v);
		for (unsigned q = 0; q < dev()->nr_queues; q++) {
			cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
			cc_w(VIRTIO_PCI_COMMON_Q_MSIX, 2, v);
			ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_MSIX, 2), v);
		}
	}
}
END_TEST

START_TEST(test_4_1_5_1_2_1_device_must_support_unmapping)
{
	msix_enable(3);
	cc_w(VIRTIO_PCI_COMMON_MSIX, 2, 1);
	cc_w(VIRTIO_PCI_COMMON_MSIX, 2, VIRTIO_NO_VECTOR);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_NO_VECTOR);
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	cc_w(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	cc_w(VIRTIO_PCI_COMMON_Q_MSIX, 2, VIRTIO_NO_VECTOR);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_NO_VECTOR);
}
END_TEST

START_TEST(test_4_1_5_1_2_1_device_must_unmap_all_events_on_reset)
{
	msix_enable(3);
	cc_w(VIRTIO_PCI_COMMON_MSIX, 2, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	cc_w(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_NO_VECTOR);
	for (unsigned q = 0; q < 2; q++) {
		cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_MSIX, 2),
				  VIRTIO_NO_VECTOR);
	}
}
END_TEST

START_TEST(test_4_1_5_1_2_1_device_must_report_mapping_failure_as_no_vector)
{
	msix_enable(3);
	cc_w(VIRTIO_PCI_COMMON_MSIX, 2, 3); /* table has 3 entries: 0..2 */
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_NO_VECTOR);
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_MSIX, 2, 0x7FF);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_NO_VECTOR);
}
END_TEST

/* ---- §4.1.5.3 / §4.1.5.4 notifications ---- */

START_TEST(test_4_1_5_3_msix_queue_vector_gets_used_buffer_notification)
{
	uint32_t id, len;

	modern_negotiate(F_V1);
	msix_enable(2);
	modern_queue(0, 8, 1);
	driver_ok();
	add_writable(64);
	modern_kick(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 64);
	ck_assert_int_eq(fake_pci.msis[1].signals, 1);
	ck_assert_uint_eq(fake_pci.msis[1].addr, 0xFEE00000u);
	ck_assert_uint_eq(fake_pci.msis[1].data, 0x41);
	ck_assert_int_eq(fake_pci.msis[0].signals, 0);
	/* MSI-X enabled: no INTx, no ISR queue bit. */
	ck_assert_int_eq(fake_pci.intx_level, 0);
	ck_assert_uint_eq(isr_read(), 0);
}
END_TEST

START_TEST(test_4_1_5_3_1_device_must_not_interrupt_queue_with_no_vector)
{
	uint32_t id, len;

	modern_negotiate(F_V1);
	msix_enable(2);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	driver_ok();
	add_writable(16);
	modern_kick(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_int_eq(fake_pci.msis[0].signals + fake_pci.msis[1].signals, 0);
	ck_assert_int_eq(fake_pci.intx_level, 0);
}
END_TEST

START_TEST(test_4_1_5_4_1_device_must_not_interrupt_config_with_no_vector)
{
	modern_negotiate(F_V1);
	msix_enable(3);
	cc_w(VIRTIO_PCI_COMMON_MSIX, 2, VIRTIO_NO_VECTOR);
	driver_ok();
	vtd_echo_change_config(&echo, 0x10);
	for (int v = 0; v < 3; v++)
		ck_assert_int_eq(fake_pci.msis[v].signals, 0);
	ck_assert_int_eq(fake_pci.intx_level, 0);
}
END_TEST

START_TEST(test_4_1_5_msix_masked_vector_is_delivered_on_unmask)
{
	uint32_t id, len;
	uint64_t table = bar_base(VIRTIO_PCI_MSIX_BAR);

	modern_negotiate(F_V1);
	msix_enable(2);
	mem_w(table + 16 + 12, 4, 1); /* mask vector 1 */
	modern_queue(0, 8, 1);
	driver_ok();
	add_writable(16);
	modern_kick(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_int_eq(fake_pci.msis[1].signals, 0);
	ck_assert_uint_eq(mem_r(table + VIRTIO_PCI_MSIX_PBA_OFFSET, 8), 2);
	mem_w(table + 16 + 12, 4, 0);
	ck_assert_int_eq(fake_pci.msis[1].signals, 1);
	ck_assert_uint_eq(mem_r(table + VIRTIO_PCI_MSIX_PBA_OFFSET, 8), 0);
}
END_TEST

/* ---- §4.1.4.10 / §4.1.5.1.1.1 legacy interface of transitional
 * devices, and legacy-only devices ---- */

static void legacy_driver_init(uint16_t *qsize)
{
	uint64_t base;
	uint16_t size;

	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, 0);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	leg_w(VIRTIO_PCI_LEGACY_GUEST_FEATURES, 4,
	      leg_r(VIRTIO_PCI_LEGACY_HOST_FEATURES, 4) &
		      ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_SEL, 2, 0);
	size = (uint16_t)leg_r(VIRTIO_PCI_LEGACY_QUEUE_NUM, 2);
	ck_assert_uint_gt(size, 0);
	/* §2.7.2 legacy layout, 4096-aligned used ring. */
	base = vtd_alloc(&drv, 16ull * size + 6 + 2ull * size + 4096 + 6 +
				       8ull * size + 4096, 4096);
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, size, false, false), 0);
	vq.desc = base;
	vq.driver = base + 16ull * size;
	vq.device = (vq.driver + 6 + 2ull * size + 4095) & ~4095ull;
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_PFN, 4, base / 4096);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_QUEUE_PFN, 4), base / 4096);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_DRIVER_OK);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_STATUS, 1),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				  VIRTIO_STATUS_DRIVER_OK);
	virtio_device_sync(dev());
	*qsize = size;
}

START_TEST(test_4_1_4_10_transitional_device_must_present_legacy_interface_in_bar0)
{
	uint16_t size;
	uint32_t id, len;

	/* BAR0 is the first I/O region. */
	ck_assert_uint_eq(cfg_r(PCI_BAR0, 4) & PCI_BAR_IO, PCI_BAR_IO);
	/* The modern capabilities are there too. */
	ck_assert_uint_ne(find_cap(VIRTIO_PCI_CAP_COMMON_CFG), 0);
	legacy_driver_init(&size);
	ck_assert(dev()->legacy);
	add_writable(48);
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 2, 0);
	virtio_device_sync(dev());
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 48);
	ck_assert_int_eq(fake_pci.intx_level, 1);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_ISR, 1), VIRTIO_PCI_ISR_QUEUE);
	ck_assert_int_eq(fake_pci.intx_level, 0);
	/* The legacy notify register has an ioeventfd matching queue 0. */
	{
		int n = 0;

		for (int i = 0; i < 16; i++)
			n += fake_pci.evfds[i].assigned && fake_pci.evfds[i].pio &&
			     fake_pci.evfds[i].addr == bar_base(0) + VIRTIO_PCI_LEGACY_QUEUE_NOTIFY &&
			     fake_pci.evfds[i].datamatch == 0;
		ck_assert_int_eq(n, 1);
	}
}
END_TEST

START_TEST(test_4_1_4_10_transitional_device_also_works_for_a_modern_driver)
{
	uint32_t id, len;

	modern_negotiate(F_V1);
	ck_assert(!dev()->legacy);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	driver_ok();
	add_writable(8);
	modern_kick(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	/* After a reset a legacy driver may take over. */
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	vtd_vq_destroy(&vq);
	{
		uint16_t size;

		legacy_driver_init(&size);
	}
	ck_assert(dev()->legacy);
}
END_TEST

START_TEST(test_4_1_4_10_legacy_must_assume_features_32_63_not_acknowledged)
{
	uint16_t size;

	/* The legacy header shows bits 0-31 only: no VERSION_1. */
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_HOST_FEATURES, 4),
			  (uint32_t)dev()->device_features);
	legacy_driver_init(&size);
	ck_assert(!virtio_has_feature(dev(), VIRTIO_F_VERSION_1));
	ck_assert_uint_eq(dev()->driver_features >> 32, 0);
	/* And the queue is a split ring of the device's size. */
	ck_assert(!dev()->queues[0].packed);
	ck_assert_uint_eq(size, VIRTIO_RNG_QUEUE_SIZE);
}
END_TEST

START_TEST(test_4_1_4_10_legacy_device_config_follows_header)
{
	/* MSI-X off: config at 20. */
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_CONFIG, 1), 0xC0);
	/* MSI-X on: the two vector registers come first, config at 24. */
	msix_enable(3);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_CONFIG_MSIX, 1), 0xC0);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_MSIX_CONFIG, 2),
			  VIRTIO_NO_VECTOR);
	leg_w(VIRTIO_PCI_LEGACY_MSIX_CONFIG, 2, 1);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_MSIX_CONFIG, 2), 1);
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_SEL, 2, 1);
	leg_w(VIRTIO_PCI_LEGACY_MSIX_QUEUE, 2, 2);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_MSIX_QUEUE, 2), 2);
	ck_assert_uint_eq(dev()->queues[1].vector, 2);
	leg_w(VIRTIO_PCI_LEGACY_MSIX_QUEUE, 2, 9); /* beyond the table */
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_MSIX_QUEUE, 2),
			  VIRTIO_NO_VECTOR);
}
END_TEST

START_TEST(test_4_1_4_10_legacy_device_config_any_width_same_result)
{
	uint64_t b[4], w[2], d;

	for (unsigned i = 0; i < 4; i++)
		b[i] = leg_r(VIRTIO_PCI_LEGACY_CONFIG + 4 + i, 1);
	for (unsigned i = 0; i < 2; i++)
		w[i] = leg_r(VIRTIO_PCI_LEGACY_CONFIG + 4 + 2 * i, 2);
	d = leg_r(VIRTIO_PCI_LEGACY_CONFIG + 4, 4);
	ck_assert_uint_eq(d, b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24);
	ck_assert_uint_eq(d, w[0] | w[1] << 16);
	ck_assert_uint_eq(d, 0xC7C6C5C4u);
	/* Writes of any width land in the same place. */
	leg_w(VIRTIO_PCI_LEGACY_CONFIG + 9, 1, 0x5A);
	ck_assert_uint_eq(echo.config[9], 0x5A);
}
END_TEST

START_TEST(test_4_1_5_1_1_1_legacy_device_has_no_virtio_capabilities)
{
	uint16_t size;
	uint32_t id, len;

	ck_assert_uint_eq(cfg_r(PCI_DEVICE_ID, 2), 0x1005);
	ck_assert_uint_eq(cfg_r(PCI_REVISION_ID, 1), 0);
	ck_assert_uint_eq(find_cap(VIRTIO_PCI_CAP_COMMON_CFG), 0);
	ck_assert_uint_eq(find_cap(VIRTIO_PCI_CAP_PCI_CFG), 0);
	ck_assert_uint_eq(cfg_r(PCI_BAR0 + 4 * VIRTIO_PCI_MODERN_BAR, 4), 0);
	ck_assert_uint_ne(find_msix_cap(), 0);
	legacy_driver_init(&size);
	add_writable(20);
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 2, 0);
	virtio_device_sync(dev());
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 20);
	/* PFN 0 stops the queue; reset clears every PFN. */
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_PFN, 4, 0);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_QUEUE_PFN, 4), 0);
	ck_assert(!dev()->queues[0].ready);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, 0);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_STATUS, 1), 0);
}
END_TEST

START_TEST(test_modern_device_refuses_no_transitional_id)
{
	struct virtio_pci other;
	struct vtd_echo e2;

	ck_assert_int_eq(vtd_echo_init(&e2, &drv, 1, 8), 0);
	ck_assert_int_eq(virtio_pci_init(&other, &e2.vdev, VIRTIO_PCI_LEGACY),
			 -ENOTSUP);
	ck_assert_int_eq(virtio_pci_init(&other, &e2.vdev,
					 VIRTIO_PCI_TRANSITIONAL),
			 -ENOTSUP);
	vtd_echo_destroy(&e2);
}
END_TEST


/* ---- legacy interface sections of chapters 2, 3 and 6 ---- */

/* The legacy driver's first steps (§3.1.2: no FEATURES_OK) up to writing
 * the features, then queue 0 at PFN |base| (§2.7.2 layout). */
static uint64_t legacy_queue0(uint16_t *qsize)
{
	uint64_t base;
	uint16_t size;

	leg_w(VIRTIO_PCI_LEGACY_QUEUE_SEL, 2, 0);
	size = (uint16_t)leg_r(VIRTIO_PCI_LEGACY_QUEUE_NUM, 2);
	ck_assert_uint_gt(size, 0);
	base = vtd_alloc(&drv, 16ull * size + 6 + 2ull * size + 4096 + 6 +
				       8ull * size + 4096, 4096);
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, size, false, false), 0);
	vq.desc = base;
	vq.driver = base + 16ull * size;
	vq.device = (vq.driver + 6 + 2ull * size + 4095) & ~4095ull;
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_PFN, 4, base / 4096);
	*qsize = size;
	return base;
}

START_TEST(test_2_2_3_transitional_device_must_detect_legacy_driver_by_version_1)
{
	uint16_t size;
	uint32_t id, len;

	/* A driver on the modern interface that does not acknowledge
	 * VERSION_1 is not taken for a legacy one: FEATURES_OK fails. */
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1,
	     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_w(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	cc_w(VIRTIO_PCI_COMMON_GF, 4, 0);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1,
	     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		     VIRTIO_STATUS_FEATURES_OK);
	ck_assert(!(cc_r(VIRTIO_PCI_COMMON_STATUS, 1) &
		    VIRTIO_STATUS_FEATURES_OK));
	ck_assert(!dev()->legacy);
	/* A driver that never acknowledges VERSION_1 (it cannot even see
	 * it) through the legacy header is a legacy driver: the device runs
	 * the legacy interface for it, and serves it. */
	legacy_driver_init(&size);
	ck_assert(dev()->legacy);
	ck_assert(!virtio_has_feature(dev(), VIRTIO_F_VERSION_1));
	add_writable(16);
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 2, 0);
	virtio_device_sync(dev());
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 16);
}
END_TEST

START_TEST(test_2_7_2_legacy_device_must_use_legacy_virtqueue_layout)
{
	uint16_t size;
	uint64_t base, avail_end, used;
	uint32_t id, len;
	uint8_t *pad;

	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, 0);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	leg_w(VIRTIO_PCI_LEGACY_GUEST_FEATURES, 4, 0);
	base = legacy_queue0(&size);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_DRIVER_OK);
	/* desc[size], then avail, then padding up to Queue Align (4096),
	 * then used. */
	avail_end = base + 16ull * size + 6 + 2ull * size;
	used = (avail_end + 4095) & ~4095ull;
	ck_assert_uint_eq(dev()->queues[0].desc_addr, base);
	ck_assert_uint_eq(dev()->queues[0].driver_addr, base + 16ull * size);
	ck_assert_uint_eq(dev()->queues[0].device_addr, used);
	/* Fill the padding: the device must not take it for its ring. */
	pad = vtd_ptr(&drv, avail_end, used - avail_end);
	ck_assert_ptr_nonnull(pad);
	memset(pad, 0xA5, used - avail_end);
	add_writable(24);
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 2, 0);
	virtio_device_sync(dev());
	/* The used element went to used->ring[0] at the aligned address. */
	ck_assert_uint_eq(*(uint16_t *)vtd_ptr(&drv, used + 2, 2), 1);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 24);
	for (uint64_t i = 0; i < used - avail_end; i++)
		ck_assert_uint_eq(pad[i], 0xA5);
}
END_TEST

START_TEST(test_3_1_2_transitional_device_must_support_config_write_before_features)
{
	uint16_t size;
	uint32_t id, len;
	unsigned cfg = VIRTIO_PCI_LEGACY_CONFIG;

	/* Step 4 is reading and writing the features; the driver writes a
	 * (writable) config field before it. */
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, 0);
	leg_w(cfg + 10, 1, 0x3C);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	leg_w(cfg + 12, 4, 0x11223344u);
	ck_assert_uint_eq(leg_r(cfg + 10, 1), 0x3C);
	ck_assert_uint_eq(leg_r(cfg + 12, 4), 0x11223344u);
	ck_assert_uint_eq(echo.config[10], 0x3C);
	/* The rest of the initialisation works as usual. */
	leg_w(VIRTIO_PCI_LEGACY_GUEST_FEATURES, 4,
	      leg_r(VIRTIO_PCI_LEGACY_HOST_FEATURES, 4) &
		      ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	legacy_queue0(&size);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_DRIVER_OK);
	ck_assert(!(leg_r(VIRTIO_PCI_LEGACY_STATUS, 1) &
		    VIRTIO_STATUS_DEVICE_NEEDS_RESET));
	add_writable(8);
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 2, 0);
	virtio_device_sync(dev());
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(echo.config[10], 0x3C);
}
END_TEST

START_TEST(test_3_1_2_transitional_device_must_support_use_before_driver_ok)
{
	uint16_t size;
	uint32_t id, len;
	uint64_t gpa;

	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, 0);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	leg_w(VIRTIO_PCI_LEGACY_GUEST_FEATURES, 4,
	      VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	legacy_queue0(&size);
	/* Steps 4, 7 and 8 conflated: the driver uses the queue with
	 * DRIVER_OK still clear. */
	gpa = add_writable(32);
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 2, 0);
	virtio_device_sync(dev());
	ck_assert(!(leg_r(VIRTIO_PCI_LEGACY_STATUS, 1) &
		    VIRTIO_STATUS_DRIVER_OK));
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 32);
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, gpa, 1), 0xEE);
	/* ... and is told about it (INTx, ISR queue bit). */
	ck_assert_int_eq(fake_pci.intx_level, 1);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_ISR, 1), VIRTIO_PCI_ISR_QUEUE);
	/* The features were final at that first use. */
	leg_w(VIRTIO_PCI_LEGACY_GUEST_FEATURES, 4, 0);
	ck_assert_uint_eq(leg_r(VIRTIO_PCI_LEGACY_GUEST_FEATURES, 4),
			  VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	/* DRIVER_OK later changes nothing for the running queue. */
	leg_w(VIRTIO_PCI_LEGACY_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_DRIVER_OK);
	add_writable(4);
	leg_w(VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 2, 0);
	virtio_device_sync(dev());
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 4);
	ck_assert_uint_eq(echo.activations, 1);
}
END_TEST

START_TEST(test_3_1_2_modern_device_still_waits_for_driver_ok)
{
	uint32_t id, len;

	/* The exception is the legacy interface's only: a modern driver's
	 * buffers wait for DRIVER_OK (§2.1.2). */
	modern_negotiate(F_V1);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	add_writable(8);
	modern_kick(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 0);
	driver_ok();
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
}
END_TEST

START_TEST(test_6_2_device_must_offer_version_1_and_not_sr_iov)
{
	uint32_t hi;

	cc_w(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	hi = (uint32_t)cc_r(VIRTIO_PCI_COMMON_DF, 4);
	/* VERSION_1 is bit 32. */
	ck_assert_uint_eq(hi & 1, 1);
	/* No SR-IOV capability, so no VIRTIO_F_SR_IOV (bit 37); and no
	 * IN_ORDER (35), whose requirements therefore never apply. */
	ck_assert_uint_eq(hi >> (37 - 32) & 1, 0);
	ck_assert_uint_eq(hi >> (VIRTIO_F_IN_ORDER - 32) & 1, 0);
	for (unsigned c = cfg_r(PCI_CAPABILITY_LIST, 1); c; c = cfg_r(c + 1, 1))
		ck_assert_uint_ne(cfg_r(c, 1), 0x10); /* PCIe (SR-IOV is
							  an extended cap) */
	ck_assert_uint_eq(cfg_r(0x100, 4), 0);
}
END_TEST

/* ---- a driver that writes garbage everywhere ---- */

static uint64_t rnd64(unsigned *seed)
{
	return (uint64_t)rand_r(seed) << 40 ^ (uint64_t)rand_r(seed) << 20 ^
	       (uint64_t)rand_r(seed);
}

/* A guest-chosen value: mostly plausible (small, inside RAM, a queue
 * index), sometimes anything. */
static uint64_t rnd_value(unsigned *seed)
{
	switch (rand_r(seed) % 6) {
	case 0: return rand_r(seed) % 4;
	case 1: return rand_r(seed) % 0x100;
	case 2: return (unsigned)rand_r(seed) % VTD_RAM_SIZE & ~0xFull;
	case 3: return VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		       (rand_r(seed) % 2 ? VIRTIO_STATUS_FEATURES_OK : 0) |
		       (rand_r(seed) % 2 ? VIRTIO_STATUS_DRIVER_OK : 0);
	case 4: return ~0ull;
	default: return rnd64(seed);
	}
}

/* A driver that does everything right except its rings: queue 0 on
 * random (aligned, in-RAM) addresses over garbage, then kicked. */
static void garbage_queue_up(unsigned *seed)
{
	uint64_t f = F_V1;
	uint64_t a[3];

	if (rand_r(seed) % 2)
		f |= VIRTIO_BIT(VIRTIO_F_RING_PACKED);
	if (rand_r(seed) % 2)
		f |= VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	if (rand_r(seed) % 2)
		f |= VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	modern_negotiate(f);
	for (int k = 0; k < 3; k++)
		a[k] = ((unsigned)rand_r(seed) % (VTD_RAM_SIZE - 0x40000)) &
		       ~0xFull;
	cc_w(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_SIZE, 2, 1u << (rand_r(seed) % 7));
	cc_w(VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)a[0]);
	cc_w(VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)a[1]);
	cc_w(VIRTIO_PCI_COMMON_Q_AVAILHI, 4, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)a[2]);
	cc_w(VIRTIO_PCI_COMMON_Q_USEDHI, 4, 0);
	cc_w(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	cc_w(VIRTIO_PCI_COMMON_STATUS, 1,
	     cc_r(VIRTIO_PCI_COMMON_STATUS, 1) | VIRTIO_STATUS_DRIVER_OK);
	modern_kick(0);
}

START_TEST(test_malformed_random_register_and_config_writes)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	uint32_t bar0 = cfg_r(PCI_BAR0, 4), bar1 = cfg_r(PCI_BAR0 + 4, 4);
	uint32_t bar4 = cfg_r(PCI_BAR0 + 16, 4), bar5 = cfg_r(PCI_BAR0 + 20, 4);
	unsigned seed = 0x5eed1234u;
	uint32_t id, len;
	uint32_t *ram = vtd_ptr(&drv, 0, VTD_RAM_SIZE);

	/* Whatever the rings end up pointing at is garbage too. */
	ck_assert_ptr_nonnull(ram);
	for (uint64_t w = 0; w < VTD_RAM_SIZE / 4; w++)
		ram[w] = (uint32_t)rand_r(&seed) * 2654435761u;
	for (int i = 0; i < 20000; i++) {
		unsigned size = sizes[rand_r(&seed) % 4], kind = rand_r(&seed) % 8;
		uint64_t v = rnd_value(&seed), out;

		if (kind == 0) {
			/* Config space (ECAM), any offset, 1/2/4 bytes. */
			unsigned off = (unsigned)rand_r(&seed) % 0x1000;

			size = size > 4 ? 4 : size;
			off &= ~(size - 1);
			bus_write(&mmio, ECAM + (SLOT << 15) + off, size, v);
			bus_read(&mmio, ECAM + (SLOT << 15) + off, size, &out);
		} else if (kind <= 4) {
			/* The modern BAR: mostly common config and the
			 * notify area, sometimes anywhere (ISR, device). */
			static const uint8_t fields[][2] = {
				{ 0x00, 4 }, { 0x04, 4 }, { 0x08, 4 }, { 0x0C, 4 },
				{ 0x10, 2 }, { 0x14, 1 }, { 0x14, 1 }, { 0x16, 2 },
				{ 0x18, 2 }, { 0x1A, 2 }, { 0x1C, 2 }, { 0x1C, 2 },
				{ 0x20, 4 }, { 0x24, 4 }, { 0x28, 4 }, { 0x2C, 4 },
				{ 0x30, 4 }, { 0x34, 4 }, { 0x20, 8 },
			};
			unsigned r = (unsigned)rand_r(&seed) % 10;
			uint64_t off;

			if (r < 6) { /* a common config field, its width */
				unsigned f = (unsigned)rand_r(&seed) %
					     (sizeof(fields) / sizeof(fields[0]));

				off = fields[f][0];
				size = fields[f][1];
				/* Ring addresses: mostly inside RAM. */
				if (off >= 0x20 && rand_r(&seed) % 5)
					v = off % 8 ? 0
						    : (unsigned)rand_r(&seed) %
							      VTD_RAM_SIZE & ~0xFFFull;
				else if (off == 0x18 && rand_r(&seed) % 2)
					v = 1u << (rand_r(&seed) % 10);
			} else if (r < 8) { /* a queue's notify address */
				off = 0x3000 + 4 * (uint64_t)(rand_r(&seed) % 4);
				size = 2;
				v = rand_r(&seed) % 4;
			} else {
				off = (uint64_t)rand_r(&seed) %
				      (VIRTIO_PCI_MODERN_BAR_SIZE + 64);
			}

			bus_write(&mmio, bar_base(4) + off, size, v);
			bus_read(&mmio, bar_base(4) + off, size, &out);
		} else if (kind == 5) {
			/* ... the MSI-X table and PBA ... */
			uint64_t off = (uint64_t)rand_r(&seed) % 0x1000;

			bus_write(&mmio, bar_base(1) + off, size, v);
		} else {
			/* ... and the legacy I/O BAR. */
			uint64_t off = (uint64_t)rand_r(&seed) % 64;

			size = size > 4 ? 4 : size;
			bus_write(&pio, bar_base(0) + off, size, v);
			bus_read(&pio, bar_base(0) + off, size, &out);
		}
		if (i % 200 == 199) {
			/* Firmware-like: put the BARs back so the fuzzing
			 * keeps reaching the device. */
			cfg_w(PCI_BAR0, 4, bar0);
			cfg_w(PCI_BAR0 + 4, 4, bar1);
			cfg_w(PCI_BAR0 + 16, 4, bar4);
			cfg_w(PCI_BAR0 + 20, 4, bar5);
			cfg_w(PCI_COMMAND, 2, PCI_COMMAND_IO |
						      PCI_COMMAND_MEMORY |
						      PCI_COMMAND_MASTER);
			virtio_device_sync(dev());
			if (rand_r(&seed) % 2)
				garbage_queue_up(&seed);
		}
	}
	virtio_device_sync(dev());
	/* The identity is untouched ... */
	ck_assert_uint_eq(cfg_r(PCI_VENDOR_ID, 2), 0x1AF4);
	ck_assert_uint_eq(cfg_r(PCI_DEVICE_ID, 2), 0x1005);
	ck_assert_uint_ne(find_cap(VIRTIO_PCI_CAP_COMMON_CFG), 0);
	/* ... and after firmware-like restoration of the BARs and a reset,
	 * the device serves a well-behaved driver. */
	cfg_w(PCI_BAR0, 4, bar0);
	cfg_w(PCI_BAR0 + 4, 4, bar1);
	cfg_w(PCI_BAR0 + 16, 4, bar4);
	cfg_w(PCI_BAR0 + 20, 4, bar5);
	cfg_w(find_msix_cap() + 2, 2, 0);
	cfg_w(PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
				      PCI_COMMAND_MASTER);
	modern_negotiate(F_V1);
	ck_assert_uint_eq(cc_r(VIRTIO_PCI_COMMON_STATUS, 1) &
				  VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	modern_queue(0, 8, VIRTIO_NO_VECTOR);
	driver_ok();
	add_writable(16);
	modern_kick(0);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 16);
}
END_TEST

static Suite *virtio_pci_suite(void)
{
	Suite *s = suite_create("virtio_pci");
	TCase *tr = tcase_create("pci-rng");
	TCase *te = tcase_create("pci-echo");
	TCase *tt = tcase_create("pci-transitional");
	TCase *tte = tcase_create("pci-transitional-echo");
	TCase *tl = tcase_create("pci-legacy");

	tcase_add_checked_fixture(tr, setup_rng, teardown);
	tcase_set_timeout(tr, 30);
	tcase_add_test(tr, test_4_1_2_2_device_must_have_vendor_id_0x1af4);
	tcase_add_test(tr, test_4_1_2_2_device_must_have_device_id_0x1040_plus_type);
	tcase_add_test(tr, test_4_1_3_1_device_must_allow_independent_access_to_64bit_halves);
	tcase_add_test(tr, test_4_1_4_1_device_must_include_extra_data_in_cap_len);
	tcase_add_test(tr, test_4_1_4_3_1_device_must_present_common_cfg_capability);
	tcase_add_test(tr, test_4_1_4_3_1_device_must_present_offered_features_by_select);
	tcase_add_test(tr, test_4_1_4_3_1_device_must_present_valid_driver_features);
	tcase_add_test(tr, test_4_1_4_3_1_device_must_reset_when_0_written_to_status);
	tcase_add_test(tr, test_4_1_4_3_1_device_must_present_0_in_queue_enable_on_reset);
	tcase_add_test(tr, test_4_1_4_3_1_device_must_present_0_queue_size_for_unavailable_queue);
	tcase_add_test(tr, test_4_1_4_3_1_device_must_present_power_of_2_queue_size);
	tcase_add_test(tr, test_4_1_4_4_1_device_must_present_notify_capability);
	tcase_add_test(tr, test_4_1_4_4_notify_ioeventfd_per_queue_follows_bar);
	tcase_add_test(tr, test_4_1_4_5_1_device_must_present_isr_capability);
	tcase_add_test(tr, test_4_1_4_5_1_device_must_set_queue_bit_without_msix);
	tcase_add_test(tr, test_4_1_4_5_1_pci_status_interrupt_must_follow_isr);
	tcase_add_test(tr, test_4_1_4_5_1_device_must_reset_isr_on_read);
	tcase_add_test(tr, test_4_1_4_6_no_device_cfg_capability_without_config);
	tcase_add_test(tr, test_4_1_5_1_2_1_device_must_report_table_size);
	tcase_add_test(tr, test_4_1_5_3_msix_queue_vector_gets_used_buffer_notification);
	tcase_add_test(tr, test_4_1_5_3_1_device_must_not_interrupt_queue_with_no_vector);
	tcase_add_test(tr, test_4_1_5_msix_masked_vector_is_delivered_on_unmask);
	tcase_add_test(tr, test_modern_device_refuses_no_transitional_id);
	tcase_add_test(tr, test_6_2_device_must_offer_version_1_and_not_sr_iov);
	suite_add_tcase(s, tr);

	tcase_add_checked_fixture(te, setup_echo, teardown);
	tcase_set_timeout(te, 30);
	tcase_add_test(te, test_4_1_4_3_1_device_must_present_changed_config_generation);
	tcase_add_test(te, test_4_1_4_5_1_device_must_set_config_bit_before_config_notification);
	tcase_add_test(te, test_4_1_4_6_device_must_present_device_cfg_capability);
	tcase_add_test(te, test_4_1_4_9_1_device_must_present_pci_cfg_capability);
	tcase_add_test(te, test_4_1_4_9_1_device_must_execute_write_through_pci_cfg_data);
	tcase_add_test(te, test_4_1_4_9_1_device_must_execute_read_through_pci_cfg_data);
	tcase_add_test(te, test_4_1_5_1_2_1_device_must_support_mapping_any_event_to_any_vector);
	tcase_add_test(te, test_4_1_5_1_2_1_device_must_support_unmapping);
	tcase_add_test(te, test_4_1_5_1_2_1_device_must_unmap_all_events_on_reset);
	tcase_add_test(te, test_4_1_5_1_2_1_device_must_report_mapping_failure_as_no_vector);
	tcase_add_test(te, test_4_1_5_4_1_device_must_not_interrupt_config_with_no_vector);
	suite_add_tcase(s, te);

	tcase_add_checked_fixture(tt, setup_trans_rng, teardown);
	tcase_set_timeout(tt, 30);
	tcase_add_test(tt, test_4_1_2_3_transitional_device_must_have_revision_0_and_legacy_ids);
	tcase_add_test(tt, test_4_1_4_10_transitional_device_must_present_legacy_interface_in_bar0);
	tcase_add_test(tt, test_4_1_4_10_transitional_device_also_works_for_a_modern_driver);
	tcase_add_test(tt, test_4_1_4_10_legacy_must_assume_features_32_63_not_acknowledged);
	tcase_add_test(tt, test_2_2_3_transitional_device_must_detect_legacy_driver_by_version_1);
	tcase_add_test(tt, test_malformed_random_register_and_config_writes);
	suite_add_tcase(s, tt);

	tcase_add_checked_fixture(tte, setup_trans_echo, teardown);
	tcase_set_timeout(tte, 30);
	tcase_add_test(tte, test_4_1_4_10_legacy_device_config_follows_header);
	tcase_add_test(tte, test_4_1_4_10_legacy_device_config_any_width_same_result);
	tcase_add_test(tte, test_3_1_2_transitional_device_must_support_config_write_before_features);
	tcase_add_test(tte, test_3_1_2_transitional_device_must_support_use_before_driver_ok);
	tcase_add_test(tte, test_3_1_2_modern_device_still_waits_for_driver_ok);
	suite_add_tcase(s, tte);

	tcase_add_checked_fixture(tl, setup_legacy_rng, teardown);
	tcase_set_timeout(tl, 30);
	tcase_add_test(tl, test_4_1_5_1_1_1_legacy_device_has_no_virtio_capabilities);
	tcase_add_test(tl, test_2_7_2_legacy_device_must_use_legacy_virtqueue_layout);
	suite_add_tcase(s, tl);
	return s;
}

UNIT_MAIN(virtio_pci_suite)
