/* MP tables; see mptable.h.  Section numbers are the Intel MultiProcessor
 * Specification 1.4. */
#include "arch/x86/mptable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"

#define MP_FP_LEN         16   /* §4.1 */
#define MP_HEADER_LEN     44   /* §4.2 */
#define MP_PROC_LEN       20   /* §4.3.1 */
#define MP_BUS_LEN        8    /* §4.3.2 */
#define MP_IOAPIC_LEN     8    /* §4.3.3 */
#define MP_INTSRC_LEN     8    /* §4.3.4 */
#define MP_LINTSRC_LEN    8    /* §4.3.5 */

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3,
       MP_LINTSRC = 4 };
/* §4.3.4 Table 4-10: interrupt types */
enum { MP_INT = 0, MP_NMI = 1, MP_SMI = 2, MP_EXTINT = 3 };
/* §4.3.4 Table 4-11 flags: PO bits 1-0, EL bits 3-2 */
#define MP_IRQ_ACTIVE_HIGH 0x1
#define MP_IRQ_LEVEL       (0x3 << 2)

#define MP_CPU_EN 0x01
#define MP_CPU_BP 0x02
#define MP_LAPIC_VERSION  0x14   /* integrated xAPIC */
#define MP_IOAPIC_VERSION 0x11   /* KVM's IOAPIC reports version 0x11 */
#define MP_IOAPIC_ID      0

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* §4.3.4 / §4.3.5: I/O and local interrupt assignment entries share a
 * layout; |entry| says which. */
static uint8_t *mp_irq_entry(uint8_t *e, uint8_t entry, uint8_t type,
			     uint16_t flags, uint8_t bus, uint8_t irq,
			     uint8_t dst_id, uint8_t dst_pin)
{
	e[0] = entry;
	e[1] = type;
	put16(e + 2, flags);
	e[4] = bus;
	e[5] = irq;
	e[6] = dst_id;
	e[7] = dst_pin;
	return e + MP_INTSRC_LEN;
}

int mptable_build(struct guest_memory *mem, uint64_t fp_gpa,
		  uint64_t table_gpa, uint64_t table_size,
		  const struct mptable_platform *p)
{
	unsigned nr_buses, nr_irqs = 15, nr_entries;
	uint8_t isa_bus;
	uint64_t len;
	uint8_t fp[MP_FP_LEN] = { 0 };
	uint8_t *t, *e;
	int err;

	if (!mem || !p || p->nr_cpus < 1 || p->nr_cpus > 255)
		return -EINVAL;
	if (p->sci_irq == 2 || p->sci_irq > 15)
		return -EINVAL;
	/* §4.1: the floating pointer is 16-byte aligned; the table is
	 * reached through a 32-bit physical pointer. */
	if (fp_gpa & 15 || table_gpa > 0xFFFFFFFFULL)
		return -EINVAL;
	/* §4.3.2: bus ids are assigned PCI first (its own bus number), then
	 * ISA. */
	nr_buses = p->pci ? 2 : 1;
	isa_bus = p->pci ? 1 : 0;
	nr_entries = p->nr_cpus + nr_buses + 1 + nr_irqs + 2;
	len = MP_HEADER_LEN + MP_PROC_LEN * p->nr_cpus + MP_BUS_LEN * nr_buses +
	      MP_IOAPIC_LEN + MP_INTSRC_LEN * nr_irqs + MP_LINTSRC_LEN * 2;
	if (len > table_size || table_gpa + len - 1 > 0xFFFFFFFFULL)
		return -ENOSPC;
	t = calloc(1, len);
	if (!t)
		return -ENOMEM;

	/* §4.2 Table 4-2: configuration table header */
	memcpy(t, "PCMP", 4);
	put16(t + 4, (uint16_t)len);
	t[6] = 4;                                    /* spec revision 1.4 */
	memcpy(t + 8, "KITE    ", 8);                /* OEM id */
	memcpy(t + 16, "KITE VM     ", 12);          /* product id */
	put16(t + 34, (uint16_t)nr_entries);
	put32(t + 36, (uint32_t)X86_LAPIC_GPA);
	e = t + MP_HEADER_LEN;

	/* §4.3.1 processors, in APIC id order; CPU 0 boots */
	for (unsigned i = 0; i < p->nr_cpus; i++, e += MP_PROC_LEN) {
		e[0] = MP_PROCESSOR;
		e[1] = (uint8_t)i;
		e[2] = MP_LAPIC_VERSION;
		e[3] = MP_CPU_EN | (i == 0 ? MP_CPU_BP : 0);
		put32(e + 4, 0x600);                 /* family 6 signature */
		put32(e + 8, (1u << 0) | (1u << 9)); /* FPU, APIC */
	}
	/* §4.3.2 buses; type strings are space-padded to six bytes */
	if (p->pci) {
		e[0] = MP_BUS;
		e[1] = 0;
		memcpy(e + 2, "PCI   ", 6);
		e += MP_BUS_LEN;
	}
	e[0] = MP_BUS;
	e[1] = isa_bus;
	memcpy(e + 2, "ISA   ", 6);
	e += MP_BUS_LEN;
	/* §4.3.3 */
	e[0] = MP_IOAPIC;
	e[1] = MP_IOAPIC_ID;
	e[2] = MP_IOAPIC_VERSION;
	e[3] = 0x01;                                 /* usable */
	put32(e + 4, (uint32_t)X86_IOAPIC_GPA);
	e += MP_IOAPIC_LEN;
	/* §4.3.4 ISA interrupts; §5.3 default: the PIT (IRQ 0) on pin 2 */
	for (unsigned irq = 0; irq < 16; irq++) {
		uint16_t flags = 0;                  /* conforms to ISA */

		if (irq == 2)
			continue;                    /* the 8259 cascade */
		if (p->sci_irq && irq == p->sci_irq)
			flags = MP_IRQ_ACTIVE_HIGH | MP_IRQ_LEVEL;
		e = mp_irq_entry(e, MP_INTSRC, MP_INT, flags, isa_bus,
				 (uint8_t)irq, MP_IOAPIC_ID,
				 (uint8_t)(irq == 0 ? 2 : irq));
	}
	/* §4.3.5 local interrupts: virtual wire (ExtINT on LINT0) and NMI on
	 * LINT1, for every local APIC (0xFF) */
	e = mp_irq_entry(e, MP_LINTSRC, MP_EXTINT, 0, isa_bus, 0, 0xFF, 0);
	mp_irq_entry(e, MP_LINTSRC, MP_NMI, 0, isa_bus, 0, 0xFF, 1);
	t[7] = (uint8_t)(0x100 - acpi_checksum(t, len));

	/* §4.1 Table 4-1: floating pointer structure */
	memcpy(fp, "_MP_", 4);
	put32(fp + 4, (uint32_t)table_gpa);
	fp[8] = 1;                                   /* length in 16-byte units */
	fp[9] = 4;                                   /* spec revision 1.4 */
	/* feature byte 1 = 0: a configuration table is present; feature
	 * byte 2 bit 7 (IMCRP) = 0: virtual wire mode, no IMCR to program */
	fp[10] = (uint8_t)(0x100 - acpi_checksum(fp, MP_FP_LEN));

	err = guest_memory_write(mem, table_gpa, t, len);
	if (!err)
		err = guest_memory_write(mem, fp_gpa, fp, MP_FP_LEN);
	free(t);
	return err;
}
