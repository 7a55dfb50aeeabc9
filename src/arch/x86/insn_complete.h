/* Executes a decoded instruction from cairn's table on a register file, as
 * the CPU would: registers, flags, memory (through callbacks), RIP, and the
 * exception the CPU would raise instead.  Pure: no KVM here (pvm.c is the
 * glue), so the unit test can run it against the host CPU as the oracle. */
#ifndef CAIRN_ARCH_X86_INSN_COMPLETE_H
#define CAIRN_ARCH_X86_INSN_COMPLETE_H

#include "arch/x86/insn_decode.h"

#include <stdbool.h>
#include <stdint.h>

enum insn_gpr {
	INSN_RAX,
	INSN_RCX,
	INSN_RDX,
	INSN_RBX,
	INSN_RSP,
	INSN_RBP,
	INSN_RSI,
	INSN_RDI,
	INSN_R8,
	INSN_R9,
	INSN_R10,
	INSN_R11,
	INSN_R12,
	INSN_R13,
	INSN_R14,
	INSN_R15
};

#define RFLAGS_CF (1u << 0)
#define RFLAGS_PF (1u << 2)
#define RFLAGS_AF (1u << 4)
#define RFLAGS_ZF (1u << 6)
#define RFLAGS_SF (1u << 7)
#define RFLAGS_OF (1u << 11)
#define RFLAGS_AC (1u << 18)
#define RFLAGS_ARITH (RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF)

#define CR0_MP (1u << 1)
#define CR0_EM (1u << 2)
#define CR0_TS (1u << 3)
#define CR4_OSFXSR (1u << 9)
#define FSW_ES (1u << 7)

/* The part of a vCPU's state the completions read or write. */
struct insn_regs {
	uint64_t gpr[16];
	uint64_t rip, rflags;
	uint64_t cr0, cr4, efer;
	uint64_t seg_base[6]; /* enum insn_seg order: ES CS SS DS FS GS */
	uint16_t fsw;	      /* x87 status word; read by fwait only */
	uint32_t mxcsr;	      /* read by stmxcsr, written by ldmxcsr */
	uint32_t mxcsr_mask;  /* bits ldmxcsr may set (FXSAVE's MXCSR_MASK) */
	uint8_t cpl;
};

/* Guest memory at linear (guest-virtual) addresses.  Each returns 0 or a
 * negative errno (-EFAULT: the address does not translate or is not RAM). */
struct insn_mem {
	void *opaque;
	int (*read)(void *opaque, uint64_t la, void *buf, unsigned len);
	int (*write)(void *opaque, uint64_t la, const void *buf, unsigned len);
	/* Atomic 16-byte compare-exchange at a 16-byte aligned address: when
	 * *expected matches memory, stores desired and returns 1; otherwise
	 * copies memory into *expected and returns 0. */
	int (*cmpxchg16)(void *opaque, uint64_t la, uint64_t expected[2],
			 const uint64_t desired[2]);
};

/* sysret: the caller loads CS and SS (STAR[63:48] + 16 or + 0, and + 8, RPL 3;
 * 64-bit code segment when in->opsize == 8) when insn_complete() returns 0
 * with no event. */
#define EFER_SCE 1u

/* An exception the completion raises, to be injected into the guest.  For a
 * trap (#BP from int3) RIP is already past the instruction; for a fault
 * (#UD, #GP, #NM, #MF) RIP still points at it and nothing else changed. */
struct insn_event {
	bool pending;
	uint8_t vector;
	bool has_error_code;
	uint32_t error_code;
};

#define X86_VEC_BP 3
#define X86_VEC_UD 6
#define X86_VEC_NM 7
#define X86_VEC_GP 13
#define X86_VEC_MF 16

/* Executes *in on *r.  Returns 0 when done (check ev->pending), -EOPNOTSUPP
 * when in->op is not in the table, or the memory callbacks' error. */
int insn_complete(const struct insn *in, struct insn_regs *r, const struct insn_mem *mem,
		  struct insn_event *ev);

/* The linear address of in's memory operand (segment base included,
 * truncated to the address size; RIP-relative from the next instruction). */
uint64_t insn_linear_address(const struct insn *in, const struct insn_regs *r);

#endif
