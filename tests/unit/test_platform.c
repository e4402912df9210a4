/* arch/x86/platform: debug exit, i8042 reset, 0xCF9, POST, on a PIO bus. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "arch/x86/platform.h"
#include "tests/unit/unit.h"
#include "vmm/bus.h"

static struct bus pio;
static struct x86_platform plat;
static int owner; /* the opaque pointer handed to the callbacks */

static unsigned nr_exits, nr_resets;
static uint32_t exit_value;
static const char *reset_source;

static void on_debug_exit(void *opaque, uint32_t value)
{
	ck_assert_ptr_eq(opaque, &owner);
	nr_exits++;
	exit_value = value;
}

static void on_reset(void *opaque, const char *source)
{
	ck_assert_ptr_eq(opaque, &owner);
	ck_assert_ptr_nonnull(source);
	nr_resets++;
	reset_source = source;
}

static void setup(void)
{
	const struct x86_platform_events ev = {
		.debug_exit = on_debug_exit,
		.reset = on_reset,
		.opaque = &owner,
	};

	nr_exits = nr_resets = 0;
	exit_value = 0;
	reset_source = NULL;
	ck_assert_int_eq(bus_init(&pio, "pio"), 0);
	ck_assert_int_eq(x86_platform_init(&plat, &pio, &ev), 0);
}

static void teardown(void)
{
	bus_destroy(&pio);
}

static void outb(uint16_t port, uint8_t v)
{
	ck_assert_int_eq(bus_write(&pio, port, 1, v), 0);
}

static uint64_t inb(uint16_t port)
{
	uint64_t v = 0xDEAD;

	ck_assert_int_eq(bus_read(&pio, port, 1, &v), 0);
	return v;
}

START_TEST(debug_exit_passes_value)
{
	outb(X86_DEBUG_EXIT_PORT, 0x10);
	ck_assert_uint_eq(nr_exits, 1);
	ck_assert_uint_eq(exit_value, 0x10);
	outb(X86_DEBUG_EXIT_PORT, 0);
	ck_assert_uint_eq(nr_exits, 2);
	ck_assert_uint_eq(exit_value, 0);
	outb(X86_DEBUG_EXIT_PORT, 0xFF);
	ck_assert_uint_eq(exit_value, 0xFF);
	ck_assert_uint_eq(nr_resets, 0);
}
END_TEST

START_TEST(debug_exit_wider_writes)
{
	ck_assert_int_eq(bus_write(&pio, X86_DEBUG_EXIT_PORT, 2, 0x1234), 0);
	ck_assert_uint_eq(exit_value, 0x1234);
	ck_assert_int_eq(bus_write(&pio, X86_DEBUG_EXIT_PORT, 4, 0xCAFEF00D), 0);
	ck_assert_uint_eq(exit_value, 0xCAFEF00D);
	ck_assert_uint_eq(nr_exits, 2);
}
END_TEST

START_TEST(i8042_pulse_reset)
{
	outb(X86_I8042_CMD_PORT, I8042_CMD_PULSE_RESET);
	ck_assert_uint_eq(nr_resets, 1);
	ck_assert_ptr_nonnull(strstr(reset_source, "i8042"));
	ck_assert_uint_eq(nr_exits, 0);
}
END_TEST

START_TEST(i8042_other_commands_ignored)
{
	static const uint8_t cmds[] = { 0x20, 0x60, 0xAA, 0xAD, 0xAE, 0xD1,
					0xF0, 0xFC, 0xFD, 0xFF, 0x00 };

	for (size_t i = 0; i < sizeof(cmds); i++)
		outb(X86_I8042_CMD_PORT, cmds[i]);
	/* 0xFE to the data port is a keyboard byte, not a controller
	 * command. */
	outb(X86_I8042_DATA_PORT, I8042_CMD_PULSE_RESET);
	ck_assert_uint_eq(nr_resets, 0);
	ck_assert_uint_eq(nr_exits, 0);
}
END_TEST

START_TEST(i8042_reads_zero)
{
	/* Output and input buffers empty: drivers find no keyboard data. */
	ck_assert_uint_eq(inb(X86_I8042_DATA_PORT), 0);
	ck_assert_uint_eq(inb(X86_I8042_CMD_PORT), 0);
	outb(X86_I8042_CMD_PORT, 0x20);
	ck_assert_uint_eq(inb(X86_I8042_DATA_PORT), 0);
}
END_TEST

START_TEST(reset_control_bit2_resets)
{
	outb(X86_RESET_CTRL_PORT, RESET_CTRL_RESET);
	ck_assert_uint_eq(nr_resets, 1);
	ck_assert_ptr_nonnull(strstr(reset_source, "0xCF9"));
	/* The usual "hard reset": 0x02 then 0x06. */
	outb(X86_RESET_CTRL_PORT, 0x02);
	ck_assert_uint_eq(nr_resets, 1);
	outb(X86_RESET_CTRL_PORT, 0x06);
	ck_assert_uint_eq(nr_resets, 2);
	outb(X86_RESET_CTRL_PORT, 0x0E);
	ck_assert_uint_eq(nr_resets, 3);
}
END_TEST

START_TEST(reset_control_other_values)
{
	static const uint8_t vals[] = { 0x00, 0x01, 0x02, 0x08, 0x0A, 0xF0,
					0xFB };

	for (size_t i = 0; i < sizeof(vals); i++)
		outb(X86_RESET_CTRL_PORT, vals[i]);
	ck_assert_uint_eq(nr_resets, 0);
	/* The register keeps its reset-type bits. */
	outb(X86_RESET_CTRL_PORT, 0x0A);
	ck_assert_uint_eq(inb(X86_RESET_CTRL_PORT), 0x0A);
	outb(X86_RESET_CTRL_PORT, 0xF2);
	ck_assert_uint_eq(inb(X86_RESET_CTRL_PORT), 0x02);
}
END_TEST

START_TEST(post_port_ignored)
{
	for (unsigned v = 0; v < 256; v++)
		outb(X86_POST_PORT, (uint8_t)v);
	ck_assert_uint_eq(nr_resets + nr_exits, 0);
}
END_TEST

START_TEST(neighbouring_ports_unclaimed)
{
	uint64_t v;

	/* Only the named ports are taken; the rest stay free for devices. */
	ck_assert_int_eq(bus_read(&pio, 0x61, 1, &v), -ENOENT);
	ck_assert_int_eq(bus_read(&pio, 0x63, 1, &v), -ENOENT);
	ck_assert_int_eq(bus_read(&pio, 0x65, 1, &v), -ENOENT);
	ck_assert_int_eq(bus_read(&pio, 0xCF8, 1, &v), -ENOENT);
	ck_assert_int_eq(bus_read(&pio, 0xCFA, 1, &v), -ENOENT);
	ck_assert_int_eq(bus_read(&pio, 0x81, 1, &v), -ENOENT);
	ck_assert_int_eq(bus_read(&pio, 0xF8, 1, &v), -ENOENT);
}
END_TEST

START_TEST(second_init_on_same_bus_refused)
{
	struct x86_platform other;
	const struct x86_platform_events ev = {
		.debug_exit = on_debug_exit,
		.reset = on_reset,
		.opaque = &owner,
	};

	ck_assert_int_eq(x86_platform_init(&other, &pio, &ev), -EEXIST);
}
END_TEST

static Suite *platform_suite(void)
{
	Suite *s = suite_create("platform");
	TCase *tc = tcase_create("ports");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, debug_exit_passes_value);
	tcase_add_test(tc, debug_exit_wider_writes);
	tcase_add_test(tc, i8042_pulse_reset);
	tcase_add_test(tc, i8042_other_commands_ignored);
	tcase_add_test(tc, i8042_reads_zero);
	tcase_add_test(tc, reset_control_bit2_resets);
	tcase_add_test(tc, reset_control_other_values);
	tcase_add_test(tc, post_port_ignored);
	tcase_add_test(tc, neighbouring_ports_unclaimed);
	tcase_add_test(tc, second_init_on_same_bus_refused);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(platform_suite)
