/* The PCI host bridge: configuration space, BAR decode, MSI-X, INTx.
 * See pci.h for the address-decoding design and the locking rules. */
#include "vmm/pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Default cursor for firmware-style I/O BAR assignment. */
#define PCI_IO_ASSIGN_START 0xC000

static uint64_t all_ones(unsigned size)
{
	return size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

/* ---- BAR decode ------------------------------------------------------ */

static uint16_t command_of(const struct pci_function *fn)
{
	return pci_get_word(fn->cfg, PCI_COMMAND);
}

static uint64_t bar_programmed_address(const struct pci_function *fn,
				       unsigned i)
{
	uint32_t lo = pci_get_long(fn->cfg, PCI_BAR0 + 4 * i);
	const struct pci_bar *b = &fn->bars[i];

	if (b->io)
		return lo & ~3u;
	if (b->mem64)
		return (lo & ~0xFull) |
		       (uint64_t)pci_get_long(fn->cfg, PCI_BAR0 + 4 * (i + 1))
			       << 32;
	return lo & ~0xFull;
}

/* Does BAR |i| at |addr| decode?  Only with its enable bit in COMMAND
 * and wholly inside the window the host decodes (pci.h). */
static bool bar_decodes(const struct pci_function *fn, unsigned i,
			uint64_t addr)
{
	const struct pci_host *h = fn->host;
	const struct pci_bar *b = &fn->bars[i];
	uint64_t last = addr + b->size - 1;

	if (!b->size || addr == 0 || last < addr)
		return false;
	if (b->io)
		return (command_of(fn) & PCI_COMMAND_IO) && h->io_size &&
		       addr >= h->io_base &&
		       last < (uint64_t)h->io_base + h->io_size;
	return (command_of(fn) & PCI_COMMAND_MEMORY) && h->mmio_size &&
	       addr >= h->mmio_base && last < h->mmio_base + h->mmio_size;
}

static void ioeventfd_sync(struct pci_function *fn, struct pci_ioeventfd *e)
{
	const struct pci_host *h = fn->host;
	const struct pci_bar *b = &fn->bars[e->bar];
	uint64_t want = b->addr + e->offset;

	if (e->assigned && (!b->mapped || e->assigned_addr != want)) {
		if (h->plat && h->plat->ioeventfd)
			h->plat->ioeventfd(h->plat_opaque, false, b->io,
					   e->assigned_addr, e->len,
					   e->datamatch, e->fd);
		e->assigned = false;
	}
	if (!e->assigned && b->mapped) {
		int rc = 0;

		if (h->plat && h->plat->ioeventfd)
			rc = h->plat->ioeventfd(h->plat_opaque, true, b->io,
						want, e->len, e->datamatch,
						e->fd);
		/* On failure the notification still arrives as a trapped
		 * write; only the fast path is lost. */
		if (rc == 0) {
			e->assigned = true;
			e->assigned_addr = want;
		}
	}
}

/* Recompute where each BAR decodes; caller holds cfg_lock.  Takes the
 * map lock for writing, so no BAR access is in flight on the old map. */
static void update_mappings(struct pci_function *fn)
{
	struct pci_host *h = fn->host;
	bool changed[PCI_NUM_BARS] = { false };
	bool any = false;

	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &fn->bars[i];
		uint64_t addr;
		bool on;

		if (!b->size)
			continue;
		addr = bar_programmed_address(fn, i);
		on = bar_decodes(fn, i, addr);
		if (on != b->mapped || (on && addr != b->addr)) {
			changed[i] = true;
			any = true;
		}
	}
	if (!any)
		return;
	pthread_rwlock_wrlock(&h->map_lock);
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &fn->bars[i];

		if (!changed[i])
			continue;
		b->addr = bar_programmed_address(fn, i);
		b->mapped = bar_decodes(fn, i, b->addr);
		for (struct pci_ioeventfd *e = fn->ioeventfds; e; e = e->next)
			if (e->bar == i)
				ioeventfd_sync(fn, e);
	}
	pthread_rwlock_unlock(&h->map_lock);
}

/* ---- MSI-X (PCI 3.0 §6.8.2) ----------------------------------------- */

static bool msix_vector_masked(const struct pci_msix *m, unsigned v)
{
	return m->table[v * PCI_MSIX_ENTRY_SIZE + 12] &
	       PCI_MSIX_ENTRY_CTRL_MASKBIT;
}

static uint64_t msix_entry_addr(const struct pci_msix *m, unsigned v)
{
	const uint8_t *e = m->table + v * PCI_MSIX_ENTRY_SIZE;

	return pci_get_long(e, 0) | (uint64_t)pci_get_long(e, 4) << 32;
}

static uint32_t msix_entry_data(const struct pci_msix *m, unsigned v)
{
	return pci_get_long(m->table + v * PCI_MSIX_ENTRY_SIZE, 8);
}

static bool pba_test(const struct pci_msix *m, unsigned v)
{
	return m->pba[v / 64] >> (v % 64) & 1;
}

static void pba_set(struct pci_msix *m, unsigned v, bool on)
{
	if (on)
		m->pba[v / 64] |= 1ull << (v % 64);
	else
		m->pba[v / 64] &= ~(1ull << (v % 64));
}

/* Point the vector's KVM route at the entry's current message; msix lock
 * held.  The route is only rewritten when the message changed. */
static int msix_route(struct pci_function *fn, unsigned v)
{
	struct pci_msix *m = fn->msix;
	struct pci_msix_vector *vec = &m->vec[v];
	const struct pci_host *h = fn->host;
	uint64_t addr = msix_entry_addr(m, v);
	uint32_t data = msix_entry_data(m, v);
	int rc;

	if (!vec->handle)
		return -ENODEV;
	if (vec->routed && vec->routed_addr == addr && vec->routed_data == data)
		return 0;
	rc = h->plat->msi_route(h->plat_opaque, vec->handle, addr, data);
	if (rc)
		return rc;
	vec->routed = true;
	vec->routed_addr = addr;
	vec->routed_data = data;
	return 0;
}

static void msix_send(struct pci_function *fn, unsigned v)
{
	const struct pci_host *h = fn->host;

	if (msix_route(fn, v) == 0)
		h->plat->msi_signal(h->plat_opaque, fn->msix->vec[v].handle);
}

/* Deliver what became deliverable (a vector or the function unmasked);
 * msix lock held.  PCI 3.0 §6.8.3.4: a pending message is sent once its
 * vector is unmasked, and its pending bit clears. */
static void msix_flush_pending(struct pci_function *fn)
{
	struct pci_msix *m = fn->msix;

	if (!m->enabled || m->masked)
		return;
	for (unsigned v = 0; v < m->nr_vectors; v++) {
		if (pba_test(m, v) && !msix_vector_masked(m, v)) {
			pba_set(m, v, false);
			msix_send(fn, v);
		}
	}
}

int pci_msix_notify(struct pci_function *fn, unsigned vector)
{
	struct pci_msix *m = fn->msix;
	int rc = 0;

	if (!m)
		return -ENODEV;
	if (vector >= m->nr_vectors)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	if (!m->enabled)
		rc = -ENODEV;
	else if (m->masked || msix_vector_masked(m, vector))
		pba_set(m, vector, true);
	else
		msix_send(fn, vector);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

bool pci_msix_enabled(struct pci_function *fn)
{
	bool on;

	if (!fn->msix)
		return false;
	pthread_mutex_lock(&fn->msix->lock);
	on = fn->msix->enabled;
	pthread_mutex_unlock(&fn->msix->lock);
	return on;
}

unsigned pci_msix_nr_vectors(struct pci_function *fn)
{
	return fn->msix ? fn->msix->nr_vectors : 0;
}

/* The guest wrote the message control word; cfg_lock held. */
static void msix_control_written(struct pci_function *fn)
{
	struct pci_msix *m = fn->msix;
	uint16_t ctl = pci_get_word(fn->cfg, m->cap + PCI_MSIX_FLAGS);
	bool was;

	pthread_mutex_lock(&m->lock);
	was = m->enabled;
	m->enabled = ctl & PCI_MSIX_FLAGS_ENABLE;
	m->masked = ctl & PCI_MSIX_FLAGS_MASKALL;
	msix_flush_pending(fn);
	pthread_mutex_unlock(&m->lock);
	if (was != m->enabled && fn->ops && fn->ops->irq_mode_changed)
		fn->ops->irq_mode_changed(fn);
}

static void msix_table_read(struct pci_function *fn, uint64_t off,
			    unsigned size, uint64_t *value)
{
	struct pci_msix *m = fn->msix;
	uint64_t v = 0;

	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)m->table[off + i] << (8 * i);
	pthread_mutex_unlock(&m->lock);
	*value = v;
}

static void msix_table_write(struct pci_function *fn, uint64_t off,
			     unsigned size, uint64_t value)
{
	struct pci_msix *m = fn->msix;
	unsigned first = (unsigned)(off / PCI_MSIX_ENTRY_SIZE);
	unsigned last = (unsigned)((off + size - 1) / PCI_MSIX_ENTRY_SIZE);

	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < size; i++) {
		uint64_t o = off + i;
		uint8_t b = (uint8_t)(value >> (8 * i));

		/* Vector Control: only the mask bit is defined; the rest
		 * is reserved and reads 0. */
		if (o % PCI_MSIX_ENTRY_SIZE == 12)
			b &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
		else if (o % PCI_MSIX_ENTRY_SIZE > 12)
			b = 0;
		m->table[o] = b;
	}
	/* A message changed while unmasked: re-route now (PCI 3.0 leaves
	 * that undefined; following the write is the friendly choice). */
	for (unsigned v = first; v <= last && v < m->nr_vectors; v++)
		if (m->vec[v].routed && !msix_vector_masked(m, v))
			msix_route(fn, v);
	msix_flush_pending(fn);
	pthread_mutex_unlock(&m->lock);
}

static void msix_pba_read(struct pci_function *fn, uint64_t off,
			  unsigned size, uint64_t *value)
{
	struct pci_msix *m = fn->msix;
	uint64_t v = 0;

	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < size; i++) {
		uint64_t bit = (off + i) * 8;

		if (bit < m->nr_vectors)
			v |= (uint64_t)(uint8_t)(m->pba[bit / 64] >> (bit % 64))
			     << (8 * i);
	}
	pthread_mutex_unlock(&m->lock);
	*value = v;
}

/* ---- INTx ------------------------------------------------------------ */

static void intx_update_locked(struct pci_function *fn)
{
	int want = fn->intx_level && !fn->intx_disabled;
	const struct pci_host *h = fn->host;

	if (want == fn->intx_asserted)
		return;
	fn->intx_asserted = want;
	if (fn->intx_handle && h && h->plat && h->plat->intx_set_level)
		h->plat->intx_set_level(h->plat_opaque, fn->intx_handle, want);
}

void pci_intx_set(struct pci_function *fn, int level)
{
	pthread_mutex_lock(&fn->intx_lock);
	fn->intx_level = level ? 1 : 0;
	intx_update_locked(fn);
	pthread_mutex_unlock(&fn->intx_lock);
}

static void command_written(struct pci_function *fn)
{
	pthread_mutex_lock(&fn->intx_lock);
	fn->intx_disabled = command_of(fn) & PCI_COMMAND_INTX_DISABLE;
	intx_update_locked(fn);
	pthread_mutex_unlock(&fn->intx_lock);
	update_mappings(fn);
}

/* ---- configuration space --------------------------------------------- */

static struct pci_function *lookup_function(struct pci_host *h, unsigned bus,
					    unsigned slot, unsigned func)
{
	if (bus != 0 || func != 0 || slot >= PCI_MAX_SLOTS)
		return NULL;
	return h->slots[slot];
}

static uint8_t config_byte(struct pci_function *fn, unsigned off)
{
	uint8_t b = fn->cfg[off];

	/* Interrupt Status mirrors the device's INTx request, whatever
	 * COMMAND.INTX_DISABLE says (PCI 3.0 §6.2.3). */
	if (off == PCI_STATUS) {
		int level;

		pthread_mutex_lock(&fn->intx_lock);
		level = fn->intx_level;
		pthread_mutex_unlock(&fn->intx_lock);
		b = (uint8_t)((b & ~PCI_STATUS_INTERRUPT) |
			      (level ? PCI_STATUS_INTERRUPT : 0));
	}
	return b;
}

static uint32_t function_config_read(struct pci_function *fn, unsigned off,
				     unsigned size)
{
	uint32_t v = 0;

	if (off >= PCI_CFG_SIZE)
		return 0; /* no extended capabilities */
	if (off + size > PCI_CFG_SIZE)
		size = PCI_CFG_SIZE - off;
	if (fn->ops && fn->ops->config_read)
		fn->ops->config_read(fn, off, size);
	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)config_byte(fn, off + i) << (8 * i);
	return v;
}

static bool overlaps(unsigned off, unsigned size, unsigned start,
		     unsigned len)
{
	return off < start + len && start < off + size;
}

static void function_config_write(struct pci_function *fn, unsigned off,
				  unsigned size, uint32_t value)
{
	if (off >= PCI_CFG_SIZE)
		return;
	if (off + size > PCI_CFG_SIZE)
		size = PCI_CFG_SIZE - off;
	for (unsigned i = 0; i < size; i++) {
		unsigned o = off + i;
		uint8_t b = (uint8_t)(value >> (8 * i));
		uint8_t v = (uint8_t)((fn->cfg[o] & ~fn->wmask[o]) |
				      (b & fn->wmask[o]));

		fn->cfg[o] = (uint8_t)(v & ~(b & fn->w1cmask[o]));
	}
	if (overlaps(off, size, PCI_COMMAND, 2))
		command_written(fn);
	else if (overlaps(off, size, PCI_BAR0, 4 * PCI_NUM_BARS))
		update_mappings(fn);
	if (fn->msix && overlaps(off, size, fn->msix->cap + PCI_MSIX_FLAGS, 2))
		msix_control_written(fn);
	if (fn->ops && fn->ops->config_write)
		fn->ops->config_write(fn, off, size, value);
}

uint32_t pci_host_config_read(struct pci_host *h, unsigned bus,
			      unsigned slot, unsigned func, unsigned off,
			      unsigned size)
{
	struct pci_function *fn;
	uint32_t v;

	pthread_mutex_lock(&h->cfg_lock);
	fn = lookup_function(h, bus, slot, func);
	/* No function: the access ends in a master abort, all ones. */
	v = fn ? function_config_read(fn, off, size)
	       : (uint32_t)all_ones(size);
	pthread_mutex_unlock(&h->cfg_lock);
	return v;
}

void pci_host_config_write(struct pci_host *h, unsigned bus, unsigned slot,
			   unsigned func, unsigned off, unsigned size,
			   uint32_t value)
{
	struct pci_function *fn;

	pthread_mutex_lock(&h->cfg_lock);
	fn = lookup_function(h, bus, slot, func);
	if (fn)
		function_config_write(fn, off, size, value);
	pthread_mutex_unlock(&h->cfg_lock);
}

/* ---- type-1 ports 0xCF8-0xCFF ---------------------------------------- */

static void config_address_read(void *opaque, uint64_t offset, unsigned size,
				uint64_t *value)
{
	struct pci_host *h = opaque;

	if (offset == 0 && size == 4) {
		pthread_mutex_lock(&h->cfg_lock);
		*value = h->config_address;
		pthread_mutex_unlock(&h->cfg_lock);
	} else if (offset == 1 && size == 1 && h->reset_read) {
		*value = h->reset_read(h->reset_opaque);
	} else {
		*value = all_ones(size);
	}
}

static void config_address_write(void *opaque, uint64_t offset, unsigned size,
				 uint64_t value)
{
	struct pci_host *h = opaque;

	/* Only dword accesses reach the address latch; a byte at 0xCF9 is
	 * the reset control register; anything else goes nowhere. */
	if (offset == 0 && size == 4) {
		pthread_mutex_lock(&h->cfg_lock);
		h->config_address = (uint32_t)value & 0x80FFFFFCu;
		pthread_mutex_unlock(&h->cfg_lock);
	} else if (offset == 1 && size == 1 && h->reset_write) {
		h->reset_write(h->reset_opaque, (uint8_t)value);
	}
}

const struct bus_ops pci_config_address_ops = {
	.read = config_address_read,
	.write = config_address_write,
};

static bool decode_config_address(struct pci_host *h, uint64_t offset,
				  unsigned *bus, unsigned *slot,
				  unsigned *func, unsigned *reg)
{
	uint32_t a;

	pthread_mutex_lock(&h->cfg_lock);
	a = h->config_address;
	pthread_mutex_unlock(&h->cfg_lock);
	if (!(a & 0x80000000u))
		return false;
	*bus = (a >> 16) & 0xFF;
	*slot = (a >> 11) & 0x1F;
	*func = (a >> 8) & 0x7;
	*reg = (a & 0xFC) + (unsigned)offset;
	return true;
}

static void config_data_read(void *opaque, uint64_t offset, unsigned size,
			     uint64_t *value)
{
	struct pci_host *h = opaque;
	unsigned bus, slot, func, reg;

	if (size > 4 || !decode_config_address(h, offset, &bus, &slot, &func,
					       &reg)) {
		*value = all_ones(size);
		return;
	}
	*value = pci_host_config_read(h, bus, slot, func, reg, size);
}

static void config_data_write(void *opaque, uint64_t offset, unsigned size,
			      uint64_t value)
{
	struct pci_host *h = opaque;
	unsigned bus, slot, func, reg;

	if (size > 4 || !decode_config_address(h, offset, &bus, &slot, &func,
					       &reg))
		return;
	pci_host_config_write(h, bus, slot, func, reg, size, (uint32_t)value);
}

const struct bus_ops pci_config_data_ops = {
	.read = config_data_read,
	.write = config_data_write,
};

/* ---- ECAM (PCIe 4.0 §7.2.2): bus 27:20, device 19:15, function 14:12 -- */

static void ecam_split(uint64_t offset, unsigned *bus, unsigned *slot,
		       unsigned *func, unsigned *reg)
{
	*bus = (unsigned)(offset >> 20) & 0xFF;
	*slot = (unsigned)(offset >> 15) & 0x1F;
	*func = (unsigned)(offset >> 12) & 0x7;
	*reg = (unsigned)offset & 0xFFF;
}

static void ecam_read(void *opaque, uint64_t offset, unsigned size,
		      uint64_t *value)
{
	struct pci_host *h = opaque;
	unsigned bus, slot, func, reg;

	if (size == 8) {
		/* Two dword reads; PCIe allows splitting a QWORD access. */
		uint64_t lo, hi;

		ecam_read(opaque, offset, 4, &lo);
		ecam_read(opaque, offset + 4, 4, &hi);
		*value = lo | hi << 32;
		return;
	}
	ecam_split(offset, &bus, &slot, &func, &reg);
	if (reg + size > PCI_ECAM_FN_SIZE) {
		*value = all_ones(size);
		return;
	}
	*value = pci_host_config_read(h, bus, slot, func, reg, size);
}

static void ecam_write(void *opaque, uint64_t offset, unsigned size,
		       uint64_t value)
{
	struct pci_host *h = opaque;
	unsigned bus, slot, func, reg;

	if (size == 8) {
		ecam_write(opaque, offset, 4, value & 0xFFFFFFFFu);
		ecam_write(opaque, offset + 4, 4, value >> 32);
		return;
	}
	ecam_split(offset, &bus, &slot, &func, &reg);
	if (reg + size > PCI_ECAM_FN_SIZE)
		return;
	pci_host_config_write(h, bus, slot, func, reg, size, (uint32_t)value);
}

const struct bus_ops pci_ecam_ops = { .read = ecam_read, .write = ecam_write };

/* ---- BAR access -------------------------------------------------------- */

static bool bar_range_ok(const struct pci_function *fn, unsigned bar,
			 uint64_t offset, unsigned size)
{
	return bar < PCI_NUM_BARS && fn->bars[bar].size &&
	       size >= 1 && size <= 8 && offset < fn->bars[bar].size &&
	       size <= fn->bars[bar].size - offset;
}

/* MSI-X table / PBA inside this BAR?  Returns 1 table, 2 PBA, 0 else. */
static int msix_region(const struct pci_function *fn, unsigned bar,
		       uint64_t offset, unsigned size, uint64_t *rel)
{
	const struct pci_msix *m = fn->msix;
	uint64_t tlen, plen;

	if (!m || m->bar != bar)
		return 0;
	tlen = (uint64_t)m->nr_vectors * PCI_MSIX_ENTRY_SIZE;
	plen = ((m->nr_vectors + 63) / 64) * 8;
	if (offset >= m->table_offset && offset + size <= m->table_offset + tlen) {
		*rel = offset - m->table_offset;
		return 1;
	}
	if (offset >= m->pba_offset && offset + size <= m->pba_offset + plen) {
		*rel = offset - m->pba_offset;
		return 2;
	}
	return 0;
}

int pci_function_bar_read(struct pci_function *fn, unsigned bar,
			  uint64_t offset, unsigned size, uint64_t *value)
{
	uint64_t rel;

	*value = 0;
	if (!bar_range_ok(fn, bar, offset, size))
		return -EINVAL;
	switch (msix_region(fn, bar, offset, size, &rel)) {
	case 1:
		msix_table_read(fn, rel, size, value);
		break;
	case 2:
		msix_pba_read(fn, rel, size, value);
		break;
	default:
		if (fn->ops && fn->ops->bar_read)
			fn->ops->bar_read(fn, bar, offset, size, value);
	}
	if (size < 8)
		*value &= all_ones(size);
	return 0;
}

int pci_function_bar_write(struct pci_function *fn, unsigned bar,
			   uint64_t offset, unsigned size, uint64_t value)
{
	uint64_t rel;

	if (!bar_range_ok(fn, bar, offset, size))
		return -EINVAL;
	switch (msix_region(fn, bar, offset, size, &rel)) {
	case 1:
		msix_table_write(fn, rel, size, value);
		break;
	case 2:
		break; /* the PBA is read-only */
	default:
		if (fn->ops && fn->ops->bar_write)
			fn->ops->bar_write(fn, bar, offset, size, value);
	}
	return 0;
}

/* Find the mapped BAR holding [addr, addr+size); map_lock held. */
static struct pci_function *find_bar(struct pci_host *h, bool io,
				     uint64_t addr, unsigned size,
				     unsigned *bar, uint64_t *offset)
{
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		struct pci_function *fn = h->slots[s];

		if (!fn)
			continue;
		for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &fn->bars[i];

			if (!b->mapped || b->io != io || addr < b->addr ||
			    addr - b->addr >= b->size ||
			    size > b->size - (addr - b->addr))
				continue;
			*bar = i;
			*offset = addr - b->addr;
			return fn;
		}
	}
	return NULL;
}

static void window_read(struct pci_host *h, bool io, uint64_t addr,
			unsigned size, uint64_t *value)
{
	struct pci_function *fn;
	unsigned bar;
	uint64_t off;

	pthread_rwlock_rdlock(&h->map_lock);
	fn = find_bar(h, io, addr, size, &bar, &off);
	if (fn)
		pci_function_bar_read(fn, bar, off, size, value);
	else
		*value = all_ones(size); /* master abort */
	pthread_rwlock_unlock(&h->map_lock);
}

static void window_write(struct pci_host *h, bool io, uint64_t addr,
			 unsigned size, uint64_t value)
{
	struct pci_function *fn;
	unsigned bar;
	uint64_t off;

	pthread_rwlock_rdlock(&h->map_lock);
	fn = find_bar(h, io, addr, size, &bar, &off);
	if (fn)
		pci_function_bar_write(fn, bar, off, size, value);
	pthread_rwlock_unlock(&h->map_lock);
}

static void mmio_window_read(void *opaque, uint64_t offset, unsigned size,
			     uint64_t *value)
{
	struct pci_host *h = opaque;

	window_read(h, false, h->mmio_base + offset, size, value);
}

static void mmio_window_write(void *opaque, uint64_t offset, unsigned size,
			      uint64_t value)
{
	struct pci_host *h = opaque;

	window_write(h, false, h->mmio_base + offset, size, value);
}

const struct bus_ops pci_mmio_window_ops = {
	.read = mmio_window_read,
	.write = mmio_window_write,
};

static void io_window_read(void *opaque, uint64_t offset, unsigned size,
			   uint64_t *value)
{
	struct pci_host *h = opaque;

	window_read(h, true, h->io_base + offset, size, value);
}

static void io_window_write(void *opaque, uint64_t offset, unsigned size,
			    uint64_t value)
{
	struct pci_host *h = opaque;

	window_write(h, true, h->io_base + offset, size, value);
}

const struct bus_ops pci_io_window_ops = {
	.read = io_window_read,
	.write = io_window_write,
};

/* ---- building functions ------------------------------------------------ */

void pci_function_init(struct pci_function *fn, const char *name,
		       uint16_t vendor, uint16_t device, uint8_t revision,
		       uint32_t class_code, uint16_t subsys_vendor,
		       uint16_t subsys_id, const struct pci_device_ops *ops,
		       void *opaque)
{
	memset(fn, 0, sizeof(*fn));
	fn->name = name;
	fn->ops = ops;
	fn->opaque = opaque;
	pthread_mutex_init(&fn->intx_lock, NULL);
	pci_set_word(fn->cfg, PCI_VENDOR_ID, vendor);
	pci_set_word(fn->cfg, PCI_DEVICE_ID, device);
	pci_set_byte(fn->cfg, PCI_REVISION_ID, revision);
	pci_set_byte(fn->cfg, PCI_CLASS_PROG, (uint8_t)class_code);
	pci_set_word(fn->cfg, PCI_CLASS_PROG + 1, (uint16_t)(class_code >> 8));
	pci_set_word(fn->cfg, PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	pci_set_word(fn->cfg, PCI_SUBSYSTEM_ID, subsys_id);
	/* Writable: COMMAND's defined control bits, cache line size,
	 * latency timer, interrupt line; RW1C: STATUS error bits. */
	pci_set_word(fn->wmask, PCI_COMMAND,
		     PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
			     PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
			     PCI_COMMAND_INTX_DISABLE);
	pci_set_word(fn->w1cmask, PCI_STATUS, PCI_STATUS_RW1C);
	fn->wmask[PCI_CACHE_LINE_SIZE] = 0xFF;
	fn->wmask[PCI_LATENCY_TIMER] = 0xFF;
	fn->wmask[PCI_INTERRUPT_LINE] = 0xFF;
	fn->next_cap = 0x40;
}

int pci_function_add_bar(struct pci_function *fn, unsigned bar,
			 uint64_t size, bool io, bool mem64, bool prefetch)
{
	unsigned off = PCI_BAR0 + 4 * bar;
	uint64_t mask;

	if (bar >= PCI_NUM_BARS || (mem64 && (io || bar + 1 >= PCI_NUM_BARS)) ||
	    size & (size - 1) || size < (io ? 4u : 16u) ||
	    (io && size > 256) || (!mem64 && size > 0x80000000ull) ||
	    fn->bars[bar].size || (mem64 && fn->bars[bar + 1].size))
		return -EINVAL;
	fn->bars[bar] = (struct pci_bar){ .size = size, .io = io,
					  .mem64 = mem64,
					  .prefetch = prefetch && !io };
	/* BAR sizing (PCI 3.0 §6.2.5.1): the size's low bits and the type
	 * bits are read-only, so writing all ones reads back ~(size-1). */
	mask = ~(size - 1);
	if (io) {
		pci_set_long(fn->cfg, off, PCI_BAR_IO);
		pci_set_long(fn->wmask, off, (uint32_t)mask & ~3u);
	} else {
		pci_set_long(fn->cfg, off,
			     (mem64 ? PCI_BAR_MEM_TYPE_64 : 0) |
				     (prefetch ? PCI_BAR_MEM_PREFETCH : 0));
		pci_set_long(fn->wmask, off, (uint32_t)mask & ~0xFu);
		if (mem64)
			pci_set_long(fn->wmask, off + 4, (uint32_t)(mask >> 32));
	}
	return 0;
}

int pci_function_add_capability(struct pci_function *fn, uint8_t id,
				unsigned len)
{
	unsigned off = (fn->next_cap + 3u) & ~3u;

	if (len < 2 || off + len > PCI_CFG_SIZE)
		return -ENOSPC;
	fn->cfg[off] = id;
	fn->cfg[off + 1] = 0;
	if (fn->last_cap)
		fn->cfg[fn->last_cap + 1] = (uint8_t)off;
	else
		fn->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
	pci_set_word(fn->cfg, PCI_STATUS,
		     pci_get_word(fn->cfg, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	fn->last_cap = (uint8_t)off;
	fn->next_cap = (uint8_t)(off + len <= 0xFF ? off + len : 0xFF);
	return (int)off;
}

int pci_function_add_msix(struct pci_function *fn, unsigned nr_vectors,
			  unsigned bar, uint32_t table_offset,
			  uint32_t pba_offset)
{
	struct pci_msix *m;
	int cap;

	if (!nr_vectors || nr_vectors > PCI_MSIX_MAX_VECTORS ||
	    bar >= PCI_NUM_BARS || fn->bars[bar].io || fn->msix ||
	    (table_offset & 7) || (pba_offset & 7) ||
	    (uint64_t)table_offset + nr_vectors * PCI_MSIX_ENTRY_SIZE >
		    fn->bars[bar].size ||
	    (uint64_t)pba_offset + ((nr_vectors + 63) / 64) * 8 >
		    fn->bars[bar].size)
		return -EINVAL;
	cap = pci_function_add_capability(fn, PCI_CAP_ID_MSIX,
					  PCI_MSIX_CAP_LEN);
	if (cap < 0)
		return cap;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->table = calloc(nr_vectors, PCI_MSIX_ENTRY_SIZE);
	m->pba = calloc((nr_vectors + 63) / 64, sizeof(uint64_t));
	m->vec = calloc(nr_vectors, sizeof(*m->vec));
	if (!m->table || !m->pba || !m->vec) {
		free(m->table);
		free(m->pba);
		free(m->vec);
		free(m);
		return -ENOMEM;
	}
	m->nr_vectors = nr_vectors;
	m->bar = bar;
	m->table_offset = table_offset;
	m->pba_offset = pba_offset;
	m->cap = (uint8_t)cap;
	pthread_mutex_init(&m->lock, NULL);
	/* §6.8.2.9: every vector starts masked. */
	for (unsigned v = 0; v < nr_vectors; v++)
		m->table[v * PCI_MSIX_ENTRY_SIZE + 12] =
			PCI_MSIX_ENTRY_CTRL_MASKBIT;
	pci_set_word(fn->cfg, cap + PCI_MSIX_FLAGS,
		     (uint16_t)(nr_vectors - 1));
	pci_set_word(fn->wmask, cap + PCI_MSIX_FLAGS,
		     PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	pci_set_long(fn->cfg, cap + PCI_MSIX_TABLE, table_offset | bar);
	pci_set_long(fn->cfg, cap + PCI_MSIX_PBA, pba_offset | bar);
	fn->msix = m;
	return 0;
}

static void function_release(struct pci_host *h, struct pci_function *fn)
{
	while (fn->ioeventfds) {
		struct pci_ioeventfd *e = fn->ioeventfds;

		fn->ioeventfds = e->next;
		if (e->assigned && h->plat && h->plat->ioeventfd)
			h->plat->ioeventfd(h->plat_opaque, false,
					   fn->bars[e->bar].io,
					   e->assigned_addr, e->len,
					   e->datamatch, e->fd);
		free(e);
	}
	if (fn->msix) {
		for (unsigned v = 0; v < fn->msix->nr_vectors; v++)
			if (fn->msix->vec[v].handle && h->plat->msi_free)
				h->plat->msi_free(h->plat_opaque,
						  fn->msix->vec[v].handle);
		free(fn->msix->table);
		free(fn->msix->pba);
		free(fn->msix->vec);
		pthread_mutex_destroy(&fn->msix->lock);
		free(fn->msix);
		fn->msix = NULL;
	}
	if (fn->intx_handle && h->plat && h->plat->intx_free)
		h->plat->intx_free(h->plat_opaque, fn->intx_handle);
	fn->intx_handle = NULL;
}

int pci_host_add_function(struct pci_host *h, struct pci_function *fn,
			  unsigned slot, unsigned intx_gsi)
{
	int rc;

	if (slot == 0 || slot >= PCI_MAX_SLOTS)
		return -EINVAL;
	if (h->slots[slot])
		return -EEXIST;
	fn->host = h;
	fn->slot = slot;
	if (fn->msix) {
		for (unsigned v = 0; v < fn->msix->nr_vectors; v++) {
			rc = h->plat && h->plat->msi_alloc
				     ? h->plat->msi_alloc(h->plat_opaque,
							  &fn->msix->vec[v].handle)
				     : -ENOTSUP;
			if (rc)
				goto fail;
		}
	}
	if (intx_gsi) {
		rc = h->plat && h->plat->intx_alloc
			     ? h->plat->intx_alloc(h->plat_opaque, intx_gsi,
						   &fn->intx_handle)
			     : -ENOTSUP;
		if (rc)
			goto fail;
		fn->intx_gsi = intx_gsi;
		/* INTA#, and the line firmware would write for the OS. */
		fn->cfg[PCI_INTERRUPT_PIN] = 1;
		fn->cfg[PCI_INTERRUPT_LINE] = (uint8_t)intx_gsi;
	}
	pthread_mutex_lock(&h->cfg_lock);
	h->slots[slot] = fn;
	pthread_mutex_unlock(&h->cfg_lock);
	return 0;
fail:
	function_release(h, fn);
	return rc;
}

int pci_function_add_ioeventfd(struct pci_function *fn, unsigned bar,
			       uint64_t offset, unsigned len,
			       int64_t datamatch, int fd)
{
	struct pci_ioeventfd *e;
	struct pci_host *h = fn->host;

	if (!h || bar >= PCI_NUM_BARS || !fn->bars[bar].size ||
	    offset >= fn->bars[bar].size)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	*e = (struct pci_ioeventfd){ .bar = bar, .offset = offset, .len = len,
				     .datamatch = datamatch, .fd = fd };
	pthread_mutex_lock(&h->cfg_lock);
	pthread_rwlock_wrlock(&h->map_lock);
	e->next = fn->ioeventfds;
	fn->ioeventfds = e;
	ioeventfd_sync(fn, e);
	pthread_rwlock_unlock(&h->map_lock);
	pthread_mutex_unlock(&h->cfg_lock);
	return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

int pci_host_assign_bars(struct pci_host *h)
{
	int rc = 0;

	pthread_mutex_lock(&h->cfg_lock);
	for (unsigned s = 0; s < PCI_MAX_SLOTS && !rc; s++) {
		struct pci_function *fn = h->slots[s];
		uint16_t cmd = 0;

		if (!fn)
			continue;
		for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
			struct pci_bar *b = &fn->bars[i];
			unsigned off = PCI_BAR0 + 4 * i;
			uint64_t addr;

			if (!b->size)
				continue;
			if (b->io) {
				addr = align_up(h->next_io, b->size);
				if (addr + b->size >
				    (uint64_t)h->io_base + h->io_size) {
					rc = -ENOSPC;
					break;
				}
				h->next_io = (uint32_t)(addr + b->size);
				pci_set_long(fn->cfg, off,
					     (uint32_t)addr | PCI_BAR_IO);
				cmd |= PCI_COMMAND_IO;
				continue;
			}
			addr = align_up(h->next_mmio, b->size);
			if (addr + b->size > h->mmio_base + h->mmio_size) {
				rc = -ENOSPC;
				break;
			}
			h->next_mmio = addr + b->size;
			pci_set_long(fn->cfg, off,
				     (uint32_t)addr |
					     (pci_get_long(fn->cfg, off) & 0xF));
			if (b->mem64)
				pci_set_long(fn->cfg, off + 4,
					     (uint32_t)(addr >> 32));
			cmd |= PCI_COMMAND_MEMORY;
		}
		/* Like firmware, leave decoding on so the OS finds the
		 * devices usable as assigned. */
		pci_set_word(fn->cfg, PCI_COMMAND, command_of(fn) | cmd);
		update_mappings(fn);
	}
	pthread_mutex_unlock(&h->cfg_lock);
	return rc;
}

/* ---- the host ---------------------------------------------------------- */

int pci_host_init(struct pci_host *h, struct bus *pio, struct bus *mmio,
		  const struct pci_host_config *cfg,
		  const struct pci_platform_ops *plat, void *plat_opaque)
{
	int rc;

	memset(h, 0, sizeof(*h));
	if ((cfg->ecam_base & 0xFFFFF) || cfg->ecam_buses > 256 ||
	    (cfg->ecam_base && !cfg->ecam_buses))
		return -EINVAL;
	h->pio = pio;
	h->mmio = mmio;
	h->plat = plat;
	h->plat_opaque = plat_opaque;
	h->ecam_base = cfg->ecam_base;
	h->ecam_buses = cfg->ecam_buses;
	h->mmio_base = cfg->mmio_base;
	h->mmio_size = cfg->mmio_size;
	h->io_base = cfg->io_base;
	h->io_size = cfg->io_base ? 0x10000u - cfg->io_base : 0;
	h->reset_read = cfg->reset_read;
	h->reset_write = cfg->reset_write;
	h->reset_opaque = cfg->reset_opaque;
	h->next_mmio = h->mmio_base;
	h->next_io = h->io_base && h->io_base <= PCI_IO_ASSIGN_START
			     ? PCI_IO_ASSIGN_START : h->io_base;
	pthread_mutex_init(&h->cfg_lock, NULL);
	pthread_rwlock_init(&h->map_lock, NULL);
	pci_function_init(&h->bridge, "host-bridge", PCI_HOST_BRIDGE_VENDOR,
			  PCI_HOST_BRIDGE_DEVICE, 0, PCI_HOST_BRIDGE_CLASS, 0, 0,
			  NULL, NULL);
	h->bridge.host = h;
	h->bridge.slot = 0;
	h->slots[0] = &h->bridge;

	rc = bus_register(pio, PCI_CONFIG_ADDRESS_PORT, 4,
			  &pci_config_address_ops, h, "pci-config-address");
	if (!rc)
		rc = bus_register(pio, PCI_CONFIG_DATA_PORT, 4,
				  &pci_config_data_ops, h, "pci-config-data");
	if (!rc && h->io_size)
		rc = bus_register(pio, h->io_base, h->io_size,
				  &pci_io_window_ops, h, "pci-io");
	if (!rc && h->ecam_base)
		rc = bus_register(mmio, h->ecam_base,
				  (uint64_t)h->ecam_buses << 20, &pci_ecam_ops,
				  h, "pci-ecam");
	if (!rc && h->mmio_size)
		rc = bus_register(mmio, h->mmio_base, h->mmio_size,
				  &pci_mmio_window_ops, h, "pci-mmio32");
	return rc;
}

void pci_host_destroy(struct pci_host *h)
{
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		if (h->slots[s]) {
			function_release(h, h->slots[s]);
			h->slots[s] = NULL;
		}
	}
	pthread_mutex_destroy(&h->cfg_lock);
	pthread_rwlock_destroy(&h->map_lock);
}
