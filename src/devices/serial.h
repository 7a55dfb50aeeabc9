/* 16550A UART on COM1 (0x3f8, IRQ 4): the guest's console. */
#ifndef CAIRN_DEVICES_SERIAL_H
#define CAIRN_DEVICES_SERIAL_H

struct vm;
struct devices_config;

/* The console the port is wired to: file descriptors the guest's output
 * goes to and its input comes from (-1: none). */
struct serial_console {
	int in_fd, out_fd;
};

int serial_init(struct vm *vm, const struct devices_config *cfg);

#endif
