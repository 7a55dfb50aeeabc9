/* The VM's disks as restores and reverts see them: the snapshot's layers
 * where they are now, their sizes against the snapshot's, the new overlays
 * a restore writes to (named by snapshot/snapdir.h) and their removal
 * when it fails, and the devices that hold the disks. */
#include "devices/device.h"
#include "disk/block.h"
#include "disk/qcow2.h"
#include "kvm/vm.h"
#include "snapshot/snapdir.h"
#include "util/err.h"
#include "util/log.h"
#include "vmm/vmm_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int vmm_override_disks(struct vm_config *cfg, const char *const *paths, int n, const char *dir)
{
	if (n != cfg->ndisks)
		return err_set(EINVAL, "%s: the snapshot has %d disks, %d layers were given", dir,
			       cfg->ndisks, n);
	for (int i = 0; i < n; i++) {
		char *p = strdup(paths[i]);
		if (!p)
			return err_set(ENOMEM, "%s", dir);
		free(cfg->disks[i].path);
		cfg->disks[i].path = p;
	}
	return 0;
}

int vmm_check_disk_sizes(const struct vm_config *cfg, const char *dir)
{
	for (int i = 0; i < cfg->ndisks; i++) {
		const struct disk_config *d = &cfg->disks[i];
		if (!d->size)
			continue; /* a snapshot of an older cairn: not recorded */
		struct block_dev *bd;
		int r = block_open(d->path, d->format,
				   BLOCK_RDONLY | BLOCK_NO_BACKING | BLOCK_FORCE_SHARE, &bd);
		if (r < 0)
			return r;
		uint64_t size = bd->size;
		block_close(bd);
		if (size != d->size)
			return err_set(EINVAL,
				       "%s: disk %d (%s) is %llu bytes, the snapshot was taken "
				       "with %llu",
				       dir, i, d->path, (unsigned long long)size,
				       (unsigned long long)d->size);
	}
	return 0;
}

/* Remove the restore overlays of the first N disks of CFG (their paths
 * name them once vmm_new_overlays has run over them). */
static void drop_overlays(const struct vm_config *cfg, int n)
{
	for (int i = 0; i < n; i++)
		if (!cfg->disks[i].readonly && unlink(cfg->disks[i].path) == 0)
			log_info("disk %d: removed %s (the restore did not happen)", i,
				 cfg->disks[i].path);
}

void vmm_drop_overlays(const struct vm_config *cfg)
{
	drop_overlays(cfg, cfg->ndisks);
}

int vmm_new_overlays(struct vm_config *cfg, const char *disk_dir)
{
	for (int i = 0; i < cfg->ndisks; i++) {
		struct disk_config *d = &cfg->disks[i];
		if (d->readonly)
			continue;
		char path[PATH_MAX];
		int r = snapdir_restore_overlay_path(d->path, disk_dir, path, sizeof(path));
		if (r == 0)
			r = qcow2_create_overlay(path, d->path, "qcow2");
		if (r < 0) {
			drop_overlays(cfg, i);
			return err_prefix(r, "disk %d: new overlay for the restore", i);
		}
		log_info("disk %d: restored VM writes to %s (over %s)", i, path, d->path);
		free(d->path);
		free(d->format);
		d->path = strdup(path);
		d->format = strdup("qcow2");
	}
	return 0;
}

unsigned vmm_disk_devices(struct vmm *vmm, struct device **out, unsigned max)
{
	unsigned n = 0;
	for (struct device *d = vmm->vm->devices; d && n < max; d = d->next)
		if (d->ops->get_block)
			out[n++] = d;
	return n;
}

int vmm_disk_layers(const struct vmm *vmm, const char **paths, int max)
{
	int n = 0;
	for (; n < vmm->cfg.ndisks && n < max; n++)
		paths[n] = vmm->cfg.disks[n].path;
	return n;
}
