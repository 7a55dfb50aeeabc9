#include "arch/x86/guest_clock.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <time.h>

/* kvmclock and host real time at one instant: KVM's own pair when the
 * host clock allows (KVM_CLOCK_REALTIME), else our reading just after. */
static int clock_now(struct vm *vm, struct kvm_clock_data *cd, int64_t *realtime)
{
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, cd) < 0)
		return err_set(errno, "KVM_GET_CLOCK");
	if (cd->flags & KVM_CLOCK_REALTIME) {
		*realtime = (int64_t)cd->realtime;
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		*realtime = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	}
	return 0;
}

int x86_clock_ref_reset(struct vm *vm)
{
	struct kvm_clock_data cd = {0};
	int64_t rt = 0;
	int r = clock_now(vm, &cd, &rt);
	if (r < 0)
		return r;
	vm->clock_ref_ns = rt - (int64_t)cd.clock;
	vm->clock_ref_known = true;
	return 0;
}

void x86_clock_ref_save(const struct vm *vm, struct kvm_clock_data *cd)
{
	if (vm->clock_ref_known) {
		cd->realtime = (uint64_t)((int64_t)cd->clock + vm->clock_ref_ns);
		cd->flags |= KVM_CLOCK_REALTIME;
	} else {
		cd->realtime = 0;
		cd->flags &= ~(uint32_t)KVM_CLOCK_REALTIME;
	}
}

void x86_clock_ref_restore(struct vm *vm, const struct kvm_clock_data *cd)
{
	vm->clock_ref_known = cd->flags & KVM_CLOCK_REALTIME;
	vm->clock_ref_ns = vm->clock_ref_known ? (int64_t)cd->realtime - (int64_t)cd->clock : 0;
}

int x86_clock_sync(struct vm *vm, int64_t *stepped_ns)
{
	*stepped_ns = 0;
	if (!vm->clock_ref_known)
		return err_set(ENOENT, "the snapshot this VM came from recorded no host time: "
				       "its clock cannot be stepped");
	struct kvm_clock_data cd = {0};
	int64_t rt = 0;
	int r = clock_now(vm, &cd, &rt);
	if (r < 0)
		return r;
	int64_t lag = rt - (int64_t)cd.clock - vm->clock_ref_ns;
	if (lag <= 0)
		return 0;
	struct kvm_clock_data set = {.clock = cd.clock + (uint64_t)lag};
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0)
		return err_set(errno, "KVM_SET_CLOCK");
	/* The guest was not running for LAG as far as its watchdogs know. */
	for (int i = 0; i < vm->ncpus; i++)
		ioctl(vm->vcpus[i]->fd, KVM_KVMCLOCK_CTRL, 0);
	*stepped_ns = lag;
	log_debug("clock-sync: kvmclock stepped forward %lld ns", (long long)lag);
	return 0;
}
