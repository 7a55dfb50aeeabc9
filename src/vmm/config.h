/* The hardware configuration of a VM: what `cairn run` was asked for.
 * Its strings are malloc'd and belong to the struct: vm_config_copy and
 * vm_config_free (config.c) are the only places that allocate and free
 * them. */
#ifndef CAIRN_VMM_CONFIG_H
#define CAIRN_VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define VM_MAX_DISKS 16
#define VM_MAX_NICS 8

/* A NIC: hardware (the MAC, in a snapshot's configuration) and the backend
 * it is attached to now (net/net.h's spec; a restore may change it). */
struct nic_config {
	uint8_t mac[6];
	char *backend;
	/* The first virtio-net model (no control queue: a snapshot's NIC from
	 * before "model" 2 in the configuration); new NICs are model 2. */
	bool legacy;
};

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
	struct nic_config nics[VM_MAX_NICS];
	int nnics;
	bool pvm_quirks;	     /* --no-pvm-quirks clears it */
	/* Identity devices, present unless these are set (`--rng none`; a
	 * snapshot's configuration from before they existed sets both, so its
	 * machine is rebuilt as it was). */
	bool no_rng, no_vmgenid;
	int console_in, console_out; /* file descriptors of the serial console */
};

/* Deep copy of SRC into DST (free with vm_config_free). */
int vm_config_copy(struct vm_config *dst, const struct vm_config *src);
/* CFG's NICs become one per spec of NETS (N of them, each checked by
 * net_spec_parse; a single "none": no NIC), each with its spec's mac= or
 * DEFAULT_MAC(I, MAC) for the Ith.  -EINVAL, message set, for a bad spec
 * or "none" beside another. */
int vm_config_set_nics(struct vm_config *cfg, const char *const *nets, int n,
		       void (*default_mac)(int i, uint8_t mac[6]));
/* NIC I of CFG is attached to SPEC from now on. */
int vm_config_set_nic_backend(struct vm_config *cfg, int i, const char *spec);
/* Free CFG's strings and zero it. */
void vm_config_free(struct vm_config *cfg);

#endif
