/* virtio-net: queue 0 receives (frames for the guest), queue 1 transmits.
 * Both are served in the I/O thread, as virtio-blk's requests are, and so
 * is the backend (net/net.h): a frame is delivered whole within one loop
 * turn, so a snapshot never sees half of one.
 *
 * Frames the backend hands over while the guest has no receive buffers
 * wait in a small backlog (RX_BACKLOG frames, then they are dropped, as a
 * full NIC drops them); the backlog is not part of a snapshot. */
#include "devices/virtio_net.h"
#include "devices/device.h"
#include "devices/virtio_pci.h"
#include "kvm/vm.h"
#include "net/net.h"
#include "snapshot/state_buf.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIRTIO_ID_NET 1
#define VIRTIO_NET_F_MAC (1ULL << 5)
#define VIRTIO_NET_F_MRG_RXBUF (1ULL << 15)
#define VIRTIO_NET_F_STATUS (1ULL << 16)
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_HDR_GSO_NONE 0
#define STATUS_DRIVER_OK 4
#define RXQ 0
#define TXQ 1
#define RX_BACKLOG 64
#define ETH_HLEN 14
#define BAD_WARNED 3

/* virtio 1.x §5.1.4, little-endian. */
struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
};

struct rx_frame {
	size_t len;
	uint8_t *data;
};

struct virtio_net {
	struct virtio_pci vp;
	struct virtio_device_ops ops;
	struct net_backend *be;
	struct virtio_net_config config;
	int index;
	bool in_tx; /* the transmit path holds the transport lock (I/O thread only) */
	struct vq_elem elem;
	uint8_t frame[VIRTIO_NET_HDR_LEN + NET_MAX_FRAME];
	struct rx_frame backlog[RX_BACKLOG];
	unsigned backlog_head, backlog_n;
	uint64_t tx_frames, rx_frames, rx_dropped, bad;
	struct evloop *loop;
	bool tx_poll_queued; /* vnet_tx_poll waits for the next loop turn */
};

int virtio_net_check_tx(const uint8_t hdr[VIRTIO_NET_HDR_LEN], size_t frame_len)
{
	/* flags (NEEDS_CSUM, DATA_VALID) and gso_type need offloads we do
	 * not offer. */
	if (hdr[0] || hdr[1] != VIRTIO_NET_HDR_GSO_NONE)
		return -EINVAL;
	if (frame_len < ETH_HLEN || frame_len > NET_MAX_FRAME)
		return -EINVAL;
	return 0;
}

static void vnet_config_read(void *dev, uint64_t off, void *data, unsigned len)
{
	struct virtio_net *n = dev;
	if (off + len <= sizeof(n->config))
		memcpy(data, (uint8_t *)&n->config + off, len);
}

static void vnet_bad(struct virtio_net *n, const char *why)
{
	n->bad++;
	if (n->bad <= BAD_WARNED)
		log_warn("virtio-net %d: %s%s", n->index, why,
			 n->bad == BAD_WARNED ? "; further ones logged at debug level" : "");
	else
		log_debug("virtio-net %d: %s", n->index, why);
}

static size_t iov_total(const struct iovec *iov, unsigned cnt)
{
	size_t t = 0;
	for (unsigned i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* Copy LEN bytes from SRC into IOV starting at byte SKIP; returns the bytes
 * copied. */
static size_t iov_scatter(const struct iovec *iov, unsigned cnt, size_t skip, const void *src,
			  size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < cnt && done < len; i++) {
		size_t l = iov[i].iov_len;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		size_t c = l - skip < len - done ? l - skip : len - done;
		memcpy((uint8_t *)iov[i].iov_base + skip, (const uint8_t *)src + done, c);
		done += c;
		skip = 0;
	}
	return done;
}

static size_t iov_gather(const struct iovec *iov, unsigned cnt, void *dst, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < cnt && done < len; i++) {
		size_t c = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy((uint8_t *)dst + done, iov[i].iov_base, c);
		done += c;
	}
	return done;
}

enum rx_result { RX_DONE, RX_NO_BUFFERS, RX_DROPPED };

/* Put header + frame (TOTAL bytes at n->frame... or BUF) into receive
 * buffers.  With MRG_RXBUF a frame may span several chains: they are all
 * taken before any is returned, and num_buffers in the header (in the
 * first chain) says how many.  Not enough buffers: they go back (the avail
 * index is rewound; nothing was returned), the frame waits. */
static enum rx_result vnet_rx_one(struct virtio_net *n, const uint8_t *buf, size_t total)
{
	struct virtqueue *vq = &n->vp.vqs[RXQ];
	bool mrg = n->vp.driver_features & VIRTIO_NET_F_MRG_RXBUF;
	uint16_t start = vq->last_avail;
	uint32_t used[VQ_MAX_SIZE][2];
	struct iovec hdr_iov[VIRTIO_NET_HDR_LEN]; /* where the header went */
	unsigned nhdr = 0, nbufs = 0;
	size_t off = 0;
	while (off < total) {
		int r = vq_pop(vq, &n->elem);
		if (r == 0 || nbufs == vq->size) {
			vq->last_avail = start;
			return RX_NO_BUFFERS;
		}
		if (r < 0 || n->elem.nout) {
			/* A receive buffer the device may not write, a bad chain
			 * or a broken ring: the driver broke the protocol. */
			virtio_pci_set_failed(&n->vp);
			return RX_DROPPED;
		}
		size_t room = iov_total(n->elem.in, n->elem.nin);
		if (nbufs == 0 && (room < VIRTIO_NET_HDR_LEN || (!mrg && room < total))) {
			/* §5.1.6.3.1: without MRG_RXBUF one buffer takes the whole
			 * frame; every buffer holds at least the header. */
			vq->last_avail = start;
			vnet_bad(n, "receive buffer too small; frame dropped");
			return RX_DROPPED;
		}
		if (nbufs == 0) {
			size_t need = VIRTIO_NET_HDR_LEN;
			/* Empty buffers are passed over, so at most 12 entries. */
			for (unsigned i = 0; i < n->elem.nin && need; i++) {
				size_t c =
				    n->elem.in[i].iov_len < need ? n->elem.in[i].iov_len : need;
				if (!c)
					continue;
				hdr_iov[nhdr++] = (struct iovec){n->elem.in[i].iov_base, c};
				need -= c;
			}
		}
		size_t c = iov_scatter(n->elem.in, n->elem.nin, 0, buf + off, total - off);
		used[nbufs][0] = n->elem.head;
		used[nbufs][1] = (uint32_t)c;
		nbufs++;
		off += c;
	}
	uint16_t nb = (uint16_t)nbufs;
	uint8_t hdr[VIRTIO_NET_HDR_LEN];
	memcpy(hdr, buf, sizeof(hdr));
	memcpy(hdr + 10, &nb, 2);
	iov_scatter(hdr_iov, nhdr, 0, hdr, sizeof(hdr));
	vq_push_many(vq, used, nbufs);
	return RX_DONE;
}

static bool vnet_rx_ready(struct virtio_net *n)
{
	return (n->vp.status & STATUS_DRIVER_OK) && n->vp.vqs[RXQ].ready &&
	       !(n->vp.status & 0x40 /* DEVICE_NEEDS_RESET */);
}

/* Deliver the backlog; transport lock held. */
static void vnet_rx_flush(struct virtio_net *n)
{
	bool pushed = false;
	while (n->backlog_n && vnet_rx_ready(n)) {
		struct rx_frame *f = &n->backlog[n->backlog_head];
		enum rx_result r = vnet_rx_one(n, f->data, f->len);
		if (r == RX_NO_BUFFERS)
			break;
		if (r == RX_DONE) {
			pushed = true;
			n->rx_frames++;
		} else {
			n->rx_dropped++;
		}
		free(f->data);
		f->data = NULL;
		n->backlog_head = (n->backlog_head + 1) % RX_BACKLOG;
		n->backlog_n--;
	}
	if (pushed && vq_should_notify(&n->vp.vqs[RXQ]))
		virtio_pci_queue_interrupt(&n->vp, RXQ);
}

static void vnet_backlog_clear(struct virtio_net *n)
{
	while (n->backlog_n) {
		free(n->backlog[n->backlog_head].data);
		n->backlog[n->backlog_head].data = NULL;
		n->backlog_head = (n->backlog_head + 1) % RX_BACKLOG;
		n->backlog_n--;
	}
}

/* From the backend, in the I/O thread: a frame for the guest. */
static void vnet_receive(void *opaque, const void *frame, size_t len)
{
	struct virtio_net *n = opaque;
	if (len > NET_MAX_FRAME)
		return;
	if (!n->in_tx)
		pthread_mutex_lock(&n->vp.lock);
	if (!vnet_rx_ready(n) || n->backlog_n == RX_BACKLOG) {
		n->rx_dropped++;
		log_debug("virtio-net %d: frame of %zu bytes dropped (%s)", n->index, len,
			  vnet_rx_ready(n) ? "backlog full" : "driver not ready");
	} else {
		uint8_t *d = malloc(VIRTIO_NET_HDR_LEN + len);
		if (d) {
			memset(d, 0, VIRTIO_NET_HDR_LEN);
			memcpy(d + VIRTIO_NET_HDR_LEN, frame, len);
			unsigned tail = (n->backlog_head + n->backlog_n) % RX_BACKLOG;
			n->backlog[tail] = (struct rx_frame){VIRTIO_NET_HDR_LEN + len, d};
			n->backlog_n++;
			vnet_rx_flush(n);
		} else {
			n->rx_dropped++;
		}
	}
	if (!n->in_tx)
		pthread_mutex_unlock(&n->vp.lock);
}

static void vnet_tx(struct virtio_net *n)
{
	struct virtqueue *vq = &n->vp.vqs[TXQ];
	struct vq_elem *e = &n->elem;
	bool pushed = false;
	n->in_tx = true;
	for (;;) {
		int r = vq_pop(vq, e);
		if (r == 0)
			break;
		if (r < 0 && r != -EBADMSG) {
			virtio_pci_set_failed(&n->vp);
			break;
		}
		pushed = true;
		/* The backend may hand a frame to the guest before it returns
		 * (libslirp answers ARP and DHCP within slirp_input), and the
		 * receive path pops into n->elem too: keep our chain's head. */
		uint16_t head = e->head;
		if (r == -EBADMSG || e->nin) {
			vnet_bad(n, r == -EBADMSG ? "bad descriptor chain on transmit"
						  : "device-writable buffer on transmit");
			vq_push(vq, e->head, 0);
			continue;
		}
		size_t total = iov_total(e->out, e->nout);
		if (total < VIRTIO_NET_HDR_LEN || total > sizeof(n->frame)) {
			vnet_bad(n, "transmitted frame shorter than its header or oversized");
			vq_push(vq, e->head, 0);
			continue;
		}
		iov_gather(e->out, e->nout, n->frame, total);
		if (virtio_net_check_tx(n->frame, total - VIRTIO_NET_HDR_LEN) < 0) {
			vnet_bad(n,
				 "transmitted frame with offloads not negotiated or a bad length");
		} else {
			n->tx_frames++;
			net_backend_send(n->be, n->frame + VIRTIO_NET_HDR_LEN,
					 total - VIRTIO_NET_HDR_LEN);
		}
		/* Returned once the backend has it: a driver that waits for its
		 * used entry knows the frame has left the VM. */
		vq_push(vq, head, 0);
	}
	n->in_tx = false;
	if (pushed && vq_should_notify(vq))
		virtio_pci_queue_interrupt(&n->vp, TXQ);
}

/*
 * Transmit notifications, as QEMU's tx bottom half does: a kick drains the
 * queue at once, then, while the guest keeps sending, the queue is looked at
 * again at every loop turn with notifications off (VRING_USED_F_NO_NOTIFY),
 * so a stream costs the guest no exit per frame; the first turn that finds
 * nothing turns them back on and looks once more.  The flag is guest memory
 * and may be in a snapshot: the restore kicks every queue, which ends here
 * with notifications on again.
 */
static void vnet_tx_poll(void *opaque);

static void vnet_tx_drain(struct virtio_net *n)
{
	struct virtqueue *vq = &n->vp.vqs[TXQ];
	uint64_t before = n->tx_frames + n->bad;
	vq_set_notify(vq, false);
	vnet_tx(n);
	if (n->tx_frames + n->bad == before) {
		vq_set_notify(vq, true);
		if (!vq_pending(vq))
			return;
		vq_set_notify(vq, false);
		vnet_tx(n);
	}
	if (!n->tx_poll_queued && !(n->vp.status & 0x40 /* DEVICE_NEEDS_RESET */)) {
		n->tx_poll_queued = evloop_call(n->loop, vnet_tx_poll, n) == 0;
		if (!n->tx_poll_queued) {
			vq_set_notify(vq, true);
			if (vq_pending(vq))
				vnet_tx(n);
		}
	}
}

static void vnet_tx_poll(void *opaque)
{
	struct virtio_net *n = opaque;
	pthread_mutex_lock(&n->vp.lock);
	n->tx_poll_queued = false;
	if (n->vp.vqs[TXQ].ready && !(n->vp.status & 0x40))
		vnet_tx_drain(n);
	pthread_mutex_unlock(&n->vp.lock);
}

/* The guest's kick, transport lock held: drained now even with a poll
 * queued (a driver that reset the device kicks a new queue). */
static void vnet_tx_kicked(struct virtio_net *n)
{
	vnet_tx_drain(n);
}

static void vnet_queue_notify(void *dev, unsigned q)
{
	struct virtio_net *n = dev;
	if (q == TXQ)
		vnet_tx_kicked(n);
	else
		vnet_rx_flush(n);
}

static void vnet_reset(void *dev)
{
	vnet_backlog_clear(dev);
}

static void vnet_destroy(void *priv)
{
	struct virtio_net *n = priv;
	net_backend_close(n->be); /* no more frames for us */
	virtio_pci_destroy(&n->vp);
	vnet_backlog_clear(n);
	free(n);
}

/* The transport's state, then the device's own: its configuration (MAC,
 * link status).  The link status is the backend's now: a restore may
 * attach another. */
static int vnet_snapshot(void *priv, struct state_buf *sb)
{
	struct virtio_net *n = priv;
	int r = virtio_pci_snapshot(&n->vp, sb);
	if (r < 0)
		return r;
	pthread_mutex_lock(&n->vp.lock);
	STATE_FIELD(sb, n->config.mac);
	STATE_FIELD(sb, n->config.status);
	if (sb->restoring && !sb->err) {
		n->config.status = net_backend_link_up(n->be) ? VIRTIO_NET_S_LINK_UP : 0;
		vnet_backlog_clear(n);
	}
	pthread_mutex_unlock(&n->vp.lock);
	return sb->err;
}

static const struct device_ops vnet_device_ops = {
    .name = "virtio-net",
    .snapshot = vnet_snapshot,
    .destroy = vnet_destroy,
};

static int vnet_create(struct vm *vm, const struct virtio_net_nic *nic, int index)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n)
		return err_set(ENOMEM, "virtio-net");
	n->index = index;
	n->loop = vm->loop;
	const struct net_peer peer = {vnet_receive, n};
	int r = net_backend_open(nic->backend, vm->loop, &peer, &n->be);
	if (r < 0) {
		free(n);
		return err_prefix(r, "NIC %d", index);
	}
	memcpy(n->config.mac, nic->mac, 6);
	n->config.status = net_backend_link_up(n->be) ? VIRTIO_NET_S_LINK_UP : 0;
	n->config.max_virtqueue_pairs = 1;
	n->ops = (struct virtio_device_ops){
	    .name = "virtio-net",
	    .device_id = VIRTIO_ID_NET,
	    .class_code = 0x020000, /* network, Ethernet */
	    .nqueues = 2,
	    .features = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MRG_RXBUF,
	    .config_size = sizeof(n->config),
	    .config_read = vnet_config_read,
	    .queue_notify = vnet_queue_notify,
	    .reset = vnet_reset,
	};
	if ((r = virtio_pci_init(&n->vp, vm, &n->ops, n)) < 0) {
		net_backend_close(n->be);
		free(n);
		return r;
	}
	log_debug("virtio-net %d: %02x:%02x:%02x:%02x:%02x:%02x, %s, in PCI slot %u", index,
		  nic->mac[0], nic->mac[1], nic->mac[2], nic->mac[3], nic->mac[4], nic->mac[5],
		  nic->backend, n->vp.pci.slot);
	return device_add(vm, &vnet_device_ops, n);
}

int virtio_net_init(struct vm *vm, const struct devices_config *cfg)
{
	for (int i = 0; i < cfg->nnics; i++) {
		int r = vnet_create(vm, &cfg->nics[i], i);
		if (r < 0)
			return r;
	}
	return 0;
}
