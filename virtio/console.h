/* virtio console device (virtio 1.2 §5.3, device type 3).
 *
 * Port 0 is the host's side of the guest console (hvc0): the VM feeds it
 * the bytes typed on stdin with virtio_console_port0_input() and receives
 * what the guest writes through the port0_output callback (which also
 * gets the emergency-write bytes).  Ports 1..N are each a listening UNIX
 * socket: the device accepts one connection per port at a time (further
 * clients wait in the listen backlog until the current one leaves) and
 * relays bytes both ways.
 *
 * Features offered: VIRTIO_CONSOLE_F_EMERG_WRITE always;
 * VIRTIO_CONSOLE_F_SIZE when port 0 is a console (cols/rows valid);
 * VIRTIO_CONSOLE_F_MULTIPORT when there is a socket port or the caller
 * asks for it.  Queues: 2 without MULTIPORT, 2 * (max_nr_ports + 1) with
 * it (§5.3.2).
 *
 * Data policy
 *   guest -> host, socket port without a connected peer: dropped (the
 *     buffers are returned used so the guest never stalls; the guest
 *     learned "host closed" through PORT_OPEN 0 and Linux does not write
 *     then anyway).  With a peer, a buffer the socket cannot take at once
 *     is kept and finished when the socket becomes writable; the port's
 *     transmitq is not read meanwhile (back-pressure to the guest).
 *   host -> guest: each port stages up to VIRTIO_CONSOLE_INBUF bytes.
 *     Bytes are moved into the port's receiveq while the guest has the
 *     port open (with MULTIPORT: after its PORT_OPEN 1; without: always).
 *     A full stage stops reading the socket (back-pressure to the peer);
 *     virtio_console_port0_input() then accepts fewer bytes.
 *
 * Control messages (§5.3.6.2): DEVICE_READY 1 -> DEVICE_ADD for every
 * port not yet added; PORT_READY 1 -> CONSOLE_PORT (port 0 when it is the
 * console) + RESIZE, PORT_NAME (when named), PORT_OPEN 1 (when the host
 * side is connected); host connect/disconnect -> PORT_OPEN 1/0; driver
 * PORT_OPEN records the guest side.  A malformed control message (too
 * short, unknown event, port id out of range or never added, value not
 * 0/1, an event only the device may send) is ignored and counted in
 * bad_control; it does not break the device.
 *
 * RESIZE carries struct virtio_console_resize { le16 cols; le16 rows; }
 * as virtio 1.2 §5.3.6.2 says.  Linux before commit 5326ab737a47 reads the
 * two fields the other way round (rows first); such a guest sees them
 * swapped in the multiport case.  Without MULTIPORT, the size reaches the
 * guest through config space and a configuration change notification.
 *
 * Threading: everything but the host API calls below runs on the device's
 * queue thread (virtio.h).  virtio_console_port0_input() and
 * virtio_console_resize() may be called from any thread.  port0_output is
 * called from the queue thread (transmitq data) and from vCPU threads
 * (emergency write), never concurrently with itself; it must not call
 * back into this device. */
#ifndef KITE_VIRTIO_CONSOLE_H
#define KITE_VIRTIO_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio.h"

/* §5.3.3 feature bits. */
#define VIRTIO_CONSOLE_F_SIZE        0
#define VIRTIO_CONSOLE_F_MULTIPORT   1
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2

/* §5.3.6.2 control events. */
#define VIRTIO_CONSOLE_DEVICE_READY  0
#define VIRTIO_CONSOLE_DEVICE_ADD    1
#define VIRTIO_CONSOLE_DEVICE_REMOVE 2
#define VIRTIO_CONSOLE_PORT_READY    3
#define VIRTIO_CONSOLE_CONSOLE_PORT  4
#define VIRTIO_CONSOLE_RESIZE        5
#define VIRTIO_CONSOLE_PORT_OPEN     6
#define VIRTIO_CONSOLE_PORT_NAME     7

/* §5.3.4 config layout (little-endian): cols, rows, max_nr_ports,
 * emerg_wr. */
#define VIRTIO_CONSOLE_CFG_COLS         0
#define VIRTIO_CONSOLE_CFG_ROWS         2
#define VIRTIO_CONSOLE_CFG_MAX_NR_PORTS 4
#define VIRTIO_CONSOLE_CFG_EMERG_WR     8
#define VIRTIO_CONSOLE_CONFIG_SIZE      12

/* struct virtio_console_control: le32 id, le16 event, le16 value. */
#define VIRTIO_CONSOLE_CONTROL_SIZE 8

/* Port 0 plus up to 15 socket ports: 2 * 17 = 34 queues. */
#define VIRTIO_CONSOLE_MAX_PORTS 16
#define VIRTIO_CONSOLE_NAME_MAX  63     /* bytes of a PORT_NAME */
#define VIRTIO_CONSOLE_INBUF     4096   /* host -> guest staging per port */
#define VIRTIO_CONSOLE_QUEUE_SIZE 256
/* Device -> driver control messages waiting for control receiveq
 * buffers.  PORT_OPEN and RESIZE coalesce, so a port needs at most a
 * handful at once. */
#define VIRTIO_CONSOLE_CTRL_BACKLOG (8 * VIRTIO_CONSOLE_MAX_PORTS)

/* The queue index of port |p|'s receiveq / transmitq (§5.3.2). */
#define VIRTIO_CONSOLE_RXQ(p) ((p) == 0 ? 0u : 2u * (p) + 2u)
#define VIRTIO_CONSOLE_TXQ(p) (VIRTIO_CONSOLE_RXQ(p) + 1u)
#define VIRTIO_CONSOLE_CTRL_RXQ 2u
#define VIRTIO_CONSOLE_CTRL_TXQ 3u

struct virtio_console_socket_port {
	const char *name;   /* PORT_NAME for the guest (/dev/virtio-ports/NAME) */
	const char *path;   /* UNIX socket the device listens on */
};

struct virtio_console_options {
	/* Port 0 is the VM's console: offer F_SIZE and nominate it with
	 * CONSOLE_PORT.  Otherwise port 0 is a plain port. */
	bool port0_console;
	/* Guest output of port 0 and emergency-write bytes; NULL discards. */
	void (*port0_output)(void *opaque, const uint8_t *buf, size_t len);
	void *port0_opaque;
	/* Initial console size (0: 80 x 25). */
	uint16_t cols, rows;
	/* Offer MULTIPORT even without socket ports. */
	bool multiport;
	/* Ports 1..nr_sockets. */
	const struct virtio_console_socket_port *sockets;
	unsigned nr_sockets;
};

struct virtio_console_ctrl_msg {
	uint32_t id;
	uint16_t event, value;
	uint16_t extra_len;                     /* PORT_NAME / RESIZE payload */
	uint8_t extra[VIRTIO_CONSOLE_NAME_MAX];
};

struct virtio_console_port {
	unsigned id;
	char name[VIRTIO_CONSOLE_NAME_MAX + 1];
	bool is_console;

	/* socket backend (ports >= 1) */
	char path[108];
	int listen_fd, conn_fd;
	bool listening;          /* listen_fd in the device's epoll */
	uint32_t conn_events;    /* conn_fd's epoll interest (0: not in it) */

	/* host -> guest staging (ring); port 0's is filled from any thread */
	pthread_mutex_t in_lock;
	uint8_t inbuf[VIRTIO_CONSOLE_INBUF];
	size_t in_head, in_len;

	/* guest -> host: a transmit buffer the socket did not take whole */
	struct virtq_elem *tx_elem;  /* allocated for socket ports */
	bool tx_pending;
	size_t tx_off;

	/* driver session (cleared on reset) */
	bool added;              /* DEVICE_ADD sent */
	bool guest_ready;        /* PORT_READY 1 received */
	bool guest_open;         /* PORT_OPEN 1 received */

	/* statistics */
	uint64_t bytes_to_guest, bytes_from_guest, bytes_dropped;
};

struct virtio_console {
	struct virtio_device vdev;   /* first: the core hands us &vdev */
	struct virtq_elem elem;      /* scratch, queue thread */
	unsigned nr_ports;           /* = max_nr_ports */
	bool multiport_offered;
	struct virtio_console_port ports[VIRTIO_CONSOLE_MAX_PORTS];

	/* port 0 output (queue thread and vCPU threads) */
	pthread_mutex_t out_lock;
	void (*port0_output)(void *opaque, const uint8_t *buf, size_t len);
	void *port0_opaque;

	/* config: cols/rows change from the host at any time */
	pthread_mutex_t cfg_lock;
	uint16_t cols, rows;
	bool resize_pending;         /* RESIZE to send (queue thread) */

	/* the device's own fds, watched through one epoll fd in the core's */
	int epoll_fd;
	int wake_fd;                 /* eventfd: port-0 input / resize */

	/* control receiveq backlog (queue thread) */
	struct virtio_console_ctrl_msg ctrl[VIRTIO_CONSOLE_CTRL_BACKLOG];
	unsigned ctrl_head, ctrl_len;
	bool device_ready;           /* DEVICE_READY 1 seen this session */

	/* statistics */
	uint64_t bad_control;        /* malformed driver control messages */
	uint64_t ctrl_dropped;       /* backlog overflow */
	uint64_t emerg_bytes;
	bool vdev_live;              /* virtio_device_init succeeded */
	bool driver_failure_logged;  /* DEVICE_READY/PORT_READY 0 seen */
};

/* Build the device: validates the options, creates the listening sockets
 * (a stale socket file at a path is replaced; any other file is an
 * error).  On failure returns a negative errno and, when |err| is not
 * NULL, says which port and why.  Then attach a transport and
 * virtio_device_start(&con->vdev). */
int virtio_console_init(struct virtio_console *con, const char *name,
			const struct guest_memory *mem,
			const struct virtio_console_options *opts, char *err,
			size_t errlen);
/* Stops the queue thread, closes and unlinks the sockets. */
void virtio_console_destroy(struct virtio_console *con);

/* Make port 0 the VM's console after construction (what
 * opts->port0_console and port0_output do), for a caller that learns
 * late which device is the console.  Only before the guest first reads
 * the features: it adds F_SIZE to the offered features. */
void virtio_console_attach_console(struct virtio_console *con,
				   void (*output)(void *opaque,
						  const uint8_t *buf,
						  size_t len),
				   void *opaque);

/* Host input for port 0 (stdin).  Returns how many bytes were accepted:
 * fewer than |len| when the staging buffer is full because the guest is
 * not reading (try again later). */
size_t virtio_console_port0_input(struct virtio_console *con,
				  const uint8_t *buf, size_t len);
/* The host terminal changed size: update config cols/rows, send a
 * configuration change notification and, with MULTIPORT, a RESIZE
 * message for port 0 when it is a console. */
void virtio_console_resize(struct virtio_console *con, uint16_t cols,
			   uint16_t rows);

#endif
