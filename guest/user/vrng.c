/*
 * virtio-rng over the modern virtio-pci transport, in user mode like
 * vblk.c: queue 0 gets one device-writable buffer of up to BUF bytes at a
 * time, the used ring is polled (requests complete within the device's
 * notify handling, so there is nothing to sleep for).
 */
#include "vrng.h"
#include "pci.h"
#include "ulib.h"
#include "vpci.h"

#define QSIZE 16
#define BUF 4096
#define F_WRITE 2

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static struct {
	int state; /* 0 not probed, 1 up, -1 unusable (why) */
	char why[96];
	uint64_t common, notify;
	struct vdesc *desc;
	volatile uint16_t *avail, *used;
	uint16_t size, avail_idx, used_idx;
	uint8_t *buf;
} vr;

static int fail(const char *why)
{
	fmt(vr.why, sizeof(vr.why), "%s", why);
	vr.state = -1;
	return -1;
}

static int setup(void)
{
	uint32_t bdf = 0;
	int found = 0;
	for (uint32_t dev = 0; dev < 32 && !found; dev++) {
		uint32_t id = pci_r32(dev << 3, 0);
		if ((id & 0xffff) == 0x1af4 && (id >> 16) == 0x1044) {
			bdf = dev << 3;
			found = 1;
		}
	}
	if (!found)
		return fail("no virtio-rng PCI device (1af4:1044) on bus 0");
	struct vpci_caps c;
	vpci_find_caps(bdf, &c);
	if (!c.common || !c.notify)
		return fail("virtio-pci capabilities missing");
	if (c.common + 64 > ((uint64_t)IDMAP_GIB << 30))
		return fail("BAR above the identity map");
	uint64_t cc = c.common;
	uint32_t f0 = 0;
	const char *why = vpci_negotiate(cc, 0, &f0);
	if (why)
		return fail(why);
	uint64_t mem = pool_alloc(3 * 4096 + BUF);
	if (!mem)
		return fail("no memory for the virtqueue");
	memset((void *)mem, 0, 3 * 4096);
	vr.size = vpci_queue_size(cc, 0, QSIZE);
	if (vr.size < 1)
		return fail("virtqueue too small");
	vr.desc = (struct vdesc *)mem;
	vr.avail = (volatile uint16_t *)(mem + 4096);
	vr.used = (volatile uint16_t *)(mem + 8192);
	vr.buf = (uint8_t *)(mem + 3 * 4096);
	mmio_w16(cc + CC_QSIZE, vr.size);
	vpci_queue_addrs(cc, (uint64_t)vr.desc, (uint64_t)vr.avail, (uint64_t)vr.used);
	mmio_w16(cc + CC_QMSIX, 0xffff); /* polled */
	vr.notify = c.notify + (uint64_t)mmio_r16(cc + CC_QNOTIFYOFF) * c.notify_mult;
	mmio_w16(cc + CC_QENABLE, 1);
	mmio_w16(cc + CC_MSIX, 0xffff);
	mmio_w8(cc + CC_STATUS, 1 | 2 | 8 | 4);
	vr.common = cc;
	cpu_printf("virtio-rng 00:%02x.0 queue=%u", bdf >> 3, vr.size);
	return 0;
}

/* One request for up to LEN bytes: how many the device wrote, or -1. */
static int request(uint32_t len)
{
	vr.desc[0] = (struct vdesc){(uint64_t)vr.buf, len, F_WRITE, 0};
	vr.avail[2 + vr.avail_idx % vr.size] = 0;
	vr.avail_idx++;
	barrier();
	vr.avail[1] = vr.avail_idx;
	barrier();
	mmio_w16(vr.notify, 0);
	for (uint64_t t0 = now_ns();
	     __atomic_load_n(&vr.used[1], __ATOMIC_ACQUIRE) == vr.used_idx;) {
		if ((mmio_r8(vr.common + CC_STATUS) & STATUS_NEEDS_RESET) ||
		    now_ns() - t0 > 5 * NS_PER_SEC)
			return -1;
		cpu_relax();
	}
	volatile uint32_t *ring = (volatile uint32_t *)(vr.used + 2);
	uint32_t got = ring[2 * (vr.used_idx % vr.size) + 1];
	vr.used_idx++;
	return got <= len ? (int)got : -1;
}

int vrng_read(uint64_t n)
{
	if (vr.state == 0)
		vr.state = setup() == 0 ? 1 : -1;
	if (vr.state < 0) {
		cpu_printf("rng FAILED (%s)", vr.why);
		return -1;
	}
	uint64_t h = 0xcbf29ce484222325ull, done = 0, requests = 0, empty = 0;
	while (done < n) {
		uint32_t want = n - done < BUF ? (uint32_t)(n - done) : BUF;
		int got = request(want);
		requests++;
		if (got < 0) {
			cpu_printf("rng FAILED (no answer or a bad length after %lu bytes)", done);
			return -1;
		}
		/* a host pool not ready yet gives short answers: a few are fine */
		if (got == 0 && ++empty > 100) {
			cpu_printf("rng FAILED (only empty answers after %lu bytes)", done);
			return -1;
		}
		for (int i = 0; i < got; i++) {
			h ^= vr.buf[i];
			h *= 0x100000001b3ull;
		}
		done += (uint64_t)got;
	}
	cpu_printf("rng %lu bytes=%lu requests=%lu fnv=%016lx", n, done, requests, h);
	return 0;
}
