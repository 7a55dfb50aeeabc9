/* Backend specs and the dispatch to the backend kinds. */
#include "net/net.h"
#include "util/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct net_backend {
	enum net_kind kind;
	struct net_slirp *slirp;
	struct net_tap *tap;
};

/* An interface name the kernel would take: 1-15 bytes, no '/', no space or
 * ':' (alias syntax), not "." or "..". */
static int parse_ifname(const char *s, char out[NET_IFNAME_MAX])
{
	size_t n = strlen(s);
	if (n == 0 || n >= NET_IFNAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '/' || s[i] == ':' || (unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return -1;
	memcpy(out, s, n + 1);
	return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT, the guest address being
 * the DHCP one (10.0.2.15) when given: QEMU's syntax. */
static int parse_hostfwd(const char *s, struct net_hostfwd *f)
{
	char buf[128];
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	char *proto = buf, *p = strchr(buf, ':');
	if (!p)
		return -1;
	*p++ = 0;
	if (!strcmp(proto, "udp"))
		f->udp = true;
	else if (!strcmp(proto, "tcp"))
		f->udp = false;
	else
		return -1;
	char *addr = p;
	if (!(p = strchr(p, ':')))
		return -1;
	*p++ = 0;
	f->host_addr = 0;
	struct in_addr a;
	if (*addr) {
		if (inet_pton(AF_INET, addr, &a) != 1)
			return -1;
		f->host_addr = a.s_addr;
	}
	char *dash = strchr(p, '-');
	if (!dash)
		return -1;
	*dash++ = 0;
	if (parse_port(p, &f->host_port) < 0)
		return -1;
	char *gport = strchr(dash, ':');
	if (!gport)
		return -1;
	*gport++ = 0;
	if (*dash && (inet_pton(AF_INET, dash, &a) != 1 || a.s_addr != htonl(0x0a00020f)))
		return -1; /* one guest: 10.0.2.15 */
	return parse_port(gport, &f->guest_port);
}

void net_mac_format(const uint8_t mac[6], char out[NET_MAC_TEXT])
{
	snprintf(out, NET_MAC_TEXT, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
}

int net_mac_parse(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return -1;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

int net_spec_parse(const char *spec, struct net_spec *out)
{
	memset(out, 0, sizeof(*out));
	char *s = strdup(spec);
	if (!s)
		return err_set(ENOMEM, "--net %s", spec);
	int r = 0;
	char *save = NULL, *tok = strtok_r(s, ",", &save);
	if (tok && !strcmp(tok, "none"))
		out->kind = NET_NONE;
	else if (tok && !strcmp(tok, "user"))
		out->kind = NET_USER;
	else if (tok && !strncmp(tok, "tap=", 4)) {
		out->kind = NET_TAP;
		if (parse_ifname(tok + 4, out->ifname) < 0)
			r = err_set(EINVAL, "--net %s: bad interface name '%s'", spec, tok + 4);
	} else
		r = err_set(EINVAL, "--net %s: the backend is 'user', 'tap=IFNAME' or 'none'",
			    spec);
	while (r == 0 && (tok = strtok_r(NULL, ",", &save))) {
		if (!strncmp(tok, "mac=", 4)) {
			/* a NIC's own address is never a multicast one */
			if (net_mac_parse(tok + 4, out->mac) < 0 || (out->mac[0] & 1))
				r = err_set(EINVAL, "--net %s: bad MAC address '%s'", spec,
					    tok + 4);
			out->has_mac = true;
		} else if (!strncmp(tok, "hostfwd=", 8) && out->kind == NET_USER) {
			if (out->nfwd == NET_MAX_HOSTFWD)
				r = err_set(EINVAL, "--net %s: at most %d forwards", spec,
					    NET_MAX_HOSTFWD);
			else if (parse_hostfwd(tok + 8, &out->fwd[out->nfwd++]) < 0)
				r = err_set(
				    EINVAL,
				    "--net %s: bad forward '%s' (PROTO::HOSTPORT-:GUESTPORT, "
				    "PROTO udp or tcp)",
				    spec, tok + 8);
		} else {
			r = err_set(EINVAL, "--net %s: unknown option '%s'", spec, tok);
		}
	}
	free(s);
	return r;
}

int net_backend_open(const char *spec, struct evloop *loop, const struct net_peer *peer,
		     struct net_backend **out)
{
	struct net_spec ns;
	int r = net_spec_parse(spec, &ns);
	if (r < 0)
		return r;
	struct net_backend *be = calloc(1, sizeof(*be));
	if (!be)
		return err_set(ENOMEM, "--net %s", spec);
	be->kind = ns.kind;
	if (ns.kind == NET_USER)
		r = net_slirp_open(&ns, loop, peer, &be->slirp);
	else if (ns.kind == NET_TAP)
		r = net_tap_open(&ns, loop, peer, &be->tap);
	if (r < 0) {
		free(be);
		return r;
	}
	*out = be;
	return 0;
}

void net_backend_send(struct net_backend *be, const uint8_t vhdr[NET_VNET_HDR_LEN],
		      const void *frame, size_t len)
{
	if (be->kind == NET_USER)
		net_slirp_input(be->slirp, frame, len);
	else if (be->kind == NET_TAP)
		net_tap_send(be->tap, vhdr, frame, len);
}

bool net_backend_link_up(const struct net_backend *be)
{
	if (be->kind == NET_TAP)
		return net_tap_link_up(be->tap);
	return be->kind != NET_NONE;
}

void net_backend_rx_resume(struct net_backend *be)
{
	if (be->kind == NET_TAP)
		net_tap_rx_resume(be->tap);
}

enum net_kind net_backend_kind(const struct net_backend *be)
{
	return be->kind;
}

bool net_backend_has_vnet_hdr(const struct net_backend *be)
{
	return be->kind == NET_TAP && net_tap_has_vnet_hdr(be->tap);
}

int net_backend_set_offloads(struct net_backend *be, unsigned offloads)
{
	if (!net_backend_has_vnet_hdr(be))
		return offloads ? -EOPNOTSUPP : 0;
	return net_tap_set_offloads(be->tap, offloads);
}

void net_backend_close(struct net_backend *be)
{
	if (!be)
		return;
	if (be->slirp)
		net_slirp_close(be->slirp);
	if (be->tap)
		net_tap_close(be->tap);
	free(be);
}
