/* x86 instruction decoder for the instructions cairn completes itself.
 *
 * On PVM hosts KVM's instruction emulator runs guest kernel code and refuses
 * some instructions (docs/pvm.md); cairn decodes the refused bytes here and
 * insn_complete.c executes the ones in its table.  The decoder is pure (no KVM,
 * no I/O): legacy and REX prefixes, the one-byte, 0F, 0F38 and 0F3A maps,
 * ModRM, SIB, displacement and immediate, in 16-, 32- and 64-bit mode.  It
 * finds the length of most general-purpose instructions even when it does
 * not know them (so error messages can show the whole instruction), and it
 * names the ones cairn can complete.  Its input is guest bytes: every access
 * is bounds-checked and at most INSN_MAX_LEN bytes are read. */
#ifndef CAIRN_ARCH_X86_INSN_DECODE_H
#define CAIRN_ARCH_X86_INSN_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INSN_MAX_LEN 15

/* CPU mode the bytes are decoded in: the default operand/address size. */
enum insn_mode { INSN_MODE_16 = 2, INSN_MODE_32 = 4, INSN_MODE_64 = 8 };

/* What cairn can complete.  Keep insn_op_name() in step. */
enum insn_op {
	INSN_UNKNOWN = 0,
	INSN_INT3,	 /* CC */
	INSN_UD2,	 /* 0F 0B */
	INSN_FWAIT,	 /* 9B */
	INSN_CLAC,	 /* 0F 01 CA */
	INSN_STAC,	 /* 0F 01 CB */
	INSN_POPCNT,	 /* F3 0F B8 /r */
	INSN_TZCNT,	 /* F3 0F BC /r */
	INSN_LZCNT,	 /* F3 0F BD /r */
	INSN_CMPXCHG16B, /* REX.W 0F C7 /1 m128 */
	INSN_LFENCE,	 /* 0F AE E8 */
	INSN_MFENCE,	 /* 0F AE F0 */
	INSN_SFENCE,	 /* 0F AE F8 */
	INSN_LDMXCSR,	 /* 0F AE /2 m32 */
	INSN_STMXCSR,	 /* 0F AE /3 m32 */
	INSN_SYSCALL,	 /* 0F 05: only counted; see pvm_handle_debug() */
	INSN_SYSRET,	 /* [REX.W] 0F 07 */
	INSN_OP_MAX
};

/* Segment registers, in the encoding's order. */
enum insn_seg {
	INSN_SEG_ES,
	INSN_SEG_CS,
	INSN_SEG_SS,
	INSN_SEG_DS,
	INSN_SEG_FS,
	INSN_SEG_GS,
	INSN_SEG_NONE
};

enum insn_map { INSN_MAP_1 = 0, INSN_MAP_0F, INSN_MAP_0F38, INSN_MAP_0F3A };

struct insn {
	uint8_t bytes[INSN_MAX_LEN];
	uint8_t len; /* total length in bytes */
	enum insn_mode mode;
	uint8_t opsize;	  /* operand size in bytes: 2, 4 or 8 */
	uint8_t addrsize; /* address size in bytes: 2, 4 or 8 */
	uint8_t rex;	  /* 0 when absent */
	bool lock, rep /* F3 */, repne /* F2 */, opsize_prefix /* 66 */, addrsize_prefix /* 67 */;
	enum insn_seg seg; /* segment override, INSN_SEG_NONE when absent */
	enum insn_map map;
	uint8_t opcode; /* last opcode byte (within map) */
	bool has_modrm;
	uint8_t modrm, mod, reg, rm; /* reg and rm include REX.R / REX.B */
	bool has_sib;
	uint8_t sib, scale /* 1,2,4,8 */;
	int8_t index, base; /* -1 when absent (REX.X / REX.B included) */
	bool rip_relative;
	int64_t disp; /* sign-extended */
	uint8_t disp_size;
	uint64_t imm; /* zero-extended raw bytes */
	uint8_t imm_size;
	enum insn_op op; /* INSN_UNKNOWN when not in cairn's table */
};

/* Decodes at most min(n, INSN_MAX_LEN) bytes.  Returns 0 with *in filled
 * (in->op may be INSN_UNKNOWN), -ENODATA when the bytes end before the
 * instruction does, -EINVAL for an encoding that is invalid in this mode or
 * longer than 15 bytes, -EOPNOTSUPP for encodings the decoder does not
 * parse (VEX, EVEX, XOP). */
int insn_decode(struct insn *in, const uint8_t *bytes, size_t n, enum insn_mode mode);

/* "popcnt", "int3", ... ("unknown" for INSN_UNKNOWN or out of range). */
const char *insn_op_name(enum insn_op op);

/* Formats the bytes as "f3 48 0f b8 c3" into buf (always terminated). */
void insn_format_bytes(const uint8_t *bytes, size_t n, char *buf, size_t size);

#endif
