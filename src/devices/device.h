/* What every device provides to the VM: a name and its life-cycle ops.
 * I/O handlers are registered on the buses by the device itself; the VM
 * core and the snapshot code only walk the device list. */
#ifndef CAIRN_DEVICES_DEVICE_H
#define CAIRN_DEVICES_DEVICE_H

struct vm;
struct vm_config;

struct device_ops {
	const char *name;
	void (*destroy)(void *priv);
};

struct device {
	const struct device_ops *ops;
	void *priv;
	struct device *next;
};

/* Append a device to VM's list (devices are destroyed in reverse order). */
int device_add(struct vm *vm, const struct device_ops *ops, void *priv);
/* Create every device CFG asks for, in the order of the init list. */
int devices_init(struct vm *vm, const struct vm_config *cfg);
void devices_destroy(struct vm *vm);

#endif
