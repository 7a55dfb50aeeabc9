#include "util/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ERR_MAX 1024

static __thread char err_buf[ERR_MAX];

int err_setv(int errnum, const char *fmt, va_list ap)
{
	if (errnum < 0)
		errnum = -errnum;
	int n = vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	if (n < 0)
		n = 0;
	if (errnum && (size_t)n < sizeof(err_buf))
		snprintf(err_buf + n, sizeof(err_buf) - n, ": %s", strerror(errnum));
	return errnum ? -errnum : -EIO;
}

int err_set(int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = err_setv(errnum, fmt, ap);
	va_end(ap);
	return r;
}

int err_prefix(int ret, const char *fmt, ...)
{
	char old[ERR_MAX];
	memcpy(old, err_buf, sizeof(old));
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(err_buf))
		snprintf(err_buf + n, sizeof(err_buf) - (size_t)n, ": %s", old);
	return ret;
}

const char *err_msg(void)
{
	return err_buf;
}

void err_clear(void)
{
	err_buf[0] = 0;
}
