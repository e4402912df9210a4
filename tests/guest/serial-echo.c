/* serial-echo: proves that COM1's receive interrupt works end to end.
 * Once input is waiting, enabling the receive interrupt must make the UART
 * report it (IIR) and raise IRQ 4, seen in the 8259's request register; the
 * payload drains the line, checks the interrupt is gone, echoes "got: LINE"
 * and passes.  With deliver=1 the PIC delivers IRQ 4 at vector 0x24 and the
 * handler reads the line instead.
 * lib.c's serial_init() resets the receive FIFO, as drivers do: input sent
 * before the payload starts is discarded, so the test sends it a moment
 * later.
 * kite's stdin is the line source: `printf 'kite\n' | kite run -k ...`. */
#include "lib.h"

#define COM1 0x3F8
#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1
#define IRQ_BASE 0x20
#define COM1_IRQ 4

static volatile char line[80];
static volatile unsigned line_len, interrupts;
static volatile int line_done;

static void pic_init(void)
{
	/* ICW1..ICW4: edge-triggered, cascaded, vectors 0x20/0x28, 8086 mode */
	outb(PIC1_CMD, 0x11);
	outb(PIC2_CMD, 0x11);
	outb(PIC1_DATA, IRQ_BASE);
	outb(PIC2_DATA, IRQ_BASE + 8);
	outb(PIC1_DATA, 0x04);
	outb(PIC2_DATA, 0x02);
	outb(PIC1_DATA, 0x01);
	outb(PIC2_DATA, 0x01);
	/* Everything masked: the IRR still latches requests (8259A data
	 * sheet, "Interrupt Request Register"), so IRQ 4 is observable without
	 * being delivered.  deliver=1 unmasks it. */
	outb(PIC1_DATA, 0xFF);
	outb(PIC2_DATA, 0xFF);
}

static void on_com1(struct trap_frame *f)
{
	(void)f;
	interrupts++;
	/* LSR bit 0: data ready.  Drain everything that arrived. */
	while (inb(COM1 + 5) & 1) {
		char c = (char)inb(COM1);

		if (line_done)
			continue;
		if (c == '\n' || c == '\r')
			line_done = line_len > 0;
		else if (line_len < sizeof(line) - 1)
			line[line_len++] = c;
	}
	outb(PIC1_CMD, 0x20); /* non-specific EOI */
}

/* The PIC's interrupt request register (OCW3 "read IRR"). */
static uint8_t pic_irr(void)
{
	outb(PIC1_CMD, 0x0A);
	return inb(PIC1_CMD);
}

void payload_main(void)
{
	char deliver[4] = "0";
	uint32_t spins = 0;
	uint8_t iir, irr;

	trap_set_handler(IRQ_BASE + COM1_IRQ, on_com1, 0);
	pic_init();
	outb(COM1 + 4, 0x0B); /* MCR: DTR, RTS, OUT2 (IRQ enable on PCs) */
	kprintf("serial-echo: waiting for a line on COM1\n");
	/* Wait (interrupts off) until the first byte is there, then enable
	 * the receive interrupt: the UART must raise IRQ 4 at once. */
	/* Bounded: LSR is read every 1000 pauses (each read is an exit). */
	while (spins < 3000000u && (spins % 1000 || !(inb(COM1 + 5) & 1))) {
		cpu_relax();
		spins++;
	}
	if (!(inb(COM1 + 5) & 1))
		exit_fail("no input arrived on COM1");
	outb(COM1 + 1, 0x01); /* IER: received data available */
	iir = inb(COM1 + 2);
	irr = pic_irr();
	kprintf("iir: 0x%x, pic irr: 0x%x\n", iir, irr);
	if ((iir & 0x0F) != 0x04)
		exit_fail("IIR 0x%x does not report received data", iir);
	if (!(irr & (1u << COM1_IRQ)))
		exit_fail("IRQ 4 was not raised at the PIC (IRR 0x%x)", irr);
	cmdline_get("deliver", deliver, sizeof(deliver));
	if (deliver[0] == '1') {
		spins = 0;
		outb(PIC1_DATA, (uint8_t)~(1u << COM1_IRQ)); /* only IRQ 4 */
		__asm__ volatile("sti");
		while (!line_done && spins < 3000000u) {
			cpu_relax();
			spins++;
		}
		__asm__ volatile("cli");
		if (!interrupts)
			exit_fail("the interrupt was not delivered to the CPU");
	} else {
		/* Drain by polling; the IRQ line must drop once empty. */
		while (!line_done && spins < 3000000u) {
			if (inb(COM1 + 5) & 1) {
				char c = (char)inb(COM1);

				if (c == '\n')
					line_done = 1;
				else if (line_len < sizeof(line) - 1)
					line[line_len++] = c;
			}
			spins++;
		}
		iir = inb(COM1 + 2);
		if ((iir & 0x0F) != 0x01)
			exit_fail("IIR 0x%x still reports an interrupt after draining", iir);
	}
	if (!line_done)
		exit_fail("no complete line (%u bytes)", line_len);
	line[line_len] = '\0';
	kprintf("got: %s\n", (const char *)line);
	exit_pass();
}
