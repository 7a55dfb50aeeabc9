/* The fuzz harnesses' fake VM (fuzz_vm.h). */
#include "fuzz_vm.h"

#include "kvm/iobus.h"
#include "util/evloop.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
	fprintf(stderr, "fuzz_vm set-up: %s\n", what);
	abort();
}

struct vm *fuzz_vm_new(struct evloop *loop)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		die("calloc");
	vm->kvm_fd = vm->vm_fd = -1;
	iobus_init(&vm->pio, "pio");
	iobus_init(&vm->mmio, "mmio");
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	if (loop)
		vm->loop = loop;
	else if (evloop_create(&vm->loop) < 0)
		die("evloop");
	return vm;
}

void fuzz_vm_add_slot(struct vm *vm, uint64_t gpa, uint8_t *hva, size_t size)
{
	int n = vm->nslots;
	vm->slots[n] = (struct vm_mem_slot){(uint32_t)n, gpa, size, hva};
	vm->nslots = n + 1;
	if (n == 0)
		vm->ram = hva;
	vm->ram_size += size;
}

struct vm *fuzz_vm_two_slots(size_t size0, struct fuzz_mem *m)
{
	struct vm *vm = fuzz_vm_new(NULL);
	m->size0 = size0;
	m->slot0 = malloc(size0);
	m->slot1 = malloc(FUZZ_SLOT1_SIZE);
	if (!m->slot0 || !m->slot1)
		die("guest memory");
	fuzz_vm_add_slot(vm, FUZZ_SLOT0_GPA, m->slot0, size0);
	fuzz_vm_add_slot(vm, FUZZ_SLOT1_GPA, m->slot1, FUZZ_SLOT1_SIZE);
	return vm;
}

int fuzz_mem_load(const struct fuzz_mem *m, void *hdr, size_t hlen, const uint8_t *data,
		  size_t size)
{
	if (size < hlen)
		return -1;
	memcpy(hdr, data, hlen);
	data += hlen;
	size -= hlen;
	size_t n0 = size < m->size0 ? size : m->size0;
	memset(m->slot0, 0, m->size0);
	memset(m->slot1, 0, FUZZ_SLOT1_SIZE);
	memcpy(m->slot0, data, n0);
	size_t n1 = size - n0 < FUZZ_SLOT1_SIZE ? size - n0 : FUZZ_SLOT1_SIZE;
	memcpy(m->slot1, data + n0, n1);
	return 0;
}

uint64_t fuzz_gpa_of(uint32_t v)
{
	return v & 0x80000000u ? FUZZ_SLOT1_GPA + (v & 0x7fffffffu) : FUZZ_SLOT0_GPA + v;
}

void fuzz_bar_write(struct vm *vm, struct virtio_pci *vp, uint64_t off, uint32_t v, unsigned len)
{
	if (!iobus_dispatch(&vm->mmio, vp->pci.bars[0].addr + off, &v, len, true))
		die("BAR0 not mapped");
}

void fuzz_bar_write64(struct vm *vm, struct virtio_pci *vp, uint64_t off, uint64_t v)
{
	fuzz_bar_write(vm, vp, off, (uint32_t)v, 4);
	fuzz_bar_write(vm, vp, off + 4, (uint32_t)(v >> 32), 4);
}

void fuzz_seeds_if_asked(void (*write_seeds)(const char *dir))
{
	const char *seeds = getenv("CAIRN_FUZZ_SEEDS");
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
}
