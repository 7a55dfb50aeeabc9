#include "util/fileutil.h"
#include "util/err.h"

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
	return file_fsync_parent(path);
}

int file_read_whole(const char *path, char **data, size_t *len, size_t max_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(errno, "%s", path);
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
