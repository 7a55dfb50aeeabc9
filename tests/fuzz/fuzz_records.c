/* libFuzzer harness for the restore of a snapshot's records: the
 * configuration, VM (irqchips, PIT, kvmclock), vCPU and device records of
 * state.bin, through the functions a restore uses: src/vmm/vm_records.c
 * and vm_snapshot.c, the record layouts of src/arch/x86/vcpu_state.c and
 * every device's snapshot function.  (The container has its own harness,
 * fuzz_state_file.c.)
 *
 * The input is a state.bin whose checksums are recomputed first
 * (state_reseal), so that mutations reach the records.  Then, as a restore
 * does:
 *  1. state_reader_parse with cairn's tags; the configuration record
 *     (vm_record_config) gives the number of vCPUs and disks;
 *  2. the VM is one of three built at start-up without KVM (kvm_fd and
 *     vm_fd are -1, so every KVM call fails) by the real device init list:
 *     serial, i8042, debug-exit, PCI host and 0, 1 or 2 virtio-blk disks on
 *     raw images; its devices are first put back to their initial state;
 *  3. vm_snapshot_check_records: the VM record and every vCPU record parsed
 *     and checked, a record present for every device;
 *  4. x86_vm_restore and x86_vcpu_restore on each record that parsed, up to
 *     their first KVM call;
 *  5. vm_snapshot_apply_devices: every device record into its device.
 * Checked besides the sanitizers: a VM or vCPU record that parses gives the
 * same state whatever the state held before (it is parsed over 0x00 and
 * over 0xa5 bytes, and every byte KVM would be handed is compared) and
 * saves back to the same bytes; the device states a restore made save and
 * restore to themselves; then every device register is read through the
 * VM's buses (the handlers on restored state).
 *
 * CAIRN_FUZZ_SEEDS=DIR: write seed state files into DIR, made by the real
 * save functions from these VMs' devices (fresh, and driven a little
 * through their registers) with plausible vCPU and VM states, and exit.
 * CAIRN_FUZZ_VERBOSE=1: say which step refused an input, and why. */
#include "fuzz_vm.h"

#include "arch/x86/vcpu_state.h"
#include "devices/device.h"
#include "devices/virtio_pci.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "snapshot/state_file.h"
#include "state_reseal.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"
#include "vmm/config.h"
#include "vmm/config_json.h"
#include "vmm/vm_records.h"
#include "vmm/vm_snapshot.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DISKS 2
#define MAX_DEVICES 16
#define RAM_SIZE 0x10000u
#define DISK_SIZE (1u << 20)
#define COM1 0x3f8
#define PCI_CONF_ADDR 0xcf8
#define PCI_CONF_DATA 0xcfc

struct fake_vm {
	struct vm *vm;
	struct {
		uint8_t *p;
		size_t len;
	} base[MAX_DEVICES]; /* each device's record as initialised */
	int ndev;
};

static struct {
	struct fake_vm fv[MAX_DISKS + 1];
	struct evloop *loop; /* never run: the virtio kicks are drained by hand */
	uint8_t *ram;
	int devnull;
	bool verbose;
	struct x86_vcpu_state vcpu[2];
	struct x86_vm_state vmst[2];
} fz;

/* The outcome of a step, when verbose. */
static int said(int r, const char *step)
{
	if (fz.verbose)
		fprintf(stderr, "fuzz_records: %s: %s\n", step, r < 0 ? err_msg() : "ok");
	return r;
}

static void die(const char *what)
{
	fprintf(stderr, "fuzz_records: %s\n", what);
	abort();
}

/* ---- the VMs ---- */

static struct virtio_pci *virtio_of(struct device *d)
{
	/* virtio_blk.c's private data starts with its transport. */
	return strcmp(d->ops->name, "virtio-blk") == 0 ? d->priv : NULL;
}

static int save_device(struct device *d, uint8_t **p, size_t *len)
{
	struct state_buf sb;
	state_buf_init_save(&sb, d->ops->name);
	int r = vm_record_device(d, &sb);
	if (r < 0) {
		state_buf_release(&sb);
		return r;
	}
	*p = sb.p;
	*len = sb.off;
	return 0;
}

static int restore_device(struct device *d, const void *p, size_t len)
{
	struct state_buf sb;
	state_buf_init_restore(&sb, p, len, d->ops->name);
	return vm_record_device(d, &sb);
}

static void make_vm(struct fake_vm *fv, int ndisks, char (*paths)[64])
{
	struct vm *vm = fuzz_vm_new(fz.loop);
	fuzz_vm_add_slot(vm, 0, fz.ram, RAM_SIZE);
	vm->ncpus = 1;
	struct virtio_blk_disk disks[MAX_DISKS];
	for (int i = 0; i < ndisks; i++)
		disks[i] = (struct virtio_blk_disk){paths[i], "raw", false, NULL};
	struct devices_config dc = {
	    .console = {-1, fz.devnull}, .disks = disks, .ndisks = ndisks, .rng = true};
	if (devices_init(vm, &dc) < 0) {
		fprintf(stderr, "fuzz_records: devices: %s\n", err_msg());
		abort();
	}
	for (struct device *d = vm->devices; d; d = d->next, fv->ndev++) {
		if (fv->ndev == MAX_DEVICES)
			die("too many devices");
		if (d->ops->snapshot &&
		    save_device(d, &fv->base[fv->ndev].p, &fv->base[fv->ndev].len) < 0)
			die("saving a device's initial state");
	}
	fv->vm = vm;
}

static void setup(void)
{
	log_set_level(LOG_ERROR); /* BARs that overlap, MSI-X without KVM... */
	fz.devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	fz.ram = calloc(1, RAM_SIZE);
	if (fz.devnull < 0 || !fz.ram || evloop_create(&fz.loop) < 0)
		die("set-up");
	/* One image per disk (the image locks refuse an image opened twice),
	 * removed once open. */
	char dir[] = "/tmp/cairn-fuzz-records.XXXXXX";
	if (!mkdtemp(dir))
		die("mkdtemp");
	char paths[MAX_DISKS + 1][MAX_DISKS][64];
	for (int n = 0; n <= MAX_DISKS; n++)
		for (int i = 0; i < n; i++) {
			snprintf(paths[n][i], 64, "%s/d%d%d.raw", dir, n, i);
			int fd = open(paths[n][i], O_CREAT | O_RDWR | O_TRUNC, 0600);
			if (fd < 0 || ftruncate(fd, DISK_SIZE) < 0)
				die("raw disk");
			close(fd);
		}
	for (int n = 0; n <= MAX_DISKS; n++)
		make_vm(&fz.fv[n], n, paths[n]);
	for (int n = 0; n <= MAX_DISKS; n++)
		for (int i = 0; i < n; i++)
			unlink(paths[n][i]);
	rmdir(dir);
}

/* Devices as initialised; virtio kicks left by a restore drained. */
static void reset_devices(struct fake_vm *fv)
{
	int k = 0;
	for (struct device *d = fv->vm->devices; d; d = d->next, k++) {
		if (d->ops->snapshot && restore_device(d, fv->base[k].p, fv->base[k].len) < 0) {
			fprintf(stderr, "fuzz_records: initial state refused: %s\n", err_msg());
			abort();
		}
		struct virtio_pci *vp = virtio_of(d);
		for (unsigned q = 0; vp && q < VIRTIO_MAX_QUEUES; q++) {
			uint64_t n;
			if (vp->kick_fd[q] >= 0 && read(vp->kick_fd[q], &n, sizeof(n)) < 0)
				continue;
		}
	}
}

/* ---- checks ---- */

static void same(const void *a, const void *b, size_t len, const char *what)
{
	if (memcmp(a, b, len) != 0) {
		fprintf(stderr, "fuzz_records: %s\n", what);
		abort();
	}
}

/* The bytes of ST that x86_vcpu_restore hands to KVM must be the same in A
 * and B: all of xsave (KVM_SET_XSAVE reads as much as the host's XSAVE
 * area holds), the used parts of msrs and cpuid. */
static void same_vcpu(const struct x86_vcpu_state *a, const struct x86_vcpu_state *b)
{
	const char *m = "vCPU record: the parsed state depends on what the state held before";
#define SAME(f) same(&a->f, &b->f, sizeof(a->f), m)
	SAME(regs);
	SAME(sregs);
	SAME(xcrs);
	SAME(debugregs);
	SAME(lapic);
	SAME(mp_state);
	SAME(events);
	SAME(tsc_khz);
	SAME(xsave_size);
	SAME(nmsrs);
	SAME(ncpuid);
	SAME(xsave);
#undef SAME
	same(a->msrs, b->msrs, a->nmsrs * sizeof(a->msrs[0]), m);
	same(a->cpuid, b->cpuid, a->ncpuid * sizeof(a->cpuid[0]), m);
}

static void saves_back(int r, struct state_buf *sb, const void *data, size_t len, const char *what)
{
	if (r < 0 || sb->off != len || memcmp(sb->p, data, len) != 0) {
		fprintf(stderr, "fuzz_records: %s record: parsed, it does not save back the same\n",
			what);
		abort();
	}
	state_buf_release(sb);
}

static void check_vcpu(struct vm *vm, const void *data, size_t len, int i)
{
	memset(&fz.vcpu[0], 0, sizeof(fz.vcpu[0]));
	memset(&fz.vcpu[1], 0xa5, sizeof(fz.vcpu[1]));
	int r0 = vm_record_vcpu(data, len, i, &fz.vcpu[0]);
	int r1 = vm_record_vcpu(data, len, i, &fz.vcpu[1]);
	if ((r0 < 0) != (r1 < 0))
		die("vCPU record: parsed or refused depending on what the state held before");
	if (r0 < 0)
		return;
	same_vcpu(&fz.vcpu[0], &fz.vcpu[1]);
	struct state_buf sb;
	state_buf_init_save(&sb, "vCPU");
	saves_back(x86_vcpu_state_fields(&fz.vcpu[0], &sb), &sb, data, len, "vCPU");
	struct vcpu v = {.vm = vm, .id = i, .fd = -1};
	x86_vcpu_restore(&v, &fz.vcpu[1]); /* fails at its first KVM call */
}

static void check_vm(struct vm *vm, const void *data, size_t len)
{
	memset(&fz.vmst[0], 0, sizeof(fz.vmst[0]));
	memset(&fz.vmst[1], 0xa5, sizeof(fz.vmst[1]));
	int r0 = vm_record_vm(data, len, &fz.vmst[0]);
	int r1 = vm_record_vm(data, len, &fz.vmst[1]);
	if ((r0 < 0) != (r1 < 0))
		die("VM record: parsed or refused depending on what the state held before");
	if (r0 < 0)
		return;
	same(&fz.vmst[0], &fz.vmst[1], sizeof(fz.vmst[0]),
	     "VM record: the parsed state depends on what the state held before");
	struct state_buf sb;
	state_buf_init_save(&sb, "VM");
	saves_back(x86_vm_state_fields(&fz.vmst[0], &sb), &sb, data, len, "VM");
	x86_vm_restore(vm, &fz.vmst[1]); /* fails at its first KVM call */
}

/* A state a restore made must save and restore to itself. */
static void check_devices(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		if (!d->ops->snapshot)
			continue;
		uint8_t *a, *b;
		size_t alen, blen;
		if (save_device(d, &a, &alen) < 0)
			die("a restored device cannot be saved");
		if (restore_device(d, a, alen) < 0) {
			fprintf(stderr,
				"fuzz_records: %s: a restored state, saved, is refused: %s\n",
				d->ops->name, err_msg());
			abort();
		}
		if (save_device(d, &b, &blen) < 0)
			die("a restored device cannot be saved");
		if (alen != blen || memcmp(a, b, alen) != 0) {
			fprintf(stderr,
				"fuzz_records: %s: saved, restored and saved again, differs\n",
				d->ops->name);
			abort();
		}
		free(a);
		free(b);
	}
}

static void io_read(struct io_bus *bus, uint64_t addr, unsigned len)
{
	uint64_t v;
	iobus_dispatch(bus, addr, &v, len, false);
}

static void io_write(struct io_bus *bus, uint64_t addr, uint32_t v, unsigned len)
{
	iobus_dispatch(bus, addr, &v, len, true);
}

/* Every register, with the state the restore left. */
static void read_registers(struct vm *vm)
{
	for (unsigned p = 0; p < 8; p++)
		io_read(&vm->pio, COM1 + p, 1);
	io_read(&vm->pio, 0x64, 1);
	io_read(&vm->pio, 0x60, 1);
	io_read(&vm->pio, 0x501, 1);
	for (unsigned p = 0; p < 4; p++) /* with the restored address register */
		io_read(&vm->pio, PCI_CONF_DATA + p, 1);
	for (unsigned slot = 0; slot <= MAX_DISKS; slot++)
		for (unsigned reg = 0; reg < 256; reg += 4) {
			io_write(&vm->pio, PCI_CONF_ADDR, 0x80000000u | slot << 11 | reg, 4);
			io_read(&vm->pio, PCI_CONF_DATA, 4);
		}
	/* The BARs where the restore mapped them. */
	struct io_range r[8];
	unsigned n = vm->mmio.count < 8 ? vm->mmio.count : 8;
	if (n)
		memcpy(r, vm->mmio.ranges, n * sizeof(r[0]));
	static const struct {
		unsigned off, len, step, size;
	} regs[] = {
	    {0x0000, 0x38, 2, 2},  /* virtio common configuration */
	    {0x1000, 1, 1, 1},	   /* ISR */
	    {0x2000, 0x40, 4, 4},  /* device configuration */
	    {0x4000, 0x400, 4, 4}, /* MSI-X table */
	    {0x5000, 8, 4, 4},	   /* PBA */
	};
	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < sizeof(regs) / sizeof(regs[0]); k++)
			for (unsigned o = regs[k].off;
			     o < regs[k].off + regs[k].len && o + regs[k].size <= r[i].len;
			     o += regs[k].step)
				io_read(&vm->mmio, r[i].base + o, regs[k].size);
}

/* ---- one input ---- */

static void restore(struct vm *vm, struct state_reader *r)
{
	said(vm_snapshot_check_records(vm, r), "check_records");
	const void *data;
	size_t len;
	if (state_reader_get(r, VM_RECORD_VM, 0, &data, &len, NULL) == 0)
		check_vm(vm, data, len);
	for (int i = 0; i < VM_MAX_VCPUS; i++)
		if (state_reader_get(r, VM_RECORD_VCPU, (uint16_t)i, &data, &len, NULL) == 0)
			check_vcpu(vm, data, len, i);
	struct vm_memory_record mr;
	vm_record_memory(r, &mr);
	if (said(vm_snapshot_apply_devices(vm, r), "apply_devices") == 0)
		check_devices(vm);
	read_registers(vm);
}

static void write_seeds(const char *dir);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz.verbose = getenv("CAIRN_FUZZ_VERBOSE") != NULL;
	setup();
	fuzz_seeds_if_asked(write_seeds);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	state_reseal(buf, size);
	struct state_reader *r;
	int ret = state_reader_parse(buf, size, "fuzz", vm_record_tags, vm_record_ntags, &r);
	free(buf);
	if (said(ret, "state file") < 0)
		return 0;
	struct vm_config cfg = {0};
	if (said(vm_record_config(r, &cfg), "configuration") == 0 && cfg.ndisks <= MAX_DISKS) {
		struct fake_vm *fv = &fz.fv[cfg.ndisks];
		fv->vm->ncpus = cfg.ncpus;
		reset_devices(fv);
		restore(fv->vm, r);
	}
	vm_config_free(&cfg);
	state_reader_close(r);
	return 0;
}

/* ---- seeds ---- */

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* A vCPU in long mode, as a guest kernel leaves it. */
static void seed_vcpu(struct x86_vcpu_state *st, int i)
{
	memset(st, 0, sizeof(*st));
	st->regs.rip = 0x100000 + 0x40 * (uint64_t)i;
	st->regs.rsp = 0x9000;
	st->regs.rflags = 0x246;
	struct kvm_segment code = {
	    .limit = 0xfffff, .selector = 8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1};
	struct kvm_segment dat = {
	    .limit = 0xfffff, .selector = 0x10, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1};
	st->sregs.cs = code;
	st->sregs.ds = st->sregs.es = st->sregs.fs = st->sregs.gs = st->sregs.ss = dat;
	st->sregs.tr = (struct kvm_segment){.limit = 0x67, .type = 11, .present = 1};
	st->sregs.ldt = (struct kvm_segment){.type = 2, .present = 1, .unusable = 1};
	st->sregs.gdt = (struct kvm_dtable){.base = 0x500, .limit = 0x1f};
	st->sregs.cr0 = 0x80050033;
	st->sregs.cr3 = 0x2000;
	st->sregs.cr4 = 0x6a0;
	st->sregs.efer = 0xd01;
	st->sregs.apic_base = 0xfee00800 | (i == 0 ? 0x100 : 0);
	st->xcrs.nr_xcrs = 1;
	st->xcrs.xcrs[0].value = 3;
	st->debugregs.dr6 = 0xffff0ff0;
	st->debugregs.dr7 = 0x400;
	put32((uint8_t *)st->lapic.regs + 0x20, (uint32_t)i << 24); /* ID */
	put32((uint8_t *)st->lapic.regs + 0x30, 0x50014);	    /* version */
	put32((uint8_t *)st->lapic.regs + 0xf0, 0x1ff);		    /* spurious vector, enabled */
	put32((uint8_t *)st->lapic.regs + 0x320, 0x40030);	    /* timer: TSC deadline */
	put32((uint8_t *)st->lapic.regs + 0x350, i ? 0x10700 : 0x700);
	put32((uint8_t *)st->lapic.regs + 0x360, 0x400);
	st->mp_state.mp_state = i ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE;
	st->events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	st->tsc_khz = 2500000;
	st->xsave_size = sizeof(struct kvm_xsave);
	uint16_t fcw = 0x37f;
	uint32_t mxcsr = 0x1f80;
	uint64_t xstate_bv = 3;
	memcpy(st->xsave, &fcw, 2);
	memcpy(st->xsave + 24, &mxcsr, 4);
	memcpy(st->xsave + 512, &xstate_bv, 8);
	static const struct kvm_msr_entry msrs[] = {
	    {.index = 0x10, .data = 123456789012},	       /* TSC */
	    {.index = 0x1b, .data = 0xfee00900},	       /* APIC base */
	    {.index = 0x174, .data = 0x8},		       /* SYSENTER_CS */
	    {.index = 0x6e0, .data = 123456999999},	       /* TSC deadline */
	    {.index = 0xc0000081, .data = 0x23001000000000},   /* STAR */
	    {.index = 0xc0000082, .data = 0xffffffff81000000}, /* LSTAR */
	    {.index = 0xc0000084, .data = 0x47700},	       /* FMASK */
	    {.index = 0xc0000102, .data = 0},		       /* kernel GS base */
	    {.index = 0x4b564d01, .data = 0x1001},	       /* kvmclock system time */
	};
	st->nmsrs = sizeof(msrs) / sizeof(msrs[0]);
	memcpy(st->msrs, msrs, sizeof(msrs));
	static const struct kvm_cpuid_entry2 cpuid[] = {
	    {.function = 0, .eax = 0xd, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69},
	    {.function = 1, .eax = 0x906ea, .ecx = 0xf6fa3203, .edx = 0x0f8bfbff},
	    {.function = 7, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .ebx = 0x009c6fbb},
	    {.function = 0xd,
	     .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	     .eax = 7,
	     .ebx = 0x340,
	     .ecx = 0x340},
	    {.function = 0x40000000,
	     .eax = 0x40000001,
	     .ebx = 0x4b4d564b,
	     .ecx = 0x564b4d56,
	     .edx = 0x4d},
	    {.function = 0x80000000, .eax = 0x80000008},
	    {.function = 0x80000001, .ecx = 0x121, .edx = 0x2c100800},
	};
	st->ncpuid = sizeof(cpuid) / sizeof(cpuid[0]);
	memcpy(st->cpuid, cpuid, sizeof(cpuid));
}

/* PICs as Linux programs them, the IOAPIC's pins masked, the PIT's
 * channel 0 running. */
static void seed_vm(struct x86_vm_state *vs)
{
	memset(vs, 0, sizeof(*vs));
	vs->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	vs->pic_master.chip.pic =
	    (struct kvm_pic_state){.irq_base = 0x30, .imr = 0xfb, .init4 = 1, .elcr_mask = 0xf8};
	vs->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	vs->pic_slave.chip.pic =
	    (struct kvm_pic_state){.irq_base = 0x38, .imr = 0xff, .init4 = 1, .elcr_mask = 0xde};
	vs->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	vs->ioapic.chip.ioapic.base_address = 0xfec00000;
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		vs->ioapic.chip.ioapic.redirtbl[i].bits = 1ull << 16 | (uint64_t)(0x20 + i);
	for (int c = 0; c < 3; c++)
		vs->pit.channels[c] = (struct kvm_pit_channel_state){
		    .count = 0x10000, .rw_mode = 3, .mode = c ? 0 : 2, .gate = c != 2};
	vs->clock.clock = 1234567890;
}

static void add_buf(struct state_writer *w, uint32_t tag, uint16_t inst, struct state_buf *sb,
		    int r)
{
	if (r < 0 || state_writer_add(w, tag, 1, inst, sb->p, sb->off) < 0)
		die(err_msg());
	state_buf_release(sb);
}

/* What a guest's drivers would have done: UART and keyboard controller
 * set up, each virtio-blk queue 0 programmed and running with MSI-X. */
static void drive_devices(struct vm *vm)
{
	io_write(&vm->pio, COM1 + 3, 0x03, 1);
	io_write(&vm->pio, COM1 + 1, 0x03, 1);
	io_write(&vm->pio, COM1 + 4, 0x0b, 1);
	io_write(&vm->pio, COM1 + 7, 0x5a, 1);
	io_write(&vm->pio, 0x64, 0x60, 1);
	io_write(&vm->pio, 0x60, 0x47, 1);
	for (struct device *d = vm->devices; d; d = d->next) {
		struct virtio_pci *vp = virtio_of(d);
		if (!vp)
			continue;
		unsigned ctrl = (unsigned)vp->msix.cap_off + 2;
		io_write(&vm->pio, PCI_CONF_ADDR, 0x80000000u | vp->pci.slot << 11 | (ctrl & ~3u),
			 4);
		io_write(&vm->pio, PCI_CONF_DATA + (ctrl & 3), 0x8000, 2);
		uint64_t bar = vp->pci.bars[0].addr;
		for (unsigned v = 0; v < 2; v++) {
			io_write(&vm->mmio, bar + 0x4000 + 16 * v, 0xfee00000, 4);
			io_write(&vm->mmio, bar + 0x4000 + 16 * v + 8, 0x41 + v, 4);
			io_write(&vm->mmio, bar + 0x4000 + 16 * v + 12, 0, 4);
		}
		io_write(&vm->mmio, bar + 0x14, 1 | 2, 1);
		io_write(&vm->mmio, bar + 0x08, 1, 4);
		io_write(&vm->mmio, bar + 0x0c, 1, 4); /* VIRTIO_F_VERSION_1 */
		io_write(&vm->mmio, bar + 0x14, 1 | 2 | 8, 1);
		io_write(&vm->mmio, bar + 0x10, 0, 2);
		io_write(&vm->mmio, bar + 0x16, 0, 2);
		io_write(&vm->mmio, bar + 0x18, 128, 2);
		io_write(&vm->mmio, bar + 0x1a, 1, 2);
		io_write(&vm->mmio, bar + 0x20, 0x1000, 4);
		io_write(&vm->mmio, bar + 0x28, 0x2000, 4);
		io_write(&vm->mmio, bar + 0x30, 0x3000, 4);
		io_write(&vm->mmio, bar + 0x1c, 1, 2);
		io_write(&vm->mmio, bar + 0x14, 1 | 2 | 4 | 8, 1);
	}
}

static void write_seed(const char *dir, int ndisks, int ncpus, bool driven)
{
	struct fake_vm *fv = &fz.fv[ndisks];
	struct vm *vm = fv->vm;
	reset_devices(fv);
	if (driven)
		drive_devices(vm);
	char path[4096];
	snprintf(path, sizeof(path), "%s/seed-%ddisk-%dcpu%s", dir, ndisks, ncpus,
		 driven ? "-driven" : "");
	struct state_writer *w;
	if (state_writer_open(path, &w) < 0)
		die(err_msg());
	struct vm_config cfg = {.mem_size = 64 << 20,
				.ncpus = ncpus,
				.kernel = "testos.elf",
				.cmdline = "count 20",
				.ndisks = ndisks,
				.pvm_quirks = true};
	char disk[MAX_DISKS][32];
	for (int i = 0; i < ndisks; i++) {
		snprintf(disk[i], sizeof(disk[i]), "disk%d.qcow2", i);
		cfg.disks[i] = (struct disk_config){.path = disk[i], .size = DISK_SIZE};
	}
	json_t *j = vm_config_to_json(&cfg);
	char *config = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	if (!config || state_writer_add(w, VM_RECORD_CONFIG, 1, 0, config, strlen(config)) < 0)
		die("configuration record");
	free(config);
	struct state_buf sb;
	seed_vm(&fz.vmst[0]);
	state_buf_init_save(&sb, "VM");
	add_buf(w, VM_RECORD_VM, 0, &sb, x86_vm_state_fields(&fz.vmst[0], &sb));
	for (int i = 0; i < ncpus; i++) {
		seed_vcpu(&fz.vcpu[0], i);
		state_buf_init_save(&sb, "vCPU");
		add_buf(w, VM_RECORD_VCPU, (uint16_t)i, &sb,
			x86_vcpu_state_fields(&fz.vcpu[0], &sb));
	}
	uint16_t n = 0;
	for (struct device *d = vm->devices; d; d = d->next, n++) {
		if (!d->ops->snapshot)
			continue;
		state_buf_init_save(&sb, d->ops->name);
		add_buf(w, VM_RECORD_DEVICE, n, &sb, vm_record_device(d, &sb));
	}
	struct vm_memory_record mr = {.version = 2, .size = cfg.mem_size, .data_bytes = 1 << 20,
				      .id = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}};
	uint8_t payload[VM_MEMORY_RECORD_LEN];
	vm_record_memory_payload(&mr, payload, sizeof(payload));
	if (state_writer_add(w, VM_RECORD_MEMORY, 2, 0, payload, sizeof(payload)) < 0 ||
	    state_writer_commit(w) < 0)
		die(err_msg());
}

static void write_seeds(const char *dir)
{
	for (int ndisks = 0; ndisks <= MAX_DISKS; ndisks++)
		for (int ncpus = 1; ncpus <= 2; ncpus++)
			for (int driven = 0; driven < 2; driven++)
				write_seed(dir, ndisks, ncpus, driven);
}
