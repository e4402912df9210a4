/* The contract between Kite's BIOS image (bios/bios.S) and the VMM code
 * that installs it (arch/x86/bios.c).  Included from assembly and from C,
 * so it holds only #defines.
 *
 * The image is one flat 64 KiB segment loaded at F000:0000 (0xF0000).  It
 * starts with a header that tells the VMM where the rest is, so the VMM
 * never hard-codes handler addresses:
 *
 *   0x00  8 bytes  "KITEBIOS"
 *   0x08  u16      header version (BIOS_HEADER_VERSION)
 *   0x0A  u16      offset of the vector table: 256 u16 handler offsets in
 *                  segment F000, one per interrupt vector (the IVT the VMM
 *                  writes at 0:0 points at them)
 *   0x0C  u16      offset of the data block the VMM fills in (below)
 *   0x0E  u16      size of the data block in bytes
 *
 * Data block (offsets relative to its start), written by the VMM after it
 * copied the image, read by the INT 15h memory services:
 *   0x00  u16      number of E820 entries (<= BIOS_E820_MAX)
 *   0x02  u16      INT 15h E801h AX/CX: KiB of RAM between 1 MiB and 16 MiB
 *   0x04  u16      INT 15h E801h BX/DX: 64 KiB blocks of RAM above 16 MiB
 *   0x06  u16      INT 15h AH=88h AX: KiB of RAM above 1 MiB (capped)
 *   0x10  20 bytes each: the E820 entries (u64 base, u64 length, u32 type)
 */
#ifndef KITE_BIOS_LAYOUT_H
#define KITE_BIOS_LAYOUT_H

#define BIOS_SEGMENT            0xF000
#define BIOS_BASE               0xF0000
#define BIOS_MAX_SIZE           0x10000

#define BIOS_HEADER_VERSION     1
#define BIOS_HDR_MAGIC          0x00
#define BIOS_HDR_VERSION        0x08
#define BIOS_HDR_VECTORS        0x0A
#define BIOS_HDR_DATA           0x0C
#define BIOS_HDR_DATA_SIZE      0x0E
#define BIOS_HDR_SIZE           0x10

#define BIOS_DATA_E820_COUNT    0x00
#define BIOS_DATA_E801_LOW_KIB  0x02
#define BIOS_DATA_E801_HIGH_64K 0x04
#define BIOS_DATA_EXT_KIB       0x06
#define BIOS_DATA_E820_TABLE    0x10
#define BIOS_E820_ENTRY_SIZE    20
#define BIOS_E820_MAX           128
#define BIOS_DATA_SIZE \
	(BIOS_DATA_E820_TABLE + BIOS_E820_MAX * BIOS_E820_ENTRY_SIZE)

/* The BIOS data area segment and the fields the services keep there
 * (IBM PC/AT Technical Reference layout). */
#define BDA_SEGMENT             0x40
#define BDA_COM1                0x00 /* u16 I/O base of COM1 */
#define BDA_EBDA_SEGMENT        0x0E /* u16 */
#define BDA_EQUIPMENT           0x10 /* u16 equipment word (INT 11h) */
#define BDA_BASE_MEM_KIB        0x13 /* u16 conventional memory (INT 12h) */
#define BDA_KBD_FLAGS           0x17 /* u8 shift flags (INT 16h AH=02h) */
#define BDA_KBD_HEAD            0x1A /* u16 keyboard buffer head */
#define BDA_KBD_TAIL            0x1C /* u16 keyboard buffer tail */
#define BDA_VIDEO_MODE          0x49 /* u8 */
#define BDA_VIDEO_COLS          0x4A /* u16 */
#define BDA_VIDEO_PAGE_SIZE     0x4C /* u16 */
#define BDA_VIDEO_PAGE_START    0x4E /* u16 */
#define BDA_CURSOR_POS          0x50 /* u16 x 8 pages: row << 8 | column */
#define BDA_CURSOR_SHAPE        0x60 /* u16 */
#define BDA_VIDEO_PAGE          0x62 /* u8 active page */
#define BDA_CRTC_PORT           0x63 /* u16 */
#define BDA_TICKS               0x6C /* u32 timer ticks since midnight */
#define BDA_MIDNIGHT            0x70 /* u8 */
#define BDA_NR_DISKS            0x75 /* u8 */
#define BDA_KBD_BUF_START       0x80 /* u16 */
#define BDA_KBD_BUF_END         0x82 /* u16 */
#define BDA_VIDEO_ROWS_M1       0x84 /* u8 rows - 1 */
#define BDA_VIDEO_CHAR_HEIGHT   0x85 /* u16 */

#define BIOS_COM1_PORT          0x3F8

#endif
