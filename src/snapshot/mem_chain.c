/* Chains of memory images; see mem_chain.h. */
#include "snapshot/mem_chain.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
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

/* Each page comes from the newest image holding it: OWNED = the pages
 * image I holds that no image above it holds; COVERED, the pages the
 * images above hold, takes in I's. */
static void owned_by(const struct mem_chain *c, unsigned i, uint64_t *covered, uint64_t *owned)
{
	uint64_t words = (c->size / PAGE + 63) / 64;
	for (uint64_t w = 0; w < words; w++) {
		uint64_t held = mem_layer_held_word(c->l[i], w);
		owned[w] = held & ~covered[w];
		covered[w] |= held;
	}
}

/* Into RAM, each image's own pages (OWNED), newest first, each layer read
 * in order and verified as it is read (mem_layer_apply): the layers only,
 * or with BASE the full image too.  Every page is written once. */
static int apply_images(const struct mem_chain *c, uint8_t *ram, bool base)
{
	uint64_t words = (c->size / PAGE + 63) / 64;
	uint64_t *covered = calloc(words, 8), *owned = malloc(8 * words);
	int r = 0;
	if (!covered || !owned)
		r = err_set(ENOMEM, "memory chain");
	for (unsigned i = 0; r == 0 && i + 1 < c->n; i++) /* the reads overlap the copies */
		mem_layer_readahead(c->l[i]);
	for (unsigned i = 0; r == 0 && i < c->n - (base ? 0 : 1); i++) {
		owned_by(c, i, covered, owned);
		r = mem_layer_apply(c->l[i], ram, owned);
	}
	free(covered);
	free(owned);
	return r;
}

/* The full image's check, run beside the copying of the layers' pages:
 * one is reading and hashing the file, the other mostly faulting in
 * private pages, so on two cores the restore takes about the longer of
 * the two, not their sum.  The error message is per thread: copied out. */
struct base_check {
	const struct mem_layer *l;
	int r;
	struct err_saved msg;
};

static void *base_check_run(void *opaque)
{
	struct base_check *b = opaque;
	if ((b->r = mem_layer_verify(b->l, NULL, NULL)) < 0)
		err_save(&b->msg);
	return NULL;
}

/* The layers' pages are copied in, not mapped from the layers: a packed
 * layer is read in a few large reads and each chunk verified before it is
 * used, and the mapping stays one VMA however scattered the pages (every
 * VMA makes each later fork slower).  Each copied page costs a private
 * page (2-4 us here, the kernel's copy-on-write; bench/RESULTS.md). */
int mem_chain_map(const struct mem_chain *c, void *addr, unsigned flags, void **out)
{
	const struct mem_layer *base = c->l[c->n - 1];
	int mflags = MAP_PRIVATE | MAP_NORESERVE | (addr ? MAP_FIXED : 0);
	uint8_t *ram = mmap(addr, c->size, PROT_READ | PROT_WRITE, mflags, mem_layer_fd(base), 0);
	if (ram == MAP_FAILED)
		return err_set(errno, "%s: cannot map %llu MiB", mem_layer_path(base),
			       (unsigned long long)(c->size >> 20));
	struct base_check check = {.l = base};
	pthread_t thread;
	bool checking = (flags & MEM_CHAIN_VERIFY_BASE) && c->n > 1 &&
			pthread_create(&thread, NULL, base_check_run, &check) == 0;
	if ((flags & MEM_CHAIN_VERIFY_BASE) && !checking)
		base_check_run(&check);
	/* Each page copied in first faults the full image's page in: no
	 * read-around for those scattered faults. */
	madvise(ram, c->size, MADV_RANDOM);
	/* check.r is the thread's until the join; read here only when the
	 * check ran in this thread */
	int r = !checking && check.r < 0 ? check.r : apply_images(c, ram, false);
	madvise(ram, c->size, MADV_NORMAL);
	if (checking)
		pthread_join(thread, NULL);
	if (r == 0 && check.r < 0) {
		err_restore(&check.msg);
		r = check.r;
	}
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

int mem_chain_load(const struct mem_chain *c, void *ram)
{
	return apply_images(c, ram, true);
}

/* ---- deleting a parent ---- */

/* The chunks of a child laid over its parent's, as a save's source. */
struct absorb_src {
	const struct mem_layer *child, *parent;
	uint8_t *buf, *tmp;
	int err;	 /* a chunk that could not be read or failed its check */
	char msg[1024];
};

/* Chunk K: the parent's pages, then the child's over them, each chunk
 * verified as it is read.  Only the pages either holds are used (with a
 * full parent: all). */
static const void *absorb_get(void *opaque, uint64_t k)
{
	struct absorb_src *a = opaque;
	int r = mem_layer_chunk_into(a->parent, k, a->buf, a->tmp);
	if (r == 0)
		r = mem_layer_chunk_into(a->child, k, a->buf, a->tmp);
	if (r < 0) {
		a->err = r;
		snprintf(a->msg, sizeof(a->msg), "%s", err_msg());
		return NULL;
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
	struct absorb_src a = {.child = child};
	if ((r = open_parent(child, size, &parent)) < 0)
		goto out;
	a.parent = parent;
	const struct mem_image_info *pi = mem_layer_info(parent);
	if (pi->layer && !same_grandparent_dir(path, mem_layer_path(parent))) {
		r = err_set(EXDEV, "%s: its parent %s is not in a sibling directory", path,
			    mem_layer_path(parent));
		goto out;
	}
	uint64_t words = (size / PAGE + 63) / 64;
	uint64_t *changed = pi->layer ? calloc(words, 8) : NULL;
	a.buf = aligned_alloc(PAGE, CHUNK);
	a.tmp = aligned_alloc(PAGE, CHUNK);
	if ((pi->layer && !changed) || !a.buf || !a.tmp) {
		free(changed);
		r = err_set(ENOMEM, "%s", path);
		goto out;
	}
	memset(a.buf, 0, CHUNK); /* never read uninitialised: put_chunk looks before it zeroes */
	mem_layer_readahead(child);
	mem_layer_readahead(parent);
	for (uint64_t w = 0; changed && w < words; w++)
		changed[w] = mem_layer_held_word(child, w) | mem_layer_held_word(parent, w);
	struct mem_image_layer_spec spec = {.changed = changed,
					    .parent = pi->parent,
					    .parent_ref = mem_layer_parent_ref(parent),
					    .parent_depth = pi->depth ? pi->depth - 1 : 0,
					    .lineage = ci->lineage};
	struct mem_image_source src = {.get = absorb_get, .put = absorb_put, .opaque = &a};
	r = mem_image_save_as(path, &src, size, pi->layer ? &spec : NULL, &ci->id, NULL, NULL,
			      info);
	if (r < 0 && a.err) /* the chunk's own message, not the writer's */
		r = err_set(-a.err, "%s", a.msg);
	free(changed);
out:
	free(a.buf);
	free(a.tmp);
	mem_layer_close(parent);
	mem_layer_close(child);
	return r;
}
