#include "vmm/console_watch.h"

#include <string.h>

static enum console_event classify(const char *line)
{
	/* Linux init/main.c: "Run %s as init process" (any init path). */
	if (strstr(line, "Run ") && strstr(line, " as init process"))
		return CONSOLE_EVENT_INIT_STARTED;
	/* First: the closing line repeats the panic message. */
	if (strstr(line, "---[ end Kernel panic"))
		return CONSOLE_EVENT_PANIC_END;
	/* kernel/exit.c: "Attempted to kill init! exitcode=0x%08x". */
	if (strstr(line, "Kernel panic - not syncing: Attempted to kill init!"))
		return CONSOLE_EVENT_INIT_KILLED;
	if (strstr(line, "Kernel panic - not syncing"))
		return CONSOLE_EVENT_PANIC;
	return CONSOLE_EVENT_NONE;
}

enum console_event console_watch_feed(struct console_watch *w, char c)
{
	enum console_event ev;

	if (c == '\r')
		return CONSOLE_EVENT_NONE;
	if (c != '\n') {
		if (w->len + 1 < sizeof(w->line))
			w->line[w->len++] = c;
		else
			w->overflow = true;
		return CONSOLE_EVENT_NONE;
	}
	w->line[w->len] = '\0';
	ev = classify(w->line);
	/* Keep the text of an event line for the caller; reset otherwise. */
	if (ev == CONSOLE_EVENT_NONE)
		w->line[0] = '\0';
	w->len = 0;
	w->overflow = false;
	return ev;
}

const char *console_watch_line(const struct console_watch *w)
{
	return w->line;
}
