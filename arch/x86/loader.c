#include "arch/x86/loader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/bios.h"
#include "arch/x86/linux.h"
#include "arch/x86/multiboot.h"
#include "arch/x86/pvm.h"
#include "vmm/log.h"

static const char *file_type(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFIFO: return "a FIFO";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	case S_IFDIR: return "a directory";
	case S_IFSOCK: return "a socket";
	case S_IFLNK: return "a symbolic link";
	}
	return "of an unknown type";
}

int x86_open_input(const char *what, const char *path, int *fd_out,
		   uint64_t *size, char *err, size_t errlen)
{
	/* O_NONBLOCK: open() of a FIFO would wait for a writer, of some
	 * devices for carrier; a regular file ignores it. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	int rc;

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s '%s': %s", what, path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s '%s': %s", what, path, strerror(-rc));
		close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s '%s': is %s, not a regular file", what,
			 path, file_type(st.st_mode));
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	/* /proc and most /sys files say 0 whatever they hold. */
	if (st.st_size <= 0) {
		snprintf(err, errlen, "%s '%s': is empty (or a /proc or /sys "
			 "file, whose size is unknown)", what, path);
		close(fd);
		return -EINVAL;
	}
	*fd_out = fd;
	*size = (uint64_t)st.st_size;
	return 0;
}

int x86_read_input(const char *what, const char *path, uint64_t max,
		   const char *max_what, uint8_t **data, size_t *size,
		   char *err, size_t errlen)
{
	uint64_t len;
	uint8_t *buf;
	size_t done = 0;
	int fd, rc;

	rc = x86_open_input(what, path, &fd, &len, err, errlen);
	if (rc)
		return rc;
	/* Before any allocation: /proc/kcore says 128 TiB. */
	if (len > max) {
		snprintf(err, errlen, "%s '%s': %" PRIu64 " bytes, more than %s "
			 "(%" PRIu64 " MiB)", what, path, len, max_what,
			 max >> 20);
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t)len);
	if (!buf) {
		snprintf(err, errlen, "%s '%s': %" PRIu64 " bytes: out of memory",
			 what, path, len);
		close(fd);
		return -ENOMEM;
	}
	while (done < len) {
		ssize_t n = read(fd, buf + done, (size_t)len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s '%s': read: %s", what, path,
				 strerror(-rc));
			break;
		}
		if (n == 0) {
			/* A file that shrank, or a /sys file that holds less
			 * than its size says. */
			snprintf(err, errlen, "%s '%s': read %zu of %" PRIu64
				 " bytes: the file is shorter than its size says",
				 what, path, done, len);
			rc = -EIO;
			break;
		}
		done += (size_t)n;
	}
	close(fd);
	if (rc) {
		free(buf);
		return rc;
	}
	*data = buf;
	*size = done;
	return 0;
}

enum x86_kernel_format x86_kernel_detect(const uint8_t *image, size_t size)
{
	/* Linux boot protocol: "HdrS" at 0x202 (Documentation/arch/x86/boot.rst). */
	if (size >= 0x206 && memcmp(image + 0x202, "HdrS", 4) == 0)
		return X86_KERNEL_BZIMAGE;
	if (multiboot_detect(image, size))
		return X86_KERNEL_MULTIBOOT;
	if (size >= EI_NIDENT && memcmp(image, ELFMAG, SELFMAG) == 0 &&
	    image[EI_CLASS] == ELFCLASS64)
		return X86_KERNEL_ELF64;
	return X86_KERNEL_UNKNOWN;
}

static int load_linux(struct guest_memory *mem, const struct vm_config *cfg,
		      struct x86_load_context *ctx,
		      struct x86_boot_entry *entry, char *err, size_t errlen)
{
	static const enum x86_linux_boot protocols[] = {
		[BOOT_AUTO] = X86_LINUX_BOOT_AUTO,
		[BOOT_LINUX64] = X86_LINUX_BOOT_64,
		[BOOT_PVH] = X86_LINUX_BOOT_PVH,
		[BOOT_BZIMAGE64] = X86_LINUX_BOOT_BZIMAGE64,
	};
	struct x86_linux_params p = {
		.kernel_path = cfg->kernel_path,
		.initrd_path = cfg->initrd_path,
		.cmdline = cfg->cmdline,
		.rsdp_gpa = ctx->rsdp_gpa,
		.reserved_base = ctx->ecam_base,
		.reserved_size = ctx->ecam_size,
		.boot = protocols[cfg->boot],
	};
	struct x86_linux_info info;
	char *cmdline = NULL;
	int rc;

	if (ctx->pvm_profile) {
		/* The guest would inflate a compressed initramfs emulated:
		 * minutes for a few MiB. */
		p.unpack_initrd = true;

		cmdline = pvm_cmdline(cfg->cmdline, cfg->nr_serial);
		if (!cmdline)
			return -ENOMEM;
		p.cmdline = cmdline;
	}
	rc = x86_linux_load(mem, &p, entry, &info, err, errlen);
	if (!rc) {
		snprintf(ctx->kernel_version, sizeof(ctx->kernel_version), "%s",
			 info.kernel_version);
		ctx->kernel_start = info.kernel_start;
		ctx->kernel_end = info.kernel_end;
		if (info.initrd_size != info.initrd_file_size)
			kite_info("initrd '%s': unpacked on the host, %llu -> %llu bytes",
				  cfg->initrd_path,
				  (unsigned long long)info.initrd_file_size,
				  (unsigned long long)info.initrd_size);
	}
	if (!rc)
		kite_info("kernel '%s': Linux %s, %s payload %llu -> %llu bytes%s, unpacked in %.0f ms, loaded at 0x%llx-0x%llx, entry 0x%llx",
			  cfg->kernel_path, info.kernel_version,
			  info.compression,
			  (unsigned long long)info.payload_size,
			  (unsigned long long)info.unpacked_size,
			  info.cache_hit ? " (cached)" : "",
			  info.unpack_seconds * 1e3,
			  (unsigned long long)info.kernel_start,
			  (unsigned long long)info.kernel_end,
			  (unsigned long long)info.entry);
	free(cmdline);
	return rc;
}

/* --boot bios: the bzImage's own real-mode setup code, through Kite's
 * BIOS (bios.h). */
static int load_linux_bios(struct guest_memory *mem,
			   const struct vm_config *cfg,
			   const struct x86_load_context *ctx,
			   const uint8_t *image, size_t size,
			   struct x86_boot_entry *entry, char *err,
			   size_t errlen)
{
	struct x86_bios_linux_params p = {
		.kernel_path = cfg->kernel_path,
		.image = image,
		.image_size = size,
		.initrd_path = cfg->initrd_path,
		.cmdline = cfg->cmdline,
	};
	struct x86_bios_linux_info info;
	uint8_t *initrd = NULL;
	size_t initrd_size = 0;
	char *cmdline = NULL;
	int rc;

	if (cfg->initrd_path) {
		rc = x86_read_input("initrd", cfg->initrd_path, mem->total,
				    "guest RAM", &initrd, &initrd_size, err,
				    errlen);
		if (rc)
			return rc;
		p.initrd = initrd;
		p.initrd_size = initrd_size;
	}
	if (ctx->pvm_profile) {
		cmdline = pvm_cmdline(cfg->cmdline, cfg->nr_serial);
		if (!cmdline) {
			free(initrd);
			return -ENOMEM;
		}
		p.cmdline = cmdline;
	}
	rc = x86_bios_load_linux(mem, &p, entry, &info, err, errlen);
	if (!rc)
		kite_info("kernel '%s': Linux %s, boot protocol %u.%02u, BIOS boot: setup %u bytes at 0x%llx, kernel %u bytes at 0x%llx (room to 0x%llx), entry %04x:0000 in real mode",
			  cfg->kernel_path, info.kernel_version,
			  info.protocol_version >> 8,
			  info.protocol_version & 0xFF, info.setup_size,
			  X86_BIOS_SETUP_GPA, info.kernel_size,
			  X86_BIOS_KERNEL_GPA,
			  (unsigned long long)info.kernel_end,
			  entry->real_cs);
	free(cmdline);
	free(initrd);
	return rc;
}

int x86_load_kernel(struct guest_memory *mem, const struct vm_config *cfg,
		    struct x86_load_context *ctx,
		    struct x86_boot_entry *entry,
		    enum x86_kernel_format *format, char *err, size_t errlen)
{
	uint8_t *image = NULL, *initrd = NULL;
	size_t size = 0, initrd_size = 0;
	char why[256] = "";
	int rc;

	rc = x86_read_input("kernel", cfg->kernel_path, X86_KERNEL_FILE_MAX,
			    "the most kite reads", &image, &size, err, errlen);
	if (rc)
		return rc;
	*format = x86_kernel_detect(image, size);
	if (cfg->boot == BOOT_BIOS) {
		if (*format != X86_KERNEL_BZIMAGE) {
			snprintf(err, errlen,
				 "kernel '%s': option '--boot bios' needs a bzImage",
				 cfg->kernel_path);
			rc = -EINVAL;
		} else {
			rc = load_linux_bios(mem, cfg, ctx, image, size, entry,
					     err, errlen);
		}
		free(image);
		return rc;
	}
	if (*format == X86_KERNEL_BZIMAGE || *format == X86_KERNEL_ELF64) {
		free(image);
		return load_linux(mem, cfg, ctx, entry, err, errlen);
	}
	if (cfg->boot != BOOT_AUTO) {
		snprintf(err, errlen,
			 "kernel '%s': option '--boot' applies to Linux kernels only",
			 cfg->kernel_path);
		free(image);
		return -EINVAL;
	}
	if (cfg->initrd_path) {
		rc = x86_read_input("initrd", cfg->initrd_path, mem->total,
				    "guest RAM", &initrd, &initrd_size, err,
				    errlen);
		if (rc) {
			free(image);
			return rc;
		}
	}

	switch (*format) {
	case X86_KERNEL_MULTIBOOT:
		rc = multiboot_load(mem, image, size, initrd, initrd_size,
				    cfg->initrd_path ? cfg->initrd_path : "",
				    cfg->cmdline, entry, why, sizeof(why));
		break;
	default:
		rc = -ENOEXEC;
		snprintf(why, sizeof(why),
			 "unknown format (not a bzImage, vmlinux ELF or multiboot image)");
		break;
	}
	if (rc)
		snprintf(err, errlen, "kernel '%s': %s", cfg->kernel_path, why);
	free(image);
	free(initrd);
	return rc;
}
