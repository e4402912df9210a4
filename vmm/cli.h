/* The `kite run` command line → struct vm_config. */
#ifndef KITE_VMM_CLI_H
#define KITE_VMM_CLI_H

#include <stddef.h>

#include "vmm/config.h"

enum cli_result {
	CLI_OK = 0,     /* cfg filled in: build and run the VM */
	CLI_HELP = 1,   /* --help was given: usage printed, exit 0 */
	CLI_ERROR = 2,  /* err holds a one-line message; exit status 2 */
};

/* Parse `kite run` arguments (argv[0] is "run").  Checks that the files
 * named exist and are readable, but does not open them for use. */
enum cli_result cli_parse_run(int argc, char **argv, struct vm_config *cfg,
			      char *err, size_t errlen);

/* Print the usage of `kite run` to |out| (a FILE *). */
void cli_run_usage(void *out);

#endif
