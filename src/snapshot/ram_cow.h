/* A copy-on-write view of guest RAM for a snapshot taken while the VM runs
 * on, without fork(): userfaultfd write-protects RAM.  After the pause the
 * first write to a 2 MiB chunk that is not on disk yet stops in a fault
 * thread, which copies the chunk out and lifts the protection of that
 * chunk; the writer reads each chunk from that copy or from RAM still
 * protected, and lifts the protection once the chunk is written.
 *
 * All of RAM is protected before the pause, while the VM still runs: a
 * write then only lifts its chunk's protection, and the pause protects
 * again just the chunks written since.  Protecting 2 GiB took 0.3-0.45 ms
 * here, most of what was left of the pause.
 *
 * Why not fork(): it gave the same view with page tables, but copying them
 * was most of the pause (1-1.7 ms for 2 GiB: a page-table page is
 * allocated for each huge page).  Write-protecting is one pass over the
 * same entries, in place. */
#ifndef CAIRN_SNAPSHOT_RAM_COW_H
#define CAIRN_SNAPSHOT_RAM_COW_H

#include "snapshot/mem_image.h"

#include <stdint.h>

struct ram_cow;

/* Register RAM (SIZE bytes, 2 MiB-aligned) with a new userfaultfd, start
 * the fault thread and write-protect all of RAM (never-touched pages too);
 * runs while the VM does, whose writes from now on each lift their chunk's
 * protection.  -ENOTSUP (message set) where the kernel or the process's
 * rights do not allow it: the caller uses fork() instead. */
int ram_cow_open(void *ram, uint64_t size, struct ram_cow **out);
/* With the VM paused: protect again the chunks written since
 * ram_cow_open; from here on a write to a chunk copies it first.  Returns
 * how many chunks it protected again, or a negative errno. */
int ram_cow_protect(struct ram_cow *w);
/* Chunks [FIRST, FIRST+N) are not needed by the writer (a memory layer
 * without changed pages there): lift their protection now, in one call per
 * run, rather than when the writer reaches them. */
int ram_cow_skip(struct ram_cow *w, uint64_t first, uint64_t n);
/* Chunk C as it was at ram_cow_protect, to read before the save does
 * (the writer's thread): it stays as it is (protected, or the fault
 * thread's copy) and a write to it waits until ram_cow_unpeek.  NULL when
 * the chunk is not held any more (skipped, written) or was lost. */
const void *ram_cow_peek(struct ram_cow *w, uint64_t c);
void ram_cow_unpeek(struct ram_cow *w, uint64_t c);
/* The chunks as they were at ram_cow_protect, for mem_image_save_from. */
const struct mem_image_source *ram_cow_source(struct ram_cow *w);
/* Chunks the fault thread had to copy (guest writes before the writer). */
uint64_t ram_cow_copied(const struct ram_cow *w);
/* Lift all protection, stop the fault thread, unregister and free.  Any
 * time after ram_cow_open; NULL is ignored. */
void ram_cow_close(struct ram_cow *w);

#endif
