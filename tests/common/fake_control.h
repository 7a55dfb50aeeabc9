/* A fake command table for tests of the control server (src/control):
 * the unit tests (tests/unit/control) and the fuzz harness
 * (tests/fuzz/fuzz_control.c) drive the real server with these commands.
 *
 *   echo         reply with the request's "value"
 *   fail         fail with a message (what it put in the reply must not show)
 *   fail_plain   fail with -EBUSY and no message
 *   override     try to forge the envelope ("ok", "id"); adds "x": 1
 *   big          a reply of "size" bytes (1 .. FAKE_CONTROL_MAX_BIG)
 *   slow         deferred: the test finishes it (fake_control_finish)
 *   now          deferred and finished before the command returns
 *   undecided    deferred, then answered at once after all
 *   nohandle     returns CONTROL_DEFERRED without a handle
 *   wrong_handle asks a handle for another reply object (must be refused)
 *   badstatus    returns 7 (neither 0, a negative errno nor deferred)
 *   release      finishes every outstanding deferred reply
 *   close        closes the server from inside a command
 *
 * A deferred command's request may carry "status": the result its reply
 * will get (0, or a negative errno; folded into -1..-4095).  Every command
 * takes the struct fake_control passed as control_open()'s opaque.  All of
 * it runs in the event loop's thread. */
#ifndef CAIRN_TESTS_FAKE_CONTROL_H
#define CAIRN_TESTS_FAKE_CONTROL_H

#include "control/control.h"

#include <stdbool.h>
#include <stddef.h>

#define FAKE_CONTROL_MAX_PENDING 512
#define FAKE_CONTROL_MAX_BIG (1 << 20)

struct fake_control {
	struct control_server *srv; /* what "close" closes (then NULL) */
	bool closed;		    /* "close" ran */
	/* Deferred replies in the order they were made: slot i stays i, and
	 * is NULL once finished.  npending counts the handles made so far. */
	struct control_pending *pending[FAKE_CONTROL_MAX_PENDING];
	int result[FAKE_CONTROL_MAX_PENDING]; /* the result each will get */
	int npending;
	int live; /* not finished yet */
	/* The first thing the server did that it must not (e.g. a second
	 * handle for one request), or NULL. */
	const char *broken;
};

extern const struct control_cmd fake_control_cmds[];
extern const size_t fake_control_ncmds;

/* Finish deferred reply I (not finished yet) with RESULT and REPLY (may be
 * NULL; not taken over). */
void fake_control_finish(struct fake_control *fc, int i, int result, json_t *reply);
/* Finish every outstanding one with its own result and {"released": true};
 * returns how many. */
int fake_control_release(struct fake_control *fc);

#endif
