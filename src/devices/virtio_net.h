/* virtio-net (virtio 1.x §5.1) over PCI, one device per --net, one
 * receive/transmit queue pair, behind a network backend (net/net.h). */
#ifndef CAIRN_DEVICES_VIRTIO_NET_H
#define CAIRN_DEVICES_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct devices_config;

/* One NIC: its MAC address and the backend spec (read during init only).
 * LEGACY: the first model, restored from a snapshot that has it: two
 * queues, features MAC, STATUS, MRG_RXBUF only (no control queue, no
 * announce, no offloads), so its snapshot record keeps its layout. */
struct virtio_net_nic {
	uint8_t mac[6];
	const char *backend; /* net_backend_open's spec: "user,...", "tap=...", "none" */
	bool legacy;
};

int virtio_net_init(struct vm *vm, const struct devices_config *cfg);

/* ---- the frame and header rules, for the device and its tests ---- */
#define VIRTIO_NET_HDR_LEN 12 /* struct virtio_net_hdr_v1 (VERSION_1 always has num_buffers) */
/* Offload features (virtio 1.x §5.1.3), offered with a vnet-header backend. */
#define VIRTIO_NET_F_CSUM (1ULL << 0)
#define VIRTIO_NET_F_GUEST_CSUM (1ULL << 1)
#define VIRTIO_NET_F_GUEST_TSO4 (1ULL << 7)
#define VIRTIO_NET_F_GUEST_TSO6 (1ULL << 8)
#define VIRTIO_NET_F_GUEST_ECN (1ULL << 9)
#define VIRTIO_NET_F_HOST_TSO4 (1ULL << 11)
#define VIRTIO_NET_F_HOST_TSO6 (1ULL << 12)
#define VIRTIO_NET_F_HOST_ECN (1ULL << 13)
/* What the guest's transmitted frames may then need from the backend. */
#define VIRTIO_NET_TX_OFFLOADS                                                                     \
	(VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6 | VIRTIO_NET_F_HOST_ECN)
/* A transmitted frame after its header, FEATURES negotiated: 0, or -EINVAL
 * when the header asks for what was not negotiated (checksum or
 * segmentation offload; UDP segmentation never), a checksum outside the
 * frame, or the frame is shorter than an Ethernet header or longer than
 * NET_MAX_FRAME. */
int virtio_net_check_tx(const uint8_t hdr[VIRTIO_NET_HDR_LEN], size_t frame_len,
			uint64_t features);
/* A backend's header for a received frame, against the guest's FEATURES:
 * 0 (DATA_VALID cleared when the guest did not take GUEST_CSUM), or
 * -EINVAL when it asks for an offload the guest did not negotiate. */
int virtio_net_check_rx(uint8_t hdr[VIRTIO_NET_HDR_LEN], uint64_t features);

#endif
