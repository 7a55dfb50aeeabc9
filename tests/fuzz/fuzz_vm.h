/* The fake struct vm the virtio and records harnesses share: no KVM
 * (kvm_fd and vm_fd -1: interrupts and ioeventfds fail quietly), RAM slots
 * that are the harness's own heap blocks, so AddressSanitizer catches any
 * access outside guest memory. */
#ifndef FUZZ_VM_H
#define FUZZ_VM_H

#include "devices/virtio_pci.h"
#include "kvm/vm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Two-slot guest memory: slot 0 at GPA 0, slot 1 above 4 GiB. */
#define FUZZ_SLOT0_GPA 0x0ULL
#define FUZZ_SLOT1_GPA 0x100000000ULL
#define FUZZ_SLOT1_SIZE 0x1000u

struct fuzz_mem {
	uint8_t *slot0, *slot1;
	size_t size0;
};

/* A VM without slots; loop NULL: one of its own (never run unless the
 * harness runs it). Aborts on failure. */
struct vm *fuzz_vm_new(struct evloop *loop);
/* Appends a RAM slot backed by hva; the first one is vm->ram. */
void fuzz_vm_add_slot(struct vm *vm, uint64_t gpa, uint8_t *hva, size_t size);
/* A VM with its own loop and two slots on fresh heap blocks (size0 bytes
 * at FUZZ_SLOT0_GPA, FUZZ_SLOT1_SIZE at FUZZ_SLOT1_GPA), described in *m. */
struct vm *fuzz_vm_two_slots(size_t size0, struct fuzz_mem *m);
/* An input: its first hlen bytes into hdr, then slot 0's bytes and slot
 * 1's (the rest of both slots zero).  -1: shorter than the header. */
int fuzz_mem_load(const struct fuzz_mem *m, void *hdr, size_t hlen, const uint8_t *data,
		  size_t size);
/* An input's address: bit 31 set, slot 1 + the rest, else slot 0 + it. */
uint64_t fuzz_gpa_of(uint32_t v);

/* The transport of vm's last device called name (the device's private
 * data starts with it), NULL if none. */
struct virtio_pci *fuzz_vp_named(struct vm *vm, const char *name);

/* A driver's write to the device's BAR0 (aborts if nothing is mapped). */
void fuzz_bar_write(struct vm *vm, struct virtio_pci *vp, uint64_t off, uint32_t v, unsigned len);
void fuzz_bar_write64(struct vm *vm, struct virtio_pci *vp, uint64_t off, uint64_t v);

/* A driver's set-up of queue q: its size, its rings at the inputs'
 * addresses (fuzz_gpa_of), enabled. */
void fuzz_queue_setup(struct vm *vm, struct virtio_pci *vp, uint16_t q, uint16_t size,
		      uint32_t desc, uint32_t avail, uint32_t used);
/* More requests on a queue: n added to the avail index at the input's
 * address avail (+ 2).  False: n is 0 or the index is outside RAM. */
bool fuzz_bump_avail(struct vm *vm, uint32_t avail, uint8_t n);

/* The split-ring descriptor as the seeds write it. */
struct fuzz_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* CAIRN_FUZZ_SEEDS=DIR: write_seeds(DIR), then exit. */
void fuzz_seeds_if_asked(void (*write_seeds)(const char *dir));
/* A seed file DIR/NAME: the header's hlen bytes, then slot 0's size0. */
void fuzz_write_seed(const char *dir, const char *name, const void *hdr, size_t hlen,
		     const uint8_t *slot0, size_t size0);

/* The entry points of a harness on a fake VM: LLVMFuzzerInitialize writes
 * its seeds when asked; LLVMFuzzerTestOneInput sets up once (setup_ when
 * vm_ is NULL), loads an input (a struct fuzz_hdr, then guest memory, into
 * mem_) and runs it (run_(&h)). */
#define FUZZ_SEEDS_INITIALIZE(write_seeds_)                                                        \
	int LLVMFuzzerInitialize(int *argc, char ***argv);                                         \
	int LLVMFuzzerInitialize(int *argc, char ***argv)                                          \
	{                                                                                          \
		(void)argc, (void)argv;                                                            \
		fuzz_seeds_if_asked(write_seeds_);                                                 \
		return 0;                                                                          \
	}
#define FUZZ_VM_TEST_ONE_INPUT(vm_, mem_, setup_, run_)                                            \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                              \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                               \
	{                                                                                          \
		if (!(vm_))                                                                        \
			setup_();                                                                  \
		struct fuzz_hdr h;                                                                 \
		if (fuzz_mem_load(&(mem_), &h, sizeof(h), data, size) < 0)                         \
			return 0;                                                                  \
		run_(&h);                                                                          \
		return 0;                                                                          \
	}

#endif
