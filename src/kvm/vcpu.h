/* vCPUs: one thread each, running KVM_RUN and dispatching exits to the
 * VM's I/O buses. */
#ifndef CAIRN_KVM_VCPU_H
#define CAIRN_KVM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	uint64_t exits_io, exits_mmio, exits_fallback;
	/* Per-vCPU data of the VM's exit hooks, set and owned by whoever
	 * installs them (vmm.c: the PVM fallback's statistics). */
	void *hook_data;
};

int vcpu_create(struct vm *vm, int id, struct vcpu **out);
void vcpu_destroy(struct vcpu *vcpu);
/* Start the vCPU thread. */
int vcpu_start(struct vcpu *vcpu);
/* Make the vCPU leave KVM_RUN soon (any thread). */
void vcpu_kick(struct vcpu *vcpu);
void vcpu_join(struct vcpu *vcpu);
/* Print registers to a buffer, for error reports. */
void vcpu_dump_regs(struct vcpu *vcpu, char *buf, size_t len);

/* Install the no-op signal handler used for kicks (once per process). */
void vcpu_signals_init(void);

#endif
