/* virtio-rng: the driver posts device-writable buffers on queue 0 and the
 * device fills them with random bytes.  Served in the I/O thread, as
 * virtio-blk's requests are; getrandom() with GRND_NONBLOCK, so a host
 * whose pool is not yet initialised (early boot) makes the device return
 * short (or empty) buffers instead of blocking the event loop. */
#include "devices/virtio_rng.h"
#include "devices/device.h"
#include "devices/virtio_pci.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#define VIRTIO_ID_RNG 4

struct virtio_rng {
	struct virtio_pci vp;
	struct virtio_device_ops ops;
	struct vq_elem elem;
	uint64_t requests, bytes, bad;
};

static void vrng_bad(struct virtio_rng *g, const char *why)
{
	virtio_log_bad(&g->bad, "virtio-rng: %s", why);
}

/* Fill IOV (device-writable buffers) with up to VIRTIO_RNG_MAX_REQUEST
 * random bytes; returns how many were written. */
static uint32_t vrng_fill(const struct iovec *iov, unsigned cnt)
{
	size_t done = 0;
	for (unsigned i = 0; i < cnt && done < VIRTIO_RNG_MAX_REQUEST; i++) {
		size_t want = iov[i].iov_len;
		if (want > VIRTIO_RNG_MAX_REQUEST - done)
			want = VIRTIO_RNG_MAX_REQUEST - done;
		size_t got = 0;
		while (got < want) {
			ssize_t n =
			    getrandom((uint8_t *)iov[i].iov_base + got, want - got, GRND_NONBLOCK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return (uint32_t)(done + got); /* EAGAIN: pool not ready */
			got += (size_t)n;
		}
		done += got;
	}
	return (uint32_t)done;
}

static void vrng_queue_notify(void *dev, unsigned q)
{
	struct virtio_rng *g = dev;
	struct virtqueue *vq = &g->vp.vqs[q];
	bool pushed = false;
	unsigned budget = vq->size;
	for (int r; (r = virtio_pci_pop(&g->vp, vq, &g->elem, &budget)) != 0;) {
		pushed = true;
		if (r == -EBADMSG || g->elem.nout) {
			/* §5.4.6.2: the driver only posts device-writable
			 * buffers; a refused chain gets nothing written. */
			vrng_bad(g, r == -EBADMSG ? "bad descriptor chain"
						  : "device-readable buffer in a request");
			vq_push(vq, g->elem.head, 0);
			continue;
		}
		uint32_t n = vrng_fill(g->elem.in, g->elem.nin);
		g->requests++;
		g->bytes += n;
		vq_push(vq, g->elem.head, n);
	}
	if (pushed && vq_should_notify(vq))
		virtio_pci_queue_interrupt(&g->vp, q);
}

static void vrng_destroy(void *priv)
{
	struct virtio_rng *g = priv;
	log_debug("virtio-rng: %llu requests, %llu bytes", (unsigned long long)g->requests,
		  (unsigned long long)g->bytes);
	virtio_pci_destroy(&g->vp);
	free(g);
}

/* The transport's state is all there is: no configuration space. */
static int vrng_snapshot(void *priv, struct state_buf *sb)
{
	struct virtio_rng *g = priv;
	return virtio_pci_snapshot(&g->vp, sb);
}

static const struct device_ops vrng_device_ops = {
    .name = "virtio-rng",
    .snapshot = vrng_snapshot,
    .destroy = vrng_destroy,
};

int virtio_rng_init(struct vm *vm, const struct devices_config *cfg)
{
	if (!cfg->rng)
		return 0;
	struct virtio_rng *g = calloc(1, sizeof(*g));
	if (!g)
		return err_set(ENOMEM, "virtio-rng");
	g->ops = (struct virtio_device_ops){
	    .name = "virtio-rng",
	    .device_id = VIRTIO_ID_RNG,
	    .class_code = 0xff0000, /* unclassified, as other VMMs give it */
	    .nqueues = 1,
	    .queue_notify = vrng_queue_notify,
	};
	int r = virtio_pci_init(&g->vp, vm, &g->ops, g);
	if (r < 0) {
		free(g);
		return r;
	}
	log_debug("virtio-rng in PCI slot %u", g->vp.pci.slot);
	return device_add(vm, &vrng_device_ops, g);
}
