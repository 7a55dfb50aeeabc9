/* Creation of empty qcow2 v3 images and of overlays on frozen layers. */
#include "disk/qcow2.h"
#include "disk/qcow2_internal.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int backing_facts(const char *path, const char *backing, const char **fmt, uint64_t *size)
{
	char *resolved = qcow2_resolve_backing(path, backing);
	if (!resolved)
		return err_set(ENOMEM, "%s", path);
	struct block_dev *bd;
	int r = block_open(resolved, *fmt, BLOCK_RDONLY | BLOCK_NO_BACKING | BLOCK_SHARE_WRITE, &bd);
	free(resolved);
	if (r < 0)
		return err_prefix(r, "%s: backing file", path);
	*size = bd->size;
	*fmt = bd->format; /* a string literal: outlives bd */
	block_close(bd);
	return 0;
}

int qcow2_create(const char *path, const struct qcow2_create_opts *o)
{
	uint64_t cs = o->cluster_size ? o->cluster_size : QCOW2_DEFAULT_CLUSTER_SIZE;
	if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
		return err_set(EINVAL, "%s: cluster size %llu is not a power of two in 512..2M",
			       path, (unsigned long long)cs);
	const char *fmt = o->backing_fmt;
	uint64_t size = o->size;
	if (o->backing && *o->backing) {
		if (fmt && strcmp(fmt, "qcow2") && strcmp(fmt, "raw"))
			return err_set(EINVAL, "%s: unknown backing format '%s'", path, fmt);
		uint64_t bsize = 0;
		int r = backing_facts(path, o->backing, &fmt, &bsize);
		if (r < 0)
			return r;
		if (!size)
			size = bsize;
		if (strlen(o->backing) > QCOW2_MAX_BACKING_NAME)
			return err_set(ENAMETOOLONG, "%s: backing file name too long", path);
	}
	struct qcow2_image img;
	memset(&img, 0, sizeof(img));
	img.bd.path = (char *)path;
	img.bd.size = size;
	img.cluster_bits = (uint32_t)__builtin_ctzll(cs);
	img.cluster_size = cs;
	img.refcount_order = 4;
	img.header_length = QCOW2_V3_HEADER_LEN;
	uint64_t l2e = cs / 8, rbe = cs * 8 / 16;
	uint64_t clusters = (size + cs - 1) / cs;
	uint64_t l1_size = (clusters + l2e - 1) / l2e;
	if (l1_size == 0)
		l1_size = 1;
	if (size > (1ull << 62) || l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return err_set(EFBIG, "%s: virtual size %llu too large for %llu-byte clusters",
			       path, (unsigned long long)size, (unsigned long long)cs);
	/* Layout: header, refcount table, refcount blocks, L1 table. */
	uint64_t l1c = (l1_size * 8 + cs - 1) / cs, rtc = 1, nb = 1;
	for (int i = 0; i < 16; i++) {
		uint64_t total = 1 + rtc + nb + l1c;
		nb = (total + rbe - 1) / rbe;
		rtc = (nb * 8 + cs - 1) / cs;
	}
	uint64_t total = 1 + rtc + nb + l1c;
	img.rt_offset = cs;
	img.rt_clusters = (uint32_t)rtc;
	img.l1_offset = (1 + rtc + nb) * cs;
	img.l1_size = (uint32_t)l1_size;
	img.backing_name = o->backing && *o->backing ? (char *)o->backing : NULL;
	img.backing_fmt = img.backing_name ? (char *)fmt : NULL;
	uint8_t *buf = calloc(total, cs);
	if (!buf)
		return err_set(ENOMEM, "%s", path);
	int r = qcow2_header_build(&img, buf);
	if (r >= 0) {
		for (uint64_t b = 0; b < nb; b++)
			be64_put(buf + cs + b * 8, (1 + rtc + b) * cs);
		for (uint64_t c = 0; c < total; c++) {
			uint8_t *rb = buf + (1 + rtc + c / rbe) * cs;
			rb[(c % rbe) * 2 + 1] = 1; /* 16-bit big-endian refcount 1 */
		}
		r = o->exclusive ? file_create_atomic(path, buf, total * cs)
				 : file_replace_atomic(path, buf, total * cs);
	}
	free(buf);
	return r < 0 ? r : 0;
}

const char *qcow2_relative_backing(const char *path, const char *backing)
{
	const char *ps = strrchr(path, '/'), *bs = strrchr(backing, '/');
	if (!ps || !bs || ps - path != bs - backing || strncmp(path, backing, (size_t)(ps - path)))
		return backing;
	return bs + 1;
}

int qcow2_create_overlay_rel(const char *path, const char *backing, const char *backing_fmt)
{
	if (!backing || !*backing)
		return err_set(EINVAL, "%s: an overlay needs a backing file", path);
	return qcow2_create_overlay(path, qcow2_relative_backing(path, backing), backing_fmt);
}

int qcow2_create_overlay(const char *path, const char *backing, const char *backing_fmt)
{
	struct qcow2_create_opts o = {
	    .backing = backing, .backing_fmt = backing_fmt, .exclusive = true};
	if (!backing || !*backing)
		return err_set(EINVAL, "%s: an overlay needs a backing file", path);
	return qcow2_create(path, &o);
}
