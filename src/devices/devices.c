/* The ordered device init list: the only place that names devices. */
#include "devices/device.h"
#include "devices/debug_exit.h"
#include "devices/i8042.h"
#include "devices/pci.h"
#include "devices/serial.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "devices/vmgenid.h"
#include "kvm/vm.h"
#include "util/err.h"

#include <errno.h>
#include <stdlib.h>

typedef int (*device_init_fn)(struct vm *vm, const struct devices_config *cfg);

static const device_init_fn device_inits[] = {
	serial_init,
	i8042_init,
	debug_exit_init,
	pci_init,        /* host bridge; must precede PCI devices */
	virtio_blk_init, /* one per --disk */
	virtio_net_init, /* one per --net */
	virtio_rng_init, /* unless --rng none */
	vmgenid_init,    /* its ACPI device is in the DSDT */
};

int device_add(struct vm *vm, const struct device_ops *ops, void *priv)
{
	struct device *d = calloc(1, sizeof(*d));
	if (!d)
		return err_set(ENOMEM, "device %s", ops->name);
	d->ops = ops;
	d->priv = priv;
	struct device **p = &vm->devices;
	while (*p)
		p = &(*p)->next;
	*p = d;
	return 0;
}

void *device_find(struct vm *vm, const struct device_ops *ops)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (d->ops == ops)
			return d->priv;
	return NULL;
}

int devices_init(struct vm *vm, const struct devices_config *cfg)
{
	for (size_t i = 0; i < sizeof(device_inits) / sizeof(device_inits[0]); i++) {
		int r = device_inits[i](vm, cfg);
		if (r < 0)
			return r;
	}
	return 0;
}

static void devices_destroy_from(struct device *d)
{
	if (!d)
		return;
	devices_destroy_from(d->next);
	if (d->ops->destroy)
		d->ops->destroy(d->priv);
	free(d);
}

void devices_destroy(struct vm *vm)
{
	devices_destroy_from(vm->devices);
	vm->devices = NULL;
}
