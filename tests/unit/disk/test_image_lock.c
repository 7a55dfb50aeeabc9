/* Image locks between openers (each its own open file description, as two
 * processes would be): writers exclude writers and readers that refuse
 * writes; readers coexist; a reader that shares writes lets a writer in; a
 * refused opener changes nothing.  And the frozen-layer mark. */
#include "disk/image_lock.h"
#include "test.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/cairn-test-lock-XXXXXX";

static int opener(struct image_perm p)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	int r = image_lock_apply(fd, path, p);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

int main(void)
{
	int t = mkstemp(path);
	if (t < 0)
		return 1;
	close(t);

	int w = opener(IMAGE_LOCK_WRITER);
	CHECK(w >= 0);
	CHECK_EQ(opener(IMAGE_LOCK_WRITER), -EBUSY);
	CHECK(strstr(err_msg(), path) && strstr(err_msg(), "\"write\" lock"));
	CHECK_EQ(opener(IMAGE_LOCK_READER), -EBUSY); /* it would refuse the writer's writes */
	int rs = opener(IMAGE_LOCK_READER_SHARED);
	CHECK(rs >= 0);
	close(w);

	/* readers together; then a writer is refused until they go */
	int r1 = opener(IMAGE_LOCK_READER), r2 = opener(IMAGE_LOCK_READER);
	CHECK(r1 >= 0 && r2 >= 0);
	CHECK_EQ(opener(IMAGE_LOCK_WRITER), -EBUSY);
	close(r1);
	CHECK_EQ(opener(IMAGE_LOCK_WRITER), -EBUSY);
	close(r2);
	w = opener(IMAGE_LOCK_WRITER); /* rs shares writes */
	CHECK(w >= 0);

	/* a writer that becomes a reader (a layer being frozen) lets a new
	 * reader in; a refused change keeps what it had */
	CHECK_EQ(image_lock_apply(w, path, IMAGE_LOCK_READER), 0);
	int r3 = opener(IMAGE_LOCK_READER);
	CHECK(r3 >= 0);
	CHECK_EQ(image_lock_apply(w, path, IMAGE_LOCK_WRITER), -EBUSY);
	CHECK_EQ(opener(IMAGE_LOCK_WRITER), -EBUSY);
	close(r3);
	close(w);
	close(rs);

	/* the frozen mark */
	char snap[64];
	int fd = open(path, O_RDONLY);
	CHECK(!image_frozen_get(fd, snap, sizeof(snap)));
	CHECK_EQ(image_frozen_mark(path, "snapshots/1a2b3c4d"), 0);
	CHECK(image_frozen_get(fd, snap, sizeof(snap)) && !strcmp(snap, "snapshots/1a2b3c4d"));
	CHECK_EQ(image_frozen_clear(path), 0);
	CHECK(!image_frozen_get(fd, snap, sizeof(snap)));
	CHECK_EQ(image_frozen_clear(path), 0); /* twice is fine */
	close(fd);
	unlink(path);
	TEST_DONE();
}
