/* The control socket: a Unix stream socket in the event loop, JSON lines.
 *
 * Each connection is registered edge-triggered for input and output and is
 * driven by conn_pump(): read what is there, dispatch complete lines one at
 * a time, write what is queued, and close when the client is done.  Three
 * things bound a connection: its input buffer (one line of CONTROL_LINE_MAX
 * plus the newline), a deferred reply (no further request is dispatched
 * before it) and unsent output (no further request while OUT_SOFT_MAX bytes
 * wait for a client that does not read).  Each stop is lifted by the event
 * that removes it, which calls conn_pump() again.
 *
 * A command's function may close the server or finish another connection's
 * deferred reply, so a connection being pumped is marked busy: it is never
 * freed or pumped again underneath itself, only marked doomed, and the pump
 * that owns it frees it on the way out. */
#include "control/control.h"
#include "control/control_internal.h"

#include "util/err.h"
#include "util/monotime.h"
#include "util/evloop.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define IN_CAP (CONTROL_LINE_MAX + 1) /* a longest line and its newline */
#define OUT_SOFT_MAX (256 * 1024)     /* stop dispatching above this much unsent */

struct control_conn {
	struct control_server *server; /* NULL once the server closed under us */
	struct evloop *loop;
	int fd;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_off, out_len, out_cap; /* unsent bytes: out[out_off..out_len) */
	struct control_pending *pending;  /* the deferred reply we wait for */
	bool eof;			  /* the client sent all it will send */
	bool hup;			  /* the client is gone for good (no one to read replies) */
	bool dead;			  /* a read or write failed */
	bool closing;			  /* an over-long line: send the error, then close */
	bool busy;			  /* inside conn_pump() */
	bool doomed;			  /* freed by the pump on its way out */
	long long last_request_ms;	  /* accepted, or last complete request */
	struct control_conn *prev, *next;
};

struct control_server {
	struct evloop *loop;
	int fd;
	char *path;
	dev_t dev; /* of the socket file we made, so we unlink only ours */
	ino_t ino;
	struct control_cmd *cmds;
	size_t ncmds;
	void *opaque;
	struct control_conn *conns;
	size_t nconns;
	int timer_fd; /* ticks for the idle timeout */
	int idle_ms;  /* close a client without a request for this long */
};

/* The request being dispatched; lets control_defer() find its connection. */
struct control_dispatch {
	struct control_conn *conn;
	json_t *reply;
	json_t *id;
	struct control_pending *pending; /* made by control_defer(), unless finished */
	bool deferred;
};

struct control_pending {
	struct control_conn *conn;     /* NULL once the client or server has gone */
	struct control_dispatch *disp; /* non-NULL while its command's FN runs */
	json_t *id;
};

/* Per thread like err_msg(): the loop thread's current dispatch (nested when
 * a command finishes another connection's deferred reply). */
static __thread struct control_dispatch *control_current;

/* ---- output ---- */

static void conn_append(struct control_conn *c, const char *s, size_t n)
{
	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + n)
			cap *= 2;
		char *p = realloc(c->out, cap);
		if (!p) {
			log_error("control: out of memory for a reply; closing the connection");
			c->dead = true;
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
}

/* Write what the socket takes; a failed write means the client has gone. */
static void conn_flush(struct control_conn *c)
{
	while (!c->dead && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return; /* EPOLLOUT will bring us back */
		} else {
			log_debug("control: client gone while writing: %s", strerror(errno));
			c->dead = true;
		}
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
}

/* Queue {"ok":...,"id":...,fields...} or {"ok":false,"id":...,"error":MSG}. */
static void conn_reply(struct control_conn *c, json_t *id, int result, json_t *fields,
		       const char *msg)
{
	json_t *o = json_object();
	if (o) {
		json_object_set_new(o, "ok", json_boolean(result >= 0));
		if (id)
			json_object_set(o, "id", id);
		if (result >= 0 && json_is_object(fields)) {
			json_object_update(o, fields);
			/* The command's fields cannot override the envelope. */
			json_object_set_new(o, "ok", json_true());
			if (id)
				json_object_set(o, "id", id);
			else
				json_object_del(o, "id");
		} else if (result < 0) {
			/* The message for people, the errno for programs. */
			const char *code = strerrorname_np(-result);
			json_object_set_new(o, "error", json_string(msg ? msg : "error"));
			json_object_set_new(o, "errno", json_integer(-result));
			if (code)
				json_object_set_new(o, "code", json_string(code));
		}
	}
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
	json_decref(o);
	if (!s) {
		/* Out of memory, or a field jansson cannot encode. */
		static const char fallback[] =
		    "{\"ok\":false,\"error\":\"cannot encode the reply\"}";
		conn_append(c, fallback, strlen(fallback));
	} else {
		conn_append(c, s, strlen(s));
		free(s);
	}
	conn_append(c, "\n", 1);
	conn_flush(c);
}

static void conn_reply_error(struct control_conn *c, json_t *id, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void conn_reply_error(struct control_conn *c, json_t *id, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conn_reply(c, id, -err, NULL, msg);
}

/* ---- dispatch ---- */

static void control_help(struct control_server *s, struct control_conn *c, json_t *id)
{
	json_t *list = json_array();
	json_t *fields = json_object();
	json_array_append_new(list,
			      json_pack("{s:s,s:s}", "name", "help", "help", "list the commands"));
	for (size_t i = 0; i < s->ncmds; i++) {
		json_t *e = json_pack("{s:s}", "name", s->cmds[i].name);
		if (e && s->cmds[i].help)
			json_object_set_new(e, "help", json_string(s->cmds[i].help));
		json_array_append_new(list, e);
	}
	json_object_set_new(fields, "commands", list);
	conn_reply(c, id, 0, fields, NULL);
	json_decref(fields);
}

static const struct control_cmd *control_find(struct control_server *s, const char *name)
{
	for (size_t i = 0; i < s->ncmds; i++)
		if (strcmp(s->cmds[i].name, name) == 0)
			return &s->cmds[i];
	return NULL;
}

static void control_run(struct control_server *s, struct control_conn *c,
			const struct control_cmd *cmd, json_t *req, json_t *id)
{
	json_t *reply = json_object();
	if (!reply) {
		conn_reply(c, id, -ENOMEM, NULL, "out of memory");
		return;
	}
	/* FN may close the server, freeing CMD: keep its name (a literal). */
	const char *name = cmd->name;
	struct control_dispatch d = {.conn = c, .reply = reply, .id = id};
	struct control_dispatch *outer = control_current;
	control_current = &d;
	err_clear();
	int r = cmd->fn(s->opaque, req, reply);
	control_current = outer;
	if (d.pending)
		d.pending->disp = NULL;

	if (d.deferred) {
		if (r != CONTROL_DEFERRED && d.pending) {
			/* Answered at once after all: the handle only frees. */
			d.pending->conn = NULL;
			c->pending = NULL;
			const char *msg = err_msg()[0] ? err_msg() : strerror(r < 0 ? -r : EIO);
			conn_reply(c, id, r > 0 ? 0 : r, reply, msg);
		}
		/* else control_pending_finish() replies, or already has. */
	} else if (r == CONTROL_DEFERRED) {
		conn_reply_error(c, id, EINVAL,
				 "command \"%s\" deferred its reply without a handle", name);
	} else if (r > 0) {
		conn_reply_error(c, id, EINVAL, "command \"%s\" returned an invalid status %d",
				 name, r);
	} else {
		const char *msg = err_msg()[0] ? err_msg() : strerror(-r);
		conn_reply(c, id, r, reply, msg);
	}
	json_decref(reply);
}

/* One request line (without its newline). */
static void conn_dispatch(struct control_conn *c, const char *line, size_t len)
{
	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	size_t lead = 0;
	while (lead < len && (line[lead] == ' ' || line[lead] == '\t'))
		lead++;
	if (lead == len)
		return; /* a blank line is no request: no reply */

	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!req) {
		conn_reply_error(c, NULL, EINVAL, "malformed JSON at column %d: %s", jerr.column,
				 jerr.text);
		return;
	}
	if (!json_is_object(req)) {
		conn_reply_error(c, NULL, EINVAL,
				 "the request must be a JSON object, like {\"cmd\":\"help\"}");
		json_decref(req);
		return;
	}
	json_t *id = json_object_get(req, "id");
	json_t *jcmd = json_object_get(req, "cmd");
	const char *name = json_string_value(jcmd);
	if (!jcmd) {
		conn_reply_error(
		    c, id, EINVAL,
		    "the request has no \"cmd\"; {\"cmd\":\"help\"} lists the commands");
	} else if (!name) {
		conn_reply_error(c, id, EINVAL, "\"cmd\" must be a string");
	} else if (strcmp(name, "help") == 0) {
		control_help(c->server, c, id);
	} else {
		const struct control_cmd *cmd = control_find(c->server, name);
		if (cmd)
			control_run(c->server, c, cmd, req, id);
		else
			conn_reply_error(
			    c, id, ENOSYS,
			    "unknown command \"%s\"; {\"cmd\":\"help\"} lists the commands", name);
	}
	json_decref(req);
}

/* Dispatch the next complete line, if one may go now; false when none did. */
static bool conn_dispatch_next(struct control_conn *c)
{
	if (c->pending || c->closing || c->dead || c->doomed || !c->server ||
	    c->out_len - c->out_off >= OUT_SOFT_MAX || c->in_len == 0)
		return false;
	char *nl = memchr(c->in, '\n', c->in_len);
	size_t len = nl ? (size_t)(nl - c->in) : c->in_len;
	if (len > CONTROL_LINE_MAX) {
		log_warn("control: request line over %d bytes; closing the connection",
			 CONTROL_LINE_MAX);
		conn_reply_error(c, NULL, EINVAL, "request line longer than %d bytes",
				 CONTROL_LINE_MAX);
		c->closing = true;
		c->in_len = 0;
		return true;
	}
	if (!nl && !c->eof)
		return false; /* wait for the rest of the line */
	/* At end of input a last line without its newline still counts. */
	size_t used = nl ? len + 1 : len;
	c->last_request_ms = monotime_ms();
	conn_dispatch(c, c->in, len);
	memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
	return true;
}

/* ---- input ---- */

static void conn_read(struct control_conn *c)
{
	while (!c->eof && !c->dead && !c->closing && c->in_len < IN_CAP) {
		if (c->in_len == c->in_cap) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
			if (cap > IN_CAP)
				cap = IN_CAP;
			char *p = realloc(c->in, cap);
			if (!p) {
				log_error(
				    "control: out of memory for a request; closing the connection");
				c->dead = true;
				return;
			}
			c->in = p;
			c->in_cap = cap;
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n > 0)
			c->in_len += (size_t)n;
		else if (n == 0)
			c->eof = true;
		else if (errno == EINTR)
			continue;
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		else
			c->dead = true;
	}
}

/* ---- connections ---- */

static void conn_free(struct control_conn *c)
{
	evloop_del(c->loop, c->fd);
	close(c->fd);
	if (c->pending)
		c->pending->conn = NULL;
	struct control_server *s = c->server;
	if (s) {
		if (c->prev)
			c->prev->next = c->next;
		else
			s->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		s->nconns--;
	}
	log_debug("control: client disconnected");
	free(c->in);
	free(c->out);
	free(c);
}

static bool conn_done(const struct control_conn *c)
{
	bool unsent = c->out_off < c->out_len;
	if (c->dead || c->doomed)
		return true;
	if (c->closing)
		return !unsent;
	if (c->hup && c->pending)
		return true; /* no one will read the deferred reply */
	return c->eof && c->in_len == 0 && !c->pending && !unsent;
}

static void conn_pump(struct control_conn *c)
{
	if (c->busy)
		return; /* the outer pump of this connection carries on */
	c->busy = true;
	bool progress;
	do {
		conn_flush(c);
		conn_read(c);
		progress = false;
		while (conn_dispatch_next(c))
			progress = true;
	} while (progress && !c->dead && !c->doomed);
	conn_flush(c);
	c->busy = false;
	if (conn_done(c))
		conn_free(c);
}

static void conn_event(void *opaque, uint32_t events)
{
	struct control_conn *c = opaque;
	if (events & (EPOLLHUP | EPOLLERR))
		c->hup = true;
	conn_pump(c);
}

/* Idle: no command of this client is running or waiting to reply. */
static bool conn_idle(const struct control_conn *c)
{
	return !c->busy && !c->pending && !c->doomed;
}

/* Tell C why it goes, and close it. */
static void conn_drop(struct control_conn *c, const char *why)
{
	conn_reply_error(c, NULL, ETIMEDOUT, "%s", why);
	c->dead = true;
	conn_free(c);
}

/* The server is full: the client idle the longest makes room, so that a
 * new request (cairn stop) is always served.  False when every client
 * waits for a command's reply. */
static bool server_make_room(struct control_server *s)
{
	struct control_conn *victim = NULL;
	for (struct control_conn *c = s->conns; c; c = c->next)
		if (conn_idle(c) && (!victim || c->last_request_ms < victim->last_request_ms))
			victim = c;
	if (!victim)
		return false;
	log_warn("control: %s: %d clients; closed the one idle the longest", s->path,
		 CONTROL_MAX_CLIENTS);
	conn_drop(victim, "closed to make room for another client: the control socket was full "
			  "and this connection had been idle the longest");
	return true;
}

static void server_idle_tick(void *opaque, uint32_t events)
{
	struct control_server *s = opaque;
	uint64_t n;
	if (read(s->timer_fd, &n, sizeof(n)) < 0)
		return;
	long long now = monotime_ms();
	for (struct control_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (conn_idle(c) && now - c->last_request_ms >= s->idle_ms) {
			char why[96];
			snprintf(why, sizeof(why), "closed after %d ms without a request",
				 s->idle_ms);
			conn_drop(c, why);
		}
	}
}

static void server_accept_one(struct control_server *s, int fd)
{
	if (s->nconns >= CONTROL_MAX_CLIENTS && !server_make_room(s)) {
		static const char busy[] = "{\"ok\":false,\"error\":\"too many clients\","
					   "\"errno\":16,\"code\":\"EBUSY\"}\n";
		ssize_t n = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)n;
		close(fd);
		log_warn("control: %s: %d clients all waiting for replies; refused one", s->path,
			 CONTROL_MAX_CLIENTS);
		return;
	}
	struct control_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->server = s;
	c->loop = s->loop;
	c->fd = fd;
	c->last_request_ms = monotime_ms();
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	int r = evloop_add(s->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, conn_event, c);
	if (r < 0) {
		log_warn("control: %s: cannot watch a client: %s", s->path, strerror(-r));
		c->dead = true;
		conn_free(c);
		return;
	}
	log_debug("control: client connected");
}

static void server_event(void *opaque, uint32_t events)
{
	struct control_server *s = opaque;
	for (;;) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			server_accept_one(s, fd);
		} else if (errno == EINTR || errno == ECONNABORTED) {
			continue;
		} else {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("control: %s: accept: %s", s->path, strerror(errno));
			return;
		}
	}
}

/* ---- the server ---- */

int control_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	size_t len = strlen(path);
	if (len == 0)
		return err_set(EINVAL, "control socket path is empty");
	if (len >= sizeof(sa->sun_path))
		return err_set(ENAMETOOLONG, "control socket path %s (%zu bytes, at most %zu)",
			       path, len, sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, path, len);
	return 0;
}

/* Make PATH free for bind(): refuse a live server or a non-socket, remove a
 * stale socket file. */
static int control_clear_path(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : err_set(errno, "control socket %s", path);
	if (!S_ISSOCK(st.st_mode))
		return err_set(EEXIST, "control socket %s: exists and is not a socket", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(errno, "control socket %s: socket", path);
	int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(fd);
	/* EAGAIN: a live server whose backlog is full. */
	if (r == 0 || e == EAGAIN)
		return err_set(EADDRINUSE, "control socket %s: already in use by a running VM",
			       path);
	if (e != ECONNREFUSED)
		return err_set(e, "control socket %s: probing the existing socket", path);
	log_info("control: removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return err_set(errno, "control socket %s: removing the stale socket", path);
	return 0;
}

static int control_check_cmds(const struct control_cmd *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!cmds[i].name || !cmds[i].fn)
			return err_set(EINVAL, "control command %zu has no name or function", i);
		if (strcmp(cmds[i].name, "help") == 0)
			return err_set(EINVAL, "control command \"help\" is built in");
		for (size_t j = 0; j < i; j++)
			if (strcmp(cmds[i].name, cmds[j].name) == 0)
				return err_set(EINVAL, "control command \"%s\" registered twice",
					       cmds[i].name);
	}
	return 0;
}

/* The socket appears at its path only once it listens: bound under a
 * temporary name beside it and renamed into place.  A client that waits for
 * the file never meets ECONNREFUSED, and another VM probing the path never
 * takes a socket still being set up for a stale one.  A path too long for
 * the temporary name is bound directly. */
static int control_listen(struct control_server *s, const struct sockaddr_un *sa)
{
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return err_set(errno, "control socket %s: socket", s->path);
	/* Linux gives the socket file the mode of the socket's inode (less the
	 * umask): no window in which others could connect, and no umask()
	 * games in a threaded process. */
	if (fchmod(s->fd, 0600) < 0)
		return err_set(errno, "control socket %s: fchmod", s->path);
	struct sockaddr_un tmp = *sa;
	size_t len = strlen(sa->sun_path);
	bool renamed = len + 16 < sizeof(tmp.sun_path);
	if (renamed)
		snprintf(tmp.sun_path + len, sizeof(tmp.sun_path) - len, ".%d.tmp", (int)getpid());
	int b = bind(s->fd, (const struct sockaddr *)&tmp, sizeof(tmp));
	if (b < 0 && renamed && errno == EADDRINUSE) {
		/* left by a killed VM of the same pid: bind in place */
		renamed = false;
		b = bind(s->fd, (const struct sockaddr *)sa, sizeof(*sa));
		tmp = *sa;
	}
	if (b < 0) {
		if (errno == EADDRINUSE)
			return err_set(EADDRINUSE, "control socket %s: already in use",
				       tmp.sun_path);
		return err_set(errno, "control socket %s: bind", tmp.sun_path);
	}
	if (listen(s->fd, 16) < 0) {
		int r = err_set(errno, "control socket %s: listen", s->path);
		unlink(tmp.sun_path);
		return r;
	}
	if (renamed && renameat2(AT_FDCWD, tmp.sun_path, AT_FDCWD, sa->sun_path,
				 RENAME_NOREPLACE) < 0) {
		int r = err_set(errno, "control socket %s%s", s->path,
				errno == EEXIST ? ": appeared while the VM started" : "");
		unlink(tmp.sun_path);
		return r;
	}
	struct stat st;
	if (stat(s->path, &st) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
	return 0;
}

static void control_free(struct control_server *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	free(s->cmds);
	free(s->path);
	free(s);
}

static int control_arm_timer(struct control_server *s)
{
	long tick = s->idle_ms / 4 > 1000 ? 1000 : s->idle_ms / 4 + 1;
	struct itimerspec it = {.it_interval = {tick / 1000, (tick % 1000) * 1000000},
				.it_value = {tick / 1000, (tick % 1000) * 1000000}};
	if (timerfd_settime(s->timer_fd, 0, &it, NULL) < 0)
		return err_set(errno, "control socket %s: idle timer", s->path);
	return 0;
}

static int control_idle_timer(struct control_server *s)
{
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timer_fd < 0)
		return err_set(errno, "control socket %s: idle timer", s->path);
	int r = control_arm_timer(s);
	if (r == 0 && (r = evloop_add(s->loop, s->timer_fd, EPOLLIN, server_idle_tick, s)) < 0)
		r = err_set(-r, "control socket %s: idle timer", s->path);
	return r;
}

int control_set_idle_timeout(struct control_server *s, int ms)
{
	if (ms <= 0)
		return err_set(EINVAL, "control socket %s: idle timeout %d ms", s->path, ms);
	s->idle_ms = ms;
	return control_arm_timer(s);
}

int control_open(struct evloop *loop, const char *path, const struct control_cmd *cmds,
		 size_t ncmds, void *opaque, struct control_server **out)
{
	*out = NULL;
	struct sockaddr_un sa;
	int r = control_addr(path, &sa);
	if (r < 0)
		return r;
	r = control_check_cmds(cmds, ncmds);
	if (r < 0)
		return r;
	struct control_server *s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(ENOMEM, "control socket %s", path);
	s->fd = -1;
	s->timer_fd = -1;
	s->idle_ms = CONTROL_IDLE_MS;
	s->loop = loop;
	s->opaque = opaque;
	s->path = strdup(path);
	s->cmds = calloc(ncmds ? ncmds : 1, sizeof(*cmds));
	if (!s->path || !s->cmds) {
		control_free(s);
		return err_set(ENOMEM, "control socket %s", path);
	}
	if (ncmds)
		memcpy(s->cmds, cmds, ncmds * sizeof(*cmds));
	s->ncmds = ncmds;

	r = control_clear_path(path, &sa);
	if (r == 0)
		r = control_listen(s, &sa);
	if (r == 0 && (r = control_idle_timer(s)) < 0)
		unlink(path);
	if (r < 0) {
		control_free(s);
		return r;
	}
	/* Everything is set: from here on events may arrive in the loop thread. */
	r = evloop_add(loop, s->fd, EPOLLIN | EPOLLET, server_event, s);
	if (r < 0) {
		r = err_set(-r, "control socket %s: watching it", path);
		unlink(path);
		control_free(s);
		return r;
	}
	log_debug("control: listening on %s", path);
	*out = s;
	return 0;
}

void control_close(struct control_server *s)
{
	if (!s)
		return;
	evloop_del(s->loop, s->fd);
	evloop_del(s->loop, s->timer_fd);
	/* Remove the file only if it is still ours. */
	struct stat st;
	if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	while (s->conns) {
		struct control_conn *c = s->conns;
		s->conns = c->next;
		c->server = NULL;
		if (c->busy)
			c->doomed = true; /* its pump frees it */
		else
			conn_free(c);
	}
	log_debug("control: closed %s", s->path);
	control_free(s);
}

/* ---- deferred replies ---- */

struct control_pending *control_defer(json_t *reply)
{
	struct control_dispatch *d = control_current;
	if (!d || !reply || d->reply != reply || d->deferred)
		return NULL;
	struct control_pending *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->conn = d->conn;
	p->disp = d;
	p->id = json_incref(d->id);
	d->conn->pending = p;
	d->pending = p;
	d->deferred = true;
	return p;
}

void control_pending_finish(struct control_pending *p, int result, json_t *reply)
{
	if (!p)
		return;
	struct control_conn *c = p->conn;
	if (p->disp)
		p->disp->pending = NULL; /* finished inside its own command */
	if (c) {
		const char *msg = json_string_value(json_object_get(reply, "error"));
		if (!msg && result < 0)
			msg = err_msg()[0] ? err_msg() : strerror(-result);
		if (result > 0)
			result = 0;
		json_t *fields = NULL;
		if (result >= 0 && reply) {
			fields = json_copy(reply); /* shallow: only to drop "error" */
			json_object_del(fields, "error");
		}
		c->pending = NULL;
		conn_reply(c, p->id, result, fields, msg);
		json_decref(fields);
	}
	json_decref(p->id);
	free(p);
	if (c)
		conn_pump(c); /* the next request, or the close */
}
