/* Guest RAM images; the layout is in docs/state-format.md. */
#include "util/endian.h"
#include "snapshot/mem_image.h"
#include "util/err.h"
#include "util/fileutil.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#define MEM_MAGIC "CAIRNMEM"
#define MEM_FORMAT_VERSION 2u /* full images (and layers before version 3) */
#define MEM_FORMAT_PACKED 3u  /* layers: data pages packed from offset 0 */
#define MEM_PACKED_MAGIC "CAIRNPK3"
#define MEM_LOCATOR 16u	      /* version 3: trailer offset and MEM_PACKED_MAGIC, last but the hash */
#define MEM_V1_HEADER 48u  /* version 1: full images only, no identity */
#define MEM_TRAILER_HEADER 128u
#define MEM_HASH_XXH3_64 1u
#define MEM_FLAG_LAYER 1u
#define MEM_PARENT_REF_MAX 4095u
/* A chain deeper than this is refused as broken (a loop of links). */
#define MEM_DEPTH_MAX 65535u
/* No sync_file_range hints while writing: measured here, starting
 * writeback per 64 MiB window (with or without waiting for the previous
 * one) made saves 1.5-2x slower than one fsync at the end. */
/* Pipe between vmsplice and splice (see saver_splice). */
#define MEM_PIPE_SIZE (1 << 20)
/* A packed layer's pages are gathered into a buffer this big and written
 * in one O_DIRECT write each: per-page writes of scattered pages cost
 * 765 ms per 20 MiB layer here, gathered ones a few tens of ms. */
#define MEM_PACK_BUF (8u << 20)
/* Restores read a packed layer in reads of up to this many bytes. */
#define MEM_READ_BUF (8u << 20)

static uint64_t chunk_count(uint64_t size)
{
	return (size + MEM_IMAGE_CHUNK_SIZE - 1) / MEM_IMAGE_CHUNK_SIZE;
}

static uint64_t page_count(uint64_t size)
{
	return size / MEM_IMAGE_PAGE_SIZE;
}

/* u64 words of a page map. */
static uint64_t map_words(uint64_t size)
{
	return (page_count(size) + 63) / 64;
}

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

/* Where each part of a version-2 or -3 trailer starts. */
struct trailer_layout {
	uint64_t ref, data_map, zero_map, hashes, locator, check, total;
};

static struct trailer_layout trailer_layout(uint64_t size, bool layer, uint64_t ref_len,
					    bool packed)
{
	struct trailer_layout t;
	t.ref = MEM_TRAILER_HEADER;
	t.data_map = t.ref + pad8(ref_len);
	uint64_t maps = layer ? 8 * map_words(size) : 0;
	t.zero_map = t.data_map + maps;
	t.hashes = t.zero_map + maps;
	t.locator = t.hashes + 8 * chunk_count(size);
	t.check = t.locator + (packed ? MEM_LOCATOR : 0);
	t.total = t.check + 8;
	return t;
}

static bool map_test(const uint64_t *m, uint64_t page)
{
	return (m[page / 64] >> (page % 64)) & 1;
}

static void map_set(uint64_t *m, uint64_t page)
{
	m[page / 64] |= (uint64_t)1 << (page % 64);
}

/* Any bit of pages [FIRST, FIRST+N) set in M. */
static bool map_any(const uint64_t *m, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n;) {
		if (p % 64 == 0 && p + 64 <= first + n) {
			if (m[p / 64])
				return true;
			p += 64;
		} else if (map_test(m, p++)) {
			return true;
		}
	}
	return false;
}

int mem_id_new(struct mem_id *id)
{
	for (;;) {
		if (getrandom(id->b, sizeof(id->b), 0) != (ssize_t)sizeof(id->b))
			return err_set(errno ? errno : EIO, "no random bytes for a memory image id");
		for (size_t i = 0; i < sizeof(id->b); i++)
			if (id->b[i])
				return 0;
	}
}

void mem_id_format(const struct mem_id *id, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id->b[i]);
}

static bool mem_id_is_zero(const struct mem_id *id)
{
	for (size_t i = 0; i < sizeof(id->b); i++)
		if (id->b[i])
			return false;
	return true;
}

static uint64_t chunk_len(uint64_t size, uint64_t c)
{
	uint64_t off = c * MEM_IMAGE_CHUNK_SIZE;
	return size - off < MEM_IMAGE_CHUNK_SIZE ? size - off : MEM_IMAGE_CHUNK_SIZE;
}

/* 64 bytes per step; a page of guest data usually fails on the first. */
static bool page_is_zero(const uint8_t *p)
{
	for (size_t i = 0; i < MEM_IMAGE_PAGE_SIZE; i += 64) {
		uint64_t w[8];
		memcpy(w, p + i, sizeof(w));
		if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
			return false;
	}
	return true;
}

static int check_size_arg(const char *path, uint64_t size)
{
	if (size == 0 || size % MEM_IMAGE_PAGE_SIZE)
		return err_set(EINVAL, "%s: memory size %llu is not a positive multiple of 4 KiB",
			       path, (unsigned long long)size);
	return 0;
}

/* ---- save ---- */

struct saver {
	const char *tmp;
	int fd;
	int pipe[2];  /* open when fd is O_DIRECT */
	const uint8_t *cur;  /* where image offset cur_off is read from: RAM, or a source's chunk */
	uint64_t cur_off;
	uint64_t run_start, run_end; /* pending run of pages to write */
	uint64_t written;
	/* A packed layer: data pages gathered in PACK (page-aligned, PACK_CAP
	 * bytes), PACK_USED of them not yet written at file offset WRITTEN. */
	uint8_t *pack;
	uint64_t pack_cap, pack_used;
};

static const uint8_t *saver_at(const struct saver *s, uint64_t off)
{
	return s->cur + (off - s->cur_off);
}

/* Where the file system takes O_DIRECT, runs go to disk without the page
 * cache: the RAM is vmspliced into a pipe (the pipe holds references to
 * the pages, nothing is copied) and spliced into the file.  Measured here
 * for 1.9 GiB from the forked writer: 1.0 s, against 3.6-5.8 s for pwrite
 * into the page cache (every page-cache page is a new allocation, slow on
 * a host that hands freed memory back to its hypervisor) and 1.6-3.0 s
 * for pwrite on an O_DIRECT descriptor (pinning pages the writer still
 * shares with the running VM copies each one first).  The price: the
 * image is not in the page cache afterwards, a restore reads it from disk. */
static int saver_splice(struct saver *s, const uint8_t *p, uint64_t len, uint64_t off)
{
	loff_t pos = (loff_t)off;
	while (len > 0) {
		struct iovec v = {.iov_base = (void *)p, .iov_len = len};
		ssize_t n = vmsplice(s->pipe[1], &v, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (uint64_t)n;
		while (n > 0) {
			ssize_t w = splice(s->pipe[0], NULL, s->fd, &pos, (size_t)n, 0);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return w < 0 ? -errno : -EIO;
			n -= w;
		}
	}
	return 0;
}

/* Write the pending run; the next page taken starts a new one. */
static int saver_flush(struct saver *s)
{
	if (s->run_end == s->run_start)
		return 0;
	uint64_t len = s->run_end - s->run_start;
	const uint8_t *p = saver_at(s, s->run_start);
	int r = s->pipe[0] >= 0 ? saver_splice(s, p, len, s->run_start)
				: file_pwrite_all(s->fd, p, len, s->run_start);
	if (r < 0)
		return err_set(-r, "%s: write of %llu bytes at offset %#llx failed", s->tmp,
			       (unsigned long long)len, (unsigned long long)s->run_start);
	s->written += len;
	s->run_start = s->run_end;
	return 0;
}

/* The page at OFF goes into the file (runs of such pages are written
 * together). */
static int saver_take(struct saver *s, uint64_t off)
{
	if (s->run_end != off) { /* a hole lay between */
		int r = saver_flush(s);
		if (r < 0)
			return r;
		s->run_start = off;
	}
	s->run_end = off + MEM_IMAGE_PAGE_SIZE;
	return 0;
}

/* Write the gathered pages of a packed layer at the end of its data. */
static int saver_pack_flush(struct saver *s)
{
	if (s->pack_used == 0)
		return 0;
	int r = file_pwrite_all(s->fd, s->pack, s->pack_used, s->written);
	if (r < 0)
		return err_set(-r, "%s: write of %llu bytes of packed pages at offset %#llx failed",
			       s->tmp, (unsigned long long)s->pack_used,
			       (unsigned long long)s->written);
	s->written += s->pack_used;
	s->pack_used = 0;
	return 0;
}

/* The data page P goes next into a packed layer. */
static int saver_pack(struct saver *s, const uint8_t *p)
{
	if (s->pack_used == s->pack_cap) {
		int r = saver_pack_flush(s);
		if (r < 0)
			return r;
	}
	memcpy(s->pack + s->pack_used, p, MEM_IMAGE_PAGE_SIZE);
	s->pack_used += MEM_IMAGE_PAGE_SIZE;
	return 0;
}

/* What a save records in the trailer besides the chunk checksums. */
struct trailer_fields {
	uint64_t size;
	struct mem_id id;
	const struct mem_image_layer_spec *layer; /* NULL: a full image */
	const uint64_t *data_map, *zero_map;	  /* layer: pages held */
	uint64_t data_pages, zero_pages;
	uint64_t trailer_at; /* where the trailer starts: SIZE, or a layer's packed data's end */
};

static void put_map(uint8_t *t, const uint64_t *m, uint64_t words)
{
	for (uint64_t i = 0; i < words; i++)
		put_le64(t + 8 * i, m[i]);
}

static void trailer_encode(uint8_t *t, const struct trailer_fields *f, const uint64_t *hashes)
{
	const struct mem_image_layer_spec *ly = f->layer;
	uint64_t n = chunk_count(f->size), ref_len = ly ? strlen(ly->parent_ref) : 0;
	struct trailer_layout l = trailer_layout(f->size, ly != NULL, ref_len, ly != NULL);
	memset(t, 0, l.total);
	memcpy(t, MEM_MAGIC, 8);
	put_le32(t + 8, ly ? MEM_FORMAT_PACKED : MEM_FORMAT_VERSION);
	put_le32(t + 12, MEM_TRAILER_HEADER);
	put_le64(t + 16, f->size);
	put_le32(t + 24, MEM_IMAGE_CHUNK_SIZE);
	put_le32(t + 28, MEM_IMAGE_PAGE_SIZE);
	put_le64(t + 32, n);
	put_le32(t + 40, MEM_HASH_XXH3_64);
	put_le32(t + 44, ly ? MEM_FLAG_LAYER : 0);
	memcpy(t + 48, f->id.b, 16);
	if (ly) {
		memcpy(t + 64, ly->parent.b, 16);
		put_le32(t + 80, ly->parent_depth + 1);
		put_le32(t + 84, (uint32_t)ref_len);
		put_le32(t + 104, ly->lineage);
		put_le64(t + 88, f->data_pages);
		put_le64(t + 96, f->zero_pages);
		memcpy(t + l.ref, ly->parent_ref, ref_len);
		put_map(t + l.data_map, f->data_map, map_words(f->size));
		put_map(t + l.zero_map, f->zero_map, map_words(f->size));
	}
	for (uint64_t i = 0; i < n; i++)
		put_le64(t + l.hashes + 8 * i, hashes[i]);
	if (ly) {
		put_le64(t + l.locator, f->trailer_at);
		memcpy(t + l.locator + 8, MEM_PACKED_MAGIC, 8);
	}
	put_le64(t + l.check, XXH3_64bits(t, l.check));
}

/* Each chunk is hashed by a second thread while the first writes it: the
 * write waits on the disk, the hashing on the CPU (about 10% of a save's
 * time here when done in turn).  Both are done before the chunk is handed
 * back to its source, which hands out one at a time. */
struct chunk_hasher {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const uint8_t *p;
	uint64_t len, *out;
	bool busy, quit;
};

static void *chunk_hasher_run(void *opaque)
{
	struct chunk_hasher *h = opaque;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (!h->busy && !h->quit)
			pthread_cond_wait(&h->cond, &h->lock);
		if (!h->busy)
			break;
		pthread_mutex_unlock(&h->lock);
		uint64_t v = XXH3_64bits(h->p, h->len);
		pthread_mutex_lock(&h->lock);
		*h->out = v;
		h->busy = false;
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* Hash P into *OUT: by the hasher thread (H) if there is one, else here. */
static void chunk_hash_start(struct chunk_hasher *h, const uint8_t *p, uint64_t len, uint64_t *out)
{
	if (!h) {
		*out = XXH3_64bits(p, len);
		return;
	}
	pthread_mutex_lock(&h->lock);
	h->p = p;
	h->len = len;
	h->out = out;
	h->busy = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

static void chunk_hash_wait(struct chunk_hasher *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	while (h->busy)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
}

/* What one save is writing: where the chunks come from and what the
 * trailer will say. */
struct save_job {
	struct saver *s;
	const struct mem_image_source *src;
	struct trailer_fields f;
	uint64_t *data_map, *zero_map; /* layer: built while writing */
	uint64_t *hashes;
};

/* One chunk of a full image: its runs of non-zero pages are written (and
 * it is hashed) before it is handed back, so runs never span two chunks. */
static int write_chunk_full(struct save_job *j, uint64_t c, struct chunk_hasher *h)
{
	struct saver *s = j->s;
	uint64_t off = c * MEM_IMAGE_CHUNK_SIZE, len = chunk_len(j->f.size, c);
	chunk_hash_start(h, s->cur, len, &j->hashes[c]);
	int r = 0;
	for (uint64_t p = off; p < off + len && r == 0; p += MEM_IMAGE_PAGE_SIZE)
		if (!page_is_zero(saver_at(s, p)))
			r = saver_take(s, p);
	if (r == 0)
		r = saver_flush(s);
	chunk_hash_wait(h);
	return r;
}

/* One chunk of a layer: only its changed pages; a zero one is noted in
 * the zero map, the others gathered (packed after the previous chunk's)
 * and hashed in order.  The chunk is handed back once its pages are
 * copied, before they are written. */
static int write_chunk_layer(struct save_job *j, uint64_t c)
{
	struct saver *s = j->s;
	const uint64_t *changed = j->f.layer->changed;
	uint64_t first = c * (MEM_IMAGE_CHUNK_SIZE / MEM_IMAGE_PAGE_SIZE);
	uint64_t n = chunk_len(j->f.size, c) / MEM_IMAGE_PAGE_SIZE;
	XXH3_state_t *st = XXH3_createState();
	if (!st)
		return err_set(ENOMEM, "%s", s->tmp);
	XXH3_64bits_reset(st);
	int r = 0;
	for (uint64_t pg = first; pg < first + n && r == 0; pg++) {
		uint64_t off = pg * MEM_IMAGE_PAGE_SIZE;
		if (!map_test(changed, pg))
			continue;
		const uint8_t *p = saver_at(s, off);
		if (page_is_zero(p)) {
			map_set(j->zero_map, pg);
			j->f.zero_pages++;
			continue;
		}
		map_set(j->data_map, pg);
		j->f.data_pages++;
		XXH3_64bits_update(st, p, MEM_IMAGE_PAGE_SIZE);
		r = saver_pack(s, p);
	}
	/* A chunk without data pages has no checksum (0): nothing to read. */
	j->hashes[c] = map_any(j->data_map, first, n) ? XXH3_64bits_digest(st) : 0;
	XXH3_freeState(st);
	return r;
}

static int write_chunk(struct save_job *j, uint64_t c, struct chunk_hasher *h)
{
	const struct mem_image_source *src = j->src;
	if (j->f.layer) {
		uint64_t first = c * (MEM_IMAGE_CHUNK_SIZE / MEM_IMAGE_PAGE_SIZE);
		if (!map_any(j->f.layer->changed, first, chunk_len(j->f.size, c) / MEM_IMAGE_PAGE_SIZE)) {
			j->hashes[c] = 0;
			src->put(src->opaque, c); /* not needed: handed back unread */
			return 0;
		}
	}
	struct saver *s = j->s;
	s->cur = src->get(src->opaque, c);
	s->cur_off = c * MEM_IMAGE_CHUNK_SIZE;
	if (!s->cur)
		return err_set(EIO, "%s: chunk %llu of guest RAM could not be read", s->tmp,
			       (unsigned long long)c);
	int r = j->f.layer ? write_chunk_layer(j, c) : write_chunk_full(j, c, h);
	src->put(src->opaque, c);
	return r;
}

static int write_pages(struct save_job *j, mem_image_progress_fn progress, void *opaque)
{
	struct chunk_hasher hasher = {.busy = false}, *h = NULL;
	pthread_t thread;
	pthread_mutex_init(&hasher.lock, NULL);
	pthread_cond_init(&hasher.cond, NULL);
	if (!j->f.layer && pthread_create(&thread, NULL, chunk_hasher_run, &hasher) == 0)
		h = &hasher;
	uint64_t size = j->f.size, n = chunk_count(size);
	int r = 0;
	for (uint64_t c = 0; c < n && r == 0; c++) {
		r = write_chunk(j, c, h);
		uint64_t done = c * MEM_IMAGE_CHUNK_SIZE + chunk_len(size, c);
		if (r == 0 && progress && progress(opaque, done, size))
			r = err_set(ECANCELED, "%s: save cancelled", j->s->tmp);
	}
	if (h) {
		pthread_mutex_lock(&hasher.lock);
		hasher.quit = true;
		pthread_cond_broadcast(&hasher.cond);
		pthread_mutex_unlock(&hasher.lock);
		pthread_join(thread, NULL);
	}
	pthread_mutex_destroy(&hasher.lock);
	pthread_cond_destroy(&hasher.cond);
	return r;
}

static int save_to(struct save_job *j, uint8_t *trailer, uint64_t tsize,
		   mem_image_progress_fn progress, void *opaque)
{
	struct saver *s = j->s;
	uint64_t size = j->f.size;
	if (!j->f.layer && ftruncate(s->fd, (off_t)size) < 0) /* the holes */
		return err_set(errno, "%s: cannot size to %llu bytes", s->tmp,
			       (unsigned long long)size);
	int r = write_pages(j, progress, opaque);
	if (r == 0 && j->f.layer)
		r = saver_pack_flush(s);
	if (r < 0)
		return r;
	j->f.trailer_at = j->f.layer ? s->written : size;
	/* The trailer's length is not a multiple of the block size. */
	int fl = fcntl(s->fd, F_GETFL);
	if (fl < 0 || ((fl & O_DIRECT) && fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) < 0))
		return err_set(errno, "%s: cannot leave O_DIRECT for the trailer", s->tmp);
	j->f.data_map = j->data_map;
	j->f.zero_map = j->zero_map;
	trailer_encode(trailer, &j->f, j->hashes);
	r = file_pwrite_all(s->fd, trailer, tsize, j->f.trailer_at);
	if (r < 0)
		return err_set(-r, "%s: writing the trailer failed", s->tmp);
	if (fsync(s->fd) < 0)
		return err_set(errno, "%s: fsync failed", s->tmp);
	return 0;
}

static int check_layer_spec(const char *path, const struct mem_image_layer_spec *ly)
{
	if (!ly)
		return 0;
	size_t n = ly->parent_ref ? strlen(ly->parent_ref) : 0;
	if (n == 0 || n > MEM_PARENT_REF_MAX || mem_id_is_zero(&ly->parent) ||
	    ly->parent_depth >= MEM_DEPTH_MAX || ly->lineage == 0 || !ly->changed)
		return err_set(EINVAL, "%s: a memory layer needs a parent (id, name of up to %u "
				       "bytes, depth below %u), a lineage number and a map of "
				       "changed pages",
			       path, MEM_PARENT_REF_MAX, MEM_DEPTH_MAX);
	return 0;
}

/* SRC gives the chunks; ALIGNED: every chunk it gives is page-aligned. */
static int save_common(const char *path, const struct mem_image_source *src, bool aligned,
		       uint64_t size, const struct mem_image_layer_spec *layer,
		       const struct mem_id *id, mem_image_progress_fn progress, void *opaque,
		       struct mem_image_info *info)
{
	int r = check_size_arg(path, size);
	if (r == 0)
		r = check_layer_spec(path, layer);
	if (r < 0)
		return r;
	struct save_job j = {.src = src, .f = {.size = size, .layer = layer}};
	if (id)
		j.f.id = *id;
	else if ((r = mem_id_new(&j.f.id)) < 0)
		return r;
	struct trailer_layout tl = trailer_layout(size, layer != NULL,
						  layer ? strlen(layer->parent_ref) : 0, layer != NULL);
	char *tmp = NULL;
	struct saver s = {.fd = -1, .pipe = {-1, -1}};
	j.s = &s;
	uint8_t *trailer = calloc(1, tl.total);
	j.hashes = malloc(8 * chunk_count(size));
	if (layer) {
		j.data_map = calloc(map_words(size), 8);
		j.zero_map = calloc(map_words(size), 8);
	}
	if (!trailer || !j.hashes || (layer && (!j.data_map || !j.zero_map)) ||
	    asprintf(&tmp, "%s.tmp", path) < 0) {
		tmp = NULL;
		r = err_set(ENOMEM, "%s", path);
		goto out;
	}
	s.tmp = tmp;
	if (layer) {
		s.pack_cap = MEM_PACK_BUF;
		if (!(s.pack = aligned_alloc(MEM_IMAGE_PAGE_SIZE, s.pack_cap))) {
			r = err_set(ENOMEM, "%s: packing buffer", path);
			goto out;
		}
	}
	int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
	s.fd = open(tmp, flags | O_DIRECT, 0644);
	if (s.fd < 0 && errno == EINVAL) /* no O_DIRECT here: through the page cache */
		s.fd = open(tmp, flags, 0644);
	if (s.fd < 0) {
		r = err_set(errno, "%s: cannot create", tmp);
		goto out;
	}
	/* Page-aligned chunks (guest RAM always is) keep every pipe buffer
	 * block-aligned. */
	int fl = fcntl(s.fd, F_GETFL);
	/* A packed layer writes with O_DIRECT from its page-aligned buffer. */
	if (layer || fl < 0 || !(fl & O_DIRECT))
		(void)0;
	else if (aligned && pipe2(s.pipe, O_CLOEXEC) == 0)
		fcntl(s.pipe[1], F_SETPIPE_SZ, MEM_PIPE_SIZE); /* the default 64 KiB also works */
	else
		fcntl(s.fd, F_SETFL, fl & ~O_DIRECT);
	r = save_to(&j, trailer, tl.total, progress, opaque);
	if (s.pipe[0] >= 0) {
		close(s.pipe[0]);
		close(s.pipe[1]);
	}
	if (close(s.fd) < 0 && r == 0)
		r = err_set(errno, "%s: close failed", tmp);
	if (r == 0 && rename(tmp, path) < 0)
		r = err_set(errno, "%s: cannot rename into place", path);
	if (r < 0) {
		unlink(tmp);
		goto out;
	}
	r = file_fsync_parent(path);
	if (r == 0 && info) {
		*info = (struct mem_image_info){
		    .size = size,
		    .data_bytes = s.written,
		    .file_size = j.f.trailer_at + tl.total,
		    .chunks = chunk_count(size),
		    .digest = get_le64(trailer + tl.check),
		    .id = j.f.id,
		    .layer = layer != NULL,
		    .parent = layer ? layer->parent : (struct mem_id){{0}},
		    .depth = layer ? layer->parent_depth + 1 : 0,
		    .lineage = layer ? layer->lineage : 0,
		    .data_pages = layer ? j.f.data_pages : s.written / MEM_IMAGE_PAGE_SIZE,
		    .zero_pages = j.f.zero_pages,
		};
	}
out:
	free(s.pack);
	free(j.hashes);
	free(j.data_map);
	free(j.zero_map);
	free(trailer);
	free(tmp);
	return r;
}

/* RAM that does not change while it is saved, as a source. */
static const void *ram_get(void *opaque, uint64_t c)
{
	return (const uint8_t *)opaque + c * MEM_IMAGE_CHUNK_SIZE;
}

static void ram_put(void *opaque, uint64_t c)
{
}

struct mem_image_source mem_image_ram_source(const void *ram)
{
	return (struct mem_image_source){.get = ram_get, .put = ram_put, .opaque = (void *)ram};
}

int mem_image_save(const char *path, const void *ram, uint64_t size, mem_image_progress_fn progress,
		   void *opaque, struct mem_image_info *info)
{
	struct mem_image_source src = mem_image_ram_source(ram);
	bool aligned = (uintptr_t)ram % MEM_IMAGE_PAGE_SIZE == 0;
	return save_common(path, &src, aligned, size, NULL, NULL, progress, opaque, info);
}

int mem_image_save_from(const char *path, const struct mem_image_source *src, uint64_t size,
			mem_image_progress_fn progress, void *opaque, struct mem_image_info *info)
{
	return save_common(path, src, true, size, NULL, NULL, progress, opaque, info);
}

int mem_image_save_as(const char *path, const struct mem_image_source *src, uint64_t size,
		      const struct mem_image_layer_spec *layer, const struct mem_id *id,
		      mem_image_progress_fn progress, void *opaque, struct mem_image_info *info)
{
	return save_common(path, src, true, size, layer, id, progress, opaque, info);
}
/* ---- reading ---- */

struct mem_layer {
	char *path;
	int fd;
	uint64_t size, nchunks;
	struct mem_image_info info;
	char *parent_ref;		/* "" for a full image */
	uint64_t *data_map, *zero_map;	/* layer: pages held with data / as zero */
	uint64_t *hashes;		/* host order */
	/* A packed layer (version 3): chunk c's data pages lie at file offsets
	 * [pack_off[c], pack_off[c + 1]); nchunks + 1 entries.  NULL otherwise. */
	uint64_t *pack_off;
};

void mem_layer_close(struct mem_layer *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	free(l->path);
	free(l->parent_ref);
	free(l->data_map);
	free(l->zero_map);
	free(l->hashes);
	free(l->pack_off);
	free(l);
}

static void get_map(uint64_t *m, const uint8_t *t, uint64_t words)
{
	for (uint64_t i = 0; i < words; i++)
		m[i] = get_le64(t + 8 * i);
}

static int bad_geometry(const struct mem_layer *l, const uint8_t *t)
{
	return err_set(EUCLEAN,
		       "%s: trailer describes a %llu-byte image in %llu chunks of %u bytes "
		       "(hash %u, flags %#x); expected %llu bytes in %llu chunks of %u",
		       l->path, (unsigned long long)get_le64(t + 16),
		       (unsigned long long)get_le64(t + 32), get_le32(t + 24), get_le32(t + 40),
		       get_le32(t + 44), (unsigned long long)l->size,
		       (unsigned long long)l->nchunks, MEM_IMAGE_CHUNK_SIZE);
}

static bool geometry_ok(const struct mem_layer *l, const uint8_t *t, uint32_t header,
			uint32_t flags_known)
{
	return get_le32(t + 12) == header && get_le64(t + 16) == l->size &&
	       get_le32(t + 24) == MEM_IMAGE_CHUNK_SIZE && get_le32(t + 28) == MEM_IMAGE_PAGE_SIZE &&
	       get_le64(t + 32) == l->nchunks && get_le32(t + 40) == MEM_HASH_XXH3_64 &&
	       (get_le32(t + 44) & ~flags_known) == 0;
}

static uint64_t map_popcount(const uint64_t *m, uint64_t words)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(m[i]);
	return n;
}

/* A packed layer: where each chunk's data pages lie, from the data map;
 * they must fill the file up to its trailer at AT exactly. */
static int packed_offsets(struct mem_layer *l, uint64_t at)
{
	if (!(l->pack_off = malloc(8 * (l->nchunks + 1))))
		return err_set(ENOMEM, "%s", l->path);
	const uint64_t per = MEM_IMAGE_CHUNK_SIZE / MEM_IMAGE_PAGE_SIZE / 64; /* words a chunk */
	uint64_t off = 0, words = map_words(l->size);
	for (uint64_t c = 0; c < l->nchunks; c++) {
		l->pack_off[c] = off;
		for (uint64_t w = c * per; w < (c + 1) * per && w < words; w++)
			off += MEM_IMAGE_PAGE_SIZE * (uint64_t)__builtin_popcountll(l->data_map[w]);
	}
	l->pack_off[l->nchunks] = off;
	if (off != at)
		return err_set(EUCLEAN,
			       "%s: the trailer lies at offset %#llx, but its %llu data pages take "
			       "%#llx bytes",
			       l->path, (unsigned long long)at,
			       (unsigned long long)l->info.data_pages, (unsigned long long)off);
	return 0;
}

/* Every field of a version-2 or -3 trailer T of TSIZE bytes at file offset
 * AT (its checksum already checked) against itself and the image. */
static int trailer2_parse(struct mem_layer *l, const uint8_t *t, uint64_t tsize, uint64_t at)
{
	if (!geometry_ok(l, t, MEM_TRAILER_HEADER, MEM_FLAG_LAYER))
		return bad_geometry(l, t);
	bool layer = get_le32(t + 44) & MEM_FLAG_LAYER;
	bool packed = get_le32(t + 8) == MEM_FORMAT_PACKED;
	uint32_t ref_len = get_le32(t + 84), depth = get_le32(t + 80);
	struct trailer_layout tl = trailer_layout(l->size, layer, ref_len, packed);
	if (packed && (!layer || get_le64(t + tl.locator) != at ||
		       memcmp(t + tl.locator + 8, MEM_PACKED_MAGIC, 8) != 0))
		return err_set(EUCLEAN, "%s: a packed (version 3) trailer that is no layer's, or "
					"whose locator does not name its offset %#llx",
			       l->path, (unsigned long long)at);
	struct mem_image_info *in = &l->info;
	memcpy(in->id.b, t + 48, 16);
	memcpy(in->parent.b, t + 64, 16);
	in->layer = layer;
	in->depth = depth;
	in->data_pages = get_le64(t + 88);
	in->zero_pages = get_le64(t + 96);
	/* version 3 numbers a layer in its lineage; a version-2 layer's depth
	 * stands for it (both count snapshots since the full image) */
	in->lineage = packed ? get_le32(t + 104) : depth;
	bool reserved_zero = !packed || in->lineage != 0;
	for (int i = packed ? 108 : 104; i < (int)MEM_TRAILER_HEADER; i++)
		reserved_zero &= t[i] == 0;
	if (tl.total != tsize || mem_id_is_zero(&in->id) || !reserved_zero ||
	    (layer ? (ref_len == 0 || ref_len > MEM_PARENT_REF_MAX || depth == 0 ||
		      depth > MEM_DEPTH_MAX || mem_id_is_zero(&in->parent) ||
		      memchr(t + tl.ref, 0, ref_len))
		   : (ref_len || depth || !mem_id_is_zero(&in->parent) || in->data_pages ||
		      in->zero_pages)))
		return err_set(EUCLEAN, "%s: the trailer's identity fields are inconsistent", l->path);
	l->parent_ref = strndup((const char *)t + tl.ref, ref_len);
	if (!l->parent_ref)
		return err_set(ENOMEM, "%s", l->path);
	if (layer) {
		uint64_t words = map_words(l->size);
		l->data_map = malloc(8 * words);
		l->zero_map = malloc(8 * words);
		if (!l->data_map || !l->zero_map)
			return err_set(ENOMEM, "%s: page maps", l->path);
		get_map(l->data_map, t + tl.data_map, words);
		get_map(l->zero_map, t + tl.zero_map, words);
		uint64_t tail = page_count(l->size) % 64;
		bool overlap = false, beyond = tail && ((l->data_map[words - 1] |
							 l->zero_map[words - 1]) >> tail);
		for (uint64_t i = 0; i < words; i++)
			overlap |= (l->data_map[i] & l->zero_map[i]) != 0;
		if (overlap || beyond || map_popcount(l->data_map, words) != in->data_pages ||
		    map_popcount(l->zero_map, words) != in->zero_pages)
			return err_set(EUCLEAN, "%s: the trailer's page maps are inconsistent",
				       l->path);
	}
	for (uint64_t i = 0; i < l->nchunks; i++) {
		l->hashes[i] = get_le64(t + tl.hashes + 8 * i);
		uint64_t first = i * (MEM_IMAGE_CHUNK_SIZE / MEM_IMAGE_PAGE_SIZE);
		uint64_t n = chunk_len(l->size, i) / MEM_IMAGE_PAGE_SIZE;
		if (layer && !map_any(l->data_map, first, n) && l->hashes[i] != 0)
			return err_set(EUCLEAN, "%s: chunk %llu has a checksum but no pages",
				       l->path, (unsigned long long)i);
	}
	in->digest = get_le64(t + tl.check);
	return packed ? packed_offsets(l, at) : 0;
}

/* Version 1: a full image without identity; its id is made from its
 * digest, so a layer can name it as its parent. */
static int trailer1_parse(struct mem_layer *l, const uint8_t *t)
{
	if (!geometry_ok(l, t, MEM_V1_HEADER, 0))
		return bad_geometry(l, t);
	for (uint64_t i = 0; i < l->nchunks; i++)
		l->hashes[i] = get_le64(t + MEM_V1_HEADER + 8 * i);
	l->info.digest = get_le64(t + MEM_V1_HEADER + 8 * l->nchunks);
	put_le64(l->info.id.b, l->info.digest);
	memcpy(l->info.id.b + 8, "v1image", 8);
	l->parent_ref = strdup("");
	return l->parent_ref ? 0 : err_set(ENOMEM, "%s", l->path);
}

/* *TSIZE = the trailer's size from its fixed header H (HAVE bytes of it
 * read, at least MEM_V1_HEADER) at file offset AT, where a packed layer's
 * locator points (PACKED) or at the end of the RAM; -errno when H is no
 * trailer this cairn reads there. */
static int trailer_size_from(const struct mem_layer *l, const uint8_t *h, size_t have,
			     uint64_t at, bool packed, uint64_t *tsize)
{
	if (memcmp(h, MEM_MAGIC, 8) != 0)
		return packed ? err_set(EUCLEAN, "%s: no trailer at offset %#llx, where the "
						 "packed layer's locator points",
					l->path, (unsigned long long)at)
			      : err_set(EINVAL,
					"%s: not a cairn memory image, or not one of %llu bytes of "
					"RAM (no trailer at offset %#llx; the file has %llu bytes)",
					l->path, (unsigned long long)l->size,
					(unsigned long long)l->size,
					(unsigned long long)(l->size + have));
	uint32_t version = get_le32(h + 8);
	if (!packed && version == 1) {
		*tsize = MEM_V1_HEADER + 8 * l->nchunks + 8;
		return 0;
	}
	if (version != (packed ? MEM_FORMAT_PACKED : MEM_FORMAT_VERSION))
		return err_set(ENOTSUP,
			       "%s: memory image format version %u at offset %#llx; this cairn reads "
			       "versions 1 and 2 at the end of the RAM, version 3 (a packed layer) "
			       "where the locator at the file's end points",
			       l->path, version, (unsigned long long)at);
	if (have < MEM_TRAILER_HEADER)
		return err_set(EUCLEAN, "%s: truncated: the trailer's header is cut short", l->path);
	uint32_t ref_len = get_le32(h + 84);
	if (ref_len > MEM_PARENT_REF_MAX)
		return err_set(EUCLEAN, "%s: the trailer names a parent of %u bytes (at most %u)",
			       l->path, ref_len, MEM_PARENT_REF_MAX);
	*tsize = trailer_layout(l->size, get_le32(h + 44) & MEM_FLAG_LAYER, ref_len, packed).total;
	return 0;
}

/* A packed layer ends in a locator (its trailer's offset and
 * MEM_PACKED_MAGIC) and the trailer checksum; any other image has its
 * trailer at offset SIZE (the locator's place there holds a chunk
 * checksum).  *AT = where the trailer starts. */
static int trailer_locate(const struct mem_layer *l, uint64_t file_size, uint64_t *at,
			  bool *packed)
{
	uint8_t loc[MEM_LOCATOR];
	*at = l->size;
	*packed = false;
	if (file_size < MEM_LOCATOR + 8)
		return 0;
	uint64_t end = file_size - MEM_LOCATOR - 8;
	int r = file_pread_all(l->fd, loc, sizeof(loc), end);
	if (r < 0)
		return err_set(-r, "%s: reading the trailer", l->path);
	if (memcmp(loc + 8, MEM_PACKED_MAGIC, 8) != 0)
		return 0;
	*packed = true;
	*at = get_le64(loc);
	if (*at % MEM_IMAGE_PAGE_SIZE || *at > end || *at / MEM_IMAGE_PAGE_SIZE > page_count(l->size))
		return err_set(EUCLEAN,
			       "%s: the packed layer's locator names a trailer at offset %#llx (the "
			       "file has %llu bytes, the RAM %llu pages)",
			       l->path, (unsigned long long)*at, (unsigned long long)file_size,
			       (unsigned long long)page_count(l->size));
	return 0;
}

static int layer_read_trailer(struct mem_layer *l, uint64_t file_size)
{
	uint8_t h[MEM_TRAILER_HEADER];
	uint64_t at;
	bool packed;
	int r = trailer_locate(l, file_size, &at, &packed);
	if (r < 0)
		return r;
	uint64_t have = file_size > at ? file_size - at : 0;
	size_t hn = have < sizeof(h) ? (size_t)have : sizeof(h);
	if (hn < MEM_V1_HEADER)
		return err_set(EUCLEAN,
			       "%s: truncated: %llu bytes, a %llu-byte memory image and its trailer "
			       "take more",
			       l->path, (unsigned long long)file_size, (unsigned long long)l->size);
	if ((r = file_pread_all(l->fd, h, hn, at)) < 0)
		return err_set(-r, "%s: reading the trailer", l->path);
	uint64_t tsize = 0;
	if ((r = trailer_size_from(l, h, hn, at, packed, &tsize)) < 0)
		return r;
	if (have != tsize)
		return err_set(EUCLEAN,
			       "%s: %s: %llu bytes, a %llu-byte memory image takes %llu (%llu of %s "
			       "and a %llu-byte trailer)",
			       l->path, have < tsize ? "truncated" : "too long",
			       (unsigned long long)file_size, (unsigned long long)l->size,
			       (unsigned long long)(at + tsize), (unsigned long long)at,
			       packed ? "packed pages" : "RAM", (unsigned long long)tsize);
	uint8_t *t = malloc(tsize);
	if (!t)
		return err_set(ENOMEM, "%s: trailer", l->path);
	if ((r = file_pread_all(l->fd, t, tsize, at)) < 0) {
		free(t);
		return err_set(-r, "%s: reading the trailer", l->path);
	}
	uint64_t stored = get_le64(t + tsize - 8), computed = XXH3_64bits(t, tsize - 8);
	if (stored != computed)
		r = err_set(EUCLEAN, "%s: trailer checksum mismatch (stored %016llx, computed %016llx)",
			    l->path, (unsigned long long)stored, (unsigned long long)computed);
	else if (get_le32(t + 8) == 1)
		r = trailer1_parse(l, t);
	else
		r = trailer2_parse(l, t, tsize, at);
	free(t);
	return r;
}

int mem_layer_open(const char *path, uint64_t size, struct mem_layer **out)
{
	int r = check_size_arg(path, size);
	if (r < 0)
		return r;
	struct mem_layer *l = calloc(1, sizeof(*l));
	if (!l)
		return err_set(ENOMEM, "%s", path);
	l->fd = -1;
	l->size = size;
	l->nchunks = chunk_count(size);
	l->path = strdup(path);
	l->hashes = malloc(8 * l->nchunks);
	if (!l->path || !l->hashes) {
		mem_layer_close(l);
		return err_set(ENOMEM, "%s", path);
	}
	struct stat st;
	if ((l->fd = file_open_regular(path, O_RDONLY)) < 0)
		r = l->fd;
	else if (fstat(l->fd, &st) < 0)
		r = err_set(errno, "%s: stat", path);
	else
		r = layer_read_trailer(l, (uint64_t)st.st_size);
	if (r < 0) {
		mem_layer_close(l);
		return r;
	}
	l->info.size = size;
	l->info.data_bytes = (uint64_t)st.st_blocks * 512;
	l->info.file_size = (uint64_t)st.st_size;
	l->info.chunks = l->nchunks;
	*out = l;
	return 0;
}

const struct mem_image_info *mem_layer_info(const struct mem_layer *l)
{
	return &l->info;
}

const char *mem_layer_path(const struct mem_layer *l)
{
	return l->path;
}

const char *mem_layer_parent_ref(const struct mem_layer *l)
{
	return l->parent_ref;
}

int mem_layer_fd(const struct mem_layer *l)
{
	return l->fd;
}

uint64_t mem_layer_held_word(const struct mem_layer *l, uint64_t w)
{
	if (!l->info.layer) {
		uint64_t pages = page_count(l->size), first = 64 * w;
		return pages - first >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << (pages - first)) - 1;
	}
	return l->data_map[w] | l->zero_map[w];
}

bool mem_layer_holds_data(const struct mem_layer *l, uint64_t page)
{
	return !l->info.layer || map_test(l->data_map, page);
}

static int chunk_mismatch(const struct mem_layer *l, uint64_t c, uint64_t computed)
{
	if (l->pack_off)
		return err_set(EUCLEAN,
			       "%s: chunk %llu (offset %#llx; its %llu data pages packed at file "
			       "offset %#llx) checksum mismatch (stored %016llx, computed %016llx): "
			       "the image was altered",
			       l->path, (unsigned long long)c,
			       (unsigned long long)(c * MEM_IMAGE_CHUNK_SIZE),
			       (unsigned long long)((l->pack_off[c + 1] - l->pack_off[c]) /
						    MEM_IMAGE_PAGE_SIZE),
			       (unsigned long long)l->pack_off[c], (unsigned long long)l->hashes[c],
			       (unsigned long long)computed);
	return err_set(EUCLEAN,
		       "%s: chunk %llu (offset %#llx, %llu bytes) checksum mismatch (stored "
		       "%016llx, computed %016llx): the image was altered",
		       l->path, (unsigned long long)c,
		       (unsigned long long)(c * MEM_IMAGE_CHUNK_SIZE),
		       (unsigned long long)chunk_len(l->size, c),
		       (unsigned long long)l->hashes[c], (unsigned long long)computed);
}

/* Read what chunk C holds into BUF and check it: a full image's whole
 * chunk (holes read as zeros), a layer's data pages one after another.
 * *LEN = bytes read into BUF. */
static int read_chunk(const struct mem_layer *l, uint64_t c, uint8_t *buf, uint64_t *len)
{
	uint64_t off = c * MEM_IMAGE_CHUNK_SIZE, clen = chunk_len(l->size, c);
	int r = 0;
	*len = 0;
	if (l->pack_off) {
		*len = l->pack_off[c + 1] - l->pack_off[c];
		if (*len == 0)
			return 0;
		r = file_pread_all(l->fd, buf, *len, l->pack_off[c]);
	} else if (!l->info.layer) {
		r = file_pread_all(l->fd, buf, clen, off);
		*len = clen;
	} else {
		uint64_t first = off / MEM_IMAGE_PAGE_SIZE, n = clen / MEM_IMAGE_PAGE_SIZE;
		for (uint64_t p = first; p < first + n && r == 0;) {
			if (!map_test(l->data_map, p)) {
				p++;
				continue;
			}
			uint64_t e = p;
			while (e < first + n && map_test(l->data_map, e))
				e++;
			uint64_t bytes = (e - p) * MEM_IMAGE_PAGE_SIZE;
			r = file_pread_all(l->fd, buf + *len, bytes, p * MEM_IMAGE_PAGE_SIZE);
			*len += bytes;
			p = e;
		}
		if (*len == 0)
			return 0; /* nothing held with data here */
	}
	if (r < 0)
		return err_set(-r, "%s: reading chunk %llu at offset %#llx", l->path,
			       (unsigned long long)c, (unsigned long long)off);
	uint64_t h = XXH3_64bits(buf, *len);
	return h == l->hashes[c] ? 0 : chunk_mismatch(l, c, h);
}

int mem_layer_verify_chunk(const struct mem_layer *l, uint64_t c, uint8_t *buf)
{
	uint64_t len;
	return read_chunk(l, c, buf, &len);
}

int mem_image_info(const char *path, uint64_t size, struct mem_image_info *info)
{
	struct mem_layer *l;
	int r = mem_layer_open(path, size, &l);
	if (r < 0)
		return r;
	*info = l->info;
	mem_layer_close(l);
	return 0;
}

int mem_image_parent_ref(const char *path, uint64_t size, char *out, size_t len)
{
	struct mem_layer *l;
	int r = mem_layer_open(path, size, &l);
	if (r < 0)
		return r;
	if (snprintf(out, len, "%s", l->parent_ref) >= (int)len)
		r = err_set(ENAMETOOLONG, "%s: parent name", path);
	mem_layer_close(l);
	return r;
}

/* Verification reads and hashes the chunks in up to VERIFY_THREADS threads
 * that take chunks in turn: 1.9 GiB in the page cache took 95 ms in two
 * threads here, 180 ms in one.  (Hashing a read-only mapping of the file
 * was faster still, 56 ms, but reading a hole of a file on a full tmpfs
 * through a mapping raises SIGBUS; pread returns zeros.) */
#define VERIFY_THREADS 4

struct verifier {
	const struct mem_layer *l;
	atomic_uint_fast64_t next, done;
	atomic_bool stop;
	pthread_mutex_t lock;
	uint64_t bad; /* the lowest failing chunk seen, or UINT64_MAX */
	int err;
	char msg[1024];
};

/* Check the next unclaimed chunk (BUF: one chunk); false when none is
 * left (or stopping).  A claimed chunk is always checked, so the lowest
 * bad one is reported. */
static bool verify_next(struct verifier *v, uint8_t *buf)
{
	if (atomic_load(&v->stop))
		return false;
	uint64_t c = atomic_fetch_add(&v->next, 1);
	if (c >= v->l->nchunks)
		return false;
	uint64_t len;
	int r = read_chunk(v->l, c, buf, &len);
	if (r < 0) {
		pthread_mutex_lock(&v->lock);
		if (c < v->bad) {
			v->bad = c;
			v->err = r;
			snprintf(v->msg, sizeof(v->msg), "%s", err_msg());
		}
		pthread_mutex_unlock(&v->lock);
		atomic_store(&v->stop, true);
	}
	atomic_fetch_add(&v->done, 1);
	return true;
}

static void *verify_run(void *opaque)
{
	struct verifier *v = opaque;
	uint8_t *buf = malloc(MEM_IMAGE_CHUNK_SIZE);
	while (buf && verify_next(v, buf))
		;
	free(buf);
	return NULL;
}

int mem_layer_verify(const struct mem_layer *l, mem_image_progress_fn progress, void *opaque)
{
	uint8_t *buf = malloc(MEM_IMAGE_CHUNK_SIZE);
	if (!buf)
		return err_set(ENOMEM, "%s", l->path);
	posix_fadvise(l->fd, 0, (off_t)l->size, POSIX_FADV_SEQUENTIAL);
	int r = 0;
	uint64_t size = l->size;
	struct verifier v = {.l = l, .bad = UINT64_MAX};
	pthread_mutex_init(&v.lock, NULL);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nthreads = cpus < 1 ? 1 : cpus > VERIFY_THREADS ? VERIFY_THREADS : (unsigned)cpus;
	if (nthreads > l->nchunks)
		nthreads = (unsigned)l->nchunks;
	pthread_t threads[VERIFY_THREADS];
	unsigned started = 0;
	while (started + 1 < nthreads &&
	       pthread_create(&threads[started], NULL, verify_run, &v) == 0)
		started++;
	/* This thread works too, and reports the progress. */
	while (verify_next(&v, buf)) {
		uint64_t done = atomic_load(&v.done) * MEM_IMAGE_CHUNK_SIZE;
		if (progress && progress(opaque, done < size ? done : size, size)) {
			atomic_store(&v.stop, true);
			r = err_set(ECANCELED, "%s: verify cancelled", l->path);
		}
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	if (v.bad != UINT64_MAX)
		r = err_set(-v.err, "%s", v.msg);
	else if (r == 0 && progress && progress(opaque, size, size)) /* the others may have done it all */
		r = err_set(ECANCELED, "%s: verify cancelled", l->path);
	pthread_mutex_destroy(&v.lock);
	free(buf);
	return r;
}

int mem_image_verify(const char *path, uint64_t size, mem_image_progress_fn progress, void *opaque)
{
	struct mem_layer *l;
	int r = mem_layer_open(path, size, &l);
	if (r < 0)
		return r;
	r = mem_layer_verify(l, progress, opaque);
	mem_layer_close(l);
	return r;
}

int mem_image_verify_chunk(const char *path, uint64_t size, uint64_t chunk)
{
	struct mem_layer *l;
	int r = mem_layer_open(path, size, &l);
	if (r < 0)
		return r;
	if (chunk >= l->nchunks) {
		r = err_set(EINVAL, "%s: chunk %llu out of range (the image has %llu)", path,
			    (unsigned long long)chunk, (unsigned long long)l->nchunks);
	} else {
		uint8_t *buf = malloc(MEM_IMAGE_CHUNK_SIZE);
		r = buf ? mem_layer_verify_chunk(l, chunk, buf) : err_set(ENOMEM, "%s", path);
		free(buf);
	}
	mem_layer_close(l);
	return r;
}

static int refuse_layer(const struct mem_layer *l)
{
	char id[33];
	mem_id_format(&l->info.parent, id);
	return err_set(EINVAL, "%s: a memory layer on parent %s (%s): read it as a chain",
		       l->path, l->parent_ref, id);
}

int mem_image_map(const char *path, uint64_t size, void **ptr)
{
	struct mem_layer *l;
	int r = mem_layer_open(path, size, &l);
	if (r < 0)
		return r;
	if (l->info.layer) {
		r = refuse_layer(l);
		mem_layer_close(l);
		return r;
	}
	/* NORESERVE as for fresh guest RAM: copy-on-write pages are charged
	 * only when the guest writes them. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, l->fd, 0);
	if (p == MAP_FAILED)
		r = err_set(errno, "%s: cannot map %llu MiB", path,
			    (unsigned long long)(size >> 20));
	else
		*ptr = p;
	mem_layer_close(l); /* the mapping keeps the file */
	return r;
}

/* Chunk C's pages that L holds and OWNED names (NULL: all it holds) into
 * DST (where the chunk's first page goes) from DATA, what read_chunk gave
 * (a full image's chunk, a layer's data pages one after another).  Only
 * non-zero pages are copied, and zero pages written only where DST is not
 * zero already, so untouched anonymous memory stays unallocated. */
static void put_chunk(const struct mem_layer *l, uint64_t c, const uint8_t *data, uint8_t *dst,
		      const uint64_t *owned)
{
	uint64_t off = c * MEM_IMAGE_CHUNK_SIZE, clen = chunk_len(l->size, c), at = 0;
	for (uint64_t p = 0; p < clen; p += MEM_IMAGE_PAGE_SIZE) {
		uint64_t pg = (off + p) / MEM_IMAGE_PAGE_SIZE;
		const uint8_t *src;
		if (!l->info.layer) {
			src = data + p;
		} else if (map_test(l->data_map, pg)) {
			src = data + at;
			at += MEM_IMAGE_PAGE_SIZE;
		} else if (map_test(l->zero_map, pg)) {
			src = NULL;
		} else {
			continue; /* not held: an older layer's */
		}
		if (owned && !map_test(owned, pg))
			continue; /* a newer layer's */
		if (src && !page_is_zero(src))
			memcpy(dst + p, src, MEM_IMAGE_PAGE_SIZE);
		else if (!page_is_zero(dst + p))
			memset(dst + p, 0, MEM_IMAGE_PAGE_SIZE);
	}
}

/* Copy one chunk, read into BUF (a full image's whole: holes read as
 * zeros, cheaply) and verified before RAM is touched.  (One read per
 * chunk: asking for the holes with SEEK_DATA/SEEK_HOLE per extent was 10x
 * slower on ext4.) */
int mem_layer_load_chunk(const struct mem_layer *l, uint8_t *ram, uint64_t c, uint8_t *buf)
{
	uint64_t len;
	int r = read_chunk(l, c, buf, &len);
	if (r == 0)
		put_chunk(l, c, buf, ram + c * MEM_IMAGE_CHUNK_SIZE, NULL);
	return r;
}

int mem_layer_chunk_into(const struct mem_layer *l, uint64_t c, uint8_t *dst, uint8_t *buf)
{
	uint64_t len;
	int r = read_chunk(l, c, buf, &len);
	if (r == 0)
		put_chunk(l, c, buf, dst, NULL);
	return r;
}

void mem_layer_readahead(const struct mem_layer *l)
{
	if (l->pack_off)
		posix_fadvise(l->fd, 0, (off_t)l->pack_off[l->nchunks], POSIX_FADV_WILLNEED);
}

/* Chunk C holds a page OWNED names (all: OWNED NULL). */
static bool chunk_owned(const struct mem_layer *l, uint64_t c, const uint64_t *owned)
{
	const uint64_t per = MEM_IMAGE_CHUNK_SIZE / MEM_IMAGE_PAGE_SIZE / 64;
	for (uint64_t w = c * per; w < (c + 1) * per && w < map_words(l->size); w++)
		if (mem_layer_held_word(l, w) & (owned ? owned[w] : ~(uint64_t)0))
			return true;
	return false;
}

/* A packed layer: chunks [C, *END) that OWNED needs, read in one pread
 * into BUF (CAP bytes) and each verified; chunks without data pages cost
 * nothing and ride along. */
static int read_packed_run(const struct mem_layer *l, uint64_t c, uint64_t *end,
			   const uint64_t *owned, uint8_t *buf, uint64_t cap)
{
	uint64_t e = c + 1;
	while (e < l->nchunks && l->pack_off[e + 1] - l->pack_off[c] <= cap &&
	       (l->pack_off[e + 1] == l->pack_off[e] || chunk_owned(l, e, owned)))
		e++;
	*end = e;
	uint64_t len = l->pack_off[e] - l->pack_off[c];
	int r = len ? file_pread_all(l->fd, buf, len, l->pack_off[c]) : 0;
	if (r < 0)
		return err_set(-r, "%s: reading %llu bytes of packed pages at offset %#llx (chunks "
				   "%llu to %llu)",
			       l->path, (unsigned long long)len, (unsigned long long)l->pack_off[c],
			       (unsigned long long)c, (unsigned long long)(e - 1));
	for (uint64_t k = c; k < e; k++) {
		uint64_t n = l->pack_off[k + 1] - l->pack_off[k];
		if (n == 0)
			continue;
		uint64_t h = XXH3_64bits(buf + (l->pack_off[k] - l->pack_off[c]), n);
		if (h != l->hashes[k])
			return chunk_mismatch(l, k, h);
	}
	return 0;
}

/* A packed layer is read in order in reads of up to MEM_READ_BUF, each
 * chunk verified before any of its pages is used; other images chunk by
 * chunk. */
int mem_layer_apply(const struct mem_layer *l, uint8_t *ram, const uint64_t *owned)
{
	uint64_t cap = l->pack_off ? MEM_READ_BUF : MEM_IMAGE_CHUNK_SIZE;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return err_set(ENOMEM, "%s", l->path);
	if (!l->pack_off)
		posix_fadvise(l->fd, 0, (off_t)l->size, POSIX_FADV_SEQUENTIAL);
	int r = 0;
	for (uint64_t c = 0, e; r == 0 && c < l->nchunks; c = e) {
		e = c + 1;
		if (!chunk_owned(l, c, owned))
			continue;
		if (!l->pack_off) {
			uint64_t len;
			if ((r = read_chunk(l, c, buf, &len)) == 0)
				put_chunk(l, c, buf, ram + c * MEM_IMAGE_CHUNK_SIZE, owned);
			continue;
		}
		if ((r = read_packed_run(l, c, &e, owned, buf, cap)) < 0)
			break;
		for (uint64_t k = c; k < e; k++)
			put_chunk(l, k, buf + (l->pack_off[k] - l->pack_off[c]),
				  ram + k * MEM_IMAGE_CHUNK_SIZE, owned);
	}
	free(buf);
	return r;
}

int mem_image_load(const char *path, void *ram, uint64_t size)
{
	struct mem_layer *l;
	int r = mem_layer_open(path, size, &l);
	if (r < 0)
		return r;
	uint8_t *buf = l->info.layer ? NULL : malloc(MEM_IMAGE_CHUNK_SIZE);
	if (l->info.layer)
		r = refuse_layer(l);
	else if (!buf)
		r = err_set(ENOMEM, "%s", path);
	else
		posix_fadvise(l->fd, 0, (off_t)size, POSIX_FADV_SEQUENTIAL);
	for (uint64_t c = 0; r == 0 && c < l->nchunks; c++)
		r = mem_layer_load_chunk(l, ram, c, buf);
	free(buf);
	mem_layer_close(l);
	return r;
}
