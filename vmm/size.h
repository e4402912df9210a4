/* Parsing of sizes and counts given on the command line. */
#ifndef KITE_VMM_SIZE_H
#define KITE_VMM_SIZE_H

#include <stdint.h>

/* Parse "512", "512K", "64M", "2G", "1T" (binary multiples; lower case
 * accepted; an optional trailing "iB" or "B" too: "64MiB").  A bare number is
 * in MiB when |default_unit| is 1 << 20, bytes when it is 1.  Returns 0, or
 * -EINVAL for malformed text, -ERANGE for overflow. */
int parse_size(const char *text, uint64_t default_unit, uint64_t *out);

/* Parse a decimal unsigned integer in [min, max]; -EINVAL or -ERANGE. */
int parse_uint(const char *text, unsigned min, unsigned max, unsigned *out);

#endif
