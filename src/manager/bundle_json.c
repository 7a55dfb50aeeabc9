/* vm.json <-> struct bundle: the one place that knows vm.json's members.
 * Paths of the bundle's own files are relative to the bundle directory in
 * vm.json and absolute in memory (bundle.h). */
#include "manager/bundle.h"
#include "util/err.h"
#include "vmm/config_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- paths: absolute in memory, relative to the bundle in vm.json ---- */

/* A path as read from vm.json: relative ones are inside the bundle. */
static char *path_from_json(const struct bundle *b, const json_t *j)
{
	const char *s = json_string_value(j);
	if (!s)
		return NULL;
	if (s[0] == '/')
		return strdup(s);
	char *out = NULL;
	return asprintf(&out, "%s/%s", b->dir, s) < 0 ? NULL : out;
}

/* A path for vm.json: relative when it is inside the bundle (RELATIVE). */
static json_t *path_to_json(const struct bundle *b, const char *path, bool relative)
{
	if (!path)
		return json_null();
	size_t l = strlen(b->dir);
	if (relative && !strncmp(path, b->dir, l) && path[l] == '/' && path[l + 1])
		return json_string(path + l + 1);
	return json_string(path);
}

static char *str_from_json(const json_t *j)
{
	const char *s = json_string_value(j);
	return s ? strdup(s) : NULL;
}

static json_t *str_to_json(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int layers_from_json(const struct bundle *b, const json_t *a, struct bundle_layers *l,
			    const char *what)
{
	memset(l, 0, sizeof(*l));
	if (!json_is_array(a) || json_array_size(a) > VM_MAX_DISKS)
		return err_set(EINVAL, "%s/vm.json: %s: not a list of layers", b->dir, what);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		char *p = path_from_json(b, v);
		if (!p) {
			bundle_layers_free(l);
			return err_set(EINVAL, "%s/vm.json: %s: layer %zu is not a path", b->dir,
				       what, i);
		}
		l->path[l->n++] = p;
	}
	return 0;
}

static json_t *layers_to_json(const struct bundle *b, const struct bundle_layers *l, bool relative)
{
	json_t *a = json_array();
	for (int i = 0; i < l->n; i++)
		json_array_append_new(a, path_to_json(b, l->path[i], relative));
	return a;
}

/* ---- snapshots ---- */

static struct bundle_snapshot *snap_from_json(const struct bundle *b, const char *id,
					      const json_t *j)
{
	if (!json_is_object(j)) {
		err_set(EINVAL, "%s/vm.json: snapshot %s is not an object", b->dir, id);
		return NULL;
	}
	struct bundle_snapshot *s = calloc(1, sizeof(*s));
	if (!s) {
		err_set(ENOMEM, "%s/vm.json", b->dir);
		return NULL;
	}
	s->id = strdup(id);
	s->name = str_from_json(json_object_get(j, "name"));
	s->parent = str_from_json(json_object_get(j, "parent"));
	s->created = str_from_json(json_object_get(j, "created"));
	s->description = str_from_json(json_object_get(j, "description"));
	s->memory = json_is_true(json_object_get(j, "memory"));
	s->suspend = json_is_true(json_object_get(j, "suspend"));
	char what[64];
	snprintf(what, sizeof(what), "snapshot %s", id);
	if (layers_from_json(b, json_object_get(j, "layers"), &s->layers, what) < 0) {
		bundle_snap_free(s);
		return NULL;
	}
	return s;
}

static json_t *snap_to_json(const struct bundle *b, const struct bundle_snapshot *s, bool relative)
{
	return json_pack("{s:s?, s:o, s:s?, s:o, s:b, s:o, s:b}", "name", s->name, "parent",
			 str_to_json(s->parent), "created", s->created, "description",
			 str_to_json(s->description), "memory", s->memory, "layers",
			 layers_to_json(b, &s->layers, relative), "suspend", s->suspend);
}

/* ---- pending, clones, origin ---- */

static int pending_from_json(const struct bundle *b, const json_t *j, struct bundle_pending **out)
{
	*out = NULL;
	if (!j || json_is_null(j))
		return 0;
	struct bundle_pending *p = calloc(1, sizeof(*p));
	if (!p)
		return err_set(ENOMEM, "%s/vm.json", b->dir);
	*out = p;
	p->op = str_from_json(json_object_get(j, "op"));
	p->id = str_from_json(json_object_get(j, "id"));
	json_t *s = json_object_get(j, "snapshot"), *a = json_object_get(j, "active");
	if (s && !(p->snapshot = snap_from_json(b, p->id ? p->id : "?", s)))
		return -EINVAL;
	if (a && layers_from_json(b, a, &p->active, "pending") < 0)
		return -EINVAL;
	json_t *m = json_object_get(j, "merges");
	size_t n = json_array_size(m);
	p->merges = n ? calloc(n, sizeof(*p->merges)) : NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(m, i);
		const char *method = json_string_value(json_object_get(e, "method"));
		p->merges[i].layer = path_from_json(b, json_object_get(e, "layer"));
		p->merges[i].into = path_from_json(b, json_object_get(e, "into"));
		p->merges[i].method =
		    method && !strcmp(method, "commit") ? BUNDLE_MERGE_COMMIT : BUNDLE_MERGE_STREAM;
		p->nmerges++;
		if (!p->merges[i].layer || !p->merges[i].into)
			return err_set(EINVAL, "%s/vm.json: pending merge %zu is incomplete",
				       b->dir, i);
	}
	return 0;
}

static json_t *pending_to_json(const struct bundle *b, const struct bundle_pending *p,
			       bool relative)
{
	json_t *j = json_pack("{s:s?, s:s?}", "op", p->op, "id", p->id);
	if (p->snapshot)
		json_object_set_new(j, "snapshot", snap_to_json(b, p->snapshot, relative));
	if (p->active.n)
		json_object_set_new(j, "active", layers_to_json(b, &p->active, relative));
	if (p->merges) {
		json_t *m = json_array();
		for (size_t i = 0; i < p->nmerges; i++)
			json_array_append_new(
			    m, json_pack("{s:o, s:o, s:s}", "layer",
					 path_to_json(b, p->merges[i].layer, relative), "into",
					 path_to_json(b, p->merges[i].into, relative), "method",
					 p->merges[i].method == BUNDLE_MERGE_COMMIT ? "commit"
										    : "stream"));
		json_object_set_new(j, "merges", m);
	}
	return j;
}

static int clones_from_json(struct bundle *b, const json_t *a)
{
	size_t n = json_array_size(a);
	b->clones = n ? calloc(n, sizeof(*b->clones)) : NULL;
	if (n && !b->clones)
		return err_set(ENOMEM, "%s/vm.json", b->dir);
	for (size_t i = 0; i < n; i++) {
		json_t *c = json_array_get(a, i);
		b->clones[i].path = str_from_json(json_object_get(c, "path"));
		b->clones[i].snapshot = str_from_json(json_object_get(c, "snapshot"));
		b->nclones++;
	}
	return 0;
}

static int origin_from_json(struct bundle *b, const json_t *j)
{
	if (!json_is_object(j))
		return 0;
	struct bundle_origin *o = calloc(1, sizeof(*o));
	if (!o)
		return err_set(ENOMEM, "%s/vm.json", b->dir);
	b->origin = o;
	o->bundle = str_from_json(json_object_get(j, "bundle"));
	o->snapshot = str_from_json(json_object_get(j, "snapshot"));
	o->snapshot_name = str_from_json(json_object_get(j, "snapshot_name"));
	return layers_from_json(b, json_object_get(j, "layers"), &o->layers, "origin");
}

/* ---- the whole document ---- */

static const char *const known_members[] = {
    "format", "version",   "name",   "machine_id", "created", "config",	 "active", "current",
    "resume", "snapshots", "clones", "origin",	   "seed",    "pending", NULL};

static bool known_member(const char *k)
{
	for (int i = 0; known_members[i]; i++)
		if (!strcmp(known_members[i], k))
			return true;
	return false;
}

int bundle_from_json(struct bundle *b, json_t *doc, const char *path)
{
	json_t *snaps = json_object_get(doc, "snapshots"), *cfg = json_object_get(doc, "config");
	if (!json_is_object(snaps) || !json_is_object(cfg))
		return err_set(EINVAL, "%s: \"snapshots\" and \"config\" must be objects", path);
	int r = vm_config_from_json(cfg, path, &b->config);
	if (r < 0)
		return r;
	for (int i = 0; i < b->config.ndisks; i++) {
		json_t *p = json_object_get(
		    json_array_get(json_object_get(cfg, "disks"), (size_t)i), "path");
		free(b->config.disks[i].path);
		b->config.disks[i].path = path_from_json(b, p);
	}
	b->name = str_from_json(json_object_get(doc, "name"));
	b->machine_id = str_from_json(json_object_get(doc, "machine_id"));
	b->created = str_from_json(json_object_get(doc, "created"));
	b->current = str_from_json(json_object_get(doc, "current"));
	b->resume = str_from_json(json_object_get(doc, "resume"));
	b->seed = str_from_json(json_object_get(doc, "seed"));
	json_t *act = json_object_get(doc, "active");
	b->has_active = json_is_array(act);
	if (b->has_active && (r = layers_from_json(b, act, &b->active, "active")) < 0)
		return r;
	const char *id;
	json_t *s;
	json_object_foreach(snaps, id, s)
	{
		struct bundle_snapshot *sn = snap_from_json(b, id, s);
		if (!sn)
			return -EINVAL;
		if ((r = bundle_snap_add(b, sn)) < 0) {
			bundle_snap_free(sn);
			return r;
		}
	}
	if ((r = clones_from_json(b, json_object_get(doc, "clones"))) < 0 ||
	    (r = origin_from_json(b, json_object_get(doc, "origin"))) < 0 ||
	    (r = pending_from_json(b, json_object_get(doc, "pending"), &b->pending)) < 0)
		return r;
	b->extra = json_object();
	json_t *v;
	json_object_foreach(doc, id, v) if (!known_member(id)) json_object_set(b->extra, id, v);
	return 0;
}

json_t *bundle_to_json(const struct bundle *b, bool relative)
{
	json_t *cfg = vm_config_to_json(&b->config);
	for (int i = 0; i < b->config.ndisks; i++)
		json_object_set_new(json_array_get(json_object_get(cfg, "disks"), (size_t)i),
				    "path", path_to_json(b, b->config.disks[i].path, relative));
	json_t *snaps = json_object(), *clones = json_array();
	for (size_t i = 0; i < b->nsnaps; i++)
		json_object_set_new(snaps, b->snaps[i]->id, snap_to_json(b, b->snaps[i], relative));
	for (size_t i = 0; i < b->nclones; i++)
		json_array_append_new(clones, json_pack("{s:s?, s:s?}", "path", b->clones[i].path,
							"snapshot", b->clones[i].snapshot));
	json_t *origin = json_null();
	if (b->origin)
		origin =
		    json_pack("{s:s?, s:s?, s:s?, s:o}", "bundle", b->origin->bundle, "snapshot",
			      b->origin->snapshot, "snapshot_name", b->origin->snapshot_name,
			      "layers", layers_to_json(b, &b->origin->layers, false));
	json_t *doc =
	    json_pack("{s:s, s:i, s:s?, s:s?, s:s?, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "format",
		      BUNDLE_FORMAT, "version", BUNDLE_VERSION, "name", b->name, "machine_id",
		      b->machine_id, "created", b->created, "config", cfg, "active",
		      b->has_active ? layers_to_json(b, &b->active, relative) : json_null(),
		      "current", str_to_json(b->current), "resume", str_to_json(b->resume),
		      "snapshots", snaps, "clones", clones, "origin", origin);
	if (b->seed)
		json_object_set_new(doc, "seed", json_string(b->seed));
	if (b->pending)
		json_object_set_new(doc, "pending", pending_to_json(b, b->pending, relative));
	if (b->extra)
		json_object_update_missing(doc, b->extra);
	return doc;
}
