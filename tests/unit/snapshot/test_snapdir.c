/* The snapshot directory's names and its write-then-commit: overlay and
 * restore-overlay names, finding a restore overlay after a crash (the
 * newest when several are there), and a snapshot that exists only once it
 * is committed. */
#include "snapshot/snapdir.h"
#include "test.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[] = "/tmp/cairn-test-snapdir-XXXXXX";

static void touch(const char *path, size_t bytes)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	char buf[4096];
	memset(buf, 0x5a, sizeof(buf));
	for (size_t done = 0; fd >= 0 && done < bytes; done += sizeof(buf))
		CHECK(write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static void test_names(void)
{
	char p[PATH_MAX];
	CHECK_EQ(
	    snapdir_overlay_path("/b/disks/disk0.qcow2", "/b/snapshots/1a2b3c4d", p, sizeof(p)), 0);
	CHECK(!strcmp(p, "/b/disks/disk0-1a2b3c4d.qcow2"));
	CHECK_EQ(snapdir_overlay_path("disk.img", "snaps/s1", p, sizeof(p)), 0);
	CHECK(!strcmp(p, "./disk.img-s1.qcow2"));
	CHECK_EQ(snapdir_path("/x/s1", SNAPDIR_STATE, p, sizeof(p)), 0);
	CHECK(!strcmp(p, "/x/s1/state.bin"));
	CHECK_EQ(snapdir_path("/x/s1", SNAPDIR_MEMORY, p, sizeof(p)), 0);
	CHECK(!strcmp(p, "/x/s1/memory.img"));

	/* restore overlays: "<stem>-r" + 8 hex digits, in DISK_DIR or beside */
	char a[PATH_MAX], b[PATH_MAX];
	CHECK_EQ(snapdir_restore_overlay_path("/b/disks/l0.qcow2", NULL, a, sizeof(a)), 0);
	CHECK(!strncmp(a, "/b/disks/l0-r", 13) && strlen(a) == 13 + 8 + 6);
	CHECK(!strcmp(a + strlen(a) - 6, ".qcow2"));
	CHECK_EQ(snapdir_restore_overlay_path("/b/disks/l0.qcow2", "/other", b, sizeof(b)), 0);
	CHECK(!strncmp(b, "/other/l0-r", 11));

	/* a layer snapshotted again and again: names stay bounded (a bundle's
	 * running VM failed its 26th snapshot with ENAMETOOLONG), distinct and
	 * the same each time */
	char layer[PATH_MAX], prev[PATH_MAX], snap[64];
	snprintf(layer, sizeof(layer), "/b/disks/disk0.qcow2");
	for (int i = 0; i < 200; i++) {
		snprintf(snap, sizeof(snap), "/b/snapshots/%08x", 0x1a2b0000u + (unsigned)i);
		snprintf(prev, sizeof(prev), "%s", layer);
		CHECK_EQ(snapdir_overlay_path(prev, snap, layer, sizeof(layer)), 0);
		const char *name = strrchr(layer, '/') + 1;
		CHECK(strlen(name) <= 128 + 1 + 8 + 6);
		char tail[80];
		snprintf(tail, sizeof(tail), "-%s.qcow2", snap + strlen("/b/snapshots/"));
		CHECK(!strcmp(name + strlen(name) - strlen(tail), tail));
		CHECK(!strncmp(name, "disk0-", 6));
		CHECK(strcmp(layer, prev));
		CHECK_EQ(snapdir_overlay_path(prev, snap, a, sizeof(a)), 0);
		CHECK(!strcmp(a, layer));
		CHECK_EQ(snapdir_restore_overlay_path(layer, NULL, b, sizeof(b)), 0);
		CHECK(strlen(strrchr(b, '/') + 1) <= 128 + 2 + 8 + 6);
	}
	/* two long layers that differ only past the kept prefix: different names */
	char l1[400], l2[400];
	memset(l1, 'x', 300);
	strcpy(l1 + 300, "-a.qcow2");
	memset(l2, 'x', 300);
	strcpy(l2 + 300, "-b.qcow2");
	CHECK_EQ(snapdir_overlay_path(l1, "s1", a, sizeof(a)), 0);
	CHECK_EQ(snapdir_overlay_path(l2, "s1", b, sizeof(b)), 0);
	CHECK(strcmp(a, b) && strlen(a) == 2 + 128 + 3 + 6);
}

static bool is_path(const char *path, void *opaque)
{
	return !strcmp(path, opaque);
}

static void test_find_restore_overlay(void)
{
	char dir[256], layer[512], p[PATH_MAX], found[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/disks", base);
	CHECK_EQ(mkdir(dir, 0755), 0);
	snprintf(layer, sizeof(layer), "%s/disk0.qcow2", dir);
	CHECK_EQ(snapdir_find_restore_overlay(layer, dir, NULL, NULL, NULL, found, sizeof(found)),
		 -ENOENT);
	/* look-alikes that are not restore overlays of disk0 */
	const char *others[] = {"disk0-s1.qcow2",	  "disk0-r1234567.qcow2",
				"disk0-r123456789.qcow2", "disk0-rXYZ45678.qcow2",
				"disk00-r12345678.qcow2", "disk0-r12345678.qcow2.tmp"};
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, others[i]);
		touch(p, 0);
	}
	CHECK_EQ(snapdir_find_restore_overlay(layer, dir, NULL, NULL, NULL, found, sizeof(found)),
		 -ENOENT);
	char old[PATH_MAX], new[PATH_MAX];
	CHECK_EQ(snapdir_restore_overlay_path(layer, dir, old, sizeof(old)), 0);
	touch(old, 0);
	CHECK_EQ(snapdir_find_restore_overlay(layer, dir, NULL, NULL, NULL, found, sizeof(found)),
		 0);
	CHECK(!strcmp(found, old));
	/* a second one, newer: that is the one an interrupted restore made */
	do
		CHECK_EQ(snapdir_restore_overlay_path(layer, dir, new, sizeof(new)), 0);
	while (!strcmp(new, old));
	usleep(20000);
	touch(new, 0);
	CHECK_EQ(snapdir_find_restore_overlay(layer, dir, NULL, NULL, NULL, found, sizeof(found)),
		 0);
	CHECK(!strcmp(found, new));
	/* one the caller knows as another's (an earlier restore's overlay,
	 * now a snapshot's layer) is passed over, even when it is newest */
	CHECK_EQ(snapdir_find_restore_overlay(layer, dir, NULL, is_path, new, found, sizeof(found)),
		 0);
	CHECK(!strcmp(found, old));
	/* and so is one older than the operation: none is left */
	struct stat st;
	CHECK_EQ(stat(new, &st), 0);
	CHECK_EQ(snapdir_find_restore_overlay(layer, dir, &st.st_mtim, is_path, new, found,
					      sizeof(found)),
		 -ENOENT);
	CHECK_EQ(
	    snapdir_find_restore_overlay(layer, dir, &st.st_mtim, NULL, NULL, found, sizeof(found)),
	    0);
	CHECK(!strcmp(found, new));
}

/* A VM that snapshots and reverts for long: every overlay is named after
 * its layer plus a suffix, and the names must not grow without end (a
 * file name has at most 255 bytes).  The suffixes cairn added are dropped
 * past a length; a restore overlay is still found under its layer. */
static void test_long_lineage(void)
{
	char dir[256], layer[PATH_MAX], next[PATH_MAX], snap[PATH_MAX], found[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/lineage", base);
	CHECK_EQ(mkdir(dir, 0755), 0);
	snprintf(layer, sizeof(layer), "%s/l0123abcd.qcow2", dir);
	size_t longest = 0;
	for (int gen = 0; gen < 100; gen++) {
		if (gen % 3 == 2) {
			CHECK_EQ(snapdir_restore_overlay_path(layer, dir, next, sizeof(next)), 0);
			touch(next, 0);
			CHECK_EQ(snapdir_find_restore_overlay(layer, dir, NULL, NULL, NULL, found,
							      sizeof(found)),
				 0);
			CHECK(!strcmp(found, next));
		} else {
			snprintf(snap, sizeof(snap), "%s/snapshots/%08x", base, 0x10000 + gen);
			CHECK_EQ(snapdir_overlay_path(layer, snap, next, sizeof(next)), 0);
		}
		const char *name = strrchr(next, '/') + 1;
		if (strlen(name) > longest)
			longest = strlen(name);
		CHECK(!strncmp(name, "l0123abcd-", 10));
		snprintf(layer, sizeof(layer), "%s", next);
	}
	CHECK(longest < 128);
	/* names that are not cairn's own keep their length */
	char lng[PATH_MAX];
	snprintf(lng, sizeof(lng), "%s/%0120d.qcow2", dir, 7);
	CHECK_EQ(snapdir_overlay_path(lng, "/s/abcdef01", next, sizeof(next)), 0);
	CHECK(strlen(strrchr(next, '/') + 1) == 120 + 9 + 6);
}

static void test_txn(void)
{
	char dir[256], p[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/s1", base);
	CHECK(!snapdir_is_committed(dir) && !snapdir_is_in_progress(dir));
	uint64_t bytes = 1;
	CHECK_EQ(snapdir_memory_progress(dir, &bytes), -ENOENT);

	/* a leftover DIR.tmp (somebody's, or an old attempt's) is left alone */
	char other[PATH_MAX];
	snprintf(other, sizeof(other), "%s.tmp", dir);
	CHECK_EQ(mkdir(other, 0755), 0);
	snprintf(p, sizeof(p), "%s.tmp/memory.img.tmp", dir);
	touch(p, 1);
	struct snapdir_txn t;
	CHECK_EQ(snapdir_begin(dir, &t), 0);
	CHECK(access(p, F_OK) == 0);
	CHECK(strcmp(t.tmp, other) != 0 && !strncmp(t.tmp, other, strlen(other)));
	CHECK(snapdir_is_in_progress(dir) && !snapdir_is_committed(dir));
	CHECK_EQ(snapdir_txn_path(&t, SNAPDIR_MEMORY, p, sizeof(p)), 0);
	strcat(p, ".tmp");

	/* progress follows the memory writer's file */
	touch(p, 64 << 10);
	CHECK_EQ(snapdir_memory_progress(dir, &bytes), 0);
	CHECK(bytes >= 64 << 10);
	unlink(p);
	CHECK_EQ(snapdir_txn_path(&t, SNAPDIR_STATE, p, sizeof(p)), 0);
	touch(p, 100);
	struct snapdir_meta m = {.config = json_pack("{s:i}", "mem", 1), .state_bytes = 100};
	CHECK_EQ(snapdir_write_meta(&t, &m), 0);
	json_decref(m.config);
	CHECK(!snapdir_is_committed(dir));
	CHECK_EQ(snapdir_commit(&t), 0);
	CHECK(snapdir_is_committed(dir) && !snapdir_is_in_progress(dir));
	snprintf(p, sizeof(p), "%s/meta.json", dir);
	json_error_t e;
	json_t *j = json_load_file(p, 0, &e);
	CHECK(j != NULL);
	CHECK(!strcmp(json_string_value(json_object_get(j, "name")), "s1"));
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(j, "stats"), "state_bytes")),
		 100);
	json_decref(j);

	/* a committed snapshot is never begun again */
	CHECK_EQ(snapdir_begin(dir, &t), -EEXIST);
	CHECK(strstr(err_msg(), dir) != NULL);

	/* abort leaves nothing of ours */
	snprintf(dir, sizeof(dir), "%s/s2", base);
	CHECK_EQ(snapdir_begin(dir, &t), 0);
	CHECK_EQ(snapdir_txn_path(&t, SNAPDIR_MEMORY, p, sizeof(p)), 0);
	touch(p, 10);
	snapdir_abort(&t);
	CHECK(!snapdir_is_in_progress(dir) && access(t.tmp, F_OK) < 0);

	/* ... and nothing that is not ours: a file someone put there stays */
	CHECK_EQ(snapdir_begin(dir, &t), 0);
	snprintf(p, sizeof(p), "%.4000s/precious", t.tmp);
	touch(p, 10);
	snapdir_abort(&t);
	CHECK(access(p, F_OK) == 0);

	/* a symlink as DIR is refused; a directory made meanwhile is not replaced */
	snprintf(dir, sizeof(dir), "%s/s3", base);
	CHECK_EQ(symlink(base, dir), 0);
	CHECK_EQ(snapdir_begin(dir, &t), -EEXIST);
	snprintf(dir, sizeof(dir), "%s/s4", base);
	CHECK_EQ(snapdir_begin(dir, &t), 0);
	CHECK_EQ(mkdir(dir, 0755), 0);
	CHECK(snapdir_commit(&t) < 0);
	CHECK(access(t.tmp, F_OK) < 0 && rmdir(dir) == 0);
}

int main(void)
{
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
	test_names();
	test_find_restore_overlay();
	test_long_lineage();
	test_txn();
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
	TEST_DONE();
}
