/* Requests are served synchronously in the I/O thread: when a snapshot
 * pauses the VM between two loop turns, no request is half done. */
#include "devices/virtio_blk.h"
#include "devices/device.h"
#include "devices/virtio_pci.h"
#include "disk/block.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_F_SEG_MAX (1ULL << 2)
#define VIRTIO_BLK_F_RO (1ULL << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ULL << 6)
#define VIRTIO_BLK_F_FLUSH (1ULL << 9)
#define VIRTIO_BLK_F_DISCARD (1ULL << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ULL << 14)

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define SECTOR 512ULL
#define SEG_MAX (VQ_MAX_SIZE - 2)
#define MAX_DISCARD_SECTORS (1u << 22)
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u

/* The device configuration layout (virtio 1.x §5.2.4), little-endian. */
struct virtio_blk_config {
	uint64_t capacity;
	uint32_t size_max, seg_max;
	uint16_t cylinders;
	uint8_t heads, sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp, alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback, unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors, max_discard_seg, discard_sector_alignment;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap, unused1[3];
};

struct virtio_blk {
	struct virtio_pci vp;
	struct virtio_device_ops ops;
	struct block_dev *bd;
	struct virtio_blk_config config;
	char serial[VIRTIO_BLK_ID_BYTES + 1];
	struct vq_elem elem;
	uint64_t reqs;
	uint64_t bad_reqs; /* malformed requests failed or skipped */
};

struct virtio_blk_req_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

struct virtio_blk_discard {
	uint64_t sector;
	uint32_t num_sectors, flags;
};

static void vblk_config_read(void *dev, uint64_t off, void *data, unsigned len)
{
	struct virtio_blk *b = dev;
	if (off + len <= sizeof(b->config))
		memcpy(data, (uint8_t *)&b->config + off, len);
}

/* Copy the out segments after the header into BUF (up to LEN bytes). */
static size_t iov_gather(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		size_t c = l - skip < len - done ? l - skip : len - done;
		memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + skip, c);
		done += c;
		skip = 0;
	}
	return done;
}

static size_t iov_total(const struct iovec *iov, unsigned n)
{
	size_t t = 0;
	for (unsigned i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static int vblk_rw(struct virtio_blk *b, const struct vq_elem *e, uint64_t off, bool write,
		   uint32_t *written)
{
	/* Data segments: for a write, the out segments after the header; for
	 * a read, the in segments before the status byte. */
	unsigned n = write ? e->nout : e->nin;
	const struct iovec *iov = write ? e->out : e->in;
	size_t skip = write ? sizeof(struct virtio_blk_req_hdr) : 0;
	size_t total = iov_total(iov, n) - skip - (write ? 0 : 1);
	/* Data in the wrong direction (a read's buffer device-readable, a
	 * write's device-writable) is a malformed request, not an empty one. */
	size_t other = write ? iov_total(e->in, e->nin) - 1
			     : iov_total(e->out, e->nout) - sizeof(struct virtio_blk_req_hdr);
	if (other || total % SECTOR || off > b->bd->size || total > b->bd->size - off)
		return VIRTIO_BLK_S_IOERR;
	for (unsigned i = 0; i < n && total; i++) {
		size_t l = iov[i].iov_len;
		uint8_t *p = iov[i].iov_base;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		p += skip;
		l -= skip;
		skip = 0;
		if (l > total)
			l = total;
		int r = write ? block_write(b->bd, p, off, l) : block_read(b->bd, p, off, l);
		if (r < 0) {
			log_warn("virtio-blk %s: %s", b->bd->path, err_msg());
			return VIRTIO_BLK_S_IOERR;
		}
		off += l;
		total -= l;
		if (!write)
			*written += (uint32_t)l; /* vq_pop keeps a chain below 4 GiB */
	}
	return VIRTIO_BLK_S_OK;
}

static int vblk_discard(struct virtio_blk *b, const struct vq_elem *e, bool zeroes)
{
	struct virtio_blk_discard d;
	if (iov_gather(e->out, e->nout, sizeof(struct virtio_blk_req_hdr), &d, sizeof(d)) !=
	    sizeof(d))
		return VIRTIO_BLK_S_IOERR;
	/* §5.2.6.2: unknown flags, and unmap on a discard, are unsupported. */
	if (d.flags & ~(zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0))
		return VIRTIO_BLK_S_UNSUPP;
	uint64_t off = d.sector * SECTOR, len = (uint64_t)d.num_sectors * SECTOR;
	if (d.sector > b->bd->size / SECTOR || len > b->bd->size - off)
		return VIRTIO_BLK_S_IOERR;
	int r = zeroes ? block_write_zeroes(b->bd, off, len) : block_discard(b->bd, off, len);
	return r < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static uint8_t vblk_handle(struct virtio_blk *b, const struct vq_elem *e, uint32_t *written)
{
	struct virtio_blk_req_hdr h;
	if (iov_gather(e->out, e->nout, 0, &h, sizeof(h)) != sizeof(h))
		return VIRTIO_BLK_S_IOERR;
	bool ro = b->bd->readonly;
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		if (h.sector > UINT64_MAX / SECTOR)
			return VIRTIO_BLK_S_IOERR;
		return (uint8_t)vblk_rw(b, e, h.sector * SECTOR, false, written);
	case VIRTIO_BLK_T_OUT:
		if (ro || h.sector > UINT64_MAX / SECTOR)
			return VIRTIO_BLK_S_IOERR;
		return (uint8_t)vblk_rw(b, e, h.sector * SECTOR, true, written);
	case VIRTIO_BLK_T_FLUSH:
		return block_flush(b->bd) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID: {
		size_t room = iov_total(e->in, e->nin) - 1;
		size_t n = room < VIRTIO_BLK_ID_BYTES ? room : VIRTIO_BLK_ID_BYTES;
		size_t done = 0;
		for (unsigned i = 0; i < e->nin && done < n; i++) {
			size_t c = e->in[i].iov_len < n - done ? e->in[i].iov_len : n - done;
			memcpy(e->in[i].iov_base, b->serial + done, c);
			done += c;
		}
		*written += (uint32_t)done;
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (ro)
			return VIRTIO_BLK_S_IOERR;
		return (uint8_t)vblk_discard(b, e, h.type == VIRTIO_BLK_T_WRITE_ZEROES);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* The status byte is the last device-writable byte of the request (virtio
 * 1.x §2.6.4: the device makes no assumption about how the driver split
 * it into buffers), so trailing empty buffers are passed over. */
static uint8_t *vblk_status_byte(const struct vq_elem *e)
{
	for (unsigned i = e->nin; i-- > 0;)
		if (e->in[i].iov_len)
			return (uint8_t *)e->in[i].iov_base + e->in[i].iov_len - 1;
	return NULL;
}

/* A malformed request is failed, not acted on: IOERR where it has a status
 * byte, else returned with nothing written.  The device goes on. */
static void vblk_bad_request(struct virtio_blk *b, struct virtqueue *vq, uint16_t head,
			     uint8_t *status, const char *why)
{
	virtio_log_bad(&b->bad_reqs, "virtio-blk %s: malformed request (%s): %s", b->bd->path, why,
		       status ? "failed with IOERR" : "returned unanswered");
	if (status)
		*status = VIRTIO_BLK_S_IOERR;
	vq_push(vq, head, status ? 1 : 0);
}

static void vblk_queue_notify(void *dev, unsigned q)
{
	struct virtio_blk *b = dev;
	struct virtqueue *vq = &b->vp.vqs[q];
	struct vq_elem *e = &b->elem;
	bool pushed = false;
	unsigned budget = vq->size;
	for (int r; (r = virtio_pci_pop(&b->vp, vq, e, &budget)) != 0;) {
		pushed = true;
		if (r == -EBADMSG) {
			vblk_bad_request(b, vq, e->head, vq_bad_chain_status(vq, e->head),
					 "bad descriptor chain");
			continue;
		}
		uint8_t *status = vblk_status_byte(e);
		if (!status) {
			vblk_bad_request(b, vq, e->head, NULL, "no device-writable status byte");
			continue;
		}
		uint32_t written = 0;
		*status = vblk_handle(b, e, &written);
		/* written counts data bytes before the status byte, so the sum
		 * cannot wrap: the chain is below 4 GiB. */
		vq_push(vq, e->head, written + 1);
		b->reqs++;
	}
	if (pushed && vq_should_notify(vq))
		virtio_pci_queue_interrupt(&b->vp, q);
}

static void vblk_destroy(void *priv)
{
	struct virtio_blk *b = priv;
	virtio_pci_destroy(&b->vp);
	block_close(b->bd);
	free(b);
}

/* The block device itself has no guest-visible state beyond the
 * transport's: requests complete before a snapshot is taken. */
static int vblk_snapshot(void *priv, struct state_buf *sb)
{
	struct virtio_blk *b = priv;
	return virtio_pci_snapshot(&b->vp, sb);
}

static struct block_dev *vblk_get_block(void *priv)
{
	return ((struct virtio_blk *)priv)->bd;
}

/* The size stays: an overlay has its backing image's size. */
static void vblk_set_block(void *priv, struct block_dev *bd)
{
	((struct virtio_blk *)priv)->bd = bd;
}

static const struct device_ops vblk_device_ops = {
	.name = "virtio-blk",
	.snapshot = vblk_snapshot,
	.get_block = vblk_get_block,
	.set_block = vblk_set_block,
	.destroy = vblk_destroy,
};

static int vblk_create(struct vm *vm, const struct virtio_blk_disk *d, int index)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	if (!b)
		return err_set(ENOMEM, "virtio-blk");
	int r = block_open(d->path, d->format, d->readonly ? BLOCK_RDONLY : 0, &b->bd);
	if (r < 0) {
		free(b);
		return err_prefix(r, "disk %d", index);
	}
	if (d->serial)
		snprintf(b->serial, sizeof(b->serial), "%s", d->serial);
	else
		snprintf(b->serial, sizeof(b->serial), "cairn-vd%c", 'a' + index);
	b->config = (struct virtio_blk_config){
		.capacity = b->bd->size / SECTOR,
		.seg_max = SEG_MAX,
		.blk_size = SECTOR,
		.num_queues = 1,
		.max_discard_sectors = MAX_DISCARD_SECTORS,
		.max_discard_seg = 1,
		.discard_sector_alignment = 1,
		.max_write_zeroes_sectors = MAX_DISCARD_SECTORS,
		.max_write_zeroes_seg = 1,
	};
	b->ops = (struct virtio_device_ops){
		.name = "virtio-blk",
		.device_id = VIRTIO_ID_BLOCK,
		.class_code = 0x018000, /* mass storage, other */
		.nqueues = 1,
		.features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH |
			    (d->readonly ? VIRTIO_BLK_F_RO
					 : VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES),
		.config_size = sizeof(b->config),
		.config_read = vblk_config_read,
		.queue_notify = vblk_queue_notify,
	};
	if ((r = virtio_pci_init(&b->vp, vm, &b->ops, b)) < 0) {
		block_close(b->bd);
		free(b);
		return r;
	}
	log_debug("virtio-blk: %s (%s, %llu MiB%s) in PCI slot %u", d->path, b->bd->format,
		  (unsigned long long)(b->bd->size >> 20), d->readonly ? ", read-only" : "",
		  b->vp.pci.slot);
	return device_add(vm, &vblk_device_ops, b);
}

int virtio_blk_init(struct vm *vm, const struct devices_config *cfg)
{
	for (int i = 0; i < cfg->ndisks; i++) {
		int r = vblk_create(vm, &cfg->disks[i], i);
		if (r < 0)
			return r;
	}
	return 0;
}
