/* A sampling profile of guest code, by kernel symbol.
 *
 * With KITE_PROFILE=FILE in the environment, kite interrupts every vCPU
 * about every 10 ms, records the guest's RIP, and at exit writes to FILE
 * the guest functions where the samples fell (named from the kernel's
 * System.map, see ksyms.h), most frequent first.  This is how the boot
 * time of a stock kernel on a PVM host was taken apart: it costs nothing
 * when the variable is unset. */
#ifndef KITE_ARCH_X86_PROFILE_H
#define KITE_ARCH_X86_PROFILE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct ksyms;

struct guest_profile {
	pthread_mutex_t lock;
	uint64_t *rips;  /* one per sample, in arrival order */
	size_t nr, cap;
	size_t dropped;  /* samples lost to a failed allocation */
};

void guest_profile_init(struct guest_profile *p);
void guest_profile_free(struct guest_profile *p);

/* Record one sample; safe from any thread. */
void guest_profile_add(struct guest_profile *p, uint64_t rip);

/* Write "samples N" and then one line per symbol, "COUNT PERCENT NAME",
 * most samples first; addresses no symbol covers are grouped as
 * "[user or unknown]".  |k| may be NULL (everything is unknown).
 * Returns 0 or -errno. */
int guest_profile_write(const struct guest_profile *p, const struct ksyms *k,
			FILE *out);

#endif
