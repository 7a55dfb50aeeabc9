#include "vmm/snapshot_job.h"
#include "disk/block.h"
#include "kvm/dirty.h"
#include "kvm/vm.h"
#include "snapshot/mem_chain.h"
#include "snapshot/page_hash.h"
#include "snapshot/ram_cow.h"
#include "snapshot/snapdir.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"
#include "util/monotime.h"
#include "vmm/config_json.h"
#include "vmm/disk_freeze.h"
#include "vmm/vm_snapshot.h"
#include "vmm/vmm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK MEM_IMAGE_CHUNK_SIZE
#define CHUNK_PAGES (MEM_IMAGE_CHUNK_SIZE / MEM_IMAGE_PAGE_SIZE)

/* What phase 2 hashes into vmm->mem_hash_next (page_hash.h). */
enum snap_hash {
	HASH_NONE,    /* nothing: no table, or the VM ends after this snapshot */
	HASH_ALL,     /* every page: the table does not stand for the parent */
	HASH_CHANGED, /* the changed pages (a consolidated layer holds them all) */
	HASH_FILTER,  /* the changed pages, leaving out those with the parent's content */
};

/* A snapshot being taken.  Phase 1 runs with the VM paused and is short:
 * capture vCPU, VM and device state into memory and fix RAM as it is
 * (write protection, or fork).  The disks are frozen under new overlays
 * before the I/O thread serves another request.  Phase 2 writes the
 * memory image, the state file and meta.json and commits the snapshot
 * directory: for QUIT in this process, otherwise in a writer thread
 * through the userfaultfd view of RAM or in a forked child, while the VM
 * runs on. */
struct snap_job {
	struct vmm *vmm;
	struct snapdir_txn txn;
	struct vm_config frozen; /* the configuration the snapshot records */
	struct vm_snapshot_capture *capture;
	struct vm_snapshot_stats st;
	uint64_t t0, paused_at;
	pid_t child;
	int pipe_rd, pipe_wr;
	/* Phase 2 in a thread of this process through a userfaultfd view of
	 * RAM (ram_cow.h), or, where that is unavailable, in a forked child. */
	struct ram_cow *cow;
	pthread_t writer;
	bool writer_started;
	struct disk_freeze_set disks;
	/* Memory: the pages changed since the memory parent, collected up to
	 * the pause; a layer on the parent (LAYER) or a full image. */
	uint64_t *changed;
	bool collected, committed, layer, keep_parent, consolidated;
	enum snap_hash hash;
	bool hash_ok;	       /* every page HASH asks for was hashed */
	bool hash_settled;     /* the table was updated, or stands as it was */
	uint64_t hash_dropped; /* changed pages left out: the parent's content */
	struct mem_image_layer_spec spec;
	char parent_ref[PATH_MAX];
	const char *memory_why; /* why a full image, for the reply */
	snapshot_done_fn done;
	void *opaque;
	struct snapshot_result res;
};

/* A snapshot that did not commit gives back the changed pages it
 * collected: the next one is still on the old memory parent. */
static void snap_give_back_changed(struct snap_job *j)
{
	struct vmm *vmm = j->vmm;
	if (!j->collected || j->committed)
		return;
	uint64_t words = vm_dirty_words(vmm->vm);
	if (!vmm->mem_changed && !(vmm->mem_changed = calloc(words, 8))) {
		vmm->mem_parent.valid = false; /* no map: the next snapshot is full */
		return;
	}
	for (uint64_t w = 0; w < words; w++)
		vmm->mem_changed[w] |= j->changed[w];
	j->collected = false;
}

static void snap_job_free(struct snap_job *j)
{
	snap_give_back_changed(j);
	if (!j->hash_settled) /* a snapshot that failed: the dirty log alone next */
		j->vmm->mem_hash_ok = false;
	free(j->changed);
	ram_cow_close(j->cow);
	vm_snapshot_capture_free(j->capture);
	vm_config_free(&j->frozen);
	if (j->pipe_rd >= 0)
		close(j->pipe_rd);
	if (j->pipe_wr >= 0)
		close(j->pipe_wr);
	free(j);
}

/* Consolidation keeps chains short without rewriting what came before
 * (docs/snapshots.md): the layer numbered n in its lineage (snapshots since
 * the full image) is written plain on its parent unless FANOUT divides n;
 * then, with FANOUT^k the largest power dividing n, it stands on the
 * nearest image of the chain numbered at most n - FANOUT^k and holds every
 * page the images above that one hold.  Each plain layer is copied once per
 * level, and a chain holds fewer than FANOUT layers a level. */
#define SNAP_MEMORY_FANOUT 16
/* Past this many images (deletes and reverts can leave odd chains), the
 * layer stands on the full image at the bottom. */
#define SNAP_MEMORY_CHAIN_MAX 64

/* The lineage number n's consolidation step: FANOUT^k, or 0 for a plain
 * layer. */
static uint64_t snap_consolidation_step(uint32_t n)
{
	uint64_t step = 0;
	for (uint64_t f = SNAP_MEMORY_FANOUT; n % f == 0; f *= SNAP_MEMORY_FANOUT)
		step = f;
	return step;
}

/* J's layer (lineage number N) stands on the image of its parent's chain
 * that the rule above names, holding also every page the chain's images
 * above that one hold. */
static int snap_consolidate(struct snap_job *j, const char *parent_mem, uint64_t words,
			    uint32_t n, uint64_t step)
{
	struct mem_chain *c;
	int r = mem_chain_open(parent_mem, j->vmm->vm->ram_size, &c);
	if (r < 0)
		return r;
	unsigned len = mem_chain_length(c), t = 0;
	uint64_t floor = step && n > step ? n - step : 0;
	if (len >= SNAP_MEMORY_CHAIN_MAX)
		t = len - 1;
	while (t + 1 < len && mem_layer_info(mem_chain_layer(c, t))->lineage > floor)
		t++;
	const struct mem_layer *target = mem_chain_layer(c, t);
	char target_dir[PATH_MAX];
	snprintf(target_dir, sizeof(target_dir), "%s", mem_layer_path(target));
	char *slash = strrchr(target_dir, '/');
	if (slash)
		*slash = 0;
	r = snapdir_memory_parent_ref(j->res.path, target_dir, j->parent_ref,
				      sizeof(j->parent_ref));
	if (r == 0) {
		for (unsigned i = 0; i < t; i++)
			for (uint64_t w = 0; w < words; w++)
				j->changed[w] |= mem_layer_held_word(mem_chain_layer(c, i), w);
		j->spec.parent = mem_layer_info(target)->id;
		j->spec.parent_depth = mem_layer_info(target)->depth;
		j->consolidated = t > 0;
	}
	mem_chain_close(c);
	return r;
}

/* Before the pause: a full memory image or a layer on the memory parent,
 * and the pages changed since that parent collected so far (the rest at
 * the pause).  A layer needs the parent committed as it was, beside the
 * new snapshot; otherwise the image is full and the reply says why. */
static int snap_choose_memory(struct snap_job *j, bool full)
{
	struct vmm *vmm = j->vmm;
	uint64_t words = vm_dirty_words(vmm->vm);
	if (!(j->changed = calloc(words, 8)))
		return err_set(ENOMEM, "changed-page map");
	/* From the first snapshot on, the next one is a layer on it. */
	int r = vm_dirty_start(vmm->vm);
	if (r == 0)
		r = vm_dirty_collect(vmm->vm, j->changed);
	if (r < 0)
		return r;
	j->collected = true;
	if (vmm->mem_changed) {
		for (uint64_t w = 0; w < words; w++)
			j->changed[w] |= vmm->mem_changed[w];
		memset(vmm->mem_changed, 0, 8 * words);
	}
	char mem[PATH_MAX];
	struct mem_image_info pi;
	j->memory_why = full ? "asked for" : !vmm->mem_parent.valid ? "no memory parent" : NULL;
	if (!j->memory_why &&
	    (snapdir_memory_parent_ref(j->res.path, vmm->mem_parent.dir, j->parent_ref,
				       sizeof(j->parent_ref)) < 0))
		j->memory_why = "the memory parent is in another directory";
	if (!j->memory_why &&
	    (snapdir_path(vmm->mem_parent.dir, SNAPDIR_MEMORY, mem, sizeof(mem)) < 0 ||
	     mem_image_info(mem, vmm->vm->ram_size, &pi) < 0 ||
	     memcmp(&pi.id, &vmm->mem_parent.id, sizeof(pi.id)) != 0))
		j->memory_why = "the memory parent is gone or changed";
	err_clear();
	if (j->memory_why) {
		log_info("snapshot %s: full memory image (%s)", j->res.path, j->memory_why);
		return 0;
	}
	j->layer = true;
	uint32_t n = pi.lineage + 1;
	uint64_t step = snap_consolidation_step(n);
	j->spec = (struct mem_image_layer_spec){.changed = j->changed,
						.parent = vmm->mem_parent.id,
						.parent_ref = j->parent_ref,
						.parent_depth = pi.depth,
						.lineage = n};
	if ((step || pi.depth + 1 >= SNAP_MEMORY_CHAIN_MAX) &&
	    snap_consolidate(j, mem, words, n, step) < 0) {
		log_info("snapshot %s: full memory image (consolidating: %s)", j->res.path,
			 err_msg());
		err_clear();
		j->layer = false;
		j->memory_why = "the chain could not be consolidated";
	}
	return 0;
}

/* Before the pause: what phase 2 hashes.  The table stands for the memory
 * parent only while its id is the parent's (a restore or revert to
 * another snapshot, a failed snapshot, a boot: it does not): then a layer
 * leaves out the pages whose content is the parent's; otherwise every page
 * is hashed, so that the next one can.  A consolidated layer must hold the
 * pages of the layers it replaces, whatever their content: it leaves out
 * none.  A snapshot that ends the VM only filters. */
static void snap_choose_hashing(struct snap_job *j, bool quit)
{
	struct vmm *vmm = j->vmm;
	uint64_t size = vmm->vm->ram_size;
	bool table = vmm->mem_hash_ok && vmm->mem_parent.valid &&
		     !memcmp(&vmm->mem_hash_id, &vmm->mem_parent.id, sizeof(struct mem_id));
	if (quit)
		j->hash = j->layer && !j->consolidated && table ? HASH_FILTER : HASH_NONE;
	else
		j->hash = !j->layer || !table ? HASH_ALL
			  : j->consolidated   ? HASH_CHANGED
					      : HASH_FILTER;
	if (j->hash != HASH_NONE &&
	    ((!vmm->mem_hash && page_hash_new(size, &vmm->mem_hash) < 0) ||
	     (!vmm->mem_hash_next && page_hash_new(size, &vmm->mem_hash_next) < 0))) {
		log_info("snapshot %s: no page hashes (%s): the dirty log alone", j->res.path,
			 err_msg());
		err_clear();
		j->hash = HASH_NONE;
	}
}

/* The chunk holds a changed page. */
static bool snap_chunk_changed(const struct snap_job *j, uint64_t c)
{
	uint64_t words = vm_dirty_words(j->vmm->vm), per = CHUNK_PAGES / 64;
	for (uint64_t w = c * per; w < (c + 1) * per && w < words; w++)
		if (j->changed[w])
			return true;
	return false;
}

/* After the pause, for a layer written through the userfaultfd view: the
 * chunks without changed pages are not read, so the guest may write them
 * at once (a failure only costs copies of chunks written meanwhile). */
static void snap_skip_unchanged(struct snap_job *j)
{
	const uint64_t per = MEM_IMAGE_CHUNK_SIZE / MEM_IMAGE_PAGE_SIZE / 64; /* words per chunk */
	uint64_t words = vm_dirty_words(j->vmm->vm), nchunks = (words + per - 1) / per;
	for (uint64_t c = 0; c < nchunks;) {
		uint64_t e = c;
		while (e < nchunks && !snap_chunk_changed(j, e))
			e++;
		if (e > c && ram_cow_skip(j->cow, c, e - c) < 0)
			err_clear();
		c = e + 1;
	}
}

void vmm_memory_is_snapshot(struct vmm *vmm, const char *dir, const struct mem_id *id,
			    uint32_t depth)
{
	uint64_t words = vm_dirty_words(vmm->vm);
	uint64_t *scratch = calloc(words, 8);
	/* KVM's log and the VMM's marks hold the old machine's writes. */
	if (!scratch || vm_dirty_start(vmm->vm) < 0 || vm_dirty_collect(vmm->vm, scratch) < 0) {
		vmm->mem_parent.valid = false;
		err_clear();
	} else {
		vmm->mem_parent.valid = realpath(dir, vmm->mem_parent.dir) != NULL;
		vmm->mem_parent.id = *id;
		vmm->mem_parent.depth = depth;
	}
	/* The page hashes stand for this memory only if it is the one they
	 * were taken of (a revert to the last snapshot): snap_choose_hashing
	 * compares the ids. */
	free(scratch);
	if (vmm->mem_changed)
		memset(vmm->mem_changed, 0, 8 * words);
}

/* Before the pause: the snapshot's directory and the disks' new overlays. */
static int snap_prepare(struct snap_job *j)
{
	int r = snapdir_begin(j->res.path, &j->txn);
	if (r < 0)
		return r;
	if ((r = disk_freeze_prepare(j->vmm, &j->disks, j->txn.dir)) < 0)
		snapdir_abort(&j->txn);
	return r;
}

/* Undo snap_prepare: no overlay, no directory. */
static void snap_unprepare(struct snap_job *j)
{
	disk_freeze_unprepare(&j->disks);
	snapdir_abort(&j->txn);
}

/* Phase 1 (VM paused): vCPU, VM and device state into memory, with the
 * configuration the snapshot records (its disks being the frozen layers).
 * On failure the prepared overlays and the directory go. */
static int snap_capture(struct snap_job *j)
{
	struct vmm *vmm = j->vmm;
	int r = vm_config_copy(&j->frozen, &vmm->cfg);
	for (unsigned i = 0; r == 0 && i < j->disks.n && (int)i < j->frozen.ndisks; i++)
		j->frozen.disks[i].size = j->disks.d[i].old->size; /* checked by a restore */
	for (unsigned i = 0; r == 0 && i < j->disks.n; i++)
		if (!j->disks.d[i].old->readonly) {
			free(j->frozen.disks[i].path);
			if (!(j->frozen.disks[i].path = strdup(j->disks.d[i].frozen)))
				r = err_set(ENOMEM, "snapshot configuration");
		}
	if (r == 0)
		r = vm_snapshot_capture(vmm->vm, &j->frozen, &j->capture);
	if (r < 0)
		snap_unprepare(j);
	return r;
}

/* After snap_capture, before the I/O thread serves another disk request:
 * the disks onto their overlays, all or none. */
static int snap_freeze_disks(struct snap_job *j)
{
	int r = disk_freeze_apply(j->vmm, &j->disks);
	if (r < 0) {
		snapdir_abort(&j->txn);
		return r;
	}
	unsigned n = 0;
	for (unsigned i = 0; i < j->disks.n; i++)
		if (j->disks.d[i].frozen_now) {
			/* both PATH_MAX arrays, and the overlay's name fits */
			const char *ov = j->disks.d[i].overlay;
			memcpy(j->res.overlays[n++], ov, strnlen(ov, PATH_MAX - 1) + 1);
		}
	j->res.noverlays = n;
	return 0;
}

/* The message of a failed snapshot (ERR, the -errno it failed with, and
 * MSG), saying where its disks are now (the frozen layers are no restore
 * point, so the disks go back if they can).  Returns ERR. */
static int snap_failed(struct snap_job *j, int err, const char *msg, bool vm_paused)
{
	char m[ERR_MSG_MAX];
	snprintf(m, sizeof(m), "%s", msg); /* msg may be err_msg(), overwritten below */
	snapdir_abort(&j->txn);
	int stayed = disk_freeze_undo(j->vmm, &j->disks, vm_paused);
	err_set(err, "%s%s", m,
		stayed ? "; the disks stay on their new overlays (an extra layer, nothing lost)"
		       : "; the disks are back on their layers as before the snapshot");
	j->res.noverlays = 0;
	return err;
}

/* A source over RAM that does not change (a forked child's view, or the
 * paused VM). */
static const void *snap_ram_get(void *opaque, uint64_t c)
{
	return (const uint8_t *)opaque + c * CHUNK;
}

static void snap_ram_put(void *opaque, uint64_t c)
{
	(void)opaque;
	(void)c;
}

/* A full image's source: every page of each chunk is hashed as the save
 * reads it (one pass over RAM), by a thread of its own while the save
 * checksums and writes the chunk; put() waits for it.  Chunks come one at
 * a time (mem_image.h), so one slot is enough.  Without the thread, get()
 * hashes. */
struct snap_hashing_source {
	struct mem_image_source src;
	const struct mem_image_source *inner;
	struct page_hash *table;
	uint64_t hashed; /* chunks */
	pthread_t thread;
	bool threaded, busy, stop;
	const void *p;
	uint64_t c;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *snap_hasher_run(void *opaque)
{
	struct snap_hashing_source *h = opaque;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (!h->busy && !h->stop)
			pthread_cond_wait(&h->cond, &h->lock);
		if (!h->busy)
			break;
		pthread_mutex_unlock(&h->lock);
		page_hash_set(h->table, h->c * CHUNK_PAGES, CHUNK_PAGES, h->p, NULL);
		pthread_mutex_lock(&h->lock);
		h->hashed++;
		h->busy = false;
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* Wait until the chunk handed over is hashed. */
static void snap_hasher_wait(struct snap_hashing_source *h)
{
	pthread_mutex_lock(&h->lock);
	while (h->busy)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
}

static const void *snap_hashing_get(void *opaque, uint64_t c)
{
	struct snap_hashing_source *h = opaque;
	const void *p = h->inner->get(h->inner->opaque, c);
	if (p && h->threaded) {
		snap_hasher_wait(h); /* a chunk got but not put (a failed save) */
		pthread_mutex_lock(&h->lock);
		h->p = p;
		h->c = c;
		h->busy = true;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
	} else if (p) {
		page_hash_set(h->table, c * CHUNK_PAGES, CHUNK_PAGES, p, NULL);
		h->hashed++;
	}
	return p;
}

static void snap_hashing_put(void *opaque, uint64_t c)
{
	struct snap_hashing_source *h = opaque;
	if (h->threaded)
		snap_hasher_wait(h);
	h->inner->put(h->inner->opaque, c);
}

static void snap_hashing_start(struct snap_hashing_source *h, const struct mem_image_source *inner,
			       struct page_hash *table)
{
	*h = (struct snap_hashing_source){
	    .src = {snap_hashing_get, snap_hashing_put, h}, .inner = inner, .table = table};
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->threaded = pthread_create(&h->thread, NULL, snap_hasher_run, h) == 0;
}

/* Stop the thread (after the last chunk is hashed); how many chunks were. */
static uint64_t snap_hashing_end(struct snap_hashing_source *h)
{
	if (h->threaded) {
		pthread_mutex_lock(&h->lock);
		h->stop = true;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->thread, NULL);
	}
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	return h->hashed;
}

/* Phase 2, before a layer is written: hash its changed pages as they were
 * at the pause (every page with HASH_ALL) and, with HASH_FILTER, take out
 * of the layer those whose content is the parent's.  From RAM, or from the
 * userfaultfd view's chunks, peeked without lifting their protection; the
 * chunks left without changed pages are then lifted. */
static void snap_hash_layer(struct snap_job *j, const uint8_t *ram)
{
	struct vmm *vmm = j->vmm;
	uint64_t nchunks = (vmm->vm->ram_size + CHUNK - 1) / CHUNK;
	const uint64_t *only = j->hash == HASH_ALL ? NULL : j->changed;
	j->hash_ok = true;
	for (uint64_t c = 0; c < nchunks; c++) {
		if (only && !snap_chunk_changed(j, c))
			continue;
		const uint8_t *p = ram ? ram + c * CHUNK : ram_cow_peek(j->cow, c);
		if (!p) { /* lost: the save fails */
			j->hash_ok = false;
			continue;
		}
		page_hash_set(vmm->mem_hash_next, c * CHUNK_PAGES, CHUNK_PAGES, p, only);
		if (j->hash == HASH_FILTER)
			j->hash_dropped +=
			    page_hash_drop_same(vmm->mem_hash, vmm->mem_hash_next, c * CHUNK_PAGES,
						CHUNK_PAGES, j->changed);
		if (!ram)
			ram_cow_unpeek(j->cow, c);
	}
	if (!ram)
		snap_skip_unchanged(j);
}

/* Phase 2: RAM (or SRC) is the VM's memory as it was at the pause. */
static int snap_write(struct snap_job *j, const void *ram, const struct mem_image_source *src,
		      uint64_t size)
{
	struct mem_image_source ram_src = {snap_ram_get, snap_ram_put, (void *)ram};
	struct snap_hashing_source hs;
	bool hashing = !j->layer && j->hash == HASH_ALL;
	if (!src)
		src = &ram_src;
	if (j->layer && j->hash != HASH_NONE)
		snap_hash_layer(j, ram);
	if (hashing) {
		snap_hashing_start(&hs, src, j->vmm->mem_hash_next);
		src = &hs.src;
	}
	int r = vm_snapshot_write(j->capture, NULL, src, size, j->layer ? &j->spec : NULL,
				  j->txn.tmp, &j->st);
	if (hashing)
		j->hash_ok = snap_hashing_end(&hs) == (size + CHUNK - 1) / CHUNK;
	if (r == 0) {
		struct snapdir_meta m = {.config = vm_config_to_json(&j->frozen),
					 .pause_us = j->st.pause_us,
					 .memory_bytes = j->st.memory_bytes,
					 .state_bytes = j->st.state_bytes};
		r = m.config ? snapdir_write_meta(&j->txn, &m) : err_set(ENOMEM, "meta.json");
		json_decref(m.config);
	}
	if (r == 0)
		return snapdir_commit(&j->txn);
	snapdir_abort(&j->txn);
	return r;
}

/* The snapshot committed: the page hashes now stand for its memory, or, if
 * the VM's memory parent stays the old one, for that one as before. */
static void snap_hashes_commit(struct snap_job *j)
{
	struct vmm *vmm = j->vmm;
	j->hash_settled = true;
	if (j->keep_parent)
		return;
	if (j->hash == HASH_NONE || !j->hash_ok) {
		vmm->mem_hash_ok = false;
		return;
	}
	if (j->hash == HASH_ALL) {
		struct page_hash *t = vmm->mem_hash;
		vmm->mem_hash = vmm->mem_hash_next;
		vmm->mem_hash_next = t;
	} else {
		/* The pages not hashed are the parent's.  (J->changed: every page
		 * hashed, or, after a filter in this process, those whose hash
		 * differs; the others' entries are the same.) */
		page_hash_copy(vmm->mem_hash, vmm->mem_hash_next, j->changed);
	}
	vmm->mem_hash_id = j->st.memory_id;
	vmm->mem_hash_ok = true;
}

static void snap_finish(struct snap_job *j, int result, const char *msg)
{
	if (result == 0) {
		snap_hashes_commit(j);
		struct vmm *vmm = j->vmm;
		j->committed = !j->keep_parent; /* kept: its pages are given back */
		if (!j->keep_parent) {
			vmm->mem_parent.valid = realpath(j->res.path, vmm->mem_parent.dir) != NULL;
			vmm->mem_parent.id = j->st.memory_id;
			vmm->mem_parent.depth = j->st.memory_depth;
		}
		j->res.memory_depth = j->st.memory_depth;
		j->res.memory_unchanged_pages = j->hash_dropped;
		j->res.memory_why = j->memory_why;
		j->vmm->snapshots++;
		j->res.pause_us = j->st.pause_us;
		j->res.memory_bytes = j->st.memory_bytes;
		j->res.total_us = monotime_us() - j->t0;
	}
	log_info("snapshot %s: %s", j->res.path, result < 0 ? msg : "committed");
	j->done(j->opaque, result, msg, &j->res);
}

/* The writer's report: 0 and its stats, or the error message. */
struct snap_report {
	int result;
	uint64_t memory_bytes;
	struct mem_id memory_id;
	uint32_t memory_depth;
	bool hash_ok;
	uint64_t hash_dropped;
	char msg[1024];
};

/* Phase 2 wherever it runs (forked child or writer thread): write the
 * snapshot from RAM or SRC, then the report to FD.  0 when both went. */
static int snap_write_report(struct snap_job *j, int fd, const void *ram,
			     const struct mem_image_source *src)
{
	struct snap_report rep = {0};
	rep.result = snap_write(j, ram, src, j->vmm->vm->ram_size);
	rep.memory_bytes = j->st.memory_bytes;
	rep.memory_id = j->st.memory_id;
	rep.memory_depth = j->st.memory_depth;
	rep.hash_ok = j->hash_ok;
	rep.hash_dropped = j->hash_dropped;
	snprintf(rep.msg, sizeof(rep.msg), "%s", err_msg());
	ssize_t w = write(fd, &rep, sizeof(rep)); /* short: the reply says it died */
	return w == (ssize_t)sizeof(rep) && rep.result == 0 ? 0 : -1;
}

/* A writer thread reads guest RAM: wait for it, then lift what protection
 * is left.  (A forked writer has its own copy of RAM.) */
static void snap_writer_end(struct snap_job *j)
{
	if (j->writer_started)
		pthread_join(j->writer, NULL);
	j->writer_started = false;
	ram_cow_close(j->cow);
	j->cow = NULL;
}

static void snap_writer_done(void *opaque, uint32_t events)
{
	struct snap_job *j = opaque;
	struct snap_report rep = {.result = -EIO};
	ssize_t n = read(j->pipe_rd, &rep, sizeof(rep));
	if (n != (ssize_t)sizeof(rep)) {
		rep.result = -EIO;
		snprintf(rep.msg, sizeof(rep.msg), "%.900s: the snapshot writer (pid %d) died",
			 j->res.path, (int)j->child);
	}
	if (!j->writer_started) {
		int status;
		waitpid(j->child, &status, 0);
	}
	j->res.writer = j->cow ? "thread" : "fork";
	if (j->cow)
		j->res.cow_copies = ram_cow_copied(j->cow);
	snap_writer_end(j);
	evloop_del(j->vmm->loop, j->pipe_rd);
	j->vmm->snap_job = NULL;
	if (rep.result < 0) {
		snap_failed(j, rep.result, rep.msg, false);
		snprintf(rep.msg, sizeof(rep.msg), "%s", err_msg());
	} else {
		j->st.memory_bytes = rep.memory_bytes;
		j->st.memory_id = rep.memory_id;
		j->st.memory_depth = rep.memory_depth;
		j->hash_ok = rep.hash_ok;
		j->hash_dropped = rep.hash_dropped;
	}
	/* the writer's errno: a full disk is ENOSPC, not EIO (fault finding F5) */
	snap_finish(j, rep.result < 0 ? rep.result : 0, rep.msg);
	snap_job_free(j);
}

/* Phase 2 in a child: fork while the vCPUs are parked, so the child's
 * copy-on-write view of RAM is the paused machine's. */
static int snap_fork(struct snap_job *j)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return err_set(errno, "snapshot pipe");
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return err_set(errno, "forking the snapshot writer");
	}
	if (pid == 0) {
		close(fds[0]);
		_exit(snap_write_report(j, fds[1], j->vmm->vm->ram, NULL) == 0 ? 0 : 1);
	}
	close(fds[1]);
	j->child = pid;
	j->pipe_rd = fds[0];
	return evloop_add(j->vmm->loop, fds[0], EPOLLIN, snap_writer_done, j);
}

static void *snap_writer_run(void *opaque)
{
	struct snap_job *j = opaque;
	snap_write_report(j, j->pipe_wr, NULL, ram_cow_source(j->cow));
	return NULL;
}

/* Before the pause: register RAM for the in-process writer; where the
 * kernel or our rights do not allow it, phase 2 forks (said once). */
static void snap_cow_open(struct snap_job *j)
{
	static bool said;
	struct vm *vm = j->vmm->vm;
	const char *w = getenv("CAIRN_SNAPSHOT_WRITER");
	int r;
	if (w && !strcmp(w, "fork"))
		r = err_set(ENOTSUP, "CAIRN_SNAPSHOT_WRITER=fork");
	else if (vm->ram_from_file) /* reading it could raise SIGBUS (a full tmpfs): not in here */
		r = err_set(ENOTSUP, "guest RAM is mapped from a memory image");
	else
		r = ram_cow_open(vm->ram, vm->ram_size, &j->cow);
	if (r < 0 && !said) {
		log_info("snapshots write memory from a forked child (%s)", err_msg());
		said = true;
	}
	err_clear();
}

/* Phase 2 in a thread, RAM having been protected at the pause: start the
 * writer. */
static int snap_thread(struct snap_job *j)
{
	int fds[2], r;
	if (pipe2(fds, O_CLOEXEC) < 0)
		return err_set(errno, "snapshot pipe");
	j->pipe_rd = fds[0];
	j->pipe_wr = fds[1];
	if ((r = evloop_add(j->vmm->loop, fds[0], EPOLLIN, snap_writer_done, j)) < 0)
		return r;
	if (pthread_create(&j->writer, NULL, snap_writer_run, j) != 0) {
		evloop_del(j->vmm->loop, fds[0]);
		return err_set(EAGAIN, "no thread for the snapshot writer");
	}
	j->writer_started = true;
	return 0;
}

void snapshot_job_finish(struct vmm *vmm)
{
	struct snap_job *j = vmm->snap_job;
	if (!j || !j->writer_started)
		return;
	snap_writer_end(j);
	log_info("snapshot %s: written as the VM ended", j->res.path);
}

const char *snapshot_job_busy(const struct vmm *vmm)
{
	return vmm->snap_job ? vmm->snap_job->res.path : NULL;
}

/* The pause: capture, then either fix RAM for the writer thread (the disks
 * freeze after the resume) or freeze the disks now, before the forked
 * writer or the write in this process can commit the snapshot. */
static int snap_paused(struct snap_job *j, bool quit)
{
	struct vmm *vmm = j->vmm;
	/* The last of the changed pages: those written since the collect
	 * before the pause. */
	uint64_t t = monotime_us();
	int r = vm_dirty_collect(vmm->vm, j->changed);
	if (r < 0) {
		snap_unprepare(j);
		return r;
	}
	log_debug("snapshot %s: changed pages collected in the pause in %llu us", j->res.path,
		  (unsigned long long)(monotime_us() - t));
	r = snap_capture(j);
	if (r == 0 && j->cow) {
		int again = ram_cow_protect(j->cow);
		if (again < 0)
			snap_unprepare(j);
		r = again < 0 ? again : 0;
	} else if (r == 0) {
		r = snap_freeze_disks(j);
	}
	if (r < 0)
		return r;
	if (quit) {
		/* What meta.json records: the pause up to the write. */
		j->st.pause_us = monotime_us() - j->paused_at;
		if ((r = snap_write(j, vmm->vm->ram, NULL, vmm->vm->ram_size)) < 0)
			snap_failed(j, r, err_msg(), true);
	} else if (!j->cow) {
		/* The child writes meta.json: the pause up to the fork. */
		j->st.pause_us = monotime_us() - j->paused_at;
		if ((r = snap_fork(j)) < 0)
			snap_failed(j, r, err_msg(), true);
	}
	return r;
}

int snapshot_job_start(struct vmm *vmm, const char *dir, const struct snapshot_opts *o,
		       snapshot_done_fn done, void *opaque)
{
	bool quit = o->quit;
	if (vmm->snap_job)
		return err_set(EBUSY, "snapshot %s is still being written",
			       vmm->snap_job->res.path);
	struct snap_job *j = calloc(1, sizeof(*j));
	if (!j)
		return err_set(ENOMEM, "snapshot");
	j->vmm = vmm;
	j->pipe_rd = j->pipe_wr = -1;
	j->done = done;
	j->opaque = opaque;
	j->t0 = monotime_us();
	if (snprintf(j->res.path, sizeof(j->res.path), "%s", dir) >= (int)sizeof(j->res.path)) {
		free(j);
		return err_set(ENAMETOOLONG, "%s", dir);
	}
	int r = snap_prepare(j);
	if (r < 0) {
		free(j);
		return r;
	}
	j->keep_parent = o->keep_memory_parent;
	if ((r = snap_choose_memory(j, o->full_memory)) < 0) {
		snap_unprepare(j);
		snap_job_free(j);
		return r;
	}
	snap_choose_hashing(j, quit);
	if (!quit)
		snap_cow_open(j);
	bool was_paused = vmm->paused;
	j->paused_at = monotime_us();
	if (!was_paused)
		vm_pause(vmm->vm);
	r = snap_paused(j, quit);
	j->st.pause_us = monotime_us() - j->paused_at;
	if (r == 0 && quit)
		vm_request_exit(vmm->vm, VM_EXIT_QUIT, 0, "quit after snapshot");
	else if (!was_paused)
		vm_resume(vmm->vm);
	/* Disk requests are served in this thread (virtio_blk.c), so none is
	 * until this returns: the vCPUs need not wait for the disks' freeze.
	 * If it fails, nothing was written since the capture and the disks
	 * stay as they were. */
	if (r == 0 && j->cow && j->layer && j->hash != HASH_ALL)
		snap_skip_unchanged(j);
	if (r == 0 && j->cow && (r = snap_freeze_disks(j)) == 0 && (r = snap_thread(j)) < 0)
		snap_failed(j, r, err_msg(), false);
	if (r < 0) {
		snap_job_free(j);
		return r;
	}
	if (quit) {
		snap_finish(j, 0, NULL);
		snap_job_free(j);
		return 0;
	}
	vmm->snap_job = j; /* the writer finishes it */
	return 0;
}
