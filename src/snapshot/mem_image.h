/* Guest RAM images (memory.img): a full image of RAM, or a layer that
 * holds only the pages changed since its parent snapshot's image.
 *
 * A full image is guest RAM byte for byte from offset 0 (so it can be
 * mmap'ed as guest memory), sparse where a 4 KiB page is zero, with its
 * trailer at offset SIZE.  A layer (version 3, "packed") stores the pages
 * it holds with data one after another in page order from offset 0, its
 * trailer after them, and ends in a locator naming the trailer's offset
 * (layers of version 2, at their RAM offsets in a sparse file, are still
 * read).  The trailer: geometry, the image's identity (a random 128-bit id
 * that names this snapshot's memory content and that merges keep), for a
 * layer its parent's id and path and its page maps, and an XXH3-64
 * checksum of each 2 MiB chunk of RAM (a layer's: of the chunk's data
 * pages), itself checksummed.
 * docs/state-format.md has the layout; mem_chain.h reads layers as the
 * RAM they stand for.
 *
 * Saving writes PATH.tmp, fsyncs, renames over PATH and fsyncs the
 * directory: PATH is the old image or the whole new one, never half.
 * Every reader first checks the file's size and trailer against the size
 * the caller expects; a truncated or extended image is refused. */
#ifndef CAIRN_SNAPSHOT_MEM_IMAGE_H
#define CAIRN_SNAPSHOT_MEM_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEM_IMAGE_PAGE_SIZE 4096u
#define MEM_IMAGE_CHUNK_SIZE (2u << 20)

/* Called after each chunk: DONE of TOTAL bytes of RAM handled.  A non-zero
 * return stops the work: it fails with -ECANCELED (a save then leaves PATH
 * as it was and removes PATH.tmp). */
typedef int (*mem_image_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* Names a snapshot's memory content; never all zero in a version-2 image. */
struct mem_id {
	uint8_t b[16];
};

struct mem_image_info {
	uint64_t size;	     /* bytes of guest RAM in the image */
	uint64_t data_bytes; /* save: non-zero bytes written; info: bytes allocated on disk */
	uint64_t file_size;  /* size plus the trailer */
	uint64_t chunks;     /* number of checksummed chunks (the last may be partial) */
	uint64_t digest;     /* XXH3-64 of the trailer: one number naming this file's content */
	struct mem_id id;    /* the snapshot memory this image stands for (version 1: from digest) */
	bool layer;	     /* holds only pages changed since its parent */
	struct mem_id parent;/* layer: the parent's id */
	uint32_t depth;	     /* 0 for a full image, parent's + 1 for a layer */
	uint32_t lineage;    /* snapshots since the full image the memory descends from
			      * (0 full; version-2 layers: their depth) */
	uint64_t data_pages, zero_pages; /* layer: pages held with data / held as zero */
};

/* A save that writes a layer on a parent instead of a full image. */
struct mem_image_layer_spec {
	const uint64_t *changed; /* bitmap, one bit per 4 KiB page: pages changed since the parent */
	struct mem_id parent;
	const char *parent_ref;	 /* the parent's image, relative to this image's directory */
	uint32_t parent_depth;
	uint32_t lineage; /* the layer's lineage number (mem_image_info), at least 1 */
};

/* Save SIZE bytes of RAM (a multiple of 4 KiB) to PATH.  PROGRESS and INFO
 * may be NULL. */
int mem_image_save(const char *path, const void *ram, uint64_t size, mem_image_progress_fn progress,
		   void *opaque, struct mem_image_info *info);
/* Where a save reads guest RAM that may change while it is written: get()
 * gives chunk CHUNK's bytes (MEM_IMAGE_CHUNK_SIZE, the last chunk's may be
 * fewer; page-aligned) as they were at the snapshot, unchanged until the
 * matching put(); chunks are asked for in order, one at a time; NULL when
 * the chunk is lost (the save fails). */
struct mem_image_source {
	const void *(*get)(void *opaque, uint64_t chunk);
	void (*put)(void *opaque, uint64_t chunk);
	void *opaque;
};
/* RAM that does not change while it is saved (mem_image_save's), as a
 * source for the saves below. */
struct mem_image_source mem_image_ram_source(const void *ram);
/* mem_image_save from SRC instead of a stable RAM pointer. */
int mem_image_save_from(const char *path, const struct mem_image_source *src, uint64_t size,
			mem_image_progress_fn progress, void *opaque, struct mem_image_info *info);
/* Either save, as a layer (LAYER not NULL) or full, with the identity ID
 * (NULL: a new random one).  A layer's SRC is asked only for the chunks
 * that hold changed pages; the others are handed back (put) unread. */
int mem_image_save_as(const char *path, const struct mem_image_source *src, uint64_t size,
		      const struct mem_image_layer_spec *layer, const struct mem_id *id,
		      mem_image_progress_fn progress, void *opaque, struct mem_image_info *info);
/* A new random identity. */
int mem_id_new(struct mem_id *id);
/* "0123...ef": 32 hex digits and a NUL. */
void mem_id_format(const struct mem_id *id, char out[33]);

/* Check size and trailer (no data read) and describe the image. */
int mem_image_info(const char *path, uint64_t size, struct mem_image_info *info);
/* A layer's parent reference as stored (relative to its directory):
 * OUT is "" for a full image. */
int mem_image_parent_ref(const char *path, uint64_t size, char *out, size_t len);
/* Recompute every chunk's checksum; the first bad chunk is named with its
 * offset.  -EUCLEAN when the image was altered. */
int mem_image_verify(const char *path, uint64_t size, mem_image_progress_fn progress, void *opaque);
/* The same for one chunk (index < info.chunks). */
int mem_image_verify_chunk(const char *path, uint64_t size, uint64_t chunk);
/* These three take a full image and refuse a layer (mem_chain.h reads
 * those).  Map the image copy-on-write (MAP_PRIVATE) as SIZE bytes of guest RAM:
 * the guest can run at once and pages load as they are touched.  Chunks
 * are not verified here (that would read everything): call
 * mem_image_verify first where that matters.  Unmap with munmap(*ptr, size). */
int mem_image_map(const char *path, uint64_t size, void **ptr);
/* Read the whole image into RAM (SIZE bytes, e.g. a fresh anonymous
 * mapping), verifying each chunk before it is copied in.  Zero pages are
 * not copied: a page of RAM already zero stays untouched (not allocated).
 * On a checksum failure the chunks before the bad one are already in RAM. */
int mem_image_load(const char *path, void *ram, uint64_t size);

/* ---- one image as a layer (mem_chain.h reads a chain of them) ---- */

/* An open image, its size and trailer checked (no data read). */
struct mem_layer;
int mem_layer_open(const char *path, uint64_t size, struct mem_layer **out);
void mem_layer_close(struct mem_layer *l); /* NULL is ignored */
const struct mem_image_info *mem_layer_info(const struct mem_layer *l);
const char *mem_layer_path(const struct mem_layer *l);
/* The parent's image relative to this one's directory; "" for a full image. */
const char *mem_layer_parent_ref(const struct mem_layer *l);
int mem_layer_fd(const struct mem_layer *l);
/* Pages 64W..64W+63 that L holds, with data or as zero (a full image holds
 * every page), one bit each. */
uint64_t mem_layer_held_word(const struct mem_layer *l, uint64_t w);
/* Page P is held with data (not as a zero page). */
bool mem_layer_holds_data(const struct mem_layer *l, uint64_t page);
/* Check chunk C's checksum (BUF: MEM_IMAGE_CHUNK_SIZE bytes). */
int mem_layer_verify_chunk(const struct mem_layer *l, uint64_t c, uint8_t *buf);
/* Every chunk, in threads; the lowest bad chunk is named. */
int mem_layer_verify(const struct mem_layer *l, mem_image_progress_fn progress, void *opaque);
/* Chunk C's pages that L holds into RAM (the whole guest RAM), verified
 * first; pages L does not hold are left alone.  BUF: one chunk. */
int mem_layer_load_chunk(const struct mem_layer *l, uint8_t *ram, uint64_t c, uint8_t *buf);
/* The same into DST, where chunk C's first page goes (one chunk). */
int mem_layer_chunk_into(const struct mem_layer *l, uint64_t c, uint8_t *dst, uint8_t *buf);
/* The pages L holds that OWNED names (a page map; NULL: all L holds) into
 * RAM, read in order (a packed layer: in large reads) and verified chunk by
 * chunk before any page of the chunk is used.  Only chunks with such pages
 * are read.  A failure leaves the chunks before the bad one in RAM. */
int mem_layer_apply(const struct mem_layer *l, uint8_t *ram, const uint64_t *owned);
/* Ask the kernel to start reading a packed layer's pages (a hint). */
void mem_layer_readahead(const struct mem_layer *l);

#endif
