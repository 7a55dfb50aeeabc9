/* Unit tests for src/control: a real event loop in a thread, the fake
 * commands of tests/common/fake_control.h, and clients over real Unix
 * sockets. */
#include "control/control.h"
#include "fake_control.h"
#include "test.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct {
	struct evloop *loop;
	pthread_t thread;
	char dir[64];
	char path[128];
	/* The back end; its deferred replies are touched in the loop thread only. */
	struct fake_control fc;
} fx;

/* ---- running things in the loop thread ---- */

struct sync_call {
	void (*fn)(void *);
	void *arg;
	sem_t done;
};

static void sync_tramp(void *opaque)
{
	struct sync_call *s = opaque;
	s->fn(s->arg);
	sem_post(&s->done);
}

static void loop_sync(void (*fn)(void *), void *arg)
{
	struct sync_call s = {.fn = fn, .arg = arg};
	sem_init(&s.done, 0, 0);
	CHECK_EQ(evloop_call(fx.loop, sync_tramp, &s), 0);
	sem_wait(&s.done);
	sem_destroy(&s.done);
}

static void get_npending(void *arg)
{
	*(int *)arg = fx.fc.npending;
}

static int npending(void)
{
	int n;
	loop_sync(get_npending, &n);
	return n;
}

/* Wait until "slow" has been called N times in all. */
static void wait_pending(int n)
{
	for (int i = 0; i < 400 && npending() < n; i++)
		usleep(5000);
	CHECK_EQ(npending(), n);
}

struct finish_args {
	int index;
	int result;
	json_t *reply;
};

static void finish_in_loop(void *arg)
{
	struct finish_args *a = arg;
	fake_control_finish(&fx.fc, a->index, a->result, a->reply);
}

static void finish(int index, int result, json_t *reply)
{
	struct finish_args a = {index, result, reply};
	loop_sync(finish_in_loop, &a);
	json_decref(reply);
}

/* ---- a test client ---- */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cl_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "connect %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void cl_send_n(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

static void cl_send(int fd, const char *s)
{
	cl_send_n(fd, s, strlen(s));
}

/* One reply line (malloc'd, no newline), or NULL on EOF or timeout. */
static char *cl_line(int fd, int timeout_ms)
{
	size_t len = 0, cap = 256;
	char *buf = malloc(cap);
	long long end = now_ms() + timeout_ms;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = end - now_ms();
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		char ch;
		ssize_t n = recv(fd, &ch, 1, 0);
		if (n <= 0)
			break;
		if (ch == '\n') {
			buf[len] = 0;
			return buf;
		}
		if (len + 2 > cap)
			buf = realloc(buf, cap *= 2);
		buf[len++] = ch;
	}
	free(buf);
	return NULL;
}

/* True when the server closed the connection (EOF) within TIMEOUT_MS. */
static bool cl_eof(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) <= 0)
		return false;
	char ch;
	ssize_t n = recv(fd, &ch, 1, MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Expect the next line on FD to be exactly WANT. */
static void expect_line(int fd, const char *want, int line)
{
	char *got = cl_line(fd, 3000);
	if (!got || strcmp(got, want) != 0) {
		fprintf(stderr, "line %d: want %s\n         got  %s\n", line, want,
			got ? got : "(none)");
		test_failures++;
	}
	free(got);
}
#define EXPECT_LINE(fd, want) expect_line(fd, want, __LINE__)

/* One request through control_request(); the reply must be WANT, or when
 * PARTIAL, contain it. */
static void expect_request(const char *req, const char *want, bool partial, int line)
{
	char *got = NULL;
	int r = control_request(fx.path, req, &got, 3000);
	if (r < 0 || !got || (partial ? !strstr(got, want) : strcmp(got, want) != 0)) {
		fprintf(stderr, "line %d: %s\n  want %s%s\n  got  %s (%d %s)\n", line, req,
			partial ? "... " : "", want, got ? got : "(none)", r, err_msg());
		test_failures++;
	}
	free(got);
}
#define EXPECT_REPLY(req, want) expect_request(req, want, false, __LINE__)
#define EXPECT_REPLY_HAS(req, want) expect_request(req, want, true, __LINE__)

/* ---- set-up ---- */

static void *loop_main(void *arg)
{
	evloop_run(fx.loop);
	return NULL;
}

static void fixture_start(void)
{
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/cairn-ctl-XXXXXX");
	CHECK(mkdtemp(fx.dir) != NULL);
	snprintf(fx.path, sizeof(fx.path), "%s/control.sock", fx.dir);
	CHECK_EQ(evloop_create(&fx.loop), 0);
	int r = control_open(fx.loop, fx.path, fake_control_cmds, fake_control_ncmds, &fx.fc,
			     &fx.fc.srv);
	if (r < 0)
		fprintf(stderr, "control_open: %s\n", err_msg());
	CHECK_EQ(r, 0);
	CHECK_EQ(pthread_create(&fx.thread, NULL, loop_main, NULL), 0);
}

static void fixture_stop(void)
{
	evloop_stop(fx.loop);
	pthread_join(fx.thread, NULL);
	control_close(fx.fc.srv);
	fx.fc.srv = NULL;
	struct stat st;
	CHECK(stat(fx.path, &st) < 0 && errno == ENOENT);
	/* Handles outstanding after close still finish safely. */
	for (int i = 0; i < fx.fc.npending; i++)
		if (fx.fc.pending[i])
			fake_control_finish(&fx.fc, i, 0, NULL);
	CHECK_EQ(fx.fc.live, 0);
	if (fx.fc.broken)
		fprintf(stderr, "the server broke a rule: %s\n", fx.fc.broken);
	CHECK(fx.fc.broken == NULL);
	evloop_destroy(fx.loop);
	rmdir(fx.dir);
}

/* ---- tests ---- */

static void test_replies(void)
{
	EXPECT_REPLY("{\"cmd\":\"echo\",\"value\":[1,\"x\"]}", "{\"ok\":true,\"value\":[1,\"x\"]}");
	EXPECT_REPLY("{\"cmd\":\"echo\"}\n", "{\"ok\":true}");
	EXPECT_REPLY("{\"id\":7,\"cmd\":\"echo\",\"value\":\"a\\nb\"}",
		     "{\"ok\":true,\"id\":7,\"value\":\"a\\nb\"}");
	EXPECT_REPLY("  {\"cmd\":\"echo\",\"value\":\"\xc3\xa9\"}  \r",
		     "{\"ok\":true,\"value\":\"\xc3\xa9\"}");
	EXPECT_REPLY("{\"cmd\":\"fail\"}",
		     "{\"ok\":false,\"error\":\"no such widget w1: No such file or directory\",\"errno\":2,\"code\":\"ENOENT\"}");
	EXPECT_REPLY("{\"cmd\":\"fail\",\"id\":\"q\"}",
		     "{\"ok\":false,\"id\":\"q\",\"error\":\"no such widget w1: No such file or "
		     "directory\",\"errno\":2,\"code\":\"ENOENT\"}");
	EXPECT_REPLY("{\"cmd\":\"fail_plain\"}",
		     "{\"ok\":false,\"error\":\"Device or resource busy\",\"errno\":16,\"code\":\"EBUSY\"}");
	EXPECT_REPLY("{\"cmd\":\"override\",\"id\":1}", "{\"ok\":true,\"id\":1,\"x\":1}");
	EXPECT_REPLY("{\"cmd\":\"override\"}", "{\"ok\":true,\"x\":1}");
	EXPECT_REPLY(
	    "{\"cmd\":\"nohandle\"}",
	    "{\"ok\":false,\"error\":\"command \\\"nohandle\\\" deferred its reply without "
	    "a handle\",\"errno\":22,\"code\":\"EINVAL\"}");
	EXPECT_REPLY("{\"cmd\":\"wrong_handle\"}", "{\"ok\":true,\"handle\":false}");
	EXPECT_REPLY("{\"cmd\":\"now\",\"id\":3}", "{\"ok\":true,\"id\":3,\"when\":\"now\"}");
}

static void test_bad_requests(void)
{
	EXPECT_REPLY("{\"cmd\":\"frob\",\"id\":2}",
		     "{\"ok\":false,\"id\":2,\"error\":\"unknown command \\\"frob\\\"; "
		     "{\\\"cmd\\\":\\\"help\\\"} lists the commands\",\"errno\":38,\"code\":\"ENOSYS\"}");
	EXPECT_REPLY_HAS("{\"value\":1}", "\"error\":\"the request has no \\\"cmd\\\"");
	EXPECT_REPLY("{\"cmd\":5}", "{\"ok\":false,\"error\":\"\\\"cmd\\\" must be a string\",\"errno\":22,\"code\":\"EINVAL\"}");
	EXPECT_REPLY_HAS("{\"cmd\":", "{\"ok\":false,\"error\":\"malformed JSON at column");
	EXPECT_REPLY_HAS("hello", "{\"ok\":false,\"error\":\"malformed JSON");
	EXPECT_REPLY_HAS("{\"cmd\":\"echo\",\"cmd\":\"echo\"}", "malformed JSON");
	EXPECT_REPLY_HAS("{\"cmd\":\"echo\"} {}", "malformed JSON");
	EXPECT_REPLY_HAS("[1,2]", "{\"ok\":false,\"error\":\"the request must be a JSON object");
	EXPECT_REPLY_HAS("\"help\"", "must be a JSON object");
	EXPECT_REPLY_HAS("42", "must be a JSON object");
	/* An embedded NUL does not cut the line short. */
	int fd = cl_connect(fx.path);
	cl_send_n(fd, "{\"cmd\":\"echo\"}\0x\n", 17);
	char *l = cl_line(fd, 3000);
	CHECK(l && strstr(l, "malformed JSON"));
	free(l);
	close(fd);
}

static void test_help(void)
{
	char *reply = NULL;
	CHECK_EQ(control_request(fx.path, "{\"cmd\":\"help\"}", &reply, 3000), 0);
	json_t *j = reply ? json_loads(reply, 0, NULL) : NULL;
	CHECK(json_is_true(json_object_get(j, "ok")));
	json_t *list = json_object_get(j, "commands");
	CHECK_EQ(json_array_size(list), fake_control_ncmds + 1);
	CHECK(strcmp(json_string_value(json_object_get(json_array_get(list, 0), "name")), "help") ==
	      0);
	json_t *echo = json_array_get(list, 1);
	CHECK(strcmp(json_string_value(json_object_get(echo, "name")), "echo") == 0);
	CHECK(strcmp(json_string_value(json_object_get(echo, "help")), fake_control_cmds[0].help) ==
	      0);
	CHECK(json_object_get(json_array_get(list, 3), "help") == NULL); /* fail_plain */
	json_decref(j);
	free(reply);
}

static void test_one_connection(void)
{
	int fd = cl_connect(fx.path);
	/* In sequence. */
	cl_send(fd, "{\"cmd\":\"echo\",\"value\":1}\n");
	EXPECT_LINE(fd, "{\"ok\":true,\"value\":1}");
	cl_send(fd, "{\"cmd\":\"fail_plain\"}\n");
	EXPECT_LINE(fd, "{\"ok\":false,\"error\":\"Device or resource busy\",\"errno\":16,\"code\":\"EBUSY\"}");
	/* Several in one write, blank lines between them ignored. */
	cl_send(fd, "{\"cmd\":\"echo\",\"value\":2}\n\n "
		    "\r\n{\"cmd\":\"nope\"}\n{\"cmd\":\"echo\",\"value\":3}\n");
	EXPECT_LINE(fd, "{\"ok\":true,\"value\":2}");
	char *l = cl_line(fd, 3000);
	CHECK(l && strstr(l, "unknown command"));
	free(l);
	EXPECT_LINE(fd, "{\"ok\":true,\"value\":3}");
	/* One request in several writes. */
	const char *parts[] = {"{\"cm", "d\":\"ec", "ho\",\"val", "ue\":4}", "\r\n"};
	for (size_t i = 0; i < 5; i++) {
		cl_send(fd, parts[i]);
		usleep(20000);
		if (i < 4) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			CHECK_EQ(poll(&p, 1, 0), 0); /* no reply before the newline */
		}
	}
	EXPECT_LINE(fd, "{\"ok\":true,\"value\":4}");
	close(fd);

	/* The last line may lack its newline when the client half-closes. */
	fd = cl_connect(fx.path);
	cl_send(fd, "{\"cmd\":\"echo\",\"value\":5}\n{\"cmd\":\"echo\",\"value\":6}");
	shutdown(fd, SHUT_WR);
	EXPECT_LINE(fd, "{\"ok\":true,\"value\":5}");
	EXPECT_LINE(fd, "{\"ok\":true,\"value\":6}");
	CHECK(cl_eof(fd, 3000));
	close(fd);
}

static void test_many_clients(void)
{
	/* Two interleaved. */
	int a = cl_connect(fx.path), b = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"echo\",");
	cl_send(b, "{\"cmd\":\"echo\",\"value\":\"b\"}\n");
	EXPECT_LINE(b, "{\"ok\":true,\"value\":\"b\"}");
	cl_send(a, "\"value\":\"a\"}\n");
	EXPECT_LINE(a, "{\"ok\":true,\"value\":\"a\"}");
	close(a);
	close(b);

	/* All at once, up to the limit; one more is told so. */
	int fds[CONTROL_MAX_CLIENTS];
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		fds[i] = cl_connect(fx.path);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		char req[64], want[64];
		snprintf(req, sizeof(req), "{\"cmd\":\"echo\",\"value\":%d}\n", i);
		snprintf(want, sizeof(want), "{\"ok\":true,\"value\":%d}", i);
		cl_send(fds[i], req);
		EXPECT_LINE(fds[i], want);
	}
	/* One more makes room: the client idle the longest is told and closed,
	 * the new one is served (so cairn stop always gets through). */
	int extra = cl_connect(fx.path);
	cl_send(extra, "{\"cmd\":\"echo\",\"value\":\"x\"}\n");
	EXPECT_LINE(extra, "{\"ok\":true,\"value\":\"x\"}");
	int dropped = 0;
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		if (poll(&p, 1, 0) != 1)
			continue;
		char *l = cl_line(fds[i], 1000);
		CHECK(l && strstr(l, "closed to make room") && strstr(l, "\"code\":\"ETIMEDOUT\""));
		free(l);
		CHECK(cl_eof(fds[i], 3000));
		dropped++;
	}
	CHECK_EQ(dropped, 1);
	close(extra);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		close(fds[i]);
	/* Served again once they have gone. */
	char *reply = NULL;
	int r = -1;
	for (int i = 0; i < 100 && r != 0; i++) {
		free(reply);
		reply = NULL;
		r = control_request(fx.path, "{\"cmd\":\"echo\"}", &reply, 3000);
		if (r == 0 && strcmp(reply, "{\"ok\":true}") != 0) {
			r = -1;
			usleep(10000);
		}
	}
	CHECK_EQ(r, 0);
	free(reply);
}

static void test_oversize(void)
{
	/* Exactly CONTROL_LINE_MAX bytes is fine. */
	size_t n = CONTROL_LINE_MAX;
	char *big = malloc(n + 2);
	const char *head = "{\"cmd\":\"echo\",\"value\":\"";
	memset(big, 'x', n);
	memcpy(big, head, strlen(head));
	memcpy(big + n - 2, "\"}", 2);
	big[n] = '\n';
	big[n + 1] = 0;
	int fd = cl_connect(fx.path);
	cl_send(fd, big);
	char *l = cl_line(fd, 3000);
	CHECK(l && strncmp(l, "{\"ok\":true,\"value\":\"xxx", 23) == 0 &&
	      strlen(l) == n - strlen(head) - 2 + 22);
	free(l);
	close(fd);

	/* One byte more, with or without the newline, closes the connection. */
	const char *want = "{\"ok\":false,\"error\":\"request line longer than 65536 bytes\",\"errno\":22,\"code\":\"EINVAL\"}";
	for (int newline = 0; newline < 2; newline++) {
		memset(big, ' ', n + 1);
		memcpy(big, "{\"cmd\":\"echo\"}", 14); /* valid JSON, then spaces */
		big[n + 1] = newline ? '\n' : ' ';
		fd = cl_connect(fx.path);
		cl_send_n(fd, big, n + 2);
		EXPECT_LINE(fd, want);
		CHECK(cl_eof(fd, 3000));
		close(fd);
	}
	/* A client that keeps sending after that is cut off, not served. */
	fd = cl_connect(fx.path);
	char *huge = malloc(1 << 20);
	memset(huge, 'a', 1 << 20);
	cl_send_n(fd, huge, 1 << 20); /* fails part-way once the server closes */
	EXPECT_LINE(fd, want);
	close(fd);
	free(huge);
	free(big);
	EXPECT_REPLY("{\"cmd\":\"echo\"}", "{\"ok\":true}");
}

static void test_vanishing_clients(void)
{
	for (int i = 0; i < 20; i++) {
		int fd = cl_connect(fx.path);
		cl_send(fd, "{\"cmd\":\"ec");
		close(fd);
	}
	/* Many requests, replies never read. */
	int fd = cl_connect(fx.path);
	for (int i = 0; i < 2000; i++)
		cl_send(fd, "{\"cmd\":\"help\"}\n");
	close(fd);
	/* Connect and go without a word. */
	close(cl_connect(fx.path));
	/* Reset with unread replies queued. */
	fd = cl_connect(fx.path);
	cl_send(fd, "{\"cmd\":\"echo\"}\n{\"cmd\":\"echo\"}\n");
	usleep(20000);
	struct linger lg = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	usleep(50000);
	EXPECT_REPLY("{\"cmd\":\"echo\",\"value\":\"still here\"}",
		     "{\"ok\":true,\"value\":\"still here\"}");
}

struct flood {
	int fd;
	int n;
};

static void *flood_writer(void *arg)
{
	struct flood *f = arg;
	char pad[201];
	memset(pad, 'p', 200);
	pad[200] = 0;
	for (int i = 0; i < f->n; i++) {
		char req[300];
		snprintf(req, sizeof(req), "{\"cmd\":\"echo\",\"id\":%d,\"value\":\"%s\"}\n", i,
			 pad);
		cl_send(f->fd, req);
	}
	return NULL;
}

/* A client that writes far ahead of reading gets every reply, in order. */
static void test_flood(void)
{
	struct flood f = {cl_connect(fx.path), 5000};
	pthread_t t;
	pthread_create(&t, NULL, flood_writer, &f);
	usleep(200000); /* let the server fill its output before we read */
	int bad = 0;
	for (int i = 0; i < f.n; i++) {
		char *l = cl_line(f.fd, 5000);
		json_t *j = l ? json_loads(l, 0, NULL) : NULL;
		if (json_integer_value(json_object_get(j, "id")) != i ||
		    strlen(json_string_value(json_object_get(j, "value"))) != 200)
			bad++;
		json_decref(j);
		free(l);
		if (!l)
			break;
	}
	CHECK_EQ(bad, 0);
	pthread_join(t, NULL);
	close(f.fd);
}

static void test_deferred(void)
{
	int base = npending();
	/* The reply comes when the command finishes; the next request on the
	 * connection waits for it, other clients do not. */
	int a = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"slow\",\"id\":1}\n{\"cmd\":\"echo\",\"id\":2}\n");
	wait_pending(base + 1);
	CHECK(cl_line(a, 100) == NULL);
	EXPECT_REPLY("{\"cmd\":\"echo\",\"value\":\"other\"}", "{\"ok\":true,\"value\":\"other\"}");
	finish(base, 0, json_pack("{s:s}", "snapshot", "done"));
	EXPECT_LINE(a, "{\"ok\":true,\"id\":1,\"snapshot\":\"done\"}");
	EXPECT_LINE(a, "{\"ok\":true,\"id\":2}");

	/* A deferred failure, with its message carried in the reply. */
	cl_send(a, "{\"cmd\":\"slow\"}\n");
	wait_pending(base + 2);
	finish(base + 1, -ENOSPC, json_pack("{s:s,s:i}", "error", "disk full", "x", 1));
	EXPECT_LINE(a, "{\"ok\":false,\"error\":\"disk full\",\"errno\":28,\"code\":\"ENOSPC\"}");
	/* ... or in err_msg() of the finishing thread, or strerror. */
	cl_send(a, "{\"cmd\":\"slow\"}\n{\"cmd\":\"slow\"}\n");
	wait_pending(base + 3);
	struct finish_args fa = {base + 2, -EIO, NULL};
	err_clear();
	loop_sync(finish_in_loop, &fa); /* the loop thread's err_msg() is empty here */
	EXPECT_LINE(a, "{\"ok\":false,\"error\":\"Input/output error\",\"errno\":5,\"code\":\"EIO\"}");
	wait_pending(base + 4);
	finish(base + 3, 0, NULL);
	EXPECT_LINE(a, "{\"ok\":true}");
	close(a);
	base += 4;

	/* Half-closed client (socat's way): the reply still arrives, then EOF. */
	a = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"slow\"}\n");
	shutdown(a, SHUT_WR);
	wait_pending(base + 1);
	usleep(20000);
	finish(base, 0, json_pack("{s:b}", "late", 1));
	EXPECT_LINE(a, "{\"ok\":true,\"late\":true}");
	CHECK(cl_eof(a, 3000));
	close(a);
	base += 1;

	/* The client has gone before the reply. */
	a = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"slow\"}\n{\"cmd\":\"echo\"}\n");
	wait_pending(base + 1);
	close(a);
	usleep(50000);
	finish(base, 0, json_pack("{s:s}", "to", "nobody"));
	/* Gone between the request and the server noticing. */
	a = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"slow\"}\n");
	wait_pending(base + 2);
	close(a);
	finish(base + 1, -EIO, NULL);
	base += 2;

	/* Deferred, then answered at once: one reply; the handle only frees. */
	a = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"undecided\",\"id\":9}\n{\"cmd\":\"echo\",\"id\":10}\n");
	EXPECT_LINE(a, "{\"ok\":true,\"id\":9,\"answered\":true}");
	EXPECT_LINE(a, "{\"ok\":true,\"id\":10}");
	wait_pending(base + 1);
	finish(base, 0, NULL);
	CHECK(cl_line(a, 100) == NULL);
	close(a);
	base += 1;

	/* Finished inside its own command, followed by another request. */
	a = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"now\"}\n{\"cmd\":\"echo\",\"value\":0}\n");
	EXPECT_LINE(a, "{\"ok\":true,\"when\":\"now\"}");
	EXPECT_LINE(a, "{\"ok\":true,\"value\":0}");
	close(a);

	/* Finished by another client's command; each gets its own reply and
	 * the first connection carries on with its next request. */
	a = cl_connect(fx.path);
	int b = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"slow\",\"id\":\"a1\"}\n{\"cmd\":\"echo\",\"id\":\"a2\"}\n");
	cl_send(b, "{\"cmd\":\"slow\",\"id\":\"b1\"}\n{\"cmd\":\"release\",\"id\":\"b2\"}\n");
	wait_pending(base + 2);
	int c = cl_connect(fx.path);
	cl_send(c, "{\"cmd\":\"release\"}\n");
	EXPECT_LINE(c, "{\"ok\":true,\"released\":2}");
	EXPECT_LINE(a, "{\"ok\":true,\"id\":\"a1\",\"released\":true}");
	EXPECT_LINE(a, "{\"ok\":true,\"id\":\"a2\"}");
	EXPECT_LINE(b, "{\"ok\":true,\"id\":\"b1\",\"released\":true}");
	EXPECT_LINE(b, "{\"ok\":true,\"id\":\"b2\",\"released\":0}");
	/* A command that finishes its own connection's earlier reply cannot
	 * run before it: release on the same connection waits behind slow. */
	cl_send(a, "{\"cmd\":\"slow\",\"id\":3}\n{\"cmd\":\"release\",\"id\":4}\n");
	wait_pending(base + 3);
	CHECK(cl_line(a, 100) == NULL);
	cl_send(c, "{\"cmd\":\"release\"}\n");
	EXPECT_LINE(c, "{\"ok\":true,\"released\":1}");
	EXPECT_LINE(a, "{\"ok\":true,\"id\":3,\"released\":true}");
	EXPECT_LINE(a, "{\"ok\":true,\"id\":4,\"released\":0}");
	close(a);
	close(b);
	close(c);
	base += 3;

	/* Left outstanding: fixture_stop() finishes it after control_close(). */
	a = cl_connect(fx.path);
	cl_send(a, "{\"cmd\":\"slow\"}\n");
	wait_pending(base + 1);
	close(a);
}

/* Accept every queued connection, read a little and hang up. */
static void *hangup_server(void *arg)
{
	int s = *(int *)arg;
	for (;;) {
		struct pollfd p = {.fd = s, .events = POLLIN};
		if (poll(&p, 1, 500) <= 0)
			return NULL;
		int c = accept(s, NULL, NULL);
		if (c < 0)
			return NULL;
		char buf[256];
		struct pollfd q = {.fd = c, .events = POLLIN};
		if (poll(&q, 1, 500) > 0) {
			ssize_t n = recv(c, buf, sizeof(buf), 0);
			(void)n;
		}
		close(c);
	}
}

static void test_request_errors(void)
{
	char *reply = (char *)1;
	char path[100];
	/* Timeout while the command does not answer. */
	int base = npending();
	long long t0 = now_ms();
	int r = control_request(fx.path, "{\"cmd\":\"slow\"}", &reply, 150);
	long long dt = now_ms() - t0;
	CHECK_EQ(r, -ETIMEDOUT);
	CHECK(reply == NULL);
	CHECK(dt >= 140 && dt < 2000);
	char want[300];
	snprintf(want, sizeof(want), "no reply from %s within 150 ms", fx.path);
	CHECK(strcmp(err_msg(), want) == 0);
	wait_pending(base + 1);
	finish(base, 0, NULL);

	/* Nothing at the path. */
	snprintf(path, sizeof(path), "%s/nothing.sock", fx.dir);
	CHECK_EQ(control_request(path, "{\"cmd\":\"status\"}", &reply, 1000), -ENOENT);
	snprintf(want, sizeof(want), "no VM is listening on %s: No such file or directory", path);
	CHECK(strcmp(err_msg(), want) == 0);

	/* A stale socket file. */
	snprintf(path, sizeof(path), "%s/stale.sock", fx.dir);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	CHECK_EQ(control_request(path, "{\"cmd\":\"status\"}", &reply, 1000), -ECONNREFUSED);
	CHECK(strstr(err_msg(), "no VM is listening on ") && strstr(err_msg(), path));

	/* A live socket that never answers (a hung VMM). */
	unlink(path);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(s, 4), 0);
	CHECK_EQ(control_request(path, "{\"cmd\":\"status\"}", &reply, 100), -ETIMEDOUT);
	CHECK(strstr(err_msg(), path) != NULL);
	/* ... or closes without a reply. */
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, hangup_server, &s), 0);
	CHECK_EQ(control_request(path, "{\"cmd\":\"status\"}", &reply, 3000), -ECONNRESET);
	CHECK(strstr(err_msg(), "closed the connection without a reply") &&
	      strstr(err_msg(), path));
	pthread_join(t, NULL);
	close(s);
	unlink(path);

	/* Bad arguments. */
	CHECK_EQ(control_request(fx.path, "{\"cmd\":\"echo\"}\n{\"cmd\":\"echo\"}", &reply, 100),
		 -EINVAL);
	CHECK(strstr(err_msg(), "one line") != NULL);
	CHECK_EQ(control_request(fx.path, " \r\n", &reply, 100), -EINVAL);
	CHECK_EQ(control_request(fx.path, "", &reply, 100), -EINVAL);
	CHECK(strstr(err_msg(), "empty request") != NULL);
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	CHECK_EQ(control_request(longpath, "{}", &reply, 100), -ENAMETOOLONG);
	CHECK(reply == NULL);
}

/* control_call: the reply object, or the server's errno and message. */
static void test_call(void)
{
	json_t *req = json_pack("{s:s, s:i}", "cmd", "echo", "value", 7), *reply = NULL;
	CHECK_EQ(control_call(fx.path, req, &reply, 3000), 0);
	CHECK(reply && json_integer_value(json_object_get(reply, "value")) == 7);
	json_decref(reply);
	json_decref(req);
	reply = NULL;
	req = json_pack("{s:s}", "cmd", "frob");
	CHECK_EQ(control_call(fx.path, req, &reply, 3000), -ENOSYS);
	CHECK(reply == NULL && strstr(err_msg(), "unknown command") && strstr(err_msg(), fx.path));
	json_decref(req);
	req = json_pack("{s:s}", "cmd", "fail");
	CHECK_EQ(control_call(fx.path, req, NULL, 3000), -ENOENT);
	CHECK(strstr(err_msg(), "no such widget w1") != NULL);
	json_decref(req);
}

/* Clients that all wait for a reply cannot be closed: one more is refused.
 * A client that never sends a request is closed after the idle timeout,
 * one waiting for a reply is not. */
static void test_full_and_idle(void)
{
	int base = npending(), fds[CONTROL_MAX_CLIENTS];
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		fds[i] = cl_connect(fx.path);
		cl_send(fds[i], "{\"cmd\":\"slow\"}\n");
	}
	wait_pending(base + CONTROL_MAX_CLIENTS);
	int extra = cl_connect(fx.path);
	char *l = cl_line(extra, 3000);
	CHECK(l && strstr(l, "too many clients"));
	free(l);
	CHECK(cl_eof(extra, 3000));
	close(extra);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		finish(base + i, 0, NULL);
		EXPECT_LINE(fds[i], "{\"ok\":true}");
		close(fds[i]);
	}

	CHECK_EQ(control_set_idle_timeout(fx.fc.srv, 200), 0);
	int quiet = cl_connect(fx.path), waiting = cl_connect(fx.path);
	cl_send(quiet, "{\"cmd\":\"ec"); /* never finished */
	base = npending();
	cl_send(waiting, "{\"cmd\":\"slow\"}\n");
	wait_pending(base + 1);
	l = cl_line(quiet, 3000);
	CHECK(l && strstr(l, "without a request"));
	free(l);
	CHECK(cl_eof(quiet, 3000));
	usleep(400000);
	struct pollfd p = {.fd = waiting, .events = POLLIN};
	CHECK_EQ(poll(&p, 1, 0), 0); /* still open, still waiting */
	finish(base, 0, NULL);
	EXPECT_LINE(waiting, "{\"ok\":true}");
	close(quiet);
	close(waiting);
	CHECK_EQ(control_set_idle_timeout(fx.fc.srv, CONTROL_IDLE_MS), 0);
}

static void test_open_errors(void)
{
	struct control_server *s2 = NULL;
	struct stat st;
	/* The socket is ours alone. */
	CHECK_EQ(stat(fx.path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0600);

	/* A live server is not replaced. */
	CHECK_EQ(control_open(fx.loop, fx.path, fake_control_cmds, fake_control_ncmds, NULL, &s2),
		 -EADDRINUSE);
	CHECK(s2 == NULL);
	CHECK(strstr(err_msg(), "already in use") && strstr(err_msg(), fx.path));
	EXPECT_REPLY("{\"cmd\":\"echo\"}", "{\"ok\":true}");

	/* A file that is not a socket is left alone. */
	char path[100];
	snprintf(path, sizeof(path), "%s/plain", fx.dir);
	FILE *f = fopen(path, "w");
	fputs("keep me", f);
	fclose(f);
	CHECK_EQ(control_open(fx.loop, path, fake_control_cmds, fake_control_ncmds, NULL, &s2),
		 -EEXIST);
	CHECK(strstr(err_msg(), path) != NULL);
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_size, 7);
	unlink(path);

	/* Bad tables. */
	struct control_cmd bad[] = {{"help", fake_control_cmds[0].fn, NULL}};
	CHECK_EQ(control_open(fx.loop, path, bad, 1, NULL, &s2), -EINVAL);
	struct control_cmd dup[] = {{"a", fake_control_cmds[0].fn, NULL},
				    {"a", fake_control_cmds[0].fn, NULL}};
	CHECK_EQ(control_open(fx.loop, path, dup, 2, NULL, &s2), -EINVAL);
	struct control_cmd nofn[] = {{"a", NULL, NULL}};
	CHECK_EQ(control_open(fx.loop, path, nofn, 1, NULL, &s2), -EINVAL);
	CHECK(stat(path, &st) < 0);
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	CHECK_EQ(control_open(fx.loop, longpath, fake_control_cmds, fake_control_ncmds, NULL, &s2),
		 -ENAMETOOLONG);
	CHECK_EQ(control_open(fx.loop, "/nonexistent-dir/x.sock", fake_control_cmds,
			      fake_control_ncmds, NULL, &s2),
		 -ENOENT);
	CHECK(strstr(err_msg(), "/nonexistent-dir/x.sock") != NULL);
}

/* A second server on its own loop: a stale socket file is replaced, and a
 * command may close the server under itself (like "quit"). */
static void test_stale_and_close_inside(void)
{
	char path[100];
	snprintf(path, sizeof(path), "%s/second.sock", fx.dir);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s); /* leaves a socket file nobody listens on */

	struct evloop *loop;
	CHECK_EQ(evloop_create(&loop), 0);
	/* The same back end, whose "close" closes this server for now. */
	struct control_server *first = fx.fc.srv;
	fx.fc.srv = NULL;
	fx.fc.closed = false;
	CHECK_EQ(
	    control_open(loop, path, fake_control_cmds, fake_control_ncmds, &fx.fc, &fx.fc.srv), 0);
	struct evloop *saved = fx.loop;
	pthread_t saved_thread = fx.thread;
	fx.loop = loop;
	CHECK_EQ(pthread_create(&fx.thread, NULL, loop_main, NULL), 0);

	char *reply = NULL;
	CHECK_EQ(control_request(path, "{\"cmd\":\"echo\",\"value\":\"second\"}", &reply, 3000), 0);
	CHECK(reply && strcmp(reply, "{\"ok\":true,\"value\":\"second\"}") == 0);
	free(reply);

	int a = cl_connect(path);
	int b = cl_connect(path);
	int c = cl_connect(path);
	int base = npending();
	cl_send(c, "{\"cmd\":\"slow\"}\n");
	wait_pending(base + 1); /* outstanding when the server closes */
	cl_send(a, "{\"cmd\":\"echo\"}\n");
	EXPECT_LINE(a, "{\"ok\":true}");
	/* B pipelines after "close": the reply to close arrives, then EOF. */
	cl_send(b, "{\"cmd\":\"close\"}\n{\"cmd\":\"echo\"}\n");
	EXPECT_LINE(b, "{\"ok\":true,\"closed\":true}");
	CHECK(cl_eof(b, 3000));
	CHECK(cl_eof(a, 3000));
	CHECK(cl_eof(c, 3000));
	struct stat st;
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	CHECK(fx.fc.srv == NULL && fx.fc.closed);
	fx.fc.srv = first;
	close(a);
	close(b);
	close(c);
	CHECK_EQ(control_request(path, "{\"cmd\":\"echo\"}", &reply, 1000), -ENOENT);

	evloop_stop(loop);
	pthread_join(fx.thread, NULL);
	evloop_destroy(loop);
	fx.loop = saved;
	fx.thread = saved_thread;
}

int main(void)
{
	log_set_level(LOG_ERROR); /* the refusals tested here warn */
	fixture_start();
	if (!fx.fc.srv)
		TEST_DONE();
	test_replies();
	test_bad_requests();
	test_help();
	test_one_connection();
	test_many_clients();
	test_oversize();
	test_vanishing_clients();
	test_flood();
	test_deferred();
	test_request_errors();
	test_call();
	test_full_and_idle();
	test_open_errors();
	test_stale_and_close_inside();
	fixture_stop();
	TEST_DONE();
}
