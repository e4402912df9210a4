#include "vmm/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "vmm/term.h"

int kite_verbose;

static struct timespec start_time;

/* Runs before main(): the closest cheap mark to exec. */
__attribute__((constructor)) static void record_start_time(void)
{
	clock_gettime(CLOCK_MONOTONIC, &start_time);
}

double kite_uptime(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start_time.tv_sec) +
	       (double)(now.tv_nsec - start_time.tv_nsec) / 1e9;
}

static void vprint(const char *prefix, const char *fmt, va_list ap)
{
	char buf[8192]; /* a backing chain's reason can be long */

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One fprintf so lines from several threads do not interleave. */
	fprintf(stderr, "kite: %s%s%s", prefix, buf,
		term_is_raw() ? "\r\n" : "\n");
}

void kite_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint("", fmt, ap);
	va_end(ap);
}

void kite_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint("warning: ", fmt, ap);
	va_end(ap);
}

void kite_info(const char *fmt, ...)
{
	va_list ap;

	if (!kite_verbose)
		return;
	va_start(ap, fmt);
	vprint("", fmt, ap);
	va_end(ap);
}
