/* The control socket's client side (CLI, manager, tests): connect, send
 * one request line, wait for one reply line, with a deadline. */
#include "control/control.h"
#include "control/control_internal.h"

#include "util/err.h"
#include "util/monotime.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define REPLY_MAX (16 * 1024 * 1024) /* longest reply control_request() accepts */

/* Wait for EVENTS on FD until DEADLINE (< 0: forever); 0, or -ETIMEDOUT. */
static int control_wait(int fd, short events, long long deadline)
{
	for (;;) {
		int t = -1;
		if (deadline >= 0) {
			long long left = deadline - monotime_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			t = left > 1000000 ? 1000000 : (int)left;
		}
		struct pollfd pfd = {.fd = fd, .events = events};
		int n = poll(&pfd, 1, t);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int control_connect(const char *path, const struct sockaddr_un *sa, long long deadline,
			   int timeout_ms)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(errno, "control socket %s: socket", path);
	for (;;) {
		if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
			return fd;
		int e = errno;
		if (e == EINTR)
			continue;
		if (e == EAGAIN && (deadline < 0 || monotime_ms() < deadline)) {
			/* A full backlog: a Unix socket has no connect in progress to
			 * wait for, so try again shortly. */
			usleep(10000);
			continue;
		}
		close(fd);
		if (e == ENOENT || e == ECONNREFUSED)
			return err_set(e, "no VM is listening on %s", path);
		if (e == EAGAIN) {
			err_set(0, "no VM answered on %s within %d ms (busy)", path, timeout_ms);
			return -ETIMEDOUT;
		}
		return err_set(e, "connecting to %s", path);
	}
}

static int control_send_all(int fd, const char *path, const char *buf, size_t len,
			    long long deadline, int timeout_ms)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return err_set(errno, "sending to %s", path);
		int r = control_wait(fd, POLLOUT, deadline);
		if (r == -ETIMEDOUT) {
			err_set(0, "%s did not take the request within %d ms", path, timeout_ms);
			return r;
		}
		if (r < 0)
			return err_set(-r, "sending to %s", path);
	}
	return 0;
}

static int control_read_line(int fd, const char *path, char **out, long long deadline,
			     int timeout_ms)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	if (!buf)
		return err_set(ENOMEM, "reply from %s", path);
	for (;;) {
		if (len == cap) {
			if (cap >= REPLY_MAX) {
				free(buf);
				return err_set(EFBIG, "reply from %s is longer than %d bytes", path,
					       REPLY_MAX);
			}
			char *p = realloc(buf, cap * 2);
			if (!p) {
				free(buf);
				return err_set(ENOMEM, "reply from %s", path);
			}
			buf = p;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
		if (n > 0) {
			char *nl = memchr(buf + len, '\n', (size_t)n);
			len += (size_t)n;
			if (nl) {
				*nl = 0;
				*out = buf;
				return 0;
			}
			continue;
		}
		int r;
		if (n == 0) {
			r = err_set(0, "%s closed the connection without a reply", path);
			r = -ECONNRESET;
		} else if (errno == EINTR) {
			continue;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
			r = err_set(errno, "reading the reply from %s", path);
		} else if ((r = control_wait(fd, POLLIN, deadline)) == 0) {
			continue;
		} else if (r == -ETIMEDOUT) {
			err_set(0, "no reply from %s within %d ms", path, timeout_ms);
		} else {
			r = err_set(-r, "reading the reply from %s", path);
		}
		free(buf);
		return r;
	}
}

int control_request(const char *path, const char *request, char **reply, int timeout_ms)
{
	*reply = NULL;
	size_t len = strlen(request);
	if (len && request[len - 1] == '\n')
		len--;
	if (memchr(request, '\n', len))
		return err_set(EINVAL, "a request to %s must be one line", path);
	if (strspn(request, " \t\r") >= len)
		/* The server ignores blank lines: we would wait for nothing. */
		return err_set(EINVAL, "an empty request to %s", path);
	struct sockaddr_un sa;
	int r = control_addr(path, &sa);
	if (r < 0)
		return r;
	long long deadline = timeout_ms < 0 ? -1 : monotime_ms() + timeout_ms;

	int fd = control_connect(path, &sa, deadline, timeout_ms);
	if (fd < 0)
		return fd;
	char *line = malloc(len + 1);
	if (!line) {
		close(fd);
		return err_set(ENOMEM, "request to %s", path);
	}
	memcpy(line, request, len);
	line[len] = '\n';
	r = control_send_all(fd, path, line, len + 1, deadline, timeout_ms);
	free(line);
	if (r == 0)
		r = control_read_line(fd, path, reply, deadline, timeout_ms);
	close(fd);
	return r;
}

int control_call(const char *path, json_t *request, json_t **reply, int timeout_ms)
{
	char *line = NULL, *req = json_dumps(request, JSON_COMPACT);
	if (!req)
		return err_set(ENOMEM, "%s: request", path);
	int r = control_request(path, req, &line, timeout_ms);
	free(req);
	if (r < 0)
		return r;
	json_error_t e;
	json_t *j = json_loads(line, 0, &e);
	if (!j || !json_is_object(j)) {
		r = err_set(EPROTO, "%s: bad reply: %.200s", path, line);
		json_decref(j);
		free(line);
		return r;
	}
	free(line);
	if (!json_is_true(json_object_get(j, "ok"))) {
		const char *m = json_string_value(json_object_get(j, "error"));
		json_int_t e_no = json_integer_value(json_object_get(j, "errno"));
		r = err_set(e_no > 0 && e_no < 4096 ? (int)e_no : EIO, "%s: %s", path,
			    m ? m : "request failed");
		json_decref(j);
		return r;
	}
	if (reply)
		*reply = j;
	else
		json_decref(j);
	return 0;
}
