/* The hardware configuration of a VM: what `cairn run` was asked for.
 * Its strings are malloc'd and belong to the struct: vm_config_copy and
 * vm_config_free (config.c) are the only places that allocate and free
 * them. */
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
	uint64_t size; /* in a snapshot: the disk's virtual size then; 0: not known */
};

struct vm_config {
	uint64_t mem_size;
	int ncpus;
	char *kernel;
	char *initrd;
	char *cmdline;
	struct disk_config disks[VM_MAX_DISKS];
	int ndisks;
	bool pvm_quirks;	     /* --no-pvm-quirks clears it */
	int console_in, console_out; /* file descriptors of the serial console */
};

/* Deep copy of SRC into DST (free with vm_config_free). */
int vm_config_copy(struct vm_config *dst, const struct vm_config *src);
/* Free CFG's strings and zero it. */
void vm_config_free(struct vm_config *cfg);

#endif
