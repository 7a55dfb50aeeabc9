/* snapshot revert: stopped, in place (running, whole machine), or by a
 * restart of the VM; and the settling of an interrupted in-place revert. */
#include "manager/mgr_internal.h"
#include "snapshot/snapdir.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Stopped VM: the active state becomes snapshot SID's (a new empty layer
 * on its frozen layers; its memory is resumed by the next run).  SAVE:
 * first a disk-only snapshot of that name takes the active layers as they
 * are, in the same vm.json update as the revert: both happen or neither
 * (a failed revert --save-current leaves no snapshot behind, so that the
 * same command can be run again). */
static int revert_stopped(struct bundle *b, const char *sid, const char *save, json_t *report)
{
	struct bundle_snapshot *s = bundle_snap(b, sid), *saved = NULL;
	struct bundle_layers old_act = {0}, nact = {0};
	bool mem = s->memory;
	char save_id[9] = "", sd[PATH_MAX];
	if (save && b->resume) {
		struct bundle_snapshot *rs = bundle_snap(b, b->resume);
		return err_set(EINVAL,
			       "%s: the VM is suspended: its state is already snapshot \"%s\"",
			       b->dir, rs ? rs->name : "?");
	}
	int r = bundle_layers_copy(&old_act, &b->active);
	for (int i = 0; !mem && i < s->layers.n && r == 0; i++) {
		char p[PATH_MAX];
		r = mgr_new_layer(b, s->layers.path[i], p, sizeof(p));
		if (r == 0)
			r = bundle_layers_add(&nact, p);
	}
	if (r == 0 && save) {
		char created[32];
		bundle_random_hex(save_id, 8);
		mgr_now_iso(created, sizeof(created));
		saved =
		    bundle_snap_new(save_id, save, b->current, created, "saved before a revert");
		r = !saved ? -ENOMEM : bundle_layers_copy(&saved->layers, &old_act);
		if (r == 0 && (r = bundle_snap_add(b, saved)) == 0)
			saved = NULL; /* the bundle's now */
	}
	if (r == 0) {
		bundle_set_str(&b->current, sid);
		bundle_set_str(&b->resume, mem ? sid : NULL);
		b->has_active = !mem;
		bundle_layers_copy(&b->active, &nact);
		r = bundle_save(b);
	}
	if (r < 0)
		bundle_reload(b); /* the model as vm.json still has it */
	bundle_snap_free(saved);
	if (r == 0 && save) {
		/* the old active layers are the saved snapshot's now */
		mgr_snap_dir(b, save_id, sd, sizeof(sd));
		mgr_set_frozen(&old_act, sd);
	} else {
		mgr_unlink_layers(b, r == 0 ? &old_act : &nact);
	}
	bundle_layers_free(&old_act);
	bundle_layers_free(&nact);
	if (r == 0 && report) {
		s = bundle_snap(b, sid);
		json_object_set_new(report, "reverted_to", json_string(s->name));
		json_object_set_new(report, "memory", json_boolean(mem));
		if (save)
			json_object_set_new(report, "saved", json_string(save));
	}
	return r;
}

/* A layer vm.json names (an active layer, or one a snapshot froze): an
 * overlay an earlier restore made, not the one the interrupted revert did. */
static bool named_by_bundle(const char *path, void *opaque)
{
	const struct bundle *b = opaque;
	for (int i = 0; b->has_active && i < b->active.n; i++)
		if (mgr_streq(b->active.path[i], path))
			return true;
	for (size_t k = 0; k < b->nsnaps; k++)
		for (int i = 0; i < b->snaps[k]->layers.n; i++)
			if (mgr_streq(b->snaps[k]->layers.path[i], path))
				return true;
	return false;
}

/* Record the outcome of a revert of the running VM (pending "revert"):
 * when the VM's disks are no longer the recorded active layers it has
 * reverted, and they become the active layers.  Returns 1 when it had. */
int mgr_revert_settle(struct bundle *b, bool running)
{
	struct bundle_pending *p = b->pending;
	char id[32];
	snprintf(id, sizeof(id), "%s", p->id ? p->id : "(null)");
	struct bundle_layers now = {0};
	bool known = true;
	if (running) {
		int r = mgr_running_disks(b, &now);
		/* no answer is no "not moved": the pending record stays, unless
		 * the VM ended meanwhile (killed after it reverted, say) */
		if (r < 0 && !mgr_vm_ended(b))
			return err_prefix(r, "%s: cannot ask the running VM where it writes",
					  b->dir);
		if (r < 0) {
			err_clear();
			bundle_layers_free(&now);
			running = false;
		}
	}
	if (!running) {
		/* the VM ended: the restore overlays it made, if any: made after
		 * the revert was recorded (vm.json written), named by nothing */
		struct bundle_snapshot *s = bundle_snap(b, id);
		char disks[PATH_MAX], ov[PATH_MAX], vj[PATH_MAX];
		bundle_path(b, disks, sizeof(disks), "disks");
		bundle_path(b, vj, sizeof(vj), "vm.json");
		struct stat st;
		known = stat(vj, &st) == 0;
		for (int i = 0; known && s && i < s->layers.n; i++)
			if (snapdir_find_restore_overlay(s->layers.path[i], disks, &st.st_mtim,
							 named_by_bundle, b, ov, sizeof(ov)) == 0)
				bundle_layers_add(&now, ov);
		err_clear();
	}
	struct bundle_layers old = p->active;
	p->active = (struct bundle_layers){0};
	bool moved = now.n == old.n && !bundle_layers_equal(&now, &old);
	if (moved) {
		bundle_layers_copy(&b->active, &now);
		b->has_active = true;
		bundle_set_str(&b->current, id);
		bundle_set_str(&b->resume, NULL);
	}
	bundle_pending_free(b->pending);
	b->pending = NULL;
	int r = bundle_save(b);
	if (r == 0 && moved)
		mgr_unlink_layers(b, &old);
	bundle_layers_free(&now);
	bundle_layers_free(&old);
	return r < 0 ? r : moved;
}

/* Running VM, whole-machine snapshot: the VM loads it in place (control
 * command "revert", new overlays in disks/).  -ENOSYS: the VMM has no
 * such command. */
static int revert_in_place(struct bundle *b, const char *sid, json_t *report)
{
	char sd[PATH_MAX], disks[PATH_MAX];
	mgr_snap_dir(b, sid, sd, sizeof(sd));
	bundle_path(b, disks, sizeof(disks), "disks");
	struct bundle_pending *p = calloc(1, sizeof(*p));
	if (!p || bundle_set_str(&p->op, "revert") < 0 || bundle_set_str(&p->id, sid) < 0 ||
	    bundle_layers_copy(&p->active, &b->active) < 0) {
		bundle_pending_free(p);
		return err_set(ENOMEM, "%s", b->dir);
	}
	b->pending = p;
	int r = bundle_save(b);
	if (r < 0)
		return r;
	json_t *req = json_pack("{s:s, s:s, s:s, s:o}", "cmd", "revert", "path", sd, "disk_dir",
				disks, "disks", mgr_layers_json(&bundle_snap(b, sid)->layers));
	r = mgr_ctl_request(b, req, NULL);
	json_decref(req);
	char msg[ERR_MSG_MAX];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	int moved = mgr_revert_settle(b, bundle_running(b->dir, NULL));
	if (moved < 0)
		return mgr_pending_failed(b, r, msg, moved, "revert");
	if (r < 0) {
		if (r != -ENOSYS)
			err_set(0, "%s", msg);
		return r;
	}
	if (!moved)
		return err_set(EIO, "%s: the VM reverted but its disks did not move", b->dir);
	if (report) {
		json_object_set_new(report, "reverted_to", json_string(bundle_snap(b, sid)->name));
		json_object_set_new(report, "memory", json_true());
		json_object_set_new(report, "in_place", json_true());
	}
	return 0;
}

int mgr_snapshot_revert(const char *name, const char *snap, const char *save_current,
			const struct mgr_progress *pr, json_t *report)
{
	struct bundle *b;
	struct bundle_snapshot *target;
	int r = mgr_open_write_snap(name, "cairn snapshot revert", snap, &b, &target);
	if (r < 0)
		return r;
	char *id = strdup(target->id);
	bool running = bundle_running(b->dir, NULL), saved = false;
	if (save_current) {
		if (!mgr_valid_name(save_current) || bundle_snap_by_name(b, save_current)) {
			r = err_set(EINVAL, "--save-current \"%s\": not a new snapshot name",
				    save_current);
			goto out_id;
		}
		err_clear();
	}
	if (!running) {
		/* the save and the revert in one vm.json update */
		r = revert_stopped(b, id, save_current, report);
		goto out_id;
	}
	if (save_current) {
		/* the VM saves its own state; a revert that fails after it leaves
		 * the VM going on from that state, which stays saved */
		r = mgr_snapshot_running(b, save_current, "saved before a revert", false,
					 0, pr, NULL);
		if (r < 0)
			goto out_id;
		saved = true;
	}
	if (bundle_snap(b, id)->memory) {
		r = revert_in_place(b, id, report);
		if (r != -ENOSYS)
			goto out_id;
		err_clear();
	}
	/* A disk-only snapshot (or a VMM without "revert"): the VM ends, and
	 * starts again from the snapshot (its memory if it has any, else a
	 * boot on its disk). */
	json_t *req = json_pack("{s:s}", "cmd", "quit");
	r = mgr_ctl_request(b, req, NULL);
	json_decref(req);
	if (r == 0)
		r = mgr_wait_stopped(b, 60);
	if (r < 0)
		goto out_id;
	r = revert_stopped(b, id, NULL, report);
	if (r == 0) {
		close(b->lock_fd);
		b->lock_fd = -1;
		r = mgr_run(name, true);
		if (report)
			json_object_set_new(report, "restarted", json_boolean(r == 0));
	}
out_id:
	if (r < 0 && saved) {
		/* half of the command was done: say so (a retry would find S2) */
		err_set(r,
			"%s; the present state had been saved as snapshot \"%s\" before the "
			"revert failed, and stays ('cairn snapshot revert %s %s' tries again)",
			err_msg(), save_current, name, snap);
	}
	free(id);
	bundle_close(b);
	return r;
}
