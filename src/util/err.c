#include "util/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ERR_MAX ERR_MSG_MAX

static __thread char err_buf[ERR_MAX];

int err_setv(int errnum, const char *fmt, va_list ap)
{
	if (errnum < 0)
		errnum = -errnum;
	/* formatted aside: an argument may be err_msg() itself */
	char buf[ERR_MAX];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0)
		n = 0;
	const char *text = errnum ? strerror(errnum) : NULL;
	if (text && (size_t)n < sizeof(buf) && !strstr(buf, text))
		snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", text);
	memcpy(err_buf, buf, sizeof(err_buf));
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

void err_save(struct err_saved *s)
{
	memcpy(s->msg, err_buf, sizeof(s->msg));
}

void err_restore(const struct err_saved *s)
{
	memcpy(err_buf, s->msg, sizeof(err_buf));
}
