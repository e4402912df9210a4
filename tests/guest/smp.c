/* smp: the boot CPU brings up a second vCPU with INIT-SIPI-SIPI.
 *
 * The application processor (APIC id 1) starts in real mode at the
 * trampoline (copied to TRAMPOLINE_BASE, below 1 MiB and 4 KiB aligned as
 * a SIPI vector requires), switches to 32-bit protected mode with the
 * trampoline's own GDT, loads the payload's GDT and IDT, reads its APIC id
 * from its local APIC and increments a shared counter with a locked add.
 * The boot CPU waits a bounded time for that check-in.  Run with -c 2.
 * Command line: wait=N bounds the wait to N million TSC cycles (with -c 1,
 * a short wait makes a quick FAIL).
 *
 * Proves: a second vCPU exists, sits in wait-for-SIPI, is started by the
 * in-kernel LAPIC's INIT/SIPI at vector << 12 in real mode, shares memory
 * with the boot CPU, and has its own LAPIC with a distinct APIC id. */
#include "lib.h"

/* 0x8000-0x8FFF is left free by kite's boot structures (arch/x86/boot.h). */
#define TRAMPOLINE_BASE   0x8000u
#define TARGET_APIC_ID    1u

#define MSR_APIC_BASE     0x1Bu
#define APIC_BASE_ENABLE  (1u << 11)
#define APIC_BASE_MASK    0xFFFFF000u

/* Local APIC registers (Intel SDM Vol. 3 §11.4.1, §11.6.1). */
#define LAPIC_ID          0x020
#define LAPIC_SVR         0x0F0
#define LAPIC_ICR_LOW     0x300
#define LAPIC_ICR_HIGH    0x310
#define SVR_APIC_ENABLE   (1u << 8)
#define SVR_VECTOR        0xFFu
#define ICR_DM_INIT       (5u << 8)
#define ICR_DM_STARTUP    (6u << 8)
#define ICR_DELIVERY_BUSY (1u << 12)
#define ICR_LEVEL_ASSERT  (1u << 14)
#define ICR_TRIGGER_LEVEL (1u << 15)

/* How long the boot CPU waits for the AP, in millions of TSC cycles
 * (seconds at any plausible TSC rate; the test's own timeout is the outer
 * bound).  "wait=N" on the command line overrides it. */
#define CHECKIN_WAIT_MCYCLES 20000u
#define ICR_POLL_LIMIT     100000u

#define AP_STACK_SIZE      8192

static uintptr_t lapic_base;
static struct spinlock console_lock;
static uint8_t ap_stack[AP_STACK_SIZE] __attribute__((aligned(16)));
static volatile uint32_t ap_checkins;
static volatile uint32_t ap_apic_id = 0xFFFFFFFFu;

/* The AP's first instructions: real mode at CS = TRAMPOLINE_BASE >> 4,
 * IP = 0.  Position-dependent on TRAMPOLINE_BASE; copied there at run
 * time, so it lives in .rodata.  The two words at the end are filled in
 * by the boot CPU: the AP's stack top and its 32-bit entry point. */
__asm__(
	".section .rodata\n"
	".p2align 4\n"
	".globl ap_trampoline_start, ap_trampoline_end\n"
	".globl ap_trampoline_stack, ap_trampoline_entry\n"
	".code16\n"
	"ap_trampoline_start:\n\t"
	"cli\n\t"
	"cld\n\t"
	"mov %cs, %ax\n\t"
	"mov %ax, %ds\n\t"
	"lgdtl (ap_trampoline_gdt_pointer - ap_trampoline_start)\n\t"
	"mov %cr0, %eax\n\t"
	"or $1, %eax\n\t"                      /* CR0.PE */
	"mov %eax, %cr0\n\t"
	"ljmpl $0x08, $(0x8000 + ap_trampoline_32 - ap_trampoline_start)\n"
	".code32\n"
	"ap_trampoline_32:\n\t"
	"mov $0x10, %eax\n\t"
	"mov %eax, %ds\n\t"
	"mov %eax, %es\n\t"
	"mov %eax, %ss\n\t"
	"mov %eax, %fs\n\t"
	"mov %eax, %gs\n\t"
	"mov (0x8000 + ap_trampoline_stack - ap_trampoline_start), %esp\n\t"
	"mov (0x8000 + ap_trampoline_entry - ap_trampoline_start), %eax\n\t"
	"call *%eax\n"
	"1:\n\t"
	"cli\n\t"
	"hlt\n\t"
	"jmp 1b\n"
	".p2align 3\n"
	"ap_trampoline_gdt:\n\t"
	".quad 0\n\t"
	".quad 0x00CF9A000000FFFF\n\t"         /* 0x08: flat 32-bit code */
	".quad 0x00CF92000000FFFF\n"           /* 0x10: flat data */
	"ap_trampoline_gdt_pointer:\n\t"
	".word 23\n\t"
	".long 0x8000 + ap_trampoline_gdt - ap_trampoline_start\n"
	"ap_trampoline_stack:\n\t"
	".long 0\n"
	"ap_trampoline_entry:\n\t"
	".long 0\n"
	"ap_trampoline_end:\n"
	".text\n");

extern const char ap_trampoline_start[], ap_trampoline_end[];
extern const char ap_trampoline_stack[], ap_trampoline_entry[];

_Static_assert(TRAMPOLINE_BASE == 0x8000,
	       "the trampoline above is assembled for 0x8000");

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}

static uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(lapic_base + reg);
}

static void lapic_write(uint32_t reg, uint32_t value)
{
	mmio_write32(lapic_base + reg, value);
}

static void locked_printf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static void locked_printf(const char *fmt, ...)
{
	va_list ap;

	spin_lock(&console_lock);
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	spin_unlock(&console_lock);
}

/* Send one IPI (Intel SDM Vol. 3 §11.6.1) and wait until the local APIC
 * has taken it. */
static void lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
	lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
	lapic_write(LAPIC_ICR_LOW, icr_low);
	for (unsigned i = 0; i < ICR_POLL_LIMIT; i++)
		if (!(lapic_read(LAPIC_ICR_LOW) & ICR_DELIVERY_BUSY))
			return;
	exit_fail("local APIC still busy sending IPI %x", icr_low);
}

/* The AP, in 32-bit protected mode on its own stack. */
void ap_main(void);
void ap_main(void)
{
	cpu_tables_load();
	uint32_t id = lapic_read(LAPIC_ID) >> 24;

	locked_printf("AP: in protected mode, APIC id %u\n", id);
	ap_apic_id = id;
	__atomic_fetch_add(&ap_checkins, 1, __ATOMIC_SEQ_CST);
	/* Done: halt for good.  The boot CPU ends the VM. */
}

void payload_main(void)
{
	char text[16];
	uint32_t wait_mcycles = CHECKIN_WAIT_MCYCLES;

	if (cmdline_get("wait", text, sizeof(text)) == 0 &&
	    parse_u32(text, &wait_mcycles) < 0)
		exit_fail("bad wait '%s' on the command line", text);

	uint64_t apic_base_msr = rdmsr(MSR_APIC_BASE);

	if (!(apic_base_msr & APIC_BASE_ENABLE))
		exit_fail("local APIC disabled (IA32_APIC_BASE=%x)",
			  (uint32_t)apic_base_msr);
	lapic_base = (uint32_t)apic_base_msr & APIC_BASE_MASK;
	lapic_write(LAPIC_SVR, SVR_APIC_ENABLE | SVR_VECTOR);
	uint32_t bsp_id = lapic_read(LAPIC_ID) >> 24;
	locked_printf("BSP: APIC id %u, local APIC at 0x%x\n", bsp_id,
		      (uint32_t)lapic_base);
	if (bsp_id == TARGET_APIC_ID)
		exit_fail("boot CPU has APIC id %u, the id of the AP to start",
			  bsp_id);

	size_t size = (size_t)(ap_trampoline_end - ap_trampoline_start);
	uint8_t *trampoline = (uint8_t *)(uintptr_t)TRAMPOLINE_BASE;
	memcpy(trampoline, ap_trampoline_start, size);
	uint32_t stack_top = (uint32_t)(uintptr_t)(ap_stack + sizeof(ap_stack));
	uint32_t entry = (uint32_t)(uintptr_t)ap_main;
	memcpy(trampoline + (ap_trampoline_stack - ap_trampoline_start),
	       &stack_top, sizeof(stack_top));
	memcpy(trampoline + (ap_trampoline_entry - ap_trampoline_start),
	       &entry, sizeof(entry));

	/* The universal start-up sequence: INIT assert, INIT de-assert,
	 * then STARTUP twice with the trampoline's page number. */
	uint32_t vector = TRAMPOLINE_BASE >> 12;
	locked_printf("BSP: INIT-SIPI-SIPI to APIC id %u, vector 0x%x\n",
		      TARGET_APIC_ID, vector);
	lapic_send_ipi(TARGET_APIC_ID,
		       ICR_DM_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL);
	lapic_send_ipi(TARGET_APIC_ID, ICR_DM_INIT | ICR_TRIGGER_LEVEL);
	lapic_send_ipi(TARGET_APIC_ID, ICR_DM_STARTUP | vector);
	lapic_send_ipi(TARGET_APIC_ID, ICR_DM_STARTUP | vector);

	uint64_t budget = (uint64_t)wait_mcycles * 1000000u;
	uint64_t start = rdtsc();
	while (__atomic_load_n(&ap_checkins, __ATOMIC_SEQ_CST) == 0 &&
	       rdtsc() - start < budget)
		cpu_relax();

	uint32_t checkins = __atomic_load_n(&ap_checkins, __ATOMIC_SEQ_CST);
	if (checkins == 0)
		exit_fail("AP (APIC id %u) did not check in", TARGET_APIC_ID);
	spin_lock(&console_lock);
	kprintf("BSP: AP checked in, count %u, APIC id %u\n", checkins,
		ap_apic_id);
	if (checkins != 1)
		exit_fail("expected 1 check-in, got %u", checkins);
	if (ap_apic_id != TARGET_APIC_ID)
		exit_fail("AP reports APIC id %u, expected %u", ap_apic_id,
			  TARGET_APIC_ID);
	exit_pass();
}
