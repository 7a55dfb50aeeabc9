#include "vmm/vm_records.h"
#include "arch/x86/vcpu_state.h"
#include "devices/device.h"
#include "snapshot/state_buf.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/log.h"
#include "vmm/config_json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const struct state_tag vm_record_tags[] = {
    {VM_RECORD_CONFIG, 3, "config"}, {VM_RECORD_VM, 1, "vm"},	      {VM_RECORD_VCPU, 1, "vcpu"},
    {VM_RECORD_DEVICE, 1, "device"}, {VM_RECORD_MEMORY, 2, "memory"},
};
const size_t vm_record_ntags = sizeof(vm_record_tags) / sizeof(vm_record_tags[0]);

int vm_record_config(struct state_reader *r, struct vm_config *cfg)
{
	const char *name = state_reader_name(r);
	const void *data;
	size_t len;
	if (state_reader_get(r, VM_RECORD_CONFIG, 0, &data, &len, NULL) < 0)
		return err_set(EINVAL, "%s: no machine configuration record", name);
	json_error_t e;
	json_t *j = json_loadb(data, len, 0, &e);
	if (!j)
		return err_set(EINVAL, "%s: configuration is not JSON: %s", name, e.text);
	int ret = vm_config_from_json(j, name, cfg);
	json_decref(j);
	return ret;
}

int vm_record_memory(struct state_reader *r, struct vm_memory_record *mr)
{
	const uint8_t *data;
	const void *d;
	size_t len;
	uint16_t ver = 0;
	if (state_reader_get(r, VM_RECORD_MEMORY, 0, &d, &len, &ver) < 0 ||
	    len != (ver == 1 ? 24u : VM_MEMORY_RECORD_LEN))
		return err_set(EINVAL, "%s: no valid memory record", state_reader_name(r));
	data = d;
	*mr = (struct vm_memory_record){.version = ver};
	memcpy(&mr->size, data, 8);
	if (ver == 1) { /* size, digest, data_bytes */
		memcpy(&mr->digest, data + 8, 8);
		memcpy(&mr->data_bytes, data + 16, 8);
	} else { /* size, data_bytes, id */
		memcpy(&mr->data_bytes, data + 8, 8);
		memcpy(mr->id, data + 16, 16);
	}
	return 0;
}

int vm_record_memory_payload(const struct vm_memory_record *mr, void *out, size_t len)
{
	uint8_t *p = out;
	if (len < VM_MEMORY_RECORD_LEN)
		return -EINVAL;
	memcpy(p, &mr->size, 8);
	memcpy(p + 8, &mr->data_bytes, 8);
	memcpy(p + 16, mr->id, 16);
	return VM_MEMORY_RECORD_LEN;
}

int vm_record_vm(const void *data, size_t len, struct x86_vm_state *vs)
{
	struct state_buf sb;
	state_buf_init_restore(&sb, data, len, "VM");
	return x86_vm_state_fields(vs, &sb);
}

int vm_record_vcpu(const void *data, size_t len, int i, struct x86_vcpu_state *st)
{
	char what[32];
	snprintf(what, sizeof(what), "vCPU %d", i);
	struct state_buf sb;
	state_buf_init_restore(&sb, data, len, what);
	return x86_vcpu_state_fields(st, &sb);
}

#define DEVICE_NAME_LEN 32

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

/* A device's snapshot function checks what it restores once the fields
 * are in: so a refused record would leave the device with fields it
 * refused (a receive index past its FIFO...), which its I/O handlers then
 * trust.  Its state is saved first and put back on a refusal. */
int vm_record_device(struct device *d, struct state_buf *sb)
{
	if (!sb->restoring)
		return device_fields(d, sb);
	struct state_buf old;
	state_buf_init_save(&old, sb->what);
	int r = device_fields(d, &old);
	if (r == 0 && (r = device_fields(d, sb)) < 0) {
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", err_msg());
		struct state_buf back;
		state_buf_init_restore(&back, old.p, old.off, sb->what);
		if (device_fields(d, &back) < 0)
			log_error("%s: its own state refused after a refused restore: %s", sb->what,
				  err_msg());
		err_set(0, "%s", msg);
	}
	state_buf_release(&old);
	return r;
}
