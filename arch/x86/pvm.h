/* The PVM host profile.
 *
 * On hosts whose KVM is kvm_pvm, guest kernel mode runs in KVM's
 * instruction emulator, which refuses a handful of instructions and costs
 * about 1 µs per instruction.  Kite detects such a host at start and, for
 * Linux guests only:
 *   - hides the CPU features whose instructions the emulator refuses
 *     (CPUID bits below) and repeats that on the kernel command line,
 *     because on PVM some host bits reach the guest whatever KVM_SET_CPUID2
 *     says;
 *   - adds parameters that skip slow, optional boot work.
 * Instructions that still arrive are completed by arch/x86/emulate.c.
 * On hardware KVM nothing here changes anything. */
#ifndef KITE_ARCH_X86_PVM_H
#define KITE_ARCH_X86_PVM_H

#include <stdbool.h>
#include <stddef.h>

struct kvm_cpuid2;

/* True when the host's KVM is PVM ($KITE_HOST_PROFILE=pvm|kvm overrides
 * the detection, for testing the profile on another host). */
bool pvm_host_detected(void);

/* The kernel parameters the PVM profile adds in front of the user's. */
extern const char pvm_kernel_params[];

/* Clear the refused features from a CPUID table. */
void pvm_mask_cpuid(struct kvm_cpuid2 *cpuid);

/* "PVM_PARAMS 8250.nr_uarts=N USER_PARAMS", N the number of UARTs the
 * VM has, in a malloc'd string (the caller frees it); NULL without
 * memory. */
char *pvm_cmdline(const char *user, unsigned nr_uarts);

#endif
