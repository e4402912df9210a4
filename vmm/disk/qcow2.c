/* qcow2 images (versions 2 and 3), read-write.
 *
 * Format facts (header fields, L1/L2 entry bits, refcount blocks, the
 * compressed cluster descriptor) follow QEMU's docs/interop/qcow2.txt.
 *
 * Scope: L1/L2 tables, refcounts of any order 0..6, cluster allocation,
 * zero clusters (v3), zlib-compressed clusters (read; a write replaces the
 * cluster by a normal one), backing files (raw or qcow2, read through a
 * struct disk), the dirty bit.  Refused at open with a reason: bad magic,
 * versions other than 2/3, encryption, external data files, extended L2
 * entries, non-zlib compression, cluster_bits outside 9..21, tables
 * beyond the end of the file; internal snapshots are read-only.
 *
 * Crash safety.  Metadata is written through (pwrite at once, no
 * write-back cache), in an order that never lets a reference exist
 * without its refcount:
 *   allocate:  refcount += 1  ->  data / new table written  ->  L2 (L1)
 *              entry points at it
 *   free:      L2 entry cleared  ->  refcount -= 1
 * A process killed at any point leaves at worst leaked clusters (refcount
 * without reference), never a corruption, and everything a completed
 * guest flush covered is in the file (the flush is an fdatasync after the
 * writes, which were system calls that had returned).  Freed clusters are
 * never reused while the image is open (allocation only appends), so a
 * data write running outside the metadata lock can never land in a
 * cluster that was meanwhile given to someone else.
 *
 * Concurrency: requests run on the disk's pool threads, except reads and
 * in-place writes whose clusters the cached L2 tables already locate:
 * those go to io_uring from the owner thread (qcow2_submit).  The
 * metadata lock covers lookups, allocation and table updates; reads and
 * in-place writes of allocated clusters do their data I/O without it.
 *
 * cache=none: data and metadata alike go through the one O_DIRECT fd
 * (a second, buffered fd could leave stale pages in the page cache
 * beside direct writes).  What is not aligned to its block (metadata
 * entries, compressed data, unaligned guest buffers) goes through a
 * bounce buffer (disk_fd_rw), a partial block by read-modify-write.
 * That is safe because clusters are at least a block (checked at open),
 * so no block holds both metadata and data; metadata writes happen under
 * the lock, and guest writes into one block are kept apart by disk.c's
 * write guard (guests see 512-byte blocks here whatever the O_DIRECT
 * block, so on a 4 KiB one such writes are common).
 *
 * Integrity.  An image is untrusted input: its tables may point
 * anywhere.  No cluster is written, freed or punched for the guest
 * unless the image's own structures agree that it is that entry's data:
 *   - the metadata map (struct meta_map) knows every cluster the header,
 *     the L1 and refcount tables, the refcount blocks and the L2 tables
 *     occupy.  An L1 or refcount-table entry whose table would land on
 *     other metadata is marked ENTRY_BAD at open and never used;
 *   - an L2 entry (normal, zero with an offset, or every cluster of a
 *     compressed extent) is used only when its clusters lie in the file,
 *     hold no metadata, and -- for clusters this run appended -- were
 *     allocated for that very guest cluster (entry_ok);
 *   - before a write in place the data cluster's refcount must be 1
 *     (more: copy on write instead); before an entry is released every
 *     cluster it names must have a refcount, and a compressed entry's
 *     size field must not claim a cluster its deflate stream does not
 *     reach (release_ok).  All of it is checked before anything changes.
 * A contradiction fails the request with -EIO and marks the image
 * corrupt (corrupt()): the incompatible "corrupt" bit goes into a v3
 * header, as QEMU does, every later write of this run fails, and the
 * next writable open is refused until `qemu-img check -r all` repairs
 * it.  Reads of sound clusters go on. */
#include "vmm/disk/disk_impl.h"
#include "vmm/log.h"

#include <endian.h>
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define QCOW2_MAGIC 0x514649fbu

#define OFLAG_COPIED     (1ull << 63)
#define OFLAG_COMPRESSED (1ull << 62)
#define OFLAG_ZERO       1ull
#define L1E_OFFSET_MASK  0x00fffffffffffe00ull
#define L2E_OFFSET_MASK  0x00fffffffffffe00ull
#define RTE_OFFSET_MASK  0xfffffffffffffe00ull
/* In memory only, in an L1 or refcount-table entry (whose low 9 bits
 * are reserved on disk): the table it names overlaps other metadata, so
 * the entry must not be used (see meta_map_build). */
#define ENTRY_BAD        1ull

#define INCOMPAT_DIRTY       (1ull << 0)
#define INCOMPAT_CORRUPT     (1ull << 1)
#define INCOMPAT_DATA_FILE   (1ull << 2)
#define INCOMPAT_COMPRESSION (1ull << 3)
#define INCOMPAT_EXTL2       (1ull << 4)
#define INCOMPAT_KNOWN (INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION)
#define COMPAT_LAZY_REFCOUNTS (1ull << 0)

#define EXT_END            0x00000000u
#define EXT_BACKING_FORMAT 0xe2792acau
#define EXT_FDE            0x0537be77u
#define EXT_DATA_FILE      0x44415441u

#define HDR_INCOMPAT_OFFSET  72
#define HDR_AUTOCLEAR_OFFSET 88
#define HDR_REFTABLE_OFFSET  48

#define L2_CACHE_SIZE 32
#define RC_CACHE_SIZE 8

enum entry_kind { E_UNALLOCATED, E_ZERO, E_NORMAL, E_COMPRESSED };

/* What occupies a cluster of the image's own structures. */
enum meta_kind {
	META_NONE,
	META_HEADER,
	META_L1,
	META_REFTABLE,
	META_REFBLOCK,
	META_L2,
	META_GONE,      /* was metadata, freed (the old refcount table) */
};

/* Every metadata cluster by index, in an open-addressing hash table
 * (linear probing; a freed one keeps its slot as META_GONE). */
struct meta_map {
	uint64_t *key;      /* cluster index + 1; 0: empty slot */
	uint8_t *kind;
	uint64_t cap, used; /* cap: a power of two, used < cap / 2 */
};

struct table_cache {
	uint64_t offset[L2_CACHE_SIZE];
	uint64_t used[L2_CACHE_SIZE];
	uint8_t *buf[L2_CACHE_SIZE];
	unsigned n;
};

struct qcow2 {
	pthread_mutex_t lock;
	int fd;
	uint32_t dio_block;         /* fd is O_DIRECT in blocks of this; 0: not */
	unsigned version, cluster_bits;
	uint64_t cluster_size, l2_entries;
	uint64_t l1_offset, *l1;
	uint32_t l1_size;
	uint64_t rt_offset, *rt, rt_entries;
	uint32_t rt_clusters;
	unsigned refcount_order, rc_bits;
	uint64_t rc_per_block, rc_max;
	uint64_t incompat, compat, autoclear;
	unsigned csize_shift;
	uint64_t csize_mask, coffset_mask;
	uint64_t next_free;         /* cluster index where allocation appends */
	struct disk *backing;
	bool writable, dirty_set;
	uint64_t clock;
	struct table_cache l2c, rcc;

	/* Integrity (see "Integrity" above).  |corrupt|: a contradiction was
	 * found; writes fail from then on. */
	const char *path;
	bool corrupt;
	struct meta_map meta;
	/* Clusters appended in this run: index - open_end into |owner|,
	 * the guest cluster each was allocated for, + 1 (0: metadata or
	 * freed).  An L2 entry can name such a cluster only if this run
	 * wrote it for that guest cluster. */
	uint64_t open_end;
	uint64_t *owner, owner_cap;
};


static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static void wr64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static int meta_read(struct qcow2 *q, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov = { buf, len };

	return disk_fd_rw(q->fd, q->dio_block, off, &iov, 1, false);
}

static int meta_write(struct qcow2 *q, uint64_t off, const void *buf,
		      uint64_t len)
{
	struct iovec iov = { (void *)buf, len };

	return disk_fd_rw(q->fd, q->dio_block, off, &iov, 1, true);
}

bool qcow2_probe(int fd)
{
	uint8_t *buf;
	bool yes = false;

	/* Aligned, whole-block read: the fd may be O_DIRECT. */
	if (posix_memalign((void **)&buf, 4096, 4096))
		return false;
	if (pread(fd, buf, 4096, 0) >= 4)
		yes = rd32(buf) == QCOW2_MAGIC;
	free(buf);
	return yes;
}

/* ---- table caches (L2 tables, refcount blocks), write-through ---------- */

/* The cached cluster at |offset|, or NULL when it is not in the cache
 * (no I/O, for callers that must not wait). */
static uint8_t *cache_peek(struct qcow2 *q, struct table_cache *c,
			   uint64_t offset)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (c->offset[i] == offset) {
			c->used[i] = ++q->clock;
			return c->buf[i];
		}
	}
	return NULL;
}

/* The cached cluster at |offset|; |fresh|: a new table, start zeroed
 * instead of reading the file.  The pointer is valid until the next
 * cache_get on the same cache. */
static int cache_get(struct qcow2 *q, struct table_cache *c, unsigned size,
		     uint64_t offset, bool fresh, uint8_t **out)
{
	uint8_t *hit = cache_peek(q, c, offset);
	unsigned i, victim = 0;
	int err;

	if (hit) {
		if (fresh)
			memset(hit, 0, q->cluster_size);
		*out = hit;
		return 0;
	}
	if (c->n < size) {
		victim = c->n;
		c->buf[victim] = malloc(q->cluster_size);
		if (!c->buf[victim])
			return -ENOMEM;
		c->n++;
	} else {
		for (i = 1; i < c->n; i++)
			if (c->used[i] < c->used[victim])
				victim = i;
	}
	c->offset[victim] = UINT64_MAX;
	if (fresh)
		memset(c->buf[victim], 0, q->cluster_size);
	else {
		err = meta_read(q, offset, c->buf[victim], q->cluster_size);
		if (err)
			return err;
	}
	c->offset[victim] = offset;
	c->used[victim] = ++q->clock;
	*out = c->buf[victim];
	return 0;
}

static void cache_free(struct table_cache *c)
{
	for (unsigned i = 0; i < c->n; i++)
		free(c->buf[i]);
	c->n = 0;
}

/* ---- the metadata map ----------------------------------------------------- */

static uint64_t meta_slot(const struct meta_map *m, uint64_t cluster)
{
	/* The product's high bits: its low ones follow the key's low bits
	 * alone, and an image can name clusters that share them all. */
	uint64_t i = (cluster * 0x9e3779b97f4a7c15ull) >>
		     (64 - __builtin_ctzll(m->cap));

	while (m->key[i] && m->key[i] != cluster + 1)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static enum meta_kind meta_kind_of(const struct qcow2 *q, uint64_t cluster)
{
	const struct meta_map *m = &q->meta;
	uint64_t i;

	if (!m->cap)
		return META_NONE;
	i = meta_slot(m, cluster);
	if (!m->key[i] || m->kind[i] == META_GONE)
		return META_NONE;
	return (enum meta_kind)m->kind[i];
}

static int meta_grow(struct meta_map *m)
{
	struct meta_map n = { .cap = m->cap ? m->cap * 2 : 64 };

	n.key = calloc(n.cap, sizeof(*n.key));
	n.kind = calloc(n.cap, 1);
	if (!n.key || !n.kind) {
		free(n.key);
		free(n.kind);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < m->cap; i++) {
		if (m->key[i]) {
			uint64_t j = meta_slot(&n, m->key[i] - 1);

			n.key[j] = m->key[i];
			n.kind[j] = m->kind[i];
			n.used++;
		}
	}
	free(m->key);
	free(m->kind);
	*m = n;
	return 0;
}

/* Record |cluster| as metadata of |kind| (META_GONE: no longer). */
static int meta_set(struct qcow2 *q, uint64_t cluster, enum meta_kind kind)
{
	struct meta_map *m = &q->meta;
	uint64_t i;
	int err;

	if ((m->used + 1) * 2 > m->cap) {
		err = meta_grow(m);
		if (err)
			return err;
	}
	i = meta_slot(m, cluster);
	if (!m->key[i]) {
		m->key[i] = cluster + 1;
		m->used++;
	}
	m->kind[i] = (uint8_t)kind;
	return 0;
}

static int meta_set_range(struct qcow2 *q, uint64_t offset, uint64_t len,
			  enum meta_kind kind)
{
	uint64_t first = offset >> q->cluster_bits;
	uint64_t last = (offset + len - 1) >> q->cluster_bits;
	int err = 0;

	for (uint64_t c = first; c <= last && !err; c++)
		err = meta_set(q, c, kind);
	return err;
}

static const char *meta_name(enum meta_kind k)
{
	switch (k) {
	case META_HEADER:
		return "the header";
	case META_L1:
		return "the L1 table";
	case META_REFTABLE:
		return "the refcount table";
	case META_REFBLOCK:
		return "a refcount block";
	case META_L2:
		return "an L2 table";
	default:
		return "metadata";
	}
}

static int write_incompat(struct qcow2 *q);

/* The image contradicts itself: say so once, mark it corrupt (in a
 * writable v3 image, the header's corrupt bit) and refuse every later
 * write.  Always returns -EIO, for the request that found it.  Under
 * the lock (or at open). */
static int corrupt(struct qcow2 *q, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int corrupt(struct qcow2 *q, const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	if (q->corrupt)
		return -EIO;
	q->corrupt = true;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	kite_error("disk '%s': qcow2 image is corrupt: %s; writes to it now "
		   "fail (repair it with 'qemu-img check -r all')",
		   q->path, reason);
	if (q->writable && q->version >= 3) {
		q->incompat |= INCOMPAT_CORRUPT;
		if (write_incompat(q) == 0)
			(void)fdatasync(q->fd);
	}
	return -EIO;
}

/* Clusters appended by this run: who they were allocated for. */
static int owner_set(struct qcow2 *q, uint64_t cluster, uint64_t value)
{
	uint64_t i = cluster - q->open_end;

	if (cluster < q->open_end)
		return 0;
	if (i >= q->owner_cap) {
		uint64_t cap = q->owner_cap ? q->owner_cap : 256;
		uint64_t *n;

		while (cap <= i)
			cap *= 2;
		n = realloc(q->owner, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + q->owner_cap, 0, (cap - q->owner_cap) * sizeof(*n));
		q->owner = n;
		q->owner_cap = cap;
	}
	q->owner[i] = value;
	return 0;
}

/* Can |cluster| hold the data of guest cluster |vaddr|: inside the file
 * (and header), no metadata, and if this run appended it, appended for
 * that guest cluster?  No I/O. */
static bool data_cluster_for(const struct qcow2 *q, uint64_t cluster,
			     uint64_t vaddr)
{
	if (cluster == 0 || cluster >= q->next_free ||
	    meta_kind_of(q, cluster) != META_NONE)
		return false;
	if (cluster >= q->open_end) {
		uint64_t i = cluster - q->open_end;

		return i < q->owner_cap &&
		       q->owner[i] == (vaddr >> q->cluster_bits) + 1;
	}
	return true;
}

/* ---- refcounts ------------------------------------------------------------ */

static uint64_t rc_entry_get(const struct qcow2 *q, const uint8_t *blk,
			     uint64_t i)
{
	uint64_t bit = i * q->rc_bits, v = 0;

	if (q->rc_bits < 8)
		return (blk[bit / 8] >> (bit % 8)) & q->rc_max;
	for (unsigned b = 0; b < q->rc_bits / 8; b++)
		v = (v << 8) | blk[bit / 8 + b];
	return v;
}

/* Set entry |i|; returns the byte range [*lo, *lo + *len) that changed. */
static void rc_entry_set(const struct qcow2 *q, uint8_t *blk, uint64_t i,
			 uint64_t v, uint64_t *lo, uint64_t *len)
{
	uint64_t bit = i * q->rc_bits;

	if (q->rc_bits < 8) {
		unsigned sh = bit % 8;

		blk[bit / 8] = (uint8_t)((blk[bit / 8] & ~(q->rc_max << sh)) |
					 (v << sh));
		*lo = bit / 8;
		*len = 1;
		return;
	}
	for (unsigned b = q->rc_bits / 8; b-- > 0;) {
		blk[bit / 8 + b] = (uint8_t)v;
		v >>= 8;
	}
	*lo = bit / 8;
	*len = q->rc_bits / 8;
}

static int rc_set(struct qcow2 *q, uint64_t cluster, uint64_t value);

static int write_rt_entry(struct qcow2 *q, uint64_t idx)
{
	uint8_t be[8];

	wr64(be, q->rt[idx]);
	return meta_write(q, q->rt_offset + idx * 8, be, 8);
}

/* Grow the refcount table so that index |need| exists: a new, bigger
 * table plus the refcount blocks that describe it go at the end of the
 * file, then the header is switched over, then the old table is freed. */
static int rt_grow(struct qcow2 *q, uint64_t need)
{
	uint64_t per_cl = q->cluster_size / 8;
	uint64_t new_clusters = q->rt_clusters * 2;
	uint64_t start = q->next_free, end, new_entries, nblocks = 0;
	uint64_t *nrt = NULL;
	uint8_t *blocks = NULL, *tbl = NULL, hdr[12];
	uint64_t old_off = q->rt_offset, old_clusters = q->rt_clusters;
	int err;

	if (new_clusters < (need + 1 + per_cl - 1) / per_cl + 1)
		new_clusters = (need + 1 + per_cl - 1) / per_cl + 1;
	for (;;) {
		uint64_t k = 0, last = UINT64_MAX;

		new_entries = new_clusters * per_cl;
		end = start + new_clusters + nblocks;
		for (uint64_t c = start; c < end; c++) {
			uint64_t bi = c / q->rc_per_block;

			if (bi == last)
				continue;
			last = bi;
			if (bi >= q->rt_entries || !q->rt[bi])
				k++;
		}
		if (k == nblocks && (end - 1) / q->rc_per_block < new_entries)
			break;
		if ((end - 1) / q->rc_per_block >= new_entries)
			new_clusters++;
		nblocks = k;
	}
	if (new_clusters * q->cluster_size > (64ull << 20))
		return -EFBIG;
	nrt = calloc(new_entries, 8);
	blocks = calloc(nblocks ? nblocks : 1, q->cluster_size);
	tbl = calloc(new_clusters, q->cluster_size);
	err = -ENOMEM;
	if (!nrt || !blocks || !tbl)
		goto out;
	memcpy(nrt, q->rt, q->rt_entries * 8);
	/* New blocks go right after the new table, in index order. */
	{
		uint64_t j = 0, last = UINT64_MAX;

		for (uint64_t c = start; c < end; c++) {
			uint64_t bi = c / q->rc_per_block;

			if (bi != last && (bi >= q->rt_entries || !q->rt[bi])) {
				nrt[bi] = (start + new_clusters + j) *
					  q->cluster_size;
				j++;
			}
			last = bi;
		}
	}
	/* Refcount 1 for every new cluster (table and blocks). */
	for (uint64_t c = start; c < end; c++) {
		uint64_t bi = c / q->rc_per_block, lo, len;

		if (bi < q->rt_entries && q->rt[bi]) {
			err = rc_set(q, c, 1);
			if (err)
				goto out;
		} else {
			uint64_t j = nrt[bi] / q->cluster_size - start -
				     new_clusters;

			rc_entry_set(q, blocks + j * q->cluster_size,
				     c % q->rc_per_block, 1, &lo, &len);
		}
	}
	q->next_free = end;
	err = meta_set_range(q, start * q->cluster_size,
			     new_clusters * q->cluster_size, META_REFTABLE);
	if (!err && nblocks)
		err = meta_set_range(q, (start + new_clusters) * q->cluster_size,
				     nblocks * q->cluster_size, META_REFBLOCK);
	if (err)
		goto out;
	err = meta_write(q, (start + new_clusters) * q->cluster_size, blocks,
			 nblocks * q->cluster_size);
	if (err)
		goto out;
	for (uint64_t i = 0; i < new_entries; i++)
		wr64(tbl + i * 8, nrt[i] & ~ENTRY_BAD);
	err = meta_write(q, start * q->cluster_size, tbl,
			 new_clusters * q->cluster_size);
	if (err)
		goto out;
	/* The new table must be on disk before the header points at it. */
	if (fdatasync(q->fd) < 0) {
		err = -errno;
		goto out;
	}
	wr64(hdr, start * q->cluster_size);
	{
		uint32_t be = htobe32((uint32_t)new_clusters);

		memcpy(hdr + 8, &be, 4);
	}
	err = meta_write(q, HDR_REFTABLE_OFFSET, hdr, 12);
	if (err)
		goto out;
	if (fdatasync(q->fd) < 0) {
		err = -errno;
		goto out;
	}
	free(q->rt);
	q->rt = nrt;
	nrt = NULL;
	q->rt_entries = new_entries;
	q->rt_offset = start * q->cluster_size;
	q->rt_clusters = (uint32_t)new_clusters;
	/* Now free the old table's clusters. */
	for (uint64_t c = 0; c < old_clusters; c++) {
		err = meta_set(q, old_off / q->cluster_size + c, META_GONE);
		if (!err)
			err = rc_set(q, old_off / q->cluster_size + c, 0);
		if (err)
			goto out;
	}
	err = 0;
out:
	free(nrt);
	free(blocks);
	free(tbl);
	return err;
}

/* Offset of the refcount block covering |cluster|; 0 when there is none
 * and |alloc| is false. */
static int rc_block(struct qcow2 *q, uint64_t cluster, bool alloc,
		    uint64_t *off)
{
	uint64_t bi = cluster / q->rc_per_block, b;
	uint8_t *buf;
	int err;

	*off = 0;
	if (bi >= q->rt_entries) {
		if (!alloc)
			return 0;
		err = rt_grow(q, bi);
		if (err)
			return err;
	}
	if (q->rt[bi] & ENTRY_BAD)
		return corrupt(q, "refcount table entry %llu points at other "
			       "metadata", (unsigned long long)bi);
	if (q->rt[bi]) {
		*off = q->rt[bi];
		return 0;
	}
	if (!alloc)
		return 0;
	/* A new block at the end of the file.  When it covers itself its
	 * own refcount goes in it; otherwise another block holds it. */
	b = q->next_free++;
	err = meta_set(q, b, META_REFBLOCK);
	if (err)
		return err;
	err = cache_get(q, &q->rcc, RC_CACHE_SIZE, b * q->cluster_size, true,
			&buf);
	if (err)
		return err;
	if (b / q->rc_per_block == bi) {
		uint64_t lo, len;

		rc_entry_set(q, buf, b % q->rc_per_block, 1, &lo, &len);
	}
	err = meta_write(q, b * q->cluster_size, buf, q->cluster_size);
	if (err)
		return err;
	if (b / q->rc_per_block != bi) {
		err = rc_set(q, b, 1);
		if (err)
			return err;
	}
	q->rt[bi] = b * q->cluster_size;
	err = write_rt_entry(q, bi);
	if (err)
		return err;
	*off = q->rt[bi];
	return 0;
}

static int rc_get(struct qcow2 *q, uint64_t cluster, uint64_t *value)
{
	uint64_t off;
	uint8_t *buf;
	int err = rc_block(q, cluster, false, &off);

	*value = 0;
	if (err || !off)
		return err;
	err = cache_get(q, &q->rcc, RC_CACHE_SIZE, off, false, &buf);
	if (err)
		return err;
	*value = rc_entry_get(q, buf, cluster % q->rc_per_block);
	return 0;
}

/* rc_get without I/O: false when the block is not cached. */
static bool rc_peek(struct qcow2 *q, uint64_t cluster, uint64_t *value)
{
	uint64_t bi = cluster / q->rc_per_block;
	uint8_t *buf;

	if (bi >= q->rt_entries || !q->rt[bi] || (q->rt[bi] & ENTRY_BAD))
		return false;
	buf = cache_peek(q, &q->rcc, q->rt[bi]);
	if (!buf)
		return false;
	*value = rc_entry_get(q, buf, cluster % q->rc_per_block);
	return true;
}

static int rc_set(struct qcow2 *q, uint64_t cluster, uint64_t value)
{
	uint64_t off, lo, len;
	uint8_t *buf;
	int err;

	if (value > q->rc_max)
		return -EOVERFLOW;
	err = rc_block(q, cluster, true, &off);
	if (err)
		return err;
	err = cache_get(q, &q->rcc, RC_CACHE_SIZE, off, false, &buf);
	if (err)
		return err;
	rc_entry_set(q, buf, cluster % q->rc_per_block, value, &lo, &len);
	return meta_write(q, off + lo, buf + lo, len);
}

/* Allocate one cluster at the end of the file (refcount 1 on disk):
 * an L2 table (|meta|), or the data of the guest cluster at |vaddr|. */
static int alloc_cluster(struct qcow2 *q, bool meta, uint64_t vaddr,
			 uint64_t *host)
{
	uint64_t c = q->next_free++;
	int err;

	if ((c * q->cluster_size) & ~L2E_OFFSET_MASK)
		return -EFBIG;
	err = meta ? meta_set(q, c, META_L2)
		   : owner_set(q, c, (vaddr >> q->cluster_bits) + 1);
	if (!err)
		err = rc_set(q, c, 1);
	if (err)
		return err;
	*host = c * q->cluster_size;
	return 0;
}

/* Drop one reference to data cluster |cluster|; punch the hole when it
 * is free.  release_ok() has checked it, so a refusal here means the
 * image changed under us: still, never free metadata. */
static int free_cluster(struct qcow2 *q, uint64_t cluster)
{
	enum meta_kind k = meta_kind_of(q, cluster);
	uint64_t v;
	int err;

	if (k != META_NONE || cluster == 0)
		return corrupt(q, "freeing cluster %llu, which holds %s",
			       (unsigned long long)cluster, meta_name(k));
	err = rc_get(q, cluster, &v);
	if (err)
		return err;
	if (v == 0)
		return corrupt(q, "freeing cluster %llu, whose refcount is 0",
			       (unsigned long long)cluster);
	err = rc_set(q, cluster, v - 1);
	if (!err && v == 1) {
		struct disk tmp = { .fd = q->fd };

		owner_set(q, cluster, 0);
		disk_fd_punch_hole(&tmp, cluster * q->cluster_size,
				   q->cluster_size);
	}
	return err;
}

/* ---- L1/L2 --------------------------------------------------------------- */

static enum entry_kind entry_kind(const struct qcow2 *q, uint64_t e)
{
	if (e & OFLAG_COMPRESSED)
		return E_COMPRESSED;
	if (q->version >= 3 && (e & OFLAG_ZERO))
		return E_ZERO;
	return (e & L2E_OFFSET_MASK) ? E_NORMAL : E_UNALLOCATED;
}

/* The clusters [*first, *last] a compressed entry's descriptor claims,
 * and where its data starts. */
static void compressed_extent(const struct qcow2 *q, uint64_t e,
			      uint64_t *off, uint64_t *first, uint64_t *last)
{
	uint64_t nb = ((e >> q->csize_shift) & q->csize_mask) + 1;

	*off = e & q->coffset_mask;
	*first = *off >> q->cluster_bits;
	*last = ((*off & ~511ull) + nb * 512 - 1) >> q->cluster_bits;
}

/* The host clusters L2 entry |e| names: [*first, *last]; false when it
 * names none (unallocated, zero without an offset). */
static bool entry_clusters(const struct qcow2 *q, uint64_t e,
			   uint64_t *first, uint64_t *last)
{
	uint64_t off;

	switch (entry_kind(q, e)) {
	case E_NORMAL:
	case E_ZERO:
		off = e & L2E_OFFSET_MASK;
		*first = *last = off >> q->cluster_bits;
		return off != 0;
	case E_COMPRESSED:
		compressed_extent(q, e, &off, first, last);
		return true;
	default:
		return false;
	}
}

/* May the clusters that the L2 entry |e| of guest address |vaddr| names
 * be that cluster's data?  Each must lie in the file, hold no metadata,
 * and if this run appended it, have been appended for |vaddr|
 * (data_cluster_for); a normal or zero entry's offset must be cluster
 * aligned.  Else the image is corrupt.  Under the lock. */
static int entry_ok(struct qcow2 *q, uint64_t vaddr, uint64_t e)
{
	uint64_t first, last;

	if (!entry_clusters(q, e, &first, &last))
		return 0;
	if (entry_kind(q, e) != E_COMPRESSED &&
	    (e & L2E_OFFSET_MASK & (q->cluster_size - 1)))
		return corrupt(q, "the L2 entry of guest offset %llu names "
			       "unaligned host offset %llu",
			       (unsigned long long)vaddr,
			       (unsigned long long)(e & L2E_OFFSET_MASK));
	for (uint64_t c = first; c <= last; c++) {
		enum meta_kind k = meta_kind_of(q, c);

		if (data_cluster_for(q, c, vaddr))
			continue;
		if (k != META_NONE)
			return corrupt(q, "the L2 entry of guest offset %llu "
				       "points at %s (cluster %llu)",
				       (unsigned long long)vaddr, meta_name(k),
				       (unsigned long long)c);
		return corrupt(q, "the L2 entry of guest offset %llu points "
			       "at cluster %llu, %s",
			       (unsigned long long)vaddr,
			       (unsigned long long)c,
			       c >= q->next_free ? "past the end of the file"
						 : "which holds other data");
	}
	return 0;
}

/* Which L1 entry, and which entry of its L2 table, map guest |vaddr|. */
static uint64_t l1_index(const struct qcow2 *q, uint64_t vaddr)
{
	return vaddr >> (q->cluster_bits * 2 - 3);
}

static uint64_t l2_index(const struct qcow2 *q, uint64_t vaddr)
{
	return (vaddr >> q->cluster_bits) & (q->l2_entries - 1);
}

/* The L2 table of L1 entry |l1i| (0: none), or corrupt()'s -EIO when
 * the entry was found to name other metadata at open. */
static int l2_table_of(struct qcow2 *q, uint64_t l1i, uint64_t *l2off)
{
	*l2off = 0;
	if (l1i >= q->l1_size)
		return 0;
	if (q->l1[l1i] & ENTRY_BAD)
		return corrupt(q, "L1 entry %llu points at other metadata",
			       (unsigned long long)l1i);
	*l2off = q->l1[l1i] & L1E_OFFSET_MASK;
	return 0;
}

/* The L2 entry of guest address |vaddr|, checked (entry_ok). */
static int l2_lookup(struct qcow2 *q, uint64_t vaddr, uint64_t *entry)
{
	uint64_t l2off;
	uint8_t *tbl;
	int err;

	*entry = 0;
	err = l2_table_of(q, l1_index(q, vaddr), &l2off);
	if (err || !l2off)
		return err;
	err = cache_get(q, &q->l2c, L2_CACHE_SIZE, l2off, false, &tbl);
	if (err)
		return err;
	*entry = rd64(tbl + l2_index(q, vaddr) * 8);
	err = entry_ok(q, vaddr, *entry);
	if (!err && entry_kind(q, *entry) == E_NORMAL) {
		uint64_t c = (*entry & L2E_OFFSET_MASK) >> q->cluster_bits;
		uint64_t bi = c / q->rc_per_block, rc;

		/* Cache its refcount block too: a write in place needs the
		 * refcount, and qcow2_submit only takes it from the cache.
		 * Only a prefetch: a read does not fail on it (the write
		 * that needs the refcount reports what is wrong). */
		if (bi < q->rt_entries && !(q->rt[bi] & ENTRY_BAD))
			(void)rc_get(q, c, &rc);
	}
	return err;
}

static int l2_store(struct qcow2 *q, uint64_t vaddr, uint64_t entry)
{
	uint64_t l1i = l1_index(q, vaddr), l2i = l2_index(q, vaddr);
	uint64_t l2off;
	uint8_t *tbl, be[8];
	int err;

	if (l1i >= q->l1_size)
		return -EIO;
	err = l2_table_of(q, l1i, &l2off);
	if (err)
		return err;
	if (!l2off) {
		if (entry == 0)
			return 0; /* already unallocated */
		/* New L2 table: refcount, zeroed table, then L1 entry. */
		err = alloc_cluster(q, true, 0, &l2off);
		if (err)
			return err;
		err = cache_get(q, &q->l2c, L2_CACHE_SIZE, l2off, true, &tbl);
		if (err)
			return err;
		err = meta_write(q, l2off, tbl, q->cluster_size);
		if (err)
			return err;
		wr64(be, l2off | OFLAG_COPIED);
		err = meta_write(q, q->l1_offset + l1i * 8, be, 8);
		if (err)
			return err;
		q->l1[l1i] = l2off | OFLAG_COPIED;
	}
	err = cache_get(q, &q->l2c, L2_CACHE_SIZE, l2off, false, &tbl);
	if (err)
		return err;
	wr64(tbl + l2i * 8, entry);
	return meta_write(q, l2off + l2i * 8, tbl + l2i * 8, 8);
}

static int inflate_cluster(struct qcow2 *q, uint64_t e, uint8_t *out,
			   uint64_t *used);

/* May the (old) L2 entry |e| of |vaddr| be released?  Checked before
 * anything changes: entry_ok, a refcount on every cluster it names, and
 * for a compressed entry a size field that claims no cluster past the
 * one where its deflate stream ends (else releasing it would drop a
 * reference that belongs to another entry).  Under the lock. */
static int release_ok(struct qcow2 *q, uint64_t vaddr, uint64_t e)
{
	uint64_t first, last, v;
	int err = entry_ok(q, vaddr, e);

	if (err || !entry_clusters(q, e, &first, &last))
		return err;
	for (uint64_t c = first; c <= last; c++) {
		err = rc_get(q, c, &v);
		if (err)
			return err;
		if (v == 0)
			return corrupt(q, "the L2 entry of guest offset %llu "
				       "names cluster %llu, whose refcount "
				       "is 0", (unsigned long long)vaddr,
				       (unsigned long long)c);
	}
	if (entry_kind(q, e) == E_COMPRESSED) {
		uint8_t *buf = malloc(q->cluster_size);
		uint64_t off = e & q->coffset_mask, used, end;

		if (!buf)
			return -ENOMEM;
		err = inflate_cluster(q, e, buf, &used);
		free(buf);
		if (err == -EIO)
			return corrupt(q, "the compressed data of guest offset "
				       "%llu does not inflate to one cluster",
				       (unsigned long long)vaddr);
		if (err)
			return err;
		end = (off + used + 511) & ~511ull;
		if (((end - 1) >> q->cluster_bits) != last)
			return corrupt(q, "the compressed L2 entry of guest "
				       "offset %llu claims clusters up to %llu, "
				       "its data ends in cluster %llu",
				       (unsigned long long)vaddr,
				       (unsigned long long)last,
				       (unsigned long long)((end - 1) >>
							    q->cluster_bits));
	}
	return 0;
}

/* Drop the references an (old) L2 entry held; release_ok() said yes. */
static int release_entry(struct qcow2 *q, uint64_t e)
{
	uint64_t first, last;
	int err = 0;

	if (!entry_clusters(q, e, &first, &last))
		return 0;
	for (uint64_t c = first; c <= last && !err; c++)
		err = free_cluster(q, c);
	return err;
}

/* ---- data ------------------------------------------------------------------ */

/* Inflate the compressed cluster |e| into |out| (a cluster); |used|
 * (may be NULL): how many bytes of the descriptor's extent the deflate
 * stream takes (all of it when the stream does not end there).  A
 * stream that gives more than a cluster is corrupt data: -EIO. */
static int inflate_cluster(struct qcow2 *q, uint64_t e, uint8_t *out,
			   uint64_t *used)
{
	uint64_t off = e & q->coffset_mask;
	uint64_t nb = ((e >> q->csize_shift) & q->csize_mask) + 1;
	uint64_t csize = nb * 512 - (off & 511);
	uint8_t *in = malloc(csize);
	z_stream zs;
	int err, zr;

	if (!in)
		return -ENOMEM;
	err = meta_read(q, off, in, csize);
	if (err)
		goto out;
	memset(&zs, 0, sizeof(zs));
	/* Raw deflate, 4 KiB window (what qcow2 writers use). */
	if (inflateInit2(&zs, -12) != Z_OK) {
		err = -ENOMEM;
		goto out;
	}
	zs.next_in = in;
	zs.avail_in = (uInt)csize;
	zs.next_out = out;
	zs.avail_out = (uInt)q->cluster_size;
	zr = inflate(&zs, Z_FINISH);
	/* The descriptor's size is rounded up to sectors, so trailing input
	 * is normal; a short output is not. */
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK) ||
	    zs.avail_out != 0)
		err = -EIO;
	if (!err && used && zr != Z_STREAM_END) {
		/* The cluster is full; where does the stream end?  Only its
		 * end-of-block code may be left: no more output. */
		uint8_t more;

		zs.next_out = &more;
		zs.avail_out = 1;
		zr = inflate(&zs, Z_FINISH);
		if (zs.avail_out == 0)
			err = -EIO;
	}
	if (used)
		*used = zr == Z_STREAM_END ? zs.total_in : csize;
	inflateEnd(&zs);
out:
	free(in);
	return err;
}

/* Read [co, co+len) of the cluster at |cvaddr| described by entry |e|
 * into bytes [skip, skip+len) of |iov|.  Called without the lock. */
static int read_entry(struct qcow2 *q, uint64_t e, uint64_t cvaddr,
		      uint64_t co, uint64_t len, const struct iovec *iov,
		      int iovcnt, uint64_t skip)
{
	switch (entry_kind(q, e)) {
	case E_NORMAL: {
		struct iovec small[16], *sl = small;
		int n, err;

		if (iovcnt > 16) {
			sl = malloc(sizeof(*sl) * (size_t)iovcnt);
			if (!sl)
				return -ENOMEM;
		}
		n = iov_slice(iov, iovcnt, skip, len, sl, iovcnt);
		err = n < 0 ? n
			    : disk_fd_rw(q->fd, q->dio_block,
					 (e & L2E_OFFSET_MASK) + co, sl, n,
					 false);
		if (sl != small)
			free(sl);
		return err;
	}
	case E_COMPRESSED: {
		uint8_t *buf = malloc(q->cluster_size);
		int err;

		if (!buf)
			return -ENOMEM;
		err = inflate_cluster(q, e, buf, NULL);
		if (!err)
			iov_from_buf(iov, iovcnt, skip, buf + co, len);
		free(buf);
		return err;
	}
	case E_UNALLOCATED:
		if (q->backing) {
			uint64_t v = cvaddr + co, bsize = disk_size(q->backing);
			uint64_t have = v < bsize ? bsize - v : 0;
			uint8_t *buf;
			int err;

			if (have > len)
				have = len;
			if (have) {
				buf = malloc(have);
				if (!buf)
					return -ENOMEM;
				err = disk_pread(q->backing, v, buf, have);
				if (!err)
					iov_from_buf(iov, iovcnt, skip, buf,
						     have);
				free(buf);
				if (err)
					return err;
			}
			iov_memset(iov, iovcnt, skip + have, 0, len - have);
			return 0;
		}
		/* fall through */
	case E_ZERO:
		iov_memset(iov, iovcnt, skip, 0, len);
		return 0;
	}
	return -EIO;
}

static int qcow2_read(struct qcow2 *q, struct disk_request *req)
{
	uint64_t pos = 0;

	while (pos < req->len) {
		uint64_t v = req->offset + pos;
		uint64_t cvaddr = v & ~(q->cluster_size - 1), co = v - cvaddr;
		uint64_t n = q->cluster_size - co, e;
		int err;

		if (n > req->len - pos)
			n = req->len - pos;
		pthread_mutex_lock(&q->lock);
		err = l2_lookup(q, v, &e);
		pthread_mutex_unlock(&q->lock);
		if (!err)
			err = read_entry(q, e, cvaddr, co, n, req->iov,
					 req->iovcnt, pos);
		if (err)
			return err;
		pos += n;
	}
	return 0;
}

/* Write [co, co+len) of one cluster.  |iov| NULL: write zeros.  Takes
 * the lock; drops it for the data of an in-place write. */
static int write_chunk(struct qcow2 *q, uint64_t v, uint64_t len,
		       const struct iovec *iov, int iovcnt, uint64_t skip)
{
	uint64_t cvaddr = v & ~(q->cluster_size - 1), co = v - cvaddr;
	uint64_t e, host;
	uint8_t *buf = NULL;
	struct iovec biov;
	int err;

	pthread_mutex_lock(&q->lock);
	err = q->corrupt ? -EIO : l2_lookup(q, v, &e);
	if (err)
		goto out;
	if (entry_kind(q, e) == E_NORMAL && (e & OFLAG_COPIED)) {
		/* COPIED says the refcount is 1: check, since writing in
		 * place into a cluster another entry holds would change
		 * that one's data.  More than 1: copy on write (below). */
		uint64_t rc;

		err = rc_get(q, (e & L2E_OFFSET_MASK) >> q->cluster_bits, &rc);
		if (!err && rc == 0)
			err = corrupt(q, "the L2 entry of guest offset %llu "
				      "names a cluster whose refcount is 0",
				      (unsigned long long)v);
		if (err)
			goto out;
		if (rc > 1)
			e &= ~OFLAG_COPIED;
	}
	if (entry_kind(q, e) == E_NORMAL && (e & OFLAG_COPIED)) {
		/* Allocated and ours alone: write in place. */
		pthread_mutex_unlock(&q->lock);
		host = (e & L2E_OFFSET_MASK) + co;
		if (iov) {
			struct iovec small[16], *sl = small;
			int n;

			if (iovcnt > 16) {
				sl = malloc(sizeof(*sl) * (size_t)iovcnt);
				if (!sl)
					return -ENOMEM;
			}
			n = iov_slice(iov, iovcnt, skip, len, sl, iovcnt);
			err = n < 0 ? n
				    : disk_fd_rw(q->fd, q->dio_block, host, sl,
						 n, true);
			if (sl != small)
				free(sl);
			return err;
		}
		buf = calloc(1, len);
		if (!buf)
			return -ENOMEM;
		biov.iov_base = buf;
		biov.iov_len = len;
		err = disk_fd_rw(q->fd, q->dio_block, host, &biov, 1, true);
		free(buf);
		return err;
	}
	/* Copy on write into a new cluster: old content (backing, zeros,
	 * compressed, shared) merged with the new bytes.  The old entry
	 * must be releasable before anything is written. */
	err = release_ok(q, v, e);
	if (err)
		goto out;
	buf = malloc(q->cluster_size);
	err = -ENOMEM;
	if (!buf)
		goto out;
	biov.iov_base = buf;
	biov.iov_len = q->cluster_size;
	if (len < q->cluster_size) {
		err = read_entry(q, e, cvaddr, 0, q->cluster_size, &biov, 1, 0);
		if (err)
			goto out;
	}
	if (iov)
		iov_to_buf(iov, iovcnt, skip, buf + co, len);
	else
		memset(buf + co, 0, len);
	err = alloc_cluster(q, false, v, &host);
	if (err)
		goto out;
	err = disk_fd_rw(q->fd, q->dio_block, host, &biov, 1, true);
	if (err) {
		free_cluster(q, host >> q->cluster_bits);
		goto out;
	}
	err = l2_store(q, v, host | OFLAG_COPIED);
	if (err)
		goto out;
	err = release_entry(q, e);
out:
	pthread_mutex_unlock(&q->lock);
	free(buf);
	return err;
}

static int qcow2_write(struct qcow2 *q, struct disk_request *req)
{
	uint64_t pos = 0;

	while (pos < req->len) {
		uint64_t v = req->offset + pos;
		uint64_t n = q->cluster_size - (v & (q->cluster_size - 1));
		int err;

		if (n > req->len - pos)
			n = req->len - pos;
		err = write_chunk(q, v, n, req->iov, req->iovcnt, pos);
		if (err)
			return err;
		pos += n;
	}
	return 0;
}

/* Make a whole cluster unallocated (discard) or read as zeros. */
static int drop_cluster(struct qcow2 *q, uint64_t v, bool zeroes,
			bool may_unmap)
{
	uint64_t e, ne;
	enum entry_kind k;
	bool release;
	int err;

	pthread_mutex_lock(&q->lock);
	err = q->corrupt ? -EIO : l2_lookup(q, v, &e);
	if (err)
		goto out;
	k = entry_kind(q, e);
	if (!zeroes) {
		/* Discard: with a backing file an unallocated cluster would
		 * show the backing data again; v3 can say "zeros" instead,
		 * v2 keeps the data (discard is only a hint). */
		if (q->backing && q->version < 3)
			goto out;
		ne = q->backing ? OFLAG_ZERO : 0;
	} else if (q->version >= 3) {
		if (!may_unmap && k == E_NORMAL && (e & OFLAG_COPIED))
			ne = e | OFLAG_ZERO; /* keep the allocation */
		else
			ne = OFLAG_ZERO;
	} else if (!q->backing) {
		ne = 0;
	} else {
		pthread_mutex_unlock(&q->lock);
		return write_chunk(q, v, q->cluster_size, NULL, 0, 0);
	}
	if (ne == e)
		goto out;
	release = (ne & L2E_OFFSET_MASK) != (e & L2E_OFFSET_MASK) ||
		  k == E_COMPRESSED;
	if (release) {
		err = release_ok(q, v, e);
		if (err)
			goto out;
	} else if (ne & L2E_OFFSET_MASK) {
		/* Keeping the allocation: it must be one (refcount >= 1). */
		uint64_t rc;

		err = rc_get(q, (ne & L2E_OFFSET_MASK) >> q->cluster_bits, &rc);
		if (!err && rc == 0)
			err = corrupt(q, "the L2 entry of guest offset %llu "
				      "names a cluster whose refcount is 0",
				      (unsigned long long)v);
		if (err)
			goto out;
	}
	err = l2_store(q, v, ne);
	if (err)
		goto out;
	if (release)
		err = release_entry(q, e);
out:
	pthread_mutex_unlock(&q->lock);
	return err;
}

/* Does this cluster already read as zeros? (partial write-zeroes) */
static bool reads_zero(struct qcow2 *q, uint64_t v)
{
	uint64_t e;
	bool z;

	pthread_mutex_lock(&q->lock);
	z = !q->corrupt && l2_lookup(q, v, &e) == 0 &&
	    (entry_kind(q, e) == E_ZERO ||
	     (entry_kind(q, e) == E_UNALLOCATED && !q->backing));
	pthread_mutex_unlock(&q->lock);
	return z;
}

static int qcow2_range(struct qcow2 *q, struct disk_request *req, bool zeroes)
{
	uint64_t pos = 0;
	bool bad;

	pthread_mutex_lock(&q->lock);
	bad = q->corrupt;
	pthread_mutex_unlock(&q->lock);
	if (bad)
		return -EIO; /* even a discard that would do nothing */

	while (pos < req->len) {
		uint64_t v = req->offset + pos;
		uint64_t n = q->cluster_size - (v & (q->cluster_size - 1));
		int err = 0;

		if (n > req->len - pos)
			n = req->len - pos;
		if (n == q->cluster_size)
			err = drop_cluster(q, v, zeroes, req->may_unmap);
		else if (zeroes && !reads_zero(q, v))
			err = write_chunk(q, v, n, NULL, 0, 0);
		if (err)
			return err;
		pos += n;
	}
	return 0;
}

/* Where the guest byte at |vaddr| lies in the file, when that is known
 * without I/O and its cluster can be read -- or, for |write|, written in
 * place -- right there: a normal cluster (for a write: ours alone,
 * COPIED) whose L2 table is cached.  UINT64_MAX otherwise.  Under the
 * lock. */
static uint64_t data_in_place(struct qcow2 *q, uint64_t vaddr, bool write)
{
	uint64_t l1i = l1_index(q, vaddr), l2i = l2_index(q, vaddr);
	uint64_t l2off, e, host, rc;
	uint8_t *tbl;

	if (l1i >= q->l1_size || (q->l1[l1i] & ENTRY_BAD) ||
	    (write && q->corrupt))
		return UINT64_MAX;
	l2off = q->l1[l1i] & L1E_OFFSET_MASK;
	tbl = l2off ? cache_peek(q, &q->l2c, l2off) : NULL;
	if (!tbl)
		return UINT64_MAX;
	e = rd64(tbl + l2i * 8);
	if (entry_kind(q, e) != E_NORMAL || (write && !(e & OFLAG_COPIED)))
		return UINT64_MAX;
	host = e & L2E_OFFSET_MASK;
	/* What the pool path checks (entry_ok; for a write, refcount 1),
	 * without I/O: anything else goes there, which reports it. */
	if ((host & (q->cluster_size - 1)) ||
	    !data_cluster_for(q, host >> q->cluster_bits, vaddr))
		return UINT64_MAX;
	if (write && (!rc_peek(q, host >> q->cluster_bits, &rc) || rc != 1))
		return UINT64_MAX;
	return host + (vaddr & (q->cluster_size - 1));
}

/* The fast path, for the owner thread: a read, or a write in place, whose
 * whole range lies in allocated clusters that follow each other in the
 * file goes to io_uring as one read or write there, with no pool thread.
 * Everything else -- an L2 table to read first, allocation, copy on
 * write, zeros, compressed or backing-file data, a range over clusters
 * apart in the file, the lock held by metadata work -- goes to the pool
 * (-EOPNOTSUPP), which must not wait here.
 *
 * Safe beside the pool: allocation only appends and freed clusters are
 * not reused while the image is open (see the top of this file), so a
 * cluster found here stays this image's data even if a concurrent
 * discard drops it; and virtio does not order requests in flight. */
static int qcow2_submit(struct disk *disk, struct disk_request *req)
{
	struct qcow2 *q = disk->priv;
	bool write = req->op == DISK_OP_WRITE;
	uint64_t start = UINT64_MAX, pos = 0;

	if ((req->op != DISK_OP_READ && !write) || req->len == 0 ||
	    !disk_dio_aligned(q->dio_block, req->offset, req->iov,
			      req->iovcnt) ||
	    pthread_mutex_trylock(&q->lock))
		return -EOPNOTSUPP;
	while (pos < req->len) {
		uint64_t v = req->offset + pos;
		uint64_t n = q->cluster_size - (v & (q->cluster_size - 1));
		uint64_t host = data_in_place(q, v, write);

		if (host == UINT64_MAX || (pos && host != start + pos))
			break;
		if (!pos)
			start = host;
		pos += n < req->len - pos ? n : req->len - pos;
	}
	pthread_mutex_unlock(&q->lock);
	if (pos < req->len)
		return -EOPNOTSUPP;
	req->file_offset = start;
	return disk_uring_rw(disk, req);
}

static int qcow2_exec(struct disk *disk, struct disk_request *req)
{
	struct qcow2 *q = disk->priv;

	switch (req->op) {
	case DISK_OP_READ:
		return qcow2_read(q, req);
	case DISK_OP_WRITE:
		return qcow2_write(q, req);
	case DISK_OP_FLUSH:
		return fdatasync(q->fd) < 0 ? -errno : 0;
	case DISK_OP_DISCARD:
		return qcow2_range(q, req, false);
	case DISK_OP_WRITE_ZEROES:
		return qcow2_range(q, req, true);
	}
	return -EINVAL;
}

static int write_incompat(struct qcow2 *q)
{
	uint8_t be[8];

	wr64(be, q->incompat);
	return meta_write(q, HDR_INCOMPAT_OFFSET, be, 8);
}

static void qcow2_free(struct qcow2 *q)
{
	if (q->backing)
		disk_close(q->backing);
	cache_free(&q->l2c);
	cache_free(&q->rcc);
	free(q->meta.key);
	free(q->meta.kind);
	free(q->owner);
	free(q->l1);
	free(q->rt);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

static int qcow2_close(struct disk *disk)
{
	struct qcow2 *q = disk->priv;
	int err = 0;

	if (q->writable && q->dirty_set) {
		/* Everything before is durable; only then say "clean". */
		if (fdatasync(q->fd) < 0)
			err = -errno;
		if (!err) {
			q->incompat &= ~INCOMPAT_DIRTY;
			err = write_incompat(q);
		}
		if (!err && fdatasync(q->fd) < 0)
			err = -errno;
	}
	qcow2_free(q);
	disk->priv = NULL;
	return err;
}

static const struct disk_backend_ops qcow2_ops = {
	.name = "qcow2",
	.exec = qcow2_exec,
	.submit = qcow2_submit,
	.close = qcow2_close,
};

/* ---- open ------------------------------------------------------------------- */

/* The metadata map, from the header, L1 and refcount tables (already
 * checked to lie in the file).  The header and the two tables must not
 * overlap: such an image is refused.  A refcount block or L2 table that
 * would land on other metadata, or on one another's, leaves its entry
 * ENTRY_BAD: the requests that need it fail and mark the image corrupt,
 * the rest of the image stays usable. */
/* How many refcount-table and L1 entries name each cluster (1, or 2 for
 * more than one), in a map of its own. */
static int claims_count(struct qcow2 *q, struct meta_map *claims)
{
	struct qcow2 tmp = { .cluster_bits = q->cluster_bits };
	int err = 0;

	for (uint64_t i = 0; i < q->rt_entries + q->l1_size && !err; i++) {
		uint64_t o = i < q->rt_entries
				     ? q->rt[i]
				     : q->l1[i - q->rt_entries] & L1E_OFFSET_MASK;
		enum meta_kind n;

		if (!o)
			continue;
		n = meta_kind_of(&tmp, o >> q->cluster_bits);
		err = meta_set(&tmp, o >> q->cluster_bits, n ? 2 : 1);
	}
	*claims = tmp.meta;
	return err;
}

/* The table that |*entry| names (a refcount block or an L2 table) goes
 * into the map, unless another structure, or another entry, claims its
 * cluster: then the entry is ENTRY_BAD (and the cluster stays off
 * limits to guest data all the same). */
static int table_claim(struct qcow2 *q, const struct meta_map *claims,
		       uint64_t *entry, enum meta_kind kind)
{
	uint64_t c = (*entry & L1E_OFFSET_MASK & RTE_OFFSET_MASK) >>
		     q->cluster_bits;
	struct qcow2 tmp = { .meta = *claims };
	enum meta_kind k = meta_kind_of(q, c);

	if (k == META_REFTABLE || k == META_L1 || k == META_HEADER ||
	    meta_kind_of(&tmp, c) > 1) {
		*entry |= ENTRY_BAD;
		if (k != META_NONE)
			return 0;
	}
	return meta_set(q, c, kind);
}

/* The L1 or refcount table at [offset, offset + len) into the map; it
 * must not overlap what is there (the header, the other table). */
static int fixed_table(struct qcow2 *q, uint64_t offset, uint64_t len,
		       enum meta_kind kind, char *why, size_t why_len)
{
	uint64_t first = offset >> q->cluster_bits;
	uint64_t last = (offset + len - 1) >> q->cluster_bits;

	for (uint64_t c = first; c <= last; c++) {
		enum meta_kind k = meta_kind_of(q, c);

		if (k != META_NONE) {
			disk_set_why(why, why_len, "qcow2: %s overlaps %s",
				     meta_name(kind), meta_name(k));
			return -EINVAL;
		}
	}
	return meta_set_range(q, offset, len, kind);
}

static int meta_map_build(struct qcow2 *q, char *why, size_t why_len)
{
	struct meta_map claims = { 0 };
	int err = meta_set(q, 0, META_HEADER);

	if (!err && q->l1_size)
		err = fixed_table(q, q->l1_offset, (uint64_t)q->l1_size * 8,
				  META_L1, why, why_len);
	if (!err)
		err = fixed_table(q, q->rt_offset,
				  (uint64_t)q->rt_clusters * q->cluster_size,
				  META_REFTABLE, why, why_len);
	if (err)
		return err;
	/* Refcount blocks and L2 tables: count the claims on each cluster
	 * first, so that when two entries claim one cluster neither wins
	 * (whichever came first could be the corrupt one). */
	err = claims_count(q, &claims);
	for (uint64_t i = 0; i < q->rt_entries && !err; i++)
		if (q->rt[i])
			err = table_claim(q, &claims, &q->rt[i], META_REFBLOCK);
	for (uint32_t i = 0; i < q->l1_size && !err; i++)
		if (q->l1[i] & L1E_OFFSET_MASK)
			err = table_claim(q, &claims, &q->l1[i], META_L2);
	free(claims.key);
	free(claims.kind);
	return err;
}

static int open_backing(struct qcow2 *q, struct disk *disk, const char *name,
			enum disk_format fmt, bool shared, unsigned depth,
			char *why, size_t why_len)
{
	/* The chain shares the image's cache mode, and its |shared|: a
	 * base image another program writes is as good as the top one. */
	struct disk_options bo = { .format = fmt, .read_only = true,
				   .direct = q->dio_block != 0,
				   .aio = DISK_AIO_THREADS,
				   .backing_file = true, .shared = shared };
	char *inner, *path, *dir, *copy;
	int err;

	if (name[0] == '/' || !strchr(disk->path, '/')) {
		path = strdup(name);
	} else {
		copy = strdup(disk->path);
		if (!copy)
			return -ENOMEM;
		dir = dirname(copy);
		path = malloc(strlen(dir) + strlen(name) + 2);
		if (path)
			sprintf(path, "%s/%s", dir, name);
		free(copy);
	}
	/* The chain's reasons nest, as long as the caller's buffer. */
	inner = calloc(1, why_len ? why_len : 1);
	if (!path || !inner) {
		free(path);
		free(inner);
		return -ENOMEM;
	}
	err = disk_open_depth(path, &bo, depth + 1, &q->backing, inner,
			      why_len ? why_len : 1);
	if (err)
		disk_set_why(why, why_len, "backing file '%s': %s", path, inner);
	free(inner);
	free(path);
	return err;
}

int qcow2_open(struct disk *disk, const struct disk_options *opts,
	       unsigned depth, char *why, size_t why_len)
{
	struct qcow2 *q;
	uint8_t *h = NULL;
	uint64_t file_size = disk->size, size, bf_off, snap_count, ext;
	uint32_t bf_size, crypt, header_length;
	enum disk_format bfmt = DISK_FORMAT_AUTO;
	char bname[1024];
	int err = -EINVAL;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	q->fd = disk->fd;
	q->dio_block = disk_dio_block(disk);
	q->writable = !opts->read_only;

	/* The header and its extensions live in the first cluster; read
	 * the largest possible one (2 MiB) or the file, whichever is less. */
	h = calloc(1, 2 << 20);
	if (!h) {
		err = -ENOMEM;
		goto fail;
	}
	if (file_size < 72) {
		disk_set_why(why, why_len, "qcow2 header: file too short");
		goto fail;
	}
	err = meta_read(q, 0, h, file_size < (2 << 20) ? file_size : 2 << 20);
	if (err) {
		disk_set_why(why, why_len, "qcow2 header: read: %s", strerror(-err));
		goto fail;
	}
	err = -EINVAL;
	if (rd32(h) != QCOW2_MAGIC) {
		disk_set_why(why, why_len, "qcow2 header: bad magic");
		goto fail;
	}
	q->version = rd32(h + 4);
	if (q->version != 2 && q->version != 3) {
		disk_set_why(why, why_len, "qcow2 header: unsupported version %u",
			q->version);
		goto fail;
	}
	bf_off = rd64(h + 8);
	bf_size = rd32(h + 16);
	q->cluster_bits = rd32(h + 20);
	size = rd64(h + 24);
	crypt = rd32(h + 32);
	q->l1_size = rd32(h + 36);
	q->l1_offset = rd64(h + 40);
	q->rt_offset = rd64(h + 48);
	q->rt_clusters = rd32(h + 56);
	snap_count = rd32(h + 60);
	if (q->cluster_bits < 9 || q->cluster_bits > 21) {
		disk_set_why(why, why_len,
			"qcow2 header: cluster_bits %u out of range (9..21)",
			q->cluster_bits);
		goto fail;
	}
	q->cluster_size = 1ull << q->cluster_bits;
	q->l2_entries = q->cluster_size / 8;
	/* With O_DIRECT a block must never hold parts of two clusters: a
	 * metadata update (read-modify-write of its block) would race the
	 * data of the other. */
	if (q->dio_block > q->cluster_size) {
		disk_set_why(why, why_len,
			"cache=none: clusters of %llu bytes are smaller than "
			"the %u-byte block O_DIRECT needs on this file",
			(unsigned long long)q->cluster_size, q->dio_block);
		err = -ENOTSUP;
		goto fail;
	}
	if (crypt != 0) {
		disk_set_why(why, why_len,
			"qcow2 header: encrypted images are not supported");
		err = -ENOTSUP;
		goto fail;
	}
	if (q->version == 3) {
		q->incompat = rd64(h + 72);
		q->compat = rd64(h + 80);
		q->autoclear = rd64(h + 88);
		q->refcount_order = rd32(h + 96);
		header_length = rd32(h + 100);
		if (header_length < 104 || header_length > q->cluster_size) {
			disk_set_why(why, why_len,
				"qcow2 header: bad header_length %u",
				header_length);
			goto fail;
		}
	} else {
		q->refcount_order = 4;
		header_length = 72;
	}
	if (q->incompat & ~INCOMPAT_KNOWN) {
		uint64_t u = q->incompat & ~INCOMPAT_KNOWN;

		disk_set_why(why, why_len,
			"qcow2 header: unsupported incompatible features 0x%llx%s%s",
			(unsigned long long)u,
			(u & INCOMPAT_DATA_FILE) ? " (external data file)" : "",
			(u & INCOMPAT_EXTL2) ? " (extended L2 entries)" : "");
		err = -ENOTSUP;
		goto fail;
	}
	/* Byte 104: the compression type, 0 (zlib) where the header is
	 * shorter.  The incompatible bit is set exactly when it is not zlib
	 * (qcow2.txt); zlib with the bit set is a contradiction. */
	if (header_length > 104 && h[104] != 0) {
		disk_set_why(why, why_len,
			"qcow2 header: compression type %u not supported "
			"(only zlib)", h[104]);
		err = -ENOTSUP;
		goto fail;
	}
	if (q->incompat & INCOMPAT_COMPRESSION) {
		disk_set_why(why, why_len,
			"qcow2 header: the compression-type incompatible bit "
			"is set, but the type is zlib");
		goto fail;
	}
	if ((q->incompat & INCOMPAT_CORRUPT) && q->writable) {
		disk_set_why(why, why_len,
			"qcow2: image is marked corrupt; open it read-only or "
			"repair it with 'qemu-img check -r all'");
		goto fail;
	}
	if ((q->incompat & INCOMPAT_DIRTY) &&
	    (q->compat & COMPAT_LAZY_REFCOUNTS) && q->writable) {
		disk_set_why(why, why_len,
			"qcow2: image was not closed cleanly and uses lazy "
			"refcounts; repair it with 'qemu-img check -r all'");
		goto fail;
	}
	if (q->refcount_order > 6) {
		disk_set_why(why, why_len,
			"qcow2 header: refcount_order %u out of range (0..6)",
			q->refcount_order);
		goto fail;
	}
	q->rc_bits = 1u << q->refcount_order;
	q->rc_max = q->rc_bits == 64 ? UINT64_MAX : (1ull << q->rc_bits) - 1;
	q->rc_per_block = q->cluster_size * 8 / q->rc_bits;
	q->csize_shift = 62 - (q->cluster_bits - 8);
	q->csize_mask = (1ull << (q->cluster_bits - 8)) - 1;
	q->coffset_mask = (1ull << q->csize_shift) - 1;

	if (snap_count && q->writable) {
		disk_set_why(why, why_len,
			"qcow2: images with internal snapshots can only be "
			"opened read-only");
		err = -ENOTSUP;
		goto fail;
	}
	/* L1 table: must cover the virtual size and lie inside the file. */
	{
		uint64_t per_l1 = q->cluster_size * q->l2_entries;
		uint64_t need = size / per_l1 + (size % per_l1 != 0);

		if (size > (1ull << 56) || q->l1_size < need) {
			disk_set_why(why, why_len,
				"qcow2 header: L1 table (%u entries) too small "
				"for the virtual size %llu", q->l1_size,
				(unsigned long long)size);
			goto fail;
		}
		if (q->l1_size > (32u << 20) / 8) {
			disk_set_why(why, why_len,
				"qcow2 header: L1 table too large (%u entries)",
				q->l1_size);
			goto fail;
		}
	}
	if ((q->l1_offset & (q->cluster_size - 1)) ||
	    q->l1_offset > file_size ||
	    (uint64_t)q->l1_size * 8 > file_size - q->l1_offset) {
		disk_set_why(why, why_len,
			"qcow2 header: L1 table beyond end of file or "
			"misaligned (offset %llu)",
			(unsigned long long)q->l1_offset);
		goto fail;
	}
	if (!q->rt_clusters || (q->rt_offset & (q->cluster_size - 1)) ||
	    q->rt_offset > file_size ||
	    (uint64_t)q->rt_clusters * q->cluster_size >
		    file_size - q->rt_offset ||
	    (uint64_t)q->rt_clusters * q->cluster_size > (64ull << 20)) {
		disk_set_why(why, why_len,
			"qcow2 header: refcount table beyond end of file, "
			"misaligned or too large");
		goto fail;
	}
	/* Header extensions. */
	for (ext = q->version == 3 ? header_length : 72;
	     ext + 8 <= q->cluster_size && ext + 8 <= file_size;) {
		uint32_t type = rd32(h + ext), len = rd32(h + ext + 4);

		if (type == EXT_END)
			break;
		if (len > q->cluster_size - ext - 8) {
			disk_set_why(why, why_len,
				"qcow2 header: extension 0x%x overruns the "
				"header cluster", type);
			goto fail;
		}
		if (type == EXT_BACKING_FORMAT) {
			char f[16] = "";

			memcpy(f, h + ext + 8, len < 15 ? len : 15);
			if (len == 3 && !memcmp(f, "raw", 3))
				bfmt = DISK_FORMAT_RAW;
			else if (len == 5 && !memcmp(f, "qcow2", 5))
				bfmt = DISK_FORMAT_QCOW2;
			else {
				disk_set_why(why, why_len,
					"qcow2: backing file format '%s' not "
					"supported", f);
				err = -ENOTSUP;
				goto fail;
			}
		} else if (type == EXT_FDE) {
			disk_set_why(why, why_len,
				"qcow2 header: encrypted images are not "
				"supported");
			err = -ENOTSUP;
			goto fail;
		} else if (type == EXT_DATA_FILE) {
			disk_set_why(why, why_len,
				"qcow2 header: external data files are not "
				"supported");
			err = -ENOTSUP;
			goto fail;
		}
		ext += 8 + ((len + 7ull) & ~7ull);
	}

	/* Tables into memory, checked. */
	q->l1 = calloc(q->l1_size ? q->l1_size : 1, 8);
	q->rt_entries = (uint64_t)q->rt_clusters * q->cluster_size / 8;
	q->rt = calloc(q->rt_entries, 8);
	if (!q->l1 || !q->rt) {
		err = -ENOMEM;
		goto fail;
	}
	err = meta_read(q, q->l1_offset, q->l1, (uint64_t)q->l1_size * 8);
	if (!err)
		err = meta_read(q, q->rt_offset, q->rt, q->rt_entries * 8);
	if (err) {
		disk_set_why(why, why_len, "qcow2: reading tables: %s",
			strerror(-err));
		goto fail;
	}
	err = -EINVAL;
	for (uint32_t i = 0; i < q->l1_size; i++) {
		uint64_t o;

		/* Reserved bits dropped: bit 0 is ENTRY_BAD in memory. */
		q->l1[i] = be64toh(q->l1[i]) & (L1E_OFFSET_MASK | OFLAG_COPIED);
		o = q->l1[i] & L1E_OFFSET_MASK;
		if (o && ((o & (q->cluster_size - 1)) ||
			  o > file_size - q->cluster_size)) {
			disk_set_why(why, why_len,
				"qcow2: L1 entry %u points outside the image "
				"or is misaligned", i);
			goto fail;
		}
	}
	for (uint64_t i = 0; i < q->rt_entries; i++) {
		uint64_t o;

		q->rt[i] = be64toh(q->rt[i]) & RTE_OFFSET_MASK;
		o = q->rt[i];
		if (o && ((o & (q->cluster_size - 1)) ||
			  o > file_size - q->cluster_size)) {
			disk_set_why(why, why_len,
				"qcow2: refcount table entry %llu points "
				"outside the image or is misaligned",
				(unsigned long long)i);
			goto fail;
		}
	}
	q->next_free = (file_size + q->cluster_size - 1) >> q->cluster_bits;
	q->open_end = q->next_free;
	q->path = disk->path;
	err = meta_map_build(q, why, why_len);
	if (err)
		goto fail;
	err = -EINVAL;

	if (bf_off) {
		if (bf_size == 0 || bf_size > 1023 || bf_off > q->cluster_size ||
		    bf_size > q->cluster_size - bf_off ||
		    bf_off + bf_size > file_size) {
			disk_set_why(why, why_len,
				"qcow2 header: backing file name out of bounds");
			goto fail;
		}
		memcpy(bname, h + bf_off, bf_size);
		bname[bf_size] = '\0';
		if (opts->no_backing) {
			disk_set_why(why, why_len,
				"names backing file '%s', and backing=off "
				"refuses backing files", bname);
			err = -EPERM;
			goto fail;
		}
		disk->priv = q;
		err = open_backing(q, disk, bname, bfmt, opts->shared, depth,
				   why, why_len);
		if (err)
			goto fail;
	}

	if (q->writable) {
		/* Autoclear bits we do not understand must go when we write
		 * (e.g. persistent bitmaps we would not update). */
		if (q->version == 3 && q->autoclear) {
			uint8_t be[8] = { 0 };

			err = meta_write(q, HDR_AUTOCLEAR_OFFSET, be, 8);
			if (err)
				goto fail_io;
			q->autoclear = 0;
		}
		if (q->version == 3) {
			q->incompat |= INCOMPAT_DIRTY;
			err = write_incompat(q);
			if (!err && fdatasync(q->fd) < 0)
				err = -errno;
			if (err)
				goto fail_io;
			q->dirty_set = true;
		}
	}
	free(h);
	disk->priv = q;
	disk->ops = &qcow2_ops;
	disk->backing = q->backing;
	disk->size = size;
	disk->logical_block = 512;
	if (disk->physical_block < 4096)
		disk->physical_block = 4096;
	disk->discard_granularity = (uint32_t)q->cluster_size;
	return 0;

fail_io:
	disk_set_why(why, why_len, "qcow2: updating the header: %s", strerror(-err));
fail:
	free(h);
	disk->priv = NULL;
	qcow2_free(q);
	return err;
}
