/* Consistency check of one qcow2 image (not its backing chain): every
 * cluster's stored refcount against the references found by walking the
 * header, L1/L2 tables, refcount structures and snapshot tables.  The
 * counts mirror `qemu-img check`. */
#ifndef CAIRN_DISK_QCOW2_CHECK_H
#define CAIRN_DISK_QCOW2_CHECK_H

#include <stdint.h>
#include <stdio.h>

struct qcow2_check_result {
	uint64_t corruptions, leaks, check_errors;
	uint64_t corruptions_fixed, leaks_fixed;
	uint64_t total_clusters;     /* guest clusters */
	uint64_t allocated_clusters; /* guest clusters stored in this image */
	uint64_t fragmented_clusters, compressed_clusters;
	uint64_t image_end_offset;
};

#define QCOW2_CHECK_REPAIR_LEAKS 0x1u
/* Read without image locks (qemu-img check -U): an image in use may look
 * inconsistent. */
#define QCOW2_CHECK_FORCE_SHARE 0x2u

/* Check PATH; with QCOW2_CHECK_REPAIR_LEAKS, leaked clusters get their
 * refcount lowered to the number of references and the result describes
 * the image after repair.  Each problem is described on LOG (may be
 * NULL).  Returns 0 when the check ran (whatever it found), -errno when it
 * could not (the image cannot even be opened). */
int qcow2_check(const char *path, unsigned flags, struct qcow2_check_result *res, FILE *log);

#endif
