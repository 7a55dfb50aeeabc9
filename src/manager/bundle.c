#include "manager/bundle.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "vmm/config_json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int bundle_path(const struct bundle *b, char *out, size_t len, const char *rel)
{
	return path_join(out, len, b->dir, rel);
}

void bundle_random_hex(char *out, size_t ndigits)
{
	unsigned char buf[32];
	size_t n = (ndigits + 1) / 2;
	if (n > sizeof(buf))
		n = sizeof(buf);
	if (getrandom(buf, n, 0) != (ssize_t)n) {
		for (size_t i = 0; i < n; i++)
			buf[i] = (unsigned char)(rand() ^ getpid());
	}
	for (size_t i = 0; i < ndigits && i / 2 < n; i++)
		out[i] = "0123456789abcdef"[(i & 1) ? buf[i / 2] & 15 : buf[i / 2] >> 4];
	out[ndigits] = 0;
}

/* The holder of a lock writes "pid command" into the lock file so that a
 * second writer can say who holds it. */
static void lock_holder(int fd, char *out, size_t len)
{
	ssize_t n = pread(fd, out, len - 1, 0);
	if (n <= 0) {
		snprintf(out, len, "unknown process");
		return;
	}
	out[n] = 0;
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = 0;
}

#define LOCK_WAIT_US 20000
#define LOCK_TRIES 100 /* 2 s */

static int lock_file(const char *dir, const char *cmd, int tries, int *out)
{
	char path[PATH_MAX];
	int r = path_join(path, sizeof(path), dir, "lock");
	if (r < 0)
		return r;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: cannot open the lock file", path);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EWOULDBLOCK && tries-- > 0) {
			usleep(LOCK_WAIT_US);
			continue;
		}
		char who[256];
		lock_holder(fd, who, sizeof(who));
		close(fd);
		if (e == EWOULDBLOCK)
			return err_set(EBUSY, "%s: the bundle is locked by pid %s", path, who);
		return err_set(e, "%s: flock", path);
	}
	char line[512];
	int n = snprintf(line, sizeof(line), "%d %s\n", (int)getpid(), cmd ? cmd : "cairn");
	if (ftruncate(fd, 0) == 0 && n > 0)
		(void)!pwrite(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1, 0);
	*out = fd;
	return 0;
}

/* Holders come and go: a VM that ends takes the lock for a moment to name
 * its layers relative (run.c), and a command may come in just then (one
 * whose own command was killed, say).  So a writer waits a little for the
 * holder before it refuses. */
int bundle_lock(const char *dir, const char *cmd, int *out)
{
	return lock_file(dir, cmd, LOCK_TRIES, out);
}

int bundle_trylock(const char *dir, const char *cmd, int *out)
{
	return lock_file(dir, cmd, 0, out);
}

bool bundle_running(const char *dir, pid_t *pid)
{
	char path[PATH_MAX];
	if (path_join(path, sizeof(path), dir, "run.lock") < 0)
		return false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	if (held && pid) {
		char buf[64];
		lock_holder(fd, buf, sizeof(buf));
		*pid = (pid_t)atoi(buf);
	}
	close(fd);
	return held;
}

static int bundle_load(struct bundle *b)
{
	char path[PATH_MAX];
	int r = bundle_path(b, path, sizeof(path), "vm.json");
	if (r < 0)
		return r;
	json_error_t e;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
	if (!doc) {
		if (access(path, F_OK) < 0)
			return err_set(ENOENT, "%s: not a VM bundle (no vm.json)", b->dir);
		return err_set(EINVAL, "%s: line %d: %s", path, e.line, e.text);
	}
	const char *fmt = json_string_value(json_object_get(doc, "format"));
	json_t *v = json_object_get(doc, "version");
	if (!fmt || strcmp(fmt, BUNDLE_FORMAT) || !json_is_integer(v))
		r = err_set(EINVAL, "%s: not a cairn VM description (format \"%s\")", path,
			    fmt ? fmt : "?");
	else if (json_integer_value(v) < BUNDLE_VERSION_OLDEST ||
		 json_integer_value(v) > BUNDLE_VERSION)
		r = err_set(ENOTSUP, "%s: version %lld; this cairn reads versions %d to %d", path,
			    (long long)json_integer_value(v), BUNDLE_VERSION_OLDEST, BUNDLE_VERSION);
	else
		r = bundle_from_json(b, doc, path);
	json_decref(doc);
	return r;
}

int bundle_reload(struct bundle *b)
{
	bundle_clear(b);
	return bundle_load(b);
}

int bundle_init(struct bundle *b, const char *dir, const char *name)
{
	char mid[33], created[32];
	memset(b, 0, sizeof(*b));
	b->lock_fd = -1;
	b->dir = strdup(dir);
	bundle_random_hex(mid, 32);
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	b->name = strdup(name);
	b->machine_id = strdup(mid);
	b->created = strdup(created);
	if (!b->dir || !b->name || !b->machine_id || !b->created)
		return err_set(ENOMEM, "%s", dir);
	return 0;
}

int bundle_open(const char *path, bool write, const char *cmd, struct bundle **out)
{
	char real[PATH_MAX];
	if (!realpath(path, real))
		return err_set(errno, "%s: no such VM bundle", path);
	struct bundle *b = calloc(1, sizeof(*b));
	if (!b)
		return err_set(ENOMEM, "%s", path);
	b->lock_fd = -1;
	b->dir = strdup(real);
	int r = 0;
	char vj[PATH_MAX], lk[PATH_MAX];
	/* no lock file is made in a directory that is no bundle (nor what an
	 * interrupted create or destroy left: a lock without vm.json) */
	if (write && path_join(vj, sizeof(vj), b->dir, "vm.json") == 0 &&
	    path_join(lk, sizeof(lk), b->dir, "lock") == 0 && access(vj, F_OK) < 0 &&
	    access(lk, F_OK) < 0)
		r = err_set(ENOENT, "%s: not a VM bundle (no vm.json)", b->dir);
	if (write && r == 0)
		r = bundle_lock(b->dir, cmd, &b->lock_fd);
	if (r == 0)
		r = bundle_load(b);
	if (r < 0) {
		bundle_close(b);
		return r;
	}
	*out = b;
	return 0;
}

void bundle_pending_free(struct bundle_pending *p)
{
	if (!p)
		return;
	free(p->op);
	free(p->id);
	bundle_snap_free(p->snapshot);
	bundle_layers_free(&p->active);
	for (size_t i = 0; i < p->nmerges; i++) {
		free(p->merges[i].layer);
		free(p->merges[i].into);
	}
	free(p->merges);
	free(p);
}

void bundle_clear(struct bundle *b)
{
	free(b->name);
	free(b->machine_id);
	free(b->created);
	free(b->current);
	free(b->resume);
	free(b->seed);
	vm_config_free(&b->config);
	bundle_layers_free(&b->active);
	for (size_t i = 0; i < b->nsnaps; i++)
		bundle_snap_free(b->snaps[i]);
	free(b->snaps);
	for (size_t i = 0; i < b->nclones; i++) {
		free(b->clones[i].path);
		free(b->clones[i].snapshot);
	}
	free(b->clones);
	if (b->origin) {
		free(b->origin->bundle);
		free(b->origin->snapshot);
		free(b->origin->snapshot_name);
		bundle_layers_free(&b->origin->layers);
		free(b->origin);
	}
	bundle_pending_free(b->pending);
	json_decref(b->extra);
	char *dir = b->dir;
	int fd = b->lock_fd;
	memset(b, 0, sizeof(*b));
	b->dir = dir;
	b->lock_fd = fd;
}

void bundle_close(struct bundle *b)
{
	if (!b)
		return;
	if (b->lock_fd >= 0)
		close(b->lock_fd);
	bundle_clear(b);
	free(b->dir);
	free(b);
}

int bundle_save(struct bundle *b)
{
	char path[PATH_MAX];
	int r = bundle_path(b, path, sizeof(path), "vm.json");
	if (r < 0)
		return r;
	json_t *doc = bundle_to_json(b, true);
	char *s = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	if (!s)
		return err_set(ENOMEM, "%s", path);
	size_t len = strlen(s);
	char *t = realloc(s, len + 2);
	if (!t) {
		free(s);
		return err_set(ENOMEM, "%s", path);
	}
	t[len] = '\n';
	r = file_replace_atomic(path, t, len + 1);
	free(t);
	return r;
}

/* ---- the model's small pieces ---- */

int bundle_set_str(char **field, const char *s)
{
	char *c = s ? strdup(s) : NULL;
	if (s && !c)
		return err_set(ENOMEM, "out of memory");
	free(*field);
	*field = c;
	return 0;
}

int bundle_layers_add(struct bundle_layers *l, const char *path)
{
	if (l->n >= VM_MAX_DISKS)
		return err_set(E2BIG, "%s: more than %d disks", path, VM_MAX_DISKS);
	if (!(l->path[l->n] = strdup(path)))
		return err_set(ENOMEM, "%s", path);
	l->n++;
	return 0;
}

int bundle_layers_copy(struct bundle_layers *dst, const struct bundle_layers *src)
{
	struct bundle_layers t = {0};
	for (int i = 0; i < src->n; i++)
		if (bundle_layers_add(&t, src->path[i]) < 0) {
			bundle_layers_free(&t);
			return -ENOMEM;
		}
	bundle_layers_free(dst);
	*dst = t;
	return 0;
}

bool bundle_layers_equal(const struct bundle_layers *a, const struct bundle_layers *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->path[i], b->path[i]))
			return false;
	return true;
}

void bundle_layers_free(struct bundle_layers *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->path[i]);
	memset(l, 0, sizeof(*l));
}

struct bundle_snapshot *bundle_snap_new(const char *id, const char *name, const char *parent,
					const char *created, const char *desc)
{
	struct bundle_snapshot *s = calloc(1, sizeof(*s));
	if (!s || bundle_set_str(&s->id, id) < 0 || bundle_set_str(&s->name, name) < 0 ||
	    bundle_set_str(&s->parent, parent) < 0 || bundle_set_str(&s->created, created) < 0 ||
	    bundle_set_str(&s->description, desc) < 0) {
		bundle_snap_free(s);
		err_set(ENOMEM, "snapshot %s", name);
		return NULL;
	}
	return s;
}

struct bundle_snapshot *bundle_snap_dup(const struct bundle_snapshot *s)
{
	struct bundle_snapshot *c =
	    bundle_snap_new(s->id, s->name, s->parent, s->created, s->description);
	if (!c)
		return NULL;
	c->memory = s->memory;
	c->suspend = s->suspend;
	if (bundle_layers_copy(&c->layers, &s->layers) < 0) {
		bundle_snap_free(c);
		return NULL;
	}
	return c;
}

void bundle_snap_free(struct bundle_snapshot *s)
{
	if (!s)
		return;
	free(s->id);
	free(s->name);
	free(s->parent);
	free(s->created);
	free(s->description);
	bundle_layers_free(&s->layers);
	free(s);
}

struct bundle_snapshot *bundle_snap(const struct bundle *b, const char *id)
{
	for (size_t i = 0; id && i < b->nsnaps; i++)
		if (!strcmp(b->snaps[i]->id, id))
			return b->snaps[i];
	return NULL;
}

struct bundle_snapshot *bundle_snap_by_name(const struct bundle *b, const char *name)
{
	for (size_t i = 0; i < b->nsnaps; i++)
		if (b->snaps[i]->name && !strcmp(b->snaps[i]->name, name))
			return b->snaps[i];
	err_set(ENOENT, "%s: no snapshot named \"%s\"", b->dir, name);
	return NULL;
}

int bundle_snap_add(struct bundle *b, struct bundle_snapshot *s)
{
	struct bundle_snapshot *old = bundle_snap(b, s->id);
	if (old) { /* replaces the one with the same id */
		for (size_t i = 0; i < b->nsnaps; i++)
			if (b->snaps[i] == old)
				b->snaps[i] = s;
		bundle_snap_free(old);
		return 0;
	}
	struct bundle_snapshot **n = realloc(b->snaps, (b->nsnaps + 1) * sizeof(*n));
	if (!n)
		return err_set(ENOMEM, "%s", b->dir);
	n[b->nsnaps++] = s;
	b->snaps = n;
	return 0;
}

int bundle_clone_add(struct bundle *b, const char *path, const char *snapshot)
{
	struct bundle_clone *n = realloc(b->clones, (b->nclones + 1) * sizeof(*n));
	if (!n)
		return err_set(ENOMEM, "%s", b->dir);
	b->clones = n;
	n[b->nclones] = (struct bundle_clone){strdup(path), strdup(snapshot)};
	b->nclones++;
	return 0;
}

void bundle_clone_remove(struct bundle *b, size_t i)
{
	free(b->clones[i].path);
	free(b->clones[i].snapshot);
	memmove(&b->clones[i], &b->clones[i + 1], (b->nclones - i - 1) * sizeof(*b->clones));
	b->nclones--;
}

void bundle_snap_remove(struct bundle *b, const char *id)
{
	for (size_t i = 0; i < b->nsnaps; i++) {
		if (strcmp(b->snaps[i]->id, id))
			continue;
		bundle_snap_free(b->snaps[i]);
		memmove(&b->snaps[i], &b->snaps[i + 1], (b->nsnaps - i - 1) * sizeof(*b->snaps));
		b->nsnaps--;
		return;
	}
}

uint64_t bundle_du(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0;
	uint64_t total = (uint64_t)st.st_blocks * 512;
	if (!S_ISDIR(st.st_mode))
		return total;
	DIR *d = opendir(path);
	if (!d)
		return total;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char sub[PATH_MAX];
		if (path_join(sub, sizeof(sub), path, de->d_name) == 0)
			total += bundle_du(sub);
	}
	closedir(d);
	return total;
}
