// SPDX-License-Identifier: GPL-2.0
/*
 * Kite's in-kernel agent: which virtio devices the Linux drivers bound,
 * over which transport and which interface (virtio 1.x or legacy).
 *
 * Command line:
 *
 *	kite_agent.virtio=ENTRY[,ENTRY...]
 *	    ENTRY = TYPE[/KEY=VALUE...], TYPE the virtio device ID (decimal:
 *	    2 block, 3 console, 4 entropy, ...), KEY one of
 *	      via=NAME     the transport driver of the parent device
 *	                   (virtio-pci, virtio-mmio)
 *	      modern=0|1   whether VIRTIO_F_VERSION_1 was negotiated
 *	      drv=NAME     the device driver (virtio_blk, virtio_console, ...)
 *	    Devices present and entries pair one to one.  On failure the
 *	    virtio devices present are printed in this same syntax.
 */
#include <linux/device.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>

#include "agent.h"

static char *kite_virtio;
module_param_named(virtio, kite_virtio, charp, 0444);
MODULE_PARM_DESC(virtio, "expected virtio devices (see virtio.c)");

#define KITE_VIRTIO_MAX 32

struct kite_virtio_expect {
	u32 type;
	const char *via, *drv;
	int modern;		/* -1: not checked */
	bool matched;
};

struct kite_virtio_seen {
	struct virtio_device *vdev[KITE_VIRTIO_MAX];
	int n;
	bool overflow;
};

static int kite_virtio_collect(struct virtio_device *vdev, void *data)
{
	struct kite_virtio_seen *s = data;

	if (s->n == KITE_VIRTIO_MAX) {
		s->overflow = true;
		return 1;
	}
	s->vdev[s->n++] = vdev;
	return 0;
}

static const char *kite_virtio_via(struct virtio_device *vdev)
{
	return vdev->dev.parent ? kite_dev_driver(vdev->dev.parent) : "none";
}

static bool kite_virtio_driver_ok(struct virtio_device *vdev)
{
	return vdev->config->get_status(vdev) & VIRTIO_CONFIG_S_DRIVER_OK;
}

static unsigned int kite_virtio_compare(const struct kite_virtio_expect *e,
					struct virtio_device *vdev,
					struct kite_result *r)
{
	const char *n = dev_name(&vdev->dev);
	unsigned int bad = 0;
	int modern = virtio_has_feature(vdev, VIRTIO_F_VERSION_1);

#define KITE_MISMATCH(...) do { bad++; if (r) kite_why(r, __VA_ARGS__); } while (0)
	if (vdev->id.device != e->type)
		KITE_MISMATCH("%s: type %u, want %u", n, vdev->id.device, e->type);
	if (e->via && strcmp(kite_virtio_via(vdev), e->via))
		KITE_MISMATCH("%s (type %u): transport %s, want %s", n,
			      vdev->id.device, kite_virtio_via(vdev), e->via);
	if (e->modern >= 0 && modern != e->modern)
		KITE_MISMATCH("%s (type %u): VERSION_1 %snegotiated", n,
			      vdev->id.device, modern ? "" : "not ");
	if (e->drv && strcmp(kite_dev_driver(&vdev->dev), e->drv))
		KITE_MISMATCH("%s (type %u): driver %s, want %s", n,
			      vdev->id.device, kite_dev_driver(&vdev->dev), e->drv);
	if (vdev->dev.driver && !kite_virtio_driver_ok(vdev))
		KITE_MISMATCH("%s (type %u): driver bound but status %#x lacks DRIVER_OK",
			      n, vdev->id.device, vdev->config->get_status(vdev));
#undef KITE_MISMATCH
	return bad;
}

static int kite_parse_virtio_entry(char *s, struct kite_virtio_expect *e)
{
	char *field = strsep(&s, "/"), *val;

	memset(e, 0, sizeof(*e));
	e->modern = -1;
	if (kstrtou32(field, 10, &e->type))
		return -EINVAL;
	while ((field = strsep(&s, "/")) != NULL) {
		val = strchr(field, '=');
		if (!val)
			return -EINVAL;
		*val++ = '\0';
		if (!strcmp(field, "via"))
			e->via = val;
		else if (!strcmp(field, "drv"))
			e->drv = val;
		else if (!strcmp(field, "modern")) {
			if (kstrtoint(val, 10, &e->modern) || e->modern < 0 ||
			    e->modern > 1)
				return -EINVAL;
		} else
			return -EINVAL;
	}
	return 0;
}

enum kite_verdict kite_case_virtio_drivers_bound(struct kite_result *r)
{
	struct kite_virtio_expect *ex = NULL;
	struct kite_virtio_seen *seen = NULL;
	bool taken[KITE_VIRTIO_MAX] = { };
	enum kite_verdict v = KITE_FAIL;
	unsigned int bad = 0;
	char *spec, *p, *entry;
	int nex = 1, i, d, pass;

	if (!kite_virtio || !*kite_virtio)
		return kite_skip(r, "kite_agent.virtio not given");
	spec = kstrdup(kite_virtio, GFP_KERNEL);
	for (p = spec; p && *p; p++)
		nex += *p == ',';
	ex = kcalloc(nex, sizeof(*ex), GFP_KERNEL);
	seen = kzalloc(sizeof(*seen), GFP_KERNEL);
	if (!spec || !ex || !seen) {
		kite_why(r, "out of memory");
		goto out;
	}
	p = spec;
	for (i = 0; i < nex; i++) {
		entry = strsep(&p, ",");
		if (kite_parse_virtio_entry(entry, &ex[i])) {
			kite_why(r, "kite_agent.virtio entry %d unparsable (near '%s')",
				 i + 1, entry);
			goto out;
		}
	}
	kite_virtio_for_each(kite_virtio_collect, seen);
	if (seen->overflow)
		kite_why(r, "more than %d virtio devices; the rest not checked",
			 KITE_VIRTIO_MAX);

	/* Exact matches first, then any device of the same type. */
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < nex; i++) {
			if (ex[i].matched)
				continue;
			for (d = 0; d < seen->n; d++) {
				if (taken[d])
					continue;
				if (pass == 0 ? !kite_virtio_compare(&ex[i], seen->vdev[d], NULL)
					      : seen->vdev[d]->id.device == ex[i].type)
					break;
			}
			if (d == seen->n)
				continue;
			taken[d] = true;
			ex[i].matched = true;
			if (pass == 1)
				bad += kite_virtio_compare(&ex[i], seen->vdev[d], r);
		}
	}
	for (i = 0; i < nex; i++) {
		if (!ex[i].matched) {
			bad++;
			kite_why(r, "missing virtio type %u%s%s", ex[i].type,
				 ex[i].via ? " via " : "", ex[i].via ?: "");
		}
	}
	for (d = 0; d < seen->n; d++) {
		if (taken[d])
			continue;
		bad++;
		kite_why(r, "unexpected %s: virtio type %u via %s",
			 dev_name(&seen->vdev[d]->dev), seen->vdev[d]->id.device,
			 kite_virtio_via(seen->vdev[d]));
	}
	if (bad || seen->overflow) {
		for (d = 0; d < seen->n; d++) {
			struct virtio_device *vdev = seen->vdev[d];

			kite_diag("virtio present: %u/via=%s/modern=%d/drv=%s (%s under %s, status %#x)",
				  vdev->id.device, kite_virtio_via(vdev),
				  virtio_has_feature(vdev, VIRTIO_F_VERSION_1),
				  kite_dev_driver(&vdev->dev), dev_name(&vdev->dev),
				  vdev->dev.parent ? dev_name(vdev->dev.parent) : "-",
				  vdev->config->get_status(vdev));
		}
	} else {
		v = KITE_PASS;
	}
out:
	kfree(seen);
	kfree(ex);
	kfree(spec);
	return v;
}
