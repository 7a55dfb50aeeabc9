/* User-mode library: strings, formatting, console, time, memory pool. */
#include "ulib.h"

volatile int verify_failed;
unsigned ncpus = 1;
uint32_t cpu_apic_id[MAX_CPUS];

/* ---- strings ---- */

void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;
	while (n--)
		*p++ = (uint8_t)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;
	if (p < q)
		return memcpy(d, s, n);
	while (n--)
		p[n] = q[n];
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (uint8_t)*a - (uint8_t)*b;
}

int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	int base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -1;
	for (; *s; s++) {
		int d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return -1;
		v = v * (uint64_t)base + (uint64_t)d;
	}
	*out = v;
	return 0;
}

/* ---- formatting: %[0][width][l|ll|z](d|u|x|s|c|%) ---- */

struct out {
	char *buf;
	int size, n;
};

static void out_c(struct out *o, char c)
{
	if (o->n + 1 < o->size)
		o->buf[o->n] = c;
	o->n++;
}

int vfmt(char *buf, int size, const char *f, va_list ap)
{
	struct out o = {buf, size, 0};
	for (; *f; f++) {
		if (*f != '%') {
			out_c(&o, *f);
			continue;
		}
		f++;
		char pad = ' ';
		int width = 0, lng = 0;
		if (*f == '0')
			pad = '0', f++;
		while (*f >= '0' && *f <= '9')
			width = width * 10 + (*f++ - '0');
		while (*f == 'l' || *f == 'z')
			lng++, f++;
		char tmp[24];
		int n = 0, neg = 0;
		uint64_t v;
		switch (*f) {
		case 'd':
			v = lng ? (uint64_t)va_arg(ap, long) : (uint64_t)(long)va_arg(ap, int);
			if ((int64_t)v < 0)
				neg = 1, v = -v;
			do
				tmp[n++] = (char)('0' + v % 10);
			while ((v /= 10) != 0);
			break;
		case 'u':
		case 'x':
			v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
			do {
				unsigned d = *f == 'x' ? v % 16 : v % 10;
				tmp[n++] = "0123456789abcdef"[d];
				v = *f == 'x' ? v / 16 : v / 10;
			} while (v);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int len = (int)strlen(s);
			for (; width > len; width--)
				out_c(&o, ' ');
			while (*s)
				out_c(&o, *s++);
			continue;
		}
		case 'c':
			out_c(&o, (char)va_arg(ap, int));
			continue;
		default:
			out_c(&o, *f);
			if (!*f)
				f--;
			continue;
		}
		if (neg)
			tmp[n++] = '-';
		for (; width > n; width--)
			out_c(&o, pad);
		while (n)
			out_c(&o, tmp[--n]);
	}
	if (o.size)
		o.buf[o.n < o.size ? o.n : o.size - 1] = 0;
	return o.n;
}

int fmt(char *buf, int size, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vfmt(buf, size, f, ap);
	va_end(ap);
	return n;
}

/* ---- console ---- */

#define COM1 0x3f8
static volatile int con_lock_word;

void con_lock(void)
{
	while (__atomic_exchange_n(&con_lock_word, 1, __ATOMIC_ACQUIRE))
		while (con_lock_word)
			cpu_relax();
}

void con_unlock(void)
{
	__atomic_store_n(&con_lock_word, 0, __ATOMIC_RELEASE);
}

void con_write_unlocked(const char *s, int n)
{
	syscall2(SYS_WRITE, (uint64_t)s, (uint64_t)n);
}

void con_write(const char *s, int n)
{
	con_lock();
	con_write_unlocked(s, n);
	con_unlock();
}

static void vline(const char *prefix, const char *f, va_list ap)
{
	char buf[512];
	int n = prefix ? fmt(buf, sizeof(buf) - 2, "%s", prefix) : 0;
	n += vfmt(buf + n, (int)sizeof(buf) - 2 - n, f, ap);
	if (n > (int)sizeof(buf) - 3)
		n = (int)sizeof(buf) - 3;
	buf[n++] = '\r';
	buf[n++] = '\n';
	con_write(buf, n);
}

void cpu_printf(const char *f, ...)
{
	char prefix[16];
	va_list ap;
	fmt(prefix, sizeof(prefix), "cpu%u: ", this_cpu());
	va_start(ap, f);
	vline(prefix, f, ap);
	va_end(ap);
}

void con_printf(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vline(0, f, ap);
	va_end(ap);
}

/* ---- LAPIC and time ---- */

void lapic_init_cpu(void)
{
	lapic_w(0x80, 0);		     /* TPR: accept everything */
	lapic_w(0xf0, 0x100 | VEC_SPURIOUS); /* software enable */
	lapic_w(0x3e0, 0x3);		     /* timer divide by 16 */
	lapic_w(0x320, VEC_TIMER);	     /* one-shot */
	lapic_w(0x370, 0x10000);	     /* error LVT masked */
}

uint64_t tsc_khz;
const char *clock_source = "none";
static uint64_t tsc_base, ns_mult; /* ns = (tsc - tsc_base) * ns_mult >> 32 */
static int use_kvmclock;

static uint16_t pit_read0(void)
{
	outb(0x43, 0x00); /* latch channel 0 */
	uint16_t lo = inb(0x40);
	return (uint16_t)(lo | inb(0x40) << 8);
}

/* TSC rate against PIT channel 0 (counter read-back; microvm has no port 0x61) */
static uint64_t pit_calibrate(void)
{
	const uint32_t ticks = 11932; /* 10 ms of the 1.193182 MHz PIT */
	outb(0x43, 0x34);	      /* channel 0, lo/hi, mode 2 */
	outb(0x40, 0xff);
	outb(0x40, 0xff);
	uint16_t last = pit_read0();
	uint64_t t0 = rdtsc();
	uint32_t elapsed = 0;
	for (uint32_t i = 0; i < 10000000 && elapsed < ticks; i++) {
		uint16_t c = pit_read0();
		elapsed += (uint16_t)(last - c);
		last = c;
	}
	uint64_t t1 = rdtsc();
	outb(0x43, 0x30); /* mode 0: one more count, then quiet */
	outb(0x40, 0xff);
	outb(0x40, 0xff);
	return elapsed ? (t1 - t0) * 1193182 / elapsed / 1000 : 0;
}

void time_init(void)
{
	struct percpu *pc = this_pc();
	uint32_t mul = 0;
	int shift = 0;
	if (pc->kvmclock) {
		uint32_t v;
		do {
			v = pc->pvclock.version;
			__asm__ volatile("" ::: "memory");
			mul = pc->pvclock.tsc_to_system_mul;
			shift = pc->pvclock.tsc_shift;
			__asm__ volatile("" ::: "memory");
		} while ((v & 1) || v != pc->pvclock.version);
	}
	if (mul) {
		ns_mult = shift >= 0 ? (uint64_t)mul << shift : (uint64_t)mul >> -shift;
		tsc_khz = (1000000ull << 32) / ns_mult;
		clock_source = "kvmclock";
		use_kvmclock = 1;
	} else {
		tsc_khz = pit_calibrate();
		if (!tsc_khz)
			tsc_khz = 1000000;
		ns_mult = (1000000ull << 32) / tsc_khz;
		clock_source = "pit";
	}
	tsc_base = rdtsc();
}

uint64_t kvmclock_ns(void)
{
	struct percpu *pc = this_pc();
	uint64_t t, ts, st;
	uint32_t v, mul;
	int8_t shift;
	if (!pc->kvmclock)
		return 0;
	do {
		v = pc->pvclock.version;
		__asm__ volatile("" ::: "memory");
		ts = pc->pvclock.tsc_timestamp;
		st = pc->pvclock.system_time;
		mul = pc->pvclock.tsc_to_system_mul;
		shift = pc->pvclock.tsc_shift;
		t = rdtsc();
		__asm__ volatile("" ::: "memory");
	} while ((v & 1) || v != pc->pvclock.version);
	uint64_t d = t - ts;
	d = shift >= 0 ? d << shift : d >> -shift;
	return st + (uint64_t)(((unsigned __int128)d * mul) >> 32);
}

/* kvmclock when there is one: the VMM keeps it continuous across snapshot and
   restore, the raw TSC it may not. */
uint64_t now_ns(void)
{
	if (use_kvmclock)
		return kvmclock_ns();
	return (uint64_t)(((unsigned __int128)(rdtsc() - tsc_base) * ns_mult) >> 32);
}

void wait_event(uint64_t seen, uint64_t deadline)
{
	uint64_t now = now_ns();
	if (now >= deadline)
		return;
	uint64_t d = deadline - now;
	if (d > 100000000) /* re-check at least every 100 ms */
		d = 100000000;
	lapic_w(0x380, (uint32_t)(d / 16 + 1)); /* LAPIC timer: 1 GHz bus / 16 */
	sys_wait(seen);
}

void sleep_until(uint64_t deadline)
{
	for (;;) {
		uint64_t seen = this_pc()->events;
		if (now_ns() >= deadline)
			return;
		wait_event(seen, deadline);
	}
}

/* ---- memory pool: usable RAM above the image, best fit ---- */

#define POOL_MAX 32
static struct {
	uint64_t start, end;
} pool[POOL_MAX];
static int npool;
static volatile int pool_lock;

void pool_add(uint64_t start, uint64_t end)
{
	start = (start + 0xfff) & ~0xfffull;
	end &= ~0xfffull;
	if (end > start && npool < POOL_MAX) {
		pool[npool].start = start;
		pool[npool++].end = end;
	}
}

uint64_t pool_alloc(uint64_t bytes)
{
	uint64_t r = 0;
	bytes = (bytes + 0xfff) & ~0xfffull;
	while (__atomic_exchange_n(&pool_lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	int best = -1; /* best fit: keep large ranges for large requests */
	for (int i = 0; i < npool; i++) {
		uint64_t free = pool[i].end - pool[i].start;
		if (free >= bytes && (best < 0 || free < pool[best].end - pool[best].start))
			best = i;
	}
	if (best >= 0) {
		r = pool[best].start;
		pool[best].start += bytes;
	}
	__atomic_store_n(&pool_lock, 0, __ATOMIC_RELEASE);
	return r;
}

uint64_t pool_largest(void)
{
	uint64_t m = 0;
	for (int i = 0; i < npool; i++)
		if (pool[i].end - pool[i].start > m)
			m = pool[i].end - pool[i].start;
	return m;
}

/* ---- the end ---- */

void sys_halt(void)
{
	for (;;)
		syscall2(SYS_HALT, 0, 0);
}

void vm_exit(unsigned code)
{
	outb(0x501, (uint8_t)code);
	con_printf("cairn-guest: no debug-exit device at port 0x501; resetting");
	vm_reset();
}

void vm_reset(void)
{
	syscall2(SYS_RESET, 0, 0);
	sys_halt();
}
