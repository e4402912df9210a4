#include "arch/x86/profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/ksyms.h"

/* x86-64 kernel addresses are in the upper half. */
#define KERNEL_HALF 0xFFFF800000000000ULL
#define UNKNOWN_NAME "[user or unknown]"

void guest_profile_init(struct guest_profile *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
}

void guest_profile_free(struct guest_profile *p)
{
	free(p->rips);
	pthread_mutex_destroy(&p->lock);
	memset(p, 0, sizeof(*p));
}

void guest_profile_add(struct guest_profile *p, uint64_t rip)
{
	pthread_mutex_lock(&p->lock);
	if (p->nr == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 4096;
		uint64_t *r = realloc(p->rips, cap * sizeof(*r));

		if (!r) {
			p->dropped++;
			pthread_mutex_unlock(&p->lock);
			return;
		}
		p->rips = r;
		p->cap = cap;
	}
	p->rips[p->nr++] = rip;
	pthread_mutex_unlock(&p->lock);
}

struct bucket {
	char name[128];
	size_t count;
};

static int by_count(const void *a, const void *b)
{
	const struct bucket *x = a, *y = b;

	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct bucket *)a)->name,
		      ((const struct bucket *)b)->name);
}

int guest_profile_write(const struct guest_profile *p, const struct ksyms *k,
			FILE *out)
{
	struct bucket *b = NULL;
	size_t nb = 0;

	if (p->nr) {
		b = calloc(p->nr, sizeof(*b));
		if (!b)
			return -ENOMEM;
	}
	/* One bucket per sample named after its function, then merge equal
	 * names: simple, and the sample count is small (100 per second). */
	for (size_t i = 0; i < p->nr; i++) {
		char desc[160];
		const char *d = NULL;

		if (k && p->rips[i] >= KERNEL_HALF)
			d = ksyms_describe(k, p->rips[i], desc, sizeof(desc));
		snprintf(b[i].name, sizeof(b[i].name), "%s", d ? d : UNKNOWN_NAME);
		if (d) {
			char *plus = strchr(b[i].name, '+');

			if (plus)
				*plus = '\0';
		}
		b[i].count = 1;
	}
	if (p->nr) {
		qsort(b, p->nr, sizeof(*b), by_name);
		for (size_t i = 0; i < p->nr; i++) {
			if (nb && strcmp(b[nb - 1].name, b[i].name) == 0) {
				b[nb - 1].count++;
				continue;
			}
			b[nb++] = b[i];
		}
		qsort(b, nb, sizeof(*b), by_count);
	}
	fprintf(out, "samples %zu", p->nr);
	if (p->dropped)
		fprintf(out, " (%zu more lost: out of memory)", p->dropped);
	fputc('\n', out);
	for (size_t i = 0; i < nb; i++)
		fprintf(out, "%8zu %6.2f%% %s\n", b[i].count,
			100.0 * (double)b[i].count / (double)p->nr, b[i].name);
	free(b);
	return ferror(out) ? -EIO : 0;
}
