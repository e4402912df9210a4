/* kite-boot-marker VALUE: write one byte VALUE (0-255) to I/O port 0x440,
 * kite's boot-timing marker (arch/x86/platform.h); kite logs the time since
 * its exec when it sees the write.
 *
 * Port I/O from user space needs ioperm(2), which no busybox applet does,
 * and /dev/port exists only with CONFIG_DEVPORT (Debian's cloud kernel has
 * none).  Freestanding, so the initramfs needs no C library: built by
 * tools/mkinitramfs with -static -nostdlib -ffreestanding.
 * Exit status: 0 written, 1 ioperm refused, 2 bad argument. */

#define BOOT_MARKER_PORT 0x440
#define SYS_WRITE  1
#define SYS_IOPERM 173

static long syscall3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static void say(const char *msg)
{
	long len = 0;

	while (msg[len])
		len++;
	syscall3(SYS_WRITE, 2, (long)msg, len);
}

/* Decimal or 0x-prefixed hex, 0-255; -1 for anything else. */
static int parse_byte(const char *s)
{
	int base = 10, value = 0, digits = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (; *s; s++, digits++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return -1;
		value = value * base + d;
		if (value > 255)
			return -1;
	}
	return digits ? value : -1;
}

int boot_marker_main(long *stack);

int boot_marker_main(long *stack)
{
	long argc = stack[0];
	char **argv = (char **)(stack + 1);
	int value = 1;

	if (argc > 2) {
		say("usage: kite-boot-marker [VALUE]\n");
		return 2;
	}
	if (argc == 2) {
		value = parse_byte(argv[1]);
		if (value < 0) {
			say("kite-boot-marker: VALUE must be 0-255\n");
			return 2;
		}
	}
	if (syscall3(SYS_IOPERM, BOOT_MARKER_PORT, 1, 1) != 0) {
		say("kite-boot-marker: ioperm(0x440) refused\n");
		return 1;
	}
	__asm__ volatile("outb %b0, %w1"
			 : : "a"((unsigned char)value), "Nd"((unsigned short)BOOT_MARKER_PORT));
	return 0;
}

/* The kernel starts us with argc at the stack pointer; align the stack for
 * the C call and pass the exit status to exit(2). */
__asm__(".text\n"
	".globl _start\n"
	"_start:\n"
	"\tmov %rsp, %rdi\n"
	"\tand $-16, %rsp\n"
	"\tcall boot_marker_main\n"
	"\tmov %eax, %edi\n"
	"\tmov $60, %eax\n"
	"\tsyscall\n"
	"\thlt\n");
