#include "devices/virtqueue.h"
#include "kvm/vm.h"

#include <errno.h>
#include <string.h>

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

void vq_reset(struct virtqueue *vq)
{
	struct vm *vm = vq->vm;
	memset(vq, 0, sizeof(*vq));
	vq->vm = vm;
	vq->size = VQ_MAX_SIZE;
	vq->msix_vector = 0xffff;
}

static uint16_t *vq_avail_idx(struct virtqueue *vq)
{
	return vm_gpa_to_hva(vq->vm, vq->avail_gpa + 2, 2);
}

static int vq_add_seg(struct vq_elem *e, const struct vring_desc *d, struct vm *vm)
{
	void *p = vm_gpa_to_hva(vm, d->addr, d->len);
	if (!p)
		return -EFAULT;
	if (d->flags & VRING_DESC_F_WRITE) {
		if (e->nin == VQ_MAX_SEGS)
			return -E2BIG;
		e->in[e->nin++] = (struct iovec){p, d->len};
	} else {
		/* Device-readable segments must all come first. */
		if (e->nin || e->nout == VQ_MAX_SEGS)
			return -EINVAL;
		e->out[e->nout++] = (struct iovec){p, d->len};
	}
	return 0;
}

/* Walk a chain in TABLE (NUM entries) starting at IDX. */
static int vq_walk(struct virtqueue *vq, const struct vring_desc *table, uint32_t num,
		   uint16_t idx, struct vq_elem *e, bool indirect_ok)
{
	for (uint32_t steps = 0;; steps++) {
		if (idx >= num || steps >= num)
			return -EINVAL; /* out of range, or a loop */
		struct vring_desc d;
		memcpy(&d, &table[idx], sizeof(d));
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (!indirect_ok || (d.len % sizeof(d)) || !d.len)
				return -EINVAL;
			const struct vring_desc *it = vm_gpa_to_hva(vq->vm, d.addr, d.len);
			if (!it)
				return -EFAULT;
			int r = vq_walk(vq, it, d.len / (uint32_t)sizeof(d), 0, e, false);
			if (r < 0)
				return r;
		} else {
			int r = vq_add_seg(e, &d, vq->vm);
			if (r < 0)
				return r;
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
	}
}

int vq_pop(struct virtqueue *vq, struct vq_elem *e)
{
	if (!vq->ready)
		return 0;
	uint16_t *avail_idx = vq_avail_idx(vq);
	if (!avail_idx)
		return -EFAULT;
	uint16_t avail = __atomic_load_n(avail_idx, __ATOMIC_ACQUIRE);
	if (avail == vq->last_avail)
		return 0;
	if ((uint16_t)(avail - vq->last_avail) > vq->size)
		return -EINVAL;
	uint16_t *ring = vm_gpa_to_hva(vq->vm, vq->avail_gpa + 4, 2u * vq->size);
	const struct vring_desc *table =
		vm_gpa_to_hva(vq->vm, vq->desc_gpa, (uint64_t)vq->size * sizeof(*table));
	if (!ring || !table)
		return -EFAULT;
	uint16_t head = __atomic_load_n(&ring[vq->last_avail % vq->size], __ATOMIC_ACQUIRE);
	vq->last_avail++;
	e->head = head;
	e->nin = e->nout = 0;
	int r = vq_walk(vq, table, vq->size, head, e, true);
	return r < 0 ? r : 1;
}

void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	uint8_t *used = vm_gpa_to_hva(vq->vm, vq->used_gpa, 4 + 8u * vq->size);
	if (!used)
		return;
	uint32_t elem[2] = {head, len};
	memcpy(used + 4 + 8u * (vq->used_idx % vq->size), elem, 8);
	vq->used_idx++;
	/* The entry must be visible before the index that publishes it. */
	__atomic_store_n((uint16_t *)(used + 2), vq->used_idx, __ATOMIC_RELEASE);
}

bool vq_should_notify(struct virtqueue *vq)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t *flags = vm_gpa_to_hva(vq->vm, vq->avail_gpa, 2);
	return !flags || !(__atomic_load_n(flags, __ATOMIC_ACQUIRE) & VRING_AVAIL_F_NO_INTERRUPT);
}
