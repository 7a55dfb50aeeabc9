/* A KVM virtual machine: its file descriptors, guest RAM, interrupt
 * routing, I/O buses, vCPUs and devices.  A struct vm is passed around;
 * nothing here is global, so one process could hold two. */
#ifndef CAIRN_KVM_VM_H
#define CAIRN_KVM_VM_H

#include "kvm/iobus.h"

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define VM_MAX_VCPUS 64

struct vcpu;
struct device;
struct evloop;

struct vm_mem_slot {
	uint32_t slot;
	uint64_t gpa, size;
	uint8_t *hva;
};

enum vm_exit_reason {
	VM_EXIT_NONE = 0,
	VM_EXIT_RESET,    /* guest reset (i8042, triple fault): a clean end */
	VM_EXIT_DEBUG,    /* debug-exit port: exit status chosen by the guest */
	VM_EXIT_QUIT,     /* the host asked (signal, control socket) */
	VM_EXIT_ERROR,    /* the VMM or KVM failed; message in vm->exit_msg */
};

struct vm {
	int kvm_fd, vm_fd;
	int vcpu_mmap_size;
	bool pvm; /* /dev/kvm is PVM (see docs/pvm.md) */

	uint8_t *ram;      /* one host mapping of all guest RAM */
	uint64_t ram_size; /* bytes of guest RAM */
	bool ram_from_file; /* mapped from a memory image (restore, revert), not anonymous */
	struct vm_mem_slot slots[2];
	int nslots;
	/* Pages the VMM wrote since the last collect (kvm/dirty.h). */
	uint64_t *vmm_dirty;
	bool dirty_log; /* KVM logs the guest's writes (from the first snapshot on) */

	struct io_bus pio, mmio;
	struct evloop *loop; /* the I/O thread's loop (owned by the VMM) */

	/* Host real time minus kvmclock while the guest was in step with it
	 * (arch/x86/guest_clock.h); not known after restoring a snapshot that
	 * recorded none. */
	int64_t clock_ref_ns;
	bool clock_ref_known;

	struct vcpu *vcpus[VM_MAX_VCPUS];
	int ncpus;
	struct device *devices; /* in init order */

	pthread_mutex_t lock;
	enum vm_exit_reason exit_reason;
	int exit_code;
	char exit_msg[2600];

	/* The architecture code's per-VM data, opaque here (arch/x86: the
	 * MSRs a snapshot saves).  One malloc'd block, freed by vm_destroy. */
	void *arch_data;

	/* Pausing: vCPUs park while pause_requested is set. */
	pthread_cond_t cond;
	bool pause_requested;
	int parked;
	int running; /* vCPU threads started and not ended */

	/* Hook for instructions KVM's emulator refuses (PVM hosts); returns 0
	 * when the instruction was completed. */
	int (*emul_fallback)(struct vcpu *vcpu);
	/* Hook for KVM_EXIT_DEBUG (breakpoints the fallback arms on PVM). */
	int (*debug_exit)(struct vcpu *vcpu);
	/* After a vCPU's state was loaded from a snapshot (new process or
	 * revert): redo what lives outside the saved state (PVM: the
	 * system-call fix-up's breakpoint).  NULL: nothing to redo. */
	void (*state_loaded)(struct vcpu *vcpu);
};

/* Open /dev/kvm and create the VM (TSS and identity map set).  Errors say
 * what is wrong with /dev/kvm. */
int vm_create(struct vm **out);
/* The in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT.  Done after the
 * memory slots: each of these waits for a KVM SRCU grace period, and in
 * this order fewer of them do (start-up time, see bench/RESULTS.md). */
int vm_create_irqchip(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Allocate SIZE bytes of anonymous guest RAM, laid out below the PCI hole
 * and above 4 GiB (arch layout). */
int vm_mem_alloc(struct vm *vm, uint64_t size);
/* Register the KVM memory slots for vm->ram (also used after restore maps
 * RAM from a file). */
int vm_mem_register(struct vm *vm);
/* Host address of guest-physical [GPA, GPA+LEN), or NULL when any part is
 * outside guest RAM. */
void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len);

/* Interrupts. */
int vm_irq_line(struct vm *vm, uint32_t irq, int level);
/* Deliver an MSI now: synchronous, so once the thread that raised it is
 * between two steps, the interrupt is in the LAPIC state KVM reports (an
 * irqfd may inject it later, from a kernel worker, after a snapshot has
 * read the LAPICs: a restored guest then waits for it forever). */
int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);
int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, unsigned len, bool pio, bool assign);

/* Park every vCPU outside KVM_RUN with its pending I/O completed; returns
 * when all are parked (or the VM is ending).  From the I/O thread, which
 * also serves virtio: so no disk request is in flight once this returns. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* Called by a vCPU thread that saw a kick: parks while a pause is asked. */
void vm_vcpu_park(struct vm *vm);

/* End the VM: the first reason given wins; vCPUs are kicked out of
 * KVM_RUN and the I/O loop stops.  Safe from any thread. */
void vm_request_exit(struct vm *vm, enum vm_exit_reason reason, int code, const char *msg);

#endif
