#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/cpu.h"
#include "arch/x86/profile.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
	(void)sig; /* only here to interrupt KVM_RUN with EINTR */
}

int vcpu_signals_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	return sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

int vcpu_create(struct vm *vm, unsigned id, struct vcpu **out)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	int err;

	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		err = -errno;
		free(v);
		return err;
	}
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		err = -errno;
		close(v->fd);
		free(v);
		return err;
	}
	*out = v;
	return 0;
}

static void handle_pio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	unsigned size = run->io.size;

	atomic_fetch_add(&v->nr_pio_exits, 1);
	/* String I/O (rep ins/outs) arrives as |count| elements. */
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t val = 0;

		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&val, data, size);
			if (bus_write(&v->vm->pio, run->io.port, size, val) ==
			    -ENOENT)
				kite_info("vcpu%u: write to unclaimed port 0x%x",
					  v->id, run->io.port);
		} else {
			bus_read(&v->vm->pio, run->io.port, size, &val);
			memcpy(data, &val, size);
		}
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned len = run->mmio.len;
	uint64_t val = 0;

	atomic_fetch_add(&v->nr_mmio_exits, 1);
	if (len != 1 && len != 2 && len != 4 && len != 8) {
		/* KVM splits larger accesses; anything else reads as ones. */
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xFF, sizeof(run->mmio.data));
		return;
	}
	if (run->mmio.is_write) {
		memcpy(&val, run->mmio.data, len);
		if (bus_write(&v->vm->mmio, run->mmio.phys_addr, len, val) ==
		    -ENOENT)
			kite_info("vcpu%u: write to unclaimed MMIO 0x%llx",
				  v->id, (unsigned long long)run->mmio.phys_addr);
	} else {
		bus_read(&v->vm->mmio, run->mmio.phys_addr, len, &val);
		memcpy(run->mmio.data, &val, len);
	}
}

static void handle_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_stop(v->vm, VM_STOP_POWEROFF, 0, "guest powered off");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_stop(v->vm, VM_STOP_RESET, 0, "guest reset");
		break;
	default:
		vm_request_stop(v->vm, VM_STOP_ERROR, VM_EXIT_FAILURE,
				"guest crashed (system event)");
		break;
	}
}

/* Handle one exit; returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char msg[256];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_pio(v);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return true;
	case KVM_EXIT_HLT:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_INTR:
		atomic_fetch_add(&v->nr_other_exits, 1);
		return true;
	case KVM_EXIT_SHUTDOWN:
		/* A triple fault: the CPU would reset. */
		snprintf(msg, sizeof(msg),
			 "vcpu%u: triple fault (the guest CPU reset itself)",
			 v->id);
		vm_request_stop(v->vm, VM_STOP_RESET, VM_EXIT_TRIPLE_FAULT, msg);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		handle_system_event(v);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		if (x86_vcpu_handle_internal_error(v))
			return true;
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(msg, sizeof(msg),
			 "vcpu%u: KVM could not enter the guest (hardware reason 0x%llx)",
			 v->id,
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vm_request_stop(v->vm, VM_STOP_ERROR, VM_EXIT_FAILURE, msg);
		return false;
	default:
		snprintf(msg, sizeof(msg), "vcpu%u: unhandled KVM exit %u",
			 v->id, run->exit_reason);
		vm_request_stop(v->vm, VM_STOP_ERROR, VM_EXIT_FAILURE, msg);
		return false;
	}
}

/* KITE_PROFILE: record where the guest was when the sampler poked us. */
static void take_sample(struct vcpu *v)
{
	struct kvm_regs regs;

	if (!atomic_exchange(&v->sample_pending, false))
		return;
	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		guest_profile_add(v->vm->profile, regs.rip);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	sigset_t set;
	char name[16];

	snprintf(name, sizeof(name), "kite-vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	v->self = pthread_self();
	atomic_store_explicit(&v->running, true, memory_order_release);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (!atomic_load(&v->vm->stopping)) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				/* (atomic: kicks store 1 from other
				 * threads; KVM reads it at entry) */
				__atomic_store_n(&v->run->immediate_exit, 0,
						 __ATOMIC_RELAXED);
				if (v->vm->profile)
					take_sample(v);
				continue;
			}
			char msg[128];

			snprintf(msg, sizeof(msg), "vcpu%u: KVM_RUN: %s", v->id,
				 strerror(errno));
			vm_request_stop(v->vm, VM_STOP_ERROR, VM_EXIT_FAILURE, msg);
			break;
		}
		if (v->vm->profile)
			take_sample(v);
		if (!handle_exit(v))
			break;
	}
	/* No more signals for this thread (it may be joined, its id gone). */
	atomic_store_explicit(&v->running, false, memory_order_release);
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);

	if (rc)
		return -rc;
	v->started = true;
	return 0;
}

/* Signal the vCPU thread out of KVM_RUN.  Not running yet: nothing to
 * interrupt; it sees immediate_exit (or the stop) at its first entry. */
static void signal_vcpu(struct vcpu *v)
{
	if (atomic_load_explicit(&v->running, memory_order_acquire))
		pthread_kill(v->self, VCPU_KICK_SIGNAL);
}

void vcpu_kick(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELAXED);
	signal_vcpu(v);
}

void vcpu_poke(struct vcpu *v)
{
	atomic_store(&v->sample_pending, true);
	signal_vcpu(v);
}

void vcpu_join(struct vcpu *v)
{
	if (v->started) {
		pthread_join(v->thread, NULL);
		v->started = false;
	}
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	close(v->fd);
	free(v);
}
