/* Disk paths overridden at a restore (disk_path.h). */
#include "vmm/disk_path.h"
#include "disk/block.h"
#include "disk/image_lock.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/log.h"
#include "vmm/vm_snapshot.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

int disk_path_parse(const char *arg, struct disk_path_override *out)
{
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg || !eq[1])
		return err_set(EINVAL, "--disk-path takes OLD=NEW, not '%s'", arg);
	if (eq - arg >= PATH_MAX)
		return err_set(ENAMETOOLONG, "--disk-path %s: OLD is too long", arg);
	snprintf(out->old_path, sizeof(out->old_path), "%.*s", (int)(eq - arg), arg);
	out->new_path = eq + 1;
	return 0;
}

/* Disk I of CFG is recorded at OLD: the same text, or OLD made absolute
 * from the working directory (a relative OLD; the file is gone, so no
 * realpath). */
static bool disk_is_at(const struct vm_config *cfg, int i, const char *old)
{
	const char *rec = cfg->disks[i].path;
	if (!rec)
		return false;
	if (!strcmp(rec, old))
		return true;
	char cwd[PATH_MAX], abs[2 * PATH_MAX];
	if (old[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return false;
	snprintf(abs, sizeof(abs), "%s/%s", cwd, old);
	return !strcmp(rec, abs);
}

static int disk_path_find(const struct vm_config *cfg, const char *old, const char *dir)
{
	for (int i = 0; i < cfg->ndisks; i++)
		if (disk_is_at(cfg, i, old))
			return i;
	char have[1024] = "";
	for (int i = 0; i < cfg->ndisks; i++)
		snprintf(have + strlen(have), sizeof(have) - strlen(have), "%s%s", i ? ", " : "",
			 cfg->disks[i].path);
	return err_set(ENOENT, "--disk-path %s: snapshot %s has no disk there (its disks: %s)", old,
		       dir, cfg->ndisks ? have : "none");
}

int disk_path_check_snapshot(const char *dir, const struct disk_path_override *p, int n)
{
	struct state_reader *r;
	struct vm_config cfg = {0};
	int ret = vm_snapshot_open(dir, &r, &cfg);
	if (ret < 0)
		return ret;
	state_reader_close(r);
	for (int i = 0; i < n && ret == 0; i++)
		if (disk_path_find(&cfg, p[i].old_path, dir) < 0)
			ret = 1;
	vm_config_free(&cfg);
	return ret;
}

/* NEW is fit to stand for the frozen layer of disk D of snapshot DIR. */
static int disk_path_check_layer(const struct disk_config *d, const char *new_path, const char *dir)
{
	struct block_dev *bd;
	int r =
	    block_open(new_path, NULL, BLOCK_RDONLY | BLOCK_NO_BACKING | BLOCK_FORCE_SHARE, &bd);
	if (r < 0)
		return r;
	char fmt[16];
	snprintf(fmt, sizeof(fmt), "%s", bd->format);
	uint64_t size = bd->size;
	block_close(bd);
	const char *want = d->format ? d->format : d->readonly ? NULL : "qcow2";
	if (want && strcmp(fmt, want))
		return err_set(EINVAL, "%s: a %s image, the snapshot's disk (%s) is %s", new_path,
			       fmt, d->path, want);
	if (d->size && size != d->size)
		return err_set(EINVAL, "%s: %llu bytes, the snapshot's disk (%s) was %llu",
			       new_path, (unsigned long long)size, d->path,
			       (unsigned long long)d->size);
	if (d->readonly)
		return 0; /* never frozen: nothing marks it */
	/* the mark is the path of the snapshot that froze the layer as it was
	 * named then: its last component names it wherever it is now */
	char mark[PATH_MAX], real[PATH_MAX];
	if (!image_frozen_read(new_path, mark, sizeof(mark)) &&
	    getxattr(new_path, "user.cairn.frozen", NULL, 0) < 0 && errno == ENOTSUP) {
		/* a file system without user extended attributes marks nothing */
		log_warn("%s: its file system keeps no frozen marks: taken for snapshot %s's layer "
			 "on format and size alone",
			 new_path, dir);
		return 0;
	}
	if (!image_frozen_read(new_path, mark, sizeof(mark)))
		return err_set(EINVAL,
			       "%s: not marked frozen by snapshot %s: not the layer it froze, or a "
			       "copy that lost its extended attributes (move with mv or copy "
			       "with cp -a)",
			       new_path, dir);
	const char *ms = strrchr(mark, '/'), *ds;
	if (!realpath(dir, real))
		snprintf(real, sizeof(real), "%s", dir);
	ds = strrchr(real, '/');
	if (strcmp(ms ? ms + 1 : mark, ds ? ds + 1 : real))
		return err_set(EINVAL,
			       "%s: frozen by snapshot %s, not by %s: another snapshot's layer",
			       new_path, mark, dir);
	return 0;
}

int disk_path_apply(struct vm_config *cfg, const struct disk_path_override *p, int n,
		    const char *dir)
{
	for (int k = 0; k < n; k++) {
		int i = disk_path_find(cfg, p[k].old_path, dir);
		if (i < 0)
			return i;
		struct disk_config *d = &cfg->disks[i];
		int r = disk_path_check_layer(d, p[k].new_path, dir);
		if (r < 0)
			return r;
		/* absolute: the restore's overlay names it as its backing file */
		char *np = realpath(p[k].new_path, NULL);
		if (!np)
			return err_set(errno, "%s", p[k].new_path);
		log_info("disk %d: the snapshot's %s is at %s", i, d->path, np);
		free(d->path);
		d->path = np;
	}
	return 0;
}
