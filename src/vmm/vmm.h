/* The builder: turns a vm_config into a running machine in one readable
 * sequence (memory, devices, kernel, firmware tables, vCPUs) — or, for a
 * restore, the same sequence with a snapshot's state instead of a boot —
 * then runs it until it ends. */
#ifndef CAIRN_VMM_VMM_H
#define CAIRN_VMM_VMM_H

#include "vmm/config.h"

#include <stdbool.h>

struct vmm;
struct disk_path_override;

enum restore_mode {
	RESTORE_MAP,  /* map memory.img copy-on-write: run at once, load on touch */
	RESTORE_COPY, /* read all of memory.img first */
};

struct vmm_opts {
	const char *control; /* control socket path, or NULL */
	enum restore_mode restore_mode;
	bool verify_memory; /* check every memory chunk before the guest runs */
	const char
	    *disk_dir; /* where a restore puts new disk overlays (NULL: beside the frozen layer) */
	/* A restore's frozen disk layers, in disk order, instead of the paths
	 * the snapshot recorded (its owner moved them: a relocated bundle);
	 * NULL: as recorded. */
	const char *const *disk_layers;
	int ndisk_layers;
	/* A restore's disks recorded at one path opened at another
	 * (vmm/disk_path.h: --disk-path OLD=NEW); NULL: none. */
	const struct disk_path_override *disk_paths;
	int ndisk_paths;
	/* A restore's NIC backends (net/net.h specs), one per NIC of the
	 * snapshot, or a single "none" for all; NULL: as recorded. */
	const char *const *net_backends;
	int nnet_backends;
};

int vmm_create(const struct vm_config *cfg, const struct vmm_opts *opts, struct vmm **out);
/* A new VM from the snapshot in DIR: it goes on where the snapshot was
 * taken, on new overlays over the snapshot's frozen disk layers. */
int vmm_restore(const char *dir, const struct vmm_opts *opts, struct vmm **out);
/* The layer each disk of the VM writes to now (a booted VM: its disks; a
 * restored one: the overlays the restore made, read-only disks their
 * frozen layer), in configuration order; PATHS stay valid until the VM's
 * disks change.  Returns how many. */
int vmm_disk_layers(const struct vmm *vmm, const char **paths, int max);
/* Run until the guest resets or exits, or the host quits it.  Returns the
 * process exit status (debug-exit code, 0 on reset/quit) or -errno with
 * the error message set (KVM or VMM failure). */
int vmm_run(struct vmm *vmm);
void vmm_destroy(struct vmm *vmm);

#endif
