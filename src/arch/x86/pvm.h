/* PVM hosts: the KVM glue of the emulation-failure fallback.
 *
 * On a host whose /dev/kvm is PVM (kvm_pvm: KVM without VT-x/AMD-V), guest
 * kernel code runs through KVM's instruction emulator, which refuses some
 * instructions a stock Linux kernel executes (docs/pvm.md).  The vCPU loop
 * calls pvm_complete_insn() on KVM_EXIT_INTERNAL_ERROR with suberror
 * KVM_INTERNAL_ERROR_EMULATION: it decodes the instruction (insn_decode.c),
 * executes it on the vCPU's registers and guest memory (insn_complete.c),
 * and the vCPU runs on.  On hardware KVM none of this is used. */
#ifndef CAIRN_ARCH_X86_PVM_H
#define CAIRN_ARCH_X86_PVM_H

#include "arch/x86/insn_decode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct kvm_run;

/* Guest RAM as the VMM maps it: the host address of [gpa, gpa + len), or
 * NULL when that range is not (entirely) in one RAM region. */
struct guest_mem {
	void *opaque;
	void *(*gpa_to_hva)(void *opaque, uint64_t gpa, uint64_t len);
};

/* Completions per instruction (index: enum insn_op; INSN_UNKNOWN counts the
 * failures).  One per vCPU, written only by its thread; sum them at exit
 * with pvm_stats_add(). */
#define PVM_INSN_MAX INSN_OP_MAX
struct pvm_stats {
	uint64_t count[PVM_INSN_MAX];
	/* Not statistics: the per-vCPU state of the system-call fix-up
	 * (pvm_handle_debug()); zero-initialise with the rest, never summed. */
	struct {
		bool armed, stepping;
		uint64_t lstar, star, pf_handler;
	} sys;
};

/* True when /dev/kvm is PVM (the kvm_pvm module is loaded). */
bool pvm_host_detect(void);

/* Per VM, after KVM_CREATE_VM: enables KVM_CAP_EXIT_ON_EMULATION_FAILURE
 * where KVM offers it (the exit then carries the instruction bytes, and KVM
 * queues no #UD).  Returns 0 or -errno (message through err_set()). */
int pvm_vm_init(int vm_fd);

/* What to append to a Linux guest's command line on a PVM host: the
 * clearcpuid= list that keeps the kernel away from features whose
 * instructions the emulator cannot run (docs/pvm.md says why each is there). */
const char *pvm_linux_cmdline_extra(void);

/* Completes the instruction that made KVM_RUN return KVM_EXIT_INTERNAL_ERROR
 * / KVM_INTERNAL_ERROR_EMULATION on vcpu_fd: 0 when done (run on; an
 * exception the instruction raises, e.g. #BP for int3, is injected), or
 * -errno when it cannot be completed, with a message (err_set) naming the
 * instruction bytes, RIP and CPL.  st may be NULL. */
int pvm_complete_insn(int vcpu_fd, struct kvm_run *run, const struct guest_mem *mem,
		      struct pvm_stats *st);

/* PVM delivers a non-PVM-aware guest's user-mode `syscall` to LSTAR without
 * leaving CPL 3 (docs/pvm.md), so the kernel's entry code then takes a #PF
 * on its own first instruction.  Once the guest has set LSTAR and its IDT,
 * pvm_complete_insn() arms a hardware breakpoint (KVM_SET_GUEST_DEBUG) on the
 * guest's #PF handler; the vCPU loop must hand KVM_EXIT_DEBUG here.  When
 * the fault is that broken system call, the #PF is undone and the vCPU
 * enters LSTAR at CPL 0 with the selectors STAR names, as SYSCALL does;
 * any other #PF goes on to the guest's handler.  Returns 0 (run on), or
 * -errno with a message (not a debug exit cairn armed). */
int pvm_handle_debug(int vcpu_fd, struct kvm_run *run, const struct guest_mem *mem,
		     struct pvm_stats *st);

/* After the vCPU's registers were loaded from a snapshot: forgets the
 * fix-up state of the old registers and arms the breakpoint again at once
 * when the loaded guest has LSTAR and an IDT (else at the next completion,
 * as after boot).  Failures are not errors: the fix-up just stays off. */
void pvm_rearm(int vcpu_fd, const struct guest_mem *mem, struct pvm_stats *st);

/* dst += src, entry by entry. */
void pvm_stats_add(struct pvm_stats *dst, const struct pvm_stats *src);
/* The name of entry i ("int3", "popcnt", ...; "failed" for INSN_UNKNOWN),
 * or NULL when i >= PVM_INSN_MAX: walk 0.. to build JSON. */
const char *pvm_stats_name(unsigned i);
uint64_t pvm_stats_total(const struct pvm_stats *st);
/* "pvm: completed 1234 instructions: int3 12, popcnt 1222" (one line;
 * nothing when the total is zero). */
void pvm_stats_print(const struct pvm_stats *st, FILE *out);

#endif
