/* snapshot delete: merge the snapshot's layers into their dependents
 * (stream or commit), recorded as pending first. */
#include "disk/chain.h"
#include "manager/mgr_internal.h"
#include "util/err.h"
#include "snapshot/mem_chain.h"
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

/* The layers that sit directly on snapshot SID's layer of disk I: its
 * children's layers and, when the VM is at SID, the active layer. */
static void dependents(const struct bundle *b, const char *sid, int disk,
		       struct bundle_layers *deps)
{
	for (size_t i = 0; i < b->nsnaps; i++)
		if (mgr_streq(b->snaps[i]->parent, sid) && disk < b->snaps[i]->layers.n &&
		    deps->n < VM_MAX_DISKS)
			deps->path[deps->n++] = b->snaps[i]->layers.path[disk];
	if (b->has_active && mgr_streq(b->current, sid) && disk < b->active.n &&
	    deps->n < VM_MAX_DISKS)
		deps->path[deps->n++] = b->active.path[disk];
}

/* Merge layer L (being deleted) into its dependent D: "commit" copies D's
 * clusters into L and renames L over D; "stream" copies L's clusters into
 * D and points D at L's backing file.  Both keep D's content and are safe
 * to redo after a crash. */
static int merge_layer(const struct bundle_merge *m, const struct mgr_progress *pr)
{
	const char *l = m->layer, *d = m->into;
	int r = 0;
	if (m->method == BUNDLE_MERGE_COMMIT) {
		if (access(l, F_OK) < 0)
			return 0; /* renamed already */
		/* L takes D's place, and with it D's frozen state */
		struct mgr_frozen lf, df;
		if ((r = mgr_layer_thaw(l, &lf)) < 0)
			return r;
		if ((r = mgr_layer_thaw(d, &df)) < 0) {
			mgr_layer_refreeze(l, &lf);
			return r;
		}
		r = chain_commit(d, l, CHAIN_COMMIT_KEEP_TOP, mgr_copy_progress(pr));
		if (r == 0 && rename(l, d) < 0)
			r = err_set(errno, "rename %s to %s", l, d);
		if (r < 0)
			mgr_layer_refreeze(l, &lf);
		mgr_layer_refreeze(d, &df);
		/* renamed: the merge is done whatever the directory's fsync says
		 * (L is gone: a failure here must not be taken for the merge's) */
		if (r == 0)
			file_fsync_parent_after_commit(d);
		return r;
	}
	char *bk = NULL;
	if ((r = mgr_layer_backing(d, &bk)) < 0)
		return r;
	if (mgr_streq(bk, l)) {
		char *base = NULL;
		r = mgr_layer_backing(l, &base);
		struct mgr_frozen df;
		if (r == 0 && (r = mgr_layer_thaw(d, &df)) == 0) {
			r = mgr_stream_layer(d, base, pr);
			mgr_layer_refreeze(d, &df);
		}
		free(base);
	}
	free(bk);
	return r;
}

static bool merged_by_commit(const struct bundle_pending *p, const char *layer)
{
	for (size_t k = 0; k < p->nmerges; k++)
		if (mgr_streq(p->merges[k].layer, layer) &&
		    p->merges[k].method == BUNDLE_MERGE_COMMIT)
			return true;
	return false;
}

/* Carry out (or finish) the delete recorded in vm.json's "pending". */
/* Snapshots whose memory is a layer on SID's take in the pages of SID's
 * they do not hold (mem_chain.h), so SID's image can go.  Safe to stop
 * anywhere and to redo: absorbing changes no snapshot's RAM, and a child
 * that absorbed already no longer names SID. */
static int absorb_memory(const struct bundle *b, const char *sid)
{
	const struct bundle_snapshot *s = sid ? bundle_snap(b, sid) : NULL;
	char mem[PATH_MAX], cmem[PATH_MAX];
	struct mem_image_info si, ci;
	if (!s || !s->memory || mgr_snap_memory(b, sid, mem, sizeof(mem), &si) < 0) {
		err_clear(); /* no memory image: none can stand on it */
		return 0;
	}
	for (size_t i = 0; i < b->nsnaps; i++) {
		const struct bundle_snapshot *c = b->snaps[i];
		if (c == s || !c->memory || mgr_snap_memory(b, c->id, cmem, sizeof(cmem), &ci) < 0) {
			err_clear(); /* its own check reports it */
			continue;
		}
		if (!ci.layer || memcmp(&ci.parent, &si.id, sizeof(si.id)) != 0)
			continue;
		int r = mem_chain_absorb_parent(cmem, ci.size, NULL);
		if (r < 0)
			return err_prefix(r, "moving the memory of snapshot \"%s\" into \"%s\"",
					  s->name ? s->name : sid, c->name ? c->name : c->id);
	}
	return 0;
}

/* Bytes the snapshots whose memory stands on SID's may take in when it
 * goes: each at most SID's image. */
static uint64_t absorb_bytes(const struct bundle *b, const struct bundle_snapshot *s)
{
	char mem[PATH_MAX];
	struct mem_image_info si, ci;
	uint64_t n = 0;
	if (!s->memory || mgr_snap_memory(b, s->id, mem, sizeof(mem), &si) < 0) {
		err_clear();
		return 0;
	}
	for (size_t i = 0; i < b->nsnaps; i++)
		if (b->snaps[i] != s && b->snaps[i]->memory &&
		    mgr_snap_memory(b, b->snaps[i]->id, mem, sizeof(mem), &ci) == 0 && ci.layer &&
		    memcmp(&ci.parent, &si.id, sizeof(si.id)) == 0)
			n += si.data_bytes;
	err_clear();
	return n;
}

int mgr_delete_apply(struct bundle *b, const struct mgr_progress *pr)
{
	struct bundle_pending *p = b->pending;
	const char *name = p->snapshot && p->snapshot->name ? p->snapshot->name : "?";
	for (size_t i = 0; i < p->nmerges; i++) {
		int r = merge_layer(&p->merges[i], pr);
		if (r < 0)
			return err_prefix(r, "delete of snapshot \"%s\"", name);
	}
	const char *sid = p->id, *parent = p->snapshot ? p->snapshot->parent : NULL;
	int ar = absorb_memory(b, sid);
	if (ar < 0)
		return err_prefix(ar, "delete of snapshot \"%s\"", name);
	/* switch: children go to the parent, the snapshot goes */
	for (size_t i = 0; i < b->nsnaps; i++)
		if (mgr_streq(b->snaps[i]->parent, sid))
			bundle_set_str(&b->snaps[i]->parent, parent);
	if (mgr_streq(b->current, sid))
		bundle_set_str(&b->current, parent);
	if (sid)
		bundle_snap_remove(b, sid);
	b->pending = NULL;
	int r = bundle_save(b);
	if (r < 0) {
		b->pending = p; /* vm.json still has it: check --repair finishes it */
		return r;
	}
	for (int i = 0; p->snapshot && i < p->snapshot->layers.n; i++) {
		const char *l = p->snapshot->layers.path[i];
		if (access(l, F_OK) == 0 && !merged_by_commit(p, l))
			mgr_unlink_own(b, l);
	}
	/* the snapshot is gone from vm.json: its files are leftovers now,
	 * which check --repair removes if this cannot */
	char sd[PATH_MAX];
	mgr_snap_dir(b, sid ? sid : "?", sd, sizeof(sd));
	if (mgr_rm_rf(sd) == 0)
		file_fsync_parent(sd);
	err_clear();
	bundle_pending_free(p);
	return 0;
}

/* Whether a stream of P has already pointed its child at the parent (its
 * header was written, even if the sync after it failed): P can then only
 * be finished, not forgotten.  Unknown counts as moved. */
static bool streams_moved(const struct bundle_pending *p)
{
	for (size_t k = 0; k < p->nmerges; k++) {
		char *bk = NULL;
		if (mgr_layer_backing(p->merges[k].into, &bk) < 0) {
			err_clear();
			return true;
		}
		bool moved = !mgr_streq(bk, p->merges[k].layer);
		free(bk);
		if (moved)
			return true;
	}
	return false;
}

static const char *clone_of(const struct bundle *b, const char *sid)
{
	for (size_t i = 0; i < b->nclones; i++)
		if (mgr_streq(b->clones[i].snapshot, sid))
			return b->clones[i].path;
	return NULL;
}

/* The merges that delete snapshot S: each dependent of each of its layers
 * (NULL and the message set when the running VM writes on top of S). */
static int delete_plan(const struct bundle *b, const struct bundle_snapshot *s, bool running,
		       struct bundle_pending **out)
{
	struct bundle_pending *p = calloc(1, sizeof(*p));
	if (!p || bundle_set_str(&p->op, "delete") < 0 || bundle_set_str(&p->id, s->id) < 0 ||
	    !(p->snapshot = bundle_snap_dup(s)) ||
	    !(p->merges = calloc((size_t)s->layers.n * (b->nsnaps + 1), sizeof(*p->merges)))) {
		bundle_pending_free(p);
		return err_set(ENOMEM, "%s", b->dir);
	}
	for (int i = 0; i < s->layers.n; i++) {
		const char *l = s->layers.path[i];
		struct bundle_layers deps = {0}; /* borrowed strings */
		dependents(b, s->id, i, &deps);
		for (int k = 0; k < deps.n; k++) {
			const char *dp = deps.path[k];
			bool is_active =
			    b->has_active && i < b->active.n && mgr_streq(dp, b->active.path[i]);
			if (running && is_active) {
				bundle_pending_free(p);
				return err_set(EBUSY,
					       "%s: the running VM writes on top of snapshot "
					       "\"%s\"; stop it (or take a snapshot) first",
					       b->dir, s->name);
			}
			/* commit moves the dependent's bytes, stream the deleted
			 * layer's: the smaller; never commit into a layer that a
			 * running VM has open, and only with one dependent */
			struct bundle_merge *m = &p->merges[p->nmerges++];
			m->method = BUNDLE_MERGE_STREAM;
			if (!running && deps.n == 1 && mgr_own_layer(b, l) &&
			    mgr_file_bytes(dp) < mgr_file_bytes(l))
				m->method = BUNDLE_MERGE_COMMIT;
			m->layer = strdup(l);
			m->into = strdup(dp);
		}
	}
	*out = p;
	return 0;
}

static json_t *merges_report(const struct bundle_pending *p)
{
	json_t *a = json_array();
	for (size_t k = 0; k < p->nmerges; k++)
		json_array_append_new(
		    a, json_pack("{s:s, s:s, s:s}", "layer", p->merges[k].layer, "into",
				 p->merges[k].into, "method",
				 p->merges[k].method == BUNDLE_MERGE_COMMIT ? "commit" : "stream"));
	return a;
}

int mgr_snapshot_delete(const char *name, const char *snap, const struct mgr_progress *pr,
			json_t *report)
{
	struct bundle *b;
	struct bundle_snapshot *s;
	int r = mgr_open_write_snap(name, "cairn snapshot delete", snap, &b, &s);
	if (r < 0)
		return r;
	if (mgr_streq(b->resume, s->id)) {
		r = err_set(EBUSY,
			    "%s: snapshot \"%s\" is the suspended state the next run resumes; "
			    "revert to another snapshot first",
			    b->dir, snap);
		goto out;
	}
	const char *cl = clone_of(b, s->id);
	if (cl) {
		r = err_set(EBUSY,
			    "%s: snapshot \"%s\" is used by the linked clone %s; destroy the "
			    "clone first",
			    b->dir, snap, cl);
		goto out;
	}
	bool running = bundle_running(b->dir, NULL);
	struct bundle_pending *p = NULL;
	if ((r = delete_plan(b, s, running, &p)) < 0)
		goto out;
	uint64_t moved = 0;
	bool all_stream = true;
	for (size_t k = 0; k < p->nmerges; k++) {
		bool commit = p->merges[k].method == BUNDLE_MERGE_COMMIT;
		moved += mgr_file_bytes(commit ? p->merges[k].into : p->merges[k].layer);
		all_stream &= !commit;
	}
	moved += absorb_bytes(b, s);
	json_t *merges = merges_report(p);
	if ((r = mgr_need_space(b->dir, moved, "merging the snapshot's layer")) < 0) {
		bundle_pending_free(p);
		json_decref(merges);
		goto out;
	}
	uint64_t before = bundle_du(b->dir);
	b->pending = p;
	if ((r = bundle_save(b)) < 0) {
		bundle_pending_free(b->pending);
		b->pending = NULL;
		json_decref(merges);
		goto out;
	}
	r = mgr_delete_apply(b, pr);
	bool forgotten = false;
	if (r < 0 && all_stream && b->pending && !streams_moved(b->pending)) {
		/* a stream only ever adds to the children what they already read
		 * through the chain: undone by forgetting it, as long as no child
		 * backs onto the parent yet */
		struct err_saved e;
		err_save(&e);
		/* from vm.json as it is: the switch may have been made in the
		 * model before its save failed */
		if (bundle_reload(b) == 0 && b->pending) {
			bundle_pending_free(b->pending);
			b->pending = NULL;
			forgotten = bundle_save(b) == 0;
			if (!forgotten)
				bundle_reload(b);
		}
		err_restore(&e); /* the delete's failure is the one to say */
		if (forgotten)
			err_prefix(r, "nothing was deleted");
	}
	if (r < 0 && !forgotten && b->pending) {
		err_prefix(r,
			   "the delete is recorded as pending: 'cairn check --repair %s' "
			   "finishes it",
			   name);
	}
	uint64_t after = bundle_du(b->dir);
	if (r == 0 && report) {
		json_object_set_new(report, "deleted", json_string(snap));
		json_object_set_new(report, "freed_bytes",
				    json_integer((json_int_t)before - (json_int_t)after));
		json_object_set(report, "merges", merges);
		if (running)
			json_object_set_new(report, "note",
					    json_string("the running VM keeps the old layers open: "
							"their space comes back when it ends"));
	}
	json_decref(merges);
out:
	bundle_close(b);
	return r;
}
