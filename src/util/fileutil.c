#include "util/fileutil.h"
#include "util/err.h"
#include "util/log.h"
#include <stdbool.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int file_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int file_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int file_fsync_parent(const char *path)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	const char *dir = dirname(tmp);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return err_set(errno, "%s: cannot open directory", dir);
	int r = fsync(fd) < 0 ? err_set(errno, "%s: fsync of directory", dir) : 0;
	close(fd);
	return r;
}

int file_create_atomic(const char *path, const void *data, size_t len)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
		return err_set(ENAMETOOLONG, "%s", path);
	if (access(path, F_OK) == 0 || errno != ENOENT)
		return err_set(EEXIST, "%s: a file of that name exists; cairn does not replace it",
			       path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return err_set(errno, "%s: cannot create a file beside it", path);
	fchmod(fd, 0644);
	int r = file_write_all(fd, data, len);
	if (r < 0)
		err_set(-r, "%s: write failed", tmp);
	else if (fsync(fd) < 0)
		r = err_set(errno, "%s: fsync failed", tmp);
	close(fd);
	/* NOREPLACE: a file that appeared meanwhile is not ours to replace */
	if (r == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0)
		r = errno == EEXIST ? err_set(EEXIST, "%s: a file of that name exists; cairn does "
						      "not replace it",
					      path)
				    : err_set(errno, "%s: cannot rename into place", path);
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	file_fsync_parent_after_commit(path);
	return 0;
}

int file_replace_atomic(const char *path, const void *data, size_t len)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return err_set(ENAMETOOLONG, "%s", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: cannot create", tmp);
	int r = file_write_all(fd, data, len);
	if (r < 0) {
		err_set(-r, "%s: write failed", tmp);
	} else if (fsync(fd) < 0) {
		r = err_set(errno, "%s: fsync failed", tmp);
	}
	close(fd);
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	if (rename(tmp, path) < 0) {
		r = err_set(errno, "%s: cannot rename into place", path);
		unlink(tmp);
		return r;
	}
	file_fsync_parent_after_commit(path);
	return 0;
}

void file_fsync_parent_after_commit(const char *path)
{
	/* The new file is in place and every reader sees it: failing here
	 * must not make the caller undo what depends on it (a crash may still
	 * bring the old file back, which the crash-safe callers handle). */
	if (file_fsync_parent(path) < 0) {
		log_warn("%s (the new file is in place; a crash now may bring back the old one)",
			 err_msg());
		err_clear();
	}
}

static const char *file_kind(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFDIR:
		return "a directory";
	case S_IFIFO:
		return "a FIFO";
	case S_IFSOCK:
		return "a socket";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	case S_IFLNK:
		return "a symbolic link";
	default:
		return "not a regular file";
	}
}

static int open_checked(const char *path, int flags, bool block_ok)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer; it is dropped
	 * again below (it means nothing for a regular file). */
	int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return err_set(errno, "%s", path);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = err_set(errno, "%s: stat", path);
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode) && !(block_ok && S_ISBLK(st.st_mode))) {
		close(fd);
		return err_set(EINVAL, "%s: %s, not a regular file%s", path, file_kind(st.st_mode),
			       block_ok ? " or block device" : "");
	}
	if (!(flags & O_NONBLOCK))
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int file_open_regular(const char *path, int flags)
{
	return open_checked(path, flags, false);
}

int file_open_image(const char *path, int flags)
{
	return open_checked(path, flags, true);
}

int file_read_whole(const char *path, char **data, size_t *len, size_t max_len)
{
	int fd = file_open_regular(path, O_RDONLY);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = err_set(errno, "%s: stat", path);
		close(fd);
		return r;
	}
	if ((uint64_t)st.st_size > max_len) {
		close(fd);
		return err_set(EFBIG, "%s: larger than %zu bytes", path, max_len);
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return err_set(ENOMEM, "%s", path);
	}
	int r = file_pread_all(fd, buf, (size_t)st.st_size, 0);
	close(fd);
	if (r < 0) {
		free(buf);
		return err_set(-r, "%s: read failed", path);
	}
	buf[st.st_size] = 0;
	*data = buf;
	if (len)
		*len = (size_t)st.st_size;
	return 0;
}

int path_join(char *out, size_t len, const char *dir, const char *name)
{
	int n = snprintf(out, len, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= len)
		return err_set(ENAMETOOLONG, "%s/%s", dir, name);
	return 0;
}
