/* virtio-blk (modern virtio-pci) driven from user mode. */
#ifndef GUEST_VBLK_H
#define GUEST_VBLK_H

#include <stdint.h>

/* Both print their own result line ("cpuN: ...") and return 0 when ok. */
int vblk_diskfill(uint64_t n, uint64_t seed);
int vblk_diskverify(uint64_t n, uint64_t seed);
/* Reads blocks 0..n-1 straight into guest RAM at dest (the device writes
   there), without reading them (memverify does); prints only "diskread
   FAILED ..." lines. */
int vblk_diskread(uint64_t n, uint64_t seed, uint64_t dest);
/* Queue notifications as 16-bit writes (the default, what drivers do) or
 * 32-bit ones, which miss a VMM's 2-byte ioeventfd and take its trapped
 * path: a test of that path.  Prints its line; 0 when BITS is 16 or 32. */
int vblk_set_notify_bits(uint64_t bits);

/* Raw access to the queue, for vhostile (guest/user/vhostile.c), between
   vblk_raw_begin and vblk_raw_end (which holds the disk for the caller and
   leaves the standard queue set up again). */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
struct vblk_raw {
	struct vring_desc *desc;	/* qsize entries */
	volatile uint16_t *avail, *used; /* rings, both indices 0 after a reset */
	uint16_t qsize;
	uint64_t capacity; /* 512-byte sectors */
	uint32_t features; /* offered, bits 0-31 */
};
/* Prints "WHAT FAILED (reason)" when there is no usable disk. */
int vblk_raw_begin(const char *what, struct vblk_raw *r);
/* Resets the device (status 0) and sets it up again; bad_used (if not 0):
   the used ring's address to give the device instead of the real one. */
int vblk_raw_reset(struct vblk_raw *r, uint64_t bad_used);
/* Publishes avail->idx = avail_idx (ring entries written by the caller) and
   notifies the device. */
void vblk_raw_publish(uint16_t avail_idx);
/* 0 when used->idx moves off used_idx; -1 DEVICE_NEEDS_RESET; -2 deadline. */
int vblk_raw_wait(uint16_t used_idx, uint64_t deadline_ns);
uint8_t vblk_raw_device_status(void);
void vblk_raw_end(void);

#endif
