#include "arch/x86/ksyms.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* No kernel function is this long. */
#define KSYMS_MAX_FUNCTION 0x100000

static int by_addr(const void *a, const void *b)
{
	const struct ksym *x = a, *y = b;

	return (x->addr > y->addr) - (x->addr < y->addr);
}

int ksyms_load(struct ksyms *k, const char *path)
{
	/* O_NONBLOCK and a regular file only: a FIFO named System.map-*
	 * must not block kite in open() or read(). */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	char line[512];
	size_t cap = 0;
	FILE *f;

	memset(k, 0, sizeof(*k));
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	/* Lines: "ffffffff81000000 T _stext". */
	while (fgets(line, sizeof(line), f)) {
		char type, name[256];
		uint64_t addr;

		if (sscanf(line, "%" SCNx64 " %c %255s", &addr, &type, name) != 3)
			continue;
		if (type != 'T' && type != 't')
			continue;
		if (k->nr == cap) {
			size_t ncap = cap ? cap * 2 : 4096;
			struct ksym *n = realloc(k->syms, ncap * sizeof(*n));

			if (!n) {
				fclose(f);
				ksyms_free(k);
				return -ENOMEM;
			}
			k->syms = n;
			cap = ncap;
		}
		k->syms[k->nr].addr = addr;
		k->syms[k->nr].name = strdup(name);
		if (!k->syms[k->nr].name) {
			fclose(f);
			ksyms_free(k);
			return -ENOMEM;
		}
		k->nr++;
	}
	fclose(f);
	if (!k->nr)
		return -ENOENT;
	qsort(k->syms, k->nr, sizeof(*k->syms), by_addr);
	return 0;
}

/* "System.map-VERSION" in the directory of |kernel_path|. */
static int load_next_to(struct ksyms *k, const char *kernel_path,
			const char *kernel_version)
{
	char path[4096], version[128];
	const char *slash = strrchr(kernel_path, '/');
	int dirlen = slash ? (int)(slash - kernel_path) : 1;
	const char *dir = slash ? kernel_path : ".";

	/* The version comes from the image: no path in it. */
	if (!kernel_version || sscanf(kernel_version, "%127s", version) != 1 ||
	    strchr(version, '/'))
		return -ENOENT;
	if (snprintf(path, sizeof(path), "%.*s/System.map-%s", dirlen, dir,
		     version) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return ksyms_load(k, path);
}

int ksyms_load_for_kernel(struct ksyms *k, const char *kernel_path,
			  const char *kernel_version)
{
	/* The map sits next to the image itself, not next to a link to it
	 * (`make initramfs` links build/vmlinuz to /boot/vmlinuz-VERSION). */
	char *real = realpath(kernel_path, NULL);
	int rc;

	memset(k, 0, sizeof(*k));
	rc = load_next_to(k, real ? real : kernel_path, kernel_version);
	free(real);
	return rc;
}

const char *ksyms_describe(const struct ksyms *k, uint64_t addr, char *buf,
			   size_t buflen)
{
	size_t lo = 0, hi = k->nr;

	if (!k->nr || addr < k->syms[0].addr)
		return NULL;
	/* Last symbol with addr <= target. */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (k->syms[mid].addr <= addr)
			lo = mid;
		else
			hi = mid;
	}
	/* Past the last function (module space, say): no name. */
	if (addr - k->syms[lo].addr >= KSYMS_MAX_FUNCTION)
		return NULL;
	snprintf(buf, buflen, "%s+0x%" PRIx64, k->syms[lo].name,
		 addr - k->syms[lo].addr);
	return buf;
}

void ksyms_free(struct ksyms *k)
{
	for (size_t i = 0; i < k->nr; i++)
		free(k->syms[i].name);
	free(k->syms);
	memset(k, 0, sizeof(*k));
}

/* ---- kallsyms: the symbol tables inside the kernel image ---------------
 *
 * Debian installs a stub System.map ("The real System.map is in the
 * linux-image-<version>-dbg package"), but every kernel built with
 * CONFIG_KALLSYMS carries its own compressed symbol table in .rodata,
 * written by the kernel's scripts/kallsyms.c as consecutive 8-aligned
 * arrays:
 *   kallsyms_offsets       s32 x N
 *   kallsyms_relative_base u64
 *   kallsyms_num_syms      u32 (N)
 *   kallsyms_names         per symbol: length (1 byte, or 2 when the first
 *                          has bit 7 set: low 7 bits + next byte << 7), then
 *                          that many token numbers; the first character
 *                          of the expansion is the type (t, T, d, ...)
 *   kallsyms_markers       u32 x ceil(N / 256)
 *   kallsyms_seqs_of_names 3 bytes x N (kernels from 6.2, and 6.1 stable)
 *   kallsyms_token_table   256 NUL-terminated strings
 *   kallsyms_token_index   u16 x 256: offset of each token in the table
 * These are facts about the format; the tables are found by their shape:
 * the token table holds the one-character tokens "0".."9" in order (digits
 * appear in symbol names, so they are never merged away), the token index
 * must match it exactly, and N, the names and the markers must fill the
 * space before it exactly.  Addresses: with KALLSYMS_ABSOLUTE_PERCPU (x86-64
 * SMP) a negative offset o means relative_base - 1 - o; a non-negative one
 * is relative_base + o otherwise (or an absolute per-CPU address, never a
 * text symbol). */

#define KS_ALIGN8(x) (((x) + 7) & ~(size_t)7)
#define KS_MAX_SYMS 4000000u
#define KS_SEARCH_BACK (64u << 20)

static uint16_t ks_rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t ks_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t ks_rd64(const uint8_t *p)
{
	return (uint64_t)ks_rd32(p) | (uint64_t)ks_rd32(p + 4) << 32;
}

struct ks_tables {
	size_t tokens;      /* token table */
	uint16_t index[256];
	size_t offsets, names;
	uint32_t nr;
	uint64_t base;
};

/* Token '0' at |p|: find the table start through the index that follows
 * the table, and check that the index describes all 256 tokens. */
static bool ks_token_table_at(const uint8_t *img, size_t len, size_t p,
			      struct ks_tables *t)
{
	size_t q = p, idx, start;

	for (unsigned i = '0'; i < 256; i++) {
		const uint8_t *z = memchr(img + q, 0, len - q);

		if (!z || z == img + q)
			return false;
		q = (size_t)(z - img) + 1;
	}
	idx = KS_ALIGN8(q);
	if (idx + 512 > len)
		return false;
	for (unsigned i = 0; i < 256; i++)
		t->index[i] = ks_rd16(img + idx + 2 * i);
	if (t->index['0'] > p)
		return false;
	start = p - t->index['0'];
	if (start & 7 || t->index[0] != 0)
		return false;
	/* Every entry must point at the start of the matching token. */
	q = start;
	for (unsigned i = 0; i < 256; i++) {
		const uint8_t *z;

		if (t->index[i] != q - start)
			return false;
		z = memchr(img + q, 0, idx - q);
		if (!z || z == img + q)
			return false;
		q = (size_t)(z - img) + 1;
	}
	t->tokens = start;
	return true;
}

/* Skip |nr| names from |p|; returns the end or 0 when out of bounds. */
static size_t ks_skip_names(const uint8_t *img, size_t end, size_t p,
			    uint32_t nr, size_t *name256)
{
	for (uint32_t i = 0; i < nr; i++) {
		size_t n;

		if (i == 256)
			*name256 = p;
		if (p >= end)
			return 0;
		n = img[p++];
		if (n & 0x80) {
			if (p >= end)
				return 0;
			n = (n & 0x7F) | (size_t)img[p++] << 7;
		}
		if (n == 0 || n > end - p)
			return 0;
		p += n;
	}
	return p;
}

/* Is |s| (8-aligned) kallsyms_num_syms, with the tables ending at the token
 * table? */
static bool ks_num_syms_at(const uint8_t *img, size_t s, struct ks_tables *t)
{
	uint32_t nr = ks_rd32(img + s);
	uint64_t base = ks_rd64(img + s - 8);
	size_t names_end, markers, seqs, name256 = 0, offsets_len;

	if (nr < 2 || nr > KS_MAX_SYMS || base >> 32 != 0xFFFFFFFFu)
		return false;
	offsets_len = KS_ALIGN8((size_t)nr * 4);
	if (s < 8 + offsets_len)
		return false;
	names_end = ks_skip_names(img, t->tokens, s + 8, nr, &name256);
	if (!names_end)
		return false;
	markers = KS_ALIGN8(names_end);
	if (markers + 4 * (((size_t)nr + 255) / 256) > t->tokens)
		return false;
	if (ks_rd32(img + markers) != 0 ||
	    (nr > 256 && ks_rd32(img + markers + 4) != name256 - (s + 8)))
		return false;
	seqs = KS_ALIGN8(markers + 4 * (((size_t)nr + 255) / 256));
	/* With or without kallsyms_seqs_of_names. */
	if (KS_ALIGN8(seqs + 3 * (size_t)nr) != t->tokens && seqs != t->tokens)
		return false;
	t->nr = nr;
	t->base = base;
	t->names = s + 8;
	t->offsets = s - 8 - offsets_len;
	return true;
}

static int ks_add(struct ksyms *k, size_t *cap, uint64_t addr, const char *name)
{
	if (k->nr == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4096;
		struct ksym *n = realloc(k->syms, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		k->syms = n;
		*cap = ncap;
	}
	k->syms[k->nr].name = strdup(name);
	if (!k->syms[k->nr].name)
		return -ENOMEM;
	k->syms[k->nr].addr = addr;
	k->nr++;
	return 0;
}

static int ks_extract(struct ksyms *k, const uint8_t *img,
		      const struct ks_tables *t)
{
	size_t p = t->names, cap = 0;
	char name[1024];

	for (uint32_t i = 0; i < t->nr; i++) {
		size_t n = img[p++], used = 0;
		int32_t off = (int32_t)ks_rd32(img + t->offsets + 4 * (size_t)i);
		uint64_t addr = off < 0 ? t->base - 1 - (uint64_t)(int64_t)off
					: t->base + (uint64_t)off;

		if (n & 0x80)
			n = (n & 0x7F) | (size_t)img[p++] << 7;
		for (size_t j = 0; j < n; j++) {
			const char *tok = (const char *)img + t->tokens +
					  t->index[img[p + j]];
			size_t tl = strlen(tok);

			if (used + tl >= sizeof(name))
				tl = sizeof(name) - 1 - used;
			memcpy(name + used, tok, tl);
			used += tl;
		}
		name[used] = '\0';
		p += n;
		if (used < 2 || (name[0] != 't' && name[0] != 'T'))
			continue;
		if (ks_add(k, &cap, addr, name + 1)) {
			ksyms_free(k);
			return -ENOMEM;
		}
	}
	if (!k->nr)
		return -ENOENT;
	qsort(k->syms, k->nr, sizeof(*k->syms), by_addr);
	return 0;
}

int ksyms_load_kallsyms(struct ksyms *k, const uint8_t *img, size_t len)
{
	static const uint8_t digits[] = "0\0" "1\0" "2\0" "3\0" "4\0"
					"5\0" "6\0" "7\0" "8\0" "9";
	size_t from = 0;

	memset(k, 0, sizeof(*k));
	while (from < len) {
		const uint8_t *hit = memmem(img + from, len - from, digits,
					    sizeof(digits));
		struct ks_tables t;
		size_t p, lowest;

		if (!hit)
			break;
		p = (size_t)(hit - img);
		from = p + 1;
		if (!ks_token_table_at(img, len, p, &t))
			continue;
		lowest = t.tokens > KS_SEARCH_BACK ? t.tokens - KS_SEARCH_BACK : 16;
		for (size_t s = (t.tokens - 8) & ~(size_t)7; s >= lowest; s -= 8)
			if (ks_num_syms_at(img, s, &t))
				return ks_extract(k, img, &t);
	}
	return -ENOENT;
}
