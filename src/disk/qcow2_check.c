/* qcow2 check: recount every reference and compare with the stored
 * refcounts.  Works from the file alone, reading tables directly (not
 * through the caches) so a broken table is reported, not trusted. */
#include "disk/qcow2_check.h"
#include "disk/qcow2_internal.h"
#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MAX_CLUSTERS (1ull << 28)

struct check {
	struct qcow2_image *img;
	struct qcow2_check_result *res;
	FILE *log;
	uint64_t nclusters;
	uint32_t *refs;
	uint64_t *l2buf;
	uint64_t budget; /* L2 tables left to walk: bounds hostile images */
};

static void say(struct check *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct check *k, const char *fmt, ...)
{
	if (!k->log)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(k->log, fmt, ap);
	va_end(ap);
	fputc('\n', k->log);
}

static void corrupt(struct check *k)
{
	k->res->corruptions++;
}

/* One reference to the cluster holding OFF. */
static void ref(struct check *k, uint64_t off, const char *what)
{
	uint64_t c = off >> k->img->cluster_bits;
	if (c >= k->nclusters) {
		say(k, "ERROR: %s at %#llx is beyond the end of the file", what,
		    (unsigned long long)off);
		corrupt(k);
		return;
	}
	if (k->refs[c] < UINT32_MAX)
		k->refs[c]++;
}

static void ref_range(struct check *k, uint64_t off, uint64_t len, const char *what)
{
	if (!len)
		return;
	uint64_t cb = k->img->cluster_bits;
	for (uint64_t c = off >> cb; c <= (off + len - 1) >> cb; c++)
		ref(k, c << cb, what);
}

static void check_copied(struct check *k, uint64_t host, bool copied, const char *what,
			 uint64_t entry)
{
	uint64_t rc;
	if (qcow2_refcount_get(k->img, host >> k->img->cluster_bits, &rc) < 0) {
		k->res->check_errors++;
		return;
	}
	if ((rc == 1) != copied) {
		say(k, "ERROR OFLAG_COPIED %s: entry=%#llx refcount=%llu", what,
		    (unsigned long long)entry, (unsigned long long)rc);
		corrupt(k);
	}
}

static void walk_l2(struct check *k, uint64_t l2off, bool active)
{
	struct qcow2_image *img = k->img;
	uint64_t cs = img->cluster_size;
	if (qcow2_pread(img, k->l2buf, cs, l2off, "L2 table") < 0) {
		say(k, "ERROR: %s", err_msg());
		k->res->check_errors++;
		return;
	}
	unsigned w = img->l2_entry_words;
	uint64_t prev = 0;
	for (uint64_t i = 0; i < img->l2_entries; i++) {
		uint64_t e = be64_get(&k->l2buf[i * w]);
		if (e & QCOW2_OFLAG_COMPRESSED) {
			unsigned x = 62 - (img->cluster_bits - 8);
			uint64_t off = e & ((1ull << x) - 1);
			uint64_t nsec = (e >> x) & ((1ull << (img->cluster_bits - 8)) - 1);
			uint64_t end = (off & ~511ull) + (nsec + 1) * 512;
			ref_range(k, off, end - off, "compressed cluster");
			if (active) {
				k->res->allocated_clusters++;
				k->res->compressed_clusters++;
				if (e & QCOW2_OFLAG_COPIED) {
					say(k,
					    "ERROR: compressed cluster entry %#llx has the copied "
					    "flag",
					    (unsigned long long)e);
					corrupt(k);
				}
			}
			continue;
		}
		uint64_t o = e & QCOW2_OFFSET_MASK;
		if (e & QCOW2_L2_RESERVED) {
			say(k, "ERROR: L2 entry %#llx in table %#llx has reserved bits set",
			    (unsigned long long)e, (unsigned long long)l2off);
			corrupt(k);
			continue;
		}
		if (!o)
			continue;
		if (o & (cs - 1)) {
			say(k, "ERROR: data cluster at %#llx is not cluster aligned",
			    (unsigned long long)o);
			corrupt(k);
			continue;
		}
		ref(k, o, "data cluster");
		if (active) {
			k->res->allocated_clusters++;
			if (prev && o != prev + cs)
				k->res->fragmented_clusters++;
			prev = o;
			if ((o >> img->cluster_bits) < k->nclusters)
				check_copied(k, o, e & QCOW2_OFLAG_COPIED, "data cluster", e);
		}
	}
}

static void walk_l1(struct check *k, const uint64_t *l1, uint64_t n, bool active)
{
	struct qcow2_image *img = k->img;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t e = l1[i], o = e & QCOW2_OFFSET_MASK;
		if (e & QCOW2_L1_RESERVED) {
			say(k, "ERROR: L1 entry %llu (%#llx) has reserved bits set",
			    (unsigned long long)i, (unsigned long long)e);
			corrupt(k);
			continue;
		}
		if (!o)
			continue;
		if (o & (img->cluster_size - 1)) {
			say(k, "ERROR: L2 table at %#llx is not cluster aligned",
			    (unsigned long long)o);
			corrupt(k);
			continue;
		}
		if ((o >> img->cluster_bits) >= k->nclusters) {
			say(k, "ERROR: L2 table at %#llx outside the file", (unsigned long long)o);
			corrupt(k);
			continue;
		}
		ref(k, o, "L2 table");
		if (k->budget == 0) {
			say(k, "ERROR: too many L2 table references to walk");
			k->res->check_errors++;
			return;
		}
		k->budget--;
		if (active)
			check_copied(k, o, e & QCOW2_OFLAG_COPIED, "L2 table", e);
		walk_l2(k, o, active);
	}
}

static int walk_snapshots(struct check *k)
{
	struct qcow2_image *img = k->img;
	uint64_t off = img->snapshots_offset, pos = off;
	if (img->nb_snapshots > 65536 || off & (img->cluster_size - 1)) {
		say(k, "ERROR: snapshot table at %#llx (%u entries) is invalid",
		    (unsigned long long)off, img->nb_snapshots);
		corrupt(k);
		return 0;
	}
	for (uint32_t s = 0; s < img->nb_snapshots; s++) {
		uint8_t h[40];
		if (qcow2_pread(img, h, sizeof(h), pos, "snapshot table") < 0) {
			say(k, "ERROR: %s", err_msg());
			k->res->check_errors++;
			return 0;
		}
		uint64_t l1off = be64_get(h);
		uint32_t l1n = be32_get(h + 8);
		uint64_t len =
		    40 + (uint64_t)be32_get(h + 36) + be16_get(h + 12) + be16_get(h + 14);
		pos += (len + 7) & ~7ull;
		if ((uint64_t)l1n * 8 > QCOW2_MAX_L1_BYTES || l1off & (img->cluster_size - 1) ||
		    l1off + l1n * 8ull > img->file_size) {
			say(k, "ERROR: snapshot %u L1 table at %#llx is invalid", s,
			    (unsigned long long)l1off);
			corrupt(k);
			continue;
		}
		ref_range(k, l1off, l1n * 8ull, "snapshot L1 table");
		uint64_t *l1 = malloc(l1n * 8ull + 8);
		if (!l1)
			return -ENOMEM;
		if (qcow2_pread(img, l1, l1n * 8ull, l1off, "snapshot L1 table") == 0) {
			for (uint32_t i = 0; i < l1n; i++)
				l1[i] = be64_get(&l1[i]);
			walk_l1(k, l1, l1n, false);
		} else {
			k->res->check_errors++;
		}
		free(l1);
	}
	ref_range(k, off, pos - off, "snapshot table");
	return 0;
}

static int compare(struct check *k, uint64_t *leaked, size_t *nleaked, bool collect)
{
	struct qcow2_image *img = k->img;
	uint64_t end = 0;
	for (uint64_t c = 0; c < k->nclusters; c++) {
		uint64_t rc;
		if (qcow2_refcount_get(img, c, &rc) < 0) {
			say(k, "ERROR: %s", err_msg());
			k->res->check_errors++;
			continue;
		}
		if (k->refs[c] || rc)
			end = c + 1;
		if (rc < k->refs[c]) {
			say(k, "ERROR cluster %llu refcount=%llu reference=%u",
			    (unsigned long long)c, (unsigned long long)rc, k->refs[c]);
			corrupt(k);
		} else if (rc > k->refs[c]) {
			say(k, "Leaked cluster %llu refcount=%llu reference=%u",
			    (unsigned long long)c, (unsigned long long)rc, k->refs[c]);
			k->res->leaks++;
			if (collect) {
				leaked[2 * *nleaked] = c;
				leaked[2 * (*nleaked)++ + 1] = k->refs[c];
			}
		}
	}
	k->res->image_end_offset = end << img->cluster_bits;
	return 0;
}

static int check_once(const char *path, unsigned flags, struct qcow2_check_result *res,
		      FILE *log, uint64_t **leaked, size_t *nleaked)
{
	struct qcow2_image *img;
	int r = qcow2_open_image(
	    path, BLOCK_RDONLY | (flags & QCOW2_CHECK_FORCE_SHARE ? BLOCK_FORCE_SHARE : 0), &img);
	if (r < 0)
		return r;
	memset(res, 0, sizeof(*res));
	struct check k = {.img = img, .res = res, .log = log};
	uint64_t cs = img->cluster_size;
	k.nclusters = (img->file_size + cs - 1) >> img->cluster_bits;
	res->total_clusters = (img->bd.size + cs - 1) >> img->cluster_bits;
	k.budget = 16 * k.nclusters + 4096;
	if (k.nclusters > CHECK_MAX_CLUSTERS) {
		r = err_set(EFBIG, "%s: %llu clusters are too many to check", path,
			    (unsigned long long)k.nclusters);
		goto out;
	}
	k.refs = calloc(k.nclusters + 1, sizeof(*k.refs));
	k.l2buf = malloc(cs);
	*leaked = calloc(2 * k.nclusters + 2, sizeof(**leaked));
	if (!k.refs || !k.l2buf || !*leaked) {
		r = err_set(ENOMEM, "%s: check", path);
		goto out;
	}
	ref(&k, 0, "header");
	ref_range(&k, img->l1_offset, img->l1_size * 8ull, "L1 table");
	walk_l1(&k, img->l1, img->l1_size, true);
	ref_range(&k, img->rt_offset, (uint64_t)img->rt_clusters * cs, "refcount table");
	for (uint64_t t = 0; t < img->rt_entries; t++)
		if (img->rt[t])
			ref(&k, img->rt[t], "refcount block");
	if (img->nb_snapshots && (r = walk_snapshots(&k)) < 0) {
		r = err_set(ENOMEM, "%s: check", path);
		goto out;
	}
	compare(&k, *leaked, nleaked, true);
out:
	free(k.refs);
	free(k.l2buf);
	/* image_free is private to qcow2.c: close through the block layer. */
	block_close(&img->bd);
	return r;
}

/* LEAKED holds pairs (cluster, references found). */
static int repair_leaks(const char *path, const uint64_t *leaked, size_t n, FILE *log)
{
	struct qcow2_image *img;
	/* freeing leaked clusters changes no data: readers may stay */
	int r = qcow2_open_image(path, BLOCK_WRITE_UNCHANGED, &img);
	if (r < 0)
		return r;
	/* Lowering a leaked refcount to the true count is safe in any order:
	 * nothing references the difference. */
	for (size_t i = 0; i < n && r == 0; i++)
		r = qcow2_refcount_set(img, leaked[2 * i], leaked[2 * i + 1]);
	if (r == 0)
		r = qcow2_flush_metadata(img);
	if (r < 0 && log)
		fprintf(log, "ERROR: repair failed: %s\n", err_msg());
	block_close(&img->bd);
	return r;
}

int qcow2_check(const char *path, unsigned flags, struct qcow2_check_result *res, FILE *log)
{
	uint64_t *leaked = NULL;
	size_t nleaked = 0;
	int r = check_once(path, flags, res, log, &leaked, &nleaked);
	if (r < 0 || !(flags & QCOW2_CHECK_REPAIR_LEAKS) || !res->leaks) {
		free(leaked);
		return r;
	}
	uint64_t first_leaks = res->leaks;
	r = repair_leaks(path, leaked, nleaked, log);
	free(leaked);
	leaked = NULL;
	nleaked = 0;
	if (r < 0)
		return r;
	r = check_once(path, flags, res, NULL, &leaked, &nleaked);
	free(leaked);
	if (r == 0) {
		res->leaks_fixed = first_leaks - res->leaks;
		if (log && res->leaks_fixed)
			fprintf(log, "Repaired %llu leaked cluster(s)\n",
				(unsigned long long)res->leaks_fixed);
	}
	return r;
}
