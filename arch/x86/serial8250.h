/* An 8250/16550A UART: the register model, independent of KVM.
 *
 * The owner supplies callbacks for transmitted bytes and for the interrupt
 * line; received bytes are pushed in with serial8250_receive().  All entry
 * points take the UART's lock, so vCPU threads and the console thread may
 * call them concurrently. */
#ifndef KITE_ARCH_X86_SERIAL8250_H
#define KITE_ARCH_X86_SERIAL8250_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/bus.h"

#define SERIAL8250_NR_REGS 8
#define SERIAL8250_FIFO_SIZE 16
/* Host-side receive buffer: input waits here until the guest reads it. */
#define SERIAL8250_RX_BUF 4096

/* Register offsets (DLAB=0 unless noted). */
#define UART_RBR 0 /* read: receive buffer; write: THR */
#define UART_IER 1 /* DLAB=1: divisor latch high */
#define UART_IIR 2 /* read: interrupt id; write: FCR */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI  0x01 /* received data available */
#define UART_IER_THRI 0x02 /* transmitter holding register empty */
#define UART_IER_RLSI 0x04 /* receiver line status */
#define UART_IER_MSI  0x08 /* modem status */

#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI    0x00
#define UART_IIR_THRI   0x02
#define UART_IIR_RDI    0x04
#define UART_IIR_RLSI   0x06
#define UART_IIR_FIFO   0xC0

#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR  0x01
#define UART_MCR_RTS  0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10

#define UART_LSR_DR   0x01
#define UART_LSR_OE   0x02
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40

#define UART_MSR_DCTS 0x01
#define UART_MSR_DDSR 0x02
#define UART_MSR_TERI 0x04
#define UART_MSR_DDCD 0x08
#define UART_MSR_CTS  0x10
#define UART_MSR_DSR  0x20
#define UART_MSR_RI   0x40
#define UART_MSR_DCD  0x80

struct serial8250 {
	pthread_mutex_t lock;
	uint8_t ier, iir_fifo, lcr, mcr, lsr, msr, scr, fcr;
	uint16_t divisor;
	bool thr_irq_pending;   /* THRE interrupt armed until IIR read/THR write */
	uint8_t rx[SERIAL8250_RX_BUF];
	size_t rx_head, rx_count;
	bool irq_level;

	void (*transmit)(void *opaque, uint8_t byte);
	void (*set_irq)(void *opaque, int level);
	void *opaque;
};

void serial8250_init(struct serial8250 *s,
		     void (*transmit)(void *opaque, uint8_t byte),
		     void (*set_irq)(void *opaque, int level), void *opaque);
void serial8250_destroy(struct serial8250 *s);

/* Register access at |offset| 0..7 (byte accesses; wider ones use the low
 * byte, as the ISA bus would deliver them). */
uint8_t serial8250_read(struct serial8250 *s, unsigned offset);
void serial8250_write(struct serial8250 *s, unsigned offset, uint8_t value);

/* Queue received bytes; returns how many were accepted (the rest did not
 * fit and should be offered again later). */
size_t serial8250_receive(struct serial8250 *s, const uint8_t *buf,
			  size_t len);

/* bus_ops adapter: the opaque pointer is the struct serial8250. */
extern const struct bus_ops serial8250_bus_ops;

#endif
