/* arch/x86/serial8250: the 16550A register model, driven as a guest would. */
#include <stdint.h>
#include <string.h>

#include "arch/x86/serial8250.h"
#include "tests/unit/unit.h"
#include "vmm/bus.h"

static struct serial8250 uart;
static uint8_t sent[8192];
static size_t nr_sent;
static int irq_level;
static unsigned irq_changes;

static void record_transmit(void *opaque, uint8_t byte)
{
	ck_assert_ptr_eq(opaque, &uart);
	ck_assert_uint_lt(nr_sent, sizeof(sent));
	sent[nr_sent++] = byte;
}

static void record_irq(void *opaque, int level)
{
	ck_assert_ptr_eq(opaque, &uart);
	/* The model reports edges of its output, never the same level twice. */
	ck_assert_int_ne(level, irq_level);
	irq_level = level;
	irq_changes++;
}

static void setup(void)
{
	nr_sent = 0;
	irq_level = 0;
	irq_changes = 0;
	serial8250_init(&uart, record_transmit, record_irq, &uart);
}

static void teardown(void)
{
	serial8250_destroy(&uart);
}

static uint8_t rd(unsigned reg)
{
	return serial8250_read(&uart, reg);
}

static void wr(unsigned reg, uint8_t v)
{
	serial8250_write(&uart, reg, v);
}

static size_t rx(const char *text)
{
	return serial8250_receive(&uart, (const uint8_t *)text, strlen(text));
}

START_TEST(reset_values)
{
	ck_assert_uint_eq(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	ck_assert_uint_eq(rd(UART_IER), 0);
	ck_assert_uint_eq(rd(UART_LCR), 0);
	ck_assert_uint_eq(rd(UART_MCR), 0);
	ck_assert_uint_eq(rd(UART_MSR),
			  UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	ck_assert_uint_eq(rd(UART_SCR), 0);
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(irq_changes, 0);
	ck_assert_uint_eq(nr_sent, 0);
}
END_TEST

START_TEST(thr_write_transmits)
{
	wr(UART_RBR, 'h');
	wr(UART_RBR, 'i');
	wr(UART_RBR, 0x00);
	wr(UART_RBR, 0xFF);
	ck_assert_uint_eq(nr_sent, 4);
	ck_assert_mem_eq(sent, "hi\0\xff", 4);
	/* Transmission is immediate: the holding register is empty again. */
	ck_assert_uint_eq(rd(UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
			  UART_LSR_THRE | UART_LSR_TEMT);
	/* No interrupt without IER. */
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
}
END_TEST

START_TEST(no_callbacks_is_fine)
{
	struct serial8250 quiet;

	serial8250_init(&quiet, NULL, NULL, NULL);
	serial8250_write(&quiet, UART_IER, UART_IER_THRI);
	serial8250_write(&quiet, UART_RBR, 'x');
	ck_assert_uint_eq(serial8250_read(&quiet, UART_IIR), UART_IIR_THRI);
	serial8250_destroy(&quiet);
}
END_TEST

START_TEST(divisor_latch)
{
	/* Reset divisor: 12 (9600 baud). */
	wr(UART_LCR, UART_LCR_DLAB | 0x03);
	ck_assert_uint_eq(rd(UART_RBR), 12);
	ck_assert_uint_eq(rd(UART_IER), 0);
	/* 115200 baud, then a divisor with both bytes set. */
	wr(UART_RBR, 0x01);
	wr(UART_IER, 0x00);
	ck_assert_uint_eq(rd(UART_RBR), 0x01);
	ck_assert_uint_eq(rd(UART_IER), 0x00);
	wr(UART_RBR, 0x34);
	wr(UART_IER, 0x12);
	ck_assert_uint_eq(rd(UART_RBR), 0x34);
	ck_assert_uint_eq(rd(UART_IER), 0x12);
	ck_assert_uint_eq(rd(UART_LCR), UART_LCR_DLAB | 0x03);
	/* Latch writes neither transmit nor touch IER. */
	ck_assert_uint_eq(nr_sent, 0);
	wr(UART_LCR, 0x03);
	ck_assert_uint_eq(rd(UART_LCR), 0x03);
	ck_assert_uint_eq(rd(UART_IER), 0);
	ck_assert_int_eq(irq_level, 0);
	wr(UART_RBR, 'A');
	ck_assert_uint_eq(nr_sent, 1);
	ck_assert_uint_eq(sent[0], 'A');
	/* The latch kept its value. */
	wr(UART_LCR, UART_LCR_DLAB);
	ck_assert_uint_eq(rd(UART_RBR), 0x34);
	ck_assert_uint_eq(rd(UART_IER), 0x12);
}
END_TEST

START_TEST(ier_keeps_low_nibble)
{
	wr(UART_IER, 0xFF);
	ck_assert_uint_eq(rd(UART_IER), 0x0F);
}
END_TEST

START_TEST(thre_interrupt_cycle)
{
	/* Enabling THRE with an empty holding register raises it at once. */
	wr(UART_IER, UART_IER_THRI);
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	/* Reading IIR while it reports THRE acknowledges it. */
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	/* Writing THR arms it again. */
	wr(UART_RBR, 'x');
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_THRE, UART_LSR_THRE);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	ck_assert_int_eq(irq_level, 0);
	/* Rewriting IER with THRI still set is not a new enable edge. */
	wr(UART_IER, UART_IER_THRI);
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	/* Disable then enable: a new edge. */
	wr(UART_IER, 0);
	wr(UART_IER, UART_IER_THRI);
	ck_assert_int_eq(irq_level, 1);
}
END_TEST

START_TEST(thre_interrupt_masked_by_ier)
{
	wr(UART_IER, UART_IER_THRI);
	ck_assert_int_eq(irq_level, 1);
	wr(UART_IER, 0);
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	/* THR writes with THRE masked raise nothing. */
	wr(UART_RBR, 'x');
	ck_assert_int_eq(irq_level, 0);
}
END_TEST

START_TEST(rx_data_and_interrupt)
{
	ck_assert_uint_eq(rx("ab"), 2);
	/* Data ready, but RDA is masked. */
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	/* Unmasking with data waiting raises RDA. */
	wr(UART_IER, UART_IER_RDI);
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RDI);
	/* Reading IIR does not acknowledge RDA: only draining does. */
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RDI);
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_RBR), 'a');
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	ck_assert_uint_eq(rd(UART_RBR), 'b');
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	/* New input while enabled raises it directly. */
	ck_assert_uint_eq(rx("c"), 1);
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_RBR), 'c');
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(irq_changes, 4);
}
END_TEST

START_TEST(rx_order_preserved_across_wrap)
{
	uint8_t buf[SERIAL8250_RX_BUF];

	/* Move the ring's head, then fill it completely so it wraps. */
	ck_assert_uint_eq(rx("0123456789"), 10);
	for (int i = 0; i < 10; i++)
		ck_assert_uint_eq(rd(UART_RBR), '0' + i);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31);
	ck_assert_uint_eq(serial8250_receive(&uart, buf, sizeof(buf)),
			  sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		ck_assert_uint_eq(rd(UART_RBR), (uint8_t)(i * 31));
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, 0);
}
END_TEST

START_TEST(rx_buffer_full_accepts_part)
{
	static uint8_t big[SERIAL8250_RX_BUF + 100];

	memset(big, 'q', sizeof(big));
	ck_assert_uint_eq(serial8250_receive(&uart, big, sizeof(big)),
			  SERIAL8250_RX_BUF);
	ck_assert_uint_eq(rx("more"), 0);
	/* The host holds back what did not fit: no overrun is reported. */
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_OE, 0);
	ck_assert_uint_eq(rd(UART_RBR), 'q');
	ck_assert_uint_eq(rx("more"), 1);
}
END_TEST

START_TEST(interrupt_priority)
{
	wr(UART_IER, UART_IER_RDI | UART_IER_THRI);
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rx("z"), 1);
	/* Both pending: RDA is reported first. */
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RDI);
	/* That IIR read did not acknowledge the THRE underneath. */
	ck_assert_uint_eq(rd(UART_RBR), 'z');
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
}
END_TEST

START_TEST(loopback_mode)
{
	wr(UART_MCR, UART_MCR_LOOP);
	ck_assert_uint_eq(rd(UART_MCR), UART_MCR_LOOP);
	wr(UART_RBR, 'L');
	wr(UART_RBR, 'b');
	/* Nothing went out on the line; it came back in. */
	ck_assert_uint_eq(nr_sent, 0);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	ck_assert_uint_eq(rd(UART_RBR), 'L');
	ck_assert_uint_eq(rd(UART_RBR), 'b');
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	/* The line receiver is disconnected. */
	ck_assert_uint_eq(rx("ignored"), 0);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	/* Leaving loopback transmits again. */
	wr(UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
	wr(UART_RBR, 'o');
	ck_assert_uint_eq(nr_sent, 1);
	ck_assert_uint_eq(sent[0], 'o');
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, 0);
}
END_TEST

START_TEST(loopback_rx_interrupt)
{
	wr(UART_IER, UART_IER_RDI);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	ck_assert_int_eq(irq_level, 0);
	wr(UART_RBR, 0x5A);
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RDI);
	ck_assert_uint_eq(rd(UART_RBR), 0x5A);
	ck_assert_int_eq(irq_level, 0);
}
END_TEST

START_TEST(loopback_msr_mirrors_mcr)
{
	wr(UART_MCR, UART_MCR_LOOP);
	ck_assert_uint_eq(rd(UART_MSR) & 0xF0, 0);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_RTS);
	ck_assert_uint_eq(rd(UART_MSR) & 0xF0, UART_MSR_CTS);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	ck_assert_uint_eq(rd(UART_MSR) & 0xF0, UART_MSR_DSR);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT1);
	ck_assert_uint_eq(rd(UART_MSR) & 0xF0, UART_MSR_RI);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	ck_assert_uint_eq(rd(UART_MSR) & 0xF0, UART_MSR_DCD);
	wr(UART_MCR, UART_MCR_LOOP | 0x0F);
	ck_assert_uint_eq(rd(UART_MSR) & 0xF0, 0xF0);
	/* Out of loopback the real (cable attached) inputs come back. */
	wr(UART_MCR, 0);
	ck_assert_uint_eq(rd(UART_MSR),
			  UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
}
END_TEST

START_TEST(mcr_keeps_low_five_bits)
{
	wr(UART_MCR, 0xFF);
	ck_assert_uint_eq(rd(UART_MCR), 0x1F);
}
END_TEST

START_TEST(fifo_enable_bits_in_iir)
{
	wr(UART_IIR, UART_FCR_ENABLE);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	/* Trigger level bits do not change the identification. */
	wr(UART_IIR, UART_FCR_ENABLE | 0xC0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	wr(UART_IER, UART_IER_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	wr(UART_IIR, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
}
END_TEST

START_TEST(fcr_clears_receiver)
{
	wr(UART_IER, UART_IER_RDI);
	ck_assert_uint_eq(rx("stale"), 5);
	ck_assert_int_eq(irq_level, 1);
	wr(UART_IIR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX | UART_FCR_CLEAR_TX);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(rx("n"), 1);
	ck_assert_uint_eq(rd(UART_RBR), 'n');
}
END_TEST

START_TEST(overrun_when_receive_buffer_full)
{
	/* Only loopback can push past a full buffer: the host side waits. */
	wr(UART_MCR, UART_MCR_LOOP);
	for (unsigned i = 0; i < SERIAL8250_RX_BUF; i++)
		wr(UART_RBR, (uint8_t)i);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_OE, 0);
	wr(UART_RBR, 0xEE);
	ck_assert_uint_eq(rd(UART_LSR) & (UART_LSR_OE | UART_LSR_DR),
			  UART_LSR_OE | UART_LSR_DR);
	/* The error bit clears when LSR is read. */
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_OE, 0);
	/* The overflowing byte was lost; the buffered ones are intact. */
	for (unsigned i = 0; i < SERIAL8250_RX_BUF; i++)
		ck_assert_uint_eq(rd(UART_RBR), (uint8_t)i);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_DR, 0);
}
END_TEST

START_TEST(overrun_line_status_interrupt)
{
	wr(UART_MCR, UART_MCR_LOOP);
	for (unsigned i = 0; i <= SERIAL8250_RX_BUF; i++)
		wr(UART_RBR, 'x');
	wr(UART_IER, UART_IER_RLSI | UART_IER_RDI);
	/* Receiver line status outranks received data. */
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RLSI);
	ck_assert_uint_eq(rd(UART_LSR) & UART_LSR_OE, UART_LSR_OE);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RDI);
	ck_assert_int_eq(irq_level, 1);
}
END_TEST

START_TEST(scratch_register)
{
	wr(UART_SCR, 0x5A);
	ck_assert_uint_eq(rd(UART_SCR), 0x5A);
	wr(UART_SCR, 0xA5);
	ck_assert_uint_eq(rd(UART_SCR), 0xA5);
	/* Independent of DLAB. */
	wr(UART_LCR, UART_LCR_DLAB);
	ck_assert_uint_eq(rd(UART_SCR), 0xA5);
}
END_TEST

START_TEST(read_only_registers_ignore_writes)
{
	wr(UART_LSR, 0x00);
	wr(UART_MSR, 0x00);
	ck_assert_uint_eq(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	ck_assert_uint_eq(rd(UART_MSR),
			  UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
}
END_TEST

START_TEST(out_of_range_offsets)
{
	ck_assert_uint_eq(rd(8), 0xFF);
	ck_assert_uint_eq(rd(0xFFFF), 0xFF);
	wr(8, 0x12);
	wr(100, 0x12);
	ck_assert_uint_eq(nr_sent, 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
}
END_TEST

START_TEST(bus_adapter)
{
	struct bus pio;
	uint64_t v;

	ck_assert_int_eq(bus_init(&pio, "pio"), 0);
	ck_assert_int_eq(bus_register(&pio, 0x3F8, SERIAL8250_NR_REGS,
				      &serial8250_bus_ops, &uart, "com1"), 0);
	ck_assert_int_eq(bus_write(&pio, 0x3F8, 1, 'K'), 0);
	ck_assert_uint_eq(nr_sent, 1);
	ck_assert_uint_eq(sent[0], 'K');
	ck_assert_int_eq(bus_read(&pio, 0x3FD, 1, &v), 0);
	ck_assert_uint_eq(v, UART_LSR_THRE | UART_LSR_TEMT);
	ck_assert_int_eq(bus_write(&pio, 0x3FF, 1, 0x77), 0);
	ck_assert_int_eq(bus_read(&pio, 0x3FF, 1, &v), 0);
	ck_assert_uint_eq(v, 0x77);
	/* A wider access uses the low byte. */
	ck_assert_int_eq(bus_write(&pio, 0x3F8, 2, 0x4142), 0);
	ck_assert_uint_eq(nr_sent, 2);
	ck_assert_uint_eq(sent[1], 0x42);
	bus_destroy(&pio);
}
END_TEST

static Suite *serial8250_suite(void)
{
	Suite *s = suite_create("serial8250");
	TCase *tc = tcase_create("16550a");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, reset_values);
	tcase_add_test(tc, thr_write_transmits);
	tcase_add_test(tc, no_callbacks_is_fine);
	tcase_add_test(tc, divisor_latch);
	tcase_add_test(tc, ier_keeps_low_nibble);
	tcase_add_test(tc, thre_interrupt_cycle);
	tcase_add_test(tc, thre_interrupt_masked_by_ier);
	tcase_add_test(tc, rx_data_and_interrupt);
	tcase_add_test(tc, rx_order_preserved_across_wrap);
	tcase_add_test(tc, rx_buffer_full_accepts_part);
	tcase_add_test(tc, interrupt_priority);
	tcase_add_test(tc, loopback_mode);
	tcase_add_test(tc, loopback_rx_interrupt);
	tcase_add_test(tc, loopback_msr_mirrors_mcr);
	tcase_add_test(tc, mcr_keeps_low_five_bits);
	tcase_add_test(tc, fifo_enable_bits_in_iir);
	tcase_add_test(tc, fcr_clears_receiver);
	tcase_add_test(tc, overrun_when_receive_buffer_full);
	tcase_add_test(tc, overrun_line_status_interrupt);
	tcase_add_test(tc, scratch_register);
	tcase_add_test(tc, read_only_registers_ignore_writes);
	tcase_add_test(tc, out_of_range_offsets);
	tcase_add_test(tc, bus_adapter);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(serial8250_suite)
