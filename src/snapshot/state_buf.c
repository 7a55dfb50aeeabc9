#include "snapshot/state_buf.h"
#include "util/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void state_buf_init_save(struct state_buf *sb, const char *what)
{
	*sb = (struct state_buf){.restoring = false, .what = what ? what : "state"};
}

void state_buf_init_restore(struct state_buf *sb, const void *data, size_t len, const char *what)
{
	*sb = (struct state_buf){
	    .restoring = true,
	    .p = (uint8_t *)data, /* only read from when restoring */
	    .len = len,
	    .what = what ? what : "state",
	};
}

static int sb_grow(struct state_buf *sb, size_t need)
{
	size_t cap = sb->len ? sb->len : 256;
	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			return sb->err = err_set(ENOMEM, "%s: state of %zu bytes", sb->what, need);
		cap *= 2;
	}
	uint8_t *p = realloc(sb->p, cap);
	if (!p)
		return sb->err = err_set(ENOMEM, "%s: state of %zu bytes", sb->what, need);
	sb->p = p;
	sb->len = cap;
	return 0;
}

int state_buf_field(struct state_buf *sb, void *field, size_t size)
{
	if (sb->err)
		return sb->err;
	if (size == 0)
		return 0;
	if (sb->restoring) {
		if (size > sb->len - sb->off)
			return sb->err = err_set(EINVAL,
						 "%s: state payload too short: a %zu-byte field at "
						 "offset %zu, the payload has %zu bytes",
						 sb->what, size, sb->off, sb->len);
		memcpy(field, sb->p + sb->off, size);
	} else {
		if (size > SIZE_MAX - sb->off)
			return sb->err = err_set(ENOMEM, "%s: state too large", sb->what);
		if (sb->off + size > sb->len && sb_grow(sb, sb->off + size) < 0)
			return sb->err;
		memcpy(sb->p + sb->off, field, size);
	}
	sb->off += size;
	return 0;
}

_Static_assert(sizeof(bool) == 1, "a bool field is one byte of a record");

int state_buf_bool(struct state_buf *sb, bool *field)
{
	uint8_t v = sb->restoring ? 0 : *field; /* a restore does not read the old value */
	size_t off = sb->off;
	int r = state_buf_field(sb, &v, 1);
	if (r < 0 || !sb->restoring)
		return r;
	if (v > 1)
		return sb->err = err_set(EINVAL, "%s: a flag of value %u at offset %zu (0 or 1)",
					 sb->what, v, off);
	*field = v;
	return 0;
}

int state_buf_finish(struct state_buf *sb)
{
	if (sb->err)
		return sb->err;
	if (sb->restoring && sb->off != sb->len)
		return sb->err =
			   err_set(EINVAL, "%s: state payload has %zu bytes, the fields take %zu",
				   sb->what, sb->len, sb->off);
	return 0;
}

void state_buf_release(struct state_buf *sb)
{
	if (!sb->restoring)
		free(sb->p);
	sb->p = NULL;
	sb->len = sb->off = 0;
}
