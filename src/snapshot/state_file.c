/* state.bin writer and reader; the format is docs/state-format.md. */
#include "util/endian.h"
#include "snapshot/state_file.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define STATE_MAGIC "CAIRNST\0"
#define STATE_FORMAT_VERSION 1u
#define STATE_HEADER_SIZE 24u
#define STATE_RECORD_HEADER 16u
#define STATE_END_VERSION 1u
#define STATE_END_PAYLOAD 16u
/* state.bin holds registers and device state: megabytes, not gigabytes. */
#define STATE_FILE_MAX (1ull << 30)
#define WRITE_BUF_SIZE (256u << 10)

static const uint8_t zero_pad[8];

static size_t pad8(size_t n)
{
	return (8 - (n & 7)) & 7;
}

static uint32_t crc32_buf(uint32_t crc, const void *p, size_t n)
{
	return (uint32_t)crc32_z(crc, p, n);
}

static void encode_record_header(uint8_t *h, uint32_t tag, uint16_t version, uint16_t instance,
				 uint32_t len, uint32_t crc)
{
	put_le32(h, tag);
	put_le16(h + 4, version);
	put_le16(h + 6, instance);
	put_le32(h + 8, len);
	put_le32(h + 12, crc);
}

/* ---- writer ---- */

struct state_writer {
	char *path;
	char *tmp;
	int fd;
	int err;      /* first failure; every later call returns it */
	uint8_t *buf; /* holds the bytes [off - buf_len, off) */
	size_t buf_len;
	uint64_t off;	   /* bytes emitted so far */
	uint32_t file_crc; /* CRC of every byte before the open record */
	uint32_t nrecords;
	bool in_record;
	uint32_t rec_tag;
	uint16_t rec_version, rec_instance;
	uint64_t rec_off; /* offset of the open record's header */
	uint64_t rec_len;
	uint32_t rec_crc;
	uint64_t *keys; /* (tag << 16 | instance) of every record, to refuse duplicates */
	size_t nkeys, keys_cap;
};

static int sw_fail(struct state_writer *w, int r)
{
	if (!w->err)
		w->err = r;
	return r;
}

static int sw_flush(struct state_writer *w)
{
	if (!w->buf_len)
		return 0;
	int r = file_pwrite_all(w->fd, w->buf, w->buf_len, w->off - w->buf_len);
	if (r < 0)
		return sw_fail(w, err_set(-r, "%s: write failed", w->tmp));
	w->buf_len = 0;
	return 0;
}

static int sw_emit(struct state_writer *w, const void *p, size_t n)
{
	if (n == 0) /* an empty payload may come as NULL */
		return 0;
	if (w->buf_len + n > WRITE_BUF_SIZE) {
		int r = sw_flush(w);
		if (r < 0)
			return r;
		if (n >= WRITE_BUF_SIZE) {
			r = file_pwrite_all(w->fd, p, n, w->off);
			if (r < 0)
				return sw_fail(w, err_set(-r, "%s: write failed", w->tmp));
			w->off += n;
			return 0;
		}
	}
	memcpy(w->buf + w->buf_len, p, n);
	w->buf_len += n;
	w->off += n;
	return 0;
}

/* Put bytes at an earlier offset (a record header whose length and CRC
 * became known at its end). */
static int sw_patch(struct state_writer *w, uint64_t at, const void *p, size_t n)
{
	uint64_t buf_start = w->off - w->buf_len;
	if (at >= buf_start) {
		memcpy(w->buf + (at - buf_start), p, n);
		return 0;
	}
	int r = file_pwrite_all(w->fd, p, n, at);
	return r < 0 ? sw_fail(w, err_set(-r, "%s: write failed", w->tmp)) : 0;
}

int state_writer_open(const char *path, struct state_writer **out)
{
	struct state_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return err_set(ENOMEM, "%s", path);
	w->fd = -1;
	w->path = strdup(path);
	w->buf = malloc(WRITE_BUF_SIZE);
	if (!w->path || !w->buf || asprintf(&w->tmp, "%s.tmp", path) < 0) {
		w->tmp = NULL;
		state_writer_abort(w);
		return err_set(ENOMEM, "%s", path);
	}
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int r = err_set(errno, "%s: cannot create", w->tmp);
		free(w->tmp);
		w->tmp = NULL; /* nothing to remove */
		state_writer_abort(w);
		return r;
	}
	uint8_t h[STATE_HEADER_SIZE] = {0};
	memcpy(h, STATE_MAGIC, 8);
	put_le32(h + 8, STATE_FORMAT_VERSION);
	put_le32(h + 12, STATE_HEADER_SIZE);
	put_le64(h + 16, 0); /* flags: none defined in version 1 */
	sw_emit(w, h, sizeof(h));
	w->file_crc = crc32_buf(crc32(0, NULL, 0), h, sizeof(h));
	*out = w;
	return 0;
}

static int sw_note_key(struct state_writer *w, uint32_t tag, uint16_t instance)
{
	uint64_t key = (uint64_t)tag << 16 | instance;
	for (size_t i = 0; i < w->nkeys; i++)
		if (w->keys[i] == key)
			return sw_fail(w, err_set(EINVAL,
						  "%s: record tag %#x instance %u written twice",
						  w->path, tag, instance));
	if (w->nkeys == w->keys_cap) {
		size_t cap = w->keys_cap ? w->keys_cap * 2 : 64;
		uint64_t *k = realloc(w->keys, cap * sizeof(*k));
		if (!k)
			return sw_fail(w, err_set(ENOMEM, "%s", w->path));
		w->keys = k;
		w->keys_cap = cap;
	}
	w->keys[w->nkeys++] = key;
	return 0;
}

int state_writer_begin(struct state_writer *w, uint32_t tag, uint16_t version, uint16_t instance)
{
	if (w->err)
		return w->err;
	if (w->in_record)
		return sw_fail(w, err_set(EINVAL, "%s: record tag %#x begun inside record tag %#x",
					  w->path, tag, w->rec_tag));
	if (tag == STATE_TAG_END)
		return sw_fail(
		    w, err_set(EINVAL, "%s: tag 0 is reserved for the END record", w->path));
	int r = sw_note_key(w, tag, instance);
	if (r < 0)
		return r;
	w->in_record = true;
	w->rec_tag = tag;
	w->rec_version = version;
	w->rec_instance = instance;
	w->rec_off = w->off;
	w->rec_len = 0;
	w->rec_crc = crc32(0, NULL, 0);
	/* A placeholder: length and CRC are known at state_writer_end. */
	uint8_t h[STATE_RECORD_HEADER] = {0};
	return sw_emit(w, h, sizeof(h));
}

int state_writer_put(struct state_writer *w, const void *data, size_t len)
{
	if (w->err)
		return w->err;
	if (!w->in_record)
		return sw_fail(w, err_set(EINVAL, "%s: data written outside a record", w->path));
	if (len > STATE_RECORD_MAX - w->rec_len)
		return sw_fail(w, err_set(EFBIG, "%s: record tag %#x instance %u exceeds %zu bytes",
					  w->path, w->rec_tag, w->rec_instance, STATE_RECORD_MAX));
	if (len == 0)
		return 0;
	w->rec_crc = crc32_buf(w->rec_crc, data, len);
	w->rec_len += len;
	return sw_emit(w, data, len);
}

int state_writer_end(struct state_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->in_record)
		return sw_fail(w, err_set(EINVAL, "%s: record ended but none was begun", w->path));
	size_t pad = pad8((size_t)w->rec_len);
	int r = sw_emit(w, zero_pad, pad);
	if (r < 0)
		return r;
	uint8_t h[STATE_RECORD_HEADER];
	encode_record_header(h, w->rec_tag, w->rec_version, w->rec_instance, (uint32_t)w->rec_len,
			     w->rec_crc);
	/* The file CRC runs over the bytes in file order: the header that is
	 * only now known, then the payload already hashed, combined. */
	uint32_t payload_crc = crc32_buf(w->rec_crc, zero_pad, pad);
	w->file_crc = crc32_buf(w->file_crc, h, sizeof(h));
	w->file_crc =
	    (uint32_t)crc32_combine(w->file_crc, payload_crc, (z_off_t)(w->rec_len + pad));
	w->in_record = false;
	w->nrecords++;
	return sw_patch(w, w->rec_off, h, sizeof(h));
}

int state_writer_add(struct state_writer *w, uint32_t tag, uint16_t version, uint16_t instance,
		     const void *data, size_t len)
{
	int r = state_writer_begin(w, tag, version, instance);
	if (r == 0)
		r = state_writer_put(w, data, len);
	if (r == 0)
		r = state_writer_end(w);
	return r;
}

static int sw_finish(struct state_writer *w)
{
	if (w->err)
		return w->err;
	if (w->in_record)
		return sw_fail(
		    w, err_set(EINVAL, "%s: committed inside record tag %#x", w->path, w->rec_tag));
	uint8_t end[STATE_RECORD_HEADER + STATE_END_PAYLOAD];
	uint8_t *p = end + STATE_RECORD_HEADER;
	put_le64(p, w->off);
	put_le32(p + 8, w->nrecords);
	put_le32(p + 12, w->file_crc);
	encode_record_header(end, STATE_TAG_END, STATE_END_VERSION, 0, STATE_END_PAYLOAD,
			     crc32_buf(crc32(0, NULL, 0), p, STATE_END_PAYLOAD));
	int r = sw_emit(w, end, sizeof(end));
	if (r == 0)
		r = sw_flush(w);
	if (r < 0)
		return r;
	if (fsync(w->fd) < 0)
		return sw_fail(w, err_set(errno, "%s: fsync failed", w->tmp));
	if (close(w->fd) < 0) {
		w->fd = -1;
		return sw_fail(w, err_set(errno, "%s: close failed", w->tmp));
	}
	w->fd = -1;
	if (rename(w->tmp, w->path) < 0)
		return sw_fail(w, err_set(errno, "%s: cannot rename into place", w->path));
	free(w->tmp);
	w->tmp = NULL; /* committed: nothing left to remove */
	return file_fsync_parent(w->path);
}

int state_writer_commit(struct state_writer *w)
{
	int r = sw_finish(w);
	state_writer_abort(w);
	return r;
}

void state_writer_abort(struct state_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp)
		unlink(w->tmp);
	free(w->tmp);
	free(w->path);
	free(w->buf);
	free(w->keys);
	free(w);
}

/* ---- reader ---- */

struct state_rec {
	uint32_t tag;
	uint16_t version;
	uint16_t instance;
	uint32_t len;
	uint64_t off; /* of the payload */
};

struct state_reader {
	char *name;
	uint8_t *buf;
	size_t len;
	struct state_rec *recs; /* sorted by (tag, instance) */
	size_t nrecs;
};

struct parse_ctx {
	const char *name;
	const uint8_t *buf;
	size_t len;
	const struct state_tag *known;
	size_t nknown;
};

static const struct state_tag *find_tag(const struct parse_ctx *c, uint32_t tag)
{
	for (size_t i = 0; i < c->nknown; i++)
		if (c->known[i].tag == tag)
			return &c->known[i];
	return NULL;
}

/* "VCPU (tag 0x00000001)" or "tag 0x00000123" for messages. */
static const char *tag_label(const struct parse_ctx *c, uint32_t tag, char *s, size_t n)
{
	const struct state_tag *t = find_tag(c, tag);
	if (tag == STATE_TAG_END)
		snprintf(s, n, "END (tag 0x00000000)");
	else if (t && t->name)
		snprintf(s, n, "%s (tag %#010x)", t->name, tag);
	else
		snprintf(s, n, "tag %#010x", tag);
	return s;
}

static int parse_header(const struct parse_ctx *c)
{
	if (c->len >= 8 && memcmp(c->buf, STATE_MAGIC, 8) != 0)
		return err_set(EINVAL, "%s: not a cairn state file (bad magic)", c->name);
	if (c->len < STATE_HEADER_SIZE)
		return err_set(EUCLEAN, "%s: truncated: %zu bytes, shorter than the %u-byte header",
			       c->name, c->len, STATE_HEADER_SIZE);
	uint32_t version = get_le32(c->buf + 8);
	if (version != STATE_FORMAT_VERSION)
		return err_set(ENOTSUP, "%s: state format version %u; this cairn reads version %u",
			       c->name, version, STATE_FORMAT_VERSION);
	uint32_t hsize = get_le32(c->buf + 12);
	if (hsize != STATE_HEADER_SIZE)
		return err_set(EUCLEAN, "%s: header size %u; format version %u has %u", c->name,
			       hsize, STATE_FORMAT_VERSION, STATE_HEADER_SIZE);
	uint64_t flags = get_le64(c->buf + 16);
	if (flags)
		return err_set(ENOTSUP, "%s: unknown header flags %#llx", c->name,
			       (unsigned long long)flags);
	return 0;
}

static int check_end(const struct parse_ctx *c, const struct state_rec *e, uint32_t nrecords)
{
	uint64_t end_off = e->off - STATE_RECORD_HEADER;
	if (e->version != STATE_END_VERSION || e->instance != 0 || e->len != STATE_END_PAYLOAD)
		return err_set(EUCLEAN,
			       "%s: malformed END record at offset %llu (version %u, instance %u, "
			       "%u bytes)",
			       c->name, (unsigned long long)end_off, e->version, e->instance,
			       e->len);
	const uint8_t *p = c->buf + e->off;
	uint64_t stored_off = get_le64(p);
	uint32_t stored_count = get_le32(p + 8), stored_crc = get_le32(p + 12);
	if (stored_off != end_off || stored_count != nrecords)
		return err_set(EUCLEAN,
			       "%s: END record at offset %llu says offset %llu and %u records; the "
			       "file has %u records before it",
			       c->name, (unsigned long long)end_off, (unsigned long long)stored_off,
			       stored_count, nrecords);
	uint32_t crc = crc32_buf(crc32(0, NULL, 0), c->buf, end_off);
	if (crc != stored_crc)
		return err_set(EUCLEAN,
			       "%s: file checksum mismatch (stored %#010x, computed %#010x): the "
			       "file was altered",
			       c->name, stored_crc, crc);
	uint64_t file_end = e->off + STATE_END_PAYLOAD;
	if (file_end != c->len)
		return err_set(EUCLEAN, "%s: %llu bytes of trailing data after the END record",
			       c->name, (unsigned long long)(c->len - file_end));
	return 0;
}

/* Walk the records: structure, every payload CRC, then the END record and
 * the checksum of the whole file.  Tags and versions are judged only after
 * this, so that a refusal for a version is never a corrupted byte. */
static int parse_records(const struct parse_ctx *c, struct state_rec **out, size_t *nout)
{
	struct state_rec *recs = NULL;
	size_t n = 0, cap = 0;
	uint64_t off = STATE_HEADER_SIZE;
	char label[96];
	int r;
	for (;;) {
		if (off == c->len) {
			r = err_set(EUCLEAN, "%s: truncated at offset %llu: no END record", c->name,
				    (unsigned long long)off);
			goto fail;
		}
		if (c->len - off < STATE_RECORD_HEADER) {
			r = err_set(
			    EUCLEAN,
			    "%s: truncated at offset %llu: %llu bytes left, a record header "
			    "needs %u",
			    c->name, (unsigned long long)off, (unsigned long long)(c->len - off),
			    STATE_RECORD_HEADER);
			goto fail;
		}
		const uint8_t *h = c->buf + off;
		struct state_rec rec = {
		    .tag = get_le32(h),
		    .version = get_le16(h + 4),
		    .instance = get_le16(h + 6),
		    .len = get_le32(h + 8),
		    .off = off + STATE_RECORD_HEADER,
		};
		uint32_t stored_crc = get_le32(h + 12);
		uint64_t room = c->len - rec.off;
		uint64_t padded = (uint64_t)rec.len + pad8(rec.len);
		if (padded > room) {
			r = err_set(EUCLEAN,
				    "%s: truncated: record %s instance %u at offset %llu has %u "
				    "payload bytes, the file has %llu left",
				    c->name, tag_label(c, rec.tag, label, sizeof(label)),
				    rec.instance, (unsigned long long)off, rec.len,
				    (unsigned long long)room);
			goto fail;
		}
		uint32_t crc = crc32_buf(crc32(0, NULL, 0), c->buf + rec.off, rec.len);
		if (crc != stored_crc) {
			r = err_set(EUCLEAN,
				    "%s: record %s instance %u at offset %llu: payload checksum "
				    "mismatch (stored %#010x, computed %#010x)",
				    c->name, tag_label(c, rec.tag, label, sizeof(label)),
				    rec.instance, (unsigned long long)off, stored_crc, crc);
			goto fail;
		}
		if (memcmp(c->buf + rec.off + rec.len, zero_pad, padded - rec.len) != 0) {
			r = err_set(EUCLEAN,
				    "%s: record %s instance %u at offset %llu: non-zero padding",
				    c->name, tag_label(c, rec.tag, label, sizeof(label)),
				    rec.instance, (unsigned long long)off);
			goto fail;
		}
		if (rec.tag == STATE_TAG_END) {
			r = check_end(c, &rec, (uint32_t)n);
			if (r < 0)
				goto fail;
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			struct state_rec *nr = realloc(recs, cap * sizeof(*nr));
			if (!nr) {
				r = err_set(ENOMEM, "%s", c->name);
				goto fail;
			}
			recs = nr;
		}
		recs[n++] = rec;
		off = rec.off + padded;
	}
	*out = recs;
	*nout = n;
	return 0;
fail:
	free(recs);
	return r;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct state_rec *x = a, *y = b;
	if (x->tag != y->tag)
		return x->tag < y->tag ? -1 : 1;
	if (x->instance != y->instance)
		return x->instance < y->instance ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int check_known(const struct parse_ctx *c, struct state_rec *recs, size_t n)
{
	char label[96];
	for (size_t i = 0; i < n; i++) {
		const struct state_rec *rec = &recs[i];
		unsigned long long off = rec->off - STATE_RECORD_HEADER;
		const struct state_tag *t = find_tag(c, rec->tag);
		if (!t)
			return err_set(ENOTSUP,
				       "%s: unknown record tag %#010x (version %u, instance %u) at "
				       "offset %llu: written by a newer cairn?",
				       c->name, rec->tag, rec->version, rec->instance, off);
		if (rec->version > t->max_version)
			return err_set(
			    ENOTSUP,
			    "%s: record %s instance %u at offset %llu has version %u; this "
			    "cairn reads up to version %u",
			    c->name, tag_label(c, rec->tag, label, sizeof(label)), rec->instance,
			    off, rec->version, t->max_version);
	}
	if (n > 1)
		qsort(recs, n, sizeof(*recs), rec_cmp);
	for (size_t i = 1; i < n; i++)
		if (recs[i].tag == recs[i - 1].tag && recs[i].instance == recs[i - 1].instance)
			return err_set(
			    EUCLEAN,
			    "%s: record %s instance %u appears twice (offsets %llu and %llu)",
			    c->name, tag_label(c, recs[i].tag, label, sizeof(label)),
			    recs[i].instance,
			    (unsigned long long)(recs[i - 1].off - STATE_RECORD_HEADER),
			    (unsigned long long)(recs[i].off - STATE_RECORD_HEADER));
	return 0;
}

/* Takes ownership of buf (malloc'd, so payloads at 8-aligned offsets are
 * 8-aligned in memory). */
static int reader_make(uint8_t *buf, size_t len, const char *name, const struct state_tag *known,
		       size_t nknown, struct state_reader **out)
{
	struct parse_ctx c = {name, buf, len, known, nknown};
	struct state_rec *recs = NULL;
	size_t n = 0;
	int r = parse_header(&c);
	if (r == 0)
		r = parse_records(&c, &recs, &n);
	if (r == 0)
		r = check_known(&c, recs, n);
	struct state_reader *rd = NULL;
	if (r == 0) {
		rd = calloc(1, sizeof(*rd));
		if (rd)
			rd->name = strdup(name);
		if (!rd || !rd->name) {
			free(rd);
			rd = NULL;
			r = err_set(ENOMEM, "%s", name);
		}
	}
	if (r < 0) {
		free(recs);
		free(buf);
		return r;
	}
	rd->buf = buf;
	rd->len = len;
	rd->recs = recs;
	rd->nrecs = n;
	*out = rd;
	return 0;
}

int state_reader_parse(const void *buf, size_t len, const char *name, const struct state_tag *known,
		       size_t nknown, struct state_reader **out)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return err_set(ENOMEM, "%s", name);
	if (len) /* memcpy from NULL is undefined even for 0 bytes */
		memcpy(copy, buf, len);
	return reader_make(copy, len, name, known, nknown, out);
}

int state_reader_open(const char *path, const struct state_tag *known, size_t nknown,
		      struct state_reader **out)
{
	char *buf;
	size_t len;
	int r = file_read_whole(path, &buf, &len, STATE_FILE_MAX);
	if (r < 0)
		return r;
	return reader_make((uint8_t *)buf, len, path, known, nknown, out);
}

static const struct state_rec *find_rec(const struct state_reader *r, uint32_t tag,
					uint16_t instance)
{
	struct state_rec key = {.tag = tag, .instance = instance};
	size_t lo = 0, hi = r->nrecs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct state_rec *m = &r->recs[mid];
		if (m->tag < key.tag || (m->tag == key.tag && m->instance < key.instance))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < r->nrecs && r->recs[lo].tag == tag && r->recs[lo].instance == instance)
		return &r->recs[lo];
	return NULL;
}

int state_reader_get(struct state_reader *r, uint32_t tag, uint16_t instance, const void **data,
		     size_t *len, uint16_t *version)
{
	const struct state_rec *rec = find_rec(r, tag, instance);
	if (!rec)
		return -ENOENT;
	if (data)
		*data = r->buf + rec->off;
	if (len)
		*len = rec->len;
	if (version)
		*version = rec->version;
	return 0;
}

unsigned state_reader_count(struct state_reader *r, uint32_t tag)
{
	unsigned n = 0;
	for (size_t i = 0; i < r->nrecs; i++)
		n += r->recs[i].tag == tag;
	return n;
}

const char *state_reader_name(struct state_reader *r)
{
	return r->name;
}

void state_reader_close(struct state_reader *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->buf);
	free(r->recs);
	free(r);
}
