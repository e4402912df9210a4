// SPDX-License-Identifier: GPL-2.0
/*
 * Kite's in-kernel agent: the platform cases (PCI inventory, ACPI tables,
 * vCPUs, CMOS RTC, 8250 serial).
 *
 * Command line, all optional; a case whose expectation is absent SKIPs:
 *
 *	kite_agent.pci=ENTRY[,ENTRY...] | none
 *	    ENTRY = VVVV:DDDD[/KEY=VALUE...], KEY one of
 *	      at=[DDDD:]BB:DD.F   the device's address (else matched by ID)
 *	      class=CCCCCC        24-bit class code, hex
 *	      subsys=VVVV:DDDD    subsystem vendor:device
 *	      msix=N              MSI-X table size (0: no MSI-X capability)
 *	      barN=KIND:SIZE      N 0..5; KIND io|mem|mempf|mem64|mem64pf|none,
 *	                          SIZE as memparse (0x4000, 16K); once one barN
 *	                          is given, unlisted BARs must be absent
 *	      drv=NAME            the bound driver (e.g. virtio-pci)
 *	    Devices present and entries must pair up one to one; a host bridge
 *	    (class 0600xx) nobody listed is not an error.  On failure the
 *	    inventory is printed in this same syntax.
 *	kite_agent.cpus=N            vCPUs Kite was asked for
 *	kite_agent.host_time=EPOCH   host UTC seconds when the VM started
 *	kite_agent.rtc_tolerance=S   allowed RTC error, seconds (default 10):
 *	    the RTC may not be behind host_time + uptime, nor off the
 *	    kernel's wall clock (kvm-clock's, i.e. the host's), by more
 */
#include <linux/acpi.h>
#include <linux/console.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/mc146818rtc.h>
#include <linux/pci.h>
#include <linux/rtc.h>
#include <linux/serial_8250.h>
#include <linux/serial_core.h>
#include <linux/serial_reg.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/time.h>
#include <linux/timekeeping.h>
#include <asm/pci_x86.h>

#include "agent.h"

static char *kite_pci;
module_param_named(pci, kite_pci, charp, 0444);
MODULE_PARM_DESC(pci, "expected PCI devices (see platform.c)");

static int kite_cpus;
module_param_named(cpus, kite_cpus, int, 0444);
MODULE_PARM_DESC(cpus, "number of vCPUs Kite was asked for");

static unsigned long long kite_host_time;
module_param_named(host_time, kite_host_time, ullong, 0444);
MODULE_PARM_DESC(host_time, "host UTC time (s since the epoch) at VM start");

static unsigned int kite_rtc_tolerance = 10;
module_param_named(rtc_tolerance, kite_rtc_tolerance, uint, 0444);
MODULE_PARM_DESC(rtc_tolerance, "allowed RTC error in seconds");

/* ---- pci_devices_match ------------------------------------------------ */

enum kite_bar_kind {
	KITE_BAR_NONE,
	KITE_BAR_IO,
	KITE_BAR_MEM,
	KITE_BAR_MEMPF,
	KITE_BAR_MEM64,
	KITE_BAR_MEM64PF,
};

static const char *const kite_bar_kind_names[] = {
	[KITE_BAR_NONE] = "none",
	[KITE_BAR_IO] = "io",
	[KITE_BAR_MEM] = "mem",
	[KITE_BAR_MEMPF] = "mempf",
	[KITE_BAR_MEM64] = "mem64",
	[KITE_BAR_MEM64PF] = "mem64pf",
};

struct kite_pci_expect {
	const char *at;
	u16 vendor, device;
	bool has_class, has_subsys, has_bars;
	u32 class;
	u16 subvendor, subdevice;
	int msix;		/* -1: not checked */
	u8 bar_kind[PCI_STD_NUM_BARS];
	u64 bar_size[PCI_STD_NUM_BARS];
	const char *drv;
	int matched;		/* index into the present devices, or -1 */
};

static int kite_parse_id_pair(char *s, u16 *a, u16 *b)
{
	char *colon = strchr(s, ':');

	if (!colon)
		return -EINVAL;
	*colon = '\0';
	if (kstrtou16(s, 16, a) || kstrtou16(colon + 1, 16, b))
		return -EINVAL;
	return 0;
}

static int kite_parse_bar(const char *key, char *val, struct kite_pci_expect *e)
{
	char *colon, *end;
	unsigned int n;
	size_t k;

	if (kstrtouint(key + 3, 10, &n) || n >= PCI_STD_NUM_BARS)
		return -EINVAL;
	colon = strchr(val, ':');
	if (colon)
		*colon = '\0';
	for (k = 0; k < ARRAY_SIZE(kite_bar_kind_names); k++)
		if (!strcmp(val, kite_bar_kind_names[k]))
			break;
	if (k == ARRAY_SIZE(kite_bar_kind_names))
		return -EINVAL;
	if ((k == KITE_BAR_NONE) != !colon)
		return -EINVAL;
	e->has_bars = true;
	e->bar_kind[n] = k;
	if (colon) {
		e->bar_size[n] = memparse(colon + 1, &end);
		if (*end || !e->bar_size[n])
			return -EINVAL;
	}
	return 0;
}

/* Parse one ENTRY in place; the strings it keeps point into @s. */
static int kite_parse_pci_entry(char *s, struct kite_pci_expect *e)
{
	char *field, *val;
	u32 class;

	memset(e, 0, sizeof(*e));
	e->msix = -1;
	e->matched = -1;
	field = strsep(&s, "/");
	if (kite_parse_id_pair(field, &e->vendor, &e->device))
		return -EINVAL;
	while ((field = strsep(&s, "/")) != NULL) {
		val = strchr(field, '=');
		if (!val)
			return -EINVAL;
		*val++ = '\0';
		if (!strcmp(field, "at")) {
			e->at = val;
		} else if (!strcmp(field, "class")) {
			if (kstrtou32(val, 16, &class) || class > 0xffffff)
				return -EINVAL;
			e->has_class = true;
			e->class = class;
		} else if (!strcmp(field, "subsys")) {
			if (kite_parse_id_pair(val, &e->subvendor, &e->subdevice))
				return -EINVAL;
			e->has_subsys = true;
		} else if (!strcmp(field, "msix")) {
			if (kstrtoint(val, 10, &e->msix) || e->msix < 0)
				return -EINVAL;
		} else if (!strncmp(field, "bar", 3)) {
			if (kite_parse_bar(field, val, e))
				return -EINVAL;
		} else if (!strcmp(field, "drv")) {
			e->drv = val;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

static enum kite_bar_kind kite_bar_kind_of(struct pci_dev *dev, int bar)
{
	unsigned long flags = pci_resource_flags(dev, bar);

	if (!pci_resource_len(dev, bar))
		return KITE_BAR_NONE;
	if (flags & IORESOURCE_IO)
		return KITE_BAR_IO;
	if (flags & IORESOURCE_MEM_64)
		return flags & IORESOURCE_PREFETCH ? KITE_BAR_MEM64PF : KITE_BAR_MEM64;
	return flags & IORESOURCE_PREFETCH ? KITE_BAR_MEMPF : KITE_BAR_MEM;
}

static int kite_msix_count(struct pci_dev *dev)
{
	int n = pci_msix_vec_count(dev);

	return n < 0 ? 0 : n;
}

static const char *kite_driver_name(struct pci_dev *dev)
{
	return dev->dev.driver ? dev->dev.driver->name : "none";
}

static bool kite_pci_at(struct pci_dev *dev, const char *at)
{
	const char *name = pci_name(dev);	/* DDDD:BB:DD.F */

	return !strcmp(name, at) || (strlen(name) > 5 && !strcmp(name + 5, at));
}

/* Count the ways @dev differs from @e; state each one in @r if non-NULL. */
static unsigned int kite_pci_compare(const struct kite_pci_expect *e,
				     struct pci_dev *dev, struct kite_result *r)
{
	const char *n = pci_name(dev);
	unsigned int bad = 0;
	int i;

#define KITE_MISMATCH(...) do { bad++; if (r) kite_why(r, __VA_ARGS__); } while (0)
	if (dev->vendor != e->vendor || dev->device != e->device)
		KITE_MISMATCH("%s: id %04x:%04x, want %04x:%04x", n, dev->vendor,
			      dev->device, e->vendor, e->device);
	if (e->has_class && dev->class != e->class)
		KITE_MISMATCH("%s: class %06x, want %06x", n, dev->class, e->class);
	if (e->has_subsys && (dev->subsystem_vendor != e->subvendor ||
			      dev->subsystem_device != e->subdevice))
		KITE_MISMATCH("%s: subsys %04x:%04x, want %04x:%04x", n,
			      dev->subsystem_vendor, dev->subsystem_device,
			      e->subvendor, e->subdevice);
	if (e->msix >= 0 && kite_msix_count(dev) != e->msix)
		KITE_MISMATCH("%s: %d MSI-X vectors, want %d", n,
			      kite_msix_count(dev), e->msix);
	for (i = 0; e->has_bars && i < PCI_STD_NUM_BARS; i++) {
		enum kite_bar_kind kind = kite_bar_kind_of(dev, i);
		struct resource *res = pci_resource_n(dev, i);
		u64 size = pci_resource_len(dev, i);

		if (kind != e->bar_kind[i] ||
		    (kind != KITE_BAR_NONE && size != e->bar_size[i]))
			KITE_MISMATCH("%s: BAR%d %s:%#llx, want %s:%#llx", n, i,
				      kite_bar_kind_names[kind], size,
				      kite_bar_kind_names[e->bar_kind[i]],
				      e->bar_size[i]);
		else if (kind != KITE_BAR_NONE &&
			 (!res->parent || (res->flags & IORESOURCE_UNSET)))
			KITE_MISMATCH("%s: BAR%d %s:%#llx has no address assigned",
				      n, i, kite_bar_kind_names[kind], size);
	}
	if (e->drv && strcmp(kite_driver_name(dev), e->drv))
		KITE_MISMATCH("%s: driver %s, want %s", n, kite_driver_name(dev), e->drv);
#undef KITE_MISMATCH
	return bad;
}

/* One diagnostic line per device, in kite_agent.pci syntax. */
static void kite_pci_inventory(struct pci_dev **devs, int ndevs)
{
	char line[256];
	int d, i, len;

	for (d = 0; d < ndevs; d++) {
		struct pci_dev *dev = devs[d];

		len = scnprintf(line, sizeof(line),
				"%04x:%04x/at=%s/class=%06x/subsys=%04x:%04x/msix=%d",
				dev->vendor, dev->device, pci_name(dev), dev->class,
				dev->subsystem_vendor, dev->subsystem_device,
				kite_msix_count(dev));
		for (i = 0; i < PCI_STD_NUM_BARS; i++) {
			enum kite_bar_kind kind = kite_bar_kind_of(dev, i);

			if (kind != KITE_BAR_NONE)
				len += scnprintf(line + len, sizeof(line) - len,
						 "/bar%d=%s:%#llx", i,
						 kite_bar_kind_names[kind],
						 (u64)pci_resource_len(dev, i));
		}
		scnprintf(line + len, sizeof(line) - len, "/drv=%s",
			  kite_driver_name(dev));
		kite_diag("pci present: %s", line);
	}
}

/* Pair expected entries with present devices; returns the mismatch count. */
static unsigned int kite_pci_pair(struct kite_pci_expect *ex, int nex,
				  struct pci_dev **devs, int ndevs,
				  struct kite_result *r)
{
	bool *taken = kcalloc(ndevs ?: 1, sizeof(*taken), GFP_KERNEL);
	unsigned int bad = 0;
	int i, d, pass;

	if (!taken) {
		kite_why(r, "out of memory");
		return 1;
	}
	/* Pinned entries first, then exact matches, then same-ID devices. */
	for (pass = 0; pass < 3; pass++) {
		for (i = 0; i < nex; i++) {
			struct kite_pci_expect *e = &ex[i];

			if (e->matched >= 0 || (pass == 0) != !!e->at)
				continue;
			for (d = 0; d < ndevs; d++) {
				if (taken[d])
					continue;
				if (pass == 0 ? kite_pci_at(devs[d], e->at) :
				    pass == 1 ? !kite_pci_compare(e, devs[d], NULL) :
				    devs[d]->vendor == e->vendor &&
				    devs[d]->device == e->device)
					break;
			}
			if (d == ndevs)
				continue;
			taken[d] = true;
			e->matched = d;
		}
	}
	for (i = 0; i < nex; i++) {
		if (ex[i].matched < 0) {
			bad++;
			kite_why(r, "missing %04x:%04x%s%s", ex[i].vendor,
				 ex[i].device, ex[i].at ? " at " : "",
				 ex[i].at ?: "");
			continue;
		}
		bad += kite_pci_compare(&ex[i], devs[ex[i].matched], r);
	}
	for (d = 0; d < ndevs; d++) {
		if (taken[d] || (devs[d]->class >> 8) == PCI_CLASS_BRIDGE_HOST)
			continue;
		bad++;
		kite_why(r, "unexpected %s %04x:%04x class %06x", pci_name(devs[d]),
			 devs[d]->vendor, devs[d]->device, devs[d]->class);
	}
	kfree(taken);
	return bad;
}

enum kite_verdict kite_case_pci_devices_match(struct kite_result *r)
{
	struct kite_pci_expect *ex = NULL;
	struct pci_dev **devs = NULL, *dev = NULL;
	enum kite_verdict v = KITE_FAIL;
	int nex = 0, ndevs = 0, i;
	char *spec = NULL, *p, *entry;

	if (!kite_pci || !*kite_pci)
		return kite_skip(r, "kite_agent.pci not given");

	spec = kstrdup(kite_pci, GFP_KERNEL);
	if (!spec)
		return kite_fail(r, "out of memory");
	if (strcmp(spec, "none")) {
		nex = 1;
		for (p = spec; *p; p++)
			nex += *p == ',';
	}
	for_each_pci_dev(dev)
		ndevs++;
	ex = kcalloc(nex ?: 1, sizeof(*ex), GFP_KERNEL);
	devs = kcalloc(ndevs ?: 1, sizeof(*devs), GFP_KERNEL);
	if (!ex || !devs) {
		kite_why(r, "out of memory");
		goto out;
	}

	p = nex ? spec : NULL;
	for (i = 0; i < nex; i++) {
		entry = strsep(&p, ",");
		if (kite_parse_pci_entry(entry, &ex[i])) {
			kite_why(r, "kite_agent.pci entry %d unparsable (near '%s')",
				 i + 1, entry);
			goto out;
		}
	}

	i = 0;
	dev = NULL;
	for_each_pci_dev(dev) {
		if (i == ndevs) {	/* a device appeared meanwhile */
			pci_dev_put(dev);
			break;
		}
		devs[i++] = pci_dev_get(dev);
	}
	ndevs = i;

	if (kite_pci_pair(ex, nex, devs, ndevs, r) == 0)
		v = KITE_PASS;
	else
		kite_pci_inventory(devs, ndevs);
	for (i = 0; i < ndevs; i++)
		pci_dev_put(devs[i]);
out:
	kfree(devs);
	kfree(ex);
	kfree(spec);
	return v;
}

/* ---- acpi_tables_parse ------------------------------------------------- */

static u8 kite_acpi_checksum(const struct acpi_table_header *h)
{
	const u8 *p = (const u8 *)h;
	u8 sum = 0;
	u32 i;

	for (i = 0; i < h->length; i++)
		sum += p[i];
	return sum;
}

/*
 * Fetch a table and check what every table must satisfy; NULL (with the
 * facts in @r) if absent or broken.  The caller puts the table.
 */
static struct acpi_table_header *kite_acpi_table(char *sig, u32 min_len,
						 struct kite_result *r)
{
	struct acpi_table_header *h;
	acpi_status status = acpi_get_table(sig, 0, &h);

	if (ACPI_FAILURE(status)) {
		kite_why(r, "%s: absent (%s)", sig, acpi_format_exception(status));
		return NULL;
	}
	if (h->length < min_len) {
		kite_why(r, "%s: length %u, shorter than %u", sig, h->length, min_len);
		acpi_put_table(h);
		return NULL;
	}
	if (kite_acpi_checksum(h))
		kite_why(r, "%s: checksum does not sum to 0 (off by %u)", sig,
			 kite_acpi_checksum(h));
	return h;
}

/* MADT: walk every subtable; count enabled processors and I/O APICs. */
static unsigned int kite_acpi_check_madt(struct kite_result *r)
{
	struct acpi_table_header *h;
	unsigned int bad = 0, cpus = 0, ioapics = 0;
	size_t len0 = r->len;
	u8 *p, *end;

	h = kite_acpi_table(ACPI_SIG_MADT, sizeof(struct acpi_table_madt), r);
	if (!h)
		return 1;
	p = (u8 *)h + sizeof(struct acpi_table_madt);
	end = (u8 *)h + h->length;
	while (p + sizeof(struct acpi_subtable_header) <= end) {
		struct acpi_subtable_header *sub = (void *)p;

		if (sub->length < sizeof(*sub) || sub->length > end - p) {
			kite_why(r, "MADT: subtable type %u at offset %td has length %u",
				 sub->type, p - (u8 *)h, sub->length);
			bad++;
			break;
		}
		switch (sub->type) {
		case ACPI_MADT_TYPE_LOCAL_APIC:
			if (sub->length >= sizeof(struct acpi_madt_local_apic) &&
			    (((struct acpi_madt_local_apic *)sub)->lapic_flags &
			     ACPI_MADT_ENABLED))
				cpus++;
			break;
		case ACPI_MADT_TYPE_LOCAL_X2APIC:
			if (sub->length >= sizeof(struct acpi_madt_local_x2apic) &&
			    (((struct acpi_madt_local_x2apic *)sub)->lapic_flags &
			     ACPI_MADT_ENABLED))
				cpus++;
			break;
		case ACPI_MADT_TYPE_IO_APIC:
			ioapics++;
			break;
		}
		p += sub->length;
	}
	if (kite_cpus > 0 && cpus != (unsigned int)kite_cpus) {
		kite_why(r, "MADT: %u enabled processors, want %d", cpus, kite_cpus);
		bad++;
	} else if (!cpus) {
		kite_why(r, "MADT: no enabled processor");
		bad++;
	}
	if (!ioapics) {
		kite_why(r, "MADT: no I/O APIC");
		bad++;
	}
	if (r->len != len0 && !bad)	/* only a checksum fact was added */
		bad++;
	acpi_put_table(h);
	return bad;
}

/* MCFG: at least one sane ECAM window, and Linux accepted it. */
static unsigned int kite_acpi_check_mcfg(struct kite_result *r)
{
	struct acpi_table_header *h;
	struct acpi_mcfg_allocation *a;
	unsigned int bad = 0, n, i;
	size_t len0 = r->len;

	h = kite_acpi_table(ACPI_SIG_MCFG, sizeof(struct acpi_table_mcfg), r);
	if (!h)
		return 1;
	n = (h->length - sizeof(struct acpi_table_mcfg)) / sizeof(*a);
	a = (void *)((u8 *)h + sizeof(struct acpi_table_mcfg));
	if (!n) {
		kite_why(r, "MCFG: no allocation entry");
		bad++;
	}
	for (i = 0; i < n; i++) {
		if (!a[i].address || a[i].start_bus_number > a[i].end_bus_number) {
			kite_why(r, "MCFG[%u]: base %#llx segment %u buses %u-%u", i,
				 a[i].address, a[i].pci_segment,
				 a[i].start_bus_number, a[i].end_bus_number);
			bad++;
		}
	}
	if (n && !bad && list_empty(&pci_mmcfg_list)) {
		kite_why(r, "MCFG: base %#llx buses %u-%u present but Linux did not use it (not reserved in E820 or ACPI?)",
			 a[0].address, a[0].start_bus_number, a[0].end_bus_number);
		bad++;
	}
	if (r->len != len0 && !bad)
		bad++;
	acpi_put_table(h);
	return bad;
}

/* FADT, and the DSDT it points to. */
static unsigned int kite_acpi_check_fadt(struct kite_result *r)
{
	struct acpi_table_header *h;
	unsigned int bad = 0;
	size_t len0 = r->len;

	h = kite_acpi_table(ACPI_SIG_FADT, sizeof(struct acpi_table_header) + 8, r);
	if (!h)
		return 1;
	acpi_put_table(h);
	if (r->len != len0)
		bad++;
	h = kite_acpi_table(ACPI_SIG_DSDT, sizeof(struct acpi_table_header), r);
	if (!h)
		return bad + 1;
	acpi_put_table(h);
	if (r->len != len0 && !bad)
		bad++;
	return bad;
}

enum kite_verdict kite_case_acpi_tables_parse(struct kite_result *r)
{
	unsigned int bad = 0;

	if (acpi_disabled)
		return kite_fail(r, "ACPI disabled (no RSDP found, or acpi=off)");
	bad += kite_acpi_check_madt(r);
	bad += kite_acpi_check_mcfg(r);
	bad += kite_acpi_check_fadt(r);
	return bad ? KITE_FAIL : KITE_PASS;
}

/* ---- all_vcpus_online -------------------------------------------------- */

enum kite_verdict kite_case_all_vcpus_online(struct kite_result *r)
{
	if (kite_cpus <= 0)
		return kite_skip(r, "kite_agent.cpus not given");
	if (num_online_cpus() != (unsigned int)kite_cpus)
		return kite_fail(r, "%u online, want %d (present %u, possible %u)",
				 num_online_cpus(), kite_cpus, num_present_cpus(),
				 num_possible_cpus());
	return KITE_PASS;
}

/* ---- rtc_close_to_host ------------------------------------------------- */

enum kite_verdict kite_case_rtc_close_to_host(struct kite_result *r)
{
	struct rtc_time tm = { 0 };
	s64 rtc, lower, wall, uptime;
	unsigned int bad = 0;
	int err;

	if (!kite_host_time)
		return kite_skip(r, "kite_agent.host_time not given");
	err = mc146818_get_time(&tm, 1000);
	if (err)
		return kite_fail(r, "CMOS RTC unreadable: update-in-progress never cleared (%d)", err);
	if (rtc_valid_tm(&tm))
		return kite_fail(r, "CMOS RTC holds no valid date: %04d-%02d-%02d %02d:%02d:%02d",
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
				 tm.tm_hour, tm.tm_min, tm.tm_sec);
	rtc = rtc_tm_to_time64(&tm);
	uptime = ktime_get_boottime_seconds();
	/*
	 * The kernel's clock starts after Kite does -- on a PVM host the
	 * emulated early boot takes seconds -- so host_time + uptime is a
	 * lower bound of the host's time now, not its value.
	 */
	lower = (s64)kite_host_time + uptime;
	/* Set at boot from kvm-clock's wall clock (the host's, via KVM). */
	wall = ktime_get_real_seconds();
	if (rtc < lower - (s64)kite_rtc_tolerance) {
		kite_why(r, "RTC %ptTs UTC (%lld) is %lld s behind host_time %llu + uptime %lld s",
			 &rtc, rtc, lower - rtc, kite_host_time, uptime);
		bad++;
	}
	if (abs(rtc - wall) > kite_rtc_tolerance) {
		kite_why(r, "RTC %ptTs UTC (%lld) is %+lld s from the kernel's wall clock %lld (host_time %llu + uptime %lld s = %lld)",
			 &rtc, rtc, rtc - wall, wall, kite_host_time, uptime, lower);
		bad++;
	}
	if (bad)
		kite_why(r, "tolerance %u s", kite_rtc_tolerance);
	return bad ? KITE_FAIL : KITE_PASS;
}

/* ---- serial_works ------------------------------------------------------ */

/* Private to the 8250 core (drivers/tty/serial/8250/8250.h), exported. */
struct uart_8250_port *serial8250_get_port(int line);

static bool kite_uart_wait_lsr(struct uart_port *port, u8 bits, u8 *lsr)
{
	int us;

	for (us = 0; us < 10000; us++) {
		*lsr = serial_port_in(port, UART_LSR);
		if ((*lsr & bits) == bits)
			return true;
		udelay(1);
	}
	return false;
}

enum kite_verdict kite_case_serial_works(struct kite_result *r)
{
	static const char probe[] = "# kite_agent: serial_works: this line was written to the UART directly\r\n";
	struct uart_8250_port *up = serial8250_get_port(0);
	struct uart_port *port = &up->port;
	bool console_on_ttys = false, wrote = true;
	struct console *con;
	unsigned long flags;
	u8 lsr = 0;
	size_t i;

	if (port->type == PORT_UNKNOWN || (!port->iobase && !port->membase))
		return kite_fail(r, "ttyS0 not registered: no 8250 UART found (type %u, iobase %#lx)",
				 port->type, port->iobase);

	console_lock();
	for_each_console(con)
		if (!strcmp(con->name, "ttyS") && con->index == 0 &&
		    (con->flags & CON_ENABLED))
			console_on_ttys = true;

	/*
	 * With the console lock held no printk is mid-line on the UART; the
	 * port lock keeps the 8250 driver off the registers meanwhile.
	 */
	spin_lock_irqsave(&port->lock, flags);
	for (i = 0; i < sizeof(probe) - 1; i++) {
		wrote = kite_uart_wait_lsr(port, UART_LSR_THRE, &lsr);
		if (!wrote)
			break;
		serial_port_out(port, UART_TX, probe[i]);
	}
	if (wrote)
		wrote = kite_uart_wait_lsr(port, UART_LSR_TEMT | UART_LSR_THRE, &lsr);
	spin_unlock_irqrestore(&port->lock, flags);
	console_unlock();

	if (!wrote)
		return kite_fail(r, "ttyS0 (type %u, iobase %#lx): transmitter never empty after 10 ms, LSR %#04x, at byte %zu",
				 port->type, port->iobase, lsr, i);
	if (!console_on_ttys && strstr(saved_command_line, "console=ttyS0"))
		return kite_fail(r, "console=ttyS0 given but ttyS0 is no enabled console");
	return KITE_PASS;
}
