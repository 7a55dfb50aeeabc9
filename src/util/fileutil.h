/* File helpers shared by every layer: whole reads/writes that retry on
 * short transfers, and the crash-safe replace (write new, fsync, rename,
 * fsync directory) that every metadata file goes through. */
#ifndef CAIRN_UTIL_FILEUTIL_H
#define CAIRN_UTIL_FILEUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* pread/pwrite the whole length; -errno on failure, -EIO on a short read
 * past the end of file. */
int file_pread_all(int fd, void *buf, size_t len, uint64_t off);
int file_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
int file_write_all(int fd, const void *buf, size_t len);

/* Atomically replace PATH by LEN bytes of DATA: PATH.tmp is written and
 * fsynced, renamed over PATH, and the directory fsynced.  Messages name
 * PATH.  Once the rename is done the replace has happened: a failed
 * directory fsync after it is logged, not returned. */
int file_replace_atomic(const char *path, const void *data, size_t len);

/* The same for a new file: refused (-EEXIST, message naming PATH) when
 * PATH exists, even if it appears while this writes (RENAME_NOREPLACE);
 * the temporary file has a unique name. */
int file_create_atomic(const char *path, const void *data, size_t len);

/* fsync the directory holding PATH (after a rename or create in it). */
/* The same after a rename that committed something: a failure is logged
 * (a crash may still undo the rename), not returned, since nothing can be
 * taken back by then. */
void file_fsync_parent_after_commit(const char *path);
int file_fsync_parent(const char *path);

/* OUT = DIR "/" NAME; -ENAMETOOLONG (message set) when it does not fit. */
int path_join(char *out, size_t len, const char *dir, const char *name);

/* open() a file that must be a regular one (snapshot files, disk images):
 * a FIFO, directory or device is refused with a message naming what it is,
 * and opening never blocks.  Returns the descriptor (O_CLOEXEC) or
 * -errno. */
int file_open_regular(const char *path, int flags);
/* The same for disk images, which may also be block devices. */
int file_open_image(const char *path, int flags);

/* Read a whole (small) regular file into a malloc'd buffer, NUL-terminated. */
int file_read_whole(const char *path, char **data, size_t *len, size_t max_len);

#endif
