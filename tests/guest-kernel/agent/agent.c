// SPDX-License-Identifier: GPL-2.0
/*
 * Kite's in-kernel conformance agent: the runner.
 *
 * Guest user space cannot run on a PVM host, so the guest side of Kite's
 * device tests runs here, inside the test kernel, once every built-in driver
 * has probed.  Command line:
 *
 *	kite_agent.tests=all | NAME[,NAME...]
 *
 * Without kite_agent.tests the agent does nothing and the boot continues.
 * With it, the agent prints TAP version 13 on the console, one line per
 * case, writes the number of failures to the debug-exit port (0xf4; Kite
 * exits with status (failures << 1) | 1), and powers off if that port did
 * not stop the machine.
 */
#include <linux/console.h>
#include <linux/device/driver.h>
#include <linux/init.h>
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/reboot.h>
#include <linux/slab.h>
#include <linux/stdarg.h>
#include <linux/string.h>
#include <linux/timekeeping.h>

#include "agent.h"

/* The debug-exit device: the VMM exits with status (value << 1) | 1. */
#define KITE_DEBUG_EXIT_PORT 0xf4
/*
 * 127 << 1 | 1 = 255: any larger count would wrap the 8-bit exit status
 * around to a value that looks like success.
 */
#define KITE_DEBUG_EXIT_MAX_FAILURES 127

static char *kite_tests;
module_param_named(tests, kite_tests, charp, 0444);
MODULE_PARM_DESC(tests, "comma-separated case names, or \"all\"");

struct kite_case {
	const char *name;
	enum kite_verdict (*run)(struct kite_result *r);
};

static const struct kite_case kite_cases[] = {
#define KITE_CASE(name) { #name, kite_case_##name },
#include "cases.def"
#undef KITE_CASE
};

void kite_why(struct kite_result *r, const char *fmt, ...)
{
	size_t room = sizeof(r->why) - r->len;
	va_list ap;
	int n;

	if (r->truncated)
		return;
	if (r->len && room > 2) {
		memcpy(r->why + r->len, "; ", 2);
		r->len += 2;
		room -= 2;
	}
	va_start(ap, fmt);
	n = vsnprintf(r->why + r->len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= room) {
		/* Say so rather than cut a fact silently. */
		strscpy(r->why + sizeof(r->why) - 4, "...", 4);
		r->len = sizeof(r->why) - 1;
		r->truncated = true;
		return;
	}
	r->len += n;
}

void kite_diag(const char *fmt, ...)
{
	struct va_format vaf;
	va_list ap;

	va_start(ap, fmt);
	vaf.fmt = fmt;
	vaf.va = &ap;
	pr_notice("# %pV\n", &vaf);
	va_end(ap);
}

static const struct kite_case *kite_case_find(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(kite_cases); i++)
		if (!strcmp(kite_cases[i].name, name))
			return &kite_cases[i];
	return NULL;
}

/* One planned test: a known case, or a requested name that matches none. */
struct kite_planned {
	const char *name;
	const struct kite_case *c;
};

/* Expand kite_agent.tests into the plan; "all" stands for every case. */
static struct kite_planned *kite_plan(char *list, size_t *count)
{
	struct kite_planned *plan;
	size_t tokens = 1, n = 0, i;
	char *p, *name;

	for (p = list; *p; p++)
		if (*p == ',')
			tokens++;
	plan = kcalloc(tokens * ARRAY_SIZE(kite_cases), sizeof(*plan), GFP_KERNEL);
	if (!plan)
		return NULL;
	while ((name = strsep(&list, ",")) != NULL) {
		if (!*name)
			continue;
		if (!strcmp(name, "all")) {
			for (i = 0; i < ARRAY_SIZE(kite_cases); i++) {
				plan[n].name = kite_cases[i].name;
				plan[n++].c = &kite_cases[i];
			}
			continue;
		}
		plan[n].name = name;
		plan[n++].c = kite_case_find(name);
	}
	*count = n;
	return plan;
}

static void kite_report_unknown(struct kite_result *r)
{
	size_t i;

	kite_why(r, "no such case");
	for (i = 0; i < ARRAY_SIZE(kite_cases); i++)
		kite_why(r, "%s%s", i ? "" : "known: ", kite_cases[i].name);
}

static void kite_debug_exit(unsigned int failures)
{
	outb(min_t(unsigned int, failures, KITE_DEBUG_EXIT_MAX_FAILURES),
	     KITE_DEBUG_EXIT_PORT);
}

static int __init kite_agent_run(void)
{
	struct kite_planned *plan;
	struct kite_result *r;
	unsigned int failures = 0;
	size_t count = 0, i;
	u64 started_ns = ktime_get_boottime_ns();
	char *list;

	if (!kite_tests || !*kite_tests)
		return 0;

	/* TAP lines are KERN_NOTICE; keep them on the console under "quiet". */
	if (console_loglevel <= LOGLEVEL_NOTICE)
		console_loglevel = LOGLEVEL_NOTICE + 1;

	/* Asynchronous probes (SCSI scans, deferred probes) finish first. */
	wait_for_device_probe();

	list = kstrdup(kite_tests, GFP_KERNEL);
	r = kzalloc(sizeof(*r), GFP_KERNEL);
	plan = list ? kite_plan(list, &count) : NULL;
	if (!list || !r || !plan) {
		pr_notice("TAP version 13\n1..0 # SKIP kite_agent: out of memory\n");
		kite_debug_exit(1);
		kernel_power_off();
		return -ENOMEM;
	}

	pr_notice("TAP version 13\n");
	pr_notice("1..%zu\n", count);
	kite_diag("kite_agent: started %llu.%03llu s after the kernel did",
		  started_ns / NSEC_PER_SEC, (started_ns % NSEC_PER_SEC) / NSEC_PER_MSEC);

	for (i = 0; i < count; i++) {
		enum kite_verdict v;
		u64 case_ns = ktime_get_boottime_ns();

		memset(r, 0, sizeof(*r));
		if (plan[i].c) {
			v = plan[i].c->run(r);
			/* Emulated guest kernels are slow: say where the time goes. */
			kite_diag("kite_agent: %s took %llu ms", plan[i].name,
				  (ktime_get_boottime_ns() - case_ns) / NSEC_PER_MSEC);
		} else {
			kite_report_unknown(r);
			v = KITE_FAIL;
		}
		switch (v) {
		case KITE_PASS:
			pr_notice("ok %zu - %s\n", i + 1, plan[i].name);
			break;
		case KITE_SKIP:
			pr_notice("ok %zu - %s # SKIP %s\n", i + 1, plan[i].name,
				  r->len ? r->why : "no reason given");
			break;
		default:
			failures++;
			pr_notice("not ok %zu - %s # %s\n", i + 1, plan[i].name,
				  r->len ? r->why : "no reason given");
			break;
		}
	}

	kite_diag("kite_agent: %u of %zu failed; done %llu ms after the first case",
		  failures, count,
		  (ktime_get_boottime_ns() - started_ns) / NSEC_PER_MSEC);
	kfree(plan);
	kfree(r);
	kfree(list);

	kite_debug_exit(failures);
	kite_diag("kite_agent: the debug-exit port did not stop the machine; powering off");
	kernel_power_off();
	return 0;
}
late_initcall_sync(kite_agent_run);
