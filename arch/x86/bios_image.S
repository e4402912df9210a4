/* The built BIOS image (bios/, flat binary) inside kite, so that kite stays
 * one file.  The Makefile assembles this with the image's directory on the
 * assembler's include path.  Used by arch/x86/bios.c. */
	.section .rodata
	.balign 16
	.globl kite_bios_image
	.type kite_bios_image, @object
kite_bios_image:
	.incbin "bios.bin"
	.globl kite_bios_image_end
kite_bios_image_end:
	.size kite_bios_image, kite_bios_image_end - kite_bios_image

	.section .note.GNU-stack, "", @progbits
