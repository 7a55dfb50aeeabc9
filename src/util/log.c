#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>

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
