#include "disk/image_lock.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#define PERM_BASE 100
#define SHARED_BASE 200
#define NPERMS 4

const struct image_perm IMAGE_LOCK_WRITER = {IMAGE_PERM_READ | IMAGE_PERM_WRITE,
					     IMAGE_PERM_READ | IMAGE_PERM_WRITE_UNCHANGED};
const struct image_perm IMAGE_LOCK_WRITER_UNCHANGED = {
    IMAGE_PERM_READ | IMAGE_PERM_WRITE_UNCHANGED, IMAGE_PERM_READ | IMAGE_PERM_WRITE_UNCHANGED};
const struct image_perm IMAGE_LOCK_READER = {IMAGE_PERM_READ,
					     IMAGE_PERM_READ | IMAGE_PERM_WRITE_UNCHANGED};
const struct image_perm IMAGE_LOCK_READER_SHARED = {IMAGE_PERM_READ, IMAGE_PERM_ALL};

static const char *const perm_names[NPERMS] = {"consistent read", "write", "write unchanged",
					       "resize"};

/* Does another open file description hold a lock on byte OFF? */
static int byte_taken(int fd, off_t off, bool *taken)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	*taken = fl.l_type != F_UNLCK;
	return 0;
}

static int byte_set(int fd, off_t off, bool on)
{
	struct flock fl = {
	    .l_type = on ? F_RDLCK : F_UNLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* The first conflict with P, if any: its message. */
static int image_lock_check(int fd, const char *path, struct image_perm p)
{
	for (unsigned i = 0; i < NPERMS; i++) {
		bool taken = false;
		int r;
		/* we want permission i: nobody may refuse to share it */
		if ((p.perm & (1u << i)) && (r = byte_taken(fd, SHARED_BASE + i, &taken)) < 0)
			return err_set(-r, "%s: testing the image lock", path);
		if (taken)
			return err_set(EBUSY,
				       "%s: failed to get \"%s\" lock: is another process "
				       "using the image?",
				       path, perm_names[i]);
		/* we refuse to share permission i: nobody may hold it */
		if (!(p.shared & (1u << i)) && (r = byte_taken(fd, PERM_BASE + i, &taken)) < 0)
			return err_set(-r, "%s: testing the image lock", path);
		if (taken)
			return err_set(EBUSY,
				       "%s: failed to get shared \"%s\" lock: is another "
				       "process using the image?",
				       path, perm_names[i]);
	}
	return 0;
}

int image_lock_apply(int fd, const char *path, struct image_perm p)
{
	int r = image_lock_check(fd, path, p);
	if (r < 0)
		return r;
	/* Between the test and the set another opener may slip in: the same
	 * window QEMU has; the locks are advisory among cooperating tools. */
	for (unsigned i = 0; i < NPERMS && r == 0; i++) {
		r = byte_set(fd, PERM_BASE + i, p.perm & (1u << i));
		if (r == 0)
			r = byte_set(fd, SHARED_BASE + i, !(p.shared & (1u << i)));
	}
	if (r == -EINVAL || r == -ENOLCK || r == -EOPNOTSUPP)
		return 0; /* a file system without OFD locks: nothing to share with */
	return r < 0 ? err_set(-r, "%s: taking the image lock", path) : 0;
}

#define FROZEN_XATTR "user.cairn.frozen"

int image_frozen_mark(const char *path, const char *snap)
{
	if (setxattr(path, FROZEN_XATTR, snap, strlen(snap), 0) == 0)
		return 0;
	if (errno == ENOTSUP || errno == EOPNOTSUPP)
		return 0; /* the file mode (0444) is all there is here */
	return err_set(errno, "%s: marking the layer frozen", path);
}

int image_frozen_clear(const char *path)
{
	if (removexattr(path, FROZEN_XATTR) == 0 || errno == ENODATA || errno == ENOTSUP ||
	    errno == EOPNOTSUPP)
		return 0;
	return err_set(errno, "%s: unmarking the frozen layer", path);
}

/* The mark read by GET (fgetxattr or getxattr) into SNAP. */
static bool frozen_text(ssize_t n, char *snap, size_t len)
{
	if (n < 0 && errno == ERANGE) {
		snprintf(snap, len, "(a long name)");
		return true;
	}
	if (n < 0)
		return false;
	snap[n] = 0;
	return true;
}

bool image_frozen_get(int fd, char *snap, size_t len)
{
	if (!len)
		return fgetxattr(fd, FROZEN_XATTR, NULL, 0) >= 0;
	return frozen_text(fgetxattr(fd, FROZEN_XATTR, snap, len - 1), snap, len);
}

bool image_frozen_read(const char *path, char *snap, size_t len)
{
	if (!len)
		return getxattr(path, FROZEN_XATTR, NULL, 0) >= 0;
	return frozen_text(getxattr(path, FROZEN_XATTR, snap, len - 1), snap, len);
}
