/* libFuzzer harness for the virtqueue and virtio-blk request parsing
 * (src/devices/virtqueue.c, virtio_blk.c) behind the real virtio PCI
 * transport.
 *
 * A fake struct vm has two RAM slots, each one exact heap block so that
 * AddressSanitizer catches any access beyond guest memory; there is no KVM
 * (vm_fd -1: interrupts and ioeventfds fail quietly).  Two disks are set up
 * once, raw and qcow2, in files in /tmp removed as soon as they are open.
 * Each input: the device is reset and programmed through its BAR0 like a
 * driver would (queue size, ring addresses, ready, DRIVER_OK), guest memory
 * is filled from the input (descriptor table, rings, request headers and
 * data, all as the guest wrote them), the queue is kicked through the
 * notify register and the I/O thread's event loop serves it (the harness
 * plays the vCPU thread), then once more after
 * the avail index moved.  The device must stay inside guest memory and
 * finish (cyclic chains, absurd indices).
 *
 * Input: struct fuzz_hdr, then slot 0's bytes, then slot 1's. */
#include "fuzz_vm.h"

#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "disk/qcow2.h"
#include "kvm/vm.h"
#include "util/evloop.h"
#include "util/log.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SLOT0_SIZE 0x4000u
#define DISK_SIZE (1u << 20)

/* virtio common configuration registers (offsets in BAR0). */
#define VP_STATUS 0x14
#define VP_DRV_FEATURE_SEL 0x08
#define VP_DRV_FEATURE 0x0c
#define VP_NOTIFY 0x3000

struct fuzz_hdr {
	uint8_t flags;	/* bit 0: qcow2 disk; bit 1: negotiate features; bit 2: read-only */
	uint8_t bump;	/* added to the avail index before the second kick */
	uint16_t qsize; /* written to queue_size (bad values are ignored by the device) */
	uint32_t desc, avail, used; /* bit 31 set: slot 1 + the rest, else slot 0 + it */
} __attribute__((packed));

static struct {
	struct vm *vm;
	struct virtio_pci *vp[4]; /* raw, qcow2, raw read-only, qcow2 read-only */
	struct fuzz_mem mem;
	sem_t done;
	int tick; /* eventfd: readable while a kick is being served */
	struct virtio_pci *kicked;
} fz;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_virtio_blk set-up: %s\n", what);
	abort();
}

static void *io_thread(void *arg);
static void served(void *opaque, uint32_t events);

/* Four images: a read-only disk is not the writable one opened twice
 * (the image locks refuse that, as QEMU's do). */
static void make_disks(char (*raw)[64], char (*qcow)[64])
{
	char dir[] = "/tmp/cairn-fuzz-vblk.XXXXXX";
	if (!mkdtemp(dir))
		die("mkdtemp");
	for (int i = 0; i < 2; i++) {
		snprintf(raw[i], 64, "%s/d%d.raw", dir, i);
		snprintf(qcow[i], 64, "%s/d%d.qcow2", dir, i);
		int fd = open(raw[i], O_CREAT | O_RDWR | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, DISK_SIZE) < 0)
			die("raw disk");
		close(fd);
		struct qcow2_create_opts o = {.size = DISK_SIZE, .cluster_size = 4096};
		if (qcow2_create(qcow[i], &o) < 0)
			die("qcow2 disk");
	}
}

static void setup(void)
{
	log_set_level(LOG_ERROR); /* "the driver broke the protocol" on most inputs */
	struct vm *vm = fuzz_vm_two_slots(SLOT0_SIZE, &fz.mem);

	char raw[2][64], qcow[2][64];
	make_disks(raw, qcow);
	struct virtio_blk_disk disks[4] = {
	    {raw[0], "raw", false, NULL},
	    {qcow[0], "qcow2", false, "fuzz-serial-number-too-long"},
	    {raw[1], "raw", true, NULL},
	    {qcow[1], "qcow2", true, NULL},
	};
	struct devices_config cfg = {.disks = disks, .ndisks = 4};
	if (pci_init(vm, &cfg) < 0 || virtio_blk_init(vm, &cfg) < 0)
		die("devices");
	/* The files stay open; nothing is left in /tmp. */
	for (int i = 0; i < 2; i++) {
		unlink(raw[i]);
		unlink(qcow[i]);
	}
	*strrchr(raw[0], '/') = 0;
	rmdir(raw[0]);
	/* The device list: the PCI host, then the four disks, whose private
	 * data starts with their struct virtio_pci (virtio_blk.c). */
	int n = 0;
	for (struct device *d = vm->devices; d; d = d->next)
		if (strcmp(d->ops->name, "virtio-blk") == 0 && n < 4)
			fz.vp[n++] = d->priv;
	if (n != 4)
		die("virtio-blk devices not found");
	fz.vm = vm;
	sem_init(&fz.done, 0, 0);
	fz.tick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fz.tick < 0 || evloop_add(vm->loop, fz.tick, EPOLLIN, served, NULL) < 0)
		die("tick");
	pthread_t t;
	if (pthread_create(&t, NULL, io_thread, NULL) != 0)
		die("I/O thread");
}

static void bar_write(struct virtio_pci *vp, uint64_t off, uint32_t v, unsigned len)
{
	fuzz_bar_write(fz.vm, vp, off, v, len);
}

static void *io_thread(void *arg)
{
	if (evloop_run(fz.vm->loop) < 0)
		die("evloop_run");
	return arg;
}

/* In the I/O thread, each turn of its loop while a kick is being served
 * (fz.tick is readable until then): done once the kick has been taken from
 * its eventfd, which means its handler ran, in this same thread. */
static void served(void *opaque, uint32_t events)
{
	struct virtio_pci *vp = fz.kicked;
	struct pollfd p = {.fd = vp->kick_fd[0], .events = POLLIN};
	if (poll(&p, 1, 0) > 0)
		return; /* the loop's next turn takes it */
	uint64_t n;
	if (read(fz.tick, &n, sizeof(n)) != sizeof(n))
		die("tick");
	sem_post(&fz.done);
}

/* Notify queue 0 the way a guest's vCPU does (this thread), and wait until
 * the I/O thread has served the queue. */
static void kick(struct virtio_pci *vp)
{
	bar_write(vp, VP_NOTIFY, 0, 4);
	fz.kicked = vp;
	uint64_t one = 1;
	if (write(fz.tick, &one, sizeof(one)) != sizeof(one))
		die("tick");
	while (sem_wait(&fz.done) < 0)
		;
}

/* One input: a device of the four, its queue 0 set up as the header says. */
static void run(const struct fuzz_hdr *h)
{
	struct virtio_pci *vp = fz.vp[(h->flags & 1) | (h->flags >> 1 & 2)];
	bar_write(vp, VP_STATUS, 0, 1); /* reset */
	bar_write(vp, VP_STATUS, 1 | 2, 1);
	if (h->flags & 2) {
		bar_write(vp, VP_DRV_FEATURE_SEL, 1, 4);
		bar_write(vp, VP_DRV_FEATURE, 1, 4); /* VIRTIO_F_VERSION_1 */
		bar_write(vp, VP_STATUS, 1 | 2 | 8, 1);
	}
	fuzz_queue_setup(fz.vm, vp, 0, h->qsize, h->desc, h->avail, h->used);
	bar_write(vp, VP_STATUS, 1 | 2 | 4 | 8, 1);
	kick(vp);
	/* More requests on the same queue: the avail index moves on. */
	if (fuzz_bump_avail(fz.vm, h->avail, h->bump))
		kick(vp);
}

FUZZ_VM_TEST_ONE_INPUT(fz.vm, fz.mem, setup, run)
