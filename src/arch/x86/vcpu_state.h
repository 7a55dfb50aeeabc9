/* Saving and restoring the architectural state KVM holds for an x86 vCPU
 * and for the VM (irqchips, PIT, kvmclock), in the order KVM requires
 * (each step says why; the whole order is in docs/snapshots.md). */
#ifndef CAIRN_ARCH_X86_VCPU_STATE_H
#define CAIRN_ARCH_X86_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdint.h>

struct vm;
struct vcpu;
struct state_buf;

#define X86_MAX_MSRS 256
#define X86_MAX_CPUID 256
#define X86_XSAVE_MAX 16384

struct x86_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs debugregs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp_state;
	struct kvm_vcpu_events events;
	uint32_t tsc_khz;
	uint32_t xsave_size; /* bytes used in xsave */
	uint32_t nmsrs;
	uint32_t ncpuid;
	uint8_t xsave[X86_XSAVE_MAX];
	struct kvm_msr_entry msrs[X86_MAX_MSRS];
	struct kvm_cpuid_entry2 cpuid[X86_MAX_CPUID];
};

struct x86_vm_state {
	struct kvm_irqchip pic_master, pic_slave, ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

/* The records of state.bin (docs/state-format.md): each struct's fields
 * listed once with STATE_FIELD, for both directions (sb->restoring).
 * Their byte layout is the record's version 1; changing it is a new
 * record version. */
int x86_vcpu_state_fields(struct x86_vcpu_state *st, struct state_buf *sb);
int x86_vm_state_fields(struct x86_vm_state *st, struct state_buf *sb);

/* The vCPU must be out of KVM_RUN with no I/O half done (paused). */
/* The IA32_TSC the state holds (0: none), and setting it. */
uint64_t x86_vcpu_state_tsc(const struct x86_vcpu_state *st);
void x86_vcpu_state_set_tsc(struct x86_vcpu_state *st, uint64_t tsc);

int x86_vcpu_save(struct vcpu *vcpu, struct x86_vcpu_state *st);
int x86_vcpu_restore(struct vcpu *vcpu, const struct x86_vcpu_state *st);
int x86_vm_save(struct vm *vm, struct x86_vm_state *st);
/* Before any vCPU runs; the clock continues from the saved value. */
int x86_vm_restore(struct vm *vm, const struct x86_vm_state *st);

#endif
