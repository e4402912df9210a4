// SPDX-License-Identifier: GPL-2.0
/*
 * Kite's in-kernel agent: virtio-console ports (virtio 1.2 §5.3) through
 * Linux's virtio_console driver, with a peer on the host end of each port.
 *
 * Command line:
 *
 *	kite_agent.console_ports=ENTRY[,ENTRY...]
 *	    ENTRY = ID/in=LEN:SEED/out=LEN:SEED: port ID of the (first)
 *	    console device, a generic port (/dev/vportNpID).  LEN up to
 *	    32768, SEED a 32-bit number (kite_pattern_fill).
 *
 * The exchange on each port, in order:
 *	host -> guest   LEN(in) bytes of the pattern of SEED(in)
 *	guest -> host   LEN(out) bytes of the pattern of SEED(out)
 *	host -> guest   one byte: 'Y' if the host got exactly those, else 'N'
 * The host peer (tests/guest-kernel/host.py) connects to Kite's socket of
 * the port before the guest opens it.  The last byte also tells the guest
 * that its data left the VM before the agent ends it.
 */
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/virtio.h>
#include <uapi/linux/virtio_ids.h>

#include "agent.h"

static char *kite_console_ports;
module_param_named(console_ports, kite_console_ports, charp, 0444);
MODULE_PARM_DESC(console_ports, "virtio-console ports to exchange data on (see console.c)");

#define KITE_PORT_MAX_LEN 32768
#define KITE_PORT_CHUNK 4096
/* Each stage of the exchange; the host peer is ready before the guest. */
#define KITE_PORT_STAGE_MS 30000
#define KITE_PORT_APPEAR_MS 30000

struct kite_port_find {
	unsigned int id;
	struct device *console;	/* the first virtio console device */
	struct device *port;
	char name[32];
};

static int kite_port_child(struct device *dev, void *data)
{
	struct kite_port_find *pf = data;
	unsigned int vdev_index, id;

	if (sscanf(dev_name(dev), "vport%up%u", &vdev_index, &id) != 2 ||
	    id != pf->id || !dev->devt)
		return 0;
	pf->port = get_device(dev);
	strscpy(pf->name, dev_name(dev), sizeof(pf->name));
	return 1;
}

static int kite_console_find(struct virtio_device *vdev, void *data)
{
	struct kite_port_find *pf = data;

	if (vdev->id.device != VIRTIO_ID_CONSOLE ||
	    strcmp(kite_dev_driver(&vdev->dev), "virtio_console"))
		return 0;
	pf->console = &vdev->dev;
	device_for_each_child(&vdev->dev, pf, kite_port_child);
	return 1;
}

struct kite_port_job {
	struct file *f;
	u32 in_len, out_len;
	u8 *want_in, *out;
	/* What happened, for the report. */
	const char *stage;
	size_t done;		/* bytes of the stage that went through */
	int err;
	size_t bad_at;		/* first mismatching byte of "in", or -1 */
	u8 bad_want, bad_got, ack;
	u8 buf[KITE_PORT_CHUNK];
};

/* Read until @len bytes came, the deadline passed or an error. */
static int kite_port_read(struct kite_port_job *j, void __user *ubuf,
			  u8 *dst, size_t len, unsigned long deadline)
{
	j->done = 0;
	while (j->done < len) {
		loff_t pos = 0;
		ssize_t n = vfs_read(j->f, ubuf, min_t(size_t, len - j->done,
						       KITE_PORT_CHUNK), &pos);

		/* 0: no host peer connected (yet); -EAGAIN: no data yet. */
		if (n == 0 || n == -EAGAIN) {
			if (time_after(jiffies, deadline))
				return -ETIME;
			msleep(10);
			continue;
		}
		if (n < 0)
			return n;
		if (copy_from_user(dst + j->done, ubuf, n))
			return -EFAULT;
		j->done += n;
	}
	return 0;
}

static int kite_port_exchange(void *ctx, void __user *ubuf, size_t ulen)
{
	struct kite_port_job *j = ctx;
	unsigned long deadline;
	u8 *got;
	size_t i;
	int err;

	got = vmalloc(j->in_len);
	if (!got)
		return -ENOMEM;

	j->stage = "receiving the host's bytes";
	deadline = jiffies + msecs_to_jiffies(KITE_PORT_STAGE_MS);
	err = kite_port_read(j, ubuf, got, j->in_len, deadline);
	for (i = 0; i < j->done; i++) {
		if (got[i] != j->want_in[i]) {
			j->bad_at = i;
			j->bad_want = j->want_in[i];
			j->bad_got = got[i];
			break;
		}
	}
	vfree(got);
	if (err)
		return err;
	if (j->bad_at != (size_t)-1)
		return -EILSEQ;

	j->stage = "sending the guest's bytes";
	deadline = jiffies + msecs_to_jiffies(KITE_PORT_STAGE_MS);
	j->done = 0;
	while (j->done < j->out_len) {
		size_t n = min_t(size_t, j->out_len - j->done, KITE_PORT_CHUNK);
		loff_t pos = 0;
		ssize_t w;

		if (copy_to_user(ubuf, j->out + j->done, n))
			return -EFAULT;
		w = vfs_write(j->f, ubuf, n, &pos);
		if (w == -EAGAIN) {	/* host gone, or the queue is full */
			if (time_after(jiffies, deadline))
				return -ETIME;
			msleep(10);
			continue;
		}
		if (w < 0)
			return w;
		j->done += w;
	}

	j->stage = "waiting for the host's verdict byte";
	deadline = jiffies + msecs_to_jiffies(KITE_PORT_STAGE_MS);
	return kite_port_read(j, ubuf, &j->ack, 1, deadline);
}

/* Parse "ID/in=LEN:SEED/out=LEN:SEED". */
static int kite_parse_port_entry(char *s, unsigned int *id, u32 *in_len,
				 u32 *in_seed, u32 *out_len, u32 *out_seed)
{
	char *field = strsep(&s, "/");
	bool have_in = false, have_out = false;

	if (kstrtouint(field, 10, id))
		return -EINVAL;
	while ((field = strsep(&s, "/")) != NULL) {
		unsigned int len;
		unsigned long long seed;
		char tail;

		if (sscanf(field, "in=%u:%lli%c", &len, &seed, &tail) == 2) {
			*in_len = len;
			*in_seed = seed;
			have_in = true;
		} else if (sscanf(field, "out=%u:%lli%c", &len, &seed, &tail) == 2) {
			*out_len = len;
			*out_seed = seed;
			have_out = true;
		} else {
			return -EINVAL;
		}
		if (!len || len > KITE_PORT_MAX_LEN || seed > U32_MAX)
			return -EINVAL;
	}
	return have_in && have_out ? 0 : -EINVAL;
}

/* One port's exchange; 0 if it passed, else the facts are in @r. */
static int kite_port_test(struct kite_result *r, unsigned int id, u32 in_len,
			  u32 in_seed, u32 out_len, u32 out_seed)
{
	struct kite_port_find pf = { .id = id };
	struct kite_port_job *j;
	unsigned long deadline = jiffies + msecs_to_jiffies(KITE_PORT_APPEAR_MS);
	struct file *f;
	int err;

	/* Ports arrive by control messages after the driver probed. */
	for (;;) {
		pf.console = NULL;
		kite_virtio_for_each(kite_console_find, &pf);
		if (pf.port || time_after(jiffies, deadline))
			break;
		msleep(20);
	}
	if (!pf.console) {
		kite_why(r, "port %u: no virtio console device bound to virtio_console", id);
		return -ENODEV;
	}
	if (!pf.port) {
		kite_why(r, "port %u: no vportNp%u under %s after %d ms", id, id,
			 dev_name(pf.console), KITE_PORT_APPEAR_MS);
		return -ENODEV;
	}
	f = kite_open_chrdev(pf.name, pf.port->devt, O_RDWR | O_NONBLOCK);
	put_device(pf.port);
	if (IS_ERR(f)) {
		kite_why(r, "%s: open: %ld", pf.name, PTR_ERR(f));
		return PTR_ERR(f);
	}

	j = kvzalloc(sizeof(*j), GFP_KERNEL);
	if (j) {
		j->want_in = vmalloc(in_len);
		j->out = vmalloc(out_len);
	}
	if (!j || !j->want_in || !j->out) {
		if (j) {
			vfree(j->want_in);
			vfree(j->out);
		}
		kvfree(j);
		filp_close(f, NULL);
		kite_why(r, "%s: out of memory", pf.name);
		return -ENOMEM;
	}
	j->f = f;
	j->in_len = in_len;
	j->out_len = out_len;
	j->bad_at = (size_t)-1;
	j->stage = "starting";
	kite_pattern_fill(j->want_in, in_len, in_seed);
	kite_pattern_fill(j->out, out_len, out_seed);

	err = kite_user_io(kite_port_exchange, j, KITE_PORT_CHUNK,
			   3 * KITE_PORT_STAGE_MS + 5000);
	if (err == -ETIMEDOUT) {
		/* The exchange thread is stuck in a file operation: leave j. */
		kite_why(r, "%s: %s: stuck in a read or write", pf.name, j->stage);
		return err;
	}
	if (err == -EILSEQ)
		kite_why(r, "%s: byte %zu of %u from the host is %#04x, want %#04x",
			 pf.name, j->bad_at, in_len, j->bad_got, j->bad_want);
	else if (err == -ETIME)
		kite_why(r, "%s: %s: %zu of %u bytes after %d ms", pf.name,
			 j->stage, j->done,
			 !strncmp(j->stage, "rec", 3) ? in_len :
			 !strncmp(j->stage, "sen", 3) ? out_len : 1,
			 KITE_PORT_STAGE_MS);
	else if (err)
		kite_why(r, "%s: %s: error %d after %zu bytes", pf.name, j->stage,
			 err, j->done);
	else if (j->ack != 'Y') {
		kite_why(r, "%s: the host peer says it did not get the %u bytes sent (verdict byte %#04x)",
			 pf.name, out_len, j->ack);
		err = -EIO;
	}
	filp_close(f, NULL);
	vfree(j->want_in);
	vfree(j->out);
	kvfree(j);
	return err;
}

enum kite_verdict kite_case_console_ports_carry_data_both_ways(struct kite_result *r)
{
	char *spec, *p, *entry;
	unsigned int bad = 0, n = 0;

	if (!kite_console_ports || !*kite_console_ports)
		return kite_skip(r, "kite_agent.console_ports not given");
	spec = kstrdup(kite_console_ports, GFP_KERNEL);
	if (!spec)
		return kite_fail(r, "out of memory");
	p = spec;
	while ((entry = strsep(&p, ",")) != NULL) {
		unsigned int id;
		u32 in_len, in_seed, out_len, out_seed;
		char copy[64];

		strscpy(copy, entry, sizeof(copy));
		n++;
		if (kite_parse_port_entry(entry, &id, &in_len, &in_seed,
					  &out_len, &out_seed)) {
			kite_why(r, "kite_agent.console_ports entry %u unparsable: '%s'",
				 n, copy);
			bad++;
			continue;
		}
		if (kite_port_test(r, id, in_len, in_seed, out_len, out_seed))
			bad++;
	}
	kfree(spec);
	return bad ? KITE_FAIL : KITE_PASS;
}
