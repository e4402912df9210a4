/* libFuzzer target: the x86 kernel loaders (arch/x86: loader format
 * detection, Linux bzImage/vmlinux/PVH, the BIOS boot, multiboot, ELF64,
 * the host-side unpacking of kernels and initramfs) on an untrusted image,
 * into 64 MiB of fake guest RAM, without KVM.
 *
 * Input: byte 0 picks the entry point and options (see below); with
 * F_SPLIT, a u32 (little-endian) kernel length follows and the bytes
 * after the kernel are the initrd (the multiboot module); the rest is the
 * kernel image.
 *
 * Invariants: no crash (ASan, UBSan), bounded memory (libFuzzer's
 * -rss_limit_mb and -malloc_limit_mb: a decoder that believes a header
 * asking for gigabytes fails the run), every error is a negative errno
 * with a reason, a loaded Linux entry point is below 4 GiB, an unpacked
 * kernel is within KERNEL_UNPACK_MAX_SIZE.
 *
 * The Linux loader takes paths: the kernel and initrd are memfds, reached
 * through /proc/self/fd.  No kernel cache (cache_dir ""): the run writes
 * no file. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/bios.h"
#include "arch/x86/elf.h"
#include "arch/x86/kernel_unpack.h"
#include "arch/x86/linux.h"
#include "arch/x86/loader.h"
#include "arch/x86/multiboot.h"
#include "vmm/memory.h"

#define GUEST_RAM (64ull << 20)

/* Byte 0. */
enum path {
	P_AUTO,         /* x86_kernel_detect, then what kite run does */
	P_LINUX_PVH,
	P_LINUX_BZIMAGE64,
	P_BIOS,         /* --boot bios (bzImages only, as kite run) */
	P_MULTIBOOT,    /* multiboot_load whatever the format */
	P_KERNEL_UNPACK,
	P_INITRD_UNPACK,
	P_ELF64,
	P_COUNT,
};
#define F_SPLIT   0x08  /* kernel length and an initrd follow */
#define F_UNPACK  0x10  /* unpack the initrd on the host (PVM profile) */
#define F_LONGCMD 0x20  /* a command line longer than most kernels take */

static struct guest_memory mem;
static int kernel_fd = -1, initrd_fd = -1;
static char kernel_path[64], initrd_path[64];
static char longcmd[5000];
static bool verbose;  /* KITE_FUZZ_VERBOSE=1: say what each input did */

static void __attribute__((noreturn, format(printf, 1, 2)))
violation(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_loader: invariant broken: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	__builtin_trap();
}

/* A failure must be -errno and say why: a message that is empty or
 * ends at the object's name ("kernel 'x': ") has no reason. */
static void check_error(const char *what, int rc, const char *err)
{
	size_t n = strlen(err);

	if (verbose)
		fprintf(stderr, "fuzz_loader: %s: %d %s\n", what, rc, err);

	if (rc > 0)
		violation("%s returned %d", what, rc);
	if (rc == 0)
		return;
	if (rc < -4095)
		violation("%s returned %d, not an errno", what, rc);
	if (n == 0 || err[n - 1] == ' ' || err[n - 1] == ':')
		violation("%s failed (%s) without a reason: \"%s\"", what,
			  strerror(-rc), err);
}

static void setup(void)
{
	kernel_fd = memfd_create("fuzz-kernel", MFD_CLOEXEC);
	initrd_fd = memfd_create("fuzz-initrd", MFD_CLOEXEC);
	if (kernel_fd < 0 || initrd_fd < 0 ||
	    guest_memory_create(&mem, GUEST_RAM, NULL)) {
		perror("fuzz_loader: setup");
		abort();
	}
	snprintf(kernel_path, sizeof(kernel_path), "/proc/self/fd/%d",
		 kernel_fd);
	snprintf(initrd_path, sizeof(initrd_path), "/proc/self/fd/%d",
		 initrd_fd);
	verbose = getenv("KITE_FUZZ_VERBOSE") != NULL;
	memset(longcmd, 'x', sizeof(longcmd) - 1);
}

static void write_file(int fd, const uint8_t *data, size_t len)
{
	if (ftruncate(fd, 0) ||
	    (len && pwrite(fd, data, len, 0) != (ssize_t)len)) {
		perror("fuzz_loader: write");
		abort();
	}
}

static void linux_load(enum x86_linux_boot boot, bool with_initrd,
		       bool unpack, const char *cmdline)
{
	struct x86_linux_params p = {
		.kernel_path = kernel_path,
		.initrd_path = with_initrd ? initrd_path : NULL,
		.cmdline = cmdline,
		.boot = boot,
		.cache_dir = "",
		.unpack_initrd = unpack,
		/* An ECAM window reserved in e820, as kite run has. */
		.reserved_base = 0xB0000000ull,
		.reserved_size = 0x10000000ull,
	};
	struct x86_linux_info info;
	struct x86_boot_entry e;
	char err[512] = "";
	int rc = x86_linux_load(&mem, &p, &e, &info, err, sizeof(err));

	check_error("x86_linux_load", rc, err);
	if (rc)
		return;
	if (e.rip >= 1ull << 32)
		violation("Linux entry 0x%llx above 4 GiB",
			  (unsigned long long)e.rip);
	if (info.unpacked_size > KERNEL_UNPACK_MAX_SIZE)
		violation("unpacked kernel of %llu bytes",
			  (unsigned long long)info.unpacked_size);
}

static void bios_load(const uint8_t *img, size_t len, const uint8_t *initrd,
		      size_t initrd_len, bool with_initrd, const char *cmdline)
{
	struct x86_bios_linux_params p = {
		.kernel_path = "fuzz",
		.image = img,
		.image_size = len,
		.initrd = with_initrd ? initrd : NULL,
		.initrd_size = initrd_len,
		.initrd_path = "fuzz-initrd",
		.cmdline = cmdline,
	};
	struct x86_bios_linux_info info;
	struct x86_boot_entry e;
	char err[512] = "";

	check_error("x86_bios_load_linux",
		    x86_bios_load_linux(&mem, &p, &e, &info, err, sizeof(err)),
		    err);
}

static void multiboot(const uint8_t *img, size_t len, const uint8_t *mod,
		      size_t mod_len, bool with_mod, const char *cmdline)
{
	struct x86_boot_entry e;
	char err[512] = "";

	check_error("multiboot_load",
		    multiboot_load(&mem, img, len, with_mod ? mod : NULL,
				   mod_len, with_mod ? "fuzz-module" : "",
				   cmdline, &e, err, sizeof(err)),
		    err);
}

static void unpack(const uint8_t *in, size_t len, bool initrd)
{
	enum kernel_compression comp;
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[512] = "";
	int rc = initrd ? initrd_unpack(in, len, &out, &out_len, err,
					 sizeof(err))
			: kernel_unpack(in, len, &out, &out_len, &comp, err,
					sizeof(err));

	check_error(initrd ? "initrd_unpack" : "kernel_unpack", rc, err);
	if (!rc && out_len > KERNEL_UNPACK_MAX_SIZE)
		violation("unpacked %zu bytes", out_len);
	free(out);
}

static void elf64(const uint8_t *in, size_t len)
{
	struct elf64_image img;
	const uint8_t *desc;
	size_t dlen;
	uint64_t entry;
	char err[512] = "";
	int rc = elf64_parse(in, len, &img, err, sizeof(err));

	check_error("elf64_parse", rc, err);
	if (rc)
		return;
	if (elf64_find_note(&img, "Xen", 18, &desc, &dlen) == 0 &&
	    (desc < in || dlen > len || desc - in > (ptrdiff_t)(len - dlen)))
		violation("note descriptor outside the image");
	elf64_entry_paddr(&img, &entry);
	err[0] = '\0';
	check_error("elf64_load", elf64_load(&img, &mem, 0x100000, err,
					     sizeof(err)), err);
}

static void run(uint8_t mode, const uint8_t *kernel, size_t kernel_len,
		const uint8_t *initrd, size_t initrd_len)
{
	bool split = mode & F_SPLIT, unpack_initrd = mode & F_UNPACK;
	const char *cmdline = mode & F_LONGCMD ? longcmd
					       : "console=ttyS0 quiet";
	enum path path = (enum path)(mode % P_COUNT);
	enum x86_linux_boot boot = X86_LINUX_BOOT_AUTO;

	switch (path) {
	case P_AUTO:
		switch (x86_kernel_detect(kernel, kernel_len)) {
		case X86_KERNEL_BZIMAGE:
		case X86_KERNEL_ELF64:
			break;
		case X86_KERNEL_MULTIBOOT:
			multiboot(kernel, kernel_len, initrd, initrd_len,
				  split, cmdline);
			return;
		default:
			return;
		}
		/* fall through */
	case P_LINUX_PVH:
	case P_LINUX_BZIMAGE64:
		write_file(kernel_fd, kernel, kernel_len);
		if (split)
			write_file(initrd_fd, initrd, initrd_len);
		if (path == P_LINUX_PVH)
			boot = X86_LINUX_BOOT_PVH;
		else if (path == P_LINUX_BZIMAGE64)
			boot = X86_LINUX_BOOT_BZIMAGE64;
		linux_load(boot, split, unpack_initrd, cmdline);
		break;
	case P_BIOS:
		if (x86_kernel_detect(kernel, kernel_len) == X86_KERNEL_BZIMAGE)
			bios_load(kernel, kernel_len, initrd, initrd_len, split,
				  cmdline);
		break;
	case P_MULTIBOOT:
		multiboot(kernel, kernel_len, initrd, initrd_len, split,
			  cmdline);
		break;
	case P_KERNEL_UNPACK:
		unpack(kernel, kernel_len, false);
		break;
	case P_INITRD_UNPACK:
		unpack(kernel, kernel_len, true);
		break;
	case P_ELF64:
		elf64(kernel, kernel_len);
		break;
	case P_COUNT:
		break;
	}
}

static uint8_t *memdup(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n ? n : 1);

	if (!c)
		abort();
	memcpy(c, p, n);
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const uint8_t *kernel, *initrd = NULL;
	uint8_t *kcopy, *icopy = NULL;
	size_t kernel_len, initrd_len = 0;

	if (!mem.base)
		setup();
	if (len < 1)
		return 0;
	kernel = data + 1;
	kernel_len = len - 1;
	if (data[0] & F_SPLIT) {
		uint32_t k;

		if (kernel_len < 4)
			return 0;
		memcpy(&k, kernel, 4);
		kernel += 4;
		kernel_len -= 4;
		if (k > kernel_len)
			k = (uint32_t)kernel_len;
		initrd = kernel + k;
		initrd_len = kernel_len - k;
		kernel_len = k;
	}
	/* Each in a buffer of its own, as kite reads files: aligned like
	 * malloc's (the multiboot header is looked for at 4-byte offsets),
	 * and ASan sees a read past either end. */
	kcopy = memdup(kernel, kernel_len);
	if (initrd)
		icopy = memdup(initrd, initrd_len);
	run(data[0], kcopy, kernel_len, icopy, initrd_len);
	free(kcopy);
	free(icopy);
	return 0;
}
