/* The running VM's control commands (docs/control.md), and the snapshot
 * operation they start: pause, save machine state and memory, freeze the
 * disk layers under new overlays, commit the snapshot directory, resume. */
#include "control/control.h"
#include "arch/x86/pvm.h"
#include "devices/device.h"
#include "disk/block.h"
#include "disk/chain.h"
#include "disk/qcow2.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "util/evloop.h"
#include "snapshot/state_file.h"
#include "util/fileutil.h"
#include "util/log.h"
#include "vmm/config_json.h"
#include "vmm/vm_snapshot.h"
#include "vmm/vmm_internal.h"

#include "snapshot/ram_cow.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

/* The devices with disks, in device-list order (= --disk order). */
static unsigned vmm_disk_devices(struct vmm *vmm, struct device **out, unsigned max)
{
	unsigned n = 0;
	for (struct device *d = vmm->vm->devices; d && n < max; d = d->next)
		if (d->ops->get_block)
			out[n++] = d;
	return n;
}

struct disk_rotation {
	struct device *dev;
	struct block_dev *old, *new;
	mode_t mode; /* the frozen layer's, before it was made read-only */
	char frozen[PATH_MAX], overlay[PATH_MAX];
};

/* Remove the overlay files vmm_disks_prepare created. */
static void vmm_disks_unprepare(struct disk_rotation *rot, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (rot[i].overlay[0]) {
			unlink(rot[i].overlay);
			rot[i].overlay[0] = 0;
		}
}

/* Overlay names grow by the snapshot's name: disk.qcow2 frozen at "s1"
 * continues as disk-s1.qcow2. */
static void overlay_name(char *out, size_t len, const char *active, const char *snapdir)
{
	char a[PATH_MAX], b[PATH_MAX];
	snprintf(a, sizeof(a), "%s", active);
	snprintf(b, sizeof(b), "%s", snapdir);
	char *stem = a;
	size_t l = strlen(stem);
	if (l > 6 && !strcmp(stem + l - 6, ".qcow2"))
		stem[l - 6] = 0;
	snprintf(out, len, "%s-%s.qcow2", stem, basename(b));
}

/* With the VM still running: check every writable disk can be frozen
 * (qcow2) and create its new overlay file, so that the pause does not wait
 * for the files' fsyncs.  An empty overlay only names its backing file;
 * it is opened (reading the backing layer's metadata) once the VM is
 * paused.  On failure no overlay is left. */
static int vmm_disks_prepare(struct vmm *vmm, struct disk_rotation *rot, unsigned n,
			     const char *snapdir)
{
	int r = 0;
	for (unsigned i = 0; r == 0 && i < n; i++) {
		struct block_dev *bd = rot[i].dev->ops->get_block(rot[i].dev->priv);
		rot[i].old = bd;
		if (bd->readonly)
			continue;
		struct stat st;
		if (strcmp(bd->format, "qcow2"))
			r = err_set(ENOTSUP, "%s: a %s disk cannot be snapshotted with the "
					     "machine; convert it first (cairn img convert -O qcow2)",
				    bd->path, bd->format);
		else if (!realpath(bd->path, rot[i].frozen) || stat(rot[i].frozen, &st) < 0)
			r = err_set(errno, "%s", bd->path);
		else {
			rot[i].mode = st.st_mode & 07777;
			overlay_name(rot[i].overlay, sizeof(rot[i].overlay), rot[i].frozen, snapdir);
			r = qcow2_create_overlay(rot[i].overlay, rot[i].frozen, "qcow2");
		}
	}
	if (r < 0)
		vmm_disks_unprepare(rot, n);
	return r;
}

/* VM paused: flush every writable disk and put its overlay on top; all or
 * none (on failure the disks stay as they were, no overlay is left). */
static int vmm_disks_rotate(struct vmm *vmm, struct disk_rotation *rot, unsigned n)
{
	unsigned done = 0;
	int r = 0;
	for (; done < n; done++) {
		struct disk_rotation *d = &rot[done];
		if (d->old->readonly)
			continue;
		if ((r = block_flush(d->old)) < 0)
			break;
		if ((r = block_open(d->overlay, "qcow2", 0, &d->new)) < 0)
			break;
		d->dev->ops->set_block(d->dev->priv, d->new);
	}
	if (r < 0) {
		while (done--) {
			struct disk_rotation *d = &rot[done];
			if (!d->new)
				continue;
			d->dev->ops->set_block(d->dev->priv, d->old);
			block_close(d->new);
			d->new = NULL;
		}
		vmm_disks_unprepare(rot, n);
		return r;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!rot[i].new)
			continue;
		block_close(rot[i].old);
		chmod(rot[i].frozen, 0444); /* frozen layers stay as they are */
		free(vmm->cfg.disks[i].path);
		vmm->cfg.disks[i].path = strdup(rot[i].overlay);
	}
	return 0;
}

static int vmm_write_meta(const char *dir, const char *name, const struct vm_config *cfg,
			  const struct vm_snapshot_stats *st)
{
	char path[PATH_MAX];
	int r = path_join(path, sizeof(path), dir, SNAP_META_FILE);
	if (r < 0)
		return r;
	json_t *j = json_pack("{s:i, s:s, s:I, s:o, s:{s:I, s:I, s:I}}", "format", 1, "name", name,
			      "created", (json_int_t)time(NULL), "config", vm_config_to_json(cfg),
			      "stats", "pause_us", (json_int_t)st->pause_us, "memory_bytes",
			      (json_int_t)st->memory_bytes, "config_bytes",
			      (json_int_t)st->state_bytes);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	if (!text)
		return err_set(ENOMEM, "%s", path);
	r = file_replace_atomic(path, text, strlen(text));
	free(text);
	return r;
}

static int remove_tree(const char *dir)
{
	static const char *const files[] = {SNAP_STATE_FILE, SNAP_MEMORY_FILE, SNAP_META_FILE};
	char p[PATH_MAX], tmp[64];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (path_join(p, sizeof(p), dir, files[i]) == 0)
			unlink(p);
		snprintf(tmp, sizeof(tmp), "%s.tmp", files[i]);
		if (path_join(p, sizeof(p), dir, tmp) == 0)
			unlink(p);
	}
	return rmdir(dir);
}

/* A snapshot being taken.  Phase 1 runs with the VM paused and is short:
 * capture vCPU, VM and device state into memory and fix RAM as it is
 * (write protection, or fork).  The disks are frozen under new overlays
 * before the I/O thread serves another request.  Phase 2 writes
 * memory.img, state.bin and meta.json and commits DIR.tmp to DIR: for
 * "then":"quit" in this process, otherwise in a writer thread through the
 * userfaultfd view of RAM or in a forked child, while the VM runs on.  The
 * control reply comes at the end. */
struct snap_job {
	struct vmm *vmm;
	char dir[PATH_MAX], tmp[PATH_MAX + 8];
	struct vm_config frozen;
	struct vm_snapshot_capture *capture;
	struct vm_snapshot_stats st;
	uint64_t t0;
	pid_t child;
	int pipe_rd, pipe_wr;
	/* Phase 2 in a thread of this process through a userfaultfd view of
	 * RAM (ram_cow.h), or, where that is unavailable, in a forked child. */
	struct ram_cow *cow;
	pthread_t writer;
	bool writer_started;
	/* the disks and their new overlays (made before the pause) */
	struct disk_rotation rot[VM_MAX_DISKS];
	unsigned ndisks;
	/* per disk: frozen under a new overlay at this snapshot, and its mode */
	bool rotated[VM_MAX_DISKS];
	mode_t frozen_mode[VM_MAX_DISKS];
	struct control_pending *pending;
	json_t *reply;
};

static void snap_job_free(struct snap_job *j)
{
	ram_cow_close(j->cow);
	vm_snapshot_capture_free(j->capture);
	vm_config_free(&j->frozen);
	if (j->pipe_rd >= 0)
		close(j->pipe_rd);
	if (j->pipe_wr >= 0)
		close(j->pipe_wr);
	json_decref(j->reply);
	free(j);
}

/* Before the pause: the snapshot's directory and the disks' new overlays. */
static int snap_prepare(struct snap_job *j)
{
	struct vmm *vmm = j->vmm;
	if (access(j->dir, F_OK) == 0)
		return err_set(EEXIST, "%s", j->dir);
	if (access(j->tmp, F_OK) == 0 && remove_tree(j->tmp) < 0)
		return err_set(errno, "%s: leftover of an earlier attempt cannot be removed", j->tmp);
	if (mkdir(j->tmp, 0755) < 0)
		return err_set(errno, "%s", j->tmp);
	struct device *devs[VM_MAX_DISKS];
	j->ndisks = vmm_disk_devices(vmm, devs, VM_MAX_DISKS);
	for (unsigned i = 0; i < j->ndisks; i++)
		j->rot[i] = (struct disk_rotation){.dev = devs[i]};
	int r = vmm_disks_prepare(vmm, j->rot, j->ndisks, j->dir);
	if (r < 0)
		remove_tree(j->tmp);
	return r;
}

/* Undo snap_prepare: no overlay, no DIR.tmp. */
static void snap_unprepare(struct snap_job *j)
{
	vmm_disks_unprepare(j->rot, j->ndisks);
	remove_tree(j->tmp);
}

/* Phase 1 (VM paused): vCPU, VM and device state into memory, with the
 * configuration the snapshot records (its disks being the frozen layers).
 * On failure the prepared overlays and DIR.tmp go. */
static int snap_capture(struct snap_job *j)
{
	struct vmm *vmm = j->vmm;
	vm_config_copy(&j->frozen, &vmm->cfg);
	for (unsigned i = 0; i < j->ndisks; i++)
		if (!j->rot[i].old->readonly) {
			free(j->frozen.disks[i].path);
			j->frozen.disks[i].path = strdup(j->rot[i].frozen);
		}
	int r = vm_snapshot_capture(vmm->vm, &j->frozen, &j->capture);
	if (r < 0)
		snap_unprepare(j);
	return r;
}

/* After snap_capture, before the I/O thread serves another disk request:
 * the disks onto their overlays, all or none. */
static int snap_freeze_disks(struct snap_job *j)
{
	int r = vmm_disks_rotate(j->vmm, j->rot, j->ndisks);
	for (unsigned i = 0; r == 0 && i < j->ndisks; i++) {
		j->rotated[i] = j->rot[i].new != NULL;
		j->frozen_mode[i] = j->rot[i].mode;
	}
	if (r < 0)
		remove_tree(j->tmp);
	return r;
}

/* Whether OV holds nothing of its own: the guest wrote nothing to it. */
static int overlay_is_empty(struct block_dev *ov, bool *empty)
{
	*empty = true;
	for (uint64_t off = 0, n; off < ov->size && *empty; off += n) {
		unsigned st;
		uint64_t host;
		int r = block_status(ov, off, ov->size - off, &n, &st, &host);
		if (r < 0)
			return r;
		*empty = !(st & BLOCK_STATUS_ALLOCATED);
	}
	return 0;
}

/* The snapshot failed after its disks were frozen (memory or state could
 * not be written): the frozen layers are no restore point, so the disks go
 * back as they were.  With the VM paused, each overlay's writes since the
 * freeze are committed into its frozen layer, which is the active layer
 * again, and the overlay goes.  A disk where that fails stays on its
 * overlay (one extra layer, nothing lost).  Returns how many stayed. */
static int snap_undo_rotation(struct snap_job *j, bool vm_paused)
{
	struct vmm *vmm = j->vmm;
	struct device *devs[VM_MAX_DISKS];
	unsigned n = vmm_disk_devices(vmm, devs, VM_MAX_DISKS);
	bool was_paused = vm_paused || vmm->paused;
	int stayed = 0;
	if (!was_paused)
		vm_pause(vmm->vm);
	for (unsigned i = 0; i < n && (int)i < vmm->cfg.ndisks; i++) {
		if (!j->rotated[i])
			continue;
		const char *frozen = j->frozen.disks[i].path, *overlay = vmm->cfg.disks[i].path;
		struct block_dev *ov = devs[i]->ops->get_block(devs[i]->priv), *back = NULL;
		bool empty = false;
		int r = block_flush(ov);
		if (r == 0)
			r = overlay_is_empty(ov, &empty);
		if (r == 0 && chmod(frozen, j->frozen_mode[i]) < 0)
			r = err_set(errno, "%s", frozen);
		/* An empty overlay has nothing to merge: dropping it needs no room,
		 * where a commit writes (on a full file system it would fail). */
		if (r == 0 && !empty)
			r = chain_commit(overlay, NULL, 0, NULL);
		if (r == 0)
			r = block_open(frozen, "qcow2", 0, &back);
		if (r < 0) {
			log_warn("disk %u stays on %s over %s: %s", i, overlay, frozen, err_msg());
			chmod(frozen, 0444);
			stayed++;
			continue;
		}
		devs[i]->ops->set_block(devs[i]->priv, back);
		block_close(ov);
		unlink(overlay);
		free(vmm->cfg.disks[i].path);
		vmm->cfg.disks[i].path = strdup(frozen);
		j->rotated[i] = false;
	}
	if (!was_paused)
		vm_resume(vmm->vm);
	return stayed;
}

/* The error of a failed snapshot, and where its disks are now. */
static void snap_failed(struct snap_job *j, const char *msg, bool vm_paused, json_t *reply)
{
	char m[1024], text[1200];
	snprintf(m, sizeof(m), "%s", msg); /* msg may be err_msg(), overwritten below */
	remove_tree(j->tmp);
	int stayed = snap_undo_rotation(j, vm_paused);
	snprintf(text, sizeof(text), "%s%s", m,
		 stayed ? "; the disks stay on their new overlays (an extra layer, nothing lost)"
			: "; the disks are back on their layers as before the snapshot");
	err_set(EIO, "%s", text);
	if (reply)
		json_object_set_new(reply, "error", json_string(text));
}

/* Phase 2: RAM (or SRC) is the VM's memory as it was at the pause. */
static int snap_write(struct snap_job *j, const void *ram, const struct mem_image_source *src,
		      uint64_t size)
{
	char name[PATH_MAX];
	snprintf(name, sizeof(name), "%s", j->dir);
	int r = vm_snapshot_write(j->capture, ram, src, size, j->tmp, &j->st);
	if (r == 0)
		r = vmm_write_meta(j->tmp, basename(name), &j->frozen, &j->st);
	if (r == 0 && rename(j->tmp, j->dir) < 0)
		r = err_set(errno, "%s: cannot commit the snapshot", j->dir);
	if (r == 0)
		r = file_fsync_parent(j->dir);
	if (r < 0)
		remove_tree(j->tmp);
	return r;
}

static void snap_reply_fields(struct snap_job *j, json_t *reply)
{
	json_object_set_new(reply, "path", json_string(j->dir));
	json_object_set_new(reply, "pause_ms", json_real((double)j->st.pause_us / 1000.0));
	json_object_set_new(reply, "memory_bytes", json_integer((json_int_t)j->st.memory_bytes));
	json_object_set_new(reply, "total_ms", json_real((double)(now_us() - j->t0) / 1000.0));
}

/* The child's report: 0 and its stats, or the error message. */
struct snap_report {
	int result;
	uint64_t memory_bytes;
	char msg[1024];
};

/* Phase 2 wherever it runs (forked child or writer thread): write the
 * snapshot from RAM or SRC, then the report to FD.  0 when both went. */
static int snap_write_report(struct snap_job *j, int fd, const void *ram,
			     const struct mem_image_source *src)
{
	struct snap_report rep = {0};
	rep.result = snap_write(j, ram, src, j->vmm->vm->ram_size);
	rep.memory_bytes = j->st.memory_bytes;
	snprintf(rep.msg, sizeof(rep.msg), "%s", err_msg());
	ssize_t w = write(fd, &rep, sizeof(rep)); /* short: the reply says it died */
	return w == (ssize_t)sizeof(rep) && rep.result == 0 ? 0 : -1;
}

/* A writer thread reads guest RAM: wait for it, then lift what protection
 * is left.  (A forked writer has its own copy of RAM.) */
static void snap_writer_end(struct snap_job *j)
{
	if (j->writer_started)
		pthread_join(j->writer, NULL);
	j->writer_started = false;
	ram_cow_close(j->cow);
	j->cow = NULL;
}

static void snap_child_done(void *opaque, uint32_t events)
{
	struct snap_job *j = opaque;
	struct snap_report rep = {.result = -EIO};
	ssize_t n = read(j->pipe_rd, &rep, sizeof(rep));
	if (n != (ssize_t)sizeof(rep))
		snprintf(rep.msg, sizeof(rep.msg), "%.900s: the snapshot writer (pid %d) died",
			 j->dir, (int)j->child);
	if (!j->writer_started) {
		int status;
		waitpid(j->child, &status, 0);
	}
	/* How the writer saw RAM; with the userfaultfd view, how many chunks
	 * the guest wrote before the writer reached them (each copied first). */
	json_object_set_new(j->reply, "writer", json_string(j->cow ? "thread" : "fork"));
	if (j->cow)
		json_object_set_new(j->reply, "cow_copies",
				    json_integer((json_int_t)ram_cow_copied(j->cow)));
	snap_writer_end(j);
	evloop_del(j->vmm->loop, j->pipe_rd);
	j->vmm->snap_job = NULL;
	if (rep.result < 0) {
		snap_failed(j, rep.msg, false, j->reply);
		snprintf(rep.msg, sizeof(rep.msg), "%s", err_msg());
	} else {
		j->vmm->snapshots++;
		j->st.memory_bytes = rep.memory_bytes;
		snap_reply_fields(j, j->reply);
	}
	log_info("snapshot %s: %s", j->dir, rep.result < 0 ? rep.msg : "committed");
	control_pending_finish(j->pending, rep.result < 0 ? rep.result : 0, j->reply);
	snap_job_free(j);
}

/* Phase 2 in a child: fork while the vCPUs are parked, so the child's
 * copy-on-write view of RAM is the paused machine's. */
static int snap_fork(struct snap_job *j)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return err_set(errno, "snapshot pipe");
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return err_set(errno, "forking the snapshot writer");
	}
	if (pid == 0) {
		close(fds[0]);
		_exit(snap_write_report(j, fds[1], j->vmm->vm->ram, NULL) == 0 ? 0 : 1);
	}
	close(fds[1]);
	j->child = pid;
	j->pipe_rd = fds[0];
	return evloop_add(j->vmm->loop, fds[0], EPOLLIN, snap_child_done, j);
}

static void *snap_writer_run(void *opaque)
{
	struct snap_job *j = opaque;
	snap_write_report(j, j->pipe_wr, NULL, ram_cow_source(j->cow));
	return NULL;
}

/* Before the pause: register RAM for the in-process writer; where the
 * kernel or our rights do not allow it, phase 2 forks (said once). */
static void snap_cow_open(struct snap_job *j)
{
	static bool said;
	struct vm *vm = j->vmm->vm;
	const char *w = getenv("CAIRN_SNAPSHOT_WRITER");
	int r;
	if (w && !strcmp(w, "fork"))
		r = err_set(ENOTSUP, "CAIRN_SNAPSHOT_WRITER=fork");
	else if (vm->ram_from_file) /* reading it could raise SIGBUS (a full tmpfs): not in here */
		r = err_set(ENOTSUP, "guest RAM is mapped from a memory image");
	else
		r = ram_cow_open(vm->ram, vm->ram_size, &j->cow);
	if (r < 0 && !said) {
		log_info("snapshots write memory from a forked child (%s)", err_msg());
		said = true;
	}
	err_clear();
}

/* Phase 2 in a thread, RAM having been protected at the pause: start the
 * writer. */
static int snap_thread(struct snap_job *j)
{
	int fds[2], r;
	if (pipe2(fds, O_CLOEXEC) < 0)
		return err_set(errno, "snapshot pipe");
	j->pipe_rd = fds[0];
	j->pipe_wr = fds[1];
	if ((r = evloop_add(j->vmm->loop, fds[0], EPOLLIN, snap_child_done, j)) < 0)
		return r;
	if (pthread_create(&j->writer, NULL, snap_writer_run, j) != 0) {
		evloop_del(j->vmm->loop, fds[0]);
		return err_set(EAGAIN, "no thread for the snapshot writer");
	}
	j->writer_started = true;
	return 0;
}

void vmm_control_finish(struct vmm *vmm)
{
	/* A writer thread must end before guest RAM goes; a forked writer
	 * finishes on its own. */
	struct snap_job *j = vmm->snap_job;
	if (!j || !j->writer_started)
		return;
	snap_writer_end(j);
	log_info("snapshot %s: written as the VM ended", j->dir);
}

static int cmd_snapshot(void *opaque, json_t *req, json_t *reply)
{
	struct vmm *vmm = opaque;
	const char *path = json_string_value(json_object_get(req, "path"));
	const char *then = json_string_value(json_object_get(req, "then"));
	if (!path || !*path)
		return err_set(EINVAL, "snapshot needs \"path\"");
	if (then && strcmp(then, "quit") && strcmp(then, "continue"))
		return err_set(EINVAL, "\"then\" is \"quit\" or \"continue\", not \"%s\"", then);
	if (vmm->snap_job)
		return err_set(EBUSY, "snapshot %s is still being written", vmm->snap_job->dir);
	bool quit = then && !strcmp(then, "quit");
	struct snap_job *j = calloc(1, sizeof(*j));
	if (!j)
		return err_set(ENOMEM, "snapshot");
	j->vmm = vmm;
	j->pipe_rd = j->pipe_wr = -1;
	j->t0 = now_us();
	if (snprintf(j->dir, sizeof(j->dir), "%s", path) >= (int)sizeof(j->dir)) {
		free(j);
		return err_set(ENAMETOOLONG, "%s", path);
	}
	snprintf(j->tmp, sizeof(j->tmp), "%s.tmp", j->dir);

	int r = snap_prepare(j);
	if (r < 0) {
		free(j);
		return r;
	}
	if (!quit)
		snap_cow_open(j);
	bool was_paused = vmm->paused;
	uint64_t paused_at = now_us();
	if (!was_paused)
		vm_pause(vmm->vm);
	r = snap_capture(j);
	/* With the writer thread, RAM as at this instant is all that needs the
	 * pause; otherwise the disks freeze now, before the forked writer or
	 * the write in this process can commit the snapshot. */
	if (r == 0 && j->cow) {
		int again = ram_cow_protect(j->cow);
		if (again < 0)
			snap_unprepare(j);
		r = again < 0 ? again : 0;
	} else if (r == 0) {
		r = snap_freeze_disks(j);
	}
	/* What meta.json records: the pause up to the write (the reply has it all). */
	j->st.pause_us = now_us() - paused_at;
	if (r == 0 && quit) {
		if ((r = snap_write(j, vmm->vm->ram, NULL, vmm->vm->ram_size)) < 0)
			snap_failed(j, err_msg(), true, NULL);
	} else if (r == 0 && !j->cow && (r = snap_fork(j)) < 0) {
		snap_failed(j, err_msg(), true, NULL);
	}
	j->st.pause_us = now_us() - paused_at;
	if (r == 0 && quit)
		vm_request_exit(vmm->vm, VM_EXIT_QUIT, 0, "quit after snapshot");
	else if (!was_paused)
		vm_resume(vmm->vm);
	/* Disk requests are served in this thread (virtio_blk.c), so none is
	 * until this returns: the vCPUs need not wait for the disks' freeze.
	 * If it fails, nothing was written since the capture and the disks
	 * stay as they were. */
	if (r == 0 && j->cow && (r = snap_freeze_disks(j)) == 0 && (r = snap_thread(j)) < 0)
		snap_failed(j, err_msg(), false, NULL);
	if (r < 0 || quit) {
		if (r == 0) {
			vmm->snapshots++;
			snap_reply_fields(j, reply);
		}
		snap_job_free(j);
		return r;
	}
	/* The child writes; the reply waits for it. */
	j->reply = json_incref(reply);
	json_object_set_new(reply, "pause_ms", json_real((double)j->st.pause_us / 1000.0));
	j->pending = control_defer(reply);
	vmm->snap_job = j;
	return CONTROL_DEFERRED;
}

/* Same machine shape, or the saved state cannot apply to this VM. */
static int revert_check_config(const struct vm_config *cur, const struct vm_config *snap,
			       const char *dir)
{
	if (cur->mem_size != snap->mem_size || cur->ncpus != snap->ncpus ||
	    cur->ndisks != snap->ndisks)
		return err_set(EINVAL, "%s: the snapshot's machine (%llu MiB, %d vCPUs, %d disks) "
				       "is not this VM's (%llu MiB, %d vCPUs, %d disks): start it "
				       "with cairn run --restore",
			       dir, (unsigned long long)(snap->mem_size >> 20), snap->ncpus,
			       snap->ndisks, (unsigned long long)(cur->mem_size >> 20), cur->ncpus,
			       cur->ndisks);
	for (int i = 0; i < cur->ndisks; i++)
		if (cur->disks[i].readonly != snap->disks[i].readonly)
			return err_set(EINVAL, "%s: disk %d is read-only in one and not the other",
				       dir, i);
	return 0;
}

/* Open every disk of CFG; on failure none stays open. */
static int revert_open_disks(const struct vm_config *cfg, struct block_dev **bds)
{
	for (int i = 0; i < cfg->ndisks; i++) {
		const struct disk_config *d = &cfg->disks[i];
		int r = block_open(d->path, d->format, d->readonly ? BLOCK_RDONLY : 0, &bds[i]);
		if (r < 0) {
			while (i--)
				block_close(bds[i]);
			return r;
		}
	}
	return 0;
}

/* Revert the running VM, in this process, to the snapshot in DIR: memory
 * is re-mapped from memory.img over the same host addresses (KVM follows
 * through its MMU notifier), disks move to new overlays on the snapshot's
 * frozen layers, then VM, device and vCPU state are loaded.  Everything
 * that can fail is checked before the VM is touched. */
static int cmd_revert(void *opaque, json_t *req, json_t *reply)
{
	struct vmm *vmm = opaque;
	struct vm *vm = vmm->vm;
	const char *dir = json_string_value(json_object_get(req, "path"));
	const char *disk_dir = json_string_value(json_object_get(req, "disk_dir"));
	json_t *v = json_object_get(req, "verify");
	bool verify = !v || json_is_true(v);
	if (!dir || !*dir)
		return err_set(EINVAL, "revert needs \"path\"");
	if (vmm->snap_job)
		return err_set(EBUSY, "snapshot %s is still being written", vmm->snap_job->dir);
	uint64_t t0 = now_us();
	struct state_reader *rd;
	struct vm_config cfg;
	int r = vm_snapshot_open(dir, &rd, &cfg);
	if (r < 0)
		return r;
	struct block_dev *bds[VM_MAX_DISKS] = {0};
	char mem[PATH_MAX];
	if ((r = revert_check_config(&vmm->cfg, &cfg, dir)) < 0 ||
	    (r = vm_snapshot_check_memory(dir, rd, cfg.mem_size, verify)) < 0 ||
	    (r = path_join(mem, sizeof(mem), dir, SNAP_MEMORY_FILE)) < 0 ||
	    (r = vmm_new_overlays(&cfg, disk_dir)) < 0 || (r = revert_open_disks(&cfg, bds)) < 0)
		goto out;
	int fd = open(mem, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = err_set(errno, "%s", mem);
		for (int i = 0; i < cfg.ndisks; i++)
			block_close(bds[i]);
		goto out;
	}
	uint64_t t1 = now_us();
	bool was_paused = vmm->paused;
	if (!was_paused)
		vm_pause(vm);
	/* From here on a failure leaves no VM to go back to: it ends the VM. */
	void *p = mmap(vm->ram, vm->ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
		       0);
	close(fd);
	vm->ram_from_file = true;
	if (p == MAP_FAILED) {
		r = err_set(errno, "%s: cannot map over guest memory", mem);
	} else {
		struct device *devs[VM_MAX_DISKS];
		unsigned n = vmm_disk_devices(vmm, devs, VM_MAX_DISKS);
		for (unsigned i = 0; i < n && (int)i < cfg.ndisks; i++) {
			struct block_dev *old = devs[i]->ops->get_block(devs[i]->priv);
			devs[i]->ops->set_block(devs[i]->priv, bds[i]);
			bds[i] = NULL;
			block_close(old);
		}
		r = vm_snapshot_restore(vm, rd);
	}
	if (r < 0) {
		vm_request_exit(vm, VM_EXIT_ERROR, 1, err_msg());
		goto out;
	}
	vm_config_free(&vmm->cfg);
	vmm->cfg = cfg;
	memset(&cfg, 0, sizeof(cfg));
	vmm->cfg.console_in = STDIN_FILENO;
	vmm->cfg.console_out = STDOUT_FILENO;
	uint64_t t2 = now_us();
	if (!was_paused)
		vm_resume(vm);
	json_object_set_new(reply, "path", json_string(dir));
	json_object_set_new(reply, "check_ms", json_real((double)(t1 - t0) / 1000.0));
	json_object_set_new(reply, "pause_ms", json_real((double)(t2 - t1) / 1000.0));
out:
	for (int i = 0; i < VM_MAX_DISKS; i++)
		if (bds[i])
			block_close(bds[i]);
	vm_config_free(&cfg);
	state_reader_close(rd);
	return r;
}

static int cmd_pause(void *opaque, json_t *req, json_t *reply)
{
	struct vmm *vmm = opaque;
	if (!vmm->paused) {
		vm_pause(vmm->vm);
		vmm->paused = true;
	}
	return 0;
}

static int cmd_resume(void *opaque, json_t *req, json_t *reply)
{
	struct vmm *vmm = opaque;
	if (vmm->paused) {
		vm_resume(vmm->vm);
		vmm->paused = false;
	}
	return 0;
}

static int cmd_quit(void *opaque, json_t *req, json_t *reply)
{
	struct vmm *vmm = opaque;
	vm_request_exit(vmm->vm, VM_EXIT_QUIT, 0, "quit by the control socket");
	return 0;
}

static int cmd_status(void *opaque, json_t *req, json_t *reply)
{
	struct vmm *vmm = opaque;
	struct vm *vm = vmm->vm;
	json_object_set_new(reply, "state", json_string(vmm->paused ? "paused" : "running"));
	json_object_set_new(reply, "cpus", json_integer(vm->ncpus));
	json_object_set_new(reply, "mem_bytes", json_integer((json_int_t)vm->ram_size));
	json_object_set_new(reply, "pvm", json_boolean(vm->pvm));
	json_object_set_new(reply, "snapshots", json_integer(vmm->snapshots));
	json_t *disks = json_array();
	for (int i = 0; i < vmm->cfg.ndisks; i++)
		json_array_append_new(disks, json_string(vmm->cfg.disks[i].path));
	json_object_set_new(reply, "disks", disks);
	/* Counters written by vCPU threads: a snapshot of them, not exact. */
	struct pvm_stats total = {0};
	for (int i = 0; i < vm->ncpus; i++)
		pvm_stats_add(&total, &vmm->pvm_stats[i]);
	json_t *pvm = json_object();
	for (unsigned i = 0; pvm_stats_name(i); i++)
		if (total.count[i])
			json_object_set_new(pvm, pvm_stats_name(i), json_integer((json_int_t)total.count[i]));
	json_object_set_new(reply, "pvm_completions", pvm);
	return 0;
}

static const struct control_cmd vmm_cmds[] = {
	{"status", cmd_status, "state of the VM: running/paused, vCPUs, memory, disks"},
	{"pause", cmd_pause, "stop every vCPU (in-flight disk requests complete first)"},
	{"resume", cmd_resume, "let a paused VM run again"},
	{"snapshot", cmd_snapshot,
	 "{\"path\":DIR[,\"then\":\"quit\"]}: whole-machine snapshot into DIR"},
	{"revert", cmd_revert,
	 "{\"path\":DIR[,\"disk_dir\":D][,\"verify\":false]}: load the snapshot in DIR into "
	 "this VM, in place"},
	{"quit", cmd_quit, "end the VM (cairn run exits 0)"},
};

int vmm_control_open(struct vmm *vmm)
{
	if (!vmm->opts.control)
		return 0;
	return control_open(vmm->loop, vmm->opts.control, vmm_cmds,
			    sizeof(vmm_cmds) / sizeof(vmm_cmds[0]), vmm, &vmm->ctl);
}
