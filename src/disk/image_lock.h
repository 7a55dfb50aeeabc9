/* Image locks, the ones QEMU's file driver takes (block/file-posix.c), so
 * that cairn and QEMU see each other's use of an image file: open-file-
 * description byte-range locks, one byte per permission.  Byte 100+i is
 * held (shared) while the opener has permission i; byte 200+i while it
 * refuses to let others have permission i.  Before taking its own, an
 * opener tests the bytes that conflict with what it wants and is refused
 * with a message naming the image and the permission.
 *
 * A frozen layer (a snapshot's read-only past) is marked on the file
 * itself (an extended attribute), and a writable open refuses it even as
 * root, who ignores the file mode. */
#ifndef CAIRN_DISK_IMAGE_LOCK_H
#define CAIRN_DISK_IMAGE_LOCK_H

#include <stdbool.h>
#include <stddef.h>

/* Permission bits (QEMU's BLK_PERM_*). */
#define IMAGE_PERM_READ 0x1u /* consistent read */
#define IMAGE_PERM_WRITE 0x2u
#define IMAGE_PERM_WRITE_UNCHANGED 0x4u
#define IMAGE_PERM_RESIZE 0x8u
#define IMAGE_PERM_ALL 0xfu

/* What an opener holds (PERM) and lets others hold (SHARED). */
struct image_perm {
	unsigned perm, shared;
};

/* A writer: reads and writes, lets others read only. */
extern const struct image_perm IMAGE_LOCK_WRITER;
/* A reader (a backing layer, an inspecting tool): lets others read, not
 * write or resize under it. */
extern const struct image_perm IMAGE_LOCK_READER;
/* A writer whose writes leave the content as it reads: readers of a
 * backing layer share that. */
extern const struct image_perm IMAGE_LOCK_WRITER_UNCHANGED;
/* A reader inside an operation that writes the chain itself (commit): it
 * lets others write. */
extern const struct image_perm IMAGE_LOCK_READER_SHARED;

/* Check for conflicts on FD (PATH for messages) and take P's bytes,
 * dropping bytes FD held before that P does not need.  -EBUSY with a
 * message when another opener conflicts: nothing changed then. */
int image_lock_apply(int fd, const char *path, struct image_perm p);

/* ---- frozen layers ---- */

/* Mark PATH frozen by snapshot SNAP (any short text); remove the mark. */
int image_frozen_mark(const char *path, const char *snap);
int image_frozen_clear(const char *path);
/* Whether FD's (PATH's) file is marked frozen; the snapshot's text in SNAP. */
bool image_frozen_get(int fd, char *snap, size_t len);
bool image_frozen_read(const char *path, char *snap, size_t len);

#endif
