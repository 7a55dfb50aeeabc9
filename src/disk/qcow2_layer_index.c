/* The layer index: the backing layers below an open qcow2 image and, per
 * granule, which of them holds its data (the run-time side of a chain; the
 * qemu-img-style operations on whole chains are in chain.c).
 *
 * Every backing layer is opened alone (BLOCK_NO_BACKING), read-only.  At
 * open, the L2 tables of each qcow2 layer are walked once, top-most layer
 * first, and for each granule (the smallest allocation unit in the chain)
 * the index records the top-most layer that decides its content.  A read
 * that misses the top image then costs one index lookup and one mapping in
 * the layer that holds the data, whatever the depth of the chain. */
#include "disk/qcow2.h"
#include "disk/qcow2_internal.h"
#include "util/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CHAIN_MAX_DEPTH 1000
#define CHUNK_BITS 12

struct qcow2_layer_index {
	struct block_dev **layers;
	unsigned n;	   /* layers */
	unsigned nq;	   /* leading qcow2 layers (a raw layer can only end a chain) */
	uint64_t size;	   /* the top image's virtual size: the index domain */
	unsigned gbits;	   /* granule size */
	uint16_t **chunks; /* per granule: 0 = no qcow2 layer, else layer + 1 */
	uint64_t nchunks;
};

unsigned qcow2_layer_index_depth(const struct qcow2_layer_index *c)
{
	return c->n;
}

struct block_dev *qcow2_layer_index_layer(const struct qcow2_layer_index *c, unsigned i)
{
	return i < c->n ? c->layers[i] : NULL;
}

void qcow2_layer_index_close(struct qcow2_layer_index *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n; i++)
		block_close(c->layers[i]);
	for (uint64_t i = 0; i < c->nchunks; i++)
		free(c->chunks[i]);
	free(c->chunks);
	free(c->layers);
	free(c);
}

static uint16_t index_get(const struct qcow2_layer_index *c, uint64_t g)
{
	const uint16_t *ch = c->chunks[g >> CHUNK_BITS];
	return ch ? ch[g & ((1u << CHUNK_BITS) - 1)] : 0;
}

static int index_fill(struct qcow2_layer_index *c, uint64_t g0, uint64_t g1, uint16_t v)
{
	for (uint64_t g = g0; g < g1; g++) {
		uint16_t **ch = &c->chunks[g >> CHUNK_BITS];
		if (!*ch && !(*ch = calloc(1u << CHUNK_BITS, sizeof(uint16_t))))
			return -ENOMEM;
		uint16_t *e = &(*ch)[g & ((1u << CHUNK_BITS) - 1)];
		if (!*e)
			*e = v;
	}
	return 0;
}

static int layers_add(struct qcow2_layer_index *c, struct block_dev *bd)
{
	struct block_dev **l = realloc(c->layers, (c->n + 1) * sizeof(*l));
	if (!l)
		return -ENOMEM;
	c->layers = l;
	c->layers[c->n++] = bd;
	return 0;
}

static int open_layers(struct qcow2_layer_index *c, struct qcow2_image *top)
{
	struct stat st;
	dev_t *devs = NULL;
	ino_t *inos = NULL;
	unsigned nseen = 0;
	int r = 0;
	const char *parent = top->bd.path;
	const char *name = top->backing_name, *fmt = top->backing_fmt;
	if (fstat(top->fd, &st) < 0)
		return err_set(errno, "%s", parent);
	devs = malloc(sizeof(*devs) * (CHAIN_MAX_DEPTH + 1));
	inos = malloc(sizeof(*inos) * (CHAIN_MAX_DEPTH + 1));
	if (!devs || !inos) {
		r = err_set(ENOMEM, "%s", parent);
		goto out;
	}
	devs[nseen] = st.st_dev;
	inos[nseen++] = st.st_ino;
	while (name) {
		if (c->n >= CHAIN_MAX_DEPTH) {
			r = err_set(ELOOP, "%s: backing chain deeper than %d", top->bd.path,
				    CHAIN_MAX_DEPTH);
			goto out;
		}
		char *path = qcow2_resolve_backing(parent, name);
		if (!path) {
			r = err_set(ENOMEM, "%s", parent);
			goto out;
		}
		if (stat(path, &st) < 0) {
			r = err_set(errno, "%s: backing file %s", parent, path);
			free(path);
			goto out;
		}
		for (unsigned i = 0; i < nseen; i++) {
			if (devs[i] == st.st_dev && inos[i] == st.st_ino) {
				r = err_set(ELOOP,
					    "%s: backing file loop: %s is already in the chain",
					    parent, path);
				free(path);
				goto out;
			}
		}
		devs[nseen] = st.st_dev;
		inos[nseen++] = st.st_ino;
		struct block_dev *bd;
		/* the top's sharing carries down the chain */
		r = block_open(path, fmt,
			       BLOCK_RDONLY | BLOCK_NO_BACKING |
				   (top->bd.flags & (BLOCK_SHARE_WRITE | BLOCK_FORCE_SHARE)),
			       &bd);
		free(path);
		if (r < 0) {
			err_prefix(r, "%s: backing file", parent);
			goto out;
		}
		if ((r = layers_add(c, bd)) < 0) {
			block_close(bd);
			r = err_set(ENOMEM, "%s", parent);
			goto out;
		}
		if (strcmp(bd->format, "qcow2"))
			break;
		c->nq++;
		struct qcow2_image *li = to_qcow2(bd);
		parent = bd->path;
		name = li->backing_name;
		fmt = li->backing_fmt;
	}
out:
	free(devs);
	free(inos);
	return r;
}

static int build_index(struct qcow2_layer_index *c)
{
	if (!c->nq)
		return 0;
	c->gbits = 63;
	for (unsigned i = 0; i < c->nq; i++) {
		struct qcow2_image *li = to_qcow2(c->layers[i]);
		if (li->subcluster_bits < c->gbits)
			c->gbits = li->subcluster_bits;
	}
	uint64_t ng = (c->size + (1ull << c->gbits) - 1) >> c->gbits;
	c->nchunks = (ng + (1u << CHUNK_BITS) - 1) >> CHUNK_BITS;
	c->chunks = calloc(c->nchunks ? c->nchunks : 1, sizeof(*c->chunks));
	if (!c->chunks)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nq; i++) {
		struct qcow2_image *li = to_qcow2(c->layers[i]);
		uint64_t end = li->bd.size < c->size ? li->bd.size : c->size;
		for (uint64_t off = 0; off < end;) {
			uint64_t n, host;
			enum qcow2_ctype type;
			int r = qcow2_get_mapping(li, off, end - off, &n, &host, &type);
			if (r < 0)
				return r;
			if (type != QCOW2_UNALLOCATED &&
			    index_fill(c, off >> c->gbits, ((off + n - 1) >> c->gbits) + 1,
				       (uint16_t)(i + 1)) < 0)
				return -ENOMEM;
			off += n;
		}
	}
	return 0;
}

int qcow2_layer_index_open(struct qcow2_image *top, struct qcow2_layer_index **out)
{
	struct qcow2_layer_index *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(ENOMEM, "%s", top->bd.path);
	c->size = top->bd.size;
	int r = open_layers(c, top);
	if (r == 0 && (r = build_index(c)) == -ENOMEM)
		r = err_set(ENOMEM, "%s: backing chain index", top->bd.path);
	if (r < 0) {
		qcow2_layer_index_close(c);
		return r;
	}
	*out = c;
	return 0;
}

int qcow2_layer_index_lookup(struct qcow2_layer_index *c, uint64_t off, uint64_t len,
			     unsigned *layer, uint64_t *pnum)
{
	if (!c->nq) {
		*layer = c->n ? 0 : c->n;
		*pnum = len;
		return 0;
	}
	uint64_t gs = 1ull << c->gbits;
	uint64_t g = off >> c->gbits;
	uint16_t v = index_get(c, g);
	uint64_t run = gs - (off & (gs - 1));
	while (run < len && index_get(c, ++g) == v)
		run += gs;
	*pnum = run < len ? run : len;
	/* No qcow2 layer: a raw layer ends the chain, else nothing holds it. */
	*layer = v ? v - 1u : c->nq;
	return 0;
}

int qcow2_layer_index_read(struct qcow2_layer_index *c, void *vbuf, uint64_t off, size_t len)
{
	uint8_t *buf = vbuf;
	while (len) {
		unsigned layer;
		uint64_t n;
		int r = qcow2_layer_index_lookup(c, off, len, &layer, &n);
		if (r < 0)
			return r;
		struct block_dev *bd = layer < c->n ? c->layers[layer] : NULL;
		uint64_t have = 0;
		if (bd && off < bd->size)
			have = bd->size - off < n ? bd->size - off : n;
		if (have && (r = block_read(bd, buf, off, (size_t)have)) < 0)
			return r;
		memset(buf + have, 0, (size_t)(n - have));
		buf += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}
