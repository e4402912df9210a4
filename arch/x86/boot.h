/* How a loaded x86 guest is entered: the CPU state a boot protocol needs.
 *
 * Loaders (multiboot, Linux bzImage/vmlinux/PVH, the BIOS path) write the
 * image and any tables into guest memory and fill a struct x86_boot_entry;
 * x86_vcpu_enter() (arch/x86/cpu.h) turns it into KVM register state for
 * the boot vCPU.  Application processors always start in wait-for-SIPI. */
#ifndef KITE_ARCH_X86_BOOT_H
#define KITE_ARCH_X86_BOOT_H

#include <stdint.h>

enum x86_entry_mode {
	X86_ENTRY_REAL16,      /* real mode at cs:ip (BIOS path) */
	X86_ENTRY_PROTECTED32, /* flat 32-bit protected mode, paging off */
	X86_ENTRY_LONG64,      /* 64-bit long mode, paging on (cr3) */
};

struct x86_boot_entry {
	enum x86_entry_mode mode;
	uint64_t rip;          /* entry point (linear; cs base 0 except REAL16) */
	uint16_t real_cs;      /* REAL16 only: cs selector (base = cs << 4) */
	uint16_t real_ds;      /* REAL16 only: ds, es, fs, gs and ss */
	uint64_t rsp;
	uint64_t rax, rbx, rsi, rdi;
	uint64_t cr3;          /* LONG64: guest-physical PML4 built by the loader */
	uint64_t gdt_base;     /* guest-physical GDT written by the loader, or 0 */
	uint16_t gdt_limit;
	uint16_t code_sel;     /* selectors within that GDT */
	uint16_t data_sel;
};

/* Guest-physical addresses of the fixed boot structures, below 1 MiB.
 * Shared by all loaders so they never overlap. */
#define X86_BOOT_GDT_GPA        0x00000500ULL /* 4 entries */
#define X86_BOOT_INFO_GPA       0x00007000ULL /* boot_params / multiboot info */
#define X86_BOOT_CMDLINE_GPA    0x00020000ULL /* up to 64 KiB */
#define X86_BOOT_PML4_GPA       0x00009000ULL /* + PDPT at 0xA000, PDs 0xB000.. */
#define X86_BOOT_STACK_TOP      0x0008F000ULL
#define X86_EBDA_GPA            0x0009FC00ULL /* MP table / RSDP live here */

#endif
