/* Runtime shared by the test payloads: descriptor tables, traps, COM1,
 * kprintf, verdicts and the multiboot command line.  Kept deliberately
 * small: on a PVM host every instruction here runs in KVM's emulator. */
#include "lib.h"

/* ---- COM1, an 8250/16550 UART ---- */
#define COM1            0x3F8
#define UART_THR        0       /* transmit holding register */
#define UART_IER        1
#define UART_DLL        0       /* divisor latch, with LCR.DLAB */
#define UART_DLM        1
#define UART_FCR        2
#define UART_LCR        3
#define UART_MCR        4
#define UART_LSR        5
#define UART_LCR_DLAB   0x80
#define UART_LCR_8N1    0x03
#define UART_LSR_THRE   0x20    /* transmit holding register empty */

/* Bounded so that a UART that never reports THRE cannot hang us. */
#define UART_POLL_LIMIT 100000

void serial_init(void)
{
	outb(COM1 + UART_IER, 0x00);               /* polled: no interrupts */
	outb(COM1 + UART_LCR, UART_LCR_DLAB);
	outb(COM1 + UART_DLL, 1);                  /* 115200 baud */
	outb(COM1 + UART_DLM, 0);
	outb(COM1 + UART_LCR, UART_LCR_8N1);
	outb(COM1 + UART_FCR, 0x07);               /* enable and clear FIFOs */
	outb(COM1 + UART_MCR, 0x03);               /* DTR, RTS */
}

static void serial_write_byte(uint8_t byte)
{
	for (unsigned i = 0; i < UART_POLL_LIMIT; i++)
		if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
			break;
	outb(COM1 + UART_THR, byte);
}

void serial_putc(char c)
{
	if (c == '\n')
		serial_write_byte('\r');
	serial_write_byte((uint8_t)c);
}

void serial_puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

/* ---- kprintf ---- */
static void put_unsigned(uint32_t value, unsigned base, unsigned width,
			 char pad)
{
	char digits[12];
	unsigned n = 0;

	do {
		digits[n++] = "0123456789abcdef"[value % base];
		value /= base;
	} while (value && n < sizeof(digits));
	while (width > n) {
		serial_putc(pad);
		width--;
	}
	while (n)
		serial_putc(digits[--n]);
}

void kvprintf(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			serial_putc(*fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		unsigned width = 0;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (unsigned)(*fmt++ - '0');
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			serial_puts(s ? s : "(null)");
			break;
		}
		case 'c':
			serial_putc((char)va_arg(ap, int));
			break;
		case 'd': {
			int v = va_arg(ap, int);
			if (v < 0) {
				serial_putc('-');
				put_unsigned(-(uint32_t)v, 10, width, pad);
			} else {
				put_unsigned((uint32_t)v, 10, width, pad);
			}
			break;
		}
		case 'u':
			put_unsigned(va_arg(ap, uint32_t), 10, width, pad);
			break;
		case 'x':
			put_unsigned(va_arg(ap, uint32_t), 16, width, pad);
			break;
		case 'p':
			serial_puts("0x");
			put_unsigned((uint32_t)(uintptr_t)va_arg(ap, void *),
				     16, 8, '0');
			break;
		case '%':
			serial_putc('%');
			break;
		case '\0':
			return;
		default:
			serial_putc('%');
			serial_putc(*fmt);
			break;
		}
	}
}

void kprintf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
}

/* ---- verdicts ---- */
void debug_exit(uint8_t value)
{
	outb(DEBUG_EXIT_PORT, value);
	/* Still here: the VMM has no debug-exit device. */
	serial_puts("FAIL: debug-exit port 0xf4 did not stop the VM\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}

void exit_pass(void)
{
	serial_puts("PASS\n");
	debug_exit(VERDICT_PASS);
}

void exit_fail(const char *fmt, ...)
{
	va_list ap;

	serial_puts("FAIL: ");
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	serial_putc('\n');
	debug_exit(VERDICT_FAIL);
}

/* ---- string functions ---- */
void *memcpy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	uint8_t *d = dst;

	while (n--)
		*d++ = (uint8_t)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (uint8_t)*a - (uint8_t)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (uint8_t)*a - (uint8_t)*b;
		if (!*a)
			return 0;
	}
	return 0;
}

/* ---- spinlock ---- */
void spin_lock(struct spinlock *lock)
{
	while (__atomic_exchange_n(&lock->locked, 1, __ATOMIC_ACQUIRE))
		while (lock->locked)
			cpu_relax();
}

void spin_unlock(struct spinlock *lock)
{
	__atomic_store_n(&lock->locked, 0, __ATOMIC_RELEASE);
}

/* ---- descriptor tables ---- */
struct table_pointer {
	uint16_t limit;
	uint32_t base;
} __attribute__((packed));

/* Segment descriptors (Intel SDM Vol. 3 §3.4.5): flat 4 GiB, G=1.  The
 * layout is the one x86-64 Linux uses (kernel code, kernel data, 32-bit
 * user code, user data, 64-bit user code), because a PVM host runs guest
 * user mode natively only with the host's own user selectors (see
 * README.md); SYSENTER_CS = 0x10 also fits it. */
#define GDT_FLAT32(access) \
	(0x00CF000000000000ULL | ((uint64_t)(access) << 40) | 0xFFFFULL)
#define GDT_FLAT64(access) \
	(0x00AF000000000000ULL | ((uint64_t)(access) << 40) | 0xFFFFULL)

static uint64_t gdt[9] = {
	0,
	GDT_FLAT32(0x9A),   /* 0x08: ring-0 32-bit code */
	GDT_FLAT64(0x9A),   /* 0x10: ring-0 64-bit code */
	GDT_FLAT32(0x92),   /* 0x18: ring-0 data */
	GDT_FLAT32(0xFA),   /* 0x23: ring-3 32-bit code */
	GDT_FLAT32(0xF2),   /* 0x2b: ring-3 data */
	GDT_FLAT64(0xFA),   /* 0x33: ring-3 64-bit code */
	0, 0,               /* 0x38: TSS (16 bytes in long mode) */
};

static void gdt_load(void)
{
	struct table_pointer gdtr = {
		.limit = sizeof(gdt) - 1,
		.base = (uint32_t)(uintptr_t)gdt,
	};

	__asm__ volatile(
		"lgdt %0\n\t"
		"ljmp %1, $1f\n"
		"1:\n\t"
		"mov %2, %%ax\n\t"
		"mov %%ax, %%ds\n\t"
		"mov %%ax, %%es\n\t"
		"mov %%ax, %%ss\n\t"
		"mov %%ax, %%fs\n\t"
		"mov %%ax, %%gs\n\t"
		:
		: "m"(gdtr), "i"(SEL_KERNEL_CODE), "i"(SEL_KERNEL_DATA)
		: "eax", "memory");
}

void gdt_load_tss(const void *tss, uint32_t limit)
{
	uint32_t base = (uint32_t)(uintptr_t)tss;

	/* Available TSS, type 9, present, DPL 0, byte granular; in IA-32e
	 * mode the same type means a 64-bit TSS, whose descriptor's upper
	 * half (base bits 63..32) stays zero. */
	gdt[SEL_TSS >> 3] = (uint64_t)(limit & 0xFFFF) |
			    ((uint64_t)(base & 0xFFFFFF) << 16) |
			    (0x89ULL << 40) |
			    ((uint64_t)((limit >> 16) & 0xF) << 48) |
			    ((uint64_t)(base >> 24) << 56);
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS) : "memory");
}

#define IDT_ENTRIES 129   /* vectors 0..128: exceptions and int 0x80 */

static uint64_t idt[IDT_ENTRIES];
static trap_handler_fn trap_handlers[IDT_ENTRIES];

#define NR_STUBS 48       /* exceptions 0..31 and PIC IRQ vectors 32..47 */
extern const uint32_t trap_stub_table[NR_STUBS];
extern char trap_stub_128[];

static void idt_set_gate(unsigned vector, uint32_t handler, unsigned dpl)
{
	/* 32-bit interrupt gate (type 0xE): IF is cleared on entry. */
	idt[vector] = (uint64_t)(handler & 0xFFFF) |
		      ((uint64_t)SEL_KERNEL_CODE << 16) |
		      ((uint64_t)(0x8E | (dpl & 3) << 5) << 40) |
		      ((uint64_t)(handler >> 16) << 48);
}

static void idt_load(void)
{
	struct table_pointer idtr = {
		.limit = sizeof(idt) - 1,
		.base = (uint32_t)(uintptr_t)idt,
	};

	__asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
}

static void idt_build(void)
{
	for (unsigned v = 0; v < 32; v++)
		idt_set_gate(v, trap_stub_table[v], 0);
}

void cpu_tables_load(void)
{
	gdt_load();
	idt_load();
}

int trap_set_handler(unsigned vector, trap_handler_fn fn, unsigned dpl)
{
	if (vector >= IDT_ENTRIES || (vector >= NR_STUBS && vector != 128))
		return -1;
	trap_handlers[vector] = fn;
	idt_set_gate(vector, vector == 128 ? (uint32_t)(uintptr_t)trap_stub_128
					   : trap_stub_table[vector],
		     dpl);
	return 0;
}

static const char *const exception_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "?9", "#TS", "#NP", "#SS", "#GP", "#PF", "?15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void trap_dispatch(struct trap_frame *frame);
void trap_dispatch(struct trap_frame *frame)
{
	unsigned v = frame->vector;

	if (v < IDT_ENTRIES && trap_handlers[v]) {
		trap_handlers[v](frame);
		return;
	}
	exit_fail("unexpected trap %u (%s) error=%x at cs:eip=%x:%x eflags=%x",
		  v, v < 32 && exception_names[v] ? exception_names[v] : "int",
		  frame->error, frame->cs, frame->eip, frame->eflags);
}

/* ---- boot information ---- */
static const struct multiboot_info *the_boot_info;
static const char *the_cmdline = "";

const struct multiboot_info *boot_info(void)
{
	return the_boot_info;
}

const char *boot_cmdline(void)
{
	return the_cmdline;
}

int cmdline_get(const char *key, char *value, size_t size)
{
	size_t key_len = strlen(key);
	const char *p = the_cmdline;

	if (!size)
		return -1;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *word = p;
		while (*p && *p != ' ')
			p++;
		if ((size_t)(p - word) > key_len && word[key_len] == '=' &&
		    !strncmp(word, key, key_len)) {
			const char *v = word + key_len + 1;
			size_t n = 0;
			while (v + n < p && n < size - 1) {
				value[n] = v[n];
				n++;
			}
			value[n] = '\0';
			return 0;
		}
	}
	return -1;
}

int parse_u32(const char *s, uint32_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -1;
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -1;
		v = v * base + d;
		if (v > 0xFFFFFFFFu)
			return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

/* ---- entry from start.S ---- */
void __attribute__((noreturn)) kernel_entry(uint32_t magic,
					     const struct multiboot_info *mbi);
void kernel_entry(uint32_t magic, const struct multiboot_info *mbi)
{
	idt_build();
	cpu_tables_load();
	serial_init();
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
		exit_fail("boot magic %x, expected %x", magic,
			  MULTIBOOT_BOOTLOADER_MAGIC);
	the_boot_info = mbi;
	if (mbi->flags & MB_INFO_CMDLINE && mbi->cmdline)
		the_cmdline = (const char *)(uintptr_t)mbi->cmdline;
	payload_main();
	exit_pass();
}
