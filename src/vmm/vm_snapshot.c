#include "vmm/vm_snapshot.h"
#include "arch/x86/vcpu_state.h"
#include "devices/device.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "snapshot/mem_chain.h"
#include "snapshot/mem_image.h"
#include "snapshot/snapdir.h"
#include "snapshot/state_buf.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "util/log.h"
#include "vmm/config_json.h"
#include "vmm/vm_records.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct capture_record {
	uint32_t tag;
	uint16_t version;
	uint16_t instance;
	void *data;
	size_t len;
};

struct vm_snapshot_capture {
	struct capture_record *rec;
	unsigned n, cap;
};

/* Takes DATA (malloc'd) over, even on failure. */
static int capture_add(struct vm_snapshot_capture *c, uint32_t tag, uint16_t inst, void *data,
		       size_t len)
{
	if (c->n == c->cap) {
		unsigned cap = c->cap ? 2 * c->cap : 16;
		struct capture_record *r = realloc(c->rec, cap * sizeof(*r));
		if (!r) {
			free(data);
			return err_set(ENOMEM, "snapshot state");
		}
		c->rec = r;
		c->cap = cap;
	}
	c->rec[c->n++] = (struct capture_record){tag, 1, inst, data, len};
	return 0;
}

/* A state_buf's buffer becomes the record (no copy). */
static int capture_buf(struct vm_snapshot_capture *c, uint32_t tag, uint16_t inst,
		       struct state_buf *sb, int r)
{
	if (r < 0) {
		state_buf_release(sb);
		return r;
	}
	return capture_add(c, tag, inst, sb->p, sb->off);
}

void vm_snapshot_capture_free(struct vm_snapshot_capture *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n; i++)
		free(c->rec[i].data);
	free(c->rec);
	free(c);
}

int vm_snapshot_capture(struct vm *vm, const struct vm_config *cfg,
			struct vm_snapshot_capture **out)
{
	struct vm_snapshot_capture *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(ENOMEM, "snapshot state");
	json_t *j = vm_config_to_json(cfg);
	char *config = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	int r = config ? capture_add(c, VM_RECORD_CONFIG, 0, config, strlen(config))
		       : err_set(ENOMEM, "configuration");
	/* Version 2 has NICs; 3 NICs of model 2 (a control queue, so another
	 * device record) or the identity devices (virtio-rng, VM generation
	 * ID): a cairn that does not know them must refuse the snapshot rather
	 * than restore a machine without them. */
	bool model2 = false;
	for (int i = 0; i < cfg->nnics; i++)
		model2 |= !cfg->nics[i].legacy;
	if (r == 0 && cfg->nnics)
		c->rec[c->n - 1].version = 2;
	if (r == 0 && (model2 || !(cfg->no_rng && cfg->no_vmgenid)))
		c->rec[c->n - 1].version = 3;
	struct x86_vm_state vs;
	if (r == 0 && (r = x86_vm_save(vm, &vs)) == 0) {
		struct state_buf sb;
		state_buf_init_save(&sb, "VM");
		r = capture_buf(c, VM_RECORD_VM, 0, &sb, x86_vm_state_fields(&vs, &sb));
	}
	uint64_t tsc0 = 0;
	for (int i = 0; r == 0 && i < vm->ncpus; i++) {
		static __thread struct x86_vcpu_state st; /* 30 KiB: not on the stack */
		char what[32];
		snprintf(what, sizeof(what), "vCPU %d", i);
		if ((r = x86_vcpu_save(vm->vcpus[i], &st)) < 0)
			break;
		/* One TSC for all vCPUs (docs/snapshots.md): they
		 * stopped at one instant and their TSCs run in step, but each is
		 * read a little later than the one before.  Restored with one
		 * value, KVM gives all of them one offset. */
		if (i == 0)
			tsc0 = x86_vcpu_state_tsc(&st);
		else if (tsc0)
			x86_vcpu_state_set_tsc(&st, tsc0);
		struct state_buf sb;
		state_buf_init_save(&sb, what);
		r = capture_buf(c, VM_RECORD_VCPU, (uint16_t)i, &sb,
				x86_vcpu_state_fields(&st, &sb));
	}
	uint16_t n = 0;
	for (struct device *d = vm->devices; r == 0 && d; d = d->next, n++) {
		if (!d->ops->snapshot)
			continue;
		struct state_buf sb;
		state_buf_init_save(&sb, d->ops->name);
		r = capture_buf(c, VM_RECORD_DEVICE, n, &sb, vm_record_device(d, &sb));
	}
	if (r < 0) {
		vm_snapshot_capture_free(c);
		return r;
	}
	*out = c;
	return 0;
}

/* RAM that does not change while it is written, as a memory image source. */
static const void *ram_chunk(void *opaque, uint64_t c)
{
	return (const uint8_t *)opaque + c * MEM_IMAGE_CHUNK_SIZE;
}

static void ram_chunk_done(void *opaque, uint64_t c)
{
}

int vm_snapshot_write(const struct vm_snapshot_capture *c, const void *ram,
		      const struct mem_image_source *src, uint64_t ram_size,
		      const struct mem_image_layer_spec *layer, const char *dir,
		      struct vm_snapshot_stats *stats)
{
	char mem[PATH_MAX], state[PATH_MAX];
	struct mem_image_info mi;
	struct mem_image_source ram_src = {ram_chunk, ram_chunk_done, (void *)ram};
	int r;
	if ((r = snapdir_path(dir, SNAPDIR_MEMORY, mem, sizeof(mem))) < 0 ||
	    (r = snapdir_path(dir, SNAPDIR_STATE, state, sizeof(state))) < 0 ||
	    (r = mem_image_save_as(mem, src ? src : &ram_src, ram_size, layer, NULL, NULL, NULL,
				   &mi)) < 0)
		return r;
	struct state_writer *w;
	if ((r = state_writer_open(state, &w)) < 0)
		return r;
	uint64_t bytes = 0;
	for (unsigned i = 0; r == 0 && i < c->n; i++) {
		r = state_writer_add(w, c->rec[i].tag, c->rec[i].version, c->rec[i].instance, c->rec[i].data,
				     c->rec[i].len);
		bytes += c->rec[i].len;
	}
	struct vm_memory_record mr = {.version = 2, .size = mi.size, .data_bytes = mi.data_bytes};
	memcpy(mr.id, mi.id.b, sizeof(mr.id));
	uint8_t payload[VM_MEMORY_RECORD_LEN];
	vm_record_memory_payload(&mr, payload, sizeof(payload));
	if (r == 0)
		r = state_writer_add(w, VM_RECORD_MEMORY, 2, 0, payload, sizeof(payload));
	if (r < 0) {
		state_writer_abort(w);
		return r;
	}
	if ((r = state_writer_commit(w)) < 0)
		return r;
	if (stats) {
		stats->memory_bytes = mi.data_bytes;
		stats->state_bytes = bytes;
		stats->memory_id = mi.id;
		stats->memory_depth = mi.depth;
	}
	return 0;
}

int vm_snapshot_open(const char *dir, struct state_reader **out, struct vm_config *cfg)
{
	char path[PATH_MAX];
	struct state_reader *r;
	int ret = snapdir_path(dir, SNAPDIR_STATE, path, sizeof(path));
	if (ret == 0)
		ret = state_reader_open(path, vm_record_tags, vm_record_ntags, &r);
	if (ret < 0)
		return ret;
	if ((ret = vm_record_config(r, cfg)) < 0) {
		state_reader_close(r);
		return ret;
	}
	*out = r;
	return 0;
}

int vm_snapshot_open_memory(const char *dir, struct state_reader *r, uint64_t mem_size,
			    int verify, struct mem_chain **out)
{
	char path[PATH_MAX];
	char state[PATH_MAX];
	int ret = snapdir_path(dir, SNAPDIR_MEMORY, path, sizeof(path));
	if (ret < 0 || (ret = snapdir_path(dir, SNAPDIR_STATE, state, sizeof(state))) < 0)
		return ret;
	struct vm_memory_record mr;
	if ((ret = vm_record_memory(r, &mr)) < 0)
		return ret;
	uint64_t size = mr.size;
	if (size != mem_size)
		return err_set(EINVAL,
			       "%s: the state records %llu bytes of memory, the machine has %llu",
			       state, (unsigned long long)size, (unsigned long long)mem_size);
	struct mem_chain *c;
	if ((ret = mem_chain_open(path, mem_size, &c)) < 0)
		return ret;
	const struct mem_image_info *mi = mem_layer_info(mem_chain_layer(c, 0));
	if (mr.version == 1 && mi->digest != mr.digest)
		ret = err_set(EINVAL,
			      "%s: not the memory image of this snapshot's state "
			      "(digest %016llx, the state expects %016llx)",
			      path, (unsigned long long)mi->digest, (unsigned long long)mr.digest);
	if (mr.version != 1 && memcmp(mi->id.b, mr.id, sizeof(mr.id)) != 0) {
		char a[33], b[33];
		struct mem_id want;
		memcpy(want.b, mr.id, sizeof(want.b));
		mem_id_format(&mi->id, a);
		mem_id_format(&want, b);
		ret = err_set(EINVAL,
			      "%s: not the memory image of this snapshot's state (memory %s, the "
			      "state expects %s)",
			      path, a, b);
	}
	if (ret == 0 && verify)
		ret = mem_chain_verify(c, NULL, NULL);
	if (ret < 0) {
		mem_chain_close(c);
		return ret;
	}
	*out = c;
	return 0;
}

int vm_snapshot_check_memory(const char *dir, struct state_reader *r, uint64_t mem_size, int verify)
{
	struct mem_chain *c;
	int ret = vm_snapshot_open_memory(dir, r, mem_size, verify, &c);
	if (ret == 0)
		mem_chain_close(c);
	return ret;
}

/* Where a restore takes its records from: a state file, or a capture of a
 * machine in memory (to put back what a failed revert had changed). */
struct record_source {
	struct state_reader *file;
	const struct vm_snapshot_capture *capture;
};

static int source_get(const struct record_source *src, uint32_t tag, uint16_t inst,
		      const void **data, size_t *len)
{
	if (src->file) {
		uint16_t ver;
		return state_reader_get(src->file, tag, inst, data, len, &ver);
	}
	for (unsigned i = 0; i < src->capture->n; i++) {
		const struct capture_record *c = &src->capture->rec[i];
		if (c->tag == tag && c->instance == inst) {
			*data = c->data;
			*len = c->len;
			return 0;
		}
	}
	return -ENOENT;
}

static unsigned source_count(const struct record_source *src, uint32_t tag)
{
	if (src->file)
		return state_reader_count(src->file, tag);
	unsigned n = 0;
	for (unsigned i = 0; i < src->capture->n; i++)
		n += src->capture->rec[i].tag == tag;
	return n;
}

/* vCPU I's record parsed into ST (no KVM call). */
static int source_vcpu(const struct record_source *src, int i, struct x86_vcpu_state *st)
{
	const void *data;
	size_t len;
	if (source_get(src, VM_RECORD_VCPU, (uint16_t)i, &data, &len) < 0)
		return err_set(EINVAL, "snapshot has no state for vCPU %d", i);
	return vm_record_vcpu(data, len, i, st);
}

static int source_vm(const struct record_source *src, struct x86_vm_state *vs)
{
	const void *data;
	size_t len;
	if (source_get(src, VM_RECORD_VM, 0, &data, &len) < 0)
		return err_set(EINVAL, "snapshot has no valid VM record");
	return vm_record_vm(data, len, vs);
}

/* Each device's record into the device (no KVM call of ours; the devices
 * re-raise their interrupt lines). */
static int restore_devices(struct vm *vm, const struct record_source *src)
{
	uint16_t n = 0;
	for (struct device *d = vm->devices; d; d = d->next, n++) {
		const void *data;
		size_t len;
		if (!d->ops->snapshot)
			continue;
		if (source_get(src, VM_RECORD_DEVICE, n, &data, &len) < 0)
			return err_set(EINVAL, "snapshot has no state for device %u (%s)", n,
				       d->ops->name);
		struct state_buf sb;
		state_buf_init_restore(&sb, data, len, d->ops->name);
		int ret = vm_record_device(d, &sb);
		if (ret < 0)
			return err_prefix(ret, "restoring device %s", d->ops->name);
	}
	return 0;
}

static int restore_from(struct vm *vm, const struct record_source *src)
{
	struct x86_vm_state vs;
	/* VM-wide state before any vCPU state, the clock last of it. */
	int ret = source_vm(src, &vs);
	if (ret < 0 || (ret = x86_vm_restore(vm, &vs)) < 0 || (ret = restore_devices(vm, src)) < 0)
		return ret;
	if ((int)source_count(src, VM_RECORD_VCPU) != vm->ncpus)
		return err_set(EINVAL, "snapshot has %u vCPUs, the VM %d",
			       source_count(src, VM_RECORD_VCPU), vm->ncpus);
	for (int i = 0; i < vm->ncpus; i++) {
		static __thread struct x86_vcpu_state st;
		if ((ret = source_vcpu(src, i, &st)) < 0 ||
		    (ret = x86_vcpu_restore(vm->vcpus[i], &st)) < 0)
			return ret;
	}
	return 0;
}

int vm_snapshot_check_records(struct vm *vm, struct state_reader *r)
{
	const struct record_source src = {.file = r};
	struct x86_vm_state vs;
	int ret = source_vm(&src, &vs);
	if (ret < 0)
		return ret;
	if ((int)source_count(&src, VM_RECORD_VCPU) != vm->ncpus)
		return err_set(EINVAL, "snapshot has %u vCPUs, the VM %d",
			       source_count(&src, VM_RECORD_VCPU), vm->ncpus);
	for (int i = 0; i < vm->ncpus; i++) {
		static __thread struct x86_vcpu_state st;
		if ((ret = source_vcpu(&src, i, &st)) < 0)
			return ret;
	}
	uint16_t n = 0;
	for (struct device *d = vm->devices; d; d = d->next, n++) {
		const void *data;
		size_t len;
		if (d->ops->snapshot && source_get(&src, VM_RECORD_DEVICE, n, &data, &len) < 0)
			return err_set(EINVAL, "snapshot has no state for device %u (%s)", n,
				       d->ops->name);
	}
	return 0;
}

int vm_snapshot_apply(struct vm *vm, struct state_reader *r)
{
	const struct record_source src = {.file = r};
	return restore_from(vm, &src);
}

int vm_snapshot_apply_devices(struct vm *vm, struct state_reader *r)
{
	const struct record_source src = {.file = r};
	return restore_devices(vm, &src);
}

int vm_snapshot_apply_capture(struct vm *vm, const struct vm_snapshot_capture *c)
{
	const struct record_source src = {.capture = c};
	return restore_from(vm, &src);
}

void vm_snapshot_loaded(struct vm *vm)
{
	for (int i = 0; vm->state_loaded && i < vm->ncpus; i++)
		vm->state_loaded(vm->vcpus[i]);
	for (struct device *d = vm->devices; d; d = d->next)
		if (d->ops->restored)
			d->ops->restored(d->priv);
}

int vm_snapshot_restore(struct vm *vm, struct state_reader *r)
{
	int ret = vm_snapshot_apply(vm, r);
	if (ret == 0)
		vm_snapshot_loaded(vm);
	return ret;
}
