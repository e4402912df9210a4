/* 16550A register model.  Behaviour follows the National Semiconductor
 * PC16550D data sheet: interrupt priority RLS > RDA > THRE > MSR, the THRE
 * interrupt is cleared by reading IIR (when it is the source) or writing
 * THR, RDA by draining the receiver. */
#include "arch/x86/serial8250.h"

#include <string.h>

static void update_irq(struct serial8250 *s)
{
	uint8_t iir = UART_IIR_NO_INT;
	bool level;

	if ((s->ier & UART_IER_RLSI) && (s->lsr & UART_LSR_OE))
		iir = UART_IIR_RLSI;
	else if ((s->ier & UART_IER_RDI) && s->rx_count)
		iir = UART_IIR_RDI;
	else if ((s->ier & UART_IER_THRI) && s->thr_irq_pending)
		iir = UART_IIR_THRI;
	else if ((s->ier & UART_IER_MSI) &&
		 (s->msr & (UART_MSR_DCTS | UART_MSR_DDSR | UART_MSR_TERI |
			    UART_MSR_DDCD)))
		iir = UART_IIR_MSI;

	s->iir_fifo = (uint8_t)(iir | ((s->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0));
	level = iir != UART_IIR_NO_INT;
	if (level != s->irq_level) {
		s->irq_level = level;
		if (s->set_irq)
			s->set_irq(s->opaque, level);
	}
}

void serial8250_init(struct serial8250 *s,
		     void (*transmit)(void *opaque, uint8_t byte),
		     void (*set_irq)(void *opaque, int level), void *opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->transmit = transmit;
	s->set_irq = set_irq;
	s->opaque = opaque;
	s->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	/* Carrier, data set ready and clear to send: a cable is attached. */
	s->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	s->divisor = 12; /* 9600 baud */
	s->iir_fifo = UART_IIR_NO_INT;
}

void serial8250_destroy(struct serial8250 *s)
{
	pthread_mutex_destroy(&s->lock);
}

static uint8_t rx_pop(struct serial8250 *s)
{
	uint8_t c;

	if (!s->rx_count)
		return 0;
	c = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL8250_RX_BUF;
	s->rx_count--;
	return c;
}

static void rx_push(struct serial8250 *s, uint8_t c)
{
	if (s->rx_count == SERIAL8250_RX_BUF) {
		s->lsr |= UART_LSR_OE;
		return;
	}
	s->rx[(s->rx_head + s->rx_count) % SERIAL8250_RX_BUF] = c;
	s->rx_count++;
}

/* Modem status inputs as seen in loopback: outputs wired back to inputs. */
static uint8_t loopback_msr(uint8_t mcr)
{
	uint8_t m = 0;

	if (mcr & UART_MCR_RTS)
		m |= UART_MSR_CTS;
	if (mcr & UART_MCR_DTR)
		m |= UART_MSR_DSR;
	if (mcr & UART_MCR_OUT1)
		m |= UART_MSR_RI;
	if (mcr & UART_MCR_OUT2)
		m |= UART_MSR_DCD;
	return m;
}

uint8_t serial8250_read(struct serial8250 *s, unsigned offset)
{
	uint8_t v = 0xFF;

	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case UART_RBR:
		if (s->lcr & UART_LCR_DLAB) {
			v = (uint8_t)s->divisor;
			break;
		}
		v = rx_pop(s);
		break;
	case UART_IER:
		v = (s->lcr & UART_LCR_DLAB) ? (uint8_t)(s->divisor >> 8) : s->ier;
		break;
	case UART_IIR:
		v = s->iir_fifo;
		/* Reading IIR acknowledges a THRE interrupt it reports. */
		if ((v & 0x0F) == UART_IIR_THRI)
			s->thr_irq_pending = false;
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = (uint8_t)(s->lsr | (s->rx_count ? UART_LSR_DR : 0));
		s->lsr &= (uint8_t)~UART_LSR_OE; /* error bits clear on read */
		break;
	case UART_MSR:
		if (s->mcr & UART_MCR_LOOP)
			v = (uint8_t)(loopback_msr(s->mcr) | (s->msr & 0x0F));
		else
			v = s->msr;
		s->msr &= 0xF0; /* delta bits clear on read */
		break;
	case UART_SCR:
		v = s->scr;
		break;
	default:
		break;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return v;
}

void serial8250_write(struct serial8250 *s, unsigned offset, uint8_t value)
{
	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case UART_RBR: /* THR */
		if (s->lcr & UART_LCR_DLAB) {
			s->divisor = (uint16_t)((s->divisor & 0xFF00) | value);
			break;
		}
		if (s->mcr & UART_MCR_LOOP)
			rx_push(s, value);
		else if (s->transmit)
			s->transmit(s->opaque, value);
		/* Transmission is instantaneous: THR is empty again at once. */
		s->lsr |= UART_LSR_THRE | UART_LSR_TEMT;
		s->thr_irq_pending = true;
		break;
	case UART_IER:
		if (s->lcr & UART_LCR_DLAB) {
			s->divisor = (uint16_t)((s->divisor & 0x00FF) | (value << 8));
			break;
		}
		/* Enabling THRE while THR is empty raises the interrupt. */
		if (!(s->ier & UART_IER_THRI) && (value & UART_IER_THRI) &&
		    (s->lsr & UART_LSR_THRE))
			s->thr_irq_pending = true;
		s->ier = value & 0x0F;
		break;
	case UART_IIR: /* FCR */
		if (value & UART_FCR_CLEAR_RX) {
			s->rx_head = 0;
			s->rx_count = 0;
		}
		s->fcr = value & 0xC9; /* trigger level, DMA mode, enable */
		break;
	case UART_LCR:
		s->lcr = value;
		break;
	case UART_MCR:
		s->mcr = value & 0x1F;
		break;
	case UART_LSR:
	case UART_MSR:
		break; /* read-only (factory test on real parts) */
	case UART_SCR:
		s->scr = value;
		break;
	default:
		break;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

size_t serial8250_receive(struct serial8250 *s, const uint8_t *buf,
			  size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	/* In loopback the receiver is disconnected from the line. */
	if (!(s->mcr & UART_MCR_LOOP)) {
		while (n < len && s->rx_count < SERIAL8250_RX_BUF)
			rx_push(s, buf[n++]);
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void bus_read_adapter(void *opaque, uint64_t offset, unsigned size,
			     uint64_t *value)
{
	(void)size;
	*value = serial8250_read(opaque, (unsigned)offset);
}

static void bus_write_adapter(void *opaque, uint64_t offset, unsigned size,
			      uint64_t value)
{
	(void)size;
	serial8250_write(opaque, (unsigned)offset, (uint8_t)value);
}

const struct bus_ops serial8250_bus_ops = {
	.read = bus_read_adapter,
	.write = bus_write_adapter,
};
