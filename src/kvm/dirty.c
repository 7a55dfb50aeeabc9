/* Dirty pages of guest RAM; see dirty.h. */
#include "kvm/dirty.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define PAGE 4096u

uint64_t vm_dirty_words(const struct vm *vm)
{
	return (vm->ram_size / PAGE + 63) / 64;
}

/* OR N bits of SRC into MAP starting at bit FIRST. */
static void or_bits(uint64_t *map, uint64_t first, const uint64_t *src, uint64_t n)
{
	for (uint64_t w = 0; w * 64 < n; w++) {
		uint64_t v = src[w];
		if (n - w * 64 < 64)
			v &= ((uint64_t)1 << (n - w * 64)) - 1;
		if (!v)
			continue;
		uint64_t at = first + w * 64, sh = at % 64;
		map[at / 64] |= v << sh;
		if (sh && (at / 64 + 1) * 64 < first + n)
			map[at / 64 + 1] |= v >> (64 - sh);
	}
}

static int slot_log(struct vm *vm, const struct vm_mem_slot *s, bool on)
{
	struct kvm_userspace_memory_region reg = {.slot = s->slot,
						  .flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
						  .guest_phys_addr = s->gpa,
						  .memory_size = s->size,
						  .userspace_addr = (uintptr_t)s->hva};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0 ? -errno : 0;
}

int vm_dirty_start(struct vm *vm)
{
	if (vm->dirty_log)
		return 0;
	for (int i = 0; i < vm->nslots; i++) {
		int r = slot_log(vm, &vm->slots[i], true);
		if (r < 0) {
			uint32_t slot = vm->slots[i].slot;
			for (int k = 0; k < i; k++) /* all or none */
				slot_log(vm, &vm->slots[k], false);
			return err_set(-r, "KVM_SET_USER_MEMORY_REGION: dirty logging of slot %u",
				       slot);
		}
	}
	vm->dirty_log = true;
	return 0;
}

int vm_dirty_collect(struct vm *vm, uint64_t *map)
{
	int r = 0;
	uint64_t kvm_pages = 0, vmm_pages = 0;
	for (int i = 0; vm->dirty_log && i < vm->nslots && r == 0; i++) {
		const struct vm_mem_slot *s = &vm->slots[i];
		uint64_t pages = s->size / PAGE, words = (pages + 63) / 64;
		uint64_t *log = calloc(words, 8);
		struct kvm_dirty_log d = {.slot = s->slot, .dirty_bitmap = log};
		if (!log)
			r = err_set(ENOMEM, "dirty log");
		else if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &d) < 0)
			r = err_set(errno, "KVM_GET_DIRTY_LOG (slot %u)", s->slot);
		else
			or_bits(map, (uint64_t)(s->hva - vm->ram) / PAGE, log, pages);
		for (uint64_t w = 0; log && r == 0 && w < words; w++)
			kvm_pages += (uint64_t)__builtin_popcountll(log[w]);
		free(log);
	}
	uint64_t words = vm_dirty_words(vm);
	for (uint64_t w = 0; vm->vmm_dirty && w < words; w++)
		if (__atomic_load_n(&vm->vmm_dirty[w], __ATOMIC_RELAXED)) {
			uint64_t v = __atomic_exchange_n(&vm->vmm_dirty[w], 0, __ATOMIC_ACQ_REL);
			vmm_pages += (uint64_t)__builtin_popcountll(v);
			map[w] |= v;
		}
	log_debug("dirty pages collected: %llu logged by KVM, %llu marked by the VMM",
		  (unsigned long long)kvm_pages, (unsigned long long)vmm_pages);
	return r;
}

void vm_dirty_mark(struct vm *vm, const void *hva, uint64_t len)
{
	const uint8_t *p = hva;
	if (!vm->vmm_dirty || !len || p < vm->ram || p >= vm->ram + vm->ram_size)
		return;
	uint64_t off = (uint64_t)(p - vm->ram);
	uint64_t end = len > vm->ram_size - off ? vm->ram_size : off + len;
	for (uint64_t pg = off / PAGE; pg < (end + PAGE - 1) / PAGE; pg++)
		__atomic_fetch_or(&vm->vmm_dirty[pg / 64], (uint64_t)1 << (pg % 64),
				  __ATOMIC_RELAXED);
}
