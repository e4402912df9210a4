/* Inside vmm/disk/: what a backend (raw.c, qcow2.c) implements and the
 * shared aio engine (disk.c) it relies on.  Not for users of disk.h. */
#ifndef KITE_VMM_DISK_DISK_IMPL_H
#define KITE_VMM_DISK_DISK_IMPL_H

#include <liburing.h>
#include <pthread.h>

#include "vmm/disk/disk.h"

enum disk_op {
	DISK_OP_READ,
	DISK_OP_WRITE,
	DISK_OP_FLUSH,
	DISK_OP_DISCARD,
	DISK_OP_WRITE_ZEROES,
};

/* One request, from submission to callback. */
struct disk_request {
	struct disk *disk;
	enum disk_op op;
	uint64_t offset, len;         /* len: bytes (iov total for rw) */
	uint64_t file_offset;         /* io_uring: where in the image file */
	const struct iovec *iov;
	int iovcnt;
	bool may_unmap;
	disk_complete_fn cb;
	void *opaque;
	int result;
	struct disk_request *next;    /* pool queue / done list */
	/* Holding its blocks in the image's write guard (see disk.c):
	 * [held_start, held_end), a link in the guard's list. */
	bool held;
	uint64_t held_start, held_end;
	struct disk_request *held_prev, *held_next;
};

struct disk_backend_ops {
	const char *name;
	/* Run |req| to completion on the calling thread (a pool worker or a
	 * synchronous helper); return 0 or a negative errno. */
	int (*exec)(struct disk *disk, struct disk_request *req);
	/* Submit |req| asynchronously some other way (io_uring, through
	 * disk_uring_rw()); return -EOPNOTSUPP to let the engine use the
	 * pool.  Runs on the owner thread: must not wait for I/O.  NULL:
	 * always pool. */
	int (*submit)(struct disk *disk, struct disk_request *req);
	/* Final flush / metadata update before the fd closes. */
	int (*close)(struct disk *disk);
};

#define DISK_POOL_THREADS 4
#define DISK_URING_ENTRIES 256

struct disk {
	const struct disk_backend_ops *ops;
	void *priv;                 /* backend state (qcow2) */
	struct disk *parent;        /* a queue handle (disk_open_queue) */
	char *path;
	int fd;
	uint64_t size;
	bool read_only, is_blockdev;
	bool probed_raw;            /* raw by probing, not by request */
	/* The image's backing file (qcow2; owned by the backend), for
	 * reporting the chain; NULL when there is none. */
	struct disk *backing;
	uint32_t logical_block, physical_block, discard_granularity;
	/* The block the fd addresses with O_DIRECT (0: buffered).  Raw
	 * shows it to the guest as the logical block; qcow2 shows 512. */
	uint32_t dio_block;

	/* ---- aio engine ---- */
	int event_fd;
	unsigned inflight;          /* owner thread only */
	bool uring_ok, plugged;
	bool quiet;                 /* completion eventfd signals off */
	unsigned uring_queued;      /* SQEs prepared, not yet submitted */
	struct io_uring ring;
	uint64_t via_uring, via_pool; /* requests by path (owner thread) */
	/* Finished requests kept for reuse (owner thread only): a request
	 * costs no malloc/free on the hot path. */
	struct disk_request *spare;
	unsigned nr_spare;

	/* The image's write guard (used in the image's first handle only,
	 * shared by its queue handles): with O_DIRECT, the writes in flight
	 * and the blocks they hold (see disk.c). */
	pthread_mutex_t guard_lock;
	pthread_cond_t guard_cond;
	struct disk_request *guard_held;

	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	struct disk_request *pool_head, *pool_tail;
	struct disk_request *done;  /* finished by the pool (LIFO) */
	pthread_t pool_threads[DISK_POOL_THREADS];
	unsigned nr_pool_threads;
	bool pool_stop;
};

/* The block |disk|'s fd addresses with O_DIRECT, 0 when it is buffered
 * (the |dio_block| of disk_fd_rw and disk_dio_aligned). */
static inline uint32_t disk_dio_block(const struct disk *disk)
{
	return disk->dio_block;
}

/* disk.c: queue |req| (a read, write or flush) on the io_uring, the data
 * at req->file_offset of the image file; for a backend's submit op. */
int disk_uring_rw(struct disk *disk, struct disk_request *req);

/* disk.c: set up the engine for |disk| (after fd/size are known). */
int disk_engine_init(struct disk *disk, enum disk_aio aio);
void disk_engine_destroy(struct disk *disk);
/* Common open of the image file: flags, OFD lock, size, block sizes. */
int disk_file_open(struct disk *disk, const char *path,
		   const struct disk_options *opts, char *why, size_t why_len);

/* raw.c */
extern const struct disk_backend_ops disk_raw_ops;
/* File I/O shared by backends: all of [offset, offset + the iovec's
 * total) from or to |fd|, looping over short transfers; reads past EOF
 * give zeros.  |dio_block|: the fd is O_DIRECT and addresses blocks of
 * that size (0: buffered); I/O not aligned to it (offset, length, buffer
 * addresses and lengths) goes through an aligned bounce buffer, and a
 * write covering a block in part reads it first, so such a write must
 * not race other writes to the same blocks: guest writes are kept apart
 * by disk.c's write guard, qcow2's metadata writes by its lock. */
int disk_fd_rw(int fd, uint32_t dio_block, uint64_t offset,
	       const struct iovec *iov, int iovcnt, bool write);
/* Can |fd| with that |dio_block| take this I/O as it is (0: always)? */
bool disk_dio_aligned(uint32_t dio_block, uint64_t offset,
		      const struct iovec *iov, int iovcnt);
int disk_fd_punch_hole(struct disk *disk, uint64_t offset, uint64_t len);

/* qcow2.c: parse and validate the header of an already opened file. */
int qcow2_open(struct disk *disk, const struct disk_options *opts,
	       unsigned depth, char *why, size_t why_len);
/* Does |fd| start with the qcow2 magic? */
bool qcow2_probe(int fd);

/* disk.c: open with a backing-chain depth (qcow2 backing files). */
int disk_open_depth(const char *path, const struct disk_options *opts,
		    unsigned depth, struct disk **out, char *why,
		    size_t why_len);

/* disk.c: format the reason of a failure into |why| (if given); the
 * open paths of every format use it. */
void disk_set_why(char *why, size_t why_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* iovec helpers */
uint64_t iov_total(const struct iovec *iov, int iovcnt);
/* Describe bytes [skip, skip+len) of |iov| in |out| (at most |max|
 * entries); returns the entry count, or -E2BIG. */
int iov_slice(const struct iovec *iov, int iovcnt, uint64_t skip,
	      uint64_t len, struct iovec *out, int max);
void iov_memset(const struct iovec *iov, int iovcnt, uint64_t skip,
		int c, uint64_t len);
void iov_to_buf(const struct iovec *iov, int iovcnt, uint64_t skip,
		void *buf, uint64_t len);
void iov_from_buf(const struct iovec *iov, int iovcnt, uint64_t skip,
		  const void *buf, uint64_t len);

#endif
