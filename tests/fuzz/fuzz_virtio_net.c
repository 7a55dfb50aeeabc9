/* libFuzzer harness for virtio-net's frame and queue handling
 * (src/devices/virtio_net.c, virtqueue.c) behind the real virtio PCI
 * transport, on a fake struct vm (no KVM) whose RAM is two exact heap
 * blocks, so AddressSanitizer catches any access outside guest memory.
 *
 * The backend is this harness's (net/net.h's functions are defined here,
 * so libcairn's net.c and libslirp are not linked in): it checks every
 * frame the device hands over and can hand frames to the device.  One
 * thread plays both the vCPU (BAR0 accesses) and the I/O thread (queue
 * notifications are served by calling the device as the transport does).
 *
 * Input: struct fuzz_hdr, then slot 0's bytes, then slot 1's.  Per input:
 * the device is reset and programmed (features, the queues at the given
 * addresses and sizes, DRIVER_OK), guest memory is filled, the transmit
 * queue is kicked, NRX frames of the given lengths are delivered (after
 * RXHDR as their vnet header when asked), the receive queue is kicked,
 * then the control queue (when negotiated), then all again after the avail
 * indices moved.
 * CAIRN_FUZZ_SEEDS=DIR writes a few well-formed seeds into DIR and exits. */
#include "fuzz_vm.h"

#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtio_net.h"
#include "devices/virtio_pci.h"
#include "kvm/iobus.h"
#include "kvm/vm.h"
#include "net/net.h"
#include "util/evloop.h"
#include "util/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOT0_SIZE 0x8000u

struct fuzz_hdr {
	/* bit 0: MRG_RXBUF; bit 1: no DRIVER_OK; bit 2: the offloads, the
	 * control queue and GUEST_ANNOUNCE; bit 3: frames delivered with RXHDR */
	uint8_t flags;
	uint8_t bump; /* added to the avail indices before the second round */
	uint8_t nrx;  /* frames delivered per round (at most 8) */
	uint8_t pad;
	uint16_t qsize[3];
	uint32_t desc[3], avail[3], used[3]; /* bit 31 set: slot 1 + the rest */
	uint16_t rxlen[8];
	uint8_t rxhdr[12];
} __attribute__((packed));

/* Everything a vnet-header backend makes the device offer (bit 2). */
#define ALL_FEATURES                                                                               \
	(1u << 0 | 1u << 1 | 1u << 7 | 1u << 8 | 1u << 9 | 1u << 11 | 1u << 12 | 1u << 13 |        \
	 1u << 17 | 1u << 18 | 1u << 21)

/* ---- the fake backend ---- */
struct net_backend {
	struct net_peer peer;
};
static struct net_backend *fake_be; /* the one the device opened */
static volatile uint8_t sink;

int net_backend_open(const char *spec, struct evloop *loop, const struct net_peer *peer,
		     struct net_backend **out)
{
	struct net_backend *be = calloc(1, sizeof(*be));
	if (!be)
		abort();
	be->peer = *peer;
	fake_be = be;
	*out = be;
	return 0;
}

void net_backend_send(struct net_backend *be, const uint8_t vhdr[NET_VNET_HDR_LEN],
		      const void *frame, size_t len)
{
	/* The device hands over whole, sane frames only: read every byte. */
	if (len < 14 || len > NET_MAX_FRAME)
		abort();
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum ^= ((const uint8_t *)frame)[i];
	sink ^= sum;
}

bool net_backend_link_up(const struct net_backend *be)
{
	return true;
}

void net_backend_rx_resume(struct net_backend *be)
{
}

enum net_kind net_backend_kind(const struct net_backend *be)
{
	return NET_TAP;
}

/* A vnet header, so the offloads and their header rules are fuzzed too. */
bool net_backend_has_vnet_hdr(const struct net_backend *be)
{
	return true;
}

int net_backend_set_offloads(struct net_backend *be, unsigned offloads)
{
	return 0;
}

void net_backend_close(struct net_backend *be)
{
	free(be);
}

/* ---- the fake VM ---- */
static struct {
	struct vm *vm;
	struct virtio_pci *vp;
	struct fuzz_mem mem;
	uint8_t frame[NET_MAX_FRAME];
} fz;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_virtio_net set-up: %s\n", what);
	abort();
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	struct vm *vm = fuzz_vm_two_slots(SLOT0_SIZE, &fz.mem);
	struct virtio_net_nic nic = {{0x52, 0x54, 0, 0x12, 0x34, 0x56}, "fake", false};
	struct devices_config cfg = {.nics = &nic, .nnics = 1};
	if (pci_init(vm, &cfg) < 0 || virtio_net_init(vm, &cfg) < 0)
		die("devices");
	fz.vp = fuzz_vp_named(vm, "virtio-net"); /* struct virtio_net starts with its transport */
	if (!fz.vp)
		die("no virtio-net device");
	fz.vm = vm;
	for (size_t i = 0; i < sizeof(fz.frame); i++)
		fz.frame[i] = (uint8_t)(i * 7 + 1);
}

static void bar_write(uint64_t off, uint32_t v, unsigned len)
{
	fuzz_bar_write(fz.vm, fz.vp, off, v, len);
}

/* What the I/O thread does for a notification (virtio_pci.c vp_kick). */
static void kick(unsigned q)
{
	struct virtio_pci *vp = fz.vp;
	pthread_mutex_lock(&vp->lock);
	if (vp->vqs[q].ready && !(vp->status & 0x40))
		vp->ops->queue_notify(vp->dev, q);
	pthread_mutex_unlock(&vp->lock);
}

/* Frames from the backend: the peer's receive callback, from the "I/O thread". */
static void deliver(const struct fuzz_hdr *h)
{
	for (unsigned i = 0; i < h->nrx && i < 8; i++) {
		size_t len = h->rxlen[i] % (NET_MAX_FRAME + 2);
		fake_be->peer.receive(fake_be->peer.opaque, (h->flags & 8) ? h->rxhdr : NULL,
				      fz.frame, len);
	}
}

static void run(const struct fuzz_hdr *h)
{
	bar_write(0x14, 0, 1); /* reset */
	bar_write(0x14, 1 | 2, 1);
	bar_write(0x08, 0, 4);
	bar_write(0x0c,
		  ((h->flags & 1) ? 1u << 15 | 1u << 5 : 1u << 5) | ((h->flags & 4) ? ALL_FEATURES : 0),
		  4);
	bar_write(0x08, 1, 4);
	bar_write(0x0c, 1, 4);
	bar_write(0x14, 1 | 2 | 8, 1);
	unsigned nq = (h->flags & 4) ? 3 : 2;
	for (unsigned q = 0; q < nq; q++) {
		fuzz_queue_setup(fz.vm, fz.vp, (uint16_t)q, h->qsize[q], h->desc[q], h->avail[q],
				 h->used[q]);
	}
	if (!(h->flags & 2))
		bar_write(0x14, 1 | 2 | 4 | 8, 1);
	for (int round = 0; round < 2; round++) {
		kick(1);
		deliver(h);
		kick(0);
		if (nq == 3)
			kick(2);
		if (!h->bump)
			break;
		for (unsigned q = 0; q < nq; q++)
			fuzz_bump_avail(fz.vm, h->avail[q], h->bump);
	}
}

/* Queues of 8 at fixed places: rx desc 0x100, avail 0x200, used 0x300;
 * tx desc 0x400, avail 0x500, used 0x600; buffers from 0x1000. */
static void write_seeds(const char *dir)
{
	static uint8_t s0[SLOT0_SIZE];
	struct fuzz_hdr h = {.flags = 1,
			     .nrx = 2,
			     .qsize = {8, 8},
			     .desc = {0x100, 0x400},
			     .avail = {0x200, 0x500},
			     .used = {0x300, 0x600},
			     .rxlen = {60, 1514}};
	for (int mrg = 0; mrg < 2; mrg++) {
		memset(s0, 0, sizeof(s0));
		struct fuzz_desc *rx = (struct fuzz_desc *)(s0 + 0x100),
				 *tx = (struct fuzz_desc *)(s0 + 0x400);
		for (int i = 0; i < 8; i++) {
			rx[i] = (struct fuzz_desc){0x1000 + i * 0x800u, mrg ? 512 : 2048, 2, 0};
			((uint16_t *)(s0 + 0x204))[i] = (uint16_t)i;
		}
		((uint16_t *)(s0 + 0x200))[1] = 8;
		/* two frames to send: header + 60 bytes, and header split from frame */
		tx[0] = (struct fuzz_desc){0x5000, 12 + 60, 0, 0};
		tx[1] = (struct fuzz_desc){0x5100, 12, 1, 2};
		tx[2] = (struct fuzz_desc){0x5200, 100, 0, 0};
		((uint16_t *)(s0 + 0x504))[0] = 0;
		((uint16_t *)(s0 + 0x504))[1] = 1;
		((uint16_t *)(s0 + 0x500))[1] = 2;
		h.flags = (uint8_t)mrg;
		fuzz_write_seed(dir, mrg ? "mrg" : "plain", &h, sizeof(h), s0, sizeof(s0));
	}
	/* One receive chain whose header is split over 1-byte and empty
	 * buffers (more pieces than header bytes). */
	memset(s0, 0, sizeof(s0));
	struct fuzz_desc *rx = (struct fuzz_desc *)(s0 + 0x100);
	for (int i = 0; i < 14; i += 2) {
		rx[i] = (struct fuzz_desc){0x1000u + (unsigned)i, 1, 2 | 1, (uint16_t)(i + 1)};
		rx[i + 1] = (struct fuzz_desc){0x1100, 0, 2 | 1, (uint16_t)(i + 2)};
	}
	rx[14] = (struct fuzz_desc){0x2000, 2048, 2, 0};
	((uint16_t *)(s0 + 0x200))[1] = 1;
	h.flags = 1;
	h.qsize[0] = 16;
	h.nrx = 1;
	fuzz_write_seed(dir, "split-header", &h, sizeof(h), s0, sizeof(s0));

	/* Offloads and the control queue (desc 0x700, avail 0x800, used 0x900):
	 * a transmitted frame asking for checksum offload, a received one with
	 * DATA_VALID, and two requests: promiscuous on (header and data split,
	 * then the ack) and ANNOUNCE_ACK. */
	memset(s0, 0, sizeof(s0));
	rx = (struct fuzz_desc *)(s0 + 0x100);
	struct fuzz_desc *tx = (struct fuzz_desc *)(s0 + 0x400),
			 *cq = (struct fuzz_desc *)(s0 + 0x700);
	for (int i = 0; i < 8; i++) {
		rx[i] = (struct fuzz_desc){0x1000 + i * 0x800u, 2048, 2, 0};
		((uint16_t *)(s0 + 0x204))[i] = (uint16_t)i;
	}
	((uint16_t *)(s0 + 0x200))[1] = 8;
	tx[0] = (struct fuzz_desc){0x5000, 12 + 60, 0, 0};
	s0[0x5000] = 1;	      /* NEEDS_CSUM */
	s0[0x5000 + 6] = 34;  /* csum_start */
	s0[0x5000 + 8] = 16;  /* csum_offset */
	((uint16_t *)(s0 + 0x500))[1] = 1;
	cq[0] = (struct fuzz_desc){0x6000, 2, 1, 1};
	cq[1] = (struct fuzz_desc){0x6002, 1, 1, 2};
	cq[2] = (struct fuzz_desc){0x6010, 1, 2, 0};
	cq[3] = (struct fuzz_desc){0x6020, 2, 1, 4};
	cq[4] = (struct fuzz_desc){0x6030, 1, 2, 0};
	s0[0x6000] = 0; /* RX */
	s0[0x6001] = 0; /* PROMISC */
	s0[0x6002] = 1;
	s0[0x6020] = 3; /* ANNOUNCE */
	s0[0x6021] = 0; /* ACK */
	((uint16_t *)(s0 + 0x804))[0] = 0;
	((uint16_t *)(s0 + 0x804))[1] = 3;
	((uint16_t *)(s0 + 0x800))[1] = 2;
	struct fuzz_hdr hc = {.flags = 1 | 4 | 8,
			      .nrx = 1,
			      .qsize = {8, 8, 8},
			      .desc = {0x100, 0x400, 0x700},
			      .avail = {0x200, 0x500, 0x800},
			      .used = {0x300, 0x600, 0x900},
			      .rxlen = {60},
			      .rxhdr = {2 /* DATA_VALID */}};
	fuzz_write_seed(dir, "offloads-ctrl", &hc, sizeof(hc), s0, sizeof(s0));
}

FUZZ_SEEDS_INITIALIZE(write_seeds)
FUZZ_VM_TEST_ONE_INPUT(fz.vm, fz.mem, setup, run)
