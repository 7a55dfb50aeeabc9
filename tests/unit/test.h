/* A minimal assertion helper for unit tests: failures print file:line and
 * the expression, and the test exits 1 at the end. */
#ifndef CAIRN_TEST_H
#define CAIRN_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int test_failures;

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failures++;                                               \
		}                                                                      \
	} while (0)

#define CHECK_EQ(a, b)                                                                 \
	do {                                                                           \
		long long _a = (long long)(a), _b = (long long)(b);                    \
		if (_a != _b) {                                                        \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
				__FILE__, __LINE__, #a, _a, #b, _b);                   \
			test_failures++;                                               \
		}                                                                      \
	} while (0)

#define TEST_DONE()                                                                    \
	do {                                                                           \
		if (test_failures)                                                     \
			fprintf(stderr, "%d check(s) failed\n", test_failures);        \
		return test_failures ? 1 : 0;                                          \
	} while (0)

#endif
