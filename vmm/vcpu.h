/* vCPU threads: each runs KVM_RUN and dispatches its exits through the
 * VM's buses.  A vCPU is stopped by kicking it out of KVM_RUN with a signal
 * (and immediate_exit, so a kick that races with entry is not lost). */
#ifndef KITE_VMM_VCPU_H
#define KITE_VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;       /* for vcpu_join (the starting thread's) */
	bool started;           /* ditto: started, not yet joined */
	/* Set by the vCPU thread itself before it first enters KVM_RUN, so
	 * that kicks from other threads (vcpu_kick, vcpu_poke) never read a
	 * thread id that pthread_create has not stored yet. */
	pthread_t self;
	atomic_bool running;
	/* Exit counters, for benchmarks and `kite stat`. */
	atomic_ulong nr_pio_exits, nr_mmio_exits, nr_other_exits;
	/* Instructions KVM could not emulate and kite completed (PVM). */
	atomic_ulong nr_emulated;
	/* KITE_PROFILE: the sampler asks for the guest's RIP. */
	atomic_bool sample_pending;
};

int vcpu_create(struct vm *vm, unsigned id, struct vcpu **out);
int vcpu_start(struct vcpu *vcpu);
/* Make the vCPU leave KVM_RUN soon; safe from any thread. */
void vcpu_kick(struct vcpu *vcpu);
/* Interrupt KVM_RUN once without stopping the vCPU (profile sampling). */
void vcpu_poke(struct vcpu *vcpu);
void vcpu_join(struct vcpu *vcpu);
void vcpu_destroy(struct vcpu *vcpu);

/* Install the kick signal handler; once per process, before vcpu_start. */
int vcpu_signals_init(void);

#endif
