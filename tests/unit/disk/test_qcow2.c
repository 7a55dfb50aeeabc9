/* Unit tests of the qcow2 format code: create, read/write, copy-on-write
 * through backing chains, zeroes and discard, refcount table growth, the
 * check, and refusal of malformed images. */
#include "../test.h"
#include "common.h"
#include "disk/chain.h"
#include "disk/qcow2.h"
#include "disk/qcow2_check.h"

#include <errno.h>
#include <fcntl.h>

static struct block_dev *open_rw(const char *path)
{
	struct block_dev *bd = NULL;
	CHECK_OK(block_open(path, NULL, 0, &bd));
	return bd;
}

static void expect_clean(const char *path)
{
	struct qcow2_check_result r;
	CHECK_OK(qcow2_check(path, 0, &r, stderr));
	CHECK_EQ(r.corruptions, 0);
	CHECK_EQ(r.leaks, 0);
	CHECK_EQ(r.check_errors, 0);
}

static void test_create_rw(uint32_t cs)
{
	const char *p = scratch("a.qcow2");
	struct qcow2_create_opts o = {.size = 8 << 20, .cluster_size = cs};
	CHECK_OK(qcow2_create(p, &o));
	struct block_dev *bd = open_rw(p);
	if (!bd)
		return;
	CHECK(!strcmp(bd->format, "qcow2"));
	CHECK_EQ(bd->size, 8 << 20);
	uint8_t *b = malloc(1 << 20);
	memset(b, 0x5a, 300000);
	CHECK_OK(block_write(bd, b, 12345, 300000));
	memset(b, 0x77, 4096);
	CHECK_OK(block_write(bd, b, (8 << 20) - 4096, 4096));
	CHECK_OK(block_flush(bd));
	block_close(bd);
	expect_clean(p);
	CHECK_OK(block_open(p, NULL, BLOCK_RDONLY, &bd));
	memset(b, 1, 1 << 20);
	CHECK_OK(block_read(bd, b, 0, 1 << 20));
	CHECK(buf_is(b, 12345, 0));
	CHECK(buf_is(b + 12345, 300000, 0x5a));
	CHECK(buf_is(b + 312345, (1 << 20) - 312345, 0));
	CHECK_OK(block_read(bd, b, (8 << 20) - 8192, 8192));
	CHECK(buf_is(b, 4096, 0) && buf_is(b + 4096, 4096, 0x77));
	/* Past the end and writes to read-only are refused. */
	CHECK(block_read(bd, b, 8 << 20, 1) == -EINVAL);
	CHECK(block_write(bd, b, 0, 1) == -EROFS);
	block_close(bd);
	free(b);
}

static void test_chain_cow(void)
{
	const char *base = scratch("base.qcow2"), *top = scratch("top.qcow2");
	struct qcow2_create_opts o = {.size = 4 << 20, .cluster_size = 65536};
	CHECK_OK(qcow2_create(base, &o));
	struct block_dev *bd = open_rw(base);
	uint8_t *b = malloc(4 << 20);
	memset(b, 0x11, 4 << 20);
	CHECK_OK(block_write(bd, b, 0, 4 << 20));
	block_close(bd);
	/* Relative backing name, resolved against the overlay's directory. */
	CHECK_OK(qcow2_create_overlay(top, "base.qcow2", NULL));
	bd = open_rw(top);
	if (!bd)
		return;
	CHECK_EQ(bd->size, 4 << 20);
	memset(b, 0x22, 100);
	CHECK_OK(block_write(bd, b, 70000, 100)); /* partial cluster: COW */
	CHECK_OK(block_write_zeroes(bd, 65536 * 3, 65536));
	CHECK_OK(block_discard(bd, 65536 * 5, 65536 * 2));
	CHECK_OK(block_write_zeroes(bd, 65536 * 8 + 10, 20)); /* partial: real zeroes */
	CHECK_OK(block_read(bd, b, 0, 4 << 20));
	CHECK(buf_is(b, 70000, 0x11));
	CHECK(buf_is(b + 70000, 100, 0x22));
	CHECK(buf_is(b + 70100, 65536 * 3 - 70100, 0x11));
	CHECK(buf_is(b + 65536 * 3, 65536, 0));
	CHECK(buf_is(b + 65536 * 4, 65536, 0x11));
	CHECK(buf_is(b + 65536 * 5, 65536 * 2, 0));
	CHECK(buf_is(b + 65536 * 8, 10, 0x11));
	CHECK(buf_is(b + 65536 * 8 + 10, 20, 0));
	CHECK(buf_is(b + 65536 * 8 + 30, 100, 0x11));
	block_close(bd);
	expect_clean(top);
	expect_clean(base);

	/* Map: the top holds cluster 1; the base the rest of the first MiB. */
	CHECK_OK(block_open(top, NULL, BLOCK_RDONLY, &bd));
	struct chain_extent e;
	CHECK_OK(chain_map_extent(bd, 0, &e));
	CHECK_EQ(e.depth, 1);
	CHECK_EQ(e.length, 65536);
	CHECK_OK(chain_map_extent(bd, 65536, &e));
	CHECK_EQ(e.depth, 0);
	CHECK(e.data);
	block_close(bd);

	/* Commit into the base: the base now reads as the top did. */
	CHECK_OK(chain_commit(top, NULL, 0, NULL));
	bool same;
	uint64_t diff;
	CHECK_OK(chain_compare(top, NULL, base, NULL, 0, &same, &diff));
	CHECK(same);
	CHECK_OK(block_open(base, NULL, BLOCK_RDONLY, &bd));
	CHECK_OK(block_read(bd, b, 0, 4 << 20));
	CHECK(buf_is(b + 70000, 100, 0x22));
	CHECK(buf_is(b + 65536 * 3, 65536, 0));
	block_close(bd);
	expect_clean(base);
	expect_clean(top);
	free(b);
}

static void test_refcount_growth(void)
{
	/* 512-byte clusters: one refcount block covers 128 KiB, the first
	 * table 64 blocks; 8 MiB of data needs the table to grow. */
	const char *p = scratch("small.qcow2");
	struct qcow2_create_opts o = {.size = 16 << 20, .cluster_size = 512};
	CHECK_OK(qcow2_create(p, &o));
	struct block_dev *bd = open_rw(p);
	if (!bd)
		return;
	uint8_t *b = malloc(1 << 20);
	for (int i = 0; i < 12; i++) {
		memset(b, i + 1, 1 << 20);
		CHECK_OK(block_write(bd, b, (uint64_t)i << 20, 1 << 20));
	}
	CHECK_OK(block_flush(bd));
	block_close(bd);
	expect_clean(p);
	CHECK_OK(block_open(p, NULL, BLOCK_RDONLY, &bd));
	for (int i = 0; i < 12; i++) {
		CHECK_OK(block_read(bd, b, (uint64_t)i << 20, 1 << 20));
		CHECK(buf_is(b, 1 << 20, (uint8_t)(i + 1)));
	}
	block_close(bd);
	free(b);
}

static void test_stream_rebase(void)
{
	const char *a = scratch("s0.qcow2"), *m = scratch("s1.qcow2"), *t = scratch("s2.qcow2");
	struct qcow2_create_opts o = {.size = 1 << 20, .cluster_size = 4096};
	CHECK_OK(qcow2_create(a, &o));
	struct block_dev *bd = open_rw(a);
	uint8_t b[8192];
	memset(b, 0xa0, sizeof(b));
	CHECK_OK(block_write(bd, b, 0, 8192));
	block_close(bd);
	CHECK_OK(qcow2_create_overlay(m, "s0.qcow2", "qcow2"));
	bd = open_rw(m);
	memset(b, 0xb0, 4096);
	CHECK_OK(block_write(bd, b, 4096, 4096));
	block_close(bd);
	CHECK_OK(qcow2_create_overlay(t, "s1.qcow2", "qcow2"));
	/* Stream s1 into s2 keeping s0: s2 then backs on s0 directly. */
	CHECK_OK(chain_stream(t, "s0.qcow2", NULL, NULL));
	CHECK_OK(block_open(t, NULL, BLOCK_RDONLY, &bd));
	struct qcow2_info qi;
	CHECK_OK(qcow2_get_info(bd, &qi));
	CHECK(qi.backing && !strcmp(qi.backing, "s0.qcow2"));
	CHECK_OK(block_read(bd, b, 0, 8192));
	CHECK(buf_is(b, 4096, 0xa0) && buf_is(b + 4096, 4096, 0xb0));
	block_close(bd);
	/* Safe rebase onto nothing: s2 becomes standalone with the same data. */
	CHECK_OK(chain_rebase(t, NULL, NULL, false, NULL));
	CHECK_OK(block_open(t, NULL, BLOCK_RDONLY, &bd));
	CHECK_OK(qcow2_get_info(bd, &qi));
	CHECK(qi.backing == NULL);
	CHECK_OK(block_read(bd, b, 0, 8192));
	CHECK(buf_is(b, 4096, 0xa0) && buf_is(b + 4096, 4096, 0xb0));
	block_close(bd);
	expect_clean(t);
}

static void write_file(const char *p, const void *d, size_t n)
{
	FILE *f = fopen(p, "w");
	if (!f || fwrite(d, 1, n, f) != n)
		test_failures++;
	if (f)
		fclose(f);
}

static void patch_be(const char *p, long off, uint64_t v, int bytes)
{
	int fd = open(p, O_RDWR);
	uint8_t b[8];
	for (int i = bytes - 1; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
	if (fd < 0 || pwrite(fd, b, (size_t)bytes, off) != bytes)
		test_failures++;
	if (fd >= 0)
		close(fd);
}

static void expect_open_fails(const char *p, const char *what)
{
	struct block_dev *bd = NULL;
	err_clear();
	int r = block_open(p, NULL, BLOCK_RDONLY, &bd);
	if (r == 0) {
		fprintf(stderr, "malformed image (%s) was accepted\n", what);
		test_failures++;
		block_close(bd);
		return;
	}
	CHECK(strstr(err_msg(), p) != NULL); /* the message names the file */
}

static void test_malformed(void)
{
	const char *p = scratch("bad.qcow2");
	struct qcow2_create_opts o = {.size = 1 << 20, .cluster_size = 65536};
	struct {
		long off;
		uint64_t v;
		int bytes;
		const char *what;
	} cases[] = {
	    {4, 4, 4, "version 4"},
	    {20, 40, 4, "cluster_bits 40"},
	    {20, 8, 4, "cluster_bits 8"},
	    {24, ~0ull, 8, "absurd size"},
	    {36, 1u << 30, 4, "huge L1"},
	    {40, 12345, 8, "misaligned L1"},
	    {40, 1ull << 50, 8, "L1 outside the file"},
	    {48, 1ull << 50, 8, "refcount table outside"},
	    {56, 1u << 30, 4, "huge refcount table"},
	    {72, 1ull << 40, 8, "unknown incompatible bit"},
	    {72, 1ull << 2, 8, "external data file"},
	    {96, 7, 4, "refcount order 7"},
	    {100, 100, 4, "header length 100"},
	    {32, 1, 4, "encrypted"},
	    {8, 4000, 8, "backing name off the cluster"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_OK(qcow2_create(p, &o));
		patch_be(p, cases[i].off, cases[i].v, cases[i].bytes);
		if (cases[i].off == 8)
			patch_be(p, 16, 200000, 4);
		expect_open_fails(p, cases[i].what);
	}
	/* Truncated files. */
	write_file(p, "QFI\xfb\0\0\0\3", 8);
	expect_open_fails(p, "truncated header");
	write_file(p, "", 0);
	struct block_dev *bd;
	CHECK_OK(block_open(p, NULL, BLOCK_RDONLY, &bd)); /* empty = raw */
	if (bd)
		block_close(bd);

	/* An L2 entry pointing outside the file: reads fail, naming it. */
	CHECK_OK(qcow2_create(p, &o));
	bd = open_rw(p);
	uint8_t b[512] = {1};
	CHECK_OK(block_write(bd, b, 0, 512));
	block_close(bd);
	/* Layout: header, rt, rb, L1 at 0x30000, first L2 at 0x40000. */
	patch_be(p, 0x40000, (1ull << 63) | (1ull << 40), 8);
	CHECK_OK(block_open(p, NULL, BLOCK_RDONLY, &bd));
	if (bd) {
		err_clear();
		CHECK(block_read(bd, b, 0, 512) < 0);
		CHECK(strstr(err_msg(), "outside the file") != NULL);
		block_close(bd);
	}
	struct qcow2_check_result r;
	CHECK_OK(qcow2_check(p, 0, &r, NULL));
	CHECK(r.corruptions > 0);

	/* Backing loop: a -> b -> a. */
	const char *la = scratch("la.qcow2"), *lb = scratch("lb.qcow2");
	CHECK_OK(qcow2_create(la, &o));
	CHECK_OK(qcow2_create_overlay(lb, "la.qcow2", "qcow2"));
	CHECK_OK(qcow2_set_backing(la, "lb.qcow2", "qcow2", false));
	err_clear();
	CHECK(block_open(la, NULL, BLOCK_RDONLY, &bd) == -ELOOP);
	CHECK(strstr(err_msg(), "loop") != NULL);
	/* Self loop. */
	CHECK_OK(qcow2_set_backing(la, "la.qcow2", "qcow2", false));
	CHECK(block_open(la, NULL, BLOCK_RDONLY, &bd) == -ELOOP);
}

static void test_refcount_overflow(void)
{
	/* A refcount of 0xffff on a cluster, then a leak repair. */
	const char *p = scratch("ovf.qcow2");
	struct qcow2_create_opts o = {.size = 1 << 20, .cluster_size = 65536};
	CHECK_OK(qcow2_create(p, &o));
	/* refcount block at cluster 2; entry for cluster 0 (the header). */
	patch_be(p, 0x20000, 0xffff, 2);
	struct qcow2_check_result r;
	CHECK_OK(qcow2_check(p, 0, &r, NULL));
	CHECK_EQ(r.leaks, 1);
	CHECK_OK(qcow2_check(p, QCOW2_CHECK_REPAIR_LEAKS, &r, NULL));
	CHECK_EQ(r.leaks, 0);
	CHECK_EQ(r.leaks_fixed, 1);
	expect_clean(p);
}

static void test_deep_chain(void)
{
	/* 40 layers, each writes one cluster; every read sees the top-most. */
	char name[64], prev[64];
	struct qcow2_create_opts o = {.size = 1 << 20, .cluster_size = 4096};
	CHECK_OK(qcow2_create(scratch("d0.qcow2"), &o));
	for (int i = 1; i <= 40; i++) {
		snprintf(prev, sizeof(prev), "d%d.qcow2", i - 1);
		snprintf(name, sizeof(name), "d%d.qcow2", i);
		CHECK_OK(qcow2_create_overlay(scratch(name), prev, "qcow2"));
		struct block_dev *bd = open_rw(scratch(name));
		if (!bd)
			return;
		uint8_t b[4096];
		memset(b, i, sizeof(b));
		CHECK_OK(block_write(bd, b, (uint64_t)(i % 10) * 4096, 4096));
		block_close(bd);
	}
	struct block_dev *bd;
	CHECK_OK(block_open(scratch("d40.qcow2"), NULL, BLOCK_RDONLY, &bd));
	struct qcow2_info qi;
	CHECK_OK(qcow2_get_info(bd, &qi));
	CHECK_EQ(qi.chain_depth, 40);
	uint8_t b[40960];
	CHECK_OK(block_read(bd, b, 0, sizeof(b)));
	for (int c = 0; c < 10; c++) {
		int want = 40 - ((40 - c) % 10); /* highest i <= 40 with i % 10 == c */
		if (c == 0)
			want = 40;
		CHECK_EQ(b[c * 4096], want);
	}
	block_close(bd);
}

int main(void)
{
	scratch_init();
	test_create_rw(65536);
	test_create_rw(512);
	test_create_rw(2 << 20);
	test_chain_cow();
	test_refcount_growth();
	test_stream_rebase();
	test_malformed();
	test_refcount_overflow();
	test_deep_chain();
	scratch_cleanup();
	TEST_DONE();
}
