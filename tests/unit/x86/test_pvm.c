/* pvm.c end to end on this host's /dev/kvm: a tiny 64-bit guest (no VMM, no
 * devices: page tables, GDT, IDT and code written here) executes each
 * completed instruction at CPL 0; the vCPU loop hands emulation failures to
 * pvm_complete_insn() as cairn's does, and the test checks registers, flags,
 * memory and the exceptions the guest's IDT handlers saw.  It also times a
 * completion against KVM's emulation of an ordinary instruction.
 *
 * On hardware KVM the guest runs natively and nothing is completed: the
 * results must be the same (the count check is PVM-only).  Without /dev/kvm
 * the test is skipped (exit 77). */
#include "arch/x86/insn_complete.h"
#include "arch/x86/pvm.h"
#include "test.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x200000ull
#define CODE 0x4000ull
#define DATA 0x7000ull
#define STACK_TOP 0x8000ull
#define LOOPS 2000
#define USER_ALIAS 0x200000ull /* second 2 MiB: the same RAM, user-accessible */
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082

/* Guest code, copied to CODE; labels give the entry points. */
extern const uint8_t gc_start[], gc_end[], gc_popcnt_reg[], gc_popcnt_mem[], gc_lzcnt[], gc_tzcnt[],
    gc_cmpxchg16b[], gc_clac[], gc_fwait[], gc_fences[], gc_int3[], gc_ud2[], gc_bp_handler[],
    gc_ud_handler[], gc_other_handler[], gc_loop_popcnt[], gc_loop_add[], gc_mxcsr[],
    gc_user_syscall[], gc_sys_entry[], gc_kernel_pf[];
__asm__(".pushsection .rodata\n"
	".balign 16\n"
	"gc_start:\n"
	"gc_popcnt_reg: popcnt %rbx, %rax\n hlt\n"
	"gc_popcnt_mem: popcntw 2(%rsi), %ax\n hlt\n"
	"gc_lzcnt: lzcnt %rbx, %rax\n hlt\n"
	"gc_tzcnt: tzcnt %ebx, %eax\n hlt\n"
	"gc_cmpxchg16b: lock cmpxchg16b (%rdi)\n hlt\n"
	"gc_clac: stac\n pushf\n pop %rax\n clac\n pushf\n pop %rbx\n hlt\n"
	"gc_fwait: fwait\n hlt\n"
	"gc_mxcsr: ldmxcsr (%rsi)\n stmxcsr (%rdi)\n hlt\n"
	"gc_fences: lfence\n mfence\n sfence\n hlt\n"
	"gc_int3: int3\n hlt\n"
	"gc_ud2: ud2\n hlt\n"
	"gc_bp_handler: mov (%rsp), %rax\n movabs %rax, 0x7000\n hlt\n"
	"gc_ud_handler: mov (%rsp), %rax\n movabs %rax, 0x7008\n hlt\n"
	"gc_other_handler: mov %rsp, %rax\n movabs %rax, 0x7010\n hlt\n"
	"gc_loop_popcnt: popcnt %rbx, %rax\n dec %ecx\n jnz gc_loop_popcnt\n hlt\n"
	"gc_loop_add: add %rbx, %rax\n dec %ecx\n jnz gc_loop_add\n hlt\n"
	/* Runs at CPL 3 through the user alias of this page (USER_ALIAS). */
	"gc_user_syscall: mov $0x77, %eax\n syscall\n mov $0x99, %edx\n syscall\n jmp .\n"
	"gc_kernel_pf: movabs 0x40000000, %rax\n hlt\n"
	/* The first call returns with sysretq, the second stops at CPL 0. */
	"gc_sys_entry: inc %r12\n cmp $2, %r12\n je 1f\n sysretq\n"
	"1: mov %rcx, %rbx\n mov $0x5a5a, %eax\n hlt\n"
	"gc_end:\n"
	".popsection\n");

static uint64_t guest_addr(const uint8_t *label)
{
	return CODE + (uint64_t)(label - gc_start);
}

struct vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	uint8_t *mem;
	struct guest_mem gm;
	struct pvm_stats st;
};

static void *gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	struct vm *v = opaque;
	if (gpa >= MEM_SIZE || len > MEM_SIZE - gpa)
		return NULL;
	return v->mem + gpa;
}

static void put64(struct vm *v, uint64_t gpa, uint64_t val)
{
	memcpy(v->mem + gpa, &val, 8);
}

static uint64_t get64(struct vm *v, uint64_t gpa)
{
	uint64_t val;
	memcpy(&val, v->mem + gpa, 8);
	return val;
}

static void set_gate(struct vm *v, unsigned vec, uint64_t handler)
{
	uint64_t lo = (handler & 0xffff) | (0x08ull << 16) | (0x8eull << 40) |
		      ((handler >> 16 & 0xffff) << 48);
	put64(v, 0x600 + 16 * vec, lo);
	put64(v, 0x600 + 16 * vec + 8, handler >> 32);
}

static int vm_create(struct vm *v)
{
	memset(v, 0, sizeof(*v));
	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm < 0)
		return -errno;
	v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
	if (v->vm < 0)
		return -errno;
	if (pvm_vm_init(v->vm))
		return -EIO;
	v->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->mem == MAP_FAILED)
		return -errno;
	struct kvm_userspace_memory_region region = {.slot = 0,
						     .guest_phys_addr = 0,
						     .memory_size = MEM_SIZE,
						     .userspace_addr = (uintptr_t)v->mem};
	if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return -errno;
	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	if (v->vcpu < 0)
		return -errno;
	int sz = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	v->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	if (v->run == MAP_FAILED)
		return -errno;

	union { /* not a struct: clang refuses a member after a flexible array */
		struct kvm_cpuid2 c;
		uint8_t bytes[sizeof(struct kvm_cpuid2) + 100 * sizeof(struct kvm_cpuid_entry2)];
	} cpuid = {.c.nent = 100};
	if (ioctl(v->kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0 ||
	    ioctl(v->vcpu, KVM_SET_CPUID2, &cpuid) < 0)
		return -errno;

	/* Identity map of the first 2 MiB, GDT, IDT, TSS, code. */
	put64(v, 0x1000, 0x2000 | 7);
	put64(v, 0x2000, 0x3000 | 7);
	put64(v, 0x3000, 0x0 | 0x83);		/* supervisor */
	put64(v, 0x3008, 0x0 | 0x87);		/* USER_ALIAS: user */
	put64(v, 0x518, 0x00cff2000000ffffull); /* 0x1b: user data */
	put64(v, 0x520, 0x00affa000000ffffull); /* 0x23: user code */
	put64(v, 0x804, STACK_TOP);		/* TSS.RSP0 */
	put64(v, 0x500, 0);
	put64(v, 0x508, 0x00af9a000000ffffull);
	put64(v, 0x510, 0x00cf92000000ffffull);
	memcpy(v->mem + CODE, gc_start, (size_t)(gc_end - gc_start));
	for (unsigned vec = 0; vec < 32; vec++)
		set_gate(v, vec, guest_addr(gc_other_handler));
	set_gate(v, 3, guest_addr(gc_bp_handler));
	set_gate(v, 6, guest_addr(gc_ud_handler));

	struct kvm_sregs s;
	if (ioctl(v->vcpu, KVM_GET_SREGS, &s) < 0)
		return -errno;
	struct kvm_segment code = {.base = 0,
				   .limit = 0xffffffff,
				   .selector = 8,
				   .type = 11,
				   .present = 1,
				   .dpl = 0,
				   .db = 0,
				   .s = 1,
				   .l = 1,
				   .g = 1};
	struct kvm_segment data = {.base = 0,
				   .limit = 0xffffffff,
				   .selector = 0x10,
				   .type = 3,
				   .present = 1,
				   .dpl = 0,
				   .db = 1,
				   .s = 1,
				   .l = 0,
				   .g = 1};
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr = (struct kvm_segment){
	    .base = 0x800, .limit = 0x67, .selector = 0x18, .type = 11, .present = 1};
	s.gdt.base = 0x500;
	s.gdt.limit = 0x27;
	s.idt.base = 0x600;
	s.idt.limit = 32 * 16 - 1;
	s.cr0 = 0x80050033; /* PG WP NE ET MP PE */
	s.cr3 = 0x1000;
	s.cr4 = 0x620;	/* OSXMMEXCPT OSFXSR PAE */
	s.efer = 0x501; /* LMA LME SCE */
	if (ioctl(v->vcpu, KVM_SET_SREGS, &s) < 0)
		return -errno;
	v->gm = (struct guest_mem){v, gpa_to_hva};
	return 0;
}

/* Runs from entry with the given registers until hlt; *out gets the
 * registers then.  Emulation failures go to pvm_complete_insn(). */
static int vm_call(struct vm *v, const uint8_t *entry, const struct kvm_regs *in,
		   struct kvm_regs *out)
{
	struct kvm_regs r = *in;
	r.rip = guest_addr(entry);
	r.rsp = STACK_TOP;
	r.rflags = 2;
	if (ioctl(v->vcpu, KVM_SET_REGS, &r) < 0)
		return -errno;
	for (int n = 0;; n++) {
		if (n > 100000)
			return err_set(ELOOP, "no hlt after 100000 exits");
		if (ioctl(v->vcpu, KVM_RUN, 0) < 0)
			return err_set(errno, "KVM_RUN");
		if (v->run->exit_reason == KVM_EXIT_HLT)
			break;
		if (v->run->exit_reason == KVM_EXIT_DEBUG) {
			int rc = pvm_handle_debug(v->vcpu, v->run, &v->gm, &v->st);
			if (rc)
				return rc;
			continue;
		}
		if (v->run->exit_reason == KVM_EXIT_INTERNAL_ERROR &&
		    v->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
			int rc = pvm_complete_insn(v->vcpu, v->run, &v->gm, &v->st);
			if (rc)
				return rc;
			continue;
		}
		return err_set(EIO, "unexpected exit %u", v->run->exit_reason);
	}
	if (ioctl(v->vcpu, KVM_GET_REGS, out) < 0)
		return -errno;
	return 0;
}

#define CALL(entry, in, out)                                                                       \
	do {                                                                                       \
		int _r = vm_call(&v, entry, in, out);                                              \
		if (_r)                                                                            \
			fprintf(stderr, "%s: %s\n", #entry, err_msg());                            \
		CHECK_EQ(_r, 0);                                                                   \
	} while (0)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: /dev/kvm is missing or not accessible: this test needs KVM\n");
		return 77;
	}
	bool pvm = pvm_host_detect();
	printf("host: %s\n", pvm ? "PVM (kvm_pvm loaded)" : "not PVM");
	struct vm v;
	int rc = vm_create(&v);
	if (rc) {
		fprintf(stderr, "VM set-up failed: %s (%s)\n", strerror(-rc), err_msg());
		return 1;
	}
	struct kvm_regs in = {0}, out;

	in.rbx = 0xf0f0f0f000000001ull;
	CALL(gc_popcnt_reg, &in, &out);
	CHECK_EQ(out.rax, 17);
	CHECK_EQ(out.rflags & RFLAGS_ARITH, 0);
	in.rbx = 0;
	CALL(gc_popcnt_reg, &in, &out);
	CHECK_EQ(out.rax, 0);
	CHECK_EQ(out.rflags & RFLAGS_ARITH, RFLAGS_ZF);

	put64(&v, DATA + 0x100, 0x0000ff0000000000ull | 0x00ff0000);
	in.rsi = DATA + 0x100;
	in.rax = 0x1111111111111111ull;
	CALL(gc_popcnt_mem, &in, &out); /* 16 bits at +2: 0x00ff */
	CHECK_EQ(out.rax, 0x1111111111110008ull);

	/* KVM's emulator does not refuse lzcnt/tzcnt: it ignores the F3 prefix
	 * and runs them as bsr/bsf (wrong for a zero source, and lzcnt counts
	 * from the other end).  Check our completion when it is used, and
	 * say what the emulator did otherwise (docs/pvm.md). */
	uint64_t n0 = v.st.count[INSN_LZCNT];
	in.rbx = 0x0000100000000000ull;
	CALL(gc_lzcnt, &in, &out);
	if (v.st.count[INSN_LZCNT] > n0 || !pvm)
		CHECK_EQ(out.rax, 19);
	else
		printf("NOTE: KVM emulated lzcnt itself: result %llu (lzcnt: 19, bsr: 44)\n",
		       (unsigned long long)out.rax);
	n0 = v.st.count[INSN_TZCNT];
	in.rbx = 0xffffffff00000000ull; /* tzcnt %ebx: source 0 -> 32, CF */
	in.rax = 7;
	CALL(gc_tzcnt, &in, &out);
	if (v.st.count[INSN_TZCNT] > n0 || !pvm) {
		CHECK_EQ(out.rax, 32);
		CHECK_EQ(out.rflags & (RFLAGS_CF | RFLAGS_ZF), RFLAGS_CF);
	} else {
		printf("NOTE: KVM emulated tzcnt itself: result %llu, CF %d ZF %d (tzcnt: 32, CF 1 "
		       "ZF 0)\n",
		       (unsigned long long)out.rax, !!(out.rflags & RFLAGS_CF),
		       !!(out.rflags & RFLAGS_ZF));
	}

	put64(&v, DATA + 0x200, 1);
	put64(&v, DATA + 0x208, 2);
	in = (struct kvm_regs){.rax = 1, .rdx = 2, .rbx = 3, .rcx = 4, .rdi = DATA + 0x200};
	CALL(gc_cmpxchg16b, &in, &out);
	CHECK(out.rflags & RFLAGS_ZF);
	CHECK_EQ(get64(&v, DATA + 0x200), 3);
	CHECK_EQ(get64(&v, DATA + 0x208), 4);
	CALL(gc_cmpxchg16b, &in, &out); /* now it differs: rdx:rax loaded */
	CHECK(!(out.rflags & RFLAGS_ZF));
	CHECK_EQ(out.rax, 3);
	CHECK_EQ(out.rdx, 4);

	in = (struct kvm_regs){0};
	CALL(gc_clac, &in, &out);
	CHECK(out.rax & RFLAGS_AC);
	CHECK(!(out.rbx & RFLAGS_AC));
	CALL(gc_fwait, &in, &out);
	CHECK_EQ(out.rip, guest_addr(gc_fwait) + 2);
	put64(&v, DATA + 0x300, 0x9fc0);
	put64(&v, DATA + 0x308, 0);
	in.rsi = DATA + 0x300;
	in.rdi = DATA + 0x308;
	CALL(gc_mxcsr, &in, &out);
	CHECK_EQ(get64(&v, DATA + 0x308), 0x9fc0);
	CALL(gc_fences, &in, &out);
	CHECK_EQ(out.rip, guest_addr(gc_fences) + 10);

	/* int3: the #BP handler sees RIP after the int3 (a trap). */
	put64(&v, DATA, 0);
	CALL(gc_int3, &in, &out);
	CHECK_EQ(get64(&v, DATA), guest_addr(gc_int3) + 1);
	CHECK_EQ(out.rip, guest_addr(gc_bp_handler) + 15);
	/* ud2: #UD with RIP at the ud2 (a fault). */
	put64(&v, DATA + 8, 0);
	CALL(gc_ud2, &in, &out);
	CHECK_EQ(get64(&v, DATA + 8), guest_addr(gc_ud2));
	CHECK_EQ(get64(&v, DATA + 0x10), 0); /* no other exception */

	/* What a completion costs, beside KVM's emulation of an ordinary
	 * instruction (3 instructions per iteration either way). */
	in = (struct kvm_regs){.rcx = LOOPS, .rbx = 0x1234};
	double t0 = now();
	CALL(gc_loop_add, &in, &out);
	double t1 = now();
	uint64_t before = v.st.count[INSN_POPCNT];
	CALL(gc_loop_popcnt, &in, &out);
	double t2 = now();
	CHECK_EQ(out.rax, 5);
	printf("per iteration: add+dec+jnz %.2f us, popcnt+dec+jnz %.2f us (%llu completions)\n",
	       (t1 - t0) * 1e6 / LOOPS, (t2 - t1) * 1e6 / LOOPS,
	       (unsigned long long)(v.st.count[INSN_POPCNT] - before));

	/* A system call from CPL 3 (last: it leaves the vCPU's segments changed).
	 * On PVM it arrives at LSTAR at CPL 3 and faults; the fix-up armed by
	 * the completions above puts it at CPL 0. */
	union {
		struct kvm_msrs h;
		uint8_t bytes[sizeof(struct kvm_msrs) + 2 * sizeof(struct kvm_msr_entry)];
	} msrs = {.h.nmsrs = 2};
	msrs.h.entries[0] =
	    (struct kvm_msr_entry){.index = MSR_STAR, .data = (0x13ull << 48) | (0x08ull << 32)};
	msrs.h.entries[1] =
	    (struct kvm_msr_entry){.index = MSR_LSTAR, .data = guest_addr(gc_sys_entry)};
	CHECK_EQ(ioctl(v.vcpu, KVM_SET_MSRS, &msrs), 2);
	v.st.sys.armed = false;
	in = (struct kvm_regs){.rbx = 1};
	CALL(gc_popcnt_reg, &in, &out); /* a completion arms the fix-up */
	CHECK(!pvm || v.st.sys.armed);
	struct kvm_sregs us;
	CHECK_EQ(ioctl(v.vcpu, KVM_GET_SREGS, &us), 0);
	us.cs = (struct kvm_segment){.limit = 0xffffffff,
				     .selector = 0x23,
				     .type = 11,
				     .present = 1,
				     .dpl = 3,
				     .s = 1,
				     .l = 1,
				     .g = 1};
	us.ss = (struct kvm_segment){.limit = 0xffffffff,
				     .selector = 0x1b,
				     .type = 3,
				     .present = 1,
				     .dpl = 3,
				     .s = 1,
				     .db = 1,
				     .g = 1};
	CHECK_EQ(ioctl(v.vcpu, KVM_SET_SREGS, &us), 0);
	struct kvm_regs ur = {.rip = USER_ALIAS + guest_addr(gc_user_syscall),
			      .rsp = USER_ALIAS + STACK_TOP - 0x100,
			      .rflags = 0x202};
	CHECK_EQ(ioctl(v.vcpu, KVM_SET_REGS, &ur), 0);
	rc = 0;
	for (int i = 0; i < 10 && rc == 0; i++) {
		CHECK_EQ(ioctl(v.vcpu, KVM_RUN, 0), 0);
		if (v.run->exit_reason == KVM_EXIT_HLT)
			break;
		if (v.run->exit_reason == KVM_EXIT_DEBUG)
			rc = pvm_handle_debug(v.vcpu, v.run, &v.gm, &v.st);
		else
			rc = err_set(EIO, "unexpected exit %u", v.run->exit_reason);
	}
	if (rc)
		fprintf(stderr, "user syscall: %s\n", err_msg());
	CHECK_EQ(rc, 0);
	CHECK_EQ(v.run->exit_reason, KVM_EXIT_HLT);
	CHECK_EQ(ioctl(v.vcpu, KVM_GET_REGS, &out), 0);
	CHECK_EQ(ioctl(v.vcpu, KVM_GET_SREGS, &us), 0);
	CHECK_EQ(out.rax, 0x5a5a); /* the entry code ran at CPL 0 (hlt) */
	CHECK_EQ(out.r12, 2);	   /* two system calls */
	CHECK_EQ(out.rdx, 0x99);   /* user code ran between them: sysretq returned */
	CHECK_EQ(out.rbx, USER_ALIAS + guest_addr(gc_user_syscall) + 14); /* RCX: after the 2nd */
	CHECK_EQ(us.cs.selector, 0x08);
	printf("user-mode syscall: entered LSTAR at CPL %d (%llu fix-ups, %llu sysret completed)\n",
	       us.cs.selector & 3, (unsigned long long)v.st.count[INSN_SYSCALL],
	       (unsigned long long)v.st.count[INSN_SYSRET]);

	/* An ordinary #PF (CPL 0, unmapped address) while the fix-up is armed
	 * must reach the guest's handler: the breakpoint is stepped over. */
	put64(&v, DATA + 0x10, 0);
	in = (struct kvm_regs){0};
	CALL(gc_kernel_pf, &in, &out);
	CHECK(get64(&v, DATA + 0x10) != 0); /* the handler ran */
	CHECK(!v.st.sys.stepping);

	pvm_stats_print(&v.st, stdout);
	if (pvm)
		CHECK(pvm_stats_total(&v.st) > LOOPS);
	TEST_DONE();
}
