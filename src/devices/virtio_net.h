/* virtio-net (virtio 1.x §5.1) over PCI, one device per --net, one
 * receive/transmit queue pair, behind a network backend (net/net.h). */
#ifndef CAIRN_DEVICES_VIRTIO_NET_H
#define CAIRN_DEVICES_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct devices_config;

/* One NIC: its MAC address and the backend spec (read during init only). */
struct virtio_net_nic {
	uint8_t mac[6];
	const char *backend; /* net_backend_open's spec: "user,...", "none" */
};

int virtio_net_init(struct vm *vm, const struct devices_config *cfg);

/* ---- the frame and header rules, for the device and its tests ---- */
#define VIRTIO_NET_HDR_LEN 12 /* struct virtio_net_hdr_v1 (VERSION_1 always has num_buffers) */
/* A transmitted frame after its header: 0, or -EINVAL when the header asks
 * for what was not negotiated (checksum or segmentation offload) or the
 * frame is shorter than an Ethernet header or longer than NET_MAX_FRAME. */
int virtio_net_check_tx(const uint8_t hdr[VIRTIO_NET_HDR_LEN], size_t frame_len);

#endif
