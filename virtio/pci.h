/* virtio over PCI (virtio 1.2 §4.1): a PCI function on Kite's host bridge
 * (vmm/pci.h) that exposes a struct virtio_device through the core's
 * transport API.
 *
 * Three modes:
 *   modern        device ID 0x1040 + type, revision 1; virtio structure
 *                 capabilities only (§4.1.4)
 *   transitional  device ID 0x1000-0x103F, revision 0, subsystem ID =
 *                 type (§4.1.2.3); the modern capabilities *and* the
 *                 legacy interface in I/O BAR0 (§4.1.4.10): a modern and
 *                 a legacy driver can both drive it.  Whichever interface
 *                 the driver touches while the status is 0 decides whether
 *                 the core runs it as legacy.
 *   legacy        the same IDs, BAR0 only, no virtio capabilities: what a
 *                 pre-1.0 device looked like (§4.1.5.1.1.1)
 *
 * Layout
 *   BAR0  I/O, legacy header + device config (transitional, legacy)
 *   BAR1  32-bit memory, 4 KiB: MSI-X table at 0, PBA at 0x800
 *   BAR4  64-bit prefetchable memory, 16 KiB (modern, transitional):
 *         0x0000 common config, 0x1000 ISR, 0x2000 device config,
 *         0x3000 notifications (notify_off_multiplier 4, queue_notify_off
 *         = queue index)
 *   Capabilities: MSI-X (nr_queues + 1 vectors), then common, notify,
 *   ISR, device (when the device has config), PCI-cfg-access.
 *
 * Notifications: one KVM ioeventfd per queue on the queue's kick fd
 * (virtio_queue_kick_fd()): modern at BAR4 + 0x3000 + 4 * q (2 bytes),
 * legacy at BAR0 + 16 with datamatch q; they follow BAR moves (the PCI
 * host re-registers them).  Writes that reach the transport anyway (no
 * ioeventfd, PCI-cfg-access) become virtio_queue_kick().
 *
 * Interrupts: with MSI-X enabled, per-queue and config vectors
 * (queue_msix_vector / config_msix_vector); otherwise the ISR byte and
 * INTA# (level, cleared by reading ISR). */
#ifndef KITE_VIRTIO_PCI_H
#define KITE_VIRTIO_PCI_H

#include <pthread.h>
#include <stdint.h>

#include "virtio/virtio.h"
#include "vmm/pci.h"

#define VIRTIO_PCI_VENDOR_ID        0x1AF4
#define VIRTIO_PCI_MODERN_ID_BASE   0x1040

/* §4.1.4 cfg_type values. */
#define VIRTIO_PCI_CAP_COMMON_CFG   1
#define VIRTIO_PCI_CAP_NOTIFY_CFG   2
#define VIRTIO_PCI_CAP_ISR_CFG      3
#define VIRTIO_PCI_CAP_DEVICE_CFG   4
#define VIRTIO_PCI_CAP_PCI_CFG      5

/* struct virtio_pci_cap field offsets (§4.1.4). */
#define VIRTIO_PCI_CAP_LEN_OFF      2
#define VIRTIO_PCI_CAP_TYPE_OFF     3
#define VIRTIO_PCI_CAP_BAR_OFF      4
#define VIRTIO_PCI_CAP_ID_OFF       5
#define VIRTIO_PCI_CAP_OFFSET_OFF   8
#define VIRTIO_PCI_CAP_LENGTH_OFF   12
#define VIRTIO_PCI_CAP_SIZE         16
#define VIRTIO_PCI_NOTIFY_CAP_SIZE  20  /* + notify_off_multiplier */
#define VIRTIO_PCI_CFG_CAP_SIZE     20  /* + pci_cfg_data[4] */
#define VIRTIO_PCI_CFG_DATA_OFF     16

/* struct virtio_pci_common_cfg (§4.1.4.3). */
#define VIRTIO_PCI_COMMON_DFSELECT      0x00
#define VIRTIO_PCI_COMMON_DF            0x04
#define VIRTIO_PCI_COMMON_GFSELECT      0x08
#define VIRTIO_PCI_COMMON_GF            0x0C
#define VIRTIO_PCI_COMMON_MSIX          0x10
#define VIRTIO_PCI_COMMON_NUMQ          0x12
#define VIRTIO_PCI_COMMON_STATUS        0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT      0x16
#define VIRTIO_PCI_COMMON_Q_SIZE        0x18
#define VIRTIO_PCI_COMMON_Q_MSIX        0x1A
#define VIRTIO_PCI_COMMON_Q_ENABLE      0x1C
#define VIRTIO_PCI_COMMON_Q_NOFF        0x1E
#define VIRTIO_PCI_COMMON_Q_DESCLO      0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI      0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO     0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI     0x2C
#define VIRTIO_PCI_COMMON_Q_USEDLO      0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI      0x34
#define VIRTIO_PCI_COMMON_Q_NDATA       0x38
#define VIRTIO_PCI_COMMON_Q_RESET       0x3A
#define VIRTIO_PCI_COMMON_ADM_Q_IDX     0x3C
#define VIRTIO_PCI_COMMON_ADM_Q_NUM     0x3E
#define VIRTIO_PCI_COMMON_SIZE          0x40

/* Legacy header in BAR0 (§4.1.4.10). */
#define VIRTIO_PCI_LEGACY_HOST_FEATURES  0
#define VIRTIO_PCI_LEGACY_GUEST_FEATURES 4
#define VIRTIO_PCI_LEGACY_QUEUE_PFN      8
#define VIRTIO_PCI_LEGACY_QUEUE_NUM      12
#define VIRTIO_PCI_LEGACY_QUEUE_SEL      14
#define VIRTIO_PCI_LEGACY_QUEUE_NOTIFY   16
#define VIRTIO_PCI_LEGACY_STATUS         18
#define VIRTIO_PCI_LEGACY_ISR            19
#define VIRTIO_PCI_LEGACY_MSIX_CONFIG    20  /* only with MSI-X enabled */
#define VIRTIO_PCI_LEGACY_MSIX_QUEUE     22
#define VIRTIO_PCI_LEGACY_CONFIG         20  /* 24 with MSI-X enabled */
#define VIRTIO_PCI_LEGACY_CONFIG_MSIX    24
#define VIRTIO_PCI_LEGACY_ALIGN          4096

/* Kite's BAR layout. */
#define VIRTIO_PCI_LEGACY_BAR       0
#define VIRTIO_PCI_MSIX_BAR         1
#define VIRTIO_PCI_MSIX_BAR_SIZE    0x1000
#define VIRTIO_PCI_MSIX_PBA_OFFSET  0x800
#define VIRTIO_PCI_MODERN_BAR       4
#define VIRTIO_PCI_MODERN_BAR_SIZE  0x4000
#define VIRTIO_PCI_COMMON_OFFSET    0x0000
#define VIRTIO_PCI_ISR_OFFSET       0x1000
#define VIRTIO_PCI_DEVICE_OFFSET    0x2000
#define VIRTIO_PCI_NOTIFY_OFFSET    0x3000
#define VIRTIO_PCI_NOTIFY_MULTIPLIER 4
#define VIRTIO_PCI_REGION_SIZE      0x1000

#define VIRTIO_PCI_ISR_QUEUE  1u
#define VIRTIO_PCI_ISR_CONFIG 2u

enum virtio_pci_mode {
	VIRTIO_PCI_MODERN,
	VIRTIO_PCI_TRANSITIONAL,
	VIRTIO_PCI_LEGACY,
};

struct virtio_pci {
	struct pci_function fn;         /* the PCI side */
	struct virtio_device *dev;
	enum virtio_pci_mode mode;
	uint8_t cfg_cap;                /* PCI-cfg-access capability offset */
	uint32_t legacy_bar_size;

	pthread_mutex_t lock;           /* register latches below */
	uint32_t device_feature_select;
	uint32_t driver_feature_select;
	uint16_t queue_select;
	uint32_t legacy_pfn[VIRTIO_MAX_QUEUES];
	uint32_t seen_generation;       /* core generation last presented */
	uint8_t generation;             /* 8-bit config_generation */

	pthread_mutex_t isr_lock;       /* ISR byte + INTx level */
	uint8_t isr;
};

/* The transitional PCI device ID of a virtio device type (§4.1.2.1), or
 * 0 when the type has none. */
uint16_t virtio_pci_transitional_id(uint32_t device_id);

/* Build the PCI function for |dev| in |mode| and attach as its transport.
 * -ENOTSUP: no transitional ID for this type (transitional, legacy), or
 * device config too large for the legacy I/O BAR. */
int virtio_pci_init(struct virtio_pci *vp, struct virtio_device *dev,
		    enum virtio_pci_mode mode);
/* Plug into |host| at |slot| with INTA# on |intx_gsi| and register the
 * notification ioeventfds. */
int virtio_pci_plug(struct virtio_pci *vp, struct pci_host *host,
		    unsigned slot, unsigned intx_gsi);

#endif
