/* The virtio core: status state machine, feature negotiation, config
 * space and generation, reset, and the event loops: the device's queue
 * thread (plus, opt-in, a thread per queue).
 * See virtio.h for the API and the threading model. */
#include "virtio/virtio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"

/* epoll tags: a queue index (< VIRTIO_MAX_QUEUES), or one of these. */
#define TAG_CTL     0x10000u
#define TAG_WATCHED 0x20000u

static uint8_t status_load(const struct virtio_device *dev)
{
	return __atomic_load_n(&dev->status, __ATOMIC_ACQUIRE);
}

/* Store the driver-visible status while keeping a DEVICE_NEEDS_RESET the
 * queue thread may have set concurrently (it never takes dev->lock). */
static void status_store_keep_nr(struct virtio_device *dev, uint8_t value)
{
	uint8_t cur = status_load(dev), want;

	do {
		want = value | (cur & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	} while (!__atomic_compare_exchange_n(&dev->status, &cur, want, false,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
}

bool virtio_has_feature(const struct virtio_device *dev, unsigned bit)
{
	return bit < 64 && (dev->driver_features & VIRTIO_BIT(bit));
}

/* Is the driver using the device?  §2.1.2: from DRIVER_OK on.  But
 * §3.1.2 (legacy interface): "the transitional device MUST support the
 * driver using the device before the step 8" (DRIVER_OK); a legacy
 * driver's features are final at that first use, the first queue it
 * enables (see virtio_queue_enable). */
static bool driver_live(const struct virtio_device *dev, uint8_t s)
{
	if (s & VIRTIO_STATUS_DRIVER_OK)
		return true;
	/* |activated| first: a transitional transport may flip |legacy|
	 * while the device is reset (not activated), from a vCPU thread;
	 * once activated is seen (acquire; set with release after the
	 * flip) legacy is settled. */
	return !(s & VIRTIO_STATUS_FAILED) &&
	       __atomic_load_n(&dev->activated, __ATOMIC_ACQUIRE) &&
	       dev->legacy;
}

/* May the device touch queue |q| now?  Only while the driver is live
 * (above), and not once it asked for a reset. */
static bool queue_runnable(struct virtio_device *dev, unsigned q)
{
	uint8_t s = status_load(dev);

	return driver_live(dev, s) &&
	       !(s & VIRTIO_STATUS_DEVICE_NEEDS_RESET) &&
	       dev->queues[q].ready && !dev->queues[q].broken;
}

static void run_queue(struct virtio_device *dev, unsigned q)
{
	if (dev->ops->queue_notify && queue_runnable(dev, q))
		dev->ops->queue_notify(dev, q);
}

/* ---- event loops ------------------------------------------------------
 *
 * A loop is one thread asleep in epoll_wait() on: the kick fds of the
 * queues it serves, the fds watched on it, and its ctl eventfd (stop and
 * sync requests).  It runs every callback under its own lock.  A device
 * has its device loop (dev->loop) and, with per-queue threads, one loop
 * per queue (dev->queue_loops) serving that queue's kicks while the
 * device loop serves none.  With polling on (virtio_device_set_polling)
 * a loop that just did work keeps its lock and spins for a while
 * (loop_poll) before it sleeps again; threads from outside take the lock
 * through loop_lock(), which makes the spin end. */

static int loop_init(struct virtio_loop *l, struct virtio_device *dev,
		     unsigned first_q, unsigned nr_q)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_CTL };

	memset(l, 0, sizeof(*l));
	l->dev = dev;
	l->first_q = first_q;
	l->nr_q = nr_q;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->sync_cond, NULL);
	l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	l->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->epoll_fd < 0 || l->ctl_fd < 0 ||
	    epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->ctl_fd, &ev) < 0)
		return -errno;
	return 0;
}

static void loop_wake(struct virtio_loop *l)
{
	uint64_t one = 1;

	if (l->ctl_fd >= 0 && write(l->ctl_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow in practice; nothing to do. */
	}
}

static int loop_watch(struct virtio_loop *l, int fd, virtio_fd_handler handler,
		      const struct virtio_fd_poll *poll, void *opaque)
{
	struct epoll_event ev = { .events = EPOLLIN };

	if (l->nr_watched >= VIRTIO_MAX_WATCHED_FDS || l->running)
		return -EBUSY;
	ev.data.u32 = TAG_WATCHED + l->nr_watched;
	if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	l->watched[l->nr_watched].fd = fd;
	l->watched[l->nr_watched].handler = handler;
	l->watched[l->nr_watched].poll = poll;
	l->watched[l->nr_watched].opaque = opaque;
	l->nr_watched++;
	return 0;
}

/* Take |l|'s lock from outside the loop.  Counted first, so that a
 * polling loop (which holds its lock while it polls) lets go at once. */
static void loop_lock(struct virtio_loop *l)
{
	__atomic_add_fetch(&l->waiters, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&l->lock);
	__atomic_sub_fetch(&l->waiters, 1, __ATOMIC_ACQ_REL);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A polling loop that has waited this long for the driver to answer
 * yields its CPU once (see loop_poll). */
#define YIELD_AFTER_NS 2000u

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Polling starts (|on|) or ends: the driver's notifications and the
 * polled fds' signals off, or back on. */
static void set_polling(struct virtio_loop *l, bool on)
{
	for (unsigned q = l->first_q; q < l->first_q + l->nr_q; q++)
		if (queue_runnable(l->dev, q))
			virtq_set_notification(&l->dev->queues[q], !on);
	for (unsigned w = 0; w < l->nr_watched; w++)
		if (l->watched[w].poll && l->watched[w].poll->quiet)
			l->watched[w].poll->quiet(l->watched[w].opaque, on);
}

/* One pass over what a polling loop watches; true if it found work. */
static bool poll_once(struct virtio_loop *l)
{
	struct virtio_device *dev = l->dev;
	bool found = false;

	for (unsigned q = l->first_q; q < l->first_q + l->nr_q; q++) {
		if (queue_runnable(dev, q) && virtq_has_avail(&dev->queues[q])) {
			run_queue(dev, q);
			found = true;
		}
	}
	for (unsigned w = 0; w < l->nr_watched; w++) {
		if (l->watched[w].poll &&
		    l->watched[w].poll->ready(l->watched[w].opaque)) {
			l->watched[w].handler(dev, l->watched[w].fd,
					      l->watched[w].opaque);
			found = true;
		}
	}
	return found;
}

/* Chains the loop's queues have returned so far. */
static uint64_t loop_used(const struct virtio_loop *l)
{
	uint64_t n = 0;

	for (unsigned q = l->first_q; q < l->first_q + l->nr_q; q++)
		n += l->dev->queues[q].nr_used;
	return n;
}

/* Work was just done: what is the loop waiting for now?  Returned
 * buffers give the driver something to answer; otherwise the loop only
 * took buffers and waits for the backend to finish them. */
static void note_work(struct virtio_loop *l)
{
	uint64_t used = loop_used(l);

	l->waiting_for = used != l->used_seen ? VIRTIO_WAIT_DRIVER
					      : VIRTIO_WAIT_BACKEND;
	l->used_seen = used;
}

/* Busy-poll for up to the window of what the loop waits for after the
 * last work found, the driver's notifications and the polled fds'
 * signals off meanwhile: a driver that adds buffers while the device is
 * still busy with the previous batch then costs neither a notification
 * nor a wake-up.  Anyone waiting for the lock (reset, queue change,
 * sync, stop) ends it.  Leaves idle_since at the last work found. */
static void loop_poll(struct virtio_loop *l)
{
	uint64_t last_work = now_ns();
	bool worked = false, yielded = false;

	set_polling(l, true);
	/* A sync counts as a waiter from before it asks until it is done,
	 * so |waiters| covers syncs too. */
	while (!l->stopping && !__atomic_load_n(&l->waiters, __ATOMIC_ACQUIRE)) {
		uint64_t t;

		if (poll_once(l)) {
			worked = true;
			continue;
		}
		t = now_ns();
		if (worked) {
			last_work = t;
			worked = false;
			yielded = false;
			note_work(l);
		} else if (t - last_work >= l->poll_ns[l->waiting_for]) {
			break;
		} else if (l->waiting_for == VIRTIO_WAIT_DRIVER && !yielded &&
			   t - last_work >= YIELD_AFTER_NS) {
			/* The driver was given used buffers and maybe woken
			 * but has not answered: the scheduler often wakes it
			 * on this CPU (the waker's), where it cannot run while
			 * we spin.  Let it run, once per wait; with nobody
			 * else here this returns at once.  Not right after
			 * the push: a driver running elsewhere (a polling
			 * vCPU) answers within microseconds, and a yield per
			 * batch cost page-cache reads at depth 32 some 60 ns
			 * of kernel time per request. */
			sched_yield();
			yielded = true;
		}
		cpu_relax();
	}
	/* Signals back on; what arrived before that came without one
	 * (§2.7.10 for the queues), so take it now. */
	set_polling(l, false);
	if (!l->stopping && poll_once(l)) {
		last_work = now_ns();
		note_work(l);
	}
	l->idle_since = last_work;
}

/* The loop woke at |now| and found work, idle since idle_since: adapt
 * the window of what it was waiting for (see virtio_device_set_polling).
 * A window of |idle| would have caught this work without a sleep: worth
 * growing towards it if within the maximum; beyond that, polling only
 * burns time. */
static void adapt_poll_window(struct virtio_loop *l, uint64_t now)
{
	uint64_t idle = now - l->idle_since;
	uint64_t *w = &l->poll_ns[l->waiting_for];

	if (idle <= l->poll_max_ns) {
		if (idle > *w) {
			*w = *w ? 2 * *w : VIRTIO_POLL_MIN_NS;
			if (*w > l->poll_max_ns)
				*w = l->poll_max_ns;
			l->poll_grows++;
		}
	} else if (*w) {
		*w /= 2;
		if (*w < VIRTIO_POLL_MIN_NS)
			*w = 0;
		l->poll_shrinks++;
	}
}

static void *loop_thread(void *arg)
{
	struct virtio_loop *l = arg;
	struct virtio_device *dev = l->dev;
	struct epoll_event evs[VIRTIO_MAX_QUEUES + VIRTIO_MAX_WATCHED_FDS + 1];
	uint64_t snapshot, val, woke;
	char name[16];

	/* For top -H and perf: the device, and the queue of a per-queue
	 * thread (truncated to the kernel's 15 characters). */
	if (dev->queue_loops && l != &dev->loop)
		snprintf(name, sizeof(name), "%s.q%u", dev->name, l->first_q);
	else
		snprintf(name, sizeof(name), "%s", dev->name);
	pthread_setname_np(pthread_self(), name);
	pthread_mutex_lock(&l->lock);
	while (!l->stopping) {
		bool worked;
		int n, i;

		/* Every sync request counted in |snapshot| wrote the ctl fd
		 * after its kicks; epoll reports all ready fds at once, so the
		 * batch below contains those kicks.  A pending request makes
		 * the wait non-blocking (its ctl event may already have been
		 * consumed by the previous batch). */
		snapshot = l->sync_requested;
		pthread_mutex_unlock(&l->lock);
		n = epoll_wait(l->epoll_fd, evs, sizeof(evs) / sizeof(evs[0]),
			       snapshot > l->sync_done ? 0 : -1);
		pthread_mutex_lock(&l->lock);
		woke = l->poll_max_ns ? now_ns() : 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kite_error("virtio %s: epoll_wait: %s", dev->name,
				   strerror(errno));
			break;
		}
		worked = false;
		for (i = 0; i < n && !l->stopping; i++) {
			uint32_t tag = evs[i].data.u32;

			if (tag < VIRTIO_MAX_QUEUES) {
				if (read(dev->kick_fd[tag], &val, sizeof(val)) ==
				    sizeof(val)) {
					run_queue(dev, tag);
					worked = true;
				}
			} else if (tag >= TAG_WATCHED &&
				   tag < TAG_WATCHED + l->nr_watched) {
				unsigned w = tag - TAG_WATCHED;

				l->watched[w].handler(dev, l->watched[w].fd,
						      l->watched[w].opaque);
				worked = true;
			} else if (tag == TAG_CTL) {
				if (read(l->ctl_fd, &val, sizeof(val)) < 0) {
					/* EAGAIN: already drained */
				}
			}
		}
		if (l->kick_all && !l->stopping) {
			/* Kicks that came before DRIVER_OK were dropped; a
			 * spurious notification is always allowed
			 * (§2.7.10.2), so look at every queue once. */
			l->kick_all = false;
			for (unsigned q = 0; q < l->nr_q; q++)
				run_queue(dev, l->first_q + q);
		}
		if (snapshot > l->sync_done) {
			l->sync_done = snapshot;
			pthread_cond_broadcast(&l->sync_cond);
		}
		if (l->poll_max_ns && worked && !l->stopping) {
			if (l->idle_since)
				adapt_poll_window(l, woke);
			note_work(l);
			if (l->poll_ns[l->waiting_for])
				loop_poll(l);
			else
				l->idle_since = now_ns();
		}
	}
	/* Release anyone still waiting in loop_sync(). */
	l->sync_done = UINT64_MAX;
	pthread_cond_broadcast(&l->sync_cond);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/* Watch the kick fds of the loop's queues (from here on only this loop
 * sees them) and start its thread. */
static int loop_start(struct virtio_loop *l)
{
	struct virtio_device *dev = l->dev;
	struct epoll_event ev = { .events = EPOLLIN };
	unsigned q;
	int err;

	if (l->running)
		return -EBUSY;
	for (q = l->first_q; q < l->first_q + l->nr_q; q++) {
		ev.data.u32 = q;
		if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, dev->kick_fd[q],
			      &ev) < 0) {
			err = -errno;
			goto unwatch;
		}
	}
	l->stopping = false;
	err = -pthread_create(&l->thread, NULL, loop_thread, l);
	if (!err) {
		l->running = true;
		return 0;
	}
unwatch:
	while (q-- > l->first_q)
		epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, dev->kick_fd[q], NULL);
	return err;
}

static void loop_stop(struct virtio_loop *l)
{
	if (!l->running)
		return;
	loop_lock(l);
	l->stopping = true;
	loop_wake(l);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	l->running = false;
	for (unsigned q = l->first_q; q < l->first_q + l->nr_q; q++)
		epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, l->dev->kick_fd[q], NULL);
}

static void loop_destroy(struct virtio_loop *l)
{
	loop_stop(l);
	if (l->ctl_fd >= 0)
		close(l->ctl_fd);
	if (l->epoll_fd >= 0)
		close(l->epoll_fd);
	l->ctl_fd = l->epoll_fd = -1;
}

/* Wait until the loop has handled what was pending when called. */
static void loop_sync(struct virtio_loop *l)
{
	uint64_t target;

	if (!l->running)
		return;
	/* Counted as a waiter throughout: pthread_cond_wait() takes the
	 * lock again on wake-up, and a polling loop must let it. */
	__atomic_add_fetch(&l->waiters, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&l->lock);
	target = ++l->sync_requested;
	loop_wake(l);
	while (l->sync_done < target)
		pthread_cond_wait(&l->sync_cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	__atomic_sub_fetch(&l->waiters, 1, __ATOMIC_ACQ_REL);
}

/* Loop |i| of the device: 0 is the device loop, 1..nr_queues the
 * queues' (with per-queue threads); NULL past the last. */
static struct virtio_loop *nth_loop(struct virtio_device *dev, unsigned i)
{
	if (i == 0)
		return &dev->loop;
	if (dev->queue_loops && i <= dev->nr_queues)
		return &dev->queue_loops[i - 1];
	return NULL;
}

#define for_each_loop(dev, l, i) \
	for ((i) = 0; ((l) = nth_loop((dev), (i))) != NULL; (i)++)

/* Quiesce every thread that runs device callbacks: the device loop's
 * lock, then each queue loop's in index order (a queue loop's callbacks
 * hold only their own lock). */
static void lock_all_work(struct virtio_device *dev)
{
	struct virtio_loop *l;
	unsigned i;

	for_each_loop(dev, l, i)
		loop_lock(l);
}

static void unlock_all_work(struct virtio_device *dev)
{
	if (dev->queue_loops)
		for (unsigned q = dev->nr_queues; q-- > 0;)
			pthread_mutex_unlock(&dev->queue_loops[q].lock);
	pthread_mutex_unlock(&dev->loop.lock);
}

/* Replay one notification per ready queue on every loop (DRIVER_OK). */
static void kick_all_loops(struct virtio_device *dev)
{
	struct virtio_loop *l;
	unsigned i;

	for_each_loop(dev, l, i) {
		l->kick_all = l->nr_q > 0;
		loop_wake(l);
	}
}

static void queue_loops_destroy(struct virtio_device *dev)
{
	if (!dev->queue_loops)
		return;
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		struct virtio_loop *l = &dev->queue_loops[q];

		loop_destroy(l);
		pthread_mutex_destroy(&l->lock);
		pthread_cond_destroy(&l->sync_cond);
	}
	free(dev->queue_loops);
	dev->queue_loops = NULL;
}

/* ---- lifecycle ------------------------------------------------------- */

int virtio_device_init(struct virtio_device *dev, const char *name,
		       uint32_t device_id, const struct virtio_device_ops *ops,
		       const struct guest_memory *mem, unsigned nr_queues,
		       uint16_t queue_max_size, uint64_t features,
		       uint32_t config_size)
{
	unsigned i;
	int err;

	if (nr_queues > VIRTIO_MAX_QUEUES || queue_max_size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	memset(dev, 0, sizeof(*dev));
	dev->name = name;
	dev->device_id = device_id;
	dev->vendor_id = 0x4b54; /* "KT" */
	dev->ops = ops;
	dev->mem = mem;
	dev->nr_queues = nr_queues;
	dev->device_features = features | VIRTIO_CORE_FEATURES;
	dev->config_size = config_size;
	dev->config_vector = VIRTIO_NO_VECTOR;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		dev->kick_fd[i] = -1;
		dev->queues[i].max_size = i < nr_queues ? queue_max_size : 0;
		dev->queues[i].vector = VIRTIO_NO_VECTOR;
		virtq_reset(&dev->queues[i]);
	}
	pthread_mutex_init(&dev->lock, NULL);
	err = loop_init(&dev->loop, dev, 0, nr_queues);
	for (i = 0; !err && i < nr_queues; i++) {
		dev->kick_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (dev->kick_fd[i] < 0)
			err = -errno;
	}
	if (err)
		virtio_device_destroy(dev);
	return err;
}

void virtio_device_set_transport(struct virtio_device *dev,
				 const struct virtio_transport_ops *ops,
				 void *transport)
{
	dev->transport_ops = ops;
	dev->transport = transport;
}

int virtio_device_watch_fd(struct virtio_device *dev, int fd,
			   virtio_fd_handler handler, void *opaque)
{
	return loop_watch(&dev->loop, fd, handler, NULL, opaque);
}

int virtio_device_use_queue_threads(struct virtio_device *dev)
{
	int err = 0;

	if (dev->loop.running)
		return -EBUSY;
	if (dev->queue_loops)
		return 0;
	dev->queue_loops = calloc(dev->nr_queues ? dev->nr_queues : 1,
				  sizeof(*dev->queue_loops));
	if (!dev->queue_loops)
		return -ENOMEM;
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		int e = loop_init(&dev->queue_loops[q], dev, q, 1);

		if (e && !err)
			err = e; /* init them all: destroy needs each one */
	}
	if (err) {
		queue_loops_destroy(dev);
		return err;
	}
	/* The kicks now go to the queues' own threads. */
	dev->loop.nr_q = 0;
	return 0;
}

int virtio_queue_watch_fd_polled(struct virtio_device *dev, unsigned qidx,
				 int fd, virtio_fd_handler handler,
				 const struct virtio_fd_poll *poll,
				 void *opaque)
{
	if (!dev->queue_loops)
		return loop_watch(&dev->loop, fd, handler, poll, opaque);
	if (qidx >= dev->nr_queues)
		return -EINVAL;
	return loop_watch(&dev->queue_loops[qidx], fd, handler, poll, opaque);
}

int virtio_queue_watch_fd(struct virtio_device *dev, unsigned qidx, int fd,
			  virtio_fd_handler handler, void *opaque)
{
	return virtio_queue_watch_fd_polled(dev, qidx, fd, handler, NULL,
					    opaque);
}

void virtio_device_set_polling(struct virtio_device *dev, unsigned max_us)
{
	struct virtio_loop *l;
	unsigned i;

	for_each_loop(dev, l, i) {
		l->poll_max_ns = (uint64_t)max_us * 1000;
		for (unsigned w = 0; w < VIRTIO_NR_WAITS; w++)
			l->poll_ns[w] = l->poll_max_ns;
	}
}

int virtio_device_start(struct virtio_device *dev)
{
	struct virtio_loop *l;
	unsigned i;
	int err;

	if (dev->loop.running)
		return -EBUSY;
	for_each_loop(dev, l, i) {
		err = loop_start(l);
		if (err) {
			struct virtio_loop *s;
			unsigned k;

			for_each_loop(dev, s, k)
				loop_stop(s);
			return err;
		}
	}
	return 0;
}

int virtio_device_sync(struct virtio_device *dev)
{
	struct virtio_loop *l;
	unsigned i;

	if (!dev->loop.running)
		return -ESRCH;
	for_each_loop(dev, l, i)
		loop_sync(l);
	return 0;
}

void virtio_device_destroy(struct virtio_device *dev)
{
	/* Queue loops first: they may be waiting in a device callback
	 * the device loop's handlers would complete. */
	queue_loops_destroy(dev);
	loop_destroy(&dev->loop);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		if (dev->kick_fd[i] >= 0)
			close(dev->kick_fd[i]);
		dev->kick_fd[i] = -1;
		/* No thread runs now: free the rings' in-flight tracking. */
		virtq_reset(&dev->queues[i]);
	}
}

/* ---- features (§2.2) ------------------------------------------------- */

uint32_t virtio_device_features_word(struct virtio_device *dev, unsigned word)
{
	return word < 2 ? (uint32_t)(dev->device_features >> (32 * word)) : 0;
}

uint32_t virtio_driver_features_word(struct virtio_device *dev, unsigned word)
{
	uint32_t v;

	pthread_mutex_lock(&dev->lock);
	v = word < 2 ? (uint32_t)(dev->driver_features >> (32 * word)) : 0;
	pthread_mutex_unlock(&dev->lock);
	return v;
}

void virtio_driver_features_write_word(struct virtio_device *dev,
				       unsigned word, uint32_t value)
{
	uint8_t s;

	pthread_mutex_lock(&dev->lock);
	s = status_load(dev);
	/* Features are fixed once accepted (legacy: once used, §3.1.2);
	 * only a reset renegotiates. */
	if (!(s & VIRTIO_STATUS_FEATURES_OK) &&
	    !(s & VIRTIO_STATUS_DRIVER_OK) && !dev->activated && word < 2) {
		uint64_t mask = 0xffffffffull << (32 * word);

		dev->driver_features = (dev->driver_features & ~mask) |
				       ((uint64_t)value << (32 * word));
	}
	/* Bits beyond 63: we offer none, so accepting one must fail
	 * FEATURES_OK (§2.2.1); remember it. */
	else if (word >= 2 && value && !(s & VIRTIO_STATUS_FEATURES_OK))
		dev->driver_features_beyond_64 = true;
	pthread_mutex_unlock(&dev->lock);
}

/* §2.2.2: accept the driver's subset, or refuse FEATURES_OK. */
static int features_acceptable(struct virtio_device *dev)
{
	uint64_t f = dev->driver_features;

	if ((f & ~dev->device_features) || dev->driver_features_beyond_64)
		return -EINVAL; /* accepted something not offered */
	if (!dev->legacy && !(f & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
		return -EINVAL; /* modern interface needs VERSION_1 */
	if (dev->ops->validate_features)
		return dev->ops->validate_features(dev, f);
	return 0;
}

/* ---- status (§2.1, §3.1.1) and reset (§2.4) -------------------------- */

uint8_t virtio_get_status(struct virtio_device *dev)
{
	return status_load(dev);
}

static void reset_locked(struct virtio_device *dev)
{
	struct virtio_loop *l;
	unsigned i;

	/* Waits for a running queue_notify to finish; after this no device
	 * callback runs on the old queues. */
	lock_all_work(dev);
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++)
		virtq_reset(&dev->queues[i]);
	if (dev->ops->reset)
		dev->ops->reset(dev);
	dev->driver_features = 0;
	dev->driver_features_beyond_64 = false;
	dev->activated = false;
	for_each_loop(dev, l, i)
		l->kick_all = false;
	/* §2.1.2: status is 0 after reset -- including NEEDS_RESET. */
	__atomic_store_n(&dev->status, 0, __ATOMIC_RELEASE);
	unlock_all_work(dev);
}

void virtio_reset(struct virtio_device *dev)
{
	pthread_mutex_lock(&dev->lock);
	reset_locked(dev);
	pthread_mutex_unlock(&dev->lock);
}

static void notify_config(struct virtio_device *dev)
{
	if (dev->transport_ops && dev->transport_ops->notify_config)
		dev->transport_ops->notify_config(dev->transport,
						  dev->config_vector);
}

void virtio_device_needs_reset(struct virtio_device *dev, const char *why)
{
	uint8_t old = __atomic_fetch_or(&dev->status,
					VIRTIO_STATUS_DEVICE_NEEDS_RESET,
					__ATOMIC_ACQ_REL);

	if (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	kite_warn("virtio %s: %s: device needs reset", dev->name, why);
	/* §2.1.2: after setting DEVICE_NEEDS_RESET with DRIVER_OK set, the
	 * device MUST send a configuration change notification. */
	if (old & VIRTIO_STATUS_DRIVER_OK)
		notify_config(dev);
}

int virtio_set_status(struct virtio_device *dev, uint8_t status)
{
	uint8_t old, added;
	int ret = 0;

	pthread_mutex_lock(&dev->lock);
	if (status == 0) {
		reset_locked(dev);
		goto out;
	}
	old = status_load(dev) & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	/* DEVICE_NEEDS_RESET belongs to the device: a driver writing back
	 * what it read neither sets nor clears it. */
	status &= ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	added = status & ~old;

	if (old & ~status) {
		/* §2.1.1: the driver MUST NOT clear a status bit. */
		ret = -EPROTO;
		goto broken;
	}
	if (status & VIRTIO_STATUS_FAILED) {
		/* The driver gave up; nothing else it says matters until it
		 * resets the device. */
		status_store_keep_nr(dev, old | VIRTIO_STATUS_FAILED);
		goto out;
	}
	/* §3.1.1 order: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK. */
	if (((added & VIRTIO_STATUS_DRIVER) &&
	     !(status & VIRTIO_STATUS_ACKNOWLEDGE)) ||
	    ((added & VIRTIO_STATUS_FEATURES_OK) &&
	     !(status & VIRTIO_STATUS_DRIVER)) ||
	    ((added & VIRTIO_STATUS_DRIVER_OK) &&
	     (!(status & VIRTIO_STATUS_DRIVER) ||
	      (!dev->legacy && !(status & VIRTIO_STATUS_FEATURES_OK))))) {
		ret = -EPROTO;
		goto broken;
	}

	if ((added & VIRTIO_STATUS_FEATURES_OK) && !dev->legacy) {
		if (features_acceptable(dev) != 0) {
			/* §2.2.2: fail to set FEATURES_OK; the status stays
			 * what it was (§4.3.2.3.2 wants exactly that). */
			ret = -EINVAL;
			goto out;
		}
	}
	if (added & VIRTIO_STATUS_DRIVER_OK) {
		int err = 0;

		if (dev->legacy) /* no FEATURES_OK step: drop unknown bits */
			dev->driver_features &= dev->device_features;
		lock_all_work(dev);
		status_store_keep_nr(dev, status);
		/* A legacy device may already be in use (§3.1.2). */
		if (dev->ops->activate && !dev->activated)
			err = dev->ops->activate(dev);
		__atomic_store_n(&dev->activated, true, __ATOMIC_RELEASE);
		kick_all_loops(dev);
		unlock_all_work(dev);
		if (err)
			virtio_device_needs_reset(dev, "activation failed");
		goto out;
	}
	status_store_keep_nr(dev, status);
	goto out;

broken:
	virtio_device_needs_reset(dev, "driver broke the status protocol");
out:
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

/* ---- config space (§2.5) --------------------------------------------- */

static bool config_range_ok(const struct virtio_device *dev, uint32_t offset,
			    uint32_t len)
{
	return offset <= dev->config_size && len <= dev->config_size - offset;
}

int virtio_config_read(struct virtio_device *dev, uint32_t offset, void *buf,
		       uint32_t len)
{
	memset(buf, 0, len);
	if (!config_range_ok(dev, offset, len))
		return -EINVAL;
	/* §2.5.1: readable at any time, including before FEATURES_OK. */
	pthread_mutex_lock(&dev->lock);
	if (dev->ops->get_config)
		dev->ops->get_config(dev, offset, buf, len);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int virtio_config_write(struct virtio_device *dev, uint32_t offset,
			const void *buf, uint32_t len)
{
	if (!config_range_ok(dev, offset, len))
		return -EINVAL;
	pthread_mutex_lock(&dev->lock);
	if (dev->ops->set_config)
		dev->ops->set_config(dev, offset, buf, len);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

uint32_t virtio_config_generation(struct virtio_device *dev)
{
	return __atomic_load_n(&dev->config_generation, __ATOMIC_ACQUIRE);
}

void virtio_config_changed(struct virtio_device *dev)
{
	/* §2.5 / §4.2.2.1: the generation changes whenever a driver could
	 * see two versions of the config. */
	__atomic_fetch_add(&dev->config_generation, 1, __ATOMIC_ACQ_REL);
	if (status_load(dev) & VIRTIO_STATUS_DRIVER_OK)
		notify_config(dev);
}

/* ---- queues ---------------------------------------------------------- */

int virtio_queue_enable(struct virtio_device *dev, unsigned qidx)
{
	int err;
	uint8_t s;
	bool legacy_first_use;
	int act_err = 0;

	if (qidx >= dev->nr_queues)
		return -EINVAL;
	pthread_mutex_lock(&dev->lock);
	lock_all_work(dev);
	s = status_load(dev);
	/* §3.1.2: a legacy driver may use the device before DRIVER_OK; its
	 * first queue is that first use, so its features are final now. */
	legacy_first_use = dev->legacy && !dev->activated &&
			   (s & VIRTIO_STATUS_DRIVER) &&
			   !(s & VIRTIO_STATUS_FAILED);
	if (legacy_first_use)
		dev->driver_features &= dev->device_features;
	err = virtq_enable(&dev->queues[qidx], dev->mem,
			   !dev->legacy &&
				   virtio_has_feature(dev, VIRTIO_F_RING_PACKED),
			   virtio_has_feature(dev, VIRTIO_F_EVENT_IDX),
			   virtio_has_feature(dev, VIRTIO_F_INDIRECT_DESC));
	if (!err && legacy_first_use) {
		if (dev->ops->activate)
			act_err = dev->ops->activate(dev);
		__atomic_store_n(&dev->activated, true, __ATOMIC_RELEASE);
	}
	unlock_all_work(dev);
	pthread_mutex_unlock(&dev->lock);
	if (err)
		virtio_device_needs_reset(dev, "invalid queue configuration");
	else if (act_err)
		virtio_device_needs_reset(dev, "activation failed");
	return err;
}

void virtio_queue_disable(struct virtio_device *dev, unsigned qidx)
{
	struct virtq *q;

	if (qidx >= dev->nr_queues)
		return;
	q = &dev->queues[qidx];
	pthread_mutex_lock(&dev->lock);
	lock_all_work(dev);
	q->ready = false;
	q->desc = q->driver = q->device = NULL;
	unlock_all_work(dev);
	pthread_mutex_unlock(&dev->lock);
}

int virtio_queue_kick_fd(struct virtio_device *dev, unsigned qidx)
{
	return qidx < dev->nr_queues ? dev->kick_fd[qidx] : -1;
}

void virtio_queue_kick(struct virtio_device *dev, unsigned qidx)
{
	uint64_t one = 1;

	if (qidx >= dev->nr_queues)
		return;
	if (write(dev->kick_fd[qidx], &one, sizeof(one)) < 0) {
		/* Counter saturation only; the thread is awake anyway. */
	}
}

/* What a virtq_pop() error means, for the person reading the log. */
static const char *ring_error(int err)
{
	switch (err) {
	case -EFAULT:
		return "descriptor points outside guest RAM";
	case -ELOOP:
		return "descriptor chain loops or exceeds the queue size";
	case -E2BIG:
		return "descriptor chain too long or over 4 GiB";
	case -EINVAL:
		return "invalid descriptor index, flags or indirect table";
	case -EBUSY:
		return "buffer made available again while in flight";
	case -EOVERFLOW:
		return "more buffers in flight than the queue size";
	default:
		return "queue unusable";
	}
}

int virtio_queue_pop(struct virtio_device *dev, unsigned qidx,
		     struct virtq_elem *elem)
{
	int ret;

	if (qidx >= dev->nr_queues || !queue_runnable(dev, qidx))
		return 0;
	ret = virtq_pop(&dev->queues[qidx], elem);
	if (ret < 0) {
		char why[96];

		snprintf(why, sizeof(why), "queue %u: %s", qidx,
			 ring_error(ret));
		virtio_device_needs_reset(dev, why);
	}
	return ret;
}

int virtio_queue_push(struct virtio_device *dev, unsigned qidx,
		      const struct virtq_elem *elem, uint32_t written)
{
	int ret;

	if (qidx >= dev->nr_queues)
		return -EINVAL;
	ret = virtq_push(&dev->queues[qidx], elem, written);
	if (ret < 0)
		virtio_device_needs_reset(dev, "cannot return a used buffer");
	return ret;
}

void virtio_queue_notify_driver(struct virtio_device *dev, unsigned qidx)
{
	struct virtq *q;

	if (qidx >= dev->nr_queues)
		return;
	q = &dev->queues[qidx];
	/* §2.1.2: no notifications before DRIVER_OK (legacy: before the
	 * driver started using the device, §3.1.2). */
	if (!driver_live(dev, status_load(dev)))
		return;
	if (virtq_should_notify(q) && dev->transport_ops &&
	    dev->transport_ops->notify_queue)
		dev->transport_ops->notify_queue(dev->transport, qidx,
						 q->vector);
}
