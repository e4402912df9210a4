/* virtio console device (virtio 1.2 §5.3), driven by the test driver:
 * port 0 on a host callback, socket ports over real UNIX sockets. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "tests/unit/virtio_test_driver.h"
#include "virtio/console.h"

#define NQ 8            /* queues a test may use: ports 0..2 */
#define BUFSZ 256

static struct vtd drv;
static struct virtio_console con;
static bool con_live;
static struct vtd_vq vqs[NQ];
static uint64_t buf_gpa[NQ][64];   /* per queue: gpa of the buffer by id */
static char sock_dir[64];
static char sock_path[2][96];

/* What port 0 sent to the host. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t out[8192];
static size_t out_len;

#define DEV (&con.vdev)
#define F_V1 VIRTIO_BIT(VIRTIO_F_VERSION_1)
#define F_SIZE VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE)
#define F_MULTI VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT)
#define F_EMERG VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE)

static void capture(void *opaque, const uint8_t *buf, size_t len)
{
	(void)opaque;
	pthread_mutex_lock(&out_lock);
	if (len > sizeof(out) - out_len)
		len = sizeof(out) - out_len;
	memcpy(out + out_len, buf, len);
	out_len += len;
	pthread_mutex_unlock(&out_lock);
}

static size_t captured(char *dst, size_t max)
{
	size_t n;

	pthread_mutex_lock(&out_lock);
	n = out_len < max ? out_len : max;
	memcpy(dst, out, n);
	pthread_mutex_unlock(&out_lock);
	return n;
}

static void setup(void)
{
	ck_assert_int_eq(vtd_init(&drv), 0);
	memset(vqs, 0, sizeof(vqs));
	out_len = 0;
	con_live = false;
	snprintf(sock_dir, sizeof(sock_dir), "/tmp/kite-vcon-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(sock_dir));
	for (int i = 0; i < 2; i++)
		snprintf(sock_path[i], sizeof(sock_path[i]), "%s/p%d", sock_dir,
			 i + 1);
}

static void teardown(void)
{
	if (con_live)
		virtio_console_destroy(&con);
	for (int i = 0; i < NQ; i++)
		vtd_vq_destroy(&vqs[i]);
	vtd_destroy(&drv);
	for (int i = 0; i < 2; i++)
		unlink(sock_path[i]);
	rmdir(sock_dir);
}

/* A console with port 0 on the capture callback and |nsock| socket
 * ports named "alpha", "beta". */
static void start_console(bool console, bool multiport, unsigned nsock)
{
	static const char *names[2] = { "alpha", "beta" };
	struct virtio_console_socket_port sp[2];
	struct virtio_console_options o = {
		.port0_console = console, .port0_output = capture,
		.multiport = multiport, .sockets = sp, .nr_sockets = nsock,
	};
	char err[256] = "";

	for (unsigned i = 0; i < 2; i++)
		sp[i] = (struct virtio_console_socket_port){ names[i],
							     sock_path[i] };
	ck_assert_msg(virtio_console_init(&con, "con0", &drv.mem, &o, err,
					  sizeof(err)) == 0, "%s", err);
	con_live = true;
	vtd_attach(&drv, DEV);
	ck_assert_int_eq(virtio_device_start(DEV), 0);
}

/* Negotiate |features| and set up every queue the device has (up to NQ). */
static void bring_up(uint64_t features, bool packed)
{
	unsigned n = DEV->nr_queues < NQ ? DEV->nr_queues : NQ;

	if (!(features & F_MULTI) && n > 2)
		n = 2; /* without MULTIPORT the driver only has port 0 */
	if (packed)
		features |= VIRTIO_BIT(VIRTIO_F_RING_PACKED);
	for (unsigned q = 0; q < n; q++) {
		vtd_vq_destroy(&vqs[q]); /* a renegotiation gets new rings */
		ck_assert_int_eq(vtd_vq_init(&vqs[q], &drv, 32, packed, false), 0);
	}
	ck_assert_int_eq(vtd_negotiate(&drv, F_V1 | features), 0);
	for (unsigned q = 0; q < n; q++)
		ck_assert_int_eq(vtd_setup_queue(&drv, q, &vqs[q]), 0);
	ck_assert_int_eq(vtd_driver_ok(&drv), 0);
}

/* Give queue |q| one device-writable buffer of |len| bytes. */
static void add_rx(unsigned q, uint32_t len)
{
	uint64_t gpa = vtd_alloc(&drv, len, 8);
	struct vtd_sg sg = { gpa, len, true };
	int id = vtd_vq_add(&vqs[q], &sg, 1, false);

	ck_assert_int_ge(id, 0);
	ck_assert_int_lt(id, 64);
	buf_gpa[q][id] = gpa;
}

/* The driver writes |len| bytes to queue |q| (one readable buffer). */
static void send_tx(unsigned q, const void *data, uint32_t len)
{
	uint64_t gpa = vtd_alloc(&drv, len ? len : 1, 8);
	struct vtd_sg sg = { gpa, len, false };

	memcpy(vtd_ptr(&drv, gpa, len), data, len);
	ck_assert_int_ge(vtd_vq_add(&vqs[q], &sg, 1, false), 0);
	vtd_kick(&drv, q);
}

/* Collect one used receive buffer: its bytes (NUL-terminated) and length,
 * or -1 when none. */
static int get_rx(unsigned q, void *dst, size_t max)
{
	uint32_t id, len;

	if (vtd_vq_get_used(&vqs[q], &id, &len) != 1)
		return -1;
	ck_assert_uint_lt(id, 64);
	if (len > max)
		len = (uint32_t)max;
	memcpy(dst, vtd_ptr(&drv, buf_gpa[q][id], len), len);
	return (int)len;
}

static void send_ctrl(uint32_t id, uint16_t event, uint16_t value)
{
	uint8_t m[8];

	memcpy(m, &id, 4);
	memcpy(m + 4, &event, 2);
	memcpy(m + 6, &value, 2);
	send_tx(VIRTIO_CONSOLE_CTRL_TXQ, m, sizeof(m));
}

struct ctrl {
	uint32_t id;
	uint16_t event, value;
	uint8_t extra[64];
	int extra_len;
};

/* Give the control receiveq a few buffers. */
static void ctrl_buffers(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		add_rx(VIRTIO_CONSOLE_CTRL_RXQ, 128);
	vtd_kick(&drv, VIRTIO_CONSOLE_CTRL_RXQ);
}

/* Next device -> driver control message; false when none. */
static bool recv_ctrl(struct ctrl *c)
{
	uint8_t m[128];
	int len = get_rx(VIRTIO_CONSOLE_CTRL_RXQ, m, sizeof(m));

	if (len < 0)
		return false;
	ck_assert_int_ge(len, 8);
	memcpy(&c->id, m, 4);
	memcpy(&c->event, m + 4, 2);
	memcpy(&c->value, m + 6, 2);
	c->extra_len = len - 8;
	memcpy(c->extra, m + 8, (size_t)c->extra_len);
	c->extra[c->extra_len < 63 ? c->extra_len : 63] = 0;
	return true;
}

/* Drain the control receiveq into |cs|; returns the count. */
static int drain_ctrl(struct ctrl *cs, int max)
{
	int n = 0;

	while (n < max && recv_ctrl(&cs[n]))
		n++;
	return n;
}

static int find_ctrl(const struct ctrl *cs, int n, uint32_t id, uint16_t event)
{
	for (int i = 0; i < n; i++)
		if (cs[i].id == id && cs[i].event == event)
			return i;
	return -1;
}

/* Wait (bounded, no time assertion) until |cond| holds, letting the queue
 * thread handle socket events. */
#define WAIT_FOR(cond)                                                   \
	do {                                                             \
		bool ok_ = false;                                        \
		for (int w_ = 0; w_ < 10000; w_++) {                     \
			/* under the device loop.s lock: |cond| may read device state */ \
			pthread_mutex_lock(&DEV->loop.lock);             \
			ok_ = (cond);                                    \
			pthread_mutex_unlock(&DEV->loop.lock);           \
			if (ok_)                                         \
				break;                                   \
			virtio_device_sync(DEV);                         \
			usleep(1000);                                    \
		}                                                        \
		ck_assert_msg(ok_, "never became true: %s", #cond);      \
	} while (0)

static int connect_to(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static uint32_t cfg32(uint32_t off)
{
	uint32_t v = 0;

	ck_assert_int_eq(virtio_config_read(DEV, off, &v, 4), 0);
	return v;
}

static uint16_t cfg16(uint32_t off)
{
	uint16_t v = 0;

	ck_assert_int_eq(virtio_config_read(DEV, off, &v, 2), 0);
	return v;
}

/* Multiport bring-up: DEVICE_READY, PORT_READY for every port; returns
 * the control messages the device sent. */
static int multiport_ready(struct ctrl *cs, int max, bool port_open0)
{
	int n, i, total = 0;

	ctrl_buffers(32);
	for (i = 0; i < (int)con.nr_ports; i++)
		add_rx(VIRTIO_CONSOLE_RXQ(i), BUFSZ);
	send_ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	n = drain_ctrl(cs, max);
	total += n;
	for (i = 0; i < (int)con.nr_ports; i++)
		send_ctrl((uint32_t)i, VIRTIO_CONSOLE_PORT_READY, 1);
	total += drain_ctrl(cs + total, max - total);
	if (port_open0)
		send_ctrl(0, VIRTIO_CONSOLE_PORT_OPEN, 1);
	return total;
}

/* ---- identity, config (§5.3.1-§5.3.4) ---- */

START_TEST(test_5_3_1_device_id_3_and_config_layout)
{
	start_console(true, false, 0);
	ck_assert_uint_eq(DEV->device_id, 3);
	ck_assert_uint_eq(DEV->config_size, 12);
	ck_assert(DEV->device_features & F_EMERG);
	ck_assert(DEV->device_features & F_SIZE);
	ck_assert(!(DEV->device_features & F_MULTI));
	/* §5.3.4: le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr */
	ck_assert_uint_eq(cfg16(0), 80);
	ck_assert_uint_eq(cfg16(2), 25);
	ck_assert_uint_eq(cfg32(4), 1);
	ck_assert_uint_eq(cfg32(8), 0);
}
END_TEST

START_TEST(test_5_3_2_port0_queues_always_exist_others_only_with_multiport)
{
	start_console(true, false, 0);
	ck_assert_uint_eq(DEV->nr_queues, 2);
	virtio_console_destroy(&con);
	con_live = false;
	start_console(true, false, 2);
	ck_assert(DEV->device_features & F_MULTI);
	/* receiveq/transmitq(port0), control pair, two more port pairs */
	ck_assert_uint_eq(DEV->nr_queues, 8);
	ck_assert_uint_eq(cfg32(4), 3);
}
END_TEST

START_TEST(test_5_3_4_config_fields_are_read_only_except_emerg_wr)
{
	uint32_t v = 0xffffffff;

	start_console(true, true, 0);
	virtio_config_write(DEV, 0, &v, 4);
	virtio_config_write(DEV, 4, &v, 4);
	ck_assert_uint_eq(cfg16(0), 80);
	ck_assert_uint_eq(cfg16(2), 25);
	ck_assert_uint_eq(cfg32(4), 1);
	ck_assert_uint_eq(out_len, 0);
}
END_TEST

/* ---- emergency write (§5.3.5.1) ---- */

START_TEST(test_5_3_5_1_device_must_allow_emerg_wr_on_unconfigured_device)
{
	uint32_t v = 'K';
	char got[4];

	start_console(true, false, 0);
	ck_assert_uint_eq(virtio_get_status(DEV), 0);
	ck_assert_int_eq(virtio_config_write(DEV, 8, &v, 4), 0);
	/* ... and after the driver broke the device. */
	virtio_set_status(DEV, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_device_needs_reset(DEV, "test");
	v = 'T';
	ck_assert_int_eq(virtio_config_write(DEV, 8, &v, 4), 0);
	ck_assert_uint_eq(captured(got, sizeof(got)), 2);
	ck_assert_mem_eq(got, "KT", 2);
	ck_assert_uint_eq(con.emerg_bytes, 2);
}
END_TEST

START_TEST(test_5_3_5_1_device_should_transmit_lower_byte_of_emerg_wr)
{
	uint32_t v = 0x12345641; /* lower byte 'A' */
	uint8_t b = 'z';
	char got[4];

	start_console(true, false, 0);
	virtio_config_write(DEV, 8, &v, 4);
	virtio_config_write(DEV, 8, &b, 1);
	/* Writes not covering byte 8 are not emergency writes. */
	virtio_config_write(DEV, 9, &b, 1);
	ck_assert_uint_eq(captured(got, sizeof(got)), 2);
	ck_assert_mem_eq(got, "Az", 2);
}
END_TEST

/* ---- port 0 data (§5.3.6) ---- */

static void port0_both_ways(bool packed)
{
	char got[64];
	int len;

	start_console(true, false, 0);
	bring_up(F_SIZE | F_EMERG, packed);
	send_tx(1, "hello", 5);
	ck_assert_uint_eq(captured(got, sizeof(got)), 5);
	ck_assert_mem_eq(got, "hello", 5);
	ck_assert_uint_eq(vtd_queue_irqs(&drv, 1), 1);

	/* Input staged before a receive buffer exists. */
	ck_assert_uint_eq(virtio_console_port0_input(&con, (const uint8_t *)"ls\r", 3), 3);
	virtio_device_sync(DEV);
	ck_assert_int_eq(get_rx(0, got, sizeof(got)), -1);
	add_rx(0, BUFSZ);
	vtd_kick(&drv, 0);
	len = get_rx(0, got, sizeof(got));
	ck_assert_int_eq(len, 3);
	ck_assert_mem_eq(got, "ls\r", 3);
	/* Input while a buffer waits. */
	add_rx(0, BUFSZ);
	vtd_kick(&drv, 0);
	virtio_console_port0_input(&con, (const uint8_t *)"x", 1);
	WAIT_FOR(vtd_queue_irqs(&drv, 0) == 2);
	ck_assert_int_eq(get_rx(0, got, sizeof(got)), 1);
	ck_assert_int_eq(got[0], 'x');
}

START_TEST(test_5_3_6_port0_data_both_ways_split)
{
	port0_both_ways(false);
}
END_TEST

START_TEST(test_5_3_6_port0_data_both_ways_packed)
{
	port0_both_ways(true);
}
END_TEST

START_TEST(test_5_3_6_port0_input_staged_before_driver_ok_and_bounded)
{
	static uint8_t big[VIRTIO_CONSOLE_INBUF + 100];
	char got[BUFSZ];
	int total = 0, len;

	memset(big, 'q', sizeof(big));
	start_console(true, false, 0);
	/* Back-pressure: the stage takes what fits. */
	ck_assert_uint_eq(virtio_console_port0_input(&con, big, sizeof(big)),
			  VIRTIO_CONSOLE_INBUF);
	ck_assert_uint_eq(virtio_console_port0_input(&con, big, 1), 0);
	bring_up(0, false);
	for (int i = 0; i < 20; i++)
		add_rx(0, BUFSZ);
	vtd_kick(&drv, 0);
	while ((len = get_rx(0, got, sizeof(got))) > 0)
		total += len;
	ck_assert_int_eq(total, VIRTIO_CONSOLE_INBUF); /* 16 of the 20 buffers */
	ck_assert_uint_eq(virtio_console_port0_input(&con, big, 10), 10);
}
END_TEST

START_TEST(test_5_3_6_resize_updates_config_and_notifies)
{
	uint32_t gen;

	start_console(true, false, 0);
	bring_up(F_SIZE, false);
	gen = virtio_config_generation(DEV);
	virtio_console_resize(&con, 132, 43);
	ck_assert_uint_eq(cfg16(0), 132);
	ck_assert_uint_eq(cfg16(2), 43);
	ck_assert_uint_ne(virtio_config_generation(DEV), gen);
	ck_assert_uint_eq(vtd_config_irqs(&drv), 1);
}
END_TEST

START_TEST(test_5_3_6_1_readable_buffer_in_receiveq_is_not_written)
{
	uint64_t gpa = vtd_alloc(&drv, 16, 8);
	struct vtd_sg sg = { gpa, 16, false };
	uint32_t id, len;

	start_console(true, false, 0);
	bring_up(0, false);
	memset(vtd_ptr(&drv, gpa, 16), 0x5a, 16);
	virtio_console_port0_input(&con, (const uint8_t *)"abc", 3);
	ck_assert_int_ge(vtd_vq_add(&vqs[0], &sg, 1, false), 0);
	vtd_kick(&drv, 0);
	ck_assert_int_eq(vtd_vq_get_used(&vqs[0], &id, &len), 1);
	ck_assert_uint_eq(len, 0);
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(((uint8_t *)vtd_ptr(&drv, gpa, 16))[i], 0x5a);
	ck_assert(!(virtio_get_status(DEV) & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
	/* The input is still there for a proper buffer. */
	add_rx(0, BUFSZ);
	vtd_kick(&drv, 0);
	{
		char got[8];

		ck_assert_int_eq(get_rx(0, got, sizeof(got)), 3);
	}
}
END_TEST

START_TEST(test_5_3_6_1_writable_buffer_in_transmitq_is_not_written)
{
	uint64_t gpa = vtd_alloc(&drv, 16, 8);
	struct vtd_sg sg = { gpa, 16, true };
	uint32_t id, len;

	start_console(true, false, 0);
	bring_up(0, false);
	memset(vtd_ptr(&drv, gpa, 16), 0x5a, 16);
	ck_assert_int_ge(vtd_vq_add(&vqs[1], &sg, 1, false), 0);
	vtd_kick(&drv, 1);
	ck_assert_int_eq(vtd_vq_get_used(&vqs[1], &id, &len), 1);
	ck_assert_uint_eq(len, 0);
	ck_assert_uint_eq(out_len, 0);
	ck_assert_uint_eq(((uint8_t *)vtd_ptr(&drv, gpa, 16))[0], 0x5a);
}
END_TEST

/* ---- multiport (§5.3.6.2) ---- */

START_TEST(test_5_3_6_2_device_ready_adds_every_port)
{
	struct ctrl cs[16];
	int n;

	start_console(true, false, 2);
	bring_up(F_MULTI | F_SIZE, false);
	ctrl_buffers(8);
	/* Nothing before the driver says it is ready. */
	ck_assert_int_eq(drain_ctrl(cs, 16), 0);
	send_ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	n = drain_ctrl(cs, 16);
	ck_assert_int_eq(n, 3);
	for (uint32_t p = 0; p < 3; p++)
		ck_assert_int_ge(find_ctrl(cs, n, p, VIRTIO_CONSOLE_DEVICE_ADD), 0);
}
END_TEST

START_TEST(test_5_3_6_2_1_device_must_not_add_existing_port)
{
	struct ctrl cs[16];

	start_console(true, false, 1);
	bring_up(F_MULTI, false);
	ctrl_buffers(8);
	send_ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	ck_assert_int_eq(drain_ctrl(cs, 16), 2);
	send_ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	ck_assert_int_eq(drain_ctrl(cs, 16), 0);
	/* A reset starts a new driver session: the ports are new again. */
	virtio_reset(DEV);
	bring_up(F_MULTI, false);
	ctrl_buffers(8);
	send_ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	ck_assert_int_eq(drain_ctrl(cs, 16), 2);
}
END_TEST

START_TEST(test_5_3_6_2_1_device_must_not_add_port_at_or_above_max_nr_ports)
{
	struct ctrl cs[32];
	uint32_t max;
	int n;

	start_console(true, false, 2);
	bring_up(F_MULTI | F_SIZE, false);
	max = cfg32(VIRTIO_CONSOLE_CFG_MAX_NR_PORTS);
	n = multiport_ready(cs, 32, true);
	ck_assert_int_gt(n, 0);
	for (int i = 0; i < n; i++)
		if (cs[i].event == VIRTIO_CONSOLE_DEVICE_ADD)
			ck_assert_uint_lt(cs[i].id, max);
}
END_TEST

START_TEST(test_5_3_6_2_1_device_must_not_remove_port_not_added)
{
	struct ctrl cs[32];
	int n, fd;

	/* Kite never hot-unplugs: no DEVICE_REMOVE in a whole session,
	 * peers coming and going included. */
	start_console(true, false, 1);
	bring_up(F_MULTI | F_SIZE, false);
	n = multiport_ready(cs, 32, true);
	fd = connect_to(sock_path[0]);
	WAIT_FOR(con.ports[1].conn_fd >= 0);
	close(fd);
	WAIT_FOR(con.ports[1].conn_fd < 0);
	n += drain_ctrl(cs + n, 32 - n);
	ck_assert_int_eq(find_ctrl(cs, n, 0, VIRTIO_CONSOLE_DEVICE_REMOVE), -1);
	ck_assert_int_eq(find_ctrl(cs, n, 1, VIRTIO_CONSOLE_DEVICE_REMOVE), -1);
}
END_TEST

START_TEST(test_5_3_6_2_port_ready_announces_console_name_and_open)
{
	struct ctrl cs[32];
	int n, i;

	start_console(true, false, 1);
	bring_up(F_MULTI | F_SIZE, false);
	n = multiport_ready(cs, 32, false);
	/* Port 0: the console, its size, open (stdio is always there). */
	i = find_ctrl(cs, n, 0, VIRTIO_CONSOLE_CONSOLE_PORT);
	ck_assert_int_ge(i, 0);
	ck_assert_uint_eq(cs[i].value, 1);
	i = find_ctrl(cs, n, 0, VIRTIO_CONSOLE_RESIZE);
	ck_assert_int_ge(i, 0);
	ck_assert_int_eq(cs[i].extra_len, 4);
	ck_assert_uint_eq(cs[i].extra[0] | cs[i].extra[1] << 8, 80);
	ck_assert_uint_eq(cs[i].extra[2] | cs[i].extra[3] << 8, 25);
	i = find_ctrl(cs, n, 0, VIRTIO_CONSOLE_PORT_OPEN);
	ck_assert_int_ge(i, 0);
	ck_assert_uint_eq(cs[i].value, 1);
	/* Port 1: named, not a console, not open while no peer. */
	i = find_ctrl(cs, n, 1, VIRTIO_CONSOLE_PORT_NAME);
	ck_assert_int_ge(i, 0);
	ck_assert_int_eq(cs[i].extra_len, 5);
	ck_assert_mem_eq(cs[i].extra, "alpha", 5);
	ck_assert_int_eq(find_ctrl(cs, n, 1, VIRTIO_CONSOLE_CONSOLE_PORT), -1);
	ck_assert_int_eq(find_ctrl(cs, n, 1, VIRTIO_CONSOLE_PORT_OPEN), -1);
}
END_TEST

START_TEST(test_5_3_6_2_socket_port_data_both_ways)
{
	struct ctrl cs[32], c;
	char got[BUFSZ];
	int fd, n;
	ssize_t r;

	start_console(true, false, 1);
	bring_up(F_MULTI | F_SIZE, false);
	multiport_ready(cs, 32, true);
	fd = connect_to(sock_path[0]);
	/* The host side opened: PORT_OPEN(1, 1). */
	WAIT_FOR(recv_ctrl(&c));
	ck_assert_uint_eq(c.id, 1);
	ck_assert_uint_eq(c.event, VIRTIO_CONSOLE_PORT_OPEN);
	ck_assert_uint_eq(c.value, 1);
	send_ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1);

	/* guest -> host */
	send_tx(VIRTIO_CONSOLE_TXQ(1), "ping", 4);
	r = recv(fd, got, sizeof(got), 0);
	ck_assert_int_eq(r, 4);
	ck_assert_mem_eq(got, "ping", 4);

	/* host -> guest */
	ck_assert_int_eq(write(fd, "pong!", 5), 5);
	WAIT_FOR((n = get_rx(VIRTIO_CONSOLE_RXQ(1), got, sizeof(got))) > 0);
	ck_assert_int_eq(n, 5);
	ck_assert_mem_eq(got, "pong!", 5);
	ck_assert_uint_eq(con.ports[1].bytes_to_guest, 5);
	ck_assert_uint_eq(con.ports[1].bytes_from_guest, 4);

	/* Peer leaves: PORT_OPEN(1, 0). */
	close(fd);
	WAIT_FOR(recv_ctrl(&c));
	ck_assert_uint_eq(c.id, 1);
	ck_assert_uint_eq(c.event, VIRTIO_CONSOLE_PORT_OPEN);
	ck_assert_uint_eq(c.value, 0);
	/* A new peer is accepted. */
	fd = connect_to(sock_path[0]);
	WAIT_FOR(recv_ctrl(&c));
	ck_assert_uint_eq(c.value, 1);
	close(fd);
}
END_TEST

START_TEST(test_5_3_6_2_large_transfer_to_slow_peer_keeps_order)
{
	enum { TOTAL = 600 * 1024, CHUNK = 4096 };
	static uint8_t chunk[CHUNK], rbuf[65536];
	struct ctrl cs[32];
	size_t got = 0;
	int fd, sent = 0, bad = 0;

	start_console(true, false, 1);
	bring_up(F_MULTI | F_SIZE, false);
	multiport_ready(cs, 32, true);
	fd = connect_to(sock_path[0]);
	WAIT_FOR(con.ports[1].conn_fd >= 0);
	send_ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	/* More than a socket buffer holds: the device must hold a buffer
	 * and resume on EPOLLOUT without losing or reordering bytes. */
	while (sent < TOTAL || got < TOTAL) {
		uint32_t id, len;

		while (vtd_vq_get_used(&vqs[VIRTIO_CONSOLE_TXQ(1)], &id, &len) == 1)
			;
		if (sent < TOTAL && vqs[VIRTIO_CONSOLE_TXQ(1)].num_free > 0) {
			for (int i = 0; i < CHUNK; i++)
				chunk[i] = (uint8_t)((sent + i) % 251);
			send_tx(VIRTIO_CONSOLE_TXQ(1), chunk, CHUNK);
			sent += CHUNK;
			continue;
		}
		{
			ssize_t r = recv(fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);

			if (r > 0) {
				for (ssize_t i = 0; i < r; i++)
					bad += rbuf[i] != (uint8_t)((got + i) % 251);
				got += (size_t)r;
			} else {
				virtio_device_sync(DEV);
				usleep(200);
			}
		}
	}
	ck_assert_uint_eq(got, TOTAL);
	ck_assert_int_eq(bad, 0);
	ck_assert_uint_eq(con.ports[1].bytes_dropped, 0);
	close(fd);
}
END_TEST

START_TEST(test_5_3_6_2_guest_data_without_host_peer_is_dropped)
{
	struct ctrl cs[32];
	uint32_t id, len;

	start_console(true, false, 1);
	bring_up(F_MULTI | F_SIZE, false);
	multiport_ready(cs, 32, true);
	send_ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	send_tx(VIRTIO_CONSOLE_TXQ(1), "lost", 4);
	/* The buffer comes back (the guest never stalls)... */
	ck_assert_int_eq(vtd_vq_get_used(&vqs[VIRTIO_CONSOLE_TXQ(1)], &id, &len), 1);
	ck_assert_uint_eq(len, 0);
	ck_assert_uint_eq(con.ports[1].bytes_dropped, 4);
	/* ... and a later peer does not get stale bytes. */
	{
		int fd = connect_to(sock_path[0]);
		char b[8];

		WAIT_FOR(con.ports[1].conn_fd >= 0);
		send_tx(VIRTIO_CONSOLE_TXQ(1), "new", 3);
		ck_assert_int_eq(recv(fd, b, sizeof(b), 0), 3);
		ck_assert_mem_eq(b, "new", 3);
		close(fd);
	}
}
END_TEST

START_TEST(test_5_3_6_2_host_data_waits_until_guest_opens_port)
{
	struct ctrl cs[32];
	char got[BUFSZ];
	int fd;

	start_console(true, false, 1);
	bring_up(F_MULTI | F_SIZE, false);
	multiport_ready(cs, 32, true);
	fd = connect_to(sock_path[0]);
	ck_assert_int_eq(write(fd, "early", 5), 5);
	WAIT_FOR(con.ports[1].in_len == 5);
	ck_assert_int_eq(get_rx(VIRTIO_CONSOLE_RXQ(1), got, sizeof(got)), -1);
	send_ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	ck_assert_int_eq(get_rx(VIRTIO_CONSOLE_RXQ(1), got, sizeof(got)), 5);
	ck_assert_mem_eq(got, "early", 5);
	close(fd);
}
END_TEST

START_TEST(test_5_3_6_2_port0_data_with_multiport)
{
	struct ctrl cs[32];
	char got[BUFSZ];

	start_console(true, false, 1);
	bring_up(F_MULTI | F_SIZE, false);
	multiport_ready(cs, 32, true);
	send_tx(VIRTIO_CONSOLE_TXQ(0), "boot", 4);
	ck_assert_uint_eq(captured(got, sizeof(got)), 4);
	virtio_console_port0_input(&con, (const uint8_t *)"y\n", 2);
	WAIT_FOR(vtd_queue_irqs(&drv, 0) >= 1);
	ck_assert_int_eq(get_rx(0, got, sizeof(got)), 2);
	ck_assert_mem_eq(got, "y\n", 2);
}
END_TEST

START_TEST(test_5_3_6_2_resize_message_for_console_port)
{
	struct ctrl cs[32], c;

	start_console(true, true, 0);
	ck_assert(DEV->device_features & F_MULTI); /* asked for */
	bring_up(F_MULTI | F_SIZE, false);
	multiport_ready(cs, 32, true);
	virtio_console_resize(&con, 100, 30);
	WAIT_FOR(recv_ctrl(&c));
	ck_assert_uint_eq(c.id, 0);
	ck_assert_uint_eq(c.event, VIRTIO_CONSOLE_RESIZE);
	ck_assert_int_eq(c.extra_len, 4);
	/* §5.3.6.2 struct virtio_console_resize: cols, then rows */
	ck_assert_uint_eq(c.extra[0] | c.extra[1] << 8, 100);
	ck_assert_uint_eq(c.extra[2] | c.extra[3] << 8, 30);
}
END_TEST

START_TEST(test_5_3_6_2_malformed_control_messages_are_ignored)
{
	struct ctrl cs[32];
	uint64_t bad;
	uint8_t shortmsg[4] = { 0 };

	start_console(true, false, 1);
	bring_up(F_MULTI | F_SIZE, false);
	ctrl_buffers(16);
	/* Before DEVICE_READY no port exists: PORT_READY names nothing. */
	send_ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1);
	ck_assert_uint_eq(con.bad_control, 1);
	send_ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	ck_assert_int_eq(drain_ctrl(cs, 32), 2);
	bad = con.bad_control;
	send_tx(VIRTIO_CONSOLE_CTRL_TXQ, shortmsg, sizeof(shortmsg)); /* short */
	send_ctrl(99, VIRTIO_CONSOLE_PORT_READY, 1);        /* id too big */
	send_ctrl(0xffffffffu, VIRTIO_CONSOLE_PORT_OPEN, 1); /* id too big */
	send_ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 7);          /* value */
	send_ctrl(1, VIRTIO_CONSOLE_PORT_READY, 2);         /* value */
	send_ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 9);       /* value */
	send_ctrl(1, 42, 1);                                /* unknown */
	send_ctrl(1, VIRTIO_CONSOLE_DEVICE_ADD, 0);         /* device-only */
	send_ctrl(1, VIRTIO_CONSOLE_RESIZE, 0);             /* device-only */
	send_ctrl(1, VIRTIO_CONSOLE_PORT_NAME, 0);          /* device-only */
	ck_assert_uint_eq(con.bad_control, bad + 10);
	ck_assert_int_eq(drain_ctrl(cs, 32), 0);
	ck_assert(!con.ports[1].guest_open && !con.ports[1].guest_ready);
	ck_assert(!(virtio_get_status(DEV) & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
	/* Every control buffer came back. */
	{
		uint32_t id, len;
		int used = 0;

		while (vtd_vq_get_used(&vqs[VIRTIO_CONSOLE_CTRL_TXQ], &id, &len) == 1)
			used++;
		ck_assert_int_eq(used, 12);
	}
	/* The device still works. */
	send_ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1);
	ck_assert_int_ge(find_ctrl(cs, drain_ctrl(cs, 32), 1,
				   VIRTIO_CONSOLE_PORT_NAME), 0);
}
END_TEST

START_TEST(test_5_3_6_2_control_buffer_too_small_is_returned_empty)
{
	struct ctrl c;
	uint32_t id, len;

	start_console(true, false, 1);
	bring_up(F_MULTI, false);
	add_rx(VIRTIO_CONSOLE_CTRL_RXQ, 4);
	vtd_kick(&drv, VIRTIO_CONSOLE_CTRL_RXQ);
	send_ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	ck_assert_int_eq(vtd_vq_get_used(&vqs[VIRTIO_CONSOLE_CTRL_RXQ], &id, &len), 1);
	ck_assert_uint_eq(len, 0);
	/* The messages wait for proper buffers. */
	ctrl_buffers(4);
	ck_assert(recv_ctrl(&c));
	ck_assert_uint_eq(c.event, VIRTIO_CONSOLE_DEVICE_ADD);
	ck_assert_uint_eq(c.id, 0);
	ck_assert(recv_ctrl(&c));
	ck_assert_uint_eq(c.id, 1);
}
END_TEST

START_TEST(test_5_3_6_2_without_multiport_only_port0_is_used)
{
	start_console(true, false, 1);
	/* Driver does not take MULTIPORT: control queues stay silent. */
	bring_up(F_SIZE, false);
	ck_assert_int_eq(vtd_vq_init(&vqs[2], &drv, 32, false, false), 0);
	ck_assert_int_eq(vtd_setup_queue(&drv, 2, &vqs[2]), 0);
	ctrl_buffers(2);
	virtio_console_port0_input(&con, (const uint8_t *)"z", 1);
	add_rx(0, BUFSZ);
	vtd_kick(&drv, 0);
	{
		char got[4];
		struct ctrl c;

		ck_assert_int_eq(get_rx(0, got, sizeof(got)), 1);
		ck_assert(!recv_ctrl(&c));
	}
}
END_TEST

START_TEST(test_console_attach_console_late)
{
	struct virtio_console_socket_port sp = { "alpha", sock_path[0] };
	struct virtio_console_options o = { .sockets = &sp, .nr_sockets = 1 };
	struct ctrl cs[32];
	char got[8];
	int n;

	ck_assert_int_eq(virtio_console_init(&con, "con0", &drv.mem, &o, NULL,
					     0), 0);
	con_live = true;
	ck_assert(!(DEV->device_features & F_SIZE));
	virtio_console_attach_console(&con, capture, NULL);
	ck_assert(DEV->device_features & F_SIZE);
	vtd_attach(&drv, DEV);
	ck_assert_int_eq(virtio_device_start(DEV), 0);
	bring_up(F_MULTI | F_SIZE, false);
	n = multiport_ready(cs, 32, true);
	ck_assert_int_ge(find_ctrl(cs, n, 0, VIRTIO_CONSOLE_CONSOLE_PORT), 0);
	send_tx(VIRTIO_CONSOLE_TXQ(0), "hi", 2);
	ck_assert_uint_eq(captured(got, sizeof(got)), 2);
}
END_TEST

/* ---- construction ---- */

START_TEST(test_console_init_validates_ports_and_replaces_stale_socket)
{
	struct virtio_console_socket_port sp = { "ok", sock_path[0] };
	struct virtio_console_options o = { .sockets = &sp, .nr_sockets = 1 };
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char err[256];
	int fd;

	/* A bad name. */
	sp.name = "a/b";
	ck_assert_int_eq(virtio_console_init(&con, "c", &drv.mem, &o, err,
					     sizeof(err)), -EINVAL);
	sp.name = "ok";
	/* A regular file is never replaced. */
	fd = open(sock_path[0], O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(virtio_console_init(&con, "c", &drv.mem, &o, err,
					     sizeof(err)), -EEXIST);
	ck_assert_ptr_nonnull(strstr(err, sock_path[0]));
	unlink(sock_path[0]);
	/* A stale socket (nobody listening) is. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path[0]);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd);
	ck_assert_int_eq(virtio_console_init(&con, "c", &drv.mem, &o, err,
					     sizeof(err)), 0);
	/* A live one is not. */
	{
		struct virtio_console other;

		ck_assert_int_eq(virtio_console_init(&other, "d", &drv.mem, &o,
						     err, sizeof(err)),
				 -EADDRINUSE);
	}
	virtio_console_destroy(&con);
	ck_assert_int_ne(access(sock_path[0], F_OK), 0); /* unlinked */
}
END_TEST

/* ---- a driver (and host peers) doing random things ---- */

/* Add one buffer of |len| random bytes (readable or writable) to queue
 * |q| without asserting: the ring may be full. */
static void fuzz_add(unsigned q, uint32_t len, bool writable, unsigned *seed)
{
	uint64_t gpa = vtd_alloc(&drv, len ? len : 1, 8);
	struct vtd_sg sg = { gpa, len, writable };
	uint8_t *p;

	if (!gpa)
		return;
	p = vtd_ptr(&drv, gpa, len ? len : 1);
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)rand_r(seed);
	vtd_vq_add(&vqs[q], &sg, 1, false);
}

START_TEST(test_malformed_random_control_messages_data_and_peers)
{
	unsigned seed = 0xc0e5u;
	int client = -1;
	uint32_t id, len;
	char got[64];

	start_console(true, true, 2);
	bring_up(F_SIZE | F_MULTI | F_EMERG, false);
	ctrl_buffers(8);
	for (int i = 0; i < 3000; i++) {
		unsigned r = (unsigned)rand_r(&seed) % 12, q;

		switch (r) {
		case 0: case 1: case 2: { /* a control message, any fields */
			uint8_t m[12];
			uint32_t pid = rand_r(&seed) % 4 ? (uint32_t)rand_r(&seed) % 4
							 : (uint32_t)rand_r(&seed);
			uint16_t ev = (uint16_t)(rand_r(&seed) % 10);
			uint16_t val = (uint16_t)(rand_r(&seed) % 3);
			uint32_t n = rand_r(&seed) % 4 ? 8 : (uint32_t)rand_r(&seed) % 13;

			memcpy(m, &pid, 4);
			memcpy(m + 4, &ev, 2);
			memcpy(m + 6, &val, 2);
			memcpy(m + 8, &pid, 4);
			{
				uint64_t gpa = vtd_alloc(&drv, 12, 8);
				struct vtd_sg sg = { gpa, n, false };

				if (gpa) {
					memcpy(vtd_ptr(&drv, gpa, 12), m, 12);
					vtd_vq_add(&vqs[VIRTIO_CONSOLE_CTRL_TXQ], &sg, 1,
						   false);
				}
			}
			vtd_kick(&drv, VIRTIO_CONSOLE_CTRL_TXQ);
			break;
		}
		case 3: case 4: /* data out on some port */
			q = 1 + 2 * (rand_r(&seed) % 3) + (rand_r(&seed) % 8 == 0);
			fuzz_add(q, (uint32_t)rand_r(&seed) % 300, rand_r(&seed) % 8 == 0,
				 &seed);
			vtd_kick(&drv, q);
			break;
		case 5: /* receive buffers, control or data */
			q = 2 * (rand_r(&seed) % 4);
			fuzz_add(q, (uint32_t)rand_r(&seed) % 200, rand_r(&seed) % 8 != 0,
				 &seed);
			vtd_kick(&drv, q);
			break;
		case 6: /* collect what came back */
			for (q = 0; q < NQ; q++)
				while (vtd_vq_get_used(&vqs[q], &id, &len) == 1)
					;
			break;
		case 7: { /* config writes, any width */
			uint32_t v = (uint32_t)rand_r(&seed);
			uint32_t off = (uint32_t)rand_r(&seed) % VIRTIO_CONSOLE_CONFIG_SIZE;
			uint32_t w = 1u << (rand_r(&seed) % 3);

			if (off + w <= VIRTIO_CONSOLE_CONFIG_SIZE)
				virtio_config_write(DEV, off, &v, w);
			break;
		}
		case 8: /* the host side: resize, console input */
			if (rand_r(&seed) % 2)
				virtio_console_resize(&con, (uint16_t)rand_r(&seed),
						      (uint16_t)rand_r(&seed));
			else
				virtio_console_port0_input(&con, (const uint8_t *)"fuzz", 4);
			break;
		case 9: /* a socket peer comes, talks, goes */
			if (client < 0) {
				client = connect_to(sock_path[rand_r(&seed) % 2]);
			} else if (rand_r(&seed) % 3) {
				char b[64];

				for (unsigned k = 0; k < sizeof(b); k++)
					b[k] = (char)rand_r(&seed);
				if (send(client, b, (size_t)rand_r(&seed) % sizeof(b),
					 MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
					/* full or gone: fine */
				}
			} else {
				close(client);
				client = -1;
			}
			break;
		default:
			virtio_device_sync(DEV);
			break;
		}
	}
	if (client >= 0)
		close(client);
	virtio_device_sync(DEV);
	/* Whatever state that left, a reset and a fresh driver work. */
	for (unsigned q = 0; q < NQ; q++)
		vtd_vq_destroy(&vqs[q]);
	memset(vqs, 0, sizeof(vqs));
	bring_up(F_SIZE | F_EMERG, false);
	pthread_mutex_lock(&out_lock);
	out_len = 0;
	pthread_mutex_unlock(&out_lock);
	send_tx(1, "alive", 5);
	ck_assert_uint_eq(captured(got, sizeof(got)), 5);
	ck_assert_mem_eq(got, "alive", 5);
}
END_TEST

static Suite *virtio_console_suite(void)
{
	Suite *s = suite_create("virtio_console");
	TCase *tc = tcase_create("console");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_5_3_1_device_id_3_and_config_layout);
	tcase_add_test(tc, test_5_3_2_port0_queues_always_exist_others_only_with_multiport);
	tcase_add_test(tc, test_5_3_4_config_fields_are_read_only_except_emerg_wr);
	tcase_add_test(tc, test_5_3_5_1_device_must_allow_emerg_wr_on_unconfigured_device);
	tcase_add_test(tc, test_5_3_5_1_device_should_transmit_lower_byte_of_emerg_wr);
	tcase_add_test(tc, test_5_3_6_port0_data_both_ways_split);
	tcase_add_test(tc, test_5_3_6_port0_data_both_ways_packed);
	tcase_add_test(tc, test_5_3_6_port0_input_staged_before_driver_ok_and_bounded);
	tcase_add_test(tc, test_5_3_6_resize_updates_config_and_notifies);
	tcase_add_test(tc, test_5_3_6_1_readable_buffer_in_receiveq_is_not_written);
	tcase_add_test(tc, test_5_3_6_1_writable_buffer_in_transmitq_is_not_written);
	tcase_add_test(tc, test_5_3_6_2_device_ready_adds_every_port);
	tcase_add_test(tc, test_5_3_6_2_1_device_must_not_add_existing_port);
	tcase_add_test(tc, test_5_3_6_2_1_device_must_not_add_port_at_or_above_max_nr_ports);
	tcase_add_test(tc, test_5_3_6_2_1_device_must_not_remove_port_not_added);
	tcase_add_test(tc, test_5_3_6_2_port_ready_announces_console_name_and_open);
	tcase_add_test(tc, test_5_3_6_2_socket_port_data_both_ways);
	tcase_add_test(tc, test_5_3_6_2_large_transfer_to_slow_peer_keeps_order);
	tcase_add_test(tc, test_5_3_6_2_guest_data_without_host_peer_is_dropped);
	tcase_add_test(tc, test_5_3_6_2_host_data_waits_until_guest_opens_port);
	tcase_add_test(tc, test_5_3_6_2_port0_data_with_multiport);
	tcase_add_test(tc, test_5_3_6_2_resize_message_for_console_port);
	tcase_add_test(tc, test_5_3_6_2_malformed_control_messages_are_ignored);
	tcase_add_test(tc, test_5_3_6_2_control_buffer_too_small_is_returned_empty);
	tcase_add_test(tc, test_5_3_6_2_without_multiport_only_port0_is_used);
	tcase_add_test(tc, test_console_attach_console_late);
	tcase_add_test(tc, test_console_init_validates_ports_and_replaces_stale_socket);
	tcase_add_test(tc, test_malformed_random_control_messages_data_and_peers);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(virtio_console_suite)
