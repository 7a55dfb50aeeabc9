/* The block-backend interface: what a virtual disk needs from an image
 * file.  Raw and qcow2 images implement it.  A block_dev is used from one
 * thread at a time (the VMM's I/O thread). */
#ifndef CAIRN_DISK_BLOCK_H
#define CAIRN_DISK_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block_dev;

struct block_ops {
	int (*read)(struct block_dev *bd, void *buf, uint64_t off, size_t len);
	int (*write)(struct block_dev *bd, const void *buf, uint64_t off, size_t len);
	int (*flush)(struct block_dev *bd);
	int (*discard)(struct block_dev *bd, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct block_dev *bd, uint64_t off, uint64_t len);
	void (*close)(struct block_dev *bd);
	/* Optional: what the image itself holds at OFF (see block_status). */
	int (*status)(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *pnum,
		      unsigned *status, uint64_t *host);
};

struct block_dev {
	const struct block_ops *ops;
	const char *format; /* "raw" or "qcow2" */
	char *path;
	uint64_t size; /* virtual size in bytes */
	bool readonly;
	int lock_fd;	/* the descriptor holding the image's locks */
	unsigned flags; /* BLOCK_* it was opened with */
};

#define BLOCK_RDONLY 0x1u
/* Open the image alone, without its backing chain: unallocated ranges read
 * as zeroes.  For tools that look at one layer. */
#define BLOCK_NO_BACKING 0x2u

/* Image locks (disk/image_lock.h), as QEMU takes them: a writable open
 * holds the write permission and lets others only read; a read-only open
 * lets others read but not write (a backing layer must not change under
 * its readers); a writable open of a frozen layer is refused. */
/* A reader that lets others write: for a look at metadata (a backing
 * file's size) or inside an operation that writes the chain itself. */
#define BLOCK_SHARE_WRITE 0x4u
/* No locks at all (qemu-img's -U, --force-share); read-only only. */
#define BLOCK_FORCE_SHARE 0x8u
/* A writable open whose writes leave the content as it reads (stream,
 * relink, leak repair: QEMU's WRITE_UNCHANGED), so the readers of a
 * backing layer let it in. */
#define BLOCK_WRITE_UNCHANGED 0x10u

/* Open PATH.  FORMAT may be NULL (detected from the header), "raw" or
 * "qcow2".  Errors name the file. */
int block_open(const char *path, const char *format, unsigned flags, struct block_dev **out);
void block_close(struct block_dev *bd);

/* Bounds-checked wrappers: a request past the end, or a write to a
 * read-only device, fails with -EINVAL / -EROFS before reaching the image. */
int block_read(struct block_dev *bd, void *buf, uint64_t off, size_t len);
int block_write(struct block_dev *bd, const void *buf, uint64_t off, size_t len);
int block_flush(struct block_dev *bd);
int block_discard(struct block_dev *bd, uint64_t off, uint64_t len);
int block_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len);

/* What the image itself (not its backing chain) holds at OFF: STATUS gets
 * BLOCK_STATUS_* bits, valid for *PNUM bytes (1 <= *PNUM <= LEN); HOST the
 * offset in the image file when BLOCK_STATUS_DATA (else 0).  A range that
 * is not ALLOCATED comes from the backing chain (or reads as zeroes). */
#define BLOCK_STATUS_ALLOCATED 0x1u /* this layer decides the content */
#define BLOCK_STATUS_ZERO 0x2u	    /* reads as zeroes */
#define BLOCK_STATUS_DATA 0x4u	    /* stored at HOST in this file */
#define BLOCK_STATUS_COMPRESSED 0x8u
int block_status(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *pnum, unsigned *status,
		 uint64_t *host);

/* Format detection from the first bytes of a file ("qcow2" or "raw"). */
const char *block_probe_format(const void *head, size_t len);

/* For the formats: check FD's file may be opened with FLAGS (a writable
 * open of a frozen layer is refused) and take its locks.  Errors name
 * PATH. */
int block_lock_image(int fd, const char *path, unsigned flags);
/* Change BD's locks to a writer's (WRITE) or a reader's; -EBUSY (nothing
 * changed) when another opener conflicts. */
int block_relock(struct block_dev *bd, bool write);

/* Raw images (disk/raw.c). */
int raw_open(const char *path, unsigned flags, struct block_dev **out);

#endif
