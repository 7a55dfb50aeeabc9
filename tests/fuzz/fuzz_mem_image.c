/* libFuzzer harness for the memory image reader (src/snapshot/mem_image.c):
 * trailers of every version, the packed layer's locator, page maps and
 * packed offsets, and the reads a restore makes (verify, mem_layer_apply,
 * mem_layer_chunk_into).
 *
 * The first input byte picks the mode: bits 1-2 the RAM size the image is
 * opened for (8 pages, 2 chunks and 8 pages, or 5 chunks; the image files
 * of the first two fit the input), bit 0 set: the harness first recomputes
 * the chunk checksums of a packed layer's pages and the trailer checksum,
 * so that mutations reach the checks behind them.  The rest is the file.
 * CAIRN_FUZZ_SEEDS=DIR writes seeds (images cairn saved) and exits. */
#include "snapshot/mem_image.h"
#include "util/endian.h"
#include "util/err.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#define PAGE MEM_IMAGE_PAGE_SIZE
#define CHUNK MEM_IMAGE_CHUNK_SIZE

static const uint64_t sizes[4] = {8 * PAGE, 2 * CHUNK + 8 * PAGE, 5 * CHUNK, 8 * PAGE};
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t words_of(uint64_t size)
{
	return (size / PAGE + 63) / 64;
}

/* A packed layer's chunk checksums and its trailer checksum, recomputed
 * where the fields they follow from lie within the file. */
static void reseal_packed(uint8_t *f, size_t len, uint64_t size)
{
	uint64_t at = get_le64(f + len - 24);
	if (at > len - 24 || len - at < 128)
		return;
	uint64_t ref = get_le32(f + at + 84), words = words_of(size);
	uint64_t n = (size + CHUNK - 1) / CHUNK;
	uint64_t dmap = at + 128 + ((ref + 7) & ~7ull), hashes = dmap + 16 * words;
	if (ref > 4096 || hashes + 8 * n > len - 24)
		return;
	uint64_t off = 0;
	for (uint64_t c = 0; c < n; c++) {
		uint64_t pages = 0;
		for (uint64_t w = c * 8; w < (c + 1) * 8 && w < words; w++)
			pages += (uint64_t)__builtin_popcountll(get_le64(f + dmap + 8 * w));
		uint64_t bytes = pages * PAGE;
		if (off + bytes <= at)
			put_le64(f + hashes + 8 * c, bytes ? XXH3_64bits(f + off, bytes) : 0);
		off += bytes;
	}
	put_le64(f + len - 8, XXH3_64bits(f + at, len - 8 - at));
}

static void reseal(uint8_t *f, size_t len, uint64_t size)
{
	if (len >= 24 + 128 && memcmp(f + len - 16, "CAIRNPK3", 8) == 0)
		reseal_packed(f, len, size);
	else if (len > size + 8)
		put_le64(f + len - 8, XXH3_64bits(f + size, len - 8 - size));
}

static volatile uint64_t sink;

/* Everything a restore reads from an image that opened. */
static void exercise(uint64_t size, const uint8_t *data, size_t len)
{
	struct mem_layer *l;
	if (mem_layer_open(path, size, &l) < 0)
		return;
	const struct mem_image_info *in = mem_layer_info(l);
	uint64_t words = words_of(size), acc = in->data_pages;
	for (uint64_t w = 0; w < words; w++)
		acc += mem_layer_held_word(l, w);
	for (uint64_t p = 0; p < size / PAGE; p++)
		acc += mem_layer_holds_data(l, p);
	mem_layer_verify(l, NULL, NULL);
	uint8_t *ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *owned = calloc(words, 8);
	uint8_t *buf = malloc(CHUNK), *dst = malloc(CHUNK);
	if (ram != MAP_FAILED && owned && buf && dst) {
		mem_layer_apply(l, ram, NULL);
		for (uint64_t w = 0; w < words; w++) /* some of the pages, from the input */
			owned[w] = XXH3_64bits_withSeed(data, len, w);
		mem_layer_apply(l, ram, owned);
		for (uint64_t c = 0; c < in->chunks; c++)
			if (mem_layer_chunk_into(l, c, dst, buf) == 0)
				acc += dst[c % CHUNK];
		acc += ram[size - 1];
	}
	sink = acc;
	free(buf);
	free(dst);
	free(owned);
	if (ram != MAP_FAILED)
		munmap(ram, size);
	mem_layer_close(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint64_t ram = sizes[(data[0] >> 1) & 3];
	size_t len = size - 1;
	uint8_t *f = malloc(len ? len : 1);
	if (!f)
		return 0;
	memcpy(f, data + 1, len);
	if (data[0] & 1)
		reseal(f, len, ram);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		ssize_t w = write(fd, f, len);
		close(fd);
		if (w == (ssize_t)len)
			exercise(ram, data, len);
	}
	err_clear();
	free(f);
	return 0;
}

/* ---- seeds: images as cairn writes them ---- */

static const void *seed_get(void *o, uint64_t c)
{
	return (const uint8_t *)o + c * CHUNK;
}

static void seed_put(void *o, uint64_t c)
{
}

static void seed_write(const char *dir, const char *name, uint8_t mode, const char *img)
{
	char out[512];
	snprintf(out, sizeof(out), "%s/%s", dir, name);
	FILE *in = fopen(img, "rb"), *o = fopen(out, "wb");
	if (!in || !o)
		exit(1);
	fputc(mode, o);
	int ch;
	while ((ch = fgetc(in)) != EOF)
		fputc(ch, o);
	fclose(in);
	if (fclose(o) != 0)
		exit(1);
}

/* A full image and packed layers for the first two sizes. */
static void write_seeds(const char *dir)
{
	char img[64];
	snprintf(img, sizeof(img), "%s.seed", path);
	for (unsigned s = 0; s < 2; s++) {
		uint64_t size = sizes[s], words = words_of(size);
		uint8_t *ram = aligned_alloc(PAGE, size);
		uint64_t *changed = calloc(words, 8);
		if (!ram || !changed)
			exit(1);
		memset(ram, 0, size);
		for (uint64_t p = 0; p < size / PAGE; p += 3) {
			memset(ram + p * PAGE, (int)(p * 7 + 1), PAGE);
			if (p % 2 == 0 || p == size / PAGE - 1)
				changed[p / 64] |= 1ull << (p % 64);
		}
		changed[0] |= 2; /* a zero page held */
		struct mem_image_source src = {seed_get, seed_put, ram};
		struct mem_image_layer_spec spec = {changed, {{1, 2, 3}}, "../p/memory.img", 0, 1};
		char name[32];
		if (s == 0) { /* a full image only at 8 pages: the other would not fit an input */
			if (mem_image_save_as(img, &src, size, NULL, NULL, NULL, NULL, NULL) < 0)
				exit(1);
			seed_write(dir, "full", 0, img);
		}
		if (mem_image_save_as(img, &src, size, &spec, NULL, NULL, NULL, NULL) < 0)
			exit(1);
		snprintf(name, sizeof(name), "layer%u", s);
		seed_write(dir, name, (uint8_t)(s << 1), img);
		snprintf(name, sizeof(name), "layer%u-resealed", s);
		seed_write(dir, name, (uint8_t)(s << 1 | 1), img);
		unlink(img);
		free(ram);
		free(changed);
	}
}

static void remove_image(void)
{
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	snprintf(path, sizeof(path), "/tmp/cairn-fuzz-mem-%d.img", (int)getpid());
	atexit(remove_image);
	const char *seeds = getenv("CAIRN_FUZZ_SEEDS");
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
	return 0;
}
