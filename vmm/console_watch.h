/* Watching the guest's console output for the few kernel messages kite
 * acts on: reaching /init (a boot-time mark) and a kernel panic (end the VM
 * with a diagnosis instead of leaving a hung guest).  The watcher only
 * reads the byte stream that goes to the user anyway; it never changes it. */
#ifndef KITE_VMM_CONSOLE_WATCH_H
#define KITE_VMM_CONSOLE_WATCH_H

#include <stdbool.h>
#include <stddef.h>

enum console_event {
	CONSOLE_EVENT_NONE,
	CONSOLE_EVENT_INIT_STARTED, /* "Run /init as init process" */
	CONSOLE_EVENT_INIT_KILLED,  /* panic: "Attempted to kill init!" */
	CONSOLE_EVENT_PANIC,        /* any other "Kernel panic - not syncing" */
	CONSOLE_EVENT_PANIC_END,    /* "---[ end Kernel panic": output complete */
};

#define CONSOLE_WATCH_LINE 512

struct console_watch {
	char line[CONSOLE_WATCH_LINE];
	size_t len;
	bool overflow; /* current line was longer than the buffer */
};

/* Feed one byte; returns the event completed by this byte, if any. */
enum console_event console_watch_feed(struct console_watch *w, char c);

/* The panic reason of the last INIT_KILLED/PANIC line ("" before one). */
const char *console_watch_line(const struct console_watch *w);

#endif
