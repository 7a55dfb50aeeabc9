/*
 * Library of the guest's user-mode (CPL3) side.  User code runs with IOPL 3
 * and every page mapped user-accessible, so it drives the UART, PIT, PCI
 * config ports, LAPIC, IOAPIC and virtio BARs itself at native speed; the
 * kernel is entered only to sleep (hlt), halt, touch MSRs, or on interrupts.
 */
#ifndef GUEST_ULIB_H
#define GUEST_ULIB_H

#include "../kernel.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define NS_PER_SEC 1000000000ul
#define MIB (1ul << 20)

/* ---- port I/O goes through the kernel: PVM refuses user-mode in/out even with
 * IOPL 3 (#GP), so user code never uses IOPL (see docs/guest.md) ---- */
static inline void outb(uint16_t port, uint8_t v)
{
	syscall2(SYS_OUT, port | 1u << 16, v);
}
static inline uint8_t inb(uint16_t port)
{
	return (uint8_t)syscall2(SYS_IN, port | 1u << 16, 0);
}
static inline void outl(uint16_t port, uint32_t v)
{
	syscall2(SYS_OUT, port | 4u << 16, v);
}
static inline uint32_t inl(uint16_t port)
{
	return (uint32_t)syscall2(SYS_IN, port | 4u << 16, 0);
}
static inline uint32_t mmio_r32(uint64_t a)
{
	return *(volatile uint32_t *)a;
}
static inline void mmio_w32(uint64_t a, uint32_t v)
{
	*(volatile uint32_t *)a = v;
}
static inline uint16_t mmio_r16(uint64_t a)
{
	return *(volatile uint16_t *)a;
}
static inline void mmio_w16(uint64_t a, uint16_t v)
{
	*(volatile uint16_t *)a = v;
}
static inline uint8_t mmio_r8(uint64_t a)
{
	return *(volatile uint8_t *)a;
}
static inline void mmio_w8(uint64_t a, uint8_t v)
{
	*(volatile uint8_t *)a = v;
}
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}
static inline void barrier(void)
{
	__asm__ volatile("mfence" ::: "memory");
}

/* ---- this CPU ---- */
static inline struct percpu *this_pc(void)
{
	uint64_t cpu;
	__asm__ volatile("movq %%gs:0, %0" : "=r"(cpu));
	return &percpu[cpu];
}
static inline unsigned this_cpu(void)
{
	return (unsigned)this_pc()->cpu;
}

/* ---- strings ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int parse_u64(const char *s, uint64_t *out); /* decimal or 0x hex; 0 = ok */
int vfmt(char *buf, int size, const char *fmt, va_list ap);
int fmt(char *buf, int size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- console (COM1) ---- */
void con_write(const char *s, int n); /* takes the console lock */
void con_write_unlocked(const char *s, int n);
void con_lock(void);
void con_unlock(void);
/* "cpuN: " + text + CRLF, atomically */
void cpu_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* text + CRLF, atomically */
void con_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- LAPIC ---- */
#define LAPIC_BASE 0xfee00000ull
static inline uint32_t lapic_r(uint32_t reg)
{
	return mmio_r32(LAPIC_BASE + reg);
}
static inline void lapic_w(uint32_t reg, uint32_t v)
{
	mmio_w32(LAPIC_BASE + reg, v);
}
void lapic_init_cpu(void);

/* ---- time ---- */
void time_init(void); /* BSP: tsc rate from kvmclock, else PIT */
uint64_t now_ns(void);
uint64_t kvmclock_ns(void); /* kvmclock system time (since VM creation); 0 without */
extern uint64_t tsc_khz;
extern const char *clock_source;
/* sleep (hlt) until deadline or until this CPU's event counter moves past seen */
void wait_event(uint64_t seen, uint64_t deadline_ns);
void sleep_until(uint64_t deadline_ns);

/* ---- memory pool ---- */
void pool_add(uint64_t start, uint64_t end);
uint64_t pool_alloc(uint64_t bytes); /* 0 when no range is large enough */
uint64_t pool_largest(void);

/* ---- system calls and the end of the VM ---- */
static inline void sys_wait(uint64_t seen)
{
	syscall2(SYS_WAIT, seen, 0);
}
__attribute__((noreturn)) void sys_halt(void);
__attribute__((noreturn)) void vm_exit(unsigned code);
__attribute__((noreturn)) void vm_reset(void);

/* ---- shared state ---- */
extern volatile int verify_failed; /* any FAILED line: exit codes become EXIT_VERIFY_FAILED */
extern unsigned ncpus;
extern uint32_t cpu_apic_id[MAX_CPUS];

#endif
