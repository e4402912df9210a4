// SPDX-License-Identifier: GPL-2.0
/*
 * Kite's in-kernel agent: helpers the device cases share (agent.h says
 * what each one promises).
 *
 * The test kernel has no sysfs, no devtmpfs and no user space, so the
 * cases reach devices the way a driver would: virtio devices by walking
 * the PCI and platform buses, character devices through a node made on
 * rootfs, and file operations that only copy to and from user memory
 * (virtio-console ports, /dev/hwrng) through a kernel thread that borrows
 * a user address space of its own.
 */
#include <linux/completion.h>
#include <linux/device.h>
#include <linux/err.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/namei.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/virtio.h>
#include <asm/unaligned.h>

#include "agent.h"

/* ---- patterns ---------------------------------------------------------- */

static inline u64 kite_pattern_step(u64 x)
{
	/* xorshift64 (Marsaglia, 2003). */
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

/*
 * Eight bytes per step and word-sized stores and compares: a byte at a
 * time would cost seconds per 128 KiB where guest kernel code is emulated.
 */
void kite_pattern_fill(void *buf, size_t len, u32 seed)
{
	u64 x = KITE_PATTERN_BASIS ^ seed;
	u8 *b = buf;
	size_t i;

	for (i = 0; i < len; i += 8) {
		__le64 w;

		x = kite_pattern_step(x);
		w = cpu_to_le64(x);
		if (len - i >= 8)
			put_unaligned(w, (__le64 *)(b + i));
		else
			memcpy(b + i, &w, len - i);
	}
}

size_t kite_pattern_mismatch(const void *buf, size_t len, u32 seed, u8 *want)
{
	u64 x = KITE_PATTERN_BASIS ^ seed;
	const u8 *b = buf;
	size_t i, k;

	for (i = 0; i < len; i += 8) {
		__le64 w;
		const u8 *wb = (const u8 *)&w;

		x = kite_pattern_step(x);
		w = cpu_to_le64(x);
		if (len - i >= 8 && get_unaligned((const __le64 *)(b + i)) == w)
			continue;
		for (k = 0; k < 8 && i + k < len; k++) {
			if (b[i + k] != wb[k]) {
				*want = wb[k];
				return i + k;
			}
		}
	}
	return len;
}

int kite_parse_range(const char *s, u64 *start, u64 *count, u32 *seed)
{
	unsigned long long a, b, c = 0;
	char tail;

	if (seed) {
		if (sscanf(s, "%llu+%llu:%lli%c", &a, &b, &c, &tail) != 3 ||
		    c > U32_MAX)
			return -EINVAL;
		*seed = c;
	} else if (sscanf(s, "%llu+%llu%c", &a, &b, &tail) != 2) {
		return -EINVAL;
	}
	if (!b)
		return -EINVAL;
	*start = a;
	*count = b;
	return 0;
}

/* ---- devices ------------------------------------------------------------ */

const char *kite_dev_driver(struct device *dev)
{
	return dev->driver ? dev->driver->name : "none";
}

struct kite_virtio_walk {
	int (*fn)(struct virtio_device *vdev, void *data);
	void *data;
};

static int kite_virtio_child(struct device *dev, void *data)
{
	struct kite_virtio_walk *w = data;

	if (!dev->bus || strcmp(dev->bus->name, "virtio"))
		return 0;
	return w->fn(dev_to_virtio(dev), w->data);
}

static int kite_virtio_parent(struct device *dev, void *data)
{
	return device_for_each_child(dev, data, kite_virtio_child);
}

int kite_virtio_for_each(int (*fn)(struct virtio_device *vdev, void *data),
			 void *data)
{
	struct kite_virtio_walk w = { fn, data };
	int ret;

	/* virtio-pci devices hang under PCI functions, virtio-mmio ones
	 * under the platform devices ACPI made from LNRO0005. */
	ret = bus_for_each_dev(&pci_bus_type, NULL, &w, kite_virtio_parent);
	if (!ret)
		ret = bus_for_each_dev(&platform_bus_type, NULL, &w,
				       kite_virtio_parent);
	return ret;
}

struct file *kite_open_chrdev(const char *name, dev_t devt, int flags)
{
	char path[64];
	struct path parent;
	struct dentry *dentry;
	int err;

	/* No devtmpfs here: make the node on rootfs, once. */
	snprintf(path, sizeof(path), "/kite-%s", name);
	dentry = kern_path_create(AT_FDCWD, path, &parent, 0);
	if (!IS_ERR(dentry)) {
		err = vfs_mknod(mnt_user_ns(parent.mnt), d_inode(parent.dentry),
				dentry, S_IFCHR | 0600, devt);
		done_path_create(&parent, dentry);
		if (err)
			return ERR_PTR(err);
	} else if (PTR_ERR(dentry) != -EEXIST) {
		return ERR_CAST(dentry);
	}
	return filp_open(path, flags, 0);
}

/* ---- user memory for file operations that want it ------------------------- */

struct kite_user_job {
	int (*fn)(void *ctx, void __user *ubuf, size_t len);
	void *ctx;
	size_t len;
	int ret;
	struct completion done;
};

static int kite_user_thread(void *data)
{
	struct kite_user_job *job = data;
	struct mm_struct *mm = mm_alloc();
	unsigned long addr;

	if (!mm) {
		job->ret = -ENOMEM;
		goto out;
	}
	/* What exec does for a new image, minus the image. */
	arch_pick_mmap_layout(mm, &current->signal->rlim[RLIMIT_STACK]);
	mm->task_size = TASK_SIZE;
	kthread_use_mm(mm);
	addr = vm_mmap(NULL, 0, job->len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, 0);
	if (IS_ERR_VALUE(addr)) {
		job->ret = (int)addr;
	} else {
		job->ret = job->fn(job->ctx, (void __user *)addr, job->len);
		vm_munmap(addr, job->len);
	}
	kthread_unuse_mm(mm);
	mmput(mm);
out:
	complete(&job->done);
	return 0;
}

int kite_user_io(int (*fn)(void *ctx, void __user *ubuf, size_t len),
		 void *ctx, size_t len, unsigned int timeout_ms)
{
	struct kite_user_job *job = kzalloc(sizeof(*job), GFP_KERNEL);
	struct task_struct *t;
	int ret;

	if (!job)
		return -ENOMEM;
	job->fn = fn;
	job->ctx = ctx;
	job->len = PAGE_ALIGN(len);
	init_completion(&job->done);
	t = kthread_run(kite_user_thread, job, "kite_agent_uio");
	if (IS_ERR(t)) {
		kfree(job);
		return PTR_ERR(t);
	}
	if (!wait_for_completion_timeout(&job->done, msecs_to_jiffies(timeout_ms)))
		return -ETIMEDOUT;	/* the thread keeps job and ctx */
	ret = job->ret;
	kfree(job);
	return ret;
}
