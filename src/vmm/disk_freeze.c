#include "vmm/disk_freeze.h"
#include "devices/device.h"
#include "disk/block.h"
#include "disk/chain.h"
#include "disk/image_lock.h"
#include "disk/qcow2.h"
#include "kvm/vm.h"
#include "snapshot/snapdir.h"
#include "util/err.h"
#include "util/log.h"
#include "vmm/vmm_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void disk_freeze_unprepare(struct disk_freeze_set *s)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->d[i].overlay[0]) {
			unlink(s->d[i].overlay);
			s->d[i].overlay[0] = 0;
		}
}

/* An empty overlay only names its backing file: creating it before the
 * pause keeps the files' fsyncs out of it; it is opened (reading the
 * backing layer's metadata) in apply. */
int disk_freeze_prepare(struct vmm *vmm, struct disk_freeze_set *s, const char *snapdir)
{
	struct device *devs[VM_MAX_DISKS];
	s->n = vmm_disk_devices(vmm, devs, VM_MAX_DISKS);
	for (unsigned i = 0; i < s->n; i++)
		s->d[i] = (struct disk_freeze){.dev = devs[i]};
	for (unsigned i = 0; i < s->n; i++)
		snprintf(s->d[i].snapdir, sizeof(s->d[i].snapdir), "%s", snapdir);
	int r = 0;
	for (unsigned i = 0; r == 0 && i < s->n; i++) {
		struct disk_freeze *d = &s->d[i];
		struct block_dev *bd = d->dev->ops->get_block(d->dev->priv);
		d->old = bd;
		if (bd->readonly)
			continue;
		struct stat st;
		if (strcmp(bd->format, "qcow2"))
			r = err_set(ENOTSUP,
				    "%s: a %s disk cannot be snapshotted with the "
				    "machine; convert it first (cairn img convert -O qcow2)",
				    bd->path, bd->format);
		else if (!realpath(bd->path, d->frozen) || stat(d->frozen, &st) < 0)
			r = err_set(errno, "%s", bd->path);
		else {
			d->mode = st.st_mode & 07777;
			r = snapdir_overlay_path(d->frozen, snapdir, d->overlay,
						 sizeof(d->overlay));
			if (r == 0)
				r = qcow2_create_overlay(d->overlay, d->frozen, "qcow2");
			if (r < 0)
				d->overlay[0] = 0;
		}
	}
	if (r < 0)
		disk_freeze_unprepare(s);
	return r;
}

int disk_freeze_apply(struct vmm *vmm, struct disk_freeze_set *s)
{
	unsigned done = 0;
	int r = 0;
	for (; done < s->n; done++) {
		struct disk_freeze *d = &s->d[done];
		if (d->old->readonly)
			continue;
		if ((r = block_flush(d->old)) < 0)
			break;
		/* The old layer becomes a reader, so the overlay's chain may read
		 * it too (a writer refuses other readers' refusal of writes). */
		if ((r = block_relock(d->old, false)) < 0)
			break;
		if ((r = block_open(d->overlay, "qcow2", 0, &d->new)) < 0) {
			block_relock(d->old, true);
			break;
		}
		d->dev->ops->set_block(d->dev->priv, d->new);
	}
	if (r < 0) {
		while (done--) {
			struct disk_freeze *d = &s->d[done];
			if (!d->new)
				continue;
			d->dev->ops->set_block(d->dev->priv, d->old);
			block_close(d->new);
			d->new = NULL;
			block_relock(d->old, true);
		}
		disk_freeze_unprepare(s);
		return r;
	}
	for (unsigned i = 0; i < s->n; i++) {
		struct disk_freeze *d = &s->d[i];
		if (!d->new)
			continue;
		block_close(d->old);
		/* frozen layers stay as they are: read-only, and marked so that
		 * even root's writable open is refused */
		chmod(d->frozen, 0444);
		if (image_frozen_mark(d->frozen, d->snapdir) < 0)
			log_warn("%s", err_msg());
		free(vmm->cfg.disks[i].path);
		vmm->cfg.disks[i].path = strdup(d->overlay);
		d->frozen_now = true;
	}
	return 0;
}

/* Whether OV holds nothing of its own: the guest wrote nothing to it. */
static int overlay_is_empty(struct block_dev *ov, bool *empty)
{
	*empty = true;
	for (uint64_t off = 0, n; off < ov->size && *empty; off += n) {
		unsigned st;
		uint64_t host;
		int r = block_status(ov, off, ov->size - off, &n, &st, &host);
		if (r < 0)
			return r;
		*empty = !(st & BLOCK_STATUS_ALLOCATED);
	}
	return 0;
}

/* Disk I back on its frozen layer; 0, or the error that keeps it on its
 * overlay.  The overlay is closed first: its chain reads the frozen layer,
 * which the commit and the new writer must open for writing. */
static int unfreeze_one(struct vmm *vmm, struct device *dev, struct disk_freeze *d, unsigned i)
{
	const char *overlay = vmm->cfg.disks[i].path;
	struct block_dev *ov = dev->ops->get_block(dev->priv), *back = NULL;
	bool empty = false;
	int r = block_flush(ov);
	if (r == 0)
		r = overlay_is_empty(ov, &empty);
	if (r < 0)
		return r;
	block_close(ov);
	if (chmod(d->frozen, d->mode) < 0)
		r = err_set(errno, "%s", d->frozen);
	if (r == 0)
		r = image_frozen_clear(d->frozen);
	/* An empty overlay has nothing to merge: dropping it needs no room,
	 * where a commit writes (on a full file system it would fail). */
	if (r == 0 && !empty)
		r = chain_commit(overlay, NULL, 0, NULL);
	if (r == 0)
		r = block_open(d->frozen, "qcow2", 0, &back);
	if (r < 0) {
		log_warn("disk %u stays on %s over %s: %s", i, overlay, d->frozen, err_msg());
		chmod(d->frozen, 0444);
		image_frozen_mark(d->frozen, d->snapdir);
		if (block_open(overlay, "qcow2", 0, &ov) < 0) {
			/* nothing to run on: the VM cannot go on with this disk */
			vm_request_exit(vmm->vm, VM_EXIT_ERROR, 1, err_msg());
			return r;
		}
		dev->ops->set_block(dev->priv, ov);
		return r;
	}
	dev->ops->set_block(dev->priv, back);
	unlink(overlay);
	free(vmm->cfg.disks[i].path);
	vmm->cfg.disks[i].path = strdup(d->frozen);
	d->frozen_now = false;
	return 0;
}

int disk_freeze_undo(struct vmm *vmm, struct disk_freeze_set *s, bool vm_paused)
{
	struct device *devs[VM_MAX_DISKS];
	unsigned n = vmm_disk_devices(vmm, devs, VM_MAX_DISKS);
	bool was_paused = vm_paused || vmm->paused;
	int stayed = 0;
	if (!was_paused)
		vm_pause(vmm->vm);
	for (unsigned i = 0; i < n && i < s->n && (int)i < vmm->cfg.ndisks; i++)
		if (s->d[i].frozen_now && unfreeze_one(vmm, devs[i], &s->d[i], i) < 0)
			stayed++;
	if (!was_paused)
		vm_resume(vmm->vm);
	return stayed;
}
