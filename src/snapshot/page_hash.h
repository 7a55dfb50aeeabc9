/* Per-page content hashes of guest RAM (XXH3-128, 16 bytes per 4 KiB
 * page): a table of the memory a snapshot stands for, so the next layer
 * can leave out a page its dirty log names but whose content is what the
 * parent holds.  KVM's log names pages the guest only read: a read fault
 * on a page whose host entry is writable again (after userfaultfd's write
 * protection is lifted) installs a writable entry, and KVM logs the page
 * dirty whenever it does (docs/snapshots.md, "Which pages changed").
 *
 * The entries live in a MAP_SHARED mapping: a forked snapshot writer
 * fills a table its parent then reads. */
#ifndef CAIRN_SNAPSHOT_PAGE_HASH_H
#define CAIRN_SNAPSHOT_PAGE_HASH_H

#include <stdint.h>

struct page_hash;

/* A table for SIZE bytes of RAM (a multiple of 4 KiB), every entry zero. */
int page_hash_new(uint64_t size, struct page_hash **out);
void page_hash_free(struct page_hash *t); /* NULL is ignored */
uint64_t page_hash_pages(const struct page_hash *t);
/* Hash pages [FIRST, FIRST+N) into T, page FIRST being at DATA; only those
 * set in PAGES (a bitmap over all of RAM), or all of them when PAGES is
 * NULL. */
void page_hash_set(struct page_hash *t, uint64_t first, uint64_t n, const void *data,
		   const uint64_t *pages);
/* Clear in PAGES the pages of [FIRST, FIRST+N) whose entry in NEW is the
 * one in OLD (same content); returns how many. */
uint64_t page_hash_drop_same(const struct page_hash *old, const struct page_hash *new,
			     uint64_t first, uint64_t n, uint64_t *pages);
/* DST's entries of the pages set in PAGES (NULL: all) become SRC's. */
void page_hash_copy(struct page_hash *dst, const struct page_hash *src, const uint64_t *pages);

#endif
