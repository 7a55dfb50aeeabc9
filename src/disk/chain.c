/* Chain operations: commit, stream, rebase, convert, compare, map.  They
 * are built on the block interface (block_read/write/status) plus what
 * qcow2.h tells of an open image's backing layers, and order their steps
 * so that a crash at any point leaves every image reading the same content
 * as before the operation (or, for the image being changed on purpose, as
 * after it). */
#include "disk/chain.h"
#include "disk/qcow2.h"
#include "util/err.h"
#include "util/monotime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)

/* BD's cluster size: a qcow2 image's own, else 64 KiB. */
static uint64_t cluster_size_of(struct block_dev *bd)
{
	struct qcow2_info qi;
	return qcow2_get_info(bd, &qi) == 0 ? qi.cluster_size : 65536;
}

int chain_map_extent(struct block_dev *bd, uint64_t off, struct chain_extent *e)
{
	uint64_t len = bd->size - off, n, host;
	unsigned st;
	memset(e, 0, sizeof(*e));
	e->start = off;
	int r = block_status(bd, off, len, &n, &st, &host);
	if (r < 0)
		return r;
	struct block_dev *holder = bd;
	unsigned depth = qcow2_backing_depth(bd);
	if (!(st & BLOCK_STATUS_ALLOCATED) && depth) {
		unsigned layer;
		uint64_t m;
		if ((r = qcow2_backing_lookup(bd, off, n, &layer, &m)) < 0)
			return r;
		n = m;
		struct block_dev *l = qcow2_backing_layer(bd, layer);
		e->depth = layer + 1;
		if (l && off < l->size) {
			if (l->size - off < n)
				n = l->size - off;
			if ((r = block_status(l, off, n, &n, &st, &host)) < 0)
				return r;
			holder = l;
		} else {
			/* Nothing holds it: qemu-img reports the depth of the base. */
			e->depth = depth;
			holder = NULL;
			st = 0;
		}
	} else if (!(st & BLOCK_STATUS_ALLOCATED)) {
		holder = NULL;
	}
	e->length = n;
	e->present = holder && (st & BLOCK_STATUS_ALLOCATED);
	e->zero = !e->present || (st & BLOCK_STATUS_ZERO);
	e->data = e->present && (st & BLOCK_STATUS_DATA);
	e->compressed = st & BLOCK_STATUS_COMPRESSED;
	e->has_offset = e->data && !e->compressed;
	e->offset = e->has_offset ? host : 0;
	e->file = e->present ? holder->path : NULL;
	return 0;
}

static void progress_report(const struct chain_progress *p, uint64_t done, uint64_t total)
{
	if (!p || !p->fn)
		return;
	static uint64_t last_us;
	uint64_t now = monotime_us();
	if (done == 0 || done >= total || now - last_us >= 200000) {
		last_us = now;
		p->fn(p->opaque, done, total);
	}
}

static bool is_zero(const uint8_t *b, size_t n)
{
	return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

static int same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
		return 0;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The index (0 = direct backing) of BASE in TOP's chain. */
static int find_layer(struct block_dev *top, const char *base, unsigned *idx)
{
	for (unsigned i = 0; i < qcow2_backing_depth(top); i++) {
		if (same_file(qcow2_backing_layer(top, i)->path, base)) {
			*idx = i;
			return 0;
		}
	}
	return err_set(ENOENT, "%s: %s is not in its backing chain", top->path, base);
}

/* ---- commit ----------------------------------------------------------- */

/* Copy what layers above depth LIMIT (0 = TOP itself) hold into DST. */
static int copy_above(struct block_dev *top, unsigned limit, struct block_dev *dst,
		      const struct chain_progress *p)
{
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		return err_set(ENOMEM, "%s", top->path);
	int r = 0;
	uint64_t end = top->size < dst->size ? top->size : dst->size;
	for (uint64_t off = 0; off < end && r == 0;) {
		struct chain_extent e;
		if ((r = chain_map_extent(top, off, &e)) < 0)
			break;
		uint64_t n = e.length < end - off ? e.length : end - off;
		if (n > CHUNK)
			n = CHUNK;
		if (e.present && e.depth <= limit) {
			if (e.zero)
				r = block_write_zeroes(dst, off, n);
			else if ((r = block_read(top, buf, off, (size_t)n)) == 0)
				r = block_write(dst, buf, off, (size_t)n);
		}
		off += n;
		progress_report(p, off, end);
	}
	free(buf);
	return r;
}

int chain_commit(const char *top, const char *base, unsigned flags, const struct chain_progress *p)
{
	struct block_dev *t, *b = NULL;
	/* TOP's chain shares writes: BASE, in it, is opened for writing below */
	int r = block_open(top, NULL, BLOCK_RDONLY | BLOCK_SHARE_WRITE, &t);
	if (r < 0)
		return r;
	if (!qcow2_backing_depth(t)) {
		r = err_set(EINVAL, "%s: image has no backing file to commit into", top);
		goto out;
	}
	unsigned idx = 0;
	if (base) {
		/* BASE as a path, else as a name relative to TOP's directory. */
		char *rel = qcow2_resolve_backing(top, base);
		r = find_layer(t, base, &idx);
		if (r < 0 && rel)
			r = find_layer(t, rel, &idx);
		free(rel);
		if (r < 0)
			goto out;
	}
	struct block_dev *bl = qcow2_backing_layer(t, idx);
	char *base_path = strdup(bl->path);
	const char *base_fmt = bl->format;
	if (!base_path) {
		r = err_set(ENOMEM, "%s", top);
		goto out;
	}
	r = block_open(base_path, base_fmt, 0, &b);
	if (r == 0 && b->size < t->size)
		r = err_set(EINVAL, "%s: base %s is smaller than the image; resize it first", top,
			    base_path);
	if (r == 0)
		r = copy_above(t, idx, b, p);
	if (r == 0)
		r = block_flush(b);
	uint64_t size = t->size;
	uint32_t cs = (uint32_t)cluster_size_of(t);
	/* The name BASE has in the layer above it, as that layer stores it. */
	struct block_dev *above = idx ? qcow2_backing_layer(t, idx - 1) : t;
	struct qcow2_info ai = {0};
	qcow2_get_info(above, &ai);
	char *name = ai.backing ? strdup(ai.backing) : NULL;
	block_close(t);
	t = NULL;
	if (b)
		block_close(b);
	if (r == 0 && !(flags & CHAIN_COMMIT_KEEP_TOP)) {
		/* TOP reads the same through BASE now: replace it, atomically, by
		 * an empty overlay. */
		struct qcow2_create_opts o = {
		    .size = size, .cluster_size = cs, .backing = name, .backing_fmt = base_fmt};
		r = name ? qcow2_create(top, &o) : err_set(ENOMEM, "%s", top);
	}
	free(name);
	free(base_path);
out:
	if (t)
		block_close(t);
	return r;
}

/* ---- stream / rebase -------------------------------------------------- */

/* For each cluster of TOP that TOP does not hold, KEEP decides whether its
 * content must be copied up; then it is copied (whole clusters). */
typedef int (*keep_fn)(void *ctx, struct block_dev *top, const uint8_t *data, uint64_t off,
		       uint64_t len, bool *keep);

static int copy_up(struct block_dev *top, keep_fn keep, void *ctx, const struct chain_progress *p)
{
	uint64_t cs = cluster_size_of(top);
	uint8_t *buf = malloc(cs);
	if (!buf)
		return err_set(ENOMEM, "%s", top->path);
	int r = 0;
	for (uint64_t off = 0; off < top->size && r == 0;) {
		uint64_t n = top->size - off < cs ? top->size - off : cs, m, host;
		unsigned st;
		if ((r = block_status(top, off, n, &m, &st, &host)) < 0)
			break;
		if (!(st & BLOCK_STATUS_ALLOCATED)) {
			/* Whole cluster: status runs are cluster aligned. */
			bool k = false;
			if ((r = block_read(top, buf, off, (size_t)m)) == 0)
				r = keep(ctx, top, buf, off, m, &k);
			if (r == 0 && k)
				r = is_zero(buf, (size_t)m) ? block_write_zeroes(top, off, m)
							    : block_write(top, buf, off, (size_t)m);
		}
		off += m;
		progress_report(p, off, top->size);
	}
	free(buf);
	if (r == 0)
		r = block_flush(top);
	return r;
}

struct stream_ctx {
	unsigned limit; /* copy what comes from layers above this index */
	bool to_none;
};

static int stream_keep(void *vctx, struct block_dev *top, const uint8_t *data, uint64_t off,
		       uint64_t len, bool *keep)
{
	struct stream_ctx *ctx = vctx;
	*keep = false;
	if (!qcow2_backing_depth(top))
		return 0;
	for (uint64_t o = off; o < off + len;) {
		unsigned layer;
		uint64_t n;
		int r = qcow2_backing_lookup(top, o, off + len - o, &layer, &n);
		if (r < 0)
			return r;
		struct block_dev *l = qcow2_backing_layer(top, layer);
		bool above = layer < ctx->limit && l && o < l->size;
		if (above) {
			/* Without a backing file, zeroes need no copy. */
			*keep = !(ctx->to_none && is_zero(data, (size_t)len));
			return 0;
		}
		o += n;
	}
	return 0;
}

int chain_stream(const char *top, const char *base, const char *base_fmt,
		 const struct chain_progress *p)
{
	struct block_dev *t;
	/* a stream changes where TOP's data lives, not what it reads */
	int r = block_open(top, NULL, BLOCK_WRITE_UNCHANGED, &t);
	if (r < 0)
		return r;
	struct stream_ctx ctx = {.limit = UINT32_MAX, .to_none = !base || !*base};
	const char *fmt = base_fmt;
	if (!ctx.to_none) {
		char *resolved = qcow2_resolve_backing(top, base);
		r = resolved ? find_layer(t, resolved, &ctx.limit) : err_set(ENOMEM, "%s", top);
		if (r == 0 && !fmt)
			fmt = qcow2_backing_layer(t, ctx.limit)->format;
		free(resolved);
	}
	if (r == 0 && qcow2_backing_depth(t))
		r = copy_up(t, stream_keep, &ctx, p);
	bool qcow = !strcmp(t->format, "qcow2");
	block_close(t);
	if (r == 0 && qcow)
		r = qcow2_set_backing(top, ctx.to_none ? NULL : base, fmt, true);
	return r;
}

struct rebase_ctx {
	struct block_dev *nb; /* the new backing chain, or NULL */
	uint8_t *buf;
};

static int rebase_keep(void *vctx, struct block_dev *top, const uint8_t *data, uint64_t off,
		       uint64_t len, bool *keep)
{
	struct rebase_ctx *ctx = vctx;
	uint64_t have = 0;
	if (ctx->nb && off < ctx->nb->size)
		have = ctx->nb->size - off < len ? ctx->nb->size - off : len;
	if (have) {
		int r = block_read(ctx->nb, ctx->buf, off, (size_t)have);
		if (r < 0)
			return r;
	}
	memset(ctx->buf + have, 0, (size_t)(len - have));
	*keep = memcmp(ctx->buf, data, (size_t)len) != 0;
	return 0;
}

int chain_rebase(const char *top, const char *new_backing, const char *new_fmt, bool unsafe,
		 const struct chain_progress *p)
{
	bool none = !new_backing || !*new_backing;
	struct block_dev *nb = NULL;
	int r = 0;
	if (!none) {
		char *resolved = qcow2_resolve_backing(top, new_backing);
		if (!resolved)
			return err_set(ENOMEM, "%s", top);
		r = block_open(resolved, new_fmt, BLOCK_RDONLY | (unsafe ? BLOCK_NO_BACKING : 0),
			       &nb);
		free(resolved);
		if (r < 0)
			return err_prefix(r, "%s: new backing file", top);
		new_fmt = nb->format;
	}
	if (!unsafe) {
		struct block_dev *t;
		if ((r = block_open(top, NULL, 0, &t)) == 0) {
			struct rebase_ctx ctx = {.nb = nb, .buf = malloc(2u << 20)};
			r = ctx.buf ? copy_up(t, rebase_keep, &ctx, p) : err_set(ENOMEM, "%s", top);
			free(ctx.buf);
			block_close(t);
		}
	}
	if (nb)
		block_close(nb);
	if (r == 0)
		r = qcow2_set_backing(top, none ? NULL : new_backing, new_fmt, false);
	return r;
}

/* ---- convert / compare ------------------------------------------------ */

static int create_raw(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: cannot create", path);
	int r = ftruncate(fd, (off_t)size) < 0 ? err_set(errno, "%s: cannot set size", path) : 0;
	close(fd);
	return r;
}

/* Write into D (an overlay reading its backing chain) what differs in S,
 * one cluster at a time. */
static int convert_diff(struct block_dev *s, struct block_dev *d, uint8_t *buf,
			const struct chain_progress *p)
{
	uint64_t cs = cluster_size_of(d);
	uint8_t *old = malloc(cs);
	if (!old)
		return err_set(ENOMEM, "%s", d->path);
	int r = 0;
	for (uint64_t off = 0; r == 0 && off < s->size;) {
		size_t n = s->size - off < cs ? (size_t)(s->size - off) : (size_t)cs;
		if ((r = block_read(s, buf, off, n)) == 0 &&
		    (r = block_read(d, old, off, n)) == 0 && memcmp(buf, old, n))
			r = is_zero(buf, n) ? block_write_zeroes(d, off, n)
					    : block_write(d, buf, off, n);
		off += n;
		progress_report(p, off, s->size);
	}
	free(old);
	return r;
}

int chain_convert(const char *src, const char *dst, const struct chain_convert_opts *o,
		  const struct chain_progress *p)
{
	struct block_dev *s, *d = NULL;
	int r = block_open(src, o->src_fmt, BLOCK_RDONLY | (o->force_share ? BLOCK_FORCE_SHARE : 0),
			   &s);
	if (r < 0)
		return r;
	const char *fmt = o->dst_fmt ? o->dst_fmt : "qcow2";
	if (!strcmp(fmt, "raw")) {
		r = create_raw(dst, s->size);
	} else if (!strcmp(fmt, "qcow2")) {
		struct qcow2_create_opts co = {.size = s->size,
					       .cluster_size = o->cluster_size,
					       .backing = o->backing,
					       .backing_fmt = o->backing_fmt};
		r = qcow2_create(dst, &co);
	} else {
		r = err_set(EINVAL, "%s: unknown output format '%s'", dst, fmt);
	}
	bool overlay = o->backing && *o->backing;
	if (r == 0 && overlay && strcmp(fmt, "qcow2"))
		r = err_set(EINVAL, "%s: only qcow2 output can have a backing file", dst);
	if (r == 0)
		r = block_open(dst, fmt, overlay ? 0 : BLOCK_NO_BACKING, &d);
	uint8_t *buf = r == 0 ? malloc(CHUNK) : NULL;
	if (r == 0 && !buf)
		r = err_set(ENOMEM, "%s", dst);
	if (r == 0 && overlay) {
		r = convert_diff(s, d, buf, p);
		goto done;
	}
	for (uint64_t off = 0; r == 0 && off < s->size;) {
		struct chain_extent e;
		if ((r = chain_map_extent(s, off, &e)) < 0)
			break;
		uint64_t n = e.length < CHUNK ? e.length : CHUNK;
		if (!e.zero && (r = block_read(s, buf, off, (size_t)n)) == 0 &&
		    !is_zero(buf, (size_t)n))
			r = block_write(d, buf, off, (size_t)n);
		off += n;
		progress_report(p, off, s->size);
	}
done:
	free(buf);
	if (d) {
		if (r == 0)
			r = block_flush(d);
		block_close(d);
	}
	block_close(s);
	return r;
}

int chain_compare(const char *a, const char *a_fmt, const char *b, const char *b_fmt,
		  unsigned open_flags, bool *same, uint64_t *first_diff)
{
	struct block_dev *x, *y;
	int r = block_open(a, a_fmt, BLOCK_RDONLY | open_flags, &x);
	if (r < 0)
		return r;
	if ((r = block_open(b, b_fmt, BLOCK_RDONLY | open_flags, &y)) < 0) {
		block_close(x);
		return r;
	}
	uint8_t *bx = malloc(CHUNK), *by = malloc(CHUNK);
	uint64_t end = x->size > y->size ? x->size : y->size;
	*same = true;
	if (!bx || !by)
		r = err_set(ENOMEM, "%s", a);
	for (uint64_t off = 0; r == 0 && off < end && *same;) {
		size_t n = end - off < CHUNK ? (size_t)(end - off) : CHUNK;
		size_t nx = off < x->size ? (size_t)(x->size - off < n ? x->size - off : n) : 0;
		size_t ny = off < y->size ? (size_t)(y->size - off < n ? y->size - off : n) : 0;
		memset(bx, 0, n);
		memset(by, 0, n);
		if ((nx && (r = block_read(x, bx, off, nx)) < 0) ||
		    (ny && (r = block_read(y, by, off, ny)) < 0))
			break;
		if (memcmp(bx, by, n)) {
			size_t i = 0;
			while (bx[i] == by[i])
				i++;
			*same = false;
			*first_diff = off + i;
		}
		off += n;
	}
	free(bx);
	free(by);
	block_close(x);
	block_close(y);
	return r;
}
