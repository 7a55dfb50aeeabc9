#include "vmm/vm_snapshot.h"
#include "arch/x86/vcpu_state.h"
#include "devices/device.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "snapshot/mem_image.h"
#include "snapshot/state_buf.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "util/log.h"
#include "vmm/config_json.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Record tags of state.bin (docs/state-format.md). */
enum {
	SNAP_TAG_CONFIG = 1, /* hardware configuration, JSON text */
	SNAP_TAG_VM = 2,     /* irqchips, PIT, kvmclock */
	SNAP_TAG_VCPU = 3,   /* one per vCPU, instance = vCPU id */
	SNAP_TAG_DEVICE = 4, /* one per device, instance = place in the device list */
	SNAP_TAG_MEMORY = 5, /* which memory image goes with this state */
};

static const struct state_tag snap_tags[] = {
	{SNAP_TAG_CONFIG, 1, "config"}, {SNAP_TAG_VM, 1, "vm"},
	{SNAP_TAG_VCPU, 1, "vcpu"},     {SNAP_TAG_DEVICE, 1, "device"},
	{SNAP_TAG_MEMORY, 1, "memory"},
};

struct snap_memory_record {
	uint64_t size, digest, data_bytes;
};

#define DEVICE_NAME_LEN 32

/* The vCPU record: fixed registers first, then the variable parts, their
 * counts checked before they are read. */
static int vcpu_state_fields(struct x86_vcpu_state *st, struct state_buf *sb)
{
	STATE_FIELD(sb, st->regs);
	STATE_FIELD(sb, st->sregs);
	STATE_FIELD(sb, st->xcrs);
	STATE_FIELD(sb, st->debugregs);
	STATE_FIELD(sb, st->lapic);
	STATE_FIELD(sb, st->mp_state);
	STATE_FIELD(sb, st->events);
	STATE_FIELD(sb, st->tsc_khz);
	STATE_FIELD(sb, st->xsave_size);
	STATE_FIELD(sb, st->nmsrs);
	STATE_FIELD(sb, st->ncpuid);
	if (!sb->err && (st->xsave_size > X86_XSAVE_MAX || st->nmsrs > X86_MAX_MSRS ||
			 st->ncpuid > X86_MAX_CPUID))
		return err_set(EINVAL, "%s: impossible sizes", sb->what);
	state_buf_field(sb, st->xsave, st->xsave_size);
	state_buf_field(sb, st->msrs, st->nmsrs * sizeof(st->msrs[0]));
	state_buf_field(sb, st->cpuid, st->ncpuid * sizeof(st->cpuid[0]));
	return state_buf_finish(sb);
}

static int device_fields(struct device *d, struct state_buf *sb)
{
	char name[DEVICE_NAME_LEN] = {0};
	snprintf(name, sizeof(name), "%s", d->ops->name);
	char saved[DEVICE_NAME_LEN];
	memcpy(saved, name, sizeof(saved));
	STATE_FIELD(sb, saved);
	if (sb->restoring && !sb->err && memcmp(saved, name, sizeof(name)))
		return err_set(EINVAL, "%s: state of a '%.*s' device for a '%s' device", sb->what,
			       DEVICE_NAME_LEN, saved, name);
	int r = d->ops->snapshot(d->priv, sb);
	return r < 0 ? r : state_buf_finish(sb);
}

static int save_buf(struct state_writer *w, uint32_t tag, uint16_t inst, struct state_buf *sb,
		    int r)
{
	if (r == 0)
		r = state_writer_add(w, tag, 1, inst, sb->p, sb->off);
	state_buf_release(sb);
	return r;
}

static int snapshot_write_state(struct vm *vm, const struct vm_config *cfg, const char *path,
				const struct mem_image_info *mi, uint64_t *bytes)
{
	struct state_writer *w;
	int r = state_writer_open(path, &w);
	if (r < 0)
		return r;
	char *config = json_dumps(vm_config_to_json(cfg), JSON_COMPACT | JSON_SORT_KEYS);
	r = config ? state_writer_add(w, SNAP_TAG_CONFIG, 1, 0, config, strlen(config))
		   : err_set(ENOMEM, "configuration");
	*bytes = config ? strlen(config) : 0;
	free(config);

	struct x86_vm_state vs;
	if (r == 0 && (r = x86_vm_save(vm, &vs)) == 0)
		r = state_writer_add(w, SNAP_TAG_VM, 1, 0, &vs, sizeof(vs));
	for (int i = 0; r == 0 && i < vm->ncpus; i++) {
		static __thread struct x86_vcpu_state st; /* 30 KiB: not on the stack */
		char what[32];
		snprintf(what, sizeof(what), "vCPU %d", i);
		if ((r = x86_vcpu_save(vm->vcpus[i], &st)) < 0)
			break;
		struct state_buf sb;
		state_buf_init_save(&sb, what);
		r = save_buf(w, SNAP_TAG_VCPU, (uint16_t)i, &sb, vcpu_state_fields(&st, &sb));
	}
	uint16_t n = 0;
	for (struct device *d = vm->devices; r == 0 && d; d = d->next, n++) {
		if (!d->ops->snapshot)
			continue;
		struct state_buf sb;
		state_buf_init_save(&sb, d->ops->name);
		r = save_buf(w, SNAP_TAG_DEVICE, n, &sb, device_fields(d, &sb));
	}
	struct snap_memory_record mr = {mi->size, mi->digest, mi->data_bytes};
	if (r == 0)
		r = state_writer_add(w, SNAP_TAG_MEMORY, 1, 0, &mr, sizeof(mr));
	if (r < 0) {
		state_writer_abort(w);
		return r;
	}
	return state_writer_commit(w);
}

int vm_snapshot_save(struct vm *vm, const struct vm_config *cfg, const char *dir,
		     struct vm_snapshot_stats *stats)
{
	char mem[PATH_MAX], state[PATH_MAX];
	struct mem_image_info mi;
	int r;
	if ((r = path_join(mem, sizeof(mem), dir, SNAP_MEMORY_FILE)) < 0 ||
	    (r = path_join(state, sizeof(state), dir, SNAP_STATE_FILE)) < 0)
		return r;
	r = mem_image_save(mem, vm->ram, vm->ram_size, NULL, NULL, &mi);
	if (r < 0)
		return r;
	uint64_t cfg_bytes = 0;
	if ((r = snapshot_write_state(vm, cfg, state, &mi, &cfg_bytes)) < 0)
		return r;
	if (stats) {
		stats->memory_bytes = mi.data_bytes;
		stats->state_bytes = cfg_bytes;
	}
	return 0;
}

int vm_snapshot_open(const char *dir, struct state_reader **out, struct vm_config *cfg)
{
	char path[PATH_MAX];
	struct state_reader *r;
	int ret = path_join(path, sizeof(path), dir, SNAP_STATE_FILE);
	if (ret == 0)
		ret = state_reader_open(path, snap_tags, sizeof(snap_tags) / sizeof(snap_tags[0]), &r);
	if (ret < 0)
		return ret;
	const void *data;
	size_t len;
	uint16_t ver;
	if (state_reader_get(r, SNAP_TAG_CONFIG, 0, &data, &len, &ver) < 0) {
		state_reader_close(r);
		return err_set(EINVAL, "%s: no machine configuration record", path);
	}
	json_error_t e;
	json_t *j = json_loadb(data, len, 0, &e);
	if (!j) {
		state_reader_close(r);
		return err_set(EINVAL, "%s: configuration is not JSON: %s", path, e.text);
	}
	ret = vm_config_from_json(j, path, cfg);
	json_decref(j);
	if (ret < 0) {
		state_reader_close(r);
		return ret;
	}
	*out = r;
	return 0;
}

int vm_snapshot_check_memory(const char *dir, struct state_reader *r, uint64_t mem_size,
			     int verify)
{
	char path[PATH_MAX];
	int ret = path_join(path, sizeof(path), dir, SNAP_MEMORY_FILE);
	if (ret < 0)
		return ret;
	const void *data;
	size_t len;
	uint16_t ver;
	struct snap_memory_record mr;
	if (state_reader_get(r, SNAP_TAG_MEMORY, 0, &data, &len, &ver) < 0 || len != sizeof(mr))
		return err_set(EINVAL, "%s/%s: no valid memory record", dir, SNAP_STATE_FILE);
	memcpy(&mr, data, sizeof(mr));
	struct mem_image_info mi;
	ret = mem_image_info(path, mem_size, &mi);
	if (ret < 0)
		return ret;
	if (mr.size != mem_size || mi.digest != mr.digest)
		return err_set(EINVAL, "%s: not the memory image of this snapshot's state "
				       "(digest %016llx, state expects %016llx)",
			       path, (unsigned long long)mi.digest, (unsigned long long)mr.digest);
	return verify ? mem_image_verify(path, mem_size, NULL, NULL) : 0;
}

int vm_snapshot_restore(struct vm *vm, struct state_reader *r)
{
	const void *data;
	size_t len;
	uint16_t ver;
	struct x86_vm_state vs;
	if (state_reader_get(r, SNAP_TAG_VM, 0, &data, &len, &ver) < 0 || len != sizeof(vs))
		return err_set(EINVAL, "snapshot has no valid VM record");
	memcpy(&vs, data, sizeof(vs));
	/* VM-wide state before any vCPU state, the clock last of it. */
	int ret = x86_vm_restore(vm, &vs);
	if (ret < 0)
		return ret;
	uint16_t n = 0;
	for (struct device *d = vm->devices; d; d = d->next, n++) {
		if (!d->ops->snapshot)
			continue;
		if (state_reader_get(r, SNAP_TAG_DEVICE, n, &data, &len, &ver) < 0)
			return err_set(EINVAL, "snapshot has no state for device %u (%s)", n,
				       d->ops->name);
		struct state_buf sb;
		state_buf_init_restore(&sb, data, len, d->ops->name);
		if ((ret = device_fields(d, &sb)) < 0)
			return err_prefix(ret, "restoring device %s", d->ops->name);
	}
	if ((int)state_reader_count(r, SNAP_TAG_VCPU) != vm->ncpus)
		return err_set(EINVAL, "snapshot has %u vCPUs, the VM %d",
			       state_reader_count(r, SNAP_TAG_VCPU), vm->ncpus);
	for (int i = 0; i < vm->ncpus; i++) {
		static __thread struct x86_vcpu_state st;
		char what[32];
		snprintf(what, sizeof(what), "vCPU %d", i);
		if (state_reader_get(r, SNAP_TAG_VCPU, (uint16_t)i, &data, &len, &ver) < 0)
			return err_set(EINVAL, "snapshot has no state for vCPU %d", i);
		struct state_buf sb;
		state_buf_init_restore(&sb, data, len, what);
		if ((ret = vcpu_state_fields(&st, &sb)) < 0 ||
		    (ret = x86_vcpu_restore(vm->vcpus[i], &st)) < 0)
			return ret;
	}
	return 0;
}
