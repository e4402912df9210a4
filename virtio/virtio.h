/* The virtio core: what every virtio device and every transport shares.
 *
 * Three parties meet here and never see each other directly:
 *
 *   device     (rng.c, blk, net, ...) fills in a struct virtio_device with
 *              its type, features, queues and a struct virtio_device_ops,
 *              and uses the "device API" below (pop/push/notify, config
 *              change, needs-reset).
 *   transport  (mmio.c, ccw.c, pci) turns guest register accesses into
 *              the "transport API" calls below (features, status, config,
 *              queue setup, kicks) and implements struct
 *              virtio_transport_ops to deliver interrupts.
 *   core       (core.c) owns the state machine of virtio 1.2 §2.1-§2.6 and
 *              each device's queue thread(s).
 *
 * Lifecycle (host side):
 *   virtio_device_init(dev, ...)           device constructor calls this
 *   virtio_device_set_transport(dev, ...)  transport attaches itself
 *   virtio_device_start(dev)               starts the queue thread
 *   ... guest runs ...
 *   virtio_device_destroy(dev)             stops the thread, frees queues
 *
 * Threading model
 *   Each device has one queue thread.  It sleeps in epoll_wait() on one
 *   eventfd per queue (the "kick fd", see virtio_queue_kick_fd()) plus any
 *   fds the device adds with virtio_device_watch_fd().  The PCI/MMIO
 *   transports register the kick fds as KVM ioeventfds, so a guest
 *   notification wakes the thread without a userspace exit; without
 *   ioeventfd (and in unit tests) virtio_queue_kick() writes the fd.
 *   When a kick arrives, the thread calls ops->queue_notify(dev, qidx) --
 *   but only while DRIVER_OK is set, NEEDS_RESET is not, and the queue is
 *   ready (§2.1.2: no buffers consumed before DRIVER_OK; a legacy driver
 *   may start earlier, at its first queue, §3.1.2).  All device
 *   callbacks that touch queues run on that thread with dev->loop.lock
 *   held, so a device needs no locking of its own for queue state.
 *
 *   Transport API calls come from vCPU threads and are serialised by
 *   dev->lock.  virtio_reset() (status write 0, or a transport reset) takes
 *   dev->loop.lock too, so it waits for a running queue_notify to return
 *   and guarantees that no device callback runs on the old queues after it
 *   returns ("quiesce synchronously", §2.4).  Device callbacks must
 *   therefore never call the transport API; they use the device API, which
 *   is lock-free towards dev->lock.
 *
 *   ops->activate, ops->reset and ops->get_config/set_config run on the
 *   calling (vCPU) thread under dev->lock; activate and reset additionally
 *   hold dev->loop.lock, so they never race with queue_notify.
 *
 *   A thread per queue (opt-in: virtio_device_use_queue_threads(), e.g.
 *   virtio-blk with MQ).  Each queue then has its own thread, epoll set
 *   and lock (a struct virtio_loop like the device's, dev->queue_loops): its kick fd and the fds added with virtio_queue_watch_fd()
 *   wake only that thread, and queue_notify(dev, q) and those handlers
 *   run under queue q's lock only, so different queues run in parallel.
 *   The device must then keep per-queue state per queue (or lock it
 *   itself).  The device thread still runs and serves the fds added with
 *   virtio_device_watch_fd() under dev->loop.lock.  Reset, activation and
 *   queue enable/disable take dev->loop.lock and then every queue lock (in
 *   index order), so the "quiesce synchronously" guarantee above holds
 *   for all threads.  A queue callback must not take dev->loop.lock or
 *   another queue's lock.
 *
 * Interrupts
 *   The core decides *whether* to notify (DRIVER_OK, ring suppression
 *   rules); the transport decides *how*: ops->notify_queue(transport,
 *   qidx, vector) and ops->notify_config(transport, vector).  The
 *   transport may be called from the queue thread or a vCPU thread and
 *   must be thread-safe (an irqfd write, an atomic status bit).  It must
 *   not take a lock that the transport holds while calling into the core
 *   (virtio_set_status(0) waits for the queue thread, which may be inside
 *   notify_queue): mmio.c keeps a separate irq_lock for that reason.
 *
 * Writing a transport (e.g. virtio-pci modern, §4.1.4.3 common config):
 *   device_feature(_select)   virtio_device_features_word(dev, sel)
 *   driver_feature(_select)   virtio_driver_features_write_word / _word
 *   msix_config               dev->config_vector
 *   num_queues                dev->nr_queues
 *   device_status             virtio_get_status / virtio_set_status
 *   config_generation         virtio_config_generation
 *   queue_size                dev->queues[q].size (max: .max_size; the
 *                             core resets size to max_size on reset)
 *   queue_msix_vector         dev->queues[q].vector
 *   queue_enable              virtio_queue_enable(); read back .ready
 *   queue_desc/driver/device  dev->queues[q].desc_addr/driver_addr/
 *                             device_addr (write only while !ready)
 *   notification              ioeventfd on virtio_queue_kick_fd(dev, q),
 *                             or virtio_queue_kick() from the trap
 *   device config             virtio_config_read / virtio_config_write
 *   ISR status                transport state, set in notify_queue /
 *                             notify_config
 *   Legacy (§4.1.5.1): set dev->legacy, compute the three addresses from
 *   the PFN with 4096-byte alignment (§2.7.2), then virtio_queue_enable().
 */
#ifndef KITE_VIRTIO_VIRTIO_H
#define KITE_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtq.h"
#include "vmm/memory.h"

/* §2.1 device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

/* §6 reserved (transport-independent) feature bits. */
#define VIRTIO_F_NOTIFY_ON_EMPTY  24 /* legacy */
#define VIRTIO_F_ANY_LAYOUT       27 /* legacy */
#define VIRTIO_F_INDIRECT_DESC    28
#define VIRTIO_F_EVENT_IDX        29
#define VIRTIO_F_VERSION_1        32
#define VIRTIO_F_ACCESS_PLATFORM  33
#define VIRTIO_F_RING_PACKED      34
#define VIRTIO_F_IN_ORDER         35

#define VIRTIO_BIT(b) (1ull << (b))

/* Ring features the core implements for every device; virtio_device_init
 * offers them in addition to the device's own bits. */
#define VIRTIO_CORE_FEATURES                                            \
	(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
	 VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_RING_PACKED))

/* "No interrupt vector" (PCI MSI-X VIRTIO_MSI_NO_VECTOR). */
#define VIRTIO_NO_VECTOR 0xffff

/* Device type ids (§5). */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4
#define VIRTIO_ID_BALLOON 5

#define VIRTIO_MAX_QUEUES 64
#define VIRTIO_MAX_WATCHED_FDS 8

struct virtio_device;

/* Implemented by a device type. */
struct virtio_device_ops {
	/* Copy |len| bytes of device config at |offset| (already bounds-
	 * checked against dev->config_size).  NULL: reads as zeros. */
	void (*get_config)(struct virtio_device *dev, uint32_t offset,
			   void *buf, uint32_t len);
	/* Driver write to config.  NULL: writes are ignored (§2.5 fields
	 * are read-only unless a device says otherwise). */
	void (*set_config)(struct virtio_device *dev, uint32_t offset,
			   const void *buf, uint32_t len);
	/* Called when the driver sets FEATURES_OK with |features| (already
	 * known to be a subset of what was offered).  Return 0 to accept or
	 * a negative errno to refuse: FEATURES_OK then stays clear (§2.2.2).
	 * NULL: accept every subset. */
	int (*validate_features)(struct virtio_device *dev, uint64_t features);
	/* A kick arrived on queue |qidx| (queue thread, dev->loop.lock
	 * held; with per-queue threads: queue |qidx|'s thread and lock).
	 * Pop with virtio_queue_pop() until it returns 0 (with EVENT_IDX the
	 * driver only kicks again once the ring was seen empty), push the
	 * results, then virtio_queue_notify_driver().  A device that must
	 * stop early (backend busy) keeps the element and finishes it from a
	 * watched fd's handler. */
	void (*queue_notify)(struct virtio_device *dev, unsigned qidx);
	/* The driver set DRIVER_OK: start using the negotiated features.
	 * Non-zero return sets DEVICE_NEEDS_RESET.  NULL: nothing to do. */
	int (*activate)(struct virtio_device *dev);
	/* The device is being reset: drop in-flight requests and per-driver
	 * state.  The queue thread is quiesced; when this returns the device
	 * must not touch the old queues any more.  NULL: nothing to do. */
	void (*reset)(struct virtio_device *dev);
};

/* Implemented by a transport. */
struct virtio_transport_ops {
	/* Send a used buffer notification for queue |qidx|. */
	void (*notify_queue)(void *transport, unsigned qidx, uint16_t vector);
	/* Send a configuration change notification. */
	void (*notify_config)(void *transport, uint16_t vector);
};

/* A callback for an extra fd watched by the queue thread. */
typedef void (*virtio_fd_handler)(struct virtio_device *dev, int fd,
				  void *opaque);
/* How a busy-polling loop (virtio_device_set_polling) looks at a watched
 * fd without waiting on it. */
struct virtio_fd_poll {
	/* Is there work for the fd's handler?  Cheap: no system call. */
	bool (*ready)(void *opaque);
	/* NULL, or: stop (quiet) and restart (!quiet) signalling the fd
	 * while the loop polls -- it does not need the wake-ups then.  After
	 * a restart the loop calls ready() once more. */
	void (*quiet)(void *opaque, bool quiet);
};

/* What a loop waits for after its work: after returning used buffers,
 * for the driver (to add new ones, typically soon); after only taking
 * buffers, for the backend (its watched fds: a disk's completions, as
 * slow as the disk).  Their poll windows adapt apart. */
enum { VIRTIO_WAIT_DRIVER, VIRTIO_WAIT_BACKEND, VIRTIO_NR_WAITS };

/* One event loop: a thread asleep in epoll_wait() on the kick fds of the
 * queues it serves, the fds watched on it and its ctl eventfd (stop and
 * sync requests); every callback runs under its lock.  Private to core.c
 * except |lock|, which tests may take to read device state the loop's
 * callbacks write. */
struct virtio_loop {
	struct virtio_device *dev;
	unsigned first_q, nr_q;            /* kicks of [first_q, first_q+nr_q) */
	pthread_mutex_t lock;              /* held while callbacks run */
	pthread_cond_t sync_cond;
	int epoll_fd;
	int ctl_fd;
	pthread_t thread;
	bool running, stopping;
	bool kick_all;                     /* replay kicks after DRIVER_OK */
	uint64_t sync_requested, sync_done;
	uint64_t poll_max_ns;              /* polling's limit; 0: never poll */
	/* The windows now (adaptive), one per thing a loop can wait for
	 * (VIRTIO_WAIT_*), and which one it waits for since idle_since. */
	uint64_t poll_ns[VIRTIO_NR_WAITS];
	unsigned waiting_for;
	uint64_t idle_since;               /* when the last work was done */
	uint64_t used_seen;                /* its queues' nr_used, then */
	uint64_t poll_grows, poll_shrinks; /* adaptations, for the tests */
	unsigned waiters;                  /* atomic: threads wanting |lock| */
	struct {
		int fd;
		virtio_fd_handler handler;
		const struct virtio_fd_poll *poll; /* NULL: not polled */
		void *opaque;
	} watched[VIRTIO_MAX_WATCHED_FDS];
	unsigned nr_watched;
};

struct virtio_device {
	/* ---- identity: set through virtio_device_init ---- */
	const char *name;                  /* for messages: "rng0" */
	uint32_t device_id;                /* §5: VIRTIO_ID_* */
	uint16_t vendor_id;
	uint64_t device_features;          /* offered (core bits included) */
	uint32_t config_size;              /* bytes of device config */
	const struct virtio_device_ops *ops;
	const struct guest_memory *mem;
	unsigned nr_queues;
	struct virtq queues[VIRTIO_MAX_QUEUES];

	/* ---- transport ---- */
	const struct virtio_transport_ops *transport_ops;
	void *transport;
	uint16_t config_vector;            /* transport-owned (MSI-X) */
	/* The transport is being driven through a legacy (pre-1.0)
	 * interface: no FEATURES_OK step (features are final at DRIVER_OK),
	 * VERSION_1 not required, split rings only.  Set by the transport;
	 * a transitional transport may flip it while the status is 0 (e.g.
	 * when the driver first touches the legacy I/O BAR).  Legacy rings
	 * are little-endian here (x86 guests), see virtq.h. */
	bool legacy;

	/* ---- state (read with virtio_get_status etc.) ---- */
	pthread_mutex_t lock;              /* transport API serialisation */
	uint8_t status;                    /* atomic access */
	uint64_t driver_features;          /* being negotiated / negotiated */
	bool driver_features_beyond_64;    /* driver set a bit we can't offer */
	uint32_t config_generation;        /* atomic access */

	/* ---- event loops (core.c) ---- */
	int kick_fd[VIRTIO_MAX_QUEUES];    /* eventfds: available buffers */
	bool activated;                    /* DRIVER_OK seen since reset */
	struct virtio_loop loop;           /* the device's queue thread */
	struct virtio_loop *queue_loops;   /* per-queue threads: nr_queues
					    * entries, or NULL */
};

/* ====================================================================
 * Host-side lifecycle
 * ==================================================================== */

/* Initialise |dev|: every queue gets max size |queue_max_size| (adjust
 * per queue with dev->queues[i].max_size before the guest runs).  Offers
 * |features| | VIRTIO_CORE_FEATURES (a device that cannot use one of the
 * core's ring features clears it from dev->device_features afterwards).
 * Creates the kick eventfds and the epoll set; no thread yet.  Returns 0
 * or a negative errno. */
int virtio_device_init(struct virtio_device *dev, const char *name,
		       uint32_t device_id, const struct virtio_device_ops *ops,
		       const struct guest_memory *mem, unsigned nr_queues,
		       uint16_t queue_max_size, uint64_t features,
		       uint32_t config_size);
void virtio_device_set_transport(struct virtio_device *dev,
				 const struct virtio_transport_ops *ops,
				 void *transport);
/* Opt in to one thread per queue (see "Threading model"); call after
 * virtio_device_init() and before virtio_device_start().  Returns 0 or a
 * negative errno (-EBUSY once started). */
int virtio_device_use_queue_threads(struct virtio_device *dev);
/* Start the queue thread (and the per-queue threads, if any). */
int virtio_device_start(struct virtio_device *dev);
/* Stop the thread (if started), close fds, reset the queues (freeing
 * their in-flight tracking).  The device's own state is the caller's. */
void virtio_device_destroy(struct virtio_device *dev);

/* Wait until the queue thread(s) have handled every kick and watched-fd
 * event that was pending when this was called.  For tests and orderly shutdown;
 * must not be called from the queue thread.  Returns 0, or -ESRCH when
 * the thread is not running. */
int virtio_device_sync(struct virtio_device *dev);

/* ====================================================================
 * Transport API (vCPU threads; serialised by dev->lock)
 * ==================================================================== */

/* Feature words (32 bits each, word 0 = bits 0..31). */
uint32_t virtio_device_features_word(struct virtio_device *dev, unsigned word);
/* Driver feature write.  Ignored once FEATURES_OK (or, legacy, DRIVER_OK)
 * is set: features are fixed until reset (§2.2). */
void virtio_driver_features_write_word(struct virtio_device *dev,
				       unsigned word, uint32_t value);
uint32_t virtio_driver_features_word(struct virtio_device *dev, unsigned word);

uint8_t virtio_get_status(struct virtio_device *dev);
/* The driver writes the status byte (§2.1, §3.1.1).  0 resets the device
 * (like virtio_reset()).  Otherwise:
 *   - FEATURES_OK is refused -- the status stays exactly as it was and
 *     -EINVAL is returned -- when the driver accepted a feature that was
 *     not offered, or (non-legacy) did not accept VERSION_1, or the
 *     device's validate_features hook says no (§2.2.2).  The driver sees
 *     FEATURES_OK clear when it reads the status back.
 *   - DRIVER_OK activates the device (ops->activate) and replays one
 *     queue_notify per ready queue (kicks before DRIVER_OK are dropped).
 *   - steps out of order (DRIVER without ACKNOWLEDGE, FEATURES_OK without
 *     DRIVER, DRIVER_OK without FEATURES_OK unless legacy) or clearing a
 *     bit without a reset set DEVICE_NEEDS_RESET and return -EPROTO.
 *   - FAILED is recorded; nothing else changes until a reset.
 * DEVICE_NEEDS_RESET is device-owned: the driver can neither set nor
 * clear it (only a reset does). */
int virtio_set_status(struct virtio_device *dev, uint8_t status);
/* §2.4: reset the device synchronously (status 0, features 0, queues
 * unconfigured, device reset hook run, queue thread quiesced). */
void virtio_reset(struct virtio_device *dev);

/* Device config access with bounds checks: -EINVAL when [offset,
 * offset+len) is outside config_size (reads then return zeros). */
int virtio_config_read(struct virtio_device *dev, uint32_t offset, void *buf,
		       uint32_t len);
int virtio_config_write(struct virtio_device *dev, uint32_t offset,
			const void *buf, uint32_t len);
uint32_t virtio_config_generation(struct virtio_device *dev);

/* Queue setup.  The transport writes dev->queues[i].size / desc_addr /
 * driver_addr / device_addr / vector while the queue is not ready, then
 * calls virtio_queue_enable().  An invalid configuration (size, alignment,
 * not RAM) fails with a negative errno and marks the device
 * DEVICE_NEEDS_RESET. */
int virtio_queue_enable(struct virtio_device *dev, unsigned qidx);
/* Stop using a queue (MMIO QueueReady=0, legacy PFN 0); quiesces the
 * queue thread first. */
void virtio_queue_disable(struct virtio_device *dev, unsigned qidx);
/* The eventfd a transport registers as ioeventfd for queue |qidx|. */
int virtio_queue_kick_fd(struct virtio_device *dev, unsigned qidx);
/* An available buffer notification arrived by a trapped register write
 * (no ioeventfd): wakes the queue thread.  Out-of-range qidx: ignored. */
void virtio_queue_kick(struct virtio_device *dev, unsigned qidx);

/* ====================================================================
 * Device API (queue thread, or anywhere the device serialises itself)
 * ==================================================================== */

/* virtq_pop() plus error handling: a driver that broke a ring rule puts the
 * device in DEVICE_NEEDS_RESET (and returns the negative errno). */
int virtio_queue_pop(struct virtio_device *dev, unsigned qidx,
		     struct virtq_elem *elem);
/* virtq_push(); a failure also sets DEVICE_NEEDS_RESET. */
int virtio_queue_push(struct virtio_device *dev, unsigned qidx,
		      const struct virtq_elem *elem, uint32_t written);
/* After a batch of pushes: send the used buffer notification unless the
 * driver suppressed it (§2.7.7, §2.8.10) or DRIVER_OK is not set. */
void virtio_queue_notify_driver(struct virtio_device *dev, unsigned qidx);

/* The device changed its config: bump the generation (§2.5) and send a
 * configuration change notification if DRIVER_OK. */
void virtio_config_changed(struct virtio_device *dev);
/* §2.1.2: the device hit an error it cannot recover from; sets
 * DEVICE_NEEDS_RESET and, if DRIVER_OK, notifies the driver.  |why| is
 * logged once. */
void virtio_device_needs_reset(struct virtio_device *dev, const char *why);

/* True when |bit| was negotiated. */
bool virtio_has_feature(const struct virtio_device *dev, unsigned bit);

/* Watch an extra fd from the queue thread (a TAP fd, a backend completion
 * eventfd).  |handler| runs on the queue thread with dev->loop.lock held.
 * Call before virtio_device_start(). */
int virtio_device_watch_fd(struct virtio_device *dev, int fd,
			   virtio_fd_handler handler, void *opaque);
/* The same for the thread of queue |qidx| (per-queue threads): |handler|
 * runs there under that queue's lock.  Without per-queue threads this is
 * virtio_device_watch_fd().  Call before virtio_device_start(). */
int virtio_queue_watch_fd(struct virtio_device *dev, unsigned qidx, int fd,
			  virtio_fd_handler handler, void *opaque);

/* virtio_queue_watch_fd() with the probes a polling loop uses (|poll|
 * must outlive the device). */
int virtio_queue_watch_fd_polled(struct virtio_device *dev, unsigned qidx,
				 int fd, virtio_fd_handler handler,
				 const struct virtio_fd_poll *poll,
				 void *opaque);
/* Busy-polling, opt-in per device (virtio-blk): after each batch of
 * events a loop keeps handling its queues' new buffers and its polled
 * fds for a while (its poll window) after the last work it found before
 * it sleeps again, with the driver's available buffer notifications
 * turned off meanwhile (§2.7.10, §2.8.10).  Trades CPU time for fewer
 * wake-ups and fewer guest notifications (exits).  The window adapts,
 * between 0 and |max_us| microseconds (it starts at the maximum): after
 * each sleep that ended in work, a sleep that a window of at most
 * |max_us| would have avoided doubles it, a longer one halves it (to 0
 * below VIRTIO_POLL_MIN_NS), so a driver that keeps the device busy gets
 * polled and a slow one costs no spinning.  A loop keeps one window for
 * waiting on the driver and one for waiting on the backend
 * (VIRTIO_WAIT_*): a quick driver in front of a slow disk is polled for
 * without spinning through the disk's latency.  A reset, queue change or
 * sync ends a poll at once.  0 (the default) disables.  Call before
 * virtio_device_start(). */
#define VIRTIO_POLL_MIN_NS 4000u
void virtio_device_set_polling(struct virtio_device *dev, unsigned max_us);

#endif
