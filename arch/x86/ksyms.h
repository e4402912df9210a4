/* Guest kernel symbols, for naming the guest code in error reports.
 *
 * Kite enters Linux past its decompressor, which is where KASLR would move
 * the kernel, so the kernel runs at its link addresses and the System.map
 * that Debian installs next to it (/boot/System.map-VERSION) names every
 * text address exactly. */
#ifndef KITE_ARCH_X86_KSYMS_H
#define KITE_ARCH_X86_KSYMS_H

#include <stddef.h>
#include <stdint.h>

struct ksym {
	uint64_t addr;
	char *name;
};

struct ksyms {
	struct ksym *syms; /* text symbols sorted by address */
	size_t nr;
};

/* Load the text symbols of System.map file |path|; -errno on failure. */
int ksyms_load(struct ksyms *k, const char *path);

/* Find the System.map for a kernel image: "System.map-VERSION" in the
 * image's directory, VERSION being the first word of |kernel_version|.
 * Returns 0 and loads it, or -ENOENT. */
int ksyms_load_for_kernel(struct ksyms *k, const char *kernel_path,
			  const char *kernel_version);

/* Load the text symbols of the kernel's own kallsyms tables from |img|,
 * the kernel image as loaded (its first byte 8-aligned in the kernel's
 * address space, e.g. the loaded range in guest memory or the vmlinux's
 * .rodata).  For kernels whose System.map is not installed (Debian's is a
 * stub).  Returns 0, -ENOENT when no table is found, or -ENOMEM. */
int ksyms_load_kallsyms(struct ksyms *k, const uint8_t *img, size_t len);

/* "name+0xoff" for |addr| into |buf|; returns buf, or NULL if no symbol
 * precedes addr (or none are loaded). */
const char *ksyms_describe(const struct ksyms *k, uint64_t addr, char *buf,
			   size_t buflen);

void ksyms_free(struct ksyms *k);

#endif
