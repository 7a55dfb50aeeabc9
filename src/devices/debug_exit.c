#include "devices/debug_exit.h"
#include "arch/x86/layout.h"
#include "devices/device.h"
#include "kvm/vm.h"
#include "util/err.h"

#include <stdio.h>

static void debug_exit_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct vm *vm = opaque;
	(void)off;
	(void)len;
	uint8_t code = *(const uint8_t *)data;
	char msg[64];
	snprintf(msg, sizeof(msg), "guest wrote %u to the debug-exit port", code);
	vm_request_exit(vm, VM_EXIT_DEBUG, code, msg);
}

static const struct io_ops debug_exit_io = {NULL, debug_exit_write};
static const struct device_ops debug_exit_ops = {.name = "debug-exit"};

int debug_exit_init(struct vm *vm, const struct devices_config *cfg)
{
	(void)cfg;
	int r = iobus_register(&vm->pio, DEBUG_EXIT_PORT, 1, &debug_exit_io, vm);
	if (r < 0)
		return err_set(-r, "debug-exit port");
	return device_add(vm, &debug_exit_ops, NULL);
}
