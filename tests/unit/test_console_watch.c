/* The console watcher: which kernel lines it recognises, across CR/LF,
 * split writes and overlong lines. */
#include <check.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "vmm/console_watch.h"

/* Feed |text|; return the last event seen (NONE if none). */
static enum console_event feed(struct console_watch *w, const char *text)
{
	enum console_event last = CONSOLE_EVENT_NONE;

	for (; *text; text++) {
		enum console_event ev = console_watch_feed(w, *text);

		if (ev != CONSOLE_EVENT_NONE)
			last = ev;
	}
	return last;
}

START_TEST(test_run_init_line)
{
	struct console_watch w = { 0 };

	ck_assert_int_eq(feed(&w, "[   12.3] Run /init as init process\r\n"),
			 CONSOLE_EVENT_INIT_STARTED);
	ck_assert_int_eq(feed(&w, "[   12.4] Run /sbin/init as init process\n"),
			 CONSOLE_EVENT_INIT_STARTED);
}
END_TEST

START_TEST(test_event_only_at_end_of_line)
{
	struct console_watch w = { 0 };

	ck_assert_int_eq(feed(&w, "Run /init as init process"), CONSOLE_EVENT_NONE);
	ck_assert_int_eq(feed(&w, "\n"), CONSOLE_EVENT_INIT_STARTED);
}
END_TEST

START_TEST(test_init_killed_and_panic_end)
{
	struct console_watch w = { 0 };

	ck_assert_int_eq(feed(&w, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n"),
			 CONSOLE_EVENT_INIT_KILLED);
	ck_assert_ptr_nonnull(strstr(console_watch_line(&w), "exitcode=0x0000000b"));
	ck_assert_int_eq(feed(&w, "CPU: 0 PID: 1 Comm: init\n"), CONSOLE_EVENT_NONE);
	ck_assert_int_eq(feed(&w, "---[ end Kernel panic - not syncing: Attempted to kill init! ]---\n"),
			 CONSOLE_EVENT_PANIC_END);
}
END_TEST

START_TEST(test_other_panic)
{
	struct console_watch w = { 0 };

	ck_assert_int_eq(feed(&w, "Kernel panic - not syncing: VFS: Unable to mount root fs\n"),
			 CONSOLE_EVENT_PANIC);
}
END_TEST

START_TEST(test_ordinary_lines_and_overflow)
{
	struct console_watch w = { 0 };
	char longline[2000];

	ck_assert_int_eq(feed(&w, "Linux version 6.1\nrandom: crng init done\n"),
			 CONSOLE_EVENT_NONE);
	/* An overlong line is cut, not overrun, and the next line works. */
	memset(longline, 'x', sizeof(longline) - 2);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	ck_assert_int_eq(feed(&w, longline), CONSOLE_EVENT_NONE);
	ck_assert_int_eq(feed(&w, "Run /init as init process\n"),
			 CONSOLE_EVENT_INIT_STARTED);
}
END_TEST

static Suite *console_watch_suite(void)
{
	Suite *s = suite_create("console_watch");
	TCase *tc = tcase_create("lines");

	tcase_add_test(tc, test_run_init_line);
	tcase_add_test(tc, test_event_only_at_end_of_line);
	tcase_add_test(tc, test_init_killed_and_panic_end);
	tcase_add_test(tc, test_other_panic);
	tcase_add_test(tc, test_ordinary_lines_and_overflow);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(console_watch_suite)
