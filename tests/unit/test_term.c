/* vmm/term: the Ctrl-A escape sequence on console input. */
#include <string.h>

#include "tests/unit/unit.h"
#include "vmm/term.h"

#define CTRL_A 0x01

/* Feed |len| bytes; collect what reaches the guest; return how many bytes
 * were consumed before a quit (len if none). */
static size_t feed(struct term_escape *st, const char *in, size_t len,
		   char *out, size_t *out_len)
{
	*out_len = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = 0x5A;

		switch (term_escape_feed(st, (unsigned char)in[i], &c)) {
		case TERM_KEY_PASS:
			out[(*out_len)++] = (char)c;
			break;
		case TERM_KEY_QUIT:
			return i + 1;
		case TERM_KEY_SWALLOW:
			ck_assert_uint_eq(c, 0x5A); /* *out left alone */
			break;
		}
	}
	return len;
}

START_TEST(ctrl_a_x_quits)
{
	struct term_escape st = { 0 };
	unsigned char c;

	ck_assert_int_eq(term_escape_feed(&st, CTRL_A, &c), TERM_KEY_SWALLOW);
	ck_assert(st.pending);
	ck_assert_int_eq(term_escape_feed(&st, 'x', &c), TERM_KEY_QUIT);
	ck_assert(!st.pending);
}
END_TEST

START_TEST(ctrl_a_capital_x_quits)
{
	struct term_escape st = { 0 };
	unsigned char c;

	ck_assert_int_eq(term_escape_feed(&st, CTRL_A, &c), TERM_KEY_SWALLOW);
	ck_assert_int_eq(term_escape_feed(&st, 'X', &c), TERM_KEY_QUIT);
}
END_TEST

START_TEST(quit_in_the_middle_of_input)
{
	struct term_escape st = { 0 };
	char out[16];
	size_t n;

	ck_assert_uint_eq(feed(&st, "ls\x01xrest", 8, out, &n), 4);
	ck_assert_uint_eq(n, 2);
	ck_assert_mem_eq(out, "ls", 2);
}
END_TEST

START_TEST(ctrl_a_ctrl_a_sends_one)
{
	struct term_escape st = { 0 };
	unsigned char c = 0;

	ck_assert_int_eq(term_escape_feed(&st, CTRL_A, &c), TERM_KEY_SWALLOW);
	ck_assert_int_eq(term_escape_feed(&st, CTRL_A, &c), TERM_KEY_PASS);
	ck_assert_uint_eq(c, CTRL_A);
	ck_assert(!st.pending);
	/* The escape is over: a following x is just an x. */
	ck_assert_int_eq(term_escape_feed(&st, 'x', &c), TERM_KEY_PASS);
	ck_assert_uint_eq(c, 'x');
}
END_TEST

START_TEST(three_ctrl_a_then_x)
{
	struct term_escape st = { 0 };
	char out[16];
	size_t n;

	/* ^A^A sends one ^A; the third ^A starts a new escape; x quits. */
	ck_assert_uint_eq(feed(&st, "\x01\x01\x01x", 4, out, &n), 4);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(out[0], CTRL_A);
}
END_TEST

START_TEST(other_bytes_pass)
{
	struct term_escape st = { 0 };

	for (unsigned b = 0; b < 256; b++) {
		unsigned char c = 0;

		if (b == CTRL_A)
			continue;
		ck_assert_int_eq(term_escape_feed(&st, (unsigned char)b, &c),
				 TERM_KEY_PASS);
		ck_assert_uint_eq(c, b);
		ck_assert(!st.pending);
	}
}
END_TEST

START_TEST(x_without_escape_passes)
{
	struct term_escape st = { 0 };
	char out[16];
	size_t n;

	ck_assert_uint_eq(feed(&st, "xX\x03\r", 4, out, &n), 4);
	ck_assert_uint_eq(n, 4);
	ck_assert_mem_eq(out, "xX\x03\r", 4);
}
END_TEST

START_TEST(unknown_escape_is_dropped)
{
	struct term_escape st = { 0 };
	char out[16];
	size_t n;

	/* ^A h: neither byte reaches the guest; input continues after. */
	ck_assert_uint_eq(feed(&st, "a\x01hb", 4, out, &n), 4);
	ck_assert_uint_eq(n, 2);
	ck_assert_mem_eq(out, "ab", 2);
	ck_assert(!st.pending);
}
END_TEST

START_TEST(escape_spans_separate_reads)
{
	struct term_escape st = { 0 };
	char out[16];
	size_t n;

	/* The state carries between read() chunks. */
	ck_assert_uint_eq(feed(&st, "abc\x01", 4, out, &n), 4);
	ck_assert_uint_eq(n, 3);
	ck_assert(st.pending);
	ck_assert_uint_eq(feed(&st, "x", 1, out, &n), 1);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(not_raw_without_terminal)
{
	/* Under the test runner stdin is not switched to raw mode unless it is
	 * a terminal; restore is always safe to call. */
	term_restore();
	ck_assert(!term_is_raw());
	term_restore();
}
END_TEST

static Suite *term_suite(void)
{
	Suite *s = suite_create("term");
	TCase *tc = tcase_create("escape");

	tcase_add_test(tc, ctrl_a_x_quits);
	tcase_add_test(tc, ctrl_a_capital_x_quits);
	tcase_add_test(tc, quit_in_the_middle_of_input);
	tcase_add_test(tc, ctrl_a_ctrl_a_sends_one);
	tcase_add_test(tc, three_ctrl_a_then_x);
	tcase_add_test(tc, other_bytes_pass);
	tcase_add_test(tc, x_without_escape_passes);
	tcase_add_test(tc, unknown_escape_is_dropped);
	tcase_add_test(tc, escape_spans_separate_reads);
	tcase_add_test(tc, not_raw_without_terminal);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(term_suite)
