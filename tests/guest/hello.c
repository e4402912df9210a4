/* hello: the smallest useful guest.  Proves that kite loads a Multiboot
 * ELF at its physical address, enters it with the multiboot handoff, that
 * COM1 output reaches kite's stdout, that the command line and memory
 * information arrive, and that the debug-exit port ends the VM. */
#include "lib.h"

#define MMAP_TYPE_RAM 1

/* Walk the multiboot memory map, bounded so a bad length cannot run away. */
static void report_memory(const struct multiboot_info *mbi)
{
	if (mbi->flags & MB_INFO_MEMORY)
		kprintf("mem: lower=%uK upper=%uK\n", mbi->mem_lower,
			mbi->mem_upper);
	else
		kprintf("mem: no memory information (flags=%x)\n", mbi->flags);

	if (!(mbi->flags & MB_INFO_MMAP)) {
		kprintf("mmap: none\n");
		return;
	}
	uint32_t offset = 0;
	uint64_t ram = 0;
	unsigned entries = 0;
	while (offset + sizeof(struct multiboot_mmap_entry) <=
		       mbi->mmap_length && entries < 64) {
		const struct multiboot_mmap_entry *e =
			(const void *)(uintptr_t)(mbi->mmap_addr + offset);
		kprintf("mmap: %08x%08x-%08x%08x type %u\n",
			(uint32_t)(e->addr >> 32), (uint32_t)e->addr,
			(uint32_t)((e->addr + e->len - 1) >> 32),
			(uint32_t)(e->addr + e->len - 1), e->type);
		if (e->type == MMAP_TYPE_RAM)
			ram += e->len;
		offset += e->size + sizeof(e->size);
		entries++;
	}
	kprintf("mmap: %u entries, %u KiB of RAM\n", entries,
		(uint32_t)(ram >> 10));
}

void payload_main(void)
{
	kprintf("Hello from a Kite guest\n");
	if (boot_cmdline()[0])
		kprintf("cmdline: %s\n", boot_cmdline());
	report_memory(boot_info());
}
