/* exit-verdict: ends the VM through the debug-exit port with a value taken
 * from the command line ("verdict=N", decimal or 0x-hex, 0..255), 0x2a if
 * none is given.  Proves that the value written reaches kite's exit status
 * as (N << 1) | 1, independent of the PASS/FAIL convention. */
#include "lib.h"

#define DEFAULT_VERDICT 0x2a   /* kite exit status 85 */

void payload_main(void)
{
	char text[16];
	uint32_t verdict = DEFAULT_VERDICT;

	if (cmdline_get("verdict", text, sizeof(text)) == 0 &&
	    (parse_u32(text, &verdict) < 0 || verdict > 0xFF))
		exit_fail("bad verdict '%s' on the command line", text);
	kprintf("exit-verdict: writing %u to port 0x%x\n", verdict,
		DEBUG_EXIT_PORT);
	debug_exit((uint8_t)verdict);
}
