/* vmm/pci: the host bridge driven as a guest would (type-1 ports and ECAM
 * through the PIO/MMIO buses), with a fake platform underneath that
 * records MSI routes, signals, INTx levels and ioeventfds. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tests/unit/fake_pci_platform.h"
#include "tests/unit/unit.h"
#include "vmm/bus.h"
#include "vmm/irq.h"
#include "vmm/pci.h"

#define ECAM     0xE0000000ull
#define MMIO     0xC0000000ull
#define MMIO_SZ  0x10000000ull
#define IO_BASE  0x1000
#define SLOT     3

/* ---- fake platform (tests/unit/fake_pci_platform.h) plus the reset
 * control's callbacks ---- */

static int reset_writes;
static uint8_t reset_value;

static uint8_t f_reset_read(void *o)
{
	(void)o;
	return reset_value;
}

static void f_reset_write(void *o, uint8_t v)
{
	(void)o;
	reset_value = v;
	reset_writes++;
}

/* ---- a fake device: BAR0 I/O 32 bytes, BAR1 mem32 4 KiB (MSI-X),
 * BAR2 mem64 64 KiB; BAR reads return offset-tagged values ---- */

static struct bus pio, mmio;
static struct pci_host host;
static struct pci_function fn;
static uint64_t last_write_off, last_write_val;
static unsigned last_write_bar, bar_writes;

static void dev_bar_read(struct pci_function *f, unsigned bar, uint64_t off,
			 unsigned size, uint64_t *v)
{
	(void)f;
	(void)size;
	*v = 0xA0000000u | bar << 16 | (uint32_t)off;
}

static void dev_bar_write(struct pci_function *f, unsigned bar, uint64_t off,
			  unsigned size, uint64_t v)
{
	(void)f;
	(void)size;
	last_write_bar = bar;
	last_write_off = off;
	last_write_val = v;
	bar_writes++;
}

static const struct pci_device_ops dev_ops = {
	.bar_read = dev_bar_read,
	.bar_write = dev_bar_write,
};

static void setup(void)
{
	fake_pci_reset();
	reset_writes = 0;
	reset_value = 0;
	bar_writes = 0;
	ck_assert_int_eq(bus_init(&pio, "pio"), 0);
	ck_assert_int_eq(bus_init(&mmio, "mmio"), 0);
	ck_assert_int_eq(pci_host_init(&host, &pio, &mmio,
				       &(struct pci_host_config){
					       .ecam_base = ECAM, .ecam_buses = 256,
					       .mmio_base = MMIO, .mmio_size = MMIO_SZ,
					       .io_base = IO_BASE,
					       .reset_read = f_reset_read,
					       .reset_write = f_reset_write },
				       &fake_pci_ops, NULL),
			 0);
	pci_function_init(&fn, "fake", 0x1234, 0x5678, 2, 0x00FF00, 0x1AF4,
			  0x0042, &dev_ops, NULL);
	ck_assert_int_eq(pci_function_add_bar(&fn, 0, 32, true, false, false), 0);
	ck_assert_int_eq(pci_function_add_bar(&fn, 1, 0x1000, false, false, false), 0);
	ck_assert_int_eq(pci_function_add_bar(&fn, 2, 0x10000, false, true, true), 0);
	ck_assert_int_eq(pci_function_add_msix(&fn, 4, 1, 0, 0x800), 0);
	ck_assert_int_eq(pci_host_add_function(&host, &fn, SLOT, 17), 0);
}

static void teardown(void)
{
	pci_host_destroy(&host);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static uint64_t ecam_addr(unsigned slot, unsigned off)
{
	return ECAM + ((uint64_t)slot << 15) + off;
}

static uint32_t cfg_read(unsigned off, unsigned size)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_read(&mmio, ecam_addr(SLOT, off), size, &v), 0);
	return (uint32_t)v;
}

static void cfg_write(unsigned off, unsigned size, uint32_t v)
{
	ck_assert_int_eq(bus_write(&mmio, ecam_addr(SLOT, off), size, v), 0);
}

static uint32_t type1_read(unsigned slot, unsigned off, unsigned size)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_write(&pio, 0xCF8, 4,
				   0x80000000u | slot << 11 | (off & 0xFC)), 0);
	ck_assert_int_eq(bus_read(&pio, 0xCFC + (off & 3), size, &v), 0);
	return (uint32_t)v;
}

static void type1_write(unsigned slot, unsigned off, unsigned size, uint32_t v)
{
	ck_assert_int_eq(bus_write(&pio, 0xCF8, 4,
				   0x80000000u | slot << 11 | (off & 0xFC)), 0);
	ck_assert_int_eq(bus_write(&pio, 0xCFC + (off & 3), size, v), 0);
}

static uint64_t mread(uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	bus_read(&mmio, addr, size, &v);
	return v;
}

/* ---- configuration access ---- */

START_TEST(test_absent_function_reads_all_ones)
{
	uint64_t v = 0;

	ck_assert_uint_eq(type1_read(5, 0, 4), 0xFFFFFFFFu);
	ck_assert_int_eq(bus_read(&mmio, ecam_addr(5, 0), 2, &v), 0);
	ck_assert_uint_eq(v, 0xFFFF);
	/* Other buses and functions: nothing there either. */
	ck_assert_int_eq(bus_read(&mmio, ECAM + (1ull << 20), 4, &v), 0);
	ck_assert_uint_eq(v, 0xFFFFFFFFu);
	ck_assert_int_eq(bus_read(&mmio, ecam_addr(SLOT, 0) + (1 << 12), 4, &v), 0);
	ck_assert_uint_eq(v, 0xFFFFFFFFu);
	/* Writes to nothing are harmless. */
	type1_write(9, 4, 2, 0xFFFF);
}
END_TEST

/* 00:00.0 is the host bridge: class 06/00, no BARs, no interrupt.  Linux
 * trusts type-1 access only when bus 0 shows such a function. */
START_TEST(test_host_bridge_is_function_0_0_0)
{
	ck_assert_uint_eq(type1_read(0, PCI_VENDOR_ID, 2), PCI_HOST_BRIDGE_VENDOR);
	ck_assert_uint_eq(type1_read(0, PCI_DEVICE_ID, 2), PCI_HOST_BRIDGE_DEVICE);
	ck_assert_uint_eq(type1_read(0, PCI_REVISION_ID, 4) >> 8,
			  PCI_HOST_BRIDGE_CLASS);
	ck_assert_uint_eq(type1_read(0, PCI_HEADER_TYPE, 1), 0);
	for (unsigned bar = 0; bar < 6; bar++) {
		type1_write(0, 0x10 + 4 * bar, 4, 0xFFFFFFFFu);
		ck_assert_uint_eq(type1_read(0, 0x10 + 4 * bar, 4), 0);
	}
	ck_assert_uint_eq(type1_read(0, PCI_INTERRUPT_PIN, 1), 0);
	/* A device cannot be plugged over it. */
	struct pci_function other;

	pci_function_init(&other, "other", 1, 2, 0, 0, 0, 0, NULL, NULL);
	ck_assert_int_eq(pci_host_add_function(&host, &other, 0, 0), -EINVAL);
}
END_TEST

START_TEST(test_type1_and_ecam_see_the_same_header)
{
	ck_assert_uint_eq(type1_read(SLOT, PCI_VENDOR_ID, 4), 0x56781234u);
	ck_assert_uint_eq(cfg_read(PCI_VENDOR_ID, 4), 0x56781234u);
	ck_assert_uint_eq(type1_read(SLOT, PCI_DEVICE_ID, 2), 0x5678);
	ck_assert_uint_eq(type1_read(SLOT, PCI_REVISION_ID, 1), 2);
	ck_assert_uint_eq(cfg_read(PCI_REVISION_ID, 4) >> 8, 0x00FF00);
	ck_assert_uint_eq(cfg_read(PCI_SUBSYSTEM_VENDOR_ID, 4), 0x00421AF4u);
	ck_assert_uint_eq(cfg_read(PCI_HEADER_TYPE, 1), 0);
	ck_assert_uint_eq(cfg_read(PCI_INTERRUPT_PIN, 1), 1);
	ck_assert_uint_eq(cfg_read(PCI_INTERRUPT_LINE, 1), 17);
	/* A write through one mechanism is seen through the other. */
	type1_write(SLOT, PCI_INTERRUPT_LINE, 1, 0x2B);
	ck_assert_uint_eq(cfg_read(PCI_INTERRUPT_LINE, 1), 0x2B);
	/* 8-byte ECAM access is two dwords. */
	ck_assert_uint_eq(mread(ecam_addr(SLOT, 0), 8),
			  (uint64_t)cfg_read(4, 4) << 32 | 0x56781234u);
}
END_TEST

START_TEST(test_type1_address_latch_and_disabled_access)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_write(&pio, 0xCF8, 4, 0x80000000u), 0);
	ck_assert_int_eq(bus_read(&pio, 0xCF8, 4, &v), 0);
	ck_assert_uint_eq(v, 0x80000000u);
	/* Reserved bits 30:24 and 1:0 read back as 0. */
	ck_assert_int_eq(bus_write(&pio, 0xCF8, 4, 0xFF000003u | SLOT << 11), 0);
	ck_assert_int_eq(bus_read(&pio, 0xCF8, 4, &v), 0);
	ck_assert_uint_eq(v, 0x80000000u | SLOT << 11);
	/* A byte at 0xCFB does not touch the latch. */
	ck_assert_int_eq(bus_write(&pio, 0xCFB, 1, 0x01), 0);
	ck_assert_int_eq(bus_read(&pio, 0xCF8, 4, &v), 0);
	ck_assert_uint_eq(v, 0x80000000u | SLOT << 11);
	/* Enable bit clear: the data port reads all ones. */
	ck_assert_int_eq(bus_write(&pio, 0xCF8, 4, SLOT << 11), 0);
	ck_assert_int_eq(bus_read(&pio, 0xCFC, 4, &v), 0);
	ck_assert_uint_eq(v, 0xFFFFFFFFu);
}
END_TEST

START_TEST(test_reset_control_byte_at_0xcf9_is_forwarded)
{
	uint64_t v = 0;

	ck_assert_int_eq(bus_write(&pio, 0xCF9, 1, 0x06), 0);
	ck_assert_int_eq(reset_writes, 1);
	ck_assert_uint_eq(reset_value, 0x06);
	ck_assert_int_eq(bus_read(&pio, 0xCF9, 1, &v), 0);
	ck_assert_uint_eq(v, 0x06);
	/* A dword at 0xCF8 is the config address, not a reset. */
	ck_assert_int_eq(bus_write(&pio, 0xCF8, 4, 0x80000600u), 0);
	ck_assert_int_eq(reset_writes, 1);
}
END_TEST

START_TEST(test_read_only_fields_ignore_writes)
{
	cfg_write(PCI_VENDOR_ID, 4, 0);
	ck_assert_uint_eq(cfg_read(PCI_VENDOR_ID, 4), 0x56781234u);
	cfg_write(PCI_REVISION_ID, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_read(PCI_REVISION_ID, 4), 0x00FF0002u);
	cfg_write(PCI_CAPABILITY_LIST, 1, 0);
	ck_assert_uint_ne(cfg_read(PCI_CAPABILITY_LIST, 1), 0);
	cfg_write(PCI_INTERRUPT_PIN, 1, 4);
	ck_assert_uint_eq(cfg_read(PCI_INTERRUPT_PIN, 1), 1);
	cfg_write(PCI_ROM_ADDRESS, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_read(PCI_ROM_ADDRESS, 4), 0); /* no ROM */
	/* Extended config space: none, reads 0. */
	cfg_write(0x100, 4, 0x12345678);
	ck_assert_uint_eq(cfg_read(0x100, 4), 0);
}
END_TEST

START_TEST(test_command_register_writable_bits)
{
	cfg_write(PCI_COMMAND, 2, 0xFFFF);
	ck_assert_uint_eq(cfg_read(PCI_COMMAND, 2),
			  PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
				  PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
				  PCI_COMMAND_INTX_DISABLE);
	cfg_write(PCI_COMMAND, 2, 0);
	ck_assert_uint_eq(cfg_read(PCI_COMMAND, 2), 0);
}
END_TEST

START_TEST(test_status_error_bits_are_write_1_to_clear)
{
	uint16_t st = (uint16_t)cfg_read(PCI_STATUS, 2);

	ck_assert(st & PCI_STATUS_CAP_LIST);
	/* As if the device had flagged a master abort and a parity error. */
	pci_set_word(fn.cfg, PCI_STATUS, st | 0x2000 | 0x8000);
	cfg_write(PCI_STATUS, 2, 0x0000);
	ck_assert_uint_eq(cfg_read(PCI_STATUS, 2) & 0xA000, 0xA000);
	cfg_write(PCI_STATUS, 2, 0x2000);
	ck_assert_uint_eq(cfg_read(PCI_STATUS, 2) & 0xA000, 0x8000);
	/* Writing ones elsewhere neither clears CAP_LIST nor sets bits. */
	cfg_write(PCI_STATUS, 2, 0xFFFF);
	ck_assert_uint_eq(cfg_read(PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	/* Through a dword write of COMMAND+STATUS as Linux does. */
	pci_set_word(fn.cfg, PCI_STATUS, PCI_STATUS_CAP_LIST | 0x4000);
	cfg_write(PCI_COMMAND, 4, 0x40000000u | PCI_COMMAND_MEMORY);
	ck_assert_uint_eq(cfg_read(PCI_COMMAND, 4),
			  (uint32_t)PCI_STATUS_CAP_LIST << 16 | PCI_COMMAND_MEMORY);
}
END_TEST

START_TEST(test_bar_sizing_protocol)
{
	/* I/O BAR: 32 bytes, bit 0 set. */
	cfg_write(PCI_BAR0, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_read(PCI_BAR0, 4), 0xFFFFFFE1u);
	/* 32-bit memory BAR of 4 KiB. */
	cfg_write(PCI_BAR0 + 4, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_read(PCI_BAR0 + 4, 4), 0xFFFFF000u);
	/* 64-bit prefetchable BAR of 64 KiB: type bits 0b1100. */
	cfg_write(PCI_BAR0 + 8, 4, 0xFFFFFFFFu);
	cfg_write(PCI_BAR0 + 12, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_read(PCI_BAR0 + 8, 4), 0xFFFF000Cu);
	ck_assert_uint_eq(cfg_read(PCI_BAR0 + 12, 4), 0xFFFFFFFFu);
	/* Unimplemented BARs read 0 whatever is written. */
	cfg_write(PCI_BAR0 + 16, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_read(PCI_BAR0 + 16, 4), 0);
	/* Restoring an address keeps the type bits. */
	cfg_write(PCI_BAR0 + 4, 4, 0xC0001000u);
	ck_assert_uint_eq(cfg_read(PCI_BAR0 + 4, 4), 0xC0001000u);
}
END_TEST

START_TEST(test_bar_decodes_only_when_enabled_and_follows_moves)
{
	cfg_write(PCI_BAR0 + 8, 4, 0xC0010000u);
	cfg_write(PCI_BAR0 + 12, 4, 0);
	/* Memory decode off: nothing answers. */
	ck_assert_uint_eq(mread(0xC0010010, 4), 0xFFFFFFFFu);
	cfg_write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ck_assert_uint_eq(mread(0xC0010010, 4), 0xA0020010u);
	ck_assert_int_eq(bus_write(&mmio, 0xC001FFFC, 4, 0x55), 0);
	ck_assert_uint_eq(last_write_bar, 2);
	ck_assert_uint_eq(last_write_off, 0xFFFC);
	ck_assert_uint_eq(last_write_val, 0x55);
	/* Move it with an ECAM write: a config write arriving on the MMIO
	 * bus moves a range decoded on that same bus. */
	cfg_write(PCI_BAR0 + 8, 4, 0xC0100000u);
	ck_assert_uint_eq(mread(0xC0010010, 4), 0xFFFFFFFFu);
	ck_assert_uint_eq(mread(0xC0100010, 4), 0xA0020010u);
	/* Outside the host window: not decoded. */
	cfg_write(PCI_BAR0 + 12, 4, 1);
	ck_assert_uint_eq(mread(0xC0100010, 4), 0xFFFFFFFFu);
	cfg_write(PCI_BAR0 + 12, 4, 0);
	ck_assert_uint_eq(mread(0xC0100010, 4), 0xA0020010u);
	/* Disabling decode unmaps it again. */
	cfg_write(PCI_COMMAND, 2, 0);
	ck_assert_uint_eq(mread(0xC0100010, 4), 0xFFFFFFFFu);
}
END_TEST

START_TEST(test_io_bar_through_the_io_window)
{
	uint64_t v = 0;

	type1_write(SLOT, PCI_BAR0, 4, 0xC040);
	type1_write(SLOT, PCI_COMMAND, 2, PCI_COMMAND_IO);
	ck_assert_int_eq(bus_read(&pio, 0xC044, 2, &v), 0);
	ck_assert_uint_eq(v & 0xFFFF, 0x0004);
	ck_assert_int_eq(bus_write(&pio, 0xC05F, 1, 0x7), 0);
	ck_assert_uint_eq(last_write_bar, 0);
	ck_assert_uint_eq(last_write_off, 0x1F);
	/* Moved by a type-1 write (on the PIO bus, like the window). */
	type1_write(SLOT, PCI_BAR0, 4, 0xD000);
	ck_assert_int_eq(bus_read(&pio, 0xC044, 2, &v), 0);
	ck_assert_uint_eq(v, 0xFFFF);
	ck_assert_int_eq(bus_read(&pio, 0xD004, 2, &v), 0);
	ck_assert_uint_eq(v, 0x0004);
}
END_TEST

START_TEST(test_ioeventfd_follows_the_bar)
{
	ck_assert_int_eq(pci_function_add_ioeventfd(&fn, 2, 0x3000, 2, -1, 42), 0);
	ck_assert(!fake_pci.evfds[0].assigned); /* BAR not decoding yet */
	cfg_write(PCI_BAR0 + 8, 4, 0xC0200000u);
	cfg_write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ck_assert(fake_pci.evfds[0].assigned);
	ck_assert_uint_eq(fake_pci.evfds[0].addr, 0xC0203000u);
	ck_assert_int_eq(fake_pci.evfds[0].fd, 42);
	cfg_write(PCI_BAR0 + 8, 4, 0xC0400000u);
	ck_assert_int_eq(fake_pci.evfds[0].assigned + fake_pci.evfds[1].assigned, 1);
	ck_assert_uint_eq(fake_pci.evfds[0].assigned ? fake_pci.evfds[0].addr : fake_pci.evfds[1].addr,
			  0xC0403000u);
	cfg_write(PCI_COMMAND, 2, 0);
	ck_assert(!fake_pci.evfds[0].assigned && !fake_pci.evfds[1].assigned);
}
END_TEST

START_TEST(test_firmware_assignment_puts_bars_in_windows)
{
	uint32_t io, m32, m64lo;

	ck_assert_int_eq(pci_host_assign_bars(&host), 0);
	io = cfg_read(PCI_BAR0, 4);
	m32 = cfg_read(PCI_BAR0 + 4, 4);
	m64lo = cfg_read(PCI_BAR0 + 8, 4);
	ck_assert_uint_eq(io & 1, 1);
	ck_assert_uint_ge(io & ~3u, IO_BASE);
	ck_assert_uint_eq((io & ~3u) % 32, 0);
	ck_assert_uint_ge(m32, MMIO);
	ck_assert_uint_eq(m32 % 0x1000, 0);
	ck_assert_uint_eq((m64lo & ~0xFu) % 0x10000, 0);
	ck_assert_uint_eq(cfg_read(PCI_BAR0 + 12, 4), 0);
	ck_assert_uint_eq(cfg_read(PCI_COMMAND, 2) &
				  (PCI_COMMAND_IO | PCI_COMMAND_MEMORY),
			  PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
	ck_assert_uint_eq(mread((m64lo & ~0xFu) + 8, 4), 0xA0020008u);
}
END_TEST

/* ---- capabilities and MSI-X ---- */

START_TEST(test_capability_list_is_chained)
{
	unsigned cap = cfg_read(PCI_CAPABILITY_LIST, 1);

	ck_assert(cfg_read(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	ck_assert_uint_ge(cap, 0x40);
	ck_assert_uint_eq(cap & 3, 0);
	ck_assert_uint_eq(cfg_read(cap, 1), PCI_CAP_ID_MSIX);
	ck_assert_uint_eq(cfg_read(cap + 1, 1), 0); /* end of list */
	/* Table size N-1, table in BAR1 at 0, PBA in BAR1 at 0x800. */
	ck_assert_uint_eq(cfg_read(cap + 2, 2) & PCI_MSIX_FLAGS_QSIZE, 3);
	ck_assert_uint_eq(cfg_read(cap + 4, 4), 0x00000001u);
	ck_assert_uint_eq(cfg_read(cap + 8, 4), 0x00000801u);
	/* Only enable and function mask are writable. */
	cfg_write(cap + 2, 2, 0xFFFF);
	ck_assert_uint_eq(cfg_read(cap + 2, 2), 0xC003);
	cfg_write(cap + 4, 4, 0x12345678);
	ck_assert_uint_eq(cfg_read(cap + 4, 4), 0x00000001u);
}
END_TEST

static unsigned msix_cap(void)
{
	return cfg_read(PCI_CAPABILITY_LIST, 1);
}

static uint64_t table_base(void)
{
	cfg_write(PCI_BAR0 + 4, 4, 0xC0800000u);
	cfg_write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	return 0xC0800000u;
}

static void program_vector(uint64_t t, unsigned v, uint64_t addr,
			   uint32_t data, bool masked)
{
	ck_assert_int_eq(bus_write(&mmio, t + 16 * v, 4, (uint32_t)addr), 0);
	ck_assert_int_eq(bus_write(&mmio, t + 16 * v + 4, 4, addr >> 32), 0);
	ck_assert_int_eq(bus_write(&mmio, t + 16 * v + 8, 4, data), 0);
	ck_assert_int_eq(bus_write(&mmio, t + 16 * v + 12, 4, masked), 0);
}

START_TEST(test_msix_vectors_start_masked_and_route_on_use)
{
	uint64_t t = table_base();

	for (unsigned v = 0; v < 4; v++)
		ck_assert_uint_eq(mread(t + 16 * v + 12, 4), 1);
	ck_assert_int_eq(fake_pci.nr_msis, 4); /* one platform vector each */
	ck_assert_int_eq(pci_msix_notify(&fn, 0), -ENODEV); /* disabled */
	cfg_write(msix_cap() + 2, 2, PCI_MSIX_FLAGS_ENABLE);
	ck_assert(pci_msix_enabled(&fn));
	program_vector(t, 2, 0xFEE01000u, 0x4041, false);
	ck_assert_int_eq(pci_msix_notify(&fn, 2), 0);
	ck_assert_int_eq(fake_pci.msis[2].signals, 1);
	ck_assert_uint_eq(fake_pci.msis[2].addr, 0xFEE01000u);
	ck_assert_uint_eq(fake_pci.msis[2].data, 0x4041);
	ck_assert_int_eq(fake_pci.msis[2].routes, 1);
	/* Same message again: no new route, one more signal. */
	ck_assert_int_eq(pci_msix_notify(&fn, 2), 0);
	ck_assert_int_eq(fake_pci.msis[2].routes, 1);
	ck_assert_int_eq(fake_pci.msis[2].signals, 2);
	/* A changed message is re-routed. */
	program_vector(t, 2, 0xFEE02000u, 0x4042, false);
	ck_assert_uint_eq(fake_pci.msis[2].addr, 0xFEE02000u);
	ck_assert_int_eq(pci_msix_notify(&fn, 4), -EINVAL);
	/* Reserved Vector Control bits read 0. */
	ck_assert_int_eq(bus_write(&mmio, t + 16 + 12, 4, 0xFFFFFFFEu), 0);
	ck_assert_uint_eq(mread(t + 16 + 12, 4), 0);
}
END_TEST

START_TEST(test_msix_masked_vector_sets_pending_bit)
{
	uint64_t t = table_base();

	cfg_write(msix_cap() + 2, 2, PCI_MSIX_FLAGS_ENABLE);
	program_vector(t, 1, 0xFEE00000u, 0x30, true);
	ck_assert_int_eq(pci_msix_notify(&fn, 1), 0);
	ck_assert_int_eq(fake_pci.msis[1].signals, 0);
	ck_assert_uint_eq(mread(t + 0x800, 8), 0x2);
	/* The PBA is read-only. */
	ck_assert_int_eq(bus_write(&mmio, t + 0x800, 8, 0), 0);
	ck_assert_uint_eq(mread(t + 0x800, 8), 0x2);
	/* Unmasking delivers the pending message and clears the bit. */
	ck_assert_int_eq(bus_write(&mmio, t + 16 + 12, 4, 0), 0);
	ck_assert_int_eq(fake_pci.msis[1].signals, 1);
	ck_assert_uint_eq(mread(t + 0x800, 8), 0);
}
END_TEST

START_TEST(test_msix_function_mask)
{
	uint64_t t = table_base();
	unsigned cap = msix_cap();

	cfg_write(cap + 2, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	program_vector(t, 0, 0xFEE00000u, 0x31, false);
	ck_assert_int_eq(pci_msix_notify(&fn, 0), 0);
	ck_assert_int_eq(fake_pci.msis[0].signals, 0);
	ck_assert_uint_eq(mread(t + 0x800, 4), 1);
	cfg_write(cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
	ck_assert_int_eq(fake_pci.msis[0].signals, 1);
	ck_assert_uint_eq(mread(t + 0x800, 4), 0);
}
END_TEST

START_TEST(test_intx_level_status_and_disable)
{
	ck_assert_int_eq(fake_pci.intx_gsi, 17);
	ck_assert_int_eq(fake_pci.intx_level, 0);
	pci_intx_set(&fn, 1);
	ck_assert_int_eq(fake_pci.intx_level, 1);
	ck_assert(cfg_read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* INTX_DISABLE drops the line; the status bit still shows the
	 * device's request. */
	cfg_write(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
	ck_assert_int_eq(fake_pci.intx_level, 0);
	ck_assert(cfg_read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_write(PCI_COMMAND, 2, 0);
	ck_assert_int_eq(fake_pci.intx_level, 1);
	pci_intx_set(&fn, 0);
	ck_assert_int_eq(fake_pci.intx_level, 0);
	ck_assert(!(cfg_read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
	/* The status bit cannot be written. */
	cfg_write(PCI_STATUS, 2, PCI_STATUS_INTERRUPT);
	ck_assert(!(cfg_read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
}
END_TEST

START_TEST(test_bad_bar_and_slot_arguments)
{
	struct pci_function f2;

	pci_function_init(&f2, "x", 1, 2, 0, 0, 0, 0, &dev_ops, NULL);
	ck_assert_int_eq(pci_function_add_bar(&f2, 0, 3000, false, false, false),
			 -EINVAL);
	ck_assert_int_eq(pci_function_add_bar(&f2, 5, 4096, false, true, false),
			 -EINVAL);
	ck_assert_int_eq(pci_function_add_bar(&f2, 0, 512, true, false, false),
			 -EINVAL);
	ck_assert_int_eq(pci_host_add_function(&host, &f2, 0, 0), -EINVAL);
	ck_assert_int_eq(pci_host_add_function(&host, &f2, SLOT, 0), -EEXIST);
	ck_assert_int_eq(pci_host_add_function(&host, &f2, 32, 0), -EINVAL);
	/* Direct BAR access outside a BAR fails cleanly. */
	{
		uint64_t v;

		ck_assert_int_eq(pci_function_bar_read(&fn, 1, 0x1000, 4, &v),
				 -EINVAL);
		ck_assert_int_eq(pci_function_bar_read(&fn, 3, 0, 4, &v), -EINVAL);
	}
}
END_TEST

/* ---- garbage from the guest ---- */

START_TEST(test_malformed_random_config_and_bar_accesses)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	unsigned seed = 0x9c1u;

	for (int i = 0; i < 30000; i++) {
		unsigned size = sizes[rand_r(&seed) % 4], k = rand_r(&seed) % 5;
		uint64_t v = (uint64_t)rand_r(&seed) << 32 | (unsigned)rand_r(&seed);
		uint64_t out;

		if (rand_r(&seed) % 3 == 0)
			v = rand_r(&seed) % 2 ? ~0ull : 0;
		if (k == 0) { /* type-1: the address latch and data port */
			bus_write(&pio, 0xCF8, 4, 0x80000000u | (v & 0x7FFFFFFF));
			bus_write(&pio, 0xCFC + rand_r(&seed) % 4, size > 4 ? 4 : size, v);
			bus_read(&pio, 0xCFC + rand_r(&seed) % 4, size > 4 ? 4 : size, &out);
		} else if (k <= 2) { /* ECAM, any bus/device/function/offset */
			uint64_t a = ECAM + ((uint64_t)rand_r(&seed) % (256u << 20));

			if (rand_r(&seed) % 2) /* mostly our function */
				a = ecam_addr(rand_r(&seed) % 2 ? SLOT : 0,
					      rand_r(&seed) % 0x1000);
			bus_write(&mmio, a & ~(uint64_t)(size - 1), size, v);
			bus_read(&mmio, a & ~(uint64_t)(size - 1), size, &out);
		} else { /* the windows, wherever the BARs went */
			uint64_t a = MMIO + (uint64_t)rand_r(&seed) % MMIO_SZ;

			if (rand_r(&seed) % 2)
				bus_read(&mmio, a, size, &out);
			else
				bus_write(&mmio, a, size, v);
			bus_write(&pio, IO_BASE + rand_r(&seed) % 0xEFF0,
				  size > 4 ? 4 : size, v);
		}
		if (rand_r(&seed) % 50 == 0)
			pci_msix_notify(&fn, rand_r(&seed) % 6);
		if (rand_r(&seed) % 50 == 0)
			pci_intx_set(&fn, rand_r(&seed) % 2);
	}
	/* Identity and structure survive. */
	ck_assert_uint_eq(type1_read(SLOT, PCI_VENDOR_ID, 4), 0x56781234u);
	ck_assert_uint_eq(type1_read(0, PCI_VENDOR_ID, 2), PCI_HOST_BRIDGE_VENDOR);
	ck_assert_uint_eq(cfg_read(PCI_CAPABILITY_LIST, 1), msix_cap());
	ck_assert_uint_eq(cfg_read(msix_cap(), 1), PCI_CAP_ID_MSIX);
	ck_assert_uint_eq(cfg_read(msix_cap() + 2, 2) & PCI_MSIX_FLAGS_QSIZE, 3);
	/* BAR sizing still works after all that. */
	cfg_write(PCI_BAR0 + 8, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_read(PCI_BAR0 + 8, 4) & ~0xFu, 0xFFFF0000u);
}
END_TEST

/* ---- on KVM: vmm/irq.c under the host (GSI routes, MSI irqfds, INTx
 * irqfd).  A VM with the in-kernel irqchip and one vCPU that never runs:
 * what the guest would receive is read back from KVM's LAPIC IRR and
 * IOAPIC IRR.  Without /dev/kvm these tests say so and check nothing. ---- */

static int kvm_fd = -1, kvm_vm = -1, kvm_vcpu = -1;
static struct irq_router router;
static bool have_kvm, have_router;

static void kvm_setup(void)
{
	struct kvm_lapic_state la;

	have_kvm = have_router = false;
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		fprintf(stderr, "test_pci: /dev/kvm: %s: KVM interrupt tests "
				"skipped\n", strerror(errno));
		return;
	}
	kvm_vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	ck_assert_int_ge(kvm_vm, 0);
	ck_assert_int_eq(ioctl(kvm_vm, KVM_CREATE_IRQCHIP, 0), 0);
	kvm_vcpu = ioctl(kvm_vm, KVM_CREATE_VCPU, 0);
	ck_assert_int_ge(kvm_vcpu, 0);
	/* Software-enable the LAPIC (SVR bit 8) so it accepts fixed
	 * interrupts into its IRR. */
	ck_assert_int_eq(ioctl(kvm_vcpu, KVM_GET_LAPIC, &la), 0);
	*(uint32_t *)(la.regs + 0xF0) |= 0x100;
	ck_assert_int_eq(ioctl(kvm_vcpu, KVM_SET_LAPIC, &la), 0);
	ck_assert_int_eq(irq_router_init(&router, kvm_vm), 0);
	have_kvm = have_router = true;
}

static void kvm_teardown(void)
{
	if (have_router)
		irq_router_destroy(&router);
	if (kvm_vcpu >= 0)
		close(kvm_vcpu);
	if (kvm_vm >= 0)
		close(kvm_vm);
	if (kvm_fd >= 0)
		close(kvm_fd);
	kvm_fd = kvm_vm = kvm_vcpu = -1;
}

static bool lapic_irr(unsigned vector)
{
	struct kvm_lapic_state la;
	uint32_t w;

	ck_assert_int_eq(ioctl(kvm_vcpu, KVM_GET_LAPIC, &la), 0);
	memcpy(&w, la.regs + 0x200 + (vector / 32) * 0x10, 4);
	return w >> (vector % 32) & 1;
}

static uint32_t ioapic_irr(void)
{
	struct kvm_irqchip chip;

	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	ck_assert_int_eq(ioctl(kvm_vm, KVM_GET_IRQCHIP, &chip), 0);
	return chip.chip.ioapic.irr;
}

/* KVM may inject from a worker: wait (bounded) for the bit. */
static bool wait_lapic_irr(unsigned vector)
{
	for (int i = 0; i < 2000; i++) {
		if (lapic_irr(vector))
			return true;
		usleep(1000);
	}
	return false;
}

static bool wait_ioapic_irr(unsigned gsi)
{
	for (int i = 0; i < 2000; i++) {
		if (ioapic_irr() >> gsi & 1)
			return true;
		usleep(1000);
	}
	return false;
}

static bool gsi_used(unsigned gsi)
{
	return router.gsi_used[gsi / 8] >> (gsi % 8) & 1;
}

START_TEST(test_kvm_msi_irqfd_per_vector_gsi_routes)
{
	struct irq_msi *a, *b, *c;

	if (!have_kvm)
		return;
	/* GSIs 0-23 are the IOAPIC's; MSIs take fresh ones from 24. */
	ck_assert(!gsi_used(IRQ_FIRST_MSI_GSI));
	ck_assert_int_eq(irq_msi_create(&router, &a), 0);
	ck_assert_int_eq(irq_msi_create(&router, &b), 0);
	ck_assert(gsi_used(IRQ_FIRST_MSI_GSI) && gsi_used(IRQ_FIRST_MSI_GSI + 1));
	/* Each vector's irqfd delivers its own message. */
	ck_assert_int_eq(irq_msi_route(a, 0xFEE00000u, 0x45), 0);
	ck_assert_int_eq(irq_msi_route(b, 0xFEE00000u, 0x46), 0);
	ck_assert(!lapic_irr(0x45) && !lapic_irr(0x46));
	irq_msi_signal(b);
	ck_assert(wait_lapic_irr(0x46));
	ck_assert(!lapic_irr(0x45));
	irq_msi_signal(a);
	ck_assert(wait_lapic_irr(0x45));
	/* Re-routing a vector changes what its irqfd sends. */
	ck_assert_int_eq(irq_msi_route(a, 0xFEE00000u, 0x47), 0);
	irq_msi_signal(a);
	ck_assert(wait_lapic_irr(0x47));
	/* A freed GSI is reused. */
	irq_msi_free(a);
	ck_assert(!gsi_used(IRQ_FIRST_MSI_GSI));
	ck_assert_int_eq(irq_msi_create(&router, &c), 0);
	ck_assert(gsi_used(IRQ_FIRST_MSI_GSI));
	irq_msi_free(c);
	irq_msi_free(b);
}
END_TEST

START_TEST(test_kvm_msix_table_entry_reaches_the_lapic)
{
	struct bus kpio, kmmio;
	struct pci_host kh;
	struct pci_function kf;
	uint64_t t = 0xC0800000u;
	unsigned cap;

	if (!have_kvm)
		return;
	ck_assert_int_eq(bus_init(&kpio, "pio"), 0);
	ck_assert_int_eq(bus_init(&kmmio, "mmio"), 0);
	ck_assert_int_eq(pci_host_init(&kh, &kpio, &kmmio,
				       &(struct pci_host_config){
					       .ecam_base = ECAM, .ecam_buses = 1,
					       .mmio_base = MMIO, .mmio_size = MMIO_SZ,
					       .io_base = IO_BASE },
				       &irq_pci_platform_ops, &router),
			 0);
	pci_function_init(&kf, "kvm-fn", 0x1234, 0x5678, 0, 0x00FF00, 0, 0,
			  &dev_ops, NULL);
	ck_assert_int_eq(pci_function_add_bar(&kf, 1, 0x1000, false, false, false), 0);
	ck_assert_int_eq(pci_function_add_msix(&kf, 2, 1, 0, 0x800), 0);
	ck_assert_int_eq(pci_host_add_function(&kh, &kf, SLOT, 18), 0);
	/* The guest: BAR1 at t, memory + bus master, MSI-X on, vector 1
	 * unmasked to vector 0x51, vector 0 masked with 0x52. */
	ck_assert_int_eq(bus_write(&kmmio, ecam_addr(SLOT, PCI_BAR0 + 4), 4, t), 0);
	ck_assert_int_eq(bus_write(&kmmio, ecam_addr(SLOT, PCI_COMMAND), 2,
				   PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), 0);
	cap = kf.msix->cap;
	ck_assert_int_eq(bus_write(&kmmio, ecam_addr(SLOT, cap + 2), 2,
				   PCI_MSIX_FLAGS_ENABLE), 0);
	for (unsigned v = 0; v < 2; v++) {
		ck_assert_int_eq(bus_write(&kmmio, t + 16 * v, 4, 0xFEE00000u), 0);
		ck_assert_int_eq(bus_write(&kmmio, t + 16 * v + 4, 4, 0), 0);
		ck_assert_int_eq(bus_write(&kmmio, t + 16 * v + 8, 4,
					   v ? 0x51 : 0x52), 0);
		ck_assert_int_eq(bus_write(&kmmio, t + 16 * v + 12, 4, v ? 0 : 1), 0);
	}
	ck_assert_int_eq(pci_msix_notify(&kf, 1), 0);
	ck_assert(wait_lapic_irr(0x51));
	/* Masked: nothing is sent, the pending bit is set ... */
	ck_assert_int_eq(pci_msix_notify(&kf, 0), 0);
	ck_assert(!lapic_irr(0x52));
	ck_assert_int_eq(kf.msix->pba[0], 1);
	/* ... and unmasking sends it. */
	ck_assert_int_eq(bus_write(&kmmio, t + 12, 4, 0), 0);
	ck_assert(wait_lapic_irr(0x52));
	ck_assert_int_eq(kf.msix->pba[0], 0);
	/* INTx of the same function: a level on GSI 18 (irqfd). */
	ck_assert(!(ioapic_irr() >> 18 & 1));
	pci_intx_set(&kf, 1);
	ck_assert(wait_ioapic_irr(18));
	pci_intx_set(&kf, 0);
	pci_host_destroy(&kh);
	bus_destroy(&kpio);
	bus_destroy(&kmmio);
}
END_TEST

START_TEST(test_kvm_intx_line_is_a_level_on_its_ioapic_pin)
{
	struct irq_line *l;

	if (!have_kvm)
		return;
	ck_assert_int_eq(irq_line_create(&router, IRQ_IOAPIC_PINS, &l), -EINVAL);
	ck_assert_int_eq(irq_line_create(&router, 19, &l), 0);
	ck_assert(!(ioapic_irr() >> 19 & 1));
	irq_line_set(l, 1);
	ck_assert(wait_ioapic_irr(19));
	/* Other pins are untouched. */
	ck_assert_uint_eq(ioapic_irr() & (0xFu << 16), 1u << 19);
}
END_TEST

START_TEST(test_kvm_ioeventfd_follows_a_moved_bar)
{
	struct bus kpio, kmmio;
	struct pci_host kh;
	struct pci_function kf;
	int fd = eventfd(0, EFD_CLOEXEC), probe = eventfd(0, EFD_CLOEXEC);
	uint64_t old_addr, new_addr = MMIO + 0x100000;

	if (!have_kvm)
		return;
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(probe, 0);
	ck_assert_int_eq(bus_init(&kpio, "pio"), 0);
	ck_assert_int_eq(bus_init(&kmmio, "mmio"), 0);
	ck_assert_int_eq(pci_host_init(&kh, &kpio, &kmmio,
				       &(struct pci_host_config){
					       .ecam_base = ECAM, .ecam_buses = 1,
					       .mmio_base = MMIO, .mmio_size = MMIO_SZ,
					       .io_base = IO_BASE },
				       &irq_pci_platform_ops, &router),
			 0);
	pci_function_init(&kf, "kvm-fn", 0x1234, 0x5678, 0, 0x00FF00, 0, 0,
			  &dev_ops, NULL);
	ck_assert_int_eq(pci_function_add_bar(&kf, 2, 0x1000, false, false, false), 0);
	ck_assert_int_eq(pci_host_add_function(&kh, &kf, SLOT, 0), 0);
	ck_assert_int_eq(pci_host_assign_bars(&kh), 0);
	old_addr = kf.bars[2].addr + 0x10;
	ck_assert_int_eq(pci_function_add_ioeventfd(&kf, 2, 0x10, 2, -1, fd), 0);
	/* KVM holds it: a second ioeventfd on the same address collides. */
	ck_assert_int_eq(irq_ioeventfd(&router, true, false, old_addr, 2, -1,
				       probe), -EEXIST);
	/* The guest moves the BAR: KVM's ioeventfd moves with it. */
	ck_assert_int_eq(bus_write(&kmmio, ecam_addr(SLOT, PCI_BAR0 + 8), 4,
				   new_addr), 0);
	ck_assert_uint_eq(kf.bars[2].addr, new_addr);
	ck_assert_int_eq(irq_ioeventfd(&router, true, false, new_addr + 0x10, 2,
				       -1, probe), -EEXIST);
	ck_assert_int_eq(irq_ioeventfd(&router, true, false, old_addr, 2, -1,
				       probe), 0);
	ck_assert_int_eq(irq_ioeventfd(&router, false, false, old_addr, 2, -1,
				       probe), 0);
	/* Memory decoding off: no ioeventfd at all. */
	ck_assert_int_eq(bus_write(&kmmio, ecam_addr(SLOT, PCI_COMMAND), 2, 0), 0);
	ck_assert_int_eq(irq_ioeventfd(&router, true, false, new_addr + 0x10, 2,
				       -1, probe), 0);
	ck_assert_int_eq(irq_ioeventfd(&router, false, false, new_addr + 0x10,
				       2, -1, probe), 0);
	pci_host_destroy(&kh);
	bus_destroy(&kpio);
	bus_destroy(&kmmio);
	close(fd);
	close(probe);
}
END_TEST

static Suite *pci_suite(void)
{
	Suite *s = suite_create("pci");
	TCase *tc = tcase_create("host");
	TCase *tk;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_absent_function_reads_all_ones);
	tcase_add_test(tc, test_host_bridge_is_function_0_0_0);
	tcase_add_test(tc, test_type1_and_ecam_see_the_same_header);
	tcase_add_test(tc, test_type1_address_latch_and_disabled_access);
	tcase_add_test(tc, test_reset_control_byte_at_0xcf9_is_forwarded);
	tcase_add_test(tc, test_read_only_fields_ignore_writes);
	tcase_add_test(tc, test_command_register_writable_bits);
	tcase_add_test(tc, test_status_error_bits_are_write_1_to_clear);
	tcase_add_test(tc, test_bar_sizing_protocol);
	tcase_add_test(tc, test_bar_decodes_only_when_enabled_and_follows_moves);
	tcase_add_test(tc, test_io_bar_through_the_io_window);
	tcase_add_test(tc, test_ioeventfd_follows_the_bar);
	tcase_add_test(tc, test_firmware_assignment_puts_bars_in_windows);
	tcase_add_test(tc, test_capability_list_is_chained);
	tcase_add_test(tc, test_msix_vectors_start_masked_and_route_on_use);
	tcase_add_test(tc, test_msix_masked_vector_sets_pending_bit);
	tcase_add_test(tc, test_msix_function_mask);
	tcase_add_test(tc, test_intx_level_status_and_disable);
	tcase_add_test(tc, test_bad_bar_and_slot_arguments);
	tcase_add_test(tc, test_malformed_random_config_and_bar_accesses);
	suite_add_tcase(s, tc);

	tk = tcase_create("kvm");
	tcase_add_checked_fixture(tk, kvm_setup, kvm_teardown);
	tcase_set_timeout(tk, 30);
	tcase_add_test(tk, test_kvm_msi_irqfd_per_vector_gsi_routes);
	tcase_add_test(tk, test_kvm_msix_table_entry_reaches_the_lapic);
	tcase_add_test(tk, test_kvm_intx_line_is_a_level_on_its_ioapic_pin);
	tcase_add_test(tk, test_kvm_ioeventfd_follows_a_moved_bar);
	suite_add_tcase(s, tk);
	return s;
}

UNIT_MAIN(pci_suite)
