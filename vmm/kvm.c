#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Capabilities without which kite cannot build a VM. */
static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP (in-kernel interrupt controller)" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2 (in-kernel timer)" },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
	{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	{ KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
};

int kvm_check_cap(int fd, int cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

int kvm_open(int *kvm_fd, char *err, size_t errlen)
{
	const char *dev = getenv("KITE_KVM_DEVICE");
	int fd, version;

	if (!dev || !*dev)
		dev = "/dev/kvm";
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (e == ENOENT)
			snprintf(err, errlen,
				 "%s: not found (is the kvm module loaded and virtualization enabled?)",
				 dev);
		else if (e == EACCES || e == EPERM)
			snprintf(err, errlen,
				 "%s: permission denied (add yourself to the 'kvm' group)",
				 dev);
		else
			snprintf(err, errlen, "%s: %s", dev, strerror(e));
		return -e;
	}
	version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (version < 0) {
		int e = errno;

		snprintf(err, errlen, "%s: not a KVM device (KVM_GET_API_VERSION: %s)",
			 dev, strerror(e));
		close(fd);
		return -ENODEV;
	}
	if (version != KVM_API_VERSION) {
		snprintf(err, errlen, "%s: KVM API version %d, kite needs %d",
			 dev, version, KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (!kvm_check_cap(fd, required_caps[i].cap)) {
			snprintf(err, errlen, "%s: missing capability %s", dev,
				 required_caps[i].name);
			close(fd);
			return -ENOTSUP;
		}
	}
	*kvm_fd = fd;
	return 0;
}
