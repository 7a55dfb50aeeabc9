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
	uint8_t pad3[PC_SIZE - 64 - sizeof(struct pvclock)];
};

_Static_assert(__builtin_offsetof(struct percpu, kstack) == PC_KSTACK, "layout");
_Static_assert(__builtin_offsetof(struct percpu, user_rsp) == PC_USER_RSP, "layout");
_Static_assert(__builtin_offsetof(struct percpu, events) == PC_EVENTS, "layout");
_Static_assert(__builtin_offsetof(struct percpu, lapic) == PC_LAPIC, "layout");
_Static_assert(__builtin_offsetof(struct percpu, pvclock) == 64, "layout");
_Static_assert(sizeof(struct percpu) == PC_SIZE, "layout");

extern struct percpu percpu[MAX_CPUS];
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
