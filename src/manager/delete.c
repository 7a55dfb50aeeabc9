/* snapshot delete: merge the snapshot's layers into their dependents
 * (stream or commit), recorded as pending first. */
#include "disk/chain.h"
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

/* ---- delete ------------------------------------------------------------- */

/* The layers that sit directly on snapshot SID's layer of disk I: its
 * children's layers and, when the VM is at SID, the active layer. */
static json_t *dependents(const struct bundle *b, const char *sid, size_t disk)
{
	json_t *deps = json_array();
	const char *id;
	json_t *s;
	json_object_foreach(bundle_snapshots(b), id, s)
	{
		if (mgr_streq(bundle_str(s, "parent"), sid))
			json_array_append(deps, json_array_get(mgr_jarr(s, "layers"), disk));
	}
	json_t *act = mgr_active_layers(b);
	if (act && mgr_streq(bundle_str(b->doc, "current"), sid))
		json_array_append(deps, json_array_get(act, disk));
	return deps;
}

/* Merge layer L (being deleted) into its dependent D: "commit" copies D's
 * clusters into L and renames L over D; "stream" copies L's clusters into
 * D and points D at L's backing file.  Both keep D's content and are safe
 * to redo after a crash. */
static int merge_layer(const char *l, const char *d, const char *method,
		       const struct mgr_progress *pr)
{
	int r = 0;
	if (!strcmp(method, "commit")) {
		if (access(l, F_OK) < 0)
			return 0; /* renamed already */
		chmod(l, 0644);
		r = chain_commit(d, l, CHAIN_COMMIT_KEEP_TOP, mgr_copy_progress(pr));
		if (r == 0 && rename(l, d) < 0)
			r = err_set(errno, "rename %s to %s", l, d);
		if (r == 0)
			r = file_fsync_parent(d);
		return r;
	}
	char *bk = NULL;
	if ((r = mgr_layer_backing(d, &bk)) < 0)
		return r;
	if (mgr_streq(bk, l)) {
		char *base = NULL;
		r = mgr_layer_backing(l, &base);
		struct stat st;
		bool ro = stat(d, &st) == 0 && !(st.st_mode & 0200);
		chmod(d, 0644);
		if (r == 0)
			r = chain_stream(d, base, base && !mgr_is_qcow2(base) ? "raw" : "qcow2",
					 mgr_copy_progress(pr));
		if (ro)
			chmod(d, 0444);
		free(base);
	}
	free(bk);
	return r;
}

/* Carry out (or finish) the delete recorded in vm.json's "pending". */
int mgr_delete_apply(struct bundle *b, const struct mgr_progress *pr)
{
	json_t *p = json_incref(json_object_get(b->doc, "pending"));
	const char *sid = bundle_str(p, "id");
	json_t *s = json_object_get(p, "snapshot");
	json_t *layers = mgr_jarr(s, "layers"), *merges = mgr_jarr(p, "merges");
	int r = 0;
	size_t i;
	json_t *m;
	json_array_foreach(merges, i, m)
	{
		r = merge_layer(bundle_str(m, "layer"), bundle_str(m, "into"),
				bundle_str(m, "method"), pr);
		if (r < 0) {
			err_prefix(r, "delete of snapshot \"%s\"", bundle_str(s, "name"));
			json_decref(p);
			return r;
		}
	}
	/* switch: children go to the parent, the snapshot goes */
	const char *id;
	json_t *c;
	json_t *parent = json_object_get(s, "parent");
	json_object_foreach(bundle_snapshots(b), id, c)
	{
		if (mgr_streq(bundle_str(c, "parent"), sid))
			json_object_set(c, "parent", parent);
	}
	if (mgr_streq(bundle_str(b->doc, "current"), sid))
		json_object_set(b->doc, "current", parent);
	json_object_del(bundle_snapshots(b), sid);
	json_incref(s);
	char *sidc = strdup(sid);
	json_object_del(b->doc, "pending");
	r = bundle_save(b);
	if (r == 0) {
		json_t *v;
		json_array_foreach(layers, i, v) if (access(json_string_value(v), F_OK) == 0)
		{
			bool merged_by_commit = false;
			size_t k;
			json_array_foreach(merges, k, m) merged_by_commit |=
			    mgr_streq(bundle_str(m, "layer"), json_string_value(v)) &&
			    !strcmp(bundle_str(m, "method"), "commit");
			if (!merged_by_commit)
				mgr_unlink_own(b, json_string_value(v));
		}
		char sd[PATH_MAX];
		mgr_snap_dir(b, sidc, sd, sizeof(sd));
		mgr_rm_rf(sd);
		file_fsync_parent(sd);
	}
	free(sidc);
	json_decref(s);
	json_decref(p);
	return r;
}

static const char *clone_of(const struct bundle *b, const char *sid)
{
	size_t i;
	json_t *v;
	json_array_foreach(
	    mgr_jarr(b->doc, "clones"), i,
	    v) if (mgr_streq(bundle_str(v, "snapshot"), sid)) return bundle_str(v, "path");
	return NULL;
}

int mgr_snapshot_delete(const char *name, const char *snap, const struct mgr_progress *pr,
			json_t *report)
{
	struct bundle *b;
	int r = mgr_open_write(name, "cairn snapshot delete", &b);
	if (r < 0)
		return r;
	const char *sid;
	json_t *s = bundle_snap_by_name(b, snap, &sid);
	if (!s) {
		r = -ENOENT;
		goto out;
	}
	if (mgr_streq(bundle_str(b->doc, "resume"), sid)) {
		r = err_set(EBUSY,
			    "%s: snapshot \"%s\" is the suspended state the next run resumes; "
			    "revert to another snapshot first",
			    b->dir, snap);
		goto out;
	}
	const char *cl = clone_of(b, sid);
	if (cl) {
		r = err_set(EBUSY,
			    "%s: snapshot \"%s\" is used by the linked clone %s; destroy the "
			    "clone first",
			    b->dir, snap, cl);
		goto out;
	}
	bool running = bundle_running(b->dir, NULL);
	json_t *act = mgr_active_layers(b), *layers = mgr_jarr(s, "layers"), *merges = json_array();
	for (size_t i = 0; i < json_array_size(layers); i++) {
		const char *l = mgr_jstr_at(layers, i);
		json_t *deps = dependents(b, sid, i);
		size_t k;
		json_t *d;
		json_array_foreach(deps, k, d)
		{
			const char *dp = json_string_value(d);
			bool is_active = act && mgr_streq(dp, mgr_jstr_at(act, i));
			if (running && is_active) {
				json_decref(deps);
				json_decref(merges);
				r = err_set(EBUSY,
					    "%s: the running VM writes on top of snapshot \"%s\"; "
					    "stop it (or take a snapshot) first",
					    b->dir, snap);
				goto out;
			}
			/* commit moves the dependent's bytes, stream the deleted
			 * layer's: the smaller; never commit into a layer that a
			 * running VM has open, and only with one dependent */
			const char *method = "stream";
			if (!running && json_array_size(deps) == 1 && mgr_own_layer(b, l) &&
			    mgr_file_bytes(dp) < mgr_file_bytes(l))
				method = "commit";
			json_array_append_new(merges, json_pack("{s:s, s:s, s:s}", "layer", l,
								"into", dp, "method", method));
		}
		json_decref(deps);
	}
	uint64_t moved = 0;
	size_t k;
	json_t *m;
	json_array_foreach(merges, k, m) moved += mgr_file_bytes(
	    bundle_str(m, strcmp(bundle_str(m, "method"), "commit") ? "layer" : "into"));
	if ((r = mgr_need_space(b->dir, moved, "merging the snapshot's layer")) < 0) {
		json_decref(merges);
		goto out;
	}
	uint64_t before = bundle_du(b->dir);
	json_object_set_new(b->doc, "pending",
			    json_pack("{s:s, s:s, s:O, s:o}", "op", "delete", "id", sid, "snapshot",
				      s, "merges", merges));
	merges = json_incref(merges);
	if ((r = bundle_save(b)) < 0) {
		json_object_del(b->doc, "pending");
		goto out;
	}
	r = mgr_delete_apply(b, pr);
	bool all_stream = true;
	json_array_foreach(merges, k, m) all_stream &= !strcmp(bundle_str(m, "method"), "stream");
	if (r < 0 && all_stream && json_object_get(b->doc, "pending")) {
		/* a stream only ever adds to the children what they already read
		 * through the chain: undone by forgetting it */
		json_object_del(b->doc, "pending");
		if (bundle_save(b) == 0)
			err_prefix(r, "nothing was deleted");
	}
	uint64_t after = bundle_du(b->dir);
	if (r == 0 && report) {
		json_object_set_new(report, "deleted", json_string(snap));
		json_object_set_new(report, "freed_bytes",
				    json_integer((json_int_t)before - (json_int_t)after));
		json_object_set_new(report, "merges", json_copy(merges));
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
