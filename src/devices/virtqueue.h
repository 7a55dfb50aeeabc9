/* Split virtqueues (virtio 1.x §2.7): the descriptor table, the driver's
 * available ring and the device's used ring, all in guest memory.  Every
 * index and address read from the guest is checked before use. */
#ifndef CAIRN_DEVICES_VIRTQUEUE_H
#define CAIRN_DEVICES_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct vm;

#define VQ_MAX_SIZE 256
#define VQ_MAX_SEGS 256

struct virtqueue {
	struct vm *vm;
	uint16_t size;  /* negotiated number of entries */
	bool ready;     /* queue_enable written by the driver */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t last_avail; /* next available entry the device will take */
	uint16_t used_idx;   /* next used entry the device will fill */
	uint16_t msix_vector;
};

/* One request: a descriptor chain split into device-readable (out) and
 * device-writable (in) host buffers. */
struct vq_elem {
	uint16_t head;
	unsigned nout, nin;
	struct iovec out[VQ_MAX_SEGS];
	struct iovec in[VQ_MAX_SEGS];
};

void vq_reset(struct virtqueue *vq);
/* 1: an element was taken; 0: ring empty; <0: the driver broke the
 * protocol (bad index, address or chain): the device should fail. */
int vq_pop(struct virtqueue *vq, struct vq_elem *elem);
/* Return HEAD to the driver with LEN bytes written. */
void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len);
/* Whether the driver wants an interrupt now (VRING_AVAIL_F_NO_INTERRUPT). */
bool vq_should_notify(struct virtqueue *vq);

#endif
