/* struct vm_config: everything `kite run` was asked for, parsed once.
 * Nothing downstream of the command line reads option strings. */
#ifndef KITE_VMM_CONFIG_H
#define KITE_VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define VM_CONFIG_MAX_VCPUS 64
#define VM_CONFIG_MAX_SERIAL 4
#define VM_CONFIG_MAX_DEVICES 16
#define VM_CONFIG_MAX_DEVICE_PARAMS 10

enum console_kind {
	CONSOLE_SERIAL,   /* COM1 on stdio (default) */
	CONSOLE_VIRTIO,   /* virtio-console port 0 on stdio (hvc0) */
	CONSOLE_NONE,     /* guest output discarded, stdin not read */
};

enum reboot_action {
	REBOOT_EXIT,      /* a guest reset ends kite (default) */
	REBOOT_RESTART,   /* a guest reset restarts the VM */
};

enum boot_protocol {
	BOOT_AUTO,        /* by image: multiboot, or Linux 64-bit boot */
	BOOT_LINUX64,     /* Linux: host-unpacked vmlinux, 64-bit entry */
	BOOT_PVH,         /* Linux: host-unpacked vmlinux, PVH entry */
	BOOT_BZIMAGE64,   /* Linux: bzImage as is, guest decompresses */
	BOOT_BIOS,        /* Linux: bzImage real-mode entry via Kite's BIOS */
};

/* How a virtio device reaches the guest (--device ...,transport=T). */
enum device_transport {
	TRANSPORT_DEFAULT = 0,      /* --transport, else pci */
	TRANSPORT_PCI,              /* virtio-pci modern (1.x only) */
	TRANSPORT_PCI_TRANSITIONAL, /* virtio-pci modern + legacy I/O BAR */
	TRANSPORT_PCI_LEGACY,       /* virtio-pci legacy (0.9.5) only */
	TRANSPORT_MMIO,             /* virtio-mmio version 2, in ACPI */
	TRANSPORT_MMIO_LEGACY,      /* virtio-mmio version 1 (legacy), in ACPI */
};

struct device_kind; /* vmm/devices.h */

/* One --device: its kind (looked up and checked while parsing), its
 * transport and the kind's own KEY=VALUE parameters, already split and
 * validated by the kind's check hook. */
struct device_config {
	const struct device_kind *kind;
	enum device_transport transport;
	unsigned nr_params;
	struct {
		uint8_t key, value;    /* offsets into text[] */
	} params[VM_CONFIG_MAX_DEVICE_PARAMS];
	char text[240];            /* "key\0value\0..." (no pointers, so a
				      vm_config can be copied) */
};

struct vm_config {
	const char *kernel_path;   /* -k: kernel image (required) */
	const char *initrd_path;   /* -i: initrd / multiboot module, or NULL */
	const char *cmdline;       /* -p: kernel parameters, "" if none */
	const char *name;          /* -n: VM name, defaults to "kite-PID" */
	uint64_t memory_size;      /* -m: bytes of guest RAM */
	unsigned nr_vcpus;         /* -c: vCPU count */
	enum console_kind console; /* --console */
	unsigned nr_serial;        /* --serial N: COM1..COMN present (1..4) */
	const char *hugetlb_dir;   /* --hugetlb DIR, or NULL */
	enum reboot_action reboot; /* --reboot=exit|restart */
	enum boot_protocol boot;   /* --boot */
	enum device_transport default_transport; /* --transport */
	unsigned nr_devices;       /* --device, in command-line order */
	struct device_config devices[VM_CONFIG_MAX_DEVICES];
};

#endif
