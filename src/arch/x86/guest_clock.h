/* The guest's clock against host real time.
 *
 * A restore keeps kvmclock continuous (it goes on from the snapshot's
 * value: the guest sees no time pass while it was saved), so after a
 * restore the guest's clocks lag host real time by the time it spent in
 * the snapshot.  cairn keeps the reference that says what "in step"
 * means: host real time minus kvmclock while the guest was in step (set
 * at boot, carried in every snapshot as its clock's `realtime`), and
 * x86_clock_sync steps kvmclock forward by the lag (docs/snapshots.md,
 * "The guest's clocks"). */
#ifndef CAIRN_ARCH_X86_GUEST_CLOCK_H
#define CAIRN_ARCH_X86_GUEST_CLOCK_H

#include <linux/kvm.h>
#include <stdint.h>

struct vm;

/* A booting VM: its kvmclock is in step with host real time now. */
int x86_clock_ref_reset(struct vm *vm);
/* Saving: CD (from KVM_GET_CLOCK) gets the reference as its realtime
 * (flags KVM_CLOCK_REALTIME), or no realtime when the VM has none. */
void x86_clock_ref_save(const struct vm *vm, struct kvm_clock_data *cd);
/* Restoring CD: its realtime (if any) is the VM's reference from now on. */
void x86_clock_ref_restore(struct vm *vm, const struct kvm_clock_data *cd);
/* With the vCPUs paused: kvmclock stepped forward by its lag behind host
 * real time (*STEPPED_NS; 0 when in step or ahead: never backwards).
 * -ENOENT: no reference (a snapshot from before cairn recorded one). */
int x86_clock_sync(struct vm *vm, int64_t *stepped_ns);

#endif
