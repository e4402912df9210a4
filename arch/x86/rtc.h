/* MC146818 CMOS real-time clock and NVRAM at I/O ports 0x70 (index) and
 * 0x71 (data).  The clock reads the host's time (UTC) plus whatever offset
 * the guest set; the NVRAM carries the memory sizes that firmware and old
 * kernels read.  Periodic, alarm and update interrupts are not generated:
 * the registers report them disabled. */
#ifndef KITE_ARCH_X86_RTC_H
#define KITE_ARCH_X86_RTC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "vmm/bus.h"

#define RTC_INDEX_PORT 0x70
#define RTC_DATA_PORT  0x71

#define RTC_SECONDS   0x00
#define RTC_MINUTES   0x02
#define RTC_HOURS     0x04
#define RTC_WEEKDAY   0x06
#define RTC_DAY       0x07
#define RTC_MONTH     0x08
#define RTC_YEAR      0x09
#define RTC_REG_A     0x0A
#define RTC_REG_B     0x0B
#define RTC_REG_C     0x0C
#define RTC_REG_D     0x0D
#define RTC_CENTURY   0x32

#define RTC_B_SET     0x80 /* updates frozen while the guest sets the time */
#define RTC_B_DM_BIN  0x04 /* binary rather than BCD */
#define RTC_B_24H     0x02
#define RTC_D_VRT     0x80 /* valid RAM and time */

struct rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t cmos[128];
	int64_t offset;          /* guest time - host time, seconds */
	time_t (*now)(void);     /* the host clock; replaceable in tests */
};

/* |ram_below_4g| and |ram_above_4g| fill the NVRAM memory-size bytes. */
void rtc_init(struct rtc *rtc, uint64_t ram_below_4g, uint64_t ram_above_4g,
	      time_t (*now)(void));
void rtc_destroy(struct rtc *rtc);
uint8_t rtc_read(struct rtc *rtc, unsigned port);
void rtc_write(struct rtc *rtc, unsigned port, uint8_t value);

/* bus_ops for the two ports at 0x70: opaque is the struct rtc. */
extern const struct bus_ops rtc_bus_ops;

#endif
