/* Kernel loading for x86: read the image, recognise its format, hand it to
 * the right boot protocol. */
#ifndef KITE_ARCH_X86_LOADER_H
#define KITE_ARCH_X86_LOADER_H

#include <errno.h>
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

/* Whether a load error is bad input (exit status 2: the files, the
 * options) rather than the host failing (4): only -ENOMEM (an allocation
 * failed) and -EFAULT (guest memory kite laid out itself) are the
 * host's.  Loaders report images that do not fit guest RAM as -ERANGE or
 * -E2BIG, never -ENOMEM. */
static inline bool x86_load_bad_input(int rc)
{
	return rc != -ENOMEM && rc != -EFAULT;
}

/* Largest kernel file kite reads (a vmlinux with its symbols is ~60 MiB,
 * a bzImage ~10 MiB). */
#define X86_KERNEL_FILE_MAX (512ULL << 20)

/* Input files (kernel, initrd, multiboot module) must be regular files
 * of non-zero size: open them O_NONBLOCK (a FIFO or device must not block
 * open) and check.  |what| names the object in the reason: "kernel 'x':
 * is a FIFO, not a regular file".  Returns 0 with the fd and its size, or
 * -errno with the reason in |err|. */
int x86_open_input(const char *what, const char *path, int *fd,
		   uint64_t *size, char *err, size_t errlen);

/* The whole input file into a malloc'd buffer, refused unread when larger
 * than |max| ("initrd 'x': N bytes, more than guest RAM (64 MiB)", where
 * |max_what| is "guest RAM").  0 or -errno with the reason in |err|. */
int x86_read_input(const char *what, const char *path, uint64_t max,
		   const char *max_what, uint8_t **data, size_t *size,
		   char *err, size_t errlen);

#endif
