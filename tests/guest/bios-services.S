/* A synthetic bzImage whose "setup code" tests Kite's BIOS from the inside.
 *
 *   make $(B)/tests/guest/bios-services.bin
 *   kite run --boot bios -m 64M -p bios-test -k build/tests/guest/bios-services.bin
 *
 * kite loads it like a Linux kernel through `--boot bios`: these setup
 * sectors at 0x90000, entered in real mode at 9020:0000, the
 * "protected-mode kernel" (one sector holding a marker) at 1 MiB.  The
 * program checks the entry state and the loader's setup header fields, then
 * calls the BIOS services Linux's setup code uses (INT 10h, 11h, 12h, 13h,
 * 15h E820h/E801h/88h/C0h/EC00h, 16h, 1Ah) and checks their answers for a
 * 64 MiB guest.  It prints through INT 10h teletype (so the output itself
 * shows that COM1 teletype works), then PASS or FAIL: reason, and ends the
 * VM through the debug-exit port: 0x10 (kite exits 33) or 0x11 (35), as
 * the other payloads do (tests/guest/README.md). */

#define SMAP 0x534D4150
#define DEBUG_EXIT_PORT 0xF4
#define VERDICT_PASS 0x10
#define VERDICT_FAIL 0x11
#define SETUP_SECTS 7                   /* + the boot sector = 4 KiB */
#define PM_SIZE 512
#define MEM_MIB 64                      /* run with -m 64M */

	.code16
	.text
	.globl _start
_start:
/* ---- boot sector and setup header (Documentation/x86/boot.rst) --------- */
	.org 0x1F1
	.byte SETUP_SECTS               /* setup_sects */
	.word 0                         /* root_flags */
	.long PM_SIZE / 16              /* syssize */
	.word 0                         /* ram_size */
	.word 0                         /* vid_mode: the loader sets it */
	.word 0                         /* root_dev */
	.word 0xAA55                    /* boot_flag */
	.byte 0xEB, setup_start - 1f    /* jump over the header */
1:	.ascii "HdrS"
	.word 0x020F                    /* version */
	.long 0                         /* realmode_swtch */
	.word 0x1000                    /* start_sys_seg */
	.word version_string - 0x200    /* kernel_version */
	.byte 0                         /* type_of_loader */
	.byte 0x01                      /* loadflags: LOADED_HIGH */
	.word 0x8000                    /* setup_move_size */
	.long 0x100000                  /* code32_start */
	.long 0, 0                      /* ramdisk_image, ramdisk_size */
	.long 0                         /* bootsect_kludge */
	.word 0                         /* heap_end_ptr */
	.byte 0, 0                      /* ext_loader_ver, ext_loader_type */
	.long 0                         /* cmd_line_ptr */
	.long 0x7FFFFFFF                /* initrd_addr_max */
	.long 0x200000                  /* kernel_alignment */
	.byte 0, 0                      /* relocatable_kernel, min_alignment */
	.word 0                         /* xloadflags */
	.long 2047                      /* cmdline_size */
	.long 0                         /* hardware_subarch */
	.quad 0                         /* hardware_subarch_data */
	.long 0, 0                      /* payload_offset, payload_length */
	.quad 0                         /* setup_data */
	.quad 0x100000                  /* pref_address */
	.long 0x1000                    /* init_size */
	.long 0                         /* handover_offset */
	.long 0                         /* kernel_info_offset */
	.org 0x26C                      /* fails if the header ran longer */
setup_start:

/* ---- entry: cs = 0x9020, ip = 0 (offset 0x200 here) ------------------- */
	/* Record the entry state before anything changes it; ds should be
	 * 0x9000, the base this file is linked for. */
	mov %sp, %cs:entry_sp - 0x200
	mov %ds, %cs:entry_ds - 0x200
	mov %es, %cs:entry_es - 0x200
	mov %ss, %cs:entry_ss - 0x200
	mov %cs, %cs:entry_cs - 0x200
	ljmp $0x9000, $main

/* Messages are inline: `fail_unless COND, "text"` jumps to fail when the
 * flags do not satisfy COND (a Jcc suffix). */
.macro fail_unless cond, msg
	j\cond 8f
	mov $7f, %si
	jmp fail
7:	.asciz "\msg"
8:
.endm

.macro say msg
	mov $7f, %si
	call puts
	jmp 8f
7:	.asciz "\msg"
8:
.endm

main:
	push %cs
	pop %ds
	push %cs
	pop %es
	say "bios-services: real-mode setup entered\r\n"

	/* Entry state (boot.rst "Running the kernel"). */
	cmpw $0x9020, entry_cs
	fail_unless e, "entry cs is not 0x9020"
	cmpw $0x9000, entry_ds
	fail_unless e, "entry ds is not 0x9000"
	cmpw $0x9000, entry_es
	fail_unless e, "entry es is not 0x9000"
	cmpw $0x9000, entry_ss
	fail_unless e, "entry ss is not 0x9000"
	cmpw $0xE000, entry_sp
	fail_unless e, "entry sp is not 0xE000"
	say "entry: cs=9020 ds=es=ss=9000 sp=E000\r\n"

	/* Loader fields of the setup header. */
	cmpb $0xFF, 0x210
	fail_unless e, "type_of_loader is not 0xFF"
	mov 0x211, %al
	and $0x81, %al
	cmp $0x81, %al
	fail_unless e, "loadflags lack LOADED_HIGH|CAN_USE_HEAP"
	cmpw $0xDE00, 0x224
	fail_unless e, "heap_end_ptr is not 0xDE00"
	cmpl $0x9E000, 0x228
	fail_unless e, "cmd_line_ptr is not 0x9E000"
	cmpw $0xFFFF, 0x1FA
	fail_unless e, "vid_mode is not 0xFFFF"
	say "cmdline: "
	mov $0xE000, %si                /* 0x9E000 in this segment */
	call puts
	say "\r\n"
	/* It ends in "bios-test" (a PVM host puts its parameters first). */
	mov $0xE000, %si
1:	cmpb $0, (%si)
	je 2f
	inc %si
	cmp $0xE800, %si
	jb 1b
2:	cmpl $0x74736574, -4(%si)       /* "test" */
	fail_unless e, "command line does not end in 'bios-test'"

	/* The protected-mode part at 1 MiB: FFFF:0010 with A20 on. */
	pushw $0xFFFF
	pop %fs
	cmpl $0x4D505450, %fs:0x10      /* "PTPM" */
	fail_unless e, "protected-mode code not at 1 MiB (or A20 off)"
	say "kernel: protected-mode part at 0x100000\r\n"

	/* INT 10h AH=0Fh: mode 3, 80 columns. */
	mov $0x0F00, %ax
	int $0x10
	cmp $0x5003, %ax
	fail_unless e, "INT 10h AH=0Fh: not mode 3 with 80 columns"
	/* AH=12h BL=10h: EGA/VGA answers (BL changes). */
	mov $0x1200, %ax
	mov $0x0010, %bx
	int $0x10
	cmp $0x10, %bl
	fail_unless ne, "INT 10h AH=12h BL=10h: no EGA information"
	/* VESA: absent. */
	mov $0x4F00, %ax
	int $0x10
	cmp $0x004F, %ax
	fail_unless ne, "INT 10h AX=4F00h: VESA claims success"
	/* Cursor position round trip. */
	mov $0x0200, %ax
	xor %bh, %bh
	mov $0x0A05, %dx
	int $0x10
	xor %dx, %dx
	mov $0x0300, %ax
	int $0x10
	cmp $0x0A05, %dx
	fail_unless e, "INT 10h AH=02h/03h: cursor position lost"
	say "int10: mode 3, 80x25, EGA/VGA, no VESA, cursor ok\r\n"

	/* INT 11h, 12h. */
	int $0x11
	test $0x0002, %ax
	fail_unless nz, "INT 11h: no FPU in the equipment word"
	int $0x12
	cmp $639, %ax
	fail_unless e, "INT 12h: conventional memory is not 639 KiB"
	say "int12: 639 KiB\r\n"

	/* INT 15h E820h: the whole map, printed. */
	xor %ebx, %ebx
	xor %bp, %bp                    /* entries seen */
	movb $0, seen_high
	movb $0, seen_bios
e820_next:
	mov $e820_buf, %di
	movl $0xE820, %eax
	movl $SMAP, %edx
	movl $20, %ecx
	int $0x15
	fail_unless nc, "INT 15h E820h: CF set"
	cmpl $SMAP, %eax
	fail_unless e, "INT 15h E820h: EAX is not SMAP"
	cmpl $20, %ecx
	fail_unless e, "INT 15h E820h: ECX is not 20"
	inc %bp
	say "e820: "
	movl e820_buf + 4, %eax
	call print_hex32
	movl e820_buf, %eax
	call print_hex32
	say " "
	movl e820_buf + 12, %eax
	call print_hex32
	movl e820_buf + 8, %eax
	call print_hex32
	say " "
	movl e820_buf + 16, %eax
	call print_hex32
	say "\r\n"
	/* Entry 0 is RAM at 0; RAM starts again at 1 MiB; the BIOS at
	 * 0xF0000 is in a reserved entry. */
	cmp $1, %bp
	jne 1f
	cmpl $0, e820_buf
	fail_unless e, "E820 entry 0 does not start at 0"
	cmpl $1, e820_buf + 16
	fail_unless e, "E820 entry 0 is not RAM"
1:	cmpl $0x100000, e820_buf
	jne 2f
	cmpl $1, e820_buf + 16
	jne 2f
	movb $1, seen_high
2:	cmpl $2, e820_buf + 16
	jne 3f
	cmpl $0xF0000, e820_buf
	ja 3f
	movl e820_buf, %eax
	addl e820_buf + 8, %eax
	cmpl $0x100000, %eax
	jb 3f
	movb $1, seen_bios
3:	cmp $32, %bp
	fail_unless b, "INT 15h E820h: more than 32 entries"
	test %ebx, %ebx
	jnz e820_next
	cmp $3, %bp
	fail_unless ae, "INT 15h E820h: fewer than 3 entries"
	cmpb $1, seen_high
	fail_unless e, "INT 15h E820h: no RAM entry at 1 MiB"
	cmpb $1, seen_bios
	fail_unless e, "INT 15h E820h: 0xF0000-0xFFFFF is not reserved"
	/* Past the end: CF set. */
	movl $0xE820, %eax
	movl $SMAP, %edx
	movl $20, %ecx
	movl $1000, %ebx
	mov $e820_buf, %di
	int $0x15
	fail_unless c, "INT 15h E820h: no CF for a bad continuation"

	/* E801h: 15 MiB below 16 MiB, (64 - 16) MiB in 64 KiB blocks. */
	mov $0xE801, %ax
	xor %bx, %bx
	xor %cx, %cx
	xor %dx, %dx
	stc
	int $0x15
	fail_unless nc, "INT 15h E801h: CF set"
	cmp $15 * 1024, %ax
	fail_unless e, "INT 15h E801h: AX is not 15360"
	cmp %ax, %cx
	fail_unless e, "INT 15h E801h: CX differs from AX"
	cmp $(MEM_MIB - 16) * 16, %bx
	fail_unless e, "INT 15h E801h: BX is not the 64 KiB blocks above 16 MiB"
	cmp %bx, %dx
	fail_unless e, "INT 15h E801h: DX differs from BX"
	/* AH=88h: KiB above 1 MiB, 63 MiB at most. */
	mov $0x8800, %ax
	stc
	int $0x15
	fail_unless nc, "INT 15h AH=88h: CF set"
	cmp $(MEM_MIB - 1) * 1024, %ax
	fail_unless e, "INT 15h AH=88h: AX is not 64512"
	say "int15: e820 ok, e801 15360+768, 88h 64512\r\n"
	/* AH=C0h: no configuration table; AX=EC00h: accepted. */
	mov $0xC000, %ax
	clc
	int $0x15
	fail_unless c, "INT 15h AH=C0h: CF clear"
	mov $0xEC00, %ax
	mov $2, %bx
	stc
	int $0x15
	fail_unless nc, "INT 15h AX=EC00h: CF set"

	/* INT 16h: no key waiting, no shift keys. */
	mov $0x0100, %ax
	test %ax, %ax                   /* ZF clear going in */
	int $0x16
	fail_unless z, "INT 16h AH=01h: ZF clear (a key?)"
	mov $0x0200, %ax
	int $0x16
	cmp $0, %al
	fail_unless e, "INT 16h AH=02h: shift flags not 0"

	/* INT 13h: no disks. */
	mov $0x0800, %ax
	mov $0x80, %dl
	clc
	int $0x13
	fail_unless c, "INT 13h AH=08h: CF clear"

	/* INT 1Ah: the CMOS clock answers; DF and IF come back unchanged. */
	std
	mov $0x0200, %ax
	stc
	int $0x1A
	pushf
	cld
	pop %ax
	test $0x0400, %ax
	fail_unless nz, "INT 1Ah: DF lost across the call"
	test $0x0001, %ax
	fail_unless z, "INT 1Ah AH=02h: CF set"
	say "int1a: rtc "
	movzwl %cx, %eax
	shl $8, %eax
	mov %dh, %al
	call print_hex32
	say "\r\n"

	say "PASS\r\n"
	mov $VERDICT_PASS, %al
	out %al, $DEBUG_EXIT_PORT
	say "FAIL: debug-exit port 0xf4 did not stop the VM\r\n"
	jmp halt

/* %si: message. */
fail:
	push %si
	say "FAIL: "
	pop %si
	call puts
	say "\r\n"
	mov $VERDICT_FAIL, %al
	out %al, $DEBUG_EXIT_PORT
halt:
	cli
	hlt
	jmp halt

/* Print the NUL-terminated string at ds:si through INT 10h teletype. */
puts:
	push %ax
	push %bx
	push %si
	cld
1:	lodsb
	test %al, %al
	jz 2f
	mov $0x0E, %ah
	mov $0x0007, %bx
	int $0x10
	jmp 1b
2:	pop %si
	pop %bx
	pop %ax
	ret

/* Print %eax as 8 hex digits. */
print_hex32:
	push %eax
	push %bx
	push %cx
	push %edx
	mov %eax, %edx
	mov $8, %cx
1:	rol $4, %edx
	mov %dl, %al
	and $0x0F, %al
	add $'0', %al
	cmp $'9', %al
	jbe 2f
	add $'A' - '9' - 1, %al
2:	mov $0x0E, %ah
	mov $0x0007, %bx
	int $0x10
	loop 1b
	pop %edx
	pop %cx
	pop %bx
	pop %eax
	ret

version_string:
	.asciz "kite-bios-services"

	.balign 4
entry_cs: .word 0
entry_ds: .word 0
entry_es: .word 0
entry_ss: .word 0
entry_sp: .word 0
seen_high: .byte 0
seen_bios: .byte 0
	.balign 4
e820_buf: .space 24

	.org (SETUP_SECTS + 1) * 512     /* fails if the setup code is larger */

/* ---- the "protected-mode kernel": a marker, loaded at 1 MiB ------------ */
	.ascii "PTPM"
	.org (SETUP_SECTS + 1) * 512 + PM_SIZE
