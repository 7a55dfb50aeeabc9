#include "arch/x86/insn_decode.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Per-opcode facts for the length decoder. */
enum {
	F_MODRM = 1 << 0,
	F_I8 = 1 << 1,	  /* imm8 */
	F_I16 = 1 << 2,	  /* imm16 */
	F_IZ = 1 << 3,	  /* imm16/32 by operand size */
	F_IV = 1 << 4,	  /* imm16/32/64 by operand size (mov r, imm) */
	F_MOFFS = 1 << 5, /* address-size offset (mov al, moffs) */
	F_FAR = 1 << 6,	  /* ptr16:16/32 */
	F_INV64 = 1 << 7, /* invalid in 64-bit mode */
	F_GRP3 = 1 << 8,  /* F6/F7: /0 and /1 take an immediate */
	F_BAD = 1 << 9,	  /* not decoded (VEX/EVEX/XOP or undefined) */
};

/* clang-format off */
/* Opcode ranges of the one-byte map; a small table written as code so each
 * line can be checked against the SDM's opcode map (Vol. 2D, A.3). */
static uint16_t map1_flags(uint8_t op)
{
	if (op < 0x40) {
		unsigned lo = op & 7;
		if (lo < 4)
			return F_MODRM; /* ALU r/m forms */
		if (lo == 4)
			return F_I8;    /* ALU al, imm8 */
		if (lo == 5)
			return F_IZ;    /* ALU eax, imm */
		/* 06/07/0E/16/17/1E/1F push/pop seg, 27/2F/37/3F daa...; 26/2E/36/3E
		 * are prefixes and never get here. */
		return op == 0x0f ? 0 : F_INV64;
	}
	if (op < 0x60)
		return 0; /* inc/dec (REX in 64-bit mode), push/pop reg */
	switch (op) {
	case 0x60: case 0x61: return F_INV64;        /* pusha/popa */
	case 0x62: return F_MODRM | F_INV64;         /* bound (EVEX in 64-bit) */
	case 0x63: return F_MODRM;                   /* arpl / movsxd */
	case 0x68: return F_IZ;
	case 0x69: return F_MODRM | F_IZ;
	case 0x6a: return F_I8;
	case 0x6b: return F_MODRM | F_I8;
	case 0x80: return F_MODRM | F_I8;
	case 0x81: return F_MODRM | F_IZ;
	case 0x82: return F_MODRM | F_I8 | F_INV64;
	case 0x83: return F_MODRM | F_I8;
	case 0x9a: return F_FAR | F_INV64;
	case 0xa8: return F_I8;
	case 0xa9: return F_IZ;
	case 0xc0: case 0xc1: return F_MODRM | F_I8;
	case 0xc2: case 0xca: return F_I16;
	case 0xc4: case 0xc5: return F_MODRM | F_INV64; /* les/lds; VEX in 64-bit */
	case 0xc6: return F_MODRM | F_I8;
	case 0xc7: return F_MODRM | F_IZ;
	case 0xc8: return F_I16 | F_I8;              /* enter */
	case 0xcd: return F_I8;
	case 0xce: return F_INV64;                   /* into */
	case 0xd4: case 0xd5: return F_I8 | F_INV64; /* aam/aad */
	case 0xd6: return F_INV64;                   /* salc */
	case 0xe8: case 0xe9: return F_IZ;
	case 0xea: return F_FAR | F_INV64;
	case 0xeb: return F_I8;
	case 0xf6: case 0xf7: return F_MODRM | F_GRP3;
	case 0xfe: case 0xff: return F_MODRM;
	}
	if (op >= 0x64 && op <= 0x67)
		return 0; /* prefixes; not reached */
	if (op >= 0x6c && op <= 0x6f)
		return 0; /* ins/outs */
	if (op >= 0x70 && op <= 0x7f)
		return F_I8; /* jcc rel8 */
	if (op >= 0x84 && op <= 0x8f)
		return F_MODRM;
	if (op >= 0xa0 && op <= 0xa3)
		return F_MOFFS;
	if (op >= 0xb0 && op <= 0xb7)
		return F_I8;
	if (op >= 0xb8 && op <= 0xbf)
		return F_IV;
	if (op >= 0xd0 && op <= 0xd3)
		return F_MODRM;
	if (op >= 0xd8 && op <= 0xdf)
		return F_MODRM; /* x87 */
	if (op >= 0xe0 && op <= 0xe7)
		return F_I8; /* loop/jcxz/in/out imm8 */
	return 0; /* 90-9F, A4-AF, C3, C9, CB, CC, CF, EC-EF, F0-F5, F8-FD */
}

static uint16_t map0f_flags(uint8_t op)
{
	switch (op) {
	case 0x04: case 0x0a: case 0x0c: case 0x36:
	case 0x39: case 0x3b: case 0x3c: case 0x3d: case 0x3e: case 0x3f:
	case 0xff:
		return F_BAD;  /* undefined */
	case 0x05: case 0x06: case 0x07: case 0x08: case 0x09: case 0x0b: case 0x0e:
	case 0x30: case 0x31: case 0x32: case 0x33: case 0x34: case 0x35: case 0x37:
	case 0x77: case 0xa0: case 0xa1: case 0xa2: case 0xa8: case 0xa9: case 0xaa:
		return 0;
	case 0x0f: return F_MODRM | F_I8;           /* 3DNow!: imm8 is the opcode */
	case 0x70: case 0x71: case 0x72: case 0x73:
	case 0xa4: case 0xac: case 0xba: case 0xc2: case 0xc4: case 0xc5: case 0xc6:
		return F_MODRM | F_I8;
	}
	if (op >= 0x80 && op <= 0x8f)
		return F_IZ; /* jcc rel16/32 */
	if (op >= 0xc8 && op <= 0xcf)
		return 0;    /* bswap */
	return F_MODRM;
}

static bool is_legacy_prefix(uint8_t b)
{
	switch (b) {
	case 0xf0: case 0xf2: case 0xf3: case 0x2e: case 0x36: case 0x3e: case 0x26:
	case 0x64: case 0x65: case 0x66: case 0x67:
		return true;
	}
	return false;
}

/* clang-format on */

struct cursor {
	const uint8_t *p;
	size_t n, pos;
};

/* Reads size bytes little-endian; -ENODATA past the end, -EINVAL past 15. */
static int fetch(struct cursor *c, unsigned size, uint64_t *out)
{
	uint64_t v = 0;
	if (c->pos + size > INSN_MAX_LEN)
		return c->n > INSN_MAX_LEN - 1 ? -EINVAL : -ENODATA;
	if (c->pos + size > c->n)
		return -ENODATA;
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)c->p[c->pos + i] << (8 * i);
	c->pos += size;
	*out = v;
	return 0;
}

static int64_t sign_extend(uint64_t v, unsigned size)
{
	switch (size) {
	case 1:
		return (int8_t)v;
	case 2:
		return (int16_t)v;
	case 4:
		return (int32_t)v;
	}
	return (int64_t)v;
}

static int decode_modrm16(struct insn *in, struct cursor *c)
{
	/* bx+si, bx+di, bp+si, bp+di, si, di, bp, bx */
	static const int8_t base16[8] = {3, 3, 5, 5, 6, 7, 5, 3};
	static const int8_t index16[8] = {6, 7, 6, 7, -1, -1, -1, -1};
	unsigned rm = in->modrm & 7;
	unsigned dsize = in->mod == 1 ? 1 : in->mod == 2 ? 2 : 0;
	in->base = base16[rm];
	in->index = index16[rm];
	in->scale = 1;
	if (in->mod == 0 && rm == 6) {
		in->base = -1;
		dsize = 2;
	}
	if (dsize) {
		uint64_t d;
		int r = fetch(c, dsize, &d);
		if (r)
			return r;
		in->disp = sign_extend(d, dsize);
		in->disp_size = (uint8_t)dsize;
	}
	return 0;
}

static int decode_modrm(struct insn *in, struct cursor *c)
{
	uint64_t b;
	int r = fetch(c, 1, &b);
	if (r)
		return r;
	in->has_modrm = true;
	in->modrm = (uint8_t)b;
	in->mod = in->modrm >> 6;
	in->reg = (uint8_t)(((in->modrm >> 3) & 7) | ((in->rex & 4) << 1));
	in->rm = (uint8_t)((in->modrm & 7) | ((in->rex & 1) << 3));
	in->base = in->index = -1;
	if (in->mod == 3)
		return 0;
	if (in->addrsize == 2)
		return decode_modrm16(in, c);

	unsigned dsize = in->mod == 1 ? 1 : in->mod == 2 ? 4 : 0;
	in->base = (int8_t)in->rm;
	in->scale = 1;
	if ((in->modrm & 7) == 4) {
		if ((r = fetch(c, 1, &b)))
			return r;
		in->has_sib = true;
		in->sib = (uint8_t)b;
		in->scale = (uint8_t)(1u << (in->sib >> 6));
		unsigned idx = ((in->sib >> 3) & 7) | ((in->rex & 2) << 2);
		in->index = idx == 4 ? -1 : (int8_t)idx; /* rsp cannot be an index */
		in->base = (int8_t)((in->sib & 7) | ((in->rex & 1) << 3));
		if ((in->sib & 7) == 5 && in->mod == 0) {
			in->base = -1;
			dsize = 4;
		}
	} else if ((in->modrm & 7) == 5 && in->mod == 0) {
		in->base = -1;
		dsize = 4;
		in->rip_relative = in->mode == INSN_MODE_64;
	}
	if (dsize) {
		if ((r = fetch(c, dsize, &b)))
			return r;
		in->disp = sign_extend(b, dsize);
		in->disp_size = (uint8_t)dsize;
	}
	return 0;
}

static unsigned imm_bytes(const struct insn *in, uint16_t f)
{
	unsigned n = 0;
	if (f & F_I8)
		n += 1;
	if (f & F_I16)
		n += 2;
	if (f & F_IZ)
		n += in->opsize == 2 ? 2 : 4;
	if (f & F_IV)
		n += in->opsize;
	if (f & F_MOFFS)
		n += in->addrsize;
	if (f & F_FAR)
		n += in->opsize == 2 ? 4 : 6;
	if ((f & F_GRP3) && ((in->modrm >> 3) & 7) < 2)
		n += in->opcode == 0xf6 ? 1 : (in->opsize == 2 ? 2 : 4);
	return n;
}

/* Names the instruction if it is one cairn completes. */
static enum insn_op classify(const struct insn *in)
{
	bool mandatory_none = !in->rep && !in->repne && !in->opsize_prefix;
	if (in->map == INSN_MAP_1) {
		if (in->opcode == 0xcc)
			return INSN_INT3;
		if (in->opcode == 0x9b)
			return INSN_FWAIT;
		return INSN_UNKNOWN;
	}
	if (in->map != INSN_MAP_0F)
		return INSN_UNKNOWN;
	switch (in->opcode) {
	case 0x05:
		return INSN_SYSCALL;
	case 0x07:
		return INSN_SYSRET;
	case 0x0b:
		return INSN_UD2;
	case 0x01:
		if (in->modrm == 0xca && mandatory_none)
			return INSN_CLAC;
		if (in->modrm == 0xcb && mandatory_none)
			return INSN_STAC;
		break;
	case 0xb8:
	case 0xbc:
	case 0xbd:
		/* F3 selects popcnt/tzcnt/lzcnt; F2 with them is undefined. */
		if (!in->rep || in->repne)
			break;
		return in->opcode == 0xb8   ? INSN_POPCNT
		       : in->opcode == 0xbc ? INSN_TZCNT
					    : INSN_LZCNT;
	case 0xc7:
		if (((in->modrm >> 3) & 7) == 1 && in->mod != 3 && (in->rex & 8) && !in->rep &&
		    !in->repne)
			return INSN_CMPXCHG16B;
		break;
	case 0xae:
		if (in->mod != 3 && mandatory_none && ((in->modrm >> 3) & 7) == 2)
			return INSN_LDMXCSR;
		if (in->mod != 3 && mandatory_none && ((in->modrm >> 3) & 7) == 3)
			return INSN_STMXCSR;
		if (in->mod == 3 && mandatory_none) {
			switch ((in->modrm >> 3) & 7) {
			case 5:
				return INSN_LFENCE;
			case 6:
				return INSN_MFENCE;
			case 7:
				return INSN_SFENCE;
			}
		}
		break;
	}
	return INSN_UNKNOWN;
}

static int decode_prefixes(struct insn *in, struct cursor *c)
{
	uint64_t b;
	for (;;) {
		int r = fetch(c, 1, &b);
		if (r)
			return r;
		if (!is_legacy_prefix((uint8_t)b))
			break;
		in->rex = 0; /* a REX before a legacy prefix is ignored */
			     /* clang-format off */
		switch (b) {
		case 0xf0: in->lock = true; break;
		case 0xf2: in->repne = true; in->rep = false; break;
		case 0xf3: in->rep = true; in->repne = false; break;
		case 0x66: in->opsize_prefix = true; break;
		case 0x67: in->addrsize_prefix = true; break;
		case 0x26: in->seg = INSN_SEG_ES; break;
		case 0x2e: in->seg = INSN_SEG_CS; break;
		case 0x36: in->seg = INSN_SEG_SS; break;
		case 0x3e: in->seg = INSN_SEG_DS; break;
		case 0x64: in->seg = INSN_SEG_FS; break;
		case 0x65: in->seg = INSN_SEG_GS; break;
		}
			     /* clang-format on */
	}
	/* REX: 40-4F in 64-bit mode; only the last one before the opcode counts. */
	while (in->mode == INSN_MODE_64 && (b & 0xf0) == 0x40) {
		in->rex = (uint8_t)b;
		int r = fetch(c, 1, &b);
		if (r)
			return r;
		if (is_legacy_prefix((uint8_t)b))
			return -EINVAL; /* legal for the CPU, but never emitted; refuse */
	}
	c->pos--; /* b is the first opcode byte; decode_opcode fetches it */
	return 0;
}

static void set_sizes(struct insn *in)
{
	switch (in->mode) {
	case INSN_MODE_64:
		in->opsize = (in->rex & 8) ? 8 : in->opsize_prefix ? 2 : 4;
		in->addrsize = in->addrsize_prefix ? 4 : 8;
		break;
	case INSN_MODE_32:
		in->opsize = in->opsize_prefix ? 2 : 4;
		in->addrsize = in->addrsize_prefix ? 2 : 4;
		break;
	default:
		in->opsize = in->opsize_prefix ? 4 : 2;
		in->addrsize = in->addrsize_prefix ? 4 : 2;
		break;
	}
}

int insn_decode(struct insn *in, const uint8_t *bytes, size_t n, enum insn_mode mode)
{
	memset(in, 0, sizeof(*in));
	in->mode = mode;
	in->seg = INSN_SEG_NONE;
	in->base = in->index = -1;
	if (mode != INSN_MODE_16 && mode != INSN_MODE_32 && mode != INSN_MODE_64)
		return -EINVAL;
	if (n > INSN_MAX_LEN)
		n = INSN_MAX_LEN;
	memcpy(in->bytes, bytes, n);
	struct cursor c = {in->bytes, n, 0};

	int r = decode_prefixes(in, &c);
	if (r)
		return r;
	set_sizes(in);

	uint64_t b;
	uint16_t f;
	if ((r = fetch(&c, 1, &b)))
		return r;
	in->opcode = (uint8_t)b;
	if (b != 0x0f) {
		if (mode == INSN_MODE_64 && (b == 0xc4 || b == 0xc5 || b == 0x62))
			return -EOPNOTSUPP; /* VEX / EVEX */
		f = map1_flags((uint8_t)b);
		if ((f & F_INV64) && mode == INSN_MODE_64)
			return -EINVAL;
		/* Near branches and push/pop default to 64-bit operands in 64-bit
		 * mode; only their immediate sizes matter here, and those are
		 * imm8/imm32 either way. */
	} else {
		if ((r = fetch(&c, 1, &b)))
			return r;
		if (b == 0x38 || b == 0x3a) {
			in->map = b == 0x38 ? INSN_MAP_0F38 : INSN_MAP_0F3A;
			if ((r = fetch(&c, 1, &b)))
				return r;
			in->opcode = (uint8_t)b;
			f = F_MODRM | (in->map == INSN_MAP_0F3A ? F_I8 : 0);
		} else {
			in->map = INSN_MAP_0F;
			in->opcode = (uint8_t)b;
			f = map0f_flags((uint8_t)b);
			if (f & F_BAD)
				return -EINVAL;
			if (in->opcode >= 0x80 && in->opcode <= 0x8f && mode == INSN_MODE_64)
				f = F_IZ; /* jcc rel32 whatever the operand size prefix says */
		}
	}
	if (f & F_MODRM) {
		if ((r = decode_modrm(in, &c)))
			return r;
	}
	unsigned isize = imm_bytes(in, f);
	if (in->map == INSN_MAP_1 && (in->opcode == 0xe8 || in->opcode == 0xe9) &&
	    mode == INSN_MODE_64)
		isize = 4;
	if (isize) {
		/* enter has two immediates (iw, ib); keep their raw bytes together. */
		if ((r = fetch(&c, isize, &b)))
			return r;
		in->imm = b;
		in->imm_size = (uint8_t)isize;
	}
	in->len = (uint8_t)c.pos;
	in->op = classify(in);
	return 0;
}

const char *insn_op_name(enum insn_op op)
{
	static const char *const names[INSN_OP_MAX] = {
	    [INSN_UNKNOWN] = "unknown", [INSN_INT3] = "int3",
	    [INSN_UD2] = "ud2",		[INSN_FWAIT] = "fwait",
	    [INSN_CLAC] = "clac",	[INSN_STAC] = "stac",
	    [INSN_POPCNT] = "popcnt",	[INSN_TZCNT] = "tzcnt",
	    [INSN_LZCNT] = "lzcnt",	[INSN_CMPXCHG16B] = "cmpxchg16b",
	    [INSN_LFENCE] = "lfence",	[INSN_MFENCE] = "mfence",
	    [INSN_SFENCE] = "sfence",	[INSN_LDMXCSR] = "ldmxcsr",
	    [INSN_STMXCSR] = "stmxcsr", [INSN_SYSCALL] = "syscall",
	    [INSN_SYSRET] = "sysret",
	};
	if ((unsigned)op >= INSN_OP_MAX || !names[op])
		return "unknown";
	return names[op];
}

void insn_format_bytes(const uint8_t *bytes, size_t n, char *buf, size_t size)
{
	size_t used = 0;
	if (!size)
		return;
	buf[0] = 0;
	for (size_t i = 0; i < n && used + 4 <= size; i++)
		used += (size_t)snprintf(buf + used, size - used, i ? " %02x" : "%02x", bytes[i]);
}
