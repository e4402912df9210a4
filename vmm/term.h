/* The host terminal: raw mode while a VM owns stdin, restored on every exit
 * path (normal return, exit(), fatal signals). */
#ifndef KITE_VMM_TERM_H
#define KITE_VMM_TERM_H

#include <stdbool.h>

/* Put stdin in raw mode if it is a terminal; installs restore handlers.
 * Returns 0 (also when stdin is not a terminal) or -errno. */
int term_raw_enter(void);
/* Restore the saved mode; idempotent and async-signal-safe. */
void term_restore(void);
bool term_is_raw(void);

/* The escape sequence: Ctrl-A then x quits, Ctrl-A Ctrl-A sends one Ctrl-A.
 * Feed each input byte; returns TERM_KEY_PASS with *out set when the byte
 * (or the escaped Ctrl-A) goes to the guest, TERM_KEY_QUIT on Ctrl-A x,
 * TERM_KEY_SWALLOW when nothing goes to the guest yet. */
enum term_key { TERM_KEY_PASS, TERM_KEY_QUIT, TERM_KEY_SWALLOW };
struct term_escape { bool pending; };
enum term_key term_escape_feed(struct term_escape *st, unsigned char c,
			       unsigned char *out);

#endif
