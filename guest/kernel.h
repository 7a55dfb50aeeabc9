/* The guest's CPL0 part, shared with user code: per-CPU data and system calls. */
#ifndef GUEST_KERNEL_H
#define GUEST_KERNEL_H

#include "layout.h"
#include <stdint.h>

struct pvclock {
	volatile uint32_t version;
	uint32_t pad0;
	volatile uint64_t tsc_timestamp;
	volatile uint64_t system_time;
	volatile uint32_t tsc_to_system_mul;
	volatile int8_t tsc_shift;
	volatile uint8_t flags;
	uint8_t pad[2];
};

struct percpu {
	uint64_t cpu;
	uint64_t kstack;
	uint64_t user_rsp;
	volatile uint64_t events; /* bumped by every timer/serial/disk/wake interrupt */
	uint64_t lapic;
	uint64_t reserved;
	uint32_t kvmclock; /* 1: pvclock below is live */
	uint32_t pad;
	uint64_t pad2;
	struct pvclock pvclock;
	uint64_t bp_armed; /* cpl0check: the next kernel-mode #BP is expected */
	uint64_t bp_rip;   /* ... and the RIP its frame held */
	uint8_t pad3[PC_SIZE - 64 - sizeof(struct pvclock) - 16];
};

_Static_assert(__builtin_offsetof(struct percpu, kstack) == PC_KSTACK, "layout");
_Static_assert(__builtin_offsetof(struct percpu, user_rsp) == PC_USER_RSP, "layout");
_Static_assert(__builtin_offsetof(struct percpu, events) == PC_EVENTS, "layout");
_Static_assert(__builtin_offsetof(struct percpu, lapic) == PC_LAPIC, "layout");
_Static_assert(__builtin_offsetof(struct percpu, pvclock) == 64, "layout");
_Static_assert(sizeof(struct percpu) == PC_SIZE, "layout");

extern struct percpu percpu[MAX_CPUS];

/*
 * SYS_CPL0CHECK: the kernel executes, at CPL 0, the instructions that KVM's
 * emulator refuses on PVM hosts (cairn completes them, docs/pvm.md) on the
 * inputs user mode chose, and hands back the raw results; user mode, running
 * natively, works out what the CPU should have produced and compares.
 */
#define CPL0_N 8
#define CPL0_RUN_POPCNT 0x1u
#define CPL0_RUN_CX16 0x2u
#define CPL0_RUN_SMAP 0x4u
#define CPL0_RUN_MXCSR 0x8u
#define CPL0_FLAGS_IN 0x8d7u /* OF SF ZF AF PF CF set (and bit 1) before each popcnt */
struct cpl0check {
	/* in */
	uint32_t run; /* CPL0_RUN_*: what this CPU has */
	uint32_t mxcsr_in;
	uint64_t popcnt_in[CPL0_N];
	uint64_t cx16_old[2], cx16_new[2], cx16_other[2];
	/* out */
	uint64_t int3_rip, int3_want, int3_left_armed;
	uint64_t popcnt64[CPL0_N], popcnt64_flags[CPL0_N];
	uint64_t popcnt32[CPL0_N], popcnt_mem[CPL0_N], popcnt_mem_flags[CPL0_N];
	uint64_t cx16_hit_mem[2], cx16_hit_zf;  /* compare equal: stores new */
	uint64_t cx16_miss_mem[2], cx16_miss_zf, cx16_miss_rdx_rax[2]; /* unequal: loads */
	uint64_t flags_after_stac, flags_after_clac;
	uint64_t fwait_done;
	uint32_t mxcsr_out, pad;
};
extern uint64_t boot_start_info;
extern volatile uint64_t ap_boot_cpu;
extern char tramp_start[], tramp_end[];
extern char __image_end[], __stacks_end[], __ustacks[];

static inline uint64_t syscall2(uint64_t nr, uint64_t a0, uint64_t a1)
{
	uint64_t ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret), "+D"(a0), "+S"(a1)
			 : "a"(nr)
			 : "rcx", "rdx", "r8", "r9", "r10", "r11", "memory");
	return ret;
}

/* user_start(cpu, start_info): the CPL3 entry of every CPU (user/main.c). */
void user_start(uint64_t cpu, uint64_t start_info);

#endif
