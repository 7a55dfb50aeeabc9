/* Copy-on-write view of guest RAM by userfaultfd write protection; the
 * design is in ram_cow.h. */
#include "snapshot/ram_cow.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Linux 6.4; Debian 12's headers predate it.  Without it, pages the guest
 * never touched are not protected (and a write to one would not stop). */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif

#define CHUNK MEM_IMAGE_CHUNK_SIZE

enum chunk_state {
	CH_PROTECTED, /* write-protected (after the pause: as it was then) */
	CH_LIFTED,    /* written before the pause: unprotected until then */
	CH_WRITING,   /* the writer reads it from RAM; still protected */
	CH_COPIED,    /* the fault thread saved it in copy[]; unprotected */
	CH_TAKEN,     /* the writer reads copy[] */
	CH_LOST,      /* could not be copied (no memory): the save fails */
	CH_DONE,      /* written; unprotected */
};

struct ram_cow {
	uint8_t *ram;
	uint64_t size, nchunks;
	int uffd, stop_fd;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool armed; /* the pause is past: a write copies its chunk first */
	uint8_t *state;
	void **copy;
	uint64_t copied;
	struct mem_image_source src;
};

static uint64_t chunk_bytes(const struct ram_cow *w, uint64_t c)
{
	uint64_t off = c * CHUNK;
	return w->size - off < CHUNK ? w->size - off : CHUNK;
}

/* Set (WP) or lift write protection of [OFF, OFF+LEN); lifting it also
 * wakes the threads waiting on a write fault there. */
static int protect(struct ram_cow *w, uint64_t off, uint64_t len, bool wp)
{
	struct uffdio_writeprotect p = {
	    .range = {.start = (uintptr_t)w->ram + off, .len = len},
	    .mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	if (ioctl(w->uffd, UFFDIO_WRITEPROTECT, &p) < 0)
		return err_set(errno, "userfaultfd: %s guest RAM at %#llx (%llu bytes)",
			       wp ? "write-protecting" : "unprotecting",
			       (unsigned long long)off, (unsigned long long)len);
	return 0;
}

/* A write fault at ADDR (fault thread). */
static void on_write_fault(struct ram_cow *w, uint64_t addr)
{
	uint64_t off = addr - (uintptr_t)w->ram;
	if (addr < (uintptr_t)w->ram || off >= w->size)
		return;
	uint64_t c = off / CHUNK;
	pthread_mutex_lock(&w->lock);
	while (w->state[c] == CH_WRITING) /* the writer lifts it when done */
		pthread_cond_wait(&w->cond, &w->lock);
	if (w->state[c] == CH_PROTECTED && !w->armed) {
		/* Before the pause the chunk is not the snapshot's yet: let the
		 * write through; ram_cow_protect protects it again. */
		w->state[c] = CH_LIFTED;
		protect(w, c * CHUNK, chunk_bytes(w, c), false);
	} else if (w->state[c] == CH_PROTECTED) {
		void *copy = aligned_alloc(MEM_IMAGE_PAGE_SIZE, CHUNK);
		if (copy)
			memcpy(copy, w->ram + c * CHUNK, chunk_bytes(w, c));
		w->copy[c] = copy;
		w->state[c] = copy ? CH_COPIED : CH_LOST;
		w->copied++;
		protect(w, c * CHUNK, chunk_bytes(w, c), false);
	} else {
		/* Already lifted (a fault that raced with that): just wake it. */
		struct uffdio_range r = {.start = addr & ~(uint64_t)(MEM_IMAGE_PAGE_SIZE - 1),
					 .len = MEM_IMAGE_PAGE_SIZE};
		ioctl(w->uffd, UFFDIO_WAKE, &r);
	}
	pthread_mutex_unlock(&w->lock);
}

static void *fault_run(void *opaque)
{
	struct ram_cow *w = opaque;
	struct pollfd p[2] = {{.fd = w->uffd, .events = POLLIN}, {.fd = w->stop_fd, .events = POLLIN}};
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		struct uffd_msg m[16];
		ssize_t n = read(w->uffd, m, sizeof(m));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(m[0]); i++)
			if (m[i].event == UFFD_EVENT_PAGEFAULT &&
			    (m[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
				on_write_fault(w, m[i].arg.pagefault.address);
	}
	return NULL;
}

static const void *cow_get(void *opaque, uint64_t c)
{
	struct ram_cow *w = opaque;
	const void *p = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->state[c] == CH_PROTECTED) {
		w->state[c] = CH_WRITING;
		p = w->ram + c * CHUNK;
	} else if (w->state[c] == CH_COPIED) {
		w->state[c] = CH_TAKEN;
		p = w->copy[c];
	}
	pthread_mutex_unlock(&w->lock);
	return p;
}

static void cow_put(void *opaque, uint64_t c)
{
	struct ram_cow *w = opaque;
	pthread_mutex_lock(&w->lock);
	/* PROTECTED: a chunk the writer did not need, handed back unread. */
	if (w->state[c] == CH_WRITING || w->state[c] == CH_PROTECTED)
		protect(w, c * CHUNK, chunk_bytes(w, c), false);
	free(w->copy[c]);
	w->copy[c] = NULL;
	w->state[c] = CH_DONE;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Read one byte of every chunk: a chunk the guest never touched then maps
 * the shared zero page (one huge entry), which write protection covers
 * cheaply.  Left empty, each would need a page table of "protected"
 * markers made at the pause (WP_UNPOPULATED): 1.2 ms for 128 such chunks
 * here, against 0.13 ms to protect all of a 2 GiB RAM that is mapped. */
static void map_untouched(struct ram_cow *w)
{
	for (uint64_t c = 0; c < w->nchunks; c++)
		(void)*(volatile const uint8_t *)(w->ram + c * CHUNK);
}

static int uffd_new(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == EPERM) { /* unprivileged: /dev/userfaultfd may be open to us */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	return fd;
}

int ram_cow_open(void *ram, uint64_t size, struct ram_cow **out)
{
	struct ram_cow *w = calloc(1, sizeof(*w));
	if (!w)
		return err_set(ENOMEM, "userfaultfd view of guest RAM");
	w->ram = ram;
	w->size = size;
	w->nchunks = (size + CHUNK - 1) / CHUNK;
	w->stop_fd = -1;
	w->src = (struct mem_image_source){.get = cow_get, .put = cow_put, .opaque = w};
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	int r = 0;
	w->uffd = uffd_new();
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP |
					     UFFD_FEATURE_WP_UNPOPULATED};
	struct uffdio_register reg = {.range = {.start = (uintptr_t)ram, .len = size},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	if (w->uffd < 0)
		r = err_set(ENOTSUP, "userfaultfd unavailable: %s", strerror(errno));
	else if (ioctl(w->uffd, UFFDIO_API, &api) < 0)
		r = err_set(ENOTSUP, "userfaultfd lacks write protection of anonymous memory: %s",
			    strerror(errno));
	else if (ioctl(w->uffd, UFFDIO_REGISTER, &reg) < 0 ||
		 !(reg.ioctls & ((uint64_t)1 << _UFFDIO_WRITEPROTECT)))
		r = err_set(ENOTSUP, "userfaultfd cannot write-protect guest RAM: %s",
			    strerror(errno));
	if (r == 0) {
		w->state = calloc(w->nchunks, 1);
		w->copy = calloc(w->nchunks, sizeof(void *));
		w->stop_fd = eventfd(0, EFD_CLOEXEC);
		if (!w->state || !w->copy || w->stop_fd < 0)
			r = err_set(ENOMEM, "userfaultfd view of guest RAM");
	}
	if (r == 0)
		map_untouched(w);
	if (r == 0 && pthread_create(&w->thread, NULL, fault_run, w) != 0)
		r = err_set(EAGAIN, "userfaultfd: no thread for write faults");
	w->thread_started = r == 0;
	if (r == 0) /* the fault thread serves the writes this stops */
		r = protect(w, 0, size, true);
	if (r < 0) {
		ram_cow_close(w);
		return r;
	}
	*out = w;
	return 0;
}

int ram_cow_protect(struct ram_cow *w)
{
	int r = 0;
	uint64_t reprotected = 0;
	pthread_mutex_lock(&w->lock);
	for (uint64_t c = 0; r == 0 && c < w->nchunks;) {
		if (w->state[c] != CH_LIFTED) {
			c++;
			continue;
		}
		uint64_t e = c; /* one call for a run of written chunks */
		while (e < w->nchunks && w->state[e] == CH_LIFTED)
			w->state[e++] = CH_PROTECTED;
		r = protect(w, c * CHUNK, (e - c - 1) * CHUNK + chunk_bytes(w, e - 1), true);
		reprotected += e - c;
		c = e;
	}
	w->armed = r == 0;
	pthread_mutex_unlock(&w->lock);
	return r < 0 ? r : (int)reprotected;
}

int ram_cow_skip(struct ram_cow *w, uint64_t first, uint64_t n)
{
	int r = 0;
	pthread_mutex_lock(&w->lock);
	for (uint64_t c = first; c < first + n && c < w->nchunks;) {
		if (w->state[c] != CH_PROTECTED && w->state[c] != CH_COPIED) {
			c++;
			continue;
		}
		uint64_t e = c; /* one call for a run */
		while (e < first + n && e < w->nchunks &&
		       (w->state[e] == CH_PROTECTED || w->state[e] == CH_COPIED)) {
			free(w->copy[e]);
			w->copy[e] = NULL;
			w->state[e++] = CH_DONE;
		}
		if (r == 0)
			r = protect(w, c * CHUNK, (e - c - 1) * CHUNK + chunk_bytes(w, e - 1), false);
		c = e;
	}
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return r;
}

const void *ram_cow_peek(struct ram_cow *w, uint64_t c)
{
	return c < w->nchunks ? cow_get(w, c) : NULL;
}

void ram_cow_unpeek(struct ram_cow *w, uint64_t c)
{
	pthread_mutex_lock(&w->lock);
	if (w->state[c] == CH_WRITING) /* still protected */
		w->state[c] = CH_PROTECTED;
	else if (w->state[c] == CH_TAKEN)
		w->state[c] = CH_COPIED;
	pthread_cond_broadcast(&w->cond); /* a write waiting for the chunk copies it */
	pthread_mutex_unlock(&w->lock);
}

const struct mem_image_source *ram_cow_source(struct ram_cow *w)
{
	return &w->src;
}

uint64_t ram_cow_copied(const struct ram_cow *w)
{
	return w->copied;
}

void ram_cow_close(struct ram_cow *w)
{
	if (!w)
		return;
	if (w->thread_started) {
		uint64_t one = 1;
		ssize_t n = write(w->stop_fd, &one, sizeof(one)); /* an eventfd write does not fail here */
		(void)n;
		pthread_join(w->thread, NULL);
	}
	if (w->uffd >= 0) {
		/* Whatever is still protected (a save that failed) is lifted and
		 * its waiters woken, then the range leaves the userfaultfd. */
		bool all_done = w->state != NULL;
		for (uint64_t c = 0; all_done && c < w->nchunks; c++)
			all_done = w->state[c] == CH_DONE;
		if (w->state && !all_done)
			protect(w, 0, w->size, false);
		struct uffdio_range r = {.start = (uintptr_t)w->ram, .len = w->size};
		ioctl(w->uffd, UFFDIO_UNREGISTER, &r);
		close(w->uffd);
	}
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	for (uint64_t c = 0; w->copy && c < w->nchunks; c++)
		free(w->copy[c]);
	free(w->copy);
	free(w->state);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}
