/* Which pages of guest RAM changed: KVM's dirty log of each memory slot
 * for the guest's writes, and a map the VMM marks for its own writes into
 * guest RAM (virtio buffers and rings, emulated instructions), which KVM
 * does not see.  Pages are counted from the start of vm->ram (the offsets
 * of a memory image), one bit per 4 KiB page. */
#ifndef CAIRN_KVM_DIRTY_H
#define CAIRN_KVM_DIRTY_H

#include <stdint.h>

struct vm;

/* From now on KVM logs the guest's writes.  Not from the start: logging
 * takes huge pages away from the guest (every first write to a 4 KiB page
 * faults), which a VM that is never snapshotted need not pay; the first
 * snapshot of a VM is a full image anyway. */
int vm_dirty_start(struct vm *vm);
/* u64 words of a page map of VM's RAM. */
uint64_t vm_dirty_words(const struct vm *vm);
/* OR into MAP the pages changed since the last collect (or since the
 * memory slots were made) and start over.  Any thread; KVM's part of it
 * is exact only with the vCPUs paused (otherwise the pages written
 * meanwhile are in the next collect); before vm_dirty_start, only the
 * VMM's own writes are known. */
int vm_dirty_collect(struct vm *vm, uint64_t *map);
/* The VMM wrote (or may write) host range [HVA, HVA+LEN) of guest RAM;
 * outside RAM is ignored.  Any thread. */
void vm_dirty_mark(struct vm *vm, const void *hva, uint64_t len);

#endif
