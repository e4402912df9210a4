/* libFuzzer target: open an untrusted image (qcow2, or raw when the magic
 * says otherwise), run guest requests on it and check after each input
 * that no request changed a byte outside its own data (issue 14).
 *
 * Input, little-endian:
 *   u32 file size      the image file's length (at most FILE_MAX)
 *   chunks             { u32 offset; u16 len; u8 data[len] } written on
 *                      an otherwise zero (sparse) file, ended by a chunk
 *                      of len 0 or the end of the input
 *   ops                { u8 kind; u8 arg; u16 sectors; u32 sector } to
 *                      the end (see run_op)
 * The sparse form keeps a 64 KiB-cluster image, mostly zeros, a few KB;
 * tests/fuzz/seedgen.c turns qemu-img images into it.
 *
 * The image lives in a memfd opened through /proc/self/fd, with
 * backing=off so that a fuzzed image never reaches another host file, and
 * aio=threads (no io_uring ring set up per open: the synchronous helpers
 * bypass the engine anyway).  Requests go one at a time, so the outcome
 * does not depend on thread timing.
 *
 * Invariants (a break is __builtin_trap() with a message):
 * - a read that succeeds returns what the guest last wrote; a discarded
 *   sector reads as its old data or zeros; a sector whose request failed
 *   is unknown until read, and never changes after that without a request;
 * - after close, a read-only reopen still finds the same format and the
 *   same data (no request made the image unreadable or lost data);
 * - the header cluster is unchanged apart from what Kite may write there
 *   (refcount table offset and size, incompatible and autoclear bits);
 * - once the image is marked corrupt on disk (v3), writes fail;
 * - an image whose refcounts cover every reference (consistent()) still
 *   does after the run, and no request on it fails with EIO;
 * - a failed open says why.
 * Memory is bounded by libFuzzer's -rss_limit_mb. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "vmm/disk/disk.h"

#define FILE_MAX    (16u << 20)
#define DISK_MAX    (2u << 20)   /* larger virtual disks are skipped */
#define REQ_MAX     2048         /* sectors per request (1 MiB) */
#define OPS_MAX     64
#define READ_CHUNK  (64u << 10)
#define HDR_MAX     (64u << 10)  /* bytes of the header cluster compared */

#define QCOW2_MAGIC      0x514649fbu
#define INCOMPAT_CORRUPT (1ull << 1)

/* The checker's own loops over every byte: coverage feedback there only
 * slows the run (the comparisons are traced) and tells libFuzzer nothing
 * about Kite.  Not inlined: the instrumentation runs after inlining, and
 * would trace the loop in its caller. */
#ifdef __clang__
#define NO_COVERAGE __attribute__((no_sanitize("coverage"), noinline))
#else
#define NO_COVERAGE
#endif

enum sector_state {
	S_UNKNOWN,      /* a request on it failed: any content, then fixed */
	S_KNOWN,        /* model[] holds it */
	S_OLD_OR_ZERO,  /* discarded: model[] (the old data) or zeros */
};

enum op_kind {
	OP_READ,
	OP_WRITE,
	OP_DISCARD,
	OP_ZEROES,
	OP_ZEROES_UNMAP,
	OP_FLUSH,
	OP_CHECK_ALL,   /* read the whole disk against the model */
	OP_REOPEN,      /* close and open again read-write (else read-only) */
	OP_KINDS,
};

static int memfd = -1;
static char path[64];
static uint8_t *model, *state, *buf, *wbuf, *hdr0, *hdr1;
static uint64_t size, nsect, gen;
static bool is_qcow2, version3, corrupt_seen;
/* The image passed consistent() before the run (see there). */
static bool good;
static unsigned cluster_size;
static bool verbose;  /* KITE_FUZZ_VERBOSE=1: say what each input did */

static void __attribute__((noreturn, format(printf, 1, 2)))
violation(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_qcow2: invariant broken: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	__builtin_trap();
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

static uint64_t be64_at(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static NO_COVERAGE bool is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Compare what a successful read of [off, off + len) returned with the
 * model, and learn what the model did not know. */
static NO_COVERAGE void compare(uint64_t off, const uint8_t *got,
				uint64_t len, const char *when)
{
	for (uint64_t s = off / 512; s < (off + len) / 512; s++) {
		const uint8_t *g = got + (s * 512 - off);
		uint8_t *m = model + s * 512;

		switch (state[s]) {
		case S_KNOWN:
			if (memcmp(g, m, 512))
				violation("%s: sector %llu is not what the "
					  "guest last wrote there",
					  when, (unsigned long long)s);
			break;
		case S_OLD_OR_ZERO:
			if (memcmp(g, m, 512) && !is_zero(g, 512))
				violation("%s: discarded sector %llu reads "
					  "as neither its old data nor zeros",
					  when, (unsigned long long)s);
			/* fall through: from now on it stays what it is */
		case S_UNKNOWN:
			memcpy(m, g, 512);
			state[s] = S_KNOWN;
			break;
		}
	}
}

static void set_state(uint64_t off, uint64_t len, enum sector_state st)
{
	memset(state + off / 512, st, len / 512);
}

/* Read [off, off + len) in pieces and check what reads.  A read may
 * fail (a corrupt entry): then that piece is not checked. */
static void check_range(struct disk *d, uint64_t off, uint64_t len,
			const char *when)
{
	while (len) {
		uint64_t n = len < READ_CHUNK ? len : READ_CHUNK;

		int err = disk_pread(d, off, buf, n);

		if (err == 0)
			compare(off, buf, n, when);
		else if (good)
			violation("%s: reading %llu bytes at %llu failed (%s) "
				  "on an image that checks clean", when,
				  (unsigned long long)n,
				  (unsigned long long)off, strerror(-err));
		off += n;
		len -= n;
	}
}

/* Guest data that says where it was meant to go: each 8-byte word holds
 * its disk offset and the write's number, so data landing in the wrong
 * place, or an old write resurfacing, never matches the model. */
static NO_COVERAGE void fill(uint64_t off, uint64_t len)
{
	gen++;
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = (off + i) ^ (gen << 40) ^ 0xa5a5000000000000ull;

		memcpy(wbuf + i, &v, 8);
	}
}

/* Up to three iovecs over |p| split at byte offsets from |arg|: guest
 * buffers need not be sector aligned. */
static int split_iov(uint8_t *p, uint64_t len, uint8_t arg,
		     struct iovec *iov)
{
	uint64_t a, b;

	if (!(arg & 1) || len < 2) {
		iov[0] = (struct iovec){ p, len };
		return 1;
	}
	a = 1 + ((uint64_t)(arg >> 1) * 37) % (len - 1);
	b = a + ((uint64_t)(arg >> 4) * 101) % (len - a);
	if (b == a) {
		iov[0] = (struct iovec){ p, a };
		iov[1] = (struct iovec){ p + a, len - a };
		return 2;
	}
	iov[0] = (struct iovec){ p, a };
	iov[1] = (struct iovec){ p + a, b - a };
	iov[2] = (struct iovec){ p + b, len - b };
	return 3;
}

/* Does the file now carry the corrupt bit (v3 incompatible features)? */
static bool marked_corrupt(void)
{
	uint8_t be[8];

	if (!is_qcow2 || !version3 || pread(memfd, be, 8, 72) != 8)
		return false;
	return be64_at(be) & INCOMPAT_CORRUPT;
}

/* ---- a small qemu-img check: references against refcounts ----------------
 * Every cluster the header, L1, L2 and refcount tables name must have a
 * refcount at least as large as the number of references to it (a cluster
 * named twice with refcount 1 is data over metadata, or shared data;
 * leaked clusters, refcount above references, are allowed).  An image
 * that passes before the run must pass after it, and on such an image no
 * request may fail with EIO: Kite may refuse a corrupt image, not a good
 * one. */
struct check {
	const uint8_t *f;
	uint64_t len, cs, nclusters;
	unsigned cb;
	uint32_t *refs;
	char *why;
	size_t why_len;
};

static uint64_t rd_be(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

static bool __attribute__((format(printf, 2, 3)))
check_fail(struct check *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, c->why_len, fmt, ap);
	va_end(ap);
	return false;
}

/* One reference to each cluster of [off, off + len).  A table is read,
 * so it must lie in the file; data may run into its last cluster. */
static bool check_ref(struct check *c, uint64_t off, uint64_t len,
		      bool table, const char *what)
{
	uint64_t end = table ? c->len : c->nclusters * c->cs;

	if (len == 0 || off % c->cs || off >= c->len || len > end - off)
		return check_fail(c, "%s at 0x%llx: misaligned or beyond the "
				  "file", what, (unsigned long long)off);
	for (uint64_t i = off / c->cs; i <= (off + len - 1) / c->cs; i++)
		c->refs[i]++;
	return true;
}

/* Refcount of cluster |i| (0 when no refcount block covers it). */
static uint64_t check_refcount(struct check *c, const uint64_t *rt,
			       uint64_t rt_entries, unsigned order,
			       uint64_t i)
{
	unsigned bits = 1u << order;
	uint64_t per_block = c->cs * 8 / bits, b = i / per_block;
	uint64_t k = i % per_block;
	const uint8_t *blk;

	if (b >= rt_entries || !rt[b])
		return 0;
	blk = c->f + rt[b];
	if (bits < 8)   /* QEMU: low bits first within a byte */
		return (blk[k * bits / 8] >> (k * bits % 8)) &
		       ((1u << bits) - 1);
	return rd_be(blk + k * (bits / 8), bits / 8);
}

/* Compressed data must inflate to one cluster, and its descriptor claim
 * no cluster past the one where the stream ends (what Kite checks before
 * it frees one; qemu-img writes them so). */
static bool check_compressed(struct check *c, uint64_t off, uint64_t nb)
{
	uint64_t csize = nb * 512 - off % 512, end;
	uint8_t *out = malloc(c->cs);
	z_stream zs;
	int zr;

	if (!out)
		abort();
	if (csize > c->len - off)
		csize = c->len - off;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -12) != Z_OK)
		abort();
	zs.next_in = (uint8_t *)c->f + off;
	zs.avail_in = (uInt)csize;
	zs.next_out = out;
	zs.avail_out = (uInt)c->cs;
	zr = inflate(&zs, Z_FINISH);
	end = (off + zs.total_in + 511) & ~511ull;
	inflateEnd(&zs);
	free(out);
	if (zr != Z_STREAM_END || zs.avail_out != 0)
		return check_fail(c, "compressed data at 0x%llx does not "
				  "inflate to one cluster",
				  (unsigned long long)off);
	if ((end - 1) / c->cs != ((off & ~511ull) + nb * 512 - 1) / c->cs)
		return check_fail(c, "compressed data at 0x%llx claims more "
				  "clusters than it uses",
				  (unsigned long long)off);
	return true;
}

static NO_COVERAGE bool consistent(const uint8_t *f, uint64_t len, char *why,
				   size_t why_len)
{
	struct check c = { .f = f, .len = len, .why = why, .why_len = why_len };
	unsigned version, order, csize_shift;
	uint64_t l1_off, rt_off, rt_entries, *rt = NULL, incompat = 0;
	uint32_t l1_size, rt_clusters;
	bool ok = false;

	if (len < 104 || rd_be(f, 4) != QCOW2_MAGIC)
		return check_fail(&c, "not a qcow2 image");
	version = (unsigned)rd_be(f + 4, 4);
	c.cb = (unsigned)rd_be(f + 20, 4);
	l1_size = (uint32_t)rd_be(f + 36, 4);
	l1_off = rd_be(f + 40, 8);
	rt_off = rd_be(f + 48, 8);
	rt_clusters = (uint32_t)rd_be(f + 56, 4);
	order = 4;
	if (version == 3) {
		incompat = rd_be(f + 72, 8);
		order = (unsigned)rd_be(f + 96, 4);
	}
	if ((version != 2 && version != 3) || c.cb < 9 || c.cb > 21 ||
	    order > 6 || rd_be(f + 60, 4) || (incompat & ~1ull) ||
	    rd_be(f + 8, 8) || rd_be(f + 32, 4))
		return check_fail(&c, "a header this check does not cover "
				  "(version, snapshots, features, backing "
				  "file, encryption)");
	c.cs = 1ull << c.cb;
	c.nclusters = (len + c.cs - 1) / c.cs;
	csize_shift = 62 - (c.cb - 8);
	if ((uint64_t)rt_clusters * c.cs > len ||
	    (uint64_t)l1_size * 8 > len)
		return check_fail(&c, "tables larger than the file");
	c.refs = calloc(c.nclusters, sizeof(*c.refs));
	rt_entries = (uint64_t)rt_clusters * c.cs / 8;
	rt = calloc(rt_entries ? rt_entries : 1, 8);
	if (!c.refs || !rt)
		abort();
	if (!check_ref(&c, 0, c.cs, false, "header") ||
	    !check_ref(&c, rt_off, (uint64_t)rt_clusters * c.cs, true,
		       "refcount table") ||
	    (l1_size && !check_ref(&c, l1_off, (uint64_t)l1_size * 8, true,
				   "L1 table")))
		goto out;
	for (uint64_t i = 0; i < rt_entries; i++) {
		uint64_t e = rd_be(f + rt_off + i * 8, 8);

		if (e & 0x1ff) {
			check_fail(&c, "refcount table entry %llu: reserved "
				   "bits", (unsigned long long)i);
			goto out;
		}
		rt[i] = e;
		if (e && !check_ref(&c, e, c.cs, true, "refcount block"))
			goto out;
	}
	for (uint32_t i = 0; i < l1_size; i++) {
		uint64_t e = rd_be(f + l1_off + i * 8ull, 8);
		uint64_t l2 = e & 0x00fffffffffffe00ull;

		if (e & 0x7f000000000001ffull) {
			check_fail(&c, "L1 entry %u: reserved bits", i);
			goto out;
		}
		if (!l2)
			continue;
		if (!check_ref(&c, l2, c.cs, true, "L2 table"))
			goto out;
		for (uint64_t j = 0; j < c.cs / 8; j++) {
			uint64_t e2 = rd_be(f + l2 + j * 8, 8), off;

			if (e2 & (1ull << 62)) {
				uint64_t nb = ((e2 >> csize_shift) &
					       ((1ull << (c.cb - 8)) - 1)) + 1;

				off = e2 & ((1ull << csize_shift) - 1);
				if (!check_ref(&c, off - off % c.cs,
					       (off % c.cs & ~511ull) +
						       nb * 512,
					       false, "compressed data") ||
				    !check_compressed(&c, off, nb))
					goto out;
				continue;
			}
			off = e2 & 0x00fffffffffffe00ull;
			if ((e2 & 0x3f000000000001feull) ||
			    (version == 2 && (e2 & 1))) {
				check_fail(&c, "L2 entry %llu of table 0x%llx: "
					   "reserved bits",
					   (unsigned long long)j,
					   (unsigned long long)l2);
				goto out;
			}
			if (off && !check_ref(&c, off, c.cs, false,
					      "data cluster"))
				goto out;
		}
	}
	for (uint64_t i = 0; i < c.nclusters; i++) {
		uint64_t rc;

		if (!c.refs[i])
			continue;
		rc = check_refcount(&c, rt, rt_entries, order, i);
		if (rc < c.refs[i]) {
			check_fail(&c, "cluster %llu (0x%llx) is named %u "
				   "times, its refcount is %llu",
				   (unsigned long long)i,
				   (unsigned long long)(i * c.cs), c.refs[i],
				   (unsigned long long)rc);
			goto out;
		}
	}
	ok = true;
out:
	free(c.refs);
	free(rt);
	return ok;
}

/* The image file as it is now, in a malloc'd buffer (NULL when it is too
 * large to look at). */
static uint8_t *read_image(uint64_t *len)
{
	struct stat st;
	uint8_t *f;

	if (fstat(memfd, &st) || st.st_size > 64 << 20)
		return NULL;
	f = malloc(st.st_size ? st.st_size : 1);
	if (!f || pread(memfd, f, st.st_size, 0) != st.st_size)
		abort();
	*len = (uint64_t)st.st_size;
	return f;
}

/* ---- guest data in metadata ------------------------------------------------
 * Every 8-byte word a guest write stores says where it was meant to go and
 * which write it came from (fill()), so it can be recognised anywhere in
 * the file.  No such word may appear, changed, in a cluster that was
 * metadata when the image was opened: the header, L1 table, refcount
 * table and blocks, and L2 tables, as the file named them (a corrupt
 * entry may name them as data too; Kite must then refuse the write). */
enum meta_kind { M_NONE, M_HEADER, M_L1, M_RT, M_REFBLOCK, M_L2 };

static const char *const meta_names[] = {
	"", "header", "L1 table", "refcount table", "refcount block",
	"L2 table",
};

static void mark(uint8_t *kind, uint64_t n, uint64_t cs, uint64_t off,
		 uint64_t len, enum meta_kind k)
{
	for (uint64_t c = off / cs; len && c <= (off + len - 1) / cs && c < n;
	     c++)
		kind[c] = (uint8_t)k;
}

static NO_COVERAGE void check_metadata_kept(const uint8_t *a, uint64_t alen,
					    const uint8_t *b, uint64_t blen)
{
	unsigned cb = (unsigned)rd_be(a + 20, 4) & 31; /* 9..21: opened */
	uint64_t cs = 1ull << cb, n = (alen + cs - 1) / cs;
	uint64_t l1_off = rd_be(a + 40, 8), rt_off = rd_be(a + 48, 8);
	uint64_t l1_len = rd_be(a + 36, 4) * 8ull;
	uint64_t rt_len = rd_be(a + 56, 4) * cs, len = alen < blen ? alen : blen;
	uint8_t *kind = calloc(n, 1);
	bool rt_ok = !(rt_off % cs) && rt_off <= alen &&
		     rt_len <= alen - rt_off;

	if (!kind)
		abort();
	mark(kind, n, cs, 0, 1, M_HEADER);
	if (!(l1_off % cs) && l1_off <= alen && l1_len <= alen - l1_off) {
		mark(kind, n, cs, l1_off, l1_len, M_L1);
		for (uint64_t i = 0; i < l1_len; i += 8) {
			uint64_t o = rd_be(a + l1_off + i, 8) &
				     0x00fffffffffffe00ull;

			if (o && !(o % cs) && o < alen)
				mark(kind, n, cs, o, 1, M_L2);
		}
	}
	if (rt_ok) {
		mark(kind, n, cs, rt_off, rt_len, M_RT);
		for (uint64_t i = 0; i < rt_len; i += 8) {
			uint64_t o = rd_be(a + rt_off + i, 8) & ~0x1ffull;

			if (o && !(o % cs) && o < alen)
				mark(kind, n, cs, o, 1, M_REFBLOCK);
		}
	}
	/* Kite sets an L1 or refcount table entry only where it named
	 * nothing (a new L2 table or refcount block); a grown refcount
	 * table keeps every entry at its index.  An entry that named a
	 * table and changed was written over. */
	if (!(l1_off % cs) && l1_off <= len && l1_len <= len - l1_off)
		for (uint64_t i = 0; i < l1_len; i += 8)
			if ((rd_be(a + l1_off + i, 8) &
			     0x00fffffffffffe00ull) &&
			    memcmp(a + l1_off + i, b + l1_off + i, 8))
				violation("L1 entry %llu changed from 0x%llx "
					  "to 0x%llx",
					  (unsigned long long)(i / 8),
					  (unsigned long long)rd_be(a + l1_off +
								    i, 8),
					  (unsigned long long)rd_be(b + l1_off +
								    i, 8));
	if (rt_ok && blen >= 60) {
		uint64_t nrt = rd_be(b + 48, 8), nlen = rd_be(b + 56, 4) * cs;

		for (uint64_t i = 0; i < rt_len && i < nlen; i += 8) {
			uint64_t old = rd_be(a + rt_off + i, 8);

			/* (reserved bits may go when the table moves) */
			if ((old & ~0x1ffull) && nrt <= blen &&
			    i + 8 <= blen - nrt &&
			    (rd_be(b + nrt + i, 8) & ~0x1ffull) !=
				    (old & ~0x1ffull))
				violation("refcount table entry %llu changed "
					  "from 0x%llx to 0x%llx",
					  (unsigned long long)(i / 8),
					  (unsigned long long)old,
					  (unsigned long long)rd_be(b + nrt + i,
								    8));
		}
	}
	for (uint64_t at = 0; at + 8 <= len; at += 8) {
		uint64_t w, g;

		if (!kind[at / cs] || !memcmp(a + at, b + at, 8))
			continue;
		memcpy(&w, b + at, 8);
		w ^= 0xa5a5000000000000ull;
		g = w >> 40;
		w &= (1ull << 40) - 1;
		if (g >= 1 && g <= gen && w < size && !(w % 8))
			violation("guest data (write %llu, disk offset %llu) "
				  "in the %s at file offset 0x%llx",
				  (unsigned long long)g, (unsigned long long)w,
				  meta_names[kind[at / cs]],
				  (unsigned long long)at);
	}
	free(kind);
}

static struct disk *open_image(bool read_only, char *why, size_t why_len)
{
	struct disk_options o = {
		.format = DISK_FORMAT_AUTO,
		.aio = DISK_AIO_THREADS,
		.read_only = read_only,
		.no_backing = true,
	};
	struct disk *d = NULL;
	int err = disk_open(path, &o, &d, why, why_len);

	if (err && !why[0])
		violation("open failed (%s) without a reason", strerror(-err));
	if (verbose)
		fprintf(stderr, "fuzz_qcow2: open%s: %s\n",
			read_only ? " read-only" : "", err ? why : "ok");
	if (err > 0)
		violation("open returned %d", err);
	return err ? NULL : d;
}

static struct disk *reopen(struct disk *d, bool want_rw)
{
	char why[512];
	struct disk *n;

	disk_close(d);
	n = want_rw ? open_image(false, why, sizeof(why)) : NULL;
	if (!n)
		n = open_image(true, why, sizeof(why));
	if (!n)
		violation("the image no longer opens after guest requests: %s",
			  why);
	if (strcmp(disk_format_name(n), is_qcow2 ? "qcow2" : "raw"))
		violation("the image now opens as %s", disk_format_name(n));
	if (disk_size(n) != size)
		violation("the virtual size changed from %llu to %llu",
			  (unsigned long long)size,
			  (unsigned long long)disk_size(n));
	return n;
}

static struct disk *run_op(struct disk *d, const uint8_t *p, unsigned i)
{
	static const char *const names[OP_KINDS] = {
		"read", "write", "discard", "write-zeroes",
		"write-zeroes (unmap)", "flush", "check", "reopen",
	};
	enum op_kind kind = (enum op_kind)(p[0] % OP_KINDS);
	uint8_t arg = p[1];
	uint64_t off = (uint64_t)(get32(p + 4) % nsect) * 512;
	uint64_t len = (uint64_t)(get16(p + 2) % (REQ_MAX + 1)) * 512;
	bool corrupt_before = corrupt_seen;
	struct iovec iov[3];
	char when[96];
	int n, err = 0;

	if (len > size - off)
		len = (nsect - off / 512) * 512;
	snprintf(when, sizeof(when), "op %u (%s of %llu bytes at %llu)", i,
		 names[kind], (unsigned long long)len,
		 (unsigned long long)off);
	switch (kind) {
	case OP_READ:
		n = split_iov(buf, len, arg, iov);
		if (disk_preadv(d, off, iov, n) == 0)
			compare(off, buf, len, when);
		return d;
	case OP_WRITE:
		fill(off, len);
		n = split_iov(wbuf, len, arg, iov);
		err = disk_pwritev(d, off, iov, n);
		if (!err) {
			memcpy(model + off, wbuf, len);
			set_state(off, len, S_KNOWN);
		}
		break;
	case OP_DISCARD:
		err = disk_discard(d, off, len);
		/* Advisory either way; a sector already unknown stays so. */
		for (uint64_t s = off / 512; s < (off + len) / 512; s++)
			if (state[s] == S_KNOWN)
				state[s] = S_OLD_OR_ZERO;
		break;
	case OP_ZEROES:
	case OP_ZEROES_UNMAP:
		err = disk_write_zeroes(d, off, len, kind == OP_ZEROES_UNMAP);
		if (!err) {
			memset(model + off, 0, len);
			set_state(off, len, S_KNOWN);
		}
		break;
	case OP_FLUSH:
		disk_flush(d);
		return d;
	case OP_CHECK_ALL:
		check_range(d, 0, nsect * 512, when);
		return d;
	case OP_REOPEN:
		d = reopen(d, true);
		check_range(d, 0, nsect * 512, when);
		return d;
	default:
		return d;
	}
	if (err > 0)
		violation("%s returned %d", when, err);
	if (verbose)
		fprintf(stderr, "fuzz_qcow2: %s: %s\n", when,
			err ? strerror(-err) : "ok");
	if (err == -EIO && good)
		violation("%s failed (EIO) on an image that checks clean",
			  when);
	if (err) {
		if (kind != OP_DISCARD)
			set_state(off, len, S_UNKNOWN);
		if (!corrupt_seen)
			corrupt_seen = marked_corrupt();
	} else if (corrupt_before && kind != OP_DISCARD && len) {
		violation("%s succeeded on an image marked corrupt", when);
	}
	/* Read back what the request covered. */
	check_range(d, off, len, when);
	return d;
}

/* The header cluster after the run: only the refcount table location
 * (bytes 48..59, moved when the table grows) and, in v3, the
 * incompatible and autoclear features (72..79, 88..95) may change. */
static void check_header(unsigned len)
{
	if (pread(memfd, hdr1, len, 0) != (ssize_t)len)
		violation("the image file shrank below its header");
	for (unsigned i = 0; i < len; i++) {
		if (hdr0[i] == hdr1[i] || (i >= 48 && i < 60) ||
		    (version3 && ((i >= 72 && i < 80) || (i >= 88 && i < 96))))
			continue;
		violation("header byte %u changed from 0x%02x to 0x%02x", i,
			  hdr0[i], hdr1[i]);
	}
}

static void setup(void)
{
	memfd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("fuzz_qcow2: memfd_create");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	verbose = getenv("KITE_FUZZ_VERBOSE") != NULL;
	model = malloc(DISK_MAX);
	state = malloc(DISK_MAX / 512);
	buf = malloc(REQ_MAX * 512 > READ_CHUNK ? REQ_MAX * 512 : READ_CHUNK);
	wbuf = malloc(REQ_MAX * 512);
	hdr0 = malloc(HDR_MAX);
	hdr1 = malloc(HDR_MAX);
	if (!model || !state || !buf || !wbuf || !hdr0 || !hdr1)
		abort();
}

/* KITE_FUZZ_SAVE=PATH: keep the image as it is now in PATH|suffix (for
 * qemu-img check on a reproducer).  Not while fuzzing: one input each. */
static void save_image(const char *suffix)
{
	const char *base = getenv("KITE_FUZZ_SAVE");
	char name[4096];
	uint8_t chunk[65536];
	ssize_t n;
	off_t at = 0;
	int fd;

	if (!base)
		return;
	snprintf(name, sizeof(name), "%s%s", base, suffix);
	fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	while ((n = pread(memfd, chunk, sizeof(chunk), at)) > 0) {
		if (write(fd, chunk, (size_t)n) != n)
			break;
		at += n;
	}
	close(fd);
}

/* Lay the image out on the memfd; returns where the ops start. */
static size_t write_image(const uint8_t *data, size_t len)
{
	size_t pos = 4;
	uint32_t file_size;

	if (len < 4)
		return 0;
	file_size = get32(data) % (FILE_MAX + 1);
	if (ftruncate(memfd, 0) || ftruncate(memfd, file_size))
		abort();
	while (pos + 6 <= len) {
		uint32_t off = get32(data + pos);
		uint16_t n = get16(data + pos + 4);

		pos += 6;
		if (n == 0)
			break;
		if (n > len - pos)
			n = (uint16_t)(len - pos);
		if (off < file_size) {
			size_t w = file_size - off < n ? file_size - off : n;

			if (pwrite(memfd, data + pos, w, off) != (ssize_t)w)
				abort();
		}
		pos += n;
	}
	return pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct disk *d;
	char why[512];
	size_t pos;
	unsigned hdr_len = 0;
	uint8_t *orig, *after;
	uint64_t orig_len = 0, after_len = 0;

	if (memfd < 0)
		setup();
	pos = write_image(data, len);
	if (!pos)
		return 0;
	save_image(".before");

	d = open_image(false, why, sizeof(why));
	if (!d)
		d = open_image(true, why, sizeof(why));
	if (!d)
		return 0;
	size = disk_size(d);
	nsect = size / 512;
	if (size > DISK_MAX || nsect == 0) {
		disk_close(d);
		return 0;
	}
	is_qcow2 = !strcmp(disk_format_name(d), "qcow2");
	version3 = false;
	cluster_size = 0;
	gen = 0;
	if (is_qcow2) {
		uint8_t h[24];

		if (pread(memfd, h, sizeof(h), 0) != sizeof(h))
			violation("a qcow2 image without a header opened");
		version3 = be64_at(h + 4) >> 32 == 3;
		cluster_size = 1u << (be64_at(h + 16) & 31);
		hdr_len = cluster_size < HDR_MAX ? cluster_size : HDR_MAX;
		if (pread(memfd, hdr0, hdr_len, 0) != (ssize_t)hdr_len)
			hdr_len = 0;
	}
	corrupt_seen = marked_corrupt();
	/* The file as opened (Kite's open writes only the dirty bit). */
	orig = read_image(&orig_len);
	good = orig && consistent(orig, orig_len, why, sizeof(why));
	if (verbose)
		fprintf(stderr, "fuzz_qcow2: check: %s\n",
			good ? "clean" : orig ? why : "file too large");

	/* What the disk holds before any request. */
	memset(state, S_UNKNOWN, nsect);
	check_range(d, 0, nsect * 512, "first read");

	for (unsigned i = 0; i < OPS_MAX && pos + 8 <= len; i++, pos += 8)
		d = run_op(d, data + pos, i);

	check_range(d, 0, nsect * 512, "after the requests");
	d = reopen(d, false);
	check_range(d, 0, nsect * 512, "after a reopen");
	disk_close(d);
	save_image("");
	if (hdr_len)
		check_header(hdr_len);
	after = read_image(&after_len);
	if (is_qcow2 && orig && after)
		check_metadata_kept(orig, orig_len, after, after_len);
	if (good && !(after && consistent(after, after_len, why,
					  sizeof(why))))
		violation("the image checked clean before the requests, now: "
			  "%s", after ? why : "too large to check");
	free(orig);
	free(after);
	if (good && marked_corrupt())
		violation("an image that checks clean was marked corrupt");
	return 0;
}
