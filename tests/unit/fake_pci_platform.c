/* A fake PCI platform for unit tests.  See fake_pci_platform.h. */
#include "tests/unit/fake_pci_platform.h"

#include <errno.h>
#include <string.h>

#include "tests/unit/unit.h"

struct fake_pci_platform fake_pci;

void fake_pci_reset(void)
{
	memset(&fake_pci, 0, sizeof(fake_pci));
	fake_pci.intx_level = -1;
}

static int f_msi_alloc(void *o, void **h)
{
	(void)o;
	ck_assert_int_lt(fake_pci.nr_msis, FAKE_PCI_MAX_MSIS);
	fake_pci.msis[fake_pci.nr_msis].id = fake_pci.nr_msis;
	*h = &fake_pci.msis[fake_pci.nr_msis++];
	return 0;
}

static int f_msi_route(void *o, void *h, uint64_t addr, uint32_t data)
{
	struct fake_msi *m = h;

	(void)o;
	m->addr = addr;
	m->data = data;
	m->routes++;
	return 0;
}

static void f_msi_signal(void *o, void *h)
{
	(void)o;
	__atomic_fetch_add(&((struct fake_msi *)h)->signals, 1,
			   __ATOMIC_SEQ_CST);
}

static void f_nop_free(void *o, void *h)
{
	(void)o;
	(void)h;
}

static int f_intx_alloc(void *o, unsigned gsi, void **h)
{
	(void)o;
	fake_pci.intx_gsi = (int)gsi;
	fake_pci.intx_level = 0;
	*h = &fake_pci.intx_level;
	return 0;
}

static void f_intx_set(void *o, void *h, int level)
{
	(void)o;
	__atomic_store_n((int *)h, level, __ATOMIC_SEQ_CST);
}

static int f_ioeventfd(void *o, bool assign, bool pio, uint64_t addr,
		       unsigned len, int64_t datamatch, int fd)
{
	struct fake_evfd *e = fake_pci.evfds;

	(void)o;
	(void)len;
	fake_pci.nr_evfd_ops++;
	for (int i = 0; i < FAKE_PCI_MAX_EVFDS; i++) {
		if (assign && !e[i].assigned) {
			e[i] = (struct fake_evfd){ true, pio, addr, datamatch,
						   fd };
			return 0;
		}
		if (!assign && e[i].assigned && e[i].addr == addr &&
		    e[i].fd == fd) {
			e[i].assigned = false;
			return 0;
		}
	}
	return assign ? -ENOSPC : -ENOENT;
}

const struct pci_platform_ops fake_pci_ops = {
	.msi_alloc = f_msi_alloc, .msi_route = f_msi_route,
	.msi_signal = f_msi_signal, .msi_free = f_nop_free,
	.intx_alloc = f_intx_alloc, .intx_set_level = f_intx_set,
	.intx_free = f_nop_free, .ioeventfd = f_ioeventfd,
};
