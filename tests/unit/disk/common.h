/* Helpers shared by the disk unit tests: a scratch directory and pattern
 * buffers. */
#ifndef CAIRN_TEST_DISK_COMMON_H
#define CAIRN_TEST_DISK_COMMON_H

#include "disk/block.h"
#include "util/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch_dir[256];

static inline void scratch_init(void)
{
	snprintf(scratch_dir, sizeof(scratch_dir), "/tmp/cairn-disk-test.XXXXXX");
	if (!mkdtemp(scratch_dir)) {
		perror("mkdtemp");
		exit(1);
	}
}

static inline void scratch_cleanup(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", scratch_dir);
}

static inline const char *scratch(const char *name)
{
	static char buf[8][320];
	static int k;
	char *p = buf[k++ & 7];
	snprintf(p, 320, "%s/%s", scratch_dir, name);
	return p;
}

/* Report the library's message when an unexpected failure happens. */
#define CHECK_OK(expr)                                                                             \
	do {                                                                                       \
		int _r = (expr);                                                                   \
		if (_r < 0) {                                                                      \
			fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,       \
				err_msg());                                                        \
			test_failures++;                                                           \
		}                                                                                  \
	} while (0)

static inline int buf_is(const uint8_t *b, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != v)
			return 0;
	return 1;
}

#endif
