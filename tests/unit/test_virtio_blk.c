/* virtio block device (virtio 1.2 §5.2), driven by the test driver over
 * real disks (a raw file, a qcow2 image) in a temporary directory. */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "tests/unit/virtio_test_driver.h"
#include "virtio/blk.h"

#define DISK_BYTES (4u << 20)
#define SECTORS (DISK_BYTES / 512)

static struct vtd drv;
static struct virtio_blk blk;
static struct vtd_vq vq, vq1;
static struct disk *disk;
static char dir[80], img[128];
static bool blk_up;

#define DEV (&blk.vdev)
#define F(b) VIRTIO_BIT(b)
#define F_V1 F(VIRTIO_F_VERSION_1)
#define F_BASIC (F_V1 | F(VIRTIO_BLK_F_FLUSH) | F(VIRTIO_BLK_F_DISCARD) | \
		 F(VIRTIO_BLK_F_WRITE_ZEROES) | F(VIRTIO_BLK_F_CONFIG_WCE) | \
		 F(VIRTIO_BLK_F_BLK_SIZE) | F(VIRTIO_BLK_F_SEG_MAX))

static void make_raw(const char *p, uint64_t size)
{
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static unsigned start_poll_us; /* the next start_blk's poll window */
static bool start_direct;      /* the next start_blk's cache=none */
static uint32_t start_dio_block; /* and its smallest O_DIRECT block */

/* Open |path| and build the device on it. */
static void start_blk(const char *path, bool ro, unsigned nq,
		      const char *serial)
{
	struct disk_options o = { .read_only = ro, .direct = start_direct,
				  .min_dio_block = start_dio_block };
	struct virtio_blk_options bo = { .serial = serial, .num_queues = nq,
					 .poll_us = start_poll_us };
	char why[200];

	ck_assert_msg(disk_open(path, &o, &disk, why, sizeof(why)) == 0, "%s",
		      why);
	ck_assert_int_eq(virtio_blk_init(&blk, "blk0", &drv.mem, disk, &bo), 0);
	vtd_attach(&drv, DEV);
	ck_assert_int_eq(virtio_device_start(DEV), 0);
	blk_up = true;
}

static void stop_blk(void)
{
	if (!blk_up)
		return;
	virtio_blk_destroy(&blk);
	ck_assert_int_eq(disk_close(disk), 0);
	blk_up = false;
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/t-XXXXXX", unit_scratch);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/disk.raw", dir);
	make_raw(img, DISK_BYTES);
	ck_assert_int_eq(vtd_init(&drv), 0);
	memset(&vq, 0, sizeof(vq));
	memset(&vq1, 0, sizeof(vq1));
}

static char loopdev[64]; /* a loop device attached by a test, or "" */

static void teardown(void)
{
	char cmd[128];

	stop_blk();
	if (loopdev[0]) {
		snprintf(cmd, sizeof(cmd), "losetup -d '%s'", loopdev);
		ck_assert_int_eq(system(cmd), 0);
		loopdev[0] = '\0';
	}
	if (vq.drv)
		vtd_vq_destroy(&vq);
	if (vq1.drv)
		vtd_vq_destroy(&vq1);
	vtd_destroy(&drv);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void setup_default(void)
{
	setup();
	start_blk(img, false, 1, "kite-serial-1");
}

static void bring_up(uint64_t features, bool packed)
{
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 128, packed, false), 0);
	ck_assert_int_eq(vtd_negotiate(&drv, features |
			 (packed ? F(VIRTIO_F_RING_PACKED) : 0)), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 0, &vq), 0);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
}

/* Completions arrive from the disk asynchronously: poll for them. */
static int wait_used(struct vtd_vq *q, uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < 20000; i++) {
		virtio_device_sync(DEV);
		if (vtd_vq_get_used(q, id, len) == 1)
			return 1;
		usleep(500);
	}
	return 0;
}

static uint64_t put_hdr(uint32_t type, uint64_t sector)
{
	uint64_t gpa = vtd_alloc(&drv, 16, 8);
	uint8_t *p = vtd_ptr(&drv, gpa, 16);
	uint32_t t = htole32(type);
	uint64_t s = htole64(sector);

	memcpy(p, &t, 4);
	memset(p + 4, 0, 4);
	memcpy(p + 8, &s, 8);
	return gpa;
}

/* One request: header, then |n| data elements, then a 1-byte status.
 * Returns the status byte; *used gets the used length. */
static uint8_t request_on(struct vtd_vq *q, unsigned qidx, uint32_t type,
			  uint64_t sector, const struct vtd_sg *data,
			  unsigned n, uint32_t *used)
{
	struct vtd_sg sg[40];
	uint64_t st = vtd_alloc(&drv, 1, 1);
	uint32_t id, len;

	*(uint8_t *)vtd_ptr(&drv, st, 1) = 0xee;
	sg[0] = (struct vtd_sg){ put_hdr(type, sector), 16, false };
	for (unsigned i = 0; i < n; i++)
		sg[1 + i] = data[i];
	sg[1 + n] = (struct vtd_sg){ st, 1, true };
	ck_assert_int_ge(vtd_vq_add(q, sg, n + 2, false), 0);
	vtd_kick(&drv, qidx);
	ck_assert_int_eq(wait_used(q, &id, &len), 1);
	if (used)
		*used = len;
	return *(uint8_t *)vtd_ptr(&drv, st, 1);
}

static uint8_t request(uint32_t type, uint64_t sector,
		       const struct vtd_sg *data, unsigned n, uint32_t *used)
{
	return request_on(&vq, 0, type, sector, data, n, used);
}

static uint64_t buffer(size_t len, uint8_t fillb)
{
	uint64_t gpa = vtd_alloc(&drv, len, 512);

	memset(vtd_ptr(&drv, gpa, len), fillb, len);
	return gpa;
}

static void file_read(uint64_t off, void *buf, size_t len)
{
	int fd = open(img, O_RDONLY);

	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void file_write(uint64_t off, const void *buf, size_t len)
{
	int fd = open(img, O_RDWR);

	ck_assert_int_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static uint64_t cfg64(uint32_t off)
{
	uint64_t v;

	ck_assert_int_eq(virtio_config_read(DEV, off, &v, 8), 0);
	return le64toh(v);
}

static uint32_t cfg32(uint32_t off)
{
	uint32_t v;

	ck_assert_int_eq(virtio_config_read(DEV, off, &v, 4), 0);
	return le32toh(v);
}

static uint8_t cfg8(uint32_t off)
{
	uint8_t v;

	ck_assert_int_eq(virtio_config_read(DEV, off, &v, 1), 0);
	return v;
}

/* struct virtio_blk_discard_write_zeroes at |p|, little-endian. */
static void encode_segment(uint8_t *p, uint64_t sector, uint32_t num,
			   uint32_t flags)
{
	sector = htole64(sector);
	num = htole32(num);
	flags = htole32(flags);
	memcpy(p, &sector, 8);
	memcpy(p + 8, &num, 4);
	memcpy(p + 12, &flags, 4);
}

static uint64_t segment(uint64_t sector, uint32_t num, uint32_t flags)
{
	uint64_t gpa = vtd_alloc(&drv, 16, 8);

	encode_segment(vtd_ptr(&drv, gpa, 16), sector, num, flags);
	return gpa;
}

/* ==== identity, features, config ==== */

START_TEST(test_5_2_identity_type_2_features_and_config)
{
	uint64_t f = DEV->device_features;

	ck_assert_uint_eq(DEV->device_id, VIRTIO_ID_BLOCK);
	ck_assert_uint_eq(DEV->config_size, VIRTIO_BLK_CONFIG_SIZE);
	ck_assert(f & F(VIRTIO_BLK_F_SIZE_MAX));
	ck_assert(f & F(VIRTIO_BLK_F_SEG_MAX));
	ck_assert(f & F(VIRTIO_BLK_F_BLK_SIZE));
	ck_assert(f & F(VIRTIO_BLK_F_TOPOLOGY));
	ck_assert(f & F(VIRTIO_BLK_F_DISCARD));
	ck_assert(f & F(VIRTIO_BLK_F_WRITE_ZEROES));
	ck_assert(!(f & F(VIRTIO_BLK_F_RO)));
	/* §5.2.4: capacity in 512-byte sectors, always present. */
	ck_assert_uint_eq(cfg64(VIRTIO_BLK_CFG_CAPACITY), SECTORS);
	ck_assert_uint_eq(cfg32(VIRTIO_BLK_CFG_SEG_MAX), VIRTIO_BLK_SEG_MAX);
	ck_assert_uint_eq(cfg32(VIRTIO_BLK_CFG_SIZE_MAX), VIRTIO_BLK_SIZE_MAX);
	ck_assert_uint_eq(cfg32(VIRTIO_BLK_CFG_BLK_SIZE), 512);
	ck_assert_uint_eq(cfg32(VIRTIO_BLK_CFG_MAX_DISCARD_SEG),
			  VIRTIO_BLK_MAX_DISCARD_SEG);
	ck_assert_uint_ge(cfg32(VIRTIO_BLK_CFG_MAX_WZ_SECTORS), 1);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WZ_MAY_UNMAP), 1);
}
END_TEST

START_TEST(test_5_2_5_2_device_must_offer_flush_with_config_wce)
{
	uint64_t f = DEV->device_features;

	ck_assert(f & F(VIRTIO_BLK_F_CONFIG_WCE));
	ck_assert(f & F(VIRTIO_BLK_F_FLUSH));
}
END_TEST

START_TEST(test_5_2_5_2_writeback_0_when_config_wce_without_flush)
{
	ck_assert_int_eq(vtd_negotiate(&drv, F_V1 | F(VIRTIO_BLK_F_CONFIG_WCE)),
			 0);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WRITEBACK), 0);
	/* With FLUSH the device starts in writeback mode (our default). */
	ck_assert_int_eq(vtd_negotiate(&drv, F_V1 | F(VIRTIO_BLK_F_CONFIG_WCE) |
					F(VIRTIO_BLK_F_FLUSH)), 0);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WRITEBACK), 1);
	/* The driver may toggle it with CONFIG_WCE. */
	{
		uint8_t zero = 0;

		virtio_config_write(DEV, VIRTIO_BLK_CFG_WRITEBACK, &zero, 1);
	}
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WRITEBACK), 0);
}
END_TEST

/* Legacy driver: status 0 -> ACK -> DRIVER, features, then DRIVER_OK. */
static void legacy_bring_up(uint64_t features, int writeback_before_ok)
{
	virtio_set_status(DEV, 0);
	DEV->legacy = true;
	virtio_set_status(DEV, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_set_status(DEV, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_driver_features_write_word(DEV, 0, (uint32_t)features);
	if (writeback_before_ok >= 0) {
		uint8_t v = (uint8_t)writeback_before_ok;

		virtio_config_write(DEV, VIRTIO_BLK_CFG_WRITEBACK, &v, 1);
	}
	ck_assert_int_eq(virtio_set_status(DEV, VIRTIO_STATUS_ACKNOWLEDGE |
					   VIRTIO_STATUS_DRIVER |
					   VIRTIO_STATUS_DRIVER_OK), 0);
}

START_TEST(test_5_2_5_3_legacy_device_must_not_change_cache_mode_on_status_or_features)
{
	/* CONFIG_WCE accepted and writethrough chosen before DRIVER_OK:
	 * setting DRIVER_OK must not switch back to writeback. */
	legacy_bring_up(F(VIRTIO_BLK_F_CONFIG_WCE) | F(VIRTIO_BLK_F_FLUSH), 0);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WRITEBACK), 0);
	/* CONFIG_WCE without FLUSH: the feature write alone must not
	 * change the mode either (no FEATURES_OK step to hook). */
	legacy_bring_up(F(VIRTIO_BLK_F_CONFIG_WCE), -1);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WRITEBACK), 1);
	legacy_bring_up(F(VIRTIO_BLK_F_CONFIG_WCE), 0);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WRITEBACK), 0);
	/* Without CONFIG_WCE, DRIVER_OK may (and without FLUSH must, for
	 * writes to be stable) settle the mode. */
	legacy_bring_up(0, -1);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WRITEBACK), 0);
	legacy_bring_up(F(VIRTIO_BLK_F_FLUSH), -1);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_WRITEBACK), 1);
}
END_TEST

START_TEST(test_5_2_5_2_device_must_initialize_padding_to_0)
{
	bring_up(F_BASIC, false);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_UNUSED0), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_UNUSED1 + i), 0);
}
END_TEST

START_TEST(test_5_2_5_2_device_should_not_offer_zoned)
{
	ck_assert(!(DEV->device_features & F(VIRTIO_BLK_F_ZONED)));
	ck_assert(!(DEV->device_features & F(VIRTIO_BLK_F_SECURE_ERASE)));
	ck_assert(!(DEV->device_features & F(VIRTIO_BLK_F_LIFETIME)));
}
END_TEST

/* ==== data path ==== */

static void roundtrip(bool packed)
{
	uint64_t w = buffer(8192, 0), r = buffer(8192, 0);
	uint8_t *wp = vtd_ptr(&drv, w, 8192), file[8192];
	struct vtd_sg out = { w, 8192, false }, in = { r, 8192, true };
	uint32_t used;

	for (int i = 0; i < 8192; i++)
		wp[i] = (uint8_t)(i * 7 + 3);
	bring_up(F_BASIC, packed);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 100, &out, 1, &used),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used, 1);
	file_read(100 * 512, file, 8192);
	ck_assert_mem_eq(file, wp, 8192);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_IN, 100, &in, 1, &used),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used, 8192 + 1);
	ck_assert_mem_eq(vtd_ptr(&drv, r, 8192), wp, 8192);
	ck_assert_uint_ge(vtd_queue_irqs(&drv, 0), 2);
}

START_TEST(test_5_2_6_write_then_read_split)
{
	roundtrip(false);
}
END_TEST

START_TEST(test_5_2_6_write_then_read_packed)
{
	roundtrip(true);
}
END_TEST

START_TEST(test_5_2_6_reads_host_written_data_scattered)
{
	uint8_t pat[4096];
	uint64_t a = buffer(512, 0), b = buffer(3584, 0);
	struct vtd_sg in[2] = { { a, 512, true }, { b, 3584, true } };

	for (int i = 0; i < 4096; i++)
		pat[i] = (uint8_t)(i ^ 0x5a);
	file_write(DISK_BYTES - 4096, pat, 4096);
	bring_up(F_BASIC, false);
	/* The last 8 sectors: exactly up to capacity is fine. */
	ck_assert_uint_eq(request(VIRTIO_BLK_T_IN, SECTORS - 8, in, 2, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(vtd_ptr(&drv, a, 512), pat, 512);
	ck_assert_mem_eq(vtd_ptr(&drv, b, 3584), pat + 512, 3584);
}
END_TEST

START_TEST(test_5_2_6_many_requests_in_flight)
{
	enum { N = 32 };
	uint64_t bufs[N], sts[N];
	uint32_t id, len;
	int got = 0;

	bring_up(F_BASIC, false);
	for (int i = 0; i < N; i++) {
		struct vtd_sg sg[3];

		bufs[i] = buffer(4096, (uint8_t)i);
		sts[i] = vtd_alloc(&drv, 1, 1);
		sg[0] = (struct vtd_sg){ put_hdr(VIRTIO_BLK_T_OUT, (uint64_t)i * 8),
					 16, false };
		sg[1] = (struct vtd_sg){ bufs[i], 4096, false };
		sg[2] = (struct vtd_sg){ sts[i], 1, true };
		ck_assert_int_ge(vtd_vq_add(&vq, sg, 3, false), 0);
	}
	vtd_kick(&drv, 0);
	while (got < N && wait_used(&vq, &id, &len))
		got++;
	ck_assert_int_eq(got, N);
	for (int i = 0; i < N; i++) {
		uint8_t b[4096], want[4096];

		ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, sts[i], 1), 0);
		file_read((uint64_t)i * 4096, b, 4096);
		memset(want, i, 4096);
		ck_assert_mem_eq(b, want, 4096);
	}
}
END_TEST

START_TEST(test_5_2_6_2_flush_and_writethrough_commit_before_completion)
{
	uint64_t w = buffer(512, 0x11);
	struct vtd_sg out = { w, 512, false };
	uint8_t zero = 0, b[512];

	bring_up(F_BASIC, false);
	/* Writeback: a write is not synced; a flush is (case 3). */
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 2, &out, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(blk.syncs, 0);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(blk.syncs, 1);
	/* writeback = 0 (case 2): the write completes after its sync. */
	virtio_config_write(DEV, VIRTIO_BLK_CFG_WRITEBACK, &zero, 1);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 3, &out, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(blk.syncs, 2);
	file_read(3 * 512, b, 512);
	ck_assert_uint_eq(b[0], 0x11);
}
END_TEST

START_TEST(test_5_2_6_2_writes_stable_when_flush_not_negotiated)
{
	uint64_t w = buffer(512, 0x12);
	struct vtd_sg out = { w, 512, false };

	/* Case 1: FLUSH offered but neither it nor CONFIG_WCE negotiated. */
	bring_up(F_V1, false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 4, &out, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(blk.syncs, 1);
}
END_TEST

START_TEST(test_5_2_6_get_id_returns_serial_nul_padded)
{
	uint64_t id = buffer(20, 0xff);
	struct vtd_sg in = { id, 20, true };
	uint8_t want[20] = "kite-serial-1";
	uint32_t used;

	bring_up(F_BASIC, false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_GET_ID, 0, &in, 1, &used),
			  VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(vtd_ptr(&drv, id, 20), want, 20);
	ck_assert_uint_eq(used, 21);
}
END_TEST

START_TEST(test_5_2_6_get_id_20_bytes_has_no_terminator)
{
	uint64_t id;
	struct vtd_sg in;

	stop_blk();
	start_blk(img, false, 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
	id = buffer(20, 0xff);
	in = (struct vtd_sg){ id, 20, true };
	bring_up(F_BASIC, false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_GET_ID, 0, &in, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(vtd_ptr(&drv, id, 20), "ABCDEFGHIJKLMNOPQRST", 20);
}
END_TEST

/* ==== §5.2.6.2 device requirements ==== */

START_TEST(test_5_2_6_2_device_must_fail_writes_when_ro_and_write_nothing)
{
	uint64_t w;
	struct vtd_sg out, seg;
	uint8_t b[512], z[512] = { 0 };

	stop_blk();
	start_blk(img, true, 1, NULL);
	ck_assert(DEV->device_features & F(VIRTIO_BLK_F_RO));
	w = buffer(512, 0x77);
	out = (struct vtd_sg){ w, 512, false };
	bring_up(F_BASIC | F(VIRTIO_BLK_F_RO), false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 0, &out, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	seg = (struct vtd_sg){ segment(0, 8, 0), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	file_read(0, b, 512);
	ck_assert_mem_eq(b, z, 512);
	/* Reads and flushes still work. */
	out.write = true;
	ck_assert_uint_eq(request(VIRTIO_BLK_T_IN, 0, &out, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(test_5_2_6_2_device_must_set_unsupp_for_unknown_flags)
{
	struct vtd_sg seg;

	bring_up(F_BASIC, false);
	seg = (struct vtd_sg){ segment(0, 8, 2), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_UNSUPP);
	seg = (struct vtd_sg){ segment(0, 8, 0x80000000u), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_UNSUPP);
}
END_TEST

START_TEST(test_5_2_6_2_device_must_set_unsupp_for_discard_with_unmap)
{
	struct vtd_sg seg;

	bring_up(F_BASIC, false);
	seg = (struct vtd_sg){ segment(0, 8, VIRTIO_BLK_WZ_F_UNMAP), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_UNSUPP);
}
END_TEST

static void write_zeroes_case(uint32_t flags)
{
	uint8_t pat[8192], b[8192], z[8192] = { 0 };
	struct vtd_sg seg[2];

	memset(pat, 0xab, sizeof(pat));
	file_write(0, pat, sizeof(pat));
	file_write(65536, pat, sizeof(pat));
	bring_up(F_BASIC, false);
	seg[0] = (struct vtd_sg){ segment(1, 4, flags), 16, false };
	seg[1] = (struct vtd_sg){ segment(128, 16, flags), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 2, NULL),
			  VIRTIO_BLK_S_OK);
	file_read(0, b, sizeof(b));
	ck_assert_mem_eq(b, pat, 512);
	ck_assert_mem_eq(b + 512, z, 2048);
	ck_assert_mem_eq(b + 2560, pat, 8192 - 2560);
	file_read(65536, b, sizeof(b));
	ck_assert_mem_eq(b, z, 8192);
}

START_TEST(test_5_2_6_2_write_zeroes_reads_must_return_zeroes)
{
	write_zeroes_case(0);
}
END_TEST

START_TEST(test_5_2_6_2_write_zeroes_with_unmap_reads_must_return_zeroes)
{
	write_zeroes_case(VIRTIO_BLK_WZ_F_UNMAP);
}
END_TEST

START_TEST(test_5_2_6_2_discard_multi_segment_ok)
{
	struct vtd_sg seg[3];

	bring_up(F_BASIC, false);
	seg[0] = (struct vtd_sg){ segment(0, 8, 0), 16, false };
	seg[1] = (struct vtd_sg){ segment(64, 128, 0), 16, false };
	seg[2] = (struct vtd_sg){ segment(SECTORS - 8, 8, 0), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, seg, 3, NULL),
			  VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(test_5_2_6_2_zone_requests_unsupp_without_zoned)
{
	static const uint32_t types[] = { 15, 16, 18, 20, 22, 24, 26 };
	uint64_t b = buffer(512, 0);
	struct vtd_sg in = { b, 512, true };

	bring_up(F_BASIC, false);
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		ck_assert_uint_eq(request(types[i], 0, &in, 1, NULL),
				  VIRTIO_BLK_S_UNSUPP);
	/* Not offered either: lifetime, secure erase, legacy SCSI. */
	ck_assert_uint_eq(request(VIRTIO_BLK_T_GET_LIFETIME, 0, &in, 1, NULL),
			  VIRTIO_BLK_S_UNSUPP);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_SECURE_ERASE, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_UNSUPP);
	ck_assert_uint_eq(request(2, 0, NULL, 0, NULL), VIRTIO_BLK_S_UNSUPP);
}
END_TEST

START_TEST(test_5_2_6_2_discard_unsupp_when_not_negotiated)
{
	struct vtd_sg seg;

	bring_up(F_V1 | F(VIRTIO_BLK_F_FLUSH), false);
	seg = (struct vtd_sg){ segment(0, 8, 0), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_UNSUPP);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_UNSUPP);
}
END_TEST

/* ==== malformed requests ==== */

static void assert_device_ok(void)
{
	ck_assert(!(virtio_get_status(DEV) & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
}

START_TEST(test_malformed_short_header_is_ioerr)
{
	uint64_t h = put_hdr(VIRTIO_BLK_T_IN, 0), st = vtd_alloc(&drv, 1, 1);
	struct vtd_sg sg[2] = { { h, 8, false }, { st, 1, true } };
	uint32_t id, len;

	bring_up(F_BASIC, false);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(wait_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, st, 1), VIRTIO_BLK_S_IOERR);
	assert_device_ok();
}
END_TEST

START_TEST(test_malformed_header_split_across_descriptors_is_fine)
{
	uint64_t h = put_hdr(VIRTIO_BLK_T_IN, 0), st = vtd_alloc(&drv, 1, 1);
	uint64_t d = buffer(512, 0);
	struct vtd_sg sg[4] = { { h, 5, false }, { h + 5, 11, false },
				{ d, 512, true }, { st, 1, true } };
	uint32_t id, len;

	bring_up(F_BASIC, false);
	/* §2.7.4.1: no assumption about the arrangement of descriptors. */
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 4, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(wait_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, st, 1), VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(test_malformed_status_shares_descriptor_with_data)
{
	uint64_t h = put_hdr(VIRTIO_BLK_T_IN, 0), d = buffer(513, 0x55);
	struct vtd_sg sg[2] = { { h, 16, false }, { d, 513, true } };
	uint32_t id, len;

	bring_up(F_BASIC, false);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(wait_used(&vq, &id, &len), 1);
	/* Status is the last byte of the writable part. */
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, d + 512, 1), 0);
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, d, 1), 0);
	ck_assert_uint_eq(len, 513);
}
END_TEST

START_TEST(test_malformed_wrong_directions_are_ioerr)
{
	uint64_t d = buffer(512, 0x66);
	struct vtd_sg ro = { d, 512, false }, rw = { d, 512, true };
	uint8_t b[512], z[512] = { 0 };

	bring_up(F_BASIC, false);
	/* A read whose data buffer is device-readable. */
	ck_assert_uint_eq(request(VIRTIO_BLK_T_IN, 0, &ro, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, d, 1), 0x66);
	/* A write whose data buffer is device-writable. */
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 0, &rw, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	file_read(0, b, 512);
	ck_assert_mem_eq(b, z, 512);
	assert_device_ok();
}
END_TEST

START_TEST(test_malformed_sectors_past_the_end_are_ioerr)
{
	uint64_t d = buffer(1024, 0);
	struct vtd_sg in = { d, 1024, true }, out = { d, 1024, false };
	struct vtd_sg seg;

	bring_up(F_BASIC, false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_IN, SECTORS - 1, &in, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, SECTORS, &out, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_IN, UINT64_MAX, &in, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, (UINT64_MAX / 512) + 1,
				  &out, 1, NULL), VIRTIO_BLK_S_IOERR);
	seg = (struct vtd_sg){ segment(SECTORS - 4, 8, 0), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	seg = (struct vtd_sg){ segment(UINT64_MAX - 2, 8, 0), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	assert_device_ok();
}
END_TEST

START_TEST(test_malformed_partial_sector_and_bad_segment_lists_are_ioerr)
{
	uint64_t d = buffer(700, 0), s = vtd_alloc(&drv, 32, 8);
	struct vtd_sg in = { d, 700, true }, seg = { s, 12, false };
	struct vtd_sg many[VIRTIO_BLK_MAX_DISCARD_SEG + 1];

	bring_up(F_BASIC, false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_IN, 0, &in, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	/* Segment list not a multiple of 16 bytes / empty / too long. */
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_IOERR);
	for (int i = 0; i <= VIRTIO_BLK_MAX_DISCARD_SEG; i++)
		many[i] = (struct vtd_sg){ segment((uint64_t)i * 8, 8, 0), 16,
					   false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_DISCARD, 0, many,
				  VIRTIO_BLK_MAX_DISCARD_SEG + 1, NULL),
			  VIRTIO_BLK_S_IOERR);
	assert_device_ok();
}
END_TEST

START_TEST(test_malformed_no_status_byte_returns_chain_unused)
{
	uint64_t h = put_hdr(VIRTIO_BLK_T_FLUSH, 0);
	struct vtd_sg sg = { h, 16, false };
	uint32_t id, len;

	bring_up(F_BASIC, false);
	ck_assert_int_ge(vtd_vq_add(&vq, &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(wait_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(len, 0);
	assert_device_ok();
	/* The device carries on. */
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(test_malformed_too_many_segments_is_ioerr)
{
	enum { N = VIRTIO_BLK_SEG_MAX + 1 };
	static struct vtd_sg sg[N + 2];
	uint64_t d = buffer(512 * N, 0), st = vtd_alloc(&drv, 1, 1);
	uint32_t id, len;

	sg[0] = (struct vtd_sg){ put_hdr(VIRTIO_BLK_T_IN, 0), 16, false };
	for (int i = 0; i < N; i++)
		sg[1 + i] = (struct vtd_sg){ d + 512 * i, 512, true };
	sg[N + 1] = (struct vtd_sg){ st, 1, true };
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 256, false, false), 0);
	ck_assert_int_eq(vtd_negotiate(&drv, F_BASIC |
				       F(VIRTIO_F_INDIRECT_DESC)), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 0, &vq), 0);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, N + 2, true), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(wait_used(&vq, &id, &len), 1);
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, st, 1), VIRTIO_BLK_S_IOERR);
	assert_device_ok();
}
END_TEST

/* ==== multiqueue, reset, qcow2 ==== */

/* ---- a hostile driver, at random ----
 *
 * Random request types, sectors, header lengths, descriptor counts,
 * lengths and directions (valid chains, readable part first, so the
 * queue itself stays usable).  Whatever the device answers, it may
 * write guest memory only inside the chain's device-writable buffers,
 * and the image only as far as it reported success: the test keeps a
 * model of the image, applies the requests the device says succeeded,
 * and compares.  Reads reported as successful must return the model's
 * data. */

#define FZ_ARENA (256u << 10)

static uint64_t fz_state;

static uint64_t fz(uint64_t n) /* uniform-ish in [0, n) */
{
	fz_state ^= fz_state << 13;
	fz_state ^= fz_state >> 7;
	fz_state ^= fz_state << 17;
	return n ? fz_state % n : fz_state;
}

struct fz_req {
	struct vtd_sg sg[16];
	unsigned n;
	uint64_t next;          /* arena gpa of the next free byte */
	uint64_t arena;
};

/* Carve |len| bytes from the arena (with a gap, so overruns show). */
static uint64_t fz_carve(struct fz_req *r, uint32_t len, bool write)
{
	uint64_t gpa = r->next + fz(64);

	ck_assert_uint_le(gpa + len, r->arena + FZ_ARENA);
	r->next = gpa + len;
	r->sg[r->n++] = (struct vtd_sg){ gpa, len, write };
	return gpa;
}

/* The request types kite's virtio-blk implements (others: UNSUPP). */
static bool known_type(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
	case VIRTIO_BLK_T_FLUSH:
	case VIRTIO_BLK_T_FLUSH_OUT:
	case VIRTIO_BLK_T_GET_ID:
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return true;
	default:
		return false;
	}
}

static uint32_t fz_data_len(void)
{
	uint32_t len = (uint32_t)(1 + fz(8)) * 512;

	return fz(12) == 0 ? (uint32_t)(1 + fz(1500)) : len; /* odd: 1 in 12 */
}

static void random_requests(bool qcow2, bool packed)
{
	char q[160], cmd[400];
	uint8_t *model = malloc(DISK_BYTES), *file = malloc(DISK_BYTES);
	uint8_t *unknown = calloc(SECTORS, 1); /* discarded: 0s or old data */
	uint8_t *shadow = malloc(FZ_ARENA), *rd = malloc(FZ_ARENA);
	uint64_t arena = vtd_alloc(&drv, FZ_ARENA, 4096);
	uint8_t *mem = vtd_ptr(&drv, arena, FZ_ARENA);
	unsigned counts[3] = { 0 };
	struct stat st;

	ck_assert(model && file && unknown && shadow && rd && mem);
	/* Fixed, so a failure repeats; KITE_BLK_FUZZ_SEED tries others. */
	fz_state = getenv("KITE_BLK_FUZZ_SEED")
			   ? strtoull(getenv("KITE_BLK_FUZZ_SEED"), NULL, 0)
			   : 0x2545f4914f6cdd1dull;
	if (!fz_state)
		fz_state = 1;
	for (uint32_t i = 0; i < DISK_BYTES; i++)
		model[i] = (uint8_t)fz(256);
	file_write(0, model, DISK_BYTES);
	if (qcow2) {
		/* The same data in a qcow2 image with small clusters (many
		 * L2 entries, allocation on most writes). */
		stop_blk();
		snprintf(q, sizeof(q), "%s/disk.qcow2", dir);
		snprintf(cmd, sizeof(cmd),
			 "qemu-img convert -f raw -O qcow2 "
			 "-o cluster_size=4096 '%s' '%s'", img, q);
		ck_assert_int_eq(system(cmd), 0);
		start_blk(q, false, 1, NULL);
	}
	bring_up(F_BASIC, packed);

	for (int i = 0; i < 600; i++) {
		static const uint32_t types[] = {
			VIRTIO_BLK_T_IN, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_IN,
			VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_OUT,
			VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
			VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_DISCARD,
			VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_WRITE_ZEROES,
			VIRTIO_BLK_T_GET_LIFETIME, 0xdeadbeef,
		};
		uint32_t type = types[fz(sizeof(types) / sizeof(types[0]))];
		uint64_t sector = fz(4) ? fz(SECTORS) : SECTORS - fz(16);
		struct fz_req r = { .next = arena, .arena = arena };
		uint32_t hdr_len = fz(10) ? 16 : (uint32_t)(1 + fz(15));
		uint32_t readable = 0, writable = 0, id, len;
		unsigned status_sg;
		uint64_t h, le_sector;
		uint32_t le_type;
		uint8_t status;
		bool status_alone = fz(10) != 0, no_status = fz(25) == 0;

		if (fz(20) == 0)
			sector = fz(0); /* anywhere in 64 bits */
		memset(mem, 0xa5, FZ_ARENA);
		/* header, sometimes split in two */
		h = fz_carve(&r, hdr_len, false);
		if (hdr_len == 16 && fz(4) == 0) {
			r.sg[0].len = 7;
			r.sg[r.n++] = (struct vtd_sg){ h + 7, 9, false };
		}
		le_type = htole32(type);
		le_sector = htole64(sector);
		memcpy(mem + (h - arena), &le_type, hdr_len < 4 ? hdr_len : 4);
		if (hdr_len == 16) {
			memset(mem + (h - arena) + 4, 0, 4);
			memcpy(mem + (h - arena) + 8, &le_sector, 8);
		}
		/* device-readable payload */
		if (type == VIRTIO_BLK_T_OUT || fz(8) == 0) {
			for (unsigned k = 1 + fz(3); k--;) {
				uint32_t l = fz_data_len();
				uint64_t g = fz_carve(&r, l, false);

				for (uint32_t b = 0; b < l; b++)
					mem[g - arena + b] = (uint8_t)fz(256);
			}
		} else if (type == VIRTIO_BLK_T_DISCARD ||
			   type == VIRTIO_BLK_T_WRITE_ZEROES) {
			unsigned nseg = fz(8) ? 1 + fz(3) : fz(20);
			uint64_t g;

			if (nseg == 0)
				nseg = 1;
			g = fz_carve(&r, nseg * 16, false);
			for (unsigned k = 0; k < nseg; k++) {
				uint64_t sct = fz(5) ? fz(SECTORS)
						     : SECTORS - fz(8);
				uint32_t num = fz(6) ? (uint32_t)fz(64)
						     : (uint32_t)fz(0);
				uint32_t flags = fz(3) ? 0
						 : fz(2) ? VIRTIO_BLK_WZ_F_UNMAP
							 : (uint32_t)fz(0);

				encode_segment(mem + (g - arena) + k * 16, sct,
					       num, flags);
			}
		}
		for (unsigned k = 0; k < r.n; k++)
			readable += r.sg[k].len;
		/* device-writable part, the status byte last */
		if (type == VIRTIO_BLK_T_IN || fz(8) == 0)
			for (unsigned k = 1 + fz(3); k--;)
				fz_carve(&r, fz_data_len(), true);
		else if (type == VIRTIO_BLK_T_GET_ID)
			fz_carve(&r, fz(4) ? 20 : (uint32_t)(1 + fz(40)), true);
		if (!r.sg[r.n - 1].write) {
			if (!no_status) /* else: no writable byte at all */
				fz_carve(&r, 1, true);
		} else if (status_alone) {
			fz_carve(&r, 1, true);
		} else {
			r.sg[r.n - 1].len++; /* shares the last buffer */
		}
		status_sg = r.n - 1;
		for (unsigned k = 0; k < r.n; k++)
			if (r.sg[k].write)
				writable += r.sg[k].len;
		memcpy(shadow, mem, FZ_ARENA);

		ck_assert_int_ge(vtd_vq_add(&vq, r.sg, r.n, false), 0);
		vtd_kick(&drv, 0);
		ck_assert_msg(wait_used(&vq, &id, &len) == 1,
			      "request %d (type %#x) never completed", i, type);
		assert_device_ok();
		ck_assert_uint_le(len, writable);

		/* Guest memory: only the writable buffers may have changed. */
		for (unsigned k = 0; k < r.n; k++)
			if (r.sg[k].write)
				memcpy(shadow + (r.sg[k].gpa - arena),
				       mem + (r.sg[k].gpa - arena),
				       r.sg[k].len);
		ck_assert_msg(memcmp(shadow, mem, FZ_ARENA) == 0,
			      "request %d (type %#x) wrote guest memory "
			      "outside its writable buffers", i, type);
		if (!writable) {
			/* Nowhere to report: returned unused (§2.7.8). */
			ck_assert_uint_eq(len, 0);
			continue;
		}
		status = mem[r.sg[status_sg].gpa - arena +
			     r.sg[status_sg].len - 1];
		ck_assert_msg(status <= VIRTIO_BLK_S_UNSUPP,
			      "request %d: status %#x", i, status);
		counts[status]++;
		/* The device's view: the header is the first 16 bytes of the
		 * readable part wherever the descriptors split it
		 * (§2.7.4.1), the rest is the payload. */
		for (unsigned k = 0, pos = 0; k < r.n; k++)
			if (!r.sg[k].write) {
				memcpy(rd + pos, shadow + (r.sg[k].gpa - arena),
				       r.sg[k].len);
				pos += r.sg[k].len;
			}
		if (readable < 16) {
			ck_assert_uint_eq(status, VIRTIO_BLK_S_IOERR);
			continue;
		}
		memcpy(&le_type, rd, 4);
		memcpy(&le_sector, rd + 8, 8);
		type = le32toh(le_type);
		sector = le64toh(le_sector);
		if (!known_type(type))
			ck_assert_uint_eq(status, VIRTIO_BLK_S_UNSUPP);
		if (status != VIRTIO_BLK_S_OK)
			continue;

		/* Success: what the device must have done. */
		if (type == VIRTIO_BLK_T_OUT) {
			uint64_t off = sector * 512, n = readable - 16;

			ck_assert_uint_eq(writable, 1);
			ck_assert_uint_le(off + n, DISK_BYTES);
			memcpy(model + off, rd + 16, n);
			memset(unknown + off / 512, 0, n / 512);
		} else if (type == VIRTIO_BLK_T_IN) {
			uint64_t pos = sector * 512;
			uint32_t left = writable - 1;

			ck_assert_uint_eq(readable, 16);
			ck_assert_uint_eq(len, writable);
			ck_assert_uint_le(pos + left, DISK_BYTES);
			for (unsigned k = 0; k < r.n && left; k++) {
				uint32_t l = r.sg[k].len < left ? r.sg[k].len
								: left;
				const uint8_t *got = mem + (r.sg[k].gpa - arena);

				if (!r.sg[k].write)
					continue;
				for (uint32_t b = 0; b < l; b++, pos++)
					ck_assert_msg(unknown[pos / 512] ||
						      got[b] == model[pos],
						      "request %d: image byte %llu "
						      "read wrong", i,
						      (unsigned long long)pos);
				left -= l;
			}
		} else if (type == VIRTIO_BLK_T_DISCARD ||
			   type == VIRTIO_BLK_T_WRITE_ZEROES) {
			ck_assert_uint_eq((readable - 16) % 16, 0);
			for (unsigned k = 0; k < (readable - 16) / 16; k++) {
				uint64_t a, n;
				uint32_t num;

				memcpy(&le_sector, rd + 16 + k * 16, 8);
				memcpy(&num, rd + 16 + k * 16 + 8, 4);
				a = le64toh(le_sector) * 512;
				n = (uint64_t)le32toh(num) * 512;
				ck_assert_uint_le(a + n, DISK_BYTES);
				if (type == VIRTIO_BLK_T_WRITE_ZEROES)
					memset(model + a, 0, n);
				memset(unknown + a / 512,
				       type == VIRTIO_BLK_T_DISCARD, n / 512);
			}
		}
	}
	/* Every outcome happened, so the requests reached past the checks. */
	ck_assert_uint_gt(counts[VIRTIO_BLK_S_OK], 50);
	ck_assert_uint_gt(counts[VIRTIO_BLK_S_IOERR], 50);
	ck_assert_uint_gt(counts[VIRTIO_BLK_S_UNSUPP], 10);

	/* The image: its size, and the model's bytes wherever known. */
	ck_assert_int_eq(virtio_device_sync(DEV), 0);
	if (qcow2) {
		stop_blk();
		snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", q);
		ck_assert_int_eq(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "qemu-img convert -O raw '%s' '%s'",
			 q, img);
		ck_assert_int_eq(system(cmd), 0);
	}
	ck_assert_int_eq(stat(img, &st), 0);
	ck_assert_int_eq(st.st_size, DISK_BYTES);
	file_read(0, file, DISK_BYTES);
	for (uint32_t sct = 0; sct < SECTORS; sct++)
		if (!unknown[sct])
			ck_assert_msg(memcmp(file + sct * 512,
					     model + sct * 512, 512) == 0,
				      "image sector %u differs from the model",
				      sct);
	free(model);
	free(file);
	free(unknown);
	free(shadow);
	free(rd);
}

START_TEST(test_malformed_random_requests_touch_only_what_they_may)
{
	random_requests(false, false);
}
END_TEST

/* The same on qcow2 (the image must also pass qemu-img check), through
 * a packed ring. */
START_TEST(test_malformed_random_requests_on_qcow2_touch_only_what_they_may)
{
	random_requests(true, true);
}
END_TEST

/* The same with cache=none (O_DIRECT): the random segments are mostly
 * not block aligned, so this drives the bounce buffers, on raw and on
 * qcow2 (whose metadata updates bounce too). */
START_TEST(test_malformed_random_requests_cache_none_touch_only_what_they_may)
{
	start_direct = true;
	stop_blk();
	start_blk(img, false, 1, NULL);
	random_requests(false, false);
}
END_TEST

START_TEST(test_malformed_random_requests_on_qcow2_cache_none_touch_only_what_they_may)
{
	start_direct = true;
	random_requests(true, false);
}
END_TEST

/* And with an O_DIRECT block of 4 KiB (a 4 KiB-sector host disk, made
 * with min_dio_block): most random writes, discards and write-zeroes
 * cover blocks in part, so this drives the read-modify-write bounces and
 * the write guard. */
START_TEST(test_malformed_random_requests_cache_none_4k_blocks_touch_only_what_they_may)
{
	start_direct = true;
	start_dio_block = 4096;
	stop_blk();
	start_blk(img, false, 1, NULL);
	ck_assert_uint_eq(disk_logical_block_size(disk), 4096);
	random_requests(false, false);
}
END_TEST

START_TEST(test_malformed_random_requests_on_qcow2_cache_none_4k_blocks_touch_only_what_they_may)
{
	start_direct = true;
	start_dio_block = 4096;
	random_requests(true, false);
}
END_TEST

START_TEST(test_5_2_2_mq_second_queue_serves_requests)
{
	uint64_t w = buffer(512, 0x42);
	struct vtd_sg out = { w, 512, false };
	uint8_t b[512];

	stop_blk();
	start_blk(img, false, 2, NULL);
	ck_assert(DEV->device_features & F(VIRTIO_BLK_F_MQ));
	ck_assert_uint_eq(DEV->nr_queues, 2);
	ck_assert_uint_eq(cfg8(VIRTIO_BLK_CFG_NUM_QUEUES), 2);
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 64, false, false), 0);
	ck_assert_int_eq(vtd_vq_init(&vq1, &drv, 64, false, false), 0);
	ck_assert_int_eq(vtd_negotiate(&drv, F_BASIC | F(VIRTIO_BLK_F_MQ)), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 0, &vq), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 1, &vq1), 0);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
	ck_assert_uint_eq(request_on(&vq1, 1, VIRTIO_BLK_T_OUT, 9, &out, 1,
				     NULL), VIRTIO_BLK_S_OK);
	ck_assert_uint_ge(vtd_queue_irqs(&drv, 1), 1);
	file_read(9 * 512, b, 512);
	ck_assert_uint_eq(b[0], 0x42);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(test_2_4_reset_with_requests_in_flight)
{
	uint32_t id, len;

	bring_up(F_BASIC, false);
	for (int i = 0; i < 16; i++) {
		uint64_t d = buffer(65536, 0);
		struct vtd_sg sg[3] = {
			{ put_hdr(VIRTIO_BLK_T_IN, (uint64_t)i * 128), 16, false },
			{ d, 65536, true },
			{ vtd_alloc(&drv, 1, 1), 1, true },
		};

		ck_assert_int_ge(vtd_vq_add(&vq, sg, 3, false), 0);
	}
	virtio_queue_kick(DEV, 0);
	virtio_reset(DEV);
	ck_assert_uint_eq(virtio_get_status(DEV), 0);
	ck_assert_uint_eq(disk_inflight(disk), 0);
	/* Nothing is pushed to the old ring after the reset returned. */
	{
		uint16_t before = vtd_split_used_idx(&vq);

		virtio_device_sync(DEV);
		usleep(20000);
		virtio_device_sync(DEV);
		ck_assert_uint_eq(vtd_split_used_idx(&vq), before);
	}
	/* And the device works again after re-initialisation. */
	vtd_vq_destroy(&vq);
	bring_up(F_BASIC, false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
	(void)id;
	(void)len;
}
END_TEST

START_TEST(test_5_2_qcow2_image_through_the_device_passes_qemu_img_check)
{
	char q[160], cmd[400];
	uint64_t w = buffer(65536 + 4096, 0);
	struct vtd_sg out = { w, 65536 + 4096, false }, seg;
	uint8_t *wp = vtd_ptr(&drv, w, 65536 + 4096);

	stop_blk();
	snprintf(q, sizeof(q), "%s/disk.qcow2", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 '%s' 16M", q);
	ck_assert_int_eq(system(cmd), 0);
	start_blk(q, false, 1, NULL);
	ck_assert_uint_eq(cfg64(VIRTIO_BLK_CFG_CAPACITY), (16 << 20) / 512);
	for (int i = 0; i < 65536 + 4096; i++)
		wp[i] = (uint8_t)(i * 31);
	bring_up(F_BASIC, false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 7, &out, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 20000, &out, 1, NULL),
			  VIRTIO_BLK_S_OK);
	seg = (struct vtd_sg){ segment(20000, 256, VIRTIO_BLK_WZ_F_UNMAP), 16,
			       false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
	stop_blk();
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", q);
	ck_assert_int_eq(system(cmd), 0);
	/* The data is where the guest put it. */
	snprintf(cmd, sizeof(cmd),
		 "qemu-img convert -O raw '%s' '%s/out.raw'", q, dir);
	ck_assert_int_eq(system(cmd), 0);
	{
		char raw[160];
		uint8_t b[65536 + 4096];
		int fd;

		snprintf(raw, sizeof(raw), "%s/out.raw", dir);
		fd = open(raw, O_RDONLY);
		ck_assert_int_eq(pread(fd, b, sizeof(b), 7 * 512),
				 (ssize_t)sizeof(b));
		close(fd);
		ck_assert_mem_eq(b, wp, sizeof(b));
	}
}
END_TEST

/* Kite killed (SIGKILL) right after the guest's flush completed: the
 * qcow2 image must pass qemu-img check and hold everything written. */
static void sigkill_after_guest_flush(void)
{
	char q[160], ref[160], cmd[600];
	int pfd[2], st;
	pid_t pid;
	char c;

	stop_blk();
	snprintf(q, sizeof(q), "%s/kill.qcow2", dir);
	snprintf(ref, sizeof(ref), "%s/kill.raw", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 '%s' 16M", q);
	ck_assert_int_eq(system(cmd), 0);
	make_raw(ref, 16 << 20);
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(ref, O_RDWR);
		uint8_t z[8 * 512] = { 0 };
		struct vtd_sg seg;

		start_blk(q, false, 1, NULL);
		bring_up(F_BASIC, false);
		for (int i = 0; i < 24; i++) {
			uint32_t len = 512 * (1 + (uint32_t)(i * 37) % 200);
			uint64_t sector = (uint64_t)(i * 7919) % 30000;
			uint64_t w = buffer(len, 0);
			uint8_t *wp = vtd_ptr(&drv, w, len);
			struct vtd_sg out = { w, len, false };

			for (uint32_t k = 0; k < len; k++)
				wp[k] = (uint8_t)(k * 13 + i);
			if (request(VIRTIO_BLK_T_OUT, sector, &out, 1, NULL) !=
				    VIRTIO_BLK_S_OK ||
			    pwrite(fd, wp, len, (off_t)sector * 512) != len)
				_exit(1);
		}
		/* Zeroes over part of what was written, a discard too. */
		seg = (struct vtd_sg){ segment(7919 % 30000, 8, 0), 16, false };
		if (request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 1, NULL) ||
		    pwrite(fd, z, sizeof(z), (off_t)(7919 % 30000) * 512) < 0)
			_exit(1);
		seg = (struct vtd_sg){ segment(128 * 100, 128 * 4, 0), 16, false };
		if (request(VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL))
			_exit(1);
		for (int k = 0; k < 64; k++)
			if (pwrite(fd, z, sizeof(z),
				   (off_t)(128 * 100 + k * 8) * 512) < 0)
				_exit(1);
		if (request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL) != 0 ||
		    write(pfd[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(pfd[0]);
	ck_assert(WIFSIGNALED(st));
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", q);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "qemu-img compare -q '%s' '%s'", q, ref);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_5_2_qcow2_sigkill_after_guest_flush_leaves_consistent_image)
{
	sigkill_after_guest_flush();
}
END_TEST

/* The same with cache=none: data and metadata on the O_DIRECT fd. */
START_TEST(test_5_2_qcow2_cache_none_sigkill_after_guest_flush_leaves_consistent_image)
{
	start_direct = true;
	sigkill_after_guest_flush();
}
END_TEST

/* ==== multiqueue: a thread per queue ==== */

/* Negotiate MQ and set up |nq| split queues of |size| entries in |qs|
 * (zeroed first), then DRIVER_OK. */
static void mq_bring_up(struct vtd_vq *qs, unsigned nq, uint16_t size)
{
	memset(qs, 0, nq * sizeof(*qs));
	for (unsigned q = 0; q < nq; q++)
		ck_assert_int_eq(vtd_vq_init(&qs[q], &drv, size, false, false),
				 0);
	ck_assert_int_eq(vtd_negotiate(&drv, F_BASIC | F(VIRTIO_BLK_F_MQ)), 0);
	for (unsigned q = 0; q < nq; q++)
		ck_assert_int_eq(vtd_setup_queue(&drv, q, &qs[q]), 0);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
}

/* Write 32 x 4 KiB on each of |nq| queues, all in flight at once, then
 * read everything back through other queues. */
static void mq_parallel_io(unsigned nq)
{
	enum { PER = 32 };
	struct vtd_vq qs[4];
	uint64_t sts[4][PER];
	uint32_t id, len;

	ck_assert_uint_le(nq, 4);
	ck_assert(DEV->device_features & F(VIRTIO_BLK_F_MQ));
	ck_assert_ptr_nonnull(DEV->queue_loops);
	mq_bring_up(qs, nq, 128);
	for (unsigned q = 0; q < nq; q++)
		for (int i = 0; i < PER; i++) {
			uint64_t sector = ((uint64_t)q * PER + i) * 8;
			struct vtd_sg sg[3] = {
				{ put_hdr(VIRTIO_BLK_T_OUT, sector), 16, false },
				{ buffer(4096, (uint8_t)(q * PER + i + 1)), 4096,
				  false },
				{ vtd_alloc(&drv, 1, 1), 1, true },
			};

			sts[q][i] = sg[2].gpa;
			*(uint8_t *)vtd_ptr(&drv, sts[q][i], 1) = 0xee;
			ck_assert_int_ge(vtd_vq_add(&qs[q], sg, 3, false), 0);
		}
	for (unsigned q = 0; q < nq; q++)
		virtio_queue_kick(DEV, q);
	for (unsigned q = 0; q < nq; q++) {
		int got = 0;

		while (got < PER && wait_used(&qs[q], &id, &len))
			got++;
		ck_assert_int_eq(got, PER);
		ck_assert_uint_ge(vtd_queue_irqs(&drv, q), 1);
		for (int i = 0; i < PER; i++)
			ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, sts[q][i], 1),
					  VIRTIO_BLK_S_OK);
	}
	/* Read back each queue's data through the next queue. */
	for (unsigned q = 0; q < nq; q++) {
		unsigned rq = (q + 1) % nq;
		uint64_t r = buffer(PER * 4096, 0);
		struct vtd_sg in = { r, PER * 4096, true };

		ck_assert_uint_eq(request_on(&qs[rq], rq, VIRTIO_BLK_T_IN,
					     (uint64_t)q * PER * 8, &in, 1,
					     NULL), VIRTIO_BLK_S_OK);
		for (int i = 0; i < PER; i++) {
			uint8_t want[4096];

			memset(want, (uint8_t)(q * PER + i + 1), 4096);
			ck_assert_mem_eq(vtd_ptr(&drv, r + (uint64_t)i * 4096,
						 4096), want, 4096);
		}
	}
	ck_assert_uint_eq(request_on(&qs[nq - 1], nq - 1, VIRTIO_BLK_T_FLUSH,
				     0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	for (unsigned q = 0; q < nq; q++)
		vtd_vq_destroy(&qs[q]);
}

/* Is one of this process's threads called |name| (its comm)? */
static bool thread_named(const char *name)
{
	DIR *tasks = opendir("/proc/self/task");
	struct dirent *t;
	bool found = false;

	ck_assert_ptr_nonnull(tasks);
	while (!found && (t = readdir(tasks))) {
		char p[300], comm[32] = "";
		FILE *f;

		if (t->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/self/task/%s/comm", t->d_name);
		f = fopen(p, "r");
		if (!f)
			continue; /* the thread has just ended */
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
		found = strcmp(comm, name) == 0;
	}
	closedir(tasks);
	return found;
}

START_TEST(test_5_2_2_mq_queues_run_in_parallel_raw)
{
	stop_blk();
	start_blk(img, false, 4, NULL);
	mq_parallel_io(4);
	/* Per-queue disk handles: queue 0 drives the disk itself. */
	ck_assert_ptr_eq(blk.queues[0].disk, disk);
	ck_assert_ptr_ne(blk.queues[1].disk, disk);
	/* Each queue's thread is named after its device and queue (what
	 * top -H and perf show). */
	for (unsigned q = 0; q < 4; q++) {
		char name[16];

		snprintf(name, sizeof(name), "blk0.q%u", q);
		ck_assert_msg(thread_named(name), "no thread named %s", name);
	}
}
END_TEST

static void mq_qcow2_concurrent_allocation(void)
{
	char q[160], cmd[400];

	stop_blk();
	snprintf(q, sizeof(q), "%s/mq.qcow2", dir);
	snprintf(cmd, sizeof(cmd),
		 "qemu-img create -q -f qcow2 -o cluster_size=4096 '%s' 16M", q);
	ck_assert_int_eq(system(cmd), 0);
	start_blk(q, false, 3, NULL);
	mq_parallel_io(3);
	stop_blk();
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", q);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_5_2_2_mq_qcow2_concurrent_allocation_passes_qemu_img_check)
{
	mq_qcow2_concurrent_allocation();
}
END_TEST

/* The same with cache=none: allocations (metadata read-modify-writes of
 * their blocks under the lock) racing io_uring data on every queue. */
START_TEST(test_5_2_2_mq_qcow2_cache_none_concurrent_allocation_passes_qemu_img_check)
{
	start_direct = true;
	mq_qcow2_concurrent_allocation();
}
END_TEST

/* cache=none on a host disk of 4 KiB sectors (made with min_dio_block):
 * the driver writes single 512-byte sectors anyway (blk_size is advice,
 * §5.2.5), every sector of 16 blocks, sector s on queue s % 4, all in
 * flight at once.  Each is a read-modify-write of its block on some queue
 * thread's pool; none may undo another. */
static void mq_sector_writes_into_4k_blocks(const char *path)
{
	enum { NQ = 4, NSEC = 16 * 8 };
	struct vtd_vq qs[NQ];
	uint64_t sts[NSEC], r;
	uint32_t id, len;

	stop_blk();
	start_direct = true;
	start_dio_block = 4096;
	start_blk(path, false, NQ, NULL);
	mq_bring_up(qs, NQ, 128);
	for (unsigned s = 0; s < NSEC; s++) {
		struct vtd_sg sg[3] = {
			{ put_hdr(VIRTIO_BLK_T_OUT, s), 16, false },
			{ buffer(512, (uint8_t)(s + 1)), 512, false },
			{ vtd_alloc(&drv, 1, 1), 1, true },
		};

		sts[s] = sg[2].gpa;
		*(uint8_t *)vtd_ptr(&drv, sts[s], 1) = 0xee;
		ck_assert_int_ge(vtd_vq_add(&qs[s % NQ], sg, 3, false), 0);
	}
	for (unsigned q = 0; q < NQ; q++)
		virtio_queue_kick(DEV, q);
	for (unsigned q = 0; q < NQ; q++)
		for (unsigned i = 0; i < NSEC / NQ; i++)
			ck_assert(wait_used(&qs[q], &id, &len));
	for (unsigned s = 0; s < NSEC; s++)
		ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, sts[s], 1),
				  VIRTIO_BLK_S_OK);
	r = buffer(NSEC * 512, 0);
	{
		struct vtd_sg in = { r, NSEC * 512, true };

		ck_assert_uint_eq(request_on(&qs[0], 0, VIRTIO_BLK_T_IN, 0, &in,
					     1, NULL),
				  VIRTIO_BLK_S_OK);
	}
	for (unsigned s = 0; s < NSEC; s++) {
		uint8_t want[512];

		memset(want, (uint8_t)(s + 1), 512);
		ck_assert_msg(!memcmp(vtd_ptr(&drv, r + (uint64_t)s * 512, 512),
				      want, 512),
			      "sector %u (block %u) lost its write", s, s / 8);
	}
	for (unsigned q = 0; q < NQ; q++)
		vtd_vq_destroy(&qs[q]);
	stop_blk();
}

START_TEST(test_5_2_2_mq_cache_none_sector_writes_into_4k_blocks_all_land)
{
	mq_sector_writes_into_4k_blocks(img);
}
END_TEST

START_TEST(test_5_2_2_mq_qcow2_cache_none_sector_writes_into_4k_blocks_all_land)
{
	char q[160], cmd[400];

	snprintf(q, sizeof(q), "%s/sw.qcow2", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 '%s' 16M", q);
	ck_assert_int_eq(system(cmd), 0);
	mq_sector_writes_into_4k_blocks(q);
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", q);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_2_4_mq_reset_with_requests_in_flight_on_every_queue)
{
	struct vtd_vq qs[3];

	stop_blk();
	start_blk(img, false, 3, NULL);
	mq_bring_up(qs, 3, 64);
	for (unsigned q = 0; q < 3; q++)
		for (int i = 0; i < 8; i++) {
			struct vtd_sg sg[3] = {
				{ put_hdr(VIRTIO_BLK_T_IN, (uint64_t)i * 128),
				  16, false },
				{ buffer(65536, 0), 65536, true },
				{ vtd_alloc(&drv, 1, 1), 1, true },
			};

			ck_assert_int_ge(vtd_vq_add(&qs[q], sg, 3, false), 0);
		}
	for (unsigned q = 0; q < 3; q++)
		virtio_queue_kick(DEV, q);
	virtio_reset(DEV);
	ck_assert_uint_eq(virtio_get_status(DEV), 0);
	for (unsigned q = 0; q < 3; q++)
		ck_assert_uint_eq(disk_inflight(blk.queues[q].disk), 0);
	{
		uint16_t before[3];

		for (unsigned q = 0; q < 3; q++)
			before[q] = vtd_split_used_idx(&qs[q]);
		virtio_device_sync(DEV);
		usleep(20000);
		virtio_device_sync(DEV);
		for (unsigned q = 0; q < 3; q++)
			ck_assert_uint_eq(vtd_split_used_idx(&qs[q]), before[q]);
	}
	for (unsigned q = 0; q < 3; q++)
		vtd_vq_destroy(&qs[q]);
}
END_TEST

/* ---- the core's per-queue threads, on a minimal two-queue device ---- */

static struct {
	struct virtio_device vdev;
	struct vtd_vq vq[2];
	int inside, max_inside, hold, resets, inside_at_reset;
	pthread_t tid[2], watch_tid;
	int efd;
} par;

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void par_notify(struct virtio_device *dev, unsigned qidx)
{
	int now;
	double t0 = mono();

	(void)dev;
	par.tid[qidx] = pthread_self();
	now = __atomic_add_fetch(&par.inside, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		int m = __atomic_load_n(&par.max_inside, __ATOMIC_SEQ_CST);

		if (now <= m || __atomic_compare_exchange_n(
					&par.max_inside, &m, now, false,
					__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			break;
	}
	/* Wait (bounded) for the other queue to be inside too, and while
	 * the test holds us. */
	while ((__atomic_load_n(&par.inside, __ATOMIC_SEQ_CST) < 2 &&
		mono() - t0 < 2.0) ||
	       __atomic_load_n(&par.hold, __ATOMIC_SEQ_CST))
		sched_yield();
	__atomic_sub_fetch(&par.inside, 1, __ATOMIC_SEQ_CST);
}

static void par_reset(struct virtio_device *dev)
{
	(void)dev;
	par.resets++;
	par.inside_at_reset = __atomic_load_n(&par.inside, __ATOMIC_SEQ_CST);
}

static void par_watch(struct virtio_device *dev, int fd, void *opaque)
{
	uint64_t v;

	(void)dev;
	(void)opaque;
	if (read(fd, &v, sizeof(v)) == sizeof(v))
		par.watch_tid = pthread_self();
}

static const struct virtio_device_ops par_ops = {
	.queue_notify = par_notify,
	.reset = par_reset,
};

static void par_start(void)
{
	memset(&par, 0, sizeof(par));
	ck_assert_int_eq(virtio_device_init(&par.vdev, "par", 99, &par_ops,
					    &drv.mem, 2, 64, 0, 0), 0);
	ck_assert_int_eq(virtio_device_use_queue_threads(&par.vdev), 0);
	par.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(par.efd, 0);
	ck_assert_int_eq(virtio_queue_watch_fd(&par.vdev, 1, par.efd,
					       par_watch, NULL), 0);
	vtd_attach(&drv, &par.vdev);
	ck_assert_int_eq(virtio_device_start(&par.vdev), 0);
	/* Too late to change the threading once started. */
	ck_assert_int_eq(virtio_queue_watch_fd(&par.vdev, 0, par.efd,
					       par_watch, NULL), -EBUSY);
	for (int q = 0; q < 2; q++) {
		ck_assert_int_eq(vtd_vq_init(&par.vq[q], &drv, 64, false, false),
				 0);
	}
	ck_assert_int_eq(vtd_negotiate(&drv, F_V1), 0);
	for (int q = 0; q < 2; q++)
		ck_assert_int_eq(vtd_setup_queue(&drv, q, &par.vq[q]), 0);
}

static void par_stop(void)
{
	virtio_device_destroy(&par.vdev);
	ck_assert_ptr_null(par.vdev.queue_loops);
	close(par.efd);
	for (int q = 0; q < 2; q++)
		vtd_vq_destroy(&par.vq[q]);
}

START_TEST(test_core_queue_threads_run_queues_in_parallel)
{
	uint64_t one = 1;

	par_start();
	/* DRIVER_OK replays a notification on every ready queue: both
	 * queue_notify calls must be running at the same time. */
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
	ck_assert_int_eq(virtio_device_sync(&par.vdev), 0);
	ck_assert_int_eq(par.max_inside, 2);
	ck_assert(!pthread_equal(par.tid[0], par.tid[1]));
	/* A kick on one queue runs on that queue's thread. */
	{
		pthread_t t0 = par.tid[0], t1 = par.tid[1];

		par.tid[0] = par.tid[1] = pthread_self();
		virtio_queue_kick(&par.vdev, 1);
		virtio_queue_kick(&par.vdev, 0);
		ck_assert_int_eq(virtio_device_sync(&par.vdev), 0);
		ck_assert(pthread_equal(par.tid[0], t0));
		ck_assert(pthread_equal(par.tid[1], t1));
	}
	/* And a fd watched for queue 1 is served by queue 1's thread. */
	ck_assert_int_eq(write(par.efd, &one, sizeof(one)), sizeof(one));
	ck_assert_int_eq(virtio_device_sync(&par.vdev), 0);
	ck_assert(pthread_equal(par.watch_tid, par.tid[1]));
	par_stop();
}
END_TEST

static void *par_reset_thread(void *arg)
{
	(void)arg;
	virtio_reset(&par.vdev);
	return NULL;
}

START_TEST(test_core_queue_threads_reset_waits_for_every_queue)
{
	pthread_t t;
	int resets0;

	par_start();
	resets0 = par.resets; /* vtd_negotiate resets first */
	__atomic_store_n(&par.hold, 1, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
	/* Both queue threads are now held inside queue_notify. */
	for (int i = 0; i < 2000 &&
	     __atomic_load_n(&par.inside, __ATOMIC_SEQ_CST) < 2; i++)
		usleep(1000);
	ck_assert_int_eq(__atomic_load_n(&par.inside, __ATOMIC_SEQ_CST), 2);
	ck_assert_int_eq(pthread_create(&t, NULL, par_reset_thread, NULL), 0);
	usleep(50000);
	/* §2.4: the reset must not complete while a queue is in use. */
	ck_assert_int_eq(par.resets, resets0);
	ck_assert(virtio_get_status(&par.vdev) & VIRTIO_STATUS_DRIVER_OK);
	__atomic_store_n(&par.hold, 0, __ATOMIC_SEQ_CST);
	pthread_join(t, NULL);
	ck_assert_int_eq(par.resets, resets0 + 1);
	ck_assert_int_eq(par.inside_at_reset, 0);
	ck_assert_uint_eq(virtio_get_status(&par.vdev), 0);
	/* After the reset no queue callback runs (queues not ready). */
	par.max_inside = 0;
	virtio_queue_kick(&par.vdev, 0);
	virtio_queue_kick(&par.vdev, 1);
	ck_assert_int_eq(virtio_device_sync(&par.vdev), 0);
	ck_assert_int_eq(par.max_inside, 0);
	par_stop();
}
END_TEST

/* A block device as the image: a loop device with 4 KiB logical sectors
 * over the fixture's file, so the size, block size and write-zeroes come
 * from the block-device ioctls (BLKGETSIZE64, BLKSSZGET, BLKZEROOUT).
 * Needs root and the loop driver, as CI has. */
START_TEST(test_5_2_block_device_as_image)
{
	uint64_t w = buffer(8192, 0), r = buffer(8192, 0);
	uint8_t *wp = vtd_ptr(&drv, w, 8192), file[8192], z[4096] = { 0 };
	struct vtd_sg out = { w, 8192, false }, in = { r, 8192, true }, seg;
	char cmd[600], line[256] = "";
	FILE *p;
	int st;

	stop_blk();
	snprintf(cmd, sizeof(cmd),
		 "losetup --find --show --sector-size 4096 '%s' 2>&1", img);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	if (!fgets(line, sizeof(line), p))
		line[0] = '\0';
	st = pclose(p);
	line[strcspn(line, "\n")] = '\0';
	ck_assert_msg(st == 0 && strncmp(line, "/dev/loop", 9) == 0,
		      "losetup (needs root and the loop driver): %s", line);
	snprintf(loopdev, sizeof(loopdev), "%s", line);

	start_blk(loopdev, false, 1, "kite-loop");
	bring_up(F_BASIC, false);
	ck_assert_uint_eq(cfg64(VIRTIO_BLK_CFG_CAPACITY), SECTORS);
	ck_assert_uint_eq(cfg32(VIRTIO_BLK_CFG_BLK_SIZE), 4096);
	for (int i = 0; i < 8192; i++)
		wp[i] = (uint8_t)(i * 13 + 1);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_OUT, 64, &out, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
	file_read(64 * 512, file, sizeof(file));
	ck_assert_mem_eq(file, wp, 8192);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_IN, 64, &in, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(vtd_ptr(&drv, r, 8192), wp, 8192);
	/* Write-zeroes over the first 4 KiB only. */
	seg = (struct vtd_sg){ segment(64, 8, 0), 16, false };
	ck_assert_uint_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg, 1, NULL),
			  VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
	file_read(64 * 512, file, sizeof(file));
	ck_assert_mem_eq(file, z, 4096);
	ck_assert_mem_eq(file + 4096, wp + 4096, 4096);
}
END_TEST

/* ---- busy-polling (virtio_device_set_polling) ---- */

/* Collect one used buffer without virtio_device_sync() (a sync ends a
 * poll): 1, or 0 after about 5 s. */
static int get_used_unsynced(uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < 5000; i++) {
		if (vtd_vq_get_used(&vq, id, len) == 1)
			return 1;
		usleep(1000);
	}
	return 0;
}

/* Restart the device with polling up to |poll_us| and bring the driver
 * up with EVENT_IDX. */
static void restart_polling(unsigned poll_us)
{
	stop_blk();
	start_poll_us = poll_us;
	start_blk(img, false, 1, NULL);
	start_poll_us = 0;
	ck_assert_int_eq(vtd_vq_init(&vq, &drv, 128, false, true), 0);
	ck_assert_int_eq(vtd_negotiate(&drv, F_BASIC |
				       F(VIRTIO_F_EVENT_IDX)), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 0, &vq), 0);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
}

/* restart_polling(), then one request kicked without a sync: it leaves
 * the queue thread in its poll, which shows as avail_event one behind
 * the next index the device reads (virtq_set_notification). */
static void start_polling(unsigned poll_us)
{
	struct vtd_sg st = { vtd_alloc(&drv, 1, 1), 1, true };
	struct vtd_sg sg[2] = { { put_hdr(VIRTIO_BLK_T_FLUSH, 0), 16, false },
				st };
	bool polling = false;
	uint32_t id, len;

	restart_polling(poll_us);
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 2, false), 0);
	ck_assert(vtd_vq_should_kick(&vq));
	virtio_queue_kick(DEV, 0);
	ck_assert_int_eq(get_used_unsynced(&id, &len), 1);
	for (int i = 0; i < 5000 && !polling; i++) {
		polling = vtd_split_avail_event(&vq) == 0;
		if (!polling)
			usleep(1000);
	}
	ck_assert_msg(polling, "queue thread never turned notifications off "
		      "(avail_event %u)", vtd_split_avail_event(&vq));
}

START_TEST(test_polling_serves_buffers_without_a_notification)
{
	uint64_t d = buffer(4096, 0x6b);
	struct vtd_sg sg[3] = {
		{ put_hdr(VIRTIO_BLK_T_OUT, 24), 16, false },
		{ d, 4096, false },
		{ vtd_alloc(&drv, 1, 1), 1, true },
	};
	uint8_t back[4096], want[4096];
	uint32_t id, len;

	start_polling(60u * 1000 * 1000);
	*(uint8_t *)vtd_ptr(&drv, sg[2].gpa, 1) = 0xee;
	ck_assert_int_ge(vtd_vq_add(&vq, sg, 3, false), 0);
	/* §2.7.10: the device asked for no notification ... */
	ck_assert(!vtd_vq_should_kick(&vq));
	/* ... and takes the buffer anyway: no kick, no sync. */
	ck_assert_int_eq(get_used_unsynced(&id, &len), 1);
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, sg[2].gpa, 1),
			  VIRTIO_BLK_S_OK);
	file_read(24 * 512, back, sizeof(back));
	memset(want, 0x6b, sizeof(want));
	ck_assert_mem_eq(back, want, sizeof(want));
}
END_TEST

/* The loop that serves requestq1 (its own with per-queue threads). */
static const struct virtio_loop *queue0_loop(void)
{
	return DEV->queue_loops ? &DEV->queue_loops[0] : &DEV->loop;
}

/* One GET_ID through the ring without a sync; spins for the used buffer
 * (a sleep between polls would look like a slow driver).  GET_ID needs
 * no disk I/O, so the device's only wait is for the driver.  Returns
 * whether the device asked for the notification. */
static bool get_id_unsynced(void)
{
	struct vtd_sg sg[3] = { { put_hdr(VIRTIO_BLK_T_GET_ID, 0), 16, false },
				{ vtd_alloc(&drv, 20, 1), 20, true },
				{ vtd_alloc(&drv, 1, 1), 1, true } };
	uint32_t id, len;
	bool kicked;

	ck_assert_int_ge(vtd_vq_add(&vq, sg, 3, false), 0);
	kicked = vtd_vq_should_kick(&vq);
	if (kicked)
		virtio_queue_kick(DEV, 0);
	for (long i = 0; vtd_vq_get_used(&vq, &id, &len) != 1; i++) {
		ck_assert_msg(i < 50000000, "GET_ID never completed");
		sched_yield();
	}
	ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, sg[2].gpa, 1),
			  VIRTIO_BLK_S_OK);
	return kicked;
}

/* The poll window adapts (virtio_device_set_polling): a driver that
 * sends a request every 20 ms, far beyond a 2 ms maximum, makes it
 * shrink to nothing -- the device then asks for every notification
 * again -- and a driver that sends the next request as soon as the last
 * completes makes it grow. */
START_TEST(test_polling_window_adapts_to_the_driver)
{
	uint64_t grows;

	restart_polling(2000);
	ck_assert_uint_eq(queue0_loop()->poll_ns[VIRTIO_WAIT_DRIVER], 2000u * 1000);

	/* 2 ms halved 9 times is below VIRTIO_POLL_MIN_NS: 0.  The first
	 * request follows no measured idle time, hence 11 more. */
	for (int i = 0; i < 12; i++) {
		get_id_unsynced();
		usleep(20 * 1000);
	}
	ck_assert_int_eq(virtio_device_sync(DEV), 0);
	ck_assert_uint_eq(queue0_loop()->poll_ns[VIRTIO_WAIT_DRIVER], 0);
	ck_assert_uint_ge(queue0_loop()->poll_shrinks, 9);
	grows = queue0_loop()->poll_grows;
	/* Not polling: the device wants each notification (§2.7.10). */
	ck_assert(get_id_unsynced());
	usleep(20 * 1000);
	ck_assert(get_id_unsynced());

	/* Back to back: the device slept for less than the maximum before
	 * each kick, so a window would have saved those wake-ups. */
	for (int i = 0; i < 200; i++)
		get_id_unsynced();
	ck_assert_int_eq(virtio_device_sync(DEV), 0);
	ck_assert_uint_gt(queue0_loop()->poll_grows, grows);
}
END_TEST

/* A reset must not wait for the poll window (an hour here): the poll
 * lets go as soon as someone wants the queue thread's lock.  Failing
 * shows as the test's timeout. */
START_TEST(test_polling_ends_at_once_for_a_reset_and_a_sync)
{
	start_polling(3600u * 1000 * 1000);
	ck_assert_int_eq(virtio_device_sync(DEV), 0);
	virtio_reset(DEV);
	ck_assert_uint_eq(virtio_get_status(DEV), 0);
	/* Works again after re-initialisation, notifications back on. */
	vtd_vq_destroy(&vq);
	bring_up(F_BASIC, false);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
}
END_TEST

/* ---- requests in flight: at most the queue size (issue 14) ---- */

static long max_rss_kib(void)
{
	struct rusage ru;

	ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_maxrss;
}

/* The queue's counters, read under the loop lock its thread writes them
 * under. */
static void assert_in_flight_at_most(unsigned n)
{
	pthread_mutex_lock(&DEV->loop.lock);
	ck_assert_uint_le(blk.queues[0].inflight, n);
	ck_assert_uint_le(DEV->queues[0].nr_inflight, n);
	ck_assert_uint_le(DEV->queues[0].inflight_peak, n);
	ck_assert_uint_le(disk_inflight(disk), n);
	pthread_mutex_unlock(&DEV->loop.lock);
}

/* A driver that makes one chain (a 4 KiB read, in an indirect table: one
 * descriptor) available again and again, a ring's worth per kick, and
 * never collects a used buffer: before the fix every copy became a
 * request of its own, submitted to the disk (RSS past 1.5 GB).  §2.7.13,
 * §2.8.21.1: a head in flight is not free, so the second copy is a
 * driver error: DEVICE_NEEDS_RESET at once, and the device never holds
 * more than that one request. */
static void one_chain_flood(bool packed)
{
	enum { ROUNDS = 64 };
	uint64_t d = buffer(4096, 0), st = vtd_alloc(&drv, 1, 1);
	struct vtd_sg sg[3] = {
		{ put_hdr(VIRTIO_BLK_T_IN, 8), 16, false },
		{ d, 4096, true },
		{ st, 1, true },
	};
	struct pvirtq_desc slot0;
	unsigned published = 0, cfg;
	long rss0;
	int head;

	bring_up(F_BASIC | F(VIRTIO_F_INDIRECT_DESC), packed);
	virtio_device_sync(DEV);
	rss0 = max_rss_kib();
	cfg = vtd_config_irqs(&drv);
	head = vtd_vq_add(&vq, sg, 3, true);
	ck_assert_int_ge(head, 0);
	published++;
	slot0 = *vtd_packed_desc(&vq, 0);
	for (unsigned r = 0; r < ROUNDS; r++) {
		/* A ring's worth (the first round: with the one above), so
		 * the split avail idx never runs more than the size ahead. */
		for (unsigned i = r ? 0 : 1; i < vq.size; i++, published++) {
			struct pvirtq_desc *p;

			if (!packed) {
				vtd_split_publish(&vq, (uint16_t)head);
				continue;
			}
			p = vtd_packed_desc(&vq, vq.next_avail);
			p->addr = slot0.addr;
			p->len = slot0.len;
			p->id = (uint16_t)head;
			__atomic_store_n(&p->flags,
					 (uint16_t)(vtd_packed_avail_flags(&vq) |
						    VIRTQ_DESC_F_INDIRECT),
					 __ATOMIC_RELEASE);
			if (++vq.next_avail == vq.size) {
				vq.next_avail = 0;
				vq.avail_wrap = !vq.avail_wrap;
			}
		}
		vtd_kick(&drv, 0);
		/* At the first repeat, in the first round. */
		ck_assert(virtio_get_status(DEV) &
			  VIRTIO_STATUS_DEVICE_NEEDS_RESET);
		assert_in_flight_at_most(1);
	}
	ck_assert_uint_ge(published, 8000);
	/* §2.1.2: one configuration change notification, not one a copy. */
	ck_assert_uint_eq(vtd_config_irqs(&drv), cfg + 1);
	/* The read the device did take is done and returned. */
	disk_drain(disk);
	virtio_device_sync(DEV);
	ck_assert_uint_eq(DEV->queues[0].inflight_peak, 1);
	/* Generous: the flood once grew by a gigabyte and more. */
	ck_assert_int_lt(max_rss_kib() - rss0, 64 * 1024);
	/* A reset makes the device usable again. */
	vtd_vq_destroy(&vq);
	bring_up(F_BASIC, packed);
	ck_assert_uint_eq(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL),
			  VIRTIO_BLK_S_OK);
}

START_TEST(test_malformed_one_chain_made_available_forever_split)
{
	one_chain_flood(false);
}
END_TEST

START_TEST(test_malformed_one_chain_made_available_forever_packed)
{
	one_chain_flood(true);
}
END_TEST

/* A legitimate driver keeps the queue full (exactly its size in flight,
 * each an indirect table in one descriptor, each used buffer replaced at
 * once) while the device returns them out of order (GET_ID completes at
 * once, reads when the disk is done): no false DEVICE_NEEDS_RESET, and
 * never more than the size in flight. */
static void full_queue_out_of_order(bool packed)
{
	enum { SIZE = 128, TOTAL = 24 * SIZE };
	static uint64_t data[SIZE], status[SIZE], seq_of[SIZE];
	static int res_of[SIZE];
	static bool busy[SIZE], is_get_id[SIZE];
	uint64_t seq = 0;
	unsigned done = 0, out_of_order = 0;
	uint32_t id, len;

	bring_up(F_BASIC | F(VIRTIO_F_INDIRECT_DESC), packed);
	ck_assert_uint_eq(vq.size, SIZE);
	for (unsigned r = 0; r < SIZE; r++) {
		data[r] = buffer(4096, 0);
		status[r] = vtd_alloc(&drv, 1, 1);
		busy[r] = false;
	}
	for (unsigned n = 0; n < TOTAL + SIZE; n++) {
		struct vtd_sg sg[3];
		unsigned r;
		int got;

		if (n >= SIZE) {
			/* The ring is full: collect one, then replace it. */
			uint64_t oldest = UINT64_MAX;

			ck_assert_int_eq(wait_used(&vq, &id, &len), 1);
			ck_assert_uint_lt(id, SIZE);
			r = (unsigned)res_of[id];
			ck_assert(busy[r]);
			ck_assert_uint_eq(*(uint8_t *)vtd_ptr(&drv, status[r], 1),
					  VIRTIO_BLK_S_OK);
			for (unsigned i = 0; i < SIZE; i++)
				if (busy[i] && seq_of[i] < oldest)
					oldest = seq_of[i];
			out_of_order += seq_of[r] != oldest;
			busy[r] = false;
			if (++done == TOTAL)
				break;
		}
		for (r = 0; busy[r]; r++)
			;
		is_get_id[r] = n % 4 == 3;
		*(uint8_t *)vtd_ptr(&drv, status[r], 1) = 0xee;
		sg[0] = (struct vtd_sg){
			put_hdr(is_get_id[r] ? VIRTIO_BLK_T_GET_ID
					     : VIRTIO_BLK_T_IN,
				(uint64_t)r * 8),
			16, false };
		sg[1] = (struct vtd_sg){ data[r],
					 is_get_id[r] ? VIRTIO_BLK_ID_BYTES
						      : 4096,
					 true };
		sg[2] = (struct vtd_sg){ status[r], 1, true };
		got = vtd_vq_add(&vq, sg, 3, true);
		ck_assert_int_ge(got, 0);
		ck_assert_int_lt(got, SIZE);
		res_of[got] = (int)r;
		seq_of[r] = seq++;
		busy[r] = true;
		if (n >= SIZE - 1)
			vtd_kick(&drv, 0);
		assert_device_ok();
	}
	ck_assert_uint_eq(done, TOTAL);
	ck_assert_uint_gt(out_of_order, 0);
	/* The device did hold most of the ring at once (the reads). */
	ck_assert_uint_gt(DEV->queues[0].inflight_peak, SIZE / 2);
	assert_in_flight_at_most(SIZE);
	assert_device_ok();
}

START_TEST(test_5_2_queue_size_requests_in_flight_out_of_order_split)
{
	full_queue_out_of_order(false);
}
END_TEST

START_TEST(test_5_2_queue_size_requests_in_flight_out_of_order_packed)
{
	full_queue_out_of_order(true);
}
END_TEST

static Suite *virtio_blk_suite(void)
{
	Suite *s = suite_create("virtio_blk");
	TCase *tc = tcase_create("blk");

	tcase_add_checked_fixture(tc, setup_default, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_5_2_identity_type_2_features_and_config);
	tcase_add_test(tc, test_5_2_5_2_device_must_offer_flush_with_config_wce);
	tcase_add_test(tc, test_5_2_5_2_writeback_0_when_config_wce_without_flush);
	tcase_add_test(tc, test_5_2_5_2_device_must_initialize_padding_to_0);
	tcase_add_test(tc, test_5_2_5_3_legacy_device_must_not_change_cache_mode_on_status_or_features);
	tcase_add_test(tc, test_5_2_5_2_device_should_not_offer_zoned);
	tcase_add_test(tc, test_5_2_6_write_then_read_split);
	tcase_add_test(tc, test_5_2_6_write_then_read_packed);
	tcase_add_test(tc, test_5_2_6_reads_host_written_data_scattered);
	tcase_add_test(tc, test_5_2_6_many_requests_in_flight);
	tcase_add_test(tc, test_5_2_6_2_flush_and_writethrough_commit_before_completion);
	tcase_add_test(tc, test_5_2_6_2_writes_stable_when_flush_not_negotiated);
	tcase_add_test(tc, test_5_2_6_get_id_returns_serial_nul_padded);
	tcase_add_test(tc, test_5_2_6_get_id_20_bytes_has_no_terminator);
	tcase_add_test(tc, test_5_2_6_2_device_must_fail_writes_when_ro_and_write_nothing);
	tcase_add_test(tc, test_5_2_6_2_device_must_set_unsupp_for_unknown_flags);
	tcase_add_test(tc, test_5_2_6_2_device_must_set_unsupp_for_discard_with_unmap);
	tcase_add_test(tc, test_5_2_6_2_write_zeroes_reads_must_return_zeroes);
	tcase_add_test(tc, test_5_2_6_2_write_zeroes_with_unmap_reads_must_return_zeroes);
	tcase_add_test(tc, test_5_2_6_2_discard_multi_segment_ok);
	tcase_add_test(tc, test_5_2_6_2_zone_requests_unsupp_without_zoned);
	tcase_add_test(tc, test_5_2_6_2_discard_unsupp_when_not_negotiated);
	tcase_add_test(tc, test_malformed_short_header_is_ioerr);
	tcase_add_test(tc, test_malformed_header_split_across_descriptors_is_fine);
	tcase_add_test(tc, test_malformed_status_shares_descriptor_with_data);
	tcase_add_test(tc, test_malformed_wrong_directions_are_ioerr);
	tcase_add_test(tc, test_malformed_sectors_past_the_end_are_ioerr);
	tcase_add_test(tc, test_malformed_partial_sector_and_bad_segment_lists_are_ioerr);
	tcase_add_test(tc, test_malformed_no_status_byte_returns_chain_unused);
	tcase_add_test(tc, test_malformed_too_many_segments_is_ioerr);
	tcase_add_test(tc, test_malformed_one_chain_made_available_forever_split);
	tcase_add_test(tc, test_malformed_one_chain_made_available_forever_packed);
	tcase_add_test(tc, test_5_2_queue_size_requests_in_flight_out_of_order_split);
	tcase_add_test(tc, test_5_2_queue_size_requests_in_flight_out_of_order_packed);
	tcase_add_test(tc, test_malformed_random_requests_touch_only_what_they_may);
	tcase_add_test(tc, test_malformed_random_requests_on_qcow2_touch_only_what_they_may);
	tcase_add_test(tc, test_malformed_random_requests_cache_none_touch_only_what_they_may);
	tcase_add_test(tc, test_malformed_random_requests_on_qcow2_cache_none_touch_only_what_they_may);
	tcase_add_test(tc, test_malformed_random_requests_cache_none_4k_blocks_touch_only_what_they_may);
	tcase_add_test(tc, test_malformed_random_requests_on_qcow2_cache_none_4k_blocks_touch_only_what_they_may);
	tcase_add_test(tc, test_5_2_2_mq_second_queue_serves_requests);
	tcase_add_test(tc, test_2_4_reset_with_requests_in_flight);
	tcase_add_test(tc, test_5_2_qcow2_image_through_the_device_passes_qemu_img_check);
	tcase_add_test(tc, test_5_2_qcow2_sigkill_after_guest_flush_leaves_consistent_image);
	tcase_add_test(tc, test_5_2_qcow2_cache_none_sigkill_after_guest_flush_leaves_consistent_image);
	tcase_add_test(tc, test_5_2_2_mq_queues_run_in_parallel_raw);
	tcase_add_test(tc, test_5_2_2_mq_qcow2_concurrent_allocation_passes_qemu_img_check);
	tcase_add_test(tc, test_5_2_2_mq_qcow2_cache_none_concurrent_allocation_passes_qemu_img_check);
	tcase_add_test(tc, test_5_2_2_mq_cache_none_sector_writes_into_4k_blocks_all_land);
	tcase_add_test(tc, test_5_2_2_mq_qcow2_cache_none_sector_writes_into_4k_blocks_all_land);
	tcase_add_test(tc, test_2_4_mq_reset_with_requests_in_flight_on_every_queue);
	tcase_add_test(tc, test_core_queue_threads_run_queues_in_parallel);
	tcase_add_test(tc, test_core_queue_threads_reset_waits_for_every_queue);
	tcase_add_test(tc, test_polling_serves_buffers_without_a_notification);
	tcase_add_test(tc, test_polling_window_adapts_to_the_driver);
	tcase_add_test(tc, test_5_2_block_device_as_image);
	suite_add_tcase(s, tc);
	/* Short timeout: a poll that held the lock would run for an hour. */
	tc = tcase_create("polling");
	tcase_add_checked_fixture(tc, setup_default, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_polling_ends_at_once_for_a_reset_and_a_sync);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN_SCRATCH(virtio_blk_suite, "kite-blk")
