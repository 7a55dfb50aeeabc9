#include "manager/bundle.h"
#include "util/err.h"
#include "util/fileutil.h"

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

int bundle_lock(const char *dir, const char *cmd, int *out)
{
	char path[PATH_MAX];
	int r = path_join(path, sizeof(path), dir, "lock");
	if (r < 0)
		return r;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: cannot open the lock file", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
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
	b->doc = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
	if (!b->doc) {
		if (access(path, F_OK) < 0)
			return err_set(ENOENT, "%s: not a VM bundle (no vm.json)", b->dir);
		return err_set(EINVAL, "%s: line %d: %s", path, e.line, e.text);
	}
	const char *fmt = bundle_str(b->doc, "format");
	json_t *v = json_object_get(b->doc, "version");
	if (!fmt || strcmp(fmt, BUNDLE_FORMAT) || !json_is_integer(v))
		return err_set(EINVAL, "%s: not a cairn VM description (format \"%s\")", path,
			       fmt ? fmt : "?");
	if (json_integer_value(v) != BUNDLE_VERSION)
		return err_set(ENOTSUP, "%s: version %lld; this cairn reads version %d", path,
			       (long long)json_integer_value(v), BUNDLE_VERSION);
	if (!json_is_object(json_object_get(b->doc, "snapshots")) ||
	    !json_is_object(json_object_get(b->doc, "config")))
		return err_set(EINVAL, "%s: \"snapshots\" and \"config\" must be objects", path);
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
	if (write)
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

void bundle_close(struct bundle *b)
{
	if (!b)
		return;
	if (b->lock_fd >= 0)
		close(b->lock_fd);
	json_decref(b->doc);
	free(b->dir);
	free(b);
}

int bundle_save(struct bundle *b)
{
	char path[PATH_MAX];
	int r = bundle_path(b, path, sizeof(path), "vm.json");
	if (r < 0)
		return r;
	char *s = json_dumps(b->doc, JSON_INDENT(2) | JSON_SORT_KEYS);
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

const char *bundle_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

json_t *bundle_snapshots(const struct bundle *b)
{
	return json_object_get(b->doc, "snapshots");
}

json_t *bundle_snap(const struct bundle *b, const char *id)
{
	return id ? json_object_get(bundle_snapshots(b), id) : NULL;
}

json_t *bundle_snap_by_name(const struct bundle *b, const char *name, const char **idp)
{
	const char *id;
	json_t *s;
	json_object_foreach(bundle_snapshots(b), id, s)
	{
		const char *n = bundle_str(s, "name");
		if (n && !strcmp(n, name)) {
			if (idp)
				*idp = id;
			return s;
		}
	}
	err_set(ENOENT, "%s: no snapshot named \"%s\"", b->dir, name);
	return NULL;
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
