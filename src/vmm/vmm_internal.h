/* What the builder (vmm.c) and the control commands (vmm_control.c)
 * share. */
#ifndef CAIRN_VMM_VMM_INTERNAL_H
#define CAIRN_VMM_VMM_INTERNAL_H

#include "arch/x86/boot.h"
#include "arch/x86/pvm.h"
#include "kvm/vm.h"
#include "vmm/config.h"
#include "vmm/vmm.h"

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct evloop;
struct control_server;
struct snap_job;

struct vmm {
	struct vm *vm;
	struct evloop *loop;
	int sigfd;
	struct kernel_image kernel;
	struct vm_config cfg; /* current: disk paths name the active layers */
	struct vmm_opts opts;
	struct control_server *ctl;
	bool paused;
	unsigned snapshots;
	struct snap_job *snap_job; /* a snapshot being written, or NULL */
	/* Per vCPU (each one's hook_data): PVM fallback completions. */
	struct pvm_stats pvm_stats[VM_MAX_VCPUS];
};

/* Open the control socket (opts.control) with the VM's commands. */
int vmm_control_open(struct vmm *vmm);
/* Before the VM is torn down: wait for a snapshot writer thread. */
void vmm_control_finish(struct vmm *vmm);

/* A restore never writes to a snapshot's layers: give each writable disk
 * of CFG a new, empty overlay on its frozen layer (in DISK_DIR, or beside
 * the layer), and point CFG at it. */
int vmm_new_overlays(struct vm_config *cfg, const char *disk_dir);

#endif
