/* ACPI PM1 event/control blocks and PM timer; see pm.h.
 * Section numbers are ACPI 6.4. */
#include "arch/x86/pm.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* Bits a guest may set in PM1_EN (§4.8.4.1.2 Table 4.12): only events we
 * can raise are kept, so a status bit never fires unasked. */
#define PM1_EN_WRITABLE (PM1_TMR_STS | PM1_GBL_STS | PM1_PWRBTN_STS | \
			 PM1_SLPBTN_STS | PM1_RTC_STS)
/* Bits a guest may clear in PM1_STS (write 1 to clear). */
#define PM1_STS_CLEARABLE (PM1_TMR_STS | PM1_BM_STS | PM1_GBL_STS | \
			   PM1_PWRBTN_STS | PM1_SLPBTN_STS | PM1_RTC_STS | \
			   PM1_WAK_STS)
/* PM1_CNT bits that read back what was written (SLP_EN, GBL_RLS are
 * write-only and read as 0; SCI_EN is fixed at 1). */
#define PM1_CNT_STORED (PM1_BM_RLD | PM1_SLP_TYP_MASK)

static uint64_t pm_clock_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Called with the lock held, so level changes reach the irqchip in the
 * order they happened. */
static void pm_update_sci(struct pm_device *pm)
{
	bool level = (pm->sts & pm->en) != 0;

	if (level == pm->sci_level)
		return;
	pm->sci_level = level;
	if (pm->ops.set_sci)
		pm->ops.set_sci(pm->opaque, level);
}

/* ---- PM1_EVT: bytes 0-1 PM1_STS, bytes 2-3 PM1_EN (§4.8.4.1) ---------- */

static void pm_evt_read(void *opaque, uint64_t offset, unsigned size,
			uint64_t *value)
{
	struct pm_device *pm = opaque;
	uint32_t block;

	if (offset >= PM1_EVT_LEN || size > PM1_EVT_LEN - offset)
		return;
	pthread_mutex_lock(&pm->lock);
	block = (uint32_t)pm->sts | ((uint32_t)pm->en << 16);
	pthread_mutex_unlock(&pm->lock);
	*value = (block >> (8 * offset)) & (size >= 4 ? 0xFFFFFFFFu :
					    ((1u << (8 * size)) - 1));
}

static void pm_evt_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	struct pm_device *pm = opaque;
	uint32_t mask, val;
	if (offset >= PM1_EVT_LEN || size > PM1_EVT_LEN - offset)
		return;
	/* Which bytes of the 32-bit block this access covers. */
	mask = (size >= 4 ? 0xFFFFFFFFu : ((1u << (8 * size)) - 1)) << (8 * offset);
	val = (uint32_t)(value << (8 * offset)) & mask;

	pthread_mutex_lock(&pm->lock);
	pm->sts &= (uint16_t)~(val & PM1_STS_CLEARABLE);
	if (mask & 0xFFFF0000u) {
		uint16_t en_mask = (uint16_t)(mask >> 16);

		pm->en = (uint16_t)((pm->en & ~en_mask) |
				    ((val >> 16) & en_mask & PM1_EN_WRITABLE));
	}
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static const struct bus_ops pm_evt_ops = {
	.read = pm_evt_read,
	.write = pm_evt_write,
};

/* ---- PM1_CNT (§4.8.4.2.1) -------------------------------------------- */

static void pm_cnt_read(void *opaque, uint64_t offset, unsigned size,
			uint64_t *value)
{
	struct pm_device *pm = opaque;
	uint16_t cnt;

	if (offset >= PM1_CNT_LEN || size > PM1_CNT_LEN - offset)
		return;
	pthread_mutex_lock(&pm->lock);
	cnt = (uint16_t)(pm->cnt | PM1_SCI_EN);
	pthread_mutex_unlock(&pm->lock);
	*value = (cnt >> (8 * offset)) & ((1u << (8 * size)) - 1);
}

static void pm_cnt_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	struct pm_device *pm = opaque;
	uint16_t mask, val, merged;
	bool sleep;
	unsigned slp_typ;

	if (offset >= PM1_CNT_LEN || size > PM1_CNT_LEN - offset)
		return;
	mask = (uint16_t)(((1u << (8 * size)) - 1) << (8 * offset));
	val = (uint16_t)((value << (8 * offset)) & mask);

	pthread_mutex_lock(&pm->lock);
	merged = (uint16_t)((pm->cnt & ~mask) | val);
	pm->cnt = merged & PM1_CNT_STORED;
	/* §4.8.3.2 / §16.1.3.1: writing SLP_EN starts the transition to the
	 * state SLP_TYP names; only a write that includes SLP_EN counts. */
	sleep = (val & PM1_SLP_EN) != 0;
	slp_typ = (merged & PM1_SLP_TYP_MASK) >> PM1_SLP_TYP_SHIFT;
	pthread_mutex_unlock(&pm->lock);

	if (sleep && pm->ops.on_sleep)
		pm->ops.on_sleep(pm->opaque, slp_typ);
}

static const struct bus_ops pm_cnt_ops = {
	.read = pm_cnt_read,
	.write = pm_cnt_write,
};

/* ---- PM_TMR (§4.8.4.3): read-only 32-bit counter (FADT TMR_VAL_EXT) ---- */

static void pm_tmr_read(void *opaque, uint64_t offset, unsigned size,
			uint64_t *value)
{
	struct pm_device *pm = opaque;
	uint64_t ns, ticks;
	uint32_t counter;

	if (offset >= PM_TMR_LEN || size > PM_TMR_LEN - offset)
		return;
	ns = pm->clock_ns() - pm->clock_origin_ns;
	/* ticks = ns * HZ / 1e9 without overflowing for ~150 years:
	 * split ns into seconds and remainder. */
	ticks = (ns / 1000000000ULL) * PM_TMR_HZ +
		(ns % 1000000000ULL) * PM_TMR_HZ / 1000000000ULL;
	counter = (uint32_t)ticks;
	*value = (counter >> (8 * offset)) &
		 (size >= 4 ? 0xFFFFFFFFu : ((1u << (8 * size)) - 1));
}

static void pm_tmr_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	/* read-only register; writes are ignored */
	(void)opaque, (void)offset, (void)size, (void)value;
}

static const struct bus_ops pm_tmr_ops = {
	.read = pm_tmr_read,
	.write = pm_tmr_write,
};

int pm_init(struct pm_device *pm, struct bus *pio, uint16_t evt_port,
	    uint16_t cnt_port, uint16_t tmr_port, const struct pm_ops *ops,
	    void *opaque)
{
	int err;

	if (!pm || !pio || !ops)
		return -EINVAL;
	memset(pm, 0, sizeof(*pm));
	err = pthread_mutex_init(&pm->lock, NULL);
	if (err)
		return -err;
	pm->evt_port = evt_port;
	pm->cnt_port = cnt_port;
	pm->tmr_port = tmr_port;
	pm->ops = *ops;
	pm->opaque = opaque;
	pm->clock_ns = pm_clock_monotonic_ns;
	pm->clock_origin_ns = pm->clock_ns();

	err = bus_register(pio, evt_port, PM1_EVT_LEN, &pm_evt_ops, pm,
			   "acpi-pm1-evt");
	if (err)
		goto fail_lock;
	err = bus_register(pio, cnt_port, PM1_CNT_LEN, &pm_cnt_ops, pm,
			   "acpi-pm1-cnt");
	if (err)
		goto fail_evt;
	if (tmr_port) {
		err = bus_register(pio, tmr_port, PM_TMR_LEN, &pm_tmr_ops, pm,
				   "acpi-pm-tmr");
		if (err)
			goto fail_cnt;
	}
	pm->pio = pio;
	return 0;

fail_cnt:
	bus_unregister(pio, cnt_port);
fail_evt:
	bus_unregister(pio, evt_port);
fail_lock:
	pthread_mutex_destroy(&pm->lock);
	return err;
}

void pm_destroy(struct pm_device *pm)
{
	if (!pm->pio)
		return;
	bus_unregister(pm->pio, pm->evt_port);
	bus_unregister(pm->pio, pm->cnt_port);
	if (pm->tmr_port)
		bus_unregister(pm->pio, pm->tmr_port);
	pm->pio = NULL;
	pthread_mutex_destroy(&pm->lock);
}

void pm_power_button(struct pm_device *pm)
{
	/* §4.8.2.2.1.1: the fixed power button sets PWRBTN_STS; the SCI
	 * fires when PWRBTN_EN is set. */
	pthread_mutex_lock(&pm->lock);
	pm->sts |= PM1_PWRBTN_STS;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

void pm_reset(struct pm_device *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts = 0;
	pm->en = 0;
	pm->cnt = 0;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}
