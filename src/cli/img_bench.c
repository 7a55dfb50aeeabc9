/* `cairn img bench`: qemu-img bench's options and output, synchronous
 * requests through the block layer (so the figures measure cairn's disk
 * code the way the VMM's I/O thread uses it). */
#include "cli/cli.h"
#include "disk/block.h"
#include "util/err.h"
#include "util/size.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_img_bench(int argc, char **argv);

static int num(const char *s, uint64_t *v)
{
	return size_parse(s, 1, v);
}

int cli_img_bench(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"flush-interval", required_argument, NULL, 'F' + 0x100},
	    {"pattern", required_argument, NULL, 'P' + 0x100},
	    {"no-drain", no_argument, NULL, 'N' + 0x100},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *fmt = NULL;
	uint64_t count = 75000, bufsize = 4096, step = 0, offset = 0, flush_every = 0, depth = 64;
	int pattern = 0, c;
	bool write = false, quiet = false;
	while ((c = getopt_long(argc, argv, "+c:d:f:i:no:qs:S:t:wUh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (num(optarg, &count) < 0)
				goto usage;
			break;
		case 'd':
			if (num(optarg, &depth) < 0)
				goto usage;
			break;
		case 'f':
			fmt = optarg;
			break;
		case 'o':
			if (num(optarg, &offset) < 0)
				goto usage;
			break;
		case 's':
			if (num(optarg, &bufsize) < 0 || !bufsize)
				goto usage;
			break;
		case 'S':
			if (num(optarg, &step) < 0)
				goto usage;
			break;
		case 'w':
			write = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'F' + 0x100:
			if (num(optarg, &flush_every) < 0)
				goto usage;
			break;
		case 'P' + 0x100:
			pattern = (int)strtol(optarg, NULL, 0);
			break;
		case 'i':
		case 'n':
		case 't':
		case 'U':
		case 'N' + 0x100:
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 1)
		goto usage;
	if (!step)
		step = bufsize;
	struct block_dev *bd;
	if (block_open(argv[optind], fmt, write ? 0 : BLOCK_RDONLY, &bd) < 0)
		return cli_fail();
	if (bufsize > bd->size || offset > bd->size - bufsize) {
		block_close(bd);
		return cli_usage_error("img", "bench: request beyond the image");
	}
	uint8_t *buf = malloc(bufsize);
	if (!buf) {
		block_close(bd);
		return CLI_FAILED;
	}
	memset(buf, pattern, bufsize);
	if (!quiet)
		printf(
		    "Sending %llu %s requests, %llu bytes each, 1 in parallel (starting at offset "
		    "%llu, step size %llu)\n",
		    (unsigned long long)count, write ? "write" : "read",
		    (unsigned long long)bufsize, (unsigned long long)offset,
		    (unsigned long long)step);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = 0;
	uint64_t off = offset;
	for (uint64_t i = 0; i < count && r == 0; i++) {
		r = write ? block_write(bd, buf, off, bufsize) : block_read(bd, buf, off, bufsize);
		if (r == 0 && write && flush_every && (i + 1) % flush_every == 0)
			r = block_flush(bd);
		off += step;
		if (off + bufsize > bd->size)
			off %= bd->size - bufsize + 1;
	}
	/* Like qemu-img bench, the flush at close is not timed. */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r == 0 && write)
		r = block_flush(bd);
	free(buf);
	block_close(bd);
	if (r < 0)
		return cli_fail();
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("Run completed in %.3f seconds.\n", secs);
	return CLI_OK;
usage:
	return cli_usage_error("img", "bench [-c COUNT] [-f FMT] [-o OFFSET] [-s SIZE] [-S STEP] "
				      "[-w] [--flush-interval=N] [--pattern=BYTE] FILE");
}
