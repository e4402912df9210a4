#include "arch/x86/rtc.h"

#include <string.h>

static uint8_t to_bcd(unsigned v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static unsigned from_bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0xF);
}

static bool is_clock_reg(unsigned r)
{
	return r <= RTC_YEAR || r == RTC_CENTURY;
}

/* Encode a clock value in the mode register B selects. */
static uint8_t encode(const struct rtc *rtc, unsigned v)
{
	return (rtc->cmos[RTC_REG_B] & RTC_B_DM_BIN) ? (uint8_t)v : to_bcd(v);
}

static unsigned decode(const struct rtc *rtc, uint8_t v)
{
	return (rtc->cmos[RTC_REG_B] & RTC_B_DM_BIN) ? v : from_bcd(v);
}

static uint8_t encode_hours(const struct rtc *rtc, unsigned h)
{
	if (rtc->cmos[RTC_REG_B] & RTC_B_24H)
		return encode(rtc, h);
	/* 12-hour mode: 1..12, bit 7 = PM. */
	return (uint8_t)(encode(rtc, h % 12 ? h % 12 : 12) | (h >= 12 ? 0x80 : 0));
}

static unsigned decode_hours(const struct rtc *rtc, uint8_t v)
{
	unsigned h;

	if (rtc->cmos[RTC_REG_B] & RTC_B_24H)
		return decode(rtc, v);
	h = decode(rtc, v & 0x7F) % 12;
	return (v & 0x80) ? h + 12 : h;
}

/* Refresh the clock bytes from host time + offset. */
static void latch_time(struct rtc *rtc)
{
	time_t t = rtc->now() + rtc->offset;
	struct tm tm;

	gmtime_r(&t, &tm);
	rtc->cmos[RTC_SECONDS] = encode(rtc, (unsigned)tm.tm_sec);
	rtc->cmos[RTC_MINUTES] = encode(rtc, (unsigned)tm.tm_min);
	rtc->cmos[RTC_HOURS] = encode_hours(rtc, (unsigned)tm.tm_hour);
	rtc->cmos[RTC_WEEKDAY] = encode(rtc, (unsigned)tm.tm_wday + 1);
	rtc->cmos[RTC_DAY] = encode(rtc, (unsigned)tm.tm_mday);
	rtc->cmos[RTC_MONTH] = encode(rtc, (unsigned)tm.tm_mon + 1);
	rtc->cmos[RTC_YEAR] = encode(rtc, (unsigned)tm.tm_year % 100);
	rtc->cmos[RTC_CENTURY] = encode(rtc, (unsigned)(tm.tm_year + 1900) / 100);
}

/* The guest finished setting the time (SET cleared): new offset. */
static void commit_time(struct rtc *rtc)
{
	struct tm tm;
	time_t guest;

	memset(&tm, 0, sizeof(tm));
	tm.tm_sec = (int)decode(rtc, rtc->cmos[RTC_SECONDS]);
	tm.tm_min = (int)decode(rtc, rtc->cmos[RTC_MINUTES]);
	tm.tm_hour = (int)decode_hours(rtc, rtc->cmos[RTC_HOURS]);
	tm.tm_mday = (int)decode(rtc, rtc->cmos[RTC_DAY]);
	tm.tm_mon = (int)decode(rtc, rtc->cmos[RTC_MONTH]) - 1;
	tm.tm_year = (int)(decode(rtc, rtc->cmos[RTC_CENTURY]) * 100 +
			   decode(rtc, rtc->cmos[RTC_YEAR])) - 1900;
	guest = timegm(&tm);
	if (guest != (time_t)-1)
		rtc->offset = (int64_t)(guest - rtc->now());
}

static time_t host_now(void)
{
	return time(NULL);
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void rtc_init(struct rtc *rtc, uint64_t ram_below_4g, uint64_t ram_above_4g,
	      time_t (*now)(void))
{
	uint64_t ext, above16m, above4g;

	memset(rtc, 0, sizeof(*rtc));
	pthread_mutex_init(&rtc->lock, NULL);
	rtc->now = now ? now : host_now;
	rtc->cmos[RTC_REG_A] = 0x26;           /* 32.768 kHz, 1024 Hz rate */
	rtc->cmos[RTC_REG_B] = RTC_B_24H;      /* BCD, 24-hour, no interrupts */
	rtc->cmos[RTC_REG_D] = RTC_D_VRT;

	/* NVRAM memory sizes (IBM PC/AT CMOS map): base KiB, extended KiB
	 * between 1 and 64 MiB, 64 KiB units above 16 MiB, and 64 KiB units
	 * above 4 GiB. */
	put16(&rtc->cmos[0x15], 640);
	ext = ram_below_4g > (1 << 20) ? (ram_below_4g - (1 << 20)) >> 10 : 0;
	if (ext > 0xFFFF)
		ext = 0xFFFF;
	put16(&rtc->cmos[0x17], (unsigned)ext);
	put16(&rtc->cmos[0x30], (unsigned)ext);
	above16m = ram_below_4g > (16 << 20) ? (ram_below_4g - (16 << 20)) >> 16 : 0;
	if (above16m > 0xFFFF)
		above16m = 0xFFFF;
	put16(&rtc->cmos[0x34], (unsigned)above16m);
	above4g = ram_above_4g >> 16;
	rtc->cmos[0x5B] = (uint8_t)above4g;
	rtc->cmos[0x5C] = (uint8_t)(above4g >> 8);
	rtc->cmos[0x5D] = (uint8_t)(above4g >> 16);
}

void rtc_destroy(struct rtc *rtc)
{
	pthread_mutex_destroy(&rtc->lock);
}

uint8_t rtc_read(struct rtc *rtc, unsigned port)
{
	uint8_t v;
	unsigned r;

	pthread_mutex_lock(&rtc->lock);
	if (port == 0) {
		v = rtc->index; /* write-only on real parts; harmless */
		goto out;
	}
	r = rtc->index & 0x7F;
	if (is_clock_reg(r) && !(rtc->cmos[RTC_REG_B] & RTC_B_SET))
		latch_time(rtc);
	v = rtc->cmos[r];
	if (r == RTC_REG_A)
		v &= 0x7F; /* UIP: never mid-update, reads are consistent */
	else if (r == RTC_REG_C)
		rtc->cmos[RTC_REG_C] = 0; /* flags clear on read */
out:
	pthread_mutex_unlock(&rtc->lock);
	return v;
}

void rtc_write(struct rtc *rtc, unsigned port, uint8_t value)
{
	unsigned r;

	pthread_mutex_lock(&rtc->lock);
	if (port == 0) {
		rtc->index = value; /* bit 7 masks NMI: nothing to mask here */
		goto out;
	}
	r = rtc->index & 0x7F;
	switch (r) {
	case RTC_REG_B: {
		bool was_set = rtc->cmos[RTC_REG_B] & RTC_B_SET;

		if ((value & RTC_B_SET) && !was_set)
			latch_time(rtc); /* freeze the current time for editing */
		/* Interrupt enables (PIE, AIE, UIE) are not supported. */
		rtc->cmos[RTC_REG_B] = value & (uint8_t)~0x70;
		/* Leaving SET mode commits the clock the guest wrote. */
		if (was_set && !(value & RTC_B_SET))
			commit_time(rtc);
		break;
	}
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	case RTC_REG_A:
		rtc->cmos[RTC_REG_A] = value & 0x7F;
		break;
	default:
		rtc->cmos[r] = value;
		break;
	}
out:
	pthread_mutex_unlock(&rtc->lock);
}

static void rtc_bus_read(void *opaque, uint64_t offset, unsigned size,
			 uint64_t *value)
{
	(void)size;
	*value = rtc_read(opaque, (unsigned)offset);
}

static void rtc_bus_write(void *opaque, uint64_t offset, unsigned size,
			  uint64_t value)
{
	(void)size;
	rtc_write(opaque, (unsigned)offset, (uint8_t)value);
}

const struct bus_ops rtc_bus_ops = { .read = rtc_bus_read,
				     .write = rtc_bus_write };
