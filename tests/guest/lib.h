/* The small runtime shared by the freestanding test payloads.
 *
 * A payload provides payload_main(); lib.c's kernel_entry() (called from
 * start.S) checks the multiboot handoff, loads the GDT and IDT, starts the
 * serial port and then calls it.  Verdicts travel two ways: a line on COM1
 * ("PASS" or "FAIL: reason") and a value written to the debug-exit port
 * (see README.md for the convention). */
#ifndef KITE_TESTS_GUEST_LIB_H
#define KITE_TESTS_GUEST_LIB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- verdicts: value v written to port 0xF4 makes kite exit (v<<1)|1 ---- */
#define DEBUG_EXIT_PORT 0xF4
#define VERDICT_PASS    0x10   /* kite exit status 33 */
#define VERDICT_FAIL    0x11   /* kite exit status 35 */

/* ---- multiboot v1 information (Multiboot Specification 0.6.96 §3.3) ---- */
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002
#define MB_INFO_MEMORY  (1u << 0)  /* mem_lower, mem_upper valid */
#define MB_INFO_CMDLINE (1u << 2)  /* cmdline valid */
#define MB_INFO_MODS    (1u << 3)
#define MB_INFO_MMAP    (1u << 6)  /* mmap_length, mmap_addr valid */

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower;        /* KiB below 1 MiB */
	uint32_t mem_upper;        /* KiB from 1 MiB to the first hole */
	uint32_t boot_device;
	uint32_t cmdline;          /* guest-physical, NUL-terminated */
	uint32_t mods_count;
	uint32_t mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length;
	uint32_t mmap_addr;
} __attribute__((packed));

/* An mmap entry; `size` does not count itself. */
struct multiboot_mmap_entry {
	uint32_t size;
	uint64_t addr;
	uint64_t len;
	uint32_t type;             /* 1 = available RAM */
} __attribute__((packed));

/* ---- segments (GDT built by lib.c, laid out as x86-64 Linux does) ---- */
#define SEL_KERNEL_CODE   0x08         /* 32-bit, ring 0 */
#define SEL_KERNEL_CODE64 0x10         /* 64-bit, ring 0 */
#define SEL_KERNEL_DATA   0x18
#define SEL_USER_CODE32   (0x20 | 3)
#define SEL_USER_DATA     (0x28 | 3)
#define SEL_USER_CODE64   (0x30 | 3)
#define SEL_TSS           0x38         /* 16 bytes: room for a 64-bit TSS */

/* Load lib's GDT (reloading every segment register) and IDT on this CPU:
 * kernel_entry() does it on the boot CPU, other CPUs call it themselves. */
void cpu_tables_load(void);

/* Install and load (ltr) a TSS descriptor for `tss` of `limit` + 1 bytes
 * (a 32-bit TSS in protected mode, a 64-bit one in IA-32e mode). */
void gdt_load_tss(const void *tss, uint32_t limit);

/* ---- traps ---- */
/* What start.S's trap_common leaves on the stack. */
struct trap_frame {
	uint32_t edi, esi, ebp, esp_unused, ebx, edx, ecx, eax; /* pushal */
	uint32_t vector, error;
	uint32_t eip, cs, eflags;
	uint32_t user_esp, user_ss;  /* only when the trap came from CPL3 */
};

typedef void (*trap_handler_fn)(struct trap_frame *frame);

/* Route `vector` (an exception, 0..31, or int $0x80, 128) to `fn`
 * through a gate of privilege `dpl`; the handler may edit the frame, and
 * the stub returns with iret.  Returns -1 for other vectors.  Unrouted
 * exceptions report FAIL and end the VM. */
int trap_set_handler(unsigned vector, trap_handler_fn fn, unsigned dpl);

/* ---- port I/O and small CPU helpers ---- */
static inline void outb(uint16_t port, uint8_t value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t value;
	__asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline uint32_t mmio_read32(uintptr_t addr)
{
	return *(volatile uint32_t *)addr;
}

static inline void mmio_write32(uintptr_t addr, uint32_t value)
{
	*(volatile uint32_t *)addr = value;
}

/* A test-and-set spinlock, for payloads whose CPUs share the serial port. */
struct spinlock {
	volatile uint32_t locked;
};
void spin_lock(struct spinlock *lock);
void spin_unlock(struct spinlock *lock);

/* ---- serial console (COM1) ---- */
void serial_init(void);
void serial_putc(char c);            /* "\n" goes out as "\r\n" */
void serial_puts(const char *s);
/* printf subset: %s %c %d %u %x %p %%, with optional '0' and width. */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);

/* ---- ending the VM ---- */
/* Write `value` to the debug-exit port.  Never returns: if the VMM did not
 * stop us, say so and halt. */
void __attribute__((noreturn)) debug_exit(uint8_t value);
/* Print "PASS" and exit with VERDICT_PASS. */
void __attribute__((noreturn)) exit_pass(void);
/* Print "FAIL: <reason>" and exit with VERDICT_FAIL. */
void __attribute__((noreturn)) exit_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* ---- boot information ---- */
/* The multiboot info the loader passed, and its command line ("" if none). */
const struct multiboot_info *boot_info(void);
const char *boot_cmdline(void);
/* Find "key=value" among the space-separated words of the command line;
 * copies the value (NUL-terminated, truncated to size - 1) and returns 0, or
 * returns -1 if the key is absent. */
int cmdline_get(const char *key, char *value, size_t size);
/* Parse a decimal or 0x-prefixed hexadecimal unsigned number; -1 on junk. */
int parse_u32(const char *s, uint32_t *out);

/* ---- freestanding string functions (gcc may emit calls to these) ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- provided by each payload ---- */
/* Called once on the boot CPU; returning counts as PASS. */
void payload_main(void);

#endif
