/* A fake PCI platform (struct pci_platform_ops) for unit tests: instead
 * of KVM it records the MSI routes and signals, the INTx line's level and
 * the ioeventfds the PCI code asks for, in one global for the test to
 * inspect.  Not thread-safe beyond the atomic signal counts and level. */
#ifndef KITE_TESTS_FAKE_PCI_PLATFORM_H
#define KITE_TESTS_FAKE_PCI_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/pci.h"

#define FAKE_PCI_MAX_MSIS  80
#define FAKE_PCI_MAX_EVFDS 16

struct fake_msi {
	int id;             /* allocation order */
	uint64_t addr;      /* the last route */
	uint32_t data;
	int routes, signals;
};

struct fake_evfd {
	bool assigned, pio;
	uint64_t addr;
	int64_t datamatch;
	int fd;
};

struct fake_pci_platform {
	struct fake_msi msis[FAKE_PCI_MAX_MSIS];
	int nr_msis;
	int intx_level;     /* -1 until the INTx line is allocated */
	int intx_gsi;
	struct fake_evfd evfds[FAKE_PCI_MAX_EVFDS];
	int nr_evfd_ops;    /* assign and deassign calls */
};

extern struct fake_pci_platform fake_pci;
extern const struct pci_platform_ops fake_pci_ops;

/* Forget everything recorded (call from the test fixture). */
void fake_pci_reset(void);

#endif
