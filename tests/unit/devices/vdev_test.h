/* What the device unit tests share: the split-ring descriptor as a driver
 * writes it, a fake VM on one RAM slot (no KVM), BAR0 accesses, a device state's
 * save-and-restore round trip.  Header only: the checks count into each
 * test's own test_failures (test.h). */
#ifndef CAIRN_VDEV_TEST_H
#define CAIRN_VDEV_TEST_H

#include "devices/device.h"
#include "devices/virtio_pci.h"
#include "kvm/iobus.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "test.h"
#include "util/evloop.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define F_NEXT 1
#define F_WRITE 2

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* vm without KVM (kvm_fd and vm_fd -1), with its own loop and one RAM slot
 * at GPA 0: ram's size bytes. */
static inline void vdev_test_vm_init(struct vm *vm, uint8_t *ram, size_t size)
{
	vm->kvm_fd = vm->vm_fd = -1;
	iobus_init(&vm->pio, "pio");
	iobus_init(&vm->mmio, "mmio");
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	CHECK_EQ(evloop_create(&vm->loop), 0);
	vm->slots[0] = (struct vm_mem_slot){0, 0, size, ram};
	vm->nslots = 1;
	vm->ram = ram;
	vm->ram_size = size;
}

/* A driver's access to vp's BAR0 (checked: something answers). */
static inline void vdev_bar_write(struct vm *vm, struct virtio_pci *vp, uint64_t off, uint32_t v,
				  unsigned len)
{
	CHECK(iobus_dispatch(&vm->mmio, vp->pci.bars[0].addr + off, &v, len, true));
}

static inline uint32_t vdev_bar_read(struct vm *vm, struct virtio_pci *vp, uint64_t off,
				     unsigned len)
{
	uint32_t v = 0;
	CHECK(iobus_dispatch(&vm->mmio, vp->pci.bars[0].addr + off, &v, len, false));
	return v;
}

/* d's state saved into *sb (the caller releases it) and restored from it
 * at once, record name; both succeed. */
static inline void vdev_test_roundtrip(struct device *d, const char *name, struct state_buf *sb)
{
	state_buf_init_save(sb, name);
	CHECK_EQ(d->ops->snapshot(d->priv, sb), 0);
	struct state_buf rb;
	state_buf_init_restore(&rb, sb->p, sb->off, name);
	CHECK_EQ(d->ops->snapshot(d->priv, &rb), 0);
	CHECK_EQ(state_buf_finish(&rb), 0);
}

#endif
