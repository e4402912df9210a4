// SPDX-License-Identifier: GPL-2.0
/*
 * Kite's in-kernel agent: block devices (virtio 1.2 §5.2) through Linux's
 * virtio_blk driver, with bios submitted straight to the disks (no page
 * cache), each wait bounded.
 *
 * Command line:
 *
 *	kite_agent.blk=ENTRY[,ENTRY...]
 *	    ENTRY = SERIAL[/KEY=VALUE...]: the disk whose device ID string
 *	    (VIRTIO_BLK_T_GET_ID) is SERIAL, KEY one of
 *	      size=SECTORS               capacity in 512-byte sectors
 *	      ro=0|1                     whether the disk is read-only
 *	      read=START+COUNT:SEED      the host wrote the pattern of SEED
 *	                                 (kite_pattern_fill) at sectors
 *	                                 START..START+COUNT-1
 *	      write=START+COUNT:SEED     the guest writes that pattern there,
 *	                                 flushes, and the host checks it
 *	      discard=START+COUNT        the guest discards those sectors
 *	      zeroes=START+COUNT         the guest writes zeroes there
 *	                                 (VIRTIO_BLK_T_WRITE_ZEROES)
 *	    Every virtio disk present must be listed.  COUNT up to 2048
 *	    (1 MiB) for read and write.
 */
#include <linux/bio.h>
#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/completion.h>
#include <linux/device.h>
#include <linux/gfp.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/virtio.h>
#include <uapi/linux/virtio_blk.h>

#include "agent.h"

static char *kite_blk;
module_param_named(blk, kite_blk, charp, 0444);
MODULE_PARM_DESC(blk, "expected virtio disks and the I/O to do on them (see block.c)");

#define KITE_BLK_MAX 8
#define KITE_BLK_MAX_IO_SECTORS 2048
#define KITE_BLK_IO_MS 30000

struct kite_blk_range {
	bool set;
	u64 start, count;
	u32 seed;
};

struct kite_blk_expect {
	const char *serial;
	s64 size;		/* -1: not checked */
	int ro;			/* -1: not checked */
	struct kite_blk_range read, write, discard, zeroes;
	struct gendisk *disk;	/* found by serial */
};

struct kite_blk_plan {
	char *spec;
	struct kite_blk_expect e[KITE_BLK_MAX];
	int n;
};

/* ---- finding the disks ---------------------------------------------------- */

struct kite_rq_wait {
	struct completion done;
	blk_status_t status;
};

static enum rq_end_io_ret kite_rq_done(struct request *rq, blk_status_t status)
{
	struct kite_rq_wait *w = rq->end_io_data;

	w->status = status;
	complete(&w->done);
	return RQ_END_IO_NONE;
}

/* The device ID string (GET_ID), as virtio_blk's serial attribute reads it. */
static int kite_blk_get_id(struct gendisk *disk, char id[VIRTIO_BLK_ID_BYTES + 1])
{
	struct kite_rq_wait *w;
	struct request *rq;
	char *buf;
	int err;

	w = kzalloc(sizeof(*w), GFP_KERNEL);
	buf = kzalloc(VIRTIO_BLK_ID_BYTES, GFP_KERNEL);
	if (!w || !buf) {
		kfree(w);
		kfree(buf);
		return -ENOMEM;
	}
	rq = blk_mq_alloc_request(disk->queue, REQ_OP_DRV_IN, 0);
	if (IS_ERR(rq)) {
		kfree(w);
		kfree(buf);
		return PTR_ERR(rq);
	}
	err = blk_rq_map_kern(disk->queue, rq, buf, VIRTIO_BLK_ID_BYTES, GFP_KERNEL);
	if (err)
		goto out;
	init_completion(&w->done);
	rq->end_io = kite_rq_done;
	rq->end_io_data = w;
	blk_execute_rq_nowait(rq, false);
	if (!wait_for_completion_timeout(&w->done, msecs_to_jiffies(KITE_BLK_IO_MS)))
		return -ETIMEDOUT;	/* the request still owns w and buf */
	err = blk_status_to_errno(w->status);
	memcpy(id, buf, VIRTIO_BLK_ID_BYTES);
	id[VIRTIO_BLK_ID_BYTES] = '\0';	/* §5.2.6: not NUL-terminated at 20 */
out:
	blk_mq_free_request(rq);
	kfree(w);
	kfree(buf);
	return err;
}

static bool kite_is_virtio_disk(struct device *dev)
{
	struct device *parent = dev->parent;

	return dev->type && dev->type->name && !strcmp(dev->type->name, "disk") &&
	       parent && parent->bus && !strcmp(parent->bus->name, "virtio") &&
	       !strcmp(kite_dev_driver(parent), "virtio_blk");
}

/*
 * Pair every entry with a disk by serial; state what is missing or
 * unexpected in @r (when @r is non-NULL), listing the disks present.
 */
static unsigned int kite_blk_find(struct kite_blk_plan *p, struct kite_result *r)
{
	struct class_dev_iter iter;
	struct device *dev;
	unsigned int bad = 0;
	int i;

	class_dev_iter_init(&iter, &block_class, NULL, NULL);
	while ((dev = class_dev_iter_next(&iter))) {
		struct gendisk *disk;
		char id[VIRTIO_BLK_ID_BYTES + 1];
		int err;

		if (!kite_is_virtio_disk(dev))
			continue;
		disk = dev_to_disk(dev);
		err = kite_blk_get_id(disk, id);
		if (r)
			kite_diag("blk present: %s serial '%s'%s size=%llu ro=%d",
				  disk->disk_name, err ? "" : id,
				  err ? " (GET_ID failed)" : "",
				  (u64)get_capacity(disk), get_disk_ro(disk));
		for (i = 0; !err && i < p->n; i++) {
			if (!p->e[i].disk && !strcmp(p->e[i].serial, id)) {
				p->e[i].disk = disk;
				break;
			}
		}
		if (err || i == p->n) {
			bad++;
			if (r && err)
				kite_why(r, "%s: GET_ID failed: %d", disk->disk_name, err);
			else if (r)
				kite_why(r, "unexpected disk %s, serial '%s'",
					 disk->disk_name, id);
		}
	}
	class_dev_iter_exit(&iter);
	for (i = 0; i < p->n; i++) {
		if (p->e[i].disk)
			continue;
		bad++;
		if (r)
			kite_why(r, "no virtio disk with serial '%s'", p->e[i].serial);
	}
	return bad;
}

/* ---- the plan ----------------------------------------------------------- */

static int kite_blk_parse_entry(char *s, struct kite_blk_expect *e)
{
	char *field, *val;
	long long v;

	memset(e, 0, sizeof(*e));
	e->size = -1;
	e->ro = -1;
	e->serial = strsep(&s, "/");
	if (!*e->serial || strlen(e->serial) > VIRTIO_BLK_ID_BYTES)
		return -EINVAL;
	while ((field = strsep(&s, "/")) != NULL) {
		struct kite_blk_range *rg = NULL;
		bool seeded = false;

		val = strchr(field, '=');
		if (!val)
			return -EINVAL;
		*val++ = '\0';
		if (!strcmp(field, "size")) {
			if (kstrtoll(val, 0, &v) || v < 0)
				return -EINVAL;
			e->size = v;
			continue;
		}
		if (!strcmp(field, "ro")) {
			if (kstrtoll(val, 0, &v) || v < 0 || v > 1)
				return -EINVAL;
			e->ro = v;
			continue;
		}
		if (!strcmp(field, "read"))
			rg = &e->read, seeded = true;
		else if (!strcmp(field, "write"))
			rg = &e->write, seeded = true;
		else if (!strcmp(field, "discard"))
			rg = &e->discard;
		else if (!strcmp(field, "zeroes"))
			rg = &e->zeroes;
		else
			return -EINVAL;
		if (kite_parse_range(val, &rg->start, &rg->count,
				     seeded ? &rg->seed : NULL))
			return -EINVAL;
		if (seeded && rg->count > KITE_BLK_MAX_IO_SECTORS)
			return -EINVAL;
		rg->set = true;
	}
	return 0;
}

/*
 * Parse kite_agent.blk and find the disks.  Returns NULL with the verdict
 * in *v (SKIP: not asked; FAIL: unparsable, or a disk missing).
 */
static struct kite_blk_plan *kite_blk_plan(struct kite_result *r,
					   enum kite_verdict *v)
{
	struct kite_blk_plan *p;
	char *s, *entry;

	*v = KITE_FAIL;
	if (!kite_blk || !*kite_blk) {
		*v = kite_skip(r, "kite_agent.blk not given");
		return NULL;
	}
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (p)
		p->spec = kstrdup(kite_blk, GFP_KERNEL);
	if (!p || !p->spec) {
		kfree(p);
		kite_why(r, "out of memory");
		return NULL;
	}
	s = p->spec;
	while ((entry = strsep(&s, ",")) != NULL) {
		if (p->n == KITE_BLK_MAX ||
		    kite_blk_parse_entry(entry, &p->e[p->n])) {
			kite_why(r, "kite_agent.blk entry %d unparsable (or more than %d)",
				 p->n + 1, KITE_BLK_MAX);
			goto fail;
		}
		p->n++;
	}
	return p;
fail:
	kfree(p->spec);
	kfree(p);
	return NULL;
}

static void kite_blk_plan_free(struct kite_blk_plan *p)
{
	kfree(p->spec);
	kfree(p);
}

/* ---- I/O ----------------------------------------------------------------- */

struct kite_bio_wait {
	struct completion done;
	blk_status_t status;
};

static void kite_bio_done(struct bio *bio)
{
	struct kite_bio_wait *w = bio->bi_private;

	w->status = bio->bi_status;
	complete(&w->done);
	bio_put(bio);
}

/*
 * One bio: @opf with @buf (bytes, from kite_blk_buf) for reads and writes,
 * or a data-less range (discard, write-zeroes) or a flush.  Returns the
 * errno of the completion; -ETIMEDOUT leaves @buf to the bio.
 */
static int kite_bio(struct block_device *bdev, blk_opf_t opf, sector_t sector,
		    void *buf, size_t bytes)
{
	struct kite_bio_wait *w = kzalloc(sizeof(*w), GFP_KERNEL);
	unsigned int pages = buf ? DIV_ROUND_UP(bytes, PAGE_SIZE) : 0;
	struct bio *bio;
	size_t off;

	if (!w)
		return -ENOMEM;
	bio = bio_alloc(bdev, pages, opf, GFP_KERNEL);
	if (!bio) {
		kfree(w);
		return -ENOMEM;
	}
	bio->bi_iter.bi_sector = sector;
	if (buf) {
		for (off = 0; off < bytes; off += PAGE_SIZE) {
			size_t len = min_t(size_t, bytes - off, PAGE_SIZE);

			if (bio_add_page(bio, virt_to_page(buf + off), len, 0) != len) {
				bio_put(bio);
				kfree(w);
				return -E2BIG;
			}
		}
	} else {
		bio->bi_iter.bi_size = bytes;
	}
	init_completion(&w->done);
	bio->bi_private = w;
	bio->bi_end_io = kite_bio_done;
	submit_bio(bio);
	if (!wait_for_completion_timeout(&w->done, msecs_to_jiffies(KITE_BLK_IO_MS)))
		return -ETIMEDOUT;
	off = blk_status_to_errno(w->status);
	kfree(w);
	return (int)off;
}

static void *kite_blk_buf(u64 sectors)
{
	return (void *)__get_free_pages(GFP_KERNEL, get_order(sectors << SECTOR_SHIFT));
}

static void kite_blk_buf_free(void *buf, u64 sectors)
{
	if (buf)
		free_pages((unsigned long)buf, get_order(sectors << SECTOR_SHIFT));
}

static const char *kite_op_name(blk_opf_t opf)
{
	switch (opf & REQ_OP_MASK) {
	case REQ_OP_READ: return "read";
	case REQ_OP_WRITE: return opf & REQ_PREFLUSH ? "flush" : "write";
	case REQ_OP_DISCARD: return "discard";
	case REQ_OP_WRITE_ZEROES: return "write-zeroes";
	default: return "op";
	}
}

/* Open the disk for the case; NULL with the fact in @r. */
static struct block_device *kite_blk_open(struct kite_blk_expect *e, fmode_t mode,
					  struct kite_result *r)
{
	struct block_device *bdev = blkdev_get_by_dev(disk_devt(e->disk), mode, NULL);

	if (IS_ERR(bdev)) {
		kite_why(r, "%s ('%s'): open: %ld", e->disk->disk_name, e->serial,
			 PTR_ERR(bdev));
		return NULL;
	}
	return bdev;
}

/* Compare @buf with the pattern of @seed (or zeroes); state the first difference. */
static bool kite_blk_matches(struct kite_blk_expect *e, const char *what,
			     const u8 *buf, const struct kite_blk_range *rg,
			     bool zero, struct kite_result *r)
{
	size_t i, n = rg->count << SECTOR_SHIFT;
	u8 want = 0;

	if (zero) {
		const u8 *nz = memchr_inv(buf, 0, n);

		i = nz ? nz - buf : n;
	} else {
		i = kite_pattern_mismatch(buf, n, rg->seed, &want);
	}
	if (i == n)
		return true;
	kite_why(r, "%s ('%s'): %s: sector %llu byte %zu is %#04x, want %#04x",
		 e->disk->disk_name, e->serial, what,
		 rg->start + i / SECTOR_SIZE, i % SECTOR_SIZE, buf[i], want);
	return false;
}

/*
 * Run @fn on every entry that has the range @which; SKIP when none has.
 * @fn returns true if the entry passed, with facts in @r if not.
 */
static enum kite_verdict kite_blk_each(struct kite_result *r, size_t which,
				       bool (*fn)(struct kite_blk_expect *e,
						  struct kite_result *r),
				       const char *key)
{
	struct kite_blk_plan *p;
	enum kite_verdict v;
	unsigned int bad = 0, n = 0;
	int i;

	p = kite_blk_plan(r, &v);
	if (!p)
		return v;
	kite_blk_find(p, NULL);
	for (i = 0; i < p->n; i++) {
		struct kite_blk_expect *e = &p->e[i];
		bool want = which == SIZE_MAX ? e->ro == 1 :
			    ((struct kite_blk_range *)((char *)e + which))->set;

		if (!want)
			continue;
		n++;
		if (!e->disk) {
			kite_why(r, "no virtio disk with serial '%s'", e->serial);
			bad++;
		} else if (!fn(e, r)) {
			bad++;
		}
	}
	kite_blk_plan_free(p);
	if (!n)
		return kite_skip(r, "no kite_agent.blk entry has %s", key);
	return bad ? KITE_FAIL : KITE_PASS;
}

/* ---- the cases ----------------------------------------------------------- */

enum kite_verdict kite_case_blk_disks_match(struct kite_result *r)
{
	struct kite_blk_plan *p;
	enum kite_verdict v;
	unsigned int bad;
	int i;

	p = kite_blk_plan(r, &v);
	if (!p)
		return v;
	bad = kite_blk_find(p, r);
	for (i = 0; i < p->n; i++) {
		struct kite_blk_expect *e = &p->e[i];

		if (!e->disk)
			continue;
		if (e->size >= 0 && get_capacity(e->disk) != (u64)e->size) {
			kite_why(r, "%s ('%s'): %llu sectors, want %lld",
				 e->disk->disk_name, e->serial,
				 (u64)get_capacity(e->disk), e->size);
			bad++;
		}
		if (e->ro >= 0 && !!get_disk_ro(e->disk) != e->ro) {
			kite_why(r, "%s ('%s'): read-only %d, want %d",
				 e->disk->disk_name, e->serial,
				 get_disk_ro(e->disk), e->ro);
			bad++;
		}
	}
	kite_blk_plan_free(p);
	return bad ? KITE_FAIL : KITE_PASS;
}

static bool kite_blk_read_one(struct kite_blk_expect *e, struct kite_result *r)
{
	struct kite_blk_range *rg = &e->read;
	struct block_device *bdev = kite_blk_open(e, FMODE_READ, r);
	void *buf;
	bool ok = false;
	int err;

	if (!bdev)
		return false;
	buf = kite_blk_buf(rg->count);
	if (!buf) {
		kite_why(r, "out of memory");
		goto out;
	}
	err = kite_bio(bdev, REQ_OP_READ, rg->start, buf, rg->count << SECTOR_SHIFT);
	if (err) {
		kite_why(r, "%s ('%s'): read of sectors %llu+%llu: %d",
			 e->disk->disk_name, e->serial, rg->start, rg->count, err);
		if (err == -ETIMEDOUT)
			buf = NULL;	/* still the bio's */
	} else {
		ok = kite_blk_matches(e, "host pattern", buf, rg, false, r);
	}
	kite_blk_buf_free(buf, rg->count);
out:
	blkdev_put(bdev, FMODE_READ);
	return ok;
}

enum kite_verdict kite_case_blk_reads_host_pattern(struct kite_result *r)
{
	return kite_blk_each(r, offsetof(struct kite_blk_expect, read),
			     kite_blk_read_one, "read=");
}

static bool kite_blk_write_one(struct kite_blk_expect *e, struct kite_result *r)
{
	const fmode_t mode = FMODE_READ | FMODE_WRITE;
	struct kite_blk_range *rg = &e->write;
	struct block_device *bdev = kite_blk_open(e, mode, r);
	size_t bytes = rg->count << SECTOR_SHIFT;
	const char *step = "write";
	void *buf;
	bool ok = false;
	int err;

	if (!bdev)
		return false;
	buf = kite_blk_buf(rg->count);
	if (!buf) {
		kite_why(r, "out of memory");
		goto out;
	}
	kite_pattern_fill(buf, bytes, rg->seed);
	err = kite_bio(bdev, REQ_OP_WRITE, rg->start, buf, bytes);
	if (!err) {
		/* virtio 1.2 §5.2.6.2: a flush makes completed writes durable. */
		step = "flush";
		err = kite_bio(bdev, REQ_OP_WRITE | REQ_PREFLUSH, 0, NULL, 0);
	}
	if (!err) {
		step = "read back";
		memset(buf, 0, bytes);
		err = kite_bio(bdev, REQ_OP_READ, rg->start, buf, bytes);
	}
	if (err) {
		kite_why(r, "%s ('%s'): %s of sectors %llu+%llu: %d",
			 e->disk->disk_name, e->serial, step, rg->start,
			 rg->count, err);
		if (err == -ETIMEDOUT)
			buf = NULL;
	} else {
		ok = kite_blk_matches(e, "read back after write", buf, rg, false, r);
	}
	kite_blk_buf_free(buf, rg->count);
out:
	blkdev_put(bdev, mode);
	return ok;
}

enum kite_verdict kite_case_blk_writes_flushes_and_reads_back(struct kite_result *r)
{
	return kite_blk_each(r, offsetof(struct kite_blk_expect, write),
			     kite_blk_write_one, "write=");
}

static bool kite_blk_range_op(struct kite_blk_expect *e, struct kite_blk_range *rg,
			      blk_opf_t opf, unsigned int limit,
			      struct kite_result *r)
{
	const fmode_t mode = FMODE_READ | FMODE_WRITE;
	struct block_device *bdev = kite_blk_open(e, mode, r);
	bool ok = false;
	int err;

	if (!bdev)
		return false;
	if (!limit) {
		kite_why(r, "%s ('%s'): the driver sees no %s support (feature not negotiated?)",
			 e->disk->disk_name, e->serial, kite_op_name(opf));
		goto out;
	}
	err = kite_bio(bdev, opf, rg->start, NULL, rg->count << SECTOR_SHIFT);
	if (err) {
		kite_why(r, "%s ('%s'): %s of sectors %llu+%llu (limit %u): %d",
			 e->disk->disk_name, e->serial, kite_op_name(opf),
			 rg->start, rg->count, limit, err);
		goto out;
	}
	ok = true;
out:
	blkdev_put(bdev, mode);
	return ok;
}

static bool kite_blk_discard_one(struct kite_blk_expect *e, struct kite_result *r)
{
	struct block_device *bdev = e->disk->part0;

	return kite_blk_range_op(e, &e->discard, REQ_OP_DISCARD,
				 bdev_max_discard_sectors(bdev), r);
}

enum kite_verdict kite_case_blk_discard_accepted(struct kite_result *r)
{
	return kite_blk_each(r, offsetof(struct kite_blk_expect, discard),
			     kite_blk_discard_one, "discard=");
}

static bool kite_blk_zeroes_one(struct kite_blk_expect *e, struct kite_result *r)
{
	struct kite_blk_range *rg = &e->zeroes;
	struct block_device *bdev;
	void *buf;
	bool ok;
	int err;

	if (!kite_blk_range_op(e, rg, REQ_OP_WRITE_ZEROES,
			       bdev_write_zeroes_sectors(e->disk->part0), r))
		return false;
	if (rg->count > KITE_BLK_MAX_IO_SECTORS)
		return true;	/* too long to read back here; the host checks */
	bdev = kite_blk_open(e, FMODE_READ, r);
	if (!bdev)
		return false;
	buf = kite_blk_buf(rg->count);
	ok = false;
	if (!buf) {
		kite_why(r, "out of memory");
		goto out;
	}
	err = kite_bio(bdev, REQ_OP_READ, rg->start, buf, rg->count << SECTOR_SHIFT);
	if (err) {
		kite_why(r, "%s ('%s'): read back of sectors %llu+%llu: %d",
			 e->disk->disk_name, e->serial, rg->start, rg->count, err);
		if (err == -ETIMEDOUT)
			buf = NULL;
	} else {
		ok = kite_blk_matches(e, "read back after write-zeroes", buf, rg,
				      true, r);
	}
	kite_blk_buf_free(buf, rg->count);
out:
	blkdev_put(bdev, FMODE_READ);
	return ok;
}

enum kite_verdict kite_case_blk_write_zeroes_reads_zero(struct kite_result *r)
{
	return kite_blk_each(r, offsetof(struct kite_blk_expect, zeroes),
			     kite_blk_zeroes_one, "zeroes=");
}

static bool kite_blk_ro_one(struct kite_blk_expect *e, struct kite_result *r)
{
	/* The host pattern if there is one, else the first 8 sectors. */
	struct kite_blk_range rg = e->read.set ? e->read :
		(struct kite_blk_range){ .set = true, .start = 0, .count = 8 };
	size_t bytes = rg.count << SECTOR_SHIFT;
	struct block_device *bdev;
	void *before = NULL, *buf = NULL;
	bool ok = false;
	int err;

	if (!get_disk_ro(e->disk))
		kite_why(r, "%s ('%s'): not marked read-only (VIRTIO_BLK_F_RO not negotiated?)",
			 e->disk->disk_name, e->serial);
	/* A write bio reaches the device even so: Linux only warns. */
	bdev = kite_blk_open(e, FMODE_READ, r);
	if (!bdev)
		return false;
	before = kite_blk_buf(rg.count);
	buf = kite_blk_buf(rg.count);
	if (!before || !buf) {
		kite_why(r, "out of memory");
		goto out;
	}
	err = kite_bio(bdev, REQ_OP_READ, rg.start, before, bytes);
	if (err) {
		kite_why(r, "%s ('%s'): read of sectors %llu+%llu: %d",
			 e->disk->disk_name, e->serial, rg.start, rg.count, err);
		if (err == -ETIMEDOUT)
			before = NULL;
		goto out;
	}
	memcpy(buf, before, bytes);
	memset(buf, 0xa5, SECTOR_SIZE);
	/* virtio 1.2 §5.2.6.1: with VIRTIO_BLK_F_RO a write fails, writes nothing. */
	err = kite_bio(bdev, REQ_OP_WRITE, rg.start, buf, bytes);
	if (!err) {
		kite_why(r, "%s ('%s'): a write to sectors %llu+%llu succeeded",
			 e->disk->disk_name, e->serial, rg.start, rg.count);
		goto out;
	}
	if (err == -ETIMEDOUT) {
		kite_why(r, "%s ('%s'): the write never completed",
			 e->disk->disk_name, e->serial);
		buf = NULL;
		goto out;
	}
	memset(buf, 0, bytes);
	err = kite_bio(bdev, REQ_OP_READ, rg.start, buf, bytes);
	if (err) {
		kite_why(r, "%s ('%s'): read after the refused write: %d",
			 e->disk->disk_name, e->serial, err);
		if (err == -ETIMEDOUT)
			buf = NULL;
		goto out;
	}
	if (memcmp(before, buf, bytes)) {
		kite_why(r, "%s ('%s'): the refused write changed sectors %llu+%llu",
			 e->disk->disk_name, e->serial, rg.start, rg.count);
		goto out;
	}
	ok = get_disk_ro(e->disk);
out:
	kite_blk_buf_free(before, rg.count);
	kite_blk_buf_free(buf, rg.count);
	blkdev_put(bdev, FMODE_READ);
	return ok;
}

enum kite_verdict kite_case_blk_read_only_refuses_writes(struct kite_result *r)
{
	return kite_blk_each(r, SIZE_MAX, kite_blk_ro_one, "ro=1");
}
