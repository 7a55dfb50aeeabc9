/* The hardware configuration of a VM: what `cairn run` was asked for. */
#ifndef CAIRN_VMM_CONFIG_H
#define CAIRN_VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define VM_MAX_DISKS 16

struct disk_config {
	char *path;
	char *format; /* NULL: detect */
	bool readonly;
	char *serial; /* virtio-blk GET_ID; NULL: "cairn-vdX" */
};

struct vm_config {
	uint64_t mem_size;
	int ncpus;
	char *kernel;
	char *initrd;
	char *cmdline;
	struct disk_config disks[VM_MAX_DISKS];
	int ndisks;
	bool pvm_quirks; /* --no-pvm-quirks clears it */
	int console_in, console_out; /* file descriptors of the serial console */
};

#endif
