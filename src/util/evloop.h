/* A small epoll event loop: the VMM's I/O thread waits here for console
 * input, virtio notifications (ioeventfd) and control requests. */
#ifndef CAIRN_UTIL_EVLOOP_H
#define CAIRN_UTIL_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>

struct evloop;
typedef void (*evloop_fn)(void *opaque, uint32_t events);

int evloop_create(struct evloop **out);
void evloop_destroy(struct evloop *loop);
/* Watch FD for EVENTS (EPOLLIN...); FN runs in the loop's thread. */
int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_fn fn, void *opaque);
int evloop_del(struct evloop *loop, int fd);
/* A source whose descriptors change from turn to turn (libslirp's sockets):
 * before each wait PREPARE points *FDS at its pollfds (N of them) and may
 * lower *TIMEOUT_MS (-1: none); after the wait, DISPATCH sees their revents
 * (also when the wait timed out, for the source's timers).  Both run in the
 * loop's thread.  Add and remove sources from that thread or before the
 * loop runs. */
struct pollfd;
struct evloop_source_ops {
	void (*prepare)(void *opaque, struct pollfd **fds, unsigned *n, int *timeout_ms);
	void (*dispatch)(void *opaque);
};
int evloop_add_source(struct evloop *loop, const struct evloop_source_ops *ops, void *opaque);
void evloop_del_source(struct evloop *loop, void *opaque);
/* Run until evloop_stop(); returns 0, or -errno if epoll fails. */
int evloop_run(struct evloop *loop);
/* Safe from any thread or a signal handler. */
void evloop_stop(struct evloop *loop);
/* Run FN(OPAQUE) once in the loop's thread at its next turn (any thread). */
int evloop_call(struct evloop *loop, void (*fn)(void *), void *opaque);

#endif
