/* The disk layer's own guards (vmm/disk/disk.c): a guest cannot forge a
 * qcow2 header on a probed raw image by changing its buffer while the
 * write is in flight; special files (FIFOs, sockets, devices,
 * directories, pseudo file systems) are refused by type, as disks and as
 * backing files, without hanging; the resolved backing chain with -v;
 * and what a lock conflict says: the same image twice in this process,
 * another process, or a program (QEMU) holding the image for writing. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "vmm/disk/disk.h"
#include "vmm/log.h"

static char dir[80];
static char why[4096];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/t-XXXXXX", unit_scratch);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	kite_verbose = 0;
	why[0] = '\0';
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* |name| in the test's directory; a ring of buffers, more than a test
 * keeps at once. */
static const char *path(const char *name)
{
	static char bufs[64][160];
	static int n;
	char *p = bufs[n++ % 64];

	snprintf(p, 160, "%s/%s", dir, name);
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

static void make_raw(const char *p, uint64_t size)
{
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static void read_head(const char *p, uint8_t head[4])
{
	int fd = open(p, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, head, 4, 0), 4);
	close(fd);
}

static const uint8_t magic[4] = { 'Q', 'F', 'I', 0xfb };

/* Open |p| and expect it refused with a reason containing |needle|. */
static void expect_refused(const char *p, const struct disk_options *o,
			   const char *needle)
{
	struct disk *d = NULL;
	int err = disk_open(p, o, &d, why, sizeof(why));

	ck_assert_msg(err < 0, "%s opened", p);
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(why, needle), "%s: reason '%s' lacks '%s'", p,
		      why, needle);
}

/* ---- finding 2: the qcow2 magic written to sector 0 ---------------------- */

struct flipper {
	volatile uint8_t *byte;
	int stop;                /* atomic */
	unsigned long flips;     /* atomic */
};

/* A second guest thread: byte 0 of the buffer in flight, 'Q' and 'X' by
 * turns, each for a moment (about as long as a check takes).  It writes
 * through a second mapping of the buffer's memory, as a vCPU writes
 * guest RAM: ThreadSanitizer (make check-tsan) then sees no race in the
 * test itself, only what kite's own threads do. */
static void *flip(void *arg)
{
	struct flipper *f = arg;
	unsigned long n = 0;

	while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
		*f->byte = n & 1 ? 'Q' : 'X';
		for (volatile int i = 0; i < 20; i++) {
		}
		n++;
	}
	__atomic_store_n(&f->flips, n, __ATOMIC_RELAXED);
	return NULL;
}

struct count {
	int done, ok, refused;
};

static void on_write(void *opaque, int result)
{
	struct count *c = opaque;

	c->done++;
	if (result == 0)
		c->ok++;
	else
		ck_assert_int_eq(result, -EPERM);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes of a buffer that reads "QFI\xfb" or "XFI\xfb" depending on the
 * moment, to offset 0 of a probed raw image, in batches; after each
 * batch the file must not start with the magic.  Before the fix (the
 * buffer checked at submission, written later) this failed within a
 * few hundred writes. */
static void flip_race(enum disk_aio aio, bool direct)
{
	const char *p = path("race.raw");
	struct disk_options o = { .aio = aio, .direct = direct };
	struct flipper f = { 0 };
	struct count c = { 0 };
	unsigned submitted = 0, checks = 0;
	struct iovec iov;
	pthread_t thr;
	struct disk *d;
	uint8_t *buf, *alias, head[4];
	double end;
	int mfd;

	make_raw(p, 1 << 20);
	ck_assert_int_eq(disk_open(p, &o, &d, why, sizeof(why)), 0);
	ck_assert_str_eq(disk_format_name(d), "raw");
	if (aio == DISK_AIO_THREADS)
		ck_assert(!disk_uses_io_uring(d));
	/* The "guest RAM": one page mapped twice, the request's view and
	 * the flipping thread's. */
	mfd = memfd_create("race", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(ftruncate(mfd, 4096), 0);
	buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	alias = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ck_assert(buf != MAP_FAILED && alias != MAP_FAILED);
	close(mfd);
	memset(buf, 0xa5, 4096);
	memcpy(buf, "XFI\xfb", 4);
	iov = (struct iovec){ buf, 4096 };
	f.byte = alias;
	ck_assert_int_eq(pthread_create(&thr, NULL, flip, &f), 0);
	end = now() + 0.35;
	while (now() < end) {
		for (int i = 0; i < 8; i++) {
			int err = disk_submit_writev(d, 0, &iov, 1, on_write,
						     &c);

			if (err == -EPERM)
				c.refused++;
			else
				ck_assert_int_eq(err, 0);
			submitted += err == 0;
		}
		disk_drain(d);
		ck_assert_uint_eq((unsigned)c.done, submitted);
		read_head(p, head);
		checks++;
		ck_assert_msg(memcmp(head, magic, 4) != 0,
			      "the qcow2 magic reached the image after %u "
			      "writes (%u checks)", submitted, checks);
	}
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELAXED);
	pthread_join(thr, NULL);
	/* Both sides of the race happened: some writes were refused
	 * ('Q' in the copy), some written ('X'). */
	ck_assert_msg(c.ok > 0 && c.refused > 0,
		      "%d written, %d refused, %lu flips", c.ok, c.refused,
		      f.flips);
	ck_assert_int_eq(disk_close(d), 0);
	munmap(buf, 4096);
	munmap(alias, 4096);
	/* The next start probes it as what it is. */
	o = (struct disk_options){ .format = DISK_FORMAT_AUTO };
	ck_assert_int_eq(disk_open(p, &o, &d, why, sizeof(why)), 0);
	ck_assert_str_eq(disk_format_name(d), "raw");
	ck_assert_int_eq(disk_close(d), 0);
}

START_TEST(test_disk_sector0_race_io_uring)
{
	flip_race(DISK_AIO_AUTO, false);
}
END_TEST

START_TEST(test_disk_sector0_race_threads)
{
	flip_race(DISK_AIO_THREADS, false);
}
END_TEST

START_TEST(test_disk_sector0_race_io_uring_direct)
{
	flip_race(DISK_AIO_AUTO, true);
}
END_TEST

START_TEST(test_disk_sector0_race_threads_direct)
{
	flip_race(DISK_AIO_THREADS, true);
}
END_TEST

/* Writes over bytes 0-3 still write what they were given (through the
 * copy): several segments, unaligned ones with O_DIRECT, a large one;
 * a write covering the head in part is checked with the bytes the file
 * has; an explicit format=raw image is the user's to write. */
static void head_writes(enum disk_aio aio, bool direct)
{
	const char *p = path("head.raw");
	struct disk_options o = { .aio = aio, .direct = direct };
	uint8_t *w = malloc(1 << 20), *r = malloc(1 << 20);
	struct iovec iov[3];
	struct count c = { 0 };
	struct disk *d;

	make_raw(p, 4 << 20);
	ck_assert_int_eq(disk_open(p, &o, &d, why, sizeof(why)), 0);
	for (int i = 0; i < (1 << 20); i++)
		w[i] = (uint8_t)(i * 7 + 3);
	/* Three segments, one of them odd-sized and off alignment. */
	iov[0] = (struct iovec){ w + 1, 100 };
	iov[1] = (struct iovec){ w + 200, 412 };
	iov[2] = (struct iovec){ w + 4096, 512 };
	ck_assert_int_eq(disk_submit_writev(d, 0, iov, 3, on_write, &c), 0);
	disk_drain(d);
	ck_assert_int_eq(c.ok, 1);
	ck_assert_int_eq(disk_pread(d, 0, r, 1024), 0);
	ck_assert_mem_eq(r, w + 1, 100);
	ck_assert_mem_eq(r + 100, w + 200, 412);
	ck_assert_mem_eq(r + 512, w + 4096, 512);
	/* 1 MiB at offset 0, asynchronous and synchronous. */
	iov[0] = (struct iovec){ w, 1 << 20 };
	ck_assert_int_eq(disk_submit_writev(d, 0, iov, 1, on_write, &c), 0);
	disk_drain(d);
	ck_assert_int_eq(c.ok, 2);
	ck_assert_int_eq(disk_pread(d, 0, r, 1 << 20), 0);
	ck_assert_mem_eq(r, w, 1 << 20);
	w[0] = 'Z';
	ck_assert_int_eq(disk_pwrite(d, 0, w, 1 << 20), 0);
	ck_assert_int_eq(disk_pread(d, 0, r, 4096), 0);
	ck_assert_mem_eq(r, w, 4096);
	/* The magic whole, and in parts that complete it. */
	ck_assert_int_eq(disk_pwrite(d, 0, magic, 4), -EPERM);
	ck_assert_int_eq(disk_submit_writev(d, 0,
			 &(struct iovec){ (void *)magic, 4 }, 1, on_write, &c),
			 -EPERM);
	ck_assert_int_eq(disk_pwrite(d, 0, "Q", 1), 0);
	ck_assert_int_eq(disk_pwrite(d, 1, "FI\xfb", 3), -EPERM);
	ck_assert_int_eq(disk_pwrite(d, 2, "I\xfb", 2), 0);
	ck_assert_int_eq(disk_pwrite(d, 1, "F", 1), -EPERM);
	ck_assert_int_eq(disk_pwrite(d, 1, "G", 1), 0);
	/* Past byte 3 nothing is checked. */
	ck_assert_int_eq(disk_pwrite(d, 4, magic, 4), 0);
	ck_assert_int_eq(disk_pread(d, 0, r, 8), 0);
	ck_assert_mem_eq(r, "QGI\xfbQFI\xfb", 8);
	ck_assert_int_eq(disk_close(d), 0);

	o.format = DISK_FORMAT_RAW;
	ck_assert_int_eq(disk_open(p, &o, &d, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_pwrite(d, 0, magic, 4), 0);
	ck_assert_int_eq(disk_close(d), 0);
	free(w);
	free(r);
}

START_TEST(test_disk_head_writes_io_uring)
{
	head_writes(DISK_AIO_AUTO, false);
}
END_TEST

START_TEST(test_disk_head_writes_threads)
{
	head_writes(DISK_AIO_THREADS, false);
}
END_TEST

START_TEST(test_disk_head_writes_direct)
{
	head_writes(DISK_AIO_AUTO, true);
	head_writes(DISK_AIO_THREADS, true);
}
END_TEST

/* ---- finding 3 and 5: special files ---------------------------------------- */

static void make_fifo(const char *p)
{
	ck_assert_int_eq(mkfifo(p, 0644), 0);
}

static void make_socket(const char *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_uint_lt(strlen(p), sizeof(sa.sun_path));
	strcpy(sa.sun_path, p);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* The fd may go: the socket file stays. */
	close(fd);
}

/* A block device node to name (never opened: refused by its type), or
 * NULL when the host shows none. */
static const char *some_block_device(void)
{
	static const char *const cand[] = {
		"/dev/loop0", "/dev/vda", "/dev/sda", "/dev/nvme0n1",
		"/dev/zram0", "/dev/ram0",
	};
	struct stat st;

	for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
		if (stat(cand[i], &st) == 0 && S_ISBLK(st.st_mode))
			return cand[i];
	return NULL;
}

/* Disks: a FIFO (read-only and writable, and through a symbolic link),
 * a socket, a character device, a directory -- refused by type, at
 * once (a FIFO open used to wait for a writer for ever). */
START_TEST(test_disk_special_files_refused_by_type)
{
	struct disk_options rw = { 0 }, ro = { .read_only = true };
	const char *fifo = path("fifo"), *sock = path("sock");
	const char *lfifo = path("link-to-fifo"), *ldir = path("link-to-dir");

	make_fifo(fifo);
	make_socket(sock);
	ck_assert_int_eq(symlink(fifo, lfifo), 0);
	ck_assert_int_eq(symlink(dir, ldir), 0);
	expect_refused(fifo, &rw, "is a FIFO");
	expect_refused(fifo, &ro, "is a FIFO");
	expect_refused(lfifo, &ro, "is a FIFO");
	expect_refused(sock, &rw, "is a socket");
	expect_refused(sock, &ro, "is a socket");
	expect_refused("/dev/null", &ro, "is a character device");
	expect_refused("/dev/null", &rw, "is a character device");
	expect_refused(dir, &ro, "is a directory");
	expect_refused(ldir, &rw, "is a directory");
}
END_TEST

/* A qcow2 image whose backing file is |target| (not opened by qemu-img). */
static const char *image_backed_by(const char *name, const char *target,
				   const char *fmt)
{
	const char *img = path(name);

	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b '%s' -F %s "
			    "'%s' 16M", target, fmt, img), 0);
	return img;
}

static void expect_backing_refused(const char *target, const char *needle)
{
	static int n;
	char name[32];
	const char *img;
	struct disk_options ro = { .read_only = true }, rw = { 0 };

	snprintf(name, sizeof(name), "top%d.qcow2", n++);
	img = image_backed_by(name, target, "raw");
	expect_refused(img, &rw, needle);
	ck_assert_msg(strstr(why, "backing file") && strstr(why, target),
		      "reason '%s' does not name the backing file", why);
	expect_refused(img, &ro, needle);
}

/* Backing files, named by an untrusted image: only regular files, and
 * not on the kernel's pseudo file systems; a symbolic link to any of
 * those is the same; a symbolic link to a regular file is fine. */
START_TEST(test_disk_backing_file_must_be_a_regular_image_file)
{
	const char *fifo = path("bfifo"), *sock = path("bsock");
	const char *lmem = path("link-to-mem"), *lfifo = path("link-to-bfifo");
	const char *base = path("base.raw"), *lbase = path("link-to-base");
	const char *blk = some_block_device(), *img;
	char lblk[160];
	struct disk_options o = { 0 };
	struct disk *d;

	make_fifo(fifo);
	make_socket(sock);
	ck_assert_int_eq(symlink("/proc/self/mem", lmem), 0);
	ck_assert_int_eq(symlink(fifo, lfifo), 0);
	expect_backing_refused(fifo, "is a FIFO");
	expect_backing_refused(lfifo, "is a FIFO");
	expect_backing_refused(sock, "is a socket");
	expect_backing_refused("/dev/null", "is a character device");
	expect_backing_refused("/dev/zero", "is a character device");
	expect_backing_refused(dir, "is a directory");
	expect_backing_refused("/proc/self/mem", "is on procfs");
	expect_backing_refused(lmem, "is on procfs");
	expect_backing_refused("/proc/self/environ", "is on procfs");
	if (access("/proc/kcore", F_OK) == 0)
		expect_backing_refused("/proc/kcore", "is on procfs");
	if (access("/sys/kernel/uevent_seqnum", F_OK) == 0)
		expect_backing_refused("/sys/kernel/uevent_seqnum",
				       "is on sysfs");
	if (blk) {
		expect_backing_refused(blk, "is a block device");
		snprintf(lblk, sizeof(lblk), "%s/link-to-blk", dir);
		ck_assert_int_eq(symlink(blk, lblk), 0);
		expect_backing_refused(lblk, "is a block device");
	}
	/* A regular file, directly and through a symbolic link. */
	make_raw(base, 16 << 20);
	ck_assert_int_eq(symlink(base, lbase), 0);
	img = image_backed_by("ok1.qcow2", base, "raw");
	ck_assert_int_eq(disk_open(img, &o, &d, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(d), 0);
	img = image_backed_by("ok2.qcow2", lbase, "raw");
	ck_assert_int_eq(disk_open(img, &o, &d, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(d), 0);
}
END_TEST

/* -v: the chain each disk resolved to, with real paths, once. */
START_TEST(test_disk_verbose_reports_resolved_chain)
{
	const char *raw = path("x.raw"), *base = path("base.qcow2");
	const char *top = path("top.qcow2"), *log = path("stderr.txt");
	char want[1024], got[2048] = "", *rbase, *rraw;
	struct disk_options o = { .read_only = true };
	struct disk *d;
	int saved, fd;
	ssize_t n;

	make_raw(raw, 16 << 20);
	/* Relative names, resolved against the naming image's directory;
	 * the top one through a symbolic link to it. */
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b x.raw -F raw "
			    "'%s' 16M", base), 0);
	ck_assert_int_eq(symlink("base.qcow2", path("base-link.qcow2")), 0);
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b "
			    "base-link.qcow2 -F qcow2 '%s' 16M", top), 0);
	rbase = realpath(base, NULL);
	rraw = realpath(raw, NULL);
	snprintf(want, sizeof(want),
		 "kite: disk '%s': qcow2, backing '%s' (qcow2) -> '%s' (raw)\n",
		 top, rbase, rraw);

	fflush(stderr);
	saved = dup(2);
	fd = open(log, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 2);
	kite_verbose = 1;
	ck_assert_int_eq(disk_open(top, &o, &d, why, sizeof(why)), 0);
	kite_verbose = 0;
	ck_assert_int_eq(disk_close(d), 0);
	/* Quiet without -v. */
	ck_assert_int_eq(disk_open(raw, &o, &d, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(d), 0);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, got, sizeof(got) - 1, 0);
	close(fd);
	ck_assert_int_ge(n, 0);
	got[n] = '\0';
	ck_assert_str_eq(got, want);
	free(rbase);
	free(rraw);
}
END_TEST

/* ---- finding 7: what a lock conflict says -------------------------------- */

/* Two opens of one image in this process (the second by another name):
 * the reason names the first, not "another process". */
START_TEST(test_disk_same_image_twice_is_named)
{
	const char *a = path("a.img"), *b = path("b.img");
	const char *ov = path("ov.qcow2");
	struct disk_options rw = { 0 }, ro = { .read_only = true };
	struct disk *da, *db;
	char want[256];

	make_raw(a, 1 << 20);
	ck_assert_int_eq(symlink(a, b), 0);
	snprintf(want, sizeof(want), "the same image as disk '%s'", a);
	ck_assert_int_eq(disk_open(a, &rw, &da, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_open(b, &rw, &db, why, sizeof(why)), -EBUSY);
	ck_assert_msg(strstr(why, want), "reason: %s", why);
	ck_assert_int_eq(disk_open(b, &ro, &db, why, sizeof(why)), -EBUSY);
	ck_assert_msg(strstr(why, want), "reason: %s", why);
	ck_assert_int_eq(disk_close(da), 0);
	/* Two readers share it. */
	ck_assert_int_eq(disk_open(a, &ro, &da, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_open(b, &ro, &db, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(db), 0);
	ck_assert_int_eq(disk_open(b, &rw, &db, why, sizeof(why)), -EBUSY);
	ck_assert_msg(strstr(why, want), "reason: %s", why);
	ck_assert_int_eq(disk_close(da), 0);
	/* Closed, forgotten: nothing is said about it any more. */
	ck_assert_int_eq(disk_open(b, &rw, &db, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(db), 0);

	/* An image that is also another disk's backing file. */
	ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b a.img -F raw "
			    "'%s' 1M", ov), 0);
	ck_assert_int_eq(disk_open(a, &rw, &da, why, sizeof(why)), 0);
	expect_refused(ov, &rw, want);
	ck_assert_ptr_nonnull(strstr(why, "backing file"));
	ck_assert_int_eq(disk_close(da), 0);
	ck_assert_int_eq(disk_open(ov, &rw, &db, why, sizeof(why)), 0);
	expect_refused(a, &rw, "the same image as backing file");
	ck_assert_int_eq(disk_close(db), 0);
}
END_TEST

/* A child process holding OFD locks on |p|: |nr| ranges (type, start,
 * len); it keeps them until the pipe closes.  Returns the pipe's write
 * end and the child's pid. */
static int child_locks(const char *p, const struct flock *fl, int nr,
		       pid_t *pid)
{
	int go[2], ready[2];
	char c;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(ready), 0);
	*pid = fork();
	ck_assert_int_ge(*pid, 0);
	if (*pid == 0) {
		int fd = open(p, O_RDWR);

		close(go[1]);
		for (int i = 0; i < nr && fd >= 0; i++) {
			struct flock l = fl[i];

			if (fcntl(fd, F_OFD_SETLK, &l) < 0)
				_exit(1);
		}
		if (fd < 0 || write(ready[1], "r", 1) != 1)
			_exit(1);
		(void)!read(go[0], &c, 1);
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return go[1];
}

static void child_release(int go, pid_t pid)
{
	int st;

	close(go);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

#define LOCK(type, start, len) \
	{ .l_type = (type), .l_whence = SEEK_SET, .l_start = (start), \
	  .l_len = (len) }

/* QEMU with write permission: read locks on bytes 100 (consistent read)
 * and 101 (write), 201 (not sharing write).  A read-only open refuses it
 * unless shared, which warns; a writable one conflicts anyway. */
START_TEST(test_disk_readonly_refuses_image_open_for_writing)
{
	const struct flock qemu_writer[] = {
		LOCK(F_RDLCK, 100, 1), LOCK(F_RDLCK, 101, 1),
		LOCK(F_RDLCK, 201, 1),
	};
	const char *img = path("q.img"), *log = path("warn.txt");
	struct disk_options ro = { .read_only = true },
			    shared = { .read_only = true, .shared = true },
			    rw = { 0 };
	struct disk *d;
	char got[1024] = "";
	int go, saved, fd;
	ssize_t n;
	pid_t pid;

	make_raw(img, 1 << 20);
	go = child_locks(img, qemu_writer, 3, &pid);
	expect_refused(img, &ro, "image is open for writing by another "
				 "program (QEMU's lock on byte 101)");
	expect_refused(img, &rw, "locked by another process");
	/* shared: opens, says so on stderr. */
	fflush(stderr);
	saved = dup(2);
	fd = open(log, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 2);
	ck_assert_int_eq(disk_open(img, &shared, &d, why, sizeof(why)), 0);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, got, sizeof(got) - 1, 0);
	close(fd);
	ck_assert_int_gt(n, 0);
	got[n] = '\0';
	ck_assert_msg(strstr(got, "warning") && strstr(got, img) &&
		      strstr(got, "byte 101"), "stderr: %s", got);
	ck_assert_int_eq(disk_close(d), 0);
	child_release(go, pid);
	/* Gone: a plain read-only open again. */
	ck_assert_int_eq(disk_open(img, &ro, &d, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(d), 0);
}
END_TEST

/* Readers are no writers: QEMU reading (byte 100 only) and another
 * read-only kite (a whole-file read lock) leave a read-only open be. */
START_TEST(test_disk_readonly_shares_with_readers)
{
	const struct flock qemu_reader[] = { LOCK(F_RDLCK, 100, 1),
					     LOCK(F_RDLCK, 201, 1) };
	const struct flock kite_reader[] = { LOCK(F_RDLCK, 0, 0) };
	const struct flock kite_writer[] = { LOCK(F_WRLCK, 0, 0) };
	const char *img = path("r.img");
	struct disk_options ro = { .read_only = true }, rw = { 0 };
	struct disk *d;
	int go;
	pid_t pid;

	make_raw(img, 1 << 20);
	go = child_locks(img, qemu_reader, 2, &pid);
	ck_assert_int_eq(disk_open(img, &ro, &d, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(d), 0);
	child_release(go, pid);

	go = child_locks(img, kite_reader, 1, &pid);
	ck_assert_int_eq(disk_open(img, &ro, &d, why, sizeof(why)), 0);
	ck_assert_int_eq(disk_close(d), 0);
	expect_refused(img, &rw, "locked by another process");
	child_release(go, pid);

	/* Another process writing: "another process", never "the same
	 * image as" one of ours. */
	go = child_locks(img, kite_writer, 1, &pid);
	expect_refused(img, &ro, "image is locked by another process");
	child_release(go, pid);
}
END_TEST

static Suite *disk_suite(void)
{
	Suite *s = suite_create("disk");
	TCase *race = tcase_create("sector0");
	TCase *files = tcase_create("files");
	TCase *locks = tcase_create("locks");

	tcase_add_checked_fixture(race, setup, teardown);
	tcase_set_timeout(race, 30);
	tcase_add_test(race, test_disk_sector0_race_io_uring);
	tcase_add_test(race, test_disk_sector0_race_threads);
	tcase_add_test(race, test_disk_sector0_race_io_uring_direct);
	tcase_add_test(race, test_disk_sector0_race_threads_direct);
	tcase_add_test(race, test_disk_head_writes_io_uring);
	tcase_add_test(race, test_disk_head_writes_threads);
	tcase_add_test(race, test_disk_head_writes_direct);
	suite_add_tcase(s, race);

	tcase_add_checked_fixture(files, setup, teardown);
	/* A FIFO open that waits for a writer fails the test here. */
	tcase_set_timeout(files, 10);
	tcase_add_test(files, test_disk_special_files_refused_by_type);
	tcase_add_test(files, test_disk_backing_file_must_be_a_regular_image_file);
	tcase_add_test(files, test_disk_verbose_reports_resolved_chain);
	suite_add_tcase(s, files);

	tcase_add_checked_fixture(locks, setup, teardown);
	tcase_set_timeout(locks, 30);
	tcase_add_test(locks, test_disk_same_image_twice_is_named);
	tcase_add_test(locks, test_disk_readonly_refuses_image_open_for_writing);
	tcase_add_test(locks, test_disk_readonly_shares_with_readers);
	suite_add_tcase(s, locks);
	return s;
}

UNIT_MAIN_SCRATCH(disk_suite, "kite-disk")
