/* Block backends: one interface over raw files, block devices and qcow2
 * images, with asynchronous I/O.
 *
 * A struct disk is an open image.  I/O is submitted with the
 * disk_submit_*() calls, which return at once; each request that was
 * accepted (return 0) later completes through its callback.  Callbacks
 * run only inside disk_process_completions() (or disk_drain()), on the
 * thread that calls it -- typically a virtio device's queue thread, which
 * watches disk_completion_fd() in its epoll set.  So a device needs no
 * locking between submission and completion.
 *
 * Threading: one thread at a time drives a disk (submits and processes
 * completions); disk_open_queue() gives further threads their own
 * handle.  Internally raw images use io_uring (liburing) when the kernel
 * allows it and a small thread pool otherwise (io_uring_queue_init
 * failing with ENOSYS/EPERM, e.g. under a seccomp policy or with
 * kernel.io_uring_disabled); qcow2 images send reads and in-place writes
 * of allocated clusters that the cached L2 tables place to io_uring too,
 * and run everything else on the pool (metadata lookups and allocation
 * are synchronous there, data I/O runs concurrently when no allocation
 * is needed).
 *
 * Offsets and lengths are bytes.  Callers (virtio-blk) validate them
 * against disk_size(); the backends check again and fail with -EINVAL
 * rather than touching anything past the end.
 *
 * Image files are locked with OFD locks (F_OFD_SETLK): a write lock for
 * a writable disk, a read lock for a read-only one and for backing
 * files, so two VMs cannot write one image (nor one write an image that
 * another reads).  A read-only open also refuses an image that QEMU
 * holds with write permission (its read lock on byte 101, which a
 * whole-file read lock does not conflict with) unless |shared|.
 *
 * Only regular files and block devices are opened (a FIFO, socket,
 * character device or directory is refused by type before open(), so
 * none can hang kite); backing files, which an untrusted image names,
 * only regular files outside the kernel's pseudo file systems (procfs,
 * sysfs, ...).
 *
 * Errors at open come back as a negative errno plus a sentence in |why|
 * ("qcow2 header: unsupported version 4"); the caller prefixes the path
 * once. */
#ifndef KITE_VMM_DISK_DISK_H
#define KITE_VMM_DISK_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum disk_format {
	DISK_FORMAT_AUTO,  /* qcow2 when the magic says so, else raw */
	DISK_FORMAT_RAW,
	DISK_FORMAT_QCOW2,
};

enum disk_aio {
	DISK_AIO_AUTO,     /* io_uring, else the thread pool */
	DISK_AIO_IO_URING, /* io_uring or fail */
	DISK_AIO_THREADS,  /* the thread pool (tests, odd hosts) */
};

struct disk_options {
	enum disk_format format;
	enum disk_aio aio;
	bool read_only;
	bool direct;       /* O_DIRECT: bypass the host page cache */
	bool no_lock;      /* skip the OFD lock (tests of the lock itself) */
	/* With |direct|: address at least blocks of this size (a power of
	 * two, 0: what the file system needs).  Tests: a 4 KiB-sector disk
	 * on a 512-byte one. */
	uint32_t min_dio_block;
	/* backing=off: refuse an image that names a backing file (an
	 * untrusted image then reaches no other host file). */
	bool no_backing;
	/* Set by qcow2 for each file of a backing chain: it must be a
	 * regular file (no device, FIFO or socket) outside procfs/sysfs. */
	bool backing_file;
	/* With |read_only| (-d IMG,ro,shared): open an image that another
	 * program holds open for writing (QEMU's lock on byte 101), with a
	 * warning, instead of refusing it. */
	bool shared;
};

/* Completion callback: |result| is 0 or a negative errno. */
typedef void (*disk_complete_fn)(void *opaque, int result);

struct disk;

/* Open |path|.  On failure returns a negative errno and, when |why| is
 * not NULL, a reason without the path in it. */
int disk_open(const char *path, const struct disk_options *opts,
	      struct disk **out, char *why, size_t why_len);
/* Wait for in-flight requests (running their callbacks), flush, and for a
 * writable qcow2 image clear the dirty bit; then close.  (A queue handle
 * from disk_open_queue() is only drained and freed.)  Returns 0 or the
 * first error of that final flush. */
int disk_close(struct disk *disk);

/* Another handle on the open image |disk|, with its own aio engine
 * (io_uring ring, completion eventfd, thread pool), so that a second
 * thread can drive it (one per virtqueue of a multiqueue device) while
 * the first drives |disk|.  Both see the same image: a flush on either
 * makes every completed write durable.  Close it with disk_close()
 * before |disk|; that only drains it (no flush, the image stays open). */
int disk_open_queue(struct disk *disk, struct disk **out);

/* Guest-visible size in bytes. */
uint64_t disk_size(const struct disk *disk);
bool disk_read_only(const struct disk *disk);
const char *disk_format_name(const struct disk *disk); /* "raw", "qcow2" */
/* The backend's preferred block sizes: |logical| is the smallest unit it
 * can address (512, or the device's logical block with O_DIRECT),
 * |physical| the unit below which writes cost a read-modify-write. */
uint32_t disk_logical_block_size(const struct disk *disk);
uint32_t disk_physical_block_size(const struct disk *disk);
/* Granularity at which discard can really free space (0: it cannot). */
uint32_t disk_discard_granularity(const struct disk *disk);
/* True when the aio engine is io_uring (false: thread pool). */
bool disk_uses_io_uring(const struct disk *disk);

/* ---- asynchronous requests -------------------------------------------
 * The iovec array and the memory it points to must stay valid until the
 * callback runs.  Return 0 (the callback will run) or a negative errno
 * (it will not). */
int disk_submit_readv(struct disk *disk, uint64_t offset,
		      const struct iovec *iov, int iovcnt,
		      disk_complete_fn cb, void *opaque);
int disk_submit_writev(struct disk *disk, uint64_t offset,
		       const struct iovec *iov, int iovcnt,
		       disk_complete_fn cb, void *opaque);
/* Make every write that completed before this call durable (fdatasync). */
int disk_submit_flush(struct disk *disk, disk_complete_fn cb, void *opaque);
/* Deallocate a range (advisory: the backend may do nothing; reads of it
 * afterwards return old data or zeros). */
int disk_submit_discard(struct disk *disk, uint64_t offset, uint64_t len,
			disk_complete_fn cb, void *opaque);
/* Make a range read as zeros; |may_unmap| lets the backend deallocate. */
int disk_submit_write_zeroes(struct disk *disk, uint64_t offset,
			     uint64_t len, bool may_unmap,
			     disk_complete_fn cb, void *opaque);

/* Batch submissions: between plug and unplug, io_uring requests are only
 * queued; unplug submits them with one system call. */
void disk_plug(struct disk *disk);
void disk_unplug(struct disk *disk);

/* An eventfd that becomes readable when completions are pending. */
int disk_completion_fd(const struct disk *disk);
/* Are completions waiting for disk_process_completions()?  A cheap probe
 * (no system call) for a busy-polling caller; may miss a completion the
 * eventfd will still report. */
bool disk_completions_ready(struct disk *disk);
/* Stop (quiet) or restart signalling the completion fd, for a caller
 * that polls disk_completions_ready() meanwhile; after a restart, look
 * once more.  io_uring only (the thread pool always signals). */
void disk_quiet_completions(struct disk *disk, bool quiet);
/* Run the callbacks of every finished request; returns how many. */
unsigned disk_process_completions(struct disk *disk);
/* Wait until no request is in flight (running callbacks). */
void disk_drain(struct disk *disk);
/* Requests submitted and not yet completed. */
unsigned disk_inflight(const struct disk *disk);
/* Requests submitted so far through io_uring and through the thread
 * pool (for tests and benchmarks). */
void disk_request_counts(const struct disk *disk, uint64_t *uring,
			 uint64_t *pool);

/* ---- synchronous helpers (tests, tools, backing-file reads) -------------
 * Run one request to completion on the calling thread, bypassing the
 * aio engine.  Not to be mixed with in-flight asynchronous requests that
 * overlap the same range (on an O_DIRECT disk a write waits for such
 * writes to finish, which the caller's own would never do). */
int disk_preadv(struct disk *disk, uint64_t offset, const struct iovec *iov,
		int iovcnt);
int disk_pwritev(struct disk *disk, uint64_t offset, const struct iovec *iov,
		 int iovcnt);
int disk_pread(struct disk *disk, uint64_t offset, void *buf, size_t len);
int disk_pwrite(struct disk *disk, uint64_t offset, const void *buf,
		size_t len);
int disk_flush(struct disk *disk);
int disk_discard(struct disk *disk, uint64_t offset, uint64_t len);
int disk_write_zeroes(struct disk *disk, uint64_t offset, uint64_t len,
		      bool may_unmap);

#endif
