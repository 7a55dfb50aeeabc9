/*
 * diskpat: writes or verifies the test guest's disk block pattern on a host
 * file (layout in guest/diskpat.h), so tests can check the guest's disk from
 * the host and the reverse.
 *   diskpat write FILE N SEED    -> blocks 0..N-1, fsync
 *   diskpat verify FILE N SEED   -> exit 0 ok, 1 mismatch, 2 usage
 *   diskpat seeds FILE N         -> every block intact with a seed of its own:
 *                                   the runs of seeds, e.g. "0-99:7 100-1999:6"
 *                                   (a disk whose fill was cut short)
 *   diskpat memsum MB SEED       -> the sum memfill MB SEED prints
 */
#include "../diskpat.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	*v = strtoull(s, &end, 0);
	return errno || !*s || *end ? -1 : 0;
}

/* Blocks 0..N-1 of FILE, each intact with whatever seed it has: the runs
 * of equal seeds ("FIRST-LAST:SEED"), or the first block that is not. */
static int seeds(const char *file, uint64_t n)
{
	uint64_t blk[DISKPAT_WORDS], run_seed = 0, run_first = 0;
	int fd = open(file, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "diskpat: %s: %s\n", file, strerror(errno));
		return 1;
	}
	printf("diskpat: seeds");
	for (uint64_t i = 0; i <= n; i++) {
		const char *why = NULL;
		int word;
		if (i < n) {
			ssize_t got = pread(fd, blk, DISKPAT_BLOCK, (off_t)(i * DISKPAT_BLOCK));
			if (got != DISKPAT_BLOCK)
				why = got < 0 ? strerror(errno) : "short read";
			else
				why = diskpat_check(blk, blk[2], i, &word);
		}
		if (why) {
			printf(" FAILED block %llu (%s)\n", (unsigned long long)i, why);
			close(fd);
			return 1;
		}
		if (i > 0 && (i == n || blk[2] != run_seed))
			printf(" %llu-%llu:%llu", (unsigned long long)run_first,
			       (unsigned long long)i - 1, (unsigned long long)run_seed);
		if (i < n && (i == 0 || blk[2] != run_seed)) {
			run_seed = blk[2];
			run_first = i;
		}
	}
	printf("\n");
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t n, seed, blk[DISKPAT_WORDS];
	if (argc == 4 && !strcmp(argv[1], "seeds") && !parse(argv[3], &n))
		return seeds(argv[2], n);
	if (argc == 4 && !strcmp(argv[1], "memsum") && !parse(argv[2], &n) &&
	    !parse(argv[3], &seed)) {
		/* memfill: word k of the region is pat_word(SEED, k); the sum wraps */
		uint64_t sum = 0;
		for (uint64_t k = 0; k < n * (1u << 20) / 8; k++)
			sum += pat_word(seed, k);
		printf("%016llx\n", (unsigned long long)sum);
		return 0;
	}
	if (argc != 5 || (strcmp(argv[1], "write") && strcmp(argv[1], "verify")) ||
	    parse(argv[3], &n) || parse(argv[4], &seed)) {
		fprintf(stderr, "usage: diskpat write|verify FILE N SEED | seeds FILE N | "
				"memsum MB SEED\n");
		return 2;
	}
	int write_mode = !strcmp(argv[1], "write");
	const char *file = argv[2];
	int fd = open(file, write_mode ? O_RDWR | O_CREAT : O_RDONLY, 0644);
	if (fd < 0) {
		fprintf(stderr, "diskpat: %s: %s\n", file, strerror(errno));
		return 1;
	}
	for (uint64_t i = 0; i < n; i++) {
		off_t off = (off_t)(i * DISKPAT_BLOCK);
		if (write_mode) {
			diskpat_fill(blk, seed, i);
			if (pwrite(fd, blk, DISKPAT_BLOCK, off) != DISKPAT_BLOCK) {
				fprintf(stderr, "diskpat: %s: write at offset %lld: %s\n", file,
					(long long)off, strerror(errno));
				return 1;
			}
			continue;
		}
		ssize_t got = pread(fd, blk, DISKPAT_BLOCK, off);
		if (got != DISKPAT_BLOCK) {
			printf("diskpat: verify FAILED block %llu (%s)\n", (unsigned long long)i,
			       got < 0 ? strerror(errno) : "short read");
			return 1;
		}
		int word;
		const char *why = diskpat_check(blk, seed, i, &word);
		if (why) {
			printf("diskpat: verify FAILED block %llu (%s)\n", (unsigned long long)i,
			       why);
			return 1;
		}
	}
	if (write_mode && fsync(fd)) {
		fprintf(stderr, "diskpat: %s: fsync: %s\n", file, strerror(errno));
		return 1;
	}
	close(fd);
	if (write_mode)
		printf("diskpat: write n=%llu seed=%llu ok\n", (unsigned long long)n,
		       (unsigned long long)seed);
	else
		printf("diskpat: verify ok n=%llu\n", (unsigned long long)n);
	return 0;
}
