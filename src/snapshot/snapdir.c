#include "snapshot/snapdir.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define META_FORMAT 1

static const char *const file_names[] = {
    [SNAPDIR_STATE] = "state.bin",
    [SNAPDIR_MEMORY] = "memory.img",
    [SNAPDIR_META] = "meta.json",
};
#define NFILES (sizeof(file_names) / sizeof(file_names[0]))

int snapdir_path(const char *dir, enum snapdir_file f, char *out, size_t len)
{
	return path_join(out, len, dir, file_names[f]);
}

/* The directory DIR is in, resolved (DIR itself need not exist). */
static int parent_dir_of(const char *dir, char *out)
{
	char d[PATH_MAX];
	snprintf(d, sizeof(d), "%s", dir);
	return realpath(dirname(d), out) ? 0 : -errno;
}

int snapdir_memory_parent_ref(const char *dir, const char *parent, char *out, size_t len)
{
	char a[PATH_MAX], b[PATH_MAX], p[PATH_MAX];
	if (parent_dir_of(dir, a) < 0 || parent_dir_of(parent, b) < 0 || strcmp(a, b) != 0)
		return -EXDEV;
	snprintf(p, sizeof(p), "%s", parent);
	const char *name = basename(p);
	if (snprintf(out, len, "../%s/%s", name, file_names[SNAPDIR_MEMORY]) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int snapdir_txn_path(const struct snapdir_txn *t, enum snapdir_file f, char *out, size_t len)
{
	return snapdir_path(t->tmp, f, out, len);
}

/* Remove what we wrote in TMP (the files this module names and the
 * ".tmp" files their writers make before their own rename), then TMP:
 * through a descriptor of TMP itself, so a symlink put in its place is not
 * followed; anything else in it keeps TMP (never remove what cairn did not
 * create). */
static int remove_tmp_dir(const char *tmp)
{
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	char name[64];
	for (size_t i = 0; i < NFILES; i++) {
		unlinkat(dfd, file_names[i], 0);
		snprintf(name, sizeof(name), "%s.tmp", file_names[i]);
		unlinkat(dfd, name, 0);
	}
	close(dfd);
	return rmdir(tmp) < 0 ? -errno : 0;
}

/* The temporary directory of snapshot DIR: "DIR.tmp-" and six characters
 * (mkdtemp), unique, so that no two attempts and no file of somebody
 * else's share it. */
#define TMP_INFIX ".tmp-"
#define TMP_SUFFIX_LEN 6

int snapdir_begin(const char *dir, struct snapdir_txn *t)
{
	struct stat st;
	if (snprintf(t->dir, sizeof(t->dir), "%s", dir) >= (int)sizeof(t->dir) - 16)
		return err_set(ENAMETOOLONG, "%s", dir);
	if (lstat(t->dir, &st) == 0)
		return err_set(EEXIST, "%s", t->dir);
	snprintf(t->tmp, sizeof(t->tmp), "%s" TMP_INFIX "XXXXXX", t->dir);
	if (!mkdtemp(t->tmp))
		return err_set(errno, "%s: cannot make a directory beside it", t->dir);
	return 0;
}

/* The temporary directory of DIR being written, if any: OUT. */
static bool find_tmp_dir(const char *dir, char *out, size_t len)
{
	char parent[PATH_MAX], base[PATH_MAX], prefix[PATH_MAX + 8];
	snprintf(parent, sizeof(parent), "%s", dir);
	snprintf(base, sizeof(base), "%s", dir);
	const char *pdir = dirname(parent), *name = basename(base);
	snprintf(prefix, sizeof(prefix), "%s" TMP_INFIX, name);
	size_t plen = strlen(prefix);
	DIR *d = opendir(pdir);
	if (!d)
		return false;
	bool found = false;
	struct dirent *de;
	while (!found && (de = readdir(d)))
		if (!strncmp(de->d_name, prefix, plen) &&
		    strlen(de->d_name) == plen + TMP_SUFFIX_LEN && de->d_type == DT_DIR)
			found = snprintf(out, len, "%s/%s", pdir, de->d_name) < (int)len;
	closedir(d);
	return found;
}

int snapdir_write_meta(const struct snapdir_txn *t, const struct snapdir_meta *m)
{
	char path[PATH_MAX], base[PATH_MAX];
	int r = snapdir_txn_path(t, SNAPDIR_META, path, sizeof(path));
	if (r < 0)
		return r;
	snprintf(base, sizeof(base), "%s", t->dir);
	json_t *j = json_pack("{s:i, s:s, s:I, s:O, s:{s:I, s:I, s:I}}", "format", META_FORMAT,
			      "name", m->name ? m->name : basename(base), "created",
			      (json_int_t)time(NULL), "config", m->config, "stats", "pause_us",
			      (json_int_t)m->pause_us, "memory_bytes", (json_int_t)m->memory_bytes,
			      "state_bytes", (json_int_t)m->state_bytes);
	char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!text)
		return err_set(ENOMEM, "%s", path);
	r = file_replace_atomic(path, text, strlen(text));
	free(text);
	return r;
}

int snapdir_commit(struct snapdir_txn *t)
{
	int r = 0;
	/* NOREPLACE: a DIR made meanwhile (even an empty directory, which a
	 * plain rename would replace) is not ours to take. */
	if (renameat2(AT_FDCWD, t->tmp, AT_FDCWD, t->dir, RENAME_NOREPLACE) < 0)
		r = err_set(errno, "%s: cannot commit the snapshot", t->dir);
	if (r < 0) {
		remove_tmp_dir(t->tmp);
		return r;
	}
	/* DIR exists: the snapshot is committed, whatever its directory's
	 * fsync says (undoing the disks' freeze now would let the VM write
	 * to the layers DIR names as frozen). */
	file_fsync_parent_after_commit(t->dir);
	return 0;
}

void snapdir_abort(struct snapdir_txn *t)
{
	remove_tmp_dir(t->tmp);
}

bool snapdir_is_committed(const char *dir)
{
	char p[PATH_MAX];
	return snapdir_path(dir, SNAPDIR_STATE, p, sizeof(p)) == 0 && access(p, F_OK) == 0;
}

bool snapdir_is_in_progress(const char *dir)
{
	char tmp[PATH_MAX];
	struct stat st;
	return stat(dir, &st) < 0 && find_tmp_dir(dir, tmp, sizeof(tmp));
}

int snapdir_memory_progress(const char *dir, uint64_t *bytes)
{
	/* The memory writer fills memory.img.tmp, then renames it; the whole
	 * directory is renamed at the commit.  The image is sparse: allocated
	 * blocks are what has been written. */
	char tmp[PATH_MAX], p[PATH_MAX + 32];
	struct stat st;
	if (!find_tmp_dir(dir, tmp, sizeof(tmp)))
		tmp[0] = 0;
	const char *const where[][2] = {
	    {tmp, "memory.img.tmp"}, {tmp, "memory.img"}, {dir, "memory.img"}};
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		if (!where[i][0][0])
			continue;
		snprintf(p, sizeof(p), "%s/%s", where[i][0], where[i][1]);
		if (stat(p, &st) == 0) {
			*bytes = (uint64_t)st.st_blocks * 512;
			return 0;
		}
	}
	return -ENOENT;
}

/* An overlay's name is its layer's stem and a tag, so a VM snapshotted
 * again and again would add a tag per snapshot ("disk0-<id>-<id>-...") and
 * pass NAME_MAX (255) after ~25 snapshots in a bundle.  A stem longer than
 * STEM_MAX keeps its first characters and gets a hash of the whole in place
 * of the rest: names stay bounded, distinct and deterministic. */
#define STEM_MAX 128
#define STEM_HASH_DIGITS 16

static uint64_t stem_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* LAYER's file name without its directory and ".qcow2", at most STEM_MAX
 * characters. */
static void layer_stem(const char *layer, char *out, size_t len)
{
	const char *slash = strrchr(layer, '/');
	snprintf(out, len, "%s", slash ? slash + 1 : layer);
	size_t l = strlen(out);
	if (l > 6 && !strcmp(out + l - 6, ".qcow2"))
		out[l -= 6] = 0;
	if (l > STEM_MAX && len > STEM_MAX) {
		uint64_t h = stem_hash(out);
		snprintf(out + STEM_MAX - STEM_HASH_DIGITS - 1, STEM_HASH_DIGITS + 2, "-%016llx",
			 (unsigned long long)h);
	}
}

/* A suffix that naming an overlay added to a stem, at its end: "-" and 8
 * hex digits (a snapshot's id in a bundle) or "-r" and 8 (a restore's
 * tag).  Its length, or 0. */
static size_t generated_suffix(const char *stem, size_t len)
{
	for (size_t n = 9; n <= 10; n++) {
		const char *s = stem + len - n;
		if (len <= n || s[0] != '-' || (n == 10 && s[1] != 'r'))
			continue;
		if (strspn(s + n - 8, "0123456789abcdef") >= 8)
			return n;
	}
	return 0;
}

/* Overlays are named after the layer they sit on, each adding a suffix:
 * the VM of a bundle that snapshots and reverts for long would soon have
 * names longer than a file name can be (255 bytes).  Past OVERLAY_STEM_MAX
 * the suffixes that cairn added are taken off (the new one alone keeps the
 * name unique: a snapshot's id, or a random tag; the file is created
 * exclusively); a stem that is still too long was hashed by layer_stem. */
#define OVERLAY_STEM_MAX 96

static void overlay_stem(const char *layer, char *out, size_t len)
{
	layer_stem(layer, out, len);
	size_t l = strlen(out), n;
	if (l <= OVERLAY_STEM_MAX)
		return;
	while ((n = generated_suffix(out, l)) > 0)
		out[l -= n] = 0;
}

/* LAYER's directory. */
static void layer_dir(const char *layer, char *out, size_t len)
{
	const char *slash = strrchr(layer, '/');
	if (!slash)
		snprintf(out, len, ".");
	else if (slash == layer)
		snprintf(out, len, "/");
	else
		snprintf(out, len, "%.*s", (int)(slash - layer), layer);
}

int snapdir_overlay_path(const char *frozen, const char *dir, char *out, size_t len)
{
	char stem[PATH_MAX], where[PATH_MAX], snap[PATH_MAX], name[2 * PATH_MAX + 8];
	overlay_stem(frozen, stem, sizeof(stem));
	layer_dir(frozen, where, sizeof(where));
	snprintf(snap, sizeof(snap), "%s", dir);
	snprintf(name, sizeof(name), "%s-%s.qcow2", stem, basename(snap));
	return path_join(out, len, where, name);
}

/* Restore overlays: "<stem>-r" and 8 hex digits. */
#define RESTORE_TAG_DIGITS 8

int snapdir_restore_overlay_path(const char *layer, const char *disk_dir, char *out, size_t len)
{
	char stem[PATH_MAX], where[PATH_MAX], name[PATH_MAX + 32];
	overlay_stem(layer, stem, sizeof(stem));
	if (disk_dir)
		snprintf(where, sizeof(where), "%s", disk_dir);
	else
		layer_dir(layer, where, sizeof(where));
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	snprintf(name, sizeof(name), "%s-r%0*x.qcow2", stem, RESTORE_TAG_DIGITS, rnd);
	return path_join(out, len, where, name);
}

static bool is_restore_overlay_of(const char *name, const char *stem)
{
	size_t s = strlen(stem);
	if (strncmp(name, stem, s) || strncmp(name + s, "-r", 2))
		return false;
	const char *hex = name + s + 2;
	for (int i = 0; i < RESTORE_TAG_DIGITS; i++)
		if (!hex[i] || !strchr("0123456789abcdef", hex[i]))
			return false;
	return !strcmp(hex + RESTORE_TAG_DIGITS, ".qcow2");
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int snapdir_find_restore_overlay(const char *layer, const char *disk_dir,
				 const struct timespec *not_before,
				 bool (*skip)(const char *path, void *opaque), void *opaque,
				 char *out, size_t len)
{
	char stem[PATH_MAX], where[PATH_MAX], p[PATH_MAX];
	overlay_stem(layer, stem, sizeof(stem));
	if (disk_dir)
		snprintf(where, sizeof(where), "%s", disk_dir);
	else
		layer_dir(layer, where, sizeof(where));
	DIR *d = opendir(where);
	if (!d)
		return err_set(errno, "%s", where);
	/* An earlier failed restore may have left one too: the newest is the
	 * one the interrupted operation made. */
	struct timespec newest = {0};
	int r = -ENOENT;
	struct dirent *de;
	while ((de = readdir(d))) {
		struct stat st;
		if (!is_restore_overlay_of(de->d_name, stem) ||
		    path_join(p, sizeof(p), where, de->d_name) < 0 || stat(p, &st) < 0)
			continue;
		if ((not_before && ts_before(&st.st_mtim, not_before)) || (skip && skip(p, opaque)))
			continue;
		if (r == 0 && !ts_before(&newest, &st.st_mtim))
			continue;
		newest = st.st_mtim;
		r = snprintf(out, len, "%s", p) >= (int)len ? err_set(ENAMETOOLONG, "%s", p) : 0;
	}
	closedir(d);
	return r;
}
