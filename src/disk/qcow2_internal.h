/* Private to src/disk/qcow2*.c: the in-memory image and the on-disk
 * constants of qcow2 (QEMU's docs/interop/qcow2.txt).  Other modules use
 * qcow2.h. */
#ifndef CAIRN_DISK_QCOW2_INTERNAL_H
#define CAIRN_DISK_QCOW2_INTERNAL_H

#include "disk/block.h"
#include "disk/qcow2_cache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_V3_HEADER_LEN 112u
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_RT_BYTES (8u << 20)
#define QCOW2_MAX_BACKING_NAME 1023u

#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN                                                                       \
	(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_COMPRESSION |              \
	 QCOW2_INCOMPAT_EXTL2)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau
#define QCOW2_EXT_FEATURE_NAMES 0x6803f857u

/* L1/L2 entry bits. */
#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO (1ull << 0)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L1_RESERVED 0x7f000000000001ffull
#define QCOW2_L2_RESERVED 0x3f000000000001feull

/* What a guest range maps to in one image (not looking at its backing). */
enum qcow2_ctype {
	QCOW2_UNALLOCATED, /* read from the backing chain, or zeroes */
	QCOW2_ZERO,	   /* reads as zeroes */
	QCOW2_DATA,	   /* at a host offset, uncompressed */
	QCOW2_COMPRESSED,  /* one compressed cluster */
};

struct qcow2_layer_index;

struct qcow2_image {
	struct block_dev bd; /* first: the block layer casts */
	int fd;
	uint64_t file_size;

	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order;
	uint32_t header_length;
	uint8_t compression_type;
	bool extended_l2;
	uint32_t l2_entry_words; /* 1, or 2 with extended L2 entries */
	uint64_t l2_entries;	 /* entries per L2 table */
	uint32_t subcluster_bits;

	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t *l1; /* host byte order */
	bool l1_dirty;
	uint32_t l1_dirty_lo, l1_dirty_hi; /* entries [lo, hi) to write */

	uint64_t rt_offset;
	uint32_t rt_clusters;
	uint64_t rt_entries;
	uint64_t *rt; /* host byte order */
	bool rt_dirty;
	uint64_t rb_entries; /* refcounts per refcount block */
	uint64_t refcount_max;

	uint32_t nb_snapshots;
	uint64_t snapshots_offset;

	char *backing_name;   /* as stored in the header */
	char *backing_fmt;    /* from the extension, or NULL */
	uint8_t *unknown_ext; /* other header extensions, kept for rewrites */
	size_t unknown_ext_len;

	struct qcow2_cache *l2_cache;
	struct qcow2_cache *rb_cache;

	uint64_t end_cluster;	/* every cluster at or past it is free */
	uint64_t free_hint;	/* lowest cluster that may be free */
	uint64_t run_hint;	/* where runs of several clusters are looked for */
	uint64_t *pending_free; /* host clusters to release once L2 is durable */
	size_t pending_n, pending_cap;
	bool unsynced;	    /* writes since the last fdatasync */
	bool data_unsynced; /* new data clusters not yet synced */

	struct qcow2_layer_index *layers; /* backing layers and their index, or NULL */

	/* One decompressed cluster, for reads of compressed images. */
	uint64_t zcache_entry;
	uint8_t *zcache;
	uint8_t *zbuf;
	uint8_t *cow_buf; /* a cluster for copy-on-write */
	uint8_t *hdr_raw; /* the header as read (header_length bytes) */
};

static inline struct qcow2_image *to_qcow2(struct block_dev *bd)
{
	return (struct qcow2_image *)bd;
}

static inline uint64_t be64_get(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}
static inline uint32_t be32_get(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}
static inline uint16_t be16_get(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] << 8 | b[1]);
}
static inline void be64_put(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}
static inline void be32_put(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 3; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}

/* qcow2.c */
int qcow2_pread(struct qcow2_image *img, void *buf, size_t len, uint64_t off, const char *what);
int qcow2_pwrite(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
		 const char *what);
int qcow2_sync(struct qcow2_image *img);
int qcow2_write_header(struct qcow2_image *img);
/* Open the image alone (no backing chain); used by check and the layer index. */
int qcow2_open_image(const char *path, unsigned flags, struct qcow2_image **out);

/* Serialize the header cluster prefix (header, extensions, backing name)
 * into BUF (cluster_size bytes, zeroed by the caller); returns its length
 * or -errno. */
int qcow2_header_build(struct qcow2_image *img, uint8_t *buf);

/* qcow2_layer_index.c: the backing layers below an image and the
 * per-granule index of which layer holds its data. */
int qcow2_layer_index_open(struct qcow2_image *top, struct qcow2_layer_index **out);
void qcow2_layer_index_close(struct qcow2_layer_index *c);
int qcow2_layer_index_read(struct qcow2_layer_index *c, void *buf, uint64_t off, size_t len);
/* The layer (0 = the direct backing) that decides [OFF, OFF+*PNUM), or the
 * depth when none does. */
int qcow2_layer_index_lookup(struct qcow2_layer_index *c, uint64_t off, uint64_t len,
			     unsigned *layer, uint64_t *pnum);
unsigned qcow2_layer_index_depth(const struct qcow2_layer_index *c);
struct block_dev *qcow2_layer_index_layer(const struct qcow2_layer_index *c, unsigned i);

/* qcow2_cluster.c */
int qcow2_get_mapping(struct qcow2_image *img, uint64_t off, uint64_t max, uint64_t *bytes,
		      uint64_t *host, enum qcow2_ctype *type);
int qcow2_read_compressed(struct qcow2_image *img, uint64_t entry, uint8_t **cluster);
/* The L2 slot for guest cluster at OFF, allocating the table when ALLOC. */
int qcow2_get_l2_slot(struct qcow2_image *img, uint64_t off, bool alloc, uint64_t **table,
		      uint64_t *index);
int qcow2_write_l1(struct qcow2_image *img);
/* Release what an L2 entry points to (deferred until the L2 is durable). */
int qcow2_release_entry(struct qcow2_image *img, uint64_t entry);

/* qcow2_refcount.c */
int qcow2_refcount_init(struct qcow2_image *img);
int qcow2_refcount_get(struct qcow2_image *img, uint64_t cluster, uint64_t *rc);
int qcow2_refcount_set(struct qcow2_image *img, uint64_t cluster, uint64_t rc);
int qcow2_alloc_clusters(struct qcow2_image *img, uint64_t n, uint64_t *host);
int qcow2_defer_free(struct qcow2_image *img, uint64_t cluster);
/* Write dirty refcount blocks and table, each behind a barrier. */
int qcow2_flush_refcounts(struct qcow2_image *img);
/* The whole ordered metadata flush: refcounts, L2, L1, deferred frees. */
int qcow2_flush_metadata(struct qcow2_image *img);

#endif
