#include "devices/virtio_pci.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* BAR0 layout. */
#define VP_BAR_SIZE 0x8000
#define VP_COMMON_OFF 0x0000
#define VP_COMMON_LEN 0x0038
#define VP_ISR_OFF 0x1000
#define VP_DEVICE_OFF 0x2000
#define VP_DEVICE_LEN 0x1000
#define VP_NOTIFY_OFF 0x3000
#define VP_NOTIFY_MULT 4
#define VP_MSIX_TABLE_OFF 0x4000
#define VP_MSIX_PBA_OFF 0x5000

#define PCI_CAP_ID_VNDR 0x09
#define VIRTIO_PCI_CAP_COMMON 1
#define VIRTIO_PCI_CAP_NOTIFY 2
#define VIRTIO_PCI_CAP_ISR 3
#define VIRTIO_PCI_CAP_DEVICE 4

#define STATUS_FEATURES_OK 8
#define VIRTIO_F_INDIRECT_DESC (1ULL << 28)
#define STATUS_NEEDS_RESET 64
#define NO_VECTOR 0xffff

static void vp_reset(struct virtio_pci *vp)
{
	vp->status = 0;
	vp->driver_features = 0;
	vp->dev_feature_sel = vp->drv_feature_sel = 0;
	vp->queue_sel = 0;
	vp->msix_config = NO_VECTOR;
	vp->isr = 0;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vq_reset(&vp->vqs[q]);
	pci_set_intx(&vp->pci, 0);
	if (vp->ops->reset)
		vp->ops->reset(vp->dev);
}

static void vp_interrupt(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	if (msix_enabled(&vp->msix)) {
		if (vector != NO_VECTOR)
			msix_notify(&vp->msix, vector);
		return;
	}
	vp->isr |= isr_bit;
	pci_set_intx(&vp->pci, 1);
}

void virtio_pci_queue_interrupt(struct virtio_pci *vp, unsigned q)
{
	vp_interrupt(vp, vp->vqs[q].msix_vector, 1);
}

void virtio_pci_config_changed(struct virtio_pci *vp)
{
	vp->config_gen++;
	vp_interrupt(vp, vp->msix_config, 2);
}

void virtio_pci_set_failed(struct virtio_pci *vp)
{
	if (vp->status & STATUS_NEEDS_RESET)
		return;
	/* A guest can do this in a loop: the first few are enough to see. */
	if (++vp->failures <= 3)
		log_warn("%s: the driver broke the virtio protocol; device needs a reset%s",
			 vp->ops->name,
			 vp->failures == 3 ? " (further ones logged at debug level)" : "");
	else
		log_debug("%s: the driver broke the virtio protocol; device needs a reset",
			  vp->ops->name);
	vp->status |= STATUS_NEEDS_RESET;
	vp->config_gen++;
	vp_interrupt(vp, vp->msix_config, 2);
}

void virtio_log_bad(uint64_t *count, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	++*count;
	if (*count <= VIRTIO_BAD_WARNED)
		log_warn("%s%s", msg,
			 *count == VIRTIO_BAD_WARNED ? "; further ones logged at debug level" : "");
	else
		log_debug("%s", msg);
}

int virtio_pci_pop(struct virtio_pci *vp, struct virtqueue *vq, struct vq_elem *e,
		   unsigned *budget)
{
	if (*budget == 0)
		return 0;
	--*budget;
	int r = vq_pop(vq, e);
	if (r < 0 && r != -EBADMSG) {
		virtio_pci_set_failed(vp);
		return 0;
	}
	return r;
}

static uint64_t vp_device_features(struct virtio_pci *vp)
{
	return vp->ops->features | VIRTIO_F_VERSION_1;
}

static uint32_t vp_common_read(struct virtio_pci *vp, uint64_t off)
{
	struct virtqueue *vq = vp->queue_sel < vp->ops->nqueues ? &vp->vqs[vp->queue_sel] : NULL;
	switch (off) {
	case 0x00: return vp->dev_feature_sel;
	case 0x04:
		return vp->dev_feature_sel < 2
			       ? (uint32_t)(vp_device_features(vp) >> (32 * vp->dev_feature_sel))
			       : 0;
	case 0x08: return vp->drv_feature_sel;
	case 0x0c:
		return vp->drv_feature_sel < 2
			       ? (uint32_t)(vp->driver_features >> (32 * vp->drv_feature_sel))
			       : 0;
	case 0x10: return vp->msix_config;
	case 0x12: return vp->ops->nqueues;
	case 0x14: return vp->status;
	case 0x15: return vp->config_gen;
	case 0x16: return vp->queue_sel;
	case 0x18: return vq ? vq->size : 0;
	case 0x1a: return vq ? vq->msix_vector : NO_VECTOR;
	case 0x1c: return vq ? vq->ready : 0;
	case 0x1e: return vp->queue_sel; /* queue_notify_off: one slot per queue */
	case 0x20: return vq ? (uint32_t)vq->desc_gpa : 0;
	case 0x24: return vq ? (uint32_t)(vq->desc_gpa >> 32) : 0;
	case 0x28: return vq ? (uint32_t)vq->avail_gpa : 0;
	case 0x2c: return vq ? (uint32_t)(vq->avail_gpa >> 32) : 0;
	case 0x30: return vq ? (uint32_t)vq->used_gpa : 0;
	case 0x34: return vq ? (uint32_t)(vq->used_gpa >> 32) : 0;
	}
	return 0;
}

static void set_half(uint64_t *v, bool high, uint32_t val)
{
	*v = high ? (*v & 0xffffffffULL) | (uint64_t)val << 32 : (*v & ~0xffffffffULL) | val;
}

static void vp_write_status(struct virtio_pci *vp, uint8_t v)
{
	if (v == 0) {
		vp_reset(vp);
		return;
	}
	/* FEATURES_OK only sticks when the driver accepted VERSION_1 and
	 * nothing we did not offer. */
	if ((v & STATUS_FEATURES_OK) && !(vp->status & STATUS_FEATURES_OK) &&
	    (!(vp->driver_features & VIRTIO_F_VERSION_1) ||
	     (vp->driver_features & ~vp_device_features(vp))))
		v &= (uint8_t)~STATUS_FEATURES_OK;
	/* DEVICE_NEEDS_RESET is the device's: only a reset clears it. */
	vp->status = v | (vp->status & STATUS_NEEDS_RESET);
}

static void vp_common_write(struct virtio_pci *vp, uint64_t off, uint32_t v)
{
	struct virtqueue *vq = vp->queue_sel < vp->ops->nqueues ? &vp->vqs[vp->queue_sel] : NULL;
	switch (off) {
	case 0x00: vp->dev_feature_sel = v; break;
	case 0x08: vp->drv_feature_sel = v; break;
	case 0x0c:
		if (vp->drv_feature_sel < 2 && !(vp->status & STATUS_FEATURES_OK)) {
			uint64_t f = vp->driver_features;
			set_half(&f, vp->drv_feature_sel == 1, v);
			vp->driver_features = f;
		}
		break;
	case 0x10: vp->msix_config = (uint16_t)v; break;
	case 0x14: vp_write_status(vp, (uint8_t)v); break;
	case 0x16: vp->queue_sel = (uint16_t)v; break;
	case 0x18:
		/* Split rings have power-of-two sizes up to what we offer. */
		if (vq && !vq->ready && v && v <= VQ_MAX_SIZE && !(v & (v - 1)))
			vq->size = (uint16_t)v;
		break;
	case 0x1a:
		if (vq)
			vq->msix_vector = (uint16_t)(v < vp->msix.nvec ? v : NO_VECTOR);
		break;
	case 0x1c:
		if (vq && v == 1)
			vq->ready = true;
		break;
	case 0x20: if (vq && !vq->ready) set_half(&vq->desc_gpa, false, v); break;
	case 0x24: if (vq && !vq->ready) set_half(&vq->desc_gpa, true, v); break;
	case 0x28: if (vq && !vq->ready) set_half(&vq->avail_gpa, false, v); break;
	case 0x2c: if (vq && !vq->ready) set_half(&vq->avail_gpa, true, v); break;
	case 0x30: if (vq && !vq->ready) set_half(&vq->used_gpa, false, v); break;
	case 0x34: if (vq && !vq->ready) set_half(&vq->used_gpa, true, v); break;
	}
}

static void vp_process_queue(struct virtio_pci *vp, unsigned q)
{
	if (q >= vp->ops->nqueues || !vp->vqs[q].ready || (vp->status & STATUS_NEEDS_RESET))
		return;
	/* Derived here rather than stored, so a restored queue has it too. */
	vp->vqs[q].indirect = vp->driver_features & VIRTIO_F_INDIRECT_DESC;
	vp->ops->queue_notify(vp->dev, q);
}

static void vp_bar_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct virtio_pci *vp = opaque;
	memset(data, 0, len);
	if (off >= VP_MSIX_TABLE_OFF && off < VP_MSIX_PBA_OFF) {
		msix_table_read(&vp->msix, off - VP_MSIX_TABLE_OFF, data, len);
		return;
	}
	if (off >= VP_MSIX_PBA_OFF) {
		msix_pba_read(&vp->msix, off - VP_MSIX_PBA_OFF, data, len);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	if (off < VP_COMMON_LEN) {
		uint32_t v = vp_common_read(vp, off);
		memcpy(data, &v, len > 4 ? 4 : len);
	} else if (off == VP_ISR_OFF) {
		*(uint8_t *)data = vp->isr;
		vp->isr = 0; /* reading ISR acknowledges the interrupt */
		pci_set_intx(&vp->pci, 0);
	} else if (off >= VP_DEVICE_OFF && off < VP_DEVICE_OFF + vp->ops->config_size &&
		   off + len <= VP_DEVICE_OFF + vp->ops->config_size) {
		vp->ops->config_read(vp->dev, off - VP_DEVICE_OFF, data, len);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void vp_bar_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct virtio_pci *vp = opaque;
	if (off >= VP_MSIX_TABLE_OFF && off < VP_MSIX_PBA_OFF) {
		msix_table_write(&vp->msix, off - VP_MSIX_TABLE_OFF, data, len);
		return;
	}
	uint32_t v = 0;
	memcpy(&v, data, len > 4 ? 4 : len);
	if (off >= VP_NOTIFY_OFF && off < VP_NOTIFY_OFF + VP_NOTIFY_MULT * VIRTIO_MAX_QUEUES) {
		/* Reached only when no ioeventfd caught it (a write of another
		 * size).  The queue is served in the I/O thread all the same: a
		 * snapshot relies on no request being served while it runs there. */
		unsigned q = (unsigned)(off - VP_NOTIFY_OFF) / VP_NOTIFY_MULT;
		uint64_t one = 1;
		if (q < vp->ops->nqueues && write(vp->kick_fd[q], &one, sizeof(one)) < 0)
			log_warn("%s: queue %u notification lost: %s", vp->ops->name, q,
				 strerror(errno));
		return;
	}
	pthread_mutex_lock(&vp->lock);
	if (off < VP_COMMON_LEN)
		vp_common_write(vp, off, v);
	pthread_mutex_unlock(&vp->lock);
}

static const struct io_ops vp_bar_io = {vp_bar_read, vp_bar_write};

static void vp_kick(void *opaque, uint32_t events)
{
	struct virtio_kick *k = opaque;
	struct virtio_pci *vp = k->vp;
	uint64_t n;
	ssize_t r = read(vp->kick_fd[k->q], &n, sizeof(n));
	(void)r;
	pthread_mutex_lock(&vp->lock);
	vp_process_queue(vp, k->q);
	pthread_mutex_unlock(&vp->lock);
}

/* Notifications follow BAR0: the ioeventfds move with it. */
static void vp_bar_moved(struct pci_dev *pci, int bar, uint64_t old, uint64_t new)
{
	struct virtio_pci *vp = pci->opaque;
	for (unsigned q = 0; q < vp->ops->nqueues; q++) {
		uint64_t off = VP_NOTIFY_OFF + (uint64_t)q * VP_NOTIFY_MULT;
		if (old)
			vm_ioeventfd(vp->vm, vp->kick_fd[q], old + off, 2, false, false);
		if (new && vm_ioeventfd(vp->vm, vp->kick_fd[q], new + off, 2, false, true) < 0)
			log_warn("%s: %s; queue %u notifications will trap", vp->ops->name,
				 err_msg(), q);
	}
	(void)bar;
}

static void vp_cfg_written(struct pci_dev *pci, unsigned off, unsigned len)
{
	struct virtio_pci *vp = pci->opaque;
	unsigned ctrl = (unsigned)vp->msix.cap_off + 2;
	if (off <= ctrl + 1 && off + len > ctrl)
		msix_control_written(&vp->msix);
}

static int vp_add_cap(struct virtio_pci *vp, uint8_t type, uint32_t off, uint32_t len,
		      bool notify)
{
	uint8_t body[18] = {0};
	body[0] = notify ? 16 + 4 : 16; /* cap_len */
	body[1] = type;
	body[2] = 0; /* BAR0 */
	memcpy(body + 6, &off, 4);
	memcpy(body + 10, &len, 4);
	uint32_t mult = VP_NOTIFY_MULT;
	if (notify)
		memcpy(body + 14, &mult, 4);
	int r = pci_add_cap(&vp->pci, PCI_CAP_ID_VNDR, body, NULL, notify ? 18 : 14);
	return r < 0 ? err_set(-r, "%s: PCI capability", vp->ops->name) : 0;
}

int virtio_pci_init(struct virtio_pci *vp, struct vm *vm, const struct virtio_device_ops *ops,
		    void *dev)
{
	memset(vp, 0, sizeof(*vp));
	vp->ops = ops;
	vp->dev = dev;
	vp->vm = vm;
	pthread_mutex_init(&vp->lock, NULL);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		vp->vqs[q].vm = vm;
		vp->kick_fd[q] = -1;
	}
	struct pci_dev *pci = &vp->pci;
	pci_dev_init(pci, 0x1af4, (uint16_t)(0x1040 + ops->device_id), ops->class_code, 1,
		     0x1af4, 0x40);
	pci->opaque = vp;
	pci->vm = vm;
	pci->cfg_written = vp_cfg_written;
	pci->bars[0] = (struct pci_bar){.size = VP_BAR_SIZE, .ops = &vp_bar_io, .opaque = vp,
					.moved = vp_bar_moved};
	int r;
	if ((r = vp_add_cap(vp, VIRTIO_PCI_CAP_COMMON, VP_COMMON_OFF, VP_COMMON_LEN, false)) < 0 ||
	    (r = vp_add_cap(vp, VIRTIO_PCI_CAP_ISR, VP_ISR_OFF, 1, false)) < 0 ||
	    (r = vp_add_cap(vp, VIRTIO_PCI_CAP_DEVICE, VP_DEVICE_OFF, ops->config_size, false)) < 0 ||
	    (r = vp_add_cap(vp, VIRTIO_PCI_CAP_NOTIFY, VP_NOTIFY_OFF,
			    VP_NOTIFY_MULT * ops->nqueues, true)) < 0)
		return r;
	/* One vector per queue plus one for configuration changes. */
	if ((r = msix_init(&vp->msix, pci, ops->nqueues + 1, 0, VP_MSIX_TABLE_OFF,
			   VP_MSIX_PBA_OFF)) < 0)
		return r;
	for (unsigned q = 0; q < ops->nqueues; q++) {
		vp->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->kick_fd[q] < 0)
			return err_set(errno, "%s: eventfd", ops->name);
		vp->kick[q] = (struct virtio_kick){vp, q};
		if ((r = evloop_add(vm->loop, vp->kick_fd[q], EPOLLIN, vp_kick, &vp->kick[q])) < 0)
			return err_set(-r, "%s: event loop", ops->name);
	}
	vp_reset(vp);
	return pci_register(vm, pci);
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		if (vp->kick_fd[q] >= 0) {
			evloop_del(vp->vm->loop, vp->kick_fd[q]);
			close(vp->kick_fd[q]);
		}
	msix_destroy(&vp->msix);
	pthread_mutex_destroy(&vp->lock);
}

int virtio_pci_snapshot(struct virtio_pci *vp, struct state_buf *sb)
{
	int r = pci_dev_snapshot(&vp->pci, sb);
	if (r < 0)
		return r;
	pthread_mutex_lock(&vp->lock);
	STATE_FIELD(sb, vp->dev_feature_sel);
	STATE_FIELD(sb, vp->drv_feature_sel);
	STATE_FIELD(sb, vp->driver_features);
	STATE_FIELD(sb, vp->status);
	STATE_FIELD(sb, vp->config_gen);
	STATE_FIELD(sb, vp->isr);
	STATE_FIELD(sb, vp->queue_sel);
	STATE_FIELD(sb, vp->msix_config);
	for (unsigned q = 0; q < vp->ops->nqueues; q++) {
		struct virtqueue *vq = &vp->vqs[q];
		STATE_FIELD(sb, vq->size);
		STATE_FIELD(sb, vq->ready);
		STATE_FIELD(sb, vq->desc_gpa);
		STATE_FIELD(sb, vq->avail_gpa);
		STATE_FIELD(sb, vq->used_gpa);
		STATE_FIELD(sb, vq->last_avail);
		STATE_FIELD(sb, vq->used_idx);
		STATE_FIELD(sb, vq->msix_vector);
		if (sb->restoring && !sb->err &&
		    (!vq->size || vq->size > VQ_MAX_SIZE || (vq->size & (vq->size - 1))))
			sb->err =
			    err_set(EINVAL, "%s: queue %u of size %u (a power of two up to %u)",
				    sb->what, q, vq->size, VQ_MAX_SIZE);
	}
	if (sb->restoring && !sb->err && vp->isr && !msix_enabled(&vp->msix))
		pci_set_intx(&vp->pci, 1);
	/* A kick still unread in its ioeventfd when the snapshot was taken is in
	 * no state: the guest would wait forever for that request.  So every
	 * ready queue is kicked once; the I/O thread looks at it when the VM
	 * runs again (an empty queue costs one read of its avail index). */
	for (unsigned q = 0; sb->restoring && !sb->err && q < vp->ops->nqueues; q++) {
		uint64_t one = 1;
		if (vp->vqs[q].ready && vp->kick_fd[q] >= 0 &&
		    write(vp->kick_fd[q], &one, sizeof(one)) < 0)
			sb->err = err_set(errno, "%s: kicking queue %u after the restore",
					  vp->ops->name, q);
	}
	pthread_mutex_unlock(&vp->lock);
	return sb->err ? sb->err : msix_snapshot(&vp->msix, sb);
}
