/* ACPI firmware tables for x86 guests: RSDP, XSDT (+ RSDT), FADT, FACS,
 * MADT, MCFG and a DSDT whose AML Kite generates itself (arch/x86/aml.h).
 *
 * acpi_build() lays every table out in [table_gpa, table_gpa + table_size)
 * of guest RAM, RSDP first (16-byte aligned, so a guest scanning
 * 0xE0000-0xFFFFF finds it; ACPI 6.4 §5.2.5.1), and returns the RSDP's
 * address for boot_params.acpi_rsdp_addr.  The region must be marked
 * reserved in the e820 map (ACPI 6.4 §15: AddressRangeReserved is fine for
 * tables the OS never reclaims).
 *
 * What the DSDT describes:
 *   \_S0, \_S5            sleep-type packages; \_S5 = PM_SLP_TYP_S5 (pm.h)
 *   \_SB.PCI0             PNP0A08/PNP0A03 host bridge (when ecam_base != 0):
 *                         bus range, I/O 0-0xCF7 and 0xD00-0xFFFF, config
 *                         ports 0xCF8-0xCFF, 32-bit (and optional 64-bit)
 *                         MMIO windows, optional _PRT; ECAM itself is in
 *                         the MCFG
 *   \_SB.MRES             PNP0C02 motherboard resources: the ECAM range and
 *                         the PM ports, so Linux trusts the MCFG
 *   \_SB.COM1..COM4       PNP0501 at 0x3F8/0x2F8/0x3E8/0x2E8, IRQ 4/3/4/3
 *   \_SB.KBD              PNP0303 (when i8042), \_SB.RTC PNP0B00 (when rtc)
 *   \_SB.VRnn             LNRO0005 virtio-mmio devices: registers + GSI
 *   \_SB.Cnnn             ACPI0007 processor devices, _UID = MADT UID
 */
#ifndef KITE_ARCH_X86_ACPI_H
#define KITE_ARCH_X86_ACPI_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/memory.h"

/* Where Kite puts its firmware tables: the RSDP at the start of the BIOS
 * read-only area, so the standard scan finds it too.  0xE0000-0xEBFFF holds
 * the ACPI tables, 0xEC000-0xEFFFF the MP configuration table
 * (mptable.h); 0xF0000-0xFFFFF is left to the BIOS image. */
#define ACPI_TABLES_GPA  0x000E0000ULL
#define ACPI_TABLES_SIZE 0x0000C000ULL

#define X86_IOAPIC_GPA   0xFEC00000ULL
#define X86_LAPIC_GPA    0xFEE00000ULL
#define X86_IOAPIC_PINS  24        /* KVM's in-kernel IOAPIC: GSI 0-23 */

#define ACPI_MAX_CPUS 255          /* xAPIC ids 0..254 (0xFF = broadcast) */
#define ACPI_MAX_MMIO_DEVICES 32

/* Legacy reset register the FADT advertises (the device lives elsewhere). */
#define ACPI_RESET_PORT  0xCF9
#define ACPI_RESET_VALUE 0x06

struct acpi_mmio_device {
	uint64_t base, size;       /* register window */
	unsigned gsi;              /* IOAPIC input, < X86_IOAPIC_PINS */
	bool level;                /* level-triggered (else edge), active high */
};

struct acpi_platform {
	unsigned nr_cpus;          /* 1..ACPI_MAX_CPUS; APIC ids 0..nr_cpus-1 */
	/* PCI host bridge; ecam_base 0 = no PCI (no PCI0, no MCFG). */
	uint64_t ecam_base;        /* 1 MiB per bus */
	unsigned ecam_bus_end;     /* last bus number, <= 255 */
	uint64_t pci_mmio32_base, pci_mmio32_size;
	uint64_t pci_mmio64_base, pci_mmio64_size;  /* size 0 = none */
	/* Legacy INTx routing (_PRT): device |slot|'s pin |pin| (0 = INTA)
	 * raises pci_intx_gsi[slot][pin]; 0 = not routed.  All zero: no _PRT
	 * (MSI/MSI-X only).  A GSI here is level-triggered active-low, as
	 * ACPI 6.4 §6.2.13 says for a _PRT entry with Source 0. */
	uint8_t pci_intx_gsi[32][4];
	/* PM block (pm.h); pm_tmr_port 0 = no PM timer. */
	uint16_t pm1_evt_port, pm1_cnt_port, pm_tmr_port;
	unsigned sci_gsi;          /* ISA IRQ of the SCI, identity-mapped */
	bool com[4];               /* COM1..COM4 present */
	bool i8042;                /* PS/2 controller at 0x60/0x64 */
	bool rtc;                  /* CMOS RTC at 0x70 */
	unsigned nr_mmio;
	struct acpi_mmio_device mmio[ACPI_MAX_MMIO_DEVICES];
};

/* The Kite x86 machine: ECAM 0xE0000000 buses 0-255, MMIO32 window
 * 0xC0000000-0xDFFFFFFF, PM ports 0x600/0x604/0x608, SCI on IRQ 9, COM1,
 * i8042 and RTC present, no virtio-mmio devices yet. */
void acpi_platform_defaults(struct acpi_platform *p, unsigned nr_cpus);

/* Route every slot's INTx through the usual swizzle: pin p of slot s
 * raises gsi[(s + p) % 4]. */
void acpi_platform_pci_intx_swizzle(struct acpi_platform *p,
				    const unsigned gsi[4]);

/* Add a virtio-mmio device (LNRO0005); -ENOSPC when full, -EINVAL for a
 * bad GSI or empty window. */
int acpi_platform_add_mmio(struct acpi_platform *p, uint64_t base,
			   uint64_t size, unsigned gsi, bool level);

/* Write all tables into guest RAM at [table_gpa, table_gpa + table_size);
 * *rsdp_gpa receives the RSDP address (== table_gpa).  Returns 0,
 * -EINVAL for an inconsistent platform, -ENOSPC when the tables do not
 * fit, -EFAULT when the range is not RAM, -ENOMEM. */
int acpi_build(struct guest_memory *mem, uint64_t table_gpa,
	       uint64_t table_size, const struct acpi_platform *p,
	       uint64_t *rsdp_gpa);

/* Byte sum of [p, p+len) — zero for a valid ACPI or MP table. */
uint8_t acpi_checksum(const void *p, uint64_t len);

#endif
