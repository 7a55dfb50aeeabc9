/* virtio-net on a fake guest (one RAM slot, no KVM), driven through its
 * BAR0 as a driver would, with the real user-mode backend: libslirp
 * answers an ARP request for the gateway within slirp_input, so a frame
 * sent on the transmit queue brings one back on the receive queue in the
 * same call.  Also the header and spec rules on their own. */
#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtio_net.h"
#include "devices/virtio_net_ctrl.h"
#include "devices/virtio_pci.h"
#include "kvm/iobus.h"
#include "kvm/vm.h"
#include "net/net.h"
#include "snapshot/state_buf.h"
#include "test.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"
#include "vdev_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#define RAM (1u << 20)
#define QSIZE 16
#define RXQ 0
#define TXQ 1
#define CTRLQ 2
#define NEEDS_RESET 0x40

/* queue q's rings (the control queue's after the others') */
#define DESC(q) ((q) == CTRLQ ? 0x8000u : 0x1000u + (q)*0x1000u)
#define AVAIL(q) ((q) == CTRLQ ? 0x9000u : 0x3000u + (q)*0x1000u)
#define USED(q) ((q) == CTRLQ ? 0xa000u : 0x5000u + (q)*0x1000u)
#define RXBUF 0x10000u
#define TXBUF 0x20000u
#define CTRLBUF 0x30000u
#define F_CTRL (1u << 17 | 1u << 18 | 1u << 21) /* CTRL_VQ, CTRL_RX, GUEST_ANNOUNCE */

static uint8_t *ram;
static struct vm vm;
static struct virtio_pci *vp;
static uint16_t avail_idx[3];

#define bar_write(off, v, len) vdev_bar_write(&vm, vp, off, v, len)
#define bar_read(off, len) vdev_bar_read(&vm, vp, off, len)

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
	avail_idx[0] = avail_idx[1] = avail_idx[2] = 0;
	bar_write(0x14, 0, 1);
	bar_write(0x14, 1 | 2, 1);
	bar_write(0x08, 0, 4);
	bar_write(0x0c, features, 4);
	bar_write(0x08, 1, 4);
	bar_write(0x0c, 1, 4);
	bar_write(0x14, 1 | 2 | 8, 1);
	CHECK(bar_read(0x14, 1) & 8);
	for (unsigned q = 0; q < ((features & F_CTRL) ? 3u : 2u); q++) {
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

/* A control request: class, command and BODY in one descriptor (or the
 * header and the body in two), the ack byte in the next; returns the ack
 * (0xee: not written) after checking used.len. */
static unsigned ctrl(uint8_t class, uint8_t cmd, const void *body, uint32_t blen, bool split)
{
	static uint16_t head;
	uint8_t *b = ram + CTRLBUF;
	b[0] = class;
	b[1] = cmd;
	memcpy(b + 2, body, blen);
	b[0x800] = 0xee;
	unsigned h = head % QSIZE, n = 0;
	if (split && blen) {
		*desc(CTRLQ, h) = (struct desc){CTRLBUF, 2, F_NEXT, (uint16_t)((h + 1) % QSIZE)};
		*desc(CTRLQ, (h + 1) % QSIZE) =
		    (struct desc){CTRLBUF + 2, blen, F_NEXT, (uint16_t)((h + 2) % QSIZE)};
		n = 2;
	} else {
		*desc(CTRLQ, h) = (struct desc){CTRLBUF, 2 + blen, F_NEXT, (uint16_t)((h + 1) % QSIZE)};
		n = 1;
	}
	*desc(CTRLQ, (h + n) % QSIZE) = (struct desc){CTRLBUF + 0x800, 1, F_WRITE, 0};
	head = (uint16_t)(head + n + 1);
	uint16_t before = used_idx(CTRLQ);
	post(CTRLQ, (uint16_t)h);
	kick(CTRLQ);
	CHECK_EQ(used_idx(CTRLQ), (uint16_t)(before + 1));
	CHECK_EQ(used_elem(CTRLQ, before, 0), h);
	CHECK_EQ(used_elem(CTRLQ, before, 1), 1);
	return ram[CTRLBUF + 0x800];
}

static void test_ctrl_queue(void)
{
	driver_setup(1u << 5 | 1u << 15 | 1u << 16 | F_CTRL);
	CHECK_EQ(bar_read(0x12, 2), 3); /* num_queues */
	uint8_t on = 1;
	CHECK_EQ(ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1, false), VIRTIO_NET_OK);
	CHECK_EQ(ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &on, 1, true), VIRTIO_NET_OK);
	/* one unicast, two multicast addresses */
	uint8_t table[4 + 6 + 4 + 12] = {1, 0, 0, 0, 0x52, 0x54, 0, 1, 2, 3, 2, 0, 0, 0, 1};
	CHECK_EQ(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table, sizeof(table), true),
		 VIRTIO_NET_OK);
	table[10] = 3; /* three multicast addresses in room for two */
	CHECK_EQ(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table, sizeof(table), true),
		 VIRTIO_NET_ERR);
	CHECK_EQ(ctrl(2 /* VLAN */, 0, &on, 1, false), VIRTIO_NET_ERR);
	CHECK_EQ(ctrl(0x7f, 0, NULL, 0, false), VIRTIO_NET_ERR);
	CHECK_EQ(ctrl(VIRTIO_NET_CTRL_RX, 2 /* ALLUNI: RX_EXTRA, not offered */, &on, 1, false),
		 VIRTIO_NET_ERR);
	/* no ack byte (the last buffer device-readable): returned with len 0 */
	*desc(CTRLQ, 15) = (struct desc){CTRLBUF, 3, 0, 0};
	uint16_t before = used_idx(CTRLQ);
	post(CTRLQ, 15);
	kick(CTRLQ);
	CHECK_EQ(used_idx(CTRLQ), (uint16_t)(before + 1));
	CHECK_EQ(used_elem(CTRLQ, before, 1), 0);
	/* a request longer than the device takes */
	*desc(CTRLQ, 14) = (struct desc){CTRLBUF, VIRTIO_NET_CTRL_MAX + 1, F_NEXT, 13};
	*desc(CTRLQ, 13) = (struct desc){CTRLBUF + VIRTIO_NET_CTRL_MAX + 8, 1, F_WRITE, 0};
	ram[CTRLBUF + VIRTIO_NET_CTRL_MAX + 8] = 0xee;
	post(CTRLQ, 14);
	kick(CTRLQ);
	CHECK_EQ(ram[CTRLBUF + VIRTIO_NET_CTRL_MAX + 8], VIRTIO_NET_ERR);
	CHECK(!(bar_read(0x14, 1) & NEEDS_RESET));
	/* Without CTRL_RX negotiated the receive-mode class is refused. */
	driver_setup(1u << 5 | 1u << 16 | 1u << 17);
	CHECK_EQ(ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1, false),
		 VIRTIO_NET_ERR);
}

/* A restore asks a guest that negotiated GUEST_ANNOUNCE to announce
 * itself; ANNOUNCE_ACK clears it; a guest without it is not asked. */
static void test_announce(struct device *d)
{
	for (int with = 1; with >= 0; with--) {
		driver_setup(1u << 5 | 1u << 15 | 1u << 16 | (with ? F_CTRL : 1u << 17));
		CHECK_EQ(bar_read(0x2006, 2), 1);
		struct state_buf sb;
		vdev_test_roundtrip(d, "virtio-net", &sb);
		CHECK_EQ(bar_read(0x2006, 2), with ? 1 | 2 : 1);
		if (with) {
			CHECK_EQ(ctrl(VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0,
				      false),
				 VIRTIO_NET_OK);
			CHECK_EQ(bar_read(0x2006, 2), 1);
		} else {
			CHECK_EQ(ctrl(VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0,
				      false),
				 VIRTIO_NET_ERR);
		}
		state_buf_release(&sb);
	}
	/* A guest whose frames need offloads is not restored onto a backend
	 * without a vnet header (this one is user-mode): the state stays. */
	driver_setup(1u << 5 | 1u << 15 | 1u << 16 | F_CTRL);
	vp->driver_features |= 1; /* CSUM, as negotiated with a TAP */
	struct state_buf sb;
	state_buf_init_save(&sb, "virtio-net");
	CHECK_EQ(d->ops->snapshot(d->priv, &sb), 0);
	struct state_buf rb;
	state_buf_init_restore(&rb, sb.p, sb.off, "virtio-net");
	CHECK_EQ(d->ops->snapshot(d->priv, &rb), -EINVAL);
	CHECK(strstr(err_msg(), "tap=IFNAME") != NULL);
	state_buf_release(&sb);
}

static void test_ctrl_parse(void)
{
	struct virtio_net_ctrl c;
	const uint64_t all = VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_GUEST_ANNOUNCE;
	uint8_t r[64] = {VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 1};
	CHECK_EQ(virtio_net_ctrl_parse(r, 3, all, &c), VIRTIO_NET_OK);
	CHECK(c.action == CTRL_RX_PROMISC && c.arg == 1);
	r[1] = VIRTIO_NET_CTRL_RX_ALLMULTI;
	r[2] = 0;
	CHECK_EQ(virtio_net_ctrl_parse(r, 3, all, &c), VIRTIO_NET_OK);
	CHECK(c.action == CTRL_RX_ALLMULTI && c.arg == 0);
	CHECK_EQ(virtio_net_ctrl_parse(r, 2, all, &c), VIRTIO_NET_ERR); /* no body */
	CHECK_EQ(virtio_net_ctrl_parse(r, 4, all, &c), VIRTIO_NET_ERR); /* body too long */
	CHECK_EQ(virtio_net_ctrl_parse(r, 3, VIRTIO_NET_F_CTRL_VQ, &c), VIRTIO_NET_ERR);
	CHECK_EQ(virtio_net_ctrl_parse(r, 1, all, &c), VIRTIO_NET_ERR);
	CHECK_EQ(virtio_net_ctrl_parse(r, 0, all, &c), VIRTIO_NET_ERR);
	/* MAC tables: empty ones, exact sizes, counts past the end (and
	 * wrapping when multiplied by 6) */
	uint8_t m[2 + 8] = {VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET};
	CHECK_EQ(virtio_net_ctrl_parse(m, 10, all, &c), VIRTIO_NET_OK);
	CHECK(c.action == CTRL_MAC_TABLE && c.arg == 0);
	CHECK_EQ(virtio_net_ctrl_parse(m, 9, all, &c), VIRTIO_NET_ERR);
	uint8_t big[2 + 4 + 4] = {VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET,
				  0xab, 0xaa, 0xaa, 0x2a};
	CHECK_EQ(virtio_net_ctrl_parse(big, sizeof(big), all, &c), VIRTIO_NET_ERR);
	big[2] = big[3] = big[4] = big[5] = 0xff;
	CHECK_EQ(virtio_net_ctrl_parse(big, sizeof(big), all, &c), VIRTIO_NET_ERR);
	uint8_t one[2 + 4 + 6 + 4] = {VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, 1};
	CHECK_EQ(virtio_net_ctrl_parse(one, sizeof(one), all, &c), VIRTIO_NET_OK);
	CHECK_EQ(c.arg, 1);
	CHECK_EQ(virtio_net_ctrl_parse(one, sizeof(one) + 1, all, &c), VIRTIO_NET_ERR);
	one[1] = 1; /* MAC_ADDR_SET: CTRL_MAC_ADDR is not offered */
	CHECK_EQ(virtio_net_ctrl_parse(one, 8, all, &c), VIRTIO_NET_ERR);
	uint8_t a[2] = {VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK};
	CHECK_EQ(virtio_net_ctrl_parse(a, 2, all, &c), VIRTIO_NET_OK);
	CHECK(c.action == CTRL_ANNOUNCE_ACK);
	CHECK_EQ(virtio_net_ctrl_parse(a, 3, all, &c), VIRTIO_NET_ERR);
	CHECK_EQ(virtio_net_ctrl_parse(a, 2, VIRTIO_NET_F_CTRL_VQ, &c), VIRTIO_NET_ERR);
	a[1] = 1;
	CHECK_EQ(virtio_net_ctrl_parse(a, 2, all, &c), VIRTIO_NET_ERR);
	uint8_t mq[4] = {4 /* MQ */, 0, 1, 0};
	CHECK_EQ(virtio_net_ctrl_parse(mq, 4, all, &c), VIRTIO_NET_ERR);
	CHECK_EQ(virtio_net_ctrl_parse(r, VIRTIO_NET_CTRL_MAX + 1, all, &c), VIRTIO_NET_ERR);
}

/* Offload headers: allowed exactly when negotiated. */
static void test_offload_rules(void)
{
	const uint64_t tx = VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6;
	uint8_t h[VIRTIO_NET_HDR_LEN] = {1 /* NEEDS_CSUM */, 0, 0, 0, 0, 0, 34, 0, 16, 0};
	CHECK_EQ(virtio_net_check_tx(h, 60, tx), 0);
	CHECK_EQ(virtio_net_check_tx(h, 52, tx), 0);
	CHECK_EQ(virtio_net_check_tx(h, 52, 0), -EINVAL);
	CHECK_EQ(virtio_net_check_tx(h, 51, tx), -EINVAL); /* checksum past the frame */
	h[6] = h[7] = 0xff;
	CHECK_EQ(virtio_net_check_tx(h, NET_MAX_FRAME, tx), -EINVAL);
	h[6] = 34;
	h[7] = 0;
	h[1] = 1; /* TCPv4 */
	CHECK_EQ(virtio_net_check_tx(h, 60, tx), -EINVAL); /* no gso_size */
	h[4] = 0xa8;
	h[5] = 0x05; /* 1448 */
	CHECK_EQ(virtio_net_check_tx(h, 60, tx), 0);
	CHECK_EQ(virtio_net_check_tx(h, 60, VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO6), -EINVAL);
	h[1] = 4; /* TCPv6 */
	CHECK_EQ(virtio_net_check_tx(h, 60, tx), 0);
	h[1] = 0x81; /* TCPv4 with ECN, not negotiated */
	CHECK_EQ(virtio_net_check_tx(h, 60, tx), -EINVAL);
	CHECK_EQ(virtio_net_check_tx(h, 60, tx | VIRTIO_NET_F_HOST_ECN), 0);
	h[1] = 3; /* UDP: never */
	CHECK_EQ(virtio_net_check_tx(h, 60, tx | VIRTIO_NET_F_HOST_ECN), -EINVAL);
	h[1] = 1;
	h[0] = 0; /* segmentation without a partial checksum */
	CHECK_EQ(virtio_net_check_tx(h, 60, tx), -EINVAL);
	h[0] = 2; /* DATA_VALID is the device's */
	h[1] = 0;
	CHECK_EQ(virtio_net_check_tx(h, 60, tx), -EINVAL);

	const uint64_t rx = VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4;
	uint8_t r[VIRTIO_NET_HDR_LEN] = {2 /* DATA_VALID */};
	CHECK_EQ(virtio_net_check_rx(r, rx), 0);
	CHECK_EQ(r[0], 2);
	CHECK_EQ(virtio_net_check_rx(r, 0), 0);
	CHECK_EQ(r[0], 0); /* cleared for a guest without GUEST_CSUM */
	r[0] = 1;
	CHECK_EQ(virtio_net_check_rx(r, 0), -EINVAL);
	r[1] = 1;
	CHECK_EQ(virtio_net_check_rx(r, rx), 0);
	r[1] = 4;
	CHECK_EQ(virtio_net_check_rx(r, rx), -EINVAL);
	r[0] = 4; /* RSC_INFO */
	r[1] = 0;
	CHECK_EQ(virtio_net_check_rx(r, rx), -EINVAL);
}

static void test_rules(void)
{
	uint8_t h[VIRTIO_NET_HDR_LEN] = {0};
	CHECK_EQ(virtio_net_check_tx(h, 60, 0), 0);
	CHECK_EQ(virtio_net_check_tx(h, 14, 0), 0);
	CHECK_EQ(virtio_net_check_tx(h, 13, 0), -EINVAL);
	CHECK_EQ(virtio_net_check_tx(h, NET_MAX_FRAME, 0), 0);
	CHECK_EQ(virtio_net_check_tx(h, NET_MAX_FRAME + 1, 0), -EINVAL);
	h[0] = 1; /* NEEDS_CSUM */
	CHECK_EQ(virtio_net_check_tx(h, 60, 0), -EINVAL);
	h[0] = 0;
	h[1] = 3; /* GSO_UDP */
	CHECK_EQ(virtio_net_check_tx(h, 60, 0), -EINVAL);

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
	CHECK_EQ(net_spec_parse("tap=tap0,mac=52:54:00:01:02:03", &s), 0);
	CHECK(s.kind == NET_TAP && !strcmp(s.ifname, "tap0") && s.has_mac);
	CHECK_EQ(net_spec_parse("tap=abcdefghijklmno", &s), 0);
	static const char *bad[] = {
	    "",
	    "tap",
	    "tap=",
	    "tap=abcdefghijklmnop",
	    "tap=a/b",
	    "tap=..",
	    "tap=a b",
	    "tap=tap0,hostfwd=udp::5-:7",
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
	test_ctrl_parse();
	test_offload_rules();
	ram = calloc(1, RAM);
	vdev_test_vm_init(&vm, ram, RAM);
	/* today's NIC, and one of the first model (restored from an older snapshot) */
	struct virtio_net_nic nics[2] = {{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, "user", false},
					 {{0x52, 0x54, 0x00, 0x12, 0x34, 0x57}, "none", true}};
	struct devices_config cfg = {.nics = nics, .nnics = 2};
	CHECK_EQ(pci_init(&vm, &cfg), 0);
	CHECK_EQ(virtio_net_init(&vm, &cfg), 0);
	struct device *dev = NULL, *legacy = NULL;
	for (struct device *d = vm.devices; d; d = d->next)
		if (!strcmp(d->ops->name, "virtio-net")) {
			if (dev)
				legacy = d;
			else
				dev = d;
		}
	CHECK(dev && legacy);
	if (!dev || !legacy)
		TEST_DONE();
	vp = legacy->priv; /* struct virtio_net starts with its transport */
	CHECK_EQ(bar_read(0x12, 2), 2); /* two queues, as its snapshot records */
	bar_write(0x00, 0, 4);
	CHECK_EQ(bar_read(0x04, 4), 1u << 5 | 1u << 15 | 1u << 16);
	vp = dev->priv;
	bar_write(0x00, 0, 4);
	CHECK_EQ(bar_read(0x04, 4), 1u << 5 | 1u << 15 | 1u << 16 | F_CTRL); /* no offloads on user */
	test_mergeable();
	test_not_mergeable();
	test_split_header();
	test_hostile();
	test_tx_notify();
	test_snapshot(dev);
	test_ctrl_queue();
	test_announce(dev);
	devices_destroy(&vm);
	evloop_destroy(vm.loop);
	free(ram);
	TEST_DONE();
}
