/* One place where error messages are made.
 *
 * Library functions return 0 or a negative errno.  The function that knows
 * the context (file name, offset, device) records a message with err_set();
 * callers may prepend context with err_prefix(); the front end prints
 * err_msg() once.  The buffer is per thread, so vCPU threads do not clash. */
#ifndef CAIRN_UTIL_ERR_H
#define CAIRN_UTIL_ERR_H

#include <stdarg.h>

#define ERR_MSG_MAX 1024

/* Record "MESSAGE" (plus ": strerror(errnum)" when errnum != 0 and MESSAGE
 * does not say it already: a message built on an earlier one, "%s; ...",
 * names the problem once); returns -errnum, or -EIO when errnum is 0, so
 * it can be returned directly. */
int err_set(int errnum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like err_set but for a negative errno value as returned by our functions. */
int err_setv(int errnum, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Put "PREFIX: " in front of the current message; returns ret unchanged. */
int err_prefix(int ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The current message ("" when none). */
const char *err_msg(void);
void err_clear(void);

/* Best-effort work after a failure (an undo, a cleanup) must not replace
 * the failure's message: err_save() before it, err_restore() after. */
struct err_saved {
	char msg[ERR_MSG_MAX];
};
void err_save(struct err_saved *s);
void err_restore(const struct err_saved *s);

#endif
