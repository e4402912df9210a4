/* The VM's virtio devices: what `--device` can name, and the wiring of
 * each device to its transport, interrupts and firmware description.
 *
 * Adding a device kind is one entry in the device_kinds[] table of
 * devices.c: a name, a one-line summary, an optional check_param hook
 * (run while the command line is parsed, so a bad parameter is a usage
 * error) and create/destroy hooks that build the device model from its
 * struct device_config (parameters via device_config_param()).  Transport,
 * slot, GSI, ioeventfds, ACPI and the queue thread are handled here for
 * every kind alike.
 *
 * Machine layout (x86):
 *   PCI host bridge, always present (it also decodes 0xCF9): ECAM at
 *   DEVICES_ECAM_BASE for buses 0-255 (MCFG), 32-bit BAR window
 *   DEVICES_PCI_MMIO_BASE..+256 MiB, I/O BARs in 0x1000-0xFFFF.
 *   PCI devices take slots 1, 2, ... in command-line order; INTA# of slot
 *   s is GSI 16 + s % 4 (level, described by the _PRT swizzle); MSI-X
 *   vectors get GSIs from 24 up.
 *   virtio-mmio devices take 4 KiB windows from DEVICES_MMIO_BASE, each
 *   with a level-triggered GSI 20-23 (shared round-robin beyond four),
 *   described to the guest as ACPI LNRO0005 devices. */
#ifndef KITE_VMM_DEVICES_H
#define KITE_VMM_DEVICES_H

#include <stdbool.h>
#include <stddef.h>

#include "virtio/virtio.h"
#include "vmm/config.h"
#include "vmm/memory.h"

#define DEVICES_ECAM_BASE      0xE0000000ULL
#define DEVICES_ECAM_BUSES     256
#define DEVICES_PCI_MMIO_BASE  0xC0000000ULL
#define DEVICES_PCI_MMIO_SIZE  0x10000000ULL
#define DEVICES_PCI_IO_BASE    0x1000
#define DEVICES_MMIO_BASE      0xD0000000ULL
#define DEVICES_MMIO_STRIDE    0x1000ULL
#define DEVICES_PCI_INTX_GSI   16   /* 16..19 */
#define DEVICES_MMIO_GSI       20   /* 20..23 */

struct vm;
struct acpi_platform;
struct virtio_console;

struct device_kind {
	const char *name;        /* KIND in --device KIND[,...] */
	const char *summary;     /* one line for messages and --help */
	/* Validate KEY=VALUE while parsing (NULL: the kind takes none).
	 * Return 0, or a negative errno with a reason in |err|. */
	int (*check_param)(const char *key, const char *value, char *err,
			   size_t errlen);
	/* Build the device model; *out is its struct virtio_device (no
	 * thread started, no transport yet).  |name| lives as long as the
	 * device ("rng0"). */
	int (*create)(const struct device_config *dc,
		      const struct guest_memory *mem, const char *name,
		      struct virtio_device **out, char *err, size_t errlen);
	void (*destroy)(struct virtio_device *dev);
};

/* blk: the disk options a --device blk / -d asks for (parameters as
 * checked while parsing; combinations are checked here).  0, or a
 * negative errno with "disk 'PATH': REASON" in |err|. */
struct disk_options;
int devices_blk_options(const struct device_config *dc,
			struct disk_options *o, char *err, size_t errlen);
/* Room for the reason a disk_open() gives (a backing chain's nests). */
#define DEVICES_DISK_WHY_MAX 65536

/* The kind called |name|, or NULL. */
const struct device_kind *devices_find_kind(const char *name);
/* "rng, ..." -- the kinds there are, for messages. */
const char *devices_kind_names(void);
/* A parameter of a --device, or NULL when it was not given (the first
 * one when the key is repeated). */
const char *device_config_param(const struct device_config *dc,
				const char *key);
/* The |i|th parameter (0 <= i < dc->nr_params), for repeated keys. */
void device_config_param_at(const struct device_config *dc, unsigned i,
			    const char **key, const char **value);

/* Build the PCI host bridge, the interrupt router and every device of
 * vm->cfg on its transport, and start their queue threads.  Needs guest
 * memory, vm->platform (for 0xCF9) and the irqchip. */
int devices_setup(struct vm *vm, char *err, size_t errlen);
/* Describe the host bridge, INTx routing and MMIO devices in |ap|. */
void devices_describe(const struct vm *vm, struct acpi_platform *ap);
/* With --console virtio: the console device whose port 0 is the VM's
 * console (feed it stdin with virtio_console_port0_input()); else NULL. */
struct virtio_console *devices_stdio_console(const struct vm *vm);
/* Stop the device threads and release everything (safe when setup
 * failed half-way or never ran). */
void devices_destroy(struct vm *vm);

#endif
