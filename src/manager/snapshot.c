/* snapshot create: of a stopped VM (new layers) or of a running one (the
 * VM's whole-machine snapshot), and the settling of an interrupted one. */
#include "manager/mgr_internal.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "vmm/config_json.h"
#include "vmm/vm_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Progress of a whole-machine snapshot's memory save, which the VM's own
 * writer does: after the first second, how much of the memory image being
 * written is on disk, handed to the caller's progress callback (the image
 * is sparse: zero pages take no room, so the bound is the RAM size). */
struct mem_watch {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, reported;
	char file[PATH_MAX + 32];
	uint64_t ram;
	const struct mgr_progress *pr;
};

/* The memory image the VM writes for the snapshot in SD.
 * VMM naming convention: replaced by snapdir */
static void mem_watch_file(char *out, size_t len, const char *sd)
{
	snprintf(out, len, "%s.tmp/%s.tmp", sd, SNAP_MEMORY_FILE);
}

static void *mem_watch_run(void *opaque)
{
	struct mem_watch *w = opaque;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
			continue;
		struct stat st;
		if (stat(w->file, &st) == 0) {
			w->pr->memory(w->pr->opaque, (uint64_t)st.st_blocks * 512, w->ram);
			w->reported = true;
		}
		until.tv_nsec += 250000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static bool mem_watch_start(struct mem_watch *w, const struct bundle *b, const char *sd,
			    const struct mgr_progress *pr)
{
	memset(w, 0, sizeof(*w));
	if (!pr || !pr->memory)
		return false;
	w->pr = pr;
	struct vm_config cfg = {0};
	if (vm_config_from_json(json_object_get(b->doc, "config"), "vm.json", &cfg) == 0)
		w->ram = cfg.mem_size;
	vm_config_free(&cfg);
	err_clear();
	mem_watch_file(w->file, sizeof(w->file), sd);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (pthread_create(&w->thread, NULL, mem_watch_run, w) != 0) {
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->cond);
		return false;
	}
	return true;
}

static void mem_watch_stop(struct mem_watch *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	if (w->reported && w->pr->memory_end)
		w->pr->memory_end(w->pr->opaque);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}

/* After a whole-machine snapshot request (answered, failed, or cut short
 * by a crash), record what really happened; pending names the snapshot.
 * The VM freezes the disks before it writes memory, so: snapshot committed
 * -> adopted whole; disks moved to their new overlays but no snapshot ->
 * kept as a disk-only snapshot (the frozen layers are the VM's past);
 * neither -> nothing happened.  A suspend whose VM has ended resumes. */
int mgr_snapshot_settle(struct bundle *b, bool running)
{
	json_t *p = json_incref(json_object_get(b->doc, "pending"));
	const char *id = bundle_str(p, "id");
	json_t *s = json_deep_copy(json_object_get(p, "snapshot"));
	char sd[PATH_MAX];
	mgr_snap_dir(b, id, sd, sizeof(sd));
	struct stat st;
	bool ovs = true;
	json_t *act = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(mgr_jarr(s, "layers"), i, v)
	{
		char ov[PATH_MAX];
		const char *l = json_string_value(v);
		snprintf(ov, sizeof(ov), "%.*s-%s.qcow2", (int)strlen(l) - 6, l, id);
		ovs &= access(ov, F_OK) == 0;
		json_array_append_new(act, json_string(ov));
	}
	if (running) {
		/* the VM says where it writes: moved means it took the snapshot
		 * (the freeze comes first); then wait for its memory writer */
		json_t *now = mgr_running_disks(b);
		ovs = now && json_equal(now, act);
		json_decref(now);
		char tmp[PATH_MAX + 8];
		snprintf(tmp, sizeof(tmp), "%s.tmp", sd);
		for (int k = 0; ovs && k < 2400 && stat(sd, &st) < 0 && stat(tmp, &st) == 0; k++)
			usleep(50000);
	}
	bool dir = stat(sd, &st) == 0;
	int kind = dir ? MGR_SETTLE_MEMORY : ovs ? MGR_SETTLE_DISK_ONLY : MGR_SETTLE_NONE;
	if (kind != MGR_SETTLE_NONE) {
		json_object_set_new(s, "memory", json_boolean(dir));
		if (!dir)
			json_object_set_new(s, "description",
					    json_string("memory could not be saved: disk only"));
		json_object_set(bundle_snapshots(b), id, s);
		json_object_set_new(b->doc, "current", json_string(id));
	}
	bool resume =
	    kind == MGR_SETTLE_MEMORY && !running && json_is_true(json_object_get(s, "suspend"));
	if (resume) {
		json_object_set_new(b->doc, "active", json_null());
		json_object_set_new(b->doc, "resume", json_string(id));
	} else if (kind != MGR_SETTLE_NONE) {
		json_object_set(b->doc, "active", act);
	}
	json_object_del(b->doc, "pending");
	int r = bundle_save(b);
	if (r == 0 && resume)
		for (i = 0; i < json_array_size(act); i++)
			mgr_unlink_own(b,
				       mgr_jstr_at(act, i)); /* the overlays of a VM that ended */
	json_decref(act);
	json_decref(s);
	json_decref(p);
	return r < 0 ? r : kind;
}

/* Take a whole-machine snapshot of the running VM into snapshots/ID and
 * record it.  SUSPEND: the VM ends with it and the next run resumes it. */
int mgr_snapshot_running(struct bundle *b, const char *snap, const char *desc, bool suspend,
			 const struct mgr_progress *pr, json_t *report)
{
	char id[9], sd[PATH_MAX], created[32];
	bundle_random_hex(id, 8);
	mgr_snap_dir(b, id, sd, sizeof(sd));
	mgr_now_iso(created, sizeof(created));
	json_t *s =
	    json_pack("{s:s, s:O, s:s, s:s?, s:b, s:O, s:b}", "name", snap, "parent",
		      json_object_get(b->doc, "current"), "created", created, "description", desc,
		      "memory", 1, "layers", mgr_active_layers(b), "suspend", suspend);
	/* recorded first: an interrupted snapshot is adopted or dropped by check */
	json_object_set_new(
	    b->doc, "pending",
	    json_pack("{s:s, s:s, s:O}", "op", "snapshot", "id", id, "snapshot", s));
	int r = bundle_save(b);
	if (r < 0)
		goto out;
	json_t *req = json_pack("{s:s, s:s}", "cmd", "snapshot", "path", sd), *reply = NULL;
	if (suspend)
		json_object_set_new(req, "then", json_string("quit"));
	struct mem_watch watch;
	bool watching = mem_watch_start(&watch, b, sd, pr);
	r = mgr_ctl_request(b, req, &reply);
	if (watching)
		mem_watch_stop(&watch);
	json_decref(req);
	if (r == 0 && suspend)
		r = mgr_wait_stopped(b, 60);
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	int kind = mgr_snapshot_settle(b, bundle_running(b->dir, NULL));
	if (kind < 0) {
		r = kind;
	} else if (r < 0 && kind == MGR_SETTLE_DISK_ONLY) {
		err_set(0,
			"%s; the disks had been frozen already: snapshot \"%s\" was kept, disk "
			"only",
			msg, snap);
	} else if (r == 0 && kind != MGR_SETTLE_MEMORY) {
		r = err_set(EIO, "%s: the VM reported a snapshot that is not there", sd);
	}
	if (r == 0 && report) {
		json_object_set_new(report, "snapshot", json_string(snap));
		json_object_set_new(report, "id", json_string(id));
		json_object_set_new(report, "memory", json_true());
		json_object_set(report, "pause_ms", json_object_get(reply, "pause_ms"));
	}
	json_decref(reply);
out:
	json_decref(s);
	return r;
}

int mgr_snapshot_stopped(struct bundle *b, const char *snap, const char *desc, json_t *report)
{
	if (bundle_str(b->doc, "resume"))
		return err_set(
		    EINVAL, "%s: the VM is suspended: its state is already snapshot \"%s\"", b->dir,
		    bundle_str(bundle_snap(b, bundle_str(b->doc, "resume")), "name"));
	json_t *act = mgr_active_layers(b), *nact = json_array();
	int r = 0;
	for (size_t i = 0; i < json_array_size(act) && r == 0; i++) {
		char p[PATH_MAX];
		r = mgr_new_layer(b, mgr_jstr_at(act, i), p, sizeof(p));
		if (r == 0)
			json_array_append_new(nact, json_string(p));
	}
	if (r < 0)
		goto fail;
	char id[9], created[32];
	bundle_random_hex(id, 8);
	mgr_now_iso(created, sizeof(created));
	json_t *s = json_pack("{s:s, s:O, s:s, s:s?, s:b, s:O}", "name", snap, "parent",
			      json_object_get(b->doc, "current"), "created", created, "description",
			      desc, "memory", 0, "layers", act);
	json_t *old = json_copy(b->doc);
	json_object_set_new(bundle_snapshots(b), id, s);
	json_object_set_new(b->doc, "current", json_string(id));
	json_object_set(b->doc, "active", nact);
	r = bundle_save(b);
	if (r < 0) {
		json_decref(b->doc);
		b->doc = old;
		goto fail;
	}
	json_decref(old);
	mgr_set_frozen(mgr_jarr(s, "layers"), true);
	json_decref(nact);
	if (report) {
		json_object_set_new(report, "snapshot", json_string(snap));
		json_object_set_new(report, "id", json_string(id));
		json_object_set_new(report, "memory", json_false());
	}
	return 0;
fail:
	for (size_t i = 0; i < json_array_size(nact); i++)
		mgr_unlink_own(b, mgr_jstr_at(nact, i));
	json_decref(nact);
	return r;
}

int mgr_snapshot_create(const char *name, const char *snap, bool disk_only, const char *desc,
			const struct mgr_progress *pr, json_t *report)
{
	if (!mgr_valid_name(snap))
		return err_set(EINVAL,
			       "snapshot name \"%s\": use 1-127 characters, no '/', not "
			       "starting with '.'",
			       snap);
	struct bundle *b;
	int r = mgr_open_write(name, "cairn snapshot create", &b);
	if (r < 0)
		return r;
	if (bundle_snap_by_name(b, snap, NULL)) {
		r = err_set(EEXIST, "%s: a snapshot named \"%s\" exists", b->dir, snap);
		goto out;
	}
	err_clear();
	if (bundle_running(b->dir, NULL)) {
		json_t *rep = report ? report : json_object();
		r = mgr_snapshot_running(b, snap, desc, false, pr, rep);
		const char *id = bundle_str(rep, "id");
		if (r == 0 && disk_only && id) {
			/* the VM freezes its disks only as part of a whole-machine
			 * snapshot: its memory files are dropped afterwards */
			char sd[PATH_MAX];
			mgr_snap_dir(b, id, sd, sizeof(sd));
			json_object_set_new(bundle_snap(b, id), "memory", json_false());
			if ((r = bundle_save(b)) == 0) {
				mgr_rm_rf(sd);
				file_fsync_parent(sd);
				json_object_set_new(rep, "memory", json_false());
			}
		}
		if (rep != report)
			json_decref(rep);
	} else {
		r = mgr_snapshot_stopped(b, snap, desc, report);
	}
out:
	bundle_close(b);
	return r;
}
