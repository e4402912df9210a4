/* Kernel loading for x86: read the image, recognise its format, hand it to
 * the right boot protocol. */
#ifndef KITE_ARCH_X86_LOADER_H
#define KITE_ARCH_X86_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/boot.h"
#include "vmm/config.h"
#include "vmm/memory.h"

enum x86_kernel_format {
	X86_KERNEL_UNKNOWN,
	X86_KERNEL_MULTIBOOT, /* ELF32 (or a.out kludge) with a multiboot header */
	X86_KERNEL_BZIMAGE,   /* Linux boot protocol image ("HdrS") */
	X86_KERNEL_ELF64,     /* vmlinux */
};

enum x86_kernel_format x86_kernel_detect(const uint8_t *image, size_t size);

/* What the VM tells the loader beyond the user's configuration. */
struct x86_load_context {
	uint64_t rsdp_gpa;    /* ACPI RSDP already written to guest memory */
	bool pvm_profile;     /* add the PVM kernel parameters (arch/x86/pvm.h) */
	uint64_t ecam_base;   /* PCI ECAM window, reserved in e820; size 0: none */
	uint64_t ecam_size;
	/* Filled in: the Linux kernel's version string ("" otherwise) and
	 * the guest-physical range its image was loaded to. */
	char kernel_version[128];
	uint64_t kernel_start, kernel_end;
};

/* Load cfg->kernel_path (and initrd, command line) into |mem| and fill
 * |entry|; *format says what the kernel was.  Returns 0 or -errno with
 * "kernel 'PATH': reason" (or "initrd 'PATH': ...") in |err|. */
int x86_load_kernel(struct guest_memory *mem, const struct vm_config *cfg,
		    struct x86_load_context *ctx,
		    struct x86_boot_entry *entry,
		    enum x86_kernel_format *format, char *err, size_t errlen);

/* Read a whole file into a malloc'd buffer; -errno on failure. */
int x86_read_file(const char *path, uint8_t **data, size_t *size);

#endif
