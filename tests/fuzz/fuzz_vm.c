/* The fuzz harnesses' fake VM (fuzz_vm.h). */
#include "fuzz_vm.h"

#include "devices/device.h"
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

struct virtio_pci *fuzz_vp_named(struct vm *vm, const char *name)
{
	struct virtio_pci *vp = NULL;
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->ops->name, name))
			vp = d->priv;
	return vp;
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

void fuzz_queue_setup(struct vm *vm, struct virtio_pci *vp, uint16_t q, uint16_t size,
		      uint32_t desc, uint32_t avail, uint32_t used)
{
	fuzz_bar_write(vm, vp, 0x16, q, 2); /* queue_select */
	fuzz_bar_write(vm, vp, 0x18, size, 2);
	fuzz_bar_write64(vm, vp, 0x20, fuzz_gpa_of(desc));
	fuzz_bar_write64(vm, vp, 0x28, fuzz_gpa_of(avail));
	fuzz_bar_write64(vm, vp, 0x30, fuzz_gpa_of(used));
	fuzz_bar_write(vm, vp, 0x1c, 1, 2); /* queue_enable */
}

bool fuzz_bump_avail(struct vm *vm, uint32_t avail, uint8_t n)
{
	uint16_t *idx = vm_gpa_to_hva(vm, fuzz_gpa_of(avail) + 2, 2);
	if (!idx || !n)
		return false;
	uint16_t v;
	memcpy(&v, idx, 2);
	v = (uint16_t)(v + n);
	memcpy(idx, &v, 2);
	return true;
}

void fuzz_seeds_if_asked(void (*write_seeds)(const char *dir))
{
	const char *seeds = getenv("CAIRN_FUZZ_SEEDS");
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
}

void fuzz_write_seed(const char *dir, const char *name, const void *hdr, size_t hlen,
		     const uint8_t *slot0, size_t size0)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(hdr, hlen, 1, f) != 1 || fwrite(slot0, size0, 1, f) != 1)
		die("seed");
	fclose(f);
}
