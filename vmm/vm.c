/* VM lifecycle: build from a vm_config, run the vCPUs, wait for the end.
 *
 * The main thread is the VM's event loop: it polls stdin (feeding COM1),
 * a signalfd (SIGINT/SIGTERM/SIGHUP) and an eventfd that vm_request_stop()
 * writes, so any thread can end the VM without racing the others. */
#include "vmm/vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "arch/x86/cpu.h"
#include "arch/x86/loader.h"
#include "arch/x86/platform.h"
#include "arch/x86/serial8250.h"
#include "vmm/kvm.h"
#include "vmm/log.h"
#include "vmm/term.h"
#include "vmm/vcpu.h"

/* KVM needs three pages for the TSS and one for the identity map on Intel;
 * put them just below the BIOS area at the top of the 32-bit space. */
#define KVM_TSS_GPA          0xFFFBD000ULL
#define KVM_IDENTITY_MAP_GPA 0xFFFBC000ULL

static const struct {
	uint16_t port;
	unsigned irq;
} com_ports[VM_CONFIG_MAX_SERIAL] = {
	{ 0x3F8, 4 }, { 0x2F8, 3 }, { 0x3E8, 4 }, { 0x2E8, 3 },
};

struct serial_port {
	struct serial8250 uart;
	struct vm *vm;
	unsigned irq;
	int out_fd; /* -1: output discarded */
};

static int vm_fail(char *err, size_t errlen, int rc, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, strerror(-rc));
	return rc;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int status,
		     const char *message)
{
	uint64_t one = 1;
	bool first = false;

	pthread_mutex_lock(&vm->stop_lock);
	if (vm->stop_reason == VM_STOP_NONE) {
		vm->stop_reason = reason;
		vm->exit_status = status;
		first = true;
	}
	pthread_mutex_unlock(&vm->stop_lock);
	if (!first)
		return;
	atomic_store(&vm->stopping, true);
	if (message && *message)
		kite_error("%s", message);
	if (write(vm->stop_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow from one write; nothing to do. */
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_kick(vm->vcpus[i]);
}

int vm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

static void serial_transmit(void *opaque, uint8_t byte)
{
	struct serial_port *sp = opaque;

	if (sp->out_fd >= 0) {
		ssize_t n;

		do
			n = write(sp->out_fd, &byte, 1);
		while (n < 0 && errno == EINTR);
	}
}

static void serial_set_irq(void *opaque, int level)
{
	struct serial_port *sp = opaque;

	vm_irq_line(sp->vm, sp->irq, level);
}

static void platform_debug_exit(void *opaque, uint32_t value)
{
	struct vm *vm = opaque;
	char msg[64];

	snprintf(msg, sizeof(msg), "guest wrote 0x%x to the debug-exit port",
		 value);
	/* Like QEMU's isa-debug-exit: status (value << 1) | 1, truncated to
	 * what an exit status can carry. */
	vm_request_stop(vm, VM_STOP_DEBUG_EXIT, (int)(((value << 1) | 1) & 0xFF),
			kite_verbose ? msg : NULL);
}

static void platform_reset(void *opaque, const char *source)
{
	struct vm *vm = opaque;
	char msg[128];

	snprintf(msg, sizeof(msg), "guest reset (%s)", source);
	vm_request_stop(vm, VM_STOP_RESET, VM_EXIT_OK, msg);
}

static int setup_memory(struct vm *vm, char *err, size_t errlen)
{
	int rc = guest_memory_create(&vm->mem, vm->cfg->memory_size,
				     vm->cfg->hugetlb_dir);

	if (rc)
		return vm_fail(err, errlen, rc, "guest memory");
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i,
			.guest_phys_addr = vm->mem.regions[i].gpa,
			.memory_size = vm->mem.regions[i].size,
			.userspace_addr = (uintptr_t)vm->mem.regions[i].hva,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return vm_fail(err, errlen, -errno,
				       "KVM_SET_USER_MEMORY_REGION");
	}
	return 0;
}

static int setup_serial(struct vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->cfg->nr_serial; i++) {
		struct serial_port *sp = calloc(1, sizeof(*sp));
		int rc;

		if (!sp)
			return vm_fail(err, errlen, -ENOMEM, "serial port");
		sp->vm = vm;
		sp->irq = com_ports[i].irq;
		/* COM1 is the console unless another was chosen; the others
		 * have no host backend yet and drop their output. */
		sp->out_fd = (i == 0 && vm->cfg->console == CONSOLE_SERIAL)
				     ? STDOUT_FILENO : -1;
		serial8250_init(&sp->uart, serial_transmit, serial_set_irq, sp);
		vm->serial[i] = sp;
		rc = bus_register(&vm->pio, com_ports[i].port, 8,
				  &serial8250_bus_ops, &sp->uart, "serial");
		if (rc)
			return vm_fail(err, errlen, rc, "serial port registration");
	}
	return 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, char *err,
	      size_t errlen)
{
	struct x86_boot_entry entry;
	int rc;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->kvm_fd = vm->vm_fd = vm->stop_fd = -1;
	vm->mem.fd = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	if (bus_init(&vm->pio, "pio") || bus_init(&vm->mmio, "mmio"))
		return vm_fail(err, errlen, -ENOMEM, "bus");
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0)
		return vm_fail(err, errlen, -errno, "eventfd");

	if (cfg->console == CONSOLE_VIRTIO) {
		snprintf(err, errlen,
			 "option '--console': the virtio console is not in this build yet");
		vm->bad_input = true;
		return -ENOTSUP;
	}
	rc = kvm_open(&vm->kvm_fd, err, errlen);
	if (rc)
		return rc;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return vm_fail(err, errlen, -errno, "KVM_CREATE_VM");
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0)
		return vm_fail(err, errlen, -errno, "KVM_GET_VCPU_MMAP_SIZE");
	if ((unsigned)kvm_check_cap(vm->kvm_fd, KVM_CAP_MAX_VCPUS) < cfg->nr_vcpus &&
	    (unsigned)kvm_check_cap(vm->kvm_fd, KVM_CAP_NR_VCPUS) < cfg->nr_vcpus) {
		snprintf(err, errlen, "option '--cpus': KVM supports at most %d vCPUs",
			 kvm_check_cap(vm->kvm_fd, KVM_CAP_MAX_VCPUS));
		return -EINVAL;
	}

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_GPA) < 0)
		return vm_fail(err, errlen, -errno, "KVM_SET_TSS_ADDR");
	{
		uint64_t idmap = KVM_IDENTITY_MAP_GPA;

		/* Optional: only VMX without unrestricted guests needs it. */
		ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return vm_fail(err, errlen, -errno, "KVM_CREATE_IRQCHIP");
	{
		struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

		if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
			return vm_fail(err, errlen, -errno, "KVM_CREATE_PIT2");
	}

	rc = setup_memory(vm, err, errlen);
	if (rc)
		return rc;

	vm->platform = calloc(1, sizeof(*vm->platform));
	if (!vm->platform)
		return vm_fail(err, errlen, -ENOMEM, "platform");
	rc = x86_platform_init(vm->platform, &vm->pio,
			       &(struct x86_platform_events){
				       .debug_exit = platform_debug_exit,
				       .reset = platform_reset,
				       .opaque = vm });
	if (rc)
		return vm_fail(err, errlen, rc, "platform devices");
	rc = setup_serial(vm, err, errlen);
	if (rc)
		return rc;

	rc = x86_load_kernel(&vm->mem, cfg, &entry, err, errlen);
	if (rc) {
		vm->bad_input = true;
		return rc;
	}

	vm->vcpus = calloc(cfg->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return vm_fail(err, errlen, -ENOMEM, "vCPUs");
	for (unsigned i = 0; i < cfg->nr_vcpus; i++) {
		rc = vcpu_create(vm, i, &vm->vcpus[i]);
		if (rc) {
			snprintf(err, errlen, "vcpu%u: KVM_CREATE_VCPU: %s", i,
				 strerror(-rc));
			return rc;
		}
		vm->nr_vcpus = i + 1;
	}
	for (unsigned i = 0; i < cfg->nr_vcpus; i++) {
		rc = x86_vcpu_set_cpuid(vm, vm->vcpus[i]);
		if (rc) {
			snprintf(err, errlen, "vcpu%u: KVM_SET_CPUID2: %s", i,
				 strerror(-rc));
			return rc;
		}
	}
	rc = x86_vcpu_enter(vm->vcpus[0], &entry);
	if (rc)
		return vm_fail(err, errlen, rc, "vcpu0: entry state");
	return 0;
}

/* Feed console input to COM1, honouring the Ctrl-A escape. */
static bool console_input(struct vm *vm, struct term_escape *esc)
{
	uint8_t in[256], out[256];
	size_t n_out = 0;
	ssize_t n = read(STDIN_FILENO, in, sizeof(in));

	if (n <= 0)
		return n < 0 && (errno == EINTR || errno == EAGAIN);
	for (ssize_t i = 0; i < n; i++) {
		unsigned char c;

		switch (term_escape_feed(esc, in[i], &c)) {
		case TERM_KEY_PASS:
			out[n_out++] = c;
			break;
		case TERM_KEY_QUIT:
			vm_request_stop(vm, VM_STOP_USER, VM_EXIT_OK, NULL);
			return false;
		case TERM_KEY_SWALLOW:
			break;
		}
	}
	for (size_t done = 0; done < n_out;) {
		done += serial8250_receive(&vm->serial[0]->uart, out + done,
					   n_out - done);
		if (done < n_out) {
			/* The guest is not reading; wait a little. */
			if (atomic_load(&vm->stopping))
				break;
			usleep(1000);
		}
	}
	return true;
}

static void event_loop(struct vm *vm)
{
	struct term_escape esc = { false };
	bool stdin_open = vm->cfg->console == CONSOLE_SERIAL;
	sigset_t sigs;
	int sfd;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);

	while (!atomic_load(&vm->stopping)) {
		struct pollfd p[3] = {
			{ .fd = vm->stop_fd, .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
			{ .fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN },
		};

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				char msg[64];

				snprintf(msg, sizeof(msg), "stopped by signal %s",
					 strsignal((int)si.ssi_signo));
				vm_request_stop(vm, VM_STOP_USER,
						128 + (int)si.ssi_signo, msg);
			}
		}
		if (p[2].revents & (POLLIN | POLLHUP | POLLERR))
			stdin_open = console_input(vm, &esc);
	}
	if (sfd >= 0)
		close(sfd);
}

int vm_run(struct vm *vm)
{
	sigset_t sigs, old;
	int rc;

	/* Block the stop signals in every thread; the event loop takes them
	 * through a signalfd. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, &old);

	rc = vcpu_signals_init();
	if (rc) {
		kite_error("vcpu signals: %s", strerror(-rc));
		return VM_EXIT_FAILURE;
	}
	if (vm->cfg->console == CONSOLE_SERIAL && term_raw_enter() < 0)
		kite_warn("stdin: cannot switch the terminal to raw mode");

	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		rc = vcpu_start(vm->vcpus[i]);
		if (rc) {
			char msg[64];

			snprintf(msg, sizeof(msg), "vcpu%u: thread: %s", i,
				 strerror(-rc));
			vm_request_stop(vm, VM_STOP_ERROR, VM_EXIT_FAILURE, msg);
			break;
		}
	}
	event_loop(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		vcpu_kick(vm->vcpus[i]);
		vcpu_join(vm->vcpus[i]);
	}
	term_restore();
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return vm->exit_status;
}

void vm_destroy(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->nr_vcpus = 0;
	for (unsigned i = 0; i < VM_CONFIG_MAX_SERIAL; i++) {
		if (vm->serial[i]) {
			serial8250_destroy(&vm->serial[i]->uart);
			free(vm->serial[i]);
			vm->serial[i] = NULL;
		}
	}
	free(vm->platform);
	vm->platform = NULL;
	guest_memory_destroy(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	pthread_mutex_destroy(&vm->stop_lock);
}
