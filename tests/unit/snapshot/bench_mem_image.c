/* Throughput of mem_image save / verify / load / map beside a plain
 * sequential write of the same bytes (the disk's bandwidth).  Not a test:
 *	bench_mem_image [MiB, default 2048] [directory, default .]
 * RAM is "mostly filled": 7 of every 8 pages random, the rest zero. */
#include "snapshot/mem_image.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Evict the image from the page cache (its pages are clean after the
 * save's fsync), so that reads come from the disk. */
static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

static void report(const char *what, uint64_t bytes, double secs)
{
	printf("%-34s %8.3f s  %8.0f MiB/s\n", what, secs, (double)bytes / secs / (1 << 20));
}

int main(int argc, char **argv)
{
	uint64_t size = (uint64_t)(argc > 1 ? atoll(argv[1]) : 2048) << 20;
	const char *dir = argc > 2 ? argv[2] : ".";
	char path[4096], raw[4096];
	snprintf(path, sizeof(path), "%s/bench-memory.img", dir);
	snprintf(raw, sizeof(raw), "%s/bench-raw.img", dir);
	uint8_t *ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	uint64_t x = 88172645463325252ull;
	for (uint64_t off = 0; off < size; off += 8) {
		if ((off / MEM_IMAGE_PAGE_SIZE) % 8 == 7)
			continue;
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(ram + off, &x, 8);
	}
	printf("%llu MiB of RAM, 7/8 of the pages non-zero, files in %s\n",
	       (unsigned long long)(size >> 20), dir);

	/* Baseline: the same bytes, one sequential write, fsync. */
	double t = now();
	int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || file_pwrite_all(fd, ram, size, 0) < 0 || fsync(fd) < 0) {
		perror(raw);
		return 1;
	}
	close(fd);
	report("plain write + fsync (baseline)", size, now() - t);
	unlink(raw);

	struct mem_image_info info;
	t = now();
	if (mem_image_save(path, ram, size, NULL, NULL, &info) < 0) {
		fprintf(stderr, "%s\n", err_msg());
		return 1;
	}
	report("mem_image_save (incl. fsync)", size, now() - t);
	printf("  %llu MiB written of %llu MiB, %llu chunks\n",
	       (unsigned long long)(info.data_bytes >> 20), (unsigned long long)(size >> 20),
	       (unsigned long long)info.chunks);

	/* Baseline for the reads: the same file, sequential 2 MiB reads. */
	drop_cache(path);
	uint8_t *chunk = malloc(MEM_IMAGE_CHUNK_SIZE);
	fd = open(path, O_RDONLY);
	t = now();
	for (uint64_t off = 0; off < size; off += MEM_IMAGE_CHUNK_SIZE)
		if (fd < 0 || file_pread_all(fd, chunk, MEM_IMAGE_CHUNK_SIZE, off) < 0) {
			perror(path);
			return 1;
		}
	report("plain read, cold (baseline)", size, now() - t);
	close(fd);
	free(chunk);

	drop_cache(path);
	t = now();
	if (mem_image_verify(path, size, NULL, NULL) < 0) {
		fprintf(stderr, "%s\n", err_msg());
		return 1;
	}
	report("mem_image_verify (cold: from disk)", size, now() - t);
	t = now();
	if (mem_image_verify(path, size, NULL, NULL) < 0) {
		fprintf(stderr, "%s\n", err_msg());
		return 1;
	}
	report("mem_image_verify (page cache warm)", size, now() - t);

	uint8_t *back =
	    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	drop_cache(path);
	t = now();
	if (mem_image_load(path, back, size) < 0) {
		fprintf(stderr, "%s\n", err_msg());
		return 1;
	}
	report("mem_image_load (cold, fresh memory)", size, now() - t);
	t = now();
	if (mem_image_load(path, back, size) < 0) {
		fprintf(stderr, "%s\n", err_msg());
		return 1;
	}
	report("mem_image_load (warm, memory faulted in)", size, now() - t);
	munmap(back, size);

	void *m;
	t = now();
	if (mem_image_map(path, size, &m) < 0) {
		fprintf(stderr, "%s\n", err_msg());
		return 1;
	}
	double tm = now() - t;
	printf("%-34s %8.3f ms\n", "mem_image_map (to a usable mapping)", tm * 1e3);
	munmap(m, size);
	unlink(path);
	munmap(ram, size);
	return 0;
}
