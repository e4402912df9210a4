#include "arch/x86/pvm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Why each parameter is there:
 *   noxsave, clearcpuid=xsave,avx,avx2,avx512f: the xsave family is refused;
 *   clearcpuid=popcnt,rdtscp,ssse3,smap,fsgsbase: refused instructions
 *     (smap → stac/clac, fsgsbase → rd/wrfsbase);
 *   clearcpuid=erms,fsrm: memcpy/memset then move 8 bytes per emulated
 *     step (rep movsq) instead of one (rep movsb);
 *   cryptomgr.notests=1: the crypto self-tests cost minutes emulated;
 *   nowatchdog: at emulation speed the soft-lockup detector fires on healthy
 *     code, and each report it prints costs more emulated time;
 *   init_on_alloc=0: Debian enables zeroing every page at allocation
 *     (a hardening default); emulated, each 4 KiB page is 512 steps of
 *     rep stosq;
 *   mitigations=off: the speculation mitigations turn every kernel return
 *     into a jump to a return thunk and a call (SRSO "safe RET"), every
 *     indirect call into a retpoline, and add lfences (each one an exit to
 *     kite here) on kernel entry; guest user mode cannot run on these hosts
 *     at all, so there is no guest user space to protect the kernel from.
 *   initcall_blacklist=trace_eval_init,ftrace_check_for_weak_functions,
 *   tracer_init_tracefs: three boot-time jobs of the tracing interface,
 *     each minutes emulated and each waited for before /init: resolving
 *     enum names in the trace-event format strings (a strstr over every
 *     event's format for every enum), a kallsyms lookup for each of the
 *     ~38000 ftrace call sites to hide those in overridden weak functions,
 *     and creating the tracefs directories and files of every trace event
 *     (thousands of inodes).  Only tracefs (/sys/kernel/tracing) loses its
 *     files, which nothing in the guest can read on such a host anyway:
 *     guest user space cannot run there.
 *   clocksource=kvm-clock: Linux would switch from kvm-clock to the TSC,
 *     and on these hosts a guest's TSC-based clock fell behind the host's
 *     when the host was busy (the test kernel's wall clock lost 11-17 s in
 *     a minute beside another guest; with kvm-clock, whose time KVM keeps
 *     correcting from the host, it kept within the test's 10 s).
 * pvm_cmdline() adds 8250.nr_uarts=N, N the UARTs kite emulates (--serial):
 * otherwise the 8250 driver probes all four legacy ports, seconds emulated
 * for ports that are not there.
 * A user parameter later on the command line overrides any of these
 * (e.g. mitigations=auto).
 * cmpxchg16b is refused too, but KVM honours hiding CX16 in CPUID, so no
 * parameter is needed for it. */
const char pvm_kernel_params[] =
	"noxsave clearcpuid=popcnt,rdtscp,xsave,avx,avx2,avx512f,smap,fsgsbase,ssse3,erms,fsrm "
	"cryptomgr.notests=1 nowatchdog init_on_alloc=0 mitigations=off "
	"initcall_blacklist=trace_eval_init,ftrace_check_for_weak_functions,"
	"tracer_init_tracefs clocksource=kvm-clock";

bool pvm_host_detected(void)
{
	const char *force = getenv("KITE_HOST_PROFILE");

	if (force && strcmp(force, "pvm") == 0)
		return true;
	if (force && strcmp(force, "kvm") == 0)
		return false;
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

/* CPUID bit positions (Intel SDM Vol. 2 CPUID tables). */
#define L1_ECX_SSSE3   (1U << 9)
#define L1_ECX_CX16    (1U << 13)
#define L1_ECX_POPCNT  (1U << 23)
#define L1_ECX_XSAVE   (1U << 26)
#define L1_ECX_OSXSAVE (1U << 27)
#define L1_ECX_AVX     (1U << 28)
#define L7_EBX_FSGSBASE (1U << 0)
#define L7_EBX_AVX2    (1U << 5)
#define L7_EBX_ERMS    (1U << 9)
#define L7_EBX_AVX512F (1U << 16)
#define L7_EBX_SMAP    (1U << 20)
#define L7_EDX_FSRM    (1U << 4)
#define LX1_EDX_RDTSCP (1U << 27)

void pvm_mask_cpuid(struct kvm_cpuid2 *c)
{
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1) {
			e->ecx &= ~(L1_ECX_SSSE3 | L1_ECX_CX16 | L1_ECX_POPCNT | L1_ECX_XSAVE |
				    L1_ECX_OSXSAVE | L1_ECX_AVX);
		} else if (e->function == 7 && e->index == 0) {
			e->ebx &= ~(L7_EBX_FSGSBASE | L7_EBX_AVX2 | L7_EBX_ERMS |
				    L7_EBX_AVX512F | L7_EBX_SMAP);
			e->edx &= ~L7_EDX_FSRM;
		} else if (e->function == 0xD) {
			/* No XSAVE: no XSAVE state components either. */
			e->eax = e->ebx = e->ecx = e->edx = 0;
		} else if (e->function == 0x80000001) {
			e->edx &= ~LX1_EDX_RDTSCP;
		}
	}
}

char *pvm_cmdline(const char *user, unsigned nr_uarts)
{
	char *out;

	if (asprintf(&out, "%s 8250.nr_uarts=%u%s%s", pvm_kernel_params,
		     nr_uarts, user && *user ? " " : "", user ? user : "") < 0)
		return NULL;
	return out;
}
