/* The generation ID lives at VMGENID_ADDR (a page of the reserved legacy
 * area, so part of every snapshot's memory); a change is signalled by an
 * edge on VMGENID_GSI, which the DSDT's GED turns into Notify(VGEN, 0x80).
 * The device's saved state is where those two are, so a snapshot keeps
 * working if a later cairn moves them. */
#include "devices/vmgenid.h"
#include "arch/x86/layout.h"
#include "devices/device.h"
#include "kvm/dirty.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct vmgenid {
	struct vm *vm;
	uint64_t gpa;
	uint32_t gsi;
	uint64_t changes; /* new IDs since this process started */
};

static int vmgenid_new_id(struct vmgenid *g)
{
	uint8_t id[VMGENID_LEN];
	/* 16 bytes never block once the host's pool is initialised (the VMM
	 * runs long after boot); flags 0 so an ID is never weak. */
	if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
		return err_set(errno ? errno : EIO, "vmgenid: getrandom");
	uint8_t *p = vm_gpa_to_hva(g->vm, g->gpa, VMGENID_LEN);
	if (!p)
		return err_set(EINVAL, "vmgenid: %#llx is outside guest RAM",
			       (unsigned long long)g->gpa);
	memcpy(p, id, sizeof(id));
	vm_dirty_mark(g->vm, p, VMGENID_LEN);
	g->changes++;
	log_debug("vmgenid: new generation ID %02x%02x%02x%02x... at %#llx", id[0], id[1], id[2],
		  id[3], (unsigned long long)g->gpa);
	return 0;
}

/* After a restore (memory and state in place, vCPUs not running): a new
 * ID, then the edge the guest's GED waits for (a masked or unprogrammed
 * pin drops it: a guest without the driver sees only the bytes). */
static void vmgenid_restored(void *priv)
{
	struct vmgenid *g = priv;
	if (vmgenid_new_id(g) < 0) {
		log_error("%s", err_msg());
		return;
	}
	if (vm_irq_line(g->vm, g->gsi, 1) < 0 || vm_irq_line(g->vm, g->gsi, 0) < 0)
		log_warn("vmgenid: the notification on GSI %u failed", g->gsi);
}

static int vmgenid_snapshot(void *priv, struct state_buf *sb)
{
	struct vmgenid *g = priv;
	uint64_t gpa = g->gpa;
	uint32_t gsi = g->gsi, pad = 0;
	STATE_FIELD(sb, gpa);
	STATE_FIELD(sb, gsi);
	STATE_FIELD(sb, pad);
	if (!sb->restoring || sb->err)
		return sb->err;
	if (gsi >= IOAPIC_NUM_PINS || pad || !vm_gpa_to_hva(g->vm, gpa, VMGENID_LEN))
		return err_set(EINVAL, "vmgenid: ID at %#llx, GSI %u: not in this machine",
			       (unsigned long long)gpa, gsi);
	g->gpa = gpa;
	g->gsi = gsi;
	return 0;
}

static void vmgenid_destroy(void *priv)
{
	free(priv);
}

static const struct device_ops vmgenid_device_ops = {
    .name = "vmgenid",
    .snapshot = vmgenid_snapshot,
    .restored = vmgenid_restored,
    .destroy = vmgenid_destroy,
};

int vmgenid_init(struct vm *vm, const struct devices_config *cfg)
{
	if (!cfg->vmgenid)
		return 0;
	struct vmgenid *g = calloc(1, sizeof(*g));
	if (!g)
		return err_set(ENOMEM, "vmgenid");
	*g = (struct vmgenid){.vm = vm, .gpa = VMGENID_ADDR, .gsi = VMGENID_GSI};
	/* A booting machine gets its first ID now; a restore overwrites it
	 * with the snapshot's memory and then makes a new one. */
	int r = vmgenid_new_id(g);
	if (r == 0)
		r = device_add(vm, &vmgenid_device_ops, g);
	if (r < 0)
		free(g);
	return r;
}
