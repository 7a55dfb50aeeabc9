/* The instruction decoder and the completions of src/arch/x86/insn_*.c.
 *
 * Completions are checked against the host CPU as the oracle: each case runs
 * the instruction natively (inline asm) and through insn_complete() with the
 * same random operands and flags, and compares every register and flag the
 * instruction defines.  Decoder cases are lengths from GNU as/objdump, plus
 * truncated, over-long and random bytes (which must never read past the
 * buffer; run under ASan). */
#include "arch/x86/insn_complete.h"
#include "arch/x86/insn_decode.h"
#include "test.h"

#include <cpuid.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* Operands with every population, leading- and trailing-zero count. */
static uint64_t rnd_operand(void)
{
	uint64_t v = rnd();
	switch (rnd() % 6) {
	case 0:
		return 0;
	case 1:
		return v >> (rnd() % 64);
	case 2:
		return v << (rnd() % 64);
	case 3:
		return (v >> (rnd() % 64)) << (rnd() % 64);
	case 4:
		return 1ull << (rnd() % 64);
	}
	return v;
}

static size_t parse_hex(const char *s, uint8_t *out)
{
	size_t n = 0;
	while (*s) {
		unsigned v;
		if (sscanf(s, "%2x", &v) != 1)
			break;
		out[n++] = (uint8_t)v;
		s += 2;
		while (*s == ' ')
			s++;
	}
	return n;
}

/* ---- decoder ------------------------------------------------------------ */

struct len_case {
	const char *hex;
	int len;
};

/* clang-format off */
static const struct len_case cases64[] = {
	{"f3 48 0f b8 c3", 5}, /* popcnt %rbx,%rax */
	{"f3 45 0f b8 d1", 5}, /* popcnt %r9d,%r10d */
	{"66 f3 0f b8 d1", 5}, /* popcnt %cx,%dx */
	{"f3 48 0f b8 03", 5}, /* popcnt (%rbx),%rax */
	{"f3 4c 0f b8 5c b3 12", 7}, /* popcnt 0x12(%rbx,%rsi,4),%r11 */
	{"f3 48 0f b8 05 78 56 34 12", 9}, /* popcnt 0x12345678(%rip),%rax # 0x1234569c */
	{"65 f3 0f b8 48 10", 6}, /* popcnt %gs:0x10(%rax),%ecx */
	{"f3 48 0f bd c3", 5}, /* lzcnt %rbx,%rax */
	{"66 f3 44 0f bc 7c 24 08", 8}, /* tzcnt 0x8(%rsp),%r15w */
	{"f0 48 0f c7 0f", 5}, /* lock cmpxchg16b (%rdi) */
	{"65 49 0f c7 4c 24 40", 7}, /* cmpxchg16b %gs:0x40(%r12) */
	{"cc", 1}, /* int3 */
	{"9b", 1}, /* fwait */
	{"0f 01 ca", 3}, /* clac */
	{"0f 01 cb", 3}, /* stac */
	{"0f ae e8", 3}, /* lfence */
	{"0f ae f0", 3}, /* mfence */
	{"0f ae f8", 3}, /* sfence */
	{"0f 0b", 2}, /* ud2 */
	{"48 b8 88 77 66 55 44 33 22 11", 10}, /* movabs $0x1122334455667788,%rax */
	{"b8 44 33 22 11", 5}, /* mov $0x11223344,%eax */
	{"66 c7 00 34 12", 5}, /* movw $0x1234,(%rax) */
	{"81 45 10 78 56 34 12", 7}, /* addl $0x12345678,0x10(%rbp) */
	{"48 83 04 24 01", 5}, /* addq $0x1,(%rsp) */
	{"80 7c c8 80 05", 5}, /* cmpb $0x5,-0x80(%rax,%rcx,8) */
	{"e8 fb 00 00 00", 5}, /* call 0x17b */
	{"e9 fb 01 00 00", 5}, /* jmp 0x280 */
	{"0f 85 fa 02 00 00", 6}, /* jne 0x385 */
	{"74 03", 2}, /* je 0x90 */
	{"c8 10 00 01", 4}, /* enter $0x10,$0x1 */
	{"c2 08 00", 3}, /* ret $0x8 */
	{"f7 00 34 12 00 00", 6}, /* testl $0x1234,(%rax) */
	{"a8 01", 2}, /* test $0x1,%al */
	{"85 03", 2}, /* test %eax,(%rbx) */
	{"f7 d0", 2}, /* not %eax */
	{"a0 88 77 66 55 44 33 22 11", 9}, /* movabs 0x1122334455667788,%al */
	{"48 a3 88 77 66 55 44 33 22 11", 10}, /* movabs %rax,0x1122334455667788 */
	{"0f 05", 2}, /* syscall */
	{"0f 30", 2}, /* wrmsr */
	{"0f a2", 2}, /* cpuid */
	{"0f 31", 2}, /* rdtsc */
	{"66 90", 2}, /* xchg %ax,%ax */
	{"66 0f 1f 04 00", 5}, /* nopw (%rax,%rax,1) */
	{"0f 1f 00", 3}, /* nopl (%rax) */
	{"66 0f 70 d1 1b", 5}, /* pshufd $0x1b,%xmm1,%xmm2 */
	{"66 0f 3a 22 d8 01", 6}, /* pinsrd $0x1,%eax,%xmm3 */
	{"66 0f 38 30 d1", 5}, /* pmovzxbw %xmm1,%xmm2 */
	{"48 0f a4 c3 03", 5}, /* shld $0x3,%rax,%rbx */
	{"0f ba e0 05", 4}, /* bt $0x5,%eax */
	{"0f 20 d8", 3}, /* mov %cr3,%rax */
	{"0f 22 e0", 3}, /* mov %rax,%cr4 */
	{"e4 60", 2}, /* in $0x60,%al */
	{"e6 80", 2}, /* out %al,$0x80 */
	{"48 cf", 2}, /* iretq */
	{"f4", 1}, /* hlt */
	{"48 8d 14 c5 00 00 00 00", 8}, /* lea 0x0(,%rax,8),%rdx */
	{"49 8d 45 00", 4}, /* lea 0x0(%r13),%rax */
	{"49 8b 04 24", 4}, /* mov (%r12),%rax */
	{"d9 38", 2}, /* fnstcw (%rax) */
	{"48 0f ae 07", 4}, /* fxsave64 (%rdi) */
	{"0f 01 f8", 3}, /* swapgs */
	{"f3 a4", 2}, /* rep movsb %ds:(%rsi),%es:(%rdi) */
	{"66 48 0f 7e c0", 5}, /* movq %xmm0,%rax */
	{"48 69 d8 78 56 34 12", 7}, /* imul $0x12345678,%rax,%rbx */
	{"66 6b 18 03", 4}, /* imul $0x3,(%rax),%bx */
};

static const struct len_case cases32[] = {
	{"f3 0f b8 c3", 4}, /* popcnt %ebx,%eax */
	{"66 f3 0f b8 d1", 5}, /* popcnt %cx,%dx */
	{"f3 0f b8 45 10", 5}, /* popcnt 0x10(%ebp),%eax */
	{"8d 14 85 78 56 34 12", 7}, /* lea 0x12345678(,%eax,4),%edx */
	{"a1 44 33 22 11", 5}, /* mov 0x11223344,%eax */
	{"bb 78 56 34 12", 5}, /* mov $0x12345678,%ebx */
	{"0e", 1}, /* push %cs */
	{"60", 1}, /* pusha */
	{"e8 fb 00 00 00", 5}, /* call 0x121 */
	{"ea 00 10 00 00 10 00", 7}, /* ljmp $0x10,$0x1000 */
	{"40", 1}, /* inc %eax */
	{"67 66 8b 00", 4}, /* mov (%bx,%si),%ax */
};

static const struct len_case cases16[] = {
	{"8b 00", 2}, /* mov (%bx,%si),%ax */
	{"a1 34 12", 3}, /* mov 0x1234,%ax */
	{"8b 46 12", 3}, /* mov 0x12(%bp),%ax */
	{"8b 89 34 12", 4}, /* mov 0x1234(%bx,%di),%cx */
	{"b8 34 12", 3}, /* mov $0x1234,%ax */
	{"66 b8 78 56 34 12", 6}, /* mov $0x12345678,%eax */
	{"67 8b 00", 3}, /* mov (%eax),%ax */
	{"ea 00 10 10 00", 5}, /* ljmp $0x10,$0x1000 */
	{"66 ea 00 10 00 00 10 00", 8}, /* ljmpl $0x10,$0x1000 */
	{"f3 0f b8 c3", 4}, /* popcnt %bx,%ax */
	{"e9 fd 01", 3}, /* jmp 0x229 */
};

/* clang-format on */

static void check_lengths(const struct len_case *c, size_t count, enum insn_mode mode)
{
	for (size_t i = 0; i < count; i++) {
		uint8_t b[32];
		size_t n = parse_hex(c[i].hex, b);
		struct insn in;
		int r = insn_decode(&in, b, n, mode);
		if (r || in.len != c[i].len)
			fprintf(stderr, "mode %d: [%s]: r=%d len=%d, want %d\n", mode, c[i].hex, r,
				in.len, c[i].len);
		CHECK_EQ(r, 0);
		CHECK_EQ(in.len, c[i].len);
		/* Every truncation is reported as such, never read past. */
		for (size_t t = 0; t < n; t++) {
			uint8_t *heap = malloc(t ? t : 1);
			memcpy(heap, b, t);
			CHECK_EQ(insn_decode(&in, heap, t, mode), -ENODATA);
			free(heap);
		}
	}
}

struct op_case {
	const char *hex;
	enum insn_op op;
};

static void test_decode_ops(void)
{
	static const struct op_case ops[] = {
	    {"cc", INSN_INT3},
	    {"9b", INSN_FWAIT},
	    {"0f 0b", INSN_UD2},
	    {"0f 01 ca", INSN_CLAC},
	    {"0f 01 cb", INSN_STAC},
	    {"f3 48 0f b8 c3", INSN_POPCNT},
	    {"f3 0f bc c3", INSN_TZCNT},
	    {"f3 0f bd c3", INSN_LZCNT},
	    {"0f bc c3", INSN_UNKNOWN}, /* bsf */
	    {"0f bd c3", INSN_UNKNOWN}, /* bsr */
	    {"0f b8 c3", INSN_UNKNOWN}, /* jmpe / undefined */
	    {"f2 0f b8 c3", INSN_UNKNOWN},
	    {"f0 48 0f c7 0f", INSN_CMPXCHG16B},
	    {"48 0f c7 0f", INSN_CMPXCHG16B},
	    {"0f c7 0f", INSN_UNKNOWN},	   /* cmpxchg8b: KVM does it */
	    {"48 0f c7 c9", INSN_UNKNOWN}, /* mod=3: #UD on the CPU */
	    {"0f ae e8", INSN_LFENCE},
	    {"0f ae f0", INSN_MFENCE},
	    {"0f ae f8", INSN_SFENCE},
	    {"66 0f ae f0", INSN_UNKNOWN},    /* tpause */
	    {"0f ae 38", INSN_UNKNOWN},	      /* clflush */
	    {"0f ae 54 24 04", INSN_LDMXCSR}, /* ldmxcsr 4(%rsp), as in kernel_fpu_begin */
	    {"0f ae 5c 24 04", INSN_STMXCSR},
	    {"f3 0f ae d0", INSN_UNKNOWN}, /* wrfsbase %eax */
	    {"0f 01 f8", INSN_UNKNOWN},	   /* swapgs */
	    {"0f 05", INSN_SYSCALL},	   /* counted only (pvm_handle_debug) */
	    {"48 0f 07", INSN_SYSRET},
	    {"cd 03", INSN_UNKNOWN}, /* int 3 is not int3 */
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		uint8_t b[16];
		size_t n = parse_hex(ops[i].hex, b);
		struct insn in;
		CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), 0);
		if (in.op != ops[i].op)
			fprintf(stderr, "[%s]: op %s, want %s\n", ops[i].hex, insn_op_name(in.op),
				insn_op_name(ops[i].op));
		CHECK_EQ(in.op, ops[i].op);
		CHECK_EQ(in.len, n);
	}
}

static void test_decode_fields(void)
{
	uint8_t b[16];
	struct insn in;
	/* popcnt 0x12(%rbx,%rsi,4),%r11 */
	size_t n = parse_hex("f3 4c 0f b8 5c b3 12", b);
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), 0);
	CHECK_EQ(in.reg, 11);
	CHECK_EQ(in.base, INSN_RBX);
	CHECK_EQ(in.index, INSN_RSI);
	CHECK_EQ(in.scale, 4);
	CHECK_EQ(in.disp, 0x12);
	CHECK_EQ(in.opsize, 8);
	/* popcnt %gs:-0x10(%r13),%ecx with a negative disp8 */
	n = parse_hex("65 f3 41 0f b8 4d f0", b);
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), 0);
	CHECK_EQ(in.seg, INSN_SEG_GS);
	CHECK_EQ(in.base, INSN_R13);
	CHECK_EQ(in.disp, -16);
	CHECK_EQ(in.opsize, 4);
	/* RIP-relative */
	n = parse_hex("f3 48 0f b8 05 78 56 34 12", b);
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), 0);
	CHECK(in.rip_relative);
	CHECK_EQ(in.disp, 0x12345678);
	/* The same ModRM in 32-bit mode is an absolute disp32. */
	n = parse_hex("f3 0f b8 05 78 56 34 12", b);
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_32), 0);
	CHECK(!in.rip_relative);
	CHECK_EQ(in.base, -1);
	/* A REX followed by a legacy prefix, VEX in 64-bit mode, an invalid-in-64 opcode. */
	n = parse_hex("48 66 90", b);
	CHECK(insn_decode(&in, b, n, INSN_MODE_64) < 0);
	n = parse_hex("c5 f8 77", b);
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), -EOPNOTSUPP);
	n = parse_hex("c5 f8 77", b); /* lds in 32-bit mode */
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_32), 0);
	n = parse_hex("06", b);
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), -EINVAL);
	/* 15 prefixes and an opcode: 16 bytes, longer than the CPU allows. */
	memset(b, 0x66, 15);
	b[15] = 0x90;
	CHECK_EQ(insn_decode(&in, b, 16, INSN_MODE_64), -EINVAL);
	/* 14 prefixes and a one-byte opcode: 15 bytes, legal. */
	b[14] = 0x90;
	CHECK_EQ(insn_decode(&in, b, 15, INSN_MODE_64), 0);
	CHECK_EQ(in.len, 15);
	CHECK_EQ(insn_decode(&in, b, 0, INSN_MODE_64), -ENODATA);
	CHECK_EQ(insn_decode(&in, b, 1, (enum insn_mode)3), -EINVAL);

	char hex[64];
	insn_format_bytes((const uint8_t *)"\xf3\x48\x0f\xb8\xc3", 5, hex, sizeof(hex));
	CHECK(!strcmp(hex, "f3 48 0f b8 c3"));
	insn_format_bytes((const uint8_t *)"\xf3\x48\x0f\xb8\xc3", 5, hex, 7);
	CHECK(!strcmp(hex, "f3 48"));
}

/* Random bytes: any result is fine, but no read beyond n (ASan), a length
 * of at most 15, and the same answer when given exactly len bytes. */
static int fuzz_cases;

static void test_decode_fuzz(void)
{
	for (int i = 0; i < 200000; i++) {
		size_t n = rnd() % 17;
		uint8_t *buf = malloc(n ? n : 1);
		for (size_t j = 0; j < n; j++) {
			/* Bias towards prefixes and escapes so that paths get deep. */
			static const uint8_t hot[] = {0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x48,
						      0x41, 0x0f, 0x38, 0x3a, 0x65};
			buf[j] = (rnd() & 3) ? (uint8_t)rnd() : hot[rnd() % sizeof(hot)];
		}
		enum insn_mode mode = (enum insn_mode)(2u << (rnd() % 3));
		struct insn in, again;
		int r = insn_decode(&in, buf, n, mode);
		if (r == 0) {
			CHECK(in.len >= 1 && in.len <= INSN_MAX_LEN && in.len <= n);
			CHECK_EQ(insn_decode(&again, buf, in.len, mode), 0);
			CHECK_EQ(again.len, in.len);
			CHECK_EQ(again.op, in.op);
		} else {
			CHECK(r == -ENODATA || r == -EINVAL || r == -EOPNOTSUPP);
		}
		free(buf);
		fuzz_cases++;
	}
}

/* ---- completions vs the host CPU ----------------------------------------- */

/* Host memory as guest memory: linear address == host address. */
static int mem_read(void *opaque, uint64_t la, void *buf, unsigned len)
{
	memcpy(buf, (const void *)(uintptr_t)la, len);
	return 0;
}

static int mem_write(void *opaque, uint64_t la, const void *buf, unsigned len)
{
	memcpy((void *)(uintptr_t)la, buf, len);
	return 0;
}

/* A plain (single-threaded) compare-exchange, so the test compares the
 * completion with the CPU's lock cmpxchg16b rather than with itself. */
static int mem_cmpxchg16(void *opaque, uint64_t la, uint64_t expected[2], const uint64_t desired[2])
{
	uint64_t *m = (uint64_t *)(uintptr_t)la;
	if (m[0] == expected[0] && m[1] == expected[1]) {
		m[0] = desired[0];
		m[1] = desired[1];
		return 1;
	}
	expected[0] = m[0];
	expected[1] = m[1];
	return 0;
}

static const struct insn_mem host_mem = {NULL, mem_read, mem_write, mem_cmpxchg16};

/* Runs "insn" with RFLAGS = *fl on entry; *fl gets RFLAGS after.  The red
 * zone is stepped over before push/popf. */
#define NATIVE(name, insn, type)                                                                   \
	static void name(uint64_t src, uint64_t *dst, uint64_t *fl)                                \
	{                                                                                          \
		type d = (type)*dst, s = (type)src;                                                \
		uint64_t f = *fl;                                                                  \
		__asm__ volatile("lea -128(%%rsp), %%rsp\n\tpush %[f]\n\tpopf\n\t" insn            \
				 " %[s], %[d]\n\t"                                                 \
				 "pushf\n\tpop %[f]\n\tlea 128(%%rsp), %%rsp"                      \
				 : [d] "+r"(d), [f] "+r"(f)                                        \
				 : [s] "r"(s)                                                      \
				 : "cc", "memory");                                                \
		*dst = (*dst & ~(uint64_t)(type)~0ull) | (uint64_t)d;                              \
		if (sizeof(type) == 4)                                                             \
			*dst = (uint32_t)d;                                                        \
		*fl = f;                                                                           \
	}
NATIVE(native_popcnt16, "popcntw", uint16_t)
NATIVE(native_popcnt32, "popcntl", uint32_t)
NATIVE(native_popcnt64, "popcntq", uint64_t)
NATIVE(native_lzcnt16, "lzcntw", uint16_t)
NATIVE(native_lzcnt32, "lzcntl", uint32_t)
NATIVE(native_lzcnt64, "lzcntq", uint64_t)
NATIVE(native_tzcnt16, "tzcntw", uint16_t)
NATIVE(native_tzcnt32, "tzcntl", uint32_t)
NATIVE(native_tzcnt64, "tzcntq", uint64_t)

typedef void (*native_fn)(uint64_t, uint64_t *, uint64_t *);

struct bitcount {
	const char *name;
	uint8_t opcode;
	uint64_t defined;    /* flags the SDM defines */
	native_fn native[3]; /* 16, 32, 64 */
	bool host_has;
	int cases;
};

static uint64_t rnd_flags(void)
{
	return 0x2 | (rnd() & RFLAGS_ARITH);
}

/* Encodes "F3 [REX] 0F op ModRM [SIB] [disp]" for reg <- r/m; the memory
 * form picks one of several addressing shapes and sets up the registers so
 * that the address is buf.  Returns the length. */
static size_t encode_bitcount(uint8_t *b, uint8_t opcode, unsigned size, unsigned dst, unsigned src,
			      bool memform, struct insn_regs *r, uint64_t buf, unsigned *clobber)
{
	size_t n = 0;
	unsigned shape = memform ? (unsigned)(rnd() % 5) : 0;
	unsigned base = src, index = (src + 1 + (unsigned)(rnd() % 14)) % 16;
	if (index == INSN_RSP)
		index = (index + 1) % 16;
	if (shape == 4) /* gs: override with a segment base */
		b[n++] = 0x65;
	if (size == 2)
		b[n++] = 0x66;
	b[n++] = 0xf3;
	uint8_t rex = (uint8_t)((size == 8 ? 8 : 0) | ((dst & 8) ? 4 : 0));
	unsigned rm = src;
	uint8_t modrm;
	int32_t disp = (int32_t)(rnd() % 2000) - 1000;
	*clobber = 16;
	if (!memform) {
		rex |= (src & 8) ? 1 : 0;
		modrm = (uint8_t)(0xc0 | ((dst & 7) << 3) | (rm & 7));
	} else if (shape == 3) { /* RIP-relative */
		modrm = (uint8_t)(0x05 | ((dst & 7) << 3));
	} else {
		rex |= (base & 8) ? 1 : 0;
		if (shape == 2)
			rex |= (index & 8) ? 2 : 0;
		/* shape 0: [base], 1: [base+disp8/32], 2: [base+index*s+disp32], 4:
		 * gs:[base+disp32] */
		unsigned mod = shape == 0 ? 0 : 2;
		if (shape == 1 && disp >= -128 && disp < 128)
			mod = 1;
		if (shape == 0 && (base & 7) == 5)
			mod = 1, disp = 0; /* [rbp]/[r13] need a disp8 */
		modrm = (uint8_t)((mod << 6) | ((dst & 7) << 3) |
				  ((shape == 2 || (base & 7) == 4) ? 4 : (base & 7)));
	}
	if (rex)
		b[n++] = (uint8_t)(0x40 | rex);
	b[n++] = 0x0f;
	b[n++] = opcode;
	b[n++] = modrm;
	if (!memform)
		return n;
	if (shape == 3) {
		size_t len = n + 4;
		int64_t d = (int64_t)(buf - (r->rip + len));
		/* The unit test's rip is chosen near buf so that d fits. */
		memcpy(b + n, &(int32_t){(int32_t)d}, 4);
		return len;
	}
	unsigned scale = 1u << (rnd() % 4);
	if (shape == 2) {
		b[n++] = (uint8_t)(((__builtin_ctz(scale)) << 6) | ((index & 7) << 3) | (base & 7));
		if ((base & 7) == 5 && (modrm >> 6) == 0)
			return 0; /* not generated: mod is 2 */
	} else if ((base & 7) == 4) {
		b[n++] = 0x24; /* SIB: no index, base rsp/r12 */
	}
	unsigned mod = modrm >> 6;
	if (mod == 1)
		b[n++] = (uint8_t)(int8_t)disp;
	else if (mod == 2) {
		memcpy(b + n, &disp, 4);
		n += 4;
	}
	uint64_t segbase = 0;
	if (shape == 4) {
		segbase = rnd() & 0xffff0;
		r->seg_base[INSN_SEG_GS] = segbase;
	}
	uint64_t want = buf - segbase - (uint64_t)(int64_t)(mod ? disp : 0);
	if (shape == 2) {
		r->gpr[index] = rnd() % 1000;
		want -= r->gpr[index] * scale;
	}
	r->gpr[base] = want;
	*clobber = base; /* the destination must not be an address register */
	return n;
}

static void test_bitcount(struct bitcount *t, bool memform)
{
	static const unsigned sizes[3] = {2, 4, 8};
	uint64_t cell[2];
	for (int i = 0; i < 4000; i++) {
		unsigned si = (unsigned)(rnd() % 3), size = sizes[si];
		unsigned dst = (unsigned)(rnd() % 16), src = (unsigned)(rnd() % 16);
		struct insn_regs r = {0};
		for (int g = 0; g < 16; g++)
			r.gpr[g] = rnd();
		r.rip = (uint64_t)(uintptr_t)cell - 4096 + (rnd() % 8192);
		r.rflags = rnd_flags();
		uint64_t value = rnd_operand();
		cell[0] = value;
		uint8_t b[16];
		unsigned clobber;
		if (memform && src == INSN_RSP)
			src = INSN_RBX;
		size_t n = encode_bitcount(b, t->opcode, size, dst, src, memform, &r,
					   (uint64_t)(uintptr_t)cell, &clobber);
		if (!n || dst == clobber || (memform && (dst == src)))
			continue;
		if (!memform)
			r.gpr[src] = value;
		struct insn_regs before = r;

		struct insn in;
		int rc = insn_decode(&in, b, n, INSN_MODE_64);
		CHECK_EQ(rc, 0);
		CHECK_EQ(in.len, n);
		struct insn_event ev;
		rc = insn_complete(&in, &r, &host_mem, &ev);
		CHECK_EQ(rc, 0);
		CHECK(!ev.pending);

		uint64_t want_dst = before.gpr[dst], want_fl = before.rflags;
		t->native[si](value & (size == 8 ? ~0ull : (1ull << (8 * size)) - 1), &want_dst,
			      &want_fl);
		bool ok = r.gpr[dst] == want_dst &&
			  (r.rflags & t->defined) == (want_fl & t->defined) &&
			  r.rip == before.rip + n;
		for (int g = 0; g < 16; g++)
			if (g != (int)dst && r.gpr[g] != before.gpr[g])
				ok = false;
		/* Flags outside the defined set are left alone. */
		if ((r.rflags & ~t->defined) != (before.rflags & ~t->defined))
			ok = false;
		if (!ok) {
			char hex[64];
			insn_format_bytes(b, n, hex, sizeof(hex));
			fprintf(stderr,
				"%s [%s] value %#llx: got %#llx fl %#llx, cpu %#llx fl %#llx\n",
				t->name, hex, (unsigned long long)value,
				(unsigned long long)r.gpr[dst], (unsigned long long)r.rflags,
				(unsigned long long)want_dst, (unsigned long long)want_fl);
			test_failures++;
			if (test_failures > 20)
				return;
		}
		t->cases++;
	}
}

static void test_cmpxchg16b(int *count)
{
	__attribute__((aligned(16))) uint64_t mem_emul[2];
	union {
		unsigned __int128 q;
		uint64_t w[2];
	} cpu;
	uint64_t *mem_cpu = cpu.w;
	for (int i = 0; i < 4000; i++) {
		uint64_t m0 = rnd(), m1 = rnd();
		bool equal = rnd() & 1;
		uint64_t rax = equal ? m0 : rnd(), rdx = equal || (rnd() & 1) ? m1 : rnd();
		uint64_t rbx = rnd(), rcx = rnd(), fl = rnd_flags();
		mem_emul[0] = mem_cpu[0] = m0;
		mem_emul[1] = mem_cpu[1] = m1;

		/* lock cmpxchg16b (%rdi) */
		uint8_t b[] = {0xf0, 0x48, 0x0f, 0xc7, 0x0f};
		struct insn in;
		CHECK_EQ(insn_decode(&in, b, sizeof(b), INSN_MODE_64), 0);
		struct insn_regs r = {0};
		r.gpr[INSN_RAX] = rax;
		r.gpr[INSN_RDX] = rdx;
		r.gpr[INSN_RBX] = rbx;
		r.gpr[INSN_RCX] = rcx;
		r.gpr[INSN_RDI] = (uint64_t)(uintptr_t)mem_emul;
		r.rflags = fl;
		r.rip = 0x1000;
		struct insn_event ev;
		CHECK_EQ(insn_complete(&in, &r, &host_mem, &ev), 0);
		CHECK(!ev.pending);

		uint64_t a = rax, d = rdx, f = fl;
		__asm__ volatile(
		    "lea -128(%%rsp), %%rsp\n\tpush %[f]\n\tpopf\n\t"
		    "lock cmpxchg16b (%[p])\n\tpushf\n\tpop %[f]\n\tlea 128(%%rsp), %%rsp"
		    : "+m"(cpu.q), "+a"(a), "+d"(d), [f] "+r"(f)
		    : "b"(rbx), "c"(rcx), [p] "r"(&cpu.q)
		    : "cc", "memory");
		bool ok = r.gpr[INSN_RAX] == a && r.gpr[INSN_RDX] == d &&
			  mem_emul[0] == mem_cpu[0] && mem_emul[1] == mem_cpu[1] &&
			  (r.rflags & RFLAGS_ZF) == (f & RFLAGS_ZF) &&
			  (r.rflags & ~(uint64_t)RFLAGS_ZF) == (fl & ~(uint64_t)RFLAGS_ZF) &&
			  r.rip == 0x1005;
		if (!ok) {
			fprintf(
			    stderr,
			    "cmpxchg16b case %d differs from the CPU: emu rax %llx rdx %llx m %llx "
			    "%llx fl %llx rip %llx; cpu rax %llx rdx %llx m %llx %llx fl %llx\n",
			    i, (unsigned long long)r.gpr[INSN_RAX],
			    (unsigned long long)r.gpr[INSN_RDX], (unsigned long long)mem_emul[0],
			    (unsigned long long)mem_emul[1], (unsigned long long)r.rflags,
			    (unsigned long long)r.rip, (unsigned long long)a, (unsigned long long)d,
			    (unsigned long long)mem_cpu[0], (unsigned long long)mem_cpu[1],
			    (unsigned long long)f);
			test_failures++;
			return;
		}
		(*count)++;
	}
	/* Misaligned: #GP(0), nothing changed. */
	struct insn in;
	uint8_t b[] = {0x48, 0x0f, 0xc7, 0x0f};
	CHECK_EQ(insn_decode(&in, b, sizeof(b), INSN_MODE_64), 0);
	CHECK_EQ(in.op, INSN_CMPXCHG16B);
	struct insn_regs r = {.rip = 0x1000};
	r.gpr[INSN_RDI] = (uint64_t)(uintptr_t)mem_emul + 8;
	struct insn_event ev;
	CHECK_EQ(insn_complete(&in, &r, &host_mem, &ev), 0);
	CHECK(ev.pending && ev.vector == X86_VEC_GP && ev.has_error_code && ev.error_code == 0);
	CHECK_EQ(r.rip, 0x1000);
}

static void complete_bytes(const char *hex, struct insn_regs *r, struct insn_event *ev, int want_rc)
{
	uint8_t b[16];
	size_t n = parse_hex(hex, b);
	struct insn in;
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), 0);
	CHECK_EQ(insn_complete(&in, r, &host_mem, ev), want_rc);
}

static void test_simple(void)
{
	struct insn_regs r = {.rip = 0x1000, .rflags = 0x2 | (1u << 16)};
	struct insn_event ev;
	complete_bytes("cc", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_BP && !ev.has_error_code);
	CHECK_EQ(r.rip, 0x1001); /* a trap: RIP past it */
	CHECK_EQ(r.rflags, 0x2); /* RF cleared */

	r.rip = 0x1000;
	complete_bytes("0f 0b", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_UD);
	CHECK_EQ(r.rip, 0x1000); /* a fault: RIP at it */

	complete_bytes("9b", &r, &ev, 0);
	CHECK(!ev.pending);
	CHECK_EQ(r.rip, 0x1001);
	r.fsw = FSW_ES;
	complete_bytes("9b", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_MF);
	CHECK_EQ(r.rip, 0x1001);
	r.cr0 = CR0_MP | CR0_TS;
	complete_bytes("9b", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_NM);
	r.cr0 = CR0_TS; /* TS without MP: fwait ignores TS */
	r.fsw = 0;
	complete_bytes("9b", &r, &ev, 0);
	CHECK(!ev.pending);
	CHECK_EQ(r.rip, 0x1002);

	r.rflags = 0x2;
	complete_bytes("0f 01 cb", &r, &ev, 0);
	CHECK(!ev.pending);
	CHECK_EQ(r.rflags, 0x2 | RFLAGS_AC);
	CHECK_EQ(r.rip, 0x1005);
	complete_bytes("0f 01 ca", &r, &ev, 0);
	CHECK_EQ(r.rflags, 0x2);
	r.cpl = 3;
	complete_bytes("0f 01 cb", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_UD);
	CHECK_EQ(r.rflags, 0x2);
	CHECK_EQ(r.rip, 0x1008);
	r.cpl = 0;

	complete_bytes("0f ae e8", &r, &ev, 0);
	complete_bytes("0f ae f0", &r, &ev, 0);
	complete_bytes("0f ae f8", &r, &ev, 0);
	CHECK_EQ(r.rip, 0x1008 + 9);

	/* lock popcnt: #UD; an instruction not in the table: -EOPNOTSUPP. */
	uint64_t rip = r.rip;
	complete_bytes("f0 f3 48 0f b8 c3", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_UD);
	CHECK_EQ(r.rip, rip);
	complete_bytes("0f 01 f8", &r, &ev, -EOPNOTSUPP);

	/* 32-bit mode wraps EIP; 16-bit code wraps IP. */
	uint8_t b[] = {0xf3, 0x0f, 0xb8, 0xc3};
	struct insn in;
	CHECK_EQ(insn_decode(&in, b, sizeof(b), INSN_MODE_32), 0);
	r = (struct insn_regs){.rip = 0xfffffffe, .rflags = 2};
	r.gpr[INSN_RBX] = 0xffffffff00000007ull;
	r.gpr[INSN_RAX] = 0x1111111111111111ull;
	CHECK_EQ(insn_complete(&in, &r, &host_mem, &ev), 0);
	CHECK_EQ(r.rip, 2);
	CHECK_EQ(r.gpr[INSN_RAX], 3); /* 32-bit destination: zero-extended */
	CHECK_EQ(insn_decode(&in, b, sizeof(b), INSN_MODE_16), 0);
	CHECK_EQ(in.opsize, 2);
	r.rip = 0xfffe;
	r.gpr[INSN_RAX] = 0x1111111111111111ull;
	CHECK_EQ(insn_complete(&in, &r, &host_mem, &ev), 0);
	CHECK_EQ(r.rip, 2);
	CHECK_EQ(r.gpr[INSN_RAX], 0x1111111111110003ull); /* 16-bit destination merges */
}

static void test_sysret(void)
{
	struct insn_regs r = {.rip = 0x1000, .rflags = 2, .efer = EFER_SCE};
	struct insn_event ev;
	r.gpr[INSN_RCX] = 0x401234;
	r.gpr[INSN_R11] = 0xffffffffffffffffull;
	complete_bytes("48 0f 07", &r, &ev, 0); /* sysretq */
	CHECK(!ev.pending);
	CHECK_EQ(r.rip, 0x401234);
	CHECK_EQ(r.rflags, 0x3c7fd7 | 2); /* RF and VM cleared, reserved bits as the CPU */
	r.cpl = 3;
	complete_bytes("48 0f 07", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_GP);
	r.cpl = 0;
	r.efer = 0;
	complete_bytes("48 0f 07", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_UD);
}

static void test_mxcsr(void)
{
	uint32_t cell = 0x1f80, out = 0;
	struct insn_regs r = {.rip = 0x1000,
			      .rflags = 2,
			      .cr0 = 0x80050033,
			      .cr4 = CR4_OSFXSR,
			      .mxcsr = 0x1f80,
			      .mxcsr_mask = 0xffff};
	struct insn_event ev;
	r.gpr[INSN_RSI] = (uint64_t)(uintptr_t)&cell;
	r.gpr[INSN_RDI] = (uint64_t)(uintptr_t)&out;
	cell = 0x9fc0;				/* FZ, DAZ, masks */
	complete_bytes("0f ae 16", &r, &ev, 0); /* ldmxcsr (%rsi) */
	CHECK(!ev.pending);
	CHECK_EQ(r.mxcsr, 0x9fc0);
	complete_bytes("0f ae 1f", &r, &ev, 0); /* stmxcsr (%rdi) */
	CHECK_EQ(out, 0x9fc0);
	CHECK_EQ(r.rip, 0x1006);
	cell = 0x10000; /* reserved bit: #GP(0), MXCSR unchanged */
	complete_bytes("0f ae 16", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_GP && ev.has_error_code);
	CHECK_EQ(r.mxcsr, 0x9fc0);
	CHECK_EQ(r.rip, 0x1006);
	r.cr0 |= CR0_TS;
	complete_bytes("0f ae 1f", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_NM);
	r.cr0 &= ~(uint64_t)CR0_TS;
	r.cr4 = 0;
	complete_bytes("0f ae 1f", &r, &ev, 0);
	CHECK(ev.pending && ev.vector == X86_VEC_UD);
	CHECK_EQ(r.rip, 0x1006);

	/* The CPU agrees that what stmxcsr stores is what ldmxcsr loaded. */
	uint32_t saved, v = 0x1f80 | 0x40, back;
	__asm__ volatile("stmxcsr %0\n\tldmxcsr %2\n\tstmxcsr %1\n\tldmxcsr %0"
			 : "=m"(saved), "=m"(back)
			 : "m"(v)
			 : "memory");
	CHECK_EQ(back, v);
}

/* 32-bit mode addressing: segment base added, wraps at 4 GiB. */
static void test_linear_address(void)
{
	uint8_t b[16];
	struct insn in;
	struct insn_regs r = {0};
	size_t n = parse_hex("f3 0f b8 45 10", b); /* popcnt 0x10(%ebp),%eax */
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_32), 0);
	r.gpr[INSN_RBP] = 0xfffffff8;
	r.seg_base[INSN_SEG_SS] = 0x100;
	r.seg_base[INSN_SEG_DS] = 0x999;
	CHECK_EQ(insn_linear_address(&in, &r), 0x108); /* SS, not DS, for EBP */
	n = parse_hex("8b 46 12", b);		       /* mov 0x12(%bp),%ax in 16-bit mode */
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_16), 0);
	r.gpr[INSN_RBP] = 0xfff0;
	r.seg_base[INSN_SEG_SS] = 0x20000;
	CHECK_EQ(insn_linear_address(&in, &r), 0x20002);
	n = parse_hex("64 f3 48 0f b8 03", b); /* fs: in 64-bit mode adds FS.base, DS does not */
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), 0);
	r.gpr[INSN_RBX] = 0x1000;
	r.seg_base[INSN_SEG_FS] = 0x7f0000000000ull;
	CHECK_EQ(insn_linear_address(&in, &r), 0x7f0000001000ull);
	n = parse_hex("f3 48 0f b8 03", b);
	CHECK_EQ(insn_decode(&in, b, n, INSN_MODE_64), 0);
	CHECK_EQ(insn_linear_address(&in, &r), 0x1000);
}

int main(void)
{
	check_lengths(cases64, sizeof(cases64) / sizeof(cases64[0]), INSN_MODE_64);
	check_lengths(cases32, sizeof(cases32) / sizeof(cases32[0]), INSN_MODE_32);
	check_lengths(cases16, sizeof(cases16) / sizeof(cases16[0]), INSN_MODE_16);
	test_decode_ops();
	test_decode_fields();
	test_decode_fuzz();
	test_simple();
	test_mxcsr();
	test_sysret();
	test_linear_address();

	unsigned a, b, c, d;
	__cpuid(1, a, b, c, d);
	bool popcnt = c & (1u << 23), cx16 = c & (1u << 13);
	__cpuid(0x80000001, a, b, c, d);
	bool lzcnt = c & (1u << 5);
	__cpuid_count(7, 0, a, b, c, d);
	bool bmi1 = b & (1u << 3);
	uint64_t czf = RFLAGS_CF | RFLAGS_ZF;
	struct bitcount tests[] = {
	    {"popcnt",
	     0xb8,
	     RFLAGS_ARITH,
	     {native_popcnt16, native_popcnt32, native_popcnt64},
	     popcnt,
	     0},
	    {"lzcnt", 0xbd, czf, {native_lzcnt16, native_lzcnt32, native_lzcnt64}, lzcnt, 0},
	    {"tzcnt", 0xbc, czf, {native_tzcnt16, native_tzcnt32, native_tzcnt64}, bmi1, 0},
	};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (!tests[i].host_has) {
			printf("SKIP: the host CPU has no %s: no oracle\n", tests[i].name);
			continue;
		}
		test_bitcount(&tests[i], false);
		test_bitcount(&tests[i], true);
		printf("%s: %d cases against the CPU (register and memory forms, 16/32/64-bit)\n",
		       tests[i].name, tests[i].cases);
		CHECK(tests[i].cases > 5000);
	}
	int cx = 0;
	if (cx16) {
		test_cmpxchg16b(&cx);
		printf("cmpxchg16b: %d cases against the CPU\n", cx);
	} else {
		printf("SKIP: the host CPU has no cmpxchg16b: no oracle\n");
	}
	printf("decoder: %zu length cases, %d random byte strings\n",
	       sizeof(cases64) / sizeof(cases64[0]) + sizeof(cases32) / sizeof(cases32[0]) +
		   sizeof(cases16) / sizeof(cases16[0]),
	       fuzz_cases);
	TEST_DONE();
}
