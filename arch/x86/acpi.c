/* ACPI tables; see acpi.h.  Section numbers are ACPI 6.4 unless noted;
 * the MCFG is defined by the PCI Firmware Specification 3.0 §4.1.2. */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/pm.h"

#define ACPI_HEADER_LEN 36        /* §5.2.6 */
#define ACPI_RSDP_LEN   36        /* §5.2.5.3, revision 2 */
#define ACPI_FACS_LEN   64        /* §5.2.10 */
#define ACPI_FADT_LEN   276       /* §5.2.9, revision 6 */
#define ACPI_MCFG_LEN   (ACPI_HEADER_LEN + 8 + 16)

#define ACPI_OEM_ID       "KITE  "   /* 6 bytes */
#define ACPI_OEM_TABLE_ID "KITEVM  " /* 8 bytes, same in every table */
#define ACPI_CREATOR_ID   "KITE"

/* §5.2.9 Table 5.10: FADT fixed feature flags */
#define FADT_WBINVD        (1u << 0)
#define FADT_PROC_C1       (1u << 2)
#define FADT_SLP_BUTTON    (1u << 5)  /* no fixed sleep button */
#define FADT_FIX_RTC       (1u << 6)  /* no RTC wake status in PM1 */
#define FADT_TMR_VAL_EXT   (1u << 8)  /* PM timer is 32 bits */
#define FADT_RESET_REG_SUP (1u << 10)
/* §5.2.9.3 Table 5.11: IA-PC boot architecture flags */
#define IAPC_LEGACY_DEVICES  (1u << 0)
#define IAPC_8042            (1u << 1)
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

/* §5.2.3.2 Generic Address Structure */
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1
#define GAS_ACCESS_WORD 2
#define GAS_ACCESS_DWORD 3

/* §5.2.12 MADT */
#define MADT_PCAT_COMPAT       (1u << 0)
#define MADT_TYPE_LAPIC        0
#define MADT_TYPE_IOAPIC       1
#define MADT_TYPE_ISO          2
#define MADT_TYPE_LAPIC_NMI    4
#define MADT_LAPIC_ENABLED     (1u << 0)
/* §5.2.12.5 Table 5.26 MPS INTI flags */
#define MPS_INTI_ACTIVE_HIGH   0x1
#define MPS_INTI_LEVEL         (0x3 << 2)

static const struct {
	uint16_t port;
	uint8_t irq;
} acpi_com_ports[4] = {
	{ 0x3F8, 4 }, { 0x2F8, 3 }, { 0x3E8, 4 }, { 0x2E8, 3 },
};

uint8_t acpi_checksum(const void *p, uint64_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	for (uint64_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return sum;
}

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

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The table area, built in host memory and copied into the guest once. */
struct acpi_area {
	uint8_t *buf;
	uint64_t gpa, size, used;
	int err;
};

/* Returns a pointer to |len| zeroed bytes at an |align|ed offset, or NULL
 * (area->err = -ENOSPC). */
static uint8_t *area_alloc(struct acpi_area *a, uint64_t len, uint64_t align,
			   uint64_t *gpa)
{
	uint64_t off = (a->used + align - 1) & ~(align - 1);

	if (a->err)
		return NULL;
	if (off > a->size || len > a->size - off) {
		a->err = -ENOSPC;
		return NULL;
	}
	a->used = off + len;
	*gpa = a->gpa + off;
	return a->buf + off;
}

/* §5.2.6 System Description Table Header */
static void acpi_header(uint8_t *t, const char sig[4], uint32_t len,
			uint8_t revision)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = revision;
	t[9] = 0;                              /* checksum, set last */
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
	put32(t + 24, 1);                      /* OEM revision */
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	put32(t + 32, 1);                      /* creator revision */
}

static void acpi_seal(uint8_t *t, uint32_t len)
{
	t[9] = 0;
	t[9] = (uint8_t)(0x100 - acpi_checksum(t, len));
}

/* §5.2.3.2 */
static void acpi_gas_io(uint8_t *p, uint16_t port, uint8_t bit_width,
			uint8_t access)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = bit_width;
	p[2] = 0;
	p[3] = access;
	put64(p + 4, port);
}

/* ---- DSDT ------------------------------------------------------------- */

/* §7.4.2 \_Sx: Package { SLP_TYPa, SLP_TYPb, reserved, reserved } */
static void dsdt_sleep_state(struct aml_buf *b, const char *name,
			     unsigned slp_typ)
{
	size_t pkg;

	aml_name(b, name);
	pkg = aml_package_begin(b, 4);
	aml_integer(b, slp_typ);
	aml_integer(b, slp_typ);
	aml_integer(b, 0);
	aml_integer(b, 0);
	aml_end(b, pkg);
}

/* §6.2.13 _PRT: Package { Address = slot << 16 | 0xFFFF (any function),
 * Pin, Source = 0 (a GSI, not a link device), Source Index = GSI }. */
static void dsdt_pci_prt(struct aml_buf *b, const struct acpi_platform *p)
{
	unsigned nr = 0;
	size_t prt;

	for (unsigned s = 0; s < 32; s++)
		for (unsigned pin = 0; pin < 4; pin++)
			nr += p->pci_intx_gsi[s][pin] != 0;
	if (!nr)
		return;
	aml_name(b, "_PRT");
	prt = aml_package_begin(b, nr);            /* at most 128 */
	for (unsigned s = 0; s < 32; s++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			size_t e;

			if (!p->pci_intx_gsi[s][pin])
				continue;
			e = aml_package_begin(b, 4);
			aml_integer(b, (uint64_t)s << 16 | 0xFFFF);
			aml_integer(b, pin);
			aml_integer(b, 0);
			aml_integer(b, p->pci_intx_gsi[s][pin]);
			aml_end(b, e);
		}
	}
	aml_end(b, prt);
}

/* §9.11 (PNP0A03/PNP0A08 host bridge); _CRS per §6.2.2 / §6.4. */
static void dsdt_pci_host(struct aml_buf *b, const struct acpi_platform *p)
{
	struct aml_buf r;
	size_t dev = aml_device_begin(b, "PCI0");

	aml_name_eisaid(b, "_HID", "PNP0A08");     /* PCI Express root */
	aml_name_eisaid(b, "_CID", "PNP0A03");     /* ... compatible with PCI */
	aml_name_integer(b, "_SEG", 0);
	aml_name_integer(b, "_UID", 0);
	aml_name_integer(b, "_BBN", 0);

	aml_buf_init(&r);
	aml_res_word_bus(&r, 0, (uint16_t)p->ecam_bus_end);
	/* The config mechanism #1 ports are the bridge's own; the I/O
	 * windows it forwards leave them out. */
	aml_res_io(&r, 0x0CF8, 0x0CF8, 1, 8);
	aml_res_word_io(&r, 0x0000, 0x0CF7);
	aml_res_word_io(&r, 0x0D00, 0xFFFF);
	if (p->pci_mmio32_size)
		aml_res_dword_mem(&r, (uint32_t)p->pci_mmio32_base,
				  (uint32_t)(p->pci_mmio32_base +
					     p->pci_mmio32_size - 1));
	if (p->pci_mmio64_size)
		aml_res_qword_mem(&r, p->pci_mmio64_base,
				  p->pci_mmio64_base + p->pci_mmio64_size - 1,
				  true);
	aml_name(b, "_CRS");
	aml_resource_template(b, &r);
	aml_buf_free(&r);
	dsdt_pci_prt(b, p);
	aml_end(b, dev);
}

/* PNP0C02 "motherboard resources": Linux accepts an MCFG region only when
 * it is reserved here or in e820; the PM ports are claimed here too. */
static void dsdt_motherboard(struct aml_buf *b, const struct acpi_platform *p)
{
	struct aml_buf r;
	size_t dev = aml_device_begin(b, "MRES");

	aml_name_eisaid(b, "_HID", "PNP0C02");
	aml_name_integer(b, "_UID", 0);
	aml_buf_init(&r);
	if (p->ecam_base) {
		uint64_t len = (uint64_t)(p->ecam_bus_end + 1) << 20;

		if (p->ecam_base + len <= 0x100000000ULL)
			aml_res_mem32_fixed(&r, (uint32_t)p->ecam_base,
					    (uint32_t)len);
		else
			aml_res_qword_mem(&r, p->ecam_base,
					  p->ecam_base + len - 1, false);
	}
	aml_res_io(&r, p->pm1_evt_port, p->pm1_evt_port, 1, PM1_EVT_LEN);
	aml_res_io(&r, p->pm1_cnt_port, p->pm1_cnt_port, 1, PM1_CNT_LEN);
	if (p->pm_tmr_port)
		aml_res_io(&r, p->pm_tmr_port, p->pm_tmr_port, 1, PM_TMR_LEN);
	aml_name(b, "_CRS");
	aml_resource_template(b, &r);
	aml_buf_free(&r);
	aml_end(b, dev);
}

/* A legacy ISA device: fixed I/O ranges and one ISA IRQ. */
static void dsdt_isa_device(struct aml_buf *b, const char *name,
			    const char *eisaid, unsigned uid,
			    const uint16_t *ports, const uint8_t *lens,
			    unsigned nr_ranges, unsigned irq)
{
	struct aml_buf r;
	size_t dev = aml_device_begin(b, name);

	aml_name_eisaid(b, "_HID", eisaid);
	aml_name_integer(b, "_UID", uid);
	aml_buf_init(&r);
	for (unsigned i = 0; i < nr_ranges; i++)
		aml_res_io(&r, ports[i], ports[i], 1, lens[i]);
	aml_res_irq_noflags(&r, irq);
	aml_name(b, "_CRS");
	aml_resource_template(b, &r);
	aml_buf_free(&r);
	aml_end(b, dev);
}

/* virtio-mmio: Linux's virtio_mmio driver matches _HID "LNRO0005" and takes
 * memory resource 0 and interrupt 0 from _CRS. */
static void dsdt_virtio_mmio(struct aml_buf *b, unsigned index,
			     const struct acpi_mmio_device *d)
{
	struct aml_buf r;
	char name[5];
	size_t dev;

	snprintf(name, sizeof(name), "VR%02X", index & 0xFFu);
	dev = aml_device_begin(b, name);
	aml_name_string(b, "_HID", "LNRO0005");
	aml_name_integer(b, "_UID", index);
	aml_name_integer(b, "_CCA", 1);            /* §6.2.17: coherent DMA */
	aml_buf_init(&r);
	if (d->base + d->size <= 0x100000000ULL)
		aml_res_mem32_fixed(&r, (uint32_t)d->base, (uint32_t)d->size);
	else
		aml_res_qword_mem(&r, d->base, d->base + d->size - 1, false);
	aml_res_interrupt(&r, d->gsi, d->level, false);
	aml_name(b, "_CRS");
	aml_resource_template(b, &r);
	aml_buf_free(&r);
	aml_end(b, dev);
}

/* §8.4 / §6.1.12: processor devices whose _UID matches the MADT entry. */
static void dsdt_processors(struct aml_buf *b, unsigned nr_cpus)
{
	for (unsigned i = 0; i < nr_cpus; i++) {
		char name[5];
		size_t dev;

		snprintf(name, sizeof(name), "C%03X", i & 0xFFFu);
		dev = aml_device_begin(b, name);
		aml_name_string(b, "_HID", "ACPI0007");
		aml_name_integer(b, "_UID", i);
		aml_end(b, dev);
	}
}

static int acpi_dsdt_aml(struct aml_buf *b, const struct acpi_platform *p)
{
	size_t sb;

	dsdt_sleep_state(b, "\\_S0", 0);
	dsdt_sleep_state(b, "\\_S5", PM_SLP_TYP_S5);

	sb = aml_scope_begin(b, "\\_SB");
	if (p->ecam_base)
		dsdt_pci_host(b, p);
	dsdt_motherboard(b, p);
	for (unsigned i = 0; i < 4; i++) {
		char name[5];

		if (!p->com[i])
			continue;
		snprintf(name, sizeof(name), "COM%u", (i + 1) & 7u);
		uint8_t len = 8;
		dsdt_isa_device(b, name, "PNP0501", i + 1,
				&acpi_com_ports[i].port, &len, 1,
				acpi_com_ports[i].irq);
	}
	if (p->i8042) {
		static const uint16_t ports[2] = { 0x60, 0x64 };
		static const uint8_t lens[2] = { 1, 1 };

		dsdt_isa_device(b, "KBD", "PNP0303", 0, ports, lens, 2, 1);
	}
	if (p->rtc) {
		static const uint16_t ports[1] = { 0x70 };
		static const uint8_t lens[1] = { 2 };

		dsdt_isa_device(b, "RTC", "PNP0B00", 0, ports, lens, 1, 8);
	}
	for (unsigned i = 0; i < p->nr_mmio; i++)
		dsdt_virtio_mmio(b, i, &p->mmio[i]);
	dsdt_processors(b, p->nr_cpus);
	aml_end(b, sb);
	return b->err;
}

static uint64_t acpi_build_dsdt(struct acpi_area *a,
				const struct acpi_platform *p)
{
	struct aml_buf b;
	uint64_t gpa = 0;
	uint8_t *t;
	int err;

	aml_buf_init(&b);
	err = acpi_dsdt_aml(&b, p);
	if (err) {
		aml_buf_free(&b);
		a->err = err;
		return 0;
	}
	if (b.len > UINT32_MAX - ACPI_HEADER_LEN) {
		aml_buf_free(&b);
		a->err = -ENOSPC;
		return 0;
	}
	t = area_alloc(a, ACPI_HEADER_LEN + b.len, 16, &gpa);
	if (t) {
		uint32_t len = (uint32_t)(ACPI_HEADER_LEN + b.len);

		/* §5.2.11.1: revision 2 = 64-bit AML integers */
		acpi_header(t, "DSDT", len, 2);
		memcpy(t + ACPI_HEADER_LEN, b.data, b.len);
		acpi_seal(t, len);
	}
	aml_buf_free(&b);
	return gpa;
}

/* ---- FACS, FADT ----------------------------------------------------- */

static uint64_t acpi_build_facs(struct acpi_area *a)
{
	uint64_t gpa = 0;
	/* §5.2.10: 64-byte aligned, no checksum */
	uint8_t *t = area_alloc(a, ACPI_FACS_LEN, 64, &gpa);

	if (!t)
		return 0;
	memcpy(t, "FACS", 4);
	put32(t + 4, ACPI_FACS_LEN);
	t[32] = 2;                               /* version */
	return gpa;
}

static uint64_t acpi_build_fadt(struct acpi_area *a,
				const struct acpi_platform *p,
				uint64_t facs, uint64_t dsdt)
{
	uint64_t gpa = 0;
	uint8_t *t = area_alloc(a, ACPI_FADT_LEN, 16, &gpa);
	uint32_t flags;
	uint16_t iapc = IAPC_VGA_NOT_PRESENT;

	if (!t)
		return 0;
	/* §5.2.9 Table 5.9 */
	acpi_header(t, "FACP", ACPI_FADT_LEN, 6);
	put32(t + 36, (uint32_t)facs);           /* FIRMWARE_CTRL */
	put32(t + 40, (uint32_t)dsdt);           /* DSDT */
	t[45] = 0;                               /* Preferred_PM_Profile */
	put16(t + 46, (uint16_t)p->sci_gsi);     /* SCI_INT (8259 IRQ) */
	/* SMI_CMD, ACPI_ENABLE, ACPI_DISABLE = 0: always in ACPI mode */
	put32(t + 56, p->pm1_evt_port);          /* PM1a_EVT_BLK */
	put32(t + 64, p->pm1_cnt_port);          /* PM1a_CNT_BLK */
	put32(t + 76, p->pm_tmr_port);           /* PM_TMR_BLK */
	t[88] = PM1_EVT_LEN;
	t[89] = PM1_CNT_LEN;
	t[91] = p->pm_tmr_port ? PM_TMR_LEN : 0;
	put16(t + 96, 101);                      /* P_LVL2_LAT: no C2 */
	put16(t + 98, 1001);                     /* P_LVL3_LAT: no C3 */
	if (p->com[0] || p->com[1] || p->com[2] || p->com[3] || p->i8042 ||
	    p->rtc)
		iapc |= IAPC_LEGACY_DEVICES;
	if (p->i8042)
		iapc |= IAPC_8042;
	if (!p->rtc)
		iapc |= IAPC_CMOS_RTC_NOT_PRESENT;
	put16(t + 109, iapc);                    /* IAPC_BOOT_ARCH */
	/* HW_REDUCED_ACPI (bit 20) stays clear: we have the fixed hardware.
	 * PWR_BUTTON (bit 4) clear: the fixed power button exists. */
	flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_FIX_RTC |
		FADT_RESET_REG_SUP;
	if (p->pm_tmr_port)
		flags |= FADT_TMR_VAL_EXT;
	put32(t + 112, flags);
	/* §4.8.4.6 reset register: byte write of 0x06 to port 0xCF9 */
	acpi_gas_io(t + 116, ACPI_RESET_PORT, 8, GAS_ACCESS_BYTE);
	t[128] = ACPI_RESET_VALUE;
	t[131] = 4;                              /* FADT minor version */
	/* X_FIRMWARE_CTRL (132) stays 0: FIRMWARE_CTRL is used, and the spec
	 * asks for only one of the two. */
	put64(t + 140, dsdt);                    /* X_DSDT */
	acpi_gas_io(t + 148, p->pm1_evt_port, PM1_EVT_LEN * 8, GAS_ACCESS_WORD);
	acpi_gas_io(t + 172, p->pm1_cnt_port, PM1_CNT_LEN * 8, GAS_ACCESS_WORD);
	if (p->pm_tmr_port)
		acpi_gas_io(t + 208, p->pm_tmr_port, PM_TMR_LEN * 8,
			    GAS_ACCESS_DWORD);
	memcpy(t + 268, "KITE", 4);              /* hypervisor vendor id */
	acpi_seal(t, ACPI_FADT_LEN);
	return gpa;
}

/* ---- MADT ------------------------------------------------------------ */

static uint64_t acpi_build_madt(struct acpi_area *a,
				const struct acpi_platform *p)
{
	uint32_t len = ACPI_HEADER_LEN + 8 + 8 * p->nr_cpus + 12 + 2 * 10 + 6;
	uint64_t gpa = 0;
	uint8_t *t = area_alloc(a, len, 16, &gpa);
	uint8_t *e;

	if (!t)
		return 0;
	acpi_header(t, "APIC", len, 5);
	put32(t + 36, (uint32_t)X86_LAPIC_GPA);
	put32(t + 40, MADT_PCAT_COMPAT);         /* dual 8259s present too */
	e = t + 44;
	/* §5.2.12.2: processor UID i, APIC id i */
	for (unsigned i = 0; i < p->nr_cpus; i++, e += 8) {
		e[0] = MADT_TYPE_LAPIC;
		e[1] = 8;
		e[2] = (uint8_t)i;
		e[3] = (uint8_t)i;
		put32(e + 4, MADT_LAPIC_ENABLED);
	}
	/* §5.2.12.3 */
	e[0] = MADT_TYPE_IOAPIC;
	e[1] = 12;
	e[2] = 0;                                /* I/O APIC id */
	put32(e + 4, (uint32_t)X86_IOAPIC_GPA);
	put32(e + 8, 0);                         /* GSI base */
	e += 12;
	/* §5.2.12.5: the PIT's IRQ 0 is wired to IOAPIC pin 2 */
	e[0] = MADT_TYPE_ISO;
	e[1] = 10;
	e[2] = 0;                                /* bus: ISA */
	e[3] = 0;
	put32(e + 4, 2);
	put16(e + 8, 0);                         /* conforms to ISA */
	e += 10;
	/* The SCI is level-triggered; active high to match KVM_IRQ_LINE. */
	e[0] = MADT_TYPE_ISO;
	e[1] = 10;
	e[2] = 0;
	e[3] = (uint8_t)p->sci_gsi;
	put32(e + 4, p->sci_gsi);
	put16(e + 8, MPS_INTI_ACTIVE_HIGH | MPS_INTI_LEVEL);
	e += 10;
	/* §5.2.12.7: NMI on LINT1 of every processor */
	e[0] = MADT_TYPE_LAPIC_NMI;
	e[1] = 6;
	e[2] = 0xFF;                             /* all processors */
	put16(e + 3, 0);
	e[5] = 1;                                /* LINT1 */
	acpi_seal(t, len);
	return gpa;
}

/* ---- MCFG (PCI Firmware Spec 3.0 §4.1.2) ------------------------------ */

static uint64_t acpi_build_mcfg(struct acpi_area *a,
				const struct acpi_platform *p)
{
	uint64_t gpa = 0;
	uint8_t *t = area_alloc(a, ACPI_MCFG_LEN, 16, &gpa);
	uint8_t *e;

	if (!t)
		return 0;
	acpi_header(t, "MCFG", ACPI_MCFG_LEN, 1);
	e = t + ACPI_HEADER_LEN + 8;             /* 8 reserved bytes */
	put64(e, p->ecam_base);
	put16(e + 8, 0);                         /* segment group */
	e[10] = 0;                               /* start bus */
	e[11] = (uint8_t)p->ecam_bus_end;
	acpi_seal(t, ACPI_MCFG_LEN);
	return gpa;
}

/* ---- XSDT, RSDT, RSDP -------------------------------------------------- */

static uint64_t acpi_build_sdt(struct acpi_area *a, const char *sig,
			       unsigned entry_size, const uint64_t *tables,
			       unsigned nr)
{
	uint32_t len = ACPI_HEADER_LEN + entry_size * nr;
	uint64_t gpa = 0;
	uint8_t *t = area_alloc(a, len, 16, &gpa);

	if (!t)
		return 0;
	acpi_header(t, sig, len, 1);             /* §5.2.7, §5.2.8 */
	for (unsigned i = 0; i < nr; i++) {
		if (entry_size == 8)
			put64(t + ACPI_HEADER_LEN + 8 * i, tables[i]);
		else
			put32(t + ACPI_HEADER_LEN + 4 * i, (uint32_t)tables[i]);
	}
	acpi_seal(t, len);
	return gpa;
}

/* §5.2.5.3: checksum covers the first 20 bytes (ACPI 1.0 part), the
 * extended checksum the whole structure. */
static void acpi_fill_rsdp(uint8_t *r, uint64_t rsdt, uint64_t xsdt)
{
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, ACPI_OEM_ID, 6);
	r[15] = 2;                               /* revision: ACPI 2.0+ */
	put32(r + 16, (uint32_t)rsdt);
	put32(r + 20, ACPI_RSDP_LEN);
	put64(r + 24, xsdt);
	r[8] = (uint8_t)(0x100 - acpi_checksum(r, 20));
	r[32] = (uint8_t)(0x100 - acpi_checksum(r, ACPI_RSDP_LEN));
}

static int acpi_platform_check(const struct acpi_platform *p)
{
	if (p->nr_cpus < 1 || p->nr_cpus > ACPI_MAX_CPUS)
		return -EINVAL;
	/* The SCI is an ISA IRQ; 0 and 2 are the timer and the cascade. */
	if (p->sci_gsi == 0 || p->sci_gsi == 2 || p->sci_gsi > 15)
		return -EINVAL;
	if (!p->pm1_evt_port || !p->pm1_cnt_port)
		return -EINVAL;
	/* each block must end at or below port 0xFFFF */
	if (p->pm1_evt_port > 0x10000 - PM1_EVT_LEN ||
	    p->pm1_cnt_port > 0x10000 - PM1_CNT_LEN ||
	    p->pm_tmr_port > 0x10000 - PM_TMR_LEN)
		return -EINVAL;
	if (p->ecam_base) {
		if (p->ecam_base & 0xFFFFF || p->ecam_bus_end > 255)
			return -EINVAL;
		if (p->pci_mmio32_size &&
		    (p->pci_mmio32_base + p->pci_mmio32_size > 0x100000000ULL ||
		     p->pci_mmio32_base + p->pci_mmio32_size <
		     p->pci_mmio32_base))
			return -EINVAL;
		if (p->pci_mmio64_size &&
		    p->pci_mmio64_base + p->pci_mmio64_size - 1 <
		    p->pci_mmio64_base)
			return -EINVAL;
	}
	for (unsigned s = 0; s < 32; s++)
		for (unsigned pin = 0; pin < 4; pin++)
			if (p->pci_intx_gsi[s][pin] >= X86_IOAPIC_PINS)
				return -EINVAL;
	if (p->nr_mmio > ACPI_MAX_MMIO_DEVICES)
		return -EINVAL;
	for (unsigned i = 0; i < p->nr_mmio; i++) {
		const struct acpi_mmio_device *d = &p->mmio[i];

		if (!d->size || d->base + d->size - 1 < d->base ||
		    d->gsi >= X86_IOAPIC_PINS)
			return -EINVAL;
	}
	return 0;
}

void acpi_platform_defaults(struct acpi_platform *p, unsigned nr_cpus)
{
	memset(p, 0, sizeof(*p));
	p->nr_cpus = nr_cpus;
	p->ecam_base = 0xE0000000ULL;
	p->ecam_bus_end = 255;
	p->pci_mmio32_base = 0xC0000000ULL;
	p->pci_mmio32_size = 0x20000000ULL;
	p->pm1_evt_port = PM_EVT_PORT;
	p->pm1_cnt_port = PM_CNT_PORT;
	p->pm_tmr_port = PM_TMR_PORT;
	p->sci_gsi = PM_SCI_IRQ;
	p->com[0] = true;
	p->i8042 = true;
	p->rtc = true;
}

void acpi_platform_pci_intx_swizzle(struct acpi_platform *p,
				    const unsigned gsi[4])
{
	for (unsigned s = 0; s < 32; s++)
		for (unsigned pin = 0; pin < 4; pin++)
			p->pci_intx_gsi[s][pin] = (uint8_t)gsi[(s + pin) % 4];
}

int acpi_platform_add_mmio(struct acpi_platform *p, uint64_t base,
			   uint64_t size, unsigned gsi, bool level)
{
	if (p->nr_mmio >= ACPI_MAX_MMIO_DEVICES)
		return -ENOSPC;
	if (!size || base + size - 1 < base || gsi >= X86_IOAPIC_PINS)
		return -EINVAL;
	p->mmio[p->nr_mmio].base = base;
	p->mmio[p->nr_mmio].size = size;
	p->mmio[p->nr_mmio].gsi = gsi;
	p->mmio[p->nr_mmio].level = level;
	p->nr_mmio++;
	return 0;
}

int acpi_build(struct guest_memory *mem, uint64_t table_gpa,
	       uint64_t table_size, const struct acpi_platform *p,
	       uint64_t *rsdp_gpa)
{
	struct acpi_area a = { .gpa = table_gpa, .size = table_size };
	uint64_t rsdp = 0, facs, dsdt, fadt, madt, xsdt, rsdt;
	uint64_t tables[3];
	unsigned nr = 0;
	uint8_t *r;
	int err;

	if (!mem || !p || !rsdp_gpa)
		return -EINVAL;
	err = acpi_platform_check(p);
	if (err)
		return err;
	/* RSDT, FADT.DSDT and FIRMWARE_CTRL hold 32-bit addresses. */
	if (table_gpa & 15 || table_size > 0x100000000ULL ||
	    table_gpa > 0x100000000ULL - table_size)
		return -EINVAL;
	a.buf = calloc(1, table_size ? table_size : 1);
	if (!a.buf)
		return -ENOMEM;

	r = area_alloc(&a, ACPI_RSDP_LEN, 16, &rsdp);
	facs = acpi_build_facs(&a);
	dsdt = acpi_build_dsdt(&a, p);
	fadt = acpi_build_fadt(&a, p, facs, dsdt);
	madt = acpi_build_madt(&a, p);
	tables[nr++] = fadt;                     /* FADT first, by custom */
	tables[nr++] = madt;
	if (p->ecam_base)
		tables[nr++] = acpi_build_mcfg(&a, p);
	xsdt = acpi_build_sdt(&a, "XSDT", 8, tables, nr);
	rsdt = acpi_build_sdt(&a, "RSDT", 4, tables, nr);
	if (a.err) {
		err = a.err;
		goto out;
	}
	acpi_fill_rsdp(r, rsdt, xsdt);
	err = guest_memory_write(mem, table_gpa, a.buf, a.used);
	if (!err)
		*rsdp_gpa = rsdp;
out:
	free(a.buf);
	return err;
}
