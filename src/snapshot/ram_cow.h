/* A copy-on-write view of guest RAM for a snapshot taken while the VM runs
 * on, without fork(): userfaultfd write-protects all of RAM at the pause.
 * The first write to a 2 MiB chunk that is not on disk yet stops in a
 * fault thread, which copies the chunk out and lifts the protection of
 * that chunk; the writer reads each chunk from that copy or from RAM still
 * protected, and lifts the protection once the chunk is written.
 *
 * Why: fork() gave the same view with page tables, but copying them was
 * most of the pause (1-1.7 ms for 2 GiB: a page-table page is allocated
 * for each huge page).  Write-protecting is one pass over the same
 * entries, in place. */
#ifndef CAIRN_SNAPSHOT_RAM_COW_H
#define CAIRN_SNAPSHOT_RAM_COW_H

#include "snapshot/mem_image.h"

#include <stdint.h>

struct ram_cow;

/* Register RAM (SIZE bytes, 2 MiB-aligned) with a new userfaultfd; RAM is
 * not protected yet, so this can run while the VM does.  -ENOTSUP (message
 * set) where the kernel or the process's rights do not allow it: the
 * caller uses fork() instead. */
int ram_cow_open(void *ram, uint64_t size, struct ram_cow **out);
/* With the VM paused: write-protect all of RAM (never-touched pages too)
 * and start the fault thread. */
int ram_cow_protect(struct ram_cow *w);
/* The chunks as they were at ram_cow_protect, for mem_image_save_from. */
const struct mem_image_source *ram_cow_source(struct ram_cow *w);
/* Chunks the fault thread had to copy (guest writes before the writer). */
uint64_t ram_cow_copied(const struct ram_cow *w);
/* Lift all protection, stop the fault thread, unregister and free.  Any
 * time after ram_cow_open; NULL is ignored. */
void ram_cow_close(struct ram_cow *w);

#endif
