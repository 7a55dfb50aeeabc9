/* What the builder (vmm.c) shares with the VMM's operations on a running
 * machine (snapshot_job.c, revert.c, disk_freeze.c) and its control
 * commands (vmm_control.c). */
#ifndef CAIRN_VMM_VMM_INTERNAL_H
#define CAIRN_VMM_VMM_INTERNAL_H

#include "arch/x86/boot.h"
#include "arch/x86/pvm.h"
#include "kvm/vm.h"
#include "snapshot/mem_image.h"
#include "vmm/config.h"
#include "vmm/vmm.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct evloop;
struct control_server;
struct snap_job;
struct device;
struct page_hash;

struct vmm {
	struct vm *vm;
	struct evloop *loop;
	int sigfd;
	struct kernel_image kernel;
	struct vm_config cfg; /* current: disk paths name the active layers */
	struct vmm_opts opts;
	struct control_server *ctl;
	bool paused;
	unsigned snapshots;
	struct snap_job *snap_job; /* a snapshot being written, or NULL */
	/* The snapshot the machine's memory descends from: its next snapshot
	 * stores only the pages changed since (snapshot_job.c).  Not valid
	 * after a boot: the first snapshot is full. */
	struct {
		bool valid;
		char dir[PATH_MAX];
		struct mem_id id;
		uint32_t depth;
	} mem_parent;
	/* Pages changed since mem_parent that KVM's log no longer has (a
	 * failed snapshot gives back what it collected); NULL: none. */
	uint64_t *mem_changed;
	/* XXH3-128 of each page of the memory that snapshot mem_hash_id stands
	 * for (true while mem_hash_ok), which a layer on it uses to leave out
	 * pages the dirty log names but that hold the same bytes; and the
	 * table the snapshot being written fills (page_hash.h).  NULL until
	 * the first snapshot. */
	struct page_hash *mem_hash, *mem_hash_next;
	struct mem_id mem_hash_id;
	bool mem_hash_ok;
	/* Per vCPU (each one's hook_data): PVM fallback completions. */
	struct pvm_stats pvm_stats[VM_MAX_VCPUS];
};

/* ---- vmm_control.c ---- */
/* Open the control socket (opts.control) with the VM's commands. */
int vmm_control_open(struct vmm *vmm);

/* ---- snapshot_job.c ---- */
/* The VM's memory is now snapshot DIR's (restore, revert): its next
 * snapshot is a layer on DIR; what changed before is forgotten.  With the
 * vCPUs not running. */
void vmm_memory_is_snapshot(struct vmm *vmm, const char *dir, const struct mem_id *id,
			    uint32_t depth);

/* ---- vmm_disks.c ---- */
/* The devices with disks, in device-list order (= configuration order). */
unsigned vmm_disk_devices(struct vmm *vmm, struct device **out, unsigned max);

/* A restore never writes to a snapshot's layers: give each writable disk
 * of CFG a new, empty overlay on its frozen layer (in DISK_DIR, or beside
 * the layer; named by snapshot/snapdir.h), and point CFG at it. */
int vmm_new_overlays(struct vm_config *cfg, const char *disk_dir);
/* The snapshot's frozen layers are at PATHS now (N of them, one per disk
 * of CFG), not where CFG, read from the snapshot DIR, says. */
int vmm_override_disks(struct vm_config *cfg, const char *const *paths, int n, const char *dir);
/* Each disk of CFG (read from the snapshot DIR) has the size the snapshot
 * recorded. */
int vmm_check_disk_sizes(const struct vm_config *cfg, const char *dir);
/* A restore that failed after vmm_new_overlays: remove the overlays CFG
 * names. */
void vmm_drop_overlays(const struct vm_config *cfg);

#endif
