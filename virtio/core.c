/* The virtio core: status state machine, feature negotiation, config
 * space and generation, reset, and the per-device queue thread (plus,
 * opt-in, a thread per queue).
 * See virtio.h for the API and the threading model. */
#include "virtio/virtio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/log.h"

/* epoll tags: queue index, or one of these. */
#define TAG_CTL     0x10000u
#define TAG_WATCHED 0x20000u

/* The thread of one queue (virtio_device_use_queue_threads). */
struct virtio_queue_worker {
	struct virtio_device *dev;
	unsigned qidx;
	pthread_mutex_t lock;              /* queue_notify / handlers */
	pthread_cond_t sync_cond;
	int epoll_fd, ctl_fd;
	pthread_t thread;
	bool running, stopping, kick_all;
	uint64_t sync_requested, sync_done;
	struct {
		int fd;
		virtio_fd_handler handler;
		void *opaque;
	} watched[VIRTIO_MAX_WATCHED_FDS];
	unsigned nr_watched;
};

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

static void wake_thread(struct virtio_device *dev)
{
	uint64_t one = 1;

	if (dev->ctl_fd >= 0 && write(dev->ctl_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow in practice; nothing to do. */
	}
}

/* ---- lifecycle ------------------------------------------------------- */

int virtio_device_init(struct virtio_device *dev, const char *name,
		       uint32_t device_id, const struct virtio_device_ops *ops,
		       const struct guest_memory *mem, unsigned nr_queues,
		       uint16_t queue_max_size, uint64_t features,
		       uint32_t config_size)
{
	struct epoll_event ev = { .events = EPOLLIN };
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
	dev->epoll_fd = dev->ctl_fd = -1;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		dev->kick_fd[i] = -1;
		dev->queues[i].max_size = i < nr_queues ? queue_max_size : 0;
		dev->queues[i].vector = VIRTIO_NO_VECTOR;
		virtq_reset(&dev->queues[i]);
	}
	pthread_mutex_init(&dev->lock, NULL);
	pthread_mutex_init(&dev->work_lock, NULL);
	pthread_cond_init(&dev->sync_cond, NULL);

	dev->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (dev->epoll_fd < 0)
		goto fail_errno;
	dev->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (dev->ctl_fd < 0)
		goto fail_errno;
	ev.data.u32 = TAG_CTL;
	if (epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, dev->ctl_fd, &ev) < 0)
		goto fail_errno;
	for (i = 0; i < nr_queues; i++) {
		dev->kick_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (dev->kick_fd[i] < 0)
			goto fail_errno;
		ev.data.u32 = i;
		if (epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, dev->kick_fd[i],
			      &ev) < 0)
			goto fail_errno;
	}
	return 0;

fail_errno:
	err = -errno;
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
	struct epoll_event ev = { .events = EPOLLIN };

	if (dev->nr_watched >= VIRTIO_MAX_WATCHED_FDS || dev->thread_running)
		return -EBUSY;
	ev.data.u32 = TAG_WATCHED + dev->nr_watched;
	if (epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	dev->watched[dev->nr_watched].fd = fd;
	dev->watched[dev->nr_watched].handler = handler;
	dev->watched[dev->nr_watched].opaque = opaque;
	dev->nr_watched++;
	return 0;
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
	return dev->legacy && !(s & VIRTIO_STATUS_FAILED) &&
	       __atomic_load_n(&dev->activated, __ATOMIC_ACQUIRE);
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

static void workers_destroy(struct virtio_device *dev);

/* Quiesce every thread that runs device callbacks: work_lock, then each
 * per-queue lock in index order (queue threads hold only their own). */
static void lock_all_work(struct virtio_device *dev)
{
	pthread_mutex_lock(&dev->work_lock);
	if (dev->qworkers)
		for (unsigned q = 0; q < dev->nr_queues; q++)
			pthread_mutex_lock(&dev->qworkers[q].lock);
}

static void unlock_all_work(struct virtio_device *dev)
{
	if (dev->qworkers)
		for (unsigned q = dev->nr_queues; q-- > 0;)
			pthread_mutex_unlock(&dev->qworkers[q].lock);
	pthread_mutex_unlock(&dev->work_lock);
}

static void worker_wake(struct virtio_queue_worker *w)
{
	uint64_t one = 1;

	if (w->ctl_fd >= 0 && write(w->ctl_fd, &one, sizeof(one)) < 0) {
		/* Counter saturation only. */
	}
}

/* The loop of a per-queue thread: queue_thread() for one queue. */
static void *queue_worker_thread(void *arg)
{
	struct virtio_queue_worker *w = arg;
	struct virtio_device *dev = w->dev;
	struct epoll_event evs[VIRTIO_MAX_WATCHED_FDS + 2];
	uint64_t snapshot, val;

	pthread_mutex_lock(&w->lock);
	while (!w->stopping) {
		int n, i;

		snapshot = w->sync_requested;
		pthread_mutex_unlock(&w->lock);
		n = epoll_wait(w->epoll_fd, evs, sizeof(evs) / sizeof(evs[0]),
			       snapshot > w->sync_done ? 0 : -1);
		pthread_mutex_lock(&w->lock);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kite_error("virtio %s: queue %u: epoll_wait: %s",
				   dev->name, w->qidx, strerror(errno));
			break;
		}
		for (i = 0; i < n && !w->stopping; i++) {
			uint32_t tag = evs[i].data.u32;

			if (tag == w->qidx) {
				if (read(dev->kick_fd[tag], &val, sizeof(val)) ==
				    sizeof(val))
					run_queue(dev, tag);
			} else if (tag >= TAG_WATCHED &&
				   tag < TAG_WATCHED + w->nr_watched) {
				unsigned k = tag - TAG_WATCHED;

				w->watched[k].handler(dev, w->watched[k].fd,
						      w->watched[k].opaque);
			} else if (tag == TAG_CTL) {
				if (read(w->ctl_fd, &val, sizeof(val)) < 0) {
					/* EAGAIN: already drained */
				}
			}
		}
		if (w->kick_all && !w->stopping) {
			/* Kicks before DRIVER_OK were dropped (§2.7.10.2:
			 * a spurious notification is always allowed). */
			w->kick_all = false;
			run_queue(dev, w->qidx);
		}
		if (snapshot > w->sync_done) {
			w->sync_done = snapshot;
			pthread_cond_broadcast(&w->sync_cond);
		}
	}
	w->sync_done = UINT64_MAX;
	pthread_cond_broadcast(&w->sync_cond);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int virtio_device_use_queue_threads(struct virtio_device *dev)
{
	struct epoll_event ev = { .events = EPOLLIN };
	unsigned q;
	int err;

	if (dev->thread_running)
		return -EBUSY;
	if (dev->qworkers)
		return 0;
	dev->qworkers = calloc(dev->nr_queues ? dev->nr_queues : 1,
			       sizeof(*dev->qworkers));
	if (!dev->qworkers)
		return -ENOMEM;
	for (q = 0; q < dev->nr_queues; q++) {
		struct virtio_queue_worker *w = &dev->qworkers[q];

		w->dev = dev;
		w->qidx = q;
		w->epoll_fd = w->ctl_fd = -1;
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->sync_cond, NULL);
	}
	for (q = 0; q < dev->nr_queues; q++) {
		struct virtio_queue_worker *w = &dev->qworkers[q];

		w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		w->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->epoll_fd < 0 || w->ctl_fd < 0)
			goto fail_errno;
		ev.data.u32 = TAG_CTL;
		if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->ctl_fd, &ev) < 0)
			goto fail_errno;
		/* The kick fd moves from the device thread to this one. */
		if (epoll_ctl(dev->epoll_fd, EPOLL_CTL_DEL, dev->kick_fd[q],
			      NULL) < 0)
			goto fail_errno;
		ev.data.u32 = q;
		if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, dev->kick_fd[q],
			      &ev) < 0) {
			err = -errno;
			epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, dev->kick_fd[q],
				  &ev);
			goto fail;
		}
	}
	return 0;

fail_errno:
	err = -errno;
fail:
	/* Give the kick fds back to the device thread. */
	for (unsigned k = 0; k < q; k++) {
		ev.data.u32 = k;
		epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, dev->kick_fd[k], &ev);
	}
	workers_destroy(dev);
	return err;
}

int virtio_queue_watch_fd(struct virtio_device *dev, unsigned qidx, int fd,
			  virtio_fd_handler handler, void *opaque)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct virtio_queue_worker *w;

	if (!dev->qworkers)
		return virtio_device_watch_fd(dev, fd, handler, opaque);
	if (qidx >= dev->nr_queues)
		return -EINVAL;
	w = &dev->qworkers[qidx];
	if (w->nr_watched >= VIRTIO_MAX_WATCHED_FDS || w->running)
		return -EBUSY;
	ev.data.u32 = TAG_WATCHED + w->nr_watched;
	if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	w->watched[w->nr_watched].fd = fd;
	w->watched[w->nr_watched].handler = handler;
	w->watched[w->nr_watched].opaque = opaque;
	w->nr_watched++;
	return 0;
}

static void workers_stop(struct virtio_device *dev)
{
	if (!dev->qworkers)
		return;
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		struct virtio_queue_worker *w = &dev->qworkers[q];

		if (!w->running)
			continue;
		pthread_mutex_lock(&w->lock);
		w->stopping = true;
		worker_wake(w);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
		w->running = false;
	}
}

static void workers_destroy(struct virtio_device *dev)
{
	if (!dev->qworkers)
		return;
	workers_stop(dev);
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		struct virtio_queue_worker *w = &dev->qworkers[q];

		if (w->ctl_fd >= 0)
			close(w->ctl_fd);
		if (w->epoll_fd >= 0)
			close(w->epoll_fd);
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->sync_cond);
	}
	free(dev->qworkers);
	dev->qworkers = NULL;
}

static void *queue_thread(void *arg)
{
	struct virtio_device *dev = arg;
	struct epoll_event evs[VIRTIO_MAX_QUEUES + VIRTIO_MAX_WATCHED_FDS + 1];
	uint64_t snapshot, val;

	pthread_mutex_lock(&dev->work_lock);
	while (!dev->stopping) {
		int n, i;

		/* Every sync request counted in |snapshot| wrote the ctl fd
		 * after its kicks; epoll reports all ready fds at once, so the
		 * batch below contains those kicks.  A pending request makes
		 * the wait non-blocking (its ctl event may already have been
		 * consumed by the previous batch). */
		snapshot = dev->sync_requested;
		pthread_mutex_unlock(&dev->work_lock);
		n = epoll_wait(dev->epoll_fd, evs,
			       sizeof(evs) / sizeof(evs[0]),
			       snapshot > dev->sync_done ? 0 : -1);
		pthread_mutex_lock(&dev->work_lock);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kite_error("virtio %s: epoll_wait: %s", dev->name,
				   strerror(errno));
			break;
		}
		for (i = 0; i < n && !dev->stopping; i++) {
			uint32_t tag = evs[i].data.u32;

			if (tag < dev->nr_queues) {
				if (read(dev->kick_fd[tag], &val, sizeof(val)) ==
				    sizeof(val))
					run_queue(dev, tag);
			} else if (tag >= TAG_WATCHED &&
				   tag < TAG_WATCHED + dev->nr_watched) {
				unsigned w = tag - TAG_WATCHED;

				dev->watched[w].handler(dev, dev->watched[w].fd,
							dev->watched[w].opaque);
			} else if (tag == TAG_CTL) {
				if (read(dev->ctl_fd, &val, sizeof(val)) < 0) {
					/* EAGAIN: already drained */
				}
			}
		}
		if (dev->kick_all && !dev->stopping) {
			unsigned q;

			/* Kicks that came before DRIVER_OK were dropped; a
			 * spurious notification is always allowed
			 * (§2.7.10.2), so look at every queue once. */
			dev->kick_all = false;
			for (q = 0; q < dev->nr_queues; q++)
				run_queue(dev, q);
		}
		if (snapshot > dev->sync_done) {
			dev->sync_done = snapshot;
			pthread_cond_broadcast(&dev->sync_cond);
		}
	}
	/* Release anyone still waiting in virtio_device_sync(). */
	dev->sync_done = UINT64_MAX;
	pthread_cond_broadcast(&dev->sync_cond);
	pthread_mutex_unlock(&dev->work_lock);
	return NULL;
}

int virtio_device_start(struct virtio_device *dev)
{
	int err;

	if (dev->thread_running)
		return -EBUSY;
	dev->stopping = false;
	err = pthread_create(&dev->thread, NULL, queue_thread, dev);
	if (err)
		return -err;
	dev->thread_running = true;
	for (unsigned q = 0; dev->qworkers && q < dev->nr_queues; q++) {
		struct virtio_queue_worker *w = &dev->qworkers[q];

		w->stopping = false;
		err = pthread_create(&w->thread, NULL, queue_worker_thread, w);
		if (err) {
			workers_stop(dev);
			pthread_mutex_lock(&dev->work_lock);
			dev->stopping = true;
			wake_thread(dev);
			pthread_mutex_unlock(&dev->work_lock);
			pthread_join(dev->thread, NULL);
			dev->thread_running = false;
			return -err;
		}
		w->running = true;
	}
	return 0;
}

int virtio_device_sync(struct virtio_device *dev)
{
	uint64_t target;

	if (!dev->thread_running)
		return -ESRCH;
	pthread_mutex_lock(&dev->work_lock);
	target = ++dev->sync_requested;
	wake_thread(dev);
	while (dev->sync_done < target)
		pthread_cond_wait(&dev->sync_cond, &dev->work_lock);
	pthread_mutex_unlock(&dev->work_lock);
	for (unsigned q = 0; dev->qworkers && q < dev->nr_queues; q++) {
		struct virtio_queue_worker *w = &dev->qworkers[q];

		if (!w->running)
			continue;
		pthread_mutex_lock(&w->lock);
		target = ++w->sync_requested;
		worker_wake(w);
		while (w->sync_done < target)
			pthread_cond_wait(&w->sync_cond, &w->lock);
		pthread_mutex_unlock(&w->lock);
	}
	return 0;
}

void virtio_device_destroy(struct virtio_device *dev)
{
	unsigned i;

	/* Queue threads first: they may be waiting in a device callback
	 * the device thread's handlers would complete. */
	workers_destroy(dev);
	if (dev->thread_running) {
		pthread_mutex_lock(&dev->work_lock);
		dev->stopping = true;
		wake_thread(dev);
		pthread_mutex_unlock(&dev->work_lock);
		pthread_join(dev->thread, NULL);
		dev->thread_running = false;
	}
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		if (dev->kick_fd[i] >= 0)
			close(dev->kick_fd[i]);
		dev->kick_fd[i] = -1;
	}
	if (dev->ctl_fd >= 0)
		close(dev->ctl_fd);
	if (dev->epoll_fd >= 0)
		close(dev->epoll_fd);
	dev->ctl_fd = dev->epoll_fd = -1;
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
	dev->kick_all = false;
	/* §2.1.2: status is 0 after reset -- including NEEDS_RESET. */
	__atomic_store_n(&dev->status, 0, __ATOMIC_RELEASE);
	for (i = 0; dev->qworkers && i < dev->nr_queues; i++)
		dev->qworkers[i].kick_all = false;
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
		/* The device thread replays kicks unless each queue has its
		 * own thread. */
		dev->kick_all = !dev->qworkers;
		wake_thread(dev);
		for (unsigned q = 0; dev->qworkers && q < dev->nr_queues; q++) {
			dev->qworkers[q].kick_all = true;
			worker_wake(&dev->qworkers[q]);
		}
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
