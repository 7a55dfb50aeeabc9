/* Network backends: where a NIC's frames go on the host side.  A backend
 * is opened from a spec string (`--net SPEC`) and runs in the VM's event
 * loop; frames from the guest go in with net_backend_send, frames for the
 * guest come out through the peer's receive callback, in the loop's
 * thread.  A backend with a vnet header (TAP) carries virtio-net's 12-byte
 * header beside each frame: checksum and segmentation offloads. */
#ifndef CAIRN_NET_NET_H
#define CAIRN_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evloop;
struct net_backend;

#define NET_MAX_HOSTFWD 16
#define NET_MAX_FRAME 65535 /* an Ethernet frame without its virtio header */
#define NET_VNET_HDR_LEN 12 /* struct virtio_net_hdr_v1 */
#define NET_IFNAME_MAX 16   /* IFNAMSIZ, with its NUL */

enum net_kind { NET_NONE, NET_USER, NET_TAP };

/* Offloads a vnet-header backend delivers to the guest (TUNSETOFFLOAD's). */
#define NET_OFFLOAD_CSUM 0x01
#define NET_OFFLOAD_TSO4 0x02
#define NET_OFFLOAD_TSO6 0x04
#define NET_OFFLOAD_TSO_ECN 0x08

struct net_hostfwd {
	bool udp;
	uint32_t host_addr; /* network order; 0: any */
	uint16_t host_port, guest_port;
};

/* A parsed spec: `none`, `tap=IFNAME[,mac=MAC]` or
 * `user[,mac=MAC][,hostfwd=PROTO:[HOSTADDR]:HOSTPORT-:GUESTPORT]...` */
struct net_spec {
	enum net_kind kind;
	char ifname[NET_IFNAME_MAX];
	bool has_mac;
	uint8_t mac[6];
	struct net_hostfwd fwd[NET_MAX_HOSTFWD];
	unsigned nfwd;
};

/* The device side: frames for the guest (VHDR: the backend's vnet header,
 * NULL when it has none), and the link going down (the TAP vanished).
 * CAN_RECEIVE (NULL: always) false makes a backend that can wait (TAP)
 * stop reading until net_backend_rx_resume: frames then queue, and drop,
 * in the kernel rather than in cairn. */
struct net_peer {
	void (*receive)(void *opaque, const uint8_t *vhdr, const void *frame, size_t len);
	void (*link_changed)(void *opaque, bool up);
	bool (*can_receive)(void *opaque);
	void *opaque;
};

/* Parse SPEC; -EINVAL with a message naming what is wrong. */
int net_spec_parse(const char *spec, struct net_spec *out);

/* A MAC address as text, "xx:xx:xx:xx:xx:xx" (lower case); parsing takes
 * any case and refuses anything else (0 or -1). */
#define NET_MAC_TEXT 18
void net_mac_format(const uint8_t mac[6], char out[NET_MAC_TEXT]);
int net_mac_parse(const char *s, uint8_t mac[6]);
/* The backend SPEC names, in LOOP, delivering to PEER (copied).  A `none`
 * spec gives a backend that drops every frame with its link down. */
int net_backend_open(const char *spec, struct evloop *loop, const struct net_peer *peer,
		     struct net_backend **out);
/* A frame from the guest (Ethernet header first) after its vnet header
 * VHDR (used only by a backend that has one); dropped when the backend
 * cannot take it. */
void net_backend_send(struct net_backend *be, const uint8_t vhdr[NET_VNET_HDR_LEN],
		      const void *frame, size_t len);
bool net_backend_link_up(const struct net_backend *be);
/* The peer can take frames again (after CAN_RECEIVE said no). */
void net_backend_rx_resume(struct net_backend *be);
enum net_kind net_backend_kind(const struct net_backend *be);
/* Whether frames carry a vnet header both ways (then offloads are
 * possible), and which offloads the guest takes (NET_OFFLOAD_*). */
bool net_backend_has_vnet_hdr(const struct net_backend *be);
int net_backend_set_offloads(struct net_backend *be, unsigned offloads);
void net_backend_close(struct net_backend *be);

/* ---- net_slirp.c ---- */
struct net_slirp;
int net_slirp_open(const struct net_spec *spec, struct evloop *loop, const struct net_peer *peer,
		   struct net_slirp **out);
void net_slirp_input(struct net_slirp *s, const void *frame, size_t len);
void net_slirp_close(struct net_slirp *s);

/* ---- net_tap.c ---- */
struct net_tap;
int net_tap_open(const struct net_spec *spec, struct evloop *loop, const struct net_peer *peer,
		 struct net_tap **out);
void net_tap_send(struct net_tap *t, const uint8_t *vhdr, const void *frame, size_t len);
bool net_tap_link_up(const struct net_tap *t);
void net_tap_rx_resume(struct net_tap *t);
bool net_tap_has_vnet_hdr(const struct net_tap *t);
int net_tap_set_offloads(struct net_tap *t, unsigned offloads);
void net_tap_close(struct net_tap *t);

#endif
