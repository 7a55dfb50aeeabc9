/* libFuzzer harness for the control socket server (src/control/control.c):
 * the real socket, reader, dispatcher, deferred replies and output queue,
 * with the fake commands of tests/common/fake_control.h as back end (the
 * unit tests' too).
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
#include "fake_control.h"
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

#define MAX_STEPS 200000
#define LONG_RUN 16384
#define MAX_LONG_RUNS 8

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
	struct fake_control fc;
	char path[108];
	struct client cl[2];
	uint64_t rng;
	long steps;
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

/* The back end finishes a deferred reply, as a snapshot job would: one
 * that failed, or one that succeeded but names an error anyway. */
static void finish_one(void)
{
	int k = (int)(rnd() % (unsigned)fx.fc.live), i = 0;
	for (;; i++)
		if (fx.fc.pending[i] && k-- == 0)
			break;
	int result = fx.fc.result[i];
	json_t *r = result < 0 ? json_pack("{s:s}", "error", "the job failed")
			       : json_pack("{s:b,s:s}", "done", 1, "error", "dropped");
	fake_control_finish(&fx.fc, i, result, r);
	json_decref(r);
}

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
	if (c->eof && c->in_len && !fx.fc.closed)
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
	if (fx.fc.live && (all_shut || rnd() % 8 == 0))
		finish_one();
	if (fx.fc.broken)
		die(fx.fc.broken);
	if (fx.cl[0].eof && fx.cl[1].eof && !fx.fc.live)
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
	memset(&fx.fc, 0, sizeof(fx.fc));
	memset(fx.cl, 0, sizeof(fx.cl));
	split_input(data + 1, size - 1);
	if (control_open(fx.loop, fx.path, fake_control_cmds, fake_control_ncmds, &fx.fc,
			 &fx.fc.srv) < 0) {
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
	control_close(fx.fc.srv);
	fx.fc.srv = NULL;
	evloop_destroy(fx.loop);
	fx.loop = NULL;
	for (int i = 0; i < 2; i++) {
		close(fx.cl[i].fd);
		free(fx.cl[i].out);
		free(fx.cl[i].in);
	}
	return 0;
}
