/* Host-side decompression of bzImage payloads (see kernel_unpack.h). */
#include "arch/x86/kernel_unpack.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* The lz4 "legacy" frame the kernel build writes (lz4 -l): a magic word,
 * then blocks of [le32 compressed size][LZ4 block], each block unpacking
 * to at most 8 MiB. */
#define LZ4_LEGACY_MAGIC      0x184C2102U
#define LZ4_LEGACY_BLOCK_MAX  (8U << 20)

/* Decoder memory, which a stream's header asks for before any data: a
 * 2 KiB payload could otherwise make kite allocate gigabytes.
 *
 * xz and lzma: the dictionary is nearly all of it.  The largest any
 * preset uses is 64 MiB (-9, 65 MiB to decode), which is what the kernel
 * build's lzma (-9) writes; its xz uses 32 MiB (scripts/xz_wrap.sh), as
 * does Debian's.  Twice the largest preset leaves room for custom
 * settings.
 *
 * zstd: the window.  The kernel build's -22 --ultra uses 2^27 (128 MiB),
 * the most any level uses without --long; Debian's initrd uses 4 MiB.
 * 2^27 is also libzstd's own default limit.
 *
 * gzip's window is 32 KiB by format and lz4's legacy blocks 8 MiB. */
#define LZMA_MEMLIMIT         (128ULL << 20)
#define ZSTD_WINDOW_LOG_MAX   27

/* A size word claiming more than this times the payload is not used to
 * size the output up front (a 2 KiB payload would reserve 1 GiB): real
 * kernels compress 3-10 times. */
#define UNPACK_HINT_RATIO     64

enum kernel_compression kernel_compression_detect(const uint8_t *in,
						  size_t len)
{
	static const struct {
		enum kernel_compression comp;
		size_t len;
		uint8_t magic[6];
	} magics[] = {
		{ KERNEL_COMP_GZIP, 2, { 0x1F, 0x8B } },
		{ KERNEL_COMP_BZIP2, 3, { 'B', 'Z', 'h' } },
		{ KERNEL_COMP_XZ, 6, { 0xFD, '7', 'z', 'X', 'Z', 0x00 } },
		/* lzma "alone": lc/lp/pb byte 0x5D, then a 32-bit dict size
		 * whose low bytes are zero for every size the kernel uses. */
		{ KERNEL_COMP_LZMA, 3, { 0x5D, 0x00, 0x00 } },
		{ KERNEL_COMP_LZO, 4, { 0x89, 'L', 'Z', 'O' } },
		{ KERNEL_COMP_LZ4, 4, { 0x02, 0x21, 0x4C, 0x18 } },
		{ KERNEL_COMP_ZSTD, 4, { 0x28, 0xB5, 0x2F, 0xFD } },
	};

	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++)
		if (len >= magics[i].len &&
		    memcmp(in, magics[i].magic, magics[i].len) == 0)
			return magics[i].comp;
	return KERNEL_COMP_UNKNOWN;
}

const char *kernel_compression_name(enum kernel_compression comp)
{
	switch (comp) {
	case KERNEL_COMP_GZIP: return "gzip";
	case KERNEL_COMP_BZIP2: return "bzip2";
	case KERNEL_COMP_LZMA: return "lzma";
	case KERNEL_COMP_XZ: return "xz";
	case KERNEL_COMP_LZO: return "lzo";
	case KERNEL_COMP_LZ4: return "lz4";
	case KERNEL_COMP_ZSTD: return "zstd";
	case KERNEL_COMP_UNKNOWN: break;
	}
	return "unknown";
}

/* A growing output buffer, capped at |max| (at most
 * KERNEL_UNPACK_MAX_SIZE): the output of a small stream is not bounded
 * by its size. */
struct outbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
	size_t in_used; /* input bytes the stream took (gzip, xz, lzma, zstd) */
};

static size_t clamp_max(uint64_t max)
{
	return max < KERNEL_UNPACK_MAX_SIZE ? (size_t)max
					    : (size_t)KERNEL_UNPACK_MAX_SIZE;
}

static int outbuf_reserve(struct outbuf *o, size_t room)
{
	size_t cap = o->cap ? o->cap : (1U << 20);
	uint8_t *p;

	if (o->cap - o->len >= room)
		return 0;
	if (room > o->max - o->len)
		room = o->max - o->len;
	if (room == 0)
		return -EFBIG;
	while (cap - o->len < room)
		cap *= 2;
	if (cap > o->max)
		cap = o->max;
	p = realloc(o->data, cap);
	if (!p)
		return -ENOMEM;
	o->data = p;
	o->cap = cap;
	return 0;
}

/* The reason for an outbuf failure. */
static int outbuf_fail(const struct outbuf *o, int rc, const char *name,
		       char *err, size_t errlen)
{
	if (rc == -EFBIG)
		snprintf(err, errlen, "%s: unpacks to more than %zu MiB", name,
			 o->max >> 20);
	else
		snprintf(err, errlen, "%s: %s", name, strerror(-rc));
	return rc;
}

/* Room to offer the decoder next: whatever is free, at least 1 MiB. */
static int outbuf_room(struct outbuf *o, size_t *room, const char *name,
		       char *err, size_t errlen)
{
	int rc = outbuf_reserve(o, o->cap > o->len ? 1 : (1U << 20));

	*room = o->cap - o->len;
	return rc ? outbuf_fail(o, rc, name, err, errlen) : 0;
}

static int unpack_gzip(const uint8_t *in, size_t len, struct outbuf *o,
		       char *err, size_t errlen)
{
	z_stream zs;
	int rc = 0;

	if (len > UINT_MAX) {
		snprintf(err, errlen, "gzip: payload too large");
		return -EFBIG;
	}
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) { /* 16: gzip header */
		snprintf(err, errlen, "gzip: cannot initialise zlib");
		return -ENOMEM;
	}
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	for (;;) {
		size_t room;
		uInt chunk;
		int zr;

		rc = outbuf_room(o, &room, "gzip", err, errlen);
		if (rc)
			break;
		chunk = room > UINT_MAX ? UINT_MAX : (uInt)room;
		zs.next_out = o->data + o->len;
		zs.avail_out = chunk;
		zr = inflate(&zs, Z_NO_FLUSH);
		o->len += chunk - zs.avail_out;
		if (zr == Z_STREAM_END) {
			o->in_used = len - zs.avail_in;
			break;
		}
		if (zr == Z_OK || (zr == Z_BUF_ERROR && zs.avail_out == 0))
			continue;
		if (zr == Z_BUF_ERROR) {
			snprintf(err, errlen, "gzip: truncated data");
			rc = -ENOEXEC;
		} else {
			snprintf(err, errlen, "gzip: corrupt data (%s)",
				 zs.msg ? zs.msg : "zlib error");
			rc = zr == Z_MEM_ERROR ? -ENOMEM : -ENOEXEC;
		}
		break;
	}
	inflateEnd(&zs);
	return rc;
}

static int unpack_liblzma(const uint8_t *in, size_t len, bool xz,
			  struct outbuf *o, char *err, size_t errlen)
{
	const char *name = xz ? "xz" : "lzma";
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_ret lr;
	int rc = 0;

	/* Without LZMA_CONCATENATED the decoder stops after the first
	 * stream, so the appended size word is ignored. */
	lr = xz ? lzma_stream_decoder(&s, LZMA_MEMLIMIT, 0)
		: lzma_alone_decoder(&s, LZMA_MEMLIMIT);
	if (lr != LZMA_OK) {
		snprintf(err, errlen, "%s: cannot initialise liblzma", name);
		return -ENOMEM;
	}
	s.next_in = in;
	s.avail_in = len;
	for (;;) {
		size_t room;

		rc = outbuf_room(o, &room, name, err, errlen);
		if (rc)
			break;
		s.next_out = o->data + o->len;
		s.avail_out = room;
		lr = lzma_code(&s, LZMA_FINISH);
		o->len += room - s.avail_out;
		if (lr == LZMA_STREAM_END) {
			o->in_used = len - s.avail_in;
			break;
		}
		if (lr == LZMA_OK || (lr == LZMA_BUF_ERROR && s.avail_out == 0))
			continue;
		if (lr == LZMA_BUF_ERROR) {
			snprintf(err, errlen, "%s: truncated data", name);
			rc = -ENOEXEC;
		} else if (lr == LZMA_MEM_ERROR) {
			snprintf(err, errlen, "%s: out of memory", name);
			rc = -ENOMEM;
		} else if (lr == LZMA_MEMLIMIT_ERROR) {
			snprintf(err, errlen, "%s data needs %" PRIu64 " MiB of "
				 "decoder memory (limit %llu MiB)", name,
				 lzma_memusage(&s) >> 20, LZMA_MEMLIMIT >> 20);
			rc = -E2BIG;
		} else {
			snprintf(err, errlen, "%s: corrupt data (liblzma error %d)",
				 name, (int)lr);
			rc = -ENOEXEC;
		}
		break;
	}
	lzma_end(&s);
	return rc;
}

/* The window a zstd frame header asks for (RFC 8878 §3.1.1.1): 0 when
 * the header is incomplete. */
static uint64_t zstd_frame_window(const uint8_t *in, size_t len)
{
	static const unsigned dict_id_len[4] = { 0, 1, 2, 4 };
	static const unsigned fcs_len[4] = { 0, 2, 4, 8 };
	uint8_t fhd;
	size_t pos, n;
	uint64_t fcs = 0;

	if (len < 6)
		return 0;
	fhd = in[4];
	if (!(fhd & 0x20)) { /* Window_Descriptor */
		unsigned exp = in[5] >> 3, mant = in[5] & 7;
		uint64_t base = 1ULL << (10 + exp);

		return base + base / 8 * mant;
	}
	/* Single segment: the window is the frame content size. */
	pos = 5 + dict_id_len[fhd & 3];
	n = fcs_len[fhd >> 6] ? fcs_len[fhd >> 6] : 1;
	if (len < pos + n)
		return 0;
	for (size_t i = 0; i < n; i++)
		fcs |= (uint64_t)in[pos + i] << (8 * i);
	return n == 2 ? fcs + 256 : fcs;
}

static int unpack_zstd(const uint8_t *in, size_t len, struct outbuf *o,
		       char *err, size_t errlen)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	ZSTD_inBuffer ib = { in, len, 0 };
	int rc = 0;

	if (!dctx) {
		snprintf(err, errlen, "zstd: cannot initialise libzstd");
		return -ENOMEM;
	}
	if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax,
						ZSTD_WINDOW_LOG_MAX))) {
		ZSTD_freeDCtx(dctx);
		snprintf(err, errlen, "zstd: cannot limit the window");
		return -ENOMEM;
	}
	for (;;) {
		size_t room, zr;
		ZSTD_outBuffer ob;

		rc = outbuf_room(o, &room, "zstd", err, errlen);
		if (rc)
			break;
		ob = (ZSTD_outBuffer){ o->data + o->len, room, 0 };
		zr = ZSTD_decompressStream(dctx, &ob, &ib);
		o->len += ob.pos;
		if (ZSTD_isError(zr) &&
		    ZSTD_getErrorCode(zr) == ZSTD_error_frameParameter_windowTooLarge) {
			snprintf(err, errlen, "zstd data needs %" PRIu64 " MiB of "
				 "decoder memory (limit %u MiB)",
				 zstd_frame_window(in, len) >> 20,
				 1U << (ZSTD_WINDOW_LOG_MAX - 20));
			rc = -E2BIG;
			break;
		}
		if (ZSTD_isError(zr)) {
			snprintf(err, errlen, "zstd: corrupt data (%s)",
				 ZSTD_getErrorName(zr));
			rc = -ENOEXEC;
			break;
		}
		if (zr == 0) {
			/* first frame complete; the size word follows */
			o->in_used = ib.pos;
			break;
		}
		if (ib.pos == ib.size && ob.pos < ob.size) {
			snprintf(err, errlen, "zstd: truncated data");
			rc = -ENOEXEC;
			break;
		}
	}
	ZSTD_freeDCtx(dctx);
	return rc;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static int unpack_lz4_legacy(const uint8_t *in, size_t len, struct outbuf *o,
			     char *err, size_t errlen)
{
	size_t pos = 4; /* past the magic */
	unsigned blocks = 0;

	while (len - pos >= 4) {
		uint32_t bsz = le32(in + pos);
		size_t room;
		int n, rc;

		if (bsz == LZ4_LEGACY_MAGIC) { /* concatenated frame */
			pos += 4;
			continue;
		}
		if (bsz > len - pos - 4) {
			/* The last word of a kernel payload is the unpacked
			 * size the build appends, not a block header. */
			if (len - pos == 4 && blocks > 0)
				break;
			snprintf(err, errlen, "lz4: truncated data");
			return -ENOEXEC;
		}
		if (bsz == 0 || bsz > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK_MAX)) {
			snprintf(err, errlen, "lz4: corrupt block size %" PRIu32,
				 bsz);
			return -ENOEXEC;
		}
		pos += 4;
		rc = outbuf_reserve(o, LZ4_LEGACY_BLOCK_MAX);
		if (rc)
			return outbuf_fail(o, rc, "lz4", err, errlen);
		room = o->cap - o->len;
		n = LZ4_decompress_safe((const char *)in + pos,
					(char *)o->data + o->len, (int)bsz,
					room > INT_MAX ? INT_MAX : (int)room);
		/* A block that needs more room than the cap left it. */
		if (n < 0 && room < LZ4_LEGACY_BLOCK_MAX)
			return outbuf_fail(o, -EFBIG, "lz4", err, errlen);
		if (n < 0) {
			snprintf(err, errlen, "lz4: corrupt data in block %u",
				 blocks);
			return -ENOEXEC;
		}
		o->len += (size_t)n;
		pos += bsz;
		blocks++;
	}
	if (blocks == 0) {
		snprintf(err, errlen, "lz4: no data");
		return -ENOEXEC;
	}
	return 0;
}

int kernel_unpack_max(const uint8_t *in, size_t len, uint64_t max,
		      uint8_t **out, size_t *out_len,
		      enum kernel_compression *comp_out, char *err,
		      size_t errlen)
{
	enum kernel_compression comp = kernel_compression_detect(in, len);
	struct outbuf o = { .max = clamp_max(max) };
	int rc;

	if (comp_out)
		*comp_out = comp;
	switch (comp) {
	case KERNEL_COMP_BZIP2:
	case KERNEL_COMP_LZO:
		snprintf(err, errlen, "unsupported compression %s",
			 kernel_compression_name(comp));
		return -ENOTSUP;
	case KERNEL_COMP_UNKNOWN:
		if (len >= 4)
			snprintf(err, errlen,
				 "unknown compression (magic %02x %02x %02x %02x)",
				 in[0], in[1], in[2], in[3]);
		else
			snprintf(err, errlen, "compressed payload is empty");
		return -ENOEXEC;
	default:
		break;
	}

	/* Size the buffer from the appended size word, plus slack so the
	 * decoder can report the end without a final reallocation.  The
	 * word is not trusted: past the cap, or past what any kernel
	 * compresses to (xz: 8x; UNPACK_HINT_RATIO), the buffer grows as
	 * the data needs instead. */
	if (len >= 8) {
		uint32_t hint = le32(in + len - 4);

		if (o.max >= (64U << 10) && hint <= o.max - (64U << 10) &&
		    hint / UNPACK_HINT_RATIO <= len) {
			rc = outbuf_reserve(&o, (size_t)hint + (64U << 10));
			if (rc)
				return outbuf_fail(&o, rc,
						   kernel_compression_name(comp),
						   err, errlen);
		}
	}

	switch (comp) {
	case KERNEL_COMP_GZIP:
		rc = unpack_gzip(in, len, &o, err, errlen);
		break;
	case KERNEL_COMP_XZ:
	case KERNEL_COMP_LZMA:
		rc = unpack_liblzma(in, len, comp == KERNEL_COMP_XZ, &o, err,
				    errlen);
		break;
	case KERNEL_COMP_ZSTD:
		rc = unpack_zstd(in, len, &o, err, errlen);
		break;
	case KERNEL_COMP_LZ4:
		rc = unpack_lz4_legacy(in, len, &o, err, errlen);
		break;
	default:
		rc = -ENOEXEC;
		break;
	}
	if (rc == 0 && o.len == 0) {
		snprintf(err, errlen, "%s: no data", kernel_compression_name(comp));
		rc = -ENOEXEC;
	}
	if (rc) {
		free(o.data);
		return rc;
	}
	*out = o.data;
	*out_len = o.len;
	return 0;
}

int kernel_unpack(const uint8_t *in, size_t len, uint8_t **out,
		  size_t *out_len, enum kernel_compression *comp_out,
		  char *err, size_t errlen)
{
	return kernel_unpack_max(in, len, KERNEL_UNPACK_MAX_SIZE, out, out_len,
				 comp_out, err, errlen);
}

/* ---- cache ------------------------------------------------------------- */

/* 64-bit FNV-1a over 8-byte words, then a final avalanche.  A cache key,
 * not a security boundary: the cache directory belongs to the user. */
static uint64_t payload_hash(const uint8_t *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

const char *kernel_unpack_default_cache_dir(char *buf, size_t buflen)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, buflen, "%s/kite", xdg);
	else if (home && home[0])
		n = snprintf(buf, buflen, "%s/.cache/kite", home);
	else
		return NULL;
	return n >= 0 && (size_t)n < buflen ? buf : NULL;
}

/* mkdir -p, mode 0700 for what it creates. */
static int make_dirs(const char *dir)
{
	char path[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -errno;
		path[i] = dir[i];
	}
	return 0;
}

/* A cache entry: a regular file of at most |max| bytes (O_NONBLOCK: a
 * FIFO in its place must not block the open). */
static int cache_read(const char *path, size_t max, uint8_t **out,
		      size_t *out_len)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	uint8_t *buf;
	size_t done = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > max) {
		close(fd);
		return -EINVAL;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (done < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + done, (size_t)st.st_size - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			close(fd);
			return r < 0 ? -errno : -EIO;
		}
		done += (size_t)r;
	}
	close(fd);
	*out = buf;
	*out_len = done;
	return 0;
}

/* Write to a private temporary name, then rename: readers never see a
 * partial file, and concurrent writers of the same kernel are harmless. */
static void cache_write(const char *path, const uint8_t *data, size_t len)
{
	char tmp[PATH_MAX];
	size_t done = 0;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >=
	    (int)sizeof(tmp))
		return;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	while (done < len) {
		ssize_t w = write(fd, data + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	if (close(fd) < 0 || done != len || rename(tmp, path) < 0)
		unlink(tmp);
}

struct cache_entry {
	char name[64];
	struct timespec mtime;
};

static int cache_entry_newer_first(const void *a, const void *b)
{
	const struct timespec *x = &((const struct cache_entry *)a)->mtime;
	const struct timespec *y = &((const struct cache_entry *)b)->mtime;

	if (x->tv_sec != y->tv_sec)
		return x->tv_sec > y->tv_sec ? -1 : 1;
	if (x->tv_nsec != y->tv_nsec)
		return x->tv_nsec > y->tv_nsec ? -1 : 1;
	return 0;
}

/* Keep the KERNEL_CACHE_KEEP most recently used entries (a hit refreshes
 * the mtime), so the cache stays at a few hundred MiB. */
static void cache_evict(const char *dir)
{
	struct cache_entry ents[64];
	unsigned n = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d)) != NULL && n < sizeof(ents) / sizeof(ents[0])) {
		char path[PATH_MAX];
		struct stat st;

		if (strncmp(de->d_name, "vmlinux-", 8) != 0 ||
		    strstr(de->d_name, ".tmp.") ||
		    strlen(de->d_name) >= sizeof(ents[0].name) ||
		    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >=
			    (int)sizeof(path) ||
		    stat(path, &st) < 0)
			continue;
		strcpy(ents[n].name, de->d_name);
		ents[n].mtime = st.st_mtim;
		n++;
	}
	closedir(d);
	qsort(ents, n, sizeof(ents[0]), cache_entry_newer_first);
	for (unsigned i = KERNEL_CACHE_KEEP; i < n; i++) {
		char path[PATH_MAX];

		if (snprintf(path, sizeof(path), "%s/%s", dir, ents[i].name) <
		    (int)sizeof(path))
			unlink(path);
	}
}

/* Whether the payload's trailing le32 size word equals |size| (mod 2^32);
 * size 0 asks only whether the word is plausible (non-zero). */
static bool size_word_matches(const uint8_t *in, size_t len, size_t size)
{
	uint32_t word = le32(in + len - 4);

	return size ? word == (uint32_t)size : word != 0;
}

/* Only slow decoders are worth a cache entry: lz4 and zstd unpack a
 * 60 MiB kernel faster than the cached copy can be read back. */
static bool worth_caching(enum kernel_compression comp)
{
	return comp == KERNEL_COMP_XZ || comp == KERNEL_COMP_LZMA ||
	       comp == KERNEL_COMP_GZIP;
}

int kernel_unpack_cached(const uint8_t *in, size_t len, uint64_t max,
			 const char *cache_dir, uint8_t **out, size_t *out_len,
			 enum kernel_compression *comp, bool *hit,
			 char *err, size_t errlen)
{
	enum kernel_compression c = kernel_compression_detect(in, len);
	char path[PATH_MAX];
	bool use_cache = cache_dir && cache_dir[0] && worth_caching(c);
	int rc;

	*hit = false;
	if (use_cache &&
	    snprintf(path, sizeof(path), "%s/vmlinux-%016" PRIx64 "-%zu",
		     cache_dir, payload_hash(in, len), len) >= (int)sizeof(path))
		use_cache = false;
	/* The build's size word doubles as an integrity check: only
	 * entries of exactly that size are written or believed. */
	if (use_cache && (len < 8 || !size_word_matches(in, len, 0)))
		use_cache = false;
	if (use_cache && cache_read(path, clamp_max(max), out, out_len) == 0) {
		if (size_word_matches(in, len, *out_len)) {
			utimensat(AT_FDCWD, path, NULL, 0); /* recently used */
			if (comp)
				*comp = c;
			*hit = true;
			return 0;
		}
		free(*out); /* damaged entry: replace it */
		*out = NULL;
		unlink(path);
	}
	rc = kernel_unpack_max(in, len, max, out, out_len, comp, err, errlen);
	if (rc == 0 && use_cache && size_word_matches(in, len, *out_len) &&
	    make_dirs(cache_dir) == 0) {
		cache_write(path, *out, *out_len);
		cache_evict(cache_dir);
	}
	return rc;
}

/* ---- initramfs --------------------------------------------------------- */

static bool hex8(const uint8_t *p, uint32_t *v)
{
	*v = 0;
	for (unsigned i = 0; i < 8; i++) {
		unsigned d;

		if (p[i] >= '0' && p[i] <= '9')
			d = p[i] - '0';
		else if (p[i] >= 'a' && p[i] <= 'f')
			d = p[i] - 'a' + 10;
		else if (p[i] >= 'A' && p[i] <= 'F')
			d = p[i] - 'A' + 10;
		else
			return false;
		*v = *v << 4 | d;
	}
	return true;
}

static bool is_newc(const uint8_t *p, size_t len)
{
	return len >= 6 && (memcmp(p, "070701", 6) == 0 ||
			    memcmp(p, "070702", 6) == 0);
}

#define ALIGN4(x) (((x) + 3) & ~(size_t)3)

/* Length of the newc cpio archive at |in| up to and including its
 * "TRAILER!!!" entry and padding; 0 if it is not a whole archive.  Header
 * layout (110 bytes, 8 hex digits per field): c_filesize at 54, c_namesize
 * at 94; name and data each padded to 4 bytes. */
static size_t cpio_archive_len(const uint8_t *in, size_t len)
{
	size_t p = 0;

	for (;;) {
		uint32_t namesize, filesize;
		size_t body;
		bool trailer;

		if (len - p < 110 || !is_newc(in + p, len - p) ||
		    !hex8(in + p + 54, &filesize) || !hex8(in + p + 94, &namesize))
			return 0;
		if (namesize == 0 || namesize > len - p - 110)
			return 0;
		trailer = namesize == 11 &&
			  memcmp(in + p + 110, "TRAILER!!!", 11) == 0;
		body = ALIGN4(p + 110 + namesize);
		if (body > len || filesize > len - body)
			return 0;
		p = ALIGN4(body + filesize);
		if (trailer)
			return p < len ? p : len;
		if (p >= len)
			return 0;
	}
}

static int outbuf_append(struct outbuf *o, const uint8_t *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	rc = outbuf_reserve(o, n);
	if (rc)
		return rc;
	if (o->cap - o->len < n)
		return -EFBIG;
	memcpy(o->data + o->len, p, n);
	o->len += n;
	return 0;
}

int initrd_unpack_max(const uint8_t *in, size_t len, uint64_t max,
		      uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	static const uint8_t zeros[4];
	struct outbuf o = { .max = clamp_max(max) };
	bool unpacked = false;
	size_t p = 0;
	int rc = 0;

	while (p < len && !rc) {
		enum kernel_compression comp;
		size_t n;

		if (in[p] == 0) { /* padding between segments */
			p++;
			continue;
		}
		/* Each archive starts 4-aligned, as the kernel wants. */
		rc = outbuf_append(&o, zeros, (4 - o.len % 4) % 4);
		if (rc) {
			outbuf_fail(&o, rc, "initrd", err, errlen);
			break;
		}
		if (is_newc(in + p, len - p)) {
			n = cpio_archive_len(in + p, len - p);
			if (!n) {
				snprintf(err, errlen, "initrd: broken cpio archive at byte %zu", p);
				rc = -ENOEXEC;
				break;
			}
			rc = outbuf_append(&o, in + p, n);
			if (rc)
				outbuf_fail(&o, rc, "initrd", err, errlen);
			p += n;
			continue;
		}
		/* Streams unpack straight after what is there: the whole
		 * output stays within o.max. */
		o.in_used = 0;
		comp = kernel_compression_detect(in + p, len - p);
		switch (comp) {
		case KERNEL_COMP_GZIP:
			rc = unpack_gzip(in + p, len - p, &o, err, errlen);
			break;
		case KERNEL_COMP_XZ:
		case KERNEL_COMP_LZMA:
			rc = unpack_liblzma(in + p, len - p, comp == KERNEL_COMP_XZ,
					    &o, err, errlen);
			break;
		case KERNEL_COMP_ZSTD:
			rc = unpack_zstd(in + p, len - p, &o, err, errlen);
			break;
		default:
			snprintf(err, errlen, "initrd: %s data at byte %zu left to the guest",
				 kernel_compression_name(comp), p);
			rc = -ENOTSUP;
			break;
		}
		if (!rc && (o.in_used == 0 || o.in_used > len - p)) {
			snprintf(err, errlen, "initrd: %s stream at byte %zu has no end",
				 kernel_compression_name(comp), p);
			rc = -ENOEXEC;
		}
		p += o.in_used;
		unpacked = true;
	}
	if (!rc && !unpacked) {
		snprintf(err, errlen, "initrd: nothing compressed");
		rc = -ENOENT;
	}
	if (rc) {
		free(o.data);
		return rc;
	}
	*out = o.data;
	*out_len = o.len;
	return 0;
}

int initrd_unpack(const uint8_t *in, size_t len, uint8_t **out,
		  size_t *out_len, char *err, size_t errlen)
{
	return initrd_unpack_max(in, len, KERNEL_UNPACK_MAX_SIZE, out, out_len,
				 err, errlen);
}
