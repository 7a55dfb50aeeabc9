/* The snapshot manager's operations on VM bundles (docs/manager.md):
 * create, run, stop, snapshot create/revert/delete, clone, check, destroy.
 * Each returns 0 or -errno with the message set (err_msg()); those that
 * report fill a JSON object the front end prints. */
#ifndef CAIRN_MANAGER_OPS_H
#define CAIRN_MANAGER_OPS_H

#include "disk/chain.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Progress of long work, supplied by the front end: the manager prints
 * nothing.  Every member may be NULL, and so may a struct mgr_progress
 * pointer. */
struct mgr_progress {
	struct chain_progress copy; /* conversions, merges, full clones */
	/* A running VM's whole-machine snapshot: WRITTEN bytes of its memory
	 * image are on disk so far (sparse: zero pages take no room, so it
	 * stays below RAM).  Every 250 ms from the first second on. */
	void (*memory)(void *opaque, uint64_t written, uint64_t ram);
	void (*memory_end)(void *opaque); /* after the last memory call, if any */
	void *opaque;
};

struct mgr_create_opts {
	const char *kernel, *initrd, *cmdline;
	const char *disk;   /* imported as the bottom layer (qcow2 copied, raw converted) */
	bool reference;	    /* DISK stays where it is, read-only, under the first layer */
	uint64_t disk_size; /* or a new empty disk of this size */
	uint64_t mem_size;
	int ncpus;
	/* NIC backends (net/net.h specs), one NIC each; none given: one
	 * "user" NIC; a single "none": no NIC. */
	const char *const *nets;
	int nnets;
	const struct mgr_progress *progress;
};

int mgr_create(const char *name, const struct mgr_create_opts *o, json_t *report);
int mgr_destroy(const char *name);
/* vm.json plus the running state and disk usage. */
int mgr_info(const char *name, json_t **out);
/* Bundles in DIR: an array of {name, path, state, snapshots, current}. */
int mgr_list(const char *dir, json_t **out);

/* Boot (or resume) the bundle's VM in this process.  DETACH: console to
 * NAME/console.log and return in the parent once the VM runs (the child
 * runs the VM).  Returns the VM's exit status or -errno. */
int mgr_run(const char *name, bool detach);
int mgr_stop(const char *name, bool save, const struct mgr_progress *pr, json_t *report);

/* mgr_snapshot_create's flags */
enum {
	MGR_SNAP_DISK_ONLY = 1, /* a running VM's memory is not kept */
	MGR_SNAP_FULL = 2,	/* a running VM's memory image is full, not a layer */
};
int mgr_snapshot_create(const char *name, const char *snap, unsigned flags, const char *desc,
			const struct mgr_progress *pr, json_t *report);
int mgr_snapshot_revert(const char *name, const char *snap, const char *save_current,
			const struct mgr_progress *pr, json_t *report);
int mgr_snapshot_delete(const char *name, const char *snap, const struct mgr_progress *pr,
			json_t *report);
/* The tree: {"snapshots":[{name,id,parent,created,memory,own_bytes,
 * shared_bytes,current,description,depth}], "state":..., "current":...}. */
int mgr_snapshot_list(const char *name, json_t **out);

struct mgr_clone_opts {
	bool full; /* copy the disk layers (default: linked, on SNAP's frozen layers) */
	bool boot; /* boot afresh even when SNAP has memory (default: resume it) */
	/* The clone's NIC backends, one per NIC of the origin's configuration
	 * (or one "none" for all); NULL: the origin's, refused for a TAP. */
	const char *const *nets;
	int nnets;
};
int mgr_clone(const char *name, const char *snap, const char *newname,
	      const struct mgr_clone_opts *o, const struct mgr_progress *pr, json_t *report);
/* Problems found are listed in report's "problems"; with REPAIR, what was
 * fixed in "repaired".  Returns 0 when the bundle is (now) consistent,
 * -EUCLEAN (message set) when problems remain. */
int mgr_check(const char *name, bool repair, const struct mgr_progress *pr, json_t *report);

#endif
