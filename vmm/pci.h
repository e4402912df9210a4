/* The PCI host bridge: bus 0 with up to 32 single-function devices,
 * configuration space (type-1 ports 0xCF8/0xCFC and ECAM), BARs that the
 * guest sizes and moves, MSI-X and INTx.
 *
 * Address decoding
 *   The host registers whole windows on the VM's buses once, at
 *   pci_host_init(): the config ports 0xCF8-0xCFB and 0xCFC-0xCFF and the
 *   I/O window on the PIO bus, the ECAM range and the 32-bit memory window
 *   on the MMIO bus.  BARs are decoded inside those windows by the host
 *   itself (its own map under map_lock), never by bus_register()/
 *   bus_move().  That is deliberate: vmm/bus.c holds the bus read lock
 *   while it calls a device, so a config write arriving on the MMIO bus
 *   (ECAM) could not move a range on that same bus.  Moving a BAR is only
 *   an update of the host's map (plus KVM ioeventfd re-registration), and
 *   it happens synchronously, inside the config write that moved it.
 *   A BAR placed outside the windows the ACPI _CRS of PCI0 describes is
 *   not decoded (Linux never does that; firmware-style preassignment by
 *   pci_host_assign_bars() puts every BAR inside).
 *
 *   0xCF9, the reset control register, is one byte inside the config
 *   address dword.  The host owns 0xCF8-0xCFB and forwards single-byte
 *   accesses at 0xCF9 to the reset hook given at init (PC convention:
 *   only dword accesses at 0xCF8 reach the config address latch).
 *
 * Configuration space
 *   256 bytes per function (conventional PCI; ECAM offsets 0x100-0xFFF
 *   read 0).  Each byte has a writable mask and a write-1-to-clear mask,
 *   so read-only, read-write and RW1C bits follow from one table.
 *   Absent functions read all-ones.  Capabilities are chained from 0x40.
 *
 * Interrupts and ioeventfds go through struct pci_platform_ops, so that
 * unit tests can run the host without KVM; vmm/irq.h implements them on
 * KVM (GSI routing, irqfd, ioeventfd).
 *
 * Threading: config accesses are serialised by the host's cfg_lock; BAR
 * accesses run concurrently under the read side of map_lock; MSI-X and
 * INTx state have their own leaf locks, so a device may raise interrupts
 * from any thread, even while a config write waits for it. */
#ifndef KITE_VMM_PCI_H
#define KITE_VMM_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

#define PCI_MAX_SLOTS     32
/* The host bridge's identity at 00:00.0: the PCI ID assigned to a generic
 * PCIe host bridge (vendor 0x1b36), which no guest driver binds to. */
#define PCI_HOST_BRIDGE_VENDOR 0x1b36
#define PCI_HOST_BRIDGE_DEVICE 0x0008
#define PCI_HOST_BRIDGE_CLASS  0x060000
#define PCI_CFG_SIZE      256
#define PCI_ECAM_FN_SIZE  4096   /* ECAM: 4 KiB per function */
#define PCI_NUM_BARS      6

/* Type-1 configuration mechanism (PCI Local Bus 3.0 §3.2.2.3.2). */
#define PCI_CONFIG_ADDRESS_PORT 0xCF8
#define PCI_CONFIG_DATA_PORT    0xCFC
#define PCI_RESET_CONTROL_PORT  0xCF9

/* Configuration header offsets (type 0). */
#define PCI_VENDOR_ID       0x00
#define PCI_DEVICE_ID       0x02
#define PCI_COMMAND         0x04
#define PCI_STATUS          0x06
#define PCI_REVISION_ID     0x08
#define PCI_CLASS_PROG      0x09
#define PCI_CACHE_LINE_SIZE 0x0C
#define PCI_LATENCY_TIMER   0x0D
#define PCI_HEADER_TYPE     0x0E
#define PCI_BAR0            0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2C
#define PCI_SUBSYSTEM_ID    0x2E
#define PCI_ROM_ADDRESS     0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE  0x3C
#define PCI_INTERRUPT_PIN   0x3D

#define PCI_COMMAND_IO           0x0001
#define PCI_COMMAND_MEMORY       0x0002
#define PCI_COMMAND_MASTER       0x0004
#define PCI_COMMAND_PARITY       0x0040
#define PCI_COMMAND_SERR         0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_INTERRUPT     0x0008
#define PCI_STATUS_CAP_LIST      0x0010
#define PCI_STATUS_RW1C          0xF900 /* error bits: write 1 to clear */

#define PCI_BAR_IO               0x1
#define PCI_BAR_MEM_TYPE_64      0x4
#define PCI_BAR_MEM_PREFETCH     0x8

#define PCI_CAP_ID_VNDR  0x09
#define PCI_CAP_ID_MSIX  0x11

/* MSI-X capability (PCI 3.0 §6.8.2). */
#define PCI_MSIX_FLAGS          2      /* message control, 16 bits */
#define PCI_MSIX_FLAGS_QSIZE    0x07FF
#define PCI_MSIX_FLAGS_MASKALL  0x4000
#define PCI_MSIX_FLAGS_ENABLE   0x8000
#define PCI_MSIX_TABLE          4
#define PCI_MSIX_PBA            8
#define PCI_MSIX_CAP_LEN        12
#define PCI_MSIX_ENTRY_SIZE     16
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 1
#define PCI_MSIX_MAX_VECTORS    2048

/* The platform underneath: interrupts and KVM ioeventfds.  Every hook
 * returns 0 or a negative errno.  |handle| values are the backend's. */
struct pci_platform_ops {
	/* An MSI vector: allocate (irqfd on a fresh GSI), route to an
	 * address/data pair, signal, free. */
	int (*msi_alloc)(void *opaque, void **handle);
	int (*msi_route)(void *opaque, void *handle, uint64_t addr,
			 uint32_t data);
	void (*msi_signal)(void *opaque, void *handle);
	void (*msi_free)(void *opaque, void *handle);
	/* A level-triggered INTx line on |gsi|; set_level may be called from
	 * any thread. */
	int (*intx_alloc)(void *opaque, unsigned gsi, void **handle);
	void (*intx_set_level)(void *opaque, void *handle, int level);
	void (*intx_free)(void *opaque, void *handle);
	/* Assign or deassign a KVM ioeventfd; |len| 0 = any length;
	 * |datamatch| < 0 = no data match. */
	int (*ioeventfd)(void *opaque, bool assign, bool pio, uint64_t addr,
			 unsigned len, int64_t datamatch, int fd);
};

struct pci_function;

/* Implemented by a PCI device model (e.g. virtio/pci.c). */
struct pci_device_ops {
	/* BAR access, |offset| relative to the BAR start and inside it.
	 * Accesses to the MSI-X table and PBA never arrive here. */
	void (*bar_read)(struct pci_function *fn, unsigned bar,
			 uint64_t offset, unsigned size, uint64_t *value);
	void (*bar_write)(struct pci_function *fn, unsigned bar,
			  uint64_t offset, unsigned size, uint64_t value);
	/* Config space hooks for device-owned capabilities (NULL: none).
	 * config_read runs before the host reads [off, off+size) from the
	 * shadow (the device may refresh it); config_write after the host
	 * applied the masked write.  Called with the host's cfg_lock. */
	void (*config_read)(struct pci_function *fn, unsigned off,
			    unsigned size);
	void (*config_write)(struct pci_function *fn, unsigned off,
			     unsigned size, uint32_t value);
	/* The function's MSI-X enable or INTx routing changed (NULL: none). */
	void (*irq_mode_changed)(struct pci_function *fn);
};

struct pci_bar {
	uint64_t size;          /* power of two; 0 = BAR not implemented */
	bool io, mem64, prefetch;
	uint64_t addr;          /* decoded address, valid when mapped */
	bool mapped;
};

struct pci_ioeventfd {
	struct pci_ioeventfd *next;
	unsigned bar;
	uint64_t offset;
	unsigned len;
	int64_t datamatch;
	int fd;
	bool assigned;
	uint64_t assigned_addr;
};

struct pci_msix_vector {
	void *handle;           /* platform MSI handle; NULL = none */
	uint64_t routed_addr;   /* what the route currently says */
	uint32_t routed_data;
	bool routed;
};

struct pci_msix {
	unsigned nr_vectors;
	unsigned bar;
	uint32_t table_offset, pba_offset;   /* inside the BAR */
	uint8_t cap;                          /* capability offset */
	pthread_mutex_t lock;                 /* leaf lock */
	bool enabled, masked;                 /* message control bits */
	uint8_t *table;                       /* nr_vectors * 16 bytes */
	uint64_t *pba;                        /* pending bits */
	struct pci_msix_vector *vec;
};

struct pci_host;

struct pci_function {
	struct pci_host *host;
	unsigned slot;                  /* device number on bus 0 */
	const char *name;
	const struct pci_device_ops *ops;
	void *opaque;                   /* the device model */
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	uint8_t w1cmask[PCI_CFG_SIZE];
	uint8_t next_cap;               /* where the next capability goes */
	uint8_t last_cap;               /* offset of the last one (0: none) */
	struct pci_bar bars[PCI_NUM_BARS];
	struct pci_ioeventfd *ioeventfds;
	struct pci_msix *msix;          /* NULL: no MSI-X */
	/* INTx */
	pthread_mutex_t intx_lock;
	void *intx_handle;              /* platform line; NULL: no INTx */
	unsigned intx_gsi;
	int intx_level;                 /* what the device asks for */
	int intx_asserted;              /* what the line says */
	bool intx_disabled;             /* COMMAND.INTX_DISABLE */
};

struct pci_host {
	struct bus *pio, *mmio;
	const struct pci_platform_ops *plat;
	void *plat_opaque;
	uint64_t ecam_base;
	unsigned ecam_buses;            /* buses 0..ecam_buses-1 decode */
	uint64_t mmio_base, mmio_size;  /* 32-bit memory window */
	uint16_t io_base;               /* I/O window: io_base..0xFFFF */
	uint32_t io_size;
	/* reset control byte at 0xCF9 */
	uint8_t (*reset_read)(void *opaque);
	void (*reset_write)(void *opaque, uint8_t value);
	void *reset_opaque;

	pthread_mutex_t cfg_lock;
	uint32_t config_address;        /* 0xCF8 latch */
	pthread_rwlock_t map_lock;
	struct pci_function *slots[PCI_MAX_SLOTS];
	/* 00:00.0, the host bridge itself (class 06/00): Linux's type-1
	 * probe (arch/x86/pci/direct.c, pci_sanity_check) only trusts 0xCF8
	 * when bus 0 shows a host bridge, absent a DMI BIOS date. */
	struct pci_function bridge;
	/* Firmware-style BAR preassignment cursors. */
	uint64_t next_mmio;
	uint32_t next_io;
};

struct pci_host_config {
	uint64_t ecam_base;        /* 0: no ECAM */
	unsigned ecam_buses;       /* 1..256 */
	uint64_t mmio_base, mmio_size;
	uint16_t io_base;          /* I/O window io_base..0xFFFF */
	uint8_t (*reset_read)(void *opaque);          /* 0xCF9; may be NULL */
	void (*reset_write)(void *opaque, uint8_t value);
	void *reset_opaque;
};

/* Register the host's config ports and windows on |pio| and |mmio|. */
int pci_host_init(struct pci_host *h, struct bus *pio, struct bus *mmio,
		  const struct pci_host_config *cfg,
		  const struct pci_platform_ops *plat, void *plat_opaque);
/* Detach the functions (not freed: they belong to their devices) and
 * release MSI-X/INTx/ioeventfd resources.  The buses are not touched. */
void pci_host_destroy(struct pci_host *h);

/* Bus callbacks (exported for the unit tests, which call them directly
 * as well as through a bus). */
extern const struct bus_ops pci_config_address_ops; /* 0xCF8, 4 bytes */
extern const struct bus_ops pci_config_data_ops;    /* 0xCFC, 4 bytes */
extern const struct bus_ops pci_ecam_ops;
extern const struct bus_ops pci_mmio_window_ops;
extern const struct bus_ops pci_io_window_ops;

/* ---- building a function (before the guest runs) ---- */

/* Fill in the identity of |fn| and zero its config space. */
void pci_function_init(struct pci_function *fn, const char *name,
		       uint16_t vendor, uint16_t device, uint8_t revision,
		       uint32_t class_code, uint16_t subsys_vendor,
		       uint16_t subsys_id, const struct pci_device_ops *ops,
		       void *opaque);
/* Declare BAR |bar| of |size| bytes (a power of two; at least 16 for
 * memory, 4 for I/O).  A 64-bit BAR uses bar and bar+1. */
int pci_function_add_bar(struct pci_function *fn, unsigned bar,
			 uint64_t size, bool io, bool mem64, bool prefetch);
/* Append a capability of |len| bytes with ID |id|; returns its offset
 * (>= 0x40) or a negative errno.  The caller fills bytes 2.. of it and
 * sets wmask for the bytes the driver may write. */
int pci_function_add_capability(struct pci_function *fn, uint8_t id,
				unsigned len);
/* Add an MSI-X capability with |nr_vectors| vectors whose table and PBA
 * live in BAR |bar| at the given offsets (8-byte aligned). */
int pci_function_add_msix(struct pci_function *fn, unsigned nr_vectors,
			  unsigned bar, uint32_t table_offset,
			  uint32_t pba_offset);
/* Plug |fn| into |slot| (1..31; 0 is the host bridge); INTA# is wired to
 * |intx_gsi| (0: no INTx).  Allocates MSI vectors and the INTx line. */
int pci_host_add_function(struct pci_host *h, struct pci_function *fn,
			  unsigned slot, unsigned intx_gsi);
/* Firmware's job: give every BAR of every function an address inside
 * the windows (the guest may move them later). */
int pci_host_assign_bars(struct pci_host *h);

/* ---- run time, for device models ---- */

/* Register a KVM ioeventfd at |offset| of BAR |bar|; it follows the BAR
 * when the guest moves it and exists only while the BAR decodes. */
int pci_function_add_ioeventfd(struct pci_function *fn, unsigned bar,
			       uint64_t offset, unsigned len,
			       int64_t datamatch, int fd);

bool pci_msix_enabled(struct pci_function *fn);
unsigned pci_msix_nr_vectors(struct pci_function *fn);
/* Send MSI-X message |vector| (or set its pending bit when the vector or
 * the function is masked).  -EINVAL for a vector beyond the table,
 * -ENODEV when MSI-X is disabled. */
int pci_msix_notify(struct pci_function *fn, unsigned vector);
/* Drive the function's INTA# level (PCI_STATUS.INTERRUPT follows it;
 * the line is asserted only while COMMAND.INTX_DISABLE is clear). */
void pci_intx_set(struct pci_function *fn, int level);

/* Config space access as the guest sees it (bus 0, |slot|, function 0);
 * used by the bus callbacks and by tests. */
uint32_t pci_host_config_read(struct pci_host *h, unsigned bus,
			      unsigned slot, unsigned func, unsigned off,
			      unsigned size);
void pci_host_config_write(struct pci_host *h, unsigned bus, unsigned slot,
			   unsigned func, unsigned off, unsigned size,
			   uint32_t value);

/* BAR access through the function's own handlers (no address decode);
 * what the virtio PCI-cfg-access capability needs.  Returns -EINVAL when
 * [offset, offset+size) is not inside an implemented BAR. */
int pci_function_bar_read(struct pci_function *fn, unsigned bar,
			  uint64_t offset, unsigned size, uint64_t *value);
int pci_function_bar_write(struct pci_function *fn, unsigned bar,
			   uint64_t offset, unsigned size, uint64_t value);

/* Little-endian helpers on config space. */
static inline void pci_set_byte(uint8_t *p, unsigned off, uint8_t v)
{
	p[off] = v;
}
static inline void pci_set_word(uint8_t *p, unsigned off, uint16_t v)
{
	p[off] = (uint8_t)v;
	p[off + 1] = (uint8_t)(v >> 8);
}
static inline void pci_set_long(uint8_t *p, unsigned off, uint32_t v)
{
	pci_set_word(p, off, (uint16_t)v);
	pci_set_word(p, off + 2, (uint16_t)(v >> 16));
}
static inline uint16_t pci_get_word(const uint8_t *p, unsigned off)
{
	return (uint16_t)(p[off] | p[off + 1] << 8);
}
static inline uint32_t pci_get_long(const uint8_t *p, unsigned off)
{
	return pci_get_word(p, off) | (uint32_t)pci_get_word(p, off + 2) << 16;
}

#endif
