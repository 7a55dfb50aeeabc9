/* qcow2 v3 images (QEMU's docs/interop/qcow2.txt): open, create, overlay.
 * An open image is a struct block_dev (see block.h); reads go through its
 * backing chain, writes allocate clusters and copy partial clusters up from
 * the chain.  Chain-wide operations (commit, stream, rebase, convert, map)
 * are in chain.h; the consistency check in qcow2_check.h. */
#ifndef CAIRN_DISK_QCOW2_H
#define CAIRN_DISK_QCOW2_H

#include "disk/block.h"

#include <stdbool.h>
#include <stdint.h>

#define QCOW2_DEFAULT_CLUSTER_SIZE 65536u

struct qcow2_create_opts {
	uint64_t size;		 /* virtual size; 0 = the backing image's size */
	uint32_t cluster_size;	 /* 512 B .. 2 MiB, power of two; 0 = 64 KiB */
	const char *backing;	 /* stored as given; a relative name is resolved
				    against the new image's directory; NULL = none */
	const char *backing_fmt; /* "qcow2" or "raw"; NULL = probed and recorded */
	bool exclusive;		 /* refuse an existing PATH instead of replacing it */
};

/* Create (or replace, unless exclusive) PATH as an empty qcow2 v3 image.  The file appears
 * atomically (written beside, fsynced, renamed over). */
int qcow2_create(const char *path, const struct qcow2_create_opts *opts);

/* The snapshot operation on disks: PATH becomes an empty qcow2 layer on top
 * of BACKING (same virtual size), so BACKING can be frozen.  BACKING_FMT may
 * be NULL (probed).  An existing PATH is refused, never replaced. */
int qcow2_create_overlay(const char *path, const char *backing, const char *backing_fmt);

/* The same, BACKING (an absolute path) being recorded relative to PATH's
 * directory when it is in that directory, so that the two can be moved
 * together (qemu resolves a relative name against the image's directory). */
int qcow2_create_overlay_rel(const char *path, const char *backing, const char *backing_fmt);
/* How image PATH should name BACKING: its base name when both are in the
 * same directory, else BACKING itself (a pointer into BACKING). */
const char *qcow2_relative_backing(const char *path, const char *backing);

/* Open a qcow2 image with its backing chain (unless BLOCK_NO_BACKING).
 * Usually called through block_open().  Read-write needs a v3 image
 * without internal snapshots, extended L2 entries, or the dirty/corrupt
 * bits. */
int qcow2_open(const char *path, unsigned flags, struct block_dev **out);

/* Facts about an open qcow2 image, for `img info`. */
struct qcow2_info {
	uint32_t version;
	uint64_t cluster_size;
	uint32_t refcount_bits;
	bool lazy_refcounts, corrupt, dirty, extended_l2;
	const char *compression; /* "zlib" or "zstd" */
	uint32_t nb_snapshots;
	const char *backing;	 /* as stored, or NULL */
	const char *backing_fmt; /* as stored, or NULL */
	unsigned chain_depth;	 /* number of backing layers opened (0 if none) */
};
/* Returns -EINVAL if BD is not a qcow2 image. */
int qcow2_get_info(struct block_dev *bd, struct qcow2_info *info);

/* Rewrite the backing reference in PATH's header only (an "unsafe" rebase:
 * the content seen through the image changes unless the new chain holds
 * the same data).  BACKING NULL or "" removes the backing file. */
/* UNCHANGED: the new backing file reads as the old one did (a stream's
 * end, a rename), so readers of PATH need not be kept out. */
int qcow2_set_backing(const char *path, const char *backing, const char *backing_fmt,
		      bool unchanged);

/* The backing layers an open qcow2 image BD reads through (opened with
 * it, read-only, each alone): their number (0 for an image without a
 * backing file, or one that is not qcow2), and the I-th of them (0 = the
 * direct backing file; NULL past the last). */
unsigned qcow2_backing_depth(struct block_dev *bd);
struct block_dev *qcow2_backing_layer(struct block_dev *bd, unsigned i);
/* Which backing layer decides [OFF, OFF+*PNUM) of BD's content where BD
 * itself holds nothing (the depth when no layer does); from the layer
 * index, without reading the layers.  BD must have backing layers. */
int qcow2_backing_lookup(struct block_dev *bd, uint64_t off, uint64_t len, unsigned *layer,
			 uint64_t *pnum);

/* Resolve a backing name stored in the image at IMAGE_PATH to a path that
 * open() understands (relative names are relative to the image's
 * directory).  Returns a malloc'd string or NULL. */
char *qcow2_resolve_backing(const char *image_path, const char *name);

#endif
