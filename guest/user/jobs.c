/*
 * Jobs: "[@N ]command args" separated by ';'.  Each CPU runs its own jobs in
 * order; the work is user-mode loops.
 */
#include "jobs.h"
#include "../diskpat.h"
#include "platform.h"
#include "ulib.h"
#include "inet.h"
#include "netperf.h"
#include "vblk.h"
#include "vhostile.h"
#include "vmgenid.h"
#include "vrng.h"

#define MAX_JOBS 256
#define JOB_LEN 256

static struct job {
	unsigned cpu;
	char text[JOB_LEN];
} jobs[MAX_JOBS];
static unsigned njobs;

/* What memverify checks (docs/guest.md, "What memverify checks"): the
   ranges of the region filled since the last plain `memfill MB SEED`, each
   with the seed (or disk blocks) it holds, and the memscatter writes since,
   kept as their parameters (a page's scattered word is computed, never
   stored: a side table in guest RAM would add its own dirty pages). */
#define MAX_FILLS 32
#define MAX_SCATTERS 256
#define SCATTER_SALT 0x5ca77e4ed5ca77e4ull

#define NOT_DISK (~0ull)

struct fill {
	uint64_t start, end; /* region offsets, 4 KiB aligned */
	uint64_t seed, seq;
	uint64_t disk; /* diskread: the region offset of block 0; memfill: NOT_DISK */
};

/* memscatter's pages: page (b + i * a) mod pages for i < n, a Weyl sequence
   (a near 0.618 * pages, coprime to it) so the pages spread evenly over the
   region, and invertible: i = (p - b) * ainv mod pages.  Word (v >> 55) of
   page i gets v = pat_word(seed ^ SCATTER_SALT, i) | 1. */
struct scatter {
	uint64_t seq, seed, n, pages, a, ainv, b;
};

/* per-CPU state of memfill/memverify/memscatter/flip/dirty */
static struct ustate {
	uint64_t region, region_bytes; /* memfill region */
	struct fill fills[MAX_FILLS];
	unsigned nfills;
	struct scatter *scatters; /* MAX_SCATTERS, from the pool at the first memscatter */
	unsigned nscatters;
	uint64_t seq;			       /* orders fills and scatters */
	uint64_t last_off, last_bytes, seed; /* the last memfill (flip) */
	int filled;
	uint64_t flips;
	uint64_t dirty, dirty_bytes;
} ust[MAX_CPUS];

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Splits off one job from *s (up to ';' or end); returns 0 when none left. */
static int next_job(const char **s, unsigned *cpu, int *has_cpu, char *out)
{
	const char *p = *s;
	while (*p == ';' || is_space(*p))
		p++;
	if (!*p)
		return 0;
	*has_cpu = 0;
	*cpu = 0;
	if (*p == '@') {
		p++;
		*has_cpu = 1;
		while (*p >= '0' && *p <= '9')
			*cpu = *cpu * 10 + (unsigned)(*p++ - '0');
		while (is_space(*p))
			p++;
	}
	int n = 0;
	while (*p && *p != ';') {
		if (n < JOB_LEN - 1)
			out[n++] = *p;
		p++;
	}
	while (n && is_space(out[n - 1]))
		n--;
	out[n] = 0;
	*s = p;
	return 1;
}

static unsigned jobs_dropped;

void jobs_parse(const char *cl)
{
	struct job j;
	int has_cpu;
	while (next_job(&cl, &j.cpu, &has_cpu, j.text))
		if (j.text[0] && njobs < MAX_JOBS)
			jobs[njobs++] = j;
		else if (j.text[0])
			jobs_dropped++;
}

void jobs_warn_unplaced(void)
{
	if (jobs_dropped)
		con_printf("cairn-guest: warning: more than %u jobs: %u ignored", MAX_JOBS,
			   jobs_dropped);
	for (unsigned i = 0; i < njobs; i++)
		if (jobs[i].cpu >= ncpus)
			con_printf("cairn-guest: warning: no cpu%u for job '%s'", jobs[i].cpu,
				   jobs[i].text);
}

/* ---- commands ---- */

static void failed(void)
{
	verify_failed = 1;
}

static int arg_u64(int argc, char **argv, int i, uint64_t def, uint64_t *v)
{
	if (i >= argc) {
		*v = def;
		return 0;
	}
	if (parse_u64(argv[i], v)) {
		cpu_printf("%s: bad number '%s'", argv[0], argv[i]);
		return -1;
	}
	return 0;
}

static void cmd_count(uint64_t hz)
{
	if (!hz || hz > 100000) {
		cpu_printf("count: HZ must be 1..100000");
		return;
	}
	uint64_t period = NS_PER_SEC / hz, start = now_ns();
	for (uint64_t k = 1;; k++) {
		sleep_until(start + k * period);
		/* more than a period late (the VM was paused, or restored): go on
		   from now instead of printing the missed ticks in a burst */
		uint64_t now = now_ns();
		if (now > start + (k + 1) * period)
			start = now - k * period;
		cpu_printf("tick=%lu", k);
	}
}

static uint64_t fill_region(uint64_t *p, uint64_t words, uint64_t seed)
{
	uint64_t sum = 0, z = seed;
	for (uint64_t i = 0; i < words; i++) {
		z += PAT_GOLDEN;
		uint64_t w = pat_mix64(z);
		p[i] = w;
		sum += w;
	}
	return sum;
}

/* Takes a region of at least `bytes` for this CPU; keep: copy what the old
   one holds into the new one (memfill with an offset past the region). */
static int region_reserve(struct ustate *u, uint64_t bytes, int keep)
{
	if (u->region_bytes >= bytes)
		return 0;
	uint64_t r = pool_alloc(bytes);
	if (!r) {
		cpu_printf("memfill FAILED: no %lu MiB free (largest free %lu MiB)", bytes / MIB,
			   pool_largest() / MIB);
		failed();
		return -1;
	}
	if (keep && u->region_bytes)
		memcpy((void *)r, (const void *)u->region, u->region_bytes);
	u->region = r;
	u->region_bytes = bytes;
	cpu_printf("memfill region 0x%lx-0x%lx (guest physical)", r, r + bytes);
	return 0;
}

/* Records [start, end) as filled with seed (disk: diskread's blocks from
   there, else NOT_DISK), replacing what earlier fills said about those
   bytes; adjacent memfill ranges of one seed merge. */
static int fills_add(struct ustate *u, uint64_t start, uint64_t end, uint64_t seed, uint64_t disk)
{
	struct fill keep[MAX_FILLS * 2 + 1];
	unsigned n = 0;
	for (unsigned i = 0; i < u->nfills; i++) {
		struct fill f = u->fills[i];
		if (f.end <= start || f.start >= end) {
			keep[n++] = f;
			continue;
		}
		if (f.start < start)
			keep[n++] = (struct fill){f.start, start, f.seed, f.seq, f.disk};
		if (f.end > end)
			keep[n++] = (struct fill){end, f.end, f.seed, f.seq, f.disk};
	}
	struct fill nf = {start, end, seed, ++u->seq, disk};
	/* merge with neighbours of the same seed that no scatter came after */
	for (unsigned i = 0; i < n; i++) {
		int later = u->nscatters && u->scatters[u->nscatters - 1].seq > keep[i].seq;
		if (keep[i].seed != seed || later || disk != NOT_DISK || keep[i].disk != NOT_DISK)
			continue;
		if (keep[i].end == nf.start || keep[i].start == nf.end) {
			nf.start = keep[i].start < nf.start ? keep[i].start : nf.start;
			nf.end = keep[i].end > nf.end ? keep[i].end : nf.end;
			keep[i--] = keep[--n];
		}
	}
	if (n >= MAX_FILLS) {
		cpu_printf("memfill FAILED: more than %u ranges to verify (memfill MB SEED "
			   "without an offset starts over)",
			   MAX_FILLS);
		failed();
		return -1;
	}
	keep[n++] = nf;
	memcpy(u->fills, keep, n * sizeof(keep[0]));
	u->nfills = n;
	return 0;
}

/* memfill MB SEED: fills the region from 0 and forgets earlier fills and
   scatters; memfill MB SEED OFFMB: fills at OFFMB and adds to them. */
static void cmd_memfill(uint64_t mb, uint64_t seed, int has_off, uint64_t offmb)
{
	struct ustate *u = &ust[this_cpu()];
	uint64_t bytes = mb * MIB, off = offmb * MIB;
	if (!mb) {
		cpu_printf("memfill: MB must be > 0");
		return;
	}
	if (region_reserve(u, off + bytes, has_off))
		return;
	if (!has_off) {
		u->nfills = 0;
		u->nscatters = 0;
	}
	if (fills_add(u, off, off + bytes, seed, NOT_DISK))
		return;
	u->last_off = off;
	u->last_bytes = bytes;
	u->seed = seed;
	uint64_t *p = (uint64_t *)(u->region + off);
	uint64_t sum = fill_region(p, bytes / 8, seed + off / 8 * PAT_GOLDEN);
	u->filled = 1;
	if (has_off)
		cpu_printf("memfill mb=%lu seed=%lu off=%lu sum=%016lx", mb, seed, offmb, sum);
	else
		cpu_printf("memfill mb=%lu seed=%lu sum=%016lx", mb, seed, sum);
}

/* diskread N SEED OFFMB: the device reads blocks 0..N-1 (of diskfill N
   SEED) straight into the region at OFFMB: guest RAM written by the VMM,
   not by a vCPU.  Not read here: memverify checks them as disk blocks.  (A
   vCPU's read could get the pages logged dirty by KVM, which maps a page
   writable on a read fault when it can, and then a test could not tell
   whether the VMM marked its own writes.) */
static void cmd_diskread(uint64_t n, uint64_t seed, uint64_t offmb)
{
	struct ustate *u = &ust[this_cpu()];
	uint64_t off = offmb * MIB, bytes = n * 4096;
	if (!n) {
		cpu_printf("diskread: N must be > 0");
		return;
	}
	if (region_reserve(u, (off + bytes + MIB - 1) / MIB * MIB, 1))
		return;
	if (fills_add(u, off, off + bytes, seed, off))
		return;
	u->filled = 1;
	if (vblk_diskread(n, seed, u->region + off)) {
		failed();
		return;
	}
	cpu_printf("diskread n=%lu seed=%lu off=%lu ok", n, seed, offmb);
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* a^-1 mod m (gcd(a, m) = 1) */
static uint64_t inverse_mod(uint64_t a, uint64_t m)
{
	int64_t t = 0, nt = 1, r = (int64_t)m, nr = (int64_t)(a % m);
	while (nr) {
		int64_t q = r / nr, x;
		x = t - q * nt, t = nt, nt = x;
		x = r - q * nr, r = nr, nr = x;
	}
	return (uint64_t)(t < 0 ? t + (int64_t)m : t) % m;
}

static uint64_t fills_span(const struct ustate *u)
{
	uint64_t end = 0;
	for (unsigned i = 0; i < u->nfills; i++)
		if (u->fills[i].end > end)
			end = u->fills[i].end;
	return end;
}

static void cmd_memscatter(uint64_t n, uint64_t seed)
{
	struct ustate *u = &ust[this_cpu()];
	if (!u->filled || !u->nfills) {
		cpu_printf("memscatter FAILED: no memfill on this cpu");
		failed();
		return;
	}
	if (!u->scatters) {
		u->scatters = (struct scatter *)pool_alloc(MAX_SCATTERS * sizeof(struct scatter));
		if (!u->scatters) {
			cpu_printf("memscatter FAILED: no memory for its log");
			failed();
			return;
		}
	}
	if (u->nscatters == MAX_SCATTERS) {
		cpu_printf("memscatter FAILED: more than %u since the last memfill MB SEED",
			   MAX_SCATTERS);
		failed();
		return;
	}
	uint64_t pages = fills_span(u) / 4096;
	struct scatter s = {++u->seq, seed, n < pages ? n : pages, pages, 0, 0, 0};
	s.a = ((pages * 0x9e3779b9ull) >> 32) + pat_word(seed, 0) % (pages / 16 + 1);
	while (gcd(s.a % pages, pages) != 1)
		s.a++;
	s.a %= pages;
	s.ainv = inverse_mod(s.a, pages);
	s.b = pat_word(seed, 1) % pages;
	uint64_t p = s.b;
	for (uint64_t i = 0; i < s.n; i++) {
		uint64_t v = pat_word(seed ^ SCATTER_SALT, i) | 1;
		((volatile uint64_t *)(u->region + p * 4096))[v >> 55] = v;
		p += s.a;
		if (p >= pages)
			p -= pages;
	}
	u->scatters[u->nscatters++] = s;
	cpu_printf("memscatter n=%lu seed=%lu pages=%lu", n, seed, s.n);
}

/* Compares page p of the region with exp[]; prints the failure. */
static int page_check(const struct ustate *u, uint64_t p, const uint64_t *exp)
{
	const uint64_t *m = (const uint64_t *)(u->region + p * 4096);
	for (unsigned w = 0; w < 512; w++) {
		uint64_t got = m[w], want = exp[w];
		if (got == want)
			continue;
		uint64_t off = p * 4096 + w * 8;
		while (((got ^ want) & 0xff) == 0)
			got >>= 8, want >>= 8, off++;
		cpu_printf("memverify FAILED at offset 0x%lx", off);
		failed();
		return -1;
	}
	return 0;
}

/* The scatters after a fill, as memverify walks its pages: scatter k hits
   page p when its index i(p) = (p - b) * ainv mod pages is below n, and
   i(p + 1) = i(p) + ainv mod pages. */
struct walk {
	unsigned n;
	uint64_t i[MAX_SCATTERS], ainv[MAX_SCATTERS], pages[MAX_SCATTERS], hits[MAX_SCATTERS];
	uint64_t seed[MAX_SCATTERS];
};

static void walk_start(const struct ustate *u, uint64_t seq, uint64_t p, struct walk *wk)
{
	wk->n = 0;
	for (unsigned k = 0; k < u->nscatters; k++) {
		const struct scatter *s = &u->scatters[k];
		if (s->seq <= seq || p >= s->pages)
			continue;
		unsigned j = wk->n++;
		wk->i[j] = (p + s->pages - s->b) % s->pages * s->ainv % s->pages;
		wk->ainv[j] = s->ainv;
		wk->pages[j] = s->pages;
		wk->hits[j] = s->n;
		wk->seed[j] = s->seed ^ SCATTER_SALT;
	}
}

/* Applies to exp[] the scattered words of page p (in scatter order), then
   steps to page p + 1. */
static void walk_page(struct walk *wk, uint64_t p, uint64_t *exp)
{
	for (unsigned k = 0; k < wk->n; k++) {
		if (wk->i[k] < wk->hits[k] && p < wk->pages[k]) {
			uint64_t v = pat_word(wk->seed[k], wk->i[k]) | 1;
			exp[v >> 55] = v;
		}
		wk->i[k] += wk->ainv[k];
		if (wk->i[k] >= wk->pages[k])
			wk->i[k] -= wk->pages[k];
	}
}

static int verify_fill(const struct ustate *u, const struct fill *f, struct walk *wk, uint64_t *sum)
{
	uint64_t exp[512];
	walk_start(u, f->seq, f->start / 4096, wk);
	for (uint64_t p = f->start / 4096; p < f->end / 4096; p++) {
		if (f->disk != NOT_DISK) {
			diskpat_fill(exp, f->seed, p - f->disk / 4096);
		} else {
			uint64_t z = f->seed + p * 512 * PAT_GOLDEN;
			for (unsigned w = 0; w < 512; w++) {
				z += PAT_GOLDEN;
				exp[w] = pat_mix64(z);
			}
		}
		walk_page(wk, p, exp);
		if (page_check(u, p, exp))
			return -1;
		for (unsigned w = 0; w < 512; w++)
			*sum += exp[w];
	}
	return 0;
}

/* Scattered pages outside every fill: only the scattered words are known. */
static int verify_scattered_holes(const struct ustate *u, struct walk *wk)
{
	uint64_t exp[512];
	for (unsigned k = 0; k < u->nscatters; k++) {
		const struct scatter *s = &u->scatters[k];
		for (uint64_t i = 0, p = s->b; i < s->n; i++, p = (p + s->a) % s->pages) {
			int in_fill = 0;
			for (unsigned f = 0; f < u->nfills && !in_fill; f++)
				in_fill = p * 4096 >= u->fills[f].start && p * 4096 < u->fills[f].end;
			if (in_fill)
				continue;
			memcpy(exp, (const void *)(u->region + p * 4096), 4096);
			walk_start(u, 0, p, wk);
			walk_page(wk, p, exp);
			if (page_check(u, p, exp))
				return -1;
		}
	}
	return 0;
}

static void cmd_memverify(void)
{
	struct ustate *u = &ust[this_cpu()];
	struct walk walk, *wk = &walk; /* 10 KiB of the 64 KiB user stack */
	uint64_t sum = 0;
	if (!u->filled) {
		cpu_printf("memverify FAILED: no memfill on this cpu");
		failed();
		return;
	}
	for (unsigned i = 0; i < u->nfills; i++)
		if (verify_fill(u, &u->fills[i], wk, &sum))
			return;
	if (verify_scattered_holes(u, wk))
		return;
	cpu_printf("memverify ok sum=%016lx", sum);
}

static void cmd_flip(void)
{
	struct ustate *u = &ust[this_cpu()];
	if (!u->filled) {
		cpu_printf("flip: no memfill on this cpu");
		return;
	}
	uint64_t off = u->last_off + pat_word(u->seed ^ 0xf11bf11b, u->flips++) % u->last_bytes;
	*(volatile uint8_t *)(u->region + off) ^= 0xff;
	cpu_printf("flip offset=0x%lx", off);
}

/* ns * rate / 1e9 without 128-bit division */
static uint64_t muldiv_sec(uint64_t ns, uint64_t rate)
{
	return ns / NS_PER_SEC * rate + ns % NS_PER_SEC * rate / NS_PER_SEC;
}

static void cmd_dirty(uint64_t mb, uint64_t rate)
{
	struct ustate *u = &ust[this_cpu()];
	uint64_t bytes = mb * MIB;
	if (!mb) {
		cpu_printf("dirty: MB must be > 0");
		return;
	}
	if (u->dirty_bytes < bytes) {
		uint64_t r = pool_alloc(bytes);
		if (!r) {
			cpu_printf("dirty FAILED: no %lu MiB free (largest free %lu MiB)", mb,
				   pool_largest() / MIB);
			failed();
			return;
		}
		u->dirty = r;
		u->dirty_bytes = bytes;
	}
	uint64_t pages = bytes / 4096, idx = 0, total = 0, last_total = 0, gen = 0;
	uint64_t start = now_ns(), next_report = start + NS_PER_SEC;
	cpu_printf("dirty mb=%lu rate=%lu started", mb, rate);
	for (;;) {
		uint64_t now = now_ns();
		if (now >= next_report) {
			cpu_printf("dirty mb=%lu pages=%lu pages_per_s=%lu", mb, total,
				   total - last_total);
			last_total = total;
			next_report += NS_PER_SEC;
			if (next_report <= now)
				next_report = now + NS_PER_SEC;
		}
		uint64_t target;
		if (rate == 0) {
			target = total + 4096;
		} else {
			target = muldiv_sec(now - start, rate);
			if (target > total + rate) { /* over a second behind (paused): no burst */
				start = now - (total / rate * NS_PER_SEC +
					       total % rate * NS_PER_SEC / rate);
				target = total;
			}
		}
		while (total < target) {
			*(volatile uint64_t *)(u->dirty + idx * 4096) = ++gen;
			if (++idx == pages)
				idx = 0;
			total++;
		}
		if (rate) {
			/* sleep until the next page is due, at least 1 ms, at most to the report */
			uint64_t next = start + (total + 1) / rate * NS_PER_SEC +
					(total + 1) % rate * NS_PER_SEC / rate;
			if (next < now + 1000000)
				next = now + 1000000;
			if (next > next_report)
				next = next_report;
			sleep_until(next);
		}
	}
}

static void cmd_fault(const char *kind)
{
	/* addresses laundered through asm so the compiler does not object */
	uint64_t bad = !strcmp(kind, "gp") ? 0x8000000000000000ull : (uint64_t)IDMAP_GIB << 30;
	__asm__ volatile("" : "+r"(bad));
	cpu_printf("fault: %s", kind);
	if (!strcmp(kind, "gp"))
		*(volatile uint64_t *)bad = 1; /* non-canonical */
	else if (!strcmp(kind, "kernel"))
		syscall2(SYS_WRITE, bad, 1); /* the kernel faults reading the buffer */
	else if (!strcmp(kind, "ud"))
		__asm__ volatile("ud2");
	else if (!strcmp(kind, "de")) {
		uint64_t a = 1, d = 0, q;
		__asm__ volatile("xorl %%edx, %%edx; divq %2" : "=a"(q) : "a"(a), "r"(d) : "rdx");
		(void)q;
	} else
		*(volatile uint64_t *)bad = 1; /* first address past the identity map */
	cpu_printf("fault: survived?");
}

/* diagnostic: the cost of a null system call, of a port read through the
   kernel, and of a user-mode LAPIC register read (an MMIO exit) */
static void cmd_syscalls(uint64_t n)
{
	struct percpu *pc = this_pc();
	if (!n)
		n = 1000;
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < n; i++)
		sys_wait(pc->events + 1); /* returns at once: the counter is not at seen */
	uint64_t t1 = now_ns();
	for (uint64_t i = 0; i < n; i++)
		inb(0x3fd);
	uint64_t t2 = now_ns();
	for (uint64_t i = 0; i < n; i++)
		lapic_r(0x20);
	uint64_t t3 = now_ns();
	cpu_printf("syscalls n=%lu null=%luns inb=%luns lapic-read=%luns", n, (t1 - t0) / n,
		   (t2 - t1) / n, (t3 - t2) / n);
}

/* ---- cpl0check: the kernel runs the instructions, user mode checks ---- */

static void cpuid2(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static uint64_t ref_popcnt(uint64_t v)
{
	uint64_t n = 0;
	for (; v; v >>= 1)
		n += v & 1;
	return n;
}

/* Prints one check's verdict; returns 1 when it failed. */
static int cpl0_verdict(const char *what, int ok, uint64_t got, uint64_t want)
{
	if (ok)
		cpu_printf("cpl0check %s ok", what);
	else
		cpu_printf("cpl0check %s FAILED: got 0x%lx, want 0x%lx", what, got, want);
	return !ok;
}

static void cmd_cpl0check(void)
{
	static struct cpl0check c;
	uint32_t r[4];
	uint64_t seed = rdtsc();
	memset(&c, 0, sizeof(c));
	cpuid2(1, 0, r);
	if (r[2] & (1u << 23))
		c.run |= CPL0_RUN_POPCNT;
	if (r[2] & (1u << 13))
		c.run |= CPL0_RUN_CX16;
	if (r[3] & (1u << 25))
		c.run |= CPL0_RUN_MXCSR;
	cpuid2(0, 0, r);
	if (r[0] >= 7) {
		cpuid2(7, 0, r);
		if (r[1] & (1u << 20))
			c.run |= CPL0_RUN_SMAP;
	}
	static const uint64_t fixed[4] = {0, ~0ull, 1, 0x8000000000000000ull};
	for (int i = 0; i < CPL0_N; i++)
		c.popcnt_in[i] = i < 4 ? fixed[i] : pat_mix64(seed + (uint64_t)i);
	for (int i = 0; i < 2; i++) {
		c.cx16_old[i] = pat_mix64(seed ^ (0x100u + (uint64_t)i));
		c.cx16_new[i] = pat_mix64(seed ^ (0x200u + (uint64_t)i));
		c.cx16_other[i] = c.cx16_old[i];
	}
	c.cx16_other[seed & 1] ^= 1ull << (seed % 64);
	c.mxcsr_in = (uint32_t)(pat_mix64(seed ^ 0x300) & 0xffbf); /* not DAZ: maybe unsupported */
	cpu_printf("cpl0check seed=0x%lx run=0x%x", seed, c.run);

	syscall2(SYS_CPL0CHECK, (uint64_t)&c, 0);

	int bad = 0, n = 0;
	n++, bad += cpl0_verdict("int3 (#BP with RIP after it)", c.int3_rip == c.int3_want && !c.int3_left_armed,
				 c.int3_rip, c.int3_want);
	if (c.run & CPL0_RUN_POPCNT) {
		int ok = 1;
		uint64_t got = 0, want = 0;
		for (int i = 0; i < CPL0_N && ok; i++) {
			uint64_t in = c.popcnt_in[i], w = ref_popcnt(in);
			uint64_t wfl = in ? 0 : 0x40; /* only ZF, when the source is 0 */
			if (c.popcnt64[i] != w || (c.popcnt64_flags[i] & 0x8d5) != wfl)
				ok = 0, got = c.popcnt64[i] | (c.popcnt64_flags[i] & 0x8d5) << 32,
				want = w | wfl << 32;
			else if (c.popcnt32[i] != ref_popcnt(in & 0xffffffffu))
				ok = 0, got = c.popcnt32[i], want = ref_popcnt(in & 0xffffffffu);
			else if (c.popcnt_mem[i] != w || (c.popcnt_mem_flags[i] & 0x8d5) != wfl)
				ok = 0, got = c.popcnt_mem[i] | (c.popcnt_mem_flags[i] & 0x8d5) << 32,
				want = w | wfl << 32;
		}
		n++, bad += cpl0_verdict("popcnt (reg64, reg32, mem; count | flags << 32)", ok, got, want);
	}
	if (c.run & CPL0_RUN_CX16) {
		int hit = c.cx16_hit_zf == 1 && c.cx16_hit_mem[0] == c.cx16_new[0] &&
			  c.cx16_hit_mem[1] == c.cx16_new[1];
		n++, bad += cpl0_verdict("cmpxchg16b equal (stores; zf | mem.lo << 1)", hit,
					 c.cx16_hit_zf | c.cx16_hit_mem[0] << 1, 1 | c.cx16_new[0] << 1);
		int miss = c.cx16_miss_zf == 0 && c.cx16_miss_mem[0] == c.cx16_old[0] &&
			   c.cx16_miss_mem[1] == c.cx16_old[1] && c.cx16_miss_rdx_rax[0] == c.cx16_old[0] &&
			   c.cx16_miss_rdx_rax[1] == c.cx16_old[1];
		n++, bad += cpl0_verdict("cmpxchg16b unequal (loads; rax)", miss, c.cx16_miss_rdx_rax[0],
					 c.cx16_old[0]);
	}
	if (c.run & CPL0_RUN_SMAP)
		n++, bad += cpl0_verdict("stac/clac (rflags.AC after each)",
					 (c.flags_after_stac & (1u << 18)) && !(c.flags_after_clac & (1u << 18)),
					 (c.flags_after_stac >> 18 & 1) << 1 | (c.flags_after_clac >> 18 & 1), 2);
	n++, bad += cpl0_verdict("fwait", c.fwait_done == 1, c.fwait_done, 1);
	if (c.run & CPL0_RUN_MXCSR)
		n++, bad += cpl0_verdict("ldmxcsr/stmxcsr", c.mxcsr_out == c.mxcsr_in, c.mxcsr_out, c.mxcsr_in);
	if (bad) {
		cpu_printf("cpl0check FAILED: %d of %d checks", bad, n);
		failed();
	} else {
		cpu_printf("cpl0check ok: %d checks", n);
	}
}

static void cmd_exit(uint64_t code)
{
	unsigned c = verify_failed ? EXIT_VERIFY_FAILED : (unsigned)(code & 0xff);
	cpu_printf("exit code=%u%s", c, verify_failed ? " (a verify failed earlier)" : "");
	vm_exit(c);
}

static void shell(void);

static void run_job(char *text)
{
	char *argv[16];
	int argc = 0;
	if (!memcmp(text, "echo", 4) && (!text[4] || is_space(text[4]))) {
		const char *t = text + 4;
		while (is_space(*t))
			t++;
		cpu_printf("%s", t);
		return;
	}
	for (char *p = text; *p && argc < 16;) {
		while (is_space(*p))
			*p++ = 0;
		if (!*p)
			break;
		argv[argc++] = p;
		while (*p && !is_space(*p))
			p++;
	}
	if (!argc)
		return;
	const char *c = argv[0];
	uint64_t a, b;
	if (!strcmp(c, "count")) {
		if (!arg_u64(argc, argv, 1, 10, &a))
			cmd_count(a);
	} else if (!strcmp(c, "memfill") && (argc == 3 || argc == 4)) {
		uint64_t off;
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 0, &b) &&
		    !arg_u64(argc, argv, 3, 0, &off))
			cmd_memfill(a, b, argc == 4, off);
	} else if (!strcmp(c, "memscatter") && argc == 3) {
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 0, &b))
			cmd_memscatter(a, b);
	} else if (!strcmp(c, "memverify")) {
		cmd_memverify();
	} else if (!strcmp(c, "flip")) {
		cmd_flip();
	} else if (!strcmp(c, "dirty") && argc == 3) {
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 0, &b))
			cmd_dirty(a, b);
	} else if (!strcmp(c, "diskfill") && argc == 3) {
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 0, &b))
			if (vblk_diskfill(a, b))
				failed();
	} else if (!strcmp(c, "diskverify") && argc == 3) {
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 0, &b))
			if (vblk_diskverify(a, b))
				failed();
	} else if (!strcmp(c, "diskread") && argc == 4) {
		uint64_t off;
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 0, &b) &&
		    !arg_u64(argc, argv, 3, 0, &off))
			cmd_diskread(a, b, off);
	} else if (!strcmp(c, "vhostile") && argc == 3) {
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 0, &b))
			if (vhostile_run(a, b))
				failed();
	} else if (!strcmp(c, "udpecho") && (argc == 2 || argc == 3)) {
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 0, &b) &&
		    inet_udpecho(a, b))
			failed();
	} else if (!strcmp(c, "ping") && (argc == 2 || argc == 3)) {
		if (!arg_u64(argc, argv, 2, 1, &a) && inet_ping(argv[1], a))
			failed();
	} else if (!strcmp(c, "netsend") && (argc == 4 || argc == 5)) {
		uint64_t kbps;
		if (!arg_u64(argc, argv, 2, 0, &a) && !arg_u64(argc, argv, 3, 0, &b) &&
		    !arg_u64(argc, argv, 4, 0, &kbps) && netperf_send(argv[1], a, b, kbps))
			failed();
	} else if (!strcmp(c, "netrecv") && (argc == 2 || argc == 3)) {
		if (!arg_u64(argc, argv, 1, 0, &a) && !arg_u64(argc, argv, 2, 10, &b) &&
		    netperf_recv(a, b))
			failed();
	} else if (!strcmp(c, "vmgenid") && (argc == 1 || !strcmp(argv[1], "dsdt"))) {
		if (vmgenid_print(argc == 2))
			failed();
	} else if (!strcmp(c, "rng") && argc == 2) {
		if (!arg_u64(argc, argv, 1, 0, &a) && vrng_read(a))
			failed();
	} else if (!strcmp(c, "clock") && argc == 1) {
		cpu_printf("clock kvmclock_ms=%lu", kvmclock_ns() / 1000000);
	} else if (!strcmp(c, "disknotify") && argc == 2) {
		if (!arg_u64(argc, argv, 1, 0, &a) && vblk_set_notify_bits(a))
			failed();
	} else if (!strcmp(c, "sleep") && argc == 2) {
		if (!arg_u64(argc, argv, 1, 0, &a))
			sleep_until(now_ns() + a * 1000000);
	} else if (!strcmp(c, "syscalls")) {
		if (!arg_u64(argc, argv, 1, 1000, &a))
			cmd_syscalls(a);
	} else if (!strcmp(c, "cpus")) {
		cpu_printf("cpus=%u", ncpus);
	} else if (!strcmp(c, "exit")) {
		if (!arg_u64(argc, argv, 1, 0, &a))
			cmd_exit(a);
	} else if (!strcmp(c, "reset")) {
		cpu_printf("reset");
		vm_reset();
	} else if (!strcmp(c, "fault")) {
		cmd_fault(argc > 1 ? argv[1] : "pf");
	} else if (!strcmp(c, "shell")) {
		shell();
	} else if (!strcmp(c, "cpl0check")) {
		cmd_cpl0check();
	} else {
		cpu_printf("unknown command or wrong arguments: '%s' (see docs/guest.md)", c);
	}
}

void jobs_run_cpu(unsigned cpu)
{
	int any = 0;
	for (unsigned i = 0; i < njobs; i++) {
		if (jobs[i].cpu != cpu)
			continue;
		any = 1;
		char buf[JOB_LEN];
		memcpy(buf, jobs[i].text, JOB_LEN);
		run_job(buf);
	}
	if (!any && cpu == 0 && njobs == 0)
		shell();
}

/* ---- the serial shell ---- */

#define COM1 0x3f8

static void shell_line(char *line)
{
	const char *s = line;
	char text[JOB_LEN];
	unsigned cpu;
	int has_cpu;
	while (next_job(&s, &cpu, &has_cpu, text)) {
		if (has_cpu && cpu != this_cpu())
			cpu_printf("shell: runs jobs on cpu%u only", this_cpu());
		else
			run_job(text);
	}
}

static void shell(void)
{
	struct percpu *pc = this_pc();
	char line[JOB_LEN];
	int n = 0;
	char last = 0;
	/* RX interrupt through the IOAPIC to this CPU; the ISR only bumps events */
	ioapic_route(serial_gsi, VEC_SERIAL, cpu_apic_id[this_cpu()]);
	outb(COM1 + 4, 0x0b); /* DTR RTS OUT2 */
	outb(COM1 + 1, 0x01); /* IER: received data */
	con_write("cairn> ", 7);
	for (;;) {
		uint64_t seen = pc->events;
		while (inb(COM1 + 5) & 1) {
			char c = (char)inb(COM1);
			if (c == '\n' && last == '\r') {
				last = c;
				continue;
			}
			last = c;
			if (c == '\r' || c == '\n') {
				con_write("\r\n", 2);
				line[n] = 0;
				n = 0;
				shell_line(line);
				con_write("cairn> ", 7);
			} else if (c == 8 || c == 0x7f) {
				if (n) {
					n--;
					con_write("\b \b", 3);
				}
			} else if (c >= 0x20 && n < JOB_LEN - 1) {
				line[n++] = c;
				con_write(&c, 1);
			}
		}
		wait_event(seen, now_ns() + 1000000000);
	}
}
