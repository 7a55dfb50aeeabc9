/* snapshot list: the tree with its sizes. */
#include "manager/mgr_internal.h"
#include "snapshot/mem_chain.h"
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

uint64_t mgr_layers_bytes(const struct bundle_layers *layers)
{
	uint64_t n = 0;
	for (int i = 0; i < layers->n; i++)
		n += mgr_file_bytes(layers->path[i]);
	return n;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* The children of PARENT (NULL: the roots) in creation order. */
static size_t list_children(const struct bundle *b, const char *parent,
			    struct bundle_snapshot **kids)
{
	size_t n = 0;
	for (size_t i = 0; i < b->nsnaps; i++) {
		struct bundle_snapshot *s = b->snaps[i];
		if (!((parent && mgr_streq(s->parent, parent)) || (!parent && !s->parent)))
			continue;
		size_t at = n;
		for (size_t k = 0; k < n; k++) {
			if (strcmp(s->created ? s->created : "",
				   kids[k]->created ? kids[k]->created : "") < 0) {
				at = k;
				break;
			}
		}
		memmove(&kids[at + 1], &kids[at], (n - at) * sizeof(*kids));
		kids[at] = s;
		n++;
	}
	return n;
}

/* The bytes of snapshot S's memory: its own image and the images under it
 * that it stands on (shared with the snapshots that stand on them too). */
static void memory_bytes(const struct bundle *b, const struct bundle_snapshot *s, uint64_t *own,
			 uint64_t *shared)
{
	char mem[PATH_MAX];
	struct mem_image_info mi;
	struct mem_chain *c;
	*own = *shared = 0;
	if (!s->memory || mgr_snap_memory(b, s->id, mem, sizeof(mem), &mi) < 0 ||
	    mem_chain_open(mem, mi.size, &c) < 0) {
		err_clear(); /* a broken chain is for cairn check to report */
		return;
	}
	*own = mi.data_bytes;
	for (unsigned i = 1; i < mem_chain_length(c); i++)
		*shared += mem_layer_info(mem_chain_layer(c, i))->data_bytes;
	mem_chain_close(c);
}

static void list_walk(const struct bundle *b, const char *parent, int depth, uint64_t shared,
		      json_t *out)
{
	struct bundle_snapshot **kids = calloc(b->nsnaps + 1, sizeof(*kids));
	if (!kids)
		return;
	size_t n = list_children(b, parent, kids);
	for (size_t k = 0; k < n; k++) {
		const struct bundle_snapshot *s = kids[k];
		char sd[PATH_MAX];
		mgr_snap_dir(b, s->id, sd, sizeof(sd));
		uint64_t layer = mgr_layers_bytes(&s->layers);
		uint64_t own = layer + bundle_du(sd), mem_own, mem_shared;
		memory_bytes(b, s, &mem_own, &mem_shared);
		json_t *e;
		json_array_append_new(
		    out, e = json_pack("{s:s?, s:s, s:o, s:o, s:b, s:o, s:I, s:I, s:b, s:b, s:i}",
				   "name", s->name, "id", s->id, "parent", str_or_null(s->parent),
				   "created", str_or_null(s->created), "memory", s->memory,
				   "description", str_or_null(s->description), "own_bytes",
				   (json_int_t)own, "shared_bytes", (json_int_t)(shared + mem_shared), "current",
				   mgr_streq(b->current, s->id), "suspended",
				   mgr_streq(b->resume, s->id), "depth", depth));
		if (e && s->memory) {
			json_object_set_new(e, "memory_own_bytes", json_integer((json_int_t)mem_own));
			json_object_set_new(e, "memory_shared_bytes",
					    json_integer((json_int_t)mem_shared));
		}
		list_walk(b, s->id, depth + 1, shared + layer, out);
	}
	free(kids);
}

int mgr_snapshot_list(const char *name, json_t **out)
{
	struct bundle *b;
	int r = bundle_open(name, false, NULL, &b);
	if (r < 0)
		return r;
	json_t *arr = json_array();
	list_walk(b, NULL, 0, 0, arr);
	struct bundle_snapshot *cur = bundle_snap(b, b->current);
	*out = json_pack("{s:s, s:o, s:s?, s:I}", "state", mgr_vm_state(b, NULL), "snapshots", arr,
			 "current", cur ? cur->name : NULL, "active_bytes",
			 (json_int_t)mgr_layers_bytes(&b->active));
	bundle_close(b);
	return 0;
}
