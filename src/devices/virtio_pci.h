/* The virtio 1.x PCI transport (modern only): common, notify, ISR and
 * device configuration structures in BAR0, MSI-X with an INTx fallback,
 * ioeventfd notifications served by the I/O thread. */
#ifndef CAIRN_DEVICES_VIRTIO_PCI_H
#define CAIRN_DEVICES_VIRTIO_PCI_H

#include "devices/msix.h"
#include "devices/pci.h"
#include "devices/virtqueue.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_MAX_QUEUES 8
#define VIRTIO_F_VERSION_1 (1ULL << 32)

struct virtio_device_ops {
	const char *name;
	uint16_t device_id;  /* virtio device type (2: block) */
	uint32_t class_code; /* PCI class */
	unsigned nqueues;
	uint64_t features;   /* offered, besides VIRTIO_F_VERSION_1 */
	unsigned config_size;
	/* Device configuration space (OFF < config_size). */
	void (*config_read)(void *dev, uint64_t off, void *data, unsigned len);
	/* The driver kicked queue Q: runs in the I/O thread, transport lock held. */
	void (*queue_notify)(void *dev, unsigned q);
	/* The driver reset the device (status 0). */
	void (*reset)(void *dev);
};

struct virtio_pci {
	struct pci_dev pci;
	struct msix msix;
	const struct virtio_device_ops *ops;
	void *dev;
	struct vm *vm;
	pthread_mutex_t lock;
	uint32_t dev_feature_sel, drv_feature_sel;
	uint64_t driver_features;
	uint8_t status, config_gen, isr;
	uint16_t queue_sel, msix_config;
	unsigned failures; /* times the driver broke the protocol (for the log) */
	struct virtqueue vqs[VIRTIO_MAX_QUEUES];
	int kick_fd[VIRTIO_MAX_QUEUES];
	struct virtio_kick {
		struct virtio_pci *vp;
		unsigned q;
	} kick[VIRTIO_MAX_QUEUES];
};

int virtio_pci_init(struct virtio_pci *vp, struct vm *vm, const struct virtio_device_ops *ops,
		    void *dev);
void virtio_pci_destroy(struct virtio_pci *vp);
/* Interrupt the driver for queue Q (used ring updated). Transport lock held. */
void virtio_pci_queue_interrupt(struct virtio_pci *vp, unsigned q);
/* Save or restore the transport: PCI config, features, status, queues
 * (addresses and ring indices) and MSI-X; interrupts are re-raised. */
struct state_buf;
int virtio_pci_snapshot(struct virtio_pci *vp, struct state_buf *sb);
/* The device configuration changed (config generation, configuration-change
 * interrupt). Transport lock held. */
void virtio_pci_config_changed(struct virtio_pci *vp);
/* The device failed (the driver broke the protocol): DEVICE_NEEDS_RESET. */
void virtio_pci_set_failed(struct virtio_pci *vp);
/* A request the driver got wrong, counted in *COUNT: a warning the first
 * VIRTIO_BAD_WARNED times, then at debug level (a guest can do it in a
 * loop).  FMT names the device and the fault. */
#define VIRTIO_BAD_WARNED 3
void virtio_log_bad(uint64_t *count, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The next chain the driver posted on VQ into E, as a device's request
 * loop takes them: 1 a chain, -EBADMSG a malformed one (to be refused: its
 * head is in E), 0 none left.  A broken ring fails the device (0 then).
 * *BUDGET (set to the queue's size before the loop) bounds one loop: a
 * driver never has more chains posted than that, and a device buffer the
 * guest placed over its own avail ring must not keep the loop going (the
 * rest waits for the next notification). */
int virtio_pci_pop(struct virtio_pci *vp, struct virtqueue *vq, struct vq_elem *e,
		   unsigned *budget);

#endif
