/* x86 vCPU set-up: CPUID policy, boot MSRs and the registers a boot
 * protocol starts a kernel with. */
#ifndef CAIRN_ARCH_X86_CPU_H
#define CAIRN_ARCH_X86_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct vcpu;

enum boot_mode {
	BOOT_PVH,     /* 32-bit protected mode, paging off, EBX = start_info */
	BOOT_LINUX64, /* 64-bit entry of the Linux boot protocol, RSI = boot_params */
};

struct boot_entry {
	enum boot_mode mode;
	uint64_t entry; /* guest-physical entry point */
	uint64_t arg;   /* start_info or boot_params address */
};

/* KVM_GET_SUPPORTED_CPUID, malloc'd. */
int x86_cpuid_supported(struct vm *vm, struct kvm_cpuid2 **out);
/* Per-vCPU CPUID: APIC id and topology for NCPUS, and on PVM hosts the
 * features KVM's emulator cannot run masked (docs/pvm.md). */
int x86_vcpu_set_cpuid(struct vcpu *vcpu, const struct kvm_cpuid2 *supported, int ncpus,
		       bool pvm);
/* Architectural MSR values at power-on; MSRs KVM refuses are dropped with
 * a debug message. */
int x86_vcpu_set_boot_msrs(struct vcpu *vcpu);
/* Set MSRS (NENT entries); entries KVM refuses are logged and skipped.
 * Returns the number set, or -errno. */
int x86_set_msrs_checked(struct vcpu *vcpu, struct kvm_msr_entry *msrs, unsigned nent);
/* Registers for the boot CPU; APs wait for INIT/SIPI from the guest. */
int x86_vcpu_set_boot_regs(struct vcpu *vcpu, const struct boot_entry *boot);
/* LAPIC LINT0 = ExtINT, LINT1 = NMI, as firmware leaves them. */
int x86_vcpu_set_lapic_lvt(struct vcpu *vcpu);
/* Write the boot GDT and page tables into guest memory. */
int x86_write_boot_tables(struct vm *vm);

#endif
