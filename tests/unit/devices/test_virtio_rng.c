/* virtio-rng on a fake guest (one RAM slot, no KVM), driven through its
 * BAR0 as a driver would: buffers are filled with random bytes (each
 * request's differ), chains of several buffers are filled whole, a request
 * is capped at VIRTIO_RNG_MAX_REQUEST, refused chains get nothing written,
 * a broken ring fails the device; the state round-trips.  And the VM
 * generation ID device on the same fake guest: a new ID in RAM at init and
 * on every `restored` call, its saved state checked on restore. */
#include "arch/x86/layout.h"
#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtio_pci.h"
#include "devices/virtio_rng.h"
#include "devices/vmgenid.h"
#include "kvm/iobus.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "test.h"
#include "util/evloop.h"
#include "util/log.h"
#include "vdev_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RAM (1u << 20)
#define QSIZE 16
#define DESC 0x1000u
#define AVAIL 0x2000u
#define USED 0x3000u
#define BUF 0x10000u
#define NEEDS_RESET 0x40

static uint8_t *ram;
static struct vm vm;
static struct virtio_pci *vp;
static uint16_t avail_idx;

#define bar_write(off, v, len) vdev_bar_write(&vm, vp, off, v, len)
#define bar_read(off, len) vdev_bar_read(&vm, vp, off, len)

static struct desc *desc(unsigned i)
{
	return (struct desc *)(ram + DESC) + i;
}

static uint16_t used_idx(void)
{
	return *(uint16_t *)(ram + USED + 2);
}

static uint32_t used_len(uint16_t i)
{
	return *(uint32_t *)(ram + USED + 4 + 8 * (i % QSIZE) + 4);
}

/* Post chain HEAD and kick as the I/O thread would; the used length. */
static uint32_t request(uint16_t head)
{
	uint16_t *ring = (uint16_t *)(ram + AVAIL + 4);
	ring[avail_idx % QSIZE] = head;
	avail_idx++;
	*(uint16_t *)(ram + AVAIL + 2) = avail_idx;
	uint16_t before = used_idx();
	pthread_mutex_lock(&vp->lock);
	vp->ops->queue_notify(vp->dev, 0);
	pthread_mutex_unlock(&vp->lock);
	CHECK_EQ(used_idx(), (uint16_t)(before + 1));
	return used_len(before);
}

static void driver_setup(void)
{
	memset(ram, 0, RAM);
	avail_idx = 0;
	bar_write(0x14, 0, 1);
	bar_write(0x14, 1 | 2, 1);
	bar_write(0x08, 1, 4);
	bar_write(0x0c, 1, 4); /* VERSION_1 */
	bar_write(0x14, 1 | 2 | 8, 1);
	CHECK(bar_read(0x14, 1) & 8);
	bar_write(0x16, 0, 2);
	bar_write(0x18, QSIZE, 2);
	bar_write(0x20, DESC, 4);
	bar_write(0x28, AVAIL, 4);
	bar_write(0x30, USED, 4);
	bar_write(0x1c, 1, 2);
	bar_write(0x14, 1 | 2 | 4 | 8, 1);
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void test_fill(void)
{
	driver_setup();
	*desc(0) = (struct desc){BUF, 64, F_WRITE, 0};
	CHECK_EQ(request(0), 64);
	CHECK(!all_zero(ram + BUF, 64));
	uint8_t first[64];
	memcpy(first, ram + BUF, 64);
	CHECK_EQ(request(0), 64);
	CHECK(memcmp(first, ram + BUF, 64) != 0);
	CHECK(all_zero(ram + BUF + 64, 64)); /* not a byte past the buffer */

	/* a chain of three buffers, one of them empty: all filled */
	*desc(1) = (struct desc){BUF + 0x1000, 100, F_WRITE | F_NEXT, 2};
	*desc(2) = (struct desc){BUF + 0x2000, 0, F_WRITE | F_NEXT, 3};
	*desc(3) = (struct desc){BUF + 0x3000, 300, F_WRITE, 0};
	CHECK_EQ(request(1), 400);
	CHECK(!all_zero(ram + BUF + 0x1000 + 90, 10) && !all_zero(ram + BUF + 0x3000 + 290, 10));
	CHECK(all_zero(ram + BUF + 0x1000 + 100, 16) && all_zero(ram + BUF + 0x3000 + 300, 16));

	/* more than a request's cap: capped, the rest untouched */
	const uint32_t big = VIRTIO_RNG_MAX_REQUEST + 4096;
	*desc(4) = (struct desc){0x40000, big, F_WRITE, 0};
	CHECK_EQ(request(4), VIRTIO_RNG_MAX_REQUEST);
	CHECK(!all_zero(ram + 0x40000 + VIRTIO_RNG_MAX_REQUEST - 16, 16));
	CHECK(all_zero(ram + 0x40000 + VIRTIO_RNG_MAX_REQUEST, 4096));
	CHECK(!(bar_read(0x14, 1) & NEEDS_RESET));
}

static void test_refused(void)
{
	driver_setup();
	/* a device-readable buffer: completed with nothing written */
	*desc(0) = (struct desc){BUF, 64, 0, 0};
	CHECK_EQ(request(0), 0);
	CHECK(all_zero(ram + BUF, 64));
	/* readable then writable: refused whole */
	*desc(1) = (struct desc){BUF + 0x100, 16, F_NEXT, 2};
	*desc(2) = (struct desc){BUF + 0x200, 16, F_WRITE, 0};
	CHECK_EQ(request(1), 0);
	CHECK(all_zero(ram + BUF + 0x200, 16));
	/* a buffer that leaves guest RAM, and a chain that loops */
	*desc(3) = (struct desc){RAM - 8, 64, F_WRITE, 0};
	CHECK_EQ(request(3), 0);
	CHECK(all_zero(ram + RAM - 8, 8));
	*desc(4) = (struct desc){BUF, 8, F_WRITE | F_NEXT, 5};
	*desc(5) = (struct desc){BUF + 8, 8, F_WRITE | F_NEXT, 4};
	CHECK_EQ(request(4), 0);
	CHECK(all_zero(ram + BUF, 16));
	CHECK(!(bar_read(0x14, 1) & NEEDS_RESET));
	/* then a good request still works */
	*desc(6) = (struct desc){BUF, 32, F_WRITE, 0};
	CHECK_EQ(request(6), 32);
	/* an avail index far ahead of the ring: the device needs a reset */
	*(uint16_t *)(ram + AVAIL + 2) = (uint16_t)(avail_idx + QSIZE + 5);
	pthread_mutex_lock(&vp->lock);
	vp->ops->queue_notify(vp->dev, 0);
	pthread_mutex_unlock(&vp->lock);
	CHECK(bar_read(0x14, 1) & NEEDS_RESET);
}

static struct device *find_dev(const char *name)
{
	for (struct device *d = vm.devices; d; d = d->next)
		if (!strcmp(d->ops->name, name))
			return d;
	return NULL;
}

/* The transport's state round-trips: a restored device serves the queue
 * from the saved indices. */
static void test_snapshot(struct device *d)
{
	driver_setup();
	*desc(0) = (struct desc){BUF, 32, F_WRITE, 0};
	CHECK_EQ(request(0), 32);
	struct state_buf sb;
	state_buf_init_save(&sb, "virtio-rng");
	CHECK_EQ(d->ops->snapshot(d->priv, &sb), 0);
	bar_write(0x14, 0, 1); /* reset: queue gone */
	struct state_buf rb;
	state_buf_init_restore(&rb, sb.p, sb.off, "virtio-rng");
	CHECK_EQ(d->ops->snapshot(d->priv, &rb), 0);
	CHECK_EQ(state_buf_finish(&rb), 0);
	CHECK(bar_read(0x14, 1) & 4); /* DRIVER_OK again */
	CHECK_EQ(request(0), 32);
	/* a truncated record is refused */
	state_buf_init_restore(&rb, sb.p, sb.off / 2, "virtio-rng");
	CHECK(d->ops->snapshot(d->priv, &rb) < 0 || state_buf_finish(&rb) < 0);
	state_buf_release(&sb);
}

static void test_vmgenid(void)
{
	struct devices_config cfg = {.vmgenid = true};
	CHECK_EQ(vmgenid_init(&vm, &cfg), 0);
	struct device *d = find_dev("vmgenid");
	CHECK(d && d->ops->restored);
	if (!d)
		return;
	uint8_t *id = ram + VMGENID_ADDR, seen[3][VMGENID_LEN];
	CHECK(!all_zero(id, VMGENID_LEN));
	memcpy(seen[0], id, VMGENID_LEN);
	d->ops->restored(d->priv); /* no KVM: the notification fails, the ID is new */
	memcpy(seen[1], id, VMGENID_LEN);
	d->ops->restored(d->priv);
	memcpy(seen[2], id, VMGENID_LEN);
	CHECK(memcmp(seen[0], seen[1], VMGENID_LEN) && memcmp(seen[1], seen[2], VMGENID_LEN) &&
	      memcmp(seen[0], seen[2], VMGENID_LEN));
	CHECK(all_zero(id + VMGENID_LEN, 16)); /* nothing past the 16 bytes */

	struct state_buf sb, rb;
	vdev_test_roundtrip(d, "vmgenid", &sb);
	/* an address outside this machine's RAM is refused */
	uint8_t bad[64];
	CHECK(sb.off <= sizeof(bad));
	memcpy(bad, sb.p, sb.off);
	uint64_t out = RAM - 8;
	memcpy(bad, &out, 8);
	state_buf_init_restore(&rb, bad, sb.off, "vmgenid");
	CHECK(d->ops->snapshot(d->priv, &rb) < 0);
	state_buf_release(&sb);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	ram = calloc(1, RAM);
	vdev_test_vm_init(&vm, ram, RAM);
	struct devices_config off = {.rng = false};
	CHECK_EQ(virtio_rng_init(&vm, &off), 0);
	CHECK(vm.devices == NULL); /* --rng none */
	struct devices_config cfg = {.rng = true};
	CHECK_EQ(pci_init(&vm, &cfg), 0);
	CHECK_EQ(virtio_rng_init(&vm, &cfg), 0);
	struct device *dev = find_dev("virtio-rng");
	CHECK(dev);
	if (!dev)
		TEST_DONE();
	vp = dev->priv; /* struct virtio_rng starts with its transport */
	CHECK_EQ(vp->pci.cfg[2] | vp->pci.cfg[3] << 8, 0x1044);
	test_fill();
	test_refused();
	test_snapshot(dev);
	test_vmgenid();
	devices_destroy(&vm);
	evloop_destroy(vm.loop);
	free(ram);
	TEST_DONE();
}
