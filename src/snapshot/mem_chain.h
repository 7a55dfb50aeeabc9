/* A snapshot's memory as the chain of images it stands on: its own
 * memory.img (a full image, or a layer holding the pages changed since its
 * parent snapshot) and, for a layer, its parent's, down to a full image.
 * Each layer names its parent by a path relative to its own directory and
 * by the parent's id; opening a chain checks every link, so RAM is never
 * assembled from the wrong bytes.  docs/state-format.md has the format. */
#ifndef CAIRN_SNAPSHOT_MEM_CHAIN_H
#define CAIRN_SNAPSHOT_MEM_CHAIN_H

#include "snapshot/mem_image.h"

#include <stdint.h>

struct mem_chain;

/* Open PATH and the images under it for SIZE bytes of RAM.  A missing or
 * replaced parent is refused, naming the layer and the parent. */
int mem_chain_open(const char *path, uint64_t size, struct mem_chain **out);
void mem_chain_close(struct mem_chain *c); /* NULL is ignored */
/* Images in the chain (1 for a full image); layer 0 is PATH's. */
unsigned mem_chain_length(const struct mem_chain *c);
const struct mem_layer *mem_chain_layer(const struct mem_chain *c, unsigned i);
/* Check every chunk of every image. */
int mem_chain_verify(const struct mem_chain *c, mem_image_progress_fn progress, void *opaque);
/* Map the RAM the chain stands for: the full image copy-on-write
 * (MAP_PRIVATE), then each page a layer holds copied in from the newest
 * layer holding it, each layer read in order and every chunk of it checked
 * before its pages are used.  ADDR NULL: a new mapping; else over
 * [ADDR, ADDR + size) (MAP_FIXED).  The full image is checked too with
 * MEM_CHAIN_VERIFY_BASE (in a thread of its own while the layers are
 * copied in); else not (mem_chain_verify). */
#define MEM_CHAIN_VERIFY_BASE 1u
int mem_chain_map(const struct mem_chain *c, void *addr, unsigned flags, void **out);
/* Read the chain into RAM (fresh anonymous memory), each chunk verified;
 * every page written once, from its newest holder. */
int mem_chain_load(const struct mem_chain *c, void *ram);

/* Delete the parent of the layer PATH from its chain: rewrite PATH to hold
 * also the parent's pages it does not hold itself (a full image when the
 * parent was one), standing on the parent's parent.  The RAM PATH stands
 * for and its id do not change; PATH is replaced atomically.  The parent's
 * files are left to the caller. */
int mem_chain_absorb_parent(const char *path, uint64_t size, struct mem_image_info *info);

#endif
