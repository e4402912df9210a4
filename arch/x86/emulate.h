/* Completing the instructions KVM's emulator refuses.
 *
 * On PVM hosts guest kernel mode runs in KVM's instruction emulator, which
 * gives up on a few instructions that stock kernels execute (int3, int n,
 * fwait, fences, ldmxcsr/stmxcsr, clac/stac).  KVM then exits with
 * KVM_INTERNAL_ERROR_EMULATION and the instruction bytes; kite decodes them
 * here and completes the instruction with its architectural effect.  On
 * hardware KVM these exits never happen and none of this runs.
 *
 * The decoder is pure (bytes + registers → what to do), so unit tests cover
 * it without KVM; x86_emulate_complete() applies the result to a vCPU. */
#ifndef KITE_ARCH_X86_EMULATE_H
#define KITE_ARCH_X86_EMULATE_H

#include <stdbool.h>
#include <stdint.h>

enum x86_insn_kind {
	X86_INSN_UNKNOWN = 0,
	X86_INSN_INT3,     /* CC: #BP, pushed RIP after the instruction */
	X86_INSN_INTN,     /* CD ib: software interrupt |vector| */
	X86_INSN_NOP,      /* fwait, lfence, mfence, sfence: just skip */
	X86_INSN_LDMXCSR,  /* 0F AE /2: MXCSR ← m32 */
	X86_INSN_STMXCSR,  /* 0F AE /3: m32 ← MXCSR */
	X86_INSN_CLAC,     /* 0F 01 CA: RFLAGS.AC ← 0 */
	X86_INSN_STAC,     /* 0F 01 CB: RFLAGS.AC ← 1 */
	X86_INSN_IRET32,   /* CF in 32-bit protected mode (KVM only does real mode) */
};

/* The execution mode the instruction was fetched in. */
struct x86_cpu_mode {
	bool long64;       /* 64-bit code segment (CS.L) */
	bool default32;    /* CS.D (ignored in 64-bit mode) */
	uint64_t seg_base[6]; /* es, cs, ss, ds, fs, gs bases */
};

/* General registers in encoding order: rax rcx rdx rbx rsp rbp rsi rdi
 * r8..r15; and rip of the instruction's first byte. */
struct x86_gprs {
	uint64_t r[16];
	uint64_t rip;
};

struct x86_insn {
	enum x86_insn_kind kind;
	unsigned len;        /* bytes, including prefixes */
	uint8_t vector;      /* INTN */
	bool opsize16;       /* 0x66 prefix seen */
	uint64_t mem_linear; /* LDMXCSR/STMXCSR: linear address of m32 */
};

/* Decode one instruction from |bytes| (|n| valid bytes).  Returns 0 and
 * fills |out|, or -ENOTSUP for an instruction kite does not complete, or
 * -EINVAL for bytes that run out before the instruction ends. */
int x86_decode(const uint8_t *bytes, unsigned n,
	       const struct x86_cpu_mode *mode, const struct x86_gprs *regs,
	       struct x86_insn *out);

/* Name of an instruction kind, for messages. */
const char *x86_insn_name(enum x86_insn_kind kind);

struct vcpu;

/* Complete the instruction in vcpu's emulation-failure exit.  Returns true
 * when it was completed and the vCPU can run on; false (with |why| filled)
 * when kite cannot complete it. */
bool x86_emulate_complete(struct vcpu *vcpu, char *why, unsigned whylen);

#endif
