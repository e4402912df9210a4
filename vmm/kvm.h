/* The KVM system device: open it and check what kite needs. */
#ifndef KITE_VMM_KVM_H
#define KITE_VMM_KVM_H

#include <stddef.h>

/* Open /dev/kvm (or $KITE_KVM_DEVICE), check the API version and every
 * capability kite requires.  On failure returns -errno and writes a
 * sentence naming the device, capability or version into |err|. */
int kvm_open(int *kvm_fd, char *err, size_t errlen);

/* KVM_CHECK_EXTENSION on the system or VM fd; returns the value (0 = no). */
int kvm_check_cap(int fd, int cap);

#endif
