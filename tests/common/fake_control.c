#include "fake_control.h"
#include "util/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int cmd_echo(void *opaque, json_t *req, json_t *reply)
{
	(void)opaque;
	json_t *v = json_object_get(req, "value");
	if (v)
		json_object_set(reply, "value", v);
	return 0;
}

static int cmd_fail(void *opaque, json_t *req, json_t *reply)
{
	(void)opaque, (void)req;
	json_object_set_new(reply, "partial", json_true()); /* must not show */
	return err_set(ENOENT, "no such widget %s", "w1");
}

static int cmd_fail_plain(void *opaque, json_t *req, json_t *reply)
{
	(void)opaque, (void)req, (void)reply;
	return -EBUSY;
}

static int cmd_override(void *opaque, json_t *req, json_t *reply)
{
	(void)opaque, (void)req;
	json_object_set_new(reply, "ok", json_false());
	json_object_set_new(reply, "id", json_string("forged"));
	json_object_set_new(reply, "x", json_integer(1));
	return 0;
}

/* The output queue and a client slow to read. */
static int cmd_big(void *opaque, json_t *req, json_t *reply)
{
	(void)opaque;
	json_int_t n = json_integer_value(json_object_get(req, "size"));
	if (n <= 0 || n > FAKE_CONTROL_MAX_BIG)
		return err_set(EINVAL, "size out of range");
	char *s = malloc((size_t)n + 1);
	if (!s)
		return -ENOMEM;
	memset(s, 'b', (size_t)n);
	s[n] = 0;
	json_object_set_new(reply, "blob", json_string(s));
	free(s);
	return 0;
}

/* 0, or the negative errno the request names with "status" (a real back
 * end returns nothing else). */
static int wanted_result(json_t *req)
{
	json_int_t st = json_integer_value(json_object_get(req, "status"));
	return st < 0 ? -(int)(1 + (-(st + 1)) % 4095) : 0;
}

/* The caller checked there is room. */
static void add_pending(struct fake_control *fc, struct control_pending *p, int result)
{
	fc->result[fc->npending] = result;
	fc->pending[fc->npending++] = p;
	fc->live++;
}

static int cmd_slow(void *opaque, json_t *req, json_t *reply)
{
	struct fake_control *fc = opaque;
	if (fc->npending == FAKE_CONTROL_MAX_PENDING)
		return err_set(EBUSY, "too many deferred replies");
	struct control_pending *p = control_defer(reply);
	if (!p)
		return err_set(ENOMEM, "no handle");
	if (control_defer(reply) != NULL && !fc->broken)
		fc->broken = "a second handle for one request";
	add_pending(fc, p, wanted_result(req));
	return CONTROL_DEFERRED;
}

static int cmd_now(void *opaque, json_t *req, json_t *reply)
{
	(void)opaque;
	struct control_pending *p = control_defer(reply);
	if (!p)
		return err_set(ENOMEM, "no handle");
	json_t *r = json_pack("{s:s}", "when", "now");
	control_pending_finish(p, wanted_result(req), r);
	json_decref(r);
	return CONTROL_DEFERRED;
}

/* The handle must still be finished (it then only frees). */
static int cmd_undecided(void *opaque, json_t *req, json_t *reply)
{
	struct fake_control *fc = opaque;
	if (fc->npending == FAKE_CONTROL_MAX_PENDING)
		return err_set(EBUSY, "too many deferred replies");
	struct control_pending *p = control_defer(reply);
	if (!p)
		return err_set(ENOMEM, "no handle");
	add_pending(fc, p, 0);
	json_object_set_new(reply, "answered", json_true());
	return wanted_result(req);
}

static int cmd_nohandle(void *opaque, json_t *req, json_t *reply)
{
	(void)opaque, (void)req, (void)reply;
	return CONTROL_DEFERRED;
}

static int cmd_wrong_handle(void *opaque, json_t *req, json_t *reply)
{
	struct fake_control *fc = opaque;
	(void)req;
	json_t *other = json_object();
	struct control_pending *p = control_defer(other);
	json_decref(other);
	if (p && !fc->broken)
		fc->broken = "a handle for an object that is not the reply";
	json_object_set_new(reply, "handle", json_boolean(p != NULL));
	return 0;
}

static int cmd_badstatus(void *opaque, json_t *req, json_t *reply)
{
	(void)opaque, (void)req, (void)reply;
	return 7;
}

/* As a "resume" might end a "pause" that waits. */
static int cmd_release(void *opaque, json_t *req, json_t *reply)
{
	(void)req;
	json_object_set_new(reply, "released", json_integer(fake_control_release(opaque)));
	return 0;
}

static int cmd_close(void *opaque, json_t *req, json_t *reply)
{
	struct fake_control *fc = opaque;
	(void)req;
	control_close(fc->srv);
	fc->srv = NULL;
	fc->closed = true;
	json_object_set_new(reply, "closed", json_true());
	return 0;
}

const struct control_cmd fake_control_cmds[] = {
    {"echo", cmd_echo, "reply with the request's \"value\""},
    {"fail", cmd_fail, "fail with a message"},
    {"fail_plain", cmd_fail_plain, NULL},
    {"override", cmd_override, "try to forge the envelope"},
    {"big", cmd_big, "a long reply"},
    {"slow", cmd_slow, "reply later"},
    {"now", cmd_now, "defer and finish at once"},
    {"undecided", cmd_undecided, "defer, then answer at once"},
    {"nohandle", cmd_nohandle, NULL},
    {"wrong_handle", cmd_wrong_handle, NULL},
    {"badstatus", cmd_badstatus, "returns 7"},
    {"release", cmd_release, "finish every deferred reply"},
    {"close", cmd_close, "close the server from inside a command"},
};
const size_t fake_control_ncmds = sizeof(fake_control_cmds) / sizeof(fake_control_cmds[0]);

void fake_control_finish(struct fake_control *fc, int i, int result, json_t *reply)
{
	struct control_pending *p = fc->pending[i];
	fc->pending[i] = NULL;
	fc->live--;
	control_pending_finish(p, result, reply);
}

int fake_control_release(struct fake_control *fc)
{
	int n = 0;
	for (int i = 0; i < fc->npending; i++) {
		if (!fc->pending[i])
			continue;
		json_t *r = json_pack("{s:b}", "released", 1);
		fake_control_finish(fc, i, fc->result[i], r);
		json_decref(r);
		n++;
	}
	return n;
}
