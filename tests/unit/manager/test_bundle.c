/* Unit tests for src/manager/bundle*.c: vm.json as written by older cairn
 * (absolute paths) is read losslessly, written back with the bundle's own
 * files relative to it, and read again wherever the directory now is. */
#include "manager/bundle.h"
#include "test.h"
#include "util/err.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A vm.json in today's format with every member set; %1$s is the bundle. */
static const char old_doc[] =
    "{\"format\": \"cairn-vm\", \"version\": 1, \"name\": \"web\","
    " \"machine_id\": \"0123456789abcdef0123456789abcdef\", \"created\": \"2026-01-01T00:00:00Z\","
    " \"config\": {\"mem_bytes\": 67108864, \"cpus\": 1, \"kernel\": \"/k/testos.elf\","
    "  \"cmdline\": \"shell\", \"pvm_quirks\": true, \"disks\": [{\"path\": "
    "\"%1$s/disks/disk0.qcow2\","
    "  \"format\": \"qcow2\", \"readonly\": false, \"serial\": \"cairn-000000000001\"}]},"
    " \"active\": [\"%1$s/disks/l00000003.qcow2\"], \"current\": \"00000002\", \"resume\": null,"
    " \"snapshots\": {"
    "  \"00000001\": {\"name\": \"a\", \"parent\": null, \"created\": \"2026-01-01T00:00:01Z\","
    "   \"description\": null, \"memory\": false, \"layers\": [\"%1$s/disks/disk0.qcow2\"],"
    "   \"suspend\": false},"
    "  \"00000002\": {\"name\": \"b\", \"parent\": \"00000001\", \"created\": "
    "\"2026-01-01T00:00:02Z\","
    "   \"description\": \"x\", \"memory\": true, \"layers\": [\"%1$s/disks/l00000002.qcow2\"],"
    "   \"suspend\": true}},"
    " \"clones\": [{\"path\": \"/elsewhere/web2\", \"snapshot\": \"00000001\"}],"
    " \"origin\": {\"bundle\": \"/o/base\", \"snapshot\": \"0000000a\", \"snapshot_name\": "
    "\"golden\","
    "  \"layers\": [\"/o/base/disks/l0000000a.qcow2\"]},"
    " \"seed\": \"00000000deadbeef\","
    " \"pending\": {\"op\": \"delete\", \"id\": \"00000001\","
    "  \"snapshot\": {\"name\": \"a\", \"parent\": null, \"created\": \"2026-01-01T00:00:01Z\","
    "   \"description\": null, \"memory\": false, \"layers\": [\"%1$s/disks/disk0.qcow2\"],"
    "   \"suspend\": false},"
    "  \"merges\": [{\"layer\": \"%1$s/disks/disk0.qcow2\", \"into\": "
    "\"%1$s/disks/l00000002.qcow2\","
    "   \"method\": \"commit\"}]},"
    " \"a_later_member\": {\"kept\": true}}";

static json_t *load(const char *dir)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/vm.json", dir);
	return json_load_file(p, 0, NULL);
}

static void write_doc(const char *dir, const char *text)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/vm.json", dir);
	FILE *f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
}

static void check_model(const struct bundle *b, const char *dir)
{
	char p[PATH_MAX];
	CHECK(b->nsnaps == 2 && b->has_active && b->active.n == 1);
	snprintf(p, sizeof(p), "%s/disks/l00000003.qcow2", dir);
	CHECK(!strcmp(b->active.path[0], p));
	snprintf(p, sizeof(p), "%s/disks/disk0.qcow2", dir);
	CHECK(!strcmp(b->config.disks[0].path, p));
	const struct bundle_snapshot *s = bundle_snap(b, "00000002");
	CHECK(s && s->memory && s->suspend && !strcmp(s->parent, "00000001"));
	CHECK(bundle_snap_by_name(b, "a") == bundle_snap(b, "00000001"));
	CHECK(b->pending && b->pending->nmerges == 1 &&
	      b->pending->merges[0].method == BUNDLE_MERGE_COMMIT);
	CHECK(!strcmp(b->pending->merges[0].layer, p));
	CHECK(b->origin && !strcmp(b->origin->layers.path[0], "/o/base/disks/l0000000a.qcow2"));
	CHECK(b->nclones == 1 && !strcmp(b->clones[0].path, "/elsewhere/web2"));
	CHECK(!strcmp(b->seed, "00000000deadbeef"));
}

int main(void)
{
	char dir[] = "/tmp/test_bundle.XXXXXX", moved[64], text[8192], cmd[2 * PATH_MAX];
	if (!mkdtemp(dir))
		return 1;
	snprintf(text, sizeof(text), old_doc, dir);
	write_doc(dir, text);

	/* the old format: every member read, written back as it was (absolute) */
	struct bundle *b;
	CHECK_EQ(bundle_open(dir, true, "test", &b), 0);
	check_model(b, dir);
	json_t *orig = json_loads(text, 0, NULL), *abs = bundle_to_json(b, false);
	json_object_set_new(orig, "version", json_integer(BUNDLE_VERSION)); /* written as 2 */
	CHECK(orig && abs && json_equal(orig, abs));
	json_decref(abs);

	/* saved: the bundle's own files relative, everything else as it was */
	CHECK_EQ(bundle_save(b), 0);
	bundle_close(b);
	json_t *saved = load(dir);
	CHECK(!strcmp(json_string_value(json_array_get(json_object_get(saved, "active"), 0)),
		      "disks/l00000003.qcow2"));
	json_t *origin = json_object_get(saved, "origin");
	CHECK(!strcmp(json_string_value(json_array_get(json_object_get(origin, "layers"), 0)),
		      "/o/base/disks/l0000000a.qcow2"));
	CHECK(json_is_true(json_object_get(json_object_get(saved, "a_later_member"), "kept")));
	json_t *m = json_array_get(json_object_get(json_object_get(saved, "pending"), "merges"), 0);
	CHECK(!strcmp(json_string_value(json_object_get(m, "into")), "disks/l00000002.qcow2"));
	json_decref(saved);

	/* moved: read where it is now, the same model */
	snprintf(moved, sizeof(moved), "%s.moved", dir);
	CHECK_EQ(rename(dir, moved), 0);
	CHECK_EQ(bundle_open(moved, false, NULL, &b), 0);
	check_model(b, moved);
	/* and the moved model, written absolute, is the old document moved */
	char text2[8192];
	snprintf(text2, sizeof(text2), old_doc, moved);
	json_t *want = json_loads(text2, 0, NULL);
	json_object_set_new(want, "version", json_integer(BUNDLE_VERSION));
	abs = bundle_to_json(b, false);
	CHECK(want && abs && json_equal(want, abs));
	json_decref(want);
	json_decref(abs);
	bundle_close(b);

	/* refusals: another version, not an object */
	write_doc(moved,
		  "{\"format\": \"cairn-vm\", \"version\": 3, \"snapshots\": {}, \"config\": {}}");
	CHECK_EQ(bundle_open(moved, false, NULL, &b), -ENOTSUP);
	write_doc(moved,
		  "{\"format\": \"cairn-vm\", \"version\": 1, \"snapshots\": [], \"config\": {}}");
	CHECK_EQ(bundle_open(moved, false, NULL, &b), -EINVAL);

	json_decref(orig);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", moved);
	CHECK_EQ(system(cmd), 0);
	TEST_DONE();
}
