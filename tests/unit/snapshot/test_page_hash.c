/* Page hashes (page_hash.h): a page is left out only when its bytes are
 * the parent's; pages whose contents moved to other pages, a page set back
 * to an older content, a zero page made non-zero all stay; the table is
 * shared with a forked child. */
#include "snapshot/page_hash.h"
#include "test.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096u
#define NPAGES 1000u

static uint64_t bit(const uint64_t *m, uint64_t p)
{
	return (m[p / 64] >> (p % 64)) & 1;
}

static void fill(uint8_t *ram, uint64_t p, uint64_t seed)
{
	for (uint64_t i = 0; i < PAGE; i += 8) {
		uint64_t v = (seed * 1000003 + i) * 0x9e3779b97f4a7c15ull;
		memcpy(ram + p * PAGE + i, &v, 8);
	}
}

int main(void)
{
	uint8_t *ram = calloc(NPAGES, PAGE), *old = malloc((size_t)NPAGES * PAGE);
	uint64_t words = (NPAGES + 63) / 64, *changed = calloc(words, 8);
	struct page_hash *cur, *next;
	CHECK_EQ(page_hash_new((uint64_t)NPAGES * PAGE, &cur), 0);
	CHECK_EQ(page_hash_new((uint64_t)NPAGES * PAGE, &next), 0);
	CHECK_EQ(page_hash_pages(cur), NPAGES);
	for (uint64_t p = 0; p < NPAGES; p++)
		if (p % 10) /* every tenth page zero */
			fill(ram, p, p);
	/* The parent: every page hashed (a full image), in a forked child. */
	pid_t pid = fork();
	if (pid == 0) {
		page_hash_set(next, 0, NPAGES, ram, NULL);
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	page_hash_copy(cur, next, NULL);
	memcpy(old, ram, (size_t)NPAGES * PAGE);

	/* Candidates: every page.  Changes: pages 100-199 take the contents
	 * of pages 200-299 (moved, the same words in other pages; the zero
	 * ones among them, every tenth, stay zero); 300 (zero) gets one bit; 400 (zero) gets data;
	 * 401 becomes zero; 402 is written with what it held. */
	memset(changed, 0xff, words * 8);
	changed[words - 1] &= ((uint64_t)1 << (NPAGES % 64)) - 1;
	memcpy(ram + 100 * PAGE, old + 200 * PAGE, 100 * PAGE);
	ram[300 * PAGE + 17] ^= 1;
	fill(ram, 400, 7);
	memset(ram + 401 * PAGE, 0, PAGE);
	fill(ram, 402, 402);
	page_hash_set(next, 0, NPAGES, ram, changed);
	uint64_t dropped = page_hash_drop_same(cur, next, 0, NPAGES, changed);
	CHECK_EQ(dropped, NPAGES - 90 - 3);
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t kept = (p >= 100 && p < 200 && p % 10) || p == 300 || p == 400 || p == 401;
		if (bit(changed, p) != kept)
			fprintf(stderr, "page %llu: kept %llu\n", (unsigned long long)p,
				(unsigned long long)bit(changed, p));
		CHECK_EQ(bit(changed, p), kept);
	}
	/* Commit the layer: the kept pages' entries; the rest stand. */
	page_hash_copy(cur, next, changed);

	/* A-B-A: page 300 set back to the grandparent's bytes is kept (the
	 * parent, the layer above, holds the flipped bit); page 101 likewise. */
	memset(changed, 0, words * 8);
	changed[300 / 64] |= (uint64_t)1 << (300 % 64);
	changed[101 / 64] |= (uint64_t)1 << (101 % 64);
	changed[500 / 64] |= (uint64_t)1 << (500 % 64); /* read only */
	ram[300 * PAGE + 17] ^= 1;
	memcpy(ram + 101 * PAGE, old + 101 * PAGE, PAGE);
	page_hash_set(next, 0, NPAGES, ram, changed);
	CHECK_EQ(page_hash_drop_same(cur, next, 0, NPAGES, changed), 1);
	CHECK_EQ(bit(changed, 300), 1);
	CHECK_EQ(bit(changed, 101), 1);
	CHECK_EQ(bit(changed, 500), 0);
	/* A range: pages outside it are not looked at. */
	memset(changed, 0xff, words * 8);
	CHECK_EQ(page_hash_drop_same(cur, next, 600, 10, changed), 10);
	CHECK_EQ(bit(changed, 599), 1);
	CHECK_EQ(bit(changed, 610), 1);
	page_hash_free(cur);
	page_hash_free(next);
	page_hash_free(NULL);
	free(ram);
	free(old);
	free(changed);
	TEST_DONE();
}
