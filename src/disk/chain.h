/* Operations on whole backing chains, in the manner of qemu-img: commit,
 * stream, rebase, convert, compare and map.  Paths name image files; the
 * format of each is detected unless given.  All return 0 or -errno with a
 * message (err_msg()) that names the file. */
#ifndef CAIRN_DISK_CHAIN_H
#define CAIRN_DISK_CHAIN_H

#include "disk/block.h"

#include <stdbool.h>
#include <stdint.h>

/* Called with bytes done and the total, at most a few times per second. */
typedef void (*chain_progress_fn)(void *opaque, uint64_t done, uint64_t total);

struct chain_progress {
	chain_progress_fn fn;
	void *opaque;
};

#define CHAIN_COMMIT_KEEP_TOP 0x1u /* qemu-img commit -d: leave TOP as it is */

/* Merge TOP's data (and that of every layer between it and BASE) into
 * BASE, which becomes TOP's backing file.  BASE NULL = TOP's direct
 * backing file.  TOP is then emptied (unless CHAIN_COMMIT_KEEP_TOP), so
 * the chain reads the same through TOP as before.  Other images that use
 * BASE as their backing file see it changed: that is the caller's affair. */
int chain_commit(const char *top, const char *base, unsigned flags,
		 const struct chain_progress *progress);

/* Copy into TOP every cluster that the chain above BASE provides, then make
 * BASE its backing file (BASE NULL: TOP no longer needs any backing file).
 * The content seen through TOP does not change; layers between TOP and BASE
 * may then be deleted if nothing else uses them. */
int chain_stream(const char *top, const char *base, const char *base_fmt,
		 const struct chain_progress *progress);

/* Make NEW_BACKING (NULL or "" = none) the backing file of TOP.  Safe mode
 * first copies into TOP every cluster whose content would change; UNSAFE
 * only rewrites the header (qemu-img rebase -u). */
int chain_rebase(const char *top, const char *new_backing, const char *new_fmt, bool unsafe,
		 const struct chain_progress *progress);

struct chain_convert_opts {
	const char *src_fmt;	 /* NULL = detect */
	const char *dst_fmt;	 /* "raw" or "qcow2" (default qcow2) */
	uint32_t cluster_size;	 /* qcow2 output; 0 = 64 KiB */
	const char *backing;	 /* qcow2 output on this backing file (qemu-img
				    convert -B): only what differs is written */
	const char *backing_fmt; /* NULL = detect */
	bool force_share;	 /* read SRC without image locks (-U) */
};
/* Write the content of SRC (read through its whole chain) into a new image
 * DST: standalone (the chain flattened), or an overlay on opts->backing
 * holding only the clusters where SRC differs from it.  Zero ranges are left
 * sparse / unallocated. */
int chain_convert(const char *src, const char *dst, const struct chain_convert_opts *opts,
		  const struct chain_progress *progress);

/* Compare the content of two images (each through its chain).  *SAME tells
 * the result; when different, *FIRST_DIFF is the first differing offset.
 * With sizes that differ, the extra part must read as zeroes (as qemu-img
 * compare without -s). */
int chain_compare(const char *a, const char *a_fmt, const char *b, const char *b_fmt,
		  unsigned open_flags, bool *same, uint64_t *first_diff);

/* One extent of the map of an open image: which layer holds it. */
struct chain_extent {
	uint64_t start, length;
	unsigned depth; /* 0 = the image itself, 1 = its backing file... */
	bool present;	/* false: no layer holds it, reads as zeroes */
	bool zero, data, compressed;
	bool has_offset; /* data stored uncompressed at OFFSET in FILE */
	uint64_t offset;
	const char *file; /* the layer holding it (NULL when !present) */
};
/* The extent that starts at OFF (OFF < bd->size). */
int chain_map_extent(struct block_dev *bd, uint64_t off, struct chain_extent *e);

#endif
