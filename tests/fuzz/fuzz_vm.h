/* The fake struct vm the virtio and records harnesses share: no KVM
 * (kvm_fd and vm_fd -1: interrupts and ioeventfds fail quietly), RAM slots
 * that are the harness's own heap blocks, so AddressSanitizer catches any
 * access outside guest memory. */
#ifndef FUZZ_VM_H
#define FUZZ_VM_H

#include "devices/virtio_pci.h"
#include "kvm/vm.h"

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

/* A driver's write to the device's BAR0 (aborts if nothing is mapped). */
void fuzz_bar_write(struct vm *vm, struct virtio_pci *vp, uint64_t off, uint32_t v, unsigned len);
void fuzz_bar_write64(struct vm *vm, struct virtio_pci *vp, uint64_t off, uint64_t v);

/* CAIRN_FUZZ_SEEDS=DIR: write_seeds(DIR), then exit. */
void fuzz_seeds_if_asked(void (*write_seeds)(const char *dir));

#endif
