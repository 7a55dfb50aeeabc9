/* virtio-net: queue 0 receives (frames for the guest), queue 1 transmits,
 * queue 2 takes control requests (virtio_net_ctrl.h).  All are served in
 * the I/O thread, as virtio-blk's requests are, and so is the backend
 * (net/net.h): a frame is delivered whole within one loop turn, so a
 * snapshot never sees half of one.
 *
 * Offloads (checksum, TSO) are offered only when the backend carries a
 * vnet header (TAP): the header then passes through both ways, and the
 * backend is told which offloads the guest takes (TUNSETOFFLOAD) whenever
 * the negotiated features change.  After a restore or an in-place revert
 * the guest is asked to announce itself (VIRTIO_NET_S_ANNOUNCE) when it
 * negotiated GUEST_ANNOUNCE.
 *
 * Frames the backend hands over while the guest has no receive buffers
 * wait in a small backlog (RX_BACKLOG frames, then they are dropped, as a
 * full NIC drops them); the backlog is not part of a snapshot. */
#include "devices/virtio_net.h"
#include "devices/device.h"
#include "devices/virtio_net_ctrl.h"
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
#define VIRTIO_NET_S_ANNOUNCE 2
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_ECN 0x80
#define STATUS_DRIVER_OK 4
#define RXQ 0
#define TXQ 1
#define CTRLQ 2
#define BASE_FEATURES (VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MRG_RXBUF)
#define CTRL_FEATURES (VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_GUEST_ANNOUNCE)
#define OFFLOAD_FEATURES                                                                           \
	(VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 |                    \
	 VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_ECN | VIRTIO_NET_F_HOST_TSO4 |               \
	 VIRTIO_NET_F_HOST_TSO6 | VIRTIO_NET_F_HOST_ECN)
#define RX_BACKLOG 256
#define ETH_HLEN 14

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
	char *spec; /* the backend's, for messages */
	struct virtio_net_config config;
	int index;
	bool in_tx; /* the transmit path holds the transport lock (I/O thread only) */
	/* the guest features the backend's offloads were last set from */
	bool offloads_set;
	uint64_t offloads_features;
	struct vq_elem elem;
	uint8_t frame[VIRTIO_NET_HDR_LEN + NET_MAX_FRAME];
	uint8_t ctrl_req[VIRTIO_NET_CTRL_MAX];
	struct rx_frame backlog[RX_BACKLOG];
	unsigned backlog_head, backlog_n;
	uint64_t tx_frames, rx_frames, rx_dropped, bad;
	bool tx_poll_queued; /* vnet_tx_poll waits for the next loop turn */
};

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* gso_type against what was negotiated: TSO4/6 (ECN with its feature). */
static int check_gso(uint8_t gso, uint64_t features, uint64_t tso4, uint64_t tso6, uint64_t ecn)
{
	uint8_t type = gso & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	if ((gso & VIRTIO_NET_HDR_GSO_ECN) && (type == VIRTIO_NET_HDR_GSO_NONE || !(features & ecn)))
		return -EINVAL;
	if (type == VIRTIO_NET_HDR_GSO_NONE || (type == VIRTIO_NET_HDR_GSO_TCPV4 && (features & tso4)) ||
	    (type == VIRTIO_NET_HDR_GSO_TCPV6 && (features & tso6)))
		return 0;
	return -EINVAL;
}

int virtio_net_check_tx(const uint8_t hdr[VIRTIO_NET_HDR_LEN], size_t frame_len,
			uint64_t features)
{
	uint8_t flags = hdr[0], gso = hdr[1];
	if (frame_len < ETH_HLEN || frame_len > NET_MAX_FRAME)
		return -EINVAL;
	/* DATA_VALID and RSC_INFO are the device's to set (§5.1.6.2.1). */
	if (flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return -EINVAL;
	if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
	    (!(features & VIRTIO_NET_F_CSUM) ||
	     (size_t)get_le16(hdr + 6) + get_le16(hdr + 8) + 2 > frame_len))
		return -EINVAL;
	if (check_gso(gso, features, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
		      VIRTIO_NET_F_HOST_ECN) < 0)
		return -EINVAL;
	/* Segmentation needs a segment size and a partial checksum. */
	if (gso != VIRTIO_NET_HDR_GSO_NONE &&
	    (!get_le16(hdr + 4) || !(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)))
		return -EINVAL;
	return 0;
}

int virtio_net_check_rx(uint8_t hdr[VIRTIO_NET_HDR_LEN], uint64_t features)
{
	uint8_t flags = hdr[0];
	if (flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
		return -EINVAL;
	if (!(features & VIRTIO_NET_F_GUEST_CSUM)) {
		if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
			return -EINVAL;
		hdr[0] = 0; /* DATA_VALID only with GUEST_CSUM (§5.1.6.4.1) */
	}
	return check_gso(hdr[1], features, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
			 VIRTIO_NET_F_GUEST_ECN);
}

/* The backend's offloads follow the guest's features (none after a reset). */
static void vnet_sync_offloads(struct virtio_net *n)
{
	uint64_t f = n->vp.driver_features;
	if (n->offloads_set && n->offloads_features == f)
		return;
	n->offloads_set = true;
	n->offloads_features = f;
	if (!net_backend_has_vnet_hdr(n->be))
		return;
	unsigned o = 0;
	if (f & VIRTIO_NET_F_GUEST_CSUM)
		o = NET_OFFLOAD_CSUM | (f & VIRTIO_NET_F_GUEST_TSO4 ? NET_OFFLOAD_TSO4 : 0) |
		    (f & VIRTIO_NET_F_GUEST_TSO6 ? NET_OFFLOAD_TSO6 : 0) |
		    (f & VIRTIO_NET_F_GUEST_ECN ? NET_OFFLOAD_TSO_ECN : 0);
	if (net_backend_set_offloads(n->be, o) < 0)
		log_warn("virtio-net %d: %s", n->index, err_msg());
}

static void vnet_config_read(void *dev, uint64_t off, void *data, unsigned len)
{
	struct virtio_net *n = dev;
	if (off + len <= sizeof(n->config))
		memcpy(data, (uint8_t *)&n->config + off, len);
}

static void vnet_bad(struct virtio_net *n, const char *why)
{
	virtio_log_bad(&n->bad, "virtio-net %d: %s", n->index, why);
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
	if (n->backlog_n < RX_BACKLOG && vnet_rx_ready(n))
		net_backend_rx_resume(n->be);
}

/* Whether a frame now would be kept (a backend that can wait stops
 * reading when not), from the I/O thread. */
static bool vnet_can_receive(void *opaque)
{
	struct virtio_net *n = opaque;
	if (!n->in_tx)
		pthread_mutex_lock(&n->vp.lock);
	bool ok = vnet_rx_ready(n) && n->backlog_n < RX_BACKLOG;
	if (!n->in_tx)
		pthread_mutex_unlock(&n->vp.lock);
	return ok;
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

/* From the backend, in the I/O thread: a frame for the guest, after its
 * vnet header VHDR (NULL: a plain frame). */
static void vnet_receive(void *opaque, const uint8_t *vhdr, const void *frame, size_t len)
{
	struct virtio_net *n = opaque;
	if (len > NET_MAX_FRAME)
		return;
	if (!n->in_tx)
		pthread_mutex_lock(&n->vp.lock);
	uint8_t hdr[VIRTIO_NET_HDR_LEN] = {0};
	if (vhdr)
		memcpy(hdr, vhdr, 10); /* num_buffers is ours */
	vnet_sync_offloads(n);
	if (virtio_net_check_rx(hdr, n->vp.driver_features) < 0) {
		/* offloads the guest no longer takes (it reset the device) */
		n->rx_dropped++;
	} else if (!vnet_rx_ready(n) || n->backlog_n == RX_BACKLOG) {
		n->rx_dropped++;
		log_debug("virtio-net %d: frame of %zu bytes dropped (%s)", n->index, len,
			  vnet_rx_ready(n) ? "backlog full" : "driver not ready");
	} else {
		uint8_t *d = malloc(VIRTIO_NET_HDR_LEN + len);
		if (d) {
			memcpy(d, hdr, VIRTIO_NET_HDR_LEN);
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
	unsigned budget = vq->size;
	for (int r; (r = virtio_pci_pop(&n->vp, vq, e, &budget)) != 0;) {
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
		if (virtio_net_check_tx(n->frame, total - VIRTIO_NET_HDR_LEN,
					n->vp.driver_features) < 0) {
			vnet_bad(n, "transmitted frame with offloads not negotiated, a bad "
				    "checksum offset or a bad length");
		} else {
			n->tx_frames++;
			net_backend_send(n->be, n->frame, n->frame + VIRTIO_NET_HDR_LEN,
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
		n->tx_poll_queued = evloop_call(n->vp.vm->loop, vnet_tx_poll, n) == 0;
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

static void vnet_ctrl_apply(struct virtio_net *n, const struct virtio_net_ctrl *c)
{
	switch (c->action) {
	case CTRL_ANNOUNCE_ACK:
		n->config.status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
		break;
	/* Every frame reaches the guest anyway (as promiscuous): the
	 * filters are the guest's own to apply. */
	case CTRL_RX_PROMISC:
	case CTRL_RX_ALLMULTI:
	case CTRL_MAC_TABLE:
		log_debug("virtio-net %d: receive filter %d %u (every frame is delivered)",
			  n->index, c->action, c->arg);
		break;
	}
}

/* Control requests: device-readable class, command and data, then a
 * device-writable ack byte.  A malformed chain or one with no writable
 * byte comes back with used.len 0 and changes nothing. */
static void vnet_ctrl(struct virtio_net *n)
{
	struct virtqueue *vq = &n->vp.vqs[CTRLQ];
	struct vq_elem *e = &n->elem;
	bool pushed = false;
	unsigned budget = vq->size;
	for (int r; (r = virtio_pci_pop(&n->vp, vq, e, &budget)) != 0;) {
		pushed = true;
		if (r == -EBADMSG || iov_total(e->in, e->nin) == 0) {
			vnet_bad(n, r == -EBADMSG ? "bad descriptor chain on the control queue"
						  : "control request without an ack byte");
			vq_push(vq, e->head, 0);
			continue;
		}
		size_t len = iov_total(e->out, e->nout);
		uint8_t ack = VIRTIO_NET_ERR;
		struct virtio_net_ctrl c;
		if (len <= sizeof(n->ctrl_req)) {
			iov_gather(e->out, e->nout, n->ctrl_req, len);
			ack = (uint8_t)virtio_net_ctrl_parse(n->ctrl_req, len,
							     n->vp.driver_features, &c);
		}
		if (ack == VIRTIO_NET_OK)
			vnet_ctrl_apply(n, &c);
		else
			log_debug("virtio-net %d: control request refused (%zu bytes, class %u)",
				  n->index, len, len ? n->ctrl_req[0] : 0);
		iov_scatter(e->in, e->nin, 0, &ack, 1);
		vq_push(vq, e->head, 1);
	}
	if (pushed && vq_should_notify(vq))
		virtio_pci_queue_interrupt(&n->vp, CTRLQ);
}

static void vnet_queue_notify(void *dev, unsigned q)
{
	struct virtio_net *n = dev;
	vnet_sync_offloads(n);
	/* a transmit kick drains now even with a poll queued: a driver that
	 * reset the device kicks a new queue */
	if (q == TXQ)
		vnet_tx_drain(n);
	else if (q == CTRLQ)
		vnet_ctrl(n);
	else
		vnet_rx_flush(n);
}

static void vnet_reset(void *dev)
{
	struct virtio_net *n = dev;
	vnet_backlog_clear(n);
	n->config.status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
}

/* From the backend: its link went down (a TAP vanished) or up. */
static void vnet_link_changed(void *opaque, bool up)
{
	struct virtio_net *n = opaque;
	if (!n->in_tx)
		pthread_mutex_lock(&n->vp.lock);
	uint16_t st = up ? n->config.status | VIRTIO_NET_S_LINK_UP
			 : n->config.status & (uint16_t)~VIRTIO_NET_S_LINK_UP;
	if (st != n->config.status) {
		n->config.status = st;
		if (n->vp.status & STATUS_DRIVER_OK)
			virtio_pci_config_changed(&n->vp);
	}
	if (!n->in_tx)
		pthread_mutex_unlock(&n->vp.lock);
}

/* After a restore, at the I/O thread's next turn (the vCPUs' interrupt
 * state is in by then): the configuration-change interrupt that makes the
 * guest read VIRTIO_NET_S_ANNOUNCE. */
static void vnet_announce_irq(void *opaque)
{
	struct virtio_net *n = opaque;
	pthread_mutex_lock(&n->vp.lock);
	if ((n->config.status & VIRTIO_NET_S_ANNOUNCE) && (n->vp.status & STATUS_DRIVER_OK))
		virtio_pci_config_changed(&n->vp);
	pthread_mutex_unlock(&n->vp.lock);
}

static void vnet_destroy(void *priv)
{
	struct virtio_net *n = priv;
	net_backend_close(n->be); /* no more frames for us */
	virtio_pci_destroy(&n->vp);
	vnet_backlog_clear(n);
	free(n->spec);
	free(n);
}

/* What a restored NIC's status is: the link is the backend's now (a
 * restore may attach another), and a guest that negotiated GUEST_ANNOUNCE
 * is asked to announce itself: its peers may have moved on. */
static void vnet_restored(struct virtio_net *n)
{
	uint64_t f = n->vp.driver_features;
	bool announce = (f & VIRTIO_NET_F_GUEST_ANNOUNCE) && (f & VIRTIO_NET_F_CTRL_VQ) &&
			(n->vp.status & STATUS_DRIVER_OK);
	n->config.status = (uint16_t)((net_backend_link_up(n->be) ? VIRTIO_NET_S_LINK_UP : 0) |
				      (announce ? VIRTIO_NET_S_ANNOUNCE : 0));
	vnet_backlog_clear(n);
	n->offloads_set = false;
	vnet_sync_offloads(n);
	if (vnet_rx_ready(n))
		net_backend_rx_resume(n->be);
	if (announce && evloop_call(n->vp.vm->loop, vnet_announce_irq, n) < 0)
		log_warn("virtio-net %d: no announce interrupt after the restore", n->index);
}

/* The transport's state (the control queue's too, unless legacy), then
 * the device's own: its configuration (MAC, status).  Offloads the guest
 * negotiated for its transmitted frames need a backend with a vnet header
 * (or none at all: frames dropped): a restore onto another is refused
 * (docs/snapshots.md). */
static int vnet_snapshot(void *priv, struct state_buf *sb)
{
	struct virtio_net *n = priv;
	int r = virtio_pci_snapshot(&n->vp, sb);
	if (r < 0)
		return r;
	pthread_mutex_lock(&n->vp.lock);
	STATE_FIELD(sb, n->config.mac);
	STATE_FIELD(sb, n->config.status);
	if (sb->restoring && !sb->err && (n->vp.driver_features & VIRTIO_NET_TX_OFFLOADS) &&
	    !net_backend_has_vnet_hdr(n->be) && net_backend_kind(n->be) != NET_NONE)
		sb->err = err_set(EINVAL,
				  "NIC %d: the guest negotiated checksum/segmentation offload "
				  "(its backend was a TAP device); backend '%s' cannot take such "
				  "frames: restore it with --net tap=IFNAME",
				  n->index, n->spec);
	if (sb->restoring && !sb->err)
		vnet_restored(n);
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
	n->spec = strdup(nic->backend);
	const struct net_peer peer = {vnet_receive, vnet_link_changed, vnet_can_receive, n};
	int r = n->spec ? net_backend_open(nic->backend, vm->loop, &peer, &n->be)
			: err_set(ENOMEM, "virtio-net");
	if (r < 0) {
		free(n->spec);
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
	    .nqueues = nic->legacy ? 2 : 3,
	    .features = nic->legacy ? BASE_FEATURES
			: BASE_FEATURES | CTRL_FEATURES |
			      (net_backend_has_vnet_hdr(n->be) ? OFFLOAD_FEATURES : 0),
	    .config_size = sizeof(n->config),
	    .config_read = vnet_config_read,
	    .queue_notify = vnet_queue_notify,
	    .reset = vnet_reset,
	};
	if ((r = virtio_pci_init(&n->vp, vm, &n->ops, n)) < 0) {
		net_backend_close(n->be);
		free(n->spec);
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
