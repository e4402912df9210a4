/* virtio entropy device (virtio 1.2 §5.4). */
#include "virtio/rng.h"

#include <errno.h>
#include <stddef.h>
#include <sys/random.h>

static struct virtio_rng *to_rng(struct virtio_device *dev)
{
	return (struct virtio_rng *)((char *)dev -
				     offsetof(struct virtio_rng, vdev));
}

/* Fill up to |len| bytes of the element's writable part with randomness;
 * returns the number of bytes written (0 on a host failure). */
static uint32_t fill_random(const struct virtq_elem *elem, uint64_t len)
{
	uint64_t done = 0;
	unsigned i;

	for (i = elem->nreadable; i < elem->nbufs && done < len; i++) {
		uint8_t *p = elem->bufs[i].addr;
		uint64_t want = elem->bufs[i].len;

		if (want > len - done)
			want = len - done;
		while (want > 0) {
			ssize_t n = getrandom(p, want, 0);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				return (uint32_t)done;
			}
			p += n;
			want -= (uint64_t)n;
			done += (uint64_t)n;
		}
	}
	return (uint32_t)done;
}

static void rng_queue_notify(struct virtio_device *dev, unsigned qidx)
{
	struct virtio_rng *rng = to_rng(dev);
	bool pushed = false;

	if (qidx != 0)
		return;
	for (;;) {
		uint64_t len;
		uint32_t written;
		int ret = virtio_queue_pop(dev, 0, &rng->elem);

		if (ret <= 0)
			break;
		/* §5.4.6.1 forbids device-readable buffers; we ignore that
		 * part and fill what is writable.  §5.4.6.2: at least one
		 * random byte, possibly less than the whole buffer. */
		len = rng->elem.writable_len;
		if (len > VIRTIO_RNG_MAX_PER_REQUEST)
			len = VIRTIO_RNG_MAX_PER_REQUEST;
		written = fill_random(&rng->elem, len);
		rng->bytes_served += written;
		if (virtio_queue_push(dev, 0, &rng->elem, written) < 0)
			break;
		pushed = true;
	}
	if (pushed)
		virtio_queue_notify_driver(dev, 0);
}

static const struct virtio_device_ops rng_ops = {
	.queue_notify = rng_queue_notify,
};

int virtio_rng_init(struct virtio_rng *rng, const char *name,
		    const struct guest_memory *mem)
{
	rng->bytes_served = 0;
	/* §5.4.3: no feature bits; §5.4.4: no config. */
	return virtio_device_init(&rng->vdev, name, VIRTIO_ID_RNG, &rng_ops,
				  mem, 1, VIRTIO_RNG_QUEUE_SIZE, 0, 0);
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	virtio_device_destroy(&rng->vdev);
}
