/*
 * PVH entry, long-mode switch, AP trampoline, descriptor tables, static page
 * tables, interrupt stubs and the system-call entry.  Everything that can be
 * computed at build time is: on PVM hosts every CPL0 instruction is emulated.
 * The linker script places .isr and .tss at fixed addresses so that the IDT
 * and the GDT's TSS descriptors are assembler constants.
 */
#include "layout.h"

#define ISR_BASE (KERNEL_BASE + 0x1000)
#define TSS_BASE (KERNEL_BASE + 0x2000)

/* ---- PVH entry note: XEN_ELFNOTE_PHYS32_ENTRY ---- */
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18
	.asciz "Xen"
	.long pvh_start32

/* ---- 32-bit entry (BSP from PVH, APs from the trampoline) ---- */
	.section .boot, "awx"
	.code32
	.globl boot_start
boot_start:
pvh_start32:
	cli
	cld
	movl %ebx, boot_start_info
	xorl %esi, %esi
	jmp enter_long

	.globl ap_start32
ap_start32:
	movw $SEL_KDATA, %ax		/* real-mode DS still has a 64 KiB limit */
	movw %ax, %ds
	movl $1, %esi
enter_long:
	lgdt gdt_ptr
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movl $pml4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $0xc0000080, %ecx		/* EFER: LME | SCE */
	rdmsr
	orl $0x101, %eax
	wrmsr
	movl %cr0, %eax
	andl $0x9fffffff, %eax		/* caches on */
	orl $0x80010001, %eax		/* PG | WP | PE */
	movl %eax, %cr0
	ljmp $SEL_KCODE, $start64

	.code64
start64:
	xorl %edi, %edi
	testl %esi, %esi
	jz 1f
	movq ap_boot_cpu(%rip), %rdi
1:	leaq 1(%rdi), %rax
	shlq $13, %rax			/* KSTACK_SIZE */
	addq $__kstacks, %rax
	movq %rax, %rsp
	xorl %ebp, %ebp
	call kmain
2:	hlt
	jmp 2b

/* enter_user(cpu, start_info, rsp): iretq to user_start at CPL3, IF 1 */
	.globl enter_user
enter_user:
	pushq $(SEL_UDATA | 3)
	pushq %rdx
	pushq $0x202
	pushq $(SEL_UCODE | 3)
	pushq $user_start
	iretq

/*
 * System calls: int $0x80 (DPL 3 gate), rax = number, rdi/rsi = arguments,
 * result in rax.  Not `syscall`: on PVM a non-PVM-aware guest's syscall lands
 * on LSTAR still at CPL 3.  Nor does int $0x80 work there: it raises #UD at
 * the instruction, which ud_entry turns into the same system call.  Exceptions
 * and interrupts from user mode do reach CPL 0 on PVM.
 */
	.globl syscall_entry
syscall_entry:
	cmpq $SYS_WAIT, %rax
	je sys_wait
	cmpq $SYS_WRITE, %rax
	je sys_write
	cmpq $SYS_IN, %rax
	je sys_in
	cmpq $SYS_OUT, %rax
	je sys_out
	cmpq $SYS_WRMSR, %rax
	je sys_wrmsr
	cmpq $SYS_RDMSR, %rax
	je sys_rdmsr
	cmpq $SYS_EXIT, %rax
	je sys_exit
	cmpq $SYS_HALT, %rax
	je sys_halt
	cmpq $SYS_RESET, %rax
	je sys_reset
	cmpq $SYS_CPL0CHECK, %rax
	je sys_cpl0check
	movq $-1, %rax
	jmp sys_ret
sys_wait:
	movq %gs:PC_EVENTS, %rax
	cmpq %rdi, %rax
	jne sys_ret
	sti
	hlt
	cli
	jmp sys_ret
/* console: wait for THRE, then up to 16 bytes (the FIFO) with one rep outsb:
   one emulated instruction and one exit per 16 bytes */
sys_write:
	movq %rsi, %r9
	movq %rdi, %rsi
1:	testq %r9, %r9
	jz 4f
	movw $0x3fd, %dx
	movl $100000, %r8d
2:	inb %dx, %al
	testb $0x20, %al
	jnz 3f
	decl %r8d
	jnz 2b
3:	movl $16, %ecx
	cmpq %rcx, %r9
	cmovbq %r9, %rcx
	subq %rcx, %r9
	movw $0x3f8, %dx
	rep outsb
	jmp 1b
4:	xorl %eax, %eax
	jmp sys_ret
sys_out:
	movl %edi, %edx
	movq %rsi, %rax
	shrl $16, %edi
	cmpl $4, %edi
	je 1f
	cmpl $2, %edi
	je 2f
	outb %al, %dx
	jmp sys_ret
1:	outl %eax, %dx
	jmp sys_ret
2:	outw %ax, %dx
	jmp sys_ret
sys_in:
	movl %edi, %edx
	xorl %eax, %eax
	shrl $16, %edi
	cmpl $4, %edi
	je 1f
	cmpl $2, %edi
	je 2f
	inb %dx, %al
	jmp sys_ret
1:	inl %dx, %eax
	jmp sys_ret
2:	inw %dx, %ax
	jmp sys_ret
/* kernel_cpl0check(rdi) in C, on a 16-byte aligned stack */
sys_cpl0check:
	pushq %rbx
	movq %rsp, %rbx
	andq $-16, %rsp
	cld
	call kernel_cpl0check
	movq %rbx, %rsp
	popq %rbx
	xorl %eax, %eax
	jmp sys_ret
sys_halt:
	sti
	hlt
	jmp sys_halt
sys_wrmsr:
	movl %edi, %ecx
	movl %esi, %eax
	movq %rsi, %rdx
	shrq $32, %rdx
	wrmsr
	xorl %eax, %eax
	jmp sys_ret
sys_rdmsr:
	movl %edi, %ecx
	rdmsr
	shlq $32, %rdx
	orq %rdx, %rax
	jmp sys_ret
sys_exit:
	movl %edi, %eax
	movw $0x501, %dx
	outb %al, %dx
/* reset: i8042, then the PCI reset register (q35), then a triple fault */
	.globl sys_reset
sys_reset:
	movb $0xfe, %al
	outb %al, $0x64
	movb $0x06, %al
	movw $0xcf9, %dx
	outb %al, %dx
	lidt null_idt
	ud2
null_idt:
	.word 0
	.quad 0
sys_ret:
	iretq

/* ---- AP real-mode trampoline, copied to TRAMPOLINE_ADDR by the BSP ---- */
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	cld
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl TRAMPOLINE_ADDR + (tramp_gdtr - tramp_start)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_start32
	.balign 8
tramp_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
tramp_end:
	.code64

/* ---- GDT ---- */
	.balign 16
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08 kernel code 64 */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cffa000000ffff	/* 0x18 user code 32 (STAR layout) */
	.quad 0x00cff2000000ffff	/* 0x20 user data */
	.quad 0x00affa000000ffff	/* 0x28 user code 64 */
	.quad 0x00cf9a000000ffff	/* 0x30 kernel code 32 (AP path) */
	.quad 0
	.set i, 0
	.rept MAX_CPUS			/* 0x40 + 16 * cpu: 64-bit TSS */
	.word 0x67
	.word (TSS_BASE + i * TSS_STRIDE) & 0xffff
	.byte ((TSS_BASE + i * TSS_STRIDE) >> 16) & 0xff
	.byte 0x89
	.byte 0
	.byte ((TSS_BASE + i * TSS_STRIDE) >> 24) & 0xff
	.quad 0
	.set i, i + 1
	.endr
gdt_end:
	.balign 8
	.word 0
	.globl gdt_ptr
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.balign 8
	.globl boot_start_info, ap_boot_cpu
boot_start_info:
	.quad 0
ap_boot_cpu:
	.quad 0

/* ---- interrupt stubs: stub i at ISR_BASE + 16 * i ---- */
	.section .isr, "ax"
	.set i, 0
	.rept 256
	.balign 16
	.if i == VEC_TIMER || i == VEC_SERIAL || i == VEC_DISK || i == VEC_WAKE
	incq %gs:PC_EVENTS
	jmp irq_eoi
	.elseif i == VEC_SPURIOUS
	iretq
	.elseif i == VEC_SYSCALL
	jmp syscall_entry
	.elseif i == 6
	jmp ud_entry
	.else
	.if !(i == 8 || (i >= 10 && i <= 14) || i == 17 || i == 21 || i == 29 || i == 30)
	pushq $0
	.endif
	pushq $i
	jmp isr_common
	.endif
	.set i, i + 1
	.endr
	.balign 16

	.text
/*
 * #UD: on PVM, int $0x80 at CPL 3 raises #UD at the int instruction instead of
 * taking the gate; such a #UD from user mode is the system call.
 */
ud_entry:
	testb $3, 8(%rsp)
	jz 1f
	pushq %rax
	movq 8(%rsp), %rax
	cmpw $0x80cd, (%rax)
	popq %rax
	jne 1f
	addq $2, (%rsp)
	jmp syscall_entry
1:	pushq $0
	pushq $6
	jmp isr_common

irq_eoi:
	pushq %rax
	movq %gs:PC_LAPIC, %rax
	movl $0, 0xb0(%rax)
	popq %rax
	iretq

isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	movq %rsp, %rbx
	andq $-16, %rsp
	cld
	call kernel_trap
	movq %rbx, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* ---- IDT: interrupt gates, #DF on IST1 ---- */
	.data
	.balign 16
	.globl idt, idt_ptr
idt:
	.set i, 0
	.rept 256
	.word (ISR_BASE + 16 * i) & 0xffff
	.word SEL_KCODE
	.if i == 8
	.byte 1				/* #DF on IST1 */
	.else
	.byte 0
	.endif
	.if i == VEC_SYSCALL
	.byte 0xee			/* DPL 3 */
	.else
	.byte 0x8e
	.endif
	.word ((ISR_BASE + 16 * i) >> 16) & 0xffff
	.long 0
	.long 0
	.set i, i + 1
	.endr
idt_end:
	.balign 8
	.word 0, 0, 0
idt_ptr:
	.word idt_end - idt - 1
	.quad idt

/* ---- TSS per CPU (fixed address): rsp0 = kernel stack, ist1 = #DF stack ---- */
	.section .tss, "aw"
	.set i, 0
	.rept MAX_CPUS
	.long 0
	.quad __kstacks + (i + 1) * KSTACK_SIZE	/* rsp0 */
	.quad 0, 0, 0
	.quad __iststacks + (i + 1) * 4096	/* ist1 */
	.quad 0, 0, 0, 0, 0, 0
	.quad 0
	.word 0
	.word 104				/* no I/O bitmap */
	.fill TSS_STRIDE - 104, 1, 0
	.set i, i + 1
	.endr

/* ---- identity page tables 0..IDMAP_GIB GiB, 2 MiB pages, 3-4 GiB uncached.
   Page 0 stays mapped: loaders put start_info there. ---- */
	.section .pagetables, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + 7
	.fill 511, 8, 0
pdpt:
	.set i, 0
	.rept IDMAP_GIB
	.quad pds + i * 4096 + 7
	.set i, i + 1
	.endr
	.fill 512 - IDMAP_GIB, 8, 0
pds:
	.set i, 0
	.rept 512 * IDMAP_GIB
	.if i >= 1536 && i < 2048
	.quad (i << 21) | 0x9f
	.else
	.quad (i << 21) | 0x87
	.endif
	.set i, i + 1
	.endr

	.section .note.GNU-stack, "", @progbits
