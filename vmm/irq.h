/* Interrupt plumbing on KVM: the GSI routing table, MSI vectors (one GSI
 * and one irqfd each), level-triggered lines (irqfd with resample) and
 * ioeventfds.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so the router keeps the
 * full table and always includes the in-kernel irqchip routes the VM had
 * by default: GSI 0-15 to the PIC pins and the IOAPIC pins, GSI 16-23 to
 * the IOAPIC only -- except that GSI 0 (the PIT) drives IOAPIC pin 2, as
 * the MADT interrupt source override and the MP table say, and GSI 2
 * (the PIC cascade) has no route.  MSI GSIs are allocated from 24 up.
 *
 * A level line is an irqfd with KVM_IRQFD_FLAG_RESAMPLE: raising it
 * signals the trigger eventfd; KVM keeps the GSI asserted until the guest
 * EOIs it, then signals the resample eventfd, and the router's resample
 * thread re-triggers the line if the device still holds it high.
 *
 * Thread-safe: every call may come from any thread. */
#ifndef KITE_VMM_IRQ_H
#define KITE_VMM_IRQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/pci.h"

#define IRQ_IOAPIC_PINS   24     /* in-kernel IOAPIC: GSI 0-23 */
#define IRQ_FIRST_MSI_GSI 24
#define IRQ_MAX_GSI       1024   /* KVM_MAX_IRQ_ROUTES on x86 is 4096+ */

struct kvm_irq_routing_entry;
struct irq_line;

struct irq_router {
	int vm_fd;
	pthread_mutex_t lock;
	struct kvm_irq_routing_entry *routes;
	unsigned nr_routes, cap_routes;
	uint8_t gsi_used[IRQ_MAX_GSI / 8];
	/* resample thread for level lines */
	int epoll_fd, stop_fd;
	pthread_t thread;
	bool thread_running;
	struct irq_line *lines;
};

/* Install the default irqchip routes with KVM_SET_GSI_ROUTING. */
int irq_router_init(struct irq_router *r, int vm_fd);
void irq_router_destroy(struct irq_router *r);

/* MSI: a fresh GSI >= 24 with an irqfd; route it, then signal it. */
struct irq_msi;
int irq_msi_create(struct irq_router *r, struct irq_msi **out);
int irq_msi_route(struct irq_msi *m, uint64_t addr, uint32_t data);
void irq_msi_signal(struct irq_msi *m);
void irq_msi_free(struct irq_msi *m);

/* A level-triggered line on an IOAPIC GSI (< 24). */
int irq_line_create(struct irq_router *r, unsigned gsi, struct irq_line **out);
void irq_line_set(struct irq_line *l, int level);

/* KVM_IOEVENTFD; |len| 0 = any length, |datamatch| < 0 = none. */
int irq_ioeventfd(struct irq_router *r, bool assign, bool pio, uint64_t addr,
		  unsigned len, int64_t datamatch, int fd);

/* The PCI host's platform hooks on this router (opaque = the router). */
extern const struct pci_platform_ops irq_pci_platform_ops;

#endif
