#include "devices/virtio_net_ctrl.h"

#include <string.h>

/* A MAC table: two of {le32 entries; entries x 6 bytes}, unicast then
 * multicast, filling the body exactly. */
static int parse_mac_table(const uint8_t *p, size_t len, uint32_t *total)
{
	*total = 0;
	for (int t = 0; t < 2; t++) {
		uint32_t n;
		if (len < 4)
			return VIRTIO_NET_ERR;
		memcpy(&n, p, 4);
		p += 4;
		len -= 4;
		if (n > len / 6)
			return VIRTIO_NET_ERR;
		p += (size_t)n * 6;
		len -= (size_t)n * 6;
		*total += n;
	}
	return len == 0 ? VIRTIO_NET_OK : VIRTIO_NET_ERR;
}

int virtio_net_ctrl_parse(const uint8_t *req, size_t len, uint64_t features,
			  struct virtio_net_ctrl *out)
{
	if (len < 2 || len > VIRTIO_NET_CTRL_MAX)
		return VIRTIO_NET_ERR;
	uint8_t class = req[0], cmd = req[1];
	const uint8_t *body = req + 2;
	size_t blen = len - 2;
	switch (class) {
	case VIRTIO_NET_CTRL_RX:
		if (!(features & VIRTIO_NET_F_CTRL_RX) || blen != 1 ||
		    (cmd != VIRTIO_NET_CTRL_RX_PROMISC && cmd != VIRTIO_NET_CTRL_RX_ALLMULTI))
			return VIRTIO_NET_ERR;
		*out = (struct virtio_net_ctrl){
		    cmd == VIRTIO_NET_CTRL_RX_PROMISC ? CTRL_RX_PROMISC : CTRL_RX_ALLMULTI,
		    body[0] != 0};
		return VIRTIO_NET_OK;
	case VIRTIO_NET_CTRL_MAC:
		if (!(features & VIRTIO_NET_F_CTRL_RX) || cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET)
			return VIRTIO_NET_ERR;
		out->action = CTRL_MAC_TABLE;
		return parse_mac_table(body, blen, &out->arg);
	case VIRTIO_NET_CTRL_ANNOUNCE:
		if (!(features & VIRTIO_NET_F_GUEST_ANNOUNCE) ||
		    cmd != VIRTIO_NET_CTRL_ANNOUNCE_ACK || blen != 0)
			return VIRTIO_NET_ERR;
		*out = (struct virtio_net_ctrl){CTRL_ANNOUNCE_ACK, 0};
		return VIRTIO_NET_OK;
	}
	return VIRTIO_NET_ERR;
}
