/* The control socket of a running VM: a Unix stream socket speaking JSON
 * lines, one request line and one reply line (docs/control.md).
 *
 * The server lives in the VMM's event loop (util/evloop.h): accepting,
 * reading, dispatching and replying all happen in the loop's thread, so a
 * command's function runs there too.  Every function here except
 * control_request() must be called in the loop's thread, or while the loop
 * is not running.  control_request() is the client side (CLI, tests). */
#ifndef CAIRN_CONTROL_CONTROL_H
#define CAIRN_CONTROL_CONTROL_H

#include <jansson.h>
#include <stddef.h>

struct evloop;
struct control_server;
struct control_pending;

/* Longest request line, without its newline.  A longer one gets an error
 * reply and the connection is closed. */
#define CONTROL_LINE_MAX 65536
/* Most clients served at once.  One more makes room by closing the client
 * idle the longest (no command of it running); only when every client
 * waits for a reply is the new one told so and closed. */
#define CONTROL_MAX_CLIENTS 64
/* A client that sends no complete request for this long (and has no
 * command running) is closed: idle connections cannot hold the socket. */
#define CONTROL_IDLE_MS 60000
/* Returned by a command whose reply comes later (see control_defer()). */
#define CONTROL_DEFERRED 1

/* One command.  FN gets the whole request object (it may keep a reference
 * with json_incref) and an empty REPLY object to fill with its fields; it
 * returns 0 ({"ok":true, fields...}), or a negative errno after err_set()
 * ({"ok":false,"error":err_msg(),"errno":N,"code":"EXXX"}), or
 * CONTROL_DEFERRED.  A request for an unknown command gets errno ENOSYS. */
struct control_cmd {
	const char *name;
	int (*fn)(void *opaque, json_t *req, json_t *reply);
	const char *help; /* one line, listed by {"cmd":"help"} */
};

/* Serve PATH from LOOP.  CMDS is copied (the strings must outlive the
 * server); OPAQUE is passed to every command.  A stale socket file at PATH
 * is replaced; a live server there, or a file that is not a socket, is
 * refused.  The socket is made with mode 0600.  Returns 0 or -errno with
 * err_msg() naming PATH. */
int control_open(struct evloop *loop, const char *path, const struct control_cmd *cmds,
		 size_t ncmds, void *opaque, struct control_server **out);

/* Change the idle timeout (tests); MS > 0. */
int control_set_idle_timeout(struct control_server *s, int ms);

/* Close every connection (a deferred reply still outstanding is finished
 * into the void), stop listening and remove the socket file.  Safe from
 * inside a command's function.  NULL is ignored. */
void control_close(struct control_server *s);

/* Deferred replies.  Inside a command's FN, control_defer(reply) (the REPLY
 * that FN was given) returns a handle; FN then returns CONTROL_DEFERRED.
 * Later, in the loop's thread (from another thread use evloop_call()),
 * control_pending_finish() sends the reply and frees the handle: it must be
 * called exactly once per handle, and is safe when the client has gone or
 * the server was closed meanwhile.  Further requests on that connection wait
 * until then, so replies keep the order of requests.
 *
 * Returns NULL when called outside a command's FN, with another REPLY, or
 * twice in one FN.  If FN calls control_defer() but then returns 0 or an
 * error, that reply is sent at once and the handle must still be finished
 * (it then only frees it). */
struct control_pending *control_defer(json_t *reply);

/* RESULT 0: {"ok":true, fields of REPLY}.  RESULT < 0: {"ok":false,
 * "error":...} with the message taken from REPLY's "error" string when
 * present (the way to carry a message from a worker thread, as err_msg() is
 * per thread), else err_msg() of the calling thread, else strerror.  REPLY
 * may be NULL and is not taken over (the caller still owns it). */
void control_pending_finish(struct control_pending *p, int result, json_t *reply);

/* Client: connect to PATH, send REQUEST (one line of JSON; a trailing
 * newline is optional), wait for one reply line and return it in *REPLY
 * (malloc'd, without its newline).  TIMEOUT_MS < 0 waits forever.  Errors:
 * -ENOENT/-ECONNREFUSED "no VM is listening on PATH: ...", -ETIMEDOUT "no
 * reply from PATH within N ms", -ECONNRESET when the server closed without
 * replying; err_msg() always names PATH. */
int control_request(const char *path, const char *request, char **reply, int timeout_ms);

/* The same with JSON: send REQUEST, return the reply object in *REPLY
 * (NULL: dropped) when it says "ok", else -errno taken from the reply's
 * "errno" (EIO when it has none) with its "error" as the message: an
 * unknown command is -ENOSYS.  Errors of the exchange as control_request. */
int control_call(const char *path, json_t *request, json_t **reply, int timeout_ms);

#endif
