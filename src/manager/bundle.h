/* A VM bundle (docs/manager.md): one directory per VM holding vm.json (the
 * configuration, the snapshot tree and the layer list), disks/, snapshots/,
 * the writer lock and, while it runs, the control socket.
 *
 * vm.json is the single source of truth and the only switch point: every
 * operation writes its new files first and replaces vm.json last (atomic
 * replace), so a crash leaves the old state plus leftovers that
 * `cairn check --repair` removes.  An operation that rewrites existing
 * layers (delete) records itself in vm.json's "pending" member first and is
 * finished by check --repair.
 *
 * struct bundle is vm.json as C types; bundle.c is the one place that reads
 * and writes its members.  In memory every path is absolute; in vm.json a
 * file inside the bundle is named relative to the bundle directory, so the
 * bundle can be moved (absolute names, as older bundles have them, are read
 * too). */
#ifndef CAIRN_MANAGER_BUNDLE_H
#define CAIRN_MANAGER_BUNDLE_H

#include "vmm/config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BUNDLE_FORMAT "cairn-vm"
/* 2: paths inside the bundle are relative to it.  Version 1 (absolute
 * paths) is still read, and written back as 2. */
#define BUNDLE_VERSION 2
#define BUNDLE_VERSION_OLDEST 1

/* One layer per disk (absolute paths, malloc'd). */
struct bundle_layers {
	int n;
	char *path[VM_MAX_DISKS];
};

struct bundle_snapshot {
	char *id, *name, *created;
	char *parent;		     /* id, or NULL at the root */
	char *description;	     /* or NULL */
	bool memory;		     /* whole machine: snapshots/<id>/ holds its state */
	bool suspend;		     /* taken by stop --save: the VM ended with it */
	struct bundle_layers layers; /* the frozen layer of each disk */
};

/* A linked clone that uses this bundle's layers. */
struct bundle_clone {
	char *path;	/* the clone's bundle directory */
	char *snapshot; /* the id of the snapshot it sits on */
};

/* For a linked clone: where its bottom layers are (another bundle). */
struct bundle_origin {
	char *bundle, *snapshot, *snapshot_name;
	struct bundle_layers layers;
};

enum bundle_merge_method { BUNDLE_MERGE_STREAM, BUNDLE_MERGE_COMMIT };

/* One merge of a delete: LAYER (being deleted) into its dependent INTO. */
struct bundle_merge {
	char *layer, *into;
	enum bundle_merge_method method;
};

/* An operation under way, recorded before it starts (see above). */
struct bundle_pending {
	char *op;			  /* "snapshot", "revert", "delete" */
	char *id;			  /* the snapshot taken, reverted to or deleted */
	struct bundle_snapshot *snapshot; /* snapshot, delete: as recorded */
	struct bundle_layers active;	  /* revert: the active layers before it */
	struct bundle_merge *merges;	  /* delete */
	size_t nmerges;
};

struct bundle {
	char *dir;   /* absolute path of the bundle directory */
	int lock_fd; /* the writer lock (flock on DIR/lock), -1 if not held */

	char *name, *machine_id, *created;
	struct vm_config config;	/* the machine (disk paths: the first layers) */
	bool has_active;		/* false while a whole-machine snapshot is to be resumed */
	struct bundle_layers active;	/* the layer each disk writes to */
	char *current;			/* the snapshot the present state descends from */
	char *resume;			/* the snapshot the next run resumes */
	struct bundle_snapshot **snaps; /* in vm.json's order; new ones appended */
	size_t nsnaps;
	struct bundle_clone *clones;
	size_t nclones;
	struct bundle_origin *origin; /* NULL unless a linked clone */
	char *seed;		      /* a clone's random seed, or NULL */
	struct bundle_pending *pending;
	json_t *extra; /* members this cairn does not know, written back as read */
};

/* Open the bundle at PATH and read vm.json.  With WRITE, take the writer
 * lock first (without waiting; a held lock fails with EBUSY naming the
 * holder's pid and command line, CMD being recorded as ours). */
int bundle_open(const char *path, bool write, const char *cmd, struct bundle **out);
void bundle_close(struct bundle *b);
/* A new, empty model for the bundle directory DIR (create, clone). */
int bundle_init(struct bundle *b, const char *dir, const char *name);
/* Free what the model holds (not dir, not the lock). */
void bundle_clear(struct bundle *b);
/* Replace vm.json atomically with the model. */
int bundle_save(struct bundle *b);
/* Forget unsaved changes: read vm.json again. */
int bundle_reload(struct bundle *b);
/* Fill the empty model B from vm.json's document DOC (PATH for messages). */
int bundle_from_json(struct bundle *b, json_t *doc, const char *path);
/* The model as vm.json's JSON; RELATIVE: paths inside the bundle relative
 * to it (as saved), else absolute. */
json_t *bundle_to_json(const struct bundle *b, bool relative);
/* Take the writer lock of bundle directory DIR (bundle_open's, and a new
 * bundle's): a holder is waited for up to 2 s, then -EBUSY and a message
 * naming it.  trylock: no wait (the VM's own process as it ends, which
 * must not hold up a command waiting for it to end). */
int bundle_lock(const char *dir, const char *cmd, int *fd);
int bundle_trylock(const char *dir, const char *cmd, int *fd);

/* OUT = bundle dir "/" REL. */
int bundle_path(const struct bundle *b, char *out, size_t len, const char *rel);

/* Is a VM running from this bundle (DIR/run.lock held)?  *PID its pid. */
bool bundle_running(const char *dir, pid_t *pid);

/* 8 random hex digits (ids) or 32 (machine ids). */
void bundle_random_hex(char *out, size_t ndigits);

/* The snapshot tree. */
struct bundle_snapshot *bundle_snap(const struct bundle *b, const char *id); /* NULL: none */
/* By name.  NULL (message set) when there is none. */
struct bundle_snapshot *bundle_snap_by_name(const struct bundle *b, const char *name);
/* Add S (taken over) to the tree. */
int bundle_snap_add(struct bundle *b, struct bundle_snapshot *s);
/* Remove and free snapshot ID. */
void bundle_snap_remove(struct bundle *b, const char *id);
struct bundle_snapshot *bundle_snap_new(const char *id, const char *name, const char *parent,
					const char *created, const char *desc);
struct bundle_snapshot *bundle_snap_dup(const struct bundle_snapshot *s);
void bundle_snap_free(struct bundle_snapshot *s);

/* Linked clones using this bundle's layers. */
int bundle_clone_add(struct bundle *b, const char *path, const char *snapshot);
void bundle_clone_remove(struct bundle *b, size_t i);

/* Layer lists. */
int bundle_layers_add(struct bundle_layers *l, const char *path);
int bundle_layers_copy(struct bundle_layers *dst, const struct bundle_layers *src);
bool bundle_layers_equal(const struct bundle_layers *a, const struct bundle_layers *b);
void bundle_layers_free(struct bundle_layers *l);

/* Replace *FIELD by a copy of S (NULL allowed). */
int bundle_set_str(char **field, const char *s);
void bundle_pending_free(struct bundle_pending *p);

/* Apparent disk usage (allocated blocks) of a file or a directory tree. */
uint64_t bundle_du(const char *path);

#endif
