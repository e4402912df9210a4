/* The virtual machine: KVM file descriptors, guest memory, the two buses,
 * the vCPUs, and how the VM ends.
 *
 * vm_create() builds everything from a struct vm_config; vm_run() starts
 * the vCPU threads and waits until something calls vm_request_stop(). */
#ifndef KITE_VMM_VM_H
#define KITE_VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/config.h"
#include "vmm/memory.h"

struct vcpu;

/* kite's exit statuses (documented in kite-run(1)).  Debug-exit statuses
 * are odd, (v << 1) | 1; kite's own are even so the two never collide. */
#define VM_EXIT_OK            0 /* guest powered off or rebooted; Ctrl-A x */
#define VM_EXIT_USAGE         2 /* bad option, value or input file */
#define VM_EXIT_FAILURE       4 /* KVM error, unhandled exit, emulation failure */
#define VM_EXIT_TRIPLE_FAULT  6 /* the guest CPU reset itself by a triple fault */
#define VM_EXIT_GUEST_PANIC   8 /* the guest kernel panicked (seen on its console) */
struct serial_port;
struct x86_platform;
struct rtc;
struct pm_device;
struct ksyms;
struct vm_devices;
struct console_watch;
struct guest_profile;

/* Why the VM stopped; decides kite's exit status (see kite-run(1)). */
enum vm_stop_reason {
	VM_STOP_NONE = 0,
	VM_STOP_DEBUG_EXIT,  /* guest wrote v to port 0xF4: status (v<<1)|1 */
	VM_STOP_POWEROFF,    /* guest powered off: status 0 */
	VM_STOP_RESET,       /* guest reset (i8042, 0xCF9, triple fault) */
	VM_STOP_USER,        /* Ctrl-A x, SIGINT/SIGTERM */
	VM_STOP_ERROR,       /* internal or emulation error */
	VM_STOP_PANIC,       /* guest kernel panic on the console */
};

struct vm {
	const struct vm_config *cfg;
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	struct guest_memory mem;
	struct bus pio;
	struct bus mmio;
	struct vcpu **vcpus;
	unsigned nr_vcpus;

	struct serial_port *serial[VM_CONFIG_MAX_SERIAL];
	struct x86_platform *platform;
	struct rtc *rtc;
	struct pm_device *pm;
	struct ksyms *ksyms;             /* guest kernel symbols, or NULL */
	struct vm_devices *devices;      /* PCI host, IRQ routing, virtio */
	struct console_watch *hvc_watch; /* --console virtio: hvc0 output */
	struct guest_profile *profile;   /* KITE_PROFILE set, else NULL */
	int kernel_format;               /* enum x86_kernel_format */
	bool pvm_profile;                /* Linux guest on a PVM host */
	bool reached_init;               /* console said "Run /init" */
	bool panic_pending;              /* console said "Kernel panic" */

	pthread_mutex_t stop_lock;
	int stop_fd;                     /* eventfd: wakes the event loop */
	enum vm_stop_reason stop_reason; /* first reason wins */
	int exit_status;                 /* kite's exit status */
	atomic_bool stopping;
	bool bad_input;                  /* vm_create failed on a user input */
};

/* Build the VM; on failure returns -errno with a one-line reason naming
 * the object in |err|.  vm_destroy() is safe after a failed vm_create(). */
int vm_create(struct vm *vm, const struct vm_config *cfg, char *err,
	      size_t errlen);
/* --console virtio: the guest's hvc0 output (port 0 of the virtio
 * console; |vm| is the struct vm).  Writes it to stdout and watches it
 * for the kernel messages kite acts on, like COM1's.  Called from the
 * console's queue thread and vCPU threads, never concurrently. */
void vm_console_output(void *vm, const uint8_t *buf, size_t len);
/* Run until stopped; returns kite's exit status. */
int vm_run(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Ask the VM to stop.  The first caller decides reason and status; later
 * calls are ignored.  Safe from any thread, including vCPU threads. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int status,
		     const char *message);

/* Drive an interrupt line of the in-kernel irqchip (level 0/1). */
int vm_irq_line(struct vm *vm, unsigned gsi, int level);

#endif
