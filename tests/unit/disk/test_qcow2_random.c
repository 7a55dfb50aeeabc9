/* Randomized differential test: random writes, discards and zero-writes
 * over a chain of layers, with snapshots (new overlays), commits, streams
 * and reopenings in between, checked against a flat in-memory model after
 * every batch, and every layer checked for refcount consistency.
 * CAIRN_SEED=N replays a run. */
#include "../test.h"
#include "common.h"
#include "disk/chain.h"
#include "disk/qcow2.h"
#include "disk/qcow2_check.h"

#include <fcntl.h>
#include <time.h>

#define SIZE ((4u << 20) + 3 * 4096 + 512)
#define MAX_LAYERS 8

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}
static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static uint8_t *model, *buf;
static char layers[MAX_LAYERS * 4][32];
static uint32_t layer_cs[MAX_LAYERS * 4];
static int nlayers, serial;

static const char *lp(int i)
{
	return scratch(layers[i]);
}

static void new_layer(bool raw)
{
	int i = nlayers++;
	snprintf(layers[i], sizeof(layers[i]), "l%d.%s", serial++, raw ? "raw" : "qcow2");
	static const uint32_t sizes[] = {512, 4096, 65536, 16384};
	layer_cs[i] = sizes[rnd_below(4)];
	if (raw) {
		int fd = open(lp(i), O_CREAT | O_TRUNC | O_WRONLY, 0644);
		CHECK(fd >= 0 && ftruncate(fd, SIZE) == 0);
		close(fd);
		return;
	}
	struct qcow2_create_opts o = {.size = SIZE, .cluster_size = layer_cs[i]};
	if (i > 0)
		o.backing = layers[i - 1];
	CHECK_OK(qcow2_create(lp(i), &o));
}

static void random_ops(struct block_dev *bd, int n)
{
	uint64_t cs = strstr(bd->path, ".raw") ? 1 : layer_cs[nlayers - 1];
	for (int k = 0; k < n; k++) {
		uint64_t off = rnd_below(SIZE), len = 1 + rnd_below(rnd_below(4) ? 9000 : 300000);
		if (rnd_below(3) == 0)
			off &= ~(uint64_t)4095;
		if (off + len > SIZE)
			len = SIZE - off;
		unsigned op = (unsigned)rnd_below(10);
		if (op < 7) {
			uint8_t v = (uint8_t)(1 + rnd_below(255));
			memset(buf, v, len);
			buf[0] = (uint8_t)k;
			CHECK_OK(block_write(bd, buf, off, len));
			memcpy(model + off, buf, len);
		} else if (op < 9) {
			CHECK_OK(block_write_zeroes(bd, off, len));
			memset(model + off, 0, len);
		} else {
			CHECK_OK(block_discard(bd, off, len));
			if (cs == 1)
				continue; /* raw: hole punching also reads as zeroes */
			/* qcow2: whole clusters (and the tail cluster) become zero. */
			uint64_t a = (off + cs - 1) / cs * cs, e = (off + len) / cs * cs;
			if (off + len == SIZE)
				e = SIZE;
			if (a < e)
				memset(model + a, 0, e - a);
		}
		if (rnd_below(50) == 0)
			CHECK_OK(block_flush(bd));
	}
}

static void verify(const char *when)
{
	struct block_dev *bd;
	CHECK_OK(block_open(lp(nlayers - 1), NULL, BLOCK_RDONLY, &bd));
	if (!bd)
		return;
	CHECK_OK(block_read(bd, buf, 0, SIZE));
	if (memcmp(buf, model, SIZE)) {
		uint64_t i = 0;
		while (buf[i] == model[i])
			i++;
		fprintf(stderr, "content differs from the model at %llu (%#x != %#x) after %s\n",
			(unsigned long long)i, buf[i], model[i], when);
		test_failures++;
	}
	block_close(bd);
	for (int i = 0; i < nlayers; i++) {
		if (strstr(layers[i], ".raw"))
			continue;
		struct qcow2_check_result r;
		CHECK_OK(qcow2_check(lp(i), 0, &r, stderr));
		if (r.corruptions || r.leaks) {
			fprintf(stderr, "%s after %s: %llu corruptions, %llu leaks\n", layers[i],
				when, (unsigned long long)r.corruptions,
				(unsigned long long)r.leaks);
			test_failures++;
		}
	}
}

static void drop_layers(int from, int to)
{
	/* Layers [from, to) left the chain. */
	for (int i = from; i < to; i++)
		unlink(lp(i));
	memmove(layers[from], layers[to], sizeof(layers[0]) * (size_t)(nlayers - to));
	memmove(&layer_cs[from], &layer_cs[to], sizeof(layer_cs[0]) * (size_t)(nlayers - to));
	nlayers -= to - from;
}

int main(void)
{
	const char *seed = getenv("CAIRN_SEED");
	rng_state = seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
	fprintf(stderr, "CAIRN_SEED=%llu\n", (unsigned long long)rng_state);
	scratch_init();
	model = calloc(1, SIZE);
	buf = malloc(SIZE);
	new_layer(rnd_below(2) == 0);
	new_layer(false);
	int batches = 40;
	for (int b = 0; b < batches && !test_failures; b++) {
		struct block_dev *bd;
		CHECK_OK(block_open(lp(nlayers - 1), NULL, 0, &bd));
		if (!bd)
			break;
		random_ops(bd, 100);
		block_close(bd);
		verify("writes");
		unsigned what = (unsigned)rnd_below(6);
		const char *name = "nothing";
		if ((what == 0 || what == 1) && nlayers < MAX_LAYERS) {
			name = "snapshot";
			new_layer(false);
		} else if (what == 2 && nlayers > 2) {
			name = "commit into the backing file";
			CHECK_OK(chain_commit(lp(nlayers - 1), NULL, 0, NULL));
		} else if (what == 3 && nlayers > 3) {
			name = "commit down to a deeper base";
			int base = (int)rnd_below((uint64_t)nlayers - 2);
			CHECK_OK(chain_commit(lp(nlayers - 1), lp(base), 0, NULL));
			drop_layers(base + 1, nlayers - 1);
		} else if (what == 4 && nlayers > 2) {
			int base = (int)rnd_below((uint64_t)nlayers - 1) - 1; /* -1 = flatten */
			name = base < 0 ? "stream (flatten)" : "stream";
			CHECK_OK(chain_stream(lp(nlayers - 1), base < 0 ? NULL : layers[base], NULL,
					      NULL));
			drop_layers(base + 1, nlayers - 1);
		} else if (what == 5 && nlayers > 2) {
			name = "safe rebase onto the grandparent";
			CHECK_OK(
			    chain_rebase(lp(nlayers - 1), layers[nlayers - 3], NULL, false, NULL));
			drop_layers(nlayers - 2, nlayers - 1);
		}
		verify(name);
		if (test_failures)
			fprintf(stderr, "failed in batch %d after %s\n", b, name);
	}
	free(model);
	free(buf);
	scratch_cleanup();
	TEST_DONE();
}
