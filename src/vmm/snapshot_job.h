/* A whole-machine snapshot of the running VM, from request to commit
 * (docs/snapshots.md): pause, capture vCPU, VM and device state, fix RAM
 * as it is, freeze the disks under new overlays, resume, then write the
 * memory image and state file and commit the snapshot directory, in a
 * writer thread or a forked child while the VM runs on. */
#ifndef CAIRN_VMM_SNAPSHOT_JOB_H
#define CAIRN_VMM_SNAPSHOT_JOB_H

#include "vmm/config.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

struct vmm;

struct snapshot_result {
	char path[PATH_MAX];
	uint64_t pause_us, total_us;
	uint64_t memory_bytes;
	uint32_t memory_depth;	 /* 0: a full memory image; n: a layer n above one */
	/* a layer: pages the dirty log named that it leaves out, their
	 * content being the parent's (read, or written with the same bytes) */
	uint64_t memory_unchanged_pages;
	const char *memory_why;	 /* a full image: why (asked for, no memory parent...) */
	const char *writer;  /* "thread", "fork", or NULL (written in the pause) */
	uint64_t cow_copies; /* thread writer: chunks the guest wrote before it read them */
	/* the overlays the VM continues in, one per disk frozen by the snapshot */
	unsigned noverlays;
	char overlays[VM_MAX_DISKS][PATH_MAX];
};

/* Called once with the outcome: RESULT 0 (RES filled) or -errno with
 * MSG.  May be called before snapshot_job_start returns. */
typedef void (*snapshot_done_fn)(void *opaque, int result, const char *msg,
				 const struct snapshot_result *res);

struct snapshot_opts {
	bool quit;	  /* write it in the pause and end the VM */
	bool full_memory; /* a full memory image even where a layer would do */
	/* The VM's memory parent stays the old one (the snapshot's memory is
	 * dropped afterwards, e.g. a disk-only snapshot): its next snapshot
	 * is still a layer on that one. */
	bool keep_memory_parent;
};

/* Take a snapshot into DIR as O says.
 * Returns -errno (message set; DONE is not called, nothing changed), or 0:
 * DONE is called once, now or when the writer has finished. */
int snapshot_job_start(struct vmm *vmm, const char *dir, const struct snapshot_opts *o,
		       snapshot_done_fn done, void *opaque);
/* The snapshot being written, or NULL. */
const char *snapshot_job_busy(const struct vmm *vmm);
/* Before the VM is torn down: a writer thread reads guest RAM, so wait
 * for it (a forked writer finishes on its own). */
void snapshot_job_finish(struct vmm *vmm);

#endif
