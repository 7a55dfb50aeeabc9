/* Network backends: where a NIC's frames go on the host side.  A backend
 * is opened from a spec string (`--net SPEC`) and runs in the VM's event
 * loop; frames from the guest go in with net_backend_send, frames for the
 * guest come out through the peer's receive callback, in the loop's
 * thread. */
#ifndef CAIRN_NET_NET_H
#define CAIRN_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evloop;
struct net_backend;

#define NET_MAX_HOSTFWD 16
#define NET_MAX_FRAME 65535 /* an Ethernet frame without its virtio header */

enum net_kind { NET_NONE, NET_USER };

struct net_hostfwd {
	bool udp;
	uint32_t host_addr; /* network order; 0: any */
	uint16_t host_port, guest_port;
};

/* A parsed spec: `none` or `user[,mac=MAC][,hostfwd=PROTO:[HOSTADDR]:HOSTPORT-:GUESTPORT]...` */
struct net_spec {
	enum net_kind kind;
	bool has_mac;
	uint8_t mac[6];
	struct net_hostfwd fwd[NET_MAX_HOSTFWD];
	unsigned nfwd;
};

/* The device side: frames for the guest. */
struct net_peer {
	void (*receive)(void *opaque, const void *frame, size_t len);
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
/* A frame from the guest (Ethernet header first); dropped when the backend
 * cannot take it. */
void net_backend_send(struct net_backend *be, const void *frame, size_t len);
bool net_backend_link_up(const struct net_backend *be);
void net_backend_close(struct net_backend *be);

/* ---- net_slirp.c ---- */
struct net_slirp;
int net_slirp_open(const struct net_spec *spec, struct evloop *loop, const struct net_peer *peer,
		   struct net_slirp **out);
void net_slirp_input(struct net_slirp *s, const void *frame, size_t len);
void net_slirp_close(struct net_slirp *s);

#endif
