/* Entry point and trap stubs shared by every test payload.
 *
 * Multiboot v1 enters in flat 32-bit protected mode with paging and
 * interrupts off, EAX = 0x2BADB002 and EBX = the multiboot info, but with
 * no usable stack and no GDT/IDT we may rely on: set up our own stack here,
 * then lib.c's kernel_entry() loads the GDT and IDT. */

#define MB_MAGIC        0x1BADB002
#define MB_FLAG_MEMINFO (1 << 1)   /* ask for mem_lower/upper and the mmap */
#define MB_FLAGS        MB_FLAG_MEMINFO

#define BOOT_STACK_SIZE 16384

	.section .multiboot, "a"
	.p2align 2
multiboot_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.text
	.globl _start
	.type _start, @function
_start:
	cli
	cld
	movl %eax, %esi             /* boot magic */
	movl %ebx, %ebp             /* multiboot info */

	/* Zero .bss ourselves instead of trusting the loader with it. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl

	movl $boot_stack_top, %esp
	pushl %ebp
	pushl %esi
	xorl %ebp, %ebp
	call kernel_entry
	/* kernel_entry() never returns; halt for good if it does. */
1:	cli
	hlt
	jmp 1b
	.size _start, . - _start

/* Trap stubs: every vector lands in trap_common with the same frame
 * (struct trap_frame in lib.h).  Vectors where the CPU pushes an error
 * code skip the dummy push. */
.macro TRAP_NOERR vec
	.globl trap_stub_\vec
trap_stub_\vec:
	pushl $0
	pushl $\vec
	jmp trap_common
.endm
.macro TRAP_ERR vec
	.globl trap_stub_\vec
trap_stub_\vec:
	pushl $\vec
	jmp trap_common
.endm

	TRAP_NOERR 0
	TRAP_NOERR 1
	TRAP_NOERR 2
	TRAP_NOERR 3
	TRAP_NOERR 4
	TRAP_NOERR 5
	TRAP_NOERR 6
	TRAP_NOERR 7
	TRAP_ERR   8
	TRAP_NOERR 9
	TRAP_ERR   10
	TRAP_ERR   11
	TRAP_ERR   12
	TRAP_ERR   13
	TRAP_ERR   14
	TRAP_NOERR 15
	TRAP_NOERR 16
	TRAP_ERR   17
	TRAP_NOERR 18
	TRAP_NOERR 19
	TRAP_NOERR 20
	TRAP_ERR   21
	TRAP_NOERR 22
	TRAP_NOERR 23
	TRAP_NOERR 24
	TRAP_NOERR 25
	TRAP_NOERR 26
	TRAP_NOERR 27
	TRAP_NOERR 28
	TRAP_ERR   29
	TRAP_ERR   30
	TRAP_NOERR 31
	/* 32..47: where payloads put the 8259 PICs' IRQs 0..15 */
	.irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
	TRAP_NOERR \v
	.endr
	TRAP_NOERR 128

trap_common:
	pushal
	movl %esp, %eax
	pushl %eax
	call trap_dispatch
	addl $4, %esp
	popal
	addl $8, %esp               /* vector and error code */
	iret

	.section .rodata
	.p2align 2
	.globl trap_stub_table
/* Stubs for vectors 0..47, in order; trap_stub_128 is separate. */
trap_stub_table:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
	.long trap_stub_\v
	.endr

	.bss
	.p2align 4
boot_stack:
	.skip BOOT_STACK_SIZE
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
