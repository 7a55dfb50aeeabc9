/* Disk paths overridden at a restore (`cairn run --restore DIR --disk-path
 * OLD=NEW`): a snapshot names its disks' frozen layers by path; when the
 * files were moved, the disk recorded at OLD is opened at NEW, after the
 * checks a start makes: NEW is a qcow2 image (a writable disk's frozen
 * layer always is), marked frozen by this snapshot (the mark follows the
 * file through mv or cp -a: another snapshot's layer, or a copy that lost
 * the mark, is refused), and of the recorded virtual size
 * (vmm_check_disk_sizes). */
#ifndef CAIRN_VMM_DISK_PATH_H
#define CAIRN_VMM_DISK_PATH_H

#include "vmm/config.h"

#include <limits.h>

struct disk_path_override {
	char old_path[PATH_MAX];
	const char *new_path;
};

/* "OLD=NEW" (both non-empty) into *OUT (NEW pointing into ARG); -EINVAL
 * with a message otherwise. */
int disk_path_parse(const char *arg, struct disk_path_override *out);
/* Each OLD of P (N of them) names a disk of the snapshot in DIR: 0; 1
 * with a message naming the first that does not (and the disks there
 * are); -errno when the snapshot cannot be read. */
int disk_path_check_snapshot(const char *dir, const struct disk_path_override *p, int n);
/* Point CFG's disks (read from the snapshot DIR) at the NEW paths, each
 * checked as above but for its size. */
int disk_path_apply(struct vm_config *cfg, const struct disk_path_override *p, int n,
		    const char *dir);

#endif
