/* snapshot revert: stopped, in place (running, whole machine), or by a
 * restart of the VM; and the settling of an interrupted in-place revert. */
#include "manager/mgr_internal.h"
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
 * on its frozen layers; its memory is resumed by the next run). */
static int revert_stopped(struct bundle *b, const char *sid, json_t *report)
{
	json_t *s = bundle_snap(b, sid);
	json_t *old_act = json_incref(mgr_active_layers(b));
	json_t *nact = json_array();
	bool mem = json_is_true(json_object_get(s, "memory"));
	int r = 0;
	json_t *layers = mgr_jarr(s, "layers");
	for (size_t i = 0; !mem && i < json_array_size(layers) && r == 0; i++) {
		char p[PATH_MAX];
		r = mgr_new_layer(b, mgr_jstr_at(layers, i), p, sizeof(p));
		if (r == 0)
			json_array_append_new(nact, json_string(p));
	}
	if (r == 0) {
		json_t *old = json_copy(b->doc);
		json_object_set_new(b->doc, "current", json_string(sid));
		json_object_set_new(b->doc, "resume", mem ? json_string(sid) : json_null());
		json_object_set(b->doc, "active", mem ? json_null() : nact);
		r = bundle_save(b);
		if (r < 0) {
			json_decref(b->doc);
			b->doc = old;
		} else {
			json_decref(old);
		}
	}
	json_t *gone = r == 0 ? old_act : nact;
	for (size_t i = 0; i < json_array_size(gone); i++)
		mgr_unlink_own(b, mgr_jstr_at(gone, i));
	json_decref(old_act);
	json_decref(nact);
	if (r == 0 && report) {
		json_object_set_new(report, "reverted_to", json_string(bundle_str(s, "name")));
		json_object_set_new(report, "memory", json_boolean(mem));
	}
	return r;
}

/* Record the outcome of a revert of the running VM (pending "revert"):
 * when the VM's disks are no longer the recorded active layers it has
 * reverted, and they become the active layers.  Returns 1 when it had. */
int mgr_revert_settle(struct bundle *b, bool running)
{
	json_t *p = json_incref(json_object_get(b->doc, "pending"));
	char id[32];
	snprintf(id, sizeof(id), "%s", bundle_str(p, "id"));
	json_t *old = json_object_get(p, "active"), *now = NULL;
	if (running) {
		now = mgr_running_disks(b);
	} else {
		/* the VM ended: its revert overlays are <frozen>-rXXXXXXXX.qcow2 */
		json_t *layers = mgr_jarr(bundle_snap(b, id), "layers");
		char disks[PATH_MAX];
		bundle_path(b, disks, sizeof(disks), "disks");
		json_t *names = json_object();
		mgr_dir_names(disks, names);
		now = json_array();
		for (size_t i = 0; i < json_array_size(layers); i++) {
			const char *l = strrchr(mgr_jstr_at(layers, i), '/') + 1;
			const char *k;
			json_t *v;
			json_object_foreach(names, k, v) if (!strncmp(k, l, strlen(l) - 6) &&
							     !strncmp(k + strlen(l) - 6, "-r", 2) &&
							     strlen(k) == strlen(l) + 10)
			{
				char path[PATH_MAX];
				mgr_sub_path(b, path, sizeof(path), "disks", k);
				json_array_append_new(now, json_string(path));
				break;
			}
		}
		json_decref(names);
	}
	bool moved = now && json_array_size(now) == json_array_size(old) && !json_equal(now, old);
	if (moved) {
		json_object_set(b->doc, "active", now);
		json_object_set_new(b->doc, "current", json_string(id));
		json_object_set_new(b->doc, "resume", json_null());
	}
	json_object_del(b->doc, "pending");
	int r = bundle_save(b);
	if (r == 0 && moved)
		for (size_t i = 0; i < json_array_size(old); i++)
			mgr_unlink_own(b, mgr_jstr_at(old, i));
	json_decref(now);
	json_decref(p);
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
	json_object_set_new(b->doc, "pending",
			    json_pack("{s:s, s:s, s:O}", "op", "revert", "id", sid, "active",
				      mgr_active_layers(b)));
	int r = bundle_save(b);
	if (r < 0)
		return r;
	json_t *req = json_pack("{s:s, s:s, s:s}", "cmd", "revert", "path", sd, "disk_dir", disks);
	r = mgr_ctl_request(b, req, NULL);
	json_decref(req);
	if (r < 0 && strstr(err_msg(), "unknown command"))
		r = -ENOSYS;
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	int moved = mgr_revert_settle(b, bundle_running(b->dir, NULL));
	if (moved < 0)
		return moved;
	if (r < 0) {
		if (r != -ENOSYS)
			err_set(0, "%s", msg);
		return r;
	}
	if (!moved)
		return err_set(EIO, "%s: the VM reverted but its disks did not move", b->dir);
	if (report) {
		json_object_set_new(report, "reverted_to",
				    json_string(bundle_str(bundle_snap(b, sid), "name")));
		json_object_set_new(report, "memory", json_true());
		json_object_set_new(report, "in_place", json_true());
	}
	return 0;
}

int mgr_snapshot_revert(const char *name, const char *snap, const char *save_current,
			const struct mgr_progress *pr, json_t *report)
{
	struct bundle *b;
	int r = mgr_open_write(name, "cairn snapshot revert", &b);
	if (r < 0)
		return r;
	const char *sid;
	if (!bundle_snap_by_name(b, snap, &sid)) {
		r = -ENOENT;
		goto out;
	}
	char *id = strdup(sid);
	bool running = bundle_running(b->dir, NULL);
	if (save_current) {
		if (!mgr_valid_name(save_current) || bundle_snap_by_name(b, save_current, NULL)) {
			r = err_set(EINVAL, "--save-current \"%s\": not a new snapshot name",
				    save_current);
			goto out_id;
		}
		err_clear();
		r = running ? mgr_snapshot_running(b, save_current, "saved before a revert", false,
						   pr, NULL)
			    : mgr_snapshot_stopped(b, save_current, "saved before a revert", NULL);
		if (r < 0)
			goto out_id;
	}
	if (running && json_is_true(json_object_get(bundle_snap(b, id), "memory"))) {
		r = revert_in_place(b, id, report);
		if (r != -ENOSYS)
			goto out_id;
		err_clear();
	}
	if (running) {
		/* A disk-only snapshot (or a VMM without "revert"): the VM ends,
		 * and starts again from the snapshot (its memory if it has any,
		 * else a boot on its disk). */
		json_t *req = json_pack("{s:s}", "cmd", "quit");
		r = mgr_ctl_request(b, req, NULL);
		json_decref(req);
		if (r == 0)
			r = mgr_wait_stopped(b, 60);
		if (r < 0)
			goto out_id;
	}
	r = revert_stopped(b, id, report);
	if (r == 0 && running) {
		close(b->lock_fd);
		b->lock_fd = -1;
		r = mgr_run(name, true);
		if (report)
			json_object_set_new(report, "restarted", json_boolean(r == 0));
	}
out_id:
	free(id);
out:
	bundle_close(b);
	return r;
}
