/* Legacy PC platform ports that end or reset the VM, and the harmless ones
 * that guests poke during boot:
 *   0xF4        debug exit (QEMU isa-debug-exit compatible): v → (v<<1)|1
 *   0x60, 0x64  i8042 keyboard controller; 0xFE to 0x64 pulses reset
 *   0xCF9       reset control register (bit 2 = reset); with a PCI host
 *               the byte sits inside the host's 0xCF8-0xCFB config
 *               address range, so the host forwards it here
 *               (x86_platform_reset_ctrl_read/_write)
 *   0x80        POST code: ignored
 *   0x440       boot-timing marker: a write logs the time since kite's exec
 */
#ifndef KITE_ARCH_X86_PLATFORM_H
#define KITE_ARCH_X86_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

#define X86_DEBUG_EXIT_PORT 0xF4
#define X86_I8042_DATA_PORT 0x60
#define X86_I8042_CMD_PORT  0x64
#define X86_RESET_CTRL_PORT 0xCF9
#define X86_POST_PORT       0x80
#define X86_BOOT_MARKER_PORT 0x440

#define I8042_CMD_PULSE_RESET 0xFE
#define RESET_CTRL_RESET 0x04

/* What the platform ports ask of the VM; set by the owner, so the port
 * models can be tested without a VM. */
struct x86_platform_events {
	void (*debug_exit)(void *opaque, uint32_t value);
	void (*reset)(void *opaque, const char *source);
	void (*boot_marker)(void *opaque, uint8_t value); /* may be NULL */
	void *opaque;
	/* Do not register 0xCF9 on the bus: the PCI host owns 0xCF8-0xCFB
	 * and forwards byte accesses at 0xCF9 to the functions below. */
	bool reset_ctrl_via_pci;
};

struct x86_platform {
	struct x86_platform_events ev;
	uint8_t i8042_cmd;       /* last command byte written to 0x64 */
	uint8_t reset_ctrl;      /* 0xCF9 contents */
};

/* Register the ports on |pio|. */
int x86_platform_init(struct x86_platform *p, struct bus *pio,
		      const struct x86_platform_events *ev);

/* The reset control register (0xCF9) for whoever decodes that port. */
uint8_t x86_platform_reset_ctrl_read(struct x86_platform *p);
void x86_platform_reset_ctrl_write(struct x86_platform *p, uint8_t value);

#endif
