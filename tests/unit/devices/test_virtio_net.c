/* virtio-net on a fake guest (one RAM slot, no KVM), driven through its
 * BAR0 as a driver would, with the real user-mode backend: libslirp
 * answers an ARP request for the gateway within slirp_input, so a frame
 * sent on the transmit queue brings one back on the receive queue in the
 * same call.  Also the header and spec rules on their own. */
#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtio_net.h"
#include "devices/virtio_pci.h"
#include "kvm/iobus.h"
#include "kvm/vm.h"
#include "net/net.h"
#include "snapshot/state_buf.h"
#include "test.h"
#include "util/evloop.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#define RAM (1u << 20)
#define QSIZE 16
#define RXQ 0
#define TXQ 1
#define F_NEXT 1
#define F_WRITE 2
#define NEEDS_RESET 0x40

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* queue q's rings */
#define DESC(q) (0x1000u + (q)*0x1000u)
#define AVAIL(q) (0x3000u + (q)*0x1000u)
#define USED(q) (0x5000u + (q)*0x1000u)
#define RXBUF 0x10000u
#define TXBUF 0x20000u

static uint8_t *ram;
static struct vm vm;
static struct virtio_pci *vp;
static uint16_t avail_idx[2];

static void bar_write(uint64_t off, uint32_t v, unsigned len)
{
	CHECK(iobus_dispatch(&vm.mmio, vp->pci.bars[0].addr + off, &v, len, true));
}

static uint32_t bar_read(uint64_t off, unsigned len)
{
	uint32_t v = 0;
	CHECK(iobus_dispatch(&vm.mmio, vp->pci.bars[0].addr + off, &v, len, false));
	return v;
}

static struct desc *desc(unsigned q, unsigned i)
{
	return (struct desc *)(ram + DESC(q)) + i;
}

static uint16_t used_idx(unsigned q)
{
	return *(uint16_t *)(ram + USED(q) + 2);
}

static uint32_t used_elem(unsigned q, unsigned i, unsigned word)
{
	return *(uint32_t *)(ram + USED(q) + 4 + 8 * (i % QSIZE) + 4 * word);
}

static void post(unsigned q, uint16_t head)
{
	uint16_t *ring = (uint16_t *)(ram + AVAIL(q) + 4);
	ring[avail_idx[q] % QSIZE] = head;
	avail_idx[q]++;
	*(uint16_t *)(ram + AVAIL(q) + 2) = avail_idx[q];
}

/* What the I/O thread does on a kick. */
static void kick(unsigned q)
{
	pthread_mutex_lock(&vp->lock);
	vp->ops->queue_notify(vp->dev, q);
	pthread_mutex_unlock(&vp->lock);
}

/* Reset, negotiate FEATURES (bits 0-31; VERSION_1 always), set both queues up. */
static void driver_setup(uint32_t features)
{
	memset(ram, 0, RAM);
	avail_idx[0] = avail_idx[1] = 0;
	bar_write(0x14, 0, 1);
	bar_write(0x14, 1 | 2, 1);
	bar_write(0x08, 0, 4);
	bar_write(0x0c, features, 4);
	bar_write(0x08, 1, 4);
	bar_write(0x0c, 1, 4);
	bar_write(0x14, 1 | 2 | 8, 1);
	CHECK(bar_read(0x14, 1) & 8);
	for (unsigned q = 0; q < 2; q++) {
		bar_write(0x16, q, 2);
		bar_write(0x18, QSIZE, 2);
		bar_write(0x20, DESC(q), 4);
		bar_write(0x28, AVAIL(q), 4);
		bar_write(0x30, USED(q), 4);
		bar_write(0x1c, 1, 2);
	}
	bar_write(0x14, 1 | 2 | 4 | 8, 1);
}

/* Receive buffers of LEN bytes each, N of them. */
static void post_rx(unsigned n, uint32_t len)
{
	for (unsigned i = 0; i < n; i++) {
		*desc(RXQ, i) = (struct desc){RXBUF + i * 0x800u, len, F_WRITE, 0};
		post(RXQ, (uint16_t)i);
	}
}

/* An ARP request for 10.0.2.2 from 10.0.2.15, after a zero virtio header. */
static unsigned arp_request(uint8_t *p)
{
	static const uint8_t f[42] = {
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
	    0x00, 0x01, 0x08, 0x00, 6,	  4,	0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
	    10,	  0,	2,    15,   0,	  0,	0,    0,    0,	  0,	10,   0,    2,	  2};
	memset(p, 0, VIRTIO_NET_HDR_LEN);
	memcpy(p + VIRTIO_NET_HDR_LEN, f, sizeof(f));
	return VIRTIO_NET_HDR_LEN + sizeof(f);
}

static void send_tx(uint16_t head, uint32_t len, uint16_t flags)
{
	*desc(TXQ, head) = (struct desc){TXBUF + head * 0x800u, len, flags, 0};
	post(TXQ, head);
	kick(TXQ);
}

static void test_mergeable(void)
{
	driver_setup(1u << 5 | 1u << 15 | 1u << 16); /* MAC, MRG_RXBUF, STATUS */
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)bar_read(0x2000 + i, 1);
	CHECK(!memcmp(mac, "\x52\x54\x00\x12\x34\x56", 6));
	CHECK_EQ(bar_read(0x2006, 2), 1); /* link up */
	post_rx(8, 32);
	send_tx(0, arp_request(ram + TXBUF), 0);
	CHECK_EQ(used_idx(TXQ), 1);
	/* The transmitted chain comes back by its own head, not that of the
	 * last receive chain the reply took within the same call (Linux's
	 * virtio_net: "output.0:id 1 is not a head!", then a stuck queue). */
	CHECK_EQ(used_elem(TXQ, 0, 0), 0);
	CHECK_EQ(used_elem(TXQ, 0, 1), 0);
	/* The reply (at least 42 + 12 bytes) spans buffers of 32 bytes, all
	 * published at once; num_buffers in the first says how many. */
	uint16_t n = used_idx(RXQ);
	CHECK(n >= 2);
	uint16_t nb;
	memcpy(&nb, ram + RXBUF + 10, 2);
	CHECK_EQ(nb, n);
	uint8_t frame[256];
	unsigned total = 0;
	for (unsigned i = 0; i < n; i++) {
		uint32_t id = used_elem(RXQ, i, 0), len = used_elem(RXQ, i, 1);
		CHECK_EQ(id, i);
		CHECK(len <= 32 && total + len <= sizeof(frame));
		memcpy(frame + total, ram + RXBUF + id * 0x800u, len);
		total += len;
	}
	CHECK(total >= VIRTIO_NET_HDR_LEN + 42);
	const uint8_t *eth = frame + VIRTIO_NET_HDR_LEN;
	CHECK(!memcmp(eth, mac, 6));			 /* to us */
	CHECK(eth[12] == 0x08 && eth[13] == 0x06);	 /* ARP */
	CHECK(eth[20] == 0 && eth[21] == 2);		 /* reply */
	CHECK(!memcmp(eth + 28, "\x0a\x00\x02\x02", 4)); /* from 10.0.2.2 */
	CHECK(!(bar_read(0x14, 1) & NEEDS_RESET));
}

static void test_not_mergeable(void)
{
	driver_setup(1u << 5);
	/* Without MRG_RXBUF a frame needs one buffer: 32 bytes are too few.
	 * The frame is dropped and the buffers stay the driver's. */
	post_rx(4, 32);
	send_tx(0, arp_request(ram + TXBUF), 0);
	CHECK_EQ(used_idx(TXQ), 1);
	CHECK_EQ(used_idx(RXQ), 0);
	CHECK_EQ(vp->vqs[RXQ].last_avail, 0);
	/* A big enough one gets the frame, num_buffers 1. */
	driver_setup(1u << 5);
	post_rx(1, 1600);
	send_tx(0, arp_request(ram + TXBUF), 0);
	CHECK_EQ(used_idx(RXQ), 1);
	CHECK(used_elem(RXQ, 0, 1) >= VIRTIO_NET_HDR_LEN + 42);
	CHECK_EQ(*(uint16_t *)(ram + RXBUF + 10), 1);
}

/* The header split over 1-byte and empty receive buffers: it lands in the
 * first 12 bytes that exist, and where it went is kept in 12 entries. */
static void test_split_header(void)
{
	driver_setup(1u << 15);
	/* 7 single bytes each followed by an empty buffer, then the rest: 15
	 * buffers before the header is complete (more than its 12 bytes). */
	unsigned n = 0;
	for (unsigned i = 0; i < 7; i++) {
		*desc(RXQ, n) = (struct desc){RXBUF + i, 1, F_WRITE | F_NEXT, (uint16_t)(n + 1)};
		n++;
		*desc(RXQ, n) =
		    (struct desc){RXBUF + 0x100, 0, F_WRITE | F_NEXT, (uint16_t)(n + 1)};
		n++;
	}
	*desc(RXQ, n) = (struct desc){RXBUF + 7, 1500, F_WRITE, 0};
	post(RXQ, 0);
	send_tx(0, arp_request(ram + TXBUF), 0);
	CHECK_EQ(used_idx(RXQ), 1);
	CHECK(!(bar_read(0x14, 1) & NEEDS_RESET));
	/* num_buffers (header bytes 10-11) is 1: byte 10 is in the big buffer */
	CHECK_EQ(ram[RXBUF + 10], 1);
	CHECK_EQ(ram[RXBUF + 11], 0);
	CHECK_EQ(ram[RXBUF + 12], 0x52); /* the frame: our MAC first */
}

static void test_hostile(void)
{
	driver_setup(1u << 15);
	post_rx(4, 256);
	/* Transmit: a device-writable buffer, offloads not negotiated, a frame
	 * shorter than its header, a loop, a buffer outside RAM: each returned
	 * with len 0, nothing delivered, the device goes on. */
	unsigned len = arp_request(ram + TXBUF);
	send_tx(0, len, F_WRITE);
	ram[TXBUF + 0x800 + 1] = 0;
	arp_request(ram + TXBUF + 0x800);
	ram[TXBUF + 0x800 + 1] = 1; /* gso_type TCPv4 */
	send_tx(1, len, 0);
	send_tx(2, 8, 0);
	*desc(TXQ, 3) = (struct desc){TXBUF, len, F_NEXT, 3};
	post(TXQ, 3);
	kick(TXQ);
	*desc(TXQ, 4) = (struct desc){RAM - 10, len, 0, 0};
	post(TXQ, 4);
	kick(TXQ);
	CHECK_EQ(used_idx(TXQ), 5);
	for (unsigned i = 0; i < 5; i++)
		CHECK_EQ(used_elem(TXQ, i, 1), 0);
	CHECK_EQ(used_idx(RXQ), 0);
	CHECK(!(bar_read(0x14, 1) & NEEDS_RESET));
	/* A valid frame still goes through. */
	arp_request(ram + TXBUF + 5 * 0x800);
	send_tx(5, len, 0);
	CHECK_EQ(used_idx(RXQ), 1);

	/* Receive: a device-readable buffer is a broken queue. */
	driver_setup(1u << 15);
	*desc(RXQ, 0) = (struct desc){RXBUF, 256, 0, 0};
	post(RXQ, 0);
	send_tx(0, arp_request(ram + TXBUF), 0);
	CHECK(bar_read(0x14, 1) & NEEDS_RESET);
	CHECK_EQ(used_idx(RXQ), 0);
	/* A reset clears it. */
	driver_setup(1u << 15);
	CHECK(!(bar_read(0x14, 1) & NEEDS_RESET));

	/* The avail index far ahead on transmit: broken queue. */
	driver_setup(1u << 15);
	*(uint16_t *)(ram + AVAIL(TXQ) + 2) = QSIZE + 5;
	kick(TXQ);
	CHECK(bar_read(0x14, 1) & NEEDS_RESET);
}

static void test_snapshot(struct device *d)
{
	driver_setup(1u << 5 | 1u << 15 | 1u << 16);
	post_rx(2, 2048);
	struct state_buf sb;
	state_buf_init_save(&sb, "virtio-net");
	CHECK_EQ(d->ops->snapshot(d->priv, &sb), 0);
	size_t saved_len = sb.off;
	uint8_t *saved = sb.p;
	/* The driver resets the device; the restore brings the queues back. */
	bar_write(0x14, 0, 1);
	CHECK_EQ(bar_read(0x14, 1), 0);
	struct state_buf rb;
	state_buf_init_restore(&rb, saved, saved_len, "virtio-net");
	CHECK_EQ(d->ops->snapshot(d->priv, &rb), 0);
	CHECK_EQ(state_buf_finish(&rb), 0);
	CHECK_EQ(bar_read(0x14, 1), 1 | 2 | 4 | 8);
	CHECK_EQ(bar_read(0x2006, 2), 1);
	CHECK_EQ(vp->vqs[RXQ].size, QSIZE);
	/* and the restored queues work */
	send_tx(0, arp_request(ram + TXBUF), 0);
	CHECK_EQ(used_idx(RXQ), 1);
	/* A record cut short is refused. */
	state_buf_init_restore(&rb, saved, saved_len - 1, "virtio-net");
	d->ops->snapshot(d->priv, &rb);
	CHECK(state_buf_finish(&rb) < 0);
	free(saved);
}

/* While frames come, the device asks for no transmit notifications
 * (VRING_USED_F_NO_NOTIFY) and looks at the queue again at the next loop
 * turn; a look that finds nothing turns them back on. */
static void test_tx_notify(void)
{
	driver_setup(1u << 15);
	post_rx(4, 2048);
	const uint16_t *flags = (const uint16_t *)(ram + USED(TXQ));
	send_tx(0, arp_request(ram + TXBUF), 0);
	CHECK_EQ(used_idx(TXQ), 1);
	CHECK_EQ(*flags, 1);
	kick(TXQ); /* the queued look: nothing new */
	CHECK_EQ(used_idx(TXQ), 1);
	CHECK_EQ(*flags, 0);
	send_tx(1, arp_request(ram + TXBUF + 0x800), 0);
	CHECK_EQ(used_idx(TXQ), 2);
	CHECK_EQ(*flags, 1);
	CHECK(!(bar_read(0x14, 1) & NEEDS_RESET));
}

static void test_rules(void)
{
	uint8_t h[VIRTIO_NET_HDR_LEN] = {0};
	CHECK_EQ(virtio_net_check_tx(h, 60), 0);
	CHECK_EQ(virtio_net_check_tx(h, 14), 0);
	CHECK_EQ(virtio_net_check_tx(h, 13), -EINVAL);
	CHECK_EQ(virtio_net_check_tx(h, NET_MAX_FRAME), 0);
	CHECK_EQ(virtio_net_check_tx(h, NET_MAX_FRAME + 1), -EINVAL);
	h[0] = 1; /* NEEDS_CSUM */
	CHECK_EQ(virtio_net_check_tx(h, 60), -EINVAL);
	h[0] = 0;
	h[1] = 3; /* GSO_UDP */
	CHECK_EQ(virtio_net_check_tx(h, 60), -EINVAL);

	struct net_spec s;
	CHECK_EQ(net_spec_parse("user", &s), 0);
	CHECK_EQ(s.kind, NET_USER);
	CHECK_EQ(net_spec_parse("none", &s), 0);
	CHECK_EQ(s.kind, NET_NONE);
	CHECK_EQ(net_spec_parse("user,hostfwd=udp::5555-:7,hostfwd=tcp:127.0.0.1:2222-10.0.2.15:22,"
				"mac=52:54:00:01:02:03",
				&s),
		 0);
	CHECK_EQ(s.nfwd, 2);
	CHECK(s.fwd[0].udp && s.fwd[0].host_port == 5555 && s.fwd[0].guest_port == 7 &&
	      s.fwd[0].host_addr == 0);
	CHECK(!s.fwd[1].udp && s.fwd[1].host_port == 2222 && s.fwd[1].guest_port == 22 &&
	      s.fwd[1].host_addr == htonl(0x7f000001));
	CHECK(s.has_mac && !memcmp(s.mac, "\x52\x54\x00\x01\x02\x03", 6));
	static const char *bad[] = {
	    "",
	    "tap",
	    "user,hostfwd=udp::0-:7",
	    "user,hostfwd=udp::65536-:7",
	    "user,hostfwd=udp::5-:0",
	    "user,hostfwd=icmp::5-:7",
	    "user,hostfwd=udp:5-:7",
	    "user,hostfwd=udp::5-10.0.2.16:7",
	    "user,hostfwd=udp:1.2.3:5-:7",
	    "user,mac=01:00:00:00:00:00",
	    "user,mac=52:54:00:01:02",
	    "user,mac=52:54:00:01:02:03:04",
	    "user,mac=52:54:00:01:02:300",
	    "none,hostfwd=udp::5-:7",
	    "user,frob",
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (net_spec_parse(bad[i], &s) != -EINVAL) {
			fprintf(stderr, "spec '%s' accepted\n", bad[i]);
			test_failures++;
		}
}

int main(void)
{
	log_set_level(LOG_ERROR);
	test_rules();
	ram = calloc(1, RAM);
	vm.kvm_fd = vm.vm_fd = -1;
	iobus_init(&vm.pio, "pio");
	iobus_init(&vm.mmio, "mmio");
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	CHECK_EQ(evloop_create(&vm.loop), 0);
	vm.slots[0] = (struct vm_mem_slot){0, 0, RAM, ram};
	vm.nslots = 1;
	vm.ram = ram;
	vm.ram_size = RAM;
	struct virtio_net_nic nic = {{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, "user"};
	struct devices_config cfg = {.nics = &nic, .nnics = 1};
	CHECK_EQ(pci_init(&vm, &cfg), 0);
	CHECK_EQ(virtio_net_init(&vm, &cfg), 0);
	struct device *dev = NULL;
	for (struct device *d = vm.devices; d; d = d->next)
		if (!strcmp(d->ops->name, "virtio-net"))
			dev = d;
	CHECK(dev);
	if (!dev)
		TEST_DONE();
	vp = dev->priv; /* struct virtio_net starts with its transport */
	test_mergeable();
	test_not_mergeable();
	test_split_header();
	test_hostile();
	test_tx_notify();
	test_snapshot(dev);
	devices_destroy(&vm);
	evloop_destroy(vm.loop);
	free(ram);
	TEST_DONE();
}
