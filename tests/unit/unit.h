/* Shared glue for the Check unit-test binaries: one suite per binary. */
#ifndef KITE_TESTS_UNIT_H
#define KITE_TESTS_UNIT_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

/* Run |suite|; the exit status main returns. */
static inline int unit_run(Suite *suite)
{
	SRunner *runner = srunner_create(suite);
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Each tests/unit/test_NAME.c ends with UNIT_MAIN(NAME_suite). */
#define UNIT_MAIN(suite_fn)                                              \
	int main(void)                                                   \
	{                                                                \
		return unit_run(suite_fn());                             \
	}

/* For binaries whose tests make files: UNIT_MAIN_SCRATCH(suite, "name")
 * makes one directory, /var/tmp/name-XXXXXX, for the whole run
 * (unit_scratch; tests make theirs inside it) and removes it with
 * everything in it when the run ends.  Check runs no teardown after a
 * failed assertion (the test's process is gone), so this is what cleans
 * up after a failure. */
static char unit_scratch[64] __attribute__((unused));

#define UNIT_MAIN_SCRATCH(suite_fn, name)                                \
	int main(void)                                                   \
	{                                                                \
		char cmd_[128];                                          \
		int status;                                              \
		snprintf(unit_scratch, sizeof(unit_scratch),             \
			 "/var/tmp/%s-XXXXXX", name);                     \
		if (!mkdtemp(unit_scratch)) {                            \
			perror(unit_scratch);                            \
			return EXIT_FAILURE;                             \
		}                                                        \
		status = unit_run(suite_fn());                           \
		snprintf(cmd_, sizeof(cmd_), "rm -rf '%s'", unit_scratch); \
		if (system(cmd_) != 0)                                   \
			fprintf(stderr, "cannot remove %s\n", unit_scratch); \
		return status;                                           \
	}

#endif
