/* Seed inputs for the fuzz targets, written to stdout (tests/fuzz/make-seeds
 * runs it; the seeds themselves are committed under corpus/).
 *
 *   seedgen qcow2 IMAGE OPS [PATCH]
 *                             a qemu-img image in fuzz_qcow2's sparse form
 *                             plus an op script: comma-separated
 *                             KIND:SECTOR:COUNT[:ARG], KIND one of
 *                             r w d z Z f c o (read, write, discard,
 *                             write-zeroes, the same with unmap, flush,
 *                             check all, reopen); PATCH corrupts the
 *                             image first (see qcow2_patch)
 *   seedgen loader KIND       multiboot | multiboot-aout | vmlinux |
 *                             vmlinux-pvh | bzimage-FORMAT (gzip xz lzma
 *                             zstd lz4) | bzimage-bios | bzimage-initrd |
 *                             unpack-xz | initrd-gzip
 *   seedgen virtq KIND        split | split-indirect | split-event-idx |
 *                             split-areas | packed | packed-indirect
 *
 * Built with the host compiler, not part of kite. */
#define _GNU_SOURCE
#include <elf.h>
#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

struct buf {
	uint8_t *data;
	size_t len, cap;
};

static void die(const char *msg)
{
	fprintf(stderr, "seedgen: %s\n", msg);
	exit(1);
}

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 4096;
		b->data = realloc(b->data, b->cap);
		if (!b->data)
			die("out of memory");
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void put8(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put16(struct buf *b, uint16_t v)
{
	v = htole16(v);
	put(b, &v, 2);
}

static void put32(struct buf *b, uint32_t v)
{
	v = htole32(v);
	put(b, &v, 4);
}

static void set32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void emit(const struct buf *b)
{
	if (fwrite(b->data, 1, b->len, stdout) != b->len)
		die("write failed");
}

/* ---- qcow2 --------------------------------------------------------------- */

static uint64_t be64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static void set_be64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

/* Corrupt the image the ways issue 14's findings did: the first L2 entry
 * (guest cluster 0, which the image must have written) or the first L1
 * entry made to point at metadata. */
static void qcow2_patch(uint8_t *img, size_t size, const char *how)
{
	uint64_t l1 = be64(img + 40), rt = be64(img + 48), l2, rb, e;
	unsigned bits = img[23];
	uint8_t *entry;

	if (size < 72 || l1 + 8 > size || rt + 8 > size)
		die("patch: no tables");
	l2 = be64(img + l1) & 0x00fffffffffffe00ull;
	rb = be64(img + rt) & ~0x1ffull;
	if (!l2 || l2 + 8 > size)
		die("patch: guest cluster 0 has no L2 table");
	entry = img + l2;
	e = be64(entry);
	if (!strcmp(how, "compressed-at-header")) {
		/* Compressed, at offset 0, one sector long. */
		set_be64(entry, 1ull << 62);
	} else if (!strcmp(how, "zero-at-l1")) {
		/* v3 zero flag keeping an offset: the L1 table's cluster. */
		set_be64(entry, (1ull << 63) | l1 | 1);
	} else if (!strcmp(how, "normal-at-refblock")) {
		set_be64(entry, (1ull << 63) | rb);
	} else if (!strcmp(how, "normal-at-own-l2")) {
		set_be64(entry, (1ull << 63) | l2);
	} else if (!strcmp(how, "l1-at-reftable")) {
		set_be64(img + l1, (1ull << 63) | rt);
	} else if (!strcmp(how, "compressed-oversized")) {
		/* The size field of a compressed entry at its maximum: the
		 * extent runs over the clusters after it. */
		unsigned shift = 62 - (bits - 8);

		if (!(e & (1ull << 62)))
			die("patch: guest cluster 0 is not compressed");
		set_be64(entry, e | (((1ull << (bits - 8)) - 1) << shift));
	} else {
		die("unknown patch");
	}
}

/* Non-zero runs of the file as chunks; runs closer than 32 bytes merge. */
static void qcow2_seed(const char *image, const char *ops, const char *patch)
{
	struct buf b = { 0 };
	FILE *f = fopen(image, "rb");
	uint8_t *img;
	long size;
	size_t i = 0;

	if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET))
		die("cannot read the image");
	if (size > (16l << 20))
		die("image over 16 MiB");
	img = malloc((size_t)size + 1);
	if (!img || fread(img, 1, (size_t)size, f) != (size_t)size)
		die("cannot read the image");
	fclose(f);
	if (patch)
		qcow2_patch(img, (size_t)size, patch);
	put32(&b, (uint32_t)size);
	while (i < (size_t)size) {
		size_t start, end, gap = 0;

		while (i < (size_t)size && !img[i])
			i++;
		if (i == (size_t)size)
			break;
		start = i;
		end = i;
		while (i < (size_t)size && i - start < 65535 && gap < 32) {
			if (img[i]) {
				end = i + 1;
				gap = 0;
			} else {
				gap++;
			}
			i++;
		}
		put32(&b, (uint32_t)start);
		put16(&b, (uint16_t)(end - start));
		put(&b, img + start, end - start);
		i = end;
	}
	put32(&b, 0);
	put16(&b, 0);
	free(img);

	for (const char *p = ops; *p;) {
		static const char kinds[] = "rwdzZfco";
		const char *k = strchr(kinds, *p);
		unsigned long sector = 0, count = 0, arg = 0;
		char *e;

		if (!k || !*p)
			die("bad op script");
		p++;
		if (*p == ':') {
			sector = strtoul(p + 1, &e, 0);
			p = e;
		}
		if (*p == ':') {
			count = strtoul(p + 1, &e, 0);
			p = e;
		}
		if (*p == ':') {
			arg = strtoul(p + 1, &e, 0);
			p = e;
		}
		put8(&b, (uint8_t)(k - kinds));
		put8(&b, (uint8_t)arg);
		put16(&b, (uint16_t)count);
		put32(&b, (uint32_t)sector);
		if (*p == ',')
			p++;
		else if (*p)
			die("bad op script");
	}
	emit(&b);
}

/* ---- loaders ------------------------------------------------------------ */

#define KERNEL_PADDR 0x1000000ull
#define KERNEL_VADDR 0xffffffff81000000ull

/* fuzz_loader's byte 0. */
enum { P_AUTO, P_PVH, P_BZIMAGE64, P_BIOS, P_MULTIBOOT, P_KERNEL_UNPACK,
       P_INITRD_UNPACK, P_ELF64 };
#define F_SPLIT  0x08
#define F_UNPACK 0x10

/* A two-segment vmlinux-like ELF64 with Xen notes (the unit tests' shape). */
static struct buf make_vmlinux(bool pvh)
{
	struct buf b = { calloc(1, 0x1300), 0x1300, 0x1300 };
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b.data;
	Elf64_Phdr ph[3];
	uint8_t *note = b.data + 0x800;
	size_t nlen = 0;
	uint32_t h1[3] = { 4, 6, 6 }, h2[3] = { 4, 8, 18 };
	uint64_t entry = KERNEL_PADDR + 0x40;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = KERNEL_VADDR + 0x10;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 3;
	memcpy(note, h1, 12);
	memcpy(note + 12, "Xen\0linux\0\0", 12);
	nlen = 24;
	if (pvh) {
		memcpy(note + nlen, h2, 12);
		memcpy(note + nlen + 12, "Xen", 4);
		memcpy(note + nlen + 16, &entry, 8);
		nlen += 24;
	}
	memset(ph, 0, sizeof(ph));
	ph[0] = (Elf64_Phdr){ PT_LOAD, PF_R | PF_X, 0x1000, KERNEL_VADDR,
			      KERNEL_PADDR, 0x200, 0x200, 0x200000 };
	ph[1] = (Elf64_Phdr){ PT_LOAD, PF_R | PF_W, 0x1200,
			      KERNEL_VADDR + 0x200000, KERNEL_PADDR + 0x200000,
			      0x80, 0x2000, 0x200000 };
	ph[2] = (Elf64_Phdr){ PT_NOTE, PF_R, 0x800, 0, 0, nlen, nlen, 4 };
	memcpy(b.data + sizeof(*eh), ph, sizeof(ph));
	for (unsigned i = 0; i < 0x280; i++)
		b.data[0x1000 + i] = (uint8_t)(i * 7 + 1);
	return b;
}

/* Compressed as the kernel build does: the stream, then the unpacked size
 * as le32 (gzip's trailer already ends with it). */
static struct buf compress_as(const char *fmt, const struct buf *in)
{
	size_t cap = in->len * 2 + 4096;
	struct buf b = { malloc(cap), 0, cap };

	if (!strcmp(fmt, "gzip")) {
		z_stream zs;

		memset(&zs, 0, sizeof(zs));
		if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			die("deflateInit2");
		zs.next_in = in->data;
		zs.avail_in = (uInt)in->len;
		zs.next_out = b.data;
		zs.avail_out = (uInt)cap;
		if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
			die("deflate");
		b.len = zs.total_out;
		deflateEnd(&zs);
		return b;
	} else if (!strcmp(fmt, "xz")) {
		/* A small dictionary: the decoder's, not only the seed. */
		lzma_options_lzma opt;
		lzma_filter filters[2] = { { LZMA_FILTER_LZMA2, &opt },
					   { LZMA_VLI_UNKNOWN, NULL } };

		lzma_lzma_preset(&opt, 0);
		opt.dict_size = 1 << 16;
		if (lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, NULL,
					      in->data, in->len, b.data, &b.len,
					      cap) != LZMA_OK)
			die("xz");
	} else if (!strcmp(fmt, "lzma")) {
		lzma_stream s = LZMA_STREAM_INIT;
		lzma_options_lzma opt;

		lzma_lzma_preset(&opt, 0);
		opt.dict_size = 1 << 16;
		if (lzma_alone_encoder(&s, &opt) != LZMA_OK)
			die("lzma");
		s.next_in = in->data;
		s.avail_in = in->len;
		s.next_out = b.data;
		s.avail_out = cap;
		if (lzma_code(&s, LZMA_FINISH) != LZMA_STREAM_END)
			die("lzma");
		b.len = s.total_out;
		lzma_end(&s);
	} else if (!strcmp(fmt, "zstd")) {
		b.len = ZSTD_compress(b.data, cap, in->data, in->len, 19);
		if (ZSTD_isError(b.len))
			die("zstd");
	} else if (!strcmp(fmt, "lz4")) {
		/* The legacy frame: magic, then [le32 size][block]... */
		int n;

		set32(b.data, 0x184C2102u);
		n = LZ4_compress_default((const char *)in->data,
					 (char *)b.data + 8, (int)in->len,
					 (int)cap - 16);
		if (n <= 0)
			die("lz4");
		set32(b.data + 4, (uint32_t)n);
		b.len = 8 + (size_t)n;
	} else {
		die("unknown compression");
	}
	set32(b.data + b.len, (uint32_t)in->len);
	b.len += 4;
	return b;
}

#define SETUP_SECTS 4
#define PM_OFF      ((SETUP_SECTS + 1) * 512)
#define PAYLOAD_OFF 0x200

/* A minimal bzImage (boot protocol 2.15) around |payload|. */
static struct buf make_bzimage(const struct buf *payload)
{
	size_t len = PM_OFF + PAYLOAD_OFF + payload->len;
	struct buf b = { calloc(1, len), len, len };
	uint8_t *h = b.data + 0x1F1;

	h[0] = SETUP_SECTS;                          /* setup_sects */
	memcpy(h + 0x0D, "\x55\xAA\xEB\x6A", 4);     /* boot_flag, jump */
	memcpy(h + 0x11, "HdrS\x0F\x02", 6);         /* header, version */
	h[0x1D] = 0x00;                              /* kernel_version */
	h[0x1E] = 0x01;                              /*   = 0x100 */
	h[0x20] = 0x01;                              /* loadflags */
	set32(h + 0x23, 0x100000);                   /* code32_start */
	set32(h + 0x3B, 0x7FFFFFFF);                 /* initrd_addr_max */
	set32(h + 0x3F, 0x200000);                   /* kernel_alignment */
	h[0x43] = 1;                                 /* relocatable */
	h[0x44] = 21;                                /* min_alignment */
	h[0x45] = 0x7F;                              /* xloadflags */
	set32(h + 0x47, 2047);                       /* cmdline_size */
	set32(h + 0x57, PAYLOAD_OFF);                /* payload_offset */
	set32(h + 0x5B, (uint32_t)payload->len);     /* payload_length */
	set32(h + 0x67, (uint32_t)KERNEL_PADDR);     /* pref_address */
	set32(h + 0x6F, 0x400000);                   /* init_size */
	strcpy((char *)b.data + 0x300, "6.1.0-fuzz (kite@seed) #1 SMP");
	memset(b.data + PM_OFF, 0xCC, PAYLOAD_OFF);  /* "decompressor" */
	memcpy(b.data + PM_OFF + PAYLOAD_OFF, payload->data, payload->len);
	return b;
}

/* A multiboot ELF32: one segment at 1 MiB, 0x300 bytes + bss. */
static struct buf make_multiboot(bool aout)
{
	struct buf b = { calloc(1, 0x1300), 0x1300, 0x1300 };
	const uint32_t flags = aout ? 0x10001u : 0x3u, base = 0x200000;
	Elf32_Ehdr eh;
	Elf32_Phdr ph;
	uint8_t *mbh = b.data + (aout ? 0x40 : 0x200);

	for (size_t i = 0x1000; i < 0x1300; i++)
		b.data[i] = (uint8_t)(i * 13 + 7);
	set32(mbh, 0x1BADB002u);
	set32(mbh + 4, flags);
	set32(mbh + 8, 0u - 0x1BADB002u - flags);
	if (aout) {
		for (size_t i = 0; i < 0x40; i++)
			b.data[i] = (uint8_t)(i ^ 0x3C);
		set32(mbh + 12, base + 0x40);    /* header_addr */
		set32(mbh + 16, base);           /* load_addr */
		set32(mbh + 20, base + 0x1300);  /* load_end_addr */
		set32(mbh + 24, base + 0x2000);  /* bss_end_addr */
		set32(mbh + 28, base + 0x1000);  /* entry_addr */
		return b;
	}
	memset(&eh, 0, sizeof(eh));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS32;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_386;
	eh.e_version = EV_CURRENT;
	eh.e_entry = 0x100010;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf32_Phdr);
	eh.e_phnum = 1;
	memcpy(b.data, &eh, sizeof(eh));
	memset(&ph, 0, sizeof(ph));
	ph.p_type = PT_LOAD;
	ph.p_offset = 0x1000;
	ph.p_vaddr = 0xC0100000u;
	ph.p_paddr = 0x100000;
	ph.p_filesz = 0x300;
	ph.p_memsz = 0x800;
	ph.p_flags = PF_R | PF_X;
	ph.p_align = 0x1000;
	memcpy(b.data + sizeof(eh), &ph, sizeof(ph));
	return b;
}

/* A newc cpio archive with one file and the trailer. */
static struct buf make_cpio(void)
{
	struct buf b = { 0 };
	const char *names[2] = { "init", "TRAILER!!!" };
	const char *body = "#!/bin/sh\necho fuzz\n";

	for (int i = 0; i < 2; i++) {
		char hdr[128];
		size_t nl = strlen(names[i]) + 1, fl = i ? 0 : strlen(body);
		static const uint8_t zero[4];

		snprintf(hdr, sizeof(hdr), "070701%08X%08X%08X%08X%08X%08X"
			 "%08zX%08X%08X%08X%08X%08zX%08X", i ? 0 : 1,
			 i ? 0 : 0100755, 0, 0, 1, 0, fl, 0, 0, 0, 0, nl, 0);
		put(&b, hdr, 110);
		put(&b, names[i], nl);
		put(&b, zero, (4 - (110 + nl) % 4) % 4);
		put(&b, body, fl);
		put(&b, zero, (4 - fl % 4) % 4);
	}
	return b;
}

static void loader_seed(const char *kind)
{
	struct buf out = { 0 }, k;

	if (!strcmp(kind, "multiboot") || !strcmp(kind, "multiboot-aout")) {
		put8(&out, P_AUTO);
		k = make_multiboot(!strcmp(kind, "multiboot-aout"));
	} else if (!strcmp(kind, "vmlinux") || !strcmp(kind, "vmlinux-pvh")) {
		put8(&out, kind[7] ? P_PVH : P_AUTO);
		k = make_vmlinux(true);
	} else if (!strncmp(kind, "bzimage-", 8) &&
		   strcmp(kind + 8, "bios") && strcmp(kind + 8, "initrd")) {
		struct buf elf = make_vmlinux(true);
		struct buf z = compress_as(kind + 8, &elf);

		put8(&out, P_AUTO);
		k = make_bzimage(&z);
	} else if (!strcmp(kind, "bzimage-bios")) {
		struct buf elf = make_vmlinux(false);
		struct buf z = compress_as("gzip", &elf);

		put8(&out, P_BIOS);
		k = make_bzimage(&z);
	} else if (!strcmp(kind, "bzimage-initrd")) {
		struct buf elf = make_vmlinux(true);
		struct buf z = compress_as("zstd", &elf);
		struct buf cpio = make_cpio(), zc = compress_as("gzip", &cpio);

		k = make_bzimage(&z);
		put8(&out, P_AUTO | F_SPLIT | F_UNPACK);
		put32(&out, (uint32_t)k.len);
		put(&out, k.data, k.len);
		put(&out, zc.data, zc.len);
		emit(&out);
		return;
	} else if (!strcmp(kind, "unpack-xz")) {
		struct buf elf = make_vmlinux(false);

		put8(&out, P_KERNEL_UNPACK);
		k = compress_as("xz", &elf);
	} else if (!strcmp(kind, "initrd-gzip")) {
		struct buf cpio = make_cpio(), raw = make_cpio();

		put8(&out, P_INITRD_UNPACK);
		k = compress_as("gzip", &cpio);
		put(&out, raw.data, raw.len);   /* a plain archive first */
	} else {
		die("unknown loader seed");
	}
	put(&out, k.data, k.len);
	emit(&out);
}

/* ---- virtqueues --------------------------------------------------------- */

enum { OP_ADD, OP_DESC, OP_IDX, OP_POKE, OP_POP, OP_POP_ALL, OP_PUSH,
       OP_PUSH_ALL, OP_NOTIFY, OP_RESET };

static void add(struct buf *b, unsigned n, const uint32_t (*d)[4])
{
	put8(b, OP_ADD);
	put8(b, (uint8_t)(n - 1));
	for (unsigned i = 0; i < n; i++) {
		put32(b, d[i][0]);          /* addr */
		put32(b, d[i][1]);          /* len */
		put8(b, (uint8_t)d[i][2]);  /* flags */
		put16(b, (uint16_t)d[i][3]); /* next or id */
	}
}

static void virtq_seed(const char *kind)
{
	struct buf b = { 0 };
	bool packed = !strncmp(kind, "packed", 6);
	bool ind = strstr(kind, "indirect") != NULL;
	const uint32_t chain[3][4] = { { 0x100000, 16, 0, 0 },
				       { 0x100100, 512, 2, 1 },
				       { 0x100400, 1, 2, 2 } };

	put8(&b, (uint8_t)(packed | (strstr(kind, "event-idx") ? 2 : 0) |
			   (ind ? 4 : 0) | (strstr(kind, "areas") ? 8 : 0)));
	put16(&b, packed ? 15 : 3);   /* packed: 16 slots; split: 2^3 */
	if (strstr(kind, "areas")) {
		/* The three areas at the very end of the 4 MiB of RAM. */
		put32(&b, (4u << 20) - 0x1000);
		put32(&b, (4u << 20) - 0x100);
		put32(&b, (4u << 20) - 72);
	}
	add(&b, 3, chain);
	add(&b, 1, chain);
	if (ind) {
		/* An indirect table at 0x200000: two descriptors. */
		const uint32_t d[1][4] = { { 0x200000, 32, 4, 7 } };
		uint8_t t[32] = { 0 };

		set32(t, 0x100000);
		set32(t + 8, 64);
		set32(t + 16, 0x100800);
		set32(t + 24, 128);
		if (packed) {
			t[30] = 2;            /* WRITE */
		} else {
			t[12] = 1;            /* NEXT */
			t[14] = 1;            /* next = 1 */
			t[28] = 2;            /* WRITE */
		}
		put8(&b, OP_POKE);
		put32(&b, 0x200000);
		put8(&b, sizeof(t));
		put(&b, t, sizeof(t));
		add(&b, 1, d);
	}
	put8(&b, OP_POP_ALL);
	put8(&b, OP_PUSH);
	put16(&b, 100);
	put8(&b, OP_NOTIFY);
	put8(&b, 1);
	add(&b, 2, chain);
	put8(&b, OP_POP);
	put8(&b, OP_PUSH_ALL);
	put16(&b, 0);
	put8(&b, OP_NOTIFY);
	put8(&b, 0);
	put8(&b, OP_RESET);
	add(&b, 1, chain + 1);
	put8(&b, OP_POP_ALL);
	emit(&b);
}

int main(int argc, char **argv)
{
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "qcow2"))
		qcow2_seed(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
	else if (argc == 3 && !strcmp(argv[1], "loader"))
		loader_seed(argv[2]);
	else if (argc == 3 && !strcmp(argv[1], "virtq"))
		virtq_seed(argv[2]);
	else
		die("usage: seedgen qcow2 IMAGE OPS [PATCH] | loader KIND | "
		    "virtq KIND");
	return 0;
}
