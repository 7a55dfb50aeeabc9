/* User-mode networking through libslirp, QEMU's `-netdev user` defaults:
 * network 10.0.2.0/24, gateway and host 10.0.2.2, DNS 10.0.2.3, DHCP from
 * 10.0.2.15.  Driven from the event loop as a source: before each wait
 * slirp lists its sockets (they come and go with connections) and its next
 * deadline; after it, slirp reads what is ready and the due timers run.
 * Nothing here blocks.  No state of slirp's is ever saved: a restore gets a
 * fresh instance, so host-side connections through it are reset. */
#include "net/net.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <libslirp.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct slirp_timer {
	SlirpTimerCb cb;
	void *cb_opaque;
	int64_t expire_ms; /* -1: not armed */
	struct slirp_timer *next;
};

struct net_slirp {
	Slirp *slirp;
	struct evloop *loop;
	struct net_peer peer;
	struct pollfd *fds;
	unsigned nfds, cap;
	struct slirp_timer *timers;
	bool grow_failed;
	bool rx_paused; /* this turn: the NIC takes no frames, sockets are not read */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static ssize_t ns_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *s = opaque;
	s->peer.receive(s->peer.opaque, NULL, buf, len);
	return (ssize_t)len;
}

static void ns_guest_error(const char *msg, void *opaque)
{
	log_debug("user-mode network: guest error: %s", msg);
}

static int64_t ns_clock_get_ns(void *opaque)
{
	return now_ns();
}

static void *ns_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct net_slirp *s = opaque;
	struct slirp_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	*t = (struct slirp_timer){cb, cb_opaque, -1, s->timers};
	s->timers = t;
	return t;
}

static void ns_timer_free(void *timer, void *opaque)
{
	struct net_slirp *s = opaque;
	for (struct slirp_timer **p = &s->timers; *p; p = &(*p)->next)
		if (*p == timer) {
			*p = ((struct slirp_timer *)timer)->next;
			free(timer);
			return;
		}
}

static void ns_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	((struct slirp_timer *)timer)->expire_ms = expire_ms;
}

static void ns_register_poll_fd(int fd, void *opaque)
{
}

static void ns_unregister_poll_fd(int fd, void *opaque)
{
}

/* The loop asks slirp for its sockets before every wait anyway. */
static void ns_notify(void *opaque)
{
}

static const SlirpCb ns_callbacks = {
    .send_packet = ns_send_packet,
    .guest_error = ns_guest_error,
    .clock_get_ns = ns_clock_get_ns,
    .timer_new = ns_timer_new,
    .timer_free = ns_timer_free,
    .timer_mod = ns_timer_mod,
    .register_poll_fd = ns_register_poll_fd,
    .unregister_poll_fd = ns_unregister_poll_fd,
    .notify = ns_notify,
};

static int ns_add_poll(int fd, int events, void *opaque)
{
	struct net_slirp *s = opaque;
	if (s->nfds == s->cap) {
		unsigned cap = s->cap ? 2 * s->cap : 16;
		struct pollfd *p = realloc(s->fds, cap * sizeof(*p));
		if (!p) {
			s->grow_failed = true;
			return -1;
		}
		s->fds = p;
		s->cap = cap;
	}
	short ev = 0;
	if ((events & SLIRP_POLL_IN) && !s->rx_paused)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= POLLPRI;
	s->fds[s->nfds] = (struct pollfd){.fd = fd, .events = ev};
	return (int)s->nfds++;
}

static int ns_get_revents(int idx, void *opaque)
{
	struct net_slirp *s = opaque;
	if (idx < 0 || (unsigned)idx >= s->nfds)
		return 0;
	short re = s->fds[idx].revents;
	int ev = 0;
	if (re & POLLIN)
		ev |= SLIRP_POLL_IN;
	if (re & POLLOUT)
		ev |= SLIRP_POLL_OUT;
	if (re & POLLPRI)
		ev |= SLIRP_POLL_PRI;
	if (re & POLLERR)
		ev |= SLIRP_POLL_ERR;
	if (re & POLLHUP)
		ev |= SLIRP_POLL_HUP;
	return ev;
}

static void ns_prepare(void *opaque, struct pollfd **fds, unsigned *n, int *timeout_ms)
{
	struct net_slirp *s = opaque;
	uint32_t t = UINT32_MAX;
	s->nfds = 0;
	s->grow_failed = false;
	/* While the NIC cannot take a frame, what the host sends waits in the
	 * sockets' buffers (as behind a real NIC's full ring) rather than being
	 * read, turned into frames and dropped; the guest's next buffers bring
	 * a loop turn, and the reads back. */
	s->rx_paused = s->peer.can_receive && !s->peer.can_receive(s->peer.opaque);
	slirp_pollfds_fill(s->slirp, &t, ns_add_poll, s);
	int64_t now = now_ns() / 1000000;
	for (struct slirp_timer *tm = s->timers; tm; tm = tm->next)
		if (tm->expire_ms >= 0) {
			int64_t d = tm->expire_ms > now ? tm->expire_ms - now : 0;
			if (d < t)
				t = (uint32_t)d;
		}
	if (s->grow_failed)
		t = 10; /* try again soon */
	if (t != UINT32_MAX && (*timeout_ms < 0 || t < (uint32_t)*timeout_ms))
		*timeout_ms = t > INT32_MAX ? INT32_MAX : (int)t;
	*fds = s->fds;
	*n = s->nfds;
}

static void ns_dispatch(void *opaque)
{
	struct net_slirp *s = opaque;
	slirp_pollfds_poll(s->slirp, 0, ns_get_revents, s);
	int64_t now = now_ns() / 1000000;
	/* A timer's callback may re-arm or free timers: one at a time, from
	 * the top of the list again. */
	for (bool fired = true; fired;) {
		fired = false;
		for (struct slirp_timer *tm = s->timers; tm; tm = tm->next)
			if (tm->expire_ms >= 0 && tm->expire_ms <= now) {
				tm->expire_ms = -1;
				tm->cb(tm->cb_opaque);
				fired = true;
				break;
			}
	}
}

static const struct evloop_source_ops ns_source = {ns_prepare, ns_dispatch};

void net_slirp_input(struct net_slirp *s, const void *frame, size_t len)
{
	slirp_input(s->slirp, frame, (int)len);
}

int net_slirp_open(const struct net_spec *spec, struct evloop *loop, const struct net_peer *peer,
		   struct net_slirp **out)
{
	struct net_slirp *s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(ENOMEM, "user-mode network");
	s->loop = loop;
	s->peer = *peer;
	SlirpConfig cfg = {
	    .version = 3,
	    .in_enabled = true,
	    .vnetwork.s_addr = htonl(0x0a000200),
	    .vnetmask.s_addr = htonl(0xffffff00),
	    .vhost.s_addr = htonl(0x0a000202),
	    .vdhcp_start.s_addr = htonl(0x0a00020f),
	    .vnameserver.s_addr = htonl(0x0a000203),
	    .vhostname = "cairn",
	};
	s->slirp = slirp_new(&cfg, &ns_callbacks, s);
	if (!s->slirp) {
		free(s);
		return err_set(ENOMEM, "user-mode network: slirp_new failed");
	}
	struct in_addr guest = {.s_addr = htonl(0x0a00020f)};
	for (unsigned i = 0; i < spec->nfwd; i++) {
		const struct net_hostfwd *f = &spec->fwd[i];
		struct in_addr host = {.s_addr = f->host_addr};
		if (slirp_add_hostfwd(s->slirp, f->udp, host, f->host_port, guest, f->guest_port) <
		    0) {
			net_slirp_close(s);
			return err_set(
			    EADDRINUSE,
			    "user-mode network: cannot forward host %s port %u (in use?)",
			    f->udp ? "UDP" : "TCP", f->host_port);
		}
	}
	int r = evloop_add_source(loop, &ns_source, s);
	if (r < 0) {
		net_slirp_close(s);
		return err_set(-r, "user-mode network: event loop");
	}
	*out = s;
	return 0;
}

void net_slirp_close(struct net_slirp *s)
{
	if (!s)
		return;
	evloop_del_source(s->loop, s);
	slirp_cleanup(s->slirp);
	while (s->timers) {
		struct slirp_timer *t = s->timers;
		s->timers = t->next;
		free(t);
	}
	free(s->fds);
	free(s);
}
