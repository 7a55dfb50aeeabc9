#include "util/evloop.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct evloop_watch {
	int fd;
	evloop_fn fn;
	void *opaque;
	struct evloop_watch *next;
};

struct evloop_call {
	void (*fn)(void *);
	void *opaque;
	struct evloop_call *next;
};

struct evloop_source {
	const struct evloop_source_ops *ops;
	void *opaque;
	struct pollfd *fds; /* the source's own, as PREPARE left them */
	unsigned nfds;
	struct evloop_source *next;
};

struct evloop {
	int epfd;
	int wakefd; /* eventfd: stop requests and queued calls */
	volatile int stop;
	pthread_mutex_t lock;
	struct evloop_watch *watches;
	struct evloop_call *calls;
	struct evloop_source *sources;
	struct pollfd *pfds; /* the epoll fd, then every source's */
	unsigned pfds_cap;
	bool polled; /* the sources' fds were polled this turn: dispatch them */
};

int evloop_create(struct evloop **out)
{
	struct evloop *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->wakefd < 0) {
		int r = -errno;
		if (l->epfd >= 0)
			close(l->epfd);
		if (l->wakefd >= 0)
			close(l->wakefd);
		free(l);
		return r;
	}
	pthread_mutex_init(&l->lock, NULL);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev);
	*out = l;
	return 0;
}

void evloop_destroy(struct evloop *l)
{
	if (!l)
		return;
	while (l->watches) {
		struct evloop_watch *w = l->watches;
		l->watches = w->next;
		free(w);
	}
	while (l->calls) {
		struct evloop_call *c = l->calls;
		l->calls = c->next;
		free(c);
	}
	while (l->sources) {
		struct evloop_source *s = l->sources;
		l->sources = s->next;
		free(s);
	}
	free(l->pfds);
	close(l->epfd);
	close(l->wakefd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque)
{
	struct evloop_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct evloop_watch){fd, fn, opaque, NULL};
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		free(w);
		return r;
	}
	pthread_mutex_lock(&l->lock);
	w->next = l->watches;
	l->watches = w;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int evloop_del(struct evloop *l, int fd)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	pthread_mutex_lock(&l->lock);
	/* Keep the watch struct's fd invalid rather than freeing it: an event
	 * for it may already sit in the current epoll batch. */
	for (struct evloop_watch *w = l->watches; w; w = w->next)
		if (__atomic_load_n(&w->fd, __ATOMIC_RELAXED) == fd)
			__atomic_store_n(&w->fd, -1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* Free the watches evloop_del retired, once no event batch can hold them. */
static void evloop_sweep(struct evloop *l)
{
	pthread_mutex_lock(&l->lock);
	for (struct evloop_watch **p = &l->watches; *p;) {
		struct evloop_watch *w = *p;
		if (__atomic_load_n(&w->fd, __ATOMIC_RELAXED) < 0) {
			*p = w->next;
			free(w);
		} else {
			p = &w->next;
		}
	}
	pthread_mutex_unlock(&l->lock);
}

void evloop_stop(struct evloop *l)
{
	l->stop = 1;
	uint64_t one = 1;
	ssize_t n = write(l->wakefd, &one, sizeof(one));
	(void)n;
}

int evloop_call(struct evloop *l, void (*fn)(void *), void *opaque)
{
	struct evloop_call *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->opaque = opaque;
	pthread_mutex_lock(&l->lock);
	struct evloop_call **p = &l->calls;
	while (*p)
		p = &(*p)->next;
	*p = c;
	pthread_mutex_unlock(&l->lock);
	uint64_t one = 1;
	ssize_t n = write(l->wakefd, &one, sizeof(one));
	(void)n;
	return 0;
}

static void evloop_run_calls(struct evloop *l)
{
	uint64_t v;
	ssize_t n = read(l->wakefd, &v, sizeof(v));
	(void)n;
	for (;;) {
		pthread_mutex_lock(&l->lock);
		struct evloop_call *c = l->calls;
		if (c)
			l->calls = c->next;
		pthread_mutex_unlock(&l->lock);
		if (!c)
			break;
		c->fn(c->opaque);
		free(c);
	}
}

int evloop_add_source(struct evloop *l, const struct evloop_source_ops *ops, void *opaque)
{
	struct evloop_source *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct evloop_source){.ops = ops, .opaque = opaque, .next = l->sources};
	l->sources = s;
	return 0;
}

void evloop_del_source(struct evloop *l, void *opaque)
{
	for (struct evloop_source **p = &l->sources; *p; p = &(*p)->next)
		if ((*p)->opaque == opaque) {
			struct evloop_source *s = *p;
			*p = s->next;
			free(s);
			return;
		}
}

/* With sources, the wait is a poll() on the epoll fd and their fds: 0 when
 * only a source (or its timeout) woke it, else what epoll_wait returns.
 * The sources are dispatched after the turn's handlers (evloop_run), as
 * QEMU's main loop does with libslirp: a frame a handler gave the stack
 * (a guest's ARP reply) lets it send what waited for it in the same turn. */
static int evloop_wait(struct evloop *l, struct epoll_event *evs, int max)
{
	if (!l->sources)
		return epoll_wait(l->epfd, evs, max, -1);
	int timeout = -1;
	unsigned n = 1;
	for (struct evloop_source *s = l->sources; s; s = s->next) {
		s->fds = NULL;
		s->nfds = 0;
		s->ops->prepare(s->opaque, &s->fds, &s->nfds, &timeout);
		n += s->nfds;
	}
	if (n > l->pfds_cap) {
		struct pollfd *p = realloc(l->pfds, n * sizeof(*p));
		if (!p)
			return -1;
		l->pfds = p;
		l->pfds_cap = n;
	}
	l->pfds[0] = (struct pollfd){.fd = l->epfd, .events = POLLIN};
	unsigned k = 1;
	for (struct evloop_source *s = l->sources; s; s = s->next) {
		if (s->nfds)
			memcpy(&l->pfds[k], s->fds, s->nfds * sizeof(*s->fds));
		k += s->nfds;
	}
	int r = poll(l->pfds, n, timeout);
	if (r < 0)
		return -1;
	k = 1;
	for (struct evloop_source *s = l->sources; s; s = s->next) {
		for (unsigned i = 0; i < s->nfds; i++)
			s->fds[i].revents = l->pfds[k + i].revents;
		k += s->nfds;
	}
	l->polled = true;
	if (!(l->pfds[0].revents & POLLIN))
		return 0;
	return epoll_wait(l->epfd, evs, max, 0);
}

int evloop_run(struct evloop *l)
{
	struct epoll_event evs[32];
	while (!l->stop) {
		int n = evloop_wait(l, evs, 32);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			struct evloop_watch *w = evs[i].data.ptr;
			if (!w) {
				evloop_run_calls(l);
				continue;
			}
			if (__atomic_load_n(&w->fd, __ATOMIC_RELAXED) >= 0)
				w->fn(w->opaque, evs[i].events);
		}
		if (l->polled) {
			l->polled = false;
			for (struct evloop_source *s = l->sources; s && !l->stop; s = s->next)
				s->ops->dispatch(s->opaque);
		}
		evloop_sweep(l);
	}
	return 0;
}
