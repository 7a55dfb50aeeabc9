/* A bounded cache of metadata tables (L2 tables, refcount blocks), one
 * cluster each, kept in on-disk (big-endian) byte order, so a
 * table is written back unchanged.  Dirty tables are written back on
 * eviction and on flush; the owner supplies a hook that runs before any
 * dirty table of this cache reaches the file (the ordering barrier). */
#ifndef CAIRN_DISK_QCOW2_CACHE_H
#define CAIRN_DISK_QCOW2_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qcow2_image;
struct qcow2_cache;

typedef int (*qcow2_cache_barrier_fn)(struct qcow2_image *img);

struct qcow2_cache *qcow2_cache_new(unsigned nslots, size_t table_size,
				    qcow2_cache_barrier_fn barrier, const char *what);
void qcow2_cache_free(struct qcow2_cache *c);

/* The table at host offset OFF.  With READ false the table is new: it is
 * zero-filled instead of read.  The pointer is valid until the next get on
 * the same cache. */
int qcow2_cache_get(struct qcow2_image *img, struct qcow2_cache *c, uint64_t off, bool read,
		    void **table);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, const void *table);
bool qcow2_cache_is_dirty(const struct qcow2_cache *c);
/* Write every dirty table (after the barrier).  Returns 0 or -errno. */
int qcow2_cache_flush(struct qcow2_image *img, struct qcow2_cache *c);

#endif
