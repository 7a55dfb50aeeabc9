/* clone: linked (a new layer on the snapshot's frozen layer) or full. */
#include "disk/chain.h"
#include "manager/mgr_internal.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "vmm/config_json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The clone's model: B's machine with new disk serials, a new machine id
 * and seed, on the layers ACT; a linked clone records its origin. */
static int clone_model(const struct bundle *b, const struct bundle_snapshot *s, bool full,
		       struct bundle *n, const struct bundle_layers *act, const char *newname)
{
	int r = bundle_init(n, n->dir, newname);
	if (r < 0)
		return r;
	json_t *j = vm_config_to_json(&b->config);
	r = vm_config_from_json(j, "vm.json", &n->config);
	json_decref(j);
	if (r < 0)
		return r;
	for (int i = 0; i < n->config.ndisks; i++) {
		char serial[21] = "cairn-";
		bundle_random_hex(serial + 6, 12);
		bundle_set_str(&n->config.disks[i].serial, serial);
		bundle_set_str(&n->config.disks[i].path, i < act->n ? act->path[i] : NULL);
	}
	char seed[17];
	bundle_random_hex(seed, 16);
	bundle_set_str(&n->seed, seed);
	n->has_active = true;
	if ((r = bundle_layers_copy(&n->active, act)) < 0 || full)
		return r;
	if (!(n->origin = calloc(1, sizeof(*n->origin))))
		return err_set(ENOMEM, "%s", n->dir);
	bundle_set_str(&n->origin->bundle, b->dir);
	bundle_set_str(&n->origin->snapshot, s->id);
	bundle_set_str(&n->origin->snapshot_name, s->name);
	return bundle_layers_copy(&n->origin->layers, &s->layers);
}

/* A linked clone that failed: its entry in the origin goes again (best
 * effort: a stale entry is dropped by check --repair). */
static void unregister_failed(struct bundle *b, const char *ndir)
{
	struct err_saved e;
	err_save(&e);
	for (size_t i = 0; i < b->nclones; i++)
		if (mgr_streq(b->clones[i].path, ndir)) {
			bundle_clone_remove(b, i);
			bundle_save(b);
			break;
		}
	err_restore(&e);
}

int mgr_clone(const char *name, const char *snap, const char *newname, bool full,
	      const struct mgr_progress *pr, json_t *report)
{
	struct bundle *b;
	struct bundle_snapshot *s;
	int r =
	    mgr_open_write_snap(name, full ? "cairn clone --full" : "cairn clone", snap, &b, &s);
	if (r < 0)
		return r;
	char ndir[PATH_MAX];
	bool registered = false;
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
		if ((r = bundle_clone_add(b, ndir, s->id)) < 0 || (r = bundle_save(b)) < 0)
			goto out;
		registered = true;
	}
	if (full) {
		uint64_t need = 0;
		for (struct bundle_snapshot *a = s; a; a = bundle_snap(b, a->parent))
			need += mgr_layers_bytes(&a->layers);
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
	int lock = -1;
	if ((r = mgr_make_dirs(newname, "cairn clone", real, sizeof(real), &lock)) < 0)
		goto out;
	struct bundle n = {.dir = real, .lock_fd = lock};
	struct bundle_layers act = {0};
	for (int i = 0; i < s->layers.n && r == 0; i++) {
		char p[PATH_MAX];
		if (full) {
			char dn[32];
			snprintf(dn, sizeof(dn), "disk%d.qcow2", i);
			r = mgr_sub_path(&n, p, sizeof(p), "disks", dn);
			if (r < 0)
				break;
			struct chain_convert_opts co = {.src_fmt = "qcow2", .dst_fmt = "qcow2"};
			r = chain_convert(s->layers.path[i], p, &co, mgr_copy_progress(pr));
		} else {
			r = mgr_new_layer(&n, s->layers.path[i], p, sizeof(p));
		}
		if (r == 0)
			r = bundle_layers_add(&act, p);
	}
	if (r == 0)
		r = clone_model(b, s, full, &n, &act, newname);
	if (r == 0)
		r = bundle_save(&n);
	if (r == 0 && report) {
		json_object_set_new(report, "clone", json_string(real));
		json_object_set_new(report, "linked", json_boolean(!full));
		json_object_set_new(report, "machine_id", json_string(n.machine_id));
		json_object_set_new(report, "seed", json_string(n.seed));
	}
	bundle_layers_free(&act);
	bundle_clear(&n);
	if (n.dir != real)
		free(n.dir);
	if (r < 0) /* a clone that failed leaves nothing */
		mgr_remove_new_bundle(real, &lock);
	if (lock >= 0)
		close(lock);
out:
	if (r < 0 && !full && registered)
		unregister_failed(b, ndir);
	bundle_close(b);
	return r;
}
