/* The machine-state file (state.bin): a versioned, checksummed stream of
 * records, after Xen's migration stream v2.  docs/state-format.md is the
 * specification; this header is the interface.
 *
 * Writing is crash-safe: records go to PATH.tmp, and only commit puts a
 * complete file at PATH (fsync, rename, fsync of the directory), so PATH is
 * either the old file or the whole new one.
 *
 * Reading verifies everything (structure, every record's CRC, the checksum
 * of the whole file, then tags and versions against what the caller knows)
 * before it returns: a reader that opened successfully holds a file whose
 * every record can be applied, and a refused file returns nothing. */
#ifndef CAIRN_SNAPSHOT_STATE_FILE_H
#define CAIRN_SNAPSHOT_STATE_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Tag 0 is the END record; callers' tags are any other value. */
#define STATE_TAG_END 0u
/* Largest payload of one record (the length field is 32 bits). */
#define STATE_RECORD_MAX ((size_t)UINT32_MAX)

struct state_writer;

/* Create PATH.tmp (replacing a leftover one) and write the file header. */
int state_writer_open(const char *path, struct state_writer **out);
/* One whole record.  (tag, instance) must be unique in a file. */
int state_writer_add(struct state_writer *w, uint32_t tag, uint16_t version, uint16_t instance,
		     const void *data, size_t len);
/* The same, streamed: begin, any number of put, end. */
int state_writer_begin(struct state_writer *w, uint32_t tag, uint16_t version, uint16_t instance);
int state_writer_put(struct state_writer *w, const void *data, size_t len);
int state_writer_end(struct state_writer *w);
/* Write the END record, fsync, rename PATH.tmp to PATH, fsync the
 * directory.  Frees w whatever the outcome; on failure PATH.tmp is removed
 * and PATH is untouched. */
int state_writer_commit(struct state_writer *w);
/* Remove PATH.tmp and free w (NULL is allowed). */
void state_writer_abort(struct state_writer *w);

/* A tag the caller can apply, with the newest record version it reads. */
struct state_tag {
	uint32_t tag;
	uint16_t max_version;
	const char *name; /* for messages, e.g. "VCPU" */
};

struct state_reader;

/* Read PATH whole and verify it (see above).  Refusals name PATH and, where
 * it applies, the record's tag, instance, offset and both versions. */
int state_reader_open(const char *path, const struct state_tag *known, size_t nknown,
		      struct state_reader **out);
/* The same on a buffer (copied); NAME stands for the file in messages. */
int state_reader_parse(const void *buf, size_t len, const char *name, const struct state_tag *known,
		       size_t nknown, struct state_reader **out);
/* The record (tag, instance): 0 with its payload (8-byte aligned, valid
 * until close), length and version; -ENOENT (no message) when absent.
 * Any of data, len, version may be NULL. */
int state_reader_get(struct state_reader *r, uint32_t tag, uint16_t instance, const void **data,
		     size_t *len, uint16_t *version);
/* How many records carry TAG (e.g. the number of vCPUs). */
unsigned state_reader_count(struct state_reader *r, uint32_t tag);
/* The name given to open/parse, for callers' own messages. */
const char *state_reader_name(struct state_reader *r);
void state_reader_close(struct state_reader *r);

#endif
