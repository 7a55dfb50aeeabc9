/* What every device provides to the VM: a name and its life-cycle ops.
 * I/O handlers are registered on the buses by the device itself; the VM
 * core and the snapshot code only walk the device list. */
#ifndef CAIRN_DEVICES_DEVICE_H
#define CAIRN_DEVICES_DEVICE_H

#include "devices/serial.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"

#include <stdbool.h>

struct vm;
struct state_buf;

struct device_ops {
	const char *name;
	/* One function for both directions (sb->restoring says which): the
	 * fields are listed once with STATE_FIELD, so save and restore cannot
	 * drift apart.  After a restore the device re-applies what lives
	 * outside it (IRQ lines, BAR mappings).  NULL: no state. */
	int (*snapshot)(void *priv, struct state_buf *sb);
	/* Devices backed by a disk image: the image in use, and switching to
	 * another (a snapshot freezes the image and puts an overlay on it).
	 * Called from the I/O thread with the VM paused. */
	struct block_dev *(*get_block)(void *priv);
	void (*set_block)(void *priv, struct block_dev *bd);
	/* After machine state and guest memory came from a snapshot (a new
	 * process restoring, an in-place revert), before the vCPUs run again:
	 * what must differ from the snapshot's machine (vmgenid's new ID).
	 * NULL: nothing. */
	void (*restored)(void *priv);
	void (*destroy)(void *priv);
};

struct device {
	const struct device_ops *ops;
	void *priv;
	struct device *next;
};

/* Append a device to VM's list (devices are destroyed in reverse order). */
int device_add(struct vm *vm, const struct device_ops *ops, void *priv);
/* The private data of VM's first device with OPS, or NULL: how a device
 * finds a device it depends on (PCI devices, their host bridge). */
void *device_find(struct vm *vm, const struct device_ops *ops);
/* What the devices are built from, in their own terms (the VMM translates
 * its configuration into this). */
struct devices_config {
	struct serial_console console;
	const struct virtio_blk_disk *disks; /* one virtio-blk device each */
	int ndisks;
	const struct virtio_net_nic *nics; /* one virtio-net device each */
	int nnics;
	bool rng;     /* a virtio-rng device */
	bool vmgenid; /* the VM generation ID (and its ACPI device) */
};

/* Create every device CFG asks for, in the order of the init list. */
int devices_init(struct vm *vm, const struct devices_config *cfg);
void devices_destroy(struct vm *vm);

#endif
