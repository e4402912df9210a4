#include "arch/x86/cpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/emulate.h"
#include "arch/x86/ksyms.h"
#include "arch/x86/pvm.h"
#include "vmm/log.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define MAX_CPUID_ENTRIES 256

#define CPUID_1_ECX_HYPERVISOR (1U << 31)
#define CPUID_1_EDX_HTT (1U << 28)

int x86_vcpu_set_cpuid(struct vm *vm, struct vcpu *vcpu)
{
	struct kvm_cpuid2 *c;
	int rc = 0;

	c = calloc(1, sizeof(*c) + MAX_CPUID_ENTRIES * sizeof(c->entries[0]));
	if (!c)
		return -ENOMEM;
	c->nent = MAX_CPUID_ENTRIES;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		rc = -errno;
		goto out;
	}
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			/* Initial APIC id in EBX[31:24], logical count [23:16]. */
			e->ebx = (e->ebx & 0x0000FFFFU) | (vcpu->id << 24) |
				 ((vm->nr_vcpus & 0xFF) << 16);
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			if (vm->nr_vcpus > 1)
				e->edx |= CPUID_1_EDX_HTT;
			break;
		case 0xB:
		case 0x1F:
			/* x2APIC topology: one thread per core, all in one
			 * package; EDX is the x2APIC id. */
			e->edx = vcpu->id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1U << 8) | 0;
			} else if (e->index == 1) {
				unsigned shift = 0;

				while ((1U << shift) < vm->nr_vcpus)
					shift++;
				e->eax = shift;
				e->ebx = vm->nr_vcpus;
				e->ecx = (2U << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 4:
			/* Cores per package - 1 in EAX[31:26]. */
			if (e->eax & 0x1F)
				e->eax = (e->eax & 0x3FFFFFFU) |
					 (((vm->nr_vcpus - 1) & 0x3F) << 26);
			break;
		default:
			break;
		}
	}
	if (vm->pvm_profile)
		pvm_mask_cpuid(c);
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0)
		rc = -errno;
out:
	free(c);
	return rc;
}

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_DM_NMI    0x400
#define APIC_DM_EXTINT 0x700

static void lapic_set_reg(struct kvm_lapic_state *l, unsigned reg, uint32_t v)
{
	memcpy(&l->regs[reg], &v, sizeof(v));
}

int x86_vcpu_setup_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state lapic;

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	lapic_set_reg(&lapic, APIC_LVT0, APIC_DM_EXTINT);
	lapic_set_reg(&lapic, APIC_LVT1, APIC_DM_NMI);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

static struct kvm_segment flat_segment(uint16_t sel, bool code, bool long64)
{
	struct kvm_segment s = {
		.base = 0,
		.limit = 0xFFFFFFFF,
		.selector = sel,
		.type = code ? 0xB : 0x3, /* execute/read accessed; read/write accessed */
		.present = 1,
		.dpl = 0,
		.db = long64 && code ? 0 : 1,
		.s = 1,
		.l = long64 && code,
		.g = 1,
	};
	return s;
}

static struct kvm_segment real_segment(uint16_t sel, bool code)
{
	struct kvm_segment s = {
		.base = (uint64_t)sel << 4,
		.limit = 0xFFFF,
		.selector = sel,
		.type = code ? 0xB : 0x3, /* execute/read accessed; read/write accessed */
		.present = 1,
		.s = 1,
	};
	return s;
}

int x86_vcpu_enter(struct vcpu *vcpu, const struct x86_boot_entry *e)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	bool long64 = e->mode == X86_ENTRY_LONG64;

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2; /* reserved bit 1; interrupts off */
	regs.rip = e->rip;
	regs.rsp = e->rsp;
	regs.rax = e->rax;
	regs.rbx = e->rbx;
	regs.rsi = e->rsi;
	regs.rdi = e->rdi;

	if (e->mode == X86_ENTRY_REAL16) {
		/* Every segment as a real-mode load leaves it (base = sel << 4,
		 * 64 KiB limit, 16-bit), not only cs: the vCPU may come from
		 * an earlier boot, and the guest relies on ds/es/ss. */
		struct kvm_segment cs = real_segment(e->real_cs, true);
		struct kvm_segment ds = real_segment(e->real_ds, false);

		sregs.cs = cs;
		sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
		sregs.cr0 &= ~(0x1ULL | (1ULL << 31));        /* no PE, no PG */
		sregs.cr4 &= ~(1ULL << 5);                    /* no PAE */
		sregs.efer &= ~((1ULL << 8) | (1ULL << 10));  /* no LME, LMA */
		/* The real-mode IVT at 0 (Intel SDM vol. 3 §20.1.4). */
		sregs.idt.base = 0;
		sregs.idt.limit = 0x3FF;
		regs.rip = e->rip & 0xFFFF;
		regs.rsp = e->rsp & 0xFFFF;
	} else {
		struct kvm_segment cs = flat_segment(e->code_sel, true, long64);
		struct kvm_segment ds = flat_segment(e->data_sel, false, long64);

		sregs.cs = cs;
		sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
		sregs.gdt.base = e->gdt_base;
		sregs.gdt.limit = e->gdt_limit;
		sregs.cr0 = (sregs.cr0 | 0x1) & ~(1ULL << 31); /* PE, no PG */
		if (long64) {
			sregs.cr3 = e->cr3;
			sregs.cr4 |= 1ULL << 5;               /* PAE */
			sregs.efer |= (1ULL << 8) | (1ULL << 10); /* LME, LMA */
			sregs.cr0 |= (1ULL << 31);            /* PG */
		}
	}
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

bool x86_vcpu_handle_internal_error(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	char msg[512];
	int n;

	{
		char why[160] = "";

		if (x86_emulate_complete(vcpu, why, sizeof(why)))
			return true;
		kite_info("vcpu%u: %s", vcpu->id, why);
	}
	memset(&regs, 0, sizeof(regs));
	ioctl(vcpu->fd, KVM_GET_REGS, &regs);
	{
		char sym[160];
		const char *where = vcpu->vm->ksyms
			? ksyms_describe(vcpu->vm->ksyms, regs.rip, sym, sizeof(sym))
			: NULL;

		n = snprintf(msg, sizeof(msg),
			     "vcpu%u: KVM internal error, suberror %u, at rip 0x%llx%s%s",
			     vcpu->id, run->internal.suberror,
			     (unsigned long long)regs.rip, where ? " in " : "",
			     where ? where : "");
	}
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
	    run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags &
	     KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		unsigned len = run->emulation_failure.insn_size;

		if (len > sizeof(run->emulation_failure.insn_bytes))
			len = sizeof(run->emulation_failure.insn_bytes);
		n += snprintf(msg + n, sizeof(msg) - (size_t)n,
			      ": instruction emulation failed, bytes");
		for (unsigned i = 0; i < len && n < (int)sizeof(msg) - 4; i++)
			n += snprintf(msg + n, sizeof(msg) - (size_t)n, " %02x",
				      run->emulation_failure.insn_bytes[i]);
	}
	vm_request_stop(vcpu->vm, VM_STOP_ERROR, VM_EXIT_FAILURE, msg);
	return false;
}
