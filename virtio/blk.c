/* virtio block device (virtio 1.2 §5.2).  See blk.h. */
#include "virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define HDR_SIZE 16 /* type, reserved, sector */
#define SEG_SIZE 16 /* struct virtio_blk_discard_write_zeroes */

#define STAT_INC(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)

/* One request in flight: the popped chain plus what completion needs. */
struct virtio_blk_req {
	struct virtio_blk *blk;
	struct virtio_blk_queue *q;    /* the queue it came from */
	struct virtio_blk_req *next;   /* free list */
	uint8_t *status;               /* host pointer to the status byte */
	uint32_t written;              /* data bytes written for the driver */
	unsigned pending;              /* disk requests not yet completed */
	int error;                     /* first disk error */
	bool flush_after;              /* writethrough: sync before done */
	int iovcnt;
	struct iovec iov[VIRTIO_BLK_SEG_MAX];
	struct virtq_elem elem;        /* last: large */
};

static struct virtio_blk *to_blk(struct virtio_device *dev)
{
	return (struct virtio_blk *)((char *)dev -
				     offsetof(struct virtio_blk, vdev));
}

/* Requests are kept for reuse, never trimmed: a queue holds at most one
 * more than the most it had in flight at once, and that is at most the
 * queue size whatever the driver does (virtq_pop refuses a head already
 * in flight, virtq.h), so the memory per queue is bounded. */
static struct virtio_blk_req *req_get(struct virtio_blk_queue *bq)
{
	struct virtio_blk_req *req = bq->free_reqs;

	if (req) {
		bq->free_reqs = req->next;
	} else {
		req = malloc(sizeof(*req));
		if (!req)
			return NULL;
	}
	req->blk = bq->blk;
	req->q = bq;
	req->next = NULL;
	req->status = NULL;
	req->written = 0;
	req->pending = 0;
	req->error = 0;
	req->flush_after = false;
	req->iovcnt = 0;
	return req;
}

static void req_put(struct virtio_blk_queue *bq, struct virtio_blk_req *req)
{
	req->next = bq->free_reqs;
	bq->free_reqs = req;
}

/* One used buffer notification per batch of completions. */
static void send_notification(struct virtio_blk_queue *bq)
{
	if (bq->notify_pending) {
		bq->notify_pending = false;
		virtio_queue_notify_driver(&bq->blk->vdev, bq->idx);
	}
}

/* Return the chain with |status| in its status byte. */
static void req_finish(struct virtio_blk_req *req, uint8_t status)
{
	struct virtio_blk *blk = req->blk;
	struct virtio_blk_queue *bq = req->q;
	uint32_t used = 0;

	if (req->status) {
		*req->status = status;
		/* §2.7.8: used length = bytes written to the writable part. */
		used = (status == VIRTIO_BLK_S_OK ? req->written : 0) + 1;
	}
	if (status != VIRTIO_BLK_S_OK)
		STAT_INC(blk->errors);
	virtio_queue_push(&blk->vdev, bq->idx, &req->elem, used);
	bq->notify_pending = true;
	bq->inflight--;
	req_put(bq, req);
}

static void req_complete(void *opaque, int result)
{
	struct virtio_blk_req *req = opaque;
	struct virtio_blk *blk = req->blk;

	if (result < 0 && !req->error)
		req->error = result;
	if (--req->pending > 0)
		return;
	if (blk->resetting) {
		/* §2.4: after a reset the old queues are not touched. */
		req->q->inflight--;
		req_put(req->q, req);
		return;
	}
	if (!req->error && req->flush_after) {
		/* Writethrough (§5.2.6.2 cases 1 and 2): the write is only
		 * complete once it is stable. */
		req->flush_after = false;
		req->pending = 1;
		STAT_INC(blk->syncs);
		if (disk_submit_flush(req->q->disk, req_complete, req) == 0)
			return;
		req->pending = 0;
		req->error = -EIO;
	}
	req_finish(req, req->error ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

/* The status byte is the last byte of the device-writable part. */
static uint8_t *find_status(const struct virtq_elem *elem)
{
	for (unsigned i = elem->nbufs; i-- > elem->nreadable;)
		if (elem->bufs[i].len)
			return (uint8_t *)elem->bufs[i].addr +
			       elem->bufs[i].len - 1;
	return NULL;
}

/* iovecs for [skip, skip+len) of the readable (or writable) part. */
static int build_iov(struct virtio_blk_req *req, bool writable, uint64_t skip,
		     uint64_t len)
{
	const struct virtq_elem *e = &req->elem;
	unsigned first = writable ? e->nreadable : 0;
	unsigned end = writable ? e->nbufs : e->nreadable;
	int n = 0;

	for (unsigned i = first; i < end && len > 0; i++) {
		uint64_t l = e->bufs[i].len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		if (n >= VIRTIO_BLK_SEG_MAX)
			return -E2BIG;
		req->iov[n].iov_base = (uint8_t *)e->bufs[i].addr + skip;
		req->iov[n].iov_len = l - skip < len ? l - skip : len;
		len -= req->iov[n].iov_len;
		skip = 0;
		n++;
	}
	req->iovcnt = n;
	return n;
}

static bool sectors_ok(const struct virtio_blk *blk, uint64_t sector,
		       uint64_t nsectors)
{
	uint64_t cap = disk_size(blk->disk) / VIRTIO_BLK_SECTOR;

	return sector <= cap && nsectors <= cap - sector;
}

static uint8_t handle_rw(struct virtio_blk *blk, struct virtio_blk_req *req,
			 bool write, uint64_t sector)
{
	const struct virtq_elem *e = &req->elem;
	uint64_t len;
	int err;

	if (write) {
		/* §5.2.6.2: a read-only device fails writes, writing nothing. */
		if (blk->read_only)
			return VIRTIO_BLK_S_IOERR;
		/* Data must be device-readable; only the status writable. */
		if (e->writable_len != 1)
			return VIRTIO_BLK_S_IOERR;
		len = e->readable_len - HDR_SIZE;
	} else {
		if (e->readable_len != HDR_SIZE)
			return VIRTIO_BLK_S_IOERR;
		len = e->writable_len - 1;
	}
	if (len % VIRTIO_BLK_SECTOR ||
	    !sectors_ok(blk, sector, len / VIRTIO_BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	if (len == 0)
		return VIRTIO_BLK_S_OK;
	if (build_iov(req, !write, write ? HDR_SIZE : 0, len) < 0)
		return VIRTIO_BLK_S_IOERR;
	req->pending = 1;
	if (write) {
		req->flush_after = !blk->writeback && !blk->ignore_flush;
		err = disk_submit_writev(req->q->disk,
					 sector * VIRTIO_BLK_SECTOR, req->iov,
					 req->iovcnt, req_complete, req);
		STAT_INC(blk->writes);
	} else {
		req->written = (uint32_t)len;
		err = disk_submit_readv(req->q->disk,
					sector * VIRTIO_BLK_SECTOR, req->iov,
					req->iovcnt, req_complete, req);
		STAT_INC(blk->reads);
	}
	if (err) {
		req->pending = 0;
		return VIRTIO_BLK_S_IOERR;
	}
	return 0xff; /* in flight */
}

/* One segment of a discard or write-zeroes payload, decoded. */
struct blk_range {
	uint64_t sector;
	uint32_t num, flags;
};

static uint8_t handle_ranges(struct virtio_blk *blk,
			     struct virtio_blk_req *req, bool zeroes)
{
	const struct virtq_elem *e = &req->elem;
	struct blk_range r[VIRTIO_BLK_MAX_DISCARD_SEG];
	uint64_t payload = e->readable_len - HDR_SIZE, nseg;
	unsigned feature = zeroes ? VIRTIO_BLK_F_WRITE_ZEROES
				  : VIRTIO_BLK_F_DISCARD;

	if (!virtio_has_feature(&blk->vdev, feature))
		return VIRTIO_BLK_S_UNSUPP;
	if (blk->read_only)
		return VIRTIO_BLK_S_IOERR;
	if (payload == 0 || payload % SEG_SIZE || e->writable_len != 1)
		return VIRTIO_BLK_S_IOERR;
	nseg = payload / SEG_SIZE;
	if (nseg > VIRTIO_BLK_MAX_DISCARD_SEG)
		return VIRTIO_BLK_S_IOERR;
	/* Read every segment once, and check them all before touching the
	 * disk: guest memory may change under us (another vCPU), and what
	 * was checked must be what is done. */
	for (uint64_t i = 0; i < nseg; i++) {
		uint8_t seg[SEG_SIZE];

		virtq_elem_read(e, HDR_SIZE + i * SEG_SIZE, seg, SEG_SIZE);
		memcpy(&r[i].sector, seg, 8);
		memcpy(&r[i].num, seg + 8, 4);
		memcpy(&r[i].flags, seg + 12, 4);
		r[i].sector = le64toh(r[i].sector);
		r[i].num = le32toh(r[i].num);
		r[i].flags = le32toh(r[i].flags);
		/* §5.2.6.2: unknown flags, or unmap on a discard: UNSUPP. */
		if ((r[i].flags & ~VIRTIO_BLK_WZ_F_UNMAP) ||
		    (!zeroes && (r[i].flags & VIRTIO_BLK_WZ_F_UNMAP)))
			return VIRTIO_BLK_S_UNSUPP;
		if (r[i].num > VIRTIO_BLK_MAX_DISCARD_SECTORS ||
		    !sectors_ok(blk, r[i].sector, r[i].num))
			return VIRTIO_BLK_S_IOERR;
	}
	req->pending = 1; /* held until every segment is submitted */
	for (uint64_t i = 0; i < nseg; i++) {
		uint64_t off = r[i].sector * VIRTIO_BLK_SECTOR;
		uint64_t len = (uint64_t)r[i].num * VIRTIO_BLK_SECTOR;
		int err;

		if (r[i].num == 0)
			continue;
		req->pending++;
		if (zeroes)
			err = disk_submit_write_zeroes(
				req->q->disk, off, len,
				r[i].flags & VIRTIO_BLK_WZ_F_UNMAP,
				req_complete, req);
		else
			err = disk_submit_discard(req->q->disk, off, len,
						  req_complete, req);
		if (err) {
			req->pending--;
			if (!req->error)
				req->error = err;
			break;
		}
	}
	req->flush_after = zeroes && !blk->writeback && !blk->ignore_flush;
	/* Drop the submission hold; completes now if nothing is left. */
	req_complete(req, 0);
	return 0xff;
}

/* Handle one popped request: either finish it now or leave it in flight. */
static void handle_request(struct virtio_blk *blk, struct virtio_blk_req *req)
{
	const struct virtq_elem *e = &req->elem;
	uint8_t hdr[HDR_SIZE], status;
	uint32_t type;
	uint64_t sector;

	req->q->inflight++;
	req->status = find_status(e);
	if (!req->status) {
		/* No device-writable byte: nowhere to report; return the
		 * chain unused so the driver at least gets it back. */
		req_finish(req, VIRTIO_BLK_S_IOERR);
		return;
	}
	if (e->readable_len < HDR_SIZE ||
	    virtq_elem_read(e, 0, hdr, HDR_SIZE) != HDR_SIZE) {
		req_finish(req, VIRTIO_BLK_S_IOERR);
		return;
	}
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	type = le32toh(type);
	sector = le64toh(sector);

	switch (type) {
	case VIRTIO_BLK_T_IN:
		status = handle_rw(blk, req, false, sector);
		break;
	case VIRTIO_BLK_T_OUT:
		status = handle_rw(blk, req, true, sector);
		break;
	case VIRTIO_BLK_T_FLUSH:
	case VIRTIO_BLK_T_FLUSH_OUT:
		if (e->writable_len != 1) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		STAT_INC(blk->flushes);
		if (blk->read_only || blk->ignore_flush) {
			status = VIRTIO_BLK_S_OK;
			break;
		}
		req->pending = 1;
		STAT_INC(blk->syncs);
		status = disk_submit_flush(req->q->disk, req_complete, req) == 0
				 ? 0xff
				 : VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t n = e->writable_len - 1;

		/* NUL-padded, no terminator at exactly 20 bytes. */
		if (n > VIRTIO_BLK_ID_BYTES)
			n = VIRTIO_BLK_ID_BYTES;
		req->written = (uint32_t)virtq_elem_write(e, 0, blk->serial, n);
		status = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
		status = handle_ranges(blk, req, false);
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = handle_ranges(blk, req, true);
		break;
	default:
		/* GET_LIFETIME, SECURE_ERASE, zone requests (§5.2.6.2: UNSUPP
		 * without ZONED), legacy SCSI, unknown types. */
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (status != 0xff)
		req_finish(req, status);
}

static void blk_queue_notify(struct virtio_device *dev, unsigned qidx)
{
	struct virtio_blk *blk = to_blk(dev);
	struct virtio_blk_queue *bq;

	if (qidx >= blk->num_queues)
		return;
	/* Without MQ only requestq1 exists (§5.2.2). */
	if (qidx > 0 && !virtio_has_feature(dev, VIRTIO_BLK_F_MQ))
		return;
	bq = &blk->queues[qidx];
	disk_plug(bq->disk);
	for (;;) {
		struct virtio_blk_req *req = req_get(bq);
		int ret;

		if (!req)
			break; /* out of memory: the chain stays queued */
		ret = virtio_queue_pop(dev, qidx, &req->elem);
		if (ret <= 0) {
			req_put(bq, req);
			break;
		}
		handle_request(blk, req);
	}
	disk_unplug(bq->disk);
	/* Reads from the page cache often complete during the submission
	 * itself: return them now, in this batch's notification, rather
	 * than after another trip through epoll.  (Only then: for I/O
	 * still in flight the look would cost a system call for nothing.) */
	if (disk_inflight(bq->disk) && disk_completions_ready(bq->disk))
		disk_process_completions(bq->disk);
	send_notification(bq);
}

static void blk_disk_event(struct virtio_device *dev, int fd, void *opaque)
{
	struct virtio_blk_queue *bq = opaque;

	(void)dev;
	(void)fd;
	disk_process_completions(bq->disk);
	send_notification(bq);
}

static bool blk_disk_ready(void *opaque)
{
	struct virtio_blk_queue *bq = opaque;

	return disk_completions_ready(bq->disk);
}

static void blk_disk_quiet(void *opaque, bool quiet)
{
	struct virtio_blk_queue *bq = opaque;

	disk_quiet_completions(bq->disk, quiet);
}

static const struct virtio_fd_poll blk_disk_poll = {
	.ready = blk_disk_ready,
	.quiet = blk_disk_quiet,
};

/* §5.2.5.2 / §5.2.6.2: without FLUSH negotiated every write must be
 * stable when it completes (writeback 0); otherwise start in the
 * configured mode. */
static void settle_cache_mode(struct virtio_blk *blk, uint64_t features)
{
	if (!(features & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH)))
		blk->writeback = 0;
	else
		blk->writeback = blk->default_writeback;
}

static int blk_validate_features(struct virtio_device *dev, uint64_t features)
{
	settle_cache_mode(to_blk(dev), features);
	return 0;
}

static int blk_activate(struct virtio_device *dev)
{
	/* Legacy (no FEATURES_OK step), §5.2.5.3: the cache mode may change
	 * as a result of DRIVER_OK only when the driver did not accept
	 * CONFIG_WCE -- it may have set writeback itself -- and never as a
	 * result of feature writes. */
	if (dev->legacy &&
	    !(dev->driver_features & VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE)))
		settle_cache_mode(to_blk(dev), dev->driver_features);
	return 0;
}

static void blk_reset(struct virtio_device *dev)
{
	struct virtio_blk *blk = to_blk(dev);

	/* Let in-flight I/O land (it may still write guest memory) but
	 * return nothing to the old rings.  Every queue thread is quiesced
	 * (the core holds their locks), so draining their disks here is
	 * safe. */
	blk->resetting = true;
	for (unsigned q = 0; q < blk->num_queues; q++) {
		disk_drain(blk->queues[q].disk);
		blk->queues[q].inflight = 0;
		blk->queues[q].notify_pending = false;
	}
	blk->resetting = false;
	blk->writeback = blk->default_writeback;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void blk_get_config(struct virtio_device *dev, uint32_t offset,
			   void *buf, uint32_t len)
{
	struct virtio_blk *blk = to_blk(dev);
	uint8_t c[VIRTIO_BLK_CONFIG_SIZE] = { 0 };
	uint64_t cap = htole64(disk_size(blk->disk) / VIRTIO_BLK_SECTOR);
	uint32_t lbs = disk_logical_block_size(blk->disk);
	uint32_t pbs = disk_physical_block_size(blk->disk);
	uint32_t gran = disk_discard_granularity(blk->disk);
	uint8_t exp = 0;

	while (exp < 16 && (lbs << (exp + 1)) <= pbs)
		exp++;
	memcpy(c + VIRTIO_BLK_CFG_CAPACITY, &cap, 8);
	put_le32(c + VIRTIO_BLK_CFG_SIZE_MAX, VIRTIO_BLK_SIZE_MAX);
	put_le32(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
	put_le32(c + VIRTIO_BLK_CFG_BLK_SIZE, lbs);
	/* Topology, in logical blocks. */
	c[VIRTIO_BLK_CFG_PHYS_BLOCK_EXP] = exp;
	c[VIRTIO_BLK_CFG_ALIGN_OFFSET] = 0;
	put_le16(c + VIRTIO_BLK_CFG_MIN_IO_SIZE, (uint16_t)(1u << exp));
	put_le32(c + VIRTIO_BLK_CFG_OPT_IO_SIZE, 0);
	c[VIRTIO_BLK_CFG_WRITEBACK] = blk->writeback;
	/* §5.2.5.2: unused0 and unused1 stay 0. */
	put_le16(c + VIRTIO_BLK_CFG_NUM_QUEUES, (uint16_t)blk->num_queues);
	put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS,
		 VIRTIO_BLK_MAX_DISCARD_SECTORS);
	put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
	put_le32(c + VIRTIO_BLK_CFG_DISCARD_ALIGNMENT,
		 gran >= VIRTIO_BLK_SECTOR ? gran / VIRTIO_BLK_SECTOR : 1);
	put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS,
		 VIRTIO_BLK_MAX_DISCARD_SECTORS);
	put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
	/* Both backends can deallocate on write-zeroes with unmap. */
	c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
	memcpy(buf, c + offset, len);
}

static void blk_set_config(struct virtio_device *dev, uint32_t offset,
			   const void *buf, uint32_t len)
{
	struct virtio_blk *blk = to_blk(dev);

	/* Only writeback is writable, and only with CONFIG_WCE (§5.2.5);
	 * a legacy driver may write it before it wrote its features
	 * (§5.2.5.3; CONFIG_WCE is always offered). */
	if (offset == VIRTIO_BLK_CFG_WRITEBACK && len == 1 &&
	    (dev->legacy ||
	     (dev->driver_features & VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE)))) {
		uint8_t v = *(const uint8_t *)buf;

		if (v <= 1)
			blk->writeback = v;
	}
}

static const struct virtio_device_ops blk_ops = {
	.get_config = blk_get_config,
	.set_config = blk_set_config,
	.validate_features = blk_validate_features,
	.queue_notify = blk_queue_notify,
	.activate = blk_activate,
	.reset = blk_reset,
};

int virtio_blk_init(struct virtio_blk *blk, const char *name,
		    const struct guest_memory *mem, struct disk *disk,
		    const struct virtio_blk_options *opts)
{
	static const struct virtio_blk_options defaults;
	uint64_t features;
	unsigned nq;
	int err;

	if (!opts)
		opts = &defaults;
	nq = opts->num_queues ? opts->num_queues : 1;
	if (nq > VIRTIO_BLK_MAX_QUEUES)
		return -EINVAL;
	memset(blk, 0, sizeof(*blk));
	blk->disk = disk;
	blk->num_queues = nq;
	blk->read_only = disk_read_only(disk);
	blk->default_writeback = !opts->writethrough;
	blk->writeback = blk->default_writeback;
	blk->ignore_flush = opts->ignore_flush;
	if (opts->serial)
		memcpy(blk->serial, opts->serial,
		       strnlen(opts->serial, VIRTIO_BLK_ID_BYTES));

	/* §5.2.5.2: FLUSH always, and it is required with CONFIG_WCE. */
	features = VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) |
		   VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
		   VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
		   VIRTIO_BIT(VIRTIO_BLK_F_TOPOLOGY) |
		   VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
		   VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE) |
		   VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) |
		   VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	if (nq > 1)
		features |= VIRTIO_BIT(VIRTIO_BLK_F_MQ);
	if (blk->read_only)
		features |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
	err = virtio_device_init(&blk->vdev, name, VIRTIO_ID_BLOCK, &blk_ops,
				 mem, nq, VIRTIO_BLK_QUEUE_SIZE, features,
				 VIRTIO_BLK_CONFIG_SIZE);
	if (err)
		return err;
	virtio_device_set_polling(&blk->vdev, opts->poll_us);
	/* MQ: a thread and a disk handle per queue (see blk.h). */
	if (nq > 1) {
		err = virtio_device_use_queue_threads(&blk->vdev);
		if (err)
			goto fail;
	}
	for (unsigned q = 0; q < nq; q++) {
		struct virtio_blk_queue *bq = &blk->queues[q];

		bq->blk = blk;
		bq->idx = q;
		if (q == 0)
			bq->disk = disk;
		else if ((err = disk_open_queue(disk, &bq->disk)))
			goto fail;
		err = virtio_queue_watch_fd_polled(
			&blk->vdev, q, disk_completion_fd(bq->disk),
			blk_disk_event, &blk_disk_poll, bq);
		if (err)
			goto fail;
	}
	return 0;

fail:
	virtio_device_destroy(&blk->vdev);
	for (unsigned q = 1; q < nq; q++)
		disk_close(blk->queues[q].disk);
	return err;
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
	virtio_device_destroy(&blk->vdev);
	blk->resetting = true;
	for (unsigned q = 0; q < blk->num_queues; q++) {
		struct virtio_blk_queue *bq = &blk->queues[q];
		struct virtio_blk_req *req;

		disk_drain(bq->disk);
		while ((req = bq->free_reqs)) {
			bq->free_reqs = req->next;
			free(req);
		}
		if (q > 0)
			disk_close(bq->disk);
		bq->disk = NULL;
	}
}
