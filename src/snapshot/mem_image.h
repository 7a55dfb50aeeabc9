/* Guest RAM images (memory.img).
 *
 * The file is the guest's RAM byte for byte from offset 0 (so it can be
 * mmap'ed as guest memory), sparse where a 4 KiB page is zero, followed at
 * offset SIZE by a small trailer: geometry plus an XXH3-64 checksum of each
 * 2 MiB chunk, itself checksummed.  docs/state-format.md has the layout.
 *
 * Saving writes PATH.tmp, fsyncs, renames over PATH and fsyncs the
 * directory: PATH is the old image or the whole new one, never half.
 * Every reader first checks the file's size and trailer against the size
 * the caller expects; a truncated or extended image is refused. */
#ifndef CAIRN_SNAPSHOT_MEM_IMAGE_H
#define CAIRN_SNAPSHOT_MEM_IMAGE_H

#include <stdint.h>

#define MEM_IMAGE_PAGE_SIZE 4096u
#define MEM_IMAGE_CHUNK_SIZE (2u << 20)

/* Called after each chunk: DONE of TOTAL bytes of RAM handled.  A non-zero
 * return stops the work: it fails with -ECANCELED (a save then leaves PATH
 * as it was and removes PATH.tmp). */
typedef int (*mem_image_progress_fn)(void *opaque, uint64_t done, uint64_t total);

struct mem_image_info {
	uint64_t size;	     /* bytes of guest RAM in the image */
	uint64_t data_bytes; /* save: non-zero bytes written; info: bytes allocated on disk */
	uint64_t file_size;  /* size plus the trailer */
	uint64_t chunks;     /* number of checksummed chunks (the last may be partial) */
	uint64_t digest;     /* XXH3-64 of the trailer: one number naming the whole content */
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
/* mem_image_save from SRC instead of a stable RAM pointer. */
int mem_image_save_from(const char *path, const struct mem_image_source *src, uint64_t size,
			mem_image_progress_fn progress, void *opaque, struct mem_image_info *info);
/* Check size and trailer (no data read) and describe the image. */
int mem_image_info(const char *path, uint64_t size, struct mem_image_info *info);
/* Recompute every chunk's checksum; the first bad chunk is named with its
 * offset.  -EUCLEAN when the image was altered. */
int mem_image_verify(const char *path, uint64_t size, mem_image_progress_fn progress, void *opaque);
/* The same for one chunk (index < info.chunks). */
int mem_image_verify_chunk(const char *path, uint64_t size, uint64_t chunk);
/* Map the image copy-on-write (MAP_PRIVATE) as SIZE bytes of guest RAM:
 * the guest can run at once and pages load as they are touched.  Chunks
 * are not verified here (that would read everything): call
 * mem_image_verify first where that matters.  Unmap with munmap(*ptr, size). */
int mem_image_map(const char *path, uint64_t size, void **ptr);
/* Read the whole image into RAM (SIZE bytes, e.g. a fresh anonymous
 * mapping), verifying each chunk before it is copied in.  Zero pages are
 * not copied: a page of RAM already zero stays untouched (not allocated).
 * On a checksum failure the chunks before the bad one are already in RAM. */
int mem_image_load(const char *path, void *ram, uint64_t size);

#endif
