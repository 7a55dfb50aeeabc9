/* libFuzzer harness for virtio-rng's request handling
 * (src/devices/virtio_rng.c, virtqueue.c) behind the real virtio PCI
 * transport, on a fake struct vm (no KVM) whose RAM is two exact heap
 * blocks, so AddressSanitizer catches any write outside guest memory.
 *
 * Input: struct fuzz_hdr, then slot 0's bytes, then slot 1's.  Per input:
 * the device is reset and programmed (the queue at the given addresses and
 * size, DRIVER_OK unless flags bit 0), guest memory is filled, the queue
 * is kicked, then kicked again after the avail index moved by BUMP.
 * CAIRN_FUZZ_SEEDS=DIR writes a few well-formed seeds into DIR and exits. */
#include "fuzz_vm.h"

#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtio_pci.h"
#include "devices/virtio_rng.h"
#include "kvm/vm.h"
#include "util/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOT0_SIZE 0x8000u

struct fuzz_hdr {
	uint8_t flags; /* bit 0: no DRIVER_OK */
	uint8_t bump;  /* added to the avail index before the second kick */
	uint16_t qsize;
	uint32_t desc, avail, used; /* bit 31 set: slot 1 + the rest */
} __attribute__((packed));

static struct {
	struct vm *vm;
	struct virtio_pci *vp;
	struct fuzz_mem mem;
} fz;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_virtio_rng set-up: %s\n", what);
	abort();
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	struct vm *vm = fuzz_vm_two_slots(SLOT0_SIZE, &fz.mem);
	struct devices_config cfg = {.rng = true};
	if (pci_init(vm, &cfg) < 0 || virtio_rng_init(vm, &cfg) < 0)
		die("devices");
	fz.vp = fuzz_vp_named(vm, "virtio-rng"); /* struct virtio_rng starts with its transport */
	if (!fz.vp)
		die("no virtio-rng device");
	fz.vm = vm;
}

static void bar_write(uint64_t off, uint32_t v, unsigned len)
{
	fuzz_bar_write(fz.vm, fz.vp, off, v, len);
}

/* What the I/O thread does for a notification (virtio_pci.c vp_kick). */
static void kick(void)
{
	struct virtio_pci *vp = fz.vp;
	pthread_mutex_lock(&vp->lock);
	uint16_t before = vp->vqs[0].used_idx;
	if (vp->vqs[0].ready && !(vp->status & 0x40))
		vp->ops->queue_notify(vp->dev, 0);
	/* One kick completes at most the entries published (the ring's size);
	 * the used lengths themselves may be overwritten by random bytes for
	 * a buffer placed over the used ring, so they are not checked here
	 * (the unit test checks the cap). */
	if ((uint16_t)(vp->vqs[0].used_idx - before) > VQ_MAX_SIZE)
		abort();
	pthread_mutex_unlock(&vp->lock);
}

static void run(const struct fuzz_hdr *h)
{
	bar_write(0x14, 0, 1); /* reset */
	bar_write(0x14, 1 | 2, 1);
	bar_write(0x08, 1, 4);
	bar_write(0x0c, 1, 4);
	bar_write(0x14, 1 | 2 | 8, 1);
	fuzz_queue_setup(fz.vm, fz.vp, 0, h->qsize, h->desc, h->avail, h->used);
	if (!(h->flags & 1))
		bar_write(0x14, 1 | 2 | 4 | 8, 1);
	kick();
	if (fuzz_bump_avail(fz.vm, h->avail, h->bump))
		kick();
}

/* A queue of 8: desc 0x100, avail 0x200, used 0x300; buffers from 0x1000. */
static void write_seeds(const char *dir)
{
	static uint8_t s0[SLOT0_SIZE];
	struct fuzz_hdr h = {.qsize = 8, .desc = 0x100, .avail = 0x200, .used = 0x300};
	struct fuzz_desc *d = (struct fuzz_desc *)(s0 + 0x100);
	/* one buffer; a chain of three (one empty); one buffer past slot 0 */
	d[0] = (struct fuzz_desc){0x1000, 64, 2, 0};
	d[1] = (struct fuzz_desc){0x2000, 100, 2 | 1, 2};
	d[2] = (struct fuzz_desc){0x2100, 0, 2 | 1, 3};
	d[3] = (struct fuzz_desc){0x2200, 300, 2, 0};
	d[4] = (struct fuzz_desc){0x7f00, 0x200, 2, 0};
	uint16_t *ring = (uint16_t *)(s0 + 0x204);
	ring[0] = 0, ring[1] = 1, ring[2] = 4;
	((uint16_t *)(s0 + 0x200))[1] = 3;
	fuzz_write_seed(dir, "requests", &h, sizeof(h), s0, sizeof(s0));
	/* a device-readable buffer, then a good one */
	memset(s0, 0, sizeof(s0));
	d[0] = (struct fuzz_desc){0x1000, 64, 0, 0};
	d[1] = (struct fuzz_desc){0x1100, 64, 2, 0};
	ring[0] = 0, ring[1] = 1;
	((uint16_t *)(s0 + 0x200))[1] = 2;
	h.bump = 1;
	fuzz_write_seed(dir, "readable", &h, sizeof(h), s0, sizeof(s0));
}

FUZZ_SEEDS_INITIALIZE(write_seeds)
FUZZ_VM_TEST_ONE_INPUT(fz.vm, fz.mem, setup, run)
