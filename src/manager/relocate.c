/* Relocatable bundles: every qcow2 layer of the bundle names its backing
 * file relative to its own directory when that file is beside it, so that
 * the bundle directory can be moved (vm.json's paths are relative too, see
 * bundle.h).  Layers made by the manager are created that way; the VM names
 * the overlays it makes by absolute path, and those are renamed here once
 * the VM no longer writes to them. */
#include "disk/block.h"
#include "disk/qcow2.h"
#include "manager/mgr_internal.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "vmm/config_json.h"
#include "vmm/vm_snapshot.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The relative name PATH should give its backing file NAME, or NULL to
 * leave it: NAME is absolute and beside PATH, or NAME is absolute in a
 * disks/ directory that no longer exists (the bundle was moved) and a file
 * of that name is beside PATH. */
static const char *relative_name(const char *path, const char *name)
{
	if (name[0] != '/')
		return NULL;
	const char *rel = qcow2_relative_backing(path, name);
	if (rel != name)
		return rel;
	const char *slash = strrchr(name, '/'), *pslash = strrchr(path, '/');
	if (!pslash || slash - name < 6 || strncmp(slash - 6, "/disks", 6) ||
	    access(name, F_OK) == 0)
		return NULL;
	char beside[PATH_MAX];
	snprintf(beside, sizeof(beside), "%.*s%s", (int)(pslash - path), path, slash);
	return access(beside, F_OK) == 0 ? slash + 1 : NULL;
}

int mgr_layer_relink(const char *path)
{
	char *name = NULL, *fmt = NULL;
	int r = mgr_layer_stored_backing(path, &name, &fmt);
	const char *rel = r == 0 && name ? relative_name(path, name) : NULL;
	if (rel) {
		struct mgr_frozen f;
		if ((r = mgr_layer_thaw(path, &f)) == 0) {
			r = qcow2_set_backing(path, rel, fmt, true);
			mgr_layer_refreeze(path, &f);
		}
	}
	free(name);
	free(fmt);
	return r < 0 ? r : rel != NULL;
}

void mgr_relink_layers(const struct bundle *b, const struct bundle_layers *layers)
{
	for (int i = 0; i < layers->n; i++)
		if (mgr_own_layer(b, layers->path[i]) && mgr_layer_relink(layers->path[i]) < 0)
			err_clear(); /* stays absolute: it works, only a move would break it */
}

void mgr_relink_all(const struct bundle *b)
{
	for (size_t i = 0; i < b->nsnaps; i++)
		mgr_relink_layers(b, &b->snaps[i]->layers);
	if (b->has_active)
		mgr_relink_layers(b, &b->active);
}

/* Is entry C of an origin this clone B (by real path)? */
static bool clone_entry_is(const struct bundle_clone *c, const struct bundle *b)
{
	char real[PATH_MAX];
	return c->path && realpath(c->path, real) && !strcmp(real, b->dir);
}

static bool clone_entry_gone(const struct bundle_clone *c)
{
	char vj[PATH_MAX];
	snprintf(vj, sizeof(vj), "%s/vm.json", c->path ? c->path : "");
	return access(vj, F_OK) < 0;
}

int mgr_clone_register_moved(const struct bundle *b, bool fix)
{
	if (!b->origin || !b->origin->bundle)
		return 1;
	struct bundle *o;
	if (bundle_open(b->origin->bundle, fix, "cairn (a moved linked clone)", &o) < 0) {
		err_clear(); /* origin gone or busy: its layers' check says the rest */
		return 1;
	}
	int r = 0;
	size_t i, stale = o->nclones;
	for (i = 0; i < o->nclones; i++) {
		if (clone_entry_is(&o->clones[i], b))
			break;
		if (stale == o->nclones && mgr_streq(o->clones[i].snapshot, b->origin->snapshot) &&
		    clone_entry_gone(&o->clones[i]))
			stale = i;
	}
	if (i < o->nclones) {
		r = 1;
	} else if (fix && stale < o->nclones) {
		/* the entry of the same snapshot whose clone is gone: this one,
		 * moved (any such entry protects the same snapshot) */
		r = bundle_set_str(&o->clones[stale].path, b->dir);
		if (r == 0)
			r = bundle_save(o);
		r = r == 0 ? 2 : 0;
		err_clear();
	}
	bundle_close(o);
	return r;
}
