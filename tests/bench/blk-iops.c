/* virtio-blk IOPS against the host's own limit.
 *
 * A host-side "guest driver" (the unit tests' virtio driver on fake guest
 * RAM) issues 4 KiB random reads and writes at queue depth 1 and 32
 * through the real device path: split virtqueue -> kick eventfd -> the
 * device's queue thread -> disk backend (io_uring) -> completion eventfd
 * -> used ring -> interrupt callback; the driver negotiates EVENT_IDX
 * and suppresses kicks and interrupts the way Linux's virtio_ring does,
 * so one kick and one interrupt can cover a batch.  It waits for its
 * interrupt the way KVM lets an idle vCPU wait (below).  In the same run
 * the same I/O pattern goes straight to the host file with io_uring at
 * the same queue depth: that is the limit.  Prints IOPS, the ratio, and
 * the process's CPU time (user + system, all threads) per request on
 * either path; asserts nothing.  Beside them, the device's queue thread
 * alone: its CPU time per request and the kernel's part of it, against
 * the host loop's kernel time per request.  Where the queue thread is
 * busy all the time, its CPU time per request is what bounds the
 * device's rate, and the kernel part (the same reads and writes the host
 * loop makes) shows how much of the host's time the device spends
 * before any of its own work.
 *
 * The host is shared and noisy (other jobs, a virtual disk), so device
 * and host runs alternate ROUNDS times; each pair gives a ratio, and the
 * medians of the IOPS and of the pairwise ratios are printed.
 *
 * usage: blk-iops [-f FILE] [-s SIZE_MIB] [-t SECONDS] [-r ROUNDS] [-d|-b]
 *                 [-R|-W] [-q QD] [-p] [-P US] [-H US] [-Q]
 *   -d  O_DIRECT only, -b buffered only (default: both)
 *   -R  reads only, -W writes only (default: both)
 *   -q  this queue depth only (1 to 32; default: 1 and 32)
 *   -p  device backend on the thread pool instead of io_uring
 *   -P  the device's busy-poll window (kite's poll=US; default kite's)
 *   -H  the driver's longest halt-polling window (default: this host's
 *       KVM halt_poll_ns; 0: the driver sleeps as soon as it has nothing
 *       to do)
 *   -Q  the device's image is a qcow2 copy of the file (qemu-img convert,
 *       64 KiB clusters, all allocated); the limit stays the raw file:
 *       what qcow2 costs */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/virtio_test_driver.h"
#include "virtio/blk.h"

#define BS 4096
#define MAX_QD 32

/* CPU seconds used by the whole process so far (every thread). */
static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CPU microseconds per request of the last run_device/run_host: the
 * whole process's, and the kernel's part of it (host) or the device's
 * queue thread's, all and in the kernel (device). */
static double last_cpu_us, last_sys_us, last_thread_us, last_thread_sys_us;

/* The process's system CPU seconds so far. */
static double sys_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The thread of this process named |name|, or 0. */
static pid_t thread_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	pid_t tid = 0;

	while (d && !tid && (e = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			 e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
		if (!strcmp(comm, name))
			tid = (pid_t)atoi(e->d_name);
	}
	if (d)
		closedir(d);
	return tid;
}

/* CPU seconds thread |tid| has used so far, and (|sys|) the kernel's
 * part: the total from schedstat (nanoseconds), split in the proportion
 * of stat's utime and stime (clock ticks). */
static double thread_cpu(pid_t tid, double *sys)
{
	char path[64];
	unsigned long long run_ns = 0;
	unsigned long utime = 0, stime = 0;
	FILE *f;

	*sys = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &run_ns) != 1)
		run_ns = 0;
	fclose(f);
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	f = fopen(path, "r");
	if (f) {
		char line[1024], *p = NULL;

		/* the fields after the ")" that ends comm: state is field 3,
		 * utime 14, stime 15 */
		if (fgets(line, sizeof(line), f))
			p = strrchr(line, ')');
		if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
					"%*u %*u %lu %lu", &utime, &stime) != 2)
			utime = stime = 0;
		fclose(f);
	}
	if (utime + stime)
		*sys = (double)run_ns / 1e9 * (double)stime /
		       (double)(utime + stime);
	return (double)run_ns / 1e9;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#define MAX_ROUNDS 15

static bool use_pool;
static unsigned only_qd;          /* 0: both depths */
static int patterns = 3;          /* bit 0: reads, bit 1: writes */
static unsigned poll_us = VIRTIO_BLK_DEFAULT_POLL_US;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- through the device ---- */

struct slot {
	uint64_t hdr, data, status;
};

static struct vtd drv;
static struct virtio_blk blk;
static struct vtd_vq vq;
static struct slot slots[256];

static void put_hdr(struct slot *s, uint32_t type, uint64_t sector)
{
	uint8_t *p = vtd_ptr(&drv, s->hdr, 16);

	memcpy(p, &type, 4);
	memset(p + 4, 0, 4);
	memcpy(p + 8, &sector, 8);
}

static int add_req(unsigned i, bool write, uint64_t nblocks)
{
	struct slot *s = &slots[i];
	struct vtd_sg sg[3] = {
		{ s->hdr, 16, false },
		{ s->data, BS, !write },
		{ s->status, 1, true },
	};

	put_hdr(s, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
		(rnd() % nblocks) * (BS / 512));
	return vtd_vq_add(&vq, sg, 3, false);
}

/* The driver stands for a guest vCPU, which halts when it has nothing to
 * do and is woken by the device's interrupt.  KVM does not put a halted
 * vCPU to sleep at once: it polls for a window first ("halt polling"),
 * adapted per vCPU by the kvm module's parameters halt_poll_ns (the
 * longest window), halt_poll_ns_grow and halt_poll_ns_grow_start (a
 * halt that outlasted the window but not the maximum multiplies the
 * window, starting from grow_start) and halt_poll_ns_shrink (a halt
 * longer than the maximum divides it; 0 resets it).  The driver waits
 * the same way, with this host's values from /sys/module/kvm/parameters
 * (or 200000, 2, 10000, 2), so the figures show what a guest on this
 * host's KVM gets -- and pays: the polling's CPU time counts in dev
 * CPU/IO.  -H sets the maximum; -H 0 makes the driver sleep at once. */
static struct {
	double max, grow_start;        /* seconds */
	unsigned grow, shrink;
	double window;                 /* now */
} halt;

static void halt_poll_from_kvm(void)
{
	static const char *const names[] = {
		"halt_poll_ns", "halt_poll_ns_grow_start", "halt_poll_ns_grow",
		"halt_poll_ns_shrink"
	};
	unsigned long v[] = { 200000, 10000, 2, 2 };

	for (unsigned i = 0; i < 4; i++) {
		char path[128];
		FILE *f;

		snprintf(path, sizeof(path), "/sys/module/kvm/parameters/%s",
			 names[i]);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fscanf(f, "%lu", &v[i]) != 1)
			fprintf(stderr, "blk-iops: %s: not a number\n", path);
		fclose(f);
	}
	halt.max = (double)v[0] * 1e-9;
	halt.grow_start = (double)v[1] * 1e-9;
	halt.grow = (unsigned)v[2];
	halt.shrink = (unsigned)v[3];
}

/* KVM's adaptation after a halt of |waited| seconds. */
static void halt_poll_adapt(double waited)
{
	if (waited <= halt.window)
		return;
	if (halt.window && waited > halt.max) {
		halt.window = halt.shrink ? halt.window / halt.shrink : 0;
	} else if (halt.window < halt.max && waited < halt.max && halt.grow) {
		halt.window *= halt.grow;
		if (halt.window < halt.grow_start)
			halt.window = halt.grow_start;
		if (halt.window > halt.max)
			halt.window = halt.max;
	}
}

/* Wait until the interrupt count passes |seen|, halt-polling first;
 * false after a 10 ms timeout. */
static bool wait_for_irq(unsigned seen)
{
	double t0 = now();
	bool ok = true;

	while (now() - t0 < halt.window) {
		if (__atomic_load_n(&drv.queue_irqs[0], __ATOMIC_ACQUIRE) !=
		    seen)
			return true; /* woken while polling: window unchanged */
		__builtin_ia32_pause();
	}
	pthread_mutex_lock(&drv.lock);
	while (drv.queue_irqs[0] == seen) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		/* (slow disks: O_DIRECT I/O here sometimes takes over 10 ms,
		 * on the host path too) */
		if (pthread_cond_timedwait(&drv.cond, &drv.lock, &ts)) {
			ok = false;
			break;
		}
	}
	pthread_mutex_unlock(&drv.lock);
	halt_poll_adapt(now() - t0);
	return ok;
}

static double run_device(bool write, unsigned qd, uint64_t nblocks,
			 double secs)
{
	unsigned inflight = 0, irqs_seen;
	uint64_t done = 0, errors = 0, timeouts = 0;
	double t0, t, c0, tc0, ts0, tc1, ts1;
	pid_t tid;
	int id;

	/* Fresh queue for each run.  The driver behaves like Linux's:
	 * EVENT_IDX, kicks only when the device asks for them. */
	vtd_vq_destroy(&vq);
	if (vtd_vq_init(&vq, &drv, 256, false, true) ||
	    vtd_negotiate(&drv, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
				       VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
				       VIRTIO_BIT(VIRTIO_BLK_F_FLUSH)) ||
	    vtd_setup_queue(&drv, 0, &vq) || vtd_driver_ok(&drv)) {
		fprintf(stderr, "blk-iops: device setup failed\n");
		exit(1);
	}
	tid = thread_named(blk.vdev.name);
	t0 = now();
	c0 = cpu_now();
	tc0 = tid ? thread_cpu(tid, &ts0) : 0;
	halt.window = 0;
	irqs_seen = __atomic_load_n(&drv.queue_irqs[0], __ATOMIC_ACQUIRE);
	for (;;) {
		uint32_t uid, len;
		bool added = false;

		while (vtd_vq_get_used(&vq, &uid, &len) == 1) {
			inflight--;
			done++;
			if (*(uint8_t *)vtd_ptr(&drv, slots[uid].status, 1))
				errors++;
		}
		t = now();
		if (t - t0 >= secs) {
			if (!inflight)
				break;
		} else {
			while (inflight < qd) {
				/* Split ring: the next head is the driver's
				 * free-list head; its slot holds the buffers. */
				id = add_req(vq.free_head, write, nblocks);
				if (id < 0)
					break;
				inflight++;
				added = true;
			}
		}
		if (added) {
			if (vtd_vq_should_kick(&vq))
				virtio_queue_kick(&blk.vdev, 0);
			continue;
		}
		/* Like virtqueue_enable_cb_delayed(): used_event was stored
		 * while collecting; a full barrier, then look once more, or
		 * a completion pushed meanwhile would send no interrupt. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (vtd_split_used_idx(&vq) != vq.last_used)
			continue;
		/* Wait for the "interrupt" (with a timeout as a safety net:
		 * a lost notification would show as a low figure, not a
		 * hang). */
		if (!wait_for_irq(irqs_seen))
			timeouts++;
		irqs_seen = __atomic_load_n(&drv.queue_irqs[0], __ATOMIC_ACQUIRE);
	}
	if (errors)
		fprintf(stderr, "blk-iops: %llu requests failed\n",
			(unsigned long long)errors);
	if (getenv("BLK_IOPS_DEBUG"))
		fprintf(stderr, "debug: done %llu syncs %llu irqs %u "
			"waits timed out %llu\n",
			(unsigned long long)done, (unsigned long long)blk.syncs,
			drv.queue_irqs[0], (unsigned long long)timeouts);
	if (getenv("BLK_IOPS_DEBUG")) {
		const struct virtio_loop *l = blk.vdev.queue_loops
						      ? &blk.vdev.queue_loops[0]
						      : &blk.vdev.loop;

		fprintf(stderr, "debug: poll windows %llu ns (driver), "
			"%llu ns (disk), grown %llu, shrunk %llu times\n",
			(unsigned long long)l->poll_ns[VIRTIO_WAIT_DRIVER],
			(unsigned long long)l->poll_ns[VIRTIO_WAIT_BACKEND],
			(unsigned long long)l->poll_grows,
			(unsigned long long)l->poll_shrinks);
	}
	last_cpu_us = done ? (cpu_now() - c0) * 1e6 / (double)done : 0;
	tc1 = tid ? thread_cpu(tid, &ts1) : 0;
	last_thread_us = done ? (tc1 - tc0) * 1e6 / (double)done : 0;
	last_thread_sys_us = done ? (ts1 - ts0) * 1e6 / (double)done : 0;
	return (double)done / (now() - t0);
}

/* ---- straight to the host file ---- */

static double run_host(int fd, bool write, unsigned qd, uint64_t nblocks,
		       double secs, void *bufs)
{
	struct io_uring ring;
	unsigned inflight = 0;
	uint64_t done = 0;
	double t0, c0, s0;

	if (io_uring_queue_init(64, &ring, 0)) {
		fprintf(stderr, "blk-iops: io_uring unavailable\n");
		exit(1);
	}
	t0 = now();
	c0 = cpu_now();
	s0 = sys_now();
	for (;;) {
		struct io_uring_cqe *cqe;
		bool more = now() - t0 < secs;

		while (more && inflight < qd) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			/* any free buffer will do */
			char *buf = (char *)bufs + (size_t)inflight * BS;
			uint64_t off = (rnd() % nblocks) * BS;

			/* The plain ops, as kite's backend (and fio) use
			 * for one segment. */
			if (write)
				io_uring_prep_write(sqe, fd, buf, BS, off);
			else
				io_uring_prep_read(sqe, fd, buf, BS, off);
			inflight++;
		}
		if (!inflight)
			break;
		io_uring_submit_and_wait(&ring, 1);
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			io_uring_cqe_seen(&ring, cqe);
			inflight--;
			done++;
		}
	}
	last_cpu_us = done ? (cpu_now() - c0) * 1e6 / (double)done : 0;
	last_sys_us = done ? (sys_now() - s0) * 1e6 / (double)done : 0;
	io_uring_queue_exit(&ring);
	return (double)done / (now() - t0);
}

static void bench_mode(const char *path, const char *qcow2, bool direct,
		       uint64_t size, double secs, unsigned rounds)
{
	struct disk_options o = { .direct = direct,
				  .format = qcow2 ? DISK_FORMAT_QCOW2
						  : DISK_FORMAT_RAW,
				  .aio = use_pool ? DISK_AIO_THREADS : DISK_AIO_AUTO };
	struct disk *disk;
	char why[200];
	uint64_t nblocks = size / BS;
	void *hbufs;
	int fd, err;

	err = disk_open(qcow2 ? qcow2 : path, &o, &disk, why, sizeof(why));
	if (err) {
		printf("  %s: cannot open (%s), skipped\n",
		       direct ? "O_DIRECT" : "buffered", why);
		return;
	}
	struct virtio_blk_options bo = { .poll_us = poll_us };

	if (virtio_blk_init(&blk, "blk0", &drv.mem, disk, &bo)) {
		fprintf(stderr, "blk-iops: virtio_blk_init failed\n");
		exit(1);
	}
	vtd_attach(&drv, &blk.vdev);
	virtio_device_start(&blk.vdev);
	for (unsigned i = 0; i < 256; i++) {
		slots[i].hdr = vtd_alloc(&drv, 16, 16);
		slots[i].data = vtd_alloc(&drv, BS, BS);
		slots[i].status = vtd_alloc(&drv, 1, 1);
	}
	printf("  %s%s, backend %s, poll=%u; the driver halt-polls up to "
	       "%.0f us\n", direct ? "O_DIRECT" : "buffered (page cache)",
	       qcow2 ? ", the device on a qcow2 copy" : "",
	       disk_uses_io_uring(disk) ? "io_uring" : "thread pool", poll_us,
	       halt.max * 1e6);
	printf("  %-10s %3s %12s %12s %7s %11s %11s %11s %11s %11s\n",
	       "pattern", "qd", "device IOPS", "host IOPS", "ratio",
	       "dev CPU/IO", "host CPU/IO", "thread/IO", "thr kernel",
	       "host kernel");
	for (int w = 0; w < 2; w++) {
		static const unsigned qds[] = { 1, 32 };

		if (!(patterns & (1 << w)))
			continue;
		for (int q = 0; q < 2; q++) {
			double dev[MAX_ROUNDS], host[MAX_ROUNDS],
				ratio[MAX_ROUNDS], dcpu[MAX_ROUNDS],
				hcpu[MAX_ROUNDS], dthr[MAX_ROUNDS],
				dthr_sys[MAX_ROUNDS], hsys[MAX_ROUNDS];
			unsigned qd = only_qd ? only_qd : qds[q];

			if (only_qd && q)
				break;

			/* The host limit with its own fd, opened as kite's
			 * disk layer opens images (O_NOATIME), but without
			 * the virtio path. */
			fd = open(path, O_RDWR | O_NOATIME |
						(direct ? O_DIRECT : 0));
			if (fd < 0 || posix_memalign(&hbufs, BS, BS * MAX_QD)) {
				perror("blk-iops: host open");
				exit(1);
			}
			for (unsigned r = 0; r < rounds; r++) {
				dev[r] = run_device(w, qd, nblocks, secs);
				dcpu[r] = last_cpu_us;
				dthr[r] = last_thread_us;
				dthr_sys[r] = last_thread_sys_us;
				host[r] = run_host(fd, w, qd, nblocks, secs,
						   hbufs);
				hcpu[r] = last_cpu_us;
				hsys[r] = last_sys_us;
				ratio[r] = host[r] > 0 ? dev[r] / host[r] : 0;
			}
			printf("  %-10s %3u %12.0f %12.0f %6.1f%% %8.2f us "
			       "%8.2f us %8.2f us %8.2f us %8.2f us\n",
			       w ? "randwrite" : "randread", qd,
			       median(dev, rounds), median(host, rounds),
			       100.0 * median(ratio, rounds),
			       median(dcpu, rounds), median(hcpu, rounds),
			       median(dthr, rounds), median(dthr_sys, rounds),
			       median(hsys, rounds));
			fflush(stdout);
			free(hbufs);
			close(fd);
		}
	}
	virtio_blk_destroy(&blk);
	disk_close(disk);
	vtd_vq_destroy(&vq);
	memset(&vq, 0, sizeof(vq));
	drv.next_free = 0x10000;
}

/* -Q: |qpath| (a mkstemps template) becomes a qcow2 copy of |path|. */
static int make_qcow2_copy(const char *path, char *qpath)
{
	char *argv[] = { "qemu-img", "convert", "-q", "-f", "raw", "-O",
			 "qcow2", (char *)path, qpath, NULL };
	int fd = mkstemps(qpath, 6), status;
	pid_t pid;

	if (fd < 0) {
		perror("blk-iops: qcow2 copy");
		return -1;
	}
	close(fd);
	if (posix_spawnp(&pid, "qemu-img", NULL, NULL, argv, environ) ||
	    waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		fprintf(stderr, "blk-iops: qemu-img convert to %s failed "
				"(qemu-utils installed?)\n", qpath);
		unlink(qpath);
		return -1;
	}
	/* Written back, as the raw file is: O_DIRECT reads of dirty pages
	 * wait for their writeback first. */
	fd = open(qpath, O_RDONLY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	char tmpl[] = "/var/tmp/kite-blk-iops-XXXXXX";
	uint64_t size = 256ull << 20;
	double secs = 0.5;
	unsigned rounds = 5;
	int opt, modes = 3, fd;
	const char *halt_max_us = NULL;
	char qtmpl[] = "/var/tmp/kite-blk-iops-XXXXXX.qcow2";
	bool qcow2 = false;

	while ((opt = getopt(argc, argv, "f:s:t:r:dbRWq:pP:H:Q")) != -1) {
		switch (opt) {
		case 'f': path = optarg; break;
		case 's': size = strtoull(optarg, NULL, 0) << 20; break;
		case 't': secs = strtod(optarg, NULL); break;
		case 'r': rounds = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'd': modes = 2; break;
		case 'b': modes = 1; break;
		case 'R': patterns = 1; break;
		case 'W': patterns = 2; break;
		case 'q':
			only_qd = (unsigned)strtoul(optarg, NULL, 0);
			if (only_qd < 1 || only_qd > MAX_QD) {
				fprintf(stderr, "blk-iops: -q %s: not a queue "
						"depth from 1 to %d\n",
					optarg, MAX_QD);
				return 2;
			}
			break;
		case 'p': use_pool = true; break;
		case 'P': poll_us = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'H': halt_max_us = optarg; break;
		case 'Q': qcow2 = true; break;
		default:
			fprintf(stderr, "usage: %s [-f FILE] [-s MIB] [-t SECONDS] "
					"[-r ROUNDS] [-d|-b] [-R|-W] [-q QD] [-p] "
					"[-P US] [-H US] [-Q]\n",
				argv[0]);
			return 2;
		}
	}
	halt_poll_from_kvm();
	if (halt_max_us)
		halt.max = strtod(halt_max_us, NULL) * 1e-6;
	if (!path) {
		/* A fully written scratch file (reads hit real blocks). */
		char *buf = malloc(1 << 20);

		fd = mkstemp(tmpl);
		if (fd < 0 || !buf) {
			perror("blk-iops: scratch file");
			return 1;
		}
		memset(buf, 0x5a, 1 << 20);
		for (uint64_t o = 0; o < size; o += 1 << 20)
			if (pwrite(fd, buf, 1 << 20, (off_t)o) != 1 << 20) {
				perror("blk-iops: write");
				return 1;
			}
		fsync(fd);
		close(fd);
		free(buf);
		path = tmpl;
	}
	if (vtd_init(&drv)) {
		fprintf(stderr, "blk-iops: no memory for the fake guest\n");
		return 1;
	}
	if (rounds < 1)
		rounds = 1;
	if (rounds > MAX_ROUNDS)
		rounds = MAX_ROUNDS;
	printf("blk-iops: 4 KiB random I/O on %s (%llu MiB), medians of %u "
	       "alternating %.1f s device/host runs\n", path,
	       (unsigned long long)(size >> 20), rounds, secs);
	if (qcow2 && make_qcow2_copy(path, qtmpl))
		return 1;
	if (modes & 1)
		bench_mode(path, qcow2 ? qtmpl : NULL, false, size, secs,
			   rounds);
	if (modes & 2)
		bench_mode(path, qcow2 ? qtmpl : NULL, true, size, secs,
			   rounds);
	vtd_destroy(&drv);
	if (qcow2)
		unlink(qtmpl);
	if (path == tmpl)
		unlink(tmpl);
	return 0;
}
