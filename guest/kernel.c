/*
 * The CPL0 part: per-CPU set-up and the exception report.  Keep it short and
 * loop-free: on PVM hosts each instruction here costs ~1.7 us.
 */
#include "kernel.h"

struct percpu percpu[MAX_CPUS] __attribute__((aligned(PC_SIZE)));

extern char __kstacks[];
extern struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) idt_ptr;
void enter_user(uint64_t cpu, uint64_t start_info, uint64_t rsp) __attribute__((noreturn));
void kmain(uint64_t cpu);
void kernel_trap(uint64_t *frame);
void kernel_cpl0check(struct cpl0check *c);
void sys_reset(void) __attribute__((noreturn));

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void cpuid(uint32_t leaf, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(0));
}

void kmain(uint64_t cpu)
{
	struct percpu *pc = &percpu[cpu];
	uint32_t r[4];

	if (cpu == 0) {
		outb(0x21, 0xff); /* the PIC is not used: mask it before IF=1 in user mode */
		outb(0xa1, 0xff);
		outb(0x3fa, 0x07); /* COM1 FIFO on: SYS_WRITE sends 16 bytes per THRE */
	}
	pc->cpu = cpu;
	pc->kstack = (uint64_t)__kstacks + (cpu + 1) * KSTACK_SIZE;
	pc->lapic = 0xfee00000;
	wrmsr(0xc0000101, (uint64_t)pc); /* GS base: per-CPU data, user mode too */
	__asm__ volatile("lidt %0" ::"m"(idt_ptr));
	__asm__ volatile("ltr %w0" ::"r"(SEL_TSS0 + 16 * cpu));
	/* kvmclock, when the hypervisor CPUID leaves say KVM with CLOCKSOURCE2 */
	cpuid(0x40000000, r);
	if (r[1] == 0x4b4d564b && r[2] == 0x564b4d56 && r[3] == 0x4d) {
		cpuid(0x40000001, r);
		if (r[0] & (1u << 3)) {
			wrmsr(0x4b564d01, (uint64_t)&pc->pvclock | 1);
			pc->kvmclock = 1;
		}
	}
	enter_user(cpu, boot_start_info, (uint64_t)__ustacks + (cpu + 1) * USTACK_SIZE);
}

/* ---- exception report (console is written directly; we are about to exit) ---- */

static void kputc(char c)
{
	for (int i = 0; i < 100000 && !(inb(0x3fd) & 0x20); i++)
		;
	outb(0x3f8, (uint8_t)c);
}

static void kputs(const char *s)
{
	while (*s)
		kputc(*s++);
}

static void kputx(uint64_t v)
{
	kputs("0x");
	for (int sh = 60; sh >= 0; sh -= 4)
		if ((v >> sh) || sh == 0)
			kputc("0123456789abcdef"[(v >> sh) & 15]);
}

static void kputu(uint64_t v)
{
	char b[24];
	int n = 0;
	do
		b[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n)
		kputc(b[--n]);
}

static const char *const exc_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

/* frame: r15..rax (15 words), vector, error code, rip, cs, rflags, rsp, ss */
void kernel_trap(uint64_t *frame)
{
	uint64_t vec = frame[15], cpu, cr2;

	__asm__ volatile("movq %%gs:0, %0" : "=r"(cpu));
	if (vec == 3 && !(frame[18] & 3) && percpu[cpu].bp_armed) {
		/* cpl0check's int3: a trap, so the frame holds the next RIP */
		percpu[cpu].bp_armed = 0;
		percpu[cpu].bp_rip = frame[17];
		return;
	}
	if (vec >= 32 || vec == 15) { /* 15: reserved, but a spurious 8259 IRQ 7 at base 8 */
		kputs("cairn-guest: unexpected interrupt vector ");
		kputu(vec);
		kputs(" on cpu");
		kputu(cpu);
		kputs("\r\n");
		*(volatile uint32_t *)0xfee000b0 = 0;
		return;
	}
	__asm__ volatile("movq %%cr2, %0" : "=r"(cr2));
	kputs("\r\ncairn-guest: EXCEPTION ");
	kputs(exc_names[vec] ? exc_names[vec] : "?");
	kputs(" vector=");
	kputu(vec);
	kputs(" cpu=");
	kputu(cpu);
	kputs((frame[18] & 3) ? " mode=user" : " mode=kernel");
	kputs(" rip=");
	kputx(frame[17]);
	kputs(" err=");
	kputx(frame[16]);
	kputs(" cr2=");
	kputx(cr2);
	kputs(" rsp=");
	kputx(frame[20]);
	kputs(" cs=");
	kputx(frame[18]);
	kputs(" rflags=");
	kputx(frame[19]);
	kputs("\r\ncairn-guest: exit code ");
	kputu(EXIT_EXCEPTION);
	kputs("\r\n");
	outb(0x501, EXIT_EXCEPTION);
	sys_reset(); /* without a debug-exit device */
}

/* ---- cpl0check (SYS_CPL0CHECK): no comparisons here, user mode does them ---- */

static uint64_t cx16_cell[2] __attribute__((aligned(16)));

/* lock cmpxchg16b on a cell holding OLD, RDX:RAX = CMP (updated as the CPU
 * leaves it), RCX:RBX = NEW; the cell afterwards goes to MEM.  Returns ZF.
 * Always inlined: guest-elf-check allows the instruction only inside
 * kernel_cpl0check. */
static inline __attribute__((always_inline)) uint8_t cx16_run(const uint64_t old[2], uint64_t cmp[2], const uint64_t new_[2],
			uint64_t mem[2])
{
	uint8_t zf;
	cx16_cell[0] = old[0];
	cx16_cell[1] = old[1];
	__asm__ volatile("lock cmpxchg16b %0\n\tsetz %1"
			 : "+m"(cx16_cell), "=q"(zf), "+a"(cmp[0]), "+d"(cmp[1])
			 : "b"(new_[0]), "c"(new_[1])
			 : "cc", "memory");
	mem[0] = cx16_cell[0];
	mem[1] = cx16_cell[1];
	return zf;
}

void kernel_cpl0check(struct cpl0check *c)
{
	uint64_t cpu;
	__asm__ volatile("movq %%gs:0, %0" : "=r"(cpu));
	struct percpu *pc = &percpu[cpu];

	/* int3 at CPL 0: the #BP must report the RIP after the instruction */
	pc->bp_armed = 1;
	__asm__ volatile("leaq 1f(%%rip), %0\n\tint3\n1:" : "=r"(c->int3_want)::"memory");
	c->int3_rip = pc->bp_rip;
	c->int3_left_armed = pc->bp_armed;
	pc->bp_armed = 0;

	if (c->run & CPL0_RUN_POPCNT) {
		for (int i = 0; i < CPL0_N; i++) {
			uint64_t r, fl;
			__asm__ volatile("pushq %3\n\tpopfq\n\tpopcntq %2, %0\n\tpushfq\n\tpopq %1"
					 : "=&r"(r), "=&r"(fl)
					 : "r"(c->popcnt_in[i]), "r"((uint64_t)CPL0_FLAGS_IN)
					 : "cc");
			c->popcnt64[i] = r;
			c->popcnt64_flags[i] = fl;
			uint32_t r32;
			__asm__ volatile("popcntl %1, %0" : "=r"(r32) : "r"((uint32_t)c->popcnt_in[i]) : "cc");
			c->popcnt32[i] = r32;
			__asm__ volatile("pushq %3\n\tpopfq\n\tpopcntq %2, %0\n\tpushfq\n\tpopq %1"
					 : "=&r"(r), "=&r"(fl)
					 : "m"(c->popcnt_in[i]), "r"((uint64_t)CPL0_FLAGS_IN)
					 : "cc");
			c->popcnt_mem[i] = r;
			c->popcnt_mem_flags[i] = fl;
		}
	}

	if (c->run & CPL0_RUN_CX16) {
		/* equal: the cell takes NEW; unequal: RDX:RAX takes the cell */
		uint64_t cmp[2] = {c->cx16_old[0], c->cx16_old[1]};
		c->cx16_hit_zf = cx16_run(c->cx16_old, cmp, c->cx16_new, c->cx16_hit_mem);
		c->cx16_miss_rdx_rax[0] = c->cx16_other[0];
		c->cx16_miss_rdx_rax[1] = c->cx16_other[1];
		c->cx16_miss_zf =
		    cx16_run(c->cx16_old, c->cx16_miss_rdx_rax, c->cx16_new, c->cx16_miss_mem);
	}

	if (c->run & CPL0_RUN_SMAP)
		__asm__ volatile("stac\n\tpushfq\n\tpopq %0\n\tclac\n\tpushfq\n\tpopq %1"
				 : "=r"(c->flags_after_stac), "=r"(c->flags_after_clac)::"cc");

	__asm__ volatile("fwait" ::: "memory");
	c->fwait_done = 1;

	if (c->run & CPL0_RUN_MXCSR) {
		/* CR4.OSFXSR for the duration: without it ldmxcsr is #UD */
		uint64_t cr4;
		static const uint32_t mxcsr_default = 0x1f80;
		__asm__ volatile("movq %%cr4, %0" : "=r"(cr4));
		__asm__ volatile("movq %0, %%cr4" ::"r"(cr4 | 0x600));
		__asm__ volatile("ldmxcsr %1\n\tstmxcsr %0\n\tldmxcsr %2"
				 : "=m"(c->mxcsr_out)
				 : "m"(c->mxcsr_in), "m"(mxcsr_default));
		__asm__ volatile("movq %0, %%cr4" ::"r"(cr4));
	}
}
