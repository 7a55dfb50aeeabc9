/* Metadata table cache: a fixed number of slots, a small hash for lookup
 * and least-recently-used eviction. */
#include "disk/qcow2_cache.h"
#include "disk/qcow2_internal.h"
#include "util/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NO_SLOT UINT32_MAX

struct cache_slot {
	uint64_t off; /* 0 = empty (offset 0 is the header, never a table) */
	uint64_t lru;
	uint32_t next; /* hash chain */
	bool dirty;
};

struct qcow2_cache {
	unsigned nslots;
	size_t table_size;
	struct cache_slot *slots;
	uint8_t **tables; /* allocated on first use of a slot */
	uint32_t *buckets;
	unsigned nbuckets; /* power of two */
	uint64_t tick;
	uint32_t last; /* slot of the latest get: what mark_dirty usually names */
	unsigned ndirty;
	qcow2_cache_barrier_fn barrier;
	const char *what;
};

struct qcow2_cache *qcow2_cache_new(unsigned nslots, size_t table_size,
				    qcow2_cache_barrier_fn barrier, const char *what)
{
	struct qcow2_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->nslots = nslots;
	c->table_size = table_size;
	c->nbuckets = 1;
	while (c->nbuckets < nslots * 2)
		c->nbuckets <<= 1;
	c->slots = calloc(nslots, sizeof(*c->slots));
	c->buckets = malloc(c->nbuckets * sizeof(*c->buckets));
	c->tables = calloc(nslots, sizeof(*c->tables));
	c->barrier = barrier;
	c->what = what;
	if (!c->slots || !c->buckets || !c->tables) {
		qcow2_cache_free(c);
		return NULL;
	}
	for (unsigned i = 0; i < c->nbuckets; i++)
		c->buckets[i] = NO_SLOT;
	return c;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; c->tables && i < c->nslots; i++)
		free(c->tables[i]);
	free(c->slots);
	free(c->buckets);
	free(c->tables);
	free(c);
}

static unsigned cache_hash(const struct qcow2_cache *c, uint64_t off)
{
	uint64_t h = (off >> 9) * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 40) & (c->nbuckets - 1);
}

static uint8_t *slot_table(const struct qcow2_cache *c, uint32_t i)
{
	return c->tables[i];
}

static void cache_unlink(struct qcow2_cache *c, uint32_t i)
{
	uint32_t *p = &c->buckets[cache_hash(c, c->slots[i].off)];
	while (*p != NO_SLOT && *p != i)
		p = &c->slots[*p].next;
	if (*p == i)
		*p = c->slots[i].next;
	c->slots[i].off = 0;
}

static int slot_write(struct qcow2_image *img, struct qcow2_cache *c, uint32_t i)
{
	struct cache_slot *s = &c->slots[i];
	if (!s->dirty)
		return 0;
	int r = c->barrier ? c->barrier(img) : 0;
	if (r < 0)
		return r;
	r = qcow2_pwrite(img, slot_table(c, i), c->table_size, s->off, c->what);
	if (r < 0)
		return r;
	s->dirty = false;
	c->ndirty--;
	/* A cache without a barrier holds what others depend on (refcount
	 * blocks): what it wrote must be synced before the next L2 write. */
	if (!c->barrier)
		img->data_unsynced = true;
	return 0;
}

static uint32_t cache_find(const struct qcow2_cache *c, uint64_t off)
{
	uint32_t i = c->buckets[cache_hash(c, off)];
	while (i != NO_SLOT && c->slots[i].off != off)
		i = c->slots[i].next;
	return i;
}

int qcow2_cache_get(struct qcow2_image *img, struct qcow2_cache *c, uint64_t off, bool read,
		    void **table)
{
	uint32_t i = cache_find(c, off);
	if (i != NO_SLOT) {
		c->slots[i].lru = ++c->tick;
		c->last = i;
		if (!read)
			memset(slot_table(c, i), 0, c->table_size);
		*table = slot_table(c, i);
		return 0;
	}
	/* Victim: an empty slot, else the least recently used. */
	uint32_t v = 0;
	for (uint32_t k = 0; k < c->nslots; k++) {
		if (!c->slots[k].off) {
			v = k;
			break;
		}
		if (c->slots[k].lru < c->slots[v].lru)
			v = k;
	}
	if (c->slots[v].off) {
		/* A dirty victim: write every dirty table behind one barrier,
		 * rather than paying a barrier per eviction. */
		int r = c->slots[v].dirty ? qcow2_cache_flush(img, c) : 0;
		if (r < 0)
			return r;
		cache_unlink(c, v);
	}
	if (!c->tables[v] && !(c->tables[v] = malloc(c->table_size)))
		return err_set(ENOMEM, "%s: %s cache", img->bd.path, c->what);
	uint8_t *t = slot_table(c, v);
	if (read) {
		int r = qcow2_pread(img, t, c->table_size, off, c->what);
		if (r < 0)
			return r;
	} else {
		memset(t, 0, c->table_size);
	}
	struct cache_slot *s = &c->slots[v];
	s->off = off;
	s->lru = ++c->tick;
	s->dirty = false;
	c->last = v;
	unsigned h = cache_hash(c, off);
	s->next = c->buckets[h];
	c->buckets[h] = v;
	*table = t;
	return 0;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, const void *table)
{
	uint32_t i = c->last;
	if (c->tables[i] != table)
		for (i = 0; i < c->nslots && c->tables[i] != table; i++)
			;
	if (i < c->nslots && !c->slots[i].dirty) {
		c->slots[i].dirty = true;
		c->ndirty++;
	}
}

bool qcow2_cache_is_dirty(const struct qcow2_cache *c)
{
	return c->ndirty > 0;
}

int qcow2_cache_flush(struct qcow2_image *img, struct qcow2_cache *c)
{
	for (uint32_t i = 0; i < c->nslots && c->ndirty; i++) {
		int r = slot_write(img, c, i);
		if (r < 0)
			return r;
	}
	return 0;
}
