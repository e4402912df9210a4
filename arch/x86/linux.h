/* Loading a Linux kernel: bzImage or ELF vmlinux, with initrd and command
 * line, entered through the 64-bit boot protocol or PVH.
 *
 * Default path (X86_LINUX_BOOT_AUTO / _64): the bzImage's compressed
 * payload (a vmlinux ELF) is unpacked on the host (kernel_unpack.h), its
 * PT_LOAD segments are copied to their physical addresses (16 MiB for
 * Debian's relocatable kernels), and the vCPU starts in 64-bit mode at the
 * vmlinux's own startup_64 with %rsi = boot_params, exactly as the
 * in-kernel decompressor would leave it.  This skips the decompressor,
 * which on a PVM host runs emulated for tens of minutes.
 *
 * Other paths: X86_LINUX_BOOT_PVH enters the vmlinux's
 * XEN_ELFNOTE_PHYS32_ENTRY in 32-bit protected mode with %ebx =
 * hvm_start_info; X86_LINUX_BOOT_BZIMAGE64 loads the bzImage unchanged and
 * enters its 64-bit entry (load address + 0x200) so the guest decompresses
 * itself (fine on hardware KVM, useless on PVM).
 *
 * Guest-physical layout (arch/x86/boot.h): GDT 0x500, boot_params or
 * hvm_start_info (+ module list + memory map) at 0x7000, identity page
 * tables 0x9000-0xEFFF (4 GiB of 2 MiB pages), command line 0x20000,
 * kernel at its p_paddr, initrd at the top of RAM below 4 GiB (and below
 * the kernel's initrd_addr_max). */
#ifndef KITE_ARCH_X86_LINUX_H
#define KITE_ARCH_X86_LINUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/boot.h"
#include "arch/x86/e820.h"
#include "vmm/memory.h"

/* Linux boot protocol (Documentation/x86/boot.rst): the setup header at
 * offset 0x1F1 of a bzImage and of boot_params. */
struct x86_setup_header {
	uint8_t setup_sects;
	uint16_t root_flags;
	uint32_t syssize;
	uint16_t ram_size;
	uint16_t vid_mode;
	uint16_t root_dev;
	uint16_t boot_flag;          /* 0xAA55 */
	uint16_t jump;
	uint32_t header;             /* "HdrS" */
	uint16_t version;
	uint32_t realmode_swtch;
	uint16_t start_sys_seg;
	uint16_t kernel_version;     /* version string at this + 0x200 */
	uint8_t type_of_loader;
	uint8_t loadflags;
	uint16_t setup_move_size;
	uint32_t code32_start;
	uint32_t ramdisk_image;
	uint32_t ramdisk_size;
	uint32_t bootsect_kludge;
	uint16_t heap_end_ptr;
	uint8_t ext_loader_ver;
	uint8_t ext_loader_type;
	uint32_t cmd_line_ptr;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable_kernel;
	uint8_t min_alignment;
	uint16_t xloadflags;
	uint32_t cmdline_size;
	uint32_t hardware_subarch;
	uint64_t hardware_subarch_data;
	uint32_t payload_offset;     /* from the protected-mode code */
	uint32_t payload_length;
	uint64_t setup_data;
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t handover_offset;
	uint32_t kernel_info_offset;
} __attribute__((packed));

#define X86_SETUP_HEADER_OFFSET 0x1F1
#define X86_SETUP_HDRS_MAGIC    0x53726448U /* "HdrS" */
#define X86_SETUP_BOOT_FLAG     0xAA55

/* loadflags */
#define X86_LOADED_HIGH   0x01
#define X86_KASLR_FLAG    0x02
#define X86_KEEP_SEGMENTS 0x40
#define X86_CAN_USE_HEAP  0x80
/* xloadflags */
#define X86_XLF_KERNEL_64 0x01

/* boot_params ("zero page") offsets used by the loader. */
#define X86_BP_ACPI_RSDP_ADDR  0x070
#define X86_BP_EXT_RAMDISK_IMG 0x0C0
#define X86_BP_EXT_RAMDISK_SZ  0x0C4
#define X86_BP_EXT_CMD_LINE    0x0C8
#define X86_BP_ALT_MEM_K       0x1E0
#define X86_BP_E820_ENTRIES    0x1E8
#define X86_BP_SENTINEL        0x1EF
#define X86_BP_E820_TABLE      0x2D0
#define X86_BP_E820_MAX        128
#define X86_BP_SIZE            4096

/* PVH: hvm_start_info (Xen public arch-x86/hvm/start_info.h), version 1. */
#define X86_HVM_START_MAGIC 0x336ec578U
#define XEN_ELFNOTE_PHYS32_ENTRY 18

struct x86_hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct x86_hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct x86_hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

enum x86_linux_boot {
	X86_LINUX_BOOT_AUTO = 0,   /* = X86_LINUX_BOOT_64 */
	X86_LINUX_BOOT_64,         /* host-unpacked vmlinux, startup_64 */
	X86_LINUX_BOOT_PVH,        /* host-unpacked vmlinux, PVH entry */
	X86_LINUX_BOOT_BZIMAGE64,  /* bzImage as is, entry at load + 0x200 */
};

struct x86_linux_params {
	const char *kernel_path;   /* bzImage or ELF64 vmlinux (required) */
	const char *initrd_path;   /* NULL: no initrd */
	const char *cmdline;       /* NULL: empty */
	uint64_t rsdp_gpa;         /* ACPI RSDP for the guest; 0: none given */
	const struct e820_entry *e820; /* NULL: e820_from_guest_memory() */
	unsigned nr_e820;
	/* With a derived map: a window listed as reserved (the PCI ECAM
	 * window, which Linux uses only when e820 reserves it); size 0: none. */
	uint64_t reserved_base;
	uint64_t reserved_size;
	enum x86_linux_boot boot;
	/* Where unpacked kernels are cached: NULL means the default
	 * (kernel_unpack_default_cache_dir()), "" means no cache. */
	const char *cache_dir;
	/* Decompress a compressed initramfs on the host (PVM profile). */
	bool unpack_initrd;
};

/* What was loaded, for logs and tests.  All fields are filled on success. */
struct x86_linux_info {
	bool is_bzimage;
	uint16_t protocol_version;   /* setup header version; 0 for ELF */
	char kernel_version[128];    /* from the setup header, or "" */
	enum x86_linux_boot boot;    /* the path taken (never AUTO) */
	const char *compression;     /* "xz", ...; "none" when not unpacked */
	uint64_t payload_size;       /* compressed payload bytes */
	uint64_t unpacked_size;      /* vmlinux bytes after unpacking */
	bool cache_hit;
	double unpack_seconds;       /* host time spent unpacking (or reading
				      * the cache) */
	uint64_t kernel_start;       /* guest-physical range of the kernel */
	uint64_t kernel_end;
	uint64_t pref_address;       /* where the bzImage wants to live */
	bool relocated;              /* kernel_start != pref_address: the
				      * kernel relocates itself physically */
	uint64_t entry;              /* guest-physical entry point */
	uint64_t initrd_start;       /* 0 when no initrd */
	uint64_t initrd_size;        /* as loaded (unpacked when it was) */
	uint64_t initrd_file_size;   /* the file's size */
};

/* Parse the setup header of a bzImage held in |img|.  Returns 0, or
 * -ENOEXEC when it is not a bzImage (no 0xAA55/"HdrS", protocol < 2.02,
 * truncated), with the reason in |err|.  The header is copied (and zero
 * padded) for protocol versions that end it earlier. */
int x86_setup_header_parse(const uint8_t *img, size_t len,
			   struct x86_setup_header *hdr,
			   char *err, size_t errlen);

/* The printable version string the setup header points at
 * (kernel_version + 0x200), cut at the first unprintable byte; "" when the
 * header gives none or it lies outside the |len| bytes of |img|. */
void x86_setup_header_kernel_version(const uint8_t *img, size_t len,
				     const struct x86_setup_header *hdr,
				     char *out, size_t outlen);

/* Load the kernel, initrd and command line into |mem|, write boot_params
 * (or hvm_start_info), the GDT and the identity page tables, and fill
 * |entry| for x86_vcpu_enter().  |info| may be NULL.  Returns 0 or a
 * negative errno with a message naming the object and the reason in |err|
 * ("kernel '/boot/vmlinuz-x': unsupported compression bzip2"):
 *   -ENOENT etc.  file cannot be opened/read
 *   -ENOEXEC      not a bzImage/ELF, corrupt or truncated image
 *   -ENOTSUP      bzip2/lzo payload, or PVH without a PHYS32_ENTRY note
 *   -ERANGE       kernel segment outside guest RAM
 *   -E2BIG        command line or initrd does not fit
 * Guest memory may have been partly written when it fails. */
int x86_linux_load(struct guest_memory *mem, const struct x86_linux_params *p,
		   struct x86_boot_entry *entry, struct x86_linux_info *info,
		   char *err, size_t errlen);

#endif
