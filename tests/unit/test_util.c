/* Unit tests for src/util: size parsing, error messages, atomic replace. */
#include "test.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "util/size.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_size(void)
{
	uint64_t v = 0;
	CHECK_EQ(size_parse("512M", 1, &v), 0);
	CHECK_EQ(v, 512ULL << 20);
	CHECK_EQ(size_parse("2G", 1, &v), 0);
	CHECK_EQ(v, 2ULL << 30);
	CHECK_EQ(size_parse("2GiB", 1, &v), 0);
	CHECK_EQ(v, 2ULL << 30);
	CHECK_EQ(size_parse("4096", 1, &v), 0);
	CHECK_EQ(v, 4096);
	CHECK_EQ(size_parse("64", 1 << 20, &v), 0);
	CHECK_EQ(v, 64ULL << 20);
	CHECK_EQ(size_parse("1.5G", 1, &v), -EINVAL);
	CHECK_EQ(size_parse("", 1, &v), -EINVAL);
	CHECK_EQ(size_parse("-1", 1, &v), -EINVAL);
	CHECK_EQ(size_parse("12X", 1, &v), -EINVAL);
	CHECK_EQ(size_parse("99999999999999999999", 1, &v), -EINVAL);
	CHECK_EQ(size_parse("17000000000P", 1, &v), -ERANGE);
}

static void test_err(void)
{
	CHECK_EQ(err_set(ENOENT, "%s", "disk.img"), -ENOENT);
	CHECK(strcmp(err_msg(), "disk.img: No such file or directory") == 0);
	err_prefix(-1, "opening %s", "vm");
	CHECK(strcmp(err_msg(), "opening vm: disk.img: No such file or directory") == 0);
	CHECK_EQ(err_set(0, "plain"), -EIO);
	CHECK(strcmp(err_msg(), "plain") == 0);
	/* a message built on an earlier one says the problem once (fault
	 * finding F5: "...: Input/output error: Input/output error") */
	err_set(EIO, "%s", "vm.json.tmp: write failed");
	CHECK_EQ(err_set(EIO, "%s; the disks are back", err_msg()), -EIO);
	CHECK(strcmp(err_msg(), "vm.json.tmp: write failed: Input/output error; the disks are "
				"back") == 0);
	CHECK_EQ(err_set(EIO, "ctl: %s", "x: Input/output error"), -EIO);
	CHECK(strcmp(err_msg(), "ctl: x: Input/output error") == 0);
	/* another errno is still said */
	CHECK_EQ(err_set(ENOSPC, "%s", "x: Input/output error"), -ENOSPC);
	CHECK(strcmp(err_msg(), "x: Input/output error: No space left on device") == 0);
	/* a cleanup between save and restore leaves the failure's message */
	struct err_saved saved;
	err_set(ENOSPC, "first");
	err_save(&saved);
	err_set(EIO, "cleanup");
	err_restore(&saved);
	CHECK(strcmp(err_msg(), "first: No space left on device") == 0);
}

static void test_replace(void)
{
	char dir[] = "/tmp/cairn-test-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/meta.json", dir);
	CHECK_EQ(file_replace_atomic(path, "one", 3), 0);
	CHECK_EQ(file_replace_atomic(path, "second", 6), 0);
	char *data = NULL;
	size_t len = 0;
	CHECK_EQ(file_read_whole(path, &data, &len, 1024), 0);
	CHECK_EQ(len, 6);
	CHECK(data && strcmp(data, "second") == 0);
	free(data);
	CHECK_EQ(file_read_whole(path, &data, &len, 3), -EFBIG);
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	CHECK(access(tmp, F_OK) != 0); /* no leftover */
	unlink(path);
	CHECK_EQ(file_replace_atomic("/nonexistent-dir/x", "a", 1), -ENOENT);
	CHECK(strstr(err_msg(), "/nonexistent-dir/x.tmp") != NULL);
	rmdir(dir);
}

int main(void)
{
	test_size();
	test_err();
	test_replace();
	TEST_DONE();
}
