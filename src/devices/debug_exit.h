/* Debug-exit port 0x501: a byte written there ends the VM, and `cairn run`
 * exits with that byte as its status (for tests; see docs/devices.md). */
#ifndef CAIRN_DEVICES_DEBUG_EXIT_H
#define CAIRN_DEVICES_DEBUG_EXIT_H

struct vm;
struct devices_config;

int debug_exit_init(struct vm *vm, const struct devices_config *cfg);

#endif
