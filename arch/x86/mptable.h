/* Intel MultiProcessor Specification 1.4 tables, for guests (and kernels
 * booted with acpi=off) that find CPUs and the IOAPIC this way.
 *
 * mptable_build() writes the MP floating pointer structure (16 bytes) at
 * fp_gpa — Linux scans the first KiB of the EBDA (X86_EBDA_GPA) for it —
 * and the MP configuration table at table_gpa.  The configuration table
 * does not fit the EBDA with many CPUs (20 bytes each), so by default it
 * lives at MPTABLE_GPA, next to the ACPI tables (acpi.h); both ranges must
 * be reserved in e820.
 *
 * Contents (MP spec 1.4 §4): one processor entry per vCPU (APIC ids
 * 0..nr_cpus-1, CPU 0 the BSP), a PCI bus 0 (when pci) and the ISA bus,
 * one IOAPIC (id 0 at 0xFEC00000, 24 pins), ISA IRQs 0-15 wired to IOAPIC
 * pins (IRQ 0 to pin 2, the rest identity, IRQ 2 skipped), the SCI IRQ
 * level/active-high as in the MADT, and ExtINT on LINT0 / NMI on LINT1 of
 * every local APIC. */
#ifndef KITE_ARCH_X86_MPTABLE_H
#define KITE_ARCH_X86_MPTABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/boot.h"
#include "vmm/memory.h"

#define MPTABLE_FP_GPA   X86_EBDA_GPA
#define MPTABLE_GPA      0x000EC000ULL
#define MPTABLE_SIZE     0x00004000ULL

struct mptable_platform {
	unsigned nr_cpus;     /* 1..255 */
	unsigned sci_irq;     /* ISA IRQ that is level/active-high, 0 = none */
	bool pci;             /* describe PCI bus 0 */
};

/* Returns 0, -EINVAL (bad platform or unaligned addresses), -ENOSPC when
 * the configuration table exceeds table_size, -EFAULT when not RAM. */
int mptable_build(struct guest_memory *mem, uint64_t fp_gpa,
		  uint64_t table_gpa, uint64_t table_size,
		  const struct mptable_platform *p);

#endif
