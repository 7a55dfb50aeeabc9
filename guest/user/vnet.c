/*
 * virtio-net over the modern virtio-pci transport, in user mode like
 * vblk.c.  Queue 0 receives into RXQ_SIZE buffers of RX_BUF bytes (all of
 * them posted all the time, each given back as soon as its frame is read),
 * queue 1 transmits from one buffer per descriptor (header and frame in one
 * piece).  Features: VERSION_1, and MAC, STATUS, MRG_RXBUF when offered (a
 * frame then may span buffers: num_buffers in its header says how many),
 * CTRL_VQ and GUEST_ANNOUNCE when offered: queue 2 then takes control
 * requests, one at a time, polled.  Receive waits sleep in hlt until the
 * receive queue's MSI-X interrupt (configuration changes share its vector:
 * a wake-up without a frame looks at the status for an announce request),
 * which is suppressed (VRING_AVAIL_F_NO_INTERRUPT) while the driver is
 * polling the ring anyway; reposted receive buffers are announced to the
 * device only when it had used all it had, and no queue is notified while
 * the device says it does not need it (VRING_USED_F_NO_NOTIFY).
 * On PVM hosts each interrupt runs the guest kernel's handler through KVM's
 * emulator and each notification is an exit: per frame, they cost more than
 * the rest of the driver.
 */
#include "vnet.h"
#include "pci.h"
#include "ulib.h"
#include "vpci.h"

#define QSIZE 128
#define RX_BUF 2048
#define TX_BUF 2048
#define HDR 12
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1
#define F_MAC (1u << 5)
#define F_MRG_RXBUF (1u << 15)
#define F_STATUS (1u << 16)
#define F_CTRL_VQ (1u << 17)
#define F_GUEST_ANNOUNCE (1u << 21)
#define S_ANNOUNCE 2
#define CTRL_QSIZE 8

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vq {
	struct vdesc *desc;
	volatile uint16_t *avail, *used;
	uint16_t size, avail_idx, used_idx;
	uint64_t notify;
	uint8_t *bufs;
};

static struct {
	int state; /* 0 not probed, 1 up, -1 unusable (why) */
	char why[96];
	uint32_t bdf, features, offered;
	uint64_t common, notify, devcfg, msix_entry;
	uint32_t notify_mult, msix_dest;
	int msix;
	uint8_t mac[6];
	struct vq rx, tx, ctrl;
	int announce; /* GUEST_ANNOUNCE and CTRL_VQ negotiated */
	unsigned announces;
	uint64_t events_checked;
	void (*on_announce)(void);
} vn;

static int fail(const char *why)
{
	fmt(vn.why, sizeof(vn.why), "%s", why);
	vn.state = -1;
	return -1;
}

static int find_caps(void)
{
	uint32_t bdf = 0;
	int found = 0;
	for (uint32_t dev = 0; dev < 32 && !found; dev++) {
		uint32_t id = pci_r32(dev << 3, 0);
		if ((id & 0xffff) == 0x1af4 && (id >> 16) == 0x1041 &&
		    (pci_r32(dev << 3, 4) & (0x10u << 16))) {
			bdf = dev << 3;
			found = 1;
		}
	}
	if (!found)
		return fail("no virtio-net PCI device (1af4:1041) on bus 0");
	vn.bdf = bdf;
	struct vpci_caps c;
	vpci_find_caps(bdf, &c);
	vn.common = c.common;
	vn.notify = c.notify;
	vn.notify_mult = c.notify_mult;
	vn.devcfg = c.devcfg;
	vn.msix_entry = c.msix_table;
	if (!vn.common || !vn.notify || !vn.devcfg)
		return fail("virtio-pci capabilities missing");
	if (vn.common + 64 > ((uint64_t)IDMAP_GIB << 30))
		return fail("BAR above the identity map");
	if (vn.msix_entry) {
		vpci_msix_enable(bdf, &c); /* VEC_DISK: any vector that wakes us */
		vn.msix = 1;
		vn.msix_dest = 0xffffffff;
	}
	return 0;
}

static int setup_queue(uint16_t q, struct vq *v, uint64_t mem, int rx)
{
	uint64_t cc = vn.common;
	uint16_t qs = vpci_queue_size(cc, q, QSIZE);
	if (qs < 8)
		return fail("virtqueue too small");
	v->size = qs;
	v->desc = (struct vdesc *)mem;
	v->avail = (volatile uint16_t *)(mem + 4096);
	v->used = (volatile uint16_t *)(mem + 8192);
	v->bufs = (uint8_t *)(mem + 16384);
	v->avail_idx = v->used_idx = 0;
	memset((void *)mem, 0, 16384);
	for (uint16_t i = 0; i < qs; i++) {
		v->desc[i] = (struct vdesc){(uint64_t)v->bufs + (uint64_t)i * RX_BUF,
					    rx ? RX_BUF : 0, rx ? 2 : 0, 0};
		if (rx)
			v->avail[2 + i] = i;
	}
	if (rx)
		v->avail_idx = qs;
	mmio_w16(cc + CC_QSIZE, qs);
	vpci_queue_addrs(cc, (uint64_t)v->desc, (uint64_t)v->avail, (uint64_t)v->used);
	/* receive completions (and configuration changes) interrupt; transmit
	   completions are polled when a buffer is needed */
	mmio_w16(cc + CC_QMSIX, vn.msix && rx ? 0 : 0xffff);
	v->notify = vn.notify + (uint64_t)mmio_r16(cc + CC_QNOTIFYOFF) * vn.notify_mult;
	mmio_w16(cc + CC_QENABLE, 1);
	return 0;
}

/* The control queue: requests polled to completion, no interrupt. */
static int setup_ctrl(void)
{
	uint64_t cc = vn.common, mem = pool_alloc(16384 + 4096);
	if (!mem)
		return fail("no memory for the control queue");
	struct vq *v = &vn.ctrl;
	v->size = vpci_queue_size(cc, 2, CTRL_QSIZE);
	v->desc = (struct vdesc *)mem;
	v->avail = (volatile uint16_t *)(mem + 4096);
	v->used = (volatile uint16_t *)(mem + 8192);
	v->bufs = (uint8_t *)(mem + 16384);
	memset((void *)mem, 0, 16384);
	mmio_w16(cc + CC_QSIZE, v->size);
	vpci_queue_addrs(cc, (uint64_t)v->desc, (uint64_t)v->avail, (uint64_t)v->used);
	mmio_w16(cc + CC_QMSIX, 0xffff);
	v->notify = vn.notify + (uint64_t)mmio_r16(cc + CC_QNOTIFYOFF) * vn.notify_mult;
	mmio_w16(cc + CC_QENABLE, 1);
	return 0;
}

/* One control request (class, command, no data): the device's ack byte,
   or -1 when it did not answer within a second. */
static int ctrl_cmd(uint8_t class, uint8_t cmd)
{
	struct vq *v = &vn.ctrl;
	uint8_t *b = v->bufs;
	b[0] = class;
	b[1] = cmd;
	b[64] = 0xee;
	v->desc[0] = (struct vdesc){(uint64_t)b, 2, 1 /* NEXT */, 1};
	v->desc[1] = (struct vdesc){(uint64_t)b + 64, 1, 2 /* WRITE */, 0};
	v->avail[2 + v->avail_idx % v->size] = 0;
	v->avail_idx++;
	barrier();
	v->avail[1] = v->avail_idx;
	barrier();
	mmio_w16(v->notify, 2);
	for (uint64_t t0 = now_ns(); __atomic_load_n(&v->used[1], __ATOMIC_ACQUIRE) != v->avail_idx;)
		if (now_ns() - t0 > NS_PER_SEC)
			return -1;
	return *(volatile uint8_t *)(b + 64);
}

/* The device asks us to announce ourselves (after a restore): say so, let
   the stack announce (a gratuitous ARP), acknowledge. */
static void check_announce(void)
{
	if (!(mmio_r16(vn.devcfg + 6) & S_ANNOUNCE))
		return;
	vn.announces++;
	if (vn.on_announce)
		vn.on_announce();
	int ack = ctrl_cmd(3 /* ANNOUNCE */, 0 /* ACK */);
	cpu_printf("virtio-net announce n=%u ack=%d status=%u", vn.announces, ack,
		   mmio_r16(vn.devcfg + 6));
}

void vnet_set_announce(void (*fn)(void))
{
	vn.on_announce = fn;
}

static int setup(void)
{
	uint64_t cc = vn.common;
	uint32_t f0 = 0;
	const uint32_t want = F_MAC | F_MRG_RXBUF | F_STATUS | F_CTRL_VQ | F_GUEST_ANNOUNCE;
	/* GUEST_ANNOUNCE needs CTRL_VQ (its acknowledgement) */
	const char *why = vpci_negotiate(cc, want, &f0);
	if (why)
		return fail(why);
	vn.features = f0 & want;
	vn.offered = f0;
	vn.announce = (vn.features & (F_CTRL_VQ | F_GUEST_ANNOUNCE)) == (F_CTRL_VQ | F_GUEST_ANNOUNCE);
	uint64_t mem = pool_alloc(2 * (16384 + (uint64_t)QSIZE * RX_BUF));
	if (!mem)
		return fail("no memory for the virtqueues");
	if (setup_queue(0, &vn.rx, mem, 1) ||
	    setup_queue(1, &vn.tx, mem + 16384 + (uint64_t)QSIZE * RX_BUF, 0) ||
	    ((vn.features & F_CTRL_VQ) && setup_ctrl()))
		return -1;
	mmio_w16(cc + CC_MSIX, vn.msix ? 0 : 0xffff);
	mmio_w8(cc + CC_STATUS, 1 | 2 | 8 | 4);
	barrier();
	vn.rx.avail[1] = vn.rx.avail_idx;
	barrier();
	mmio_w16(vn.rx.notify, 0);
	for (int i = 0; i < 6; i++)
		vn.mac[i] = (vn.features & F_MAC) ? mmio_r8(vn.devcfg + i) : (uint8_t)(0x02 + i);
	return 0;
}

int vnet_open(const char *what)
{
	if (vn.state == 0) {
		if (find_caps() == 0 && setup() == 0) {
			vn.state = 1;
			uint16_t st = (vn.features & F_STATUS) ? mmio_r16(vn.devcfg + 6) : 1;
			cpu_printf(
			    "virtio-net 00:%02x.0 mac=%02x:%02x:%02x:%02x:%02x:%02x queue=%u "
			    "msix=%s mrg_rxbuf=%s link=%s announce=%s offered=%x",
			    vn.bdf >> 3, vn.mac[0], vn.mac[1], vn.mac[2], vn.mac[3], vn.mac[4],
			    vn.mac[5], vn.rx.size, vn.msix ? "yes" : "no",
			    (vn.features & F_MRG_RXBUF) ? "yes" : "no", (st & 1) ? "up" : "down",
			    vn.announce ? "yes" : "no", vn.offered);
		}
	}
	if (vn.state < 0) {
		cpu_printf("%s FAILED (%s)", what, vn.why);
		return -1;
	}
	uint32_t apic = cpu_apic_id[this_cpu()];
	if (vn.msix && vn.msix_dest != apic) {
		vpci_msix_retarget(vn.msix_entry, apic);
		vn.msix_dest = apic;
	}
	return 0;
}

void vnet_mac(uint8_t mac[6])
{
	memcpy(mac, vn.mac, 6);
}

static int needs_reset(void)
{
	return mmio_r8(vn.common + CC_STATUS) & STATUS_NEEDS_RESET;
}

/* Notify the device of new buffers in V, unless it said it does not need it. */
static void kick(struct vq *v, uint16_t q)
{
	barrier();
	if (!(__atomic_load_n(&v->used[0], __ATOMIC_ACQUIRE) & USED_F_NO_NOTIFY))
		mmio_w16(v->notify, q);
}

int vnet_send(const void *frame, unsigned len)
{
	struct vq *t = &vn.tx;
	if (len > TX_BUF - HDR)
		return -1;
	/* every descriptor in flight: wait for the device to finish one */
	for (uint64_t t0 = now_ns();
	     (uint16_t)(t->avail_idx - __atomic_load_n(&t->used[1], __ATOMIC_ACQUIRE)) >=
	     t->size;) {
		if (needs_reset() || now_ns() - t0 > NS_PER_SEC)
			return -1;
		cpu_relax();
	}
	uint16_t slot = t->avail_idx % t->size;
	uint8_t *b = t->bufs + (uint64_t)slot * TX_BUF;
	memset(b, 0, HDR);
	memcpy(b + HDR, frame, len);
	t->desc[slot].len = HDR + len;
	t->avail[2 + slot] = slot;
	t->avail_idx++;
	barrier();
	t->avail[1] = t->avail_idx;
	kick(t, 1);
	return 0;
}

int vnet_flush(uint64_t deadline)
{
	struct vq *t = &vn.tx;
	while (__atomic_load_n(&t->used[1], __ATOMIC_ACQUIRE) != t->avail_idx) {
		if (needs_reset() || now_ns() >= deadline)
			return -1;
		cpu_relax();
	}
	return 0;
}

/* Give receive buffer ID back to the device. */
static void rx_repost(uint16_t id)
{
	struct vq *r = &vn.rx;
	r->avail[2 + r->avail_idx % r->size] = id;
	r->avail_idx++;
}

static int rx_take(uint8_t *buf)
{
	struct vq *r = &vn.rx;
	volatile uint32_t *ring = (volatile uint32_t *)(r->used + 2);
	uint32_t id = ring[2 * (r->used_idx % r->size)],
		 len = ring[2 * (r->used_idx % r->size) + 1];
	r->used_idx++;
	if (id >= r->size || len < HDR || len > RX_BUF) {
		if (id < r->size)
			rx_repost((uint16_t)id);
		return 0; /* not a frame we can read: dropped */
	}
	const uint8_t *b = r->bufs + (uint64_t)id * RX_BUF;
	uint16_t nbufs = (vn.features & F_MRG_RXBUF) ? (uint16_t)(b[10] | b[11] << 8) : 1;
	unsigned total = len - HDR;
	int ok = total <= VNET_MAX_FRAME;
	if (ok)
		memcpy(buf, b + HDR, total);
	rx_repost((uint16_t)id);
	for (uint16_t k = 1; k < nbufs; k++) {
		/* the rest of the frame: published together with its first buffer */
		id = ring[2 * (r->used_idx % r->size)];
		len = ring[2 * (r->used_idx % r->size) + 1];
		r->used_idx++;
		if (id >= r->size || len > RX_BUF) {
			ok = 0;
			continue;
		}
		if (ok && total + len <= VNET_MAX_FRAME)
			memcpy(buf + total, r->bufs + (uint64_t)id * RX_BUF, len);
		else
			ok = 0;
		total += len;
		rx_repost((uint16_t)id);
	}
	uint16_t had = r->avail[1];
	barrier();
	r->avail[1] = r->avail_idx;
	barrier();
	/* The device needs to hear of new buffers only when it ran out of
	   them (frames then wait in the VMM): it has used all it had. */
	if (__atomic_load_n(&r->used[1], __ATOMIC_ACQUIRE) == had)
		kick(r, 0);
	return ok ? (int)total : 0;
}

int vnet_recv(uint8_t *buf, uint64_t deadline)
{
	struct vq *r = &vn.rx;
	struct percpu *pc = this_pc();
	uint64_t t0 = now_ns();
	for (;;) {
		uint64_t seen = pc->events;
		if (__atomic_load_n(&r->used[1], __ATOMIC_ACQUIRE) != r->used_idx) {
			int n = rx_take(buf);
			if (n > 0)
				return n;
			continue;
		}
		if (vn.announce && seen != vn.events_checked) {
			/* woken with no frame: maybe a configuration change */
			vn.events_checked = seen;
			check_announce();
		}
		uint64_t now = now_ns();
		if (now >= deadline)
			return 0;
		if (needs_reset())
			return -1;
		if (now - t0 < 20000) {
			cpu_relax();
			continue;
		}
		/* interrupts on, then look again: a frame used before the flag
		   was seen raised no interrupt */
		r->avail[0] = 0;
		barrier();
		if (__atomic_load_n(&r->used[1], __ATOMIC_ACQUIRE) == r->used_idx) {
			uint64_t until = now + (vn.msix ? 10000000 : 50000);
			wait_event(seen, until < deadline ? until : deadline);
		}
		r->avail[0] = AVAIL_F_NO_INTERRUPT;
	}
}
