/* Raw image files: the virtual disk is the file, byte for byte. */
#include "disk/block.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct raw_dev {
	struct block_dev bd;
	int fd;
};

static struct raw_dev *to_raw(struct block_dev *bd)
{
	return (struct raw_dev *)bd;
}

static int raw_read(struct block_dev *bd, void *buf, uint64_t off, size_t len)
{
	int r = file_pread_all(to_raw(bd)->fd, buf, len, off);
	if (r == -EIO) {
		/* A file shorter than its size reads as zeroes past its end. */
		memset(buf, 0, len);
		ssize_t n = pread(to_raw(bd)->fd, buf, len, (off_t)off);
		r = n < 0 ? -errno : 0;
	}
	return r < 0 ? err_set(-r, "%s: read at %llu", bd->path, (unsigned long long)off) : 0;
}

static int raw_write(struct block_dev *bd, const void *buf, uint64_t off, size_t len)
{
	int r = file_pwrite_all(to_raw(bd)->fd, buf, len, off);
	return r < 0 ? err_set(-r, "%s: write at %llu", bd->path, (unsigned long long)off) : 0;
}

static int raw_flush(struct block_dev *bd)
{
	return fdatasync(to_raw(bd)->fd) < 0 ? err_set(errno, "%s: flush", bd->path) : 0;
}

static int raw_punch(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (fallocate(to_raw(bd)->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0)
		return 0;
	return -errno;
}

static int raw_discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	/* Discard is advisory: a file system without hole punching keeps data. */
	int r = raw_punch(bd, off, len);
	return (r == 0 || r == -EOPNOTSUPP) ? 0 : err_set(-r, "%s: discard", bd->path);
}

static int raw_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (raw_punch(bd, off, len) == 0)
		return 0;
	static const char zero[65536];
	while (len) {
		size_t n = len < sizeof(zero) ? (size_t)len : sizeof(zero);
		int r = raw_write(bd, zero, off, n);
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static void raw_close(struct block_dev *bd)
{
	close(to_raw(bd)->fd);
	free(bd->path);
	free(bd);
}

static const struct block_ops raw_ops = {
    .read = raw_read,
    .write = raw_write,
    .flush = raw_flush,
    .discard = raw_discard,
    .write_zeroes = raw_write_zeroes,
    .close = raw_close,
    .status = NULL,
};

int raw_open(const char *path, unsigned flags, struct block_dev **out)
{
	bool ro = flags & BLOCK_RDONLY;
	int fd = file_open_image(path, ro ? O_RDONLY : O_RDWR);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = block_lock_image(fd, path, flags);
	if (r == 0 && fstat(fd, &st) < 0)
		r = err_set(errno, "%s: stat", path);
	if (r < 0) {
		close(fd);
		return r;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		size = end < 0 ? 0 : (uint64_t)end;
	} else if (!S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(EINVAL, "%s: not a regular file or block device", path);
	}
	struct raw_dev *rd = calloc(1, sizeof(*rd));
	char *p = strdup(path);
	if (!rd || !p) {
		free(rd);
		free(p);
		close(fd);
		return err_set(ENOMEM, "%s", path);
	}
	rd->fd = fd;
	rd->bd = (struct block_dev){.ops = &raw_ops,
				    .format = "raw",
				    .path = p,
				    .size = size,
				    .readonly = ro,
				    .lock_fd = fd,
				    .flags = flags};
	*out = &rd->bd;
	return 0;
}
