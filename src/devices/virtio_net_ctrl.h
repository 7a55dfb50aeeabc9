/* virtio-net's control queue requests (virtio 1.x §5.1.6.5): the commands
 * Linux sends, parsed from the bytes the driver wrote.  The parser only
 * reads what it is given; the device applies the result. */
#ifndef CAIRN_DEVICES_VIRTIO_NET_CTRL_H
#define CAIRN_DEVICES_VIRTIO_NET_CTRL_H

#include <stddef.h>
#include <stdint.h>

#define VIRTIO_NET_F_CTRL_VQ (1ULL << 17)
#define VIRTIO_NET_F_CTRL_RX (1ULL << 18)
#define VIRTIO_NET_F_GUEST_ANNOUNCE (1ULL << 21)

#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1

#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_RX_PROMISC 0
#define VIRTIO_NET_CTRL_RX_ALLMULTI 1
#define VIRTIO_NET_CTRL_MAC 1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET 0
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0

/* The largest request taken (header, data): a MAC table of some 680
 * addresses; a longer one gets VIRTIO_NET_ERR. */
#define VIRTIO_NET_CTRL_MAX 4096

enum virtio_net_ctrl_action {
	CTRL_RX_PROMISC,  /* arg: on (1) or off (0) */
	CTRL_RX_ALLMULTI, /* arg: likewise */
	CTRL_MAC_TABLE,	  /* arg: unicast + multicast entries */
	CTRL_ANNOUNCE_ACK,
};

struct virtio_net_ctrl {
	enum virtio_net_ctrl_action action;
	uint32_t arg;
};

/* REQ: the request's device-readable bytes (class, command, data), LEN of
 * them; FEATURES: the negotiated ones (a command needs its feature).
 * VIRTIO_NET_OK with *OUT filled, or VIRTIO_NET_ERR for an unknown class
 * or command, or a body of the wrong size. */
int virtio_net_ctrl_parse(const uint8_t *req, size_t len, uint64_t features,
			  struct virtio_net_ctrl *out);

#endif
