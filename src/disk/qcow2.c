/* qcow2 images: header parsing and validation, open/close, and the read,
 * write, discard and flush paths behind struct block_ops. */
#include "disk/qcow2.h"
#include "disk/qcow2_internal.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- file access ------------------------------------------------------ */

int qcow2_pread(struct qcow2_image *img, void *buf, size_t len, uint64_t off, const char *what)
{
	int r = file_pread_all(img->fd, buf, len, off);
	if (r == -EIO && off + len > img->file_size) {
		/* A table or cluster that runs past the end of the file. */
		return err_set(EUCLEAN, "%s: %s at %#llx (%zu bytes) runs past the end of the file",
			       img->bd.path, what, (unsigned long long)off, len);
	}
	return r < 0 ? err_set(-r, "%s: reading %s at %#llx", img->bd.path, what,
			       (unsigned long long)off)
		     : 0;
}

int qcow2_pwrite(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
		 const char *what)
{
	int r = file_pwrite_all(img->fd, buf, len, off);
	if (r < 0)
		return err_set(-r, "%s: writing %s at %#llx", img->bd.path, what,
			       (unsigned long long)off);
	img->unsynced = true;
	if (off + len > img->file_size)
		img->file_size = off + len;
	return 0;
}

int qcow2_sync(struct qcow2_image *img)
{
	if (fdatasync(img->fd) < 0)
		return err_set(errno, "%s: fdatasync", img->bd.path);
	img->unsynced = false;
	img->data_unsynced = false;
	return 0;
}

/* ---- header ----------------------------------------------------------- */

static const char *feature_name(const uint8_t *table, size_t len, unsigned type, unsigned bit,
				char *buf, size_t bufsz)
{
	for (size_t i = 0; i + 48 <= len; i += 48) {
		if (table[i] == type && table[i + 1] == bit) {
			size_t n = strnlen((const char *)table + i + 2, 46);
			snprintf(buf, bufsz, "%.*s", (int)n, (const char *)table + i + 2);
			return buf;
		}
	}
	snprintf(buf, bufsz, "bit %u", bit);
	return buf;
}

static int refuse_features(struct qcow2_image *img, uint64_t unknown, const uint8_t *names,
			   size_t names_len)
{
	char list[512] = "", one[64];
	size_t used = 0;
	for (unsigned b = 0; b < 64; b++) {
		if (!(unknown >> b & 1))
			continue;
		feature_name(names, names_len, 0, b, one, sizeof(one));
		int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", one);
		if (n > 0 && (size_t)n < sizeof(list) - used)
			used += (size_t)n;
	}
	return err_set(ENOTSUP, "%s: unsupported incompatible qcow2 features: %s", img->bd.path,
		       list);
}

/* Header extensions: remember the backing format, keep unknown ones. */
static int parse_extensions(struct qcow2_image *img, const uint8_t *c, size_t clen,
			    const uint8_t **names, size_t *names_len)
{
	size_t pos = img->version >= 3 ? img->header_length : 72;
	size_t keep_from = 0, keep_len = 0;
	uint8_t *keep = malloc(clen);
	if (!keep)
		return err_set(ENOMEM, "%s: header", img->bd.path);
	for (;;) {
		if (pos + 8 > clen) {
			free(keep);
			return err_set(EUCLEAN, "%s: header extensions run past the first cluster",
				       img->bd.path);
		}
		uint32_t type = be32_get(c + pos), len = be32_get(c + pos + 4);
		if (type == QCOW2_EXT_END)
			break;
		if (len > clen - pos - 8) {
			free(keep);
			return err_set(EUCLEAN, "%s: header extension %#x of %u bytes is too long",
				       img->bd.path, type, len);
		}
		const uint8_t *data = c + pos + 8;
		size_t total = 8 + (((size_t)len + 7) & ~(size_t)7);
		if (total > clen - pos)
			total = clen - pos;
		if (type == QCOW2_EXT_BACKING_FMT) {
			if (len == 0 || len > 16 || memchr(data, 0, len)) {
				free(keep);
				return err_set(EUCLEAN, "%s: bad backing format extension",
					       img->bd.path);
			}
			free(img->backing_fmt);
			img->backing_fmt = strndup((const char *)data, len);
		} else {
			if (type == QCOW2_EXT_FEATURE_NAMES) {
				*names = data;
				*names_len = len;
			}
			memcpy(keep + keep_len, c + pos, total);
			keep_len += total;
		}
		pos += total;
		(void)keep_from;
	}
	img->unknown_ext = keep;
	img->unknown_ext_len = keep_len;
	return 0;
}

static int parse_header(struct qcow2_image *img, const uint8_t *h, size_t hlen)
{
	const char *path = img->bd.path;
	if (hlen < 72 || be32_get(h) != QCOW2_MAGIC)
		return err_set(EINVAL, "%s: not a qcow2 image", path);
	img->version = be32_get(h + 4);
	if (img->version != 2 && img->version != 3)
		return err_set(ENOTSUP, "%s: qcow2 version %u is not supported", path,
			       img->version);
	uint64_t backing_off = be64_get(h + 8);
	uint32_t backing_len = be32_get(h + 16);
	img->cluster_bits = be32_get(h + 20);
	if (img->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    img->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return err_set(ENOTSUP, "%s: cluster_bits %u outside 9..21", path,
			       img->cluster_bits);
	img->cluster_size = 1ull << img->cluster_bits;
	img->bd.size = be64_get(h + 24);
	if (be32_get(h + 32))
		return err_set(ENOTSUP, "%s: encrypted qcow2 images are not supported", path);
	img->l1_size = be32_get(h + 36);
	img->l1_offset = be64_get(h + 40);
	img->rt_offset = be64_get(h + 48);
	img->rt_clusters = be32_get(h + 56);
	img->nb_snapshots = be32_get(h + 60);
	img->snapshots_offset = be64_get(h + 64);
	img->refcount_order = 4;
	img->header_length = 72;
	if (img->version >= 3) {
		if (hlen < 104)
			return err_set(EUCLEAN, "%s: truncated v3 header", path);
		img->incompat = be64_get(h + 72);
		img->compat = be64_get(h + 80);
		img->autoclear = be64_get(h + 88);
		img->refcount_order = be32_get(h + 96);
		img->header_length = be32_get(h + 100);
		if (img->header_length < 104 || img->header_length % 8 ||
		    img->header_length > img->cluster_size || img->header_length > hlen)
			return err_set(EUCLEAN, "%s: bad header length %u", path,
				       img->header_length);
		if (img->header_length > 104)
			img->compression_type = h[104];
	}
	if (img->refcount_order > 6)
		return err_set(EUCLEAN, "%s: refcount_order %u above 6", path, img->refcount_order);
	if ((img->compression_type != 0) != !!(img->incompat & QCOW2_INCOMPAT_COMPRESSION) ||
	    img->compression_type > 1)
		return err_set(ENOTSUP, "%s: unsupported compression type %u", path,
			       img->compression_type);
	img->extended_l2 = img->incompat & QCOW2_INCOMPAT_EXTL2;
	if (img->extended_l2 && img->cluster_bits < 14)
		return err_set(EUCLEAN, "%s: extended L2 entries need clusters of 16 KiB or more",
			       path);
	img->l2_entry_words = img->extended_l2 ? 2 : 1;
	img->l2_entries = img->cluster_size / (8 * img->l2_entry_words);
	img->subcluster_bits = img->extended_l2 ? img->cluster_bits - 5 : img->cluster_bits;

	if (img->bd.size > (1ull << 62))
		return err_set(EFBIG, "%s: virtual size %llu is absurd", path,
			       (unsigned long long)img->bd.size);
	uint64_t clusters = (img->bd.size + img->cluster_size - 1) >> img->cluster_bits;
	uint64_t need_l1 = (clusters + img->l2_entries - 1) / img->l2_entries;
	if ((uint64_t)img->l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return err_set(EFBIG, "%s: L1 table of %u entries is too large", path,
			       img->l1_size);
	if (img->l1_size < need_l1)
		return err_set(EUCLEAN, "%s: L1 table of %u entries too small for %llu bytes", path,
			       img->l1_size, (unsigned long long)img->bd.size);
	if (img->l1_offset & (img->cluster_size - 1))
		return err_set(EUCLEAN, "%s: L1 table at %#llx is not cluster aligned", path,
			       (unsigned long long)img->l1_offset);
	if (img->l1_size && (img->l1_offset > img->file_size ||
			     img->l1_size * 8ull > img->file_size - img->l1_offset))
		return err_set(EUCLEAN, "%s: L1 table at %#llx outside the file", path,
			       (unsigned long long)img->l1_offset);

	size_t clen = hlen < img->cluster_size ? hlen : img->cluster_size;
	const uint8_t *names = NULL;
	size_t names_len = 0;
	int r = parse_extensions(img, h, clen, &names, &names_len);
	if (r < 0)
		return r;
	uint64_t unknown = img->incompat & ~QCOW2_INCOMPAT_KNOWN;
	if (img->incompat & QCOW2_INCOMPAT_DATA_FILE)
		unknown |= QCOW2_INCOMPAT_DATA_FILE;
	if (unknown)
		return refuse_features(img, unknown, names, names_len);
	if (backing_off) {
		if (backing_len == 0 || backing_len > QCOW2_MAX_BACKING_NAME ||
		    backing_off > clen || backing_len > clen - backing_off)
			return err_set(EUCLEAN,
				       "%s: backing file name at %#llx (%u bytes) is invalid", path,
				       (unsigned long long)backing_off, backing_len);
		if (memchr(h + backing_off, 0, backing_len))
			return err_set(EUCLEAN, "%s: backing file name contains a NUL byte", path);
		img->backing_name = strndup((const char *)h + backing_off, backing_len);
		if (!img->backing_name)
			return err_set(ENOMEM, "%s", path);
	}
	img->hdr_raw = malloc(img->header_length);
	if (!img->hdr_raw)
		return err_set(ENOMEM, "%s", path);
	memcpy(img->hdr_raw, h, img->header_length);
	return 0;
}

int qcow2_header_build(struct qcow2_image *img, uint8_t *buf)
{
	uint32_t hl =
	    img->header_length < QCOW2_V3_HEADER_LEN ? QCOW2_V3_HEADER_LEN : img->header_length;
	if (img->hdr_raw)
		memcpy(buf, img->hdr_raw, img->header_length);
	be32_put(buf, QCOW2_MAGIC);
	be32_put(buf + 4, 3);
	be32_put(buf + 20, img->cluster_bits);
	be64_put(buf + 24, img->bd.size);
	be32_put(buf + 32, 0);
	be32_put(buf + 36, img->l1_size);
	be64_put(buf + 40, img->l1_offset);
	be64_put(buf + 48, img->rt_offset);
	be32_put(buf + 56, img->rt_clusters);
	be32_put(buf + 60, img->nb_snapshots);
	be64_put(buf + 64, img->snapshots_offset);
	be64_put(buf + 72, img->incompat);
	be64_put(buf + 80, img->compat);
	be64_put(buf + 88, img->autoclear);
	be32_put(buf + 96, img->refcount_order);
	be32_put(buf + 100, hl);
	buf[104] = img->compression_type;
	size_t pos = hl;
	size_t cs = img->cluster_size;
	size_t fmt_len = img->backing_fmt ? strlen(img->backing_fmt) : 0;
	size_t name_len = img->backing_name ? strlen(img->backing_name) : 0;
	size_t need = pos + (fmt_len ? 8 + ((fmt_len + 7) & ~(size_t)7) : 0) +
		      img->unknown_ext_len + 8 + name_len;
	if (need > cs)
		return err_set(ENOSPC,
			       "%s: header and backing name (%zu bytes) do not fit in a "
			       "cluster of %zu bytes",
			       img->bd.path, need, cs);
	if (fmt_len && img->backing_name) {
		be32_put(buf + pos, QCOW2_EXT_BACKING_FMT);
		be32_put(buf + pos + 4, (uint32_t)fmt_len);
		memcpy(buf + pos + 8, img->backing_fmt, fmt_len);
		pos += 8 + ((fmt_len + 7) & ~(size_t)7);
	}
	if (img->unknown_ext_len) {
		memcpy(buf + pos, img->unknown_ext, img->unknown_ext_len);
		pos += img->unknown_ext_len;
	}
	memset(buf + pos, 0, 8); /* end of extensions */
	pos += 8;
	if (name_len) {
		be64_put(buf + 8, pos);
		be32_put(buf + 16, (uint32_t)name_len);
		memcpy(buf + pos, img->backing_name, name_len);
		pos += name_len;
	} else {
		be64_put(buf + 8, 0);
		be32_put(buf + 16, 0);
	}
	return (int)pos;
}

int qcow2_write_header(struct qcow2_image *img)
{
	uint8_t *buf = calloc(1, img->cluster_size);
	if (!buf)
		return err_set(ENOMEM, "%s: header", img->bd.path);
	int len = qcow2_header_build(img, buf);
	int r = len;
	if (len >= 0) {
		/* Whole sectors, and never less than what the old header used. */
		size_t n = ((size_t)len + 511) & ~(size_t)511;
		if (n > img->cluster_size)
			n = img->cluster_size;
		r = qcow2_pwrite(img, buf, n, 0, "header");
	}
	free(buf);
	return r < 0 ? r : 0;
}

/* ---- open / close ----------------------------------------------------- */

static void image_free(struct qcow2_image *img)
{
	if (!img)
		return;
	qcow2_layer_index_close(img->layers);
	qcow2_cache_free(img->l2_cache);
	qcow2_cache_free(img->rb_cache);
	if (img->fd >= 0)
		close(img->fd);
	free(img->l1);
	free(img->rt);
	free(img->backing_name);
	free(img->backing_fmt);
	free(img->unknown_ext);
	free(img->pending_free);
	free(img->zcache);
	free(img->zbuf);
	free(img->cow_buf);
	free(img->hdr_raw);
	free(img->bd.path);
	free(img);
}

static int l2_barrier(struct qcow2_image *img)
{
	return qcow2_flush_refcounts(img);
}

static int refuse_write(struct qcow2_image *img)
{
	const char *p = img->bd.path;
	if (img->version < 3)
		return err_set(EROFS,
			       "%s: qcow2 version 2 images are read-only here; "
			       "upgrade with qemu-img amend -o compat=1.1",
			       p);
	if (img->incompat & QCOW2_INCOMPAT_CORRUPT)
		return err_set(EROFS, "%s: image is marked corrupt; repair it first", p);
	if (img->incompat & QCOW2_INCOMPAT_DIRTY)
		return err_set(EROFS,
			       "%s: image has the dirty bit set (lazy refcounts); "
			       "repair it with qemu-img check -r all",
			       p);
	if (img->extended_l2)
		return err_set(EROFS, "%s: images with extended L2 entries are read-only here", p);
	if (img->nb_snapshots)
		return err_set(EROFS, "%s: images with internal snapshots are read-only here", p);
	return 0;
}

static int image_setup(struct qcow2_image *img)
{
	int r;
	size_t l1_bytes = (size_t)img->l1_size * 8;
	img->l1 = malloc(l1_bytes ? l1_bytes : 8);
	if (!img->l1)
		return err_set(ENOMEM, "%s: L1 table", img->bd.path);
	if (l1_bytes && (r = qcow2_pread(img, img->l1, l1_bytes, img->l1_offset, "L1 table")) < 0)
		return r;
	for (uint32_t i = 0; i < img->l1_size; i++)
		img->l1[i] = be64_get(&img->l1[i]);
	img->end_cluster = (img->file_size + img->cluster_size - 1) >> img->cluster_bits;
	if ((r = qcow2_refcount_init(img)) < 0)
		return r;
	/* Cache enough L2 tables to map the whole disk, within 32 MiB. */
	uint64_t slots = img->l1_size;
	uint64_t max_slots = (32u << 20) >> img->cluster_bits;
	if (max_slots > 1024)
		max_slots = 1024;
	if (slots > max_slots)
		slots = max_slots;
	if (slots < 8)
		slots = 8;
	img->l2_cache = qcow2_cache_new((unsigned)slots, img->cluster_size, l2_barrier, "L2 table");
	img->rb_cache = qcow2_cache_new(16, img->cluster_size, NULL, "refcount block");
	if (!img->l2_cache || !img->rb_cache)
		return err_set(ENOMEM, "%s: metadata caches", img->bd.path);
	return 0;
}

static const struct block_ops qcow2_ops;

int qcow2_open_image(const char *path, unsigned flags, struct qcow2_image **out)
{
	struct qcow2_image *img = calloc(1, sizeof(*img));
	if (!img)
		return err_set(ENOMEM, "%s", path);
	img->fd = -1;
	img->bd.ops = &qcow2_ops;
	img->bd.format = "qcow2";
	img->bd.readonly = flags & BLOCK_RDONLY;
	img->bd.path = strdup(path);
	int r;
	uint8_t *h = NULL;
	if (!img->bd.path) {
		r = err_set(ENOMEM, "%s", path);
		goto fail;
	}
	img->fd = file_open_image(path, img->bd.readonly ? O_RDONLY : O_RDWR);
	struct stat st;
	if (img->fd < 0) {
		r = img->fd;
		goto fail;
	}
	img->bd.lock_fd = img->fd;
	img->bd.flags = flags;
	if ((r = block_lock_image(img->fd, path, flags)) < 0)
		goto fail;
	if (fstat(img->fd, &st) < 0) {
		r = err_set(errno, "%s", path);
		goto fail;
	}
	img->file_size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(img->fd, 0, SEEK_END);
		img->file_size = end < 0 ? 0 : (uint64_t)end;
	}
	/* The header and its extensions live in the first cluster (<= 2 MiB). */
	size_t hlen = img->file_size < (2u << 20) ? (size_t)img->file_size : (2u << 20);
	h = calloc(1, hlen + 8);
	if (!h) {
		r = err_set(ENOMEM, "%s", path);
		goto fail;
	}
	if (hlen && (r = qcow2_pread(img, h, hlen, 0, "header")) < 0)
		goto fail;
	if ((r = parse_header(img, h, hlen)) < 0 || (r = image_setup(img)) < 0)
		goto fail;
	if (!img->bd.readonly) {
		if ((r = refuse_write(img)) < 0)
			goto fail;
		if (img->autoclear) {
			/* We keep no bitmaps up to date: say so, as the spec asks. */
			img->autoclear = 0;
			if ((r = qcow2_write_header(img)) < 0 || (r = qcow2_sync(img)) < 0)
				goto fail;
		}
	}
	free(h);
	*out = img;
	return 0;
fail:
	free(h);
	image_free(img);
	return r;
}

int qcow2_open(const char *path, unsigned flags, struct block_dev **out)
{
	struct qcow2_image *img;
	int r = qcow2_open_image(path, flags, &img);
	if (r < 0)
		return r;
	if (img->backing_name && !(flags & BLOCK_NO_BACKING)) {
		r = qcow2_layer_index_open(img, &img->layers);
		if (r < 0) {
			image_free(img);
			return r;
		}
	}
	*out = &img->bd;
	return 0;
}

static void qcow2_close(struct block_dev *bd)
{
	struct qcow2_image *img = to_qcow2(bd);
	if (!bd->readonly && qcow2_flush_metadata(img) < 0)
		fprintf(stderr, "cairn: %s\n", err_msg());
	image_free(img);
}

/* ---- read ------------------------------------------------------------- */

static int read_backing(struct qcow2_image *img, uint8_t *buf, uint64_t off, size_t len)
{
	if (img->layers)
		return qcow2_layer_index_read(img->layers, buf, off, len);
	memset(buf, 0, len);
	return 0;
}

static int read_data(struct qcow2_image *img, uint8_t *buf, uint64_t host, size_t len)
{
	/* Data past the end of the file (a crash before the cluster was
	 * written in full) reads as zeroes, like a sparse tail. */
	if (host >= img->file_size) {
		memset(buf, 0, len);
		return 0;
	}
	size_t n = len;
	if (host + len > img->file_size) {
		n = (size_t)(img->file_size - host);
		memset(buf + n, 0, len - n);
	}
	return qcow2_pread(img, buf, n, host, "data cluster");
}

static int qcow2_read(struct block_dev *bd, void *vbuf, uint64_t off, size_t len)
{
	struct qcow2_image *img = to_qcow2(bd);
	uint8_t *buf = vbuf;
	while (len) {
		uint64_t n, host;
		enum qcow2_ctype type;
		int r = qcow2_get_mapping(img, off, len, &n, &host, &type);
		if (r < 0)
			return r;
		switch (type) {
		case QCOW2_UNALLOCATED:
			r = read_backing(img, buf, off, (size_t)n);
			break;
		case QCOW2_ZERO:
			memset(buf, 0, (size_t)n);
			break;
		case QCOW2_DATA:
			r = read_data(img, buf, host, (size_t)n);
			break;
		case QCOW2_COMPRESSED: {
			uint8_t *c;
			r = qcow2_read_compressed(img, host, &c);
			if (r == 0)
				memcpy(buf, c + (off & (img->cluster_size - 1)), (size_t)n);
			break;
		}
		}
		if (r < 0)
			return r;
		buf += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

static int qcow2_status(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *pnum,
			unsigned *status, uint64_t *host)
{
	struct qcow2_image *img = to_qcow2(bd);
	enum qcow2_ctype type;
	int r = qcow2_get_mapping(img, off, len, pnum, host, &type);
	if (r < 0)
		return r;
	static const unsigned map[] = {
	    [QCOW2_UNALLOCATED] = 0,
	    [QCOW2_ZERO] = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO,
	    [QCOW2_DATA] = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA,
	    [QCOW2_COMPRESSED] =
		BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA | BLOCK_STATUS_COMPRESSED,
	};
	*status = map[type];
	if (type == QCOW2_COMPRESSED) {
		unsigned x = 62 - (img->cluster_bits - 8);
		*host &= (1ull << x) - 1;
	} else if (type != QCOW2_DATA) {
		*host = 0;
	}
	return 0;
}

/* ---- write ------------------------------------------------------------ */

static void l2_set(struct qcow2_image *img, uint64_t *t, uint64_t idx, uint64_t e)
{
	be64_put(&t[idx], e);
	qcow2_cache_mark_dirty(img->l2_cache, t);
}

/* The current content of the guest cluster at CL_OFF described by entry E
 * (this layer, else the chain), into img->cow_buf. */
static int cow_fill(struct qcow2_image *img, uint64_t cl_off, uint64_t e)
{
	uint64_t cs = img->cluster_size;
	uint8_t *b = img->cow_buf;
	uint64_t n = img->bd.size - cl_off < cs ? img->bd.size - cl_off : cs;
	memset(b + n, 0, (size_t)(cs - n));
	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint8_t *c;
		int r = qcow2_read_compressed(img, e, &c);
		if (r == 0)
			memcpy(b, c, (size_t)n);
		return r;
	}
	if (e & QCOW2_OFLAG_ZERO) {
		memset(b, 0, (size_t)n);
		return 0;
	}
	if (e & QCOW2_OFFSET_MASK)
		return read_data(img, b, e & QCOW2_OFFSET_MASK, (size_t)n);
	return read_backing(img, b, cl_off, (size_t)n);
}

/* Entries that can be overwritten in place: a plain data cluster of ours. */
static bool in_place(uint64_t e)
{
	return (e & QCOW2_OFLAG_COPIED) && (e & QCOW2_OFFSET_MASK) &&
	       !(e & (QCOW2_OFLAG_COMPRESSED | QCOW2_OFLAG_ZERO));
}

/* Allocate-and-write a run of whole clusters that all need new clusters. */
static int write_new_run(struct qcow2_image *img, const uint8_t *buf, uint64_t off,
			 uint64_t nclusters)
{
	uint64_t host, *t, idx;
	int r = qcow2_alloc_clusters(img, nclusters, &host);
	if (r < 0)
		return r;
	uint64_t cs = img->cluster_size;
	if ((r = qcow2_pwrite(img, buf, nclusters * cs, host, "data")) < 0)
		return r;
	img->data_unsynced = true;
	if ((r = qcow2_get_l2_slot(img, off, true, &t, &idx)) < 0)
		return r;
	for (uint64_t k = 0; k < nclusters; k++) {
		uint64_t old = be64_get(&t[idx + k]);
		l2_set(img, t, idx + k, (host + k * cs) | QCOW2_OFLAG_COPIED);
		if ((r = qcow2_release_entry(img, old)) < 0)
			return r;
	}
	return 0;
}

static int write_partial(struct qcow2_image *img, const uint8_t *buf, uint64_t off, size_t n,
			 uint64_t e)
{
	uint64_t cs = img->cluster_size, cl_off = off & ~(cs - 1);
	int r;
	if (!img->cow_buf && !(img->cow_buf = malloc(cs)))
		return err_set(ENOMEM, "%s: copy-on-write buffer", img->bd.path);
	if ((r = cow_fill(img, cl_off, e)) < 0)
		return r;
	memcpy(img->cow_buf + (off - cl_off), buf, n);
	uint64_t host, *t, idx;
	if ((r = qcow2_alloc_clusters(img, 1, &host)) < 0)
		return r;
	if ((r = qcow2_pwrite(img, img->cow_buf, cs, host, "data")) < 0)
		return r;
	img->data_unsynced = true;
	if ((r = qcow2_get_l2_slot(img, off, true, &t, &idx)) < 0)
		return r;
	l2_set(img, t, idx, host | QCOW2_OFLAG_COPIED);
	return qcow2_release_entry(img, e);
}

static int qcow2_write(struct block_dev *bd, const void *vbuf, uint64_t off, size_t len)
{
	struct qcow2_image *img = to_qcow2(bd);
	const uint8_t *buf = vbuf;
	uint64_t cs = img->cluster_size;
	while (len) {
		uint64_t *t, idx;
		int r = qcow2_get_l2_slot(img, off, true, &t, &idx);
		if (r < 0)
			return r;
		uint64_t e = be64_get(&t[idx]);
		uint64_t in = off & (cs - 1);
		size_t n = cs - in < len ? (size_t)(cs - in) : len;
		if (in_place(e)) {
			/* Extend over following clusters contiguous in the file. */
			uint64_t host = e & QCOW2_OFFSET_MASK;
			for (uint64_t k = 1; n < len && idx + k < img->l2_entries; k++) {
				uint64_t e2 = be64_get(&t[idx + k]);
				if (!in_place(e2) || (e2 & QCOW2_OFFSET_MASK) != host + k * cs)
					break;
				n += len - n < cs ? len - n : (size_t)cs;
			}
			r = qcow2_pwrite(img, buf, n, host + in, "data");
		} else if (in == 0 && n == cs) {
			/* Whole clusters: extend over the following ones that also
			 * need allocation, within this L2 table. */
			uint64_t k = 1;
			while ((k + 1) * cs <= len && idx + k < img->l2_entries &&
			       !in_place(be64_get(&t[idx + k])))
				k++;
			r = write_new_run(img, buf, off, k);
			n = (size_t)(k * cs);
		} else {
			r = write_partial(img, buf, off, n, e);
		}
		if (r < 0)
			return r;
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Whole clusters in [off, off+len) become zero (or unallocated when there
 * is no backing file); partial clusters get written zeroes when
 * WRITE_PARTIAL, else are left alone (discard is advisory). */
static int zero_range(struct qcow2_image *img, uint64_t off, uint64_t len, bool write_partial)
{
	uint64_t cs = img->cluster_size;
	static const uint8_t zeroes[4096];
	while (len) {
		uint64_t in = off & (cs - 1);
		uint64_t n = cs - in < len ? cs - in : len;
		bool whole = in == 0 && (n == cs || off + n == img->bd.size);
		int r = 0;
		if (whole) {
			uint64_t *t, idx;
			bool need = img->backing_name != NULL;
			if ((r = qcow2_get_l2_slot(img, off, need, &t, &idx)) < 0)
				return r;
			if (t) {
				uint64_t e = be64_get(&t[idx]);
				uint64_t ne = img->backing_name ? QCOW2_OFLAG_ZERO : 0;
				if (e != ne) {
					l2_set(img, t, idx, ne);
					r = qcow2_release_entry(img, e);
				}
			}
		} else if (write_partial) {
			uint64_t m, host;
			enum qcow2_ctype type;
			if ((r = qcow2_get_mapping(img, off, n, &m, &host, &type)) < 0)
				return r;
			bool zero =
			    type == QCOW2_ZERO || (type == QCOW2_UNALLOCATED && !img->layers);
			for (uint64_t done = 0; !zero && r == 0 && done < n;) {
				size_t k =
				    n - done < sizeof(zeroes) ? (size_t)(n - done) : sizeof(zeroes);
				r = qcow2_write(&img->bd, zeroes, off + done, k);
				done += k;
			}
		}
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static int qcow2_discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	return zero_range(to_qcow2(bd), off, len, false);
}

static int qcow2_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	return zero_range(to_qcow2(bd), off, len, true);
}

static int qcow2_flush(struct block_dev *bd)
{
	return qcow2_flush_metadata(to_qcow2(bd));
}

static const struct block_ops qcow2_ops = {
    .read = qcow2_read,
    .write = qcow2_write,
    .flush = qcow2_flush,
    .discard = qcow2_discard,
    .write_zeroes = qcow2_write_zeroes,
    .close = qcow2_close,
    .status = qcow2_status,
};

/* ---- info, backing ---------------------------------------------------- */

int qcow2_get_info(struct block_dev *bd, struct qcow2_info *info)
{
	if (bd->ops != &qcow2_ops)
		return -EINVAL;
	struct qcow2_image *img = to_qcow2(bd);
	*info = (struct qcow2_info){
	    .version = img->version,
	    .cluster_size = img->cluster_size,
	    .refcount_bits = 1u << img->refcount_order,
	    .lazy_refcounts = img->compat & QCOW2_COMPAT_LAZY_REFCOUNTS,
	    .corrupt = img->incompat & QCOW2_INCOMPAT_CORRUPT,
	    .dirty = img->incompat & QCOW2_INCOMPAT_DIRTY,
	    .extended_l2 = img->extended_l2,
	    .compression = img->compression_type == 1 ? "zstd" : "zlib",
	    .nb_snapshots = img->nb_snapshots,
	    .backing = img->backing_name,
	    .backing_fmt = img->backing_fmt,
	    .chain_depth = img->layers ? qcow2_layer_index_depth(img->layers) : 0,
	};
	return 0;
}

/* The layer index of BD, or NULL (no backing layers, or not qcow2). */
static struct qcow2_layer_index *layers_of(struct block_dev *bd)
{
	return bd->ops == &qcow2_ops ? to_qcow2(bd)->layers : NULL;
}

unsigned qcow2_backing_depth(struct block_dev *bd)
{
	struct qcow2_layer_index *li = layers_of(bd);
	return li ? qcow2_layer_index_depth(li) : 0;
}

struct block_dev *qcow2_backing_layer(struct block_dev *bd, unsigned i)
{
	struct qcow2_layer_index *li = layers_of(bd);
	return li ? qcow2_layer_index_layer(li, i) : NULL;
}

int qcow2_backing_lookup(struct block_dev *bd, uint64_t off, uint64_t len, unsigned *layer,
			 uint64_t *pnum)
{
	struct qcow2_layer_index *li = layers_of(bd);
	if (!li)
		return err_set(EINVAL, "%s: no backing layers", bd->path);
	return qcow2_layer_index_lookup(li, off, len, layer, pnum);
}

char *qcow2_resolve_backing(const char *image_path, const char *name)
{
	if (name[0] == '/' || !strchr(image_path, '/'))
		return strdup(name);
	char *tmp = strdup(image_path);
	if (!tmp)
		return NULL;
	char *out = NULL;
	if (asprintf(&out, "%s/%s", dirname(tmp), name) < 0)
		out = NULL;
	free(tmp);
	return out;
}

int qcow2_set_backing(const char *path, const char *backing, const char *backing_fmt,
		      bool unchanged)
{
	struct qcow2_image *img;
	int r = qcow2_open_image(path, unchanged ? BLOCK_WRITE_UNCHANGED : 0, &img);
	if (r < 0)
		return r;
	char *name = backing && *backing ? strdup(backing) : NULL;
	char *fmt = name && backing_fmt ? strdup(backing_fmt) : NULL;
	free(img->backing_name);
	free(img->backing_fmt);
	img->backing_name = name;
	img->backing_fmt = fmt;
	r = qcow2_write_header(img);
	if (r == 0)
		r = qcow2_sync(img);
	image_free(img);
	return r;
}
