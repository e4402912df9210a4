/* virtio block device (virtio 1.2 §5.2, device type 2) over a struct disk
 * (vmm/disk/disk.h: raw or qcow2, asynchronous I/O).
 *
 * Features offered: SIZE_MAX, SEG_MAX, BLK_SIZE, TOPOLOGY, FLUSH,
 * CONFIG_WCE, DISCARD, WRITE_ZEROES, MQ, and RO for a read-only disk;
 * GET_ID answers with the serial number.
 *
 * Requests are popped on the queue's thread, submitted to the disk
 * without waiting, and completed from the disk's completion eventfd
 * (watched by the same thread).  With one queue that is the device's
 * queue thread.  With MQ (num_queues > 1) every queue has a thread of
 * its own (virtio_device_use_queue_threads) and its own disk handle
 * (disk_open_queue: an io_uring ring and completion eventfd per queue),
 * and all per-request state (free list, in-flight count, pending
 * notification) is per queue, so queues never share a lock on the data
 * path.
 *
 * Every request is validated (header size, directions, segment count,
 * sector range, status byte); a bad one completes with
 * VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP, never touches the disk
 * outside its size, and never breaks the device. */
#ifndef KITE_VIRTIO_BLK_H
#define KITE_VIRTIO_BLK_H

#include <sys/uio.h>

#include "virtio/virtio.h"
#include "vmm/disk/disk.h"

/* §5.2.3 feature bits. */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
#define VIRTIO_BLK_F_LIFETIME     15
#define VIRTIO_BLK_F_SECURE_ERASE 16
#define VIRTIO_BLK_F_ZONED        17

/* §5.2.6 request types and status values. */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_FLUSH_OUT    5 /* legacy synonym */
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_GET_LIFETIME 10
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_T_SECURE_ERASE 14

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WZ_F_UNMAP 1u

#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_SECTOR 512

/* §5.2.4 config offsets (little-endian fields). */
#define VIRTIO_BLK_CFG_CAPACITY        0
#define VIRTIO_BLK_CFG_SIZE_MAX        8
#define VIRTIO_BLK_CFG_SEG_MAX         12
#define VIRTIO_BLK_CFG_GEOMETRY        16
#define VIRTIO_BLK_CFG_BLK_SIZE        20
#define VIRTIO_BLK_CFG_PHYS_BLOCK_EXP  24
#define VIRTIO_BLK_CFG_ALIGN_OFFSET    25
#define VIRTIO_BLK_CFG_MIN_IO_SIZE     26
#define VIRTIO_BLK_CFG_OPT_IO_SIZE     28
#define VIRTIO_BLK_CFG_WRITEBACK       32
#define VIRTIO_BLK_CFG_UNUSED0         33
#define VIRTIO_BLK_CFG_NUM_QUEUES      34
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG     40
#define VIRTIO_BLK_CFG_DISCARD_ALIGNMENT   44
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS      48
#define VIRTIO_BLK_CFG_MAX_WZ_SEG          52
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP        56
#define VIRTIO_BLK_CFG_UNUSED1             57
#define VIRTIO_BLK_CONFIG_SIZE             72 /* through secure erase */

/* Kite's limits, as offered in the config. */
#define VIRTIO_BLK_SEG_MAX         254
#define VIRTIO_BLK_SIZE_MAX        (4u << 20)
#define VIRTIO_BLK_MAX_DISCARD_SEG 16
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per segment */
#define VIRTIO_BLK_QUEUE_SIZE      256
#define VIRTIO_BLK_MAX_QUEUES      16
/* Longest busy-poll window of kite's disks (poll=US), see
 * virtio_blk_options.  The window adapts (virtio_device_set_polling), so
 * it only spins for a driver that sends its next requests within this
 * long of the last completion: page-cache reads at queue depth 32 gained
 * 8-10 points of the host's rate in `make bench`, O_DIRECT neither gained
 * nor lost beyond the noise, and a guest slower than that (any on PVM)
 * shrinks it to nothing. */
#define VIRTIO_BLK_DEFAULT_POLL_US 32
#define VIRTIO_BLK_MAX_POLL_US     1000000

struct virtio_blk_options {
	const char *serial;   /* GET_ID string, at most 20 bytes used; NULL: "" */
	unsigned num_queues;  /* 0 or 1: one queue; up to VIRTIO_BLK_MAX_QUEUES */
	bool writethrough;    /* start in writethrough mode (cache=writethrough) */
	bool ignore_flush;    /* cache=unsafe: flushes succeed without syncing */
	unsigned poll_us;     /* longest busy-poll window
			       * (virtio_device_set_polling): after the last
			       * request or completion a queue's thread keeps
			       * looking for more up to this many
			       * microseconds before it sleeps, guest
			       * notifications off; 0: sleep at once */
};

struct virtio_blk_req;
struct virtio_blk;

/* What one virtqueue's thread owns. */
struct virtio_blk_queue {
	struct virtio_blk *blk;
	unsigned idx;
	struct disk *disk;          /* blk->disk, or a queue handle on it */
	struct virtio_blk_req *free_reqs;
	unsigned inflight;          /* requests submitted, not yet used */
	bool notify_pending;
};

struct virtio_blk {
	struct virtio_device vdev;  /* first: the core hands us &vdev */
	struct disk *disk;          /* owned by the caller */
	char serial[VIRTIO_BLK_ID_BYTES];
	unsigned num_queues;
	bool read_only, default_writeback, ignore_flush;
	uint8_t writeback;          /* config field: 1 writeback, 0 writethrough */
	bool resetting;             /* completions are being dropped */
	struct virtio_blk_queue queues[VIRTIO_BLK_MAX_QUEUES];
	/* statistics (atomic: queues count from their own threads) */
	uint64_t reads, writes, flushes, errors;
	uint64_t syncs;              /* backend flushes (fdatasync) issued */
};

/* Initialise the device model on an open disk (no thread yet: attach a
 * transport, then virtio_device_start(&blk->vdev)).  The disk stays the
 * caller's; close it after virtio_blk_destroy(). */
int virtio_blk_init(struct virtio_blk *blk, const char *name,
		    const struct guest_memory *mem, struct disk *disk,
		    const struct virtio_blk_options *opts);
/* Stop the device thread, wait for in-flight I/O, free requests. */
void virtio_blk_destroy(struct virtio_blk *blk);

#endif
