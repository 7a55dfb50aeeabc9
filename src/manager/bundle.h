/* A VM bundle (docs/manager.md): one directory per VM holding vm.json (the
 * configuration, the snapshot tree and the layer list), disks/, snapshots/,
 * the writer lock and, while it runs, the control socket.
 *
 * vm.json is the single source of truth and the only switch point: every
 * operation writes its new files first and replaces vm.json last (atomic
 * replace), so a crash leaves the old state plus leftovers that
 * `cairn check --repair` removes.  An operation that rewrites existing
 * layers (delete) records itself in vm.json's "pending" member first and is
 * finished by check --repair. */
#ifndef CAIRN_MANAGER_BUNDLE_H
#define CAIRN_MANAGER_BUNDLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BUNDLE_FORMAT "cairn-vm"
#define BUNDLE_VERSION 1

struct bundle {
	char *dir;   /* absolute path of the bundle directory */
	json_t *doc; /* vm.json */
	int lock_fd; /* the writer lock (flock on DIR/lock), -1 if not held */
};

/* Open the bundle at PATH and read vm.json.  With WRITE, take the writer
 * lock first (without waiting; a held lock fails with EBUSY naming the
 * holder's pid and command line, CMD being recorded as ours). */
int bundle_open(const char *path, bool write, const char *cmd, struct bundle **out);
void bundle_close(struct bundle *b);
/* Replace vm.json atomically with b->doc. */
int bundle_save(struct bundle *b);
/* Take the writer lock of a new bundle directory (used by create). */
int bundle_lock(const char *dir, const char *cmd, int *fd);

/* OUT = bundle dir "/" REL. */
int bundle_path(const struct bundle *b, char *out, size_t len, const char *rel);

/* Is a VM running from this bundle (DIR/run.lock held)?  *PID its pid. */
bool bundle_running(const char *dir, pid_t *pid);

/* 8 random hex digits (ids) or 32 (machine ids). */
void bundle_random_hex(char *out, size_t ndigits);

/* The snapshot tree in vm.json. */
json_t *bundle_snapshots(const struct bundle *b);	     /* object id -> snapshot */
json_t *bundle_snap(const struct bundle *b, const char *id); /* by id */
/* By name; sets *ID. NULL (message set) when there is none. */
json_t *bundle_snap_by_name(const struct bundle *b, const char *name, const char **id);
const char *bundle_str(const json_t *obj, const char *key); /* NULL when absent/null */

/* Apparent disk usage (allocated blocks) of a file or a directory tree. */
uint64_t bundle_du(const char *path);

#endif
