/* Guest kernel symbols from a System.map. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/ksyms.h"
#include "arch/x86/profile.h"
#include "tests/unit/unit.h"

static char dir[] = "/tmp/kite-ksyms-XXXXXX";

static void write_map(const char *name)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	/* Unsorted on purpose; data symbols must be ignored. */
	fputs("ffffffff81000100 T second\n"
	      "ffffffff82000000 D some_data\n"
	      "ffffffff81000000 T _stext\n"
	      "ffffffff81000200 t local_fn\n"
	      "garbage line\n", f);
	fclose(f);
}

static void setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	strcpy(dir, "/tmp/kite-ksyms-XXXXXX");
}

START_TEST(test_describe)
{
	struct ksyms k;
	char path[256], buf[128];

	write_map("System.map");
	snprintf(path, sizeof(path), "%s/System.map", dir);
	ck_assert_int_eq(ksyms_load(&k, path), 0);
	ck_assert_uint_eq(k.nr, 3);
	ck_assert_str_eq(ksyms_describe(&k, 0xffffffff81000000ULL, buf, sizeof(buf)), "_stext+0x0");
	ck_assert_str_eq(ksyms_describe(&k, 0xffffffff81000139ULL, buf, sizeof(buf)), "second+0x39");
	ck_assert_str_eq(ksyms_describe(&k, 0xffffffff81000210ULL, buf, sizeof(buf)), "local_fn+0x10");
	ck_assert_ptr_null(ksyms_describe(&k, 0x1000, buf, sizeof(buf)));
	ksyms_free(&k);
}
END_TEST

START_TEST(test_found_next_to_kernel)
{
	struct ksyms k;
	char kernel[256];

	write_map("System.map-6.1.0-56-cloud-amd64");
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz-6.1.0-56-cloud-amd64", dir);
	ck_assert_int_eq(ksyms_load_for_kernel(&k, kernel,
		"6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP"), 0);
	ck_assert_uint_eq(k.nr, 3);
	ksyms_free(&k);
	ck_assert_int_lt(ksyms_load_for_kernel(&k, kernel, "6.1.0-99-amd64 #1"), 0);
	ck_assert_int_lt(ksyms_load_for_kernel(&k, kernel, ""), 0);
	ck_assert_uint_eq(k.nr, 0);
}
END_TEST

/* A link to the image (build/vmlinuz -> /boot/vmlinuz-V) finds the map
 * next to the image, not next to the link. */
START_TEST(test_found_through_a_link)
{
	struct ksyms k;
	char kernel[256], sub[256], link[300];
	FILE *f;

	write_map("System.map-6.1.0-56-cloud-amd64");
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz-6.1.0-56-cloud-amd64", dir);
	f = fopen(kernel, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	snprintf(sub, sizeof(sub), "%s/build", dir);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	snprintf(link, sizeof(link), "%s/vmlinuz", sub);
	ck_assert_int_eq(symlink(kernel, link), 0);
	ck_assert_int_eq(ksyms_load_for_kernel(&k, link, "6.1.0-56-cloud-amd64 #1"), 0);
	ck_assert_uint_eq(k.nr, 3);
	ksyms_free(&k);
}
END_TEST

/* KITE_PROFILE's report: samples grouped by function, most first; user
 * and unnamed addresses in one bucket. */
START_TEST(test_profile_groups_by_symbol)
{
	struct ksyms k;
	struct guest_profile p;
	char path[256], *text = NULL;
	size_t len = 0;
	FILE *out;

	write_map("System.map");
	snprintf(path, sizeof(path), "%s/System.map", dir);
	ck_assert_int_eq(ksyms_load(&k, path), 0);
	guest_profile_init(&p);
	guest_profile_add(&p, 0xffffffff81000104ULL); /* second */
	guest_profile_add(&p, 0xffffffff81000210ULL); /* local_fn */
	guest_profile_add(&p, 0xffffffff81000180ULL); /* second */
	guest_profile_add(&p, 0x401000);              /* user mode */
	guest_profile_add(&p, 0xffffffff81000100ULL); /* second */
	out = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(guest_profile_write(&p, &k, out), 0);
	fclose(out);
	ck_assert_str_eq(text, "samples 5\n"
			       "       3  60.00% second\n"
			       "       1  20.00% [user or unknown]\n"
			       "       1  20.00% local_fn\n");
	free(text);
	/* Without symbols everything is unknown. */
	out = open_memstream(&text, &len);
	ck_assert_int_eq(guest_profile_write(&p, NULL, out), 0);
	fclose(out);
	ck_assert_str_eq(text, "samples 5\n       5 100.00% [user or unknown]\n");
	free(text);
	guest_profile_free(&p);
	ksyms_free(&k);
}
END_TEST


/* ---- kallsyms tables, laid out as the kernel's scripts/kallsyms.c does -- */

struct kimg {
	uint8_t *b;
	size_t len, cap;
};

static void kput(struct kimg *m, const void *p, size_t n)
{
	if (m->len + n > m->cap) {
		m->cap = (m->len + n) * 2;
		m->b = realloc(m->b, m->cap);
		ck_assert_ptr_nonnull(m->b);
	}
	memcpy(m->b + m->len, p, n);
	m->len += n;
}

static void kalign(struct kimg *m)
{
	static const uint8_t z[8];

	kput(m, z, (8 - m->len % 8) % 8);
}

static void kput32(struct kimg *m, uint32_t v)
{
	kput(m, &v, 4);
}

#define NSYMS 300
#define KBASE 0xffffffff81000000ULL

/* Symbol i: "T" or "t" or "d" + a name; the long one needs a two-byte
 * length. */
static void sym_name(unsigned i, char *out, size_t len)
{
	if (i == 7) {
		memset(out, 'L', 200);
		out[0] = 'T';
		out[200] = '\0';
		return;
	}
	snprintf(out, len, "%cfn_%u", i % 3 == 2 ? 'd' : (i % 2 ? 't' : 'T'), i);
}

/* A fake image: filler, the tables, filler.  Tokens: each byte 0x21-0x7E
 * is itself; the rest are two-character tokens nobody uses. */
static struct kimg build_kallsyms(bool with_seqs)
{
	struct kimg m = { NULL, 0, 0 };
	uint32_t markers[(NSYMS + 255) / 256];
	uint16_t index[256];
	size_t names_start, tok_start;
	uint64_t base = KBASE;
	char filler[4096];

	memset(filler, 0x5A, sizeof(filler));
	kput(&m, filler, sizeof(filler));
	kalign(&m);
	/* offsets: text symbols i at KBASE + 0x10 * i, as -(addr - base) - 1 */
	for (unsigned i = 0; i < NSYMS; i++)
		kput32(&m, (uint32_t)(-(int32_t)(0x10 * i) - 1));
	kalign(&m);
	kput(&m, &base, 8);
	kput32(&m, NSYMS);
	kalign(&m);
	names_start = m.len;
	for (unsigned i = 0; i < NSYMS; i++) {
		char name[256];
		size_t n;

		if (i % 256 == 0)
			markers[i / 256] = (uint32_t)(m.len - names_start);
		sym_name(i, name, sizeof(name));
		n = strlen(name);
		if (n > 127) {
			uint8_t l[2] = { (uint8_t)((n & 0x7F) | 0x80), (uint8_t)(n >> 7) };

			kput(&m, l, 2);
		} else {
			uint8_t l = (uint8_t)n;

			kput(&m, &l, 1);
		}
		kput(&m, name, n);
	}
	kalign(&m);
	for (unsigned i = 0; i < (NSYMS + 255) / 256; i++)
		kput32(&m, markers[i]);
	kalign(&m);
	if (with_seqs) {
		static const uint8_t seq[3];

		for (unsigned i = 0; i < NSYMS; i++)
			kput(&m, seq, 3);
		kalign(&m);
	}
	tok_start = m.len;
	for (unsigned i = 0; i < 256; i++) {
		char tok[3] = { (char)i, 0, 0 };

		if (i < 0x21 || i > 0x7E) {
			tok[0] = 'q';
			tok[1] = 'z';
		}
		index[i] = (uint16_t)(m.len - tok_start);
		kput(&m, tok, strlen(tok) + 1);
	}
	kalign(&m);
	kput(&m, index, sizeof(index));
	kput(&m, filler, sizeof(filler));
	return m;
}

START_TEST(test_kallsyms_from_image)
{
	for (int seqs = 0; seqs <= 1; seqs++) {
		struct kimg m = build_kallsyms(seqs);
		struct ksyms k;
		char buf[300], want[300];
		unsigned text = 0;

		ck_assert_int_eq(ksyms_load_kallsyms(&k, m.b, m.len), 0);
		for (unsigned i = 0; i < NSYMS; i++) {
			char name[256];

			sym_name(i, name, sizeof(name));
			if (name[0] == 'd')
				continue;
			text++;
			snprintf(want, sizeof(want), "%s+0x4", name + 1);
			ck_assert_str_eq(ksyms_describe(&k, KBASE + 0x10 * i + 4,
							buf, sizeof(buf)), want);
		}
		ck_assert_uint_eq(k.nr, text);
		/* Far past the last function: no name. */
		ck_assert_ptr_null(ksyms_describe(&k, 0xffffffffc0001000ULL, buf,
						  sizeof(buf)));
		ksyms_free(&k);
		free(m.b);
	}
}
END_TEST

/* A broken table (index not matching the tokens, or N not filling the
 * space) is not taken. */
START_TEST(test_kallsyms_rejects_damage)
{
	struct kimg m = build_kallsyms(true);
	struct ksyms k;
	uint8_t *idx = m.b + m.len - 4096 - 512;

	idx[2 * 'A'] ^= 1;
	ck_assert_int_eq(ksyms_load_kallsyms(&k, m.b, m.len), -ENOENT);
	idx[2 * 'A'] ^= 1;
	ck_assert_int_eq(ksyms_load_kallsyms(&k, m.b, m.len), 0);
	ksyms_free(&k);
	/* num_syms one too many. */
	for (size_t p = 4096; p + 4 < m.len; p += 8) {
		uint32_t v;

		memcpy(&v, m.b + p, 4);
		if (v == NSYMS) {
			v++;
			memcpy(m.b + p, &v, 4);
			break;
		}
	}
	ck_assert_int_eq(ksyms_load_kallsyms(&k, m.b, m.len), -ENOENT);
	ck_assert_int_eq(ksyms_load_kallsyms(&k, m.b, 100), -ENOENT);
	free(m.b);
}
END_TEST

static Suite *ksyms_suite(void)
{
	Suite *s = suite_create("ksyms");
	TCase *tc = tcase_create("system_map");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_describe);
	tcase_add_test(tc, test_found_next_to_kernel);
	tcase_add_test(tc, test_found_through_a_link);
	tcase_add_test(tc, test_profile_groups_by_symbol);
	tcase_add_test(tc, test_kallsyms_from_image);
	tcase_add_test(tc, test_kallsyms_rejects_damage);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(ksyms_suite)
