/* The VM's virtio devices and their wiring; see devices.h. */
#include "vmm/devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/platform.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/pci.h"
#include "virtio/rng.h"
#include "vmm/irq.h"
#include "vmm/log.h"
#include "vmm/pci.h"
#include "vmm/vm.h"

/* ---- device kinds ----------------------------------------------------------- */

static int rng_create(const struct device_config *dc,
		      const struct guest_memory *mem, const char *name,
		      struct virtio_device **out, char *err, size_t errlen)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int rc;

	(void)dc;
	if (!rng)
		return -ENOMEM;
	rc = virtio_rng_init(rng, name, mem);
	if (rc) {
		snprintf(err, errlen, "%s: %s", name, strerror(-rc));
		free(rng);
		return rc;
	}
	*out = &rng->vdev;
	return 0;
}

static void rng_destroy(struct virtio_device *dev)
{
	struct virtio_rng *rng = (struct virtio_rng *)((char *)dev -
					offsetof(struct virtio_rng, vdev));

	virtio_rng_destroy(rng);
	free(rng);
}

/* --device console[,port=NAME:SOCKET]...: port 0 (the VM's console with
 * --console virtio) plus one UNIX-socket port per port= parameter. */
static int console_check_param(const char *key, const char *value, char *err,
			       size_t errlen)
{
	const char *colon = strchr(value, ':');

	if (strcmp(key, "port") != 0) {
		snprintf(err, errlen, "unknown parameter '%s' (port=NAME:SOCKET)",
			 key);
		return -EINVAL;
	}
	if (!colon || colon == value || !colon[1] ||
	    (size_t)(colon - value) > VIRTIO_CONSOLE_NAME_MAX) {
		snprintf(err, errlen,
			 "port '%s': expected NAME:SOCKET, NAME 1-%d bytes",
			 value, VIRTIO_CONSOLE_NAME_MAX);
		return -EINVAL;
	}
	return 0;
}

static int console_create(const struct device_config *dc,
			  const struct guest_memory *mem, const char *name,
			  struct virtio_device **out, char *err, size_t errlen)
{
	struct virtio_console_socket_port ports[VM_CONFIG_MAX_DEVICE_PARAMS];
	char names[VM_CONFIG_MAX_DEVICE_PARAMS][VIRTIO_CONSOLE_NAME_MAX + 1];
	struct virtio_console_options o = { .sockets = ports };
	struct virtio_console *con;
	char why[200] = "";
	int rc;

	for (unsigned i = 0; i < dc->nr_params; i++) {
		const char *v = dc->text + dc->params[i].value;
		const char *colon = strchr(v, ':'); /* checked while parsing */
		size_t len = (size_t)(colon - v);

		if (strcmp(dc->text + dc->params[i].key, "port") != 0)
			continue;
		memcpy(names[o.nr_sockets], v, len);
		names[o.nr_sockets][len] = '\0';
		ports[o.nr_sockets] = (struct virtio_console_socket_port){
			names[o.nr_sockets], colon + 1 };
		o.nr_sockets++;
	}
	con = calloc(1, sizeof(*con));
	if (!con)
		return -ENOMEM;
	rc = virtio_console_init(con, name, mem, &o, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "device %s: %s", name, why);
		free(con);
		return rc;
	}
	*out = &con->vdev;
	return 0;
}

static struct virtio_console *to_console(struct virtio_device *dev)
{
	return (struct virtio_console *)((char *)dev -
					 offsetof(struct virtio_console, vdev));
}

static void console_destroy(struct virtio_device *dev)
{
	struct virtio_console *con = to_console(dev);

	virtio_console_destroy(con);
	free(con);
}

/* --device blk,path=FILE[,ro=on][,format=raw|qcow2][,serial=S]
 * [,cache=writeback|writethrough|none|unsafe][,queues=N][,poll=US]
 * [,backing=on|off][,shared=on]; also spelled -d FILE[,ro][,shared][,...]
 * (vmm/cli.c). */
static int blk_check_param(const char *key, const char *value, char *err,
			   size_t errlen)
{
	unsigned long n;
	char *end;

	if (strcmp(key, "path") == 0) {
		if (access(value, R_OK) < 0) {
			snprintf(err, errlen, "disk '%s': %s", value,
				 strerror(errno));
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "ro") == 0 || strcmp(key, "backing") == 0 ||
	    strcmp(key, "shared") == 0) {
		if (strcmp(value, "on") && strcmp(value, "off")) {
			snprintf(err, errlen, "%s=%s: expected on or off", key,
				 value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "format") == 0) {
		if (strcmp(value, "raw") && strcmp(value, "qcow2") &&
		    strcmp(value, "auto")) {
			snprintf(err, errlen,
				 "format=%s: expected raw, qcow2 or auto", value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "serial") == 0) {
		if (strlen(value) > VIRTIO_BLK_ID_BYTES) {
			snprintf(err, errlen, "serial '%s': at most %d bytes",
				 value, VIRTIO_BLK_ID_BYTES);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "cache") == 0) {
		if (strcmp(value, "writeback") && strcmp(value, "writethrough") &&
		    strcmp(value, "none") && strcmp(value, "unsafe")) {
			snprintf(err, errlen,
				 "cache=%s: expected writeback, writethrough, "
				 "none or unsafe", value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "queues") == 0) {
		n = strtoul(value, &end, 10);
		if (*end || n < 1 || n > VIRTIO_BLK_MAX_QUEUES) {
			snprintf(err, errlen, "queues=%s: expected 1-%d", value,
				 VIRTIO_BLK_MAX_QUEUES);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "poll") == 0) {
		n = strtoul(value, &end, 10);
		if (!*value || *end || n > VIRTIO_BLK_MAX_POLL_US) {
			snprintf(err, errlen,
				 "poll=%s: expected microseconds, 0-%d", value,
				 VIRTIO_BLK_MAX_POLL_US);
			return -EINVAL;
		}
		return 0;
	}
	snprintf(err, errlen,
		 "unknown parameter '%s' (path, ro, format, serial, cache, "
		 "queues, poll, backing, shared)", key);
	return -EINVAL;
}

static bool param_on(const struct device_config *dc, const char *key)
{
	const char *v = device_config_param(dc, key);

	return v && strcmp(v, "on") == 0;
}

int devices_blk_options(const struct device_config *dc,
			struct disk_options *o, char *err, size_t errlen)
{
	const char *format = device_config_param(dc, "format");
	const char *cache = device_config_param(dc, "cache");
	const char *backing = device_config_param(dc, "backing");

	*o = (struct disk_options){ .format = DISK_FORMAT_AUTO };
	o->read_only = param_on(dc, "ro");
	if (format && strcmp(format, "raw") == 0)
		o->format = DISK_FORMAT_RAW;
	else if (format && strcmp(format, "qcow2") == 0)
		o->format = DISK_FORMAT_QCOW2;
	if (cache && strcmp(cache, "none") == 0)
		o->direct = true;
	o->no_backing = backing && strcmp(backing, "off") == 0;
	o->shared = param_on(dc, "shared");
	/* A writable disk takes a write lock on the whole image, which no
	 * other user can share: asking for it would be a promise kite
	 * does not keep. */
	if (o->shared && !o->read_only) {
		snprintf(err, errlen, "disk '%s': shared needs ro (only a "
			 "read-only disk can share its image with a writer)",
			 device_config_param(dc, "path"));
		return -EINVAL;
	}
	return 0;
}

/* "disk 'PATH': WHY" into |err|; when it does not fit, the middle of WHY
 * gives way, not its end: in a backing chain's reason the end is the
 * reason itself, the middle the chain's names. */
static void disk_error(char *err, size_t errlen, const char *path,
		       const char *why)
{
	int head = snprintf(err, errlen, "disk '%s': ", path);
	size_t len = strlen(why), room, tail;

	if (head < 0 || (size_t)head >= errlen)
		return;
	room = errlen - (size_t)head - 1;
	if (len <= room) {
		memcpy(err + head, why, len + 1);
		return;
	}
	if (room < 16) {
		memcpy(err + head, why + len - room, room + 1);
		return;
	}
	tail = room / 2;
	memcpy(err + head, why, room - tail - 5);
	memcpy(err + head + room - tail - 5, " ... ", 5);
	memcpy(err + head + room - tail, why + len - tail, tail + 1);
}

static int blk_create(const struct device_config *dc,
		      const struct guest_memory *mem, const char *name,
		      struct virtio_device **out, char *err, size_t errlen)
{
	const char *path = device_config_param(dc, "path");
	const char *cache = device_config_param(dc, "cache");
	const char *queues = device_config_param(dc, "queues");
	const char *poll = device_config_param(dc, "poll");
	struct disk_options o;
	struct virtio_blk_options bo = {
		.serial = device_config_param(dc, "serial"),
		.num_queues = queues ? (unsigned)strtoul(queues, NULL, 10) : 1,
		.poll_us = poll ? (unsigned)strtoul(poll, NULL, 10)
				: VIRTIO_BLK_DEFAULT_POLL_US,
	};
	struct virtio_blk *blk;
	struct disk *disk;
	char *why;
	int rc;

	if (!path) {
		snprintf(err, errlen, "device %s: blk needs path=FILE", name);
		return -EINVAL;
	}
	rc = devices_blk_options(dc, &o, err, errlen);
	if (rc)
		return rc;
	bo.writethrough = cache && strcmp(cache, "writethrough") == 0;
	bo.ignore_flush = cache && strcmp(cache, "unsafe") == 0;
	/* A backing chain's reason nests one "backing file 'PATH': " per
	 * level: room for the deepest chain of long names, so that its
	 * end, the reason itself, is never the part cut off. */
	why = calloc(1, DEVICES_DISK_WHY_MAX);
	if (!why)
		return -ENOMEM;
	rc = disk_open(path, &o, &disk, why, DEVICES_DISK_WHY_MAX);
	if (rc) {
		disk_error(err, errlen, path, why);
		free(why);
		return rc;
	}
	free(why);
	blk = calloc(1, sizeof(*blk));
	if (!blk) {
		disk_close(disk);
		return -ENOMEM;
	}
	rc = virtio_blk_init(blk, name, mem, disk, &bo);
	if (rc) {
		snprintf(err, errlen, "disk '%s': %s", path, strerror(-rc));
		disk_close(disk);
		free(blk);
		return rc;
	}
	*out = &blk->vdev;
	return 0;
}

static void blk_destroy(struct virtio_device *dev)
{
	struct virtio_blk *blk = (struct virtio_blk *)((char *)dev -
					offsetof(struct virtio_blk, vdev));
	struct disk *disk = blk->disk;
	int rc;

	virtio_blk_destroy(blk);
	/* Flushes and, for qcow2, marks the image clean. */
	rc = disk_close(disk);
	if (rc)
		kite_error("%s: closing the disk: %s", dev->name, strerror(-rc));
	free(blk);
}

/* One entry per kind `--device` accepts; see devices.h. */
static const struct device_kind device_kinds[] = {
	{ .name = "rng",
	  .summary = "virtio entropy source fed by the host's getrandom()",
	  .create = rng_create,
	  .destroy = rng_destroy },
	{ .name = "console",
	  .summary = "virtio console: port 0 is hvc0 with --console virtio, "
		     "port=NAME:SOCKET adds a port on a UNIX socket",
	  .check_param = console_check_param,
	  .create = console_create,
	  .destroy = console_destroy },
	{ .name = "blk",
	  .summary = "virtio block device on a raw or qcow2 image "
		     "(path=FILE, also -d FILE)",
	  .check_param = blk_check_param,
	  .create = blk_create,
	  .destroy = blk_destroy },
};

#define NR_KINDS (sizeof(device_kinds) / sizeof(device_kinds[0]))

const struct device_kind *devices_find_kind(const char *name)
{
	for (size_t i = 0; i < NR_KINDS; i++)
		if (strcmp(device_kinds[i].name, name) == 0)
			return &device_kinds[i];
	return NULL;
}

const char *devices_kind_names(void)
{
	static char names[256];

	if (!names[0]) {
		size_t n = 0;

		for (size_t i = 0; i < NR_KINDS && n < sizeof(names); i++)
			n += (size_t)snprintf(names + n, sizeof(names) - n,
					      "%s%s", i ? ", " : "",
					      device_kinds[i].name);
	}
	return names;
}

const char *device_config_param(const struct device_config *dc,
				const char *key)
{
	for (unsigned i = 0; i < dc->nr_params; i++)
		if (strcmp(dc->text + dc->params[i].key, key) == 0)
			return dc->text + dc->params[i].value;
	return NULL;
}

void device_config_param_at(const struct device_config *dc, unsigned i,
			    const char **key, const char **value)
{
	*key = dc->text + dc->params[i].key;
	*value = dc->text + dc->params[i].value;
}

/* ---- instances -------------------------------------------------------------- */

struct device_instance {
	const struct device_kind *kind;
	char name[24];
	struct virtio_device *vdev;
	enum device_transport transport;
	struct virtio_pci *pci;
	struct virtio_mmio *mmio;
	struct irq_line *mmio_line;
	uint64_t mmio_base;
	unsigned gsi;
};

struct vm_devices {
	struct irq_router irq;
	bool irq_ready;
	struct pci_host pci;
	bool pci_ready;
	unsigned nr;
	struct device_instance dev[VM_CONFIG_MAX_DEVICES];
	struct virtio_console *stdio_console; /* --console virtio */
};

static uint8_t reset_ctrl_read(void *opaque)
{
	return x86_platform_reset_ctrl_read(opaque);
}

static void reset_ctrl_write(void *opaque, uint8_t value)
{
	x86_platform_reset_ctrl_write(opaque, value);
}

static void mmio_set_irq(void *opaque, int level)
{
	irq_line_set(opaque, level);
}

static const char *transport_name(enum device_transport t)
{
	switch (t) {
	case TRANSPORT_PCI_TRANSITIONAL: return "pci-transitional";
	case TRANSPORT_PCI_LEGACY: return "pci-legacy";
	case TRANSPORT_MMIO: return "mmio";
	case TRANSPORT_MMIO_LEGACY: return "mmio-legacy";
	default: return "pci";
	}
}

static int attach_pci(struct vm_devices *d, struct device_instance *in,
		      unsigned slot, char *err, size_t errlen)
{
	enum virtio_pci_mode mode =
		in->transport == TRANSPORT_PCI_TRANSITIONAL
			? VIRTIO_PCI_TRANSITIONAL
		: in->transport == TRANSPORT_PCI_LEGACY ? VIRTIO_PCI_LEGACY
							: VIRTIO_PCI_MODERN;
	int rc;

	if (slot >= PCI_MAX_SLOTS) {
		snprintf(err, errlen, "device %s: no free PCI slot", in->name);
		return -ENOSPC;
	}
	in->pci = calloc(1, sizeof(*in->pci));
	if (!in->pci)
		return -ENOMEM;
	rc = virtio_pci_init(in->pci, in->vdev, mode);
	if (rc == -ENOTSUP) {
		snprintf(err, errlen,
			 "device %s: transport %s: this device type has no "
			 "legacy PCI interface", in->name,
			 transport_name(in->transport));
		return rc;
	}
	/* INTA# of slot s: GSI 16 + s % 4, the _PRT swizzle of devices.h. */
	in->gsi = DEVICES_PCI_INTX_GSI + slot % 4;
	if (!rc)
		rc = virtio_pci_plug(in->pci, &d->pci, slot, in->gsi);
	if (rc)
		snprintf(err, errlen, "device %s: PCI slot %u: %s", in->name,
			 slot, strerror(-rc));
	return rc;
}

static int attach_mmio(struct vm *vm, struct vm_devices *d,
		       struct device_instance *in, unsigned index, char *err,
		       size_t errlen)
{
	int rc;

	if (index >= ACPI_MAX_MMIO_DEVICES) {
		snprintf(err, errlen, "device %s: too many virtio-mmio devices",
			 in->name);
		return -ENOSPC;
	}
	in->mmio_base = DEVICES_MMIO_BASE + index * DEVICES_MMIO_STRIDE;
	in->gsi = DEVICES_MMIO_GSI + index % 4;
	in->mmio = calloc(1, sizeof(*in->mmio));
	if (!in->mmio)
		return -ENOMEM;
	rc = irq_line_create(&d->irq, in->gsi, &in->mmio_line);
	if (!rc)
		rc = virtio_mmio_init(in->mmio, in->vdev,
				      in->transport == TRANSPORT_MMIO_LEGACY,
				      mmio_set_irq,
				      in->mmio_line);
	if (!rc)
		rc = bus_register(&vm->mmio, in->mmio_base, VIRTIO_MMIO_SIZE,
				  &virtio_mmio_bus_ops, in->mmio, in->name);
	/* §4.2.3.3 notifications: QueueNotify with the queue index. */
	for (unsigned q = 0; q < in->vdev->nr_queues && !rc; q++)
		if (irq_ioeventfd(&d->irq, true, false,
				  in->mmio_base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q,
				  virtio_queue_kick_fd(in->vdev, q)) < 0) {
			/* The trapped write still kicks the queue. */
		}
	if (rc)
		snprintf(err, errlen, "device %s: virtio-mmio at 0x%llx: %s",
			 in->name, (unsigned long long)in->mmio_base,
			 strerror(-rc));
	return rc;
}

int devices_setup(struct vm *vm, char *err, size_t errlen)
{
	const struct vm_config *cfg = vm->cfg;
	struct vm_devices *d = calloc(1, sizeof(*d));
	unsigned next_slot = 1, next_mmio = 0;
	int rc;

	if (!d)
		return -ENOMEM;
	vm->devices = d;
	rc = irq_router_init(&d->irq, vm->vm_fd);
	if (rc) {
		snprintf(err, errlen, "interrupt routing (KVM_SET_GSI_ROUTING): %s",
			 strerror(-rc));
		return rc;
	}
	d->irq_ready = true;
	rc = pci_host_init(&d->pci, &vm->pio, &vm->mmio,
			   &(struct pci_host_config){
				   .ecam_base = DEVICES_ECAM_BASE,
				   .ecam_buses = DEVICES_ECAM_BUSES,
				   .mmio_base = DEVICES_PCI_MMIO_BASE,
				   .mmio_size = DEVICES_PCI_MMIO_SIZE,
				   .io_base = DEVICES_PCI_IO_BASE,
				   .reset_read = reset_ctrl_read,
				   .reset_write = reset_ctrl_write,
				   .reset_opaque = vm->platform },
			   &irq_pci_platform_ops, &d->irq);
	d->pci_ready = true;
	if (rc) {
		snprintf(err, errlen, "PCI host bridge: %s", strerror(-rc));
		return rc;
	}

	/* --console virtio without a --device console: add one. */
	struct device_config implicit_console = {
		.kind = devices_find_kind("console") };
	unsigned nr_devices = cfg->nr_devices;

	if (cfg->console == CONSOLE_VIRTIO) {
		bool have = false;

		for (unsigned i = 0; i < cfg->nr_devices; i++)
			have |= cfg->devices[i].kind == implicit_console.kind;
		if (!have && nr_devices == VM_CONFIG_MAX_DEVICES) {
			snprintf(err, errlen,
				 "option '--console virtio': no room for a console "
				 "device (at most %d devices)", VM_CONFIG_MAX_DEVICES);
			return -ENOSPC;
		}
		if (!have)
			nr_devices++;
	}
	for (unsigned i = 0; i < nr_devices; i++) {
		const struct device_config *dc = i < cfg->nr_devices
							 ? &cfg->devices[i]
							 : &implicit_console;
		struct device_instance *in = &d->dev[i];
		unsigned n = 0;

		in->kind = dc->kind;
		in->transport = dc->transport != TRANSPORT_DEFAULT
					? dc->transport
					: cfg->default_transport;
		if (in->transport == TRANSPORT_DEFAULT)
			in->transport = TRANSPORT_PCI;
		/* Per-kind numbering: rng0, rng1, ... */
		for (unsigned j = 0; j < i; j++)
			n += cfg->devices[j].kind == dc->kind;
		snprintf(in->name, sizeof(in->name), "%s%u", dc->kind->name, n);
		rc = dc->kind->create(dc, &vm->mem, in->name, &in->vdev, err,
				      errlen);
		if (rc) {
			/* What a device is built from is the user's (an
			 * image, a socket path): exit status 2, not 4. */
			vm->bad_input = rc != -ENOMEM;
			return rc;
		}
		d->nr = i + 1;
		/* --console virtio: port 0 of the first console device is
		 * the VM's console (before the transport reads features). */
		if (cfg->console == CONSOLE_VIRTIO && !d->stdio_console &&
		    dc->kind == implicit_console.kind) {
			d->stdio_console = to_console(in->vdev);
			virtio_console_attach_console(d->stdio_console,
						      vm_console_output, vm);
		}
		if (in->transport == TRANSPORT_MMIO ||
		    in->transport == TRANSPORT_MMIO_LEGACY)
			rc = attach_mmio(vm, d, in, next_mmio++, err, errlen);
		else
			rc = attach_pci(d, in, next_slot++, err, errlen);
		if (rc)
			return rc;
		rc = virtio_device_start(in->vdev);
		if (rc) {
			snprintf(err, errlen, "device %s: thread: %s", in->name,
				 strerror(-rc));
			return rc;
		}
	}
	rc = pci_host_assign_bars(&d->pci);
	if (rc)
		snprintf(err, errlen, "PCI BARs: %s", strerror(-rc));
	return rc;
}

void devices_describe(const struct vm *vm, struct acpi_platform *ap)
{
	static const unsigned intx_gsi[4] = {
		DEVICES_PCI_INTX_GSI, DEVICES_PCI_INTX_GSI + 1,
		DEVICES_PCI_INTX_GSI + 2, DEVICES_PCI_INTX_GSI + 3,
	};
	const struct vm_devices *d = vm->devices;

	ap->ecam_base = DEVICES_ECAM_BASE;
	ap->ecam_bus_end = DEVICES_ECAM_BUSES - 1;
	ap->pci_mmio32_base = DEVICES_PCI_MMIO_BASE;
	ap->pci_mmio32_size = DEVICES_PCI_MMIO_SIZE;
	ap->pci_mmio64_base = ap->pci_mmio64_size = 0;
	acpi_platform_pci_intx_swizzle(ap, intx_gsi);
	if (!d)
		return;
	for (unsigned i = 0; i < d->nr; i++)
		if (d->dev[i].mmio)
			acpi_platform_add_mmio(ap, d->dev[i].mmio_base,
					       VIRTIO_MMIO_SIZE, d->dev[i].gsi,
					       true);
}

struct virtio_console *devices_stdio_console(const struct vm *vm)
{
	return vm->devices ? vm->devices->stdio_console : NULL;
}

void devices_destroy(struct vm *vm)
{
	struct vm_devices *d = vm->devices;

	if (!d)
		return;
	/* Stop the queue threads first: after this nothing raises an
	 * interrupt, so the host's MSI vectors can go. */
	for (unsigned i = 0; i < d->nr; i++)
		if (d->dev[i].vdev)
			d->dev[i].kind->destroy(d->dev[i].vdev);
	if (d->pci_ready)
		pci_host_destroy(&d->pci);
	if (d->irq_ready)
		irq_router_destroy(&d->irq);
	for (unsigned i = 0; i < d->nr; i++) {
		free(d->dev[i].pci);
		free(d->dev[i].mmio);
	}
	free(d);
	vm->devices = NULL;
}
