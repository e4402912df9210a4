/* CMOS RTC: host time in BCD and binary modes, the guest setting the time,
 * NVRAM memory sizes. */
#include <check.h>
#include <time.h>

#include "arch/x86/rtc.h"
#include "tests/unit/unit.h"

/* 2026-11-21 14:05:09 UTC, a Saturday. */
#define FIXED_TIME ((time_t)1795356309)
static time_t fake_now_value = FIXED_TIME;
static time_t fake_now(void) { return fake_now_value; }

static uint8_t cmos_get(struct rtc *r, uint8_t reg)
{
	rtc_write(r, 0, reg);
	return rtc_read(r, 1);
}

static void cmos_set(struct rtc *r, uint8_t reg, uint8_t v)
{
	rtc_write(r, 0, reg);
	rtc_write(r, 1, v);
}

START_TEST(test_reads_host_time_in_bcd)
{
	struct rtc r;
	struct tm tm;

	fake_now_value = FIXED_TIME;
	gmtime_r(&fake_now_value, &tm);
	rtc_init(&r, 256 << 20, 0, fake_now);
	ck_assert_uint_eq(cmos_get(&r, RTC_YEAR), 0x26);
	ck_assert_uint_eq(cmos_get(&r, RTC_CENTURY), 0x20);
	ck_assert_uint_eq(cmos_get(&r, RTC_MONTH), 0x11);
	ck_assert_uint_eq(cmos_get(&r, RTC_DAY), ((tm.tm_mday / 10) << 4) | (tm.tm_mday % 10));
	ck_assert_uint_eq(cmos_get(&r, RTC_HOURS), ((tm.tm_hour / 10) << 4) | (tm.tm_hour % 10));
	ck_assert_uint_eq(cmos_get(&r, RTC_MINUTES), ((tm.tm_min / 10) << 4) | (tm.tm_min % 10));
	ck_assert_uint_eq(cmos_get(&r, RTC_SECONDS), ((tm.tm_sec / 10) << 4) | (tm.tm_sec % 10));
	ck_assert_uint_eq(cmos_get(&r, RTC_WEEKDAY), (unsigned)tm.tm_wday + 1);
	/* The clock follows the host. */
	fake_now_value = FIXED_TIME + 1;
	ck_assert_uint_eq(cmos_get(&r, RTC_SECONDS),
			  (((tm.tm_sec + 1) / 10) << 4) | ((tm.tm_sec + 1) % 10));
	rtc_destroy(&r);
}
END_TEST

START_TEST(test_binary_mode)
{
	struct rtc r;
	struct tm tm;

	fake_now_value = FIXED_TIME;
	gmtime_r(&fake_now_value, &tm);
	rtc_init(&r, 256 << 20, 0, fake_now);
	cmos_set(&r, RTC_REG_B, RTC_B_24H | RTC_B_DM_BIN);
	ck_assert_uint_eq(cmos_get(&r, RTC_YEAR), 26);
	ck_assert_uint_eq(cmos_get(&r, RTC_HOURS), (unsigned)tm.tm_hour);
	rtc_destroy(&r);
}
END_TEST

START_TEST(test_status_registers)
{
	struct rtc r;

	rtc_init(&r, 256 << 20, 0, fake_now);
	ck_assert_uint_eq(cmos_get(&r, RTC_REG_A) & 0x80, 0); /* no UIP */
	ck_assert_uint_eq(cmos_get(&r, RTC_REG_D), RTC_D_VRT);
	cmos_set(&r, RTC_REG_D, 0);
	ck_assert_uint_eq(cmos_get(&r, RTC_REG_D), RTC_D_VRT); /* read-only */
	/* Interrupt enables are refused: they would never fire. */
	cmos_set(&r, RTC_REG_B, RTC_B_24H | 0x40);
	ck_assert_uint_eq(cmos_get(&r, RTC_REG_B), RTC_B_24H);
	rtc_destroy(&r);
}
END_TEST

START_TEST(test_guest_sets_time)
{
	struct rtc r;

	fake_now_value = FIXED_TIME;
	rtc_init(&r, 256 << 20, 0, fake_now);
	cmos_set(&r, RTC_REG_B, RTC_B_24H | RTC_B_SET);
	cmos_set(&r, RTC_YEAR, 0x30);
	cmos_set(&r, RTC_MONTH, 0x01);
	cmos_set(&r, RTC_DAY, 0x02);
	cmos_set(&r, RTC_HOURS, 0x03);
	cmos_set(&r, RTC_MINUTES, 0x04);
	cmos_set(&r, RTC_SECONDS, 0x05);
	/* Frozen while SET is on. */
	fake_now_value += 100;
	ck_assert_uint_eq(cmos_get(&r, RTC_SECONDS), 0x05);
	cmos_set(&r, RTC_REG_B, RTC_B_24H);
	/* Now it runs from the new time. */
	fake_now_value += 10;
	ck_assert_uint_eq(cmos_get(&r, RTC_YEAR), 0x30);
	ck_assert_uint_eq(cmos_get(&r, RTC_MONTH), 0x01);
	ck_assert_uint_eq(cmos_get(&r, RTC_HOURS), 0x03);
	ck_assert_uint_eq(cmos_get(&r, RTC_MINUTES), 0x04);
	ck_assert_uint_eq(cmos_get(&r, RTC_SECONDS), 0x15);
	rtc_destroy(&r);
}
END_TEST

START_TEST(test_twelve_hour_mode)
{
	struct rtc r;
	time_t t = 1795356309 - (1795356309 % 86400) + 15 * 3600; /* 15:00 */

	fake_now_value = t;
	rtc_init(&r, 256 << 20, 0, fake_now);
	cmos_set(&r, RTC_REG_B, 0); /* BCD, 12-hour */
	ck_assert_uint_eq(cmos_get(&r, RTC_HOURS), 0x80 | 0x03);
	rtc_destroy(&r);
}
END_TEST

START_TEST(test_nvram_memory_sizes)
{
	struct rtc r;

	rtc_init(&r, 3ULL << 30, 1ULL << 30, fake_now);
	ck_assert_uint_eq(cmos_get(&r, 0x15) | cmos_get(&r, 0x16) << 8, 640);
	ck_assert_uint_eq(cmos_get(&r, 0x17) | cmos_get(&r, 0x18) << 8, 0xFFFF);
	ck_assert_uint_eq(cmos_get(&r, 0x34) | cmos_get(&r, 0x35) << 8,
			  ((3ULL << 30) - (16 << 20)) >> 16);
	ck_assert_uint_eq(cmos_get(&r, 0x5B) | cmos_get(&r, 0x5C) << 8 |
			  cmos_get(&r, 0x5D) << 16, (1ULL << 30) >> 16);
	/* NVRAM bytes are plain storage. */
	cmos_set(&r, 0x40, 0xAB);
	ck_assert_uint_eq(cmos_get(&r, 0x40), 0xAB);
	rtc_destroy(&r);
}
END_TEST

static Suite *rtc_suite(void)
{
	Suite *s = suite_create("rtc");
	TCase *tc = tcase_create("cmos");

	tcase_add_test(tc, test_reads_host_time_in_bcd);
	tcase_add_test(tc, test_binary_mode);
	tcase_add_test(tc, test_status_registers);
	tcase_add_test(tc, test_guest_sets_time);
	tcase_add_test(tc, test_twelve_hour_mode);
	tcase_add_test(tc, test_nvram_memory_sizes);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(rtc_suite)
