/* Freezing a running VM's disks for a snapshot: each writable disk's
 * active layer becomes read-only and the VM goes on in a new overlay on
 * it (named by snapshot/snapdir.h).  The overlay files are made before the
 * pause, swapped in after the capture, and undone if the snapshot fails. */
#ifndef CAIRN_VMM_DISK_FREEZE_H
#define CAIRN_VMM_DISK_FREEZE_H

#include "vmm/config.h"

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

struct vmm;
struct device;
struct block_dev;

struct disk_freeze {
	struct device *dev;
	struct block_dev *old, *new;
	mode_t mode;	 /* the frozen layer's, before it was made read-only */
	bool frozen_now; /* the disk is on its overlay (apply done, not undone) */
	char frozen[PATH_MAX], overlay[PATH_MAX];
	char snapdir[PATH_MAX]; /* the snapshot that freezes it (its frozen mark) */
};

struct disk_freeze_set {
	struct disk_freeze d[VM_MAX_DISKS];
	unsigned n;
};

/* VM running: list the VM's disks and create the overlay each writable
 * one will continue in once snapshot SNAPDIR freezes it.  Refused (no
 * file left) when a writable disk is not qcow2. */
int disk_freeze_prepare(struct vmm *vmm, struct disk_freeze_set *s, const char *snapdir);
/* Remove the overlay files prepare made (before apply). */
void disk_freeze_unprepare(struct disk_freeze_set *s);
/* VM paused, or no disk request served meanwhile: flush each writable disk
 * and put its overlay on top; the VM's configuration follows.  All or
 * none: on failure the disks stay as they were and no overlay is left. */
int disk_freeze_apply(struct vmm *vmm, struct disk_freeze_set *s);
/* The snapshot failed after apply: commit each overlay's writes back into
 * its frozen layer, which becomes the active layer again, and drop the
 * overlay.  A disk where that fails stays on its overlay (an extra layer,
 * nothing lost).  Returns how many stayed. */
int disk_freeze_undo(struct vmm *vmm, struct disk_freeze_set *s, bool vm_paused);

#endif
