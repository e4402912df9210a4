/* virtio block device (virtio 1.2 §5.2).  See blk.h. */
#include "virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define HDR_SIZE 16 /* type, reserved, sector */
#define SEG_SIZE 16 /* struct virtio_blk_discard_write_zeroes */

/* One request in flight: the popped chain plus what completion needs. */
struct virtio_blk_req {
	struct virtio_blk *blk;
	struct virtio_blk_req *next;   /* free list */
	unsigned qidx;
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

static struct virtio_blk_req *req_get(struct virtio_blk *blk)
{
	struct virtio_blk_req *req = blk->free_reqs;

	if (req) {
		blk->free_reqs = req->next;
	} else {
		req = malloc(sizeof(*req));
		if (!req)
			return NULL;
	}
	req->blk = blk;
	req->next = NULL;
	req->status = NULL;
	req->written = 0;
	req->pending = 0;
	req->error = 0;
	req->flush_after = false;
	req->iovcnt = 0;
	return req;
}

static void req_put(struct virtio_blk *blk, struct virtio_blk_req *req)
{
	req->next = blk->free_reqs;
	blk->free_reqs = req;
}

static void send_notifications(struct virtio_blk *blk)
{
	for (unsigned q = 0; q < blk->num_queues; q++) {
		if (blk->notify_pending[q]) {
			blk->notify_pending[q] = false;
			virtio_queue_notify_driver(&blk->vdev, q);
		}
	}
}

/* Return the chain with |status| in its status byte. */
static void req_finish(struct virtio_blk_req *req, uint8_t status)
{
	struct virtio_blk *blk = req->blk;
	uint32_t used = 0;

	if (req->status) {
		*req->status = status;
		/* §2.7.8: used length = bytes written to the writable part. */
		used = (status == VIRTIO_BLK_S_OK ? req->written : 0) + 1;
	}
	if (status != VIRTIO_BLK_S_OK)
		blk->errors++;
	virtio_queue_push(&blk->vdev, req->qidx, &req->elem, used);
	blk->notify_pending[req->qidx] = true;
	blk->inflight--;
	req_put(blk, req);
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
		blk->inflight--;
		req_put(blk, req);
		return;
	}
	if (!req->error && req->flush_after) {
		/* Writethrough (§5.2.6.2 cases 1 and 2): the write is only
		 * complete once it is stable. */
		req->flush_after = false;
		req->pending = 1;
		blk->syncs++;
		if (disk_submit_flush(blk->disk, req_complete, req) == 0)
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

static bool sectors_ok(struct virtio_blk *blk, uint64_t sector,
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
		err = disk_submit_writev(blk->disk, sector * VIRTIO_BLK_SECTOR,
					 req->iov, req->iovcnt, req_complete,
					 req);
		blk->writes++;
	} else {
		req->written = (uint32_t)len;
		err = disk_submit_readv(blk->disk, sector * VIRTIO_BLK_SECTOR,
					req->iov, req->iovcnt, req_complete,
					req);
		blk->reads++;
	}
	if (err) {
		req->pending = 0;
		return VIRTIO_BLK_S_IOERR;
	}
	return 0xff; /* in flight */
}

static uint8_t handle_ranges(struct virtio_blk *blk,
			     struct virtio_blk_req *req, bool zeroes)
{
	const struct virtq_elem *e = &req->elem;
	uint8_t seg[SEG_SIZE];
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
	/* Check every segment before touching the disk. */
	for (uint64_t i = 0; i < nseg; i++) {
		uint64_t sector;
		uint32_t num, flags;

		virtq_elem_read(e, HDR_SIZE + i * SEG_SIZE, seg, SEG_SIZE);
		memcpy(&sector, seg, 8);
		memcpy(&num, seg + 8, 4);
		memcpy(&flags, seg + 12, 4);
		sector = le64toh(sector);
		num = le32toh(num);
		flags = le32toh(flags);
		/* §5.2.6.2: unknown flags, or unmap on a discard: UNSUPP. */
		if ((flags & ~VIRTIO_BLK_WZ_F_UNMAP) ||
		    (!zeroes && (flags & VIRTIO_BLK_WZ_F_UNMAP)))
			return VIRTIO_BLK_S_UNSUPP;
		if (num > VIRTIO_BLK_MAX_DISCARD_SECTORS ||
		    !sectors_ok(blk, sector, num))
			return VIRTIO_BLK_S_IOERR;
	}
	req->pending = 1; /* held until every segment is submitted */
	for (uint64_t i = 0; i < nseg; i++) {
		uint64_t sector;
		uint32_t num, flags;
		int err;

		virtq_elem_read(e, HDR_SIZE + i * SEG_SIZE, seg, SEG_SIZE);
		memcpy(&sector, seg, 8);
		memcpy(&num, seg + 8, 4);
		memcpy(&flags, seg + 12, 4);
		sector = le64toh(sector);
		num = le32toh(num);
		flags = le32toh(flags);
		if (num == 0)
			continue;
		req->pending++;
		if (zeroes)
			err = disk_submit_write_zeroes(
				blk->disk, sector * VIRTIO_BLK_SECTOR,
				(uint64_t)num * VIRTIO_BLK_SECTOR,
				flags & VIRTIO_BLK_WZ_F_UNMAP, req_complete,
				req);
		else
			err = disk_submit_discard(
				blk->disk, sector * VIRTIO_BLK_SECTOR,
				(uint64_t)num * VIRTIO_BLK_SECTOR,
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

	blk->inflight++;
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
		blk->flushes++;
		if (blk->read_only || blk->ignore_flush) {
			status = VIRTIO_BLK_S_OK;
			break;
		}
		req->pending = 1;
		blk->syncs++;
		status = disk_submit_flush(blk->disk, req_complete, req) == 0
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

	if (qidx >= blk->num_queues)
		return;
	/* Without MQ only requestq1 exists (§5.2.2). */
	if (qidx > 0 && !virtio_has_feature(dev, VIRTIO_BLK_F_MQ))
		return;
	disk_plug(blk->disk);
	for (;;) {
		struct virtio_blk_req *req = req_get(blk);
		int ret;

		if (!req)
			break; /* out of memory: the chain stays queued */
		ret = virtio_queue_pop(dev, qidx, &req->elem);
		if (ret <= 0) {
			req_put(blk, req);
			break;
		}
		req->qidx = qidx;
		handle_request(blk, req);
	}
	disk_unplug(blk->disk);
	send_notifications(blk);
}

static void blk_disk_event(struct virtio_device *dev, int fd, void *opaque)
{
	struct virtio_blk *blk = to_blk(dev);

	(void)fd;
	(void)opaque;
	disk_process_completions(blk->disk);
	send_notifications(blk);
}

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
	if (dev->legacy) /* no FEATURES_OK step */
		settle_cache_mode(to_blk(dev), dev->driver_features);
	return 0;
}

static void blk_reset(struct virtio_device *dev)
{
	struct virtio_blk *blk = to_blk(dev);

	/* Let in-flight I/O land (it may still write guest memory) but
	 * return nothing to the old rings. */
	blk->resetting = true;
	disk_drain(blk->disk);
	blk->resetting = false;
	blk->inflight = 0;
	memset(blk->notify_pending, 0, sizeof(blk->notify_pending));
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

	/* Only writeback is writable, and only with CONFIG_WCE (§5.2.5). */
	if (offset == VIRTIO_BLK_CFG_WRITEBACK && len == 1 &&
	    (dev->driver_features & VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE))) {
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
	err = virtio_device_watch_fd(&blk->vdev, disk_completion_fd(disk),
				     blk_disk_event, NULL);
	if (err) {
		virtio_device_destroy(&blk->vdev);
		return err;
	}
	return 0;
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
	struct virtio_blk_req *req;

	virtio_device_destroy(&blk->vdev);
	blk->resetting = true;
	disk_drain(blk->disk);
	while ((req = blk->free_reqs)) {
		blk->free_reqs = req->next;
		free(req);
	}
}
