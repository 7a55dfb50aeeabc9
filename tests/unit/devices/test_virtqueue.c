/* vq_pop and vq_bad_chain_status on a fake guest: one RAM slot of 1 MiB
 * (no KVM), the rings at fixed addresses, one chain per case.  The same
 * cases as the test guest's vhostile job, without a VM, so a failure points
 * at the parser; also a starting point for fuzzing it. */
#include "devices/virtqueue.h"
#include "kvm/vm.h"
#include "test.h"
#include "vdev_test.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define RAM (1u << 20)
#define QSIZE 16
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define BUF 0x10000
#define F_INDIRECT 4

static uint8_t *ram;
static struct vm vm;
static struct virtqueue vq;
static struct vq_elem elem;
static uint16_t avail_idx;

static struct desc *desc(unsigned i)
{
	return (struct desc *)(ram + DESC) + i;
}

static void setup(void)
{
	memset(ram, 0, RAM);
	vq_reset(&vq);
	vq.size = QSIZE;
	vq.desc_gpa = DESC;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	vq.ready = true;
	avail_idx = 0;
}

/* D[i] = {addr, len, flags}, chained in order (NEXT on all but the last) */
static void chain(unsigned n, const struct desc *d)
{
	for (unsigned i = 0; i < n; i++) {
		*desc(i) = d[i];
		if (i + 1 < n) {
			desc(i)->flags |= F_NEXT;
			desc(i)->next = (uint16_t)(i + 1);
		}
	}
}

static int pop_head(uint16_t head)
{
	uint16_t *ring = (uint16_t *)(ram + AVAIL + 4);
	ring[avail_idx % QSIZE] = head;
	avail_idx++;
	*(uint16_t *)(ram + AVAIL + 2) = avail_idx;
	return vq_pop(&vq, &elem);
}

static const struct desc blk_read[3] = {
    {BUF, 16, 0, 0}, {BUF + 0x1000, 4096, F_WRITE, 0}, {BUF + 0x3000, 1, F_WRITE, 0}};

static void test_valid(void)
{
	setup();
	chain(3, blk_read);
	CHECK_EQ(pop_head(0), 1);
	CHECK_EQ(elem.head, 0);
	CHECK_EQ(elem.nout, 1);
	CHECK_EQ(elem.nin, 2);
	CHECK(elem.in[1].iov_base == ram + BUF + 0x3000);
	CHECK_EQ(vq_pop(&vq, &elem), 0); /* then empty */
	vq_push(&vq, 0, 4097);
	CHECK_EQ(*(uint16_t *)(ram + USED + 2), 1);
	CHECK_EQ(*(uint32_t *)(ram + USED + 8), 4097);
}

/* A bad chain: -EBADMSG, the entry consumed, and the status byte where
 * one can be written. */
static void bad(const char *what, uint8_t *want_status)
{
	uint16_t before = vq.last_avail;
	int r = pop_head(0);
	if (r != -EBADMSG)
		fprintf(stderr, "%s: vq_pop %d\n", what, r);
	CHECK_EQ(r, -EBADMSG);
	CHECK_EQ((uint16_t)(vq.last_avail - before), 1);
	CHECK(vq_bad_chain_status(&vq, 0) == want_status);
}

static void test_bad_chains(void)
{
	uint8_t *status = ram + BUF + 0x3000;
	struct desc d[QSIZE + 1];

	setup();
	chain(3, blk_read);
	desc(0)->next = 0; /* itself */
	bad("self loop", NULL);

	setup();
	chain(3, blk_read);
	desc(2)->flags |= F_NEXT;
	desc(2)->next = 1;
	bad("loop", NULL);

	setup();
	chain(3, blk_read);
	desc(1)->next = QSIZE + 3;
	bad("next out of range", NULL);

	setup();
	for (unsigned i = 0; i < QSIZE; i++)
		d[i] = (struct desc){BUF, 512, F_WRITE, 0};
	d[0].flags = 0;
	chain(QSIZE, d);
	desc(QSIZE - 1)->flags |= F_NEXT;
	desc(QSIZE - 1)->next = 5;
	bad("longer than the queue", NULL);

	static const uint64_t outside[] = {RAM, RAM - 100, 0xd0000000, ~0ull - 10, 1ull << 63};
	for (unsigned i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
		setup();
		chain(3, blk_read);
		desc(1)->addr = outside[i];
		bad("data outside RAM", status);
		setup();
		chain(3, blk_read);
		desc(2)->addr = outside[i];
		desc(2)->len = 4096; /* so that RAM - 100 crosses the end too */
		bad("status outside RAM", NULL);
	}

	setup();
	chain(3, blk_read);
	desc(1)->len = 0xffffffffu;
	bad("len near 4 GiB", status);

	setup();
	chain(3, blk_read);
	desc(1)->addr = 0;
	desc(1)->len = RAM; /* all of RAM, overlapping the rings: allowed */
	CHECK_EQ(pop_head(0), 1);

	setup();
	chain(3, blk_read);
	desc(2)->flags = 0; /* status device-readable after writable data */
	bad("readable after writable", NULL);

	setup();
	chain(3, blk_read);
	desc(0)->flags |= F_WRITE;	      /* header writable, then... */
	desc(1)->flags &= (uint16_t)~F_WRITE; /* readable data after it */
	bad("writable header, readable data", status);

	/* indirect, not negotiated; negotiated but nested or with NEXT */
	setup();
	struct desc *t = (struct desc *)(ram + BUF + 0x8000);
	memcpy(t, blk_read, sizeof(blk_read));
	t[0].flags = F_NEXT, t[0].next = 1;
	t[1].flags |= F_NEXT, t[1].next = 2;
	*desc(0) = (struct desc){BUF + 0x8000, 48, F_INDIRECT, 0};
	bad("indirect, not negotiated", NULL);
	vq.indirect = true;
	CHECK_EQ(pop_head(0), 1);
	CHECK_EQ(elem.nin, 2);
	desc(0)->flags = F_INDIRECT | F_NEXT;
	bad("indirect with NEXT", NULL);
	desc(0)->flags = F_INDIRECT;
	desc(0)->len = 40;
	bad("indirect of a partial entry", NULL);
	desc(0)->len = 48;
	t[1].flags |= F_INDIRECT;
	bad("nested indirect", NULL);
}

/* A queue the driver broke: another error, the entry not consumed. */
static void test_broken_queue(void)
{
	setup();
	chain(3, blk_read);
	int r = pop_head(QSIZE); /* head index out of range */
	CHECK(r < 0 && r != -EBADMSG);
	CHECK_EQ(vq.last_avail, 0);

	setup();
	chain(3, blk_read);
	*(uint16_t *)(ram + AVAIL + 2) = QSIZE + 1;
	r = vq_pop(&vq, &elem);
	CHECK(r < 0 && r != -EBADMSG);
	*(uint16_t *)(ram + AVAIL + 2) = 0xffff; /* behind */
	r = vq_pop(&vq, &elem);
	CHECK(r < 0 && r != -EBADMSG);

	setup();
	chain(3, blk_read);
	vq.used_gpa = RAM - 8; /* the used ring does not fit */
	r = pop_head(0);
	CHECK(r < 0 && r != -EBADMSG);
}

/* The sum limit: a chain of more than 4 GiB - 1 bytes, with a slot large
 * enough that each buffer maps (a sparse 5 GiB reservation, never touched). */
static void test_sum_over_4g(void)
{
	uint64_t big = 5ull << 30;
	uint8_t *p = mmap(NULL, big, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "sum over 4 GiB: no 5 GiB of address space, skipped\n");
		return;
	}
	struct vm_mem_slot keep = vm.slots[0];
	uint8_t *keep_ram = ram;
	vm.slots[0] = (struct vm_mem_slot){0, 0, big, p};
	ram = p;
	setup();
	struct desc d[3] = {
	    {BUF, 16, 0, 0}, {0x100000, 0xfff00000u, F_WRITE, 0}, {0x100000, 0x100000, F_WRITE, 0}};
	chain(3, d);
	bad("sum of 4 GiB", p + 0x100000 + 0x100000 - 1);
	d[2].len = 0xfffef; /* 16 + 0xfff00000 + 0xfffef = 0xffffffff: the limit */
	setup();
	chain(3, d);
	CHECK_EQ(pop_head(0), 1);
	munmap(p, big);
	vm.slots[0] = keep;
	ram = keep_ram;
}

int main(void)
{
	ram = calloc(1, RAM);
	vm.slots[0] = (struct vm_mem_slot){0, 0, RAM, ram};
	vm.nslots = 1;
	vq.vm = &vm;
	test_valid();
	test_bad_chains();
	test_broken_queue();
	test_sum_over_4g();
	free(ram);
	TEST_DONE();
}
