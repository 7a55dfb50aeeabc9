/* The records of state.bin as cairn writes them: their tags, and each
 * kind's payload read into its state or made from it.  The container is
 * snapshot/state_file.h (docs/state-format.md); the order a restore
 * applies the records in is vm_snapshot.c's (docs/snapshots.md).
 *
 * Nothing here calls KVM: parsing and checking a record needs no VM, so a
 * restore can refuse a bad file before it touches one, and the fuzz
 * harness (tests/fuzz/fuzz_records.c) drives these on a VM without KVM. */
#ifndef CAIRN_VMM_VM_RECORDS_H
#define CAIRN_VMM_VM_RECORDS_H

#include "snapshot/state_file.h"
#include "vmm/config.h"

#include <stddef.h>
#include <stdint.h>

struct device;
struct state_buf;
struct x86_vcpu_state;
struct x86_vm_state;

enum vm_record_tag {
	VM_RECORD_CONFIG = 1, /* hardware configuration, JSON text (version 2: with "nics") */
	VM_RECORD_VM = 2,     /* irqchips, PIT, kvmclock */
	VM_RECORD_VCPU = 3,   /* one per vCPU, instance = vCPU id */
	VM_RECORD_DEVICE = 4, /* one per device, instance = place in the device list */
	VM_RECORD_MEMORY = 5, /* which memory image goes with this state */
};

/* Every tag with the newest version this cairn reads (for state_reader_open). */
extern const struct state_tag vm_record_tags[];
extern const size_t vm_record_ntags;

/* The memory record: which memory image goes with the state
 * (snapshot/mem_image.h).  Version 1 named a full image by its digest;
 * version 2 names it by its id, which stays when a deleted parent's pages
 * move into the image (its digest then changes). */
struct vm_memory_record {
	uint16_t version;
	uint64_t size, data_bytes;
	uint64_t digest;  /* version 1 */
	uint8_t id[16];	  /* version 2 */
};
/* The memory record's payload as written (version 2). */
int vm_record_memory_payload(const struct vm_memory_record *mr, void *out, size_t len);
#define VM_MEMORY_RECORD_LEN 32

/* R's configuration record into CFG (free with vm_config_free). */
int vm_record_config(struct state_reader *r, struct vm_config *cfg);
/* R's memory record into MR. */
int vm_record_memory(struct state_reader *r, struct vm_memory_record *mr);
/* A payload of the VM record, or of vCPU I's, parsed and checked into a
 * state that x86_vm_restore / x86_vcpu_restore can hand to KVM. */
int vm_record_vm(const void *data, size_t len, struct x86_vm_state *vs);
int vm_record_vcpu(const void *data, size_t len, int i, struct x86_vcpu_state *st);
/* Device D's record in both directions (SB saving or restoring): its name,
 * then the device's own fields (device_ops.snapshot).  A restore refuses a
 * record of another kind of device; a refused record leaves the device as
 * it was. */
int vm_record_device(struct device *d, struct state_buf *sb);

#endif
