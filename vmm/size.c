#include "vmm/size.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse_u64(const char *text, const char **end, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = text;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*end = p;
	*out = v;
	return 0;
}

int parse_size(const char *text, uint64_t default_unit, uint64_t *out)
{
	const char *p;
	uint64_t v, unit;
	int rc;

	if (!text)
		return -EINVAL;
	rc = parse_u64(text, &p, &v);
	if (rc)
		return rc;
	switch (toupper((unsigned char)*p)) {
	case '\0': unit = default_unit; break;
	case 'B': unit = 1; break;
	case 'K': unit = 1ULL << 10; break;
	case 'M': unit = 1ULL << 20; break;
	case 'G': unit = 1ULL << 30; break;
	case 'T': unit = 1ULL << 40; break;
	default: return -EINVAL;
	}
	if (*p) {
		p++;
		/* Accept K, KB, KiB (and the same for the others). */
		if (unit != 1 && (strcmp(p, "iB") == 0 || strcmp(p, "ib") == 0 ||
				  strcmp(p, "B") == 0 || strcmp(p, "b") == 0))
			p += strlen(p);
		if (*p)
			return -EINVAL;
	}
	if (v > UINT64_MAX / unit)
		return -ERANGE;
	*out = v * unit;
	return 0;
}

int parse_uint(const char *text, unsigned min, unsigned max, unsigned *out)
{
	const char *p;
	uint64_t v;
	int rc;

	if (!text)
		return -EINVAL;
	rc = parse_u64(text, &p, &v);
	if (rc)
		return rc;
	if (*p)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = (unsigned)v;
	return 0;
}
