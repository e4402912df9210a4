/* virtio-mmio transport (virtio 1.2 §4.2): version 2, and the legacy
 * version 1 register layout (§4.2.4), as a bus device.
 *
 * Register it on the MMIO bus with
 *     bus_register(&vm->mmio, base, VIRTIO_MMIO_SIZE,
 *                  &virtio_mmio_bus_ops, mmio, "virtio-mmio");
 * and, for fast notifications, register the device's kick fds
 * (virtio_queue_kick_fd()) as KVM ioeventfds on base + 0x050 with
 * datamatch = queue index (4 bytes); writes that do reach the bus are
 * turned into the same kicks here.
 *
 * The device has one interrupt line (§4.2.3.4).  The transport calls
 * set_irq(opaque, 1) when InterruptStatus becomes non-zero and
 * set_irq(opaque, 0) when the driver's InterruptACK clears it: wire it to
 * a level-triggered GSI (KVM_IRQ_LINE, or an irqfd with resamplefd).
 * set_irq may be called from the device's queue thread and from vCPU
 * threads; calls are serialised by the transport. */
#ifndef KITE_VIRTIO_MMIO_H
#define KITE_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtio.h"
#include "vmm/bus.h"

#define VIRTIO_MMIO_SIZE 0x200 /* registers + 256 bytes of config */

/* §4.2.2 register offsets. */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_GUEST_PAGE_SIZE     0x028 /* legacy */
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_ALIGN         0x03c /* legacy */
#define VIRTIO_MMIO_QUEUE_PFN           0x040 /* legacy */
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VIRTIO_MMIO_QUEUE_RESET         0x0c0
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */

#define VIRTIO_MMIO_INT_VRING  1u /* used buffer notification */
#define VIRTIO_MMIO_INT_CONFIG 2u /* configuration change */

typedef void (*virtio_mmio_irq_fn)(void *opaque, int level);

struct virtio_mmio {
	struct virtio_device *dev;
	bool legacy;                    /* Version 1 register layout */
	virtio_mmio_irq_fn set_irq;
	void *irq_opaque;

	pthread_mutex_t lock;           /* register latches below */
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
	uint32_t guest_page_size;       /* legacy */
	uint32_t queue_align[VIRTIO_MAX_QUEUES]; /* legacy */
	uint32_t queue_pfn[VIRTIO_MAX_QUEUES];   /* legacy */

	pthread_mutex_t irq_lock;       /* interrupt_status + line level */
	uint32_t interrupt_status;
	int irq_level;
};

/* Attach |mmio| as |dev|'s transport.  |legacy| selects the version 1
 * layout (and makes the device legacy: no FEATURES_OK step, 32 feature
 * bits, split rings only). */
int virtio_mmio_init(struct virtio_mmio *mmio, struct virtio_device *dev,
		     bool legacy, virtio_mmio_irq_fn set_irq, void *irq_opaque);

/* Bus callbacks; opaque is the struct virtio_mmio. */
extern const struct bus_ops virtio_mmio_bus_ops;
void virtio_mmio_read(void *opaque, uint64_t offset, unsigned size,
		      uint64_t *value);
void virtio_mmio_write(void *opaque, uint64_t offset, unsigned size,
		       uint64_t value);

#endif
