/* The PVM profile: host detection override, command line composition and
 * the CPUID bits it hides. */
#include <check.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/pvm.h"
#include "tests/unit/unit.h"

START_TEST(test_profile_override)
{
	setenv("KITE_HOST_PROFILE", "pvm", 1);
	ck_assert(pvm_host_detected());
	setenv("KITE_HOST_PROFILE", "kvm", 1);
	ck_assert(!pvm_host_detected());
	unsetenv("KITE_HOST_PROFILE");
}
END_TEST

START_TEST(test_cmdline_puts_user_params_last)
{
	char want[1024], *out;

	out = pvm_cmdline("console=ttyS0 quiet", 1);
	ck_assert_ptr_nonnull(out);
	snprintf(want, sizeof(want), "%s 8250.nr_uarts=1 console=ttyS0 quiet",
		 pvm_kernel_params);
	ck_assert_str_eq(out, want);
	free(out);
	/* The UART count is the VM's (--serial N). */
	out = pvm_cmdline("", 4);
	ck_assert_ptr_nonnull(out);
	snprintf(want, sizeof(want), "%s 8250.nr_uarts=4", pvm_kernel_params);
	ck_assert_str_eq(out, want);
	free(out);
	/* No user parameters at all is the same as empty ones. */
	out = pvm_cmdline(NULL, 4);
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, want);
	free(out);
}
END_TEST

START_TEST(test_cmdline_names_refused_features)
{
	static const char *const needed[] = { "noxsave", "popcnt", "rdtscp",
					      "xsave", "smap", "fsgsbase",
					      "ssse3", "erms", "fsrm",
					      "cryptomgr.notests=1",
					      "clocksource=kvm-clock" };

	for (unsigned i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
		ck_assert_msg(strstr(pvm_kernel_params, needed[i]),
			      "missing %s", needed[i]);
}
END_TEST

START_TEST(test_mask_cpuid)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[5];
	} c;

	memset(&c, 0, sizeof(c));
	c.hdr.nent = 5;
	c.e[0] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 0xFFFFFFFF,
					    .edx = 0xFFFFFFFF };
	c.e[1] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0,
					    .ebx = 0xFFFFFFFF, .edx = 0xFFFFFFFF };
	c.e[2] = (struct kvm_cpuid_entry2){ .function = 0xD, .eax = 7, .ebx = 0x240 };
	c.e[3] = (struct kvm_cpuid_entry2){ .function = 0x80000001, .edx = 0xFFFFFFFF };
	c.e[4] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xD };
	pvm_mask_cpuid(&c.hdr);
	/* leaf 1 ECX: SSSE3 9, CX16 13, POPCNT 23, XSAVE 26, OSXSAVE 27, AVX 28 */
	ck_assert_uint_eq(c.e[0].ecx, 0xFFFFFFFFu & ~((1u << 9) | (1u << 13) |
			  (1u << 23) | (1u << 26) | (1u << 27) | (1u << 28)));
	ck_assert_uint_eq(c.e[0].edx, 0xFFFFFFFF); /* untouched */
	/* leaf 7 EBX: FSGSBASE 0, AVX2 5, ERMS 9, AVX512F 16, SMAP 20; EDX FSRM 4 */
	ck_assert_uint_eq(c.e[1].ebx, 0xFFFFFFFFu & ~((1u << 0) | (1u << 5) |
			  (1u << 9) | (1u << 16) | (1u << 20)));
	ck_assert_uint_eq(c.e[1].edx, 0xFFFFFFFFu & ~(1u << 4));
	ck_assert_uint_eq(c.e[2].eax, 0);
	ck_assert_uint_eq(c.e[2].ebx, 0);
	ck_assert_uint_eq(c.e[3].edx, 0xFFFFFFFFu & ~(1u << 27)); /* RDTSCP */
	ck_assert_uint_eq(c.e[4].eax, 0xD); /* other leaves untouched */
}
END_TEST

static Suite *pvm_suite(void)
{
	Suite *s = suite_create("pvm");
	TCase *tc = tcase_create("profile");

	tcase_add_test(tc, test_profile_override);
	tcase_add_test(tc, test_cmdline_puts_user_params_last);
	tcase_add_test(tc, test_cmdline_names_refused_features);
	tcase_add_test(tc, test_mask_cpuid);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(pvm_suite)
