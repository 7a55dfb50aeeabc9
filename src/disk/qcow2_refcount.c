/* qcow2 reference counts: lookup, update, cluster allocation, growth of the
 * refcount table, and the ordered write-back that keeps a crashed image
 * free of anything worse than leaked clusters.
 *
 * Order (see docs/qcow2.md): a refcount increase reaches the file before
 * any L2 entry that makes use of it; new data and new refcount blocks are
 * synced before the table entries that point at them; a decrease is made
 * only after the L2 change that dropped the last reference is durable. */
#include "disk/qcow2_internal.h"
#include "util/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rb_entry_get(const struct qcow2_image *img, const uint8_t *rb, uint64_t i)
{
	uint32_t bits = 1u << img->refcount_order;
	if (bits < 8) {
		uint64_t bit = i * bits;
		return (rb[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
	}
	const uint8_t *p = rb + i * (bits / 8);
	uint64_t v = 0;
	for (uint32_t k = 0; k < bits / 8; k++)
		v = v << 8 | p[k];
	return v;
}

static void rb_entry_put(const struct qcow2_image *img, uint8_t *rb, uint64_t i, uint64_t v)
{
	uint32_t bits = 1u << img->refcount_order;
	if (bits < 8) {
		uint64_t bit = i * bits;
		uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
		rb[bit / 8] = (uint8_t)((rb[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
		return;
	}
	uint8_t *p = rb + i * (bits / 8);
	for (int k = (int)(bits / 8) - 1; k >= 0; k--, v >>= 8)
		p[k] = (uint8_t)v;
}

static int rt_entry_check(struct qcow2_image *img, uint64_t t)
{
	uint64_t e = img->rt[t];
	if (e & 0x1ffull)
		return err_set(EUCLEAN,
			       "%s: refcount table entry %llu (%#llx) has reserved bits set",
			       img->bd.path, (unsigned long long)t, (unsigned long long)e);
	if (e & (img->cluster_size - 1))
		return err_set(EUCLEAN, "%s: refcount block at %#llx is not cluster aligned",
			       img->bd.path, (unsigned long long)e);
	if (e + img->cluster_size > img->file_size && e >= img->end_cluster * img->cluster_size)
		return err_set(EUCLEAN, "%s: refcount block at %#llx outside the file",
			       img->bd.path, (unsigned long long)e);
	return 0;
}

int qcow2_refcount_init(struct qcow2_image *img)
{
	uint64_t bytes = (uint64_t)img->rt_clusters * img->cluster_size;
	if (bytes > QCOW2_MAX_RT_BYTES)
		return err_set(EFBIG, "%s: refcount table of %llu bytes is too large", img->bd.path,
			       (unsigned long long)bytes);
	if (img->rt_offset & (img->cluster_size - 1))
		return err_set(EUCLEAN, "%s: refcount table at %#llx is not cluster aligned",
			       img->bd.path, (unsigned long long)img->rt_offset);
	if (img->rt_offset + bytes > img->file_size || img->rt_offset + bytes < img->rt_offset)
		return err_set(EUCLEAN, "%s: refcount table at %#llx outside the file",
			       img->bd.path, (unsigned long long)img->rt_offset);
	img->rt_entries = bytes / 8;
	img->rt = malloc(bytes ? bytes : 8);
	if (!img->rt)
		return err_set(ENOMEM, "%s: refcount table", img->bd.path);
	int r = qcow2_pread(img, img->rt, bytes, img->rt_offset, "refcount table");
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < img->rt_entries; i++) {
		img->rt[i] = be64_get(&img->rt[i]);
		if (img->rt[i] && (r = rt_entry_check(img, i)) < 0)
			return r;
	}
	img->rb_entries = img->cluster_size * 8 >> img->refcount_order;
	img->refcount_max =
	    img->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << img->refcount_order)) - 1;
	return 0;
}

static int rb_load(struct qcow2_image *img, uint64_t t, bool fresh, uint8_t **rb)
{
	return qcow2_cache_get(img, img->rb_cache, img->rt[t], !fresh, (void **)rb);
}

int qcow2_refcount_get(struct qcow2_image *img, uint64_t cluster, uint64_t *rc)
{
	uint64_t t = cluster / img->rb_entries;
	if (t >= img->rt_entries || !img->rt[t]) {
		*rc = 0;
		return 0;
	}
	uint8_t *rb;
	int r = rb_load(img, t, false, &rb);
	if (r < 0)
		return r;
	*rc = rb_entry_get(img, rb, cluster % img->rb_entries);
	return 0;
}

static int rt_grow(struct qcow2_image *img, uint64_t need_t);

/* Create refcount block T inside its own range, at free cluster AT. */
static int rb_create(struct qcow2_image *img, uint64_t t, uint64_t at)
{
	img->rt[t] = at * img->cluster_size;
	img->rt_dirty = true;
	uint8_t *rb;
	int r = rb_load(img, t, true, &rb);
	if (r < 0)
		return r;
	rb_entry_put(img, rb, at % img->rb_entries, 1);
	qcow2_cache_mark_dirty(img->rb_cache, rb);
	if (at + 1 > img->end_cluster)
		img->end_cluster = at + 1;
	return 0;
}

int qcow2_refcount_set(struct qcow2_image *img, uint64_t cluster, uint64_t rc)
{
	uint64_t t = cluster / img->rb_entries;
	if (t >= img->rt_entries || !img->rt[t])
		return err_set(EUCLEAN, "%s: cluster %llu has no refcount block", img->bd.path,
			       (unsigned long long)cluster);
	if (rc > img->refcount_max)
		return err_set(EOVERFLOW, "%s: refcount of cluster %llu would overflow",
			       img->bd.path, (unsigned long long)cluster);
	uint8_t *rb;
	int r = rb_load(img, t, false, &rb);
	if (r < 0)
		return r;
	rb_entry_put(img, rb, cluster % img->rb_entries, rc);
	qcow2_cache_mark_dirty(img->rb_cache, rb);
	if (rc && cluster + 1 > img->end_cluster)
		img->end_cluster = cluster + 1;
	if (!rc && cluster < img->free_hint)
		img->free_hint = cluster;
	return 0;
}

static int find_free_run(struct qcow2_image *img, uint64_t n, uint64_t *start)
{
	/* Single clusters fill holes from the lowest free one; runs start
	 * where the last run ended, so a hole too small for them is not
	 * rescanned on every allocation. */
	uint64_t c = img->free_hint, run = 0;
	if (n > 1 && img->run_hint > c)
		c = img->run_hint;
	for (;;) {
		uint64_t rc;
		if (c >= img->end_cluster) {
			/* Everything past the end is free. */
			*start = run ? c - run : c;
			return 0;
		}
		int r = qcow2_refcount_get(img, c, &rc);
		if (r < 0)
			return r;
		if (rc == 0) {
			if (run == 0)
				*start = c;
			if (++run == n)
				return 0;
		} else {
			run = 0;
			if (c == img->free_hint)
				img->free_hint = c + 1;
		}
		c++;
	}
}

int qcow2_alloc_clusters(struct qcow2_image *img, uint64_t n, uint64_t *host)
{
	for (int tries = 0; tries < 64; tries++) {
		uint64_t c;
		int r = find_free_run(img, n, &c);
		if (r < 0)
			return r;
		if ((c + n) >> (56 - img->cluster_bits))
			return err_set(EFBIG, "%s: image file would exceed 64 PiB", img->bd.path);
		bool retry = false;
		for (uint64_t k = c; k < c + n && !retry; k++) {
			uint64_t t = k / img->rb_entries;
			if (t >= img->rt_entries) {
				r = rt_grow(img, t);
				retry = true;
			} else if (!img->rt[t]) {
				r = rb_create(img, t, k);
				retry = true;
			}
			if (r < 0)
				return r;
		}
		if (retry)
			continue;
		for (uint64_t k = c; k < c + n; k++) {
			r = qcow2_refcount_set(img, k, 1);
			if (r < 0)
				return r;
		}
		if (c == img->free_hint)
			img->free_hint = c + n;
		if (n > 1)
			img->run_hint = c + n;
		*host = c * img->cluster_size;
		return 0;
	}
	return err_set(EIO, "%s: cannot allocate %llu clusters", img->bd.path,
		       (unsigned long long)n);
}

/* Replace the refcount table by a larger one that covers block NEED_T.  The
 * new table and any blocks it needs to describe itself go past the end of
 * everything; they are written and synced before the header points at
 * them, so a crash leaves either the old table or the new one. */
static int rt_grow(struct qcow2_image *img, uint64_t need_t)
{
	uint64_t cs = img->cluster_size, per = cs / 8;
	uint64_t start = img->end_cluster;
	uint64_t entries = img->rt_entries, nc = 0, nb = 0;
	if (need_t + 1 > entries)
		entries = need_t + 1;
	for (int it = 0; it < 32; it++) {
		uint64_t want = entries + entries / 2 + 1;
		nc = (want + per - 1) / per;
		/* blocks missing for [start, start + nc + nb) */
		uint64_t first = start / img->rb_entries, nb2 = 0, last;
		for (;;) {
			last = (start + nc + nb2 - 1) / img->rb_entries;
			uint64_t miss = 0;
			for (uint64_t t = first; t <= last; t++)
				if (t >= img->rt_entries || !img->rt[t])
					miss++;
			if (miss == nb2)
				break;
			nb2 = miss;
		}
		nb = nb2;
		if (last + 1 <= nc * per && need_t + 1 <= nc * per) {
			entries = nc * per;
			break;
		}
		entries = last + 1 > need_t + 1 ? last + 1 : need_t + 1;
	}
	if (nc * cs > QCOW2_MAX_RT_BYTES)
		return err_set(EFBIG, "%s: refcount table would exceed %u bytes", img->bd.path,
			       QCOW2_MAX_RT_BYTES);
	uint64_t *nt = calloc(entries, 8);
	if (!nt)
		return err_set(ENOMEM, "%s: refcount table", img->bd.path);
	memcpy(nt, img->rt, img->rt_entries * 8);
	/* New blocks sit right after the new table. */
	uint64_t blk = start + nc;
	uint64_t first = start / img->rb_entries, last = (start + nc + nb - 1) / img->rb_entries;
	uint64_t *old_rt = img->rt;
	uint64_t old_entries = img->rt_entries, old_off = img->rt_offset;
	uint32_t old_clusters = img->rt_clusters;
	img->rt = nt;
	img->rt_entries = entries;
	int r = 0;
	for (uint64_t t = first; t <= last && r == 0; t++) {
		if (t < old_entries && old_rt[t])
			continue;
		nt[t] = blk * cs;
		uint8_t *rb;
		r = rb_load(img, t, true, &rb);
		if (r == 0)
			qcow2_cache_mark_dirty(img->rb_cache, rb);
		blk++;
	}
	img->end_cluster = start + nc + nb;
	for (uint64_t k = start; k < start + nc + nb && r == 0; k++)
		r = qcow2_refcount_set(img, k, 1);
	if (r < 0)
		goto undo;
	/* Blocks, then table, then header, each behind a sync. */
	if ((r = qcow2_cache_flush(img, img->rb_cache)) < 0 || (r = qcow2_sync(img)) < 0)
		goto undo;
	uint64_t *buf = calloc(nc * per, 8);
	if (!buf) {
		r = err_set(ENOMEM, "%s: refcount table", img->bd.path);
		goto undo;
	}
	for (uint64_t i = 0; i < entries; i++)
		be64_put(&buf[i], nt[i]);
	r = qcow2_pwrite(img, buf, nc * cs, start * cs, "refcount table");
	free(buf);
	if (r < 0 || (r = qcow2_sync(img)) < 0)
		goto undo;
	img->rt_offset = start * cs;
	img->rt_clusters = (uint32_t)nc;
	img->rt_dirty = false;
	if ((r = qcow2_write_header(img)) < 0 || (r = qcow2_sync(img)) < 0)
		return r; /* header state unknown: the image is left as is */
	free(old_rt);
	/* The old table is unreferenced now: release it at once. */
	for (uint32_t k = 0; k < old_clusters; k++)
		if ((r = qcow2_refcount_set(img, old_off / cs + k, 0)) < 0)
			return r;
	return 0;
undo:
	img->rt = old_rt;
	img->rt_entries = old_entries;
	free(nt);
	return r;
}

int qcow2_defer_free(struct qcow2_image *img, uint64_t cluster)
{
	if (img->pending_n == img->pending_cap) {
		size_t cap = img->pending_cap ? img->pending_cap * 2 : 64;
		uint64_t *p = realloc(img->pending_free, cap * sizeof(*p));
		if (!p)
			return err_set(ENOMEM, "%s: free list", img->bd.path);
		img->pending_free = p;
		img->pending_cap = cap;
	}
	img->pending_free[img->pending_n++] = cluster;
	return 0;
}

static int write_rt(struct qcow2_image *img)
{
	uint64_t bytes = (uint64_t)img->rt_clusters * img->cluster_size;
	uint64_t *buf = calloc(1, bytes);
	if (!buf)
		return err_set(ENOMEM, "%s: refcount table", img->bd.path);
	for (uint64_t i = 0; i < img->rt_entries; i++)
		be64_put(&buf[i], img->rt[i]);
	int r = qcow2_pwrite(img, buf, bytes, img->rt_offset, "refcount table");
	free(buf);
	if (r == 0)
		img->rt_dirty = false;
	return r;
}

int qcow2_flush_refcounts(struct qcow2_image *img)
{
	int r;
	/* Only new data and refcounts need the barrier; L2 writes do not (so
	 * writing many L2 tables costs one sync, not one each). */
	bool need = img->data_unsynced;
	if (qcow2_cache_is_dirty(img->rb_cache)) {
		if ((r = qcow2_cache_flush(img, img->rb_cache)) < 0)
			return r;
		need = true;
	}
	if (need && (r = qcow2_sync(img)) < 0)
		return r;
	if (img->rt_dirty) {
		if ((r = write_rt(img)) < 0 || (r = qcow2_sync(img)) < 0)
			return r;
	}
	img->data_unsynced = false;
	return 0;
}

static int apply_frees(struct qcow2_image *img)
{
	for (size_t i = 0; i < img->pending_n; i++) {
		uint64_t c = img->pending_free[i], rc;
		int r = qcow2_refcount_get(img, c, &rc);
		if (r < 0)
			return r;
		if (rc == 0)
			return err_set(EUCLEAN, "%s: freeing cluster %llu whose refcount is 0",
				       img->bd.path, (unsigned long long)c);
		if ((r = qcow2_refcount_set(img, c, rc - 1)) < 0)
			return r;
	}
	img->pending_n = 0;
	return 0;
}

int qcow2_flush_metadata(struct qcow2_image *img)
{
	int r;
	if ((r = qcow2_flush_refcounts(img)) < 0)
		return r;
	if (qcow2_cache_is_dirty(img->l2_cache)) {
		if ((r = qcow2_cache_flush(img, img->l2_cache)) < 0)
			return r;
	}
	if (img->l1_dirty) {
		if ((r = qcow2_sync(img)) < 0 || (r = qcow2_write_l1(img)) < 0)
			return r;
	}
	if (img->pending_n) {
		if ((r = qcow2_sync(img)) < 0 || (r = apply_frees(img)) < 0)
			return r;
		if ((r = qcow2_flush_refcounts(img)) < 0)
			return r;
	}
	return img->unsynced ? qcow2_sync(img) : 0;
}
