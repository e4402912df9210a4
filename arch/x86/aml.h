/* A tiny AML (ACPI Machine Language) byte-code builder for the DSDT.
 *
 * Only the subset Kite's firmware tables need: names, integers, strings,
 * EISA ids, packages, buffers, resource templates, scopes, devices and
 * methods that return a constant.  Encodings follow ACPI 6.4 §20.2 (AML
 * grammar); resource descriptors follow ACPI 6.4 §6.4.
 *
 * Output goes into a growable struct aml_buf.  Errors are sticky: after an
 * allocation failure or a bad argument every call is a no-op and
 * aml_buf.err holds the negative errno, so a builder can emit a whole tree
 * and check once at the end.
 *
 * Nested objects (Scope, Device, Method, Package) are opened with an
 * aml_*_begin() call that returns a mark and closed with aml_end(mark); the
 * PkgLength is inserted at close time, so objects of any size nest freely.
 *
 * Names are given as ASL-style strings: "_SB", "PCI0", "\\_SB.PCI0",
 * "^FOO"; each segment is padded with '_' to four characters. */
#ifndef KITE_ARCH_X86_AML_H
#define KITE_ARCH_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml_buf {
	uint8_t *data;
	size_t len, cap;
	int err;           /* 0, or the first negative errno */
};

void aml_buf_init(struct aml_buf *b);
void aml_buf_free(struct aml_buf *b);

/* Raw bytes (also used to build resource templates). */
void aml_bytes(struct aml_buf *b, const void *p, size_t n);
void aml_byte(struct aml_buf *b, uint8_t v);

/* A NameString (ACPI 6.4 §20.2.2). */
void aml_namestring(struct aml_buf *b, const char *path);
/* Shortest integer encoding: Zero/One/Ones, Byte/Word/DWord/QWord const. */
void aml_integer(struct aml_buf *b, uint64_t v);
/* String const: printable ASCII only, else err = -EINVAL. */
void aml_string(struct aml_buf *b, const char *s);
/* EISAID("PNP0A03") as its compressed DWord; -EINVAL on a bad id. */
void aml_eisaid(struct aml_buf *b, const char *id);
/* Name(name, ...): emits NameOp + NameString; the caller emits the value. */
void aml_name(struct aml_buf *b, const char *name);
void aml_name_integer(struct aml_buf *b, const char *name, uint64_t v);
void aml_name_string(struct aml_buf *b, const char *name, const char *s);
void aml_name_eisaid(struct aml_buf *b, const char *name, const char *id);

/* Nested objects.  Each begin returns a mark for aml_end(). */
size_t aml_scope_begin(struct aml_buf *b, const char *path);
size_t aml_device_begin(struct aml_buf *b, const char *name);
/* Method(name, nargs, Serialized|NotSerialized); nargs 0..7. */
size_t aml_method_begin(struct aml_buf *b, const char *name, unsigned nargs,
			bool serialized);
/* Package with |nr_elements| (0..255) data elements emitted by the caller. */
size_t aml_package_begin(struct aml_buf *b, unsigned nr_elements);
void aml_end(struct aml_buf *b, size_t mark);

/* Buffer(n){ bytes } in one go. */
void aml_buffer(struct aml_buf *b, const void *p, size_t n);

/* Return(value): emits ReturnOp; the caller emits one data term. */
void aml_return(struct aml_buf *b);
/* Method(name, 0) { Return(v) } */
void aml_method_return_integer(struct aml_buf *b, const char *name,
			       uint64_t v);

/* ---- resource templates (ACPI 6.4 §6.4) --------------------------------
 * Descriptors are appended to a separate aml_buf |r|; aml_resource_template()
 * then emits Buffer(){ descriptors, EndTag } into the AML stream. */

/* §6.4.2.5 I/O port descriptor, 16-bit decode: IO(Decode16, min, max,
 * align, len). */
void aml_res_io(struct aml_buf *r, uint16_t min, uint16_t max, uint8_t align,
		uint8_t len);
/* §6.4.2.1 IRQ descriptor without flags (ISA edge, active high). */
void aml_res_irq_noflags(struct aml_buf *r, unsigned irq);
/* §6.4.3.4 32-bit fixed memory range, read-write. */
void aml_res_mem32_fixed(struct aml_buf *r, uint32_t base, uint32_t len);
/* §6.4.3.6 Extended interrupt descriptor, consumer, exclusive. */
void aml_res_interrupt(struct aml_buf *r, uint32_t gsi, bool level,
		       bool active_low);
/* §6.4.3.5.3 Word address space descriptor: bus number range, producer. */
void aml_res_word_bus(struct aml_buf *r, uint16_t min, uint16_t max);
/* §6.4.3.5.3 Word address space descriptor: I/O range, producer. */
void aml_res_word_io(struct aml_buf *r, uint16_t min, uint16_t max);
/* §6.4.3.5.2 DWord address space descriptor: memory range, producer,
 * non-cacheable, read-write. */
void aml_res_dword_mem(struct aml_buf *r, uint32_t min, uint32_t max);
/* §6.4.3.5.1 QWord address space descriptor: memory range.  |producer|
 * for a bridge window, else consumer (a device's own registers). */
void aml_res_qword_mem(struct aml_buf *r, uint64_t min, uint64_t max,
		       bool producer);
/* Emit Buffer(){ r's descriptors + End Tag (§6.4.2.9) }.  Propagates r->err. */
void aml_resource_template(struct aml_buf *b, const struct aml_buf *r);

/* Opcodes and prefixes used by the builder, ACPI 6.4 §20.3 (exported so
 * tests can decode what was built). */
enum {
	AML_ZERO_OP = 0x00,
	AML_ONE_OP = 0x01,
	AML_NAME_OP = 0x08,
	AML_BYTE_PREFIX = 0x0A,
	AML_WORD_PREFIX = 0x0B,
	AML_DWORD_PREFIX = 0x0C,
	AML_STRING_PREFIX = 0x0D,
	AML_QWORD_PREFIX = 0x0E,
	AML_SCOPE_OP = 0x10,
	AML_BUFFER_OP = 0x11,
	AML_PACKAGE_OP = 0x12,
	AML_METHOD_OP = 0x14,
	AML_DUAL_NAME_PREFIX = 0x2E,
	AML_MULTI_NAME_PREFIX = 0x2F,
	AML_EXT_OP_PREFIX = 0x5B,
	AML_DEVICE_OP = 0x82,       /* after AML_EXT_OP_PREFIX */
	AML_ROOT_CHAR = 0x5C,       /* '\\' */
	AML_PARENT_PREFIX = 0x5E,   /* '^' */
	AML_RETURN_OP = 0xA4,
	AML_ONES_OP = 0xFF,
};

#endif
