/* Revert a running VM in place to a whole-machine snapshot: memory is
 * mapped from the snapshot's image over the same host addresses, disks
 * move to new overlays on the snapshot's frozen layers, then VM, device
 * and vCPU state are loaded.  Everything that can fail is checked before
 * the VM is touched. */
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

/* Revert to the snapshot in DIR; new overlays go into DISK_DIR (NULL:
 * beside each frozen layer); VERIFY reads and checks all of memory first. */
int revert_run(struct vmm *vmm, const char *dir, const char *disk_dir, bool verify,
	       struct revert_result *res);

#endif
