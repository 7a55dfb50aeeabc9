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
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->ops->name, "virtio-rng"))
			fz.vp = d->priv; /* struct virtio_rng starts with its transport */
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
	bar_write(0x16, 0, 2);
	bar_write(0x18, h->qsize, 2);
	fuzz_bar_write64(fz.vm, fz.vp, 0x20, fuzz_gpa_of(h->desc));
	fuzz_bar_write64(fz.vm, fz.vp, 0x28, fuzz_gpa_of(h->avail));
	fuzz_bar_write64(fz.vm, fz.vp, 0x30, fuzz_gpa_of(h->used));
	bar_write(0x1c, 1, 2);
	if (!(h->flags & 1))
		bar_write(0x14, 1 | 2 | 4 | 8, 1);
	kick();
	uint16_t *idx = vm_gpa_to_hva(fz.vm, fuzz_gpa_of(h->avail) + 2, 2);
	if (idx && h->bump) {
		uint16_t v;
		memcpy(&v, idx, 2);
		v = (uint16_t)(v + h->bump);
		memcpy(idx, &v, 2);
		kick();
	}
}

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static void write_seed(const char *dir, const char *name, const struct fuzz_hdr *h,
		       const uint8_t *slot0)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(h, sizeof(*h), 1, f) != 1 || fwrite(slot0, SLOT0_SIZE, 1, f) != 1)
		die("seed");
	fclose(f);
}

/* A queue of 8: desc 0x100, avail 0x200, used 0x300; buffers from 0x1000. */
static void write_seeds(const char *dir)
{
	static uint8_t s0[SLOT0_SIZE];
	struct fuzz_hdr h = {.qsize = 8, .desc = 0x100, .avail = 0x200, .used = 0x300};
	struct desc *d = (struct desc *)(s0 + 0x100);
	/* one buffer; a chain of three (one empty); one buffer past slot 0 */
	d[0] = (struct desc){0x1000, 64, 2, 0};
	d[1] = (struct desc){0x2000, 100, 2 | 1, 2};
	d[2] = (struct desc){0x2100, 0, 2 | 1, 3};
	d[3] = (struct desc){0x2200, 300, 2, 0};
	d[4] = (struct desc){0x7f00, 0x200, 2, 0};
	uint16_t *ring = (uint16_t *)(s0 + 0x204);
	ring[0] = 0, ring[1] = 1, ring[2] = 4;
	((uint16_t *)(s0 + 0x200))[1] = 3;
	write_seed(dir, "requests", &h, s0);
	/* a device-readable buffer, then a good one */
	memset(s0, 0, sizeof(s0));
	d[0] = (struct desc){0x1000, 64, 0, 0};
	d[1] = (struct desc){0x1100, 64, 2, 0};
	ring[0] = 0, ring[1] = 1;
	((uint16_t *)(s0 + 0x200))[1] = 2;
	h.bump = 1;
	write_seed(dir, "readable", &h, s0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_seeds_if_asked(write_seeds);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fz.vm)
		setup();
	struct fuzz_hdr h;
	if (fuzz_mem_load(&fz.mem, &h, sizeof(h), data, size) < 0)
		return 0;
	run(&h);
	return 0;
}
