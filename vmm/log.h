/* Messages to the person running kite: "kite: OBJECT: REASON". */
#ifndef KITE_VMM_LOG_H
#define KITE_VMM_LOG_H

/* Print "kite: <formatted>\n" to stderr.  When the terminal is in raw mode
 * the line ending is "\r\n" so messages stay readable. */
void kite_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, prefixed "kite: warning: ". */
void kite_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Informational lines, printed only with --verbose (or KITE_VERBOSE=1). */
void kite_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

extern int kite_verbose;

/* Seconds since kite was exec'd (measured from before main()). */
double kite_uptime(void);

#endif
