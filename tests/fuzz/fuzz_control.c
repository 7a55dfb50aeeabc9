/* libFuzzer harness for the control socket server (src/control/control.c):
 * the real socket, reader, dispatcher, deferred replies and output queue,
 * with a few fake commands as back end (as tests/unit/control does).
 *
 * Each input: a server is opened on a Unix socket in /tmp, two clients
 * connect, and an event loop runs in this thread.  A step run at every
 * turn of the loop plays the clients and the back end between the loop's turns: it
 * sends the next chunk of each client's bytes (chunk sizes drawn from the
 * input), reads and checks the replies (each must be one JSON object with
 * "ok", and "error"/"errno" when not ok), and now and then finishes a
 * deferred reply, as a snapshot job would.  Once a client has sent all it
 * has it shuts its side down; the run ends when the server has closed both
 * connections.  A server that stops making progress is a bug (abort).
 *
 * Input: byte 0 seeds the chunking; then the bytes clients send: \x00
 * switches between client 0 and client 1, \x02 stands for 16 KiB of 'a'
 * (over-long lines; at most 8 per input). */
#include "control/control.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PENDING 64
#define MAX_STEPS 200000
#define LONG_RUN 16384
#define MAX_LONG_RUNS 8
#define MAX_BIG (1 << 20)

struct client {
	int fd;
	uint8_t *out;
	size_t out_len, out_off;
	bool shut, eof;
	char *in;
	size_t in_len, in_cap;
};

static struct {
	struct evloop *loop;
	struct control_server *srv;
	char path[108];
	struct client cl[2];
	struct control_pending *pending[MAX_PENDING];
	int pending_result[MAX_PENDING];
	int npending;
	uint64_t rng;
	long steps;
	bool closed; /* by the "close" command */
	int tick; /* eventfd, always readable: step() runs at every turn */
} fx;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_control: %s\n", what);
	abort();
}

static uint32_t rnd(void)
{
	fx.rng ^= fx.rng << 13;
	fx.rng ^= fx.rng >> 7;
	fx.rng ^= fx.rng << 17;
	return (uint32_t)(fx.rng >> 11);
}

/* ---- the back end: fake commands ---- */

static int cmd_echo(void *opaque, json_t *req, json_t *reply)
{
	json_t *v = json_object_get(req, "value");
	if (v)
		json_object_set(reply, "value", v);
	return 0;
}

static int cmd_fail(void *opaque, json_t *req, json_t *reply)
{
	json_object_set_new(reply, "partial", json_true());
	return err_set(ENOENT, "no such widget %s", "w1");
}

static int cmd_override(void *opaque, json_t *req, json_t *reply)
{
	json_object_set_new(reply, "ok", json_false());
	json_object_set_new(reply, "id", json_string("forged"));
	return 0;
}

/* A reply of "size" bytes: the output queue and a client slow to read. */
static int cmd_big(void *opaque, json_t *req, json_t *reply)
{
	json_int_t n = json_integer_value(json_object_get(req, "size"));
	if (n <= 0 || n > MAX_BIG)
		return err_set(EINVAL, "size out of range");
	char *s = malloc((size_t)n + 1);
	if (!s)
		return -ENOMEM;
	memset(s, 'b', (size_t)n);
	s[n] = 0;
	json_object_set_new(reply, "blob", json_string(s));
	free(s);
	return 0;
}

/* The result a deferred reply will get: 0, or a negative errno the request
 * names with "status" (a real back end returns nothing else). */
static int wanted_result(json_t *req)
{
	json_int_t st = json_integer_value(json_object_get(req, "status"));
	return st < 0 ? -(int)(1 + (-(st + 1)) % 4095) : 0;
}

/* Deferred: finished later by the harness (or "release"). */
static int cmd_slow(void *opaque, json_t *req, json_t *reply)
{
	if (fx.npending == MAX_PENDING)
		return err_set(EBUSY, "too many pending");
	struct control_pending *p = control_defer(reply);
	if (!p)
		return err_set(ENOMEM, "no handle");
	if (control_defer(reply) != NULL)
		die("a second handle for one request");
	fx.pending_result[fx.npending] = wanted_result(req);
	fx.pending[fx.npending++] = p;
	return CONTROL_DEFERRED;
}

/* Deferred and finished before the function returns. */
static int cmd_now(void *opaque, json_t *req, json_t *reply)
{
	struct control_pending *p = control_defer(reply);
	if (!p)
		return err_set(ENOMEM, "no handle");
	json_t *r = json_pack("{s:s}", "when", "now");
	control_pending_finish(p, wanted_result(req), r);
	json_decref(r);
	return CONTROL_DEFERRED;
}

/* Deferred, then answered at once after all: the handle must still be
 * finished (it then only frees). */
static int cmd_undecided(void *opaque, json_t *req, json_t *reply)
{
	if (fx.npending == MAX_PENDING)
		return err_set(EBUSY, "too many pending");
	struct control_pending *p = control_defer(reply);
	if (!p)
		return err_set(ENOMEM, "no handle");
	fx.pending_result[fx.npending] = 0;
	fx.pending[fx.npending++] = p;
	json_object_set_new(reply, "answered", json_true());
	return wanted_result(req);
}

static int cmd_nohandle(void *opaque, json_t *req, json_t *reply)
{
	return CONTROL_DEFERRED;
}

static int cmd_badstatus(void *opaque, json_t *req, json_t *reply)
{
	return 7;
}

static void finish_one(int i)
{
	struct control_pending *p = fx.pending[i];
	int result = fx.pending_result[i];
	fx.pending[i] = fx.pending[--fx.npending];
	fx.pending_result[i] = fx.pending_result[fx.npending];
	json_t *r = result < 0 ? json_pack("{s:s}", "error", "the job failed")
			       : json_pack("{s:b,s:s}", "done", 1, "error", "dropped");
	control_pending_finish(p, result, r);
	json_decref(r);
}

/* Finishes every deferred reply from inside a command ("resume" ending a
 * "pause" that waits). */
static int cmd_release(void *opaque, json_t *req, json_t *reply)
{
	int n = 0;
	while (fx.npending) {
		finish_one(fx.npending - 1);
		n++;
	}
	json_object_set_new(reply, "released", json_integer(n));
	return 0;
}

static int cmd_close(void *opaque, json_t *req, json_t *reply)
{
	control_close(fx.srv);
	fx.srv = NULL;
	fx.closed = true;
	return 0;
}

static const struct control_cmd cmds[] = {
    {"echo", cmd_echo, "echo value"},
    {"fail", cmd_fail, "fails"},
    {"override", cmd_override, NULL},
    {"big", cmd_big, "a long reply"},
    {"slow", cmd_slow, "deferred"},
    {"now", cmd_now, "deferred, finished at once"},
    {"undecided", cmd_undecided, "deferred, then answered"},
    {"nohandle", cmd_nohandle, "deferred without a handle"},
    {"badstatus", cmd_badstatus, "returns 7"},
    {"release", cmd_release, "finishes every deferred reply"},
    {"close", cmd_close, "closes the server"},
};

/* ---- the clients ---- */

static void check_reply(const char *line, size_t len)
{
	json_error_t e;
	json_t *j = json_loadb(line, len, 0, &e);
	if (!json_is_object(j)) {
		fprintf(stderr, "fuzz_control: bad reply line: %.*s\n", (int)(len < 300 ? len : 300),
			line);
		abort();
	}
	json_t *ok = json_object_get(j, "ok");
	if (!json_is_boolean(ok))
		die("a reply without \"ok\"");
	/* (errno too, except in the fallback for a reply that cannot be encoded) */
	if (!json_is_true(ok) && !json_is_string(json_object_get(j, "error")))
		die("an error reply without \"error\"");
	json_decref(j);
}

static void client_read(struct client *c)
{
	while (!c->eof) {
		if (c->in_cap - c->in_len < 65536) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 131072;
			char *p = realloc(c->in, cap);
			if (!p)
				die("out of memory");
			c->in = p;
			c->in_cap = cap;
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n > 0) {
			c->in_len += (size_t)n;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			c->eof = true;
		} else {
			break;
		}
	}
	size_t start = 0;
	for (char *nl; (nl = memchr(c->in + start, '\n', c->in_len - start));) {
		check_reply(c->in + start, (size_t)(nl - (c->in + start)));
		start = (size_t)(nl - c->in) + 1;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	/* control_close() drops what was not sent yet: only then may the
	 * last line be cut. */
	if (c->eof && c->in_len && !fx.closed)
		die("a reply without its newline");
}

static size_t chunk_size(void)
{
	switch (rnd() % 4) {
	case 0: return 1 + rnd() % 16;
	case 1: return 1 + rnd() % 256;
	case 2: return 1 + rnd() % 8192;
	default: return SIZE_MAX;
	}
}

static void client_send(struct client *c)
{
	if (c->out_off < c->out_len) {
		size_t n = chunk_size();
		if (n > c->out_len - c->out_off)
			n = c->out_len - c->out_off;
		ssize_t w = send(c->fd, c->out + c->out_off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0)
			c->out_off += (size_t)w;
		else if (w < 0 && errno != EAGAIN && errno != EINTR)
			c->out_off = c->out_len; /* the server closed us */
	} else if (!c->shut) {
		shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
}

static void step(void *arg, uint32_t events)
{
	if (++fx.steps > MAX_STEPS)
		die("no progress: the server stalled");
	for (int i = 0; i < 2; i++) {
		client_send(&fx.cl[i]);
		client_read(&fx.cl[i]);
	}
	/* The back end finishes deferred replies at its own pace; at the
	 * latest when the clients have nothing more to say. */
	bool all_shut = fx.cl[0].shut && fx.cl[1].shut;
	if (fx.npending && (all_shut || rnd() % 8 == 0))
		finish_one((int)(rnd() % (unsigned)fx.npending));
	if (fx.cl[0].eof && fx.cl[1].eof && !fx.npending)
		evloop_stop(fx.loop);
}

static void client_connect(struct client *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx.path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
}

/* Split the input into the two clients' byte streams. */
static void split_input(const uint8_t *data, size_t size)
{
	int cur = 0, runs = 0;
	for (int i = 0; i < 2; i++) {
		fx.cl[i].out = malloc(size + MAX_LONG_RUNS * LONG_RUN + 1);
		if (!fx.cl[i].out)
			die("out of memory");
	}
	for (size_t i = 0; i < size; i++) {
		struct client *c = &fx.cl[cur];
		if (data[i] == 0) {
			cur ^= 1;
		} else if (data[i] == 2 && runs < MAX_LONG_RUNS) {
			memset(c->out + c->out_len, 'a', LONG_RUN);
			c->out_len += LONG_RUN;
			runs++;
		} else {
			c->out[c->out_len++] = data[i];
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!fx.path[0]) {
		log_set_level(LOG_ERROR);
		fx.tick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fx.tick < 0)
			die("eventfd");
		snprintf(fx.path, sizeof(fx.path), "/tmp/cairn-fuzz-control.%d.sock", (int)getpid());
	}
	/* A loop per input: evloop_stop() ends a loop for good. */
	if (evloop_create(&fx.loop) < 0)
		die("evloop_create");
	fx.rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)data[0] << 32 | data[0]);
	fx.steps = 0;
	fx.closed = false;
	memset(fx.cl, 0, sizeof(fx.cl));
	split_input(data + 1, size - 1);
	if (control_open(fx.loop, fx.path, cmds, sizeof(cmds) / sizeof(cmds[0]), NULL, &fx.srv) < 0) {
		fprintf(stderr, "control_open: %s\n", err_msg());
		abort();
	}
	client_connect(&fx.cl[0]);
	client_connect(&fx.cl[1]);
	/* step() runs once per turn of the loop: its eventfd stays readable. */
	uint64_t one = 1;
	if (write(fx.tick, &one, sizeof(one)) != sizeof(one) ||
	    evloop_add(fx.loop, fx.tick, EPOLLIN, step, NULL) < 0 || evloop_run(fx.loop) < 0)
		die("event loop");
	control_close(fx.srv);
	fx.srv = NULL;
	evloop_destroy(fx.loop);
	fx.loop = NULL;
	for (int i = 0; i < 2; i++) {
		close(fx.cl[i].fd);
		free(fx.cl[i].out);
		free(fx.cl[i].in);
	}
	return 0;
}
