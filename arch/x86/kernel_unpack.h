/* Unpacking a bzImage's compressed payload on the host.
 *
 * A bzImage carries the kernel proper (vmlinux, an ELF64 image, followed
 * by its relocation table) compressed behind a small decompressor.  On a
 * PVM host the decompressor would run emulated for tens of minutes, so
 * Kite finds the payload (setup header payload_offset/payload_length, boot
 * protocol 2.08+), recognises the format by its magic and decompresses it
 * here: gzip (zlib), xz and lzma (liblzma), zstd (libzstd) and the legacy
 * lz4 frame (liblz4).  bzip2 and lzo are refused with -ENOTSUP.
 *
 * Unpacked kernels can be kept in a cache directory keyed by a hash of the
 * compressed payload, so a second boot of the same xz kernel skips ~1 s of
 * work. */
#ifndef KITE_ARCH_X86_KERNEL_UNPACK_H
#define KITE_ARCH_X86_KERNEL_UNPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kernel_compression {
	KERNEL_COMP_UNKNOWN = 0,
	KERNEL_COMP_GZIP,
	KERNEL_COMP_BZIP2,
	KERNEL_COMP_LZMA,
	KERNEL_COMP_XZ,
	KERNEL_COMP_LZO,
	KERNEL_COMP_LZ4,
	KERNEL_COMP_ZSTD,
};

/* Largest unpacked kernel or initramfs accepted: a guard against
 * decompression bombs.  Callers that know the guest's RAM pass that as a
 * lower cap (the _max variants): the output must fit there anyway.
 *
 * Decoder memory is capped too, whatever the stream's header asks for:
 * 128 MiB for xz and lzma (the dictionary; presets use at most 64 MiB),
 * a 2^27-byte (128 MiB) window for zstd.  See kernel_unpack.c. */
#define KERNEL_UNPACK_MAX_SIZE (1024ULL << 20)

/* Recognise a compressed stream by its leading magic bytes. */
enum kernel_compression kernel_compression_detect(const uint8_t *in,
						  size_t len);
/* "gzip", "xz", ...; "unknown" for KERNEL_COMP_UNKNOWN. */
const char *kernel_compression_name(enum kernel_compression comp);

/* Decompress |in| (format from its magic) into a malloc'd buffer the
 * caller frees.  The kernel build appends the unpacked size as a 32-bit
 * little-endian word; it sizes the buffer but is not trusted.  Returns 0,
 * -ENOTSUP for bzip2/lzo ("unsupported compression bzip2"), -ENOEXEC for an
 * unknown magic or corrupt/truncated data, -EFBIG when the output would
 * pass KERNEL_UNPACK_MAX_SIZE ("xz: unpacks to more than 1024 MiB"),
 * -E2BIG when the stream asks for more decoder memory than the cap ("xz
 * data needs 3072 MiB of decoder memory (limit 128 MiB)"), -ENOMEM when
 * an allocation fails; the reason goes to |err|. */
int kernel_unpack(const uint8_t *in, size_t len, uint8_t **out,
		  size_t *out_len, enum kernel_compression *comp,
		  char *err, size_t errlen);
/* Same, the output capped at |max| bytes (and KERNEL_UNPACK_MAX_SIZE). */
int kernel_unpack_max(const uint8_t *in, size_t len, uint64_t max,
		      uint8_t **out, size_t *out_len,
		      enum kernel_compression *comp, char *err, size_t errlen);

/* An initramfs as the kernel reads it: newc cpio archives and gzip, xz,
 * lzma or zstd streams of them, with NUL padding between, in any order
 * (Debian's initrd.img is an uncompressed microcode archive and a zstd
 * one).  Decompress every stream here and return the archives back to back
 * (each 4-aligned) in a malloc'd *out, so that a guest whose kernel code
 * is emulated only copies them.  Returns 0; -ENOENT when nothing is
 * compressed and -ENOTSUP for a segment of another kind (give the guest the
 * file as it is); -ENOEXEC for broken data; -EFBIG past
 * KERNEL_UNPACK_MAX_SIZE; -E2BIG past the decoder memory cap; -ENOMEM.
 * The reason goes to |err|. */
int initrd_unpack(const uint8_t *in, size_t len, uint8_t **out,
		  size_t *out_len, char *err, size_t errlen);
/* Same, the whole output capped at |max| bytes (and
 * KERNEL_UNPACK_MAX_SIZE). */
int initrd_unpack_max(const uint8_t *in, size_t len, uint64_t max,
		      uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* How many unpacked kernels the cache keeps (least recently used go). */
#define KERNEL_CACHE_KEEP 4

/* kernel_unpack_max() through the cache directory |cache_dir| (created if
 * missing; NULL or "" disables the cache); an entry larger than |max| is
 * not read.  Only slow formats (xz, lzma, gzip) are cached; lz4 and zstd
 * unpack faster than a cached copy reads back.  Entries are named vmlinux-HASH-LEN after the compressed payload.  *hit tells
 * whether the result came from the cache.  Cache failures never fail the
 * unpack: the payload is then decompressed as without a cache. */
int kernel_unpack_cached(const uint8_t *in, size_t len, uint64_t max,
			 const char *cache_dir, uint8_t **out, size_t *out_len,
			 enum kernel_compression *comp, bool *hit,
			 char *err, size_t errlen);

/* The default cache directory: $XDG_CACHE_HOME/kite, else $HOME/.cache/kite.
 * Writes it to |buf| and returns buf, or returns NULL when neither
 * variable is set (or it does not fit). */
const char *kernel_unpack_default_cache_dir(char *buf, size_t buflen);

#endif
