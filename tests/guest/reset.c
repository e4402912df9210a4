/* reset: asks for a reset the way the command line says, to prove that
 * each path ends the VM (kite exits 0 for a reset request, 6 for a triple
 * fault, and --reboot=restart boots again).
 *   how=i8042   0xFE to the keyboard controller's command port 0x64
 *   how=cf9     0x06 to the reset control register 0xCF9
 *   how=triple  an exception with an empty IDT: #BP → #DF → triple fault */
#include "lib.h"

void payload_main(void)
{
	char how[16];

	if (cmdline_get("how", how, sizeof(how)) < 0)
		exit_fail("no how= on the command line");
	kprintf("reset: %s\n", how);
	if (strcmp(how, "i8042") == 0) {
		outb(0x64, 0xFE);
	} else if (strcmp(how, "cf9") == 0) {
		outb(0xCF9, 0x06);
	} else if (strcmp(how, "triple") == 0) {
		static const struct {
			uint16_t limit;
			uint32_t base;
		} __attribute__((packed)) empty = { 0, 0 };

		__asm__ volatile("lidt %0\n\tint3" : : "m"(empty));
	} else {
		exit_fail("unknown how=%s", how);
	}
	exit_fail("still running after asking for a reset by %s", how);
}
