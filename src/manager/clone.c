/* clone: linked (a new layer on the snapshot's frozen layer) or full. */
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

/* ---- clone ---------------------------------------------------------------- */

int mgr_clone(const char *name, const char *snap, const char *newname, bool full,
	      const struct mgr_progress *pr, json_t *report)
{
	struct bundle *b;
	int r = mgr_open_write(name, full ? "cairn clone --full" : "cairn clone", &b);
	if (r < 0)
		return r;
	const char *sid;
	json_t *s = bundle_snap_by_name(b, snap, &sid);
	if (!s) {
		r = -ENOENT;
		goto out;
	}
	char ndir[PATH_MAX];
	/* a linked clone is registered in the origin first, so that no delete
	 * can ever miss it; a stale entry (clone never finished) is dropped by
	 * check --repair */
	if (!full) {
		char *cwdabs = realpath(".", NULL);
		if (newname[0] == '/')
			snprintf(ndir, sizeof(ndir), "%s", newname);
		else
			snprintf(ndir, sizeof(ndir), "%s/%s", cwdabs ? cwdabs : ".", newname);
		free(cwdabs);
		json_array_append_new(mgr_jarr(b->doc, "clones"),
				      json_pack("{s:s, s:s}", "path", ndir, "snapshot", sid));
		if ((r = bundle_save(b)) < 0)
			goto out;
	}
	if (full) {
		uint64_t need = 0;
		for (json_t *a = s; a; a = bundle_snap(b, bundle_str(a, "parent")))
			need += mgr_layers_bytes(mgr_jarr(a, "layers"));
		char parent[PATH_MAX];
		snprintf(parent, sizeof(parent), "%s", newname);
		char *slash = strrchr(parent, '/');
		if (slash)
			*slash = 0;
		if ((r = mgr_need_space(slash ? (*parent ? parent : "/") : ".", need,
					"a full clone")) < 0)
			goto out;
	}
	char real[PATH_MAX];
	if ((r = mgr_make_dirs(newname, real, sizeof(real))) < 0)
		goto out;
	int lock = -1;
	if ((r = bundle_lock(real, "cairn clone", &lock)) < 0)
		goto out;
	struct bundle n = {.dir = real, .lock_fd = lock};
	json_t *layers = mgr_jarr(s, "layers"), *act = json_array();
	for (size_t i = 0; i < json_array_size(layers) && r == 0; i++) {
		char p[PATH_MAX];
		if (full) {
			char dn[32];
			snprintf(dn, sizeof(dn), "disk%zu.qcow2", i);
			r = mgr_sub_path(&n, p, sizeof(p), "disks", dn);
			if (r < 0)
				break;
			struct chain_convert_opts co = {.src_fmt = "qcow2", .dst_fmt = "qcow2"};
			r = chain_convert(mgr_jstr_at(layers, i), p, &co, mgr_copy_progress(pr));
		} else {
			r = mgr_new_layer(&n, mgr_jstr_at(layers, i), p, sizeof(p));
		}
		if (r == 0)
			json_array_append_new(act, json_string(p));
	}
	if (r < 0) {
		json_decref(act);
		close(lock);
		goto out;
	}
	n.doc = mgr_new_doc(newname);
	json_t *cfg = json_deep_copy(json_object_get(b->doc, "config"));
	size_t i;
	json_t *d;
	json_array_foreach(mgr_jarr(cfg, "disks"), i, d)
	{
		char serial[21] = "cairn-";
		bundle_random_hex(serial + 6, 12);
		json_object_set_new(d, "serial", json_string(serial));
		json_object_set(d, "path", json_array_get(act, i));
	}
	char seed[17];
	bundle_random_hex(seed, 16);
	json_object_set_new(n.doc, "config", cfg);
	json_object_set_new(n.doc, "seed", json_string(seed));
	json_object_set_new(n.doc, "active", act);
	if (!full)
		json_object_set_new(n.doc, "origin",
				    json_pack("{s:s, s:s, s:s, s:O}", "bundle", b->dir, "snapshot",
					      sid, "snapshot_name", snap, "layers", layers));
	r = bundle_save(&n);
	if (r == 0 && report) {
		json_object_set_new(report, "clone", json_string(real));
		json_object_set_new(report, "linked", json_boolean(!full));
		json_object_set(report, "machine_id", json_object_get(n.doc, "machine_id"));
		json_object_set_new(report, "seed", json_string(seed));
	}
	json_decref(n.doc);
	close(lock);
out:
	bundle_close(b);
	return r;
}
