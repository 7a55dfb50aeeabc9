/* clone: linked (new layers on the snapshot's frozen layers) or full
 * (copies), booting afresh or, from a whole-machine snapshot, resuming its
 * machine: the clone then holds a snapshot of its own (state and a full
 * memory image, on its own frozen base layers) that its first run
 * restores. */
#include "disk/chain.h"
#include "manager/mgr_internal.h"
#include "net/net.h"
#include "snapshot/mem_chain.h"
#include "snapshot/snapdir.h"
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The clone's NICs: the origin's, each on the backend O gives (or the
 * origin's: a TAP is the origin's own and is refused).  A resumed guest
 * has seen its MAC, so it stays; a booted clone gets new ones unless
 * mac= says. */
static int clone_nics(const struct bundle *b, const struct mgr_clone_opts *o, bool resume,
		      struct vm_config *cfg)
{
	bool all_none = o->nnets == 1 && !strcmp(o->nets[0], "none");
	if (o->nnets && !all_none && o->nnets != cfg->nnics)
		return err_set(EINVAL,
			       "%s: the machine has %d NIC%s: give the clone as many --net "
			       "options (or one --net none)",
			       b->dir, cfg->nnics, cfg->nnics == 1 ? "" : "s");
	for (int i = 0; i < cfg->nnics; i++) {
		const char *spec =
		    o->nnets ? (all_none ? "none" : o->nets[i]) : cfg->nics[i].backend;
		if (!o->nnets && !strncmp(spec, "tap", 3))
			return err_set(EINVAL,
				       "%s: NIC %d is on TAP '%s', which the clone must not share: "
				       "give it its own (--net tap=IFNAME), or --net user / none",
				       b->dir, i, spec);
		struct net_spec ns;
		int r = net_spec_parse(spec, &ns);
		if (r < 0)
			return r;
		if (resume && ns.has_mac && memcmp(ns.mac, cfg->nics[i].mac, 6)) {
			char mac[NET_MAC_TEXT];
			net_mac_format(cfg->nics[i].mac, mac);
			return err_set(EINVAL,
				       "--net %s: a resumed clone keeps NIC %d's MAC address %s "
				       "(its guest has seen it)",
				       spec, i, mac);
		}
		if (!resume) {
			if (ns.has_mac)
				memcpy(cfg->nics[i].mac, ns.mac, 6);
			else
				mgr_random_mac(cfg->nics[i].mac);
		}
		if ((r = vm_config_set_nic_backend(cfg, i, spec)) < 0)
			return r;
	}
	return 0;
}

/* The clone's model: B's machine with new disk serials, a new machine id
 * and seed, on the layers ACT; a linked clone records its origin. */
static int clone_model(const struct bundle *b, const struct bundle_snapshot *s,
		       const struct mgr_clone_opts *o, bool resume, struct bundle *n,
		       const struct bundle_layers *act, const char *newname)
{
	int r = bundle_init(n, n->dir, newname);
	if (r < 0)
		return r;
	json_t *j = vm_config_to_json(&b->config);
	r = vm_config_from_json(j, "vm.json", &n->config);
	json_decref(j);
	if (r == 0)
		r = clone_nics(b, o, resume, &n->config);
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
	n->has_active = !resume;
	if ((r = bundle_layers_copy(&n->active, act)) < 0 || o->full)
		return r;
	if (!(n->origin = calloc(1, sizeof(*n->origin))))
		return err_set(ENOMEM, "%s", n->dir);
	bundle_set_str(&n->origin->bundle, b->dir);
	bundle_set_str(&n->origin->snapshot, s->id);
	bundle_set_str(&n->origin->snapshot_name, s->name);
	return bundle_layers_copy(&n->origin->layers, &s->layers);
}

/* DST: the RAM of memory image SRC (a chain of layers in the origin) as one
 * full image with SRC's id, so the clone needs none of the origin's images
 * (state.bin names that id).  A full SRC is hard-linked when it can be: no
 * one rewrites an image in place (a delete's absorb writes a new file). */
static int clone_memory(const char *src, const char *dst, uint64_t size)
{
	struct mem_chain *c;
	int r = mem_chain_open(src, size, &c);
	if (r < 0)
		return r;
	if (mem_chain_length(c) == 1 && link(src, dst) == 0) {
		mem_chain_close(c);
		return 0;
	}
	/* read whole, every chunk checked: the new image's checksums are
	 * computed from verified bytes */
	struct mem_id id = mem_layer_info(mem_chain_layer(c, 0))->id;
	void *ram = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED) {
		mem_chain_close(c);
		return err_set(errno, "%s: memory to assemble the clone's image", dst);
	}
	r = mem_chain_load(c, ram);
	mem_chain_close(c);
	if (r < 0) {
		munmap(ram, size);
		return r;
	}
	struct mem_image_source ms = mem_image_ram_source(ram);
	r = mem_image_save_as(dst, &ms, size, NULL, &id, NULL, NULL, NULL);
	munmap(ram, size);
	return r;
}

/* A copy of the small file SRC as DST (written new, fsynced, renamed). */
static int copy_small(const char *src, const char *dst)
{
	char *data;
	size_t len;
	int r = file_read_whole(src, &data, &len, 256u << 20);
	if (r < 0)
		return r;
	r = file_create_atomic(dst, data, len);
	free(data);
	return r;
}

/* The clone's own copy of whole-machine snapshot S of B, as snapshot SID
 * of the clone N: state.bin and meta.json copied, memory one full image;
 * written in a temporary directory and committed by a rename. */
static int clone_snapshot_files(const struct bundle *b, const struct bundle_snapshot *s,
				const struct bundle *n, const char *sid)
{
	char from[PATH_MAX], to[PATH_MAX], f[PATH_MAX], t[PATH_MAX], mem[PATH_MAX];
	struct mem_image_info info;
	int r = mgr_snap_dir(b, s->id, from, sizeof(from));
	if (r == 0)
		r = mgr_snap_dir(n, sid, to, sizeof(to));
	if (r == 0)
		r = mgr_snap_memory(b, s->id, mem, sizeof(mem), &info);
	struct snapdir_txn txn;
	if (r < 0 || (r = snapdir_begin(to, &txn)) < 0)
		return r;
	static const enum snapdir_file small[] = {SNAPDIR_STATE, SNAPDIR_META};
	for (size_t i = 0; r == 0 && i < sizeof(small) / sizeof(small[0]); i++) {
		if ((r = snapdir_path(from, small[i], f, sizeof(f))) < 0 ||
		    (r = snapdir_txn_path(&txn, small[i], t, sizeof(t))) < 0)
			break;
		if (small[i] == SNAPDIR_META && access(f, F_OK) < 0)
			continue; /* for people and tools only */
		r = copy_small(f, t);
	}
	if (r == 0 && (r = snapdir_txn_path(&txn, SNAPDIR_MEMORY, t, sizeof(t))) == 0)
		r = clone_memory(mem, t, info.size);
	if (r == 0)
		return snapdir_commit(&txn);
	snapdir_abort(&txn);
	return r;
}

/* A resumed clone: its base layers ACT are frozen by its own snapshot of
 * S's machine, which the first run restores. */
static int clone_resume_point(const struct bundle *b, const struct bundle_snapshot *s,
			      struct bundle *n, const struct bundle_layers *act)
{
	char sid[9], sd[PATH_MAX], now[32];
	bundle_random_hex(sid, 8);
	int r = clone_snapshot_files(b, s, n, sid);
	if (r < 0 || (r = mgr_snap_dir(n, sid, sd, sizeof(sd))) < 0)
		return r;
	mgr_now_iso(now, sizeof(now));
	char desc[256];
	snprintf(desc, sizeof(desc), "cloned from %s, snapshot %s", b->dir, s->name);
	struct bundle_snapshot *ns = bundle_snap_new(sid, s->name, NULL, now, desc);
	if (!ns)
		return err_set(ENOMEM, "%s", n->dir);
	ns->memory = true;
	if ((r = bundle_layers_copy(&ns->layers, act)) < 0 || (r = bundle_snap_add(n, ns)) < 0) {
		bundle_snap_free(ns);
		return r;
	}
	mgr_set_frozen(act, sd);
	bundle_layers_free(&n->active);
	bundle_set_str(&n->current, sid);
	return bundle_set_str(&n->resume, sid);
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

/* Room for a full clone (S's layers and, resumed, its RAM) beside NEWNAME. */
static int clone_need_space(const struct bundle *b, const struct bundle_snapshot *s,
			    const char *newname, bool full, bool resume)
{
	uint64_t need = 0;
	for (struct bundle_snapshot *a = (struct bundle_snapshot *)s; full && a;
	     a = bundle_snap(b, a->parent))
		need += mgr_layers_bytes(&a->layers);
	if (resume)
		need += b->config.mem_size;
	char parent[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s", newname);
	char *slash = strrchr(parent, '/');
	if (slash)
		*slash = 0;
	return mgr_need_space(slash ? (*parent ? parent : "/") : ".", need,
			      full ? "a full clone" : "a clone's memory");
}

int mgr_clone(const char *name, const char *snap, const char *newname,
	      const struct mgr_clone_opts *o, const struct mgr_progress *pr, json_t *report)
{
	struct bundle *b;
	struct bundle_snapshot *s;
	bool full = o->full;
	int r =
	    mgr_open_write_snap(name, full ? "cairn clone --full" : "cairn clone", snap, &b, &s);
	if (r < 0)
		return r;
	bool resume = s->memory && !o->boot;
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
	if ((full || resume) && (r = clone_need_space(b, s, newname, full, resume)) < 0)
		goto out;
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
		r = clone_model(b, s, o, resume, &n, &act, newname);
	if (r == 0 && resume)
		r = clone_resume_point(b, s, &n, &act);
	if (r == 0) /* the switch: from here on the clone exists */
		r = bundle_save(&n);
	if (r == 0 && report) {
		json_object_set_new(report, "clone", json_string(real));
		json_object_set_new(report, "linked", json_boolean(!full));
		json_object_set_new(report, "resume", json_boolean(resume));
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
