/* snapshot create: of a stopped VM (new layers) or of a running one (the
 * VM's whole-machine snapshot), and the settling of an interrupted one. */
#include "manager/mgr_internal.h"
#include "snapshot/snapdir.h"
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
	char dir[PATH_MAX];
	uint64_t ram;
	const struct mgr_progress *pr;
};

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
		uint64_t bytes;
		if (snapdir_memory_progress(w->dir, &bytes) == 0) {
			w->pr->memory(w->pr->opaque, bytes, w->ram);
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
	w->ram = b->config.mem_size;
	snprintf(w->dir, sizeof(w->dir), "%s", sd);
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
	struct bundle_pending *p = b->pending;
	struct bundle_snapshot *s = p->snapshot;
	p->snapshot = NULL;
	if (!s && p->id && !(s = bundle_snap_new(p->id, p->id, NULL, NULL, NULL)))
		return -ENOMEM;
	if (!s || !s->id) { /* a record without its snapshot: nothing to adopt */
		bundle_snap_free(s);
		bundle_pending_free(b->pending);
		b->pending = NULL;
		int r = bundle_save(b);
		return r < 0 ? r : MGR_SETTLE_NONE;
	}
	char id[64];
	snprintf(id, sizeof(id), "%s", s->id ? s->id : "?");
	char sd[PATH_MAX];
	mgr_snap_dir(b, id, sd, sizeof(sd));
	bool ovs = true;
	struct bundle_layers act = {0};
	for (int i = 0; i < s->layers.n; i++) {
		char ov[PATH_MAX];
		snapdir_overlay_path(s->layers.path[i], sd, ov, sizeof(ov));
		ovs &= access(ov, F_OK) == 0;
		bundle_layers_add(&act, ov);
	}
	if (running) {
		/* the VM says where it writes: moved means it took the snapshot
		 * (the freeze comes first); then wait for its memory writer.  No
		 * answer is no "not moved": the pending record stays. */
		struct bundle_layers now = {0};
		int r = mgr_running_disks(b, &now);
		if (r < 0 && mgr_vm_ended(b)) {
			/* it ended meanwhile (killed, or its snapshot writer, which
			 * held its locks, was): the files tell, as for a VM that
			 * had ended (disks moved: kept disk only) */
			err_clear();
			running = false;
		} else if (r < 0) {
			p->snapshot = s;
			bundle_layers_free(&act);
			return err_prefix(r, "%s: cannot ask the running VM where it writes",
					  b->dir);
		} else {
			ovs = bundle_layers_equal(&now, &act);
			for (int k = 0; ovs && k < 2400 && snapdir_is_in_progress(sd); k++)
				usleep(50000);
		}
		bundle_layers_free(&now);
	}
	bool dir = snapdir_is_committed(sd);
	int kind = dir ? MGR_SETTLE_MEMORY : ovs ? MGR_SETTLE_DISK_ONLY : MGR_SETTLE_NONE;
	if (kind == MGR_SETTLE_MEMORY && running && s->suspend) {
		/* a suspend's VM ends once its snapshot is committed (its
		 * command, killed, did not wait for that): it is to be resumed */
		running = mgr_wait_stopped(b, 60) < 0;
		err_clear();
	}
	bool resume = kind == MGR_SETTLE_MEMORY && !running && s->suspend;
	if (kind != MGR_SETTLE_NONE) {
		s->memory = dir;
		if (!dir)
			bundle_set_str(&s->description, "memory could not be saved: disk only");
		bundle_set_str(&b->current, id);
		if (resume) {
			b->has_active = false;
			bundle_layers_free(&b->active);
			bundle_set_str(&b->resume, id);
		} else {
			bundle_layers_copy(&b->active, &act);
			b->has_active = true;
		}
		bundle_snap_add(b, s);
	} else {
		bundle_snap_free(s);
	}
	bundle_pending_free(b->pending);
	b->pending = NULL;
	int r = bundle_save(b);
	if (r == 0 && resume)
		mgr_unlink_layers(b, &act); /* the overlays of a VM that ended */
	/* the frozen layers, which the VM named absolute: it only reads them */
	if (r == 0 && (kind == MGR_SETTLE_MEMORY || (kind != MGR_SETTLE_NONE && !running)))
		mgr_relink_layers(b, &bundle_snap(b, id)->layers);
	bundle_layers_free(&act);
	return r < 0 ? r : kind;
}

/* Take a whole-machine snapshot of the running VM into snapshots/ID and
 * record it.  SUSPEND: the VM ends with it and the next run resumes it. */
int mgr_snapshot_running(struct bundle *b, const char *snap, const char *desc, bool suspend,
			 unsigned flags, const struct mgr_progress *pr, json_t *report)
{
	char id[9], sd[PATH_MAX], created[32];
	bundle_random_hex(id, 8);
	mgr_snap_dir(b, id, sd, sizeof(sd));
	mgr_now_iso(created, sizeof(created));
	struct bundle_pending *p = calloc(1, sizeof(*p));
	if (!p || !(p->snapshot = bundle_snap_new(id, snap, b->current, created, desc)) ||
	    bundle_layers_copy(&p->snapshot->layers, &b->active) < 0) {
		bundle_pending_free(p);
		return err_set(ENOMEM, "%s", b->dir);
	}
	p->snapshot->memory = true;
	p->snapshot->suspend = suspend;
	bundle_set_str(&p->op, "snapshot");
	bundle_set_str(&p->id, id);
	/* recorded first: an interrupted snapshot is adopted or dropped by check */
	b->pending = p;
	int r = bundle_save(b);
	if (r < 0)
		return r;
	json_t *req = json_pack("{s:s, s:s}", "cmd", "snapshot", "path", sd), *reply = NULL;
	if (suspend)
		json_object_set_new(req, "then", json_string("quit"));
	if (flags & MGR_SNAP_FULL)
		json_object_set_new(req, "memory", json_string("full"));
	/* its memory is dropped afterwards: the VM's next snapshot stays a
	 * layer on the memory it descends from now */
	if (flags & MGR_SNAP_DISK_ONLY)
		json_object_set_new(req, "memory_parent", json_false());
	struct mem_watch watch;
	bool watching = mem_watch_start(&watch, b, sd, pr);
	r = mgr_ctl_request(b, req, &reply);
	if (watching)
		mem_watch_stop(&watch);
	json_decref(req);
	if (r == 0 && suspend)
		r = mgr_wait_stopped(b, 60);
	char msg[ERR_MSG_MAX];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	int kind = mgr_snapshot_settle(b, bundle_running(b->dir, NULL));
	if (kind < 0) {
		r = mgr_pending_failed(b, r, msg, kind, "snapshot");
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
		/* the VM's own reply: total_ms, memory (layer or full),
		 * memory_depth, memory_bytes... (docs/control.md) */
		if (reply)
			json_object_set(report, "vmm", reply);
	}
	json_decref(reply);
	return r;
}

int mgr_snapshot_stopped(struct bundle *b, const char *snap, const char *desc, json_t *report)
{
	if (b->resume) {
		struct bundle_snapshot *rs = bundle_snap(b, b->resume);
		return err_set(EINVAL,
			       "%s: the VM is suspended: its state is already snapshot \"%s\"",
			       b->dir, rs ? rs->name : "?");
	}
	struct bundle_layers nact = {0};
	int r = 0;
	for (int i = 0; i < b->active.n && r == 0; i++) {
		char p[PATH_MAX];
		r = mgr_new_layer(b, b->active.path[i], p, sizeof(p));
		if (r == 0)
			r = bundle_layers_add(&nact, p);
	}
	if (r < 0)
		goto fail;
	char id[9], created[32];
	bundle_random_hex(id, 8);
	mgr_now_iso(created, sizeof(created));
	struct bundle_snapshot *s = bundle_snap_new(id, snap, b->current, created, desc);
	if (!s) {
		r = -ENOMEM;
		goto fail;
	}
	s->layers = b->active; /* the active layers are frozen into S */
	b->active = nact;
	nact = (struct bundle_layers){0};
	bundle_set_str(&b->current, id);
	if ((r = bundle_snap_add(b, s)) == 0)
		r = bundle_save(b);
	if (r < 0) {
		bundle_layers_copy(&nact, &b->active);
		bundle_reload(b);
		goto fail;
	}
	char sd[PATH_MAX];
	mgr_snap_dir(b, id, sd, sizeof(sd));
	mgr_set_frozen(&s->layers, sd);
	if (report) {
		json_object_set_new(report, "snapshot", json_string(snap));
		json_object_set_new(report, "id", json_string(id));
		json_object_set_new(report, "memory", json_false());
	}
	return 0;
fail:
	mgr_unlink_layers(b, &nact);
	bundle_layers_free(&nact);
	return r;
}

int mgr_snapshot_create(const char *name, const char *snap, unsigned flags, const char *desc,
			const struct mgr_progress *pr, json_t *report)
{
	bool disk_only = flags & MGR_SNAP_DISK_ONLY, full = flags & MGR_SNAP_FULL;
	if (disk_only && full)
		return err_set(EINVAL, "--full and --disk-only: a disk-only snapshot keeps no memory");
	if (!mgr_valid_name(snap))
		return err_set(EINVAL,
			       "snapshot name \"%s\": use 1-127 characters, no '/' or control "
			       "characters, not starting with '.'",
			       snap);
	struct bundle *b;
	int r = mgr_open_write(name, "cairn snapshot create", &b);
	if (r < 0)
		return r;
	if (bundle_snap_by_name(b, snap)) {
		r = err_set(EEXIST, "%s: a snapshot named \"%s\" exists", b->dir, snap);
		goto out;
	}
	err_clear();
	if (bundle_running(b->dir, NULL)) {
		json_t *rep = report ? report : json_object();
		r = mgr_snapshot_running(b, snap, desc, false, flags, pr, rep);
		const char *id = json_string_value(json_object_get(rep, "id"));
		if (r == 0 && disk_only && id) {
			/* the VM freezes its disks only as part of a whole-machine
			 * snapshot: its memory files are dropped afterwards */
			char sd[PATH_MAX];
			mgr_snap_dir(b, id, sd, sizeof(sd));
			struct bundle_snapshot *s = bundle_snap(b, id);
			if (s)
				s->memory = false;
			if ((r = bundle_save(b)) == 0) {
				mgr_rm_rf(sd);
				file_fsync_parent(sd);
				json_object_set_new(rep, "memory", json_false());
			}
		}
		if (rep != report)
			json_decref(rep);
	} else if (full) {
		r = err_set(EINVAL,
			    "%s: --full: the VM is not running, and a stopped VM's snapshot has no "
			    "memory (disk only)",
			    b->dir);
	} else {
		r = mgr_snapshot_stopped(b, snap, desc, report);
	}
out:
	bundle_close(b);
	return r;
}
