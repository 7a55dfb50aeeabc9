/* Field-by-field (de)serialization for device state, after bhyve: a device
 * lists its fields once, and the same lines save and restore.
 *
 *	static int uart_state(struct uart *u, struct state_buf *sb)
 *	{
 *		STATE_FIELD(sb, u->ier);
 *		STATE_FIELD(sb, u->lcr);
 *		STATE_FIELD(sb, u->fifo);	// arrays too
 *		return state_buf_finish(sb);
 *	}
 *
 * Saving appends to a buffer that grows as needed; the caller then hands
 * sb.p / sb.off to state_writer_add and calls state_buf_release.  Restoring
 * reads from a record's payload, bounds-checked: a payload too short sets
 * err to -EINVAL (with a message naming WHAT) and the fields are left
 * untouched from then on, so nothing is read past the end.  Fields are
 * copied as they lie in memory (x86: little-endian); a change of layout is
 * a new record version. */
#ifndef CAIRN_SNAPSHOT_STATE_BUF_H
#define CAIRN_SNAPSHOT_STATE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct state_buf {
	bool restoring;
	uint8_t *p;	  /* saving: our buffer; restoring: the payload */
	size_t len, off;  /* saving: capacity and bytes written; restoring: size and cursor */
	int err;	  /* 0, or the first failure (-EINVAL, -ENOMEM) */
	const char *what; /* names the record in messages, e.g. "serial0" */
};

/* Saving into a buffer of our own (free it with state_buf_release). */
void state_buf_init_save(struct state_buf *sb, const char *what);
/* Restoring from DATA, LEN bytes (not copied). */
void state_buf_init_restore(struct state_buf *sb, const void *data, size_t len, const char *what);
/* Copy SIZE bytes of FIELD out (save) or in (restore); returns sb->err. */
int state_buf_field(struct state_buf *sb, void *field, size_t size);
/* A bool as one byte, 0 or 1; a restore refuses any other value (a bool
 * holding one is undefined behaviour in C, and a record carrying one was
 * not written by us). */
int state_buf_bool(struct state_buf *sb, bool *field);
/* Any field; a bool goes through state_buf_bool. */
#define STATE_FIELD(sb, x)                                                                         \
	_Generic((x), bool                                                                         \
		 : state_buf_bool((sb), (bool *)&(x)), default                                     \
		 : state_buf_field((sb), &(x), sizeof(x)))
/* sb->err, or when restoring, -EINVAL if payload bytes were left over
 * (the record does not match the fields listed). */
int state_buf_finish(struct state_buf *sb);
/* Free a save buffer (no-op when restoring). */
void state_buf_release(struct state_buf *sb);

#endif
