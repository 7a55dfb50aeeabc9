#include "vmm/vmm.h"
#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/mptable.h"
#include "arch/x86/pvm.h"
#include "devices/device.h"
#include "devices/pci.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

struct vmm {
	struct vm *vm;
	struct evloop *loop;
	int sigfd;
	struct kernel_image kernel;
};

static void *vmm_gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	return vm_gpa_to_hva(opaque, gpa, len);
}

/* KVM's emulator refused an instruction (PVM hosts): complete it here. */
static int vmm_emul_fallback(struct vcpu *v)
{
	const struct guest_mem mem = {v->vm, vmm_gpa_to_hva};
	return pvm_complete_insn(v->fd, v->run, &mem, &v->pvm_stats);
}

/* SIGINT, SIGTERM and SIGHUP end the VM through the event loop, so the
 * normal exit path (terminal restored, threads joined) always runs. */
static void vmm_on_signal(void *opaque, uint32_t events)
{
	struct vmm *vmm = opaque;
	struct signalfd_siginfo si;
	if (read(vmm->sigfd, &si, sizeof(si)) != sizeof(si))
		return;
	char msg[64];
	snprintf(msg, sizeof(msg), "terminated by signal %u", si.ssi_signo);
	vm_request_exit(vmm->vm, VM_EXIT_QUIT, 0, msg);
}

static int vmm_setup_signals(struct vmm *vmm)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	/* Blocked before any vCPU thread exists, so every thread inherits it. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	vmm->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vmm->sigfd < 0)
		return err_set(errno, "signalfd");
	signal(SIGPIPE, SIG_IGN);
	vcpu_signals_init();
	return evloop_add(vmm->loop, vmm->sigfd, EPOLLIN, vmm_on_signal, vmm);
}

static char *vmm_cmdline(const struct vm_config *cfg, const struct kernel_image *k, bool pvm)
{
	const char *base = cfg->cmdline ? cfg->cmdline : "";
	const char *extra = "";
	if (k->is_linux && pvm && cfg->pvm_quirks)
		extra = pvm_linux_cmdline_extra();
	size_t len = strlen(base) + strlen(extra) + 2;
	char *s = malloc(len);
	if (s)
		snprintf(s, len, "%s%s%s", base, *base && *extra ? " " : "", extra);
	return s;
}

static int vmm_setup_vcpus(struct vmm *vmm, const struct vm_config *cfg,
			   const struct boot_entry *boot)
{
	struct vm *vm = vmm->vm;
	struct kvm_cpuid2 *cpuid;
	int r = x86_cpuid_supported(vm, &cpuid);
	if (r < 0)
		return r;
	for (int i = 0; i < cfg->ncpus && r >= 0; i++) {
		struct vcpu *v;
		if ((r = vcpu_create(vm, i, &v)) < 0)
			break;
		vm->vcpus[vm->ncpus++] = v;
		if ((r = x86_vcpu_set_cpuid(v, cpuid, cfg->ncpus, vm->pvm)) < 0 ||
		    (r = x86_vcpu_set_boot_msrs(v)) < 0 || (r = x86_vcpu_set_lapic_lvt(v)) < 0)
			break;
		if (i == 0)
			r = x86_vcpu_set_boot_regs(v, boot);
	}
	free(cpuid);
	return r;
}

int vmm_create(const struct vm_config *cfg, struct vmm **out)
{
	struct vmm *vmm = calloc(1, sizeof(*vmm));
	if (!vmm)
		return err_set(ENOMEM, "VMM");
	vmm->sigfd = -1;
	int r;
	if ((r = kernel_image_open(cfg->kernel, &vmm->kernel)) < 0)
		goto fail;
	if ((r = evloop_create(&vmm->loop)) < 0) {
		err_set(-r, "event loop");
		goto fail;
	}
	if ((r = vmm_setup_signals(vmm)) < 0)
		goto fail;
	if ((r = vm_create(&vmm->vm)) < 0)
		goto fail;
	struct vm *vm = vmm->vm;
	vm->loop = vmm->loop;
	vm->pvm = pvm_host_detect();
	if (vm->pvm)
		log_info("/dev/kvm is PVM (kvm_pvm loaded): guest kernel code is emulated by KVM; "
			 "PVM quirks %s (docs/pvm.md)", cfg->pvm_quirks ? "on" : "off");
	if (vm->pvm && cfg->pvm_quirks) {
		if ((r = pvm_vm_init(vm->vm_fd)) < 0)
			goto fail;
		vm->emul_fallback = vmm_emul_fallback;
	}
	if ((r = vm_mem_alloc(vm, cfg->mem_size)) < 0 || (r = vm_create_irqchip(vm)) < 0)
		goto fail;
	if ((r = devices_init(vm, cfg)) < 0)
		goto fail;

	char *cmdline = vmm_cmdline(cfg, &vmm->kernel, vm->pvm);
	if (!cmdline) {
		r = err_set(ENOMEM, "command line");
		goto fail;
	}
	log_debug("kernel command line: %s", cmdline);
	/* Firmware tables first: the kernel and initrd go where they are not. */
	uint64_t rsdp = 0;
	struct mp_pci_irq irqs[32];
	unsigned nirq = pci_irq_table(vm, irqs, 32);
	struct boot_entry boot;
	if ((r = x86_mptable_write(vm, cfg->ncpus, irqs, nirq)) < 0 ||
	    (r = x86_acpi_write(vm, cfg->ncpus, &rsdp)) < 0 ||
	    (r = x86_boot_load(vm, &vmm->kernel, cfg->initrd, cmdline, rsdp, &boot)) < 0) {
		free(cmdline);
		goto fail;
	}
	free(cmdline);
	if ((r = vmm_setup_vcpus(vmm, cfg, &boot)) < 0)
		goto fail;
	kernel_image_close(&vmm->kernel);
	*out = vmm;
	return 0;
fail:
	vmm_destroy(vmm);
	return r;
}

int vmm_run(struct vmm *vmm)
{
	struct vm *vm = vmm->vm;
	int r = 0;
	for (int i = 0; i < vm->ncpus && r == 0; i++)
		r = vcpu_start(vm->vcpus[i]);
	if (r == 0 && (r = evloop_run(vmm->loop)) < 0)
		err_set(-r, "event loop");
	if (r < 0)
		vm_request_exit(vm, VM_EXIT_ERROR, 1, err_msg());
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_kick(vm->vcpus[i]);
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_join(vm->vcpus[i]);
	log_info("VM ended: %s", vm->exit_msg);
	struct pvm_stats total = {0};
	for (int i = 0; i < vm->ncpus; i++)
		pvm_stats_add(&total, &vm->vcpus[i]->pvm_stats);
	if (log_get_level() >= LOG_INFO)
		pvm_stats_print(&total, stderr);
	switch (vm->exit_reason) {
	case VM_EXIT_ERROR:
		return err_set(0, "%s", vm->exit_msg);
	case VM_EXIT_DEBUG:
		return vm->exit_code;
	default:
		return 0;
	}
}

void vmm_destroy(struct vmm *vmm)
{
	if (!vmm)
		return;
	if (vmm->vm) {
		devices_destroy(vmm->vm);
		vm_destroy(vmm->vm);
	}
	evloop_destroy(vmm->loop);
	if (vmm->sigfd >= 0)
		close(vmm->sigfd);
	kernel_image_close(&vmm->kernel);
	free(vmm);
}
