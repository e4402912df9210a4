/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kite's in-kernel conformance agent: the interface between the runner
 * (agent.c) and the test cases (one file per area: platform.c, ...).
 *
 * A case is a function
 *
 *	enum kite_verdict kite_case_NAME(struct kite_result *r);
 *
 * listed once in cases.def.  It returns KITE_PASS, KITE_FAIL or KITE_SKIP;
 * on FAIL and SKIP it states the facts behind the verdict with kite_why(),
 * which become the TAP line's "# reason".  Longer evidence (an inventory,
 * a dump) goes on "# " diagnostic lines with kite_diag().  A case must not
 * hang: every wait is bounded.
 *
 * Each case reads what the host expects from its own kite_agent.* kernel
 * parameters (declared with the KITE_PARAM prefix below) and SKIPs when
 * the host did not say.
 */
#ifndef KITE_AGENT_H
#define KITE_AGENT_H

#include <linux/compiler.h>
#include <linux/moduleparam.h>
#include <linux/types.h>

/* Every parameter of every agent file is kite_agent.NAME on the command line. */
#undef MODULE_PARAM_PREFIX
#define MODULE_PARAM_PREFIX "kite_agent."

enum kite_verdict {
	KITE_PASS,
	KITE_FAIL,
	KITE_SKIP,
};

/* One printk line holds at most ~1000 bytes; leave room for "not ok N - name # ". */
#define KITE_WHY_MAX 768

struct kite_result {
	char why[KITE_WHY_MAX];
	size_t len;
	bool truncated;
};

/* Append one fact to the reason, "; "-separated. */
void kite_why(struct kite_result *r, const char *fmt, ...) __printf(2, 3);

/* Print one "# ..." TAP diagnostic line. */
void kite_diag(const char *fmt, ...) __printf(1, 2);

/* Shorthand for the common "state the fact, return FAIL". */
#define kite_fail(r, ...) ({ kite_why(r, __VA_ARGS__); KITE_FAIL; })
#define kite_skip(r, ...) ({ kite_why(r, __VA_ARGS__); KITE_SKIP; })

#define KITE_CASE(name) enum kite_verdict kite_case_##name(struct kite_result *r);
#include "cases.def"
#undef KITE_CASE

/* ---- helpers for the device cases (helpers.c) ----------------------------- */

struct device;
struct file;
struct virtio_device;

/*
 * The byte stream both sides of a data test compute from a 32-bit seed:
 * xorshift64 from 0x9e3779b97f4a7c15 ^ SEED (x ^= x << 13; x ^= x >> 7;
 * x ^= x << 17), each step giving the next eight bytes, x little-endian.
 * tests/guest-kernel/host.py implements the same.
 */
#define KITE_PATTERN_BASIS 0x9e3779b97f4a7c15ULL
void kite_pattern_fill(void *buf, size_t len, u32 seed);
/* The first byte of @buf that differs from the pattern (its expected
 * value in *@want), or @len if none does. */
size_t kite_pattern_mismatch(const void *buf, size_t len, u32 seed, u8 *want);

/* Parse "START+COUNT" (@seed NULL) or "START+COUNT:SEED"; COUNT > 0. */
int kite_parse_range(const char *s, u64 *start, u64 *count, u32 *seed);

/* The bound driver's name, or "none". */
const char *kite_dev_driver(struct device *dev);

/*
 * Call @fn for every virtio device (under a PCI function or a platform
 * device); a nonzero return stops the walk and is returned.
 */
int kite_virtio_for_each(int (*fn)(struct virtio_device *vdev, void *data),
			 void *data);

/* Open character device @devt through a node /kite-NAME made on rootfs. */
struct file *kite_open_chrdev(const char *name, dev_t devt, int flags);

/*
 * Run @fn in a kernel thread that has a user address space with @len
 * bytes mapped at @ubuf, for file operations that copy to or from user
 * memory only.  Waits up to @timeout_ms; on -ETIMEDOUT the thread still
 * owns @ctx, so the caller must leave it allocated.
 */
int kite_user_io(int (*fn)(void *ctx, void __user *ubuf, size_t len),
		 void *ctx, size_t len, unsigned int timeout_ms);

#endif /* KITE_AGENT_H */
