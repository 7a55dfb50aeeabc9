/* The machine part of a snapshot: state.bin (configuration, VM, vCPUs,
 * devices) and memory.img, written from a paused VM and applied to a new
 * one.  Which disk layers a snapshot names is decided by the caller (it
 * passes the configuration to record). */
#ifndef CAIRN_VMM_VM_SNAPSHOT_H
#define CAIRN_VMM_VM_SNAPSHOT_H

#include "snapshot/mem_image.h"
#include "vmm/config.h"

#include <stdint.h>

struct vm;
struct state_reader;
struct mem_chain;

struct vm_snapshot_stats {
	uint64_t state_bytes;
	uint64_t memory_bytes; /* non-zero RAM written */
	uint64_t pause_us;     /* filled by the caller */
	struct mem_id memory_id;
	uint32_t memory_depth; /* 0: a full memory image; n: a layer n above one */
};

/* A snapshot in two steps, so the slow one can run while the VM does:
 * capture the state of the paused VM into memory (fast), then write the
 * state and memory files of DIR (snapshot/snapdir.h), recording CFG as its
 * hardware configuration, with a copy of RAM that no longer changes (a
 * forked child's view, or a copy-on-write view). */
struct vm_snapshot_capture;
int vm_snapshot_capture(struct vm *vm, const struct vm_config *cfg,
			struct vm_snapshot_capture **out);
/* RAM is read from SRC when it is not NULL (RAM that changes meanwhile,
 * seen through a copy-on-write view), else from RAM.  LAYER not NULL: the
 * memory image holds only the pages changed since its parent. */
int vm_snapshot_write(const struct vm_snapshot_capture *c, const void *ram,
		      const struct mem_image_source *src, uint64_t ram_size,
		      const struct mem_image_layer_spec *layer, const char *dir,
		      struct vm_snapshot_stats *stats);
void vm_snapshot_capture_free(struct vm_snapshot_capture *c);

/* Open and verify DIR's state file (every checksum, version and tag) before
 * anything is applied; read the configuration out of it. */
int vm_snapshot_open(const char *dir, struct state_reader **r, struct vm_config *cfg);
/* Open the chain of DIR's memory image (mem_chain.h) and check it belongs
 * to this state file (size, and the image's id); with VERIFY, read it all
 * and check every chunk of every image (a mapped restore asks
 * mem_chain_map to check instead: the layers as they are read, the full
 * image beside them). */
int vm_snapshot_open_memory(const char *dir, struct state_reader *r, uint64_t mem_size,
			    int verify, struct mem_chain **out);
/* The same, closing the chain again. */
int vm_snapshot_check_memory(const char *dir, struct state_reader *r, uint64_t mem_size,
			     int verify);
/* Apply VM-wide and device state to a VM built from the same
 * configuration (memory in place, devices created, vCPUs created but not
 * started); then the vCPUs; then the per-vCPU hooks that read guest
 * memory (vm_snapshot_loaded). */
int vm_snapshot_restore(struct vm *vm, struct state_reader *r);

/* The same in steps, for a revert of a running VM that must be able to go
 * back: check that every record the VM needs is there and parses (VM and
 * vCPU records in full, each device's present), without touching the VM;
 * apply the records (devices and KVM state, memory not needed yet); or
 * apply a capture of the VM taken before (to put it back as it was); then,
 * with the new memory in place, the hooks. */
int vm_snapshot_check_records(struct vm *vm, struct state_reader *r);
int vm_snapshot_apply(struct vm *vm, struct state_reader *r);
int vm_snapshot_apply_capture(struct vm *vm, const struct vm_snapshot_capture *c);
/* The device part of vm_snapshot_apply on its own: no KVM call of ours
 * (tests, and the fuzz harness on a VM without KVM). */
int vm_snapshot_apply_devices(struct vm *vm, struct state_reader *r);
/* State and memory are in place: the vCPU hooks (vm->state_loaded), then
 * each device's `restored` hook (vmgenid's new ID).  Every restore path
 * ends here: vm_snapshot_restore (a new process, so every clone resume)
 * and revert. */
void vm_snapshot_loaded(struct vm *vm);

#endif
