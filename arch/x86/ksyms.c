#include "arch/x86/ksyms.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_addr(const void *a, const void *b)
{
	const struct ksym *x = a, *y = b;

	return (x->addr > y->addr) - (x->addr < y->addr);
}

int ksyms_load(struct ksyms *k, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[512];
	size_t cap = 0;

	memset(k, 0, sizeof(*k));
	if (!f)
		return -errno;
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

int ksyms_load_for_kernel(struct ksyms *k, const char *kernel_path,
			  const char *kernel_version)
{
	char path[4096], version[128];
	const char *slash = strrchr(kernel_path, '/');
	int dirlen = slash ? (int)(slash - kernel_path) : 1;
	const char *dir = slash ? kernel_path : ".";

	memset(k, 0, sizeof(*k));
	if (!kernel_version || sscanf(kernel_version, "%127s", version) != 1)
		return -ENOENT;
	if (snprintf(path, sizeof(path), "%.*s/System.map-%s", dirlen, dir,
		     version) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return ksyms_load(k, path);
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
