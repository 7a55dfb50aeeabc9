/* The i8042 keyboard controller, as far as guests use it to reset the
 * machine (Linux reboot=k): command 0xfe on port 0x64 ends the VM. */
#ifndef CAIRN_DEVICES_I8042_H
#define CAIRN_DEVICES_I8042_H

struct vm;
struct devices_config;

int i8042_init(struct vm *vm, const struct devices_config *cfg);

#endif
