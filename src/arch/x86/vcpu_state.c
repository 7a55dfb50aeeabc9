#include "arch/x86/vcpu_state.h"
#include "arch/x86/guest_clock.h"
#include "arch/x86/cpu.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* A GET or SET ioctl with the error naming the call and the vCPU. */
#define VCPU_IOCTL(v, req, arg)                                                              \
	(ioctl((v)->fd, req, arg) < 0 ? err_set(errno, "%s on vCPU %d", #req, (v)->id) : 0)
#define VM_IOCTL(vm, req, arg)                                                               \
	(ioctl((vm)->vm_fd, req, arg) < 0 ? err_set(errno, "%s", #req) : 0)

#define MSR_PROBE_BATCH 128 /* KVM_GET_MSRS takes fewer than 256 a call */

/* This module's per-VM data, kept in vm->arch_data (allocated here at the
 * first snapshot, freed by vm_destroy). */
struct x86_msr_list {
	unsigned n;
	uint32_t index[X86_MAX_MSRS];
};

static const struct x86_msr_list *msr_list_of(const struct vm *vm)
{
	return vm->arch_data;
}

/* The MSRs of this host's KVM that can be saved (KVM_GET_MSR_INDEX_LIST,
 * less those KVM_GET_MSRS refuses on V).  Computed once per VM. */
static int x86_msr_list_init(struct vm *vm, struct vcpu *v)
{
	if (msr_list_of(vm))
		return 0;
	struct x86_msr_list *ml = calloc(1, sizeof(*ml));
	if (!ml)
		return err_set(ENOMEM, "MSR list");
	union {
		struct kvm_msr_list hdr;
		uint8_t bytes[sizeof(struct kvm_msr_list) + X86_MAX_MSRS * sizeof(uint32_t)];
	} list = {.hdr.nmsrs = X86_MAX_MSRS};
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0) {
		free(ml);
		return err_set(errno, "KVM_GET_MSR_INDEX_LIST");
	}
	/* The list names MSRs KVM_GET_MSRS then refuses: keep only those it
	 * reads.  One call reads up to the first refused MSR and says how far
	 * it got, so the probe costs one call per refused MSR plus one, not one
	 * per MSR (it runs in the first snapshot's pause). */
	union {
		struct kvm_msrs hdr;
		uint8_t bytes[sizeof(struct kvm_msrs) + MSR_PROBE_BATCH * sizeof(struct kvm_msr_entry)];
	} buf;
	uint32_t total = list.hdr.nmsrs < X86_MAX_MSRS ? list.hdr.nmsrs : X86_MAX_MSRS;
	unsigned n = 0;
	for (uint32_t i = 0; i < total;) {
		buf.hdr.nmsrs = total - i < MSR_PROBE_BATCH ? total - i : MSR_PROBE_BATCH;
		for (uint32_t k = 0; k < buf.hdr.nmsrs; k++)
			buf.hdr.entries[k].index = list.hdr.indices[i + k];
		int got = ioctl(v->fd, KVM_GET_MSRS, &buf);
		if (got < 0) {
			free(ml);
			return err_set(errno, "KVM_GET_MSRS on vCPU %d", v->id);
		}
		for (int k = 0; k < got; k++)
			ml->index[n++] = list.hdr.indices[i + (uint32_t)k];
		i += (uint32_t)got;
		if ((uint32_t)got < buf.hdr.nmsrs)
			log_debug("MSR %#x listed by KVM but not readable: not saved",
				  list.hdr.indices[i++]);
	}
	ml->n = n;
	vm->arch_data = ml;
	log_debug("saving %u MSRs of the %u KVM lists", n, list.hdr.nmsrs);
	return 0;
}

static int vcpu_get_msrs(struct vcpu *v, struct x86_vcpu_state *st)
{
	const struct x86_msr_list *ml = msr_list_of(v->vm);
	union {
		struct kvm_msrs hdr;
		uint8_t bytes[sizeof(struct kvm_msrs) + X86_MAX_MSRS * sizeof(struct kvm_msr_entry)];
	} buf;
	memset(&buf, 0, sizeof(buf));
	buf.hdr.nmsrs = ml->n;
	for (unsigned i = 0; i < ml->n; i++)
		buf.hdr.entries[i].index = ml->index[i];
	int r = ioctl(v->fd, KVM_GET_MSRS, &buf);
	if (r < 0)
		return err_set(errno, "KVM_GET_MSRS on vCPU %d", v->id);
	if ((unsigned)r != ml->n)
		return err_set(EIO, "KVM_GET_MSRS on vCPU %d read %d of %u MSRs (stopped at %#x)",
			       v->id, r, ml->n, buf.hdr.entries[r].index);
	st->nmsrs = ml->n;
	memcpy(st->msrs, buf.hdr.entries, st->nmsrs * sizeof(st->msrs[0]));
	return 0;
}

static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned off)
{
	uint32_t v;
	memcpy(&v, &l->regs[off], 4);
	return v;
}

/* A LAPIC timer that expired while the vCPU was out of KVM_RUN sits in
 * KVM's "pending" counter, not yet in the IRR, and KVM_GET_LAPIC does not
 * show it: restored as is, the interrupt is lost and a guest waiting for
 * it in hlt never wakes (Firecracker hit this too).  Record such a timer
 * as due: in the IRR for one-shot mode, as a deadline of "now" in
 * TSC-deadline mode.  At worst the guest sees one spurious timer
 * interrupt, which guests tolerate. */
static void lapic_timer_fixup(struct x86_vcpu_state *st)
{
	uint32_t lvtt = lapic_reg(&st->lapic, 0x320);
	unsigned mode = (lvtt >> 17) & 3, vector = lvtt & 0xff;
	if (lvtt & (1u << 16) || vector < 16)
		return; /* masked, or no valid vector */
	if (mode == 0 && lapic_reg(&st->lapic, 0x380) && !lapic_reg(&st->lapic, 0x390)) {
		unsigned irr = 0x200 + (vector / 32) * 0x10;
		uint32_t bits = lapic_reg(&st->lapic, irr) | 1u << (vector % 32);
		memcpy(&st->lapic.regs[irr], &bits, 4);
	} else if (mode == 2) {
		uint64_t tsc = 0;
		for (unsigned i = 0; i < st->nmsrs; i++)
			if (st->msrs[i].index == MSR_IA32_TSC)
				tsc = st->msrs[i].data;
		for (unsigned i = 0; i < st->nmsrs; i++)
			if (st->msrs[i].index == MSR_IA32_TSC_DEADLINE && !st->msrs[i].data)
				st->msrs[i].data = tsc;
	}
}

uint64_t x86_vcpu_state_tsc(const struct x86_vcpu_state *st)
{
	for (unsigned i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index == MSR_IA32_TSC)
			return st->msrs[i].data;
	return 0;
}

void x86_vcpu_state_set_tsc(struct x86_vcpu_state *st, uint64_t tsc)
{
	for (unsigned i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index == MSR_IA32_TSC)
			st->msrs[i].data = tsc;
}

int x86_vcpu_save(struct vcpu *v, struct x86_vcpu_state *st)
{
	memset(st, 0, offsetof(struct x86_vcpu_state, xsave));
	int r;
	if ((r = x86_msr_list_init(v->vm, v)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_GET_REGS, &st->regs)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_GET_SREGS, &st->sregs)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_GET_XCRS, &st->xcrs)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_GET_DEBUGREGS, &st->debugregs)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_GET_LAPIC, &st->lapic)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_GET_MP_STATE, &st->mp_state)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_GET_VCPU_EVENTS, &st->events)) < 0 || (r = vcpu_get_msrs(v, st)) < 0)
		return r;
	/* XSAVE: the size KVM_CAP_XSAVE2 reports, else the legacy 4 KiB. */
	int xs = ioctl(v->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	st->xsave_size = xs > (int)sizeof(struct kvm_xsave) ? (uint32_t)xs : sizeof(struct kvm_xsave);
	if (st->xsave_size > X86_XSAVE_MAX)
		return err_set(E2BIG, "XSAVE area of %u bytes", st->xsave_size);
	unsigned long req = xs > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	if (ioctl(v->fd, req, st->xsave) < 0)
		return err_set(errno, "KVM_GET_XSAVE on vCPU %d", v->id);
	union {
		struct kvm_cpuid2 hdr;
		uint8_t bytes[sizeof(struct kvm_cpuid2) + X86_MAX_CPUID * sizeof(struct kvm_cpuid_entry2)];
	} cpuid = {.hdr.nent = X86_MAX_CPUID};
	if ((r = VCPU_IOCTL(v, KVM_GET_CPUID2, &cpuid)) < 0)
		return r;
	st->ncpuid = cpuid.hdr.nent;
	memcpy(st->cpuid, cpuid.hdr.entries, st->ncpuid * sizeof(st->cpuid[0]));
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	st->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	lapic_timer_fixup(st);
	return 0;
}

/* MSRs in two batches: TSC_DEADLINE last, after the LAPIC and the TSC,
 * or a timer armed at the snapshot never fires (a Firecracker bug). */
static int vcpu_set_msrs(struct vcpu *v, const struct x86_vcpu_state *st)
{
	struct kvm_msr_entry first[X86_MAX_MSRS], last[1];
	unsigned nfirst = 0, nlast = 0;
	for (unsigned i = 0; i < st->nmsrs && i < X86_MAX_MSRS; i++) {
		if (st->msrs[i].index == MSR_IA32_TSC_DEADLINE)
			last[nlast++] = st->msrs[i];
		else
			first[nfirst++] = st->msrs[i];
	}
	int r = x86_set_msrs_checked(v, first, nfirst);
	if (r >= 0 && (unsigned)r != nfirst)
		return err_set(EIO, "vCPU %d: KVM accepted %d of %u saved MSRs", v->id, r, nfirst);
	if (r >= 0 && nlast)
		r = x86_set_msrs_checked(v, last, nlast);
	return r < 0 ? r : 0;
}

int x86_vcpu_restore(struct vcpu *v, const struct x86_vcpu_state *st)
{
	if (st->ncpuid > X86_MAX_CPUID || st->nmsrs > X86_MAX_MSRS ||
	    st->xsave_size > X86_XSAVE_MAX)
		return err_set(EINVAL, "vCPU %d: saved state has impossible sizes", v->id);
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	/* QEMU's tolerance is 250 ppm; without TSC scaling we cannot bridge more. */
	if (st->tsc_khz && khz > 0 &&
	    (uint64_t)llabs((long long)khz - (long long)st->tsc_khz) * 4000 > st->tsc_khz &&
	    ioctl(v->fd, KVM_SET_TSC_KHZ, st->tsc_khz) < 0)
		return err_set(ENOTSUP, "the snapshot's TSC runs at %u kHz, this host's at %d kHz, "
					"and KVM cannot scale it: the guest's time would drift",
			       st->tsc_khz, khz);
	union {
		struct kvm_cpuid2 hdr;
		uint8_t bytes[sizeof(struct kvm_cpuid2) + X86_MAX_CPUID * sizeof(struct kvm_cpuid_entry2)];
	} cpuid;
	memset(&cpuid.hdr, 0, sizeof(cpuid.hdr));
	cpuid.hdr.nent = st->ncpuid;
	memcpy(cpuid.hdr.entries, st->cpuid, st->ncpuid * sizeof(cpuid.hdr.entries[0]));
	/* CPUID first: it decides which MSRs and XSAVE components exist. */
	int r;
	if ((r = VCPU_IOCTL(v, KVM_SET_CPUID2, &cpuid)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_SET_MP_STATE, &st->mp_state)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_SET_REGS, &st->regs)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_SET_SREGS, &st->sregs)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_SET_XSAVE, st->xsave)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_SET_XCRS, &st->xcrs)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_SET_DEBUGREGS, &st->debugregs)) < 0 ||
	    /* LAPIC after SREGS (APIC base), before MSRs and events. */
	    (r = VCPU_IOCTL(v, KVM_SET_LAPIC, &st->lapic)) < 0 || (r = vcpu_set_msrs(v, st)) < 0 ||
	    (r = VCPU_IOCTL(v, KVM_SET_VCPU_EVENTS, &st->events)) < 0)
		return r;
	/* Tell a kvmclock guest it was stopped (no soft-lockup warnings). */
	ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0);
	return 0;
}

/* The vCPU record: fixed registers first, then the variable parts, their
 * counts checked before they are read. */
int x86_vcpu_state_fields(struct x86_vcpu_state *st, struct state_buf *sb)
{
	STATE_FIELD(sb, st->regs);
	STATE_FIELD(sb, st->sregs);
	STATE_FIELD(sb, st->xcrs);
	STATE_FIELD(sb, st->debugregs);
	STATE_FIELD(sb, st->lapic);
	STATE_FIELD(sb, st->mp_state);
	STATE_FIELD(sb, st->events);
	STATE_FIELD(sb, st->tsc_khz);
	STATE_FIELD(sb, st->xsave_size);
	STATE_FIELD(sb, st->nmsrs);
	STATE_FIELD(sb, st->ncpuid);
	/* KVM_SET_XSAVE reads at least a struct kvm_xsave (more where the
	 * host's XSAVE area is larger): a save never records less, and what
	 * the record does not fill is zero, not what the buffer held. */
	if (!sb->err && (st->xsave_size > X86_XSAVE_MAX || st->nmsrs > X86_MAX_MSRS ||
			 st->ncpuid > X86_MAX_CPUID ||
			 (sb->restoring && st->xsave_size < sizeof(struct kvm_xsave))))
		return err_set(EINVAL,
			       "%s: impossible sizes (XSAVE %u bytes, %u MSRs, %u CPUID leaves)",
			       sb->what, st->xsave_size, st->nmsrs, st->ncpuid);
	if (sb->restoring && !sb->err)
		memset(st->xsave + st->xsave_size, 0, X86_XSAVE_MAX - st->xsave_size);
	state_buf_field(sb, st->xsave, st->xsave_size);
	state_buf_field(sb, st->msrs, st->nmsrs * sizeof(st->msrs[0]));
	state_buf_field(sb, st->cpuid, st->ncpuid * sizeof(st->cpuid[0]));
	return state_buf_finish(sb);
}

/* Version 1 of the VM record was a copy of struct x86_vm_state as it lies
 * in memory; these fields, back to back, are those same bytes. */
_Static_assert(sizeof(struct x86_vm_state) == 3 * sizeof(struct kvm_irqchip) +
						  sizeof(struct kvm_pit_state2) +
						  sizeof(struct kvm_clock_data),
	       "struct x86_vm_state has padding: its fields no longer make the version 1 record");

int x86_vm_state_fields(struct x86_vm_state *st, struct state_buf *sb)
{
	STATE_FIELD(sb, st->pic_master);
	STATE_FIELD(sb, st->pic_slave);
	STATE_FIELD(sb, st->ioapic);
	STATE_FIELD(sb, st->pit);
	STATE_FIELD(sb, st->clock);
	/* KVM_SET_IRQCHIP sets the chip the state names. */
	if (sb->restoring && !sb->err &&
	    (st->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
	     st->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
	     st->ioapic.chip_id != KVM_IRQCHIP_IOAPIC))
		return err_set(
		    EINVAL, "%s: irqchip states out of place (chips %u, %u, %u; want %u, %u, %u)",
		    sb->what, st->pic_master.chip_id, st->pic_slave.chip_id, st->ioapic.chip_id,
		    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC);
	return state_buf_finish(sb);
}

int x86_vm_save(struct vm *vm, struct x86_vm_state *st)
{
	memset(st, 0, sizeof(*st));
	st->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	st->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	int r;
	if ((r = VM_IOCTL(vm, KVM_GET_IRQCHIP, &st->pic_master)) < 0 ||
	    (r = VM_IOCTL(vm, KVM_GET_IRQCHIP, &st->pic_slave)) < 0 ||
	    (r = VM_IOCTL(vm, KVM_GET_IRQCHIP, &st->ioapic)) < 0 ||
	    (r = VM_IOCTL(vm, KVM_GET_PIT2, &st->pit)) < 0 ||
	    (r = VM_IOCTL(vm, KVM_GET_CLOCK, &st->clock)) < 0)
		return r;
	/* The realtime saved is the one the guest is in step with, not the
	 * time of the save: a later clock-sync makes up for every time the
	 * guest spent in snapshots (arch/x86/guest_clock.h). */
	x86_clock_ref_save(vm, &st->clock);
	return 0;
}

int x86_vm_restore(struct vm *vm, const struct x86_vm_state *st)
{
	struct x86_vm_state s = *st;
	/* Frozen clock: the guest's kvmclock continues from the snapshot's
	 * value (no KVM_CLOCK_REALTIME jump); docs/snapshots.md. */
	s.clock.flags = 0;
	x86_clock_ref_restore(vm, &st->clock);
	int r;
	if ((r = VM_IOCTL(vm, KVM_SET_IRQCHIP, &s.pic_master)) < 0 ||
	    (r = VM_IOCTL(vm, KVM_SET_IRQCHIP, &s.pic_slave)) < 0 ||
	    (r = VM_IOCTL(vm, KVM_SET_IRQCHIP, &s.ioapic)) < 0 ||
	    (r = VM_IOCTL(vm, KVM_SET_PIT2, &s.pit)) < 0 ||
	    (r = VM_IOCTL(vm, KVM_SET_CLOCK, &s.clock)) < 0)
		return r;
	return 0;
}
