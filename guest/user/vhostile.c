/*
 * vhostile SEED N: N requests to the first virtio-blk device, most of them
 * breaking the virtio rules in one way (docs/guest.md lists them), mixed
 * with valid reads and writes whose data is checked.  One request at a
 * time, so each outcome is the request's own: ok, ioerr, unsupp (status
 * byte), skipped (returned with used.len 0), needs-reset (the device set
 * DEVICE_NEEDS_RESET; the job resets it and goes on).  Each case has the
 * outcome cairn gives it; any other outcome, a hang, or data that does not
 * verify is reported.  All in user mode: thousands of requests a second.
 */
#include "vhostile.h"
#include "../diskpat.h"
#include "platform.h"
#include "ulib.h"
#include "vblk.h"

#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13

#define FEAT_RO (1u << 5)
#define FEAT_DISCARD (1u << 13)
#define FEAT_WZ (1u << 14)

#define MODEL_MAX 256		     /* blocks of 4 KiB the valid requests use */
#define BIG_SEG ((32u << 20) + 4096) /* x 128 descriptors: just over 4 GiB */
#define SCRATCH_BYTES (BIG_SEG + (2u << 20))
#define WAIT_NS 5000000000ull
#define MAX_UNEXPECTED 8

enum outcome { O_OK, O_IOERR, O_UNSUPP, O_SKIP, O_RESET, O_TIMEOUT, O_BAD, O_N };
static const char *const onames[O_N] = {"ok",	       "ioerr",	  "unsupp",	   "skipped",
					"needs-reset", "timeout", "bad-used-entry"};

enum mstate { M_UNKNOWN, M_PAT, M_ZERO, M_ANY };

/* Scratch: headers, status bytes, an indirect table, data, and one big
   buffer that 128 descriptors share. */
struct scratch {
	uint32_t hdr[64];
	uint8_t status[64];
	struct vring_desc ind[16];
	uint8_t idbuf[64];
	uint8_t pad[4096 - 256 - 64 - 256 - 64];
	uint8_t data[(1u << 20) + 4096];
};

static struct {
	struct vblk_raw r;
	struct scratch *s;
	uint8_t *big;
	uint64_t seed, i;
	uint16_t aidx, uidx, nd;
	uint64_t model_n;
	uint8_t mstate[MODEL_MAX];
	uint64_t mseed[MODEL_MAX];
	uint64_t count[O_N], valid, hostile, unexpected, resets;
	char first[160];
	int ro;
} h;

/* one request's description and what cairn does with it */
struct req {
	const char *name;
	enum outcome expect;
	uint16_t head;
	uint32_t want_len;  /* used.len when ok */
	int status_in_ram;  /* the status byte: must stay 0xff when skipped */
	int read_blk, nblk; /* ok read: blocks to check against the model */
	int write_blk;	    /* ok write: blocks nblk from write_blk get wseed */
	int model_set;	    /* ok discard/write-zeroes: M_ZERO / M_ANY */
	uint64_t wseed;
	int marker;	   /* data[0..marker) must still be 0x5a */
	int jump;	   /* avail->idx moved by more than the queue size */
	uint64_t bad_used; /* set up the queue with its used ring there first */
};

static uint64_t rnd(uint64_t k)
{
	return pat_mix64(h.seed * 0x100000001b3ull + h.i * 0x9e37ull + k);
}

/* ---- building chains from descriptor 0 up ---- */

static void chain_start(void)
{
	h.nd = 0;
}

static uint16_t add(uint64_t addr, uint32_t len, uint16_t flags)
{
	uint16_t d = h.nd++;
	h.r.desc[d] = (struct vring_desc){addr, len, (uint16_t)(flags | F_NEXT), (uint16_t)(d + 1)};
	return d;
}

static void chain_end(void)
{
	h.r.desc[h.nd - 1].flags &= (uint16_t)~F_NEXT;
}

static uint64_t hdr(uint32_t type, uint64_t sector)
{
	uint32_t *p = h.s->hdr;
	p[0] = type;
	p[1] = 0;
	p[2] = (uint32_t)sector;
	p[3] = (uint32_t)(sector >> 32);
	return (uint64_t)p;
}

static uint64_t status(void)
{
	h.s->status[0] = 0xff;
	return (uint64_t)&h.s->status[0];
}

static uint64_t data(void)
{
	return (uint64_t)h.s->data;
}

/* A region of the model (or, read-only, of the disk) for a request. */
static int pick_blocks(uint64_t k, int max, int *cnt)
{
	uint64_t n = h.model_n;
	*cnt = 1 + (int)(rnd(k) % (uint64_t)max);
	if ((uint64_t)*cnt > n)
		*cnt = (int)n;
	return (int)(rnd(k + 1) % (n - (uint64_t)*cnt + 1));
}

/* an address no RAM is at (cairn and QEMU test VMs: well under 48 GiB) */
static uint64_t bad_addr(uint64_t k, uint32_t *len)
{
	static const uint64_t a[] = {
	    0xd0000000ull, 0xfee00000ull,	  0xc0000000ull,	 0xc00000000ull,
	    1ull << 46,	   0x8000000000000000ull, 0xfffffffffffff000ull, 0};
	uint64_t v = rnd(k) % 8;
	*len = 4096; /* also the length that makes the last one cross the end */
	if (v == 7)  /* from the end of RAM on */
		return ram_top - 512;
	return a[v];
}

static void set_valid_read(struct req *q, int blk, int cnt)
{
	q->read_blk = blk;
	q->nblk = cnt;
	q->want_len = (uint32_t)cnt * 4096 + 1;
}

static void fill_write(struct req *q, int blk, int cnt, uint64_t ws)
{
	for (int b = 0; b < cnt; b++)
		diskpat_fill((uint64_t *)(h.s->data + b * 4096), ws, (uint64_t)(blk + b));
	q->write_blk = blk;
	q->nblk = cnt;
	q->wseed = ws;
	q->want_len = 1;
}

/* ---- the valid requests ---- */

static void build_valid(struct req *q)
{
	uint64_t v = rnd(1) % 10;
	int cnt, blk = pick_blocks(2, 16, &cnt);
	int rw = !h.ro;
	chain_start();
	q->expect = O_OK;
	q->status_in_ram = 1;
	q->want_len = 1;
	if (v <= 2 || (!rw && v <= 5)) {
		q->name = "read";
		add(hdr(T_IN, (uint64_t)blk * 8), 16, 0);
		add(data(), (uint32_t)cnt * 4096, F_WRITE);
		set_valid_read(q, blk, cnt);
	} else if (v <= 5) {
		q->name = "write";
		fill_write(q, blk, cnt, rnd(3) | 1);
		add(hdr(T_OUT, (uint64_t)blk * 8), 16, 0);
		add(data(), (uint32_t)cnt * 4096, 0);
	} else if (v == 6) {
		/* header 8 + 0 + 8 bytes, data in three uneven parts, an empty
		   buffer after the status byte: framing is the driver's choice */
		q->name = "split buffers";
		uint32_t total = (uint32_t)cnt * 4096, a = 1 + (uint32_t)(rnd(4) % 4000),
			 c = 1 + (uint32_t)(rnd(5) % 90), b = total - a - c;
		int wr = rw && (rnd(6) & 1);
		uint64_t hp = hdr(wr ? T_OUT : T_IN, (uint64_t)blk * 8);
		if (wr)
			fill_write(q, blk, cnt, rnd(3) | 1);
		else
			set_valid_read(q, blk, cnt);
		uint16_t f = wr ? 0 : F_WRITE;
		add(hp, 8, 0);
		add(hp + 8, 0, 0);
		add(hp + 8, 8, 0);
		add(data(), a, f);
		add(data() + a, b, f);
		add(data() + a + b, c, f);
		add(status(), 1, F_WRITE);
		add(status() + 1, 0, F_WRITE);
		chain_end();
		return;
	} else if (v == 7) {
		/* as many descriptors as the queue has: 2 + (qsize - 2) of 512 bytes */
		q->name = "queue-size chain";
		int segs = h.r.qsize - 2, wr = rw && (rnd(6) & 1);
		if (wr)
			segs &= ~7; /* whole blocks for the model */
		blk = pick_blocks(2, 1, &cnt);
		if ((uint64_t)blk + (uint64_t)segs / 8 + 1 > h.model_n)
			blk = 0;
		if (wr)
			fill_write(q, blk, segs / 8, rnd(3) | 1);
		add(hdr(wr ? T_OUT : T_IN, (uint64_t)blk * 8), 16, 0);
		for (int i = 0; i < segs; i++)
			add(data() + (uint64_t)i * 512, 512, wr ? 0 : F_WRITE);
		if (!wr) {
			q->read_blk = blk;
			q->nblk = segs / 8; /* the whole blocks */
			q->want_len = (uint32_t)segs * 512 + 1;
		}
	} else if (v == 8) {
		if (rnd(7) & 1) {
			q->name = "flush";
			add(hdr(T_FLUSH, 0), 16, 0);
		} else {
			q->name = "get-id";
			add(hdr(T_GET_ID, 0), 16, 0);
			add((uint64_t)h.s->idbuf, 20, F_WRITE);
			q->want_len = 21;
		}
	} else {
		uint32_t *seg = (uint32_t *)h.s->data;
		int wz = (rnd(7) & 1) && (h.r.features & FEAT_WZ);
		if (!rw || !(h.r.features & (wz ? FEAT_WZ : FEAT_DISCARD))) {
			q->name = "read, no data";
			add(hdr(T_IN, 0), 16, 0);
		} else {
			q->name = wz ? "write-zeroes" : "discard";
			seg[0] = (uint32_t)blk * 8;
			seg[1] = 0;
			seg[2] = (uint32_t)cnt * 8;
			seg[3] = wz ? (uint32_t)(rnd(8) & 1) : 0; /* WZ may unmap */
			add(hdr(wz ? T_WRITE_ZEROES : T_DISCARD, 0), 16, 0);
			add(data(), 16, 0);
			q->write_blk = blk;
			q->nblk = cnt;
			q->model_set = wz ? M_ZERO : M_ANY;
		}
	}
	add(status(), 1, F_WRITE);
	chain_end();
}

/* ---- the hostile ones ---- */

#define NHOSTILE 22

static void build_hostile(struct req *q, unsigned kind)
{
	int cnt, blk = pick_blocks(10, 4, &cnt);
	uint32_t len = 4096;
	q->status_in_ram = 1;
	chain_start();
	switch (kind) {
	case 0:
		q->name = "descriptor pointing at itself";
		q->expect = O_SKIP;
		add(hdr(T_IN, 0), 16, 0);
		h.r.desc[0].next = 0;
		return;
	case 1:
		q->name = "cyclic chain";
		q->expect = O_SKIP;
		add(hdr(T_IN, 0), 16, 0);
		add(data(), 4096, F_WRITE);
		add(status(), 1, F_WRITE);
		h.r.desc[2].next = (uint16_t)(rnd(11) % 3); /* back to 0, 1 or itself */
		return;
	case 2:
		q->name = "chain longer than the queue";
		q->expect = O_SKIP;
		add(hdr(T_IN, 0), 16, 0);
		for (int i = 1; i < h.r.qsize; i++)
			add(data() + (uint64_t)(i % 256) * 512, 512, F_WRITE);
		h.r.desc[h.r.qsize - 1].next = (uint16_t)(1 + rnd(11) % (h.r.qsize - 1u));
		return;
	case 3:
		q->name = "next index out of range";
		q->expect = O_SKIP;
		add(hdr(T_IN, 0), 16, 0);
		add(data(), 4096, F_WRITE);
		add(status(), 1, F_WRITE);
		h.r.desc[1].next = (uint16_t)(h.r.qsize + rnd(11) % (65536u - h.r.qsize));
		return;
	case 4:
		q->name = "head index out of range";
		q->expect = O_RESET;
		add(hdr(T_IN, 0), 16, 0);
		add(status(), 1, F_WRITE);
		chain_end();
		q->head = (uint16_t)(h.r.qsize + rnd(11) % (65536u - h.r.qsize));
		return;
	case 5:
		q->name = "avail idx past the ring";
		q->expect = O_RESET;
		add(hdr(T_IN, 0), 16, 0);
		add(status(), 1, F_WRITE);
		chain_end();
		q->jump = 1;
		return;
	case 6:
	case 7: {
		int out = !h.ro && kind == 7;
		uint64_t a = bad_addr(12, &len);
		q->name = out ? "write from outside RAM" : "read into outside RAM";
		q->expect = O_IOERR;
		add(hdr(out ? T_OUT : T_IN, (uint64_t)blk * 8), 16, 0);
		add(data(), 4096, out ? 0 : F_WRITE);
		add(a, len, out ? 0 : F_WRITE);
		break;
	}
	case 8:
		q->name = "status byte outside RAM";
		q->expect = O_SKIP;
		q->status_in_ram = 0;
		add(hdr(T_IN, (uint64_t)blk * 8), 16, 0);
		add(data(), 4096, F_WRITE);
		add(bad_addr(12, &len), len, F_WRITE);
		chain_end();
		return;
	case 9:
		q->name = "header outside RAM";
		q->expect = O_IOERR;
		add(bad_addr(12, &len), len, 0);
		add(data(), 4096, F_WRITE);
		break;
	case 10: {
		static const uint32_t big[] = {0xffffffffu, 0xfffff000u, 0xfffffe00u, 0xf0000000u};
		q->name = "buffer of nearly 4 GiB";
		q->expect = O_IOERR;
		add(hdr(T_IN, (uint64_t)blk * 8), 16, 0);
		add(data(), big[rnd(12) % 4], F_WRITE);
		break;
	}
	case 11:
		/* the 128 buffers add up to 4 GiB + 512 KiB (one 32 MiB area):
		   a device that added used.len in 32 bits would report 512 KiB */
		q->name = "buffers summing over 4 GiB";
		q->expect = O_IOERR;
		add(hdr(T_IN, 0), 16, 0);
		for (int i = 0; i < 128; i++)
			add((uint64_t)h.big, BIG_SEG, F_WRITE);
		break;
	case 12:
		q->name = "read into a device-readable buffer";
		q->expect = O_IOERR;
		q->marker = cnt * 4096;
		memset(h.s->data, 0x5a, (size_t)q->marker);
		add(hdr(T_IN, (uint64_t)blk * 8), 16, 0);
		add(data(), (uint32_t)cnt * 4096, 0);
		break;
	case 13:
		q->name = "write from a device-writable buffer";
		q->expect = O_IOERR;
		fill_write(q, blk, cnt, rnd(3) | 1); /* must not reach the disk */
		q->nblk = 0;
		add(hdr(T_OUT, (uint64_t)blk * 8), 16, 0);
		add(data(), (uint32_t)cnt * 4096, F_WRITE);
		break;
	case 14:
		q->name = "device-readable status after writable data";
		q->expect = O_SKIP;
		q->marker = 4096;
		memset(h.s->data, 0x5a, 4096);
		add(hdr(T_IN, (uint64_t)blk * 8), 16, 0);
		add(data(), 4096, F_WRITE);
		add(status(), 1, 0);
		chain_end();
		return;
	case 15:
		q->name = (rnd(12) & 1) ? "no device-writable byte" : "empty status buffer";
		q->expect = O_SKIP;
		fill_write(q, blk, cnt, rnd(3) | 1);
		q->nblk = 0;
		add(hdr(T_OUT, (uint64_t)blk * 8), 16, 0);
		add(data(), (uint32_t)cnt * 4096, 0);
		if (q->name[0] == 'n')
			add(status(), 1, 0);
		else
			add(status(), 0, F_WRITE);
		chain_end();
		return;
	case 16:
		q->name = (rnd(12) & 1) ? "device-writable header" : "header shorter than 16 bytes";
		q->expect = O_IOERR;
		if (q->name[0] == 'd') {
			add(hdr(T_IN, (uint64_t)blk * 8), 16, F_WRITE);
			add(data(), 4096, F_WRITE);
		} else {
			add(hdr(T_IN, (uint64_t)blk * 8), (uint32_t)(rnd(13) % 16), 0);
		}
		break;
	case 17: {
		static const uint32_t t[] = {2,	 3,  5,	 6,  7,		  9,	      10,
					     12, 14, 15, 16, 0x80000000u, 0xffffffffu};
		q->name = "unknown request type";
		q->expect = O_UNSUPP;
		uint32_t ty = t[rnd(12) % 13];
		if (rnd(13) & 1)
			ty = 17 + (uint32_t)(rnd(14) % 1000);
		add(hdr(ty, 0), 16, 0);
		add(data(), 512, F_WRITE);
		break;
	}
	case 18: {
		/* past the end, straddling it, sector * 512 overflowing, and
		   (read-only disk) writes */
		uint64_t c = h.r.capacity, v = rnd(12) % 5;
		static const uint64_t far[] = {1ull << 55, ~0ull, (~0ull / 512) + 1};
		q->expect = O_IOERR;
		if (h.ro && v >= 3) {
			q->name = "write to a read-only disk";
			add(hdr(v == 3 ? T_OUT : T_WRITE_ZEROES, (uint64_t)blk * 8), 16, 0);
			((uint32_t *)h.s->data)[2] = 8;
			add(data(), v == 3 ? 4096 : 16, 0);
			break;
		}
		q->name = "sectors outside the disk";
		uint64_t sec = v == 0 ? c : v == 1 ? c - 1 : far[rnd(13) % 3];
		add(hdr((rnd(14) & 1) && !h.ro ? T_OUT : T_IN, sec), 16, 0);
		add(data(), 4096, h.s->hdr[0] == T_OUT ? 0 : F_WRITE);
		break;
	}
	case 19:
		q->name = "data not a multiple of 512 bytes";
		q->expect = O_IOERR;
		add(hdr(T_IN, (uint64_t)blk * 8), 16, 0);
		add(data(), 512 * (uint32_t)(rnd(12) % 8) + 1 + (uint32_t)(rnd(13) % 511), F_WRITE);
		break;
	case 20: {
		/* not negotiated (cairn does not offer VIRTIO_F_INDIRECT_DESC) */
		struct vring_desc *t = h.s->ind;
		t[0] = (struct vring_desc){hdr(T_IN, (uint64_t)blk * 8), 16, F_NEXT, 1};
		t[1] = (struct vring_desc){data(), 4096, F_WRITE | F_NEXT, 2};
		t[2] = (struct vring_desc){status(), 1, F_WRITE, 0};
		if (rnd(12) & 1) {
			q->name = "indirect table, not negotiated";
			q->expect = O_SKIP;
			add((uint64_t)t, 48, F_INDIRECT);
			chain_end();
			return;
		}
		q->name = "indirect table and NEXT, not negotiated";
		q->expect = O_IOERR;
		add((uint64_t)t, 48, F_INDIRECT);
		break;
	}
	default: {
		/* discard / write-zeroes segments: bad range or flags */
		uint32_t *seg = (uint32_t *)h.s->data, v = (uint32_t)(rnd(12) % 4);
		int wz = (rnd(13) & 1) != 0;
		q->name = v == 3   ? "short discard segment"
			  : v == 2 ? "discard flags"
				   : "discard range";
		q->expect = v == 2 && !h.ro ? O_UNSUPP : O_IOERR;
		seg[0] = v == 0 ? (uint32_t)h.r.capacity : (uint32_t)blk * 8;
		seg[1] = v == 0 ? (uint32_t)(h.r.capacity >> 32) : 0;
		seg[2] = v == 1 ? 0xffffffffu : 8;
		seg[3] = v == 2 ? (wz ? 2u << (rnd(14) % 30) : 1u << (rnd(14) % 31)) : 0;
		add(hdr(wz ? T_WRITE_ZEROES : T_DISCARD, 0), 16, 0);
		add(data(), v == 3 ? 8 : 16, 0);
		break;
	}
	}
	add(status(), 1, F_WRITE);
	chain_end();
}

/* ---- running one request ---- */

static void unexpected(struct req *q, const char *what, const char *got)
{
	h.unexpected++;
	if (h.unexpected == 1)
		fmt(h.first, sizeof(h.first), "request %lu '%s': %s %s", h.i, q->name, what, got);
	if (h.unexpected <= 5)
		cpu_printf("vhostile: request %lu '%s': %s %s", h.i, q->name, what, got);
}

static void device_reset(uint64_t bad_used)
{
	vblk_raw_reset(&h.r, bad_used);
	h.aidx = h.uidx = 0;
}

/* reads the blocks back and compares them with the model */
static void check_blocks(struct req *q, int blk, int cnt)
{
	for (int b = 0; b < cnt; b++) {
		const uint64_t *p = (const uint64_t *)(h.s->data + b * 4096);
		uint64_t k = (uint64_t)(blk + b);
		const char *bad = 0;
		int w, zero = 1;
		for (int j = 0; j < 512; j++)
			zero &= p[j] == 0;
		switch (h.mstate[k]) {
		case M_PAT:
			bad = diskpat_check(p, h.mseed[k], k, &w);
			break;
		case M_ZERO:
			bad = zero ? 0 : "not zero after write-zeroes";
			break;
		case M_UNKNOWN:
			bad = zero ? 0 : diskpat_check(p, p[2], k, &w);
			break;
		default:
			break;
		}
		if (bad) {
			char why[64];
			fmt(why, sizeof(why), "block %lu: %s", k, bad);
			unexpected(q, "data", why);
			return;
		}
	}
}

static enum outcome run(struct req *q)
{
	if (q->bad_used)
		device_reset(q->bad_used);
	h.s->status[0] = 0xff;
	h.r.avail[2 + h.aidx % h.r.qsize] = q->head;
	h.aidx = (uint16_t)(h.aidx + (q->jump ? h.r.qsize + 1 + rnd(20) % 30000 : 1));
	vblk_raw_publish(h.aidx);
	int w = vblk_raw_wait(h.uidx, now_ns() + WAIT_NS);
	if (w == -1)
		return O_RESET;
	if (w == -2)
		return O_TIMEOUT;
	volatile uint32_t *e = (volatile uint32_t *)(h.r.used + 2) + 2 * (h.uidx % h.r.qsize);
	uint32_t id = e[0], len = e[1];
	h.uidx++;
	if (id != q->head || h.r.used[1] != h.uidx)
		return O_BAD;
	if (len == 0)
		return q->status_in_ram && h.s->status[0] != 0xff ? O_BAD : O_SKIP;
	uint8_t st = h.s->status[0];
	if (st > 2 || len != (st ? 1 : q->want_len))
		return O_BAD;
	return st == 0 ? O_OK : st == 1 ? O_IOERR : O_UNSUPP;
}

static void one(uint64_t i)
{
	struct req q;
	memset(&q, 0, sizeof(q));
	h.i = i;
	q.write_blk = -1;
	int valid = rnd(0) % 10 < 4;
	if (valid) {
		build_valid(&q);
		h.valid++;
	} else {
		unsigned kind = (unsigned)(rnd(9) % (NHOSTILE + 1));
		if (kind == NHOSTILE) {
			/* a used ring outside RAM: a valid request the device
			   cannot answer, so it must ask for a reset */
			build_valid(&q);
			q.name = "used ring outside RAM";
			q.expect = O_RESET;
			q.bad_used = 0xd0000000;
		} else {
			build_hostile(&q, kind);
		}
		h.hostile++;
	}
	enum outcome o = run(&q);
	h.count[o]++;
	if (o == O_RESET || o == O_TIMEOUT || q.bad_used) {
		h.resets++;
		device_reset(0);
	}
	if (o != q.expect) {
		unexpected(&q, onames[q.expect], onames[o]);
		return;
	}
	if (q.marker)
		for (int b = 0; b < q.marker; b++)
			if (h.s->data[b] != 0x5a) {
				unexpected(&q, "device wrote", "into a device-readable buffer");
				return;
			}
	if (o != O_OK)
		return;
	if (q.nblk && q.write_blk < 0 && !q.model_set)
		check_blocks(&q, q.read_blk, q.nblk);
	for (int b = 0; q.write_blk >= 0 && b < q.nblk; b++) {
		h.mstate[q.write_blk + b] = (uint8_t)(q.model_set ? q.model_set : M_PAT);
		h.mseed[q.write_blk + b] = q.wseed;
	}
}

/* every block of the model, read back */
static void final_verify(void)
{
	for (uint64_t b = 0; b < h.model_n; b += 16) {
		struct req q;
		memset(&q, 0, sizeof(q));
		int cnt = h.model_n - b < 16 ? (int)(h.model_n - b) : 16;
		q.name = "final read-back";
		q.expect = O_OK;
		q.status_in_ram = 1;
		chain_start();
		add(hdr(T_IN, b * 8), 16, 0);
		add(data(), (uint32_t)cnt * 4096, F_WRITE);
		add(status(), 1, F_WRITE);
		chain_end();
		set_valid_read(&q, (int)b, cnt);
		enum outcome o = run(&q);
		if (o != O_OK) {
			unexpected(&q, "ok", onames[o]);
			return;
		}
		check_blocks(&q, (int)b, cnt);
	}
}

int vhostile_run(uint64_t seed, uint64_t n)
{
	/* the job's state is shared: it is touched only with the disk held */
	static uint64_t scratch;
	struct vblk_raw r;
	if (vblk_raw_begin("vhostile", &r))
		return -1;
	if (!scratch && !(scratch = pool_alloc(SCRATCH_BYTES))) {
		vblk_raw_end();
		cpu_printf("vhostile FAILED (no %u MiB free)", SCRATCH_BYTES >> 20);
		return -1;
	}
	memset(&h, 0, sizeof(h));
	h.r = r;
	h.s = (struct scratch *)scratch;
	h.big = (uint8_t *)scratch + sizeof(struct scratch);
	h.seed = seed;
	uint64_t t0 = now_ns();
	h.ro = (h.r.features & FEAT_RO) != 0;
	h.model_n = h.r.capacity / 8 < MODEL_MAX ? h.r.capacity / 8 : MODEL_MAX;
	if (h.model_n < 64 || h.r.qsize < 8) {
		vblk_raw_end();
		cpu_printf("vhostile FAILED (disk of %lu blocks, queue of %u)", h.model_n,
			   h.r.qsize);
		return -1;
	}
	uint64_t i;
	for (i = 0; i < n && h.unexpected < MAX_UNEXPECTED; i++)
		one(i);
	if (h.unexpected < MAX_UNEXPECTED)
		final_verify();
	vblk_raw_end();
	uint64_t ms = (now_ns() - t0) / 1000000;
	if (h.unexpected) {
		cpu_printf("vhostile FAILED (%lu unexpected results in %lu requests, first: %s)",
			   h.unexpected, i, h.first);
		return -1;
	}
	cpu_printf("vhostile seed=%lu n=%lu ok: valid=%lu hostile=%lu ok=%lu ioerr=%lu unsupp=%lu "
		   "skipped=%lu needs-reset=%lu ms=%lu",
		   seed, n, h.valid, h.hostile, h.count[O_OK], h.count[O_IOERR], h.count[O_UNSUPP],
		   h.count[O_SKIP], h.count[O_RESET], ms);
	return 0;
}
