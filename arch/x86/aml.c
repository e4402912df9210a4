/* AML byte-code builder; see aml.h.  Section numbers are ACPI 6.4. */
#include "arch/x86/aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* §20.2.4: a PkgLength encodes at most 28 bits. */
#define AML_PKGLEN_MAX ((1u << 28) - 1)

void aml_buf_init(struct aml_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void aml_buf_free(struct aml_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static void aml_fail(struct aml_buf *b, int err)
{
	if (!b->err)
		b->err = err;
}

static int aml_reserve(struct aml_buf *b, size_t extra)
{
	size_t cap;
	uint8_t *p;

	if (b->err)
		return b->err;
	if (extra > SIZE_MAX / 2 - b->len) {
		aml_fail(b, -EOVERFLOW);
		return b->err;
	}
	if (b->len + extra <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p) {
		aml_fail(b, -ENOMEM);
		return b->err;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void aml_bytes(struct aml_buf *b, const void *p, size_t n)
{
	if (aml_reserve(b, n))
		return;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

void aml_byte(struct aml_buf *b, uint8_t v)
{
	aml_bytes(b, &v, 1);
}

static void aml_le(struct aml_buf *b, uint64_t v, unsigned n)
{
	uint8_t tmp[8];

	for (unsigned i = 0; i < n; i++)
		tmp[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(b, tmp, n);
}

/* §20.2.2 NameSeg: LeadNameChar (A-Z or '_') then up to three NameChars
 * (A-Z, 0-9, '_'), padded with '_'. */
static bool aml_nameseg_parse(const char *s, size_t n, char out[4])
{
	if (n == 0 || n > 4)
		return false;
	for (size_t i = 0; i < 4; i++) {
		char c = i < n ? s[i] : '_';
		bool lead_ok = (c >= 'A' && c <= 'Z') || c == '_';
		bool ok = lead_ok || (c >= '0' && c <= '9');

		if (!(i == 0 ? lead_ok : ok))
			return false;
		out[i] = c;
	}
	return true;
}

void aml_namestring(struct aml_buf *b, const char *path)
{
	char segs[255][4];
	unsigned nr = 0;
	const char *p = path;

	if (!path) {
		aml_fail(b, -EINVAL);
		return;
	}
	/* §20.2.2 PrefixPath / RootChar */
	if (*p == '\\') {
		aml_byte(b, AML_ROOT_CHAR);
		p++;
	} else {
		while (*p == '^') {
			aml_byte(b, AML_PARENT_PREFIX);
			p++;
		}
	}
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		if (nr == 255 || !aml_nameseg_parse(p, n, segs[nr])) {
			aml_fail(b, -EINVAL);
			return;
		}
		nr++;
		p += n;
		if (*p == '.') {
			p++;
			if (!*p) {
				aml_fail(b, -EINVAL);
				return;
			}
		}
	}
	if (nr == 0) {
		aml_byte(b, 0x00); /* NullName */
	} else if (nr == 2) {
		aml_byte(b, AML_DUAL_NAME_PREFIX);
	} else if (nr > 2) {
		aml_byte(b, AML_MULTI_NAME_PREFIX);
		aml_byte(b, (uint8_t)nr);
	}
	for (unsigned i = 0; i < nr; i++)
		aml_bytes(b, segs[i], 4);
}

/* §20.2.3 ComputationalData / ConstObj */
void aml_integer(struct aml_buf *b, uint64_t v)
{
	if (v == 0) {
		aml_byte(b, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(b, AML_ONE_OP);
	} else if (v <= 0xFF) {
		aml_byte(b, AML_BYTE_PREFIX);
		aml_le(b, v, 1);
	} else if (v <= 0xFFFF) {
		aml_byte(b, AML_WORD_PREFIX);
		aml_le(b, v, 2);
	} else if (v <= 0xFFFFFFFF) {
		aml_byte(b, AML_DWORD_PREFIX);
		aml_le(b, v, 4);
	} else {
		aml_byte(b, AML_QWORD_PREFIX);
		aml_le(b, v, 8);
	}
}

void aml_string(struct aml_buf *b, const char *s)
{
	if (!s) {
		aml_fail(b, -EINVAL);
		return;
	}
	/* §20.2.3 String := StringPrefix AsciiCharList NullChar, chars 0x01-0x7F */
	for (const char *c = s; *c; c++) {
		if ((unsigned char)*c > 0x7F) {
			aml_fail(b, -EINVAL);
			return;
		}
	}
	aml_byte(b, AML_STRING_PREFIX);
	aml_bytes(b, s, strlen(s) + 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* §19.6.35 EISAID: three letters packed five bits each ('A' = 1) then four
 * hex digits, stored big-endian in a DWord. */
void aml_eisaid(struct aml_buf *b, const char *id)
{
	uint32_t v = 0;

	if (!id || strlen(id) != 7) {
		aml_fail(b, -EINVAL);
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			aml_fail(b, -EINVAL);
			return;
		}
		v = (v << 5) | (uint32_t)(id[i] - 'A' + 1);
	}
	for (int i = 3; i < 7; i++) {
		int h = hexval(id[i]);

		if (h < 0) {
			aml_fail(b, -EINVAL);
			return;
		}
		v = (v << 4) | (uint32_t)h;
	}
	/* bit 31 is reserved zero; the 31-bit value is stored big-endian */
	aml_byte(b, AML_DWORD_PREFIX);
	aml_byte(b, (uint8_t)(v >> 24));
	aml_byte(b, (uint8_t)(v >> 16));
	aml_byte(b, (uint8_t)(v >> 8));
	aml_byte(b, (uint8_t)v);
}

void aml_name(struct aml_buf *b, const char *name)
{
	aml_byte(b, AML_NAME_OP);
	aml_namestring(b, name);
}

void aml_name_integer(struct aml_buf *b, const char *name, uint64_t v)
{
	aml_name(b, name);
	aml_integer(b, v);
}

void aml_name_string(struct aml_buf *b, const char *name, const char *s)
{
	aml_name(b, name);
	aml_string(b, s);
}

void aml_name_eisaid(struct aml_buf *b, const char *name, const char *id)
{
	aml_name(b, name);
	aml_eisaid(b, id);
}

/* The mark is where the PkgLength will be inserted by aml_end(). */
size_t aml_scope_begin(struct aml_buf *b, const char *path)
{
	size_t mark;

	aml_byte(b, AML_SCOPE_OP);
	mark = b->len;
	aml_namestring(b, path);
	return mark;
}

size_t aml_device_begin(struct aml_buf *b, const char *name)
{
	size_t mark;

	aml_byte(b, AML_EXT_OP_PREFIX);
	aml_byte(b, AML_DEVICE_OP);
	mark = b->len;
	aml_namestring(b, name);
	return mark;
}

size_t aml_method_begin(struct aml_buf *b, const char *name, unsigned nargs,
			bool serialized)
{
	size_t mark;

	if (nargs > 7)
		aml_fail(b, -EINVAL);
	aml_byte(b, AML_METHOD_OP);
	mark = b->len;
	aml_namestring(b, name);
	/* §20.2.5.2 MethodFlags: bits 0-2 ArgCount, bit 3 SerializeFlag */
	aml_byte(b, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
	return mark;
}

size_t aml_package_begin(struct aml_buf *b, unsigned nr_elements)
{
	size_t mark;

	if (nr_elements > 255)
		aml_fail(b, -EINVAL);
	aml_byte(b, AML_PACKAGE_OP);
	mark = b->len;
	aml_byte(b, (uint8_t)nr_elements);
	return mark;
}

/* §20.2.4: PkgLength counts itself.  One byte holds up to 63; otherwise the
 * lead byte's bits 7-6 give the number of following bytes, its bits 3-0 the
 * low nibble, and the following bytes the rest, least significant first. */
void aml_end(struct aml_buf *b, size_t mark)
{
	size_t body, total, n;
	uint8_t enc[4];

	if (b->err)
		return;
	if (mark > b->len) {
		aml_fail(b, -EINVAL);
		return;
	}
	body = b->len - mark;
	if (body + 1 <= 0x3F)
		n = 1;
	else if (body + 2 <= 0xFFF)
		n = 2;
	else if (body + 3 <= 0xFFFFF)
		n = 3;
	else
		n = 4;
	total = body + n;
	if (total > AML_PKGLEN_MAX) {
		aml_fail(b, -E2BIG);
		return;
	}
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0F));
		for (size_t i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	if (aml_reserve(b, n))
		return;
	memmove(b->data + mark + n, b->data + mark, body);
	memcpy(b->data + mark, enc, n);
	b->len += n;
}

/* §20.2.5.4 DefBuffer := BufferOp PkgLength BufferSize ByteList */
void aml_buffer(struct aml_buf *b, const void *p, size_t n)
{
	size_t mark;

	aml_byte(b, AML_BUFFER_OP);
	mark = b->len;
	aml_integer(b, n);
	aml_bytes(b, p, n);
	aml_end(b, mark);
}

void aml_return(struct aml_buf *b)
{
	aml_byte(b, AML_RETURN_OP);
}

void aml_method_return_integer(struct aml_buf *b, const char *name,
			       uint64_t v)
{
	size_t m = aml_method_begin(b, name, 0, false);

	aml_return(b);
	aml_integer(b, v);
	aml_end(b, m);
}

/* ---- resource descriptors -------------------------------------------- */

void aml_res_io(struct aml_buf *r, uint16_t min, uint16_t max, uint8_t align,
		uint8_t len)
{
	/* §6.4.2.5: small item 0x08, length 7; information bit 0 = 16-bit decode */
	aml_byte(r, 0x47);
	aml_byte(r, 0x01);
	aml_le(r, min, 2);
	aml_le(r, max, 2);
	aml_byte(r, align);
	aml_byte(r, len);
}

void aml_res_irq_noflags(struct aml_buf *r, unsigned irq)
{
	if (irq > 15) {
		aml_fail(r, -EINVAL);
		return;
	}
	/* §6.4.2.1: small item 0x04, length 2: 16-bit IRQ mask */
	aml_byte(r, 0x22);
	aml_le(r, 1u << irq, 2);
}

void aml_res_mem32_fixed(struct aml_buf *r, uint32_t base, uint32_t len)
{
	/* §6.4.3.4: large item 0x06, length 9; information bit 0 = writeable */
	aml_byte(r, 0x86);
	aml_le(r, 9, 2);
	aml_byte(r, 0x01);
	aml_le(r, base, 4);
	aml_le(r, len, 4);
}

void aml_res_interrupt(struct aml_buf *r, uint32_t gsi, bool level,
		       bool active_low)
{
	/* §6.4.3.6: large item 0x09; flags bit 0 consumer, bit 1 edge
	 * (0 = level), bit 2 active low, bit 3 shared; then a table of one. */
	aml_byte(r, 0x89);
	aml_le(r, 6, 2);
	aml_byte(r, (uint8_t)(0x01 | (level ? 0 : 0x02) | (active_low ? 0x04 : 0)));
	aml_byte(r, 1);
	aml_le(r, gsi, 4);
}

/* §6.4.3.5.5 general flags: bit 3 _MAF, bit 2 _MIF (both fixed here),
 * bit 1 _DEC (0 = positive decode), bit 0 consumer (1) / producer (0). */
#define AML_ADDR_FIXED_PRODUCER 0x0C
#define AML_ADDR_FIXED_CONSUMER 0x0D

static void aml_res_word(struct aml_buf *r, uint8_t type, uint8_t tflags,
			 uint16_t min, uint16_t max)
{
	if (max < min) {
		aml_fail(r, -EINVAL);
		return;
	}
	/* §6.4.3.5.3: large item 0x08, length 13 */
	aml_byte(r, 0x88);
	aml_le(r, 13, 2);
	aml_byte(r, type);
	aml_byte(r, AML_ADDR_FIXED_PRODUCER);
	aml_byte(r, tflags);
	aml_le(r, 0, 2);                 /* granularity */
	aml_le(r, min, 2);
	aml_le(r, max, 2);
	aml_le(r, 0, 2);                 /* translation offset */
	aml_le(r, (uint16_t)(max - min + 1), 2);
}

void aml_res_word_bus(struct aml_buf *r, uint16_t min, uint16_t max)
{
	aml_res_word(r, 2, 0, min, max); /* resource type 2: bus number range */
}

void aml_res_word_io(struct aml_buf *r, uint16_t min, uint16_t max)
{
	/* resource type 1: I/O; type flags _RNG = 3 (ISA and non-ISA ranges) */
	aml_res_word(r, 1, 0x03, min, max);
}

void aml_res_dword_mem(struct aml_buf *r, uint32_t min, uint32_t max)
{
	if (max < min) {
		aml_fail(r, -EINVAL);
		return;
	}
	/* §6.4.3.5.2: large item 0x07, length 23; type 0 memory; type flags
	 * bit 0 _RW = read-write, bits 2-1 _MEM = 0 non-cacheable */
	aml_byte(r, 0x87);
	aml_le(r, 23, 2);
	aml_byte(r, 0);
	aml_byte(r, AML_ADDR_FIXED_PRODUCER);
	aml_byte(r, 0x01);
	aml_le(r, 0, 4);
	aml_le(r, min, 4);
	aml_le(r, max, 4);
	aml_le(r, 0, 4);
	aml_le(r, (uint64_t)max - min + 1, 4);
}

void aml_res_qword_mem(struct aml_buf *r, uint64_t min, uint64_t max,
		       bool producer)
{
	if (max < min || max - min == UINT64_MAX) {
		aml_fail(r, -EINVAL);
		return;
	}
	/* §6.4.3.5.1: large item 0x0A, length 43 */
	aml_byte(r, 0x8A);
	aml_le(r, 43, 2);
	aml_byte(r, 0);
	aml_byte(r, producer ? AML_ADDR_FIXED_PRODUCER : AML_ADDR_FIXED_CONSUMER);
	aml_byte(r, 0x01);
	aml_le(r, 0, 8);
	aml_le(r, min, 8);
	aml_le(r, max, 8);
	aml_le(r, 0, 8);
	aml_le(r, max - min + 1, 8);
}

void aml_resource_template(struct aml_buf *b, const struct aml_buf *r)
{
	struct aml_buf tmp;
	/* §6.4.2.9 End Tag; checksum 0 means "treat as correct" */
	static const uint8_t end_tag[2] = { 0x79, 0x00 };

	if (r->err) {
		aml_fail(b, r->err);
		return;
	}
	aml_buf_init(&tmp);
	aml_bytes(&tmp, r->data, r->len);
	aml_bytes(&tmp, end_tag, sizeof(end_tag));
	if (tmp.err)
		aml_fail(b, tmp.err);
	else
		aml_buffer(b, tmp.data, tmp.len);
	aml_buf_free(&tmp);
}
