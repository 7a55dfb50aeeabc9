#include "arch/x86/insn_complete.h"

#include <errno.h>

#define RFLAGS_RF (1u << 16)

static uint64_t size_mask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

static uint64_t gpr_read(const struct insn_regs *r, unsigned reg, unsigned size)
{
	return r->gpr[reg & 15] & size_mask(size);
}

/* As the CPU does: 32-bit writes zero-extend, 16-bit writes merge. */
static void gpr_write(struct insn_regs *r, unsigned reg, unsigned size, uint64_t v)
{
	uint64_t *g = &r->gpr[reg & 15];
	if (size == 2)
		*g = (*g & ~0xffffull) | (v & 0xffff);
	else
		*g = v & size_mask(size);
}

uint64_t insn_linear_address(const struct insn *in, const struct insn_regs *r)
{
	uint64_t ea;
	if (in->rip_relative) {
		ea = r->rip + in->len + (uint64_t)in->disp;
	} else {
		ea = (uint64_t)in->disp;
		if (in->base >= 0)
			ea += r->gpr[in->base];
		if (in->index >= 0)
			ea += r->gpr[in->index] * in->scale;
	}
	ea &= size_mask(in->addrsize);

	enum insn_seg seg = in->seg;
	if (seg == INSN_SEG_NONE)
		seg = (in->base == INSN_RSP || in->base == INSN_RBP) ? INSN_SEG_SS : INSN_SEG_DS;
	if (in->mode == INSN_MODE_64)
		return (seg == INSN_SEG_FS || seg == INSN_SEG_GS) ? ea + r->seg_base[seg] : ea;
	return (ea + r->seg_base[seg]) & 0xffffffffull;
}

static void raise(struct insn_event *ev, uint8_t vector, bool has_code)
{
	ev->pending = true;
	ev->vector = vector;
	ev->has_error_code = has_code;
	ev->error_code = 0;
}

static void advance(const struct insn *in, struct insn_regs *r)
{
	r->rip += in->len;
	if (in->mode != INSN_MODE_64)
		r->rip &= in->mode == INSN_MODE_32 ? 0xffffffffull : 0xffffull;
	r->rflags &= ~(uint64_t)RFLAGS_RF;
}

/* The r/m source of popcnt/lzcnt/tzcnt, register or memory. */
static int read_rm(const struct insn *in, const struct insn_regs *r, const struct insn_mem *mem,
		   uint64_t *v)
{
	if (in->mod == 3) {
		*v = gpr_read(r, in->rm, in->opsize);
		return 0;
	}
	uint64_t buf = 0;
	int ret = mem->read(mem->opaque, insn_linear_address(in, r), &buf, in->opsize);
	*v = buf & size_mask(in->opsize);
	return ret;
}

static int complete_bitcount(const struct insn *in, struct insn_regs *r, const struct insn_mem *mem)
{
	uint64_t src;
	int ret = read_rm(in, r, mem, &src);
	if (ret)
		return ret;
	unsigned bits = 8u * in->opsize;
	uint64_t res;
	uint64_t fl = r->rflags;
	switch (in->op) {
	case INSN_POPCNT:
		res = (uint64_t)__builtin_popcountll(src);
		fl &= ~(uint64_t)RFLAGS_ARITH;
		if (!src)
			fl |= RFLAGS_ZF;
		break;
	case INSN_LZCNT:
		res = src ? (uint64_t)(__builtin_clzll(src) - (64 - bits)) : bits;
		goto cz;
	default: /* INSN_TZCNT */
		res = src ? (uint64_t)__builtin_ctzll(src) : bits;
	cz:
		/* CF and ZF are defined; OF, SF, PF and AF are left as they were
		 * (the SDM calls them undefined). */
		fl &= ~(uint64_t)(RFLAGS_CF | RFLAGS_ZF);
		if (!src)
			fl |= RFLAGS_CF;
		if (!res)
			fl |= RFLAGS_ZF;
		break;
	}
	gpr_write(r, in->reg, in->opsize, res);
	r->rflags = fl;
	return 0;
}

static int complete_cmpxchg16b(const struct insn *in, struct insn_regs *r,
			       const struct insn_mem *mem, struct insn_event *ev)
{
	uint64_t la = insn_linear_address(in, r);
	if (la & 15) {
		raise(ev, X86_VEC_GP, true);
		return 0;
	}
	uint64_t expected[2] = {r->gpr[INSN_RAX], r->gpr[INSN_RDX]};
	const uint64_t desired[2] = {r->gpr[INSN_RBX], r->gpr[INSN_RCX]};
	int ret = mem->cmpxchg16(mem->opaque, la, expected, desired);
	if (ret < 0)
		return ret;
	if (ret) {
		r->rflags |= RFLAGS_ZF;
	} else {
		r->rflags &= ~(uint64_t)RFLAGS_ZF;
		r->gpr[INSN_RAX] = expected[0];
		r->gpr[INSN_RDX] = expected[1];
	}
	return 0;
}

/* ldmxcsr/stmxcsr m32: #UD without SSE enabled, #NM when CR0.TS says the
 * SSE state is not loaded, #GP(0) for reserved MXCSR bits. */
static int complete_mxcsr(const struct insn *in, struct insn_regs *r, const struct insn_mem *mem,
			  struct insn_event *ev)
{
	if ((r->cr0 & CR0_EM) || !(r->cr4 & CR4_OSFXSR)) {
		raise(ev, X86_VEC_UD, false);
		return 0;
	}
	if (r->cr0 & CR0_TS) {
		raise(ev, X86_VEC_NM, false);
		return 0;
	}
	uint64_t la = insn_linear_address(in, r);
	if (in->op == INSN_STMXCSR)
		return mem->write(mem->opaque, la, &r->mxcsr, 4);
	uint32_t v;
	int ret = mem->read(mem->opaque, la, &v, 4);
	if (ret)
		return ret;
	if (v & ~r->mxcsr_mask) {
		raise(ev, X86_VEC_GP, true);
		return 0;
	}
	r->mxcsr = v;
	return 0;
}

int insn_complete(const struct insn *in, struct insn_regs *r, const struct insn_mem *mem,
		  struct insn_event *ev)
{
	*ev = (struct insn_event){0};
	if (in->lock && in->op != INSN_CMPXCHG16B && in->op != INSN_UNKNOWN) {
		raise(ev, X86_VEC_UD, false);
		return 0;
	}
	int ret;
	switch (in->op) {
	case INSN_INT3:
		advance(in, r); /* a trap: the pushed RIP is the next instruction */
		raise(ev, X86_VEC_BP, false);
		return 0;
	case INSN_UD2:
		raise(ev, X86_VEC_UD, false);
		return 0;
	case INSN_FWAIT:
		if ((r->cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS))
			raise(ev, X86_VEC_NM, false);
		else if (r->fsw & FSW_ES)
			raise(ev, X86_VEC_MF, false); /* pending unmasked x87 exception */
		else
			advance(in, r);
		return 0;
	case INSN_CLAC:
	case INSN_STAC:
		if (r->cpl > 0) {
			raise(ev, X86_VEC_UD, false);
			return 0;
		}
		if (in->op == INSN_CLAC)
			r->rflags &= ~(uint64_t)RFLAGS_AC;
		else
			r->rflags |= RFLAGS_AC;
		advance(in, r);
		return 0;
	case INSN_POPCNT:
	case INSN_LZCNT:
	case INSN_TZCNT:
		if ((ret = complete_bitcount(in, r, mem)))
			return ret;
		advance(in, r);
		return 0;
	case INSN_CMPXCHG16B:
		if ((ret = complete_cmpxchg16b(in, r, mem, ev)))
			return ret;
		if (!ev->pending)
			advance(in, r);
		return 0;
	case INSN_LDMXCSR:
	case INSN_STMXCSR:
		if ((ret = complete_mxcsr(in, r, mem, ev)))
			return ret;
		if (!ev->pending)
			advance(in, r);
		return 0;
	case INSN_SYSRET:
		/* Registers only; segments are the caller's (insn_complete.h). */
		if (!(r->efer & EFER_SCE) || in->mode != INSN_MODE_64) {
			raise(ev, X86_VEC_UD, false);
			return 0;
		}
		if (r->cpl != 0) {
			raise(ev, X86_VEC_GP, true);
			return 0;
		}
		r->rip = in->opsize == 8 ? r->gpr[INSN_RCX] : (uint32_t)r->gpr[INSN_RCX];
		r->rflags = (r->gpr[INSN_R11] & 0x3c7fd7) | 2;
		return 0;
	case INSN_LFENCE:
	case INSN_MFENCE:
	case INSN_SFENCE:
		/* Other vCPUs run on host CPUs: order this thread's view too. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		advance(in, r);
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}
