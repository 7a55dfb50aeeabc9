/* The snapshot directory: the one module that knows its layout and the
 * names of the disk layers a snapshot makes (docs/snapshots.md).
 *
 *   DIR/state.bin    machine state (state_file.h; vm_snapshot.c writes it)
 *   DIR/memory.img   guest RAM (mem_image.h)
 *   DIR/meta.json    for people and tools: name, time, configuration, sizes
 *
 * A snapshot is written into a new directory "DIR.tmp-XXXXXX" (mkdtemp)
 * and committed by renaming that to DIR, so DIR exists only when it is
 * whole.  Nothing cairn did not make is removed or reused: a leftover of a
 * crashed attempt stays until `cairn check --repair` (in a bundle) or the
 * user removes it.  Disk layers live beside the
 * disks, not in DIR: a disk frozen by snapshot DIR goes on in the overlay
 * "<stem>-<basename DIR>.qcow2" beside its frozen layer; a restore (new
 * process or revert in place) writes to a fresh "<stem>-rXXXXXXXX.qcow2".
 * Callers (the VMM, the manager, tests) ask this module for every such
 * name and never build one themselves. */
#ifndef CAIRN_SNAPSHOT_SNAPDIR_H
#define CAIRN_SNAPSHOT_SNAPDIR_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum snapdir_file {
	SNAPDIR_STATE,	/* state.bin */
	SNAPDIR_MEMORY, /* memory.img */
	SNAPDIR_META,	/* meta.json */
};

/* OUT = the path of file F of the snapshot in DIR. */
int snapdir_path(const char *dir, enum snapdir_file f, char *out, size_t len);

/* How the memory image of snapshot DIR names the one of its memory
 * parent PARENT (a layer stores only the pages changed since): relative
 * to its own directory, so the two move together.  -EXDEV (no message)
 * unless the two are in one directory. */
int snapdir_memory_parent_ref(const char *dir, const char *parent, char *out, size_t len);

/* ---- writing a snapshot ---- */

/* A snapshot directory being written: files go into TMP, commit renames
 * TMP to DIR. */
struct snapdir_txn {
	char dir[PATH_MAX];
	char tmp[PATH_MAX + 16];
};

/* Start writing the snapshot DIR: refused when DIR exists (a symlink
 * too); a new, unique temporary directory is made beside it. */
int snapdir_begin(const char *dir, struct snapdir_txn *t);
/* OUT = the path of file F inside the directory being written. */
int snapdir_txn_path(const struct snapdir_txn *t, enum snapdir_file f, char *out, size_t len);

struct snapdir_meta {
	const char *name;      /* NULL: the directory's name */
	json_t *config;	       /* the hardware configuration (borrowed) */
	uint64_t pause_us;     /* how long the guest was paused */
	uint64_t memory_bytes; /* non-zero RAM written */
	uint64_t state_bytes;  /* machine state records (state.bin's payload) */
};
/* Write meta.json into the directory being written. */
int snapdir_write_meta(const struct snapdir_txn *t, const struct snapdir_meta *m);
/* Rename the temporary directory to DIR and fsync the parent: from here
 * on the snapshot exists.  On failure the temporary directory goes. */
int snapdir_commit(struct snapdir_txn *t);
/* Remove the temporary directory and the files this module wrote in it
 * (without following a symlink; it stays if it holds anything else). */
void snapdir_abort(struct snapdir_txn *t);

/* ---- questions about a snapshot ---- */

/* DIR was committed (DIR/state.bin exists). */
bool snapdir_is_committed(const char *dir);
/* DIR is being written (its temporary directory exists, DIR does not). */
bool snapdir_is_in_progress(const char *dir);
/* Bytes of the memory image of snapshot DIR on disk so far, while it is
 * being written (or once committed).  -ENOENT when there is none yet. */
int snapdir_memory_progress(const char *dir, uint64_t *bytes);

/* ---- disk layers ---- */

/* The overlay a disk whose active layer is FROZEN continues in once
 * snapshot DIR freezes it: beside FROZEN, named after both. */
int snapdir_overlay_path(const char *frozen, const char *dir, char *out, size_t len);
/* A fresh name for the overlay a restore puts on LAYER: in DISK_DIR, or
 * beside LAYER when DISK_DIR is NULL. */
int snapdir_restore_overlay_path(const char *layer, const char *disk_dir, char *out, size_t len);
/* After an interrupted restore or revert: the restore overlay made for
 * LAYER in DISK_DIR, or -ENOENT (no message) if there is none.  Only
 * files last modified at or after NOT_BEFORE (NULL: any time) that SKIP
 * (NULL: none) does not refuse are candidates (earlier restores leave
 * overlays of the same layer, in use or not); the newest of them. */
int snapdir_find_restore_overlay(const char *layer, const char *disk_dir,
				 const struct timespec *not_before,
				 bool (*skip)(const char *path, void *opaque), void *opaque,
				 char *out, size_t len);

#endif
