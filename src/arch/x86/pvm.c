#include "arch/x86/pvm.h"

#include "arch/x86/insn_complete.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PAGE_SIZE 4096ull
#define EFER_LMA (1ull << 10)
#define CR0_PE 1ull
#define RFLAGS_VM (1ull << 17)

bool pvm_host_detect(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

int pvm_vm_init(int vm_fd)
{
	int r = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_ON_EMULATION_FAILURE);
	if (r <= 0) {
		log_debug("pvm: KVM_CAP_EXIT_ON_EMULATION_FAILURE not offered; reading "
			  "instructions at RIP");
		return 0;
	}
	struct kvm_enable_cap cap = {.cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = {1}};
	if (ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return err_set(errno, "KVM_ENABLE_CAP(KVM_CAP_EXIT_ON_EMULATION_FAILURE)");
	return 0;
}

/* Kept in step with docs/pvm.md, which says why each entry is there.
 * Linux clears what depends on a cleared feature (cpuid-deps.c): xsave takes
 * xsaveopt, xsavec, xsaves, avx, avx2, fma and the avx512 family with it. */
const char *pvm_linux_cmdline_extra(void)
{
	/* The mitigations that clear CPU buffers do it with VERW (0F 00 /5),
	 * which KVM's emulator refuses; Intel hosts with these bugs (the
	 * guest sees the host's CPUID) turn them on. */
	return "clearcpuid=popcnt,cx16,xsave,ssse3,smap,smep,fsgsbase,invpcid,pcid,rdpid,rdrand,"
	       "rdseed,"
	       "aes,pclmulqdq,sha_ni,clwb "
	       "mds=off tsx_async_abort=off mmio_stale_data=off reg_file_data_sampling=off";
}

/* Memory operands: linear address -> KVM_TRANSLATE -> guest RAM mapping. */
struct glue {
	int vcpu_fd;
	const struct guest_mem *mem;
};

static int glue_map(struct glue *g, uint64_t la, uint64_t len, bool write, void **hva)
{
	struct kvm_translation t = {.linear_address = la};
	if (ioctl(g->vcpu_fd, KVM_TRANSLATE, &t) < 0)
		return err_set(errno, "KVM_TRANSLATE %#llx", (unsigned long long)la);
	if (!t.valid)
		return err_set(EFAULT, "guest address %#llx is not mapped", (unsigned long long)la);
	if (write && !t.writeable)
		return err_set(EFAULT, "guest address %#llx is read-only", (unsigned long long)la);
	*hva = g->mem->gpa_to_hva(g->mem->opaque, t.physical_address, len);
	if (!*hva)
		return err_set(EFAULT, "guest address %#llx (physical %#llx) is not RAM",
			       (unsigned long long)la, (unsigned long long)t.physical_address);
	return 0;
}

/* Page by page: a linear range may cross into a page mapped elsewhere. */
static int glue_copy(struct glue *g, uint64_t la, void *buf, unsigned len, bool write)
{
	uint8_t *p = buf;
	while (len) {
		unsigned chunk = (unsigned)(PAGE_SIZE - (la & (PAGE_SIZE - 1)));
		if (chunk > len)
			chunk = len;
		void *hva;
		int r = glue_map(g, la, chunk, write, &hva);
		if (r)
			return r;
		if (write)
			memcpy(hva, p, chunk);
		else
			memcpy(p, hva, chunk);
		la += chunk;
		p += chunk;
		len -= chunk;
	}
	return 0;
}

static int glue_read(void *opaque, uint64_t la, void *buf, unsigned len)
{
	return glue_copy(opaque, la, buf, len, false);
}

static int glue_write(void *opaque, uint64_t la, const void *buf, unsigned len)
{
	return glue_copy(opaque, la, (void *)buf, len, true);
}

static int glue_cmpxchg16(void *opaque, uint64_t la, uint64_t expected[2],
			  const uint64_t desired[2])
{
	void *hva;
	int r = glue_map(opaque, la, 16, true, &hva);
	if (r)
		return r;
	if ((uintptr_t)hva & 15)
		return err_set(EFAULT, "guest address %#llx is not 16-byte aligned on the host",
			       (unsigned long long)la);
	/* The guest's other vCPUs touch this memory concurrently: a real
	 * locked cmpxchg16b on the host mapping, not a read-compare-write. */
	uint64_t lo = expected[0], hi = expected[1];
	uint8_t ok;
	__asm__ volatile("lock cmpxchg16b %1\n\tsete %0"
			 : "=q"(ok), "+m"(*(volatile __int128 *)hva), "+a"(lo), "+d"(hi)
			 : "b"(desired[0]), "c"(desired[1])
			 : "memory", "cc");
	expected[0] = lo;
	expected[1] = hi;
	return ok;
}

static enum insn_mode vcpu_mode(const struct kvm_sregs *s, const struct kvm_regs *regs)
{
	if (!(s->cr0 & CR0_PE) || (regs->rflags & RFLAGS_VM))
		return INSN_MODE_16;
	if ((s->efer & EFER_LMA) && s->cs.l)
		return INSN_MODE_64;
	return s->cs.db ? INSN_MODE_32 : INSN_MODE_16;
}

static uint8_t vcpu_cpl(const struct kvm_sregs *s, const struct kvm_regs *regs)
{
	if (!(s->cr0 & CR0_PE))
		return 0;
	if (regs->rflags & RFLAGS_VM)
		return 3;
	return s->cs.selector & 3;
}

static void regs_from_kvm(struct insn_regs *r, const struct kvm_regs *k, const struct kvm_sregs *s)
{
	const uint64_t g[16] = {k->rax, k->rcx, k->rdx, k->rbx, k->rsp, k->rbp, k->rsi, k->rdi,
				k->r8,	k->r9,	k->r10, k->r11, k->r12, k->r13, k->r14, k->r15};
	memcpy(r->gpr, g, sizeof(g));
	r->rip = k->rip;
	r->rflags = k->rflags;
	r->cr0 = s->cr0;
	r->cr4 = s->cr4;
	const struct kvm_segment *segs[6] = {&s->es, &s->cs, &s->ss, &s->ds, &s->fs, &s->gs};
	for (int i = 0; i < 6; i++)
		r->seg_base[i] = segs[i]->base;
	r->cpl = vcpu_cpl(s, k);
	r->efer = s->efer;
}

static void regs_to_kvm(struct kvm_regs *k, const struct insn_regs *r)
{
	__u64 *g[16] = {&k->rax, &k->rcx, &k->rdx, &k->rbx, &k->rsp, &k->rbp, &k->rsi, &k->rdi,
			&k->r8,	 &k->r9,  &k->r10, &k->r11, &k->r12, &k->r13, &k->r14, &k->r15};
	for (int i = 0; i < 16; i++)
		*g[i] = r->gpr[i];
	k->rip = r->rip;
	k->rflags = r->rflags;
}

/* The instruction bytes: from the exit when KVM gives all 15, else read at
 * CS:RIP through the guest page tables (KVM gives what its decoder fetched,
 * which may end early); whichever source has more wins. */
static size_t fetch_bytes(struct glue *g, const struct kvm_run *run, const struct kvm_sregs *s,
			  const struct kvm_regs *k, enum insn_mode mode, uint8_t *buf)
{
	size_t from_kvm = 0;
	if (run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		from_kvm = run->emulation_failure.insn_size;
		if (from_kvm > INSN_MAX_LEN)
			from_kvm = INSN_MAX_LEN;
		memcpy(buf, run->emulation_failure.insn_bytes, from_kvm);
		if (from_kvm == INSN_MAX_LEN)
			return from_kvm;
	}
	uint8_t mem[INSN_MAX_LEN];
	uint64_t la = k->rip + s->cs.base;
	if (mode != INSN_MODE_64)
		la &= 0xffffffffull;
	size_t n = 0;
	while (n < INSN_MAX_LEN) {
		size_t chunk = PAGE_SIZE - ((la + n) & (PAGE_SIZE - 1));
		if (chunk > INSN_MAX_LEN - n)
			chunk = INSN_MAX_LEN - n;
		if (glue_read(g, la + n, mem + n, (unsigned)chunk))
			break; /* the instruction may well end before the unmapped page */
		n += chunk;
	}
	err_clear();
	if (n <= from_kvm)
		return from_kvm;
	memcpy(buf, mem, n);
	return n;
}

/* Without KVM_CAP_EXIT_ON_EMULATION_FAILURE, KVM queues #UD before exiting
 * at CPL 0: drop it, and inject what the instruction really raises.  e is
 * the state at the exit (from the sync area or KVM_GET_VCPU_EVENTS). */
static int set_events(int vcpu_fd, struct kvm_vcpu_events *e, const struct insn_event *ev)
{
	bool queued_ud =
	    (e->exception.injected || e->exception.pending) && e->exception.nr == X86_VEC_UD;
	if (!queued_ud && !ev->pending)
		return 0;
	if (queued_ud) {
		e->exception.injected = 0;
		e->exception.pending = 0;
		e->exception_has_payload = 0;
	}
	if (ev->pending) {
		e->exception.injected = 1;
		e->exception.pending = 0;
		e->exception.nr = ev->vector;
		e->exception.has_error_code = ev->has_error_code;
		e->exception.error_code = ev->error_code;
		e->exception_has_payload = 0;
	}
	e->flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_PAYLOAD;
	if (ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, e) < 0)
		return err_set(errno, "KVM_SET_VCPU_EVENTS");
	return 0;
}

/* The state at the exit.  KVM copies registers, special registers and
 * events into kvm_run at every exit once kvm_valid_regs asks for them
 * (KVM_CAP_SYNC_REGS): after the first completion we ask, which saves
 * three of the four ioctls a completion costs (writes still go through
 * KVM_SET_REGS, so that a snapshot taken before the next KVM_RUN sees them). */
#define SYNC_WANT (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS)

static int state_get(int vcpu_fd, struct kvm_run *run, struct kvm_regs *k, struct kvm_sregs *s,
		     struct kvm_vcpu_events *e)
{
	if ((run->kvm_valid_regs & SYNC_WANT) == SYNC_WANT) {
		*k = run->s.regs.regs;
		*s = run->s.regs.sregs;
		*e = run->s.regs.events;
		return 0;
	}
	if (ioctl(vcpu_fd, KVM_GET_REGS, k) < 0)
		return err_set(errno, "KVM_GET_REGS");
	if (ioctl(vcpu_fd, KVM_GET_SREGS, s) < 0)
		return err_set(errno, "KVM_GET_SREGS");
	if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, e) < 0)
		return err_set(errno, "KVM_GET_VCPU_EVENTS");
	/* Kernels that put the instruction bytes in the exit (5.14+) all have
	 * x86 sync regs; older ones would refuse the bits in KVM_RUN. */
	if (run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES))
		run->kvm_valid_regs |= SYNC_WANT;
	return 0;
}

static int fail(struct pvm_stats *st, int ret, const uint8_t *bytes, size_t n,
		const struct kvm_regs *k, uint8_t cpl, const char *what)
{
	char hex[3 * INSN_MAX_LEN + 1];
	insn_format_bytes(bytes, n, hex, sizeof(hex));
	if (st)
		st->count[INSN_UNKNOWN]++;
	if (what)
		return err_set(ret, "cannot complete instruction [%s] at RIP %#llx (CPL %u): %s",
			       hex, (unsigned long long)k->rip, cpl, what);
	return err_prefix(ret, "cannot complete instruction [%s] at RIP %#llx (CPL %u)", hex,
			  (unsigned long long)k->rip, cpl);
}

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define RFLAGS_RF_BIT (1ull << 16)
#define X86_VEC_PF 14

static int msr_get(int vcpu_fd, uint32_t index, uint64_t *val)
{
	/* A union: clang refuses a member after a flexible array member. */
	union {
		struct kvm_msrs h;
		uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
	} m = {.h.nmsrs = 1};
	m.h.entries[0].index = index;
	if (ioctl(vcpu_fd, KVM_GET_MSRS, &m) != 1)
		return err_set(EIO, "KVM_GET_MSRS %#x", index);
	*val = m.h.entries[0].data;
	return 0;
}

/* Arms the system-call fix-up once the guest has a LSTAR and an IDT whose
 * #PF gate is readable; until then it tries again at the next completion. */
static void syscall_arm(int vcpu_fd, struct glue *g, const struct kvm_sregs *s,
			struct pvm_stats *st)
{
	if (!st || st->sys.armed || !s->idt.base || s->idt.limit < 16 * X86_VEC_PF + 15)
		return;
	uint64_t lstar = 0, star = 0, gate[2];
	if (msr_get(vcpu_fd, MSR_LSTAR, &lstar) || !lstar || msr_get(vcpu_fd, MSR_STAR, &star) ||
	    glue_read(g, s->idt.base + 16 * X86_VEC_PF, gate, sizeof(gate))) {
		err_clear();
		return;
	}
	uint64_t handler = (gate[0] & 0xffff) | ((gate[0] >> 32) & 0xffff0000ull) | (gate[1] << 32);
	struct kvm_guest_debug dbg = {.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP};
	dbg.arch.debugreg[0] = handler;
	dbg.arch.debugreg[7] = 0x1; /* L0: execute, 1 byte */
	if (ioctl(vcpu_fd, KVM_SET_GUEST_DEBUG, &dbg) < 0) {
		log_warn("pvm: KVM_SET_GUEST_DEBUG failed (%s): user-mode syscall stays broken",
			 strerror(errno));
		st->sys.armed = true; /* do not try again at every completion */
		return;
	}
	st->sys.armed = true;
	st->sys.lstar = lstar;
	st->sys.star = star;
	st->sys.pf_handler = handler;
	log_debug("pvm: syscall fix-up armed: LSTAR %#llx, #PF handler %#llx",
		  (unsigned long long)lstar, (unsigned long long)handler);
}

void pvm_rearm(int vcpu_fd, const struct guest_mem *mem, struct pvm_stats *st)
{
	struct kvm_sregs s;
	struct glue g = {vcpu_fd, mem};
	memset(&st->sys, 0, sizeof(st->sys));
	/* Whatever was armed belonged to the old registers. */
	struct kvm_guest_debug off = {.control = 0};
	if (ioctl(vcpu_fd, KVM_SET_GUEST_DEBUG, &off) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0)
		return;
	syscall_arm(vcpu_fd, &g, &s, st);
}

static struct kvm_segment flat_segment(uint16_t selector, bool code)
{
	return (struct kvm_segment){.base = 0,
				    .limit = 0xffffffff,
				    .selector = selector,
				    .type = code ? 11 : 3,
				    .present = 1,
				    .dpl = 0,
				    .s = 1,
				    .l = code,
				    .db = !code,
				    .g = 1};
}

static int guest_debug_set(int vcpu_fd, const struct pvm_stats *st, bool step)
{
	struct kvm_guest_debug dbg = {.control = KVM_GUESTDBG_ENABLE};
	if (step) {
		dbg.control |= KVM_GUESTDBG_SINGLESTEP;
	} else {
		dbg.control |= KVM_GUESTDBG_USE_HW_BP;
		dbg.arch.debugreg[0] = st->sys.pf_handler;
		dbg.arch.debugreg[7] = 0x1; /* L0: execute, 1 byte */
	}
	if (ioctl(vcpu_fd, KVM_SET_GUEST_DEBUG, &dbg) < 0)
		return err_set(errno, "KVM_SET_GUEST_DEBUG");
	return 0;
}

int pvm_handle_debug(int vcpu_fd, struct kvm_run *run, const struct guest_mem *mem,
		     struct pvm_stats *st)
{
	if (run->exit_reason != KVM_EXIT_DEBUG || !st || !st->sys.armed || !st->sys.pf_handler)
		return err_set(EINVAL, "pvm: a debug exit cairn did not arm (pc %#llx)",
			       (unsigned long long)run->debug.arch.pc);
	/* The guest's handler ran its first instruction: watch it again.  (RF
	 * does not keep KVM's emulator from stopping on the same breakpoint, so
	 * an ordinary #PF is let through by one single step.) */
	if (st->sys.stepping) {
		st->sys.stepping = false;
		return guest_debug_set(vcpu_fd, st, false);
	}
	if (run->debug.arch.pc != st->sys.pf_handler)
		return err_set(EINVAL, "pvm: a debug exit cairn did not arm (pc %#llx)",
			       (unsigned long long)run->debug.arch.pc);
	struct kvm_regs k;
	struct kvm_sregs s;
	if (ioctl(vcpu_fd, KVM_GET_REGS, &k) < 0)
		return err_set(errno, "KVM_GET_REGS");
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0)
		return err_set(errno, "KVM_GET_SREGS");
	/* At the handler's first instruction: error code, RIP, CS, RFLAGS, RSP, SS. */
	uint64_t frame[6];
	struct glue g = {vcpu_fd, mem};
	int r = glue_read(&g, k.rsp, frame, sizeof(frame));
	if (r)
		return err_prefix(r, "pvm: #PF frame at %#llx", (unsigned long long)k.rsp);
	bool broken_syscall =
	    frame[1] == st->sys.lstar && (frame[2] & 3) == 3 && s.cr2 == st->sys.lstar;
	if (!broken_syscall) {
		st->sys.stepping = true;
		return guest_debug_set(vcpu_fd, st, true);
	}
	/* Undo the #PF; finish SYSCALL: RCX, R11 and the RFLAGS mask are done. */
	k.rip = frame[1];
	k.rflags = frame[3] & ~RFLAGS_RF_BIT;
	k.rsp = frame[4];
	uint16_t cs = (uint16_t)((st->sys.star >> 32) & 0xfffc);
	s.cs = flat_segment(cs, true);
	s.ss = flat_segment((uint16_t)(cs + 8), false);
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &s) < 0)
		return err_set(errno, "KVM_SET_SREGS");
	st->count[INSN_SYSCALL]++;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &k) < 0)
		return err_set(errno, "KVM_SET_REGS");
	return 0;
}

int pvm_complete_insn(int vcpu_fd, struct kvm_run *run, const struct guest_mem *mem,
		      struct pvm_stats *st)
{
	if (run->exit_reason != KVM_EXIT_INTERNAL_ERROR ||
	    run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION)
		return err_set(EINVAL, "pvm: not an emulation-failure exit (reason %u)",
			       run->exit_reason);
	struct kvm_regs k;
	struct kvm_sregs s;
	struct kvm_vcpu_events e;
	int r = state_get(vcpu_fd, run, &k, &s, &e);
	if (r)
		return r;

	struct glue g = {vcpu_fd, mem};
	struct insn_mem ops = {&g, glue_read, glue_write, glue_cmpxchg16};
	enum insn_mode mode = vcpu_mode(&s, &k);
	uint8_t cpl = vcpu_cpl(&s, &k);
	uint8_t bytes[INSN_MAX_LEN];
	size_t n = fetch_bytes(&g, run, &s, &k, mode, bytes);

	struct insn in;
	r = insn_decode(&in, bytes, n, mode);
	if (r)
		return fail(st, r, bytes, n, &k, cpl, "undecodable");
	if (in.op == INSN_UNKNOWN)
		return fail(st, -EOPNOTSUPP, bytes, in.len, &k, cpl,
			    "not in cairn's table (docs/pvm.md)");

	struct insn_regs regs;
	regs_from_kvm(&regs, &k, &s);
	/* x87/SSE state through KVM_GET_XSAVE: its first 512 bytes are the
	 * FXSAVE image (KVM_GET_FPU's mxcsr reads 0 on this PVM host). */
	struct kvm_xsave xs;
	bool fpu_op = in.op == INSN_FWAIT || in.op == INSN_LDMXCSR || in.op == INSN_STMXCSR;
	if (fpu_op) {
		if (ioctl(vcpu_fd, KVM_GET_XSAVE, &xs) < 0)
			return err_set(errno, "KVM_GET_XSAVE");
		regs.fsw = (uint16_t)(xs.region[0] >> 16);
		regs.mxcsr = xs.region[6];
		regs.mxcsr_mask = xs.region[7] ? xs.region[7] : 0xffbf; /* 0: the SDM's default */
	}
	struct insn_event ev;
	if ((r = insn_complete(&in, &regs, &ops, &ev)))
		return fail(st, r, bytes, in.len, &k, cpl, NULL);

	if (in.op == INSN_LDMXCSR && !ev.pending) {
		xs.region[6] = regs.mxcsr;
		/* XSTATE_BV (byte 512) must name SSE, or the kernel treats the
		 * component as in its init state and drops MXCSR (the guest's
		 * cpl0check caught this: stmxcsr read back 0x1f80). */
		xs.region[128] |= 1u << 1;
		if (ioctl(vcpu_fd, KVM_SET_XSAVE, &xs) < 0)
			return err_set(errno, "KVM_SET_XSAVE");
	}
	if (in.op == INSN_SYSRET && !ev.pending) {
		/* Return to CPL 3 with the selectors STAR names (SDM: SYSRET). */
		uint64_t star = st && st->sys.armed && st->sys.star ? st->sys.star : 0;
		if (!star && (r = msr_get(vcpu_fd, MSR_STAR, &star)))
			return r;
		uint16_t base = (uint16_t)(star >> 48);
		bool longmode = in.opsize == 8;
		s.cs = flat_segment((uint16_t)((longmode ? base + 16 : base) | 3), true);
		s.cs.dpl = 3;
		s.cs.l = longmode;
		s.cs.db = !longmode;
		s.ss = flat_segment((uint16_t)((base + 8) | 3), false);
		s.ss.dpl = 3;
		if (ioctl(vcpu_fd, KVM_SET_SREGS, &s) < 0)
			return err_set(errno, "KVM_SET_SREGS");
	}
	regs_to_kvm(&k, &regs);
	if (ioctl(vcpu_fd, KVM_SET_REGS, &k) < 0)
		return err_set(errno, "KVM_SET_REGS");
	if ((r = set_events(vcpu_fd, &e, &ev)))
		return r;
	if (st)
		st->count[in.op]++;
	syscall_arm(vcpu_fd, &g, &s, st);
	return 0;
}

void pvm_stats_add(struct pvm_stats *dst, const struct pvm_stats *src)
{
	for (unsigned i = 0; i < PVM_INSN_MAX; i++)
		dst->count[i] += src->count[i];
}

const char *pvm_stats_name(unsigned i)
{
	if (i >= PVM_INSN_MAX)
		return NULL;
	return i == INSN_UNKNOWN ? "failed" : insn_op_name((enum insn_op)i);
}

uint64_t pvm_stats_total(const struct pvm_stats *st)
{
	uint64_t t = 0;
	for (unsigned i = 1; i < PVM_INSN_MAX; i++)
		t += st->count[i];
	return t;
}

void pvm_stats_print(const struct pvm_stats *st, FILE *out)
{
	uint64_t total = pvm_stats_total(st);
	if (!total && !st->count[INSN_UNKNOWN])
		return;
	fprintf(out, "pvm: completed %llu instructions:", (unsigned long long)total);
	const char *sep = " ";
	for (unsigned i = 1; i < PVM_INSN_MAX; i++) {
		if (!st->count[i])
			continue;
		fprintf(out, "%s%s %llu", sep, pvm_stats_name(i), (unsigned long long)st->count[i]);
		sep = ", ";
	}
	if (st->count[INSN_UNKNOWN])
		fprintf(out, "%sfailed %llu", sep, (unsigned long long)st->count[INSN_UNKNOWN]);
	fputc('\n', out);
}
