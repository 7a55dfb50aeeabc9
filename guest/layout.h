/* Constants shared by the guest's assembly and C code (keep it #define-only). */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define KERNEL_BASE 0x100000 /* physical = virtual load address of the image */
#define MAX_CPUS 64
#define TRAMPOLINE_ADDR 0x8000 /* AP real-mode start page (SIPI vector 0x08) */
#define IDMAP_GIB 64	       /* identity map 0..IDMAP_GIB GiB with 2 MiB pages */

#define KSTACK_SIZE 0x2000
#define USTACK_SIZE 0x10000

/* GDT selectors (STAR layout: user32 code, user data, user64 code). */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UCODE32 0x18
#define SEL_UDATA 0x20
#define SEL_UCODE 0x28
#define SEL_KCODE32 0x30
#define SEL_TSS0 0x40 /* + 16 * cpu */
#define TSS_STRIDE 128

/* struct percpu offsets (guest/kernel.h must match; checked by _Static_assert) */
#define PC_CPU 0
#define PC_KSTACK 8
#define PC_USER_RSP 16
#define PC_EVENTS 24
#define PC_LAPIC 32
#define PC_SIZE 256

/* Interrupt vectors */
#define VEC_TIMER 0x20
#define VEC_SERIAL 0x21
#define VEC_DISK 0x22
#define VEC_WAKE 0x23
#define VEC_SYSCALL 0x80 /* int $0x80: system calls */
#define VEC_SPURIOUS 0xff

/* System calls: int $0x80, number in rax */
#define SYS_WAIT 0  /* rdi = events value seen; sleeps (hlt) unless it changed */
#define SYS_HALT 1  /* halts this CPU for good */
#define SYS_WRMSR 2 /* rdi = msr, rsi = value */
#define SYS_RDMSR 3 /* rdi = msr; returns value */
#define SYS_EXIT 4  /* rdi = code: debug-exit port, then reset */
#define SYS_WRITE 5 /* rdi = buf, rsi = len: COM1, 16 bytes per rep outsb */
#define SYS_OUT 6   /* rdi = port | size << 16 (size 1, 2, 4), rsi = value */
#define SYS_IN 7    /* rdi = port | size << 16; returns the value */
#define SYS_RESET 8 /* i8042 reset, else PCI 0xcf9 reset, else triple fault */
#define SYS_CPL0CHECK 9 /* rdi = struct cpl0check *: run the CPL0 instruction checks */

/* Debug-exit codes the guest chooses itself (documented in docs/guest.md). */
#define EXIT_VERIFY_FAILED 0x70
#define EXIT_EXCEPTION 0x71
#define EXIT_BOOT_ERROR 0x72

#endif
