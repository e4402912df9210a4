/* qcow2 metadata integrity (issue 14): a corrupt reference in an image
 * must fail the guest request that meets it, never turn it into a write,
 * punch or free of a cluster that belongs to someone else.
 *
 * Images are made by qemu-img (v3 and v2, 64 KiB and 4 KiB clusters,
 * refcount widths 16, 64 and 2): every guest cluster holds a pattern of
 * its own -- normal clusters, compressed ones packed several to a host
 * cluster (and some straddling two host clusters), v3 zero clusters with
 * and without an offset, unallocated ones.  The test parses the file
 * itself (header, L1, refcount table and blocks, L2 entries; facts from
 * QEMU's docs/interop/qcow2.txt) to plant one corrupt reference, then
 * runs one guest request at the corrupt address on a fresh copy and
 * checks, after close:
 *   - the request failed with -EIO (a few may also succeed: a partial
 *     discard, write-zeroes of a cluster that already reads as zeros, a
 *     discard or zeroing that needs no refcount);
 *   - after -EIO every write, discard and write-zeroes of that open image
 *     fails with -EIO too, and reads still work (a read that meets the
 *     corruption first -- a clean cluster's read is made before the
 *     request, to have its L2 table cached for the io_uring path -- has
 *     marked the image already: then the request must fail too);
 *   - every byte below the old end of the file is unchanged, but for the
 *     incompatible-feature field (header bytes 72..79) of a v3 image,
 *     where the CORRUPT bit is set exactly when the request failed;
 *   - a writable reopen of a v3 image marked corrupt is refused ("marked
 *     corrupt"), a read-only one reads every other cluster's pattern;
 *   - `qemu-img check` finds no more corruptions than in the planted
 *     image before Kite touched it.
 * One Check test per row of the matrix (tcase_add_loop_test): the row's
 * name is in every failure message.  Clean images with every request
 * everywhere, packed compressed clusters rewritten one by one, shared
 * clusters, and writes after a failure make sure the guards do not
 * refuse what is legitimate. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#include "tests/unit/unit.h"
#include "vmm/disk/disk.h"

/* Check's ck_assert_msg() sends every passing assertion's location down
 * its pipe (one write each); the matrix makes about a million checks, so
 * here only a failure is reported. */
#undef ck_assert_msg
#define ck_assert_msg(expr, ...)                                          \
	((expr) ? (void)0                                                 \
		: _ck_assert_failed(__FILE__, __LINE__,                   \
				    "Assertion '" #expr "' failed", ##__VA_ARGS__))

/* This suite checks what requests change, not when it reaches the disk
 * (test_qcow2's kill tests do that): fdatasync() is a no-op in this
 * binary, Kite's calls included -- else each of its ~1,700 opens and
 * closes (five flushes a run) waits for the disk, 15 s more on ext4
 * here.  KITE_TEST_FSYNC=1 restores it. */
static int fsync_real;

/* Read once before any thread runs (pool threads call fdatasync too). */
__attribute__((constructor)) static void fsync_choose(void)
{
	fsync_real = getenv("KITE_TEST_FSYNC") != NULL;
}

int fdatasync(int fd)
{
	return fsync_real ? (int)syscall(SYS_fdatasync, fd) : 0;
}

#define OFLAG_COPIED     (1ull << 63)
#define OFLAG_COMPRESSED (1ull << 62)
#define OFLAG_ZERO       1ull
#define OFF_MASK         0x00fffffffffffe00ull
#define RTE_MASK         0xfffffffffffffe00ull
#define INCOMPAT_DIRTY   1ull
#define INCOMPAT_CORRUPT 2ull

/* ---- configurations ------------------------------------------------------- */

struct config {
	const char *name;
	const char *opts;  /* qemu-img -o */
	bool v3;
	unsigned cb;       /* cluster bits */
	bool two_blocks;   /* data enough for a second refcount block */
};

static const struct config configs[] = {
	{ "v3-64k-rc16", "compat=1.1,cluster_size=65536,refcount_bits=16",
	  true, 16, false },
	{ "v2-64k", "compat=0.10,cluster_size=65536", false, 16, false },
	/* 512 refcounts per block: the file spans two blocks. */
	{ "v3-4k-rc64", "compat=1.1,cluster_size=4096,refcount_bits=64",
	  true, 12, true },
	/* For the legitimate cases only: refcount maximum 3 (packing), and
	 * v2 with small clusters. */
	{ "v3-64k-rc2", "compat=1.1,cluster_size=65536,refcount_bits=2",
	  true, 16, false },
	{ "v2-4k", "compat=0.10,cluster_size=4096", false, 12, false },
};
#define MATRIX_CONFIGS 3
#define ALL_CONFIGS (sizeof(configs) / sizeof(configs[0]))

/* The guest layout, in clusters (L = entries per L2 table: cluster L is
 * the first one of the second L1 entry). */
enum gk { GK_NONE, GK_N, GK_C, GK_CB, GK_ZA, GK_Z };
/* N: incompressible (a normal cluster), C: 64 bytes repeated (packs
 * many to a host cluster), CB: a third incompressible (a third of a
 * host cluster: some straddle two), ZA: v3 zero keeping its offset,
 * Z: v3 zero without offset.  v2 has N where v3 has ZA and Z. */
static const enum gk head[24] = {
	GK_CB, GK_CB, GK_CB, GK_CB, GK_C, GK_N, GK_C, GK_N,
	GK_C, GK_C, GK_ZA, GK_Z, GK_N, GK_NONE, GK_N, GK_N,
};
/* (qemu-img packs compressed data at the end of the file while it can:
 * the CB clusters first, so that one of them straddles two host
 * clusters; a C stream is then followed by normal cluster 5.) */
enum {
	G_CB = 0,
	G_NORMAL = 5,     /* planted: normal entry, COPIED */
	G_COMP = 6,       /* planted: compressed entry */
	G_NORMAL2 = 7,    /* planted: normal entry, not COPIED */
	G_ZA = 10,        /* planted: zero entry keeping an offset */
	G_Z = 11,         /* planted: zero entry, offset added */
	G_CLEAN = 12,     /* clean: warms the L2 cache; later requests */
	G_UNALLOC = 13,   /* unallocated: allocation needs refcounts */
	G_CLEAN2 = 14,
	G_UNALLOC2 = 17,
	FILL2 = 48,       /* two_blocks: data clusters at L+16.. */
};

static uint64_t csize(const struct config *c)
{
	return 1ull << c->cb;
}

static uint64_t l2n(const struct config *c)
{
	return csize(c) / 8;
}

static enum gk gkind(const struct config *c, uint64_t g)
{
	uint64_t L = l2n(c);
	enum gk k;

	if (g < 24) {
		k = head[g];
		if (!c->v3 && (k == GK_ZA || k == GK_Z))
			k = GK_N;
		return k;
	}
	if (g < L)
		return c->two_blocks ? GK_N : GK_NONE;
	g -= L;
	if (g == 0 || g == 2)
		return GK_N;
	if (g == 1)
		return GK_C;
	if (c->two_blocks && g >= 16 && g < 16 + FILL2)
		return GK_N;
	return GK_NONE;
}

/* The guest clusters the tests look at (all that hold data, and some
 * unallocated ones around them). */
static unsigned model(const struct config *c, uint64_t *g)
{
	uint64_t L = l2n(c), end0 = c->two_blocks ? L : 24;
	uint64_t end1 = L + (c->two_blocks ? 16 + FILL2 : 16);
	unsigned n = 0;

	for (uint64_t i = 0; i < end0; i++)
		g[n++] = i;
	for (uint64_t i = L; i < end1; i++)
		g[n++] = i;
	return n;
}
#define MAX_MODEL 1200

static void rnd(uint8_t *buf, size_t len, uint32_t s)
{
	s = s * 2654435761u + 0x9e3779b9u;
	for (size_t i = 0; i < len; i++) {
		s ^= s << 13;
		s ^= s >> 17;
		s ^= s << 5;
		buf[i] = (uint8_t)(s >> 11);
	}
}

/* What guest cluster |g| of a fresh template holds; |source|: what the
 * raw source holds (data where the template has zero clusters). */
static void gen(const struct config *c, uint64_t g, uint8_t *buf, bool source)
{
	uint64_t cs = csize(c);
	uint32_t seed = (uint32_t)(g * 7919 + 1);

	switch (gkind(c, g)) {
	case GK_ZA:
	case GK_Z:
		if (!source) {
			memset(buf, 0, cs);
			break;
		}
		/* fall through */
	case GK_N:
		rnd(buf, cs, seed);
		break;
	case GK_C:
		rnd(buf, 64, seed);
		for (uint64_t o = 64; o < cs; o += 64)
			memcpy(buf + o, buf, 64);
		break;
	case GK_CB:
		memset(buf, 0, cs);
		rnd(buf, cs / 3, seed);
		break;
	case GK_NONE:
		memset(buf, 0, cs);
		break;
	}
}

/* ---- files and commands ------------------------------------------------------ */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd) - 20, fmt, ap);
	va_end(ap);
	strcat(cmd, " >/dev/null 2>&1");
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint8_t *slurp(const char *p, uint64_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(p, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (uint64_t)st.st_size;
	return b;
}

static void spit(const char *p, const uint8_t *b, uint64_t len)
{
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, b, len, 0), (ssize_t)len);
	close(fd);
}

struct qcheck {
	bool ok; /* qemu-img check ran and printed its report */
	long corruptions, errors, leaks;
};

static long json_num(const char *s, const char *key)
{
	const char *p = strstr(s, key);

	if (!p)
		return 0; /* qemu-img leaves out the counts that are 0 */
	p = strchr(p + strlen(key), ':');
	return p ? strtol(p + 1, NULL, 10) : -1;
}

static struct qcheck qemu_check(const char *img)
{
	/* (Spawned directly, not through a shell: hundreds of calls.) */
	char *argv[] = { "qemu-img", "check", "--output=json", (char *)img,
			 NULL };
	struct qcheck r = { false, 0, 0, 0 };
	posix_spawn_file_actions_t fa;
	char out[8192];
	size_t n = 0;
	int pfd[2], st;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pfd[0]);
	posix_spawn_file_actions_addclose(&fa, pfd[1]);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	ck_assert_int_eq(posix_spawnp(&pid, "qemu-img", &fa, NULL, argv,
				      environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	for (;;) {
		ssize_t k = read(pfd[0], out + n, sizeof(out) - 1 - n);

		if (k <= 0 || (n += (size_t)k) == sizeof(out) - 1)
			break;
	}
	out[n] = '\0';
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	if (!strstr(out, "\"check-errors\""))
		return r;
	r.ok = true;
	r.corruptions = json_num(out, "\"corruptions\"");
	r.errors = json_num(out, "\"check-errors\"");
	r.leaks = json_num(out, "\"leaks\"");
	return r;
}

/* ---- the image, parsed --------------------------------------------------------- */

struct qimg {
	uint8_t *b;
	uint64_t len;
	unsigned version, cb, rc_bits;
	uint64_t cs, l2n, l1_off, rt_off, rc_per_block;
	uint32_t l1_size, rt_clusters;
	unsigned csize_shift;
	uint64_t csize_mask, coff_mask;
};

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static void qimg_parse(struct qimg *q)
{
	ck_assert(q->len >= 104 && get32(q->b) == 0x514649fbu);
	q->version = get32(q->b + 4);
	q->cb = get32(q->b + 20);
	q->cs = 1ull << q->cb;
	q->l2n = q->cs / 8;
	q->l1_size = get32(q->b + 36);
	q->l1_off = get64(q->b + 40);
	q->rt_off = get64(q->b + 48);
	q->rt_clusters = get32(q->b + 56);
	q->rc_bits = 1u << (q->version >= 3 ? get32(q->b + 96) : 4);
	q->rc_per_block = q->cs * 8 / q->rc_bits;
	q->csize_shift = 62 - (q->cb - 8);
	q->csize_mask = (1ull << (q->cb - 8)) - 1;
	q->coff_mask = (1ull << q->csize_shift) - 1;
	ck_assert(q->l1_off + q->l1_size * 8ull <= q->len);
	ck_assert(q->rt_off + q->rt_clusters * q->cs <= q->len);
}

static uint64_t l1_pos(const struct qimg *q, uint64_t i)
{
	ck_assert(i < q->l1_size);
	return q->l1_off + i * 8;
}

static uint64_t l2_table(const struct qimg *q, uint64_t i)
{
	return get64(q->b + l1_pos(q, i)) & OFF_MASK;
}

static uint64_t l2e_pos(const struct qimg *q, uint64_t g)
{
	uint64_t t = l2_table(q, g / q->l2n);

	ck_assert_msg(t, "guest cluster %llu has no L2 table",
		      (unsigned long long)g);
	return t + (g % q->l2n) * 8;
}

static uint64_t l2e(const struct qimg *q, uint64_t g)
{
	if (!l2_table(q, g / q->l2n))
		return 0;
	return get64(q->b + l2e_pos(q, g));
}

static uint64_t rt_pos(const struct qimg *q, uint64_t j)
{
	ck_assert(j < q->rt_clusters * q->cs / 8);
	return q->rt_off + j * 8;
}

static uint64_t rte(const struct qimg *q, uint64_t j)
{
	return get64(q->b + rt_pos(q, j)) & RTE_MASK;
}

static uint64_t rc_get(const struct qimg *q, uint64_t cl)
{
	uint64_t blk = rte(q, cl / q->rc_per_block), i = cl % q->rc_per_block;
	uint64_t bit = i * q->rc_bits, v = 0;

	if (!blk)
		return 0;
	if (q->rc_bits < 8)
		return (q->b[blk + bit / 8] >> (bit % 8)) &
		       ((1u << q->rc_bits) - 1);
	for (unsigned k = 0; k < q->rc_bits / 8; k++)
		v = (v << 8) | q->b[blk + bit / 8 + k];
	return v;
}

static void rc_set(struct qimg *q, uint64_t cl, uint64_t v)
{
	uint64_t blk = rte(q, cl / q->rc_per_block), i = cl % q->rc_per_block;
	uint64_t bit = i * q->rc_bits;

	ck_assert(blk);
	if (q->rc_bits < 8) {
		uint8_t m = (uint8_t)(((1u << q->rc_bits) - 1) << (bit % 8));

		q->b[blk + bit / 8] = (uint8_t)((q->b[blk + bit / 8] & ~m) |
						(v << (bit % 8)));
		return;
	}
	for (unsigned k = q->rc_bits / 8; k-- > 0;) {
		q->b[blk + bit / 8 + k] = (uint8_t)v;
		v >>= 8;
	}
}

static bool is_compressed(uint64_t e)
{
	return (e & OFLAG_COMPRESSED) != 0;
}

/* The sectors a compressed entry claims: [*lo, *hi) in the file. */
static void comp_extent(const struct qimg *q, uint64_t e, uint64_t *lo,
			uint64_t *hi)
{
	uint64_t off = e & q->coff_mask;
	uint64_t nb = ((e >> q->csize_shift) & q->csize_mask) + 1;

	*lo = off & ~511ull;
	*hi = *lo + nb * 512;
}

static uint64_t comp_entry(const struct qimg *q, uint64_t off, uint64_t nb)
{
	ck_assert(nb >= 1 && nb - 1 <= q->csize_mask);
	return OFLAG_COMPRESSED | ((nb - 1) << q->csize_shift) | off;
}

/* Is host cluster |cl| metadata?  Its name, or NULL. */
static const char *meta_kind(const struct qimg *q, uint64_t cl)
{
	uint64_t o = cl * q->cs;

	if (cl == 0)
		return "header";
	if (o < q->l1_off + q->l1_size * 8ull && q->l1_off < o + q->cs)
		return "L1 table";
	if (o < q->rt_off + q->rt_clusters * q->cs && q->rt_off < o + q->cs)
		return "refcount table";
	for (uint64_t j = 0; j < q->rt_clusters * q->cs / 8; j++)
		if (rte(q, j) == o)
			return "refcount block";
	for (uint64_t i = 0; i < q->l1_size; i++)
		if (l2_table(q, i) == o)
			return "L2 table";
	return NULL;
}

/* Does the entry of guest cluster |g| reference host cluster |cl|? */
static bool refers_to(const struct qimg *q, uint64_t g, uint64_t cl)
{
	uint64_t e = l2e(q, g), lo, hi;

	if (is_compressed(e)) {
		comp_extent(q, e, &lo, &hi);
		return cl >= lo / q->cs && cl <= (hi - 1) / q->cs;
	}
	return (e & OFF_MASK) && (e & OFF_MASK) / q->cs == cl;
}

/* ---- templates ---------------------------------------------------------------- */

/* Check that qemu-img made the layout the tests rely on. */
static void verify_template(const struct config *c, const struct qimg *q)
{
	uint64_t gs[MAX_MODEL];
	unsigned n = model(c, gs), shared = 0, straddle = 0;

	ck_assert_uint_eq(q->cs, csize(c));
	ck_assert_uint_eq(q->version, c->v3 ? 3 : 2);
	ck_assert_uint_ge(q->l1_size, 2);
	for (unsigned i = 0; i < n; i++) {
		uint64_t g = gs[i], e = l2e(q, g), lo, hi;
		bool ok = false;

		switch (gkind(c, g)) {
		case GK_N:
			ok = !is_compressed(e) && (e & OFLAG_COPIED) &&
			     (e & OFF_MASK) && !(e & OFLAG_ZERO);
			break;
		case GK_C:
		case GK_CB:
			ok = is_compressed(e);
			comp_extent(q, e, &lo, &hi);
			if (ok && lo / q->cs != (hi - 1) / q->cs)
				straddle++;
			if (ok && rc_get(q, lo / q->cs) > 1)
				shared++;
			break;
		case GK_ZA:
			ok = !is_compressed(e) && (e & OFLAG_ZERO) &&
			     (e & OFF_MASK);
			break;
		case GK_Z:
			ok = !is_compressed(e) && (e & OFLAG_ZERO) &&
			     !(e & OFF_MASK);
			break;
		case GK_NONE:
			ok = e == 0;
			break;
		}
		ck_assert_msg(ok, "%s template: guest cluster %llu has entry "
			      "%#llx, not the kind the tests expect", c->name,
			      (unsigned long long)g, (unsigned long long)e);
	}
	ck_assert_msg(shared >= 2, "%s: no packed compressed clusters", c->name);
	ck_assert_msg(straddle >= 1, "%s: no compressed cluster straddles two "
		      "host clusters", c->name);
	if (c->two_blocks)
		ck_assert_msg(rte(q, 1) != 0, "%s: one refcount block", c->name);
}

/* The template image of |c| (made once per run; each test copies it). */
static const char *template_of(const struct config *c)
{
	static char tpl[160];
	char src[160], tmp[160];
	uint64_t gs[MAX_MODEL], cs = csize(c);
	unsigned n = model(c, gs);
	uint8_t *buf;
	int fd;

	snprintf(tpl, sizeof(tpl), "%s/tpl-%s.qcow2", unit_scratch, c->name);
	if (access(tpl, F_OK) == 0)
		return tpl;
	snprintf(src, sizeof(src), "%s/src-%s.raw", unit_scratch, c->name);
	snprintf(tmp, sizeof(tmp), "%s/tmp-%s.qcow2", unit_scratch, c->name);
	buf = malloc(cs);
	fd = open(src, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(2 * l2n(c) * cs)), 0);
	for (unsigned i = 0; i < n; i++) {
		if (gkind(c, gs[i]) == GK_NONE)
			continue;
		gen(c, gs[i], buf, true);
		ck_assert_int_eq(pwrite(fd, buf, cs, (off_t)(gs[i] * cs)),
				 (ssize_t)cs);
	}
	close(fd);
	free(buf);
	/* convert -c compresses what compresses and writes the rest as
	 * normal clusters, in guest order; qemu-io then makes the zero
	 * clusters (write -z keeps the allocation, -u drops it). */
	ck_assert_int_eq(sh("qemu-img convert -c -O qcow2 -o %s '%s' '%s'",
			    c->opts, src, tmp), 0);
	if (c->v3)
		ck_assert_int_eq(sh("qemu-io -c 'write -z %llu %llu' "
				    "-c 'write -z -u %llu %llu' '%s'",
				    (unsigned long long)(G_ZA * cs),
				    (unsigned long long)cs,
				    (unsigned long long)(G_Z * cs),
				    (unsigned long long)cs, tmp), 0);
	{
		struct qimg q;

		q.b = slurp(tmp, &q.len);
		qimg_parse(&q);
		verify_template(c, &q);
		free(q.b);
	}
	unlink(src);
	ck_assert_int_eq(rename(tmp, tpl), 0);
	return tpl;
}

/* ---- requests --------------------------------------------------------------- */

enum op {
	OP_W_FULL, OP_W_PART, OP_D_FULL, OP_D_PART,
	OP_Z_FULL_UNMAP, OP_Z_FULL_KEEP, OP_Z_PART_UNMAP, OP_Z_PART_KEEP,
	NOPS,
	OP_READ = NOPS,
};

static const char *const op_name[] = {
	"write of the whole cluster", "512-byte write",
	"discard of the whole cluster", "512-byte discard",
	"write-zeroes of the whole cluster (may unmap)",
	"write-zeroes of the whole cluster (no unmap)",
	"512-byte write-zeroes (may unmap)",
	"512-byte write-zeroes (no unmap)",
	"read",
};

static bool op_full(enum op op)
{
	return op == OP_W_FULL || op == OP_D_FULL || op == OP_Z_FULL_UNMAP ||
	       op == OP_Z_FULL_KEEP || op == OP_READ;
}

struct done {
	int n, res;
};

static void on_done(void *opaque, int result)
{
	struct done *d = opaque;

	d->n++;
	d->res = result;
}

/* Run |op| on guest cluster |g| through the asynchronous API; its
 * result.  |buf|: the data written (cluster-sized, the part at the
 * partial offset for partial writes), or read into. */
static int request(struct disk *d, uint64_t cs, enum op op, uint64_t g,
		   uint8_t *buf)
{
	uint64_t off = g * cs, len = cs;
	struct done dn = { 0, 0 };
	struct iovec iov;
	int err;

	if (!op_full(op)) {
		off += cs / 2;
		len = 512;
	}
	iov.iov_base = buf + (off - g * cs);
	iov.iov_len = len;
	switch (op) {
	case OP_READ:
		err = disk_submit_readv(d, off, &iov, 1, on_done, &dn);
		break;
	case OP_W_FULL:
	case OP_W_PART:
		err = disk_submit_writev(d, off, &iov, 1, on_done, &dn);
		break;
	case OP_D_FULL:
	case OP_D_PART:
		err = disk_submit_discard(d, off, len, on_done, &dn);
		break;
	default:
		err = disk_submit_write_zeroes(d, off, len,
					       op == OP_Z_FULL_UNMAP ||
					       op == OP_Z_PART_UNMAP,
					       on_done, &dn);
		break;
	}
	if (err)
		return err;
	while (dn.n < 1) {
		struct pollfd p = { disk_completion_fd(d), POLLIN, 0 };

		ck_assert_int_ge(poll(&p, 1, 10000), 1);
		disk_process_completions(d);
	}
	return dn.res;
}

/* ---- the matrix ---------------------------------------------------------------- */

enum ekind {
	K_NORMAL, K_NORMAL_SHARED, K_COMPRESSED, K_ZERO_ALLOC, K_ZERO,
	K_L1, K_RT_DATA, K_RT_ALLOC,
};

static const char *const ekind_name[] = {
	"L2 normal entry (COPIED)", "L2 normal entry (not COPIED)",
	"L2 compressed entry", "L2 zero entry keeping its offset",
	"L2 zero entry given an offset", "L1 entry",
	"refcount-table entry (write in place)",
	"refcount-table entry (allocation)",
};

enum tgt {
	T_HEADER, T_HEADER_MID, T_L1, T_RT, T_RB, T_RB2, T_OWN_L2, T_OTHER_L2,
	T_EOF, T_RC0, T_STRADDLE_META, T_OVERSTATE, T_STRADDLE_EOF,
};

static const char *const tgt_name[] = {
	"the header", "inside the header", "the L1 table",
	"the refcount table", "a refcount block",
	"the second refcount block", "its own L2 table", "another L2 table",
	"beyond the end of the file", "a cluster with refcount 0",
	"an extent from a data cluster into metadata",
	"an extent overstated into the next data cluster",
	"an extent past the end of the file",
};

struct row {
	unsigned cfg;
	enum ekind k;
	enum tgt t;
	unsigned rtj;   /* refcount-table and L1 rows: the entry */
	char name[160];
};

#define MAX_ROWS 128
static struct row l2rows[MAX_ROWS], l1rows[MAX_ROWS], rtrows[MAX_ROWS];
static int nl2rows, nl1rows, nrtrows;

static void add_row(struct row *rows, int *n, unsigned cfg, enum ekind k,
		    enum tgt t, unsigned rtj)
{
	struct row *r;

	if (*n >= MAX_ROWS)
		abort(); /* (not inside a test: no ck_assert here) */
	r = &rows[(*n)++];
	r->cfg = cfg;
	r->k = k;
	r->t = t;
	r->rtj = rtj;
	if (k == K_RT_DATA || k == K_RT_ALLOC)
		snprintf(r->name, sizeof(r->name), "%s: %s %u -> %s",
			 configs[cfg].name, ekind_name[k], rtj,
			 t == T_OWN_L2 ? "the L2 table mapping the request" :
			 t == T_OTHER_L2 ? "the other L2 table" :
			 t == T_RB ? "the other refcount block" : tgt_name[t]);
	else if (k == K_L1)
		snprintf(r->name, sizeof(r->name), "%s: %s %u -> %s%s",
			 configs[cfg].name, ekind_name[k], rtj,
			 t == T_OTHER_L2 ? "the L2 table of L1 entry " :
			 tgt_name[t], t == T_OTHER_L2 ? (rtj ? "0" : "1") : "");
	else
		snprintf(r->name, sizeof(r->name), "%s: %s -> %s",
			 configs[cfg].name, ekind_name[k], tgt_name[t]);
}

static void build_rows(void)
{
	/* Offset 0 in a normal or zero L2 entry, an L1 entry or a
	 * refcount-table entry means "none": only a compressed entry can
	 * point at the header. */
	static const enum tgt l2t[] = { T_L1, T_RT, T_RB, T_RB2,
		T_OWN_L2, T_OTHER_L2, T_EOF, T_RC0 };
	static const enum tgt ct[] = { T_HEADER, T_HEADER_MID, T_STRADDLE_META,
		T_OVERSTATE, T_STRADDLE_EOF };
	static const enum tgt l1t[] = { T_L1, T_RT, T_RB, T_RB2,
		T_OTHER_L2, T_EOF };
	static const enum tgt rtt[] = { T_L1, T_RT, T_OWN_L2, T_OTHER_L2,
		T_RB, T_EOF };

	for (unsigned c = 0; c < MATRIX_CONFIGS; c++) {
		const struct config *cf = &configs[c];
		unsigned eof_block = cf->two_blocks ? 1 : 0;

		for (enum ekind k = K_NORMAL; k <= K_ZERO; k++) {
			if (!cf->v3 && (k == K_ZERO_ALLOC || k == K_ZERO))
				continue;
			/* (Small clusters: one kind of each family, for time.) */
			if (cf->two_blocks && (k == K_NORMAL_SHARED || k == K_ZERO))
				continue;
			for (unsigned i = 0; i < sizeof(l2t) / sizeof(l2t[0]); i++)
				if (l2t[i] != T_RB2 || cf->two_blocks)
					add_row(l2rows, &nl2rows, c, k, l2t[i], 0);
		}
		for (unsigned i = 0; i < sizeof(ct) / sizeof(ct[0]); i++)
			add_row(l2rows, &nl2rows, c, K_COMPRESSED, ct[i], 0);
		for (unsigned i = 0; i < sizeof(l1t) / sizeof(l1t[0]); i++)
			if (l1t[i] != T_RB2 || cf->two_blocks)
				add_row(l1rows, &nl1rows, c, K_L1, l1t[i], 1);
		/* Sharing, the other way round: the first entry is the copy. */
		add_row(l1rows, &nl1rows, c, K_L1, T_OTHER_L2, 0);
		for (unsigned j = 0; j <= eof_block; j++)
			for (unsigned i = 0; i < sizeof(rtt) / sizeof(rtt[0]); i++)
				if (rtt[i] != T_RB || cf->two_blocks)
					add_row(rtrows, &nrtrows, c, K_RT_DATA,
						rtt[i], j);
		for (unsigned i = 0; i < sizeof(rtt) / sizeof(rtt[0]); i++)
			if (rtt[i] != T_RB || cf->two_blocks)
				add_row(rtrows, &nrtrows, c, K_RT_ALLOC, rtt[i],
					eof_block);
	}
}

/* What the planting did, for the checks afterwards. */
struct plant {
	uint64_t g;            /* the guest cluster requests address */
	uint64_t warm;         /* read first (caches its L2 table) */
	unsigned any_ops;      /* ops that may also succeed */
	bool open_may_fail;    /* a reference beyond EOF: refused at open */
	uint64_t skip_lo, skip_hi; /* guest clusters not read back */
	uint64_t mf_lo, mf_hi; /* guest clusters that may fail to read */
	bool reads_may_fail;   /* refcounts broken: reads may fail (-EIO) */
	uint64_t mayfail_host; /* clusters referencing it may fail to read */
};

static void plant(const struct row *r, struct qimg *q, struct plant *p)
{
	const struct config *c = &configs[r->cfg];
	uint64_t cs = q->cs, L = q->l2n, tgt = 0, pos, e, eofc;

	memset(p, 0, sizeof(*p));
	p->any_ops = 1u << OP_D_PART;
	p->mayfail_host = UINT64_MAX;
	p->warm = G_CLEAN;
	eofc = (q->len + cs - 1) / cs;
	switch (r->t) {
	case T_HEADER:
		tgt = 0;
		break;
	case T_HEADER_MID:
		tgt = cs / 2 + 17;
		break;
	case T_L1:
		tgt = q->l1_off;
		break;
	case T_RT:
		tgt = q->rt_off;
		break;
	case T_RB:
		tgt = rte(q, 0);
		break;
	case T_RB2:
		tgt = rte(q, 1);
		break;
	case T_OWN_L2:
		tgt = l2_table(q, 0);
		break;
	case T_OTHER_L2:
		tgt = l2_table(q, r->k == K_L1 ? 1 - r->rtj :
				  r->k >= K_RT_DATA ? 0 : 1);
		break;
	case T_EOF:
		tgt = (eofc + 4) * cs;
		break;
	default:
		break;
	}
	ck_assert(tgt || r->t == T_HEADER || r->t >= T_RC0);

	if (r->k == K_L1) {
		/* Entry 1: requests to its first data cluster, or where
		 * they would land on a normal cluster of L1 entry 0's table
		 * (G_NORMAL, that table cached by the clean read first);
		 * entry 0 sharing entry 1's table: to where they would land
		 * on guest cluster L + 2's data (no read first: it could
		 * only go through one of the two entries). */
		p->g = r->rtj ? L : 2;
		if (r->t == T_OTHER_L2 && r->rtj)
			p->g = L + G_NORMAL;
		if (!r->rtj)
			p->warm = UINT64_MAX;
		p->skip_lo = r->rtj * L;
		p->skip_hi = (r->rtj + 1) * L;
		p->open_may_fail = r->t == T_EOF;
		/* A refcount block claimed by an L1 entry too: either may be
		 * the wrong one. */
		p->reads_may_fail = r->t == T_RB || r->t == T_RB2;
		if (r->t == T_OTHER_L2) {
			/* Both entries that share the table are corrupt. */
			p->mf_lo = (1 - r->rtj) * L;
			p->mf_hi = (2 - r->rtj) * L;
		}
		put64(q->b + l1_pos(q, r->rtj), tgt | OFLAG_COPIED);
		return;
	}
	if (r->k == K_RT_DATA || r->k == K_RT_ALLOC) {
		uint64_t j = r->rtj;

		p->open_may_fail = r->t == T_EOF;
		/* (Both entries that claim one cluster are suspect: reads
		 * may fail everywhere.) */
		p->reads_may_fail = true;
		if (r->k == K_RT_ALLOC) {
			ck_assert_uint_eq(eofc / q->rc_per_block, j);
			p->g = G_UNALLOC;
			p->any_ops = (1u << OP_D_FULL) | (1u << OP_D_PART) |
				     (1u << OP_Z_FULL_UNMAP) |
				     (1u << OP_Z_FULL_KEEP) |
				     (1u << OP_Z_PART_UNMAP) |
				     (1u << OP_Z_PART_KEEP);
		} else {
			uint64_t gs[MAX_MODEL];
			unsigned n = model(c, gs);

			p->g = UINT64_MAX;
			for (unsigned i = 0; i < n && p->g == UINT64_MAX; i++) {
				e = l2e(q, gs[i]);
				if (gkind(c, gs[i]) == GK_N &&
				    (e & OFF_MASK) / cs / q->rc_per_block == j)
					p->g = gs[i];
			}
			ck_assert(p->g != UINT64_MAX);
		}
		/* The L2 table of the requests' range, or of the other one
		 * (whose L1 entry the requests do not need). */
		if (r->t == T_OWN_L2)
			tgt = l2_table(q, p->g / L);
		if (r->t == T_OTHER_L2)
			tgt = l2_table(q, 1 - p->g / L);
		if (r->t == T_RB)
			tgt = rte(q, 1 - j);
		put64(q->b + rt_pos(q, j), tgt);
		return;
	}

	/* L2 entries. */
	p->g = r->k == K_NORMAL ? G_NORMAL : r->k == K_NORMAL_SHARED ? G_NORMAL2 :
	       r->k == K_COMPRESSED ? G_COMP : r->k == K_ZERO_ALLOC ? G_ZA : G_Z;
	if (r->k == K_ZERO_ALLOC || r->k == K_ZERO)
		/* Already reads as zeros: zeroing it may be a no-op. */
		p->any_ops |= (1u << OP_Z_FULL_KEEP) | (1u << OP_Z_PART_UNMAP) |
			      (1u << OP_Z_PART_KEEP);
	if (r->t == T_OVERSTATE) {
		uint64_t gs[MAX_MODEL];
		unsigned n = model(c, gs);

		/* A compressed cluster whose extent ends in a host cluster
		 * followed by a normal data cluster: claim one sector of it. */
		for (unsigned i = 0; i < n; i++) {
			uint64_t lo, hi, next, nb;

			e = l2e(q, gs[i]);
			if (!is_compressed(e))
				continue;
			comp_extent(q, e, &lo, &hi);
			next = (hi - 1) / cs + 1;
			for (unsigned k = 0; k < n; k++) {
				uint64_t f = l2e(q, gs[k]);

				if (gkind(c, gs[k]) != GK_N ||
				    (f & OFF_MASK) != next * cs)
					continue;
				nb = (next * cs + 512 - lo) / 512;
				if (nb - 1 > q->csize_mask)
					continue;
				p->g = gs[i];
				put64(q->b + l2e_pos(q, p->g),
				      comp_entry(q, e & q->coff_mask, nb));
				return;
			}
		}
		ck_abort_msg("%s: no compressed extent followed by a data "
			     "cluster", r->name);
	}
	pos = l2e_pos(q, p->g);
	e = get64(q->b + pos);
	if (r->t == T_RC0) {
		uint64_t h;

		if (r->k == K_ZERO) {
			h = l2e(q, G_NORMAL2) & OFF_MASK;
			e = OFLAG_ZERO | OFLAG_COPIED | h;
		} else if (r->k == K_COMPRESSED) {
			uint64_t lo, hi;

			comp_extent(q, e, &lo, &hi);
			h = lo & ~(cs - 1);
		} else {
			h = e & OFF_MASK;
			if (r->k == K_NORMAL_SHARED)
				e &= ~OFLAG_COPIED;
		}
		p->mayfail_host = h / cs;
		rc_set(q, h / cs, 0);
		put64(q->b + pos, e);
		return;
	}
	switch (r->k) {
	case K_NORMAL:
		e = tgt | OFLAG_COPIED;
		break;
	case K_NORMAL_SHARED:
		e = tgt;
		break;
	case K_ZERO_ALLOC:
		e = (e & ~OFF_MASK) | tgt;
		break;
	case K_ZERO:
		e = OFLAG_ZERO | OFLAG_COPIED | tgt;
		break;
	default: /* K_COMPRESSED */
		if (r->t == T_STRADDLE_META) {
			uint64_t h = 0;

			for (uint64_t cl = 1; cl + 1 < eofc && !h; cl++)
				if (!meta_kind(q, cl) && rc_get(q, cl) &&
				    meta_kind(q, cl + 1))
					h = cl;
			ck_assert_msg(h, "%s: no data cluster before metadata",
				      r->name);
			e = comp_entry(q, (h + 1) * cs - 512, 2);
		} else if (r->t == T_STRADDLE_EOF) {
			ck_assert_uint_eq(q->len % 512, 0);
			e = comp_entry(q, q->len - 512, 3);
		} else {
			e = comp_entry(q, tgt, 2);
		}
		break;
	}
	put64(q->b + pos, e);
}

/* One row's state: the planted image and what to check. */
struct ctx {
	const struct row *r;
	const struct config *c;
	struct qimg q;          /* the planted image */
	struct qimg t;          /* the template, for who references what */
	struct plant p;
	char work[160];
	struct qcheck base;
	struct { uint64_t h, len; struct qcheck r; } cache[16];
	unsigned ncache;
	uint64_t seen[16];      /* contents whose reopens passed */
	unsigned nseen;
	uint64_t gs[MAX_MODEL];
	unsigned ngs;
	uint8_t *model;         /* the patterns of gs[], one cluster each */
	uint8_t *got, *wbuf, *run;
	char fails[3000];
	size_t flen;
};

static void failf(struct ctx *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void failf(struct ctx *x, const char *fmt, ...)
{
	va_list ap;

	/* Check carries at most a few KiB of message. */
	if (x->flen + 200 >= sizeof(x->fails)) {
		if (x->fails[x->flen - 1] != '.')
			x->flen += (size_t)snprintf(x->fails + x->flen, 8,
						    "\n  ...");
		return;
	}
	x->fails[x->flen++] = '\n';
	x->fails[x->flen++] = ' ';
	x->fails[x->flen++] = ' ';
	va_start(ap, fmt);
	x->flen += (size_t)vsnprintf(x->fails + x->flen,
				     sizeof(x->fails) - x->flen - 1, fmt, ap);
	va_end(ap);
	if (x->flen > sizeof(x->fails) - 2)
		x->flen = sizeof(x->fails) - 2;
}

static uint64_t fnv(const uint8_t *b, uint64_t len)
{
	uint64_t h = 1469598103934665603ull, w, i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, b + i, 8);
		h = (h ^ w) * 1099511628211ull;
		h ^= h >> 29;
	}
	for (; i < len; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

/* qemu-img check of the work file, remembered by content (a file that
 * is byte for byte one checked before gets the same answer). */
static struct qcheck checked(struct ctx *x, const uint8_t *b, uint64_t len)
{
	uint64_t h = fnv(b, len);
	struct qcheck r;

	for (unsigned i = 0; i < x->ncache; i++)
		if (x->cache[i].h == h && x->cache[i].len == len)
			return x->cache[i].r;
	r = qemu_check(x->work);
	if (x->ncache < 16) {
		x->cache[x->ncache].h = h;
		x->cache[x->ncache].len = len;
		x->cache[x->ncache++].r = r;
	}
	return r;
}

enum rd { RD_SKIP, RD_MAY_FAIL, RD_MUST };
#define MAX_RUN 64

static enum rd read_rule(const struct ctx *x, uint64_t g)
{
	if (g == x->p.g || (g >= x->p.skip_lo && g < x->p.skip_hi))
		return RD_SKIP;
	if (x->p.reads_may_fail || (g >= x->p.mf_lo && g < x->p.mf_hi))
		return RD_MAY_FAIL;
	if (x->p.mayfail_host != UINT64_MAX &&
	    refers_to(&x->t, g, x->p.mayfail_host))
		return RD_MAY_FAIL;
	return RD_MUST;
}

/* Read guest cluster |g| and compare it with its pattern. */
static int read_back(struct ctx *x, struct disk *d, uint64_t g,
		     const char *tag, const char *when)
{
	enum rd rule = read_rule(x, g);
	uint64_t cs = x->q.cs;
	int err;

	if (rule == RD_SKIP)
		return 0;
	err = request(d, cs, OP_READ, g, x->got);
	if (err == -EIO && rule == RD_MAY_FAIL)
		return err;
	if (err)
		failf(x, "%s: %s: read of guest cluster %llu failed: %d",
		      tag, when, (unsigned long long)g, err);
	else if (memcmp(x->got, x->model + g * cs, cs)) /* g < 24 */
		failf(x, "%s: %s: guest cluster %llu does not read its "
		      "pattern", tag, when, (unsigned long long)g);
	return err;
}

/* Read every model cluster back (synchronously, runs of consecutive
 * clusters at once; one by one where a run fails). */
static void read_all(struct ctx *x, struct disk *d, const char *tag)
{
	uint64_t cs = x->q.cs;
	unsigned i = 0;

	while (i < x->ngs) {
		unsigned j = i;
		int err;

		if (read_rule(x, x->gs[i]) == RD_SKIP) {
			i++;
			continue;
		}
		while (j + 1 < x->ngs && x->gs[j + 1] == x->gs[j] + 1 &&
		       j + 1 - i < MAX_RUN &&
		       read_rule(x, x->gs[j + 1]) != RD_SKIP)
			j++;
		err = disk_pread(d, x->gs[i] * cs, x->run, (j - i + 1) * cs);
		for (unsigned k = i; k <= j; k++) {
			enum rd rule = read_rule(x, x->gs[k]);
			uint8_t *got = x->run + (k - i) * cs;

			if (err) {
				err = disk_pread(d, x->gs[k] * cs, got, cs);
				if (err == -EIO && rule == RD_MAY_FAIL) {
					err = -EIO; /* go on one by one */
					continue;
				}
				if (err) {
					failf(x, "%s: read-only reopen: read of "
					      "guest cluster %llu failed: %d", tag,
					      (unsigned long long)x->gs[k], err);
					err = -EIO;
					continue;
				}
				err = -EIO;
			}
			if (memcmp(got, x->model + (uint64_t)k * cs, cs))
				failf(x, "%s: read-only reopen: guest cluster "
				      "%llu does not read its pattern", tag,
				      (unsigned long long)x->gs[k]);
		}
		i = j + 1;
	}
}

/* Put the planted bytes back into the work file. */
static void restore(struct ctx *x)
{
	uint64_t len;
	uint8_t *b = slurp(x->work, &len);

	if (len == x->q.len && !memcmp(b, x->q.b, 72) &&
	    !memcmp(b + 80, x->q.b + 80, len - 80)) {
		int fd = open(x->work, O_WRONLY);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(pwrite(fd, x->q.b + 72, 8, 72), 8);
		close(fd);
	} else {
		spit(x->work, x->q.b, x->q.len);
	}
	free(b);
}

static const char *region(const struct qimg *q, uint64_t off)
{
	const char *m = meta_kind(q, off / q->cs);

	return m ? m : "data";
}

/* After close: the file, qemu-img check, a read-only and a writable
 * reopen. */
static void check_after(struct ctx *x, const char *tag, int res, bool strict)
{
	const struct qimg *q = &x->q;
	uint64_t len, diffs = 0, first = 0, h;
	size_t flen;
	uint8_t *b = slurp(x->work, &len);
	struct disk_options ro = { .format = DISK_FORMAT_AUTO, .read_only = true,
				   .aio = DISK_AIO_THREADS };
	struct disk_options rw = { .format = DISK_FORMAT_AUTO,
				   .aio = DISK_AIO_THREADS };
	char why[256];
	struct disk *d;
	struct qcheck qc;
	int err;

	if (len < q->len)
		failf(x, "%s: the file shrank from %llu to %llu bytes", tag,
		      (unsigned long long)q->len, (unsigned long long)len);
	if (strict && (len < q->len || memcmp(b, q->b, 72) ||
			 (!x->c->v3 && memcmp(b + 72, q->b + 72, 8)) ||
			 memcmp(b + 80, q->b + 80, q->len - 80))) {
		for (uint64_t i = 0; i < q->len && i < len; i++) {
			if (x->c->v3 && i >= 72 && i < 80)
				continue;
			if (b[i] != q->b[i] && !diffs++)
				first = i;
		}
		if (diffs)
			failf(x, "%s: %llu bytes of the file changed, the first "
			      "at %#llx (%s)", tag, (unsigned long long)diffs,
			      (unsigned long long)first, region(q, first));
	}
	if (x->c->v3 && len >= 80) {
		uint64_t was = get64(q->b + 72), is = get64(b + 72);
		bool want = res == -EIO;

		if (!!(is & INCOMPAT_CORRUPT) != want)
			failf(x, "%s: the CORRUPT bit is %s after %s", tag,
			      want ? "not set" : "set",
			      want ? "-EIO" : "success (no -EIO)");
		if ((is ^ was) & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT))
			failf(x, "%s: incompatible features %#llx -> %#llx", tag,
			      (unsigned long long)was, (unsigned long long)is);
	}
	h = fnv(b, len);
	qc = checked(x, b, len);
	if (x->base.ok && (!qc.ok || qc.corruptions > x->base.corruptions ||
			   qc.errors > x->base.errors))
		failf(x, "%s: qemu-img check: %s%ld corruptions, %ld errors "
		      "(planted image: %ld, %ld)", tag,
		      qc.ok ? "" : "cannot check the image; ", qc.corruptions,
		      qc.errors, x->base.corruptions, x->base.errors);
	free(b);

	/* The reopens read what an earlier run of this row left byte for
	 * byte, and passed: they would again. */
	for (unsigned i = 0; i < x->nseen; i++)
		if (x->seen[i] == h)
			return;
	flen = x->flen;
	err = disk_open(x->work, &ro, &d, why, sizeof(why));
	if (err) {
		failf(x, "%s: read-only reopen: %d %s", tag, err, why);
	} else {
		read_all(x, d, tag);
		disk_close(d);
	}
	if (x->c->v3 && res == -EIO) {
		err = disk_open(x->work, &rw, &d, why, sizeof(why));
		if (!err) {
			failf(x, "%s: writable reopen of the image marked "
			      "corrupt succeeded", tag);
			disk_close(d);
		} else if (!strstr(why, "marked corrupt")) {
			failf(x, "%s: writable reopen refused, but not as "
			      "marked corrupt: %d %s", tag, err, why);
		}
	}
	if (x->flen == flen && x->nseen < 16)
		x->seen[x->nseen++] = h;
}

static void run_one(struct ctx *x, enum op op, enum disk_aio aio)
{
	struct disk_options o = { .format = DISK_FORMAT_AUTO, .aio = aio };
	uint64_t cs = x->q.cs;
	char tag[128], why[256];
	struct disk *d;
	bool marked, any;
	int err, res;

	snprintf(tag, sizeof(tag), "%s [%s]", op_name[op],
		 aio == DISK_AIO_THREADS ? "threads" : "default aio");
	err = disk_open(x->work, &o, &d, why, sizeof(why));
	if (err) {
		uint64_t len;
		uint8_t *b = slurp(x->work, &len);

		if (!x->p.open_may_fail)
			failf(x, "%s: open failed: %d %s", tag, err, why);
		else if (len != x->q.len || memcmp(b, x->q.b, len))
			failf(x, "%s: open failed (%d), but changed the file",
			      tag, err);
		free(b);
		restore(x);
		return;
	}
	/* Warm the cache: the L2 table of the clean cluster is the
	 * planted entry's (the io_uring path needs it cached).  Where
	 * refcounts are broken, the read may meet the corruption (-EIO):
	 * then the image is marked corrupt already, and the request must
	 * fail whatever it is. */
	marked = x->p.warm != UINT64_MAX &&
		 read_back(x, d, x->p.warm, tag, "before the request") == -EIO;
	any = !marked && (x->p.any_ops & (1u << op));
	rnd(x->wbuf, cs, 0xbeef + op);
	res = request(d, cs, op, x->p.g, x->wbuf);
	if (res != -EIO && !(res == 0 && any))
		failf(x, "%s: returned %d, want -EIO%s%s", tag, res,
		      any ? " or 0" : "",
		      marked ? " (a read had met the corruption)" : "");
	if (res == -EIO || marked) {
		/* The image is marked corrupt: every change fails, reads
		 * go on. */
		static const struct { enum op op; uint64_t g; } after[] = {
			{ OP_W_FULL, G_UNALLOC2 }, { OP_D_FULL, G_CLEAN },
			{ OP_Z_FULL_UNMAP, G_CLEAN2 }, { OP_W_PART, G_CLEAN2 },
		};

		for (unsigned i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
			err = request(d, cs, after[i].op, after[i].g, x->wbuf);
			if (err != -EIO)
				failf(x, "%s: then a %s of clean guest cluster "
				      "%llu returned %d, want -EIO", tag,
				      op_name[after[i].op],
				      (unsigned long long)after[i].g, err);
		}
		read_back(x, d, G_CLEAN, tag, "after -EIO");
	}
	disk_close(d);
	/* Nothing may change unless the request was allowed to succeed
	 * (and did). */
	check_after(x, tag, marked ? -EIO : res, res != 0 || !any);
	restore(x);
}

static void run_row(const struct row *r)
{
	struct ctx *x = calloc(1, sizeof(*x));
	const char *tpl;

	ck_assert_ptr_nonnull(x);
	x->r = r;
	x->c = &configs[r->cfg];
	tpl = template_of(x->c);
	x->t.b = slurp(tpl, &x->t.len);
	qimg_parse(&x->t);
	x->q.b = malloc(x->t.len);
	memcpy(x->q.b, x->t.b, x->t.len);
	x->q.len = x->t.len;
	qimg_parse(&x->q);
	plant(r, &x->q, &x->p);
	x->ngs = model(x->c, x->gs);
	x->model = malloc(x->ngs * x->q.cs);
	for (unsigned i = 0; i < x->ngs; i++)
		gen(x->c, x->gs[i], x->model + i * x->q.cs, false);
	x->got = malloc(x->q.cs);
	x->wbuf = malloc(x->q.cs);
	x->run = malloc(MAX_RUN * x->q.cs);
	snprintf(x->work, sizeof(x->work), "%s/work-%d.qcow2", unit_scratch,
		 (int)getpid());
	spit(x->work, x->q.b, x->q.len);
	x->base = checked(x, x->q.b, x->q.len);

	for (enum op op = OP_W_FULL; op < NOPS; op++) {
		run_one(x, op, DISK_AIO_THREADS);
		/* The default engine differs only for reads and writes
		 * (io_uring for clusters the cached L2 table places). */
		if (op == OP_W_FULL || op == OP_W_PART)
			run_one(x, op, DISK_AIO_AUTO);
	}
	unlink(x->work);
	ck_assert_msg(x->flen == 0, "%s:%s", r->name, x->fails);
	free(x->t.b);
	free(x->q.b);
	free(x->model);
	free(x->got);
	free(x->wbuf);
	free(x->run);
	free(x);
}

/* Rows: every kind of L2 entry (normal COPIED and not, compressed, v3
 * zero with and without an offset) pointing at every kind of metadata,
 * beyond EOF, at a cluster with refcount 0; compressed extents inside the
 * header, from data into metadata, overstated into the next data
 * cluster, past EOF. */
START_TEST(test_corrupt_l2_entry_fails_request_eio_changes_nothing)
{
	run_row(&l2rows[_i]);
}
END_TEST

/* Rows: L1 entry 1 pointing at the header, the L1 table, the refcount
 * table, a refcount block, the L2 table of L1 entry 0, beyond EOF. */
START_TEST(test_corrupt_l1_entry_fails_request_eio_changes_nothing)
{
	run_row(&l1rows[_i]);
}
END_TEST

/* Rows: a refcount-table entry pointing at the header, the L1 table, the
 * refcount table, an L2 table, the other refcount block, beyond EOF; the
 * request writes a data cluster that block covers in place, or
 * allocates. */
START_TEST(test_corrupt_refcount_table_entry_fails_request_eio_changes_nothing)
{
	run_row(&rtrows[_i]);
}
END_TEST

/* ---- the legitimate cases ---------------------------------------------------------- */

struct legit {
	const struct config *c;
	struct qimg t;
	char work[160];
	uint64_t gs[MAX_MODEL];
	unsigned n;
	uint8_t *data;  /* the model: n clusters */
	uint8_t *buf;
};

static void legit_open(struct legit *l, unsigned cfg)
{
	uint64_t cs;

	l->c = &configs[cfg];
	l->t.b = slurp(template_of(l->c), &l->t.len);
	qimg_parse(&l->t);
	cs = l->t.cs;
	snprintf(l->work, sizeof(l->work), "%s/legit-%d.qcow2", unit_scratch,
		 (int)getpid());
	spit(l->work, l->t.b, l->t.len);
	l->n = model(l->c, l->gs);
	l->data = malloc(l->n * cs);
	l->buf = malloc(cs);
	ck_assert(l->data && l->buf);
	for (unsigned i = 0; i < l->n; i++)
		gen(l->c, l->gs[i], l->data + i * cs, false);
}

static void legit_free(struct legit *l)
{
	unlink(l->work);
	free(l->t.b);
	free(l->data);
	free(l->buf);
}

static void legit_verify(struct legit *l, struct disk *d, const char *when)
{
	uint64_t cs = l->t.cs;

	for (unsigned i = 0; i < l->n;) {
		unsigned j = i;
		uint8_t *run;

		while (j + 1 < l->n && l->gs[j + 1] == l->gs[j] + 1 &&
		       j + 1 - i < MAX_RUN)
			j++;
		run = malloc((j - i + 1) * cs);
		ck_assert_int_eq(disk_pread(d, l->gs[i] * cs, run,
					    (j - i + 1) * cs), 0);
		for (unsigned k = i; k <= j; k++)
			ck_assert_msg(!memcmp(run + (k - i) * cs,
					      l->data + k * cs, cs),
				      "%s: %s: guest cluster %llu reads wrong",
				      l->c->name, when,
				      (unsigned long long)l->gs[k]);
		free(run);
		i = j + 1;
	}
}

/* Apply |op| to model cluster |i| (must succeed) and update the model. */
static void legit_op(struct legit *l, struct disk *d, unsigned i, enum op op,
		     uint32_t seed)
{
	uint64_t cs = l->t.cs, po = cs / 2;
	uint8_t *m = l->data + i * cs;
	int err;

	rnd(l->buf, cs, seed);
	err = request(d, cs, op, l->gs[i], l->buf);
	ck_assert_msg(err == 0, "%s: %s of guest cluster %llu (%s): %d",
		      l->c->name, op_name[op], (unsigned long long)l->gs[i],
		      gkind(l->c, l->gs[i]) == GK_NONE ? "unallocated" : "data",
		      err);
	switch (op) {
	case OP_W_FULL:
		memcpy(m, l->buf, cs);
		break;
	case OP_W_PART:
		memcpy(m + po, l->buf + po, 512);
		break;
	case OP_D_FULL:
	case OP_D_PART: {
		/* Discard is a hint: the range reads as before or as zeros. */
		uint64_t o = op == OP_D_FULL ? 0 : po;
		uint64_t n = op == OP_D_FULL ? cs : 512;
		uint8_t *z = calloc(1, cs);

		ck_assert_int_eq(request(d, cs, OP_READ, l->gs[i], l->buf), 0);
		ck_assert_msg(!memcmp(l->buf + o, m + o, n) ||
			      !memcmp(l->buf + o, z, n),
			      "%s: discarded guest cluster %llu reads neither "
			      "old data nor zeros", l->c->name,
			      (unsigned long long)l->gs[i]);
		memcpy(m, l->buf, cs);
		free(z);
		break;
	}
	case OP_Z_FULL_UNMAP:
	case OP_Z_FULL_KEEP:
		memset(m, 0, cs);
		break;
	default:
		memset(m + po, 0, 512);
		break;
	}
}

static void legit_close_and_check(struct legit *l, struct disk *d)
{
	struct disk_options ro = { .format = DISK_FORMAT_AUTO, .read_only = true,
				   .aio = DISK_AIO_THREADS };
	struct qcheck qc;
	char why[256];

	ck_assert_int_eq(disk_close(d), 0);
	qc = qemu_check(l->work);
	ck_assert_msg(qc.ok && qc.corruptions == 0 && qc.errors == 0 &&
		      qc.leaks == 0, "%s: qemu-img check: ok %d, %ld corruptions, "
		      "%ld errors, %ld leaks", l->c->name, qc.ok, qc.corruptions,
		      qc.errors, qc.leaks);
	ck_assert_int_eq(disk_open(l->work, &ro, &d, why, sizeof(why)), 0);
	legit_verify(l, d, "read-only reopen");
	disk_close(d);
}

static struct disk *legit_disk(struct legit *l, enum disk_aio aio)
{
	struct disk_options o = { .format = DISK_FORMAT_AUTO, .aio = aio };
	struct disk *d;
	char why[256];
	int err = disk_open(l->work, &o, &d, why, sizeof(why));

	ck_assert_msg(err == 0, "%s: open: %d %s", l->c->name, err, why);
	return d;
}

/* ---- clusters this run appended --------------------------------------------------- */

/* An entry that pointed beyond the end of the file at open stays
 * corrupt when the file grows over it: the cluster it names now holds
 * another guest cluster's data (appended by this run), which a write or
 * discard through the corrupt entry would overwrite or free.  Rows:
 * configurations x {normal COPIED (v2: not COPIED), compressed, v3 zero
 * with offset (v2: normal COPIED)}; each with a whole write and a
 * 512-byte write (default engine: io_uring where it can) and a discard,
 * on fresh copies. */
START_TEST(test_entry_beyond_eof_stays_corrupt_when_the_file_grows_over_it)
{
	static const enum op ops[] = { OP_W_FULL, OP_W_PART, OP_D_FULL };
	static const char *const kinds[] = { "normal entry",
		"compressed entry", "zero entry with offset" };
	const struct config *c = &configs[_i / 3];
	unsigned kind = (unsigned)_i % 3;
	struct legit l;
	struct qimg q;
	uint64_t cs, eofc, g, e = 0;
	char side[200], why[256];

	legit_open(&l, (unsigned)_i / 3);
	cs = l.t.cs;
	q.b = slurp(l.work, &q.len);
	qimg_parse(&q);
	eofc = (q.len + cs - 1) / cs;
	switch (kind) {
	case 0:
		g = c->v3 ? G_NORMAL : G_NORMAL2;
		e = (eofc + 2) * cs | (c->v3 ? OFLAG_COPIED : 0);
		break;
	case 1:
		g = G_COMP;
		e = comp_entry(&q, (eofc + 2) * cs, 2);
		break;
	default:
		g = c->v3 ? G_ZA : G_NORMAL;
		e = (eofc + 2) * cs | OFLAG_COPIED | (c->v3 ? OFLAG_ZERO : 0);
		break;
	}
	put64(q.b + l2e_pos(&q, g), e);
	snprintf(side, sizeof(side), "%s.grown", l.work);
	for (unsigned k = 0; k < 3; k++) {
		enum disk_aio aio = ops[k] == OP_D_FULL ? DISK_AIO_THREADS
						       : DISK_AIO_AUTO;
		struct disk_options ro = { .format = DISK_FORMAT_AUTO,
					   .read_only = true,
					   .aio = DISK_AIO_THREADS };
		struct disk *d;
		struct qimg sq;
		struct qcheck before, after;
		uint64_t len;
		uint8_t *b;
		int res;

		spit(l.work, q.b, q.len);
		d = legit_disk(&l, aio);
		/* Guest clusters 16..19 (unallocated) get clusters eofc..
		 * eofc+3: 18 gets the one the corrupt entry names. */
		for (unsigned i = 16; i < 20; i++)
			legit_op(&l, d, i, OP_W_FULL, 500 + i);
		ck_assert_int_eq(disk_flush(d), 0);
		sq.b = slurp(l.work, &sq.len);
		qimg_parse(&sq);
		ck_assert_uint_eq(l2e(&sq, 18) & OFF_MASK, (eofc + 2) * cs);
		spit(side, sq.b, sq.len);
		before = qemu_check(side);
		rnd(l.buf, cs, 900 + k);
		res = request(d, cs, ops[k], g, l.buf);
		ck_assert_msg(res == -EIO, "%s: %s: %s through the entry "
			      "naming guest cluster 18's new cluster: %d",
			      c->name, kinds[kind], op_name[ops[k]], res);
		disk_close(d);
		b = slurp(l.work, &len);
		ck_assert_uint_ge(len, sq.len);
		ck_assert_msg(!memcmp(b, sq.b, 72) &&
			      !memcmp(b + 80, sq.b + 80, sq.len - 80) &&
			      (c->v3 || !memcmp(b + 72, sq.b + 72, 8)),
			      "%s: %s: %s changed the file", c->name, kinds[kind],
			      op_name[ops[k]]);
		if (c->v3)
			ck_assert(get64(b + 72) & INCOMPAT_CORRUPT);
		after = qemu_check(l.work);
		ck_assert_msg(after.ok && after.corruptions <= before.corruptions,
			      "%s: %s: qemu-img check: %ld corruptions, "
			      "before the request %ld", c->name, kinds[kind],
			      after.corruptions, before.corruptions);
		ck_assert_int_eq(disk_open(l.work, &ro, &d, why, sizeof(why)), 0);
		for (unsigned i = 0; i < l.n; i++) {
			if (l.gs[i] == g)
				continue;
			ck_assert_int_eq(disk_pread(d, l.gs[i] * cs, l.buf, cs), 0);
			ck_assert_msg(!memcmp(l.buf, l.data + i * cs, cs),
				      "%s: %s: after %s, guest cluster %llu "
				      "reads wrong", c->name, kinds[kind], op_name[ops[k]],
				      (unsigned long long)l.gs[i]);
		}
		disk_close(d);
		free(b);
		free(sq.b);
	}
	unlink(side);
	free(q.b);
	legit_free(&l);
}
END_TEST

/* A clean image of each configuration: every kind of cluster written,
 * discarded and zeroed, whole and in part, with and without unmap: all
 * succeed, read back right, and qemu-img check finds no error and no
 * leak. */
START_TEST(test_clean_image_every_request_everywhere_succeeds_qemu_img_check_clean)
{
	struct legit l;
	struct disk *d;

	legit_open(&l, (unsigned)_i);
	d = legit_disk(&l, _i % 2 ? DISK_AIO_THREADS : DISK_AIO_AUTO);
	legit_verify(&l, d, "fresh image");
	for (unsigned round = 0; round < 2; round++) {
		for (unsigned i = 0; i < l.n; i++)
			legit_op(&l, d, i, (enum op)((i + round * 3) % NOPS),
				 round * 100000 + i);
		legit_verify(&l, d, "after a round of requests");
	}
	legit_close_and_check(&l, d);
	legit_free(&l);
}
END_TEST

/* Compressed clusters that share host clusters (and straddle two),
 * overwritten, discarded or zeroed one at a time: after each the others
 * still read right; qemu-img check is clean at the end. */
START_TEST(test_packed_compressed_clusters_rewritten_one_by_one_others_intact)
{
	static const enum op ops[] = { OP_W_PART, OP_W_FULL, OP_D_FULL,
		OP_Z_FULL_UNMAP, OP_Z_PART_KEEP, OP_Z_FULL_KEEP };
	struct legit l;
	struct disk *d;
	unsigned k = 0;

	legit_open(&l, (unsigned)_i);
	d = legit_disk(&l, DISK_AIO_AUTO);
	for (unsigned i = 0; i < l.n; i++) {
		enum gk g = gkind(l.c, l.gs[i]);

		if (g != GK_C && g != GK_CB)
			continue;
		legit_op(&l, d, i, ops[k % 6], 7000 + i);
		k++;
		legit_verify(&l, d, "after rewriting a compressed cluster");
	}
	ck_assert_uint_ge(k, 6);
	legit_close_and_check(&l, d);
	legit_free(&l);
}
END_TEST

/* A corrupt entry elsewhere does not fail clean requests before it is
 * met; once met (-EIO) the image is marked corrupt: every write, discard
 * and write-zeroes fails with -EIO, reads go on (and show the writes
 * done before); v3: a writable reopen is refused, a read-only one works;
 * nothing but the CORRUPT bit changed after the failure. */
START_TEST(test_after_corrupt_failure_every_change_fails_eio_reads_continue)
{
	const struct config *c = &configs[_i];
	struct legit l;
	struct qimg q;
	struct disk *d;
	struct disk_options ro = { .format = DISK_FORMAT_AUTO, .read_only = true,
				   .aio = DISK_AIO_THREADS };
	uint64_t cs, before_len, len;
	uint8_t *before, *after;
	char why[256];
	int err;

	legit_open(&l, (unsigned)_i);
	cs = l.t.cs;
	q.b = slurp(l.work, &q.len);
	qimg_parse(&q);
	/* G_NORMAL's entry points at the refcount block. */
	put64(q.b + l2e_pos(&q, G_NORMAL), rte(&q, 0) | OFLAG_COPIED);
	spit(l.work, q.b, q.len);
	d = legit_disk(&l, DISK_AIO_AUTO);
	/* (Model index == guest cluster below 24.) */
	legit_op(&l, d, G_CLEAN, OP_W_FULL, 1);
	legit_op(&l, d, G_UNALLOC, OP_W_PART, 2);
	legit_op(&l, d, G_CLEAN2, OP_D_FULL, 3);
	legit_op(&l, d, G_CB, OP_Z_FULL_UNMAP, 4);
	ck_assert_int_eq(disk_flush(d), 0);
	before = slurp(l.work, &before_len);
	rnd(l.buf, cs, 5);
	ck_assert_int_eq(request(d, cs, OP_W_PART, G_NORMAL, l.buf), -EIO);
	for (enum op op = OP_W_FULL; op < NOPS; op++) {
		err = request(d, cs, op, G_CLEAN, l.buf);
		ck_assert_msg(err == -EIO, "%s: %s after the failure: %d",
			      c->name, op_name[op], err);
	}
	ck_assert_int_eq(request(d, cs, OP_W_FULL, G_UNALLOC2, l.buf), -EIO);
	ck_assert_int_eq(request(d, cs, OP_READ, G_CLEAN, l.buf), 0);
	ck_assert_mem_eq(l.buf, l.data + G_CLEAN * cs, cs);
	disk_close(d);
	after = slurp(l.work, &len);
	ck_assert_uint_ge(len, before_len);
	ck_assert_mem_eq(after, before, 72);
	ck_assert_mem_eq(after + 80, before + 80, before_len - 80);
	if (c->v3) {
		ck_assert(get64(after + 72) & INCOMPAT_CORRUPT);
		ck_assert_int_ne(disk_open(l.work, &(struct disk_options){
					   .format = DISK_FORMAT_AUTO },
					   &d, why, sizeof(why)), 0);
		ck_assert_ptr_nonnull(strstr(why, "marked corrupt"));
	} else {
		ck_assert_mem_eq(after + 72, before + 72, 8);
	}
	ck_assert_int_eq(disk_open(l.work, &ro, &d, why, sizeof(why)), 0);
	for (unsigned i = 0; i < l.n; i++) {
		if (l.gs[i] == G_NORMAL)
			continue;
		ck_assert_int_eq(request(d, cs, OP_READ, l.gs[i], l.buf), 0);
		ck_assert_msg(!memcmp(l.buf, l.data + i * cs, cs),
			      "%s: guest cluster %llu reads wrong", c->name,
			      (unsigned long long)l.gs[i]);
	}
	disk_close(d);
	free(before);
	free(after);
	free(q.b);
	legit_free(&l);
}
END_TEST

/* A COPIED entry whose cluster has refcount 2 (two entries share it): a
 * write must copy, not write in place -- the other entry still reads the
 * old data -- and qemu-img check finds no corruption after both are
 * rewritten. */
START_TEST(test_copied_entry_with_refcount_2_is_copied_on_write_not_in_place)
{
	const struct config *c = &configs[_i];
	struct legit l;
	struct qimg q;
	struct disk *d;
	struct qcheck qc;
	uint64_t cs, h;

	legit_open(&l, (unsigned)_i);
	cs = l.t.cs;
	q.b = slurp(l.work, &q.len);
	qimg_parse(&q);
	/* G_CLEAN now shares G_CLEAN2's cluster, COPIED (wrongly); its own
	 * cluster leaks. */
	h = l2e(&q, G_CLEAN2) & OFF_MASK;
	put64(q.b + l2e_pos(&q, G_CLEAN), h | OFLAG_COPIED);
	rc_set(&q, h / cs, 2);
	spit(l.work, q.b, q.len);
	memcpy(l.data + G_CLEAN * cs, l.data + G_CLEAN2 * cs, cs);
	for (int aio = 0; aio < 2; aio++) {
		d = legit_disk(&l, aio ? DISK_AIO_THREADS : DISK_AIO_AUTO);
		/* Warm the L2 cache (the io_uring path). */
		legit_verify(&l, d, "before");
		if (!aio)
			legit_op(&l, d, G_CLEAN2, OP_W_PART, 11);
		else
			legit_op(&l, d, G_CLEAN, OP_W_FULL, 12);
		legit_verify(&l, d, "after a write into the shared cluster");
		ck_assert_int_eq(disk_close(d), 0);
	}
	qc = qemu_check(l.work);
	ck_assert_msg(qc.ok && qc.corruptions == 0 && qc.errors == 0,
		      "%s: qemu-img check: %ld corruptions, %ld errors",
		      c->name, qc.corruptions, qc.errors);
	free(q.b);
	legit_free(&l);
}
END_TEST

static Suite *qcow2_integrity_suite(void)
{
	Suite *s = suite_create("qcow2_integrity");
	TCase *bad = tcase_create("corrupt");
	TCase *good = tcase_create("legitimate");

	build_rows();
	tcase_set_timeout(bad, 120);
	tcase_set_timeout(good, 120);
	tcase_add_loop_test(bad, test_corrupt_l2_entry_fails_request_eio_changes_nothing,
			    0, nl2rows);
	tcase_add_loop_test(bad, test_corrupt_l1_entry_fails_request_eio_changes_nothing,
			    0, nl1rows);
	tcase_add_loop_test(bad,
		test_corrupt_refcount_table_entry_fails_request_eio_changes_nothing,
		0, nrtrows);
	tcase_add_loop_test(bad,
		test_entry_beyond_eof_stays_corrupt_when_the_file_grows_over_it,
		0, 3 * MATRIX_CONFIGS);
	tcase_add_loop_test(good,
		test_clean_image_every_request_everywhere_succeeds_qemu_img_check_clean,
		0, ALL_CONFIGS);
	tcase_add_loop_test(good,
		test_packed_compressed_clusters_rewritten_one_by_one_others_intact,
		0, ALL_CONFIGS);
	tcase_add_loop_test(good,
		test_after_corrupt_failure_every_change_fails_eio_reads_continue,
		0, MATRIX_CONFIGS);
	tcase_add_loop_test(good,
		test_copied_entry_with_refcount_2_is_copied_on_write_not_in_place,
		0, MATRIX_CONFIGS);
	suite_add_tcase(s, good);
	suite_add_tcase(s, bad);
	return s;
}

UNIT_MAIN_SCRATCH(qcow2_integrity_suite, "kite-qcow2-integrity")
