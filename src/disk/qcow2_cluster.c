/* qcow2 cluster mapping: L1/L2 lookup with validation of every entry read
 * from the file, L2 allocation for writes, compressed clusters. */
#include "disk/qcow2_internal.h"
#include "util/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

static int l2_table_offset(struct qcow2_image *img, uint64_t l1i, uint64_t *l2off)
{
	uint64_t e = img->l1[l1i];
	uint64_t o = e & QCOW2_OFFSET_MASK;
	if (e & QCOW2_L1_RESERVED)
		return err_set(EUCLEAN, "%s: L1 entry %llu (%#llx) has reserved bits set",
			       img->bd.path, (unsigned long long)l1i, (unsigned long long)e);
	if (o & (img->cluster_size - 1))
		return err_set(EUCLEAN, "%s: L2 table at %#llx is not cluster aligned",
			       img->bd.path, (unsigned long long)o);
	if (o && o + img->cluster_size > img->file_size &&
	    o >= img->end_cluster * img->cluster_size)
		return err_set(EUCLEAN, "%s: L2 table at %#llx outside the file", img->bd.path,
			       (unsigned long long)o);
	if (o == 0 && (e & QCOW2_OFLAG_COPIED))
		return err_set(EUCLEAN, "%s: L1 entry %llu points at offset 0", img->bd.path,
			       (unsigned long long)l1i);
	*l2off = o;
	return 0;
}

/* Classify one L2 entry (and bitmap) for the subcluster SC. */
static int classify(struct qcow2_image *img, uint64_t e, uint64_t bitmap, unsigned sc,
		    enum qcow2_ctype *type, uint64_t *host)
{
	if (e & QCOW2_OFLAG_COMPRESSED) {
		*type = QCOW2_COMPRESSED;
		*host = e;
		return 0;
	}
	uint64_t o = e & QCOW2_OFFSET_MASK;
	bool zero_bit = e & QCOW2_OFLAG_ZERO;
	if ((e & QCOW2_L2_RESERVED) || (zero_bit && (img->version < 3 || img->extended_l2)))
		return err_set(EUCLEAN, "%s: L2 entry %#llx has reserved bits set", img->bd.path,
			       (unsigned long long)e);
	if (o & (img->cluster_size - 1))
		return err_set(EUCLEAN, "%s: data cluster at %#llx is not cluster aligned",
			       img->bd.path, (unsigned long long)o);
	if (o >= img->file_size && o >= img->end_cluster * img->cluster_size)
		return err_set(EUCLEAN, "%s: data cluster at %#llx outside the file", img->bd.path,
			       (unsigned long long)o);
	if (!o && (e & QCOW2_OFLAG_COPIED))
		return err_set(EUCLEAN, "%s: L2 entry points at offset 0", img->bd.path);
	if (img->extended_l2) {
		uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
		if (alloc & zero)
			return err_set(EUCLEAN, "%s: subcluster both allocated and zero (L2 %#llx)",
				       img->bd.path, (unsigned long long)e);
		if (alloc && !o)
			return err_set(EUCLEAN, "%s: allocated subclusters without a host cluster",
				       img->bd.path);
		if (alloc >> sc & 1) {
			*type = QCOW2_DATA;
			*host = o + ((uint64_t)sc << img->subcluster_bits);
		} else {
			*type = (zero >> sc & 1) ? QCOW2_ZERO : QCOW2_UNALLOCATED;
			*host = 0;
		}
		return 0;
	}
	if (zero_bit) {
		*type = QCOW2_ZERO;
		*host = 0;
	} else if (o) {
		*type = QCOW2_DATA;
		*host = o;
	} else {
		*type = QCOW2_UNALLOCATED;
		*host = 0;
	}
	return 0;
}

int qcow2_get_mapping(struct qcow2_image *img, uint64_t off, uint64_t max, uint64_t *bytes,
		      uint64_t *host, enum qcow2_ctype *type)
{
	uint64_t cs = img->cluster_size;
	uint64_t c = off >> img->cluster_bits;
	uint64_t l1i = c / img->l2_entries, l2i = c % img->l2_entries;
	uint64_t table_end = (l1i + 1) * img->l2_entries * cs;
	uint64_t l2off = 0;
	int r;
	*host = 0;
	if (l1i < img->l1_size && (r = l2_table_offset(img, l1i, &l2off)) < 0)
		return r;
	if (!l2off) {
		*type = QCOW2_UNALLOCATED;
		*bytes = table_end - off < max ? table_end - off : max;
		return 0;
	}
	uint64_t *t;
	if ((r = qcow2_cache_get(img, img->l2_cache, l2off, true, (void **)&t)) < 0)
		return r;
	unsigned w = img->l2_entry_words;
	uint64_t e = be64_get(&t[l2i * w]);
	uint64_t bm = w == 2 ? be64_get(&t[l2i * w + 1]) : 0;
	if (img->extended_l2 && !(e & QCOW2_OFLAG_COMPRESSED)) {
		uint64_t scs = 1ull << img->subcluster_bits;
		unsigned sc = (unsigned)((off & (cs - 1)) >> img->subcluster_bits);
		if ((r = classify(img, e, bm, sc, type, host)) < 0)
			return r;
		uint64_t run = scs - (off & (scs - 1));
		uint64_t h;
		enum qcow2_ctype ty;
		for (unsigned k = sc + 1; k < 32 && run < max; k++) {
			if (classify(img, e, bm, k, &ty, &h) < 0 || ty != *type)
				break;
			run += scs;
		}
		*bytes = run < max ? run : max;
		if (*type == QCOW2_DATA)
			*host += off & (scs - 1);
		return 0;
	}
	if ((r = classify(img, e, bm, 0, type, host)) < 0)
		return r;
	uint64_t run = cs - (off & (cs - 1));
	if (*type == QCOW2_COMPRESSED) {
		*bytes = run < max ? run : max;
		return 0;
	}
	uint64_t first_host = *host;
	for (uint64_t k = l2i + 1; k < img->l2_entries && run < max; k++) {
		uint64_t h;
		enum qcow2_ctype ty;
		uint64_t e2 = be64_get(&t[k * w]);
		if (classify(img, e2, 0, 0, &ty, &h) < 0 || ty != *type)
			break;
		if (ty == QCOW2_DATA && h != first_host + (k - l2i) * cs)
			break;
		run += cs;
	}
	*bytes = run < max ? run : max;
	if (*type == QCOW2_DATA)
		*host += off & (cs - 1);
	return 0;
}

static int inflate_zlib(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)inlen;
	z.next_out = out;
	z.avail_out = (uInt)outlen;
	int zr = inflate(&z, Z_FINISH);
	size_t produced = outlen - z.avail_out;
	inflateEnd(&z);
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) || produced != outlen)
		return -EILSEQ;
	return 0;
}

static int inflate_zstd(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	if (!d)
		return -ENOMEM;
	ZSTD_inBuffer ib = {in, inlen, 0};
	ZSTD_outBuffer ob = {out, outlen, 0};
	int r = 0;
	while (ob.pos < outlen) {
		size_t zr = ZSTD_decompressStream(d, &ob, &ib);
		if (ZSTD_isError(zr)) {
			r = -EILSEQ;
			break;
		}
		if (ib.pos == inlen && ob.pos < outlen) {
			if (zr == 0 || ob.pos == 0) {
				r = -EILSEQ;
				break;
			}
			/* flush what is buffered */
			size_t before = ob.pos;
			zr = ZSTD_decompressStream(d, &ob, &ib);
			if (ZSTD_isError(zr) || ob.pos == before) {
				r = -EILSEQ;
				break;
			}
		}
	}
	ZSTD_freeDCtx(d);
	return r;
}

int qcow2_read_compressed(struct qcow2_image *img, uint64_t entry, uint8_t **cluster)
{
	uint64_t cs = img->cluster_size;
	if (!img->zcache) {
		img->zcache = malloc(cs);
		img->zbuf = malloc(2 * cs);
		if (!img->zcache || !img->zbuf)
			return err_set(ENOMEM, "%s: compressed cluster buffer", img->bd.path);
	} else if (img->zcache_entry == entry) {
		*cluster = img->zcache;
		return 0;
	}
	unsigned x = 62 - (img->cluster_bits - 8);
	uint64_t off = entry & ((1ull << x) - 1);
	uint64_t nsec = (entry >> x) & ((1ull << (img->cluster_bits - 8)) - 1);
	uint64_t end = (off & ~511ull) + (nsec + 1) * 512;
	if (off >> 56 || off >= img->file_size)
		return err_set(EUCLEAN, "%s: compressed cluster at %#llx outside the file",
			       img->bd.path, (unsigned long long)off);
	if (end > img->file_size)
		end = img->file_size;
	size_t len = (size_t)(end - off);
	img->zcache_entry = 0;
	int r = qcow2_pread(img, img->zbuf, len, off, "compressed cluster");
	if (r < 0)
		return r;
	r = img->compression_type == 1 ? inflate_zstd(img->zbuf, len, img->zcache, cs)
				       : inflate_zlib(img->zbuf, len, img->zcache, cs);
	if (r < 0)
		return err_set(-r, "%s: compressed cluster at %#llx does not decompress",
			       img->bd.path, (unsigned long long)off);
	img->zcache_entry = entry;
	*cluster = img->zcache;
	return 0;
}

int qcow2_get_l2_slot(struct qcow2_image *img, uint64_t off, bool alloc, uint64_t **table,
		      uint64_t *index)
{
	uint64_t c = off >> img->cluster_bits;
	uint64_t l1i = c / img->l2_entries;
	uint64_t l2off;
	int r;
	*table = NULL;
	*index = c % img->l2_entries;
	if (l1i >= img->l1_size)
		return err_set(EUCLEAN, "%s: offset %#llx beyond the L1 table", img->bd.path,
			       (unsigned long long)off);
	if ((r = l2_table_offset(img, l1i, &l2off)) < 0)
		return r;
	if (l2off)
		return qcow2_cache_get(img, img->l2_cache, l2off, true, (void **)table);
	if (!alloc)
		return 0;
	if ((r = qcow2_alloc_clusters(img, 1, &l2off)) < 0)
		return r;
	if ((r = qcow2_cache_get(img, img->l2_cache, l2off, false, (void **)table)) < 0)
		return r;
	qcow2_cache_mark_dirty(img->l2_cache, *table);
	img->l1[l1i] = l2off | QCOW2_OFLAG_COPIED;
	if (!img->l1_dirty || l1i < img->l1_dirty_lo)
		img->l1_dirty_lo = (uint32_t)l1i;
	if (!img->l1_dirty || l1i + 1 > img->l1_dirty_hi)
		img->l1_dirty_hi = (uint32_t)l1i + 1;
	img->l1_dirty = true;
	return 0;
}

int qcow2_write_l1(struct qcow2_image *img)
{
	/* Whole 512-byte sectors around the dirty entries. */
	uint64_t lo = img->l1_dirty_lo & ~63u, hi = ((uint64_t)img->l1_dirty_hi + 63) & ~63ull;
	if (hi > img->l1_size)
		hi = img->l1_size;
	uint64_t n = hi - lo;
	uint64_t *buf = malloc(n * 8 + 8);
	if (!buf)
		return err_set(ENOMEM, "%s: L1 table", img->bd.path);
	for (uint64_t i = 0; i < n; i++)
		be64_put(&buf[i], img->l1[lo + i]);
	int r = qcow2_pwrite(img, buf, n * 8, img->l1_offset + lo * 8, "L1 table");
	free(buf);
	if (r == 0)
		img->l1_dirty = false;
	return r;
}

int qcow2_release_entry(struct qcow2_image *img, uint64_t e)
{
	int r = 0;
	if (e & QCOW2_OFLAG_COMPRESSED) {
		unsigned x = 62 - (img->cluster_bits - 8);
		uint64_t off = e & ((1ull << x) - 1);
		uint64_t nsec = (e >> x) & ((1ull << (img->cluster_bits - 8)) - 1);
		uint64_t end = (off & ~511ull) + (nsec + 1) * 512;
		for (uint64_t c = off >> img->cluster_bits;
		     r == 0 && c <= (end - 1) >> img->cluster_bits; c++)
			r = qcow2_defer_free(img, c);
		return r;
	}
	uint64_t o = e & QCOW2_OFFSET_MASK;
	return o ? qcow2_defer_free(img, o >> img->cluster_bits) : 0;
}
