/* Guest physical memory: one memfd split around the PCI hole. */
#include "vmm/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int open_backing(uint64_t size, const char *hugetlb_dir)
{
	int fd;

	if (hugetlb_dir) {
		char path[4096];

		if (snprintf(path, sizeof(path), "%s/kite-XXXXXX", hugetlb_dir) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
		fd = mkstemp(path);
		if (fd < 0)
			return -errno;
		unlink(path); /* the mapping keeps it alive */
	} else {
		fd = memfd_create("kite-guest-ram", MFD_CLOEXEC);
		if (fd < 0)
			return -errno;
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int guest_memory_create(struct guest_memory *mem, uint64_t size,
			const char *hugetlb_dir)
{
	uint64_t low, high;
	int fd;

	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	if (size == 0 || size > (1ULL << 46))
		return -EINVAL;

	fd = open_backing(size, hugetlb_dir);
	if (fd < 0)
		return fd;
	mem->base = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (mem->base == MAP_FAILED) {
		int err = -errno;

		close(fd);
		mem->base = NULL;
		return err;
	}
	mem->fd = fd;
	mem->total = size;

	/* RAM below the hole, the remainder above 4 GiB. */
	low = size < GUEST_PCI_HOLE_START ? size : GUEST_PCI_HOLE_START;
	high = size - low;
	mem->regions[0] = (struct guest_memory_region){ 0, low, mem->base };
	mem->nr_regions = 1;
	if (high) {
		mem->regions[1] = (struct guest_memory_region){
			GUEST_PCI_HOLE_END, high, mem->base + low };
		mem->nr_regions = 2;
	}
	return 0;
}

void guest_memory_destroy(struct guest_memory *mem)
{
	if (mem->base)
		munmap(mem->base, mem->total);
	if (mem->fd >= 0)
		close(mem->fd);
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
}

int guest_memory_translate(const struct guest_memory *mem, uint64_t gpa,
			   uint64_t len, void **hva)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_memory_region *r = &mem->regions[i];
		uint64_t off;

		if (gpa < r->gpa)
			continue;
		off = gpa - r->gpa;
		if (off > r->size)
			continue;
		/* Written so that no sum can overflow: off <= size here. */
		if (len > r->size - off)
			return -EFAULT;
		if (off == r->size && len == 0 && i + 1 < mem->nr_regions &&
		    mem->regions[i + 1].gpa == gpa)
			continue; /* prefer the region that starts here */
		if (hva)
			*hva = r->hva + off;
		return 0;
	}
	return -EFAULT;
}

bool guest_memory_is_ram(const struct guest_memory *mem, uint64_t gpa,
			 uint64_t len)
{
	return guest_memory_translate(mem, gpa, len, NULL) == 0;
}

int guest_memory_read(const struct guest_memory *mem, uint64_t gpa,
		      void *buf, uint64_t len)
{
	void *p;
	int rc = guest_memory_translate(mem, gpa, len, &p);

	if (rc)
		return rc;
	memcpy(buf, p, len);
	return 0;
}

int guest_memory_write(const struct guest_memory *mem, uint64_t gpa,
		       const void *buf, uint64_t len)
{
	void *p;
	int rc = guest_memory_translate(mem, gpa, len, &p);

	if (rc)
		return rc;
	memcpy(p, buf, len);
	return 0;
}
