/* snapshot list: the tree with its sizes. */
#include "manager/mgr_internal.h"
#include "util/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- list --------------------------------------------------------------- */

uint64_t mgr_layers_bytes(const json_t *layers)
{
	uint64_t n = 0;
	size_t i;
	json_t *v;
	json_array_foreach(layers, i, v) n += mgr_file_bytes(json_string_value(v));
	return n;
}

static void list_walk(const struct bundle *b, const char *parent, int depth, uint64_t shared,
		      json_t *out)
{
	/* children in creation order */
	json_t *kids = json_array();
	const char *id;
	json_t *s;
	json_object_foreach(bundle_snapshots(b), id, s)
	{
		const char *p = bundle_str(s, "parent");
		if ((parent && mgr_streq(p, parent)) || (!parent && !p)) {
			size_t at = json_array_size(kids);
			for (size_t k = 0; k < json_array_size(kids); k++) {
				json_t *o = bundle_snap(b, mgr_jstr_at(kids, k));
				if (strcmp(bundle_str(s, "created"), bundle_str(o, "created")) <
				    0) {
					at = k;
					break;
				}
			}
			json_array_insert_new(kids, at, json_string(id));
		}
	}
	for (size_t k = 0; k < json_array_size(kids); k++) {
		const char *kid = mgr_jstr_at(kids, k);
		s = bundle_snap(b, kid);
		char sd[PATH_MAX];
		mgr_snap_dir(b, kid, sd, sizeof(sd));
		uint64_t layer = mgr_layers_bytes(mgr_jarr(s, "layers"));
		uint64_t own = layer + bundle_du(sd);
		json_array_append_new(
		    out, json_pack(
			     "{s:s, s:s, s:O, s:O, s:O, s:O, s:I, s:I, s:b, s:b, s:i}", "name",
			     bundle_str(s, "name"), "id", kid, "parent",
			     json_object_get(s, "parent"), "created", json_object_get(s, "created"),
			     "memory", json_object_get(s, "memory"), "description",
			     json_object_get(s, "description") ? json_object_get(s, "description")
							       : json_null(),
			     "own_bytes", (json_int_t)own, "shared_bytes", (json_int_t)shared,
			     "current", mgr_streq(bundle_str(b->doc, "current"), kid), "suspended",
			     mgr_streq(bundle_str(b->doc, "resume"), kid), "depth", depth));
		list_walk(b, kid, depth + 1, shared + layer, out);
	}
	json_decref(kids);
}

int mgr_snapshot_list(const char *name, json_t **out)
{
	struct bundle *b;
	int r = bundle_open(name, false, NULL, &b);
	if (r < 0)
		return r;
	json_t *arr = json_array();
	list_walk(b, NULL, 0, 0, arr);
	json_t *cur = bundle_snap(b, bundle_str(b->doc, "current"));
	*out = json_pack("{s:s, s:o, s:s?, s:I}", "state", mgr_vm_state(b, NULL), "snapshots", arr,
			 "current", cur ? bundle_str(cur, "name") : NULL, "active_bytes",
			 (json_int_t)mgr_layers_bytes(mgr_active_layers(b)));
	bundle_close(b);
	return 0;
}
