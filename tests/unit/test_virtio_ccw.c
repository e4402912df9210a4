/* virtio-ccw shim (virtio 1.2 §4.3), driven by a tiny test channel
 * subsystem: channel programs are written into fake guest RAM and run
 * with virtio_ccw_start(), notifications use virtio_ccw_notify() as the
 * DIAGNOSE 0x500 handler would.  (No s390 guest exists on x86.) */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "tests/unit/virtio_test_driver.h"
#include "virtio/ccw.h"

#define SCHID 0x00010005u
#define F_V1 VIRTIO_BIT(VIRTIO_F_VERSION_1)

static struct vtd drv;
static struct vtd_echo echo;
static struct virtio_ccw ccw;
static struct vtd_vq vq;
static struct virtio_ccw_result res;
static uint64_t prog, data, ind, conf_ind, summary, adapter_ind;
static int io_irqs, adapter_irqs, last_isc;

#define DEV (&echo.vdev)

static void on_io_irq(void *opaque)
{
	(void)opaque;
	__atomic_fetch_add(&io_irqs, 1, __ATOMIC_SEQ_CST);
}

static void on_adapter_irq(void *opaque, uint8_t isc)
{
	(void)opaque;
	last_isc = isc;
	__atomic_fetch_add(&adapter_irqs, 1, __ATOMIC_SEQ_CST);
}

static void setup(void)
{
	io_irqs = adapter_irqs = 0;
	last_isc = -1;
	ck_assert_int_eq(vtd_init(&drv), 0);
	ck_assert_int_eq(vtd_echo_init(&echo, &drv, 2, 16), 0);
	ck_assert_int_eq(virtio_ccw_init(&ccw, DEV, &drv.mem, SCHID, on_io_irq,
					 on_adapter_irq, NULL),
			 0);
	virtio_ccw_enable_subchannel(&ccw);
	prog = vtd_alloc(&drv, 8 * 16, 8);
	data = vtd_alloc(&drv, 4096, 8);
	ind = vtd_alloc(&drv, 8, 8);
	conf_ind = vtd_alloc(&drv, 8, 8);
	summary = vtd_alloc(&drv, 1, 1);
	adapter_ind = vtd_alloc(&drv, 16, 8);
}

static void teardown(void)
{
	vtd_echo_destroy(&echo);
	vtd_vq_destroy(&vq);
	vtd_destroy(&drv);
}

/* ---- the test channel subsystem ---- */

static void put_be(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_ccw(unsigned i, uint8_t code, uint8_t flags, uint16_t count,
		    uint64_t addr)
{
	uint8_t *p = vtd_ptr(&drv, prog + 8 * i, 8);

	p[0] = code;
	p[1] = flags;
	put_be(p + 2, count, 2);
	put_be(p + 4, addr, 4);
}

/* Run one command whose data area holds |buf| (|count| bytes, copied in
 * and back out). */
static int cmd(uint8_t code, uint8_t flags, void *buf, uint16_t count)
{
	int r;

	if (count)
		memcpy(vtd_ptr(&drv, data, count), buf, count);
	put_ccw(0, code, flags, count, data);
	r = virtio_ccw_start(&ccw, prog, &res);
	if (count)
		memcpy(buf, vtd_ptr(&drv, data, count), count);
	return r;
}

static int set_rev(uint16_t rev, uint16_t len)
{
	uint8_t b[4];

	put_be(b, rev, 2);
	put_be(b + 2, len, 2);
	return cmd(CCW_CMD_SET_VIRTIO_REV, 0, b, 4);
}

static int write_status(uint8_t s)
{
	return cmd(CCW_CMD_WRITE_STATUS, 0, &s, 1);
}

static int read_status(uint8_t *s)
{
	*s = 0xee;
	return cmd(CCW_CMD_READ_STATUS, 0, s, 1);
}

static int write_feat(uint8_t index, uint32_t bits)
{
	uint8_t b[5];

	memcpy(b, &bits, 4); /* le32 */
	b[4] = index;
	return cmd(CCW_CMD_WRITE_FEAT, 0, b, 5);
}

static uint32_t read_feat(uint8_t index)
{
	uint8_t b[5] = { 0, 0, 0, 0, index };
	uint32_t v;

	ck_assert_int_eq(cmd(CCW_CMD_READ_FEAT, 0, b, 5), 0);
	memcpy(&v, b, 4);
	return v;
}

static int set_vq(uint16_t index, uint16_t num, uint64_t desc, uint64_t driver,
		  uint64_t device, uint32_t res0)
{
	uint8_t b[32];

	put_be(b, desc, 8);
	put_be(b + 8, res0, 4);
	put_be(b + 12, index, 2);
	put_be(b + 14, num, 2);
	put_be(b + 16, driver, 8);
	put_be(b + 24, device, 8);
	return cmd(CCW_CMD_SET_VQ, 0, b, 32);
}

static int set_ind_cmd(uint8_t code, uint64_t addr)
{
	uint8_t b[8];

	put_be(b, addr, 8);
	return cmd(code, 0, b, 8);
}

static int set_ind_adapter(uint64_t sum, uint64_t area, uint64_t bit_nr,
			   uint8_t isc)
{
	uint8_t b[25];

	put_be(b, sum, 8);
	put_be(b + 8, area, 8);
	put_be(b + 16, bit_nr, 8);
	b[24] = isc;
	return cmd(CCW_CMD_SET_IND_ADAPTER, 0, b, 25);
}

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER)
#define S_FOK (S_DRV | VIRTIO_STATUS_FEATURES_OK)
#define S_DOK (S_FOK | VIRTIO_STATUS_DRIVER_OK)

/* Revision 2, features, queue 0, classic or adapter indicators. */
static void bring_up(bool adapter)
{
	uint8_t b[4] = { 0, 0, 0, 0 };

	ck_assert_int_eq(set_rev(2, 0), 0);
	ck_assert_int_eq(write_status(S_ACK), 0);
	ck_assert_int_eq(write_status(S_DRV), 0);
	ck_assert_int_eq(write_feat(0, 0), 0);
	ck_assert_int_eq(write_feat(1, 1), 0); /* VERSION_1 */
	ck_assert_int_eq(write_status(S_FOK), 0);
	ck_assert_int_eq(cmd(CCW_CMD_READ_VQ_CONF, 0, b, 4), 0);
	ck_assert_uint_eq(get_be(b + 2, 2), 16);
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 16, false, false), 0);
	ck_assert_int_eq(set_vq(0, 16, vq.desc, vq.driver, vq.device, 0), 0);
	if (adapter)
		ck_assert_int_eq(set_ind_adapter(summary, adapter_ind, 5, 3), 0);
	else
		ck_assert_int_eq(set_ind_cmd(CCW_CMD_SET_IND, ind), 0);
	ck_assert_int_eq(set_ind_cmd(CCW_CMD_SET_CONF_IND, conf_ind), 0);
	ck_assert_int_eq(write_status(S_DOK), 0);
	virtio_device_sync(DEV);
}

static void add_and_notify(void)
{
	uint64_t out = vtd_alloc(&drv, 8, 8);
	struct vtd_sg sg = { out, 8, true };

	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	ck_assert_int_eq(virtio_ccw_notify(&ccw, SCHID, 0, NULL), 0);
	virtio_device_sync(DEV);
}

/* ---- §4.3.1 Basic Concepts ---- */

START_TEST(test_4_3_1_sense_id_reports_control_unit_3832)
{
	uint8_t id[8];

	memset(id, 0, sizeof(id));
	ck_assert_int_eq(cmd(CCW_CMD_SENSE_ID, 0, id, 8), 0);
	ck_assert_uint_eq(id[0], 0xff);
	ck_assert_uint_eq(get_be(id + 1, 2), 0x3832);
	ck_assert_uint_eq(id[3], (uint8_t)DEV->device_id);
	ck_assert_uint_eq(res.dstat, CCW_DSTAT_CE | CCW_DSTAT_DE);
}
END_TEST

START_TEST(test_4_3_1_3_device_must_reject_unsupported_command)
{
	uint8_t b[8] = { 0 }, sense[32];

	ck_assert_int_eq(cmd(0x99, 0, b, 8), -EIO);
	ck_assert(res.dstat & CCW_DSTAT_UC);
	/* BASIC SENSE says why: command reject. */
	ck_assert_int_eq(cmd(CCW_CMD_SENSE, CCW_FLAG_SLI, sense, 32), 0);
	ck_assert_uint_eq(sense[0], CCW_SENSE_CMD_REJECT);
}
END_TEST

START_TEST(test_4_3_1_3_device_must_indicate_incorrect_length_without_sli)
{
	uint8_t b[2] = { S_ACK, 0 };

	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_int_eq(cmd(CCW_CMD_WRITE_STATUS, 0, b, 2), -EINVAL);
	ck_assert(res.cstat & CCW_CSTAT_IL);
	ck_assert_uint_eq(virtio_get_status(DEV), 0); /* not executed */
	ck_assert_int_eq(cmd(CCW_CMD_SENSE_ID, 0, b, 2), -EINVAL);
	ck_assert(res.cstat & CCW_CSTAT_IL);
}
END_TEST

START_TEST(test_4_3_1_3_device_must_check_short_data_with_sli)
{
	uint8_t b[5] = { 0 };

	ck_assert_int_eq(set_rev(1, 0), 0);
	/* READ_FEAT needs 5 bytes; 3 with SLI is a check condition. */
	ck_assert_int_eq(cmd(CCW_CMD_READ_FEAT, CCW_FLAG_SLI, b, 3), -EIO);
	ck_assert(res.dstat & CCW_DSTAT_UC);
}
END_TEST

START_TEST(test_4_3_1_3_device_should_accept_long_buffer_with_sli)
{
	uint8_t b[16] = { 0 };

	ck_assert_int_eq(set_rev(1, 0), 0);
	b[4] = 1; /* feature word 1 */
	ck_assert_int_eq(cmd(CCW_CMD_READ_FEAT, CCW_FLAG_SLI, b, 16), 0);
	ck_assert_uint_eq(b[0] & 1, 1); /* VERSION_1 */
	ck_assert_uint_eq(res.residual, 11);
	ck_assert_int_eq(cmd(CCW_CMD_SENSE_ID, CCW_FLAG_SLI, b, 16), 0);
	ck_assert_uint_eq(b[0], 0xff);
}
END_TEST

/* ---- §4.3.2.1.1 Setting the Virtio Revision ---- */

START_TEST(test_4_3_2_1_1_device_must_reject_unsupported_revision)
{
	ck_assert_int_eq(set_rev(3, 0), -EIO);
	ck_assert_int_eq(set_rev(0x7fff, 0), -EIO);
	ck_assert_int_eq(ccw.revision, -1);
}
END_TEST

START_TEST(test_4_3_2_1_1_device_must_reject_invalid_revision_length)
{
	uint8_t b[8] = { 0, 1, 0, 4, 1, 2, 3, 4 };

	ck_assert_int_eq(cmd(CCW_CMD_SET_VIRTIO_REV, 0, b, 8), -EIO);
	ck_assert_int_eq(ccw.revision, -1);
}
END_TEST

START_TEST(test_4_3_2_1_1_non_transitional_device_must_reject_revision_0)
{
	ck_assert_int_eq(set_rev(0, 0), -EIO);
	ck_assert_int_eq(set_rev(1, 0), 0);
}
END_TEST

START_TEST(test_4_3_2_1_1_device_must_reject_second_revision)
{
	ck_assert_int_eq(set_rev(2, 0), 0);
	ck_assert_int_eq(set_rev(1, 0), -EIO);
	ck_assert_int_eq(set_rev(2, 0), -EIO);
	ck_assert_int_eq(ccw.revision, 2);
}
END_TEST

START_TEST(test_4_3_2_1_1_revision_unset_after_subchannel_enable)
{
	uint8_t s;

	ck_assert_int_eq(set_rev(2, 0), 0);
	virtio_ccw_enable_subchannel(&ccw);
	/* Unset: a virtio command is rejected, and a revision can be set. */
	ck_assert_int_eq(read_status(&s), -EIO);
	ck_assert_int_eq(set_rev(1, 0), 0);
}
END_TEST

START_TEST(test_4_3_2_1_2_non_transitional_device_must_reject_commands_without_revision)
{
	ck_assert_int_eq(write_status(S_ACK), -EIO);
	ck_assert_int_eq(write_feat(0, 0), -EIO);
	ck_assert_uint_eq(virtio_get_status(DEV), 0);
}
END_TEST

START_TEST(test_4_3_2_1_1_device_should_reject_command_not_in_revision)
{
	uint8_t s;

	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_int_eq(read_status(&s), -EIO); /* READ_STATUS is rev 2 */
}
END_TEST

/* ---- §4.3.2.2.1 Configuring a Virtqueue ---- */

START_TEST(test_4_3_2_2_1_device_must_ignore_res0)
{
	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_int_eq(write_status(S_ACK), 0);
	ck_assert_int_eq(write_status(S_DRV), 0);
	ck_assert_int_eq(write_feat(1, 1), 0);
	ck_assert_int_eq(write_status(S_FOK), 0);
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 16, false, false), 0);
	ck_assert_int_eq(set_vq(0, 16, vq.desc, vq.driver, vq.device, 0xdeadbeef), 0);
	ck_assert(DEV->queues[0].ready);
}
END_TEST

START_TEST(test_4_3_2_2_set_vq_rejects_bad_queue)
{
	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 16, false, false), 0);
	ck_assert_int_eq(set_vq(5, 16, vq.desc, vq.driver, vq.device, 0), -EIO);
	ck_assert_int_eq(set_vq(0, 32, vq.desc, vq.driver, vq.device, 0), -EIO);
	ck_assert_int_eq(set_vq(0, 16, 1ull << 40, vq.driver, vq.device, 0), -EIO);
}
END_TEST

/* ---- §4.3.2.3.2 Communicating Status Information ---- */

START_TEST(test_4_3_2_3_2_failed_status_must_stay_unchanged_and_reject)
{
	uint8_t s;

	ck_assert_int_eq(set_rev(2, 0), 0);
	ck_assert_int_eq(write_status(S_ACK), 0);
	ck_assert_int_eq(write_status(S_DRV), 0);
	ck_assert_int_eq(write_feat(1, 1), 0);
	ck_assert_int_eq(write_feat(0, VIRTIO_BIT(9)), 0); /* not offered */
	ck_assert_int_eq(write_status(S_FOK), -EIO);
	ck_assert(res.dstat & CCW_DSTAT_UC);
	ck_assert_int_eq(read_status(&s), 0);
	ck_assert_uint_eq(s, S_DRV);
}
END_TEST

START_TEST(test_4_3_2_3_2_device_must_return_status_with_revision_2)
{
	uint8_t s;

	ck_assert_int_eq(set_rev(2, 0), 0);
	ck_assert_int_eq(read_status(&s), 0);
	ck_assert_uint_eq(s, 0);
	ck_assert_int_eq(write_status(S_ACK), 0);
	ck_assert_int_eq(read_status(&s), 0);
	ck_assert_uint_eq(s, S_ACK);
}
END_TEST

/* ---- §4.3.2.4 / §4.3.2.5 features and configuration ---- */

START_TEST(test_4_3_2_4_features_by_index)
{
	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_uint_eq(read_feat(0), (uint32_t)DEV->device_features);
	ck_assert_uint_eq(read_feat(1), (uint32_t)(DEV->device_features >> 32));
	ck_assert_uint_eq(read_feat(2), 0);
	ck_assert_int_eq(write_feat(0, VIRTIO_BIT(VTD_ECHO_F_BASE)), 0);
	ck_assert_uint_eq(virtio_driver_features_word(DEV, 0),
			  VIRTIO_BIT(VTD_ECHO_F_BASE));
}
END_TEST

START_TEST(test_4_3_2_5_read_and_write_config)
{
	uint8_t b[16];

	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_int_eq(cmd(CCW_CMD_READ_CONF, 0, b, 16), 0);
	ck_assert_uint_eq(b[0], 0xC0);
	ck_assert_uint_eq(b[15], 0xCF);
	/* A driver reading only up to the field it needs. */
	ck_assert_int_eq(cmd(CCW_CMD_READ_CONF, 0, b, 4), 0);
	/* More than the config: incorrect length without SLI. */
	{
		uint8_t big[32];

		ck_assert_int_eq(cmd(CCW_CMD_READ_CONF, 0, big, 32), -EINVAL);
		ck_assert_int_eq(cmd(CCW_CMD_READ_CONF, CCW_FLAG_SLI, big, 32), 0);
		ck_assert_uint_eq(res.residual, 16);
	}
	b[8] = 0x42;
	b[0] = 0x00; /* read-only byte: ignored by the device */
	ck_assert_int_eq(cmd(CCW_CMD_WRITE_CONF, 0, b, 16), 0);
	ck_assert_uint_eq(echo.config[8], 0x42);
	ck_assert_uint_eq(echo.config[0], 0xC0);
}
END_TEST

/* ---- §4.3.2.6 indicators ---- */

START_TEST(test_4_3_2_6_1_device_must_reject_set_ind_after_adapter)
{
	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_int_eq(set_ind_adapter(summary, adapter_ind, 0, 2), 0);
	ck_assert_int_eq(set_ind_cmd(CCW_CMD_SET_IND, ind), -EIO);
}
END_TEST

START_TEST(test_4_3_2_6_3_1_device_must_reject_set_ind_adapter_after_classic)
{
	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_int_eq(set_ind_cmd(CCW_CMD_SET_IND, ind), 0);
	ck_assert_int_eq(set_ind_adapter(summary, adapter_ind, 0, 2), -EIO);
}
END_TEST

START_TEST(test_4_3_2_6_indicators_outside_ram_are_rejected)
{
	ck_assert_int_eq(set_rev(1, 0), 0);
	ck_assert_int_eq(set_ind_cmd(CCW_CMD_SET_IND, VTD_RAM_SIZE - 4), -EIO);
	ck_assert_int_eq(set_ind_cmd(CCW_CMD_SET_CONF_IND, 1ull << 50), -EIO);
	ck_assert_int_eq(set_ind_adapter(summary, VTD_RAM_SIZE, 0, 2), -EIO);
}
END_TEST

/* ---- §4.3.3.1 Host->Guest Notification ---- */

START_TEST(test_4_3_3_1_1_classic_indicator_bit_and_io_interrupt)
{
	uint32_t id, len;
	uint8_t *p;

	bring_up(false);
	add_and_notify();
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	p = vtd_ptr(&drv, ind, 8);
	ck_assert_uint_eq(get_be(p, 8), 1ull << 0); /* queue 0 */
	ck_assert_int_eq(io_irqs, 1);
	/* Config change: bit 0 of the configuration indicators. */
	vtd_echo_change_config(&echo, 1);
	ck_assert_uint_eq(get_be(vtd_ptr(&drv, conf_ind, 8), 8), 1);
	ck_assert_int_eq(io_irqs, 2);
}
END_TEST

START_TEST(test_4_3_3_1_2_adapter_indicators_and_summary)
{
	uint32_t id, len;
	uint8_t *area = vtd_ptr(&drv, adapter_ind, 16);

	bring_up(true);
	add_and_notify();
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	/* bit_nr 5 + queue 0 = bit 5 counted from the left of byte 0. */
	ck_assert_uint_eq(area[0], 0x80 >> 5);
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, summary, 1), 0x01);
	ck_assert_int_eq(adapter_irqs, 1);
	ck_assert_int_eq(last_isc, 3);
	/* SHOULD: summary still set → no second adapter interrupt. */
	add_and_notify();
	ck_assert_int_eq(adapter_irqs, 1);
	/* Driver clears the summary: the next one interrupts again. */
	*(uint8_t *)vtd_ptr(&drv, summary, 1) = 0;
	add_and_notify();
	ck_assert_int_eq(adapter_irqs, 2);
	ck_assert_int_eq(io_irqs, 0);
}
END_TEST

/* ---- §4.3.3.2.1 Guest->Host Notification ---- */

START_TEST(test_4_3_3_2_1_device_must_ignore_high_bits_of_gpr2)
{
	uint64_t out = vtd_alloc(&drv, 8, 8);
	struct vtd_sg sg = { out, 8, true };
	uint32_t id, len;

	bring_up(false);
	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	ck_assert_int_eq(virtio_ccw_notify(&ccw, 0xfeedface00000000ull | SCHID, 0,
					   NULL),
			 0);
	virtio_device_sync(DEV);
	ck_assert_int_eq(vtd_vq_get_used(&vq, &id, &len), 1);
	/* Another subchannel id is not ours. */
	ck_assert_int_eq(virtio_ccw_notify(&ccw, SCHID + 1, 0, NULL), -ENODEV);
	/* An out-of-range queue index is harmless. */
	ck_assert_int_eq(virtio_ccw_notify(&ccw, SCHID, 1000, NULL), 0);
}
END_TEST

/* ---- §4.3.3.3.1 Resetting Devices ---- */

START_TEST(test_4_3_3_3_1_device_must_finish_reset_before_concluding)
{
	uint8_t s;

	bring_up(false);
	ck_assert_int_eq(cmd(CCW_CMD_VDEV_RESET, 0, NULL, 0), 0);
	ck_assert_uint_eq(virtio_get_status(DEV), 0);
	ck_assert(!DEV->queues[0].ready);
	ck_assert_int_eq(read_status(&s), 0);
	ck_assert_uint_eq(s, 0);
}
END_TEST

START_TEST(test_4_3_3_3_1_device_must_not_notify_or_use_queues_after_reset)
{
	bring_up(false);
	ck_assert_int_eq(cmd(CCW_CMD_VDEV_RESET, 0, NULL, 0), 0);
	add_and_notify();
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 0);
	ck_assert_int_eq(io_irqs, 0);
	vtd_echo_change_config(&echo, 7);
	ck_assert_int_eq(io_irqs, 0);
}
END_TEST

/* ---- channel programs ---- */

START_TEST(test_4_3_command_chaining_runs_a_whole_program)
{
	uint8_t *d = vtd_ptr(&drv, data, 64);
	uint8_t s;

	/* SET_VIRTIO_REV(2) → WRITE_STATUS(ACK) → READ_STATUS, chained. */
	put_be(d, 2, 2);
	put_be(d + 2, 0, 2);
	d[8] = S_ACK;
	put_ccw(0, CCW_CMD_SET_VIRTIO_REV, CCW_FLAG_CC, 4, data);
	put_ccw(1, CCW_CMD_WRITE_STATUS, CCW_FLAG_CC, 1, data + 8);
	put_ccw(2, CCW_CMD_READ_STATUS, 0, 1, data + 16);
	ck_assert_int_eq(virtio_ccw_start(&ccw, prog, &res), 0);
	s = d[16];
	ck_assert_uint_eq(s, S_ACK);
	ck_assert_uint_eq(res.cpa, prog + 24);
}
END_TEST

START_TEST(test_4_3_transfer_in_channel_and_program_checks)
{
	/* TIC to a NOOP elsewhere. */
	put_ccw(0, CCW_CMD_TIC, 0, 0, prog + 64);
	put_ccw(8, CCW_CMD_NOOP, 0, 0, 0);
	ck_assert_int_eq(virtio_ccw_start(&ccw, prog, &res), 0);
	/* TIC to TIC: program check. */
	put_ccw(0, CCW_CMD_TIC, 0, 0, prog + 64);
	put_ccw(8, CCW_CMD_TIC, 0, 0, prog);
	ck_assert_int_eq(virtio_ccw_start(&ccw, prog, &res), -EFAULT);
	ck_assert(res.cstat & CCW_CSTAT_PROGRAM);
	/* A NOOP chained back to itself through a TIC: bounded. */
	put_ccw(0, CCW_CMD_NOOP, CCW_FLAG_CC, 0, 0);
	put_ccw(1, CCW_CMD_TIC, 0, 0, prog);
	ck_assert_int_eq(virtio_ccw_start(&ccw, prog, &res), -EFAULT);
	/* Misaligned or non-RAM channel program address. */
	ck_assert_int_eq(virtio_ccw_start(&ccw, prog + 4, &res), -EFAULT);
	ck_assert_int_eq(virtio_ccw_start(&ccw, VTD_RAM_SIZE, &res), -EFAULT);
	/* Data chaining / IDAWs are not supported. */
	put_ccw(0, CCW_CMD_NOOP, CCW_FLAG_IDA, 0, 0);
	ck_assert_int_eq(virtio_ccw_start(&ccw, prog, &res), -EFAULT);
	/* Data area outside RAM: protection check, no crash. */
	put_ccw(0, CCW_CMD_SENSE_ID, 0, 8, 0x7ffffff8);
	ck_assert_int_eq(virtio_ccw_start(&ccw, prog, &res), -EFAULT);
	ck_assert(res.cstat & CCW_CSTAT_PROTECTION);
}
END_TEST

/* ---- a driver whose channel programs are garbage ---- */

START_TEST(test_malformed_random_channel_programs)
{
	static const uint8_t codes[] = {
		CCW_CMD_NOOP, CCW_CMD_SENSE, CCW_CMD_TIC, CCW_CMD_SENSE_ID,
		CCW_CMD_SET_VQ, CCW_CMD_VDEV_RESET, CCW_CMD_SET_IND,
		CCW_CMD_SET_CONF_IND, CCW_CMD_SET_IND_ADAPTER, CCW_CMD_READ_FEAT,
		CCW_CMD_WRITE_FEAT, CCW_CMD_READ_CONF, CCW_CMD_WRITE_CONF,
		CCW_CMD_WRITE_STATUS, CCW_CMD_READ_VQ_CONF,
		CCW_CMD_SET_VIRTIO_REV, CCW_CMD_READ_STATUS, 0xFF, 0x00,
	};
	unsigned seed = 0xcc3u;
	uint8_t *d = vtd_ptr(&drv, data, 4096);
	uint8_t id[8];

	for (int i = 0; i < 5000; i++) {
		unsigned n = 1 + rand_r(&seed) % 8;

		/* A program of up to 8 CCWs, mostly chained, with data and
		 * addresses that are sometimes sensible (the data area, a
		 * CCW slot) and sometimes not. */
		for (unsigned k = 0; k < n; k++) {
			uint8_t code = codes[rand_r(&seed) %
					     (sizeof(codes) / sizeof(codes[0]))];
			uint8_t flags = (uint8_t)((rand_r(&seed) % 4 ? CCW_FLAG_CC : 0) |
						  (rand_r(&seed) % 2 ? CCW_FLAG_SLI : 0) |
						  (rand_r(&seed) % 16 ? 0 : rand_r(&seed)));
			uint64_t addr;

			switch (rand_r(&seed) % 4) {
			case 0: addr = prog + 8 * (rand_r(&seed) % 16); break;
			case 1: addr = (uint32_t)rand_r(&seed) * 2654435761u; break;
			default: addr = data + rand_r(&seed) % 4096; break;
			}
			put_ccw(k, code, flags, (uint16_t)(rand_r(&seed) % 64), addr);
		}
		for (unsigned b = 0; b < 64; b++)
			d[(rand_r(&seed) % 64) * 8 + rand_r(&seed) % 8] =
				(uint8_t)rand_r(&seed);
		virtio_ccw_start(&ccw, rand_r(&seed) % 32 ? prog : prog + 4, &res);
		if (i % 64 == 0) {
			virtio_ccw_notify(&ccw, (uint64_t)rand_r(&seed) << 32 | SCHID,
					  rand_r(&seed) % 4, NULL);
			virtio_device_sync(DEV);
		}
		if (i % 500 == 499) /* the subchannel is disabled, enabled */
			virtio_ccw_enable_subchannel(&ccw);
	}
	virtio_device_sync(DEV);
	/* Still a virtio-ccw device, and usable after a reset. */
	virtio_ccw_enable_subchannel(&ccw);
	memset(id, 0, sizeof(id));
	ck_assert_int_eq(cmd(CCW_CMD_SENSE_ID, 0, id, 8), 0);
	ck_assert_uint_eq(get_be(id + 1, 2), 0x3832);
	bring_up(false);
	add_and_notify();
	ck_assert_uint_eq(vtd_split_used_idx(&vq), 1);
}
END_TEST

static Suite *virtio_ccw_suite(void)
{
	Suite *s = suite_create("virtio_ccw");
	TCase *tc = tcase_create("ccw");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_4_3_1_sense_id_reports_control_unit_3832);
	tcase_add_test(tc, test_4_3_1_3_device_must_reject_unsupported_command);
	tcase_add_test(tc, test_4_3_1_3_device_must_indicate_incorrect_length_without_sli);
	tcase_add_test(tc, test_4_3_1_3_device_must_check_short_data_with_sli);
	tcase_add_test(tc, test_4_3_1_3_device_should_accept_long_buffer_with_sli);
	tcase_add_test(tc, test_4_3_2_1_1_device_must_reject_unsupported_revision);
	tcase_add_test(tc, test_4_3_2_1_1_device_must_reject_invalid_revision_length);
	tcase_add_test(tc, test_4_3_2_1_1_non_transitional_device_must_reject_revision_0);
	tcase_add_test(tc, test_4_3_2_1_1_device_must_reject_second_revision);
	tcase_add_test(tc, test_4_3_2_1_1_revision_unset_after_subchannel_enable);
	tcase_add_test(tc, test_4_3_2_1_2_non_transitional_device_must_reject_commands_without_revision);
	tcase_add_test(tc, test_4_3_2_1_1_device_should_reject_command_not_in_revision);
	tcase_add_test(tc, test_4_3_2_2_1_device_must_ignore_res0);
	tcase_add_test(tc, test_4_3_2_2_set_vq_rejects_bad_queue);
	tcase_add_test(tc, test_4_3_2_3_2_failed_status_must_stay_unchanged_and_reject);
	tcase_add_test(tc, test_4_3_2_3_2_device_must_return_status_with_revision_2);
	tcase_add_test(tc, test_4_3_2_4_features_by_index);
	tcase_add_test(tc, test_4_3_2_5_read_and_write_config);
	tcase_add_test(tc, test_4_3_2_6_1_device_must_reject_set_ind_after_adapter);
	tcase_add_test(tc, test_4_3_2_6_3_1_device_must_reject_set_ind_adapter_after_classic);
	tcase_add_test(tc, test_4_3_2_6_indicators_outside_ram_are_rejected);
	tcase_add_test(tc, test_4_3_3_1_1_classic_indicator_bit_and_io_interrupt);
	tcase_add_test(tc, test_4_3_3_1_2_adapter_indicators_and_summary);
	tcase_add_test(tc, test_4_3_3_2_1_device_must_ignore_high_bits_of_gpr2);
	tcase_add_test(tc, test_4_3_3_3_1_device_must_finish_reset_before_concluding);
	tcase_add_test(tc, test_4_3_3_3_1_device_must_not_notify_or_use_queues_after_reset);
	tcase_add_test(tc, test_4_3_command_chaining_runs_a_whole_program);
	tcase_add_test(tc, test_4_3_transfer_in_channel_and_program_checks);
	tcase_add_test(tc, test_malformed_random_channel_programs);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(virtio_ccw_suite)
