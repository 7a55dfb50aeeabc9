/* Monotonic time for durations (pauses, replies' timings). */
#ifndef CAIRN_UTIL_MONOTIME_H
#define CAIRN_UTIL_MONOTIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t monotime_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

static inline long long monotime_ms(void)
{
	return (long long)(monotime_us() / 1000);
}

#endif
