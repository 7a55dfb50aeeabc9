/* create, destroy, info, list: a bundle as a whole. */
#include "disk/chain.h"
#include "disk/qcow2.h"
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

int mgr_create(const char *name, const struct mgr_create_opts *o, json_t *report)
{
	char dir[PATH_MAX], disk[PATH_MAX];
	if (!o->kernel)
		return err_set(EINVAL, "create: --kernel is required");
	int lock = -1;
	int r = mgr_make_dirs(name, "cairn create", dir, sizeof(dir), &lock);
	if (r < 0)
		return r;
	struct bundle b;
	if ((r = bundle_init(&b, dir, name)) < 0)
		goto out;
	char kernel[PATH_MAX], initrd[PATH_MAX];
	if (!realpath(o->kernel, kernel)) {
		r = err_set(errno, "%s: kernel", o->kernel);
		goto out;
	}
	if (o->initrd && !realpath(o->initrd, initrd)) {
		r = err_set(errno, "%s: initrd", o->initrd);
		goto out;
	}
	mgr_sub_path(&b, disk, sizeof(disk), "disks", "disk0.qcow2");
	if (o->disk && o->reference) {
		/* the file stays where it is, read-only, under our first layer */
		char ref[PATH_MAX];
		if (!realpath(o->disk, ref)) {
			r = err_set(errno, "%s: disk", o->disk);
			goto out;
		}
		r = qcow2_create_overlay(disk, ref, mgr_is_qcow2(ref) ? "qcow2" : "raw");
	} else if (o->disk) {
		struct chain_convert_opts co = {.dst_fmt = "qcow2",
						.src_fmt = mgr_is_qcow2(o->disk) ? "qcow2" : "raw"};
		r = chain_convert(o->disk, disk, &co, mgr_copy_progress(o->progress));
	} else {
		struct qcow2_create_opts co = {.size = o->disk_size};
		r = qcow2_create(disk, &co);
	}
	if (r < 0)
		goto out;
	char serial[21] = "cairn-";
	bundle_random_hex(serial + 6, 12);
	struct vm_config *cfg = &b.config;
	*cfg = (struct vm_config){.mem_size = o->mem_size,
				  .ncpus = o->ncpus,
				  .kernel = strdup(kernel),
				  .initrd = o->initrd ? strdup(initrd) : NULL,
				  .cmdline = o->cmdline ? strdup(o->cmdline) : NULL,
				  .ndisks = 1,
				  .pvm_quirks = true};
	cfg->disks[0] = (struct disk_config){
	    .path = strdup(disk), .format = strdup("qcow2"), .serial = strdup(serial)};
	/* one user-mode NIC unless told: a network without root */
	static const char *const user_nic[] = {"user"};
	r = o->nnets ? mgr_set_nics(cfg, o->nets, o->nnets) : mgr_set_nics(cfg, user_nic, 1);
	b.has_active = true;
	if (r == 0 && (r = bundle_layers_add(&b.active, disk)) == 0)
		r = bundle_save(&b);
	if (r == 0 && report) {
		json_object_set_new(report, "bundle", json_string(dir));
		json_object_set_new(report, "machine_id", json_string(b.machine_id));
	}
out:
	bundle_clear(&b);
	free(b.dir);
	if (r < 0) /* a create that failed leaves nothing */
		mgr_remove_new_bundle(dir, &lock);
	if (lock >= 0)
		close(lock);
	return r;
}

static int unregister_clone(const char *origin, const char *clone_dir)
{
	struct bundle *o;
	if (bundle_open(origin, true, "cairn destroy (clone)", &o) < 0)
		return 0; /* origin gone or busy: its check --repair drops stale entries */
	for (size_t i = 0; i < o->nclones; i++) {
		if (mgr_streq(o->clones[i].path, clone_dir)) {
			bundle_clone_remove(o, i);
			bundle_save(o);
			break;
		}
	}
	bundle_close(o);
	return 0;
}

int mgr_destroy(const char *name)
{
	struct bundle *b;
	char real[PATH_MAX], p[PATH_MAX];
	int r = bundle_open(name, true, "cairn destroy", &b);
	if (r == -ENOENT && realpath(name, real)) {
		/* an interrupted create or destroy: a bundle directory without vm.json */
		return mgr_bundle_remains(real, true) ? mgr_remove_bundle(real) : r;
	}
	if (r < 0)
		return r;
	if (b->nclones) {
		r = err_set(EBUSY,
			    "%s: linked clone %s uses this bundle's layers; destroy it first",
			    b->dir, b->clones[0].path);
		goto out;
	}
	pid_t pid = 0;
	if (bundle_running(b->dir, &pid)) {
		r = err_set(EBUSY, "%s: the VM is running (pid %d); 'cairn stop' it first", b->dir,
			    (int)pid);
		goto out;
	}
	bundle_path(b, p, sizeof(p), "vm.json");
	if (unlink(p) < 0) {
		r = err_set(errno, "%s", p);
		goto out;
	}
	file_fsync_parent(p);
	if (b->origin && b->origin->bundle)
		unregister_clone(b->origin->bundle, b->dir);
	if ((r = mgr_remove_bundle(b->dir)) < 0)
		err_prefix(r,
			   "%s: destroyed, but not all removed ('cairn destroy' again removes the "
			   "rest)",
			   b->dir);
out:
	bundle_close(b);
	return r;
}

int mgr_info(const char *name, json_t **out)
{
	struct bundle *b;
	int r = bundle_open(name, false, NULL, &b);
	if (r < 0)
		return r;
	json_t *j = bundle_to_json(b, false);
	pid_t pid = 0;
	json_object_set_new(j, "bundle", json_string(b->dir));
	json_object_set_new(j, "state", json_string(mgr_vm_state(b, &pid)));
	if (pid)
		json_object_set_new(j, "pid", json_integer(pid));
	json_object_set_new(j, "disk_usage_bytes", json_integer((json_int_t)bundle_du(b->dir)));
	*out = j;
	bundle_close(b);
	return 0;
}

int mgr_list(const char *dir, json_t **out)
{
	DIR *d = opendir(dir);
	if (!d)
		return err_set(errno, "%s", dir);
	json_t *arr = json_array();
	struct dirent *de;
	while ((de = readdir(d))) {
		char p[PATH_MAX], vj[PATH_MAX];
		if (de->d_name[0] == '.' || path_join(p, sizeof(p), dir, de->d_name) < 0 ||
		    path_join(vj, sizeof(vj), p, "vm.json") < 0 || access(vj, F_OK) < 0)
			continue;
		struct bundle *b;
		if (bundle_open(p, false, NULL, &b) < 0) {
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "name", de->d_name,
							     "path", p, "error", err_msg()));
			continue;
		}
		struct bundle_snapshot *cur = bundle_snap(b, b->current);
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:s, s:i, s:s?}", "name", de->d_name, "path", b->dir,
				   "state", mgr_vm_state(b, NULL), "snapshots", (int)b->nsnaps,
				   "current", cur ? cur->name : NULL));
		bundle_close(b);
	}
	closedir(d);
	*out = arr;
	return 0;
}
