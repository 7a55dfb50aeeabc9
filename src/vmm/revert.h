/* Revert a running VM in place to a whole-machine snapshot: memory is
 * mapped from the snapshot's image over the same host addresses, disks
 * move to new overlays on the snapshot's frozen layers, then VM, device
 * and vCPU state are loaded.  Everything that can be checked is, before
 * the VM is touched (configuration, disk sizes, every record, memory);
 * the state is then applied in the pause with a capture of the VM to put
 * back if a record still fails, so a refused revert leaves the VM as it
 * was. */
#ifndef CAIRN_VMM_REVERT_H
#define CAIRN_VMM_REVERT_H

#include "vmm/config.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

struct vmm;

struct revert_result {
	uint64_t check_us, pause_us;
	/* the new overlays the VM writes to, one per writable disk */
	unsigned noverlays;
	char overlays[VM_MAX_DISKS][PATH_MAX];
};

struct revert_opts {
	const char *disk_dir; /* new overlays go here (NULL: beside each frozen layer) */
	bool verify;	      /* read and check all of memory first */
	/* the snapshot's frozen layers, when not where it recorded them */
	const char *const *disk_layers;
	int ndisk_layers;
};

/* Revert to the snapshot in DIR. */
int revert_run(struct vmm *vmm, const char *dir, const struct revert_opts *o,
	       struct revert_result *res);

#endif
