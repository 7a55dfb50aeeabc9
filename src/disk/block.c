#include "disk/block.h"
#include "disk/image_lock.h"
#include "disk/qcow2.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *block_probe_format(const void *head, size_t len)
{
	if (len >= 4 && !memcmp(head, "QFI\xfb", 4))
		return "qcow2";
	return "raw";
}

int block_open(const char *path, const char *format, unsigned flags, struct block_dev **out)
{
	if (!format) {
		int fd = file_open_image(path, O_RDONLY);
		if (fd < 0)
			return fd;
		unsigned char head[8] = {0};
		ssize_t n = pread(fd, head, sizeof(head), 0);
		close(fd);
		if (n < 0)
			return err_set(errno, "%s: cannot read header", path);
		format = block_probe_format(head, (size_t)n);
	}
	if (!strcmp(format, "raw"))
		return raw_open(path, flags, out);
	if (!strcmp(format, "qcow2"))
		return qcow2_open(path, flags, out);
	return err_set(EINVAL, "%s: unknown image format '%s'", path, format);
}

static struct image_perm block_perm(unsigned flags)
{
	if (!(flags & BLOCK_RDONLY))
		return flags & BLOCK_WRITE_UNCHANGED ? IMAGE_LOCK_WRITER_UNCHANGED : IMAGE_LOCK_WRITER;
	return flags & BLOCK_SHARE_WRITE ? IMAGE_LOCK_READER_SHARED : IMAGE_LOCK_READER;
}

int block_lock_image(int fd, const char *path, unsigned flags)
{
	if ((flags & BLOCK_FORCE_SHARE) && !(flags & BLOCK_RDONLY))
		return err_set(EINVAL, "%s: force-share (-U) is for read-only opens", path);
	char snap[256];
	if (!(flags & BLOCK_RDONLY) && image_frozen_get(fd, snap, sizeof(snap)))
		return err_set(EPERM, "%s: a frozen layer (of snapshot %s): it is read only, even "
				      "for root; write to an overlay on it",
			       path, snap);
	if (flags & BLOCK_FORCE_SHARE)
		return 0;
	return image_lock_apply(fd, path, block_perm(flags));
}

int block_relock(struct block_dev *bd, bool write)
{
	if (bd->flags & BLOCK_FORCE_SHARE)
		return 0;
	return image_lock_apply(bd->lock_fd, bd->path,
				write ? IMAGE_LOCK_WRITER : block_perm(bd->flags | BLOCK_RDONLY));
}

void block_close(struct block_dev *bd)
{
	if (bd)
		bd->ops->close(bd);
}

static int block_check_range(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (off > bd->size || len > bd->size - off)
		return err_set(EINVAL, "%s: request at %llu+%llu past the end (%llu)", bd->path,
			       (unsigned long long)off, (unsigned long long)len,
			       (unsigned long long)bd->size);
	return 0;
}

static int block_check_write(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (bd->readonly)
		return err_set(EROFS, "%s: write to a read-only disk", bd->path);
	return block_check_range(bd, off, len);
}

int block_read(struct block_dev *bd, void *buf, uint64_t off, size_t len)
{
	int r = block_check_range(bd, off, len);
	return r < 0 ? r : bd->ops->read(bd, buf, off, len);
}

int block_write(struct block_dev *bd, const void *buf, uint64_t off, size_t len)
{
	int r = block_check_write(bd, off, len);
	return r < 0 ? r : bd->ops->write(bd, buf, off, len);
}

int block_flush(struct block_dev *bd)
{
	return bd->readonly ? 0 : bd->ops->flush(bd);
}

int block_discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	int r = block_check_write(bd, off, len);
	return r < 0 ? r : bd->ops->discard(bd, off, len);
}

int block_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	int r = block_check_write(bd, off, len);
	return r < 0 ? r : bd->ops->write_zeroes(bd, off, len);
}

int block_status(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *pnum, unsigned *status,
		 uint64_t *host)
{
	int r = block_check_range(bd, off, len);
	if (r < 0)
		return r;
	if (bd->ops->status)
		return bd->ops->status(bd, off, len, pnum, status, host);
	*pnum = len;
	*status = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA;
	*host = off;
	return 0;
}
