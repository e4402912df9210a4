/* virtio-ccw shim (virtio 1.2 §4.3): the virtio channel command set
 * processed from channel programs in guest memory, over the same device
 * model as the PCI and MMIO transports.
 *
 * No s390 guest runs on x86: Kite has no channel subsystem, no SSCH/TSCH
 * interception and no DIAGNOSE 0x500 exit.  This shim exists so that the
 * device model is exercised by a third, very different transport (big-
 * endian control blocks, indicator bits instead of interrupt registers)
 * and so an s390 port has a tested starting point.  The unit tests drive
 * it with a small test channel subsystem (tests/unit/test_virtio_ccw.c).
 *
 * What an s390 machine model would do:
 *   START SUBCHANNEL with an ORB      → virtio_ccw_start(ccw, cpa, &res),
 *                                       then make |res| the SCSW and raise
 *                                       the solicited I/O interrupt
 *   DIAGNOSE 0x500, subcode 3         → virtio_ccw_notify(ccw, gpr2, gpr3)
 *   enabling the subchannel (MSCH)    → virtio_ccw_enable_subchannel()
 * and provide the two interrupt callbacks below.
 *
 * Channel programs are format-1 CCWs (8 bytes: command, flags, be16
 * count, be32 data address).  Supported: command chaining (CC), suppress
 * length indication (SLI), TRANSFER IN CHANNEL; data chaining, IDAWs and
 * suspend are program checks.  Revisions 1 and 2 are supported; the
 * device is non-transitional, so revision 0 (legacy) is rejected. */
#ifndef KITE_VIRTIO_CCW_H
#define KITE_VIRTIO_CCW_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtio.h"
#include "vmm/memory.h"

/* Basic channel commands (§4.3.1). */
#define CCW_CMD_NOOP     0x03
#define CCW_CMD_SENSE    0x04
#define CCW_CMD_TIC      0x08
#define CCW_CMD_SENSE_ID 0xe4
/* virtio channel commands (§4.3.1.1). */
#define CCW_CMD_SET_VQ          0x13
#define CCW_CMD_VDEV_RESET      0x33
#define CCW_CMD_SET_IND         0x43
#define CCW_CMD_SET_CONF_IND    0x53
#define CCW_CMD_SET_IND_ADAPTER 0x73
#define CCW_CMD_READ_FEAT       0x12
#define CCW_CMD_WRITE_FEAT      0x11
#define CCW_CMD_READ_CONF       0x22
#define CCW_CMD_WRITE_CONF      0x21
#define CCW_CMD_WRITE_STATUS    0x31
#define CCW_CMD_READ_VQ_CONF    0x32
#define CCW_CMD_SET_VIRTIO_REV  0x83
#define CCW_CMD_READ_STATUS     0x72

/* CCW flags. */
#define CCW_FLAG_CD   0x80 /* data chaining (unsupported) */
#define CCW_FLAG_CC   0x40 /* command chaining */
#define CCW_FLAG_SLI  0x20 /* suppress length indication */
#define CCW_FLAG_SKIP 0x10
#define CCW_FLAG_PCI  0x08
#define CCW_FLAG_IDA  0x04 /* unsupported */
#define CCW_FLAG_SUSPEND 0x02 /* unsupported */

/* Device status (SCSW byte) and subchannel status bits. */
#define CCW_DSTAT_CE 0x08 /* channel end */
#define CCW_DSTAT_DE 0x04 /* device end */
#define CCW_DSTAT_UC 0x02 /* unit check */
#define CCW_CSTAT_IL      0x40 /* incorrect length */
#define CCW_CSTAT_PROGRAM 0x20 /* program check */
#define CCW_CSTAT_PROTECTION 0x10
/* Sense byte 0. */
#define CCW_SENSE_CMD_REJECT 0x80

#define VIRTIO_CCW_CU_TYPE 0x3832

/* The outcome of one channel program (the parts of the SCSW we set). */
struct virtio_ccw_result {
	uint8_t dstat;      /* CE|DE on success; UC on command reject */
	uint8_t cstat;      /* IL, program check, protection check */
	uint16_t residual;  /* count not transferred by the last CCW */
	uint64_t cpa;       /* address of the last CCW executed + 8 */
};

/* Unsolicited I/O interrupt for the subchannel (classic indicators and
 * config changes). */
typedef void (*virtio_ccw_io_irq_fn)(void *opaque);
/* Adapter I/O interrupt for interruption subclass |isc|. */
typedef void (*virtio_ccw_adapter_irq_fn)(void *opaque, uint8_t isc);

struct virtio_ccw {
	struct virtio_device *dev;
	const struct guest_memory *mem;
	uint32_t schid;                /* subchannel id, for notifications */
	virtio_ccw_io_irq_fn io_irq;
	virtio_ccw_adapter_irq_fn adapter_irq;
	void *irq_opaque;

	pthread_mutex_t lock;
	int revision;                  /* -1: not set yet */
	uint8_t sense;                 /* basic sense byte 0 */
	/* Indicators (guest addresses), set by SET_IND / SET_CONF_IND /
	 * SET_IND_ADAPTER.  Read by the interrupt path. */
	bool classic_ind, adapter_ind, conf_ind;
	uint64_t indicators;
	uint64_t config_indicators;
	uint64_t summary_indicator;
	uint64_t adapter_indicators;
	uint64_t bit_nr;
	uint8_t isc;
};

int virtio_ccw_init(struct virtio_ccw *ccw, struct virtio_device *dev,
		    const struct guest_memory *mem, uint32_t schid,
		    virtio_ccw_io_irq_fn io_irq,
		    virtio_ccw_adapter_irq_fn adapter_irq, void *irq_opaque);

/* The subchannel was (re-)enabled: the revision is unset again
 * (§4.3.2.1.1). */
void virtio_ccw_enable_subchannel(struct virtio_ccw *ccw);

/* Run the channel program at guest address |cpa|; fills *res.  Returns 0
 * when the program ended normally (CE|DE), -EIO for a unit check,
 * -EINVAL for incorrect length, -EFAULT for a program/protection check. */
int virtio_ccw_start(struct virtio_ccw *ccw, uint64_t cpa,
		     struct virtio_ccw_result *res);

/* DIAGNOSE 0x500 subcode 3 (§4.3.3.2): GPR2 carries the subchannel id in
 * its low 32 bits (bits 0-31 from the left are ignored), GPR3 the queue
 * index.  Returns 0 and stores the host cookie, or -ENODEV for another
 * subchannel. */
int virtio_ccw_notify(struct virtio_ccw *ccw, uint64_t gpr2, uint64_t gpr3,
		      uint64_t *cookie);

#endif
