/* pvm-quirks: the instructions that KVM's PVM instruction emulator refuses
 * in guest kernel mode, each checked for its architectural effect.  Under
 * PVM kite completes them itself (arch/x86/emulate.c); on hardware KVM they
 * run natively.  Either way the payload must see the same results:
 *   int3            → #BP (vector 3) with EIP after the int3
 *   int $0x80       → vector 128 with EIP after the instruction
 *   fwait, l/m/sfence → no effect, execution continues
 *   ldmxcsr/stmxcsr → MXCSR written and read back through memory operands
 *                     (plain, base+disp, and base+index*scale addressing) */
#include "lib.h"

static volatile uint32_t bp_count, bp_eip, int80_count, int80_eip;

static void on_breakpoint(struct trap_frame *f)
{
	bp_count++;
	bp_eip = f->eip;
}

static void on_int80(struct trap_frame *f)
{
	int80_count++;
	int80_eip = f->eip;
	f->eax = 0x5A5A; /* visible to the caller */
}

static void enable_sse(void)
{
	uint32_t cr0, cr4;

	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 &= ~(1u << 2); /* EM off */
	cr0 |= 1u << 1;    /* MP on */
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 |= (1u << 9) | (1u << 10); /* OSFXSR, OSXMMEXCPT */
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4));
}

void payload_main(void)
{
	uint32_t after, eax;
	static volatile uint32_t mx[4];
	uint32_t idx = 2;

	trap_set_handler(3, on_breakpoint, 0);
	trap_set_handler(128, on_int80, 0);

	__asm__ volatile("int3\n1:\tmovl $1b, %0" : "=r"(after));
	if (bp_count != 1 || bp_eip != after)
		exit_fail("int3: %u traps, eip 0x%x, expected 1 at 0x%x",
			  bp_count, bp_eip, after);
	kprintf("int3: ok\n");

	__asm__ volatile("movl $0, %%eax\n\tint $0x80\n1:\tmovl $1b, %1"
			 : "=a"(eax), "=r"(after));
	if (int80_count != 1 || int80_eip != after || eax != 0x5A5A)
		exit_fail("int $0x80: %u traps, eip 0x%x (expected 0x%x), eax 0x%x",
			  int80_count, int80_eip, after, eax);
	kprintf("int 0x80: ok\n");

	__asm__ volatile("fwait\n\tlfence\n\tmfence\n\tsfence" ::: "memory");
	kprintf("fwait, fences: ok\n");

	enable_sse();
	mx[0] = 0x1F80 | (3u << 13); /* all masked, round toward zero */
	__asm__ volatile("ldmxcsr %0" : : "m"(mx[0]));
	__asm__ volatile("stmxcsr %0" : "=m"(mx[1]));
	if (mx[1] != mx[0])
		exit_fail("ldmxcsr/stmxcsr: wrote 0x%x, read 0x%x", mx[0], mx[1]);
	/* base + index*scale + disp addressing */
	__asm__ volatile("stmxcsr 4(%0,%1,4)" : : "r"(mx), "r"(idx) : "memory");
	if (mx[3] != mx[0])
		exit_fail("stmxcsr with SIB: read 0x%x, expected 0x%x", mx[3], mx[0]);
	mx[2] = 0x1F80;
	__asm__ volatile("ldmxcsr 8(%0)" : : "r"(mx) : "memory");
	__asm__ volatile("stmxcsr %0" : "=m"(mx[1]));
	if (mx[1] != 0x1F80)
		exit_fail("ldmxcsr base+disp: read back 0x%x, expected 0x1f80", mx[1]);
	kprintf("ldmxcsr/stmxcsr: ok\n");
	exit_pass();
}
