/* virtio-mmio transport (virtio 1.2 §4.2), version 2 and legacy version 1.
 * See mmio.h.  All guest-visible state that belongs to the device lives
 * in the core; this file only latches selectors and queue registers and
 * owns the interrupt status register. */
#include "virtio/mmio.h"

#include <errno.h>
#include <string.h>

static struct virtq *selected_queue(struct virtio_mmio *m)
{
	if (m->queue_sel >= m->dev->nr_queues)
		return NULL;
	return &m->dev->queues[m->queue_sel];
}

/* ---- interrupts (§4.2.2: InterruptStatus / InterruptACK) ---- */

static void raise_interrupt(struct virtio_mmio *m, uint32_t bit)
{
	pthread_mutex_lock(&m->irq_lock);
	m->interrupt_status |= bit;
	if (!m->irq_level) {
		m->irq_level = 1;
		if (m->set_irq)
			m->set_irq(m->irq_opaque, 1);
	}
	pthread_mutex_unlock(&m->irq_lock);
}

static void ack_interrupt(struct virtio_mmio *m, uint32_t bits)
{
	pthread_mutex_lock(&m->irq_lock);
	m->interrupt_status &= ~bits;
	if (m->interrupt_status == 0 && m->irq_level) {
		m->irq_level = 0;
		if (m->set_irq)
			m->set_irq(m->irq_opaque, 0);
	}
	pthread_mutex_unlock(&m->irq_lock);
}

static void mmio_notify_queue(void *transport, unsigned qidx, uint16_t vector)
{
	(void)qidx;
	(void)vector;
	raise_interrupt(transport, VIRTIO_MMIO_INT_VRING);
}

static void mmio_notify_config(void *transport, uint16_t vector)
{
	(void)vector;
	raise_interrupt(transport, VIRTIO_MMIO_INT_CONFIG);
}

static const struct virtio_transport_ops mmio_transport_ops = {
	.notify_queue = mmio_notify_queue,
	.notify_config = mmio_notify_config,
};

int virtio_mmio_init(struct virtio_mmio *m, struct virtio_device *dev,
		     bool legacy, virtio_mmio_irq_fn set_irq, void *irq_opaque)
{
	memset(m, 0, sizeof(*m));
	m->dev = dev;
	m->legacy = legacy;
	m->set_irq = set_irq;
	m->irq_opaque = irq_opaque;
	pthread_mutex_init(&m->lock, NULL);
	pthread_mutex_init(&m->irq_lock, NULL);
	dev->legacy = legacy;
	if (legacy) {
		/* A legacy device offers no bits above 31 (VERSION_1, packed
		 * rings, ...): §4.2.4 has one 32-bit feature word that
		 * matters. */
		dev->device_features &= 0xffffffffull;
	}
	virtio_device_set_transport(dev, &mmio_transport_ops, m);
	return 0;
}

/* ---- reads ---- */

static uint32_t read_register(struct virtio_mmio *m, uint64_t off)
{
	struct virtio_device *dev = m->dev;
	struct virtq *q;
	uint32_t v = 0;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC; /* §4.2.2.1 */
	case VIRTIO_MMIO_VERSION:
		return m->legacy ? 1 : 2; /* §4.2.2.1, §4.2.4 */
	case VIRTIO_MMIO_DEVICE_ID:
		return dev->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return dev->vendor_id;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		pthread_mutex_lock(&m->lock);
		v = virtio_device_features_word(dev, m->device_features_sel);
		pthread_mutex_unlock(&m->lock);
		return v;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		pthread_mutex_lock(&m->lock);
		q = selected_queue(m);
		v = q ? q->max_size : 0; /* 0: queue not available */
		pthread_mutex_unlock(&m->lock);
		return v;
	case VIRTIO_MMIO_QUEUE_READY:
		if (m->legacy)
			return 0;
		pthread_mutex_lock(&m->lock);
		q = selected_queue(m);
		v = q && q->ready;
		pthread_mutex_unlock(&m->lock);
		return v;
	case VIRTIO_MMIO_QUEUE_PFN:
		if (!m->legacy)
			return 0;
		pthread_mutex_lock(&m->lock);
		q = selected_queue(m);
		v = q && q->ready ? m->queue_pfn[m->queue_sel] : 0;
		pthread_mutex_unlock(&m->lock);
		return v;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		pthread_mutex_lock(&m->irq_lock);
		v = m->interrupt_status;
		pthread_mutex_unlock(&m->irq_lock);
		return v;
	case VIRTIO_MMIO_STATUS:
		return virtio_get_status(dev);
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return m->legacy ? 0 : virtio_config_generation(dev);
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		/* §4.2.2: no shared memory regions: length -1, base ~0. */
		return m->legacy ? 0 : 0xffffffffu;
	default:
		return 0; /* write-only or undefined: reads as 0 */
	}
}

void virtio_mmio_read(void *opaque, uint64_t offset, unsigned size,
		      uint64_t *value)
{
	struct virtio_mmio *m = opaque;

	if (offset >= VIRTIO_MMIO_CONFIG) {
		uint64_t v = 0;

		/* §4.2.2: config is byte-accessible; out of range reads 0. */
		if (size <= sizeof(v))
			virtio_config_read(m->dev,
					   (uint32_t)(offset - VIRTIO_MMIO_CONFIG),
					   &v, size);
		*value = v;
		return;
	}
	/* §4.2.2.2: control registers are 32-bit and aligned; anything else
	 * reads as 0. */
	if (size != 4 || (offset & 3)) {
		*value = 0;
		return;
	}
	*value = read_register(m, offset);
}

/* ---- writes ---- */

static void set_addr_half(uint64_t *addr, uint32_t v, bool high)
{
	if (high)
		*addr = (*addr & 0xffffffffull) | ((uint64_t)v << 32);
	else
		*addr = (*addr & ~0xffffffffull) | v;
}

/* §4.2.4: legacy queues are placed by page number, with the used ring
 * aligned to QueueAlign (§2.7.2 layout). */
static void legacy_set_pfn(struct virtio_mmio *m, uint32_t pfn)
{
	struct virtio_device *dev = m->dev;
	unsigned qidx = m->queue_sel;
	struct virtq *q = selected_queue(m);
	uint64_t page = m->guest_page_size, align;
	uint64_t avail_end;

	/* QueueSel is the guest's: index nothing before it is checked. */
	if (!q)
		return;
	align = m->queue_align[qidx];
	if (pfn == 0) {
		virtio_queue_disable(dev, qidx);
		m->queue_pfn[qidx] = 0;
		return;
	}
	if (q->ready)
		return;
	if (page == 0 || (page & (page - 1)) || align == 0 ||
	    (align & (align - 1))) {
		virtio_device_needs_reset(dev, "legacy queue: bad page size "
					       "or alignment");
		return;
	}
	q->desc_addr = (uint64_t)pfn * page;
	q->driver_addr = q->desc_addr + 16ull * q->size;
	avail_end = q->driver_addr + 6 + 2ull * q->size;
	q->device_addr = (avail_end + align - 1) & ~(align - 1);
	if (virtio_queue_enable(dev, qidx) == 0)
		m->queue_pfn[qidx] = pfn;
}

static void write_register(struct virtio_mmio *m, uint64_t off, uint32_t v)
{
	struct virtio_device *dev = m->dev;
	struct virtq *q;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		m->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (m->legacy && m->driver_features_sel != 0)
			break;
		virtio_driver_features_write_word(dev, m->driver_features_sel,
						  v);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		m->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_GUEST_PAGE_SIZE:
		if (m->legacy)
			m->guest_page_size = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		m->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		q = selected_queue(m);
		/* §4.2.2.2: not while the queue is live; a size above 32768
		 * is kept as 0 so enabling fails. */
		if (q && !q->ready)
			q->size = v <= VIRTQ_MAX_SIZE ? (uint16_t)v : 0;
		break;
	case VIRTIO_MMIO_QUEUE_ALIGN:
		if (m->legacy && m->queue_sel < VIRTIO_MAX_QUEUES)
			m->queue_align[m->queue_sel] = v;
		break;
	case VIRTIO_MMIO_QUEUE_PFN:
		if (m->legacy)
			legacy_set_pfn(m, v);
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		q = selected_queue(m);
		if (m->legacy || !q)
			break;
		if (v == 1 && !q->ready)
			virtio_queue_enable(dev, m->queue_sel);
		else if (v == 0)
			virtio_queue_disable(dev, m->queue_sel);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* No VIRTIO_F_NOTIFICATION_DATA: the value is the index. */
		virtio_queue_kick(dev, v & 0xffff);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		ack_interrupt(m, v);
		break;
	case VIRTIO_MMIO_STATUS:
		virtio_set_status(dev, (uint8_t)v);
		if ((uint8_t)v == 0) {
			/* §4.2.2.1: reset clears InterruptStatus and every
			 * QueueReady (the core did the queues); §4.2.4:
			 * legacy QueuePFN reads 0. */
			ack_interrupt(m, 0xffffffffu);
			memset(m->queue_pfn, 0, sizeof(m->queue_pfn));
		}
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		q = selected_queue(m);
		if (m->legacy || !q || q->ready)
			break;
		if (off < VIRTIO_MMIO_QUEUE_DRIVER_LOW)
			set_addr_half(&q->desc_addr, v,
				      off == VIRTIO_MMIO_QUEUE_DESC_HIGH);
		else if (off < VIRTIO_MMIO_QUEUE_DEVICE_LOW)
			set_addr_half(&q->driver_addr, v,
				      off == VIRTIO_MMIO_QUEUE_DRIVER_HIGH);
		else
			set_addr_half(&q->device_addr, v,
				      off == VIRTIO_MMIO_QUEUE_DEVICE_HIGH);
		break;
	default:
		break; /* read-only or undefined: ignored */
	}
}

void virtio_mmio_write(void *opaque, uint64_t offset, unsigned size,
		       uint64_t value)
{
	struct virtio_mmio *m = opaque;

	if (offset >= VIRTIO_MMIO_CONFIG) {
		if (size <= sizeof(value))
			virtio_config_write(m->dev,
					    (uint32_t)(offset - VIRTIO_MMIO_CONFIG),
					    &value, size);
		return;
	}
	if (size != 4 || (offset & 3))
		return;
	/* m->lock orders register latches against each other; the core has
	 * its own locking, and never calls back into us while holding it
	 * except through the interrupt path (irq_lock). */
	pthread_mutex_lock(&m->lock);
	write_register(m, offset, (uint32_t)value);
	pthread_mutex_unlock(&m->lock);
}

const struct bus_ops virtio_mmio_bus_ops = {
	.read = virtio_mmio_read,
	.write = virtio_mmio_write,
};
