/* The disk layer's common part: opening (format probe, OFD lock, block
 * sizes), the aio engine (io_uring completions and a thread pool behind
 * one eventfd), synchronous helpers and iovec helpers.  See disk.h. */
#include "vmm/disk/disk_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "vmm/log.h"

/* Backing chains deeper than this are refused (and loops end here). */
#define DISK_MAX_BACKING_DEPTH 16

void disk_set_why(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !why_len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
}

/* ---- iovec helpers ------------------------------------------------------ */

uint64_t iov_total(const struct iovec *iov, int iovcnt)
{
	uint64_t n = 0;

	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

int iov_slice(const struct iovec *iov, int iovcnt, uint64_t skip,
	      uint64_t len, struct iovec *out, int max)
{
	int n = 0;

	for (int i = 0; i < iovcnt && len > 0; i++) {
		uint64_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		if (n >= max)
			return -E2BIG;
		out[n].iov_base = (char *)iov[i].iov_base + skip;
		out[n].iov_len = l - skip < len ? l - skip : len;
		len -= out[n].iov_len;
		skip = 0;
		n++;
	}
	return n;
}

/* Walk [skip, skip+len) of an iovec calling |fn| on each piece. */
#define IOV_WALK(iov, iovcnt, skip, len, body)                               \
	do {                                                                  \
		uint64_t s_ = (skip), l_ = (len), done_ = 0;                  \
		for (int i_ = 0; i_ < (iovcnt) && l_ > 0; i_++) {             \
			uint64_t il_ = (iov)[i_].iov_len, n_;                 \
			char *p_;                                             \
			if (s_ >= il_) {                                      \
				s_ -= il_;                                    \
				continue;                                     \
			}                                                     \
			p_ = (char *)(iov)[i_].iov_base + s_;                 \
			n_ = il_ - s_ < l_ ? il_ - s_ : l_;                   \
			body;                                                 \
			done_ += n_;                                          \
			l_ -= n_;                                             \
			s_ = 0;                                               \
		}                                                             \
	} while (0)

void iov_memset(const struct iovec *iov, int iovcnt, uint64_t skip, int c,
		uint64_t len)
{
	IOV_WALK(iov, iovcnt, skip, len, memset(p_, c, n_));
}

void iov_to_buf(const struct iovec *iov, int iovcnt, uint64_t skip,
		void *buf, uint64_t len)
{
	IOV_WALK(iov, iovcnt, skip, len, memcpy((char *)buf + done_, p_, n_));
}

void iov_from_buf(const struct iovec *iov, int iovcnt, uint64_t skip,
		  const void *buf, uint64_t len)
{
	IOV_WALK(iov, iovcnt, skip, len,
		 memcpy(p_, (const char *)buf + done_, n_));
}

/* ---- opening ------------------------------------------------------------- */

/* Does an O_DIRECT read of 512 bytes at offset 0 into a buffer aligned to
 * 512 (and to nothing larger) work on |fd|? */
static bool direct_io_takes_512(int fd)
{
	uint8_t *mem;
	bool ok;

	if (posix_memalign((void **)&mem, 4096, 8192))
		return false;
	ok = pread(fd, mem + 512, 512, 0) >= 0;
	free(mem);
	return ok;
}

/* The smallest block O_DIRECT on the file |fd| can address, file offsets
 * and memory alike: what statx's DIOALIGN says (Linux 6.1: ext4, xfs,
 * btrfs...), or where it says nothing (tmpfs, network file systems) 512
 * if a 512-byte direct read works.  On most file systems over
 * 512-byte-sector disks that is 512, so guests see the same block size
 * with cache=none as without it, and an image partitioned in 512-byte
 * sectors reads the same either way.  Otherwise 4096, safe on every
 * common file system. */
static uint32_t direct_io_block(int fd)
{
	struct statx stx;
	uint32_t b;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0 ||
	    !(stx.stx_mask & STATX_DIOALIGN))
		return direct_io_takes_512(fd) ? 512 : 4096;
	if (!stx.stx_dio_offset_align)
		return 4096; /* "no O_DIRECT here"; the open said otherwise */
	b = stx.stx_dio_offset_align;
	if (stx.stx_dio_mem_align > b)
		b = stx.stx_dio_mem_align;
	if (b < 512)
		b = 512;
	if (b > 4096 || (b & (b - 1)))
		return 4096;
	return b;
}

/* ---- what may be opened ---------------------------------------------------
 * An image is a regular file or a block device.  Anything else is refused
 * by its type, looked up before open(): opening a FIFO waits for a
 * writer (for ever), a device node may act on open (a tape rewinds, a
 * watchdog starts) and a socket cannot be opened.  The open itself is
 * O_NONBLOCK in case the path changed in between, and the type is
 * checked again on the fd.  A backing file is named by the image, which
 * is untrusted input: only a regular file, and none of the kernel's
 * pseudo file systems (/proc/self/mem, /proc/kcore, sysfs attributes). */

static const char *file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFIFO: return "a FIFO";
	case S_IFCHR: return "a character device";
	case S_IFSOCK: return "a socket";
	case S_IFDIR: return "a directory";
	case S_IFBLK: return "a block device";
	}
	return NULL;
}

static int check_file_type(mode_t mode, bool backing, char *why,
			   size_t why_len)
{
	const char *kind = file_kind(mode);

	if (S_ISREG(mode) || (S_ISBLK(mode) && !backing))
		return 0;
	if (S_ISBLK(mode))
		disk_set_why(why, why_len, "is a block device, and a backing "
			     "file must be a regular file");
	else if (kind)
		disk_set_why(why, why_len, "is %s", kind);
	else
		disk_set_why(why, why_len,
			     "not a regular file or block device");
	return -EINVAL;
}

#ifndef CONFIGFS_MAGIC
#define CONFIGFS_MAGIC 0x62656570
#endif
#ifndef FUSECTL_SUPER_MAGIC
#define FUSECTL_SUPER_MAGIC 0x65735543
#endif

/* File systems of kernel interfaces: no image lives there. */
static const struct {
	unsigned long magic;
	const char *name;
} kernel_fs[] = {
	{ PROC_SUPER_MAGIC, "procfs" },
	{ SYSFS_MAGIC, "sysfs" },
	{ DEBUGFS_MAGIC, "debugfs" },
	{ TRACEFS_MAGIC, "tracefs" },
	{ SECURITYFS_MAGIC, "securityfs" },
	{ CGROUP_SUPER_MAGIC, "cgroup" },
	{ CGROUP2_SUPER_MAGIC, "cgroup2" },
	{ BPF_FS_MAGIC, "bpf" },
	{ PSTOREFS_MAGIC, "pstore" },
	{ EFIVARFS_MAGIC, "efivarfs" },
	{ SELINUX_MAGIC, "selinuxfs" },
	{ SMACK_MAGIC, "smackfs" },
	{ CONFIGFS_MAGIC, "configfs" },
	{ FUSECTL_SUPER_MAGIC, "fusectl" },
	{ BINFMTFS_MAGIC, "binfmt_misc" },
	{ DEVPTS_SUPER_MAGIC, "devpts" },
	{ NSFS_MAGIC, "nsfs" },
	{ USBDEVICE_SUPER_MAGIC, "usbdevfs" },
};

static int check_backing_fs(const struct statfs *sfs, char *why,
			    size_t why_len)
{
	for (size_t i = 0; i < sizeof(kernel_fs) / sizeof(kernel_fs[0]); i++)
		if ((unsigned long)sfs->f_type == kernel_fs[i].magic) {
			disk_set_why(why, why_len,
				     "is on %s (a kernel interface, not an "
				     "image): refused as a backing file",
				     kernel_fs[i].name);
			return -EINVAL;
		}
	return 0;
}

/* ---- the images this process has open ---------------------------------
 * For the reason of a lock conflict: when the holder is this very
 * process (two -d of one image, an image that is also a backing file of
 * another disk), "another process" would send the user looking for the
 * wrong thing. */

struct open_image {
	const struct disk *disk;
	dev_t dev;
	ino_t ino;
	bool writable, locked, backing;
	struct open_image *next;
};

static pthread_mutex_t open_images_lock = PTHREAD_MUTEX_INITIALIZER;
static struct open_image *open_images;

static void open_image_add(const struct disk *disk, const struct stat *st,
			   const struct disk_options *opts)
{
	struct open_image *o = calloc(1, sizeof(*o));

	if (!o)
		return; /* only a message would be less precise */
	o->disk = disk;
	o->dev = st->st_dev;
	o->ino = st->st_ino;
	o->writable = !opts->read_only;
	o->locked = !opts->no_lock;
	o->backing = opts->backing_file;
	pthread_mutex_lock(&open_images_lock);
	o->next = open_images;
	open_images = o;
	pthread_mutex_unlock(&open_images_lock);
}

static void open_image_remove(const struct disk *disk)
{
	pthread_mutex_lock(&open_images_lock);
	for (struct open_image **p = &open_images; *p; p = &(*p)->next)
		if ((*p)->disk == disk) {
			struct open_image *o = *p;

			*p = o->next;
			free(o);
			break;
		}
	pthread_mutex_unlock(&open_images_lock);
}

/* The lock of |st| cannot be had: say who holds it, if it is us. */
static void lock_conflict_why(const struct stat *st, bool writable,
			      char *why, size_t why_len)
{
	const struct open_image *held = NULL;

	pthread_mutex_lock(&open_images_lock);
	for (const struct open_image *o = open_images; o && !held; o = o->next)
		if (o->dev == st->st_dev && o->ino == st->st_ino &&
		    o->locked && (o->writable || writable))
			held = o;
	if (held)
		disk_set_why(why, why_len,
			     "the same image as %s '%s' (locked by it)",
			     held->backing ? "backing file" : "disk",
			     held->disk->path);
	else
		disk_set_why(why, why_len, "image is locked by another process "
			     "(in use by another VM?)");
	pthread_mutex_unlock(&open_images_lock);
}

/* QEMU locks single bytes of an image: a read lock on byte 100 + N for
 * each permission N it holds (0 consistent read, 1 write, 2 write
 * unchanged, 3 resize), on 200 + N for each it does not share.  A
 * whole-file read lock does not conflict with any of them, so a
 * read-only open looks for a lock on byte 101: someone who may write
 * the image under us.  (A whole-file read lock there is another
 * reader, such as a read-only kite.) */
static bool writer_holds_byte_101(int fd)
{
	struct flock fl = {
		.l_type = F_WRLCK, .l_whence = SEEK_SET,
		.l_start = 101, .l_len = 1,
	};

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0 || fl.l_type == F_UNLCK)
		return false;
	return !(fl.l_type == F_RDLCK && fl.l_start == 0 && fl.l_len == 0);
}

static int lock_image(struct disk *disk, const struct stat *st,
		      const struct disk_options *opts, char *why,
		      size_t why_len)
{
	struct flock fl = {
		.l_type = opts->read_only ? F_RDLCK : F_WRLCK,
		.l_whence = SEEK_SET,
	};
	int err;

	if (fcntl(disk->fd, F_OFD_SETLK, &fl) < 0) {
		err = -errno;
		if (errno == EAGAIN || errno == EACCES) {
			lock_conflict_why(st, !opts->read_only, why, why_len);
			return -EBUSY;
		}
		disk_set_why(why, why_len, "cannot lock: %s", strerror(errno));
		return err;
	}
	if (opts->read_only && writer_holds_byte_101(disk->fd)) {
		if (!opts->shared) {
			disk_set_why(why, why_len,
				     "image is open for writing by another "
				     "program (QEMU's lock on byte 101); "
				     "add 'shared' to read it anyway");
			return -EBUSY;
		}
		kite_warn("disk '%s': image is open for writing by another "
			  "program (QEMU's lock on byte 101); reading it "
			  "anyway (shared): the guest may see it change",
			  disk->path);
	}
	return 0;
}

int disk_file_open(struct disk *disk, const char *path,
		   const struct disk_options *opts, char *why, size_t why_len)
{
	int flags = (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
		    O_NONBLOCK | O_NOCTTY;
	bool backing = opts->backing_file;
	struct statfs sfs;
	struct stat st;
	int err, fl;

	if (opts->direct)
		flags |= O_DIRECT;
	/* Look first (following symbolic links, as open will): see "what
	 * may be opened" above.  A path that is not there is open's to
	 * report. */
	if (stat(path, &st) == 0) {
		err = check_file_type(st.st_mode, backing, why, why_len);
		if (!err && backing && statfs(path, &sfs) == 0)
			err = check_backing_fs(&sfs, why, why_len);
		if (err)
			return err;
	}
	/* The guest's reads are not accesses anyone asks about: without
	 * O_NOATIME every read checks (and once a day writes) the image's
	 * access time.  Only the file's owner (or CAP_FOWNER) may ask for
	 * it; anyone else gets the plain open. */
	disk->fd = open(path, flags | O_NOATIME);
	if (disk->fd < 0 && errno == EPERM)
		disk->fd = open(path, flags);
	if (disk->fd < 0) {
		err = -errno;
		disk_set_why(why, why_len, "cannot open%s: %s",
			opts->read_only ? "" : " for writing", strerror(errno));
		return err;
	}
	if (fstat(disk->fd, &st) < 0) {
		err = -errno;
		disk_set_why(why, why_len, "stat: %s", strerror(errno));
		return err;
	}
	/* Again on what was opened: the path may have changed since. */
	err = check_file_type(st.st_mode, backing, why, why_len);
	if (err)
		return err;
	if (backing) {
		if (fstatfs(disk->fd, &sfs) < 0) {
			err = -errno;
			disk_set_why(why, why_len, "statfs: %s",
				     strerror(errno));
			return err;
		}
		err = check_backing_fs(&sfs, why, why_len);
		if (err)
			return err;
	}
	/* O_NONBLOCK was for the open only: io_uring would answer EAGAIN
	 * instead of waiting for a read of a non-blocking file. */
	fl = fcntl(disk->fd, F_GETFL);
	if (fl < 0 || fcntl(disk->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		err = -errno;
		disk_set_why(why, why_len, "fcntl: %s", strerror(errno));
		return err;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;
		int lbs = 512;
		unsigned pbs = 4096;

		if (ioctl(disk->fd, BLKGETSIZE64, &bytes) < 0) {
			err = -errno;
			disk_set_why(why, why_len, "BLKGETSIZE64: %s",
				strerror(errno));
			return err;
		}
		if (ioctl(disk->fd, BLKSSZGET, &lbs) < 0 || lbs < 512)
			lbs = 512;
		if (ioctl(disk->fd, BLKPBSZGET, &pbs) < 0 ||
		    pbs < (unsigned)lbs)
			pbs = (unsigned)lbs;
		disk->is_blockdev = true;
		disk->size = bytes;
		disk->logical_block = (uint32_t)lbs;
		disk->physical_block = pbs;
		disk->discard_granularity = pbs;
	} else {
		disk->size = (uint64_t)st.st_size;
		/* Buffered I/O addresses single sectors; O_DIRECT what the
		 * file system says it can (see direct_io_block). */
		disk->logical_block = opts->direct ? direct_io_block(disk->fd)
						   : 512;
		disk->physical_block = st.st_blksize >= 512 &&
					       st.st_blksize <= 65536
					       ? (uint32_t)st.st_blksize
					       : 4096;
		if (disk->physical_block < disk->logical_block)
			disk->physical_block = disk->logical_block;
		disk->discard_granularity = disk->physical_block;
	}
	disk->read_only = opts->read_only;
	if (opts->direct && opts->min_dio_block > disk->logical_block) {
		if (opts->min_dio_block & (opts->min_dio_block - 1) ||
		    opts->min_dio_block > 65536) {
			disk_set_why(why, why_len, "O_DIRECT block of %u bytes: "
				     "not a power of two up to 64 KiB",
				     opts->min_dio_block);
			return -EINVAL;
		}
		disk->logical_block = opts->min_dio_block;
		if (disk->physical_block < disk->logical_block)
			disk->physical_block = disk->logical_block;
	}
	disk->dio_block = opts->direct ? disk->logical_block : 0;

	if (!opts->no_lock) {
		err = lock_image(disk, &st, opts, why, why_len);
		if (err)
			return err;
	}
	open_image_add(disk, &st, opts);
	return 0;
}

static void disk_free(struct disk *disk)
{
	open_image_remove(disk);
	if (disk->fd >= 0)
		close(disk->fd);
	free(disk->path);
	free(disk);
}

int disk_open_depth(const char *path, const struct disk_options *opts,
		    unsigned depth, struct disk **out, char *why,
		    size_t why_len)
{
	struct disk *disk;
	bool is_qcow2;
	int err;

	*out = NULL;
	if (depth > DISK_MAX_BACKING_DEPTH) {
		disk_set_why(why, why_len, "backing chain deeper than %d images",
			DISK_MAX_BACKING_DEPTH);
		return -ELOOP;
	}
	disk = calloc(1, sizeof(*disk));
	if (!disk)
		return -ENOMEM;
	disk->fd = -1;
	disk->event_fd = -1;
	disk->path = strdup(path);
	if (!disk->path) {
		free(disk);
		return -ENOMEM;
	}
	err = disk_file_open(disk, path, opts, why, why_len);
	if (err)
		goto fail;

	is_qcow2 = qcow2_probe(disk->fd);
	if (opts->format == DISK_FORMAT_QCOW2 ||
	    (opts->format == DISK_FORMAT_AUTO && is_qcow2)) {
		if (!is_qcow2) {
			disk_set_why(why, why_len,
				"qcow2 header: bad magic (not a qcow2 image)");
			err = -EINVAL;
			goto fail;
		}
		err = qcow2_open(disk, opts, depth, why, why_len);
		if (err)
			goto fail;
	} else {
		disk->ops = &disk_raw_ops;
		disk->probed_raw = opts->format == DISK_FORMAT_AUTO;
	}
	err = disk_engine_init(disk, opts->aio);
	if (err) {
		disk_set_why(why, why_len, "cannot set up asynchronous I/O: %s",
			strerror(-err));
		if (disk->ops->close)
			disk->ops->close(disk);
		goto fail;
	}
	*out = disk;
	return 0;

fail:
	disk_free(disk);
	return err;
}

/* With -v: the chain |disk| resolved to, once per disk, e.g.
 * disk 'top.qcow2': qcow2, backing '/abs/base.qcow2' (qcow2) -> '/abs/x.raw' (raw)
 * (backing files by their real path: the name in the image is relative
 * to it, and may pass through symbolic links). */
static void report_chain(const char *path, const struct disk *disk)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return;
	fputs(disk_format_name(disk), f);
	for (const struct disk *b = disk->backing; b; b = b->backing) {
		char *real = realpath(b->path, NULL);

		fprintf(f, "%s'%s' (%s)",
			b == disk->backing ? ", backing " : " -> ",
			real ? real : b->path, disk_format_name(b));
		free(real);
	}
	if (fclose(f) == 0)
		kite_info("disk '%s': %s", path, text);
	free(text);
}

int disk_open(const char *path, const struct disk_options *opts,
	      struct disk **out, char *why, size_t why_len)
{
	static const struct disk_options defaults;
	int err;

	if (why && why_len)
		why[0] = '\0';
	err = disk_open_depth(path, opts ? opts : &defaults, 0, out, why,
			      why_len);
	if (!err && kite_verbose)
		report_chain(path, *out);
	return err;
}

int disk_open_queue(struct disk *disk, struct disk **out)
{
	struct disk *q;
	int err;

	*out = NULL;
	if (disk->parent)
		disk = disk->parent;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	/* The image (fd, backend state, geometry) is shared; the engine
	 * is this handle's own. */
	q->ops = disk->ops;
	q->priv = disk->priv;
	q->parent = disk;
	q->fd = disk->fd;
	q->size = disk->size;
	q->read_only = disk->read_only;
	q->is_blockdev = disk->is_blockdev;
	q->probed_raw = disk->probed_raw;
	q->logical_block = disk->logical_block;
	q->dio_block = disk->dio_block;
	q->physical_block = disk->physical_block;
	q->discard_granularity = disk->discard_granularity;
	q->event_fd = -1;
	err = disk_engine_init(q, disk->uring_ok ? DISK_AIO_AUTO
						 : DISK_AIO_THREADS);
	if (err) {
		free(q);
		return err;
	}
	*out = q;
	return 0;
}

int disk_close(struct disk *disk)
{
	int err = 0;

	if (!disk)
		return 0;
	disk_drain(disk);
	if (disk->parent) {
		disk_engine_destroy(disk);
		free(disk);
		return 0;
	}
	if (!disk->read_only) {
		struct disk_request req = { .disk = disk, .op = DISK_OP_FLUSH };

		err = disk->ops->exec(disk, &req);
	}
	if (disk->ops->close) {
		int e = disk->ops->close(disk);

		if (!err)
			err = e;
	}
	disk_engine_destroy(disk);
	disk_free(disk);
	return err;
}

uint64_t disk_size(const struct disk *disk)
{
	return disk->size;
}

bool disk_read_only(const struct disk *disk)
{
	return disk->read_only;
}

const char *disk_format_name(const struct disk *disk)
{
	return disk->ops->name;
}

uint32_t disk_logical_block_size(const struct disk *disk)
{
	return disk->logical_block;
}

uint32_t disk_physical_block_size(const struct disk *disk)
{
	return disk->physical_block;
}

uint32_t disk_discard_granularity(const struct disk *disk)
{
	return disk->discard_granularity;
}

bool disk_uses_io_uring(const struct disk *disk)
{
	return disk->uring_ok;
}

/* ---- the aio engine --------------------------------------------------- */

/* A request as the engine allocates it: what the backend sees, and the
 * engine's own part. */
struct engine_request {
	struct disk_request req;  /* first: the spares list links these */
	void *copy;               /* the data of a covers_head() write */
	struct iovec copy_iov;
};

static struct engine_request *engine_request(struct disk_request *req)
{
	return (struct engine_request *)req;
}

static void signal_event(struct disk *disk)
{
	uint64_t one = 1;

	if (write(disk->event_fd, &one, sizeof(one)) < 0) {
		/* Only EAGAIN at counter saturation: already signalled. */
	}
}

/* ---- the write guard --------------------------------------------------
 * With O_DIRECT, a write that covers a block of the file only in part is
 * a read-modify-write of the whole block (disk_fd_rw's bounce buffer).
 * Two of them in one block, or one beside any other write to it, could
 * each write the block back with the other's bytes still old: a lost
 * write.  Drivers do write single 512-byte sectors whatever blk_size
 * says (for virtio-blk it is advice on performance, not a unit of the
 * protocol: virtio 1.2 §5.2.5), so on a file system that does direct
 * I/O in 4 KiB blocks this would hit well-behaved guests.  So on a
 * direct disk every write (write, write zeroes, discard) holds its
 * range, rounded out to whole blocks, from when it starts to when it is
 * done, and a write that would overlap a held range waits.  Waiting
 * happens in a pool worker only: a write that finds its blocks free is
 * held at once and may go to io_uring; one that does not goes to the
 * pool, whose worker waits for them.  A held write is always running (in
 * the kernel or in a worker that holds nothing else), so the waits end.
 * One guard per image, in its first handle, shared by the queue
 * handles. */

static bool guarded(const struct disk *disk, enum disk_op op)
{
	return disk_dio_block(disk) &&
	       (op == DISK_OP_WRITE || op == DISK_OP_DISCARD ||
		op == DISK_OP_WRITE_ZEROES);
}

static struct disk *guard_of(struct disk *disk)
{
	return disk->parent ? disk->parent : disk;
}

/* Is any write held in |g| overlapping |req|'s blocks?  Under guard_lock. */
static bool guard_busy(const struct disk *g, const struct disk_request *req)
{
	for (const struct disk_request *h = g->guard_held; h; h = h->held_next)
		if (h->held_start < req->held_end &&
		    req->held_start < h->held_end)
			return true;
	return false;
}

static void guard_hold_locked(struct disk *g, struct disk_request *req)
{
	req->held = true;
	req->held_prev = NULL;
	req->held_next = g->guard_held;
	if (g->guard_held)
		g->guard_held->held_prev = req;
	g->guard_held = req;
}

/* Hold |req|'s blocks: at once if free (true), else only if |wait|. */
static bool guard_hold(struct disk *disk, struct disk_request *req, bool wait)
{
	struct disk *g = guard_of(disk);
	uint64_t bs = disk_dio_block(disk);
	bool got = true;

	req->held_start = req->offset & ~(bs - 1);
	req->held_end = (req->offset + req->len + bs - 1) & ~(bs - 1);
	pthread_mutex_lock(&g->guard_lock);
	while (guard_busy(g, req)) {
		if (!wait) {
			got = false;
			break;
		}
		pthread_cond_wait(&g->guard_cond, &g->guard_lock);
	}
	if (got)
		guard_hold_locked(g, req);
	pthread_mutex_unlock(&g->guard_lock);
	return got;
}

static void guard_release(struct disk *disk, struct disk_request *req)
{
	struct disk *g = guard_of(disk);

	if (!req->held)
		return;
	pthread_mutex_lock(&g->guard_lock);
	if (req->held_prev)
		req->held_prev->held_next = req->held_next;
	else
		g->guard_held = req->held_next;
	if (req->held_next)
		req->held_next->held_prev = req->held_prev;
	req->held = false;
	pthread_cond_broadcast(&g->guard_cond);
	pthread_mutex_unlock(&g->guard_lock);
}

/* Run |req| on the calling thread (a pool worker, a synchronous helper),
 * holding its blocks for the time if it is a guarded write. */
static int exec_held(struct disk *disk, struct disk_request *req)
{
	int err;

	if (guarded(disk, req->op))
		guard_hold(disk, req, true);
	err = disk->ops->exec(disk, req);
	guard_release(disk, req);
	return err;
}

static void *pool_worker(void *arg)
{
	struct disk *disk = arg;

	pthread_mutex_lock(&disk->pool_lock);
	for (;;) {
		struct disk_request *req;

		while (!disk->pool_stop && !disk->pool_head)
			pthread_cond_wait(&disk->pool_cond, &disk->pool_lock);
		if (!disk->pool_head)
			break; /* stopping and nothing queued */
		req = disk->pool_head;
		disk->pool_head = req->next;
		if (!disk->pool_head)
			disk->pool_tail = NULL;
		pthread_mutex_unlock(&disk->pool_lock);

		req->result = exec_held(disk, req);

		pthread_mutex_lock(&disk->pool_lock);
		req->next = disk->done;
		/* atomic: disk_completions_ready() peeks without the lock */
		__atomic_store_n(&disk->done, req, __ATOMIC_RELEASE);
		signal_event(disk);
	}
	pthread_mutex_unlock(&disk->pool_lock);
	return NULL;
}

int disk_engine_init(struct disk *disk, enum disk_aio aio)
{
	int err;

	pthread_mutex_init(&disk->guard_lock, NULL);
	pthread_cond_init(&disk->guard_cond, NULL);
	pthread_mutex_init(&disk->pool_lock, NULL);
	pthread_cond_init(&disk->pool_cond, NULL);
	disk->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (disk->event_fd < 0)
		return -errno;
	if (aio != DISK_AIO_THREADS && disk->ops->submit) {
		err = io_uring_queue_init(DISK_URING_ENTRIES, &disk->ring, 0);
		if (err == 0) {
			err = io_uring_register_eventfd(&disk->ring,
							disk->event_fd);
			if (err)
				io_uring_queue_exit(&disk->ring);
		}
		if (err == 0)
			disk->uring_ok = true;
		else if (aio == DISK_AIO_IO_URING)
			goto fail;
		/* else: ENOSYS (no io_uring), EPERM (seccomp, sysctl):
		 * carry on with the thread pool. */
	}
	/* The pool threads start with the first request that needs them
	 * (an io_uring raw disk may never need them). */
	return 0;

fail:
	disk_engine_destroy(disk);
	return err;
}

void disk_engine_destroy(struct disk *disk)
{
	pthread_mutex_lock(&disk->pool_lock);
	disk->pool_stop = true;
	pthread_cond_broadcast(&disk->pool_cond);
	pthread_mutex_unlock(&disk->pool_lock);
	for (unsigned i = 0; i < disk->nr_pool_threads; i++)
		pthread_join(disk->pool_threads[i], NULL);
	disk->nr_pool_threads = 0;
	if (disk->uring_ok) {
		io_uring_queue_exit(&disk->ring);
		disk->uring_ok = false;
	}
	if (disk->event_fd >= 0)
		close(disk->event_fd);
	disk->event_fd = -1;
	while (disk->spare) {
		struct disk_request *next = disk->spare->next;

		free(engine_request(disk->spare));
		disk->spare = next;
	}
	disk->nr_spare = 0;
}

static int pool_enqueue(struct disk *disk, struct disk_request *req)
{
	while (disk->nr_pool_threads < DISK_POOL_THREADS) {
		int err = pthread_create(
			&disk->pool_threads[disk->nr_pool_threads], NULL,
			pool_worker, disk);

		if (err) {
			if (!disk->nr_pool_threads)
				return -err;
			break; /* fewer threads will do */
		}
		disk->nr_pool_threads++;
	}
	req->next = NULL;
	pthread_mutex_lock(&disk->pool_lock);
	if (disk->pool_tail)
		disk->pool_tail->next = req;
	else
		disk->pool_head = req;
	disk->pool_tail = req;
	pthread_cond_signal(&disk->pool_cond);
	pthread_mutex_unlock(&disk->pool_lock);
	return 0;
}

static bool range_ok(const struct disk *disk, uint64_t offset, uint64_t len)
{
	return offset <= disk->size && len <= disk->size - offset;
}

/* ---- the head of a probed raw image -------------------------------------
 * A guest must not turn a probed raw image into a qcow2 one (whose
 * backing file could then name any host file on the next start): a
 * write that would put the qcow2 magic at offset 0 of such an image is
 * refused.  The bytes checked must be the bytes written: the write reads
 * its buffer again later (io_uring, a pool worker), and a second guest
 * thread could change guest memory in between.  So a write that covers
 * any of bytes 0-3 is copied (the whole request: such writes are rare)
 * into a buffer the request owns, checked there and written from there.
 * A write covering those bytes only in part is checked together with
 * what the file holds in the others; virtio-blk's writes are whole
 * sectors, so a guest cannot split the magic over two writes. */

static const uint8_t qcow2_magic[4] = { 'Q', 'F', 'I', 0xfb };

static bool covers_head(const struct disk *disk, enum disk_op op,
			uint64_t offset, uint64_t len)
{
	return disk->probed_raw && op == DISK_OP_WRITE && offset < 4 &&
	       len > 0;
}

/* Copy the data of a write that covers_head() into *|copy| (freed by the
 * caller, also on failure), describe it in |copy_iov|, and check it: 0,
 * -EPERM for the qcow2 magic, or another negative errno. */
static int copy_head(struct disk *disk, uint64_t offset, uint64_t len,
		     const struct iovec *iov, int iovcnt, void **copy,
		     struct iovec *copy_iov)
{
	size_t align = disk_dio_block(disk) > 4096 ? disk_dio_block(disk)
						   : 4096;
	uint8_t head[4] = { 0 };
	int err;

	*copy = NULL;
	if (len > SIZE_MAX || posix_memalign(copy, align, (size_t)len))
		return -ENOMEM;
	iov_to_buf(iov, iovcnt, 0, *copy, len);
	copy_iov->iov_base = *copy;
	copy_iov->iov_len = (size_t)len;
	if (offset > 0 || len < 4) {
		struct iovec hiov = { head, sizeof(head) };

		err = disk_fd_rw(disk->fd, disk_dio_block(disk), 0, &hiov, 1,
				 false);
		if (err)
			return err;
	}
	memcpy(head + offset, *copy, len < 4 - offset ? len : 4 - offset);
	return memcmp(head, qcow2_magic, 4) == 0 ? -EPERM : 0;
}

/* Hand the prepared SQEs to the kernel. */
static void uring_flush(struct disk *disk)
{
	io_uring_submit(&disk->ring);
	disk->uring_queued = 0;
}

int disk_uring_rw(struct disk *disk, struct disk_request *req)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&disk->ring);

	if (!sqe) {
		uring_flush(disk);
		sqe = io_uring_get_sqe(&disk->ring);
		if (!sqe)
			return -EOPNOTSUPP;
	}
	if (req->op == DISK_OP_FLUSH) {
		io_uring_prep_fsync(sqe, disk->fd, IORING_FSYNC_DATASYNC);
	} else if (req->iovcnt == 1 && req->iov[0].iov_len <= UINT32_MAX) {
		/* One segment (the usual 4 KiB request): the plain ops, which
		 * spare the kernel copying and checking an iovec array. */
		io_uring_prep_rw(req->op == DISK_OP_READ ? IORING_OP_READ
							 : IORING_OP_WRITE,
				 sqe, disk->fd, req->iov[0].iov_base,
				 (unsigned)req->iov[0].iov_len,
				 req->file_offset);
	} else {
		io_uring_prep_rw(req->op == DISK_OP_READ ? IORING_OP_READV
							 : IORING_OP_WRITEV,
				 sqe, disk->fd, req->iov, (unsigned)req->iovcnt,
				 req->file_offset);
	}
	io_uring_sqe_set_data(sqe, req);
	disk->uring_queued++;
	if (!disk->plugged)
		uring_flush(disk);
	return 0;
}

/* Requests are made and finished on the owner thread only (pool workers
 * hand theirs back through |done|), so the spares need no lock. */
#define DISK_MAX_SPARE 256

static struct disk_request *req_alloc(struct disk *disk)
{
	struct disk_request *req = disk->spare;

	if (!req) {
		struct engine_request *er = calloc(1, sizeof(*er));

		return er ? &er->req : NULL;
	}
	disk->spare = req->next;
	disk->nr_spare--;
	memset(engine_request(req), 0, sizeof(struct engine_request));
	return req;
}

/* Every request ends here, completed or refused: its copy goes too. */
static void req_free(struct disk *disk, struct disk_request *req)
{
	struct engine_request *er = engine_request(req);

	free(er->copy);
	er->copy = NULL;
	if (disk->nr_spare >= DISK_MAX_SPARE) {
		free(er);
		return;
	}
	req->next = disk->spare;
	disk->spare = req;
	disk->nr_spare++;
}

static int submit(struct disk *disk, enum disk_op op, uint64_t offset,
		  uint64_t len, const struct iovec *iov, int iovcnt,
		  bool may_unmap, disk_complete_fn cb, void *opaque)
{
	struct disk_request *req;
	int err;

	if (op != DISK_OP_READ && op != DISK_OP_FLUSH && disk->read_only)
		return -EROFS;
	if (op != DISK_OP_FLUSH && !range_ok(disk, offset, len))
		return -EINVAL;
	if (iovcnt < 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	req = req_alloc(disk);
	if (!req)
		return -ENOMEM;
	if (covers_head(disk, op, offset, len)) {
		struct engine_request *er = engine_request(req);

		err = copy_head(disk, offset, len, iov, iovcnt, &er->copy,
				&er->copy_iov);
		if (err) {
			req_free(disk, req);
			return err;
		}
		iov = &er->copy_iov;
		iovcnt = 1;
	}
	req->disk = disk;
	req->op = op;
	req->offset = offset;
	req->len = len;
	req->iov = iov;
	req->iovcnt = iovcnt;
	req->may_unmap = may_unmap;
	req->cb = cb;
	req->opaque = opaque;
	disk->inflight++;
	/* A guarded write goes to io_uring only if its blocks are free now
	 * (see the write guard); otherwise, or if the backend cannot take
	 * it, a pool worker holds them first. */
	if (disk->uring_ok && disk->ops->submit &&
	    (!guarded(disk, op) || guard_hold(disk, req, false))) {
		err = disk->ops->submit(disk, req);
		if (err == 0) {
			disk->via_uring++;
			return 0;
		}
		guard_release(disk, req);
		if (err != -EOPNOTSUPP) {
			disk->inflight--;
			req_free(disk, req);
			return err;
		}
	}
	err = pool_enqueue(disk, req);
	if (err) {
		disk->inflight--;
		req_free(disk, req);
	} else {
		disk->via_pool++;
	}
	return err;
}

int disk_submit_readv(struct disk *disk, uint64_t offset,
		      const struct iovec *iov, int iovcnt,
		      disk_complete_fn cb, void *opaque)
{
	return submit(disk, DISK_OP_READ, offset, iov_total(iov, iovcnt), iov,
		      iovcnt, false, cb, opaque);
}

int disk_submit_writev(struct disk *disk, uint64_t offset,
		       const struct iovec *iov, int iovcnt,
		       disk_complete_fn cb, void *opaque)
{
	return submit(disk, DISK_OP_WRITE, offset, iov_total(iov, iovcnt), iov,
		      iovcnt, false, cb, opaque);
}

int disk_submit_flush(struct disk *disk, disk_complete_fn cb, void *opaque)
{
	return submit(disk, DISK_OP_FLUSH, 0, 0, NULL, 0, false, cb, opaque);
}

int disk_submit_discard(struct disk *disk, uint64_t offset, uint64_t len,
			disk_complete_fn cb, void *opaque)
{
	return submit(disk, DISK_OP_DISCARD, offset, len, NULL, 0, false, cb,
		      opaque);
}

int disk_submit_write_zeroes(struct disk *disk, uint64_t offset,
			     uint64_t len, bool may_unmap,
			     disk_complete_fn cb, void *opaque)
{
	return submit(disk, DISK_OP_WRITE_ZEROES, offset, len, NULL, 0,
		      may_unmap, cb, opaque);
}

void disk_plug(struct disk *disk)
{
	disk->plugged = true;
}

void disk_unplug(struct disk *disk)
{
	disk->plugged = false;
	if (disk->uring_ok && disk->uring_queued)
		uring_flush(disk);
}

int disk_completion_fd(const struct disk *disk)
{
	return disk->event_fd;
}

bool disk_completions_ready(struct disk *disk)
{
	if (disk->uring_ok && io_uring_cq_ready(&disk->ring))
		return true;
	return __atomic_load_n(&disk->done, __ATOMIC_ACQUIRE) != NULL;
}

void disk_quiet_completions(struct disk *disk, bool quiet)
{
	if (disk->uring_ok && disk->quiet != quiet &&
	    io_uring_cq_eventfd_toggle(&disk->ring, !quiet) == 0)
		disk->quiet = quiet;
}

unsigned disk_inflight(const struct disk *disk)
{
	return disk->inflight;
}

void disk_request_counts(const struct disk *disk, uint64_t *uring,
			 uint64_t *pool)
{
	*uring = disk->via_uring;
	*pool = disk->via_pool;
}

static void complete(struct disk *disk, struct disk_request *req)
{
	disk->inflight--;
	if (req->cb)
		req->cb(req->opaque, req->result);
	req_free(disk, req);
}

/* io_uring result to a request result.  A short read or write (rare:
 * EOF of a file, a signal) is finished synchronously. */
static int uring_result(struct disk *disk, struct disk_request *req, int res)
{
	struct iovec small[16], *rest = small;
	int n, err;

	if (res < 0)
		return res;
	if (req->op != DISK_OP_READ && req->op != DISK_OP_WRITE)
		return 0;
	if ((uint64_t)res >= req->len)
		return 0;
	if (req->iovcnt > 16) {
		rest = calloc((size_t)req->iovcnt, sizeof(*rest));
		if (!rest)
			return -ENOMEM;
	}
	n = iov_slice(req->iov, req->iovcnt, (uint64_t)res,
		      req->len - (uint64_t)res, rest, req->iovcnt);
	if (n < 0)
		err = n;
	else
		err = disk_fd_rw(disk->fd, disk_dio_block(disk),
				 req->file_offset + res, rest, n,
				 req->op == DISK_OP_WRITE);
	if (rest != small)
		free(rest);
	return err;
}

unsigned disk_process_completions(struct disk *disk)
{
	struct disk_request *done;
	unsigned count = 0;
	uint64_t val;

	/* Quiet: a polling caller; the fd is not being signalled, and a
	 * count left from before is read once signals are back. */
	if (!disk->quiet && read(disk->event_fd, &val, sizeof(val)) < 0) {
		/* EAGAIN: nothing signalled; look anyway. */
	}
	if (disk->uring_ok) {
		struct io_uring_cqe *cqe;

		while (io_uring_peek_cqe(&disk->ring, &cqe) == 0) {
			struct disk_request *req = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			io_uring_cqe_seen(&disk->ring, cqe);
			if (!req)
				continue;
			req->result = uring_result(disk, req, res);
			guard_release(disk, req);
			complete(disk, req);
			count++;
		}
	}
	pthread_mutex_lock(&disk->pool_lock);
	done = disk->done;
	__atomic_store_n(&disk->done, NULL, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&disk->pool_lock);
	while (done) {
		struct disk_request *next = done->next;

		complete(disk, done);
		count++;
		done = next;
	}
	return count;
}

void disk_drain(struct disk *disk)
{
	while (disk->inflight > 0) {
		struct pollfd pfd = { .fd = disk->event_fd, .events = POLLIN };

		if (disk->uring_ok && disk->uring_queued)
			uring_flush(disk);
		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
			break;
		disk_process_completions(disk);
	}
}

/* ---- synchronous helpers ------------------------------------------------ */

static int run_sync(struct disk *disk, enum disk_op op, uint64_t offset,
		    uint64_t len, const struct iovec *iov, int iovcnt,
		    bool may_unmap)
{
	struct disk_request req = {
		.disk = disk, .op = op, .offset = offset, .len = len,
		.iov = iov, .iovcnt = iovcnt, .may_unmap = may_unmap,
	};
	struct iovec copy_iov;
	void *copy = NULL;
	int err;

	if (op != DISK_OP_READ && op != DISK_OP_FLUSH && disk->read_only)
		return -EROFS;
	if (op != DISK_OP_FLUSH && !range_ok(disk, offset, len))
		return -EINVAL;
	if (covers_head(disk, op, offset, len)) {
		/* The caller's buffer may be shared with other threads
		 * too: the same rule as for asynchronous writes. */
		err = copy_head(disk, offset, len, iov, iovcnt, &copy,
				&copy_iov);
		if (err) {
			free(copy);
			return err;
		}
		req.iov = &copy_iov;
		req.iovcnt = 1;
	}
	err = exec_held(disk, &req);
	free(copy);
	return err;
}

int disk_preadv(struct disk *disk, uint64_t offset, const struct iovec *iov,
		int iovcnt)
{
	return run_sync(disk, DISK_OP_READ, offset, iov_total(iov, iovcnt),
			iov, iovcnt, false);
}

int disk_pwritev(struct disk *disk, uint64_t offset, const struct iovec *iov,
		 int iovcnt)
{
	return run_sync(disk, DISK_OP_WRITE, offset, iov_total(iov, iovcnt),
			iov, iovcnt, false);
}

int disk_pread(struct disk *disk, uint64_t offset, void *buf, size_t len)
{
	struct iovec iov = { buf, len };

	return disk_preadv(disk, offset, &iov, 1);
}

int disk_pwrite(struct disk *disk, uint64_t offset, const void *buf,
		size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return disk_pwritev(disk, offset, &iov, 1);
}

int disk_flush(struct disk *disk)
{
	return run_sync(disk, DISK_OP_FLUSH, 0, 0, NULL, 0, false);
}

int disk_discard(struct disk *disk, uint64_t offset, uint64_t len)
{
	return run_sync(disk, DISK_OP_DISCARD, offset, len, NULL, 0, false);
}

int disk_write_zeroes(struct disk *disk, uint64_t offset, uint64_t len,
		      bool may_unmap)
{
	return run_sync(disk, DISK_OP_WRITE_ZEROES, offset, len, NULL, 0,
			may_unmap);
}
