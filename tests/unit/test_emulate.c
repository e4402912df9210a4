/* The decoder behind the PVM emulation fallback: each instruction kite
 * completes, its length, and the memory operand's linear address in every
 * addressing form the compilers emit for ldmxcsr/stmxcsr. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "arch/x86/emulate.h"
#include "tests/unit/unit.h"

static const struct x86_cpu_mode mode64 = { .long64 = true };
static const struct x86_cpu_mode mode32 = { .default32 = true };

static struct x86_gprs regs(void)
{
	struct x86_gprs g;

	memset(&g, 0, sizeof(g));
	for (unsigned i = 0; i < 16; i++)
		g.r[i] = 0x1000 * (i + 1); /* rax=0x1000, rcx=0x2000, ... */
	g.rip = 0xFFFFFFFF81000000ULL;
	return g;
}

static struct x86_insn decode_ok(const struct x86_cpu_mode *m,
				 const uint8_t *b, unsigned n)
{
	struct x86_gprs g = regs();
	struct x86_insn insn;

	ck_assert_int_eq(x86_decode(b, n, m, &g, &insn), 0);
	return insn;
}

START_TEST(test_int3_and_int_n)
{
	static const uint8_t int3[] = { 0xCC, 0x90 };
	static const uint8_t int80[] = { 0xCD, 0x80 };
	struct x86_insn i = decode_ok(&mode64, int3, sizeof(int3));

	ck_assert_int_eq(i.kind, X86_INSN_INT3);
	ck_assert_uint_eq(i.len, 1);
	i = decode_ok(&mode32, int80, sizeof(int80));
	ck_assert_int_eq(i.kind, X86_INSN_INTN);
	ck_assert_uint_eq(i.vector, 0x80);
	ck_assert_uint_eq(i.len, 2);
}
END_TEST

START_TEST(test_fwait_and_fences)
{
	static const uint8_t fwait[] = { 0x9B };
	static const uint8_t fences[3][3] = { { 0x0F, 0xAE, 0xE8 },
					      { 0x0F, 0xAE, 0xF0 },
					      { 0x0F, 0xAE, 0xF8 } };
	struct x86_insn i = decode_ok(&mode64, fwait, 1);

	ck_assert_int_eq(i.kind, X86_INSN_NOP);
	ck_assert_uint_eq(i.len, 1);
	for (int k = 0; k < 3; k++) {
		i = decode_ok(&mode64, fences[k], 3);
		ck_assert_int_eq(i.kind, X86_INSN_NOP);
		ck_assert_uint_eq(i.len, 3);
	}
}
END_TEST

START_TEST(test_clac_stac)
{
	static const uint8_t clac[] = { 0x0F, 0x01, 0xCA };
	static const uint8_t stac[] = { 0x0F, 0x01, 0xCB };

	ck_assert_int_eq(decode_ok(&mode64, clac, 3).kind, X86_INSN_CLAC);
	ck_assert_int_eq(decode_ok(&mode64, stac, 3).kind, X86_INSN_STAC);
}
END_TEST

START_TEST(test_mxcsr_register_indirect)
{
	/* ldmxcsr (%rdi): 0F AE 17 */
	static const uint8_t b[] = { 0x0F, 0xAE, 0x17 };
	struct x86_insn i = decode_ok(&mode64, b, sizeof(b));

	ck_assert_int_eq(i.kind, X86_INSN_LDMXCSR);
	ck_assert_uint_eq(i.len, 3);
	ck_assert_uint_eq(i.mem_linear, 0x8000); /* rdi */
}
END_TEST

START_TEST(test_mxcsr_disp8_and_disp32)
{
	/* stmxcsr -0x10(%rbp): 0F AE 5D F0 */
	static const uint8_t d8[] = { 0x0F, 0xAE, 0x5D, 0xF0 };
	/* ldmxcsr 0x12345678(%rbx): 0F AE 93 78 56 34 12 */
	static const uint8_t d32[] = { 0x0F, 0xAE, 0x93, 0x78, 0x56, 0x34, 0x12 };
	struct x86_insn i = decode_ok(&mode64, d8, sizeof(d8));

	ck_assert_int_eq(i.kind, X86_INSN_STMXCSR);
	ck_assert_uint_eq(i.len, 4);
	ck_assert_uint_eq(i.mem_linear, 0x6000 - 0x10);
	i = decode_ok(&mode64, d32, sizeof(d32));
	ck_assert_int_eq(i.kind, X86_INSN_LDMXCSR);
	ck_assert_uint_eq(i.len, 7);
	ck_assert_uint_eq(i.mem_linear, 0x4000 + 0x12345678);
}
END_TEST

START_TEST(test_mxcsr_sib_and_rex)
{
	/* stmxcsr 4(%rax,%rcx,4): 0F AE 5C 88 04 */
	static const uint8_t sib[] = { 0x0F, 0xAE, 0x5C, 0x88, 0x04 };
	/* ldmxcsr (%r12): 41 0F AE 14 24 (r12 needs a SIB byte) */
	static const uint8_t rex[] = { 0x41, 0x0F, 0xAE, 0x14, 0x24 };
	/* stmxcsr (%r8,%r9,2): 43 0F AE 1C 48 */
	static const uint8_t rexx[] = { 0x43, 0x0F, 0xAE, 0x1C, 0x48 };
	struct x86_insn i = decode_ok(&mode64, sib, sizeof(sib));

	ck_assert_uint_eq(i.len, 5);
	ck_assert_uint_eq(i.mem_linear, 0x1000 + 0x2000 * 4 + 4);
	i = decode_ok(&mode64, rex, sizeof(rex));
	ck_assert_uint_eq(i.len, 5);
	ck_assert_uint_eq(i.mem_linear, 0xD000); /* r12 */
	i = decode_ok(&mode64, rexx, sizeof(rexx));
	ck_assert_uint_eq(i.mem_linear, 0x9000 + 0xA000 * 2); /* r8 + r9*2 */
}
END_TEST

START_TEST(test_mxcsr_rip_relative)
{
	/* ldmxcsr 0x100(%rip): 0F AE 15 00 01 00 00 — relative to the end */
	static const uint8_t b[] = { 0x0F, 0xAE, 0x15, 0x00, 0x01, 0x00, 0x00 };
	struct x86_insn i = decode_ok(&mode64, b, sizeof(b));

	ck_assert_uint_eq(i.len, 7);
	ck_assert_uint_eq(i.mem_linear, 0xFFFFFFFF81000000ULL + 7 + 0x100);
}
END_TEST

START_TEST(test_mxcsr_absolute_in_32bit_mode)
{
	/* 32-bit: ldmxcsr 0x2000 (mod 0, rm 5 = disp32, not RIP-relative) */
	static const uint8_t b[] = { 0x0F, 0xAE, 0x15, 0x00, 0x20, 0x00, 0x00 };
	struct x86_cpu_mode m = mode32;
	struct x86_gprs g = regs();
	struct x86_insn i;

	m.seg_base[3] = 0x100; /* DS base applies outside 64-bit mode */
	ck_assert_int_eq(x86_decode(b, sizeof(b), &m, &g, &i), 0);
	ck_assert_uint_eq(i.mem_linear, 0x2100);
}
END_TEST

START_TEST(test_fs_override_in_64bit_mode)
{
	/* stmxcsr %fs:(%rax): 64 0F AE 18 */
	static const uint8_t b[] = { 0x64, 0x0F, 0xAE, 0x18 };
	struct x86_cpu_mode m = mode64;
	struct x86_gprs g = regs();
	struct x86_insn i;

	m.seg_base[3] = 0x5555; /* DS base is ignored in 64-bit mode */
	m.seg_base[4] = 0x70000;
	ck_assert_int_eq(x86_decode(b, sizeof(b), &m, &g, &i), 0);
	ck_assert_uint_eq(i.len, 4);
	ck_assert_uint_eq(i.mem_linear, 0x70000 + 0x1000);
}
END_TEST

START_TEST(test_iret_only_in_32bit_mode)
{
	static const uint8_t iret[] = { 0xCF };
	static const uint8_t iretq[] = { 0x48, 0xCF };
	struct x86_gprs g = regs();
	struct x86_insn i;

	ck_assert_int_eq(decode_ok(&mode32, iret, 1).kind, X86_INSN_IRET32);
	ck_assert_int_eq(x86_decode(iret, 1, &mode64, &g, &i), -ENOTSUP);
	ck_assert_int_eq(x86_decode(iretq, 2, &mode64, &g, &i), -ENOTSUP);
}
END_TEST

START_TEST(test_refused_and_truncated)
{
	/* popcnt %rax,%rax: F3 48 0F B8 C0 — not completed by kite */
	static const uint8_t popcnt[] = { 0xF3, 0x48, 0x0F, 0xB8, 0xC0 };
	/* xsave (%rax): 0F AE 20 — refused too */
	static const uint8_t xsave[] = { 0x0F, 0xAE, 0x20 };
	static const uint8_t cut[] = { 0x0F, 0xAE, 0x93, 0x78 };
	struct x86_gprs g = regs();
	struct x86_insn i;

	ck_assert_int_eq(x86_decode(popcnt, sizeof(popcnt), &mode64, &g, &i), -ENOTSUP);
	ck_assert_int_eq(x86_decode(xsave, sizeof(xsave), &mode64, &g, &i), -ENOTSUP);
	ck_assert_int_eq(x86_decode(cut, sizeof(cut), &mode64, &g, &i), -EINVAL);
	ck_assert_int_eq(x86_decode(cut, 0, &mode64, &g, &i), -EINVAL);
}
END_TEST

static Suite *emulate_suite(void)
{
	Suite *s = suite_create("emulate");
	TCase *tc = tcase_create("decode");

	tcase_add_test(tc, test_int3_and_int_n);
	tcase_add_test(tc, test_fwait_and_fences);
	tcase_add_test(tc, test_clac_stac);
	tcase_add_test(tc, test_mxcsr_register_indirect);
	tcase_add_test(tc, test_mxcsr_disp8_and_disp32);
	tcase_add_test(tc, test_mxcsr_sib_and_rex);
	tcase_add_test(tc, test_mxcsr_rip_relative);
	tcase_add_test(tc, test_mxcsr_absolute_in_32bit_mode);
	tcase_add_test(tc, test_fs_override_in_64bit_mode);
	tcase_add_test(tc, test_iret_only_in_32bit_mode);
	tcase_add_test(tc, test_refused_and_truncated);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(emulate_suite)
