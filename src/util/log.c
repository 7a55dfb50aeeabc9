#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum log_level log_level = LOG_WARN;

void log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	if (level > log_level)
		return;
	/* One fprintf per message keeps lines from vCPU threads whole; "\r\n"
	 * because the terminal may be in raw mode while a guest runs. */
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "cairn: %s: %s\r\n", names[level], buf);
}

static struct timespec log_start;

__attribute__((constructor)) static void log_mark_start(void)
{
	clock_gettime(CLOCK_MONOTONIC, &log_start);
}

unsigned long long log_uptime_us(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (unsigned long long)((now.tv_sec - log_start.tv_sec) * 1000000LL +
				    (now.tv_nsec - log_start.tv_nsec) / 1000);
}
