#include "kvm/vm.h"
#include "arch/x86/layout.h"
#include "kvm/dirty.h"
#include "kvm/vcpu.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int vm_check_caps(struct vm *vm)
{
	static const struct {
		int cap;
		const char *name;
	} need[] = {
		{KVM_CAP_IRQCHIP, "in-kernel irqchip"},
		{KVM_CAP_PIT2, "PIT2"},
		{KVM_CAP_IOEVENTFD, "ioeventfd"},
		{KVM_CAP_SIGNAL_MSI, "KVM_SIGNAL_MSI"},
		{KVM_CAP_USER_MEMORY, "user memory"},
		{KVM_CAP_IMMEDIATE_EXIT, "immediate_exit"},
	};
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0)
			return err_set(ENOTSUP, "/dev/kvm lacks %s (KVM capability %d)",
				       need[i].name, need[i].cap);
	return 0;
}

int vm_create(struct vm **out)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return err_set(ENOMEM, "allocating the VM");
	vm->kvm_fd = vm->vm_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	iobus_init(&vm->pio, "pio");
	iobus_init(&vm->mmio, "mmio");
	int r;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = err_set(errno, "/dev/kvm: cannot open (is KVM enabled and are you in the "
				   "kvm group?)");
		goto fail;
	}
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		r = err_set(ENOTSUP, "/dev/kvm: KVM API version %d, cairn needs %d", api,
			    KVM_API_VERSION);
		goto fail;
	}
	if ((r = vm_check_caps(vm)) < 0)
		goto fail;
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0) {
		r = err_set(errno, "/dev/kvm: KVM_GET_VCPU_MMAP_SIZE");
		goto fail;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = err_set(errno, "/dev/kvm: cannot create a VM");
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)TSS_ADDR) < 0) {
		r = err_set(errno, "KVM_SET_TSS_ADDR");
		goto fail;
	}
	uint64_t idmap = IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		r = err_set(errno, "KVM_SET_IDENTITY_MAP_ADDR");
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return r;
}

int vm_create_irqchip(struct vm *vm)
{
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err_set(errno, "KVM_CREATE_IRQCHIP");
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return err_set(errno, "KVM_CREATE_PIT2");
	return 0;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	if (vm->ram)
		munmap(vm->ram, vm->ram_size);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	iobus_destroy(&vm->pio);
	iobus_destroy(&vm->mmio);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm->arch_data);
	free(vm->vmm_dirty);
	free(vm);
}

int vm_mem_alloc(struct vm *vm, uint64_t size)
{
	if (size < MIN_RAM_SIZE || size > MAX_RAM_SIZE)
		return err_set(EINVAL, "memory size %llu MiB is outside %llu MiB..%llu GiB",
			       (unsigned long long)(size >> 20),
			       (unsigned long long)(MIN_RAM_SIZE >> 20),
			       (unsigned long long)(MAX_RAM_SIZE >> 30));
	if (size & (PAGE_SIZE - 1))
		return err_set(EINVAL, "memory size must be a multiple of 4 KiB");
	/* 2 MiB aligned and THP-advised (as QEMU does): fewer TLB misses, and
	 * fork() for a snapshot writer copies one entry per 2 MiB, not per
	 * page, so the pause does not grow with RAM as much. */
	const uint64_t huge = 2ull << 20;
	uint8_t *p = mmap(NULL, size + huge, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return err_set(errno, "cannot map %llu MiB of guest memory",
			       (unsigned long long)(size >> 20));
	uint8_t *a = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
	size_t head = (size_t)(a - p); /* < huge, so some tail is always left over */
	if (head)
		munmap(p, head);
	munmap(a + size, huge - head);
	madvise(a, size, MADV_HUGEPAGE); /* advice: ignored where THP is off */
	vm->ram = a;
	vm->ram_size = size;
	return vm_mem_register(vm);
}

int vm_mem_register(struct vm *vm)
{
	if (!vm->vmm_dirty && !(vm->vmm_dirty = calloc(vm_dirty_words(vm), 8)))
		return err_set(ENOMEM, "dirty page map");
	uint64_t low = vm->ram_size < LOWMEM_END ? vm->ram_size : LOWMEM_END;
	vm->nslots = 0;
	vm->slots[vm->nslots++] = (struct vm_mem_slot){0, 0, low, vm->ram};
	if (vm->ram_size > low)
		vm->slots[vm->nslots++] =
			(struct vm_mem_slot){1, HIGHMEM_START, vm->ram_size - low, vm->ram + low};
	for (int i = 0; i < vm->nslots; i++) {
		struct vm_mem_slot *s = &vm->slots[i];
		struct kvm_userspace_memory_region reg = {
			.slot = s->slot,
			.guest_phys_addr = s->gpa,
			.memory_size = s->size,
			.userspace_addr = (uintptr_t)s->hva,
			/* incremental memory snapshots (kvm/dirty.h) */
			.flags = vm->dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0)
			return err_set(errno, "KVM_SET_USER_MEMORY_REGION (slot %u, %llu MiB)",
				       s->slot, (unsigned long long)(s->size >> 20));
	}
	return 0;
}

void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < vm->nslots; i++) {
		const struct vm_mem_slot *s = &vm->slots[i];
		if (gpa >= s->gpa && gpa - s->gpa <= s->size && len <= s->size - (gpa - s->gpa))
			return s->hva + (gpa - s->gpa);
	}
	return NULL;
}

int vm_irq_line(struct vm *vm, uint32_t irq, int level)
{
	struct kvm_irq_level l = {.irq = irq, .level = (uint32_t)level};
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		return err_set(errno, "KVM_IRQ_LINE %u", irq);
	return 0;
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {.address_lo = (uint32_t)addr,
			      .address_hi = (uint32_t)(addr >> 32),
			      .data = data};
	/* > 0 delivered, 0 blocked by the guest (e.g. its LAPIC is off). */
	if (ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		return err_set(errno, "KVM_SIGNAL_MSI address %#llx data %#x",
			       (unsigned long long)addr, data);
	return 0;
}

int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, unsigned len, bool pio, bool assign)
{
	struct kvm_ioeventfd e = {
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0)
		return err_set(errno, "KVM_IOEVENTFD at %#llx", (unsigned long long)addr);
	return 0;
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = true;
	pthread_mutex_unlock(&vm->lock);
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_kick(vm->vcpus[i]);
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->running && vm->exit_reason == VM_EXIT_NONE)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm_vcpu_park(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->cond);
	while (vm->pause_requested && vm->exit_reason == VM_EXIT_NONE)
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->lock);
}

void vm_request_exit(struct vm *vm, enum vm_exit_reason reason, int code, const char *msg)
{
	pthread_mutex_lock(&vm->lock);
	bool first = vm->exit_reason == VM_EXIT_NONE;
	if (first) {
		vm->exit_reason = reason;
		vm->exit_code = code;
		snprintf(vm->exit_msg, sizeof(vm->exit_msg), "%s", msg ? msg : "");
	}
	pthread_cond_broadcast(&vm->cond); /* parked vCPUs and a waiting pauser */
	pthread_mutex_unlock(&vm->lock);
	if (!first)
		return;
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_kick(vm->vcpus[i]);
	if (vm->loop)
		evloop_stop(vm->loop);
}
