/* Chains of memory images; see mem_chain.h. */
#include "snapshot/mem_chain.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE MEM_IMAGE_PAGE_SIZE
#define CHUNK MEM_IMAGE_CHUNK_SIZE
/* A chain longer than this is refused as a loop of links. */
#define CHAIN_MAX 4096u
/* Mappings a restore may add; the rest of the runs are read in.  Linux
 * allows 65530 per process by default (vm.max_map_count). */
#define MAP_BUDGET 16384u
#define MAP_MIN_PAGES 16u

struct mem_chain {
	uint64_t size;
	unsigned n;
	struct mem_layer **l; /* newest first; the last is a full image */
};

void mem_chain_close(struct mem_chain *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n; i++)
		mem_layer_close(c->l[i]);
	free(c->l);
	free(c);
}

/* OUT = the parent image of L: its reference, read from L's directory. */
static int parent_path(const struct mem_layer *l, char *out, size_t len)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", mem_layer_path(l));
	const char *ref = mem_layer_parent_ref(l);
	if (ref[0] == '/')
		return snprintf(out, len, "%s", ref) < (int)len ? 0 : err_set(ENAMETOOLONG, "%s", ref);
	return path_join(out, len, dirname(dir), ref);
}

static int open_parent(const struct mem_layer *l, uint64_t size, struct mem_layer **out)
{
	char path[PATH_MAX], want[33], got[33];
	int r = parent_path(l, path, sizeof(path));
	if (r < 0)
		return r;
	const struct mem_image_info *in = mem_layer_info(l);
	mem_id_format(&in->parent, want);
	if ((r = mem_layer_open(path, size, out)) < 0)
		return err_prefix(r, "%s: its memory parent %s (memory %s)", mem_layer_path(l), path,
				  want);
	mem_id_format(&mem_layer_info(*out)->id, got);
	if (memcmp(&mem_layer_info(*out)->id, &in->parent, sizeof(in->parent)) != 0) {
		mem_layer_close(*out);
		return err_set(ESTALE,
			       "%s: its memory parent %s is memory %s, but the layer was written on "
			       "memory %s: the parent was replaced",
			       mem_layer_path(l), path, got, want);
	}
	return 0;
}

int mem_chain_open(const char *path, uint64_t size, struct mem_chain **out)
{
	struct mem_chain *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(ENOMEM, "%s", path);
	c->size = size;
	struct mem_layer *l;
	int r = mem_layer_open(path, size, &l);
	while (r == 0) {
		struct mem_layer **nl = realloc(c->l, (c->n + 1) * sizeof(*nl));
		if (!nl) {
			mem_layer_close(l);
			r = err_set(ENOMEM, "%s", path);
			break;
		}
		c->l = nl;
		c->l[c->n++] = l;
		if (!mem_layer_info(l)->layer)
			break;
		if (c->n >= CHAIN_MAX) {
			r = err_set(ELOOP, "%s: more than %u memory layers: a loop of parents?", path,
				    CHAIN_MAX);
			break;
		}
		r = open_parent(l, size, &l);
	}
	if (r < 0) {
		mem_chain_close(c);
		return r;
	}
	*out = c;
	return 0;
}

unsigned mem_chain_length(const struct mem_chain *c)
{
	return c->n;
}

const struct mem_layer *mem_chain_layer(const struct mem_chain *c, unsigned i)
{
	return i < c->n ? c->l[i] : NULL;
}

int mem_chain_verify(const struct mem_chain *c, mem_image_progress_fn progress, void *opaque)
{
	int r = 0;
	for (unsigned i = c->n; r == 0 && i-- > 0;)
		r = mem_layer_verify(c->l[i], progress, opaque);
	return r;
}

/* ---- assembling RAM ---- */

struct run {
	uint64_t first, n; /* pages */
	unsigned layer;
};

struct plan {
	struct run *runs;
	size_t n, cap;
};

static int plan_add(struct plan *p, uint64_t first, uint64_t n, unsigned layer)
{
	if (p->n && p->runs[p->n - 1].layer == layer &&
	    p->runs[p->n - 1].first + p->runs[p->n - 1].n == first) {
		p->runs[p->n - 1].n += n;
		return 0;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 256;
		struct run *r = realloc(p->runs, cap * sizeof(*r));
		if (!r)
			return err_set(ENOMEM, "memory chain");
		p->runs = r;
		p->cap = cap;
	}
	p->runs[p->n++] = (struct run){first, n, layer};
	return 0;
}

/* The runs of pages that the layers above the full image hold, each from
 * the newest one holding it (the full image's pages are not listed). */
static int plan_make(const struct mem_chain *c, struct plan *p)
{
	uint64_t pages = c->size / PAGE, words = (pages + 63) / 64;
	*p = (struct plan){0};
	for (uint64_t w = 0; w < words; w++) {
		uint64_t covered = 0;
		for (unsigned i = 0; i + 1 < c->n; i++) {
			uint64_t held = mem_layer_held_word(c->l[i], w) & ~covered;
			covered |= held;
			while (held) {
				unsigned b = (unsigned)__builtin_ctzll(held);
				uint64_t e = b; /* a run of set bits in this word */
				while (e < 64 && (held >> e) & 1)
					e++;
				int r = plan_add(p, 64 * w + b, e - b, i);
				if (r < 0)
					return r;
				held &= e == 64 ? 0 : ~(uint64_t)0 << e;
			}
		}
	}
	return 0;
}

int mem_chain_map(const struct mem_chain *c, void *addr, void **out)
{
	const struct mem_layer *base = c->l[c->n - 1];
	int flags = MAP_PRIVATE | MAP_NORESERVE | (addr ? MAP_FIXED : 0);
	uint8_t *ram = mmap(addr, c->size, PROT_READ | PROT_WRITE, flags, mem_layer_fd(base), 0);
	if (ram == MAP_FAILED)
		return err_set(errno, "%s: cannot map %llu MiB", mem_layer_path(base),
			       (unsigned long long)(c->size >> 20));
	struct plan p;
	int r = plan_make(c, &p);
	/* Runs shorter than MAP_MIN_PAGES are read in: a mapping per page
	 * costs as much as reading it, and every mapping makes each later
	 * fork (the snapshot writer of a restored VM) slower.  More runs are
	 * read in when mapping them all would pass the budget. */
	uint64_t min = MAP_MIN_PAGES;
	for (;;) {
		size_t n = 0;
		for (size_t i = 0; i < p.n; i++)
			n += p.runs[i].n >= min;
		if (n <= MAP_BUDGET)
			break;
		min *= 2;
	}
	for (size_t i = 0; r == 0 && i < p.n; i++) {
		const struct run *u = &p.runs[i];
		const struct mem_layer *l = c->l[u->layer];
		uint64_t off = u->first * PAGE, len = u->n * PAGE;
		if (u->n >= min) {
			if (mmap(ram + off, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
				 mem_layer_fd(l), (off_t)off) == MAP_FAILED)
				r = err_set(errno, "%s: cannot map %llu pages at %#llx", mem_layer_path(l),
					    (unsigned long long)u->n, (unsigned long long)off);
		} else if ((r = file_pread_all(mem_layer_fd(l), ram + off, len, off)) < 0) {
			r = err_set(-r, "%s: reading %llu pages at %#llx", mem_layer_path(l),
				    (unsigned long long)u->n, (unsigned long long)off);
		}
	}
	free(p.runs);
	if (r < 0) {
		if (addr) /* leave no file mapped there */
			mmap(addr, c->size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
		else
			munmap(ram, c->size);
		return r;
	}
	*out = ram;
	return 0;
}

/* Layer L holds a page of chunk K. */
static bool holds_in_chunk(const struct mem_layer *l, uint64_t k, uint64_t size)
{
	uint64_t first = k * (CHUNK / PAGE), end = (k + 1) * (CHUNK / PAGE);
	if (end > size / PAGE)
		end = size / PAGE;
	for (uint64_t w = first / 64; w * 64 < end; w++)
		if (mem_layer_held_word(l, w))
			return true;
	return false;
}

int mem_chain_load(const struct mem_chain *c, void *ram)
{
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		return err_set(ENOMEM, "memory chain");
	uint64_t nchunks = (c->size + CHUNK - 1) / CHUNK;
	int r = 0;
	for (unsigned i = c->n; r == 0 && i-- > 0;)
		for (uint64_t k = 0; r == 0 && k < nchunks; k++)
			if (holds_in_chunk(c->l[i], k, c->size))
				r = mem_layer_load_chunk(c->l[i], ram, k, buf);
	free(buf);
	return r;
}

/* ---- deleting a parent ---- */

/* The chunks of a child laid over its parent's, as a save's source. */
struct absorb_src {
	const struct mem_layer *child, *parent;
	uint64_t size;
	uint8_t *buf, *tmp;
	int err;
	char msg[512];
};

static const void *absorb_get(void *opaque, uint64_t k)
{
	struct absorb_src *a = opaque;
	uint64_t off = k * CHUNK, len = a->size - off < CHUNK ? a->size - off : CHUNK;
	/* Both were verified whole before; unheld pages are holes (zeros). */
	int r = file_pread_all(mem_layer_fd(a->parent), a->buf, len, off);
	if (r == 0)
		r = file_pread_all(mem_layer_fd(a->child), a->tmp, len, off);
	if (r < 0) {
		err_set(-r, "reading chunk %llu of %s or %s", (unsigned long long)k,
			mem_layer_path(a->child), mem_layer_path(a->parent));
		return NULL;
	}
	for (uint64_t p = 0; p < len; p += PAGE) {
		uint64_t pg = (off + p) / PAGE;
		if ((mem_layer_held_word(a->child, pg / 64) >> (pg % 64)) & 1)
			memcpy(a->buf + p, a->tmp + p, PAGE); /* a zero page reads as zeros */
	}
	return a->buf;
}

static void absorb_put(void *opaque, uint64_t k)
{
}

/* The parent's directory and the child's are in one directory, so the
 * parent's reference to its own parent holds from the child's too. */
static int same_grandparent_dir(const char *a, const char *b)
{
	char x[PATH_MAX], y[PATH_MAX], rx[PATH_MAX], ry[PATH_MAX];
	snprintf(x, sizeof(x), "%s", a);
	snprintf(y, sizeof(y), "%s", b);
	char *dx = dirname(dirname(x)), *dy = dirname(dirname(y));
	return realpath(dx, rx) && realpath(dy, ry) && strcmp(rx, ry) == 0;
}

int mem_chain_absorb_parent(const char *path, uint64_t size, struct mem_image_info *info)
{
	struct mem_layer *child, *parent = NULL;
	int r = mem_layer_open(path, size, &child);
	if (r < 0)
		return r;
	const struct mem_image_info *ci = mem_layer_info(child);
	if (!ci->layer) {
		mem_layer_close(child);
		return err_set(EINVAL, "%s: a full memory image has no parent to absorb", path);
	}
	struct absorb_src a = {.child = child, .size = size};
	if ((r = open_parent(child, size, &parent)) < 0)
		goto out;
	a.parent = parent;
	const struct mem_image_info *pi = mem_layer_info(parent);
	if (pi->layer && !same_grandparent_dir(path, mem_layer_path(parent))) {
		r = err_set(EXDEV, "%s: its parent %s is not in a sibling directory", path,
			    mem_layer_path(parent));
		goto out;
	}
	if ((r = mem_layer_verify(child, NULL, NULL)) < 0 ||
	    (r = mem_layer_verify(parent, NULL, NULL)) < 0)
		goto out;
	uint64_t words = (size / PAGE + 63) / 64;
	uint64_t *changed = pi->layer ? calloc(words, 8) : NULL;
	a.buf = aligned_alloc(PAGE, CHUNK);
	a.tmp = aligned_alloc(PAGE, CHUNK);
	if ((pi->layer && !changed) || !a.buf || !a.tmp) {
		free(changed);
		r = err_set(ENOMEM, "%s", path);
		goto out;
	}
	for (uint64_t w = 0; changed && w < words; w++)
		changed[w] = mem_layer_held_word(child, w) | mem_layer_held_word(parent, w);
	struct mem_image_layer_spec spec = {.changed = changed,
					    .parent = pi->parent,
					    .parent_ref = mem_layer_parent_ref(parent),
					    .parent_depth = pi->depth ? pi->depth - 1 : 0};
	struct mem_image_source src = {.get = absorb_get, .put = absorb_put, .opaque = &a};
	r = mem_image_save_as(path, &src, size, pi->layer ? &spec : NULL, &ci->id, NULL, NULL,
			      info);
	free(changed);
out:
	free(a.buf);
	free(a.tmp);
	mem_layer_close(parent);
	mem_layer_close(child);
	return r;
}
