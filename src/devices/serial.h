/* 16550A UART on COM1 (0x3f8, IRQ 4): the guest's console. */
#ifndef CAIRN_DEVICES_SERIAL_H
#define CAIRN_DEVICES_SERIAL_H

struct vm;
struct vm_config;

int serial_init(struct vm *vm, const struct vm_config *cfg);

#endif
