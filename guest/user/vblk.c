/*
 * virtio-blk over the modern virtio-pci transport (virtio 1.x), entirely in
 * user mode: PCI config through ports 0xcf8/0xcfc (IOPL 3), the BARs and the
 * split virtqueue through the identity map.  Completions are taken from the
 * used ring by polling, and while waiting the CPU sleeps in hlt until the
 * queue's MSI-X interrupt (or a short timer when there is no MSI-X).
 */
#include "vblk.h"
#include "../diskpat.h"
#include "pci.h"
#include "platform.h"
#include "ulib.h"
#include "vpci.h"

#define QSIZE_MAX 256
#define NREQ_MAX 16
#define REQ_BLOCKS 16 /* 64 KiB per request */

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4

struct blk_req {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct {
	int state; /* 0 not probed, 1 probed, -1 unusable (why) */
	int up;    /* virtqueue set up, DRIVER_OK (0 after a device reset) */
	char why[96];
	uint32_t bdf;
	uint64_t common, notify, devcfg;
	uint16_t qsize, nreq, avail_idx, used_idx;
	struct vring_desc *desc;
	volatile uint16_t *avail; /* flags, idx, ring[qsize] */
	volatile uint16_t *used;  /* flags, idx, then {u32 id, u32 len}[qsize] */
	struct blk_req *hdr;
	volatile uint8_t *status;
	uint8_t *buf;
	uint64_t capacity; /* 512-byte sectors */
	uint32_t features;
	int flush, msix, ro;
	uint64_t msix_entry, notify_base;
	uint32_t msix_cap, notify_mult;
	uint32_t msix_dest;
	uint64_t slot_block[NREQ_MAX + 1], slot_count[NREQ_MAX + 1];
} vb;
static volatile int vb_lock;
static int fail_init(const char *why)
{
	fmt(vb.why, sizeof(vb.why), "%s", why);
	vb.state = -1;
	return -1;
}

static int find_device(void)
{
	for (uint32_t dev = 0; dev < 32; dev++) {
		uint32_t bdf = dev << 3, id = pci_r32(bdf, 0);
		if ((id & 0xffff) != 0x1af4)
			continue;
		uint32_t did = id >> 16;
		if (did != 0x1042 && did != 0x1001)
			continue;
		if (!(pci_r32(bdf, 4) & (0x10u << 16)))
			continue; /* no capability list: legacy-only device */
		vb.bdf = bdf;
		return 0;
	}
	return -1;
}

static int vblk_setup(uint64_t bad_used);

static int vblk_init(void)
{
	uint32_t bdf;
	if (find_device())
		return fail_init("no virtio-blk PCI device (1af4:1042) on bus 0");
	bdf = vb.bdf;
	struct vpci_caps c;
	vpci_find_caps(bdf, &c);
	vb.common = c.common;
	vb.notify = c.notify;
	vb.devcfg = c.devcfg;
	vb.msix_cap = c.msix_cap;
	if (!vb.common || !vb.notify || !vb.devcfg)
		return fail_init("virtio-pci capabilities missing (not a modern device?)");
	if (vb.common + 64 > ((uint64_t)IDMAP_GIB << 30))
		return fail_init("BAR above the identity map");
	uint64_t mem = pool_alloc(2 * MIB);
	if (!mem)
		return fail_init("no memory for the virtqueue");
	vb.desc = (struct vring_desc *)mem;
	vb.avail = (volatile uint16_t *)(mem + 4096);
	vb.used = (volatile uint16_t *)(mem + 8192);
	vb.hdr = (struct blk_req *)(mem + 12288);
	vb.status = (volatile uint8_t *)(mem + 16384);
	vb.buf = (uint8_t *)(mem + 65536);
	if (c.msix_table) {
		/* entry 0 -> VEC_DISK on the CPU doing the I/O (set per operation);
		   a device reset leaves MSI-X alone */
		vpci_msix_enable(bdf, &c);
		vb.msix = 1;
		vb.msix_entry = c.msix_table;
		vb.msix_dest = 0xffffffff;
	}
	vb.notify_base = vb.notify;
	vb.notify_mult = c.notify_mult;
	vb.state = 1;
	if (vblk_setup(0))
		return -1;
	cpu_printf("virtio-blk 00:%02x.0 blocks=%lu queue=%u msix=%s flush=%s%s common=0x%lx%s",
		   bdf >> 3, vb.capacity / 8, vb.qsize, vb.msix ? "yes" : "no",
		   vb.flush ? "yes" : "no", vb.ro ? " read-only" : "", vb.common,
		   pci_bars_assigned() ? " (BARs assigned by the guest)" : "");
	return 0;
}

/* Resets the device and brings it up again: features, queue 0 (empty
   rings, the standard descriptors), vectors, DRIVER_OK.  bad_used: put the
   used ring there instead (vhostile). */
static int vblk_setup(uint64_t bad_used)
{
	uint64_t cc = vb.common;
	vb.up = 0;
	/* FLUSH, RO, DISCARD, WRITE_ZEROES when offered (the last two: vhostile) */
	uint32_t f0 = 0;
	const char *why = vpci_negotiate(cc, 1u << 9 | 1u << 5 | 1u << 13 | 1u << 14, &f0);
	if (why)
		return fail_init(why);
	vb.features = f0;
	vb.flush = (f0 >> 9) & 1;
	vb.ro = (f0 >> 5) & 1; /* VIRTIO_BLK_F_RO */

	uint16_t qs = vpci_queue_size(cc, 0, QSIZE_MAX);
	if (qs < 8)
		return fail_init("virtqueue 0 too small");
	vb.qsize = qs;
	vb.nreq = (uint16_t)((qs - 2) / 3 < NREQ_MAX ? (qs - 2) / 3 : NREQ_MAX);
	memset((void *)vb.desc, 0, 65536);
	vb.avail_idx = vb.used_idx = 0;
	for (unsigned s = 0; s < vb.nreq; s++) {
		struct vring_desc *d = &vb.desc[3 * s];
		d[0] = (struct vring_desc){(uint64_t)&vb.hdr[s], 16, 1, (uint16_t)(3 * s + 1)};
		d[1] = (struct vring_desc){(uint64_t)vb.buf + s * REQ_BLOCKS * 4096ull, 0, 1,
					   (uint16_t)(3 * s + 2)};
		d[2] = (struct vring_desc){(uint64_t)&vb.status[s], 1, 2, 0};
	}
	unsigned f = 3 * vb.nreq; /* flush: header and status only */
	vb.desc[f] = (struct vring_desc){(uint64_t)&vb.hdr[vb.nreq], 16, 1, (uint16_t)(f + 1)};
	vb.desc[f + 1] = (struct vring_desc){(uint64_t)&vb.status[vb.nreq], 1, 2, 0};

	mmio_w16(cc + CC_QSIZE, qs);
	uint64_t used = bad_used ? bad_used : (uint64_t)vb.used;
	vpci_queue_addrs(cc, (uint64_t)vb.desc, (uint64_t)vb.avail, used);
	if (vb.msix) {
		/* queue and configuration changes (DEVICE_NEEDS_RESET) both on
		   vector 0, so a waiter wakes for either */
		mmio_w16(cc + CC_QMSIX, 0);
		mmio_w16(cc + CC_MSIX, 0);
		if (mmio_r16(cc + CC_QMSIX) != 0) {
			vb.msix = 0;
			pci_w32(vb.bdf, vb.msix_cap, pci_r32(vb.bdf, vb.msix_cap) & ~(1u << 31));
		}
	}
	if (!vb.msix) {
		mmio_w16(cc + CC_QMSIX, 0xffff);
		mmio_w16(cc + CC_MSIX, 0xffff);
	}
	uint16_t noff = mmio_r16(cc + CC_QNOTIFYOFF);
	vb.notify = vb.notify_base + (uint64_t)noff * vb.notify_mult;
	mmio_w16(cc + CC_QENABLE, 1);
	mmio_w8(cc + CC_STATUS, 1 | 2 | 8 | 4); /* DRIVER_OK */
	vb.capacity = mmio_r32(vb.devcfg) | (uint64_t)mmio_r32(vb.devcfg + 4) << 32;
	vb.up = 1;
	return 0;
}

static void push(unsigned head)
{
	vb.avail[2 + vb.avail_idx % vb.qsize] = (uint16_t)head;
	vb.avail_idx++;
}

static unsigned notify_bits = 16;

int vblk_set_notify_bits(uint64_t bits)
{
	if (bits != 16 && bits != 32) {
		cpu_printf("disknotify FAILED (16 or 32, not %lu)", (unsigned long)bits);
		return -1;
	}
	notify_bits = (unsigned)bits;
	cpu_printf("disknotify bits=%u", notify_bits);
	return 0;
}

static void publish(void)
{
	barrier();
	vb.avail[1] = vb.avail_idx;
	barrier();
	if (notify_bits == 32)
		mmio_w32(vb.notify, 0);
	else
		mmio_w16(vb.notify, 0);
}

/* Waits until the used ring moves past used_idx: 0; -1 when the device
   sets DEVICE_NEEDS_RESET instead (it then serves nothing until a reset);
   -2 at the deadline (0: none). */
static int wait_used(uint16_t used_idx, uint64_t deadline)
{
	struct percpu *pc = this_pc();
	uint64_t t0 = now_ns(), ev0 = pc->events;
	for (int slept = 0;;) {
		uint64_t seen = pc->events;
		if (__atomic_load_n(&vb.used[1], __ATOMIC_ACQUIRE) != used_idx)
			return 0;
		/* an interrupt, or a sleep without one: the configuration vector
		   (DEVICE_NEEDS_RESET) shares the queue's */
		if ((slept || seen != ev0) &&
		    (mmio_r8(vb.common + CC_STATUS) & STATUS_NEEDS_RESET))
			return -1;
		uint64_t now = now_ns();
		if (deadline && now >= deadline)
			return -2;
		if (now - t0 < 20000) {
			cpu_relax();
		} else {
			wait_event(seen, now + (vb.msix ? 10000000 : 50000));
			slept = 1;
		}
	}
}

/* waits for the next completion; returns its slot, or -1 (device needs a reset) */
static int wait_one(void)
{
	if (wait_used(vb.used_idx, 0)) {
		vb.up = 0;
		return -1;
	}
	volatile uint32_t *ring = (volatile uint32_t *)(vb.used + 2);
	uint32_t id = ring[2 * (vb.used_idx % vb.qsize)];
	vb.used_idx++;
	return (int)(id / 3);
}

static int begin(const char *what)
{
	while (__atomic_exchange_n(&vb_lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	if (vb.state == 0)
		vblk_init();
	if (vb.state > 0 && !vb.up)
		vblk_setup(0);
	if (vb.state < 0) {
		cpu_printf("%s FAILED (%s)", what, vb.why);
		__atomic_store_n(&vb_lock, 0, __ATOMIC_RELEASE);
		return -1;
	}
	uint32_t apic = cpu_apic_id[this_cpu()];
	if (vb.msix && vb.msix_dest != apic) {
		vpci_msix_retarget(vb.msix_entry, apic);
		vb.msix_dest = apic;
	}
	return 0;
}

static void end(void)
{
	__atomic_store_n(&vb_lock, 0, __ATOMIC_RELEASE);
}

/* Runs n blocks through the queue; write: fill before, else check after.
   dest: read straight into dest + block * 4096 instead of the bounce buffer,
   unchecked (diskread). */
static int transfer(const char *what, uint64_t n, uint64_t seed, int write, uint8_t *dest)
{
	if (write && vb.ro) {
		cpu_printf("%s FAILED (the disk is read-only)", what);
		return -1;
	}
	if (n * 8 > vb.capacity) {
		cpu_printf("%s FAILED (disk has only %lu blocks of 4 KiB)", what, vb.capacity / 8);
		return -1;
	}
	uint16_t freelist[NREQ_MAX], nfree = 0;
	for (uint16_t s = 0; s < vb.nreq; s++)
		freelist[nfree++] = s;
	uint64_t next = 0, bad_block = ~0ull;
	const char *bad_reason = 0;
	unsigned inflight = 0;
	int ioerr = 0;
	while (inflight || (next < n && !ioerr)) {
		int pushed = 0;
		while (nfree && next < n && !ioerr) {
			uint16_t s = freelist[--nfree];
			uint64_t cnt = n - next < REQ_BLOCKS ? n - next : REQ_BLOCKS;
			uint8_t *buf = dest ? dest + next * 4096 : vb.buf + s * REQ_BLOCKS * 4096ull;
			if (write)
				for (uint64_t b = 0; b < cnt; b++)
					diskpat_fill((uint64_t *)(buf + b * 4096), seed, next + b);
			vb.hdr[s] = (struct blk_req){write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, 0,
						     next * 8};
			vb.desc[3 * s + 1].addr = (uint64_t)buf;
			vb.desc[3 * s + 1].len = (uint32_t)(cnt * 4096);
			vb.desc[3 * s + 1].flags = write ? 1 : 1 | 2;
			vb.status[s] = 0xff;
			vb.slot_block[s] = next;
			vb.slot_count[s] = cnt;
			push(3 * s);
			next += cnt;
			inflight++;
			pushed = 1;
		}
		if (pushed)
			publish();
		if (!inflight)
			break;
		int ws = wait_one();
		if (ws < 0) {
			cpu_printf("%s FAILED (the device needs a reset)", what);
			return -1;
		}
		unsigned s = (unsigned)ws;
		inflight--;
		freelist[nfree++] = (uint16_t)s;
		if (vb.status[s] != 0) {
			if (!ioerr || vb.slot_block[s] < bad_block)
				bad_block = vb.slot_block[s];
			ioerr = vb.status[s];
			continue;
		}
		if (write || dest)
			continue; /* dest: memverify checks it (diskread) */
		uint8_t *buf = vb.buf + s * REQ_BLOCKS * 4096ull;
		for (uint64_t b = 0; b < vb.slot_count[s]; b++) {
			int word;
			uint64_t blk = vb.slot_block[s] + b;
			const char *r =
			    diskpat_check((const uint64_t *)(buf + b * 4096), seed, blk, &word);
			if (r && blk < bad_block) {
				bad_block = blk;
				bad_reason = r;
			}
		}
	}
	if (ioerr) {
		cpu_printf("%s FAILED block %lu (I/O error, status %d)", what, bad_block, ioerr);
		return -1;
	}
	if (bad_reason) {
		cpu_printf("%s FAILED block %lu (%s)", what, bad_block, bad_reason);
		return -1;
	}
	if (write && vb.flush) {
		vb.hdr[vb.nreq] = (struct blk_req){VIRTIO_BLK_T_FLUSH, 0, 0};
		vb.status[vb.nreq] = 0xff;
		push(3 * vb.nreq);
		publish();
		if (wait_one() < 0) {
			cpu_printf("%s FAILED (the device needs a reset)", what);
			return -1;
		}
		if (vb.status[vb.nreq] != 0) {
			cpu_printf("%s FAILED (flush status %d)", what, vb.status[vb.nreq]);
			return -1;
		}
	}
	return 0;
}

int vblk_diskfill(uint64_t n, uint64_t seed)
{
	if (begin("diskfill"))
		return -1;
	int r = transfer("diskfill", n, seed, 1, 0);
	end();
	if (!r)
		cpu_printf("diskfill n=%lu seed=%lu ok", n, seed);
	return r;
}

int vblk_diskverify(uint64_t n, uint64_t seed)
{
	if (begin("diskverify"))
		return -1;
	int r = transfer("diskverify", n, seed, 0, 0);
	end();
	if (!r)
		cpu_printf("diskverify ok n=%lu", n);
	return r;
}

int vblk_diskread(uint64_t n, uint64_t seed, uint64_t dest)
{
	if (begin("diskread"))
		return -1;
	int r = transfer("diskread", n, seed, 0, (uint8_t *)dest);
	end();
	return r;
}

/* ---- raw access for vhostile ---- */

int vblk_raw_begin(const char *what, struct vblk_raw *r)
{
	if (begin(what))
		return -1;
	if (vblk_raw_reset(r, 0)) {
		cpu_printf("%s FAILED (%s)", what, vb.why);
		end();
		return -1;
	}
	return 0;
}

int vblk_raw_reset(struct vblk_raw *r, uint64_t bad_used)
{
	if (vblk_setup(bad_used))
		return -1;
	/* the standard descriptors are the job's to overwrite now */
	*r = (struct vblk_raw){
		.desc = vb.desc,
		.avail = vb.avail,
		.used = vb.used,
		.qsize = vb.qsize,
		.capacity = vb.capacity,
		.features = vb.features,
	};
	return 0;
}

void vblk_raw_publish(uint16_t avail_idx)
{
	vb.avail_idx = avail_idx;
	publish();
}

int vblk_raw_wait(uint16_t used_idx, uint64_t deadline)
{
	return wait_used(used_idx, deadline);
}

uint8_t vblk_raw_device_status(void)
{
	return mmio_r8(vb.common + CC_STATUS);
}

void vblk_raw_end(void)
{
	vblk_setup(0); /* the standard queue again, for the next disk command */
	end();
}
