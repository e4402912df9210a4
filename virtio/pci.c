/* virtio over PCI (virtio 1.2 §4.1): modern, transitional and legacy.
 * See pci.h.  Device state lives in the core; this file latches the
 * selectors, owns the ISR byte and maps guest accesses to the core's
 * transport API. */
#include "virtio/pci.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static struct virtio_pci *to_vp(struct pci_function *fn)
{
	return (struct virtio_pci *)((char *)fn -
				     offsetof(struct virtio_pci, fn));
}

/* §4.1.2.1 transitional IDs. */
uint16_t virtio_pci_transitional_id(uint32_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET:     return 0x1000;
	case VIRTIO_ID_BLOCK:   return 0x1001;
	case VIRTIO_ID_BALLOON: return 0x1002;
	case VIRTIO_ID_CONSOLE: return 0x1003;
	case 8:                 return 0x1004; /* SCSI host */
	case VIRTIO_ID_RNG:     return 0x1005;
	case 9:                 return 0x1009; /* 9P transport */
	default:                return 0;
	}
}

/* PCI class code by device type, so the OS names the device sensibly. */
static uint32_t class_code_of(uint32_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET:     return 0x020000; /* Ethernet controller */
	case VIRTIO_ID_BLOCK:   return 0x010000; /* SCSI storage controller */
	case VIRTIO_ID_CONSOLE: return 0x078000; /* other communication */
	default:                return 0x00FF00; /* unclassified */
	}
}

static struct virtq *selected_queue(struct virtio_pci *vp)
{
	if (vp->queue_select >= vp->dev->nr_queues)
		return NULL;
	return &vp->dev->queues[vp->queue_select];
}

/* ---- interrupts (§4.1.5.3, §4.1.5.4) ------------------------------------ */

static void isr_raise(struct virtio_pci *vp, uint8_t bits, bool line)
{
	pthread_mutex_lock(&vp->isr_lock);
	vp->isr |= bits;
	/* §4.1.4.5.1: with MSI-X disabled, PCI Status.Interrupt is the OR
	 * of the ISR bits and INTx follows it. */
	if (line)
		pci_intx_set(&vp->fn, 1);
	pthread_mutex_unlock(&vp->isr_lock);
}

static uint8_t isr_read_and_clear(struct virtio_pci *vp)
{
	uint8_t v;

	pthread_mutex_lock(&vp->isr_lock);
	v = vp->isr;
	/* §4.1.4.5.1: the device MUST reset ISR status to 0 on driver read. */
	vp->isr = 0;
	pci_intx_set(&vp->fn, 0);
	pthread_mutex_unlock(&vp->isr_lock);
	return v;
}

static void pci_notify_queue(void *transport, unsigned qidx, uint16_t vector)
{
	struct virtio_pci *vp = transport;

	(void)qidx;
	if (pci_msix_enabled(&vp->fn)) {
		/* §4.1.5.3.1: NO_VECTOR means no interrupt for this queue. */
		if (vector != VIRTIO_NO_VECTOR)
			pci_msix_notify(&vp->fn, vector);
		return;
	}
	isr_raise(vp, VIRTIO_PCI_ISR_QUEUE, true);
}

static void pci_notify_config(void *transport, uint16_t vector)
{
	struct virtio_pci *vp = transport;
	bool msix = pci_msix_enabled(&vp->fn);

	/* §4.1.4.5.1: set the configuration bit before notifying, with or
	 * without MSI-X. */
	isr_raise(vp, VIRTIO_PCI_ISR_CONFIG, !msix);
	if (msix && vector != VIRTIO_NO_VECTOR)
		pci_msix_notify(&vp->fn, vector);
}

static const struct virtio_transport_ops pci_transport_ops = {
	.notify_queue = pci_notify_queue,
	.notify_config = pci_notify_config,
};

/* MSI-X was switched on or off: INTx is only used without it. */
static void irq_mode_changed(struct pci_function *fn)
{
	struct virtio_pci *vp = to_vp(fn);
	bool msix = pci_msix_enabled(fn);

	pthread_mutex_lock(&vp->isr_lock);
	pci_intx_set(fn, !msix && vp->isr != 0);
	pthread_mutex_unlock(&vp->isr_lock);
}

/* The device was reset through a status write of 0: the transport's own
 * state goes back to its reset values too.  vp->lock held. */
static void transport_reset(struct virtio_pci *vp)
{
	struct virtio_device *dev = vp->dev;

	/* §4.1.5.1.2.1: all events unmapped upon reset. */
	dev->config_vector = VIRTIO_NO_VECTOR;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		dev->queues[q].vector = VIRTIO_NO_VECTOR;
	memset(vp->legacy_pfn, 0, sizeof(vp->legacy_pfn));
	pthread_mutex_lock(&vp->isr_lock);
	vp->isr = 0;
	pci_intx_set(&vp->fn, 0);
	pthread_mutex_unlock(&vp->isr_lock);
}

static void write_status(struct virtio_pci *vp, uint8_t status)
{
	virtio_set_status(vp->dev, status);
	if (status == 0)
		transport_reset(vp);
}

/* A transitional device runs legacy or modern depending on which
 * interface the driver uses; it may switch only while the device is
 * reset (virtio.h).  vp->lock held. */
static void choose_interface(struct virtio_pci *vp, bool legacy)
{
	if (vp->mode == VIRTIO_PCI_TRANSITIONAL && vp->dev->legacy != legacy &&
	    virtio_get_status(vp->dev) == 0)
		vp->dev->legacy = legacy;
}

static uint16_t checked_vector(struct virtio_pci *vp, uint16_t v)
{
	/* §4.1.5.1.2.1: a vector outside the table cannot be mapped; the
	 * failure reads back as NO_VECTOR. */
	return v < pci_msix_nr_vectors(&vp->fn) ? v : VIRTIO_NO_VECTOR;
}

/* The 8-bit config_generation (§4.1.4.3.1): it changes whenever the
 * core's generation moved since the driver last looked, so it never
 * wraps back to a value the driver saw for a different config. */
static uint8_t current_generation(struct virtio_pci *vp)
{
	uint32_t g = virtio_config_generation(vp->dev);

	if (g != vp->seen_generation) {
		vp->seen_generation = g;
		vp->generation++;
	}
	return vp->generation;
}

/* ---- common configuration (§4.1.4.3) ------------------------------------ */

/* Field containing |off|: its start and width (0: none). */
static unsigned common_field(unsigned off, unsigned *start)
{
	static const struct { uint8_t off, width; } fields[] = {
		{ 0x00, 4 }, { 0x04, 4 }, { 0x08, 4 }, { 0x0C, 4 },
		{ 0x10, 2 }, { 0x12, 2 }, { 0x14, 1 }, { 0x15, 1 },
		{ 0x16, 2 }, { 0x18, 2 }, { 0x1A, 2 }, { 0x1C, 2 },
		{ 0x1E, 2 }, { 0x20, 8 }, { 0x28, 8 }, { 0x30, 8 },
		{ 0x38, 2 }, { 0x3A, 2 }, { 0x3C, 2 }, { 0x3E, 2 },
	};

	for (unsigned i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (off >= fields[i].off &&
		    off < (unsigned)fields[i].off + fields[i].width) {
			*start = fields[i].off;
			return fields[i].width;
		}
	}
	return 0;
}

static uint64_t common_field_read(struct virtio_pci *vp, unsigned field)
{
	struct virtio_device *dev = vp->dev;
	struct virtq *q = selected_queue(vp);

	switch (field) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		return vp->device_feature_select;
	case VIRTIO_PCI_COMMON_DF:
		/* §4.1.4.3.1: bits sel*32.. of what is offered (0 past 63). */
		return virtio_device_features_word(dev,
						   vp->device_feature_select);
	case VIRTIO_PCI_COMMON_GFSELECT:
		return vp->driver_feature_select;
	case VIRTIO_PCI_COMMON_GF:
		return virtio_driver_features_word(dev,
						   vp->driver_feature_select);
	case VIRTIO_PCI_COMMON_MSIX:
		return dev->config_vector;
	case VIRTIO_PCI_COMMON_NUMQ:
		return dev->nr_queues;
	case VIRTIO_PCI_COMMON_STATUS:
		return virtio_get_status(dev);
	case VIRTIO_PCI_COMMON_CFGGENERATION:
		return current_generation(vp);
	case VIRTIO_PCI_COMMON_Q_SELECT:
		return vp->queue_select;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		/* §4.1.4.3.1: 0 for a queue that does not exist. */
		return q ? q->size : 0;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		return q ? q->vector : VIRTIO_NO_VECTOR;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		return q && q->ready;
	case VIRTIO_PCI_COMMON_Q_NOFF:
	case VIRTIO_PCI_COMMON_Q_NDATA:
		return q ? vp->queue_select : 0;
	case VIRTIO_PCI_COMMON_Q_DESCLO:
		return q ? q->desc_addr : 0;
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
		return q ? q->driver_addr : 0;
	case VIRTIO_PCI_COMMON_Q_USEDLO:
		return q ? q->device_addr : 0;
	default:
		return 0; /* queue_reset, admin queues: not offered */
	}
}

static bool queue_size_acceptable(struct virtio_pci *vp, struct virtq *q,
				  uint16_t v)
{
	if (v == 0 || v > q->max_size)
		return false;
	/* §4.1.4.3.1: without packed rings the device presents 0 or a power
	 * of 2; a bad write is not taken. */
	if (!virtio_has_feature(vp->dev, VIRTIO_F_RING_PACKED) &&
	    (v & (v - 1)))
		return false;
	return true;
}

static void set_half(uint64_t *addr, unsigned byte_off, unsigned size,
		     uint64_t v)
{
	uint64_t mask = size >= 8 ? ~0ull : ((1ull << (8 * size)) - 1);

	mask <<= 8 * byte_off;
	*addr = (*addr & ~mask) | ((v << (8 * byte_off)) & mask);
}

static void common_write(struct virtio_pci *vp, unsigned off, unsigned size,
			 uint64_t v)
{
	struct virtio_device *dev = vp->dev;
	struct virtq *q = selected_queue(vp);
	unsigned field, width = common_field(off, &field);

	if (!width || off + size > field + width)
		return;
	/* Narrower-than-field writes are only defined for the 64-bit
	 * fields' halves (§4.1.3). */
	if (width != 8 && size != width)
		return;
	switch (field) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		vp->device_feature_select = (uint32_t)v;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:
		vp->driver_feature_select = (uint32_t)v;
		break;
	case VIRTIO_PCI_COMMON_GF:
		virtio_driver_features_write_word(dev, vp->driver_feature_select,
						  (uint32_t)v);
		break;
	case VIRTIO_PCI_COMMON_MSIX:
		dev->config_vector = checked_vector(vp, (uint16_t)v);
		break;
	case VIRTIO_PCI_COMMON_STATUS:
		write_status(vp, (uint8_t)v);
		break;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		vp->queue_select = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		if (q && !q->ready && queue_size_acceptable(vp, q, (uint16_t)v))
			q->size = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (q)
			q->vector = checked_vector(vp, (uint16_t)v);
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		/* The driver MUST NOT write 0 (§4.1.4.3.2); ignore it. */
		if (q && v == 1 && !q->ready)
			virtio_queue_enable(dev, vp->queue_select);
		break;
	case VIRTIO_PCI_COMMON_Q_DESCLO:
		if (q && !q->ready)
			set_half(&q->desc_addr, off - field, size, v);
		break;
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
		if (q && !q->ready)
			set_half(&q->driver_addr, off - field, size, v);
		break;
	case VIRTIO_PCI_COMMON_Q_USEDLO:
		if (q && !q->ready)
			set_half(&q->device_addr, off - field, size, v);
		break;
	default:
		break; /* read-only fields */
	}
}

static uint64_t common_read(struct virtio_pci *vp, unsigned off,
			    unsigned size)
{
	unsigned field, width = common_field(off, &field);
	uint64_t v;

	if (!width || off + size > field + width)
		return 0;
	v = common_field_read(vp, field) >> (8 * (off - field));
	return size >= 8 ? v : v & ((1ull << (8 * size)) - 1);
}

/* ---- the modern BAR ------------------------------------------------------- */

static void modern_read(struct virtio_pci *vp, uint64_t off, unsigned size,
			uint64_t *value)
{
	struct virtio_device *dev = vp->dev;
	uint64_t v = 0;

	if (off < VIRTIO_PCI_COMMON_SIZE) {
		pthread_mutex_lock(&vp->lock);
		choose_interface(vp, false);
		v = common_read(vp, (unsigned)off, size);
		pthread_mutex_unlock(&vp->lock);
	} else if (off >= VIRTIO_PCI_ISR_OFFSET &&
		   off < VIRTIO_PCI_ISR_OFFSET + 4) {
		if (off == VIRTIO_PCI_ISR_OFFSET)
			v = isr_read_and_clear(vp);
	} else if (off >= VIRTIO_PCI_DEVICE_OFFSET &&
		   off < VIRTIO_PCI_DEVICE_OFFSET + VIRTIO_PCI_REGION_SIZE) {
		pthread_mutex_lock(&vp->lock);
		current_generation(vp); /* a change is seen from now on */
		pthread_mutex_unlock(&vp->lock);
		virtio_config_read(dev, (uint32_t)(off - VIRTIO_PCI_DEVICE_OFFSET),
				   &v, size);
	}
	*value = v;
}

static void modern_write(struct virtio_pci *vp, uint64_t off, unsigned size,
			 uint64_t value)
{
	struct virtio_device *dev = vp->dev;

	if (off < VIRTIO_PCI_COMMON_SIZE) {
		pthread_mutex_lock(&vp->lock);
		choose_interface(vp, false);
		common_write(vp, (unsigned)off, size, value);
		pthread_mutex_unlock(&vp->lock);
	} else if (off >= VIRTIO_PCI_DEVICE_OFFSET &&
		   off < VIRTIO_PCI_DEVICE_OFFSET + VIRTIO_PCI_REGION_SIZE) {
		virtio_config_write(dev, (uint32_t)(off - VIRTIO_PCI_DEVICE_OFFSET),
				    &value, size);
	} else if (off >= VIRTIO_PCI_NOTIFY_OFFSET &&
		   off < VIRTIO_PCI_NOTIFY_OFFSET +
				   VIRTIO_PCI_NOTIFY_MULTIPLIER *
					   (uint64_t)dev->nr_queues) {
		/* §4.1.5.2: the driver writes the queue index; the address
		 * already says which queue, and that is what we trust. */
		virtio_queue_kick(dev, (unsigned)((off - VIRTIO_PCI_NOTIFY_OFFSET) /
						  VIRTIO_PCI_NOTIFY_MULTIPLIER));
	}
}

/* ---- the legacy I/O BAR (§4.1.4.10) ----------------------------------------- */

static unsigned legacy_config_offset(struct virtio_pci *vp)
{
	return pci_msix_enabled(&vp->fn) ? VIRTIO_PCI_LEGACY_CONFIG_MSIX
					 : VIRTIO_PCI_LEGACY_CONFIG;
}

/* §4.1.5.1.3.1: the queue is at PFN * 4096, laid out with 4096-byte
 * alignment (§2.7.2), of the device's (non-negotiable) size. */
static void legacy_set_pfn(struct virtio_pci *vp, uint32_t pfn)
{
	struct virtio_device *dev = vp->dev;
	unsigned qidx = vp->queue_select;
	struct virtq *q = selected_queue(vp);
	uint64_t avail_end;

	if (!q)
		return;
	if (pfn == 0) {
		virtio_queue_disable(dev, qidx);
		vp->legacy_pfn[qidx] = 0;
		return;
	}
	if (q->ready)
		return;
	q->size = q->max_size;
	q->desc_addr = (uint64_t)pfn * VIRTIO_PCI_LEGACY_ALIGN;
	q->driver_addr = q->desc_addr + 16ull * q->size;
	avail_end = q->driver_addr + 6 + 2ull * q->size;
	q->device_addr = (avail_end + VIRTIO_PCI_LEGACY_ALIGN - 1) &
			 ~(uint64_t)(VIRTIO_PCI_LEGACY_ALIGN - 1);
	if (virtio_queue_enable(dev, qidx) == 0)
		vp->legacy_pfn[qidx] = pfn;
}

static void legacy_read(struct virtio_pci *vp, uint64_t off, unsigned size,
			uint64_t *value)
{
	struct virtio_device *dev = vp->dev;
	unsigned cfg = legacy_config_offset(vp);
	struct virtq *q;
	uint64_t v = 0;

	if (off >= cfg) {
		/* Any width is fine for legacy device config (§4.1.4.10). */
		virtio_config_read(dev, (uint32_t)(off - cfg), &v, size);
		*value = v;
		return;
	}
	if (off == VIRTIO_PCI_LEGACY_ISR && size == 1) {
		*value = isr_read_and_clear(vp);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	choose_interface(vp, true);
	q = selected_queue(vp);
	switch (off) {
	case VIRTIO_PCI_LEGACY_HOST_FEATURES:
		if (size == 4)
			v = virtio_device_features_word(dev, 0);
		break;
	case VIRTIO_PCI_LEGACY_GUEST_FEATURES:
		if (size == 4)
			v = virtio_driver_features_word(dev, 0);
		break;
	case VIRTIO_PCI_LEGACY_QUEUE_PFN:
		if (size == 4 && q && q->ready)
			v = vp->legacy_pfn[vp->queue_select];
		break;
	case VIRTIO_PCI_LEGACY_QUEUE_NUM:
		if (size == 2)
			v = q ? q->max_size : 0;
		break;
	case VIRTIO_PCI_LEGACY_QUEUE_SEL:
		if (size == 2)
			v = vp->queue_select;
		break;
	case VIRTIO_PCI_LEGACY_STATUS:
		if (size == 1)
			v = virtio_get_status(dev);
		break;
	case VIRTIO_PCI_LEGACY_MSIX_CONFIG:
		if (size == 2)
			v = dev->config_vector;
		break;
	case VIRTIO_PCI_LEGACY_MSIX_QUEUE:
		if (size == 2)
			v = q ? q->vector : VIRTIO_NO_VECTOR;
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&vp->lock);
	*value = v;
}

static void legacy_write(struct virtio_pci *vp, uint64_t off, unsigned size,
			 uint64_t value)
{
	struct virtio_device *dev = vp->dev;
	unsigned cfg = legacy_config_offset(vp);
	struct virtq *q;

	if (off >= cfg) {
		virtio_config_write(dev, (uint32_t)(off - cfg), &value, size);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	choose_interface(vp, true);
	q = selected_queue(vp);
	switch (off) {
	case VIRTIO_PCI_LEGACY_GUEST_FEATURES:
		/* §4.1.4.10: bits 32-63 are not acknowledged by a legacy
		 * driver; only word 0 is reachable here. */
		if (size == 4)
			virtio_driver_features_write_word(dev, 0, (uint32_t)value);
		break;
	case VIRTIO_PCI_LEGACY_QUEUE_PFN:
		if (size == 4)
			legacy_set_pfn(vp, (uint32_t)value);
		break;
	case VIRTIO_PCI_LEGACY_QUEUE_SEL:
		if (size == 2)
			vp->queue_select = (uint16_t)value;
		break;
	case VIRTIO_PCI_LEGACY_QUEUE_NOTIFY:
		if (size == 2)
			virtio_queue_kick(dev, (unsigned)value);
		break;
	case VIRTIO_PCI_LEGACY_STATUS:
		if (size == 1)
			write_status(vp, (uint8_t)value);
		break;
	case VIRTIO_PCI_LEGACY_MSIX_CONFIG:
		if (size == 2)
			dev->config_vector = checked_vector(vp, (uint16_t)value);
		break;
	case VIRTIO_PCI_LEGACY_MSIX_QUEUE:
		if (size == 2 && q)
			q->vector = checked_vector(vp, (uint16_t)value);
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&vp->lock);
}

/* ---- PCI device hooks --------------------------------------------------------- */

static void vp_bar_read(struct pci_function *fn, unsigned bar,
			uint64_t offset, unsigned size, uint64_t *value)
{
	struct virtio_pci *vp = to_vp(fn);

	*value = 0;
	if (bar == VIRTIO_PCI_MODERN_BAR && vp->mode != VIRTIO_PCI_LEGACY)
		modern_read(vp, offset, size, value);
	else if (bar == VIRTIO_PCI_LEGACY_BAR && vp->mode != VIRTIO_PCI_MODERN)
		legacy_read(vp, offset, size, value);
}

static void vp_bar_write(struct pci_function *fn, unsigned bar,
			 uint64_t offset, unsigned size, uint64_t value)
{
	struct virtio_pci *vp = to_vp(fn);

	if (bar == VIRTIO_PCI_MODERN_BAR && vp->mode != VIRTIO_PCI_LEGACY)
		modern_write(vp, offset, size, value);
	else if (bar == VIRTIO_PCI_LEGACY_BAR && vp->mode != VIRTIO_PCI_MODERN)
		legacy_write(vp, offset, size, value);
}

/* The PCI-cfg-access window's target, if it names a valid access. */
static bool cfg_cap_target(struct virtio_pci *vp, unsigned *bar,
			   uint32_t *offset, uint32_t *len)
{
	const uint8_t *c = vp->fn.cfg + vp->cfg_cap;

	*bar = c[VIRTIO_PCI_CAP_BAR_OFF];
	*offset = pci_get_long(c, VIRTIO_PCI_CAP_OFFSET_OFF);
	*len = pci_get_long(c, VIRTIO_PCI_CAP_LENGTH_OFF);
	return (*len == 1 || *len == 2 || *len == 4) && *bar < PCI_NUM_BARS &&
	       vp->fn.bars[*bar].size && *offset < vp->fn.bars[*bar].size &&
	       *len <= vp->fn.bars[*bar].size - *offset;
}

static bool touches_cfg_data(struct virtio_pci *vp, unsigned off,
			     unsigned size)
{
	unsigned data = vp->cfg_cap + VIRTIO_PCI_CFG_DATA_OFF;

	return vp->cfg_cap && off < data + 4 && data < off + size;
}

/* §4.1.4.9.1: a read of pci_cfg_data reads cap.length bytes at
 * cap.offset of BAR cap.bar into it first. */
static void vp_config_read(struct pci_function *fn, unsigned off,
			   unsigned size)
{
	struct virtio_pci *vp = to_vp(fn);
	unsigned bar;
	uint32_t offset, len;
	uint64_t v = 0;

	if (!touches_cfg_data(vp, off, size) ||
	    !cfg_cap_target(vp, &bar, &offset, &len))
		return;
	pci_function_bar_read(fn, bar, offset, len, &v);
	pci_set_long(fn->cfg, vp->cfg_cap + VIRTIO_PCI_CFG_DATA_OFF,
		     (uint32_t)v);
}

/* §4.1.4.9.1: a write of pci_cfg_data writes its first cap.length bytes
 * to cap.offset of BAR cap.bar. */
static void vp_config_write(struct pci_function *fn, unsigned off,
			    unsigned size, uint32_t value)
{
	struct virtio_pci *vp = to_vp(fn);
	unsigned bar;
	uint32_t offset, len, data;

	(void)value;
	if (!touches_cfg_data(vp, off, size) ||
	    !cfg_cap_target(vp, &bar, &offset, &len))
		return;
	data = pci_get_long(fn->cfg, vp->cfg_cap + VIRTIO_PCI_CFG_DATA_OFF);
	if (len < 4)
		data &= (1u << (8 * len)) - 1;
	pci_function_bar_write(fn, bar, offset, len, data);
}

static const struct pci_device_ops virtio_pci_device_ops = {
	.bar_read = vp_bar_read,
	.bar_write = vp_bar_write,
	.config_read = vp_config_read,
	.config_write = vp_config_write,
	.irq_mode_changed = irq_mode_changed,
};

/* ---- construction --------------------------------------------------------------- */

static int add_virtio_cap(struct virtio_pci *vp, uint8_t type, unsigned len,
			  uint8_t bar, uint32_t offset, uint32_t length)
{
	int cap = pci_function_add_capability(&vp->fn, PCI_CAP_ID_VNDR, len);
	uint8_t *c;

	if (cap < 0)
		return cap;
	c = vp->fn.cfg + cap;
	/* §4.1.4.1: cap_len covers the whole structure with extra data. */
	c[VIRTIO_PCI_CAP_LEN_OFF] = (uint8_t)len;
	c[VIRTIO_PCI_CAP_TYPE_OFF] = type;
	c[VIRTIO_PCI_CAP_BAR_OFF] = bar;
	c[VIRTIO_PCI_CAP_ID_OFF] = 0;
	pci_set_long(c, VIRTIO_PCI_CAP_OFFSET_OFF, offset);
	pci_set_long(c, VIRTIO_PCI_CAP_LENGTH_OFF, length);
	return cap;
}

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

int virtio_pci_init(struct virtio_pci *vp, struct virtio_device *dev,
		    enum virtio_pci_mode mode)
{
	uint16_t trans_id = virtio_pci_transitional_id(dev->device_id);
	bool modern = mode != VIRTIO_PCI_LEGACY;
	bool legacy_bar = mode != VIRTIO_PCI_MODERN;
	unsigned nr_vectors = dev->nr_queues + 1;
	int rc, cap;

	memset(vp, 0, sizeof(*vp));
	vp->dev = dev;
	vp->mode = mode;
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->isr_lock, NULL);
	if (legacy_bar) {
		if (!trans_id)
			return -ENOTSUP;
		vp->legacy_bar_size = pow2_at_least(VIRTIO_PCI_LEGACY_CONFIG_MSIX +
						    dev->config_size);
		if (vp->legacy_bar_size < 32)
			vp->legacy_bar_size = 32;
		if (vp->legacy_bar_size > 256)
			return -ENOTSUP;
	}
	if (dev->config_size > VIRTIO_PCI_REGION_SIZE)
		return -ENOTSUP;
	if (nr_vectors < 2)
		nr_vectors = 2; /* §4.1.5.1.2.1: at least 2 */

	if (mode == VIRTIO_PCI_MODERN)
		/* §4.1.2.1: 0x1040 + type, revision >= 1, subsystem >= 0x40. */
		pci_function_init(&vp->fn, dev->name, VIRTIO_PCI_VENDOR_ID,
				  (uint16_t)(VIRTIO_PCI_MODERN_ID_BASE +
					     dev->device_id),
				  1, class_code_of(dev->device_id),
				  VIRTIO_PCI_VENDOR_ID,
				  (uint16_t)(0x40 + dev->device_id),
				  &virtio_pci_device_ops, vp);
	else
		/* §4.1.2.3: revision 0, subsystem ID = device type. */
		pci_function_init(&vp->fn, dev->name, VIRTIO_PCI_VENDOR_ID,
				  trans_id, 0, class_code_of(dev->device_id),
				  VIRTIO_PCI_VENDOR_ID, (uint16_t)dev->device_id,
				  &virtio_pci_device_ops, vp);

	if (legacy_bar) {
		rc = pci_function_add_bar(&vp->fn, VIRTIO_PCI_LEGACY_BAR,
					  vp->legacy_bar_size, true, false,
					  false);
		if (rc)
			return rc;
	}
	rc = pci_function_add_bar(&vp->fn, VIRTIO_PCI_MSIX_BAR,
				  VIRTIO_PCI_MSIX_BAR_SIZE, false, false, false);
	if (!rc && modern)
		rc = pci_function_add_bar(&vp->fn, VIRTIO_PCI_MODERN_BAR,
					  VIRTIO_PCI_MODERN_BAR_SIZE, false,
					  true, true);
	if (!rc)
		rc = pci_function_add_msix(&vp->fn, nr_vectors,
					   VIRTIO_PCI_MSIX_BAR, 0,
					   VIRTIO_PCI_MSIX_PBA_OFFSET);
	if (rc)
		return rc;

	if (modern) {
		uint32_t notify_len = VIRTIO_PCI_NOTIFY_MULTIPLIER *
				      (dev->nr_queues ? dev->nr_queues : 1);

		cap = add_virtio_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG,
				     VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_MODERN_BAR,
				     VIRTIO_PCI_COMMON_OFFSET,
				     VIRTIO_PCI_COMMON_SIZE);
		if (cap >= 0)
			cap = add_virtio_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG,
					     VIRTIO_PCI_NOTIFY_CAP_SIZE,
					     VIRTIO_PCI_MODERN_BAR,
					     VIRTIO_PCI_NOTIFY_OFFSET,
					     notify_len);
		if (cap >= 0)
			pci_set_long(vp->fn.cfg, (unsigned)cap + 16,
				     VIRTIO_PCI_NOTIFY_MULTIPLIER);
		if (cap >= 0)
			cap = add_virtio_cap(vp, VIRTIO_PCI_CAP_ISR_CFG,
					     VIRTIO_PCI_CAP_SIZE,
					     VIRTIO_PCI_MODERN_BAR,
					     VIRTIO_PCI_ISR_OFFSET, 1);
		if (cap >= 0 && dev->config_size)
			cap = add_virtio_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG,
					     VIRTIO_PCI_CAP_SIZE,
					     VIRTIO_PCI_MODERN_BAR,
					     VIRTIO_PCI_DEVICE_OFFSET,
					     dev->config_size);
		if (cap >= 0)
			cap = add_virtio_cap(vp, VIRTIO_PCI_CAP_PCI_CFG,
					     VIRTIO_PCI_CFG_CAP_SIZE, 0, 0, 0);
		if (cap < 0)
			return cap;
		/* §4.1.4.9: cap.bar, cap.offset, cap.length and
		 * pci_cfg_data are read-write for the driver. */
		vp->cfg_cap = (uint8_t)cap;
		vp->fn.wmask[cap + VIRTIO_PCI_CAP_BAR_OFF] = 0xFF;
		pci_set_long(vp->fn.wmask, (unsigned)cap + VIRTIO_PCI_CAP_OFFSET_OFF,
			     0xFFFFFFFFu);
		pci_set_long(vp->fn.wmask, (unsigned)cap + VIRTIO_PCI_CAP_LENGTH_OFF,
			     0xFFFFFFFFu);
		pci_set_long(vp->fn.wmask, (unsigned)cap + VIRTIO_PCI_CFG_DATA_OFF,
			     0xFFFFFFFFu);
	}

	dev->legacy = mode == VIRTIO_PCI_LEGACY;
	dev->config_vector = VIRTIO_NO_VECTOR;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		dev->queues[q].vector = VIRTIO_NO_VECTOR;
	vp->seen_generation = virtio_config_generation(dev);
	virtio_device_set_transport(dev, &pci_transport_ops, vp);
	return 0;
}

int virtio_pci_plug(struct virtio_pci *vp, struct pci_host *host,
		    unsigned slot, unsigned intx_gsi)
{
	struct virtio_device *dev = vp->dev;
	int rc = pci_host_add_function(host, &vp->fn, slot, intx_gsi);

	for (unsigned q = 0; q < dev->nr_queues && !rc; q++) {
		int fd = virtio_queue_kick_fd(dev, q);

		if (vp->mode != VIRTIO_PCI_LEGACY)
			rc = pci_function_add_ioeventfd(
				&vp->fn, VIRTIO_PCI_MODERN_BAR,
				VIRTIO_PCI_NOTIFY_OFFSET +
					VIRTIO_PCI_NOTIFY_MULTIPLIER * q,
				2, -1, fd);
		if (!rc && vp->mode != VIRTIO_PCI_MODERN)
			rc = pci_function_add_ioeventfd(
				&vp->fn, VIRTIO_PCI_LEGACY_BAR,
				VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 2, q, fd);
	}
	return rc;
}
