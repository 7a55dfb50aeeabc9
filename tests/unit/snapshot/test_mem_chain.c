/* Memory layers and chains: a layer holds only changed pages (zero pages
 * noted, not stored), a chain maps and loads as the RAM it stands for,
 * a replaced or missing parent is refused by name, absorbing a parent
 * keeps the child's RAM and id, damaged layers are caught. */
#include "snapshot/mem_chain.h"
#include "snapshot/mem_image.h"
#include "test.h"
#include "util/endian.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define PAGE MEM_IMAGE_PAGE_SIZE
#define CHUNK MEM_IMAGE_CHUNK_SIZE
#define SIZE (6 * CHUNK + 5 * PAGE)
#define PAGES (SIZE / PAGE)
#define NSNAP 6

static char dir[] = "/tmp/cairn-test-chain-XXXXXX";

static int msg_has(const char *s)
{
	if (strstr(err_msg(), s))
		return 1;
	fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err_msg(), s);
	return 0;
}

static uint8_t *ram_alloc(void)
{
	void *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	return p;
}

static uint64_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 11;
}

static void img_path(char *out, int i)
{
	snprintf(out, 300, "%s/s%d/memory.img", dir, i);
}

/* RAM as a snapshot sequence leaves it: S0 full, then each Si changes
 * some scattered pages (some to zero), and CHANGED marks them. */
static void mutate(uint8_t *ram, uint64_t *changed, uint64_t seed)
{
	uint64_t s = seed;
	for (int k = 0; k < 40; k++) {
		uint64_t pg = rnd(&s) % PAGES;
		if (k % 7 == 0)
			memset(ram + pg * PAGE, 0, PAGE);
		else
			for (int b = 0; b < 8; b++)
				ram[pg * PAGE + rnd(&s) % PAGE] = (uint8_t)(rnd(&s) | 1);
		changed[pg / 64] |= (uint64_t)1 << (pg % 64);
	}
	/* a run long enough to be mapped, not read in (mem_chain_map) */
	uint64_t at = 2 * CHUNK / PAGE + (seed % 5) * 7;
	for (uint64_t pg = at; pg < at + 40; pg++) {
		memset(ram + pg * PAGE, (int)(seed & 0x3f) + 7, PAGE);
		ram[pg * PAGE + seed % PAGE] = (uint8_t)pg;
		changed[pg / 64] |= (uint64_t)1 << (pg % 64);
	}
	/* a run of pages across a chunk boundary */
	for (uint64_t pg = CHUNK / PAGE - 2; pg < CHUNK / PAGE + 3; pg++) {
		memset(ram + pg * PAGE, (int)(seed & 0x7f) + 1, PAGE);
		changed[pg / 64] |= (uint64_t)1 << (pg % 64);
	}
}

static void check_chain_is(int i, const uint8_t *want)
{
	char p[300];
	img_path(p, i);
	struct mem_chain *c;
	CHECK_EQ(mem_chain_open(p, SIZE, &c), 0);
	CHECK_EQ(mem_chain_length(c), (unsigned)i + 1);
	CHECK_EQ(mem_chain_verify(c, NULL, NULL), 0);
	void *m = NULL;
	CHECK_EQ(mem_chain_map(c, NULL, 0, &m), 0);
	CHECK(m && memcmp(m, want, SIZE) == 0);
	if (m)
		munmap(m, SIZE);
	/* over an existing mapping, as a revert does */
	uint8_t *at = ram_alloc();
	memset(at, 0x55, SIZE);
	CHECK_EQ(mem_chain_map(c, at, 0, &m), 0);
	CHECK(m == at && memcmp(at, want, SIZE) == 0);
	munmap(at, SIZE);
	uint8_t *r = ram_alloc();
	CHECK_EQ(mem_chain_load(c, r), 0);
	CHECK(memcmp(r, want, SIZE) == 0);
	munmap(r, SIZE);
	mem_chain_close(c);
}

/* Rewrite the packed layer P as cairn wrote layers before version 3: its
 * data pages at their RAM offsets in a sparse file, the trailer at SIZE
 * with version 2 and no locator. */
static void to_version2(const char *p)
{
	int fd = open(p, O_RDONLY);
	struct stat st;
	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	uint64_t len = (uint64_t)st.st_size;
	uint8_t *f = malloc(len);
	CHECK(f && pread(fd, f, len, 0) == (ssize_t)len);
	close(fd);
	CHECK(memcmp(f + len - 16, "CAIRNPK3", 8) == 0);
	uint64_t at = get_le64(f + len - 24), words = (PAGES + 63) / 64;
	uint8_t *t = f + at;
	CHECK_EQ(get_le32(t + 8), 3u);
	uint64_t dmap = 128 + ((get_le32(t + 84) + 7) & ~7u), k = 0;
	char tmp[320];
	snprintf(tmp, sizeof(tmp), "%s.v2", p);
	int o = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(o >= 0 && ftruncate(o, SIZE) == 0);
	for (uint64_t w = 0; w < words; w++)
		for (uint64_t b = 0; b < 64; b++)
			if ((get_le64(t + dmap + 8 * w) >> b) & 1)
				CHECK(pwrite(o, f + PAGE * k++, PAGE, (off_t)((64 * w + b) * PAGE)) ==
				      (ssize_t)PAGE);
	CHECK_EQ(k * PAGE, at);
	uint64_t tlen = len - at - 16; /* without the locator */
	memmove(t + tlen - 8, t + tlen + 8, 8);
	put_le32(t + 8, 2);
	put_le32(t + 104, 0); /* the lineage number: version 3 only */
	put_le64(t + tlen - 8, XXH3_64bits(t, tlen - 8));
	CHECK(pwrite(o, t, tlen, SIZE) == (ssize_t)tlen);
	close(o);
	CHECK_EQ(rename(tmp, p), 0);
	free(f);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	uint8_t *ram = ram_alloc(), *want[NSNAP];
	uint64_t s = 7;
	for (uint64_t i = 0; i < SIZE; i += 8) {
		uint64_t v = (i / PAGE) % 5 == 0 ? 0 : rnd(&s) | 1;
		memcpy(ram + i, &v, 8);
	}
	struct mem_image_info info[NSNAP];
	uint64_t words = (PAGES + 63) / 64, changed[(PAGES + 63) / 64];
	for (int i = 0; i < NSNAP; i++) {
		char d[300], p[300], ref[64];
		snprintf(d, sizeof(d), "%s/s%d", dir, i);
		CHECK_EQ(mkdir(d, 0755), 0);
		img_path(p, i);
		memset(changed, 0, sizeof(changed));
		if (i)
			mutate(ram, changed, 100 + i);
		snprintf(ref, sizeof(ref), "../s%d/memory.img", i - 1);
		struct mem_image_layer_spec spec = {changed, i ? info[i - 1].id : (struct mem_id){{0}},
						    ref, i ? info[i - 1].depth : 0, (uint32_t)i};
		struct mem_image_source src = mem_image_ram_source(ram);
		CHECK_EQ(mem_image_save_as(p, &src, SIZE, i ? &spec : NULL, NULL, NULL, NULL, &info[i]),
			 0);
		CHECK_EQ(info[i].layer, i > 0);
		CHECK_EQ(info[i].depth, (uint32_t)i);
		CHECK_EQ(info[i].lineage, (uint32_t)i);
		want[i] = ram_alloc();
		memcpy(want[i], ram, SIZE);
		if (i) {
			/* a layer takes about its changed data pages on disk */
			uint64_t held = 0;
			for (uint64_t w = 0; w < words; w++)
				held += (uint64_t)__builtin_popcountll(changed[w]);
			CHECK_EQ(info[i].data_pages + info[i].zero_pages, held);
			struct stat st;
			CHECK_EQ(stat(p, &st), 0);
			CHECK((uint64_t)st.st_blocks * 512 <= info[i].data_pages * PAGE + 256 * 1024);
			/* packed: its data pages and a trailer, not RAM-sized with holes */
			CHECK_EQ((uint64_t)st.st_size, info[i].file_size);
			CHECK((uint64_t)st.st_size < info[i].data_pages * PAGE + 8 * 1024);
			CHECK(info[i].data_pages > 0);
			struct mem_image_info back;
			CHECK_EQ(mem_image_info(p, SIZE, &back), 0);
			CHECK(memcmp(&back.id, &info[i].id, sizeof(back.id)) == 0);
			CHECK(memcmp(&back.parent, &info[i - 1].id, sizeof(back.id)) == 0);
			/* a layer alone is not RAM */
			void *m;
			CHECK_EQ(mem_image_map(p, SIZE, &m), -EINVAL);
			CHECK(msg_has("read it as a chain"));
		}
	}
	for (int i = 0; i < NSNAP; i++)
		check_chain_is(i, want[i]);
	/* Layers cairn wrote before version 3 (sparse, at their RAM offsets)
	 * still read, beside packed ones: s2 and s4 become such layers. */
	for (int i = 2; i < NSNAP; i += 2) {
		char p[300];
		img_path(p, i);
		to_version2(p);
		struct mem_image_info back;
		CHECK_EQ(mem_image_info(p, SIZE, &back), 0);
		CHECK(back.layer && back.file_size > SIZE && back.data_pages == info[i].data_pages);
		CHECK(memcmp(&back.id, &info[i].id, sizeof(back.id)) == 0);
	}
	for (int i = 0; i < NSNAP; i++)
		check_chain_is(i, want[i]);

	/* A damaged layer: its chunk is named, and where its pages lie. */
	char p3[300], p2[300], p1[300], saved[400];
	img_path(p3, 3);
	img_path(p2, 2);
	img_path(p1, 1);
	{
		FILE *f = fopen(p3, "r+b");
		/* the first packed page: chunk 0's (the run across the first
		 * chunk boundary has data in layer 3) */
		fseek(f, 17, SEEK_SET);
		int ch = fgetc(f);
		fseek(f, 17, SEEK_SET);
		fputc(ch ^ 0x40, f);
		fclose(f);
		struct mem_chain *c;
		CHECK_EQ(mem_chain_open(p3, SIZE, &c), 0);
		CHECK_EQ(mem_chain_verify(c, NULL, NULL), -EUCLEAN);
		CHECK(msg_has("s3/memory.img: chunk 0 (offset 0; its ") &&
		      msg_has("data pages packed at file offset 0) checksum mismatch"));
		uint8_t *r = ram_alloc();
		CHECK_EQ(mem_chain_load(c, r), -EUCLEAN);
		CHECK(msg_has("s3/memory.img: chunk 0"));
		void *m = NULL;
		CHECK_EQ(mem_chain_map(c, NULL, 0, &m), -EUCLEAN); /* never RAM from unverified bytes */
		CHECK(msg_has("s3/memory.img: chunk 0"));
		CHECK_EQ(mem_chain_map(c, r, 0, &m), -EUCLEAN);
		munmap(r, SIZE);
		mem_chain_close(c);
		/* ... and absorbing it into its child is refused the same way */
		char p4[300];
		img_path(p4, 4);
		CHECK_EQ(mem_chain_absorb_parent(p4, SIZE, NULL), -EUCLEAN);
		CHECK(msg_has("s3/memory.img: chunk 0"));
		f = fopen(p3, "r+b");
		fseek(f, 17, SEEK_SET);
		fputc(ch, f);
		fclose(f);
		/* A cut layer is refused by name. */
		struct stat st;
		CHECK_EQ(stat(p3, &st), 0);
		f = fopen(p3, "r+b");
		fseek(f, (long)st.st_size - 1, SEEK_SET);
		int last = fgetc(f);
		fclose(f);
		CHECK_EQ(truncate(p3, st.st_size - 1), 0);
		CHECK_EQ(mem_chain_open(p3, SIZE, &c), -EUCLEAN);
		CHECK(msg_has("s3/memory.img: truncated"));
		f = fopen(p3, "ab");
		fputc(last, f);
		fclose(f);
	}

	/* The full image checked beside the layers' copying: a damaged chunk
	 * of it fails the map, named; an intact chain maps as without. */
	{
		char p0[300];
		img_path(p0, 0);
		struct mem_chain *c;
		CHECK_EQ(mem_chain_open(p3, SIZE, &c), 0);
		void *m = NULL;
		CHECK_EQ(mem_chain_map(c, NULL, MEM_CHAIN_VERIFY_BASE, &m), 0);
		CHECK(m && memcmp(m, want[3], SIZE) == 0);
		munmap(m, SIZE);
		FILE *f = fopen(p0, "r+b");
		fseek(f, 5000, SEEK_SET);
		int ch = fgetc(f);
		fseek(f, 5000, SEEK_SET);
		fputc(ch ^ 0x01, f);
		fclose(f);
		m = NULL;
		CHECK_EQ(mem_chain_map(c, NULL, MEM_CHAIN_VERIFY_BASE, &m), -EUCLEAN);
		CHECK(!m && msg_has("s0/memory.img: chunk 0"));
		uint8_t *r = ram_alloc();
		CHECK_EQ(mem_chain_map(c, r, MEM_CHAIN_VERIFY_BASE, &m), -EUCLEAN);
		munmap(r, SIZE);
		f = fopen(p0, "r+b");
		fseek(f, 5000, SEEK_SET);
		fputc(ch, f);
		fclose(f);
		mem_chain_close(c);
	}

	/* A missing parent, then a replaced one, are refused by name. */
	snprintf(saved, sizeof(saved), "%s/saved.img", dir);
	CHECK_EQ(rename(p2, saved), 0);
	struct mem_chain *c;
	CHECK_EQ(mem_chain_open(p3, SIZE, &c), -ENOENT);
	CHECK(msg_has("s3/memory.img: its memory parent") && msg_has("s2/memory.img"));
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "cp %s %s", p1, p2);
	CHECK_EQ(system(cmd), 0);
	CHECK_EQ(mem_chain_open(p3, SIZE, &c), -ESTALE);
	CHECK(msg_has("the parent was replaced") && msg_has("s2/memory.img"));
	CHECK_EQ(rename(saved, p2), 0);

	/* Deleting s2: s3 absorbs it and still stands for the same RAM and
	 * id, now on s1; s4 and s5 still open (by id, through s3). */
	struct mem_image_info ab;
	CHECK_EQ(mem_chain_absorb_parent(p3, SIZE, &ab), 0);
	CHECK(memcmp(&ab.id, &info[3].id, sizeof(ab.id)) == 0);
	CHECK(memcmp(&ab.parent, &info[1].id, sizeof(ab.id)) == 0);
	CHECK_EQ(unlink(p2), 0);
	for (int i = 3; i < NSNAP; i++) {
		char p[300];
		img_path(p, i);
		CHECK_EQ(mem_chain_open(p, SIZE, &c), 0);
		CHECK_EQ(mem_chain_length(c), (unsigned)i);
		CHECK_EQ(mem_chain_verify(c, NULL, NULL), 0);
		void *m = NULL;
		CHECK_EQ(mem_chain_map(c, NULL, 0, &m), 0);
		CHECK(m && memcmp(m, want[i], SIZE) == 0);
		munmap(m, SIZE);
		mem_chain_close(c);
	}
	/* Deleting the full image s0: s1 becomes full. */
	CHECK_EQ(mem_chain_absorb_parent(p1, SIZE, &ab), 0);
	CHECK(!ab.layer);
	CHECK(memcmp(&ab.id, &info[1].id, sizeof(ab.id)) == 0);
	char p0[300];
	img_path(p0, 0);
	CHECK_EQ(unlink(p0), 0);
	for (int i = 1; i < NSNAP; i += 4) { /* s1 alone; s5 on s4, s3, s1 */
		char p[300];
		img_path(p, i);
		CHECK_EQ(mem_chain_open(p, SIZE, &c), 0);
		CHECK_EQ(mem_chain_length(c), i == 1 ? 1u : 4u);
		CHECK_EQ(mem_chain_verify(c, NULL, NULL), 0);
		uint8_t *r = ram_alloc();
		CHECK_EQ(mem_chain_load(c, r), 0);
		CHECK(memcmp(r, want[i], SIZE) == 0);
		munmap(r, SIZE);
		mem_chain_close(c);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	TEST_DONE();
}
