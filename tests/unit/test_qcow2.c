/* The disk layer (vmm/disk/): raw files through io_uring and the thread
 * pool, OFD locks, and qcow2 read-write against images made by qemu-img,
 * checked afterwards with `qemu-img check` and `qemu-img compare`. */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "vmm/disk/disk.h"

static char dir[80];
static char why[256];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/t-XXXXXX", unit_scratch);
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static const char *path(const char *name)
{
	static char bufs[4][128];
	static int n;
	char *p = bufs[n++ % 4];

	snprintf(p, 128, "%s/%s", dir, name);
	return p;
}

/* Run a shell command quietly; its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd) - 20, fmt, ap);
	va_end(ap);
	strcat(cmd, " >/dev/null 2>&1");
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* qemu-img check: 0 = no errors and no leaks. */
static int qcheck(const char *img)
{
	return sh("qemu-img check -q '%s'", img);
}

/* 0 when the guest-visible contents are identical. */
static int qcompare(const char *a, const char *b)
{
	return sh("qemu-img compare -q '%s' '%s'", a, b);
}

/* open_disk() opens with O_DIRECT (cache=none): the cache=none variants
 * of the qcow2 tests set it (each test runs in its own process). */
static bool use_direct;

static struct disk *open_disk(const char *p, enum disk_format fmt, bool ro,
			      enum disk_aio aio)
{
	struct disk_options o = { .format = fmt, .read_only = ro, .aio = aio,
				  .direct = use_direct };
	struct disk *d = NULL;
	int err = disk_open(p, &o, &d, why, sizeof(why));

	ck_assert_msg(err == 0, "open %s: %d %s", p, err, why);
	return d;
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
}

/* Write the same bytes to the disk and to a raw reference file. */
static void write_both(struct disk *d, int ref, uint64_t off, size_t len,
		       uint32_t seed)
{
	uint8_t *buf = malloc(len);

	fill(buf, len, seed);
	ck_assert_int_eq(disk_pwrite(d, off, buf, len), 0);
	ck_assert_int_eq(pwrite(ref, buf, len, (off_t)off), (ssize_t)len);
	free(buf);
}

/* In the qcow2 file open as |fd|: the offset of the L1 table (header
 * byte 40) and of the L2 table its first entry names. */
static uint64_t first_l2_table(int fd, uint64_t *l1off)
{
	uint8_t be[8];

	ck_assert_int_eq(pread(fd, be, 8, 40), 8);
	*l1off = be64toh(*(uint64_t *)be);
	ck_assert_int_eq(pread(fd, be, 8, (off_t)*l1off), 8);
	return be64toh(*(uint64_t *)be) & 0x00fffffffffffe00ull;
}

static void make_raw(const char *p, uint64_t size)
{
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

/* ---- async completion plumbing ---- */

struct done {
	int count, result;
};

static void on_done(void *opaque, int result)
{
	struct done *d = opaque;

	d->count++;
	if (result < 0)
		d->result = result;
}

static void wait_done(struct disk *d, struct done *dn, int want)
{
	while (dn->count < want) {
		struct pollfd p = { .fd = disk_completion_fd(d),
				    .events = POLLIN };

		ck_assert_int_ge(poll(&p, 1, 10000), 0);
		disk_process_completions(d);
	}
}

/* ==== raw ==== */

static void raw_async_roundtrip(enum disk_aio aio)
{
	const char *p = path("a.raw");
	uint8_t w[8][4096], r[8][4096];
	struct iovec wi[8], ri[8];
	struct done dn = { 0, 0 };
	struct disk *d;

	make_raw(p, 1 << 20);
	d = open_disk(p, DISK_FORMAT_AUTO, false, aio);
	ck_assert_str_eq(disk_format_name(d), "raw");
	ck_assert_uint_eq(disk_size(d), 1 << 20);
	if (aio == DISK_AIO_THREADS)
		ck_assert(!disk_uses_io_uring(d));
	disk_plug(d);
	for (int i = 0; i < 8; i++) {
		fill(w[i], 4096, (uint32_t)i + 1);
		wi[i] = (struct iovec){ w[i], 4096 };
		ck_assert_int_eq(disk_submit_writev(d, (uint64_t)i * 8192,
						    &wi[i], 1, on_done, &dn), 0);
	}
	disk_unplug(d);
	wait_done(d, &dn, 8);
	ck_assert_int_eq(dn.result, 0);
	ck_assert_int_eq(disk_submit_flush(d, on_done, &dn), 0);
	wait_done(d, &dn, 9);
	for (int i = 0; i < 8; i++) {
		ri[i] = (struct iovec){ r[i], 4096 };
		ck_assert_int_eq(disk_submit_readv(d, (uint64_t)i * 8192,
						   &ri[i], 1, on_done, &dn), 0);
	}
	wait_done(d, &dn, 17);
	ck_assert_int_eq(dn.result, 0);
	ck_assert_uint_eq(disk_inflight(d), 0);
	for (int i = 0; i < 8; i++)
		ck_assert_mem_eq(w[i], r[i], 4096);
	ck_assert_int_eq(disk_close(d), 0);
}

START_TEST(test_raw_io_uring_roundtrip)
{
	raw_async_roundtrip(DISK_AIO_AUTO);
}
END_TEST

START_TEST(test_raw_thread_pool_roundtrip)
{
	raw_async_roundtrip(DISK_AIO_THREADS);
}
END_TEST

START_TEST(test_raw_out_of_range_and_read_only)
{
	const char *p = path("b.raw");
	uint8_t buf[512] = { 0 };
	struct iovec iov = { buf, 512 };
	struct done dn = { 0, 0 };
	struct disk *d;

	make_raw(p, 4096);
	d = open_disk(p, DISK_FORMAT_RAW, true, DISK_AIO_AUTO);
	ck_assert(disk_read_only(d));
	ck_assert_int_eq(disk_submit_writev(d, 0, &iov, 1, on_done, &dn),
			 -EROFS);
	ck_assert_int_eq(disk_submit_readv(d, 4096 - 256, &iov, 1, on_done,
					   &dn), -EINVAL);
	ck_assert_int_eq(disk_submit_readv(d, UINT64_MAX - 10, &iov, 1,
					   on_done, &dn), -EINVAL);
	ck_assert_int_eq(disk_discard(d, 0, 512), -EROFS);
	ck_assert_int_eq(dn.count, 0);
	ck_assert_int_eq(disk_close(d), 0);
}
END_TEST

START_TEST(test_raw_ofd_lock_refuses_second_writer)
{
	const char *p = path("c.raw");
	struct disk_options rw = { 0 }, ro = { .read_only = true };
	struct disk *a, *b = NULL;

	make_raw(p, 4096);
	ck_assert_int_eq(disk_open(p, &rw, &a, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_open(p, &rw, &b, why, sizeof(why)), -EBUSY);
	ck_assert_ptr_null(b);
	ck_assert_ptr_nonnull(strstr(why, "locked"));
	/* A reader cannot share an image someone writes either. */
	ck_assert_int_eq(disk_open(p, &ro, &b, why, sizeof(why)), -EBUSY);
	disk_close(a);
	/* Two readers may. */
	ck_assert_int_eq(disk_open(p, &ro, &a, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_open(p, &ro, &b, why, sizeof(why)), 0);
	disk_close(a);
	disk_close(b);
}
END_TEST

START_TEST(test_raw_discard_and_write_zeroes)
{
	const char *p = path("d.raw");
	uint8_t buf[16384], z[16384] = { 0 };
	struct disk *d;

	make_raw(p, 1 << 20);
	d = open_disk(p, DISK_FORMAT_RAW, false, DISK_AIO_AUTO);
	fill(buf, sizeof(buf), 7);
	ck_assert_int_eq(disk_pwrite(d, 65536, buf, sizeof(buf)), 0);
	ck_assert_int_eq(disk_write_zeroes(d, 65536, 8192, false), 0);
	ck_assert_int_eq(disk_write_zeroes(d, 65536 + 8192, 4096, true), 0);
	ck_assert_int_eq(disk_pread(d, 65536, buf, sizeof(buf)), 0);
	ck_assert_mem_eq(buf, z, 12288);
	ck_assert_int_eq(disk_discard(d, 0, 65536), 0);
	ck_assert_int_eq(disk_close(d), 0);
}
END_TEST

START_TEST(test_raw_probed_image_cannot_be_turned_into_qcow2)
{
	const char *p = path("f.raw");
	uint8_t magic[512] = { 'Q', 'F', 'I', 0xfb };
	struct disk *d;

	make_raw(p, 65536);
	d = open_disk(p, DISK_FORMAT_AUTO, false, DISK_AIO_AUTO);
	ck_assert_int_eq(disk_pwrite(d, 0, magic, 512), -EPERM);
	ck_assert_int_eq(disk_pwrite(d, 512, magic, 512), 0);
	disk_close(d);
	/* With format=raw asked for explicitly it is the guest's data. */
	d = open_disk(p, DISK_FORMAT_RAW, false, DISK_AIO_AUTO);
	ck_assert_int_eq(disk_pwrite(d, 0, magic, 512), 0);
	disk_close(d);
}
END_TEST

START_TEST(test_raw_direct_unaligned_buffers_bounce)
{
	const char *p = path("e.raw");
	struct disk_options o = { .direct = true };
	uint8_t *w = malloc(8192 + 1), *r = malloc(8192 + 3);
	struct disk *d;
	int err, fd;

	make_raw(p, 1 << 20);
	err = disk_open(p, &o, &d, why, sizeof(why));
	ck_assert_msg(err == 0, "O_DIRECT open of %s: %s (a file system "
		      "without O_DIRECT?)", p, why);
	fill(w + 1, 8192, 3);
	/* Misaligned buffer and offset: goes through a bounce buffer. */
	ck_assert_int_eq(disk_pwrite(d, 512, w + 1, 8192), 0);
	ck_assert_int_eq(disk_pread(d, 512, r + 3, 8192), 0);
	ck_assert_mem_eq(w + 1, r + 3, 8192);
	disk_close(d);

	/* A file that ends inside a block: the bounce buffer's direct read
	 * comes back short there, which is the end, not an error. */
	fd = open(p, O_RDWR | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, w, 1000, 0), 1000);
	close(fd);
	err = disk_open(p, &o, &d, why, sizeof(why));
	ck_assert_msg(err == 0, "%s: %s", p, why);
	ck_assert_uint_eq(disk_size(d), 1000);
	ck_assert_int_eq(disk_pread(d, 512, r, 488), 0);
	ck_assert_mem_eq(r, w + 512, 488);
	disk_close(d);
	free(w);
	free(r);
}
END_TEST

/* With O_DIRECT in 4 KiB blocks (a 4 KiB-sector host disk, made here
 * with min_dio_block), a 512-byte write is a read-modify-write of its
 * block.  Every sector of a run of blocks written at once, one 512-byte
 * write each, alternately through two handles (two queues, eight pool
 * workers): unless the writes into one block are kept apart, two of them
 * read the block before either writes it back, and one is lost.  |p| is
 * a zeroed image of 32 blocks or more, raw or qcow2; |shown| the logical
 * block the guest is to see (raw: the O_DIRECT block; qcow2: 512, so
 * there such writes are the rule). */
static void partial_block_writes_all_land(const char *p, uint32_t shown)
{
	enum { BLOCKS = 32, WRITES = BLOCKS * 8 };
	struct disk_options o = { .direct = true, .min_dio_block = 4096 };
	static uint8_t w[WRITES][512], r[WRITES][512];
	struct iovec iov[WRITES];
	struct done dn[2] = { { 0, 0 }, { 0, 0 } };
	struct disk *h[2];
	int err;

	err = disk_open(p, &o, &h[0], why, sizeof(why));
	ck_assert_msg(err == 0, "O_DIRECT open of %s: %s", p, why);
	ck_assert_uint_eq(disk_logical_block_size(h[0]), shown);
	ck_assert_int_eq(disk_open_queue(h[0], &h[1]), 0);
	for (unsigned i = 0; i < WRITES; i++) {
		fill(w[i], 512, i + 1);
		iov[i] = (struct iovec){ w[i], 512 };
		ck_assert_int_eq(disk_submit_writev(h[i % 2], (uint64_t)i * 512,
						    &iov[i], 1, on_done,
						    &dn[i % 2]),
				 0);
	}
	for (unsigned k = 0; k < 2; k++) {
		wait_done(h[k], &dn[k], WRITES / 2);
		ck_assert_int_eq(dn[k].result, 0);
	}
	ck_assert_int_eq(disk_close(h[1]), 0);
	ck_assert_int_eq(disk_pread(h[0], 0, r, sizeof(r)), 0);
	ck_assert_int_eq(disk_close(h[0]), 0);
	for (unsigned i = 0; i < WRITES; i++)
		ck_assert_msg(!memcmp(r[i], w[i], 512),
			      "sector %u (block %u) lost its write", i, i / 8);
}

START_TEST(test_raw_direct_partial_block_writes_all_land)
{
	const char *p = path("g.raw");
	uint8_t r[512], want[512];
	int fd;

	make_raw(p, 1 << 20);
	partial_block_writes_all_land(p, 4096);
	/* The last one in the file itself, too. */
	fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, r, 512, 255 * 512), 512);
	close(fd);
	fill(want, 512, 256);
	ck_assert_mem_eq(r, want, 512);
}
END_TEST

START_TEST(test_qcow2_direct_partial_block_writes_all_land)
{
	const char *img = path("g.qcow2");

	ck_assert_int_eq(sh("qemu-img create -f qcow2 '%s' 1M", img), 0);
	partial_block_writes_all_land(img, 512);
	ck_assert_int_eq(qcheck(img), 0);
}
END_TEST

/* A min_dio_block that is not a power of two is refused at open. */
START_TEST(test_raw_direct_odd_block_refused)
{
	const char *p = path("h.raw");
	struct disk_options o = { .direct = true, .min_dio_block = 3000 };
	struct disk *d = NULL;

	make_raw(p, 1 << 20);
	ck_assert_int_eq(disk_open(p, &o, &d, why, sizeof(why)), -EINVAL);
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(why, "power of two"), "why: %s", why);
}
END_TEST

/* Open |p| (a zeroed raw file) with O_DIRECT, check that its logical
 * block is |want|, and write one such block at an offset of one block
 * from a buffer aligned to it: that goes straight to io_uring, no bounce
 * buffer, and lands where it should. */
static void check_direct_block(const char *p, uint32_t want)
{
	struct disk_options direct = { .direct = true };
	uint64_t uring0, uring1, pool0, pool1;
	struct done dn = { 0, 0 };
	uint8_t *w, r[8192];
	struct iovec iov;
	struct disk *d;
	uint32_t lbs;
	int err, fd;

	err = disk_open(p, &direct, &d, why, sizeof(why));
	ck_assert_msg(err == 0, "O_DIRECT open of %s: %s (a file system "
		      "without O_DIRECT?)", p, why);
	lbs = disk_logical_block_size(d);
	ck_assert_msg(lbs == want, "%s: logical block %u, want %u", p, lbs,
		      want);
	ck_assert_uint_le(lbs, disk_physical_block_size(d));

	ck_assert_int_eq(posix_memalign((void **)&w, lbs, lbs), 0);
	fill(w, lbs, 11);
	iov = (struct iovec){ w, lbs };
	disk_request_counts(d, &uring0, &pool0);
	ck_assert_int_eq(disk_submit_writev(d, lbs, &iov, 1, on_done, &dn), 0);
	wait_done(d, &dn, 1);
	ck_assert_int_eq(dn.result, 0);
	disk_request_counts(d, &uring1, &pool1);
	if (disk_uses_io_uring(d)) {
		ck_assert_uint_eq(uring1 - uring0, 1);
		ck_assert_uint_eq(pool1 - pool0, 0);
	}
	ck_assert_int_eq(disk_close(d), 0);

	fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, r, 2 * lbs, 0), (ssize_t)(2 * lbs));
	close(fd);
	for (uint32_t i = 0; i < lbs; i++)
		ck_assert_uint_eq(r[i], 0);
	ck_assert_mem_eq(r + lbs, w, lbs);
	free(w);
}

/* With cache=none a raw file shows the guest the block the file system
 * can do O_DIRECT at, not a blanket 4 KiB: an image partitioned in
 * 512-byte sectors must read the same with and without cache=none.  The
 * block is what statx DIOALIGN says (ext4 here) or, where it says
 * nothing (tmpfs), what a direct read shows to work. */
START_TEST(test_raw_direct_addresses_what_the_file_system_allows)
{
	const char *p = path("g.raw");
	struct disk_options buffered = { 0 };
	char shm[64];
	uint32_t want = 4096;
	struct statx stx;
	struct disk *d;
	int err, mfd;

	make_raw(p, 1 << 20);
	err = disk_open(p, &buffered, &d, why, sizeof(why));
	ck_assert_msg(err == 0, "%s: %s", p, why);
	ck_assert_uint_eq(disk_logical_block_size(d), 512);
	disk_close(d);

	/* What the kernel says O_DIRECT on this file can address. */
	ck_assert_int_eq(statx(AT_FDCWD, p, 0, STATX_DIOALIGN, &stx), 0);
	ck_assert_msg(stx.stx_mask & STATX_DIOALIGN,
		      "%s: statx gives no DIOALIGN (kernel before 6.1?)", p);
	if (stx.stx_dio_offset_align) {
		want = stx.stx_dio_offset_align > stx.stx_dio_mem_align
			       ? stx.stx_dio_offset_align
			       : stx.stx_dio_mem_align;
		if (want < 512)
			want = 512;
		if (want > 4096)
			want = 4096;
	}
	check_direct_block(p, want);

	/* tmpfs (a memfd is a tmpfs file, gone with the process even when
	 * an assertion ends it): no DIOALIGN, and any alignment works. */
	mfd = memfd_create("kite-direct", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(ftruncate(mfd, 1 << 20), 0);
	snprintf(shm, sizeof(shm), "/proc/self/fd/%d", mfd);
	ck_assert_int_eq(statx(AT_FDCWD, shm, 0, STATX_DIOALIGN, &stx), 0);
	ck_assert(!(stx.stx_mask & STATX_DIOALIGN));
	check_direct_block(shm, 512);
	close(mfd);
}
END_TEST

/* Access time of |p| set two days back (modification three): a plain
 * read on a relatime mount then updates it. */
static void age_times(const char *p)
{
	struct timespec now, ts[2];

	clock_gettime(CLOCK_REALTIME, &now);
	ts[0] = (struct timespec){ now.tv_sec - 2 * 86400, 0 };
	ts[1] = (struct timespec){ now.tv_sec - 3 * 86400, 0 };
	ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static time_t atime_of(const char *p)
{
	struct stat st;

	ck_assert_int_eq(stat(p, &st), 0);
	return st.st_atim.tv_sec;
}

/* The guest's reads are not the image's accesses: kite opens images
 * with O_NOATIME (as their owner may), so reading does not update (or,
 * per request, check) the access time. */
START_TEST(test_raw_reads_leave_the_access_time_alone)
{
	const char *p = path("h.raw");
	uint8_t buf[4096];
	struct iovec iov = { buf, sizeof(buf) };
	struct done dn = { 0, 0 };
	struct disk *d;
	time_t before;
	int fd;

	make_raw(p, 1 << 20);
	/* The control: here a plain read does move it. */
	age_times(p);
	before = atime_of(p);
	fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	close(fd);
	ck_assert_msg(atime_of(p) != before,
		      "a plain read of %s kept its two-day-old access time: "
		      "the file system is mounted noatime, so this test "
		      "cannot see O_NOATIME", p);

	age_times(p);
	before = atime_of(p);
	d = open_disk(p, DISK_FORMAT_RAW, false, DISK_AIO_AUTO);
	ck_assert_int_eq(disk_pread(d, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(disk_submit_readv(d, 8192, &iov, 1, on_done, &dn), 0);
	wait_done(d, &dn, 1);
	ck_assert_int_eq(dn.result, 0);
	ck_assert_int_eq(disk_close(d), 0);
	ck_assert_int_eq(atime_of(p), before);
}
END_TEST

/* O_NOATIME is only for the file's owner (or CAP_FOWNER): anyone else,
 * e.g. a user's kite on a shared read-only image that root owns, gets
 * the plain open, not EPERM. */
START_TEST(test_raw_image_of_another_user_opens_without_noatime)
{
	const char *p = path("i.raw");
	pid_t pid;
	int status;

	make_raw(p, 65536);
	ck_assert_int_eq(chmod(p, 0644), 0);
	ck_assert_int_eq(chmod(dir, 0755), 0);
	ck_assert_int_eq(chmod(unit_scratch, 0755), 0);
	ck_assert_msg(geteuid() == 0, "needs root, to become another user");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct disk_options ro = { .read_only = true };
		struct disk *d;
		uint8_t buf[512];

		if (setgid(65534) || setuid(65534))
			_exit(2);
		/* The control: O_NOATIME itself is refused here. */
		if (open(p, O_RDONLY | O_NOATIME) >= 0 || errno != EPERM)
			_exit(3);
		if (disk_open(p, &ro, &d, why, sizeof(why))) {
			fprintf(stderr, "disk_open as nobody: %s\n", why);
			_exit(4);
		}
		if (disk_pread(d, 0, buf, sizeof(buf)))
			_exit(5);
		disk_close(d);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the child as nobody: status %d", status);
}
END_TEST

/* ==== qcow2 ==== */

static void qcow2_random_writes(const char *opts, uint64_t size,
				unsigned rounds)
{
	const char *img = path("r.qcow2"), *ref = path("r.raw");
	struct disk *d;
	uint32_t s = 99;
	int fd;

	ck_assert_int_eq(sh("qemu-img create -f qcow2 %s '%s' %llu", opts, img,
			    (unsigned long long)size), 0);
	make_raw(ref, size);
	fd = open(ref, O_RDWR);
	d = open_disk(img, DISK_FORMAT_AUTO, false, DISK_AIO_AUTO);
	ck_assert_str_eq(disk_format_name(d), "qcow2");
	ck_assert_uint_eq(disk_size(d), size);
	for (unsigned i = 0; i < rounds; i++) {
		uint64_t off, len;

		s = s * 1664525u + 1013904223u;
		off = ((uint64_t)s << 9) % size;
		s = s * 1664525u + 1013904223u;
		len = 512 * (1 + s % 300);
		if (len > size - off)
			len = size - off;
		write_both(d, fd, off, len, s);
	}
	ck_assert_int_eq(disk_close(d), 0);
	close(fd);
	ck_assert_int_eq(qcheck(img), 0);
	ck_assert_int_eq(qcompare(img, ref), 0);
}

START_TEST(test_qcow2_v3_writes_pass_qemu_img_check)
{
	qcow2_random_writes("", 64 << 20, 200);
}
END_TEST

START_TEST(test_qcow2_v2_writes_pass_qemu_img_check)
{
	qcow2_random_writes("-o compat=0.10", 32 << 20, 150);
}
END_TEST

START_TEST(test_qcow2_small_clusters_grow_refcount_table)
{
	/* 512-byte clusters: a refcount block covers 256 clusters and a
	 * table cluster 64 blocks (8 MiB), so this grows the table. */
	uint8_t be[4];
	int fd;

	qcow2_random_writes("-o cluster_size=512", 24 << 20, 400);
	fd = open(path("r.qcow2"), O_RDONLY);
	ck_assert_int_eq(pread(fd, be, 4, 56), 4); /* refcount_table_clusters */
	close(fd);
	ck_assert_uint_gt(be32toh(*(uint32_t *)be), 1);
}
END_TEST

START_TEST(test_qcow2_preallocated_images_metadata_and_falloc)
{
	/* Every L2 entry already points at a (sparse) data cluster. */
	qcow2_random_writes("-o preallocation=metadata", 16 << 20, 60);
	qcow2_random_writes("-o preallocation=falloc", 8 << 20, 40);
}
END_TEST

START_TEST(test_qcow2_refcount_bits_1_and_64)
{
	qcow2_random_writes("-o refcount_bits=1", 8 << 20, 60);
	qcow2_random_writes("-o refcount_bits=64", 8 << 20, 60);
}
END_TEST

START_TEST(test_qcow2_reads_what_qemu_io_wrote)
{
	const char *img = path("q.qcow2"), *ref = path("q.raw");
	uint8_t a[65536 + 512], b[65536 + 512];
	struct disk *d;
	int fd;

	make_raw(ref, 16 << 20);
	fd = open(ref, O_RDWR);
	fill(a, sizeof(a), 5);
	ck_assert_int_eq(pwrite(fd, a, sizeof(a), 3 << 20), (ssize_t)sizeof(a));
	close(fd);
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 '%s' '%s'", ref, img), 0);
	d = open_disk(img, DISK_FORMAT_QCOW2, true, DISK_AIO_AUTO);
	ck_assert_int_eq(disk_pread(d, 3 << 20, b, sizeof(b)), 0);
	ck_assert_mem_eq(a, b, sizeof(a));
	ck_assert_int_eq(disk_pread(d, 0, b, 4096), 0);
	for (int i = 0; i < 4096; i++)
		ck_assert_uint_eq(b[i], 0);
	disk_close(d);
}
END_TEST

static void compressed_read_and_rewrite(void)
{
	const char *img = path("c.qcow2"), *ref = path("c.raw");
	uint8_t *a = malloc(4 << 20), *b = malloc(4 << 20);
	struct disk *d;
	int fd;

	make_raw(ref, 8 << 20);
	fd = open(ref, O_RDWR);
	/* Compressible but not trivial content. */
	for (size_t i = 0; i < (4 << 20); i++)
		a[i] = (uint8_t)((i / 7) ^ (i >> 13));
	ck_assert_int_eq(pwrite(fd, a, 4 << 20, 1 << 20), 4 << 20);
	ck_assert_int_eq(sh("qemu-img convert -c -O qcow2 '%s' '%s'", ref, img),
			 0);
	ck_assert_int_eq(sh("qemu-img info '%s' | grep -q qcow2", img), 0);
	d = open_disk(img, DISK_FORMAT_AUTO, false, DISK_AIO_THREADS);
	ck_assert_int_eq(disk_pread(d, 1 << 20, b, 4 << 20), 0);
	ck_assert_mem_eq(a, b, 4 << 20);
	/* Partial rewrites of compressed clusters. */
	write_both(d, fd, (1 << 20) + 1000 * 512, 4096, 11);
	write_both(d, fd, (2 << 20) + 65536 - 512, 1024, 12);
	ck_assert_int_eq(disk_close(d), 0);
	close(fd);
	ck_assert_int_eq(qcheck(img), 0);
	ck_assert_int_eq(qcompare(img, ref), 0);
	free(a);
	free(b);
}

START_TEST(test_qcow2_compressed_clusters_read_and_rewrite)
{
	compressed_read_and_rewrite();
}
END_TEST

static void backing_chain(const char *base_fmt)
{
	const char *base = path("base.img"), *ov = path("ov.qcow2"),
		   *ref = path("ref.raw");
	uint8_t *a = malloc(1 << 20), *b = malloc(1 << 20);
	struct disk *d;
	int fd;

	make_raw(ref, 8 << 20);
	fd = open(ref, O_RDWR);
	fill(a, 1 << 20, 21);
	ck_assert_int_eq(pwrite(fd, a, 1 << 20, 2 << 20), 1 << 20);
	ck_assert_int_eq(sh("qemu-img convert -O %s '%s' '%s'", base_fmt, ref,
			    base), 0);
	ck_assert_int_eq(sh("qemu-img create -f qcow2 -b base.img -F %s '%s'",
			    base_fmt, ov), 0);
	d = open_disk(ov, DISK_FORMAT_AUTO, false, DISK_AIO_AUTO);
	ck_assert_int_eq(disk_pread(d, 2 << 20, b, 1 << 20), 0);
	ck_assert_mem_eq(a, b, 1 << 20);
	/* Partial-cluster writes copy the rest from the backing file. */
	write_both(d, fd, (2 << 20) + 4096, 512, 31);
	write_both(d, fd, (3 << 20) - 1024, 2048, 32);
	/* Discard and write-zeroes must not expose backing data as zeros
	 * incorrectly: write-zeroes reads zeros afterwards. */
	ck_assert_int_eq(disk_write_zeroes(d, (2 << 20) + 131072, 65536, true),
			 0);
	memset(b, 0, 65536);
	ck_assert_int_eq(pwrite(fd, b, 65536, (2 << 20) + 131072), 65536);
	ck_assert_int_eq(disk_close(d), 0);
	close(fd);
	ck_assert_int_eq(qcheck(ov), 0);
	ck_assert_int_eq(qcompare(ov, ref), 0);
	free(a);
	free(b);
}

START_TEST(test_qcow2_backing_qcow2)
{
	backing_chain("qcow2");
}
END_TEST

START_TEST(test_qcow2_backing_raw)
{
	backing_chain("raw");
}
END_TEST

START_TEST(test_qcow2_three_level_backing_chain)
{
	const char *base = path("c0.raw"), *mid = path("c1.qcow2"),
		   *top = path("c2.qcow2"), *ref = path("cref.raw");
	uint8_t *a = malloc(1 << 20);
	struct disk *d;
	int fd;

	/* base (raw) <- mid (qcow2, own data) <- top (qcow2, written). */
	make_raw(ref, 8 << 20);
	fd = open(ref, O_RDWR);
	fill(a, 1 << 20, 51);
	ck_assert_int_eq(pwrite(fd, a, 1 << 20, 1 << 20), 1 << 20);
	ck_assert_int_eq(sh("cp '%s' '%s'", ref, base), 0);
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -b c0.raw -F raw '%s' "
			    "&& qemu-io -c 'write -P 0x77 1536k 64k' '%s'", mid,
			    mid), 0);
	memset(a, 0x77, 65536);
	ck_assert_int_eq(pwrite(fd, a, 65536, 1536 << 10), 65536);
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -b c1.qcow2 -F qcow2 "
			    "'%s'", top), 0);
	d = open_disk(top, DISK_FORMAT_AUTO, false, DISK_AIO_AUTO);
	/* Reads see all three levels. */
	{
		uint8_t *b = malloc(2 << 20), *r = malloc(2 << 20);

		ck_assert_int_eq(pread(fd, r, 2 << 20, 512 << 10), 2 << 20);
		ck_assert_int_eq(disk_pread(d, 512 << 10, b, 2 << 20), 0);
		ck_assert_mem_eq(b, r, 2 << 20);
		free(b);
		free(r);
	}
	/* Partial-cluster writes over each level's data. */
	write_both(d, fd, (1536 << 10) + 1024, 2048, 61);
	write_both(d, fd, (1 << 20) + 4096, 512, 62);
	write_both(d, fd, (6 << 20) + 512, 700 * 512 - 512, 63);
	ck_assert_int_eq(disk_close(d), 0);
	close(fd);
	ck_assert_int_eq(qcheck(top), 0);
	ck_assert_int_eq(qcheck(mid), 0);
	ck_assert_int_eq(qcompare(top, ref), 0);
	free(a);
}
END_TEST

START_TEST(test_qcow2_discard_and_write_zeroes)
{
	const char *img = path("z.qcow2"), *ref = path("z.raw");
	uint8_t z[65536 * 3] = { 0 };
	struct disk *d;
	int fd;

	ck_assert_int_eq(sh("qemu-img create -f qcow2 '%s' 16M", img), 0);
	make_raw(ref, 16 << 20);
	fd = open(ref, O_RDWR);
	d = open_disk(img, DISK_FORMAT_AUTO, false, DISK_AIO_AUTO);
	write_both(d, fd, 0, 1 << 20, 41);
	ck_assert_int_eq(disk_write_zeroes(d, 65536 + 512, 65536 * 3, false),
			 0);
	ck_assert_int_eq(pwrite(fd, z, sizeof(z), 65536 + 512),
			 (ssize_t)sizeof(z));
	/* Discard of whole clusters (no backing: reads zeros after). */
	ck_assert_int_eq(disk_discard(d, 4 * 65536, 2 * 65536), 0);
	ck_assert_int_eq(pwrite(fd, z, 2 * 65536, 4 * 65536), 2 * 65536);
	write_both(d, fd, 4 * 65536 + 4096, 512, 42); /* reallocate */
	ck_assert_int_eq(disk_close(d), 0);
	close(fd);
	ck_assert_int_eq(qcheck(img), 0);
	ck_assert_int_eq(qcompare(img, ref), 0);
}
END_TEST

START_TEST(test_qcow2_concurrent_writes_into_shared_clusters)
{
	enum { N = 96 };
	const char *img = path("cc.qcow2"), *ref = path("cc.raw"),
		   *base = path("ccb.qcow2");
	static uint8_t bufs[N][4096];
	struct iovec iov[N];
	struct done dn = { 0, 0 };
	struct disk *d;
	int fd;

	/* A backing file with data, so every first write is a COW. */
	make_raw(ref, 8 << 20);
	fd = open(ref, O_RDWR);
	{
		uint8_t *b = malloc(8 << 20);

		fill(b, 8 << 20, 77);
		ck_assert_int_eq(pwrite(fd, b, 8 << 20, 0), 8 << 20);
		free(b);
	}
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 '%s' '%s'", ref, base), 0);
	ck_assert_int_eq(sh("qemu-img create -f qcow2 -b ccb.qcow2 -F qcow2 "
			    "'%s'", img), 0);
	d = open_disk(img, DISK_FORMAT_AUTO, false, DISK_AIO_THREADS);
	/* 4 KiB writes, 16 to each 64 KiB cluster, all in flight at once
	 * on the pool: allocation races inside one cluster. */
	for (int i = 0; i < N; i++) {
		uint64_t off = (uint64_t)(i % 6) * 65536 * 3 +
			       (uint64_t)(i / 6) * 4096;

		fill(bufs[i], 4096, 1000u + (uint32_t)i);
		iov[i] = (struct iovec){ bufs[i], 4096 };
		ck_assert_int_eq(pwrite(fd, bufs[i], 4096, (off_t)off), 4096);
		ck_assert_int_eq(disk_submit_writev(d, off, &iov[i], 1, on_done,
						    &dn), 0);
	}
	wait_done(d, &dn, N);
	ck_assert_int_eq(dn.result, 0);
	ck_assert_int_eq(disk_close(d), 0);
	close(fd);
	ck_assert_int_eq(qcheck(img), 0);
	ck_assert_int_eq(qcompare(img, ref), 0);
}
END_TEST

static bool header_dirty(const char *img)
{
	uint8_t b;
	int fd = open(img, O_RDONLY);

	ck_assert_int_eq(pread(fd, &b, 1, 79), 1);
	close(fd);
	return b & 1;
}

/* Close |d| (its image |img|), write |data| (|size| bytes) over the raw
 * reference |ref| (open as |ref_fd|, closed here), and check that
 * qemu-img finds the image sound and equal to the reference. */
static void close_and_compare(struct disk *d, const char *img, int ref_fd,
			      const char *ref, const uint8_t *data, size_t size)
{
	ck_assert_int_eq(disk_close(d), 0);
	ck_assert_int_eq(pwrite(ref_fd, data, size, 0), (ssize_t)size);
	close(ref_fd);
	ck_assert_int_eq(qcheck(img), 0);
	ck_assert_int_eq(qcompare(img, ref), 0);
}

/* One asynchronous 4 KiB-aligned request of |len| bytes at |off|; which
 * path it took: 'u' (io_uring), 'p' (thread pool). */
static char submit_one(struct disk *d, bool write, uint64_t off, void *buf,
		       size_t len)
{
	struct iovec iov = { buf, len };
	struct done dn = { 0, 0 };
	uint64_t u0, p0, u1, p1;

	disk_request_counts(d, &u0, &p0);
	ck_assert_int_eq(write ? disk_submit_writev(d, off, &iov, 1, on_done,
						    &dn)
			       : disk_submit_readv(d, off, &iov, 1, on_done,
						   &dn),
			 0);
	wait_done(d, &dn, 1);
	ck_assert_int_eq(dn.result, 0);
	disk_request_counts(d, &u1, &p1);
	ck_assert_uint_eq(u1 + p1, u0 + p0 + 1);
	return u1 > u0 ? 'u' : 'p';
}

/* qcow2_submit: reads and in-place writes of allocated clusters whose L2
 * table is cached go straight to io_uring; what needs metadata (a table
 * to load, an allocation, a hole) goes to the pool.  Either way the data
 * is right, and the image stays one qemu-img agrees with. */
START_TEST(test_qcow2_allocated_clusters_go_to_io_uring)
{
	const char *img = path("fast.qcow2"), *ref = path("fast.raw");
	const uint64_t cl = 65536;
	uint8_t *data = malloc(4 << 20), w[8192], r[8192], zero[4096] = { 0 };
	struct disk *d;
	int fd;

	/* 4 MiB of data but for a hole at cluster 10 (qemu-img convert
	 * leaves zero clusters unallocated and lays the rest out in order). */
	fill(data, 4 << 20, 7);
	memset(data + 10 * cl, 0, cl);
	fd = open(ref, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, data, 4 << 20, 0), 4 << 20);
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 '%s' '%s'", ref, img), 0);
	d = open_disk(img, DISK_FORMAT_QCOW2, false, DISK_AIO_IO_URING);

	/* The first read loads the L2 table: the pool. */
	ck_assert_int_eq(submit_one(d, false, 512 * 8, r, 4096), 'p');
	ck_assert_mem_eq(r, data + 4096, 4096);
	/* Now cached: io_uring, also across two clusters next to each
	 * other in the file. */
	ck_assert_int_eq(submit_one(d, false, cl + 4096, r, 4096), 'u');
	ck_assert_mem_eq(r, data + cl + 4096, 4096);
	ck_assert_int_eq(submit_one(d, false, 3 * cl - 4096, r, 8192), 'u');
	ck_assert_mem_eq(r, data + 3 * cl - 4096, 8192);
	/* The hole reads as zeros, through the pool, also when the range
	 * starts in allocated data. */
	ck_assert_int_eq(submit_one(d, false, 10 * cl + 8192, r, 4096), 'p');
	ck_assert_mem_eq(r, zero, 4096);
	ck_assert_int_eq(submit_one(d, false, 10 * cl - 4096, r, 8192), 'p');
	ck_assert_mem_eq(r, data + 10 * cl - 4096, 8192);

	/* In place: io_uring.  Into the hole: the pool allocates, after
	 * which the cluster is ours and the next write goes in place. */
	fill(w, sizeof(w), 8);
	ck_assert_int_eq(submit_one(d, true, 4 * cl + 4096, w, 4096), 'u');
	memcpy(data + 4 * cl + 4096, w, 4096);
	ck_assert_int_eq(submit_one(d, true, 10 * cl, w + 4096, 4096), 'p');
	memcpy(data + 10 * cl, w + 4096, 4096);
	ck_assert_int_eq(submit_one(d, true, 10 * cl + 8192, w, 4096), 'u');
	memcpy(data + 10 * cl + 8192, w, 4096);
	ck_assert_int_eq(submit_one(d, false, 4 * cl, r, 8192), 'u');
	ck_assert_mem_eq(r, data + 4 * cl, 8192);
	ck_assert_int_eq(submit_one(d, false, 10 * cl + 8192, r, 4096), 'u');
	ck_assert_mem_eq(r, data + 10 * cl + 8192, 4096);
	/* Cluster 10 now lies at the end of the file, apart from 9: a
	 * range over both is two places, hence the pool. */
	ck_assert_int_eq(submit_one(d, false, 10 * cl - 4096, r, 8192), 'p');
	ck_assert_mem_eq(r, data + 10 * cl - 4096, 8192);
	close_and_compare(d, img, fd, ref, data, 4 << 20);
	free(data);
}
END_TEST

/* A cluster without OFLAG_COPIED may be shared (a snapshot, another
 * writer's image): a write must copy it, never write in place, even with
 * its L2 table cached -- the pool does that, not the io_uring path. */
START_TEST(test_qcow2_shared_cluster_writes_are_copied_not_in_place)
{
	const char *img = path("shared.qcow2"), *ref = path("shared.raw");
	uint8_t *data = malloc(1 << 20), w[4096], r[4096], be[8];
	uint64_t l1off, l2off, old;
	struct disk *d;
	int fd;

	fill(data, 1 << 20, 9);
	fd = open(ref, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, data, 1 << 20, 0), 1 << 20);
	close(fd);
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 '%s' '%s'", ref, img), 0);
	fd = open(img, O_RDWR);
	l2off = first_l2_table(fd, &l1off);
	ck_assert_int_eq(pread(fd, be, 8, (off_t)l2off + 8), 8);
	old = be64toh(*(uint64_t *)be);
	ck_assert(old >> 63); /* qemu-img made it COPIED; take that away */
	*(uint64_t *)be = htobe64(old & ~(1ull << 63));
	ck_assert_int_eq(pwrite(fd, be, 8, (off_t)l2off + 8), 8);
	old &= 0x00fffffffffffe00ull;
	{
		/* ... and give it a second reference (16-bit refcounts, the
		 * default: 32768 per 64 KiB block). */
		uint64_t rt, rb, c = old / 65536;
		uint8_t two[2] = { 0, 2 };

		ck_assert_int_eq(pread(fd, be, 8, 48), 8);
		rt = be64toh(*(uint64_t *)be);
		ck_assert_int_eq(pread(fd, be, 8, (off_t)(rt + c / 32768 * 8)),
				 8);
		rb = be64toh(*(uint64_t *)be);
		ck_assert_int_eq(pwrite(fd, two, 2,
					(off_t)(rb + c % 32768 * 2)), 2);
	}

	d = open_disk(img, DISK_FORMAT_QCOW2, false, DISK_AIO_IO_URING);
	ck_assert_int_eq(submit_one(d, false, 0, r, 4096), 'p');
	ck_assert_int_eq(submit_one(d, false, 65536, r, 4096), 'u');
	fill(w, sizeof(w), 10);
	ck_assert_int_eq(submit_one(d, true, 65536, w, 4096), 'p');
	ck_assert_int_eq(submit_one(d, false, 65536, r, 4096), 'u');
	ck_assert_mem_eq(r, w, 4096);
	ck_assert_int_eq(disk_close(d), 0);
	/* The old cluster (its other reference made up, so now a leak
	 * to qemu-img check) still holds what it held. */
	ck_assert_int_eq(pread(fd, r, 4096, (off_t)old), 4096);
	ck_assert_mem_eq(r, data + 65536, 4096);
	close(fd);
	free(data);
}
END_TEST

/* cache=none (O_DIRECT on the one fd, data and metadata alike): the
 * same random writes, compressed clusters, backing chains (opened
 * O_DIRECT too) and small clusters as above, through bounce buffers
 * where the tests' buffers or metadata updates are not block aligned;
 * qemu-img agrees with the image after each. */
START_TEST(test_qcow2_cache_none_writes_pass_qemu_img_check)
{
	use_direct = true;
	qcow2_random_writes("", 32 << 20, 150);
	qcow2_random_writes("-o cluster_size=512", 8 << 20, 200);
	qcow2_random_writes("-o compat=0.10,cluster_size=4096", 8 << 20, 100);
}
END_TEST

START_TEST(test_qcow2_cache_none_compressed_and_backing)
{
	use_direct = true;
	compressed_read_and_rewrite();
	backing_chain("qcow2");
	backing_chain("raw");
}
END_TEST

/* cache=none through io_uring: block-aligned reads and in-place writes
 * of allocated clusters go there (O_DIRECT); an unaligned guest buffer
 * goes to the pool's bounce buffer; each sees what the other wrote, and
 * qemu-img agrees with the image. */
START_TEST(test_qcow2_cache_none_aligned_io_goes_to_io_uring)
{
	const char *img = path("direct.qcow2"), *ref = path("direct.raw");
	const uint64_t cl = 65536;
	uint8_t *data = malloc(2 << 20), *w, *r;
	uint32_t bs;
	struct disk *d;
	int fd;

	use_direct = true;
	ck_assert_int_eq(posix_memalign((void **)&w, 4096, 3 * 4096), 0);
	ck_assert_int_eq(posix_memalign((void **)&r, 4096, 3 * 4096), 0);
	fill(data, 2 << 20, 11);
	memset(data + 5 * cl, 0, cl); /* a hole at cluster 5 */
	fd = open(ref, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, data, 2 << 20, 0), 2 << 20);
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 '%s' '%s'", ref, img), 0);
	d = open_disk(img, DISK_FORMAT_QCOW2, false, DISK_AIO_IO_URING);
	bs = disk_logical_block_size(d);
	ck_assert_uint_le(bs, 4096);

	ck_assert_int_eq(submit_one(d, false, 0, r, 4096), 'p'); /* L2 */
	ck_assert_int_eq(submit_one(d, false, cl, r, 8192), 'u');
	ck_assert_mem_eq(r, data + cl, 8192);
	/* A buffer off the block boundary: the pool, through a bounce. */
	ck_assert_int_eq(submit_one(d, false, 2 * cl, r + 1, 4096), 'p');
	ck_assert_mem_eq(r + 1, data + 2 * cl, 4096);
	/* Direct write, bounced read of the same bytes... */
	fill(w, 4096, 12);
	ck_assert_int_eq(submit_one(d, true, 3 * cl, w, 4096), 'u');
	memcpy(data + 3 * cl, w, 4096);
	ck_assert_int_eq(submit_one(d, false, 3 * cl, r + 1, 4096), 'p');
	ck_assert_mem_eq(r + 1, data + 3 * cl, 4096);
	/* ... bounced write, direct read. */
	fill(w, 3 * 4096, 13);
	ck_assert_int_eq(submit_one(d, true, 4 * cl + bs, w + 1, 4096), 'p');
	memcpy(data + 4 * cl + bs, w + 1, 4096);
	ck_assert_int_eq(submit_one(d, false, 4 * cl, r, 8192), 'u');
	ck_assert_mem_eq(r, data + 4 * cl, 8192);
	/* Into the hole: allocated by the pool, then read directly. */
	fill(w, 4096, 14);
	ck_assert_int_eq(submit_one(d, true, 5 * cl + 4096, w, 4096), 'p');
	memcpy(data + 5 * cl + 4096, w, 4096);
	ck_assert_int_eq(submit_one(d, false, 5 * cl, r, 8192), 'u');
	ck_assert_mem_eq(r, data + 5 * cl, 8192);
	close_and_compare(d, img, fd, ref, data, 2 << 20);
	free(data);
	free(w);
	free(r);
}
END_TEST

START_TEST(test_qcow2_dirty_bit_set_while_open_cleared_on_close)
{
	const char *img = path("dirty.qcow2");
	struct disk *d;

	ck_assert_int_eq(sh("qemu-img create -f qcow2 '%s' 1M", img), 0);
	d = open_disk(img, DISK_FORMAT_AUTO, false, DISK_AIO_AUTO);
	ck_assert(header_dirty(img));
	ck_assert_int_eq(disk_close(d), 0);
	ck_assert(!header_dirty(img));
	/* Read-only opens leave the header alone. */
	d = open_disk(img, DISK_FORMAT_AUTO, true, DISK_AIO_AUTO);
	ck_assert(!header_dirty(img));
	disk_close(d);
}
END_TEST

START_TEST(test_qcow2_sigkill_after_flush_leaves_consistent_image)
{
	const char *img = path("k.qcow2"), *ref = path("k.raw");
	int pfd[2], st;
	pid_t pid;
	char c;

	ck_assert_int_eq(sh("qemu-img create -f qcow2 '%s' 32M", img), 0);
	make_raw(ref, 32 << 20);
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct disk_options o = { 0 };
		struct disk *d;
		int fd = open(ref, O_RDWR);
		uint8_t buf[70000];

		if (disk_open(img, &o, &d, why, sizeof(why)))
			_exit(1);
		for (int i = 0; i < 50; i++) {
			uint64_t off = (uint64_t)(i * 7919 % 500) * 65536 + 
				       (uint64_t)(i % 3) * 512;

			fill(buf, sizeof(buf), (uint32_t)i);
			if (disk_pwrite(d, off, buf, sizeof(buf)) ||
			    pwrite(fd, buf, sizeof(buf), (off_t)off) < 0)
				_exit(1);
		}
		if (disk_flush(d))
			_exit(1);
		/* The guest's flush completed; now die without closing. */
		if (write(pfd[1], "x", 1) != 1)
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
	ck_assert(header_dirty(img));
	ck_assert_int_eq(qcheck(img), 0);
	ck_assert_int_eq(qcompare(img, ref), 0);
	/* Kite reopens its own unclean image (no lazy refcounts). */
	{
		struct disk *d = open_disk(img, DISK_FORMAT_AUTO, false,
					   DISK_AIO_AUTO);

		ck_assert_int_eq(disk_close(d), 0);
	}
	ck_assert(!header_dirty(img));
}
END_TEST

/* ---- corrupt / unsupported images: a clear error at open ---- */

static void patch(const char *img, off_t off, const void *bytes, size_t n)
{
	int fd = open(img, O_RDWR);

	ck_assert_int_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

static void expect_refused(const char *img, const char *reason)
{
	struct disk_options o = { .format = DISK_FORMAT_AUTO };
	struct disk *d = NULL;
	int err = disk_open(img, &o, &d, why, sizeof(why));

	ck_assert_int_lt(err, 0);
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(why, reason), "reason '%s' lacks '%s'", why,
		      reason);
}

static const char *fresh(const char *name, const char *opts)
{
	const char *img = path(name);

	ck_assert_int_eq(sh("rm -f '%s'; qemu-img create -f qcow2 %s '%s' 16M",
			    img, opts, img), 0);
	return img;
}

/* cache=none needs every access aligned; qcow2's 8-byte metadata writes
 * are not, so it is refused with the reason rather than failing later. */
START_TEST(test_qcow2_refuses_bad_magic)
{
	const char *img = fresh("m.qcow2", "");
	struct disk_options o = { .format = DISK_FORMAT_QCOW2 };
	struct disk *d;

	patch(img, 0, "XXXX", 4);
	ck_assert_int_lt(disk_open(img, &o, &d, why, sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "bad magic"));
}
END_TEST

START_TEST(test_qcow2_refuses_version_4)
{
	const char *img = fresh("v.qcow2", "");

	patch(img, 4, "\0\0\0\4", 4);
	expect_refused(img, "unsupported version 4");
}
END_TEST

START_TEST(test_qcow2_refuses_unknown_incompatible_feature)
{
	const char *img = fresh("i.qcow2", "");

	patch(img, 72 + 7, "\x20", 1); /* bit 5 */
	expect_refused(img, "unsupported incompatible features 0x20");
	patch(img, 72 + 7, "\x10", 1); /* bit 4: extended L2 */
	expect_refused(img, "extended L2");
}
END_TEST

START_TEST(test_qcow2_refuses_encryption)
{
	const char *img = fresh("e.qcow2", "");

	patch(img, 32 + 3, "\1", 1); /* crypt_method = AES */
	expect_refused(img, "encrypted");
}
END_TEST

START_TEST(test_qcow2_refuses_bad_refcount_order_and_cluster_bits)
{
	const char *img = fresh("o.qcow2", "");

	patch(img, 96 + 3, "\7", 1);
	expect_refused(img, "refcount_order 7");
	img = fresh("cb.qcow2", "");
	patch(img, 20 + 3, "\x1e", 1); /* cluster_bits 30 */
	expect_refused(img, "cluster_bits 30 out of range");
	patch(img, 20 + 3, "\x08", 1);
	expect_refused(img, "cluster_bits 8 out of range");
}
END_TEST

START_TEST(test_qcow2_refuses_l1_beyond_file)
{
	const char *img = fresh("l1.qcow2", "");

	patch(img, 40, "\0\0\0\1\0\0\0\0", 8); /* l1_table_offset 4 GiB */
	expect_refused(img, "L1 table beyond end of file");
}
END_TEST

START_TEST(test_qcow2_refuses_zstd_and_corrupt_for_writing)
{
	const char *img = fresh("zs.qcow2", "-o compression_type=zstd");
	struct disk *d;

	expect_refused(img, "compression type 1 not supported");
	img = fresh("cor.qcow2", "");
	patch(img, 72 + 7, "\x02", 1);
	expect_refused(img, "marked corrupt");
	d = open_disk(img, DISK_FORMAT_AUTO, true, DISK_AIO_AUTO);
	disk_close(d);
}
END_TEST

START_TEST(test_qcow2_refuses_missing_backing_file_with_its_name)
{
	const char *img = path("nb.qcow2");

	ck_assert_int_eq(sh("qemu-img create -f qcow2 -u -b nothere.qcow2 "
			    "-F qcow2 '%s' 16M", img), 0);
	expect_refused(img, "backing file");
	ck_assert_ptr_nonnull(strstr(why, "nothere.qcow2"));
}
END_TEST

/* QEMU's rule: the compression-type bit is set exactly when the type is
 * not zlib; zlib with the bit set contradicts the header. */
START_TEST(test_qcow2_refuses_compression_bit_with_zlib)
{
	const char *img = fresh("zb.qcow2", "");

	patch(img, 72 + 7, "\x08", 1);
	expect_refused(img, "compression-type incompatible bit is set");
}
END_TEST

/* backing=off: an image that names a backing file is refused, naming
 * it, and no file of the chain is opened. */
START_TEST(test_qcow2_backing_off_refuses_an_image_naming_one)
{
	const char *base = path("boff-base.qcow2"), *img = path("boff.qcow2");
	struct disk_options o = { .no_backing = true };
	struct disk *d = NULL;

	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 '%s' 16M", base), 0);
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -b '%s' -F qcow2 "
			    "'%s' 16M", base, img), 0);
	ck_assert_int_eq(disk_open(img, &o, &d, why, sizeof(why)), -EPERM);
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(why, "backing=off") && strstr(why, base),
		      "reason: %s", why);
	/* Without it the chain opens (and this is not a leftover lock of
	 * the refused open). */
	o.no_backing = false;
	ck_assert_int_eq(disk_open(img, &o, &d, why, sizeof(why)), 0);
	disk_close(d);
}
END_TEST

/* A chain's error keeps its end, the reason, however long the names
 * (it used to be cut at about 220 bytes). */
START_TEST(test_qcow2_long_backing_chain_error_is_not_cut)
{
	char dir[300], a[400], b[400], big[4096];
	struct disk_options o = { 0 };
	struct disk *d = NULL;

	snprintf(dir, sizeof(dir), "%s/%0220d", unit_scratch, 0);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	snprintf(a, sizeof(a), "%s/top-%060d.qcow2", dir, 0);
	snprintf(b, sizeof(b), "%s/mid-%060d.qcow2", dir, 0);
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b '%s/gone' "
			    "-F qcow2 '%s' 16M", dir, b), 0);
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b '%s' -F qcow2 "
			    "'%s' 16M", b, a), 0);
	ck_assert_int_lt(disk_open(a, &o, &d, big, sizeof(big)), 0);
	ck_assert_msg(strlen(big) > 400 && strstr(big, "No such file"),
		      "reason (%zu bytes): %s", strlen(big), big);
}
END_TEST

/* An L2 entry that points past the end of the file must stay unusable
 * once the file has grown over that cluster for another guest cluster:
 * writing through it in place would overwrite that one's data. */
START_TEST(test_qcow2_entry_past_the_end_never_aliases_a_new_cluster)
{
	const char *img = path("alias.qcow2"), *ref = path("alias.raw");
	uint8_t buf[4096], w[4096], be[8];
	uint64_t l1off, l2off, end;
	struct stat st;
	struct disk *d;
	int fd;

	make_raw(ref, 4 << 20);
	fd = open(ref, O_RDWR);
	fill(buf, sizeof(buf), 3);
	for (int c = 0; c < 8; c++)
		ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), c * 65536), 4096);
	close(fd);
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 '%s' '%s'", ref, img), 0);
	fd = open(img, O_RDWR);
	ck_assert_int_eq(fstat(fd, &st), 0);
	end = ((uint64_t)st.st_size + 65535) & ~65535ull;
	l2off = first_l2_table(fd, &l1off);
	/* Guest cluster 5 (allocated, COPIED) now names the cluster right
	 * past the end: the next one the image will allocate. */
	*(uint64_t *)be = htobe64((1ull << 63) | end);
	ck_assert_int_eq(pwrite(fd, be, 8, (off_t)l2off + 5 * 8), 8);
	close(fd);

	d = open_disk(img, DISK_FORMAT_AUTO, false, DISK_AIO_THREADS);
	fill(w, sizeof(w), 4);
	/* Guest cluster 20 is a hole: this allocates cluster |end|. */
	ck_assert_int_eq(disk_pwrite(d, 20 * 65536, w, sizeof(w)), 0);
	memset(buf, 0x66, sizeof(buf));
	ck_assert_int_eq(disk_pwrite(d, 5 * 65536, buf, sizeof(buf)), -EIO);
	ck_assert_int_eq(disk_close(d), 0);
	d = open_disk(img, DISK_FORMAT_AUTO, true, DISK_AIO_THREADS);
	ck_assert_int_eq(disk_pread(d, 20 * 65536, buf, sizeof(buf)), 0);
	ck_assert_mem_eq(buf, w, sizeof(w));
	disk_close(d);
}
END_TEST

START_TEST(test_qcow2_corrupt_l2_pointer_is_an_io_error_not_a_crash)
{
	const char *img = path("bad.qcow2"), *ref = path("bad.raw");
	uint8_t buf[4096];
	uint64_t l1off, l2off;
	uint8_t be[8];
	struct disk *d;
	int fd;

	make_raw(ref, 4 << 20);
	fd = open(ref, O_RDWR);
	fill(buf, sizeof(buf), 1);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), 4096);
	close(fd);
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 '%s' '%s'", ref, img), 0);
	/* Point the first L2 entry at an unaligned offset. */
	fd = open(img, O_RDWR);
	l2off = first_l2_table(fd, &l1off);
	*(uint64_t *)be = htobe64((1ull << 63) | 0x10200);
	ck_assert_int_eq(pwrite(fd, be, 8, (off_t)l2off), 8);
	close(fd);
	d = open_disk(img, DISK_FORMAT_AUTO, true, DISK_AIO_AUTO);
	ck_assert_int_eq(disk_pread(d, 0, buf, sizeof(buf)), -EIO);
	disk_close(d);
}
END_TEST

START_TEST(test_qcow2_l2_entry_on_metadata_or_past_the_end_is_an_io_error)
{
	const char *img = path("meta.qcow2"), *ref = path("meta.raw");
	uint8_t buf[4096], be[8];
	uint64_t l1off, l2off;
	struct disk *d;
	int fd;

	make_raw(ref, 4 << 20);
	fd = open(ref, O_RDWR);
	fill(buf, sizeof(buf), 2);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), 4096);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 65536), 4096);
	close(fd);
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 '%s' '%s'", ref, img), 0);
	fd = open(img, O_RDWR);
	l2off = first_l2_table(fd, &l1off);
	/* Cluster 0 points at the L1 table, cluster 1 far past the end;
	 * both marked COPIED, so a write would go in place. */
	*(uint64_t *)be = htobe64((1ull << 63) | l1off);
	ck_assert_int_eq(pwrite(fd, be, 8, (off_t)l2off), 8);
	*(uint64_t *)be = htobe64((1ull << 63) | (1ull << 40));
	ck_assert_int_eq(pwrite(fd, be, 8, (off_t)l2off + 8), 8);
	close(fd);
	d = open_disk(img, DISK_FORMAT_AUTO, false, DISK_AIO_AUTO);
	memset(buf, 0x33, sizeof(buf));
	ck_assert_int_eq(disk_pwrite(d, 0, buf, sizeof(buf)), -EIO);
	ck_assert_int_eq(disk_pread(d, 0, buf, sizeof(buf)), -EIO);
	ck_assert_int_eq(disk_pwrite(d, 65536, buf, sizeof(buf)), -EIO);
	ck_assert_int_eq(disk_pread(d, 65536, buf, sizeof(buf)), -EIO);
	/* The same asynchronously, the L2 table cached by now: the
	 * io_uring path (qcow2_submit) must not take them either. */
	for (int i = 0; i < 4; i++) {
		struct iovec iov = { buf, sizeof(buf) };
		struct done dn = { 0, 0 };
		uint64_t off = i < 2 ? 0 : 65536;

		ck_assert_int_eq(i % 2 ? disk_submit_readv(d, off, &iov, 1,
							   on_done, &dn)
				       : disk_submit_writev(d, off, &iov, 1,
							    on_done, &dn),
				 0);
		wait_done(d, &dn, 1);
		ck_assert_int_eq(dn.result, -EIO);
	}
	disk_close(d);
	/* The L1 table was not overwritten, and the file did not grow to
	 * a terabyte. */
	{
		struct stat st;

		fd = open(img, O_RDONLY);
		ck_assert_int_eq(pread(fd, be, 8, (off_t)l1off), 8);
		ck_assert_uint_eq(be64toh(*(uint64_t *)be) & 0x00fffffffffffe00ull,
				  l2off);
		ck_assert_int_eq(fstat(fd, &st), 0);
		ck_assert_int_lt(st.st_size, 64 << 20);
		close(fd);
	}
}
END_TEST

START_TEST(test_qcow2_refuses_truncated_headers)
{
	static const off_t lens[] = { 0, 3, 4, 8, 40, 71 };
	const char *img = path("t.qcow2");

	for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct disk_options o = { .format = DISK_FORMAT_QCOW2 };
		struct disk *d = NULL;

		fresh("t.qcow2", "");
		ck_assert_int_eq(truncate(img, lens[i]), 0);
		ck_assert_int_lt(disk_open(img, &o, &d, why, sizeof(why)), 0);
		ck_assert_ptr_null(d);
		ck_assert_msg(strstr(why, "qcow2"), "length %d: '%s'",
			      (int)lens[i], why);
	}
	/* Header intact but the tables cut off. */
	img = fresh("t2.qcow2", "");
	ck_assert_int_eq(truncate(img, 65536 + 100), 0);
	expect_refused(img, "beyond end of file");
}
END_TEST

START_TEST(test_qcow2_refuses_l1_and_refcount_entries_past_eof)
{
	const char *img = fresh("l1e.qcow2", "");
	uint8_t be[8];
	uint64_t l1off, rtoff;
	int fd;

	fd = open(img, O_RDONLY);
	ck_assert_int_eq(pread(fd, be, 8, 40), 8);
	l1off = be64toh(*(uint64_t *)be);
	ck_assert_int_eq(pread(fd, be, 8, 48), 8);
	rtoff = be64toh(*(uint64_t *)be);
	close(fd);
	*(uint64_t *)be = htobe64((1ull << 63) | (1ull << 36));
	patch(img, (off_t)l1off, be, 8);
	expect_refused(img, "L1 entry 0 points outside the image");
	img = fresh("rte.qcow2", "");
	*(uint64_t *)be = htobe64(1ull << 36);
	patch(img, (off_t)rtoff + 8, be, 8);
	expect_refused(img, "refcount table entry 1 points outside");
	/* L1 too small for the virtual size. */
	img = fresh("l1s.qcow2", "");
	patch(img, 36, "\0\0\0\0", 4);
	expect_refused(img, "too small for the virtual size");
}
END_TEST

START_TEST(test_qcow2_refuses_bad_backing_name_and_extensions)
{
	const char *img = fresh("bn.qcow2", "");

	/* backing_file_offset past the header cluster. */
	patch(img, 8, "\0\0\0\0\0\1\0\0", 8);
	patch(img, 16, "\0\0\0\x10", 4);
	expect_refused(img, "backing file name out of bounds");
	/* A header extension whose length overruns the cluster. */
	img = fresh("ext.qcow2", "");
	patch(img, 112 + 4, "\x7f\xff\xff\xff", 4); /* after header_length 112 */
	expect_refused(img, "overruns the header cluster");
	/* An image that is its own backing file. */
	img = path("self.qcow2");
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 '%s' 16M && "
			    "qemu-img rebase -u -f qcow2 -b self.qcow2 -F qcow2 '%s'",
			    img, img), 0);
	expect_refused(img, "backing file");
}
END_TEST

/* Garbled headers and tables, deterministic "fuzzing": every mutation is
 * either refused at open with a reason, or gives an image whose every
 * read and some writes return 0 or an error -- never a crash (ASan runs
 * this too). */
START_TEST(test_qcow2_fuzzed_images_refused_or_harmless)
{
	const char *base = path("fz0.qcow2"), *img = path("fz.qcow2"),
		   *ref = path("fz.raw");
	uint32_t seed = 12345;
	unsigned refused = 0, opened = 0;
	uint8_t *buf = malloc(1 << 20);
	int fd;

	make_raw(ref, 2 << 20);
	fd = open(ref, O_RDWR);
	fill(buf, 1 << 20, 9);
	ck_assert_int_eq(pwrite(fd, buf, 1 << 20, 256 << 10), 1 << 20);
	close(fd);
	ck_assert_int_eq(sh("qemu-img convert -O qcow2 -o cluster_size=4096 "
			    "'%s' '%s'", ref, base), 0);
	for (int iter = 0; iter < 150; iter++) {
		struct disk_options o = { .format = DISK_FORMAT_AUTO,
					  .aio = DISK_AIO_THREADS };
		struct disk *d = NULL;
		struct stat st;
		int err;

		ck_assert_int_eq(sh("cp '%s' '%s'", base, img), 0);
		ck_assert_int_eq(stat(img, &st), 0);
		fd = open(img, O_RDWR);
		/* 1-4 random bytes in the header, or in the metadata
		 * clusters after it (L1, refcounts, L2). */
		for (int k = 0; k <= (int)(seed % 4); k++) {
			uint8_t b;
			off_t off;

			seed = seed * 1103515245u + 12345u;
			off = (iter & 1) ? (off_t)(seed >> 8) % 112
					 : (off_t)(seed >> 8) % (6 * 4096);
			seed = seed * 1103515245u + 12345u;
			b = (uint8_t)(seed >> 16);
			ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
		}
		close(fd);
		why[0] = '\0';
		err = disk_open(img, &o, &d, why, sizeof(why));
		if (err) {
			ck_assert_ptr_null(d);
			ck_assert_msg(why[0], "iter %d: error %d without reason",
				      iter, err);
			refused++;
			continue;
		}
		opened++;
		for (uint64_t off = 0; off + (256 << 10) <= disk_size(d) &&
				       off < (8u << 20);
		     off += 256 << 10)
			(void)disk_pread(d, off, buf, 256 << 10);
		if (!disk_read_only(d)) {
			memset(buf, 0x5a, 8192);
			(void)disk_pwrite(d, 300 << 10, buf, 8192);
			(void)disk_pwrite(d, 0, buf, 512);
			(void)disk_discard(d, 512 << 10, 65536);
			(void)disk_write_zeroes(d, 600 << 10, 8192, false);
		}
		disk_close(d);
	}
	/* Both outcomes happened: the fuzzing reached past the open. */
	ck_assert_uint_gt(refused, 0);
	ck_assert_uint_gt(opened, 0);
	free(buf);
}
END_TEST

START_TEST(test_qcow2_ofd_lock_refuses_second_writer_and_backing_writer)
{
	const char *img = path("lk.qcow2"), *ov = path("lkov.qcow2");
	struct disk_options rw = { 0 }, ro = { .read_only = true };
	struct disk *a, *b = NULL;

	ck_assert_int_eq(sh("qemu-img create -f qcow2 '%s' 16M", img), 0);
	ck_assert_int_eq(disk_open(img, &rw, &a, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_open(img, &rw, &b, why, sizeof(why)), -EBUSY);
	ck_assert_ptr_null(b);
	ck_assert_ptr_nonnull(strstr(why, "locked"));
	ck_assert_int_eq(disk_open(img, &ro, &b, why, sizeof(why)), -EBUSY);
	/* The lock is released on close (also when a process dies). */
	ck_assert_int_eq(disk_close(a), 0);
	ck_assert_int_eq(disk_open(img, &rw, &a, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(a), 0);
	/* An image in use as a backing file cannot be opened for writing. */
	ck_assert_int_eq(sh("qemu-img create -f qcow2 -b lk.qcow2 -F qcow2 '%s'",
			    ov), 0);
	ck_assert_int_eq(disk_open(ov, &rw, &a, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_open(img, &rw, &b, why, sizeof(why)), -EBUSY);
	ck_assert_int_eq(disk_open(img, &ro, &b, why, sizeof(why)), 0);
	disk_close(b);
	disk_close(a);
}
END_TEST

/* The SIGKILL case through the asynchronous API, with every kind of
 * metadata change: allocation, overwrite, discard, write-zeroes. */
START_TEST(test_qcow2_sigkill_after_async_flush_with_discard_and_zeroes)
{
	const char *img = path("ka.qcow2"), *ref = path("ka.raw");
	int pfd[2], st;
	pid_t pid;
	char c;

	ck_assert_int_eq(sh("qemu-img create -f qcow2 -o cluster_size=16384 "
			    "'%s' 32M", img), 0);
	make_raw(ref, 32 << 20);
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		enum { N = 64, LEN = 20480 };
		struct disk_options o = { 0 };
		static uint8_t bufs[N][LEN];
		struct iovec iov[N];
		struct done dn = { 0, 0 };
		uint8_t *z = calloc(1, 1 << 20);
		struct disk *d;
		int fd = open(ref, O_RDWR), want = 0;

		if (!z || disk_open(img, &o, &d, why, sizeof(why)))
			_exit(1);
		/* Two rounds: the second overwrites clusters of the first. */
		for (int r = 0; r < 2; r++) {
			for (int i = 0; i < N; i++) {
				uint64_t off = (uint64_t)((i * 37 + r * 5) % 1500) *
					       16384 + (uint64_t)(i % 5) * 512;

				fill(bufs[i], LEN, (uint32_t)(r * N + i));
				iov[i] = (struct iovec){ bufs[i], LEN };
				if (pwrite(fd, bufs[i], LEN, (off_t)off) != LEN)
					_exit(1);
				if (disk_submit_writev(d, off, &iov[i], 1,
						       on_done, &dn))
					_exit(1);
				want++;
			}
			while (dn.count < want) {
				struct pollfd p = { disk_completion_fd(d),
						    POLLIN, 0 };

				poll(&p, 1, 1000);
				disk_process_completions(d);
			}
		}
		/* Discard whole clusters; write-zeroes partial and whole. */
		if (disk_submit_discard(d, 100 * 16384, 8 * 16384, on_done,
					&dn) ||
		    disk_submit_write_zeroes(d, 300 * 16384 + 1024, 40000,
					     false, on_done, &dn) ||
		    disk_submit_write_zeroes(d, 600 * 16384, 4 * 16384, true,
					     on_done, &dn))
			_exit(1);
		want += 3;
		if (pwrite(fd, z, 8 * 16384, 100 * 16384) < 0 ||
		    pwrite(fd, z, 40000, 300 * 16384 + 1024) < 0 ||
		    pwrite(fd, z, 4 * 16384, 600 * 16384) < 0)
			_exit(1);
		while (dn.count < want) {
			struct pollfd p = { disk_completion_fd(d), POLLIN, 0 };

			poll(&p, 1, 1000);
			disk_process_completions(d);
		}
		if (disk_submit_flush(d, on_done, &dn))
			_exit(1);
		want++;
		while (dn.count < want) {
			struct pollfd p = { disk_completion_fd(d), POLLIN, 0 };

			poll(&p, 1, 1000);
			disk_process_completions(d);
		}
		if (dn.result)
			_exit(1);
		/* The guest's flush completed; now die without closing. */
		if (write(pfd[1], "x", 1) != 1)
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
	ck_assert(header_dirty(img));
	ck_assert_int_eq(qcheck(img), 0);
	ck_assert_int_eq(qcompare(img, ref), 0);
}
END_TEST

static Suite *qcow2_suite(void)
{
	Suite *s = suite_create("disk");
	TCase *raw = tcase_create("raw");
	TCase *q = tcase_create("qcow2");
	TCase *bad = tcase_create("refused");

	tcase_add_checked_fixture(raw, setup, teardown);
	tcase_add_checked_fixture(q, setup, teardown);
	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_set_timeout(raw, 60);
	tcase_set_timeout(q, 240);
	tcase_set_timeout(bad, 240);
	tcase_add_test(raw, test_raw_io_uring_roundtrip);
	tcase_add_test(raw, test_raw_thread_pool_roundtrip);
	tcase_add_test(raw, test_raw_out_of_range_and_read_only);
	tcase_add_test(raw, test_raw_ofd_lock_refuses_second_writer);
	tcase_add_test(raw, test_raw_discard_and_write_zeroes);
	tcase_add_test(raw, test_raw_direct_unaligned_buffers_bounce);
	tcase_add_test(raw, test_raw_direct_addresses_what_the_file_system_allows);
	tcase_add_test(raw, test_raw_direct_partial_block_writes_all_land);
	tcase_add_test(raw, test_raw_direct_odd_block_refused);
	tcase_add_test(q, test_qcow2_direct_partial_block_writes_all_land);
	tcase_add_test(raw, test_raw_reads_leave_the_access_time_alone);
	tcase_add_test(raw, test_raw_image_of_another_user_opens_without_noatime);
	tcase_add_test(raw, test_raw_probed_image_cannot_be_turned_into_qcow2);
	tcase_add_test(q, test_qcow2_v3_writes_pass_qemu_img_check);
	tcase_add_test(q, test_qcow2_v2_writes_pass_qemu_img_check);
	tcase_add_test(q, test_qcow2_small_clusters_grow_refcount_table);
	tcase_add_test(q, test_qcow2_refcount_bits_1_and_64);
	tcase_add_test(q, test_qcow2_preallocated_images_metadata_and_falloc);
	tcase_add_test(q, test_qcow2_reads_what_qemu_io_wrote);
	tcase_add_test(q, test_qcow2_compressed_clusters_read_and_rewrite);
	tcase_add_test(q, test_qcow2_backing_qcow2);
	tcase_add_test(q, test_qcow2_backing_raw);
	tcase_add_test(q, test_qcow2_three_level_backing_chain);
	tcase_add_test(q, test_qcow2_discard_and_write_zeroes);
	tcase_add_test(q, test_qcow2_concurrent_writes_into_shared_clusters);
	tcase_add_test(q, test_qcow2_allocated_clusters_go_to_io_uring);
	tcase_add_test(q, test_qcow2_shared_cluster_writes_are_copied_not_in_place);
	tcase_add_test(q, test_qcow2_cache_none_writes_pass_qemu_img_check);
	tcase_add_test(q, test_qcow2_cache_none_compressed_and_backing);
	tcase_add_test(q, test_qcow2_cache_none_aligned_io_goes_to_io_uring);
	tcase_add_test(q, test_qcow2_dirty_bit_set_while_open_cleared_on_close);
	tcase_add_test(q, test_qcow2_sigkill_after_flush_leaves_consistent_image);
	tcase_add_test(bad, test_qcow2_refuses_bad_magic);
	tcase_add_test(bad, test_qcow2_refuses_version_4);
	tcase_add_test(bad, test_qcow2_refuses_unknown_incompatible_feature);
	tcase_add_test(bad, test_qcow2_refuses_encryption);
	tcase_add_test(bad, test_qcow2_refuses_bad_refcount_order_and_cluster_bits);
	tcase_add_test(bad, test_qcow2_refuses_l1_beyond_file);
	tcase_add_test(bad, test_qcow2_refuses_zstd_and_corrupt_for_writing);
	tcase_add_test(bad, test_qcow2_refuses_missing_backing_file_with_its_name);
	tcase_add_test(bad, test_qcow2_refuses_compression_bit_with_zlib);
	tcase_add_test(bad, test_qcow2_backing_off_refuses_an_image_naming_one);
	tcase_add_test(bad, test_qcow2_long_backing_chain_error_is_not_cut);
	tcase_add_test(bad, test_qcow2_entry_past_the_end_never_aliases_a_new_cluster);
	tcase_add_test(bad, test_qcow2_corrupt_l2_pointer_is_an_io_error_not_a_crash);
	tcase_add_test(bad, test_qcow2_l2_entry_on_metadata_or_past_the_end_is_an_io_error);
	tcase_add_test(bad, test_qcow2_refuses_truncated_headers);
	tcase_add_test(bad, test_qcow2_refuses_l1_and_refcount_entries_past_eof);
	tcase_add_test(bad, test_qcow2_refuses_bad_backing_name_and_extensions);
	tcase_add_test(bad, test_qcow2_fuzzed_images_refused_or_harmless);
	tcase_add_test(q, test_qcow2_ofd_lock_refuses_second_writer_and_backing_writer);
	tcase_add_test(q, test_qcow2_sigkill_after_async_flush_with_discard_and_zeroes);
	suite_add_tcase(s, raw);
	suite_add_tcase(s, q);
	suite_add_tcase(s, bad);
	return s;
}

UNIT_MAIN_SCRATCH(qcow2_suite, "kite-qcow2")
