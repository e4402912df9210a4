/* Multiboot (version 0.6.96) loader for ELF32 kernels and test payloads.
 *
 * The image must carry a multiboot header (magic 0x1BADB002) in its first
 * 8 KiB, 4-byte aligned.  PT_LOAD segments go to their physical addresses;
 * an info block with the memory map, the command line and the modules
 * (the initrd, if any) is built in low memory; the kernel is entered in
 * flat 32-bit protected mode with EAX = 0x2BADB002, EBX = the info block. */
#ifndef KITE_ARCH_X86_MULTIBOOT_H
#define KITE_ARCH_X86_MULTIBOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/boot.h"
#include "vmm/memory.h"

#define MULTIBOOT_HEADER_MAGIC     0x1BADB002U
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002U
#define MULTIBOOT_SEARCH           8192

/* Multiboot header flags the loader understands. */
#define MULTIBOOT_PAGE_ALIGN   (1U << 0)
#define MULTIBOOT_MEMORY_INFO  (1U << 1)
#define MULTIBOOT_VIDEO_MODE   (1U << 2)
#define MULTIBOOT_AOUT_KLUDGE  (1U << 16)

/* Info block flags. */
#define MULTIBOOT_INFO_MEMORY   (1U << 0)
#define MULTIBOOT_INFO_CMDLINE  (1U << 2)
#define MULTIBOOT_INFO_MODS     (1U << 3)
#define MULTIBOOT_INFO_MMAP     (1U << 6)
#define MULTIBOOT_INFO_LOADER   (1U << 9)

/* True if |image| has a valid multiboot header in its first 8 KiB. */
bool multiboot_detect(const uint8_t *image, size_t size);

/* Load |image| (the whole file) and the optional module into |mem|; fill
 * |entry|.  Returns 0 or -errno with a reason in |err|. */
int multiboot_load(struct guest_memory *mem, const uint8_t *image,
		   size_t size, const uint8_t *module, size_t module_size,
		   const char *module_name, const char *cmdline,
		   struct x86_boot_entry *entry, char *err, size_t errlen);

#endif
