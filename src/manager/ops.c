/* Bundle operations.  The rule everywhere: new files first, vm.json last,
 * old files removed after; a delete, which rewrites layers that stay,
 * records itself as "pending" in vm.json before it touches anything. */
#include "manager/ops.h"
#include "control/control.h"
#include "disk/block.h"
#include "disk/chain.h"
#include "disk/qcow2.h"
#include "disk/qcow2_check.h"
#include "manager/bundle.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "util/log.h"
#include "vmm/config_json.h"
#include "vmm/vm_snapshot.h"
#include "vmm/vmm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CTL_TIMEOUT_MS (600 * 1000)

/* ---- small helpers ---------------------------------------------------- */

static json_t *jarr(const json_t *o, const char *k)
{
	json_t *a = json_object_get(o, k);
	return json_is_array(a) ? a : NULL;
}

static const char *jstr_at(const json_t *a, size_t i)
{
	return json_string_value(json_array_get(a, i));
}

static void now_iso(char *out, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int sub_path(const struct bundle *b, char *out, size_t len, const char *a, const char *c)
{
	char rel[PATH_MAX];
	snprintf(rel, sizeof(rel), "%s/%s", a, c);
	return bundle_path(b, out, len, rel);
}

static int snap_dir(const struct bundle *b, const char *id, char *out, size_t len)
{
	return sub_path(b, out, len, "snapshots", id);
}

/* Only files of this bundle's disks/ are ever removed or rewritten by it;
 * layers of an origin bundle (linked clone) are read-only to us. */
static bool own_layer(const struct bundle *b, const char *path)
{
	size_t l = strlen(b->dir);
	return !strncmp(path, b->dir, l) && !strncmp(path + l, "/disks/", 7);
}

static void unlink_own(const struct bundle *b, const char *path)
{
	if (path && own_layer(b, path) && unlink(path) == 0)
		file_fsync_parent(path);
}

static int rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (!d)
			return -errno;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char sub[PATH_MAX];
			if (path_join(sub, sizeof(sub), path, de->d_name) == 0)
				rm_rf(sub);
		}
		closedir(d);
		return rmdir(path) < 0 ? -errno : 0;
	}
	return unlink(path) < 0 ? -errno : 0;
}

/* The backing file recorded in the qcow2 layer PATH, as an absolute path
 * (*OUT NULL when it has none). */
static int layer_backing(const char *path, char **out)
{
	struct block_dev *bd;
	*out = NULL;
	int r = block_open(path, "qcow2", BLOCK_RDONLY | BLOCK_NO_BACKING, &bd);
	if (r < 0)
		return r;
	struct qcow2_info info;
	r = qcow2_get_info(bd, &info);
	if (r == 0 && info.backing && *info.backing) {
		char *p = qcow2_resolve_backing(path, info.backing);
		char real[PATH_MAX];
		if (p && realpath(p, real)) {
			free(p);
			p = strdup(real);
		}
		*out = p;
	}
	block_close(bd);
	return r < 0 ? err_set(-r, "%s: not a qcow2 layer", path) : 0;
}

static bool same_path(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static uint64_t file_bytes(const char *path)
{
	struct stat st;
	return stat(path, &st) < 0 ? 0 : (uint64_t)st.st_blocks * 512;
}

static bool is_qcow2_file(const char *path)
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
static int need_space(const char *dir, uint64_t need, const char *what)
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
static int new_layer(const struct bundle *b, const char *backing, char *out, size_t len)
{
	char hex[9], name[32];
	bundle_random_hex(hex, 8);
	snprintf(name, sizeof(name), "l%s.qcow2", hex);
	int r = sub_path(b, out, len, "disks", name);
	if (r == 0)
		r = qcow2_create_overlay(out, backing, "qcow2");
	return r;
}

static void set_frozen(json_t *layers, bool frozen)
{
	size_t i;
	json_t *v;
	json_array_foreach(layers, i, v) chmod(json_string_value(v), frozen ? 0444 : 0644);
}

static json_t *active_layers(const struct bundle *b)
{
	return jarr(b->doc, "active");
}

static int open_for_write(const char *name, const char *cmd, struct bundle **out)
{
	struct bundle *b;
	int r = bundle_open(name, true, cmd, &b);
	if (r < 0)
		return r;
	if (json_object_get(b->doc, "pending")) {
		const char *op = bundle_str(json_object_get(b->doc, "pending"), "op");
		r = err_set(EAGAIN,
			    "%s: an interrupted \"%s\" is pending; run 'cairn check --repair %s'",
			    b->dir, op ? op : "?", name);
		bundle_close(b);
		return r;
	}
	*out = b;
	return 0;
}

static int ctl_request(const struct bundle *b, json_t *req, json_t **reply)
{
	char sock[PATH_MAX], *line = NULL;
	int r = bundle_path(b, sock, sizeof(sock), "control.sock");
	char *s = json_dumps(req, JSON_COMPACT);
	if (r == 0)
		r = control_request(sock, s, &line, CTL_TIMEOUT_MS);
	free(s);
	if (r < 0)
		return r;
	json_error_t e;
	json_t *j = json_loads(line, 0, &e);
	if (!j) {
		r = err_set(EPROTO, "%s: bad reply: %s", sock, line);
		free(line);
		return r;
	}
	free(line);
	if (!json_is_true(json_object_get(j, "ok"))) {
		const char *m = bundle_str(j, "error");
		r = err_set(EIO, "%s: %s", sock, m ? m : "request failed");
		json_decref(j);
		return r;
	}
	if (reply)
		*reply = j;
	else
		json_decref(j);
	return 0;
}

static int wait_stopped(const struct bundle *b, int secs)
{
	for (int i = 0; i < secs * 20; i++) {
		if (!bundle_running(b->dir, NULL))
			return 0;
		usleep(50000);
	}
	return err_set(ETIMEDOUT, "%s: the VM did not end within %d s", b->dir, secs);
}

static bool valid_name(const char *n)
{
	return n && *n && strlen(n) < 128 && !strchr(n, '/') && n[0] != '.';
}

/* ---- create / destroy / info / list ------------------------------------ */

static json_t *new_doc(const char *name)
{
	char mid[33], created[32];
	bundle_random_hex(mid, 32);
	now_iso(created, sizeof(created));
	return json_pack("{s:s, s:i, s:s, s:s, s:s, s:n, s:n, s:{}, s:[], s:n}", "format",
			 BUNDLE_FORMAT, "version", BUNDLE_VERSION, "name", name, "machine_id", mid,
			 "created", created, "current", "resume", "snapshots", "clones", "origin");
}

static int make_bundle_dirs(const char *name, char *real, size_t len)
{
	if (mkdir(name, 0755) < 0)
		return err_set(errno, "%s: cannot create the bundle directory%s", name,
			       errno == EEXIST ? " (it exists; 'cairn destroy' removes a bundle)"
					       : "");
	if (!realpath(name, real))
		return err_set(errno, "%s", name);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/disks", real);
	if (mkdir(p, 0755) < 0)
		return err_set(errno, "%s", p);
	snprintf(p, sizeof(p), "%s/snapshots", real);
	if (mkdir(p, 0755) < 0)
		return err_set(errno, "%s", p);
	(void)len;
	return file_fsync_parent(p);
}

static void progress_print(void *opaque, uint64_t done, uint64_t total)
{
	(void)opaque;
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "\r%llu / %llu MiB", (unsigned long long)(done >> 20),
			(unsigned long long)(total >> 20));
}
static const struct chain_progress progress = {progress_print, NULL};

/* Progress of a whole-machine snapshot's memory save, which the VM's own
 * writer does: on a terminal, after the first second, how much of
 * DIR.tmp/memory.img.tmp is on disk (the image is sparse: zero pages take
 * no room, so the bound is the RAM size). */
struct mem_watch {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, printed;
	char file[PATH_MAX + 32];
	uint64_t ram;
};

static void *mem_watch_run(void *opaque)
{
	struct mem_watch *w = opaque;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
			continue;
		struct stat st;
		if (stat(w->file, &st) == 0) {
			fprintf(stderr, "\rsaving memory: %llu MiB written (RAM %llu MiB)",
				(unsigned long long)(((uint64_t)st.st_blocks * 512) >> 20),
				(unsigned long long)(w->ram >> 20));
			w->printed = true;
		}
		until.tv_nsec += 250000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static bool mem_watch_start(struct mem_watch *w, const struct bundle *b, const char *sd)
{
	memset(w, 0, sizeof(*w));
	if (!isatty(STDERR_FILENO))
		return false;
	struct vm_config cfg = {0};
	if (vm_config_from_json(json_object_get(b->doc, "config"), "vm.json", &cfg) == 0)
		w->ram = cfg.mem_size;
	vm_config_free(&cfg);
	err_clear();
	snprintf(w->file, sizeof(w->file), "%s.tmp/memory.img.tmp", sd);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (pthread_create(&w->thread, NULL, mem_watch_run, w) != 0) {
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->cond);
		return false;
	}
	return true;
}

static void mem_watch_stop(struct mem_watch *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	if (w->printed)
		fputc('\n', stderr);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}

int mgr_create(const char *name, const struct mgr_create_opts *o, json_t *report)
{
	char dir[PATH_MAX], disk[PATH_MAX];
	if (!o->kernel)
		return err_set(EINVAL, "create: --kernel is required");
	int r = make_bundle_dirs(name, dir, sizeof(dir));
	if (r < 0)
		return r;
	int lock = -1;
	if ((r = bundle_lock(dir, "cairn create", &lock)) < 0)
		return r;
	struct bundle b = {.dir = dir, .lock_fd = lock};
	char kernel[PATH_MAX], initrd[PATH_MAX];
	if (!realpath(o->kernel, kernel)) {
		r = err_set(errno, "%s: kernel", o->kernel);
		goto out;
	}
	if (o->initrd && !realpath(o->initrd, initrd)) {
		r = err_set(errno, "%s: initrd", o->initrd);
		goto out;
	}
	sub_path(&b, disk, sizeof(disk), "disks", "disk0.qcow2");
	if (o->disk && o->reference) {
		/* the file stays where it is, read-only, under our first layer */
		char ref[PATH_MAX];
		if (!realpath(o->disk, ref)) {
			r = err_set(errno, "%s: disk", o->disk);
			goto out;
		}
		r = qcow2_create_overlay(disk, ref, is_qcow2_file(ref) ? "qcow2" : "raw");
	} else if (o->disk) {
		struct chain_convert_opts co = {
		    .dst_fmt = "qcow2", .src_fmt = is_qcow2_file(o->disk) ? "qcow2" : "raw"};
		r = chain_convert(o->disk, disk, &co, &progress);
	} else {
		struct qcow2_create_opts co = {.size = o->disk_size};
		r = qcow2_create(disk, &co);
	}
	if (r < 0)
		goto out;
	b.doc = new_doc(name);
	char serial[21] = "cairn-";
	bundle_random_hex(serial + 6, 12);
	struct vm_config cfg = {.mem_size = o->mem_size,
				.ncpus = o->ncpus,
				.kernel = kernel,
				.initrd = o->initrd ? initrd : NULL,
				.cmdline = (char *)o->cmdline,
				.ndisks = 1,
				.pvm_quirks = true};
	cfg.disks[0] = (struct disk_config){.path = disk, .format = "qcow2", .serial = serial};
	json_object_set_new(b.doc, "config", vm_config_to_json(&cfg));
	json_object_set_new(b.doc, "active", json_pack("[s]", disk));
	r = bundle_save(&b);
	if (r == 0 && report) {
		json_object_set_new(report, "bundle", json_string(dir));
		json_object_set_new(report, "machine_id",
				    json_copy(json_object_get(b.doc, "machine_id")));
	}
	json_decref(b.doc);
out:
	close(lock);
	return r;
}

static int unregister_clone(const char *origin, const char *clone_dir)
{
	struct bundle *o;
	if (bundle_open(origin, true, "cairn destroy (clone)", &o) < 0)
		return 0; /* origin gone or busy: its check --repair drops stale entries */
	json_t *cl = jarr(o->doc, "clones");
	size_t i;
	json_t *v;
	json_array_foreach(cl, i, v)
	{
		if (same_path(bundle_str(v, "path"), clone_dir)) {
			json_array_remove(cl, i);
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
		if (path_join(p, sizeof(p), real, "lock") == 0 && access(p, F_OK) == 0)
			return rm_rf(real) < 0 ? err_set(EIO, "%s: cannot remove", real) : 0;
		return r;
	}
	if (r < 0)
		return r;
	json_t *cl = jarr(b->doc, "clones");
	if (cl && json_array_size(cl)) {
		r = err_set(EBUSY,
			    "%s: linked clone %s uses this bundle's layers; destroy it first",
			    b->dir, bundle_str(json_array_get(cl, 0), "path"));
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
	json_t *origin = json_object_get(b->doc, "origin");
	if (json_is_object(origin))
		unregister_clone(bundle_str(origin, "bundle"), b->dir);
	if (rm_rf(b->dir) < 0)
		r = err_set(EIO, "%s: cannot remove everything", b->dir);
out:
	bundle_close(b);
	return r;
}

static const char *vm_state(const struct bundle *b, pid_t *pid)
{
	if (bundle_running(b->dir, pid))
		return "running";
	return bundle_str(b->doc, "resume") ? "suspended" : "stopped";
}

int mgr_info(const char *name, json_t **out)
{
	struct bundle *b;
	int r = bundle_open(name, false, NULL, &b);
	if (r < 0)
		return r;
	json_t *j = json_copy(b->doc);
	pid_t pid = 0;
	json_object_set_new(j, "bundle", json_string(b->dir));
	json_object_set_new(j, "state", json_string(vm_state(b, &pid)));
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
		json_t *cur = bundle_snap(b, bundle_str(b->doc, "current"));
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:s, s:i, s:s?}", "name", de->d_name, "path", b->dir,
				   "state", vm_state(b, NULL), "snapshots",
				   (int)json_object_size(bundle_snapshots(b)), "current",
				   cur ? bundle_str(cur, "name") : NULL));
		bundle_close(b);
	}
	closedir(d);
	*out = arr;
	return 0;
}

/* ---- run / stop ------------------------------------------------------- */

static int dir_names(const char *dir, json_t *set)
{
	DIR *d = opendir(dir);
	if (!d)
		return err_set(errno, "%s", dir);
	struct dirent *de;
	while ((de = readdir(d)))
		json_object_set_new(set, de->d_name, json_true());
	closedir(d);
	return 0;
}

/* The machine to boot: the recorded configuration on the active layers,
 * the clone seed (if any) on the command line. */
static int boot_config(const struct bundle *b, struct vm_config *cfg)
{
	int r = vm_config_from_json(json_object_get(b->doc, "config"), "vm.json", cfg);
	if (r < 0)
		return r;
	json_t *act = active_layers(b);
	if (!act || (int)json_array_size(act) != cfg->ndisks)
		return err_set(EINVAL, "%s: vm.json: \"active\" does not list one layer per disk",
			       b->dir);
	for (int i = 0; i < cfg->ndisks; i++) {
		free(cfg->disks[i].path);
		cfg->disks[i].path = strdup(jstr_at(act, (size_t)i));
	}
	const char *seed = bundle_str(b->doc, "seed");
	if (seed) {
		const char *c = cfg->cmdline ? cfg->cmdline : "";
		size_t n = strlen(c) + strlen(seed) + 32;
		char *s = malloc(n);
		/* The test guest takes ';'-separated jobs: the seed becomes an
		 * echo job in front; for Linux a kernel parameter at the end. */
		if (strchr(c, ';'))
			snprintf(s, n, "echo cairn.seed=%s; %s", seed, c);
		else
			snprintf(s, n, "%s%scairn.seed=%s", c, *c ? " " : "", seed);
		free(cfg->cmdline);
		cfg->cmdline = s;
	}
	return 0;
}

/* The run lock names the process that runs the VM. */
static void run_lock_write_pid(int fd)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) == 0)
		(void)!pwrite(fd, line, (size_t)n, 0);
}

static int take_run_lock(const struct bundle *b, int *fd)
{
	char p[PATH_MAX];
	bundle_path(b, p, sizeof(p), "run.lock");
	int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f < 0)
		return err_set(errno, "%s", p);
	if (flock(f, LOCK_EX | LOCK_NB) < 0) {
		close(f);
		return err_set(EBUSY, "%s: the VM is already running", b->dir);
	}
	run_lock_write_pid(f);
	*fd = f;
	return 0;
}

/* Build the VM (boot or resume) and record where it now writes. */
static int run_setup(struct bundle *b, const struct vmm_opts *opts, int console_in, int console_out,
		     struct vmm **vmm)
{
	const char *resume = bundle_str(b->doc, "resume");
	if (!resume) {
		struct vm_config cfg = {0};
		int r = boot_config(b, &cfg);
		cfg.console_in = console_in;
		cfg.console_out = console_out;
		if (r == 0)
			r = vmm_create(&cfg, opts, vmm);
		vm_config_free(&cfg);
		return r;
	}
	char sd[PATH_MAX], disks[PATH_MAX];
	snap_dir(b, resume, sd, sizeof(sd));
	bundle_path(b, disks, sizeof(disks), "disks");
	json_t *before = json_object(), *after = json_object();
	int r = dir_names(disks, before);
	if (r == 0)
		r = vmm_restore(sd, opts, vmm);
	if (r == 0)
		r = dir_names(disks, after);
	if (r == 0) {
		/* the restore's new overlays (we hold the writer lock: they are ours) */
		json_t *act = json_array();
		const char *k;
		json_t *v;
		json_object_foreach(after, k, v) if (!json_object_get(before, k))
		{
			char p[PATH_MAX];
			sub_path(b, p, sizeof(p), "disks", k);
			json_array_append_new(act, json_string(p));
		}
		json_object_set_new(b->doc, "active", act);
		json_object_set_new(b->doc, "resume", json_null());
		r = bundle_save(b);
		if (r < 0) {
			vmm_destroy(*vmm);
			*vmm = NULL;
		}
	}
	json_decref(before);
	json_decref(after);
	return r;
}

int mgr_run(const char *name, bool detach)
{
	struct bundle *b;
	int r = open_for_write(name, "cairn run", &b);
	if (r < 0)
		return r;
	int runfd = -1, pipefd[2] = {-1, -1};
	if ((r = take_run_lock(b, &runfd)) < 0)
		goto out;
	char sock[PATH_MAX], logp[PATH_MAX], disks[PATH_MAX];
	bundle_path(b, sock, sizeof(sock), "control.sock");
	bundle_path(b, logp, sizeof(logp), "console.log");
	bundle_path(b, disks, sizeof(disks), "disks");
	struct vmm_opts opts = {
	    .control = sock, .restore_mode = RESTORE_MAP, .verify_memory = true, .disk_dir = disks};
	int cin = STDIN_FILENO, cout = STDOUT_FILENO;
	if (detach) {
		if (pipe2(pipefd, O_CLOEXEC) < 0) {
			r = err_set(errno, "pipe");
			goto out;
		}
		pid_t pid = fork();
		if (pid < 0) {
			r = err_set(errno, "fork");
			goto out;
		}
		if (pid > 0) {
			/* parent: wait for "ok" or the child's error message */
			close(pipefd[1]);
			char msg[1024];
			ssize_t n = read(pipefd[0], msg, sizeof(msg) - 1);
			close(pipefd[0]);
			close(runfd);
			bundle_close(b);
			if (n == 2 && !memcmp(msg, "ok", 2))
				return 0;
			msg[n > 0 ? n : 0] = 0;
			return err_set(EIO, "%s",
				       n > 0 ? msg : "the VM process ended during start-up");
		}
		close(pipefd[0]);
		setsid();
		run_lock_write_pid(runfd); /* this process holds it now, not the parent */
		/* console input: the FIFO NAME/console.in (opened read-write so
		 * that it never reports end of file), for scripts */
		char inp[PATH_MAX];
		bundle_path(b, inp, sizeof(inp), "console.in");
		unlink(inp);
		if (mkfifo(inp, 0600) < 0 || (cin = open(inp, O_RDWR | O_CLOEXEC)) < 0)
			cin = open("/dev/null", O_RDONLY | O_CLOEXEC);
		cout = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (cout < 0) {
			r = err_set(errno, "%s", logp);
			goto child_fail;
		}
		dup2(cout, STDOUT_FILENO);
		dup2(cout, STDERR_FILENO);
		dup2(cin, STDIN_FILENO);
		cin = STDIN_FILENO;
		cout = STDOUT_FILENO;
	}
	struct vmm *vmm = NULL;
	r = run_setup(b, &opts, cin, cout, &vmm);
	if (r < 0)
		goto child_fail;
	/* the VM runs: other writers (snapshot, stop) may come in */
	close(b->lock_fd);
	b->lock_fd = -1;
	if (detach) {
		(void)!write(pipefd[1], "ok", 2);
		close(pipefd[1]);
	}
	r = vmm_run(vmm);
	vmm_destroy(vmm);
	if (detach)
		exit(r < 0 ? 1 : r);
	goto out;
child_fail:
	if (detach) {
		(void)!write(pipefd[1], err_msg(), strlen(err_msg()));
		exit(1);
	}
out:
	if (runfd >= 0)
		close(runfd);
	bundle_close(b);
	return r;
}

/* Where a running VM moved to: its disks per the control socket.  After
 * an interrupted in-place revert this tells whether the VM reverted. */
static json_t *running_disks(const struct bundle *b)
{
	json_t *req = json_pack("{s:s}", "cmd", "status"), *st = NULL, *d = NULL;
	if (ctl_request(b, req, &st) == 0)
		d = json_incref(json_object_get(st, "disks"));
	json_decref(req);
	json_decref(st);
	return d;
}

enum { SETTLE_NONE, SETTLE_MEMORY, SETTLE_DISK_ONLY };

/* After a whole-machine snapshot request (answered, failed, or cut short
 * by a crash), record what really happened; pending names the snapshot.
 * The VM freezes the disks before it writes memory, so: snapshot committed
 * -> adopted whole; disks moved to their new overlays but no snapshot ->
 * kept as a disk-only snapshot (the frozen layers are the VM's past);
 * neither -> nothing happened.  A suspend whose VM has ended resumes. */
static int snapshot_settle(struct bundle *b, bool running)
{
	json_t *p = json_incref(json_object_get(b->doc, "pending"));
	const char *id = bundle_str(p, "id");
	json_t *s = json_deep_copy(json_object_get(p, "snapshot"));
	char sd[PATH_MAX];
	snap_dir(b, id, sd, sizeof(sd));
	struct stat st;
	bool ovs = true;
	json_t *act = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(jarr(s, "layers"), i, v)
	{
		char ov[PATH_MAX];
		const char *l = json_string_value(v);
		snprintf(ov, sizeof(ov), "%.*s-%s.qcow2", (int)strlen(l) - 6, l, id);
		ovs &= access(ov, F_OK) == 0;
		json_array_append_new(act, json_string(ov));
	}
	if (running) {
		/* the VM says where it writes: moved means it took the snapshot
		 * (the freeze comes first); then wait for its memory writer */
		json_t *now = running_disks(b);
		ovs = now && json_equal(now, act);
		json_decref(now);
		char tmp[PATH_MAX + 8];
		snprintf(tmp, sizeof(tmp), "%s.tmp", sd);
		for (int k = 0; ovs && k < 2400 && stat(sd, &st) < 0 && stat(tmp, &st) == 0; k++)
			usleep(50000);
	}
	bool dir = stat(sd, &st) == 0;
	int kind = dir ? SETTLE_MEMORY : ovs ? SETTLE_DISK_ONLY : SETTLE_NONE;
	if (kind != SETTLE_NONE) {
		json_object_set_new(s, "memory", json_boolean(dir));
		if (!dir)
			json_object_set_new(s, "description",
					    json_string("memory could not be saved: disk only"));
		json_object_set(bundle_snapshots(b), id, s);
		json_object_set_new(b->doc, "current", json_string(id));
	}
	bool resume =
	    kind == SETTLE_MEMORY && !running && json_is_true(json_object_get(s, "suspend"));
	if (resume) {
		json_object_set_new(b->doc, "active", json_null());
		json_object_set_new(b->doc, "resume", json_string(id));
	} else if (kind != SETTLE_NONE) {
		json_object_set(b->doc, "active", act);
	}
	json_object_del(b->doc, "pending");
	int r = bundle_save(b);
	if (r == 0 && resume)
		for (i = 0; i < json_array_size(act); i++)
			unlink_own(b, jstr_at(act, i)); /* the overlays of a VM that ended */
	json_decref(act);
	json_decref(s);
	json_decref(p);
	return r < 0 ? r : kind;
}

/* Take a whole-machine snapshot of the running VM into snapshots/ID and
 * record it.  SUSPEND: the VM ends with it and the next run resumes it. */
static int snapshot_running(struct bundle *b, const char *snap, const char *desc, bool suspend,
			    json_t *report)
{
	char id[9], sd[PATH_MAX], created[32];
	bundle_random_hex(id, 8);
	snap_dir(b, id, sd, sizeof(sd));
	now_iso(created, sizeof(created));
	json_t *s = json_pack("{s:s, s:O, s:s, s:s?, s:b, s:O, s:b}", "name", snap, "parent",
			      json_object_get(b->doc, "current"), "created", created, "description",
			      desc, "memory", 1, "layers", active_layers(b), "suspend", suspend);
	/* recorded first: an interrupted snapshot is adopted or dropped by check */
	json_object_set_new(
	    b->doc, "pending",
	    json_pack("{s:s, s:s, s:O}", "op", "snapshot", "id", id, "snapshot", s));
	int r = bundle_save(b);
	if (r < 0)
		goto out;
	json_t *req = json_pack("{s:s, s:s}", "cmd", "snapshot", "path", sd), *reply = NULL;
	if (suspend)
		json_object_set_new(req, "then", json_string("quit"));
	struct mem_watch watch;
	bool watching = mem_watch_start(&watch, b, sd);
	r = ctl_request(b, req, &reply);
	if (watching)
		mem_watch_stop(&watch);
	json_decref(req);
	if (r == 0 && suspend)
		r = wait_stopped(b, 60);
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	int kind = snapshot_settle(b, bundle_running(b->dir, NULL));
	if (kind < 0) {
		r = kind;
	} else if (r < 0 && kind == SETTLE_DISK_ONLY) {
		err_set(0,
			"%s; the disks had been frozen already: snapshot \"%s\" was kept, disk "
			"only",
			msg, snap);
	} else if (r == 0 && kind != SETTLE_MEMORY) {
		r = err_set(EIO, "%s: the VM reported a snapshot that is not there", sd);
	}
	if (r == 0 && report) {
		json_object_set_new(report, "snapshot", json_string(snap));
		json_object_set_new(report, "id", json_string(id));
		json_object_set_new(report, "memory", json_true());
		json_object_set(report, "pause_ms", json_object_get(reply, "pause_ms"));
	}
	json_decref(reply);
out:
	json_decref(s);
	return r;
}

int mgr_stop(const char *name, bool save, json_t *report)
{
	struct bundle *b;
	int r = open_for_write(name, save ? "cairn stop --save" : "cairn stop", &b);
	if (r < 0)
		return r;
	if (!bundle_running(b->dir, NULL)) {
		r = err_set(EINVAL, "%s: the VM is not running", b->dir);
		goto out;
	}
	if (save) {
		char sname[64];
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(sname, sizeof(sname), "suspend-%Y%m%d-%H%M%S", &tm);
		const char *id;
		if (bundle_snap_by_name(b, sname, &id))
			snprintf(sname + strlen(sname), 16, "-%d", (int)getpid());
		err_clear();
		r = snapshot_running(b, sname, "saved by cairn stop --save", true, report);
	} else {
		json_t *req = json_pack("{s:s}", "cmd", "quit");
		r = ctl_request(b, req, NULL);
		json_decref(req);
		if (r == 0)
			r = wait_stopped(b, 60);
	}
out:
	bundle_close(b);
	return r;
}

/* ---- snapshot create / revert ------------------------------------------ */

static int snapshot_stopped(struct bundle *b, const char *snap, const char *desc, json_t *report)
{
	if (bundle_str(b->doc, "resume"))
		return err_set(
		    EINVAL, "%s: the VM is suspended: its state is already snapshot \"%s\"", b->dir,
		    bundle_str(bundle_snap(b, bundle_str(b->doc, "resume")), "name"));
	json_t *act = active_layers(b), *nact = json_array();
	int r = 0;
	for (size_t i = 0; i < json_array_size(act) && r == 0; i++) {
		char p[PATH_MAX];
		r = new_layer(b, jstr_at(act, i), p, sizeof(p));
		if (r == 0)
			json_array_append_new(nact, json_string(p));
	}
	if (r < 0)
		goto fail;
	char id[9], created[32];
	bundle_random_hex(id, 8);
	now_iso(created, sizeof(created));
	json_t *s = json_pack("{s:s, s:O, s:s, s:s?, s:b, s:O}", "name", snap, "parent",
			      json_object_get(b->doc, "current"), "created", created, "description",
			      desc, "memory", 0, "layers", act);
	json_t *old = json_copy(b->doc);
	json_object_set_new(bundle_snapshots(b), id, s);
	json_object_set_new(b->doc, "current", json_string(id));
	json_object_set(b->doc, "active", nact);
	r = bundle_save(b);
	if (r < 0) {
		json_decref(b->doc);
		b->doc = old;
		goto fail;
	}
	json_decref(old);
	set_frozen(jarr(s, "layers"), true);
	json_decref(nact);
	if (report) {
		json_object_set_new(report, "snapshot", json_string(snap));
		json_object_set_new(report, "id", json_string(id));
		json_object_set_new(report, "memory", json_false());
	}
	return 0;
fail:
	for (size_t i = 0; i < json_array_size(nact); i++)
		unlink_own(b, jstr_at(nact, i));
	json_decref(nact);
	return r;
}

int mgr_snapshot_create(const char *name, const char *snap, bool disk_only, const char *desc,
			json_t *report)
{
	if (!valid_name(snap))
		return err_set(EINVAL,
			       "snapshot name \"%s\": use 1-127 characters, no '/', not "
			       "starting with '.'",
			       snap);
	struct bundle *b;
	int r = open_for_write(name, "cairn snapshot create", &b);
	if (r < 0)
		return r;
	if (bundle_snap_by_name(b, snap, NULL)) {
		r = err_set(EEXIST, "%s: a snapshot named \"%s\" exists", b->dir, snap);
		goto out;
	}
	err_clear();
	if (bundle_running(b->dir, NULL)) {
		json_t *rep = report ? report : json_object();
		r = snapshot_running(b, snap, desc, false, rep);
		const char *id = bundle_str(rep, "id");
		if (r == 0 && disk_only && id) {
			/* the VM freezes its disks only as part of a whole-machine
			 * snapshot: its memory files are dropped afterwards */
			char sd[PATH_MAX];
			snap_dir(b, id, sd, sizeof(sd));
			json_object_set_new(bundle_snap(b, id), "memory", json_false());
			if ((r = bundle_save(b)) == 0) {
				rm_rf(sd);
				file_fsync_parent(sd);
				json_object_set_new(rep, "memory", json_false());
			}
		}
		if (rep != report)
			json_decref(rep);
	} else {
		r = snapshot_stopped(b, snap, desc, report);
	}
out:
	bundle_close(b);
	return r;
}

/* Stopped VM: the active state becomes snapshot SID's (a new empty layer
 * on its frozen layers; its memory is resumed by the next run). */
static int revert_stopped(struct bundle *b, const char *sid, json_t *report)
{
	json_t *s = bundle_snap(b, sid);
	json_t *old_act = json_incref(active_layers(b));
	json_t *nact = json_array();
	bool mem = json_is_true(json_object_get(s, "memory"));
	int r = 0;
	json_t *layers = jarr(s, "layers");
	for (size_t i = 0; !mem && i < json_array_size(layers) && r == 0; i++) {
		char p[PATH_MAX];
		r = new_layer(b, jstr_at(layers, i), p, sizeof(p));
		if (r == 0)
			json_array_append_new(nact, json_string(p));
	}
	if (r == 0) {
		json_t *old = json_copy(b->doc);
		json_object_set_new(b->doc, "current", json_string(sid));
		json_object_set_new(b->doc, "resume", mem ? json_string(sid) : json_null());
		json_object_set(b->doc, "active", mem ? json_null() : nact);
		r = bundle_save(b);
		if (r < 0) {
			json_decref(b->doc);
			b->doc = old;
		} else {
			json_decref(old);
		}
	}
	json_t *gone = r == 0 ? old_act : nact;
	for (size_t i = 0; i < json_array_size(gone); i++)
		unlink_own(b, jstr_at(gone, i));
	json_decref(old_act);
	json_decref(nact);
	if (r == 0 && report) {
		json_object_set_new(report, "reverted_to", json_string(bundle_str(s, "name")));
		json_object_set_new(report, "memory", json_boolean(mem));
	}
	return r;
}

/* Record the outcome of a revert of the running VM (pending "revert"):
 * when the VM's disks are no longer the recorded active layers it has
 * reverted, and they become the active layers.  Returns 1 when it had. */
static int revert_settle(struct bundle *b, bool running)
{
	json_t *p = json_incref(json_object_get(b->doc, "pending"));
	char id[32];
	snprintf(id, sizeof(id), "%s", bundle_str(p, "id"));
	json_t *old = json_object_get(p, "active"), *now = NULL;
	if (running) {
		now = running_disks(b);
	} else {
		/* the VM ended: its revert overlays are <frozen>-rXXXXXXXX.qcow2 */
		json_t *layers = jarr(bundle_snap(b, id), "layers");
		char disks[PATH_MAX];
		bundle_path(b, disks, sizeof(disks), "disks");
		json_t *names = json_object();
		dir_names(disks, names);
		now = json_array();
		for (size_t i = 0; i < json_array_size(layers); i++) {
			const char *l = strrchr(jstr_at(layers, i), '/') + 1;
			const char *k;
			json_t *v;
			json_object_foreach(names, k, v) if (!strncmp(k, l, strlen(l) - 6) &&
							     !strncmp(k + strlen(l) - 6, "-r", 2) &&
							     strlen(k) == strlen(l) + 10)
			{
				char path[PATH_MAX];
				sub_path(b, path, sizeof(path), "disks", k);
				json_array_append_new(now, json_string(path));
				break;
			}
		}
		json_decref(names);
	}
	bool moved = now && json_array_size(now) == json_array_size(old) && !json_equal(now, old);
	if (moved) {
		json_object_set(b->doc, "active", now);
		json_object_set_new(b->doc, "current", json_string(id));
		json_object_set_new(b->doc, "resume", json_null());
	}
	json_object_del(b->doc, "pending");
	int r = bundle_save(b);
	if (r == 0 && moved)
		for (size_t i = 0; i < json_array_size(old); i++)
			unlink_own(b, jstr_at(old, i));
	json_decref(now);
	json_decref(p);
	return r < 0 ? r : moved;
}

/* Running VM, whole-machine snapshot: the VM loads it in place (control
 * command "revert", new overlays in disks/).  -ENOSYS: the VMM has no
 * such command. */
static int revert_in_place(struct bundle *b, const char *sid, json_t *report)
{
	char sd[PATH_MAX], disks[PATH_MAX];
	snap_dir(b, sid, sd, sizeof(sd));
	bundle_path(b, disks, sizeof(disks), "disks");
	json_object_set_new(
	    b->doc, "pending",
	    json_pack("{s:s, s:s, s:O}", "op", "revert", "id", sid, "active", active_layers(b)));
	int r = bundle_save(b);
	if (r < 0)
		return r;
	json_t *req = json_pack("{s:s, s:s, s:s}", "cmd", "revert", "path", sd, "disk_dir", disks);
	r = ctl_request(b, req, NULL);
	json_decref(req);
	if (r < 0 && strstr(err_msg(), "unknown command"))
		r = -ENOSYS;
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	int moved = revert_settle(b, bundle_running(b->dir, NULL));
	if (moved < 0)
		return moved;
	if (r < 0) {
		if (r != -ENOSYS)
			err_set(0, "%s", msg);
		return r;
	}
	if (!moved)
		return err_set(EIO, "%s: the VM reverted but its disks did not move", b->dir);
	if (report) {
		json_object_set_new(report, "reverted_to",
				    json_string(bundle_str(bundle_snap(b, sid), "name")));
		json_object_set_new(report, "memory", json_true());
		json_object_set_new(report, "in_place", json_true());
	}
	return 0;
}

int mgr_snapshot_revert(const char *name, const char *snap, const char *save_current,
			json_t *report)
{
	struct bundle *b;
	int r = open_for_write(name, "cairn snapshot revert", &b);
	if (r < 0)
		return r;
	const char *sid;
	if (!bundle_snap_by_name(b, snap, &sid)) {
		r = -ENOENT;
		goto out;
	}
	char *id = strdup(sid);
	bool running = bundle_running(b->dir, NULL);
	if (save_current) {
		if (!valid_name(save_current) || bundle_snap_by_name(b, save_current, NULL)) {
			r = err_set(EINVAL, "--save-current \"%s\": not a new snapshot name",
				    save_current);
			goto out_id;
		}
		err_clear();
		r = running
			? snapshot_running(b, save_current, "saved before a revert", false, NULL)
			: snapshot_stopped(b, save_current, "saved before a revert", NULL);
		if (r < 0)
			goto out_id;
	}
	if (running && json_is_true(json_object_get(bundle_snap(b, id), "memory"))) {
		r = revert_in_place(b, id, report);
		if (r != -ENOSYS)
			goto out_id;
		err_clear();
	}
	if (running) {
		/* A disk-only snapshot (or a VMM without "revert"): the VM ends,
		 * and starts again from the snapshot (its memory if it has any,
		 * else a boot on its disk). */
		json_t *req = json_pack("{s:s}", "cmd", "quit");
		r = ctl_request(b, req, NULL);
		json_decref(req);
		if (r == 0)
			r = wait_stopped(b, 60);
		if (r < 0)
			goto out_id;
	}
	r = revert_stopped(b, id, report);
	if (r == 0 && running) {
		close(b->lock_fd);
		b->lock_fd = -1;
		r = mgr_run(name, true);
		if (report)
			json_object_set_new(report, "restarted", json_boolean(r == 0));
	}
out_id:
	free(id);
out:
	bundle_close(b);
	return r;
}

/* ---- delete ------------------------------------------------------------- */

/* The layers that sit directly on snapshot SID's layer of disk I: its
 * children's layers and, when the VM is at SID, the active layer. */
static json_t *dependents(const struct bundle *b, const char *sid, size_t disk)
{
	json_t *deps = json_array();
	const char *id;
	json_t *s;
	json_object_foreach(bundle_snapshots(b), id, s)
	{
		if (same_path(bundle_str(s, "parent"), sid))
			json_array_append(deps, json_array_get(jarr(s, "layers"), disk));
	}
	json_t *act = active_layers(b);
	if (act && same_path(bundle_str(b->doc, "current"), sid))
		json_array_append(deps, json_array_get(act, disk));
	return deps;
}

/* Merge layer L (being deleted) into its dependent D: "commit" copies D's
 * clusters into L and renames L over D; "stream" copies L's clusters into
 * D and points D at L's backing file.  Both keep D's content and are safe
 * to redo after a crash. */
static int merge_layer(const char *l, const char *d, const char *method)
{
	int r = 0;
	if (!strcmp(method, "commit")) {
		if (access(l, F_OK) < 0)
			return 0; /* renamed already */
		chmod(l, 0644);
		r = chain_commit(d, l, CHAIN_COMMIT_KEEP_TOP, &progress);
		if (r == 0 && rename(l, d) < 0)
			r = err_set(errno, "rename %s to %s", l, d);
		if (r == 0)
			r = file_fsync_parent(d);
		return r;
	}
	char *bk = NULL;
	if ((r = layer_backing(d, &bk)) < 0)
		return r;
	if (same_path(bk, l)) {
		char *base = NULL;
		r = layer_backing(l, &base);
		struct stat st;
		bool ro = stat(d, &st) == 0 && !(st.st_mode & 0200);
		chmod(d, 0644);
		if (r == 0)
			r = chain_stream(d, base, base && !is_qcow2_file(base) ? "raw" : "qcow2",
					 &progress);
		if (ro)
			chmod(d, 0444);
		free(base);
	}
	free(bk);
	return r;
}

/* Carry out (or finish) the delete recorded in vm.json's "pending". */
static int delete_apply(struct bundle *b)
{
	json_t *p = json_incref(json_object_get(b->doc, "pending"));
	const char *sid = bundle_str(p, "id");
	json_t *s = json_object_get(p, "snapshot");
	json_t *layers = jarr(s, "layers"), *merges = jarr(p, "merges");
	int r = 0;
	size_t i;
	json_t *m;
	json_array_foreach(merges, i, m)
	{
		r = merge_layer(bundle_str(m, "layer"), bundle_str(m, "into"),
				bundle_str(m, "method"));
		if (r < 0) {
			err_prefix(r, "delete of snapshot \"%s\"", bundle_str(s, "name"));
			json_decref(p);
			return r;
		}
	}
	/* switch: children go to the parent, the snapshot goes */
	const char *id;
	json_t *c;
	json_t *parent = json_object_get(s, "parent");
	json_object_foreach(bundle_snapshots(b), id, c)
	{
		if (same_path(bundle_str(c, "parent"), sid))
			json_object_set(c, "parent", parent);
	}
	if (same_path(bundle_str(b->doc, "current"), sid))
		json_object_set(b->doc, "current", parent);
	json_object_del(bundle_snapshots(b), sid);
	json_incref(s);
	char *sidc = strdup(sid);
	json_object_del(b->doc, "pending");
	r = bundle_save(b);
	if (r == 0) {
		json_t *v;
		json_array_foreach(layers, i, v) if (access(json_string_value(v), F_OK) == 0)
		{
			bool merged_by_commit = false;
			size_t k;
			json_array_foreach(merges, k, m) merged_by_commit |=
			    same_path(bundle_str(m, "layer"), json_string_value(v)) &&
			    !strcmp(bundle_str(m, "method"), "commit");
			if (!merged_by_commit)
				unlink_own(b, json_string_value(v));
		}
		char sd[PATH_MAX];
		snap_dir(b, sidc, sd, sizeof(sd));
		rm_rf(sd);
		file_fsync_parent(sd);
	}
	free(sidc);
	json_decref(s);
	json_decref(p);
	return r;
}

static const char *clone_of(const struct bundle *b, const char *sid)
{
	size_t i;
	json_t *v;
	json_array_foreach(
	    jarr(b->doc, "clones"), i,
	    v) if (same_path(bundle_str(v, "snapshot"), sid)) return bundle_str(v, "path");
	return NULL;
}

int mgr_snapshot_delete(const char *name, const char *snap, json_t *report)
{
	struct bundle *b;
	int r = open_for_write(name, "cairn snapshot delete", &b);
	if (r < 0)
		return r;
	const char *sid;
	json_t *s = bundle_snap_by_name(b, snap, &sid);
	if (!s) {
		r = -ENOENT;
		goto out;
	}
	if (same_path(bundle_str(b->doc, "resume"), sid)) {
		r = err_set(EBUSY,
			    "%s: snapshot \"%s\" is the suspended state the next run resumes; "
			    "revert to another snapshot first",
			    b->dir, snap);
		goto out;
	}
	const char *cl = clone_of(b, sid);
	if (cl) {
		r = err_set(EBUSY,
			    "%s: snapshot \"%s\" is used by the linked clone %s; destroy the "
			    "clone first",
			    b->dir, snap, cl);
		goto out;
	}
	bool running = bundle_running(b->dir, NULL);
	json_t *act = active_layers(b), *layers = jarr(s, "layers"), *merges = json_array();
	for (size_t i = 0; i < json_array_size(layers); i++) {
		const char *l = jstr_at(layers, i);
		json_t *deps = dependents(b, sid, i);
		size_t k;
		json_t *d;
		json_array_foreach(deps, k, d)
		{
			const char *dp = json_string_value(d);
			bool is_active = act && same_path(dp, jstr_at(act, i));
			if (running && is_active) {
				json_decref(deps);
				json_decref(merges);
				r = err_set(EBUSY,
					    "%s: the running VM writes on top of snapshot \"%s\"; "
					    "stop it (or take a snapshot) first",
					    b->dir, snap);
				goto out;
			}
			/* commit moves the dependent's bytes, stream the deleted
			 * layer's: the smaller; never commit into a layer that a
			 * running VM has open, and only with one dependent */
			const char *method = "stream";
			if (!running && json_array_size(deps) == 1 && own_layer(b, l) &&
			    file_bytes(dp) < file_bytes(l))
				method = "commit";
			json_array_append_new(merges, json_pack("{s:s, s:s, s:s}", "layer", l,
								"into", dp, "method", method));
		}
		json_decref(deps);
	}
	uint64_t moved = 0;
	size_t k;
	json_t *m;
	json_array_foreach(merges, k, m) moved +=
	    file_bytes(bundle_str(m, strcmp(bundle_str(m, "method"), "commit") ? "layer" : "into"));
	if ((r = need_space(b->dir, moved, "merging the snapshot's layer")) < 0) {
		json_decref(merges);
		goto out;
	}
	uint64_t before = bundle_du(b->dir);
	json_object_set_new(b->doc, "pending",
			    json_pack("{s:s, s:s, s:O, s:o}", "op", "delete", "id", sid, "snapshot",
				      s, "merges", merges));
	merges = json_incref(merges);
	if ((r = bundle_save(b)) < 0) {
		json_object_del(b->doc, "pending");
		goto out;
	}
	r = delete_apply(b);
	bool all_stream = true;
	json_array_foreach(merges, k, m) all_stream &= !strcmp(bundle_str(m, "method"), "stream");
	if (r < 0 && all_stream && json_object_get(b->doc, "pending")) {
		/* a stream only ever adds to the children what they already read
		 * through the chain: undone by forgetting it */
		json_object_del(b->doc, "pending");
		if (bundle_save(b) == 0)
			err_prefix(r, "nothing was deleted");
	}
	uint64_t after = bundle_du(b->dir);
	if (r == 0 && report) {
		json_object_set_new(report, "deleted", json_string(snap));
		json_object_set_new(report, "freed_bytes",
				    json_integer((json_int_t)before - (json_int_t)after));
		json_object_set_new(report, "merges", json_copy(merges));
		if (running)
			json_object_set_new(report, "note",
					    json_string("the running VM keeps the old layers open: "
							"their space comes back when it ends"));
	}
	json_decref(merges);
out:
	bundle_close(b);
	return r;
}

/* ---- list --------------------------------------------------------------- */

static uint64_t layers_bytes(const json_t *layers)
{
	uint64_t n = 0;
	size_t i;
	json_t *v;
	json_array_foreach(layers, i, v) n += file_bytes(json_string_value(v));
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
		if ((parent && same_path(p, parent)) || (!parent && !p)) {
			size_t at = json_array_size(kids);
			for (size_t k = 0; k < json_array_size(kids); k++) {
				json_t *o = bundle_snap(b, jstr_at(kids, k));
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
		const char *kid = jstr_at(kids, k);
		s = bundle_snap(b, kid);
		char sd[PATH_MAX];
		snap_dir(b, kid, sd, sizeof(sd));
		uint64_t layer = layers_bytes(jarr(s, "layers"));
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
			     "current", same_path(bundle_str(b->doc, "current"), kid), "suspended",
			     same_path(bundle_str(b->doc, "resume"), kid), "depth", depth));
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
	*out = json_pack("{s:s, s:o, s:s?, s:I}", "state", vm_state(b, NULL), "snapshots", arr,
			 "current", cur ? bundle_str(cur, "name") : NULL, "active_bytes",
			 (json_int_t)layers_bytes(active_layers(b)));
	bundle_close(b);
	return 0;
}

/* ---- clone ---------------------------------------------------------------- */

int mgr_clone(const char *name, const char *snap, const char *newname, bool full, json_t *report)
{
	struct bundle *b;
	int r = open_for_write(name, full ? "cairn clone --full" : "cairn clone", &b);
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
		json_array_append_new(jarr(b->doc, "clones"),
				      json_pack("{s:s, s:s}", "path", ndir, "snapshot", sid));
		if ((r = bundle_save(b)) < 0)
			goto out;
	}
	if (full) {
		uint64_t need = 0;
		for (json_t *a = s; a; a = bundle_snap(b, bundle_str(a, "parent")))
			need += layers_bytes(jarr(a, "layers"));
		char parent[PATH_MAX];
		snprintf(parent, sizeof(parent), "%s", newname);
		char *slash = strrchr(parent, '/');
		if (slash)
			*slash = 0;
		if ((r = need_space(slash ? (*parent ? parent : "/") : ".", need, "a full clone")) <
		    0)
			goto out;
	}
	char real[PATH_MAX];
	if ((r = make_bundle_dirs(newname, real, sizeof(real))) < 0)
		goto out;
	int lock = -1;
	if ((r = bundle_lock(real, "cairn clone", &lock)) < 0)
		goto out;
	struct bundle n = {.dir = real, .lock_fd = lock};
	json_t *layers = jarr(s, "layers"), *act = json_array();
	for (size_t i = 0; i < json_array_size(layers) && r == 0; i++) {
		char p[PATH_MAX];
		if (full) {
			char dn[32];
			snprintf(dn, sizeof(dn), "disk%zu.qcow2", i);
			r = sub_path(&n, p, sizeof(p), "disks", dn);
			if (r < 0)
				break;
			struct chain_convert_opts co = {.src_fmt = "qcow2", .dst_fmt = "qcow2"};
			r = chain_convert(jstr_at(layers, i), p, &co, &progress);
		} else {
			r = new_layer(&n, jstr_at(layers, i), p, sizeof(p));
		}
		if (r == 0)
			json_array_append_new(act, json_string(p));
	}
	if (r < 0) {
		json_decref(act);
		close(lock);
		goto out;
	}
	n.doc = new_doc(newname);
	json_t *cfg = json_deep_copy(json_object_get(b->doc, "config"));
	size_t i;
	json_t *d;
	json_array_foreach(jarr(cfg, "disks"), i, d)
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

/* ---- check -------------------------------------------------------------- */

struct check_ctx {
	struct bundle *b;
	bool repair, running;
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
	json_t *p = json_object_get(b->doc, "pending");
	if (!p)
		return 0;
	char op[32], id[32];
	snprintf(op, sizeof(op), "%s", bundle_str(p, "op") ? bundle_str(p, "op") : "?");
	snprintf(id, sizeof(id), "%s", bundle_str(p, "id") ? bundle_str(p, "id") : "?");
	problem(c, "an interrupted \"%s\" (snapshot id %s) is pending", op, id);
	if (!c->repair)
		return 0;
	if (same_path(op, "delete")) {
		int r = delete_apply(b);
		if (r == 0)
			repaired(c, "finished the interrupted delete");
		return r;
	}
	if (same_path(op, "revert")) {
		int moved = revert_settle(b, c->running);
		if (moved < 0)
			return moved;
		repaired(c,
			 moved ? "recorded the interrupted revert to %s"
			       : "the interrupted revert to %s had not happened",
			 id);
		return 0;
	}
	int kind = snapshot_settle(b, c->running);
	if (kind < 0)
		return kind;
	repaired(c,
		 kind == SETTLE_MEMORY	    ? "adopted the committed snapshot %s"
		 : kind == SETTLE_DISK_ONLY ? "kept snapshot %s (its disks were frozen), disk only"
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
	if (layer_backing(path, &bk) < 0) {
		problem(c, "%s: %s", what, err_msg());
		return;
	}
	if (want_backing && !same_path(bk, want_backing))
		problem(c, "%s: layer %s has backing file %s, expected %s", what, path,
			bk ? bk : "(none)", want_backing);
	free(bk);
	if (!own_layer(c->b, path) || (active && c->running))
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
		/* a running VM only reads its frozen layers, never their refcounts */
		if (c->repair &&
		    qcow2_check(path, QCOW2_CHECK_REPAIR_LEAKS, &res, NULL) == 0 && !res.leaks) {
			repaired(c, "%s: %s: leaked clusters freed", what, path);
		} else {
			problem(c, "%s: %s: %llu leaked clusters", what, path,
				(unsigned long long)res.leaks);
		}
	}
}

static void check_memory(struct check_ctx *c, const char *sid, const char *name)
{
	char sd[PATH_MAX];
	snap_dir(c->b, sid, sd, sizeof(sd));
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
}

static void check_tree(struct check_ctx *c)
{
	struct bundle *b = c->b;
	const char *id;
	json_t *s;
	json_object_foreach(bundle_snapshots(b), id, s)
	{
		const char *name = bundle_str(s, "name"), *parent = bundle_str(s, "parent");
		char what[256];
		snprintf(what, sizeof(what), "snapshot \"%s\"", name ? name : id);
		json_t *ps = parent ? bundle_snap(b, parent) : NULL;
		if (parent && !ps)
			problem(c, "%s: parent %s does not exist", what, parent);
		json_t *layers = jarr(s, "layers");
		for (size_t i = 0; i < json_array_size(layers); i++)
			check_layer(c, what, jstr_at(layers, i),
				    ps ? jstr_at(jarr(ps, "layers"), i) : NULL, false);
		char sd[PATH_MAX];
		snap_dir(b, id, sd, sizeof(sd));
		if (json_is_true(json_object_get(s, "memory"))) {
			json_object_set_new(c->refs, sd, json_true());
			check_memory(c, id, what);
		}
	}
	const char *cur = bundle_str(b->doc, "current"), *res = bundle_str(b->doc, "resume");
	json_t *cs = bundle_snap(b, cur);
	if (cur && !cs)
		problem(c, "current snapshot %s does not exist", cur);
	if (res && !bundle_snap(b, res))
		problem(c, "the snapshot %s to resume does not exist", res);
	json_t *act = active_layers(b);
	if (!act && !res)
		problem(c, "no active layer and nothing to resume");
	for (size_t i = 0; act && i < json_array_size(act); i++)
		check_layer(c, "active layer", jstr_at(act, i),
			    cs ? jstr_at(jarr(cs, "layers"), i) : NULL, true);
}

static void check_clones(struct check_ctx *c)
{
	json_t *cl = jarr(c->b->doc, "clones");
	for (size_t i = 0; cl && i < json_array_size(cl);) {
		char p[PATH_MAX - 16], vj[PATH_MAX];
		const char *ps = bundle_str(json_array_get(cl, i), "path");
		snprintf(p, sizeof(p), "%s", ps ? ps : "");
		snprintf(vj, sizeof(vj), "%s/vm.json", p);
		if (access(vj, F_OK) == 0) {
			i++;
			continue;
		}
		problem(c, "linked clone %s is gone (or its creation was interrupted)", p);
		if (c->repair) {
			json_array_remove(cl, i);
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
		if (c->repair && rm_rf(p) == 0)
			repaired(c, "removed %s", p);
	}
	closedir(d);
	if (c->repair)
		file_fsync_parent(dir);
}

int mgr_check(const char *name, bool repair, json_t *report)
{
	struct bundle *b;
	int r = bundle_open(name, repair, repair ? "cairn check --repair" : "cairn check", &b);
	char real[PATH_MAX], lockp[PATH_MAX];
	if (r == -ENOENT && realpath(name, real)) {
		if (path_join(lockp, sizeof(lockp), real, "lock") < 0 || access(lockp, F_OK) < 0)
			return r;
		json_object_set_new(
		    report, "problems",
		    json_pack("[s]", "no vm.json: an interrupted create or destroy"));
		if (!repair)
			return err_set(EUCLEAN,
				       "%s: an interrupted create or destroy; 'cairn check "
				       "--repair' (or 'cairn destroy') removes it",
				       real);
		rm_rf(real);
		json_object_set_new(report, "repaired", json_pack("[s]", "removed the bundle"));
		return 0;
	}
	if (r < 0)
		return r;
	struct check_ctx c = {.b = b,
			      .repair = repair,
			      .running = bundle_running(b->dir, NULL),
			      .problems = json_array(),
			      .repaired = json_array(),
			      .refs = json_object()};
	r = check_pending(&c);
	if (r == 0) {
		check_tree(&c);
		check_clones(&c);
		if (c.running) {
			/* never take what the VM writes to, whatever vm.json says */
			json_t *now = running_disks(b);
			size_t i;
			json_t *v;
			json_array_foreach(now, i, v) ref(&c, json_string_value(v));
			if (now && active_layers(b) && !json_equal(now, active_layers(b)) &&
			    !json_object_get(b->doc, "pending"))
				problem(&c, "the running VM writes to %s, vm.json names %s",
					jstr_at(now, 0), jstr_at(active_layers(b), 0));
			json_decref(now);
		}
		if (!json_object_get(b->doc, "pending")) {
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
	json_object_set_new(report, "snapshots",
			    json_integer((json_int_t)json_object_size(bundle_snapshots(b))));
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
		r = mgr_check(b->dir, false, again);
		json_object_set(report, "remaining", json_object_get(again, "problems"));
		json_decref(again);
	}
	json_decref(c.problems);
	json_decref(c.repaired);
	json_decref(c.refs);
	bundle_close(b);
	return r;
}
