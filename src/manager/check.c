/* check [--repair]: the bundle against vm.json, settling interrupted
 * operations and removing leftovers. */
#include "disk/image_lock.h"
#include "disk/qcow2_check.h"
#include "manager/mgr_internal.h"
#include "snapshot/snapdir.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "vmm/config_json.h"
#include "vmm/vm_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- check -------------------------------------------------------------- */

struct check_ctx {
	struct bundle *b;
	bool repair, running;
	const struct mgr_progress *pr;
	json_t *problems, *repaired, *refs;
};

static void append_vfmt(json_t *list, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void append_vfmt(json_t *list, const char *fmt, va_list ap)
{
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	json_array_append_new(list, json_string(buf));
}

static void problem(struct check_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem(struct check_ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	append_vfmt(c->problems, fmt, ap);
	va_end(ap);
}

static void repaired(struct check_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void repaired(struct check_ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	append_vfmt(c->repaired, fmt, ap);
	va_end(ap);
}

/* An interrupted operation: a snapshot is adopted when its directory was
 * committed, else dropped; a delete is finished. */
static int check_pending(struct check_ctx *c)
{
	struct bundle *b = c->b;
	struct bundle_pending *p = b->pending;
	if (!p)
		return 0;
	char op[32], id[32];
	snprintf(op, sizeof(op), "%s", p->op ? p->op : "?");
	snprintf(id, sizeof(id), "%s", p->id ? p->id : "?");
	problem(c, "an interrupted \"%s\" (snapshot id %s) is pending", op, id);
	if (!c->repair)
		return 0;
	if (mgr_streq(op, "delete")) {
		int r = mgr_delete_apply(b, c->pr);
		if (r == 0)
			repaired(c, "finished the interrupted delete");
		return r;
	}
	if (mgr_streq(op, "revert")) {
		int moved = mgr_revert_settle(b, c->running);
		if (moved < 0)
			return moved;
		repaired(c,
			 moved ? "recorded the interrupted revert to %s"
			       : "the interrupted revert to %s had not happened",
			 id);
		return 0;
	}
	int kind = mgr_snapshot_settle(b, c->running);
	if (kind < 0)
		return kind;
	repaired(c,
		 kind == MGR_SETTLE_MEMORY ? "adopted the committed snapshot %s"
		 : kind == MGR_SETTLE_DISK_ONLY
		     ? "kept snapshot %s (its disks were frozen), disk only"
		     : "dropped the snapshot %s that was never taken",
		 id);
	return 0;
}

static void ref(struct check_ctx *c, const char *path)
{
	if (path)
		json_object_set_new(c->refs, path, json_true());
}

static void check_layer(struct check_ctx *c, const char *what, const char *path,
			const char *want_backing, bool active)
{
	if (!path) {
		problem(c, "%s: no layer recorded", what);
		return;
	}
	ref(c, path);
	if (access(path, F_OK) < 0) {
		problem(c, "%s: layer %s is missing", what, path);
		return;
	}
	char *bk = NULL;
	if (mgr_layer_backing(path, &bk) < 0) {
		problem(c, "%s: %s", what, err_msg());
		return;
	}
	if (want_backing && !mgr_streq(bk, want_backing) && c->repair &&
	    mgr_own_layer(c->b, path) && !(active && c->running) && mgr_layer_relink(path) == 1) {
		/* an absolute name from before the bundle moved */
		free(bk);
		bk = NULL;
		if (mgr_layer_backing(path, &bk) == 0 && mgr_streq(bk, want_backing))
			repaired(c, "%s: layer %s: backing file named relative", what, path);
	}
	if (want_backing && !mgr_streq(bk, want_backing))
		problem(c, "%s: layer %s has backing file %s, expected %s", what, path,
			bk ? bk : "(none)", want_backing);
	free(bk);
	if (!mgr_own_layer(c->b, path) || (active && c->running))
		return; /* a clone origin's layer is checked by its own bundle */
	struct qcow2_check_result res;
	int r = qcow2_check(path, 0, &res, NULL);
	if (r < 0) {
		problem(c, "%s: %s", what, err_msg());
		return;
	}
	if (res.corruptions || res.check_errors)
		problem(c, "%s: %s: %llu corruptions, %llu check errors", what, path,
			(unsigned long long)res.corruptions, (unsigned long long)res.check_errors);
	if (res.leaks) {
		/* a repair writes the layer: not while a VM reads it (its lock
		 * refuses), and past its frozen mark, which stays */
		struct mgr_frozen f;
		unsigned long long leaks = res.leaks;
		err_clear();
		bool tried = c->repair && mgr_layer_thaw(path, &f) == 0;
		bool fixed = tried &&
			     qcow2_check(path, QCOW2_CHECK_REPAIR_LEAKS, &res, NULL) == 0 &&
			     !res.leaks;
		if (tried)
			mgr_layer_refreeze(path, &f);
		if (fixed)
			repaired(c, "%s: %s: leaked clusters freed", what, path);
		else if (c->repair)
			problem(c, "%s: %s: %llu leaked clusters not freed: %s", what, path, leaks,
				err_msg()[0] ? err_msg() : "some remain");
		else
			problem(c, "%s: %s: %llu leaked clusters", what, path, leaks);
	}
}

static void check_memory(struct check_ctx *c, const char *sid, const char *name)
{
	char sd[PATH_MAX];
	mgr_snap_dir(c->b, sid, sd, sizeof(sd));
	struct state_reader *rd = NULL;
	struct vm_config cfg = {0};
	int r = vm_snapshot_open(sd, &rd, &cfg);
	if (r == 0)
		r = vm_snapshot_check_memory(sd, rd, cfg.mem_size, 1);
	if (r < 0)
		problem(c, "snapshot \"%s\": %s", name, err_msg());
	if (rd)
		state_reader_close(rd);
	vm_config_free(&cfg);
	/* a memory image rewritten when a parent was deleted, interrupted: the
	 * image itself is the old one or the new one, both whole */
	char mem[PATH_MAX], tmp[PATH_MAX + 8];
	snapdir_path(sd, SNAPDIR_MEMORY, mem, sizeof(mem));
	snprintf(tmp, sizeof(tmp), "%s.tmp", mem);
	if (access(tmp, F_OK) == 0) {
		problem(c, "%s: left over by an interrupted write", tmp);
		if (c->repair && unlink(tmp) == 0)
			repaired(c, "removed %s", tmp);
	}
}

/* A stopped VM's active layer that is frozen (a snapshot froze it and was
 * then not recorded): the next run cannot write to it.  No snapshot names
 * it (checked before), so the repair thaws it. */
static void check_active_frozen(struct check_ctx *c, const char *path)
{
	char mark[PATH_MAX];
	struct stat st;
	bool marked = image_frozen_read(path, mark, sizeof(mark));
	if (!marked && (stat(path, &st) < 0 || (st.st_mode & 0200)))
		return;
	problem(c, "active layer %s is frozen (%s): the VM cannot write to it", path,
		marked ? mark : "read-only");
	struct mgr_frozen f;
	if (c->repair && mgr_own_layer(c->b, path)) {
		mgr_layer_thaw(path, &f);
		if (!image_frozen_read(path, mark, sizeof(mark)) && stat(path, &st) == 0 &&
		    (st.st_mode & 0200))
			repaired(c, "active layer %s: thawed (writable again)", path);
	}
}

static const char *layer_at(const struct bundle_snapshot *s, int i)
{
	return s && i < s->layers.n ? s->layers.path[i] : NULL;
}

static void check_tree(struct check_ctx *c)
{
	struct bundle *b = c->b;
	for (size_t k = 0; k < b->nsnaps; k++) {
		const struct bundle_snapshot *s = b->snaps[k];
		char what[256];
		snprintf(what, sizeof(what), "snapshot \"%s\"", s->name ? s->name : s->id);
		const struct bundle_snapshot *ps = s->parent ? bundle_snap(b, s->parent) : NULL;
		if (s->parent && !ps)
			problem(c, "%s: parent %s does not exist", what, s->parent);
		for (int i = 0; i < s->layers.n; i++)
			check_layer(c, what, s->layers.path[i], layer_at(ps, i), false);
		char sd[PATH_MAX];
		mgr_snap_dir(b, s->id, sd, sizeof(sd));
		if (s->memory) {
			ref(c, sd);
			check_memory(c, s->id, what);
		}
	}
	const char *cur = b->current, *res = b->resume;
	const struct bundle_snapshot *cs = bundle_snap(b, cur);
	if (cur && !cs)
		problem(c, "current snapshot %s does not exist", cur);
	if (res && !bundle_snap(b, res))
		problem(c, "the snapshot %s to resume does not exist", res);
	if (!b->has_active && !res)
		problem(c, "no active layer and nothing to resume");
	for (int i = 0; b->has_active && i < b->active.n; i++) {
		check_layer(c, "active layer", b->active.path[i], layer_at(cs, i), true);
		/* the VM would write into what a snapshot keeps */
		bool shared = false;
		for (size_t k = 0; k < b->nsnaps; k++)
			if (mgr_streq(layer_at(b->snaps[k], i), b->active.path[i])) {
				problem(c, "active layer %s is the layer of snapshot \"%s\"",
					b->active.path[i], b->snaps[k]->name);
				shared = true;
			}
		if (!shared && !c->running)
			check_active_frozen(c, b->active.path[i]);
	}
}

static void check_clones(struct check_ctx *c)
{
	int reg = mgr_clone_register_moved(c->b, c->repair);
	if (reg != 1)
		problem(c, "the origin %s does not name this linked clone (it was moved)",
			c->b->origin->bundle);
	if (reg == 2)
		repaired(c, "the origin %s names this linked clone where it is now",
			 c->b->origin->bundle);
	for (size_t i = 0; i < c->b->nclones;) {
		char p[PATH_MAX - 16], vj[PATH_MAX];
		const char *ps = c->b->clones[i].path;
		snprintf(p, sizeof(p), "%s", ps ? ps : "");
		snprintf(vj, sizeof(vj), "%s/vm.json", p);
		if (access(vj, F_OK) == 0) {
			i++;
			continue;
		}
		problem(c, "linked clone %s is gone (or its creation was interrupted)", p);
		if (c->repair) {
			bundle_clone_remove(c->b, i);
			if (bundle_save(c->b) == 0)
				repaired(c, "dropped the clone entry %s", p);
			continue;
		}
		i++;
	}
}

/* Files no committed state names: left by an interrupted operation. */
static void check_leftovers(struct check_ctx *c, const char *sub)
{
	char dir[PATH_MAX];
	bundle_path(c->b, dir, sizeof(dir), sub);
	DIR *d = opendir(dir);
	if (!d) {
		problem(c, "%s: %s", dir, strerror(errno));
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char p[PATH_MAX];
		path_join(p, sizeof(p), dir, de->d_name);
		if (json_object_get(c->refs, p))
			continue;
		problem(c, "%s: left over by an interrupted operation", p);
		if (c->repair && mgr_rm_rf(p) == 0)
			repaired(c, "removed %s", p);
		else if (c->repair)
			problem(c, "%s", err_msg());
	}
	closedir(d);
	if (c->repair)
		file_fsync_parent(dir);
}

int mgr_check(const char *name, bool repair, const struct mgr_progress *pr, json_t *report)
{
	struct bundle *b;
	int r = bundle_open(name, repair, repair ? "cairn check --repair" : "cairn check", &b);
	char real[PATH_MAX];
	if (r == -ENOENT && realpath(name, real)) {
		if (!mgr_bundle_remains(real, false))
			return r;
		json_object_set_new(
		    report, "problems",
		    json_pack("[s]", "no vm.json: an interrupted create or destroy"));
		if (!repair)
			return err_set(EUCLEAN,
				       "%s: an interrupted create or destroy; 'cairn check "
				       "--repair' (or 'cairn destroy') removes it",
				       real);
		if ((r = mgr_remove_bundle(real)) < 0)
			return r;
		json_object_set_new(report, "repaired", json_pack("[s]", "removed the bundle"));
		return 0;
	}
	if (r < 0)
		return r;
	struct check_ctx c = {.b = b,
			      .repair = repair,
			      .pr = pr,
			      .running = bundle_running(b->dir, NULL),
			      .problems = json_array(),
			      .repaired = json_array(),
			      .refs = json_object()};
	r = check_pending(&c);
	c.running = bundle_running(b->dir, NULL); /* settling may have seen it end */
	if (r == 0) {
		check_tree(&c);
		check_clones(&c);
		bool known = true;
		if (c.running) {
			/* never take what the VM writes to, whatever vm.json says;
			 * a VM that does not say is not guessed at: nothing goes */
			struct bundle_layers now;
			if (mgr_running_disks(b, &now) == 0) {
				for (int i = 0; i < now.n; i++)
					ref(&c, now.path[i]);
				if (b->has_active && !bundle_layers_equal(&now, &b->active) &&
				    !b->pending)
					problem(&c, "the running VM writes to %s, vm.json names %s",
						now.n ? now.path[0] : "(null)",
						b->active.n ? b->active.path[0] : "(null)");
				bundle_layers_free(&now);
			} else {
				known = false;
				problem(&c, "cannot ask the running VM where it writes: %s",
					err_msg());
			}
		}
		if (!b->pending && known) {
			check_leftovers(&c, "disks");
			check_leftovers(&c, "snapshots");
		}
		char tmp[PATH_MAX];
		bundle_path(b, tmp, sizeof(tmp), "vm.json.tmp");
		if (access(tmp, F_OK) == 0) {
			problem(&c, "%s: left over by an interrupted write", tmp);
			if (repair && unlink(tmp) == 0)
				repaired(&c, "removed %s", tmp);
		}
	}
	json_object_set_new(report, "bundle", json_string(b->dir));
	json_object_set_new(report, "snapshots", json_integer((json_int_t)b->nsnaps));
	json_object_set(report, "problems", c.problems);
	json_object_set(report, "repaired", c.repaired);
	if (r == 0 && json_array_size(c.problems) && !repair)
		r = err_set(EUCLEAN,
			    "%s: %zu problem(s) found; 'cairn check --repair' fixes what "
			    "it can",
			    b->dir, json_array_size(c.problems));
	if (r == 0 && repair && json_array_size(c.problems)) {
		/* what is left after the repair decides */
		json_t *again = json_object();
		r = mgr_check(b->dir, false, NULL, again);
		json_object_set(report, "remaining", json_object_get(again, "problems"));
		json_decref(again);
	}
	json_decref(c.problems);
	json_decref(c.repaired);
	json_decref(c.refs);
	bundle_close(b);
	return r;
}
