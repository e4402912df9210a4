/* Raw images: regular files and block devices.  Reads, writes and
 * flushes go through io_uring when the engine has a ring; everything
 * else (discard, write-zeroes, O_DIRECT requests with unaligned buffers)
 * and every request without a ring runs on the pool with plain system
 * calls. */
#include "vmm/disk/disk_impl.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* ---- plain file I/O ------------------------------------------------------ */

/* Copy of an iovec we may advance over short transfers. */
static struct iovec *iov_dup(const struct iovec *iov, int iovcnt,
			     struct iovec *small, int nsmall)
{
	struct iovec *v = small;

	if (iovcnt > nsmall) {
		v = malloc(sizeof(*v) * (size_t)iovcnt);
		if (!v)
			return NULL;
	}
	memcpy(v, iov, sizeof(*v) * (size_t)iovcnt);
	return v;
}

static void iov_advance(struct iovec **v, int *cnt, size_t n)
{
	while (*cnt > 0 && n >= (*v)[0].iov_len) {
		n -= (*v)[0].iov_len;
		(*v)++;
		(*cnt)--;
	}
	if (*cnt > 0 && n) {
		(*v)[0].iov_base = (char *)(*v)[0].iov_base + n;
		(*v)[0].iov_len -= n;
	}
}

/* |dio_block|: the fd is O_DIRECT with that block (0: buffered).  A
 * direct read that comes back short and off a block boundary stopped at
 * the end of the file; reading on from there is unaligned, which ext4
 * answers with 0 (the end) but a file system may refuse (EINVAL), so
 * the rest reads as zeros at once. */
static int rw_full(int fd, uint32_t dio_block, uint64_t offset,
		   const struct iovec *iov, int iovcnt, bool write)
{
	struct iovec small[16], *copy, *v;
	int cnt = iovcnt, err = 0;

	copy = iov_dup(iov, iovcnt, small, 16);
	if (!copy)
		return -ENOMEM;
	v = copy;
	/* Skip leading empty entries so cnt==0 means done. */
	iov_advance(&v, &cnt, 0);
	while (cnt > 0) {
		ssize_t n = write ? pwritev(fd, v, cnt > IOV_MAX ? IOV_MAX : cnt,
					    (off_t)offset)
				  : preadv(fd, v, cnt > IOV_MAX ? IOV_MAX : cnt,
					   (off_t)offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		if (n == 0) {
			if (write) {
				err = -EIO;
				break;
			}
			/* Past the end of the file: reads as zeros. */
			for (int i = 0; i < cnt; i++)
				memset(v[i].iov_base, 0, v[i].iov_len);
			break;
		}
		offset += (uint64_t)n;
		iov_advance(&v, &cnt, (size_t)n);
		if (!write && dio_block && (offset & (dio_block - 1))) {
			for (int i = 0; i < cnt; i++)
				memset(v[i].iov_base, 0, v[i].iov_len);
			break;
		}
	}
	if (copy != small)
		free(copy);
	return err;
}

int disk_fd_punch_hole(struct disk *disk, uint64_t offset, uint64_t len)
{
	if (disk->is_blockdev) {
		uint64_t range[2] = { offset, len };

		if (ioctl(disk->fd, BLKDISCARD, range) < 0)
			return -errno;
		return 0;
	}
	if (fallocate(disk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)offset, (off_t)len) < 0)
		return -errno;
	return 0;
}

/* ---- O_DIRECT alignment ------------------------------------------------- */

bool disk_dio_aligned(uint32_t dio_block, uint64_t offset,
		      const struct iovec *iov, int iovcnt)
{
	uint64_t a = dio_block - 1, len = 0;

	if (!dio_block)
		return true;
	for (int i = 0; i < iovcnt; i++) {
		if (((uintptr_t)iov[i].iov_base & a) || (iov[i].iov_len & a))
			return false;
		len += iov[i].iov_len;
	}
	return !(offset & a) && !(len & a);
}

/* O_DIRECT I/O that is not block aligned: through an aligned bounce
 * buffer over the whole blocks it touches.  A write that covers a block
 * only in part reads that block first (disk.c's write guard keeps such
 * writes from racing other writes to the same blocks). */
static int rw_bounce(int fd, uint32_t bs, uint64_t offset,
		     const struct iovec *iov, int iovcnt, bool write)
{
	uint64_t len = iov_total(iov, iovcnt);
	uint64_t start = offset & ~(uint64_t)(bs - 1);
	uint64_t end = (offset + len + bs - 1) & ~(uint64_t)(bs - 1);
	struct iovec biov;
	void *buf;
	int err = 0;

	if (posix_memalign(&buf, bs, end - start))
		return -ENOMEM;
	biov.iov_base = buf;
	biov.iov_len = end - start;
	if (write) {
		if (start != offset || end != offset + len)
			err = rw_full(fd, bs, start, &biov, 1, false);
		if (!err) {
			iov_to_buf(iov, iovcnt, 0, (char *)buf + (offset - start),
				   len);
			err = rw_full(fd, bs, start, &biov, 1, true);
		}
	} else {
		err = rw_full(fd, bs, start, &biov, 1, false);
		if (!err)
			iov_from_buf(iov, iovcnt, 0,
				     (char *)buf + (offset - start), len);
	}
	free(buf);
	return err;
}

int disk_fd_rw(int fd, uint32_t dio_block, uint64_t offset,
	       const struct iovec *iov, int iovcnt, bool write)
{
	if (!disk_dio_aligned(dio_block, offset, iov, iovcnt))
		return rw_bounce(fd, dio_block, offset, iov, iovcnt, write);
	return rw_full(fd, dio_block, offset, iov, iovcnt, write);
}

/* ---- zeroes --------------------------------------------------------------- */

static int write_zero_buffers(struct disk *disk, uint64_t offset, uint64_t len)
{
	const uint64_t chunk = 1 << 20;
	void *buf;
	int err = 0;

	if (posix_memalign(&buf, 4096, chunk))
		return -ENOMEM;
	memset(buf, 0, chunk);
	while (len > 0 && !err) {
		struct iovec iov = { buf, len < chunk ? len : chunk };

		err = disk_fd_rw(disk->fd, disk_dio_block(disk), offset, &iov, 1,
				 true);
		offset += iov.iov_len;
		len -= iov.iov_len;
	}
	free(buf);
	return err;
}

static int raw_write_zeroes(struct disk *disk, uint64_t offset, uint64_t len,
			    bool may_unmap)
{
	int ret;

	if (len == 0)
		return 0;
	if (disk->is_blockdev) {
		uint64_t range[2] = { offset, len };

		if (ioctl(disk->fd, BLKZEROOUT, range) == 0)
			return 0;
	} else {
		/* A punched hole reads as zeros; ZERO_RANGE keeps the
		 * blocks allocated when unmapping is not allowed. */
		ret = fallocate(disk->fd,
				(may_unmap ? FALLOC_FL_PUNCH_HOLE
					   : FALLOC_FL_ZERO_RANGE) |
					FALLOC_FL_KEEP_SIZE,
				(off_t)offset, (off_t)len);
		if (ret == 0)
			return 0;
	}
	return write_zero_buffers(disk, offset, len);
}

/* ---- backend ops ---------------------------------------------------------- */

static int raw_exec(struct disk *disk, struct disk_request *req)
{
	int err;

	switch (req->op) {
	case DISK_OP_READ:
	case DISK_OP_WRITE:
		return disk_fd_rw(disk->fd, disk_dio_block(disk), req->offset,
				  req->iov, req->iovcnt,
				  req->op == DISK_OP_WRITE);
	case DISK_OP_FLUSH:
		return fdatasync(disk->fd) < 0 ? -errno : 0;
	case DISK_OP_DISCARD:
		if (req->len == 0)
			return 0;
		err = disk_fd_punch_hole(disk, req->offset, req->len);
		/* Discard is a hint: a file system or device without it
		 * simply keeps the data. */
		if (err == -EOPNOTSUPP || err == -ENOTTY || err == -EINVAL)
			err = 0;
		return err;
	case DISK_OP_WRITE_ZEROES:
		return raw_write_zeroes(disk, req->offset, req->len,
					req->may_unmap);
	}
	return -EINVAL;
}

static int raw_submit(struct disk *disk, struct disk_request *req)
{
	if (req->op == DISK_OP_DISCARD || req->op == DISK_OP_WRITE_ZEROES ||
	    !disk_dio_aligned(disk_dio_block(disk), req->offset, req->iov,
			      req->iovcnt))
		return -EOPNOTSUPP;
	req->file_offset = req->offset;
	return disk_uring_rw(disk, req);
}

const struct disk_backend_ops disk_raw_ops = {
	.name = "raw",
	.exec = raw_exec,
	.submit = raw_submit,
};
