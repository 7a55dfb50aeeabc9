#include "devices/virtqueue.h"
#include "kvm/dirty.h"
#include "kvm/vm.h"

#include <errno.h>
#include <string.h>

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

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

/* A segment's bytes count towards the chain's, which must stay below 4 GiB:
 * virtio 1.x §2.7.5.2 forbids chains over 2^32 bytes, and the bytes a
 * device writes must fit used.len (a uint32). */
static int vq_add_seg(struct vq_elem *e, const struct vring_desc *d, struct vm *vm,
		      uint64_t *bytes)
{
	*bytes += d->len;
	if (*bytes > UINT32_MAX)
		return -E2BIG;
	void *p = vm_gpa_to_hva(vm, d->addr, d->len);
	if (!p)
		return -EFAULT;
	if (d->flags & VRING_DESC_F_WRITE) {
		if (e->nin == VQ_MAX_SEGS)
			return -E2BIG;
		/* The device writes here before the request is answered, all
		 * in this I/O thread step: marked now, it is in the next
		 * snapshot's changed pages (kvm/dirty.h). */
		vm_dirty_mark(vm, p, d->len);
		e->in[e->nin++] = (struct iovec){p, d->len};
	} else {
		/* Device-readable segments must all come first. */
		if (e->nin || e->nout == VQ_MAX_SEGS)
			return -EINVAL;
		e->out[e->nout++] = (struct iovec){p, d->len};
	}
	return 0;
}

/* Walk a chain in TABLE (NUM entries) starting at IDX.  A chain visits
 * each entry at most once, so more than NUM steps is a loop. */
static int vq_walk(struct virtqueue *vq, const struct vring_desc *table, uint32_t num,
		   uint16_t idx, struct vq_elem *e, bool indirect_ok, uint64_t *bytes)
{
	for (uint32_t steps = 0;; steps++) {
		if (idx >= num || steps >= num)
			return -EINVAL; /* out of range, or a loop */
		struct vring_desc d;
		memcpy(&d, &table[idx], sizeof(d));
		if (d.flags & VRING_DESC_F_INDIRECT) {
			/* §2.7.5.3: only when negotiated, one level, never with
			 * NEXT, whole entries, at most the queue size of them. */
			if (!indirect_ok || !vq->indirect || (d.flags & VRING_DESC_F_NEXT) ||
			    (d.len % sizeof(d)) || !d.len || d.len / sizeof(d) > vq->size)
				return -EINVAL;
			const struct vring_desc *it = vm_gpa_to_hva(vq->vm, d.addr, d.len);
			if (!it)
				return -EFAULT;
			return vq_walk(vq, it, d.len / (uint32_t)sizeof(d), 0, e, false, bytes);
		}
		int r = vq_add_seg(e, &d, vq->vm, bytes);
		if (r < 0)
			return r;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
	}
}

int vq_pop(struct virtqueue *vq, struct vq_elem *e)
{
	if (!vq->ready)
		return 0;
	uint16_t *avail_idx = vm_gpa_to_hva(vq->vm, vq->avail_gpa + 2, 2);
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
	/* A used ring outside RAM would leave every request unanswered. */
	if (!ring || !table || !vm_gpa_to_hva(vq->vm, vq->used_gpa, 4 + 8u * vq->size))
		return -EFAULT;
	uint16_t head = __atomic_load_n(&ring[vq->last_avail % vq->size], __ATOMIC_ACQUIRE);
	if (head >= vq->size)
		return -ERANGE; /* no chain to return in the used ring */
	vq->last_avail++;
	e->head = head;
	e->nin = e->nout = 0;
	uint64_t bytes = 0;
	return vq_walk(vq, table, vq->size, head, e, true, &bytes) < 0 ? -EBADMSG : 1;
}

uint8_t *vq_bad_chain_status(struct virtqueue *vq, uint16_t head)
{
	const struct vring_desc *table =
		vm_gpa_to_hva(vq->vm, vq->desc_gpa, (uint64_t)vq->size * sizeof(*table));
	if (!table)
		return NULL;
	uint16_t idx = head;
	for (uint32_t steps = 0; idx < vq->size && steps < vq->size; steps++) {
		struct vring_desc d;
		memcpy(&d, &table[idx], sizeof(d));
		if (d.flags & VRING_DESC_F_NEXT) {
			idx = d.next;
			continue;
		}
		if ((d.flags & (VRING_DESC_F_WRITE | VRING_DESC_F_INDIRECT)) != VRING_DESC_F_WRITE ||
		    !d.len)
			return NULL;
		uint8_t *p = vm_gpa_to_hva(vq->vm, d.addr, d.len);
		vm_dirty_mark(vq->vm, p ? p + d.len - 1 : NULL, 1); /* the caller writes it */
		return p ? p + d.len - 1 : NULL;
	}
	return NULL;
}

void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	uint8_t *used = vm_gpa_to_hva(vq->vm, vq->used_gpa, 4 + 8u * vq->size);
	if (!used)
		return;
	uint32_t elem[2] = {head, len};
	vm_dirty_mark(vq->vm, used, 4 + 8u * vq->size);
	memcpy(used + 4 + 8u * (vq->used_idx % vq->size), elem, 8);
	vq->used_idx++;
	/* The entry must be visible before the index that publishes it. */
	__atomic_store_n((uint16_t *)(used + 2), vq->used_idx, __ATOMIC_RELEASE);
}

void vq_push_many(struct virtqueue *vq, const uint32_t (*elems)[2], unsigned n)
{
	uint8_t *used = vm_gpa_to_hva(vq->vm, vq->used_gpa, 4 + 8u * vq->size);
	if (!used || !n)
		return;
	vm_dirty_mark(vq->vm, used, 4 + 8u * vq->size);
	for (unsigned i = 0; i < n; i++) {
		memcpy(used + 4 + 8u * (vq->used_idx % vq->size), elems[i], 8);
		vq->used_idx++;
	}
	__atomic_store_n((uint16_t *)(used + 2), vq->used_idx, __ATOMIC_RELEASE);
}

bool vq_should_notify(struct virtqueue *vq)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t *flags = vm_gpa_to_hva(vq->vm, vq->avail_gpa, 2);
	return !flags || !(__atomic_load_n(flags, __ATOMIC_ACQUIRE) & VRING_AVAIL_F_NO_INTERRUPT);
}

void vq_set_notify(struct virtqueue *vq, bool on)
{
	uint16_t *flags = vq->ready ? vm_gpa_to_hva(vq->vm, vq->used_gpa, 2) : NULL;
	if (!flags)
		return;
	vm_dirty_mark(vq->vm, flags, 2);
	__atomic_store_n(flags, on ? 0 : VRING_USED_F_NO_NOTIFY, __ATOMIC_RELEASE);
	/* the flag before the next look at the available index */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool vq_pending(struct virtqueue *vq)
{
	uint16_t *avail_idx = vq->ready ? vm_gpa_to_hva(vq->vm, vq->avail_gpa + 2, 2) : NULL;
	return avail_idx && __atomic_load_n(avail_idx, __ATOMIC_ACQUIRE) != vq->last_avail;
}
