#include "arch/x86/cpu.h"
#include "arch/x86/layout.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_MAX_ENTRIES 256

int x86_cpuid_supported(struct vm *vm, struct kvm_cpuid2 **out)
{
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
	if (!c)
		return err_set(ENOMEM, "CPUID table");
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int r = err_set(errno, "KVM_GET_SUPPORTED_CPUID");
		free(c);
		return r;
	}
	*out = c;
	return 0;
}

static unsigned order_base_2(unsigned n)
{
	unsigned s = 0;
	while ((1u << s) < n)
		s++;
	return s;
}

/* Features a non-PVM-aware kernel must not be told of on PVM hosts: KVM's
 * instruction emulator cannot run them at CPL 0 (environment facts in
 * docs/pvm.md).  Hardware KVM gets the supported set unchanged. */
static void cpuid_mask_pvm(struct kvm_cpuid_entry2 *e)
{
	switch (e->function) {
	case 1:
		e->ecx &= ~((1u << 1) | (1u << 13) | (1u << 17) | (1u << 22) | (1u << 23) |
			    (1u << 25) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30));
		break;
	case 7:
		if (e->index == 0) {
			e->ebx &= ~((1u << 0) | (1u << 3) | (1u << 5) | (1u << 7) | (1u << 8) |
				    (1u << 10) | (1u << 16) | (1u << 18) | (1u << 20) |
				    (1u << 23) | (1u << 24) | (1u << 29));
			e->ecx &= ~(1u << 22);
		}
		break;
	case 0x80000001:
		e->ecx &= ~(1u << 5);
		break;
	}
}

static void cpuid_set_topology(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned ncpus)
{
	unsigned shift = order_base_2(ncpus);
	switch (e->function) {
	case 1:
		e->ebx = (e->ebx & 0xffffu) | (ncpus << 16) | (apic_id << 24);
		e->ecx |= 1u << 31; /* hypervisor present */
		if (ncpus > 1)
			e->edx |= 1u << 28; /* HTT: the count in EBX[23:16] is valid */
		break;
	case 4:
		e->eax = (e->eax & 0x03ffffffu) | ((ncpus - 1) << 26);
		break;
	case 0xb:
	case 0x1f:
		/* Level 0: SMT (one thread per core); level 1: cores. */
		e->edx = apic_id;
		if (e->index == 0) {
			e->eax = 0;
			e->ebx = 1;
			e->ecx = (1u << 8);
		} else if (e->index == 1) {
			e->eax = shift;
			e->ebx = ncpus;
			e->ecx = 1 | (2u << 8);
		} else {
			e->eax = e->ebx = 0;
			e->ecx = e->index;
		}
		break;
	case 0x80000008:
		e->ecx = (e->ecx & ~0xf0ffu) | (ncpus - 1) | (shift << 12);
		break;
	case 0x8000001e:
		e->eax = apic_id;
		e->ebx = apic_id & 0xff;
		e->ecx = 0;
		break;
	}
}

int x86_vcpu_set_cpuid(struct vcpu *vcpu, const struct kvm_cpuid2 *sup, int ncpus, bool pvm)
{
	size_t sz = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	if (!c)
		return err_set(ENOMEM, "CPUID table");
	memcpy(c, sup, sz);
	for (uint32_t i = 0; i < c->nent; i++) {
		cpuid_set_topology(&c->entries[i], (unsigned)vcpu->id, (unsigned)ncpus);
		if (pvm)
			cpuid_mask_pvm(&c->entries[i]);
	}
	int r = ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0
			? err_set(errno, "KVM_SET_CPUID2 on vCPU %d", vcpu->id)
			: 0;
	free(c);
	return r;
}

int x86_set_msrs_checked(struct vcpu *vcpu, struct kvm_msr_entry *msrs, unsigned nent)
{
	/* A union, not a struct: a flexible array member may not be followed. */
	union {
		struct kvm_msrs hdr;
		uint8_t bytes[sizeof(struct kvm_msrs) + 64 * sizeof(struct kvm_msr_entry)];
	} buf;
	unsigned done = 0, set = 0;
	while (done < nent) {
		unsigned n = nent - done > 64 ? 64 : nent - done;
		memset(&buf.hdr, 0, sizeof(buf.hdr));
		buf.hdr.nmsrs = n;
		memcpy(buf.hdr.entries, msrs + done, n * sizeof(buf.hdr.entries[0]));
		int r = ioctl(vcpu->fd, KVM_SET_MSRS, &buf);
		if (r < 0)
			return err_set(errno, "KVM_SET_MSRS on vCPU %d", vcpu->id);
		set += (unsigned)r;
		done += (unsigned)r;
		if ((unsigned)r < n) {
			/* KVM stops at the first MSR it refuses: drop it, go on. */
			log_debug("vCPU %d: KVM refused MSR %#x; dropped", vcpu->id,
				  msrs[done].index);
			done++;
		}
	}
	return (int)set;
}

int x86_vcpu_set_boot_msrs(struct vcpu *vcpu)
{
	struct kvm_msr_entry m[] = {
		{.index = 0x174},                     /* SYSENTER_CS */
		{.index = 0x175},                     /* SYSENTER_ESP */
		{.index = 0x176},                     /* SYSENTER_EIP */
		{.index = 0xc0000081},                /* STAR */
		{.index = 0xc0000082},                /* LSTAR */
		{.index = 0xc0000083},                /* CSTAR */
		{.index = 0xc0000084},                /* SFMASK */
		{.index = 0xc0000102},                /* KERNEL_GS_BASE */
		{.index = 0x10},                      /* TSC */
		{.index = 0x1a0, .data = 1},          /* MISC_ENABLE: fast strings */
		{.index = 0x2ff, .data = (1u << 11) | 6}, /* MTRRdefType: enabled, WB */
	};
	int r = x86_set_msrs_checked(vcpu, m, sizeof(m) / sizeof(m[0]));
	return r < 0 ? r : 0;
}

static struct kvm_segment seg_flat(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code64 ? 0 : 1,
		.s = 1,
		.l = code64 ? 1 : 0,
		.g = 1,
	};
}

/* GDT: null, 0x08 64-bit code, 0x10 data, 0x18 32-bit code, 0x20 TSS. */
static const uint64_t boot_gdt[] = {
	0,
	0x00af9b000000ffffULL,
	0x00cf93000000ffffULL,
	0x00cf9b000000ffffULL,
	0x00808b0000000000ULL,
};

int x86_write_boot_tables(struct vm *vm)
{
	void *gdt = vm_gpa_to_hva(vm, BOOT_GDT_ADDR, sizeof(boot_gdt));
	uint64_t *pml4 = vm_gpa_to_hva(vm, BOOT_PML4_ADDR, PAGE_SIZE);
	uint64_t *pdpt = vm_gpa_to_hva(vm, BOOT_PDPT_ADDR, PAGE_SIZE);
	uint64_t *pd = vm_gpa_to_hva(vm, BOOT_PD_ADDR, 4 * PAGE_SIZE);
	if (!gdt || !pml4 || !pdpt || !pd)
		return err_set(ENOMEM, "guest memory too small for the boot tables");
	memcpy(gdt, boot_gdt, sizeof(boot_gdt));
	/* Identity map of the first 4 GiB with 2 MiB pages. */
	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	pml4[0] = BOOT_PDPT_ADDR | 0x3;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD_ADDR + i * PAGE_SIZE) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83;
	return 0;
}

int x86_vcpu_set_boot_regs(struct vcpu *vcpu, const struct boot_entry *boot)
{
	struct kvm_sregs s;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0)
		return err_set(errno, "KVM_GET_SREGS");
	bool lm = boot->mode == BOOT_LINUX64;
	s.gdt.base = BOOT_GDT_ADDR;
	s.gdt.limit = sizeof(boot_gdt) - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	s.cs = seg_flat(lm ? 0x08 : 0x18, 0xb, lm);
	s.ds = s.es = s.fs = s.gs = s.ss = seg_flat(0x10, 0x3, false);
	s.tr = (struct kvm_segment){
		.selector = 0x20, .limit = 0x67, .type = 0xb, .present = 1};
	s.ldt = (struct kvm_segment){.type = 0x2, .present = 1, .unusable = 1};
	if (lm) {
		s.cr3 = BOOT_PML4_ADDR;
		s.cr4 = 0x20; /* PAE */
		s.cr0 = 0x80050033; /* PG, AM, WP, NE, ET, MP, PE */
		s.efer = 0x500; /* LME, LMA */
	} else {
		s.cr0 = 0x11; /* PE, ET */
		s.cr3 = 0;
		s.cr4 = 0;
		s.efer = 0;
	}
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &s) < 0)
		return err_set(errno, "KVM_SET_SREGS");
	struct kvm_regs r = {.rflags = 0x2, .rip = boot->entry};
	if (lm)
		r.rsi = boot->arg;
	else
		r.rbx = boot->arg;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &r) < 0)
		return err_set(errno, "KVM_SET_REGS");
	struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
	if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
		return err_set(errno, "KVM_SET_FPU");
	return 0;
}

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI 0x4

static void lapic_set_mode(struct kvm_lapic_state *l, unsigned reg, uint32_t mode)
{
	uint32_t v;
	memcpy(&v, &l->regs[reg], 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&l->regs[reg], &v, 4);
}

int x86_vcpu_set_lapic_lvt(struct vcpu *vcpu)
{
	struct kvm_lapic_state l;
	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &l) < 0)
		return err_set(errno, "KVM_GET_LAPIC");
	lapic_set_mode(&l, APIC_LVT0, APIC_MODE_EXTINT);
	lapic_set_mode(&l, APIC_LVT1, APIC_MODE_NMI);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &l) < 0)
		return err_set(errno, "KVM_SET_LAPIC");
	return 0;
}
