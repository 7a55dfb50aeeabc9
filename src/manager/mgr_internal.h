/* What the manager's operation files (create.c, run.c, snapshot.c,
 * revert.c, delete.c, list.c, clone.c, check.c) share.  Not for other
 * modules: their interface is ops.h. */
#ifndef CAIRN_MANAGER_MGR_INTERNAL_H
#define CAIRN_MANAGER_MGR_INTERNAL_H

#include "manager/bundle.h"
#include "manager/ops.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CTL_TIMEOUT_MS (600 * 1000)

/* ---- common.c: strings, paths, files ---- */
json_t *mgr_jarr(const json_t *o, const char *k); /* the array member K, or NULL */
const char *mgr_jstr_at(const json_t *a, size_t i);
bool mgr_streq(const char *a, const char *b); /* both non-NULL and equal */
void mgr_now_iso(char *out, size_t len);
bool mgr_valid_name(const char *n);
/* OUT = bundle dir/A/C. */
int mgr_sub_path(const struct bundle *b, char *out, size_t len, const char *a, const char *c);
int mgr_snap_dir(const struct bundle *b, const char *id, char *out, size_t len);
int mgr_rm_rf(const char *path);
uint64_t mgr_file_bytes(const char *path);
bool mgr_is_qcow2(const char *path);
int mgr_need_space(const char *dir, uint64_t need, const char *what);
/* The names in DIR as the keys of the object SET. */
int mgr_dir_names(const char *dir, json_t *set);

/* ---- common.c: layers ---- */
bool mgr_own_layer(const struct bundle *b, const char *path);
void mgr_unlink_own(const struct bundle *b, const char *path);
int mgr_layer_backing(const char *path, char **out);
int mgr_new_layer(const struct bundle *b, const char *backing, char *out, size_t len);
void mgr_set_frozen(json_t *layers, bool frozen);
json_t *mgr_active_layers(const struct bundle *b);

/* ---- common.c: the bundle and its VM ---- */
/* Open with the writer lock; refused while an operation is pending. */
int mgr_open_write(const char *name, const char *cmd, struct bundle **out);
json_t *mgr_new_doc(const char *name);
int mgr_make_dirs(const char *name, char *real, size_t len);
const char *mgr_vm_state(const struct bundle *b, pid_t *pid);
int mgr_ctl_request(const struct bundle *b, json_t *req, json_t **reply);
int mgr_wait_stopped(const struct bundle *b, int secs);
/* The disks the running VM writes to (control "status"), or NULL. */
json_t *mgr_running_disks(const struct bundle *b);

/* The copy progress of PR (NULL when there is none). */
static inline const struct chain_progress *mgr_copy_progress(const struct mgr_progress *pr)
{
	return pr ? &pr->copy : NULL;
}

/* ---- snapshot.c ---- */
enum { MGR_SETTLE_NONE, MGR_SETTLE_MEMORY, MGR_SETTLE_DISK_ONLY };
int mgr_snapshot_settle(struct bundle *b, bool running);
int mgr_snapshot_running(struct bundle *b, const char *snap, const char *desc, bool suspend,
			 const struct mgr_progress *pr, json_t *report);
int mgr_snapshot_stopped(struct bundle *b, const char *snap, const char *desc, json_t *report);

/* ---- revert.c ---- */
int mgr_revert_settle(struct bundle *b, bool running);

/* ---- delete.c ---- */
int mgr_delete_apply(struct bundle *b, const struct mgr_progress *pr);

/* ---- list.c ---- */
uint64_t mgr_layers_bytes(const json_t *layers);

#endif
