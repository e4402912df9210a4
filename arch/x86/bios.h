/* Kite's BIOS (bios/) in guest memory, and the classic real-mode boot of a
 * bzImage through it (`kite run --boot bios`).
 *
 * The BIOS image is built from bios/bios.S and linked into kite itself.
 * x86_bios_install() copies it to 0xF0000-0xFFFFF (the ACPI and MP tables
 * at 0xE0000-0xEFFFF stay untouched), writes the interrupt vector table at
 * 0x0 so that every vector points into it, fills the BIOS data area at
 * 0x400 (EBDA segment, 639 KiB of conventional memory, COM1, an 80x25 text
 * display) and hands the BIOS the guest's memory map for INT 15h E820h,
 * E801h and 88h.
 *
 * x86_bios_load_linux() then loads a bzImage the way a PC boot loader does
 * (Documentation/x86/boot.rst, "Loading the rest of the kernel"):
 *
 *   0x90000   real-mode setup code, (setup_sects + 1) sectors, with the
 *             loader's fields written into its setup header
 *   0x9DE00   end of the setup heap (heap_end_ptr, relative to 0x90000)
 *   0x9E000   top of the real-mode stack (ss:sp = 9000:E000) and the
 *             kernel command line
 *   0x9FC00   EBDA (the MP floating pointer lives there)
 *   0x100000  protected-mode kernel (LOADED_HIGH)
 *   initrd    as high as possible below initrd_addr_max and 4 GiB
 *
 * and fills the entry state: real mode at 9020:0000 with ds = es = fs =
 * gs = ss = 0x9000 and sp = 0xE000.  The guest's own setup code then asks
 * the BIOS for memory and video, switches to protected mode and runs the
 * kernel's decompressor: the most compatible path on hardware KVM, slow on
 * a PVM host, where real mode and the decompressor run emulated. */
#ifndef KITE_ARCH_X86_BIOS_H
#define KITE_ARCH_X86_BIOS_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/boot.h"
#include "arch/x86/e820.h"
#include "vmm/memory.h"

#define X86_BIOS_GPA            0x000F0000ULL
#define X86_BIOS_SIZE           0x00010000ULL

/* The real-mode boot area (boot.rst "Sample boot configuration"). */
#define X86_BIOS_SETUP_GPA      0x00090000ULL
#define X86_BIOS_SETUP_SEG      0x9000
#define X86_BIOS_HEAP_END       0xE000      /* offset in the setup segment */
#define X86_BIOS_CMDLINE_GPA    (X86_BIOS_SETUP_GPA + X86_BIOS_HEAP_END)
#define X86_BIOS_CMDLINE_MAX    (X86_EBDA_GPA - X86_BIOS_CMDLINE_GPA - 1)
#define X86_BIOS_KERNEL_GPA     0x00100000ULL

/* Copy the BIOS image to X86_BIOS_GPA, write the IVT and the BIOS data
 * area, and give the BIOS |map| (at most 128 entries) for INT 15h.
 * Returns 0, -EFAULT when low memory is not RAM, -E2BIG for a map that
 * does not fit, -ENOEXEC if the built-in image is malformed (a build
 * error); |err| says which. */
int x86_bios_install(struct guest_memory *mem, const struct e820_entry *map,
		     unsigned nr, char *err, size_t errlen);

struct x86_bios_linux_params {
	const char *kernel_path;   /* for messages */
	const uint8_t *image;      /* the whole bzImage */
	size_t image_size;
	const uint8_t *initrd;     /* NULL: none */
	size_t initrd_size;
	const char *initrd_path;   /* for messages */
	const char *cmdline;       /* NULL: empty */
};

struct x86_bios_linux_info {
	uint16_t protocol_version;
	char kernel_version[128];  /* from the setup header, or "" */
	uint32_t setup_size;       /* bytes at X86_BIOS_SETUP_GPA */
	uint32_t kernel_size;      /* protected-mode bytes at 1 MiB */
	uint64_t kernel_end;       /* end of what the kernel may use while
				    * it decompresses (init_size) */
	uint64_t initrd_start;     /* 0 when no initrd */
	uint64_t initrd_size;
};

/* Install the BIOS (memory map from e820_from_guest_memory()), load the
 * bzImage, command line and initrd as above and fill |entry| for
 * x86_vcpu_enter().  |info| may be NULL.  Returns 0 or a negative errno
 * with the object and the reason in |err| ("kernel 'PATH': ...",
 * "initrd 'PATH': ...", "command line: ..."):
 *   -ENOEXEC  not a bzImage, protocol < 2.02, truncated or oversized setup
 *   -ERANGE   the kernel needs more RAM than the guest has
 *   -E2BIG    command line too long, or the initrd does not fit
 *   -EFAULT   boot area below 1 MiB not RAM */
int x86_bios_load_linux(struct guest_memory *mem,
			const struct x86_bios_linux_params *p,
			struct x86_boot_entry *entry,
			struct x86_bios_linux_info *info,
			char *err, size_t errlen);

#endif
