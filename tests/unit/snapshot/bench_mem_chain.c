/* Memory layers: create, restore at depth, absorb.  Not a test:
 *	bench_mem_chain [MiB, default 2048] [directory, default .] [layers, default 16]
 * RAM is 7 of every 8 pages random (the rest zero) and saved full; then each
 * layer changes 1 % of the pages, scattered, and is saved on the previous
 * image.  Measured: each layer's save (incl. fsync), mem_chain_map and
 * mem_chain_load of the deepest (page cache warm, and the layers cold),
 * mem_chain_map of the full image alone, and absorbing a middle layer into
 * its child. */
#include "snapshot/mem_chain.h"
#include "snapshot/mem_image.h"
#include "util/err.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE MEM_IMAGE_PAGE_SIZE

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, err_msg());
	exit(1);
}

/* Restore the chain at PATH: map (and touch nothing; VERIFIED: every
 * image checked, as a verified restore does) or load. */
static double restore_how(const char *path, uint64_t size, bool map, bool verified)
{
	struct mem_chain *c;
	double t = now();
	if (mem_chain_open(path, size, &c) < 0)
		die(path);
	void *m = NULL;
	if (map && mem_chain_map(c, NULL, verified ? MEM_CHAIN_VERIFY_BASE : 0, &m) < 0)
		die("map");
	if (!map) {
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem_chain_load(c, m) < 0)
			die("load");
	}
	t = now() - t;
	mem_chain_close(c);
	munmap(m, size);
	return t;
}

static double restore(const char *path, uint64_t size, bool map)
{
	return restore_how(path, size, map, false);
}

int main(int argc, char **argv)
{
	uint64_t size = (uint64_t)(argc > 1 ? atoll(argv[1]) : 2048) << 20;
	const char *dir = argc > 2 ? argv[2] : ".";
	int n = argc > 3 ? atoi(argv[3]) : 16;
	uint64_t pages = size / PAGE, words = (pages + 63) / 64;
	uint8_t *ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *changed = calloc(words, 8);
	char (*paths)[512] = calloc((size_t)n + 1, 512);
	if (ram == MAP_FAILED || !changed || !paths)
		return 1;
	uint64_t x = 88172645463325252ull;
	for (uint64_t off = 0; off < size; off += 8) {
		if ((off / PAGE) % 8 == 7)
			continue;
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(ram + off, &x, 8);
	}
	struct mem_image_source src = mem_image_ram_source(ram);
	struct mem_image_info info, prev;
	double t, *tl = calloc((size_t)n, sizeof(double));
	for (int i = 0; i <= n; i++) {
		char d[400];
		snprintf(d, sizeof(d), "%.300s/bench-chain-%d", dir, i);
		mkdir(d, 0755);
		snprintf(paths[i], 512, "%s/memory.img", d);
	}
	t = now();
	if (mem_image_save_as(paths[0], &src, size, NULL, NULL, NULL, NULL, &prev) < 0)
		die(paths[0]);
	printf("%llu MiB of RAM, %d layers of %llu scattered pages (1 %%), files in %s\n",
	       (unsigned long long)(size >> 20), n, (unsigned long long)(pages / 100), dir);
	printf("full image save: %.3f s\n", now() - t);
	uint64_t bytes = 0;
	for (int i = 1; i <= n; i++) {
		memset(changed, 0, 8 * words);
		for (uint64_t k = 0; k < pages / 100; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			uint64_t p = x % pages;
			memcpy(ram + p * PAGE + (x >> 52) % (PAGE - 8), &x, 8);
			changed[p / 64] |= 1ull << (p % 64);
		}
		char ref[64];
		snprintf(ref, sizeof(ref), "../bench-chain-%d/memory.img", i - 1);
		struct mem_image_layer_spec spec = {changed, prev.id, ref, prev.depth,
						    prev.lineage + 1};
		t = now();
		if (mem_image_save_as(paths[i], &src, size, &spec, NULL, NULL, NULL, &info) < 0)
			die(paths[i]);
		tl[i - 1] = now() - t;
		struct stat st;
		stat(paths[i], &st);
		bytes += (uint64_t)st.st_blocks * 512;
		prev = info;
	}
	qsort(tl, (size_t)n, sizeof(double), cmp);
	printf("layer save (incl. fsync): median %.1f ms, min %.1f, max %.1f; %.1f MiB on disk each\n",
	       tl[n / 2] * 1e3, tl[0] * 1e3, tl[n - 1] * 1e3, (double)bytes / n / (1 << 20));
	for (int r = 0; r < 3; r++)
		printf("restore, warm: full map %.1f ms; depth %d map %.1f ms, load %.1f ms; full "
		       "load %.1f ms\n",
		       restore(paths[0], size, true) * 1e3, n, restore(paths[n], size, true) * 1e3,
		       restore(paths[n], size, false) * 1e3, restore(paths[0], size, false) * 1e3);
	for (int r = 0; r < 3; r++) {
		double full = restore_how(paths[0], size, true, true);
		double deep = restore_how(paths[n], size, true, true);
		printf("restore verified, warm: full map %.1f ms; depth %d map %.1f ms (%.2f x)\n",
		       full * 1e3, n, deep * 1e3, deep / full);
	}
	for (int i = 1; i <= n; i++)
		drop_cache(paths[i]);
	printf("restore, layers cold: depth %d map %.1f ms\n", n, restore(paths[n], size, true) * 1e3);
	/* delete the middle layer: its child absorbs it */
	int mid = n / 2;
	t = now();
	if (mem_chain_absorb_parent(paths[mid + 1], size, NULL) < 0)
		die("absorb");
	double ta = now() - t;
	t = now();
	unlink(paths[mid]);
	printf("absorb a layer into its child: %.1f ms, then unlink it %.1f ms\n", ta * 1e3,
	       (now() - t) * 1e3);
	if (getenv("BENCH_KEEP")) /* the files stay, for other measurements */
		return 0;
	for (int i = 0; i <= n; i++) {
		unlink(paths[i]);
		*strrchr(paths[i], '/') = 0;
		rmdir(paths[i]);
	}
	return 0;
}
