/*
 * diskpat: writes or verifies the test guest's disk block pattern on a host
 * file (layout in guest/diskpat.h), so tests can check the guest's disk from
 * the host and the reverse.
 *   diskpat write FILE N SEED    -> blocks 0..N-1, fsync
 *   diskpat verify FILE N SEED   -> exit 0 ok, 1 mismatch, 2 usage
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

int main(int argc, char **argv)
{
	uint64_t n, seed, blk[DISKPAT_WORDS];
	if (argc != 5 || (strcmp(argv[1], "write") && strcmp(argv[1], "verify")) ||
	    parse(argv[3], &n) || parse(argv[4], &seed)) {
		fprintf(stderr, "usage: diskpat write|verify FILE N SEED\n");
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
