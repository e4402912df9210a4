/* Firmware tables (ACPI, MP) and the ACPI PM block, checked by reading the
 * guest-memory result back the way a guest would: signatures, lengths,
 * checksums, the RSDP -> XSDT -> FADT -> DSDT chain, MADT entries per CPU,
 * and the DSDT's AML decoded by a small walker below. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "arch/x86/mptable.h"
#include "arch/x86/pm.h"
#include "tests/unit/unit.h"
#include "vmm/bus.h"
#include "vmm/memory.h"

#define MEM_SIZE (64ULL << 20)

static struct guest_memory mem;

static void mem_setup(void)
{
	ck_assert_int_eq(guest_memory_create(&mem, MEM_SIZE, NULL), 0);
}

static void mem_teardown(void)
{
	guest_memory_destroy(&mem);
}

static const uint8_t *gpa_ptr(uint64_t gpa, uint64_t len)
{
	void *p = NULL;

	ck_assert_int_eq(guest_memory_translate(&mem, gpa, len, &p), 0);
	return p;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* A table at |gpa| with signature |sig|: valid checksum, sane length,
 * wholly inside the reserved area. */
static const uint8_t *table_at(uint64_t gpa, const char *sig)
{
	const uint8_t *h = gpa_ptr(gpa, 36);
	uint32_t len = get32(h + 4);

	ck_assert_msg(memcmp(h, sig, 4) == 0, "expected %s at 0x%llx", sig,
		      (unsigned long long)gpa);
	ck_assert_uint_ge(len, 36);
	ck_assert_uint_ge(gpa, ACPI_TABLES_GPA);
	ck_assert_uint_le(gpa + len, ACPI_TABLES_GPA + ACPI_TABLES_SIZE);
	h = gpa_ptr(gpa, len);
	ck_assert_uint_eq(acpi_checksum(h, len), 0);
	return h;
}

static uint64_t build_default(unsigned nr_cpus, struct acpi_platform *p)
{
	uint64_t rsdp = 0;

	acpi_platform_defaults(p, nr_cpus);
	ck_assert_int_eq(acpi_platform_add_mmio(p, 0xD0000000, 0x200, 5,
						false), 0);
	ck_assert_int_eq(acpi_platform_add_mmio(p, 0xD0001000, 0x200, 16,
						true), 0);
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    p, &rsdp), 0);
	return rsdp;
}

/* Follow the XSDT to the table with |sig|; fail if absent. */
static const uint8_t *xsdt_find(uint64_t rsdp_gpa, const char *sig,
				uint64_t *gpa_out)
{
	const uint8_t *rsdp = gpa_ptr(rsdp_gpa, 36);
	const uint8_t *xsdt = table_at(get64(rsdp + 24), "XSDT");
	unsigned n = (get32(xsdt + 4) - 36) / 8;

	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = get64(xsdt + 36 + 8 * i);

		if (memcmp(gpa_ptr(gpa, 4), sig, 4) == 0) {
			if (gpa_out)
				*gpa_out = gpa;
			return table_at(gpa, sig);
		}
	}
	ck_abort_msg("%s not in XSDT", sig);
	return NULL;
}

/* ---- a small AML walker for what aml.c emits ---------------------------- */

struct aml_named {
	char path[80];            /* "\\_SB_.VR00._CRS" */
	const uint8_t *value, *end;
};

struct aml_walk {
	struct aml_named names[1024];
	unsigned nr;
};

/* §20.2.4; returns bytes used, 0 on error. */
static size_t dec_pkglen(const uint8_t *p, const uint8_t *end, size_t *len)
{
	unsigned n;

	if (p >= end)
		return 0;
	n = (p[0] >> 6) + 1;
	if ((size_t)(end - p) < n)
		return 0;
	if (n == 1) {
		*len = p[0] & 0x3F;
	} else {
		*len = p[0] & 0x0F;
		for (unsigned i = 1; i < n; i++)
			*len |= (size_t)p[i] << (4 + 8 * (i - 1));
	}
	return n;
}

static size_t dec_namestring(const uint8_t *p, const uint8_t *end,
			     const char *scope, char *out, size_t outsz)
{
	const uint8_t *s = p;
	char base[80];
	unsigned nr = 1;

	snprintf(base, sizeof(base), "%s", scope);
	if (p < end && *p == AML_ROOT_CHAR) {
		snprintf(base, sizeof(base), "\\");
		p++;
	}
	while (p < end && *p == AML_PARENT_PREFIX) {
		char *dot = strrchr(base, '.');

		if (dot)
			*dot = 0;
		else
			snprintf(base, sizeof(base), "\\");
		p++;
	}
	if (p < end && *p == 0x00) {
		snprintf(out, outsz, "%s", base);
		return (size_t)(p + 1 - s);
	}
	if (p < end && *p == AML_DUAL_NAME_PREFIX) {
		nr = 2;
		p++;
	} else if (p < end && *p == AML_MULTI_NAME_PREFIX) {
		ck_assert(p + 1 < end);
		nr = p[1];
		p += 2;
	}
	ck_assert((size_t)(end - p) >= 4 * nr);
	snprintf(out, outsz, "%s", base);
	for (unsigned i = 0; i < nr; i++, p += 4) {
		size_t l = strlen(out);

		snprintf(out + l, outsz - l, "%s%.4s",
			 strcmp(out, "\\") == 0 ? "" : ".", (const char *)p);
	}
	return (size_t)(p - s);
}

/* Length of one DataRefObject as aml.c emits them. */
static size_t dec_data_len(const uint8_t *p, const uint8_t *end)
{
	size_t len, n;

	ck_assert(p < end);
	switch (p[0]) {
	case AML_ZERO_OP: case AML_ONE_OP: case AML_ONES_OP:
		return 1;
	case AML_BYTE_PREFIX: return 2;
	case AML_WORD_PREFIX: return 3;
	case AML_DWORD_PREFIX: return 5;
	case AML_QWORD_PREFIX: return 9;
	case AML_STRING_PREFIX:
		len = strnlen((const char *)p + 1, (size_t)(end - p - 1));
		ck_assert((size_t)(end - p - 1) > len);
		return len + 2;
	case AML_BUFFER_OP:
	case AML_PACKAGE_OP:
		n = dec_pkglen(p + 1, end, &len);
		ck_assert(n && len <= (size_t)(end - p - 1));
		return 1 + len;
	}
	ck_abort_msg("unexpected data opcode 0x%02x", p[0]);
	return 0;
}

static size_t dec_integer(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
	size_t n = dec_data_len(p, end);

	switch (p[0]) {
	case AML_ZERO_OP: *v = 0; break;
	case AML_ONE_OP: *v = 1; break;
	case AML_BYTE_PREFIX: *v = p[1]; break;
	case AML_WORD_PREFIX: *v = get16(p + 1); break;
	case AML_DWORD_PREFIX: *v = get32(p + 1); break;
	case AML_QWORD_PREFIX: *v = get64(p + 1); break;
	default: ck_abort_msg("not an integer: 0x%02x", p[0]);
	}
	return n;
}

static void walk_terms(struct aml_walk *w, const uint8_t *p,
		       const uint8_t *end, const char *scope)
{
	while (p < end) {
		char path[80];
		size_t len, n;
		const uint8_t *body_end;

		if (p[0] == AML_NAME_OP) {
			n = dec_namestring(p + 1, end, scope, path, sizeof(path));
			p += 1 + n;
			ck_assert_uint_lt(w->nr, 1024);
			snprintf(w->names[w->nr].path, sizeof(path), "%s", path);
			n = dec_data_len(p, end);
			w->names[w->nr].value = p;
			w->names[w->nr].end = p + n;
			w->nr++;
			p += n;
		} else if (p[0] == AML_SCOPE_OP || p[0] == AML_METHOD_OP ||
			   (p[0] == AML_EXT_OP_PREFIX && p + 1 < end &&
			    p[1] == AML_DEVICE_OP)) {
			bool method = p[0] == AML_METHOD_OP;

			p += p[0] == AML_EXT_OP_PREFIX ? 2 : 1;
			n = dec_pkglen(p, end, &len);
			ck_assert(n && len <= (size_t)(end - p));
			body_end = p + len;
			p += n;
			p += dec_namestring(p, body_end, scope, path,
					    sizeof(path));
			if (!method)
				walk_terms(w, p, body_end, path);
			p = body_end;
		} else {
			ck_abort_msg("unexpected opcode 0x%02x", p[0]);
		}
	}
}

static const struct aml_named *aml_lookup(const struct aml_walk *w,
					  const char *path)
{
	for (unsigned i = 0; i < w->nr; i++)
		if (strcmp(w->names[i].path, path) == 0)
			return &w->names[i];
	return NULL;
}

static void walk_dsdt(uint64_t rsdp, struct aml_walk *w)
{
	const uint8_t *fadt = xsdt_find(rsdp, "FACP", NULL);
	const uint8_t *dsdt = table_at(get64(fadt + 140), "DSDT");

	w->nr = 0;
	walk_terms(w, dsdt + 36, dsdt + get32(dsdt + 4), "\\");
}

/* Resource template bytes of a Name(_CRS, Buffer(){...}). */
static const uint8_t *crs_bytes(const struct aml_named *n, size_t *len)
{
	const uint8_t *p = n->value;
	size_t pl, used;
	uint64_t size;

	ck_assert_uint_eq(p[0], AML_BUFFER_OP);
	used = dec_pkglen(p + 1, n->end, &pl);
	p += 1 + used;
	p += dec_integer(p, n->end, &size);
	ck_assert_uint_eq((size_t)(n->end - p), size);
	*len = size;
	return p;
}

/* ---- AML builder --------------------------------------------------------- */

START_TEST(test_aml_integer_encodings)
{
	static const struct { uint64_t v; uint8_t bytes[9]; size_t n; } cases[] = {
		{ 0, { 0x00 }, 1 },
		{ 1, { 0x01 }, 1 },
		{ 0x2A, { 0x0A, 0x2A }, 2 },
		{ 0x1234, { 0x0B, 0x34, 0x12 }, 3 },
		{ 0xFEC00000, { 0x0C, 0x00, 0x00, 0xC0, 0xFE }, 5 },
		{ 0x100000000ULL, { 0x0E, 0, 0, 0, 0, 1, 0, 0, 0 }, 9 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct aml_buf b;

		aml_buf_init(&b);
		aml_integer(&b, cases[i].v);
		ck_assert_int_eq(b.err, 0);
		ck_assert_uint_eq(b.len, cases[i].n);
		ck_assert_mem_eq(b.data, cases[i].bytes, cases[i].n);
		aml_buf_free(&b);
	}
}
END_TEST

START_TEST(test_aml_eisaid_and_names)
{
	struct aml_buf b;
	/* EISAID("PNP0A03") is the well-known 0x030AD041 */
	static const uint8_t pnp0a03[5] = { 0x0C, 0x41, 0xD0, 0x0A, 0x03 };
	static const uint8_t dual[9] = { 0x5C, 0x2E, '_', 'S', 'B', '_',
					 'P', 'C', 'I', };

	aml_buf_init(&b);
	aml_eisaid(&b, "PNP0A03");
	ck_assert_int_eq(b.err, 0);
	ck_assert_mem_eq(b.data, pnp0a03, 5);
	aml_buf_free(&b);

	aml_buf_init(&b);
	aml_namestring(&b, "\\_SB.PCI0");
	ck_assert_int_eq(b.err, 0);
	ck_assert_uint_eq(b.len, 10);
	ck_assert_mem_eq(b.data, dual, 9);
	ck_assert_uint_eq(b.data[9], '0');
	aml_buf_free(&b);

	aml_buf_init(&b);
	aml_namestring(&b, "A.B.C");
	ck_assert_uint_eq(b.len, 2 + 12);
	ck_assert_uint_eq(b.data[0], AML_MULTI_NAME_PREFIX);
	ck_assert_uint_eq(b.data[1], 3);
	ck_assert_mem_eq(b.data + 2, "A___B___C___", 12);
	aml_buf_free(&b);

	/* bad input is sticky */
	aml_buf_init(&b);
	aml_namestring(&b, "TOOLONG");
	ck_assert_int_eq(b.err, -EINVAL);
	aml_integer(&b, 5);
	ck_assert_uint_eq(b.len, 0);
	aml_buf_free(&b);
	aml_buf_init(&b);
	aml_eisaid(&b, "pnp0a03");
	ck_assert_int_eq(b.err, -EINVAL);
	aml_buf_free(&b);
}
END_TEST

/* §20.2.4: bodies of 62, 63, 4093 and 4094 bytes cross the 1-, 2- and
 * 3-byte PkgLength boundaries; the encoding counts itself. */
START_TEST(test_aml_pkglength_boundaries)
{
	static const size_t bodies[] = { 10, 61, 62, 63, 4092, 4093, 4094,
					 70000 };

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct aml_buf b;
		size_t mark, len, n;

		aml_buf_init(&b);
		mark = aml_scope_begin(&b, "S");
		/* pad the body to exactly bodies[i] bytes with raw zeroes */
		for (size_t k = b.len - mark; k < bodies[i]; k++)
			aml_byte(&b, 0);
		aml_end(&b, mark);
		ck_assert_int_eq(b.err, 0);
		n = dec_pkglen(b.data + 1, b.data + b.len, &len);
		ck_assert_uint_ne(n, 0);
		ck_assert_uint_eq(len, bodies[i] + n);
		ck_assert_uint_eq(b.len, 1 + len);
		ck_assert_uint_eq(n, bodies[i] + 1 <= 63 ? 1 :
				     bodies[i] + 2 <= 0xFFF ? 2 :
				     bodies[i] + 3 <= 0xFFFFF ? 3 : 4);
		aml_buf_free(&b);
	}
}
END_TEST

/* ---- ACPI tables --------------------------------------------------------- */

START_TEST(test_rsdp_found_by_scan_and_checksummed)
{
	struct acpi_platform p;
	uint64_t rsdp = build_default(2, &p);
	const uint8_t *r;
	uint64_t found = 0;

	ck_assert_uint_eq(rsdp, ACPI_TABLES_GPA);
	/* §5.2.5.1: a guest scans 0xE0000-0xFFFFF on 16-byte boundaries */
	for (uint64_t a = 0xE0000; a < 0x100000; a += 16) {
		if (memcmp(gpa_ptr(a, 8), "RSD PTR ", 8) == 0) {
			found = a;
			break;
		}
	}
	ck_assert_uint_eq(found, rsdp);
	r = gpa_ptr(rsdp, 36);
	ck_assert_uint_eq(r[15], 2);
	ck_assert_uint_eq(get32(r + 20), 36);
	ck_assert_uint_eq(acpi_checksum(r, 20), 0);
	ck_assert_uint_eq(acpi_checksum(r, 36), 0);
	table_at(get32(r + 16), "RSDT");
	table_at(get64(r + 24), "XSDT");
}
END_TEST

START_TEST(test_table_linkage_rsdp_xsdt_fadt_dsdt)
{
	struct acpi_platform p;
	uint64_t rsdp = build_default(2, &p);
	const uint8_t *r = gpa_ptr(rsdp, 36);
	const uint8_t *xsdt = table_at(get64(r + 24), "XSDT");
	const uint8_t *rsdt = table_at(get32(r + 16), "RSDT");
	const uint8_t *fadt, *facs;
	unsigned n = (get32(xsdt + 4) - 36) / 8;

	/* FADT, MADT, MCFG; the RSDT lists the same tables */
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq((get32(rsdt + 4) - 36) / 4, n);
	for (unsigned i = 0; i < n; i++)
		ck_assert_uint_eq(get64(xsdt + 36 + 8 * i),
				  get32(rsdt + 36 + 4 * i));
	fadt = table_at(get64(xsdt + 36), "FACP");
	ck_assert_uint_eq(get32(fadt + 4), 276);
	ck_assert_uint_eq(fadt[8], 6);
	/* DSDT and X_DSDT agree and point at a valid DSDT */
	ck_assert_uint_eq(get32(fadt + 40), get64(fadt + 140));
	table_at(get64(fadt + 140), "DSDT");
	/* FACS: 64-byte aligned, no checksum */
	ck_assert_uint_eq(get32(fadt + 36) % 64, 0);
	facs = gpa_ptr(get32(fadt + 36), 64);
	ck_assert_mem_eq(facs, "FACS", 4);
	ck_assert_uint_eq(get32(facs + 4), 64);
	/* every XSDT entry is a table this build made */
	table_at(get64(xsdt + 36 + 8), "APIC");
	table_at(get64(xsdt + 36 + 16), "MCFG");
	/* OEM Table ID matches between FADT and XSDT (§5.2.8) */
	ck_assert_mem_eq(fadt + 16, xsdt + 16, 8);
}
END_TEST

START_TEST(test_fadt_pm_block_reset_reg_and_flags)
{
	struct acpi_platform p;
	uint64_t rsdp = build_default(1, &p);
	const uint8_t *f = xsdt_find(rsdp, "FACP", NULL);
	uint32_t flags = get32(f + 112);

	ck_assert_uint_eq(get16(f + 46), 9);               /* SCI_INT */
	ck_assert_uint_eq(get32(f + 48), 0);               /* no SMI_CMD */
	ck_assert_uint_eq(get32(f + 56), 0x600);           /* PM1a_EVT_BLK */
	ck_assert_uint_eq(get32(f + 64), 0x604);           /* PM1a_CNT_BLK */
	ck_assert_uint_eq(get32(f + 76), 0x608);           /* PM_TMR_BLK */
	ck_assert_uint_eq(f[88], 4);
	ck_assert_uint_eq(f[89], 2);
	ck_assert_uint_eq(f[91], 4);
	/* X_PM1a_EVT_BLK / X_PM1a_CNT_BLK: system I/O, same ports */
	ck_assert_uint_eq(f[148], 1);
	ck_assert_uint_eq(f[149], 32);
	ck_assert_uint_eq(get64(f + 152), 0x600);
	ck_assert_uint_eq(f[172], 1);
	ck_assert_uint_eq(f[173], 16);
	ck_assert_uint_eq(get64(f + 176), 0x604);
	/* RESET_REG: I/O port 0xCF9, byte, value 6 */
	ck_assert_uint_eq(f[116], 1);
	ck_assert_uint_eq(f[117], 8);
	ck_assert_uint_eq(f[119], 1);
	ck_assert_uint_eq(get64(f + 120), 0xCF9);
	ck_assert_uint_eq(f[128], 0x06);
	ck_assert(flags & (1u << 10));                     /* RESET_REG_SUP */
	ck_assert(!(flags & (1u << 20)));                  /* HW_REDUCED_ACPI */
	ck_assert(!(flags & (1u << 4)));                   /* fixed power btn */
	ck_assert(flags & (1u << 8));                      /* 32-bit PM timer */
	/* IAPC_BOOT_ARCH: legacy devices and 8042 present, no VGA */
	ck_assert_uint_eq(get16(f + 109), 0x7);
}
END_TEST

static void check_madt(unsigned nr_cpus)
{
	struct acpi_platform p;
	uint64_t rsdp = build_default(nr_cpus, &p);
	const uint8_t *m = xsdt_find(rsdp, "APIC", NULL);
	uint32_t len = get32(m + 4);
	unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0;
	bool seen[ACPI_MAX_CPUS] = { false };

	ck_assert_uint_eq(get32(m + 36), 0xFEE00000);
	ck_assert_uint_eq(get32(m + 40) & 1, 1);           /* PCAT_COMPAT */
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = m + off;

		ck_assert_uint_ge(e[1], 2);
		ck_assert_uint_le(off + e[1], len);
		switch (e[0]) {
		case 0:
			ck_assert_uint_eq(e[1], 8);
			ck_assert_uint_eq(e[2], e[3]);     /* UID == APIC id */
			ck_assert_uint_lt(e[3], nr_cpus);
			ck_assert(!seen[e[3]]);
			seen[e[3]] = true;
			ck_assert_uint_eq(get32(e + 4) & 1, 1);
			/* §5.2.12.1: BSP first */
			if (lapics == 0)
				ck_assert_uint_eq(e[3], 0);
			lapics++;
			break;
		case 1:
			ck_assert_uint_eq(e[1], 12);
			ck_assert_uint_eq(e[2], 0);
			ck_assert_uint_eq(get32(e + 4), 0xFEC00000);
			ck_assert_uint_eq(get32(e + 8), 0);
			ioapics++;
			break;
		case 2:
			ck_assert_uint_eq(e[1], 10);
			ck_assert_uint_eq(e[2], 0);
			if (e[3] == 0) {
				ck_assert_uint_eq(get32(e + 4), 2);
			} else {
				ck_assert_uint_eq(e[3], 9);
				ck_assert_uint_eq(get32(e + 4), 9);
				ck_assert_uint_eq(get16(e + 8), 0xD);
			}
			isos++;
			break;
		case 4:
			ck_assert_uint_eq(e[1], 6);
			ck_assert_uint_eq(e[2], 0xFF);
			ck_assert_uint_eq(e[5], 1);
			nmis++;
			break;
		default:
			ck_abort_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	ck_assert_uint_eq(lapics, nr_cpus);
	ck_assert_uint_eq(ioapics, 1);
	ck_assert_uint_eq(isos, 2);
	ck_assert_uint_eq(nmis, 1);
}

START_TEST(test_madt_one_lapic_per_cpu)
{
	static const unsigned counts[] = { 1, 2, 4, 64, 255 };

	check_madt(counts[_i]);
}
END_TEST

START_TEST(test_mcfg_describes_ecam)
{
	struct acpi_platform p;
	uint64_t rsdp = build_default(2, &p);
	const uint8_t *m = xsdt_find(rsdp, "MCFG", NULL);

	ck_assert_uint_eq(get32(m + 4), 36 + 8 + 16);
	ck_assert_uint_eq(get64(m + 44), 0xE0000000);
	ck_assert_uint_eq(get16(m + 52), 0);
	ck_assert_uint_eq(m[54], 0);
	ck_assert_uint_eq(m[55], 255);
}
END_TEST

START_TEST(test_dsdt_s5_decodes)
{
	struct acpi_platform p;
	struct aml_walk w;
	const struct aml_named *s5;
	const uint8_t *v;
	size_t n, pl;
	uint64_t x;

	walk_dsdt(build_default(2, &p), &w);
	s5 = aml_lookup(&w, "\\_S5_");
	ck_assert_ptr_nonnull(s5);
	v = s5->value;
	ck_assert_uint_eq(v[0], AML_PACKAGE_OP);
	n = dec_pkglen(v + 1, s5->end, &pl);
	v += 1 + n;
	ck_assert_uint_eq(v[0], 4);                        /* NumElements */
	v++;
	v += dec_integer(v, s5->end, &x);
	ck_assert_uint_eq(x, PM_SLP_TYP_S5);               /* SLP_TYPa */
	v += dec_integer(v, s5->end, &x);
	ck_assert_uint_eq(x, PM_SLP_TYP_S5);               /* SLP_TYPb */
	v += dec_integer(v, s5->end, &x);
	v += dec_integer(v, s5->end, &x);
	ck_assert_ptr_eq(v, s5->end);
}
END_TEST

START_TEST(test_dsdt_virtio_mmio_device_decodes)
{
	struct acpi_platform p;
	struct aml_walk w;
	unsigned found = 0;

	walk_dsdt(build_default(2, &p), &w);
	for (unsigned i = 0; i < w.nr; i++) {
		const struct aml_named *hid = &w.names[i], *crs, *uid;
		char prefix[80], path[96];
		const uint8_t *r;
		size_t len, plen = strlen(hid->path);
		uint64_t u;

		if (plen < 5 || strcmp(hid->path + plen - 5, "._HID") != 0)
			continue;
		if (hid->value[0] != AML_STRING_PREFIX ||
		    strcmp((const char *)hid->value + 1, "LNRO0005") != 0)
			continue;
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(plen - 5),
			 hid->path);
		ck_assert_str_eq(prefix, found == 0 ? "\\_SB_.VR00" :
				 "\\_SB_.VR01");
		snprintf(path, sizeof(path), "%s._UID", prefix);
		uid = aml_lookup(&w, path);
		ck_assert_ptr_nonnull(uid);
		dec_integer(uid->value, uid->end, &u);
		ck_assert_uint_eq(u, found);

		snprintf(path, sizeof(path), "%s._CRS", prefix);
		crs = aml_lookup(&w, path);
		ck_assert_ptr_nonnull(crs);
		r = crs_bytes(crs, &len);
		/* Memory32Fixed(ReadWrite, base, size) */
		ck_assert_uint_eq(len, 12 + 9 + 2);
		ck_assert_uint_eq(r[0], 0x86);
		ck_assert_uint_eq(get16(r + 1), 9);
		ck_assert_uint_eq(r[3], 1);
		ck_assert_uint_eq(get32(r + 4), p.mmio[found].base);
		ck_assert_uint_eq(get32(r + 8), p.mmio[found].size);
		/* Interrupt(ResourceConsumer, Edge|Level, ActiveHigh,
		 * Exclusive) { gsi } */
		r += 12;
		ck_assert_uint_eq(r[0], 0x89);
		ck_assert_uint_eq(get16(r + 1), 6);
		ck_assert_uint_eq(r[3], p.mmio[found].level ? 0x01 : 0x03);
		ck_assert_uint_eq(r[4], 1);
		ck_assert_uint_eq(get32(r + 5), p.mmio[found].gsi);
		/* End tag */
		ck_assert_uint_eq(r[9], 0x79);
		found++;
	}
	ck_assert_uint_eq(found, 2);
}
END_TEST

START_TEST(test_dsdt_pci_host_and_com1)
{
	struct acpi_platform p;
	struct aml_walk w;
	const struct aml_named *n;
	const uint8_t *r;
	size_t len;
	static const uint8_t pnp0a08[5] = { 0x0C, 0x41, 0xD0, 0x0A, 0x08 };
	static const uint8_t pnp0501[5] = { 0x0C, 0x41, 0xD0, 0x05, 0x01 };

	walk_dsdt(build_default(2, &p), &w);
	n = aml_lookup(&w, "\\_SB_.PCI0._HID");
	ck_assert_ptr_nonnull(n);
	ck_assert_mem_eq(n->value, pnp0a08, 5);
	n = aml_lookup(&w, "\\_SB_.PCI0._CRS");
	ck_assert_ptr_nonnull(n);
	r = crs_bytes(n, &len);
	/* WordBusNumber 0-255 */
	ck_assert_uint_eq(r[0], 0x88);
	ck_assert_uint_eq(r[3], 2);
	ck_assert_uint_eq(get16(r + 8), 0);
	ck_assert_uint_eq(get16(r + 10), 255);
	ck_assert_uint_eq(get16(r + 14), 256);
	r += 16;
	/* IO 0xCF8 len 8, then WordIO 0-0xCF7, 0xD00-0xFFFF */
	ck_assert_uint_eq(r[0], 0x47);
	ck_assert_uint_eq(get16(r + 2), 0xCF8);
	ck_assert_uint_eq(r[7], 8);
	r += 8;
	ck_assert_uint_eq(r[0], 0x88);
	ck_assert_uint_eq(r[3], 1);
	ck_assert_uint_eq(get16(r + 10), 0xCF7);
	r += 16;
	ck_assert_uint_eq(get16(r + 8), 0xD00);
	ck_assert_uint_eq(get16(r + 10), 0xFFFF);
	r += 16;
	/* DWordMemory 0xC0000000-0xDFFFFFFF */
	ck_assert_uint_eq(r[0], 0x87);
	ck_assert_uint_eq(get32(r + 10), 0xC0000000);
	ck_assert_uint_eq(get32(r + 14), 0xDFFFFFFF);
	ck_assert_uint_eq(get32(r + 22), 0x20000000);
	r += 26;
	ck_assert_uint_eq(r[0], 0x79);

	n = aml_lookup(&w, "\\_SB_.COM1._HID");
	ck_assert_ptr_nonnull(n);
	ck_assert_mem_eq(n->value, pnp0501, 5);
	n = aml_lookup(&w, "\\_SB_.COM1._CRS");
	r = crs_bytes(n, &len);
	ck_assert_uint_eq(len, 8 + 3 + 2);
	ck_assert_uint_eq(get16(r + 2), 0x3F8);
	ck_assert_uint_eq(r[7], 8);
	ck_assert_uint_eq(r[8], 0x22);
	ck_assert_uint_eq(get16(r + 9), 1u << 4);
	ck_assert_ptr_null(aml_lookup(&w, "\\_SB_.COM2._HID"));
	/* one processor device per CPU */
	ck_assert_ptr_nonnull(aml_lookup(&w, "\\_SB_.C001._UID"));
	ck_assert_ptr_null(aml_lookup(&w, "\\_SB_.C002._UID"));
}
END_TEST

/* §6.2.13: _PRT is a package of {slot<<16|0xFFFF, pin, 0, GSI} */
START_TEST(test_dsdt_pci_prt_decodes)
{
	static const unsigned gsi[4] = { 16, 17, 18, 19 };
	struct acpi_platform p;
	struct aml_walk w;
	const struct aml_named *n;
	const uint8_t *v, *end;
	uint64_t rsdp = 0;
	size_t pl, used;
	bool seen[32][4] = { { false } };

	/* none by default */
	walk_dsdt(build_default(1, &p), &w);
	ck_assert_ptr_null(aml_lookup(&w, "\\_SB_.PCI0._PRT"));

	acpi_platform_pci_intx_swizzle(&p, gsi);
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    &p, &rsdp), 0);
	walk_dsdt(rsdp, &w);
	n = aml_lookup(&w, "\\_SB_.PCI0._PRT");
	ck_assert_ptr_nonnull(n);
	v = n->value;
	end = n->end;
	ck_assert_uint_eq(v[0], AML_PACKAGE_OP);
	used = dec_pkglen(v + 1, end, &pl);
	v += 1 + used;
	ck_assert_uint_eq(*v++, 128);
	for (unsigned i = 0; i < 128; i++) {
		const uint8_t *e_end;
		uint64_t addr, pin, src, g;

		ck_assert_uint_eq(v[0], AML_PACKAGE_OP);
		e_end = v + dec_data_len(v, end);
		used = dec_pkglen(v + 1, end, &pl);
		v += 1 + used;
		ck_assert_uint_eq(*v++, 4);
		v += dec_integer(v, e_end, &addr);
		v += dec_integer(v, e_end, &pin);
		v += dec_integer(v, e_end, &src);
		v += dec_integer(v, e_end, &g);
		ck_assert_ptr_eq(v, e_end);
		ck_assert_uint_eq(addr & 0xFFFF, 0xFFFF);
		ck_assert_uint_lt(addr >> 16, 32);
		ck_assert_uint_lt(pin, 4);
		ck_assert_uint_eq(src, 0);
		ck_assert_uint_eq(g, gsi[((addr >> 16) + pin) % 4]);
		ck_assert(!seen[addr >> 16][pin]);
		seen[addr >> 16][pin] = true;
	}
	ck_assert_ptr_eq(v, end);

	p.pci_intx_gsi[5][0] = 24;                /* no such IOAPIC pin */
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    &p, &rsdp), -EINVAL);
}
END_TEST

START_TEST(test_acpi_build_rejects_bad_input)
{
	struct acpi_platform p;
	uint64_t rsdp = 0;

	acpi_platform_defaults(&p, 0);
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    &p, &rsdp), -EINVAL);
	acpi_platform_defaults(&p, 256);
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    &p, &rsdp), -EINVAL);
	acpi_platform_defaults(&p, 2);
	/* too small an area */
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, 256, &p, &rsdp),
			 -ENOSPC);
	/* not RAM: past the end of a 64 MiB guest */
	ck_assert_int_eq(acpi_build(&mem, MEM_SIZE, ACPI_TABLES_SIZE, &p,
				    &rsdp), -EFAULT);
	ck_assert_uint_eq(rsdp, 0);
	ck_assert_int_eq(acpi_platform_add_mmio(&p, 0xD0000000, 0x200, 24,
						false), -EINVAL);
	ck_assert_int_eq(acpi_platform_add_mmio(&p, 0xD0000000, 0, 5, false),
			 -EINVAL);
	for (unsigned i = 0; i < ACPI_MAX_MMIO_DEVICES; i++)
		ck_assert_int_eq(acpi_platform_add_mmio(&p, 0xD0000000 +
							0x1000ULL * i,
							0x200, 5, false), 0);
	ck_assert_int_eq(acpi_platform_add_mmio(&p, 0xD0100000, 0x200, 5,
						false), -ENOSPC);
	/* all 32 devices and 255 CPUs still fit the default area */
	p.nr_cpus = 255;
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    &p, &rsdp), 0);
	p.sci_gsi = 2;
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    &p, &rsdp), -EINVAL);
	/* a PM block must end at or below port 0xFFFF */
	p.sci_gsi = 9;
	p.pm1_evt_port = 0xFFFC;
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    &p, &rsdp), 0);
	p.pm1_evt_port = 0xFFFD;
	ck_assert_int_eq(acpi_build(&mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
				    &p, &rsdp), -EINVAL);
}
END_TEST

/* ---- MP table -------------------------------------------------------------- */

START_TEST(test_mptable_checksums_and_entries)
{
	static const unsigned counts[] = { 1, 4, 64, 255 };
	struct mptable_platform p = { .nr_cpus = counts[_i], .sci_irq = 9,
				      .pci = true };
	const uint8_t *fp, *t, *e;
	unsigned procs = 0, buses = 0, ioapics = 0, irqs = 0, lints = 0;
	uint16_t len, count;

	ck_assert_int_eq(mptable_build(&mem, MPTABLE_FP_GPA, MPTABLE_GPA,
				       MPTABLE_SIZE, &p), 0);
	fp = gpa_ptr(MPTABLE_FP_GPA, 16);
	ck_assert_mem_eq(fp, "_MP_", 4);
	ck_assert_uint_eq(fp[8], 1);
	ck_assert_uint_eq(fp[9], 4);
	ck_assert_uint_eq(acpi_checksum(fp, 16), 0);
	ck_assert_uint_eq(get32(fp + 4), MPTABLE_GPA);
	t = gpa_ptr(MPTABLE_GPA, 44);
	ck_assert_mem_eq(t, "PCMP", 4);
	len = get16(t + 4);
	count = get16(t + 34);
	t = gpa_ptr(MPTABLE_GPA, len);
	ck_assert_uint_eq(acpi_checksum(t, len), 0);
	ck_assert_uint_eq(get32(t + 36), 0xFEE00000);
	e = t + 44;
	for (unsigned i = 0; i < count; i++) {
		ck_assert(e < t + len);
		switch (e[0]) {
		case 0:
			ck_assert_uint_eq(e[1], procs);
			ck_assert_uint_eq(e[3] & 1, 1);
			ck_assert_uint_eq(!!(e[3] & 2), procs == 0);
			procs++;
			e += 20;
			break;
		case 1:
			ck_assert_uint_eq(procs, p.nr_cpus); /* sorted */
			buses++;
			e += 8;
			break;
		case 2:
			ck_assert_uint_eq(get32(e + 4), 0xFEC00000);
			ioapics++;
			e += 8;
			break;
		case 3:
			ck_assert_uint_eq(e[4], 1);          /* ISA bus id */
			ck_assert_uint_ne(e[5], 2);
			ck_assert_uint_eq(e[7], e[5] == 0 ? 2 : e[5]);
			ck_assert_uint_eq(get16(e + 2), e[5] == 9 ? 0xD : 0);
			irqs++;
			e += 8;
			break;
		case 4:
			ck_assert_uint_eq(e[6], 0xFF);
			ck_assert_uint_eq(e[7], lints);      /* LINT0, LINT1 */
			ck_assert_uint_eq(e[1], lints == 0 ? 3 : 1);
			lints++;
			e += 8;
			break;
		default:
			ck_abort_msg("bad MP entry type %u", e[0]);
		}
	}
	ck_assert_ptr_eq(e, t + len);
	ck_assert_uint_eq(procs, p.nr_cpus);
	ck_assert_uint_eq(buses, 2);
	ck_assert_uint_eq(ioapics, 1);
	ck_assert_uint_eq(irqs, 15);
	ck_assert_uint_eq(lints, 2);
}
END_TEST

START_TEST(test_mptable_rejects_bad_input)
{
	struct mptable_platform p = { .nr_cpus = 64, .sci_irq = 9 };

	/* 64 CPUs do not fit in the EBDA's kilobyte */
	ck_assert_int_eq(mptable_build(&mem, MPTABLE_FP_GPA,
				       MPTABLE_FP_GPA + 16, 0x3F0, &p),
			 -ENOSPC);
	ck_assert_int_eq(mptable_build(&mem, MPTABLE_FP_GPA + 1, MPTABLE_GPA,
				       MPTABLE_SIZE, &p), -EINVAL);
	p.nr_cpus = 0;
	ck_assert_int_eq(mptable_build(&mem, MPTABLE_FP_GPA, MPTABLE_GPA,
				       MPTABLE_SIZE, &p), -EINVAL);
	p.nr_cpus = 1;
	ck_assert_int_eq(mptable_build(&mem, MPTABLE_FP_GPA, MEM_SIZE,
				       MPTABLE_SIZE, &p), -EFAULT);
}
END_TEST

/* ---- PM block ------------------------------------------------------------ */

struct pm_log {
	unsigned sleeps;
	unsigned last_slp_typ;
	unsigned sci_changes;
	bool sci;
};

static void log_sleep(void *opaque, unsigned slp_typ)
{
	struct pm_log *l = opaque;

	l->sleeps++;
	l->last_slp_typ = slp_typ;
}

static void log_sci(void *opaque, bool level)
{
	struct pm_log *l = opaque;

	l->sci_changes++;
	l->sci = level;
}

static const struct pm_ops log_ops = { .on_sleep = log_sleep,
				       .set_sci = log_sci };

static uint64_t fake_ns;

static uint64_t fake_clock(void)
{
	return fake_ns;
}

static struct bus pio;
static struct pm_device pm;
static struct pm_log pmlog;

static void pm_setup(void)
{
	memset(&pmlog, 0, sizeof(pmlog));
	ck_assert_int_eq(bus_init(&pio, "pio"), 0);
	ck_assert_int_eq(pm_init(&pm, &pio, PM_EVT_PORT, PM_CNT_PORT,
				 PM_TMR_PORT, &log_ops, &pmlog), 0);
}

static void pm_teardown(void)
{
	pm_destroy(&pm);
	bus_destroy(&pio);
}

static uint64_t pio_read(uint64_t port, unsigned size)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_read(&pio, port, size, &v), 0);
	return v;
}

static void pio_write(uint64_t port, unsigned size, uint64_t v)
{
	ck_assert_int_eq(bus_write(&pio, port, size, v), 0);
}

/* ACPI 6.4 §4.8.4.2.1: SLP_EN with SLP_TYP of \_S5 asks for soft-off */
START_TEST(test_pm_slp_en_with_s5_powers_off)
{
	/* SLP_TYP alone does nothing */
	pio_write(PM_CNT_PORT, 2, PM_SLP_TYP_S5 << PM1_SLP_TYP_SHIFT);
	ck_assert_uint_eq(pmlog.sleeps, 0);
	/* SCI_EN always reads 1; SLP_TYP reads back */
	ck_assert_uint_eq(pio_read(PM_CNT_PORT, 2),
			  PM1_SCI_EN | PM_SLP_TYP_S5 << PM1_SLP_TYP_SHIFT);
	/* What ACPICA does: SLP_TYP | SLP_EN in one 16-bit write */
	pio_write(PM_CNT_PORT, 2,
		  PM_SLP_TYP_S5 << PM1_SLP_TYP_SHIFT | PM1_SLP_EN);
	ck_assert_uint_eq(pmlog.sleeps, 1);
	ck_assert_uint_eq(pmlog.last_slp_typ, PM_SLP_TYP_S5);
	/* SLP_EN is write-only */
	ck_assert_uint_eq(pio_read(PM_CNT_PORT, 2) & PM1_SLP_EN, 0);
	/* A byte write of the high half (bits 8-15) works too */
	pio_write(PM_CNT_PORT + 1, 1,
		  (PM_SLP_TYP_S5 << PM1_SLP_TYP_SHIFT | PM1_SLP_EN) >> 8);
	ck_assert_uint_eq(pmlog.sleeps, 2);
	ck_assert_uint_eq(pmlog.last_slp_typ, PM_SLP_TYP_S5);
}
END_TEST

/* §4.8.4.1: status bits are write-1-to-clear; SCI = STS & EN */
START_TEST(test_pm_power_button_raises_sci)
{
	pm_power_button(&pm);
	ck_assert_uint_eq(pio_read(PM_EVT_PORT, 2), PM1_PWRBTN_STS);
	ck_assert_uint_eq(pmlog.sci_changes, 0);   /* not enabled yet */
	pio_write(PM_EVT_PORT + 2, 2, PM1_PWRBTN_STS); /* PWRBTN_EN */
	ck_assert(pmlog.sci);
	ck_assert_uint_eq(pio_read(PM_EVT_PORT, 4),
			  PM1_PWRBTN_STS | (uint32_t)PM1_PWRBTN_STS << 16);
	/* writing 0 clears nothing; writing the bit clears it */
	pio_write(PM_EVT_PORT, 2, 0);
	ck_assert(pmlog.sci);
	pio_write(PM_EVT_PORT, 2, PM1_PWRBTN_STS);
	ck_assert(!pmlog.sci);
	ck_assert_uint_eq(pmlog.sci_changes, 2);
	ck_assert_uint_eq(pio_read(PM_EVT_PORT, 2), 0);
	/* enable bits we cannot raise stay clear */
	pio_write(PM_EVT_PORT + 2, 2, 0xFFFF);
	ck_assert_uint_eq(pio_read(PM_EVT_PORT + 2, 2) & 0x4000, 0);
	pm_reset(&pm);
	ck_assert_uint_eq(pio_read(PM_EVT_PORT, 4), 0);
}
END_TEST

/* §4.8.4.3: 3.579545 MHz counter, 32 bits with TMR_VAL_EXT */
START_TEST(test_pm_timer_counts_at_acpi_rate)
{
	uint64_t t0;

	pm.clock_ns = fake_clock;
	fake_ns = 1000;
	pm.clock_origin_ns = fake_ns;
	ck_assert_uint_eq(pio_read(PM_TMR_PORT, 4), 0);
	fake_ns += 1000000000ULL;
	ck_assert_uint_eq(pio_read(PM_TMR_PORT, 4), 3579545);
	/* wraps at 32 bits */
	t0 = (1ULL << 32) * 1000000000ULL / PM_TMR_HZ + 1;
	fake_ns = 1000 + t0;
	ck_assert_uint_lt(pio_read(PM_TMR_PORT, 4), 10);
	/* writes are ignored */
	pio_write(PM_TMR_PORT, 4, 0x12345678);
	ck_assert_uint_lt(pio_read(PM_TMR_PORT, 4), 10);
}
END_TEST

static void dummy_read(void *opaque, uint64_t offset, unsigned size,
		       uint64_t *value)
{
	(void)opaque, (void)offset, (void)size, (void)value;
}

static void dummy_write(void *opaque, uint64_t offset, unsigned size,
			uint64_t value)
{
	(void)opaque, (void)offset, (void)size, (void)value;
}

static const struct bus_ops dummy_ops = { dummy_read, dummy_write };

START_TEST(test_pm_ports_conflict)
{
	struct pm_device other;

	ck_assert_int_eq(pm_init(&other, &pio, 0x700, PM_CNT_PORT, 0,
				 &log_ops, NULL), -EEXIST);
	/* the failed init left nothing behind at 0x700 */
	ck_assert_int_eq(bus_register(&pio, 0x700, 4, &dummy_ops, NULL, "x"),
			 0);
}
END_TEST

static Suite *acpi_suite(void)
{
	Suite *s = suite_create("acpi");
	TCase *aml = tcase_create("aml");
	TCase *tables = tcase_create("tables");
	TCase *mp = tcase_create("mptable");
	TCase *pmc = tcase_create("pm");

	tcase_add_test(aml, test_aml_integer_encodings);
	tcase_add_test(aml, test_aml_eisaid_and_names);
	tcase_add_test(aml, test_aml_pkglength_boundaries);
	suite_add_tcase(s, aml);

	tcase_add_checked_fixture(tables, mem_setup, mem_teardown);
	tcase_add_test(tables, test_rsdp_found_by_scan_and_checksummed);
	tcase_add_test(tables, test_table_linkage_rsdp_xsdt_fadt_dsdt);
	tcase_add_test(tables, test_fadt_pm_block_reset_reg_and_flags);
	tcase_add_loop_test(tables, test_madt_one_lapic_per_cpu, 0, 5);
	tcase_add_test(tables, test_mcfg_describes_ecam);
	tcase_add_test(tables, test_dsdt_s5_decodes);
	tcase_add_test(tables, test_dsdt_virtio_mmio_device_decodes);
	tcase_add_test(tables, test_dsdt_pci_host_and_com1);
	tcase_add_test(tables, test_dsdt_pci_prt_decodes);
	tcase_add_test(tables, test_acpi_build_rejects_bad_input);
	suite_add_tcase(s, tables);

	tcase_add_checked_fixture(mp, mem_setup, mem_teardown);
	tcase_add_loop_test(mp, test_mptable_checksums_and_entries, 0, 4);
	tcase_add_test(mp, test_mptable_rejects_bad_input);
	suite_add_tcase(s, mp);

	tcase_add_checked_fixture(pmc, pm_setup, pm_teardown);
	tcase_add_test(pmc, test_pm_slp_en_with_s5_powers_off);
	tcase_add_test(pmc, test_pm_power_button_raises_sci);
	tcase_add_test(pmc, test_pm_timer_counts_at_acpi_rate);
	tcase_add_test(pmc, test_pm_ports_conflict);
	suite_add_tcase(s, pmc);
	return s;
}

UNIT_MAIN(acpi_suite)
