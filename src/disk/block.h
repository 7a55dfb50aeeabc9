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
};

#define BLOCK_RDONLY 0x1u
/* Open the image alone, without its backing chain: unallocated ranges read
 * as zeroes.  For tools that look at one layer. */
#define BLOCK_NO_BACKING 0x2u

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

/* Raw images (disk/raw.c). */
int raw_open(const char *path, unsigned flags, struct block_dev **out);

#endif
