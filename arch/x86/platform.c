#include "arch/x86/platform.h"

#include <string.h>

static void debug_exit_write(void *opaque, uint64_t offset, unsigned size,
			     uint64_t value)
{
	struct x86_platform *p = opaque;

	(void)offset;
	(void)size;
	p->ev.debug_exit(p->ev.opaque, (uint32_t)value);
}

static const struct bus_ops debug_exit_ops = { .write = debug_exit_write };

/* i8042: no keyboard is attached.  Status reads 0 (output buffer empty,
 * input buffer empty) so drivers find nothing to read; only the reset pulse
 * command matters. */
static void i8042_read(void *opaque, uint64_t offset, unsigned size,
		       uint64_t *value)
{
	(void)opaque;
	(void)offset;
	(void)size;
	*value = 0;
}

static void i8042_cmd_write(void *opaque, uint64_t offset, unsigned size,
			    uint64_t value)
{
	struct x86_platform *p = opaque;

	(void)offset;
	(void)size;
	p->i8042_cmd = (uint8_t)value;
	if ((uint8_t)value == I8042_CMD_PULSE_RESET)
		p->ev.reset(p->ev.opaque, "i8042 reset pulse");
}

static void ignore_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value);

static const struct bus_ops i8042_data_ops = { .read = i8042_read,
					       .write = ignore_write };
static const struct bus_ops i8042_cmd_ops = { .read = i8042_read,
					      .write = i8042_cmd_write };

uint8_t x86_platform_reset_ctrl_read(struct x86_platform *p)
{
	return p->reset_ctrl;
}

void x86_platform_reset_ctrl_write(struct x86_platform *p, uint8_t value)
{
	p->reset_ctrl = value & 0x0E;
	if (value & RESET_CTRL_RESET)
		p->ev.reset(p->ev.opaque, "reset control register 0xCF9");
}

static void reset_ctrl_read(void *opaque, uint64_t offset, unsigned size,
			    uint64_t *value)
{
	(void)offset;
	(void)size;
	*value = x86_platform_reset_ctrl_read(opaque);
}

static void reset_ctrl_write(void *opaque, uint64_t offset, unsigned size,
			     uint64_t value)
{
	(void)offset;
	(void)size;
	x86_platform_reset_ctrl_write(opaque, (uint8_t)value);
}

static const struct bus_ops reset_ctrl_ops = { .read = reset_ctrl_read,
					       .write = reset_ctrl_write };

static void ignore_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	(void)opaque;
	(void)offset;
	(void)size;
	(void)value;
}

static const struct bus_ops post_ops = { .write = ignore_write };

static void boot_marker_write(void *opaque, uint64_t offset, unsigned size,
			      uint64_t value)
{
	struct x86_platform *p = opaque;

	(void)offset;
	(void)size;
	if (p->ev.boot_marker)
		p->ev.boot_marker(p->ev.opaque, (uint8_t)value);
}

static const struct bus_ops boot_marker_ops = { .write = boot_marker_write };

int x86_platform_init(struct x86_platform *p, struct bus *pio,
		      const struct x86_platform_events *ev)
{
	int rc;

	memset(p, 0, sizeof(*p));
	p->ev = *ev;
	rc = bus_register(pio, X86_DEBUG_EXIT_PORT, 4, &debug_exit_ops, p,
			  "debug-exit");
	if (!rc)
		rc = bus_register(pio, X86_I8042_DATA_PORT, 1, &i8042_data_ops,
				  p, "i8042-data");
	if (!rc)
		rc = bus_register(pio, X86_I8042_CMD_PORT, 1, &i8042_cmd_ops, p,
				  "i8042-command");
	if (!rc && !ev->reset_ctrl_via_pci)
		rc = bus_register(pio, X86_RESET_CTRL_PORT, 1, &reset_ctrl_ops,
				  p, "reset-control");
	if (!rc)
		rc = bus_register(pio, X86_POST_PORT, 1, &post_ops, p, "post");
	if (!rc)
		rc = bus_register(pio, X86_BOOT_MARKER_PORT, 1, &boot_marker_ops,
				  p, "boot-marker");
	return rc;
}
