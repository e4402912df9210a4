/* usermode: a long computation in guest user mode (CPL3), and the way back.
 *
 * Ring 0 (the 32-bit multiboot code) turns on IA-32e paging (an identity
 * map of the first GiB, user-accessible), loads a 64-bit TSS and IDT and
 * enters 64-bit ring 3 with iretq.  Ring 3 then:
 *   - stores its CS, whose low bits are the CPL;
 *   - runs USER_ITERATIONS rounds of a xorshift checksum (the same as
 *     README.md gives; the expected value was computed on a host);
 *   - executes a privileged instruction (mov %cr0, %rax), which must raise
 *     #GP at CPL3.  That fault is its way back: the ring-0 handler records
 *     the frame the CPU pushed and returns to 32-bit ring-0 code, which
 *     checks everything and reports.
 * So the verdict rests on what the CPU itself reports (the CS in the
 * exception frame, the faulting RIP), not only on what ring 3 claims.
 *
 * Why 64-bit ring 3 and not 32-bit: on a PVM host, guest kernel mode is
 * emulated, and guest user mode runs natively only in IA-32e mode with the
 * 64-bit user code segment.  32-bit ring 3 (with or without paging) is
 * emulated instruction by instruction, about 5 us per loop round here, so
 * USER_ITERATIONS would take minutes instead of a fraction of a second.
 * See README.md.
 *
 * Command line: iterations=N overrides USER_ITERATIONS (the checksum is
 * then reported but only checked for the default count). */
#include "lib.h"

#define USER_ITERATIONS   50000000u
#define USER_CHECKSUM     0x3b53c061u   /* of USER_ITERATIONS rounds */

#define VECTOR_GP         13

#define CR0_PG            (1u << 31)
#define CR4_PAE           (1u << 5)
#define MSR_EFER          0xC0000080u
#define EFER_LME          (1u << 8)

#define PTE_PRESENT       (1u << 0)
#define PTE_WRITABLE      (1u << 1)
#define PTE_USER          (1u << 2)
#define PTE_LARGE         (1u << 7)    /* 2 MiB page in a page directory */
#define PTE_TABLE         (PTE_PRESENT | PTE_WRITABLE | PTE_USER)

#define STACK_SIZE        8192

/* 64-bit TSS (Intel SDM Vol. 3 §8.7); no I/O bitmap. */
struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/* 64-bit interrupt gate (Intel SDM Vol. 3 §6.14.1). */
struct idt64_gate {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t reserved;
} __attribute__((packed));

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t page_directory[512] __attribute__((aligned(4096)));
static uint8_t user_stack[STACK_SIZE] __attribute__((aligned(16)));
static uint8_t kernel_stack[STACK_SIZE] __attribute__((aligned(16)));
static struct tss64 tss;
static struct idt64_gate idt64[256];

/* Shared with the assembly below (hence not static). */
struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) idt64_pointer;
uint32_t user_iterations = USER_ITERATIONS;
uint32_t user_stack_top;
volatile uint32_t user_cs, user_sum, user_rounds;
/* The exception frame that brought us back to ring 0. */
volatile uint32_t trap_vector, trap_error, trap_rip, trap_cs, trap_rflags;

void __attribute__((noreturn)) usermode_report(void);

__asm__(
	".text\n"
	".code64\n"
	/* Reached from compat mode by ljmp to the 64-bit kernel CS. */
	"usermode_enter64:\n\t"
	"mov $0x18, %eax\n\t"                 /* SEL_KERNEL_DATA */
	"mov %eax, %ds\n\t"
	"mov %eax, %es\n\t"
	"mov %eax, %ss\n\t"
	"lidt idt64_pointer(%rip)\n\t"
	"mov user_stack_top(%rip), %eax\n\t"
	"pushq $0x2b\n\t"                     /* ss: SEL_USER_DATA */
	"pushq %rax\n\t"                      /* rsp */
	"pushq $0x2\n\t"                      /* rflags: IF=0, IOPL=0 */
	"pushq $0x33\n\t"                     /* cs: SEL_USER_CODE64 */
	"lea user64_main(%rip), %rax\n\t"
	"pushq %rax\n\t"
	"iretq\n"

	/* Ring 3.  Same rounds as README.md's user_checksum(). */
	"user64_main:\n\t"
	"mov %cs, %eax\n\t"
	"mov %eax, user_cs(%rip)\n\t"
	"mov user_iterations(%rip), %r8d\n\t"
	"mov $0x2545F491, %esi\n\t"           /* x */
	"xor %edi, %edi\n\t"                  /* sum */
	"xor %ecx, %ecx\n\t"                  /* i */
	"test %r8d, %r8d\n\t"
	"jz 2f\n"
	"1:\n\t"
	"mov %esi, %eax\n\t"
	"shl $13, %eax\n\t"
	"xor %eax, %esi\n\t"
	"mov %esi, %eax\n\t"
	"shr $17, %eax\n\t"
	"xor %eax, %esi\n\t"
	"mov %esi, %eax\n\t"
	"shl $5, %eax\n\t"
	"xor %eax, %esi\n\t"
	"rol $1, %edi\n\t"
	"lea (%rsi,%rcx), %eax\n\t"
	"xor %eax, %edi\n\t"
	"inc %ecx\n\t"
	"cmp %r8d, %ecx\n\t"
	"jne 1b\n"
	"2:\n\t"
	"mov %edi, user_sum(%rip)\n\t"
	"mov %ecx, user_rounds(%rip)\n"
	".globl user64_privileged\n"
	"user64_privileged:\n\t"
	"mov %cr0, %rax\n\t"                  /* must raise #GP at CPL3 */
	"ud2\n"                               /* it did not: #UD reports that */

	/* Ring-0 trap entry, one per vector (the CPU pushes an error code
	 * for 8, 10-14, 17, 21, 29, 30; the others push a 0 in its place):
	 * record the frame, then return to 32-bit ring-0 code on this (TSS
	 * rsp0) stack. */
	".altmacro\n"
	".macro TRAP64 vec, has_error\n"
	"trap64_\\vec:\n\t"
	".if \\has_error == 0\n\t"
	"pushq $0\n\t"
	".endif\n\t"
	"pushq $\\vec\n\t"
	"jmp trap64_common\n"
	".endm\n"
	".set vec, 0\n"
	".rept 256\n\t"
	"TRAP64 %vec, %((vec == 8) || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)\n"
	".set vec, vec + 1\n"
	".endr\n"
	".noaltmacro\n"
	"trap64_common:\n\t"
	"mov $0x18, %eax\n\t"                 /* SEL_KERNEL_DATA */
	"mov %eax, %ds\n\t"
	"mov %eax, %es\n\t"
	"mov %eax, %ss\n\t"                   /* was NULL after a CPL change */
	"popq %rax\n\t"
	"mov %eax, trap_vector(%rip)\n\t"
	"popq %rax\n\t"
	"mov %eax, trap_error(%rip)\n\t"
	"popq %rax\n\t"
	"mov %eax, trap_rip(%rip)\n\t"
	"popq %rax\n\t"
	"mov %eax, trap_cs(%rip)\n\t"
	"popq %rax\n\t"
	"mov %eax, trap_rflags(%rip)\n\t"
	"addq $16, %rsp\n\t"                  /* rsp, ss */
	"pushq $0x08\n\t"                     /* SEL_KERNEL_CODE (32-bit) */
	"lea usermode_report(%rip), %rax\n\t"
	"pushq %rax\n\t"
	"lretq\n"

	".section .rodata\n"
	".p2align 2\n"
	"trap64_table:\n"
	".altmacro\n"
	".set vec, 0\n"
	".rept 256\n\t"
	".macro TRAP64_ADDR v\n\t"
	".long trap64_\\v\n\t"
	".endm\n\t"
	"TRAP64_ADDR %vec\n\t"
	".purgem TRAP64_ADDR\n"
	".set vec, vec + 1\n"
	".endr\n"
	".noaltmacro\n"
	".text\n"
	".code32\n");

extern char usermode_enter64[], user64_privileged[];
extern const uint32_t trap64_table[256];   /* all below 4 GiB */

static inline void wrmsr(uint32_t msr, uint64_t value)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value),
			 "d"((uint32_t)(value >> 32)));
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}

/* Identity-map the first GiB with user-accessible 2 MiB pages and switch
 * to IA-32e (compatibility) mode (Intel SDM Vol. 3 §10.8.5). */
static void enter_long_mode(void)
{
	for (unsigned i = 0; i < 512; i++)
		page_directory[i] = ((uint64_t)i << 21) | PTE_TABLE | PTE_LARGE;
	pdpt[0] = (uint32_t)(uintptr_t)page_directory | PTE_TABLE;
	pml4[0] = (uint32_t)(uintptr_t)pdpt | PTE_TABLE;

	uint32_t cr0, cr4;
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | CR4_PAE));
	__asm__ volatile("mov %0, %%cr3" : : "r"(pml4) : "memory");
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_LME);
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | CR0_PG) : "memory");
}

static void build_idt64(void)
{
	for (unsigned v = 0; v < 256; v++) {
		uint32_t handler = trap64_table[v];
		idt64[v] = (struct idt64_gate){
			.offset_low = (uint16_t)handler,
			.selector = SEL_KERNEL_CODE64,
			.type_attr = 0x8E,   /* present, DPL 0, interrupt gate */
			.offset_mid = (uint16_t)(handler >> 16),
			.offset_high = 0,
		};
	}
	idt64_pointer.limit = sizeof(idt64) - 1;
	idt64_pointer.base = (uint32_t)(uintptr_t)idt64;
}

void usermode_report(void)
{
	unsigned cpl = user_cs & 3;

	kprintf("kernel: back in ring 0: vector %u from cs=0x%x rip=0x%x\n",
		trap_vector, trap_cs, trap_rip);
	kprintf("user: ran with CS=0x%x (CPL%u)\n", user_cs, cpl);
	kprintf("user: %u iterations, checksum 0x%08x\n", user_rounds,
		user_sum);
	if (cpl != 3)
		exit_fail("user code ran at CPL%u, not CPL3", cpl);
	if (trap_cs != SEL_USER_CODE64)
		exit_fail("exception frame has cs=0x%x, expected 0x%x (CPL3)",
			  trap_cs, SEL_USER_CODE64);
	if (trap_vector != VECTOR_GP ||
	    trap_rip != (uint32_t)(uintptr_t)user64_privileged)
		exit_fail("mov from cr0 at CPL3 did not raise #GP at 0x%x "
			  "(got vector %u at 0x%x)",
			  (uint32_t)(uintptr_t)user64_privileged, trap_vector,
			  trap_rip);
	kprintf("user: mov from cr0 raised #GP, as it must at CPL3\n");
	if (user_rounds != user_iterations)
		exit_fail("user loop ran %u of %u rounds", user_rounds,
			  user_iterations);
	if (user_iterations == USER_ITERATIONS && user_sum != USER_CHECKSUM)
		exit_fail("checksum 0x%08x, expected 0x%08x", user_sum,
			  USER_CHECKSUM);
	exit_pass();
}

void payload_main(void)
{
	char text[16];

	if (cmdline_get("iterations", text, sizeof(text)) == 0 &&
	    parse_u32(text, &user_iterations) < 0)
		exit_fail("bad iterations '%s' on the command line", text);

	enter_long_mode();
	tss.rsp[0] = (uint32_t)(uintptr_t)(kernel_stack + sizeof(kernel_stack));
	tss.iomap_base = sizeof(tss);
	gdt_load_tss(&tss, sizeof(tss) - 1);
	build_idt64();
	user_stack_top = (uint32_t)(uintptr_t)(user_stack + sizeof(user_stack));

	kprintf("kernel: IA-32e paging on, entering 64-bit ring 3 with iretq\n");
	__asm__ volatile("ljmp %0, $usermode_enter64" : : "i"(SEL_KERNEL_CODE64));
	__builtin_unreachable();
}
