#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

void vcpu_signals_init(void)
{
	struct sigaction sa = {.sa_handler = vcpu_kick_handler};
	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

int vcpu_create(struct vm *vm, int id, struct vcpu **out)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	if (!v)
		return err_set(ENOMEM, "vCPU %d", id);
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		int r = err_set(errno, "KVM_CREATE_VCPU %d", id);
		free(v);
		return r;
	}
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd,
		      0);
	if (v->run == MAP_FAILED) {
		int r = err_set(errno, "mapping vCPU %d's kvm_run", id);
		close(v->fd);
		free(v);
		return r;
	}
	*out = v;
	return 0;
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	close(v->fd);
	free(v);
}

void vcpu_kick(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_join(struct vcpu *v)
{
	if (v->started) {
		pthread_join(v->thread, NULL);
		v->started = false;
	}
}

void vcpu_dump_regs(struct vcpu *v, char *buf, size_t len)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		snprintf(buf, len, "(registers unavailable: %s)", strerror(errno));
		return;
	}
	snprintf(buf, len,
		 "vCPU %d: rip=%016llx rsp=%016llx rflags=%08llx cpl=%u\n"
		 "  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
		 "  rsi=%016llx rdi=%016llx rbp=%016llx r8=%016llx\n"
		 "  cr0=%08llx cr2=%016llx cr3=%016llx cr4=%08llx efer=%llx\n"
		 "  cs=%04x(base %llx) ss=%04x",
		 v->id, r.rip, r.rsp, r.rflags, s.cs.selector & 3, r.rax, r.rbx, r.rcx, r.rdx,
		 r.rsi, r.rdi, r.rbp, r.r8, s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.selector,
		 s.cs.base, s.ss.selector);
}

static void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (!iobus_dispatch(&v->vm->pio, run->io.port, data, run->io.size, write))
			log_debug("vCPU %d: unhandled port %s %#x", v->id, write ? "write" : "read",
				  run->io.port);
		data += run->io.size;
	}
	v->exits_io++;
}

static void vcpu_handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	if (!iobus_dispatch(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
			    run->mmio.is_write))
		log_debug("vCPU %d: unhandled MMIO %s at %#llx", v->id,
			  run->mmio.is_write ? "write" : "read", run->mmio.phys_addr);
	v->exits_mmio++;
}

static void vcpu_fail(struct vcpu *v, const char *what)
{
	char regs[1024], msg[2600];
	vcpu_dump_regs(v, regs, sizeof(regs));
	snprintf(msg, sizeof(msg), "%.1500s\n%s", what, regs);
	vm_request_exit(v->vm, VM_EXIT_ERROR, 1, msg);
}

static void vcpu_handle_internal_error(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && v->vm->emul_fallback) {
		if (v->vm->emul_fallback(v) == 0) {
			v->exits_fallback++;
			return;
		}
		char what[1200];
		snprintf(what, sizeof(what), "KVM internal error (emulation failure): %s",
			 err_msg());
		vcpu_fail(v, what);
		return;
	}
	char what[512];
	int n = snprintf(what, sizeof(what), "KVM internal error, suberror %u; data:",
			 run->internal.suberror);
	for (uint32_t i = 0; i < run->internal.ndata && i < 16 && n < (int)sizeof(what) - 20; i++)
		n += snprintf(what + n, sizeof(what) - (size_t)n, " %llx",
			      (unsigned long long)run->internal.data[i]);
	vcpu_fail(v, what);
}

/* Returns false when the loop must end. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[256];
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		vcpu_handle_mmio(v);
		return true;
	case KVM_EXIT_SHUTDOWN:
		log_info("vCPU %d: guest shut down (triple fault): treated as a reset", v->id);
		vm_request_exit(v->vm, VM_EXIT_RESET, 0, "triple fault");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vm_request_exit(v->vm, VM_EXIT_RESET, 0, "system event");
		return false;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; we always have one. */
		return true;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_handle_internal_error(v);
		return v->vm->exit_reason == VM_EXIT_NONE;
	case KVM_EXIT_DEBUG:
		if (v->vm->debug_exit && v->vm->debug_exit(v) == 0)
			return true;
		snprintf(what, sizeof(what), "unexpected debug exit: %.200s", err_msg());
		vcpu_fail(v, what);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "KVM entry failed, hardware reason %#llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_fail(v, what);
		return false;
	default:
		snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
		vcpu_fail(v, what);
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%d", v->id);
	pthread_setname_np(pthread_self(), name);
	if (v->id == 0)
		log_info("first KVM_RUN %llu us after process start", log_uptime_us());
	for (;;) {
		if (__atomic_load_n(&v->vm->exit_reason, __ATOMIC_SEQ_CST) != VM_EXIT_NONE)
			break;
		int r = ioctl(v->fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				/* Kicked: any I/O of the last exit is complete now, so
				 * this is a point where the state may be read. */
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				if (__atomic_load_n(&v->vm->pause_requested, __ATOMIC_SEQ_CST))
					vm_vcpu_park(v->vm);
				continue;
			}
			char what[128];
			snprintf(what, sizeof(what), "KVM_RUN failed: %s", strerror(errno));
			vcpu_fail(v, what);
			break;
		}
		if (!vcpu_handle_exit(v))
			break;
	}
	pthread_mutex_lock(&v->vm->lock);
	v->vm->running--;
	pthread_cond_broadcast(&v->vm->cond);
	pthread_mutex_unlock(&v->vm->lock);
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	/* The kick signal must stay deliverable in vCPU threads. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	pthread_mutex_lock(&v->vm->lock);
	v->vm->running++;
	pthread_mutex_unlock(&v->vm->lock);
	int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (r) {
		pthread_mutex_lock(&v->vm->lock);
		v->vm->running--;
		pthread_mutex_unlock(&v->vm->lock);
		return err_set(r, "starting vCPU %d's thread", v->id);
	}
	v->started = true;
	return 0;
}
