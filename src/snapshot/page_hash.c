/* Per-page content hashes of guest RAM; see page_hash.h. */
#include "snapshot/page_hash.h"
#include "snapshot/mem_image.h"
#include "util/err.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#define PAGE MEM_IMAGE_PAGE_SIZE

struct page_hash {
	uint64_t npages;
	size_t len;
	XXH128_hash_t *h;
};

int page_hash_new(uint64_t size, struct page_hash **out)
{
	struct page_hash *t = calloc(1, sizeof(*t));
	if (!t)
		return err_set(ENOMEM, "page hash table");
	t->npages = size / PAGE;
	t->len = t->npages ? t->npages * sizeof(XXH128_hash_t) : 1;
	t->h = mmap(NULL, t->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t->h == MAP_FAILED) {
		int e = errno;
		free(t);
		return err_set(e, "page hash table (%llu pages)",
			       (unsigned long long)(size / PAGE));
	}
	*out = t;
	return 0;
}

void page_hash_free(struct page_hash *t)
{
	if (!t)
		return;
	munmap(t->h, t->len);
	free(t);
}

uint64_t page_hash_pages(const struct page_hash *t)
{
	return t->npages;
}

static bool page_set(const uint64_t *pages, uint64_t p)
{
	return !pages || (pages[p / 64] >> (p % 64)) & 1;
}

void page_hash_set(struct page_hash *t, uint64_t first, uint64_t n, const void *data,
		   const uint64_t *pages)
{
	const uint8_t *d = data;
	for (uint64_t i = 0; i < n && first + i < t->npages; i++)
		if (page_set(pages, first + i))
			t->h[first + i] = XXH3_128bits(d + i * PAGE, PAGE);
}

uint64_t page_hash_drop_same(const struct page_hash *old, const struct page_hash *new,
			     uint64_t first, uint64_t n, uint64_t *pages)
{
	uint64_t dropped = 0;
	if (!pages)
		return 0;
	for (uint64_t p = first; p < first + n && p < old->npages && p < new->npages; p++)
		if (page_set(pages, p) && XXH128_isEqual(old->h[p], new->h[p])) {
			pages[p / 64] &= ~((uint64_t)1 << (p % 64));
			dropped++;
		}
	return dropped;
}

void page_hash_copy(struct page_hash *dst, const struct page_hash *src, const uint64_t *pages)
{
	uint64_t n = dst->npages < src->npages ? dst->npages : src->npages;
	if (!pages) {
		memcpy(dst->h, src->h, n * sizeof(XXH128_hash_t));
		return;
	}
	for (uint64_t w = 0; w * 64 < n; w++)
		for (uint64_t v = pages[w]; v; v &= v - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(v);
			if (p < n)
				dst->h[p] = src->h[p];
		}
}
