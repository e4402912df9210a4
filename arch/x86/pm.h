/* The ACPI fixed-hardware power-management block (PM1a event, PM1a control,
 * PM timer) on the port-I/O bus: how a guest's ACPI poweroff reaches Kite.
 *
 * ACPI 6.4 §4.8.4: PM1_EVT holds PM1_STS (write 1 to clear) and PM1_EN, each
 * PM1_EVT_LEN/2 = 2 bytes; PM1_CNT holds SCI_EN, SLP_TYPx and SLP_EN; PM_TMR
 * is a free-running 32-bit counter at 3.579545 MHz.  The hardware is always
 * in ACPI mode (the FADT has no SMI_CMD), so SCI_EN reads as 1.
 *
 * Writing SLP_EN with some SLP_TYP calls ops->on_sleep(opaque, slp_typ);
 * PM_SLP_TYP_S5 is the value the DSDT's \_S5 object hands the guest, so
 * that call with PM_SLP_TYP_S5 means "power off".  The reset register
 * (port 0xCF9) is not part of this block.
 *
 * The SCI is level-triggered active-high (the MADT overrides ISA IRQ 9 that
 * way): ops->set_sci(opaque, level) is called whenever (PM1_STS & PM1_EN)
 * becomes nonzero or zero again.  pm_power_button() presses the fixed power
 * button (PWRBTN_STS), which is how `kite stop` can ask for a clean
 * shutdown. */
#ifndef KITE_ARCH_X86_PM_H
#define KITE_ARCH_X86_PM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

/* Default ports (the FADT describes whatever pm_init() was given). */
#define PM_EVT_PORT 0x600
#define PM_CNT_PORT 0x604
#define PM_TMR_PORT 0x608
#define PM1_EVT_LEN 4
#define PM1_CNT_LEN 2
#define PM_TMR_LEN  4

#define PM_SCI_IRQ 9          /* ISA IRQ = GSI of the SCI */
#define PM_SLP_TYP_S5 5       /* SLP_TYP written for \_S5 (soft off) */
#define PM_TMR_HZ 3579545ULL  /* ACPI 6.4 §4.8.2.1 */

/* ACPI 6.4 §4.8.4.1.1 Table 4.11 / §4.8.4.1.2 Table 4.12 */
#define PM1_TMR_STS    (1u << 0)
#define PM1_BM_STS     (1u << 4)
#define PM1_GBL_STS    (1u << 5)
#define PM1_PWRBTN_STS (1u << 8)
#define PM1_SLPBTN_STS (1u << 9)
#define PM1_RTC_STS    (1u << 10)
#define PM1_WAK_STS    (1u << 15)
/* ACPI 6.4 §4.8.4.2.1 Table 4.13 */
#define PM1_SCI_EN     (1u << 0)
#define PM1_BM_RLD     (1u << 1)
#define PM1_GBL_RLS    (1u << 2)
#define PM1_SLP_TYP_SHIFT 10
#define PM1_SLP_TYP_MASK (7u << PM1_SLP_TYP_SHIFT)
#define PM1_SLP_EN     (1u << 13)

struct pm_ops {
	/* The guest wrote SLP_EN with |slp_typ|; PM_SLP_TYP_S5 = power off.
	 * Called from a vCPU thread without pm's lock held. */
	void (*on_sleep)(void *opaque, unsigned slp_typ);
	/* Optional: drive the SCI line (GSI PM_SCI_IRQ).  Called with pm's
	 * lock held: it must not call back into pm. */
	void (*set_sci)(void *opaque, bool level);
};

struct pm_device {
	pthread_mutex_t lock;
	uint16_t sts, en, cnt;          /* PM1_STS, PM1_EN, PM1_CNT */
	bool sci_level;
	uint16_t evt_port, cnt_port, tmr_port;
	struct bus *pio;                /* where we registered, for pm_destroy */
	struct pm_ops ops;
	void *opaque;
	/* Monotonic nanoseconds for PM_TMR; CLOCK_MONOTONIC unless a test
	 * replaces it after pm_init(). */
	uint64_t (*clock_ns)(void);
	uint64_t clock_origin_ns;
};

/* Register the three blocks on |pio| at the given ports (PM_*_PORT are the
 * defaults; tmr_port 0 = no PM timer).  Returns 0 or a negative errno
 * (-EEXIST when a port is taken; nothing stays registered on failure). */
int pm_init(struct pm_device *pm, struct bus *pio, uint16_t evt_port,
	    uint16_t cnt_port, uint16_t tmr_port, const struct pm_ops *ops,
	    void *opaque);
void pm_destroy(struct pm_device *pm);

/* Press the fixed-feature power button: sets PWRBTN_STS (SCI if enabled). */
void pm_power_button(struct pm_device *pm);
/* Back to power-on state (VM reset): status/enable clear, SLP_TYP 0. */
void pm_reset(struct pm_device *pm);

#endif
