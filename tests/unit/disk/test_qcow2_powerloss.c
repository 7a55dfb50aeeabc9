/* Power loss: writes that never reached the disk.  Every pwrite and
 * fdatasync the library makes is recorded (the test defines pwrite64 and
 * fdatasync, which the statically linked library then calls).  For many
 * crash points, the image is rebuilt as it could be on disk after a power
 * cut there: everything before the last fdatasync, plus a random subset of
 * the writes issued since.  Each such image must check without corruption
 * (leaks are fine), and every byte acknowledged by a completed guest flush
 * and not written since must read back. */
#include "../test.h"
#include "common.h"
#include "disk/qcow2.h"
#include "disk/qcow2_check.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>

struct event {
	int fd; /* -1: fdatasync of the traced fd */
	uint64_t off;
	size_t len;
	uint8_t *data;
};

static struct event *events;
static size_t nevents, cap;
static int traced_fd = -1;
static bool tracing;

static void record(int fd, const void *data, size_t len, uint64_t off)
{
	if (nevents == cap) {
		cap = cap ? cap * 2 : 4096;
		events = realloc(events, cap * sizeof(*events));
		if (!events)
			abort();
	}
	struct event *e = &events[nevents++];
	e->fd = fd;
	e->off = off;
	e->len = len;
	e->data = NULL;
	if (len) {
		e->data = malloc(len);
		if (!e->data)
			abort();
		memcpy(e->data, data, len);
	}
}

static bool is_traced(int fd)
{
	if (!tracing)
		return false;
	if (traced_fd < 0) {
		char link[64], target[512];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = 0;
			if (strstr(target, "pl.qcow2"))
				traced_fd = fd;
		}
	}
	return fd == traced_fd;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off_t);
	if (!real)
		real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
	ssize_t r = real(fd, buf, n, off);
	if (r > 0 && is_traced(fd))
		record(fd, buf, (size_t)r, (uint64_t)off);
	return r;
}

int fdatasync(int fd);
int fdatasync(int fd)
{
	static int (*real)(int);
	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	int r = real(fd);
	if (r == 0 && is_traced(fd))
		record(-1, NULL, 0, 0);
	return r;
}

#define SIZE (6u << 20)

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? rng % n : 0;
}

/* Guest flush completions: event index, and a copy of the model and of
 * the bytes written since the previous flush. */
struct flushpoint {
	size_t event;
	uint8_t *model;
};

static void apply(uint8_t *img, size_t *img_len, const struct event *e)
{
	memcpy(img + e->off, e->data, e->len);
	if (e->off + e->len > *img_len)
		*img_len = e->off + e->len;
}

static void run(uint32_t cs, int nops)
{
	const char *p = scratch("pl.qcow2");
	struct qcow2_create_opts o = {.size = SIZE, .cluster_size = cs};
	CHECK_OK(qcow2_create(p, &o));
	/* The file as created. */
	size_t max_len = 64u << 20;
	uint8_t *initial = calloc(1, max_len);
	int fd = open(p, O_RDONLY);
	ssize_t init_len = read(fd, initial, max_len);
	close(fd);
	CHECK(init_len > 0);

	uint8_t *model = calloc(1, SIZE), *buf = malloc(SIZE);
	struct flushpoint *fps = calloc((size_t)nops + 2, sizeof(*fps));
	size_t nfp = 0;
	uint8_t **touched_at = calloc((size_t)nops + 2, sizeof(*touched_at));
	nevents = 0;
	traced_fd = -1;
	tracing = true;
	struct block_dev *bd;
	CHECK_OK(block_open(p, NULL, 0, &bd));
	if (!bd)
		return;
	fps[nfp].event = 0;
	fps[nfp].model = calloc(1, SIZE);
	touched_at[nfp++] = calloc(1, SIZE);
	for (int k = 0; k < nops; k++) {
		uint64_t off = rnd(SIZE), len = 1 + rnd(rnd(3) ? 3000 : 200000);
		if (off + len > SIZE)
			len = SIZE - off;
		unsigned op = (unsigned)rnd(12);
		if (op < 8) {
			memset(buf, (int)(1 + rnd(255)), len);
			CHECK_OK(block_write(bd, buf, off, len));
			memcpy(model + off, buf, len);
		} else if (op < 10) {
			CHECK_OK(block_write_zeroes(bd, off, len));
			memset(model + off, 0, len);
		} else {
			CHECK_OK(block_discard(bd, off, len));
			uint64_t a = (off + cs - 1) / cs * cs, e = (off + len) / cs * cs;
			if (a < e)
				memset(model + a, 0, e - a);
		}
		/* touched_at[i]: bytes written after flush point i (discard may or
		 * may not zero: its range counts as written). */
		for (size_t i = 0; i < nfp; i++)
			memset(touched_at[i] + off, 1, len);
		if (rnd(8) == 0) {
			CHECK_OK(block_flush(bd));
			fps[nfp].event = nevents;
			fps[nfp].model = malloc(SIZE);
			memcpy(fps[nfp].model, model, SIZE);
			touched_at[nfp] = calloc(1, SIZE);
			nfp++;
		}
	}
	block_close(bd);
	tracing = false;

	/* Crash points: event indices, ascending. */
	int npoints = 60;
	size_t *points = malloc(sizeof(size_t) * (size_t)npoints);
	for (int i = 0; i < npoints; i++)
		points[i] = (size_t)rnd(nevents + 1);
	for (int i = 1; i < npoints; i++)
		for (int j = i; j > 0 && points[j - 1] > points[j]; j--) {
			size_t t = points[j];
			points[j] = points[j - 1];
			points[j - 1] = t;
		}
	uint8_t *durable = malloc(max_len), *img = malloc(max_len);
	memcpy(durable, initial, (size_t)init_len);
	size_t dlen = (size_t)init_len, applied = 0;
	const char *cp = scratch("crash.qcow2");
	unsigned leaky = 0;
	for (int i = 0; i < npoints; i++) {
		size_t P = points[i];
		size_t last_sync = 0;
		for (size_t e = 0; e < P; e++)
			if (events[e].fd == -1)
				last_sync = e + 1;
		for (; applied < last_sync; applied++)
			if (events[applied].fd != -1)
				apply(durable, &dlen, &events[applied]);
		memcpy(img, durable, dlen);
		size_t ilen = dlen;
		for (size_t e = last_sync; e < P; e++)
			if (events[e].fd != -1 && rnd(2))
				apply(img, &ilen, &events[e]);
		int fd2 = open(cp, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		CHECK(fd2 >= 0 && write(fd2, img, ilen) == (ssize_t)ilen);
		close(fd2);
		struct qcow2_check_result r;
		CHECK_OK(qcow2_check(cp, 0, &r, NULL));
		if (r.corruptions || r.check_errors) {
			fprintf(stderr, "cs %u, crash at event %zu of %zu: %llu corruptions\n", cs,
				P, nevents, (unsigned long long)r.corruptions);
			qcow2_check(cp, 0, &r, stderr);
			test_failures++;
			break;
		}
		leaky += r.leaks > 0;
		/* The last guest flush completed before P. */
		size_t f = 0;
		for (size_t k = 0; k < nfp; k++)
			if (fps[k].event <= last_sync)
				f = k;
		struct block_dev *rd;
		CHECK_OK(block_open(cp, NULL, BLOCK_RDONLY, &rd));
		if (!rd)
			break;
		CHECK_OK(block_read(rd, buf, 0, SIZE));
		block_close(rd);
		for (uint64_t b = 0; b < SIZE; b++) {
			if (!touched_at[f][b] && buf[b] != fps[f].model[b]) {
				fprintf(stderr,
					"cs %u, crash at event %zu: flushed byte %llu lost\n", cs,
					P, (unsigned long long)b);
				test_failures++;
				break;
			}
		}
	}
	fprintf(stderr, "cluster %u: %zu events, %zu flushes, %d crash points (%u with leaks)\n",
		cs, nevents, nfp - 1, npoints, leaky);
	for (size_t e = 0; e < nevents; e++)
		free(events[e].data);
	for (size_t k = 0; k < nfp; k++) {
		free(fps[k].model);
		free(touched_at[k]);
	}
	free(fps);
	free(touched_at);
	free(points);
	free(durable);
	free(img);
	free(initial);
	free(model);
	free(buf);
}

int main(void)
{
	scratch_init();
	run(65536, 300);
	run(512, 300); /* refcount blocks and table growth */
	run(4096, 300);
	scratch_cleanup();
	TEST_DONE();
}
