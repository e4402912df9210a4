#include "arch/x86/emulate.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/vcpu.h"
#include "vmm/vm.h"

enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_NONE = -1 };

#define REG_RSP 4
#define REG_RBP 5
#define RFLAGS_AC (1ULL << 18)
#define MXCSR_VALID_BITS 0xFFFFU

const char *x86_insn_name(enum x86_insn_kind kind)
{
	switch (kind) {
	case X86_INSN_INT3: return "int3";
	case X86_INSN_INTN: return "int n";
	case X86_INSN_NOP: return "fwait/fence";
	case X86_INSN_LDMXCSR: return "ldmxcsr";
	case X86_INSN_STMXCSR: return "stmxcsr";
	case X86_INSN_CLAC: return "clac";
	case X86_INSN_STAC: return "stac";
	case X86_INSN_IRET32: return "iret";
	default: return "unknown";
	}
}

struct cursor {
	const uint8_t *b;
	unsigned n, pos;
};

static int next_byte(struct cursor *c, uint8_t *v)
{
	if (c->pos >= c->n)
		return -EINVAL;
	*v = c->b[c->pos++];
	return 0;
}

static int next_disp(struct cursor *c, unsigned size, int64_t *v)
{
	uint32_t raw = 0;

	if (c->n - c->pos < size || c->pos > c->n)
		return -EINVAL;
	for (unsigned i = 0; i < size; i++)
		raw |= (uint32_t)c->b[c->pos + i] << (8 * i);
	c->pos += size;
	*v = size == 1 ? (int8_t)raw : (int32_t)raw;
	return 0;
}

/* Decode a ModRM memory operand (mod != 3) into an effective address.
 * Intel SDM Vol. 2 §2.1.5 (32-bit forms) and §2.2.1 (REX, RIP-relative). */
static int decode_mem(struct cursor *c, uint8_t modrm, uint8_t rex,
		      bool long64, bool addr32, const struct x86_gprs *regs,
		      uint64_t *ea, int *default_seg)
{
	unsigned mod = modrm >> 6, rm = modrm & 7;
	int64_t disp = 0;
	uint64_t addr = 0;
	bool rip_relative = false;
	int rc;

	*default_seg = SEG_DS;
	if (rm == 4) {
		uint8_t sib;
		unsigned scale, index, base;

		rc = next_byte(c, &sib);
		if (rc)
			return rc;
		scale = sib >> 6;
		index = ((sib >> 3) & 7) | ((rex & 0x2) ? 8 : 0);
		base = (sib & 7) | ((rex & 0x1) ? 8 : 0);
		if (index != REG_RSP)
			addr += regs->r[index] << scale;
		if ((sib & 7) == 5 && mod == 0) {
			rc = next_disp(c, 4, &disp);
			if (rc)
				return rc;
		} else {
			addr += regs->r[base];
			if ((base & 7) == REG_RSP || (base & 7) == REG_RBP)
				*default_seg = SEG_SS;
		}
	} else if (rm == 5 && mod == 0) {
		rc = next_disp(c, 4, &disp);
		if (rc)
			return rc;
		rip_relative = long64;
	} else {
		unsigned reg = rm | ((rex & 0x1) ? 8 : 0);

		addr = regs->r[reg];
		if (rm == REG_RBP)
			*default_seg = SEG_SS;
	}
	if (mod == 1 || mod == 2) {
		rc = next_disp(c, mod == 1 ? 1 : 4, &disp);
		if (rc)
			return rc;
	}
	addr += (uint64_t)disp;
	if (rip_relative)
		addr += regs->rip; /* caller adds the length once it is known */
	if (addr32)
		addr &= 0xFFFFFFFFULL;
	*ea = addr;
	return rip_relative ? 1 : 0;
}

int x86_decode(const uint8_t *bytes, unsigned n,
	       const struct x86_cpu_mode *mode, const struct x86_gprs *regs,
	       struct x86_insn *out)
{
	struct cursor c = { bytes, n, 0 };
	int seg_override = SEG_NONE;
	bool addr_override = false;
	uint8_t rex = 0, op, modrm;
	bool addr32;
	int rc;

	memset(out, 0, sizeof(*out));
	/* Legacy prefixes (SDM Vol. 2 §2.1.1), then REX in 64-bit mode. */
	for (;;) {
		rc = next_byte(&c, &op);
		if (rc)
			return rc;
		switch (op) {
		case 0x26: seg_override = SEG_ES; continue;
		case 0x2E: seg_override = SEG_CS; continue;
		case 0x36: seg_override = SEG_SS; continue;
		case 0x3E: seg_override = SEG_DS; continue;
		case 0x64: seg_override = SEG_FS; continue;
		case 0x65: seg_override = SEG_GS; continue;
		case 0x67: addr_override = true; continue;
		case 0x66: out->opsize16 = true; continue;
		case 0xF0: case 0xF2: case 0xF3: continue;
		default: break;
		}
		break;
	}
	if (mode->long64 && (op & 0xF0) == 0x40) {
		rex = op;
		rc = next_byte(&c, &op);
		if (rc)
			return rc;
	}
	if (mode->long64)
		addr32 = addr_override;
	else if (addr_override == mode->default32)
		return -ENOTSUP; /* 16-bit addressing: not used by kernels */
	else
		addr32 = true;

	switch (op) {
	case 0xCC:
		out->kind = X86_INSN_INT3;
		break;
	case 0xCD:
		out->kind = X86_INSN_INTN;
		rc = next_byte(&c, &out->vector);
		if (rc)
			return rc;
		break;
	case 0x9B:
		out->kind = X86_INSN_NOP;
		break;
	case 0xCF:
		/* Only the 32-bit operand size outside 64-bit mode; 64-bit
		 * kernels use iretq, which the emulator handles itself. */
		if (mode->long64 || rex || out->opsize16 != !mode->default32)
			return -ENOTSUP;
		out->kind = X86_INSN_IRET32;
		break;
	case 0x0F:
		rc = next_byte(&c, &op);
		if (!rc)
			rc = next_byte(&c, &modrm);
		if (rc)
			return rc;
		if (op == 0x01 && modrm == 0xCA) {
			out->kind = X86_INSN_CLAC;
		} else if (op == 0x01 && modrm == 0xCB) {
			out->kind = X86_INSN_STAC;
		} else if (op == 0xAE && (modrm >> 6) == 3) {
			unsigned reg = (modrm >> 3) & 7;

			if (reg < 5)
				return -ENOTSUP;
			out->kind = X86_INSN_NOP; /* lfence, mfence, sfence */
		} else if (op == 0xAE && (((modrm >> 3) & 7) == 2 ||
					  ((modrm >> 3) & 7) == 3)) {
			int seg, rip_rel;
			uint64_t ea;

			rip_rel = decode_mem(&c, modrm, rex, mode->long64,
					     addr32, regs, &ea, &seg);
			if (rip_rel < 0)
				return rip_rel;
			if (rip_rel)
				ea += c.pos;
			if (seg_override != SEG_NONE)
				seg = seg_override;
			/* In 64-bit mode only FS and GS have bases. */
			if (!mode->long64 || seg == SEG_FS || seg == SEG_GS)
				ea += mode->seg_base[seg];
			if (!mode->long64)
				ea &= 0xFFFFFFFFULL;
			out->mem_linear = ea;
			out->kind = ((modrm >> 3) & 7) == 2 ? X86_INSN_LDMXCSR
							     : X86_INSN_STMXCSR;
		} else {
			return -ENOTSUP;
		}
		break;
	default:
		return -ENOTSUP;
	}
	out->len = c.pos;
	return 0;
}

/* ---- applying a decoded instruction to a vCPU ---------------------------- */

static void load_mode(const struct kvm_sregs *s, struct x86_cpu_mode *m)
{
	const struct kvm_segment *segs[6] = { &s->es, &s->cs, &s->ss,
					      &s->ds, &s->fs, &s->gs };

	m->long64 = (s->efer & (1ULL << 10)) && s->cs.l;
	m->default32 = s->cs.db;
	for (int i = 0; i < 6; i++)
		m->seg_base[i] = segs[i]->base;
}

static void load_gprs(const struct kvm_regs *r, struct x86_gprs *g)
{
	const uint64_t v[16] = { r->rax, r->rcx, r->rdx, r->rbx, r->rsp,
				 r->rbp, r->rsi, r->rdi, r->r8,  r->r9,
				 r->r10, r->r11, r->r12, r->r13, r->r14,
				 r->r15 };

	memcpy(g->r, v, sizeof(v));
	g->rip = r->rip;
}

/* Guest-linear address → host pointer for |len| bytes within one page. */
static int linear_to_host(struct vcpu *v, uint64_t linear, unsigned len,
			  bool write, void **hva)
{
	struct kvm_translation t = { .linear_address = linear };

	if ((linear & 0xFFF) + len > 0x1000)
		return -EFAULT; /* callers split at page boundaries */
	if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0)
		return -errno;
	if (!t.valid || (write && !t.writeable))
		return -EFAULT;
	return guest_memory_translate(&v->vm->mem, t.physical_address, len,
				      hva);
}

/* Copy between guest-linear memory and |buf|, page by page, so that stack
 * frames and operands may cross a page boundary. */
static int linear_copy(struct vcpu *v, uint64_t linear, void *buf,
		       unsigned len, bool write)
{
	uint8_t *b = buf;

	while (len) {
		unsigned chunk = 0x1000 - (unsigned)(linear & 0xFFF);
		void *p;
		int rc;

		if (chunk > len)
			chunk = len;
		rc = linear_to_host(v, linear, chunk, write, &p);
		if (rc)
			return rc;
		if (write)
			memcpy(p, b, chunk);
		else
			memcpy(b, p, chunk);
		linear += chunk;
		b += chunk;
		len -= chunk;
	}
	return 0;
}

static int inject_event(struct vcpu *v, const struct x86_insn *insn)
{
	struct kvm_vcpu_events ev;

	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	if (insn->kind == X86_INSN_INT3 ||
	    (insn->kind == X86_INSN_INTN && insn->vector < 32)) {
		ev.exception.injected = 1;
		ev.exception.nr = insn->kind == X86_INSN_INT3 ? 3 : insn->vector;
		ev.exception.has_error_code = 0;
		ev.exception.error_code = 0;
	} else {
		ev.interrupt.injected = 1;
		ev.interrupt.nr = insn->vector;
		ev.interrupt.soft = 1;
	}
	ev.flags = 0; /* leave NMI, SIPI and shadow state as they are */
	if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	return 0;
}

/* MXCSR lives at byte 24 of the legacy FXSAVE area that starts the XSAVE
 * image (SDM Vol. 1 §10.5.1).  KVM_GET/SET_XSAVE is used rather than
 * KVM_GET/SET_FPU: on PVM hosts the latter does not carry MXCSR. */
#define XSAVE_MXCSR_OFFSET 24
#define XSAVE_XSTATE_BV_OFFSET 512
#define XFEATURE_SSE_BIT 0x2

static int do_mxcsr(struct vcpu *v, const struct x86_insn *insn)
{
	struct kvm_xsave xs;
	uint32_t val;
	int rc;

	if (ioctl(v->fd, KVM_GET_XSAVE, &xs) < 0)
		return -errno;
	if (insn->kind == X86_INSN_STMXCSR) {
		memcpy(&val, (uint8_t *)xs.region + XSAVE_MXCSR_OFFSET, 4);
		return linear_copy(v, insn->mem_linear, &val, 4, true);
	}
	rc = linear_copy(v, insn->mem_linear, &val, 4, false);
	if (rc)
		return rc;
	if (val & ~MXCSR_VALID_BITS)
		return -EINVAL; /* the CPU would raise #GP */
	memcpy((uint8_t *)xs.region + XSAVE_MXCSR_OFFSET, &val, 4);
	/* The kernel takes MXCSR from the image only when XSTATE_BV (byte 512
	 * of the image) marks SSE state as present; in the init state it
	 * would restore the default 0x1f80 instead (SDM Vol. 1 §13.8.1). */
	((uint8_t *)xs.region)[XSAVE_XSTATE_BV_OFFSET] |= XFEATURE_SSE_BIT;
	if (ioctl(v->fd, KVM_SET_XSAVE, &xs) < 0)
		return -errno;
	return 0;
}

/* Build a KVM segment from GDT descriptor |sel| (SDM Vol. 3 §3.4.5). */
static int load_descriptor(struct vcpu *v, const struct kvm_sregs *s,
			   uint16_t sel, struct kvm_segment *seg)
{
	uint64_t desc;
	int rc;

	memset(seg, 0, sizeof(*seg));
	seg->selector = sel;
	if ((sel & ~3U) == 0) {
		seg->unusable = 1; /* a null selector */
		return 0;
	}
	if (sel & 4)
		return -ENOTSUP; /* LDT selectors: not used by our guests */
	if ((uint32_t)(sel & ~7U) + 7 > s->gdt.limit)
		return -EFAULT;
	rc = linear_copy(v, s->gdt.base + (sel & ~7U), &desc, 8, false);
	if (rc)
		return rc;
	seg->base = ((desc >> 16) & 0xFFFFFF) | (((desc >> 56) & 0xFF) << 24);
	seg->limit = (uint32_t)((desc & 0xFFFF) | (((desc >> 48) & 0xF) << 16));
	seg->type = (desc >> 40) & 0xF;
	seg->s = (desc >> 44) & 1;
	seg->dpl = (desc >> 45) & 3;
	seg->present = (desc >> 47) & 1;
	seg->avl = (desc >> 52) & 1;
	seg->l = (desc >> 53) & 1;
	seg->db = (desc >> 54) & 1;
	seg->g = (desc >> 55) & 1;
	if (seg->g)
		seg->limit = (seg->limit << 12) | 0xFFF;
	if (!seg->present)
		return -EFAULT;
	return 0;
}

/* IRET in 32-bit protected mode without task switch or virtual-8086
 * return (SDM Vol. 2 IRET pseudo-code, "PROTECTED-MODE" paths). */
static int do_iret32(struct vcpu *v, struct kvm_regs *regs,
		     struct kvm_sregs *s)
{
	uint32_t frame[5];
	unsigned cpl = s->cs.dpl, rpl;
	uint64_t sp = s->ss.base + (regs->rsp & 0xFFFFFFFFULL);
	const uint64_t keep = (1ULL << 17) | (1ULL << 19) | (1ULL << 20);
	uint64_t mask;
	int rc;

	if (regs->rflags & (1ULL << 14))
		return -ENOTSUP; /* NT: task return */
	rc = linear_copy(v, sp, frame, 12, false);
	if (rc)
		return rc;
	rpl = frame[1] & 3;
	if (rpl < cpl)
		return -EFAULT; /* would be #GP */
	if (rpl > cpl) {
		rc = linear_copy(v, sp + 12, &frame[3], 8, false);
		if (rc)
			return rc;
	}
	rc = load_descriptor(v, s, (uint16_t)frame[1], &s->cs);
	if (rc)
		return rc;
	/* EFLAGS: IOPL only changes at CPL 0, IF only when CPL <= IOPL;
	 * VM, VIF and VIP are not taken from the frame here. */
	mask = 0x3F7FD7ULL & ~keep;
	if (cpl > 0)
		mask &= ~(3ULL << 12);
	if (cpl > ((regs->rflags >> 12) & 3))
		mask &= ~(1ULL << 9);
	regs->rflags = (regs->rflags & ~mask) | (frame[2] & mask) | 2;
	regs->rip = frame[0];
	if (rpl > cpl) {
		rc = load_descriptor(v, s, (uint16_t)frame[4], &s->ss);
		if (rc)
			return rc;
		regs->rsp = frame[3];
		/* Data segments more privileged than the new CPL become null. */
		struct kvm_segment *data[4] = { &s->ds, &s->es, &s->fs, &s->gs };

		for (int i = 0; i < 4; i++)
			if (data[i]->dpl < rpl && !(data[i]->type & 0x8 &&
						    data[i]->type & 0x4)) {
				memset(data[i], 0, sizeof(*data[i]));
				data[i]->unusable = 1;
			}
	} else {
		regs->rsp = (regs->rsp & ~0xFFFFFFFFULL) |
			    ((regs->rsp + 12) & 0xFFFFFFFFULL);
	}
	return 0;
}

bool x86_emulate_complete(struct vcpu *v, char *why, unsigned whylen)
{
	struct kvm_run *run = v->run;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct x86_cpu_mode mode;
	struct x86_gprs gprs;
	struct x86_insn insn;
	unsigned n;
	int rc;

	if (run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    !(run->emulation_failure.flags &
	      KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		snprintf(why, whylen, "no instruction bytes in the exit");
		return false;
	}
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
		snprintf(why, whylen, "cannot read registers: %m");
		return false;
	}
	load_mode(&sregs, &mode);
	load_gprs(&regs, &gprs);
	n = run->emulation_failure.insn_size;
	if (n > sizeof(run->emulation_failure.insn_bytes))
		n = sizeof(run->emulation_failure.insn_bytes);
	rc = x86_decode(run->emulation_failure.insn_bytes, n, &mode, &gprs,
			&insn);
	if (rc) {
		snprintf(why, whylen, "instruction not completed by kite");
		return false;
	}

	switch (insn.kind) {
	case X86_INSN_LDMXCSR:
	case X86_INSN_STMXCSR:
		rc = do_mxcsr(v, &insn);
		break;
	case X86_INSN_CLAC:
		regs.rflags &= ~RFLAGS_AC;
		break;
	case X86_INSN_STAC:
		regs.rflags |= RFLAGS_AC;
		break;
	case X86_INSN_IRET32:
		rc = do_iret32(v, &regs, &sregs);
		if (!rc && ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
			rc = -errno;
		if (rc) {
			snprintf(why, whylen, "iret: %s", strerror(-rc));
			return false;
		}
		if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) {
			snprintf(why, whylen, "cannot set registers: %m");
			return false;
		}
		atomic_fetch_add(&v->nr_emulated, 1);
		return true;
	default:
		rc = 0;
		break;
	}
	if (rc) {
		snprintf(why, whylen, "%s at linear 0x%llx: %s",
			 x86_insn_name(insn.kind),
			 (unsigned long long)insn.mem_linear, strerror(-rc));
		return false;
	}
	regs.rip += insn.len;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) {
		snprintf(why, whylen, "cannot set registers: %m");
		return false;
	}
	if (insn.kind == X86_INSN_INT3 || insn.kind == X86_INSN_INTN) {
		rc = inject_event(v, &insn);
		if (rc) {
			snprintf(why, whylen, "cannot inject %s: %s",
				 x86_insn_name(insn.kind), strerror(-rc));
			return false;
		}
	}
	atomic_fetch_add(&v->nr_emulated, 1);
	return true;
}
