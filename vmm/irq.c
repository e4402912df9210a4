/* GSI routing, MSI irqfds, resampling level lines and ioeventfds on KVM.
 * See irq.h. */
#include "vmm/irq.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/log.h"

struct irq_msi {
	struct irq_router *r;
	unsigned gsi;
	int fd;
};

struct irq_line {
	struct irq_line *next;
	struct irq_router *r;
	unsigned gsi;
	int trigger_fd, resample_fd;  /* -1/-1: KVM_IRQ_LINE fallback */
	int level;                    /* what the device asks; atomic */
};

static bool gsi_test(const struct irq_router *r, unsigned gsi)
{
	return r->gsi_used[gsi / 8] >> (gsi % 8) & 1;
}

static void gsi_mark(struct irq_router *r, unsigned gsi, bool used)
{
	if (used)
		r->gsi_used[gsi / 8] |= (uint8_t)(1u << (gsi % 8));
	else
		r->gsi_used[gsi / 8] &= (uint8_t)~(1u << (gsi % 8));
}

/* Append a route; lock held (or single-threaded init). */
static int route_add(struct irq_router *r,
		     const struct kvm_irq_routing_entry *e)
{
	if (r->nr_routes == r->cap_routes) {
		unsigned cap = r->cap_routes ? r->cap_routes * 2 : 64;
		struct kvm_irq_routing_entry *n =
			realloc(r->routes, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		r->routes = n;
		r->cap_routes = cap;
	}
	r->routes[r->nr_routes++] = *e;
	return 0;
}

static int routes_commit(struct irq_router *r)
{
	size_t sz = sizeof(struct kvm_irq_routing) +
		    r->nr_routes * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *t = calloc(1, sz);
	int rc = 0;

	if (!t)
		return -ENOMEM;
	t->nr = r->nr_routes;
	memcpy(t->entries, r->routes,
	       r->nr_routes * sizeof(struct kvm_irq_routing_entry));
	if (ioctl(r->vm_fd, KVM_SET_GSI_ROUTING, t) < 0)
		rc = -errno;
	free(t);
	return rc;
}

static int add_irqchip_route(struct irq_router *r, unsigned gsi,
			     unsigned chip, unsigned pin)
{
	struct kvm_irq_routing_entry e = {
		.gsi = gsi,
		.type = KVM_IRQ_ROUTING_IRQCHIP,
		.u.irqchip = { .irqchip = chip, .pin = pin },
	};

	return route_add(r, &e);
}

static void *resample_thread(void *arg);

int irq_router_init(struct irq_router *r, int vm_fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int rc = 0;

	memset(r, 0, sizeof(*r));
	r->vm_fd = vm_fd;
	r->epoll_fd = r->stop_fd = -1;
	pthread_mutex_init(&r->lock, NULL);
	for (unsigned gsi = 0; gsi < IRQ_IOAPIC_PINS && !rc; gsi++) {
		gsi_mark(r, gsi, true);
		if (gsi == 2)
			continue; /* PIC cascade; IOAPIC pin 2 is GSI 0's */
		if (gsi < 16)
			rc = add_irqchip_route(r, gsi,
					       gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
						       : KVM_IRQCHIP_PIC_SLAVE,
					       gsi % 8);
		if (!rc)
			rc = add_irqchip_route(r, gsi, KVM_IRQCHIP_IOAPIC,
					       gsi == 0 ? 2 : gsi);
	}
	if (!rc)
		rc = routes_commit(r);
	if (rc)
		return rc;
	r->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->epoll_fd < 0 || r->stop_fd < 0)
		return -errno;
	if (epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, r->stop_fd, &ev) < 0)
		return -errno;
	return 0;
}

static void line_free(struct irq_line *l)
{
	if (l->trigger_fd >= 0) {
		struct kvm_irqfd fd = { .fd = (uint32_t)l->trigger_fd,
					.gsi = l->gsi,
					.flags = KVM_IRQFD_FLAG_DEASSIGN };

		ioctl(l->r->vm_fd, KVM_IRQFD, &fd);
		close(l->trigger_fd);
	}
	if (l->resample_fd >= 0)
		close(l->resample_fd);
	free(l);
}

void irq_router_destroy(struct irq_router *r)
{
	if (r->thread_running) {
		uint64_t one = 1;

		if (write(r->stop_fd, &one, sizeof(one)) < 0) {
			/* cannot fail for a fresh counter */
		}
		pthread_join(r->thread, NULL);
		r->thread_running = false;
	}
	while (r->lines) {
		struct irq_line *l = r->lines;

		r->lines = l->next;
		line_free(l);
	}
	if (r->epoll_fd >= 0)
		close(r->epoll_fd);
	if (r->stop_fd >= 0)
		close(r->stop_fd);
	r->epoll_fd = r->stop_fd = -1;
	free(r->routes);
	r->routes = NULL;
	r->nr_routes = r->cap_routes = 0;
	pthread_mutex_destroy(&r->lock);
}

/* ---- MSI ---------------------------------------------------------------- */

int irq_msi_create(struct irq_router *r, struct irq_msi **out)
{
	struct irq_msi *m = calloc(1, sizeof(*m));
	struct kvm_irqfd irqfd = { 0 };
	unsigned gsi;
	int rc;

	if (!m)
		return -ENOMEM;
	pthread_mutex_lock(&r->lock);
	for (gsi = IRQ_FIRST_MSI_GSI; gsi < IRQ_MAX_GSI && gsi_test(r, gsi);
	     gsi++)
		;
	if (gsi == IRQ_MAX_GSI) {
		pthread_mutex_unlock(&r->lock);
		free(m);
		return -ENOSPC;
	}
	gsi_mark(r, gsi, true);
	pthread_mutex_unlock(&r->lock);
	m->r = r;
	m->gsi = gsi;
	m->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->fd < 0) {
		rc = -errno;
		goto fail;
	}
	/* The irqfd exists before its route; it is signalled only after
	 * irq_msi_route() gave it one (the PCI host routes first). */
	irqfd.fd = (uint32_t)m->fd;
	irqfd.gsi = gsi;
	if (ioctl(r->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		rc = -errno;
		goto fail;
	}
	*out = m;
	return 0;
fail:
	if (m->fd >= 0)
		close(m->fd);
	pthread_mutex_lock(&r->lock);
	gsi_mark(r, gsi, false);
	pthread_mutex_unlock(&r->lock);
	free(m);
	return rc;
}

int irq_msi_route(struct irq_msi *m, uint64_t addr, uint32_t data)
{
	struct irq_router *r = m->r;
	struct kvm_irq_routing_entry e = {
		.gsi = m->gsi,
		.type = KVM_IRQ_ROUTING_MSI,
		.u.msi = { .address_lo = (uint32_t)addr,
			   .address_hi = (uint32_t)(addr >> 32),
			   .data = data },
	};
	unsigned i;
	int rc;

	pthread_mutex_lock(&r->lock);
	for (i = 0; i < r->nr_routes; i++)
		if (r->routes[i].gsi == m->gsi)
			break;
	if (i < r->nr_routes) {
		r->routes[i] = e;
		rc = 0;
	} else {
		rc = route_add(r, &e);
	}
	if (!rc)
		rc = routes_commit(r);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void irq_msi_signal(struct irq_msi *m)
{
	uint64_t one = 1;

	if (write(m->fd, &one, sizeof(one)) < 0) {
		/* only on counter saturation: the interrupt is pending */
	}
}

void irq_msi_free(struct irq_msi *m)
{
	struct irq_router *r = m->r;
	struct kvm_irqfd irqfd = { .fd = (uint32_t)m->fd, .gsi = m->gsi,
				   .flags = KVM_IRQFD_FLAG_DEASSIGN };

	ioctl(r->vm_fd, KVM_IRQFD, &irqfd);
	close(m->fd);
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->nr_routes; i++) {
		if (r->routes[i].gsi == m->gsi) {
			r->routes[i] = r->routes[--r->nr_routes];
			break;
		}
	}
	gsi_mark(r, m->gsi, false);
	pthread_mutex_unlock(&r->lock);
	free(m);
}

/* ---- level lines ---------------------------------------------------------- */

static void line_trigger(struct irq_line *l)
{
	uint64_t one = 1;

	if (write(l->trigger_fd, &one, sizeof(one)) < 0) {
		/* counter saturation only */
	}
}

static void *resample_thread(void *arg)
{
	struct irq_router *r = arg;

	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(r->epoll_fd, evs, 16, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			kite_error("irq: epoll_wait: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			struct irq_line *l = evs[i].data.ptr;
			uint64_t v;

			if (!l)
				return NULL; /* stop_fd */
			if (read(l->resample_fd, &v, sizeof(v)) < 0)
				continue;
			/* KVM lowered the line at the guest's EOI; a device
			 * that still wants it high raises it again. */
			if (__atomic_load_n(&l->level, __ATOMIC_ACQUIRE))
				line_trigger(l);
		}
	}
}

int irq_line_create(struct irq_router *r, unsigned gsi, struct irq_line **out)
{
	struct irq_line *l = calloc(1, sizeof(*l));
	struct kvm_irqfd irqfd = { 0 };
	struct epoll_event ev = { .events = EPOLLIN };
	int rc = 0;

	if (!l)
		return -ENOMEM;
	if (gsi >= IRQ_IOAPIC_PINS) {
		free(l);
		return -EINVAL;
	}
	l->r = r;
	l->gsi = gsi;
	l->trigger_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	l->resample_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->trigger_fd < 0 || l->resample_fd < 0) {
		rc = -errno;
		goto fail;
	}
	irqfd.fd = (uint32_t)l->trigger_fd;
	irqfd.gsi = gsi;
	irqfd.flags = KVM_IRQFD_FLAG_RESAMPLE;
	irqfd.resamplefd = (uint32_t)l->resample_fd;
	if (ioctl(r->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		/* No resampling irqfds: fall back to KVM_IRQ_LINE. */
		kite_info("irq: GSI %u: KVM_IRQFD resample: %s; using "
			   "KVM_IRQ_LINE", gsi, strerror(errno));
		close(l->trigger_fd);
		close(l->resample_fd);
		l->trigger_fd = l->resample_fd = -1;
	} else {
		ev.data.ptr = l;
		if (epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, l->resample_fd,
			      &ev) < 0) {
			rc = -errno;
			goto fail;
		}
	}
	pthread_mutex_lock(&r->lock);
	l->next = r->lines;
	r->lines = l;
	if (!r->thread_running && l->resample_fd >= 0) {
		rc = -pthread_create(&r->thread, NULL, resample_thread, r);
		r->thread_running = rc == 0;
	}
	pthread_mutex_unlock(&r->lock);
	*out = l;
	return rc;
fail:
	if (l->trigger_fd >= 0)
		close(l->trigger_fd);
	if (l->resample_fd >= 0)
		close(l->resample_fd);
	free(l);
	return rc;
}

void irq_line_set(struct irq_line *l, int level)
{
	level = level ? 1 : 0;
	__atomic_store_n(&l->level, level, __ATOMIC_RELEASE);
	if (l->trigger_fd < 0) {
		struct kvm_irq_level irq = { .irq = l->gsi,
					     .level = (uint32_t)level };

		ioctl(l->r->vm_fd, KVM_IRQ_LINE, &irq);
		return;
	}
	/* Lowering needs nothing: KVM lowers the line at EOI and the
	 * resample thread then sees level 0. */
	if (level)
		line_trigger(l);
}

/* ---- ioeventfd ------------------------------------------------------------ */

int irq_ioeventfd(struct irq_router *r, bool assign, bool pio, uint64_t addr,
		  unsigned len, int64_t datamatch, int fd)
{
	struct kvm_ioeventfd e = {
		.addr = addr,
		.len = len,
		.fd = fd,
	};

	if (pio)
		e.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (datamatch >= 0) {
		e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
		e.datamatch = (uint64_t)datamatch;
	}
	if (!assign)
		e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return ioctl(r->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

/* ---- PCI host hooks --------------------------------------------------------- */

static int pci_msi_alloc(void *opaque, void **handle)
{
	return irq_msi_create(opaque, (struct irq_msi **)handle);
}

static int pci_msi_route(void *opaque, void *handle, uint64_t addr,
			 uint32_t data)
{
	(void)opaque;
	return irq_msi_route(handle, addr, data);
}

static void pci_msi_signal(void *opaque, void *handle)
{
	(void)opaque;
	irq_msi_signal(handle);
}

static void pci_msi_free(void *opaque, void *handle)
{
	(void)opaque;
	irq_msi_free(handle);
}

static int pci_intx_alloc(void *opaque, unsigned gsi, void **handle)
{
	return irq_line_create(opaque, gsi, (struct irq_line **)handle);
}

static void pci_intx_set_level(void *opaque, void *handle, int level)
{
	(void)opaque;
	irq_line_set(handle, level);
}

static void pci_intx_free(void *opaque, void *handle)
{
	/* Lines live until the router goes (resample thread safety). */
	(void)opaque;
	(void)handle;
}

static int pci_ioeventfd(void *opaque, bool assign, bool pio, uint64_t addr,
			 unsigned len, int64_t datamatch, int fd)
{
	return irq_ioeventfd(opaque, assign, pio, addr, len, datamatch, fd);
}

const struct pci_platform_ops irq_pci_platform_ops = {
	.msi_alloc = pci_msi_alloc,
	.msi_route = pci_msi_route,
	.msi_signal = pci_msi_signal,
	.msi_free = pci_msi_free,
	.intx_alloc = pci_intx_alloc,
	.intx_set_level = pci_intx_set_level,
	.intx_free = pci_intx_free,
	.ioeventfd = pci_ioeventfd,
};
