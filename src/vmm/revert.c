#include "vmm/revert.h"
#include "devices/device.h"
#include "disk/block.h"
#include "kvm/vm.h"
#include "snapshot/mem_chain.h"
#include "snapshot/snapdir.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "util/log.h"
#include "util/monotime.h"
#include "vmm/config_json.h"
#include "vmm/snapshot_job.h"
#include "vmm/vm_snapshot.h"
#include "vmm/vmm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Same machine shape, or the saved state cannot apply to this VM. */
static int revert_check_config(const struct vm_config *cur, const struct vm_config *snap,
			       const char *dir)
{
	if (cur->mem_size != snap->mem_size || cur->ncpus != snap->ncpus ||
	    cur->ndisks != snap->ndisks)
		return err_set(EINVAL,
			       "%s: the snapshot's machine (%llu MiB, %d vCPUs, %d disks) "
			       "is not this VM's (%llu MiB, %d vCPUs, %d disks): start it "
			       "with cairn run --restore",
			       dir, (unsigned long long)(snap->mem_size >> 20), snap->ncpus,
			       snap->ndisks, (unsigned long long)(cur->mem_size >> 20), cur->ncpus,
			       cur->ndisks);
	for (int i = 0; i < cur->ndisks; i++)
		if (cur->disks[i].readonly != snap->disks[i].readonly)
			return err_set(EINVAL, "%s: disk %d is read-only in one and not the other",
				       dir, i);
	if (cur->nnics != snap->nnics)
		return err_set(EINVAL,
			       "%s: the snapshot's machine has %d NICs, this VM %d: start it with "
			       "cairn run --restore",
			       dir, snap->nnics, cur->nnics);
	for (int i = 0; i < cur->nnics; i++)
		if (memcmp(cur->nics[i].mac, snap->nics[i].mac, 6))
			return err_set(EINVAL, "%s: NIC %d has another MAC address in the snapshot",
				       dir, i);
		else if (cur->nics[i].legacy != snap->nics[i].legacy)
			return err_set(EINVAL,
				       "%s: NIC %d is another virtio-net model in the snapshot: start "
				       "it with cairn run --restore",
				       dir, i);
	if (cur->no_rng != snap->no_rng || cur->no_vmgenid != snap->no_vmgenid)
		return err_set(EINVAL,
			       "%s: the snapshot's machine %s virtio-rng and %s VM generation ID, "
			       "this VM differs: start it with cairn run --restore",
			       dir, snap->no_rng ? "has no" : "has a",
			       snap->no_vmgenid ? "no" : "a");
	return 0;
}

/* The NICs stay attached to what they are attached to now: the backends
 * are not part of the machine a revert brings back. */
static int revert_keep_backends(const struct vm_config *cur, struct vm_config *snap)
{
	for (int i = 0; i < cur->nnics; i++) {
		int r = vm_config_set_nic_backend(snap, i, cur->nics[i].backend);
		if (r < 0)
			return r;
	}
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

/* The VM paused: the snapshot's machine state into KVM and the devices.
 * What this changed is put back from a capture of the VM taken first, so
 * a record that fails to apply leaves the VM as it was (-errno, message
 * set).  Only if putting it back fails too is *LOST set. */
static int revert_apply_state(struct vmm *vmm, struct state_reader *rd, bool *lost)
{
	struct vm *vm = vmm->vm;
	struct vm_snapshot_capture *before;
	int r = vm_snapshot_capture(vm, &vmm->cfg, &before);
	if (r < 0)
		return r;
	if ((r = vm_snapshot_apply(vm, rd)) < 0) {
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", err_msg());
		if (vm_snapshot_apply_capture(vm, before) < 0) {
			*lost = true;
			err_set(-r, "%s; putting the VM back failed too: %s", msg, err_msg());
		} else {
			err_set(-r, "%s; the VM goes on as it was", msg);
		}
	}
	vm_snapshot_capture_free(before);
	return r;
}

/* The state applied: memory and disks from the snapshot, then what reads
 * guest memory.  A failure here leaves no VM to go back to. */
static int revert_apply_memory(struct vmm *vmm, const struct mem_chain *chain, const char *dir,
			       struct block_dev **bds, const struct vm_config *cfg)
{
	struct vm *vm = vmm->vm;
	void *p;
	vm->ram_from_file = true;
	uint64_t t0 = monotime_us();
	int r = mem_chain_map(chain, vm->ram, 0, &p); /* verified before the pause */
	if (r < 0)
		return err_prefix(r, "mapping the memory of %s over guest memory", dir);
	uint64_t t1 = monotime_us();
	vmm_memory_is_snapshot(vmm, dir, &mem_layer_info(mem_chain_layer(chain, 0))->id,
			       mem_chain_length(chain) - 1);
	log_debug("revert %s: memory of %u images mapped in %llu us, changed pages reset in %llu us",
		  dir, mem_chain_length(chain), (unsigned long long)(t1 - t0),
		  (unsigned long long)(monotime_us() - t1));
	struct device *devs[VM_MAX_DISKS];
	unsigned n = vmm_disk_devices(vmm, devs, VM_MAX_DISKS);
	for (unsigned i = 0; i < n && (int)i < cfg->ndisks; i++) {
		struct block_dev *old = devs[i]->ops->get_block(devs[i]->priv);
		devs[i]->ops->set_block(devs[i]->priv, bds[i]);
		bds[i] = NULL;
		block_close(old);
	}
	vm_snapshot_loaded(vm);
	return 0;
}

/* The overlays a restore made: the writable disks' new paths. */
static void revert_list_overlays(const struct vm_config *cfg, struct revert_result *res)
{
	res->noverlays = 0;
	for (int i = 0; i < cfg->ndisks; i++)
		if (!cfg->disks[i].readonly)
			snprintf(res->overlays[res->noverlays++], PATH_MAX, "%s",
				 cfg->disks[i].path);
}

int revert_run(struct vmm *vmm, const char *dir, const struct revert_opts *o,
	       struct revert_result *res)
{
	struct vm *vm = vmm->vm;
	if (snapshot_job_busy(vmm))
		return err_set(EBUSY, "snapshot %s is still being written", snapshot_job_busy(vmm));
	uint64_t t0 = monotime_us();
	struct state_reader *rd;
	struct vm_config cfg;
	int r = vm_snapshot_open(dir, &rd, &cfg);
	if (r < 0)
		return r;
	struct block_dev *bds[VM_MAX_DISKS] = {0};
	struct mem_chain *chain = NULL;
	bool overlays = false;
	if ((o->disk_layers &&
	     (r = vmm_override_disks(&cfg, o->disk_layers, o->ndisk_layers, dir)) < 0) ||
	    (r = revert_check_config(&vmm->cfg, &cfg, dir)) < 0 ||
	    (r = revert_keep_backends(&vmm->cfg, &cfg)) < 0 ||
	    (r = vmm_check_disk_sizes(&cfg, dir)) < 0 ||
	    (r = vm_snapshot_check_records(vm, rd)) < 0 ||
	    (r = vm_snapshot_open_memory(dir, rd, cfg.mem_size, o->verify, &chain)) < 0)
		goto out;
	overlays = (r = vmm_new_overlays(&cfg, o->disk_dir)) == 0;
	if (r < 0 || (r = revert_open_disks(&cfg, bds)) < 0)
		goto out;
	uint64_t t1 = monotime_us();
	bool was_paused = vmm->paused;
	if (!was_paused)
		vm_pause(vm);
	bool lost = false;
	if ((r = revert_apply_state(vmm, rd, &lost)) < 0 && !lost) {
		if (!was_paused)
			vm_resume(vm);
		goto out; /* the VM as it was, the new overlays dropped */
	}
	if (r < 0 || (r = revert_apply_memory(vmm, chain, dir, bds, &cfg)) < 0) {
		vm_request_exit(vm, VM_EXIT_ERROR, 1, err_msg());
		overlays = false; /* the VM ends on them: they may hold its last writes */
		goto out;
	}
	revert_list_overlays(&cfg, res);
	overlays = false; /* the VM's now */
	vm_config_free(&vmm->cfg);
	vmm->cfg = cfg;
	memset(&cfg, 0, sizeof(cfg));
	vmm->cfg.console_in = STDIN_FILENO;
	vmm->cfg.console_out = STDOUT_FILENO;
	uint64_t t2 = monotime_us();
	if (!was_paused)
		vm_resume(vm);
	res->check_us = t1 - t0;
	res->pause_us = t2 - t1;
out:
	mem_chain_close(chain);
	for (int i = 0; i < VM_MAX_DISKS; i++)
		if (bds[i])
			block_close(bds[i]);
	if (overlays) /* failed before the VM was touched: nothing is left */
		vmm_drop_overlays(&cfg);
	vm_config_free(&cfg);
	state_reader_close(rd);
	return r;
}
