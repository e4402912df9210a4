/* Shared glue for the Check unit-test binaries: one suite per binary. */
#ifndef KITE_TESTS_UNIT_H
#define KITE_TESTS_UNIT_H

#include <check.h>
#include <stdlib.h>

/* Each tests/unit/test_NAME.c ends with UNIT_MAIN(NAME_suite). */
#define UNIT_MAIN(suite_fn)                                              \
	int main(void)                                                   \
	{                                                                \
		SRunner *runner = srunner_create(suite_fn());            \
		int failed;                                              \
		srunner_run_all(runner, CK_NORMAL);                      \
		failed = srunner_ntests_failed(runner);                  \
		srunner_free(runner);                                    \
		return failed ? EXIT_FAILURE : EXIT_SUCCESS;             \
	}

#endif
