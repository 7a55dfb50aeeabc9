/* Helpers the manager's operations share (mgr_internal.h). */
#include "control/control.h"
#include "disk/block.h"
#include "disk/chain.h"
#include "disk/image_lock.h"
#include "disk/qcow2.h"
#include "manager/mgr_internal.h"
#include "net/net.h"
#include "snapshot/snapdir.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "util/log.h"
#include "vmm/vm_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---------------------------------------------------- */

void mgr_random_mac(uint8_t mac[6])
{
	char hex[7];
	bundle_random_hex(hex, 6);
	unsigned long v = strtoul(hex, NULL, 16);
	const uint8_t m[6] = {0x52, 0x54, 0x00, (uint8_t)(v >> 16), (uint8_t)(v >> 8),
			      (uint8_t)v};
	memcpy(mac, m, 6);
}

/* vm_config_set_nics's default MAC for a bundle's NIC: a random one. */
static void random_mac(int i, uint8_t mac[6])
{
	(void)i;
	mgr_random_mac(mac);
}

int mgr_set_nics(struct vm_config *cfg, const char *const *nets, int n)
{
	return vm_config_set_nics(cfg, nets, n, random_mac);
}

void mgr_now_iso(char *out, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int mgr_sub_path(const struct bundle *b, char *out, size_t len, const char *a, const char *c)
{
	char rel[PATH_MAX];
	snprintf(rel, sizeof(rel), "%s/%s", a, c);
	return bundle_path(b, out, len, rel);
}

int mgr_snap_dir(const struct bundle *b, const char *id, char *out, size_t len)
{
	return mgr_sub_path(b, out, len, "snapshots", id);
}

/* Only files of this bundle's disks/ are ever removed or rewritten by it;
 * layers of an origin bundle (linked clone) are read-only to us. */
bool mgr_own_layer(const struct bundle *b, const char *path)
{
	size_t l = strlen(b->dir);
	return !strncmp(path, b->dir, l) && !strncmp(path + l, "/disks/", 7);
}

void mgr_unlink_own(const struct bundle *b, const char *path)
{
	/* best effort, often after a failure whose message stays: a layer
	 * left behind is a leftover that check --repair removes */
	struct err_saved e;
	err_save(&e);
	if (path && mgr_own_layer(b, path) && unlink(path) == 0)
		file_fsync_parent(path);
	err_restore(&e);
}

int mgr_rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : err_set(errno, "%s: cannot remove", path);
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? err_set(errno, "%s: cannot remove", path) : 0;
	DIR *d = opendir(path);
	if (!d)
		return err_set(errno, "%s: cannot remove", path);
	int r = 0;
	struct err_saved first;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char sub[PATH_MAX];
		int e = path_join(sub, sizeof(sub), path, de->d_name);
		if (e == 0)
			e = mgr_rm_rf(sub);
		if (e < 0 && r == 0) { /* the first failure is the one said */
			r = e;
			err_save(&first);
		}
	}
	closedir(d);
	if (r < 0) {
		err_restore(&first);
		return r;
	}
	return rmdir(path) < 0 ? err_set(errno, "%s: cannot remove", path) : 0;
}

int mgr_layer_stored_backing(const char *path, char **name, char **fmt)
{
	struct block_dev *bd;
	*name = *fmt = NULL;
	/* a look at the header: a VM may be writing the layer */
	int r = block_open(path, "qcow2", BLOCK_RDONLY | BLOCK_NO_BACKING | BLOCK_SHARE_WRITE, &bd);
	if (r < 0)
		return r;
	struct qcow2_info info;
	r = qcow2_get_info(bd, &info);
	if (r == 0 && info.backing && *info.backing) {
		*name = strdup(info.backing);
		*fmt = info.backing_fmt ? strdup(info.backing_fmt) : NULL;
	}
	block_close(bd);
	return r;
}

int mgr_layer_backing(const char *path, char **out)
{
	char *name, *fmt;
	*out = NULL;
	int r = mgr_layer_stored_backing(path, &name, &fmt);
	if (r == 0 && name) {
		char *p = qcow2_resolve_backing(path, name);
		char real[PATH_MAX];
		if (p && realpath(p, real)) {
			free(p);
			p = strdup(real);
		}
		*out = p;
	}
	free(name);
	free(fmt);
	return r < 0 ? err_set(-r, "%s: not a qcow2 layer", path) : 0;
}

bool mgr_streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

uint64_t mgr_file_bytes(const char *path)
{
	struct stat st;
	return stat(path, &st) < 0 ? 0 : (uint64_t)st.st_blocks * 512;
}

bool mgr_is_qcow2(const char *path)
{
	unsigned char m[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool q = read(fd, m, 4) == 4 && m[0] == 'Q' && m[1] == 'F' && m[2] == 'I' && m[3] == 0xfb;
	close(fd);
	return q;
}

/* Refuse up front what cannot fit: NEED bytes (plus 1 MiB for metadata)
 * on the file system of DIR. */
int mgr_need_space(const char *dir, uint64_t need, const char *what)
{
	struct statvfs vfs;
	if (statvfs(dir, &vfs) < 0)
		return 0;
	uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail < need + (1u << 20))
		return err_set(ENOSPC, "%s: %s needs about %llu bytes, %llu are free", dir, what,
			       (unsigned long long)need + (1u << 20), (unsigned long long)avail);
	return 0;
}

/* A new empty layer disks/l<random>.qcow2 over BACKING. */
int mgr_new_layer(const struct bundle *b, const char *backing, char *out, size_t len)
{
	char hex[9], name[32];
	bundle_random_hex(hex, 8);
	snprintf(name, sizeof(name), "l%s.qcow2", hex);
	int r = mgr_sub_path(b, out, len, "disks", name);
	if (r == 0)
		r = qcow2_create_overlay_rel(out, backing, "qcow2");
	return r;
}

int mgr_stream_layer(const char *top, const char *base, const struct mgr_progress *pr)
{
	const char *fmt = base && !mgr_is_qcow2(base) ? "raw" : "qcow2";
	return chain_stream(top, base ? qcow2_relative_backing(top, base) : NULL, fmt,
			    mgr_copy_progress(pr));
}

void mgr_set_frozen(const struct bundle_layers *layers, const char *snapdir)
{
	for (int i = 0; i < layers->n; i++) {
		chmod(layers->path[i], 0444);
		if (image_frozen_mark(layers->path[i], snapdir) < 0)
			log_warn("%s", err_msg()); /* the mode still says it */
	}
}

int mgr_layer_thaw(const char *path, struct mgr_frozen *f)
{
	struct stat st;
	f->mode = stat(path, &st) == 0 ? st.st_mode & 07777 : 0644;
	f->marked = image_frozen_read(path, f->mark, sizeof(f->mark));
	if (chmod(path, 0644) < 0)
		return err_set(errno, "%s: making the frozen layer writable", path);
	int r = f->marked ? image_frozen_clear(path) : 0;
	if (r < 0) {
		/* said as it is: the write that follows would only say "frozen" */
		struct err_saved e;
		err_save(&e);
		chmod(path, f->mode);
		err_restore(&e);
	}
	return r;
}

void mgr_layer_refreeze(const char *path, const struct mgr_frozen *f)
{
	struct err_saved e; /* best effort after a merge that may have failed */
	err_save(&e);
	if (chmod(path, f->mode) < 0)
		log_warn("%s: %s (its mode stays 0644)", path, strerror(errno));
	if (f->marked && image_frozen_mark(path, f->mark) < 0)
		log_warn("%s", err_msg());
	err_restore(&e);
}

void mgr_unlink_layers(const struct bundle *b, const struct bundle_layers *layers)
{
	for (int i = 0; i < layers->n; i++)
		mgr_unlink_own(b, layers->path[i]);
}

int mgr_open_write(const char *name, const char *cmd, struct bundle **out)
{
	struct bundle *b;
	int r = bundle_open(name, true, cmd, &b);
	if (r < 0)
		return r;
	if (b->pending) {
		const char *op = b->pending->op;
		r = err_set(EAGAIN,
			    "%s: an interrupted \"%s\" is pending; run 'cairn check --repair %s'",
			    b->dir, op ? op : "?", name);
		bundle_close(b);
		return r;
	}
	*out = b;
	return 0;
}

int mgr_open_write_snap(const char *name, const char *cmd, const char *snap, struct bundle **out,
			struct bundle_snapshot **s)
{
	int r = mgr_open_write(name, cmd, out);
	if (r < 0)
		return r;
	if (!(*s = bundle_snap_by_name(*out, snap))) {
		bundle_close(*out);
		return -ENOENT;
	}
	return 0;
}

int mgr_pending_failed(const struct bundle *b, int r, const char *msg, int settle, const char *op)
{
	char why[ERR_MSG_MAX];
	snprintf(why, sizeof(why), "%s", err_msg());
	if (r < 0)
		return err_set(r,
			       "%s; then %s; the %s stays recorded as pending: 'cairn check "
			       "--repair %s' settles it",
			       msg, why, op, b->dir);
	return err_set(settle,
		       "%s; the %s stays recorded as pending: 'cairn check --repair %s' settles it",
		       why, op, b->dir);
}

int mgr_ctl_request(const struct bundle *b, json_t *req, json_t **reply)
{
	char sock[PATH_MAX];
	int r = bundle_path(b, sock, sizeof(sock), "control.sock");
	return r < 0 ? r : control_call(sock, req, reply, CTL_TIMEOUT_MS);
}

json_t *mgr_layers_json(const struct bundle_layers *layers)
{
	json_t *a = json_array();
	for (int i = 0; i < layers->n; i++)
		json_array_append_new(a, json_string(layers->path[i]));
	return a;
}

int mgr_wait_stopped(const struct bundle *b, int secs)
{
	for (int i = 0; i < secs * 20; i++) {
		if (!bundle_running(b->dir, NULL))
			return 0;
		usleep(50000);
	}
	return err_set(ETIMEDOUT, "%s: the VM did not end within %d s", b->dir, secs);
}

bool mgr_vm_ended(const struct bundle *b)
{
	/* a VM killed closes its control socket a little before the kernel
	 * lets go of its run lock (released as its files are put, deferred) */
	bool ended = mgr_wait_stopped(b, 2) == 0;
	err_clear();
	return ended;
}

bool mgr_valid_name(const char *n)
{
	if (!n || !*n || strlen(n) >= 128 || n[0] == '.')
		return false;
	/* no '/', and no control character (a newline would break every
	 * listing): printable ASCII and UTF-8 bytes only */
	for (const unsigned char *c = (const unsigned char *)n; *c; c++)
		if (*c == '/' || *c < 0x20 || *c == 0x7f)
			return false;
	return true;
}

int mgr_make_dirs(const char *name, const char *cmd, char *real, size_t len, int *lock)
{
	if (mkdir(name, 0755) < 0)
		return err_set(errno, "%s: cannot create the bundle directory%s", name,
			       errno == EEXIST ? " (it exists; 'cairn destroy' removes a bundle)"
					       : "");
	if (!realpath(name, real)) {
		int r = err_set(errno, "%s", name);
		rmdir(name);
		return r;
	}
	/* the lock first: a directory with a lock and no vm.json is an
	 * interrupted create, which check --repair and destroy remove */
	char p[PATH_MAX];
	int r = bundle_lock(real, cmd, lock);
	if (r == 0 && (r = path_join(p, sizeof(p), real, "disks")) == 0 && mkdir(p, 0755) < 0)
		r = err_set(errno, "%s", p);
	if (r == 0 && (r = path_join(p, sizeof(p), real, "snapshots")) == 0 && mkdir(p, 0755) < 0)
		r = err_set(errno, "%s", p);
	if (r == 0)
		r = file_fsync_parent(p);
	if (r < 0)
		mgr_remove_new_bundle(real, lock);
	(void)len;
	return r;
}

bool mgr_bundle_remains(const char *dir, bool empty_ok)
{
	/* only names a bundle has: never a directory of somebody else's */
	static const char *const names[] = {"lock",	  "run.lock",	 "vm.json.tmp",
					    "disks",	  "snapshots",	 "console.log",
					    "console.in", "control.sock"};
	DIR *d = opendir(dir);
	if (!d)
		return false;
	bool lock = false, other = false;
	struct dirent *de;
	while (!other && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		size_t i = 0;
		while (i < sizeof(names) / sizeof(names[0]) && strcmp(de->d_name, names[i]))
			i++;
		other = i == sizeof(names) / sizeof(names[0]);
		lock |= i == 0;
	}
	closedir(d);
	if (other)
		return false;
	return lock || empty_ok;
}

int mgr_remove_bundle(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : err_set(errno, "%s: cannot remove", dir);
	int r = 0;
	struct err_saved first;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strcmp(de->d_name, "lock"))
			continue;
		char sub[PATH_MAX];
		int e = path_join(sub, sizeof(sub), dir, de->d_name);
		if (e == 0)
			e = mgr_rm_rf(sub);
		if (e < 0 && r == 0) {
			r = e;
			err_save(&first);
		}
	}
	closedir(d);
	if (r < 0) {
		err_restore(&first);
		return r;
	}
	/* the lock last: whatever is left, it says what the directory was */
	char p[PATH_MAX];
	if ((r = path_join(p, sizeof(p), dir, "lock")) < 0)
		return r;
	if (unlink(p) < 0 && errno != ENOENT)
		return err_set(errno, "%s: cannot remove", p);
	return rmdir(dir) < 0 ? err_set(errno, "%s: cannot remove", dir) : 0;
}

void mgr_remove_new_bundle(const char *dir, int *lock)
{
	struct err_saved e;
	err_save(&e);
	if (mgr_remove_bundle(dir) < 0)
		log_warn("%s (a failed create or clone; 'cairn destroy' removes the rest)",
			 err_msg());
	if (*lock >= 0)
		close(*lock);
	*lock = -1;
	err_restore(&e);
}

const char *mgr_vm_state(const struct bundle *b, pid_t *pid)
{
	if (bundle_running(b->dir, pid))
		return "running";
	return b->resume ? "suspended" : "stopped";
}

/* Where a running VM moved to: its disks per the control socket.  After
 * an interrupted in-place revert this tells whether the VM reverted. */
int mgr_running_disks(const struct bundle *b, struct bundle_layers *out)
{
	json_t *req = json_pack("{s:s}", "cmd", "status"), *st = NULL;
	memset(out, 0, sizeof(*out));
	int r = mgr_ctl_request(b, req, &st);
	json_t *d = json_object_get(st, "disks");
	if (r == 0 && !json_is_array(d))
		r = err_set(EPROTO, "%s: the VM's status names no disks", b->dir);
	size_t i;
	json_t *v;
	json_array_foreach(d, i, v) if (r == 0 && json_is_string(v)) r =
	    bundle_layers_add(out, json_string_value(v));
	json_decref(req);
	json_decref(st);
	if (r < 0)
		bundle_layers_free(out);
	return r;
}

int mgr_snap_memory(const struct bundle *b, const char *sid, char *mem, size_t len,
		    struct mem_image_info *info)
{
	char sd[PATH_MAX];
	struct state_reader *rd;
	struct vm_config cfg;
	int r = mgr_snap_dir(b, sid, sd, sizeof(sd));
	if (r < 0 || (r = vm_snapshot_open(sd, &rd, &cfg)) < 0)
		return r;
	uint64_t size = cfg.mem_size;
	vm_config_free(&cfg);
	state_reader_close(rd);
	if ((r = snapdir_path(sd, SNAPDIR_MEMORY, mem, len)) < 0)
		return r;
	return mem_image_info(mem, size, info);
}
