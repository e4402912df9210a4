#include "vmm/term.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define CTRL_A 0x01

static struct termios saved;
static volatile sig_atomic_t raw_active;

void term_restore(void)
{
	if (raw_active) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
		raw_active = 0;
	}
}

bool term_is_raw(void)
{
	return raw_active;
}

static void fatal_signal(int sig)
{
	term_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

int term_raw_enter(void)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
	struct termios raw;

	if (!isatty(STDIN_FILENO))
		return 0;
	if (tcgetattr(STDIN_FILENO, &saved) < 0)
		return -errno;
	raw = saved;
	cfmakeraw(&raw);
	/* Keep output post-processing off too: the guest sends its own \r\n. */
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
		return -errno;
	raw_active = 1;
	atexit(term_restore);
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = fatal_signal;
		sa.sa_flags = SA_RESETHAND;
		sigaction(sigs[i], &sa, NULL);
	}
	return 0;
}

enum term_key term_escape_feed(struct term_escape *st, unsigned char c,
			       unsigned char *out)
{
	if (st->pending) {
		st->pending = false;
		if (c == 'x' || c == 'X')
			return TERM_KEY_QUIT;
		if (c == CTRL_A) {
			*out = CTRL_A;
			return TERM_KEY_PASS;
		}
		/* Unknown escape: drop it, as a terminal multiplexer would. */
		return TERM_KEY_SWALLOW;
	}
	if (c == CTRL_A) {
		st->pending = true;
		return TERM_KEY_SWALLOW;
	}
	*out = c;
	return TERM_KEY_PASS;
}
