/* What the manager's operation files (create.c, run.c, snapshot.c,
 * revert.c, delete.c, list.c, clone.c, check.c) share.  Not for other
 * modules: their interface is ops.h. */
#ifndef CAIRN_MANAGER_MGR_INTERNAL_H
#define CAIRN_MANAGER_MGR_INTERNAL_H

#include "manager/bundle.h"
#include "manager/ops.h"
#include "snapshot/mem_image.h"

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CTL_TIMEOUT_MS (600 * 1000)

/* ---- common.c: strings, paths, files ---- */
bool mgr_streq(const char *a, const char *b); /* both non-NULL and equal */
void mgr_now_iso(char *out, size_t len);
bool mgr_valid_name(const char *n);
/* OUT = bundle dir/A/C. */
int mgr_sub_path(const struct bundle *b, char *out, size_t len, const char *a, const char *c);
int mgr_snap_dir(const struct bundle *b, const char *id, char *out, size_t len);
/* Snapshot SID's memory image: its path (MEM) and its trailer (RAM size
 * from the snapshot's state). */
int mgr_snap_memory(const struct bundle *b, const char *sid, char *mem, size_t len,
		    struct mem_image_info *info);
/* Remove PATH and what is in it: 0, or the first failure (said). */
int mgr_rm_rf(const char *path);
uint64_t mgr_file_bytes(const char *path);
bool mgr_is_qcow2(const char *path);
int mgr_need_space(const char *dir, uint64_t need, const char *what);

/* ---- common.c: NICs ---- */
/* A new MAC address: 52:54:00 (locally administered, QEMU's prefix) and
 * three random bytes, so bundles on one L2 segment do not collide. */
void mgr_random_mac(uint8_t mac[6]);
/* CFG's NICs become one per spec of NETS (N of them; a single "none": no
 * NIC), each with its spec's mac= or a new random MAC.  -EINVAL, message
 * set, for a spec net_spec_parse refuses or "none" beside another. */
int mgr_set_nics(struct vm_config *cfg, const char *const *nets, int n);

/* ---- common.c: layers ---- */
/* The backing name stored in layer PATH and its format, as stored
 * (malloc'd; NULL: none). */
int mgr_layer_stored_backing(const char *path, char **name, char **fmt);
bool mgr_own_layer(const struct bundle *b, const char *path);
void mgr_unlink_own(const struct bundle *b, const char *path);
int mgr_layer_backing(const char *path, char **out);
/* A new empty layer disks/l<random>.qcow2 over BACKING (named relative to
 * disks/ when it is there). */
int mgr_new_layer(const struct bundle *b, const char *backing, char *out, size_t len);
/* Stream BASE..TOP's chain into TOP, which then backs onto BASE (NULL:
 * none), named relative when beside it. */
int mgr_stream_layer(const char *top, const char *base, const struct mgr_progress *pr);
/* LAYERS are frozen by snapshot SNAPDIR: read-only mode and frozen mark. */
void mgr_set_frozen(const struct bundle_layers *layers, const char *snapdir);
/* The manager itself rewriting frozen layer PATH (a merge, a relink):
 * thaw takes its read-only mode and frozen mark off (0, or -errno said:
 * then nothing changed), refreeze puts back what was there (best effort,
 * keeping the current message). */
struct mgr_frozen {
	mode_t mode;
	bool marked;
	char mark[PATH_MAX];
};
int mgr_layer_thaw(const char *path, struct mgr_frozen *f);
void mgr_layer_refreeze(const char *path, const struct mgr_frozen *f);
void mgr_unlink_layers(const struct bundle *b, const struct bundle_layers *layers);

/* ---- common.c: the bundle and its VM ---- */
/* Open with the writer lock; refused while an operation is pending. */
int mgr_open_write(const char *name, const char *cmd, struct bundle **out);
/* The same, and *S = its snapshot named SNAP (-ENOENT, message set, and
 * nothing open when there is none). */
int mgr_open_write_snap(const char *name, const char *cmd, const char *snap, struct bundle **out,
			struct bundle_snapshot **s);
/* A new bundle directory NAME (REAL: its absolute path) with its lock
 * (*LOCK, held for CMD), disks/ and snapshots/; on failure nothing is left. */
int mgr_make_dirs(const char *name, const char *cmd, char *real, size_t len, int *lock);
/* What an interrupted create or destroy leaves: a directory without
 * vm.json, with nothing but a bundle's own names in it, the lock among
 * them (or, EMPTY_OK, nothing at all: a destroy whose last step failed). */
bool mgr_bundle_remains(const char *dir, bool empty_ok);
/* Remove bundle directory DIR: everything but the lock first, the lock
 * last (a failure leaves what mgr_bundle_remains recognises); 0, or the
 * first failure (said). */
int mgr_remove_bundle(const char *dir);
/* A create or clone that failed: its new bundle DIR goes, keeping the
 * message of the failure (best effort), and *LOCK is closed. */
void mgr_remove_new_bundle(const char *dir, int *lock);
const char *mgr_vm_state(const struct bundle *b, pid_t *pid);
int mgr_ctl_request(const struct bundle *b, json_t *req, json_t **reply);
/* Recording the outcome of a pending OP ("snapshot", "revert") failed with
 * SETTLE (its message set); R and MSG: how the VM's part went.  Says both,
 * and that check --repair settles it; returns the error. */
int mgr_pending_failed(const struct bundle *b, int r, const char *msg, int settle, const char *op);
/* LAYERS as a JSON array of paths. */
json_t *mgr_layers_json(const struct bundle_layers *layers);
int mgr_wait_stopped(const struct bundle *b, int secs);
/* After a control request to the VM failed: whether that is because it has
 * ended (its run lock goes within 2 s). */
bool mgr_vm_ended(const struct bundle *b);
/* The disks the running VM writes to (control "status"). */
int mgr_running_disks(const struct bundle *b, struct bundle_layers *out);

/* The copy progress of PR (NULL when there is none). */
static inline const struct chain_progress *mgr_copy_progress(const struct mgr_progress *pr)
{
	return pr ? &pr->copy : NULL;
}

/* ---- snapshot.c ---- */
enum { MGR_SETTLE_NONE, MGR_SETTLE_MEMORY, MGR_SETTLE_DISK_ONLY };
/* Record what became of the pending "snapshot" (RUNNING: the VM still
 * runs); returns MGR_SETTLE_* or -errno. */
int mgr_snapshot_settle(struct bundle *b, bool running);
/* Whole-machine snapshot SNAP of the running VM (SUSPEND: it ends with it;
 * FLAGS: MGR_SNAP_FULL, a full memory image; MGR_SNAP_DISK_ONLY, its memory
 * is dropped afterwards), or a disk-only one of the stopped VM (new layers
 * on the active ones). */
int mgr_snapshot_running(struct bundle *b, const char *snap, const char *desc, bool suspend,
			 unsigned flags, const struct mgr_progress *pr, json_t *report);
int mgr_snapshot_stopped(struct bundle *b, const char *snap, const char *desc, json_t *report);

/* ---- revert.c ---- */
/* Record what became of the pending in-place "revert": 1 the VM had
 * reverted (its new overlays are active), 0 not, or -errno. */
int mgr_revert_settle(struct bundle *b, bool running);

/* ---- delete.c ---- */
/* Carry out (or finish) the pending "delete": its merges, then the switch. */
int mgr_delete_apply(struct bundle *b, const struct mgr_progress *pr);

/* ---- relocate.c: backing names relative within the bundle ---- */
/* Rename PATH's backing reference relative to PATH's directory where it
 * can be (1), or leave it (0). */
int mgr_layer_relink(const char *path);
/* The same for each of the bundle's own LAYERS (best effort): only for
 * layers no VM writes to. */
void mgr_relink_layers(const struct bundle *b, const struct bundle_layers *layers);
/* Every layer of the bundle: the VM must not be running. */
void mgr_relink_all(const struct bundle *b);
/* A linked clone B that was moved: its origin names it where it was.  1
 * the origin names B (or B is no linked clone, or the origin cannot be
 * read), 0 it does not; with FIX an origin entry for B's snapshot whose
 * clone is gone is pointed at B (2). */
int mgr_clone_register_moved(const struct bundle *b, bool fix);

/* ---- list.c ---- */
uint64_t mgr_layers_bytes(const struct bundle_layers *layers);

#endif
