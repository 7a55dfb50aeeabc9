/* libFuzzer harness for the open-and-read path of qcow2 images: the input
 * is an image file; it is opened alone (no backing file), read in a few
 * places, mapped and checked.  Every outcome but a crash or a hang is
 * fine: malformed images must give an error. */
#include "disk/block.h"
#include "disk/chain.h"
#include "disk/qcow2_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	static uint8_t buf[1 << 16];
	if (fd < 0) {
		fd = memfd_create("fuzz-qcow2", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	struct block_dev *bd;
	if (block_open(path, "qcow2", BLOCK_RDONLY | BLOCK_NO_BACKING, &bd) == 0) {
		uint64_t offs[4] = {0, bd->size / 2, bd->size > 4096 ? bd->size - 4096 : 0, 0};
		if (size >= 8)
			memcpy(&offs[3], data + size - 8, 8);
		for (int i = 0; i < 4; i++) {
			uint64_t off = bd->size ? offs[i] % bd->size : 0;
			size_t n =
			    bd->size - off < sizeof(buf) ? (size_t)(bd->size - off) : sizeof(buf);
			block_read(bd, buf, off, n);
		}
		uint64_t off = 0;
		for (int i = 0; i < 64 && off < bd->size; i++) {
			struct chain_extent e;
			if (chain_map_extent(bd, off, &e) < 0)
				break;
			off += e.length;
		}
		block_close(bd);
		struct qcow2_check_result r;
		qcow2_check(path, 0, &r, NULL);
	}
	return 0;
}
