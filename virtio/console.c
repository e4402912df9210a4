/* virtio console device (virtio 1.2 §5.3).  See console.h for the port
 * model, the data policy and the threading rules. */
#include "virtio/console.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/log.h"

/* Tags of the device's own epoll set: port << 8 | kind. */
#define TAG_WAKE   1u
#define TAG_LISTEN 2u
#define TAG_CONN   3u
#define TAG(port, kind) (((uint32_t)(port) << 8) | (kind))

/* iovecs per sendmsg(); a longer buffer just takes several calls. */
#define TX_IOV_BATCH 64

static struct virtio_console *to_console(struct virtio_device *dev)
{
	return (struct virtio_console *)((char *)dev -
					 offsetof(struct virtio_console, vdev));
}

static bool multiport(struct virtio_console *con)
{
	return virtio_has_feature(&con->vdev, VIRTIO_CONSOLE_F_MULTIPORT);
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16(p + 2, (uint16_t)(v >> 16));
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
	return get_le16(p) | ((uint32_t)get_le16(p + 2) << 16);
}

static void wake(struct virtio_console *con)
{
	uint64_t one = 1;

	if (write(con->wake_fd, &one, sizeof(one)) < 0) {
		/* Only a saturated counter fails; the thread is awake then. */
	}
}

/* ---- port 0 output -------------------------------------------------- */

static void port0_emit(struct virtio_console *con, const uint8_t *buf,
		       size_t len)
{
	pthread_mutex_lock(&con->out_lock);
	if (con->port0_output && len)
		con->port0_output(con->port0_opaque, buf, len);
	pthread_mutex_unlock(&con->out_lock);
}

/* ---- control receiveq: device -> driver (§5.3.6.2) ------------------- */

static void ctrl_queue(struct virtio_console *con, uint32_t id, uint16_t event,
		       uint16_t value, const void *extra, size_t extra_len)
{
	struct virtio_console_ctrl_msg *m = NULL;
	unsigned i;

	if (extra_len > sizeof(m->extra))
		extra_len = sizeof(m->extra);
	/* A newer PORT_OPEN or RESIZE for a port replaces one not yet sent:
	 * only the latest state matters, and it bounds the backlog. */
	if (event == VIRTIO_CONSOLE_PORT_OPEN ||
	    event == VIRTIO_CONSOLE_RESIZE) {
		for (i = 0; i < con->ctrl_len; i++) {
			struct virtio_console_ctrl_msg *c =
				&con->ctrl[(con->ctrl_head + i) %
					   VIRTIO_CONSOLE_CTRL_BACKLOG];

			if (c->id == id && c->event == event) {
				m = c;
				break;
			}
		}
	}
	if (!m) {
		if (con->ctrl_len == VIRTIO_CONSOLE_CTRL_BACKLOG) {
			if (con->ctrl_dropped++ == 0)
				kite_warn("virtio %s: control message backlog full; "
					  "the driver gives no control buffers",
					  con->vdev.name);
			return;
		}
		m = &con->ctrl[(con->ctrl_head + con->ctrl_len) %
			       VIRTIO_CONSOLE_CTRL_BACKLOG];
		con->ctrl_len++;
	}
	m->id = id;
	m->event = event;
	m->value = value;
	m->extra_len = (uint16_t)extra_len;
	if (extra_len)
		memcpy(m->extra, extra, extra_len);
}

/* Move backlogged control messages into control receiveq buffers. */
static void ctrl_flush(struct virtio_console *con)
{
	struct virtio_device *dev = &con->vdev;
	bool pushed = false;

	if (!multiport(con))
		return;
	while (con->ctrl_len) {
		struct virtio_console_ctrl_msg *m = &con->ctrl[con->ctrl_head];
		uint8_t msg[VIRTIO_CONSOLE_CONTROL_SIZE + sizeof(m->extra)];
		size_t len = VIRTIO_CONSOLE_CONTROL_SIZE + m->extra_len;
		int ret = virtio_queue_pop(dev, VIRTIO_CONSOLE_CTRL_RXQ,
					   &con->elem);

		if (ret <= 0)
			break;
		if (con->elem.writable_len < VIRTIO_CONSOLE_CONTROL_SIZE) {
			/* Too small for any message: give it back empty and
			 * keep the message for the next buffer. */
			con->bad_control++;
			if (virtio_queue_push(dev, VIRTIO_CONSOLE_CTRL_RXQ,
					      &con->elem, 0) < 0)
				break;
			pushed = true;
			continue;
		}
		put_le32(msg, m->id);
		put_le16(msg + 4, m->event);
		put_le16(msg + 6, m->value);
		memcpy(msg + VIRTIO_CONSOLE_CONTROL_SIZE, m->extra, m->extra_len);
		/* A name longer than the buffer is cut short. */
		if (len > con->elem.writable_len)
			len = (size_t)con->elem.writable_len;
		len = virtq_elem_write(&con->elem, 0, msg, len);
		if (virtio_queue_push(dev, VIRTIO_CONSOLE_CTRL_RXQ, &con->elem,
				      (uint32_t)len) < 0)
			break;
		pushed = true;
		con->ctrl_head = (con->ctrl_head + 1) % VIRTIO_CONSOLE_CTRL_BACKLOG;
		con->ctrl_len--;
	}
	if (pushed)
		virtio_queue_notify_driver(dev, VIRTIO_CONSOLE_CTRL_RXQ);
}

static bool host_connected(struct virtio_console *con,
			   const struct virtio_console_port *port)
{
	if (port->id == 0)
		return con->port0_output != NULL || port->is_console;
	return port->conn_fd >= 0;
}

static void queue_resize(struct virtio_console *con)
{
	uint8_t size[4];

	pthread_mutex_lock(&con->cfg_lock);
	/* §5.3.6.2: struct virtio_console_resize { le16 cols; le16 rows; } */
	put_le16(size, con->cols);
	put_le16(size + 2, con->rows);
	con->resize_pending = false;
	pthread_mutex_unlock(&con->cfg_lock);
	ctrl_queue(con, 0, VIRTIO_CONSOLE_RESIZE, 0, size, sizeof(size));
}

/* ---- host -> guest ---------------------------------------------------- */

static bool port_receives(struct virtio_console *con,
			  const struct virtio_console_port *port)
{
	if (!multiport(con))
		return port->id == 0;
	return port->added && port->guest_open;
}

static void conn_update(struct virtio_console *con,
			struct virtio_console_port *port)
{
	struct epoll_event ev = { 0 };
	uint32_t want = 0;
	int op;

	if (port->conn_fd < 0)
		return;
	pthread_mutex_lock(&port->in_lock);
	if (port->in_len < VIRTIO_CONSOLE_INBUF)
		want |= EPOLLIN;
	pthread_mutex_unlock(&port->in_lock);
	if (port->tx_pending)
		want |= EPOLLOUT;
	if (want == port->conn_events)
		return;
	/* With no interest the fd leaves the set entirely: a hung-up socket
	 * would otherwise report EPOLLHUP forever. */
	if (want == 0)
		op = EPOLL_CTL_DEL;
	else
		op = port->conn_events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	ev.events = want;
	ev.data.u32 = TAG(port->id, TAG_CONN);
	if (epoll_ctl(con->epoll_fd, op, port->conn_fd, &ev) < 0)
		kite_warn("virtio %s: port %u: epoll: %s", con->vdev.name,
			  port->id, strerror(errno));
	else
		port->conn_events = want;
}

/* Copy staged host bytes into the port's receiveq buffers. */
static void deliver_input(struct virtio_console *con,
			  struct virtio_console_port *port)
{
	struct virtio_device *dev = &con->vdev;
	unsigned q = VIRTIO_CONSOLE_RXQ(port->id);
	bool pushed = false, freed = false;

	if (!port_receives(con, port))
		return;
	pthread_mutex_lock(&port->in_lock);
	while (port->in_len) {
		size_t n, first, done;

		if (virtio_queue_pop(dev, q, &con->elem) <= 0)
			break;
		n = port->in_len;
		if (n > con->elem.writable_len)
			n = (size_t)con->elem.writable_len;
		first = VIRTIO_CONSOLE_INBUF - port->in_head;
		if (first > n)
			first = n;
		/* A readable-only buffer in a receiveq (§5.3.6.1 forbids it)
		 * takes nothing and is returned empty. */
		done = virtq_elem_write(&con->elem, 0,
					port->inbuf + port->in_head, first);
		if (done == first && n > first)
			done += virtq_elem_write(&con->elem, first, port->inbuf,
						 n - first);
		port->in_head = (port->in_head + done) % VIRTIO_CONSOLE_INBUF;
		port->in_len -= done;
		port->bytes_to_guest += done;
		freed |= done > 0;
		if (virtio_queue_push(dev, q, &con->elem, (uint32_t)done) < 0)
			break;
		pushed = true;
	}
	pthread_mutex_unlock(&port->in_lock);
	if (pushed)
		virtio_queue_notify_driver(dev, q);
	if (freed && port->id != 0)
		conn_update(con, port);
}

/* ---- sockets ---------------------------------------------------------- */

static void listen_arm(struct virtio_console *con,
		       struct virtio_console_port *port)
{
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u32 = TAG(port->id, TAG_LISTEN) };

	if (port->listening || port->listen_fd < 0)
		return;
	if (epoll_ctl(con->epoll_fd, EPOLL_CTL_ADD, port->listen_fd, &ev) == 0)
		port->listening = true;
}

static void port_disconnect(struct virtio_console *con,
			    struct virtio_console_port *port)
{
	if (port->conn_fd < 0)
		return;
	if (port->conn_events)
		epoll_ctl(con->epoll_fd, EPOLL_CTL_DEL, port->conn_fd, NULL);
	close(port->conn_fd);
	port->conn_fd = -1;
	port->conn_events = 0;
	if (port->tx_pending) {
		/* The rest of this buffer has nowhere to go. */
		port->bytes_dropped += port->tx_elem->readable_len - port->tx_off;
		port->tx_pending = false;
		if (virtio_queue_push(&con->vdev, VIRTIO_CONSOLE_TXQ(port->id),
				      port->tx_elem, 0) == 0)
			virtio_queue_notify_driver(&con->vdev,
						   VIRTIO_CONSOLE_TXQ(port->id));
	}
	listen_arm(con, port);
	if (port->guest_ready) {
		ctrl_queue(con, port->id, VIRTIO_CONSOLE_PORT_OPEN, 0, NULL, 0);
		ctrl_flush(con);
	}
}

static void port_accept(struct virtio_console *con,
			struct virtio_console_port *port)
{
	int fd;

	if (port->conn_fd >= 0)
		return;
	fd = accept4(port->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return; /* EAGAIN, or the client went away already */
	port->conn_fd = fd;
	port->conn_events = 0;
	/* One peer at a time: others wait in the backlog. */
	if (port->listening) {
		epoll_ctl(con->epoll_fd, EPOLL_CTL_DEL, port->listen_fd, NULL);
		port->listening = false;
	}
	conn_update(con, port);
	if (port->guest_ready) {
		ctrl_queue(con, port->id, VIRTIO_CONSOLE_PORT_OPEN, 1, NULL, 0);
		ctrl_flush(con);
	}
}

static void port_read_peer(struct virtio_console *con,
			   struct virtio_console_port *port)
{
	struct iovec iov[2];
	int niov = 0;
	ssize_t n;
	size_t tail, space;

	pthread_mutex_lock(&port->in_lock);
	space = VIRTIO_CONSOLE_INBUF - port->in_len;
	tail = (port->in_head + port->in_len) % VIRTIO_CONSOLE_INBUF;
	if (space) {
		size_t first = VIRTIO_CONSOLE_INBUF - tail;

		if (first > space)
			first = space;
		iov[niov++] = (struct iovec){ port->inbuf + tail, first };
		if (space > first)
			iov[niov++] = (struct iovec){ port->inbuf, space - first };
	}
	pthread_mutex_unlock(&port->in_lock);
	if (!niov) {
		conn_update(con, port);
		return;
	}
	/* Only this thread fills a socket port's stage, so the space found
	 * above is still free. */
	do
		n = readv(port->conn_fd, iov, niov);
	while (n < 0 && errno == EINTR);
	if (n == 0 || (n < 0 && errno != EAGAIN)) {
		/* EOF or error: what was staged still goes to the guest. */
		port_disconnect(con, port);
		return;
	}
	if (n > 0) {
		pthread_mutex_lock(&port->in_lock);
		port->in_len += (size_t)n;
		pthread_mutex_unlock(&port->in_lock);
		deliver_input(con, port);
	}
	conn_update(con, port);
}

/* ---- guest -> host ---------------------------------------------------- */

/* Send the rest of port->tx_elem: 1 when all went, 0 when the socket is
 * full, -1 when the peer is gone. */
static int tx_send(struct virtio_console_port *port)
{
	const struct virtq_elem *e = port->tx_elem;

	for (;;) {
		struct iovec iov[TX_IOV_BATCH];
		struct msghdr msg = { .msg_iov = iov };
		size_t skip = port->tx_off;
		unsigned i;
		ssize_t n;

		for (i = 0; i < e->nreadable && msg.msg_iovlen < TX_IOV_BATCH;
		     i++) {
			if (skip >= e->bufs[i].len) {
				skip -= e->bufs[i].len;
				continue;
			}
			iov[msg.msg_iovlen++] = (struct iovec){
				(uint8_t *)e->bufs[i].addr + skip,
				e->bufs[i].len - skip };
			skip = 0;
		}
		if (msg.msg_iovlen == 0)
			return 1;
		n = sendmsg(port->conn_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		port->tx_off += (size_t)n;
		port->bytes_from_guest += (uint64_t)n;
	}
}

static void port_transmit(struct virtio_console *con,
			  struct virtio_console_port *port);

/* The socket became writable (or hung up) while a buffer was pending. */
static void tx_resume(struct virtio_console *con,
		      struct virtio_console_port *port)
{
	unsigned q = VIRTIO_CONSOLE_TXQ(port->id);
	int r;

	if (!port->tx_pending)
		return;
	r = tx_send(port);
	if (r < 0) {
		port_disconnect(con, port);
		return;
	}
	if (r == 0) {
		conn_update(con, port);
		return;
	}
	port->tx_pending = false;
	if (virtio_queue_push(&con->vdev, q, port->tx_elem, 0) == 0)
		virtio_queue_notify_driver(&con->vdev, q);
	conn_update(con, port);
	port_transmit(con, port);
}

static void port_transmit(struct virtio_console *con,
			  struct virtio_console_port *port)
{
	struct virtio_device *dev = &con->vdev;
	unsigned q = VIRTIO_CONSOLE_TXQ(port->id);
	bool pushed = false;

	if (port->tx_pending)
		return; /* resumed when the socket drains */
	for (;;) {
		struct virtq_elem *e = port->id == 0 ? &con->elem
						     : port->tx_elem;
		int r;

		if (virtio_queue_pop(dev, q, e) <= 0)
			break;
		/* §5.3.6.1: transmitq buffers are device-readable; any
		 * writable part is ignored and nothing is written back. */
		if (port->id == 0) {
			for (unsigned i = 0; i < e->nreadable; i++)
				port0_emit(con, e->bufs[i].addr,
					   e->bufs[i].len);
			port->bytes_from_guest += e->readable_len;
		} else if (port->conn_fd < 0) {
			/* No host peer: dropped (see console.h). */
			port->bytes_dropped += e->readable_len;
		} else {
			port->tx_off = 0;
			r = tx_send(port);
			if (r == 0) {
				port->tx_pending = true;
				conn_update(con, port);
				break;
			}
			if (r < 0) {
				port->bytes_dropped +=
					e->readable_len - port->tx_off;
				port_disconnect(con, port);
			}
		}
		if (virtio_queue_push(dev, q, e, 0) < 0)
			break;
		pushed = true;
	}
	if (pushed)
		virtio_queue_notify_driver(dev, q);
}

/* ---- control transmitq: driver -> device (§5.3.6.2) ------------------ */

static struct virtio_console_port *
ctrl_port(struct virtio_console *con, uint32_t id)
{
	/* Guest-supplied id: only ports that exist and were announced. */
	if (id >= con->nr_ports || !con->ports[id].added)
		return NULL;
	return &con->ports[id];
}

static void port_ready(struct virtio_console *con,
		       struct virtio_console_port *port)
{
	if (port->guest_ready)
		return; /* a repeated PORT_READY changes nothing */
	port->guest_ready = true;
	if (port->is_console) {
		ctrl_queue(con, port->id, VIRTIO_CONSOLE_CONSOLE_PORT, 1, NULL,
			   0);
		queue_resize(con);
	}
	if (port->name[0])
		ctrl_queue(con, port->id, VIRTIO_CONSOLE_PORT_NAME, 0,
			   port->name, strlen(port->name));
	if (host_connected(con, port))
		ctrl_queue(con, port->id, VIRTIO_CONSOLE_PORT_OPEN, 1, NULL, 0);
}

/* One driver control message; false when malformed. */
static bool ctrl_handle(struct virtio_console *con, uint32_t id,
			uint16_t event, uint16_t value)
{
	struct virtio_console_port *port;
	unsigned i;

	switch (event) {
	case VIRTIO_CONSOLE_DEVICE_READY:
		if (value > 1)
			return false;
		if (value == 0) {
			if (!con->driver_failure_logged)
				kite_warn("virtio %s: the driver failed to set up "
					  "the console ports", con->vdev.name);
			con->driver_failure_logged = true;
			return true;
		}
		con->device_ready = true;
		/* §5.3.6.2.1: never DEVICE_ADD a port that exists or one at
		 * or above max_nr_ports. */
		for (i = 0; i < con->nr_ports; i++) {
			if (con->ports[i].added)
				continue;
			con->ports[i].added = true;
			ctrl_queue(con, i, VIRTIO_CONSOLE_DEVICE_ADD, 0, NULL, 0);
		}
		return true;
	case VIRTIO_CONSOLE_PORT_READY:
		port = ctrl_port(con, id);
		if (!port || value > 1)
			return false;
		if (value == 1) {
			port_ready(con, port);
		} else {
			/* Logged once: the guest must not flood the log. */
			if (!con->driver_failure_logged)
				kite_warn("virtio %s: the driver failed to set up "
					  "port %u", con->vdev.name, port->id);
			con->driver_failure_logged = true;
			port->guest_ready = port->guest_open = false;
		}
		return true;
	case VIRTIO_CONSOLE_PORT_OPEN:
		port = ctrl_port(con, id);
		if (!port || value > 1)
			return false;
		port->guest_open = value == 1;
		if (port->guest_open)
			deliver_input(con, port);
		return true;
	default:
		/* Unknown, or one only the device sends. */
		return false;
	}
}

static void ctrl_receive(struct virtio_console *con)
{
	struct virtio_device *dev = &con->vdev;
	bool pushed = false;

	for (;;) {
		uint8_t msg[VIRTIO_CONSOLE_CONTROL_SIZE];
		bool whole;

		if (virtio_queue_pop(dev, VIRTIO_CONSOLE_CTRL_TXQ, &con->elem) <= 0)
			break;
		whole = virtq_elem_read(&con->elem, 0, msg, sizeof(msg)) ==
			sizeof(msg);
		/* Return the buffer before acting on the copy: handling
		 * (PORT_OPEN delivering input) reuses con->elem for other
		 * queues' buffers. */
		if (virtio_queue_push(dev, VIRTIO_CONSOLE_CTRL_TXQ, &con->elem,
				      0) < 0)
			break;
		pushed = true;
		if (!whole || !ctrl_handle(con, get_le32(msg),
					   get_le16(msg + 4),
					   get_le16(msg + 6))) {
			if (con->bad_control++ == 0)
				kite_warn("virtio %s: ignoring a malformed "
					  "control message", dev->name);
		}
	}
	if (pushed)
		virtio_queue_notify_driver(dev, VIRTIO_CONSOLE_CTRL_TXQ);
	ctrl_flush(con);
}

/* ---- device ops --------------------------------------------------------- */

static void console_queue_notify(struct virtio_device *dev, unsigned qidx)
{
	struct virtio_console *con = to_console(dev);
	unsigned p;

	if (qidx == VIRTIO_CONSOLE_CTRL_RXQ) {
		ctrl_flush(con);
		return;
	}
	if (qidx == VIRTIO_CONSOLE_CTRL_TXQ) {
		ctrl_receive(con);
		return;
	}
	p = qidx < 2 ? 0 : qidx / 2 - 1;
	if (p >= con->nr_ports || (p > 0 && !multiport(con)))
		return;
	if (qidx == VIRTIO_CONSOLE_RXQ(p)) {
		deliver_input(con, &con->ports[p]);
		/* Room again in the stage: the socket may be read. */
		if (p != 0)
			conn_update(con, &con->ports[p]);
	} else {
		port_transmit(con, &con->ports[p]);
	}
}

/* The device's own epoll set became readable (queue thread). */
static void console_fd_event(struct virtio_device *dev, int fd, void *opaque)
{
	struct virtio_console *con = opaque;
	struct epoll_event evs[16];
	int n, i;

	(void)dev;
	n = epoll_wait(fd, evs, sizeof(evs) / sizeof(evs[0]), 0);
	for (i = 0; i < n; i++) {
		uint32_t kind = evs[i].data.u32 & 0xff;
		unsigned p = evs[i].data.u32 >> 8;
		struct virtio_console_port *port;
		uint64_t val;

		if (p >= con->nr_ports)
			continue;
		port = &con->ports[p];
		switch (kind) {
		case TAG_WAKE:
			if (read(con->wake_fd, &val, sizeof(val)) < 0) {
				/* EAGAIN: drained by an earlier batch */
			}
			deliver_input(con, &con->ports[0]);
			pthread_mutex_lock(&con->cfg_lock);
			val = con->resize_pending;
			pthread_mutex_unlock(&con->cfg_lock);
			if (val && multiport(con) && con->ports[0].is_console &&
			    con->ports[0].guest_ready) {
				queue_resize(con);
				ctrl_flush(con);
			}
			break;
		case TAG_LISTEN:
			port_accept(con, port);
			break;
		case TAG_CONN:
			if (port->conn_fd < 0)
				break; /* stale: closed earlier in this batch */
			if (evs[i].events & EPOLLERR) {
				port_disconnect(con, port);
				break;
			}
			if (evs[i].events & (EPOLLOUT | EPOLLHUP))
				tx_resume(con, port);
			if (port->conn_fd >= 0 &&
			    (port->conn_events & EPOLLIN) &&
			    (evs[i].events & (EPOLLIN | EPOLLHUP)))
				port_read_peer(con, port);
			break;
		}
	}
}

static void console_get_config(struct virtio_device *dev, uint32_t offset,
			       void *buf, uint32_t len)
{
	struct virtio_console *con = to_console(dev);
	uint8_t cfg[VIRTIO_CONSOLE_CONFIG_SIZE] = { 0 };

	pthread_mutex_lock(&con->cfg_lock);
	put_le16(cfg + VIRTIO_CONSOLE_CFG_COLS, con->cols);
	put_le16(cfg + VIRTIO_CONSOLE_CFG_ROWS, con->rows);
	pthread_mutex_unlock(&con->cfg_lock);
	put_le32(cfg + VIRTIO_CONSOLE_CFG_MAX_NR_PORTS, con->nr_ports);
	/* emerg_wr reads as 0. */
	memcpy(buf, cfg + offset, len); /* range checked by the core */
}

static void console_set_config(struct virtio_device *dev, uint32_t offset,
			       const void *buf, uint32_t len)
{
	struct virtio_console *con = to_console(dev);
	const uint8_t *b = buf;

	/* Only emerg_wr is writable.  §5.3.5.1: a write is allowed even on
	 * an unconfigured device (no status or feature check), and its
	 * lower byte goes to the console output. */
	if (offset <= VIRTIO_CONSOLE_CFG_EMERG_WR &&
	    offset + len > VIRTIO_CONSOLE_CFG_EMERG_WR) {
		con->emerg_bytes++;
		port0_emit(con, &b[VIRTIO_CONSOLE_CFG_EMERG_WR - offset], 1);
	}
}

static void console_reset(struct virtio_device *dev)
{
	struct virtio_console *con = to_console(dev);
	unsigned i;

	/* The driver session ends; host-side connections and staged input
	 * survive.  A transmit buffer held for a busy socket belonged to the
	 * old rings: forget it (the rest is not sent). */
	for (i = 0; i < con->nr_ports; i++) {
		struct virtio_console_port *port = &con->ports[i];

		port->added = port->guest_ready = port->guest_open = false;
		port->tx_pending = false;
		conn_update(con, port);
	}
	con->ctrl_head = con->ctrl_len = 0;
	con->device_ready = false;
}

static const struct virtio_device_ops console_ops = {
	.get_config = console_get_config,
	.set_config = console_set_config,
	.queue_notify = console_queue_notify,
	.reset = console_reset,
};

/* ---- host API ----------------------------------------------------------- */

size_t virtio_console_port0_input(struct virtio_console *con,
				  const uint8_t *buf, size_t len)
{
	struct virtio_console_port *port = &con->ports[0];
	size_t done = 0;

	pthread_mutex_lock(&port->in_lock);
	while (done < len && port->in_len < VIRTIO_CONSOLE_INBUF) {
		size_t tail = (port->in_head + port->in_len) %
			      VIRTIO_CONSOLE_INBUF;
		size_t n = VIRTIO_CONSOLE_INBUF - tail;

		if (n > VIRTIO_CONSOLE_INBUF - port->in_len)
			n = VIRTIO_CONSOLE_INBUF - port->in_len;
		if (n > len - done)
			n = len - done;
		memcpy(port->inbuf + tail, buf + done, n);
		port->in_len += n;
		done += n;
	}
	pthread_mutex_unlock(&port->in_lock);
	if (done)
		wake(con);
	return done;
}

void virtio_console_resize(struct virtio_console *con, uint16_t cols,
			   uint16_t rows)
{
	pthread_mutex_lock(&con->cfg_lock);
	if (con->cols == cols && con->rows == rows) {
		pthread_mutex_unlock(&con->cfg_lock);
		return;
	}
	con->cols = cols;
	con->rows = rows;
	con->resize_pending = true;
	pthread_mutex_unlock(&con->cfg_lock);
	if (!con->ports[0].is_console)
		return;
	/* §5.3.6 item 3: without MULTIPORT the driver rereads cols/rows on a
	 * configuration change notification. */
	virtio_config_changed(&con->vdev);
	wake(con);
}

void virtio_console_attach_console(struct virtio_console *con,
				   void (*output)(void *opaque,
						  const uint8_t *buf,
						  size_t len),
				   void *opaque)
{
	pthread_mutex_lock(&con->out_lock);
	con->port0_output = output;
	con->port0_opaque = opaque;
	pthread_mutex_unlock(&con->out_lock);
	con->ports[0].is_console = true;
	con->vdev.device_features |= VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE);
}

/* ---- construction ------------------------------------------------------- */

static bool port_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > VIRTIO_CONSOLE_NAME_MAX)
		return false;
	/* The guest makes /dev/virtio-ports/NAME of it. */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f ||
		    name[i] == '/')
			return false;
	return true;
}

static int open_listener(const char *path, int *fdp)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	bool retried = false;
	int fd, err;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	while (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		struct stat st;
		int probe;

		err = -errno;
		if (err != -EADDRINUSE || retried)
			goto fail;
		/* Replace a stale socket left by an earlier run, never a
		 * live one or another kind of file. */
		if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
			err = -EEXIST;
			goto fail;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			       0);
		if (probe < 0) {
			err = -errno;
			goto fail;
		}
		if (connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0 ||
		    errno != ECONNREFUSED) {
			close(probe);
			goto fail; /* someone listens there: EADDRINUSE */
		}
		close(probe);
		if (unlink(path) < 0) {
			err = -errno;
			goto fail;
		}
		retried = true;
	}
	if (listen(fd, 4) < 0) {
		err = -errno;
		unlink(path);
		goto fail;
	}
	*fdp = fd;
	return 0;
fail:
	close(fd);
	return err;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int virtio_console_init(struct virtio_console *con, const char *name,
			const struct guest_memory *mem,
			const struct virtio_console_options *opts, char *err,
			size_t errlen)
{
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u32 = TAG(0, TAG_WAKE) };
	uint64_t features;
	unsigned i, nr_queues;
	int rc;

	memset(con, 0, sizeof(*con));
	con->epoll_fd = con->wake_fd = -1;
	for (i = 0; i < VIRTIO_CONSOLE_MAX_PORTS; i++) {
		con->ports[i].id = i;
		con->ports[i].listen_fd = con->ports[i].conn_fd = -1;
		pthread_mutex_init(&con->ports[i].in_lock, NULL);
	}
	pthread_mutex_init(&con->out_lock, NULL);
	pthread_mutex_init(&con->cfg_lock, NULL);

	if (opts->nr_sockets > VIRTIO_CONSOLE_MAX_PORTS - 1) {
		set_err(err, errlen, "at most %u socket ports",
			VIRTIO_CONSOLE_MAX_PORTS - 1);
		return -E2BIG;
	}
	for (i = 0; i < opts->nr_sockets; i++) {
		const struct virtio_console_socket_port *s = &opts->sockets[i];

		if (!s->name || !port_name_ok(s->name)) {
			set_err(err, errlen,
				"port '%s': name must be 1-%u printable bytes without '/'",
				s->name ? s->name : "", VIRTIO_CONSOLE_NAME_MAX);
			return -EINVAL;
		}
		if (!s->path || !*s->path ||
		    strlen(s->path) >= sizeof(con->ports[0].path)) {
			set_err(err, errlen, "port '%s': socket path empty or too long",
				s->name);
			return -ENAMETOOLONG;
		}
		for (unsigned j = 0; j < i; j++) {
			if (!strcmp(opts->sockets[j].name, s->name) ||
			    !strcmp(opts->sockets[j].path, s->path)) {
				set_err(err, errlen,
					"port '%s': name or socket used twice",
					s->name);
				return -EINVAL;
			}
		}
	}

	con->nr_ports = 1 + opts->nr_sockets;
	con->multiport_offered = opts->multiport || opts->nr_sockets > 0;
	con->port0_output = opts->port0_output;
	con->port0_opaque = opts->port0_opaque;
	con->cols = opts->cols ? opts->cols : 80;
	con->rows = opts->rows ? opts->rows : 25;
	con->ports[0].is_console = opts->port0_console;

	features = VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE);
	if (opts->port0_console)
		features |= VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE);
	if (con->multiport_offered)
		features |= VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT);
	/* §5.3.2: port 0's pair, then with MULTIPORT the control pair and
	 * one pair per further port. */
	nr_queues = con->multiport_offered ? 2 * (con->nr_ports + 1) : 2;
	rc = virtio_device_init(&con->vdev, name, VIRTIO_ID_CONSOLE,
				&console_ops, mem, nr_queues,
				VIRTIO_CONSOLE_QUEUE_SIZE, features,
				VIRTIO_CONSOLE_CONFIG_SIZE);
	if (rc) {
		set_err(err, errlen, "virtio device: %s", strerror(-rc));
		return rc;
	}
	con->vdev_live = true;

	con->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	con->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (con->epoll_fd < 0 || con->wake_fd < 0 ||
	    epoll_ctl(con->epoll_fd, EPOLL_CTL_ADD, con->wake_fd, &ev) < 0) {
		rc = -errno;
		set_err(err, errlen, "epoll/eventfd: %s", strerror(-rc));
		goto fail;
	}
	/* The core watches a fixed set of fds registered before the thread
	 * starts; connections come and go, so the device keeps its own
	 * epoll set and has the core watch that one fd. */
	rc = virtio_device_watch_fd(&con->vdev, con->epoll_fd,
				    console_fd_event, con);
	if (rc) {
		set_err(err, errlen, "watch fd: %s", strerror(-rc));
		goto fail;
	}
	for (i = 0; i < opts->nr_sockets; i++) {
		struct virtio_console_port *port = &con->ports[i + 1];
		const struct virtio_console_socket_port *s = &opts->sockets[i];

		snprintf(port->name, sizeof(port->name), "%s", s->name);
		port->tx_elem = calloc(1, sizeof(*port->tx_elem));
		if (!port->tx_elem) {
			rc = -ENOMEM;
			set_err(err, errlen, "port '%s': out of memory", s->name);
			goto fail;
		}
		rc = open_listener(s->path, &port->listen_fd);
		if (rc) {
			set_err(err, errlen, "port '%s': socket '%s': %s", s->name,
				s->path, strerror(-rc));
			goto fail;
		}
		snprintf(port->path, sizeof(port->path), "%s", s->path);
		listen_arm(con, port);
		if (!port->listening) {
			rc = -errno;
			set_err(err, errlen, "port '%s': epoll: %s", s->name,
				strerror(-rc));
			goto fail;
		}
	}
	return 0;
fail:
	virtio_console_destroy(con);
	return rc;
}

void virtio_console_destroy(struct virtio_console *con)
{
	unsigned i;

	if (con->vdev_live)
		virtio_device_destroy(&con->vdev);
	con->vdev_live = false;
	for (i = 0; i < VIRTIO_CONSOLE_MAX_PORTS; i++) {
		struct virtio_console_port *port = &con->ports[i];

		if (port->conn_fd >= 0)
			close(port->conn_fd);
		if (port->listen_fd >= 0) {
			close(port->listen_fd);
			if (port->path[0])
				unlink(port->path);
		}
		port->conn_fd = port->listen_fd = -1;
		port->path[0] = '\0';
		free(port->tx_elem);
		port->tx_elem = NULL;
	}
	if (con->wake_fd >= 0)
		close(con->wake_fd);
	if (con->epoll_fd >= 0)
		close(con->epoll_fd);
	con->wake_fd = con->epoll_fd = -1;
}
