#include "vmm/log.h"

#include <stdarg.h>
#include <stdio.h>

#include "vmm/term.h"

int kite_verbose;

static void vprint(const char *prefix, const char *fmt, va_list ap)
{
	char buf[1024];

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
