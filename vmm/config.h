/* struct vm_config: everything `kite run` was asked for, parsed once.
 * Nothing downstream of the command line reads option strings. */
#ifndef KITE_VMM_CONFIG_H
#define KITE_VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define VM_CONFIG_MAX_VCPUS 64
#define VM_CONFIG_MAX_SERIAL 4

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
};

#endif
