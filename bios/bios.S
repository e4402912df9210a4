/* Kite's BIOS: the real-mode services a bzImage's setup code (and other
 * classic loaders) ask of a PC BIOS, and nothing more.
 *
 * There is no POST: the VMM (arch/x86/bios.c) copies this image to
 * F000:0000, writes the interrupt vector table from the vector table below,
 * fills the BIOS data area and the data block at the end of the image (the
 * memory map), and starts the vCPU directly at the loaded program.  The
 * header layout is in bios/layout.h.
 *
 * What is served (everything else returns unchanged, or with CF set where
 * the caller looks at CF):
 *   INT 10h  video: mode 3 (80x25 text) get/set, cursor position and shape,
 *            EGA/VGA identification, font info; teletype (AH=0Eh) goes to
 *            COM1 because a Kite VM has no display; VESA (4Fxxh) fails
 *   INT 11h  equipment word          INT 12h  conventional memory size
 *   INT 13h  no disks: CF set        INT 16h  keyboard with no keys
 *   INT 15h  E820h memory map, E801h, AH=88h, A20 gate (always on),
 *            AX=EC00h (target CPU mode), AH=86h wait; others CF set
 *   INT 1Ah  tick count, RTC time and date from the CMOS clock
 *   INT 18h/19h  no boot device: says so on COM1 and resets the machine
 *   IRQ vectors (08h-0Fh, 70h-77h) acknowledge the 8259s; others iret.
 *
 * Handlers keep every register they do not return a value in.  A result in
 * CF or ZF is written into the FLAGS image the INT pushed, so the IRET
 * restores the caller's other flags (IF, DF) untouched. */
#include "bios/layout.h"

#define SMAP 0x534D4150 /* "SMAP" */
#define PIC1_CMD 0x20
#define PIC2_CMD 0xA0
#define PIC_EOI  0x20
#define CMOS_INDEX 0x70
#define CMOS_DATA  0x71
#define KBC_CMD    0x64
#define KBC_PULSE_RESET 0xFE

/* Offsets into the stack frame of a handler that pushed %bp: the FLAGS
 * image the INT pushed is above ip and cs. */
#define FRAME_FLAGS 6
#define FLAG_CF 0x0001
#define FLAG_ZF 0x0040

	.code16
	.section .text.header, "ax"
	.globl bios_header
bios_header:
	.ascii "KITEBIOS"
	.word BIOS_HEADER_VERSION
	.word vector_table
	.word bios_data
	.word BIOS_DATA_SIZE

/* Handler per vector, in vector order. */
	.balign 2
vector_table:
	.rept 8                 /* 00h-07h: CPU exceptions */
	.word int_iret
	.endr
	.word irq0_timer        /* 08h: IRQ 0 */
	.rept 7                 /* 09h-0Fh: IRQ 1-7 */
	.word irq_master
	.endr
	.word int10_video       /* 10h */
	.word int11_equipment   /* 11h */
	.word int12_memory      /* 12h */
	.word int13_disk        /* 13h */
	.word int_iret          /* 14h: serial services: unused */
	.word int15_system      /* 15h */
	.word int16_keyboard    /* 16h */
	.word int_iret          /* 17h: printer */
	.word int19_no_boot     /* 18h: ROM BASIC / boot failure */
	.word int19_no_boot     /* 19h: bootstrap */
	.word int1a_time        /* 1Ah */
	.rept 0x70 - 0x1B       /* 1Bh-6Fh */
	.word int_iret
	.endr
	.rept 8                 /* 70h-77h: IRQ 8-15 */
	.word irq_slave
	.endr
	.rept 0x100 - 0x78      /* 78h-FFh */
	.word int_iret
	.endr
vector_table_end:
	.if vector_table_end - vector_table - 512
	.error "vector table must have 256 entries"
	.endif

	.text

int_iret:
	iret

/* Return with CF set / clear in the caller's flags. */
iret_cf_set:
	push %bp
	mov %sp, %bp
	orw $FLAG_CF, FRAME_FLAGS(%bp)
	pop %bp
	iret

iret_cf_clear:
	push %bp
	mov %sp, %bp
	andw $~FLAG_CF, FRAME_FLAGS(%bp)
	pop %bp
	iret

/* ---- hardware interrupts ------------------------------------------------- */

irq0_timer:
	push %ds
	pushw $BDA_SEGMENT
	pop %ds
	incl BDA_TICKS
	pop %ds
	/* fall through */
irq_master:
	push %ax
	mov $PIC_EOI, %al
	out %al, $PIC1_CMD
	pop %ax
	iret

irq_slave:
	push %ax
	mov $PIC_EOI, %al
	out %al, $PIC2_CMD
	out %al, $PIC1_CMD
	pop %ax
	iret

/* ---- INT 10h: video ------------------------------------------------------- */

int10_video:
	cmp $0x0E, %ah
	je video_teletype
	push %ds
	pushw $BDA_SEGMENT
	pop %ds
	cmp $0x00, %ah
	je video_set_mode
	cmp $0x01, %ah
	je video_set_cursor_shape
	cmp $0x02, %ah
	je video_set_cursor
	cmp $0x03, %ah
	je video_get_cursor
	cmp $0x05, %ah
	je video_set_page
	cmp $0x08, %ah
	je video_read_char
	cmp $0x0F, %ah
	je video_get_mode
	cmp $0x11, %ah
	je video_font
	cmp $0x12, %ah
	je video_alt_select
	cmp $0x1A, %ah
	je video_display_combination
	cmp $0x4F, %ah
	je video_vesa
video_done:
	pop %ds
	iret

/* AH=0Eh AL=char: the VM's display is its serial console. */
video_teletype:
	push %ax
	push %cx
	push %dx
	mov %al, %ah
	mov $BIOS_COM1_PORT + 5, %dx    /* line status */
	mov $0x1000, %cx
1:	in %dx, %al
	test $0x20, %al                 /* transmit holding register empty */
	loopz 1b
	mov $BIOS_COM1_PORT, %dx
	mov %ah, %al
	out %al, %dx
	pop %dx
	pop %cx
	pop %ax
	iret

/* AH=00h AL=mode (bit 7: keep screen).  Only text modes are real here;
 * any mode is recorded so that AH=0Fh reports what was asked. */
video_set_mode:
	push %ax
	and $0x7F, %al
	movb %al, BDA_VIDEO_MODE
	movw $80, BDA_VIDEO_COLS
	cmp $1, %al
	ja 1f
	movw $40, BDA_VIDEO_COLS        /* modes 0 and 1 are 40 columns */
1:	movb $24, BDA_VIDEO_ROWS_M1
	movw $16, BDA_VIDEO_CHAR_HEIGHT
	movw $0x1000, BDA_VIDEO_PAGE_SIZE
	movw $0, BDA_VIDEO_PAGE_START
	movb $0, BDA_VIDEO_PAGE
	push %di
	push %cx
	mov $BDA_CURSOR_POS, %di
	mov $8, %cx
2:	movw $0, (%di)
	add $2, %di
	loop 2b
	pop %cx
	pop %di
	pop %ax
	mov $0x30, %al                  /* text mode set */
	jmp video_done

video_set_cursor_shape:
	movw %cx, BDA_CURSOR_SHAPE
	jmp video_done

/* BH = page, DH = row, DL = column. */
video_set_cursor:
	cmp $7, %bh
	ja video_done
	push %bx
	movzbw %bh, %bx
	shl $1, %bx
	movw %dx, BDA_CURSOR_POS(%bx)
	pop %bx
	jmp video_done

/* BH = page -> CX = shape, DX = position. */
video_get_cursor:
	movw BDA_CURSOR_SHAPE, %cx
	xor %dx, %dx
	cmp $7, %bh
	ja video_done
	push %bx
	movzbw %bh, %bx
	shl $1, %bx
	movw BDA_CURSOR_POS(%bx), %dx
	pop %bx
	jmp video_done

video_set_page:
	cmp $7, %al
	ja video_done
	movb %al, BDA_VIDEO_PAGE
	jmp video_done

/* Blank cell, light grey on black. */
video_read_char:
	mov $0x0720, %ax
	jmp video_done

/* -> AL = mode, AH = columns, BH = active page. */
video_get_mode:
	movb BDA_VIDEO_MODE, %al
	movb BDA_VIDEO_COLS, %ah
	movb BDA_VIDEO_PAGE, %bh
	jmp video_done

/* AX=1130h: font information: CX = bytes per character, DL = rows - 1. */
video_font:
	cmp $0x30, %al
	jne video_done
	movw BDA_VIDEO_CHAR_HEIGHT, %cx
	movb BDA_VIDEO_ROWS_M1, %dl
	jmp video_done

/* AH=12h BL=10h: EGA information: colour, 256 KiB, feature bits 0. */
video_alt_select:
	cmp $0x10, %bl
	jne video_done
	mov $0x0003, %bx
	mov $0x0009, %cx
	jmp video_done

/* AX=1A00h: display combination: VGA with colour display. */
video_display_combination:
	cmp $0x00, %al
	jne video_done
	mov $0x1A, %al
	mov $0x0008, %bx
	jmp video_done

/* VESA BIOS extensions: not present (AL != 4Fh). */
video_vesa:
	mov $0x0100, %ax
	jmp video_done

/* ---- INT 11h, 12h, 13h ---------------------------------------------------- */

int11_equipment:
	push %ds
	pushw $BDA_SEGMENT
	pop %ds
	movw BDA_EQUIPMENT, %ax
	pop %ds
	iret

int12_memory:
	push %ds
	pushw $BDA_SEGMENT
	pop %ds
	movw BDA_BASE_MEM_KIB, %ax
	pop %ds
	iret

/* A Kite VM has no BIOS disks: every function fails, "invalid function". */
int13_disk:
	mov $0x01, %ah
	jmp iret_cf_set

/* ---- INT 15h: system services ------------------------------------------- */

int15_system:
	cmp $0xE820, %ax
	je mem_e820
	cmp $0xE801, %ax
	je mem_e801
	cmp $0x88, %ah
	je mem_ext88
	cmp $0xEC00, %ax
	je sys_ok                       /* target operating mode: noted */
	cmp $0x24, %ah
	je a20_gate
	cmp $0x86, %ah
	je sys_ok                       /* wait CX:DX us: return at once */
	cmp $0x90, %ah
	je sys_ok                       /* device busy / interrupt complete */
	cmp $0x91, %ah
	je sys_ok
sys_unsupported:                        /* C0h, E980h, 87h, 89h, ... */
	mov $0x86, %ah
	jmp iret_cf_set
sys_ok:
	mov $0x00, %ah
	jmp iret_cf_clear

/* EAX=E820h EDX="SMAP" EBX=continuation ECX=buffer size ES:DI=buffer
 * -> EAX="SMAP", ECX=20, EBX=next continuation (0 after the last). */
mem_e820:
	cmpl $SMAP, %edx
	jne mem_e820_fail
	cmpl $BIOS_E820_ENTRY_SIZE, %ecx
	jb mem_e820_fail
	movzwl %cs:bios_data + BIOS_DATA_E820_COUNT, %eax
	cmpl %eax, %ebx
	jae mem_e820_fail
	push %ds
	push %si
	push %di
	push %cx
	mov %bx, %si                    /* si = bx * 20 */
	shl $2, %si
	mov %si, %cx
	shl $2, %si
	add %cx, %si
	add $bios_data + BIOS_DATA_E820_TABLE, %si
	push %cs
	pop %ds
	mov $BIOS_E820_ENTRY_SIZE / 2, %cx
	cld                             /* the caller's DF comes back on iret */
	rep movsw
	pop %cx
	pop %di
	pop %si
	pop %ds
	incl %ebx
	cmpl %eax, %ebx
	jb 1f
	xorl %ebx, %ebx
1:	movl $BIOS_E820_ENTRY_SIZE, %ecx
	movl $SMAP, %eax
	jmp iret_cf_clear
mem_e820_fail:
	mov $0x86, %ah
	jmp iret_cf_set

/* -> AX = CX = KiB 1-16 MiB, BX = DX = 64 KiB blocks above 16 MiB. */
mem_e801:
	movw %cs:bios_data + BIOS_DATA_E801_LOW_KIB, %ax
	mov %ax, %cx
	movw %cs:bios_data + BIOS_DATA_E801_HIGH_64K, %bx
	mov %bx, %dx
	jmp iret_cf_clear

mem_ext88:
	movw %cs:bios_data + BIOS_DATA_EXT_KIB, %ax
	jmp iret_cf_clear

/* AH=24h: the A20 line of a KVM guest is always enabled. */
a20_gate:
	cmp $0x00, %al
	je sys_unsupported              /* cannot be disabled */
	cmp $0x02, %al
	jne 1f
	mov $0x01, %al                  /* query: enabled */
	jmp sys_ok
1:	cmp $0x03, %al
	jne sys_ok                      /* AL=01h enable: already on */
	xor %bx, %bx                    /* no gate: neither KBC nor port 92h */
	jmp sys_ok

/* ---- INT 16h: keyboard with an always empty buffer ---------------------- */

int16_keyboard:
	cmp $0x01, %ah
	je kbd_check
	cmp $0x11, %ah
	je kbd_check
	cmp $0x02, %ah
	je kbd_flags
	cmp $0x12, %ah
	je kbd_flags
	cmp $0x00, %ah
	je kbd_read
	cmp $0x10, %ah
	je kbd_read
	iret                            /* 03h typematic, 05h store, ...: ok */
/* No key is ever pressed; a real BIOS would wait forever here. */
kbd_read:
	xor %ax, %ax
	iret
kbd_check:
	push %bp
	mov %sp, %bp
	orw $FLAG_ZF, FRAME_FLAGS(%bp)  /* ZF set: no keystroke available */
	pop %bp
	xor %ax, %ax
	iret
kbd_flags:
	xor %ax, %ax                    /* AL: no shift keys; AH (12h): none */
	iret

/* ---- INT 18h/19h: nothing to boot ---------------------------------------- */

int19_no_boot:
	push %cs
	pop %ds
	mov $msg_no_boot, %si
	cld
1:	lodsb
	test %al, %al
	jz 2f
	mov $0x0E, %ah
	int $0x10
	jmp 1b
2:	mov $KBC_PULSE_RESET, %al
	out %al, $KBC_CMD
3:	hlt
	jmp 3b

/* ---- INT 1Ah: time --------------------------------------------------------- */

int1a_time:
	cmp $0x00, %ah
	je time_ticks
	cmp $0x02, %ah
	je time_rtc_time
	cmp $0x04, %ah
	je time_rtc_date
	mov $0x86, %ah                  /* PCI BIOS (B1h) and others: absent */
	jmp iret_cf_set

/* -> CX:DX = ticks since midnight, AL = midnight flag (then cleared). */
time_ticks:
	push %ds
	pushw $BDA_SEGMENT
	pop %ds
	movw BDA_TICKS, %dx
	movw BDA_TICKS + 2, %cx
	movb BDA_MIDNIGHT, %al
	movb $0, BDA_MIDNIGHT
	pop %ds
	jmp iret_cf_clear

/* CMOS register %al -> %al. */
cmos_read:
	out %al, $CMOS_INDEX
	in $CMOS_DATA, %al
	ret

/* -> CH = hours, CL = minutes, DH = seconds (BCD), DL = 0 (no DST). */
time_rtc_time:
	push %ax
	mov $0x04, %al
	call cmos_read
	mov %al, %ch
	mov $0x02, %al
	call cmos_read
	mov %al, %cl
	mov $0x00, %al
	call cmos_read
	mov %al, %dh
	xor %dl, %dl
	pop %ax
	jmp iret_cf_clear

/* -> CH = century, CL = year, DH = month, DL = day (BCD). */
time_rtc_date:
	push %ax
	mov $0x32, %al
	call cmos_read
	mov %al, %ch
	mov $0x09, %al
	call cmos_read
	mov %al, %cl
	mov $0x08, %al
	call cmos_read
	mov %al, %dh
	mov $0x07, %al
	call cmos_read
	mov %al, %dl
	pop %ax
	jmp iret_cf_clear

	.section .rodata
msg_no_boot:
	.asciz "kite bios: no bootable device (INT 19h); resetting\r\n"

/* Filled in by the VMM; see bios/layout.h. */
	.data
	.balign 16
bios_data:
	.space BIOS_DATA_SIZE
