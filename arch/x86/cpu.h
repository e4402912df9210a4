/* x86 vCPU state: CPUID, entry registers, and emulation-failure handling. */
#ifndef KITE_ARCH_X86_CPU_H
#define KITE_ARCH_X86_CPU_H

#include <stdbool.h>

#include "arch/x86/boot.h"

struct vcpu;
struct vm;

/* Build the guest CPUID from what KVM supports (APIC ids, topology, the
 * hypervisor bit) and set it on |vcpu|.  Returns 0 or -errno. */
int x86_vcpu_set_cpuid(struct vm *vm, struct vcpu *vcpu);

/* Put the local APIC in virtual-wire mode, as PC firmware leaves it:
 * LINT0 = ExtINT (8259 PIC interrupts reach the CPU), LINT1 = NMI.  KVM's
 * reset state masks both, which would leave PIC-driven guests deaf. */
int x86_vcpu_setup_lapic(struct vcpu *vcpu);

/* Load the register state described by |entry| into the boot vCPU. */
int x86_vcpu_enter(struct vcpu *vcpu, const struct x86_boot_entry *entry);

/* A KVM_EXIT_INTERNAL_ERROR arrived.  Returns true when it was handled and
 * the vCPU may run on; otherwise reports it and stops the VM. */
bool x86_vcpu_handle_internal_error(struct vcpu *vcpu);

#endif
