#include "vmm/vmm.h"
#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/guest_clock.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "arch/x86/pvm.h"
#include "control/control.h"
#include "devices/device.h"
#include "devices/pci.h"
#include "disk/block.h"
#include "disk/qcow2.h"
#include "kvm/vcpu.h"
#include "kvm/dirty.h"
#include "kvm/vm.h"
#include "net/net.h"
#include "snapshot/mem_chain.h"
#include "snapshot/mem_image.h"
#include "snapshot/snapdir.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/fileutil.h"
#include "util/log.h"
#include "vmm/config_json.h"
#include "vmm/disk_path.h"
#include "vmm/snapshot_job.h"
#include "vmm/vm_snapshot.h"
#include "snapshot/page_hash.h"
#include "vmm/vmm_internal.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

static void *vmm_gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	/* Instructions completed here may write what they map: counted as
	 * changed for the next snapshot (rare, so reads are counted too). */
	void *p = vm_gpa_to_hva(opaque, gpa, len);
	vm_dirty_mark(opaque, p, len);
	return p;
}

/* KVM's emulator refused an instruction (PVM hosts): complete it here. */
static int vmm_emul_fallback(struct vcpu *v)
{
	const struct guest_mem mem = {v->vm, vmm_gpa_to_hva};
	return pvm_complete_insn(v->fd, v->run, &mem, v->hook_data);
}

/* A breakpoint the fallback armed (PVM system-call fix-up, docs/pvm.md). */
static int vmm_debug_exit(struct vcpu *v)
{
	const struct guest_mem mem = {v->vm, vmm_gpa_to_hva};
	return pvm_handle_debug(v->fd, v->run, &mem, v->hook_data);
}

/* A vCPU's state came from a snapshot: the PVM fix-up's breakpoint is
 * per KVM vCPU, not part of the saved state, so arm it again now, before
 * the guest's first system call. */
static void vmm_state_loaded(struct vcpu *v)
{
	const struct guest_mem mem = {v->vm, vmm_gpa_to_hva};
	pvm_rearm(v->fd, &mem, v->hook_data);
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

/* Steps shared by boot and restore: event loop, signals, the KVM VM with
 * its memory (from RAM, or already mapped by the caller) and irqchip. */
static int vmm_build_vm(struct vmm *vmm, void *ram)
{
	const struct vm_config *cfg = &vmm->cfg;
	int r;
	if ((r = evloop_create(&vmm->loop)) < 0)
		return err_set(-r, "event loop");
	if ((r = vmm_setup_signals(vmm)) < 0 || (r = vm_create(&vmm->vm)) < 0)
		return r;
	struct vm *vm = vmm->vm;
	vm->loop = vmm->loop;
	vm->pvm = pvm_host_detect();
	if (vm->pvm)
		log_info("/dev/kvm is PVM (kvm_pvm loaded): guest kernel code is emulated by KVM; "
			 "PVM quirks %s (docs/pvm.md)",
			 cfg->pvm_quirks ? "on" : "off");
	if (vm->pvm && cfg->pvm_quirks) {
		if ((r = pvm_vm_init(vm->vm_fd)) < 0)
			return r;
		vm->emul_fallback = vmm_emul_fallback;
		vm->debug_exit = vmm_debug_exit;
		vm->state_loaded = vmm_state_loaded;
	}
	if (ram) {
		vm->ram = ram;
		vm->ram_size = cfg->mem_size;
		vm->ram_from_file = true;
		r = vm_mem_register(vm);
	} else {
		r = vm_mem_alloc(vm, cfg->mem_size);
	}
	if (r < 0 || (r = vm_create_irqchip(vm)) < 0)
		return r;
	return 0;
}

static int vmm_create_vcpus(struct vmm *vmm, const struct boot_entry *boot)
{
	struct vm *vm = vmm->vm;
	struct kvm_cpuid2 *cpuid;
	int r = x86_cpuid_supported(vm, &cpuid);
	if (r < 0)
		return r;
	for (int i = 0; i < vmm->cfg.ncpus && r >= 0; i++) {
		struct vcpu *v;
		if ((r = vcpu_create(vm, i, &v)) < 0)
			break;
		vm->vcpus[vm->ncpus++] = v;
		v->hook_data = &vmm->pvm_stats[i];
		if (!boot)
			continue; /* a restore sets everything from the snapshot */
		if ((r = x86_vcpu_set_cpuid(v, cpuid, vmm->cfg.ncpus, vm->pvm)) < 0 ||
		    (r = x86_vcpu_set_boot_msrs(v)) < 0 || (r = x86_vcpu_set_lapic_lvt(v)) < 0)
			break;
		if (i == 0)
			r = x86_vcpu_set_boot_regs(v, boot);
	}
	free(cpuid);
	return r;
}

/* Firmware tables first: the kernel and initrd go where they are not. */
static int vmm_load_guest(struct vmm *vmm, struct boot_entry *boot)
{
	struct vm *vm = vmm->vm;
	char *cmdline = vmm_cmdline(&vmm->cfg, &vmm->kernel, vm->pvm);
	if (!cmdline)
		return err_set(ENOMEM, "command line");
	log_debug("kernel command line: %s", cmdline);
	uint64_t rsdp = 0;
	struct mp_pci_irq irqs[32];
	unsigned nirq = pci_irq_table(vm, irqs, 32);
	int r;
	if ((r = x86_mptable_write(vm, vmm->cfg.ncpus, irqs, nirq)) == 0 &&
	    (r = x86_acpi_write(vm, vmm->cfg.ncpus, irqs, nirq,
				vmm->cfg.no_vmgenid ? 0 : VMGENID_ADDR, &rsdp)) == 0)
		r = x86_boot_load(vm, &vmm->kernel, vmm->cfg.initrd, cmdline, rsdp, boot);
	free(cmdline);
	return r;
}

static struct vmm *vmm_alloc(const struct vmm_opts *opts)
{
	struct vmm *vmm = calloc(1, sizeof(*vmm));
	if (!vmm) {
		err_set(ENOMEM, "VMM");
		return NULL;
	}
	vmm->sigfd = -1;
	if (opts)
		vmm->opts = *opts;
	return vmm;
}

/* The devices are built from what they need of the configuration, in
 * their own terms. */
static int vmm_init_devices(struct vmm *vmm)
{
	const struct vm_config *cfg = &vmm->cfg;
	struct virtio_blk_disk disks[VM_MAX_DISKS];
	for (int i = 0; i < cfg->ndisks; i++)
		disks[i] = (struct virtio_blk_disk){cfg->disks[i].path, cfg->disks[i].format,
						    cfg->disks[i].readonly, cfg->disks[i].serial};
	struct virtio_net_nic nics[VM_MAX_NICS];
	for (int i = 0; i < cfg->nnics; i++) {
		memcpy(nics[i].mac, cfg->nics[i].mac, 6);
		nics[i].backend = cfg->nics[i].backend;
		nics[i].legacy = cfg->nics[i].legacy;
	}
	const struct devices_config dc = {.console = {cfg->console_in, cfg->console_out},
					  .disks = disks,
					  .ndisks = cfg->ndisks,
					  .nics = nics,
					  .nnics = cfg->nnics,
					  .rng = !cfg->no_rng,
					  .vmgenid = !cfg->no_vmgenid};
	return devices_init(vmm->vm, &dc);
}

int vmm_create(const struct vm_config *cfg, const struct vmm_opts *opts, struct vmm **out)
{
	struct vmm *vmm = vmm_alloc(opts);
	if (!vmm)
		return -ENOMEM;
	struct boot_entry boot;
	int r;
	if ((r = vm_config_copy(&vmm->cfg, cfg)) < 0 ||
	    (r = kernel_image_open(cfg->kernel, &vmm->kernel)) < 0 ||
	    (r = vmm_build_vm(vmm, NULL)) < 0 || (r = vmm_init_devices(vmm)) < 0 ||
	    (r = vmm_load_guest(vmm, &boot)) < 0 || (r = vmm_create_vcpus(vmm, &boot)) < 0 ||
	    (r = x86_clock_ref_reset(vmm->vm)) < 0 || (r = vmm_control_open(vmm)) < 0) {
		vmm_destroy(vmm);
		return r;
	}
	kernel_image_close(&vmm->kernel);
	*out = vmm;
	return 0;
}

/* The chain of DIR's memory, checked against the state; mapped now in map
 * mode, every image verified on the way where asked (copy mode verifies
 * each chunk as it reads it, later). */
static int vmm_restore_memory(struct vmm *vmm, const char *dir, struct state_reader *r,
			      struct mem_chain **chain, void **ram)
{
	bool map = vmm->opts.restore_mode == RESTORE_MAP;
	int ret = vm_snapshot_open_memory(dir, r, vmm->cfg.mem_size, 0, chain);
	if (ret == 0 && map)
		ret = mem_chain_map(*chain, NULL,
				    vmm->opts.verify_memory ? MEM_CHAIN_VERIFY_BASE : 0, ram);
	return ret;
}

/* What lives outside the snapshot: the backends the NICs attach to.  The
 * NICs themselves (how many, their MACs) are the snapshot's hardware. */
static int vmm_override_nets(struct vm_config *cfg, const char *const *specs, int n)
{
	bool all_none = n == 1 && !strcmp(specs[0], "none");
	if (!all_none && n != cfg->nnics)
		return err_set(EINVAL,
			       "the snapshot has %d NIC%s: give as many --net options (or one "
			       "--net none)",
			       cfg->nnics, cfg->nnics == 1 ? "" : "s");
	for (int i = 0; i < cfg->nnics; i++) {
		const char *spec = all_none ? "none" : specs[i];
		struct net_spec ns;
		int r = net_spec_parse(spec, &ns);
		if (r < 0)
			return r;
		if (ns.has_mac && memcmp(ns.mac, cfg->nics[i].mac, 6)) {
			char mac[NET_MAC_TEXT];
			net_mac_format(cfg->nics[i].mac, mac);
			return err_set(EINVAL, "--net %s: NIC %d's MAC address is the snapshot's %s",
				       spec, i, mac);
		}
		if ((r = vm_config_set_nic_backend(cfg, i, spec)) < 0)
			return r;
	}
	return 0;
}

int vmm_restore(const char *dir, const struct vmm_opts *opts, struct vmm **out)
{
	struct vmm *vmm = vmm_alloc(opts);
	if (!vmm)
		return -ENOMEM;
	struct state_reader *r = NULL;
	struct mem_chain *chain = NULL;
	void *ram = NULL;
	/* Everything is checked before KVM is touched. */
	int ret = vm_snapshot_open(dir, &r, &vmm->cfg);
	if (ret == 0 && opts->ndisk_paths)
		ret = disk_path_apply(&vmm->cfg, opts->disk_paths, opts->ndisk_paths, dir);
	if (ret == 0 && opts->disk_layers)
		ret = vmm_override_disks(&vmm->cfg, opts->disk_layers, opts->ndisk_layers, dir);
	if (ret == 0)
		ret = vmm_check_disk_sizes(&vmm->cfg, dir);
	if (ret == 0 && opts->nnet_backends)
		ret = vmm_override_nets(&vmm->cfg, opts->net_backends, opts->nnet_backends);
	/* The console is this process's, not the snapshot's. */
	vmm->cfg.console_in = STDIN_FILENO;
	vmm->cfg.console_out = STDOUT_FILENO;
	if (ret == 0)
		ret = vmm_restore_memory(vmm, dir, r, &chain, &ram);
	bool overlays = false;
	if (ret == 0)
		overlays = (ret = vmm_new_overlays(&vmm->cfg, vmm->opts.disk_dir)) == 0;
	if (ret == 0 && (ret = vmm_build_vm(vmm, ram)) < 0 && ram && (!vmm->vm || !vmm->vm->ram)) {
		munmap(ram, vmm->cfg.mem_size);
		ram = NULL;
	}
	if (ret == 0 && opts->restore_mode == RESTORE_COPY)
		ret = mem_chain_load(chain, vmm->vm->ram);
	if (ret == 0)
		vmm_memory_is_snapshot(vmm, dir, &mem_layer_info(mem_chain_layer(chain, 0))->id,
				       mem_chain_length(chain) - 1);
	if (ret == 0 && (ret = vmm_init_devices(vmm)) == 0 &&
	    (ret = vmm_create_vcpus(vmm, NULL)) == 0 &&
	    (ret = vm_snapshot_restore(vmm->vm, r)) == 0)
		ret = vmm_control_open(vmm);
	mem_chain_close(chain);
	if (r)
		state_reader_close(r);
	if (ret < 0) {
		/* the overlays go after the devices have closed them */
		struct vm_config made = {0};
		if (overlays)
			vm_config_copy(&made, &vmm->cfg);
		vmm_destroy(vmm);
		vmm_drop_overlays(&made);
		vm_config_free(&made);
		return err_prefix(ret, "restoring %s", dir);
	}
	*out = vmm;
	return 0;
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
	/* -vv: where each vCPU stopped, for guests that hang. */
	for (int i = 0; log_get_level() >= LOG_DEBUG && i < vm->ncpus; i++) {
		char regs[1024];
		struct kvm_mp_state mp = {0};
		ioctl(vm->vcpus[i]->fd, KVM_GET_MP_STATE, &mp);
		struct kvm_lapic_state l;
		uint32_t lvtt = 0, tmict = 0, tmcct = 0, irr1 = 0, isr1 = 0;
		if (ioctl(vm->vcpus[i]->fd, KVM_GET_LAPIC, &l) == 0) {
			memcpy(&lvtt, &l.regs[0x320], 4);
			memcpy(&tmict, &l.regs[0x380], 4);
			memcpy(&tmcct, &l.regs[0x390], 4);
			memcpy(&irr1, &l.regs[0x210], 4);
			memcpy(&isr1, &l.regs[0x110], 4);
		}
		vcpu_dump_regs(vm->vcpus[i], regs, sizeof(regs));
		log_debug("mp_state %u, LAPIC timer lvt %#x initial %u current %u, irr[1] %#x "
			  "isr[1] %#x; %s",
			  mp.mp_state, lvtt, tmict, tmcct, irr1, isr1, regs);
	}
	struct pvm_stats total = {0};
	for (int i = 0; i < vm->ncpus; i++)
		pvm_stats_add(&total, &vmm->pvm_stats[i]);
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
	snapshot_job_finish(vmm);
	if (vmm->ctl)
		control_close(vmm->ctl);
	if (vmm->vm) {
		devices_destroy(vmm->vm);
		vm_destroy(vmm->vm);
	}
	evloop_destroy(vmm->loop);
	if (vmm->sigfd >= 0)
		close(vmm->sigfd);
	kernel_image_close(&vmm->kernel);
	vm_config_free(&vmm->cfg);
	free(vmm->mem_changed);
	page_hash_free(vmm->mem_hash);
	page_hash_free(vmm->mem_hash_next);
	free(vmm);
}
