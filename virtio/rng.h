/* virtio entropy device (virtio 1.2 §5.4, device type 4), backed by the
 * host's getrandom(2).  One queue (requestq), no features, no config. */
#ifndef KITE_VIRTIO_RNG_H
#define KITE_VIRTIO_RNG_H

#include "virtio/virtio.h"

/* Fill at most this much of one buffer per request: §5.4.6.2 lets the
 * device use less than the whole buffer, and a bound keeps one request
 * from monopolising the queue thread. */
#define VIRTIO_RNG_MAX_PER_REQUEST 65536

#define VIRTIO_RNG_QUEUE_SIZE 256

struct virtio_rng {
	struct virtio_device vdev; /* first: the core hands us &vdev */
	struct virtq_elem elem;    /* scratch, used on the queue thread */
	uint64_t bytes_served;     /* statistics */
};

/* Initialise the device model (no thread yet: attach a transport, then
 * virtio_device_start(&rng->vdev)). */
int virtio_rng_init(struct virtio_rng *rng, const char *name,
		    const struct guest_memory *mem);
void virtio_rng_destroy(struct virtio_rng *rng);

#endif
