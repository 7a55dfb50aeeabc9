/* The running VM's control commands (docs/control.md): a table that turns
 * requests into calls of the VMM's operations and their results into
 * replies.  The operations live in their own modules: snapshot_job.c and
 * revert.c. */
#include "arch/x86/guest_clock.h"
#include "arch/x86/pvm.h"
#include "control/control.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "vmm/revert.h"
#include "vmm/snapshot_job.h"
#include "vmm/vmm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *path_array(const char (*paths)[PATH_MAX], unsigned n)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < n; i++)
		json_array_append_new(a, json_string(paths[i]));
	return a;
}

/* A snapshot request whose reply waits for the snapshot's writer. */
struct snapshot_call {
	json_t *reply;
	struct control_pending *pending;
	bool finished; /* done came before the command returned */
};

static void snapshot_reply(json_t *reply, const struct snapshot_result *res)
{
	json_object_set_new(reply, "path", json_string(res->path));
	json_object_set_new(reply, "pause_ms", json_real((double)res->pause_us / 1000.0));
	json_object_set_new(reply, "memory_bytes", json_integer((json_int_t)res->memory_bytes));
	/* "layer" (pages changed since the memory parent, DEPTH images above
	 * a full one) or "full" (and why) */
	json_object_set_new(reply, "memory", json_string(res->memory_depth ? "layer" : "full"));
	json_object_set_new(reply, "memory_depth", json_integer(res->memory_depth));
	if (!res->memory_depth && res->memory_why)
		json_object_set_new(reply, "memory_full_why", json_string(res->memory_why));
	if (res->memory_depth)
		json_object_set_new(reply, "memory_unchanged_pages",
				    json_integer((json_int_t)res->memory_unchanged_pages));
	json_object_set_new(reply, "total_ms", json_real((double)res->total_us / 1000.0));
	json_object_set_new(reply, "overlays", path_array(res->overlays, res->noverlays));
	/* How the writer saw RAM; with the userfaultfd view, how many chunks
	 * the guest wrote before the writer reached them (each copied first). */
	if (res->writer)
		json_object_set_new(reply, "writer", json_string(res->writer));
	if (res->writer && !strcmp(res->writer, "thread"))
		json_object_set_new(reply, "cow_copies", json_integer((json_int_t)res->cow_copies));
}

static void snapshot_done(void *opaque, int result, const char *msg,
			  const struct snapshot_result *res)
{
	struct snapshot_call *c = opaque;
	if (result < 0)
		json_object_set_new(c->reply, "error", json_string(msg ? msg : "snapshot failed"));
	else
		snapshot_reply(c->reply, res);
	if (!c->pending) {
		c->finished = true;
		return;
	}
	control_pending_finish(c->pending, result, c->reply);
	json_decref(c->reply);
	free(c);
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
	const char *memory = json_string_value(json_object_get(req, "memory"));
	if (json_object_get(req, "memory") && (!memory || (strcmp(memory, "full") &&
							   strcmp(memory, "changed"))))
		return err_set(EINVAL, "\"memory\" is \"full\" or \"changed\"");
	bool full = memory && !strcmp(memory, "full");
	struct snapshot_call *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(ENOMEM, "snapshot");
	c->reply = json_incref(reply);
	/* Done is called at once only for a snapshot written in the pause
	 * ("then":"quit"), and only with success: a failure there is returned. */
	json_t *mp = json_object_get(req, "memory_parent");
	const struct snapshot_opts o = {.quit = then && !strcmp(then, "quit"),
					.full_memory = full,
					.keep_memory_parent = mp && json_is_false(mp)};
	int r = snapshot_job_start(vmm, path, &o, snapshot_done, c);
	if (r < 0 || c->finished) {
		json_decref(c->reply);
		free(c);
		return r;
	}
	c->pending = control_defer(reply);
	return CONTROL_DEFERRED;
}

static int cmd_revert(void *opaque, json_t *req, json_t *reply)
{
	struct vmm *vmm = opaque;
	const char *dir = json_string_value(json_object_get(req, "path"));
	json_t *v = json_object_get(req, "verify"), *disks = json_object_get(req, "disks");
	struct revert_opts o = {.disk_dir = json_string_value(json_object_get(req, "disk_dir")),
				.verify = !v || json_is_true(v)};
	if (!dir || !*dir)
		return err_set(EINVAL, "revert needs \"path\"");
	const char *layers[VM_MAX_DISKS];
	if (disks) {
		if (!json_is_array(disks) || json_array_size(disks) > VM_MAX_DISKS)
			return err_set(EINVAL, "\"disks\" is an array of at most %d paths",
				       VM_MAX_DISKS);
		for (size_t i = 0; i < json_array_size(disks); i++)
			if (!(layers[i] = json_string_value(json_array_get(disks, i))))
				return err_set(EINVAL, "\"disks\" holds a non-string");
		o.disk_layers = layers;
		o.ndisk_layers = (int)json_array_size(disks);
	}
	struct revert_result *res = calloc(1, sizeof(*res));
	if (!res)
		return err_set(ENOMEM, "revert");
	int r = revert_run(vmm, dir, &o, res);
	if (r == 0) {
		json_object_set_new(reply, "path", json_string(dir));
		json_object_set_new(reply, "check_ms", json_real((double)res->check_us / 1000.0));
		json_object_set_new(reply, "pause_ms", json_real((double)res->pause_us / 1000.0));
		json_object_set_new(reply, "overlays", path_array(res->overlays, res->noverlays));
	}
	free(res);
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
			json_object_set_new(pvm, pvm_stats_name(i),
					    json_integer((json_int_t)total.count[i]));
	json_object_set_new(reply, "pvm_completions", pvm);
	return 0;
}

/* Step the guest's kvmclock to host real time (arch/x86/guest_clock.h),
 * with the vCPUs paused for the two ioctls. */
static int cmd_clock_sync(void *opaque, json_t *req, json_t *reply)
{
	(void)req;
	struct vmm *vmm = opaque;
	int64_t stepped = 0;
	if (!vmm->paused)
		vm_pause(vmm->vm);
	int r = x86_clock_sync(vmm->vm, &stepped);
	if (!vmm->paused)
		vm_resume(vmm->vm);
	if (r < 0)
		return r;
	json_object_set_new(reply, "stepped_ms", json_real((double)stepped / 1e6));
	return 0;
}

static const struct control_cmd vmm_cmds[] = {
    {"status", cmd_status, "state of the VM: running/paused, vCPUs, memory, disks"},
    {"pause", cmd_pause, "stop every vCPU (in-flight disk requests complete first)"},
    {"resume", cmd_resume, "let a paused VM run again"},
    {"snapshot", cmd_snapshot,
     "{\"path\":DIR[,\"then\":\"quit\"]}: whole-machine snapshot into DIR"},
    {"revert", cmd_revert,
     "{\"path\":DIR[,\"disk_dir\":D][,\"disks\":[LAYER...]][,\"verify\":false]}: load "
     "the snapshot in DIR into this VM, in place"},
    {"clock-sync", cmd_clock_sync,
     "step the guest's kvmclock forward to host real time (the time it spent in snapshots)"},
    {"quit", cmd_quit, "end the VM (cairn run exits 0)"},
};

int vmm_control_open(struct vmm *vmm)
{
	if (!vmm->opts.control)
		return 0;
	return control_open(vmm->loop, vmm->opts.control, vmm_cmds,
			    sizeof(vmm_cmds) / sizeof(vmm_cmds[0]), vmm, &vmm->ctl);
}
