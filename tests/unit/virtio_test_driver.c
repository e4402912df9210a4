/* The unit tests' virtio driver; see virtio_test_driver.h. */
#include "tests/unit/virtio_test_driver.h"

#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static inline uint16_t ld16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static inline void st16(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}

int vtd_init(struct vtd *drv)
{
	int err;

	memset(drv, 0, sizeof(*drv));
	err = guest_memory_create(&drv->mem, VTD_RAM_SIZE, NULL);
	if (err)
		return err;
	drv->next_free = 0x10000;
	pthread_mutex_init(&drv->lock, NULL);
	pthread_cond_init(&drv->cond, NULL);
	return 0;
}

void vtd_destroy(struct vtd *drv)
{
	guest_memory_destroy(&drv->mem);
}

uint64_t vtd_alloc(struct vtd *drv, uint64_t size, uint64_t align)
{
	uint64_t gpa = (drv->next_free + align - 1) & ~(align - 1);
	void *p;

	if (gpa + size > VTD_RAM_SIZE)
		return 0;
	drv->next_free = gpa + size;
	if (guest_memory_translate(&drv->mem, gpa, size, &p))
		return 0;
	memset(p, 0, size);
	return gpa;
}

void *vtd_ptr(struct vtd *drv, uint64_t gpa, uint64_t len)
{
	void *p;

	return guest_memory_translate(&drv->mem, gpa, len, &p) ? NULL : p;
}

/* ---- the direct transport ---- */

static void vtd_notify_queue(void *transport, unsigned qidx, uint16_t vector)
{
	struct vtd *drv = transport;

	pthread_mutex_lock(&drv->lock);
	if (qidx < VIRTIO_MAX_QUEUES)
		drv->queue_irqs[qidx]++;
	drv->last_vector = vector;
	pthread_cond_broadcast(&drv->cond);
	pthread_mutex_unlock(&drv->lock);
}

static void vtd_notify_config(void *transport, uint16_t vector)
{
	struct vtd *drv = transport;

	pthread_mutex_lock(&drv->lock);
	drv->config_irqs++;
	drv->last_vector = vector;
	pthread_cond_broadcast(&drv->cond);
	pthread_mutex_unlock(&drv->lock);
}

const struct virtio_transport_ops vtd_transport_ops = {
	.notify_queue = vtd_notify_queue,
	.notify_config = vtd_notify_config,
};

void vtd_attach(struct vtd *drv, struct virtio_device *dev)
{
	drv->dev = dev;
	virtio_device_set_transport(dev, &vtd_transport_ops, drv);
}

int vtd_negotiate(struct vtd *drv, uint64_t features)
{
	struct virtio_device *dev = drv->dev;
	uint8_t s;

	virtio_set_status(dev, 0);
	virtio_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_driver_features_write_word(dev, 0, (uint32_t)features);
	virtio_driver_features_write_word(dev, 1, (uint32_t)(features >> 32));
	virtio_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_FEATURES_OK);
	s = virtio_get_status(dev);
	return (s & VIRTIO_STATUS_FEATURES_OK) ? 0 : -EINVAL;
}

int vtd_setup_queue(struct vtd *drv, unsigned qidx, struct vtd_vq *vq)
{
	struct virtq *q;

	if (qidx >= drv->dev->nr_queues)
		return -EINVAL;
	q = &drv->dev->queues[qidx];
	q->size = vq->size;
	q->desc_addr = vq->desc;
	q->driver_addr = vq->driver;
	q->device_addr = vq->device;
	return virtio_queue_enable(drv->dev, qidx);
}

int vtd_driver_ok(struct vtd *drv)
{
	uint8_t s = virtio_get_status(drv->dev);

	return virtio_set_status(drv->dev, s | VIRTIO_STATUS_DRIVER_OK);
}

void vtd_kick(struct vtd *drv, unsigned qidx)
{
	virtio_queue_kick(drv->dev, qidx);
	virtio_device_sync(drv->dev);
}

unsigned vtd_queue_irqs(struct vtd *drv, unsigned qidx)
{
	unsigned n;

	pthread_mutex_lock(&drv->lock);
	n = qidx < VIRTIO_MAX_QUEUES ? drv->queue_irqs[qidx] : 0;
	pthread_mutex_unlock(&drv->lock);
	return n;
}

unsigned vtd_config_irqs(struct vtd *drv)
{
	unsigned n;

	pthread_mutex_lock(&drv->lock);
	n = drv->config_irqs;
	pthread_mutex_unlock(&drv->lock);
	return n;
}

/* ---- rings ---- */

int vtd_vq_init(struct vtd_vq *vq, struct vtd *drv, uint16_t size,
		bool packed, bool event_idx)
{
	unsigned i;

	memset(vq, 0, sizeof(*vq));
	vq->drv = drv;
	vq->packed = packed;
	vq->event_idx = event_idx;
	vq->size = size;
	vq->desc = vtd_alloc(drv, virtq_desc_area_size(size, packed), 16);
	vq->driver = vtd_alloc(drv, virtq_driver_area_size(size, packed), 4);
	vq->device = vtd_alloc(drv, virtq_device_area_size(size, packed), 4);
	vq->free_next = calloc(size, sizeof(uint16_t));
	vq->chain_len = calloc(size, sizeof(uint16_t));
	vq->id_busy = calloc(size, sizeof(bool));
	if (!vq->desc || !vq->driver || !vq->device || !vq->free_next ||
	    !vq->chain_len || !vq->id_busy) {
		vtd_vq_destroy(vq);
		return -ENOMEM;
	}
	for (i = 0; i < size; i++)
		vq->free_next[i] = (uint16_t)(i + 1);
	vq->free_head = 0;
	vq->num_free = size;
	vq->avail_wrap = vq->used_wrap = vq->kicked_wrap = true;
	return 0;
}

void vtd_vq_destroy(struct vtd_vq *vq)
{
	free(vq->free_next);
	free(vq->chain_len);
	free(vq->id_busy);
	vq->free_next = vq->chain_len = NULL;
	vq->id_busy = NULL;
}

static uint8_t *split_avail(struct vtd_vq *vq)
{
	return vtd_ptr(vq->drv, vq->driver, virtq_driver_area_size(vq->size, 0));
}

static uint8_t *split_used(struct vtd_vq *vq)
{
	return vtd_ptr(vq->drv, vq->device, virtq_device_area_size(vq->size, 0));
}

struct virtq_desc *vtd_split_desc(struct vtd_vq *vq, uint16_t i)
{
	struct virtq_desc *t = vtd_ptr(vq->drv, vq->desc, 16ull * vq->size);

	return &t[i % vq->size];
}

void vtd_split_publish(struct vtd_vq *vq, uint16_t head)
{
	uint8_t *avail = split_avail(vq);
	uint16_t v = head;

	memcpy(avail + 4 + 2 * (vq->avail_idx % vq->size), &v, 2);
	vq->avail_idx++;
	st16(avail + 2, vq->avail_idx); /* release: ring entry first */
}

uint16_t vtd_split_used_idx(struct vtd_vq *vq)
{
	return ld16(split_used(vq) + 2);
}

uint16_t vtd_split_used_flags(struct vtd_vq *vq)
{
	return ld16(split_used(vq));
}

uint16_t vtd_split_avail_event(struct vtd_vq *vq)
{
	return ld16(split_used(vq) + 4 + 8 * vq->size);
}

static int fill_indirect(struct vtd_vq *vq, const struct vtd_sg *sg,
			 unsigned n, uint64_t *table_gpa)
{
	uint64_t gpa = vtd_alloc(vq->drv, 16ull * n, 16);
	unsigned i;

	if (!gpa)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (vq->packed) {
			struct pvirtq_desc *t = vtd_ptr(vq->drv, gpa, 16ull * n);

			t[i] = (struct pvirtq_desc){
				.addr = sg[i].gpa, .len = sg[i].len,
				.flags = sg[i].write ? VIRTQ_DESC_F_WRITE : 0 };
		} else {
			struct virtq_desc *t = vtd_ptr(vq->drv, gpa, 16ull * n);

			t[i] = (struct virtq_desc){
				.addr = sg[i].gpa, .len = sg[i].len,
				.flags = (uint16_t)((sg[i].write ? VIRTQ_DESC_F_WRITE
								 : 0) |
					 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
				.next = (uint16_t)(i + 1) };
		}
	}
	*table_gpa = gpa;
	return 0;
}

static int split_add(struct vtd_vq *vq, const struct vtd_sg *sg, unsigned n,
		     bool indirect)
{
	unsigned need = indirect ? 1 : n, i;
	uint16_t head, idx, prev = 0;

	if (n == 0 || vq->num_free < need)
		return -ENOSPC;
	head = idx = vq->free_head;
	if (indirect) {
		uint64_t table;
		struct virtq_desc *d = vtd_split_desc(vq, idx);
		int err = fill_indirect(vq, sg, n, &table);

		if (err)
			return err;
		*d = (struct virtq_desc){ .addr = table, .len = 16 * n,
					  .flags = VIRTQ_DESC_F_INDIRECT };
		vq->free_head = vq->free_next[idx];
	} else {
		for (i = 0; i < n; i++) {
			struct virtq_desc *d = vtd_split_desc(vq, idx);

			*d = (struct virtq_desc){
				.addr = sg[i].gpa, .len = sg[i].len,
				.flags = sg[i].write ? VIRTQ_DESC_F_WRITE : 0 };
			if (i > 0) {
				struct virtq_desc *p = vtd_split_desc(vq, prev);

				p->flags |= VIRTQ_DESC_F_NEXT;
				p->next = idx;
			}
			prev = idx;
			idx = vq->free_next[idx];
		}
		vq->free_head = idx;
	}
	vq->num_free -= need;
	vq->chain_len[head] = (uint16_t)need;
	vtd_split_publish(vq, head);
	return head;
}

static int split_get_used(struct vtd_vq *vq, uint32_t *id, uint32_t *len)
{
	uint8_t *used = split_used(vq);
	struct virtq_used_elem e;
	uint16_t idx = ld16(used + 2), d, i;

	if (idx == vq->last_used)
		return 0;
	memcpy(&e, used + 4 + 8 * (vq->last_used % vq->size), sizeof(e));
	vq->last_used++;
	if (vq->event_idx) /* ask for the next one */
		vtd_vq_set_used_event(vq, vq->last_used);
	*id = e.id;
	*len = e.len;
	if (e.id >= vq->size)
		return -EINVAL;
	/* Return the chain to the free list. */
	d = (uint16_t)e.id;
	for (i = 1; i < vq->chain_len[e.id]; i++)
		d = vtd_split_desc(vq, d)->next;
	vq->free_next[d] = vq->free_head;
	vq->free_head = (uint16_t)e.id;
	vq->num_free += vq->chain_len[e.id];
	return 1;
}

struct pvirtq_desc *vtd_packed_desc(struct vtd_vq *vq, uint16_t i)
{
	struct pvirtq_desc *t = vtd_ptr(vq->drv, vq->desc, 16ull * vq->size);

	return &t[i % vq->size];
}

uint16_t vtd_packed_avail_flags(struct vtd_vq *vq)
{
	return vq->avail_wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;
}

uint16_t vtd_packed_device_event_flags(struct vtd_vq *vq)
{
	struct pvirtq_event_suppress *e = vtd_ptr(vq->drv, vq->device, 4);

	return ld16(&e->flags);
}

static int packed_add(struct vtd_vq *vq, const struct vtd_sg *sg, unsigned n,
		      bool indirect)
{
	unsigned need = indirect ? 1 : n, i;
	uint16_t id, first = vq->next_avail, first_flags = 0;

	if (n == 0 || vq->num_free < need)
		return -ENOSPC;
	for (id = 0; id < vq->size && vq->id_busy[id]; id++)
		;
	if (id == vq->size)
		return -ENOSPC;

	for (i = 0; i < need; i++) {
		struct pvirtq_desc *d = vtd_packed_desc(vq, vq->next_avail);
		uint16_t flags = vtd_packed_avail_flags(vq);

		if (indirect) {
			uint64_t table;
			int err = fill_indirect(vq, sg, n, &table);

			if (err)
				return err;
			d->addr = table;
			d->len = 16 * n;
			flags |= VIRTQ_DESC_F_INDIRECT;
		} else {
			d->addr = sg[i].gpa;
			d->len = sg[i].len;
			if (sg[i].write)
				flags |= VIRTQ_DESC_F_WRITE;
			if (i + 1 < need)
				flags |= VIRTQ_DESC_F_NEXT;
		}
		d->id = id;
		/* §2.8.6: the first descriptor goes live last. */
		if (i == 0)
			first_flags = flags;
		else
			st16(&d->flags, flags);
		if (++vq->next_avail == vq->size) {
			vq->next_avail = 0;
			vq->avail_wrap = !vq->avail_wrap;
		}
	}
	st16(&vtd_packed_desc(vq, first)->flags, first_flags);
	vq->id_busy[id] = true;
	vq->chain_len[id] = (uint16_t)need;
	vq->num_free -= need;
	return id;
}

static int packed_get_used(struct vtd_vq *vq, uint32_t *id, uint32_t *len)
{
	struct pvirtq_desc *d = vtd_packed_desc(vq, vq->next_used);
	uint16_t flags = ld16(&d->flags);
	bool avail = flags & VIRTQ_DESC_F_AVAIL, used = flags & VIRTQ_DESC_F_USED;
	unsigned skip;

	if (avail != vq->used_wrap || used != vq->used_wrap)
		return 0;
	*id = d->id;
	*len = d->len;
	if (d->id >= vq->size || !vq->id_busy[d->id])
		return -EINVAL;
	skip = vq->chain_len[d->id];
	vq->id_busy[d->id] = false;
	vq->num_free += skip;
	vq->next_used += skip;
	if (vq->next_used >= vq->size) {
		vq->next_used -= vq->size;
		vq->used_wrap = !vq->used_wrap;
	}
	return 1;
}

int vtd_vq_add(struct vtd_vq *vq, const struct vtd_sg *sg, unsigned n,
	       bool indirect)
{
	return vq->packed ? packed_add(vq, sg, n, indirect)
			  : split_add(vq, sg, n, indirect);
}

int vtd_vq_get_used(struct vtd_vq *vq, uint32_t *id, uint32_t *len)
{
	return vq->packed ? packed_get_used(vq, id, len)
			  : split_get_used(vq, id, len);
}

bool vtd_vq_should_kick(struct vtd_vq *vq)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vq->packed) {
		/* The device leaves RING_EVENT_FLAGS_ENABLE or DISABLE. */
		return vtd_packed_device_event_flags(vq) !=
		       RING_EVENT_FLAGS_DISABLE;
	}
	{
		uint16_t old = vq->kicked_avail, new_idx = vq->avail_idx;

		vq->kicked_avail = new_idx;
		if (vq->event_idx)
			return virtq_need_event(vtd_split_avail_event(vq),
						new_idx, old);
		return !(vtd_split_used_flags(vq) & VIRTQ_USED_F_NO_NOTIFY);
	}
}

void vtd_vq_mark_kicked(struct vtd_vq *vq)
{
	vq->kicked_avail = vq->avail_idx;
	vq->kicked_next_avail = vq->next_avail;
	vq->kicked_wrap = vq->avail_wrap;
}

void vtd_vq_suppress_interrupts(struct vtd_vq *vq, bool suppress)
{
	if (vq->packed) {
		struct pvirtq_event_suppress *e =
			vtd_ptr(vq->drv, vq->driver, 4);

		st16(&e->flags, suppress ? RING_EVENT_FLAGS_DISABLE
					 : RING_EVENT_FLAGS_ENABLE);
	} else {
		st16(split_avail(vq), suppress ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0);
	}
}

void vtd_vq_set_used_event(struct vtd_vq *vq, uint16_t used_event)
{
	st16(split_avail(vq) + 4 + 2 * vq->size, used_event);
}

void vtd_vq_set_packed_event(struct vtd_vq *vq, uint16_t off, bool wrap)
{
	struct pvirtq_event_suppress *e = vtd_ptr(vq->drv, vq->driver, 4);

	st16(&e->off_wrap, (uint16_t)(off | (wrap ? 0x8000 : 0)));
	st16(&e->flags, RING_EVENT_FLAGS_DESC);
}

/* ---- loopback device ---- */

static struct vtd_echo *to_echo(struct virtio_device *dev)
{
	return (struct vtd_echo *)((char *)dev -
				   offsetof(struct vtd_echo, vdev));
}

static void echo_get_config(struct virtio_device *dev, uint32_t offset,
			    void *buf, uint32_t len)
{
	memcpy(buf, to_echo(dev)->config + offset, len);
}

static void echo_set_config(struct virtio_device *dev, uint32_t offset,
			    const void *buf, uint32_t len)
{
	struct vtd_echo *e = to_echo(dev);
	uint32_t i;

	for (i = 0; i < len; i++)
		if (offset + i >= 8)
			e->config[offset + i] = ((const uint8_t *)buf)[i];
}

static int echo_validate(struct virtio_device *dev, uint64_t features)
{
	(void)dev;
	if ((features & VIRTIO_BIT(VTD_ECHO_F_NEEDS)) &&
	    !(features & VIRTIO_BIT(VTD_ECHO_F_BASE)))
		return -EINVAL;
	return 0;
}

/* Deferred mode: pop into held slots, return nothing. */
static void echo_defer(struct vtd_echo *e, unsigned qidx)
{
	while (e->nr_deferred < VTD_ECHO_MAX_DEFERRED) {
		struct virtq_elem **slot = &e->deferred[e->nr_deferred];

		if (!*slot && !(*slot = malloc(sizeof(**slot))))
			break;
		e->last_pop = virtio_queue_pop(&e->vdev, qidx, *slot);
		if (e->last_pop <= 0)
			break;
		e->deferred_q[e->nr_deferred++] = qidx;
		if (e->nr_deferred > e->deferred_peak)
			e->deferred_peak = e->nr_deferred;
	}
}

static void echo_queue_notify(struct virtio_device *dev, unsigned qidx)
{
	struct vtd_echo *e = to_echo(dev);
	bool pushed = false;

	__atomic_store_n(&e->in_notify, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&e->hold, __ATOMIC_SEQ_CST))
		sched_yield();
	e->notifies++;
	if (__atomic_load_n(&e->defer, __ATOMIC_SEQ_CST)) {
		echo_defer(e, qidx);
		__atomic_store_n(&e->in_notify, 0, __ATOMIC_SEQ_CST);
		return;
	}
	for (;;) {
		uint8_t buf[4096];
		size_t n, written = 0;

		e->last_pop = virtio_queue_pop(dev, qidx, &e->elem);
		if (e->last_pop <= 0)
			break;
		if (e->elem.readable_len == 0) {
			memset(buf, 0xEE, sizeof(buf));
			while (written < e->elem.writable_len) {
				n = virtq_elem_write(&e->elem, written, buf,
						     sizeof(buf));
				if (n == 0)
					break;
				written += n;
			}
		} else {
			size_t off = 0;

			while ((n = virtq_elem_read(&e->elem, off, buf,
						    sizeof(buf))) > 0) {
				written += virtq_elem_write(&e->elem, off, buf,
							    n);
				off += n;
			}
		}
		virtio_queue_push(dev, qidx, &e->elem, (uint32_t)written);
		e->handled++;
		pushed = true;
	}
	if (pushed)
		virtio_queue_notify_driver(dev, qidx);
	__atomic_store_n(&e->in_notify, 0, __ATOMIC_SEQ_CST);
}

static int echo_activate(struct virtio_device *dev)
{
	to_echo(dev)->activations++;
	return 0;
}

static void echo_reset(struct virtio_device *dev)
{
	to_echo(dev)->resets++;
	to_echo(dev)->nr_deferred = 0; /* §2.4: dropped, not returned */
}

static const struct virtio_device_ops echo_ops = {
	.get_config = echo_get_config,
	.set_config = echo_set_config,
	.validate_features = echo_validate,
	.queue_notify = echo_queue_notify,
	.activate = echo_activate,
	.reset = echo_reset,
};

int vtd_echo_init(struct vtd_echo *e, struct vtd *drv, unsigned nr_queues,
		  uint16_t queue_size)
{
	int err;

	memset(e, 0, sizeof(*e));
	err = virtio_device_init(&e->vdev, "echo", 0x7e57, &echo_ops, &drv->mem,
				 nr_queues, queue_size,
				 VIRTIO_BIT(VTD_ECHO_F_BASE) |
					 VIRTIO_BIT(VTD_ECHO_F_NEEDS),
				 VTD_ECHO_CONFIG_SIZE);
	if (err)
		return err;
	for (unsigned i = 0; i < VTD_ECHO_CONFIG_SIZE; i++)
		e->config[i] = (uint8_t)(0xC0 + i);
	vtd_attach(drv, &e->vdev);
	return virtio_device_start(&e->vdev);
}

void vtd_echo_destroy(struct vtd_echo *e)
{
	virtio_device_destroy(&e->vdev);
	for (unsigned i = 0; i < VTD_ECHO_MAX_DEFERRED; i++) {
		free(e->deferred[i]);
		e->deferred[i] = NULL;
	}
	e->nr_deferred = 0;
}

int vtd_echo_complete(struct vtd_echo *e, unsigned i)
{
	struct virtq_elem *elem;
	unsigned q, last;
	int ret = -ENOENT;

	pthread_mutex_lock(&e->vdev.loop.lock);
	if (i < e->nr_deferred) {
		elem = e->deferred[i];
		q = e->deferred_q[i];
		ret = virtio_queue_push(&e->vdev, q, elem, 0);
		if (ret == 0) {
			ret = elem->id;
			virtio_queue_notify_driver(&e->vdev, q);
		}
		/* Keep the allocation as a spare past the held ones. */
		last = --e->nr_deferred;
		e->deferred[i] = e->deferred[last];
		e->deferred_q[i] = e->deferred_q[last];
		e->deferred[last] = elem;
		e->handled++;
	}
	pthread_mutex_unlock(&e->vdev.loop.lock);
	return ret;
}

unsigned vtd_echo_nr_deferred(struct vtd_echo *e)
{
	unsigned n;

	pthread_mutex_lock(&e->vdev.loop.lock);
	n = e->nr_deferred;
	pthread_mutex_unlock(&e->vdev.loop.lock);
	return n;
}

void vtd_echo_change_config(struct vtd_echo *e, uint8_t value)
{
	e->config[0] = value;
	virtio_config_changed(&e->vdev);
}
