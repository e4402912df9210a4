// SPDX-License-Identifier: GPL-2.0
/*
 * Kite's in-kernel agent: the entropy device (virtio 1.2 §5.4) through
 * Linux's virtio_rng driver and the hw_random core.
 *
 * Command line:
 *
 *	kite_agent.rng=N   virtio entropy devices Kite was asked for (N > 0)
 *
 * The test kernel builds no other hw_random driver (kite.config), so the
 * bytes /dev/hwrng returns come from the virtio device.
 */
#include <linux/delay.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/kdev_t.h>
#include <linux/miscdevice.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/virtio.h>
#include <uapi/linux/virtio_ids.h>

#include "agent.h"

static unsigned int kite_rng;
module_param_named(rng, kite_rng, uint, 0444);
MODULE_PARM_DESC(rng, "number of virtio entropy devices expected");

#define KITE_RNG_SAMPLE 64
#define KITE_RNG_TIMEOUT_MS 20000

struct kite_rng_count {
	unsigned int total, bound;
	char unbound[64];
};

static int kite_rng_count_one(struct virtio_device *vdev, void *data)
{
	struct kite_rng_count *c = data;

	if (vdev->id.device != VIRTIO_ID_RNG)
		return 0;
	c->total++;
	if (!strcmp(kite_dev_driver(&vdev->dev), "virtio_rng"))
		c->bound++;
	else
		snprintf(c->unbound, sizeof(c->unbound), "%s (driver %s)",
			 dev_name(&vdev->dev), kite_dev_driver(&vdev->dev));
	return 0;
}

struct kite_rng_read {
	struct file *f;
	u8 sample[2][KITE_RNG_SAMPLE];
	int err;
	size_t got;		/* bytes of the sample that failed */
	int which;
};

/* In the user-memory thread: fill both samples from /dev/hwrng. */
static int kite_rng_read_samples(void *ctx, void __user *ubuf, size_t len)
{
	struct kite_rng_read *rd = ctx;
	unsigned long deadline = jiffies + msecs_to_jiffies(KITE_RNG_TIMEOUT_MS - 1000);
	int s;

	for (s = 0; s < 2; s++) {
		size_t got = 0;

		rd->which = s;
		while (got < KITE_RNG_SAMPLE) {
			loff_t pos = 0;
			ssize_t n = vfs_read(rd->f, ubuf, KITE_RNG_SAMPLE - got, &pos);

			if (n == -EAGAIN || n == 0) {
				if (time_after(jiffies, deadline)) {
					rd->got = got;
					return -ENODATA;	/* nothing came in time */
				}
				msleep(5);
				continue;
			}
			if (n < 0) {
				rd->got = got;
				return n;
			}
			if (copy_from_user(rd->sample[s] + got, ubuf, n))
				return -EFAULT;
			got += n;
		}
	}
	return 0;
}

static bool kite_all_equal(const u8 *b, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++)
		if (b[i] != b[0])
			return false;
	return true;
}

enum kite_verdict kite_case_entropy_device_returns_random_bytes(struct kite_result *r)
{
	struct kite_rng_count c = { };
	struct kite_rng_read *rd;
	enum kite_verdict v = KITE_FAIL;
	struct file *f;
	int err;

	if (!kite_rng)
		return kite_skip(r, "kite_agent.rng not given");
	kite_virtio_for_each(kite_rng_count_one, &c);
	if (c.total != kite_rng || c.bound != c.total)
		return kite_fail(r, "%u virtio entropy devices (%u bound to virtio_rng), want %u%s%s",
				 c.total, c.bound, kite_rng,
				 c.unbound[0] ? "; unbound: " : "", c.unbound);

	f = kite_open_chrdev("hwrng", MKDEV(MISC_MAJOR, HWRNG_MINOR),
			     O_RDONLY | O_NONBLOCK);
	if (IS_ERR(f))
		return kite_fail(r, "open /dev/hwrng (10:%d): %ld", HWRNG_MINOR,
				 PTR_ERR(f));
	rd = kzalloc(sizeof(*rd), GFP_KERNEL);
	if (!rd) {
		filp_close(f, NULL);
		return kite_fail(r, "out of memory");
	}
	rd->f = f;
	err = kite_user_io(kite_rng_read_samples, rd, KITE_RNG_SAMPLE,
			   KITE_RNG_TIMEOUT_MS);
	if (err == -ETIMEDOUT)	/* the reader is stuck in read: leave rd to it */
		return kite_fail(r, "/dev/hwrng: a read did not return within %d ms",
				 KITE_RNG_TIMEOUT_MS);
	if (err) {
		kite_why(r, "/dev/hwrng: sample %d: %s after %zu of %d bytes",
			 rd->which + 1, err == -ENODATA ? "no data in time" : "error",
			 rd->got, KITE_RNG_SAMPLE);
		kite_why(r, "error %d", err);
		goto out;
	}
	if (kite_all_equal(rd->sample[0], KITE_RNG_SAMPLE) ||
	    kite_all_equal(rd->sample[1], KITE_RNG_SAMPLE)) {
		kite_why(r, "a %d-byte sample is one repeated byte: %*phN / %*phN",
			 KITE_RNG_SAMPLE, 16, rd->sample[0], 16, rd->sample[1]);
		goto out;
	}
	if (!memcmp(rd->sample[0], rd->sample[1], KITE_RNG_SAMPLE)) {
		kite_why(r, "two %d-byte reads returned the same bytes: %*phN...",
			 KITE_RNG_SAMPLE, 16, rd->sample[0]);
		goto out;
	}
	v = KITE_PASS;
out:
	filp_close(f, NULL);
	kfree(rd);
	return v;
}
